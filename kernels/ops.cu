/* ops.cu - row and elementwise kernels of the CUDA engine (see ops.h). Each
 * follows the CPU function named beside it; tests/gpu/gpu_ops.c checks them
 * against it on random data. Simple and memory-bound: one block per row for
 * the row kernels, grid-stride loops for the elementwise ones. */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <float.h>
#include <limits.h>
#include <stdint.h>

#include "ops.h"

#define S(stream) ((cudaStream_t)(stream))

/* ---- element access: f32 / bf16 / f16 as float ---- */
template <typename T> __device__ __forceinline__ float ldf(const T *p, size_t i);
template <> __device__ __forceinline__ float ldf<float>(const float *p, size_t i) { return p[i]; }
template <> __device__ __forceinline__ float ldf<__nv_bfloat16>(const __nv_bfloat16 *p, size_t i) {
    return __bfloat162float(p[i]);
}
template <> __device__ __forceinline__ float ldf<__half>(const __half *p, size_t i) {
    return __half2float(p[i]);
}
template <typename T> __device__ __forceinline__ void stf(T *p, size_t i, float v);
template <> __device__ __forceinline__ void stf<float>(float *p, size_t i, float v) { p[i] = v; }
template <> __device__ __forceinline__ void stf<__nv_bfloat16>(__nv_bfloat16 *p, size_t i, float v) {
    p[i] = __float2bfloat16_rn(v);
}

static int launched(void) { return (int)cudaGetLastError(); }

static unsigned grid_for(size_t n, int threads) {
    size_t g = (n + threads - 1) / threads;
    if (g > 65535u * 8) g = 65535u * 8;
    return (unsigned)(g ? g : 1);
}

/* ---- block reductions (blockDim.x a multiple of 32, <= 1024) ---- */
__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ float block_sum(float v) {
    __shared__ float sh[32];
    __shared__ float total;
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads(); /* sh reused across calls */
    if (lane == 0) sh[w] = v;
    __syncthreads();
    if (w == 0) {
        float t = lane < nw ? sh[lane] : 0.0f;
        t = warp_sum(t);
        if (lane == 0) total = t;
    }
    __syncthreads();
    return total;
}

/* ================================================================ convert */

template <typename D, typename Src>
__global__ void convert_kernel(D *dst, const Src *src, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        stf(dst, i, ldf(src, i));
}

extern "C" int lk_op_convert(int dst_dt, void *dst, int src_dt, const void *src, size_t n,
                             void *stream) {
    if (!n) return 0;
    unsigned g = grid_for(n, 256);
    if (dst_dt == LK_OP_F32) {
        if (src_dt == LK_OP_F32) return (int)cudaMemcpyAsync(dst, src, n * 4, cudaMemcpyDeviceToDevice, S(stream));
        if (src_dt == LK_OP_BF16)
            convert_kernel<<<g, 256, 0, S(stream)>>>((float *)dst, (const __nv_bfloat16 *)src, n);
        else
            convert_kernel<<<g, 256, 0, S(stream)>>>((float *)dst, (const __half *)src, n);
    } else {
        if (src_dt == LK_OP_BF16) return (int)cudaMemcpyAsync(dst, src, n * 2, cudaMemcpyDeviceToDevice, S(stream));
        if (src_dt == LK_OP_F32)
            convert_kernel<<<g, 256, 0, S(stream)>>>((__nv_bfloat16 *)dst, (const float *)src, n);
        else
            convert_kernel<<<g, 256, 0, S(stream)>>>((__nv_bfloat16 *)dst, (const __half *)src, n);
    }
    return launched();
}

/* ================================================================ random */

