# Models for comparing leank's CPU engine with karpathy/llama2.c's run.c (docs/perf.md).
# Writes run.c's checkpoint format (export v0: a Config of 7 int32 -- dim, hidden_dim,
# n_layers, n_heads, n_kv_heads, vocab_size (negative = separate classifier), seq_len --
# then float32 weights in run.c's order, with the unused freq_cis tables zeroed).
#   python3 llama2c_export.py stories MODEL_DIR OUT.bin   HF float32 Llama dir (stories260K);
#       q/k rows are permuted back from HF's rotate_half layout to run.c's interleaved pairs
#   python3 llama2c_export.py random OUT.bin              the random Llama-3-head-shaped model
#       of `leank-bench decode` (dim 1024, 8 heads, 2 kv heads, head_dim 128, 4 layers,
#       MLP 3584, vocab 32000, tied), seq_len 2049 (values differ; speed does not depend on them)
# Needs numpy.
import json, struct, sys, numpy as np
def read_st(path):
    b = open(path, 'rb').read(); n = struct.unpack('<Q', b[:8])[0]; h = json.loads(b[8:8+n]); out = {}
    for k, v in h.items():
        if k == '__metadata__': continue
        s, e = v['data_offsets']; out[k] = np.frombuffer(b[8+n+s:8+n+e], dtype=np.float32).reshape(v['shape'])
    return out
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
if sys.argv[1] == 'stories':
    t = read_st(sys.argv[2] + '/model.safetensors'); c = json.load(open(sys.argv[2] + '/config.json'))
    nh, nkv = c['num_attention_heads'], c['num_key_value_heads']
    layers = []
    for i in range(c['num_hidden_layers']):
        p = f'model.layers.{i}.'
        layers.append(dict(attn_norm=t[p+'input_layernorm.weight'],
            wq=unpermute(t[p+'self_attn.q_proj.weight'], nh), wk=unpermute(t[p+'self_attn.k_proj.weight'], nkv),
            wv=t[p+'self_attn.v_proj.weight'], wo=t[p+'self_attn.o_proj.weight'], ffn_norm=t[p+'post_attention_layernorm.weight'],
            w1=t[p+'mlp.gate_proj.weight'], w2=t[p+'mlp.down_proj.weight'], w3=t[p+'mlp.up_proj.weight']))
    write(sys.argv[3], (c['hidden_size'], c['intermediate_size'], c['num_hidden_layers'], nh, nkv, c['vocab_size']),
          t['model.embed_tokens.weight'], layers, t['model.norm.weight'], c['max_position_embeddings'], c['head_dim'])
else:  # random
    rng = np.random.default_rng(0); r = lambda *s: (rng.random(s, dtype=np.float32) * 2 - 1) * 0.03
    D, H, L, V = 1024, 3584, 4, 32000
    layers = [dict(attn_norm=np.ones(D), wq=r(D, D), wk=r(256, D), wv=r(256, D), wo=r(D, D), ffn_norm=np.ones(D),
                   w1=r(H, D), w2=r(D, H), w3=r(H, D)) for _ in range(L)]
    write(sys.argv[2], (D, H, L, 8, 2, V), r(V, D) * 30, layers, np.ones(D), 2049, 128)
