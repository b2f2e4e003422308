#!/usr/bin/env bash
# make-seeds.sh - (re)make the seed inputs of the fuzz targets from the
# programs and leank-mini: run from the repository root after `make`.
# Regression inputs (found by fuzzing or the issue) sit beside them as
# crash-* / bug-* and are kept by hand.
set -eu
B=${LEANK_BIN:-bin}
M=data/models/leank-mini
F=tests/fuzz
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
mkdir -p $F/{config,safetensors,st_index,tokenizer,encode,yaml,samples,maskfiles,tsv,batch}

# config.json: leank-mini and the rope variants
cp $M/config.json $F/config/seed-mini.json
python3 - "$F/config" <<'PY'
import json, sys
d = sys.argv[1]
base = json.load(open("data/models/leank-mini/config.json"))
variants = {
    "llama3": {"rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
               "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}},
    "yarn": {"rope_scaling": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}},
    "linear": {"rope_scaling": {"type": "linear", "factor": 2.0}},
    "qwen2": {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "use_sliding_window": False,
              "sliding_window": 131072, "eos_token_id": [1, 2]},
    "mistral": {"architectures": ["MistralForCausalLM"], "model_type": "mistral", "sliding_window": 4096},
    "v5": {"rope_parameters": {"rope_type": "default", "rope_theta": 10000.0}},
}
for k, v in variants.items():
    c = dict(base); c.update(v)
    json.dump(c, open(f"{d}/seed-{k}.json", "w"), indent=1)
PY

# safetensors: small files of each dtype, with metadata
python3 - "$F/safetensors" "$F/st_index" <<'PY'
import json, struct, sys
def st(path, tensors, meta=None):
    hdr, data, off = {}, b"", 0
    if meta: hdr["__metadata__"] = meta
    for name, (dt, shape, raw) in tensors.items():
        hdr[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(raw)]}
        data += raw; off += len(raw)
    h = json.dumps(hdr).encode()
    h += b" " * (-len(h) % 8)
    open(path, "wb").write(struct.pack("<Q", len(h)) + h + data)
d, di = sys.argv[1], sys.argv[2]
f32 = struct.pack("<4f", 1, -2, 0.5, 3)
st(f"{d}/seed-f32.safetensors", {"x": ("F32", [2, 2], f32)}, {"format": "pt"})
st(f"{d}/seed-mixed.safetensors", {"a": ("BF16", [3], b"\x80\x3f\x00\x40\x00\xc0"),
   "b": ("F16", [2], b"\x00\x3c\x00\xc0"), "c": ("U8", [2, 3], bytes(range(6))),
   "d": ("F32", [0], b""), "e": ("BOOL", [1], b"\x01")})
json.dump({"metadata": {"total_size": 32}, "weight_map": {"x": "a.safetensors", "y": "a.safetensors",
          "z": "b.safetensors"}}, open(f"{di}/seed-index.json", "w"))
json.dump({"weight_map": {"x": "a.safetensors"}}, open(f"{di}/seed-one.json", "w"))
PY
cp $M/model.safetensors.index.json $F/st_index/seed-mini.json

# tokenizer.json: leank-mini cut to its first 400 tokens (and the merges among them)
python3 - "$F/tokenizer" <<'PY'
import json, sys
d = sys.argv[1]
t = json.load(open("data/models/leank-mini/tokenizer.json"))
vocab = {k: v for k, v in t["model"]["vocab"].items() if v < 400}
def parts(m): return m.split(" ", 1) if isinstance(m, str) else m
merges = [m for m in t["model"]["merges"] if all(p in vocab for p in parts(m)) and "".join(parts(m)) in vocab]
t["model"]["vocab"] = vocab
t["model"]["merges"] = merges
t["added_tokens"] = [a for a in t.get("added_tokens", []) if a["id"] < 400]
json.dump(t, open(f"{d}/seed-mini400.json", "w"))
# the same as a SentencePiece-style (Metaspace, byte fallback) tokenizer
sp = dict(t)
sp["pre_tokenizer"] = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first", "split": False}
sp["normalizer"] = {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "\u2581"},
                    {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]}
sp["decoder"] = {"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
                 {"type": "ByteFallback"}, {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}
sp["model"] = dict(t["model"]); sp["model"]["byte_fallback"] = True
json.dump(sp, open(f"{d}/seed-sp.json", "w"))
PY

# text to encode
printf 'Hello, world!\n' > $F/encode/seed-hello.txt
printf '  tabs\tand\r\n newlines \xc3\xa9t\xc3\xa9 \xf0\x9f\x98\x80 12345678 <|begin_of_text|>x' > $F/encode/seed-mixed.txt
printf '\xff\xfe invalid \xc3 utf-8 \xed\xa0\x80' > $F/encode/seed-invalid.txt
head -c 2000 tests/data/mini/heldout.txt > $F/encode/seed-heldout.txt

# training configs
cp data/configs/*.yaml $F/yaml/

# samples: a few short ones from leank-mini
printf 'The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.\n%.0s' $(seq 200) > $T/corpus.txt
python3 -c "import itertools; print('\\n'.join(''.join(w) for w in itertools.product('bcdfgklmnprstvz', 'aeiou', 'nrst')))" > $T/words.txt
"$B/leank-prep" -t $M -c $T/corpus.txt -w $T/words.txt -T train,niah_single_1 -l 300 -n 1 -o $F/samples/seed-train.smp
"$B/leank-prep" -t $M -c $T/corpus.txt -w $T/words.txt -T vt -l 400 -n 1 -o $F/samples/seed-vt.smp

# alpha, mask and plan files
cp dev/mini/logs/masks/alpha1.safetensors $F/maskfiles/seed-alpha-mini.safetensors
cp dev/mini/logs/masks/stage1.safetensors $F/maskfiles/seed-mask-mini.safetensors
"$B/leank-pack" --mask dev/mini/logs/masks/stage1.safetensors -m $M -o $F/maskfiles/seed-plan-mini.safetensors -q
python3 - "$F/maskfiles" <<'PY'
import json, struct, sys
d = sys.argv[1]
raw = struct.pack("<32f", *[(i % 9) / 8 for i in range(32)])
h = json.dumps({"__metadata__": {"format": "leank-alpha", "n_layers": "2", "n_kv_heads": "2", "head_dim": "8"},
                "alpha": {"dtype": "F32", "shape": [2, 2, 8], "data_offsets": [0, len(raw)]}}).encode()
h += b" " * (-len(h) % 8)
open(f"{d}/seed-alpha-2x2x8.safetensors", "wb").write(struct.pack("<Q", len(h)) + h + raw)
PY

# TSV masks
"$B/leank-binarize" dev/mini/logs/masks/stage1.safetensors --tsv -o $F/tsv/seed-mini.tsv -q
printf '# leank-mask n_layers=2 n_kv_heads=1 head_dim=8\n0\t0\t2\t0,7\n1\t0\t0\t\n' > $F/tsv/seed-small.tsv
printf '0\t0\t3\t5,1,2\r\n0\t1\t0\n' > $F/tsv/seed-crlf.tsv

# JSON-lines batch requests
printf '{"prompt": "Hello", "max_tokens": 4}\n\n{"ids": [1, 2, 3], "temperature": 0.7, "top_k": 5, "top_p": 0.9, "seed": 3}\n' > $F/batch/seed-two.jsonl
printf '{"prompt": "Hi", "template": "llama3", "system": "be brief", "max_tokens": 0}\n' > $F/batch/seed-template.jsonl
echo "seeds made in $F"
