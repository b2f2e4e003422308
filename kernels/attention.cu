/* attention.cu - the KV cache and attention kernels of the CUDA engine: decode
 * attention over the paged LeanK cache (split-KV, LSE merge), the cache
 * stores (prefill, append, gather) and causal flash prefill attention.
 * Layout and the token-placement rule: kvcache.h. The CPU definition they
 * match: lib/model/model.h (attention rule), lib/model/attention.c; each kernel's CPU twin
 * is in tests/gpu/gpu_attention.c.
 *
 * Paths:
 *   decode  bf16, head_dim 64/128: tensor cores (mma.sync m16n8k16), one block
 *           per (split, kv head, sequence) so each K/V tile is read once for
 *           the whole GQA group; warps stream 16-key tiles through their own
 *           cp.async pipelines. Groups <= 8 heads: the transposed form
 *           (decode_t_kernel, keys as MMA rows); 9..16: the group as the 16
 *           MMA rows (decode_mma_kernel). Anything else (f32, other head_dim,
 *           larger groups): a SIMT kernel, one block per (split, query head,
 *           sequence). Splits merge by log-sum-exp in f32 (decode_merge_kernel).
 *   prefill bf16, head_dim 128 on Hopper: flash attention on wgmma (FA3-style
 *           warpgroups, no warp specialization; prefill_wg_kernel); forms 7
 *           and 8 (not the default): warp-specialized, a TMA producer and
 *           two consumer warpgroups taking turns (prefill_ws_kernel);
 *           head_dim 64 (and 128 off Hopper): on mma.sync (FA2-style);
 *           otherwise a SIMT kernel (one warp per query row).
 * Measurements and the versions behind these choices: NOTES-attention.md. */
#include <cuda.h> /* CUtensorMap and its encoder's types (the encoder itself: the runtime's entry point) */
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include <type_traits>

#include "cuda_check.h" /* TRY */
#include "kvcache.h"

typedef __nv_bfloat16 bf16;

/* Return the error of a CUDA call or of the last launch. */
#define CU_TRY(call)                                                                               \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        if (e_ != cudaSuccess) return (int)e_;                                                     \
    } while (0)
#define CU_LAUNCHED() CU_TRY(cudaGetLastError())

#define LOG2E 1.4426950408889634f
#define MAX_SPLITS 32   /* split-KV partials per (sequence, head) at most */
#define MIN_SPLIT_KEYS 256

/* ------------------------------------------------------------ element I/O */

__device__ __forceinline__ float ldf(const float *p) { return *p; }
__device__ __forceinline__ float ldf(const bf16 *p) { return __bfloat162float(*p); }
__device__ __forceinline__ void stf(float *p, float v) { *p = v; }
__device__ __forceinline__ void stf(bf16 *p, float v) { *p = __float2bfloat16(v); }

/* Reductions across lanes: the 4 lanes of a quad (an mma fragment's row:
 * lanes 4r .. 4r+3) and the whole warp. */
__device__ __forceinline__ float quad_max(float x) {
    x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 1));
    return fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 2));
}
__device__ __forceinline__ float quad_sum(float x) {
    x += __shfl_xor_sync(0xffffffffu, x, 1);
    return x + __shfl_xor_sync(0xffffffffu, x, 2);
}
__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
    for (int off = 16; off; off >>= 1) x += __shfl_xor_sync(0xffffffffu, x, off);
    return x;
}

/* --------------------------------------------------------- cache addresses */

/* One (sequence, layer, kv head)'s view of the pool (kvcache.h's layout). */
struct Cache {
    char *pool;
    size_t bb;          /* block bytes */
    const int *fullp;   /* this sequence's full pages */
    const int *midp;    /* this sequence's middle pages */
    int hd, F, P, sink, recent, w;
    int64_t fk, fv;     /* element offset of this head's K / V block in a full page */
    int64_t mk, mv;     /* element offset of this head's K / V block in a middle page */
    const int *chan;    /* kept channels (hd), ascending */
};

__device__ __forceinline__ Cache cache_of(const lk_kv_plan_dev &pl, const lk_kv_batch_dev &kv,
                                          int layer, int b, int g) {
    Cache c;
    int L = pl.n_layers, G = pl.n_kv_heads, hd = pl.head_dim, lg = layer * G + g;
    c.pool = (char *)kv.pool;
    c.bb = kv.block_bytes;
    c.fullp = kv.full_pages + (size_t)b * kv.full_stride;
    c.midp = kv.mid_pages + (size_t)b * kv.mid_stride;
    c.hd = hd;
    c.F = pl.full_tokens;
    c.P = pl.mid_tokens;
    c.sink = pl.sink;
    c.recent = pl.recent;
    c.w = pl.width[lg];
    c.fk = (int64_t)lg * c.F * hd;
    c.fv = (int64_t)L * G * c.F * hd + c.fk;
    c.mk = (int64_t)c.P * (pl.k_off[layer] + pl.k_col[lg]);
    c.mv = c.w > 0 ? (int64_t)c.P * (pl.k_off[L] + pl.v_off[layer] + pl.v_col[lg]) : 0;
    c.chan = pl.chan + (size_t)lg * hd;
    return c;
}
/* full slot of a full position j (j < sink, or the recent ring) */
__device__ __forceinline__ int full_slot(const Cache &c, int j) {
    return j < c.sink ? j : c.sink + j % c.recent;
}
template <typename T> __device__ __forceinline__ T *full_k(const Cache &c, int slot) {
    return (T *)(c.pool + (size_t)c.fullp[slot / c.F] * c.bb) + c.fk + (int64_t)(slot % c.F) * c.hd;
}
template <typename T> __device__ __forceinline__ T *full_v(const Cache &c, int slot) {
    return (T *)(c.pool + (size_t)c.fullp[slot / c.F] * c.bb) + c.fv + (int64_t)(slot % c.F) * c.hd;
}
/* middle row r = j - sink */
template <typename T> __device__ __forceinline__ T *mid_k(const Cache &c, int r) {
    return (T *)(c.pool + (size_t)c.midp[r / c.P] * c.bb) + c.mk + (int64_t)(r % c.P) * c.w;
}
template <typename T> __device__ __forceinline__ T *mid_v(const Cache &c, int r) {
    return (T *)(c.pool + (size_t)c.midp[r / c.P] * c.bb) + c.mv + (int64_t)(r % c.P) * c.hd;
}

/* The key ranges of a query at p = len - 1 (append-before-attend):
 * [0, ns) sink slots, [sink, rs) middle rows, [rs, len) ring slots. */
__device__ __forceinline__ void key_ranges(const Cache &c, int len, int *ns, int *rs) {
    *ns = min(len, c.sink);
    int r = max(c.sink, len - c.recent);
    *rs = min(r, len);
}

/* --------------------------------------------------------------- the store */

/* One K row and one V row of n elements copied in 16-byte pieces, threads t
 * of nt over both: a row of hd 128 in bf16 is 16 pieces, so a warp moves a K
 * and a V row in one step where 2-byte copies took eight (the store and the
 * gather ran at a third of the copy bandwidth). False, nothing copied, when
 * an address is not 16-byte aligned; the caller's element loop then runs. */
template <typename T>
__device__ __forceinline__ bool copy_kv16(T *kd, const T *ks, T *vd, const T *vs, int n, int t, int nt) {
    int c = (int)(n * sizeof(T)) >> 4;
    if ((n * sizeof(T)) & 15 || ((uintptr_t)kd | (uintptr_t)ks | (uintptr_t)vd | (uintptr_t)vs) & 15) return false;
    for (int i = t; i < 2 * c; i += nt) {
        if (i < c) ((int4 *)kd)[i] = ((const int4 *)ks)[i];
        else ((int4 *)vd)[i - c] = ((const int4 *)vs)[i - c];
    }
    return true;
}

/* Position j of a sequence holding len tokens goes to its full slot or its
 * middle row (kvcache.h's rule), threads t of nt over the row. */
template <typename T>
__device__ void store_row(const Cache &c, int j, int len, const T *k, const T *v, int t, int nt) {
    int hd = c.hd;
    bool full = j < c.sink || (c.recent > 0 && j >= max(c.sink, len - c.recent));
    if (full) {
        int slot = full_slot(c, j);
        T *kd = full_k<T>(c, slot), *vd = full_v<T>(c, slot);
        if (copy_kv16(kd, k, vd, v, hd, t, nt)) return;
        for (int d = t; d < hd; d += nt) {
            kd[d] = k[d];
            vd[d] = v[d];
        }
    } else if (c.w > 0) {
        T *kd = mid_k<T>(c, j - c.sink), *vd = mid_v<T>(c, j - c.sink);
        /* every channel kept: chan (ascending) is the identity */
        if (c.w == hd && copy_kv16(kd, k, vd, v, hd, t, nt)) return;
        for (int i = t; i < c.w; i += nt) kd[i] = k[c.chan[i]];
        for (int d = t; d < hd; d += nt) vd[d] = v[d];
    }
}

/* Prefill store and gather: a warp a position (its lanes over the channels,
 * coalesced), KV_ROWS positions of one kv head a block. A block per position
 * (the first form) spent ~3 ms a layer at 32K on block scheduling alone. */
#define KV_ROWS 64
#define KV_WARPS 8

template <typename T>
__global__ void __launch_bounds__(32 * KV_WARPS)
    kv_prefill_kernel(const T *k,  // (n, G, hd)
                      const T *v,  // (n, G, hd)
                      lk_kv_plan_dev pl, lk_kv_batch_dev kv, int layer, int n) {
    int g = blockIdx.y, G = pl.n_kv_heads, hd = pl.head_dim, lane = threadIdx.x & 31;
    Cache c = cache_of(pl, kv, layer, 0, g);
    int j1 = min(n, (int)(blockIdx.x + 1) * KV_ROWS);
    for (int j = blockIdx.x * KV_ROWS + (threadIdx.x >> 5); j < j1; j += KV_WARPS) {
        size_t o = ((size_t)j * G + g) * hd;
        store_row(c, j, n, k + o, v + o, lane, 32);
    }
}

/* Decode append: one block per (sequence, kv head). The ring slot the new
 * token takes held position p - recent; that one moves to its middle row
 * first (read, barrier, then overwrite). */
template <typename T>
__global__ void kv_append_kernel(const T *k,  // (B, G, hd)
                                 const T *v,  // (B, G, hd)
                                 lk_kv_plan_dev pl, lk_kv_batch_dev kv, int layer) {
    int b = blockIdx.x, g = blockIdx.y, G = pl.n_kv_heads, hd = pl.head_dim;
    Cache c = cache_of(pl, kv, layer, b, g);
    int len = kv.seq_len[b], p = len - 1;
    size_t o = ((size_t)b * G + g) * hd;
    if (p >= c.sink && c.recent > 0) {
        int old = p - c.recent;
        if (old >= c.sink && c.w > 0) {
            int slot = full_slot(c, p); /* == full_slot(c, old) */
            const T *ks = full_k<T>(c, slot), *vs = full_v<T>(c, slot);
            T *kd = mid_k<T>(c, old - c.sink), *vd = mid_v<T>(c, old - c.sink);
            for (int i = threadIdx.x; i < c.w; i += blockDim.x) kd[i] = ks[c.chan[i]];
            for (int d = threadIdx.x; d < hd; d += blockDim.x) vd[d] = vs[d];
        }
        __syncthreads();
    }
    store_row(c, p, len, k + o, v + o, threadIdx.x, blockDim.x);
}

/* Dense-sequence gather: positions 0 .. n-1 back to (n, G, hd) rows. Middle
 * rows scatter their kept channels (all of them in a dense plan). A warp a
 * position, as kv_prefill_kernel. */
template <typename T>
__global__ void __launch_bounds__(32 * KV_WARPS)
    kv_gather_kernel(T *k,  // (n, G, hd)
                     T *v,  // (n, G, hd)
                     lk_kv_plan_dev pl, lk_kv_batch_dev kv, int layer, int n) {
    int g = blockIdx.y, G = pl.n_kv_heads, hd = pl.head_dim, lane = threadIdx.x & 31;
    Cache c = cache_of(pl, kv, layer, 0, g);
    int j1 = min(n, (int)(blockIdx.x + 1) * KV_ROWS);
    for (int j = blockIdx.x * KV_ROWS + (threadIdx.x >> 5); j < j1; j += KV_WARPS) {
        T *kd = k + ((size_t)j * G + g) * hd, *vd = v + ((size_t)j * G + g) * hd;
        bool full = j < c.sink || (c.recent > 0 && j >= max(c.sink, n - c.recent));
        if (full) {
            int slot = full_slot(c, j);
            const T *ks = full_k<T>(c, slot), *vs = full_v<T>(c, slot);
            if (copy_kv16(kd, ks, vd, vs, hd, lane, 32)) continue;
            for (int d = lane; d < hd; d += 32) {
                kd[d] = ks[d];
                vd[d] = vs[d];
            }
            continue;
        }
        if (c.w == hd && copy_kv16(kd, mid_k<T>(c, j - c.sink), vd, mid_v<T>(c, j - c.sink), hd, lane, 32)) continue;
        for (int d = lane; d < hd; d += 32) {
            kd[d] = (T)0.0f;
            vd[d] = (T)0.0f;
        }
        if (c.w == 0) continue;
        __syncwarp(); /* the zeros before the kept channels land over them */
        const T *ks = mid_k<T>(c, j - c.sink), *vs = mid_v<T>(c, j - c.sink);
        for (int i = lane; i < c.w; i += 32) kd[c.chan[i]] = ks[i];
        for (int d = lane; d < hd; d += 32) vd[d] = vs[d];
    }
}

/* ------------------------------------------------------ PTX: async + MMA */

__device__ __forceinline__ uint32_t smem_u32(const void *p) {
    return (uint32_t)__cvta_generic_to_shared(p);
}
/* 16-byte global -> shared copy; src_bytes < 16 zero-fills the rest. */
__device__ __forceinline__ void cp_async16(void *dst, const void *src, int src_bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_u32(dst)), "l"(src),
                 "r"(src_bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N> __device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}
