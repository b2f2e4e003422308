/* model.h - the CPU reference engine: float32 forward pass of Llama-family
 * models (Llama-3.x, Qwen2.5 with q/k/v bias, Mistral) and the LeanK KV cache.
 *
 * Weights come from a Hugging Face checkpoint (lk_st) and config (lk_config):
 * F32 tensors are used in place from the mapping, BF16/F16 ones widened to
 * float32 on load (lk_weights). Every matrix is stored as in HF:
 * (out_features, in_features), row-major, so y = W x.
 *
 * The forward pass (lk_forward) processes n tokens at positions
 * pos .. pos+n-1 (pos = tokens already in the cache): prefill is n = prompt
 * length (sgemm, rows = tokens), decode is n = 1 (sgemv).
 *
 * LeanK attention (the definition the GPU kernel is checked against). The KV
 * cache holds post-RoPE keys. With a mask, each (layer, kv head) has a list of
 * kept channels (width w, ascending). For a query at position p and a key at
 * position j < p stored in the cache:
 *   - j < sink or p - j < recent ("full" keys): logit = q.k / sqrt(head_dim)
 *   - otherwise ("middle" keys), w > 0: logit = q[kept].k[kept] / sqrt(head_dim)
 *     (sum over the kept channels in ascending order), value = the full v_j
 *   - middle keys of a head with w = 0 do not take part at all (no logit, no
 *     value): such a head attends only to sink + recent tokens.
 * The keys of the tokens of one lk_forward call see each other with full
 * logits (causally): a prompt is prefilled with dense attention, as LeanK
 * does, and only keys already in the cache follow the rule above. Decoding one
 * token at a time therefore applies the rule to every earlier key.
 * Storage: the first `sink` tokens and the `recent` most recent tokens are
 * kept full width (sink slots + a ring of `recent` slots); a token leaving the
 * ring moves to the middle store, which keeps only its kept channels of K
 * (compact: (max_middle, w)) and its V only when w > 0. Without a mask the
 * cache is dense (every token full width). */
#ifndef LEANK_MODEL_H
#define LEANK_MODEL_H

#include "config.h"
#include "mask.h"
#include "safetensors.h"
#include "util.h"

/* ---- weights ---- */

/* Where the float32 weights live. An F32 tensor of the checkpoint whose data
 * is float-aligned in its file (4 bytes: every kernel reads with unaligned
 * vector loads, and safetensors offsets are often only 8-byte aligned) is used
 * in place: the pointer points into the checkpoint's read-only mapping, which
 * the model keeps open (a reference to its lk_st), and nothing is copied.
 * Other tensors (BF16, F16, a misaligned F32) are widened once into the
 * model's own memory, the mapped pages of each released as it is read, so a
 * checkpoint never sits in memory twice. Never write through these pointers:
 * a mapped one faults. The mapping reads the file as it is: a checkpoint
 * rewritten in place while a model uses it changes (or, truncated, faults)
 * under it, as with any mmap-loading engine; replacing it by a rename (as
 * leank's writers do) is safe. Each matrix is (out_features, in_features) as
 * in HF. */
typedef struct {
    const float *attn_norm; // (dim)              model.layers.{i}.input_layernorm.weight
    const float *wq;        // (q_dim, dim)       self_attn.q_proj.weight, q_dim = n_heads*head_dim
    const float *wk;        // (kv_dim, dim)      self_attn.k_proj.weight, kv_dim = n_kv_heads*head_dim
    const float *wv;        // (kv_dim, dim)      self_attn.v_proj.weight
    const float *bq;        // (q_dim)  or NULL   self_attn.q_proj.bias (attention_bias)
    const float *bk;        // (kv_dim) or NULL   self_attn.k_proj.bias
    const float *bv;        // (kv_dim) or NULL   self_attn.v_proj.bias
    const float *wo;        // (dim, q_dim)       self_attn.o_proj.weight
    const float *ffn_norm;  // (dim)              post_attention_layernorm.weight
    const float *w_gate;    // (hidden, dim)      mlp.gate_proj.weight
    const float *w_up;      // (hidden, dim)      mlp.up_proj.weight
    const float *w_down;    // (dim, hidden)      mlp.down_proj.weight
} lk_layer_weights;

typedef struct {
    const float *embed;      // (vocab, dim)      model.embed_tokens.weight
    lk_layer_weights *layer; // (n_layers)
    const float *final_norm; // (dim)             model.norm.weight
    const float *lm_head;    // (vocab, dim)      lm_head.weight; == embed when tied
} lk_weights;

