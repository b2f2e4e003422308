/* engine_cuda.h - what the CUDA engine lends to the CUDA trainer
 * (train_cuda.cu): a read-only view of its weights, stream, cuBLAS handle
 * and RoPE tables, and a dense sequence's page tables, so that the trainer
 * runs the model through the engine's own weights and kernels instead of a
 * copy. C linkage; the pointers stay valid while the engine lives and no
 * other engine call runs in between (lk_seq_new may move the RoPE tables). */
#ifndef LEANK_ENGINE_CUDA_H
#define LEANK_ENGINE_CUDA_H

#include "engine.h"
#include "kvcache.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    const void *wqkv;      /* (q_dim + 2 kv_dim, dim): q_proj, k_proj, v_proj stacked */
    const void *bqkv;      /* (q_dim + 2 kv_dim) or NULL */
    const void *wo;        /* (dim, q_dim) */
    const void *wgu;       /* (2 hidden, dim): gate rows then up rows */
    const void *wd;        /* (dim, hidden) */
    const void *attn_norm; /* (dim) */
    const void *ffn_norm;  /* (dim) */
} lk_cuda_layer_view;

typedef struct {
    int dt;               /* LK_OP_F32 | LK_OP_BF16 (ops.h): weights, activations, cache */
    void *stream;         /* cudaStream_t of every engine launch */
    void *blas;           /* cublasHandle_t on that stream */
    int device;           /* CUDA ordinal */
    int dim, hidden, n_heads, n_kv_heads, head_dim, vocab, n_layers;
    float eps, scale;     /* RMSNorm epsilon, 1/sqrt(head_dim) */
    const void *embed;    /* (vocab, dim) */
    const void *final_norm; /* (dim) */
    const lk_cuda_layer_view *layers; /* (n_layers) */
    const float *rope_cos, *rope_sin; /* (rope_n, head_dim / 2) */
    int rope_n;
} lk_cuda_view;

/* The view of a CUDA engine; LK_EUSAGE for another backend. */
int lk_cuda_engine_view(lk_engine *e, lk_cuda_view *v, lk_err *err);

/* Upload the page tables of s (a dense sequence) and describe them: after
 * it, lk_cuda_kv_gather(dt, k, v, plan, kv, layer, lk_seq_len(s), stream)
 * copies s's keys and values of a layer into (len, n_kv_heads, head_dim)
 * rows. Valid until the next engine call. */
int lk_cuda_seq_layout(lk_engine *e, const lk_seq *s, lk_kv_batch_dev *kv, const lk_kv_plan_dev **plan,
                       lk_err *err);

#ifdef __cplusplus
}
#endif
#endif
