#!/usr/bin/env python3
"""torch_train_step.py - the PyTorch peer of `leank-bench train`: one LeanK
stage-1 step written with PyTorch + Hugging Face transformers, random bf16
weights, on the GPU.

The step, as leank-train defines it (lib/train/train.h):
  prefill   the context through the HF model (SDPA attention), no gradient,
            keeping every layer's post-RoPE keys and values (its KV cache)
  rows      the answer rows through the full model (no gradient: h_full) and
            through the pruned one (keys j < sink or p - j < recent in full,
            the others scaled by alpha channel-wise), written in plain torch
            over the HF model's own modules; h = the final RMSNorm's output
  backward  loss = mean (h_p - h_full)^2 + lambda mean|alpha|; autograd to
            alpha (L, G, hd); AdamW (lr 0.02), clamp to [0, 1]
Times (CUDA-synchronised) of each part, min/median/max of the step over N
steps after one warm-up, and peak memory (torch.cuda.max_memory_allocated).
One JSON object on stdout, a table on stderr.

  python3 dev/bench/torch_train_step.py --shape llama3.1-8b -c 32768 -a 32 -n 5
  python3 dev/bench/torch_train_step.py --shape tiny --device cpu    # a check of the script
"""
import argparse
import json
import statistics
import sys
import time

from hf_shapes import random_model


def cache_kv(cache, l):
    """Layer l's keys and values (1, G, n, hd) of a transformers cache (4.x or 5.x)."""
    if hasattr(cache, "layers"):
        return cache.layers[l].keys, cache.layers[l].values
    return cache.key_cache[l], cache.value_cache[l]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", default="llama3.1-8b")
    ap.add_argument("-c", "--context", type=int, default=32768)
    ap.add_argument("-a", "--answer", type=int, default=32)
    ap.add_argument("-n", "--steps", type=int, default=5)
    ap.add_argument("--sink", type=int, default=128)
    ap.add_argument("--recent", type=int, default=1024)
    ap.add_argument("--lr", type=float, default=0.02)
    ap.add_argument("--lam", type=float, default=0.06)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    import torch
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb
    dev = a.device
    cuda = dev == "cuda"
    torch.manual_seed(a.seed)
    dt = torch.bfloat16 if cuda else torch.float32
    model, cfg = random_model(a.shape, dt, dev)
    model.requires_grad_(False)
    inner = model.model
    L, NH, G = cfg.num_hidden_layers, cfg.num_attention_heads, cfg.num_key_value_heads
    hd = getattr(cfg, "head_dim", None) or cfg.hidden_size // NH
    gs, C, A = NH // G, a.context, a.answer
    n = C + A
    scale = hd ** -0.5
    alpha = torch.ones(L, G, hd, device=dev, dtype=torch.float32, requires_grad=True)
    opt = torch.optim.AdamW([alpha], lr=a.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    # which keys each answer row sees in full / at all (the same for every layer)
    p = torch.arange(C, n, device=dev)[:, None]
    j = torch.arange(n, device=dev)[None, :]
    full = (j < a.sink) | (p - j < a.recent)
    visible = j <= p

    def rows(ids, cache, al):
        """Answer rows through every layer; al (L, G, hd) or None (dense)."""
        h = inner.embed_tokens(ids)
        pos = torch.arange(C, n, device=dev)[None]
        cos, sin = inner.rotary_emb(h, pos)
        for l, layer in enumerate(inner.layers):
            at = layer.self_attn
            x = layer.input_layernorm(h)
            q = at.q_proj(x).view(1, A, NH, hd).transpose(1, 2)
            k = at.k_proj(x).view(1, A, G, hd).transpose(1, 2)
            v = at.v_proj(x).view(1, A, G, hd).transpose(1, 2)
            q, k = apply_rotary_pos_emb(q, k, cos, sin)
            kc, vc = cache_kv(cache, l)
            K = torch.cat([kc[:, :, :C], k], 2)  # (1, G, n, hd)
            V = torch.cat([vc[:, :, :C], v], 2)
            qg = q.view(1, G, gs, A, hd)
            s = qg @ K[:, :, None].transpose(-1, -2)  # (1, G, gs, A, n)
            if al is not None:
                sm = (qg * al[l].to(qg.dtype)[None, :, None, None, :]) @ K[:, :, None].transpose(-1, -2)
                s = torch.where(full, s, sm)
            s = (s.float() * scale).masked_fill(~visible, float("-inf"))
            o = torch.softmax(s, -1).to(V.dtype) @ V[:, :, None]  # (1, G, gs, A, hd)
            o = o.view(1, NH, A, hd).transpose(1, 2).reshape(1, A, NH * hd)
            h = h + at.o_proj(o)
            h = h + layer.mlp(layer.post_attention_layernorm(h))
        return inner.norm(h).float()

    def sync():
        if cuda:
            torch.cuda.synchronize()

    g = torch.Generator(device="cpu").manual_seed(a.seed)
    times, parts = [], []
    for step in range(a.steps + 1):
        ids = torch.randint(0, cfg.vocab_size, (1, n), generator=g).to(dev)
        sync()
        t0 = time.perf_counter()
        with torch.no_grad():
            out = inner(input_ids=ids[:, :C], use_cache=True)
            cache = out.past_key_values
        sync()
        t1 = time.perf_counter()
        with torch.no_grad():
            h_full = rows(ids[:, C:], cache, None)
        h_p = rows(ids[:, C:], cache, alpha)
        loss = ((h_p - h_full) ** 2).mean()
        reg = a.lam * alpha.abs().mean()
        sync()
        t2 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        (loss + reg).backward()
        opt.step()
        with torch.no_grad():
            alpha.clamp_(0.0, 1.0)
        sync()
        t3 = time.perf_counter()
        del cache, out
        if step == 0:
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            continue
        times.append(t3 - t0)
        parts.append((t1 - t0, t2 - t1, t3 - t2))
    peak = torch.cuda.max_memory_allocated() if cuda else 0
    med = lambda i: statistics.median(x[i] for x in parts)
    r = {"bench": "torch_train_step", "device": torch.cuda.get_device_name() if cuda else "cpu",
         "shape": a.shape, "context": C, "answer": A, "sink": a.sink, "recent": a.recent, "steps": a.steps,
         "torch": torch.__version__, "step_min_s": min(times), "step_median_s": statistics.median(times),
         "step_max_s": max(times), "prefill_s": med(0), "rows_s": med(1), "backward_step_s": med(2),
         "peak_bytes": peak, "loss_last": float(loss.detach())}
    print(json.dumps(r))
    print(f"torch step ({a.shape}, {C} + {A}): min {r['step_min_s']:.3f} s, median {r['step_median_s']:.3f} s, "
          f"max {r['step_max_s']:.3f} s; prefill {r['prefill_s']:.3f}, rows x2 {r['rows_s']:.3f}, backward + AdamW "
          f"{r['backward_step_s']:.3f}; peak {peak / 1e9:.1f} GB", file=sys.stderr)


if __name__ == "__main__":
    main()
