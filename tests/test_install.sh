#!/usr/bin/env bash
# test_install.sh: `make install` produces a prefix that a user's build can
# consume, both ways a C project finds a library:
#   (a) pkg-config --cflags --libs memscope      (PKG_CONFIG_PATH=PREFIX/lib/pkgconfig)
#   (b) CMake find_package(memscope) + memscope::memscope (CMAKE_PREFIX_PATH=PREFIX)
# The program built each way must run against the *installed* libmemscope.so
# (checked with ldd and by the library's own answers: memscope_version and
# memscope_read_stats counting the program's mallocs).  Also: the static
# archive and memscope::memscope_static, the installed CLI finding
# PREFIX/lib, a moved prefix (the CMake config is relocatable), DESTDIR
# staging, the version file, and uninstall.
#
# Run from the repository root after `make all` (BUILD=dir if not build/).
# Needs cc, make, pkg-config (Debian: pkgconf) and cmake.  Prints one line
# per failed check; exit status 0 only if everything passed.
# shellcheck disable=SC2016 # single-quoted $VARs are expanded by the command run, on purpose
set -u
cd "$(dirname "$0")/.." || exit 1

BUILD=${BUILD:-build}
MAKE=${MAKE:-make}
CC=${CC:-cc}
failures=0
checks=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
check() { # check DESC CMD...: runs CMD quietly, fails with DESC if it fails
    local desc=$1
    shift
    checks=$((checks + 1))
    if ! "$@" >"$tmp/check.log" 2>&1; then
        fail "$desc"
        sed 's/^/    /' "$tmp/check.log" | tail -n 30
        return 1
    fi
}
same() { # same DESC GOT WANT
    checks=$((checks + 1))
    [ "$2" = "$3" ] || fail "$1: got '$2', want '$3'"
}

for tool in "$CC" "$MAKE" pkg-config cmake ldd; do
    if ! command -v "$tool" >/dev/null; then
        case $tool in
        pkg-config) echo "FAIL: pkg-config not found (Debian package: pkgconf)" ;;
        cmake) echo "FAIL: cmake not found (Debian package: cmake)" ;;
        *) echo "FAIL: $tool not found" ;;
        esac
        exit 1
    fi
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
P=$tmp/prefix
VERSION=$(sed -n 's/^VERSION *:*= *//p' Makefile)
HDR_VERSION=$(sed -n 's/^#define MEMSCOPE_VERSION \([0-9]*\).*/\1/p' include/memscope.h)
mk() { "$MAKE" -s --no-print-directory BUILD="$BUILD" "$@"; }

# ---------------------------------------------------------------- install
if ! check "make install PREFIX=$P" mk install PREFIX="$P"; then
    echo "test_install: make install failed, nothing else to test"
    exit 1
fi
for f in bin/memscope lib/libmemscope.so lib/libmemscope.a include/memscope.h \
    lib/pkgconfig/memscope.pc lib/cmake/memscope/memscope-config.cmake \
    lib/cmake/memscope/memscope-config-version.cmake; do
    checks=$((checks + 1))
    [ -f "$P/$f" ] || fail "installed file $P/$f missing"
done
checks=$((checks + 1))
[ -x "$P/bin/memscope" ] || fail "$P/bin/memscope is not executable"
checks=$((checks + 1))
readelf -d "$P/lib/libmemscope.so" | grep -q 'SONAME.*\[libmemscope\.so\]' ||
    fail "installed libmemscope.so has no soname libmemscope.so"

# The test program: its output is deterministic only if it runs on memscope.
mkdir -p "$tmp/src"
cat >"$tmp/src/app.c" <<'CEOF'
#include <memscope.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void)
{
    struct memscope_stats before = {.size = sizeof before}, after = {.size = sizeof after};
    enum { N = 100 };
    char *p[N];

    printf("header %d library %d\n", MEMSCOPE_VERSION, memscope_version());
    fflush(stdout);
    if (memscope_read_stats(&before) != 0) {
        puts("memscope_read_stats failed");
        return 1;
    }
    for (int i = 0; i < N; i++) {
        p[i] = malloc(1000);
        if (!p[i])
            return 1;
        memset(p[i], i, 1000);
    }
    memscope_read_stats(&after);
    printf("stats version %u\n", (unsigned)after.version);
    printf("mallocs counted %s\n", after.mallocs - before.mallocs >= N ? "yes" : "no");
    printf("live objects counted %s\n", after.heap_objects >= before.heap_objects + N ? "yes" : "no");
    for (int i = 0; i < N; i++)
        free(p[i]);
    return 0;
}
CEOF
WANT="header $HDR_VERSION library $HDR_VERSION
stats version $HDR_VERSION
mallocs counted yes
live objects counted yes"

