/* engine_cpu.c - the CPU backend of engine.h: the f32 reference engine of
 * model.c, one run state (activations + KV cache) per sequence. Sampling
 * runs on the host (sampler.c). */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine_impl.h"
#include "model.h"
#include "sampler.h"

typedef struct {
    lk_engine base;
    lk_model own;       /* loaded by the engine (from_st) */
    const lk_model *m;  /* &own, or a borrowed model (from_model) */
} cpu_engine;

typedef struct {
    lk_seq base;
    lk_state st;        /* rows grow to the prompt at prefill; the cache holds max_len positions */
    lk_mask mask;       /* the plan's mask (plans describe, the CPU cache takes a mask) */
    int has_mask;
    lk_sampler smp;
    float *scratch;     // (vocab) logits copy for the sampler, which overwrites its input
} cpu_seq;

static void cpu_free(lk_engine *e) {
    cpu_engine *c = (cpu_engine *)e;
    if (c->m == &c->own) lk_model_free(&c->own);
    free(c);
}

static void cpu_memory(const lk_engine *e, lk_engine_mem *m) {
    m->weights = ((const cpu_engine *)e)->m->n_params * sizeof(float);
}

static size_t cpu_seq_bytes(const lk_engine *e, const lk_plan *plan, int max_len) {
    const lk_config *c = &e->cfg;
    if (!plan) return 2 * sizeof(float) * (size_t)c->n_layers * c->n_kv_heads * c->head_dim * (size_t)max_len;
    lk_plan p = *plan;
    p.elem_bytes = sizeof(float);
    lk_plan_bytes b;
    lk_plan_bytes_at(&p, max_len, &b);
    return (size_t)b.total;
}

static int cpu_max_batch(const lk_engine *e, const lk_plan *plan, int max_len) {
    long pages = sysconf(_SC_AVPHYS_PAGES), psize = sysconf(_SC_PAGESIZE);
    size_t per = cpu_seq_bytes(e, plan, max_len);
    if (pages <= 0 || psize <= 0 || per == 0) return INT_MAX;
    size_t n = (size_t)pages * (size_t)psize / per;
    return n > INT_MAX ? INT_MAX : (int)n;
}

static int build_state(cpu_seq *s, int rows, lk_err *err) {
    const cpu_engine *ce = (const cpu_engine *)s->base.e;
    const lk_plan *p = s->base.plan;
    return lk_state_build(&s->st, ce->m, rows, s->base.max_len, s->has_mask ? &s->mask : NULL, p ? p->sink : 0,
                          p ? p->recent : 0, err);
}

static void cpu_seq_free(lk_seq *sq) {
    cpu_seq *s = (cpu_seq *)sq;
    lk_state_free(&s->st);
    if (s->has_mask) lk_mask_free(&s->mask);
    lk_sampler_free(&s->smp);
    free(s->scratch);
    free(s);
}

static int cpu_seq_new(lk_engine *e, lk_seq **out, const lk_seq_opts *o, lk_err *err) {
    cpu_seq *s = lk_zalloc(1, sizeof *s, "a sequence", err);
    if (!s) return LK_ENOMEM;
    s->base.e = e;
    s->base.plan = o->plan;
    s->base.max_len = o->max_len;
    s->base.sampling = o->sampling;
    if (o->plan) {
        if (lk_plan_mask(o->plan, &s->mask, err)) {
            cpu_seq_free(&s->base);
            return LK_ENOMEM;
        }
        s->has_mask = 1;
    }
    int rc = (s->scratch = lk_alloc((size_t)e->cfg.vocab_size, sizeof(float), "the logits", err)) ? 0 : LK_ENOMEM;
    if (!rc) rc = lk_sampler_build(&s->smp, e->cfg.vocab_size, o->sampling.temperature, o->sampling.top_k,
                                   o->sampling.top_p, o->sampling.seed, err);
    if (!rc) rc = build_state(s, 1, err);
    if (rc) {
        cpu_seq_free(&s->base);
        return rc;
    }
    *out = &s->base;
    return 0;
}

static int64_t cpu_seq_reserved(const lk_seq *s) { return (int64_t)((const cpu_seq *)s)->st.kv.bytes; }

