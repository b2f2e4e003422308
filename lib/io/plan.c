/* plan.c - the decode plan: layout tables from a mask, bytes, the file. */
#include "plan.h"

#include <stdlib.h>
#include <string.h>

#include "safetensors.h"

int lk_plan_dtype_bytes(const char *dtype) {
    if (!strcmp(dtype, "bf16") || !strcmp(dtype, "f16")) return 2;
    if (!strcmp(dtype, "f32")) return 4;
    return 0;
}

/* Fill every table from the mask (p's sizes already set). 0 or LK_ENOMEM
 * (the tables allocated so far are lk_plan_free's). */
static int layout(lk_plan *p, const lk_mask *m, lk_err *err) {
    int L = p->n_layers, H = p->n_kv_heads, D = p->head_dim;
    const char *what = "the plan's tables";
    p->width = lk_zalloc((size_t)L * H, sizeof *p->width, what, err);
    p->chan = lk_alloc((size_t)L * H * D, sizeof *p->chan, what, err);
    p->k_col = lk_zalloc((size_t)L * H, sizeof *p->k_col, what, err);
    p->v_col = lk_zalloc((size_t)L * H, sizeof *p->v_col, what, err);
    p->k_row = lk_zalloc((size_t)L, sizeof *p->k_row, what, err);
    p->v_row = lk_zalloc((size_t)L, sizeof *p->v_row, what, err);
    p->k_off = lk_zalloc((size_t)L + 1, sizeof *p->k_off, what, err);
    p->v_off = lk_zalloc((size_t)L + 1, sizeof *p->v_off, what, err);
    if (!p->width || !p->chan || !p->k_col || !p->v_col || !p->k_row || !p->v_row || !p->k_off || !p->v_off)
        return LK_ENOMEM;
    int align = 1; /* the largest power of two <= head_dim dividing every width */
    while (align * 2 <= D) align *= 2;
    for (int l = 0; l < L; l++) {
        int kc = 0, vc = 0;
        for (int h = 0; h < H; h++) {
            size_t lh = (size_t)l * H + h;
            int *ch = p->chan + lh * D;
            int w = lk_mask_channels(m, l, h, ch);
            for (int j = w; j < D; j++) ch[j] = -1;
            p->width[lh] = w;
            p->k_col[lh] = kc;
            p->v_col[lh] = w ? vc : -1;
            kc += w;
            vc += w ? D : 0;
            while (w % align) align /= 2;
        }
        p->k_row[l] = kc;
        p->v_row[l] = vc;
        p->k_off[l + 1] = p->k_off[l] + kc;
        p->v_off[l + 1] = p->v_off[l] + vc;
    }
    p->align = align;
    return 0;
}

int lk_plan_build(lk_plan *p, const lk_mask *m, const char *mask_name, const lk_config *c,
                  const char *model_name, int sink, int recent, long context, const char *dtype,
                  lk_err *err) {
    memset(p, 0, sizeof *p);
    if (lk_mask_check_shape(m, mask_name, c->n_layers, c->n_kv_heads, c->head_dim, model_name, err))
        return err ? err->code : LK_EINPUT;
    int eb = lk_plan_dtype_bytes(dtype);
    if (!eb) return lk_seterr(err, LK_EUSAGE, "unknown cache dtype '%s' (expected bf16, f16 or f32)", dtype);
    if (sink < 0 || recent < 0 || context < 0)
        return lk_seterr(err, LK_EUSAGE, "sink, recent and context must be >= 0");
    p->n_layers = c->n_layers;
    p->n_kv_heads = c->n_kv_heads;
    p->head_dim = c->head_dim;
    p->n_heads = c->n_heads;
    p->sink = sink;
    p->recent = recent;
    p->context = context;
    snprintf(p->dtype, sizeof p->dtype, "%s", dtype);
    p->elem_bytes = eb;
    int rc = layout(p, m, err);
    if (rc) lk_plan_free(p);
    return rc;
}

void lk_plan_free(lk_plan *p) {
    if (!p) return;
    free(p->width);
    free(p->chan);
    free(p->k_col);
    free(p->v_col);
    free(p->k_row);
    free(p->v_row);
    free(p->k_off);
    free(p->v_off);
    memset(p, 0, sizeof *p);
}

