/* test_train.c - leank-train's CPU backend and optimiser.
 *  - gradient check: dL/dalpha of a random tiny model (GQA 2:1, q/k/v bias,
 *    sink/recent windows splitting the keys three ways, answer keys that are
 *    middle keys of later answer rows) against central finite differences,
 *    stage 1 (distillation + lambda mean|alpha|) and stage 2 (straight-through
 *    gradient through alpha*mask);
 *  - alpha = 1 gives exactly the full model (loss 0);
 *  - learning-rate schedule, AdamW against a hand-computed step, YAML config. */
#include <stdint.h>
#include <unistd.h>

#include "t.h"
#include "train.h"
#include "model.h"

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
static float *rnd(size_t n, double mean, double std) {
    float *p = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) p[i] = (float)(mean + std * nrand());
    return p;
}

static void tiny_model(lk_model *m, int bias) {
    memset(m, 0, sizeof *m);
    lk_config *c = &m->cfg;
    lk_config_llama(c, 32, 24, 40, 2, 4, 2, 6);
    c->max_position_embeddings = 256;
    c->attention_bias = bias;
    m->dim = 24;
    m->hidden = 40;
    m->q_dim = 24;
    m->kv_dim = 12;
    int L = 2, D = 24, F = 40, qd = 24, kvd = 12, V = 32;
    lk_weights *w = &m->w;
    w->embed = rnd((size_t)V * D, 0, 1.0);
    w->attn_norm = rnd((size_t)L * D, 1.0, 0.1);
    w->ffn_norm = rnd((size_t)L * D, 1.0, 0.1);
    w->wq = rnd((size_t)L * qd * D, 0, 0.6); /* large q/k: peaked attention */
    w->wk = rnd((size_t)L * kvd * D, 0, 0.6);
    w->wv = rnd((size_t)L * kvd * D, 0, 0.3);
    w->wo = rnd((size_t)L * D * qd, 0, 0.3);
    w->w_gate = rnd((size_t)L * F * D, 0, 0.3);
    w->w_up = rnd((size_t)L * F * D, 0, 0.3);
    w->w_down = rnd((size_t)L * D * F, 0, 0.3);
    w->final_norm = rnd(D, 1.0, 0.1);
    if (bias) {
        w->bq = rnd((size_t)L * qd, 0, 0.2);
        w->bk = rnd((size_t)L * kvd, 0, 0.2);
        w->bv = rnd((size_t)L * kvd, 0, 0.2);
    }
    w->lm_head = w->embed;
}

static void tiny_free(lk_model *m) {
    float *p[] = {m->w.embed, m->w.attn_norm, m->w.ffn_norm, m->w.wq, m->w.wk, m->w.wv, m->w.wo,
                  m->w.w_gate, m->w.w_up, m->w.w_down, m->w.final_norm, m->w.bq, m->w.bk, m->w.bv};
    for (size_t i = 0; i < sizeof p / sizeof *p; i++) free(p[i]);
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
    tiny_free(&m);
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
    tiny_free(&m);
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
    tiny_free(&m);
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

int main(void) {
    test_non_finite();
    test_gradient(1);
    test_gradient(0);
    test_against_engine();
    test_schedule_adam();
    test_config();
    return t_done();
}
