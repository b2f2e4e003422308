/* bench_e2e.c - `leank-bench e2e`: end-to-end generation speed and memory of
 * the engine: B prompts of P random tokens prefilled, then G - 1 batched
 * decode steps (greedy, sampled on the device), dense or with a LeanK plan.
 * The model is a directory or a known shape with random weights made on the
 * GPU (--random llama3.1-8b: no 16 GB file). Prints prefill time, decode
 * ms/step (min/median/max), tokens/s, the step's byte floor (weights + KV
 * read once over the copy bandwidth), peak device memory and KV bytes. */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "engine.h"
#include "plan.h"

/* Shapes of models people use, for --random (bench.h). */
int lk_bench_shape(lk_config *c, const char *name) {
    if (!strcmp(name, "llama3.1-8b")) {
        lk_config_llama(c, 128256, 4096, 14336, 32, 32, 8, 128);
        c->rope.type = LK_ROPE_LLAMA3;
        c->rope.theta = 500000;
        c->rope.factor = 8;
        c->rope.low_freq_factor = 1;
        c->rope.high_freq_factor = 4;
        c->rope.original_max_position_embeddings = 8192;
        c->max_position_embeddings = 131072;
    } else if (!strcmp(name, "qwen2.5-1.5b")) {
        lk_config_llama(c, 151936, 1536, 8960, 28, 12, 2, 128);
        c->attention_bias = 1;
        c->rope.theta = 1000000;
        c->rms_eps = 1e-6;
        c->tie_word_embeddings = 1;
        c->max_position_embeddings = 32768;
    } else {
        return -1;
    }
    snprintf(c->arch, sizeof c->arch, "%s", "LlamaForCausalLM");
    snprintf(c->model_type, sizeof c->model_type, "%s", "llama");
    return 0;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: leank-bench e2e (-m MODEL_DIR | --random SHAPE) [-b B | --max-batch] -p P -g G [OPTION]...\n"
            "End-to-end generation on the GPU: B random prompts of P tokens prefilled, then G - 1\n"
            "batched greedy decode steps; dense, or with the LeanK cache of --plan.\n\n"
            "  -m, --model DIR      model directory\n"
            "      --random SHAPE   random weights made on the GPU: llama3.1-8b, qwen2.5-1.5b\n"
            "      --dtype T        weights of --random: bf16 (default) or f32\n"
            "      --plan FILE      LeanK plan or mask (windows: the plan's, or --sink/--recent)\n"
            "      --sink N, --recent N  override the plan's windows\n"
            "  -b, --batch B        sequences (default 1)\n"
            "      --max-batch      as many sequences as fit (the engine's count before allocating)\n"
            "  -p, --prompt-len P   prompt tokens (default 4096)\n"
            "  -g, --gen G          tokens generated per sequence (default 128)\n"
            "      --device D       cuda (default), cpu\n"
            "      --bandwidth GBS  copy bandwidth for the floor, GB/s (default 4260, the lent H200's)\n"
            "      --seed N         prompt and weight seed (default 1)\n"
            "      --json           one JSON object\n"
            "  -h, --help           show this help\n");
}

