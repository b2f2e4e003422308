/* test_train.c - leank-train's CPU backend and optimiser.
 *  - gradient check: dL/dalpha of a random tiny model (GQA 2:1, q/k/v bias,
 *    sink/recent windows splitting the keys three ways, answer keys that are
 *    middle keys of later answer rows) against central finite differences,
 *    stage 1 (distillation + lambda mean|alpha|) and stage 2 (straight-through
 *    gradient through alpha*mask);
 *  - alpha = 1 gives exactly the full model (loss 0);
 *  - learning-rate schedule, AdamW against a hand-computed step, YAML config;
 *  - lk_train_backend_open on leank-mini: the cpu backend, the fingerprint
 *    the engine gives (what a cuda run records), cuda refused without a GPU;
 *  - lk_train_run through the library: progress events, a stop flag raised
 *    mid-run (LK_EINTR, checkpoint), resume == uninterrupted, bitwise. */
#include <stdint.h>
#include <unistd.h>

#include "t.h"
#include "engine.h"
#include "model.h"
#include "tokenizer.h"
#include "train.h"

/* ---- a random tiny model in memory ---- */

static uint64_t rng = 0x1234567887654321ULL;
static double urand(void) { /* [0, 1) */
    rng ^= rng >> 12; rng ^= rng << 25; rng ^= rng >> 27;
    return (double)((rng * 0x2545F4914F6CDD1DULL) >> 11) / 9007199254740992.0;
}
static double nrand(void) { /* roughly N(0, 1) */
    double s = 0;
    for (int i = 0; i < 12; i++) s += urand();
    return s - 6.0;
}
/* mean + std * N(0,1) into the n floats at p (a weight of the model
 * lk_model_alloc built: its own memory) */
static void rnd(const float *p, size_t n, double mean, double std) {
    float *x = (float *)p;
    for (size_t i = 0; i < n; i++) x[i] = (float)(mean + std * nrand());
}

static void tiny_model(lk_model *m, int bias) {
    lk_config c;
    lk_config_llama(&c, 32, 24, 40, 2, 4, 2, 6);
    c.max_position_embeddings = 256;
    c.attention_bias = bias;
    c.tie_word_embeddings = 1;
    lk_err err;
    if (lk_model_alloc(m, &c, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        exit(1);
    }
    int L = 2, D = 24, F = 40, qd = 24, kvd = 12, V = 32;
    lk_weights *w = &m->w;
    lk_layer_weights *y = w->layer;
    /* kind by kind, layer by layer: the values of the tests' history */
    rnd(w->embed, (size_t)V * D, 0, 1.0);
    for (int l = 0; l < L; l++) rnd(y[l].attn_norm, D, 1.0, 0.1);
    for (int l = 0; l < L; l++) rnd(y[l].ffn_norm, D, 1.0, 0.1);
    for (int l = 0; l < L; l++) rnd(y[l].wq, (size_t)qd * D, 0, 0.6); /* large q/k: peaked attention */
    for (int l = 0; l < L; l++) rnd(y[l].wk, (size_t)kvd * D, 0, 0.6);
    for (int l = 0; l < L; l++) rnd(y[l].wv, (size_t)kvd * D, 0, 0.3);
    for (int l = 0; l < L; l++) rnd(y[l].wo, (size_t)D * qd, 0, 0.3);
    for (int l = 0; l < L; l++) rnd(y[l].w_gate, (size_t)F * D, 0, 0.3);
    for (int l = 0; l < L; l++) rnd(y[l].w_up, (size_t)F * D, 0, 0.3);
    for (int l = 0; l < L; l++) rnd(y[l].w_down, (size_t)D * F, 0, 0.3);
    rnd(w->final_norm, D, 1.0, 0.1);
    if (bias) {
        for (int l = 0; l < L; l++) rnd(y[l].bq, qd, 0, 0.2);
        for (int l = 0; l < L; l++) rnd(y[l].bk, kvd, 0, 0.2);
        for (int l = 0; l < L; l++) rnd(y[l].bv, kvd, 0, 0.2);
    }
}

/* relative error with a floor (entries far below the gradient's scale are
 * compared absolutely against 1e-3 of that scale) */
static double rel_err(double a, double b, double floor) {
    return fabs(a - b) / fmax(fmax(fabs(a), fabs(b)), floor);
}

/* Check grad against central differences of the objective f over alpha_eff. */
static double fd_check(lk_train_backend *b, const double *alpha, const double *grad, size_t n,
                       const char *what) {
    double *a = malloc(n * sizeof(double)), eps = 1e-5, scale = 0, worst = 0;
    memcpy(a, alpha, n * sizeof(double));
    for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(grad[i]));
    lk_err err;
    for (size_t i = 0; i < n; i++) {
        double lp, lm;
        a[i] = alpha[i] + eps;
        CHECK(b->loss_grad(b->ctx, a, &lp, NULL, &err) == 0);
        a[i] = alpha[i] - eps;
        CHECK(b->loss_grad(b->ctx, a, &lm, NULL, &err) == 0);
        a[i] = alpha[i];
        double fd = (lp - lm) / (2 * eps), e = rel_err(grad[i], fd, 1e-3 * scale);
        if (e > worst) worst = e;
        CHECKF(e < 1e-3, "%s: alpha[%zu] analytic %.9g, finite difference %.9g", what, i, grad[i], fd);
    }
    printf("%s: %zu entries, max |grad| %.3g, worst relative error %.2e\n", what, n, scale, worst);
    free(a);
    return worst;
}

