/* engine.c - the engine interface (engine.h): backend choice, checks common
 * to every backend, fingerprint and cache accounting; the rest is dispatch. */
#include "engine_impl.h"

#include <stdlib.h>
#include <string.h>

#include "model.h"

int lk_device_parse(const char *name) {
    if (!strcmp(name, "auto")) return LK_DEVICE_AUTO;
    if (!strcmp(name, "cpu")) return LK_DEVICE_CPU;
    if (!strcmp(name, "cuda") || !strcmp(name, "gpu")) return LK_DEVICE_CUDA;
    return -1;
}

#ifndef LEANK_CUDA
/* A CPU-only build: the whole interface, and a clear answer for --device cuda. */
#define NO_CUDA(err) \
    lk_seterr(err, LK_EDEVICE, "this build of leank has no CUDA backend (rebuild with the CUDA toolkit: make CUDA=1)")
int lk_cuda_engine_available(void) { return 0; }
int lk_cuda_engine_from_st(lk_engine **e, const lk_config *c, const lk_st *st, const lk_engine_opts *o,
                           lk_err *err) {
    return NO_CUDA(err);
}
int lk_cuda_engine_from_model(lk_engine **e, const struct lk_model *m, const char *dtype,
                              const lk_engine_opts *o, lk_err *err) {
    return NO_CUDA(err);
}
int lk_cuda_engine_random(lk_engine **e, const lk_config *c, const char *dtype, uint64_t seed,
                          const lk_engine_opts *o, lk_err *err) {
    return NO_CUDA(err);
}
#endif

int lk_cuda_available(void) { return lk_cuda_engine_available(); }

static lk_device pick(const lk_engine_opts *o) {
    lk_device d = o ? o->device : LK_DEVICE_AUTO;
    if (d == LK_DEVICE_AUTO) d = lk_cuda_engine_available() ? LK_DEVICE_CUDA : LK_DEVICE_CPU;
    return d;
}

int lk_engine_check_seq(const lk_engine *e, const lk_seq_opts *o, lk_err *err) {
    const lk_config *c = &e->cfg;
    const lk_plan *p = o->plan;
    if (o->max_len < 1)
        return lk_seterr(err, LK_EUSAGE, "sequence: max_len %d (expected >= 1)", o->max_len);
    /* a window the engine does not implement would give silently wrong results */
    if (c->sliding_window > 0 && o->max_len > c->sliding_window)
        return lk_seterr(err, LK_EINPUT,
                         "%s: sliding_window %d is shorter than the %d positions asked for (leank implements "
                         "full attention only; keep prompt + new tokens <= %d)",
                         c->model_type, c->sliding_window, o->max_len, c->sliding_window);
    if (o->sampling.temperature < 0 || o->sampling.top_k < 0 || !(o->sampling.top_p > 0) ||
        o->sampling.top_p > 1)
        return lk_seterr(err, LK_EUSAGE,
                         "sampling: temperature %g, top_k %d, top_p %g (expected >= 0, >= 0, 0 < top_p <= 1)",
                         o->sampling.temperature, o->sampling.top_k, o->sampling.top_p);
    if (!p) return 0;
    if (p->n_layers != c->n_layers || p->n_kv_heads != c->n_kv_heads || p->head_dim != c->head_dim)
        return lk_seterr(err, LK_EINPUT,
                         "plan: shape (%d layers, %d kv heads, head_dim %d) does not match the model (%d, %d, %d)",
                         p->n_layers, p->n_kv_heads, p->head_dim, c->n_layers, c->n_kv_heads, c->head_dim);
    if (p->recent < 1)
        return lk_seterr(err, LK_EUSAGE, "plan: recent %d (a pruned cache needs recent >= 1: the token being "
                         "decoded always sees itself in full)", p->recent);
    return 0;
}

