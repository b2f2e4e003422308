/* sampler.c - greedy / temperature / top-k / top-p sampling (see sampler.h). */
#include "sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "util.h"

int lk_sampler_build(lk_sampler *s, int vocab, float temperature, int top_k, float top_p, uint64_t seed,
                     lk_err *err) {
    s->vocab = vocab;
    s->temperature = temperature;
    s->top_k = top_k < 0 || top_k > vocab ? 0 : top_k;
    s->top_p = top_p <= 0.0f || top_p > 1.0f ? 1.0f : top_p;
    /* splitmix64 of the seed: any seed (0 included) gives a good nonzero state */
    uint64_t z = seed + 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    s->rng = z ? z : 0x2545f4914f6cdd1dULL;
    s->cand = lk_alloc((size_t)vocab, sizeof(lk_prob_index), "the sampler's candidates", err);
    return s->cand ? 0 : LK_ENOMEM;
}

void lk_sampler_free(lk_sampler *s) {
    free(s->cand);
    s->cand = NULL;
}

float lk_sampler_uniform(lk_sampler *s) {
    s->rng ^= s->rng >> 12;
    s->rng ^= s->rng << 25;
    s->rng ^= s->rng >> 27;
    return (float)((s->rng * 0x2545f4914f6cdd1dULL) >> 40) / 16777216.0f; /* 24 bits */
}

int lk_argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

static int by_prob_desc(const void *a, const void *b) {
    const lk_prob_index *x = a, *y = b;
    if (x->prob != y->prob) return x->prob > y->prob ? -1 : 1;
    return x->index - y->index;
}

int lk_sample(lk_sampler *s, float *logits) {
    int n = s->vocab;
    if (s->temperature <= 0.0f) return lk_argmax(logits, n);
    for (int i = 0; i < n; i++) logits[i] /= s->temperature;
    lk_softmax(logits, n);
    float u = lk_sampler_uniform(s);
    if (s->top_k == 0 && s->top_p >= 1.0f) { /* plain multinomial */
        float cdf = 0.0f;
        for (int i = 0; i < n; i++) {
            cdf += logits[i];
            if (u < cdf) return i;
        }
        return n - 1; /* rounding */
    }
    /* candidates sorted by probability; keep top_k, then the smallest prefix
     * whose mass reaches top_p */
    int nc = 0;
    float cutoff = s->top_k ? 0.0f : (1.0f - s->top_p) / (n - 1); /* cannot be in the nucleus */
    for (int i = 0; i < n; i++)
        if (logits[i] >= cutoff) s->cand[nc++] = (lk_prob_index){logits[i], i};
    qsort(s->cand, nc, sizeof *s->cand, by_prob_desc);
    if (s->top_k && nc > s->top_k) nc = s->top_k;
    float mass = 0.0f;
    int last = nc - 1;
    for (int i = 0; i < nc; i++) {
        mass += s->cand[i].prob;
        if (mass >= s->top_p) {
            last = i;
            break;
        }
    }
    float total = 0.0f;
    for (int i = 0; i <= last; i++) total += s->cand[i].prob;
    float r = u * total, cdf = 0.0f;
    for (int i = 0; i <= last; i++) {
        cdf += s->cand[i].prob;
        if (r < cdf) return s->cand[i].index;
    }
    return s->cand[last].index;
}
