/* gpu_train.c - the CUDA training backend (kernels/train_cuda.cu) against the
 * CPU reference backend (lib/train/train_cpu.c, double), same model, same
 * samples, same alpha:
 * 1. random models in memory (tmodel.h: GQA 4:1 with bias, 2:1, 1:1 with
 *    llama3 RoPE; answers shorter and longer than the recent window, sink 0
 *    and > 0), uploaded as f32: the loss and dalpha agree to 1e-4 relative,
 *    the norm statistics too; alpha == 1 gives loss exactly 0; two calls
 *    give the same bits; 20 stage-1 steps (AdamW, lk_train_step) end with
 *    the same alpha to 1e-3, and two GPU runs with identical alpha; a
 *    stage-2 objective (binary mask, width-0 heads) agrees to 1e-4;
 * 2. stories260K (../shared) in f32: the same checks on a real model;
 * 3. bf16 on the GPU (activations and products in bf16): close to the f32
 *    CPU reference (loss 5e-2, dalpha 0.15 relative) and deterministic;
 * 4. a sample that does not fit is refused before allocation, naming sizes.
 * Seed printed; LEANK_SEED=n repeats a run. Exit 77 without a GPU. */
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "engine.h"
#include "model.h"
#include "t.h"
#include "tgpu.h" /* CK, OK, the PRNG, rel_l2d */
#include "tmodel.h"
#include "train.h"

static lk_err err;

static lk_engine_opts gpu_opts(void) {
    lk_engine_opts o;
    memset(&o, 0, sizeof o);
    o.device = LK_DEVICE_CUDA;
    o.pool_bytes = 1u << 20; /* the trainer grows it per sample */
    o.max_batch = 4;
    o.max_prefill = 1024;
    return o;
}

typedef struct {
    const char *what;
    int sink, recent, n, C;
} sample_case;

/* GPU backend of dtype over m; NULL on failure (reported). */
static int gpu_backend(lk_train_backend *b, const lk_model *m, const char *dtype, int sink, int recent) {
    lk_engine_opts o = gpu_opts();
    lk_engine *e = NULL;
    OK(lk_engine_from_model(&e, m, dtype, &o, &err));
    if (!e) return 1;
    int rc = lk_train_cuda_new(b, e, 1, sink, recent, &err);
    OK(rc);
    if (rc) lk_engine_free(e);
    return rc;
}

static void random_tokens(int *tok, int n, int vocab) {
    for (int i = 0; i < n; i++) tok[i] = irand(vocab);
}

/* Loss, gradient, norm statistics, alpha == 1 and determinism for one sample. */
static void compare(const char *name, const lk_model *m, const sample_case *sc, const char *dtype, double tol_loss,
                    double tol_grad) {
    int L = m->cfg.n_layers, G = m->cfg.n_kv_heads, hd = m->cfg.head_dim;
    size_t na = (size_t)L * G * hd;
    lk_train_backend bc, bg;
    OK(lk_train_cpu_new(&bc, m, sc->sink, sc->recent, &err));
    if (gpu_backend(&bg, m, dtype, sc->sink, sc->recent)) {
        lk_train_backend_free(&bc);
        return;
    }
    int *tok = malloc(sizeof(int) * sc->n);
    random_tokens(tok, sc->n, m->cfg.vocab_size);
    OK(bc.prepare(bc.ctx, tok, sc->n, sc->C, &err));
    OK(bg.prepare(bg.ctx, tok, sc->n, sc->C, &err));
    double *alpha = malloc(na * sizeof(double)), *gc = malloc(na * sizeof(double)),
           *gg = malloc(na * sizeof(double)), *gg2 = malloc(na * sizeof(double));
    double lc = 0, lg = 0, lg2 = 0;
    /* norm statistics (of the dense pass: the norm method calls them right after prepare) */
    double *qc = calloc(na, sizeof(double)), *kc = calloc(na, sizeof(double)), *qg = calloc(na, sizeof(double)),
           *kg = calloc(na, sizeof(double));
    OK(bc.norm_stats(bc.ctx, qc, kc, &err));
    OK(bg.norm_stats(bg.ctx, qg, kg, &err));
    double dq = rel_l2d(qg, qc, na), dk = rel_l2d(kg, kc, na);
    CHECKF(dq <= tol_grad && dk <= tol_grad, "%s %s: norm statistics rel L2 q %.3g k %.3g", name, sc->what, dq, dk);
    /* the first call ran a dense pass of its own; from then on prepare computes them: the same bits */
    double *q2 = calloc(na, sizeof(double)), *k2 = calloc(na, sizeof(double));
    OK(bg.prepare(bg.ctx, tok, sc->n, sc->C, &err));
    OK(bg.norm_stats(bg.ctx, q2, k2, &err));
    CHECKF(!memcmp(q2, qg, na * sizeof(double)) && !memcmp(k2, kg, na * sizeof(double)),
           "%s %s: norm statistics from prepare differ from the first call's", name, sc->what);
    free(q2), free(k2);
    /* alpha == 1: the pruned pass is the dense one */
    for (size_t i = 0; i < na; i++) alpha[i] = 1.0;
    OK(bg.loss_grad(bg.ctx, alpha, &lg, gg, &err));
    double gmax = 0;
    for (size_t i = 0; i < na; i++) gmax = fmax(gmax, fabs(gg[i]));
    CHECKF(lg == 0.0 && gmax == 0.0, "%s %s: alpha == 1: loss %.3g, max |grad| %.3g (expected exactly 0)", name,
           sc->what, lg, gmax);
    /* random alpha */
    for (size_t i = 0; i < na; i++) alpha[i] = 0.5 * (frand() + 1.0);
    OK(bc.loss_grad(bc.ctx, alpha, &lc, gc, &err));
    OK(bg.loss_grad(bg.ctx, alpha, &lg, gg, &err));
    OK(bg.loss_grad(bg.ctx, alpha, &lg2, gg2, &err));
    double dl = fabs(lg - lc) / fabs(lc), dg = rel_l2d(gg, gc, na);
    CHECKF(dl <= tol_loss, "%s %s: loss gpu %.9g cpu %.9g rel %.3g", name, sc->what, lg, lc, dl);
    CHECKF(dg <= tol_grad, "%s %s: dalpha rel L2 %.3g", name, sc->what, dg);
    CHECKF(lg == lg2 && !memcmp(gg, gg2, na * sizeof(double)), "%s %s: two calls differ", name, sc->what);
    printf("%s, %s, %s: n %d (answer %d), sink %d, recent %d: loss %.6g vs %.6g (rel %.2g), dalpha rel L2 %.2g, "
           "norm stats %.2g / %.2g\n",
           name, dtype, sc->what, sc->n, sc->n - sc->C, sc->sink, sc->recent, lg, lc, dl, dg, dq, dk);
    free(qc), free(kc), free(qg), free(kg);
    free(alpha), free(gc), free(gg), free(gg2), free(tok);
    lk_train_backend_free(&bc);
    lk_train_backend_free(&bg);
}

/* 20 stage-1 steps on both backends (a new random sample each step), a
 * second GPU run, and one stage-2 objective. */
static void steps(const char *name, const lk_model *m, const sample_case *sc) {
    int L = m->cfg.n_layers, G = m->cfg.n_kv_heads, hd = m->cfg.head_dim;
    lk_train_backend bc, bg;
    OK(lk_train_cpu_new(&bc, m, sc->sink, sc->recent, &err));
    if (gpu_backend(&bg, m, "f32", sc->sink, sc->recent)) {
        lk_train_backend_free(&bc);
        return;
    }
    lk_train_opts o;
    lk_train_opts_default(&o, 1);
    o.sink = sc->sink;
    o.recent = sc->recent;
    o.steps = 20;
    o.lr = 0.05;
    lk_train_state sc_, sg, sg2;
    CHECK(lk_train_state_init(&sc_, L, G, hd, 1, NULL) == 0);
    CHECK(lk_train_state_init(&sg, L, G, hd, 1, NULL) == 0);
    CHECK(lk_train_state_init(&sg2, L, G, hd, 1, NULL) == 0);
    int *tok = malloc(sizeof(int) * sc->n);
    uint64_t keep = rng;
    double l_first = 0, l_last = 0;
    for (int pass = 0; pass < 2; pass++) {
        rng = keep; /* the same samples in both GPU runs */
        for (int t = 0; t < 20; t++) {
            random_tokens(tok, sc->n, m->cfg.vocab_size);
            lk_train_stats s1, s2;
            if (pass == 0) {
                OK(bc.prepare(bc.ctx, tok, sc->n, sc->C, &err));
                OK(lk_train_step(&sc_, &bc, &o, &s1, &err));
            }
            OK(bg.prepare(bg.ctx, tok, sc->n, sc->C, &err));
            OK(lk_train_step(pass ? &sg2 : &sg, &bg, &o, &s2, &err));
            if (pass == 0 && t == 0) l_first = s2.loss;
            if (pass == 0 && t == 19) l_last = s2.loss;
        }
    }
    double mx = 0;
    for (size_t i = 0; i < sg.n; i++) mx = fmax(mx, fabs((double)sg.alpha[i] - sc_.alpha[i]));
    CHECKF(mx <= 1e-3, "%s: 20 steps: max |alpha gpu - cpu| %.3g", name, mx);
    CHECKF(!memcmp(sg.alpha, sg2.alpha, sg.n * sizeof(float)), "%s: two GPU runs give different alpha", name);
    printf("%s: 20 stage-1 steps: loss %.4g -> %.4g, max |alpha gpu - cpu| %.2g, GPU runs %s\n", name, l_first, l_last,
           mx, memcmp(sg.alpha, sg2.alpha, sg.n * sizeof(float)) ? "DIFFER" : "identical");
    /* stage 2 from the trained alpha: binary mask, some heads of width 0 */
    lk_train_opts o2;
    lk_train_opts_default(&o2, 2);
    o2.sink = sc->sink;
    o2.recent = sc->recent;
    o2.ratio = 0.75;
    o2.align = hd / 4;
    lk_train_stats s1, s2;
    memcpy(sc_.alpha, sg.alpha, sg.n * sizeof(float));
    random_tokens(tok, sc->n, m->cfg.vocab_size);
    OK(bc.prepare(bc.ctx, tok, sc->n, sc->C, &err));
    OK(bg.prepare(bg.ctx, tok, sc->n, sc->C, &err));
    OK(lk_train_objective(&sc_, &bc, &o2, &s1, &err));
    OK(lk_train_objective(&sg, &bg, &o2, &s2, &err));
    double dl = fabs(s2.loss - s1.loss) / fabs(s1.loss), dg = rel_l2d(sg.grad, sc_.grad, sg.n);
    CHECKF(dl <= 1e-4 && dg <= 1e-4, "%s: stage 2: loss rel %.3g, dalpha rel L2 %.3g", name, dl, dg);
    printf("%s: stage 2 (kept %.3f): loss %.6g vs %.6g (rel %.2g), dalpha rel L2 %.2g\n", name, s2.kept, s2.loss,
           s1.loss, dl, dg);
    free(tok);
    lk_train_state_free(&sc_);
    lk_train_state_free(&sg);
    lk_train_state_free(&sg2);
    lk_train_backend_free(&bc);
    lk_train_backend_free(&bg);
}

typedef struct {
    const char *what;
    int hd, nh, nkv, bias;
    const char *rope;
} variant;

static const variant variants[] = {
    {"hd 64, GQA 4:1, bias", 64, 8, 2, 1, "null"},
    {"hd 128, GQA 2:1", 128, 4, 2, 0, "null"},
    {"hd 32, GQA 1:1, llama3", 32, 3, 3, 0,
     "{\"rope_type\": \"llama3\", \"factor\": 8.0, \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0, "
     "\"original_max_position_embeddings\": 64}"},
};

static const sample_case cases[] = {
    {"answer inside the recent window", 4, 32, 230, 210},
    {"answer longer than the recent window, no sink", 0, 16, 260, 212},
};

