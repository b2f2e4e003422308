/* train_cuda.cu - the CUDA backend of leank-train (train.h's lk_train_backend):
 * the forward of the full and the pruned model over a sample's answer rows
 * and the backward of the distillation loss to alpha, on a CUDA engine.
 * lib/train/train_cpu.c is the definition (in double); this file follows it
 * step for step and tests/gpu/gpu_train.c checks it against it.
 *
 * prepare(): the engine prefills the context into a dense sequence of its
 *   own KV pool (its prefill kernels, no gradient, nothing else kept); the
 *   dense answer rows then run through the engine's weights and row kernels
 *   (ops.h) to h_full, with |q| and |k| statistics for the norm method.
 * loss_grad(): the pruned answer rows again, keeping per layer what the
 *   backward needs (layer inputs, queries, log-sum-exp, attention output,
 *   gate/up, the answer rows' keys and values); loss = mean (h_p - h_full)^2;
 *   the backward through the final norm, MLP, norms, projections, RoPE and
 *   the attention over the context (fixed) and answer keys to dalpha.
 *
 * Attention of the A answer rows over the n = C + A keys of a layer, for the
 * gs query heads of each kv group at once (rows (head, row), heads of a group
 * adjacent): the scores are materialised, S = scale q K^T and, when pruned,
 * Sm = scale (q * alpha) K^T, as cuBLAS batched products over the groups
 * (A * n * n_heads floats each: 134 MB at 32 rows x 32K keys x 32 heads);
 * a row kernel picks full or middle per key (j < sink or p - j < recent:
 * full), masks j > p and normalises. The backward, with P recomputed from the
 * saved log-sum-exp: dP = dO V^T, dZ = scale P (dP - rowsum(dO * O)), split
 * into its full and middle keys, Gf = dZf K, Gm = dZm K, dq = Gf + alpha Gm,
 * dalpha_g = sum over the group's rows of q * Gm; the answer keys' dk and dv
 * from the answer columns of P and dZ.
 *
 * Types: weights, GEMM inputs and the cache in the engine's type (f32 or
 * bf16); the residual stream, scores, saved activations, gradients, alpha
 * and every reduction in f32 (the loss in double). Every reduction has a
 * fixed order (no atomics; cuBLAS is deterministic for a fixed
 * configuration), so the same inputs give the same bits. With alpha == 1 the
 * pruned pass is the dense pass operation for operation: q * 1 == q, so the
 * two score products are the same product, and the loss is exactly 0. */
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "engine.h"
#include "train.h"
}
#include "engine_cuda.h"
#include "cuda_check.h"
#include "kvcache.h"
#include "ops.h"

/* ------------------------------------------------------------ checks */

#define LAUNCHED() KR((int)cudaGetLastError())

/* ------------------------------------------------------------ element access */

template <typename T> __device__ __forceinline__ float ld(const T *p, size_t i);
template <> __device__ __forceinline__ float ld<float>(const float *p, size_t i) { return p[i]; }
template <> __device__ __forceinline__ float ld<__nv_bfloat16>(const __nv_bfloat16 *p, size_t i) {
    return __bfloat162float(p[i]);
}
template <typename T> __device__ __forceinline__ void st(T *p, size_t i, float v);
template <> __device__ __forceinline__ void st<float>(float *p, size_t i, float v) { p[i] = v; }
template <> __device__ __forceinline__ void st<__nv_bfloat16>(__nv_bfloat16 *p, size_t i, float v) {
    p[i] = __float2bfloat16_rn(v);
}

#define GRID_STRIDE(i, n)                                                                        \
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (n);                      \
         i += (size_t)gridDim.x * blockDim.x)

static unsigned grid_for(size_t n) {
    size_t g = (n + 255) / 256;
    if (g > 65535u * 8) g = 65535u * 8;
    return (unsigned)(g ? g : 1);
}

/* Fixed-order block reductions (blockDim.x == 256). */
/* A 256-thread block's reduction of v (sh: 256 elements of shared memory), a
 * tree in a fixed order, so the same bits every run; every thread gets it. */
template <typename T, typename Op>
__device__ T block_reduce256(T v, T *sh, Op op) {
    sh[threadIdx.x] = v;
    __syncthreads();
    for (int s = 128; s; s >>= 1) {
        if (threadIdx.x < s) sh[threadIdx.x] = op(sh[threadIdx.x], sh[threadIdx.x + s]);
        __syncthreads();
    }
    T r = sh[0];
    __syncthreads();
    return r;
}
struct SumOp {
    template <typename T> __device__ T operator()(T a, T b) const { return a + b; }
};

/* Is key j seen in full by the query at position p? (train.h's rule) */
__device__ __forceinline__ bool full_key(int j, int p, int sink, int recent) {
    return j < sink || p - j < recent;
}

/* ------------------------------------------------------------ kernels */

/* q (A, NH, hd) -> qt (NH, A, hd) in T, qf the same in f32, and (alpha not
 * NULL) qa = q * alpha[group] in T. */
template <typename T>
__global__ void q_in_kernel(const T *q, const float *alpha, T *qt, T *qa, float *qf, int A, int NH, int gs,
                            int hd) {
    size_t n = (size_t)A * NH * hd;
    GRID_STRIDE(idx, n) {
        int c = (int)(idx % hd), h = (int)(idx / hd % NH), i = (int)(idx / ((size_t)hd * NH));
        size_t o = ((size_t)h * A + i) * hd + c;
        float v = ld(q, idx);
        qt[o] = q[idx];
        qf[o] = v;
        if (qa) st(qa, o, v * alpha[(size_t)(h / gs) * hd + c]);
    }
}

/* (NH, A, hd) <-> (A, NH, hd), with a type change. to_ah: (h, i) -> (i, h). */
template <typename S, typename D>
__global__ void permute_kernel(const S *src, D *dst, int A, int NH, int hd, int to_ah) {
    size_t n = (size_t)A * NH * hd;
    GRID_STRIDE(idx, n) {
        int c = (int)(idx % hd);
        size_t r = idx / hd; /* source row */
        size_t o;
        if (to_ah) { /* src (h, i) */
            int h = (int)(r / A), i = (int)(r % A);
            o = ((size_t)i * NH + h) * hd + c;
        } else { /* src (i, h) */
            int i = (int)(r / NH), h = (int)(r % NH);
            o = ((size_t)h * A + i) * hd + c;
        }
        st(dst, o, ld(src, idx));
    }
}

/* Online softmax state: m the running max, s the sum of exp(z - m). Merging
 * two is commutative bit for bit (IEEE addition is), so a butterfly leaves
 * the same pair in every lane. */
__device__ __forceinline__ void ms_merge(float &m, float &s, float m2, float s2) {
    float M = fmaxf(m, m2);
    if (M == -INFINITY) return; /* both empty */
    s = s * expf(m - M) + s2 * expf(m2 - M);
    m = M;
}
#define SOFTMAX_THREADS 1024

