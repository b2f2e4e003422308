/* bench_kernels.cu - leank-bench kernel / attention: the attention kernels of
 * attention.cu timed on the H200 shapes of the issue (bench_kernels.h). The
 * command line is cmd/leank-bench.c's; here every failure returns its LK_E*
 * code with err set (cuda_check.h's CU and KR: LK_EDEVICE, file:line and the
 * call), and what a benchmark holds sits in one struct (kernel_run,
 * attention_run) that its lk_bench_* frees on every path. */
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_kernels.h"
#include "cuda_check.h"
#include "kvcache.h"
extern "C" {
#include "config.h"
#include "mask.h"
#include "plan.h"
}

#define COPY_BW 4.26e12   /* H200 device copy, bytes/s (read + write), measured */
#define BF16_PEAK 788e12  /* H200 cuBLAS bf16 GEMM, FLOP/s, measured */

/* n bf16 values, uniform in [-1, 1) from a hash of (seed, i): never zeros */
__global__ void fill_kernel(__nv_bfloat16 *x, size_t n, uint64_t seed) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        uint64_t z = (i + 1) * 0x9e3779b97f4a7c15ULL ^ seed;
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        z ^= z >> 31;
        x[i] = __float2bfloat16((float)(z >> 40) / 8388608.0f - 1.0f);
    }
}
static int fill(void *x, size_t n, uint64_t seed, lk_err *err) {
    fill_kernel<<<1024, 256>>>((__nv_bfloat16 *)x, n, seed);
    CU(cudaGetLastError());
    return 0;
}

/* cudaMalloc into *p, which stays as it was (NULL) on failure: what holds
 * device memory is freed by what is not NULL */
static int dev_alloc(void **p, size_t bytes, const char *what, lk_err *err) {
    void *d = NULL;
    cudaError_t e = cudaMalloc(&d, bytes);
    if (e != cudaSuccess) {
        cudaGetLastError();
        return lk_seterr(err, LK_EDEVICE, "cudaMalloc of %zu bytes (%s): %s", bytes, what, cudaGetErrorString(e));
    }
    *p = d;
    return 0;
}
/* cudaEventCreate into *ev, likewise */
static int event_new(cudaEvent_t *ev, lk_err *err) {
    cudaEvent_t e_new;
    CU(cudaEventCreate(&e_new));
    *ev = e_new;
    return 0;
}

static int cmp_f(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

/* A shape the kernels take (bench_kernels.h), else LK_EUSAGE. */
static int check_shape(const char *bench, int B, int H, int G, int hd, int len, int reps, lk_err *err) {
    if (B < 1 || H < 1 || G < 1 || H % G || G > 64 || hd < 8 || hd > 256 || len < 1 || len > (1 << 30) || reps < 1)
        return lk_seterr(err, LK_EUSAGE,
                         "%s: bad shape: batch %d, heads %d, kv-heads %d, head-dim %d, len %d, reps %d (expected "
                         "each >= 1, heads a multiple of kv-heads, kv-heads <= 64, head-dim in [8, 256], len <= 2^30)",
                         bench, B, H, G, hd, len, reps);
    return 0;
}

/* "device: NAME, N SMs" on stdout, or LK_EDEVICE when no GPU is visible */
static int device_line(const char *bench, lk_err *err) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0) {
        cudaGetLastError();
        if (e != cudaSuccess)
            return lk_seterr(err, LK_EDEVICE, "%s: no GPU is visible (nvidia-smi -L): %s", bench,
                             cudaGetErrorString(e));
        return lk_seterr(err, LK_EDEVICE, "%s: no GPU is visible (nvidia-smi -L)", bench);
    }
    cudaDeviceProp pr;
    int dev = 0;
    CU(cudaGetDevice(&dev));
    CU(cudaGetDeviceProperties(&pr, dev));
    printf("device: %s, %d SMs\n", pr.name, pr.multiProcessorCount);
    return 0;
}

/* ------------------------------------------------ a one-layer decode setup */

/* The decode problem of one layer: a plan of that layer alone (the kernel's
 * work for layer l of a full plan is the same), pages shuffled in one pool.
 * All zeros holds nothing; layer_free empties it. */
typedef struct {
    int B, H, G, hd, len, sink, recent, P, F;
    int width[64], chan[64 * 256]; /* (G), (G, hd) of the layer */
    lk_kv_plan_dev plan;
    lk_kv_batch_dev kv;
    void *q, *out, *ws;
    size_t ws_bytes;
    double bytes; /* K + V read, q read, out written */
    void *dev[10];
} layer_t;

static uint64_t hrng = 0x243f6a8885a308d3ULL;
static int hrand(int n) {
    hrng ^= hrng >> 12;
    hrng ^= hrng << 25;
    hrng ^= hrng >> 27;
    return (int)((hrng * 0x2545f4914f6cdd1dULL >> 33) % (uint64_t)n);
}

