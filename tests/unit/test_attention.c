/* test_attention.c - the LeanK KV cache and pruned attention (model.h).
 * 1. A mask keeping every channel gives bitwise the dense logits (whole model,
 *    prefill then single-token decode, sink/recent splitting the keys).
 * 2. With a random mask (width-0 and full heads included), lk_attention equals
 *    a plain computation of the definition, for single-token and multi-token
 *    calls, with the cached keys split three ways (sink, middle, recent).
 * 3. A shared dense prefill then masked decoding == the masked prefill, bitwise.
 * 4. 1 and 3 threads give bitwise the same logits. */
#include <stdint.h>

#include "config.h"
#include "mask.h"
#include "model.h"
#include "t.h"
#include "tmodel.h" /* tm_random_model */

static uint64_t rng = 0x9e3779b97f4a7c15ULL;
static float frand(void) { /* uniform in [-1, 1) */
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return (float)((rng * 0x2545f4914f6cdd1dULL) >> 40) / 8388608.0f - 1.0f;
}
static int irand(int n) { return (int)((frand() + 1.0f) * 0.5f * n) % n; }

static void config(lk_config *c, int head_dim) {
    lk_config_llama(c, 61, 48, 80, 3, 4, 2, head_dim);
    c->max_position_embeddings = 1024;
}

static float *rnd(size_t n, float scale, float base) {
    float *x = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = base + scale * frand();
    return x;
}

/* A random model of head_dim 16 and a mask of its shape, every channel kept or none. */
static void model_and_mask(lk_config *c, lk_model *m, lk_mask *mask, int keep) {
    config(c, 16);
    tm_random_model(m, c);
    CHECK(lk_mask_init(mask, c->n_layers, c->n_kv_heads, c->head_dim, keep, NULL) == 0);
}

/* ---- 1. all-channels mask == dense, bitwise ---- */

static void all_channels_bitwise(void) {
    lk_config c;
    lk_model m;
    lk_mask mask;
    model_and_mask(&c, &m, &mask, 1);
    int T = 40, prompt = 6, tokens[40];
    for (int i = 0; i < T; i++) tokens[i] = irand(c.vocab_size);
    lk_state sd, sm;
    lk_err err;
    CHECK(lk_state_build(&sd, &m, prompt, T, NULL, 0, 0, &err) == 0);
    CHECK(lk_state_build(&sm, &m, prompt, T, &mask, 3, 5, &err) == 0);
    CHECK(sm.kv.max_middle == T - 8 && sd.kv.max_middle == 0);
    CHECK(lk_forward(&m, &sd, tokens, prompt, NULL, &err) == 0);
    CHECK(lk_forward(&m, &sm, tokens, prompt, NULL, &err) == 0);
    int same = memcmp(sd.logits, sm.logits, c.vocab_size * sizeof(float)) == 0;
    for (int t = prompt; t < T; t++) {
        CHECK(lk_forward(&m, &sd, tokens + t, 1, NULL, &err) == 0);
        CHECK(lk_forward(&m, &sm, tokens + t, 1, NULL, &err) == 0);
        if (memcmp(sd.logits, sm.logits, c.vocab_size * sizeof(float))) {
            fprintf(stderr, "step %d: all-channels mask differs from dense\n", t);
            same = 0;
        }
    }
    CHECKF(same, "all-channels mask is not bitwise dense");
    CHECK(lk_kv_bytes(&sm.kv, T) == lk_kv_dense_bytes(&sm.kv, T));
    CHECK(lk_kv_bytes(&sd.kv, T) == lk_kv_dense_bytes(&sd.kv, T));
    printf("all-channels mask (sink 3, recent 5): %d decode steps bitwise equal to dense\n",
           T - prompt);
    lk_state_free(&sd);
    lk_state_free(&sm);
    lk_mask_free(&mask);
    lk_model_free(&m);
}

/* ---- 2. random mask == the definition, written plainly ---- */

/* Attention output (n, q_dim) of rows at positions pos0 .. pos0+n-1 against
 * keys K, V (pos0 + n, kv_dim), the definition of model.h. */
static void naive(const lk_config *c, const lk_mask *mask, int layer, int sink, int recent,
                  int pos0, int n, const float *Q, const float *K, const float *V, double *out) {
    int hd = c->head_dim, G = c->n_kv_heads, group = c->n_heads / G;
    int QD = c->n_heads * hd, KD = G * hd;
    double *logit = malloc(sizeof(double) * (pos0 + n));
    int *take = malloc(sizeof(int) * (pos0 + n));
    for (int r = 0; r < n; r++) {
        int p = pos0 + r;
        for (int h = 0; h < c->n_heads; h++) {
            int g = h / group;
            const uint8_t *keep = lk_mask_head(mask, layer, g);
            int width = 0;
            for (int d = 0; d < hd; d++) width += keep[d];
            const float *q = Q + (size_t)r * QD + h * hd;
            double max = -1e300;
            for (int j = 0; j <= p; j++) {
                const float *k = K + (size_t)j * KD + g * hd;
                int full = j >= pos0 || j < sink || p - j < recent;
                take[j] = full || width > 0;
                if (!take[j]) continue;
                double s = 0;
                for (int d = 0; d < hd; d++)
                    if (full || keep[d]) s += (double)q[d] * k[d];
                logit[j] = s / sqrt((double)hd);
                if (logit[j] > max) max = logit[j];
            }
            double sum = 0;
            for (int j = 0; j <= p; j++)
                if (take[j]) sum += exp(logit[j] - max);
            double *o = out + (size_t)r * QD + h * hd;
            for (int d = 0; d < hd; d++) o[d] = 0;
            for (int j = 0; j <= p; j++)
                if (take[j])
                    for (int d = 0; d < hd; d++)
                        o[d] += exp(logit[j] - max) / sum * V[(size_t)j * KD + g * hd + d];
        }
    }
    free(logit);
    free(take);
}

