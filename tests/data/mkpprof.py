#!/usr/bin/env python3
"""mkpprof.py: writes small pprof profiles shaped like memscope's, for
tests/test_report.sh.

    mkpprof.py SCENARIO OUT [--gzip] [--unpacked]

The profiles are encoded by hand (no protobuf module needed) so the test can
pin down what `memscope report` must print for features the Go reference
profiles do not have: six sample types with peak_*, linkage names in
system_name and demangled ones in name (or no name at all), inlined frames
(a location with two lines), recursion (a function twice on one stack), a
location with no function (only an address and a mapping), a name far wider
than a terminal, and repeated fields written unpacked.  Every figure the test
checks is derived in the comments of SAMPLES below.

SCENARIO is "base", "new" or "ops"; "new" is "base" with leaky() grown and
recurse() shrunk, for --diff; "ops" holds three C++ operators' frames.
"""
import gzip
import sys

TYPES = [("alloc_objects", "count"), ("alloc_space", "bytes"),
         ("inuse_objects", "count"), ("inuse_space", "bytes"),
         ("peak_objects", "count"), ("peak_space", "bytes")]

LONG = ("std::vector<std::basic_string<char, std::char_traits<char>, "
        "std::allocator<char> >, std::allocator<std::basic_string<char> > >"
        "::_M_realloc_insert(iterator, std::string const&)")

# id: (name, system_name, filename, start_line)
FUNCTIONS = {
    1: ("leaky(int)", "_Z5leakyi", "/src/app/leak.cc", 0),
    2: ("", "plain_c_func", "/src/app/c.c", 0),          # name falls back to system_name
    3: ("main", "main", "/src/app/main.c", 10),            # start_line wins for file:line
    4: ("inlined_helper", "inlined_helper", "/src/app/leak.cc", 0),
    5: ("recurse", "recurse", "/src/app/r.c", 0),
    6: (LONG, "_ZNSt6vector17_M_realloc_insertE", "/usr/include/c++/12/bits/vector.tcc", 0),
    # C++ operators ("ops" only): an operator's characters are its name
    7: ("Widget::operator()(int) const", "_ZNK6WidgetclEi", "/src/app/w.cc", 0),
    8: ("std::operator<<(std::ostream&, char const*)", "_ZStlsRSoPKc", "/usr/include/c++/12/ostream", 0),
    9: ("IntVec<int>::operator[](unsigned long)", "_ZN6IntVecIiEixEm", "/src/app/v.h", 0),
}
# id: (address, mapping, [(function, line), ...] innermost first)
LOCATIONS = {
    1: (0x401010, 1, [(4, 7), (1, 20)]),   # inlined_helper inlined into leaky
    2: (0x401020, 1, [(1, 25)]),
    3: (0x401030, 1, [(3, 40)]),
    4: (0x401040, 1, [(2, 5)]),
    5: (0x401050, 1, [(5, 100)]),
    6: (0x401060, 1, [(5, 101)]),
    7: (0x7f00dead, 2, []),                 # no symbol: shown by address
    8: (0x401080, 1, [(6, 1138)]),
    9: (0x401090, 1, [(7, 3)]),
    10: (0x4010a0, 1, [(8, 600)]),
    11: (0x4010b0, 1, [(9, 1040)]),
}
MAPPINGS = {1: (0x400000, 0x500000, "/usr/bin/demo-app", "abc123"),
            2: (0x7f0000000000, 0x7f0000100000, "/usr/lib/libfoo.so.1", "")}

# values: alloc_objects alloc_space inuse_objects inuse_space peak_objects peak_space
# inuse_space figures (base):
#   inlined_helper flat 500000 (innermost line of location 1)
#   leaky          flat 400000+10, cum 500000+400000+10 = 900010
#   recurse        flat 200000, cum 200000 (on the stack twice, counted once)
#   LONG           flat 150000;  0x7f00dead flat 100000;  main flat 0, cum 1350010
#   plain_c_func   inuse 0: no row (it has alloc_space 3000000 and peak 1500000)
SAMPLES = [
    ([1, 3], [10, 1000000, 5, 500000, 8, 800000]),
    ([2, 3], [4, 400000, 4, 400000, 4, 400000]),
    ([4, 3], [100, 3000000, 0, 0, 50, 1500000]),
    ([5, 6, 5, 3], [2, 200000, 2, 200000, 2, 300000]),
    ([7, 3], [1, 100000, 1, 100000, 1, 100000]),
    ([8, 3], [1, 150000, 1, 150000, 1, 150000]),
    ([2, 3], [1, 10, 1, 10, 1, 10]),
]


def scenario(name):
    samples = [(list(l), list(v)) for l, v in SAMPLES]
    if name == "new":
        samples[1][1][3] = 900000   # leaky: inuse +500000
        samples[3][1][3] = 50000    # recurse: inuse -150000
    elif name == "ops":
        samples = [([9, 3], [1, 1000, 1, 1000, 1, 1000]), ([10, 3], [1, 2000, 1, 2000, 1, 2000]),
                   ([11, 3], [1, 3000, 1, 3000, 1, 3000])]
    elif name != "base":
        sys.exit("mkpprof.py: unknown scenario " + name)
    return samples


def varint(v):
    v &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = v & 0x7f
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def key(field, wt):
    return varint(field << 3 | wt)


def f_int(field, v):
    return key(field, 0) + varint(v) if v else b""


def f_bytes(field, b):
    return key(field, 2) + varint(len(b)) + b


def f_rep(field, vals, unpacked):
    if unpacked:
        return b"".join(key(field, 0) + varint(v) for v in vals)
    return f_bytes(field, b"".join(varint(v) for v in vals)) if vals else b""


def build(samples, unpacked):
    strings = [""]

    def s(x):
        if x not in strings:
            strings.append(x)
        return strings.index(x)

    out = bytearray()
    for t, u in TYPES:
        out += f_bytes(1, f_int(1, s(t)) + f_int(2, s(u)))
    for locs, vals in samples:
        out += f_bytes(2, f_rep(1, locs, unpacked) + f_rep(2, vals, unpacked))
    for mid, (start, limit, path, bid) in MAPPINGS.items():
        out += f_bytes(3, f_int(1, mid) + f_int(2, start) + f_int(3, limit) +
                       f_int(5, s(path)) + f_int(6, s(bid) if bid else 0))
    for lid, (addr, mid, lines) in LOCATIONS.items():
        body = f_int(1, lid) + f_int(2, mid) + f_int(3, addr)
        for fid, line in lines:
            body += f_bytes(4, f_int(1, fid) + f_int(2, line))
        out += f_bytes(4, body)
    for fid, (name, sysname, path, start) in FUNCTIONS.items():
        out += f_bytes(5, f_int(1, fid) + f_int(2, s(name) if name else 0) +
                       f_int(3, s(sysname)) + f_int(4, s(path)) + f_int(5, start))
    out += f_int(9, 1795623491589439041)
    out += f_bytes(11, f_int(1, s("space")) + f_int(2, s("bytes")))
    out += f_int(12, 524288)
    out += f_int(14, s("inuse_space"))
    # string_table last, as Go writes it: the reader must resolve afterwards
    for x in strings:
        out += f_bytes(6, x.encode())
    return bytes(out)


def main(argv):
    if len(argv) < 3:
        sys.exit(__doc__)
    data = build(scenario(argv[1]), "--unpacked" in argv[3:])
    if "--gzip" in argv[3:]:
        data = gzip.compress(data, mtime=0)
    with open(argv[2], "wb") as f:
        f.write(data)


if __name__ == "__main__":
    main(sys.argv)