__device__ __forceinline__ uint64_t splitmix64(uint64_t z) {
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

template <typename T>
__global__ void randn_kernel(T *dst, size_t n, uint64_t seed, float mean, float std) {
    uint64_t key = splitmix64(seed);
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        uint64_t r = splitmix64(key ^ (i * 0xd1b54a32d192ed03ULL));
        float u1 = ((uint32_t)(r >> 40) + 1) * (1.0f / 16777216.0f); /* (0, 1] */
        float u2 = (uint32_t)((r >> 8) & 0xffffff) * (1.0f / 16777216.0f);
        float z = sqrtf(-2.0f * logf(u1)) * cospif(2.0f * u2);
        stf(dst, i, mean + std * z);
    }
}

extern "C" int lk_op_randn(int dt, void *dst, size_t n, uint64_t seed, float mean, float std,
                           void *stream) {
    if (!n) return 0;
    unsigned g = grid_for(n, 256);
    if (dt == LK_OP_F32)
        randn_kernel<<<g, 256, 0, S(stream)>>>((float *)dst, n, seed, mean, std);
    else
        randn_kernel<<<g, 256, 0, S(stream)>>>((__nv_bfloat16 *)dst, n, seed, mean, std);
    return launched();
}

template <typename T> __global__ void fill_kernel(T *dst, size_t n, float v) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        stf(dst, i, v);
}

extern "C" int lk_op_fill(int dt, void *dst, size_t n, float value, void *stream) {
    if (!n) return 0;
    unsigned g = grid_for(n, 256);
    if (dt == LK_OP_F32)
        fill_kernel<<<g, 256, 0, S(stream)>>>((float *)dst, n, value);
    else
        fill_kernel<<<g, 256, 0, S(stream)>>>((__nv_bfloat16 *)dst, n, value);
    return launched();
}

/* ================================================================ embed */

template <typename T>
__global__ void embed_kernel(float *x, const T *table, const int *ids, int dim) {
    int r = blockIdx.x;
    const T *row = table + (size_t)ids[r] * dim;
    float *o = x + (size_t)r * dim;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) o[i] = ldf(row, i);
}

extern "C" int lk_op_embed(int dt, float *x, const void *table, const int *ids, int n, int dim,
                           void *stream) {
    if (n <= 0) return 0;
    if (dt == LK_OP_F32)
        embed_kernel<<<n, 256, 0, S(stream)>>>(x, (const float *)table, ids, dim);
    else
        embed_kernel<<<n, 256, 0, S(stream)>>>(x, (const __nv_bfloat16 *)table, ids, dim);
    return launched();
}

/* ================================================================ rmsnorm */

template <typename T>
__global__ void rmsnorm_kernel(T *out, float *x, const T *delta, const T *w, int dim, float eps) {
    int r = blockIdx.x;
    float *xr = x + (size_t)r * dim;
    float ss = 0.0f;
    if (delta) {
        const T *dr = delta + (size_t)r * dim;
        for (int i = threadIdx.x; i < dim; i += blockDim.x) {
            float v = xr[i] + ldf(dr, i);
            xr[i] = v;
            ss += v * v;
        }
    } else {
        for (int i = threadIdx.x; i < dim; i += blockDim.x) ss += xr[i] * xr[i];
    }
    if (!out) return;
    ss = block_sum(ss);
    float inv = (float)(1.0 / sqrt((double)ss / dim + (double)eps));
    T *o = out + (size_t)r * dim;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) stf(o, i, ldf(w, i) * (xr[i] * inv));
}

static int row_threads(int dim) {
    int t = dim >= 4096 ? 512 : dim >= 1024 ? 256 : dim >= 256 ? 128 : 64;
    return t;
}

extern "C" int lk_op_rmsnorm(int dt, void *out, float *x, const void *delta, const void *w, int n,
                             int dim, float eps, void *stream) {
    if (n <= 0) return 0;
    int t = row_threads(dim);
    if (dt == LK_OP_F32)
        rmsnorm_kernel<<<n, t, 0, S(stream)>>>((float *)out, x, (const float *)delta,
                                               (const float *)w, dim, eps);
    else
        rmsnorm_kernel<<<n, t, 0, S(stream)>>>((__nv_bfloat16 *)out, x, (const __nv_bfloat16 *)delta,
                                               (const __nv_bfloat16 *)w, dim, eps);
    return launched();
}