static int up(layer_t *t, int slot, const void *src, size_t bytes, lk_err *err) {
    TRY(dev_alloc(&t->dev[slot], bytes > 0 ? bytes : 4, "the plan and page tables", err));
    if (bytes) CU(cudaMemcpy(t->dev[slot], src, bytes, cudaMemcpyHostToDevice));
    return 0;
}

static void layer_free(layer_t *t) {
    for (int i = 0; i < 10; i++) {
        if (t->dev[i]) cudaFree(t->dev[i]);
        t->dev[i] = NULL;
    }
    if (t->q) cudaFree(t->q);
    if (t->out) cudaFree(t->out);
    if (t->ws) cudaFree(t->ws);
    t->q = t->out = t->ws = NULL;
}

/* widths NULL = the dense plan (every token a middle row, sink = recent = 0).
 * t holds nothing before; on failure what it holds is the caller's to free
 * (layer_free). */
static int layer_setup(layer_t *t, void *pool, size_t pool_bytes, int B, int H, int G, int hd, int len,
                       int sink, int recent, const int *widths, const int *chans, lk_err *err) {
    t->B = B, t->H = H, t->G = G, t->hd = hd, t->len = len;
    t->sink = widths ? sink : 0;
    t->recent = widths ? recent : 0;
    t->P = 256;
    t->F = 128;
    int kcol[64], vcol[64], kc = 0, vc = 0;
    for (int g = 0; g < G; g++) {
        int w = widths ? widths[g] : hd;
        t->width[g] = w;
        for (int d = 0; d < hd; d++) t->chan[g * hd + d] = widths ? chans[g * hd + d] : d;
        kcol[g] = kc;
        vcol[g] = w ? vc : -1;
        kc += w;
        vc += w ? hd : 0;
    }
    int64_t koff[2] = {0, kc}, voff[2] = {0, vc};
    TRY(up(t, 0, t->width, G * sizeof(int), err));
    TRY(up(t, 1, t->chan, (size_t)G * hd * sizeof(int), err));
    TRY(up(t, 2, kcol, G * sizeof(int), err));
    TRY(up(t, 3, vcol, G * sizeof(int), err));
    TRY(up(t, 4, koff, sizeof koff, err));
    TRY(up(t, 5, voff, sizeof voff, err));
    lk_kv_plan_dev *p = &t->plan;
    p->n_layers = 1, p->n_kv_heads = G, p->head_dim = hd, p->sink = t->sink, p->recent = t->recent;
    p->mid_tokens = t->P, p->full_tokens = t->F, p->mid_token_elems = kc + vc;
    p->all_full = kc == G * hd;
    p->width = (const int *)t->dev[0];
    p->chan = (const int *)t->dev[1];
    p->k_col = (const int *)t->dev[2];
    p->v_col = (const int *)t->dev[3];
    p->k_off = (const int64_t *)t->dev[4];
    p->v_off = (const int64_t *)t->dev[5];
    long nfull = (long)t->sink + t->recent;
    int nfp = (int)((nfull + t->F - 1) / t->F);
    int nmid = len - t->sink, nmp = nmid > 0 ? (nmid + t->P - 1) / t->P : 0;
    size_t fb = (size_t)2 * G * t->F * hd * 2, mb = (size_t)t->P * (kc + vc) * 2;
    size_t bb = ((fb > mb ? fb : mb) + 255) / 256 * 256;
    size_t nblocks = pool_bytes / bb, need = (size_t)B * (nfp + nmp);
    if (need > nblocks)
        return lk_seterr(err, LK_EUSAGE, "bench: %zu pages of %zu bytes do not fit the pool", need, bb);
    int *ids = (int *)lk_alloc(nblocks, sizeof(int), "the page ids", err);
    int *fullp = (int *)lk_alloc((size_t)B * nfp + 1, sizeof(int), "the page tables", err);
    int *midp = (int *)lk_alloc((size_t)B * nmp + 1, sizeof(int), "the page tables", err);
    int *lens = (int *)lk_alloc((size_t)B, sizeof(int), "the sequence lengths", err);
    int rc = ids && fullp && midp && lens ? 0 : LK_ENOMEM;
    if (!rc) {
        for (size_t i = 0; i < nblocks; i++) ids[i] = (int)i;
        for (size_t i = nblocks - 1; i > 0; i--) {
            int j = hrand((int)i + 1), x = ids[i];
            ids[i] = ids[j], ids[j] = x;
        }
        size_t k = 0;
        for (int b = 0; b < B; b++) {
            for (int i = 0; i < nfp; i++) fullp[b * nfp + i] = ids[k++];
            for (int i = 0; i < nmp; i++) midp[b * nmp + i] = ids[k++];
        }
        for (int b = 0; b < B; b++) lens[b] = len;
        rc = up(t, 6, fullp, (size_t)B * nfp * sizeof(int), err);
        if (!rc) rc = up(t, 7, midp, (size_t)B * nmp * sizeof(int), err);
        if (!rc) rc = up(t, 8, lens, B * sizeof(int), err);
    }
    free(ids), free(fullp), free(midp), free(lens);
    if (rc) return rc;
    t->kv.pool = pool;
    t->kv.block_bytes = bb;
    t->kv.full_pages = (const int *)t->dev[6];
    t->kv.mid_pages = (const int *)t->dev[7];
    t->kv.seq_len = (const int *)t->dev[8];
    t->kv.full_stride = nfp, t->kv.mid_stride = nmp;
    TRY(dev_alloc(&t->q, (size_t)B * H * hd * 2, "q", err));
    TRY(dev_alloc(&t->out, (size_t)B * H * hd * 2, "out", err));
    TRY(fill(t->q, (size_t)B * H * hd, 7, err));
    t->ws_bytes = lk_cuda_decode_workspace(B, H, hd, len);
    TRY(dev_alloc(&t->ws, t->ws_bytes, "the decode workspace", err));
    /* bytes: full tokens K + V; middle tokens the kept K and V of heads w > 0 */
    int full_tok = (int)(nfull < len ? nfull : len), mid_tok = len - full_tok;
    double per_b = 0;
    for (int g = 0; g < G; g++)
        per_b += (double)full_tok * 2 * hd * 2 + (double)mid_tok * (t->width[g] + (t->width[g] ? hd : 0)) * 2;
    t->bytes = B * per_b + 2.0 * B * H * hd * 2;
    return 0;
}

