#!/usr/bin/env bash
# bench/run_apps.sh: real programs under each allocator (issue 10).
#
# What it measures and why: the synthetic workloads of run.sh are one thing,
# what a user sees when preloading memscope into a real program is another.
#   python: /usr/bin/python3 tests/data/alloc_heavy.py with PYTHONMALLOC=malloc
#           (CPython's small-object allocator off, so every object is a
#           malloc): wall time, CPU time (user+sys), peak RSS.
#   sqlite: /usr/bin/sqlite3 :memory: on a generated SQL script (100,000 rows
#           built by a recursive CTE, two indexes, GROUP BY, UPDATE that grows
#           rows, DELETE, group_concat, CREATE TABLE AS, REINDEX, LIKE scan):
#           wall, CPU, peak RSS.
#   redis:  redis-server (no persistence, unix socket) under the allocator,
#           driven by redis-benchmark (not preloaded) with
#           `-n APP_REDIS_N -c 20 -P 16 -r 100000 -d 128 -t set,get,lpush,lpop,sadd,hset,zadd`:
#           requests/s per command, and the server's RSS and CPU time at the end.
#           Debian's redis-server is linked against libjemalloc, so "jemalloc"
#           here is the program as shipped (no preload) and "glibc" preloads
#           bench/libc_shim.c, which forwards to glibc's __libc_malloc & co.
# Every program's output is checked to be identical under every allocator
# (python, sqlite) or the preloaded library is checked in /proc/PID/maps
# (redis).  Allocators are interleaved in a rotating order inside every
# repetition; medians over APP_RUNS.
#
# Environment: APP_RUNS=3  APP_PARTS="python sqlite redis"  APP_REDIS_N=200000
#   APP_CONFIGS="glibc jemalloc tcmalloc mimalloc memscope"
#   JEMALLOC_SO TCMALLOC_SO MIMALLOC_SO MEMSCOPE_SO  BUILD=build  BENCH_TIMEOUT=300
#   BENCH_RESULTS=bench/RESULTS.md: only the block between
#     "<!-- BEGIN bench/run_apps.sh -->" and "<!-- END bench/run_apps.sh -->" is
#     replaced (appended the first time); run.sh keeps the block.
# Raw data: bench/out/apps.tsv, bench/out/apps.log; the section: bench/out/apps.md.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd); cd "$ROOT" || exit 2
BUILD=${BUILD:-build}; BIN=$BUILD/bench; OUT=bench/out; CC=${CC:-cc}
RUNS=${APP_RUNS:-3}; PARTS=${APP_PARTS:-python sqlite redis}; RN=${APP_REDIS_N:-200000}
TIMEOUT=${BENCH_TIMEOUT:-300}
CONFIGS=${APP_CONFIGS:-glibc jemalloc tcmalloc mimalloc memscope}
RESULTS=${BENCH_RESULTS:-bench/RESULTS.md}
PY=${APP_PYTHON:-/usr/bin/python3}; SQLITE=${APP_SQLITE:-/usr/bin/sqlite3}
mkdir -p "$BIN" "$OUT"
note() { printf '%s\n' "$*" >&2; }
$CC -std=c11 -O2 -Wall -Wextra -o "$BIN/runone" bench/runone.c || exit 2
$CC -O2 -shared -fPIC -Wall -o "$BIN/libc_shim.so" bench/libc_shim.c -ldl || exit 2
SHIM=$(realpath "$BIN/libc_shim.so")
MS_ORIG=$(realpath "${MEMSCOPE_SO:-$BUILD/libmemscope.so}") || { note "no libmemscope.so (make lib)"; exit 2; }
cp "$MS_ORIG" "$OUT/libmemscope-apps.so"; MS=$(realpath "$OUT/libmemscope-apps.so")
MS_SHA=$(sha256sum "$MS" | cut -c1-16)
unset MEMSCOPE
findlib() {
    local o=$1; shift
    [ -n "$o" ] && { realpath "$o"; return; }
    for n in "$@"; do
        p=$(ldconfig -p 2>/dev/null | awk -v n="$n" '$1==n{print $NF; exit}')
        [ -n "$p" ] && { realpath "$p"; return; }
    done
}
declare -A SO
SO[glibc]=""; SO[memscope]=$MS
SO[jemalloc]=$(findlib "${JEMALLOC_SO:-}" libjemalloc.so.2)
SO[tcmalloc]=$(findlib "${TCMALLOC_SO:-}" libtcmalloc_minimal.so.4 libtcmalloc.so.4)
SO[mimalloc]=$(findlib "${MIMALLOC_SO:-}" libmimalloc.so.2)
CFGS=""; NOTES=""
for c in $CONFIGS; do
    if [ "$c" != glibc ] && [ -z "${SO[$c]:-}" ]; then NOTES="$NOTES- $c skipped: library not found"$'\n'; continue; fi
    CFGS="$CFGS $c"
