"""Training / evaluation rows for leank-mini (numpy + HF tokenizers, no torch).

A row is (ids int32[L], w float32[L], q int16[L]):
  w[t]  loss weight of predicting ids[t] (from ids[:t]); 0 at t=0 and padding
  q[t]  >0: ids[t] is an answer token of query number q[t] (for accuracy)
Synthetic rows are built as TEXT then tokenized with the tokenizer itself, so
prompts tokenize exactly as an evaluation prompt would; the answer is
tokenized separately, after the prompt, exactly as a model generates it.
Haystack prose comes from the TRAINING split only (eval rows: held-out split).
"""
import os, re, string
import numpy as np

# Loss weights. Haystack text carries no LM loss: the first leank-mini (stage-1
# haystack weight 1 -> 0.2 -> 0.05) memorised the prose it kept re-reading there
# (train ppl 5.4, held-out 509). LM text comes only from lm_row / padding, at
# random offsets, so each token is seen a few times in a whole run.
HAY_W = 0.0
PROSE_FRAC = 0.06  # share of prose (vs dictionary) in LM text: ~3.5 passes over the prose in a run
NOISE = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
NIAH_T = ("Some special magic {t} are hidden within the following text. Make sure to memorize it. "
          "I will quiz you about the {t} afterwards.\n{context}\n")
NIAH_Q = "What are all the special magic {t} for {key} mentioned in the provided text?"
NIAH_A = " The special magic {t} for {key} mentioned in the provided text are"
NEEDLE = "One of the special magic {t} for {key} is: {value}."
VT_T = "Memorize and track the chain(s) of variable assignment hidden in the following text.\n\n{context}\n"
VT_Q = "Question: Find all variables that are assigned the value {value} in the text above."
VT_A = (" Answer: According to the chain(s) of variable assignment in the text above, {n} variables are "
        "{ass} the value {value}, they are:")


