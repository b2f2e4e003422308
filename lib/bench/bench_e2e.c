/* bench_e2e.c - `leank-bench e2e`: end-to-end generation speed and memory of
 * the engine: B prompts of P random tokens prefilled, then G - 1 batched
 * decode steps (greedy, sampled on the device), dense or with a LeanK plan.
 * The model is a directory or a known shape with random weights made on the
 * GPU (--random llama3.1-8b: no 16 GB file). Prints prefill time, decode
 * ms/step (min/median/max), tokens/s, the step's byte floor (weights + KV
 * read once over the copy bandwidth), peak device memory and KV bytes. */
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

int lk_bench_e2e(const lk_bench_e2e_opts *o, lk_err *err) {
    const char *model_dir = o->model, *random = o->random, *dtype = o->dtype, *plan_path = o->plan;
    int B = o->batch, P = o->prompt_len, G = o->gen, json = o->json, rc = 0;
    double bw = o->bandwidth;
    uint64_t seed = o->seed;
    lk_engine_opts eo = {.device = o->device, .max_batch = 0};
    eo.max_prefill = P; /* scratch for this prompt length, not the model's whole context */
    lk_engine *e = NULL;
    lk_config cfg;
    lk_plan plan;
    int has_plan = 0;
    lk_seq **s = NULL;
    int *ids = NULL;
    double *step = NULL, *run_t = NULL;
    double t0 = lk_now();
    if (random) {
        if (lk_bench_shape(&cfg, random))
            return lk_seterr(err, LK_EUSAGE, "e2e: unknown shape '%s' (expected llama3.1-8b or qwen2.5-1.5b)", random);
        if (strcmp(dtype, "bf16") && strcmp(dtype, "f32"))
            return lk_seterr(err, LK_EUSAGE, "e2e: --dtype '%s' (expected bf16 or f32)", dtype);
        if ((rc = lk_engine_random(&e, &cfg, dtype, seed, &eo, err))) return rc;
    } else if ((rc = lk_engine_open(&e, model_dir, &eo, err))) {
        return rc;
    }
    double load_s = lk_now() - t0;
    cfg = *lk_engine_config(e);
    if (plan_path) {
        if ((rc = lk_plan_open(&plan, plan_path, &cfg, random ? random : model_dir, o->sink, o->recent,
                               lk_engine_cache_dtype(e), NULL, err)))
            goto out;
        has_plan = 1;
    }
    const lk_plan *pp = has_plan ? &plan : NULL;
    int max_len = P + G - 1; /* the last sampled token is not decoded */
    int fit = lk_engine_max_batch(e, pp, max_len);
    if (o->max_batch) B = fit;
    if (B < 1) {
        rc = lk_seterr(err, LK_ENOMEM, "e2e: not one sequence of %d positions fits (%zu bytes each)", max_len,
                       lk_engine_seq_bytes(e, pp, max_len));
        goto out;
    }
    lk_engine_mem m0;
    lk_engine_memory(e, &m0); /* the pool the largest batch was counted in (leank-pack --gpu-mem predicts it) */
    /* a pool of what the batch needs, so that peak memory is weights + scratch + this batch's KV */
    if (B <= fit && (rc = lk_engine_pool_resize(e, (size_t)B * lk_engine_seq_bytes(e, pp, max_len), err))) goto out;

    int R = o->runs > 0 ? o->runs : 1, S = G > 1 ? G - 1 : 1;
    s = lk_zalloc((size_t)B, sizeof *s, "the sequences", err);
    ids = lk_alloc((size_t)(P > B ? P : B), sizeof(int), "the prompt", err);
    step = lk_alloc((size_t)R * S, sizeof(double), "the step times", err);
    run_t = lk_alloc((size_t)R * 4, sizeof(double), "the run times", err);
    if (!s || !ids || !step || !run_t) {
        rc = LK_ENOMEM;
        goto out;
    }
    /* run 1 is cold (module loads, GEMM tuning, graph capture); runs 2 .. R
     * repeat it warm, as a server would see it (and as dev/bench/hf_e2e.py
     * times HF: after a warm-up run) */
    for (int run = 0; run < R; run++) {
        for (int b = 0; b < B; b++) {
            lk_seq_free(s[b]);
            s[b] = NULL;
        }
        for (int b = 0; b < B; b++) {
            lk_seq_opts so = {.plan = pp, .max_len = max_len, .sampling = {.top_p = 1.0f}};
            if ((rc = lk_seq_new(e, &s[b], &so, err))) goto out;
        }
        /* prefill: one prompt after another; the first sample waits for them all */
        uint64_t r = seed * 0x9e3779b97f4a7c15ULL + 1;
        t0 = lk_now();
        for (int b = 0; b < B; b++) {
            for (int i = 0; i < P; i++) {
                r ^= r >> 12, r ^= r << 25, r ^= r >> 27;
                ids[i] = (int)((r * 0x2545f4914f6cdd1dULL >> 33) % (uint64_t)cfg.vocab_size);
            }
            if ((rc = lk_engine_prefill(e, s[b], ids, P, err))) goto out;
        }
        if ((rc = lk_engine_sample(e, s, B, ids, err))) goto out;
        run_t[2 * run] = lk_now() - t0;
        /* decode: G - 1 steps of one token per sequence (the sample syncs each step) */
        t0 = lk_now();
        for (int t = 0; t < G - 1; t++) {
            double ts = lk_now();
            if ((rc = lk_engine_decode(e, s, B, ids, err)) || (rc = lk_engine_sample(e, s, B, ids, err))) goto out;
            step[(size_t)run * S + t] = lk_now() - ts;
        }
        run_t[2 * run + 1] = lk_now() - t0;
    }
    double prefill_s = run_t[0], decode_s = run_t[1], total_s = prefill_s + decode_s;
    /* warm runs: prefill and total min / median / max; the steps of those runs */
    double wp[3] = {prefill_s, prefill_s, prefill_s}, wt[3] = {total_s, total_s, total_s};
    if (R > 1) {
        double *pv = run_t + 2 * R, *tv = run_t + 3 * R;
        for (int i = 1; i < R; i++) pv[i - 1] = run_t[2 * i], tv[i - 1] = run_t[2 * i] + run_t[2 * i + 1];
        lk_bench_spread(pv, R - 1, &wp[0], &wp[1], &wp[2]);
        lk_bench_spread(tv, R - 1, &wt[0], &wt[1], &wt[2]);
    }
    double med, mn, mx;
    if (R > 1)
        lk_bench_spread(step + S, (R - 1) * (G - 1), &mn, &med, &mx);
    else
        lk_bench_spread(step, G - 1, &mn, &med, &mx);
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
        json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:i, s:i, s:i, s:i, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, "
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
        json_object_set_new(j, "max_batch_pool_bytes", json_integer((json_int_t)m0.pool));
        json_object_set_new(j, "runs", json_integer(R));
        if (R > 1) { /* prefill_s, decode_s, total_s: run 1 (cold); the step figures: the warm runs' */
            json_object_set_new(j, "warm_prefill_s_min", json_real(wp[0]));
            json_object_set_new(j, "warm_prefill_s_median", json_real(wp[1]));
            json_object_set_new(j, "warm_prefill_s_max", json_real(wp[2]));
            json_object_set_new(j, "warm_total_s_min", json_real(wt[0]));
            json_object_set_new(j, "warm_total_s_median", json_real(wt[1]));
            json_object_set_new(j, "warm_total_s_max", json_real(wt[2]));
        }
        json_dumpf(j, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        fputc('\n', stdout);
        json_decref(j);
    } else {
        printf("leank-bench e2e: %s, %s, %s weights, %s cache, %s\n", dev, random ? random : model_dir,
               random ? dtype : "checkpoint", lk_engine_cache_dtype(e), plan_path ? plan_path : "dense");
        printf("batch %d (largest that fits: %d in a KV pool of %.2f GB), prompt %d, generated %d\n", B, fit,
               m0.pool / 1e9, P, G);
        printf("  load            %8.2f s\n", load_s);
        printf("  prefill         %8.2f s   (%.0f tok/s)%s\n", prefill_s, prefill_s > 0 ? (double)B * P / prefill_s : 0,
               R > 1 ? " run 1, cold" : "");
        char warm[32]; /* which runs the warm figures are of */
        if (R == 2) snprintf(warm, sizeof warm, "run 2");
        else snprintf(warm, sizeof warm, "median of runs 2-%d", R);
        if (R > 1)
            printf("  prefill, warm   %8.2f s   %s (min %.2f, max %.2f; %.0f tok/s)\n", wp[1], warm, wp[0], wp[2],
                   wp[1] > 0 ? (double)B * P / wp[1] : 0);
        printf("  decode step     %8.2f ms  median (min %.2f, max %.2f); %.0f tok/s%s\n", 1e3 * med, 1e3 * mn, 1e3 * mx,
               med > 0 ? B / med : 0.0, R > 1 ? "; warm runs" : "");
        printf("  step floor      %8.2f ms  (weights %.2f GB + KV %.2f GB at %.0f GB/s): step/floor %.2f\n",
               1e3 * floor_s, mem.weights / 1e9, mid_kv / 1e9, bw, floor_s > 0 ? med / floor_s : 0.0);
        printf("  total           %8.2f s%s\n", total_s, R > 1 ? "   run 1, cold" : "");
        if (R > 1)
            printf("  total, warm     %8.2f s   %s (min %.2f, max %.2f)\n", wt[1], warm, wt[0], wt[2]);
        char kvp[160];
        printf("  KV at the end   %s\n",
               lk_kv_phrase(kvp, sizeof kvp, (double)kv_end, (double)kv_dense_end, lk_engine_cache_dtype(e)));
        printf("  peak memory     %8.2f GB  (weights %.2f GB, KV pool %.2f GB)\n", mem.peak / 1e9, mem.weights / 1e9,
               mem.pool / 1e9);
    }
    if (fflush(stdout) || ferror(stdout)) rc = lk_seterr(err, LK_EIO, "<stdout>: write error");
out:
    for (int b = 0; s && b < B; b++) lk_seq_free(s[b]);
    free(s);
    free(ids);
    free(step);
    free(run_t);
    if (has_plan) lk_plan_free(&plan);
    lk_engine_free(e);
    return rc;
}
