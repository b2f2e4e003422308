/* gpu_ops.c - the CUDA engine's row kernels (kernels/ops.cu) against their
 * CPU twins (lib/model/model.c, lib/model/sampler.c, lib/io/util.c) on fresh random data,
 * odd sizes included (seed printed; LEANK_SEED=n repeats a run):
 * 1. conversions f32/bf16/f16 equal lk_f32_to_bf16 & co. bit for bit;
 *    random init has the asked mean and spread and depends on the seed only;
 * 2. embedding, RMSNorm with and without the fused residual add, q/k/v bias +
 *    RoPE (every rope_scaling type's table) + split, SwiGLU, row scatter:
 *    f32 to 1e-5, bf16 to 1e-2 (relative L2);
 * 3. the small-batch product (lk_op_gemv) against lk_matmul on bf16 inputs;
 * 4. sampling: greedy ties to the lowest id, top_k 1 and a tiny top_p are
 *    greedy, plain multinomial picks what lk_sample picks for the same draw,
 *    top-k / top-p never leave their set and follow the renormalised
 *    probabilities.
 * Exit 77 without a GPU. */
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "kvcache.h"
#include "model.h"
#include "ops.h"
#include "sampler.h"
#include "t.h"
#include "tgpu.h" /* CK, the PRNG, rel_l2 */
#include "util.h"


static void *dev(size_t n) {
    void *p;
    CK(cudaMalloc(&p, n ? n : 1));
    CK(cudaMemset(p, 0xff, n ? n : 1)); /* poison: NaN in f32 and bf16 */
    return p;
}
static void *todev(const void *h, size_t n) {
    void *p = dev(n);
    CK(cudaMemcpy(p, h, n, cudaMemcpyHostToDevice));
    return p;
}
static void tohost(void *h, const void *d, size_t n) { CK(cudaMemcpy(h, d, n, cudaMemcpyDeviceToHost)); }

/* Host values in type dt (rounded), and the device copy. */
static void *dev_of(int dt, float *x, size_t n) {
    if (dt == LK_OP_F32) return todev(x, n * 4);
    uint16_t *h = malloc(n * 2 + 2);
    for (size_t i = 0; i < n; i++) {
        h[i] = lk_f32_to_bf16(x[i]);
        x[i] = lk_bf16_to_f32(h[i]); /* the reference sees the rounded inputs */
    }
    void *d = todev(h, n * 2);
    free(h);
    return d;
}
static float *host_of(int dt, const void *d, size_t n) {
    float *x = malloc(n * 4 + 4);
    if (dt == LK_OP_F32) {
        tohost(x, d, n * 4);
    } else {
        uint16_t *h = malloc(n * 2 + 2);
        tohost(h, d, n * 2);
        for (size_t i = 0; i < n; i++) x[i] = lk_bf16_to_f32(h[i]);
        free(h);
    }
    return x;
}
static float *rnd(size_t n, float scale, float base) {
    float *x = malloc(n * 4 + 4);
    for (size_t i = 0; i < n; i++) x[i] = base + scale * frand();
    return x;
}
static double tol(int dt) { return dt == LK_OP_F32 ? 1e-5 : 1e-2; }
static const char *dtn(int dt) { return dt == LK_OP_F32 ? "f32" : "bf16"; }

