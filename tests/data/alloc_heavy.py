# alloc_heavy.py: an allocation-heavy, fully deterministic Python workload
# used by tests/test_realprogs.sh (run with and without memscope preloaded;
# the printed lines must be identical).  Dicts, lists, strings, json, sorting,
# bytes, sets, a few threads, and gc cycles; ~2-5 s of CPython.
import gc
import hashlib
import json
import random
import sys
import threading

random.seed(12345)
out = []

def digest(obj):
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]

# 1. a big dict of small strings and lists, rebuilt a few times
for rnd in range(3):
    d = {}
    for i in range(80000):
        k = "k%d_%d" % (i * 7919 % 100003, rnd)
        d[k] = [i, str(i) * (i % 7), {"x": i % 13}]
    for i in range(0, 80000, 3):
        d.pop("k%d_%d" % (i * 7919 % 100003, rnd), None)
    out.append("dict %d %d %s" % (rnd, len(d), digest(sorted(d)[:1000])))
    del d

# 2. strings: joins, splits, replace, formatting
words = ["".join(random.choice("abcdefghij") for _ in range(random.randint(1, 30))) for _ in range(60000)]
text = " ".join(words)
for _ in range(5):
    text = text.replace("ab", "ba").upper().lower()
parts = text.split(" ")
out.append("strings %d %d %s" % (len(text), len(parts), hashlib.sha256(text.encode()).hexdigest()[:16]))

# 3. json round trips of nested structures
doc = [{"id": i, "name": w, "tags": [w[:3]] * (i % 5), "val": i * 0.5} for i, w in enumerate(words[:40000])]
for _ in range(4):
    s = json.dumps(doc)
    doc = json.loads(s)
out.append("json %d %s" % (len(s), hashlib.sha256(s.encode()).hexdigest()[:16]))

# 4. sorting many tuples and strings
nums = [random.random() for _ in range(300000)]
nums.sort()
tuples = sorted(((w, len(w), i) for i, w in enumerate(words)), key=lambda t: (t[1], t[0]))
out.append("sort %.12f %s" % (sum(nums[:1000]), digest([t[0] for t in tuples[:2000]])))

# 5. bytes and bytearrays of many sizes, sets
blobs = [bytes([i % 256]) * (i * 37 % 70000) for i in range(2000)]
ba = bytearray()
for b in blobs:
    ba += b[:100]
st = set(words)
st2 = {w[::-1] for w in words}
out.append("bytes %d %d %d %d" % (sum(len(b) for b in blobs), len(ba), len(st), len(st & st2)))

# 6. threads allocating concurrently (results combined deterministically)
results = [None] * 4
def work(n):
    r = random.Random(n)
    acc = {}
    for i in range(50000):
        acc.setdefault(r.randint(0, 5000), []).append("v" * r.randint(0, 50))
    results[n] = (len(acc), sum(len(s) for v in acc.values() for s in v))
ts = [threading.Thread(target=work, args=(n,)) for n in range(4)]
for t in ts: t.start()
for t in ts: t.join()
out.append("threads %s" % results)

# 7. reference cycles and gc
class Node:
    def __init__(self, v): self.v = v; self.peer = None; self.data = [v] * 10
for _ in range(5):
    ns = [Node(i) for i in range(50000)]
    for a, b in zip(ns, ns[1:]): a.peer = b; b.peer = a
    del ns
    gc.collect()
out.append("gc ok")

sys.stdout.write("\n".join(out) + "\n")
