/* bench_accuracy.c - `leank-bench accuracy`: RULER-style accuracy of greedy
 * generation on a samples file, dense and (with --mask) with the LeanK pruned
 * cache, side by side: each sample is answered both ways by the same thread.
 *
 * Score per sample: RULER's string_match_all, the fraction of its reference
 * strings found (case-insensitive) in the generated text; a task's score is
 * the mean, in %. Samples are shared out over -j threads (one generator, i.e.
 * one run state, per thread and per cache kind; the model is shared). */
#include <cblas.h>
#include <ctype.h>
#include <getopt.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "generate.h"
#include "samples.h"

typedef struct {
    char task[LK_SAMPLES_TASK_MAX + 1];
    int target_len, n_ctx, n_ans;
    int *ctx;
    char **refs;
    int n_refs;
    /* results: [0] dense, [1] pruned */
    char *text[2];
    double score[2];
    size_t kv[2];
} item;

typedef struct {
    const lk_model *model;
    const lk_tokenizer *tok;
    const lk_mask *mask;
    int sink, recent, max_tokens;
    item *items;
    long n_items;
    long next, done; /* guarded by lock */
    int progress, failed;
    lk_err err; /* the first failure */
    pthread_mutex_t lock;
} job;

/* case-insensitive substring test */
static int contains_ci(const char *hay, const char *needle) {
    size_t n = strlen(needle);
    if (n == 0) return 1;
    for (const char *p = hay; *p; p++) {
        size_t i = 0;
        while (i < n && p[i] && tolower((unsigned char)p[i]) == tolower((unsigned char)needle[i])) i++;
        if (i == n) return 1;
    }
    return 0;
}

/* RULER string_match_all for one sample */
static double match_all(const char *text, char *const *refs, int n_refs) {
    if (n_refs == 0) return 0.0;
    int hit = 0;
    for (int i = 0; i < n_refs; i++) hit += contains_ci(text, refs[i]);
    return (double)hit / n_refs;
}

static void *worker(void *arg) {
    job *J = arg;
    lk_generator gen[2];
    int kinds = J->mask ? 2 : 1;
    lk_generator_init(&gen[0], J->model, J->tok, NULL, 0, 0);
    if (J->mask) lk_generator_init(&gen[1], J->model, J->tok, J->mask, J->sink, J->recent);
    lk_gen_result r = {0};
    lk_err err = {0};
    for (;;) {
        pthread_mutex_lock(&J->lock);
        long i = J->failed ? J->n_items : J->next++;
        pthread_mutex_unlock(&J->lock);
        if (i >= J->n_items) break;
        item *it = &J->items[i];
        lk_gen_request q = {.prompt = it->ctx, .n_prompt = it->n_ctx, .top_p = 1.0f,
                            .max_tokens = J->max_tokens > 0 ? J->max_tokens : it->n_ans + 16};
        int rc = 0;
        for (int k = 0; k < kinds && rc == 0; k++) {
            if ((rc = lk_generate(&gen[k], &q, NULL, &r, &err))) break;
            it->text[k] = lk_strdup(r.text);
            it->score[k] = match_all(r.text, it->refs, it->n_refs);
            it->kv[k] = r.kv_bytes;
        }
        pthread_mutex_lock(&J->lock);
        if (rc && !J->failed) {
            J->failed = 1;
            lk_seterr(&J->err, err.code, "sample %ld (%s, %d tokens): %s", i + 1, it->task, it->target_len,
                      err.msg);
        }
        J->done++;
        if (J->progress) fprintf(stderr, "\rleank-bench accuracy: %ld/%ld samples", J->done, J->n_items);
        pthread_mutex_unlock(&J->lock);
    }
    lk_gen_result_free(&r);
    for (int k = 0; k < kinds; k++) lk_generator_free(&gen[k]);
    return NULL;
}

static void free_items(item *items, long n) {
    for (long i = 0; i < n; i++) {
        free(items[i].ctx);
        for (int k = 0; k < items[i].n_refs; k++) free(items[i].refs[k]);
        free(items[i].refs);
        free(items[i].text[0]);
        free(items[i].text[1]);
    }
    free(items);
}

