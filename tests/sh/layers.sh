#!/usr/bin/env bash
# layers.sh - no files of lib/ and kernels/ call each other in a loop: the
# symbols each object file uses and defines (nm) make a graph of files, and
# it must have no cycle (a file may only depend on files below it).
. "$LEANK_TOP/tests/lib.sh"
command -v nm >/dev/null || { echo "skip: nm not installed"; exit 77; }
command -v python3 >/dev/null || { echo "skip: python3 not installed"; exit 77; }
build=$(cd "$B/.." && pwd)/build
objs=$(find "$build/lib" "$build/kernels" -name '*.o' 2>/dev/null)
[ -n "$objs" ] || { fail "no object files under $build"; finish; }
for o in $objs; do echo "== ${o#$build/}"; nm "$o"; done >"$T/nm"
python3 - "$T/nm" >"$T/out" <<'PY' && ok "$(cat "$T/out")" || fail "$(cat "$T/out")"
import sys, collections
defs, uses, cur = {}, collections.defaultdict(set), None
for line in open(sys.argv[1]):
    if line.startswith("== "):
        cur = line[3:].strip(); defs.setdefault(cur, set()); continue
    p = line.split()
    if len(p) == 3 and p[1] in "TDBR": defs[cur].add(p[2])
    elif len(p) == 2 and p[0] == "U": uses[cur].add(p[1])
owner = {s: f for f, d in defs.items() for s in d}
g = {f: {owner[s] for s in uses[f] if s in owner and owner[s] != f} for f in defs}
# a cycle: Tarjan's strongly connected components of more than one file
idx, low, st, on, comps, n = {}, {}, [], set(), [], [0]
def visit(v):
    idx[v] = low[v] = n[0]; n[0] += 1; st.append(v); on.add(v)
    for w in g[v]:
        if w not in idx: visit(w); low[v] = min(low[v], low[w])
        elif w in on: low[v] = min(low[v], idx[w])
    if low[v] == idx[v]:
        c = []
        while True:
            w = st.pop(); on.discard(w); c.append(w)
            if w == v: break
        if len(c) > 1: comps.append(sorted(c))
sys.setrecursionlimit(10000)
for v in sorted(g):
    if v not in idx: visit(v)
if comps:
    print("files calling each other in a loop: " + "; ".join(" <-> ".join(c) for c in comps)); sys.exit(1)
print("%d object files, %d dependencies, no loop" % (len(g), sum(len(v) for v in g.values())))
PY
finish
