#!/usr/bin/env python3
"""Stage 2 of leank-mini: short fine-tune on leank-prep's own RULER formats.

  ft.py MODEL_DIR FT_SAMPLES.jsonl OUTDIR SECONDS
FT_SAMPLES: `leank-prep --dump` of RULER tasks made from the TRAINING essay
split (pg_train.txt). Half of each batch are those samples (loss on the answer,
weight 5; none on the prompt), half are train.py's own rows (gen.py, 10 % LM rows).
AdamW lr 3e-4, 30 warm-up steps, linear decay to 0 over SECONDS.
"""
import json, math, os, sys, time, collections
import numpy as np, torch
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train
from gen import Gen
from tokenizers import Tokenizer

mdir, ftf, outdir, secs = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
D = os.environ.get("MINI_DATA", ".carry/ft")
tok = Tokenizer.from_file(os.path.join(mdir, "tokenizer.json"))
eos = tok.token_to_id("<|end_of_text|>")
by_len = collections.defaultdict(list)
S = [s for s in map(json.loads, open(ftf)) if "prompt" in s]
# BOS once: leank-prep's prompts (template none) start with it since it adds
# the post-processor's tokens itself; older dumps did not
P = tok.encode_batch([s["prompt"] for s in S], add_special_tokens=False)
P = [p.ids if p.ids[:1] == [tok.token_to_id("<|begin_of_text|>")] else [tok.token_to_id("<|begin_of_text|>")] + p.ids
     for p in P]
A = tok.encode_batch([s["answer"] for s in S], add_special_tokens=False)
for s, p, a in zip(S, P, A):
    by_len[s["target_len"]].append((p, a.ids + [eos]))
print({k: len(v) for k, v in by_len.items()}, flush=True)
g = Gen(D, D + "/words", "train")
dev = "cuda"
torch.manual_seed(7)
model = train.Model(train.CFG).to(dev)
train.load_hf(model, mdir)
opt = torch.optim.AdamW(model.parameters(), lr=3e-4, betas=(0.9, 0.95), weight_decay=0.1, fused=True)
BT = {1024: 48, 2048: 24, 4096: 12, 8192: 6, 16384: 4}
lens = sorted(by_len)
rng = np.random.default_rng(7)
t0 = time.time(); step = 0
while time.time() - t0 < secs:
    L = int(rng.choice(lens)); n = BT[L]
    rows = []
    for i in range(n // 2):
        p, a = by_len[L][int(rng.integers(len(by_len[L])))]
        ids = (p + a)[:L]
        w = [0.0] * len(p) + [5.0] * len(a)
        q = [0] * len(p) + [1] * len(a)
        pad = L - len(ids)
        rows.append((np.array(ids + [eos] * pad, np.int32), np.array(w[:L] + [0.0] * pad, np.float32),
                     np.array(q[:L] + [0] * pad, np.int16)))
    while len(rows) < n:
        r = g.row(int(rng.integers(1 << 30)), L, 0.1, 2)
        rows.append(r)
    ids, w, q = train.stack(rows, dev)
    frac = (time.time() - t0) / secs
    lr = 3e-4 * min(1.0, (step + 1) / 30) * max(0.0, 1 - frac)
    for gr in opt.param_groups:
        gr["lr"] = lr
    loss, acc, _ = train.loss_fn(model, ids, w, q)
    opt.zero_grad(set_to_none=True); loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0); opt.step(); step += 1
    if step % 25 == 0:
        print(f"ft step {step} L {L} loss {loss.item():.3f} ansacc {acc.item():.3f} t {time.time() - t0:.0f}s", flush=True)
model.eval()
pp = {k: train.ppl(model, np.fromfile(f"{D}/{k}.u16", dtype=np.uint16), 2048, 24, dev, 1)
      for k in ("train_prose", "heldout_prose", "train_dict", "heldout_dict")}
print("PPL", json.dumps({k: round(v, 2) for k, v in pp.items()}), flush=True)
stage1 = json.load(open(os.path.join(mdir, "model.safetensors.index.json")))["metadata"]["leank_mini_step"]
train.export(model, outdir, os.path.join(mdir, "tokenizer.json"), stage1 + step)
print("exported", step, "steps")