/* ---- 1. conversions and random init ---- */
static void conversions(void) {
    size_t n = 100003;
    float *x = rnd(n, 3.0f, 0.0f);
    x[0] = 0.0f, x[1] = -0.0f, x[2] = 1e-40f, x[3] = 65504.0f, x[4] = INFINITY;
    uint16_t *bf = malloc(n * 2), *hf = malloc(n * 2), *out = malloc(n * 2);
    for (size_t i = 0; i < n; i++) bf[i] = lk_f32_to_bf16(x[i]), hf[i] = lk_f32_to_f16(x[i]);
    void *dx = todev(x, n * 4), *dbf = todev(bf, n * 2), *dhf = todev(hf, n * 2), *d2 = dev(n * 2), *d4 = dev(n * 4);
    CK(lk_op_convert(LK_OP_BF16, d2, LK_OP_F32, dx, n, NULL));
    tohost(out, d2, n * 2);
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) bad += out[i] != bf[i];
    CHECKF(bad == 0, "f32 -> bf16: %zu of %zu differ from lk_f32_to_bf16", bad, n);
    float *back = malloc(n * 4);
    CK(lk_op_convert(LK_OP_F32, d4, LK_OP_BF16, dbf, n, NULL));
    tohost(back, d4, n * 4);
    bad = 0;
    for (size_t i = 0; i < n; i++) bad += memcmp(&back[i], &(float){lk_bf16_to_f32(bf[i])}, 4) != 0;
    CHECKF(bad == 0, "bf16 -> f32: %zu differ", bad);
    CK(lk_op_convert(LK_OP_F32, d4, LK_OP_F16, dhf, n, NULL));
    tohost(back, d4, n * 4);
    bad = 0;
    for (size_t i = 0; i < n; i++) bad += memcmp(&back[i], &(float){lk_f16_to_f32(hf[i])}, 4) != 0;
    CHECKF(bad == 0, "f16 -> f32: %zu differ", bad);
    CK(lk_op_convert(LK_OP_BF16, d2, LK_OP_F16, dhf, n, NULL));
    tohost(out, d2, n * 2);
    bad = 0;
    for (size_t i = 0; i < n; i++) bad += out[i] != lk_f32_to_bf16(lk_f16_to_f32(hf[i]));
    CHECKF(bad == 0, "f16 -> bf16: %zu differ", bad);
    /* random init: N(mean, std), seed-determined */
    size_t m = 1 << 20;
    float *r1 = malloc(m * 4), *r2 = malloc(m * 4);
    void *dr = dev(m * 4);
    CK(lk_op_randn(LK_OP_F32, dr, m, 42, 0.5f, 0.02f, NULL));
    tohost(r1, dr, m * 4);
    CK(lk_op_randn(LK_OP_F32, dr, m, 42, 0.5f, 0.02f, NULL));
    tohost(r2, dr, m * 4);
    CHECK(memcmp(r1, r2, m * 4) == 0);
    double s = 0, ss = 0;
    for (size_t i = 0; i < m; i++) s += r1[i], ss += (double)r1[i] * r1[i];
    double mean = s / m, sd = sqrt(ss / m - mean * mean);
    CHECKF(fabs(mean - 0.5) < 1e-4 && fabs(sd - 0.02) < 2e-4, "randn: mean %g sd %g", mean, sd);
    CK(lk_op_randn(LK_OP_F32, dr, m, 43, 0.5f, 0.02f, NULL));
    tohost(r2, dr, m * 4);
    CHECK(memcmp(r1, r2, m * 4) != 0);
    CK(lk_op_fill(LK_OP_BF16, d2, 1000, 1.0f, NULL));
    tohost(out, d2, 2000);
    bad = 0;
    for (int i = 0; i < 1000; i++) bad += out[i] != 0x3f80;
    CHECK(bad == 0);
    printf("conversions, random init: ok (randn mean %.5f sd %.5f)\n", mean, sd);
    free(x), free(bf), free(hf), free(out), free(back), free(r1), free(r2);
    cudaFree(dx), cudaFree(dbf), cudaFree(dhf), cudaFree(d2), cudaFree(d4), cudaFree(dr);
}

