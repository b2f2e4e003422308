/* engine_impl.h - what a backend of engine.h provides (engine.c dispatches;
 * engine_cpu.c and kernels/engine_cuda.cu implement). Not for programs. */
#ifndef LEANK_ENGINE_IMPL_H
#define LEANK_ENGINE_IMPL_H

#include "engine.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lk_engine_ops lk_engine_ops;

/* Every backend's engine starts with this. */
struct lk_engine {
    const lk_engine_ops *ops;
    lk_config cfg;
    char device_name[96];
    const char *cache_dtype; /* "f32" | "bf16" */
    int cache_elem;          /* bytes per cache element */
    uint64_t fingerprint;
};

/* Every backend's sequence starts with this. */
struct lk_seq {
    lk_engine *e;
    const lk_plan *plan; /* NULL: dense */
    int len, max_len;
    lk_sampling sampling;
    int kv_only;   /* lk_seq_opts.kv_only */
    int no_logits; /* prefilled kv_only, not decoded since: sample and logits refuse */
    lk_layer_fn on_layer; /* prefill progress, may be NULL */
    void *on_layer_ctx;
};

struct lk_engine_ops {
    const char *name;
    void (*free)(lk_engine *e);
    void (*memory)(const lk_engine *e, lk_engine_mem *m);
    size_t (*seq_bytes)(const lk_engine *e, const lk_plan *plan, int max_len);
    int (*max_batch)(const lk_engine *e, const lk_plan *plan, int max_len);
    int (*seq_new)(lk_engine *e, lk_seq **s, const lk_seq_opts *o, lk_err *err);
    void (*seq_free)(lk_seq *s);
    int64_t (*seq_reserved)(const lk_seq *s);
    int (*prefill)(lk_engine *e, lk_seq *s, const int *ids, int n, lk_err *err);
    int (*decode)(lk_engine *e, lk_seq *const *seqs, int B, const int *ids, lk_err *err);
    int (*sample)(lk_engine *e, lk_seq *const *seqs, int B, int *ids, lk_err *err);
    int (*logits)(lk_engine *e, const lk_seq *s, float *logits, lk_err *err);
    int (*adopt)(lk_engine *e, lk_seq *dst, const lk_seq *src, lk_err *err);
    int (*pool_resize)(lk_engine *e, size_t bytes, lk_err *err); /* NULL: no pool (CPU) */
};

/* Fills the common header (cfg, fingerprint from cfg + st's table; st may be NULL). */
void lk_engine_init_common(lk_engine *e, const lk_engine_ops *ops, const lk_config *c, const lk_st *st);
/* Checks common to every backend before seq_new: plan shape vs config, max_len, recent >= 1 with a mask. */
int lk_engine_check_seq(const lk_engine *e, const lk_seq_opts *o, lk_err *err);

/* CPU backend (engine_cpu.c). */
int lk_cpu_engine_from_st(lk_engine **e, const lk_config *c, const lk_st *st, const lk_engine_opts *o,
                          lk_err *err);
int lk_cpu_engine_from_model(lk_engine **e, const struct lk_model *m, const lk_engine_opts *o,
                             lk_err *err);

/* CUDA backend (kernels/engine_cuda.cu; absent from CPU-only builds, where
 * engine.c answers LK_EDEVICE). */
int lk_cuda_engine_available(void);
int lk_cuda_engine_from_st(lk_engine **e, const lk_config *c, const lk_st *st, const lk_engine_opts *o,
                           lk_err *err);
int lk_cuda_engine_from_model(lk_engine **e, const struct lk_model *m, const char *dtype,
                              const lk_engine_opts *o, lk_err *err);
int lk_cuda_engine_random(lk_engine **e, const lk_config *c, const char *dtype, uint64_t seed,
                          const lk_engine_opts *o, lk_err *err);

#ifdef __cplusplus
}
#endif
#endif
