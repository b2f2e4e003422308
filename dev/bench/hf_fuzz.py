#!/usr/bin/env python3
"""Differential test of lib/tokenizer against HF `tokenizers`: random slices
of real text (the books corpus) and random mixes of tricky pieces (added
tokens inline, combining marks, Hangul jamo, emoji ZWJ sequences, odd
whitespace, digits, contractions), encoded with and without special tokens;
ids, decode (skip and keep special tokens) and the streaming decode must all
equal HF's. Then random id sequences (mostly single-byte tokens, splitting
characters) must decode and stream-decode as HF decodes them.

usage: hf_fuzz.py TOK_JSONL_BINARY TOKENIZER_JSON [SEED] [SHARED_DIR]
(build TOK_JSONL_BINARY from dev/bench/tok_jsonl.c). Exit 1 on a mismatch."""
import json
import os
import random
import subprocess
import sys

from tokenizers import Tokenizer


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    drv, path = sys.argv[1], sys.argv[2]
    if os.path.isdir(path):
        path = os.path.join(path, "tokenizer.json")
    rng = random.Random(int(sys.argv[3]) if len(sys.argv) > 3 else 1)
    shared = sys.argv[4] if len(sys.argv) > 4 else os.environ.get("LEANK_SHARED", "../shared")
    tk = Tokenizer.from_file(path)
    books = subprocess.run(["zstd", "-dc", os.path.join(shared, "data/books/books.jsonl.zst")],
                           capture_output=True, text=True, check=True).stdout.splitlines()
    books = [json.loads(b)["text"] for b in books]
    added = [a["content"] for a in json.load(open(path, encoding="utf-8"))["added_tokens"]][:40]
    pool = list("aeiou xyzABC  \t\n\r\n\r0123456789.,;:!?'\"-—…()[]{}<>|/\\_@#$%^&*+=~`") + [
        "'s", "'LL", "'Ve", " 's", "\u00a0", "\u3000", "\u2009", "\u200b", "e\u0301", "\u0301",
        "\u00e9", " zq", "zq", "\u1100\u1161\u11a8", "\uac00\u11a8", "한국어", "日本語", "中文", "Ωμέγα",
        "привет", "🦙", "👩‍💻", "🇫🇷", "\U0001F600", "ﬁ", "Å", "\u212b", "①", "½", "١٢٣",
        "\ufeff", "\x00", "\x7f", "\u0085", "\u2028"] + added
    cases = []
    for _ in range(300):
        b = rng.choice(books)
        s = rng.randrange(len(b))
        cases.append(b[s:s + rng.randrange(1, 3000)])
    for _ in range(1500):
        cases.append("".join(rng.choice(pool) for _ in range(rng.randrange(0, 40))))
    cases += ["", " ", "  \n  ", "a" * 5000, " " * 300, "\n" * 50, "3" * 40, "!" * 100]
    V = tk.get_vocab_size()
    seqs = [[rng.randrange(300) if rng.random() < 0.7 else rng.randrange(V)
             for _ in range(rng.randrange(0, 30))] for _ in range(1000)]
    inp = "".join(json.dumps([c, bool(i % 2)]) + "\n" for i, c in enumerate(cases))
    inp += "".join(json.dumps(s) + "\n" for s in seqs)
    out = subprocess.run([drv, path], input=inp, capture_output=True, text=True, check=True)
    res = [json.loads(r) for r in out.stdout.splitlines()]
    bad = 0
    for i, r in enumerate(res):
        if i < len(cases):
            c = cases[i]
            ids = tk.encode(c, add_special_tokens=bool(i % 2)).ids
            what = repr(c[:80])
        else:
            ids = seqs[i - len(cases)]
            what = f"ids {ids[:20]}"
        want = {"ids": ids, "dec": tk.decode(ids, skip_special_tokens=True),
                "dec_all": tk.decode(ids, skip_special_tokens=False)}
        want["stream"] = want["dec"]
        diff = [k for k in want if r.get(k) != want[k]]
        if diff:
            bad += 1
            if bad <= 5:
                print(f"MISMATCH {what}: {diff}: ours {r}")
    print(f"{path}: {len(cases)} strings, {len(seqs)} id sequences, {bad} mismatches")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
