/* attention.c - the LeanK KV cache and attention of the CPU reference engine
 * (the definition is in model.h). */
#include "model.h"

#include "cpu.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- KV cache */

int lk_kv_build(lk_kvcache *c, const lk_config *cfg, int max_seq, const lk_mask *mask, int sink,
                int recent, lk_err *err) {
    memset(c, 0, sizeof *c);
    int L = cfg->n_layers, G = cfg->n_kv_heads, hd = cfg->head_dim;
    if (mask && (mask->n_layers != L || mask->n_kv_heads != G || mask->head_dim != hd))
        return lk_seterr(err, LK_EINPUT,
                         "mask: shape (%d, %d, %d) does not match the model (%d layers, %d kv "
                         "heads, head_dim %d)",
                         mask->n_layers, mask->n_kv_heads, mask->head_dim, L, G, hd);
    if (sink < 0 || recent < 0)
        return lk_seterr(err, LK_EUSAGE, "cache: sink %d, recent %d (expected >= 0)", sink, recent);
    c->n_layers = L;
    c->n_kv_heads = G;
    c->head_dim = hd;
    c->max_seq = max_seq;
    c->dense = mask == NULL;
    if (c->dense) {
        sink = max_seq;
        recent = 0;
    }
    if (sink > max_seq) sink = max_seq;
    if (recent > max_seq - sink) recent = max_seq - sink;
    c->sink = sink;
    c->recent = recent;
    c->max_middle = max_seq - sink - recent;
    size_t nh = (size_t)L * G;
    c->width = lk_alloc(nh, sizeof(int), "the cache's widths", err);
    c->chan = lk_alloc(nh * hd, sizeof(int), "the cache's channels", err);
    c->k_mid = lk_zalloc(nh, sizeof(float *), "the cache's heads", err);
    c->v_mid = lk_zalloc(nh, sizeof(float *), "the cache's heads", err);
    if (!c->width || !c->chan || !c->k_mid || !c->v_mid) {
        lk_kv_free(c);
        return LK_ENOMEM;
    }
    size_t full = nh * (size_t)(sink + recent) * hd, mid = 0;
    for (int l = 0; l < L; l++)
        for (int g = 0; g < G; g++) {
            size_t i = (size_t)l * G + g;
            int *ch = c->chan + i * hd;
            if (mask) {
                c->width[i] = lk_mask_channels(mask, l, g, ch);
            } else {
                c->width[i] = hd;
                for (int d = 0; d < hd; d++) ch[d] = d;
            }
            int w = c->width[i];
            mid += (size_t)c->max_middle * (w + (w ? hd : 0));
        }
    if (!(c->block = lk_alloc(2 * full + mid + 1, sizeof(float), "the KV cache", err))) {
        lk_kv_free(c);
        return LK_ENOMEM;
    }
    c->k_full = c->block;
    c->v_full = c->block + full;
    float *p = c->block + 2 * full;
    for (size_t i = 0; i < nh; i++) {
        int w = c->width[i];
        c->k_mid[i] = p;
        p += (size_t)c->max_middle * w;
        if (w) {
            c->v_mid[i] = p;
            p += (size_t)c->max_middle * hd;
        }
    }
    c->bytes = (2 * full + mid) * sizeof(float);
    return 0;
}

void lk_kv_free(lk_kvcache *c) {
    free(c->width);
    free(c->chan);
    free(c->k_mid);
    free(c->v_mid);
    free(c->block);
    memset(c, 0, sizeof *c);
}

void lk_kv_reset(lk_kvcache *c) { c->len = 0; }

size_t lk_kv_dense_bytes(const lk_kvcache *c, int n) {
    return 2 * sizeof(float) * (size_t)c->n_layers * c->n_kv_heads * c->head_dim * (size_t)n;
}

size_t lk_kv_bytes(const lk_kvcache *c, int n) {
    int nfull = n < c->sink + c->recent ? n : c->sink + c->recent;
    size_t nmid = (size_t)(n - nfull), per_mid = 0;
    for (int i = 0; i < c->n_layers * c->n_kv_heads; i++)
        per_mid += c->width[i] + (c->width[i] ? c->head_dim : 0);
    return sizeof(float) * (2 * (size_t)c->n_layers * c->n_kv_heads * c->head_dim * nfull +
                            nmid * per_mid);
}