done
for t in "$PY" "$SQLITE" redis-server redis-benchmark redis-cli; do
    command -v "$t" >/dev/null || { NOTES="$NOTES- $t not found: its part is skipped (scripts/install-deps.sh)"$'\n'; PARTS=${PARTS//$( case $t in *python*) echo python;; *sqlite*) echo sqlite;; *) echo redis;; esac )/}; }
done
get() { printf '%s\n' "$2" | tr ' ' '\n' | sed -n "s/^$1=//p" | head -1; }
rotated() { local rep=$1 n k j o=""; set -- $CFGS; n=$#; k=$(( (rep - 1) % n ))
    for ((j = 0; j < n; j++)); do idx=$(( (k + j) % n + 1 )); o="$o ${!idx}"; done; echo $o; }
TMPD=$(mktemp -d /tmp/msapps.XXXXXX); trap 'rm -rf "$TMPD"' EXIT
SQL=$TMPD/workload.sql
cat > "$SQL" <<'EOF'
PRAGMA cache_size=-200000;
CREATE TABLE t(id INTEGER PRIMARY KEY, a TEXT, b INTEGER, c TEXT);
WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 100000)
INSERT INTO t SELECT x, printf('%08x-%s', (x * 2654435761) % 4294967296, substr('abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz', 1 + x % 17, 5 + x % 41)),
       (x * 7919) % 100003, printf('%.*c', x % 200, 'z') FROM n;
CREATE INDEX ta ON t(a);
CREATE INDEX tb ON t(b);
SELECT b % 100, count(*), sum(length(a)) FROM t GROUP BY b % 100 ORDER BY 2 DESC, 1 LIMIT 3;
UPDATE t SET c = c || a WHERE b % 3 = 0;
DELETE FROM t WHERE b % 7 = 0;
SELECT count(*), sum(length(c)) FROM t;
SELECT count(DISTINCT substr(a, 10, 3)) FROM t;
SELECT length(group_concat(a, ',')) FROM (SELECT a FROM t ORDER BY c, a LIMIT 100000);
CREATE TABLE u AS SELECT b, group_concat(a) AS g, count(*) AS k FROM t GROUP BY b;
SELECT sum(length(g)), sum(k) FROM u;
DROP INDEX ta;
REINDEX tb;
SELECT count(*) FROM t WHERE a LIKE '%abc%';
EOF
TSV=$OUT/apps.tsv; LOG=$OUT/apps.log
printf 'app\tconfig\trep\tkey\tvalue\tstatus\n' > "$TSV"; : > "$LOG"
declare -A REF
# a program run through runone; records wall, cpu, maxrss; checks the output
run_prog() {  # app config rep -- command...
    local app=$1 c=$2 rep=$3; shift 4
    local out run body sum st
    out=$("$BIN/runone" -t "$TIMEOUT" -p "${SO[$c]}" -- "$@" 2>&1)
    { echo "### app=$app config=$c rep=$rep"; printf '%s\n' "$out" | tail -20; } >> "$LOG"
    run=$(printf '%s\n' "$out" | grep '^RUN ' | tail -1)
    body=$(printf '%s\n' "$out" | grep -v '^RUN ')
    sum=$(printf '%s\n' "$body" | md5sum | cut -c1-12)
    [ -n "${REF[$app]:-}" ] || REF[$app]=$sum
    if [ -z "$run" ]; then st=harness-error
    elif [ "$(get timeout "$run")" = 1 ]; then st=timeout
    elif [ "$(get signal "$run")" != 0 ]; then st="SIG$(get signal "$run")"
    elif [ "$(get exit "$run")" != 0 ]; then st="exit-$(get exit "$run")"
    elif [ "$sum" != "${REF[$app]}" ]; then st=output-differs
    else st=ok; fi
    printf '%s\t%s\t%s\twall_s\t%s\t%s\n' "$app" "$c" "$rep" "$(get wall_s "$run")" "$st" >> "$TSV"
    printf '%s\t%s\t%s\tcpu_s\t%s\t%s\n' "$app" "$c" "$rep" "$(awk -v u="$(get user_s "$run")" -v s="$(get sys_s "$run")" 'BEGIN{print u + s}')" "$st" >> "$TSV"
    printf '%s\t%s\t%s\tmaxrss_kib\t%s\t%s\n' "$app" "$c" "$rep" "$(get maxrss_kib "$run")" "$st" >> "$TSV"
    note "apps: [$rep/$RUNS] $app $c $st $(get wall_s "$run") s"
}
run_redis() {  # config rep
    local c=$1 rep=$2 so sock pid csv st=ok i hz ticks
    so=${SO[$c]}; [ "$c" = glibc ] && so=$SHIM; [ "$c" = jemalloc ] && so=""
    sock=$TMPD/redis.sock; rm -f "$sock"
    env ${so:+LD_PRELOAD=$so} redis-server --port 0 --unixsocket "$sock" --save '' --appendonly no \
        --daemonize no --logfile "$TMPD/redis.log" & pid=$!
    for i in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
    if [ ! -S "$sock" ]; then st=no-server
    elif [ -n "$so" ] && ! grep -q "$so" "/proc/$pid/maps"; then st=wrong-malloc; fi
    csv=""
    [ "$st" = ok ] && csv=$(timeout "$TIMEOUT" redis-benchmark -s "$sock" -n "$RN" -c 20 -P 16 -r 100000 -d 128 \
        -t set,get,lpush,lpop,sadd,hset,zadd -q --csv 2>>"$LOG") || st=${st/ok/benchmark-failed}
    rss=$(redis-cli -s "$sock" info memory 2>/dev/null | tr -d '\r' | sed -n 's/^used_memory_rss://p')
    hz=$(getconf CLK_TCK); ticks=$(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null)
    kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
    [ "$(kill -0 "$pid" 2>/dev/null; echo $?)" = 0 ] && st=not-stopped
    { echo "### app=redis config=$c rep=$rep so=$so status=$st"; printf '%s\n' "$csv"; } >> "$LOG"
    printf '%s\n' "$csv" | awk -F, -v c="$c" -v r="$rep" -v st="$st" 'NR > 1 { gsub(/"/, ""); printf "redis\t%s\t%s\trps_%s\t%s\t%s\n", c, r, $1, $2, st }' >> "$TSV"
    printf 'redis\t%s\t%s\trss_kib\t%s\t%s\n' "$c" "$rep" "$(( ${rss:-0} / 1024 ))" "$st" >> "$TSV"
    printf 'redis\t%s\t%s\tcpu_s\t%s\t%s\n' "$c" "$rep" "$(awk -v t="${ticks:-0}" -v h="$hz" 'BEGIN{printf "%.2f", t / h}')" "$st" >> "$TSV"
    note "apps: [$rep/$RUNS] redis $c $st $(printf '%s\n' "$csv" | awk -F, 'NR>1{gsub(/"/,""); printf "%s=%.0f ", $1, $2}')"
}
START=$(date +%s); LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
for rep in $(seq 1 "$RUNS"); do
    for app in $PARTS; do
        for c in $(rotated "$rep"); do
            case $app in
                python) run_prog python "$c" "$rep" -- /usr/bin/env PYTHONMALLOC=malloc "$PY" tests/data/alloc_heavy.py ;;
                sqlite) run_prog sqlite "$c" "$rep" -- "$SQLITE" :memory: ".read $SQL" ;;
                redis) run_redis "$c" "$rep" ;;
            esac
        done
    done
