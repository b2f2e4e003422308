/* ops.h - the CUDA engine's row and elementwise kernels (ops.cu), each the
 * twin of a CPU function in lib/model/model.c / lib/model/sampler.c that it is tested
 * against (tests/gpu/gpu_ops.c). C linkage, so C tests can call them.
 *
 * Element types: activations and weights share the model's compute type dt
 * (LK_OP_F32 for f32 checkpoints, LK_OP_BF16 otherwise; the numbering is
 * kvcache.h's). The residual stream x is always f32; every reduction and
 * every product accumulates in f32.
 *
 * Every launcher returns 0 or a cudaError_t value (cudaGetLastError after the
 * launch) and runs on stream (a cudaStream_t, NULL = the default stream). */
#ifndef LEANK_OPS_H
#define LEANK_OPS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum {
    LK_OP_F32 = 0,  /* float */
    LK_OP_BF16 = 1, /* bfloat16 */
    LK_OP_F16 = 2,  /* IEEE half: a source type of lk_op_convert only */
};
static inline size_t lk_op_size(int dt) { return dt == LK_OP_F32 ? 4 : 2; }

/* dst (n) of type dst_dt = src (n) of type src_dt (f32 -> bf16 rounds to
 * nearest even, as lk_f32_to_bf16). */
int lk_op_convert(int dst_dt, void *dst, int src_dt, const void *src, size_t n, void *stream);
/* dst (n) = mean + std * N(0, 1), a counter-based generator: element i
 * depends on (seed, i) only. */
int lk_op_randn(int dt, void *dst, size_t n, uint64_t seed, float mean, float std, void *stream);
/* dst (n) = value */
int lk_op_fill(int dt, void *dst, size_t n, float value, void *stream);

/* x (n, dim) f32 = table (vocab, dim)[ids[r]]; ids (n) on the device, in range. */
int lk_op_embed(int dt, float *x, const void *table, const int *ids, int n, int dim, void *stream);

/* RMSNorm with the residual add fused (lk_rmsnorm): for each row r,
 * if delta: x[r] += delta[r] (delta (n, dim) of type dt), then
 * out[r] (dt) = x[r] / sqrt(mean(x[r]^2) + eps) * w (w (dim) of type dt).
 * out may be NULL (the add alone). */
int lk_op_rmsnorm(int dt, void *out, float *x, const void *delta, const void *w, int n, int dim,
                  float eps, void *stream);

/* After the fused q/k/v projection: row r of qkv (n, q_dim + 2 kv_dim) plus
 * bias (q_dim + 2 kv_dim, may be NULL) is split into q (n, n_heads, hd),
 * k, v (n, n_kv_heads, hd), q and k rotated (lk_rope_apply, HF rotate_half)
 * at position pos[r] (pos on the device) or pos0 + r when pos is NULL.
 * cos, sin: (n_pos, hd / 2) f32 tables (lk_rope_table_build). */
int lk_op_qkv_rope(int dt, const void *qkv, const void *bias, void *q, void *k, void *v,
                   const float *cos, const float *sin, const int *pos, int pos0, int n,
                   int n_heads, int n_kv_heads, int hd, void *stream);

/* out (n, hidden) = silu(gu[:, :hidden]) * gu[:, hidden:] (lk_swiglu);
 * gu (n, 2 hidden), the fused gate/up projection. */
int lk_op_swiglu(int dt, void *out, const void *gu, int n, int hidden, void *stream);

/* dst[b] (n floats, device pointers in dst, a device array of B) = src + b * n. */
int lk_op_scatter_rows(float *const *dst, const float *src, int B, int n, void *stream);

/* out (M, N) = x (M, K) w^T, x and w bf16 (w (N, K) row-major, 16-byte
 * aligned), f32 accumulation, out bf16 or f32 (out_dt): the decode products
 * at small batch (lk_matmul's twin). Only where lk_op_gemv_ok(M, K):
 * 1 <= M <= LK_OP_GEMV_MAX_M and K a multiple of 8. */
#define LK_OP_GEMV_MAX_M 8
int lk_op_gemv_ok(int M, int K);
int lk_op_gemv(int out_dt, void *out, const void *x, const void *w, int M, int N, int K, void *stream);

/* ---- sampling (lk_sample's rule, on the device) ---- */
typedef struct {
    float temperature; /* <= 0: greedy, ties to the lowest id */
    int top_k;         /* 0 = off */
    float top_p;       /* >= 1 = off */
    float u;           /* uniform [0, 1) draw from the sequence's PRNG (host side) */
} lk_op_sample_params;

/* ids[b] = the token drawn from logits[b] (vocab f32; device pointers) with
 * params[b] (device array). Temperature, softmax, the top_k most probable,
 * then the smallest most-probable set whose mass reaches top_p (ties at the
 * threshold kept), renormalised; u picks by the cumulative sum in id order. */
int lk_op_sample(const float *const *logits, const lk_op_sample_params *params, int *ids, int B,
                 int vocab, void *stream);

/* ---- slow references for the engine's checked mode (LEANK_CUDA_CHECK=1) ---- */
/* out (M, N) = x (M, K) w^T, one thread an output (out_dt: f32 or dt). */
int lk_op_ref_gemm(int dt, int out_dt, void *out, const void *x, const void *w, int M, int N, int K, void *stream);
/* Causal attention of n rows (lk_cuda_prefill_attention's contract);
 * scratch: n_heads * n * n floats. */
int lk_op_ref_attention(int dt, void *out, const void *q, const void *k, const void *v, int n, int n_heads,
                        int n_kv_heads, int hd, float scale, float *scratch, void *stream);
/* acc[0] += sum (a - b)^2, acc[1] += sum b^2 over n elements of type dt (acc: 2 doubles on the device). */
int lk_op_diff(int dt, const void *a, const void *b, size_t n, double *acc, void *stream);

#ifdef __cplusplus
}
#endif
#endif