/* full-width slot of position j (j < sink, or in the recent ring) */
static inline size_t full_slot(const lk_kvcache *c, size_t head, int j) {
    int slot = j < c->sink ? j : c->sink + j % c->recent;
    return (head * (c->sink + c->recent) + slot) * c->head_dim;
}

/* Middle row of position j: kept channels of k, and v when the head keeps any. */
static void to_middle(lk_kvcache *c, size_t head, int j, const float *k, const float *v) {
    int w = c->width[head], hd = c->head_dim;
    const int *ch = c->chan + head * hd;
    float *km = c->k_mid[head] + (size_t)(j - c->sink) * w;
    for (int i = 0; i < w; i++) km[i] = k[ch[i]];
    if (w) memcpy(c->v_mid[head] + (size_t)(j - c->sink) * hd, v, hd * sizeof(float));
}

void lk_kv_store(lk_kvcache *c, int layer, int pos, int n, const float *k, const float *v) {
    int G = c->n_kv_heads, hd = c->head_dim;
    for (int r = 0; r < n; r++) {
        int j = pos + r;
        for (int g = 0; g < G; g++) {
            size_t head = (size_t)layer * G + g;
            const float *kr = k + ((size_t)r * G + g) * hd, *vr = v + ((size_t)r * G + g) * hd;
            if (j < c->sink) {
                size_t o = full_slot(c, head, j);
                memcpy(c->k_full + o, kr, hd * sizeof(float));
                memcpy(c->v_full + o, vr, hd * sizeof(float));
            } else if (c->recent > 0) {
                int old = j - c->recent; /* leaves the ring as j enters its slot */
                size_t o = full_slot(c, head, j);
                if (old >= c->sink) to_middle(c, head, old, c->k_full + o, c->v_full + o);
                memcpy(c->k_full + o, kr, hd * sizeof(float));
                memcpy(c->v_full + o, vr, hd * sizeof(float));
            } else {
                to_middle(c, head, j, kr, vr);
            }
        }
    }
}

int lk_kv_copy(lk_kvcache *dst, const lk_kvcache *src, lk_err *err) {
    int L = src->n_layers, G = src->n_kv_heads, hd = src->head_dim, n = src->len;
    if (!src->dense) return lk_seterr(err, LK_EUSAGE, "cache copy: the source cache is not dense");
    if (dst->n_layers != L || dst->n_kv_heads != G || dst->head_dim != hd || dst->max_seq < n)
        return lk_seterr(err, LK_EUSAGE, "cache copy: %d tokens of a (%d, %d, %d) cache do not fit a (%d, %d, %d) "
                         "cache of %d positions", n, L, G, hd, dst->n_layers, dst->n_kv_heads, dst->head_dim,
                         dst->max_seq);
    size_t row = (size_t)G * hd;
    float *k = lk_alloc(row * n, sizeof(float), "a cache copy", err), *v = lk_alloc(row * n, sizeof(float), "a cache copy", err);
    if (!k || !v) {
        free(k);
        free(v);
        return LK_ENOMEM;
    }
    for (int l = 0; l < L; l++) {
        for (int j = 0; j < n; j++)
            for (int g = 0; g < G; g++) {
                size_t o = full_slot(src, (size_t)l * G + g, j);
                memcpy(k + j * row + (size_t)g * hd, src->k_full + o, hd * sizeof(float));
                memcpy(v + j * row + (size_t)g * hd, src->v_full + o, hd * sizeof(float));
            }
        lk_kv_store(dst, l, 0, n, k, v);
    }
    free(k);
    free(v);
    dst->len = n;
    return 0;
}

/* --------------------------------------------------------------- attention */

/* Every logit is lk_dot (or lk_dot4, the same bits) of a query and a key, both
 * full width or both over the kept channels, so a mask keeping every channel
 * gives bitwise the dense result; probabilities use lk_vmax / lk_exp_sum and
 * outputs lk_axpy, whose order is fixed on every CPU (cpu.h). */