# uses_lib DESC BINARY LIBPATH [env...]: ldd resolves libmemscope.so to LIBPATH
uses_lib() {
    local desc=$1 bin=$2 want
    want=$(realpath "$3")
    shift 3
    local got
    got=$(env "$@" ldd "$bin" | awk '$1 == "libmemscope.so" { print $3 }')
    checks=$((checks + 1))
    if [ -z "$got" ]; then
        fail "$desc: ldd shows no libmemscope.so"
    elif [ "$(realpath "$got")" != "$want" ]; then
        fail "$desc: ldd resolves libmemscope.so to $got, want $want"
    fi
}

# ------------------------------------------------------- (a) pkg-config
export PKG_CONFIG_PATH=$P/lib/pkgconfig
same "pkg-config --modversion" "$(pkg-config --modversion memscope 2>&1)" "$VERSION"
same "pkg-config libdir" "$(pkg-config --variable=libdir memscope)" "$P/lib"
same "pkg-config includedir" "$(pkg-config --variable=includedir memscope)" "$P/include"
checks=$((checks + 1))
[[ " $(pkg-config --static --libs memscope) " == *" -lpthread "* ]] ||
    fail "pkg-config --static --libs lacks -lpthread: $(pkg-config --static --libs memscope)"
PC_FLAGS=$(pkg-config --cflags --libs memscope)
checks=$((checks + 1))
[[ "$PC_FLAGS" == *"-I$P/include"* && "$PC_FLAGS" == *"-L$P/lib"* && "$PC_FLAGS" == *"-lmemscope"* ]] ||
    fail "pkg-config --cflags --libs memscope: '$PC_FLAGS'"
# shellcheck disable=SC2086
if check "build with pkg-config flags ($PC_FLAGS)" \
    "$CC" -std=c11 -Wall -Wextra -Werror "$tmp/src/app.c" -o "$tmp/app_pc" $PC_FLAGS; then
    uses_lib "pkg-config build" "$tmp/app_pc" "$P/lib/libmemscope.so" LD_LIBRARY_PATH="$P/lib"
    same "pkg-config build output" "$(LD_LIBRARY_PATH=$P/lib "$tmp/app_pc" 2>&1)" "$WANT"
fi
unset PKG_CONFIG_PATH

# ----------------------------------------------------------- (b) CMake
cat >"$tmp/src/CMakeLists.txt" <<'CEOF'
cmake_minimum_required(VERSION 3.10)
project(memscope_install_test C)
find_package(memscope REQUIRED)
message(STATUS "memscope_VERSION=${memscope_VERSION}")
add_executable(app app.c)
target_link_libraries(app PRIVATE memscope::memscope)
add_executable(app_static app.c)
target_link_libraries(app_static PRIVATE memscope::memscope_static)
CEOF
# cmake_app DESC PREFIX BUILDDIR: configure + build the project against PREFIX
cmake_app() {
    check "$1: cmake configure (CMAKE_PREFIX_PATH=$2)" \
        cmake -S "$tmp/src" -B "$3" -DCMAKE_PREFIX_PATH="$2" -DCMAKE_C_COMPILER="$CC" &&
        check "$1: cmake --build" cmake --build "$3"
}
if cmake_app "cmake" "$P" "$tmp/cm"; then
    checks=$((checks + 1))
    cmake -S "$tmp/src" -B "$tmp/cm" 2>&1 | grep -q "memscope_VERSION=$VERSION\$" ||
        fail "cmake: memscope_VERSION is not $VERSION"
    # no LD_LIBRARY_PATH: CMake's build rpath must point at the install
    uses_lib "cmake build" "$tmp/cm/app" "$P/lib/libmemscope.so"
    same "cmake build output" "$("$tmp/cm/app" 2>&1)" "$WANT"
    checks=$((checks + 1))
    ldd "$tmp/cm/app_static" | grep -q libmemscope && fail "memscope::memscope_static links the shared library"
    same "cmake static build output" "$("$tmp/cm/app_static" 2>&1)" "$WANT"
fi

# version file: 0.1 and the exact version accepted, a newer or other major refused
mkdir -p "$tmp/ver"
cat >"$tmp/ver/CMakeLists.txt" <<CEOF
cmake_minimum_required(VERSION 3.10)
project(memscope_version_test NONE)
find_package(memscope $VERSION EXACT REQUIRED)
find_package(memscope ${VERSION%.*} REQUIRED)
get_target_property(loc memscope::memscope IMPORTED_LOCATION)
get_target_property(inc memscope::memscope INTERFACE_INCLUDE_DIRECTORIES)
message(STATUS "LOC=\${loc}")
message(STATUS "INC=\${inc}")
find_package(memscope 99.0 QUIET)
if(memscope_FOUND)
  message(FATAL_ERROR "find_package(memscope 99.0) accepted version \${memscope_VERSION}")
