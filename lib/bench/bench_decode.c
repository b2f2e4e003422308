/* bench_decode.c - leank-bench decode: CPU engine speed.
 *   1. greedy decode of stories260K from BOS (tokens/s of single-token steps);
 *   2. prefill of a long prompt on a random model of the Llama-3 head shape
 *      (head_dim 128, GQA 4:1; dim 1024, 8 heads, 2 kv heads, 4 layers,
 *      vocab 32000, MLP 3584, tied head), built in memory; then a few decode
 *      steps after that prompt. */
#include <cblas.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"
#include "model.h"
#include "sampler.h"
#include "util.h"

typedef struct {
    char name[96];
    long tokens;
    double seconds, cpu; /* wall, and CPU time of the process (all threads) */
} bench_row;

/* CPU time of this process: on a shared machine, the time it did not run is
 * not counted (wall-clock rates there measure the other users too). */
static double cpu_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static uint64_t brng = 0x853c49e6748fea9bULL;
/* n floats base + scale * uniform[-1, 1) into p, a weight of a model built in
 * memory (lk_model_alloc: its own memory, so writable) */
static void rand_floats(const float *p, size_t n, float scale, float base) {
    float *x = (float *)p;
    for (size_t i = 0; i < n; i++) {
        brng ^= brng >> 12;
        brng ^= brng << 25;
        brng ^= brng >> 27;
        float u = (float)((brng * 0x2545f4914f6cdd1dULL) >> 40) / 8388608.0f - 1.0f;
        x[i] = base + scale * u;
    }
}

/* 0, or an error (nothing left to free) */
static int random_llama3_head_model(lk_model *m, lk_err *err) {
    lk_config c;
    lk_config_llama(&c, 32000, 1024, 3584, 4, 8, 2, 128);
    c.max_position_embeddings = 8192;
    c.tie_word_embeddings = 1;
    c.rope.theta = 500000.0;
    int rc = lk_model_alloc(m, &c, err);
    if (rc) return rc;
    size_t L = 4, D = 1024, H = 3584, QD = 1024, KD = 256, V = 32000;
    float s = 0.03f;
    lk_weights *w = &m->w;
    lk_layer_weights *y = w->layer;
    /* kind by kind, layer by layer: the values the one-array-per-kind layout had */
    rand_floats(w->embed, V * D, 1.0f, 0.0f);
    for (size_t l = 0; l < L; l++) rand_floats(y[l].attn_norm, D, 0.1f, 1.0f);
    for (size_t l = 0; l < L; l++) rand_floats(y[l].wq, QD * D, s, 0.0f);
    for (size_t l = 0; l < L; l++) rand_floats(y[l].wk, KD * D, s, 0.0f);
    for (size_t l = 0; l < L; l++) rand_floats(y[l].wv, KD * D, s, 0.0f);
    for (size_t l = 0; l < L; l++) rand_floats(y[l].wo, D * QD, s, 0.0f);
    for (size_t l = 0; l < L; l++) rand_floats(y[l].ffn_norm, D, 0.1f, 1.0f);
    for (size_t l = 0; l < L; l++) rand_floats(y[l].w_gate, H * D, s, 0.0f);
    for (size_t l = 0; l < L; l++) rand_floats(y[l].w_up, H * D, s, 0.0f);
    for (size_t l = 0; l < L; l++) rand_floats(y[l].w_down, D * H, s, 0.0f);
    rand_floats(w->final_norm, D, 0.1f, 1.0f);
    return 0;
}

