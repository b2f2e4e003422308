/* engine_common.c - what every backend's constructor fills in the same way
 * (engine_impl.h): the common header. Backends
 * depend on this file; engine.c depends on the backends. */
#include <string.h>

#include "engine_impl.h"

void lk_engine_init_common(lk_engine *e, const lk_engine_ops *ops, const lk_config *c, const lk_st *st) {
    e->ops = ops;
    e->cfg = *c;
    e->fingerprint = lk_config_fingerprint(c, st);
    if (!e->cache_dtype) e->cache_dtype = "f32";
    if (!e->cache_elem) e->cache_elem = 4;
}