/* One block (1024 threads) per row (h, i), query position p = C + i:
 * z_j = full ? S[j] : Sm[j] (Sm NULL: S), masked for j > p; P = softmax(z)
 * into P (T, (NH, A, n)) and lse[row] = max + log(sum). One pass for the max
 * and the sum (online), one to write P: the rows a wave of blocks holds (2 a
 * multiprocessor, ~35 MB at 32K keys) stay in L2 for the second read. The
 * merges run in a fixed order: the same bits every run. */
template <typename T>
__global__ void __launch_bounds__(SOFTMAX_THREADS)
    softmax_kernel(const float *S, const float *Sm, T *P, float *lse, int A, int n, int C, int sink, int recent) {
    __shared__ float shm[32], shs[32];
    size_t row = blockIdx.x;
    int p = C + (int)(row % A), lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
    const float *s = S + row * n, *sm = Sm ? Sm + row * n : NULL;
    T *pr = P + row * n;
    float mx = -INFINITY, sum = 0.0f;
    for (int j = threadIdx.x; j <= p; j += SOFTMAX_THREADS) {
        float z = (sm && !full_key(j, p, sink, recent)) ? sm[j] : s[j];
        if (z > mx) {
            sum = sum * expf(mx - z) + 1.0f;
            mx = z;
        } else {
            sum += expf(z - mx);
        }
    }
    for (int o = 16; o; o >>= 1)
        ms_merge(mx, sum, __shfl_xor_sync(0xffffffffu, mx, o), __shfl_xor_sync(0xffffffffu, sum, o));
    if (lane == 0) shm[wid] = mx, shs[wid] = sum;
    __syncthreads();
    mx = shm[lane], sum = shs[lane]; /* every warp merges the 32 the same way */
    for (int o = 16; o; o >>= 1)
        ms_merge(mx, sum, __shfl_xor_sync(0xffffffffu, mx, o), __shfl_xor_sync(0xffffffffu, sum, o));
    float inv = 1.0f / sum;
    for (int j = threadIdx.x; j < n; j += SOFTMAX_THREADS) {
        float v = 0.0f;
        if (j <= p) {
            float z = (sm && !full_key(j, p, sink, recent)) ? sm[j] : s[j];
            v = expf(z - mx) * inv;
        }
        st(pr, j, v);
    }
    if (threadIdx.x == 0) lse[row] = mx + logf(sum);
}

/* Dv[row] = sum_c dO[row, c] O[row, c]; one warp per row. */
__global__ void rowdot_kernel(const float *dO, const float *O, float *Dv, int rows, int hd) {
    int w = (blockIdx.x * blockDim.x + threadIdx.x) >> 5, lane = threadIdx.x & 31;
    if (w >= rows) return;
    float s = 0.0f;
    for (int c = lane; c < hd; c += 32) s += dO[(size_t)w * hd + c] * O[(size_t)w * hd + c];
    for (int o = 16; o; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    if (lane == 0) Dv[w] = s;
}

/* One block per row (h, i): P from the saved lse, dZ = scale P (dP - Dv),
 * split into Zf (full keys) and Zm (middle keys), both T (NH, A, n), each
 * written only over the columns its product reads (key_cols: Zf [0, f1) and
 * [f2, n), Zm [m0, m1)); the answer columns (j >= C) of P, Zf and Zm also in
 * f32 (NH, A, A). */
template <typename T>
__global__ void dz_kernel(const float *S, const float *Sm, const float *dP, const float *lse, const float *Dv,
                          T *Zf, T *Zm, float *Pa, float *Zfa, float *Zma, int A, int n, int C, int sink,
                          int recent, float scale, int f1, int f2, int m0, int m1) {
    size_t row = blockIdx.x;
    int p = C + (int)(row % A);
    float l = lse[row], d = Dv[row];
    const float *s = S + row * n, *sm = Sm + row * n, *dp = dP + row * n;
    for (int j = threadIdx.x; j < n; j += 256) {
        float pv = 0.0f, zf = 0.0f, zm = 0.0f;
        if (j <= p) {
            bool f = full_key(j, p, sink, recent);
            pv = expf((f ? s[j] : sm[j]) - l);
            float dz = scale * pv * (dp[j] - d);
            if (f) zf = dz;
            else zm = dz;
        }
        if (j < f1 || j >= f2) st(Zf + row * n, j, zf); /* key_cols(): the columns read */
        if (j >= m0 && j < m1) st(Zm + row * n, j, zm);
        if (j >= C) {
            size_t o = row * A + (j - C);
            Pa[o] = pv;
            Zfa[o] = zf;
            Zma[o] = zm;
        }
    }
}

/* dq (A, NH, hd) = Gf + alpha[g] * Gm, from (NH, A, hd). */
__global__ void dq_kernel(const float *Gf, const float *Gm, const float *alpha, float *dq, int A, int NH, int gs,
                          int hd) {
    size_t n = (size_t)A * NH * hd;
    GRID_STRIDE(idx, n) {
        int c = (int)(idx % hd);
        size_t r = idx / hd;
        int h = (int)(r / A), i = (int)(r % A);
        dq[((size_t)i * NH + h) * hd + c] = Gf[idx] + alpha[(size_t)(h / gs) * hd + c] * Gm[idx];
    }
}

/* dalpha (G, hd) = sum over the gs * A rows of group g of q * Gm (fixed order). */
__global__ void dalpha_kernel(const float *qf, const float *Gm, float *dalpha, int A, int G, int gs, int hd) {
    int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= G * hd) return;
    int g = t / hd, c = t % hd;
    float s = 0.0f;
    for (int r = 0; r < gs * A; r++) {
        size_t o = ((size_t)g * gs * A + r) * hd + c;
        s += qf[o] * Gm[o];
    }
    dalpha[t] = s;
}

/* The answer keys' gradients (A, G, hd): dk_j = sum over the group's rows of
 * Zf[., j] q + Zm[., j] (alpha q); dv_j = sum of P[., j] dO. */
__global__ void dkv_ans_kernel(const float *Pa, const float *Zfa, const float *Zma, const float *qf,
                               const float *dOf, const float *alpha, float *dk, float *dv, int A, int G, int gs,
                               int hd) {
    int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= A * G * hd) return;
    int c = t % hd, g = t / hd % G, j = t / (hd * G);
    float a = alpha[(size_t)g * hd + c], sk = 0.0f, sv = 0.0f;
    for (int r = 0; r < gs * A; r++) {
        size_t row = (size_t)g * gs * A + r, o = row * A + j, oq = row * hd + c;
        sk += (Zfa[o] + Zma[o] * a) * qf[oq];
        sv += Pa[o] * dOf[oq];
    }
    dk[t] = sk;
    dv[t] = sv;
}

/* dqkv (A, NH*hd + 2 G*hd) in T: dq and dk rotated back (RoPE's transpose:
 * the angle's sine negated) at positions pos0 + i, dv copied. */
