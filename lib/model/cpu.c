/* cpu.c - vector kernels with run-time dispatch, and the thread pool of the
 * CPU engine (see cpu.h). */
#include "cpu.h"

#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define LK_X86 1
#endif

/* ------------------------------------------------------ canonical scalar */

/* Cephes expf: x = n ln2 + r (ln2 split in two for an exact n*C1), a degree-6
 * polynomial on r, times 2^n built in the exponent bits. Every operation is a
 * separately rounded multiply or add, in this order, in every version. */
#define EXP_LO (-87.0f) /* below: 0 (exp(-87) = 1.6e-38, the softmax's underflow) */
#define EXP_HI 88.0f
#define LOG2E 1.44269504088896341f
#define EXP_C1 0.693359375f
#define EXP_C2 (-2.12194440e-4f)
#define EXP_P0 1.9875691500e-4f
#define EXP_P1 1.3981999507e-3f
#define EXP_P2 8.3334519073e-3f
#define EXP_P3 4.1665795894e-2f
#define EXP_P4 1.6666665459e-1f
#define EXP_P5 5.0000001201e-1f

static inline float exp_c(float x) {
    if (x < EXP_LO) return 0.0f;
    x = x < EXP_HI ? x : EXP_HI;
    float n = floorf(x * LOG2E + 0.5f);
    float r = x - n * EXP_C1;
    r = r - n * EXP_C2;
    float z = r * r;
    float p = EXP_P0 * r + EXP_P1;
    p = p * r + EXP_P2;
    p = p * r + EXP_P3;
    p = p * r + EXP_P4;
    p = p * r + EXP_P5;
    p = p * z;
    p = p + r;
    p = p + 1.0f;
    union {
        int32_t i;
        float f;
    } u = {.i = ((int32_t)n + 127) << 23};
    return p * u.f;
}

static inline float tree8(const float s[8]) {
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

static float dot_generic(const float *a, const float *b, int n) {
    float s[8] = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int u = 0; u < 8; u++) s[u] += a[i + u] * b[i + u];
    float t = tree8(s);
    for (; i < n; i++) t += a[i] * b[i];
    return t;
}

static void dot4_generic(const float *q, const float *const k[4], int n, float out[4]) {
    for (int i = 0; i < 4; i++) out[i] = dot_generic(q, k[i], n);
}

static void dots_generic(const float *q, const float *const *k, int cnt, int n, float scale,
                         float *out) {
    for (int u = 0; u < cnt; u++) out[u] = dot_generic(q, k[u], n) * scale;
}

static void wsum_generic(float *const *po, const float *const *e, int nh, const float *const *v,
                         int cnt, int n) {
    for (int h = 0; h < nh; h++)
        for (int u = 0; u < cnt; u++)
            for (int c = 0; c < n; c++) po[h][c] += e[h][u] * v[u][c];
}

static void axpy_generic(float *y, float a, const float *x, int n) {
    for (int i = 0; i < n; i++) y[i] += a * x[i];
}

static float vmax_generic(const float *x, int n) {
    float m = x[0];
    for (int i = 1; i < n; i++)
        if (x[i] > m) m = x[i];
    return m;
}

static float exp_sum_generic(float *x, int n, float m) {
    float s[8] = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int u = 0; u < 8; u++) s[u] += x[i + u] = exp_c(x[i + u] - m);
    float t = tree8(s);
    for (; i < n; i++) t += x[i] = exp_c(x[i] - m);
    return t;
}

static void vscale_generic(float *x, float a, int n) {
    for (int i = 0; i < n; i++) x[i] *= a;
}

static void matvec_generic(float *out, const float *w, const float *x, int d_out, int d_in) {
    for (int r = 0; r < d_out; r++) out[r] = dot_generic(w + (size_t)r * d_in, x, d_in);
}

static void swiglu_generic(float *g, const float *up, size_t n) {
    for (size_t i = 0; i < n; i++) g[i] = g[i] / (1.0f + exp_c(-g[i])) * up[i];
}

/* --------------------------------------------------------------- AVX2 */

#ifdef LK_X86
#define AVX2 __attribute__((target("avx2,fma")))

/* ((s0+s1)+(s2+s3))+((s4+s5)+(s6+s7)): hadd pairs neighbours, twice. */
AVX2 static inline float tree8_avx2(__m256 s) {
    __m256 h = _mm256_hadd_ps(s, s); /* s0+s1, s2+s3, ., . | s4+s5, s6+s7, ., . */
    h = _mm256_hadd_ps(h, h);        /* (s0+s1)+(s2+s3) ... | (s4+s5)+(s6+s7) */
    return _mm_cvtss_f32(_mm_add_ss(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1)));
}