static int load_random(lk_model *m, const variant *v) {
    char js[2048];
    snprintf(js, sizeof js,
             "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", \"vocab_size\": 301, "
             "\"hidden_size\": 96, \"intermediate_size\": 160, \"num_hidden_layers\": 2, "
             "\"num_attention_heads\": %d, \"num_key_value_heads\": %d, \"head_dim\": %d, "
             "\"max_position_embeddings\": 1024, \"rms_norm_eps\": 1e-5, \"rope_theta\": 10000.0, "
             "\"rope_scaling\": %s, \"attention_bias\": %s, \"tie_word_embeddings\": true}",
             v->nh, v->nkv, v->hd, v->rope, v->bias ? "true" : "false");
    lk_config c;
    if (lk_config_parse(&c, js, strlen(js), v->what, &err)) {
        fprintf(stderr, "%s: %s\n", v->what, err.msg);
        CHECK(0);
        return 1;
    }
    tm_random_model(m, &c);
    return 0;
}

/* A sample far larger than the card: refused before anything is allocated,
 * naming the sizes (60 000 answer rows over 120 000 keys: ~700 GB of scores). */
static void too_big(const lk_model *m) {
    lk_engine_opts o = gpu_opts();
    o.max_prefill = 131072;
    lk_engine *e = NULL;
    OK(lk_engine_from_model(&e, m, "f32", &o, &err));
    if (!e) return;
    lk_train_backend bg;
    OK(lk_train_cuda_new(&bg, e, 1, 4, 32, &err));
    int n = 120000, C = 60000;
    int *tok = calloc(n, sizeof(int));
    size_t f0 = 0, f1 = 0, tot = 0;
    CK(cudaMemGetInfo(&f0, &tot));
    int rc = bg.prepare(bg.ctx, tok, n, C, &err);
    CK(cudaMemGetInfo(&f1, &tot));
    CHECKF(rc == LK_ENOMEM && strstr(err.msg, "training buffers") && strstr(err.msg, "120000 tokens"),
           "refusal: rc %d: %s", rc, err.msg);
    CHECKF(f1 + (64u << 20) >= f0, "free memory %zu -> %zu after the refusal", f0, f1);
    printf("too big: %s\n", err.msg);
    free(tok);
    lk_train_backend_free(&bg);
}

int main(void) {
    if (!lk_cuda_available()) T_SKIP("no GPU visible (or a build without CUDA)");
    const char *sd = getenv("LEANK_SEED");
    uint64_t seed = sd ? strtoull(sd, NULL, 10) : (uint64_t)time(NULL);
    printf("seed %llu (LEANK_SEED=%llu repeats this run)\n", (unsigned long long)seed, (unsigned long long)seed);
    rng = seed * 0x9e3779b97f4a7c15ULL + 1;
    tm_rng = rng ^ 0x5bd1e995;
    /* LEANK_SAN_SMALL=1 (compute-sanitizer's racecheck): one model, one sample,
     * f32 and bf16; no steps, no stories260K */
    int small = getenv("LEANK_SAN_SMALL") != NULL;
    for (size_t v = 0; v < sizeof variants / sizeof variants[0]; v++) {
        lk_model m;
        if (small && v > 0) break;
        if (load_random(&m, &variants[v])) continue;
        if (small) {
            compare(variants[v].what, &m, &cases[1], "f32", 1e-4, 1e-4);
            compare(variants[v].what, &m, &cases[0], "bf16", 5e-2, 0.15);
            lk_model_free(&m);
            return t_done();
        }
        for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
            compare(variants[v].what, &m, &cases[c], "f32", 1e-4, 1e-4);
        if (v == 0) {
            steps(variants[v].what, &m, &cases[0]);
            compare(variants[v].what, &m, &cases[0], "bf16", 5e-2, 0.15);
            too_big(&m);
        }
        lk_model_free(&m);
    }
    const char *shared = t_shared();
    if (shared) {
        char dir[4200];
        snprintf(dir, sizeof dir, "%s/models/stories260K", shared);
        lk_model m;
        if (lk_model_load(&m, dir, &err)) {
            fprintf(stderr, "%s\n", err.msg);
            CHECK(0);
        } else {
            sample_case sc = {"256 tokens", 8, 64, 256, 224};
            compare("stories260K", &m, &sc, "f32", 1e-4, 1e-4);
            steps("stories260K", &m, &sc);
            lk_model_free(&m);
        }
    } else {
        T_SKIP_PART("stories260K training: ../shared absent (LEANK_SHARED)");
    }
    return t_done();
}
