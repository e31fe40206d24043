#!/usr/bin/env bash
# test_cli.sh: black-box tests of the `memscope` CLI (tools/memscope.c).
#
# Run from the repository root after `make all` (BUILD=dir if not build/).
# Every check runs the real build/memscope, which preloads the real
# build/libmemscope.so into the commands it runs, so these also smoke-test the
# allocator under sh, env, printf and ls.  Prints one line per failed check
# and exits with the number of failures (0 = all passed).
# shellcheck disable=SC2016 # single-quoted $VARs are expanded by the command run, on purpose
set -u
cd "$(dirname "$0")/.." || exit 1

BUILD=${BUILD:-build}
MS=$BUILD/memscope
LIB=$BUILD/libmemscope.so
failures=0
checks=0

fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
note() { checks=$((checks + 1)); }

for f in "$MS" "$LIB"; do
    if [ ! -e "$f" ]; then
        echo "FAIL: $f missing (run 'make all' first)"
        exit 1
    fi
done
LIBABS=$(realpath "$LIB")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# run CMD...: runs CMD with stdout/stderr captured; sets rc, out, err, nerr.
run() {
    "$@" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    out=$(cat "$tmp/out")
    err=$(cat "$tmp/err")
    nerr=$(wc -l <"$tmp/err")
}

# expect_rc WANT DESC: checks $rc.
expect_rc() {
    note
    [ "$rc" -eq "$1" ] || fail "$2: exit status $rc, want $1 (stderr: $err)"
}

# expect_out WANT DESC: checks $out exactly.
expect_out() {
    note
    [ "$out" = "$1" ] || fail "$2: stdout '$out', want '$1'"
}

# expect_usage_error DESC: exit 2 and exactly one stderr line, nothing on stdout.
expect_usage_error() {
    note
    if [ "$rc" -ne 2 ] || [ "$nerr" -ne 1 ] || [ -n "$out" ]; then
        fail "$1: want exit 2 + one stderr line, got exit $rc, $nerr stderr lines: $err"
    fi
}

# --- exit status passes through --------------------------------------------
run "$MS" run -- sh -c 'exit 7'
expect_rc 7 "run -- sh -c 'exit 7'"
run "$MS" run -- true
expect_rc 0 "run -- true"
run "$MS" run -- false
expect_rc 1 "run -- false"
# exec, not fork: a signal that kills the command kills "memscope" itself.
# (in a subshell so bash's "Terminated" notice goes to /dev/null)
rc=$( ( "$MS" run -- sh -c 'kill -TERM $$' ) 2>/dev/null; echo $? )
err=""
expect_rc 143 "run -- sh killed by SIGTERM"

# --- command not found / not executable ------------------------------------
run "$MS" run -- /nonexistent-cmd
expect_rc 127 "run -- /nonexistent-cmd"
note
if [ "$nerr" -ne 1 ] || [[ "$err" != *"command not found"* ]]; then
    fail "/nonexistent-cmd: want one stderr line with 'command not found', got $nerr: $err"
fi
run "$MS" run -- memscope-no-such-command-xyz
expect_rc 127 "run -- PATH search for a missing command"
note
[ "$err" = "memscope: memscope-no-such-command-xyz: command not found" ] ||
    fail "missing command on PATH: stderr '$err'"
printf '#!/bin/sh\necho hi\n' >"$tmp/noexec.sh"
chmod 644 "$tmp/noexec.sh"
run "$MS" run -- "$tmp/noexec.sh"
expect_rc 126 "run -- non-executable file"
note
[ "$nerr" -eq 1 ] || fail "non-executable file: want one stderr line, got $nerr: $err"
run "$MS" run -- "$tmp"
expect_rc 126 "run -- a directory"

