#!/usr/bin/env bash
# test_report.sh: black-box tests of `memscope report` (tools/report.c,
# tools/pprofread.c).
#
# The oracle is pprof itself.  On Go's reference profiles
# (/work/shared/reference/go/pprof or tests/data/go if copied there) the flat
# and cum figures of every row, and the totals, must equal what
# `go tool pprof -top` prints -- run live when `go` is installed, else read
# from the recorded heap.top_*.txt.  Figures are compared as numbers (units
# turned into bytes, within the rounding of the printed digits), names as
# text.  Then memscope-shaped profiles written by tests/data/mkpprof.py pin the
# features Go's profiles lack (peak_*, inlining, recursion, system_name,
# unsymbolized frames, unpacked fields), again against pprof when present,
# and garbage input must give exit 1 and one line on stderr, never a crash.
# Prints one line per failed check; exits non-zero if any failed.
set -u
cd "$(dirname "$0")/.." || exit 1

BUILD=${BUILD:-build}
MS=$BUILD/memscope
failures=0
checks=0

fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
note() { checks=$((checks + 1)); }

if [ ! -x "$MS" ]; then
    echo "FAIL: $MS missing (run 'make $MS' first)"
    exit 1
fi
REF=""
for d in /work/shared/reference/go/pprof tests/data/go; do
    if [ -f "$d/heap.pb.gz" ]; then REF=$d; break; fi
done
HAVE_GO=0
if command -v go >/dev/null 2>&1 && go tool pprof -h >/dev/null 2>&1; then HAVE_GO=1; fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export TZ=UTC

# run CMD...: runs CMD with stdout/stderr captured; sets rc, out, err, nerr.
run() {
    "$@" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    out=$(cat "$tmp/out")
    err=$(cat "$tmp/err")
    nerr=$(wc -l <"$tmp/err")
}

# rows FILE: the table rows of a -top output as "flat<TAB>cum<TAB>name",
# name without memscope's file:line column (split at two spaces).
rows() {
    awk 'f { flat=$1; cum=$4; sub(/^ *[^ ]+ +[^ ]+ +[^ ]+ +[^ ]+ +[^ ]+  /, "");
             sub(/  .*$/, ""); sub(/ \((partial-)?inline\)$/, "");
             printf "%s\t%s\t%s\n", flat, cum, $0 }
         /^ *flat +flat% +sum% +cum +cum%/ { f=1 }' "$1"
}

# bytes VALUE: a pprof figure ("512.20kB", "-1.50MB", "+3", "0") as a number.
to_bytes() {
    awk -v v="$1" 'BEGIN { m=1; s=v; sub(/^\+/, "", s)
        if (s ~ /kB$/) m=1024; else if (s ~ /MB$/) m=1048576; else if (s ~ /GB$/) m=1073741824;
        else if (s ~ /TB$/) m=1099511627776;
        sub(/[kMGT]?B$/, "", s); printf "%.0f\n", s * m }'
}

# same_value A B: two printed figures agree within the rounding of 2 decimals.
same_value() {
    awk -v a="$(to_bytes "$1")" -v b="$(to_bytes "$2")" -v ua="$1" 'BEGIN {
        m=1; if (ua ~ /kB$/) m=1024; else if (ua ~ /MB$/) m=1048576; else if (ua ~ /GB$/) m=1073741824;
        d=a-b; if (d<0) d=-d; exit !(d <= 0.006*m + 0.5) }'
}