__device__ __forceinline__ void ldsm_x4(uint32_t r[4], const void *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_u32(p)));
}
__device__ __forceinline__ void ldsm_x4_t(uint32_t r[4], const void *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_u32(p)));
}
/* D (16x8 f32) += A (16x16 bf16, row) * B (16x8 bf16, col) */
__device__ __forceinline__ void mma_bf16(float d[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
                 "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
    __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
    return *(uint32_t *)&h;
}

/* ------------------------------------------------- decode: split-KV rules */

static int g_num_sms;
static int num_sms(void) {
    if (!g_num_sms) {
        int dev = 0, n = 0;
        if (cudaGetDevice(&dev) != cudaSuccess ||
            cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess || n <= 0)
            n = 132;
        g_num_sms = n;
    }
    return g_num_sms;
}
/* cudaFuncSetAttribute holds for the current device only: a launcher sets a
 * kernel's shared-memory opt-in once per device (bit d of *done), so that an
 * engine on GPU 1 after one on GPU 0 in the same process gets it too. */
static int smem_optin(unsigned *done, const void *kernel, size_t bytes) {
    int d = 0;
    CU_TRY(cudaGetDevice(&d));
    unsigned bit = 1u << (d & 31);
    if (*done & bit) return 0;
    CU_TRY(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
    *done |= bit;
    return 0;
}
static int max_splits(int max_len) {
    int s = (max_len + MIN_SPLIT_KEYS - 1) / MIN_SPLIT_KEYS;
    return s < 1 ? 1 : s > MAX_SPLITS ? MAX_SPLITS : s;
}
/* Splits: one wave of blocks (the decode kernels run one block an SM) when
 * the batch alone does not fill the SMs, none otherwise, and at most 8192
 * keys a split (a LeanK layer's blocks differ in work by head width:
 * smaller pieces balance them). Measured on the H200 (NOTES-attention.md,
 * v4): B 1 x 32K 16 splits, 5.79 ms a step against 6.31 with the earlier
 * ~8 blocks/SM rule's 32 (two waves of short pipelines); B 52 x 4K one
 * split, 12.37 ms against 13.25 with 3; B 64 x 32K unchanged (4). */
static int n_splits(int units, int max_len) {
    int s = units >= num_sms() ? 1 : num_sms() / units;
    int by_len = (max_len + 8191) / 8192;
    if (s < by_len) s = by_len;
    int m = max_splits(max_len);
    return s > m ? m : s < 1 ? 1 : s;
}

extern "C" size_t lk_cuda_decode_workspace(int B, int n_heads, int head_dim, int max_len) {
    return (size_t)B * n_heads * max_splits(max_len) * (head_dim + 1) * sizeof(float);
}

/* Partials of split s: ws_o (B, H, S, hd) f32 normalised outputs, ws_lse
 * (B, H, S) log2-sum-exp2 of the scaled logits (-inf: no key). */
template <typename T>
__global__ void decode_merge_kernel(T *out,              // (B, H, hd)
                                    const float *ws_o,   // (B, H, S, hd)
                                    const float *ws_lse, // (B, H, S)
                                    int H, int S, int hd) {
    int h = blockIdx.x, b = blockIdx.y;
    size_t bh = (size_t)b * H + h;
    const float *lse = ws_lse + bh * S;
    float M = -INFINITY;
    for (int s = 0; s < S; s++) M = fmaxf(M, lse[s]);
    float L = 0.0f;
    for (int s = 0; s < S; s++) L += lse[s] == -INFINITY ? 0.0f : exp2f(lse[s] - M);
    for (int d = threadIdx.x; d < hd; d += blockDim.x) {
        float o = 0.0f;
        for (int s = 0; s < S; s++)
            if (lse[s] != -INFINITY) o += exp2f(lse[s] - M) * ws_o[(bh * S + s) * hd + d];
        stf(out + bh * hd + d, L > 0.0f ? o / L : 0.0f);
    }
}

/* Write one (sequence, head)'s result of split s: the final output when
 * there is one split, else the partial and its LSE. */
template <typename T>
__device__ __forceinline__ void put_result(T *out, float *ws, int B, int H, int S, int b, int h,
                                           int s, int hd, int d, float o, float lse) {
    size_t bh = (size_t)b * H + h;
    if (S == 1) {
        stf(out + bh * hd + d, o);
    } else {
        ws[(bh * S + s) * hd + d] = o;
        if (d == 0) ws[(size_t)B * H * S * hd + bh * S + s] = lse;
    }
}

/* ------------------------------------------------ decode: the SIMT kernel */

/* One block (4 warps) per (split, query head, sequence); warps take keys in
 * turn, lanes split the channels; per-warp online softmax, then a merge of
 * the 4 warps. Any dtype and head_dim <= 256. */
#define SIMT_WARPS 4
template <typename T>
__global__ void __launch_bounds__(SIMT_WARPS * 32)
    decode_simt_kernel(const T *q,   // (B, H, hd)
                       T *out,       // (B, H, hd)
                       float *ws,    // partials (S > 1)
                       lk_kv_plan_dev pl, lk_kv_batch_dev kv, int layer, int B, int H, int S,
                       int chunk, float scale_log2) {
    int s = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
    int G = pl.n_kv_heads, hd = pl.head_dim, g = h / (H / G);
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    Cache c = cache_of(pl, kv, layer, b, g);
    int len = kv.seq_len[b], ns, rs;
    key_ranges(c, len, &ns, &rs);
    extern __shared__ float sm[];
    float *qs = sm, *qk = sm + hd;               /* q, q over the kept channels */
    float *wm = qk + hd, *wl = wm + SIMT_WARPS;  /* per warp max, sum */
    float *wo = wl + SIMT_WARPS;                 /* per warp (hd) output */
    const T *qh = q + ((size_t)b * H + h) * hd;
    for (int d = threadIdx.x; d < hd; d += blockDim.x) {
        qs[d] = ldf(qh + d);
        qk[d] = d < c.w ? ldf(qh + c.chan[d]) : 0.0f;
    }
    __syncthreads();
    float m = -INFINITY, l = 0.0f, o[8];
#pragma unroll
    for (int t = 0; t < 8; t++) o[t] = 0.0f;
    int j0 = s * chunk, j1 = min(len, j0 + chunk);
    for (int j = j0 + warp; j < j1; j += SIMT_WARPS) {
        const T *kr, *vr;
        const float *qq = qs;
        int n = hd;
        if (j < ns || j >= rs) {
            int slot = full_slot(c, j);
            kr = full_k<T>(c, slot);
            vr = full_v<T>(c, slot);
        } else {
            if (c.w == 0) continue; /* middle keys of a width-0 head take no part */
            kr = mid_k<T>(c, j - c.sink);
            vr = mid_v<T>(c, j - c.sink);
            qq = qk;
            n = c.w;
        }
        float x = 0.0f;
        for (int i = lane; i < n; i += 32) x += qq[i] * ldf(kr + i);
        x = warp_sum(x);
        x *= scale_log2;
        float mn = fmaxf(m, x), cr = exp2f(m - mn), p = exp2f(x - mn);
        l = l * cr + p;
#pragma unroll
        for (int t = 0; t < 8; t++)
            if (lane + 32 * t < hd) o[t] = o[t] * cr + p * ldf(vr + lane + 32 * t);
        m = mn;
    }
    if (lane == 0) {
        wm[warp] = m;
        wl[warp] = l;
    }
#pragma unroll
    for (int t = 0; t < 8; t++)
        if (lane + 32 * t < hd) wo[warp * hd + lane + 32 * t] = o[t];
    __syncthreads();
    float M = -INFINITY;
    for (int w = 0; w < SIMT_WARPS; w++) M = fmaxf(M, wm[w]);
    float L = 0.0f;
    for (int w = 0; w < SIMT_WARPS; w++) L += wm[w] == -INFINITY ? 0.0f : wl[w] * exp2f(wm[w] - M);
    for (int d = threadIdx.x; d < hd; d += blockDim.x) {
        float acc = 0.0f;
        for (int w = 0; w < SIMT_WARPS; w++)
            if (wm[w] != -INFINITY) acc += wo[w * hd + d] * exp2f(wm[w] - M);
        put_result(out, ws, B, H, S, b, h, s, hd, d, L > 0.0f ? acc / L : 0.0f,
                   L > 0.0f ? M + log2f(L) : -INFINITY);
    }
}

/* -------------------------------------------- decode: the tensor-core kernel */

/* One block per (split, kv head, sequence), DW warps. The split's keys fall
 * in up to three ranges (sink slots, middle rows, ring slots); each range is
 * cut into tiles of 16 keys and warp w takes tiles w, w + DW, ... through its
 * own DS-stage cp.async pipeline (no block barrier in the loop). Per tile:
 * S (16 query rows: the group's heads, zero-padded, x 16 keys) = Q K^T over
 * the full channels (sink, ring) or the kept ones (middle: the query gathered
 * to the plan's channel list, zero-padded to a multiple of 16), online
 * softmax in f32 (log2 domain), O += P V. The warps' states merge at the end.
 * Copies: lane r < 16 finds row r's page one tile ahead (the page-table load
 * is off the critical path), the row addresses go round by shuffles, and each
 * copy instruction moves whole rows (512 contiguous bytes of a page). */
template <int HD, int DW, int DS_> struct DecodeCfg {
    static constexpr int RS = HD + 8;      /* smem row stride (elements): 16 B pad, no ldmatrix conflicts */
    static constexpr int DS = DS_;          /* pipeline stages a warp */
    static constexpr int TILE = 16 * RS;   /* one K or V tile (elements) */
    static constexpr size_t SMEM = (size_t)(2 * TILE + DW * DS * 2 * TILE) * sizeof(bf16);
};

/* Copy 8 elements (16 B) of a row into shared memory: cp.async when the
 * source is 16-byte aligned and whole, else element by element (an odd
 * width); n = elements present (0..8), the rest zero. */
__device__ __forceinline__ void load8(bf16 *dst, const bf16 *src, int n) {
    if (n == 8 && ((uintptr_t)src & 15) == 0) {
        cp_async16(dst, src, 16);
    } else if (n <= 0) {
        *(uint4 *)dst = make_uint4(0, 0, 0, 0);
    } else {
        for (int i = 0; i < 8; i++) dst[i] = i < n ? src[i] : __float2bfloat16(0.0f);
    }
}

struct Tile {
    int mid, p0, cnt; /* middle range?, first position, keys (1..16) */
};
struct RowRef {
    int pid, rip; /* page id (-1: no row), row in the page */
};

template <int HD, int DW, int DS_>
__global__ void __launch_bounds__(DW * 32, 1)
    decode_mma_kernel(const bf16 *q,   // (B, H, HD)
                      bf16 *out,       // (B, H, HD)
                      float *ws,       // partials (S > 1)
                      lk_kv_plan_dev pl, lk_kv_batch_dev kv, int layer, int B, int H, int S,
                      int chunk, float scale_log2) {
    typedef DecodeCfg<HD, DW, DS_> C;
    constexpr int RS = C::RS, KC = HD / 16, DS = C::DS;
    int s = blockIdx.x, g = blockIdx.y, b = blockIdx.z;
    int grp = H / pl.n_kv_heads;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    extern __shared__ __align__(16) unsigned char smraw[];
    bf16 *qs = (bf16 *)smraw;        /* [16][RS] the group's query rows */
    bf16 *qgs = qs + C::TILE;        /* [16][RS] the same over the kept channels */
    bf16 *wt = qgs + C::TILE + (size_t)warp * DS * 2 * C::TILE; /* this warp's stages: K, V */
    Cache c = cache_of(pl, kv, layer, b, g);
    int w = c.w, wpad = (w + 15) & ~15, len = kv.seq_len[b], ns, rs;
    key_ranges(c, len, &ns, &rs);

    const bf16 *qb = q + ((size_t)b * H + (size_t)g * grp) * HD;
    for (int i = threadIdx.x; i < 16 * HD; i += DW * 32) {
        int r = i / HD, d = i % HD;
        bool ok = r < grp;
        qs[r * RS + d] = ok ? qb[r * HD + d] : __float2bfloat16(0.0f);
        qgs[r * RS + d] = ok && d < w ? qb[r * HD + c.chan[d]] : __float2bfloat16(0.0f);
    }
    __syncthreads();
    uint32_t qa[KC][4], qga[KC][4];
#pragma unroll
    for (int kc = 0; kc < KC; kc++) {
        int off = (lane & 15) * RS + kc * 16 + (lane >> 4) * 8;
        ldsm_x4(qa[kc], qs + off);
        ldsm_x4(qga[kc], qgs + off);
    }

    /* this split's tiles: sink [a0, a1), middle [m0, m1), ring [r0, r1) */
    int j0 = s * chunk, j1 = min(len, j0 + chunk);
    int a0 = j0, a1 = min(j1, ns);
    int m0 = max(j0, c.sink), m1 = w > 0 ? min(j1, rs) : m0;
    int r0 = max(j0, rs), r1 = j1;
    int ta = a1 > a0 ? (a1 - a0 + 15) / 16 : 0;
    int tm = m1 > m0 ? (m1 - m0 + 15) / 16 : 0;
    int tr = r1 > r0 ? (r1 - r0 + 15) / 16 : 0;
    int T = ta + tm + tr;
    int nk = T > warp ? (T - warp + DW - 1) / DW : 0;
    auto tile_at = [&](int t) {
        Tile x;
        if (t < ta) {
            x.mid = 0, x.p0 = a0 + 16 * t, x.cnt = min(16, a1 - x.p0);
        } else if (t < ta + tm) {
            x.mid = 1, x.p0 = m0 + 16 * (t - ta), x.cnt = min(16, m1 - x.p0);
        } else {
            x.mid = 0, x.p0 = r0 + 16 * (t - ta - tm), x.cnt = min(16, r1 - x.p0);
        }
        return x;
    };
    /* row (lane % 16) of this warp's k-th tile: its page (a global load) */
    auto row_ref = [&](int k) {
        RowRef rr;
        rr.pid = -1, rr.rip = 0;
        if (k < nk) {
            Tile x = tile_at(warp + k * DW);
            int r = lane & 15;
            if (r < x.cnt) {
                int j = x.p0 + r;
                if (x.mid) {
                    int m = j - c.sink;
                    rr.pid = c.midp[m / c.P], rr.rip = m % c.P;
                } else {
                    int slot = full_slot(c, j);
                    rr.pid = c.fullp[slot / c.F], rr.rip = slot % c.F;
                }
            }
        }
        return rr;
    };
    auto load_tile = [&](int k, int stage, RowRef rr) {
        Tile x = tile_at(warp + k * DW);
        bf16 *ks = wt + (size_t)stage * 2 * C::TILE, *vs = ks + C::TILE;
        const bf16 *kr = nullptr, *vr = nullptr;
        if (rr.pid >= 0) {
            const bf16 *pg = (const bf16 *)(c.pool + (size_t)rr.pid * c.bb);
            kr = x.mid ? pg + c.mk + (int64_t)rr.rip * w : pg + c.fk + (int64_t)rr.rip * HD;
            vr = pg + (x.mid ? c.mv : c.fv) + (int64_t)rr.rip * HD;
        }
        int kw = x.mid ? w : HD, cpr = (x.mid ? wpad : HD) / 8; /* 16 B chunks a K row */
        for (int i = lane; i < 16 * cpr; i += 32) {
            int r = i / cpr, ch = i - r * cpr;
            const bf16 *src = (const bf16 *)__shfl_sync(0xffffffffu, (unsigned long long)kr, r);
            load8(ks + r * RS + ch * 8, src + ch * 8, src ? min(8, kw - ch * 8) : 0);
        }
#pragma unroll
        for (int i = lane; i < 16 * HD / 8; i += 32) {
            int r = i / (HD / 8), ch = i % (HD / 8);
            const bf16 *src = (const bf16 *)__shfl_sync(0xffffffffu, (unsigned long long)vr, r);
            load8(vs + r * RS + ch * 8, src + ch * 8, src ? 8 : 0);
        }
    };

    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
    float o[HD / 8][4];
#pragma unroll
    for (int nt = 0; nt < HD / 8; nt++) o[nt][0] = o[nt][1] = o[nt][2] = o[nt][3] = 0.0f;

#pragma unroll
    for (int t = 0; t < DS - 1; t++) {
        load_tile(t, t, row_ref(t));
        cp_async_commit();
    }
    RowRef next = row_ref(DS - 1);
    for (int t = 0; t < nk; t++) {
        if (t + DS - 1 < nk) load_tile(t + DS - 1, (t + DS - 1) % DS, next);
        cp_async_commit();
        next = row_ref(t + DS); /* used next iteration: the load overlaps this tile */
        cp_async_wait<DS - 1>();
        __syncwarp();
        Tile x = tile_at(warp + t * DW);
        const bf16 *ks = wt + (size_t)(t % DS) * 2 * C::TILE, *vs = ks + C::TILE;
        /* two accumulator chains a key group (even / odd channel blocks) */
        float sc[2][4], sd[2][4];
#pragma unroll
        for (int i = 0; i < 4; i++) sc[0][i] = sc[1][i] = sd[0][i] = sd[1][i] = 0.0f;
        int krow = (lane & 7) + (lane >> 4) * 8, kcol = ((lane >> 3) & 1) * 8;
        if (x.mid) {
#pragma unroll
            for (int kc = 0; kc < KC; kc++)
                if (kc * 16 < wpad) {
                    uint32_t bk[4];
                    ldsm_x4(bk, ks + krow * RS + kc * 16 + kcol);
                    mma_bf16(kc & 1 ? sd[0] : sc[0], qga[kc], bk[0], bk[1]);
                    mma_bf16(kc & 1 ? sd[1] : sc[1], qga[kc], bk[2], bk[3]);
                }
        } else {
#pragma unroll
            for (int kc = 0; kc < KC; kc++) {
                uint32_t bk[4];
                ldsm_x4(bk, ks + krow * RS + kc * 16 + kcol);
                mma_bf16(kc & 1 ? sd[0] : sc[0], qa[kc], bk[0], bk[1]);
                mma_bf16(kc & 1 ? sd[1] : sc[1], qa[kc], bk[2], bk[3]);
            }
        }
        /* rows g = lane / 4 (i = 0, 1) and g + 8 (i = 2, 3); key 8 nt + 2 (lane % 4) + i % 2 */
        float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
        for (int nt = 0; nt < 2; nt++)
#pragma unroll
            for (int i = 0; i < 4; i++) {
                int key = nt * 8 + 2 * (lane & 3) + (i & 1);
                float v = key < x.cnt ? (sc[nt][i] + sd[nt][i]) * scale_log2 : -INFINITY;
                sc[nt][i] = v;
                mx[i >> 1] = fmaxf(mx[i >> 1], v);
            }
        float cr[2];
#pragma unroll
        for (int r = 0; r < 2; r++) {
            mx[r] = quad_max(mx[r]);
            float mn = fmaxf(m[r], mx[r]);
            cr[r] = exp2f(m[r] - mn);
            m[r] = mn;
            l[r] *= cr[r];
        }
#pragma unroll
        for (int nt = 0; nt < 2; nt++)
#pragma unroll
            for (int i = 0; i < 4; i++) {
                float p = exp2f(sc[nt][i] - m[i >> 1]);
                sc[nt][i] = p;
                l[i >> 1] += p;
            }
        uint32_t pa[4] = {pack_bf16(sc[0][0], sc[0][1]), pack_bf16(sc[0][2], sc[0][3]),
                          pack_bf16(sc[1][0], sc[1][1]), pack_bf16(sc[1][2], sc[1][3])};
        int vrow = (lane & 7) + ((lane >> 3) & 1) * 8, vcol = (lane >> 4) * 8;
#pragma unroll
        for (int dn = 0; dn < HD / 16; dn++) {
            uint32_t bv[4];
            ldsm_x4_t(bv, vs + vrow * RS + dn * 16 + vcol);
#pragma unroll
            for (int i = 0; i < 4; i++) {
                o[2 * dn][i] *= cr[i >> 1];
                o[2 * dn + 1][i] *= cr[i >> 1];
            }
            mma_bf16(o[2 * dn], pa, bv[0], bv[1]);
            mma_bf16(o[2 * dn + 1], pa, bv[2], bv[3]);
        }
        __syncwarp();
    }
    cp_async_wait<0>();
    __syncwarp();
#pragma unroll
    for (int r = 0; r < 2; r++) {
        l[r] = quad_sum(l[r]);
    }
    /* the warps' states through shared memory (this warp's own stages) */
    float *wo = (float *)wt;                 /* [16][HD] */
    float *wml = wo + 16 * HD;               /* [16] max, [16] sum */
    int gr = lane >> 2;
#pragma unroll
    for (int nt = 0; nt < HD / 8; nt++) {
        int col = nt * 8 + 2 * (lane & 3);
        wo[gr * HD + col] = o[nt][0];
        wo[gr * HD + col + 1] = o[nt][1];
        wo[(gr + 8) * HD + col] = o[nt][2];
        wo[(gr + 8) * HD + col + 1] = o[nt][3];
    }
    if ((lane & 3) == 0) {
        wml[gr] = m[0];
        wml[gr + 8] = m[1];
        wml[16 + gr] = l[0];
        wml[16 + gr + 8] = l[1];
    }
    __syncthreads();
    const size_t wstride = (size_t)DS * 2 * C::TILE * sizeof(bf16) / sizeof(float);
    const float *base = (const float *)(qgs + C::TILE);
    for (int i = threadIdx.x; i < grp * HD; i += DW * 32) {
        int r = i / HD, d = i % HD;
        float M = -INFINITY;
#pragma unroll
        for (int v = 0; v < DW; v++) M = fmaxf(M, base[v * wstride + 16 * HD + r]);
        float L = 0.0f, acc = 0.0f;
#pragma unroll
        for (int v = 0; v < DW; v++) {
            const float *bw = base + v * wstride;
            float mv = bw[16 * HD + r];
            if (mv == -INFINITY) continue;
            float f = exp2f(mv - M);
            L += bw[16 * HD + 16 + r] * f;
            acc += bw[r * HD + d] * f;
        }
        put_result(out, ws, B, H, S, b, g * grp + r, s, HD, d, L > 0.0f ? acc / L : 0.0f,
                   L > 0.0f ? M + log2f(L) : -INFINITY);
    }
}

/* The transposed form, for GQA groups of up to 8 query heads (Llama, Qwen,
 * Mistral): S^T (16 keys x 8 heads) = K Q^T, so the keys are the MMA rows and
 * no row is padding; P^T goes to the B operand of O^T (hd x 8 heads) += V^T P^T
 * through movmatrix (an in-register 8x8 transpose). Half the MMAs of the
 * 16-row form and half its accumulator registers. Tiles, pipeline and merge
 * as in decode_mma_kernel; a tile whose rows are consecutive in one page
 * (almost all) is copied as one contiguous range, 512 B an instruction,
 * with no per-row address work.
 * Template knobs (v6, NOTES-attention.md): SWZ stores tile rows unpadded
 * with their 16-byte chunks XOR-swizzled by row (ldmatrix stays free of bank
 * conflicts), so 14 warps x 2 stages fit in shared memory (28 tiles in
 * flight an SM instead of 24: the narrow LeanK tiles were short of bytes in
 * flight); LAZY keeps a per-head running max that moves only when a tile's
 * scores pass it by more than 8 (log2 units): the common tile costs one vote
 * instead of a 3-level shuffle reduction and a rescale (FlashAttention-4's
 * conditional rescaling; the exponentials stay <= 2^8, exact in f32 and as
 * relative as ever in bf16), and at <= 12 warps it sums Q K^T in 4 chains
 * instead of 2 (13-14 warps a block get 128 registers). */
__device__ __forceinline__ uint32_t movt(uint32_t x) {
    uint32_t y;
    asm volatile("movmatrix.sync.aligned.m8n8.trans.b16 %0, %1;\n" : "=r"(y) : "r"(x));
    return y;
}

template <int HD, int DW, int DS_, bool SWZ> struct DecodeTCfg {
    static constexpr int RS = SWZ ? HD : HD + 8; /* smem row stride (elements) */
    static constexpr int DS = DS_;
    static constexpr int TILE = 16 * RS;
    static constexpr size_t SMEM = (size_t)DW * DS * 2 * TILE * sizeof(bf16);
    /* element offset of 16-byte chunk ch of row r in a tile */
    static __device__ __forceinline__ int at(int r, int ch) { return r * RS + (SWZ ? ch ^ (r & 7) : ch) * 8; }
};

#define LAZY_TH 8.0f

template <int HD, int DW, int DS_, bool SWZ, bool LAZY>
__global__ void __launch_bounds__(DW * 32, 1)
    decode_t_kernel(const bf16 *q,   // (B, H, HD)
                    bf16 *out,       // (B, H, HD)
                    float *ws,       // partials (S > 1)
                    lk_kv_plan_dev pl, lk_kv_batch_dev kv, int layer, int B, int H, int S,
                    int chunk, float scale_log2) {
    typedef DecodeTCfg<HD, DW, DS_, SWZ> C;
    constexpr int KC = HD / 16, DS = C::DS;
    const int G = pl.n_kv_heads, s = blockIdx.x, g = blockIdx.y, b = blockIdx.z;
    int grp = H / G;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, gl = lane >> 2, tq = lane & 3;
    extern __shared__ __align__(16) unsigned char smraw[];
    bf16 *wt = (bf16 *)smraw + (size_t)warp * DS * 2 * C::TILE; /* this warp's stages: K, V */
    Cache c = cache_of(pl, kv, layer, b, g);
    int w = c.w, wpad = (w + 15) & ~15, len = kv.seq_len[b], ns, rs;
    key_ranges(c, len, &ns, &rs);

    int j0 = s * chunk, j1 = min(len, j0 + chunk);
    int a0 = j0, a1 = min(j1, ns);
    int m0 = max(j0, c.sink), m1 = w > 0 ? min(j1, rs) : m0;
    int r0 = max(j0, rs), r1 = j1;
    int ta = a1 > a0 ? (a1 - a0 + 15) / 16 : 0;
    int tm = m1 > m0 ? (m1 - m0 + 15) / 16 : 0;
    int tr = r1 > r0 ? (r1 - r0 + 15) / 16 : 0;
    int T = ta + tm + tr;
    int nk = T > warp ? (T - warp + DW - 1) / DW : 0;
    const uint32_t mid_magic = ((1u << 20) + wpad / 8 - 1) / (wpad / 8 > 0 ? wpad / 8 : 1);
    auto tile_at = [&](int t) {
        Tile x;
        if (t < ta) {
            x.mid = 0, x.p0 = a0 + 16 * t, x.cnt = min(16, a1 - x.p0);
        } else if (t < ta + tm) {
            x.mid = 1, x.p0 = m0 + 16 * (t - ta), x.cnt = min(16, m1 - x.p0);
        } else {
            x.mid = 0, x.p0 = r0 + 16 * (t - ta - tm), x.cnt = min(16, r1 - x.p0);
        }
        return x;
    };
    auto row_ref = [&](int k) {
        RowRef rr;
        rr.pid = -1, rr.rip = 0;
        if (k < nk) {
            Tile x = tile_at(warp + k * DW);
            int r = lane & 15;
            if (r < x.cnt) {
                int j = x.p0 + r;
                if (x.mid) {
                    int m = j - c.sink;
                    rr.pid = c.midp[m / c.P], rr.rip = m % c.P;
                } else {
                    int slot = full_slot(c, j);
                    rr.pid = c.fullp[slot / c.F], rr.rip = slot % c.F;
                }
            }
        }
        return rr;
    };
    auto load_tile = [&](int k, int stage, RowRef rr) {
        Tile x = tile_at(warp + k * DW);
        bf16 *ks = wt + (size_t)stage * 2 * C::TILE, *vs = ks + C::TILE;
        const bf16 *kr = nullptr, *vr = nullptr;
        if (rr.pid >= 0) {
            const bf16 *pg = (const bf16 *)(c.pool + (size_t)rr.pid * c.bb);
            kr = x.mid ? pg + c.mk + (int64_t)rr.rip * w : pg + c.fk + (int64_t)rr.rip * HD;
            vr = pg + (x.mid ? c.mv : c.fv) + (int64_t)rr.rip * HD;
        }
        int kw = x.mid ? w : HD, cpr = (x.mid ? wpad : HD) / 8; /* 16 B chunks a K row */
        /* one page, consecutive rows, aligned: the tile is two contiguous ranges */
        int pid0 = __shfl_sync(0xffffffffu, rr.pid, 0), pidl = __shfl_sync(0xffffffffu, rr.pid, x.cnt - 1);
        int rip0 = __shfl_sync(0xffffffffu, rr.rip, 0), ripl = __shfl_sync(0xffffffffu, rr.rip, x.cnt - 1);
        const bf16 *kb = (const bf16 *)__shfl_sync(0xffffffffu, (unsigned long long)kr, 0);
        const bf16 *vb = (const bf16 *)__shfl_sync(0xffffffffu, (unsigned long long)vr, 0);
        bool fast = pid0 == pidl && ripl - rip0 == x.cnt - 1 && (kw & 7) == 0 &&
                    (((uintptr_t)kb | (uintptr_t)vb) & 15) == 0;
        if (fast) {
            uint32_t magic = x.mid ? mid_magic : (1u << 20) / (HD / 8);
            for (int i = lane; i < 16 * cpr; i += 32) {
                int r = (int)((i * magic) >> 20), ch = i - r * cpr;
                bool ok = r < x.cnt && ch * 8 < kw;
                cp_async16(ks + C::at(r, ch), ok ? kb + r * kw + ch * 8 : kb, ok ? 16 : 0);
            }
#pragma unroll
            for (int i = lane; i < 16 * HD / 8; i += 32) {
                int r = i / (HD / 8), ch = i % (HD / 8);
                bool ok = r < x.cnt;
                cp_async16(vs + C::at(r, ch), ok ? vb + r * HD + ch * 8 : vb, ok ? 16 : 0);
            }
            return;
        }
        for (int i = lane; i < 16 * cpr; i += 32) {
            int r = i / cpr, ch = i - r * cpr;
            const bf16 *src = (const bf16 *)__shfl_sync(0xffffffffu, (unsigned long long)kr, r);
            load8(ks + C::at(r, ch), src + ch * 8, src ? min(8, kw - ch * 8) : 0);
        }
#pragma unroll
        for (int i = lane; i < 16 * HD / 8; i += 32) {
            int r = i / (HD / 8), ch = i % (HD / 8);
            const bf16 *src = (const bf16 *)__shfl_sync(0xffffffffu, (unsigned long long)vr, r);
            load8(vs + C::at(r, ch), src + ch * 8, src ? 8 : 0);
        }
    };

    /* this lane's heads: 2 tq, 2 tq + 1; O^T rows (channels) 16 mt + gl (+ 8) */
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
    float o[KC][4];
#pragma unroll
    for (int mt = 0; mt < KC; mt++) o[mt][0] = o[mt][1] = o[mt][2] = o[mt][3] = 0.0f;

#pragma unroll
    for (int t = 0; t < DS - 1; t++) {
        load_tile(t, t, row_ref(t));
        cp_async_commit();
    }
    /* (loaded once the first copies are in flight) Q^T as the B operand: lane
     * (gl, tq) holds head gl's channels 2tq, 2tq+1 (+8) of each 16-channel
     * block; qg the same over the kept channels (zero past the width) */
    uint32_t qf[KC][2], qg[KC][2];
    {
        const bf16 *qh = q + ((size_t)b * H + (size_t)g * grp + gl) * HD;
        bool ok = gl < grp;
        const bf16 z = __float2bfloat16(0.0f);
#pragma unroll
        for (int kc = 0; kc < KC; kc++)
#pragma unroll
            for (int u = 0; u < 2; u++) {
                int d = kc * 16 + 2 * tq + 8 * u;
                __nv_bfloat162 f, e;
                f.x = ok ? qh[d] : z;
                f.y = ok ? qh[d + 1] : z;
                e.x = ok && d < w ? qh[c.chan[d]] : z;
                e.y = ok && d + 1 < w ? qh[c.chan[d + 1]] : z;
                qf[kc][u] = *(uint32_t *)&f;
                qg[kc][u] = *(uint32_t *)&e;
            }
    }

    RowRef next = row_ref(DS - 1);
    /* ldmatrix row addresses: K as A (rows = keys), V^T as A (.trans) */
    int arow = lane & 15, ach = lane >> 4;
    int vrow = (lane & 7) + (lane >> 4) * 8, vch = (lane >> 3) & 1;
    for (int t = 0; t < nk; t++) {
        if (t + DS - 1 < nk) load_tile(t + DS - 1, (t + DS - 1) % DS, next);
        cp_async_commit();
        next = row_ref(t + DS);
        cp_async_wait<DS - 1>();
        __syncwarp();
        Tile x = tile_at(warp + t * DW);
        const bf16 *ks = wt + (size_t)(t % DS) * 2 * C::TILE, *vs = ks + C::TILE;
        /* independent Q K^T accumulator chains (4 spill at 13-14 warps: 128 registers) */
        constexpr int NCH = LAZY && DW <= 12 ? 4 : 2;
        float sc[NCH][4];
#pragma unroll
        for (int u = 0; u < NCH; u++) sc[u][0] = sc[u][1] = sc[u][2] = sc[u][3] = 0.0f;
        if (x.mid) {
#pragma unroll
            for (int kc = 0; kc < KC; kc++)
                if (kc * 16 < wpad) {
                    uint32_t ka[4];
                    ldsm_x4(ka, ks + C::at(arow, 2 * kc + ach));
                    mma_bf16(sc[kc % NCH], ka, qg[kc][0], qg[kc][1]);
                }
        } else {
#pragma unroll
            for (int kc = 0; kc < KC; kc++) {
                uint32_t ka[4];
                ldsm_x4(ka, ks + C::at(arow, 2 * kc + ach));
                mma_bf16(sc[kc % NCH], ka, qf[kc][0], qf[kc][1]);
            }
        }
        /* sa[i]: key gl + 8 (i >> 1), head 2 tq + (i & 1) */
        float sa[4];
#pragma unroll
        for (int i = 0; i < 4; i++) {
            int key = gl + 8 * (i >> 1);
            float v = sc[0][i] + sc[1][i];
            if (NCH == 4) v += sc[2 % NCH][i] + sc[3 % NCH][i];
            sa[i] = key < x.cnt ? v * scale_log2 : -INFINITY;
        }
        float mx[2] = {fmaxf(sa[0], sa[2]), fmaxf(sa[1], sa[3])};
        bool moved;
        float cr[2] = {1.0f, 1.0f};
        if (LAZY) {
            moved = __any_sync(0xffffffffu, mx[0] > m[0] + LAZY_TH || mx[1] > m[1] + LAZY_TH);
        } else {
            moved = true;
        }
        if (moved) {
#pragma unroll
            for (int h = 0; h < 2; h++) {
#pragma unroll
                for (int off = 4; off < 32; off <<= 1) mx[h] = fmaxf(mx[h], __shfl_xor_sync(0xffffffffu, mx[h], off));
                float mn = fmaxf(m[h], mx[h]);
                cr[h] = exp2f(m[h] - mn);
                m[h] = mn;
                l[h] *= cr[h];
            }
        }
#pragma unroll
        for (int i = 0; i < 4; i++) {
            sa[i] = exp2f(sa[i] - m[i & 1]);
            l[i & 1] += sa[i];
        }
        /* P^T (keys x heads) C fragments -> P (heads x keys) B fragments */
        uint32_t pb0 = movt(pack_bf16(sa[0], sa[1])), pb1 = movt(pack_bf16(sa[2], sa[3]));
        if (LAZY ? moved : __any_sync(0xffffffffu, cr[0] != 1.0f || cr[1] != 1.0f)) {
#pragma unroll
            for (int mt = 0; mt < KC; mt++) {
                o[mt][0] *= cr[0];
                o[mt][1] *= cr[1];
                o[mt][2] *= cr[0];
                o[mt][3] *= cr[1];
            }
        }
#pragma unroll
        for (int mt = 0; mt < KC; mt++) {
            uint32_t va[4];
            ldsm_x4_t(va, vs + C::at(vrow, 2 * mt + vch));
            mma_bf16(o[mt], va, pb0, pb1);
        }
        __syncwarp();
    }
    cp_async_wait<0>();
    __syncwarp();
#pragma unroll
    for (int h = 0; h < 2; h++)
#pragma unroll
        for (int off = 4; off < 32; off <<= 1) l[h] += __shfl_xor_sync(0xffffffffu, l[h], off);
    /* the warps' states through shared memory (this warp's own stages) */
    float *wo = (float *)wt;   /* [8 heads][HD] */
    float *wml = wo + 8 * HD;  /* [8] max, [8] sum */
#pragma unroll
    for (int mt = 0; mt < KC; mt++) {
        int ch = mt * 16 + gl;
        wo[(2 * tq) * HD + ch] = o[mt][0];
        wo[(2 * tq + 1) * HD + ch] = o[mt][1];
        wo[(2 * tq) * HD + ch + 8] = o[mt][2];
        wo[(2 * tq + 1) * HD + ch + 8] = o[mt][3];
    }
    if (gl == 0) {
        wml[2 * tq] = m[0];
        wml[2 * tq + 1] = m[1];
        wml[8 + 2 * tq] = l[0];
        wml[8 + 2 * tq + 1] = l[1];
    }
    __syncthreads();
    const size_t wstride = (size_t)DS * 2 * C::TILE * sizeof(bf16) / sizeof(float);
    const float *base = (const float *)smraw;
    for (int i = threadIdx.x; i < grp * HD; i += DW * 32) {
        int r = i / HD, d = i % HD;
        float M = -INFINITY;
#pragma unroll
        for (int v = 0; v < DW; v++) M = fmaxf(M, base[v * wstride + 8 * HD + r]);
        float L = 0.0f, acc = 0.0f;
#pragma unroll
        for (int v = 0; v < DW; v++) {
            const float *bw = base + v * wstride;
            float mv = bw[8 * HD + r];
            if (mv == -INFINITY) continue;
            float f = exp2f(mv - M);
            L += bw[8 * HD + 8 + r] * f;
            acc += bw[r * HD + d] * f;
        }
        put_result(out, ws, B, H, S, b, g * grp + r, s, HD, d, L > 0.0f ? acc / L : 0.0f,
                   L > 0.0f ? M + log2f(L) : -INFINITY);
    }
}

template <int HD, int DW, int DS, bool SWZ, bool LAZY>
static int launch_decode_t(const void *q, void *out, const lk_kv_plan_dev *pl, const lk_kv_batch_dev *kv,
                           int layer, int B, int H, int S, int chunk, float sl2, float *ws, cudaStream_t st) {
    typedef DecodeTCfg<HD, DW, DS, SWZ> C;
    static_assert(DS * 2 * C::TILE * sizeof(bf16) >= (8 * HD + 16) * sizeof(float), "merge fits a warp's stages");
    static unsigned attr_dev;
    TRY(smem_optin(&attr_dev, (const void *)decode_t_kernel<HD, DW, DS, SWZ, LAZY>, C::SMEM));
    dim3 grid(S, pl->n_kv_heads, B);
    decode_t_kernel<HD, DW, DS, SWZ, LAZY><<<grid, DW * 32, C::SMEM, st>>>(
        (const bf16 *)q, (bf16 *)out, ws, *pl, *kv, layer, B, H, S, chunk, sl2);
    CU_LAUNCHED();
    return 0;
}

template <int HD, int DW, int DS>
static int launch_decode_mma(const void *q, void *out, const lk_kv_plan_dev *pl, const lk_kv_batch_dev *kv,
                             int layer, int B, int H, int S, int chunk, float sl2, float *ws,
                             cudaStream_t st) {
    typedef DecodeCfg<HD, DW, DS> C;
    static unsigned attr_dev;
    TRY(smem_optin(&attr_dev, (const void *)decode_mma_kernel<HD, DW, DS>, C::SMEM));
    dim3 grid(S, pl->n_kv_heads, B);
    decode_mma_kernel<HD, DW, DS><<<grid, DW * 32, C::SMEM, st>>>(
        (const bf16 *)q, (bf16 *)out, ws, *pl, *kv, layer, B, H, S, chunk, sl2);
    CU_LAUNCHED();
    return 0;
}

/* The transposed kernel's configurations at hd 128 (hd 64 runs 8 warps x 5
 * stages, padded, eager rescale): {warps, swizzled rows, lazy rescale};
 * form 0 is v4's kernel, 1 (the default) v6's, 2 and 3 v6 less one knob
 * (NOTES-attention.md). LEANK_DECODE_FORM picks one (read once);
 * lk_cuda_decode_select(form) overrides it (tests, leank-bench kernel --ab;
 * -1: back to the variable or the default) and returns the form in effect. */
#define N_DECODE_FORMS 4
#define DEFAULT_FORM 1
static const int decode_forms[N_DECODE_FORMS][3] = {{12, 0, 0}, {14, 1, 1}, {14, 1, 0}, {12, 1, 1}};
static int g_form = -1;
static int decode_form(void) {
    if (g_form < 0) {
        const char *v = getenv("LEANK_DECODE_FORM");
        g_form = v ? atoi(v) : DEFAULT_FORM;
        if (g_form < 0 || g_form >= N_DECODE_FORMS) g_form = DEFAULT_FORM;
    }
    return g_form;
}
extern "C" int lk_cuda_decode_select(int form) {
    g_form = form >= 0 && form < N_DECODE_FORMS ? form : -1;
    return decode_form();
}

extern "C" int lk_cuda_decode_attention(lk_kv_dtype dt, const void *q, void *out,
                                        const lk_kv_plan_dev *plan, const lk_kv_batch_dev *kv,
                                        int layer, int B, int n_heads, int max_len, float scale,
                                        void *workspace, size_t workspace_bytes, void *stream) {
    cudaStream_t st = (cudaStream_t)stream;
    int hd = plan->head_dim, G = plan->n_kv_heads, H = n_heads;
    if (B <= 0) return 0;
    if (hd <= 0 || hd > 256 || G <= 0 || H % G || max_len <= 0) return (int)cudaErrorInvalidValue;
    int grp = H / G;
    bool mma = dt == LK_KV_BF16 && (hd == 64 || hd == 128) && grp <= 16;
    int S = n_splits(B * (mma ? G : H), max_len);
    static int forced = -1; /* LEANK_DECODE_SPLITS=N: a fixed split count, for measuring the rule */
    if (forced < 0) {
        const char *v = getenv("LEANK_DECODE_SPLITS");
        forced = v ? atoi(v) : 0;
        if (forced < 0) forced = 0;
    }
    if (forced) S = forced < max_splits(max_len) ? forced : max_splits(max_len);
    int chunk = (max_len + S - 1) / S;
    chunk = (chunk + 15) & ~15;
    S = (max_len + chunk - 1) / chunk;
    size_t need = S > 1 ? (size_t)B * H * S * (hd + 1) * sizeof(float) : 0;
    if (need > workspace_bytes || (need && !workspace)) return (int)cudaErrorInvalidValue;
    float *ws = (float *)workspace, sl2 = scale * LOG2E;
    if (mma) {
        /* hd 128, groups <= 8: 14 warps x 2 stages on swizzled rows with the lazy
         * rescale (form 1): 5-6 % faster than v4's 12 x 2 on LeanK and dense
         * (NOTES-attention.md, v6) */
        int e;
        const int *f = decode_forms[decode_form()];
        if (grp <= 8 && hd == 64)
            e = launch_decode_t<64, 8, 5, false, false>(q, out, plan, kv, layer, B, H, S, chunk, sl2, ws, st);
        else if (grp <= 8 && f[0] == 14 && f[2])
            e = launch_decode_t<128, 14, 2, true, true>(q, out, plan, kv, layer, B, H, S, chunk, sl2, ws, st);
        else if (grp <= 8 && f[0] == 14)
            e = launch_decode_t<128, 14, 2, true, false>(q, out, plan, kv, layer, B, H, S, chunk, sl2, ws, st);
        else if (grp <= 8 && f[1])
            e = launch_decode_t<128, 12, 2, true, true>(q, out, plan, kv, layer, B, H, S, chunk, sl2, ws, st);
        else if (grp <= 8)
            e = launch_decode_t<128, 12, 2, false, false>(q, out, plan, kv, layer, B, H, S, chunk, sl2, ws, st);
        else if (hd == 64)
            e = launch_decode_mma<64, 8, 5>(q, out, plan, kv, layer, B, H, S, chunk, sl2, ws, st);
        else
            e = launch_decode_mma<128, 8, 3>(q, out, plan, kv, layer, B, H, S, chunk, sl2, ws, st);
        if (e) return e;
    } else {
        dim3 grid(S, H, B);
        size_t sm = (2 * hd + 2 * SIMT_WARPS + SIMT_WARPS * hd) * sizeof(float);
        if (dt == LK_KV_BF16)
            decode_simt_kernel<bf16><<<grid, SIMT_WARPS * 32, sm, st>>>(
                (const bf16 *)q, (bf16 *)out, ws, *plan, *kv, layer, B, H, S, chunk, sl2);
        else
            decode_simt_kernel<float><<<grid, SIMT_WARPS * 32, sm, st>>>(
                (const float *)q, (float *)out, ws, *plan, *kv, layer, B, H, S, chunk, sl2);
        CU_LAUNCHED();
    }
    if (S > 1) {
        const float *lse = ws + (size_t)B * H * S * hd;
        dim3 grid(H, B);
        if (dt == LK_KV_BF16)
            decode_merge_kernel<bf16><<<grid, 128, 0, st>>>((bf16 *)out, ws, lse, H, S, hd);
        else
            decode_merge_kernel<float><<<grid, 128, 0, st>>>((float *)out, ws, lse, H, S, hd);
        CU_LAUNCHED();
    }
    return 0;
}

/* ----------------------------------------------------- the store launchers */

extern "C" int lk_cuda_kv_append(lk_kv_dtype dt, const void *k, const void *v,
                                 const lk_kv_plan_dev *plan, const lk_kv_batch_dev *kv, int layer,
                                 int B, void *stream) {
    if (B <= 0) return 0;
    dim3 grid(B, plan->n_kv_heads);
    cudaStream_t st = (cudaStream_t)stream;
    if (dt == LK_KV_BF16)
        kv_append_kernel<bf16><<<grid, 128, 0, st>>>((const bf16 *)k, (const bf16 *)v, *plan, *kv, layer);
    else
        kv_append_kernel<float><<<grid, 128, 0, st>>>((const float *)k, (const float *)v, *plan, *kv, layer);
    CU_LAUNCHED();
    return 0;
}

extern "C" int lk_cuda_kv_prefill(lk_kv_dtype dt, const void *k, const void *v,
                                  const lk_kv_plan_dev *plan, const lk_kv_batch_dev *kv, int layer,
                                  int n, void *stream) {
    if (n <= 0) return 0;
    dim3 grid((n + KV_ROWS - 1) / KV_ROWS, plan->n_kv_heads);
    cudaStream_t st = (cudaStream_t)stream;
    if (dt == LK_KV_BF16)
        kv_prefill_kernel<bf16><<<grid, 32 * KV_WARPS, 0, st>>>((const bf16 *)k, (const bf16 *)v, *plan, *kv, layer, n);
    else
        kv_prefill_kernel<float><<<grid, 32 * KV_WARPS, 0, st>>>((const float *)k, (const float *)v, *plan, *kv, layer, n);
    CU_LAUNCHED();
    return 0;
}

extern "C" int lk_cuda_kv_gather(lk_kv_dtype dt, void *k, void *v, const lk_kv_plan_dev *plan,
                                 const lk_kv_batch_dev *kv, int layer, int n, void *stream) {
    if (n <= 0) return 0;
    dim3 grid((n + KV_ROWS - 1) / KV_ROWS, plan->n_kv_heads);
    cudaStream_t st = (cudaStream_t)stream;
    if (dt == LK_KV_BF16)
        kv_gather_kernel<bf16><<<grid, 32 * KV_WARPS, 0, st>>>((bf16 *)k, (bf16 *)v, *plan, *kv, layer, n);
    else
        kv_gather_kernel<float><<<grid, 32 * KV_WARPS, 0, st>>>((float *)k, (float *)v, *plan, *kv, layer, n);
    CU_LAUNCHED();
    return 0;
}

/* ------------------------------------------------- prefill: SIMT fallback */

/* One warp per (query row, head): online softmax over keys 0 .. i, lanes
 * split the channels. Any dtype, hd <= 256. */
template <typename T>
__global__ void __launch_bounds__(128)
    prefill_simt_kernel(const T *q,  // (n, H, hd)
                        const T *k,  // (n, G, hd)
                        const T *v,  // (n, G, hd)
                        T *out,      // (n, H, hd)
                        int n, int H, int G, int hd, float scale_log2) {
    int i = blockIdx.x * 4 + (threadIdx.x >> 5), h = blockIdx.y, lane = threadIdx.x & 31;
    if (i >= n) return;
    int g = h / (H / G);
    const T *qr = q + ((size_t)i * H + h) * hd;
    float qv[8], o[8];
#pragma unroll
    for (int t = 0; t < 8; t++) {
        qv[t] = lane + 32 * t < hd ? ldf(qr + lane + 32 * t) : 0.0f;
        o[t] = 0.0f;
    }
    float m = -INFINITY, l = 0.0f;
    for (int j = 0; j <= i; j++) {
        const T *kr = k + ((size_t)j * G + g) * hd, *vr = v + ((size_t)j * G + g) * hd;
        float x = 0.0f;
#pragma unroll
        for (int t = 0; t < 8; t++)
            if (lane + 32 * t < hd) x += qv[t] * ldf(kr + lane + 32 * t);
        x = warp_sum(x);
        x *= scale_log2;
        float mn = fmaxf(m, x), cr = exp2f(m - mn), p = exp2f(x - mn);
        l = l * cr + p;
#pragma unroll
        for (int t = 0; t < 8; t++)
            if (lane + 32 * t < hd) o[t] = o[t] * cr + p * ldf(vr + lane + 32 * t);
        m = mn;
    }
    T *orow = out + ((size_t)i * H + h) * hd;
#pragma unroll
    for (int t = 0; t < 8; t++)
        if (lane + 32 * t < hd) stf(orow + lane + 32 * t, o[t] / l);
}

/* ------------------------------------------ prefill: tensor-core flash (bf16) */

/* FA2-style: one block per (64-row query tile, query head), 4 warps of 16
 * query rows; K/V tiles of 64 keys double-buffered by cp.async; S = Q K^T and
 * O += P V on mma.sync m16n8k16 with f32 accumulators; online softmax in the
 * log2 domain. Query tiles are visited longest-first (the causal triangle). */
#define PBN 64
template <int HD> struct PrefillCfg {
    static constexpr int RS = HD + 8;
    /* the Q tile is staged in the second K/V stage before that stage's first use */
    static constexpr size_t SMEM = (size_t)(4 * PBN * RS) * sizeof(bf16);
};

template <int HD, int PW, int MINB>
__global__ void __launch_bounds__(PW * 32, MINB)
    prefill_mma_kernel(const bf16 *q,  // (n, H, HD)
                       const bf16 *k,  // (n, G, HD)
                       const bf16 *v,  // (n, G, HD)
                       bf16 *out,      // (n, H, HD)
                       int n, int H, int G, float scale_log2) {
    constexpr int RS = PrefillCfg<HD>::RS, KC = HD / 16, PBM = 16 * PW;
    static_assert(PBM <= 2 * PBN, "Q staging fits one K/V stage");
    int qt = gridDim.x - 1 - blockIdx.x, h = blockIdx.y, g = h / (H / G);
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    extern __shared__ __align__(16) unsigned char smraw[];
    bf16 *kvs = (bf16 *)smraw;          /* [2 stages][K, V][PBN][RS] */
    bf16 *qs = kvs + 2 * PBN * RS;      /* [PBM][RS] in stage 1, until tile 1 loads */
    int q0 = qt * PBM;
    size_t qstride = (size_t)H * HD, kstride = (size_t)G * HD;
    for (int i = threadIdx.x; i < PBM * HD / 8; i += PW * 32) {
        int r = i / (HD / 8), ch = i % (HD / 8);
        bool ok = q0 + r < n;
        cp_async16(qs + r * RS + ch * 8, q + (ok ? (q0 + r) * qstride + (size_t)h * HD + ch * 8 : 0), ok ? 16 : 0);
    }
    cp_async_commit();
    auto load_kv = [&](int kt, int stage) {
        bf16 *ks = kvs + (size_t)stage * 2 * PBN * RS, *vs = ks + PBN * RS;
        int k0 = kt * PBN;
        for (int i = threadIdx.x; i < PBN * HD / 8; i += PW * 32) {
            int r = i / (HD / 8), ch = i % (HD / 8);
            bool ok = k0 + r < n;
            size_t o = ok ? (k0 + r) * kstride + (size_t)g * HD + ch * 8 : 0;
            cp_async16(ks + r * RS + ch * 8, k + o, ok ? 16 : 0);
            cp_async16(vs + r * RS + ch * 8, v + o, ok ? 16 : 0);
        }
    };
    int last = min(n - 1, q0 + PBM - 1); /* keys this tile can see: 0 .. last */
    int nkt = last / PBN + 1;
    load_kv(0, 0);
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();
    uint32_t qa[KC][4];
#pragma unroll
    for (int kc = 0; kc < KC; kc++)
        ldsm_x4(qa[kc], qs + (warp * 16 + (lane & 15)) * RS + kc * 16 + (lane >> 4) * 8);
    __syncthreads(); /* stage 1 is free for tile 1 */

    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
    float o[HD / 8][4];
#pragma unroll
    for (int nt = 0; nt < HD / 8; nt++) o[nt][0] = o[nt][1] = o[nt][2] = o[nt][3] = 0.0f;
    int row0 = q0 + warp * 16 + (lane >> 2); /* rows row0 (i < 2), row0 + 8 (i >= 2) */
    int krow = (lane & 7) + (lane >> 4) * 8, kcol = ((lane >> 3) & 1) * 8;
    int vrow = (lane & 7) + ((lane >> 3) & 1) * 8, vcol = (lane >> 4) * 8;
    for (int kt = 0; kt < nkt; kt++) {
        if (kt + 1 < nkt) load_kv(kt + 1, (kt + 1) & 1);
        cp_async_commit();
        cp_async_wait<1>();
        __syncthreads();
        const bf16 *ks = kvs + (size_t)(kt & 1) * 2 * PBN * RS, *vs = ks + PBN * RS;
        float sc[PBN / 8][4];
#pragma unroll
        for (int nt = 0; nt < PBN / 8; nt++) sc[nt][0] = sc[nt][1] = sc[nt][2] = sc[nt][3] = 0.0f;
#pragma unroll
        for (int kc = 0; kc < KC; kc++)
#pragma unroll
            for (int np = 0; np < PBN / 16; np++) {
                uint32_t bk[4];
                ldsm_x4(bk, ks + (np * 16 + krow) * RS + kc * 16 + kcol);
                mma_bf16(sc[2 * np], qa[kc], bk[0], bk[1]);
                mma_bf16(sc[2 * np + 1], qa[kc], bk[2], bk[3]);
            }
        int k0 = kt * PBN;
        bool edge = k0 + PBN - 1 > q0 + warp * 16 || k0 + PBN > n;
        float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
        for (int nt = 0; nt < PBN / 8; nt++)
#pragma unroll
            for (int i = 0; i < 4; i++) {
                float x = sc[nt][i] * scale_log2;
                if (edge) {
                    int key = k0 + nt * 8 + 2 * (lane & 3) + (i & 1), row = row0 + (i >> 1) * 8;
                    if (key > row || key >= n) x = -INFINITY;
                }
                sc[nt][i] = x;
                mx[i >> 1] = fmaxf(mx[i >> 1], x);
            }
        float cr[2], mb[2];
#pragma unroll
        for (int r = 0; r < 2; r++) {
            mx[r] = quad_max(mx[r]);
            float mn = fmaxf(m[r], mx[r]);
            mb[r] = mn == -INFINITY ? 0.0f : mn; /* a row with no key yet */
            cr[r] = exp2f(m[r] - mb[r]);
            m[r] = mn;
            l[r] *= cr[r];
        }
        if (__any_sync(0xffffffffu, cr[0] != 1.0f || cr[1] != 1.0f)) /* a max moved */
#pragma unroll
            for (int nt = 0; nt < HD / 8; nt++)
#pragma unroll
                for (int i = 0; i < 4; i++) o[nt][i] *= cr[i >> 1];
#pragma unroll
        for (int kc = 0; kc < PBN / 16; kc++) {
            uint32_t pa[4];
            float p[2][4];
#pragma unroll
            for (int u = 0; u < 2; u++)
#pragma unroll
                for (int i = 0; i < 4; i++) {
                    p[u][i] = exp2f(sc[2 * kc + u][i] - mb[i >> 1]);
                    l[i >> 1] += p[u][i];
                }
            pa[0] = pack_bf16(p[0][0], p[0][1]);
            pa[1] = pack_bf16(p[0][2], p[0][3]);
            pa[2] = pack_bf16(p[1][0], p[1][1]);
            pa[3] = pack_bf16(p[1][2], p[1][3]);
#pragma unroll
            for (int dn = 0; dn < HD / 16; dn++) {
                uint32_t bv[4];
                ldsm_x4_t(bv, vs + (kc * 16 + vrow) * RS + dn * 16 + vcol);
                mma_bf16(o[2 * dn], pa, bv[0], bv[1]);
                mma_bf16(o[2 * dn + 1], pa, bv[2], bv[3]);
            }
        }
        __syncthreads(); /* the stage is refilled next iteration */
    }
#pragma unroll
    for (int r = 0; r < 2; r++) {
        l[r] = quad_sum(l[r]);
    }
#pragma unroll
    for (int r = 0; r < 2; r++) {
        int row = row0 + r * 8;
        if (row >= n) continue;
        bf16 *orow = out + (size_t)row * qstride + (size_t)h * HD;
        float inv = 1.0f / l[r];
#pragma unroll
        for (int nt = 0; nt < HD / 8; nt++)
            *(__nv_bfloat162 *)(orow + nt * 8 + 2 * (lane & 3)) =
                __floats2bfloat162_rn(o[nt][2 * r] * inv, o[nt][2 * r + 1] * inv);
    }
}

template <int HD, int PW, int MINB>
static int launch_prefill_mma(const void *q, const void *k, const void *v, void *out, int n, int H, int G,
                              float sl2, cudaStream_t st) {
    static unsigned attr_dev;
    TRY(smem_optin(&attr_dev, (const void *)prefill_mma_kernel<HD, PW, MINB>, PrefillCfg<HD>::SMEM));
    dim3 grid((n + 16 * PW - 1) / (16 * PW), H);
    prefill_mma_kernel<HD, PW, MINB><<<grid, PW * 32, PrefillCfg<HD>::SMEM, st>>>(
        (const bf16 *)q, (const bf16 *)k, (const bf16 *)v, (bf16 *)out, n, H, G, sl2);
    CU_LAUNCHED();
    return 0;
}

/* The same flash form with 32 query rows a warp (two m16 tiles, 128-row query
 * tiles at 4 warps): each K and V fragment loaded by ldmatrix feeds two MMAs
 * (one ldmatrix.x4 per four MMAs instead of two); Q fragments come from
 * shared memory each key tile (its registers go to the second tile's O). */
template <int HD> struct Prefill2Cfg {
    static constexpr int RS = HD + 8;
    static constexpr size_t SMEM = (size_t)(4 * PBN + 128) * RS * sizeof(bf16);
};

template <int HD, int PW, int MINB>
__global__ void __launch_bounds__(PW * 32, MINB)
    prefill_mma2_kernel(const bf16 *q,  // (n, H, HD)
                        const bf16 *k,  // (n, G, HD)
                        const bf16 *v,  // (n, G, HD)
                        bf16 *out,      // (n, H, HD)
                        int n, int H, int G, float scale_log2) {
    constexpr int RS = Prefill2Cfg<HD>::RS, KC = HD / 16, PBM = 32 * PW;
    static_assert(PBM == 128, "Prefill2Cfg stages 128 query rows");
    int qt = gridDim.x - 1 - blockIdx.x, h = blockIdx.y, g = h / (H / G);
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    extern __shared__ __align__(16) unsigned char smraw[];
    bf16 *kvs = (bf16 *)smraw;     /* [2 stages][K, V][PBN][RS] */
    bf16 *qs = kvs + 4 * PBN * RS; /* [PBM][RS] */
    int q0 = qt * PBM;
    size_t qstride = (size_t)H * HD, kstride = (size_t)G * HD;
    for (int i = threadIdx.x; i < PBM * HD / 8; i += PW * 32) {
        int r = i / (HD / 8), ch = i % (HD / 8);
        bool ok = q0 + r < n;
        cp_async16(qs + r * RS + ch * 8, q + (ok ? (q0 + r) * qstride + (size_t)h * HD + ch * 8 : 0), ok ? 16 : 0);
    }
    auto load_kv = [&](int kt, int stage) {
        bf16 *ks = kvs + (size_t)stage * 2 * PBN * RS, *vs = ks + PBN * RS;
        int k0 = kt * PBN;
        for (int i = threadIdx.x; i < PBN * HD / 8; i += PW * 32) {
            int r = i / (HD / 8), ch = i % (HD / 8);
            bool ok = k0 + r < n;
            size_t o = ok ? (k0 + r) * kstride + (size_t)g * HD + ch * 8 : 0;
            cp_async16(ks + r * RS + ch * 8, k + o, ok ? 16 : 0);
            cp_async16(vs + r * RS + ch * 8, v + o, ok ? 16 : 0);
        }
    };
    int last = min(n - 1, q0 + PBM - 1);
    int nkt = last / PBN + 1;
    load_kv(0, 0);
    cp_async_commit(); /* Q and tile 0 */

    float m[2][2], l[2][2];
    float o[2][HD / 8][4];
#pragma unroll
    for (int mt = 0; mt < 2; mt++) {
        m[mt][0] = m[mt][1] = -INFINITY;
        l[mt][0] = l[mt][1] = 0.0f;
#pragma unroll
        for (int nt = 0; nt < HD / 8; nt++) o[mt][nt][0] = o[mt][nt][1] = o[mt][nt][2] = o[mt][nt][3] = 0.0f;
    }
    int row0 = q0 + warp * 32 + (lane >> 2); /* tile mt: rows row0 + 16 mt (+ 8) */
    int krow = (lane & 7) + (lane >> 4) * 8, kcol = ((lane >> 3) & 1) * 8;
    int vrow = (lane & 7) + ((lane >> 3) & 1) * 8, vcol = (lane >> 4) * 8;
    const bf16 *qrow = qs + (warp * 32 + (lane & 15)) * RS + (lane >> 4) * 8;
    for (int kt = 0; kt < nkt; kt++) {
        if (kt + 1 < nkt) load_kv(kt + 1, (kt + 1) & 1);
        cp_async_commit();
        cp_async_wait<1>();
        __syncthreads();
        const bf16 *ks = kvs + (size_t)(kt & 1) * 2 * PBN * RS, *vs = ks + PBN * RS;
        float sc[2][PBN / 8][4];
#pragma unroll
        for (int mt = 0; mt < 2; mt++)
#pragma unroll
            for (int nt = 0; nt < PBN / 8; nt++) sc[mt][nt][0] = sc[mt][nt][1] = sc[mt][nt][2] = sc[mt][nt][3] = 0.0f;
#pragma unroll
        for (int kc = 0; kc < KC; kc++) {
            uint32_t qa[2][4];
            ldsm_x4(qa[0], qrow + kc * 16);
            ldsm_x4(qa[1], qrow + 16 * RS + kc * 16);
#pragma unroll
            for (int np = 0; np < PBN / 16; np++) {
                uint32_t bk[4];
                ldsm_x4(bk, ks + (np * 16 + krow) * RS + kc * 16 + kcol);
#pragma unroll
                for (int mt = 0; mt < 2; mt++) {
                    mma_bf16(sc[mt][2 * np], qa[mt], bk[0], bk[1]);
                    mma_bf16(sc[mt][2 * np + 1], qa[mt], bk[2], bk[3]);
                }
            }
        }
        int k0 = kt * PBN;
        bool edge = k0 + PBN - 1 > q0 + warp * 32 || k0 + PBN > n;
        float mb[2][2];
#pragma unroll
        for (int mt = 0; mt < 2; mt++) {
            float mx[2] = {-INFINITY, -INFINITY};
            bool moved = false;
#pragma unroll
            for (int nt = 0; nt < PBN / 8; nt++)
#pragma unroll
                for (int i = 0; i < 4; i++) {
                    float x = sc[mt][nt][i] * scale_log2;
                    if (edge) {
                        int key = k0 + nt * 8 + 2 * (lane & 3) + (i & 1), row = row0 + mt * 16 + (i >> 1) * 8;
                        if (key > row || key >= n) x = -INFINITY;
                    }
                    sc[mt][nt][i] = x;
                    mx[i >> 1] = fmaxf(mx[i >> 1], x);
                }
#pragma unroll
            for (int r = 0; r < 2; r++) {
                mx[r] = quad_max(mx[r]);
                float mn = fmaxf(m[mt][r], mx[r]);
                mb[mt][r] = mn == -INFINITY ? 0.0f : mn; /* a row with no key yet */
                float cr = exp2f(m[mt][r] - mb[mt][r]);
                m[mt][r] = mn;
                l[mt][r] *= cr;
                moved |= cr != 1.0f;
                mx[r] = cr;
            }
            if (__any_sync(0xffffffffu, moved)) /* a max moved */
#pragma unroll
                for (int nt = 0; nt < HD / 8; nt++)
#pragma unroll
                    for (int i = 0; i < 4; i++) o[mt][nt][i] *= mx[i >> 1];
        }
#pragma unroll
        for (int kc = 0; kc < PBN / 16; kc++) {
            uint32_t pa[2][4];
#pragma unroll
            for (int mt = 0; mt < 2; mt++) {
                float p[2][4];
#pragma unroll
                for (int u = 0; u < 2; u++)
#pragma unroll
                    for (int i = 0; i < 4; i++) {
                        p[u][i] = exp2f(sc[mt][2 * kc + u][i] - mb[mt][i >> 1]);
                        l[mt][i >> 1] += p[u][i];
                    }
                pa[mt][0] = pack_bf16(p[0][0], p[0][1]);
                pa[mt][1] = pack_bf16(p[0][2], p[0][3]);
                pa[mt][2] = pack_bf16(p[1][0], p[1][1]);
                pa[mt][3] = pack_bf16(p[1][2], p[1][3]);
            }
#pragma unroll
            for (int dn = 0; dn < HD / 16; dn++) {
                uint32_t bv[4];
                ldsm_x4_t(bv, vs + (kc * 16 + vrow) * RS + dn * 16 + vcol);
#pragma unroll
                for (int mt = 0; mt < 2; mt++) {
                    mma_bf16(o[mt][2 * dn], pa[mt], bv[0], bv[1]);
                    mma_bf16(o[mt][2 * dn + 1], pa[mt], bv[2], bv[3]);
                }
            }
        }
        __syncthreads(); /* the stage is refilled next iteration */
    }
#pragma unroll
    for (int mt = 0; mt < 2; mt++)
#pragma unroll
        for (int r = 0; r < 2; r++) {
            float lr = l[mt][r];
            lr = quad_sum(lr);
            int row = row0 + mt * 16 + r * 8;
            if (row >= n) continue;
            bf16 *orow = out + (size_t)row * qstride + (size_t)h * HD;
            float inv = 1.0f / lr;
#pragma unroll
            for (int nt = 0; nt < HD / 8; nt++)
                *(__nv_bfloat162 *)(orow + nt * 8 + 2 * (lane & 3)) =
                    __floats2bfloat162_rn(o[mt][nt][2 * r] * inv, o[mt][nt][2 * r + 1] * inv);
        }
}

template <int HD, int PW, int MINB>
static int launch_prefill_mma2(const void *q, const void *k, const void *v, void *out, int n, int H, int G,
                               float sl2, cudaStream_t st) {
    static unsigned attr_dev;
    TRY(smem_optin(&attr_dev, (const void *)prefill_mma2_kernel<HD, PW, MINB>, Prefill2Cfg<HD>::SMEM));
    dim3 grid((n + 32 * PW - 1) / (32 * PW), H);
    prefill_mma2_kernel<HD, PW, MINB><<<grid, PW * 32, Prefill2Cfg<HD>::SMEM, st>>>(
        (const bf16 *)q, (const bf16 *)k, (const bf16 *)v, (bf16 *)out, n, H, G, sl2);
    CU_LAUNCHED();
    return 0;
}

/* ------------------------------------ prefill: Hopper warpgroup MMA (wgmma) */

/* FA3-style without warp specialization: one block of NWG warpgroups per
 * (64 NWG-row query tile, query head), each warpgroup 64 query rows. All
 * threads copy Q and the K/V tiles (BN keys) by cp.async into a ring of NST
 * stages, rows of 128 bytes in the 128-byte swizzle the tensor cores read
 * (16-byte chunk c of row r at c ^ (r & 7); hd 128 = two 64-column blocks,
 * each 1024-byte aligned). S = Q K^T: wgmma m64nBNk16, A and B from shared
 * memory (K-major); O += P V: P from registers (the accumulator layout is the
 * A fragment's), V from shared memory read MN-major (tnspB). Software
 * pipelined in a warpgroup: S_j = Q K_j^T and O += P_{j-1} V_{j-1} are issued
 * together, the softmax of S_j runs while the P V product is in the tensor
 * cores (ptxas hoists the second wait above most of the softmax, so the
 * overlap is mostly between warpgroups). Descriptor encodings (PTX ISA "matrix descriptor", CUTLASS's
 * make_gmma_desc): start >> 4 in bits 0-13, leading byte offset >> 4 in
 * 16-29, stride byte offset >> 4 in 32-45, swizzle 128 B = 1 in bits 62-63.
 * K-major: SBO = 1024 (8 rows of 128 B), LBO unused (16); a k16 step inside a
 * 128-byte row moves the start by 32 bytes. MN-major (V): SBO = 1024 between
 * 8-key groups, LBO = the byte distance between the 64-column blocks. */
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define LK_HAVE_WGMMA 1
#endif

#ifdef LK_HAVE_WGMMA
#define LK_F4(i) "+f"(d[i]), "+f"(d[(i) + 1]), "+f"(d[(i) + 2]), "+f"(d[(i) + 3])
#define LK_F16(i) LK_F4(i), LK_F4((i) + 4), LK_F4((i) + 8), LK_F4((i) + 12)
#define LK_F32(i) LK_F16(i), LK_F16((i) + 16)
#define LK_F64(i) LK_F32(i), LK_F32((i) + 32)
__device__ __forceinline__ uint64_t gmma_desc(uint32_t addr, uint32_t lbo, uint32_t sbo) {
    return (uint64_t)((addr & 0x3FFFFu) >> 4) | (uint64_t)((lbo >> 4) & 0x3FFFu) << 16 |
           (uint64_t)((sbo >> 4) & 0x3FFFu) << 32 | 1ull << 62;
}
__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N> __device__ __forceinline__ void wgmma_wait() {
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
__device__ __forceinline__ void fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }
/* keeps the compiler from moving reads of async results above a wait */
template <int N> __device__ __forceinline__ void reg_fence(float (&d)[N]) {
#pragma unroll
    for (int i = 0; i < N; i++) asm volatile("" : "+f"(d[i])::"memory");
}
__device__ __forceinline__ void cp_async16_s(uint32_t dst, const void *src, int src_bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes));
}
__device__ __forceinline__ float fast_exp2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}
__device__ __forceinline__ void wgmma_ss_n64(float d[32], uint64_t da, uint64_t db, int acc) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
                 "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, "
                 "%18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31} "
                 ", %32, %33, p, 1, 1, 0, 0;\n}\n"
                 : LK_F32(0)
                 : "l"(da), "l"(db), "r"(acc));
}