/* Reads every sample (up to limit) into items; checks the tokenizer. */
static long load_items(const char *path, const lk_tokenizer *tok, long limit, item **out, lk_err *err) {
    lk_samples_reader *rd;
    if (lk_samples_open(&rd, path, err)) return -1;
    if (lk_samples_hdr(rd)->tok_fingerprint != lk_tok_fingerprint(tok)) {
        lk_samples_close(rd);
        lk_seterr(err, LK_EINPUT, "%s: samples were made with another tokenizer (fingerprint %016llx, "
                  "the model's is %016llx)", path, (unsigned long long)lk_samples_hdr(rd)->tok_fingerprint,
                  (unsigned long long)lk_tok_fingerprint(tok));
        return -1;
    }
    item *items = NULL;
    long n = 0, cap = 0;
    lk_sample s;
    int rc;
    while ((limit <= 0 || n < limit) && (rc = lk_samples_next(rd, &s, err)) == 1) {
        if (n == cap) items = lk_realloc(items, (size_t)(cap = cap ? 2 * cap : 64) * sizeof *items);
        item *it = &items[n++];
        memset(it, 0, sizeof *it);
        memcpy(it->task, s.task, sizeof it->task);
        it->target_len = s.target_len;
        it->n_ctx = s.n_ctx;
        it->n_ans = s.n_ans;
        it->ctx = lk_malloc(sizeof(int) * (size_t)(s.n_ctx ? s.n_ctx : 1));
        memcpy(it->ctx, s.ctx, sizeof(int) * (size_t)s.n_ctx);
        it->n_refs = s.n_refs;
        it->refs = lk_malloc(sizeof(char *) * (size_t)(s.n_refs ? s.n_refs : 1));
        for (int k = 0; k < s.n_refs; k++) it->refs[k] = lk_strdup(s.refs[k]);
    }
    lk_samples_close(rd);
    if (rc < 0) {
        free_items(items, n);
        return -1;
    }
    *out = items;
    return n;
}

/* one row per (task, length), in order of first appearance */
typedef struct {
    const char *task;
    int len, n;
    double score[2], kv[2];
} row;

static void usage(FILE *f) {
    fprintf(f,
            "usage: leank-bench accuracy -m MODEL_DIR SAMPLES [--mask MASK [--sink N] [--recent N]] [OPTION]...\n"
            "Greedy generation on every sample of SAMPLES (a leank-prep file made with the model's\n"
            "tokenizer), scored as RULER does (string_match_all: the share of reference strings found,\n"
            "case-insensitive), dense and, with --mask, with the LeanK pruned cache, side by side.\n\n"
            "  -m, --model DIR      model directory\n"
            "      --mask FILE      LeanK mask (leank-binarize output): also run the pruned cache\n"
            "      --sink N         first N tokens keep every channel (default 128)\n"
            "      --recent N       N most recent tokens keep every channel (default 1024)\n"
            "  -n, --max-tokens N   tokens to generate (default: the sample's answer length + 16)\n"
            "      --limit N        only the first N samples\n"
            "  -j, --threads N      samples answered in parallel (default 1; OpenBLAS runs single-threaded)\n"
            "  -o, --outputs FILE   every sample's generated text and scores, as JSON lines\n"
            "      --json           the table as JSON\n"
            "      --progress       progress on stderr even when it is not a terminal\n"
            "  -h, --help           show this help\n");
}

