#!/usr/bin/env python3
"""Train leank-mini (LlamaForCausalLM layout) on the GPU machine; resumable.

  python3 dev/mini/train.py --data .carry/mini --ckpt /root/ckpt --out $OUT \
      --seconds 480 --until-step N

Runs at most --seconds of training (then evaluates, checkpoints fp32 weights +
optimizer to --ckpt, and exports the bf16 HF model to --out/model). Resumes
from --ckpt/state.pt if present, else from --init (an exported HF dir), else
from scratch with --seed. Curriculum by global step (see PHASES).
"""
import argparse, json, math, os, sys, time
import multiprocessing as mp
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

CFG = dict(vocab_size=8192, hidden_size=384, intermediate_size=1024, num_hidden_layers=6,
           num_attention_heads=3, num_key_value_heads=1, head_dim=128, rope_theta=500000.0,
           rms_norm_eps=1e-5, max_position_embeddings=16384, tie_word_embeddings=True)

# (first step, sequence lengths, rows per length (batch), LM share)
PHASES = [
    (0, [512, 1024], {512: 192, 1024: 96}, 0.20),
    (1500, [1024, 2048, 4096], {1024: 96, 2048: 48, 4096: 24}, 0.15),
    (3000, [2048, 4096, 8192, 16384], {2048: 48, 4096: 24, 8192: 12, 16384: 6}, 0.10),
]


def phase_of(step):
    p = 0
    for i, ph in enumerate(PHASES):
        if step >= ph[0]:
            p = i
    return p


# ---------------------------------------------------------------- model
class RMSNorm(nn.Module):
    def __init__(self, d, eps):
        super().__init__(); self.weight = nn.Parameter(torch.ones(d)); self.eps = eps

    def forward(self, x):
        dt = x.dtype; x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dt)


def rot_half(x):
    a, b = x.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)


class Attn(nn.Module):
    def __init__(s, c):
        super().__init__()
        d, h, kv, hd = c["hidden_size"], c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]
        s.h, s.kv, s.hd = h, kv, hd
        s.q_proj = nn.Linear(d, h * hd, bias=False); s.k_proj = nn.Linear(d, kv * hd, bias=False)
        s.v_proj = nn.Linear(d, kv * hd, bias=False); s.o_proj = nn.Linear(h * hd, d, bias=False)

    def forward(s, x, cos, sin):
        B, T, _ = x.shape
        q = s.q_proj(x).view(B, T, s.h, s.hd).transpose(1, 2)
        k = s.k_proj(x).view(B, T, s.kv, s.hd).transpose(1, 2)
        v = s.v_proj(x).view(B, T, s.kv, s.hd).transpose(1, 2)
        q = (q * cos + rot_half(q) * sin).to(v.dtype); k = (k * cos + rot_half(k) * sin).to(v.dtype)
        rep = s.h // s.kv
        k = k.repeat_interleave(rep, dim=1); v = v.repeat_interleave(rep, dim=1)
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return s.o_proj(o.transpose(1, 2).reshape(B, T, s.h * s.hd))


class MLP(nn.Module):
    def __init__(s, c):
        super().__init__()
        d, f = c["hidden_size"], c["intermediate_size"]
        s.gate_proj = nn.Linear(d, f, bias=False); s.up_proj = nn.Linear(d, f, bias=False)
        s.down_proj = nn.Linear(f, d, bias=False)

    def forward(s, x):
        return s.down_proj(F.silu(s.gate_proj(x)) * s.up_proj(x))


class Layer(nn.Module):
    def __init__(s, c):
        super().__init__()
        s.input_layernorm = RMSNorm(c["hidden_size"], c["rms_norm_eps"]); s.self_attn = Attn(c)
        s.post_attention_layernorm = RMSNorm(c["hidden_size"], c["rms_norm_eps"]); s.mlp = MLP(c)

    def forward(s, x, cos, sin):
        x = x + s.self_attn(s.input_layernorm(x), cos, sin)
        return x + s.mlp(s.post_attention_layernorm(x))


class Inner(nn.Module):
    def __init__(s, c):
        super().__init__()
        s.embed_tokens = nn.Embedding(c["vocab_size"], c["hidden_size"])
        s.layers = nn.ModuleList([Layer(c) for _ in range(c["num_hidden_layers"])])
        s.norm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])