template <typename T>
__global__ void rope_back_pack_kernel(const float *dq, const float *dk, const float *dv, T *dqkv,
                                      const float *cosb, const float *sinb, int pos0, int A, int NH, int G,
                                      int hd) {
    int half = hd / 2, W = (NH + 2 * G) * hd;
    size_t n = (size_t)A * (NH + G) * half;
    GRID_STRIDE(idx, n) {
        int k = (int)(idx % half), hh = (int)(idx / half % (NH + G)), i = (int)(idx / ((size_t)half * (NH + G)));
        const float *src = hh < NH ? dq + ((size_t)i * NH + hh) * hd : dk + ((size_t)i * G + hh - NH) * hd;
        float cs = cosb[(size_t)(pos0 + i) * half + k], sn = sinb[(size_t)(pos0 + i) * half + k];
        float a = src[k], b = src[k + half];
        T *row = dqkv + (size_t)i * W + (size_t)hh * hd;
        st(row, k, a * cs + b * sn);
        st(row, k + half, b * cs - a * sn);
    }
    size_t nv = (size_t)A * G * hd;
    GRID_STRIDE(idx, nv) {
        int i = (int)(idx / ((size_t)G * hd));
        st(dqkv + (size_t)i * W + (size_t)(NH + G) * hd, idx % ((size_t)G * hd), dv[idx]);
    }
}

/* dgu (A, 2F) in T from gu (A, 2F) and dh (A, F): silu(g) u backward. */
template <typename T>
__global__ void swiglu_back_kernel(const T *gu, const float *dh, T *dgu, int A, int F) {
    size_t n = (size_t)A * F;
    GRID_STRIDE(idx, n) {
        size_t i = idx / F, f = idx % F;
        float g = ld(gu, i * 2 * F + f), u = ld(gu, i * 2 * F + F + f), d = dh[idx];
        float sg = 1.0f / (1.0f + expf(-g));
        st(dgu, i * 2 * F + f, d * u * sg * (1.0f + g * (1.0f - sg)));
        st(dgu, i * 2 * F + F + f, d * g * sg);
    }
}

/* dx[row] += r w dy - r^3 x sum(x w dy) / d, r = 1/sqrt(mean(x^2) + eps);
 * one block (256) per row. */
template <typename T>
__global__ void rmsnorm_back_kernel(float *dx, const float *dy, const float *x, const T *w, int d, float eps) {
    __shared__ float sh[256];
    size_t row = blockIdx.x;
    const float *xr = x + row * d, *dyr = dy + row * d;
    float ss = 0.0f, dot = 0.0f;
    for (int k = threadIdx.x; k < d; k += 256) {
        ss += xr[k] * xr[k];
        dot += xr[k] * ld(w, k) * dyr[k];
    }
    ss = block_reduce256(ss, sh, SumOp());
    dot = block_reduce256(dot, sh, SumOp());
    float r = rsqrtf(ss / d + eps), c = r * r * r * dot / d;
    for (int k = threadIdx.x; k < d; k += 256) dx[row * d + k] += r * ld(w, k) * dyr[k] - c * xr[k];
}

/* loss = sum (hp - hf)^2 / n (double, one block, fixed order); dh = 2 (hp - hf) / n. */
__global__ void loss_kernel(const float *hp, const float *hf, double *loss, float *dh, size_t n) {
    __shared__ double sh[256];
    double s = 0.0;
    for (size_t i = threadIdx.x; i < n; i += 256) {
        float d = hp[i] - hf[i];
        s += (double)d * d;
        if (dh) dh[i] = (float)(2.0 * d / (double)n);
    }
    s = block_reduce256(s, sh, SumOp());
    if (threadIdx.x == 0) *loss = s / (double)n;
}

/* Norm method statistics of one layer, in two fixed-order stages (the key
 * sum runs over up to the whole context). Stage 1, grid (G*hd/32 rounded up,
 * NSPLIT): block (x, y) sums |k| over its share of the middle keys j0 <= j
 * < j1 of K (n, G, hd) for 32 channels, 8 key lanes a channel, into
 * part[y][G*hd]. Stage 2 (one thread per channel): qabs = mean |q| over the
 * group's answer queries (qf (NH, A, hd)), kabs = the parts summed in order
 * over the middle keys' count. */
#define NSPLIT 64
template <typename T>
__global__ void kabs_part_kernel(const T *K, double *part, int GH, int j0, int j1) {
    __shared__ double sh[8][32];
    int c = blockIdx.x * 32 + (threadIdx.x & 31), lane = threadIdx.x >> 5;
    int span = (j1 - j0 + NSPLIT - 1) / NSPLIT, a = j0 + blockIdx.y * span, b = min(j1, a + span);
    double s = 0.0;
    if (c < GH)
        for (int j = a + lane; j < b; j += 8) s += fabs((double)ld(K, (size_t)j * GH + c));
    sh[lane][threadIdx.x & 31] = s;
    __syncthreads();
    if (lane == 0 && c < GH) {
        double t = 0.0;
        for (int k = 0; k < 8; k++) t += sh[k][threadIdx.x];
        part[(size_t)blockIdx.y * GH + c] = t;
    }
}
__global__ void norm_stats_kernel(const float *qf, const double *part, double *qabs, double *kabs, int A, int G,
                                  int gs, int hd, int nmid) {
    int t = blockIdx.x * blockDim.x + threadIdx.x, GH = G * hd;
    if (t >= GH) return;
    int g = t / hd, c = t % hd;
    double sq = 0.0, sk = 0.0;
    for (int r = 0; r < gs * A; r++) sq += fabs((double)qf[((size_t)g * gs * A + r) * hd + c]);
    for (int y = 0; y < NSPLIT; y++) sk += part[(size_t)y * GH + t];
    qabs[t] = sq / ((double)A * gs);
    kabs[t] = nmid > 0 ? sk / nmid : 0.0;
}

/* ------------------------------------------------------------ the backend */

/* What the backward needs of one layer (pruned pass). */
typedef struct {
    float *x_in, *x_mid; /* (A, D) */
    void *gu;            /* (A, 2F) T */
    void *qt, *qa;       /* (NH, A, hd) T */
    float *qf, *o;       /* (NH, A, hd) */
    float *lse;          /* (NH, A) */
    void *kans, *vans;   /* (A, KD) T: this pass's answer keys and values */
} saved;

