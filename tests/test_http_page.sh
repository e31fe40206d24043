#!/usr/bin/env bash
# test_http_page.sh: the live page at "/" in headless Chromium (Debian
# chromium).  The page is loaded from a running program, given a few
# seconds of (virtual) time, and screenshotted at 1200x900; the PNG is
# decoded here (zlib, no PIL needed) and checked for
#   - a drawn plot with data: in the plot's area, pixels of at least three of
#     the series colours, spread over a good part of the width;
#   - a drawn flame graph: many pixels of its warm colours in its area, in
#     at least 4 rows (all / ... / main / keep_big);
# and Chromium's own network log (--log-net-log) must show no request made
# by the page to anywhere but the program, as the page source must hold no
# http(s):// or protocol-relative reference.
set -u
cd "$(dirname "$0")/.." || exit 1
. tests/http_lib.sh
command -v chromium >/dev/null || { echo "FAIL: chromium not installed (scripts/install-deps.sh)"; exit 1; }

check "page source has no outside reference" sh -c "! grep -Eq 'https?://|(src|href)=\"//' src/http/page.html"
start_host 90  # long enough for a slow Chromium on a loaded machine; stopped at the end
sleep 3
timeout -k 5 60 chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync --disable-default-apps \
    --user-data-dir="$TMPD/chrome" --screenshot="$TMPD/shot.png" --window-size=1200,900 \
    --virtual-time-budget=4000 --log-net-log="$TMPD/netlog.json" "$URL" >"$TMPD/chrome.log" 2>&1
check "chromium wrote a screenshot" [ -s "$TMPD/shot.png" ]
python3 - "$TMPD/shot.png" >"$TMPD/img.txt" <<'PY'
import struct, sys, zlib
data = open(sys.argv[1], "rb").read()
assert data[:8] == b"\x89PNG\r\n\x1a\n"
pos, idat, w = 8, b"", 0
while pos < len(data):
    n, typ = struct.unpack(">I4s", data[pos:pos + 8]); body = data[pos + 8:pos + 8 + n]; pos += 12 + n
    if typ == b"IHDR": w, h, depth, ctype = struct.unpack(">IIBB", body[:10])
    elif typ == b"IDAT": idat += body
bpp = {2: 3, 6: 4}[ctype]; raw = zlib.decompress(idat); stride = w * bpp
rows, prev = [], bytearray(stride)
for y in range(h):
    f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
    for i in range(stride):
        a = line[i - bpp] if i >= bpp else 0; b = prev[i]; c = prev[i - bpp] if i >= bpp else 0
        if f == 1: line[i] = (line[i] + a) & 255
        elif f == 2: line[i] = (line[i] + b) & 255
        elif f == 3: line[i] = (line[i] + (a + b) // 2) & 255
        elif f == 4:
            p = a + b - c; pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
    rows.append(line); prev = line
px = lambda x, y: tuple(rows[y][x * bpp:x * bpp + 3])
series = {"inuse": (31, 119, 180), "live": (44, 160, 44), "idle": (255, 127, 14), "released": (148, 103, 189), "rss": (214, 39, 40)}
near = lambda p, c: sum(abs(p[i] - c[i]) for i in range(3)) < 60
# the plot: y 80..370 (below its title, above the legend), x 85..1185 (right of the axis labels)
found, cols = {}, set()
for y in range(80, 370):
    for x in range(85, 1185):
        p = px(x, y)
        for k, c in series.items():
            if near(p, c): found[k] = found.get(k, 0) + 1; cols.add(x)
print("plot: series pixels", found, "columns", len(cols))
ok_plot = len([k for k in found if found[k] > 40]) >= 3 and len(cols) > 200
# the flame graph: y 430..730
warm, rowsseen = 0, set()
for y in range(430, 730):
    for x in range(15, 1185, 2):
        r, g, b = px(x, y)
        if r > 180 and 60 < g < 215 and b < 130 and r - b > 90: warm += 1; rowsseen.add((y - 430) // 17)
print("flame: warm pixels", warm, "rows", sorted(rowsseen))
ok_flame = warm > 5000 and len(rowsseen) >= 4
print("PLOT_OK" if ok_plot else "PLOT_BAD", "FLAME_OK" if ok_flame else "FLAME_BAD")
PY
cat "$TMPD/img.txt"
check "a drawn plot with data" grep -q PLOT_OK "$TMPD/img.txt"
check "a drawn flame graph" grep -q FLAME_OK "$TMPD/img.txt"
python3 - "$TMPD/netlog.json" "$URL" <<'PY' >"$TMPD/net.txt"
import json, re, sys, urllib.parse
# Requests the page made carry it as their initiator; Chromium's own
# background traffic (updater, accounts) says "not an origin" and is not
# the page's doing, so it is left out.
host = urllib.parse.urlparse(sys.argv[2]).netloc
page = [e["params"] for e in json.load(open(sys.argv[1]))["events"]
        if "url" in e.get("params", {}) and e["params"].get("initiator", "not an origin") != "not an origin"]
mine = sorted(p["url"] for p in page if urllib.parse.urlparse(p["url"]).netloc == host)
outside = sorted(p["url"] for p in page if urllib.parse.urlparse(p["url"]).netloc != host)
print("requests to the program:", len(mine)); print("outside:", outside)
PY
cat "$TMPD/net.txt"
check "the page fetched its data from the program" grep -q 'requests to the program: [1-9]' "$TMPD/net.txt"
check "no request outside the program" grep -q '^outside: \[\]$' "$TMPD/net.txt"
check "the host ran on" kill -0 "$HOST_PID"
stop_host
echo "$failures failed"
exit "$failures"
