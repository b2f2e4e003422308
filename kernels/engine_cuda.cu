/* engine_cuda.cu - the CUDA backend of engine.h (lib/model/engine_impl.h's ops):
 * weights on the device in their own type, the paged KV pool of kvcache.h,
 * prefill and batched decode through cuBLAS + ops.cu + the attention
 * kernels, sampling on the device.
 *
 * The forward pass is model.c's lk_forward, row for row:
 *   x = embed[ids]                                       (f32 residual)
 *   per layer: xb = rmsnorm(x) -> qkv = xb Wqkv^T (+b) -> RoPE, split
 *              -> attention -> x += att Wo^T
 *              xb = rmsnorm(x) -> gu = xb Wgu^T -> h = silu(g) u -> x += h Wd^T
 *   logits = rmsnorm(x_last) lm_head^T                   (f32)
 * Wqkv is q_proj, k_proj, v_proj stacked by rows (one GEMM), Wgu gate_proj
 * and up_proj likewise. Products accumulate in f32 (CUBLAS_COMPUTE_32F);
 * activations between kernels are in the weights' type (bf16 or f32).
 *
 * Memory, in the order it is taken: weights, scratch (full rows for
 * max_prefill tokens: x, q, k, v, att; chunk rows for the GEMM outputs),
 * logits slots (one per live sequence), then the pool (opts->pool_bytes or
 * mem_fraction of what is free). Nothing is allocated per step. */
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "engine_impl.h"
#include "model.h"
#include "plan.h"
#include "safetensors.h"
}
#include "engine_cuda.h"
#include "cuda_check.h"
#include "kvcache.h"
#include "ops.h"

static const size_t ALIGN = 256;
static size_t align_up(size_t n) { return (n + ALIGN - 1) / ALIGN * ALIGN; }
static const double GB = 1e9;

/* ------------------------------------------------------------ structures */

/* A plan on the device (kvcache.h's lk_kv_plan_dev), shared by the
 * sequences whose plans have the same windows and channels. */
typedef struct cu_plan {
    struct cu_plan *next;
    int refs;      /* live sequences using it (the dense plan: never freed) */
    int sink, recent;
    int *h_width;  // (L, G) host copy, for matching
    int *h_chan;   // (L, G, hd)
    void *dmem;    /* one device allocation behind dev's arrays */
    lk_kv_plan_dev dev;
    int group;     /* decode: index of its group in the current call */
    uint64_t serial; /* unique for the engine's life (a captured step names its plans by it) */
} cu_plan;

typedef struct {
    lk_seq base;
    cu_plan *plan;
    int n_mid, n_full; /* pages */
    int *pages;        /* n_mid middle block ids, then n_full full block ids */
    int slot;          /* logits slot */
    float *logits;     /* (vocab) f32 on the device: the last logits */
    uint64_t rng;      /* xorshift64* state (sampler.c's) */
    float temperature, top_p;
    int top_k;
    unsigned mark;     /* decode: duplicate check */
} cu_seq;

typedef struct {
    void *wqkv;      // (q_dim + 2 kv_dim, dim)
    void *bqkv;      // (q_dim + 2 kv_dim) or NULL
    void *wo;        // (dim, q_dim)
    void *wgu;       // (2 hidden, dim): gate rows then up rows
    void *wd;        // (dim, hidden)
    void *attn_norm; // (dim)
    void *ffn_norm;  // (dim)
} cu_layer;

/* A decode-shaped product (few rows) and the fastest way found to run it:
 * lk_op_gemv or one of cuBLASLt's heuristic algorithms, timed once. */
typedef struct {
    int M, N, K;
    cudaDataType_t ot;
    int how; /* -1 lk_op_gemv, 0 cublasGemmEx, 1 cuBLASLt with algo */
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t la, lb, lc;
    cublasLtMatmulAlgo_t algo;
} cu_tuned;
#define MAX_TUNED 512
#define TUNE_MAX_M 64

typedef struct {
    lk_engine base;
    int dev;
    int dt;   /* LK_OP_F32 | LK_OP_BF16 */
    size_t esz;
    cudaDataType_t ct; /* cuBLAS type of dt */
    cudaStream_t st;
    cublasHandle_t blas;
    int D, H, QD, KD, V, L, NH, G, HD;
    float eps, scale;
    /* weights */
    void *wmem;
    size_t wbytes;
    void *embed, *final_norm, *lm_head; // (V, D), (D), (V, D) (== embed when tied)
    cu_layer *layers;
    /* RoPE (n_pos, hd/2) f32, lk_rope_table_build's values */
    float *rope_cos, *rope_sin;
    int rope_n;
    /* scratch */
    int max_batch, max_prefill, R, C; /* R full rows, C chunk rows */
    void *smem;
    size_t sbytes;
    float *x;                    // (R, D) f32 residual
    void *q, *k, *v, *att;       // (R, QD), (R, KD), (R, KD), (R, QD)
    void *xb, *qkv, *gu, *hb, *delta; // (C, D), (C, QD + 2 KD), (C, 2 H), (C, H), (C, D)
    float *lrows;                // (max_batch, V) decode logits before they go to the slots
    int *d_pids;                 // (R) prefill ids
    int *d_step;                 // (3, max_batch) decode ids | positions | seq_len (after the append)
    float **d_lptr;              // (max_batch) logits slot pointers of a call
    lk_op_sample_params *d_params; // (max_batch)
    int *d_out;                  // (max_batch) sampled ids
    void *blas_ws;
    size_t blas_ws_bytes;
    void *attn_ws;               /* decode attention workspace */
    size_t attn_ws_bytes;
    int *d_tab;                  /* decode page tables: (B, ms) middle then (B, fs) full */
    size_t tab_cap;              /* ints */
    int *d_one;                  /* single-sequence tables (prefill, adopt): 2 entries */
    size_t one_cap;
    /* pinned staging for uploads */
    char *pin;
    size_t pin_cap;
    cudaEvent_t pin_evt;
    int *h_tab;                  /* the decode tables last uploaded */
    size_t h_tab_n;
    int tab_ms, tab_fs;
    /* logits slots */
    float *slots;
    int n_slots, n_free_slots;
    int *free_slots;
    /* pool */
    void *pool;
    size_t block_bytes, pool_bytes;
    int n_blocks, n_free;
    int *free_blocks;
    cu_plan *plans;
    cu_plan *dense;
    uint64_t plan_serial;
    size_t dev_bytes;            /* every device allocation of the engine */
    unsigned mark;
    int use_gemv;                /* small-batch products on lk_op_gemv (LEANK_CUDA_GEMV=0: cuBLAS) */
    int use_tune;                /* products of <= tune_max_m rows timed once (LEANK_CUDA_TUNE=0: off) */
    int tune_max_m;              /* TUNE_MAX_M, or LEANK_CUDA_TUNE_MAX_M */
    int check;                   /* LEANK_CUDA_CHECK=1: products and prefill attention against slow references */
    void *chk;                   /* their outputs, scratch and the two sums */
    size_t chk_bytes;
    int use_graph;               /* decode steps replayed as CUDA graphs (LEANK_CUDA_GRAPH=0: off) */
    cudaGraphExec_t gexec;
    uintptr_t *sig_now, *sig_graph, *sig_prev; /* batch make-up: now, of gexec, of the last plain step */
    size_t sig_cap, sig_graph_n, sig_prev_n;
    cublasLtHandle_t lt;
    cu_tuned *tuned;
    int n_tuned;
    /* LEANK_CUDA_PROFILE=1: GPU time by phase (events between launches), printed at free */
    int prof, prof_kind, nev;
    cudaEvent_t ev[4096];
    unsigned char ev_ph[4096];
    double prof_ms[2][16];
    int prof_calls[2], prof_seen[2];
    int *h_order;                /* (max_batch) decode row order */
    cu_seq **h_rows;             /* (max_batch) */
} cu_engine;

static int dalloc(cu_engine *e, void **p, size_t n, const char *what, lk_err *err) {
    *p = NULL;
    if (!n) n = ALIGN;
    cudaError_t r = cudaMalloc(p, n);
    if (r != cudaSuccess) {
        size_t fr = 0, tot = 0;
        cudaGetLastError();
        cudaMemGetInfo(&fr, &tot);
        return lk_seterr(err, r == cudaErrorMemoryAllocation ? LK_ENOMEM : LK_EDEVICE,
                         "%s:%d: cudaMalloc of %zu bytes for %s: %s (%zu bytes free of %zu)", __FILE__,
                         __LINE__, n, what, cudaGetErrorString(r), fr, tot);
    }
    e->dev_bytes += n;
    return 0;
}

static void dfree(cu_engine *e, void *p, size_t n) {
    if (!p) return;
    cudaFree(p);
    e->dev_bytes -= n ? n : ALIGN;
}

/* ------------------------------------------------------------ profile */

enum { PH_START, PH_EMBED, PH_NORM, PH_QKV, PH_ROPE, PH_ATTN, PH_WO, PH_GU, PH_SWIGLU, PH_DOWN, PH_HEAD, PH_N };
static const char *ph_name[PH_N] = {"start", "embed", "norms", "qkv", "rope", "attention", "o_proj",
                                    "gate_up", "swiglu", "down", "head"};

static void mark(cu_engine *e, int ph) {
    if (!e->prof || e->nev >= 4096) return;
    if (cudaEventRecord(e->ev[e->nev], e->st) == cudaSuccess) e->ev_ph[e->nev++] = (unsigned char)ph;
}

static void prof_begin(cu_engine *e, int kind) {
    if (!e->prof) return;
    e->nev = 0;
    e->prof_kind = kind;
    mark(e, PH_START);
}

static void prof_end(cu_engine *e) {
    if (!e->prof || e->nev < 2) return;
    cudaEventSynchronize(e->ev[e->nev - 1]);
    if (!e->prof_seen[e->prof_kind]++) return; /* the first call warms up (module loads, tuning) */
    for (int i = 1; i < e->nev; i++) {
        float ms = 0;
        if (cudaEventElapsedTime(&ms, e->ev[i - 1], e->ev[i]) == cudaSuccess) e->prof_ms[e->prof_kind][e->ev_ph[i]] += ms;
    }
    e->prof_calls[e->prof_kind]++;
}

static void prof_print(const cu_engine *e) {
    for (int k = 0; k < 2; k++) {
        if (!e->prof_calls[k]) continue;
        double tot = 0;
        for (int p = 1; p < PH_N; p++) tot += e->prof_ms[k][p];
        fprintf(stderr, "leank cuda profile: %d %s calls after the first, %.3f ms each:", e->prof_calls[k], k ? "decode" : "prefill",
                tot / e->prof_calls[k]);
        for (int p = 1; p < PH_N; p++)
            fprintf(stderr, " %s %.3f", ph_name[p], e->prof_ms[k][p] / e->prof_calls[k]);
        fprintf(stderr, "\n");
    }
}

/* ------------------------------------------------------------ GEMM */

/* out (M, N) = x (M, K) w^T, w (N, K) row-major, both of the engine's type;
 * out of type ot (the engine's, or f32 for logits). */