/* attention.cu's switch between the decode kernel's configurations (not in
 * kvcache.h): forms 0 .. AB_N-1; -1 back to LEANK_DECODE_FORM or the default;
 * returns the form in effect */
extern "C" int lk_cuda_decode_select(int form);
#define AB_N 4
static const char *ab_names[AB_N] = {"12p", "14sL", "14s", "12sL"};

/* time_forms' launches: events a, b (created here, the caller's to destroy),
 * ms (reps, cols) */
static int time_forms_run(layer_t *t, int reps, int nf, float *ms, cudaEvent_t *a, cudaEvent_t *b, lk_err *err) {
    TRY(event_new(a, err));
    TRY(event_new(b, err));
    int cols = nf ? nf : 1;
    float scale = 1.0f / sqrtf((float)t->hd);
    for (int r = -3; r < reps; r++)
        for (int f = 0; f < cols; f++) {
            if (nf) lk_cuda_decode_select(f);
            CU(cudaEventRecord(*a));
            KR(lk_cuda_decode_attention(LK_KV_BF16, t->q, t->out, &t->plan, &t->kv, 0, t->B, t->H, t->len,
                                        scale, t->ws, t->ws_bytes, NULL));
            CU(cudaEventRecord(*b));
            CU(cudaEventSynchronize(*b));
            if (r >= 0) CU(cudaEventElapsedTime(&ms[(size_t)f * reps + r], *a, *b));
        }
    return 0;
}

/* median ms of reps launches (after 3 warm-ups) of each of nf forms, the
 * forms in turn within each repetition (nf 0: the launcher's own choice,
 * one column). --ab times every form so; the main table shows the default. */
static int time_forms(layer_t *t, int reps, int nf, float *med, lk_err *err) {
    int cols = nf ? nf : 1;
    float *ms = (float *)lk_alloc((size_t)reps * cols, sizeof(float), "the times", err);
    if (!ms) return LK_ENOMEM;
    cudaEvent_t a = NULL, b = NULL;
    int rc = time_forms_run(t, reps, nf, ms, &a, &b, err);
    if (nf) lk_cuda_decode_select(-1);
    if (a) cudaEventDestroy(a);
    if (b) cudaEventDestroy(b);
    if (!rc)
        for (int f = 0; f < cols; f++) {
            qsort(ms + (size_t)f * reps, reps, sizeof(float), cmp_f);
            med[f] = ms[(size_t)f * reps + reps / 2];
        }
    free(ms);
    return rc;
}
static int time_decode(layer_t *t, int reps, float *ms, lk_err *err) { return time_forms(t, reps, 0, ms, err); }

