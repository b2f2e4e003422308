#!/usr/bin/env python3
# Paired, interleaved whole-process timings (docs/perf.md): runs A, B, A, B, ... N times each
# and reports CPU time (user + sys, from wait4's rusage, microseconds) and wall time,
# min / median / max, plus the median of the per-pair CPU-time ratios A/B. Optional regexes
# pull numbers out of each side's stderr (e.g. the tok/s the programs print).
#   paired.py -n 15 --a 'cmd...' --b 'cmd...' [--grep-a NAME=REGEX]... [--grep-b NAME=REGEX]...
# Commands run through /bin/sh with stdout to /dev/null; environment is inherited.
import argparse, os, re, statistics as st, subprocess, sys, time
ap = argparse.ArgumentParser()
ap.add_argument('-n', type=int, default=15)
ap.add_argument('--a', required=True); ap.add_argument('--b', required=True)
ap.add_argument('--name-a', default='A'); ap.add_argument('--name-b', default='B')
ap.add_argument('--grep-a', action='append', default=[]); ap.add_argument('--grep-b', action='append', default=[])
args = ap.parse_args()
def run(cmd, greps):
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, shell=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    err = p.stderr.read().decode(errors='replace')
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.monotonic() - t0
    if os.waitstatus_to_exitcode(status) != 0: sys.exit(f'paired: {cmd!r} failed:\n{err}')
    out = {'cpu': ru.ru_utime + ru.ru_stime, 'wall': wall}  # (ru_maxrss would include the forked Python)
    for g in greps:
        name, rx = g.split('=', 1); m = re.search(rx, err)
        if not m: sys.exit(f'paired: {rx!r} not in the stderr of {cmd!r}:\n{err}')
        out[name] = float(m.group(1))
    return out
A, B = [], []
for i in range(args.n):
    A.append(run(args.a, args.grep_a)); B.append(run(args.b, args.grep_b))
def show(name, rs):
    for k in rs[0]:
        v = [r[k] for r in rs]
        print(f'{name:>10} {k:>12}: min {min(v):10.4f}  median {st.median(v):10.4f}  max {max(v):10.4f}')
print(f'load average before/after: {os.getloadavg()[0]:.2f}; {args.n} pairs, interleaved')
show(args.name_a, A); show(args.name_b, B)
ratios = [a['cpu'] / b['cpu'] for a, b in zip(A, B)]
print(f'CPU time {args.name_a}/{args.name_b}: median of pair ratios {st.median(ratios):.3f} '
      f'(min {min(ratios):.3f}, max {max(ratios):.3f}); ratio of medians '
      f'{st.median(a["cpu"] for a in A) / st.median(b["cpu"] for b in B):.3f}')