int lk_bench_decode(const lk_bench_decode_opts *o, lk_err *err) {
    const char *model_dir = o->model, *ids_path = o->prompt_ids;
    int n_tokens = o->n_tokens, prompt_len = o->prompt_len, decode_steps = o->decode_steps, repeat = o->repeat;
    int threads = o->threads, json = o->json;
    lk_set_threads(threads);
    int progress = lk_progress_enabled(o->progress);
    char *model_owned = NULL;
    if (!model_dir) {
        char *share = lk_share_dir(), *d = NULL;
        char *alt = share ? lk_fmt(err, "give -m DIR (e.g. -m %s/models/leank-mini)", share) : lk_dup("give -m DIR", err);
        int rc = alt ? lk_bench_data_dir(o->data, "decode", "the default model (stories260K)", alt, &d, err) : LK_ENOMEM;
        free(alt);
        free(share);
        if (rc) return rc;
        model_dir = model_owned = lk_fmt(err, "%s/models/stories260K", d);
        free(d);
        if (!model_dir) return LK_ENOMEM;
    }
    bench_row rows[3];
    int nrows = 0, rc = 0;
    lk_model m = {0};
    lk_state st = {0};
    int *ids = NULL, *tok = NULL;

    /* 1. stories260K greedy decode, or a given prompt's prefill then decode */
    if (ids_path) {
        FILE *f = fopen(ids_path, "r");
        if (!f) {
            rc = lk_seterr(err, LK_EIO, "decode: %s: cannot open", ids_path);
            goto out;
        }
        int n = 0, id;
        size_t cap = 0;
        while (fscanf(f, "%d", &id) == 1) {
            if ((rc = lk_grow(&ids, &cap, (size_t)n + 1, sizeof(int), "the prompt's ids", err))) break;
            ids[n++] = id;
        }
        fclose(f);
        if (rc) goto out;
        if (!n) {
            rc = lk_seterr(err, LK_EINPUT, "decode: %s: no token ids", ids_path);
            goto out;
        }
        if ((rc = lk_model_load(&m, model_dir, err)) || (rc = lk_state_build(&st, &m, n, n + n_tokens, NULL, 0, 0, err)))
            goto out;
        bench_row pre = {.seconds = 1e30, .cpu = 1e30}, dec = {.seconds = 1e30, .cpu = 1e30};
        for (int r = 0; r < repeat; r++) {
            lk_kv_reset(&st.kv);
            double t0 = lk_now(), c0 = cpu_now();
            if ((rc = lk_forward(&m, &st, ids, n, NULL, err))) goto out;
            double t1 = lk_now(), c1 = cpu_now();
            for (int t = 0; t < n_tokens; t++) {
                int next = lk_argmax(st.logits, m.cfg.vocab_size);
                if ((rc = lk_forward(&m, &st, &next, 1, NULL, err))) goto out;
            }
            double t2 = lk_now(), c2 = cpu_now();
            if (t1 - t0 < pre.seconds) pre.seconds = t1 - t0;
            if (c1 - c0 < pre.cpu) pre.cpu = c1 - c0;
            if (t2 - t1 < dec.seconds) dec.seconds = t2 - t1;
            if (c2 - c1 < dec.cpu) dec.cpu = c2 - c1;
        }
        snprintf(pre.name, sizeof pre.name, "prefill %d ids", n);
        pre.tokens = n;
        snprintf(dec.name, sizeof dec.name, "decode after %d ids", n);
        dec.tokens = n_tokens;
        rows[nrows++] = pre;
        rows[nrows++] = dec;
    } else {
        if ((rc = lk_model_load(&m, model_dir, err))) goto out;
        if (progress) lk_warn("decode: %d greedy steps on %s, best of %d", n_tokens, model_dir, repeat);
        int bos = m.cfg.bos_token_id >= 0 ? m.cfg.bos_token_id : 1;
        if ((rc = lk_state_build(&st, &m, 1, n_tokens + 1, NULL, 0, 0, err))) goto out;
        double best = 1e30, best_cpu = 1e30;
        for (int r = 0; r < repeat; r++) {
            lk_kv_reset(&st.kv);
            if ((rc = lk_forward(&m, &st, &bos, 1, NULL, err))) goto out;
            double t0 = lk_now(), c0 = cpu_now();
            for (int t = 0; t < n_tokens; t++) {
                int next = lk_argmax(st.logits, m.cfg.vocab_size);
                if ((rc = lk_forward(&m, &st, &next, 1, NULL, err))) goto out;
            }
            double dt = lk_now() - t0, dc = cpu_now() - c0;
            if (dt < best) best = dt;
            if (dc < best_cpu) best_cpu = dc;
        }
        bench_row *b = &rows[nrows++];
        snprintf(b->name, sizeof b->name, "decode stories260K greedy");
        b->tokens = n_tokens;
        b->seconds = best;
        b->cpu = best_cpu;
    }
    lk_state_free(&st);
    lk_model_free(&m);
    st = (lk_state){0};
    m = (lk_model){0};

    /* 2. prefill (and decode after it) on a random Llama-3-head-shaped model */
    if (prompt_len > 0) {
        if (progress) lk_warn("decode: prefill of %d tokens on a random model", prompt_len);
        if ((rc = random_llama3_head_model(&m, err)) ||
            (rc = lk_state_build(&st, &m, prompt_len, prompt_len + decode_steps, NULL, 0, 0, err)))
            goto out;
        if (!(tok = lk_alloc((size_t)prompt_len, sizeof(int), "the prompt", err))) {
            rc = LK_ENOMEM;
            goto out;
        }
        for (int i = 0; i < prompt_len; i++) tok[i] = (int)((i * 7919L + 13) % m.cfg.vocab_size);
        double best = 1e30, best_dec = 1e30, cpu = 1e30, cpu_dec = 1e30;
        int prefill_repeat = repeat < 2 ? repeat : 2; /* seconds each on one core */
        for (int r = 0; r < prefill_repeat; r++) {
            lk_kv_reset(&st.kv);
            double t0 = lk_now(), c0 = cpu_now();
            if ((rc = lk_forward(&m, &st, tok, prompt_len, NULL, err))) goto out;
            double dt = lk_now() - t0, dc = cpu_now() - c0;
            if (dt < best) best = dt;
            if (dc < cpu) cpu = dc;
            t0 = lk_now(), c0 = cpu_now();
            for (int t = 0; t < decode_steps; t++) {
                int next = lk_argmax(st.logits, m.cfg.vocab_size);
                if ((rc = lk_forward(&m, &st, &next, 1, NULL, err))) goto out;
            }
            dt = lk_now() - t0, dc = cpu_now() - c0;
            if (dt < best_dec) best_dec = dt;
            if (dc < cpu_dec) cpu_dec = dc;
        }
        bench_row *b = &rows[nrows++];
        snprintf(b->name, sizeof b->name, "prefill random d1024 L4 hd128 GQA4:1");
        b->tokens = prompt_len;
        b->seconds = best;
        b->cpu = cpu;
        if (decode_steps > 0) {
            b = &rows[nrows++];
            snprintf(b->name, sizeof b->name, "decode same model after %d tokens", prompt_len);
            b->tokens = decode_steps;
            b->seconds = best_dec;
            b->cpu = cpu_dec;
        }
    }

    if (json) {
        json_t *o = json_object(), *a = json_array();
        json_object_set_new(o, "bench", json_string("decode"));
        json_object_set_new(o, "threads", json_integer(threads));
        for (int i = 0; i < nrows; i++) {
            json_t *r = json_object();
            json_object_set_new(r, "name", json_string(rows[i].name));
            json_object_set_new(r, "tokens", json_integer(rows[i].tokens));
            json_object_set_new(r, "seconds", json_real(rows[i].seconds));
            json_object_set_new(r, "tok_s", json_real(rows[i].tokens / rows[i].seconds));
            json_object_set_new(r, "cpu_seconds", json_real(rows[i].cpu));
            json_array_append_new(a, r);
        }
        json_object_set_new(o, "results", a);
        char *s = json_dumps(o, JSON_COMPACT);
        puts(s);
        free(s);
        json_decref(o);
    } else {
        printf("%-44s %8s %10s %10s %10s %12s\n", "benchmark", "tokens", "seconds", "tok/s", "cpu s",
               "tok/cpu-s");
        for (int i = 0; i < nrows; i++)
            printf("%-44s %8ld %10.4f %10.1f %10.4f %12.1f\n", rows[i].name, rows[i].tokens, rows[i].seconds,
                   rows[i].tokens / rows[i].seconds, rows[i].cpu, rows[i].tokens / rows[i].cpu);
        printf("(threads %d, best of %d)\n", threads, repeat);
    }
    rc = fflush(stdout) ? LK_EIO : 0; /* a write error: lk_close_stdout says so at exit */
out:
    lk_state_free(&st);
    lk_model_free(&m);
    free(tok);
    free(ids);
    free(model_owned);
    return rc;
}