/* ab_diff's launches: every form's output into h (AB_N, n) */
static int ab_run(layer_t *t, uint16_t *h, size_t n, lk_err *err) {
    float scale = 1.0f / sqrtf((float)t->hd);
    for (int f = 0; f < AB_N; f++) {
        lk_cuda_decode_select(f);
        CU(cudaMemset(t->out, 0xff, n * 2));
        KR(lk_cuda_decode_attention(LK_KV_BF16, t->q, t->out, &t->plan, &t->kv, 0, t->B, t->H, t->len, scale,
                                    t->ws, t->ws_bytes, NULL));
        CU(cudaMemcpy(h + f * n, t->out, n * 2, cudaMemcpyDeviceToHost));
    }
    return 0;
}

/* --ab: each form's output against form 0's, the worst relative L2 (bf16 out) */
static int ab_diff(layer_t *t, double *worst_out, lk_err *err) {
    size_t n = (size_t)t->B * t->H * t->hd;
    uint16_t *h = (uint16_t *)lk_alloc(n * 2, AB_N, "the --ab outputs", err);
    if (!h) return LK_ENOMEM;
    int rc = ab_run(t, h, n, err);
    lk_cuda_decode_select(-1);
    if (rc) {
        free(h);
        return rc;
    }
    double worst = 0;
    for (int f = 1; f < AB_N; f++) {
        double num = 0, den = 0;
        for (size_t i = 0; i < n; i++) {
            uint32_t ua = (uint32_t)h[i] << 16, ub = (uint32_t)h[f * n + i] << 16;
            float x, y;
            memcpy(&x, &ua, 4), memcpy(&y, &ub, 4);
            num += ((double)x - y) * ((double)x - y), den += (double)x * x;
        }
        double e = isfinite(num) ? sqrt(num / (den > 0 ? den : 1)) : INFINITY;
        if (!(e <= worst)) worst = e;
    }
    free(h);
    *worst_out = worst;
    return 0;
}

/* -------------------------------------------------------- SDPA from torch */

/* Runs the script (dev/bench/sdpa_decode.py) and reads "key value" lines. */
static double sdpa_run(const char *script, const char *args, const char *key) {
    char cmd[1024], line[512];
    snprintf(cmd, sizeof cmd, "python3 %s %s 2>&1", script, args);
    FILE *f = popen(cmd, "r");
    if (!f) return -1;
    double v = -1;
    size_t kl = strlen(key);
    while (fgets(line, sizeof line, f)) {
        if (!strncmp(line, key, kl) && line[kl] == ' ') v = atof(line + kl + 1);
        else fprintf(stderr, "sdpa: %s", line);
    }
    pclose(f);
    return v;
}

static void row(const char *name, double ms, double bytes) {
    double floor_ms = bytes / COPY_BW * 1e3;
    printf("%-22s %9.4f %10.3f %9.1f %9.4f %7.3f\n", name, ms, bytes / 1e9, bytes / (ms * 1e-3) / 1e9, floor_ms,
           floor_ms / ms);
}
static void header(void) {
    printf("%-22s %9s %10s %9s %9s %7s\n", "kernel", "ms", "GB moved", "GB/s", "floor ms", "floor/t");
}


/* ---------------------------------------------------------------- kernel */

/* what leank-bench kernel holds; all zeros holds nothing */
typedef struct {
    lk_mask m;
    lk_plan plan;
    int have_mask, have_plan;
    void *pool;
    layer_t t;
    float *abm;                          /* (L + 1, cols) ms: dense, then each layer; a column a form */
    double *abd, *ab2, *lms, *lbytes;    /* (L + 1) --ab diff, pass 2; (L) ms, bytes */
} kernel_run;

static void kernel_free(kernel_run *run) {
    layer_free(&run->t);
    if (run->pool) cudaFree(run->pool);
    free(run->abm), free(run->abd), free(run->ab2), free(run->lms), free(run->lbytes);
    if (run->have_plan) lk_plan_free(&run->plan);
    if (run->have_mask) lk_mask_free(&run->m);
    lk_cuda_decode_select(-1);
}

