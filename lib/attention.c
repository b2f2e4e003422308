/* attention.c - the LeanK KV cache and attention of the CPU reference engine
 * (the definition is in model.h). */
#include "model.h"

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
    c->width = lk_malloc(nh * sizeof(int));
    c->chan = lk_malloc(nh * hd * sizeof(int));
    c->k_mid = lk_calloc(nh, sizeof(float *));
    c->v_mid = lk_calloc(nh, sizeof(float *));
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
    c->block = lk_malloc((2 * full + mid) * sizeof(float) + 1);
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
    float *k = lk_malloc(sizeof(float) * row * (n ? n : 1)), *v = lk_malloc(sizeof(float) * row * (n ? n : 1));
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

/* Dot product with a fixed summation order (eight partial sums, then the
 * tail), used for every logit so that a mask keeping every channel gives
 * bitwise the dense result. */
static inline float dot(const float *a, const float *b, int n) {
    float s[8] = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int u = 0; u < 8; u++) s[u] += a[i + u] * b[i + u];
    float t = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
    for (; i < n; i++) t += a[i] * b[i];
    return t;
}

static inline void axpy(float *y, float a, const float *x, int n) {
    for (int i = 0; i < n; i++) y[i] += a * x[i];
}

/* Logits of query q (position p) against cached keys 0 .. len-1 of one head
 * into sc[0 .. len): full, pruned (over the kept channels) or -INFINITY. */
static void cache_logits(const lk_kvcache *c, size_t head, const float *q, float *qk, int p,
                         float scale, float *sc) {
    int len = c->len, hd = c->head_dim, w = c->width[head];
    const int *ch = c->chan + head * hd;
    int ns = len < c->sink ? len : c->sink;
    int rs = len - c->recent > c->sink ? len - c->recent : c->sink; /* first ring position */
    if (rs > len) rs = len;
    for (int i = 0; i < w; i++) qk[i] = q[ch[i]];
    const float *ks = c->k_full + full_slot(c, head, 0); /* sink slots are consecutive */
    for (int j = 0; j < ns; j++) sc[j] = dot(q, ks + (size_t)j * hd, hd) * scale;
    const float *km = c->k_mid[head];
    for (int j = c->sink; j < rs; j++)
        sc[j] = w ? dot(qk, km + (size_t)(j - c->sink) * w, w) * scale : -INFINITY;
    for (int j = rs; j < len; j++) {
        const float *k = c->k_full + full_slot(c, head, j);
        if (p - j < c->recent) {
            sc[j] = dot(q, k, hd) * scale;
        } else if (w) { /* a later row of a multi-token call: j is middle for it */
            float kk[w];
            for (int i = 0; i < w; i++) kk[i] = k[ch[i]];
            sc[j] = dot(qk, kk, w) * scale;
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
    for (int j = 0; j < ns; j++) axpy(out, pr[j], vs + (size_t)j * hd, hd);
    if (w)
        for (int j = c->sink; j < rs; j++)
            axpy(out, pr[j], c->v_mid[head] + (size_t)(j - c->sink) * hd, hd);
    for (int j = rs; j < len; j++)
        if (w || p - j < c->recent) axpy(out, pr[j], c->v_full + full_slot(c, head, j), hd);
}

void lk_attention(const lk_model *m, lk_state *s, int layer, int n) {
    const lk_config *cfg = &m->cfg;
    const lk_kvcache *c = &s->kv;
    int hd = cfg->head_dim, G = cfg->n_kv_heads, group = cfg->n_heads / G;
    int QD = m->q_dim, KD = m->kv_dim, pos0 = c->len, total = pos0 + n;
    float scale = 1.0f / sqrtf((float)hd);
    for (int h = 0; h < cfg->n_heads; h++) {
        int g = h / group;
        size_t head = (size_t)layer * G + g;
        const float *kb = s->k + (size_t)g * hd, *vb = s->v + (size_t)g * hd; /* (n, .) ld KD */
        for (int r0 = 0; r0 < n; r0 += s->qblock) {
            int nb = n - r0 < s->qblock ? n - r0 : s->qblock;
            int nk = r0 + nb; /* this call's keys the block can see */
            float *sc = s->scores; /* (nb, total) */
            if (n > 1)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nb, nk, hd, scale,
                            s->q + (size_t)r0 * QD + (size_t)h * hd, QD, kb, KD, 0.0f, sc + pos0,
                            total);
            for (int r = 0; r < nb; r++) {
                int p = pos0 + r0 + r;
                const float *q = s->q + (size_t)(r0 + r) * QD + (size_t)h * hd;
                float *sr = sc + (size_t)r * total;
                float *out = s->att + (size_t)(r0 + r) * QD + (size_t)h * hd;
                if (n == 1) sr[pos0] = dot(q, kb, hd) * scale;
                cache_logits(c, head, q, s->qk, p, scale, sr);
                lk_softmax(sr, p + 1);
                memset(out, 0, hd * sizeof(float));
                cache_values(c, head, sr, p, out);
                if (n == 1)
                    axpy(out, sr[pos0], vb, hd);
                else
                    for (int j = p + 1; j < pos0 + nk; j++) sr[j] = 0.0f; /* causal */
            }
            if (n > 1)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nb, hd, nk, 1.0f, sc + pos0,
                            total, vb, KD, 1.0f, s->att + (size_t)r0 * QD + (size_t)h * hd, QD);
        }
    }
}