/* Per-thread work areas (model.h), grown to the pool's size. Out of memory,
 * the state keeps the areas it had (for fewer threads). */
int lk_state_threads(lk_state *s, const lk_model *m, lk_err *err) {
    int T = lk_threads();
    if (T <= s->nthreads) return 0;
    int hd = m->cfg.head_dim, nh = m->cfg.n_heads, nch = s->max_seq / LK_ATT_CHUNK + 1;
    if (!s->hsc) {
        s->hsc = lk_alloc((size_t)nh * s->max_seq, sizeof(float), "the attention scores", err);
        s->cmax = lk_alloc((size_t)nh * nch, sizeof(float), "the attention's chunks", err);
        s->csum = lk_alloc((size_t)nh * nch, sizeof(float), "the attention's chunks", err);
        s->pout = lk_alloc((size_t)nh * nch * hd, sizeof(float), "the attention's chunks", err);
        if (!s->hsc || !s->cmax || !s->csum || !s->pout) {
            free(s->hsc), free(s->cmax), free(s->csum), free(s->pout);
            s->hsc = s->cmax = s->csum = s->pout = NULL;
            return LK_ENOMEM;
        }
    }
    /* one (qblock, max_seq) score block a thread. qblock is fixed (not
     * derived from the thread count): the blocks decide the shapes of the
     * score products, and the result must not depend on the threads. */
    int qb = s->max_rows < 64 ? s->max_rows : 64;
    float *sc = lk_alloc((size_t)T * qb * s->max_seq, sizeof(float), "the threads' attention scores", err);
    float *scr = lk_alloc((size_t)T * (nh + 1) * hd, sizeof(float), "the threads' work areas", err);
    if (!sc || !scr) {
        free(sc);
        free(scr);
        return LK_ENOMEM;
    }
    free(s->tscores);
    free(s->tscratch);
    s->qblock = qb;
    s->tscores = s->scores = sc;
    s->tscratch = scr;
    s->nthreads = T;
    return 0;
}

/* Logits of query q (position p) against cached keys 0 .. len-1 of one head
 * into sc[0 .. len): full, pruned (over the kept channels) or -INFINITY. */
static void cache_logits(const lk_kvcache *c, size_t head, const float *q, float *qk, float *kk,
                         int p, float scale, float *sc) {
    int len = c->len, hd = c->head_dim, w = c->width[head];
    const int *ch = c->chan + head * hd;
    int ns = len < c->sink ? len : c->sink;
    int rs = len - c->recent > c->sink ? len - c->recent : c->sink; /* first ring position */
    if (rs > len) rs = len;
    for (int i = 0; i < w; i++) qk[i] = q[ch[i]];
    const float *ks = c->k_full + full_slot(c, head, 0); /* sink slots are consecutive */
    for (int j = 0; j < ns; j++) sc[j] = lk_dot(q, ks + (size_t)j * hd, hd) * scale;
    const float *km = c->k_mid[head];
    for (int j = c->sink; j < rs; j++)
        sc[j] = w ? lk_dot(qk, km + (size_t)(j - c->sink) * w, w) * scale : -INFINITY;
    for (int j = rs; j < len; j++) {
        const float *k = c->k_full + full_slot(c, head, j);
        if (p - j < c->recent) {
            sc[j] = lk_dot(q, k, hd) * scale;
        } else if (w) { /* a later row of a multi-token call: j is middle for it */
            for (int i = 0; i < w; i++) kk[i] = k[ch[i]];
            sc[j] = lk_dot(qk, kk, w) * scale;
        } else {
            sc[j] = -INFINITY;
        }
    }
}

/* out (head_dim) += sum_j pr[j] v_j over cached positions 0 .. len-1 that take
 * part for the query at position p. */
