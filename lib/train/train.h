/* train.h - learning LeanK's channel scales alpha (leank-train).
 *
 * alpha (n_layers, n_kv_heads, head_dim), float32 in [0,1], scales the
 * post-RoPE keys of "middle" tokens: for an answer row at position p, key j
 * gets the full logit q.k when j < sink or p - j < recent, else q.(alpha*k).
 * Stage 1 minimises
 *     mean_answer_rows mean_dims (h_full - h_pruned)^2 + lambda * mean|alpha|
 * (h = hidden state after the final RMSNorm); stage 2 uses alpha*mask, with
 * mask = lk_mask_from_alpha(alpha, ratio, align), and passes the gradient
 * straight through to every alpha. AdamW, batch 1, a warm-up/decay schedule.
 *
 * The forward/backward is a backend (struct of function pointers). The CPU
 * reference (train_cpu.c) computes in double: it is the definition that the
 * GPU backend is checked against, and its gradient is checked against finite
 * differences (tests/unit/test_train.c). */
#ifndef LEANK_TRAIN_H
#define LEANK_TRAIN_H

#include "util.h"

struct lk_model;

/* ---- options (YAML config, then command line) ---- */

typedef enum { LK_TRAIN_LEARN, LK_TRAIN_NORM } lk_train_method;

typedef struct {
    int stage;                 /* 1 or 2 */
    lk_train_method method;
    long steps;                /* optimisation steps (norm: samples read) */
    double lr;                 /* peak learning rate of this stage */
    double lambda;             /* stage 1: weight of mean|alpha| (0 in stage 2) */
    double ratio;              /* stage 2: fraction of channels pruned */
    int align;                 /* stage 2: per-head kept count multiple */
    int sink, recent;          /* full-key windows */
    long checkpoint_every;     /* steps between checkpoints (0: only at the end / on SIGINT) */
    uint64_t seed;             /* sample order */
    int shuffle;               /* shuffle buffer: pick at random among this many samples (1 = file order) */
    double beta1, beta2, eps, weight_decay; /* AdamW */
} lk_train_opts;

/* The reference defaults for a stage (1 or 2): stage 1 lr 0.02, lambda 0.06;
 * stage 2 lr 0.01, ratio 0.7, align 32; sink 128, recent 1024; AdamW betas
 * 0.9/0.999, eps 1e-8, weight decay 0; shuffle 16, seed 0, checkpoints
 * every 50 steps, 1000 steps. */
void lk_train_opts_default(lk_train_opts *o, int stage);

/* Read a YAML config into o (keys absent keep o's values). Layout:
 *   sink: 128            recent: 1024        seed: 0        shuffle: 16
 *   checkpoint_every: 50
 *   stage1: {lr: 0.02, lambda: 0.06, steps: 1000}
 *   stage2: {lr: 0.01, ratio: 0.7, align: 32, steps: 500}
 *   adam: {beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0}
 *   model: "free text"   (informational)
 * Only the section of o->stage is applied; unknown keys are refused. */
int lk_train_config_load(lk_train_opts *o, const char *path, lk_err *err);

/* Learning-rate multiplier at step t (0-based) of n:
 * min(1, max((t+1)/(n/5), 0.1), max((n-t)/(n/5), 0.1)). */
double lk_train_lr_mult(long t, long n);

/* ---- the backend: forward and backward of one sample ---- */

typedef struct lk_train_backend {
    const char *name;
    void *ctx;
    int n_layers, n_kv_heads, head_dim;
    /* tokens[n]: rows [0, n_ctx) are the context, [n_ctx, n) the answer
     * (n_ctx >= 1, n > n_ctx). Runs the dense context once (no gradient). */
    int (*prepare)(void *ctx, const int *tokens, int n, int n_ctx, lk_err *err);
    /* alpha (n_layers*n_kv_heads*head_dim): the effective scales (already
     * clamped / masked). Distillation loss of the prepared sample into *loss;
     * if grad is not NULL, dloss/dalpha into grad (overwritten). */
    int (*loss_grad)(void *ctx, const double *alpha, double *loss, double *grad, lk_err *err);
    /* Norm heuristic: add to q_abs and k_abs (each n_layers*n_kv_heads*head_dim)
     * the mean |q_c| over the answer rows' queries of each kv group and the
     * mean |k_c| over the middle keys (sink <= j < n - recent). */
    int (*norm_stats)(void *ctx, double *q_abs, double *k_abs, lk_err *err);
    void (*free)(void *ctx);
} lk_train_backend;