typedef struct lk_model {
    lk_config cfg;
    lk_weights w;
    int dim, hidden, q_dim, kv_dim; /* derived sizes */
    size_t n_params;                /* floats held by w (the tied head counted once) */
    size_t n_mapped;                /* of them, floats used in place from the checkpoint's mapping */
    uint64_t fingerprint;           /* lk_config_fingerprint of the checkpoint it came from (0: none) */
    float *own;                     /* the model's own float32 weights (one block), or NULL */
    lk_st *st;                      /* the checkpoint mapped weights point into (a reference), or NULL */
} lk_model;

/* dir: a model directory (config.json + safetensors). */
int lk_model_load(lk_model *m, const char *dir, lk_err *err);
/* From an opened checkpoint and a parsed config (every tensor shape checked).
 * The model takes its own reference to st when it uses mapped weights: the
 * caller may close st at once. */
int lk_model_from_st(lk_model *m, const lk_config *c, const lk_st *st, lk_err *err);
/* A model of config c built in memory: every weight in m->own (zeroed), laid
 * out layer by layer; biases when c->attention_bias, lm_head == embed when
 * c->tie_word_embeddings. The builder fills the weights through casts of the
 * pointers to float * (they are the model's own memory). */
int lk_model_alloc(lk_model *m, const lk_config *c, lk_err *err);
void lk_model_free(lk_model *m);
/* The model's fingerprint (lk_config_fingerprint: config and tensor table);
 * for a model built in memory, of its config alone. */
uint64_t lk_model_fingerprint(const lk_model *m);

/* ---- building blocks (also used by leank-train) ---- */

/* RoPE tables: cos/sin of position * inv_freq (computed in float32 as HF
 * does), times the rope attention scale (yarn's mscale; 1 otherwise). */
typedef struct {
    int n_pos, half;  /* positions, head_dim / 2 */
    float *cos, *sin; // (n_pos, half)
} lk_rope_table;
int lk_rope_table_build(lk_rope_table *r, const lk_config *c, int n_pos, lk_err *err); /* 0 or LK_ENOMEM */
void lk_rope_table_free(lk_rope_table *r);
/* Rotate x (n_heads, head_dim) in place at one position, HF rotate_half
 * layout: channel i pairs with i + head_dim/2. cos/sin: that position's row. */
void lk_rope_apply(float *x, int n_heads, int head_dim, const float *cos, const float *sin);

/* out (n, dim) = x (n, dim) / rms(x) * w, per row. out may equal x. */
void lk_rmsnorm(float *out, const float *x, const float *w, int n, int dim, float eps);
/* out (n, d_out) = x (n, d_in) W^T (+ bias (d_out) if not NULL);
 * W (d_out, d_in). sgemv when n == 1, sgemm otherwise. */
void lk_matmul(float *out, const float *x, const float *w, const float *bias, int n, int d_in,
               int d_out);
/* In place softmax of x (n); entries equal to -INFINITY get probability 0. */
void lk_softmax(float *x, int n);
/* gate (n) = silu(gate) * up */
void lk_swiglu(float *gate, const float *up, size_t n);

/* ---- the KV cache ---- */

typedef struct {
    int n_layers, n_kv_heads, head_dim;
    int max_seq;    /* positions it can hold */
    int sink, recent; /* full-width windows (dense: sink = max_seq, recent = 0) */
    int max_middle; /* max_seq - sink - recent (>= 0) */
    int len;        /* tokens stored: positions 0 .. len-1 */
    int dense;      /* no mask */
    int *width;     // (layer, kv_head) kept channels of middle keys
    int *chan;      // (layer, kv_head, head_dim) kept channel indices, first width used
    float *k_full;  // (layer, kv_head, sink + recent, head_dim) slot j (j < sink), sink + j % recent
    float *v_full;  // (layer, kv_head, sink + recent, head_dim)
    float **k_mid;  // (layer, kv_head) -> (max_middle, width) keys' kept channels; row j - sink
    float **v_mid;  // (layer, kv_head) -> (max_middle, head_dim), NULL when width == 0
    float *block;   /* the one allocation behind k_full .. v_mid */
    size_t bytes;   /* bytes of K and V storage allocated */
} lk_kvcache;

/* mask NULL: dense cache (sink/recent ignored). Otherwise mask shape must
 * match (n_layers, n_kv_heads, head_dim). */
int lk_kv_build(lk_kvcache *c, const lk_config *cfg, int max_seq, const lk_mask *mask,
                int sink, int recent, lk_err *err);
void lk_kv_free(lk_kvcache *c);
void lk_kv_reset(lk_kvcache *c); /* len = 0 */
/* Bytes of K and V needed to hold n tokens (the compact layout), and the
 * dense equivalent (2 * layers * kv_dim * 4 * n). */
