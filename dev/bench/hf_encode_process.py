#!/usr/bin/env python3
"""The HF side of the whole-process tokenizer comparison in docs/perf.md: what
`leank-prep -t TOKENIZER --encode < TEXT` does, as one Python process with HF
tokenizers (load tokenizer.json, encode without special tokens, one id a line
to stdout), single-threaded.
usage: RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false hf_encode_process.py TOKENIZER_JSON < TEXT"""
import os
import sys

os.environ.setdefault("RAYON_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
from tokenizers import Tokenizer  # noqa: E402

tok = Tokenizer.from_file(sys.argv[1])
ids = tok.encode(sys.stdin.read(), add_special_tokens=False).ids
sys.stdout.write("".join(f"{i}\n" for i in ids))
