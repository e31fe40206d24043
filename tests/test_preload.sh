#!/usr/bin/env bash
# test_preload.sh: memscope preloaded together with another interposer.
#
# Why: the classic malloc-counting shim defines malloc as a call of glibc's
# __libc_malloc (tests/shim_libcnames.c).  memscope defines the __libc_*
# names too, so that no block crosses between two allocators; were they
# calls of malloc, the shim ahead of memscope would be called back for ever
# (a loop at 100% CPU, found by a helper session).  Each order of the two in LD_PRELOAD
# must give the program's own output and exit status, memscope must be the
# allocator (its stats count the blocks), and the shim, when it is first,
# must have seen the calls.  A timeout catches the loop.
set -u
. "$(dirname "$0")/prelude.sh"
SHIM=$BUILD/tests/shim_libcnames.so
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fail=1; }

# the program: many blocks of many sizes, kept, sorted and freed; it prints
# a checksum (sort(1) would do, but closes stderr before the shim reports)
cat > "$T/prog.c" <<'CEOF'
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
static int cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }
int main(void) {
    enum { N = 20000 };
    char **v = calloc(N, sizeof *v);
    for (int i = 0; i < N; i++) {
        v[i] = malloc(8 + (size_t)(i * 7919) % 600);
        snprintf(v[i], 8, "%06d", (i * 7919) % 10007);
        if (i % 3 == 0) v[i] = realloc(v[i], 2000);
    }
    qsort(v, N, sizeof *v, cmp);
    unsigned long sum = 0;
    for (int i = 0; i < N; i++) sum = sum * 31 + (unsigned char)v[i][3] + (unsigned long)i, free(v[i]);
    free(v);
    printf("%lu\n", sum);
    return 0;
}
CEOF
cc -O2 -o "$T/prog" "$T/prog.c" || { echo "FAIL: cc"; exit 1; }
"$T/prog" > "$T/want" || { echo "FAIL: the program fails without memscope"; exit 1; }

for order in "$SHIM $LIB" "$LIB $SHIM"; do
    name=$([ "${order%% *}" = "$SHIM" ] && echo "shim first" || echo "memscope first")
    MEMSCOPE=stats=1 LD_PRELOAD="$order" timeout 60 "$T/prog" > "$T/got" 2> "$T/err"
    rc=$?
    if [ $rc -ne 0 ]; then bad "$name: exited $rc (124: timed out)"; head -5 "$T/err"; continue; fi
    if cmp -s "$T/got" "$T/want"; then ok "$name: same output as without either"; else bad "$name: output differs"; fi
    m=$(awk '$1 == "mallocs" {print $2; exit}' "$T/err")
    if [ -n "$m" ] && [ "$m" -ge 20000 ]; then ok "$name: memscope allocated ($m mallocs)"; else bad "$name: memscope's stats show too few mallocs ('$m')"; fi
    if [ "$name" = "shim first" ]; then
        s=$(sed -n 's/^shim: mallocs \([0-9]*\) .*/\1/p' "$T/err")
        if [ -n "$s" ] && [ "$s" -ge 20000 ]; then ok "$name: the shim saw $s mallocs"; else bad "$name: the shim saw too few mallocs ('$s')"; fi
    fi
done

# a block from either name, freed by the other, in a program linked with memscope
cat > "$T/mix.c" <<'CEOF'
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
extern void *__libc_malloc(size_t); extern void __libc_free(void *);
int main(void) {
    for (int i = 0; i < 100000; i++) {
        char *a = __libc_malloc(16 + i % 3000), *b = malloc(16 + i % 5000);
        memset(a, 1, 16); memset(b, 2, 16);
        free(a); __libc_free(b);
    }
    puts("done");
    return 0;
}
CEOF
if cc -O2 -o "$T/mix" "$T/mix.c" 2> "$T/cc.err"; then
    out=$(LD_PRELOAD="$SHIM $LIB" timeout 60 "$T/mix" 2> "$T/err"); rc=$?
    if [ $rc -eq 0 ] && [ "$out" = done ]; then ok "mixed names under the shim"; else bad "mixed names under the shim: exit $rc, '$out'"; head -3 "$T/err"; fi