/* ---- 2. row kernels ---- */
static void embed_norm(int dt, int n, int dim) {
    int V = 37;
    float *tab = rnd((size_t)V * dim, 1.0f, 0.0f);
    void *dtab = dev_of(dt, tab, (size_t)V * dim);
    int *ids = malloc(n * sizeof(int));
    for (int i = 0; i < n; i++) ids[i] = irand(V);
    int *dids = todev(ids, n * sizeof(int));
    float *dx = dev((size_t)n * dim * 4);
    CK(lk_op_embed(dt, dx, dtab, dids, n, dim, NULL));
    float *x = malloc((size_t)n * dim * 4);
    tohost(x, dx, (size_t)n * dim * 4);
    int same = 1;
    for (int r = 0; r < n; r++) same &= !memcmp(x + (size_t)r * dim, tab + (size_t)ids[r] * dim, dim * 4);
    CHECKF(same, "embed %s n %d dim %d", dtn(dt), n, dim);
    /* rmsnorm without, then with the residual add */
    float *w = rnd(dim, 0.2f, 1.0f), *delta = rnd((size_t)n * dim, 2.0f, 0.0f);
    void *dw = dev_of(dt, w, dim), *ddelta = dev_of(dt, delta, (size_t)n * dim), *dout = dev((size_t)n * dim * 4);
    float *ref = malloc((size_t)n * dim * 4);
    CK(lk_op_rmsnorm(dt, dout, dx, NULL, dw, n, dim, 1e-5f, NULL));
    lk_rmsnorm(ref, x, w, n, dim, 1e-5f);
    float *got = host_of(dt, dout, (size_t)n * dim);
    double e1 = rel_l2(got, ref, (size_t)n * dim);
    free(got);
    CK(lk_op_rmsnorm(dt, dout, dx, ddelta, dw, n, dim, 1e-5f, NULL));
    for (size_t i = 0; i < (size_t)n * dim; i++) x[i] += delta[i];
    lk_rmsnorm(ref, x, w, n, dim, 1e-5f);
    got = host_of(dt, dout, (size_t)n * dim);
    double e2 = rel_l2(got, ref, (size_t)n * dim);
    float *xs = malloc((size_t)n * dim * 4);
    tohost(xs, dx, (size_t)n * dim * 4);
    double e3 = rel_l2(xs, x, (size_t)n * dim);
    CHECKF(e1 < tol(dt) && e2 < tol(dt) && e3 < 1e-6, "rmsnorm %s n %d dim %d: %.3g %.3g residual %.3g", dtn(dt),
           n, dim, e1, e2, e3);
    printf("embed + rmsnorm %s n %d dim %d: rel L2 %.2g, %.2g (add), residual %.2g\n", dtn(dt), n, dim, e1, e2, e3);
    free(tab), free(ids), free(x), free(w), free(delta), free(ref), free(got), free(xs);
    cudaFree(dtab), cudaFree(dids), cudaFree(dx), cudaFree(dw), cudaFree(ddelta), cudaFree(dout);
}

static const char *ropes[] = {
    "null",
    "{\"type\": \"linear\", \"factor\": 4.0}",
    "{\"rope_type\": \"llama3\", \"factor\": 8.0, \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0, "
    "\"original_max_position_embeddings\": 256}",
    "{\"rope_type\": \"yarn\", \"factor\": 4.0, \"original_max_position_embeddings\": 256}",
};

