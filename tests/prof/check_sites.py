#!/usr/bin/env python3
"""check_sites.py: compares a heap profile's per-site figures with the truth.

usage: check_sites.py TRUTH EXACT TOOL OUTDIR
  TRUTH   lines "site alloc_objects alloc_space inuse_objects inuse_space"
  EXACT   1: every figure must match exactly (profile_rate=1); 0: each must
          lie within 4.5 standard deviations (+1%) of the truth, the
          deviation of the sampling estimate computed from the block size
          and the rate (524288), so a correct profiler fails about once in
          150,000 runs and a biased or broken one fails at once
  OUTDIR  holds one file per sample type, TYPE.top: the -top listing of
          go tool pprof -unit=B, or memscope report, for that type; with
          TOOL "text", OUTDIR is a debug=1 text profile, read here: each
          record is credited to the function of its first '#' frame line
Prints one line per check; exit status 1 if any failed.
"""
import math, re, sys

RATE = 524288.0
TYPES = ["alloc_objects", "alloc_space", "inuse_objects", "inuse_space"]


def parse_top(path):
    """function name -> flat value, from a pprof -top style listing."""
    vals = {}
    row = re.compile(r"^\s*([-+]?[0-9.]+)([kMGT]?B?)\s+[-0-9.]+%\s+[-0-9.]+%\s+([-+]?[0-9.]+)([kMGT]?B?)\s+[-0-9.]+%\s+(\S+)")
    mult = {"": 1, "B": 1, "kB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}
    for line in open(path):
        m = row.match(line)
        if not m:
            continue
        name = m.group(5).split(".")[0]  # keep_site.constprop.0 -> keep_site
        vals[name] = vals.get(name, 0) + float(m.group(1)) * mult[m.group(2)]
    return vals


def parse_text(path):
    """sample type -> function -> value, from Go's debug=1 heap text."""
    vals = {t: {} for t in TYPES}
    rec = re.compile(r"^(\d+): (\d+) \[(\d+): (\d+)\] @")
    cur = None
    for line in open(path):
        m = rec.match(line)
        if m:
            cur = [int(x) for x in m.groups()]
            continue
        if cur and line.startswith("#\t"):
            name = line.split("\t")[2].split("+")[0].split(".")[0]
            for t, v in zip(["inuse_objects", "inuse_space", "alloc_objects", "alloc_space"], cur):
                vals[t][name] = vals[t].get(name, 0) + v
            cur = None
    return vals


def main():
    truth_path, exact, outdir = sys.argv[1], sys.argv[2] == "1", sys.argv[4]
    tool = sys.argv[3]
    truth = {}
    for line in open(truth_path):
        f = line.split()
        truth[f[0]] = dict(zip(TYPES, map(int, f[1:5])))
    bad = 0
    text = parse_text(outdir) if tool == "text" else None
    for t in TYPES:
        got = text[t] if text else parse_top(f"{outdir}/{t}.top")
        for site, tr in truth.items():
            want = tr[t]
            have = got.get(site, 0.0)
            objs = tr["alloc_objects"] if t.startswith("alloc") else tr["inuse_objects"]
            size = (tr["alloc_space"] / tr["alloc_objects"]) if tr["alloc_objects"] else 0
            # memscope report prints 3 significant digits (12.5MB), like pprof
            rounding = want * 0.005 if tool == "report" else 0
            if exact:
                tol = 0.5 + rounding
                why = "exact" if not rounding else "exact, to the digits shown"
            else:
                p = 1 - math.exp(-size / RATE) if size else 1
                rel = math.sqrt((1 - p) / (objs * p)) if objs else 0
                tol = want * (4.5 * rel + 0.01) + 0.5 + rounding
                why = f"+-{tol:.0f} (4.5 sigma)"
            ok = abs(have - want) <= tol
            status = "ok  " if ok else "FAIL"
            print(f"{status} {tool} {t:14s} {site:11s} want {want:>12d} have {have:>14.0f} {why}")
            bad += not ok
    sys.exit(1 if bad else 0)


main()
