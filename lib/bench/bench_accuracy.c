/* bench_accuracy.c - `leank-bench accuracy`: RULER-style accuracy of greedy
 * generation on a samples file, dense and (with --mask) with the LeanK pruned
 * cache (one or more masks), side by side: each sample is answered every way
 * by the same thread, from one shared dense prefill (lk_gen_adopt).
 *
 * Score per sample: RULER's string_match_all, the fraction of its reference
 * strings found (case-insensitive) in the generated text; a task's score is
 * the mean, in %. On the GPU, --batch samples (with every mask) decode
 * together; on the CPU, samples are shared out over -j threads. */
#include <cblas.h>
#include <ctype.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "engine.h"
#include "generate.h"
#include "plan.h"
#include "samples.h"

#define MAX_MASKS LK_BENCH_MAX_MASKS

typedef struct {
    char task[LK_SAMPLES_TASK_MAX + 1];
    int target_len, n_ctx, n_ans;
    int *ctx;
    char **refs;
    int n_refs;
    /* results: [0] dense, [1 + i] with mask i */
    char *text[1 + MAX_MASKS];
    double score[1 + MAX_MASKS];
    size_t kv[1 + MAX_MASKS];
    int pruned[1 + MAX_MASKS]; /* 0: the sample fit in sink + recent, the pruned run was dense */
} item;

