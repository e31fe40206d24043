#!/usr/bin/env bash
# test_realprogs.sh: real programs behave identically under memscope.
#
# Why: memscope's promise is "any C or C++ program, no rebuild".  Unit tests
# cannot cover what real programs do (threads in pack-objects, CPython's
# arenas, gcc's obstacks, sqlite's page cache, make's child processes), so
# each program here runs the same deterministic job twice, without and with
# LD_PRELOAD=libmemscope.so, and the stdout and exit code must match:
#   python3  an allocation-heavy script (tests/data/alloc_heavy.py)
#   sqlite3  a generated database (tens of thousands of rows, indexes), queried
#   git      init, commits of generated files, a branch merged back,
#            log -p/--graph/diff/gc/fsck/archive
#   gcc      compiling a generated C file; the object and the program's
#            output must match
#   coreutils  a bash loop that forks, sort --parallel=2, tar | gzip
#   make     building this project's library into a temp BUILD dir
# A program that is not installed is reported as SKIP (scripts/install-deps.sh
# installs them all, so CI skips nothing).
set -u
cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD
LIB="${MEMSCOPE_LIB:-$ROOT/build/libmemscope.so}"   # override to try another malloc
if [ ! -f "$LIB" ]; then echo "FAIL: $LIB missing (run make lib first)"; exit 1; fi
TMP=$(mktemp -d "${TMPDIR:-/tmp}/memscope-real.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
T="timeout 600"
pass=0; fail=0; skip=0

have() { command -v "$1" >/dev/null 2>&1; }
STEP_START=$SECONDS
ok()   { pass=$((pass + 1)); echo "ok   $1 [$((SECONDS - STEP_START)) s]"; STEP_START=$SECONDS; }
bad()  { fail=$((fail + 1)); echo "FAIL $1 [$((SECONDS - STEP_START)) s]"; STEP_START=$SECONDS; }
skipped() { skip=$((skip + 1)); echo "SKIP $1: not installed"; }

# compare NAME: $TMP/NAME.{plain,ms}.{out,rc,err} must agree.
compare() {
    local n=$1 rp rm
    rp=$(cat "$TMP/$n.plain.rc"); rm=$(cat "$TMP/$n.ms.rc")
    if [ "$rp" != "$rm" ]; then
        bad "$n: exit code $rp without memscope, $rm with it"
        sed -n '1,15s/^/       | /p' "$TMP/$n.ms.err"
    elif [ "$rp" != 0 ]; then
        bad "$n: exits $rp even without memscope (broken test?)"
        sed -n '1,15s/^/       | /p' "$TMP/$n.plain.err"
    elif ! cmp -s "$TMP/$n.plain.out" "$TMP/$n.ms.out"; then
        bad "$n: stdout differs under memscope"
        diff "$TMP/$n.plain.out" "$TMP/$n.ms.out" | head -20 | sed 's/^/       | /'
        sed -n '1,10s/^/       | stderr: /p' "$TMP/$n.ms.err"
    elif [ ! -s "$TMP/$n.plain.out" ]; then
        bad "$n: produced no output to compare"
    else
        ok "$n ($(wc -l <"$TMP/$n.plain.out") lines identical)"
    fi
}

# run_both NAME FUNC: FUNC runs the job, given "plain" or "ms" as $1 and
# $PRE set to the preload (empty for plain); stdout/err/rc recorded.
run_both() {
    local n=$1 f=$2 mode
    for mode in plain ms; do
        if [ "$mode" = ms ]; then PRE=$LIB; else PRE=; fi
        "$f" "$mode" >"$TMP/$n.$mode.out" 2>"$TMP/$n.$mode.err"
        echo $? >"$TMP/$n.$mode.rc"
    done
    compare "$n"
}
# pre CMD...: run CMD with the preload of this mode.
pre() { if [ -n "$PRE" ]; then LD_PRELOAD=$PRE $T "$@"; else $T "$@"; fi; }

# ---------------------------------------------------------------- python3
job_python() { PYTHONHASHSEED=0 pre python3 "$ROOT/tests/data/alloc_heavy.py"; }
if have python3; then run_both python3 job_python; else skipped python3; fi

# ---------------------------------------------------------------- sqlite3
cat >"$TMP/db.sql" <<'SQL'
PRAGMA journal_mode=WAL;
CREATE TABLE item(id INTEGER PRIMARY KEY, grp INTEGER, name TEXT, val REAL, blob BLOB);
CREATE TABLE tag(item_id INTEGER, tag TEXT);
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 60000)
INSERT INTO item SELECT x, (x * 7919) % 97, printf('name-%06d-%s', (x * 31) % 100003, substr('abcdefghijklmnop', 1 + x % 16)),
       (x % 1000) / 7.0, zeroblob(x % 500) FROM c;
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 90000)
INSERT INTO tag SELECT (x * 13) % 60000 + 1, 't' || (x % 211) FROM c;
CREATE INDEX item_grp ON item(grp, val);
CREATE INDEX item_name ON item(name);
CREATE INDEX tag_tag ON tag(tag, item_id);
UPDATE item SET name = name || '-u' WHERE id % 5 = 0;
DELETE FROM item WHERE id % 11 = 0;
SELECT count(*), sum(grp), printf('%.3f', sum(val)), sum(length(blob)) FROM item;
SELECT grp, count(*), printf('%.3f', avg(val)), min(name), max(name) FROM item GROUP BY grp ORDER BY grp LIMIT 20;
SELECT t.tag, count(*), sum(i.grp) FROM tag t JOIN item i ON i.id = t.item_id GROUP BY t.tag ORDER BY 2 DESC, 1 LIMIT 15;
SELECT name FROM item WHERE name LIKE 'name-0001%' ORDER BY name LIMIT 10;
SELECT group_concat(id) FROM (SELECT id FROM item ORDER BY val DESC, id LIMIT 50);
VACUUM;
PRAGMA integrity_check;
SELECT count(*) FROM item WHERE grp BETWEEN 10 AND 20 AND val > 50;
SQL
job_sqlite() { rm -f "$TMP/$1.db"*; pre sqlite3 "$TMP/$1.db" <"$TMP/db.sql"; }
if have sqlite3; then run_both sqlite3 job_sqlite; else skipped sqlite3; fi

