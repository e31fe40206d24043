#!/usr/bin/env bash
# bench/put_block.sh NAME SECTION RESULTS: puts a benchmark script's section
# into the report.  SECTION is a file that starts with the line
# "<!-- BEGIN bench/NAME -->" and ends with "<!-- END bench/NAME -->"; the
# block of that name in RESULTS is replaced by it, or, the first time, it is
# appended.  Every other part of RESULTS is kept as it is, so each script
# owns its block and `make bench` (bench/run.sh) keeps the others'.
set -u
name=$1 sec=$2 results=$3
touch "$results"
if grep -qF "<!-- BEGIN bench/$name -->" "$results"; then
    awk -v sec="$sec" -v b="<!-- BEGIN bench/$name -->" -v e="<!-- END bench/$name -->" '
        index($0, b) == 1 { while ((getline l < sec) > 0) print l; skip = 1; next }
        index($0, e) == 1 { skip = 0; next }
        !skip' "$results" >"$results.tmp" && mv "$results.tmp" "$results"
else
    { echo; cat "$sec"; } >>"$results"
fi
