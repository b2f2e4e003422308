#!/usr/bin/env python3
"""ncu_split.py - a `ncu --csv --page raw --metrics gpu__time_duration.sum` log
of `leank-bench train` cut into its segments at each embed kernel (a step is
the engine's prefill, which starts with an embed, then the trainer's answer
rows, which start with one too), and each segment summed by kernel: count,
total ms, share. Prints the last two segments (the timed step's prefill and
its post-prefill part), then the post-prefill part in launch order grouped
into runs of one layer."""
import csv
import sys
from collections import OrderedDict

lines = open(sys.argv[1], errors="replace").read().splitlines()
start = next(i for i, l in enumerate(lines) if l.startswith('"ID"'))
rows = list(csv.reader(lines[start:]))
hdr = rows[0]
ki, ti = hdr.index("Kernel Name"), hdr.index("gpu__time_duration.sum")
gi = hdr.index("Grid Size") if "Grid Size" in hdr else None
unit = rows[1][ti]
scale = {"nsecond": 1e-6, "usecond": 1e-3, "msecond": 1.0, "second": 1e3}.get(unit, 1e-6)
ks = []
for r in rows[2:]:
    if len(r) <= ti:
        continue
    try:
        ks.append((r[ki], float(r[ti].replace(",", "")) * scale, r[gi] if gi is not None else ""))
    except ValueError:
        pass
cuts = [i for i, k in enumerate(ks) if k[0].startswith("embed_kernel") or "embed_kernel" in k[0]]
print(f"{len(ks)} kernels, unit {unit}, embed launches at {cuts}")
segs = [ks[a:b] for a, b in zip(cuts, cuts[1:] + [len(ks)])]


def short(n):
    n = n.split("(")[0]
    return n[:70]


for name, seg in zip(("prefill (timed step)", "post-prefill (timed step)"), segs[-2:]):
    tot = sum(t for _, t, _ in seg)
    agg = OrderedDict()
    for k, t, g in seg:
        key = short(k)
        c, s = agg.get(key, (0, 0.0))
        agg[key] = (c + 1, s + t)
    print(f"\n== {name}: {len(seg)} kernels, {tot:.2f} ms")
    for key, (c, s) in sorted(agg.items(), key=lambda kv: -kv[1][1]):
        print(f"  {s:9.3f} ms {100 * s / tot:5.1f} %  x{c:<5d} {key}")
post = segs[-1]
print("\n== post-prefill, the first 60 launches in order")
for k, t, g in post[:60]:
    print(f"  {t * 1000:9.1f} us  {g:>16}  {short(k)}")