static void random_mask_vs_definition(int head_dim) {
    lk_config c;
    config(&c, head_dim);
    lk_model m;
    memset(&m, 0, sizeof m); /* lk_attention needs only the shapes */
    m.cfg = c;
    m.dim = c.hidden_size;
    m.q_dim = c.n_heads * head_dim;
    m.kv_dim = c.n_kv_heads * head_dim;
    lk_mask mask;
    CHECK(lk_mask_init(&mask, c.n_layers, c.n_kv_heads, head_dim, 0, NULL) == 0);
    for (int l = 0; l < c.n_layers; l++)
        for (int g = 0; g < c.n_kv_heads; g++) {
            uint8_t *keep = lk_mask_head(&mask, l, g);
            int kind = (l * c.n_kv_heads + g) % 3; /* 0: width 0, 1: random, 2: full */
            for (int d = 0; d < head_dim; d++) keep[d] = kind == 2 || (kind == 1 && frand() > 0.3f);
        }
    int sink = 4, recent = 8, max_seq = 64, QD = m.q_dim, KD = m.kv_dim;
    /* (cached tokens, rows in the call): keys in sink only, sink + ring,
     * all three kinds; single and multi-row calls */
    const int cases[][2] = {{2, 1}, {9, 1}, {30, 1}, {30, 3}, {45, 5}, {12, 7}, {0, 6}};
    double worst = 0;
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        int len = cases[ci][0], n = cases[ci][1], layer = (int)ci % c.n_layers;
        lk_state s;
        lk_err err;
        CHECK(lk_state_build(&s, &m, 8, max_seq, &mask, sink, recent, &err) == 0);
        float *K = rnd((size_t)(len + n) * KD, 1.0f, 0.0f), *V = rnd((size_t)(len + n) * KD, 1.0f, 0.0f);
        float *Q = rnd((size_t)n * QD, 1.5f, 0.0f);
        /* fill the cache in uneven chunks (tokens leave the ring mid-chunk) */
        for (int j = 0, step = 1; j < len; j += step, step = step % 5 + 2) {
            int k = len - j < step ? len - j : step;
            lk_kv_store(&s.kv, layer, j, k, K + (size_t)j * KD, V + (size_t)j * KD);
        }
        s.kv.len = len;
        memcpy(s.q, Q, sizeof(float) * n * QD);
        memcpy(s.k, K + (size_t)len * KD, sizeof(float) * n * KD);
        memcpy(s.v, V + (size_t)len * KD, sizeof(float) * n * KD);
        CHECK(lk_attention(&m, &s, layer, n, NULL) == 0);
        double *ref = malloc(sizeof(double) * n * QD);
        naive(&c, &mask, layer, sink, recent, len, n, Q, K, V, ref);
        double maxd = 0;
        for (int i = 0; i < n * QD; i++)
            if (fabs(s.att[i] - ref[i]) > maxd) maxd = fabs(s.att[i] - ref[i]);
        CHECKF(maxd <= 1e-5, "head_dim %d, %d cached + %d rows: max |diff| %.3g", head_dim, len, n,
               maxd);
        if (maxd > worst) worst = maxd;
        /* compact storage: a width-w head stores w K floats (+ head_dim V if w > 0) per middle token */
        size_t per_mid = 0;
        for (int l = 0; l < c.n_layers; l++)
            for (int g = 0; g < c.n_kv_heads; g++) {
                int w = 0;
                for (int d = 0; d < head_dim; d++) w += lk_mask_head(&mask, l, g)[d];
                per_mid += w + (w ? head_dim : 0);
            }
        size_t full = 2 * (size_t)c.n_layers * KD;
        CHECK(lk_kv_bytes(&s.kv, 40) == sizeof(float) * (full * 12 + per_mid * 28));
        CHECK(lk_kv_bytes(&s.kv, 40) < lk_kv_dense_bytes(&s.kv, 40));
        free(ref);
        free(K);
        free(V);
        free(Q);
        lk_state_free(&s);
    }
    printf("random mask, head_dim %d: lk_attention vs definition max |diff| %.2g\n", head_dim, worst);
    lk_mask_free(&mask);
}

/* ---- 3. a shared dense prefill (lk_kv_copy) == the masked prefill, bitwise ---- */