AVX2 static float dot_avx2(const float *a, const float *b, int n) {
    __m256 s = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= n; i += 8)
        s = _mm256_add_ps(s, _mm256_mul_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i)));
    float t = tree8_avx2(s);
    for (; i < n; i++) t += a[i] * b[i];
    return t;
}

AVX2 static void dot4_avx2(const float *q, const float *const k[4], int n, float out[4]) {
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    const float *k0 = k[0], *k1 = k[1], *k2 = k[2], *k3 = k[3];
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 a = _mm256_loadu_ps(q + i);
        s0 = _mm256_add_ps(s0, _mm256_mul_ps(a, _mm256_loadu_ps(k0 + i)));
        s1 = _mm256_add_ps(s1, _mm256_mul_ps(a, _mm256_loadu_ps(k1 + i)));
        s2 = _mm256_add_ps(s2, _mm256_mul_ps(a, _mm256_loadu_ps(k2 + i)));
        s3 = _mm256_add_ps(s3, _mm256_mul_ps(a, _mm256_loadu_ps(k3 + i)));
    }
    /* the four trees at once: hadd(s0,s1) holds (s0+s1),(s2+s3) of both keys
     * per half; a second hadd gives ((s0+s1)+(s2+s3)) of the four keys in the
     * low half and ((s4+s5)+(s6+s7)) in the high one: tree8 of each */
    __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(s0, s1), _mm256_hadd_ps(s2, s3));
    __m128 r = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    if (i == n) {
        _mm_storeu_ps(out, r);
        return;
    }
    float t[4];
    _mm_storeu_ps(t, r);
    float t0 = t[0], t1 = t[1], t2 = t[2], t3 = t[3];
    for (; i < n; i++) {
        t0 += q[i] * k0[i];
        t1 += q[i] * k1[i];
        t2 += q[i] * k2[i];
        t3 += q[i] * k3[i];
    }
    out[0] = t0, out[1] = t1, out[2] = t2, out[3] = t3;
}

/* Eight keys at once: eight independent add chains (the latency of the add
 * otherwise bounds a dot of 128 channels); each key's lanes and tree are
 * exactly lk_dot's. */
AVX2 static void dot8_avx2(const float *q, const float *const *k, int n, float scale, float *out) {
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0, s4 = s0, s5 = s0, s6 = s0, s7 = s0;
    const float *k0 = k[0], *k1 = k[1], *k2 = k[2], *k3 = k[3], *k4 = k[4], *k5 = k[5], *k6 = k[6], *k7 = k[7];
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 a = _mm256_loadu_ps(q + i);
        s0 = _mm256_add_ps(s0, _mm256_mul_ps(a, _mm256_loadu_ps(k0 + i)));
        s1 = _mm256_add_ps(s1, _mm256_mul_ps(a, _mm256_loadu_ps(k1 + i)));
        s2 = _mm256_add_ps(s2, _mm256_mul_ps(a, _mm256_loadu_ps(k2 + i)));
        s3 = _mm256_add_ps(s3, _mm256_mul_ps(a, _mm256_loadu_ps(k3 + i)));
        s4 = _mm256_add_ps(s4, _mm256_mul_ps(a, _mm256_loadu_ps(k4 + i)));
        s5 = _mm256_add_ps(s5, _mm256_mul_ps(a, _mm256_loadu_ps(k5 + i)));
        s6 = _mm256_add_ps(s6, _mm256_mul_ps(a, _mm256_loadu_ps(k6 + i)));
        s7 = _mm256_add_ps(s7, _mm256_mul_ps(a, _mm256_loadu_ps(k7 + i)));
    }
    __m256 h0 = _mm256_hadd_ps(_mm256_hadd_ps(s0, s1), _mm256_hadd_ps(s2, s3));
    __m256 h1 = _mm256_hadd_ps(_mm256_hadd_ps(s4, s5), _mm256_hadd_ps(s6, s7));
    /* lanes 0-3: keys 0-3 of h0's halves added; 4-7: h1's */
    __m256 lo = _mm256_permute2f128_ps(h0, h1, 0x20), hi = _mm256_permute2f128_ps(h0, h1, 0x31);
    __m256 t = _mm256_add_ps(lo, hi);
    if (i == n) {
        _mm256_storeu_ps(out, _mm256_mul_ps(t, _mm256_set1_ps(scale)));
        return;
    }
    float r[8];
    _mm256_storeu_ps(r, t);
    for (int u = 0; u < 8; u++) {
        float v = r[u];
        for (int j = i; j < n; j++) v += q[j] * k[u][j];
        out[u] = v * scale;
    }
}

