/* bench_prep.c - `leank-bench prep`: sample generation speed (the work of
 * leank-prep without its command line), one thread, samples written to a
 * samples stream on /dev/null so compression is counted too. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "prep.h"
#include "samples.h"
#include "tokenizer.h"

static const char *shared_path(const char *rel, char *buf, size_t n) {
    const char *s = getenv("LEANK_SHARED");
    snprintf(buf, n, "%s/%s", s ? s : "../shared", rel);
    return buf;
}

int lk_bench_prep(int argc, char **argv) {
    char b1[4096], b2[4096], b3[4096];
    const char *tok_path = shared_path("data/tokenizers/llama3/tokenizer.json", b1, sizeof b1);
    const char *corpus = shared_path("data/paulgraham/PaulGrahamEssays.json", b2, sizeof b2);
    const char *words = shared_path("data/words", b3, sizeof b3);
    const char *task = "train";
    long n = 200, len = 32768;
    int json = 0, c;
    static const struct option opts[] = {{"tokenizer", required_argument, 0, 't'}, {"corpus", required_argument, 0, 'c'},
                                         {"words", required_argument, 0, 'w'},     {"task", required_argument, 0, 'T'},
                                         {"samples", required_argument, 0, 'n'},   {"length", required_argument, 0, 'l'},
                                         {"json", no_argument, 0, 'J'},            {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    optind = 1;
    while ((c = getopt_long(argc, argv, "t:c:w:T:n:l:h", opts, NULL)) != -1) {
        switch (c) {
        case 't': tok_path = optarg; break;
        case 'c': corpus = optarg; break;
        case 'w': words = optarg; break;
        case 'T': task = optarg; break;
        case 'n': n = lk_parse_long("--samples", optarg, 1, 1000000); break;
        case 'l': len = lk_parse_long("--length", optarg, 64, 1 << 24); break;
        case 'J': json = 1; break;
        case 'h':
            printf("usage: leank-bench prep [-t TOKENIZER] [-c CORPUS] [-w WORDS] [--task T] [-n N] [-l LEN] [--json]\n"
                   "Times leank-prep's generation of N samples of LEN tokens (default: train, 200 x 32768,\n"
                   "Llama-3 tokenizer, Paul Graham essays, from $LEANK_SHARED or ../shared), one thread.\n");
            return 0;
        default: return LK_EUSAGE;
        }
    }
    lk_err err = {0};
    double t0 = lk_now();
    lk_tokenizer *tok;
    if (lk_tok_load(&tok, tok_path, &err)) lk_fail(&err);
    double t1 = lk_now();
    const char *corpora[] = {corpus};
    lk_prep_opts o = {.seed = 1, .template_name = "llama3", .corpora = corpora, .n_corpora = 1, .words = words,
                      .pool_tokens = 4 * len > 262144 ? 4 * len : 262144};
    lk_prep *p;
    if (lk_prep_new(&p, tok, &o, &err)) lk_fail(&err);
    double t2 = lk_now();
    FILE *f = fopen("/dev/null", "wb");
    if (!f) lk_die(LK_EIO, "/dev/null: cannot open");
    lk_samples_writer *w;
    if (lk_samples_write_open(&w, f, "/dev/null", lk_tok_fingerprint(tok), "{}", &err)) lk_fail(&err);
    lk_prep_gen *g = lk_prep_gen_new(p);
    long long tokens = 0;
    for (long i = 0; i < n; i++) {
        lk_sample s;
        if (lk_prep_sample(g, task, (int)len, i, &s, &err) || lk_samples_write(w, &s, &err)) lk_fail(&err);
        tokens += s.n_ctx + s.n_ans;
    }
    if (lk_samples_write_close(w, &err)) lk_fail(&err);
    fclose(f);
    double t3 = lk_now();
    double gen = t3 - t2;
    if (json)
        printf("{\"bench\":\"prep\",\"task\":\"%s\",\"samples\":%ld,\"length\":%ld,\"tokens\":%lld,"
               "\"tokenizer_load_s\":%.3f,\"corpus_load_s\":%.3f,\"generate_s\":%.3f,\"samples_per_s\":%.1f,"
               "\"mtokens_per_s\":%.2f}\n",
               task, n, len, tokens, t1 - t0, t2 - t1, gen, n / gen, tokens / gen / 1e6);
    else {
        printf("leank-bench prep: %ld samples of %s at %ld tokens (one thread)\n", n, task, len);
        printf("  %-22s %8.3f s\n", "tokenizer load", t1 - t0);
        printf("  %-22s %8.3f s  (%ld-token pool)\n", "word lists + corpus", t2 - t1, o.pool_tokens);
        printf("  %-22s %8.3f s  %.1f samples/s, %.2f M tokens/s\n", "generate + write", gen, n / gen,
               tokens / gen / 1e6);
        printf("  %-22s %8.3f s\n", "total", t3 - t0);
    }
    lk_prep_gen_free(g);
    lk_prep_free(p);
    lk_tok_free(tok);
    return 0;
}