static void cache_values(const lk_kvcache *c, size_t head, const float *pr, int p, float *out) {
    int len = c->len, hd = c->head_dim, w = c->width[head];
    int ns = len < c->sink ? len : c->sink;
    int rs = len - c->recent > c->sink ? len - c->recent : c->sink;
    if (rs > len) rs = len;
    const float *vs = c->v_full + full_slot(c, head, 0);
    for (int j = 0; j < ns; j++) lk_axpy(out, pr[j], vs + (size_t)j * hd, hd);
    if (w)
        for (int j = c->sink; j < rs; j++)
            lk_axpy(out, pr[j], c->v_mid[head] + (size_t)(j - c->sink) * hd, hd);
    for (int j = rs; j < len; j++)
        if (w || p - j < c->recent) lk_axpy(out, pr[j], c->v_full + full_slot(c, head, j), hd);
}

typedef struct {
    const lk_model *m;
    lk_state *s;
    int layer, n, nch;
    float scale;
} att_job;

/* ---- multi-token calls: one task per (head, block of query rows) ---- */

static void rows_task(void *arg, int task, int thread) {
    const att_job *J = arg;
    const lk_model *m = J->m;
    lk_state *s = J->s;
    const lk_config *cfg = &m->cfg;
    const lk_kvcache *c = &s->kv;
    int hd = cfg->head_dim, G = cfg->n_kv_heads, group = cfg->n_heads / G, n = J->n;
    int QD = m->q_dim, KD = m->kv_dim, pos0 = c->len, total = pos0 + n;
    int nblk = (n + s->qblock - 1) / s->qblock, h = task / nblk, r0 = task % nblk * s->qblock;
    int g = h / group;
    size_t head = (size_t)J->layer * G + g;
    const float *kb = s->k + (size_t)g * hd, *vb = s->v + (size_t)g * hd; /* (n, .) ld KD */
    int nb = n - r0 < s->qblock ? n - r0 : s->qblock;
    int nk = r0 + nb; /* this call's keys the block can see */
    float *sc = s->tscores + (size_t)thread * s->qblock * s->max_seq; /* (nb, total) */
    float *qk = s->tscratch + (size_t)thread * (cfg->n_heads + 1) * hd, *kk = qk + hd;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nb, nk, hd, J->scale,
                s->q + (size_t)r0 * QD + (size_t)h * hd, QD, kb, KD, 0.0f, sc + pos0, total);
    for (int r = 0; r < nb; r++) {
        int p = pos0 + r0 + r;
        const float *q = s->q + (size_t)(r0 + r) * QD + (size_t)h * hd;
        float *sr = sc + (size_t)r * total;
        float *out = s->att + (size_t)(r0 + r) * QD + (size_t)h * hd;
        cache_logits(c, head, q, qk, kk, p, J->scale, sr);
        float mx = lk_vmax(sr, p + 1);
        lk_vscale(sr, 1.0f / lk_exp_sum(sr, p + 1, mx), p + 1);
        memset(out, 0, hd * sizeof(float));
        cache_values(c, head, sr, p, out);
        for (int j = p + 1; j < pos0 + nk; j++) sr[j] = 0.0f; /* causal */
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nb, hd, nk, 1.0f, sc + pos0, total, vb,
                KD, 1.0f, s->att + (size_t)r0 * QD + (size_t)h * hd, QD);
}

/* ---- single-token steps: the keys 0 .. p split in chunks of LK_ATT_CHUNK
 * positions; a task is (kv head, chunk) and serves the kv head's group of
 * query heads, so each key and value is read once for the group. Phase 1:
 * logits and each chunk's maximum; phase 2: exp against the global maximum,
 * the chunk's sum and its unnormalised output; then the chunks are added in
 * order (a fixed order whatever the thread count). ---- */

/* Keys of positions j0 .. j1-1 for this step (j = len is this token's own,
 * kself), region by region: kind 0 full width, 1 the compact middle row (kept
 * channels), 2 a full ring slot seen through the kept channels (the key about
 * to leave the ring), 3 none (a middle key of a head that keeps no channel). */