class Model(nn.Module):
    def __init__(s, c):
        super().__init__()
        s.c = c; s.model = Inner(c)
        hd = c["head_dim"]
        inv = 1.0 / (c["rope_theta"] ** (torch.arange(0, hd, 2, dtype=torch.int64).float() / hd))
        s.register_buffer("inv_freq", inv, persistent=False)
        std = 0.02
        for n, p in s.named_parameters():
            if p.dim() == 2:
                nn.init.normal_(p, 0.0, std / math.sqrt(2 * c["num_hidden_layers"]) if n.endswith(("o_proj.weight", "down_proj.weight")) else std)

    def rope(s, T, device):
        t = torch.arange(T, device=device, dtype=torch.float32)
        f = torch.outer(t, s.inv_freq.to(device))
        e = torch.cat((f, f), dim=-1)
        return e.cos()[None, None], e.sin()[None, None]

    def forward(s, ids):
        cos, sin = s.rope(ids.shape[1], ids.device)
        x = s.model.embed_tokens(ids)
        for l in s.model.layers:
            x = l(x, cos, sin)
        x = s.model.norm(x)
        return x @ s.model.embed_tokens.weight.t()  # tied lm_head


# ---------------------------------------------------------------- data workers
_G = None


def _winit(data, words, split):
    global _G
    from gen import Gen
    _G = Gen(data, words, split)


def _mk(a):
    seed, L, p_lm, ph = a
    return _G.row(seed, L, p_lm, ph)


def _mk_eval(a):
    seed, L, task = a
    return _G.eval_row(seed, L, task)


def stack(rows, dev):
    ids = torch.from_numpy(np.stack([r[0] for r in rows])).to(dev, non_blocking=True).long()
    w = torch.from_numpy(np.stack([r[1] for r in rows])).to(dev, non_blocking=True)
    q = torch.from_numpy(np.stack([r[2] for r in rows]).astype(np.int32)).to(dev, non_blocking=True)
    return ids, w, q


def loss_fn(model, ids, w, q):
    with torch.autocast("cuda", dtype=torch.bfloat16):
        logits = model(ids[:, :-1])
    tgt = ids[:, 1:]; ww = w[:, 1:]
    ce = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), tgt.reshape(-1), reduction="none").view_as(ww)
    loss = (ce * ww).sum() / ww.sum()
    with torch.no_grad():
        am = q[:, 1:] > 0
        acc = ((logits.argmax(-1) == tgt) & am).sum().float() / am.sum().clamp(min=1)
    return loss, acc, logits