/* ================================================================ q/k/v + RoPE */

template <typename T>
__global__ void qkv_rope_kernel(const T *qkv, const T *bias, T *q, T *k, T *v, const float *cosb,
                                const float *sinb, const int *pos, int pos0, int nh, int nkv,
                                int hd) {
    int r = blockIdx.x, half = hd / 2;
    int qd = nh * hd, kd = nkv * hd, width = qd + 2 * kd;
    const T *row = qkv + (size_t)r * width;
    int p = pos ? pos[r] : pos0 + r;
    const float *cs = cosb + (size_t)p * half, *sn = sinb + (size_t)p * half;
    /* rotated pairs of q and k heads: (nh + nkv) * half */
    int npairs = (nh + nkv) * half;
    for (int t = threadIdx.x; t < npairs; t += blockDim.x) {
        int h = t / half, i = t % half;
        int col = h * hd + i; /* q heads then k heads: contiguous columns of the row */
        float x1 = ldf(row, col), x2 = ldf(row, col + half);
        if (bias) {
            x1 += ldf(bias, col);
            x2 += ldf(bias, col + half);
        }
        float c = cs[i], s = sn[i];
        float a = x1 * c - x2 * s, b = x2 * c + x1 * s;
        if (h < nh) {
            T *o = q + (size_t)r * qd + (size_t)h * hd;
            stf(o, i, a);
            stf(o, i + half, b);
        } else {
            T *o = k + (size_t)r * kd + (size_t)(h - nh) * hd;
            stf(o, i, a);
            stf(o, i + half, b);
        }
    }
    for (int t = threadIdx.x; t < kd; t += blockDim.x) {
        float x = ldf(row, qd + kd + t);
        if (bias) x += ldf(bias, qd + kd + t);
        stf(v + (size_t)r * kd, t, x);
    }
}

extern "C" int lk_op_qkv_rope(int dt, const void *qkv, const void *bias, void *q, void *k, void *v,
                              const float *cos, const float *sin, const int *pos, int pos0, int n,
                              int n_heads, int n_kv_heads, int hd, void *stream) {
    if (n <= 0) return 0;
    int t = row_threads((n_heads + n_kv_heads) * hd / 2);
    if (dt == LK_OP_F32)
        qkv_rope_kernel<<<n, t, 0, S(stream)>>>((const float *)qkv, (const float *)bias, (float *)q,
                                                (float *)k, (float *)v, cos, sin, pos, pos0,
                                                n_heads, n_kv_heads, hd);
    else
        qkv_rope_kernel<<<n, t, 0, S(stream)>>>(
            (const __nv_bfloat16 *)qkv, (const __nv_bfloat16 *)bias, (__nv_bfloat16 *)q,
            (__nv_bfloat16 *)k, (__nv_bfloat16 *)v, cos, sin, pos, pos0, n_heads, n_kv_heads, hd);
    return launched();
}

/* ================================================================ SwiGLU */

template <typename T> __global__ void swiglu_kernel(T *out, const T *gu, int n, int hidden) {
    size_t total = (size_t)n * hidden;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        size_t r = i / hidden, c = i % hidden;
        const T *row = gu + r * 2 * hidden;
        float g = ldf(row, c), u = ldf(row, c + hidden);
        stf(out, i, g / (1.0f + expf(-g)) * u);
    }
}