static void qkv_rope(int dt, int n, int nh, int nkv, int hd, int bias, const char *rope) {
    char js[1024];
    snprintf(js, sizeof js,
             "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", \"vocab_size\": 10, "
             "\"hidden_size\": %d, \"intermediate_size\": 8, \"num_hidden_layers\": 1, "
             "\"num_attention_heads\": %d, \"num_key_value_heads\": %d, \"head_dim\": %d, "
             "\"max_position_embeddings\": 2048, \"rope_theta\": 500000.0, \"rope_scaling\": %s}",
             nh * hd, nh, nkv, hd, rope);
    lk_config c;
    lk_err err;
    if (lk_config_parse(&c, js, strlen(js), "rope config", &err)) {
        fprintf(stderr, "%s\n", err.msg);
        CHECK(0);
        return;
    }
    int npos = 2048, QD = nh * hd, KD = nkv * hd, W = QD + 2 * KD;
    lk_rope_table t;
    CHECK(lk_rope_table_build(&t, &c, npos, NULL) == 0);
    float *dcos = todev(t.cos, (size_t)npos * t.half * 4), *dsin = todev(t.sin, (size_t)npos * t.half * 4);
    float *qkv = rnd((size_t)n * W, 1.0f, 0.0f), *b = bias ? rnd(W, 0.5f, 0.0f) : NULL;
    void *dqkv = dev_of(dt, qkv, (size_t)n * W), *db = b ? dev_of(dt, b, W) : NULL;
    int *pos = malloc(n * sizeof(int));
    for (int i = 0; i < n; i++) pos[i] = irand(npos);
    int *dpos = todev(pos, n * sizeof(int));
    void *dq = dev((size_t)n * QD * 4), *dk = dev((size_t)n * KD * 4), *dv = dev((size_t)n * KD * 4);
    double eq = 0, ek = 0, ev = 0;
    for (int mode = 0; mode < 2; mode++) { /* positions from pos[], then pos0 + r */
        int pos0 = 17;
        CK(lk_op_qkv_rope(dt, dqkv, db, dq, dk, dv, dcos, dsin, mode ? NULL : dpos, pos0, n, nh, nkv, hd, NULL));
        float *q = malloc((size_t)n * QD * 4), *k = malloc((size_t)n * KD * 4), *v = malloc((size_t)n * KD * 4);
        for (int r = 0; r < n; r++) {
            const float *row = qkv + (size_t)r * W;
            for (int i = 0; i < QD; i++) q[(size_t)r * QD + i] = row[i] + (b ? b[i] : 0);
            for (int i = 0; i < KD; i++) k[(size_t)r * KD + i] = row[QD + i] + (b ? b[QD + i] : 0);
            for (int i = 0; i < KD; i++) v[(size_t)r * KD + i] = row[QD + KD + i] + (b ? b[QD + KD + i] : 0);
            int p = mode ? pos0 + r : pos[r];
            lk_rope_apply(q + (size_t)r * QD, nh, hd, t.cos + (size_t)p * t.half, t.sin + (size_t)p * t.half);
            lk_rope_apply(k + (size_t)r * KD, nkv, hd, t.cos + (size_t)p * t.half, t.sin + (size_t)p * t.half);
        }
        float *gq = host_of(dt, dq, (size_t)n * QD), *gk = host_of(dt, dk, (size_t)n * KD),
              *gv = host_of(dt, dv, (size_t)n * KD);
        double a = rel_l2(gq, q, (size_t)n * QD), bb = rel_l2(gk, k, (size_t)n * KD), cc = rel_l2(gv, v, (size_t)n * KD);
        eq = fmax(eq, a), ek = fmax(ek, bb), ev = fmax(ev, cc);
        free(q), free(k), free(v), free(gq), free(gk), free(gv);
    }
    CHECKF(eq < tol(dt) && ek < tol(dt) && ev < tol(dt), "qkv_rope %s hd %d rope %s: q %.3g k %.3g v %.3g", dtn(dt),
           hd, rope, eq, ek, ev);
    printf("qkv+rope %s n %d heads %d/%d hd %d bias %d rope %.24s: rel L2 q %.2g k %.2g v %.2g\n", dtn(dt), n, nh,
           nkv, hd, bias, rope, eq, ek, ev);
    lk_rope_table_free(&t);
    free(qkv), free(b), free(pos);
    cudaFree(dcos), cudaFree(dsin), cudaFree(dqkv), cudaFree(db), cudaFree(dpos), cudaFree(dq), cudaFree(dk),
        cudaFree(dv);
}

static void swiglu_scatter(int dt, int n, int hidden) {
    float *gu = rnd((size_t)n * 2 * hidden, 4.0f, 0.0f);
    void *dgu = dev_of(dt, gu, (size_t)n * 2 * hidden), *dout = dev((size_t)n * hidden * 4);
    CK(lk_op_swiglu(dt, dout, dgu, n, hidden, NULL));
    float *g = malloc((size_t)n * hidden * 4), *u = malloc((size_t)n * hidden * 4);
    for (int r = 0; r < n; r++)
        for (int i = 0; i < hidden; i++) {
            g[(size_t)r * hidden + i] = gu[(size_t)r * 2 * hidden + i];
            u[(size_t)r * hidden + i] = gu[(size_t)r * 2 * hidden + hidden + i];
        }
    lk_swiglu(g, u, (size_t)n * hidden);
    float *got = host_of(dt, dout, (size_t)n * hidden);
    double e = rel_l2(got, g, (size_t)n * hidden);
    CHECKF(e < tol(dt), "swiglu %s n %d hidden %d: %.3g", dtn(dt), n, hidden, e);
    printf("swiglu %s n %d hidden %d: rel L2 %.2g\n", dtn(dt), n, hidden, e);
    /* scatter rows to pointers */
    int B = 5, V = 1001;
    float *src = rnd((size_t)B * V, 1.0f, 0.0f), *dsrc = todev(src, (size_t)B * V * 4);
    float *dst = dev((size_t)B * V * 4), *ptr[5];
    for (int b = 0; b < B; b++) ptr[b] = dst + (size_t)((b * 3) % B) * V;
    float **dptr = todev(ptr, sizeof ptr);
    CK(lk_op_scatter_rows(dptr, dsrc, B, V, NULL));
    float *h = malloc((size_t)B * V * 4);
    tohost(h, dst, (size_t)B * V * 4);
    int ok = 1;
    for (int b = 0; b < B; b++) ok &= !memcmp(h + (size_t)((b * 3) % B) * V, src + (size_t)b * V, V * 4);
    CHECK(ok);
    free(gu), free(g), free(u), free(got), free(src), free(h);
    cudaFree(dgu), cudaFree(dout), cudaFree(dsrc), cudaFree(dst), cudaFree(dptr);
}

