/* bench_prep.c - `leank-bench prep`: sample generation speed (the work of
 * leank-prep without its command line), one thread, samples written to a
 * samples stream on /dev/null so compression is counted too. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "prep.h"
#include "samples.h"
#include "tokenizer.h"

int lk_bench_prep(const lk_bench_prep_opts *o, lk_err *err) {
    char *d = NULL, *tok_path = NULL, *corpus = NULL, *words = NULL;
    const char *task = o->task;
    long n = o->n, len = o->len;
    lk_tokenizer *tok = NULL;
    lk_prep *p = NULL;
    lk_prep_gen *g = NULL;
    lk_samples_writer *w = NULL;
    FILE *f = NULL;
    int rc = 0;
    if ((!o->tokenizer || !o->corpus || !o->words) &&
        (rc = lk_bench_data_dir(o->data, "prep", "the default tokenizer, corpus and word lists",
                                "give -t, --corpus and -w", &d, err)))
        return rc;
    tok_path = o->tokenizer ? lk_dup(o->tokenizer, err) : lk_fmt(err, "%s/data/tokenizers/llama3/tokenizer.json", d);
    corpus = o->corpus ? lk_dup(o->corpus, err) : lk_fmt(err, "%s/data/paulgraham/PaulGrahamEssays.json", d);
    words = o->words ? lk_dup(o->words, err) : lk_fmt(err, "%s/data/words", d);
    free(d);
    if (!tok_path || !corpus || !words) {
        rc = LK_ENOMEM;
        goto out;
    }
    int progress = lk_progress_enabled(o->progress);
    double t0 = lk_now();
    if ((rc = lk_tok_load(&tok, tok_path, err))) goto out;
    double t1 = lk_now();
    const char *corpora[] = {corpus};
    lk_prep_opts po = {.seed = 1, .template_name = "llama3", .corpora = corpora, .n_corpora = 1, .words = words,
                       .pool_tokens = 4 * len > 262144 ? 4 * len : 262144};
    if ((rc = lk_prep_new(&p, tok, &po, err))) goto out;
    double t2 = lk_now();
    if (!(f = fopen("/dev/null", "wb"))) {
        rc = lk_seterr(err, LK_EIO, "/dev/null: cannot open");
        goto out;
    }
    if ((rc = lk_samples_write_open(&w, f, "/dev/null", lk_tok_fingerprint(tok), "{}", err)) ||
        (rc = lk_prep_gen_new(&g, p, err)))
        goto out;
    long long tokens = 0;
    for (long i = 0; i < n; i++) {
        lk_sample s;
        if ((rc = lk_prep_sample(g, task, (int)len, i, &s, err)) || (rc = lk_samples_write(w, &s, err))) goto out;
        tokens += s.n_ctx + s.n_ans;
        if (progress) fprintf(stderr, "\rleank-bench prep: %ld/%ld samples", i + 1, n);
    }
    if (progress) fputc('\n', stderr);
    rc = lk_samples_write_close(w, err);
    w = NULL;
    if (rc) goto out;
    fclose(f);
    f = NULL;
    double t3 = lk_now();
    double gen = t3 - t2;
    if (o->json)
        printf("{\"bench\":\"prep\",\"task\":\"%s\",\"samples\":%ld,\"length\":%ld,\"tokens\":%lld,"
               "\"tokenizer_load_s\":%.3f,\"corpus_load_s\":%.3f,\"generate_s\":%.3f,\"samples_per_s\":%.1f,"
               "\"mtokens_per_s\":%.2f}\n",
               task, n, len, tokens, t1 - t0, t2 - t1, gen, n / gen, tokens / gen / 1e6);
    else {
        printf("leank-bench prep: %ld samples of %s at %ld tokens (one thread)\n", n, task, len);
        printf("  %-22s %8.3f s\n", "tokenizer load", t1 - t0);
        printf("  %-22s %8.3f s  (%ld-token pool)\n", "word lists + corpus", t2 - t1, po.pool_tokens);
        printf("  %-22s %8.3f s  %.1f samples/s, %.2f M tokens/s\n", "generate + write", gen, n / gen,
               tokens / gen / 1e6);
        printf("  %-22s %8.3f s\n", "total", t3 - t0);
    }
out:
    lk_samples_write_abort(w);
    if (f) fclose(f);
    lk_prep_gen_free(g);
    lk_prep_free(p);
    lk_tok_free(tok);
    free(tok_path);
    free(corpus);
    free(words);
    return rc;
}