/* bf16, hidden a multiple of 8: 16-byte loads and stores, 8 outputs a thread */
__global__ void swiglu_vec_kernel(uint4 *out, const uint4 *gu, int n, int hidden) {
    int h8 = hidden / 8;
    size_t total = (size_t)n * h8;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
        size_t r = i / h8, c = i % h8;
        uint4 g = gu[r * 2 * h8 + c], u = gu[r * 2 * h8 + h8 + c], o;
        const __nv_bfloat162 *g2 = (const __nv_bfloat162 *)&g, *u2 = (const __nv_bfloat162 *)&u;
        __nv_bfloat162 *o2 = (__nv_bfloat162 *)&o;
#pragma unroll
        for (int k = 0; k < 4; k++) {
            float2 gf = __bfloat1622float2(g2[k]), uf = __bfloat1622float2(u2[k]);
            o2[k] = __floats2bfloat162_rn(gf.x / (1.0f + expf(-gf.x)) * uf.x, gf.y / (1.0f + expf(-gf.y)) * uf.y);
        }
        out[i] = o;
    }
}

extern "C" int lk_op_swiglu(int dt, void *out, const void *gu, int n, int hidden, void *stream) {
    if (n <= 0) return 0;
    if (dt == LK_OP_BF16 && hidden % 8 == 0 && !(((uintptr_t)out | (uintptr_t)gu) & 15)) {
        swiglu_vec_kernel<<<grid_for((size_t)n * hidden / 8, 256), 256, 0, S(stream)>>>((uint4 *)out,
                                                                                       (const uint4 *)gu, n, hidden);
        return launched();
    }
    unsigned g = grid_for((size_t)n * hidden, 256);
    if (dt == LK_OP_F32)
        swiglu_kernel<<<g, 256, 0, S(stream)>>>((float *)out, (const float *)gu, n, hidden);
    else
        swiglu_kernel<<<g, 256, 0, S(stream)>>>((__nv_bfloat16 *)out, (const __nv_bfloat16 *)gu, n,
                                                hidden);
    return launched();
}

/* ================================================================ rows */

__global__ void scatter_rows_kernel(float *const *dst, const float *src, int n) {
    int b = blockIdx.y;
    float *d = dst[b];
    const float *s = src + (size_t)b * n;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
        d[i] = s[i];
}

extern "C" int lk_op_scatter_rows(float *const *dst, const float *src, int B, int n, void *stream) {
    if (B <= 0) return 0;
    dim3 g((n + 1023) / 1024 < 64 ? (n + 1023) / 1024 : 64, B);
    scatter_rows_kernel<<<g, 256, 0, S(stream)>>>(dst, src, n);
    return launched();
}

/* ================================================================ sampling */

#define SAMPLE_THREADS 1024

/* (value, index) maximum, ties to the lower index; NaN never wins. */
__device__ __forceinline__ void argmax_merge(float &bv, int &bi, float v, int i) {
    if (v > bv || (v == bv && i < bi)) {
        bv = v;
        bi = i;
    }
}

