/* bench_decode.c - leank-bench decode: CPU engine speed.
 *   1. greedy decode of stories260K from BOS (tokens/s of single-token steps);
 *   2. prefill of a long prompt on a random model of the Llama-3 head shape
 *      (head_dim 128, GQA 4:1; dim 1024, 8 heads, 2 kv heads, 4 layers,
 *      vocab 32000, MLP 3584, tied head), built in memory; then a few decode
 *      steps after that prompt. */
#include <cblas.h>
#include <getopt.h>
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

static void usage(FILE *f) {
    fprintf(f,
            "usage: leank-bench decode [OPTION]...\n"
            "CPU engine speed: greedy decode of stories260K, prefill of a long prompt on a\n"
            "random Llama-3-head-shaped model (head_dim 128, GQA 4:1, 4 layers of dim 1024).\n\n"
            "  -m, --model DIR     stories260K directory (default DATA/models/stories260K)\n"
            "      --data DIR      reference data directory (default $LEANK_DATA, else ../shared)\n"
            "      --tokens N      decode steps on stories260K (default 511; context 512)\n"
            "      --prompt-ids FILE  instead: prefill FILE's token ids (whitespace separated)\n"
            "                      on the -m model in one call, then -n greedy steps\n"
            "      --prompt-len N  prefill length on the random model (default 2048; 0 = skip)\n"
            "      --decode-steps N  decode steps after that prompt (default 32)\n"
            "      --repeat N      runs of each measurement, best kept (default 3)\n"
            "  -j, --threads N     threads of the CPU engine (default 1)\n"
            "      --json          JSON instead of the table\n"
            "      --progress      a line per measurement on stderr even when it is not a terminal\n"
            "  -h, --help          show this help and exit\n");
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

static void random_llama3_head_model(lk_model *m) {
    lk_config c;
    lk_config_llama(&c, 32000, 1024, 3584, 4, 8, 2, 128);
    c.max_position_embeddings = 8192;
    c.tie_word_embeddings = 1;
    c.rope.theta = 500000.0;
    lk_err err;
    if (lk_model_alloc(m, &c, &err)) lk_fail(&err);
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
}

int lk_bench_decode(int argc, char **argv) {
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'},  {"tokens", required_argument, 0, 'n'},
        {"prompt-len", required_argument, 0, 'P'}, {"decode-steps", required_argument, 0, 'D'},
        {"repeat", required_argument, 0, 'r'}, {"threads", required_argument, 0, 'j'},
        {"json", no_argument, 0, 'J'},         {"help", no_argument, 0, 'h'},
        {"data", required_argument, 0, 'd'},   {"progress", no_argument, 0, 'G'},
        {"prompt-ids", required_argument, 0, 'I'},
        {0, 0, 0, 0}};
    const char *model_dir = NULL, *ids_path = NULL, *data = NULL;
    int n_tokens = 511, prompt_len = 2048, decode_steps = 32, repeat = 3, threads = 1, json = 0, progress = 0;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "m:j:h", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model_dir = optarg; break;
        case 'n': n_tokens = (int)lk_parse_long("--tokens", optarg, 1, 1 << 20); break;
        case 'P': prompt_len = (int)lk_parse_long("--prompt-len", optarg, 0, 1 << 20); break;
        case 'D': decode_steps = (int)lk_parse_long("--decode-steps", optarg, 0, 1 << 20); break;
        case 'r': repeat = (int)lk_parse_long("--repeat", optarg, 1, 1000); break;
        case 'j': threads = (int)lk_parse_long("--threads", optarg, 1, 1024); break;
        case 'J': json = 1; break;
        case 'd': data = optarg; break;
        case 'G': progress = 1; break;
        case 'I': ids_path = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return LK_EUSAGE;
        }
    }
    if (optind < argc) lk_die(LK_EUSAGE, "decode: unexpected argument '%s'", argv[optind]);
    lk_set_threads(threads);
    progress = lk_progress_enabled(progress);
    char *model_owned = NULL;
    if (!model_dir) {
        char *share = lk_share_dir();
        char *alt = share ? lk_asprintf("give -m DIR (e.g. -m %s/models/leank-mini)", share) : lk_strdup("give -m DIR");
        char *d = lk_bench_data_dir(data, "decode", "the default model (stories260K)", alt);
        free(alt);
        free(share);
        model_dir = model_owned = lk_asprintf("%s/models/stories260K", d);
        free(d);
    } else if (data)
        lk_die(LK_EUSAGE, "decode: --data is where the default model lives; -m %s was given", model_dir);
    bench_row rows[3];
    int nrows = 0;
    lk_err err;

    /* 1. stories260K greedy decode, or a given prompt's prefill then decode */
    lk_model m;
    if (ids_path) {
        FILE *f = fopen(ids_path, "r");
        if (!f) lk_die(LK_EIO, "decode: %s: cannot open", ids_path);
        int n = 0, cap = 1024, id;
        int *ids = lk_malloc(cap * sizeof(int));
        while (fscanf(f, "%d", &id) == 1) {
            if (n == cap) ids = lk_realloc(ids, (cap *= 2) * sizeof(int));
            ids[n++] = id;
        }
        fclose(f);
        if (!n) lk_die(LK_EINPUT, "decode: %s: no token ids", ids_path);
        if (lk_model_load(&m, model_dir, &err)) lk_fail(&err);
        lk_state s;
        if (lk_state_build(&s, &m, n, n + n_tokens, NULL, 0, 0, &err)) lk_fail(&err);
        bench_row pre = {.seconds = 1e30, .cpu = 1e30}, dec = {.seconds = 1e30, .cpu = 1e30};
        for (int r = 0; r < repeat; r++) {
            lk_kv_reset(&s.kv);
            double t0 = lk_now(), c0 = cpu_now();
            if (lk_forward(&m, &s, ids, n, NULL, &err)) lk_fail(&err);
            double t1 = lk_now(), c1 = cpu_now();
            for (int t = 0; t < n_tokens; t++) {
                int next = lk_argmax(s.logits, m.cfg.vocab_size);
                if (lk_forward(&m, &s, &next, 1, NULL, &err)) lk_fail(&err);
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
        lk_state_free(&s);
        lk_model_free(&m);
        free(ids);
    } else {
        if (lk_model_load(&m, model_dir, &err)) lk_fail(&err);
        if (progress) lk_warn("decode: %d greedy steps on %s, best of %d", n_tokens, model_dir, repeat);
        int bos = m.cfg.bos_token_id >= 0 ? m.cfg.bos_token_id : 1;
        lk_state s;
        if (lk_state_build(&s, &m, 1, n_tokens + 1, NULL, 0, 0, &err)) lk_fail(&err);
        double best = 1e30, best_cpu = 1e30;
        for (int r = 0; r < repeat; r++) {
            lk_kv_reset(&s.kv);
            if (lk_forward(&m, &s, &bos, 1, NULL, &err)) lk_fail(&err);
            double t0 = lk_now(), c0 = cpu_now();
            for (int t = 0; t < n_tokens; t++) {
                int next = lk_argmax(s.logits, m.cfg.vocab_size);
                if (lk_forward(&m, &s, &next, 1, NULL, &err)) lk_fail(&err);
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
        lk_state_free(&s);
        lk_model_free(&m);
    }
    free(model_owned);

    /* 2. prefill (and decode after it) on a random Llama-3-head-shaped model */
    if (prompt_len > 0) {
        if (progress) lk_warn("decode: prefill of %d tokens on a random model", prompt_len);
        random_llama3_head_model(&m);
        lk_state s;
        if (lk_state_build(&s, &m, prompt_len, prompt_len + decode_steps, NULL, 0, 0, &err))
            lk_fail(&err);
        int *tok = lk_malloc(sizeof(int) * prompt_len);
        for (int i = 0; i < prompt_len; i++) tok[i] = (int)((i * 7919L + 13) % m.cfg.vocab_size);
        double best = 1e30, best_dec = 1e30, cpu = 1e30, cpu_dec = 1e30;
        int prefill_repeat = repeat < 2 ? repeat : 2; /* seconds each on one core */
        for (int r = 0; r < prefill_repeat; r++) {
            lk_kv_reset(&s.kv);
            double t0 = lk_now(), c0 = cpu_now();
            if (lk_forward(&m, &s, tok, prompt_len, NULL, &err)) lk_fail(&err);
            double dt = lk_now() - t0, dc = cpu_now() - c0;
            if (dt < best) best = dt;
            if (dc < cpu) cpu = dc;
            t0 = lk_now(), c0 = cpu_now();
            for (int t = 0; t < decode_steps; t++) {
                int next = lk_argmax(s.logits, m.cfg.vocab_size);
                if (lk_forward(&m, &s, &next, 1, NULL, &err)) lk_fail(&err);
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
        free(tok);
        lk_state_free(&s);
        lk_model_free(&m);
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
    return fflush(stdout) ? LK_EIO : 0;
}