static int kernel_body(const lk_bench_kernel_opts *o, kernel_run *run, lk_err *err) {
    int B = o->batch, H = o->heads, G = o->kv_heads, hd = o->head_dim, len = o->len;
    int sink = o->sink, recent = o->recent, reps = o->reps;
    TRY(check_shape("kernel", B, H, G, hd, len, reps, err));
    if (o->layers < 1 || sink < 0 || sink > (1 << 30) || recent < 0 || recent > (1 << 30))
        return lk_seterr(err, LK_EUSAGE, "kernel: layers %d, sink %d, recent %d (expected layers >= 1, windows in "
                         "[0, 2^30])", o->layers, sink, recent);
    char mpath[4096];
    const char *mask = o->mask;
    if (!mask) {
        const char *sh = getenv("LEANK_SHARED");
        snprintf(mpath, sizeof mpath, "%s/data/masks/llama3.1-8b-instruct.tsv", sh ? sh : "../shared");
        mask = mpath;
    }
    TRY(lk_mask_load_tsv_dim(&run->m, mask, hd, err));
    run->have_mask = 1;
    lk_config cfg;
    lk_config_llama(&cfg, 128256, H * hd, 14336, run->m.n_layers, H, G, hd);
    cfg.max_position_embeddings = len > 131072 ? len : 131072;
    TRY(lk_plan_build(&run->plan, &run->m, mask, &cfg, "llama-3.1-8b", sink, recent, len, "bf16", err));
    run->have_plan = 1;
    const lk_plan *plan = &run->plan;
    int L = o->layers < plan->n_layers ? o->layers : plan->n_layers;
    TRY(device_line("kernel", err));
    size_t pool_bytes = (size_t)B * ((len + 255) / 256 * 256) * G * hd * 2 * 2 + ((size_t)64 << 20);
    TRY(dev_alloc(&run->pool, pool_bytes, "the KV pool", err));
    void *pool = run->pool;
    TRY(fill(pool, pool_bytes / 2, 1, err));
    printf("decode attention, one layer: B %d, %d q / %d kv heads, %d keys, hd %d, bf16; LeanK sink %d + recent %d, %s\n",
           B, H, G, len, hd, sink, recent, mask);
    layer_t *t = &run->t;
    /* --ab: rows (dense, layers 0 .. L-1) x AB_N forms, a diff and a second pass a row */
    int nf = o->ab ? AB_N : 0, cols = nf ? nf : 1;
    float *abm = run->abm = (float *)lk_zalloc((size_t)(L + 1) * cols, sizeof(float), "the times", err);
    double *abd = run->abd = (double *)lk_zalloc(L + 1, sizeof(double), "the times", err);
    double *ab2 = run->ab2 = (double *)lk_zalloc(L + 1, sizeof(double), "the times", err);
    double *lms = run->lms = (double *)lk_alloc(L, sizeof(double), "the times", err);
    double *lbytes = run->lbytes = (double *)lk_alloc(L, sizeof(double), "the times", err);
    if (!abm || !abd || !ab2 || !lms || !lbytes) return LK_ENOMEM;
    TRY(layer_setup(t, pool, pool_bytes, B, H, G, hd, len, sink, recent, NULL, NULL, err));
    double dense_bytes = t->bytes;
    TRY(time_forms(t, reps, nf, abm, err));
    int dc = o->ab ? lk_cuda_decode_select(-1) : 0; /* the default form's column */
    float dense_ms = abm[dc];
    if (o->ab) TRY(ab_diff(t, &abd[0], err));
    layer_free(t);
    double sum_ms = 0, sum_bytes = 0;
    for (int l = 0; l < L; l++) {
        TRY(layer_setup(t, pool, pool_bytes, B, H, G, hd, len, sink, recent, plan->width + l * G,
                        plan->chan + (size_t)l * G * hd, err));
        TRY(time_forms(t, reps, nf, abm + (size_t)(l + 1) * cols, err));
        lms[l] = abm[(size_t)(l + 1) * cols + dc];
        if (o->ab) TRY(ab_diff(t, &abd[l + 1], err));
        lbytes[l] = t->bytes;
        sum_ms += lms[l];
        sum_bytes += t->bytes;
        layer_free(t);
    }
    if (o->ab) { /* the default form again, layers in reverse order, then dense: time or layer? */
        for (int l = L - 1; l >= -1; l--) {
            if (l < 0) TRY(layer_setup(t, pool, pool_bytes, B, H, G, hd, len, sink, recent, NULL, NULL, err));
            else
                TRY(layer_setup(t, pool, pool_bytes, B, H, G, hd, len, sink, recent, plan->width + l * G,
                                plan->chan + (size_t)l * G * hd, err));
            float m;
            TRY(time_decode(t, reps, &m, err));
            ab2[l + 1] = m;
            layer_free(t);
        }
    }
    double sdpa_ms = -1;
    if (o->sdpa) {
        char args[256];
        snprintf(args, sizeof args, "--batch %d --heads %d --kv-heads %d --len %d --head-dim %d --reps %d",
                 B, H, G, len, hd, reps);
        sdpa_ms = sdpa_run(o->sdpa, args, "sdpa_decode_ms");
    }
    if (o->json) {
        printf("{\"dense_ms\": %.5f, \"dense_bytes\": %.0f, \"leank_avg_ms\": %.5f, \"leank_avg_bytes\": %.0f, "
               "\"sdpa_ms\": %.5f, \"leank_layer_ms\": [", dense_ms, dense_bytes, sum_ms / L, sum_bytes / L, sdpa_ms);
        for (int l = 0; l < L; l++) printf("%s%.5f", l ? ", " : "", lms[l]);
        printf("]}\n");
    } else {
        header();
        for (int l = 0; l < L; l++) {
            char name[32];
            snprintf(name, sizeof name, "leank layer %d", l);
            row(name, lms[l], lbytes[l]);
        }
        row("ours dense", dense_ms, dense_bytes);
        if (sdpa_ms > 0) row("sdpa cudnn dense", sdpa_ms, dense_bytes);
        char name[32];
        snprintf(name, sizeof name, "ours leank avg %d", L);
        row(name, sum_ms / L, sum_bytes / L);
        printf("leank avg / dense bytes %.3f; ours dense / sdpa %.3f; leank avg / dense time %.3f\n",
               sum_bytes / L / dense_bytes, sdpa_ms > 0 ? dense_ms / sdpa_ms : NAN, sum_ms / L / dense_ms);
    }
    if (o->ab) {
        double fs[AB_N] = {0}, s2 = 0, worst = 0;
        printf("\n--ab: ms a form (warps, p padded / s swizzled rows, L lazy rescale); pass2 = the "
               "default form (%s) again, layers in reverse order; diff = worst rel L2 vs form %s\n%-16s %8s",
               ab_names[dc], ab_names[0], "row", "floor");
        for (int f = 0; f < AB_N; f++) printf(" %9s", ab_names[f]);
        printf(" %8s %9s\n", "pass2", "diff");
        for (int r = 0; r <= L; r++) {
            char name[32];
            if (r) snprintf(name, sizeof name, "layer %d", r - 1);
            else snprintf(name, sizeof name, "dense");
            printf("%-16s %8.4f", name, (r ? lbytes[r - 1] : dense_bytes) / COPY_BW * 1e3);
            for (int f = 0; f < AB_N; f++) {
                printf(" %9.4f", abm[(size_t)r * AB_N + f]);
                if (r) fs[f] += abm[(size_t)r * AB_N + f];
            }
            printf(" %8.4f %9.2e\n", ab2[r], abd[r]);
            if (r) s2 += ab2[r];
            if (!(abd[r] <= worst)) worst = abd[r];
        }
        printf("%-16s %8.4f", "leank avg", sum_bytes / L / COPY_BW * 1e3);
        for (int f = 0; f < AB_N; f++) printf(" %9.4f", fs[f] / L);
        printf(" %8.4f %9.2e\n", s2 / L, worst);
        if (sdpa_ms > 0) {
            printf("%-16s %8s", "cudnn / form", "");
            for (int f = 0; f < AB_N; f++) printf(" %9.3f", sdpa_ms / (fs[f] / L));
            printf(" %8.3f   (dense: ours / cudnn", sdpa_ms / (s2 / L));
            for (int f = 0; f < AB_N; f++) printf(" %.3f", abm[f] / sdpa_ms);
            printf(")\n");
        }
    }
    return 0;
}