__global__ void __launch_bounds__(SAMPLE_THREADS)
sample_kernel(const float *const *logits, const lk_op_sample_params *params, int *ids, int V) {
    __shared__ float shv[32];
    __shared__ int shi[32];
    __shared__ float incl[SAMPLE_THREADS];
    __shared__ int pick;
    const float *l = logits[blockIdx.x];
    lk_op_sample_params p = params[blockIdx.x];
    int tid = threadIdx.x, nt = blockDim.x, lane = tid & 31, w = tid >> 5;

    /* argmax (also the fallback of every path) */
    float bv = -INFINITY;
    int bi = INT_MAX;
    for (int i = tid; i < V; i += nt) argmax_merge(bv, bi, l[i], i);
    for (int o = 16; o; o >>= 1) {
        float ov = __shfl_xor_sync(0xffffffffu, bv, o);
        int oi = __shfl_xor_sync(0xffffffffu, bi, o);
        argmax_merge(bv, bi, ov, oi);
    }
    if (lane == 0) {
        shv[w] = bv;
        shi[w] = bi;
    }
    __syncthreads();
    if (w == 0) {
        bv = lane < (nt >> 5) ? shv[lane] : -INFINITY;
        bi = lane < (nt >> 5) ? shi[lane] : INT_MAX;
        for (int o = 16; o; o >>= 1) {
            float ov = __shfl_xor_sync(0xffffffffu, bv, o);
            int oi = __shfl_xor_sync(0xffffffffu, bi, o);
            argmax_merge(bv, bi, ov, oi);
        }
        if (lane == 0) {
            shv[0] = bv;
            shi[0] = bi == INT_MAX ? 0 : bi;
        }
    }
    __syncthreads();
    float lmax = shv[0];
    int top = shi[0];
    if (p.temperature <= 0.0f || !(lmax > -INFINITY)) {
        if (tid == 0) ids[blockIdx.x] = top;
        return;
    }
    /* probabilities: softmax of logits / T (lk_sample: x /= T, then softmax) */
    float T = p.temperature, m = lmax / T;
    float z = 0.0f;
    for (int i = tid; i < V; i += nt) z += expf(l[i] / T - m);
    z = block_sum(z);
    float invz = 1.0f / z;
#define PROB(i) (expf(l[(i)] / T - m) * invz)
#define KEPT(q, i) ((q) > t || ((q) == t && (i) < cut))

    /* threshold t: keep prob >= t. t_k = k-th largest, t_p = largest t whose
     * kept mass reaches top_p; t = max of the two (searched on float bits). */
    float t = 0.0f;
    int cut = V; /* tokens with probability == t are kept only below id cut */
    int use_k = p.top_k > 0 && p.top_k < V, use_p = p.top_p < 1.0f;
    if (use_k || use_p) {
        uint32_t klo = 0, khi = 0x3f800001u, plo = 0, phi = 0x3f800001u;
        for (int it = 0; it < 31; it++) {
            uint32_t kmid = klo + (khi - klo) / 2, pmid = plo + (phi - plo) / 2;
            float kt = __uint_as_float(kmid), pt = __uint_as_float(pmid);
            float cnt = 0.0f, mass = 0.0f;
            for (int i = tid; i < V; i += nt) {
                float q = PROB(i);
                cnt += q >= kt ? 1.0f : 0.0f;
                mass += q >= pt ? q : 0.0f;
            }
            cnt = use_k ? block_sum(cnt) : 0.0f;
            mass = use_p ? block_sum(mass) : 0.0f;
            if (cnt >= (float)p.top_k) klo = kmid; else khi = kmid;
            if (mass >= p.top_p) plo = pmid; else phi = pmid;
            if (khi - klo <= 1 && phi - plo <= 1) break;
        }
        float tk = use_k ? __uint_as_float(klo) : 0.0f, tp = use_p ? __uint_as_float(plo) : 0.0f;
        t = tk > tp ? tk : tp;
        /* ties at t: lk_sample orders by (probability desc, id asc), so the
         * kept set takes the tied ids lowest first, as many as k / top_p need */
        float ties = 0.0f, gtc = 0.0f, gtm = 0.0f;
        for (int i = tid; i < V; i += nt) {
            float q = PROB(i);
            ties += q == t ? 1.0f : 0.0f;
            gtc += q > t ? 1.0f : 0.0f;
            gtm += q > t ? q : 0.0f;
        }
        ties = block_sum(ties);
        gtc = block_sum(gtc);
        gtm = block_sum(gtm);
        if (ties > 1.0f) {
            int ck = V, cp = V;
            for (int which = 0; which < 2; which++) {
                if (which == 0 ? !(use_k && t == tk) : !(use_p && t == tp)) continue;
                int lo = 0, hi = V; /* smallest x with enough ties below id x */
                while (hi - lo > 1) {
                    int mid = lo + (hi - lo) / 2;
                    float c = 0.0f;
                    for (int i = tid; i < mid; i += nt) c += PROB(i) == t ? 1.0f : 0.0f;
                    c = block_sum(c);
                    bool ok = which == 0 ? gtc + c >= (float)p.top_k : gtm + t * c >= p.top_p;
                    if (ok) hi = mid; else lo = mid;
                }
                if (which == 0) ck = hi; else cp = hi;
            }
            cut = ck < cp ? ck : cp;
        }
    }
    /* draw: r = u * kept mass, first kept id where the cumulative sum (id order) passes r */
    int chunk = (V + nt - 1) / nt, b0 = tid * chunk, b1 = min(V, b0 + chunk);
    float loc = 0.0f;
    for (int i = b0; i < b1; i++) {
        float q = PROB(i);
        if (KEPT(q, i)) loc += q;
    }
    incl[tid] = loc;
    if (tid == 0) pick = INT_MAX;
    __syncthreads();
    for (int o = 1; o < nt; o <<= 1) { /* Hillis-Steele inclusive scan */
        float add = tid >= o ? incl[tid - o] : 0.0f;
        __syncthreads();
        incl[tid] += add;
        __syncthreads();
    }
    float total = incl[nt - 1], r = p.u * total;
    float lo = tid ? incl[tid - 1] : 0.0f, hi = incl[tid];
    if (lo <= r && r < hi) {
        float cdf = lo;
        int got = -1, last = -1;
        for (int i = b0; i < b1; i++) {
            float q = PROB(i);
            if (!KEPT(q, i)) continue;
            last = i;
            cdf += q;
            if (r < cdf) {
                got = i;
                break;
            }
        }
        if (got < 0) got = last;
        if (got >= 0) atomicMin(&pick, got);
    }
    __syncthreads();
    if (tid == 0) ids[blockIdx.x] = pick == INT_MAX ? top : pick;
#undef PROB
#undef KEPT
}