AVX2 static void dots_avx2(const float *q, const float *const *k, int cnt, int n, float scale,
                          float *out) {
    int u = 0;
    for (; u + 8 <= cnt; u += 8) dot8_avx2(q, k + u, n, scale, out + u);
    for (; u + 4 <= cnt; u += 4) {
        float t[4];
        dot4_avx2(q, k + u, n, t);
        for (int i = 0; i < 4; i++) out[u + i] = t[i] * scale;
    }
    for (; u < cnt; u++) out[u] = dot_avx2(q, k[u], n) * scale;
}

/* po[h][c] += e[h][u] * v[u][c] for u in order. Channels stay in registers
 * over the whole list: 32 channels of two heads at a time (eight independent
 * add chains; one chain would wait on the add's latency every step). */
AVX2 static void wsum_avx2(float *const *po, const float *const *e, int nh, const float *const *v,
                          int cnt, int n) {
    int n32 = n & ~31, n8 = n & ~7, h = 0;
    for (; h + 2 <= nh; h += 2) {
        const float *ea = e[h], *eb = e[h + 1];
        float *oa = po[h], *ob = po[h + 1];
        for (int c = 0; c < n32; c += 32) {
            __m256 a0 = _mm256_loadu_ps(oa + c), a1 = _mm256_loadu_ps(oa + c + 8);
            __m256 a2 = _mm256_loadu_ps(oa + c + 16), a3 = _mm256_loadu_ps(oa + c + 24);
            __m256 b0 = _mm256_loadu_ps(ob + c), b1 = _mm256_loadu_ps(ob + c + 8);
            __m256 b2 = _mm256_loadu_ps(ob + c + 16), b3 = _mm256_loadu_ps(ob + c + 24);
            for (int u = 0; u < cnt; u++) {
                const float *vu = v[u] + c;
                __m256 x0 = _mm256_loadu_ps(vu), x1 = _mm256_loadu_ps(vu + 8);
                __m256 x2 = _mm256_loadu_ps(vu + 16), x3 = _mm256_loadu_ps(vu + 24);
                __m256 pa = _mm256_set1_ps(ea[u]), pb = _mm256_set1_ps(eb[u]);
                a0 = _mm256_add_ps(a0, _mm256_mul_ps(pa, x0));
                a1 = _mm256_add_ps(a1, _mm256_mul_ps(pa, x1));
                a2 = _mm256_add_ps(a2, _mm256_mul_ps(pa, x2));
                a3 = _mm256_add_ps(a3, _mm256_mul_ps(pa, x3));
                b0 = _mm256_add_ps(b0, _mm256_mul_ps(pb, x0));
                b1 = _mm256_add_ps(b1, _mm256_mul_ps(pb, x1));
                b2 = _mm256_add_ps(b2, _mm256_mul_ps(pb, x2));
                b3 = _mm256_add_ps(b3, _mm256_mul_ps(pb, x3));
            }
            _mm256_storeu_ps(oa + c, a0), _mm256_storeu_ps(oa + c + 8, a1);
            _mm256_storeu_ps(oa + c + 16, a2), _mm256_storeu_ps(oa + c + 24, a3);
            _mm256_storeu_ps(ob + c, b0), _mm256_storeu_ps(ob + c + 8, b1);
            _mm256_storeu_ps(ob + c + 16, b2), _mm256_storeu_ps(ob + c + 24, b3);
        }
    }
    for (; h < nh; h++) {
        const float *ea = e[h];
        float *oa = po[h];
        for (int c = 0; c < n32; c += 32) {
            __m256 a0 = _mm256_loadu_ps(oa + c), a1 = _mm256_loadu_ps(oa + c + 8);
            __m256 a2 = _mm256_loadu_ps(oa + c + 16), a3 = _mm256_loadu_ps(oa + c + 24);
            for (int u = 0; u < cnt; u++) {
                const float *vu = v[u] + c;
                __m256 pa = _mm256_set1_ps(ea[u]);
                a0 = _mm256_add_ps(a0, _mm256_mul_ps(pa, _mm256_loadu_ps(vu)));
                a1 = _mm256_add_ps(a1, _mm256_mul_ps(pa, _mm256_loadu_ps(vu + 8)));
                a2 = _mm256_add_ps(a2, _mm256_mul_ps(pa, _mm256_loadu_ps(vu + 16)));
                a3 = _mm256_add_ps(a3, _mm256_mul_ps(pa, _mm256_loadu_ps(vu + 24)));
            }
            _mm256_storeu_ps(oa + c, a0), _mm256_storeu_ps(oa + c + 8, a1);
            _mm256_storeu_ps(oa + c + 16, a2), _mm256_storeu_ps(oa + c + 24, a3);
        }
    }
    /* channels past the last 32 (head_dim not a multiple of 32): 8 then 1 */
    for (h = 0; h < nh; h++) {
        const float *ea = e[h];
        float *oa = po[h];
        for (int c = n32; c < n8; c += 8) {
            __m256 a0 = _mm256_loadu_ps(oa + c);
            for (int u = 0; u < cnt; u++)
                a0 = _mm256_add_ps(a0, _mm256_mul_ps(_mm256_set1_ps(ea[u]), _mm256_loadu_ps(v[u] + c)));
            _mm256_storeu_ps(oa + c, a0);
        }
        for (int c = n8; c < n; c++) {
            float a = oa[c];
            for (int u = 0; u < cnt; u++) a += ea[u] * v[u][c];
            oa[c] = a;
        }
    }
}