static void gemv(int M, int N, int K) {
    float *x = rnd((size_t)M * K, 1.0f, 0.0f), *w = rnd((size_t)N * K, 0.1f, 0.0f);
    void *dx = dev_of(LK_OP_BF16, x, (size_t)M * K), *dw = dev_of(LK_OP_BF16, w, (size_t)N * K);
    float *ref = malloc((size_t)M * N * 4);
    lk_matmul(ref, x, w, NULL, M, K, N);
    double e[2];
    for (int odt = 0; odt < 2; odt++) {
        void *dout = dev((size_t)M * N * 4);
        CK(lk_op_gemv(odt, dout, dx, dw, M, N, K, NULL));
        float *got = host_of(odt, dout, (size_t)M * N);
        e[odt] = rel_l2(got, ref, (size_t)M * N);
        free(got);
        cudaFree(dout);
    }
    CHECKF(e[0] < 1e-5 && e[1] < 1e-2, "gemv M %d N %d K %d: f32 out %.3g, bf16 out %.3g", M, N, K, e[0], e[1]);
    printf("gemv M %d N %d K %d: rel L2 f32 out %.2g, bf16 out %.2g\n", M, N, K, e[0], e[1]);
    free(x), free(w), free(ref);
    cudaFree(dx), cudaFree(dw);
}

/* The engine's use of the causal prefill attention (attention.cu) at its
 * shapes: q/k/v straight from lk_op_qkv_rope's layout. */
static void prefill_attn(int dt, int n, int H, int G, int hd) {
    size_t QD = (size_t)H * hd, KD = (size_t)G * hd;
    float *q = rnd(n * QD, 2.0f, 0.0f), *k = rnd(n * KD, 2.0f, 0.0f), *v = rnd(n * KD, 1.0f, 0.0f);
    void *dq = dev_of(dt, q, n * QD), *dk = dev_of(dt, k, n * KD), *dv = dev_of(dt, v, n * KD), *dout = dev(n * QD * 4);
    float scale = 1.0f / sqrtf((float)hd);
    CK(lk_cuda_prefill_attention((lk_kv_dtype)dt, dq, dk, dv, dout, n, H, G, hd, scale, NULL));
    float *ref = malloc(n * QD * 4), *sc = malloc(n * sizeof(float));
    for (int i = 0; i < n; i++)
        for (int h = 0; h < H; h++) {
            int g = h / (H / G);
            const float *qi = q + i * QD + (size_t)h * hd;
            float mx = -INFINITY, z = 0;
            for (int j = 0; j <= i; j++) {
                float d = 0;
                for (int c = 0; c < hd; c++) d += qi[c] * k[j * KD + (size_t)g * hd + c];
                sc[j] = d * scale;
                mx = fmaxf(mx, sc[j]);
            }
            for (int j = 0; j <= i; j++) z += sc[j] = expf(sc[j] - mx);
            float *o = ref + i * QD + (size_t)h * hd;
            for (int c = 0; c < hd; c++) o[c] = 0;
            for (int j = 0; j <= i; j++)
                for (int c = 0; c < hd; c++) o[c] += sc[j] / z * v[j * KD + (size_t)g * hd + c];
        }
    float *got = host_of(dt, dout, n * QD);
    double e = rel_l2(got, ref, n * QD);
    CHECKF(e < tol(dt), "prefill attention %s n %d H %d G %d hd %d: %.3g", dtn(dt), n, H, G, hd, e);
    printf("prefill attention %s n %d H %d G %d hd %d: rel L2 %.2g\n", dtn(dt), n, H, G, hd, e);
    free(q), free(k), free(v), free(ref), free(sc), free(got);
    cudaFree(dq), cudaFree(dk), cudaFree(dv), cudaFree(dout);
}