extern "C" int lk_op_sample(const float *const *logits, const lk_op_sample_params *params, int *ids,
                            int B, int vocab, void *stream) {
    if (B <= 0) return 0;
    sample_kernel<<<B, SAMPLE_THREADS, 0, S(stream)>>>(logits, params, ids, vocab);
    return launched();
}

/* ================================================================ skinny GEMM */

/* out (M, N) = x (M, K) w^T for few rows (decode at small batch), bf16 x and
 * w, f32 accumulation: each warp streams GEMV_ROWS rows of w (16-byte loads
 * that bypass L1) and dots them with the M rows of x (cached); one warp-sum
 * per output. Memory-bound on w, which cuBLAS's small-M kernels do not
 * stream at full bandwidth. */
#define GEMV_ROWS 2
#define GEMV_WARPS 4

__device__ __forceinline__ uint4 ld_stream(const uint4 *p) {
    uint4 r;
    asm("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
        : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
        : "l"(p));
    return r;
}

__device__ __forceinline__ void bf16x8(uint4 v, float *f) {
    const __nv_bfloat162 *h = (const __nv_bfloat162 *)&v;
#pragma unroll
    for (int i = 0; i < 4; i++) {
        float2 t = __bfloat1622float2(h[i]);
        f[2 * i] = t.x;
        f[2 * i + 1] = t.y;
    }
}

/* Each lane issues GEMV_U x GEMV_ROWS 16-byte loads of w before using any:
 * enough bytes in flight per SM to run at the memory's rate. */