extern "C" int lk_bench_kernel(const lk_bench_kernel_opts *o, lk_err *err) {
    kernel_run r;
    memset(&r, 0, sizeof r);
    int rc = kernel_body(o, &r, err);
    kernel_free(&r);
    return rc;
}

/* ------------------------------------------------------------- attention */

/* attention.cu's switch between the prefill kernels (not in kvcache.h): forms
 * 0 .. PF_N-1; -1 back to LEANK_PREFILL_FORM or the default; returns the form
 * in effect */
extern "C" int lk_cuda_prefill_select(int form);
#define PF_N 9
static const char *pf_names[PF_N] = {"mma.sync 4x16 rows (v1-v3)", "mma.sync 4x32 rows", "wgmma BN128 3 st PV n128",
                                     "wgmma BN128 3 st PV 2x n64", "wgmma BN64 4 st", "wgmma BN64 6 st",
                                     "wgmma 3 WG (192 rows) BN64 5 st", "warp-spec. TMA 2 WG ping-pong 2 st",
                                     "warp-spec. TMA 2 WG ping-pong 3 st"};

/* what leank-bench attention holds; all zeros holds nothing */
typedef struct {
    void *pool;
    layer_t t;
    void *q, *k, *v, *out; /* prefill: (n, H, hd), (n, G, hd) x 2, (n, H, hd) */
    cudaEvent_t a, b;
    uint16_t *h0, *h1;     /* (n, H, hd) bf16: form 0's out, another's */
} attention_run;

static void attention_free(attention_run *run) {
    layer_free(&run->t);
    void *d[5] = {run->pool, run->q, run->k, run->v, run->out};
    for (int i = 0; i < 5; i++)
        if (d[i]) cudaFree(d[i]);
    if (run->a) cudaEventDestroy(run->a);
    if (run->b) cudaEventDestroy(run->b);
    free(run->h0), free(run->h1);
    lk_cuda_prefill_select(-1);
}