static void shared_prefill_bitwise(void) {
    lk_config c;
    lk_model m;
    lk_mask mask;
    model_and_mask(&c, &m, &mask, 0);
    for (int l = 0; l < c.n_layers; l++)
        for (int g = 0; g < c.n_kv_heads; g++) {
            uint8_t *keep = lk_mask_head(&mask, l, g);
            int kind = (l * c.n_kv_heads + g) % 3; /* width 0, random, full */
            for (int d = 0; d < c.head_dim; d++) keep[d] = kind == 2 || (kind == 1 && frand() > 0.5f);
        }
    int T = 48, prompt = 30, tokens[48];
    for (int i = 0; i < T; i++) tokens[i] = irand(c.vocab_size);
    lk_state sd, sm, sc;
    lk_err err;
    CHECK(lk_state_build(&sd, &m, prompt, T, NULL, 0, 0, &err) == 0);
    CHECK(lk_state_build(&sm, &m, prompt, T, &mask, 3, 5, &err) == 0);
    CHECK(lk_state_build(&sc, &m, prompt, T, &mask, 3, 5, &err) == 0);
    CHECK(lk_forward(&m, &sd, tokens, prompt, NULL, &err) == 0);
    CHECK(lk_forward(&m, &sm, tokens, prompt, NULL, &err) == 0);
    CHECK(lk_kv_copy(&sc.kv, &sd.kv, &err) == 0 && sc.kv.len == prompt);
    memcpy(sc.logits, sd.logits, sizeof(float) * c.vocab_size);
    CHECK(lk_kv_copy(&sd.kv, &sm.kv, &err) != 0); /* only from a dense cache */
    int same = memcmp(sm.logits, sc.logits, c.vocab_size * sizeof(float)) == 0;
    for (int t = prompt; t < T; t++) {
        CHECK(lk_forward(&m, &sm, tokens + t, 1, NULL, &err) == 0);
        CHECK(lk_forward(&m, &sc, tokens + t, 1, NULL, &err) == 0);
        if (memcmp(sm.logits, sc.logits, c.vocab_size * sizeof(float))) same = 0;
    }
    CHECKF(same, "decoding after a copied dense prefill differs from the masked prefill");
    printf("shared dense prefill (random mask, sink 3, recent 5): %d decode steps bitwise equal\n", T - prompt);
    lk_state_free(&sd);
    lk_state_free(&sm);
    lk_state_free(&sc);
    lk_mask_free(&mask);
    lk_model_free(&m);
}

/* ---- 4. the thread count does not change a bit ----
 * A context long enough for the pool (single-token attention split in chunks
 * of LK_ATT_CHUNK positions; prefill over (head, query block) tasks), with a
 * random mask; 1 thread vs 3 threads, then the scalar kernels vs the ones the
 * CPU picks (the canonical order of cpu.h): logits bitwise equal. */
static void threads_bitwise(void) {
    lk_config c;
    lk_model m;
    lk_mask mask;
    model_and_mask(&c, &m, &mask, 0);
    for (int l = 0; l < c.n_layers; l++)
        for (int g = 0; g < c.n_kv_heads; g++) {
            uint8_t *keep = lk_mask_head(&mask, l, g);
            for (int d = 0; d < c.head_dim; d++) keep[d] = frand() > 0.3f;
        }
    enum { T = 700, P = 600 };
    int *tokens = malloc(T * sizeof(int));
    for (int i = 0; i < T; i++) tokens[i] = irand(c.vocab_size);
    float *out[2];
    lk_err err;
    for (int run = 0; run < 2; run++) {
        lk_set_threads(run ? 3 : 1);
        lk_state s;
        CHECK(lk_state_build(&s, &m, P, T, &mask, 40, 100, &err) == 0);
        out[run] = malloc((size_t)(T - P + 1) * c.vocab_size * sizeof(float));
        CHECK(lk_forward(&m, &s, tokens, P, NULL, &err) == 0);
        memcpy(out[run], s.logits, c.vocab_size * sizeof(float));
        for (int t = P; t < T; t++) {
            CHECK(lk_forward(&m, &s, tokens + t, 1, NULL, &err) == 0);
            memcpy(out[run] + (size_t)(t - P + 1) * c.vocab_size, s.logits, c.vocab_size * sizeof(float));
        }
        lk_state_free(&s);
    }
    lk_set_threads(0);
    CHECKF(!memcmp(out[0], out[1], (size_t)(T - P + 1) * c.vocab_size * sizeof(float)),
           "3 threads give other logits than 1 thread");
    printf("threads: %d-token prefill + %d decode steps (context %d), 1 and 3 threads bitwise equal\n", P,
           T - P, T);
    free(out[0]);
    free(out[1]);
    free(tokens);
    lk_mask_free(&mask);
    lk_model_free(&m);
}

int main(void) {
    all_channels_bitwise();
    random_mask_vs_definition(16);
    random_mask_vs_definition(10); /* a head_dim that is not a multiple of 8 */
    shared_prefill_bitwise();
    threads_bitwise();
    return t_done();
}
