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

#include <signal.h> /* sig_atomic_t */

#include "engine.h" /* lk_device */
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
    /* Device bytes the backend holds now (weights, cache, buffers); NULL on the CPU. */
    size_t (*device_bytes)(void *ctx);
    /* Seconds of the last prepare (t[0] context prefill, t[1] dense answer
     * rows) and the last loss_grad (t[2] pruned rows and loss, t[3]
     * backward); NULL when the backend does not split them. */
    void (*times)(void *ctx, double t[4]);
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

/* ---- a run: backend choice, the sample stream, the loop (loop.c) ---- */

/* The backend for the model in model_dir on dev. LK_DEVICE_AUTO: cuda when
 * this build has the CUDA training backend and a GPU is visible
 * (lk_cuda_available), else cpu. cpu: the model is loaded into host memory
 * (lk_model_load) for lk_train_cpu_new; cuda: it is opened with the CUDA
 * engine (lk_engine_open, a small KV pool the backend grows per sample) for
 * lk_train_cuda_new, and no host copy is made. The backend owns what it
 * opened (lk_train_backend_free releases it). *model_fp: the model's
 * fingerprint, the same on either device (config and tensor table:
 * lk_model_fingerprint == lk_engine_fingerprint), so alpha files and
 * checkpoints made on one device are used on the other; *vocab: its
 * vocabulary size (either may be NULL). A build without CUDA, or no GPU,
 * with dev LK_DEVICE_CUDA: LK_EDEVICE, saying which. */
int lk_train_backend_open(lk_train_backend *b, const char *model_dir, lk_device dev, int sink,
                          int recent, uint64_t *model_fp, int *vocab, lk_err *err);

/* What a run reports as it goes (progress). */
typedef enum {
    LK_TRAIN_RESUMED,   /* the checkpoint is loaded and the samples replayed to it: step */
    LK_TRAIN_STEPPED,   /* a step is done: every field */
    LK_TRAIN_NORM_READ, /* norm method: a sample is read (step = samples read) */
} lk_train_event;

typedef struct {
    lk_train_event event;
    long step, steps;            /* steps completed (norm: samples read) of steps */
    long sample;                 /* the sample's index in the samples file (0-based) */
    int length, context;         /* its tokens, of which context */
    const lk_train_stats *stats; /* LK_TRAIN_STEPPED: the step's numbers; else NULL */
    double seconds;              /* LK_TRAIN_STEPPED: the step's wall time */
    double tokens_per_s;         /* LK_TRAIN_STEPPED: this run's speed so far */
} lk_train_progress;
typedef void (*lk_train_progress_fn)(void *ctx, const lk_train_progress *p);

typedef struct {
    const lk_train_opts *opts;   /* method, stage, steps, shuffle, checkpoint_every, ... */
    lk_train_backend *backend;
    lk_train_state *state;       /* initialised, alpha set (1s, or --init clamped) */
    const char *samples;         /* samples file; "-": stdin, its samples kept in memory and
                                  * replayed where a file would be read again (up to 8 GiB) */
    uint64_t tok_fp;             /* the model's tokenizer: the samples' must be the same */
    int vocab;                   /* every token must be below it */
    uint64_t model_fp;           /* recorded in checkpoints, checked on resume */
    const char *checkpoint;      /* checkpoint path; NULL: none (no periodic checkpoints) */
    const char *log;             /* TSV log (leank-train(1), FILES); NULL: none; "-": stdout */
    int resume;                  /* continue from the checkpoint (learned method) */
    long stop_after;             /* stop after this many steps of this run (0: no limit) */
    volatile sig_atomic_t *stop; /* polled before every step: nonzero stops (NULL: never) */
    lk_train_progress_fn progress; /* NULL: silent */
    void *progress_ctx;
} lk_train_run_params;

/* Run the training the options describe, on the backend, over the samples
 * (a shuffle buffer of opts->shuffle samples over the stream, read again
 * from the start at its end): learned, from the checkpoint when resume
 * (the sample stream replayed to its position), writing the log and a
 * checkpoint every opts->checkpoint_every steps and at the end; or the norm
 * heuristic over opts->steps samples. On success state->alpha holds the
 * result (clamped to [0, 1]), and the caller writes it (lk_alpha_save).
 * Stopped (*stop, or stop_after steps): the step under way is finished, the
 * checkpoint written (when there is a path) and the log kept; LK_EINTR with
 * "interrupted at step S/N; checkpoint written to PATH" in err (the norm
 * method keeps no checkpoint). Any other failure: its code and message, the
 * log not written. Nothing here prints, nor exits (but for lk_malloc's
 * out-of-memory exit, as everywhere in the library for now). */
int lk_train_run(const lk_train_run_params *p, lk_err *err);

#endif