AVX2 static void axpy_avx2(float *y, float a, const float *x, int n) {
    __m256 va = _mm256_set1_ps(a);
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(y + i),
                                              _mm256_mul_ps(va, _mm256_loadu_ps(x + i))));
    for (; i < n; i++) y[i] += a * x[i];
}

AVX2 static float vmax_avx2(const float *x, int n) {
    if (n < 8) return vmax_generic(x, n);
    __m256 m = _mm256_loadu_ps(x);
    int i = 8;
    for (; i + 8 <= n; i += 8) m = _mm256_max_ps(m, _mm256_loadu_ps(x + i));
    float t[8], r;
    _mm256_storeu_ps(t, m);
    r = vmax_generic(t, 8);
    for (; i < n; i++)
        if (x[i] > r) r = x[i];
    return r;
}

AVX2 static inline __m256 exp_avx2(__m256 x) {
    __m256 zero = _mm256_cmp_ps(x, _mm256_set1_ps(EXP_LO), _CMP_LT_OQ);
    x = _mm256_min_ps(x, _mm256_set1_ps(EXP_HI)); /* x < HI ? x : HI, as exp_c */
    __m256 n = _mm256_floor_ps(
        _mm256_add_ps(_mm256_mul_ps(x, _mm256_set1_ps(LOG2E)), _mm256_set1_ps(0.5f)));
    __m256 r = _mm256_sub_ps(x, _mm256_mul_ps(n, _mm256_set1_ps(EXP_C1)));
    r = _mm256_sub_ps(r, _mm256_mul_ps(n, _mm256_set1_ps(EXP_C2)));
    __m256 z = _mm256_mul_ps(r, r);
    __m256 p = _mm256_add_ps(_mm256_mul_ps(_mm256_set1_ps(EXP_P0), r), _mm256_set1_ps(EXP_P1));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(EXP_P2));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(EXP_P3));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(EXP_P4));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(EXP_P5));
    p = _mm256_mul_ps(p, z);
    p = _mm256_add_ps(p, r);
    p = _mm256_add_ps(p, _mm256_set1_ps(1.0f));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_andnot_ps(zero, _mm256_mul_ps(p, _mm256_castsi256_ps(e)));
}

AVX2 static float exp_sum_avx2(float *x, int n, float m) {
    __m256 s = _mm256_setzero_ps(), vm = _mm256_set1_ps(m);
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 e = exp_avx2(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm));
        _mm256_storeu_ps(x + i, e);
        s = _mm256_add_ps(s, e);
    }
    float t = tree8_avx2(s);
    for (; i < n; i++) t += x[i] = exp_c(x[i] - m);
    return t;
}

AVX2 static void vscale_avx2(float *x, float a, int n) {
    __m256 va = _mm256_set1_ps(a);
    int i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), va));
    for (; i < n; i++) x[i] *= a;
}