typedef struct {
    lk_engine *e;
    int own;
    lk_cuda_view v;
    cudaStream_t st;
    cublasHandle_t blas;
    int dt;
    size_t es;
    cudaDataType_t ct;
    int L, D, F, NH, G, gs, hd, QD, KD, W, vocab;
    float eps, scale;
    int sink, recent;
    /* the sample */
    lk_seq *seq;
    int n, C, A;
    lk_kv_batch_dev kv;
    const lk_kv_plan_dev *plan;
    /* device memory: one allocation, cut at sizes for cap_n keys, cap_A rows */
    void *mem;
    size_t mem_bytes;
    int cap_n, cap_A;
    int *ids;                                  /* (A) */
    float *x0, *x, *h_full, *h_p, *dh;         /* (A, D) */
    void *xb, *qkv, *q, *att, *delta, *gu, *hb; /* T: (A, D), (A, W), (A, QD), (A, QD), (A, D), (A, 2F), (A, F) */
    void *Kb, *Vb;                             /* (n, KD) T: a layer's keys and values */
    float *S, *Sm, *dP;                        /* (NH, A, n) */
    void *Pz, *Zm;                             /* (NH, A, n) T: P (forward), dZ full / middle (backward) */
    void *qt, *qa;                             /* (NH, A, hd) T (dense pass) */
    float *qf, *O, *Gf, *Gm, *dOf;             /* (NH, A, hd) */
    void *dOt;                                 /* (NH, A, hd) T */
    float *lse, *Dv;                           /* (NH, A) */
    float *Pa, *Zfa, *Zma;                     /* (NH, A, A) */
    float *dx, *dxm, *dxn;                     /* (A, D) */
    void *dxt;                                 /* (A, D) T */
    float *dhid;                               /* (A, F) */
    void *dgu;                                 /* (A, 2F) T */
    float *datt, *dq;                          /* (A, QD) */
    float *dk, *dv;                            /* (A, KD) */
    void *dqkv;                                /* (A, W) T */
    float *alpha, *dalpha;                     /* (L, G, hd) */
    double *qabs, *kabs;                       /* (L, G, hd) */
    double *kpart;                             /* (NSPLIT, G, hd) */
    double *loss;                              /* (1) */
    float *final_w;                            /* (D) f32 copy of the final norm weight */
    saved *sv;                                 /* (L) */
    /* host */
    float *h_alpha;                            /* (L, G, hd) */
    double h_loss;
    double times[4];                           /* prefill, dense rows, pruned rows, backward (s) */
    int have_stats;                            /* qabs/kabs hold this sample's norm statistics */
    int want_stats;                            /* norm_stats was called: prepare computes them from now on */
} tr_ctx;

static size_t al(size_t n) { return (n + 255) / 256 * 256; }

/* Bytes of the trainer's device memory for n keys and A answer rows; with
 * base, also points every buffer into base. */
static size_t layout(tr_ctx *t, int n, int A, char *base) {
    size_t o = 0, es = t->es, D = t->D, F = t->F, QD = t->QD, KD = t->KD, W = t->W;
    size_t NAn = (size_t)t->NH * A * n, NAh = (size_t)t->NH * A * t->hd, LGh = (size_t)t->L * t->G * t->hd;
#define TAKE(p, bytes)                                      \
    do {                                                    \
        if (base) *(void **)&(p) = base + o;                \
        o += al(bytes);                                     \
    } while (0)
    TAKE(t->ids, A * sizeof(int));
    TAKE(t->x0, A * D * 4);
    TAKE(t->x, A * D * 4);
    TAKE(t->h_full, A * D * 4);
    TAKE(t->h_p, A * D * 4);
    TAKE(t->dh, A * D * 4);
    TAKE(t->xb, A * D * es);
    TAKE(t->qkv, A * W * es);
    TAKE(t->q, A * QD * es);
    TAKE(t->att, A * QD * es);
    TAKE(t->delta, A * D * es);
    TAKE(t->gu, A * 2 * F * es);
    TAKE(t->hb, A * F * es);
    TAKE(t->Kb, (size_t)n * KD * es);
    TAKE(t->Vb, (size_t)n * KD * es);
    TAKE(t->S, NAn * 4);
    TAKE(t->Sm, NAn * 4);
    TAKE(t->dP, NAn * 4);
    TAKE(t->Pz, NAn * es);
    TAKE(t->Zm, NAn * es);
    TAKE(t->qt, NAh * es);
    TAKE(t->qa, NAh * es);
    TAKE(t->qf, NAh * 4);
    TAKE(t->O, NAh * 4);
    TAKE(t->Gf, NAh * 4);
    TAKE(t->Gm, NAh * 4);
    TAKE(t->dOf, NAh * 4);
    TAKE(t->dOt, NAh * es);
    TAKE(t->lse, (size_t)t->NH * A * 4);
    TAKE(t->Dv, (size_t)t->NH * A * 4);
    TAKE(t->Pa, (size_t)t->NH * A * A * 4);
    TAKE(t->Zfa, (size_t)t->NH * A * A * 4);
    TAKE(t->Zma, (size_t)t->NH * A * A * 4);
    TAKE(t->dx, A * D * 4);
    TAKE(t->dxm, A * D * 4);
    TAKE(t->dxn, A * D * 4);
    TAKE(t->dxt, A * D * es);
    TAKE(t->dhid, A * F * 4);
    TAKE(t->dgu, A * 2 * F * es);
    TAKE(t->datt, A * QD * 4);
    TAKE(t->dq, A * QD * 4);
    TAKE(t->dk, A * KD * 4);
    TAKE(t->dv, A * KD * 4);
    TAKE(t->dqkv, A * W * es);
    TAKE(t->alpha, LGh * 4);
    TAKE(t->dalpha, LGh * 4);
    TAKE(t->qabs, LGh * 8);
    TAKE(t->kabs, LGh * 8);
    TAKE(t->kpart, (size_t)NSPLIT * t->G * t->hd * 8);
    TAKE(t->loss, 8);
    TAKE(t->final_w, D * 4);
    for (int l = 0; l < t->L; l++) {
        saved *s = base ? &t->sv[l] : NULL;
        saved dummy;
        if (!s) s = &dummy;
        TAKE(s->x_in, A * D * 4);
        TAKE(s->x_mid, A * D * 4);
        TAKE(s->gu, A * 2 * F * es);
        TAKE(s->qt, NAh * es);
        TAKE(s->qa, NAh * es);
        TAKE(s->qf, NAh * 4);
        TAKE(s->o, NAh * 4);
        TAKE(s->lse, (size_t)t->NH * A * 4);
        TAKE(s->kans, A * KD * es);
        TAKE(s->vans, A * KD * es);
    }
#undef TAKE
    return o;
}

static char *human(char *buf, size_t n, double bytes) { return (char *)lk_human_bytes(buf, n, bytes); }

/* Device memory for a sample of n tokens, A of them answer rows: the engine's
 * pool grown to one dense sequence of n positions, the trainer's buffers to
 * n keys and A rows. Refused before anything is allocated when it cannot fit. */
static int fit(tr_ctx *t, int n, int A, lk_err *err) {
    size_t want_pool = lk_engine_seq_bytes(t->e, NULL, n);
    lk_engine_mem m;
    lk_engine_memory(t->e, &m);
    int grow_pool = want_pool > m.pool, grow_mem = n > t->cap_n || A > t->cap_A;
    if (!grow_pool && !grow_mem) return 0;
    int nn = n > t->cap_n ? n : t->cap_n, aa = A > t->cap_A ? A : t->cap_A;
    size_t want_mem = layout(t, nn, aa, NULL);
    size_t fr = 0, tot = 0;
    CU(cudaMemGetInfo(&fr, &tot));
    size_t have = fr + (grow_pool ? m.pool : 0) + (grow_mem ? t->mem_bytes : 0);
    size_t need = (grow_pool ? want_pool : 0) + (grow_mem ? want_mem : 0);
    if (need + ((size_t)64 << 20) > have) {
        char a[32], b[32], c[32], d[32];
        return lk_seterr(err, LK_ENOMEM,
                         "cuda train: a sample of %d tokens (%d answer rows) needs %s of KV cache and %s of "
                         "training buffers; %s is free on %s beside the %s of weights (shorter samples, or "
                         "fewer answer tokens)",
                         n, A, human(a, sizeof a, (double)want_pool), human(b, sizeof b, (double)want_mem),
                         human(c, sizeof c, (double)have), lk_engine_device_name(t->e),
                         human(d, sizeof d, (double)m.weights));
    }
    if (grow_pool) TRY(lk_engine_pool_resize(t->e, want_pool, err));
    if (grow_mem) {
        CU(cudaStreamSynchronize(t->st));
        if (t->mem) cudaFree(t->mem);
        t->mem = NULL;
        t->mem_bytes = 0;
        t->cap_n = t->cap_A = 0;
        CU(cudaMalloc(&t->mem, want_mem));
        t->mem_bytes = want_mem;
        t->cap_n = nn;
        t->cap_A = aa;
        layout(t, nn, aa, (char *)t->mem);
        KR(lk_op_convert(LK_OP_F32, t->final_w, t->dt, t->v.final_norm, (size_t)t->D, t->st));
    }
    return 0;
}