__device__ __forceinline__ void wgmma_ss_n128(float d[64], uint64_t da, uint64_t db, int acc) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
                 "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, "
                 "%18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, "
                 "%35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, "
                 "%52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63} "
                 ", %64, %65, p, 1, 1, 0, 0;\n}\n"
                 : LK_F64(0)
                 : "l"(da), "l"(db), "r"(acc));
}

__device__ __forceinline__ void wgmma_rs_n64_t(float d[32], const uint32_t a[4], uint64_t db) {
    asm volatile("wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
                 "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, "
                 "%18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31} "
                 ", {%32, %33, %34, %35}, %36, 1, 1, 1, 1;\n"
                 : LK_F32(0)
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db));
}

__device__ __forceinline__ void wgmma_rs_n128_t(float d[64], const uint32_t a[4], uint64_t db) {
    asm volatile("wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
                 "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, "
                 "%18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, "
                 "%35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, "
                 "%52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63} "
                 ", {%64, %65, %66, %67}, %68, 1, 1, 1, 1;\n"
                 : LK_F64(0)
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db));
}

/* The online softmax of one key tile's scores, on this thread's part of a wgmma m64nBN
 * accumulator (rows row0 and row0 + 8; column 8 jn + 2 (lane & 3) + (e & 1) of the tile,
 * keys k0 ..), in the log2 domain; forms 2-8 share it. mask: keys > row or >= n become
 * -inf. FIRST: the sequence's first tile, where the running max m and sum l start.
 * After: sc holds exp2(scale_log2 s - m), summed into l; cr the factor O is to be scaled by. */