AVX2 static void swiglu_avx2(float *g, const float *up, size_t n) {
    __m256 one = _mm256_set1_ps(1.0f), sign = _mm256_set1_ps(-0.0f);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 x = _mm256_loadu_ps(g + i);
        __m256 e = exp_avx2(_mm256_xor_ps(x, sign));
        _mm256_storeu_ps(g + i, _mm256_mul_ps(_mm256_div_ps(x, _mm256_add_ps(one, e)),
                                              _mm256_loadu_ps(up + i)));
    }
    swiglu_generic(g + i, up + i, n - i);
}

AVX2 static inline float hsum_avx2(__m256 s) {
    __m128 a = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    a = _mm_add_ps(a, _mm_movehl_ps(a, a));
    return _mm_cvtss_f32(_mm_add_ss(a, _mm_movehdup_ps(a)));
}

/* Four rows at a time (x is loaded once for four rows), two accumulators a row
 * (eight independent FMA chains hide the FMA latency). */
AVX2 static void matvec_avx2(float *out, const float *w, const float *x, int d_out, int d_in) {
    int r = 0;
    for (; r + 4 <= d_out; r += 4) {
        const float *w0 = w + (size_t)r * d_in, *w1 = w0 + d_in, *w2 = w1 + d_in, *w3 = w2 + d_in;
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
        int i = 0;
        for (; i + 16 <= d_in; i += 16) {
            __m256 x0 = _mm256_loadu_ps(x + i), x1 = _mm256_loadu_ps(x + i + 8);
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w0 + i), x0, a0);
            b0 = _mm256_fmadd_ps(_mm256_loadu_ps(w0 + i + 8), x1, b0);
            a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w1 + i), x0, a1);
            b1 = _mm256_fmadd_ps(_mm256_loadu_ps(w1 + i + 8), x1, b1);
            a2 = _mm256_fmadd_ps(_mm256_loadu_ps(w2 + i), x0, a2);
            b2 = _mm256_fmadd_ps(_mm256_loadu_ps(w2 + i + 8), x1, b2);
            a3 = _mm256_fmadd_ps(_mm256_loadu_ps(w3 + i), x0, a3);
            b3 = _mm256_fmadd_ps(_mm256_loadu_ps(w3 + i + 8), x1, b3);
        }
        for (; i + 8 <= d_in; i += 8) {
            __m256 x0 = _mm256_loadu_ps(x + i);
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w0 + i), x0, a0);
            a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w1 + i), x0, a1);
            a2 = _mm256_fmadd_ps(_mm256_loadu_ps(w2 + i), x0, a2);
            a3 = _mm256_fmadd_ps(_mm256_loadu_ps(w3 + i), x0, a3);
        }
        float t0 = hsum_avx2(_mm256_add_ps(a0, b0)), t1 = hsum_avx2(_mm256_add_ps(a1, b1));
        float t2 = hsum_avx2(_mm256_add_ps(a2, b2)), t3 = hsum_avx2(_mm256_add_ps(a3, b3));
        for (; i < d_in; i++) {
            t0 += w0[i] * x[i];
            t1 += w1[i] * x[i];
            t2 += w2[i] * x[i];
            t3 += w3[i] * x[i];
        }
        out[r] = t0, out[r + 1] = t1, out[r + 2] = t2, out[r + 3] = t3;
    }
    for (; r < d_out; r++) {
        const float *w0 = w + (size_t)r * d_in;
        __m256 a0 = _mm256_setzero_ps();
        int i = 0;
        for (; i + 8 <= d_in; i += 8)
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w0 + i), _mm256_loadu_ps(x + i), a0);
        float t0 = hsum_avx2(a0);
        for (; i < d_in; i++) t0 += w0[i] * x[i];
        out[r] = t0;
    }
}

/* ------------------------------------------------------------- AVX-512 */

#define AVX512 __attribute__((target("avx512f,avx2,fma")))