static void step_keys(const lk_kvcache *c, size_t head, int j0, int j1, const float *kself,
                      const float **kp, unsigned char *kind) {
    int len = c->len, w = c->width[head], hd = c->head_dim;
    int ns = len < c->sink ? len : c->sink;
    int rs = len - c->recent > c->sink ? len - c->recent : c->sink;
    if (rs > len) rs = len;
    const float *ks = c->k_full + full_slot(c, head, 0), *km = c->k_mid[head];
    int j = j0, e;
    for (e = j1 < ns ? j1 : ns; j < e; j++) kp[j - j0] = ks + (size_t)j * hd, kind[j - j0] = 0;
    for (e = j1 < rs ? j1 : rs; j < e; j++) /* middle */
        kp[j - j0] = w ? km + (size_t)(j - c->sink) * w : NULL, kind[j - j0] = w ? 1 : 3;
    for (e = j1 < len ? j1 : len; j < e; j++) { /* ring */
        int full = len - j < c->recent;
        kp[j - j0] = full || w ? c->k_full + full_slot(c, head, j) : NULL;
        kind[j - j0] = full ? 0 : w ? 2 : 3;
    }
    if (j < j1) kp[j - j0] = kself, kind[j - j0] = 0;
}

/* Values of the same positions; a position without one (kind 3) gets zeros,
 * which add exactly nothing (its probability is 0). */
static void step_values(const lk_kvcache *c, size_t head, int j0, int j1, const float *vself,
                        const float *zeros, const float **vp) {
    int len = c->len, w = c->width[head], hd = c->head_dim;
    int ns = len < c->sink ? len : c->sink;
    int rs = len - c->recent > c->sink ? len - c->recent : c->sink;
    if (rs > len) rs = len;
    const float *vs = c->v_full + full_slot(c, head, 0), *vm = c->v_mid[head];
    int j = j0, e;
    for (e = j1 < ns ? j1 : ns; j < e; j++) vp[j - j0] = vs + (size_t)j * hd;
    for (e = j1 < rs ? j1 : rs; j < e; j++) vp[j - j0] = w ? vm + (size_t)(j - c->sink) * hd : zeros;
    for (e = j1 < len ? j1 : len; j < e; j++)
        vp[j - j0] = w || len - j < c->recent ? c->v_full + full_slot(c, head, j) : zeros;
    if (j < j1) vp[j - j0] = vself;
}

static void step_logits_task(void *arg, int task, int thread) {
    const att_job *J = arg;
    const lk_model *m = J->m;
    lk_state *s = J->s;
    const lk_config *cfg = &m->cfg;
    const lk_kvcache *c = &s->kv;
    int hd = cfg->head_dim, G = cfg->n_kv_heads, group = cfg->n_heads / G;
    int g = task / J->nch, ch = task % J->nch, p = c->len;
    int j0 = ch * LK_ATT_CHUNK, j1 = j0 + LK_ATT_CHUNK < p + 1 ? j0 + LK_ATT_CHUNK : p + 1;
    size_t head = (size_t)J->layer * G + g;
    int w = c->width[head];
    const int *chan = c->chan + head * hd;
    float *scr = s->tscratch + (size_t)thread * (cfg->n_heads + 1) * hd; /* group x hd, then kk */
    float *kk = scr + (size_t)group * hd;
    const float *qf[group], *qc[group];
    for (int i = 0; i < group; i++) {
        qf[i] = s->q + (size_t)(g * group + i) * hd;
        float *qk = scr + (size_t)i * hd;
        for (int d = 0; d < w; d++) qk[d] = qf[i][chan[d]];
        qc[i] = qk;
    }
    const float *kp[LK_ATT_CHUNK];
    unsigned char kind[LK_ATT_CHUNK];
    step_keys(c, head, j0, j1, s->k + (size_t)g * hd, kp, kind);
    for (int a = 0, n = j1 - j0; a < n;) {
        int b = a + 1;
        while (b < n && kind[b] == kind[a] && kind[a] < 2) b++; /* a run of one kind */
        for (int i = 0; i < group; i++) {
            float *out = s->hsc + (size_t)(g * group + i) * s->max_seq + j0;
            if (kind[a] == 3) {
                out[a] = -INFINITY;
            } else if (kind[a] == 2) {
                for (int d = 0; d < w; d++) kk[d] = kp[a][chan[d]];
                out[a] = lk_dot(qc[i], kk, w) * J->scale;
            } else {
                lk_dots(kind[a] ? qc[i] : qf[i], kp + a, b - a, kind[a] ? w : hd, J->scale, out + a);
            }
        }
        a = b;
    }
    for (int i = 0; i < group; i++) {
        int h = g * group + i;
        s->cmax[(size_t)h * J->nch + ch] = lk_vmax(s->hsc + (size_t)h * s->max_seq + j0, j1 - j0);
    }
}