#define GEMV_U 4
template <typename OT, int M>
__global__ void __launch_bounds__(GEMV_WARPS * 32)
    gemv_kernel(OT *out, const __nv_bfloat16 *x, const __nv_bfloat16 *w, int N, int K) {
    int lane = threadIdx.x & 31;
    int n0 = (blockIdx.x * GEMV_WARPS + (threadIdx.x >> 5)) * GEMV_ROWS;
    if (n0 >= N) return;
    const uint4 *wr[GEMV_ROWS];
#pragma unroll
    for (int r = 0; r < GEMV_ROWS; r++) wr[r] = (const uint4 *)(w + (size_t)min(n0 + r, N - 1) * K);
    float acc[GEMV_ROWS][M];
#pragma unroll
    for (int r = 0; r < GEMV_ROWS; r++)
#pragma unroll
        for (int m = 0; m < M; m++) acc[r][m] = 0.0f;
    int KC = K >> 3;
    for (int c0 = lane; c0 < KC; c0 += 32 * GEMV_U) {
        uint4 wv[GEMV_U][GEMV_ROWS];
#pragma unroll
        for (int u = 0; u < GEMV_U; u++)
#pragma unroll
            for (int r = 0; r < GEMV_ROWS; r++)
                wv[u][r] = c0 + 32 * u < KC ? ld_stream(wr[r] + c0 + 32 * u) : make_uint4(0, 0, 0, 0);
#pragma unroll
        for (int u = 0; u < GEMV_U; u++) {
            int c = c0 + 32 * u;
            if (c >= KC) break;
#pragma unroll
            for (int m = 0; m < M; m++) {
                float xf[8];
                bf16x8(__ldg((const uint4 *)(x + (size_t)m * K) + c), xf);
#pragma unroll
                for (int r = 0; r < GEMV_ROWS; r++) {
                    float wf[8];
                    bf16x8(wv[u][r], wf);
#pragma unroll
                    for (int i = 0; i < 8; i++) acc[r][m] = fmaf(wf[i], xf[i], acc[r][m]);
                }
            }
        }
    }
#pragma unroll
    for (int r = 0; r < GEMV_ROWS; r++)
#pragma unroll
        for (int m = 0; m < M; m++) acc[r][m] = warp_sum(acc[r][m]);
    if (lane == 0) {
#pragma unroll
        for (int r = 0; r < GEMV_ROWS; r++)
            if (n0 + r < N)
#pragma unroll
                for (int m = 0; m < M; m++) stf(out, (size_t)m * N + n0 + r, acc[r][m]);
    }
}

template <typename OT>
static int gemv_launch(OT *out, const __nv_bfloat16 *x, const __nv_bfloat16 *w, int M, int N, int K,
                       cudaStream_t st) {
    unsigned g = (unsigned)((N + GEMV_ROWS * GEMV_WARPS - 1) / (GEMV_ROWS * GEMV_WARPS));
    switch (M) {
#define CASE(m) \
    case m: gemv_kernel<OT, m><<<g, GEMV_WARPS * 32, 0, st>>>(out, x, w, N, K); break;
        CASE(1) CASE(2) CASE(3) CASE(4) CASE(5) CASE(6) CASE(7) CASE(8)
#undef CASE
    default: return (int)cudaErrorInvalidValue;
    }
    return launched();
}

extern "C" int lk_op_gemv_ok(int M, int K) { return M >= 1 && M <= LK_OP_GEMV_MAX_M && K % 8 == 0; }

extern "C" int lk_op_gemv(int out_dt, void *out, const void *x, const void *w, int M, int N, int K,
                          void *stream) {
    if (!lk_op_gemv_ok(M, K) || (((uintptr_t)x | (uintptr_t)w) & 15)) return (int)cudaErrorInvalidValue;
    if (out_dt == LK_OP_F32)
        return gemv_launch((float *)out, (const __nv_bfloat16 *)x, (const __nv_bfloat16 *)w, M, N, K, S(stream));
    return gemv_launch((__nv_bfloat16 *)out, (const __nv_bfloat16 *)x, (const __nv_bfloat16 *)w, M, N, K,
                       S(stream));
}

/* ================================================================ references (LEANK_CUDA_CHECK) */

/* out (M, N) = x (M, K) w^T, one thread an output, f32 sums: the slow
 * definition the engine's checked mode compares its products with. */
template <typename T, typename OT>
__global__ void ref_gemm_kernel(OT *out, const T *x, const T *w, int M, int N, int K) {
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i >= (size_t)M * N) return;
    int m = (int)(i / N), n = (int)(i % N);
    float s = 0.0f;
    for (int k = 0; k < K; k++) s += ldf(x, (size_t)m * K + k) * ldf(w, (size_t)n * K + k);
    stf(out, i, s);
}