size_t lk_kv_bytes(const lk_kvcache *c, int n);
size_t lk_kv_dense_bytes(const lk_kvcache *c, int n);
/* Store n tokens' keys/values of one layer at positions pos .. pos+n-1
 * (k, v: (n, n_kv_heads * head_dim), post-RoPE keys); tokens leaving the
 * recent ring move to the middle store. Does not change len. */
void lk_kv_store(lk_kvcache *c, int layer, int pos, int n, const float *k, const float *v);
/* dst (any layout, same model) takes src's tokens; src must be dense. After a
 * prefill (one lk_forward call on an empty cache, so dense attention) this is
 * exactly the cache dst's own prefill of the same tokens would hold: the
 * pruned-cache runs of one prompt can share one dense prefill. */
int lk_kv_copy(lk_kvcache *dst, const lk_kvcache *src, lk_err *err);

/* ---- run state and forward ---- */

typedef struct {
    int max_rows;   /* tokens per lk_forward call */
    int max_seq;    /* positions */
    int qblock;     /* query rows per attention score block */
    float *x;       // (max_rows, dim) residual stream
    float *xb;      // (max_rows, dim) normed input; after lk_forward: final-normed hidden states
    float *q;       // (max_rows, q_dim)
    float *k, *v;   // (max_rows, kv_dim) this call's post-RoPE keys, values
    float *att;     // (max_rows, q_dim) attention output
    float *hb, *hb2;// (max_rows, hidden)
    float *scores;  // (qblock, max_seq)
    float *qk;      // (head_dim) a query's kept channels (gathered)
    float *logits;  // (vocab) logits of the last row of the last call
    lk_rope_table rope; /* (max_seq, head_dim/2) */
    lk_kvcache kv;
    /* NULL (lk_state_build's default), or called after each layer of a call
     * of more than one token: prefill progress */
    void (*on_layer)(void *ctx, int layers_done, int n_layers);
    void *on_layer_ctx;
    /* Work areas of the threaded CPU engine (attention.c), sized for nthreads
     * threads and grown when the pool grows: per-thread score blocks (scores
     * is thread 0's), and for single-token steps the per-head logits and the
     * per-chunk maxima, sums and partial outputs of the split over positions. */
    int nthreads;
    float *tscores;  // (nthreads, qblock, max_seq)
    float *tscratch; // (nthreads, n_heads + 1, head_dim) gathered queries and keys
    float *hsc;      // (n_heads, max_seq) logits, then exp
    float *cmax, *csum; // (n_heads, max_seq / LK_ATT_CHUNK + 1)
    float *pout;     // (n_heads, max_seq / LK_ATT_CHUNK + 1, head_dim)
} lk_state;

/* Positions per chunk of a single-token attention step: the unit of work of
 * its threads and of its fixed summation order (results do not depend on the
 * thread count). */
#define LK_ATT_CHUNK 256

/* The CPU engine runs on a pool of LEANK_THREADS threads (default: the CPUs
 * this process may use); lk_set_threads(n) changes it between calls (0 = that
 * default), lk_threads() tells it. Matrix products are split over rows or
 * columns, attention over heads, query blocks and key chunks. */
int lk_threads(void);
void lk_set_threads(int n);

/* max_rows: most tokens one lk_forward call takes (prompt length for a single
 * prefill); max_seq: positions; mask NULL = dense. */
int lk_state_build(lk_state *s, const lk_model *m, int max_rows, int max_seq, const lk_mask *mask,
                   int sink, int recent, lk_err *err);
void lk_state_free(lk_state *s);
/* Grow s's per-thread work areas to lk_threads() (lk_forward and
 * lk_attention call it; after lk_set_threads it is done on the next call).
 * 0, or LK_ENOMEM with s as it was. */
int lk_state_threads(lk_state *s, const lk_model *m, lk_err *err);

/* Run tokens (n, 1 <= n <= max_rows) at positions kv.len .. kv.len+n-1,
 * append them to the cache. s->logits gets the last row's logits; if
 * logits_all is not NULL it receives every row's (n, vocab). Fails (LK_EINPUT)
 * on a token id out of range or a full cache. */
int lk_forward(const lk_model *m, lk_state *s, const int *tokens, int n, float *logits_all,
               lk_err *err);

/* Attention of one layer for the n rows of the current call (positions
 * kv.len .. kv.len+n-1): reads s->q, s->k, s->v and the cache, writes s->att.
 * Exposed for tests and for leank-train. 0, or LK_ENOMEM (the work areas
 * for more threads, lk_state_threads). */
int lk_attention(const lk_model *m, lk_state *s, int layer, int n, lk_err *err);

#endif
