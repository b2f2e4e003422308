/* gpu_attention.c - the attention and KV-cache kernels (kernels/attention.cu)
 * against their CPU twins here, on fresh random inputs (seed printed;
 * LEANK_SEED=n repeats a run):
 * 1. kv_prefill + kv_append place every position by kvcache.h's rule (the
 *    pool read back and checked token by token), over random plans: widths
 *    0..head_dim (steps of 16, 8 or 1), random channel lists, sink 0 or not,
 *    prompts shorter than sink + recent, pages not a multiple of anything.
 * 2. Decode attention after prefill + N appends equals the CPU rule with
 *    append-before-attend (the query at p = len - 1 sees j < sink or
 *    p - j < recent in full, other keys over the kept channels, none of them
 *    for a width-0 head): f32 to 1e-5, bf16 to 1e-2 (relative L2 error),
 *    head_dim 8 / 64 / 128, GQA 1:1, 4:1, 7:1, batch 1 and 7 with ragged
 *    lengths; the output is poisoned (NaN) before each run. bf16 groups
 *    <= 8 at head_dim 64 / 128 run every configuration of the decode kernel
 *    (lk_cuda_decode_select's forms) against one reference.
 * 3. An all-channels plan equals the dense plan.
 * 4. kv_gather of a dense sequence returns what kv_prefill + kv_append stored.
 * 5. Causal prefill attention equals a CPU flash-free reference; bf16 runs
 *    every prefill form (lk_cuda_prefill_select: mma.sync and wgmma kernels)
 *    against one reference, the output poisoned before each.
 * Exit 77 without a GPU. */
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kvcache.h"
#include "t.h"
#include "tgpu.h" /* CK, the PRNG, rel_l2 */


/* bf16 <-> f32 on the host, round to nearest even */
static uint16_t f2bf(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffff) > 0x7f800000) return 0x7fc0;
    u += 0x7fff + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}
static float bf2f(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static float round_dt(lk_kv_dtype dt, float x) { return dt == LK_KV_BF16 ? bf2f(f2bf(x)) : x; }
static size_t esz(lk_kv_dtype dt) { return dt == LK_KV_BF16 ? 2 : 4; }

/* host floats -> device array of dt */
static void *to_dev(lk_kv_dtype dt, const float *x, size_t n) {
    void *d;
    CK(cudaMalloc(&d, n * esz(dt) + 16));
    if (dt == LK_KV_BF16) {
        uint16_t *h = malloc(n * 2 + 2);
        for (size_t i = 0; i < n; i++) h[i] = f2bf(x[i]);
        CK(cudaMemcpy(d, h, n * 2, cudaMemcpyHostToDevice));
        free(h);
    } else {
        CK(cudaMemcpy(d, x, n * 4, cudaMemcpyHostToDevice));
    }
    return d;
}
static void from_dev(lk_kv_dtype dt, float *x, const void *d, size_t n) {
    if (dt == LK_KV_BF16) {
        uint16_t *h = malloc(n * 2 + 2);
        CK(cudaMemcpy(h, d, n * 2, cudaMemcpyDeviceToHost));
        for (size_t i = 0; i < n; i++) x[i] = bf2f(h[i]);
        free(h);
    } else {
        CK(cudaMemcpy(x, d, n * 4, cudaMemcpyDeviceToHost));
    }
}
static float elem(lk_kv_dtype dt, const char *base, int64_t i) {
    if (dt == LK_KV_BF16) {
        uint16_t h;
        memcpy(&h, base + i * 2, 2);
        return bf2f(h);
    }
    float f;
    memcpy(&f, base + i * 4, 4);
    return f;
}
static void *dev_rand(lk_kv_dtype dt, float *h, size_t n, float scale) {
    for (size_t i = 0; i < n; i++) h[i] = round_dt(dt, scale * frand());
    return to_dev(dt, h, n);
}

/* ---------------------------------------------------------------- a plan */

typedef struct {
    int L, G, hd, sink, recent, P, F;
    int *width;           // (L, G)
    int *chan;            // (L, G, hd) -1 past the width
    int *k_col, *v_col;   // (L, G)
    int64_t k_off[9], v_off[9];
    lk_kv_plan_dev dev;
} plan_t;

/* widths: -1 dense (sink = recent = 0), -2 all channels with the windows,
 * else random multiples of step */
static void plan_make(plan_t *p, int L, int G, int hd, int kind, int step, int sink, int recent, int P,
                      int F) {
    memset(p, 0, sizeof *p);
    p->L = L, p->G = G, p->hd = hd, p->P = P, p->F = F;
    p->sink = kind == -1 ? 0 : sink;
    p->recent = kind == -1 ? 0 : recent;
    p->width = malloc(L * G * sizeof(int));
    p->chan = malloc(L * G * hd * sizeof(int));
    p->k_col = malloc(L * G * sizeof(int));
    p->v_col = malloc(L * G * sizeof(int));
    for (int l = 0; l < L; l++) {
        int kc = 0, vc = 0;
        for (int g = 0; g < G; g++) {
            int i = l * G + g, w = hd;
            if (kind >= 0) {
                int r = irand(8);
                w = r == 0 ? 0 : r == 1 ? hd : step * irand(hd / step + 1);
            }
            int *ch = p->chan + (size_t)i * hd, m = 0;
            for (int d = 0; d < hd; d++) /* a uniform w-subset, ascending */
                if (irand(hd - d) < w - m) ch[m++] = d;
            for (int d = m; d < hd; d++) ch[d] = -1;
            p->width[i] = w;
            p->k_col[i] = kc;
            kc += w;
            p->v_col[i] = w ? vc : -1;
            vc += w ? hd : 0;
        }
        p->k_off[l + 1] = p->k_off[l] + kc;
        p->v_off[l + 1] = p->v_off[l] + vc;
    }
    lk_kv_plan_dev *d = &p->dev;
    d->n_layers = L, d->n_kv_heads = G, d->head_dim = hd, d->sink = p->sink, d->recent = p->recent;
    d->mid_tokens = P, d->full_tokens = F;
    d->all_full = 1;
    for (int i = 0; i < L * G; i++) d->all_full &= p->width[i] == hd;
    d->mid_token_elems = p->k_off[L] + p->v_off[L];
    void *x;
#define UP(field, src, bytes)                                                                     \
    do {                                                                                           \
        CK(cudaMalloc(&x, bytes));                                                                 \
        CK(cudaMemcpy(x, src, bytes, cudaMemcpyHostToDevice));                                     \
        d->field = x;                                                                              \
    } while (0)
    UP(width, p->width, L * G * sizeof(int));
    UP(chan, p->chan, L * G * hd * sizeof(int));
    UP(k_col, p->k_col, L * G * sizeof(int));
    UP(v_col, p->v_col, L * G * sizeof(int));
    UP(k_off, p->k_off, (L + 1) * sizeof(int64_t));
    UP(v_off, p->v_off, (L + 1) * sizeof(int64_t));
#undef UP
}
static void plan_free(plan_t *p) {
    cudaFree((void *)p->dev.width), cudaFree((void *)p->dev.chan), cudaFree((void *)p->dev.k_col);
    cudaFree((void *)p->dev.v_col), cudaFree((void *)p->dev.k_off), cudaFree((void *)p->dev.v_off);
    free(p->width), free(p->chan), free(p->k_col), free(p->v_col);
}

/* ------------------------------------------- a batch of sequences in a pool */

typedef struct {
    lk_kv_dtype dt;
    int B, max_len, nfp, nmp; /* pages a sequence: full, middle */
    size_t block_bytes, n_blocks;
    char *pool;
    int *mid, *full, *len; /* host page tables (B, nmp), (B, nfp); lengths (B) */
    int *dmid, *dfull, *dlen;
    lk_kv_batch_dev kv;
} batch_t;

static void batch_make(batch_t *s, const plan_t *p, lk_kv_dtype dt, int B, int max_len) {
    memset(s, 0, sizeof *s);
    s->dt = dt, s->B = B, s->max_len = max_len;
    int nfull = p->sink + p->recent, nmid = max_len - p->sink;
    s->nfp = (nfull + p->F - 1) / p->F;
    s->nmp = nmid > 0 ? (nmid + p->P - 1) / p->P : 0;
    size_t fb = 2 * (size_t)p->L * p->G * p->F * p->hd * esz(dt);
    size_t mb = (size_t)p->P * (p->k_off[p->L] + p->v_off[p->L]) * esz(dt);
    s->block_bytes = ((fb > mb ? fb : mb) + 255) / 256 * 256;
    s->n_blocks = (size_t)B * (s->nfp + s->nmp) + 3;
    CK(cudaMalloc((void **)&s->pool, s->n_blocks * s->block_bytes));
    CK(cudaMemset(s->pool, 0xff, s->n_blocks * s->block_bytes)); /* NaN everywhere */
    int *ids = malloc(s->n_blocks * sizeof(int));
    for (size_t i = 0; i < s->n_blocks; i++) ids[i] = (int)i;
    for (size_t i = s->n_blocks - 1; i > 0; i--) { /* shuffled: pages anywhere */
        int j = irand((int)i + 1), t = ids[i];
        ids[i] = ids[j], ids[j] = t;
    }
    s->mid = malloc((size_t)B * (s->nmp + 1) * sizeof(int));
    s->full = malloc((size_t)B * (s->nfp + 1) * sizeof(int));
    s->len = calloc(B, sizeof(int));
    int k = 0;
    for (int b = 0; b < B; b++) {
        for (int i = 0; i < s->nfp; i++) s->full[b * s->nfp + i] = ids[k++];
        for (int i = 0; i < s->nmp; i++) s->mid[b * s->nmp + i] = ids[k++];
    }
    free(ids);
    CK(cudaMalloc((void **)&s->dmid, (size_t)B * (s->nmp + 1) * sizeof(int)));
    CK(cudaMalloc((void **)&s->dfull, (size_t)B * (s->nfp + 1) * sizeof(int)));
    CK(cudaMalloc((void **)&s->dlen, B * sizeof(int)));
    CK(cudaMemcpy(s->dmid, s->mid, (size_t)B * s->nmp * sizeof(int), cudaMemcpyHostToDevice));
    CK(cudaMemcpy(s->dfull, s->full, (size_t)B * s->nfp * sizeof(int), cudaMemcpyHostToDevice));
    s->kv.pool = s->pool;
    s->kv.block_bytes = s->block_bytes;
    s->kv.seq_len = s->dlen;
    s->kv.mid_pages = s->dmid;
    s->kv.full_pages = s->dfull;
    s->kv.mid_stride = s->nmp;
    s->kv.full_stride = s->nfp;
}
static void batch_free(batch_t *s) {
    cudaFree(s->pool), cudaFree(s->dmid), cudaFree(s->dfull), cudaFree(s->dlen);
    free(s->mid), free(s->full), free(s->len);
}
/* the batch entry b alone (prefill and gather act on entry 0) */
static lk_kv_batch_dev batch_one(const batch_t *s, int b) {
    lk_kv_batch_dev kv = s->kv;
    kv.seq_len = s->dlen + b;
    kv.mid_pages = s->dmid + (size_t)b * s->nmp;
    kv.full_pages = s->dfull + (size_t)b * s->nfp;
    return kv;
}

/* CPU twin of the placement: where position j of a sequence holding len
 * tokens lives (element index into the pool of K and V; kv < 0: not kept). */
static int locate(const plan_t *p, const batch_t *s, int b, int l, int g, int j, int len, int64_t *ko,
                  int64_t *vo) {
    int G = p->G, hd = p->hd, i = l * G + g, w = p->width[i];
    size_t eb = esz(s->dt);
    int64_t per = (int64_t)(s->block_bytes / eb);
    if (j < p->sink || (p->recent > 0 && j >= (p->sink > len - p->recent ? p->sink : len - p->recent))) {
        int slot = j < p->sink ? j : p->sink + j % p->recent;
        int64_t base = (int64_t)s->full[b * s->nfp + slot / p->F] * per;
        *ko = base + ((int64_t)i * p->F + slot % p->F) * hd;
        *vo = *ko + (int64_t)p->L * G * p->F * hd;
        return 1; /* full */
    }
    if (w == 0) return -1;
    int r = j - p->sink;
    int64_t base = (int64_t)s->mid[b * s->nmp + r / p->P] * per;
    *ko = base + (int64_t)p->P * (p->k_off[l] + p->k_col[i]) + (int64_t)(r % p->P) * w;
    *vo = base + (int64_t)p->P * (p->k_off[p->L] + p->v_off[l] + p->v_col[i]) + (int64_t)(r % p->P) * hd;
    return 0; /* middle */
}

/* The pool holds exactly the history of every sequence (K, V (len, L, G, hd)
 * each) by the rule; returns mismatches. */
static int check_pool(const plan_t *p, const batch_t *s, float *const *K, float *const *V) {
    size_t bytes = s->n_blocks * s->block_bytes;
    char *h = malloc(bytes);
    CK(cudaMemcpy(h, s->pool, bytes, cudaMemcpyDeviceToHost));
    int bad = 0, L = p->L, G = p->G, hd = p->hd;
    for (int b = 0; b < s->B; b++)
        for (int j = 0; j < s->len[b]; j++)
            for (int l = 0; l < L; l++)
                for (int g = 0; g < G; g++) {
                    int64_t ko, vo;
                    int kind = locate(p, s, b, l, g, j, s->len[b], &ko, &vo);
                    if (kind < 0) continue;
                    const float *kr = K[b] + (((size_t)j * L + l) * G + g) * hd;
                    const float *vr = V[b] + (((size_t)j * L + l) * G + g) * hd;
                    int w = kind ? hd : p->width[l * G + g];
                    const int *ch = p->chan + ((size_t)l * G + g) * hd;
                    for (int d = 0; d < w; d++)
                        if (elem(s->dt, h, ko + d) != kr[kind ? d : ch[d]]) bad++;
                    for (int d = 0; d < hd; d++)
                        if (elem(s->dt, h, vo + d) != vr[d]) bad++;
                }
    free(h);
    return bad;
}

/* CPU twin of decode attention: out (B, H, hd) for queries q (B, H, hd) at
 * p = len - 1 over the history, in double. */
static void ref_decode(const plan_t *p, int l, int B, int H, const int *len, const float *q,
                       float *const *K, float *const *V, float scale, double *out) {
    int G = p->G, hd = p->hd, L = p->L, grp = H / G;
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            int g = h / grp, i = l * G + g, w = p->width[i], n = len[b], pos = n - 1;
            const int *ch = p->chan + (size_t)i * hd;
            const float *qr = q + ((size_t)b * H + h) * hd;
            double *sc = malloc(n * sizeof(double)), mx = -INFINITY, sum = 0;
            for (int j = 0; j < n; j++) {
                const float *kr = K[b] + (((size_t)j * L + l) * G + g) * hd;
                double x = 0;
                if (j < p->sink || pos - j < p->recent) {
                    for (int d = 0; d < hd; d++) x += (double)qr[d] * kr[d];
                } else if (w) {
                    for (int c = 0; c < w; c++) x += (double)qr[ch[c]] * kr[ch[c]];
                } else {
                    sc[j] = -INFINITY;
                    continue;
                }
                sc[j] = x * scale;
                if (sc[j] > mx) mx = sc[j];
            }
            double *o = out + ((size_t)b * H + h) * hd;
            for (int d = 0; d < hd; d++) o[d] = 0;
            for (int j = 0; j < n; j++) {
                if (sc[j] == -INFINITY) continue;
                double e = exp(sc[j] - mx);
                sum += e;
                const float *vr = V[b] + (((size_t)j * L + l) * G + g) * hd;
                for (int d = 0; d < hd; d++) o[d] += e * vr[d];
            }
            for (int d = 0; d < hd; d++) o[d] /= sum;
            free(sc);
        }
}

/* relative L2 error of out against ref; NaN (unwritten) counts as failure */
static double rel_err(const float *out, const double *ref, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(out[i])) return INFINITY;
        num += (out[i] - ref[i]) * (out[i] - ref[i]);
        den += ref[i] * ref[i];
    }
    return sqrt(num / (den > 0 ? den : 1));
}

static void *g_ws;
static size_t g_ws_bytes;
static void *workspace(size_t bytes) {
    if (bytes > g_ws_bytes) {
        cudaFree(g_ws);
        CK(cudaMalloc(&g_ws, bytes));
        g_ws_bytes = bytes;
    }
    return g_ws;
}

/* attention.cu's switch between the decode kernel's configurations (not in
 * kvcache.h: for tests and leank-bench): forms 0 .. 3 (v4's; v6's default:
 * 14 warps, swizzled rows, lazy rescale; v6 without the lazy rescale; 12
 * warps with swizzled rows and the lazy rescale);
 * -1 back to LEANK_DECODE_FORM or the default; returns the form in effect */
int lk_cuda_decode_select(int form);
#define N_FORMS 4

/* decode attention of layer l for the batch as it stands; the worst relative
 * error over the forms */
static double run_decode(const plan_t *p, batch_t *s, int l, int H, const float *q, float *const *K,
                         float *const *V, float *out_h) {
    int B = s->B, hd = p->hd, max_len = 0;
    for (int b = 0; b < B; b++) max_len = s->len[b] > max_len ? s->len[b] : max_len;
    CK(cudaMemcpy(s->dlen, s->len, B * sizeof(int), cudaMemcpyHostToDevice));
    size_t n = (size_t)B * H * hd;
    void *dq = to_dev(s->dt, q, n), *dout;
    CK(cudaMalloc(&dout, n * esz(s->dt)));
    size_t wb = lk_cuda_decode_workspace(B, H, hd, max_len);
    float scale = 1.0f / sqrtf((float)hd);
    double *ref = malloc(n * sizeof(double));
    ref_decode(p, l, B, H, s->len, q, K, V, scale, ref);
    int nf = s->dt == LK_KV_BF16 && (hd == 64 || hd == 128) && H / p->G <= 8 ? N_FORMS : 1;
    double worst_e = 0;
    for (int f = 0; f < nf; f++) {
        lk_cuda_decode_select(f);
        CK(cudaMemset(dout, 0xff, n * esz(s->dt)));
        CK(cudaMemset(workspace(wb), 0xff, wb)); /* stale partials would show */
        CK(lk_cuda_decode_attention(s->dt, dq, dout, &p->dev, &s->kv, l, B, H, max_len, scale,
                                    workspace(wb), wb, NULL));
        CK(cudaDeviceSynchronize());
        from_dev(s->dt, out_h, dout, n);
        double e = rel_err(out_h, ref, n);
        if (nf > 1 && e > (s->dt == LK_KV_BF16 ? 1e-2 : 1e-5))
            fprintf(stderr, "# decode form %d: rel err %.3g\n", f, e);
        if (!(e <= worst_e)) worst_e = e;
    }
    lk_cuda_decode_select(-1);
    free(ref);
    cudaFree(dq), cudaFree(dout);
    return worst_e;
}

/* --------------------------------------------------- 1-4: the decode tests */

typedef struct {
    lk_kv_dtype dt;
    int hd, G, grp, B, kind, step, sink, recent, P, F, min_prompt, max_prompt, appends;
} dcase;

static int n_cases;
static double worst[2];

/* One case: prompts prefilled, then appends, attention after each append;
 * the pool checked after the prefill and at the end. With twin != NULL the
 * same histories go through an all-channels plan too (3.). */
static void decode_case(const dcase *c) {
    int L = 2, G = c->G, H = G * c->grp, hd = c->hd, B = c->B;
    int max_len = c->max_prompt + c->appends;
    plan_t p, pa;
    plan_make(&p, L, G, hd, c->kind, c->step, c->sink, c->recent, c->P, c->F);
    int with_all = c->kind >= 0 && c->recent > 0;
    if (with_all) plan_make(&pa, L, G, hd, -2, 1, c->sink, c->recent, c->P, c->F);
    batch_t s, sa;
    batch_make(&s, &p, c->dt, B, max_len);
    if (with_all) batch_make(&sa, &pa, c->dt, B, max_len);
    size_t row = (size_t)L * G * hd;
    float **K = malloc(B * sizeof(float *)), **V = malloc(B * sizeof(float *));
    int *prompt = malloc(B * sizeof(int));
    for (int b = 0; b < B; b++) {
        prompt[b] = c->min_prompt + irand(c->max_prompt - c->min_prompt + 1);
        K[b] = malloc(max_len * row * sizeof(float));
        V[b] = malloc(max_len * row * sizeof(float));
        for (size_t i = 0; i < max_len * row; i++) {
            K[b][i] = round_dt(c->dt, frand() * 2.0f);
            V[b][i] = round_dt(c->dt, frand());
        }
    }
    /* prefill: per sequence and layer, (n, G, hd) rows */
    for (int b = 0; b < B; b++) {
        int n = prompt[b];
        float *kk = malloc(n * (size_t)G * hd * sizeof(float)), *vv = malloc(n * (size_t)G * hd * sizeof(float));
        for (int l = 0; l < L; l++) {
            for (int j = 0; j < n; j++)
                for (size_t e = 0; e < (size_t)G * hd; e++) {
                    kk[j * (size_t)G * hd + e] = K[b][j * row + l * (size_t)G * hd + e];
                    vv[j * (size_t)G * hd + e] = V[b][j * row + l * (size_t)G * hd + e];
                }
            void *dk = to_dev(c->dt, kk, n * (size_t)G * hd), *dv = to_dev(c->dt, vv, n * (size_t)G * hd);
            lk_kv_batch_dev one = batch_one(&s, b);
            CK(lk_cuda_kv_prefill(c->dt, dk, dv, &p.dev, &one, l, n, NULL));
            if (with_all) {
                one = batch_one(&sa, b);
                CK(lk_cuda_kv_prefill(c->dt, dk, dv, &pa.dev, &one, l, n, NULL));
            }
            cudaFree(dk), cudaFree(dv);
        }
        free(kk), free(vv);
        s.len[b] = n;
        if (with_all) sa.len[b] = n;
    }
    CK(cudaDeviceSynchronize());
    int bad = check_pool(&p, &s, K, V);
    CHECKF(bad == 0, "prefill: %d cache elements misplaced (dt %d hd %d sink %d recent %d P %d F %d)", bad,
           c->dt, hd, p.sink, p.recent, c->P, c->F);
    size_t nq = (size_t)B * H * hd;
    float *q = malloc(nq * sizeof(float)), *out = malloc(nq * sizeof(float)), *out2 = malloc(nq * sizeof(float));
    float *kn = malloc((size_t)B * G * hd * sizeof(float)), *vn = malloc((size_t)B * G * hd * sizeof(float));
    double tol = c->dt == LK_KV_BF16 ? 1e-2 : 1e-5;
    for (int a = 0; a <= c->appends; a++) {
        if (a > 0) { /* append one token to every sequence (ragged: all lengths grow by one) */
            for (int b = 0; b < B; b++) s.len[b]++;
            CK(cudaMemcpy(s.dlen, s.len, B * sizeof(int), cudaMemcpyHostToDevice));
            if (with_all) {
                for (int b = 0; b < B; b++) sa.len[b] = s.len[b];
                CK(cudaMemcpy(sa.dlen, sa.len, B * sizeof(int), cudaMemcpyHostToDevice));
            }
            for (int l = 0; l < L; l++) {
                for (int b = 0; b < B; b++)
                    for (size_t e = 0; e < (size_t)G * hd; e++) {
                        size_t src = (size_t)(s.len[b] - 1) * row + l * (size_t)G * hd + e;
                        kn[b * (size_t)G * hd + e] = K[b][src];
                        vn[b * (size_t)G * hd + e] = V[b][src];
                    }
                void *dk = to_dev(c->dt, kn, (size_t)B * G * hd), *dv = to_dev(c->dt, vn, (size_t)B * G * hd);
                CK(lk_cuda_kv_append(c->dt, dk, dv, &p.dev, &s.kv, l, B, NULL));
                if (with_all) CK(lk_cuda_kv_append(c->dt, dk, dv, &pa.dev, &sa.kv, l, B, NULL));
                cudaFree(dk), cudaFree(dv);
            }
        }
        for (size_t i = 0; i < nq; i++) q[i] = round_dt(c->dt, frand());
        int l = a & 1;
        double e = run_decode(&p, &s, l, H, q, K, V, out);
        if (e > worst[c->dt]) worst[c->dt] = e;
        CHECKF(e <= tol, "decode: rel err %.3g > %.0e (dt %d hd %d G %d grp %d B %d kind %d step %d sink %d "
               "recent %d P %d F %d len0 %d append %d)", e, tol, c->dt, hd, G, c->grp, B, c->kind, c->step,
               p.sink, p.recent, c->P, c->F, s.len[0], a);
        if (with_all && a == c->appends) {
            /* 3. all channels (with windows) == dense rule == this plan's reference with full widths */
            double e2 = run_decode(&pa, &sa, l, H, q, K, V, out2);
            double d = 0, n2 = 0;
            double *ref = malloc(nq * sizeof(double));
            plan_t pd;
            plan_make(&pd, L, G, hd, -1, 1, 0, 0, c->P, c->F);
            ref_decode(&pd, l, B, H, sa.len, q, K, V, 1.0f / sqrtf((float)hd), ref);
            for (size_t i = 0; i < nq; i++) {
                d += (out2[i] - ref[i]) * (out2[i] - ref[i]);
                n2 += ref[i] * ref[i];
            }
            free(ref);
            plan_free(&pd);
            CHECKF(e2 <= tol && sqrt(d / n2) <= tol, "all-channels plan: rel err %.3g / vs dense %.3g", e2,
                   sqrt(d / n2));
        }
    }
    bad = check_pool(&p, &s, K, V);
    CHECKF(bad == 0, "after appends: %d cache elements misplaced (dt %d hd %d sink %d recent %d)", bad, c->dt,
           hd, p.sink, p.recent);
    /* 4. gather of a dense sequence: the histories back */
    if (c->kind == -1) {
        for (int b = 0; b < B; b++) {
            int n = s.len[b];
            size_t m = (size_t)n * G * hd;
            void *dk, *dv;
            CK(cudaMalloc(&dk, m * esz(c->dt)));
            CK(cudaMalloc(&dv, m * esz(c->dt)));
            CK(cudaMemset(dk, 0xff, m * esz(c->dt)));
            CK(cudaMemset(dv, 0xff, m * esz(c->dt)));
            lk_kv_batch_dev one = batch_one(&s, b);
            int l = b & 1, gbad = 0;
            CK(lk_cuda_kv_gather(c->dt, dk, dv, &p.dev, &one, l, n, NULL));
            float *hk = malloc(m * sizeof(float)), *hv = malloc(m * sizeof(float));
            from_dev(c->dt, hk, dk, m);
            from_dev(c->dt, hv, dv, m);
            for (int j = 0; j < n; j++)
                for (size_t e = 0; e < (size_t)G * hd; e++) {
                    size_t src = (size_t)j * row + l * (size_t)G * hd + e;
                    gbad += hk[j * (size_t)G * hd + e] != K[b][src] || hv[j * (size_t)G * hd + e] != V[b][src];
                }
            CHECKF(gbad == 0, "gather: %d elements differ (seq %d, %d tokens)", gbad, b, n);
            free(hk), free(hv);
            cudaFree(dk), cudaFree(dv);
        }
    }
    n_cases++;
    for (int b = 0; b < B; b++) free(K[b]), free(V[b]);
    free(K), free(V), free(prompt), free(q), free(out), free(out2), free(kn), free(vn);
    batch_free(&s);
    plan_free(&p);
    if (with_all) batch_free(&sa), plan_free(&pa);
}

/* ------------------------------------------------ 5: causal prefill attention */

/* attention.cu's switch between the prefill kernels (not in kvcache.h):
 * forms 0 .. 8 (NOTES-attention.md, prefill v4 and v5); -1 back to
 * LEANK_PREFILL_FORM or the default; returns the form in effect */
int lk_cuda_prefill_select(int form);
#define N_PFORMS 9
static double pf_worst[N_PFORMS]; /* bf16 prefill, worst relative error a form (-1: not run) */

static void prefill_case(lk_kv_dtype dt, int n, int H, int G, int hd) {
    size_t nq = (size_t)n * H * hd, nk = (size_t)n * G * hd;
    float *q = malloc(nq * sizeof(float)), *k = malloc(nk * sizeof(float)), *v = malloc(nk * sizeof(float));
    float *out = malloc(nq * sizeof(float));
    void *dq = dev_rand(dt, q, nq, 1.0f), *dk = dev_rand(dt, k, nk, 2.0f), *dv = dev_rand(dt, v, nk, 1.0f), *dout;
    CK(cudaMalloc(&dout, nq * esz(dt)));
    float scale = 1.0f / sqrtf((float)hd);
    double *ref = malloc(nq * sizeof(double)), *sc = malloc(n * sizeof(double));
    int grp = H / G;
    for (int i = 0; i < n; i++)
        for (int h = 0; h < H; h++) {
            const float *qr = q + ((size_t)i * H + h) * hd;
            double mx = -INFINITY, sum = 0, *o = ref + ((size_t)i * H + h) * hd;
            for (int j = 0; j <= i; j++) {
                const float *kr = k + ((size_t)j * G + h / grp) * hd;
                double x = 0;
                for (int d = 0; d < hd; d++) x += (double)qr[d] * kr[d];
                sc[j] = x * scale;
                if (sc[j] > mx) mx = sc[j];
            }
            for (int d = 0; d < hd; d++) o[d] = 0;
            for (int j = 0; j <= i; j++) {
                double e = exp(sc[j] - mx);
                sum += e;
                const float *vr = v + ((size_t)j * G + h / grp) * hd;
                for (int d = 0; d < hd; d++) o[d] += e * vr[d];
            }
            for (int d = 0; d < hd; d++) o[d] /= sum;
        }
    int nf = dt == LK_KV_BF16 ? N_PFORMS : 1;
    const char *pm = getenv("LEANK_PF_MASK"); /* forms run (bits; default all) */
    int mask = pm ? atoi(pm) : -1;
    for (int f = 0; f < nf; f++) {
        if (nf > 1 && !(mask >> f & 1)) continue;
        if (nf > 1) lk_cuda_prefill_select(f);
        CK(cudaMemset(dout, 0xff, nq * esz(dt)));
        /* a failed launch or kernel (form 7's watchdog traps) names its form and case */
        int rc = lk_cuda_prefill_attention(dt, dq, dk, dv, dout, n, H, G, hd, scale, NULL);
        if (!rc) rc = (int)cudaDeviceSynchronize();
        if (rc) {
            fprintf(stderr, "prefill attention form %d (dt %d n %d H %d G %d hd %d): %s\n", f, dt, n, H, G, hd,
                    cudaGetErrorString((cudaError_t)rc));
            exit(1);
        }
        from_dev(dt, out, dout, nq);
        double e = rel_err(out, ref, nq), tol = dt == LK_KV_BF16 ? 1e-2 : 1e-5;
        if (e > worst[dt]) worst[dt] = e;
        if (nf > 1 && e > pf_worst[f]) pf_worst[f] = e;
        CHECKF(e <= tol, "prefill attention: rel err %.3g > %.0e (dt %d n %d H %d G %d hd %d form %d)", e, tol,
               dt, n, H, G, hd, f);
    }
    lk_cuda_prefill_select(-1);
    n_cases++;
    free(q), free(k), free(v), free(out), free(ref), free(sc);
    cudaFree(dq), cudaFree(dk), cudaFree(dv), cudaFree(dout);
}