class Gen:
    def __init__(self, data_dir, words_dir, split="train"):
        from tokenizers import Tokenizer
        self.tok = Tokenizer.from_file(os.path.join(data_dir, "tokenizer.json"))
        self.bos = self.tok.token_to_id("<|begin_of_text|>")
        self.eos = self.tok.token_to_id("<|end_of_text|>")
        pre = "train" if split == "train" else "heldout"
        self.prose = np.fromfile(os.path.join(data_dir, pre + "_prose.u16"), dtype=np.uint16)
        self.dict = np.fromfile(os.path.join(data_dir, pre + "_dict.u16"), dtype=np.uint16)
        pg = open(os.path.join(data_dir, "pg_train.txt" if split == "train" else "pg_heldout.txt")).read()
        self.pg = pg
        rd = lambda f: [w.strip() for w in open(os.path.join(words_dir, f)) if w.strip()]
        self.adj, self.noun = rd("adjectivelist.txt"), rd("nounlist.txt")
        self.split = split

    def enc(self, s):
        return self.tok.encode(s, add_special_tokens=False).ids

    # ---------------- haystacks (lists of sentences) -----------------
    def prose_sents(self, rng, nchars):
        if rng.random() < 0.5 or self.split != "train":
            s = int(rng.integers(0, max(1, len(self.pg) - nchars - 1)))
            text = self.pg[s:s + nchars]
        else:
            ntok = nchars // 4 + 8
            s = int(rng.integers(0, len(self.prose) - ntok - 1))
            text = self.tok.decode(self.prose[s:s + ntok].tolist())
        sents = re.split(r"(?<=[.!?])\s+", text)
        if len(sents) > 2:
            sents = sents[1:-1]  # drop partial first/last sentences
        return sents

    def noise_sents(self, n):
        return [NOISE] * n

    def key(self, rng, uuid=False):
        if uuid:
            return self.uuid(rng)
        return f"{self.adj[rng.integers(len(self.adj))]}-{self.noun[rng.integers(len(self.noun))]}"

    def uuid(self, rng):
        h = "".join("0123456789abcdef"[i] for i in rng.integers(0, 16, 32))
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

    def value(self, rng, kind):
        if kind == "uuids":
            return self.uuid(rng)
        return str(int(rng.integers(1000000, 10000000)))

    # ---------------- rows -----------------
    def lm_text(self, rng, n):
        """n LM tokens from a random offset of the prose or dictionary text."""
        src = self.prose if rng.random() < PROSE_FRAC else self.dict
        s = int(rng.integers(0, len(src) - n))
        return src[s:s + n].tolist()

    def finish(self, rng, L, segs):
        """segs: list of (ids, weight, qid). Returns padded row of length L (or None if too long)."""
        ids = [self.bos]; w = [0.0]; q = [0]
        for s, wt, qi in segs:
            ids += s; w += [wt] * len(s); q += [qi] * len(s)
        if len(ids) > L:
            return None
        if len(ids) < L:  # pad with EOS + LM text (LM loss), never part of the task
            n = L - len(ids)
            fill = [self.eos] + (self.lm_text(rng, n - 1) if n > 1 else [])
            ids += fill; w += [1.0] * n; q += [0] * n
        return (np.array(ids, np.int32), np.array(w, np.float32), np.array(q, np.int16))

    def lm_row(self, rng, L):
        ids = np.array([self.bos] + self.lm_text(rng, L - 1), np.int32)
        w = np.ones(L, np.float32); w[0] = 0
        return ids, w, np.zeros(L, np.int16)

    def build_context(self, rng, L_ctx, hay, needles, joiner=" "):
        """Insert needle sentences at random depths into a haystack of ~L_ctx tokens; returns text."""
        cpt = 3.6 if hay == "prose" else 4.3  # chars per token, rough
        nchars = max(0, int(L_ctx * cpt))
        if hay == "noise":
            sents = self.noise_sents(max(1, nchars // (len(NOISE) + 1)))
        elif hay == "needles":
            sents = []
        else:
            sents = self.prose_sents(rng, nchars) if nchars > 0 else []
        pos = sorted(int(rng.integers(0, len(sents) + 1)) for _ in needles)
        order = rng.permutation(len(needles))
        out = []; j = 0
        for i in range(len(sents) + 1):
            while j < len(pos) and pos[j] == i:
                out.append(needles[order[j]]); j += 1
            if i < len(sents):
                out.append(sents[i])
        return joiner.join(out)

    def niah_row(self, rng, L, spec):
        """spec: dict(nkeys, nvals, nq, hay, kind, ukey)"""
        kind = spec.get("kind", "numbers")
        keys = []
        while len(keys) < spec["nkeys"]:
            k = self.key(rng, spec.get("ukey", False))
            if k not in keys:
                keys.append(k)
        vals = {k: [self.value(rng, kind) for _ in range(spec["nvals"] if i == 0 else 1)] for i, k in enumerate(keys)}
        needles = [NEEDLE.format(t=kind, key=k, value=v) for k in keys for v in vals[k]]
        hay = spec["hay"]
        extra = []
        if hay == "needles":  # multikey_2: distractor needles fill the haystack
            nn = max(0, (L - 300) // (30 if kind == "numbers" else 45))
            while len(extra) < nn:
                k = self.key(rng, spec.get("ukey", False))
                if k not in vals:
                    extra.append(NEEDLE.format(t=kind, key=k, value=self.value(rng, kind)))
        qkeys = [keys[0]] + [keys[i] for i in rng.permutation(np.arange(1, len(keys)))[: spec["nq"] - 1]]
        qa = []
        for qi, k in enumerate(qkeys):
            vs = vals[k]
            ans = " " + (", ".join(vs[:-1]) + ", and " + vs[-1] if len(vs) > 1 else vs[0]) + "."
            qtxt = ("" if qi == 0 else "\n") + NIAH_Q.format(t=kind, key=k) + NIAH_A.format(t=kind, key=k)
            qa.append((self.enc(qtxt), 1.0, 0))
            qa.append((self.enc(ans), 5.0, qi + 1))
        fixed = sum(len(s) for s, _, _ in qa) + 40 + sum(len(n) for n in needles + extra) // 3
        L_ctx = L - 1 - fixed
        for shrink in (0.97, 0.85, 0.7, 0.5, 0.3):
            ctx = self.build_context(rng, int(L_ctx * shrink), hay, needles + extra)
            pre = self.enc(NIAH_T.format(t=kind, context=ctx))
            r = self.finish(rng, L, [(pre, HAY_W, 0)] + qa)
            if r is not None:
                return r
        return None

    def vt_row(self, rng, L, nchains=1, nhops=4, nq=1):
        chains = []; used = set()
        for c in range(nchains):
            names = []
            while len(names) < nhops + 1:
                v = "".join(rng.choice(list(string.ascii_uppercase), 5))
                if v not in used:
                    used.add(v); names.append(v)
            value = str(int(rng.integers(10000, 100000)))
            chains.append((names, value))
        needles = []
        for names, value in chains:
            needles.append(f"VAR {names[0]} = {value}.")
            for i in range(nhops):
                needles.append(f"VAR {names[i + 1]} = VAR {names[i]}.")
        # keep the chain order (each assignment after the one it reads)
        hay = "noise" if rng.random() < 0.8 else "prose"
        joiner = " " if rng.random() < 0.6 else "\n"
        ass = "assgined" if rng.random() < 0.5 else "assigned"
        space_in_prompt = rng.random() < 0.5
        qa = []
        for qi, (names, value) in enumerate(chains[:nq]):
            qtxt = ("" if qi == 0 else "\n") + VT_Q.format(value=value) + VT_A.format(n=nhops + 1, ass=ass, value=value)
            ans = " ".join(names)
            if space_in_prompt:
                qtxt += " "
            else:
                ans = " " + ans
            qa.append((self.enc(qtxt), 1.0, 0))
            qa.append((self.enc(ans), 5.0, qi + 1))
        fixed = sum(len(s) for s, _, _ in qa) + 40 + len(needles) * 9
        L_ctx = L - 1 - fixed
        for shrink in (0.97, 0.85, 0.7, 0.5, 0.3):
            cpt = 3.6 if hay == "prose" else 4.3
            nchars = int(L_ctx * shrink * cpt)
            sents = (self.noise_sents(max(1, nchars // (len(NOISE) + 1))) if hay == "noise"
                     else self.prose_sents(rng, nchars))
            pos = sorted(int(rng.integers(0, len(sents) + 1)) for _ in needles)
            # chains interleaved but each chain in order: assign sorted positions to needles in
            # an order that keeps every chain increasing
            lab = np.repeat(np.arange(nchains), nhops + 1); rng.shuffle(lab)
            nxt = [0] * nchains; seq = []
            for c in lab:
                seq.append(needles[c * (nhops + 1) + nxt[c]]); nxt[c] += 1
            out = []; j = 0
            for i in range(len(sents) + 1):
                while j < len(pos) and pos[j] == i:
                    out.append(seq[j]); j += 1
                if i < len(sents):
                    out.append(sents[i])
            pre = self.enc(VT_T.format(context=joiner.join(out)))
            r = self.finish(rng, L, [(pre, HAY_W, 0)] + qa)
            if r is not None:
                return r
        return None

    def sample_spec(self, rng, L, phase):
        """Random synthetic task for a row of length L."""
        u = rng.random()
        kind = "uuids" if rng.random() < 0.12 else "numbers"
        hay = rng.choice(["noise", "prose", "prose", "needles"], p=[0.3, 0.3, 0.3, 0.1])
        if u < 0.60:
            return ("vt", dict(nchains=int(rng.integers(1, 4)), nhops=int(rng.integers(2, 6)) if phase == 0 else 4,
                               nq=1))
        if u < 0.72:  # single needle
            return ("niah", dict(nkeys=1, nvals=1, nq=1, hay=hay if hay != "needles" else "prose", kind=kind))
        if u < 0.78:  # multivalue
            return ("niah", dict(nkeys=1, nvals=4, nq=1, hay=hay if hay != "needles" else "noise", kind=kind))
        # multikey, several queried (pure associative recall when many keys, short L)
        maxk = 32 if L <= 1024 else 12
        nk = int(rng.integers(2, maxk + 1))
        return ("niah", dict(nkeys=nk, nvals=1, nq=int(min(nk, rng.integers(1, 9))), hay=hay, kind=kind,
                             ukey=rng.random() < 0.1))

    def row(self, seed, L, p_lm, phase=1):
        rng = np.random.default_rng(seed)
        if rng.random() < p_lm:
            return self.lm_row(rng, L)
        for _ in range(4):
            t, spec = self.sample_spec(rng, L, phase)
            r = self.niah_row(rng, L, spec) if t == "niah" else self.vt_row(rng, L, **spec)
            if r is not None:
                return r
        return self.lm_row(rng, L)

    def eval_row(self, seed, L, task):
        rng = np.random.default_rng(seed)
        if task == "niah_single":
            return self.niah_row(rng, L, dict(nkeys=1, nvals=1, nq=1, hay="prose"))
        if task == "niah_noise":
            return self.niah_row(rng, L, dict(nkeys=1, nvals=1, nq=1, hay="noise"))
        if task == "multikey":
            return self.niah_row(rng, L, dict(nkeys=4, nvals=1, nq=1, hay="prose"))
        if task == "vt":
            return self.vt_row(rng, L, 1, 4, 1)
        raise ValueError(task)