# compare_tables DESC WANT GOT [names]: same row count, same flat and cum per
# row; with "names", the same names too (a name cut with "..." must be a
# prefix of pprof's).
compare_tables() {
    local desc=$1 want=$2 got=$3 names=${4:-}
    rows "$want" >"$tmp/w.rows"
    rows "$got" >"$tmp/g.rows"
    note
    if [ ! -s "$tmp/w.rows" ] || [ "$(wc -l <"$tmp/w.rows")" -ne "$(wc -l <"$tmp/g.rows")" ]; then
        fail "$desc: $(wc -l <"$tmp/g.rows") rows, pprof has $(wc -l <"$tmp/w.rows")"
        return
    fi
    local i=0 wf wc wn gf gc gn
    while IFS=$'\t' read -r wf wc wn <&3 && IFS=$'\t' read -r gf gc gn <&4; do
        i=$((i + 1))
        note
        if ! same_value "$wf" "$gf" || ! same_value "$wc" "$gc"; then
            fail "$desc: row $i flat/cum $gf/$gc, pprof $wf/$wc"
        elif [ -n "$names" ] && [ "$wn" != "$gn" ] && [[ "$gn" != *... || "$wn" != "${gn%...}"* ]]; then
            fail "$desc: row $i name '$gn', pprof '$wn'"
        fi
    done 3<"$tmp/w.rows" 4<"$tmp/g.rows"
    # the totals line: "Showing nodes accounting for X, P% of T total"
    local wt gt
    wt=$(sed -n 's/^Showing nodes accounting for \([^,]*\), .* of \([^ ]*\) total$/\1 \2/p' "$want")
    gt=$(sed -n 's/^Showing nodes accounting for \([^,]*\), .* of \([^ ]*\) total$/\1 \2/p' "$got")
    note
    # shellcheck disable=SC2086
    if [ -z "$gt" ] || ! same_value ${wt% *} ${gt% *} || ! same_value ${wt#* } ${gt#* }; then
        fail "$desc: totals '$gt', pprof '$wt'"
    fi
}

# check_width DESC FILE: no line wider than 80 columns (bytes: never fewer).
check_width() {
    note
    local wide
    wide=$(LC_ALL=C awk 'length($0) > 80' "$2" | head -n 1)
    [ -z "$wide" ] || fail "$1: line over 80 columns: $wide"
}

# pprof_top FILE SAMPLE_INDEX OUT: live pprof, or false if there is no go.
pprof_top() {
    [ "$HAVE_GO" -eq 1 ] || return 1
    HOME=${HOME:-$tmp} go tool pprof -symbolize=none -top -sample_index="$2" "$1" >"$3" 2>"$tmp/pprof.err" ||
        { fail "go tool pprof -top $1 failed: $(head -n 3 "$tmp/pprof.err")"; return 1; }
}

# --- Go's reference profiles against pprof ---------------------------------
if [ -z "$REF" ]; then
    echo "note: Go reference profiles not found; skipping the pprof comparisons"
else
    for prof in heap allocs; do
        for si in inuse_space alloc_space; do
            f=$REF/$prof.pb.gz
            flag=--inuse
            [ "$si" = alloc_space ] && flag=--alloc
            run "$MS" report "$f" "$flag" --top 0
            note
            if [ "$rc" -ne 0 ] || [ "$nerr" -ne 0 ]; then fail "report $prof $flag: exit $rc: $err"; continue; fi
            cp "$tmp/out" "$tmp/ms.txt"
            check_width "report $prof $flag" "$tmp/ms.txt"
            note
            grep -qx "Type: $si" "$tmp/ms.txt" || fail "report $prof $flag: no 'Type: $si' line"
            if pprof_top "$f" "$si" "$tmp/pp.txt"; then
                compare_tables "$prof $si vs go tool pprof" "$tmp/pp.txt" "$tmp/ms.txt" names
                # same header lines apart from the table (Dropped N nodes ...)
                note
                want=$(grep -E '^(File|Type|Time|Dropped|Showing top)' "$tmp/pp.txt")
                got=$(grep -E '^(File|Type|Time|Dropped|Showing top)' "$tmp/ms.txt")
                [ "$want" = "$got" ] || fail "$prof $si header: '$got', pprof '$want'"
            elif [ "$prof" = heap ]; then
                rec=$REF/heap.top_$si.txt
                [ -f "$rec" ] && compare_tables "$prof $si vs recorded pprof" "$rec" "$tmp/ms.txt" names
            fi
        done
    done
    # default sample type: heap has none set (last type: inuse_space),
    # allocs sets alloc_space
    run "$MS" report "$REF/heap.pb.gz"
    note; [[ "$out" == *$'\nType: inuse_space\n'* ]] || fail "heap default type is not inuse_space"
    run "$MS" report "$REF/allocs.pb.gz"
    note; [[ "$out" == *$'\nType: alloc_space\n'* ]] || fail "allocs default type is not alloc_space"
    # uncompressed input reads the same as gzipped
    gzip -dc "$REF/heap.pb.gz" >"$tmp/heap.pb"
    run "$MS" report "$tmp/heap.pb"
    note; [ "$out" = "$("$MS" report "$REF/heap.pb.gz")" ] || fail "plain and gzipped heap profile differ"
    # missing sample type: one line naming the types present
    run "$MS" report "$REF/heap.pb.gz" --peak
    note
    if [ "$rc" -ne 1 ] || [ "$nerr" -ne 1 ] || [[ "$err" != *peak_space*inuse_space* ]]; then
        fail "--peak on a Go profile: want exit 1 + one line listing the types, got $rc: $err"
    fi
    # --diff of a file with itself: nothing grew
    run "$MS" report --diff "$REF/heap.pb.gz" "$REF/heap.pb.gz" --alloc
    note
    if [ "$rc" -ne 0 ] || [ -n "$(rows "$tmp/out")" ] || [[ "$out" != *"Showing what grew between"* ]]; then
        fail "--diff X X: want exit 0, header and no rows, got $rc: $out"
    fi
fi

# --- memscope-shaped profiles ----------------------------------------------
if ! command -v python3 >/dev/null 2>&1; then
    fail "python3 missing: cannot write the synthetic profiles"
else
    python3 tests/data/mkpprof.py base "$tmp/base.pb"
    python3 tests/data/mkpprof.py base "$tmp/base-u.pb.gz" --gzip --unpacked
    python3 tests/data/mkpprof.py new "$tmp/new.pb.gz" --gzip
    B=$tmp/base.pb

    # row NAME: the row of function NAME in $tmp/out as "flat cum loc"
    row() {
        awk -v n="$1" '{ line=$0; sub(/^ *[^ ]+ +[^ ]+ +[^ ]+ +[^ ]+ +[^ ]+  /, "", line)
                         split(line, p, "  +"); if (p[1] == n) { print $1, $4, p[2]; exit } }' "$tmp/out"
    }
    # expect_row NAME FLAT CUM [LOC]: figures in bytes (or counts).
    expect_row() {
        local r f c l
        r=$(row "$1")
        note
        if [ -z "$r" ]; then fail "$desc: no row for '$1'"; return; fi
        read -r f c l <<<"$r"
        if ! same_value "$f" "$2" || ! same_value "$c" "$3" || { [ -n "${4:-}" ] && [ "$l" != "$4" ]; }; then
            fail "$desc: '$1' row is '$r', want flat $2 cum $3 ${4:-}"
        fi
    }

    desc="base (default type)"
    run "$MS" report "$B"
    note; [[ "$out" == *$'\nType: inuse_space\n'* ]] || fail "$desc: default_sample_type inuse_space not used"
    note; [[ "$out" == "File: demo-app"* ]] || fail "$desc: no 'File: demo-app' (main mapping)"
    expect_row inlined_helper 500000 500000 leak.cc:7     # flat at the innermost (inlined) line
    expect_row 'leaky' 400010 900010 leak.cc:20      # cum includes the inlined caller frame
    expect_row recurse 200000 200000 r.c:100              # twice on a stack, counted once
    expect_row main 0 1350010 main.c:10                   # start_line wins
    expect_row 0x7f00dead 100000 100000 libfoo.so.1       # no function: address + mapping
    note; [ -z "$(row plain_c_func)" ] || fail "$desc: plain_c_func has no inuse bytes, yet has a row"
    note; grep -q '^ .*  std::vector<std:.*\.\.\.  *.*tcc:1138$' "$tmp/out" ||
        fail "$desc: long name not cut with '...' before its file:line"
    check_width "$desc" "$tmp/out"
    desc="C++ operators"
    python3 tests/data/mkpprof.py ops "$tmp/ops.pb"
    run "$MS" report "$tmp/ops.pb"
    expect_row 'Widget::operator()' 1000 1000 w.cc:3      # the parameter list goes, "()" stays
    expect_row 'std::operator<<' 2000 2000 ostream:600
    expect_row 'IntVec<int>::operator[]' 3000 3000 v.h:1040
    run "$MS" report "$tmp/base-u.pb.gz"
    note; [ "$out" = "$("$MS" report "$B")" ] || fail "unpacked+gzipped profile reads differently from packed"

    desc="base --alloc"; run "$MS" report "$B" --alloc
    expect_row plain_c_func 3000000 3000000 c.c:5         # system_name when name is empty
    desc="base --peak"; run "$MS" report "$B" --peak
    note; [[ "$out" == *$'\nType: peak_space\n'* ]] || fail "$desc: not peak_space"
    expect_row recurse 300000 300000
    desc="base --sample-index alloc_objects"; run "$MS" report "$B" --sample-index alloc_objects
    expect_row plain_c_func 100 100
    note; [[ "$(row plain_c_func)" == "100 100 "* ]] || fail "$desc: counts not printed plain"
    desc="base --sample-index=1"; run "$MS" report "$B" --sample-index=1
    note; [[ "$out" == *$'\nType: alloc_space\n'* ]] || fail "$desc: index 1 is not alloc_space"
    desc="base --lines"; run "$MS" report "$B" --lines --alloc --top 0
    note; [ "$(grep -c 'leaky *leak.cc:2[05]$' "$tmp/out")" -eq 2 ] ||
        fail "$desc: want two leaky rows, leak.cc:20 and leak.cc:25"
    check_width "$desc" "$tmp/out"

    # --top
    run "$MS" report "$B" --top 2
    note; [ "$(rows "$tmp/out" | wc -l)" -eq 2 ] || fail "--top 2: $(rows "$tmp/out" | wc -l) rows"
    note; [[ "$out" == *$'\nShowing top 2 nodes out of 6\n'* ]] || fail "--top 2: no 'Showing top 2 nodes out of 6'"
    run "$MS" report "$B" --top 0
    note; [ "$(rows "$tmp/out" | wc -l)" -eq 6 ] || fail "--top 0: $(rows "$tmp/out" | wc -l) rows, want 6"
    note; [[ "$out" != *"Showing top"* ]] || fail "--top 0 still says 'Showing top'"

    # the same figures as pprof, for every space type
    for si in inuse_space alloc_space peak_space; do
        "$MS" report "$B" --sample-index "$si" --top 0 >"$tmp/ms.txt" 2>&1
        if pprof_top "$B" "$si" "$tmp/pp.txt"; then
            compare_tables "synthetic $si vs go tool pprof" "$tmp/pp.txt" "$tmp/ms.txt"
        fi
    done

    # --diff: leaky grew by 500000, recurse shrank by 150000
    desc="diff base new"; run "$MS" report --diff "$B" "$tmp/new.pb.gz"
    note; [ "$rc" -eq 0 ] || fail "$desc: exit $rc: $err"
    expect_row 'leaky' +500000 +500000
    expect_row recurse -150000 -150000
    note; [[ "$(rows "$tmp/out" | head -n 1)" == +*"leaky" ]] || fail "$desc: leaky growth is not the first row"
    note; [[ "$out" == *"Showing what grew between"* ]] || fail "$desc: no 'Showing what grew' header"
    check_width "$desc" "$tmp/out"
    desc="diff new base"; run "$MS" report --diff "$tmp/new.pb.gz" "$B"
    expect_row 'leaky' -500000 -500000
    expect_row recurse +150000 +150000
    run "$MS" report --diff "$B" "$tmp/base-u.pb.gz"
    note; [ -z "$(rows "$tmp/out")" ] || fail "diff of equal profiles has rows: $out"
