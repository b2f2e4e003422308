/* engine.h - one interface to a model on a device, two backends: the CPU
 * reference engine (model.c, f32) and the CUDA engine (kernels/). Programs
 * (leank-decode, leank-bench) and generate.c reach a model only through it.
 *
 * A sequence (lk_seq) is one growing token stream with its KV cache. Its
 * cache geometry is a plan (plan.h): dense (plan NULL) or LeanK pruned
 * (sink + recent tokens full width, middle tokens with the plan's kept K
 * channels; heads of width 0 keep no middle K or V). The attention rule is
 * model.h's: a prefill is dense among its own tokens; a decoded token at
 * position p sees key j in full when j < sink or p - j < recent, over the
 * plan's kept channels otherwise (nothing at all for a width-0 head).
 *
 * Use:
 *   lk_engine_open(&e, dir, &opts, &err);
 *   lk_seq_new(e, &s, &(lk_seq_opts){.plan = plan, .max_len = n + new});
 *   lk_engine_prefill(e, s, ids, n, &err);          // dense prefill, logits kept
 *   for (;;) { lk_engine_sample(e, &s, 1, &next, &err);       // from the last logits
 *              lk_engine_decode(e, &s, 1, &next, &err); }     // one token per sequence
 * Many sequences decode in one call (ragged lengths, mixed plans).
 *
 * Errors: every function that can fail returns an LK_E* code and fills err;
 * nothing here exits. */
#ifndef LEANK_ENGINE_H
#define LEANK_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "plan.h"
#include "safetensors.h"
#include "util.h"

struct lk_model;

typedef enum {
    LK_DEVICE_AUTO = 0, /* cuda when the build has it and a GPU is present, else cpu */
    LK_DEVICE_CPU,
    LK_DEVICE_CUDA,
} lk_device;

/* "auto", "cpu", "cuda" -> lk_device; -1 if unknown. */
int lk_device_parse(const char *name);
/* 1 when this build has the CUDA backend and a GPU is visible. */
int lk_cuda_available(void);

typedef struct {
    lk_device device;
    int gpu;             /* CUDA device ordinal (default 0) */
    double mem_fraction; /* CUDA: share of the memory free after loading that the KV pool may take (0 = 0.9) */
    size_t pool_bytes;   /* CUDA: KV pool size in bytes; 0 = from mem_fraction */
    int max_batch;       /* CUDA: most sequences in one decode call (0 = 256) */
    int max_prefill;     /* CUDA: most tokens in one prefill call (0 = the model's context) */
} lk_engine_opts;

typedef struct lk_engine lk_engine;
typedef struct lk_seq lk_seq;

/* Model directory (config.json, *.safetensors): weights in their own dtype
 * on the device (CPU: widened to f32). */
int lk_engine_open(lk_engine **e, const char *dir, const lk_engine_opts *o, lk_err *err);
/* From a parsed config and an opened checkpoint (the directory form calls it). */
int lk_engine_from_st(lk_engine **e, const lk_config *c, const lk_st *st, const lk_engine_opts *o,
                      lk_err *err);
/* From a model already in host memory (f32; tests). The CPU backend
 * borrows m (it must outlive e); CUDA uploads it in dtype ("f32" or "bf16"). */
int lk_engine_from_model(lk_engine **e, const struct lk_model *m, const char *dtype,
                         const lk_engine_opts *o, lk_err *err);
/* A model of config c with random weights of dtype ("bf16" or "f32") made on
 * the device itself (benchmarks of 8B shapes without a 16 GB file). Weights
 * ~ N(0, 0.02), norms 1. CUDA only. */
int lk_engine_random(lk_engine **e, const lk_config *c, const char *dtype, uint64_t seed,
                     const lk_engine_opts *o, lk_err *err);
void lk_engine_free(lk_engine *e);

const lk_config *lk_engine_config(const lk_engine *e);
const char *lk_engine_name(const lk_engine *e);      /* "cpu" | "cuda" */
const char *lk_engine_device_name(const lk_engine *e); /* "CPU", "NVIDIA H200", ... */
const char *lk_engine_cache_dtype(const lk_engine *e); /* "f32" | "bf16" */
/* Fingerprint of the config and the tensors' names, shapes and dtypes
 * (leank-formats(5)); not of the weights' values. */
uint64_t lk_engine_fingerprint(const lk_engine *e);