AVX512 static void matvec_avx512(float *out, const float *w, const float *x, int d_out, int d_in) {
    int r = 0, d16 = d_in & ~15;
    __mmask16 tail = (__mmask16)((1u << (d_in - d16)) - 1);
    for (; r + 4 <= d_out; r += 4) {
        const float *w0 = w + (size_t)r * d_in, *w1 = w0 + d_in, *w2 = w1 + d_in, *w3 = w2 + d_in;
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
        int i = 0;
        for (; i + 32 <= d_in; i += 32) {
            __m512 x0 = _mm512_loadu_ps(x + i), x1 = _mm512_loadu_ps(x + i + 16);
            a0 = _mm512_fmadd_ps(_mm512_loadu_ps(w0 + i), x0, a0);
            b0 = _mm512_fmadd_ps(_mm512_loadu_ps(w0 + i + 16), x1, b0);
            a1 = _mm512_fmadd_ps(_mm512_loadu_ps(w1 + i), x0, a1);
            b1 = _mm512_fmadd_ps(_mm512_loadu_ps(w1 + i + 16), x1, b1);
            a2 = _mm512_fmadd_ps(_mm512_loadu_ps(w2 + i), x0, a2);
            b2 = _mm512_fmadd_ps(_mm512_loadu_ps(w2 + i + 16), x1, b2);
            a3 = _mm512_fmadd_ps(_mm512_loadu_ps(w3 + i), x0, a3);
            b3 = _mm512_fmadd_ps(_mm512_loadu_ps(w3 + i + 16), x1, b3);
        }
        for (; i < d16; i += 16) {
            __m512 x0 = _mm512_loadu_ps(x + i);
            a0 = _mm512_fmadd_ps(_mm512_loadu_ps(w0 + i), x0, a0);
            a1 = _mm512_fmadd_ps(_mm512_loadu_ps(w1 + i), x0, a1);
            a2 = _mm512_fmadd_ps(_mm512_loadu_ps(w2 + i), x0, a2);
            a3 = _mm512_fmadd_ps(_mm512_loadu_ps(w3 + i), x0, a3);
        }
        if (tail) { /* masked loads: no scalar loop, no reads past the row */
            __m512 x0 = _mm512_maskz_loadu_ps(tail, x + i);
            b0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, w0 + i), x0, b0);
            b1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, w1 + i), x0, b1);
            b2 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, w2 + i), x0, b2);
            b3 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, w3 + i), x0, b3);
        }
        out[r] = _mm512_reduce_add_ps(_mm512_add_ps(a0, b0));
        out[r + 1] = _mm512_reduce_add_ps(_mm512_add_ps(a1, b1));
        out[r + 2] = _mm512_reduce_add_ps(_mm512_add_ps(a2, b2));
        out[r + 3] = _mm512_reduce_add_ps(_mm512_add_ps(a3, b3));
    }
    for (; r < d_out; r++) {
        const float *w0 = w + (size_t)r * d_in;
        __m512 a0 = _mm512_setzero_ps();
        int i = 0;
        for (; i < d16; i += 16) a0 = _mm512_fmadd_ps(_mm512_loadu_ps(w0 + i), _mm512_loadu_ps(x + i), a0);
        if (tail)
            a0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, w0 + i), _mm512_maskz_loadu_ps(tail, x + i), a0);
        out[r] = _mm512_reduce_add_ps(a0);
    }
}
#endif

/* ------------------------------------------------------------ dispatch */

static struct {
    const char *name;
    float (*dot)(const float *, const float *, int);
    void (*dot4)(const float *, const float *const[4], int, float[4]);
    void (*axpy)(float *, float, const float *, int);
    void (*dots)(const float *, const float *const *, int, int, float, float *);
    void (*wsum)(float *const *, const float *const *, int, const float *const *, int, int);
    float (*vmax)(const float *, int);
    float (*exp_sum)(float *, int, float);
    void (*vscale)(float *, float, int);
    void (*matvec)(float *, const float *, const float *, int, int);
    void (*swiglu)(float *, const float *, size_t);
} K;
static pthread_once_t k_once = PTHREAD_ONCE_INIT;

static void k_init(void) {
    K.name = "generic";
    K.dot = dot_generic, K.dot4 = dot4_generic, K.axpy = axpy_generic, K.vmax = vmax_generic;
    K.dots = dots_generic, K.wsum = wsum_generic;
    K.exp_sum = exp_sum_generic, K.vscale = vscale_generic, K.matvec = matvec_generic;
    K.swiglu = swiglu_generic;
#ifdef LK_X86
    const char *cap = getenv("LEANK_CPU");
    int lim = !cap || !*cap ? 2 : !strcmp(cap, "generic") ? 0 : !strcmp(cap, "avx2") ? 1 : 2;
    __builtin_cpu_init();
    if (lim >= 1 && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        K.name = "avx2";
        K.dot = dot_avx2, K.dot4 = dot4_avx2, K.axpy = axpy_avx2, K.vmax = vmax_avx2;
        K.dots = dots_avx2, K.wsum = wsum_avx2;
        K.exp_sum = exp_sum_avx2, K.vscale = vscale_avx2, K.matvec = matvec_avx2;
        K.swiglu = swiglu_avx2;
        /* Only the matrix-vector product gains from 512-bit vectors (the rest
         * keeps the canonical eight-lane order, which AVX2 already matches). */
        if (lim >= 2 && __builtin_cpu_supports("avx512f")) {
            K.name = "avx512";
            K.matvec = matvec_avx512;
        }
    }
#endif
}
#define KI() pthread_once(&k_once, k_init)