fi

# --- bad input: exit 1, one line on stderr, nothing on stdout, no crash ----
# expect_bad DESC FILE...: checks `memscope report FILE...`
expect_bad() {
    local desc=$1
    shift
    run "$MS" report "$@"
    note
    if [ "$rc" -ge 128 ]; then
        fail "$desc: killed by signal $((rc - 128))"
    elif [ "$rc" -ne 1 ] || [ "$nerr" -ne 1 ] || [ -n "$out" ] || [[ "$err" != memscope:* ]]; then
        fail "$desc: want exit 1 + one 'memscope:' line, got exit $rc, $nerr lines: $err"
    fi
}
: >"$tmp/empty"
expect_bad "empty file" "$tmp/empty"
expect_bad "missing file" "$tmp/no-such-file"
expect_bad "directory" "$tmp"
LC_ALL=C awk 'BEGIN { srand(42); for (i = 0; i < 4096; i++) printf "%c", int(rand() * 256) }' >"$tmp/random"
expect_bad "random bytes" "$tmp/random"
printf '\037\213' >"$tmp/magic.gz"
expect_bad "gzip magic only" "$tmp/magic.gz"
expect_bad "text file" Makefile
# a file of 2 GiB (sparse) is refused by its size, before anything is read:
# reading it first held 1 GiB of memory before saying so
truncate -s 2G "$tmp/huge.pb"
run /usr/bin/time -f '%M' -o "$tmp/huge.rss" "$MS" report "$tmp/huge.pb"
note
[ "$rc" = 1 ] && grep -q 'too large' "$tmp/err" && [ "$(tail -1 "$tmp/huge.rss")" -lt 65536 ] ||
    fail "a 2 GiB file: exit $rc, max RSS $(tail -1 "$tmp/huge.rss") KiB (want under 64 MiB), $err"
