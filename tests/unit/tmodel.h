/* tmodel.h - random models and masks built in memory, for unit and GPU tests
 * (one builder, included by every test that needs one). */
#ifndef LEANK_TMODEL_H
#define LEANK_TMODEL_H
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mask.h"
#include "model.h"

static uint64_t tm_rng = 0x9e3779b97f4a7c15ULL;
static inline float tm_frand(void) { /* uniform in [-1, 1) */
    tm_rng ^= tm_rng >> 12;
    tm_rng ^= tm_rng << 25;
    tm_rng ^= tm_rng >> 27;
    return (float)((tm_rng * 0x2545f4914f6cdd1dULL) >> 40) / 8388608.0f - 1.0f;
}
static inline int tm_irand(int n) { return (int)((tm_frand() + 1.0f) * 0.5f * n) % n; }

static inline float *tm_rnd(size_t n, float scale, float base) {
    float *x = malloc((n ? n : 1) * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = base + scale * tm_frand();
    return x;
}

/* Random weights for config c (bias when c->attention_bias; lm_head tied
 * unless c->tie_word_embeddings is 0). Free with lk_model_free. */
static inline void tm_random_model(lk_model *m, const lk_config *c) {
    memset(m, 0, sizeof *m);
    m->cfg = *c;
    size_t L = c->n_layers, D = m->dim = c->hidden_size, H = m->hidden = c->intermediate_size;
    size_t QD = m->q_dim = c->n_heads * c->head_dim, KD = m->kv_dim = c->n_kv_heads * c->head_dim;
    size_t V = c->vocab_size;
    lk_weights *w = &m->w;
    w->embed = tm_rnd(V * D, 1.0f, 0.0f);
    w->attn_norm = tm_rnd(L * D, 0.1f, 1.0f);
    w->wq = tm_rnd(L * QD * D, 0.3f, 0.0f);
    w->wk = tm_rnd(L * KD * D, 0.3f, 0.0f);
    w->wv = tm_rnd(L * KD * D, 0.2f, 0.0f);
    w->wo = tm_rnd(L * D * QD, 0.2f, 0.0f);
    w->ffn_norm = tm_rnd(L * D, 0.1f, 1.0f);
    w->w_gate = tm_rnd(L * H * D, 0.2f, 0.0f);
    w->w_up = tm_rnd(L * H * D, 0.2f, 0.0f);
    w->w_down = tm_rnd(L * D * H, 0.2f, 0.0f);
    w->final_norm = tm_rnd(D, 0.1f, 1.0f);
    if (c->attention_bias) {
        w->bq = tm_rnd(L * QD, 0.1f, 0.0f);
        w->bk = tm_rnd(L * KD, 0.1f, 0.0f);
        w->bv = tm_rnd(L * KD, 0.1f, 0.0f);
    }
    w->lm_head = c->tie_word_embeddings ? w->embed : tm_rnd(V * D, 0.5f, 0.0f);
    m->n_params = V * D * (c->tie_word_embeddings ? 1 : 2) +
                  L * (2 * D + QD * D * 2 + KD * D * 2 + H * D * 3) + D +
                  (c->attention_bias ? L * (QD + 2 * KD) : 0);
}

/* A mask whose heads keep a random number of channels (0 .. head_dim, in
 * steps of step), chosen at random. */
static inline void tm_random_mask(lk_mask *mask, const lk_config *c, int step) {
    if (lk_mask_init(mask, c->n_layers, c->n_kv_heads, c->head_dim, 0, NULL)) {
        fputs("tm_random_mask: out of memory\n", stderr);
        exit(1);
    }
    for (int l = 0; l < c->n_layers; l++)
        for (int h = 0; h < c->n_kv_heads; h++) {
            int w = step * tm_irand(c->head_dim / step + 1);
            uint8_t *k = lk_mask_head(mask, l, h);
            for (int i = 0; i < w;) {
                int ch = tm_irand(c->head_dim);
                if (!k[ch]) k[ch] = 1, i++;
            }
        }
}
#endif
