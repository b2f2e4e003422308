#!/usr/bin/env python3
"""dev/real/ref.py - HF transformers references for tests/sh/real.sh and
tests/unit/test_real.c (see dev/real/README.md).

  ref.py prompts                      write tests/data/real/prompts.json: the
                                      prompts (text, template, system) and, after
                                      a model has been run, their input ids
  ref.py model NAME DIR [--gguf FILE] HF transformers fp32 (SDPA) on DIR, a
                                      directory made by dev/models/get.sh:
                                      input ids (HF's tokenizer, HF's chat
                                      template), greedy ids, top-20 logits at the
                                      checked positions -> tests/data/real/NAME.json.
                                      With --gguf, also: HF's own GGUF loader
                                      (tokenizer and weights) on the same prompts
                                      and the largest logit difference to DIR.

Needs torch, transformers (dev/models/requirements-ref.txt). Run once per
model; the outputs are committed.
"""
import json
import os
import random
import sys
import time

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = os.path.join(TOP, "tests", "data", "real")
QWEN_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
N_TOP = 20
CHUNK = 1024  # test_real.c prefills long prompts in chunks of this many tokens


def long_prompt():
    """~2.5K tokens of records and one question about one of them."""
    rng = random.Random(18)
    words = ("amber birch cedar delta ember fjord grove harbor iris juniper kestrel lagoon maple "
             "nectar orchid pebble quartz raven sierra tundra umber violet willow yarrow zephyr").split()
    names = ("Ada Lovelace, Alan Turing, Grace Hopper, Edsger Dijkstra, Barbara Liskov, Donald Knuth, "
             "Frances Allen, John Backus, Margaret Hamilton, Ken Thompson, Leslie Lamport, Radia Perlman").split(", ")
    lines, hosts = [], []
    for i in range(1, 111):
        host = f"{rng.choice(words)}-{rng.choice(words)}-{rng.randint(10, 99)}"
        while host in hosts:
            host = f"{rng.choice(words)}-{rng.choice(words)}-{rng.randint(10, 99)}"
        hosts.append(host)
        lines.append(f"Record {i:03d}: host {host}, port {rng.randint(20000, 65000)}, "
                     f"owner {rng.choice(names)}, region {rng.choice(['eu', 'us', 'ap'])}-{rng.randint(1, 9)}.")
    k = 37
    port = lines[k - 1].split("port ")[1].split(",")[0]
    q = (f"\n\nQuestion: what is the port of the record whose host is {hosts[k - 1]}? "
         "Answer with the number only.")
    return "The following is an inventory of servers.\n\n" + "\n".join(lines) + q, port


def make_prompts():
    text, port = long_prompt()
    prompts = [
        {"name": "code", "template": "none", "max_new": 32,
         "prompt": "def quicksort(arr):\n    \"\"\"Sort a list of numbers in ascending order.\"\"\"\n"},
        {"name": "chat", "template": "qwen", "max_new": 32,
         "prompt": "Write a Python function that checks whether a string is a palindrome."},
        {"name": "chat_system", "template": "qwen", "system": "You are a terse assistant.", "max_new": 16,
         "prompt": "What is the capital of France? Answer in one word."},
        {"name": "long", "template": "qwen", "max_new": 12, "prompt": text, "answer": port},
    ]
    return prompts


def dump(path, obj, key):
    """JSON with one line for each element of obj[key] (small diffs, no
    line per number)."""
    head = {k: v for k, v in obj.items() if k != key}
    body = ",\n".join(json.dumps(x, ensure_ascii=False) for x in obj[key])
    text = json.dumps(head, indent=1, ensure_ascii=False)[:-2] if head else "{"
    with open(path, "w") as f:
        f.write(text + (",\n" if head else "\n") + f' "{key}": [\n{body}\n ]\n}}\n')
    json.load(open(path))  # still JSON


def render(p):
    """The text leank-decode --template builds (lib/tokenizer/chat.c); ref.py checks it
    against the model's own Jinja chat template."""
    if p["template"] == "none":
        return p["prompt"]
    return (f"<|im_start|>system\n{p.get('system', QWEN_SYSTEM)}<|im_end|>\n"
            f"<|im_start|>user\n{p['prompt']}<|im_end|>\n<|im_start|>assistant\n")


def hf_ids(tok, p):
    if p["template"] == "none":
        return tok(p["prompt"], add_special_tokens=False)["input_ids"]
    msgs = ([{"role": "system", "content": p["system"]}] if "system" in p else []) + \
        [{"role": "user", "content": p["prompt"]}]
    text = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    if text != render(p):
        raise SystemExit(f"ref.py: {p['name']}: the model's chat template renders {text!r}, "
                         f"leank's qwen template {render(p)!r}")
    return tok(text, add_special_tokens=False)["input_ids"]


def checked_positions(n):
    pos = [c - 1 for c in range(CHUNK, n, CHUNK)]
    return pos + [n - 1]


def top(logits, k=N_TOP):
    import torch

    v, i = torch.topk(logits.float(), k)
    return [int(x) for x in i], [float(x) for x in v]