/* The CPU reference backend over a loaded model (weights copied to double;
 * m must outlive the backend: embeddings and the RoPE config are read from it). */
int lk_train_cpu_new(lk_train_backend *b, const struct lk_model *m, int sink, int recent,
                     lk_err *err);
/* The CUDA backend over a CUDA engine (kernels/train_cuda.cu): the context
 * is prefilled by the engine itself (a dense sequence of its KV pool), the
 * answer rows run through the engine's kernels in the model's compute type
 * with f32 accumulation; alpha, its gradient and every reduction are f32 and
 * deterministic. own: the backend frees e. A CPU-only build returns
 * LK_EDEVICE. */
struct lk_engine;
int lk_train_cuda_new(lk_train_backend *b, struct lk_engine *e, int own, int sink, int recent,
                      lk_err *err);
static inline void lk_train_backend_free(lk_train_backend *b) {
    if (b && b->free) b->free(b->ctx);
    if (b) b->ctx = NULL;
}

/* ---- training state, the step, files ---- */

typedef struct {
    int n_layers, n_kv_heads, head_dim;
    size_t n;            /* n_layers * n_kv_heads * head_dim */
    float *alpha;        /* (n) parameters */
    float *m, *v;        /* (n) AdamW moments */
    long step;           /* completed steps */
    long sample_pos;     /* samples consumed (position in the sample stream) */
    uint64_t rng;        /* xorshift64* state (sample order) */
    /* scratch (not saved) */
    double *alpha_eff, *grad; /* (n) */
    uint8_t *keep;            /* (n) stage-2 mask */
} lk_train_state;

int lk_train_state_init(lk_train_state *s, int n_layers, int n_kv_heads, int head_dim,
                        uint64_t seed, lk_err *err); /* 0 or LK_ENOMEM */
void lk_train_state_free(lk_train_state *s);

typedef struct {
    double loss;     /* distillation loss */
    double reg;      /* lambda * mean|alpha| */
    double lr;       /* learning rate used */
    double mean_alpha, frac_small; /* after the update: mean alpha, fraction < 0.1 */
    double kept;     /* stage 2: fraction of channels the mask kept */
} lk_train_stats;

/* Clamp a to [0,1]. */
void lk_train_clamp(float *a, size_t n);

/* The objective on the prepared sample: clamp alpha, (stage 2) derive the
 * mask into s->keep, alpha_eff = alpha (or alpha*mask), distillation loss and
 * regulariser into st, the gradient with respect to alpha into s->grad. */
int lk_train_objective(lk_train_state *s, lk_train_backend *b, const lk_train_opts *o,
                       lk_train_stats *st, lk_err *err);
/* One step on the prepared sample: clamp alpha, (stage 2) derive the mask,
 * loss and gradient through the backend, regulariser, AdamW update, clamp. */
int lk_train_step(lk_train_state *s, lk_train_backend *b, const lk_train_opts *o,
                  lk_train_stats *st, lk_err *err);

/* Alpha file: safetensors, one F32 tensor "alpha" (n_layers, n_kv_heads,
 * head_dim), metadata format=leank-alpha, stage, steps, method, model
 * (fingerprint, 16 hex digits), sink and recent (the cache windows it was
 * trained with; leank-binarize carries them into the mask). NULL = not written. */
typedef struct {
    const char *stage, *steps, *method, *model, *sink, *recent;
} lk_alpha_meta;
int lk_alpha_save(const char *path, const float *alpha, int n_layers, int n_kv_heads,
                  int head_dim, const lk_alpha_meta *meta, lk_err *err);
/* Load into alpha (n floats) and check the shape matches. */
int lk_alpha_load(const char *path, float *alpha, int n_layers, int n_kv_heads, int head_dim,
                  lk_err *err);

/* Checkpoint: safetensors with "alpha", "adam_m", "adam_v" (F32, same shape)
 * and metadata format=leank-train-checkpoint, stage, method, step, sample_pos,
 * rng (16 hex digits), steps, model (fingerprint), run (fingerprint of the
 * options that must not change on resume). */
int lk_train_checkpoint_save(const char *path, const lk_train_state *s, const lk_train_opts *o,
                             uint64_t model_fp, lk_err *err);
int lk_train_checkpoint_load(const char *path, lk_train_state *s, const lk_train_opts *o,
                             uint64_t model_fp, lk_err *err);
/* Fingerprint of the options a resumed run must share. */
uint64_t lk_train_opts_fingerprint(const lk_train_opts *o);

#endif
