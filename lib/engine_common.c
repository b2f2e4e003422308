/* engine_common.c - what every backend's constructor fills in the same way
 * (engine_impl.h): the common header and the model fingerprint. Backends
 * depend on this file; engine.c depends on the backends. */
#include <string.h>

#include "engine_impl.h"

/* FNV-1a over the config's sizes and, when st is given, every tensor's name,
 * dtype and shape (leank-formats(5)): cheap, and it changes whenever the
 * model's architecture or checkpoint layout does. */
static uint64_t fingerprint(const lk_config *c, const lk_st *st) {
    int sizes[8] = {c->vocab_size, c->hidden_size, c->intermediate_size, c->n_layers,
                    c->n_heads,    c->n_kv_heads,  c->head_dim,          c->attention_bias};
    uint64_t h = lk_fnv1a64(sizes, sizeof sizes, LK_FNV_OFFSET);
    int n = st ? lk_st_count(st) : 0;
    for (int i = 0; i < n; i++) {
        const lk_tensor *t = lk_st_at(st, i);
        h = lk_fnv1a64(t->name, strlen(t->name) + 1, h);
        int32_t dt = (int32_t)t->dtype, nd = t->ndim;
        h = lk_fnv1a64(&dt, sizeof dt, h);
        h = lk_fnv1a64(&nd, sizeof nd, h);
        h = lk_fnv1a64(t->shape, sizeof(int64_t) * (size_t)t->ndim, h);
    }
    return h;
}

void lk_engine_init_common(lk_engine *e, const lk_engine_ops *ops, const lk_config *c, const lk_st *st) {
    e->ops = ops;
    e->cfg = *c;
    e->fingerprint = fingerprint(c, st);
    if (!e->cache_dtype) e->cache_dtype = "f32";
    if (!e->cache_elem) e->cache_elem = 4;
}

