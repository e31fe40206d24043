#!/usr/bin/env bash
# scripts/install-deps.sh: install what memscope's build, tests and benches need.
#
# Run as root (CI does).  Idempotent: if every package is already installed it
# returns at once without touching the network; otherwise one `apt-get update`
# and one install of the missing packages.
#   build:     gcc clang make g++ zlib1g-dev pkgconf cmake (tests/test_install.sh);
#              libunwind-dev (header only: src/prof/stack.c dlopens libunwind8's
#              library when a stack needs it; the unit tests link it);
#              libiberty-dev (C++ demangler, linked statically) and libdw-dev
#              (headers only) for src/prof/symbolize.c; libdw1, dlopen'd at
#              run time for file:line (symbols work without it)
#   tests:     python3 sqlite3 git procps time curl (tests/test_realprogs.sh,
#              strace (test_profile.sh counts a deep stack's system calls),
#              tests/test_cxx.sh, the HTTP endpoint tests); binutils for nm;
#              golang-go for `go tool pprof`, the oracle of tests/test_report.sh
#              for tests/test_http*.sh: prometheus (promtool and a real
#              scrape), chromium (the live page), tmux (memscope top),
#              libclang-rt-14-dev (libFuzzer, ASan/UBSan for clang); golang-go also
#              for go tool pprof fetching the endpoint;
#              libpython3.11-testsuite (CPython's own regression tests) and
#              redis-server redis-tools (tests/test_redis.sh) for tests/test_pysuite.sh
#              and the redis workload under memscope
#   benches:   libjemalloc2 libgoogle-perftools4 libmimalloc2.0 (allocators
#              compared against in bench/); heaptrack and valgrind (the heap
#              profilers bench/run_profile.sh compares memscope's with); liblsan0
#              (LeakSanitizer, preloaded: the oracle of tests/test_leaks.sh and
#              the comparison of bench/run_leaks.sh)
#              redis-server redis-tools (bench/run_apps.sh: redis-server under
#              redis-benchmark; python3 and sqlite3 above serve it too)
set -eu
PKGS="gcc clang make g++ binutils libc6-dev zlib1g-dev libunwind-dev libiberty-dev libdw-dev libdw1 pkgconf cmake python3 sqlite3 git procps time strace curl ca-certificates golang-go
      libpython3.11-testsuite redis-server redis-tools
      prometheus chromium tmux libclang-rt-14-dev
      libjemalloc2 libgoogle-perftools4 libmimalloc2.0 heaptrack valgrind redis-server redis-tools coreutils gawk liblsan0"

missing=""
for p in $PKGS; do
    st=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
    [ "$st" = installed ] || missing="$missing $p"
done
if [ -z "$missing" ]; then
    echo "install-deps: all packages present"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: missing:$missing; run as root (or: sudo $0)" >&2
    exit 1
fi
echo "install-deps: installing:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing
