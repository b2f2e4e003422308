/* bench_kernels.cu - leank-bench kernel / attention: the attention kernels of
 * attention.cu timed on the H200 shapes of the issue (bench_kernels.h). */
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <getopt.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_kernels.h"
#include "kvcache.h"
extern "C" {
#include "config.h"
#include "mask.h"
#include "plan.h"
#include "cli.h"
}

#define COPY_BW 4.26e12   /* H200 device copy, bytes/s (read + write), measured */
#define BF16_PEAK 788e12  /* H200 cuBLAS bf16 GEMM, FLOP/s, measured */

#define BK(call)                                                                                   \
    do {                                                                                           \
        cudaError_t e_ = (cudaError_t)(call);                                                      \
        if (e_ != cudaSuccess) {                                                                   \
            fprintf(stderr, "leank-bench: %s:%d: %s: %s\n", __FILE__, __LINE__, #call,             \
                    cudaGetErrorString(e_));                                                       \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

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
static void fill(void *x, size_t n, uint64_t seed) {
    fill_kernel<<<1024, 256>>>((__nv_bfloat16 *)x, n, seed);
    BK(cudaGetLastError());
}

static int cmp_f(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

/* ------------------------------------------------ a one-layer decode setup */

/* The decode problem of one layer: a plan of that layer alone (the kernel's
 * work for layer l of a full plan is the same), pages shuffled in one pool. */
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

static void *up(layer_t *t, int slot, const void *src, size_t bytes) {
    BK(cudaMalloc(&t->dev[slot], bytes > 0 ? bytes : 4));
    if (bytes) BK(cudaMemcpy(t->dev[slot], src, bytes, cudaMemcpyHostToDevice));
    return t->dev[slot];
}

/* widths NULL = the dense plan (every token a middle row, sink = recent = 0) */
static void layer_setup(layer_t *t, void *pool, size_t pool_bytes, int B, int H, int G, int hd, int len,
                        int sink, int recent, const int *widths, const int *chans) {
    memset(t->dev, 0, sizeof t->dev);
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
    lk_kv_plan_dev *p = &t->plan;
    p->n_layers = 1, p->n_kv_heads = G, p->head_dim = hd, p->sink = t->sink, p->recent = t->recent;
    p->mid_tokens = t->P, p->full_tokens = t->F, p->mid_token_elems = kc + vc;
    p->all_full = kc == G * hd;
    p->width = (const int *)up(t, 0, t->width, G * sizeof(int));
    p->chan = (const int *)up(t, 1, t->chan, (size_t)G * hd * sizeof(int));
    p->k_col = (const int *)up(t, 2, kcol, G * sizeof(int));
    p->v_col = (const int *)up(t, 3, vcol, G * sizeof(int));
    p->k_off = (const int64_t *)up(t, 4, koff, sizeof koff);
    p->v_off = (const int64_t *)up(t, 5, voff, sizeof voff);
    int nfull = t->sink + t->recent, nfp = (nfull + t->F - 1) / t->F;
    int nmid = len - t->sink, nmp = nmid > 0 ? (nmid + t->P - 1) / t->P : 0;
    size_t fb = (size_t)2 * G * t->F * hd * 2, mb = (size_t)t->P * (kc + vc) * 2;
    size_t bb = ((fb > mb ? fb : mb) + 255) / 256 * 256;
    size_t nblocks = pool_bytes / bb, need = (size_t)B * (nfp + nmp);
    if (need > nblocks) lk_die(LK_EUSAGE, "bench: %zu pages of %zu bytes do not fit the pool", need, bb);
    int *ids = (int *)malloc(nblocks * sizeof(int));
    for (size_t i = 0; i < nblocks; i++) ids[i] = (int)i;
    for (size_t i = nblocks - 1; i > 0; i--) {
        int j = hrand((int)i + 1), x = ids[i];
        ids[i] = ids[j], ids[j] = x;
    }
    int *fullp = (int *)malloc(((size_t)B * nfp + 1) * sizeof(int)), *midp = (int *)malloc(((size_t)B * nmp + 1) * sizeof(int));
    size_t k = 0;
    for (int b = 0; b < B; b++) {
        for (int i = 0; i < nfp; i++) fullp[b * nfp + i] = ids[k++];
        for (int i = 0; i < nmp; i++) midp[b * nmp + i] = ids[k++];
    }
    int *lens = (int *)malloc(B * sizeof(int));
    for (int b = 0; b < B; b++) lens[b] = len;
    t->kv.pool = pool;
    t->kv.block_bytes = bb;
    t->kv.full_pages = (const int *)up(t, 6, fullp, (size_t)B * nfp * sizeof(int));
    t->kv.mid_pages = (const int *)up(t, 7, midp, (size_t)B * nmp * sizeof(int));
    t->kv.seq_len = (const int *)up(t, 8, lens, B * sizeof(int));
    t->kv.full_stride = nfp, t->kv.mid_stride = nmp;
    free(ids), free(fullp), free(midp), free(lens);
    BK(cudaMalloc(&t->q, (size_t)B * H * hd * 2));
    BK(cudaMalloc(&t->out, (size_t)B * H * hd * 2));
    fill(t->q, (size_t)B * H * hd, 7);
    t->ws_bytes = lk_cuda_decode_workspace(B, H, hd, len);
    BK(cudaMalloc(&t->ws, t->ws_bytes));
    /* bytes: full tokens K + V; middle tokens the kept K and V of heads w > 0 */
    int full_tok = nfull < len ? nfull : len, mid_tok = len - full_tok;
    double per_b = 0;
    for (int g = 0; g < G; g++)
        per_b += (double)full_tok * 2 * hd * 2 + (double)mid_tok * (t->width[g] + (t->width[g] ? hd : 0)) * 2;
    t->bytes = B * per_b + 2.0 * B * H * hd * 2;
}
static void layer_free(layer_t *t) {
    for (int i = 0; i < 10; i++) cudaFree(t->dev[i]);
    cudaFree(t->q), cudaFree(t->out), cudaFree(t->ws);
}

/* attention.cu's switch between the decode kernel's configurations (not in
 * kvcache.h): forms 0 .. AB_N-1; -1 back to LEANK_DECODE_FORM or the default;
 * returns the form in effect */
extern "C" int lk_cuda_decode_select(int form);
#define AB_N 4
static const char *ab_names[AB_N] = {"12p", "14sL", "14s", "12sL"};

/* median ms of reps launches (after 3 warm-ups) of each of nf forms, the
 * forms in turn within each repetition (nf 0: the launcher's own choice,
 * one column). --ab times every form so; the main table shows the default. */
static void time_forms(layer_t *t, int reps, int nf, float *med) {
    cudaEvent_t a, b;
    BK(cudaEventCreate(&a));
    BK(cudaEventCreate(&b));
    int cols = nf ? nf : 1;
    float *ms = (float *)malloc((size_t)reps * cols * sizeof(float));
    float scale = 1.0f / sqrtf((float)t->hd);
    for (int r = -3; r < reps; r++)
        for (int f = 0; f < cols; f++) {
            if (nf) lk_cuda_decode_select(f);
            BK(cudaEventRecord(a));
            BK(lk_cuda_decode_attention(LK_KV_BF16, t->q, t->out, &t->plan, &t->kv, 0, t->B, t->H, t->len,
                                        scale, t->ws, t->ws_bytes, NULL));
            BK(cudaEventRecord(b));
            BK(cudaEventSynchronize(b));
            if (r >= 0) BK(cudaEventElapsedTime(&ms[(size_t)f * reps + r], a, b));
        }
    for (int f = 0; f < cols; f++) {
        qsort(ms + (size_t)f * reps, reps, sizeof(float), cmp_f);
        med[f] = ms[(size_t)f * reps + reps / 2];
    }
    if (nf) lk_cuda_decode_select(-1);
    free(ms);
    cudaEventDestroy(a), cudaEventDestroy(b);
}
static float time_decode(layer_t *t, int reps) {
    float m;
    time_forms(t, reps, 0, &m);
    return m;
}

/* --ab: each form's output against form 0's, relative L2 (bf16 out) */
static double ab_diff(layer_t *t) {
    size_t n = (size_t)t->B * t->H * t->hd;
    uint16_t *h = (uint16_t *)malloc(n * 2 * AB_N);
    float scale = 1.0f / sqrtf((float)t->hd);
    for (int f = 0; f < AB_N; f++) {
        lk_cuda_decode_select(f);
        BK(cudaMemset(t->out, 0xff, n * 2));
        BK(lk_cuda_decode_attention(LK_KV_BF16, t->q, t->out, &t->plan, &t->kv, 0, t->B, t->H, t->len, scale,
                                    t->ws, t->ws_bytes, NULL));
        BK(cudaMemcpy(h + f * n, t->out, n * 2, cudaMemcpyDeviceToHost));
    }
    lk_cuda_decode_select(-1);
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
    return worst;
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

typedef struct {
    int B, H, G, hd, len, sink, recent, reps, layers, json, ab;
    const char *mask, *sdpa;
} kopts;

static int parse(int argc, char **argv, kopts *o, const char *what, int *prefill_len) {
    static const struct option lo[] = {
        {"batch", required_argument, 0, 'b'},  {"heads", required_argument, 0, 'H'},
        {"kv-heads", required_argument, 0, 'G'}, {"head-dim", required_argument, 0, 'd'},
        {"len", required_argument, 0, 'n'},    {"sink", required_argument, 0, 's'},
        {"recent", required_argument, 0, 'r'}, {"reps", required_argument, 0, 'R'},
        {"layers", required_argument, 0, 'L'}, {"mask", required_argument, 0, 'm'},
        {"sdpa", required_argument, 0, 'S'},   {"prefill-len", required_argument, 0, 'p'},
        {"json", no_argument, 0, 'j'},         {"help", no_argument, 0, 'h'},
        {"ab", no_argument, 0, 'A'},
        {0, 0, 0, 0}};
    *o = (kopts){64, 32, 8, 128, 32768, 128, 1024, 20, 32, 0, 0, NULL, NULL};
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "b:n:m:h", lo, NULL)) != -1) switch (c) {
        case 'b': o->B = atoi(optarg); break;
        case 'H': o->H = atoi(optarg); break;
        case 'G': o->G = atoi(optarg); break;
        case 'd': o->hd = atoi(optarg); break;
        case 'n': o->len = atoi(optarg); break;
        case 's': o->sink = atoi(optarg); break;
        case 'r': o->recent = atoi(optarg); break;
        case 'R': o->reps = atoi(optarg); break;
        case 'L': o->layers = atoi(optarg); break;
        case 'm': o->mask = optarg; break;
        case 'S': o->sdpa = optarg; break;
        case 'p': if (prefill_len) *prefill_len = atoi(optarg); break;
        case 'j': o->json = 1; break;
        case 'A': o->ab = 1; break;
        case 'h':
            printf("usage: leank-bench %s [OPTION]...\n%s\n\n"
                   "  -b, --batch N      sequences (default 64)\n"
                   "      --heads N      query heads (default 32)\n"
                   "      --kv-heads N   kv heads (default 8)\n"
                   "      --head-dim N   (default 128)\n"
                   "  -n, --len N        keys a sequence (default 32768)\n"
                   "      --sink N, --recent N  LeanK windows (default 128, 1024)\n"
                   "  -m, --mask FILE    LeanK mask (kernel; default $LEANK_SHARED/data/masks/llama3.1-8b-instruct.tsv)\n"
                   "      --layers N     mask layers timed (kernel; default 32)\n"
                   "      --prefill-len N  causal prefill length (attention; default 32768, 0 = skip)\n"
                   "      --reps N       timed runs, median kept (default 20)\n"
                   "      --sdpa SCRIPT  also time torch SDPA (cuDNN) with dev/bench/sdpa_decode.py\n"
                   "      --json         JSON instead of the table\n"
                   "      --ab           (kernel) every decode form side by side a layer, outputs compared,\n"
                   "                     and the layers again in reverse order\n",
                   argv[0], what);
            exit(0);
        default: return LK_EUSAGE;
        }
    if (o->B < 1 || o->H < 1 || o->G < 1 || o->H % o->G || o->G > 64 || o->hd < 8 || o->hd > 256 ||
        o->len < 1 || o->reps < 1)
        lk_die(LK_EUSAGE, "%s: bad shape", argv[0]);
    return 0;
}

static void device_line(void) {
    cudaDeviceProp pr;
    int dev = 0;
    BK(cudaGetDevice(&dev));
    BK(cudaGetDeviceProperties(&pr, dev));
    printf("device: %s, %d SMs\n", pr.name, pr.multiProcessorCount);
}

extern "C" int lk_bench_kernel(int argc, char **argv) {
    kopts o;
    if (parse(argc, argv, &o, "Decode attention of one layer: dense, LeanK with a mask (per layer and averaged),\n"
              "and torch SDPA cuDNN dense (--sdpa).", NULL))
        return LK_EUSAGE;
    char mpath[4096];
    if (!o.mask) {
        const char *sh = getenv("LEANK_SHARED");
        snprintf(mpath, sizeof mpath, "%s/data/masks/llama3.1-8b-instruct.tsv", sh ? sh : "../shared");
        o.mask = mpath;
    }
    lk_err err;
    lk_mask m;
    if (lk_mask_load_tsv_dim(&m, o.mask, o.hd, &err)) lk_fail(&err);
    lk_config cfg;
    lk_config_llama(&cfg, 128256, o.H * o.hd, 14336, m.n_layers, o.H, o.G, o.hd);
    cfg.max_position_embeddings = o.len > 131072 ? o.len : 131072;
    lk_plan plan;
    if (lk_plan_build(&plan, &m, o.mask, &cfg, "llama-3.1-8b", o.sink, o.recent, o.len, "bf16", &err))
        lk_fail(&err);
    int L = o.layers < plan.n_layers ? o.layers : plan.n_layers;
    device_line();
    size_t pool_bytes = (size_t)o.B * ((o.len + 255) / 256 * 256) * o.G * o.hd * 2 * 2 + ((size_t)64 << 20);
    void *pool;
    BK(cudaMalloc(&pool, pool_bytes));
    fill(pool, pool_bytes / 2, 1);
    printf("decode attention, one layer: B %d, %d q / %d kv heads, %d keys, hd %d, bf16; LeanK sink %d + recent %d, %s\n",
           o.B, o.H, o.G, o.len, o.hd, o.sink, o.recent, o.mask);
    layer_t t;
    /* --ab: rows (dense, layers 0 .. L-1) x AB_N forms, a diff and a second pass a row */
    int nf = o.ab ? AB_N : 0, cols = nf ? nf : 1;
    float *abm = (float *)calloc((size_t)(L + 1) * cols, sizeof(float));
    double *abd = (double *)calloc(L + 1, sizeof(double)), *ab2 = (double *)calloc(L + 1, sizeof(double));
    layer_setup(&t, pool, pool_bytes, o.B, o.H, o.G, o.hd, o.len, o.sink, o.recent, NULL, NULL);
    double dense_bytes = t.bytes;
    time_forms(&t, o.reps, nf, abm);
    int dc = o.ab ? lk_cuda_decode_select(-1) : 0; /* the default form's column */
    float dense_ms = abm[dc];
    if (o.ab) abd[0] = ab_diff(&t);
    layer_free(&t);
    double *lms = (double *)malloc(L * sizeof(double)), *lbytes = (double *)malloc(L * sizeof(double));
    double sum_ms = 0, sum_bytes = 0;
    for (int l = 0; l < L; l++) {
        layer_setup(&t, pool, pool_bytes, o.B, o.H, o.G, o.hd, o.len, o.sink, o.recent, plan.width + l * o.G,
                    plan.chan + (size_t)l * o.G * o.hd);
        time_forms(&t, o.reps, nf, abm + (size_t)(l + 1) * cols);
        lms[l] = abm[(size_t)(l + 1) * cols + dc];
        if (o.ab) abd[l + 1] = ab_diff(&t);
        lbytes[l] = t.bytes;
        sum_ms += lms[l];
        sum_bytes += t.bytes;
        layer_free(&t);
    }
    if (o.ab) { /* the default form again, layers in reverse order, then dense: time or layer? */
        for (int l = L - 1; l >= -1; l--) {
            if (l < 0) layer_setup(&t, pool, pool_bytes, o.B, o.H, o.G, o.hd, o.len, o.sink, o.recent, NULL, NULL);
            else
                layer_setup(&t, pool, pool_bytes, o.B, o.H, o.G, o.hd, o.len, o.sink, o.recent,
                            plan.width + l * o.G, plan.chan + (size_t)l * o.G * o.hd);
            ab2[l + 1] = time_decode(&t, o.reps);
            layer_free(&t);
        }
    }
    double sdpa_ms = -1;
    if (o.sdpa) {
        char args[256];
        snprintf(args, sizeof args, "--batch %d --heads %d --kv-heads %d --len %d --head-dim %d --reps %d",
                 o.B, o.H, o.G, o.len, o.hd, o.reps);
        sdpa_ms = sdpa_run(o.sdpa, args, "sdpa_decode_ms");
    }
    if (o.json) {
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
    if (o.ab) {
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
    free(abm), free(abd), free(ab2);
    free(lms), free(lbytes);
    cudaFree(pool);
    lk_plan_free(&plan);
    lk_mask_free(&m);
    return 0;
}

/* attention.cu's switch between the prefill kernels (not in kvcache.h): forms
 * 0 .. PF_N-1; -1 back to LEANK_PREFILL_FORM or the default; returns the form
 * in effect */
extern "C" int lk_cuda_prefill_select(int form);
#define PF_N 7
static const char *pf_names[PF_N] = {"mma.sync 4x16 rows (v1-v3)", "mma.sync 4x32 rows", "wgmma BN128 3 st PV n128",
                                     "wgmma BN128 3 st PV 2x n64", "wgmma BN64 4 st", "wgmma BN64 6 st",
                                     "wgmma 3 WG (192 rows) BN64 5 st"};

extern "C" int lk_bench_attention(int argc, char **argv) {
    kopts o;
    int n = 32768;
    if (parse(argc, argv, &o, "Our dense decode attention vs torch SDPA cuDNN (--sdpa), and causal prefill\n"
              "attention (B 1 x --prefill-len x --heads x --head-dim).", &n))
        return LK_EUSAGE;
    device_line();
    size_t pool_bytes = (size_t)o.B * ((o.len + 255) / 256 * 256) * o.G * o.hd * 2 * 2 + ((size_t)64 << 20);
    void *pool;
    BK(cudaMalloc(&pool, pool_bytes));
    fill(pool, pool_bytes / 2, 1);
    layer_t t;
    layer_setup(&t, pool, pool_bytes, o.B, o.H, o.G, o.hd, o.len, 0, 0, NULL, NULL);
    float dense_ms = time_decode(&t, o.reps);
    double dense_bytes = t.bytes;
    layer_free(&t);
    cudaFree(pool);
    double sdpa_ms = -1, sdpa_pf = -1, pf_diff[PF_N] = {0};
    float pf_ms = -1, pf_form_ms[PF_N] = {0};
    int pf_def = 0;
    double flops = 4.0 * o.hd * o.H * ((double)n * (n + 1) / 2);
    if (n > 0) {
        size_t nq = (size_t)n * o.H * o.hd, nk = (size_t)n * o.G * o.hd;
        void *q, *k, *v, *out;
        BK(cudaMalloc(&q, nq * 2));
        BK(cudaMalloc(&out, nq * 2));
        BK(cudaMalloc(&k, nk * 2));
        BK(cudaMalloc(&v, nk * 2));
        fill(q, nq, 11), fill(k, nk, 12), fill(v, nk, 13);
        /* every prefill form, launch by launch in turn (the default's median is the
         * main number); outputs against form 0's, relative L2 over all of out */
        cudaEvent_t a, b;
        BK(cudaEventCreate(&a));
        BK(cudaEventCreate(&b));
        int reps = o.reps < 7 ? o.reps : 7, def = lk_cuda_prefill_select(-1);
        const char *pm = getenv("LEANK_PF_MASK"); /* forms timed (bits; default all) */
        int mask = pm ? atoi(pm) | 1 : (1 << PF_N) - 1;
        if (!(mask >> def & 1)) def = 0;
        float ms[PF_N][7];
        for (int r = -1; r < reps; r++)
            for (int f = 0; f < PF_N; f++) {
                if (!(mask >> f & 1)) continue;
                lk_cuda_prefill_select(f);
                BK(cudaEventRecord(a));
                BK(lk_cuda_prefill_attention(LK_KV_BF16, q, k, v, out, n, o.H, o.G, o.hd, 1.0f / sqrtf((float)o.hd),
                                             NULL));
                BK(cudaEventRecord(b));
                BK(cudaEventSynchronize(b));
                if (r >= 0) BK(cudaEventElapsedTime(&ms[f][r], a, b));
            }
        uint16_t *h0 = (uint16_t *)malloc(nq * 2), *h1 = (uint16_t *)malloc(nq * 2);
        double diff[PF_N] = {0};
        for (int f = 0; f < PF_N; f++) {
            if (!(mask >> f & 1)) continue;
            lk_cuda_prefill_select(f);
            BK(cudaMemset(out, 0xff, nq * 2));
            BK(lk_cuda_prefill_attention(LK_KV_BF16, q, k, v, out, n, o.H, o.G, o.hd, 1.0f / sqrtf((float)o.hd), NULL));
            BK(cudaMemcpy(f ? h1 : h0, out, nq * 2, cudaMemcpyDeviceToHost));
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
        free(h0), free(h1);
        lk_cuda_prefill_select(-1);
        for (int f = 0; f < PF_N; f++) {
            if (!(mask >> f & 1)) continue;
            qsort(ms[f], reps, sizeof(float), cmp_f);
            pf_form_ms[f] = ms[f][reps / 2];
            pf_diff[f] = diff[f];
        }
        pf_ms = pf_form_ms[def];
        pf_def = def;
        cudaFree(q), cudaFree(k), cudaFree(v), cudaFree(out);
    }
    if (o.sdpa) {
        char args[256];
        snprintf(args, sizeof args, "--batch %d --heads %d --kv-heads %d --len %d --head-dim %d --reps %d --prefill %d",
                 o.B, o.H, o.G, o.len, o.hd, o.reps, n);
        FILE *f;
        char cmd[1024], line[512];
        snprintf(cmd, sizeof cmd, "python3 %s %s 2>&1", o.sdpa, args);
        if ((f = popen(cmd, "r"))) {
            while (fgets(line, sizeof line, f)) {
                if (!strncmp(line, "sdpa_decode_ms ", 15)) sdpa_ms = atof(line + 15);
                else if (!strncmp(line, "sdpa_prefill_ms ", 16)) sdpa_pf = atof(line + 16);
                else fprintf(stderr, "sdpa: %s", line);
            }
            pclose(f);
        }
    }
    if (o.json) {
        printf("{\"dense_ms\": %.5f, \"dense_bytes\": %.0f, \"sdpa_ms\": %.5f, \"prefill_ms\": %.4f, "
               "\"prefill_tflops\": %.2f, \"sdpa_prefill_ms\": %.4f}\n",
               dense_ms, dense_bytes, sdpa_ms, pf_ms, pf_ms > 0 ? flops / (pf_ms * 1e-3) / 1e12 : -1.0, sdpa_pf);
        return 0;
    }
    printf("decode attention: B %d, %d q / %d kv heads, %d keys, hd %d, bf16\n", o.B, o.H, o.G, o.len, o.hd);
    header();
    row("ours dense", dense_ms, dense_bytes);
    if (sdpa_ms > 0) row("sdpa cudnn dense", sdpa_ms, dense_bytes);
    if (sdpa_ms > 0) printf("ours / sdpa %.3f\n", dense_ms / sdpa_ms);
    if (n > 0) {
        printf("causal prefill attention: B 1 x %d tokens x %d heads (%d kv) x hd %d, bf16: %.3f ms, %.1f TFLOP/s "
               "(%.2f of %.0f)", n, o.H, o.G, o.hd, pf_ms, flops / (pf_ms * 1e-3) / 1e12,
               flops / (pf_ms * 1e-3) / BF16_PEAK, BF16_PEAK / 1e12);
        if (sdpa_pf > 0) printf("; sdpa %.3f ms, %.1f TFLOP/s", sdpa_pf, flops / (sdpa_pf * 1e-3) / 1e12);
        printf("\n");
        printf("prefill forms (launch by launch in turn, median of %d; rel L2 of out vs form 0):\n",
               o.reps < 7 ? o.reps : 7);
        printf("%-4s %-34s %9s %9s %10s %9s\n", "form", "kernel", "ms", "TFLOP/s", "rel L2", "/ sdpa");
        for (int f = 0; f < PF_N; f++)
            if (pf_form_ms[f] > 0)
                    printf("%-4d %-34s %9.3f %9.1f %10.2e %9.3f%s\n", f, pf_names[f], pf_form_ms[f],
                       flops / (pf_form_ms[f] * 1e-3) / 1e12, pf_diff[f],
                       sdpa_pf > 0 ? pf_form_ms[f] / sdpa_pf : 0.0, f == pf_def ? "  (default)" : "");
    }
    return 0;
}