# --- environment given to the command --------------------------------------
run env -u LD_PRELOAD "$MS" run -- sh -c 'echo "$LD_PRELOAD"'
expect_out "$LIBABS" "LD_PRELOAD is the absolute library path"
note
[[ "$out" == /*libmemscope.so ]] || fail "LD_PRELOAD '$out' is not an absolute path ending in libmemscope.so"
run env LD_PRELOAD=/nonexistent/other.so "$MS" run -- sh -c 'echo "$LD_PRELOAD"'
expect_out "$LIBABS:/nonexistent/other.so" "library prepended to an existing LD_PRELOAD"

run env -u MEMSCOPE "$MS" run --trace -- sh -c 'echo "$MEMSCOPE"'
expect_out "trace=1" "--trace"
run env -u MEMSCOPE "$MS" run -- sh -c 'echo "${MEMSCOPE-unset}"'
expect_out "unset" "no flags leave MEMSCOPE unset"
run env -u MEMSCOPE "$MS" run --stats --trace -- sh -c 'echo "$MEMSCOPE"'
expect_out "stats=1,trace=1" "--stats --trace"
run env MEMSCOPE=scavenge_delay_ms=5,trace=0 "$MS" run --trace -- sh -c 'echo "$MEMSCOPE"'
expect_out "scavenge_delay_ms=5,trace=1" "merged with an existing MEMSCOPE, command line wins"
run env -u MEMSCOPE "$MS" run --env MEMSCOPE=scavenge_delay_ms=1,stats=0 --stats -- sh -c 'echo "$MEMSCOPE"'
expect_out "scavenge_delay_ms=1,stats=1" "--env MEMSCOPE=... adds keys; later flag wins"
run env -u MEMSCOPE_TEST_VAR "$MS" run --env MEMSCOPE_TEST_VAR=a=b -- sh -c 'echo "$MEMSCOPE_TEST_VAR"'
expect_out "a=b" "--env K=V sets K"

# --- where options stop ------------------------------------------------------
run env -u MEMSCOPE "$MS" run --trace sh -c 'echo "$MEMSCOPE"'
expect_out "trace=1" "first non-option word starts the command (no --)"
run env -u MEMSCOPE "$MS" run -- printf '%s\n' --stats --
expect_out $'--stats\n--' "arguments after -- go to the command verbatim"
run env -u MEMSCOPE "$MS" run echo --trace
expect_out "--trace" "options after the command word belong to the command"
run env -u MEMSCOPE "$MS" run -- sh -c 'echo "${MEMSCOPE-unset}"' --trace
expect_out "unset" "--trace after the command is not memscope's"

# --- usage errors -------------------------------------------------------------
run "$MS" run --bogus -- true
expect_usage_error "run --bogus"
run "$MS" bogus
expect_usage_error "unknown subcommand"
run "$MS" --bogus
expect_usage_error "unknown top-level option"
run "$MS"
expect_usage_error "no subcommand"
run "$MS" run
expect_usage_error "run without a command"
run "$MS" run --trace --
expect_usage_error "run -- without a command"
run env -u MEMSCOPE "$MS" run --http 127.0.0.1:0 -- sh -c 'echo "$MEMSCOPE"'
note
case $out in
*http=127.0.0.1:0*) ;;
*) fail "--http ADDR:PORT: want http=127.0.0.1:0 in MEMSCOPE, got '$out'" ;;
esac
note
case $err in
"memscope: serving http://127.0.0.1:"*) ;;
*) fail "--http: want the one 'serving' line on stderr, got: $err" ;;
esac
run "$MS" run --http
expect_usage_error "--http without an address"
run "$MS" run --env NOEQUALS -- true
expect_usage_error "--env without ="

# --- help and version ---------------------------------------------------------
run "$MS" --help
expect_rc 0 "--help"
note
[[ "$out" == usage:* ]] || fail "--help does not start with 'usage:'"
run "$MS" run --help
expect_rc 0 "run --help"
want_version=$(sed -n 's/^VERSION *:*= *//p' Makefile)
run "$MS" version
expect_rc 0 "version"
note
[ "$(head -n1 <<<"$out")" = "memscope $want_version" ] ||
    fail "version: first line '$(head -n1 <<<"$out")', want 'memscope $want_version'"

# --- a real program gives the same output with and without memscope -------
for cmd in "ls /" "ls -lR /usr/include/linux" "sort -r Makefile" "env -u LD_PRELOAD -u MEMSCOPE -u _ env"; do
    # shellcheck disable=SC2086
    plain=$($cmd 2>&1)
    plain_rc=$?
    # shellcheck disable=SC2086
    run "$MS" run -- $cmd
    expect_rc "$plain_rc" "run -- $cmd"
    expect_out "$plain" "run -- $cmd (stdout differs from a plain run)"
done
run "$MS" run --stats -- ls /
expect_rc 0 "run --stats -- ls /"
expect_out "$(ls /)" "run --stats -- ls / (stdout)"

# --- library lookup -----------------------------------------------------------
# install layout: PREFIX/bin/memscope finds PREFIX/lib/libmemscope.so
mkdir -p "$tmp/p/bin" "$tmp/p/lib"
cp "$MS" "$tmp/p/bin/memscope"
cp "$LIB" "$tmp/p/lib/libmemscope.so"
run "$tmp/p/bin/memscope" run -- sh -c 'echo "$LD_PRELOAD"'
expect_out "$(realpath "$tmp/p/lib/libmemscope.so")" "install layout bin/../lib"
# a symlink to the binary still finds the library next to the real binary
ln -s "$tmp/p/bin/memscope" "$tmp/link"
run env -u LD_PRELOAD "$tmp/link" run -- sh -c 'echo "$LD_PRELOAD"'
expect_out "$(realpath "$tmp/p/lib/libmemscope.so")" "symlinked binary"
# no library anywhere: one-line error, non-zero, command not run
mkdir -p "$tmp/nolib/bin"
cp "$MS" "$tmp/nolib/bin/memscope"
run "$tmp/nolib/bin/memscope" run -- sh -c 'echo ran'
note
if [ "$rc" -eq 0 ] || [ "$nerr" -ne 1 ] || [ -n "$out" ]; then
    fail "library missing: want non-zero exit, one stderr line, command not run; got exit $rc, out '$out', err '$err'"
fi

# a program the loader cannot preload into runs, with one line saying that
# it runs without memscope (it once ran silently, without what was asked)
printf 'int main(void) { return 3; }\n' >"$tmp/static.c"
if ! ${CC:-cc} -static -o "$tmp/static" "$tmp/static.c" 2>"$tmp/cc.err"; then
    fail "cannot build a static test program (libc6-dev's libc.a): $(head -1 "$tmp/cc.err")"
else
    run "$MS" run --stats -- "$tmp/static"
    note
    [ "$rc" = 3 ] && [ "$nerr" = 1 ] && grep -q 'statically linked.*runs without memscope' "$tmp/err" ||
        fail "run on a static program: exit $rc (want 3), stderr: $err"
    run "$MS" run -- true # a dynamic one: nothing said
    note
    [ "$rc" = 0 ] && [ "$nerr" = 0 ] || fail "run true: exit $rc, stderr: $err"
fi

echo "test_cli: $checks checks, $failures failed"
[ "$failures" -eq 0 ]