/* ---- 3. sampling ---- */
static int *sample(float *const *dlog, const lk_op_sample_params *p, int B, int V) {
    float **dptr = todev(dlog, B * sizeof(float *));
    lk_op_sample_params *dp = todev(p, B * sizeof *p);
    int *dids = dev(B * sizeof(int)), *ids = malloc(B * sizeof(int));
    CK(lk_op_sample((const float *const *)dptr, dp, dids, B, V, NULL));
    tohost(ids, dids, B * sizeof(int));
    cudaFree(dptr), cudaFree(dp), cudaFree(dids);
    return ids;
}

static const double *sort_prob;
static int by_prob(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    if (sort_prob[x] != sort_prob[y]) return sort_prob[x] > sort_prob[y] ? -1 : 1;
    return x - y;
}

static void sampling(int V) {
    /* greedy with ties: several maxima, lowest wins */
    float *l = rnd(V, 3.0f, 0.0f);
    int a = irand(V), b = irand(V);
    l[a] = l[b] = 10.0f;
    float *dl = todev(l, V * 4);
    enum { NB = 2048 };
    static float *ptrs[NB];
    static lk_op_sample_params p[NB];
    for (int i = 0; i < NB; i++) ptrs[i] = dl;
    p[0] = (lk_op_sample_params){0.0f, 0, 1.0f, 0.5f};
    p[1] = (lk_op_sample_params){1.0f, 1, 1.0f, 0.9f};    /* top_k 1 */
    p[2] = (lk_op_sample_params){0.7f, 0, 1e-6f, 0.9f};   /* tiny nucleus */
    int *ids = sample(ptrs, p, 3, V);
    int lo = a < b ? a : b;
    CHECKF(ids[0] == lo && ids[1] == lo && ids[2] == lo, "greedy ties: %d %d %d, expected %d", ids[0], ids[1], ids[2],
           lo);
    free(ids);
    if (a != b) { /* top_k 2 over three equal maxima: the two lowest ids, evenly */
        int c3 = irand(V);
        while (c3 == a || c3 == b) c3 = irand(V);
        l[c3] = 10.0f;
        CK(cudaMemcpy(dl, l, V * 4, cudaMemcpyHostToDevice));
        int s0 = a < b ? (a < c3 ? a : c3) : (b < c3 ? b : c3), s2 = a > b ? (a > c3 ? a : c3) : (b > c3 ? b : c3);
        for (int i = 0; i < 200; i++) p[i] = (lk_op_sample_params){1.0f, 2, 1.0f, (float)((i + 0.5) / 200)};
        ids = sample(ptrs, p, 200, V);
        int bad = 0, first = 0;
        for (int i = 0; i < 200; i++) bad += ids[i] == s2 || (ids[i] != a && ids[i] != b && ids[i] != c3), first += ids[i] == s0;
        CHECKF(bad == 0 && first == 100, "top_k 2 over 3 ties: %d draws outside, %d of 200 the lowest", bad, first);
        free(ids);
    }
    /* plain multinomial: the same draw picks what lk_sample picks (id order) */
    float *l2 = rnd(V, 2.0f, 0.0f);
    float *dl2 = todev(l2, V * 4);
    lk_sampler smp;
    CHECK(lk_sampler_build(&smp, V, 0.8f, 0, 1.0f, 7, NULL) == 0);
    float *tmp = malloc(V * 4);
    int ref[NB];
    for (int i = 0; i < NB; i++) {
        uint64_t st = smp.rng;
        float u = lk_sampler_uniform(&smp);
        smp.rng = st; /* lk_sample draws the same u */
        memcpy(tmp, l2, V * 4);
        ref[i] = lk_sample(&smp, tmp);
        ptrs[i] = dl2;
        p[i] = (lk_op_sample_params){0.8f, 0, 1.0f, u};
    }
    ids = sample(ptrs, p, NB, V);
    /* lk_sample sums the CDF in float: over a large vocabulary its rounding
     * moves draws by a token, so the reference there is a double CDF */
    double *cdf = malloc(V * sizeof(double)), zz = 0, mx2 = -INFINITY;
    for (int i = 0; i < V; i++) mx2 = fmax(mx2, l2[i] / 0.8f);
    for (int i = 0; i < V; i++) cdf[i] = zz += exp(l2[i] / 0.8f - mx2);
    int diff = 0, diff_d = 0;
    for (int i = 0; i < NB; i++) {
        int j = 0;
        while (j < V - 1 && p[i].u * zz >= cdf[j]) j++;
        diff += ids[i] != ref[i];
        diff_d += ids[i] != j;
    }
    if (V < 1000) CHECKF(diff <= 2, "multinomial: %d of %d draws differ from lk_sample", diff, NB);
    CHECKF(diff_d <= NB / 100, "multinomial: %d of %d draws differ from a double CDF", diff_d, NB);
    free(cdf);
    free(ids);
    /* top-k 5 and top-p 0.6: only the kept set, frequencies ~ renormalised probs */
    double *prob = malloc(V * sizeof(double)), z = 0;
    float mx = l2[lk_argmax(l2, V)];
    for (int i = 0; i < V; i++) z += prob[i] = exp((l2[i] - mx) / 0.8);
    for (int i = 0; i < V; i++) prob[i] /= z;
    int *order = malloc(V * sizeof(int));
    for (int i = 0; i < V; i++) order[i] = i;
    sort_prob = prob;
    qsort(order, V, sizeof(int), by_prob);
    for (int mode = 0; mode < 2; mode++) {
        int k = mode == 0 ? 5 : 0;
        float tp = mode == 0 ? 1.0f : 0.6f;
        int keep = k;
        if (mode == 1) {
            double m = 0;
            keep = 0;
            while (m < tp) m += prob[order[keep++]];
        }
        double kept = 0;
        for (int i = 0; i < keep; i++) kept += prob[order[i]];
        for (int i = 0; i < NB; i++) p[i] = (lk_op_sample_params){0.8f, k, tp, (float)((i + 0.5) / NB)};
        ids = sample(ptrs, p, NB, V);
        int outside = 0;
        double maxdev = 0;
        for (int j = 0; j < keep; j++) {
            int c = 0;
            for (int i = 0; i < NB; i++) c += ids[i] == order[j];
            maxdev = fmax(maxdev, fabs((double)c / NB - prob[order[j]] / kept));
        }
        for (int i = 0; i < NB; i++) {
            int in = 0;
            for (int j = 0; j < keep; j++) in |= ids[i] == order[j];
            outside += !in;
        }
        CHECKF(outside == 0 && maxdev < 0.01, "%s: %d draws outside the %d kept, max freq error %.3g",
               mode ? "top_p 0.6" : "top_k 5", outside, keep, maxdev);
        printf("sampling V %d %s: %d kept, stratified draws off by at most %.4f\n", V, mode ? "top_p 0.6" : "top_k 5",
               keep, maxdev);
        free(ids);
    }
    printf("sampling V %d: greedy ties ok, multinomial equal to lk_sample on %d of %d draws, to a double CDF on %d\n",
           V, NB - diff, NB, NB - diff_d);
    lk_sampler_free(&smp);
    free(l), free(l2), free(tmp), free(prob), free(order);
    cudaFree(dl), cudaFree(dl2);
}

/* LEANK_BENCH=1: the decode products of the 8B shape, lk_op_gemv against
 * cuBLAS (GB/s of weights read; times, not checks). */
static void bench_gemv(void) {
    static const int shapes[][3] = {{1, 6144, 4096},  {1, 4096, 4096},  {1, 28672, 4096}, {1, 4096, 14336},
                                    {1, 128256, 4096}, {4, 28672, 4096}, {8, 4096, 14336}, {8, 128256, 4096}};
    cublasHandle_t h;
    cublasCreate(&h);
    cudaEvent_t a, b;
    cudaEventCreate(&a);
    cudaEventCreate(&b);
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        int M = shapes[i][0], N = shapes[i][1], K = shapes[i][2];
        size_t wb = (size_t)N * K * 2;
        int nw = (int)(2e9 / wb) + 1; /* rotate over > 2 GB of weights: no L2 reuse */
        if (nw > 8) nw = 8;
        void *w[8], *x = dev((size_t)M * K * 2), *o = dev((size_t)M * N * 4);
        for (int j = 0; j < nw; j++) {
            w[j] = dev(wb);
            CK(lk_op_randn(LK_OP_BF16, w[j], (size_t)N * K, j, 0, 0.02f, NULL));
        }
        CK(lk_op_randn(LK_OP_BF16, x, (size_t)M * K, 99, 0, 1, NULL));
        float t[2];
        for (int lib = 0; lib < 2; lib++) {
            for (int rep = 0; rep < 2; rep++) {
                cudaEventRecord(a, NULL);
                for (int it = 0; it < 20; it++) {
                    void *wi = w[it % nw];
                    if (lib == 0) {
                        CK(lk_op_gemv(LK_OP_BF16, o, x, wi, M, N, K, NULL));
                    } else {
                        float one = 1, zero = 0;
                        cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &one, wi, CUDA_R_16BF, K, x, CUDA_R_16BF, K,
                                     &zero, o, CUDA_R_16BF, N, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
                    }
                }
                cudaEventRecord(b, NULL);
                CK(cudaEventSynchronize(b));
                cudaEventElapsedTime(&t[lib], a, b);
            }
        }
        printf("bench gemv M %d N %6d K %5d: lk_op_gemv %.1f us (%.0f GB/s), cuBLAS %.1f us (%.0f GB/s)\n", M, N, K,
               t[0] * 50, wb / (t[0] * 50e-6) / 1e9, t[1] * 50, wb / (t[1] * 50e-6) / 1e9);
        for (int j = 0; j < nw; j++) cudaFree(w[j]);
        cudaFree(x), cudaFree(o);
    }
    cublasDestroy(h);
}