static int attention_body(const lk_bench_attention_opts *o, attention_run *run, lk_err *err) {
    int B = o->batch, H = o->heads, G = o->kv_heads, hd = o->head_dim, len = o->len, reps = o->reps;
    int n = o->prefill_len;
    TRY(check_shape("attention", B, H, G, hd, len, reps, err));
    if (n < 0 || n > (1 << 30))
        return lk_seterr(err, LK_EUSAGE, "attention: prefill length %d (expected in [0, 2^30])", n);
    TRY(device_line("attention", err));
    size_t pool_bytes = (size_t)B * ((len + 255) / 256 * 256) * G * hd * 2 * 2 + ((size_t)64 << 20);
    TRY(dev_alloc(&run->pool, pool_bytes, "the KV pool", err));
    TRY(fill(run->pool, pool_bytes / 2, 1, err));
    layer_t *t = &run->t;
    TRY(layer_setup(t, run->pool, pool_bytes, B, H, G, hd, len, 0, 0, NULL, NULL, err));
    float dense_ms;
    TRY(time_decode(t, reps, &dense_ms, err));
    double dense_bytes = t->bytes;
    layer_free(t);
    cudaFree(run->pool);
    run->pool = NULL;
    double sdpa_ms = -1, sdpa_pf = -1, pf_diff[PF_N] = {0};
    float pf_ms = -1, pf_form_ms[PF_N] = {0}, pf_sus = -1; /* pf_sus: --sustain's ms a launch */
    int pf_def = 0;
    double flops = 4.0 * hd * H * ((double)n * (n + 1) / 2);
    if (n > 0) {
        size_t nq = (size_t)n * H * hd, nk = (size_t)n * G * hd;
        TRY(dev_alloc(&run->q, nq * 2, "prefill q", err));
        TRY(dev_alloc(&run->out, nq * 2, "prefill out", err));
        TRY(dev_alloc(&run->k, nk * 2, "prefill k", err));
        TRY(dev_alloc(&run->v, nk * 2, "prefill v", err));
        void *q = run->q, *k = run->k, *v = run->v, *out = run->out;
        TRY(fill(q, nq, 11, err));
        TRY(fill(k, nk, 12, err));
        TRY(fill(v, nk, 13, err));
        /* every prefill form, launch by launch in turn (the default's median is the
         * main number); outputs against form 0's, relative L2 over all of out */
        TRY(event_new(&run->a, err));
        TRY(event_new(&run->b, err));
        cudaEvent_t a = run->a, b = run->b;
        int preps = reps < 7 ? reps : 7, def = lk_cuda_prefill_select(-1);
        const char *pm = getenv("LEANK_PF_MASK"); /* forms timed (bits; default all) */
        int mask = pm ? atoi(pm) | 1 : (1 << PF_N) - 1;
        if (!(mask >> def & 1)) def = 0;
        float ms[PF_N][7];
        for (int r = -1; r < preps; r++)
            for (int f = 0; f < PF_N; f++) {
                if (!(mask >> f & 1)) continue;
                lk_cuda_prefill_select(f);
                CU(cudaEventRecord(a));
                KR(lk_cuda_prefill_attention(LK_KV_BF16, q, k, v, out, n, H, G, hd, 1.0f / sqrtf((float)hd), NULL));
                CU(cudaEventRecord(b));
                CU(cudaEventSynchronize(b));
                if (r >= 0) CU(cudaEventElapsedTime(&ms[f][r], a, b));
            }
        uint16_t *h0 = run->h0 = (uint16_t *)lk_alloc(nq, 2, "the prefill outputs", err);
        uint16_t *h1 = run->h1 = (uint16_t *)lk_alloc(nq, 2, "the prefill outputs", err);
        if (!h0 || !h1) return LK_ENOMEM;
        double diff[PF_N] = {0};
        for (int f = 0; f < PF_N; f++) {
            if (!(mask >> f & 1)) continue;
            lk_cuda_prefill_select(f);
            CU(cudaMemset(out, 0xff, nq * 2));
            KR(lk_cuda_prefill_attention(LK_KV_BF16, q, k, v, out, n, H, G, hd, 1.0f / sqrtf((float)hd), NULL));
            CU(cudaMemcpy(f ? h1 : h0, out, nq * 2, cudaMemcpyDeviceToHost));
            if (!f) continue;
            double num = 0, den = 0;
            for (size_t i = 0; i < nq; i++) {
                uint32_t ua = (uint32_t)h0[i] << 16, ub = (uint32_t)h1[i] << 16;
                float x, y;
                memcpy(&x, &ua, 4), memcpy(&y, &ub, 4);
                if (!isfinite(y)) { num = INFINITY; break; }
                num += ((double)x - y) * ((double)x - y), den += (double)x * x;
            }
            diff[f] = sqrt(num / (den > 0 ? den : 1));
        }
        lk_cuda_prefill_select(-1);
        for (int f = 0; f < PF_N; f++) {
            if (!(mask >> f & 1)) continue;
            qsort(ms[f], preps, sizeof(float), cmp_f);
            pf_form_ms[f] = ms[f][preps / 2];
            pf_diff[f] = diff[f];
        }
        pf_ms = pf_form_ms[def];
        pf_def = def;
        if (o->sustain > 0) { /* back to back, one time over all: the pace under the power cap */
            lk_cuda_prefill_select(def);
            CU(cudaEventRecord(a));
            for (int r = 0; r < o->sustain; r++)
                KR(lk_cuda_prefill_attention(LK_KV_BF16, q, k, v, out, n, H, G, hd, 1.0f / sqrtf((float)hd), NULL));
            CU(cudaEventRecord(b));
            CU(cudaEventSynchronize(b));
            float all = 0.0f;
            CU(cudaEventElapsedTime(&all, a, b));
            pf_sus = all / o->sustain;
            lk_cuda_prefill_select(-1);
        }
    }
    if (o->sdpa) {
        char args[256];
        snprintf(args, sizeof args, "--batch %d --heads %d --kv-heads %d --len %d --head-dim %d --reps %d --prefill %d",
                 B, H, G, len, hd, reps, n);
        FILE *f;
        char cmd[1024], line[512];
        snprintf(cmd, sizeof cmd, "python3 %s %s 2>&1", o->sdpa, args);
        if ((f = popen(cmd, "r"))) {
            while (fgets(line, sizeof line, f)) {
                if (!strncmp(line, "sdpa_decode_ms ", 15)) sdpa_ms = atof(line + 15);
                else if (!strncmp(line, "sdpa_prefill_ms ", 16)) sdpa_pf = atof(line + 16);
                else fprintf(stderr, "sdpa: %s", line);
            }
            pclose(f);
        }
    }
    if (o->json) {
        printf("{\"dense_ms\": %.5f, \"dense_bytes\": %.0f, \"sdpa_ms\": %.5f, \"prefill_ms\": %.4f, "
               "\"prefill_tflops\": %.2f, \"sdpa_prefill_ms\": %.4f, \"prefill_sustained_ms\": %.4f}\n",
               dense_ms, dense_bytes, sdpa_ms, pf_ms, pf_ms > 0 ? flops / (pf_ms * 1e-3) / 1e12 : -1.0, sdpa_pf,
               pf_sus);
        return 0;
    }
    printf("decode attention: B %d, %d q / %d kv heads, %d keys, hd %d, bf16\n", B, H, G, len, hd);
    header();
    row("ours dense", dense_ms, dense_bytes);
    if (sdpa_ms > 0) row("sdpa cudnn dense", sdpa_ms, dense_bytes);
    if (sdpa_ms > 0) printf("ours / sdpa %.3f\n", dense_ms / sdpa_ms);
    if (n > 0) {
        printf("causal prefill attention: B 1 x %d tokens x %d heads (%d kv) x hd %d, bf16: %.3f ms, %.1f TFLOP/s "
               "(%.2f of %.0f)", n, H, G, hd, pf_ms, flops / (pf_ms * 1e-3) / 1e12,
               flops / (pf_ms * 1e-3) / BF16_PEAK, BF16_PEAK / 1e12);
        if (sdpa_pf > 0) printf("; sdpa %.3f ms, %.1f TFLOP/s", sdpa_pf, flops / (sdpa_pf * 1e-3) / 1e12);
        printf("\n");
        printf("prefill forms (launch by launch in turn, median of %d; rel L2 of out vs form 0):\n",
               reps < 7 ? reps : 7);
        printf("%-4s %-34s %9s %9s %10s %9s\n", "form", "kernel", "ms", "TFLOP/s", "rel L2", "/ sdpa");
        for (int f = 0; f < PF_N; f++)
            if (pf_form_ms[f] > 0)
                    printf("%-4d %-34s %9.3f %9.1f %10.2e %9.3f%s\n", f, pf_names[f], pf_form_ms[f],
                       flops / (pf_form_ms[f] * 1e-3) / 1e12, pf_diff[f],
                       sdpa_pf > 0 ? pf_form_ms[f] / sdpa_pf : 0.0, f == pf_def ? "  (default)" : "");
        if (pf_sus > 0)
            printf("form %d, %d launches back to back: %.3f ms each, %.1f TFLOP/s\n", pf_def, o->sustain, pf_sus,
                   flops / (pf_sus * 1e-3) / 1e12);
    }
    return 0;
}

extern "C" int lk_bench_attention(const lk_bench_attention_opts *o, lk_err *err) {
    attention_run r;
    memset(&r, 0, sizeof r);
    int rc = attention_body(o, &r, err);
    attention_free(&r);
    return rc;
}