static int cpu_prefill(lk_engine *e, lk_seq *sq, const int *ids, int n, lk_err *err) {
    cpu_seq *s = (cpu_seq *)sq;
    if (s->st.max_rows < n) { /* the cache is empty: a state with room for the prompt's rows */
        lk_state_free(&s->st);
        int rc = build_state(s, n, err);
        if (rc) return rc;
    }
    s->st.on_layer = s->base.on_layer;
    s->st.on_layer_ctx = s->base.on_layer_ctx;
    int rc = lk_forward(((cpu_engine *)e)->m, &s->st, ids, n, NULL, err);
    s->st.on_layer = NULL;
    if (rc == 0) s->base.len = s->st.kv.len;
    return rc;
}

static int cpu_decode(lk_engine *e, lk_seq *const *seqs, int B, const int *ids, lk_err *err) {
    const lk_model *m = ((cpu_engine *)e)->m;
    for (int b = 0; b < B; b++) {
        cpu_seq *s = (cpu_seq *)seqs[b];
        int rc = lk_forward(m, &s->st, &ids[b], 1, NULL, err);
        if (rc) return rc;
        s->base.len = s->st.kv.len;
    }
    return 0;
}

static int cpu_sample(lk_engine *e, lk_seq *const *seqs, int B, int *ids, lk_err *err) {
    size_t V = (size_t)e->cfg.vocab_size;
    for (int b = 0; b < B; b++) {
        cpu_seq *s = (cpu_seq *)seqs[b];
        memcpy(s->scratch, s->st.logits, V * sizeof(float)); /* lk_sample overwrites its input */
        ids[b] = lk_sample(&s->smp, s->scratch);
    }
    return 0;
}

static int cpu_logits(lk_engine *e, const lk_seq *sq, float *logits, lk_err *err) {
    memcpy(logits, ((const cpu_seq *)sq)->st.logits, sizeof(float) * (size_t)e->cfg.vocab_size);
    return 0;
}

static int cpu_adopt(lk_engine *e, lk_seq *dq, const lk_seq *sq, lk_err *err) {
    cpu_seq *d = (cpu_seq *)dq;
    const cpu_seq *s = (const cpu_seq *)sq;
    int rc = lk_kv_copy(&d->st.kv, &s->st.kv, err);
    if (rc) return rc;
    memcpy(d->st.logits, s->st.logits, sizeof(float) * (size_t)e->cfg.vocab_size);
    d->base.len = d->st.kv.len;
    return 0;
}

static const lk_engine_ops cpu_ops = {
    .name = "cpu",
    .free = cpu_free,
    .memory = cpu_memory,
    .seq_bytes = cpu_seq_bytes,
    .max_batch = cpu_max_batch,
    .seq_new = cpu_seq_new,
    .seq_free = cpu_seq_free,
    .seq_reserved = cpu_seq_reserved,
    .prefill = cpu_prefill,
    .decode = cpu_decode,
    .sample = cpu_sample,
    .logits = cpu_logits,
    .adopt = cpu_adopt,
};

/* c->m set: the common header. */
static lk_engine *cpu_finish(cpu_engine *c, const lk_st *st) {
    snprintf(c->base.device_name, sizeof c->base.device_name, "CPU");
    c->base.cache_dtype = "f32";
    c->base.cache_elem = sizeof(float);
    lk_engine_init_common(&c->base, &cpu_ops, &c->m->cfg, st);
    return &c->base;
}

int lk_cpu_engine_from_st(lk_engine **e, const lk_config *cfg, const lk_st *st, const lk_engine_opts *o,
                          lk_err *err) {
    cpu_engine *c = lk_zalloc(1, sizeof *c, "an engine", err);
    if (!c) return LK_ENOMEM;
    int rc = lk_model_from_st(&c->own, cfg, st, err);
    if (rc) {
        free(c);
        return rc;
    }
    c->m = &c->own;
    *e = cpu_finish(c, st);
    return 0;
}

int lk_cpu_engine_from_model(lk_engine **e, const struct lk_model *m, const lk_engine_opts *o, lk_err *err) {
    cpu_engine *c = lk_zalloc(1, sizeof *c, "an engine", err);
    if (!c) return LK_ENOMEM;
    c->m = m;
    *e = cpu_finish(c, NULL);
    return 0;
}
