#!/usr/bin/env python3
"""Score leank-mini on RULER-style samples with leank-decode (dense, CPU).

  eval_ruler.py SAMPLES.jsonl (leank-prep --dump output) BIN_DIR MODEL_DIR [PROCS] [THREADS]
Splits the requests over PROCS leank-decode --batch processes, greedy,
max_tokens = n_ans + 4; a sample is correct when every reference string is in
the generated text (RULER's string match). Prints a task x length table.
"""
import json, os, subprocess, sys, collections
src, bindir, model = sys.argv[1:4]
procs = int(sys.argv[4]) if len(sys.argv) > 4 else 4
threads = sys.argv[5] if len(sys.argv) > 5 else "4"
samples = [json.loads(l) for l in open(src)]
samples = [s for s in samples if "prompt" in s]
shards = [samples[i::procs] for i in range(procs)]
env = dict(os.environ, OPENBLAS_NUM_THREADS=threads, OMP_NUM_THREADS=threads)
ps = []
for i, sh in enumerate(shards):
    req = f"/tmp/evreq{i}.jsonl"
    with open(req, "w") as f:
        for s in sh:
            f.write(json.dumps({"prompt": s["prompt"], "max_tokens": s["n_ans"] + 4}) + "\n")
    ps.append(subprocess.Popen([os.path.join(bindir, "leank-decode"), "-m", model, "-q", "--batch", req],
                               stdout=subprocess.PIPE, env=env, text=True))
res = collections.defaultdict(lambda: [0, 0])
outs = []
for i, p in enumerate(ps):
    out, _ = p.communicate()
    for s, line in zip(shards[i], out.splitlines()):
        r = json.loads(line)
        ok = all(ref in r["text"] for ref in s["refs"])
        res[(s["task"], s["target_len"])][0] += ok
        res[(s["task"], s["target_len"])][1] += 1
        outs.append({"task": s["task"], "len": s["target_len"], "refs": s["refs"], "text": r["text"], "ok": ok})
json.dump(outs, open(os.environ.get("EVAL_OUT", "/tmp/eval_out.json"), "w"))
tasks = sorted({k[0] for k in res}); lens = sorted({k[1] for k in res})
print("task".ljust(18) + "".join(f"{L:>10d}" for L in lens))
for t in tasks:
    print(t.ljust(18) + "".join(f"{100 * res[(t, L)][0] / max(1, res[(t, L)][1]):9.1f}%" for L in lens)
          + "   (n=%d)" % res[(t, lens[0])][1])