static void test_gradient(int bias) {
    lk_model m;
    tiny_model(&m, bias);
    lk_train_backend b;
    lk_err err;
    /* sink 2, recent 3: keys 0-1 sink, p-2..p recent, the rest middle;
     * context 14, answer 8: answer keys are middle keys of rows 3 positions on */
    CHECK(lk_train_cpu_new(&b, &m, 2, 3, &err) == 0);
    int tokens[22];
    for (int i = 0; i < 22; i++) tokens[i] = (int)(urand() * 32);
    CHECK(b.prepare(b.ctx, tokens, 22, 14, &err) == 0);
    size_t n = (size_t)2 * 2 * 6;

    /* alpha = 1: the full model, exactly */
    double *ones = malloc(n * sizeof(double)), loss = -1;
    for (size_t i = 0; i < n; i++) ones[i] = 1.0;
    CHECK(b.loss_grad(b.ctx, ones, &loss, NULL, &err) == 0);
    CHECKF(loss == 0.0, "alpha = 1 gives loss %.3g (expected exactly 0)", loss);

    /* stage 1: distillation + lambda mean|alpha| through lk_train_objective */
    lk_train_opts o;
    lk_train_opts_default(&o, 1);
    o.lambda = 0.06;
    lk_train_state s;
    CHECK(lk_train_state_init(&s, 2, 2, 6, 0, NULL) == 0);
    for (size_t i = 0; i < n; i++) s.alpha[i] = (float)(0.1 + 0.8 * urand());
    lk_train_stats st;
    CHECK(lk_train_objective(&s, &b, &o, &st, &err) == 0);
    CHECKF(st.loss > 1e-6, "stage 1 loss %.3g is not positive", st.loss);
    printf("stage 1 (bias %d): loss %.6g, reg %.6g\n", bias, st.loss, st.reg);
    /* finite differences of the whole objective: distillation + reg (alpha in
     * (0, 1), so |alpha| is smooth there) */
    {
        double *g = malloc(n * sizeof(double)), *a = malloc(n * sizeof(double)), *d = malloc(n * sizeof(double));
        memcpy(g, s.grad, n * sizeof(double));
        for (size_t i = 0; i < n; i++) a[i] = s.alpha[i];
        /* the distillation part against the backend, the regulariser by hand */
        for (size_t i = 0; i < n; i++) d[i] = g[i] - o.lambda / n;
        fd_check(&b, a, d, n, bias ? "stage 1 (bias)" : "stage 1");
        double sum = 0;
        for (size_t i = 0; i < n; i++) sum += a[i];
        CHECK_NEAR(st.reg, o.lambda * sum / n, 1e-12);
        free(g);
        free(a);
        free(d);
    }

    /* stage 2: mask from alpha (ratio 0.5, align 2), gradient w.r.t. alpha*mask
     * passed straight through */
    if (bias) {
        lk_train_opts o2;
        lk_train_opts_default(&o2, 2);
        o2.ratio = 0.5;
        o2.align = 2;
        CHECK(lk_train_objective(&s, &b, &o2, &st, &err) == 0);
        size_t kept = 0, zeros = 0;
        for (size_t i = 0; i < n; i++) {
            kept += s.keep[i];
            zeros += s.alpha_eff[i] == 0.0;
            if (!s.keep[i]) CHECK(s.alpha_eff[i] == 0.0);
        }
        CHECKF(kept > 0 && kept < n, "stage 2 mask keeps %zu of %zu", kept, n);
        CHECK(st.reg == 0.0);
        printf("stage 2: mask keeps %zu of %zu, loss %.6g\n", kept, n, st.loss);
        double *g = malloc(n * sizeof(double));
        memcpy(g, s.grad, n * sizeof(double));
        fd_check(&b, s.alpha_eff, g, n, "stage 2");
        free(g);
    }
    lk_train_state_free(&s);
    free(ones);
    lk_train_backend_free(&b);
    lk_model_free(&m);
}

