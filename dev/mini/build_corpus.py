#!/usr/bin/env python3
"""Build leank-mini's text corpus, train its tokenizer, pre-tokenize.

Inputs: Debian packages unpacked by corpus.sh (default /tmp/mini-deb/root),
and the project's shared corpora (../shared/data: Paul Graham essays, 73
public-domain books), read as paths, never copied into the repo.

Split (fixed, by position, no randomness): of every document the LAST 10 % of
its characters (cut at a paragraph / line boundary) is held out; of the Paul
Graham essays the last 20 % (the RULER haystack: evaluation haystacks are
built from this held-out part only). gcide: every 10th entry block held out.

Outputs (in OUTDIR, default .carry/mini):
  tokenizer.json                 byte-level BPE, 8192 tokens, Llama-3 regex
  train_prose.u16 / train_dict.u16 / heldout_prose.u16 / heldout_dict.u16
  pg_heldout.txt                 held-out essay text (eval haystack)
  pg_train.txt                   training essay text
  stats.json
"""
import argparse, gzip, io, json, os, re, sys
import numpy as np
from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers, processors, Regex

LLAMA3_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
             r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
BOS, EOS = "<|begin_of_text|>", "<|end_of_text|>"
VOCAB = 8192


def rewrap(text):
    """Join hard-wrapped lines into paragraphs (blank line = paragraph)."""
    paras = re.split(r"\n\s*\n", text)
    out = []
    for p in paras:
        p = " ".join(l.strip() for l in p.splitlines() if l.strip())
        p = re.sub(r"[ \t]+", " ", p)
        if p:
            out.append(p)
    return out


def split_tail(text, frac):
    """(train, heldout): heldout = last frac of characters, cut at a newline."""
    cut = int(len(text) * (1 - frac))
    nl = text.find("\n", cut)
    if nl < 0:
        nl = cut
    return text[:nl], text[nl + 1:]


