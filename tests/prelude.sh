# tests/prelude.sh: sourced first by the shell tests that run the library
# directly.  It moves to the repository's root, makes BUILD absolute (the
# tests cd into scratch directories) and names the library under test: LIB
# is MEMSCOPE_LIB when tests/run.sh or the caller sets it, else the build's.
cd "$(dirname "$0")/.." || exit 1
BUILD=${BUILD:-build}
case $BUILD in /*) ;; *) BUILD=$PWD/$BUILD ;; esac
LIB=${MEMSCOPE_LIB:-$BUILD/libmemscope.so}