# ---------------------------------------------------------------- git
job_git() {
    local r="$TMP/$1.repo" i c
    export GIT_AUTHOR_NAME=t GIT_AUTHOR_EMAIL=t@example.com GIT_COMMITTER_NAME=t \
        GIT_COMMITTER_EMAIL=t@example.com GIT_CONFIG_NOSYSTEM=1 HOME="$TMP"
    mkdir -p "$r" && cd "$r" || return 1
    pre git init -q -b main . || return 1
    pre git config gc.auto 0; pre git config pack.threads 2
    for c in 1 2 3 4 5 6; do
        for i in $(seq 1 40); do
            # generated content: changes a little every commit, so deltas exist
            awk -v c="$c" -v i="$i" 'BEGIN { for (l = 0; l < 200 + i * 5; l++)
                printf "file %d line %d %s\n", i, l, (l % (c + 3) == 0 ? "changed in " c : "stable") }' >"f$i.txt"
        done
        export GIT_AUTHOR_DATE="2024-01-0$c 12:00:00 +0000" GIT_COMMITTER_DATE="2024-01-0$c 12:00:00 +0000"
        pre git add -A || return 1
        pre git commit -q -m "commit $c" || return 1
    done
    # a branch with its own commits, merged back without fast-forward
    pre git checkout -q -b topic HEAD~2 || return 1
    for c in 1 2 3; do
        awk -v c="$c" 'BEGIN { for (l = 0; l < 300; l++) printf "topic %d line %d\n", c, l }' >"t$c.txt"
        export GIT_AUTHOR_DATE="2024-02-0$c 12:00:00 +0000" GIT_COMMITTER_DATE="2024-02-0$c 12:00:00 +0000"
        pre git add -A && pre git commit -q -m "topic $c" || return 1
    done
    pre git checkout -q main || return 1
    pre git merge -q --no-ff -m "merge topic" topic || return 1
    pre git log -p --format='%H %s' | md5sum
    pre git log --graph --oneline --all
    pre git log --stat --format='%H %s' | head -400
    pre git diff HEAD~3 HEAD --stat
    pre git diff HEAD~1 HEAD | md5sum
    pre git gc -q || return 1
    # fsck's findings are its exit status; its stderr is not merged into
    # what is compared, so that memscope's own lines there (trace, stats,
    # http= in each child git starts: tests/stress/realprogs.sh) do not
    # count as output, as nowhere else in these jobs
    pre git fsck --full --strict || return 1
    pre git rev-list --objects --all | sort | md5sum
    pre git archive HEAD | md5sum
    pre git count-objects -v | grep -E '^(count|in-pack|packs):'
}
if have git; then run_both git job_git; else skipped git; fi