template <int BN, bool FIRST>
__device__ __forceinline__ void tile_softmax(float *sc, float m[2], float l[2], float cr[2], bool mask, int k0,
                                             int row0, int lane, int n, float scale_log2) {
    float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int jn = 0; jn < BN / 8; jn++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            float x = sc[4 * jn + e];
            if (mask) {
                int key = k0 + jn * 8 + 2 * (lane & 3) + (e & 1), row = row0 + (e >> 1) * 8;
                if (key > row || key >= n) x = -INFINITY;
                sc[4 * jn + e] = x;
            }
            mx[e >> 1] = fmaxf(mx[e >> 1], x);
        }
    float mb[2];
#pragma unroll
    for (int r = 0; r < 2; r++) {
        mx[r] = quad_max(mx[r]);
        float mn = FIRST ? mx[r] * scale_log2 : fmaxf(m[r], mx[r] * scale_log2);
        mb[r] = mn == -INFINITY ? 0.0f : mn; /* a row with no key yet */
        cr[r] = FIRST ? 0.0f : fast_exp2(m[r] - mb[r]);
        m[r] = mn;
        l[r] = FIRST ? 0.0f : l[r] * cr[r];
    }
#pragma unroll
    for (int jn = 0; jn < BN / 8; jn++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            float p = fast_exp2(fmaf(sc[4 * jn + e], scale_log2, -mb[e >> 1]));
            l[e >> 1] += p;
            sc[4 * jn + e] = p;
        }
}