const char *lk_cpu_kernels(void) { KI(); return K.name; }
float lk_dot(const float *a, const float *b, int n) { KI(); return K.dot(a, b, n); }
void lk_dot4(const float *q, const float *const k[4], int n, float out[4]) { KI(); K.dot4(q, k, n, out); }
void lk_axpy(float *y, float a, const float *x, int n) { KI(); K.axpy(y, a, x, n); }
void lk_dots(const float *q, const float *const *k, int cnt, int n, float scale, float *out) {
    KI();
    K.dots(q, k, cnt, n, scale, out);
}
void lk_wsum(float *const *po, const float *const *e, int nh, const float *const *v, int cnt, int n) {
    KI();
    K.wsum(po, e, nh, v, cnt, n);
}
float lk_vmax(const float *x, int n) { KI(); return K.vmax(x, n); }
float lk_exp_sum(float *x, int n, float m) { KI(); return K.exp_sum(x, n, m); }
void lk_vscale(float *x, float a, int n) { KI(); K.vscale(x, a, n); }
void lk_matvec(float *out, const float *w, const float *x, int d_out, int d_in) {
    KI();
    K.matvec(out, w, x, d_out, d_in);
}
void lk_swiglu_fast(float *gate, const float *up, size_t n) { KI(); K.swiglu(gate, up, n); }

/* ---------------------------------------------------------- thread pool */

/* Workers spin a short while on the generation counter after a job (decode
 * issues ~5 jobs per layer back to back, and a futex wake costs more than a
 * small job), then sleep on the condition variable. Each worker's state sits
 * in its own cache line; the shared counters are written once per task. */
#define SPIN_NS 200000L

static struct {
    pthread_mutex_t mu;
    pthread_cond_t wake, done;
    int want;           /* requested size, 0 = default */
    int n;              /* threads running (1 = no workers) */
    pthread_t *th;
    lk_task_fn fn;
    void *ctx;
    int n_tasks;
    _Alignas(64) atomic_int next;  /* next task to hand out */
    _Alignas(64) atomic_int left;  /* workers still in the job */
    _Alignas(64) atomic_uint gen;  /* job generation */
    atomic_int sleepers;
    unsigned start_gen;
    long work_ns, wait_ns, off_until; /* the caller's time in tasks / waiting, this window */
    int jobs, off;         /* jobs in the window; jobs left to run on the caller */
    atomic_flag busy;
    atomic_int forwards;
} P = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER, .busy = ATOMIC_FLAG_INIT};

static long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000L + t.tv_nsec;
}

static inline void cpu_relax(void) {
#ifdef LK_X86
    _mm_pause();
#endif
}

static void run_tasks(int thread) {
    int t;
    while ((t = atomic_fetch_add_explicit(&P.next, 1, memory_order_relaxed)) < P.n_tasks)
        P.fn(P.ctx, t, thread);
}

static void *worker(void *arg) {
    int id = (int)(intptr_t)arg;
    /* the generation before the job that started this worker (read here, it
     * could already be that job's) */
    unsigned seen = P.start_gen;
    for (;;) {
        long t0 = now_ns();
        unsigned g;
        int spins = 0;
        while ((g = atomic_load_explicit(&P.gen, memory_order_acquire)) == seen) {
            cpu_relax();
            if (++spins % 256 == 0 && now_ns() - t0 > SPIN_NS) {
                pthread_mutex_lock(&P.mu);
                atomic_fetch_add(&P.sleepers, 1);
                while ((g = atomic_load(&P.gen)) == seen) pthread_cond_wait(&P.wake, &P.mu);
                atomic_fetch_sub(&P.sleepers, 1);
                pthread_mutex_unlock(&P.mu);
                break;
            }
        }
        seen = g;
        if (id >= P.n) continue; /* started for a larger size set earlier: sits this out */
        run_tasks(id);
        if (atomic_fetch_sub_explicit(&P.left, 1, memory_order_acq_rel) == 1) {
            pthread_mutex_lock(&P.mu);
            pthread_cond_signal(&P.done);
            pthread_mutex_unlock(&P.mu);
        }
    }
    return NULL;
}

