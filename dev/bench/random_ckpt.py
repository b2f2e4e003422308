#!/usr/bin/env python3
# A random Qwen2-shaped checkpoint for load and memory measurements (docs/perf.md, "Peak RSS on an F32
# checkpoint"): config.json + one model.safetensors in HF's layout (tensors sorted by name, contiguous,
# header padded with spaces to 8 bytes), q/k/v bias, tied embedding. Needs numpy; the values are seeded,
# so every run with the same shape writes the same weights.
#   random_ckpt.py DIR [--dtype F32|BF16] [--layers 10] [--pad N] [--align64] [--tokenizer FILE]
# Default shape: dim 1 536, MLP 8 960, 12 heads / 2 KV heads of 128 (Qwen2.5-1.5B's), 10 layers, vocab
# 8 192: 481 M parameters, 1.92 GB in F32. --pad N writes a U8 tensor "pad" of N bytes first, which
# shifts every other tensor's data by N (N = 4: F32 data only 4-aligned; N = 2: misaligned for float);
# --align64 pads the header so the data starts on a 64-byte boundary (every tensor is then 64-aligned).
import argparse, json, os, shutil, struct
import numpy as np

ap = argparse.ArgumentParser()
ap.add_argument('dir')
ap.add_argument('--dtype', default='F32', choices=['F32', 'BF16'])
ap.add_argument('--layers', type=int, default=10)
ap.add_argument('--pad', type=int, default=0)
ap.add_argument('--align64', action='store_true')
ap.add_argument('--tokenizer', help='tokenizer.json to copy in (its vocabulary must fit 8 192 ids)')
a = ap.parse_args()
L, D, H, NH, NKV, HD, V = a.layers, 1536, 8960, 12, 2, 128, 8192
QD, KD = NH * HD, NKV * HD
os.makedirs(a.dir, exist_ok=True)
cfg = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_act": "silu", "vocab_size": V,
       "hidden_size": D, "intermediate_size": H, "num_hidden_layers": L, "num_attention_heads": NH,
       "num_key_value_heads": NKV, "max_position_embeddings": 32768, "rms_norm_eps": 1e-6,
       "rope_theta": 1000000.0, "tie_word_embeddings": True, "bos_token_id": 0, "eos_token_id": 1,
       "torch_dtype": "float32" if a.dtype == "F32" else "bfloat16", "use_sliding_window": False,
       "sliding_window": 32768}
json.dump(cfg, open(f"{a.dir}/config.json", "w"), indent=1)
shapes = {"model.embed_tokens.weight": (V, D), "model.norm.weight": (D,)}
for l in range(L):
    p = f"model.layers.{l}."
    shapes.update({p + "input_layernorm.weight": (D,), p + "post_attention_layernorm.weight": (D,),
                   p + "self_attn.q_proj.weight": (QD, D), p + "self_attn.k_proj.weight": (KD, D),
                   p + "self_attn.v_proj.weight": (KD, D), p + "self_attn.q_proj.bias": (QD,),
                   p + "self_attn.k_proj.bias": (KD,), p + "self_attn.v_proj.bias": (KD,),
                   p + "self_attn.o_proj.weight": (D, QD), p + "mlp.gate_proj.weight": (H, D),
                   p + "mlp.up_proj.weight": (H, D), p + "mlp.down_proj.weight": (D, H)})
es = 4 if a.dtype == "F32" else 2
hdr, off = {}, a.pad
if a.pad: hdr["pad"] = {"dtype": "U8", "shape": [a.pad], "data_offsets": [0, a.pad]}
names = sorted(shapes)
for n in names:
    nb = int(np.prod(shapes[n])) * es
    hdr[n] = {"dtype": a.dtype, "shape": list(shapes[n]), "data_offsets": [off, off + nb]}
    off += nb
h = json.dumps(hdr, separators=(",", ":")).encode()
al = 64 if a.align64 else 8
h += b" " * ((al - (8 + len(h)) % al) % al)
rng = np.random.default_rng(1)
with open(f"{a.dir}/model.safetensors", "wb") as f:
    f.write(struct.pack("<Q", len(h)))
    f.write(h)
    f.write(b"\0" * a.pad)
    for n in names:
        s = shapes[n]
        if len(s) == 1 and "norm" in n: x = 1.0 + 0.1 * rng.standard_normal(s, dtype=np.float32)
        else: x = (0.02 if len(s) == 2 else 0.1) * rng.standard_normal(s, dtype=np.float32)
        if n.startswith("model.embed"): x *= 50
        if a.dtype == "F32": f.write(x.astype("<f4").tobytes())
        else: f.write((x.astype("<f4").view("<u4") >> 16).astype("<u2").tobytes())  # truncated to bf16
if a.tokenizer: shutil.copy(a.tokenizer, f"{a.dir}/tokenizer.json")
print(f"{a.dir}: {off - a.pad} bytes of {a.dtype} weights, data at {8 + len(h) + a.pad} + offsets")