# ---------------------------------------------------------------- gcc
# A generated C file with many functions and a big initialised table keeps
# cc1's allocator busy; the object must be byte-identical and the program's
# output the same.
awk 'BEGIN {
    print "#include <stdio.h>"; print "#include <string.h>";
    printf "static const unsigned tab[] = {"; for (i = 0; i < 20000; i++) printf "%d,", (i * 2654435761) % 65536; print "};";
    for (f = 0; f < 150; f++) {
        printf "static unsigned fn%d(unsigned x) { unsigned a = x;\n", f;
        for (k = 0; k < 12; k++) printf "  a = (a * %d + tab[(a + %d) %% 20000]) ^ (a >> %d);\n", 2 * f + 3, k, k % 7 + 1;
        print "  switch (a % 8) { case 0: a += 1; break; case 1: a ^= 3; break; case 2: a *= 5; break; default: a -= 7; }";
        print "  return a; }";
    }
    print "int main(void) { unsigned s = 1; char buf[64];";
    for (f = 0; f < 150; f++) printf "  s = fn%d(s);\n", f;
    print "  snprintf(buf, sizeof buf, \"%u\", s); printf(\"checksum %s %zu\\n\", buf, strlen(buf)); return 0; }";
}' >"$TMP/gen.c"
job_gcc() {
    pre gcc -O2 -c "$TMP/gen.c" -o "$TMP/gen.$1.o" || return 1
    pre gcc "$TMP/gen.$1.o" -o "$TMP/gen.$1" || return 1
    md5sum <"$TMP/gen.$1.o"
    "$TMP/gen.$1"
}
if have gcc; then run_both gcc job_gcc; else skipped gcc; fi

# ---------------------------------------------------------------- coreutils
# Essential tools under memscope, bash included: a bash loop that forks and
# execs, sort with two threads (--parallel=2, a buffer small enough to merge
# temporary files), and tar piped into gzip.
job_coreutils() {
    pre bash -c '
        declare -A m; s=""
        for ((i = 0; i < 20000; i++)); do m["k$((i * 7919 % 100003))"]=$i; s+="${i: -1}"; done
        echo "assoc ${#m[@]} ${#s}"
        n=0; for i in $(seq 1 150); do v=$(echo "$i" | tr 0-9 a-j); n=$((n + ${#v})); done; echo "forks $n"
        awk "BEGIN { for (i = 0; i < 300000; i++) printf \"%d %x\\n\", (i * 2654435761) % 1000003, i }" >"$0/sort.in"
        LC_ALL=C sort -S 2M --parallel=2 -T "$0" "$0/sort.in" | md5sum
        LC_ALL=C sort -n -k1,1 --parallel=2 "$0/sort.in" | md5sum
        tar --sort=name --mtime=2020-01-01 --owner=0 --group=0 --numeric-owner -C "$1" -cf - src include | gzip -n | md5sum
    ' "$TMP" "$ROOT"
}
run_both coreutils job_coreutils

# ---------------------------------------------------------------- make
# Build this project's library into a temp dir with make, gcc, as and ld all
# running on memscope; it must succeed and export the same symbols as the
# library under test.
job_make() {
    [ "$1" = ms ] || { echo "plain run not needed"; return 0; }
    pre make -s -C "$ROOT" -j2 BUILD="$TMP/mkbuild" lib >"$TMP/make.log" 2>&1 || { cat "$TMP/make.log" >&2; return 1; }
    ls "$TMP/mkbuild/libmemscope.so" "$TMP/mkbuild/libmemscope.a" "$TMP/mkbuild/debug/libmemscope.a" >/dev/null || return 1
}
if have make && have gcc; then
    PRE=$LIB job_make ms >"$TMP/make.ms.out" 2>"$TMP/make.ms.err"; rc=$?
    if [ "$rc" -ne 0 ]; then
        bad "make: building the project under memscope failed (exit $rc)"; tail -15 "$TMP/make.ms.err" | sed 's/^/       | /'
    else
        nm -D --defined-only "$TMP/mkbuild/libmemscope.so" | awk '{print $NF}' | sort >"$TMP/syms.new"
        nm -D --defined-only "$LIB" | awk '{print $NF}' | sort >"$TMP/syms.ref"
        if grep -qx memscope_version "$TMP/syms.ref" && ! cmp -s "$TMP/syms.new" "$TMP/syms.ref"; then
            bad "make: library built under memscope exports different symbols"
            diff "$TMP/syms.ref" "$TMP/syms.new" | head | sed 's/^/       | /'
        else
            ok "make (project built under memscope, $(wc -l <"$TMP/syms.new") exported symbols)"
        fi
    fi
else
    skipped make
fi

echo "test_realprogs: $pass ok, $fail failed, $skip skipped"
# a skip is not a pass: every program is a declared dependency
[ "$fail" -eq 0 ] && [ "$skip" -eq 0 ]