int lk_bench_accuracy(int argc, char **argv) {
    enum { O_MASK = 256, O_SINK, O_RECENT, O_LIMIT, O_JSON, O_PROGRESS };
    static const struct option opts[] = {{"model", required_argument, 0, 'm'},     {"mask", required_argument, 0, O_MASK},
                                         {"sink", required_argument, 0, O_SINK},    {"recent", required_argument, 0, O_RECENT},
                                         {"max-tokens", required_argument, 0, 'n'}, {"limit", required_argument, 0, O_LIMIT},
                                         {"threads", required_argument, 0, 'j'},    {"outputs", required_argument, 0, 'o'},
                                         {"json", no_argument, 0, O_JSON},          {"progress", no_argument, 0, O_PROGRESS},
                                         {"help", no_argument, 0, 'h'},             {0, 0, 0, 0}};
    const char *model_dir = NULL, *mask_path = NULL, *outputs = NULL;
    int sink = 128, recent = 1024, max_tokens = 0, threads = 1, json = 0, progress = 0, c, window_set = 0;
    long limit = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "m:n:j:o:h", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model_dir = optarg; break;
        case O_MASK: mask_path = optarg; break;
        case O_SINK: sink = (int)lk_parse_long("--sink", optarg, 0, 1 << 30); window_set = 1; break;
        case O_RECENT: recent = (int)lk_parse_long("--recent", optarg, 0, 1 << 30); window_set = 1; break;
        case 'n': max_tokens = (int)lk_parse_long("--max-tokens", optarg, 1, 1 << 20); break;
        case O_LIMIT: limit = lk_parse_long("--limit", optarg, 1, 1L << 40); break;
        case 'j': threads = (int)lk_parse_long("--threads", optarg, 1, 1024); break;
        case 'o': outputs = optarg; break;
        case O_JSON: json = 1; break;
        case O_PROGRESS: progress = 1; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return LK_EUSAGE;
        }
    }
    if (!model_dir) lk_die(LK_EUSAGE, "accuracy: no model: give -m MODEL_DIR (see --help)");
    if (optind + 1 != argc) lk_die(LK_EUSAGE, "accuracy: expected one SAMPLES file (see --help)");
    if (window_set && !mask_path) lk_die(LK_EUSAGE, "accuracy: --sink/--recent need --mask");
    const char *samples = argv[optind];
    openblas_set_num_threads(1);

    lk_err err = {0};
    lk_model model;
    lk_tokenizer *tok;
    lk_mask mask;
    if (lk_model_load(&model, model_dir, &err) || lk_tok_load(&tok, model_dir, &err)) lk_fail(&err);
    if (mask_path && lk_mask_load_dim(&mask, mask_path, model.cfg.head_dim, &err)) lk_fail(&err);
    if (mask_path && (mask.n_layers != model.cfg.n_layers || mask.n_kv_heads != model.cfg.n_kv_heads))
        lk_die(LK_EINPUT, "%s: mask is %d layers x %d kv heads, the model %d x %d", mask_path, mask.n_layers,
               mask.n_kv_heads, model.cfg.n_layers, model.cfg.n_kv_heads);
    item *items;
    long n = load_items(samples, tok, limit, &items, &err);
    if (n < 0) lk_fail(&err);
    if (n == 0) lk_die(LK_EINPUT, "%s: no samples", samples);

    lk_out out = {0};
    if (outputs && lk_out_open(&out, outputs, &err)) lk_fail(&err);
    job J = {.model = &model, .tok = tok, .mask = mask_path ? &mask : NULL, .sink = sink, .recent = recent,
             .max_tokens = max_tokens, .items = items, .n_items = n, .progress = lk_progress_enabled(progress)};
    pthread_mutex_init(&J.lock, NULL);
    double t0 = lk_now();
    if (threads > n) threads = (int)n;
    pthread_t *th = lk_malloc(sizeof *th * (size_t)threads);
    for (int t = 0; t < threads; t++)
        if (pthread_create(&th[t], NULL, worker, &J)) lk_die(LK_EFAIL, "accuracy: cannot start thread %d", t);
    for (int t = 0; t < threads; t++) pthread_join(th[t], NULL);
    free(th);
    double wall = lk_now() - t0;
    if (J.progress) fputc('\n', stderr);
    if (J.failed) lk_fail(&J.err);
    int kinds = mask_path ? 2 : 1;

    /* per-sample outputs */
    if (outputs) {
        for (long i = 0; i < n; i++) {
            item *it = &items[i];
            json_t *refs = json_array();
            for (int k = 0; k < it->n_refs; k++) json_array_append_new(refs, json_string(it->refs[k]));
            json_t *o = json_pack("{s:s, s:i, s:o, s:s, s:f}", "task", it->task, "len", it->target_len, "refs",
                                  refs, "dense", it->text[0], "dense_score", it->score[0]);
            if (kinds == 2) {
                json_object_set_new(o, "pruned", json_string(it->text[1]));
                json_object_set_new(o, "pruned_score", json_real(it->score[1]));
            }
            json_dumpf(o, out.f, JSON_COMPACT);
            fputc('\n', out.f);
            json_decref(o);
        }
        if (lk_out_commit(&out, &err)) lk_fail(&err);
    }

    /* table */
    row *rows = lk_calloc((size_t)n, sizeof *rows);
    int nr = 0;
    for (long i = 0; i < n; i++) {
        item *it = &items[i];
        int r = 0;
        while (r < nr && !(rows[r].len == it->target_len && !strcmp(rows[r].task, it->task))) r++;
        if (r == nr) {
            rows[nr].task = it->task;
            rows[nr++].len = it->target_len;
        }
        rows[r].n++;
        for (int k = 0; k < kinds; k++) {
            rows[r].score[k] += it->score[k];
            rows[r].kv[k] += (double)it->kv[k];
        }
    }
    double tot[2] = {0, 0};
    for (long i = 0; i < n; i++)
        for (int k = 0; k < kinds; k++) tot[k] += items[i].score[k];
    if (json) {
        json_t *arr = json_array();
        for (int r = 0; r < nr; r++) {
            json_t *o = json_pack("{s:s, s:i, s:i, s:f, s:f}", "task", rows[r].task, "len", rows[r].len, "n",
                                  rows[r].n, "dense", 100 * rows[r].score[0] / rows[r].n, "dense_kv_bytes",
                                  rows[r].kv[0] / rows[r].n);
            if (kinds == 2) {
                json_object_set_new(o, "pruned", json_real(100 * rows[r].score[1] / rows[r].n));
                json_object_set_new(o, "pruned_kv_bytes", json_real(rows[r].kv[1] / rows[r].n));
            }
            json_array_append_new(arr, o);
        }
        json_t *o = json_pack("{s:s, s:s, s:I, s:f, s:f, s:o}", "bench", "accuracy", "samples", samples,
                              "n", (json_int_t)n, "dense", 100 * tot[0] / n, "wall_s", wall, "rows", arr);
        if (kinds == 2) {
            json_object_set_new(o, "pruned", json_real(100 * tot[1] / n));
            json_object_set_new(o, "mask", json_string(mask_path));
            json_object_set_new(o, "sink", json_integer(sink));
            json_object_set_new(o, "recent", json_integer(recent));
        }
        json_dumpf(o, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        fputc('\n', stdout);
        json_decref(o);
    } else {
        printf("leank-bench accuracy: %ld samples, RULER string_match_all (%%), greedy, %d thread%s, %.1f s\n", n,
               threads, threads > 1 ? "s" : "", wall);
        if (kinds == 2) printf("mask %s, sink %d, recent %d\n", mask_path, sink, recent);
        printf("%-18s %7s %5s %8s", "task", "length", "n", "dense");
        if (kinds == 2) printf(" %8s %16s", "pruned", "KV pruned/dense");
        putchar('\n');
        for (int r = 0; r < nr; r++) {
            printf("%-18s %7d %5d %8.1f", rows[r].task, rows[r].len, rows[r].n, 100 * rows[r].score[0] / rows[r].n);
            if (kinds == 2)
                printf(" %8.1f %15.1f%%", 100 * rows[r].score[1] / rows[r].n,
                       rows[r].kv[0] > 0 ? 100 * rows[r].kv[1] / rows[r].kv[0] : 0.0);
            putchar('\n');
        }
        printf("%-18s %7s %5ld %8.1f", "all", "", n, 100 * tot[0] / n);
        if (kinds == 2) printf(" %8.1f", 100 * tot[1] / n);
        putchar('\n');
    }
    free(rows);
    free_items(items, n);
    if (mask_path) lk_mask_free(&mask);
    lk_tok_free(tok);
    lk_model_free(&model);
    if (fflush(stdout) || ferror(stdout)) lk_die(LK_EIO, "<stdout>: write error");
    return 0;
}