def run_model(model, ids, max_new, stop):
    """Greedy decoding with the KV cache: prefill logits (all prompt
    positions), then one token at a time. Returns greedy ids, the checks."""
    import torch

    checks = []
    with torch.no_grad():
        out = model(torch.tensor([ids]), use_cache=True)
        for p in checked_positions(len(ids)):
            ti, tv = top(out.logits[0, p])
            checks.append({"pos": p, "top_ids": ti, "top_logits": tv})
        past, logits = out.past_key_values, out.logits[0, -1]
        greedy = []
        for step in range(max_new):
            nxt = int(torch.argmax(logits))
            greedy.append(nxt)
            if nxt in stop or step == max_new - 1:
                break
            out = model(torch.tensor([[nxt]]), past_key_values=past, use_cache=True)
            past, logits = out.past_key_values, out.logits[0, -1]
        # the last decode step's logits (they chose greedy[-1])
        if len(greedy) > 1:
            ti, tv = top(logits)
            checks.append({"pos": len(ids) + len(greedy) - 2, "top_ids": ti, "top_logits": tv})
    return greedy, checks


def main(argv):
    os.makedirs(DATA, exist_ok=True)
    pfile = os.path.join(DATA, "prompts.json")
    if len(argv) == 2 and argv[1] == "prompts":
        dump(pfile, {"prompts": make_prompts()}, "prompts")
        print(f"ref.py: wrote {pfile}")
        return 0
    if len(argv) not in (4, 6) or argv[1] != "model":
        print(__doc__, file=sys.stderr)
        return 2
    name, d = argv[2], argv[3]
    gguf = argv[5] if len(argv) == 6 and argv[4] == "--gguf" else None
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    with open(pfile) as f:
        prompts = json.load(f)["prompts"]
    tok = AutoTokenizer.from_pretrained(d)
    cfg = json.load(open(os.path.join(d, "config.json")))
    stop = cfg["eos_token_id"] if isinstance(cfg["eos_token_id"], list) else [cfg["eos_token_id"]]
    gen = json.load(open(os.path.join(d, "generation_config.json")))
    stop = sorted(set(stop) | set(gen["eos_token_id"] if isinstance(gen["eos_token_id"], list)
                                 else [gen["eos_token_id"]]))
    ids = [hf_ids(tok, p) for p in prompts]
    # the input ids are the tokenizer's, the same for every Qwen2.5 model: kept once in prompts.json
    for p, i in zip(prompts, ids):
        if "input_ids" in p and p["input_ids"] != i:
            raise SystemExit(f"ref.py: {p['name']}: input ids differ from those in {pfile}")
        p["input_ids"] = i
    dump(pfile, {"prompts": prompts}, "prompts")

    model = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32, attn_implementation="sdpa")
    model.eval()
    cases = []
    for p, i in zip(prompts, ids):
        t0 = time.time()
        greedy, checks = run_model(model, i, p["max_new"], stop)
        text = tok.decode(greedy, skip_special_tokens=True)
        print(f"ref.py: {name} {p['name']}: {len(i)} tokens, {time.time() - t0:.0f} s, greedy {text!r}")
        cases.append({"name": p["name"], "n_input": len(i), "greedy_ids": greedy, "greedy_text": text,
                      "checks": checks})
    ref = {"model": name, "made_by": "dev/real/ref.py", "torch": torch.__version__,
           "transformers": transformers.__version__, "dtype": "float32", "attn": "sdpa",
           "stop_ids": stop, "cases": cases}
    out = os.path.join(DATA, name + ".json")
    dump(out, ref, "cases")
    print(f"ref.py: wrote {out}")
    if gguf:
        # HF's own GGUF path: its tokenizer must give the same ids, its weights the same logits
        del model
        gd, gf = os.path.dirname(os.path.abspath(gguf)), os.path.basename(gguf)
        gtok = AutoTokenizer.from_pretrained(gd, gguf_file=gf)
        for p, i in zip(prompts, ids):
            gi = gtok(render(p), add_special_tokens=False)["input_ids"]
            if gi != i:
                raise SystemExit(f"ref.py: {p['name']}: HF's GGUF tokenizer gives other ids")
        gm = AutoModelForCausalLM.from_pretrained(gd, gguf_file=gf, dtype=torch.float32)
        gm.eval()
        worst = 0.0
        with torch.no_grad():
            for p, i, c in zip(prompts, ids, cases):
                if len(i) > CHUNK:
                    continue
                lg = gm(torch.tensor([i])).logits[0, -1]
                for ti, tv in zip(c["checks"][0]["top_ids"], c["checks"][0]["top_logits"]):
                    worst = max(worst, abs(float(lg[ti]) - tv))
        ref["hf_gguf_loader"] = {"same_input_ids": True, "max_abs_logit_diff_top20": worst}
        print(f"ref.py: {name}: HF's GGUF loader: same input ids; top-20 logits within {worst:.3g}")
        dump(out, ref, "cases")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