endif()
CEOF
# probe DESC PREFIX LIBDIR INCDIR [CMAKE-ARGS]: the config found under PREFIX
# points at LIBDIR and INCDIR
probe() {
    rm -rf "$tmp/verb"
    if check "$1: find_package versions" cmake -S "$tmp/ver" -B "$tmp/verb" -DCMAKE_PREFIX_PATH="$2" "${@:5}"; then
        same "$1: IMPORTED_LOCATION" "$(sed -n 's/^-- LOC=//p' "$tmp/check.log")" "$3/libmemscope.so"
        same "$1: INTERFACE_INCLUDE_DIRECTORIES" "$(sed -n 's/^-- INC=//p' "$tmp/check.log")" "$4"
    fi
}
probe "cmake version file" "$P" "$P/lib" "$P/include"

# --------------------------------------------------- the installed CLI
check "installed memscope run -- true" "$P/bin/memscope" run -- true
same "installed CLI preloads the installed library" \
    "$(env -u LD_PRELOAD "$P/bin/memscope" run -- sh -c 'echo "$LD_PRELOAD"' 2>/dev/null)" \
    "$(realpath "$P/lib/libmemscope.so")"
same "installed CLI version" "$("$P/bin/memscope" version | head -n1)" "memscope $VERSION"
same "program run under the installed CLI" \
    "$(LD_LIBRARY_PATH=$P/lib "$P/bin/memscope" run -- "$tmp/app_pc" 2>&1)" "$WANT"

# ------------------------------------------- a moved prefix still works
M=$tmp/moved
mv "$P" "$M"
probe "moved prefix" "$M" "$M/lib" "$M/include"
if cmake_app "cmake, moved prefix" "$M" "$tmp/cm2"; then
    uses_lib "cmake build, moved prefix" "$tmp/cm2/app" "$M/lib/libmemscope.so"
    same "cmake build output, moved prefix" "$("$tmp/cm2/app" 2>&1)" "$WANT"
fi
same "moved CLI preloads the moved library" \
    "$(env -u LD_PRELOAD "$M/bin/memscope" run -- sh -c 'echo "$LD_PRELOAD"' 2>/dev/null)" \
    "$(realpath "$M/lib/libmemscope.so")"
mv "$M" "$P"

# ------------------------------------------- other LIBDIR, DESTDIR staging
L=$tmp/lib64prefix
if check "make install LIBDIR=.../lib64" mk install PREFIX="$L" LIBDIR="$L/lib64"; then
    # (Debian's CMake does not search PREFIX/lib64: point at the config directly)
    probe "LIBDIR=lib64" "$L" "$L/lib64" "$L/include" -Dmemscope_DIR="$L/lib64/cmake/memscope"
    same "pkg-config libdir with LIBDIR=lib64" \
        "$(PKG_CONFIG_PATH=$L/lib64/pkgconfig pkg-config --variable=libdir memscope)" "$L/lib64"
fi
S=$tmp/stage
if check "make install DESTDIR=$S PREFIX=/usr" mk install DESTDIR="$S" PREFIX=/usr; then
    checks=$((checks + 1))
    { [ -f "$S/usr/lib/libmemscope.so" ] && [ -f "$S/usr/bin/memscope" ]; } ||
        fail "DESTDIR install: files not under $S/usr"
    same "DESTDIR .pc prefix" "$(sed -n 's/^prefix=//p' "$S/usr/lib/pkgconfig/memscope.pc")" "/usr"
    same "DESTDIR .pc libdir" "$(sed -n 's/^libdir=//p' "$S/usr/lib/pkgconfig/memscope.pc")" '${prefix}/lib'
    probe "DESTDIR tree used in place" "$S/usr" "$S/usr/lib" "$S/usr/include"
    check "make uninstall DESTDIR=$S PREFIX=/usr" mk uninstall DESTDIR="$S" PREFIX=/usr
    same "files left after DESTDIR uninstall" "$(find "$S" -type f | sort | tr '\n' ' ')" ""
fi

# ---------------------------------------------------------------- uninstall
if check "make uninstall PREFIX=$P" mk uninstall PREFIX="$P"; then
    same "files left after uninstall" "$(find "$P" -type f | sort | tr '\n' ' ')" ""
fi

echo "test_install: $checks checks, $failures failed"
[ "$failures" -eq 0 ]