/* The pruned model of the backend with a binary alpha is the engine's LeanK
 * decode with that mask: context prefilled densely, then answer tokens one at
 * a time (middle keys through the kept channels). Compare the distillation
 * loss computed both ways (the engine in float32). */
static void test_against_engine(void) {
    lk_model m;
    tiny_model(&m, 1);
    int L = 2, KV = 2, hd = 6, D = 24, n = 40, C = 28, A = n - C, sink = 2, recent = 4;
    int tokens[40];
    for (int i = 0; i < n; i++) tokens[i] = (int)(urand() * 32);
    lk_mask mask;
    CHECK(lk_mask_init(&mask, L, KV, hd, 0, NULL) == 0);
    double alpha[24];
    for (int i = 0; i < L * KV * hd; i++) { /* every head keeps 2..4 channels */
        mask.keep[i] = (i % hd) < 2 || urand() < 0.4;
        alpha[i] = mask.keep[i];
    }
    lk_train_backend b;
    lk_err err;
    CHECK(lk_train_cpu_new(&b, &m, sink, recent, &err) == 0);
    CHECK(b.prepare(b.ctx, tokens, n, C, &err) == 0);
    double loss = 0;
    CHECK(b.loss_grad(b.ctx, alpha, &loss, NULL, &err) == 0);

    lk_state full, pr;
    CHECK(lk_state_build(&full, &m, n, n, NULL, 0, 0, &err) == 0);
    CHECK(lk_state_build(&pr, &m, C, n, &mask, sink, recent, &err) == 0);
    CHECK(lk_forward(&m, &full, tokens, n, NULL, &err) == 0);
    CHECK(lk_forward(&m, &pr, tokens, C, NULL, &err) == 0);
    double sum = 0;
    for (int i = 0; i < A; i++) {
        CHECK(lk_forward(&m, &pr, tokens + C + i, 1, NULL, &err) == 0);
        for (int k = 0; k < D; k++) {
            double d = (double)pr.xb[k] - full.xb[(size_t)(C + i) * D + k];
            sum += d * d;
        }
    }
    double ref = sum / ((double)A * D);
    printf("binary alpha: backend loss %.7g, engine (LeanK cache) %.7g\n", loss, ref);
    CHECKF(loss > 1e-4 && fabs(loss - ref) <= 1e-3 * ref, "backend %.9g vs engine %.9g", loss, ref);
    lk_state_free(&full);
    lk_state_free(&pr);
    lk_mask_free(&mask);
    lk_train_backend_free(&b);
    lk_model_free(&m);
}

static void test_schedule_adam(void) {
    /* lr multiplier: n = 10, warm-up over 2 steps, decay over the last 2 */
    CHECK_NEAR(lk_train_lr_mult(0, 10), 0.5, 1e-12);
    CHECK_NEAR(lk_train_lr_mult(1, 10), 1.0, 1e-12);
    CHECK_NEAR(lk_train_lr_mult(5, 10), 1.0, 1e-12);
    CHECK_NEAR(lk_train_lr_mult(9, 10), 0.5, 1e-12);
    CHECK_NEAR(lk_train_lr_mult(0, 100), 0.1, 1e-12); /* floor 0.1 */
    CHECK_NEAR(lk_train_lr_mult(99, 100), 0.1, 1e-12);
    CHECK_NEAR(lk_train_lr_mult(10, 100), 0.55, 1e-12);

    /* one AdamW step on a backend with a known gradient: torch's first step
     * moves every parameter by lr * sign(g) (bias-corrected m/sqrt(v) = ±1) */
    lk_model m;
    tiny_model(&m, 0);
    lk_train_backend b;
    lk_err err;
    CHECK(lk_train_cpu_new(&b, &m, 1, 2, &err) == 0);
    int tokens[12] = {1, 5, 9, 3, 7, 2, 8, 4, 6, 11, 13, 17};
    CHECK(b.prepare(b.ctx, tokens, 12, 8, &err) == 0);
    lk_train_opts o;
    lk_train_opts_default(&o, 1);
    o.steps = 10;
    o.lr = 0.01;
    lk_train_state s;
    CHECK(lk_train_state_init(&s, 2, 2, 6, 0, NULL) == 0);
    lk_train_stats st;
    CHECK(lk_train_step(&s, &b, &o, &st, &err) == 0);
    CHECK_NEAR(st.lr, 0.005, 1e-15);
    for (size_t i = 0; i < s.n; i++) /* alpha = 1, lambda > 0: gradient positive everywhere */
        CHECK_NEAR(s.alpha[i], 1.0 - 0.005, 2e-6);
    CHECK(s.step == 1);
    lk_train_state_free(&s);
    lk_train_backend_free(&b);
    lk_model_free(&m);
}