/* P (the tile's exponentials) as the bf16 A fragments of the P V wgmma. */
template <int BN>
__device__ __forceinline__ void pack_p(const float *sc, uint32_t (*pa)[4]) {
#pragma unroll
    for (int kc = 0; kc < BN / 16; kc++) {
        pa[kc][0] = pack_bf16(sc[8 * kc + 0], sc[8 * kc + 1]);
        pa[kc][1] = pack_bf16(sc[8 * kc + 2], sc[8 * kc + 3]);
        pa[kc][2] = pack_bf16(sc[8 * kc + 4], sc[8 * kc + 5]);
        pa[kc][3] = pack_bf16(sc[8 * kc + 6], sc[8 * kc + 7]);
    }
}

/* The epilogue's first half: l <- 1 / (its row sum over the quad), then O / l as bf16 into a
 * swizzled 128-byte-row tile in shared memory (two 64-column halves half_bytes apart; rr0:
 * this thread's first row there), for 16-byte coalesced stores after a barrier. */
__device__ __forceinline__ void stage_out(unsigned char *sb, int half_bytes, int rr0, int lane, const float o[64],
                                          float l[2]) {
#pragma unroll
    for (int r = 0; r < 2; r++) l[r] = 1.0f / quad_sum(l[r]);
#pragma unroll
    for (int jn = 0; jn < 16; jn++)
#pragma unroll
        for (int r = 0; r < 2; r++) {
            int rr = rr0 + r * 8, ch = jn & 7;
            *(__nv_bfloat162 *)(sb + (jn >> 3) * half_bytes + rr * 128 + ((ch ^ (rr & 7)) << 4) + 4 * (lane & 3)) =
                __floats2bfloat162_rn(o[4 * jn + 2 * r] * l[r], o[4 * jn + 2 * r + 1] * l[r]);
        }
}