else
    bad "cc failed"; cat "$T/cc.err"
fi

# a program with a malloc of its own (Chromium exports one) never calls
# memscope's: with MEMSCOPE set, one line says so; without, nothing; and a
# program that uses memscope's hears nothing of it
cat > "$T/ownlib.c" <<'CEOF'
#include <stddef.h>
static _Alignas(16) char pool[1 << 20];
static size_t used;
void *malloc(size_t n) { void *p = pool + used; used += (n + 15) & ~(size_t)15; return p; }
void free(void *p) { (void)p; }
void *calloc(size_t a, size_t b) { return malloc(a * b); }
void *realloc(void *p, size_t n) { (void)p; return malloc(n); }
CEOF
cat > "$T/own.c" <<'CEOF'
#include <stdio.h>
#include "ownlib.c"
int main(void) { puts("own"); return 0; }
CEOF
if cc -O1 -rdynamic -o "$T/own" "$T/own.c" 2> "$T/cc.err"; then
    err=$(MEMSCOPE=trace=1 LD_PRELOAD="$LIB" timeout 20 "$T/own" 2>&1 >/dev/null)
    [ "$(grep -c 'has a malloc of its own' <<<"$err")" = 1 ] && ok "own malloc: one line" || bad "own malloc with MEMSCOPE set: '$err'"
    err=$(LD_PRELOAD="$LIB" timeout 20 "$T/own" 2>&1 >/dev/null)
    [ -z "$err" ] && ok "own malloc, no MEMSCOPE: silent" || bad "own malloc without MEMSCOPE: '$err'"
    err=$(MEMSCOPE=trace=1 LD_PRELOAD="$LIB" timeout 20 "$T/prog" 2>&1 >/dev/null)
    ! grep -q 'malloc of its own' <<<"$err" && ok "memscope's malloc: no such line" || bad "false own-malloc line: '$err'"
else
    bad "cc failed"; cat "$T/cc.err"
fi

# the same with the other malloc in a library preloaded before memscope, and
# a non-PIE program that takes malloc's address, as python3.11 does: dlsym
# then gives the program's PLT entry, under an undefined symbol, and the
# line must still come (it did not); with memscope alone, none
# (ownlib.c, above, built as a library)
cat > "$T/nopie.c" <<'CEOF'
#include <stdio.h>
#include <stdlib.h>
void *(*volatile alloc_fn)(size_t);
int main(void) { alloc_fn = malloc; free(alloc_fn(10)); puts("nopie"); return 0; }
CEOF
if cc -O1 -fPIC -shared -o "$T/ownlib.so" "$T/ownlib.c" 2> "$T/cc.err" &&
   cc -O1 -fno-pie -no-pie -o "$T/nopie" "$T/nopie.c" 2>> "$T/cc.err"; then
    # env, not timeout, under the preload: timeout would say it too
    err=$(timeout 20 env MEMSCOPE=trace=1 LD_PRELOAD="$T/ownlib.so $LIB" "$T/nopie" 2>&1 >/dev/null)
    [ "$(grep -c 'has a malloc of its own' <<<"$err")" = 1 ] && ok "own malloc preloaded first, non-PIE program: one line" ||
        bad "own malloc preloaded first, non-PIE program: '$err'"
    err=$(timeout 20 env MEMSCOPE=trace=1 LD_PRELOAD="$LIB" "$T/nopie" 2>&1 >/dev/null)
    ! grep -q 'malloc of its own' <<<"$err" && ok "memscope's malloc, non-PIE program: no such line" ||
        bad "false own-malloc line, non-PIE program: '$err'"
else
    bad "cc failed"; cat "$T/cc.err"
fi

[ $fail -eq 0 ] && echo "test_preload: all ok"
exit $fail