int lk_engine_from_st(lk_engine **e, const lk_config *c, const lk_st *st, const lk_engine_opts *o,
                      lk_err *err) {
    *e = NULL;
    return pick(o) == LK_DEVICE_CUDA ? lk_cuda_engine_from_st(e, c, st, o, err)
                                     : lk_cpu_engine_from_st(e, c, st, o, err);
}

int lk_engine_open(lk_engine **e, const char *dir, const lk_engine_opts *o, lk_err *err) {
    *e = NULL;
    lk_config c;
    int rc = lk_config_load(&c, dir, err);
    if (rc) return rc;
    lk_st *st;
    if ((rc = lk_st_open(&st, dir, err))) return rc;
    rc = lk_engine_from_st(e, &c, st, o, err);
    lk_st_close(st);
    return rc;
}

int lk_engine_from_model(lk_engine **e, const struct lk_model *m, const char *dtype,
                         const lk_engine_opts *o, lk_err *err) {
    *e = NULL;
    return pick(o) == LK_DEVICE_CUDA ? lk_cuda_engine_from_model(e, m, dtype, o, err)
                                     : lk_cpu_engine_from_model(e, m, o, err);
}

int lk_engine_random(lk_engine **e, const lk_config *c, const char *dtype, uint64_t seed,
                     const lk_engine_opts *o, lk_err *err) {
    *e = NULL;
    if (o && o->device == LK_DEVICE_CPU)
        return lk_seterr(err, LK_EUSAGE, "random-weight models are made on the GPU only (--device cuda)");
    return lk_cuda_engine_random(e, c, dtype, seed, o, err);
}

void lk_engine_free(lk_engine *e) {
    if (e) e->ops->free(e);
}

const lk_config *lk_engine_config(const lk_engine *e) { return &e->cfg; }
const char *lk_engine_name(const lk_engine *e) { return e->ops->name; }
const char *lk_engine_device_name(const lk_engine *e) { return e->device_name; }
const char *lk_engine_cache_dtype(const lk_engine *e) { return e->cache_dtype; }
uint64_t lk_engine_fingerprint(const lk_engine *e) { return e->fingerprint; }

void lk_engine_memory(const lk_engine *e, lk_engine_mem *m) {
    memset(m, 0, sizeof *m);
    e->ops->memory(e, m);
}

size_t lk_engine_seq_bytes(const lk_engine *e, const lk_plan *plan, int max_len) {
    return e->ops->seq_bytes(e, plan, max_len);
}

int lk_engine_max_batch(const lk_engine *e, const lk_plan *plan, int max_len) {
    return e->ops->max_batch(e, plan, max_len);
}

int lk_engine_pool_resize(lk_engine *e, size_t bytes, lk_err *err) {
    return e->ops->pool_resize ? e->ops->pool_resize(e, bytes, err) : 0;
}

int lk_seq_new(lk_engine *e, lk_seq **s, const lk_seq_opts *o, lk_err *err) {
    *s = NULL;
    int rc = lk_engine_check_seq(e, o, err);
    if (!rc && !(rc = e->ops->seq_new(e, s, o, err))) (*s)->kv_only = o->kv_only;
    return rc;
}

void lk_seq_free(lk_seq *s) {
    if (s) s->e->ops->seq_free(s);
}

int lk_seq_len(const lk_seq *s) { return s->len; }
int lk_seq_max_len(const lk_seq *s) { return s->max_len; }
void lk_seq_set_progress(lk_seq *s, lk_layer_fn fn, void *ctx) {
    s->on_layer = fn;
    s->on_layer_ctx = ctx;
}

void lk_seq_kv_info(const lk_seq *s, lk_seq_kv *kv) {
    const lk_engine *e = s->e;
    const lk_config *c = &e->cfg;
    int64_t per_tok = 2LL * c->n_layers * c->n_kv_heads * c->head_dim * e->cache_elem;
    memset(kv, 0, sizeof *kv);
    kv->dtype = e->cache_dtype;
    kv->dense = per_tok * s->len;
    kv->bytes = kv->dense;
    kv->reserved = e->ops->seq_reserved(s);
    if (s->plan) {
        /* the plan's own count, in the engine's cache dtype: what leank-pack
         * reports for the same plan and dtype */
        lk_plan p = *s->plan;
        p.elem_bytes = e->cache_elem;
        lk_plan_bytes b;
        lk_plan_bytes_at(&p, s->len, &b);
        kv->bytes = b.total;
        kv->pruned = b.n_middle > 0 && b.total < b.total_dense;
    }
}

