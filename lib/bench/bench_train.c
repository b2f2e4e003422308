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
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "engine.h"
#include "model.h"
#include "train.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: leank-bench train (-m MODEL_DIR | --random SHAPE) [-c C] [-a A] [OPTION]...\n"
            "Time and memory of leank-train steps (stage 1) on random samples of C context and A\n"
            "answer tokens: one warm-up step, then N timed.\n\n"
            "  -m, --model DIR      model directory\n"
            "      --random SHAPE   random weights made on the GPU: llama3.1-8b, qwen2.5-1.5b\n"
            "      --dtype T        weights of --random: bf16 (default) or f32\n"
            "  -c, --context C      context tokens (default 32768)\n"
            "  -a, --answer A       answer tokens (default 32)\n"
            "  -n, --steps N        timed steps (default 5)\n"
            "      --sink N         full-key sink (default 128)\n"
            "      --recent N       full-key recent window (default 1024)\n"
            "      --device D       cuda (default) or cpu (a model directory only)\n"
            "      --seed N         sample and weight seed (default 1)\n"
            "      --json           one JSON object\n"
            "  -h, --help           show this help\n");
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

int lk_bench_train(int argc, char **argv) {
    enum { O_RANDOM = 256, O_DTYPE, O_SINK, O_RECENT, O_DEVICE, O_SEED, O_JSON };
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'},   {"random", required_argument, 0, O_RANDOM},
        {"dtype", required_argument, 0, O_DTYPE}, {"context", required_argument, 0, 'c'},
        {"answer", required_argument, 0, 'a'},  {"steps", required_argument, 0, 'n'},
        {"sink", required_argument, 0, O_SINK}, {"recent", required_argument, 0, O_RECENT},
        {"device", required_argument, 0, O_DEVICE}, {"seed", required_argument, 0, O_SEED},
        {"json", no_argument, 0, O_JSON},       {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    const char *model_dir = NULL, *random = NULL, *dtype = "bf16";
    int C = 32768, A = 32, N = 5, sink = 128, recent = 1024, json = 0, c;
    uint64_t seed = 1;
    lk_device dev = LK_DEVICE_CUDA;
    optind = 1;
    while ((c = getopt_long(argc, argv, "m:c:a:n:h", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model_dir = optarg; break;
        case O_RANDOM: random = optarg; break;
        case O_DTYPE: dtype = optarg; break;
        case 'c': C = (int)lk_parse_long("--context", optarg, 1, 1 << 24); break;
        case 'a': A = (int)lk_parse_long("--answer", optarg, 1, 1 << 16); break;
        case 'n': N = (int)lk_parse_long("--steps", optarg, 1, 100000); break;
        case O_SINK: sink = (int)lk_parse_long("--sink", optarg, 0, 1 << 30); break;
        case O_RECENT: recent = (int)lk_parse_long("--recent", optarg, 1, 1 << 30); break;
        case O_DEVICE: {
            int d = lk_device_parse(optarg);
            if (d < 0) lk_die(LK_EUSAGE, "train: --device '%s' (expected cuda, cpu or auto)", optarg);
            dev = d == LK_DEVICE_AUTO ? (lk_cuda_available() ? LK_DEVICE_CUDA : LK_DEVICE_CPU) : (lk_device)d;
            break;
        }
        case O_SEED: seed = (uint64_t)lk_parse_long("--seed", optarg, 0, INT64_MAX); break;
        case O_JSON: json = 1; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return LK_EUSAGE;
        }
    }
    if (optind < argc) lk_die(LK_EUSAGE, "train: unexpected argument '%s' (see --help)", argv[optind]);
    if (!model_dir == !random) lk_die(LK_EUSAGE, "train: give one of -m MODEL_DIR or --random SHAPE (see --help)");
    if (random && dev == LK_DEVICE_CPU) lk_die(LK_EUSAGE, "train: --random makes its weights on the GPU (--device cuda)");
    if (strcmp(dtype, "bf16") && strcmp(dtype, "f32")) lk_die(LK_EUSAGE, "train: --dtype '%s' (expected bf16 or f32)", dtype);

    lk_err err = {0};
    lk_config cfg;
    lk_engine *e = NULL;
    lk_model m;
    int have_model = 0;
    lk_train_backend b;
    double t0 = lk_now();
    if (dev == LK_DEVICE_CUDA) {
        lk_engine_opts eo = {.device = LK_DEVICE_CUDA, .max_batch = 1, .max_prefill = C, .pool_bytes = 1u << 20};
        if (random) {
            if (lk_bench_shape(&cfg, random))
                lk_die(LK_EUSAGE, "train: unknown shape '%s' (expected llama3.1-8b or qwen2.5-1.5b)", random);
            if (lk_engine_random(&e, &cfg, dtype, seed, &eo, &err)) lk_fail(&err);
        } else if (lk_engine_open(&e, model_dir, &eo, &err)) {
            lk_fail(&err);
        }
        cfg = *lk_engine_config(e);
        if (lk_train_cuda_new(&b, e, 0, sink, recent, &err)) lk_fail(&err);
    } else {
        if (lk_model_load(&m, model_dir, &err)) lk_fail(&err);
        have_model = 1;
        cfg = m.cfg;
        if (lk_train_cpu_new(&b, &m, sink, recent, &err)) lk_fail(&err);
    }
    double load_s = lk_now() - t0;
    lk_train_opts o;
    lk_train_opts_default(&o, 1);
    o.sink = sink;
    o.recent = recent;
    o.steps = N + 1;
    lk_train_state st;
    lk_train_state_init(&st, cfg.n_layers, cfg.n_kv_heads, cfg.head_dim, seed);
    int n = C + A;
    int *tok = lk_malloc((size_t)n * sizeof(int));
    double *step = lk_calloc(N, sizeof(double)), *part[4];
    for (int k = 0; k < 4; k++) part[k] = lk_calloc(N, sizeof(double));
    uint64_t r = seed * 0x9e3779b97f4a7c15ULL + 1;
    double loss0 = 0, loss1 = 0;
    for (int s = 0; s <= N; s++) {
        for (int i = 0; i < n; i++) { /* xorshift64*: fresh random tokens */
            r ^= r >> 12, r ^= r << 25, r ^= r >> 27;
            tok[i] = (int)((r * 0x2545F4914F6CDD1DULL >> 33) % (uint64_t)cfg.vocab_size);
        }
        lk_train_stats ts;
        double a = lk_now();
        if (b.prepare(b.ctx, tok, n, C, &err) || lk_train_step(&st, &b, &o, &ts, &err)) lk_fail(&err);
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
    double smin = step[0], smax = step[0];
    for (int i = 0; i < N; i++) smin = step[i] < smin ? step[i] : smin, smax = step[i] > smax ? step[i] : smax;
    double smed = median(step, N), pm[4];
    for (int k = 0; k < 4; k++) pm[k] = median(part[k], N);
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
    free(tok);
    free(step);
    for (int k = 0; k < 4; k++) free(part[k]);
    lk_train_state_free(&st);
    lk_train_backend_free(&b);
    if (e) lk_engine_free(e);
    if (have_model) lk_model_free(&m);
    return 0;
}
