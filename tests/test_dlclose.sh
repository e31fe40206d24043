#!/usr/bin/env bash
# test_dlclose.sh: stacks through a plugin opened where a closed one was.
#
# Why: the stack walker (src/prof/unwind.c) keeps each return address's
# unwind recipe in a table.  A program that closes a plugin and opens
# another, which the loader maps at the same address, must not have its
# stacks walked with the closed plugin's recipes: they gave a one-frame
# stack every time, in this loop of two plugins whose work() frames differ
# in size (found by a helper session).  memscope's dlclose empties the table
# as soon as the C library's returns.  Every block the plugins leak must be
# reported under a stack that goes on to main.
set -u
. "$(dirname "$0")/prelude.sh"
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
cat > "$T/main.c" <<'CEOF'
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
void *kept[64];
int main(int argc, char **argv) {
    long sum = 0;
    for (int it = 0; it < 6; it++) {
        void *h = dlopen(argv[1 + it % 2], RTLD_NOW | RTLD_LOCAL);
        if (!h) { fprintf(stderr, "%s\n", dlerror()); return 1; }
        long (*work)(int) = (long (*)(int))dlsym(h, "work");
        sum += work(it);
        kept[it] = *(void **)dlsym(h, "keep");
        dlclose(h);
    }
    printf("%ld\n", sum);
    return 0;
}
CEOF
cat > "$T/plugin.c" <<'CEOF'
#include <stdlib.h>
void *keep[1];
long work(int it) {
    volatile char pad[FRAME]; /* the two plugins' frames differ in size */
    pad[0] = 1;
    keep[0] = malloc(1000 + (size_t)it * 10000); /* leaked: still allocated at exit */
    return pad[0];
}
CEOF
cc -O2 -g -o "$T/main" "$T/main.c" -ldl &&
    cc -O2 -g -shared -fPIC -DFRAME=512 -o "$T/small.so" "$T/plugin.c" &&
    cc -O2 -g -shared -fPIC -DFRAME=4096 -o "$T/big.so" "$T/plugin.c" || { echo "FAIL: cc"; exit 1; }

fail=0
for lib in "$LIB" "$BUILD/debug/libmemscope.so"; do
    MEMSCOPE=profile_rate=1,leaks=1 LD_PRELOAD=$lib timeout 60 "$T/main" "$T/small.so" "$T/big.so" > "$T/out" 2> "$T/err"
    rc=$?
    # blocks of the paragraphs whose frame #1 is main (the plugins' allocations)
    n=$(awk '/still allocated at exit, from:/ { k = 0; for (i = 1; i <= NF; i++) if ($i == "in" && $(i+2) ~ /^block/) k = $(i+1) }
             /^ +#1 .* in main / { n += k }
             END { print n + 0 }' "$T/err")
    if [ $rc -eq 0 ] && [ "$n" -eq 6 ]; then
        echo "ok: $(basename "$(dirname "$lib")")/$(basename "$lib"): all 6 plugin blocks under stacks that reach main"
    else
        echo "FAIL: $lib: exit $rc, $n of 6 plugin blocks under stacks that reach main"; head -20 "$T/err"; fail=1
    fi
done
[ $fail -eq 0 ] && echo "test_dlclose: all ok"
exit $fail