static void test_config(void) {
    char path[] = "/tmp/leank-test-train-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    const char *y = "model: test\nsink: 4\nrecent: 16\nseed: 7\ncheckpoint_every: 5\n"
                    "stage1: {lr: 0.05, lambda: 0.1, steps: 50}\n"
                    "stage2:\n  lr: 0.03\n  ratio: 0.5\n  align: 2\n  steps: 20\n"
                    "adam: {beta1: 0.8}\n";
    CHECK(write(fd, y, strlen(y)) == (ssize_t)strlen(y));
    close(fd);
    lk_train_opts o;
    lk_err err;
    lk_train_opts_default(&o, 1);
    CHECK(lk_train_config_load(&o, path, &err) == 0);
    CHECK(o.sink == 4 && o.recent == 16 && o.seed == 7 && o.checkpoint_every == 5);
    CHECK(o.lr == 0.05 && o.lambda == 0.1 && o.steps == 50 && o.beta1 == 0.8);
    CHECK(o.ratio == 0.7); /* stage 2 section not applied in stage 1 */
    lk_train_opts_default(&o, 2);
    CHECK(lk_train_config_load(&o, path, &err) == 0);
    CHECK(o.lr == 0.03 && o.ratio == 0.5 && o.align == 2 && o.steps == 20 && o.lambda == 0.0);
    /* unknown key and bad value: refused, naming the line */
    FILE *f = fopen(path, "w");
    fputs("sink: 4\nstage1:\n  lr: 0.05\n  lamda: 0.1\n", f);
    fclose(f);
    lk_train_opts_default(&o, 1);
    CHECK(lk_train_config_load(&o, path, &err) == LK_EINPUT);
    CHECKF(strstr(err.msg, ":4:") && strstr(err.msg, "lamda"), "message: %s", err.msg);
    f = fopen(path, "w");
    fputs("recent: -3\n", f);
    fclose(f);
    CHECK(lk_train_config_load(&o, path, &err) == LK_EINPUT);
    CHECKF(strstr(err.msg, "recent"), "message: %s", err.msg);
    unlink(path);
}

/* a backend whose loss is NaN (as with NaN weights), or finite with a NaN gradient */
static int nan_loss(void *ctx, const double *alpha, double *loss, double *grad, lk_err *err) {
    int grad_only = *(const int *)ctx;
    *loss = grad_only ? 1.0 : NAN;
    for (int i = 0; i < 2 * 1 * 4; i++) grad[i] = grad_only && i == 3 ? NAN : 0.0;
    return 0;
}

static void test_non_finite(void) {
    for (int grad_only = 0; grad_only < 2; grad_only++) {
        lk_train_backend b = {.name = "nan", .ctx = &grad_only, .n_layers = 2, .n_kv_heads = 1, .head_dim = 4,
                              .loss_grad = nan_loss};
        lk_train_state s;
        lk_train_opts o;
        lk_train_opts_default(&o, 1);
        CHECK(lk_train_state_init(&s, 2, 1, 4, 0, NULL) == 0);
        lk_train_stats st;
        lk_err err = {0};
        CHECK(lk_train_step(&s, &b, &o, &st, &err) == LK_EINPUT);
        CHECKF(strstr(err.msg, "step 1: the loss is") != NULL, "%s", err.msg);
        CHECK(s.step == 0);
        for (size_t i = 0; i < s.n; i++) CHECK(isfinite(s.alpha[i])); /* alpha untouched */
        lk_train_state_free(&s);
    }
}