int lk_plan_mask(const lk_plan *p, lk_mask *m, lk_err *err) {
    int D = p->head_dim;
    if (lk_mask_init(m, p->n_layers, p->n_kv_heads, D, 0, err)) return LK_ENOMEM;
    for (size_t lh = 0; lh < (size_t)p->n_layers * p->n_kv_heads; lh++)
        for (int j = 0; j < p->width[lh]; j++) m->keep[lh * D + p->chan[lh * D + j]] = 1;
    return 0;
}

void lk_plan_bytes_at(const lk_plan *p, long context, lk_plan_bytes *b) {
    int64_t E = p->elem_bytes, L = p->n_layers;
    b->k_dense = b->v_dense = L * p->n_kv_heads * p->head_dim * E;
    b->k_middle = p->k_off[L] * E;
    b->v_middle = p->v_off[L] * E;
    int64_t full = (int64_t)p->sink + p->recent;
    b->n_full = context < full ? context : full;
    b->n_middle = context - b->n_full;
    b->total_dense = (int64_t)context * (b->k_dense + b->v_dense);
    b->k_total = b->n_full * b->k_dense + b->n_middle * b->k_middle;
    b->v_total = b->n_full * b->v_dense + b->n_middle * b->v_middle;
    b->total = b->k_total + b->v_total;
}

/* ---- file ---- */

int lk_plan_save(const lk_plan *p, const char *path, const char *const *extra, lk_err *err) {
    int64_t L = p->n_layers, H = p->n_kv_heads, D = p->head_dim;
    int64_t s_lh[2] = {L, H}, s_lhd[3] = {L, H, D}, s_l[1] = {L}, s_l1[1] = {L + 1};
    lk_stw *w = lk_stw_new();
    lk_stw_add(w, "width", LK_DT_I32, 2, s_lh, p->width);
    lk_stw_add(w, "channels", LK_DT_I32, 3, s_lhd, p->chan);
    lk_stw_add(w, "k_col", LK_DT_I32, 2, s_lh, p->k_col);
    lk_stw_add(w, "v_col", LK_DT_I32, 2, s_lh, p->v_col);
    lk_stw_add(w, "k_row", LK_DT_I32, 1, s_l, p->k_row);
    lk_stw_add(w, "v_row", LK_DT_I32, 1, s_l, p->v_row);
    lk_stw_add(w, "k_off", LK_DT_I64, 1, s_l1, p->k_off);
    lk_stw_add(w, "v_off", LK_DT_I64, 1, s_l1, p->v_off);
    lk_stw_meta(w, "format", "leank-plan");
    lk_stw_metaf(w, "version", "%d", LK_PLAN_VERSION);
    lk_stw_metaf(w, "n_layers", "%d", p->n_layers);
    lk_stw_metaf(w, "n_kv_heads", "%d", p->n_kv_heads);
    lk_stw_metaf(w, "head_dim", "%d", p->head_dim);
    lk_stw_metaf(w, "n_heads", "%d", p->n_heads);
    lk_stw_metaf(w, "sink", "%d", p->sink);
    lk_stw_metaf(w, "recent", "%d", p->recent);
    lk_stw_metaf(w, "context", "%ld", p->context);
    lk_stw_meta(w, "dtype", p->dtype);
    lk_stw_metaf(w, "align", "%d", p->align);
    for (const char *const *e = extra; e && e[0] && e[1]; e += 2) lk_stw_meta(w, e[0], e[1]);
    int rc = lk_stw_write(w, path, err);
    lk_stw_free(w);
    return rc;
}

/* Metadata integer in [lo, hi]. */
static int meta_get(const lk_st *st, const char *path, const char *key, long lo, long hi, long *out,
                    lk_err *err) {
    const char *s = lk_st_meta(st, key);
    char *end;
    long v = s ? strtol(s, &end, 10) : 0;
    if (!s || end == s || *end || v < lo || v > hi)
        return lk_seterr(err, LK_EINPUT, "%s: metadata '%s' is %s%s%s (expected an integer in [%ld, %ld])",
                         path, key, s ? "'" : "missing", s ? s : "", s ? "'" : "", lo, hi);
    *out = v;
    return 0;
}