int lk_bench_e2e(int argc, char **argv) {
    enum { O_RANDOM = 256, O_DTYPE, O_PLAN, O_SINK, O_RECENT, O_MAXB, O_DEVICE, O_BW, O_SEED, O_JSON };
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'},   {"random", required_argument, 0, O_RANDOM},
        {"dtype", required_argument, 0, O_DTYPE}, {"plan", required_argument, 0, O_PLAN},
        {"mask", required_argument, 0, O_PLAN}, {"sink", required_argument, 0, O_SINK},
        {"recent", required_argument, 0, O_RECENT}, {"batch", required_argument, 0, 'b'},
        {"max-batch", no_argument, 0, O_MAXB},  {"prompt-len", required_argument, 0, 'p'},
        {"gen", required_argument, 0, 'g'},     {"device", required_argument, 0, O_DEVICE},
        {"bandwidth", required_argument, 0, O_BW}, {"seed", required_argument, 0, O_SEED},
        {"json", no_argument, 0, O_JSON},       {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    const char *model_dir = NULL, *random = NULL, *dtype = "bf16", *plan_path = NULL;
    int B = 1, P = 4096, G = 128, max_batch = 0, json = 0, sink = -1, recent = -1, c;
    double bw = 4260;
    uint64_t seed = 1;
    lk_engine_opts eo = {.device = LK_DEVICE_CUDA, .max_batch = 0};
    optind = 1;
    while ((c = getopt_long(argc, argv, "m:b:p:g:h", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model_dir = optarg; break;
        case O_RANDOM: random = optarg; break;
        case O_DTYPE: dtype = optarg; break;
        case O_PLAN: plan_path = optarg; break;
        case O_SINK: sink = (int)lk_parse_long("--sink", optarg, 0, 1 << 30); break;
        case O_RECENT: recent = (int)lk_parse_long("--recent", optarg, 1, 1 << 30); break;
        case 'b': B = (int)lk_parse_long("--batch", optarg, 1, 1 << 20); break;
        case O_MAXB: max_batch = 1; break;
        case 'p': P = (int)lk_parse_long("--prompt-len", optarg, 1, 1 << 24); break;
        case 'g': G = (int)lk_parse_long("--gen", optarg, 1, 1 << 20); break;
        case O_DEVICE: {
            int d = lk_device_parse(optarg);
            if (d < 0) lk_die(LK_EUSAGE, "e2e: --device '%s' (expected cuda, cpu or auto)", optarg);
            eo.device = (lk_device)d;
            break;
        }
        case O_BW: bw = lk_parse_double("--bandwidth", optarg, 1, 1e6); break;
        case O_SEED: seed = (uint64_t)lk_parse_long("--seed", optarg, 0, INT64_MAX); break;
        case O_JSON: json = 1; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return LK_EUSAGE;
        }
    }
    if (optind < argc) lk_die(LK_EUSAGE, "e2e: unexpected argument '%s' (see --help)", argv[optind]);
    if (!model_dir == !random) lk_die(LK_EUSAGE, "e2e: give one of -m MODEL_DIR or --random SHAPE (see --help)");
    if ((sink >= 0 || recent >= 0) && !plan_path) lk_die(LK_EUSAGE, "e2e: --sink/--recent need --plan");
    eo.max_prefill = P; /* scratch for this prompt length, not the model's whole context */
    lk_err err = {0};
    lk_engine *e;
    lk_config cfg;
    double t0 = lk_now();
    if (random) {
        if (lk_bench_shape(&cfg, random)) lk_die(LK_EUSAGE, "e2e: unknown shape '%s' (expected llama3.1-8b or qwen2.5-1.5b)", random);
        if (strcmp(dtype, "bf16") && strcmp(dtype, "f32")) lk_die(LK_EUSAGE, "e2e: --dtype '%s' (expected bf16 or f32)", dtype);
        if (lk_engine_random(&e, &cfg, dtype, seed, &eo, &err)) lk_fail(&err);
    } else if (lk_engine_open(&e, model_dir, &eo, &err)) {
        lk_fail(&err);
    }
    double load_s = lk_now() - t0;
    cfg = *lk_engine_config(e);
    lk_plan plan;
    int has_plan = 0;
    if (plan_path) {
        if (lk_plan_open(&plan, plan_path, &cfg, random ? random : model_dir, sink, recent, lk_engine_cache_dtype(e),
                         NULL, &err))
            lk_fail(&err);
        has_plan = 1;
    }
    const lk_plan *pp = has_plan ? &plan : NULL;
    int max_len = P + G - 1; /* the last sampled token is not decoded */
    int fit = lk_engine_max_batch(e, pp, max_len);
    if (max_batch) B = fit;
    if (B < 1) lk_die(LK_ENOMEM, "e2e: not one sequence of %d positions fits (%zu bytes each)", max_len,
                      lk_engine_seq_bytes(e, pp, max_len));
    lk_engine_mem m0;
    lk_engine_memory(e, &m0); /* the pool the largest batch was counted in (leank-pack --gpu-mem predicts it) */
    /* a pool of what the batch needs, so that peak memory is weights + scratch + this batch's KV */
    if (B <= fit && lk_engine_pool_resize(e, (size_t)B * lk_engine_seq_bytes(e, pp, max_len), &err)) lk_fail(&err);

    lk_seq **s = lk_calloc((size_t)B, sizeof *s);
    int *ids = lk_malloc(sizeof(int) * (size_t)(P > B ? P : B));
    for (int b = 0; b < B; b++) {
        lk_seq_opts o = {.plan = pp, .max_len = max_len, .sampling = {.top_p = 1.0f}};
        if (lk_seq_new(e, &s[b], &o, &err)) lk_fail(&err);
    }
    /* prefill: one prompt after another; the first sample waits for them all */
    uint64_t r = seed * 0x9e3779b97f4a7c15ULL + 1;
    t0 = lk_now();
    for (int b = 0; b < B; b++) {
        for (int i = 0; i < P; i++) {
            r ^= r >> 12, r ^= r << 25, r ^= r >> 27;
            ids[i] = (int)((r * 0x2545f4914f6cdd1dULL >> 33) % (uint64_t)cfg.vocab_size);
        }
        if (lk_engine_prefill(e, s[b], ids, P, &err)) lk_fail(&err);
    }
    if (lk_engine_sample(e, s, B, ids, &err)) lk_fail(&err);
    double prefill_s = lk_now() - t0;
    /* decode: G - 1 steps of one token per sequence (the sample syncs each step) */
    double *step = lk_malloc(sizeof(double) * (size_t)(G > 1 ? G - 1 : 1));
    t0 = lk_now();
    for (int t = 0; t < G - 1; t++) {
        double ts = lk_now();
        if (lk_engine_decode(e, s, B, ids, &err) || lk_engine_sample(e, s, B, ids, &err)) lk_fail(&err);
        step[t] = lk_now() - ts;
    }
    double decode_s = lk_now() - t0, total_s = prefill_s + decode_s;
    int ns = G - 1;
    qsort(step, (size_t)(ns ? ns : 1), sizeof *step, cmp_double);
    double med = ns ? step[ns / 2] : 0, mn = ns ? step[0] : 0, mx = ns ? step[ns - 1] : 0;
    /* the floor of a step in the middle of decoding: every weight and the KV of that length read once */
    lk_engine_mem mem;
    lk_engine_memory(e, &mem);
    lk_seq_kv kv;
    int64_t kv_end = 0, kv_dense_end = 0;
    for (int b = 0; b < B; b++) {
        lk_seq_kv_info(s[b], &kv);
        kv_end += kv.bytes;
        kv_dense_end += kv.dense;
    }
    double per_tok_kv = (double)kv_end / B / (max_len > 0 ? max_len : 1);
    double mid_kv = per_tok_kv * B * (P + G / 2.0);
    double floor_s = ((double)mem.weights + mid_kv) / (bw * 1e9);
    const char *dev = lk_engine_device_name(e);
    if (json) {
        json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:i, s:i, s:i, s:i, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, "
                              "s:I, s:I, s:I, s:I, s:I}",
                              "bench", "e2e", "device", dev, "model", random ? random : model_dir, "plan",
                              plan_path ? plan_path : "dense", "batch", B, "max_batch", fit, "prompt", P, "gen", G,
                              "load_s", load_s, "prefill_s", prefill_s, "decode_s", decode_s, "total_s", total_s,
                              "step_ms_min", 1e3 * mn, "step_ms_median", 1e3 * med, "step_ms_max", 1e3 * mx,
                              "decode_tok_s", med > 0 ? B / med : 0.0, "floor_ms", 1e3 * floor_s,
                              "step_over_floor", floor_s > 0 ? med / floor_s : 0.0, "weights_bytes",
                              (json_int_t)mem.weights, "kv_bytes", (json_int_t)kv_end, "kv_dense_bytes",
                              (json_int_t)kv_dense_end, "peak_bytes", (json_int_t)mem.peak, "pool_bytes",
                              (json_int_t)mem.pool);
        json_object_set_new(o, "max_batch_pool_bytes", json_integer((json_int_t)m0.pool));
        json_dumpf(o, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        fputc('\n', stdout);
        json_decref(o);
    } else {
        printf("leank-bench e2e: %s, %s, %s weights, %s cache, %s\n", dev, random ? random : model_dir,
               random ? dtype : "checkpoint", lk_engine_cache_dtype(e), plan_path ? plan_path : "dense");
        printf("batch %d (largest that fits: %d in a KV pool of %.2f GB), prompt %d, generated %d\n", B, fit,
               m0.pool / 1e9, P, G);
        printf("  load            %8.2f s\n", load_s);
        printf("  prefill         %8.2f s   (%.0f tok/s)\n", prefill_s, prefill_s > 0 ? (double)B * P / prefill_s : 0);
        printf("  decode step     %8.2f ms  median (min %.2f, max %.2f); %.0f tok/s\n", 1e3 * med, 1e3 * mn, 1e3 * mx,
               med > 0 ? B / med : 0.0);
        printf("  step floor      %8.2f ms  (weights %.2f GB + KV %.2f GB at %.0f GB/s): step/floor %.2f\n",
               1e3 * floor_s, mem.weights / 1e9, mid_kv / 1e9, bw, floor_s > 0 ? med / floor_s : 0.0);
        printf("  total           %8.2f s\n", total_s);
        char kvp[160];
        printf("  KV at the end   %s\n",
               lk_kv_phrase(kvp, sizeof kvp, (double)kv_end, (double)kv_dense_end, lk_engine_cache_dtype(e)));
        printf("  peak memory     %8.2f GB  (weights %.2f GB, KV pool %.2f GB)\n", mem.peak / 1e9, mem.weights / 1e9,
               mem.pool / 1e9);
    }
    for (int b = 0; b < B; b++) lk_seq_free(s[b]);
    free(s);
    free(ids);
    free(step);
    if (has_plan) lk_plan_free(&plan);
    lk_engine_free(e);
    if (fflush(stdout) || ferror(stdout)) lk_die(LK_EIO, "<stdout>: write error");
    return 0;
}