#define MINI "data/models/leank-mini"
#define MINI_SAMPLES "tests/fuzz/samples/seed-train.smp" /* made with leank-mini's tokenizer */

/* The backend for a model directory: cpu loads the host model; its
 * fingerprint is the engine's (a cuda run records lk_engine_fingerprint), so
 * files of one device are used on the other; cuda without a GPU: LK_EDEVICE. */
static void test_backend_open(void) {
    lk_err err = {0};
    lk_model m;
    if (lk_model_load(&m, MINI, &err)) {
        T_SKIP_PART("backend_open needs %s (run from the top of the tree): %s", MINI, err.msg);
        return;
    }
    lk_engine *e;
    CHECKF(lk_engine_open(&e, MINI, &(lk_engine_opts){.device = LK_DEVICE_CPU}, &err) == 0, "%s", err.msg);
    lk_train_backend b;
    uint64_t fp = 0;
    int vocab = 0;
    CHECKF(lk_train_backend_open(&b, MINI, LK_DEVICE_CPU, 4, 8, &fp, &vocab, &err) == 0, "%s", err.msg);
    CHECK(!strcmp(b.name, "cpu") && b.n_layers == m.cfg.n_layers && b.n_kv_heads == m.cfg.n_kv_heads &&
          b.head_dim == m.cfg.head_dim && vocab == m.cfg.vocab_size);
    CHECKF(fp == lk_model_fingerprint(&m) && fp == lk_engine_fingerprint(e), "%016llx %016llx %016llx",
           (unsigned long long)fp, (unsigned long long)lk_model_fingerprint(&m),
           (unsigned long long)lk_engine_fingerprint(e));
    /* it runs: alpha = 1 is the full model (loss exactly 0) */
    int tokens[24];
    for (int i = 0; i < 24; i++) tokens[i] = (i * 37 + 5) % vocab;
    size_t n = (size_t)b.n_layers * b.n_kv_heads * b.head_dim;
    double *ones = malloc(n * sizeof(double)), loss = -1;
    for (size_t i = 0; i < n; i++) ones[i] = 1.0;
    CHECK(b.prepare(b.ctx, tokens, 24, 16, &err) == 0);
    CHECK(b.loss_grad(b.ctx, ones, &loss, NULL, &err) == 0 && loss == 0.0);
    free(ones);
    lk_train_backend_free(&b);
    if (!lk_cuda_available()) {
        /* auto is the cpu; cuda is refused, saying why (no CUDA in the build, or no GPU) */
        CHECKF(lk_train_backend_open(&b, MINI, LK_DEVICE_AUTO, 4, 8, &fp, NULL, &err) == 0, "%s", err.msg);
        CHECK(!strcmp(b.name, "cpu"));
        lk_train_backend_free(&b);
        CHECK(lk_train_backend_open(&b, MINI, LK_DEVICE_CUDA, 4, 8, NULL, NULL, &err) == LK_EDEVICE);
        CHECKF(strstr(err.msg, "no GPU") || strstr(err.msg, "no CUDA"), "%s", err.msg);
        CHECK(b.ctx == NULL);
        lk_train_backend_free(&b);
    } else {
        T_SKIP_PART("a GPU is visible: cuda refusal not checked (tests/gpu/gpu_train_open.c checks cuda)");
    }
    lk_engine_free(e);
    lk_model_free(&m);
}

typedef struct {
    int stepped, resumed;
    long stop_at; /* raise the stop flag once this step is done (0: never) */
    volatile sig_atomic_t *stop;
} run_seen;

static void on_progress(void *ctx, const lk_train_progress *p) {
    run_seen *r = ctx;
    if (p->event == LK_TRAIN_RESUMED) r->resumed++;
    if (p->event != LK_TRAIN_STEPPED) return;
    r->stepped++;
    if (!(p->stats && p->length > p->context && p->context > 0 && p->step >= 1 && p->steps == 5)) r->stepped = -1000;
    if (r->stop_at && p->step == r->stop_at) *r->stop = 1;
}

/* The loop from the library: 5 steps in one go; the same stopped by the flag
 * after step 2 (LK_EINTR, the checkpoint written) and resumed: the same alpha. */