/* Copy an integer tensor of the expected shape into dst (int32 or int64). */
static int get_table(const lk_st *st, const char *path, const char *name, int ndim,
                     const int64_t *shape, int is64, void *dst, lk_err *err) {
    const lk_tensor *t;
    if (lk_st_expect(st, name, ndim, shape, &t, err)) return err ? err->code : LK_EINPUT;
    if (t->dtype != (is64 ? LK_DT_I64 : LK_DT_I32))
        return lk_seterr(err, LK_EINPUT, "%s: tensor %s has dtype %s (expected %s)", path, name,
                         lk_dtype_name(t->dtype), is64 ? "I64" : "I32");
    memcpy(dst, t->data, t->nbytes);
    return 0;
}

int lk_plan_load(lk_plan *p, const char *path, lk_err *err) {
    memset(p, 0, sizeof *p);
    lk_st *st;
    if (lk_st_open(&st, path, err)) return err ? err->code : LK_EINPUT;
    int rc = 0;
    lk_plan q = {0};
    const char *fmt = lk_st_meta(st, "format");
    if (!fmt || strcmp(fmt, "leank-plan")) {
        rc = lk_seterr(err, LK_EINPUT, "%s: format is '%s' (expected a leank-plan file: make one with leank-pack)",
                       path, fmt ? fmt : "(none)");
        goto out;
    }
    long ver, L, H, D, nh, sink, recent, ctx, align;
    if ((rc = meta_get(st, path, "version", 0, 1L << 30, &ver, err))) goto out;
    if (ver != LK_PLAN_VERSION) {
        rc = lk_seterr(err, LK_EINPUT, "%s: plan version %ld (expected %d: remake it with this leank-pack)",
                       path, ver, LK_PLAN_VERSION);
        goto out;
    }
    if ((rc = meta_get(st, path, "n_layers", 1, 65536, &L, err)) ||
        (rc = meta_get(st, path, "n_kv_heads", 1, 65536, &H, err)) ||
        (rc = meta_get(st, path, "head_dim", 1, 65536, &D, err)) ||
        (rc = meta_get(st, path, "n_heads", 1, 1L << 20, &nh, err)) ||
        (rc = meta_get(st, path, "sink", 0, 1L << 30, &sink, err)) ||
        (rc = meta_get(st, path, "recent", 0, 1L << 30, &recent, err)) ||
        (rc = meta_get(st, path, "context", 0, 1L << 40, &ctx, err)) ||
        (rc = meta_get(st, path, "align", 1, 65536, &align, err)))
        goto out;
    const char *dt = lk_st_meta(st, "dtype");
    if (!dt || !lk_plan_dtype_bytes(dt)) {
        rc = lk_seterr(err, LK_EINPUT, "%s: metadata 'dtype' is '%s' (expected bf16, f16 or f32)", path, dt ? dt : "(none)");
        goto out;
    }
    /* width and channels define the plan; every other table must agree with
     * the layout recomputed from them */
    int64_t s_lh[2] = {L, H}, s_lhd[3] = {L, H, D};
    /* shapes first: the tables are allocated from the metadata */
    if ((rc = lk_st_expect(st, "width", 2, s_lh, NULL, err)) || (rc = lk_st_expect(st, "channels", 3, s_lhd, NULL, err)))
        goto out;
    int *width = lk_alloc((size_t)L * H, sizeof *width, "the plan's widths", err);
    int *chan = lk_alloc((size_t)L * H * D, sizeof *chan, "the plan's channels", err);
    lk_mask m = {0};
    if (!width || !chan) rc = LK_ENOMEM;
    if (rc || (rc = get_table(st, path, "width", 2, s_lh, 0, width, err)) ||
        (rc = get_table(st, path, "channels", 3, s_lhd, 0, chan, err)) ||
        (rc = lk_mask_init(&m, (int)L, (int)H, (int)D, 0, err))) {
        free(width);
        free(chan);
        goto out;
    }
    for (size_t lh = 0; lh < (size_t)L * H && !rc; lh++) {
        const int *ch = chan + lh * D;
        if (width[lh] < 0 || width[lh] > D) {
            rc = lk_seterr(err, LK_EINPUT, "%s: width[%zu, %zu] is %d (expected 0..%ld)", path,
                           lh / H, lh % H, width[lh], D);
            break;
        }
        for (int j = 0; j < D; j++) {
            int ok = j < width[lh] ? ch[j] >= 0 && ch[j] < D && (j == 0 || ch[j] > ch[j - 1]) : ch[j] == -1;
            if (!ok) {
                rc = lk_seterr(err, LK_EINPUT, "%s: channels[%zu, %zu, %d] is %d (expected ascending channels "
                               "in [0, %ld) for the first width entries, then -1)", path, lh / H, lh % H, j, ch[j], D);
                break;
            }
            if (j < width[lh]) m.keep[lh * D + ch[j]] = 1;
        }
    }
    free(width);
    free(chan);
    if (!rc) {
        p->n_layers = (int)L;
        p->n_kv_heads = (int)H;
        p->head_dim = (int)D;
        p->n_heads = (int)nh;
        p->sink = (int)sink;
        p->recent = (int)recent;
        p->context = ctx;
        snprintf(p->dtype, sizeof p->dtype, "%s", dt);
        p->elem_bytes = lk_plan_dtype_bytes(dt);
        const char *what = "the plan's tables";
        q.k_col = lk_alloc((size_t)L * H, sizeof(int), what, err);
        q.v_col = lk_alloc((size_t)L * H, sizeof(int), what, err);
        q.k_row = lk_alloc((size_t)L, sizeof(int), what, err);
        q.v_row = lk_alloc((size_t)L, sizeof(int), what, err);
        q.k_off = lk_alloc((size_t)(L + 1), sizeof(int64_t), what, err);
        q.v_off = lk_alloc((size_t)(L + 1), sizeof(int64_t), what, err);
        if (!q.k_col || !q.v_col || !q.k_row || !q.v_row || !q.k_off || !q.v_off) rc = LK_ENOMEM;
        else rc = layout(p, &m, err);
        int64_t s_l[1] = {L}, s_l1[1] = {L + 1};
        struct { const char *name; int ndim; const int64_t *shape; int is64; void *got, *want; size_t n; } tabs[] = {
            {"k_col", 2, s_lh, 0, q.k_col, p->k_col, (size_t)L * H * 4},
            {"v_col", 2, s_lh, 0, q.v_col, p->v_col, (size_t)L * H * 4},
            {"k_row", 1, s_l, 0, q.k_row, p->k_row, (size_t)L * 4},
            {"v_row", 1, s_l, 0, q.v_row, p->v_row, (size_t)L * 4},
            {"k_off", 1, s_l1, 1, q.k_off, p->k_off, (size_t)(L + 1) * 8},
            {"v_off", 1, s_l1, 1, q.v_off, p->v_off, (size_t)(L + 1) * 8},
        };
        for (size_t i = 0; i < sizeof tabs / sizeof *tabs && !rc; i++) {
            rc = get_table(st, path, tabs[i].name, tabs[i].ndim, tabs[i].shape, tabs[i].is64, tabs[i].got, err);
            if (!rc && memcmp(tabs[i].got, tabs[i].want, tabs[i].n))
                rc = lk_seterr(err, LK_EINPUT, "%s: table %s disagrees with width/channels (expected the layout of plan.h; remake the plan with leank-pack)",
                               path, tabs[i].name);
        }
        if (!rc && align != p->align)
            rc = lk_seterr(err, LK_EINPUT, "%s: metadata align %ld disagrees with the widths (expected %d)", path, align, p->align);
    }
    lk_mask_free(&m);
    lk_plan_free(&q);
    if (rc) lk_plan_free(p);
out:
    lk_st_close(st);
    return rc;
}

