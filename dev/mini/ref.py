#!/usr/bin/env python3
"""Reference logits for tests/sh/mini.sh: HF transformers, fp32, eager attention.
  ref.py MODEL_DIR tests/data/mini/prompt2k.ids OUT.f32
Writes the logits at positions 255, 1023, 2047 (3 x vocab float32 LE) and
checks train.py's own model against transformers on the same prompt."""
import sys, os, numpy as np, torch
from transformers import LlamaForCausalLM
mdir, idsf, outf = sys.argv[1:4]
ids = torch.tensor([[int(x) for x in open(idsf).read().split()]])
m = LlamaForCausalLM.from_pretrained(mdir, torch_dtype=torch.float32, attn_implementation="eager").eval()
with torch.no_grad():
    lg = m(ids).logits[0]
pos = [255, 1023, 2047]
sel = lg[pos].numpy().astype("<f4")
sel.tofile(outf)
print("hf logits", sel.shape, "argmax", sel.argmax(-1))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train
own = train.Model(train.CFG).eval()
train.load_hf(own, mdir)
with torch.no_grad():
    lo = own(ids)[0]
rel = float((lo[pos] - lg[pos]).norm() / lg[pos].norm())
print(f"own-vs-HF rel L2 (fp32) {rel:.2e}")
ce = torch.nn.functional.cross_entropy(lg[:-1], ids[0, 1:])
print(f"HF fp32 ppl on the 2K held-out prompt {float(ce.exp()):.2f}")