static void test_run(void) {
    lk_err err = {0};
    lk_tokenizer *tok;
    if (lk_tok_load(&tok, MINI, &err)) {
        T_SKIP_PART("lk_train_run needs %s: %s", MINI, err.msg);
        return;
    }
    uint64_t tok_fp = lk_tok_fingerprint(tok);
    lk_tok_free(tok);
    lk_train_backend b;
    uint64_t mfp;
    int vocab;
    CHECKF(lk_train_backend_open(&b, MINI, LK_DEVICE_CPU, 4, 16, &mfp, &vocab, &err) == 0, "%s", err.msg);
    lk_train_opts o;
    lk_train_opts_default(&o, 1);
    o.steps = 5;
    o.sink = 4;
    o.recent = 16;
    o.shuffle = 2;
    o.lambda = 0.5;
    o.checkpoint_every = 0;
    char dir[] = "/tmp/leank-test-run-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char ckpt[64], log[64];
    snprintf(ckpt, sizeof ckpt, "%s/a.ckpt", dir);
    snprintf(log, sizeof log, "%s/a.tsv", dir);
    volatile sig_atomic_t stop = 0;
    run_seen seen = {0};
    lk_train_run_params p = {.opts = &o, .backend = &b, .samples = MINI_SAMPLES, .tok_fp = tok_fp, .vocab = vocab,
                             .model_fp = mfp, .stop = &stop, .progress = on_progress, .progress_ctx = &seen};
    lk_train_state s1, s2;
    CHECK(lk_train_state_init(&s1, b.n_layers, b.n_kv_heads, b.head_dim, o.seed, NULL) == 0);
    p.state = &s1;
    CHECKF(lk_train_run(&p, &err) == 0, "%s", err.msg);
    CHECK(s1.step == 5 && seen.stepped == 5 && seen.resumed == 0);
    int moved = 0;
    for (size_t i = 0; i < s1.n; i++) moved |= s1.alpha[i] != 1.0f;
    CHECK(moved);

    /* stopped by the flag after step 2: LK_EINTR, a checkpoint, the log kept */
    CHECK(lk_train_state_init(&s2, b.n_layers, b.n_kv_heads, b.head_dim, o.seed, NULL) == 0);
    seen = (run_seen){.stop_at = 2, .stop = &stop};
    p.state = &s2;
    p.checkpoint = ckpt;
    p.log = log;
    CHECK(lk_train_run(&p, &err) == LK_EINTR);
    CHECKF(strstr(err.msg, "interrupted at step 2/5; checkpoint written to ") != NULL, "%s", err.msg);
    CHECK(s2.step == 2 && seen.stepped == 2 && access(ckpt, F_OK) == 0 && access(log, F_OK) == 0);
    /* resumed (a fresh state, as a new process would have) */
    lk_train_state_free(&s2);
    CHECK(lk_train_state_init(&s2, b.n_layers, b.n_kv_heads, b.head_dim, o.seed, NULL) == 0);
    stop = 0;
    seen = (run_seen){0};
    p.resume = 1;
    CHECKF(lk_train_run(&p, &err) == 0, "%s", err.msg);
    CHECK(s2.step == 5 && seen.stepped == 3 && seen.resumed == 1);
    CHECK(!memcmp(s1.alpha, s2.alpha, s1.n * sizeof(float)));
    FILE *f = fopen(log, "r");
    int lines = 0;
    for (int ch; f && (ch = fgetc(f)) != EOF;) lines += ch == '\n';
    if (f) fclose(f);
    CHECK(lines == 6); /* header + 5 steps, the first 2 carried over */

    /* a bad samples path: its error, nothing else */
    lk_train_state_free(&s2);
    CHECK(lk_train_state_init(&s2, b.n_layers, b.n_kv_heads, b.head_dim, o.seed, NULL) == 0);
    p.resume = 0;
    p.log = NULL;
    p.samples = "/nonexistent/x.smp";
    CHECK(lk_train_run(&p, &err) == LK_EIO);
    CHECKF(strstr(err.msg, "/nonexistent/x.smp") != NULL, "%s", err.msg);
    unlink(ckpt);
    unlink(log);
    rmdir(dir);
    lk_train_state_free(&s1);
    lk_train_state_free(&s2);
    lk_train_backend_free(&b);
}

int main(void) {
    test_non_finite();
    test_gradient(1);
    test_gradient(0);
    test_against_engine();
    test_schedule_adam();
    test_config();
    test_backend_open();
    test_run();
    return t_done();
}
