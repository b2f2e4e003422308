/* bench_train.c - `leank-bench train`: the time and device memory of one
 * leank-train step (stage 1: prepare the sample, loss and gradient to alpha,
 * AdamW) at a given context length, on a model directory or a known shape
 * with random weights made on the GPU (--random llama3.1-8b). Each step
 * takes a fresh random sample of C context + A answer tokens; one warm-up
 * step, then N timed ones: min/median/max of the step, and the medians of
 * its parts (context prefill, dense answer rows, pruned answer rows + loss,
 * backward; AdamW is the rest). Peak device memory is what the backend
 * holds (weights, KV pool, scratch, training buffers). The PyTorch peer of
 * the same step is dev/bench/torch_train_step.py. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "engine.h"
#include "model.h"
#include "train.h"

int lk_bench_train(const lk_bench_train_opts *o, lk_err *err) {
    const char *model_dir = o->model, *random = o->random, *dtype = o->dtype ? o->dtype : "bf16";
    int C = o->context, A = o->answer, N = o->steps, sink = o->sink, recent = o->recent, json = o->json;
    uint64_t seed = o->seed;
    lk_device dev = o->device;
    if (N < 1 || C < 1 || A < 1 || !model_dir == !random)
        return lk_seterr(err, LK_EUSAGE, "train: context %d, answer %d, steps %d (expected >= 1), and one of a "
                         "model directory or a shape", C, A, N);
    lk_config cfg;
    lk_engine *e = NULL;
    lk_model m;
    int have_model = 0;
    lk_train_backend b;
    int rc = 0;
    double t0 = lk_now();
    if (dev == LK_DEVICE_CUDA) {
        lk_engine_opts eo = {.device = LK_DEVICE_CUDA, .max_batch = 1, .max_prefill = C, .pool_bytes = 1u << 20};
        if (random) {
            if (lk_bench_shape(&cfg, random))
                return lk_seterr(err, LK_EUSAGE, "train: unknown shape '%s' (expected llama3.1-8b or qwen2.5-1.5b)",
                                 random);
            if ((rc = lk_engine_random(&e, &cfg, dtype, seed, &eo, err))) return rc;
        } else if ((rc = lk_engine_open(&e, model_dir, &eo, err))) {
            return rc;
        }
        cfg = *lk_engine_config(e);
        if ((rc = lk_train_cuda_new(&b, e, 0, sink, recent, err))) {
            lk_engine_free(e);
            return rc;
        }
    } else {
        if ((rc = lk_model_load(&m, model_dir, err))) return rc;
        have_model = 1;
        cfg = m.cfg;
        if ((rc = lk_train_cpu_new(&b, &m, sink, recent, err))) {
            lk_model_free(&m);
            return rc;
        }
    }
    double load_s = lk_now() - t0;
    lk_train_opts to;
    lk_train_opts_default(&to, 1);
    to.sink = sink;
    to.recent = recent;
    to.steps = N + 1;
    lk_train_state st;
    memset(&st, 0, sizeof st);
    int n = C + A;
    int *tok = lk_alloc((size_t)n, sizeof(int), "the samples", err);
    double *step = lk_zalloc((size_t)N, sizeof(double), "the step times", err), *part[4] = {0};
    for (int k = 0; k < 4; k++) part[k] = lk_zalloc((size_t)N, sizeof(double), "the step times", err);
    if (!tok || !step || !part[0] || !part[1] || !part[2] || !part[3]) {
        rc = LK_ENOMEM;
        goto out;
    }
    if ((rc = lk_train_state_init(&st, cfg.n_layers, cfg.n_kv_heads, cfg.head_dim, seed, err))) goto out;
    uint64_t r = seed * 0x9e3779b97f4a7c15ULL + 1;
    double loss0 = 0, loss1 = 0;
    for (int s = 0; s <= N; s++) {
        for (int i = 0; i < n; i++) { /* xorshift64*: fresh random tokens */
            r ^= r >> 12, r ^= r << 25, r ^= r >> 27;
            tok[i] = (int)((r * 0x2545F4914F6CDD1DULL >> 33) % (uint64_t)cfg.vocab_size);
        }
        lk_train_stats ts;
        double a = lk_now();
        if ((rc = b.prepare(b.ctx, tok, n, C, err)) || (rc = lk_train_step(&st, &b, &to, &ts, err))) goto out;
        double dt = lk_now() - a;
        if (s == 0) {
            loss0 = ts.loss;
            continue;
        }
        loss1 = ts.loss;
        step[s - 1] = dt;
        double tt[4] = {0, 0, 0, 0};
        if (b.times) b.times(b.ctx, tt);
        for (int k = 0; k < 4; k++) part[k][s - 1] = tt[k];
    }
    size_t peak = b.device_bytes ? b.device_bytes(b.ctx) : 0;
    double smin, smed, smax, pm[4], lo, hi;
    lk_bench_spread(step, N, &smin, &smed, &smax);
    for (int k = 0; k < 4; k++) lk_bench_spread(part[k], N, &lo, &pm[k], &hi);
    const char *devname = e ? lk_engine_device_name(e) : "CPU";
    const char *what = random ? random : model_dir;
    if (json) {
        json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:i, s:i, s:i, s:i, s:i, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, "
                              "s:I, s:f, s:f}",
                              "bench", "train", "device", devname, "model", what, "dtype",
                              e ? lk_engine_cache_dtype(e) : "f32", "context", C, "answer", A, "sink", sink,
                              "recent", recent, "steps", N, "load_s", load_s, "step_min_s", smin, "step_median_s",
                              smed, "step_max_s", smax, "prefill_s", pm[0], "dense_rows_s", pm[1], "pruned_rows_s",
                              pm[2], "backward_s", pm[3], "peak_bytes", (json_int_t)peak, "loss_first", loss0,
                              "loss_last", loss1);
        char *s = json_dumps(j, JSON_COMPACT);
        printf("%s\n", s);
        free(s);
        json_decref(j);
    } else {
        char pb[32];
        printf("leank-bench train: %s, %s (%s), context %d + %d answer tokens, sink %d, recent %d; %d steps after "
               "1 warm-up (load %.1f s)\n",
               devname, what, e ? lk_engine_cache_dtype(e) : "f32", C, A, sink, recent, N, load_s);
        printf("%-28s %10s %10s %10s\n", "", "min", "median", "max");
        printf("%-28s %10.3f %10.3f %10.3f\n", "step (s)", smin, smed, smax);
        if (b.times) {
            printf("%-28s %21.3f\n", "  context prefill (s)", pm[0]);
            printf("%-28s %21.3f\n", "  dense answer rows (s)", pm[1]);
            printf("%-28s %21.3f\n", "  pruned answer rows (s)", pm[2]);
            printf("%-28s %21.3f\n", "  backward (s)", pm[3]);
            printf("%-28s %21.3f\n", "  AdamW and the rest (s)", smed - pm[0] - pm[1] - pm[2] - pm[3]);
        }
        if (peak) printf("%-28s %21s\n", "peak device memory", lk_human_bytes(pb, sizeof pb, (double)peak));
        printf("%-28s %10.4g -> %.4g\n", "loss (first, last step)", loss0, loss1);
    }
out:
    free(tok);
    free(step);
    for (int k = 0; k < 4; k++) free(part[k]);
    lk_train_state_free(&st);
    lk_train_backend_free(&b);
    if (e) lk_engine_free(e);
    if (have_model) lk_model_free(&m);
    return rc;
}
