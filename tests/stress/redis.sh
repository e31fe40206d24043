#!/usr/bin/env bash
# stress/redis.sh: tests/test_redis.sh at its long size (MEMSCOPE_STRESS=1); see
# that script for what it checks and why.  Run by `make stress`.
cd "$(dirname "$0")/../.." || exit 1
MEMSCOPE_STRESS=1 exec bash tests/test_redis.sh