void lk_kv_pages_at(const lk_config *c, const lk_plan *p, int elem_bytes, long max_len, lk_kv_pages *o) {
    size_t dense_tok = 2 * (size_t)c->n_layers * c->n_kv_heads * c->head_dim * elem_bytes;
    o->block_bytes = (32 * dense_tok + 255) / 256 * 256;
    int64_t mid_tok = (p ? p->k_off[p->n_layers] + p->v_off[p->n_layers]
                         : 2LL * c->n_layers * c->n_kv_heads * c->head_dim) * elem_bytes;
    o->mid_tokens = mid_tok > 0 ? (int)(o->block_bytes / (size_t)mid_tok) : (1 << 30);
    o->full_tokens = (int)(o->block_bytes / dense_tok);
    long sink = p ? p->sink : 0, recent = p ? p->recent : 0;
    long rows = max_len - sink - recent > 0 ? max_len - sink - recent : 0;
    long slots = max_len <= sink ? max_len : sink + (recent < max_len - sink ? recent : max_len - sink);
    o->n_mid = mid_tok > 0 ? (int)((rows + o->mid_tokens - 1) / o->mid_tokens) : 0;
    o->n_full = slots > 0 ? (int)((slots + o->full_tokens - 1) / o->full_tokens) : 0;
    o->bytes = (size_t)(o->n_full + o->n_mid) * o->block_bytes;
}