/* ---- memory ---- */
typedef struct {
    size_t weights;     /* bytes of weights on the device */
    size_t pool;        /* KV pool bytes (CUDA; CPU: 0, caches are allocated per sequence) */
    size_t pool_free;   /* of which free now */
    size_t device_free; /* device memory free outside the pool (CUDA) */
    size_t peak;        /* peak device memory in use by the engine (CUDA) */
} lk_engine_mem;
void lk_engine_memory(const lk_engine *e, lk_engine_mem *m);
/* Cache bytes one sequence of max_len positions with plan (NULL = dense)
 * reserves, and how many such sequences fit in what is free now. */
size_t lk_engine_seq_bytes(const lk_engine *e, const lk_plan *plan, int max_len);
int lk_engine_max_batch(const lk_engine *e, const lk_plan *plan, int max_len);
/* CUDA: make the KV pool anew at bytes (e.g. n * lk_engine_seq_bytes for a
 * known batch, so peak memory is what the batch needs), while no sequence
 * is alive. A no-op on the CPU, whose caches are allocated per sequence. */
int lk_engine_pool_resize(lk_engine *e, size_t bytes, lk_err *err);

/* ---- sequences ---- */
typedef struct {
    float temperature; /* 0 = greedy (ties to the lowest id) */
    int top_k;         /* 0 = off */
    float top_p;       /* 1 = off (0 < top_p <= 1) */
    uint64_t seed;
} lk_sampling;

typedef struct {
    const lk_plan *plan; /* NULL: dense; borrowed, must outlive the sequence */
    int max_len;         /* positions it may reach (prompt + new tokens) */
    lk_sampling sampling;
    int kv_only;         /* the prefill fills the cache and nothing else: the backend may skip
                            what only the last position's logits need (CUDA: the last layer's
                            attention and MLP, the final norm, the LM head); the sequence has
                            no logits to sample until its first decode (the trainer's context) */
} lk_seq_opts;

/* Reserves the sequence's whole cache (max_len positions) up front: a
 * sequence that does not fit is refused here (LK_ENOMEM, with the bytes
 * needed and free and the largest batch of such sequences that fits),
 * never later. A plan with a mask needs recent >= 1. */
int lk_seq_new(lk_engine *e, lk_seq **s, const lk_seq_opts *o, lk_err *err);
void lk_seq_free(lk_seq *s); /* gives its cache back to the pool */
int lk_seq_len(const lk_seq *s);     /* tokens in its cache */
int lk_seq_max_len(const lk_seq *s); /* positions it may reach */
/* Called after each layer of a prefill (NULL: none), for progress on long
 * prompts; backends that run asynchronously may call it less often. */
typedef void (*lk_layer_fn)(void *ctx, int layers_done, int n_layers);
void lk_seq_set_progress(lk_seq *s, lk_layer_fn fn, void *ctx);

/* KV cache of a sequence, in bytes of the cache dtype, at its length. */
typedef struct {
    int64_t bytes;     /* as the plan counts them (lk_plan_bytes_at): sink+recent full, middle pruned */
    int64_t dense;     /* a dense cache of the same tokens */
    int64_t reserved;  /* bytes actually set aside for it (pages, max_len) */
    const char *dtype; /* "bf16" | "f32" */
    int pruned;        /* 0 when the plan is dense or every token is still full width */
} lk_seq_kv;
void lk_seq_kv_info(const lk_seq *s, lk_seq_kv *kv);

/* ---- running ---- */
/* Prefill n >= 1 tokens into an empty sequence (dense attention among them);
 * keeps the last row's logits for lk_engine_sample / lk_engine_logits. */
int lk_engine_prefill(lk_engine *e, lk_seq *s, const int *ids, int n, lk_err *err);
/* One token for each of B sequences (each at its own length; plans may
 * differ): ids[b] is appended to seqs[b]; last logits kept per sequence. */
int lk_engine_decode(lk_engine *e, lk_seq *const *seqs, int B, const int *ids, lk_err *err);
/* Next id of each sequence from its last logits with its own sampling
 * parameters and PRNG (on the device for CUDA; only the ids come back). */
int lk_engine_sample(lk_engine *e, lk_seq *const *seqs, int B, int *ids, lk_err *err);
/* A copy of the last logits (vocab floats) of s. */
int lk_engine_logits(lk_engine *e, const lk_seq *s, float *logits, lk_err *err);
/* dst (empty, any plan) takes the cache and last logits of src, a dense
 * sequence that has just prefilled its prompt: LeanK prefills densely, so
 * this is exactly dst's own prefill of the same tokens. */
int lk_seq_adopt(lk_engine *e, lk_seq *dst, const lk_seq *src, lk_err *err);

#endif