int main(void) {
    int ndev = 0;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) T_SKIP("no GPU visible");
    const char *s = getenv("LEANK_SEED");
    uint64_t seed = s ? strtoull(s, NULL, 10) : (uint64_t)time(NULL);
    printf("seed %llu (LEANK_SEED=%llu repeats this run)\n", (unsigned long long)seed, (unsigned long long)seed);
    rng = seed * 0x9e3779b97f4a7c15ULL + 1;
    if (getenv("LEANK_BENCH")) {
        bench_gemv();
        return 0;
    }
    conversions();
    for (int dt = 0; dt < 2; dt++) {
        embed_norm(dt, 1, 7);
        embed_norm(dt, 13, 333);
        embed_norm(dt, 5, 4096);
        for (int r = 0; r < 4; r++) {
            qkv_rope(dt, 9, 4, 2, 8, r & 1, ropes[r]);
            qkv_rope(dt, 3, 7, 1, 64, !(r & 1), ropes[r]);
            qkv_rope(dt, 17, 8, 8, 128, 1, ropes[r]);
        }
        swiglu_scatter(dt, 3, 1);
        swiglu_scatter(dt, 7, 173);
        swiglu_scatter(dt, 5, 1024);
    }
    for (int dt = 0; dt < 2; dt++) {
        prefill_attn(dt, 37, 8, 2, 128);
        prefill_attn(dt, 61, 8, 2, 128);
        prefill_attn(dt, 37, 2, 2, 128);
        prefill_attn(dt, 37, 8, 2, 64);
        prefill_attn(dt, 300, 8, 2, 128);
        qkv_rope(dt, 37, 8, 2, 128, 1, ropes[0]);
    }
    gemv(1, 1001, 4096);
    gemv(3, 77, 200);
    gemv(8, 4099, 64);
    gemv(5, 13, 14336);
    CHECK(!lk_op_gemv_ok(9, 64) && !lk_op_gemv_ok(1, 172));
    sampling(97);
    sampling(50021);
    return t_done();
}
