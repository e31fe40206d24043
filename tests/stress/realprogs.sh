#!/usr/bin/env bash
# stress/realprogs.sh: tests/test_realprogs.sh (python3, sqlite3, git, gcc,
# make; output compared with glibc's) again with the profiler recording every
# allocation, and with trace, stats and the HTTP server on (each process,
# including every child git and make start, serves on a port of its own:
# http=127.0.0.1:0).  Only stdout and exit codes are compared, so memscope's
# own stderr lines do not count.  Run by `make stress`.
cd "$(dirname "$0")/../.." || exit 1
fail=0
for ms in profile_rate=1 trace=1,stats=1,scavenge_delay_ms=0,http=127.0.0.1:0; do
    echo "--- test_realprogs.sh with MEMSCOPE=$ms"
    MEMSCOPE=$ms bash tests/test_realprogs.sh || fail=1
done
exit $fail