/* ---- products (cuBLAS, column-major views of row-major arrays) ---- */

/* out (M, N) = x (M, K) w^T; x, w in T; out T or f32 (ot). */
static int lin(tr_ctx *t, void *out, cudaDataType_t ot, const void *x, const void *w, int M, int N, int K,
               lk_err *err) {
    const float one = 1.0f, zero = 0.0f;
    BL(cublasGemmEx(t->blas, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &one, w, t->ct, K, x, t->ct, K, &zero, out, ot, N,
                    CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    return 0;
}

/* dx (M, in) f32 = dy (M, out) w (out, in); dy, w in T. */
static int lin_back(tr_ctx *t, float *dx, const void *dy, const void *w, int M, int in, int out, lk_err *err) {
    const float one = 1.0f, zero = 0.0f;
    BL(cublasGemmEx(t->blas, CUBLAS_OP_N, CUBLAS_OP_N, in, M, out, &one, w, t->ct, in, dy, t->ct, out, &zero, dx,
                    CUDA_R_32F, in, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    return 0;
}

/* Scores of every group over keys j0 .. j1-1: S[., j] (NH, A, n) f32 = scale
 * * Q (NH, A, hd) K^T with K (n, G, hd); the gs heads of group g are rows
 * g*gs*A .. of Q. Other columns of S are left as they were. */
static int scores(tr_ctx *t, float *S, const void *Q, const void *K, int j0, int j1, lk_err *err) {
    const float zero = 0.0f;
    int A = t->A, rows = t->gs * A, n = t->n;
    if (j1 <= j0) return 0;
    const char *Kj = (const char *)K + (size_t)j0 * t->KD * t->es;
    BL(cublasGemmStridedBatchedEx(t->blas, CUBLAS_OP_T, CUBLAS_OP_N, j1 - j0, rows, t->hd, &t->scale, Kj, t->ct,
                                  t->KD, t->hd, Q, t->ct, t->hd, (long long)rows * t->hd, &zero, S + j0, CUDA_R_32F,
                                  n, (long long)rows * n, t->G, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    return 0;
}

/* out (NH, A, hd) f32 = beta out + P[., j0..j1) (NH, A, n) X[j0..j1) (n, G, hd),
 * X the group's keys or values. */
static int mix(tr_ctx *t, float *out, const void *P, const void *X, int j0, int j1, float beta, lk_err *err) {
    const float one = 1.0f;
    int A = t->A, rows = t->gs * A, n = t->n;
    if (j1 <= j0) {
        if (beta == 0.0f) CU(cudaMemsetAsync(out, 0, (size_t)t->NH * A * t->hd * 4, t->st));
        return 0;
    }
    const char *Xj = (const char *)X + (size_t)j0 * t->KD * t->es, *Pj = (const char *)P + (size_t)j0 * t->es;
    BL(cublasGemmStridedBatchedEx(t->blas, CUBLAS_OP_N, CUBLAS_OP_N, t->hd, rows, j1 - j0, &one, Xj, t->ct, t->KD,
                                  t->hd, Pj, t->ct, n, (long long)rows * n, &beta, out, CUDA_R_32F, t->hd,
                                  (long long)rows * t->hd, t->G, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    return 0;
}

/* The keys some answer row (positions C .. n-1) sees in full: [0, f1) and
 * [f2, n), f1 <= f2 (f1 == f2: every key); in the middle (scaled): some of
 * [m0, m1). In a pruned pass the full score S (and Zf) is read only over
 * the first, the scaled Sm and Zm only over the second: at 32K keys the full
 * ones are sink + recent + A of them, so their products shrink thirty-fold. */
typedef struct {
    int f1, f2, m0, m1;
} key_split;
static key_split key_cols(const tr_ctx *t) {
    int n = t->n, sink = t->sink < n ? t->sink : n, lo = t->C - t->recent + 1;
    key_split k = {sink, lo > sink ? (lo < n ? lo : n) : sink, sink, n - t->recent > sink ? n - t->recent : sink};
    return k;
}

/* A pruned pass's scores: S = scale qt K^T over the full keys, Sm = scale qa K^T
 * over the middle ones (the rest of each is never read). */
static int pruned_scores(tr_ctx *t, const void *qt, const void *qa, key_split k, lk_err *err) {
    TRY(scores(t, t->S, qt, t->Kb, 0, k.f1, err));
    TRY(scores(t, t->S, qt, t->Kb, k.f2, t->n, err));
    return scores(t, t->Sm, qa, t->Kb, k.m0, k.m1, err);
}

/* dP (NH, A, n) f32 = dO (NH, A, hd) V^T (the scores' product, without the scale). */
static int dprobs(tr_ctx *t, float *dP, const void *dO, const void *V, int n, lk_err *err) {
    const float one = 1.0f, zero = 0.0f;
    int A = t->A, rows = t->gs * A;
    BL(cublasGemmStridedBatchedEx(t->blas, CUBLAS_OP_T, CUBLAS_OP_N, n, rows, t->hd, &one, V, t->ct, t->KD, t->hd,
                                  dO, t->ct, t->hd, (long long)rows * t->hd, &zero, dP, CUDA_R_32F, n,
                                  (long long)rows * n, t->G, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    return 0;
}

/* ---- launch helpers over the two element types ---- */

#define BY_TYPE(f, ...)                                                                          \
    do {                                                                                         \
        if (t->dt == LK_OP_F32) f<float>(__VA_ARGS__);                                           \
        else f<__nv_bfloat16>(__VA_ARGS__);                                                      \
    } while (0)

template <typename T>
static void launch_q_in(tr_ctx *t, const void *q, const float *alpha, void *qt, void *qa, float *qf) {
    size_t n = (size_t)t->A * t->NH * t->hd;
    q_in_kernel<T><<<grid_for(n), 256, 0, t->st>>>((const T *)q, alpha, (T *)qt, (T *)qa, qf, t->A, t->NH, t->gs,
                                                   t->hd);
}
template <typename T>
static void launch_softmax(tr_ctx *t, const float *Sm, float *lse) {
    softmax_kernel<T><<<t->NH * t->A, SOFTMAX_THREADS, 0, t->st>>>(t->S, Sm, (T *)t->Pz, lse, t->A, t->n, t->C,
                                                                  t->sink, t->recent);
}
template <typename T>
static void launch_o_out(tr_ctx *t, const float *O) {
    size_t n = (size_t)t->A * t->NH * t->hd;
    permute_kernel<float, T><<<grid_for(n), 256, 0, t->st>>>(O, (T *)t->att, t->A, t->NH, t->hd, 1);
}
template <typename T>
static void launch_dz(tr_ctx *t, const float *lse, key_split k) {
    dz_kernel<T><<<t->NH * t->A, 256, 0, t->st>>>(t->S, t->Sm, t->dP, lse, t->Dv, (T *)t->Pz, (T *)t->Zm, t->Pa,
                                                 t->Zfa, t->Zma, t->A, t->n, t->C, t->sink, t->recent, t->scale,
                                                 k.f1, k.f2, k.m0, k.m1);
}
template <typename T>
static void launch_rope_back(tr_ctx *t) {
    size_t n = (size_t)t->A * (t->NH + t->G) * (t->hd / 2);
    rope_back_pack_kernel<T><<<grid_for(n), 256, 0, t->st>>>(t->dq, t->dk, t->dv, (T *)t->dqkv, t->v.rope_cos,
                                                             t->v.rope_sin, t->C, t->A, t->NH, t->G, t->hd);
}
template <typename T>
static void launch_swiglu_back(tr_ctx *t, const void *gu) {
    size_t n = (size_t)t->A * t->F;
    swiglu_back_kernel<T><<<grid_for(n), 256, 0, t->st>>>((const T *)gu, t->dhid, (T *)t->dgu, t->A, t->F);
}
template <typename T>
static void launch_rms_back(tr_ctx *t, float *dx, const float *dy, const float *x, const void *w) {
    rmsnorm_back_kernel<T><<<t->A, 256, 0, t->st>>>(dx, dy, x, (const T *)w, t->D, t->eps);
}
template <typename T>
static void launch_norm_stats(tr_ctx *t, int l) {
    int GH = t->G * t->hd, j0 = t->sink, j1 = t->n - t->recent;
    if (j1 < j0) j1 = j0;
    size_t o = (size_t)l * GH;
    kabs_part_kernel<T><<<dim3((GH + 31) / 32, NSPLIT), 256, 0, t->st>>>((const T *)t->Kb, t->kpart, GH, j0, j1);
    norm_stats_kernel<<<(GH + 255) / 256, 256, 0, t->st>>>(t->qf, t->kpart, t->qabs + o, t->kabs + o, t->A, t->G,
                                                          t->gs, t->hd, j1 - j0);
}

/* x (f32) -> out in T (the GEMM input type); f32 models use x itself. */
static const void *as_t(tr_ctx *t, const float *x, void *buf, size_t n, lk_err *err) {
    if (t->dt == LK_OP_F32) return x;
    int r = lk_op_convert(t->dt, buf, LK_OP_F32, x, n, t->st);
    if (r) {
        lk_seterr(err, LK_EDEVICE, "%s:%d: lk_op_convert: %s", __FILE__, __LINE__, cudaGetErrorString((cudaError_t)r));
        return NULL;
    }
    return buf;
}

/* Keys and values of layer l for the n positions into Kb, Vb: the context's
 * from the engine's cache, the answer rows' (when ans_k) from a saved pass. */
static int layer_kv(tr_ctx *t, int l, const void *ans_k, const void *ans_v, lk_err *err) {
    KR(lk_cuda_kv_gather((lk_kv_dtype)t->dt, t->Kb, t->Vb, t->plan, &t->kv, l, t->C, t->st));
    if (ans_k) {
        size_t off = (size_t)t->C * t->KD * t->es, b = (size_t)t->A * t->KD * t->es;
        CU(cudaMemcpyAsync((char *)t->Kb + off, ans_k, b, cudaMemcpyDeviceToDevice, t->st));
        CU(cudaMemcpyAsync((char *)t->Vb + off, ans_v, b, cudaMemcpyDeviceToDevice, t->st));
    }
    return 0;
}

/* The answer rows through every layer (x0 -> x), then the final norm into h
 * (f32). alpha: device (L, G, hd) or NULL (dense). keep: save for the
 * backward (pruned pass). stats: the norm method's statistics (dense pass). */
static int forward(tr_ctx *t, const float *alpha, int keep, int stats, float *h, lk_err *err) {
    int A = t->A, D = t->D, F = t->F;
    size_t es = t->es, LG = (size_t)t->G * t->hd;
    CU(cudaMemcpyAsync(t->x, t->x0, (size_t)A * D * 4, cudaMemcpyDeviceToDevice, t->st));
    for (int l = 0; l < t->L; l++) {
        const lk_cuda_layer_view *w = &t->v.layers[l];
        saved *s = keep ? &t->sv[l] : NULL;
        if (l > 0) KR(lk_op_rmsnorm(t->dt, NULL, t->x, t->delta, NULL, A, D, t->eps, t->st));
        if (s) CU(cudaMemcpyAsync(s->x_in, t->x, (size_t)A * D * 4, cudaMemcpyDeviceToDevice, t->st));
        KR(lk_op_rmsnorm(t->dt, t->xb, t->x, NULL, w->attn_norm, A, D, t->eps, t->st));
        TRY(lin(t, t->qkv, t->ct, t->xb, w->wqkv, A, t->W, D, err));
        /* the context's keys and values, then this pass's answer rows after them */
        TRY(layer_kv(t, l, NULL, NULL, err));
        char *kans = (char *)t->Kb + (size_t)t->C * t->KD * es, *vans = (char *)t->Vb + (size_t)t->C * t->KD * es;
        KR(lk_op_qkv_rope(t->dt, t->qkv, w->bqkv, t->q, kans, vans, t->v.rope_cos, t->v.rope_sin, NULL, t->C, A,
                          t->NH, t->G, t->hd, t->st));
        if (s) {
            CU(cudaMemcpyAsync(s->kans, kans, (size_t)A * t->KD * es, cudaMemcpyDeviceToDevice, t->st));
            CU(cudaMemcpyAsync(s->vans, vans, (size_t)A * t->KD * es, cudaMemcpyDeviceToDevice, t->st));
        }
        /* attention */
        void *qt = s ? s->qt : t->qt, *qa = s ? s->qa : t->qa;
        float *qf = s ? s->qf : t->qf, *lse = s ? s->lse : t->lse, *O = s ? s->o : t->O;
        const float *al_l = alpha ? alpha + l * LG : NULL;
        BY_TYPE(launch_q_in, t, t->q, al_l, qt, al_l ? qa : NULL, qf);
        LAUNCHED();
        if (stats) { /* the dense pass: qf is t->qf */
            BY_TYPE(launch_norm_stats, t, l);
            LAUNCHED();
        }
        if (al_l) TRY(pruned_scores(t, qt, qa, key_cols(t), err));
        else TRY(scores(t, t->S, qt, t->Kb, 0, t->n, err));
        BY_TYPE(launch_softmax, t, al_l ? t->Sm : NULL, lse);
        LAUNCHED();
        TRY(mix(t, O, t->Pz, t->Vb, 0, t->n, 0.0f, err));
        BY_TYPE(launch_o_out, t, O);
        LAUNCHED();
        /* x += att Wo^T; MLP */
        TRY(lin(t, t->delta, t->ct, t->att, w->wo, A, D, t->QD, err));
        KR(lk_op_rmsnorm(t->dt, t->xb, t->x, t->delta, w->ffn_norm, A, D, t->eps, t->st));
        if (s) CU(cudaMemcpyAsync(s->x_mid, t->x, (size_t)A * D * 4, cudaMemcpyDeviceToDevice, t->st));
        void *gu = s ? s->gu : t->gu;
        TRY(lin(t, gu, t->ct, t->xb, w->wgu, A, 2 * F, D, err));
        KR(lk_op_swiglu(t->dt, t->hb, gu, A, F, t->st));
        TRY(lin(t, t->delta, t->ct, t->hb, w->wd, A, D, F, err));
    }
    KR(lk_op_rmsnorm(t->dt, NULL, t->x, t->delta, NULL, A, D, t->eps, t->st));
    KR(lk_op_rmsnorm(LK_OP_F32, h, t->x, NULL, t->final_w, A, D, t->eps, t->st));
    return 0;
}

/* Backward of layer l: t->dx = dL/d(layer output) -> dL/d(layer input);
 * dalpha of the layer into t->dalpha. */
static int layer_back(tr_ctx *t, int l, lk_err *err) {
    const lk_cuda_layer_view *w = &t->v.layers[l];
    const saved *s = &t->sv[l];
    int A = t->A, D = t->D, F = t->F, NH = t->NH, hd = t->hd;
    size_t LG = (size_t)t->G * hd, NAh = (size_t)NH * A * hd;
    const float *al_l = t->alpha + l * LG;
    const void *g;
    /* MLP */
    if (!(g = as_t(t, t->dx, t->dxt, (size_t)A * D, err))) return err->code;
    TRY(lin_back(t, t->dhid, g, w->wd, A, F, D, err));
    BY_TYPE(launch_swiglu_back, t, s->gu);
    LAUNCHED();
    TRY(lin_back(t, t->dxn, t->dgu, w->wgu, A, D, 2 * F, err));
    CU(cudaMemcpyAsync(t->dxm, t->dx, (size_t)A * D * 4, cudaMemcpyDeviceToDevice, t->st));
    BY_TYPE(launch_rms_back, t, t->dxm, t->dxn, s->x_mid, w->ffn_norm);
    LAUNCHED();
    /* attention output */
    if (!(g = as_t(t, t->dxm, t->dxt, (size_t)A * D, err))) return err->code;
    TRY(lin_back(t, t->datt, g, w->wo, A, t->QD, D, err));
    permute_kernel<float, float><<<grid_for(NAh), 256, 0, t->st>>>(t->datt, t->dOf, A, NH, hd, 0);
    LAUNCHED();
    if (t->dt == LK_OP_F32) CU(cudaMemcpyAsync(t->dOt, t->dOf, NAh * 4, cudaMemcpyDeviceToDevice, t->st));
    else KR(lk_op_convert(t->dt, t->dOt, LK_OP_F32, t->dOf, NAh, t->st));
    rowdot_kernel<<<(NH * A * 32 + 255) / 256, 256, 0, t->st>>>(t->dOf, s->o, t->Dv, NH * A, hd);
    LAUNCHED();
    /* scores again, their gradient, and the query's */
    TRY(layer_kv(t, l, s->kans, s->vans, err));
    const key_split k = key_cols(t);
    TRY(pruned_scores(t, s->qt, s->qa, k, err));
    TRY(dprobs(t, t->dP, t->dOt, t->Vb, t->n, err));
    BY_TYPE(launch_dz, t, s->lse, k);
    LAUNCHED();
    TRY(mix(t, t->Gf, t->Pz, t->Kb, 0, k.f1, 0.0f, err)); /* Zf is zero past the full keys */
    TRY(mix(t, t->Gf, t->Pz, t->Kb, k.f2, t->n, k.f1 > 0 ? 1.0f : 0.0f, err));
    TRY(mix(t, t->Gm, t->Zm, t->Kb, k.m0, k.m1, 0.0f, err)); /* Zm past the middle ones */
    dq_kernel<<<grid_for(NAh), 256, 0, t->st>>>(t->Gf, t->Gm, al_l, t->dq, A, NH, t->gs, hd);
    LAUNCHED();
    dalpha_kernel<<<(int)((LG + 255) / 256), 256, 0, t->st>>>(s->qf, t->Gm, t->dalpha + l * LG, A, t->G, t->gs, hd);
    LAUNCHED();
    dkv_ans_kernel<<<(int)((A * LG + 255) / 256), 256, 0, t->st>>>(t->Pa, t->Zfa, t->Zma, s->qf, t->dOf, al_l,
                                                                   t->dk, t->dv, A, t->G, t->gs, hd);
    LAUNCHED();
    BY_TYPE(launch_rope_back, t);
    LAUNCHED();
    /* projections and the attention norm */
    TRY(lin_back(t, t->dxn, t->dqkv, w->wqkv, A, D, t->W, err));
    CU(cudaMemcpyAsync(t->dx, t->dxm, (size_t)A * D * 4, cudaMemcpyDeviceToDevice, t->st));
    BY_TYPE(launch_rms_back, t, t->dx, t->dxn, s->x_in, w->attn_norm);
    LAUNCHED();
    return 0;
}

/* ---- backend entry points ---- */

static int tr_prepare(void *ctx, const int *tokens, int n, int C, lk_err *err) {
    tr_ctx *t = (tr_ctx *)ctx;
    if (C < 1 || n <= C)
        return lk_seterr(err, LK_EINPUT, "sample of %d tokens with context %d: need a context "
                         "and at least one answer token", n, C);
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= t->vocab)
            return lk_seterr(err, LK_EINPUT, "token %d at position %d is outside the model's "
                             "vocabulary (%d)", tokens[i], i, t->vocab);
    if (t->seq) lk_seq_free(t->seq);
    t->seq = NULL;
    t->A = 0;
    TRY(fit(t, n, n - C, err));
    lk_seq_opts so;
    memset(&so, 0, sizeof so);
    so.max_len = n; /* RoPE tables up to the answer's last position */
    so.sampling.top_p = 1.0f;
    so.kv_only = 1; /* only the cache is read: the last layer's attention and MLP are skipped */
    TRY(lk_seq_new(t->e, &t->seq, &so, err));
    double t0 = lk_now();
    TRY(lk_engine_prefill(t->e, t->seq, tokens, C, err)); /* returns once the prefill has run */
    double t1 = lk_now();
    TRY(lk_cuda_engine_view(t->e, &t->v, err)); /* the RoPE tables may have moved */
    TRY(lk_cuda_seq_layout(t->e, t->seq, &t->kv, &t->plan, err));
    t->n = n;
    t->C = C;
    t->A = n - C;
    CU(cudaMemcpyAsync(t->ids, tokens + C, (size_t)t->A * sizeof(int), cudaMemcpyHostToDevice, t->st));
    KR(lk_op_embed(t->dt, t->x0, t->v.embed, t->ids, t->A, t->D, t->st));
    /* the norm statistics only for a caller that reads them (the norm method; training never
     * does): tr_norm_stats's first call turns them on, and computes its sample's itself */
    t->have_stats = t->want_stats;
    TRY(forward(t, NULL, 0, t->want_stats, t->h_full, err));
    CU(cudaStreamSynchronize(t->st));
    t->times[0] = t1 - t0;
    t->times[1] = lk_now() - t1;
    return 0;
}

static int tr_loss_grad(void *ctx, const double *alpha, double *loss, double *grad, lk_err *err) {
    tr_ctx *t = (tr_ctx *)ctx;
    if (!t->A) return lk_seterr(err, LK_EFAIL, "loss_grad before prepare");
    size_t na = (size_t)t->L * t->G * t->hd;
    for (size_t i = 0; i < na; i++) t->h_alpha[i] = (float)alpha[i];
    CU(cudaMemcpyAsync(t->alpha, t->h_alpha, na * 4, cudaMemcpyHostToDevice, t->st));
    double t0 = lk_now();
    TRY(forward(t, t->alpha, grad != NULL, 0, t->h_p, err));
    size_t nd = (size_t)t->A * t->D;
    loss_kernel<<<1, 256, 0, t->st>>>(t->h_p, t->h_full, t->loss, grad ? t->dh : NULL, nd);
    LAUNCHED();
    CU(cudaStreamSynchronize(t->st)); /* for the split of the times only */
    double t1 = lk_now();
    if (grad) {
        /* final norm: dx = its backward of dL/dh; x still holds the last layer's output */
        CU(cudaMemsetAsync(t->dx, 0, nd * 4, t->st));
        BY_TYPE(launch_rms_back, t, t->dx, t->dh, t->x, t->v.final_norm);
        LAUNCHED();
        for (int l = t->L - 1; l >= 0; l--) TRY(layer_back(t, l, err));
        CU(cudaMemcpyAsync(t->h_alpha, t->dalpha, na * 4, cudaMemcpyDeviceToHost, t->st));
    }
    CU(cudaMemcpyAsync(&t->h_loss, t->loss, sizeof(double), cudaMemcpyDeviceToHost, t->st));
    CU(cudaStreamSynchronize(t->st));
    t->times[2] = t1 - t0;
    t->times[3] = grad ? lk_now() - t1 : 0.0;
    *loss = t->h_loss;
    if (grad)
        for (size_t i = 0; i < na; i++) grad[i] = t->h_alpha[i];
    return 0;
}

static int tr_norm_stats(void *ctx, double *q_abs, double *k_abs, lk_err *err) {
    tr_ctx *t = (tr_ctx *)ctx;
    if (!t->A) return lk_seterr(err, LK_EFAIL, "norm_stats before prepare");
    t->want_stats = 1;
    if (!t->have_stats) { /* the first call: the dense pass again, with them (h_p: h_full stays) */
        TRY(forward(t, NULL, 0, 1, t->h_p, err));
        t->have_stats = 1;
    }
    size_t na = (size_t)t->L * t->G * t->hd;
    double *h = (double *)malloc(2 * na * sizeof(double));
    if (!h) return lk_seterr(err, LK_ENOMEM, "out of memory (norm statistics)");
    cudaError_t r = cudaMemcpyAsync(h, t->qabs, na * 8, cudaMemcpyDeviceToHost, t->st);
    if (r == cudaSuccess) r = cudaMemcpyAsync(h + na, t->kabs, na * 8, cudaMemcpyDeviceToHost, t->st);
    if (r == cudaSuccess) r = cudaStreamSynchronize(t->st);
    if (r != cudaSuccess) {
        free(h);
        return lk_seterr(err, LK_EDEVICE, "%s:%d: norm statistics: %s", __FILE__, __LINE__, cudaGetErrorString(r));
    }
    for (size_t i = 0; i < na; i++) {
        q_abs[i] += h[i];
        k_abs[i] += h[na + i];
    }
    free(h);
    return 0;
}

static void tr_times(void *ctx, double t[4]) { memcpy(t, ((tr_ctx *)ctx)->times, sizeof ((tr_ctx *)ctx)->times); }

static size_t tr_device_bytes(void *ctx) {
    tr_ctx *t = (tr_ctx *)ctx;
    lk_engine_mem m;
    lk_engine_memory(t->e, &m);
    return m.peak + t->mem_bytes;
}

static void tr_free(void *ctx) {
    tr_ctx *t = (tr_ctx *)ctx;
    if (!t) return;
    if (t->st) cudaStreamSynchronize(t->st);
    if (t->seq) lk_seq_free(t->seq);
    if (t->mem) cudaFree(t->mem);
    if (t->own && t->e) lk_engine_free(t->e);
    if (t->h_alpha) cudaFreeHost(t->h_alpha);
    free(t->sv);
    free(t);
}

extern "C" int lk_train_cuda_new(lk_train_backend *b, lk_engine *e, int own, int sink, int recent, lk_err *err) {
    lk_cuda_view v;
    TRY(lk_cuda_engine_view(e, &v, err));
    if (sink < 0 || recent < 1)
        return lk_seterr(err, LK_EUSAGE, "cuda train: sink %d, recent %d (expected sink >= 0, recent >= 1)", sink,
                         recent);
    tr_ctx *t = (tr_ctx *)calloc(1, sizeof *t);
    if (!t) return lk_seterr(err, LK_ENOMEM, "cuda train: out of host memory");
    t->e = e;
    t->v = v;
    t->st = (cudaStream_t)v.stream;
    t->blas = (cublasHandle_t)v.blas;
    t->dt = v.dt;
    t->es = lk_op_size(v.dt);
    t->ct = v.dt == LK_OP_F32 ? CUDA_R_32F : CUDA_R_16BF;
    t->L = v.n_layers;
    t->D = v.dim;
    t->F = v.hidden;
    t->NH = v.n_heads;
    t->G = v.n_kv_heads;
    t->gs = v.n_heads / v.n_kv_heads;
    t->hd = v.head_dim;
    t->QD = t->NH * t->hd;
    t->KD = t->G * t->hd;
    t->W = t->QD + 2 * t->KD;
    t->vocab = v.vocab;
    t->eps = v.eps;
    t->scale = v.scale;
    t->sink = sink;
    t->recent = recent;
    t->sv = (saved *)calloc(t->L, sizeof(saved));
    cudaError_t r = cudaSetDevice(v.device);
    if (r == cudaSuccess) r = cudaMallocHost((void **)&t->h_alpha, (size_t)t->L * t->G * t->hd * sizeof(float));
    if (!t->sv || r != cudaSuccess) {
        free(t->sv);
        free(t);
        return lk_seterr(err, LK_ENOMEM, "cuda train: out of host memory");
    }
    t->own = own;
    memset(b, 0, sizeof *b);
    b->name = "cuda";
    b->ctx = t;
    b->n_layers = t->L;
    b->n_kv_heads = t->G;
    b->head_dim = t->hd;
    b->prepare = tr_prepare;
    b->loss_grad = tr_loss_grad;
    b->norm_stats = tr_norm_stats;
    b->device_bytes = tr_device_bytes;
    b->times = tr_times;
    b->free = tr_free;
    return 0;
}