int main(void) {
    int ndev = 0;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) T_SKIP("no CUDA device");
    const char *se = getenv("LEANK_SEED");
    uint64_t seed = se ? strtoull(se, NULL, 10) : (uint64_t)time(NULL);
    printf("seed %llu (LEANK_SEED=%llu repeats this run)\n", (unsigned long long)seed,
           (unsigned long long)seed);
    rng = seed * 0x9e3779b97f4a7c15ULL + 1;
    for (int i = 0; i < 8; i++) next();

    /* decode: dt, hd, G, grp, B, kind (-1 dense, 0 masked), width step, sink, recent, P, F,
     * prompt range, appends */
    const dcase cases[] = {
        {LK_KV_F32, 8, 2, 2, 3, 0, 1, 3, 4, 5, 3, 1, 30, 9},          /* tiny model, odd widths */
        {LK_KV_F32, 64, 2, 1, 1, 0, 8, 4, 16, 24, 8, 1, 60, 20},      /* prompts shorter than sink + recent */
        {LK_KV_F32, 64, 2, 4, 7, 0, 16, 0, 8, 16, 8, 40, 300, 12},    /* sink 0 */
        {LK_KV_F32, 128, 1, 7, 7, -1, 1, 0, 0, 32, 8, 100, 700, 3},   /* dense */
        {LK_KV_F32, 128, 2, 4, 7, 0, 16, 16, 32, 40, 16, 1, 900, 4},
        {LK_KV_BF16, 8, 2, 2, 3, 0, 2, 3, 4, 5, 3, 1, 30, 9},
        {LK_KV_BF16, 64, 2, 1, 1, 0, 8, 4, 16, 24, 8, 1, 60, 20},
        {LK_KV_BF16, 64, 4, 4, 7, 0, 16, 0, 8, 16, 8, 40, 300, 12},
        {LK_KV_BF16, 64, 2, 7, 7, -1, 1, 0, 0, 24, 8, 1, 500, 3},
        {LK_KV_BF16, 128, 1, 7, 7, -1, 1, 0, 0, 32, 8, 100, 700, 3},
        {LK_KV_BF16, 128, 2, 4, 7, 0, 16, 16, 32, 40, 16, 1, 900, 4},
        {LK_KV_BF16, 128, 2, 4, 7, 0, 8, 16, 32, 33, 17, 1, 600, 4},  /* widths of 8, odd page sizes */
        {LK_KV_BF16, 128, 2, 4, 3, 0, 1, 5, 7, 16, 8, 1, 300, 9},     /* any width: element-wise loads */
        {LK_KV_BF16, 128, 2, 1, 2, 0, 32, 128, 64, 64, 64, 200, 5000, 2}, /* several splits */
        /* many items of uneven cost: warp ranges across items and items across warps */
        {LK_KV_BF16, 128, 8, 4, 24, 0, 32, 16, 64, 64, 32, 1, 3000, 3},
        {LK_KV_BF16, 64, 8, 8, 9, 0, 16, 0, 16, 48, 16, 1, 2500, 2},
        {LK_KV_BF16, 128, 8, 4, 5, -1, 1, 0, 0, 256, 8, 1, 4000, 2},   /* dense, ragged */
        {LK_KV_BF16, 128, 1, 16, 1, 0, 16, 4, 8, 16, 8, 500, 2000, 2},   /* group of 16 */
        {LK_KV_BF16, 64, 1, 12, 2, 0, 16, 4, 8, 16, 8, 50, 700, 2},      /* group of 12, hd 64 */
        {LK_KV_BF16, 128, 1, 20, 1, 0, 16, 4, 8, 16, 8, 50, 200, 2},     /* group > 16: SIMT */
        {LK_KV_BF16, 96, 2, 4, 2, 0, 16, 4, 8, 16, 8, 50, 200, 3},       /* hd 96: SIMT */
    };
    /* LEANK_SAN_SMALL=1 (compute-sanitizer's racecheck, which instruments every
     * shared-memory access): the cases of at most 900 positions and 7 sequences,
     * and the prefill cases of at most 384 rows; every kernel form still runs */
    int small = getenv("LEANK_SAN_SMALL") != NULL;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (!small || (cases[i].max_prompt <= 900 && cases[i].B <= 7)) decode_case(&cases[i]);
    /* prefill attention: dt, n, H, G, hd */
    prefill_case(LK_KV_F32, 37, 4, 4, 64);
    prefill_case(LK_KV_F32, 70, 7, 1, 8);
    prefill_case(LK_KV_F32, 200, 8, 2, 128);
    prefill_case(LK_KV_BF16, 1, 4, 1, 128);
    prefill_case(LK_KV_BF16, 63, 4, 1, 64);
    prefill_case(LK_KV_BF16, 300, 8, 2, 128);
    prefill_case(LK_KV_BF16, 257, 7, 7, 64);
    prefill_case(LK_KV_BF16, 130, 7, 1, 128);
    prefill_case(LK_KV_BF16, 100, 4, 2, 8);
    prefill_case(LK_KV_BF16, 100, 4, 2, 96);
    prefill_case(LK_KV_BF16, 384, 4, 1, 128);  /* whole 128-row tiles, 4:1 */
    if (!small) prefill_case(LK_KV_BF16, 1061, 8, 2, 128); /* many key tiles, ragged end */
    if (!small) prefill_case(LK_KV_BF16, 700, 3, 3, 64);
    printf("%d cases; worst relative error: f32 %.3g, bf16 %.3g\n", n_cases, worst[0], worst[1]);
    printf("bf16 prefill, worst relative error a form:");
    for (int f = 0; f < N_PFORMS; f++) printf(" %d: %.3g", f, pf_worst[f]);
    printf("\n");
    cudaFree(g_ws); /* the shared workspace: compute-sanitizer's leak check found it left (H200 run) */
    g_ws = NULL;
    return t_done();
}
