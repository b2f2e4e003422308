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

static void usage(FILE *f) {
    fprintf(f,
            "usage: leank-bench prep [OPTION]...\n"
            "Times leank-prep's generation of N samples of LEN tokens, one thread, written (zstd\n"
            "included) to /dev/null. The defaults come from the reference data directory DATA.\n\n"
            "  -t, --tokenizer PATH  tokenizer.json or its directory (default DATA/data/tokenizers/llama3)\n"
            "      --corpus FILE     haystack corpus (default DATA/data/paulgraham/PaulGrahamEssays.json)\n"
            "  -w, --words PATH      word lists (default DATA/data/words)\n"
            "      --data DIR        reference data directory DATA (default $LEANK_DATA, else ../shared)\n"
            "  -T, --task NAME       task (default train; see leank-prep --list-tasks)\n"
            "  -n, --samples N       samples (default 200)\n"
            "  -l, --length LEN      tokens per sample (default 32768)\n"
            "      --json            one JSON object instead of the table\n"
            "      --progress        progress on stderr even when it is not a terminal\n"
            "  -h, --help            show this help and exit\n");
}

int lk_bench_prep(int argc, char **argv) {
    char *tok_path = NULL, *corpus = NULL, *words = NULL;
    const char *task = "train", *data = NULL;
    long n = 200, len = 32768;
    int json = 0, progress = 0, c;
    static const struct option opts[] = {{"tokenizer", required_argument, 0, 't'}, {"corpus", required_argument, 0, 'c'},
                                         {"words", required_argument, 0, 'w'},     {"task", required_argument, 0, 'T'},
                                         {"samples", required_argument, 0, 'n'},   {"length", required_argument, 0, 'l'},
                                         {"json", no_argument, 0, 'J'},            {"help", no_argument, 0, 'h'},
                                         {"data", required_argument, 0, 'd'},      {"progress", no_argument, 0, 'G'},
                                         {0, 0, 0, 0}};
    optind = 1;
    while ((c = getopt_long(argc, argv, "t:w:T:n:l:h", opts, NULL)) != -1) {
        switch (c) {
        case 't': free(tok_path); tok_path = lk_strdup(optarg); break;
        case 'c': free(corpus); corpus = lk_strdup(optarg); break;
        case 'w': free(words); words = lk_strdup(optarg); break;
        case 'd': data = optarg; break;
        case 'G': progress = 1; break;
        case 'T': task = optarg; break;
        case 'n': n = lk_parse_long("--samples", optarg, 1, 1000000); break;
        case 'l': len = lk_parse_long("--length", optarg, 64, 1 << 24); break;
        case 'J': json = 1; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return LK_EUSAGE;
        }
    }
    if (optind < argc) lk_die(LK_EUSAGE, "prep: unexpected argument '%s' (see --help)", argv[optind]);
    if (!tok_path || !corpus || !words) {
        char *d = lk_bench_data_dir(data, "prep", "the default tokenizer, corpus and word lists", "give -t, --corpus and -w");
        if (!tok_path) tok_path = lk_asprintf("%s/data/tokenizers/llama3/tokenizer.json", d);
        if (!corpus) corpus = lk_asprintf("%s/data/paulgraham/PaulGrahamEssays.json", d);
        if (!words) words = lk_asprintf("%s/data/words", d);
        free(d);
    }
    progress = lk_progress_enabled(progress);
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
    lk_prep_gen *g;
    if (lk_prep_gen_new(&g, p, &err)) lk_fail(&err);
    long long tokens = 0;
    for (long i = 0; i < n; i++) {
        lk_sample s;
        if (lk_prep_sample(g, task, (int)len, i, &s, &err) || lk_samples_write(w, &s, &err)) lk_fail(&err);
        tokens += s.n_ctx + s.n_ans;
        if (progress) fprintf(stderr, "\rleank-bench prep: %ld/%ld samples", i + 1, n);
    }
    if (progress) fputc('\n', stderr);
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
    free(tok_path);
    free(corpus);
    free(words);
    return 0;
}