#endif /* LK_HAVE_WGMMA */

template <int NWG, int BN, int NST, bool PV64>
struct PrefillWgCfg {
    static constexpr int BM = 64 * NWG, QB = BM * 128, KB = BN * 128, STB = 4 * KB;
    static constexpr size_t SMEM = 1024 + 2 * (size_t)QB + (size_t)NST * STB;
};

template <int NWG, int BN, int NST, bool PV64>
__global__ void __launch_bounds__(NWG * 128, 1)
    prefill_wg_kernel(const bf16 *q,  // (n, H, 128)
                      const bf16 *k,  // (n, G, 128)
                      const bf16 *v,  // (n, G, 128)
                      bf16 *out,      // (n, H, 128)
                      int n, int H, int G, float scale_log2) {
#ifdef LK_HAVE_WGMMA
    typedef PrefillWgCfg<NWG, BN, NST, PV64> C;
    constexpr int HD = 128, BM = C::BM, NT = NWG * 128, QB = C::QB, KB = C::KB, STB = C::STB, NS = BN / 2;
    static_assert(NST >= 3, "a stage is refilled two tiles after its use");
    extern __shared__ __align__(16) unsigned char smraw[];
    const uint32_t raw = smem_u32(smraw), base = (raw + 1023) & ~1023u;
    unsigned char *sb = smraw + (base - raw);
    const uint32_t qs = base, kv0 = base + 2 * QB; /* Q: [2 col blocks][BM][128 B]; stages: K, V alike */
    const int tid = threadIdx.x, wg = tid >> 7, wq = (tid >> 5) & 3, lane = tid & 31;
    const int qt = gridDim.x - 1 - blockIdx.x, h = blockIdx.y, g = h / (H / G);
    const int q0 = qt * BM;
    const size_t qstride = (size_t)H * HD, kstride = (size_t)G * HD;
#pragma unroll
    for (int it = 0; it < BM * 16 / NT; it++) {
        int i = tid + it * NT, r = i >> 4, c = i & 15;
        bool ok = q0 + r < n;
        cp_async16_s(qs + (c >> 3) * QB + r * 128 + (((c & 7) ^ (r & 7)) << 4),
                     q + (ok ? (size_t)(q0 + r) * qstride + (size_t)h * HD + c * 8 : 0), ok ? 16 : 0);
    }
    auto load_kv = [&](int kt, int stage) {
        const uint32_t ks = kv0 + stage * STB, vs = ks + 2 * KB;
        const int k0 = kt * BN;
#pragma unroll
        for (int it = 0; it < (BN * 16 + NT - 1) / NT; it++) {
            int i = tid + it * NT, r = i >> 4, c = i & 15;
            if ((BN * 16) % NT && i >= BN * 16) break;
            bool ok = k0 + r < n;
            size_t o = ok ? (size_t)(k0 + r) * kstride + (size_t)g * HD + c * 8 : 0;
            uint32_t off = (c >> 3) * KB + r * 128 + (((c & 7) ^ (r & 7)) << 4);
            cp_async16_s(ks + off, k + o, ok ? 16 : 0);
            cp_async16_s(vs + off, v + o, ok ? 16 : 0);
        }
    };
    const int last = min(n - 1, q0 + BM - 1), nkt = last / BN + 1;
    load_kv(0, 0);
    cp_async_commit(); /* Q and tile 0 */
#pragma unroll
    for (int s = 1; s < NST - 2; s++) {
        if (s < nkt) load_kv(s, s);
        cp_async_commit();
    }
    float o[64], sc[NS];
    uint32_t pa[BN / 16][4];
#pragma unroll
    for (int i = 0; i < 64; i++) o[i] = 0.0f;
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
    const int rmin = q0 + wg * 64, row0 = rmin + wq * 16 + (lane >> 2); /* rows row0, row0 + 8 */
    const uint32_t qa = qs + wg * 64 * 128;
    auto pv = [&](uint32_t vs) { /* O += P V of one tile (issued, not waited) */
#pragma unroll
        for (int kc = 0; kc < BN / 16; kc++) {
            uint32_t a = vs + kc * 16 * 128;
            if constexpr (PV64) {
                wgmma_rs_n64_t(o, pa[kc], gmma_desc(a, KB, 1024));
                wgmma_rs_n64_t(o + 32, pa[kc], gmma_desc(a + KB, KB, 1024));
            } else {
                wgmma_rs_n128_t(o, pa[kc], gmma_desc(a, KB, 1024));
            }
        }
    };
    /* one key tile: S_j = Q K_j^T issued with O += P_{j-1} V_{j-1} (j > 0, FIRST false), the
     * online softmax of S_j (log2 domain) while the P V product runs, then O rescaled and
     * P_j packed. The first tile is peeled (FIRST) so that ptxas sees every wait on
     * every path and keeps the wgmmas asynchronous. */
    auto step = [&](int j, auto first) {
        constexpr bool FIRST = decltype(first)::value;
        /* tile j landed (this thread's copies; the barrier makes it everyone's), and
         * every warpgroup is done with tile j - 2's stage, refilled below */
        cp_async_wait<NST - 3>();
        fence_proxy_async();
        __syncthreads();
        const uint32_t ks = kv0 + (j % NST) * STB;
        wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < HD / 16; kk++) {
            uint64_t da = gmma_desc(qa + (kk >> 2) * QB + (kk & 3) * 32, 16, 1024);
            uint64_t db = gmma_desc(ks + (kk >> 2) * KB + (kk & 3) * 32, 16, 1024);
            if constexpr (BN == 128) wgmma_ss_n128(sc, da, db, kk > 0);
            else wgmma_ss_n64(sc, da, db, kk > 0);
        }
        wgmma_commit();
        if constexpr (!FIRST) {
            pv(kv0 + ((j - 1) % NST) * STB + 2 * KB);
            wgmma_commit();
        }
        /* the copies of tile j + NST - 2 go out while the tensor cores work */
        if (j + NST - 2 < nkt) load_kv(j + NST - 2, (j + NST - 2) % NST);
        cp_async_commit();
        if constexpr (!FIRST) wgmma_wait<1>();
        else wgmma_wait<0>();
        reg_fence(sc);
        const int k0 = j * BN;
        const bool edge = k0 + BN - 1 > rmin || k0 + BN > n;
        float cr[2];
        tile_softmax<BN, FIRST>(sc, m, l, cr, edge, k0, row0, lane, n, scale_log2);
        if constexpr (!FIRST) {
            reg_fence(sc); /* the softmax stays above the wait (the compiler would sink it) */
            wgmma_wait<0>();
            reg_fence(o);
#pragma unroll
            for (int i = 0; i < 64; i++) o[i] *= cr[(i >> 1) & 1];
        }
        pack_p<BN>(sc, pa);
    };
    step(0, std::true_type{});
    for (int j = 1; j < nkt; j++) step(j, std::false_type{});
    wgmma_fence();
    pv(kv0 + ((nkt - 1) % NST) * STB + 2 * KB);
    wgmma_commit();
    wgmma_wait<0>();
    reg_fence(o);
    /* O through the (swizzled) Q tile to 16-byte coalesced stores */
    __syncthreads();
    stage_out(sb, QB, row0 - q0, lane, o, l);
    __syncthreads();
    for (int i = tid; i < BM * 16; i += NT) {
        int r = i >> 4, c = i & 15;
        if (q0 + r < n)
            *(uint4 *)(out + (size_t)(q0 + r) * qstride + (size_t)h * HD + c * 8) =
                *(const uint4 *)(sb + (c >> 3) * QB + r * 128 + (((c & 7) ^ (r & 7)) << 4));
    }