static int gemm_plain(cu_engine *e, void *out, cudaDataType_t ot, const void *x, const void *w, int M, int N,
                      int K, lk_err *err) {
    const float one = 1.0f, zero = 0.0f;
    BL(cublasGemmEx(e->blas, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &one, w, e->ct, K, x, e->ct, K, &zero, out, ot, N,
                    CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    return 0;
}

static int gemm_run(cu_engine *e, const cu_tuned *t, void *out, const void *x, const void *w, lk_err *err) {
    if (t->how < 0) {
        KR(lk_op_gemv(t->ot == CUDA_R_32F ? LK_OP_F32 : LK_OP_BF16, out, x, w, t->M, t->N, t->K, e->st));
        return 0;
    }
    if (t->how == 0) return gemm_plain(e, out, t->ot, x, w, t->M, t->N, t->K, err);
    const float one = 1.0f, zero = 0.0f;
    BL(cublasLtMatmul(e->lt, t->op, &one, w, t->la, x, t->lb, &zero, out, t->lc, out, t->lc, &t->algo, e->blas_ws,
                      e->blas_ws_bytes, e->st));
    return 0;
}

/* Time the ways to run one decode-shaped product on the engine's own
 * buffers (the caller recomputes out afterwards) and keep the fastest. */
static int gemm_tune(cu_engine *e, cu_tuned *t, void *out, const void *x, const void *w, lk_err *err) {
    cublasOperation_t tr = CUBLAS_OP_T, nt = CUBLAS_OP_N;
    BL(cublasLtMatmulDescCreate(&t->op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    BL(cublasLtMatmulDescSetAttribute(t->op, CUBLASLT_MATMUL_DESC_TRANSA, &tr, sizeof tr));
    BL(cublasLtMatmulDescSetAttribute(t->op, CUBLASLT_MATMUL_DESC_TRANSB, &nt, sizeof nt));
    BL(cublasLtMatrixLayoutCreate(&t->la, e->ct, t->K, t->N, t->K));
    BL(cublasLtMatrixLayoutCreate(&t->lb, e->ct, t->K, t->M, t->K));
    BL(cublasLtMatrixLayoutCreate(&t->lc, t->ot, t->N, t->M, t->N));
    cublasLtMatmulPreference_t pref;
    BL(cublasLtMatmulPreferenceCreate(&pref));
    uint64_t ws = e->blas_ws_bytes;
    BL(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
    cublasLtMatmulHeuristicResult_t res[8];
    int nres = 0;
    if (cublasLtMatmulAlgoGetHeuristic(e->lt, t->op, t->la, t->lb, t->lc, t->lc, pref, 8, res, &nres) !=
        CUBLAS_STATUS_SUCCESS)
        nres = 0;
    cublasLtMatmulPreferenceDestroy(pref);
    cudaEvent_t a, b;
    CU(cudaEventCreate(&a));
    CU(cudaEventCreate(&b));
    float best = INFINITY;
    int best_how = 0;
    cublasLtMatmulAlgo_t best_algo;
    memset(&best_algo, 0, sizeof best_algo);
    int gemv_ok = e->use_gemv && lk_op_gemv_ok(t->M, t->K) && !(((uintptr_t)x | (uintptr_t)w) & 15);
    for (int c = -1; c <= nres; c++) { /* -1 gemv, 0 cublasGemmEx, 1.. the heuristic's algorithms */
        if (c < 0 && !gemv_ok) continue;
        if (c > 0 && res[c - 1].state != CUBLAS_STATUS_SUCCESS) continue;
        cu_tuned cand = *t;
        cand.how = c < 0 ? -1 : c == 0 ? 0 : 1;
        if (c > 0) cand.algo = res[c - 1].algo;
        int rc = gemm_run(e, &cand, out, x, w, err); /* warm-up; an algorithm that fails is skipped */
        if (rc) {
            if (c <= 0) return rc;
            continue;
        }
        CU(cudaEventRecord(a, e->st));
        for (int i = 0; i < 3; i++) TRY(gemm_run(e, &cand, out, x, w, err));
        CU(cudaEventRecord(b, e->st));
        CU(cudaEventSynchronize(b));
        float ms = 0;
        CU(cudaEventElapsedTime(&ms, a, b));
        if (ms < best) {
            best = ms;
            best_how = cand.how;
            best_algo = cand.algo;
        }
    }
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    t->how = best_how;
    t->algo = best_algo;
    if (getenv("LEANK_CUDA_TUNE_LOG"))
        fprintf(stderr, "leank cuda tune: M %d N %d K %d -> %s (%.1f us)\n", t->M, t->N, t->K,
                best_how < 0 ? "gemv" : best_how == 0 ? "cublasGemmEx" : "cublasLt", best * 1e3f / 3);
    return 0;
}

/* Checked mode: compare n elements at out with the reference the caller has
 * put at e->chk; report a relative L2 error over tol on stderr. */
static int chk_room(cu_engine *e, size_t bytes, lk_err *err) {
    bytes += 64;
    if (bytes <= e->chk_bytes) return 0;
    CU(cudaStreamSynchronize(e->st));
    if (e->chk) dfree(e, e->chk, e->chk_bytes);
    e->chk = NULL;
    e->chk_bytes = 0;
    TRY(dalloc(e, &e->chk, bytes, "checked-mode buffers", err));
    e->chk_bytes = bytes;
    return 0;
}

static int chk_compare(cu_engine *e, int dt, const void *out, size_t n, const char *what, int M, int N, int K,
                       lk_err *err) {
    double *acc = (double *)e->chk, h[2];
    const void *ref = (char *)e->chk + 64;
    CU(cudaMemsetAsync(acc, 0, 2 * sizeof(double), e->st));
    KR(lk_op_diff(dt, out, ref, n, acc, e->st));
    CU(cudaMemcpyAsync(h, acc, sizeof h, cudaMemcpyDeviceToHost, e->st));
    CU(cudaStreamSynchronize(e->st));
    double rel = h[1] > 0 ? sqrt(h[0] / h[1]) : sqrt(h[0]);
    double tol = dt == LK_OP_F32 && e->dt == LK_OP_F32 ? 1e-4 : 1e-2;
    if (!(rel <= tol))
        fprintf(stderr, "leank cuda check: %s (%d, %d, %d): rel L2 %.3g against the reference\n", what, M, N, K, rel);
    return 0;
}

static int chk_gemm(cu_engine *e, const void *out, cudaDataType_t ot, const void *x, const void *w, int M, int N,
                    int K, lk_err *err) {
    int odt = ot == CUDA_R_32F ? LK_OP_F32 : e->dt;
    TRY(chk_room(e, (size_t)M * N * 4, err));
    KR(lk_op_ref_gemm(e->dt, odt, (char *)e->chk + 64, x, w, M, N, K, e->st));
    return chk_compare(e, odt, out, (size_t)M * N, "product", M, N, K, err);
}

/* out (M, N) = x (M, K) w^T, w (N, K) row-major, both of the engine's type;
 * out of type ot (the engine's, or f32 for logits). Few rows (decode): the
 * fastest way timed once per shape; many rows (prefill): cuBLAS. */
static int gemm_any(cu_engine *e, void *out, cudaDataType_t ot, const void *x, const void *w, int M, int N, int K,
                    lk_err *err);
static int gemm(cu_engine *e, void *out, cudaDataType_t ot, const void *x, const void *w, int M, int N, int K,
                lk_err *err) {
    TRY(gemm_any(e, out, ot, x, w, M, N, K, err));
    return e->check ? chk_gemm(e, out, ot, x, w, M, N, K, err) : 0;
}

static int gemm_any(cu_engine *e, void *out, cudaDataType_t ot, const void *x, const void *w, int M, int N, int K,
                    lk_err *err) {
    if (M <= 0) return 0;
    if (e->dt != LK_OP_BF16 || M > e->tune_max_m || !e->use_tune) {
        if (e->use_gemv && e->dt == LK_OP_BF16 && M <= 2 && lk_op_gemv_ok(M, K) &&
            !(((uintptr_t)x | (uintptr_t)w) & 15)) {
            KR(lk_op_gemv(ot == CUDA_R_32F ? LK_OP_F32 : LK_OP_BF16, out, x, w, M, N, K, e->st));
            return 0;
        }
        return gemm_plain(e, out, ot, x, w, M, N, K, err);
    }
    for (int i = 0; i < e->n_tuned; i++) {
        cu_tuned *t = &e->tuned[i];
        if (t->M == M && t->N == N && t->K == K && t->ot == ot) return gemm_run(e, t, out, x, w, err);
    }
    if (e->n_tuned == MAX_TUNED) return gemm_plain(e, out, ot, x, w, M, N, K, err);
    cu_tuned *t = &e->tuned[e->n_tuned];
    memset(t, 0, sizeof *t);
    t->M = M, t->N = N, t->K = K, t->ot = ot;
    int rc = gemm_tune(e, t, out, x, w, err);
    if (rc) return rc;
    e->n_tuned++;
    return gemm_run(e, t, out, x, w, err);
}

/* ------------------------------------------------------------ plans */

/* Rows a page holds (plan.h's definition, shared with leank-pack). */
static void plan_geometry(const cu_engine *e, const lk_plan *p, int *P, int *F) {
    lk_kv_pages pg;
    lk_kv_pages_at(&e->base.cfg, p, (int)e->esz, 0, &pg);
    *P = pg.mid_tokens;
    *F = pg.full_tokens;
}

/* Pages a sequence of plan p (NULL dense) and max_len positions needs: the
 * library's definition (plan.h), which leank-pack's prediction shares. */
static void seq_pages(const cu_engine *e, const lk_plan *p, int max_len, int *n_mid, int *n_full) {
    lk_kv_pages pg;
    lk_kv_pages_at(&e->base.cfg, p, (int)e->esz, max_len, &pg);
    *n_mid = pg.n_mid;
    *n_full = pg.n_full;
}

static int plan_make(cu_engine *e, const lk_plan *src, cu_plan **out, lk_err *err) {
    int L = e->L, G = e->G, hd = e->HD;
    size_t nh = (size_t)L * G;
    cu_plan *p = (cu_plan *)calloc(1, sizeof *p);
    if (!p) return lk_seterr(err, LK_ENOMEM, "plan: out of host memory");
    p->h_width = (int *)malloc(nh * sizeof(int));
    p->h_chan = (int *)malloc(nh * hd * sizeof(int));
    int *kcol = (int *)malloc(nh * sizeof(int)), *vcol = (int *)malloc(nh * sizeof(int));
    int64_t *koff = (int64_t *)malloc((L + 1) * sizeof(int64_t)),
            *voff = (int64_t *)malloc((L + 1) * sizeof(int64_t));
    if (src) {
        p->sink = src->sink;
        p->recent = src->recent;
        memcpy(p->h_width, src->width, nh * sizeof(int));
        memcpy(p->h_chan, src->chan, nh * hd * sizeof(int));
        memcpy(kcol, src->k_col, nh * sizeof(int));
        memcpy(vcol, src->v_col, nh * sizeof(int));
        memcpy(koff, src->k_off, (L + 1) * sizeof(int64_t));
        memcpy(voff, src->v_off, (L + 1) * sizeof(int64_t));
    } else {
        for (size_t i = 0; i < nh; i++) {
            p->h_width[i] = hd;
            for (int d = 0; d < hd; d++) p->h_chan[i * hd + d] = d;
            kcol[i] = vcol[i] = (int)(i % G) * hd;
        }
        for (int l = 0; l <= L; l++) koff[l] = voff[l] = (int64_t)l * G * hd;
    }
    int all_full = 1;
    for (size_t i = 0; i < nh; i++) all_full &= p->h_width[i] == hd;
    size_t bytes = align_up(nh * 4) * 3 + align_up(nh * hd * 4) + 2 * align_up((L + 1) * 8);
    int rc = dalloc(e, &p->dmem, bytes, "a cache plan", err);
    if (!rc) {
        char *h = (char *)calloc(1, bytes), *d = (char *)p->dmem;
        size_t o = 0;
        lk_kv_plan_dev *v = &p->dev;
#define PUT(field, type, srcp, n)                      \
    memcpy(h + o, srcp, (n) * sizeof(type));           \
    v->field = (const type *)(d + o);                  \
    o += align_up((n) * sizeof(type));
        PUT(width, int, p->h_width, nh);
        PUT(chan, int, p->h_chan, nh * hd);
        PUT(k_col, int, kcol, nh);
        PUT(v_col, int, vcol, nh);
        PUT(k_off, int64_t, koff, (size_t)L + 1);
        PUT(v_off, int64_t, voff, (size_t)L + 1);
#undef PUT
        /* on the engine's stream, then waited for: a plain cudaMemcpy from
         * pageable memory may return before its DMA lands, and the engine's
         * stream does not wait for the legacy default stream */
        cudaError_t r = cudaMemcpyAsync(p->dmem, h, bytes, cudaMemcpyHostToDevice, e->st);
        if (r == cudaSuccess) r = cudaStreamSynchronize(e->st);
        free(h);
        if (r != cudaSuccess)
            rc = lk_seterr(err, LK_EDEVICE, "%s:%d: plan upload: %s", __FILE__, __LINE__, cudaGetErrorString(r));
        v->n_layers = L;
        v->n_kv_heads = G;
        v->head_dim = hd;
        v->sink = p->sink;
        v->recent = p->recent;
        v->all_full = all_full;
        v->mid_token_elems = koff[L] + voff[L];
        plan_geometry(e, src, &v->mid_tokens, &v->full_tokens);
    }
    free(kcol);
    free(vcol);
    free(koff);
    free(voff);
    if (rc) {
        if (p->dmem) dfree(e, p->dmem, bytes);
        free(p->h_width);
        free(p->h_chan);
        free(p);
        return rc;
    }
    p->refs = 0;
    p->serial = ++e->plan_serial;
    *out = p;
    return 0;
}

static size_t plan_dbytes(const cu_engine *e) {
    size_t nh = (size_t)e->L * e->G;
    return align_up(nh * 4) * 3 + align_up(nh * e->HD * 4) + 2 * align_up((e->L + 1) * 8);
}

static void plan_release(cu_engine *e, cu_plan *p) {
    if (!p || p == e->dense || --p->refs > 0) return;
    for (cu_plan **pp = &e->plans; *pp; pp = &(*pp)->next)
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    dfree(e, p->dmem, plan_dbytes(e));
    free(p->h_width);
    free(p->h_chan);
    free(p);
}

/* The device plan of src (NULL: the dense one), shared by content. */
static int plan_get(cu_engine *e, const lk_plan *src, cu_plan **out, lk_err *err) {
    if (!src) {
        *out = e->dense;
        return 0;
    }
    size_t nh = (size_t)e->L * e->G;
    for (cu_plan *p = e->plans; p; p = p->next)
        if (p->sink == src->sink && p->recent == src->recent &&
            !memcmp(p->h_width, src->width, nh * sizeof(int)) &&
            !memcmp(p->h_chan, src->chan, nh * e->HD * sizeof(int))) {
            p->refs++;
            *out = p;
            return 0;
        }
    cu_plan *p;
    TRY(plan_make(e, src, &p, err));
    p->refs = 1;
    p->next = e->plans;
    e->plans = p;
    *out = p;
    return 0;
}

/* ------------------------------------------------------------ staging */

/* Pinned host buffer of at least n bytes, free to write (the last upload
 * from it has finished). */
static int pin_get(cu_engine *e, size_t n, lk_err *err) {
    CU(cudaEventSynchronize(e->pin_evt));
    if (n <= e->pin_cap) return 0;
    if (e->pin) cudaFreeHost(e->pin);
    e->pin = NULL;
    e->pin_cap = 0;
    size_t cap = n < (1 << 20) ? (1 << 20) : n * 2;
    CU(cudaHostAlloc((void **)&e->pin, cap, cudaHostAllocDefault));
    e->pin_cap = cap;
    return 0;
}

static int upload(cu_engine *e, void *dst, const void *src, size_t n, lk_err *err) {
    CU(cudaMemcpyAsync(dst, src, n, cudaMemcpyHostToDevice, e->st));
    return 0;
}

/* Grow a device int area to n ints (rare: only past the sizes set at load). */
static int grow_ints(cu_engine *e, int **p, size_t *cap, size_t n, const char *what, lk_err *err) {
    if (n <= *cap) return 0;
    CU(cudaStreamSynchronize(e->st));
    dfree(e, *p, *cap * sizeof(int));
    *p = NULL;
    *cap = 0;
    TRY(dalloc(e, (void **)p, n * sizeof(int), what, err));
    *cap = n;
    return 0;
}

/* Single-sequence tables: entry i (0 or 1) of d_one; fills kv. */
static void one_layout(const cu_engine *e, int ms, int fs, int i, lk_kv_batch_dev *kv) {
    kv->pool = e->pool;
    kv->block_bytes = e->block_bytes;
    kv->seq_len = e->d_one + i;
    kv->mid_pages = e->d_one + 2 + (size_t)i * (ms + fs);
    kv->full_pages = kv->mid_pages + ms;
    kv->mid_stride = ms;
    kv->full_stride = fs;
}

/* Upload the tables of up to two sequences (lengths len[i]) into d_one. */
static int one_upload(cu_engine *e, cu_seq *const *s, const int *len, int n, lk_kv_batch_dev *kv,
                      lk_err *err) {
    int ms = 1, fs = 1;
    for (int i = 0; i < n; i++) {
        if (s[i]->n_mid > ms) ms = s[i]->n_mid;
        if (s[i]->n_full > fs) fs = s[i]->n_full;
    }
    size_t ints = 2 + 2 * (size_t)(ms + fs);
    TRY(grow_ints(e, &e->d_one, &e->one_cap, ints, "single-sequence page tables", err));
    TRY(pin_get(e, ints * sizeof(int), err));
    int *h = (int *)e->pin;
    memset(h, 0xff, ints * sizeof(int));
    for (int i = 0; i < n; i++) {
        h[i] = len[i];
        int *mid = h + 2 + (size_t)i * (ms + fs);
        memcpy(mid, s[i]->pages, s[i]->n_mid * sizeof(int));
        memcpy(mid + ms, s[i]->pages + s[i]->n_mid, s[i]->n_full * sizeof(int));
        one_layout(e, ms, fs, i, &kv[i]);
    }
    TRY(upload(e, e->d_one, h, ints * sizeof(int), err));
    CU(cudaEventRecord(e->pin_evt, e->st));
    return 0;
}

/* ------------------------------------------------------------ forward */

/* What a forward pass attends with: a prefill (one sequence, n rows) or a
 * decode (B rows grouped by plan). */
typedef struct {
    int prefill;
    int kv_only;           /* prefill: the last layer stores its K and V and stops */
    cu_seq *seq;           /* prefill */
    lk_kv_batch_dev one;   /* prefill: its tables */
    int n_groups;
    int g_off[64 + 1];     /* decode: rows of group g: g_off[g] .. g_off[g+1) */
    cu_plan *g_plan[64];
    int g_maxlen[64];
    lk_kv_batch_dev g_kv[64];
} attend_ctx;

/* Layer l of a kv_only prefill keeps only its K and V: nothing reads its attention or its output. */
static int kv_only_layer(const cu_engine *e, const attend_ctx *a, int l) { return a->kv_only && l == e->L - 1; }

static int attend(cu_engine *e, const attend_ctx *a, int l, int n, lk_err *err) {
    lk_kv_dtype dt = (lk_kv_dtype)e->dt;
    if (a->prefill) {
        if (!kv_only_layer(e, a, l)) {
            KR(lk_cuda_prefill_attention(dt, e->q, e->k, e->v, e->att, n, e->NH, e->G, e->HD, e->scale, e->st));
            if (e->check && n <= 4096) {
                size_t outb = align_up((size_t)n * e->QD * 4);
                TRY(chk_room(e, outb + (size_t)e->NH * n * n * 4, err));
                KR(lk_op_ref_attention(e->dt, (char *)e->chk + 64, e->q, e->k, e->v, n, e->NH, e->G, e->HD,
                                       e->scale, (float *)((char *)e->chk + 64 + outb), e->st));
                TRY(chk_compare(e, e->dt, e->att, (size_t)n * e->QD, "prefill attention", n, e->NH, e->HD, err));
            }
        }
        KR(lk_cuda_kv_prefill(dt, e->k, e->v, &a->seq->plan->dev, &a->one, l, n, e->st));
        return 0;
    }
    for (int g = 0; g < a->n_groups; g++) {
        int r0 = a->g_off[g], nb = a->g_off[g + 1] - r0;
        const char *q = (const char *)e->q + (size_t)r0 * e->QD * e->esz;
        char *o = (char *)e->att + (size_t)r0 * e->QD * e->esz;
        const char *k = (const char *)e->k + (size_t)r0 * e->KD * e->esz;
        const char *v = (const char *)e->v + (size_t)r0 * e->KD * e->esz;
        const lk_kv_plan_dev *pl = &a->g_plan[g]->dev;
        KR(lk_cuda_kv_append(dt, k, v, pl, &a->g_kv[g], l, nb, e->st));
        KR(lk_cuda_decode_attention(dt, q, o, pl, &a->g_kv[g], l, nb, e->NH, a->g_maxlen[g], e->scale,
                                    e->attn_ws, e->attn_ws_bytes, e->st));
    }
    return 0;
}

/* Rows 0 .. n-1 of x (embedded already) through every layer, then the final
 * norm of rows [last0, n) into xb (as rows 0 ..). pos: device positions (NULL:
 * 0 .. n-1). */
static int forward(cu_engine *e, const attend_ctx *a, int n, const int *pos, int last0, lk_err *err) {
    int D = e->D, H = e->H, QD = e->QD, KD = e->KD, W = QD + 2 * KD, C = e->C;
    size_t es = e->esz;
    int one_chunk = n <= C;
    /* Several chunks: chunk c's down projection is parked in att's rows of
     * chunk c (dead once its o_proj has run; the next layer's attention
     * rewrites them only after every chunk's norm has read them), so the next
     * layer's attention norm adds the residual, as the one-chunk path does
     * with delta, instead of a pass of its own (~40 us a 4K chunk on the 8B
     * shape). Rows of att and of the residual must then have one width. */
    int park = !one_chunk && QD == D;
    char *resid = park ? (char *)e->att : (char *)e->delta; /* where a pending down projection is */
    int pending = 0; /* the last down projection is still in resid, not yet added to x */
    for (int l = 0; l < e->L; l++) {
        const cu_layer *ly = &e->layers[l];
        for (int c0 = 0; c0 < n; c0 += C) {
            int m = n - c0 < C ? n - c0 : C;
            float *xc = e->x + (size_t)c0 * D;
            KR(lk_op_rmsnorm(e->dt, e->xb, xc, pending ? resid + (size_t)c0 * D * es : NULL, ly->attn_norm, m, D,
                             e->eps, e->st));
            mark(e, PH_NORM);
            TRY(gemm(e, e->qkv, e->ct, e->xb, ly->wqkv, m, W, D, err));
            mark(e, PH_QKV);
            KR(lk_op_qkv_rope(e->dt, e->qkv, ly->bqkv, (char *)e->q + (size_t)c0 * QD * es,
                              (char *)e->k + (size_t)c0 * KD * es, (char *)e->v + (size_t)c0 * KD * es,
                              e->rope_cos, e->rope_sin, pos ? pos + c0 : NULL, c0, m, e->NH, e->G, e->HD,
                              e->st));
            mark(e, PH_ROPE);
        }
        TRY(attend(e, a, l, n, err));
        mark(e, PH_ATTN);
        for (int c0 = 0; !kv_only_layer(e, a, l) && c0 < n; c0 += C) {
            int m = n - c0 < C ? n - c0 : C;
            float *xc = e->x + (size_t)c0 * D;
            TRY(gemm(e, e->delta, e->ct, (char *)e->att + (size_t)c0 * QD * es, ly->wo, m, D, QD, err));
            mark(e, PH_WO);
            KR(lk_op_rmsnorm(e->dt, e->xb, xc, e->delta, ly->ffn_norm, m, D, e->eps, e->st));
            mark(e, PH_NORM);
            TRY(gemm(e, e->gu, e->ct, e->xb, ly->wgu, m, 2 * H, D, err));
            mark(e, PH_GU);
            KR(lk_op_swiglu(e->dt, e->hb, e->gu, m, H, e->st));
            mark(e, PH_SWIGLU);
            TRY(gemm(e, resid + (size_t)(park ? c0 : 0) * D * es, e->ct, e->hb, ly->wd, m, D, H, err));
            mark(e, PH_DOWN);
            if (!one_chunk && !park) { /* the residual add: the next chunk's o_proj overwrites delta */
                KR(lk_op_rmsnorm(e->dt, NULL, xc, e->delta, NULL, m, D, e->eps, e->st));
                mark(e, PH_NORM);
            }
        }
        pending = (one_chunk || park) && !kv_only_layer(e, a, l);
        if (a->prefill && a->seq->base.on_layer && n > 1) { /* progress: the layer has run */
            CU(cudaStreamSynchronize(e->st));
            a->seq->base.on_layer(a->seq->base.on_layer_ctx, l + 1, e->L);
        }
    }
    if (a->kv_only) return 0;
    int m = n - last0;
    KR(lk_op_rmsnorm(e->dt, e->xb, e->x + (size_t)last0 * D,
                     pending ? resid + (size_t)last0 * D * es : NULL, e->final_norm, m, D, e->eps,
                     e->st));
    mark(e, PH_NORM);
    return 0;
}

/* ------------------------------------------------------------ ops: memory */

static void cu_memory(const lk_engine *be, lk_engine_mem *m) {
    const cu_engine *e = (const cu_engine *)be;
    size_t fr = 0, tot = 0;
    cudaSetDevice(e->dev);
    cudaMemGetInfo(&fr, &tot);
    m->weights = e->wbytes;
    m->pool = e->pool_bytes;
    m->pool_free = (size_t)e->n_free * e->block_bytes;
    m->device_free = fr;
    m->peak = e->dev_bytes;
}

static size_t cu_seq_bytes(const lk_engine *be, const lk_plan *plan, int max_len) {
    const cu_engine *e = (const cu_engine *)be;
    int nm, nf;
    seq_pages(e, plan, max_len, &nm, &nf);
    return (size_t)(nm + nf) * e->block_bytes;
}

static int cu_max_batch(const lk_engine *be, const lk_plan *plan, int max_len) {
    const cu_engine *e = (const cu_engine *)be;
    int nm, nf;
    seq_pages(e, plan, max_len, &nm, &nf);
    int by_pool = nm + nf > 0 ? e->n_free / (nm + nf) : e->n_free_slots;
    return by_pool < e->n_free_slots ? by_pool : e->n_free_slots;
}

static int64_t cu_seq_reserved(const lk_seq *bs) {
    const cu_seq *s = (const cu_seq *)bs;
    return (int64_t)(s->n_mid + s->n_full) * (int64_t)((const cu_engine *)bs->e)->block_bytes;
}

/* ------------------------------------------------------------ sequences */

static void cu_seq_free(lk_seq *bs) {
    cu_seq *s = (cu_seq *)bs;
    if (!s) return;
    cu_engine *e = (cu_engine *)bs->e;
    /* last page first: the next sequence pops them in ascending order again */
    for (int i = s->n_mid + s->n_full - 1; i >= 0; i--) e->free_blocks[e->n_free++] = s->pages[i];
    if (s->slot >= 0) e->free_slots[e->n_free_slots++] = s->slot;
    plan_release(e, s->plan);
    free(s->pages);
    free(s);
}

static int ensure_rope(cu_engine *e, int n, lk_err *err);

static int cu_seq_new(lk_engine *be, lk_seq **out, const lk_seq_opts *o, lk_err *err) {
    cu_engine *e = (cu_engine *)be;
    int nm, nf;
    seq_pages(e, o->plan, o->max_len, &nm, &nf);
    int need = nm + nf;
    if (need > e->n_free) {
        size_t per = (size_t)need * e->block_bytes;
        return lk_seterr(err, LK_ENOMEM,
                         "cuda: a sequence of %d positions (%s cache) needs %zu bytes of the KV pool, %zu are "
                         "free (pool %zu bytes, %zu-byte pages); the pool holds at most %zu such sequences, %zu "
                         "with what is free now",
                         o->max_len, o->plan ? "pruned" : "dense", per, (size_t)e->n_free * e->block_bytes,
                         e->pool_bytes, e->block_bytes, need ? (size_t)e->n_blocks / need : 0,
                         need ? (size_t)e->n_free / need : 0);
    }
    if (e->n_free_slots == 0)
        return lk_seterr(err, LK_ENOMEM,
                         "cuda: %d sequences are live, the most this engine keeps logits for (max_batch %d); free "
                         "one first or raise max_batch",
                         e->n_slots, e->max_batch);
    CU(cudaSetDevice(e->dev));
    TRY(ensure_rope(e, o->max_len, err));
    cu_seq *s = (cu_seq *)calloc(1, sizeof *s);
    if (!s) return lk_seterr(err, LK_ENOMEM, "cuda: out of host memory");
    s->slot = -1;
    int rc = plan_get(e, o->plan, &s->plan, err);
    if (rc) {
        free(s);
        return rc;
    }
    s->pages = (int *)malloc((size_t)(need ? need : 1) * sizeof(int));
    for (int i = 0; i < need; i++) s->pages[i] = e->free_blocks[--e->n_free];
    s->n_mid = nm;
    s->n_full = nf;
    s->slot = e->free_slots[--e->n_free_slots];
    s->logits = e->slots + (size_t)s->slot * e->V;
    s->base.e = be;
    s->base.plan = o->plan;
    s->base.len = 0;
    s->base.max_len = o->max_len;
    s->base.sampling = o->sampling;
    s->temperature = o->sampling.temperature;
    s->top_k = o->sampling.top_k < 0 || o->sampling.top_k > e->V ? 0 : o->sampling.top_k;
    s->top_p = o->sampling.top_p <= 0.0f || o->sampling.top_p > 1.0f ? 1.0f : o->sampling.top_p;
    uint64_t z = o->sampling.seed + 0x9e3779b97f4a7c15ULL; /* sampler.c's seeding */
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    s->rng = z ? z : 0x2545f4914f6cdd1dULL;
    *out = &s->base;
    return 0;
}

/* ------------------------------------------------------------ prefill */

static int cu_prefill(lk_engine *be, lk_seq *bs, const int *ids, int n, lk_err *err) {
    cu_engine *e = (cu_engine *)be;
    cu_seq *s = (cu_seq *)bs;
    if (n > e->max_prefill)
        return lk_seterr(err, LK_EUSAGE,
                         "cuda prefill: %d tokens in one call, more than the engine's max_prefill %d (set "
                         "lk_engine_opts.max_prefill)",
                         n, e->max_prefill);
    CU(cudaSetDevice(e->dev));
    attend_ctx a;
    memset(&a, 0, sizeof a);
    a.prefill = 1;
    a.kv_only = s->base.kv_only;
    a.seq = s;
    int len = n;
    TRY(one_upload(e, &s, &len, 1, &a.one, err));
    TRY(pin_get(e, (size_t)n * sizeof(int), err));
    memcpy(e->pin, ids, (size_t)n * sizeof(int));
    TRY(upload(e, e->d_pids, e->pin, (size_t)n * sizeof(int), err));
    CU(cudaEventRecord(e->pin_evt, e->st));
    prof_begin(e, 0);
    KR(lk_op_embed(e->dt, e->x, e->embed, e->d_pids, n, e->D, e->st));
    mark(e, PH_EMBED);
    TRY(forward(e, &a, n, NULL, n - 1, err));
    if (!a.kv_only) {
        TRY(gemm(e, s->logits, CUDA_R_32F, e->xb, e->lm_head, 1, e->V, e->D, err));
        mark(e, PH_HEAD);
    }
    prof_end(e);
    CU(cudaStreamSynchronize(e->st));
    s->base.len = n;
    return 0;
}

/* ------------------------------------------------------------ decode */

/* The launches of one decode step (inputs already on the device). */
static int decode_body(cu_engine *e, const attend_ctx *a, int B, lk_err *err) {
    KR(lk_op_embed(e->dt, e->x, e->embed, e->d_step, B, e->D, e->st));
    mark(e, PH_EMBED);
    TRY(forward(e, a, B, e->d_step + e->max_batch, 0, err));
    TRY(gemm(e, e->lrows, CUDA_R_32F, e->xb, e->lm_head, B, e->V, e->D, err));
    KR(lk_op_scatter_rows(e->d_lptr, e->lrows, B, e->V, e->st));
    mark(e, PH_HEAD);
    return 0;
}

static int cu_decode(lk_engine *be, lk_seq *const *seqs, int B, const int *ids, lk_err *err) {
    cu_engine *e = (cu_engine *)be;
    if (B > e->max_batch)
        return lk_seterr(err, LK_EUSAGE,
                         "cuda decode: %d sequences in one call, more than the engine's max_batch %d", B,
                         e->max_batch);
    CU(cudaSetDevice(e->dev));
    /* group rows by plan (stable), refuse a sequence given twice */
    e->mark++;
    attend_ctx a;
    memset(&a, 0, sizeof a);
    int ng = 0;
    for (int b = 0; b < B; b++) {
        cu_seq *s = (cu_seq *)seqs[b];
        if (s->mark == e->mark)
            return lk_seterr(err, LK_EUSAGE, "cuda decode: sequence %d appears twice in one call", b);
        s->mark = e->mark;
        s->plan->group = -1;
    }
    for (int b = 0; b < B; b++) {
        cu_plan *p = ((cu_seq *)seqs[b])->plan;
        if (p->group < 0) {
            if (ng == 64) return lk_seterr(err, LK_EUSAGE, "cuda decode: more than 64 different plans in one call");
            p->group = ng;
            a.g_plan[ng++] = p;
        }
    }
    a.n_groups = ng;
    int r = 0, ms = 1, fs = 1;
    for (int g = 0; g < ng; g++) {
        a.g_off[g] = r;
        a.g_maxlen[g] = 0;
        for (int b = 0; b < B; b++) {
            cu_seq *s = (cu_seq *)seqs[b];
            if (s->plan->group != g) continue;
            e->h_order[r] = b;
            e->h_rows[r++] = s;
            /* the longest a sequence of the group may grow (not its length
             * now): the same split geometry every step, so a captured
             * step can be replayed */
            if (s->base.max_len > a.g_maxlen[g]) a.g_maxlen[g] = s->base.max_len;
            if (s->n_mid > ms) ms = s->n_mid;
            if (s->n_full > fs) fs = s->n_full;
        }
    }
    a.g_off[ng] = B;
    for (int g = 0; g < ng; g++) {
        size_t need = lk_cuda_decode_workspace(a.g_off[g + 1] - a.g_off[g], e->NH, e->HD, a.g_maxlen[g]);
        if (need > e->attn_ws_bytes) {
            CU(cudaStreamSynchronize(e->st));
            dfree(e, e->attn_ws, e->attn_ws_bytes);
            e->attn_ws = NULL;
            e->attn_ws_bytes = 0;
            TRY(dalloc(e, &e->attn_ws, need, "the decode attention workspace", err));
            e->attn_ws_bytes = need;
        }
    }
    /* staging: ids | positions | seq_len, slot pointers, then the tables */
    size_t mb = e->max_batch, tab_n = (size_t)B * (ms + fs);
    size_t step_b = 3 * mb * sizeof(int), ptr_b = mb * sizeof(float *);
    TRY(pin_get(e, step_b + ptr_b + tab_n * sizeof(int), err));
    int *h = (int *)e->pin;
    float **hp = (float **)(e->pin + step_b);
    int *ht = (int *)(e->pin + step_b + ptr_b);
    for (int i = 0; i < B; i++) {
        cu_seq *s = e->h_rows[i];
        h[i] = ids[e->h_order[i]];
        h[mb + i] = s->base.len;
        h[2 * mb + i] = s->base.len + 1;
        hp[i] = s->logits;
        int *mid = ht + (size_t)i * ms, *full = ht + (size_t)B * ms + (size_t)i * fs;
        memcpy(mid, s->pages, s->n_mid * sizeof(int));
        for (int j = s->n_mid; j < ms; j++) mid[j] = -1;
        memcpy(full, s->pages + s->n_mid, s->n_full * sizeof(int));
        for (int j = s->n_full; j < fs; j++) full[j] = -1;
    }
    TRY(upload(e, e->d_step, h, step_b, err));
    TRY(upload(e, e->d_lptr, hp, ptr_b, err));
    if (ms != e->tab_ms || fs != e->tab_fs || tab_n != e->h_tab_n || memcmp(e->h_tab, ht, tab_n * sizeof(int))) {
        TRY(grow_ints(e, &e->d_tab, &e->tab_cap, tab_n, "decode page tables", err));
        TRY(upload(e, e->d_tab, ht, tab_n * sizeof(int), err));
        free(e->h_tab);
        e->h_tab = (int *)malloc(tab_n * sizeof(int));
        memcpy(e->h_tab, ht, tab_n * sizeof(int));
        e->h_tab_n = tab_n;
        e->tab_ms = ms;
        e->tab_fs = fs;
    }
    CU(cudaEventRecord(e->pin_evt, e->st));
    for (int g = 0; g < ng; g++) {
        lk_kv_batch_dev *kv = &a.g_kv[g];
        int r0 = a.g_off[g];
        kv->pool = e->pool;
        kv->block_bytes = e->block_bytes;
        kv->seq_len = e->d_step + 2 * mb + r0;
        kv->mid_pages = e->d_tab + (size_t)r0 * ms;
        kv->full_pages = e->d_tab + (size_t)B * ms + (size_t)r0 * fs;
        kv->mid_stride = ms;
        kv->full_stride = fs;
    }
    /* The step's launches depend only on the batch's make-up (group sizes,
     * plans, strides, max lengths; the rest is read from device arrays
     * uploaded above): the same make-up twice running is captured
     * into a CUDA graph, replayed while it stays the same. */
    int graphs = e->use_graph && !e->prof && !e->check;
    size_t sn = 8 + 3 * (size_t)ng;
    if (graphs && sn > e->sig_cap) {
        free(e->sig_now);
        free(e->sig_graph);
        free(e->sig_prev);
        e->sig_cap = sn * 2;
        e->sig_now = (uintptr_t *)calloc(e->sig_cap, sizeof(uintptr_t));
        e->sig_graph = (uintptr_t *)calloc(e->sig_cap, sizeof(uintptr_t));
        e->sig_prev = (uintptr_t *)calloc(e->sig_cap, sizeof(uintptr_t));
        e->sig_graph_n = e->sig_prev_n = 0;
    }
    if (graphs) {
        uintptr_t *g = e->sig_now;
        size_t k = 0;
        g[k++] = B, g[k++] = ng, g[k++] = ms, g[k++] = fs, g[k++] = (uintptr_t)e->pool;
        g[k++] = (uintptr_t)e->d_tab, g[k++] = (uintptr_t)e->attn_ws; /* buffers that may move */
        g[k++] = (uintptr_t)e->rope_cos;
        for (int i = 0; i < ng; i++)
            g[k++] = a.g_off[i + 1], g[k++] = a.g_maxlen[i], g[k++] = (uintptr_t)a.g_plan[i]->serial;
        if (e->gexec && sn == e->sig_graph_n && !memcmp(g, e->sig_graph, sn * sizeof *g)) {
            CU(cudaGraphLaunch(e->gexec, e->st));
            for (int b = 0; b < B; b++) seqs[b]->len++;
            return 0;
        }
        if (sn == e->sig_prev_n && !memcmp(g, e->sig_prev, sn * sizeof *g)) { /* second time: capture */
            cudaGraph_t graph;
            CU(cudaStreamBeginCapture(e->st, cudaStreamCaptureModeRelaxed));
            int rc = decode_body(e, &a, B, err);
            cudaError_t r = cudaStreamEndCapture(e->st, &graph);
            if (rc) return rc;
            CU(r);
            if (e->gexec) cudaGraphExecDestroy(e->gexec);
            e->gexec = NULL;
            r = cudaGraphInstantiate(&e->gexec, graph, 0);
            cudaGraphDestroy(graph);
            CU(r);
            CU(cudaGraphLaunch(e->gexec, e->st));
            memcpy(e->sig_graph, g, sn * sizeof *g);
            e->sig_graph_n = sn;
            for (int b = 0; b < B; b++) seqs[b]->len++;
            return 0;
        }
        memcpy(e->sig_prev, g, sn * sizeof *g); /* first time: run plainly (and tune its products) */
        e->sig_prev_n = sn;
    }
    prof_begin(e, 1);
    TRY(decode_body(e, &a, B, err));
    prof_end(e);
    for (int b = 0; b < B; b++) seqs[b]->len++;
    return 0;
}

/* ------------------------------------------------------------ sampling, logits */

static float next_uniform(uint64_t *rng) { /* sampler.c's lk_sampler_uniform */
    *rng ^= *rng >> 12;
    *rng ^= *rng << 25;
    *rng ^= *rng >> 27;
    return (float)((*rng * 0x2545f4914f6cdd1dULL) >> 40) / 16777216.0f;
}

static int cu_sample(lk_engine *be, lk_seq *const *seqs, int B, int *ids, lk_err *err) {
    cu_engine *e = (cu_engine *)be;
    CU(cudaSetDevice(e->dev));
    for (int b0 = 0; b0 < B; b0 += e->max_batch) {
        int nb = B - b0 < e->max_batch ? B - b0 : e->max_batch;
        size_t ptr_b = (size_t)nb * sizeof(float *), par_b = (size_t)nb * sizeof(lk_op_sample_params);
        TRY(pin_get(e, ptr_b + par_b + nb * sizeof(int), err));
        float **hp = (float **)e->pin;
        lk_op_sample_params *pp = (lk_op_sample_params *)(e->pin + ptr_b);
        for (int i = 0; i < nb; i++) {
            cu_seq *s = (cu_seq *)seqs[b0 + i];
            hp[i] = s->logits;
            pp[i].temperature = s->temperature;
            pp[i].top_k = s->top_k;
            pp[i].top_p = s->top_p;
            pp[i].u = s->temperature > 0.0f ? next_uniform(&s->rng) : 0.0f;
        }
        TRY(upload(e, e->d_lptr, hp, ptr_b, err));
        TRY(upload(e, e->d_params, pp, par_b, err));
        KR(lk_op_sample(e->d_lptr, e->d_params, e->d_out, nb, e->V, e->st));
        int *ho = (int *)(e->pin + ptr_b + par_b);
        CU(cudaMemcpyAsync(ho, e->d_out, nb * sizeof(int), cudaMemcpyDeviceToHost, e->st));
        CU(cudaEventRecord(e->pin_evt, e->st));
        CU(cudaStreamSynchronize(e->st));
        memcpy(ids + b0, ho, nb * sizeof(int));
    }
    return 0;
}

static int cu_logits(lk_engine *be, const lk_seq *bs, float *logits, lk_err *err) {
    cu_engine *e = (cu_engine *)be;
    CU(cudaSetDevice(e->dev));
    CU(cudaMemcpyAsync(logits, ((const cu_seq *)bs)->logits, (size_t)e->V * sizeof(float),
                       cudaMemcpyDeviceToHost, e->st));
    CU(cudaStreamSynchronize(e->st));
    return 0;
}

/* ------------------------------------------------------------ adopt */

static int cu_adopt(lk_engine *be, lk_seq *bd, const lk_seq *bsrc, lk_err *err) {
    cu_engine *e = (cu_engine *)be;
    cu_seq *d = (cu_seq *)bd, *s = (cu_seq *)bsrc;
    int n = s->base.len;
    if (n > e->R)
        return lk_seterr(err, LK_EUSAGE, "cuda adopt: %d tokens, more than the engine's scratch rows (%d)", n, e->R);
    CU(cudaSetDevice(e->dev));
    cu_seq *two[2] = {s, d};
    int len[2] = {n, n};
    lk_kv_batch_dev kv[2];
    TRY(one_upload(e, two, len, 2, kv, err));
    lk_kv_dtype dt = (lk_kv_dtype)e->dt;
    for (int l = 0; l < e->L; l++) {
        KR(lk_cuda_kv_gather(dt, e->k, e->v, &s->plan->dev, &kv[0], l, n, e->st));
        KR(lk_cuda_kv_prefill(dt, e->k, e->v, &d->plan->dev, &kv[1], l, n, e->st));
    }
    CU(cudaMemcpyAsync(d->logits, s->logits, (size_t)e->V * sizeof(float), cudaMemcpyDeviceToDevice, e->st));
    CU(cudaStreamSynchronize(e->st));
    d->base.len = n;
    return 0;
}

/* ------------------------------------------------------------ engine */

static void cu_free(lk_engine *be) {
    cu_engine *e = (cu_engine *)be;
    if (!e) return;
    cudaSetDevice(e->dev);
    if (e->st) cudaStreamSynchronize(e->st);
    if (e->prof) {
        prof_print(e);
        for (int i = 0; i < 4096; i++) cudaEventDestroy(e->ev[i]);
    }
    while (e->plans) {
        cu_plan *p = e->plans;
        e->plans = p->next;
        cudaFree(p->dmem);
        free(p->h_width);
        free(p->h_chan);
        free(p);
    }
    if (e->dense) {
        cudaFree(e->dense->dmem);
        free(e->dense->h_width);
        free(e->dense->h_chan);
        free(e->dense);
    }
    cudaFree(e->pool);
    cudaFree(e->slots);
    cudaFree(e->smem);
    cudaFree(e->wmem);
    cudaFree(e->rope_cos);
    cudaFree(e->rope_sin);
    cudaFree(e->attn_ws);
    cudaFree(e->d_tab);
    cudaFree(e->d_one);
    cudaFree(e->blas_ws);
    cudaFree(e->chk);
    if (e->gexec) cudaGraphExecDestroy(e->gexec);
    free(e->sig_now);
    free(e->sig_graph);
    free(e->sig_prev);
    if (e->pin) cudaFreeHost(e->pin);
    if (e->pin_evt) cudaEventDestroy(e->pin_evt);
    if (e->blas) cublasDestroy(e->blas);
    for (int i = 0; e->tuned && i < e->n_tuned; i++) {
        cublasLtMatmulDescDestroy(e->tuned[i].op);
        cublasLtMatrixLayoutDestroy(e->tuned[i].la);
        cublasLtMatrixLayoutDestroy(e->tuned[i].lb);
        cublasLtMatrixLayoutDestroy(e->tuned[i].lc);
    }
    free(e->tuned);
    if (e->lt) cublasLtDestroy(e->lt);
    if (e->st) cudaStreamDestroy(e->st);
    free(e->layers);
    free(e->free_blocks);
    free(e->free_slots);
    free(e->h_tab);
    free(e->h_order);
    free(e->h_rows);
    free(e);
}

static int pool_alloc(cu_engine *e, size_t want, lk_err *err);
/* The pool made anew at bytes (no sequence may hold pages): a program that
 * knows its batch sizes the pool to it instead of a share of free memory. */
static int cu_pool_resize(lk_engine *be, size_t bytes, lk_err *err) {
    cu_engine *e = (cu_engine *)be;
    if (e->n_free != e->n_blocks)
        return lk_seterr(err, LK_EUSAGE, "cuda: the KV pool is resized only while no sequence holds pages "
                         "(%d of %d blocks in use)", e->n_blocks - e->n_free, e->n_blocks);
    CU(cudaStreamSynchronize(e->st));
    dfree(e, e->pool, e->pool_bytes);
    e->pool = NULL;
    e->pool_bytes = 0;
    free(e->free_blocks);
    e->free_blocks = NULL;
    e->n_blocks = e->n_free = 0;
    return pool_alloc(e, bytes, err);
}

static const lk_engine_ops cuda_ops = {
    "cuda",        cu_free,    cu_memory, cu_seq_bytes, cu_max_batch, cu_seq_new, cu_seq_free,
    cu_seq_reserved, cu_prefill, cu_decode, cu_sample,   cu_logits,    cu_adopt, cu_pool_resize,
};

static int ensure_rope(cu_engine *e, int n, lk_err *err) {
    if (n <= e->rope_n) return 0;
    lk_rope_table t;
    if (lk_rope_table_build(&t, &e->base.cfg, n, err)) return LK_ENOMEM;
    size_t bytes = (size_t)n * t.half * sizeof(float);
    CU(cudaStreamSynchronize(e->st));
    dfree(e, e->rope_cos, (size_t)e->rope_n * t.half * sizeof(float));
    dfree(e, e->rope_sin, (size_t)e->rope_n * t.half * sizeof(float));
    e->rope_cos = e->rope_sin = NULL;
    e->rope_n = 0;
    int rc = dalloc(e, (void **)&e->rope_cos, bytes, "RoPE tables", err);
    if (!rc) rc = dalloc(e, (void **)&e->rope_sin, bytes, "RoPE tables", err);
    if (!rc) {
        cudaError_t r = cudaMemcpyAsync(e->rope_cos, t.cos, bytes, cudaMemcpyHostToDevice, e->st);
        if (r == cudaSuccess) r = cudaMemcpyAsync(e->rope_sin, t.sin, bytes, cudaMemcpyHostToDevice, e->st);
        if (r == cudaSuccess) r = cudaStreamSynchronize(e->st);
        if (r != cudaSuccess)
            rc = lk_seterr(err, LK_EDEVICE, "%s:%d: RoPE upload: %s", __FILE__, __LINE__, cudaGetErrorString(r));
    }
    lk_rope_table_free(&t);
    if (!rc) e->rope_n = n;
    return rc;
}

/* Weights layout: offsets into one allocation; returns total bytes. */
static size_t weights_layout(cu_engine *e, int bias, int tied, size_t *off) {
    size_t o = 0, es = e->esz;
    int D = e->D, W = e->QD + 2 * e->KD;
#define TAKE(n) (o = align_up(o), o += (size_t)(n) * es, o - (size_t)(n) * es)
    off[0] = TAKE((size_t)e->V * D);
    off[1] = TAKE(D);
    off[2] = tied ? off[0] : TAKE((size_t)e->V * D);
    size_t i = 3;
    for (int l = 0; l < e->L; l++) {
        off[i++] = TAKE((size_t)W * D);
        off[i++] = bias ? TAKE(W) : (size_t)-1;
        off[i++] = TAKE((size_t)D * e->QD);
        off[i++] = TAKE((size_t)2 * e->H * D);
        off[i++] = TAKE((size_t)D * e->H);
        off[i++] = TAKE(D);
        off[i++] = TAKE(D);
    }
#undef TAKE
    return align_up(o);
}

static void weights_point(cu_engine *e, const size_t *off) {
    char *b = (char *)e->wmem;
    e->embed = b + off[0];
    e->final_norm = b + off[1];
    e->lm_head = b + off[2];
    size_t i = 3;
    for (int l = 0; l < e->L; l++) {
        cu_layer *ly = &e->layers[l];
        ly->wqkv = b + off[i++];
        ly->bqkv = off[i] == (size_t)-1 ? NULL : b + off[i];
        i++;
        ly->wo = b + off[i++];
        ly->wgu = b + off[i++];
        ly->wd = b + off[i++];
        ly->attn_norm = b + off[i++];
        ly->ffn_norm = b + off[i++];
    }
}

/* Scratch sizes (bytes) for R full rows and C chunk rows. */
static size_t scratch_bytes(const cu_engine *e, size_t *parts) {
    size_t R = e->R, C = e->C, es = e->esz, mb = e->max_batch;
    size_t p[16], n = 0;
    p[n++] = align_up(R * e->D * 4);                   /* x */
    p[n++] = align_up(R * e->QD * es);                 /* q */
    p[n++] = align_up(R * e->KD * es);                 /* k */
    p[n++] = align_up(R * e->KD * es);                 /* v */
    p[n++] = align_up(R * e->QD * es);                 /* att */
    p[n++] = align_up(C * e->D * es);                  /* xb */
    p[n++] = align_up(C * (e->QD + 2 * e->KD) * es);   /* qkv */
    p[n++] = align_up(C * 2 * e->H * es);              /* gu */
    p[n++] = align_up(C * e->H * es);                  /* hb */
    p[n++] = align_up(C * e->D * es);                  /* delta */
    p[n++] = align_up(mb * e->V * 4);                  /* lrows */
    p[n++] = align_up(R * 4);                          /* d_pids */
    p[n++] = align_up(3 * mb * 4);                     /* d_step */
    p[n++] = align_up(mb * sizeof(float *));           /* d_lptr */
    p[n++] = align_up(mb * sizeof(lk_op_sample_params)); /* d_params */
    p[n++] = align_up(mb * 4);                         /* d_out */
    size_t t = 0;
    for (size_t i = 0; i < n; i++) {
        if (parts) parts[i] = t;
        t += p[i];
    }
    return t;
}

static void scratch_point(cu_engine *e, const size_t *o) {
    char *b = (char *)e->smem;
    int i = 0;
    e->x = (float *)(b + o[i++]);
    e->q = b + o[i++];
    e->k = b + o[i++];
    e->v = b + o[i++];
    e->att = b + o[i++];
    e->xb = b + o[i++];
    e->qkv = b + o[i++];
    e->gu = b + o[i++];
    e->hb = b + o[i++];
    e->delta = b + o[i++];
    e->lrows = (float *)(b + o[i++]);
    e->d_pids = (int *)(b + o[i++]);
    e->d_step = (int *)(b + o[i++]);
    e->d_lptr = (float **)(b + o[i++]);
    e->d_params = (lk_op_sample_params *)(b + o[i++]);
    e->d_out = (int *)(b + o[i++]);
}

/* The engine up to (not including) its weights' values: sizes checked,
 * weights, scratch, slots and pool allocated. */
static int engine_new(cu_engine **out, const lk_config *c, const lk_st *st, int dt, int bias, int tied,
                      const lk_engine_opts *o, lk_err *err) {
    *out = NULL;
    if (c->rope.partial_rotary_factor != 1.0)
        return lk_seterr(err, LK_EINPUT, "%s: partial_rotary_factor %g is not supported (expected 1)", c->arch,
                         c->rope.partial_rotary_factor);
    if (c->n_kv_heads <= 0 || c->n_heads % c->n_kv_heads || c->head_dim % 2 || c->head_dim > 256)
        return lk_seterr(err, LK_EINPUT,
                         "config: %d heads, %d kv heads, head_dim %d (expected heads a multiple of kv heads, "
                         "even head_dim <= 256)",
                         c->n_heads, c->n_kv_heads, c->head_dim);
    int ndev = 0;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) {
        cudaGetLastError();
        return lk_seterr(err, LK_EDEVICE, "cuda: no GPU is visible (nvidia-smi -L)");
    }
    int gpu = o ? o->gpu : 0;
    if (gpu < 0 || gpu >= ndev)
        return lk_seterr(err, LK_EUSAGE, "cuda: GPU %d asked for, %d visible", gpu, ndev);
    cu_engine *e = (cu_engine *)calloc(1, sizeof *e);
    if (!e) return lk_seterr(err, LK_ENOMEM, "cuda: out of host memory");
    e->dev = gpu;
    e->base.cache_dtype = dt == LK_OP_F32 ? "f32" : "bf16";
    e->base.cache_elem = (int)lk_op_size(dt);
    lk_engine_init_common(&e->base, &cuda_ops, c, st);
    e->dt = dt;
    e->esz = lk_op_size(dt);
    e->ct = dt == LK_OP_F32 ? CUDA_R_32F : CUDA_R_16BF;
    e->D = c->hidden_size;
    e->H = c->intermediate_size;
    e->NH = c->n_heads;
    e->G = c->n_kv_heads;
    e->HD = c->head_dim;
    e->QD = e->NH * e->HD;
    e->KD = e->G * e->HD;
    e->V = c->vocab_size;
    e->L = c->n_layers;
    e->eps = (float)c->rms_eps;
    e->scale = 1.0f / sqrtf((float)e->HD);
    int ctx = c->max_position_embeddings > 0 ? c->max_position_embeddings : 2048;
    e->max_batch = o && o->max_batch > 0 ? o->max_batch : 256;
    e->max_prefill = o && o->max_prefill > 0 ? o->max_prefill : ctx;
    e->R = e->max_prefill > e->max_batch ? e->max_prefill : e->max_batch;
    const char *cv = getenv("LEANK_CUDA_CHUNK"); /* GEMM chunk rows (NOTES-engine.md) */
    int chunk = cv && atoi(cv) >= 64 ? atoi(cv) : 4096;
    e->C = e->R < chunk ? e->R : chunk;
    if (e->C < e->max_batch) e->C = e->max_batch;
    int rc;
#define FAIL(x)                 \
    do {                        \
        if ((rc = (x))) {       \
            cu_free(&e->base);  \
            return rc;          \
        }                       \
    } while (0)
    cudaError_t cr = cudaSetDevice(gpu);
    if (cr == cudaSuccess) {
        cudaDeviceProp prop;
        cr = cudaGetDeviceProperties(&prop, gpu);
        if (cr == cudaSuccess) snprintf(e->base.device_name, sizeof e->base.device_name, "%s", prop.name);
    }
    if (cr == cudaSuccess) cr = cudaStreamCreateWithFlags(&e->st, cudaStreamNonBlocking);
    if (cr == cudaSuccess) cr = cudaEventCreateWithFlags(&e->pin_evt, cudaEventDisableTiming);
    if (cr != cudaSuccess) {
        cu_free(&e->base);
        return lk_seterr(err, LK_EDEVICE, "%s:%d: cuda set-up on GPU %d: %s", __FILE__, __LINE__, gpu,
                         cudaGetErrorString(cr));
    }
    const char *pv = getenv("LEANK_CUDA_GEMV");
    e->use_gemv = !(pv && !strcmp(pv, "0"));
    pv = getenv("LEANK_CUDA_CHECK");
    e->check = pv && strcmp(pv, "0");
    pv = getenv("LEANK_CUDA_GRAPH");
    e->use_graph = !(pv && !strcmp(pv, "0"));
    pv = getenv("LEANK_CUDA_TUNE");
    e->use_tune = !(pv && !strcmp(pv, "0"));
    pv = getenv("LEANK_CUDA_TUNE_MAX_M");
    e->tune_max_m = pv && atoi(pv) > 0 ? atoi(pv) : TUNE_MAX_M;
    e->tuned = (cu_tuned *)calloc(MAX_TUNED, sizeof(cu_tuned));
    pv = getenv("LEANK_CUDA_PROFILE");
    if (pv && strcmp(pv, "0")) {
        e->prof = 1;
        for (int i = 0; i < 4096 && e->prof; i++)
            if (cudaEventCreate(&e->ev[i]) != cudaSuccess) e->prof = 0;
    }
    cublasStatus_t bs = cublasCreate(&e->blas);
    if (bs == CUBLAS_STATUS_SUCCESS) bs = cublasSetStream(e->blas, e->st);
    if (bs == CUBLAS_STATUS_SUCCESS) bs = cublasLtCreate(&e->lt);
    if (bs != CUBLAS_STATUS_SUCCESS) {
        cu_free(&e->base);
        return lk_seterr(err, LK_EDEVICE, "%s:%d: cuBLAS set-up: %s", __FILE__, __LINE__,
                         cublasGetStatusString(bs));
    }
    /* sizes first: refuse what cannot fit before allocating it */
    e->layers = (cu_layer *)calloc(e->L, sizeof(cu_layer));
    size_t *woff = (size_t *)malloc((3 + 7 * (size_t)e->L) * sizeof(size_t));
    e->wbytes = weights_layout(e, bias, tied, woff);
    size_t soff[16];
    e->sbytes = scratch_bytes(e, soff);
    e->blas_ws_bytes = 32u << 20;
    e->n_slots = 2 * e->max_batch < 16 ? 16 : 2 * e->max_batch;
    size_t slot_bytes = align_up((size_t)e->n_slots * e->V * 4);
    e->attn_ws_bytes = lk_cuda_decode_workspace(e->max_batch, e->NH, e->HD, ctx);
    int rope_n = ctx > e->max_prefill ? ctx : e->max_prefill;
    size_t rope_bytes = 2 * align_up((size_t)rope_n * (e->HD / 2) * 4);
    size_t need = e->wbytes + e->sbytes + e->blas_ws_bytes + slot_bytes + e->attn_ws_bytes + rope_bytes +
                  plan_dbytes(e);
    size_t fr = 0, tot = 0;
    cudaMemGetInfo(&fr, &tot);
    if (need > fr) {
        free(woff);
        cu_free(&e->base);
        return lk_seterr(err, LK_ENOMEM,
                         "cuda: the model needs %.2f GB on %s (weights %.2f GB, scratch %.2f GB for %d prefill "
                         "tokens and %d decode rows, logits %.2f GB) and %.2f GB are free (lower max_prefill "
                         "or max_batch)",
                         need / GB, e->base.device_name, e->wbytes / GB, e->sbytes / GB, e->max_prefill,
                         e->max_batch, slot_bytes / GB, fr / GB);
    }
    rc = dalloc(e, &e->wmem, e->wbytes, "the weights", err);
    if (!rc) weights_point(e, woff);
    free(woff);
    if (rc) {
        cu_free(&e->base);
        return rc;
    }
    FAIL(dalloc(e, &e->smem, e->sbytes, "scratch", err));
    scratch_point(e, soff);
    FAIL(dalloc(e, &e->blas_ws, e->blas_ws_bytes, "the cuBLAS workspace", err));
    BL(cublasSetWorkspace(e->blas, e->blas_ws, e->blas_ws_bytes));
    FAIL(dalloc(e, (void **)&e->slots, slot_bytes, "logits slots", err));
    FAIL(dalloc(e, &e->attn_ws, e->attn_ws_bytes, "the decode attention workspace", err));
    FAIL(ensure_rope(e, rope_n, err));
    {
        lk_kv_pages pg; /* 32 dense tokens a block (plan.h) */
        lk_kv_pages_at(&e->base.cfg, NULL, (int)e->esz, 0, &pg);
        e->block_bytes = pg.block_bytes;
    }
    FAIL(plan_make(e, NULL, &e->dense, err));
    e->free_slots = (int *)malloc(e->n_slots * sizeof(int));
    for (int i = 0; i < e->n_slots; i++) e->free_slots[i] = e->n_slots - 1 - i;
    e->n_free_slots = e->n_slots;
    e->h_order = (int *)malloc(e->max_batch * sizeof(int));
    e->h_rows = (cu_seq **)malloc(e->max_batch * sizeof(cu_seq *));
    *out = e;
    return 0;
#undef FAIL
}

/* The pool, once the weights are in: a share of what is free, cut into
 * pages of block_bytes (32 dense tokens: every layer's K and V). */
static int pool_alloc(cu_engine *e, size_t want, lk_err *err);
static int pool_new(cu_engine *e, const lk_engine_opts *o, lk_err *err) {
    size_t fr = 0, tot = 0;
    CU(cudaMemGetInfo(&fr, &tot));
    double frac = o && o->mem_fraction > 0 ? o->mem_fraction : 0.9;
    return pool_alloc(e, o && o->pool_bytes ? o->pool_bytes : (size_t)(frac * (double)fr), err);
}

/* A pool of want bytes (rounded down to whole blocks). */
static int pool_alloc(cu_engine *e, size_t want, lk_err *err) {
    size_t fr = 0, tot = 0;
    CU(cudaMemGetInfo(&fr, &tot));
    if (want > fr)
        return lk_seterr(err, LK_ENOMEM, "cuda: a KV pool of %zu bytes asked for, %zu bytes free on %s", want, fr,
                         e->base.device_name);
    size_t nb = want / e->block_bytes;
    if (nb > 0x7fffffff) nb = 0x7fffffff;
    e->n_blocks = (int)nb;
    e->pool_bytes = nb * e->block_bytes;
    if (nb) TRY(dalloc(e, &e->pool, e->pool_bytes, "the KV pool", err));
    e->free_blocks = (int *)malloc((nb ? nb : 1) * sizeof(int));
    for (size_t i = 0; i < nb; i++) e->free_blocks[i] = (int)(nb - 1 - i);
    e->n_free = (int)nb;
    return 0;
}

/* ---- filling the weights ---- */

static int put_host(cu_engine *e, void *dst, const void *src, int src_dt, size_t n, void **stage,
                    size_t *stage_bytes, lk_err *err) {
    size_t ssz = src_dt == LK_OP_F32 ? 4 : 2;
    if (src_dt == e->dt) {
        CU(cudaMemcpyAsync(dst, src, n * ssz, cudaMemcpyHostToDevice, e->st));
        CU(cudaStreamSynchronize(e->st));
        return 0;
    }
    const size_t chunk = 16u << 20; /* elements per staged piece */
    if (!*stage) {
        TRY(dalloc(e, stage, chunk * 4, "a staging buffer", err));
        *stage_bytes = chunk * 4;
    }
    for (size_t i = 0; i < n; i += chunk) {
        size_t m = n - i < chunk ? n - i : chunk;
        /* same stream as the conversion: the copy has landed when it runs */
        CU(cudaMemcpyAsync(*stage, (const char *)src + i * ssz, m * ssz, cudaMemcpyHostToDevice, e->st));
        KR(lk_op_convert(e->dt, (char *)dst + i * e->esz, src_dt, *stage, m, e->st));
        CU(cudaStreamSynchronize(e->st));
    }
    return 0;
}

static int st_dt(const lk_tensor *t, int *dt, lk_err *err) {
    switch (t->dtype) {
    case LK_DT_F32: *dt = LK_OP_F32; return 0;
    case LK_DT_BF16: *dt = LK_OP_BF16; return 0;
    case LK_DT_F16: *dt = LK_OP_F16; return 0;
    default:
        return lk_seterr(err, LK_EINPUT, "%s: tensor %s is %s (expected F32, BF16 or F16)", t->file, t->name,
                         lk_dtype_name(t->dtype));
    }
}

/* Tensor name (shape d0[, d1]) into dst (+ element offset). */
static int put_st(cu_engine *e, const lk_st *st, const char *name, int ndim, int64_t d0, int64_t d1,
                  void *dst, void **stage, size_t *sb, lk_err *err) {
    int64_t shape[2] = {d0, d1};
    const lk_tensor *t;
    TRY(lk_st_expect(st, name, ndim, shape, &t, err));
    int sdt;
    TRY(st_dt(t, &sdt, err));
    return put_host(e, dst, t->data, sdt, (size_t)t->numel, stage, sb, err);
}

static char *at(cu_engine *e, void *base, size_t elems) { return (char *)base + elems * e->esz; }

extern "C" int lk_cuda_engine_available(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return n > 0;
}

extern "C" int lk_cuda_engine_from_st(lk_engine **out, const lk_config *c, const lk_st *st,
                                      const lk_engine_opts *o, lk_err *err) {
    *out = NULL;
    const lk_tensor *emb = lk_st_find(st, "model.embed_tokens.weight");
    if (!emb) return lk_seterr(err, LK_EINPUT, "checkpoint: no tensor model.embed_tokens.weight");
    int dt = emb->dtype == LK_DT_F32 ? LK_OP_F32 : LK_OP_BF16;
    int tied = c->tie_word_embeddings && !lk_st_find(st, "lm_head.weight");
    cu_engine *e;
    TRY(engine_new(&e, c, st, dt, c->attention_bias, tied, o, err));
    int D = e->D, H = e->H, QD = e->QD, KD = e->KD, V = e->V;
    void *stage = NULL;
    size_t sb = 0;
    int rc = 0;
    char name[256];
#define NAME(l, suffix) (snprintf(name, sizeof name, "model.layers.%d.%s", l, suffix), name)
    rc = put_st(e, st, "model.embed_tokens.weight", 2, V, D, e->embed, &stage, &sb, err);
    if (!rc) rc = put_st(e, st, "model.norm.weight", 1, D, 0, e->final_norm, &stage, &sb, err);
    if (!rc && !tied) rc = put_st(e, st, "lm_head.weight", 2, V, D, e->lm_head, &stage, &sb, err);
    for (int l = 0; l < e->L && !rc; l++) {
        cu_layer *ly = &e->layers[l];
        if (!rc) rc = put_st(e, st, NAME(l, "input_layernorm.weight"), 1, D, 0, ly->attn_norm, &stage, &sb, err);
        if (!rc) rc = put_st(e, st, NAME(l, "self_attn.q_proj.weight"), 2, QD, D, ly->wqkv, &stage, &sb, err);
        if (!rc)
            rc = put_st(e, st, NAME(l, "self_attn.k_proj.weight"), 2, KD, D, at(e, ly->wqkv, (size_t)QD * D),
                        &stage, &sb, err);
        if (!rc)
            rc = put_st(e, st, NAME(l, "self_attn.v_proj.weight"), 2, KD, D,
                        at(e, ly->wqkv, (size_t)(QD + KD) * D), &stage, &sb, err);
        if (!rc && ly->bqkv) {
            rc = put_st(e, st, NAME(l, "self_attn.q_proj.bias"), 1, QD, 0, ly->bqkv, &stage, &sb, err);
            if (!rc)
                rc = put_st(e, st, NAME(l, "self_attn.k_proj.bias"), 1, KD, 0, at(e, ly->bqkv, QD), &stage, &sb,
                            err);
            if (!rc)
                rc = put_st(e, st, NAME(l, "self_attn.v_proj.bias"), 1, KD, 0, at(e, ly->bqkv, QD + KD), &stage,
                            &sb, err);
        }
        if (!rc) rc = put_st(e, st, NAME(l, "self_attn.o_proj.weight"), 2, D, QD, ly->wo, &stage, &sb, err);
        if (!rc)
            rc = put_st(e, st, NAME(l, "post_attention_layernorm.weight"), 1, D, 0, ly->ffn_norm, &stage, &sb, err);
        if (!rc) rc = put_st(e, st, NAME(l, "mlp.gate_proj.weight"), 2, H, D, ly->wgu, &stage, &sb, err);
        if (!rc)
            rc = put_st(e, st, NAME(l, "mlp.up_proj.weight"), 2, H, D, at(e, ly->wgu, (size_t)H * D), &stage, &sb,
                        err);
        if (!rc) rc = put_st(e, st, NAME(l, "mlp.down_proj.weight"), 2, D, H, ly->wd, &stage, &sb, err);
    }
#undef NAME
    if (stage) dfree(e, stage, sb);
    if (!rc) rc = pool_new(e, o, err);
    if (rc) {
        cu_free(&e->base);
        return rc;
    }
    *out = &e->base;
    return 0;
}

extern "C" int lk_cuda_engine_from_model(lk_engine **out, const struct lk_model *m, const char *dtype,
                                         const lk_engine_opts *o, lk_err *err) {
    *out = NULL;
    int dt;
    if (!dtype || !strcmp(dtype, "f32")) dt = LK_OP_F32;
    else if (!strcmp(dtype, "bf16")) dt = LK_OP_BF16;
    else return lk_seterr(err, LK_EUSAGE, "cuda: weights dtype \"%s\" (expected f32 or bf16)", dtype);
    const lk_weights *w = &m->w;
    int tied = w->lm_head == w->embed;
    cu_engine *e;
    TRY(engine_new(&e, &m->cfg, NULL, dt, m->cfg.n_layers > 0 && w->layer[0].bq != NULL, tied, o, err));
    size_t D = e->D, H = e->H, QD = e->QD, KD = e->KD, V = e->V;
    void *stage = NULL;
    size_t sb = 0;
    int rc = 0;
#define PUT(dst, src, n) \
    if (!rc) rc = put_host(e, dst, src, LK_OP_F32, n, &stage, &sb, err)
    PUT(e->embed, w->embed, V * D);
    PUT(e->final_norm, w->final_norm, D);
    if (!tied) PUT(e->lm_head, w->lm_head, V * D);
    for (int l = 0; l < e->L; l++) {
        cu_layer *ly = &e->layers[l];
        const lk_layer_weights *y = &w->layer[l];
        PUT(ly->attn_norm, y->attn_norm, D);
        PUT(ly->ffn_norm, y->ffn_norm, D);
        PUT(ly->wqkv, y->wq, QD * D);
        PUT(at(e, ly->wqkv, QD * D), y->wk, KD * D);
        PUT(at(e, ly->wqkv, (QD + KD) * D), y->wv, KD * D);
        if (ly->bqkv) {
            PUT(ly->bqkv, y->bq, QD);
            PUT(at(e, ly->bqkv, QD), y->bk, KD);
            PUT(at(e, ly->bqkv, QD + KD), y->bv, KD);
        }
        PUT(ly->wo, y->wo, D * QD);
        PUT(ly->wgu, y->w_gate, H * D);
        PUT(at(e, ly->wgu, H * D), y->w_up, H * D);
        PUT(ly->wd, y->w_down, D * H);
    }
#undef PUT
    if (stage) dfree(e, stage, sb);
    if (!rc) rc = pool_new(e, o, err);
    if (rc) {
        cu_free(&e->base);
        return rc;
    }
    *out = &e->base;
    return 0;
}

static int launch_rc(int r, int line, const char *what, lk_err *err) {
    return r ? lk_seterr(err, LK_EDEVICE, "%s:%d: %s: %s", __FILE__, line, what, cudaGetErrorString((cudaError_t)r))
             : 0;
}

extern "C" int lk_cuda_engine_random(lk_engine **out, const lk_config *c, const char *dtype, uint64_t seed,
                                     const lk_engine_opts *o, lk_err *err) {
    *out = NULL;
    int dt;
    if (!dtype || !strcmp(dtype, "bf16")) dt = LK_OP_BF16;
    else if (!strcmp(dtype, "f32")) dt = LK_OP_F32;
    else return lk_seterr(err, LK_EUSAGE, "cuda: weights dtype \"%s\" (expected bf16 or f32)", dtype);
    cu_engine *e;
    int tied = c->tie_word_embeddings;
    TRY(engine_new(&e, c, NULL, dt, c->attention_bias, tied, o, err));
    size_t D = e->D, H = e->H, W = e->QD + 2 * e->KD, V = e->V;
    int rc = 0;
    uint64_t k = 0;
#define RND(dst, n) \
    if (!rc) rc = launch_rc(lk_op_randn(dt, dst, n, seed * 0x100000001b3ULL + (k++), 0.0f, 0.02f, e->st), \
                            __LINE__, "random weights", err)
#define ONE(dst, n) if (!rc) rc = launch_rc(lk_op_fill(dt, dst, n, 1.0f, e->st), __LINE__, "norm weights", err)
    RND(e->embed, V * D);
    ONE(e->final_norm, D);
    if (!tied) RND(e->lm_head, V * D);
    for (int l = 0; l < e->L; l++) {
        cu_layer *ly = &e->layers[l];
        ONE(ly->attn_norm, D);
        ONE(ly->ffn_norm, D);
        RND(ly->wqkv, W * D);
        if (ly->bqkv) RND(ly->bqkv, W);
        RND(ly->wo, D * e->QD);
        RND(ly->wgu, 2 * H * D);
        RND(ly->wd, D * H);
    }
#undef RND
#undef ONE
    if (!rc) {
        cudaError_t r = cudaStreamSynchronize(e->st);
        if (r != cudaSuccess)
            rc = lk_seterr(err, LK_EDEVICE, "%s:%d: random weights: %s", __FILE__, __LINE__, cudaGetErrorString(r));
    }
    if (!rc) rc = pool_new(e, o, err);
    if (rc) {
        cu_free(&e->base);
        return rc;
    }
    *out = &e->base;
    return 0;
}

/* ------------------------------------------------------------ the trainer's view */

static_assert(sizeof(cu_layer) == sizeof(lk_cuda_layer_view), "cu_layer and lk_cuda_layer_view differ");

extern "C" int lk_cuda_engine_view(lk_engine *be, lk_cuda_view *v, lk_err *err) {
    if (!be || be->ops != &cuda_ops)
        return lk_seterr(err, LK_EUSAGE, "the CUDA trainer needs a CUDA engine (this one is %s)",
                         be ? be->ops->name : "NULL");
    cu_engine *e = (cu_engine *)be;
    memset(v, 0, sizeof *v);
    v->dt = e->dt;
    v->stream = e->st;
    v->blas = e->blas;
    v->device = e->dev;
    v->dim = e->D;
    v->hidden = e->H;
    v->n_heads = e->NH;
    v->n_kv_heads = e->G;
    v->head_dim = e->HD;
    v->vocab = e->V;
    v->n_layers = e->L;
    v->eps = e->eps;
    v->scale = e->scale;
    v->embed = e->embed;
    v->final_norm = e->final_norm;
    v->layers = (const lk_cuda_layer_view *)e->layers;
    v->rope_cos = e->rope_cos;
    v->rope_sin = e->rope_sin;
    v->rope_n = e->rope_n;
    return 0;
}

extern "C" int lk_cuda_seq_layout(lk_engine *be, const lk_seq *bs, lk_kv_batch_dev *kv,
                                  const lk_kv_plan_dev **plan, lk_err *err) {
    cu_engine *e = (cu_engine *)be;
    cu_seq *s = (cu_seq *)bs;
    if (!be || be->ops != &cuda_ops || !s || s->base.e != be)
        return lk_seterr(err, LK_EUSAGE, "lk_cuda_seq_layout: not a sequence of this CUDA engine");
    if (s->plan != e->dense)
        return lk_seterr(err, LK_EUSAGE, "lk_cuda_seq_layout: the sequence is not dense");
    CU(cudaSetDevice(e->dev));
    int len = s->base.len;
    TRY(one_upload(e, &s, &len, 1, kv, err));
    *plan = &s->plan->dev;
    return 0;
}
