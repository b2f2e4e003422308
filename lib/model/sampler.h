/* sampler.h - choosing the next token from logits: greedy, temperature,
 * top-k, top-p (nucleus), with a seeded, reproducible PRNG (xorshift64*). */
#ifndef LEANK_SAMPLER_H
#define LEANK_SAMPLER_H

#include <stdint.h>

#include "util.h"

typedef struct {
    float prob;
    int index;
} lk_prob_index;

typedef struct {
    int vocab;
    float temperature;     /* 0 = greedy (argmax) */
    int top_k;             /* 0 = off */
    float top_p;           /* 1 = off */
    uint64_t rng;          /* xorshift64* state */
    lk_prob_index *cand;   // (vocab) scratch
} lk_sampler;

/* 0, or LK_ENOMEM (the candidates' scratch) */
int lk_sampler_build(lk_sampler *s, int vocab, float temperature, int top_k, float top_p, uint64_t seed,
                     lk_err *err);
void lk_sampler_free(lk_sampler *s);
/* Next token; logits (vocab) are overwritten (probabilities). Ties in greedy
 * go to the lowest id. */
int lk_sample(lk_sampler *s, float *logits);
/* Index of the largest value (lowest index among equals). */
int lk_argmax(const float *x, int n);
/* Uniform float in [0, 1) from the sampler's PRNG. */
float lk_sampler_uniform(lk_sampler *s);

#endif
