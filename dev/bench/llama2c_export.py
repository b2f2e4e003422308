# Models for comparing leank's CPU engine with karpathy/llama2.c's run.c (docs/perf.md).
# Writes run.c's checkpoint format (export v0: a Config of 7 int32 -- dim, hidden_dim,
# n_layers, n_heads, n_kv_heads, vocab_size (negative = separate classifier), seq_len --
# then float32 weights in run.c's order, with the unused freq_cis tables zeroed).
#   python3 llama2c_export.py stories MODEL_DIR OUT.bin [SEQ_LEN]   HF Llama dir with a tied head,
#       F32 or BF16 (widened), one file or shards (stories260K, data/models/leank-mini); q/k rows are
#       permuted back from HF's rotate_half layout to run.c's interleaved pairs. run.c's RoPE
#       theta is fixed at 10000: for leank-mini (theta 500000) its text differs, its speed does not.
#   python3 llama2c_export.py tokenizer TOKENIZER_JSON OUT.bin VOCAB_SIZE   run.c's tokenizer.bin
#   python3 llama2c_export.py random OUT.bin              the random Llama-3-head-shaped model
#       of `leank-bench decode` (dim 1024, 8 heads, 2 kv heads, head_dim 128, 4 layers,
#       MLP 3584, vocab 32000, tied), seq_len 2049 (values differ; speed does not depend on them)
# Needs numpy.
import json, os, struct, sys, numpy as np
def read_st(path):
    b = open(path, 'rb').read(); n = struct.unpack('<Q', b[:8])[0]; h = json.loads(b[8:8+n]); out = {}
    for k, v in h.items():
        if k == '__metadata__': continue
        s, e = v['data_offsets']; raw = b[8+n+s:8+n+e]
        if v['dtype'] == 'F32': a = np.frombuffer(raw, dtype=np.float32)
        elif v['dtype'] == 'BF16': a = (np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)
        else: sys.exit(f'{path}: {k}: dtype {v["dtype"]} (expected F32 or BF16)')
        out[k] = a.reshape(v['shape'])
    return out
def read_dir(d):  # model.safetensors, or the shards named by model.safetensors.index.json
    if os.path.exists(d + '/model.safetensors'): return read_st(d + '/model.safetensors')
    out = {}
    for f in sorted(set(json.load(open(d + '/model.safetensors.index.json'))['weight_map'].values())):
        out.update(read_st(d + '/' + f))
    return out
def write_tokenizer(tok_json, out, vocab_size):
    # run.c's tokenizer.bin: int max_token_length, then per id: float score, int len, bytes.
    # Pieces are the vocabulary strings with SentencePiece's U+2581 as a space and GPT-2's
    # byte-level alphabet mapped back to bytes; scores are -id (run.c only uses them to encode
    # a text prompt, which the benchmarks do not do). An empty piece becomes one space (run.c
    # cannot read a zero-length one).
    t = json.load(open(tok_json)); vocab = dict(t['model']['vocab'])
    for a in t.get('added_tokens', []): vocab[a['content']] = a['id']
    bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256)); cs = bs[:]; k = 0
    for c in range(256):
        if c not in bs: bs.append(c); cs.append(256 + k); k += 1
    unbyte = {chr(c): b for b, c in zip(bs, cs)}
    bytelevel = t['model'].get('type') == 'BPE' and 'ByteLevel' in json.dumps(t.get('pre_tokenizer'))
    pieces = [b' '] * vocab_size
    for s_, i in vocab.items():
        if i >= vocab_size: continue
        if bytelevel and all(ch in unbyte for ch in s_): p = bytes(unbyte[ch] for ch in s_)
        else: p = s_.replace('\u2581', ' ').encode()
        pieces[i] = p or b' '
    with open(out, 'wb') as f:
        f.write(struct.pack('i', max(len(p) for p in pieces)))
        for i, p in enumerate(pieces): f.write(struct.pack('fi', -float(i), len(p)) + p)
def unpermute(w, n_heads):  # HF rotate_half rows -> interleaved pairs (inverse of HF's permute)
    d1, d2 = w.shape
    return w.reshape(n_heads, 2, d1 // n_heads // 2, d2).transpose(0, 2, 1, 3).reshape(d1, d2)
def write(path, cfg, emb, layers, norm, seq_len, hd):
    dim, hidden, L, nh, nkv, vocab = cfg
    with open(path, 'wb') as f:
        f.write(struct.pack('7i', dim, hidden, L, nh, nkv, vocab, seq_len))
        w = lambda a: f.write(np.ascontiguousarray(a, dtype=np.float32).tobytes())
        w(emb)
        for k in ['attn_norm', 'wq', 'wk', 'wv', 'wo', 'ffn_norm', 'w1', 'w2', 'w3']:
            for l in layers: w(l[k])
        w(norm); w(np.zeros(seq_len * hd // 2)); w(np.zeros(seq_len * hd // 2))
if sys.argv[1] == 'tokenizer':
    write_tokenizer(sys.argv[2], sys.argv[3], int(sys.argv[4]))
elif sys.argv[1] == 'stories':
    t = read_dir(sys.argv[2]); c = json.load(open(sys.argv[2] + '/config.json'))
    nh, nkv = c['num_attention_heads'], c['num_key_value_heads']
    layers = []
    for i in range(c['num_hidden_layers']):
        p = f'model.layers.{i}.'
        layers.append(dict(attn_norm=t[p+'input_layernorm.weight'],
            wq=unpermute(t[p+'self_attn.q_proj.weight'], nh), wk=unpermute(t[p+'self_attn.k_proj.weight'], nkv),
            wv=t[p+'self_attn.v_proj.weight'], wo=t[p+'self_attn.o_proj.weight'], ffn_norm=t[p+'post_attention_layernorm.weight'],
            w1=t[p+'mlp.gate_proj.weight'], w2=t[p+'mlp.down_proj.weight'], w3=t[p+'mlp.up_proj.weight']))
    tied = 'lm_head.weight' not in t
    if not tied: sys.exit('llama2c_export: an untied lm_head is not written (run.c reads it after the freq tables)')
    seq = int(sys.argv[4]) if len(sys.argv) > 4 else c['max_position_embeddings']
    write(sys.argv[3], (c['hidden_size'], c['intermediate_size'], c['num_hidden_layers'], nh, nkv, c['vocab_size']),
          t['model.embed_tokens.weight'], layers, t['model.norm.weight'], seq, c['head_dim'])
else:  # random
    rng = np.random.default_rng(0); r = lambda *s: (rng.random(s, dtype=np.float32) * 2 - 1) * 0.03
    D, H, L, V = 1024, 3584, 4, 32000
    layers = [dict(attn_norm=np.ones(D), wq=r(D, D), wk=r(256, D), wv=r(256, D), wo=r(D, D), ffn_norm=np.ones(D),
                   w1=r(H, D), w2=r(D, H), w3=r(H, D)) for _ in range(L)]
    write(sys.argv[2], (D, H, L, 8, 2, V), r(V, D) * 30, layers, np.ones(D), 2049, 128)
