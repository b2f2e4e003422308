/* tmodel.h - random models and masks built in memory, for unit and GPU tests
 * (one builder, included by every test that needs one). */
#ifndef LEANK_TMODEL_H
#define LEANK_TMODEL_H
#include <stdint.h>
#include <stdio.h>
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

/* base + scale * tm_frand() into the n floats at p: a weight of a model built
 * by lk_model_alloc (its own memory, so writable). */
static inline void tm_fill(const float *p, size_t n, float scale, float base) {
    float *x = (float *)p;
    for (size_t i = 0; i < n; i++) x[i] = base + scale * tm_frand();
}
/* A built model's weight as writable memory (tests that change weights). */
static inline float *tm_w(const float *p) { return (float *)p; }

/* Random weights for config c (bias when c->attention_bias; lm_head tied
 * unless c->tie_word_embeddings is 0). Free with lk_model_free. Filled kind
 * by kind, layer by layer (the order of the values is the tests' history). */
static inline void tm_random_model(lk_model *m, const lk_config *c) {
    lk_err err;
    if (lk_model_alloc(m, c, &err)) {
        fprintf(stderr, "tm_random_model: %s\n", err.msg);
        exit(1);
    }
    size_t L = c->n_layers, D = m->dim, H = m->hidden, QD = m->q_dim, KD = m->kv_dim;
    size_t V = c->vocab_size;
    lk_weights *w = &m->w;
    lk_layer_weights *y = w->layer;
    tm_fill(w->embed, V * D, 1.0f, 0.0f);
    for (size_t l = 0; l < L; l++) tm_fill(y[l].attn_norm, D, 0.1f, 1.0f);
    for (size_t l = 0; l < L; l++) tm_fill(y[l].wq, QD * D, 0.3f, 0.0f);
    for (size_t l = 0; l < L; l++) tm_fill(y[l].wk, KD * D, 0.3f, 0.0f);
    for (size_t l = 0; l < L; l++) tm_fill(y[l].wv, KD * D, 0.2f, 0.0f);
    for (size_t l = 0; l < L; l++) tm_fill(y[l].wo, D * QD, 0.2f, 0.0f);
    for (size_t l = 0; l < L; l++) tm_fill(y[l].ffn_norm, D, 0.1f, 1.0f);
    for (size_t l = 0; l < L; l++) tm_fill(y[l].w_gate, H * D, 0.2f, 0.0f);
    for (size_t l = 0; l < L; l++) tm_fill(y[l].w_up, H * D, 0.2f, 0.0f);
    for (size_t l = 0; l < L; l++) tm_fill(y[l].w_down, D * H, 0.2f, 0.0f);
    tm_fill(w->final_norm, D, 0.1f, 1.0f);
    if (c->attention_bias) {
        for (size_t l = 0; l < L; l++) tm_fill(y[l].bq, QD, 0.1f, 0.0f);
        for (size_t l = 0; l < L; l++) tm_fill(y[l].bk, KD, 0.1f, 0.0f);
        for (size_t l = 0; l < L; l++) tm_fill(y[l].bv, KD, 0.1f, 0.0f);
    }
    if (!c->tie_word_embeddings) tm_fill(w->lm_head, V * D, 0.5f, 0.0f);
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
