/* kvcache.h - the KV cache on the GPU: the page layout shared by the CUDA
 * engine (engine_cuda.cu) and the attention kernels (attention.cu), and the
 * kernels' entry points (C linkage, so C tests can call them).
 *
 * One pool: a single cudaMalloc cut into blocks of block_bytes; a block id
 * (int32) addresses pool + id * block_bytes. A sequence owns blocks of two
 * kinds, listed in its page tables:
 *
 *   full pages   (sink + recent slots, dense layout, F = full_tokens slots a
 *                page): for layer l, kv head h, K (F, hd) at element offset
 *                ((l * G + h) * F) * hd, V at L * G * F * hd + the same.
 *                Position j lives in slot j (j < sink) or sink + j % recent
 *                (the recent ring); slot s is row s % F of page s / F.
 *   middle pages (P = mid_tokens rows a page, the plan's pruned layout):
 *                for layer l, kv head h of width w > 0,
 *                K (P, w) at element offset P * (k_off[l] + k_col[l,h]),
 *                V (P, hd) at P * (k_off[L] + v_off[l] + v_col[l,h]);
 *                heads of width 0 have neither. Middle position j (sink <= j)
 *                is row (j - sink) % P of page (j - sink) / P. K rows hold
 *                the kept channels chan[l,h,0..w) of the post-RoPE key, in
 *                that (ascending) order.
 *
 * A dense sequence uses the dense plan: every width hd, chan the identity,
 * sink = recent = 0, so every token is a middle row and it has no full pages.
 *
 * Which tokens are where (the rule shared with the CPU engine, model.h): after
 * a sequence holds len tokens (positions 0 .. len-1),
 *   j < sink                      -> full slot j
 *   j >= max(sink, len - recent)  -> full ring slot sink + j % recent
 *   otherwise                     -> middle row j - sink (kept channels only)
 * Decode appends before it attends: the new token (position len-1) takes its
 * ring slot, and the token it displaces (len-1-recent, when >= sink) moves to
 * its middle row first. The query at p = len-1 then sees the full slots in
 * full and the middle rows over the kept channels, which is model.h's rule
 * (j < sink or p - j < recent: full). A masked plan needs recent >= 1.
 *
 * Element type: the model's compute type (bf16 for bf16/f16 checkpoints, f32
 * for f32 ones); accumulation is always f32. */
#ifndef LEANK_KVCACHE_H
#define LEANK_KVCACHE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* (not safetensors.h's lk_dtype: the two headers meet in engine_cuda.cu) */
typedef enum { LK_KV_F32 = 0, LK_KV_BF16 = 1 } lk_kv_dtype;

/* A plan on the device. Scalars on the host side of the struct; the arrays
 * are device pointers (the struct itself is passed by value to kernels). */
typedef struct {
    int n_layers, n_kv_heads, head_dim;
    int sink, recent;
    int mid_tokens;          /* P: middle rows per page */
    int full_tokens;         /* F: full slots per page */
    int all_full;            /* every width == head_dim (no query gather needed) */
    int64_t mid_token_elems; /* k_off[L] + v_off[L]: elements of one middle token, all layers */
    const int *width;        // (L, G)      device
    const int *chan;         // (L, G, hd)  device, -1 past the width
    const int *k_col;        // (L, G)      device
    const int *v_col;        // (L, G)      device, -1 for width 0
    const int64_t *k_off;    // (L + 1)     device
    const int64_t *v_off;    // (L + 1)     device
} lk_kv_plan_dev;

/* The pool and one batch's page tables (device arrays). */
typedef struct {
    void *pool;              /* device base */
    size_t block_bytes;
    const int *seq_len;      // (B) tokens in each sequence's cache (decode: after the append)
    const int *mid_pages;    // (B, mid_stride) block ids of middle pages
    const int *full_pages;   // (B, full_stride) block ids of full pages
    int mid_stride, full_stride;
} lk_kv_batch_dev;

/* Full slots a plan needs and pages for max_len positions. */
static inline int lk_kv_full_slots(int sink, int recent) { return sink + recent; }
static inline int lk_kv_mid_rows(int sink, int recent, int max_len) {
    int m = max_len - sink - recent;
    return m > 0 ? m : 0;
}

/* All launchers return 0 or a cudaError_t value (the caller reports it with
 * file:line through lk_err); they launch on stream (a cudaStream_t). */

/* Decode attention of one layer for B sequences of one plan: query rows
 * q (B, n_heads, hd) at positions seq_len[b] - 1, against each sequence's
 * cache (already holding that position); out (B, n_heads, hd). scale is the
 * logit scale (1/sqrt(hd)). Split over the key sequence; partials merged by
 * log-sum-exp in f32 in workspace (lk_cuda_decode_workspace bytes). */
size_t lk_cuda_decode_workspace(int B, int n_heads, int head_dim, int max_len);
int lk_cuda_decode_attention(lk_kv_dtype dt, const void *q, void *out, const lk_kv_plan_dev *plan,
                             const lk_kv_batch_dev *kv, int layer, int B, int n_heads, int max_len,
                             float scale, void *workspace, size_t workspace_bytes, void *stream);

/* Decode append of one layer: k, v (B, G, hd) post-RoPE rows of the new
 * tokens (position seq_len[b] - 1) go into each sequence's cache, moving
 * the token displaced from the ring to its middle row first. */
int lk_cuda_kv_append(lk_kv_dtype dt, const void *k, const void *v, const lk_kv_plan_dev *plan,
                      const lk_kv_batch_dev *kv, int layer, int B, void *stream);

/* Prefill store of one layer for one sequence (batch entry 0 of kv, empty
 * before): k, v (n, G, hd), positions 0 .. n-1, placed by the rule above. */
int lk_cuda_kv_prefill(lk_kv_dtype dt, const void *k, const void *v, const lk_kv_plan_dev *plan,
                       const lk_kv_batch_dev *kv, int layer, int n, void *stream);

/* The inverse for a dense sequence (batch entry 0 of kv, dense plan): its n
 * tokens' K and V of one layer into k, v (n, G, hd). Used to adopt a dense
 * prefill into a pruned sequence (gather, then lk_cuda_kv_prefill). */
int lk_cuda_kv_gather(lk_kv_dtype dt, void *k, void *v, const lk_kv_plan_dev *plan,
                      const lk_kv_batch_dev *kv, int layer, int n, void *stream);

/* Causal prefill attention of one sequence with an empty cache (flash-style,
 * no score matrix in memory; tensor cores for bf16): q (n, n_heads, hd),
 * k, v (n, n_kv_heads, hd), out (n, n_heads, hd); query head h uses kv head
 * h / (n_heads / n_kv_heads). Any n >= 1 and even hd <= 256. */
int lk_cuda_prefill_attention(lk_kv_dtype dt, const void *q, const void *k, const void *v, void *out,
                              int n, int n_heads, int n_kv_heads, int head_dim, float scale,
                              void *stream);

#ifdef __cplusplus
}
#endif
#endif
