#!/usr/bin/env python3
"""sdpa_decode.py - torch SDPA baselines for leank-bench kernel / attention.

GQA decode attention (one query token per sequence) with the cuDNN backend:
q (B, H, 1, hd), k, v (B, G, len, hd) bf16, enable_gqa (no K/V copies), and
optionally causal prefill attention of one sequence (B 1, n tokens). Times
with CUDA events, median of --reps after warm-up; prints "key value" lines:
  sdpa_decode_ms X        sdpa_decode_backend NAME
  sdpa_prefill_ms X       sdpa_prefill_backend NAME
K/V of the decode shape (8.6 GB at B 64 x 32K) are far larger than L2.
"""
import argparse
import statistics

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel


def median_ms(fn, reps):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times)


def run(backends, fn, reps):
    """First backend of the list that runs: (ms, name)."""
    for be in backends:
        try:
            with sdpa_kernel(be):
                return median_ms(fn, reps), be.name
        except RuntimeError as e:  # backend refused the shape
            print(f"# {be.name}: {str(e).splitlines()[0][:120]}")
    return -1.0, "none"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--kv-heads", type=int, default=8)
    ap.add_argument("--len", type=int, default=32768)
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--prefill", type=int, default=0, help="causal prefill length (0 = skip)")
    a = ap.parse_args()
    dev, dt = "cuda", torch.bfloat16
    torch.manual_seed(0)
    B, H, G, n, hd = a.batch, a.heads, a.kv_heads, a.len, a.head_dim
    q = torch.randn(B, H, 1, hd, device=dev, dtype=dt)
    k = torch.randn(B, G, n, hd, device=dev, dtype=dt)
    v = torch.randn(B, G, n, hd, device=dev, dtype=dt)
    ms, be = run([SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION],
                 lambda: F.scaled_dot_product_attention(q, k, v, enable_gqa=True), a.reps)
    print(f"sdpa_decode_ms {ms:.5f}")
    print(f"sdpa_decode_backend {be}")
    del q, k, v
    torch.cuda.empty_cache()
    if a.prefill > 0:
        m = a.prefill
        q = torch.randn(1, H, m, hd, device=dev, dtype=dt)
        k = torch.randn(1, G, m, hd, device=dev, dtype=dt)
        v = torch.randn(1, G, m, hd, device=dev, dtype=dt)
        ms, be = run([SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION],
                     lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True),
                     min(a.reps, 5))
        print(f"sdpa_prefill_ms {ms:.4f}")
        print(f"sdpa_prefill_backend {be}")


if __name__ == "__main__":
    main()