def load_debian(root):
    docs = {}  # name -> list of paragraphs
    dd = os.path.join(root, "usr/share/dictd")
    for name in ("devil", "jargon"):
        t = gzip.open(os.path.join(dd, name + ".dict.dz"), "rt", encoding="utf-8", errors="replace").read()
        docs[name] = rewrap(t)
    g = gzip.open(os.path.join(dd, "gcide.dict.dz"), "rt", encoding="utf-8", errors="replace").read()
    g = re.sub(r"\[(1913 Webster|PJC|Webster 1913 Suppl\.|Century Dict\.)[^\]]*\]", "", g)
    g = re.sub(r"\\[^\\\n]{1,80}\\", "", g)  # pronunciation \Ab"di*ca*tive\
    docs["gcide"] = rewrap(g)
    # WordNet and FOLDOC (added for the second leank-mini: more LM text, fewer
    # passes over each token). One line per sense; indentation dropped.
    for name in ("wn", "foldoc"):
        t = gzip.open(os.path.join(dd, name + ".dict.dz"), "rt", encoding="utf-8", errors="replace").read()
        t = re.sub(r"\n[ \t]+", "\n", t)
        t = re.sub(r"[ \t]+", " ", t)
        t = re.sub(r"\n{3,}", "\n\n", t)
        docs[name] = t.split("\n\n") if name == "foldoc" else t.split("\n")
    fd = os.path.join(root, "usr/share/games/fortunes")
    fort = []
    for f in sorted(os.listdir(fd)):
        p = os.path.join(fd, f)
        if f.endswith(".dat") or f.endswith(".u8") or os.path.islink(p) or not os.path.isfile(p):
            continue
        t = open(p, encoding="utf-8", errors="replace").read()
        for c in t.split("\n%\n"):
            c = c.strip()
            if c:
                fort.append(c)
    docs["fortunes"] = fort
    return docs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--deb", default="/tmp/mini-deb/root")
    ap.add_argument("--shared", default=os.path.join(os.path.dirname(__file__), "../../../shared/data"))
    ap.add_argument("--out", default=".carry/mini")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    import zstandard  # noqa: F401  (python3-zstandard)

    prose_tr, prose_ho, dict_tr, dict_ho = [], [], [], []
    # Paul Graham essays: last 20 % held out.
    pg = json.load(open(os.path.join(a.shared, "paulgraham/PaulGrahamEssays.json")))["text"]
    pg_tr, pg_ho = split_tail(pg, 0.20)
    open(os.path.join(a.out, "pg_train.txt"), "w").write(pg_tr)
    open(os.path.join(a.out, "pg_heldout.txt"), "w").write(pg_ho)
    prose_tr.append(pg_tr); prose_ho.append(pg_ho)
    # Books: last 10 % of each held out.
    import zstandard
    raw = zstandard.ZstdDecompressor().stream_reader(open(os.path.join(a.shared, "books/books.jsonl.zst"), "rb"))
    for line in io.TextIOWrapper(raw, encoding="utf-8"):
        if not line.strip():
            continue
        t = json.loads(line)["text"]
        tr, ho = split_tail(t, 0.10)
        prose_tr.append(tr); prose_ho.append(ho)
    deb = load_debian(a.deb)
    for name in ("devil", "jargon", "fortunes"):
        ps = deb[name]
        k = int(len(ps) * 0.9)
        prose_tr.append("\n\n".join(ps[:k])); prose_ho.append("\n\n".join(ps[k:]))
    g = deb["gcide"]
    dict_tr.append("\n".join(p for i, p in enumerate(g) if i % 10 != 9))
    dict_ho.append("\n".join(p for i, p in enumerate(g) if i % 10 == 9))
    for name, sep in (("wn", "\n"), ("foldoc", "\n\n")):
        ps = deb[name]
        k = int(len(ps) * 0.9)
        dict_tr.append(sep.join(ps[:k])); dict_ho.append(sep.join(ps[k:]))

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_RE), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False)])
    tok.decoder = decoders.ByteLevel(add_prefix_space=True, trim_offsets=True, use_regex=True)
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, min_frequency=2, special_tokens=[BOS, EOS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)

    def chunks(texts):
        for t in texts:
            for i in range(0, len(t), 1 << 16):
                yield t[i:i + (1 << 16)]
    # Tokenizer trained on the training prose plus a third of the gcide text
    # (WordNet and FOLDOC came later and are left out: same tokenizer as before).
    tok.train_from_iterator(chunks(prose_tr + [dict_tr[0][: len(dict_tr[0]) // 3]]), trainer=trainer)
    bos = tok.token_to_id(BOS)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS}:0 $A:0", pair=f"{BOS}:0 $A:0 {BOS}:1 $B:1", special_tokens=[(BOS, bos)])
    tok.save(os.path.join(a.out, "tokenizer.json"))
    eos = tok.token_to_id(EOS)

    stats = {"bos": bos, "eos": eos, "vocab": tok.get_vocab_size()}
    for name, docs in (("train_prose", prose_tr), ("heldout_prose", prose_ho),
                       ("train_dict", dict_tr), ("heldout_dict", dict_ho)):
        ids = []
        for d in docs:
            parts = [d[i:i + (1 << 16)] for i in range(0, len(d), 1 << 16)]
            # cut at newlines so no word is split between parts
            fixed, carry = [], ""
            for p in parts:
                p = carry + p
                j = p.rfind("\n")
                if j < 0:
                    carry = p; continue
                fixed.append(p[:j + 1]); carry = p[j + 1:]
            if carry:
                fixed.append(carry)
            encs = tok.encode_batch(fixed, add_special_tokens=False)
            ids.append(eos)
            for e in encs:
                ids.extend(e.ids)
        arr = np.array(ids, dtype=np.uint16)
        arr.tofile(os.path.join(a.out, name + ".u16"))
        stats[name] = {"docs": len(docs), "chars": sum(map(len, docs)), "tokens": int(arr.size)}
        print(name, stats[name], flush=True)
    json.dump(stats, open(os.path.join(a.out, "stats.json"), "w"), indent=1)


if __name__ == "__main__":
    main()