typedef struct {
    lk_generator gen;
    const lk_plan *plans;
    int n_plans, max_tokens, per_run; /* samples answered together (one lk_gen_run) */
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

/* Takes per_run samples at a time; each is answered dense and with every
 * plan in one lk_gen_run: the plans adopt the sample's dense prefill (LeanK
 * prefills densely) and all sequences decode together. */
static void *worker(void *arg) {
    job *J = arg;
    int kinds = 1 + J->n_plans;
    lk_err err = {0};
    lk_gen_task *t = lk_zalloc((size_t)J->per_run * kinds, sizeof *t, "the generation tasks", &err);
    for (;;) {
        pthread_mutex_lock(&J->lock);
        long i0 = J->failed ? J->n_items : J->next;
        long n = J->n_items - i0 < J->per_run ? J->n_items - i0 : J->per_run;
        J->next = i0 + (n > 0 ? n : 0);
        pthread_mutex_unlock(&J->lock);
        if (n <= 0) break;
        if (!t) { /* failed below, as a run would */
            pthread_mutex_lock(&J->lock);
            if (!J->failed) J->failed = 1, J->err = err;
            pthread_mutex_unlock(&J->lock);
            break;
        }
        for (long s = 0; s < n; s++) {
            item *it = &J->items[i0 + s];
            lk_gen_request q = {.prompt = it->ctx, .n_prompt = it->n_ctx, .top_p = 1.0f,
                                .max_tokens = J->max_tokens > 0 ? J->max_tokens : it->n_ans + 16};
            for (int k = 0; k < kinds; k++) {
                lk_gen_task *x = &t[s * kinds + k];
                x->q = q;
                x->plan = k ? &J->plans[k - 1] : NULL;
                x->adopt = k ? (int)(s * kinds) : -1;
                x->out = NULL;
            }
        }
        int rc = lk_gen_run(&J->gen, t, (int)(n * kinds), &err);
        for (long s = 0; s < n && rc == 0; s++) {
            item *it = &J->items[i0 + s];
            for (int k = 0; k < kinds && rc == 0; k++) {
                const lk_gen_result *r = &t[s * kinds + k].r;
                if (!(it->text[k] = lk_dup(r->text, &err))) rc = LK_ENOMEM;
                it->score[k] = match_all(r->text, it->refs, it->n_refs);
                it->kv[k] = (size_t)r->kv.bytes;
                it->pruned[k] = r->kv.pruned;
            }
        }
        pthread_mutex_lock(&J->lock);
        if (rc && !J->failed) {
            J->failed = 1;
            item *it = &J->items[i0];
            lk_seterr(&J->err, err.code, "samples %ld-%ld (%s, %d tokens): %s", i0 + 1, i0 + n, it->task,
                      it->target_len, err.msg);
        }
        J->done += n;
        if (J->progress) fprintf(stderr, "\rleank-bench accuracy: %ld/%ld samples", J->done, J->n_items);
        pthread_mutex_unlock(&J->lock);
    }
    for (long k = 0; t && k < (long)J->per_run * kinds; k++) lk_gen_result_free(&t[k].r);
    free(t);
    return NULL;
}

static void free_items(item *items, long n) {
    for (long i = 0; i < n; i++) {
        free(items[i].ctx);
        for (int k = 0; k < items[i].n_refs; k++) free(items[i].refs[k]);
        free(items[i].refs);
        for (int k = 0; k <= MAX_MASKS; k++) free(items[i].text[k]);
    }
    free(items);
}

/* Reads every sample (up to limit) into items; checks the tokenizer. */
static long load_items(const char *path, const lk_tokenizer *tok, long limit, item **out, lk_err *err) {
    lk_samples_reader *rd;
    if (lk_samples_open(&rd, path, err)) return -1;
    if (lk_samples_hdr(rd)->tok_fingerprint != lk_tok_fingerprint(tok)) {
        lk_seterr(err, LK_EINPUT, "%s: samples were made with another tokenizer (fingerprint %016llx, "
                  "the model's is %016llx)", path, (unsigned long long)lk_samples_hdr(rd)->tok_fingerprint,
                  (unsigned long long)lk_tok_fingerprint(tok));
        lk_samples_close(rd);
        return -1;
    }
    item *items = NULL;
    long n = 0;
    size_t cap = 0;
    lk_sample s;
    int rc;
    while ((limit <= 0 || n < limit) && (rc = lk_samples_next(rd, &s, err)) == 1) {
        if (lk_grow(&items, &cap, (size_t)n + 1, sizeof *items, "the samples", err)) {
            rc = -LK_ENOMEM;
            break;
        }
        item *it = &items[n++];
        memset(it, 0, sizeof *it);
        memcpy(it->task, s.task, sizeof it->task);
        it->target_len = s.target_len;
        it->n_ctx = s.n_ctx;
        it->n_ans = s.n_ans;
        it->ctx = lk_alloc((size_t)s.n_ctx, sizeof(int), "a sample's prompt", err);
        it->refs = lk_zalloc((size_t)s.n_refs, sizeof(char *), "a sample's references", err);
        if (!it->ctx || !it->refs) {
            rc = -LK_ENOMEM;
            break;
        }
        if (s.n_ctx) memcpy(it->ctx, s.ctx, sizeof(int) * (size_t)s.n_ctx); /* s.ctx may be NULL */
        for (int k = 0; k < s.n_refs && rc == 1; k++)
            if ((it->refs[k] = lk_dup(s.refs[k], err))) it->n_refs++;
            else rc = -LK_ENOMEM;
        if (rc < 0) break;
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
    double score[1 + MAX_MASKS], kv[1 + MAX_MASKS];
} row;

/* Column names: "dense", then each mask file's name without directory and
 * .safetensors (made unique by a suffix). */
static void mask_labels(char labels[][32], const char *const *paths, int n) {
    snprintf(labels[0], 32, "dense");
    for (int k = 0; k < n; k++) {
        const char *b = strrchr(paths[k], '/');
        b = b ? b + 1 : paths[k];
        size_t l = strlen(b);
        if (l > 12 && !strcmp(b + l - 12, ".safetensors")) l -= 12;
        if (l > 20) l = 20;
        snprintf(labels[k + 1], 32, "%.*s", (int)l, b);
        for (int j = 0; j <= k; j++)
            if (!strcmp(labels[j], labels[k + 1])) {
                snprintf(labels[k + 1], 32, "%.*s-%d", (int)l, b, k + 1);
                break;
            }
    }
}

int lk_bench_accuracy(const lk_bench_accuracy_opts *o, lk_err *err) {
    const char *const *mask_paths = o->masks, *outputs = o->outputs, *samples = o->samples;
    int n_masks = o->n_masks, threads = o->threads, batch = o->batch, rc = 0, n_plans = 0;
    openblas_set_num_threads(1);

    lk_engine *eng = NULL;
    lk_tokenizer *tok = NULL;
    lk_plan plans[MAX_MASKS];
    item *items = NULL;
    long n = 0;
    row *rows = NULL;
    lk_out out = {0};
    if ((rc = lk_tok_load(&tok, o->model, err)) || (rc = lk_engine_open(&eng, o->model, &(lk_engine_opts){.device = o->device}, err)))
        goto out;
    int gpu = !strcmp(lk_engine_name(eng), "cuda");
    if (gpu && threads > 1) {
        rc = lk_seterr(err, LK_EUSAGE, "accuracy: -j applies to --device cpu (the GPU batches with --batch)");
        goto out;
    }
    if (!batch) batch = gpu ? 16 : 1;
    for (int k = 0; k < n_masks; k++, n_plans++) {
        int overridden;
        if ((rc = lk_plan_open(&plans[k], mask_paths[k], lk_engine_config(eng), o->model, o->sink, o->recent,
                               lk_engine_cache_dtype(eng), &overridden, err)))
            goto out;
        if (overridden)
            lk_warn("accuracy: --sink/--recent override %s's windows: sink %d, recent %d", mask_paths[k],
                    plans[k].sink, plans[k].recent);
    }
    char labels[1 + MAX_MASKS][32];
    mask_labels(labels, mask_paths, n_masks);
    if ((n = load_items(samples, tok, o->limit, &items, err)) < 0) {
        rc = err->code ? err->code : LK_EFAIL;
        n = 0;
        goto out;
    }
    if (n == 0) {
        rc = lk_seterr(err, LK_EINPUT, "%s: no samples", samples);
        goto out;
    }

    if (outputs && (rc = lk_out_open(&out, outputs, err))) goto out;
    job J = {.plans = plans, .n_plans = n_masks, .max_tokens = o->max_tokens, .per_run = batch, .items = items,
             .n_items = n, .progress = lk_progress_enabled(o->progress)};
    lk_generator_init(&J.gen, eng, tok);
    pthread_mutex_init(&J.lock, NULL);
    double t0 = lk_now();
    if (threads > n) threads = (int)n;
    pthread_t th[1024]; /* leank-bench allows -j 1024 */
    int started = 0;
    if (threads > (int)(sizeof th / sizeof *th)) threads = (int)(sizeof th / sizeof *th);
    for (; started < threads; started++)
        if (pthread_create(&th[started], NULL, worker, &J)) {
            pthread_mutex_lock(&J.lock); /* the running ones stop at their next batch */
            if (!J.failed) J.failed = 1, lk_seterr(&J.err, LK_EFAIL, "accuracy: cannot start thread %d", started);
            pthread_mutex_unlock(&J.lock);
            break;
        }
    for (int t = 0; t < started; t++) pthread_join(th[t], NULL);
    pthread_mutex_destroy(&J.lock);
    double wall = lk_now() - t0;
    if (J.progress) fputc('\n', stderr);
    if (J.failed) {
        if (err) *err = J.err;
        rc = J.err.code ? J.err.code : LK_EFAIL;
        goto out;
    }
    int kinds = 1 + n_masks;

    /* per-sample outputs: {"task", "len", "refs", "answers": {label: text}, "scores": {label: score}} */
    if (outputs) {
        for (long i = 0; i < n; i++) {
            item *it = &items[i];
            json_t *refs = json_array(), *ans = json_object(), *sc = json_object();
            for (int k = 0; k < it->n_refs; k++) json_array_append_new(refs, json_string(it->refs[k]));
            for (int k = 0; k < kinds; k++) {
                json_object_set_new(ans, labels[k], json_string(it->text[k]));
                json_object_set_new(sc, labels[k], json_real(it->score[k]));
            }
            json_t *j = json_pack("{s:s, s:i, s:o, s:o, s:o}", "task", it->task, "len", it->target_len, "refs",
                                  refs, "answers", ans, "scores", sc);
            int bad = !j || json_dumpf(j, out.f, JSON_COMPACT | JSON_PRESERVE_ORDER);
            json_decref(j);
            if (bad) {
                rc = lk_seterr(err, LK_EINPUT, "%s: sample %ld: cannot write it as JSON (text not UTF-8?)", samples, i + 1);
                goto out;
            }
            fputc('\n', out.f);
        }
        if ((rc = lk_out_commit(&out, err))) goto out;
    }

    /* one row per (task, length), in order of first appearance */
    if (!(rows = lk_zalloc((size_t)n, sizeof *rows, "the table", err))) {
        rc = LK_ENOMEM;
        goto out;
    }
    int nr = 0;
    double tot[1 + MAX_MASKS] = {0};
    long dense_like[1 + MAX_MASKS] = {0}; /* samples whose pruned run was exactly dense */
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
            tot[k] += it->score[k];
            if (k && !it->pruned[k]) dense_like[k]++;
        }
    }
    for (int k = 1; k < kinds; k++)
        if (dense_like[k])
            lk_warn("accuracy: %ld of %ld samples fit in %s's sink %d + recent %d: their pruned runs were exactly dense",
                    dense_like[k], n, labels[k], plans[k - 1].sink, plans[k - 1].recent);
    if (o->json) {
        json_t *arr = json_array();
        for (int r = 0; r < nr; r++) {
            json_t *sc = json_object(), *kv = json_object();
            for (int k = 0; k < kinds; k++) {
                json_object_set_new(sc, labels[k], json_real(100 * rows[r].score[k] / rows[r].n));
                json_object_set_new(kv, labels[k], json_real(rows[r].kv[k] / rows[r].n));
            }
            json_array_append_new(arr, json_pack("{s:s, s:i, s:i, s:o, s:o}", "task", rows[r].task, "len",
                                                 rows[r].len, "n", rows[r].n, "scores", sc, "kv_bytes", kv));
        }
        json_t *sc = json_object(), *mk = json_object();
        for (int k = 0; k < kinds; k++) json_object_set_new(sc, labels[k], json_real(100 * tot[k] / n));
        for (int k = 0; k < n_masks; k++)
            json_object_set_new(mk, labels[k + 1],
                                json_pack("{s:s, s:i, s:i, s:I}", "file", mask_paths[k], "sink", plans[k].sink,
                                          "recent", plans[k].recent, "dense_like_samples",
                                          (json_int_t)dense_like[k + 1]));
        json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:I, s:o, s:o, s:f, s:o}", "bench", "accuracy", "device",
                              lk_engine_device_name(eng), "kv_dtype", lk_engine_cache_dtype(eng), "samples",
                              samples, "n", (json_int_t)n, "masks", mk, "scores", sc, "wall_s", wall, "rows", arr);
        json_dumpf(j, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        fputc('\n', stdout);
        json_decref(j);
    } else {
        printf("leank-bench accuracy: %ld samples, RULER string_match_all (%%), greedy, %s, %.1f s\n", n,
               lk_engine_device_name(eng), wall);
        for (int k = 0; k < n_masks; k++) {
            printf("%s: %s, sink %d, recent %d", labels[k + 1], mask_paths[k], plans[k].sink, plans[k].recent);
            if (dense_like[k + 1])
                printf("; %ld sample%s within sink + recent: exactly dense", dense_like[k + 1],
                       dense_like[k + 1] > 1 ? "s" : "");
            putchar('\n');
        }
        /* Columns as wide as their labels: a score per kind, then each mask's
         * KV-cache bytes as a share of dense ("KV <label>"). */
        int sw[1 + MAX_MASKS], kw[1 + MAX_MASKS];
        for (int k = 0; k < kinds; k++) {
            int l = (int)strlen(labels[k]);
            sw[k] = l > 7 ? l : 7;
            kw[k] = l + 3 > 9 ? l + 3 : 9;
        }
        printf("%-18s %7s %5s", "task", "length", "n");
        for (int k = 0; k < kinds; k++) printf(" %*s", sw[k], labels[k]);
        for (int k = 1; k < kinds; k++) {
            char h[40];
            snprintf(h, sizeof h, "KV %s", labels[k]);
            printf(" %*s", kw[k] + 1, h);
        }
        putchar('\n');
        for (int r = 0; r < nr; r++) {
            printf("%-18s %7d %5d", rows[r].task, rows[r].len, rows[r].n);
            for (int k = 0; k < kinds; k++) printf(" %*.1f", sw[k], 100 * rows[r].score[k] / rows[r].n);
            for (int k = 1; k < kinds; k++)
                printf(" %*.1f%%", kw[k], rows[r].kv[0] > 0 ? 100 * rows[r].kv[k] / rows[r].kv[0] : 0.0);
            putchar('\n');
        }
        printf("%-18s %7s %5ld", "all", "", n);
        for (int k = 0; k < kinds; k++) printf(" %*.1f", sw[k], 100 * tot[k] / n);
        putchar('\n');
    }
    if (fflush(stdout) || ferror(stdout)) rc = lk_seterr(err, LK_EIO, "<stdout>: write error");
out:
    lk_out_abort(&out);
    free(rows);
    free_items(items, n);
    for (int k = 0; k < n_plans; k++) lk_plan_free(&plans[k]);
    lk_tok_free(tok);
    lk_engine_free(eng);
    return rc;
}
