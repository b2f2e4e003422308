#!/usr/bin/env python3
"""power_floor.py - what the 32K context prefill of the Llama-3.1-8B shape
costs on this GPU when it is only its tensor-core work, done by the vendor's
libraries (cuBLAS through torch.matmul, cuDNN through SDPA), in time and in
energy, sustained long enough for the power cap to act.

The prefill of `leank-bench train` (kv_only) is 31 whole layers plus the last
layer's qkv product: per layer x (M, 4096) times qkv (6144), o (4096),
gate_up (28672) and down (14336 -> 4096) weights, and causal attention of 32
query / 8 kv heads over M keys (hd 128). Phases, each R reps of one prefill's
worth, after a warm-up rep:
  gemm    the products only, back to back
  attn    the attention only (cuDNN SDPA), back to back
  both    per layer the products and the attention, interleaved (a prefill
          without norms, RoPE, SwiGLU or residual adds)
For each: seconds per prefill (median of the reps, min, max), TFLOP/s, joules
per prefill (NVML's total-energy counter over the reps / R), mean power, and
the SM clock (NVML, sampled every 10 ms: median). One JSON object a phase on
stdout, a table on stderr.

  python3 dev/bench/power_floor.py -m 32768 -r 5
"""
import argparse
import json
import statistics
import sys
import threading
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-m", "--rows", type=int, default=32768)
    ap.add_argument("-r", "--reps", type=int, default=5)
    ap.add_argument("--phases", default="gemm,attn,both")
    a = ap.parse_args()
    import torch
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel
    import pynvml

    pynvml.nvmlInit()
    dev = torch.cuda.current_device()
    h = pynvml.nvmlDeviceGetHandleByIndex(dev)  # one GPU visible: CUDA's and NVML's order agree

    M, D, W, F_, L = a.rows, 4096, 6144, 14336, 32
    H, G, hd = 32, 8, 128
    torch.manual_seed(1)
    bf = torch.bfloat16
    x = torch.randn(M, D, device="cuda", dtype=bf)
    hmid = torch.randn(M, F_, device="cuda", dtype=bf)
    # one set of weights a layer would be 7 GB x 32: the products' cost does
    # not depend on which weights, so two sets alternate (no L2 reuse: 436 MB each)
    ws = [dict(qkv=torch.randn(W, D, device="cuda", dtype=bf) * 0.02,
               o=torch.randn(D, D, device="cuda", dtype=bf) * 0.02,
               gu=torch.randn(2 * F_, D, device="cuda", dtype=bf) * 0.02,
               down=torch.randn(D, F_, device="cuda", dtype=bf) * 0.02) for _ in range(2)]
    out_qkv = torch.empty(M, W, device="cuda", dtype=bf)
    out_d = torch.empty(M, D, device="cuda", dtype=bf)
    out_gu = torch.empty(M, 2 * F_, device="cuda", dtype=bf)
    q = torch.randn(1, H, M, hd, device="cuda", dtype=bf)
    k = torch.randn(1, G, M, hd, device="cuda", dtype=bf)
    v = torch.randn(1, G, M, hd, device="cuda", dtype=bf)

    def products(l):
        w = ws[l & 1]
        torch.matmul(x, w["qkv"].t(), out=out_qkv)
        if l == L - 1:
            return
        torch.matmul(x, w["o"].t(), out=out_d)
        torch.matmul(x, w["gu"].t(), out=out_gu)
        torch.matmul(hmid, w["down"].t(), out=out_d)

    def attention(l):
        if l == L - 1:
            return
        F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)

    fl_gemm = 2.0 * M * D * W * L + 2.0 * M * (D * D + D * 2 * F_ + F_ * D) * (L - 1)
    fl_attn = 4.0 * hd * H * M * (M + 1) / 2 * (L - 1)
    phases = {
        "gemm": (lambda: [products(l) for l in range(L)], fl_gemm),
        "attn": (lambda: [attention(l) for l in range(L)], fl_attn),
        "both": (lambda: [(products(l), attention(l)) for l in range(L)], fl_gemm + fl_attn),
    }
    clocks, sampling = [], [False]

    def sampler():
        while sampling[0]:
            clocks.append((pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_SM),
                           pynvml.nvmlDeviceGetPowerUsage(h) / 1000.0))
            time.sleep(0.01)

    res = []
    with sdpa_kernel([SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION]):
        for name in a.phases.split(","):
            run, flop = phases[name]
            run()
            torch.cuda.synchronize()
            time.sleep(2.0)  # let the clock and the power controller settle between phases
            ev = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(a.reps)]
            clocks.clear()
            sampling[0] = True
            th = threading.Thread(target=sampler)
            th.start()
            e0 = pynvml.nvmlDeviceGetTotalEnergyConsumption(h)
            t0 = time.perf_counter()
            for s, e in ev:
                s.record()
                run()
                e.record()
            torch.cuda.synchronize()
            t1 = time.perf_counter()
            e1 = pynvml.nvmlDeviceGetTotalEnergyConsumption(h)
            sampling[0] = False
            th.join()
            ts = [s.elapsed_time(e) / 1000.0 for s, e in ev]
            med = statistics.median(ts)
            joules = (e1 - e0) / 1000.0 / a.reps
            r = {"phase": name, "rows": M, "reps": a.reps, "s_median": med, "s_min": min(ts), "s_max": max(ts),
                 "tflops": flop / med / 1e12, "pflop": flop / 1e15, "joules": joules,
                 "watts_mean": (e1 - e0) / 1000.0 / (t1 - t0),
                 "sm_mhz_median": statistics.median([c for c, _ in clocks]) if clocks else None,
                 "watts_sampled_median": statistics.median([p for _, p in clocks]) if clocks else None}
            res.append(r)
            print(json.dumps(r))
    print(f"{'phase':6} {'s med':>7} {'min':>7} {'max':>7} {'TFLOP/s':>8} {'J':>7} {'W':>5} {'MHz':>5}",
          file=sys.stderr)
    for r in res:
        print(f"{r['phase']:6} {r['s_median']:7.3f} {r['s_min']:7.3f} {r['s_max']:7.3f} {r['tflops']:8.0f} "
              f"{r['joules']:7.0f} {r['watts_mean']:5.0f} {r['sm_mhz_median'] or 0:5.0f}", file=sys.stderr)


if __name__ == "__main__":
    main()