done
ELAPSED=$(( $(date +%s) - START )); LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

MED='function med(s,   n, i, j, t, a) { n = split(s, a, " "); for (i = 2; i <= n; i++) { t = a[i] + 0; for (j = i - 1; j >= 1 && a[j] + 0 > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
  return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
function mn(s,   n, i, a, m) { n = split(s, a, " "); m = a[1] + 0; for (i = 2; i <= n; i++) if (a[i] + 0 < m) m = a[i] + 0; return m }
function mx(s,   n, i, a, m) { n = split(s, a, " "); m = a[1] + 0; for (i = 2; i <= n; i++) if (a[i] + 0 > m) m = a[i] + 0; return m }'
SEC=$OUT/apps.md
ver() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo '?'; }
{
  echo "<!-- BEGIN bench/run_apps.sh -->"
  echo "## Real programs (issue 10)"
  echo
  echo "Generated by \`bench/run_apps.sh\` (method in [README.md](README.md#real-programs)); $(date -u '+%Y-%m-%d %H:%M UTC'), took ${ELAPSED}s; $RUNS runs per cell, allocators interleaved in a rotating order, medians. Machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(awk '/MemTotal/{printf "%.1f GiB RAM", $2/1048576}' /proc/meminfo). Load average (1/5/15 min) at start: $LOAD_START; at end: $LOAD_END (on 2 CPUs: anything near or above 2 means other work competed; the CPU columns are less sensitive to that than wall time)."
  echo "Programs: python3 $(ver python3.11), sqlite3 $(ver sqlite3), redis-server/redis-benchmark $(ver redis-server). Peers: $(for c in jemalloc tcmalloc mimalloc; do [ -n "${SO[$c]:-}" ] && printf '%s `%s` (%s); ' "$c" "${SO[$c]}" "$(dpkg -S "${SO[$c]}" 2>/dev/null | head -1 | cut -d: -f1 | xargs -r dpkg-query -W -f='${Package} ${Version}' 2>/dev/null)"; done)glibc $(ldd --version | head -1 | awk '{print $NF}'). memscope \`$MS_ORIG\` (git $(git rev-parse --short HEAD)$( [ -n "$(git status --porcelain -- src include)" ] && echo ', src modified'), sha256 $MS_SHA…, defaults) run from a copy."
  [ -n "$NOTES" ] && printf '%s' "$NOTES"
  echo
  echo "### CPython (\`PYTHONMALLOC=malloc python3 tests/data/alloc_heavy.py\`) and sqlite3 (\`sqlite3 :memory:\` on the generated script in run_apps.sh)"
  echo
  echo "| program | allocator | wall (s) [min–max] | CPU (s) | peak RSS (MiB) | wall / fastest peer | CPU / lowest peer | runs ok |"
  echo "|---|---|---:|---:|---:|---:|---:|---:|"
  awk -F'\t' "$MED"'
    NR > 1 && $1 != "redis" { k = $1 SUBSEP $2; if (!($1 in sa)) ao[++na] = $1; sa[$1] = 1; if (!($2 in sc)) co[++nc] = $2; sc[$2] = 1
      if ($6 == "ok") { V[k, $4] = V[k, $4] " " $5; if ($4 == "wall_s") ok[k]++ } else if ($4 == "wall_s") bad[k] = bad[k] " #" $3 ":" $6 }
    END { for (i = 1; i <= na; i++) { a = ao[i]; bw = bc = 0
        for (j = 1; j <= nc; j++) { k = a SUBSEP co[j]; if (co[j] == "memscope" || !((k, "wall_s") in V)) continue
          w = med(V[k, "wall_s"]); c = med(V[k, "cpu_s"]); if (!bw || w < bw) bw = w; if (!bc || c < bc) bc = c }
        for (j = 1; j <= nc; j++) { k = a SUBSEP co[j]; if (!((k, "wall_s") in V)) { printf "| %s | %s | failed:%s | | | | | 0 |\n", a, co[j], bad[k]; continue }
          w = med(V[k, "wall_s"]); c = med(V[k, "cpu_s"])
          printf "| %s | %s | %.2f [%.2f–%.2f] | %.2f | %.1f | %s | %s | %d%s |\n", a, co[j], w, mn(V[k, "wall_s"]), mx(V[k, "wall_s"]), c, med(V[k, "maxrss_kib"]) / 1024,
            bw ? sprintf(co[j] == "memscope" && w / bw > 1.10 ? "**%.2f**" : "%.2f", w / bw) : "–", bc ? sprintf(co[j] == "memscope" && c / bc > 1.10 ? "**%.2f**" : "%.2f", c / bc) : "–", ok[k], bad[k] ? " (failed:" bad[k] ")" : "" } } }' "$TSV"
  echo
  echo "### redis-server under redis-benchmark (\`-n $RN -c 20 -P 16 -r 100000 -d 128\`, unix socket; requests/s, higher is better)"
  echo
  echo "\"glibc\" preloads \`bench/libc_shim.c\` (Debian's redis-server is linked against libjemalloc, so \"jemalloc\" is the server as shipped). redis-benchmark itself runs on glibc and shares the 2 CPUs with the server. RSS = the server's \`used_memory_rss\` after the run; CPU = the server's user+sys time."
  echo
  awk -F'\t' "$MED"'
    NR > 1 && $1 == "redis" { if (!($2 in sc)) co[++nc] = $2; sc[$2] = 1
      if ($6 != "ok") { if ($4 == "rss_kib") bad[$2] = bad[$2] " #" $3 ":" $6; next }
      if ($4 ~ /^rps_/) { t = substr($4, 5); if (!(t in st)) to[++nt] = t; st[t] = 1 } V[$2, $4] = V[$2, $4] " " $5; if ($4 == "rss_kib") ok[$2]++ }
    END { printf "| allocator |"; for (i = 1; i <= nt; i++) printf " %s |", to[i]; print " geomean | / best peer | RSS (MiB) | server CPU (s) | runs ok |"
      printf "|---|"; for (i = 1; i <= nt; i++) printf "---:|"; print "---:|---:|---:|---:|---:|"
      for (j = 1; j <= nc; j++) { c = co[j]; l = 0; m = 0; for (i = 1; i <= nt; i++) if ((c, "rps_" to[i]) in V) { l += log(med(V[c, "rps_" to[i]])); m++ }
        G[c] = m ? exp(l / m) : 0; if (c != "memscope" && G[c] > best) best = G[c] }
      for (j = 1; j <= nc; j++) { c = co[j]; printf "| %s |", c
        for (i = 1; i <= nt; i++) printf " %s |", ((c, "rps_" to[i]) in V) ? sprintf("%.0fk", med(V[c, "rps_" to[i]]) / 1000) : "–"
        printf " %s | %s | %s | %s | %d%s |\n", G[c] ? sprintf("%.0fk", G[c] / 1000) : "–", (G[c] && best) ? sprintf(c == "memscope" && G[c] / best < 0.91 ? "**%.2f**" : "%.2f", G[c] / best) : "–",
          ((c, "rss_kib") in V) ? sprintf("%.1f", med(V[c, "rss_kib"]) / 1024) : "–", ((c, "cpu_s") in V) ? sprintf("%.2f", med(V[c, "cpu_s"])) : "–", ok[c], bad[c] ? " (failed:" bad[c] ")" : "" } }' "$TSV"
  echo "<!-- END bench/run_apps.sh -->"
} > "$SEC"
bash "$(dirname "$0")/put_block.sh" run_apps.sh "$SEC" "$RESULTS"
cat "$SEC"
note "apps: wrote $SEC and its block in $RESULTS (${ELAPSED}s)"