/* 1 when path is a safetensors file whose format is leank-plan. */
static int is_plan_file(const char *path) {
    if (!strcmp(path, "-")) return 0;
    lk_st *st;
    lk_err e2 = {0};
    if (lk_st_open(&st, path, &e2)) return 0;
    const char *fmt = lk_st_meta(st, "format");
    int yes = fmt && !strcmp(fmt, "leank-plan");
    lk_st_close(st);
    return yes;
}

static int plan_open(lk_plan *p, const char *path, const lk_config *c, const char *model_name, int sink,
                     int recent, const char *dtype, int *overridden, lk_err *err);

int lk_plan_open(lk_plan *p, const char *path, const lk_config *c, const char *model_name, int sink,
                 int recent, const char *dtype, int *overridden, lk_err *err) {
    char *shipped = lk_mask_shipped(path);
    if (shipped) path = shipped;
    int rc = plan_open(p, path, c, model_name, sink, recent, dtype, overridden, err);
    free(shipped);
    return rc;
}

static int plan_open(lk_plan *p, const char *path, const lk_config *c, const char *model_name, int sink,
                     int recent, const char *dtype, int *overridden, lk_err *err) {
    memset(p, 0, sizeof *p);
    if (overridden) *overridden = 0;
    if (is_plan_file(path)) {
        int rc = lk_plan_load(p, path, err);
        if (rc) return rc;
        if (p->n_layers != c->n_layers || p->n_kv_heads != c->n_kv_heads || p->head_dim != c->head_dim) {
            rc = lk_seterr(err, LK_EINPUT,
                           "%s: plan for %d layers, %d kv heads, head_dim %d; %s has %d, %d, %d", path,
                           p->n_layers, p->n_kv_heads, p->head_dim, model_name, c->n_layers, c->n_kv_heads,
                           c->head_dim);
            lk_plan_free(p);
            return rc;
        }
        if (overridden) *overridden = (sink >= 0 && sink != p->sink) || (recent >= 0 && recent != p->recent);
        if (sink >= 0) p->sink = sink;
        if (recent >= 0) p->recent = recent;
        return 0;
    }
    lk_mask m;
    int rc = lk_mask_load_dim(&m, path, c->head_dim, err);
    if (rc) return rc;
    /* the windows the mask was trained for, when it records them */
    int fs = m.sink >= 0 ? m.sink : LK_PLAN_DEFAULT_SINK, fr = m.recent >= 0 ? m.recent : LK_PLAN_DEFAULT_RECENT;
    if (overridden) *overridden = (sink >= 0 && sink != fs) || (recent >= 0 && recent != fr);
    rc = lk_plan_build(p, &m, path, c, model_name, sink >= 0 ? sink : fs, recent >= 0 ? recent : fr, 0, dtype, err);
    lk_mask_free(&m);
    return rc;
}