@torch.no_grad()
def eval_tasks(model, pool, lens, tasks, n, dev, bsz_tokens=65536):
    res = {}
    for L in lens:
        for task in tasks:
            rows = [r for r in pool.map(_mk_eval, [(100000 + i, L, task) for i in range(n)]) if r is not None]
            ok = 0; tot = 0
            bs = max(1, bsz_tokens // L)
            for i in range(0, len(rows), bs):
                ids, w, q = stack(rows[i:i + bs], dev)
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    lg = model(ids[:, :-1])
                pred = lg.argmax(-1); tgt = ids[:, 1:]; qq = q[:, 1:]
                m = qq == 1
                wrong = ((pred != tgt) & m).sum(1)
                ok += int((wrong == 0).sum()); tot += ids.shape[0]
            res[f"{task}@{L}"] = ok / max(1, tot)
    return res


@torch.no_grad()
def ppl(model, arr, L, n, dev, seed):
    rng = np.random.default_rng(seed)
    tot = 0.0; cnt = 0
    for i in range(n):
        s = int(rng.integers(0, len(arr) - L - 1))
        ids = torch.from_numpy(arr[s:s + L].astype(np.int64))[None].to(dev)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            lg = model(ids[:, :-1])
        tot += float(F.cross_entropy(lg.float()[0], ids[0, 1:], reduction="sum")); cnt += L - 1
    return math.exp(tot / cnt)


def export(model, outdir, tokfile, step):
    from safetensors.torch import save_file
    os.makedirs(outdir, exist_ok=True)
    sd = {k: v.detach().to(torch.bfloat16).contiguous().cpu() for k, v in model.state_dict().items()
          if k != "lm_head.weight"}
    names = sorted(sd, key=lambda k: (k != "model.embed_tokens.weight", k))
    shards, cur, size = [], {}, 0
    for k in names:
        b = sd[k].numel() * 2
        if cur and size + b > 12 * 1024 * 1024:
            shards.append(cur); cur, size = {}, 0
        cur[k] = sd[k]; size += b
    shards.append(cur)
    idx = {"metadata": {"total_size": sum(v.numel() * 2 for v in sd.values())}, "weight_map": {}}
    for i, sh in enumerate(shards):
        fn = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file(sh, os.path.join(outdir, fn), metadata={"format": "pt"})
        for k in sh:
            idx["weight_map"][k] = fn
    json.dump(idx, open(os.path.join(outdir, "model.safetensors.index.json"), "w"), indent=2)
    tok = json.load(open(tokfile))
    bos = next(t["id"] for t in tok["added_tokens"] if t["content"] == "<|begin_of_text|>")
    eos = next(t["id"] for t in tok["added_tokens"] if t["content"] == "<|end_of_text|>")
    cfg = dict(architectures=["LlamaForCausalLM"], model_type="llama", hidden_act="silu",
               attention_bias=False, attention_dropout=0.0, mlp_bias=False, initializer_range=0.02,
               bos_token_id=bos, eos_token_id=eos, rope_scaling=None, torch_dtype="bfloat16",
               use_cache=True, pretraining_tp=1, **CFG)
    json.dump(cfg, open(os.path.join(outdir, "config.json"), "w"), indent=2)
    idx["metadata"]["leank_mini_step"] = step
    json.dump(idx, open(os.path.join(outdir, "model.safetensors.index.json"), "w"), indent=2)


def load_hf(model, d):
    from safetensors.torch import load_file
    idx = json.load(open(os.path.join(d, "model.safetensors.index.json")))
    sd = {}
    for fn in set(idx["weight_map"].values()):
        sd.update(load_file(os.path.join(d, fn)))
    missing, unexp = model.load_state_dict({k: v.float() for k, v in sd.items()}, strict=False)
    print("init from", d, "missing", missing, "unexpected", unexp)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=".carry/mini")
    ap.add_argument("--words", default=None)
    ap.add_argument("--ckpt", default="/root/ckpt")
    ap.add_argument("--out", default=os.environ.get("OUT", "/tmp/out"))
    ap.add_argument("--init", default=None)
    ap.add_argument("--seconds", type=float, default=420)
    ap.add_argument("--until-step", type=int, default=10 ** 9)
    ap.add_argument("--total-steps", type=int, default=6000)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--min-lr-frac", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--workers", type=int, default=14)
    ap.add_argument("--final-eval-n", type=int, default=32)
    ap.add_argument("--phase-steps", default="1500,3000")
    a = ap.parse_args()
    for i, v in enumerate(a.phase_steps.split(",")):
        PHASES[i + 1] = (int(v),) + PHASES[i + 1][1:]
    words = a.words or os.path.join(a.data, "words")
    t_start = time.time()
    torch.manual_seed(a.seed)
    dev = "cuda"
    ctx = mp.get_context("fork")
    pool = ctx.Pool(a.workers, initializer=_winit, initargs=(a.data, words, "train"))
    epool = ctx.Pool(4, initializer=_winit, initargs=(a.data, words, "heldout"))
    torch.backends.cuda.matmul.allow_tf32 = True
    model = Model(CFG).to(dev)
    nparam = sum(p.numel() for p in model.parameters())
    decay = [p for p in model.parameters() if p.dim() == 2]
    nodecay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": nodecay, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.95), eps=1e-8, fused=True)
    step = 0; hist = []
    st_path = os.path.join(a.ckpt, "state.pt")
    if os.path.exists(st_path):
        st = torch.load(st_path, map_location=dev)
        model.load_state_dict(st["model"]); opt.load_state_dict(st["opt"]); step = st["step"]; hist = st["hist"]
        print(f"resumed step {step}")
    elif a.init:
        load_hf(model, a.init)
        step = json.load(open(os.path.join(a.init, "model.safetensors.index.json")))["metadata"]["leank_mini_step"]
        print(f"re-init from exported weights at step {step} (fresh optimizer)")
    print(f"params {nparam / 1e6:.2f} M", flush=True)

    tr_prose = np.fromfile(os.path.join(a.data, "train_prose.u16"), dtype=np.uint16)
    ho_prose = np.fromfile(os.path.join(a.data, "heldout_prose.u16"), dtype=np.uint16)
    tr_dict = np.fromfile(os.path.join(a.data, "train_dict.u16"), dtype=np.uint16)
    ho_dict = np.fromfile(os.path.join(a.data, "heldout_dict.u16"), dtype=np.uint16)

    def batch_args(s):
        ph = phase_of(s); _, lens, bs, plm = PHASES[ph]
        rng = np.random.default_rng((a.seed, s))
        L = int(rng.choice(lens))
        return [((a.seed, s, i), L, plm, ph) for i in range(bs[L])]

    def submit(s):
        return pool.map_async(_mk, [((a.seed * 1000003 + s) * 1009 + i, L, p, ph)
                                    for i, (_, L, p, ph) in enumerate(batch_args(s))])

    pending = {s: submit(s) for s in range(step, step + 6)}
    model.train()
    t0 = time.time(); tok_seen = 0; last_print = t0
    end_step = min(a.until_step, a.total_steps)
    while step < end_step and time.time() - t0 < a.seconds:
        rows = pending.pop(step).get()
        pending[step + 6] = submit(step + 6)
        ids, w, q = stack(rows, dev)
        lr = a.lr * min(1.0, (step + 1) / a.warmup) * (a.min_lr_frac + (1 - a.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * min(1.0, step / a.total_steps))))
        for g in opt.param_groups:
            g["lr"] = lr
        loss, acc, _ = loss_fn(model, ids, w, q)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        tok_seen += ids.numel(); step += 1
        if step % 50 == 0:
            el = time.time() - t0
            print(f"step {step} L {ids.shape[1]} loss {loss.item():.3f} ansacc {acc.item():.3f} gn {gn.item():.2f} "
                  f"lr {lr:.2e} {tok_seen / el / 1e3:.0f} Ktok/s t {el:.0f}s", flush=True)
        if step % a.eval_every == 0:
            model.eval()
            ph = phase_of(step)
            lens = [1024] if ph == 0 else ([1024, 4096] if ph == 1 else [4096, 16384])
            r = eval_tasks(model, epool, lens, ["niah_single", "multikey", "vt"], 16, dev)
            print("EVAL", step, json.dumps({k: round(v, 3) for k, v in r.items()}), flush=True)
            hist.append({"step": step, **r})
            model.train()
    for p in pending.values():
        p.wait()
    train_s = time.time() - t0
    # final for this call: eval + ppl + checkpoint + export
    model.eval()
    r = eval_tasks(model, epool, [1024, 4096, 8192, 16384], ["niah_single", "niah_noise", "multikey", "vt"],
                   a.final_eval_n, dev)
    pp = {"ppl_train_prose": ppl(model, tr_prose, 2048, 24, dev, 1), "ppl_heldout_prose": ppl(model, ho_prose, 2048, 24, dev, 1),
          "ppl_train_dict": ppl(model, tr_dict, 2048, 24, dev, 2), "ppl_heldout_dict": ppl(model, ho_dict, 2048, 24, dev, 2)}
    hist.append({"step": step, "final": True, **r, **pp})
    os.makedirs(a.ckpt, exist_ok=True)
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step, "hist": hist}, st_path + ".tmp")
    os.replace(st_path + ".tmp", st_path)
    export(model, os.path.join(a.out, "model"), os.path.join(a.data, "tokenizer.json"), step)
    json.dump(hist, open(os.path.join(a.out, "hist.json"), "w"), indent=1)
    pool.terminate(); epool.terminate()
    print(f"\n== step {step}  train {train_s:.0f}s  total {time.time() - t_start:.0f}s ==")
    for k in sorted(r):
        print(f"{k:28s} {r[k]:.3f}")
    for k, v in pp.items():
        print(f"{k:28s} {v:.2f}")


if __name__ == "__main__":
    main()
