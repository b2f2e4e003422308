#!/usr/bin/env python3
"""HF side of `leank-bench tokenize --hf`: load a tokenizer.json with HF
`tokenizers`, encode a file (no special tokens) best of N, single-threaded.
Prints one JSON object: {"load_ms", "encode_ms", "ids", "bytes", "version"};
with IDS_OUT, also writes the ids there as little-endian uint32 (leank-bench
compares them with its own).

usage: hf_tokenize.py TOKENIZER_JSON TEXT_FILE [REPEATS [IDS_OUT]]
Run with RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false (leank-bench sets
them) so that HF uses one thread, as leank does."""
import array
import json
import os
import sys
import time

os.environ.setdefault("RAYON_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import tokenizers  # noqa: E402  (after the thread settings)


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    path, textfile = sys.argv[1], sys.argv[2]
    if os.path.isdir(path):
        path = os.path.join(path, "tokenizer.json")
    repeats = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    with open(textfile, encoding="utf-8", newline="") as f:  # keep CRLF as is
        text = f.read()
    t0 = time.perf_counter()
    tok = tokenizers.Tokenizer.from_file(path)
    load = time.perf_counter() - t0
    best, ids = float("inf"), []
    for _ in range(repeats):
        t0 = time.perf_counter()
        ids = tok.encode(text, add_special_tokens=False).ids
        best = min(best, time.perf_counter() - t0)
    if len(sys.argv) > 4:
        a = array.array("I", ids)
        if sys.byteorder != "little":
            a.byteswap()
        with open(sys.argv[4], "wb") as f:
            a.tofile(f)
    print(json.dumps({"load_ms": load * 1e3, "encode_ms": best * 1e3, "ids": len(ids),
                      "bytes": len(text.encode("utf-8")), "version": tokenizers.__version__}))


if __name__ == "__main__":
    main()