static void step_values_task(void *arg, int task, int thread) {
    const att_job *J = arg;
    const lk_model *m = J->m;
    lk_state *s = J->s;
    const lk_config *cfg = &m->cfg;
    const lk_kvcache *c = &s->kv;
    int hd = cfg->head_dim, G = cfg->n_kv_heads, group = cfg->n_heads / G;
    int g = task / J->nch, ch = task % J->nch, p = c->len;
    int j0 = ch * LK_ATT_CHUNK, j1 = j0 + LK_ATT_CHUNK < p + 1 ? j0 + LK_ATT_CHUNK : p + 1;
    size_t head = (size_t)J->layer * G + g;
    const float *e[group];
    float *po[group];
    for (int i = 0; i < group; i++) {
        int h = g * group + i;
        const float *cm = s->cmax + (size_t)h * J->nch;
        float mx = cm[0];
        for (int k = 1; k < J->nch; k++)
            if (cm[k] > mx) mx = cm[k];
        float *eh = s->hsc + (size_t)h * s->max_seq + j0;
        s->csum[(size_t)h * J->nch + ch] = lk_exp_sum(eh, j1 - j0, mx);
        e[i] = eh;
        po[i] = s->pout + ((size_t)h * J->nch + ch) * hd;
        memset(po[i], 0, hd * sizeof(float));
    }
    const float *vp[LK_ATT_CHUNK];
    float *zeros = s->tscratch + (size_t)thread * (cfg->n_heads + 1) * hd;
    memset(zeros, 0, hd * sizeof(float));
    step_values(c, head, j0, j1, s->v + (size_t)g * hd, zeros, vp);
    lk_wsum(po, e, group, vp, j1 - j0, hd);
}

static void step_attention(const lk_model *m, lk_state *s, int layer, float scale) {
    const lk_config *cfg = &m->cfg;
    int hd = cfg->head_dim, G = cfg->n_kv_heads;
    att_job J = {m, s, layer, 1, s->kv.len / LK_ATT_CHUNK + 1, scale};
    /* a short context is not worth waking the pool for (stories260K: 8 heads
     * of 8 channels); the tasks and their order are the same either way */
    if ((double)(s->kv.len + 1) * cfg->n_heads * hd < 32768.0) {
        for (int t = 0; t < G * J.nch; t++) step_logits_task(&J, t, 0);
        for (int t = 0; t < G * J.nch; t++) step_values_task(&J, t, 0);
    } else {
        lk_parallel_for(G * J.nch, step_logits_task, &J);
        lk_parallel_for(G * J.nch, step_values_task, &J);
    }
    for (int h = 0; h < cfg->n_heads; h++) {
        float *out = s->att + (size_t)h * hd, sum = 0.0f;
        memcpy(out, s->pout + (size_t)h * J.nch * hd, hd * sizeof(float));
        sum = s->csum[(size_t)h * J.nch];
        for (int k = 1; k < J.nch; k++) {
            lk_axpy(out, 1.0f, s->pout + ((size_t)h * J.nch + k) * hd, hd);
            sum += s->csum[(size_t)h * J.nch + k];
        }
        lk_vscale(out, 1.0f / sum, hd);
    }
}

int lk_attention(const lk_model *m, lk_state *s, int layer, int n, lk_err *err) {
    if (lk_state_threads(s, m, err)) return LK_ENOMEM;
    float scale = 1.0f / sqrtf((float)m->cfg.head_dim);
    if (n == 1) {
        step_attention(m, s, layer, scale);
        return 0;
    }
    att_job J = {m, s, layer, n, 0, scale};
    lk_parallel_for(m->cfg.n_heads * ((n + s->qblock - 1) / s->qblock), rows_task, &J);
    return 0;
}
