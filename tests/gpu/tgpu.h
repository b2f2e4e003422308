/* tgpu.h - what the GPU tests share: a checked CUDA call (file:line, exit), OK(),
 * a seedable PRNG for fresh random inputs, and the relative L2 error. */
#ifndef LEANK_TGPU_H
#define LEANK_TGPU_H
#include <cuda_runtime_api.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define CK(call)                                                                                   \
    do {                                                                                           \
        int e_ = (int)(call);                                                                      \
        if (e_) {                                                                                  \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call,                          \
                    cudaGetErrorString((cudaError_t)e_));                                          \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

static uint64_t rng; /* xorshift64*; seeded by each test from LEANK_SEED or the clock */
static inline uint64_t next(void) {
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 0x2545f4914f6cdd1dULL;
}
static inline int irand(int n) { return (int)(next() % (uint64_t)n); }
static inline float frand(void) { return (float)((next() >> 40) / 8388608.0) - 1.0f; } /* [-1, 1) */

/* A call returning an LK_E* code, counted as a check (t.h); on failure the
 * test's `lk_err err` message is printed. */
#define OK(call)                                                                                  \
    do {                                                                                          \
        int rc_ = (call);                                                                         \
        t_checks++;                                                                               \
        if (rc_) {                                                                                \
            fprintf(stderr, "%s:%d: %s: %d: %s\n", __FILE__, __LINE__, #call, rc_, err.msg);      \
            t_fails++;                                                                            \
        }                                                                                         \
    } while (0)

/* ||a - ref|| / ||ref|| in double; a non-finite a is an infinite error */
static inline double rel_l2(const float *a, const float *ref, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(a[i])) return INFINITY;
        num += ((double)a[i] - ref[i]) * ((double)a[i] - ref[i]);
        den += (double)ref[i] * ref[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}
/* the same over doubles */
static inline double rel_l2d(const double *a, const double *ref, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(a[i])) return INFINITY;
        num += (a[i] - ref[i]) * (a[i] - ref[i]);
        den += ref[i] * ref[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}
#endif