#endif
}

template <int NWG, int BN, int NST, bool PV64>
static int launch_prefill_wg(const void *q, const void *k, const void *v, void *out, int n, int H, int G,
                             float sl2, cudaStream_t st) {
    typedef PrefillWgCfg<NWG, BN, NST, PV64> C;
    static unsigned attr_dev;
    TRY(smem_optin(&attr_dev, (const void *)prefill_wg_kernel<NWG, BN, NST, PV64>, C::SMEM));
    dim3 grid((n + C::BM - 1) / C::BM, H);
    prefill_wg_kernel<NWG, BN, NST, PV64><<<grid, NWG * 128, C::SMEM, st>>>(
        (const bf16 *)q, (const bf16 *)k, (const bf16 *)v, (bf16 *)out, n, H, G, sl2);
    CU_LAUNCHED();
    return 0;
}

/* ------------------- prefill: warp-specialized wgmma (TMA producer, ping-pong) */

/* FA3's layout with warp specialization (NOTES-attention.md, prefill v5): one
 * block of three warpgroups per (128-row query tile, query head). Warpgroup 2
 * is the producer: after giving back its registers (setmaxnreg 24) one thread
 * issues every copy as a TMA tile (cp.async.bulk.tensor, 128-byte swizzle) into
 * Q and a ring of NST K and NST V stages of 128 keys, each completing on a
 * "full" mbarrier (arrive.expect_tx of the tile's bytes). Warpgroups 0 and 1
 * (setmaxnreg 240) each own 64 query rows and only do wgmma and the softmax;
 * each warp releases a stage on its "empty" mbarrier (8 arrivals: every
 * consumer warp) once its wgmmas that read it have completed. Key tiles are
 * visited from the diagonal down, so that only the first (peeled) tile needs
 * the causal and the end-of-sequence mask. Step j >= 1 issues S_j = Q K_j^T
 * with O += P_{j-1} V_{j-1} (as form 6), and the two consumer warpgroups take
 * turns issuing them (named barriers 1 and 2, 256 threads: a warpgroup waits
 * on its own and, once its wgmmas are issued, arrives on the other's), so that
 * one warpgroup's softmax runs while the tensor cores do the other's products.
 * Tiles are the same swizzled rows as form 2's (a 64-column half of a 128-row
 * tile: 128 rows of 128 B, 16-byte chunk c of row r at c ^ (r & 7), 1024-byte
 * aligned), which is what TMA's 128-byte swizzle writes; the wgmma descriptors
 * are form 2's. Phases: the u-th use of stage s (tiles j = s + u NST) is phase
 * u of its full and empty barriers; consumers wait on full parity u & 1, the
 * producer on empty parity (u - 1) & 1 before the refill u (u >= 1). */
#ifdef LK_HAVE_WGMMA
__device__ __forceinline__ void mbar_init(uint32_t bar, int count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}
/* the producer's arrival: one arrive and the bytes the copies will bring */
__device__ __forceinline__ void mbar_expect_tx(uint32_t bar, uint32_t bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes) : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint32_t bar) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
/* until the phase of parity `parity` has completed; a wait past 2^36 cycles (~35 s: a
 * protocol bug, never a late copy) traps, so that a hang surfaces as a launch failure
 * rather than a stalled caller (in PTX: a C++ __trap() here costs an ABI call, a stack
 * frame and serialized wgmmas). Labels are local to the { } block. */
__device__ __forceinline__ void mbar_wait(uint32_t bar, uint32_t parity) {
    asm volatile("{\n.reg .pred p;\n.reg .u64 t0, t1;\n"
                 "mov.u64 t0, %%clock64;\n"
                 "WAIT:\n"
                 "mbarrier.try_wait.parity.shared::cta.b64 p, [%0], %1;\n"
                 "@p bra DONE;\n"
                 "mov.u64 t1, %%clock64;\n"
                 "sub.u64 t1, t1, t0;\n"
                 "setp.gt.u64 p, t1, 68719476736;\n"
                 "@p trap;\n"
                 "bra WAIT;\n"
                 "DONE:\n}\n" ::"r"(bar),
                 "r"(parity)
                 : "memory");
}
/* one box of a 3-D tensor map (coordinates innermost first) into shared memory */
__device__ __forceinline__ void tma_load_3d(uint32_t dst, const CUtensorMap *map, int c0, int c1, int c2,
                                            uint32_t bar) {
    asm volatile("cp.async.bulk.tensor.3d.shared::cluster.global.tile.mbarrier::complete_tx::bytes "
                 "[%0], [%1, {%2, %3, %4}], [%5];\n" ::"r"(dst),
                 "l"((uint64_t)map), "r"(c0), "r"(c1), "r"(c2), "r"(bar)
                 : "memory");
}
__device__ __forceinline__ void tma_prefetch_map(const CUtensorMap *map) {
    asm volatile("prefetch.tensormap [%0];\n" ::"l"((uint64_t)map) : "memory");
}
/* named barriers: wait until N threads arrived (this one included), or arrive only */
template <int N> __device__ __forceinline__ void bar_sync(int id) {
    asm volatile("bar.sync %0, %1;\n" ::"r"(id), "n"(N) : "memory");
}
template <int N> __device__ __forceinline__ void bar_arrive(int id) {
    asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "n"(N) : "memory");
}
template <int R> __device__ __forceinline__ void regs_dec() {
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(R));
}
template <int R> __device__ __forceinline__ void regs_inc() {
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(R));
}
#endif /* LK_HAVE_WGMMA */

template <int NST> struct PrefillWsCfg {
    static constexpr int BM = 128, BN = 128;
    static constexpr int HB = 128 * 128;  /* a 64-column half of a 128-row tile: 128 rows of 128 B */
    static constexpr int TB = 2 * HB;     /* a Q, K or V tile */
    static constexpr int NBAR = 1 + 4 * NST; /* Q full; K full, V full, K empty, V empty a stage */
    static constexpr size_t BAR = (size_t)TB * (1 + 2 * NST); /* barriers after Q and the stages */
    static constexpr size_t SMEM = 1024 + BAR + 8 * NBAR;
    /* registers: the producer warpgroup gives 168 - 24 a thread, the consumers take 240 - 168:
     * 128 x 144 = 256 x 72, so the CTA's pool balances at 168 a thread at launch (65536 / 384) */
    static constexpr int REG_P = 24, REG_C = 240;
};