extern "C" int lk_op_ref_gemm(int dt, int out_dt, void *out, const void *x, const void *w, int M, int N, int K,
                              void *stream) {
    unsigned g = (unsigned)(((size_t)M * N + 127) / 128);
    if (dt == LK_OP_F32)
        ref_gemm_kernel<<<g, 128, 0, S(stream)>>>((float *)out, (const float *)x, (const float *)w, M, N, K);
    else if (out_dt == LK_OP_F32)
        ref_gemm_kernel<<<g, 128, 0, S(stream)>>>((float *)out, (const __nv_bfloat16 *)x, (const __nv_bfloat16 *)w,
                                                  M, N, K);
    else
        ref_gemm_kernel<<<g, 128, 0, S(stream)>>>((__nv_bfloat16 *)out, (const __nv_bfloat16 *)x,
                                                  (const __nv_bfloat16 *)w, M, N, K);
    return launched();
}

/* Causal attention of n rows among themselves, one block a (row, head). */
template <typename T>
__global__ void ref_attention_kernel(T *out, const T *q, const T *k, const T *v, int n, int H, int G, int hd,
                                     float scale, float *scratch) {
    int i = blockIdx.x, h = blockIdx.y, g = h / (H / G);
    float *sc = scratch + ((size_t)h * n + i) * n;
    const T *qi = q + ((size_t)i * H + h) * hd;
    for (int j = threadIdx.x; j <= i; j += blockDim.x) {
        const T *kj = k + ((size_t)j * G + g) * hd;
        float d = 0.0f;
        for (int c = 0; c < hd; c++) d += ldf(qi, c) * ldf(kj, c);
        sc[j] = d * scale;
    }
    __syncthreads();
    float mx = -INFINITY;
    for (int j = 0; j <= i; j++) mx = fmaxf(mx, sc[j]);
    float z = 0.0f;
    for (int j = 0; j <= i; j++) z += expf(sc[j] - mx);
    for (int c = threadIdx.x; c < hd; c += blockDim.x) {
        float o = 0.0f;
        for (int j = 0; j <= i; j++) o += expf(sc[j] - mx) / z * ldf(v + ((size_t)j * G + g) * hd, c);
        stf(out + ((size_t)i * H + h) * hd, c, o);
    }
}

extern "C" int lk_op_ref_attention(int dt, void *out, const void *q, const void *k, const void *v, int n, int H,
                                   int G, int hd, float scale, float *scratch, void *stream) {
    dim3 g(n, H);
    if (dt == LK_OP_F32)
        ref_attention_kernel<<<g, 64, 0, S(stream)>>>((float *)out, (const float *)q, (const float *)k,
                                                      (const float *)v, n, H, G, hd, scale, scratch);
    else
        ref_attention_kernel<<<g, 64, 0, S(stream)>>>((__nv_bfloat16 *)out, (const __nv_bfloat16 *)q,
                                                      (const __nv_bfloat16 *)k, (const __nv_bfloat16 *)v, n, H, G, hd,
                                                      scale, scratch);
    return launched();
}

/* acc[0] += sum (a - b)^2, acc[1] += sum b^2 (b the reference). */
template <typename T> __global__ void diff_kernel(const T *a, const T *b, size_t n, double *acc) {
    float d = 0.0f, r = 0.0f;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float x = ldf(a, i), y = ldf(b, i);
        d += (x - y) * (x - y);
        r += y * y;
    }
    d = block_sum(d);
    r = block_sum(r);
    if (threadIdx.x == 0) {
        atomicAdd(acc, (double)d);
        atomicAdd(acc + 1, (double)r);
    }
}

extern "C" int lk_op_diff(int dt, const void *a, const void *b, size_t n, double *acc, void *stream) {
    unsigned g = grid_for(n, 256);
    if (g > 1024) g = 1024;
    if (dt == LK_OP_F32)
        diff_kernel<<<g, 256, 0, S(stream)>>>((const float *)a, (const float *)b, n, acc);
    else
        diff_kernel<<<g, 256, 0, S(stream)>>>((const __nv_bfloat16 *)a, (const __nv_bfloat16 *)b, n, acc);
    return launched();
}