int lk_engine_prefill(lk_engine *e, lk_seq *s, const int *ids, int n, lk_err *err) {
    if (n < 1) return lk_seterr(err, LK_EINPUT, "prefill: no tokens");
    if (s->len != 0) return lk_seterr(err, LK_EUSAGE, "prefill: the sequence already holds %d tokens", s->len);
    if (n > s->max_len)
        return lk_seterr(err, LK_EINPUT, "prefill: %d tokens exceed the sequence's %d positions", n, s->max_len);
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= e->cfg.vocab_size)
            return lk_seterr(err, LK_EINPUT, "prefill: token id %d at position %d out of range (vocab %d)", ids[i],
                             i, e->cfg.vocab_size);
    int rc = e->ops->prefill(e, s, ids, n, err);
    if (!rc) s->no_logits = s->kv_only;
    return rc;
}

int lk_engine_decode(lk_engine *e, lk_seq *const *seqs, int B, const int *ids, lk_err *err) {
    for (int b = 0; b < B; b++) {
        if (seqs[b]->e != e) return lk_seterr(err, LK_EUSAGE, "decode: sequence %d belongs to another engine", b);
        if (seqs[b]->len < 1)
            return lk_seterr(err, LK_EUSAGE, "decode: sequence %d is empty (prefill it first)", b);
        if (seqs[b]->len >= seqs[b]->max_len)
            return lk_seterr(err, LK_EINPUT, "decode: sequence %d is full (%d positions)", b, seqs[b]->max_len);
        if (ids[b] < 0 || ids[b] >= e->cfg.vocab_size)
            return lk_seterr(err, LK_EINPUT, "decode: token id %d out of range (vocab %d)", ids[b], e->cfg.vocab_size);
    }
    int rc = B ? e->ops->decode(e, seqs, B, ids, err) : 0;
    for (int b = 0; !rc && b < B; b++) seqs[b]->no_logits = 0;
    return rc;
}

int lk_engine_sample(lk_engine *e, lk_seq *const *seqs, int B, int *ids, lk_err *err) {
    for (int b = 0; b < B; b++)
        if (seqs[b]->len < 1 || seqs[b]->no_logits)
            return lk_seterr(err, LK_EUSAGE, "sample: sequence %d has no logits yet%s", b,
                             seqs[b]->no_logits ? " (prefilled kv_only: decode a token first)" : "");
    return B ? e->ops->sample(e, seqs, B, ids, err) : 0;
}

int lk_engine_logits(lk_engine *e, const lk_seq *s, float *logits, lk_err *err) {
    if (s->len < 1 || s->no_logits)
        return lk_seterr(err, LK_EUSAGE, "logits: the sequence has no logits yet%s",
                         s->no_logits ? " (prefilled kv_only: decode a token first)" : "");
    return e->ops->logits(e, s, logits, err);
}

int lk_seq_adopt(lk_engine *e, lk_seq *dst, const lk_seq *src, lk_err *err) {
    if (src->plan || src->len < 1)
        return lk_seterr(err, LK_EUSAGE, "adopt: the source must be a dense sequence that has prefilled its prompt");
    if (dst->len != 0) return lk_seterr(err, LK_EUSAGE, "adopt: the destination already holds %d tokens", dst->len);
    if (src->len > dst->max_len)
        return lk_seterr(err, LK_EINPUT, "adopt: %d tokens exceed the destination's %d positions", src->len,
                         dst->max_len);
    int rc = e->ops->adopt(e, dst, src, err);
    if (!rc) dst->no_logits = src->no_logits;
    return rc;
}