template <int NST>
__global__ void __launch_bounds__(384, 1)
    prefill_ws_kernel(const __grid_constant__ CUtensorMap tq,  // q (n, H, 128) as (128, H, n): boxes 64 x 1 x 128
                      const __grid_constant__ CUtensorMap tk,  // k (n, G, 128) as (128, G, n): boxes 64 x 1 x 128
                      const __grid_constant__ CUtensorMap tv,  // v (n, G, 128) likewise
                      bf16 *out,                               // (n, H, 128)
                      int n, int H, int G, float scale_log2) {
#ifdef LK_HAVE_WGMMA
    typedef PrefillWsCfg<NST> C;
    constexpr int BM = C::BM, BN = C::BN, HB = C::HB, TB = C::TB;
    static_assert(BM == BN, "the diagonal tile is the only masked one");
    extern __shared__ __align__(16) unsigned char smraw[];
    const uint32_t raw = smem_u32(smraw), base = (raw + 1023) & ~1023u;
    unsigned char *sb = smraw + (base - raw);
    /* Q: [2 halves][BM][128 B] at base; stage s: K tile at kv0 + 2 TB s, V tile TB after it */
    const uint32_t qs = base, kv0 = base + TB, bars = base + (uint32_t)C::BAR;
    const uint32_t qfull = bars;
#define KFULL(s) (bars + 8u * (1 + (s)))
#define VFULL(s) (bars + 8u * (1 + NST + (s)))
#define KEMPTY(s) (bars + 8u * (1 + 2 * NST + (s)))
#define VEMPTY(s) (bars + 8u * (1 + 3 * NST + (s)))
    const int tid = threadIdx.x, wg = tid >> 7;
    const int qt = gridDim.x - 1 - blockIdx.x, h = blockIdx.y, g = h / (H / G), q0 = qt * BM;
    const int nkt = min(n - 1, q0 + BM - 1) / BN + 1; /* key tiles 0 .. nkt - 1; nkt - 1 is the diagonal */
    if (tid == 0) {
        mbar_init(qfull, 1);
#pragma unroll
        for (int s = 0; s < NST; s++) {
            mbar_init(KFULL(s), 1);
            mbar_init(VFULL(s), 1);
            mbar_init(KEMPTY(s), 8);
            mbar_init(VEMPTY(s), 8);
        }
        asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    }
    __syncthreads();

    if (wg == 2) { /* ---- producer: one thread issues every copy */
        regs_dec<C::REG_P>();
        if (tid == 256) {
            tma_prefetch_map(&tq);
            tma_prefetch_map(&tk);
            tma_prefetch_map(&tv);
            mbar_expect_tx(qfull, TB);
            tma_load_3d(qs, &tq, 0, h, q0, qfull);
            tma_load_3d(qs + HB, &tq, 64, h, q0, qfull);
            /* visit j: K of tile j, then V of tile j - 1 (the order step j reads them in) */
            for (int j = 0; j <= nkt; j++) {
                if (j < nkt) {
                    const int s = j % NST, u = j / NST, k0 = (nkt - 1 - j) * BN;
                    const uint32_t dst = kv0 + 2 * TB * s;
                    if (u > 0) mbar_wait(KEMPTY(s), (u - 1) & 1);
                    mbar_expect_tx(KFULL(s), TB);
                    tma_load_3d(dst, &tk, 0, g, k0, KFULL(s));
                    tma_load_3d(dst + HB, &tk, 64, g, k0, KFULL(s));
                }
                if (j > 0) {
                    const int jv = j - 1, s = jv % NST, u = jv / NST, k0 = (nkt - 1 - jv) * BN;
                    const uint32_t dst = kv0 + 2 * TB * s + TB;
                    if (u > 0) mbar_wait(VEMPTY(s), (u - 1) & 1);
                    mbar_expect_tx(VFULL(s), TB);
                    tma_load_3d(dst, &tv, 0, g, k0, VFULL(s));
                    tma_load_3d(dst + HB, &tv, 64, g, k0, VFULL(s));
                }
            }
        }
        return;
    }

    /* ---- consumers: warpgroup wg, query rows q0 + 64 wg .. + 63 */
    regs_inc<C::REG_C>();
    const int wq = (tid >> 5) & 3, lane = tid & 31;
    const int row0 = q0 + wg * 64 + wq * 16 + (lane >> 2); /* rows row0, row0 + 8 */
    const uint32_t qa = qs + wg * 64 * 128;
    float o[64], sc[64], m[2], l[2], cr[2];
    uint32_t pa[BN / 16][4];
    auto qk = [&](uint32_t ks) { /* S = Q K^T (issued) */
#pragma unroll
        for (int kk = 0; kk < 8; kk++)
            wgmma_ss_n128(sc, gmma_desc(qa + (kk >> 2) * HB + (kk & 3) * 32, 16, 1024),
                          gmma_desc(ks + (kk >> 2) * HB + (kk & 3) * 32, 16, 1024), kk > 0);
    };
    auto pv = [&](uint32_t vs) { /* O += P V (issued) */
#pragma unroll
        for (int kc = 0; kc < BN / 16; kc++) wgmma_rs_n128_t(o, pa[kc], gmma_desc(vs + kc * 16 * 128, HB, 1024));
    };
    /* online softmax of S (tile_softmax); FIRST: the diagonal tile (keys k0 ..), the only one
     * the mask touches (I7), where the running max and sum start */
    auto softmax = [&](auto first, int k0) {
        constexpr bool FIRST = decltype(first)::value;
        tile_softmax<BN, FIRST>(sc, m, l, cr, FIRST, k0, row0, lane, n, scale_log2);
    };

    /* step 0, the diagonal tile (stage 0, phase 0): both warpgroups at once, outside the turns */
    if (wg == 1) bar_arrive<256>(1); /* the first turn is warpgroup 0's */
    mbar_wait(qfull, 0);
    mbar_wait(KFULL(0), 0);
    wgmma_fence();
    qk(kv0);
    wgmma_commit();
    wgmma_wait<0>();
    reg_fence(sc);
    if (lane == 0) mbar_arrive(KEMPTY(0));
    softmax(std::true_type{}, (nkt - 1) * BN);
#pragma unroll
    for (int i = 0; i < 64; i++) o[i] = 0.0f;
    pack_p<BN>(sc, pa);
    /* steps 1 .. nkt - 1: tile j (keys (nkt - 1 - j) BN ..) with V of tile j - 1 */
    for (int j = 1; j < nkt; j++) {
        const int s = j % NST, sv = (j - 1) % NST;
        mbar_wait(KFULL(s), (j / NST) & 1);
        mbar_wait(VFULL(sv), ((j - 1) / NST) & 1);
        bar_sync<256>(1 + wg); /* this warpgroup's turn */
        wgmma_fence();
        qk(kv0 + 2 * TB * s);
        wgmma_commit();
        pv(kv0 + 2 * TB * sv + TB);
        wgmma_commit();
        bar_arrive<256>(2 - wg); /* the other's turn */
        wgmma_wait<1>();
        reg_fence(sc);
        if (lane == 0) mbar_arrive(KEMPTY(s));
        softmax(std::false_type{}, 0);
        reg_fence(sc); /* the softmax stays above the wait (the compiler would sink it) */
        wgmma_wait<0>();
        reg_fence(o);
        if (lane == 0) mbar_arrive(VEMPTY(sv));
#pragma unroll
        for (int i = 0; i < 64; i++) o[i] *= cr[(i >> 1) & 1];
        pack_p<BN>(sc, pa);
    }
    /* the last P V (its stage is not released: the producer is done) */
    const int sl = (nkt - 1) % NST;
    mbar_wait(VFULL(sl), ((nkt - 1) / NST) & 1);
    wgmma_fence();
    pv(kv0 + 2 * TB * sl + TB);
    wgmma_commit();
    wgmma_wait<0>();
    reg_fence(o);
    /* warpgroup 1 arrived on barrier 1 once more than warpgroup 0 waited on it (its first
     * arrival gave the first turn): take that arrival, so that both barriers end even */
    if (wg == 0) bar_sync<256>(1);
#undef KFULL
#undef VFULL
#undef KEMPTY
#undef VEMPTY
    /* O through this warpgroup's own (swizzled) Q rows, which only its own, completed wgmmas
     * read, to 16-byte coalesced stores; barrier 3 + wg: this warpgroup's 128 threads */
    stage_out(sb, HB, row0 - q0, lane, o, l);
    bar_sync<128>(3 + wg);
    const size_t qstride = (size_t)H * 128;
#pragma unroll
    for (int it = 0; it < 8; it++) {
        int i = (tid & 127) + it * 128, r = wg * 64 + (i >> 4), c = i & 15;
        if (q0 + r < n)
            *(uint4 *)(out + (size_t)(q0 + r) * qstride + (size_t)h * 128 + c * 8) =
                *(const uint4 *)(sb + (c >> 3) * HB + r * 128 + (((c & 7) ^ (r & 7)) << 4));
    }
#endif
}

/* cuTensorMapEncodeTiled from the driver, found once through the runtime's entry point
 * (no -lcuda); NULL when the driver has none */
typedef CUresult (*encode_tiled_fn)(CUtensorMap *, CUtensorMapDataType, cuuint32_t, void *, const cuuint64_t *,
                                    const cuuint64_t *, const cuuint32_t *, const cuuint32_t *,
                                    CUtensorMapInterleave, CUtensorMapSwizzle, CUtensorMapL2promotion,
                                    CUtensorMapFloatOOBfill);
/* A driver call (CUresult) in a launcher: its failure as a runtime error code. The encoder
 * fails on parameters it refuses (CUDA_ERROR_INVALID_VALUE) or a driver not initialised. */
#define CU_DRV_TRY(call)                                                                           \
    do {                                                                                           \
        CUresult r_ = (call);                                                                      \
        if (r_ != CUDA_SUCCESS)                                                                    \
            return (int)(r_ == CUDA_ERROR_INVALID_VALUE ? cudaErrorInvalidValue                    \
                                                        : cudaErrorInitializationError);           \
    } while (0)

/* The map of a (rows, heads, 128) bf16 tensor as (128 channels, heads, rows), the
 * driver's nested strides (256 B, heads x 256 B): boxes of 64 channels (128 B, the
 * swizzle's span) x 1 head x box_rows rows, i.e. box_rows rows of 128 B in shared
 * memory; rows past the end read as zeros (and count in the barrier's bytes, as the
 * whole box does). */
static int tensor_map_rows(CUtensorMap *map, const void *base, int rows, int heads, int box_rows) {
    static encode_tiled_fn encode;
    if (!encode) {
        void *fn = NULL;
        cudaDriverEntryPointQueryResult found;
        CU_TRY(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault, &found));
        if (found != cudaDriverEntryPointSuccess || !fn) return (int)cudaErrorNotSupported;
        encode = (encode_tiled_fn)fn;
    }
    const cuuint64_t dim[3] = {128, (cuuint64_t)heads, (cuuint64_t)rows};
    const cuuint64_t stride[2] = {128 * sizeof(bf16), (cuuint64_t)heads * 128 * sizeof(bf16)}; /* bytes, dims 1, 2 */
    const cuuint32_t box[3] = {64, 1, (cuuint32_t)box_rows}, step[3] = {1, 1, 1};
    CU_DRV_TRY(encode(map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 3, (void *)base, dim, stride, box, step,
                      CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                      CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE));
    return 0;
}

template <int NST>
static int launch_prefill_ws(const void *q, const void *k, const void *v, void *out, int n, int H, int G,
                             float sl2, cudaStream_t st) {
    typedef PrefillWsCfg<NST> C;
    static unsigned attr_dev;
    TRY(smem_optin(&attr_dev, (const void *)prefill_ws_kernel<NST>, C::SMEM));
    CUtensorMap tq, tk, tv;
    int rc;
    if ((rc = tensor_map_rows(&tq, q, n, H, C::BM)) || (rc = tensor_map_rows(&tk, k, n, G, C::BN)) ||
        (rc = tensor_map_rows(&tv, v, n, G, C::BN)))
        return rc;
    dim3 grid((n + C::BM - 1) / C::BM, H);
    prefill_ws_kernel<NST><<<grid, 384, C::SMEM, st>>>(tq, tk, tv, (bf16 *)out, n, H, G, sl2);
    CU_LAUNCHED();
    return 0;
}

/* Prefill forms for bf16 hd 128 (NOTES-attention.md, prefill v4):
 *   0  mma.sync, 4 warps x 16 rows, 2 blocks/SM (v1-v3)
 *   1  mma.sync, 4 warps x 32 rows (two m16 tiles a warp), 2 blocks/SM
 *   2  wgmma, 2 warpgroups x 64 rows, 128-key tiles, 3 stages, P V as m64n128
 *   3  wgmma, as 2 with P V as two m64n64 (one per 64-column block of V)
 *   4  wgmma, 64-key tiles, 4 stages
 *   5  wgmma, 64-key tiles, 6 stages
 *   6  wgmma, 3 warpgroups (192-row query tiles), 64-key tiles, 5 stages
 *   7  warp-specialized wgmma (prefill v5): a TMA producer warpgroup, 2 consumer
 *      warpgroups x 64 rows taking turns, 128-key tiles, 2 K and 2 V stages
 *   8  as 7 with 3 K and 3 V stages
 * Measured (H200, 32K): 34.2, 29.7, 22.8, 24.1, 22.5, 22.0, 21.4 ms, then
 * (2026-11-30, one run beside cuDNN's 14.4 ms) 7: 12.7 ms, 8: 12.5 ms; default 8
 * (NOTES-attention.md, prefill v5).
 * LEANK_PREFILL_FORM picks one; lk_cuda_prefill_select(form) overrides it
 * (tests, leank-bench attention; -1: back to the variable or the default)
 * and returns the form in effect. The wgmma forms need an sm_90 device (the
 * sm_90a build); elsewhere they fall back to form 0. hd 64 always uses the
 * mma.sync kernel (form 0's), other shapes and f32 the SIMT kernel. */
#define N_PREFILL_FORMS 9
#define DEFAULT_PREFILL_FORM 8
static int g_pform = -1;
static int prefill_form(void) {
    if (g_pform < 0) {
        const char *s = getenv("LEANK_PREFILL_FORM");
        g_pform = s ? atoi(s) : DEFAULT_PREFILL_FORM;
        if (g_pform < 0 || g_pform >= N_PREFILL_FORMS) g_pform = DEFAULT_PREFILL_FORM;
    }
    return g_pform;
}
extern "C" int lk_cuda_prefill_select(int form) {
    g_pform = form >= 0 && form < N_PREFILL_FORMS ? form : -1;
    return prefill_form();
}
static bool have_wgmma(void) {
    static int ok = -1;
    if (ok < 0) {
        int dev = 0, major = 0, smem = 0;
        ok = cudaGetDevice(&dev) == cudaSuccess &&
             cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess &&
             cudaDeviceGetAttribute(&smem, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) == cudaSuccess &&
             major == 9 && smem >= (int)PrefillWgCfg<2, 128, 3, false>::SMEM;
    }
    return ok > 0;
}

extern "C" int lk_cuda_prefill_attention(lk_kv_dtype dt, const void *q, const void *k, const void *v,
                                         void *out, int n, int n_heads, int n_kv_heads, int head_dim,
                                         float scale, void *stream) {
    cudaStream_t st = (cudaStream_t)stream;
    if (n <= 0) return 0;
    if (head_dim <= 0 || head_dim > 256 || n_kv_heads <= 0 || n_heads % n_kv_heads)
        return (int)cudaErrorInvalidValue;
    float sl2 = scale * LOG2E;
    /* the tensor-core path needs 16-byte rows: q, k, v aligned (cudaMalloc is) */
    bool aligned = (((uintptr_t)q | (uintptr_t)k | (uintptr_t)v | (uintptr_t)out) & 15) == 0;
    /* hd 128: the form (default 8, warp-specialized wgmma); form 0 = 4 warps x 16 rows at 2 blocks/SM,
     * faster than 3 blocks/SM (spills) or 8 warps (NOTES-attention.md) */
    if (dt == LK_KV_BF16 && aligned && head_dim == 128) {
        int f = prefill_form();
        if (f >= 2 && !have_wgmma()) f = 0;
        switch (f) {
        case 1: return launch_prefill_mma2<128, 4, 2>(q, k, v, out, n, n_heads, n_kv_heads, sl2, st);
        case 2: return launch_prefill_wg<2, 128, 3, false>(q, k, v, out, n, n_heads, n_kv_heads, sl2, st);
        case 3: return launch_prefill_wg<2, 128, 3, true>(q, k, v, out, n, n_heads, n_kv_heads, sl2, st);
        case 4: return launch_prefill_wg<2, 64, 4, false>(q, k, v, out, n, n_heads, n_kv_heads, sl2, st);
        case 5: return launch_prefill_wg<2, 64, 6, false>(q, k, v, out, n, n_heads, n_kv_heads, sl2, st);
        case 7:
        case 8: {
            int rc = f == 7 ? launch_prefill_ws<2>(q, k, v, out, n, n_heads, n_kv_heads, sl2, st)
                            : launch_prefill_ws<3>(q, k, v, out, n, n_heads, n_kv_heads, sl2, st);
            if (rc != (int)cudaErrorNotSupported) return rc;
        } /* a driver without cuTensorMapEncodeTiled: the best form without TMA */
            /* fall through */
        case 6: return launch_prefill_wg<3, 64, 5, false>(q, k, v, out, n, n_heads, n_kv_heads, sl2, st);
        default: return launch_prefill_mma<128, 4, 2>(q, k, v, out, n, n_heads, n_kv_heads, sl2, st);
        }
    }
    if (dt == LK_KV_BF16 && aligned && head_dim == 64)
        return launch_prefill_mma<64, 4, 3>(q, k, v, out, n, n_heads, n_kv_heads, sl2, st);
    dim3 grid((n + 3) / 4, n_heads);
    if (dt == LK_KV_BF16)
        prefill_simt_kernel<bf16><<<grid, 128, 0, st>>>((const bf16 *)q, (const bf16 *)k, (const bf16 *)v,
                                                        (bf16 *)out, n, n_heads, n_kv_heads, head_dim, sl2);
    else
        prefill_simt_kernel<float><<<grid, 128, 0, st>>>((const float *)q, (const float *)k, (const float *)v,
                                                         (float *)out, n, n_heads, n_kv_heads, head_dim, sl2);
    CU_LAUNCHED();
    return 0;
}
