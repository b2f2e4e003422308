#!/usr/bin/env python3
"""hf_e2e.py - the peer of `leank-bench e2e`: Hugging Face transformers (SDPA)
generating on the same shapes, with random bf16 weights, on the GPU.

Two variants, each timed after a warm-up run of the same shape:
  eager   model.generate with the dynamic cache (transformers' default)
  static  cache_implementation="static": generate compiles its decode step
          with torch.compile; the second run is timed (after compilation)
Per variant: prefill (generate with one new token), the whole generation,
decode ms/step ((total - prefill) / (G - 1)), peak memory
(torch.cuda.max_memory_allocated). One JSON object per variant on stdout
and a table on stderr.

  python3 dev/bench/hf_e2e.py --shape llama3.1-8b -b 52 -p 4096 -g 128 [--variants eager,static]
"""
import argparse
import json
import sys
import time

from hf_shapes import random_model


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", default="llama3.1-8b")
    ap.add_argument("-b", "--batch", type=int, default=1)
    ap.add_argument("-p", "--prompt-len", type=int, default=4096)
    ap.add_argument("-g", "--gen", type=int, default=128)
    ap.add_argument("--variants", default="eager,static")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    import torch
    torch.manual_seed(a.seed)
    model, cfg = random_model(a.shape, torch.bfloat16, "cuda")
    ids = torch.randint(0, cfg.vocab_size, (a.batch, a.prompt_len), device="cuda")
    mask = torch.ones_like(ids)
    dev = torch.cuda.get_device_name()

    def gen(n, **kw):
        torch.cuda.synchronize()
        t = time.perf_counter()
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=n, min_new_tokens=n,
                                 do_sample=False, pad_token_id=0, **kw)
        torch.cuda.synchronize()
        assert out.shape[1] == a.prompt_len + n
        return time.perf_counter() - t

    rows = []
    for v in a.variants.split(","):
        kw = {} if v == "eager" else {"cache_implementation": "static"}
        if v not in ("eager", "static"):
            raise SystemExit(f"hf_e2e.py: unknown variant {v!r}")
        gen(a.gen, **kw)  # warm-up (compilation for static)
        torch.cuda.reset_peak_memory_stats()
        prefill = gen(1, **kw)
        total = gen(a.gen, **kw)
        step = (total - prefill) / max(a.gen - 1, 1)
        r = {"bench": "hf_e2e", "device": dev, "variant": v, "shape": a.shape, "batch": a.batch,
             "prompt": a.prompt_len, "gen": a.gen, "prefill_s": prefill, "total_s": total,
             "step_ms": 1e3 * step, "decode_tok_s": a.batch / step,
             "peak_bytes": torch.cuda.max_memory_allocated(), "torch": torch.__version__}
        import transformers
        r["transformers"] = transformers.__version__
        rows.append(r)
        print(json.dumps(r), flush=True)
    print(f"HF transformers (SDPA), {a.shape}, {dev}: batch {a.batch}, prompt {a.prompt_len}, gen {a.gen}",
          file=sys.stderr)
    for r in rows:
        print(f"  {r['variant']:7s} total {r['total_s']:7.2f} s  prefill {r['prefill_s']:6.2f} s  "
              f"step {r['step_ms']:7.2f} ms  peak {r['peak_bytes'] / 1e9:6.1f} GB", file=sys.stderr)


if __name__ == "__main__":
    main()