static int default_threads(void) {
    const char *e = getenv("LEANK_THREADS");
    if (e && *e) {
        int n = atoi(e);
        if (n >= 1) return n > 1024 ? 1024 : n;
    }
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) return CPU_COUNT(&set);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

/* Start workers up to the wanted size (they are never stopped: a smaller size
 * later just leaves the extra ones asleep). Called with busy held. */
static void pool_size(void) {
    int want = P.want ? P.want : default_threads();
    static int started = 1;
    if (want > started) {
        P.start_gen = atomic_load(&P.gen);
        pthread_t *th = realloc(P.th, want * sizeof *th);
        if (!th) want = started;
        else P.th = th;
        for (int i = started; i < want; i++) {
            pthread_attr_t a;
            pthread_attr_init(&a);
            pthread_attr_setstacksize(&a, 1 << 20);
            if (pthread_create(&P.th[i], &a, worker, (void *)(intptr_t)i)) want = i;
            pthread_attr_destroy(&a);
            if (want == i) break;
        }
        started = want;
    }
    P.n = want;
}

int lk_threads(void) { return P.want ? P.want : (P.n ? P.n : default_threads()); }

void lk_set_threads(int n) { P.want = n > 0 ? n : 0; P.n = 0; }

void lk_forward_enter(void) { atomic_fetch_add(&P.forwards, 1); }
void lk_forward_leave(void) { atomic_fetch_sub(&P.forwards, 1); }

void lk_parallel_for(int n_tasks, lk_task_fn fn, void *ctx) {
    if (n_tasks <= 0) return;
    if (n_tasks == 1 || atomic_load(&P.forwards) > 1 || atomic_flag_test_and_set(&P.busy)) {
        for (int t = 0; t < n_tasks; t++) fn(ctx, t, 0);
        return;
    }
    if (!P.n) pool_size();
    if (P.n == 1) {
        for (int t = 0; t < n_tasks; t++) fn(ctx, t, 0);
        atomic_flag_clear(&P.busy);
        return;
    }
    /* Results do not depend on the thread count, so the pool may step back:
     * on a machine whose cores are busy with other programs a worker is often
     * preempted in the middle of a task and the caller waits for it (on the
     * 2-vCPU VM at load 3-4, decode with 2 threads ran at 2/3 of 1 thread).
     * When, over 64 jobs (or 20 ms of work), the caller waited for workers
     * longer than half the time it spent working, the next 512 jobs (at most
     * 200 ms) run on the caller alone; then the pool is tried again. With idle cores the wait is the tail of the
     * last task and the pool stays on. */
    if (P.off > 0 && now_ns() < P.off_until) {
        P.off--;
        for (int t = 0; t < n_tasks; t++) fn(ctx, t, 0);
        atomic_flag_clear(&P.busy);
        return;
    }
    long w0 = now_ns();
    P.fn = fn;
    P.ctx = ctx;
    P.n_tasks = n_tasks;
    atomic_store(&P.next, 0);
    atomic_store(&P.left, P.n - 1);
    atomic_fetch_add_explicit(&P.gen, 1, memory_order_release);
    if (atomic_load(&P.sleepers)) {
        pthread_mutex_lock(&P.mu);
        pthread_cond_broadcast(&P.wake);
        pthread_mutex_unlock(&P.mu);
    }
    run_tasks(0);
    long t0 = now_ns();
    P.work_ns += t0 - w0;
    int spins = 0;
    while (atomic_load_explicit(&P.left, memory_order_acquire)) {
        cpu_relax();
        if (++spins % 256 == 0 && now_ns() - t0 > SPIN_NS) {
            pthread_mutex_lock(&P.mu);
            while (atomic_load(&P.left)) pthread_cond_wait(&P.done, &P.mu);
            pthread_mutex_unlock(&P.mu);
            break;
        }
    }
    P.wait_ns += now_ns() - t0;
    if (++P.jobs == 64 || P.work_ns > 20000000L) { /* 64 jobs, or 20 ms of long ones (prefill) */
        if (P.wait_ns > P.work_ns / 2) P.off = 512, P.off_until = now_ns() + 200000000L;
        P.jobs = 0, P.work_ns = P.wait_ns = 0;
    }
    atomic_flag_clear(&P.busy);
}