rm -f "$tmp/huge.pb"
src=""
if [ -n "$REF" ]; then src=$REF/heap.pb.gz; elif [ -f "$tmp/new.pb.gz" ]; then src=$tmp/new.pb.gz; fi
if [ -n "$src" ]; then
    n=$(wc -c <"$src")
    head -c $((n / 2)) "$src" >"$tmp/half.gz"
    expect_bad "truncated gzip" "$tmp/half.gz"
    gzip -dc "$src" >"$tmp/whole.pb"
    # every truncation of the uncompressed profile: an error or a report of
    # what is there, never a crash
    n=$(wc -c <"$tmp/whole.pb")
    crashed=0
    for ((i = 1; i < n; i += 7)); do
        head -c "$i" "$tmp/whole.pb" >"$tmp/cut.pb"
        "$MS" report "$tmp/cut.pb" >/dev/null 2>"$tmp/err"
        r=$?
        if [ "$r" -ge 2 ] || [ "$(wc -l <"$tmp/err")" -gt 1 ]; then
            crashed=$((crashed + 1))
            [ "$crashed" -eq 1 ] && fail "truncated at $i bytes: exit $r: $(head -n 2 "$tmp/err")"
        fi
    done
    note
    # a corrupt byte inside the gzip stream
    { head -c 40 "$src"; printf '\377\377\377\377'; tail -c +45 "$src"; } >"$tmp/corrupt.gz"
    expect_bad "corrupt gzip" "$tmp/corrupt.gz"
fi

# --- usage errors: exit 2, one line --------------------------------------
for args in "" "--top" "--top x FILE" "--diff ONE" "A B" "--bogus FILE" "--inuse --alloc FILE"; do
    # shellcheck disable=SC2086
    run "$MS" report $args
    note
    if [ "$rc" -ne 2 ] || [ "$nerr" -ne 1 ]; then
        fail "report $args: want exit 2 + one line, got $rc, $nerr lines: $err"
    fi
done
run "$MS" report --help
note; if [ "$rc" -ne 0 ] || [[ "$out" != usage:* ]]; then fail "report --help: exit $rc"; fi
run "$MS" --help
note; [[ "$out" == *"memscope report"* ]] || fail "memscope --help does not mention report"

echo "test_report: $checks checks, $failures failed$([ "$HAVE_GO" -eq 1 ] || echo ' (no go: compared with recorded pprof output)')"
[ "$failures" -eq 0 ]
