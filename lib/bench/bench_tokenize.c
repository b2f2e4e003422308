/* bench_tokenize.c - `leank-bench tokenize`: tokenizer load and encode speed,
 * single-threaded; with --hf, HF `tokenizers` on the same input side by side
 * (dev/bench/hf_tokenize.py) and the ratio. */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "tokenizer.h"
#include "util.h"

static void usage(FILE *f) {
    fprintf(f, "usage: leank-bench tokenize [-t TOKENIZER] [--file F] [--repeat N] [--hf] [--json]\n"
               "Encode F (no special tokens) with TOKENIZER, best of N runs, one thread.\n\n"
               "  -t, --tokenizer PATH  tokenizer.json or its directory\n"
               "                        (default DATA/data/tokenizers/llama3)\n"
               "      --file F          UTF-8 text (default DATA/data/tokenizers/vectors/pg-excerpt.txt)\n"
               "      --data DIR        reference data directory DATA (default $LEANK_DATA, else ../shared)\n"
               "      --repeat N        runs; the best is reported (default 5)\n"
               "      --hf              also run HF tokenizers (python3 dev/bench/hf_tokenize.py,\n"
               "                        and compare every id: exit 1 if any differs;\n"
               "                        $LEANK_HF_SCRIPT overrides) with RAYON_NUM_THREADS=1\n"
               "      --json            one JSON object on stdout\n"
               "      --progress        a line per phase on stderr even when it is not a terminal\n"
               "  -h, --help            this help\n");
}

/* dev/bench/hf_tokenize.py: $LEANK_HF_SCRIPT, else from the working
 * directory, else beside the binary's tree (O=DIR builds: $LEANK_TOP) */
static char *hf_script(void) {
    const char *env = getenv("LEANK_HF_SCRIPT");
    if (env) return lk_strdup(env);
    if (access("dev/bench/hf_tokenize.py", R_OK) == 0) return lk_strdup("dev/bench/hf_tokenize.py");
    char *share = lk_share_find("bench", "hf_tokenize.py"); /* installed: share/leank/bench */
    if (share) return share;
    const char *top = getenv("LEANK_TOP");
    if (top) return lk_asprintf("%s/dev/bench/hf_tokenize.py", top);
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        char *s = strrchr(exe, '/');
        if (s) *s = 0;
        return lk_asprintf("%s/../dev/bench/hf_tokenize.py", exe);
    }
    return lk_strdup("dev/bench/hf_tokenize.py");
}

/* single-quote for sh */
static char *shq(const char *s) {
    size_t n = 3;
    for (const char *p = s; *p; p++) n += *p == '\'' ? 4 : 1;
    char *o = lk_malloc(n), *q = o;
    *q++ = '\'';
    for (const char *p = s; *p; p++) {
        if (*p == '\'') {
            memcpy(q, "'\\''", 4);
            q += 4;
        } else
            *q++ = *p;
    }
    *q++ = '\'';
    *q = 0;
    return o;
}

/* run the HF script; returns its JSON object or NULL (message printed); its
 * ids go to ids_out */
static json_t *run_hf(const char *tok, const char *file, int repeat, const char *ids_out) {
    char *script = hf_script(), *a = shq(script), *b = shq(tok), *c = shq(file), *d = shq(ids_out);
    char *cmd = lk_asprintf("RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false python3 %s %s %s %d %s", a, b,
                            c, repeat, d);
    FILE *p = popen(cmd, "r");
    json_t *j = NULL;
    if (p) {
        /* read to EOF before closing, or python dies of EPIPE at exit */
        char *out = NULL;
        size_t n = 0, cap = 0, got;
        do {
            if (n + 4096 + 1 > cap) out = lk_realloc(out, cap = 2 * cap + 4096 + 1);
            got = fread(out + n, 1, cap - n - 1, p);
            n += got;
        } while (got > 0);
        out[n] = 0;
        int st = pclose(p);
        j = json_loads(out, JSON_DISABLE_EOF_CHECK, NULL);
        free(out);
        if (st != 0 || !json_is_object(j)) {
            lk_warn("%s: HF benchmark failed (exit status %d; expected python3 with `tokenizers`)", script, st);
            json_decref(j);
            j = NULL;
        }
    } else
        lk_warn("cannot run python3 for the HF benchmark");
    free(cmd);
    free(a);
    free(b);
    free(c);
    free(d);
    free(script);
    return j;
}

int lk_bench_tokenize(int argc, char **argv) {
    enum { O_FILE = 256, O_HF, O_JSON, O_DATA, O_PROGRESS, O_REPEAT };
    static const struct option opts[] = {{"tokenizer", required_argument, 0, 't'},
                                         {"file", required_argument, 0, O_FILE},
                                         {"repeat", required_argument, 0, O_REPEAT},
                                         {"data", required_argument, 0, O_DATA},
                                         {"progress", no_argument, 0, O_PROGRESS},
                                         {"hf", no_argument, 0, O_HF},
                                         {"json", no_argument, 0, O_JSON},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    char *tok_path = NULL, *file = NULL;
    const char *data = NULL;
    int repeat = 5, hf = 0, json = 0, progress = 0, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "t:h", opts, NULL)) != -1) {
        switch (c) {
        case 't': free(tok_path); tok_path = lk_strdup(optarg); break;
        case O_FILE: free(file); file = lk_strdup(optarg); break;
        case O_DATA: data = optarg; break;
        case O_PROGRESS: progress = 1; break;
        case O_REPEAT: repeat = (int)lk_parse_long("--repeat", optarg, 1, 1000); break;
        case O_HF: hf = 1; break;
        case O_JSON: json = 1; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return LK_EUSAGE;
        }
    }
    if (optind < argc) lk_die(LK_EUSAGE, "tokenize: unexpected argument '%s' (see --help)", argv[optind]);
    if (!tok_path || !file) {
        char *share = lk_share_dir();
        char *alt = share ? lk_asprintf("give -t and --file (e.g. -t %s/models/leank-mini --file TEXT)", share)
                          : lk_strdup("give -t and --file");
        char *d = lk_bench_data_dir(data, "tokenize", "the default tokenizer and text", alt);
        free(alt);
        free(share);
        if (!tok_path) tok_path = lk_asprintf("%s/data/tokenizers/llama3/tokenizer.json", d);
        if (!file) file = lk_asprintf("%s/data/tokenizers/vectors/pg-excerpt.txt", d);
        free(d);
    }
    progress = lk_progress_enabled(progress);
    if (progress) lk_warn("tokenize: %s with %s, best of %d", file, tok_path, repeat);

    lk_err err = {0};
    char *text;
    size_t len;
    if (lk_read_file(file, 1u << 30, "UTF-8 text", &text, &len, &err)) lk_fail(&err);
    lk_tokenizer *t;
    double t0 = lk_now();
    if (lk_tok_load(&t, tok_path, &err)) lk_fail(&err);
    double load = lk_now() - t0;
    int *ids = NULL;
    size_t n = 0, cap = 0;
    double first = 0, best = 1e30;
    for (int r = 0; r < repeat; r++) {
        t0 = lk_now();
        if (lk_tok_encode(t, text, len, 0, &ids, &n, &cap, &err)) lk_fail(&err);
        double dt = lk_now() - t0;
        if (r == 0) first = dt; /* cold word cache */
        if (dt < best) best = dt;
    }
    /* HF's ids, compared with ours one by one */
    json_t *h = NULL;
    long first_diff = -1; /* -1: identical */
    if (hf) {
        char tmp[] = "/tmp/leank-bench-hf-XXXXXX";
        int fd = mkstemp(tmp);
        if (fd < 0) lk_die(LK_EIO, "/tmp: cannot create a temporary file");
        close(fd);
        if (progress) lk_warn("tokenize: HF tokenizers on the same text");
        h = run_hf(tok_path, file, repeat, tmp);
        char *raw;
        size_t rl;
        if (h && !lk_read_file(tmp, 1u << 30, "token ids from HF", &raw, &rl, &err)) {
            size_t nh = rl / 4, i = 0;
            for (; i < n && i < nh; i++) {
                uint32_t v;
                memcpy(&v, raw + 4 * i, 4);
                if ((int)v != ids[i]) break;
            }
            if (i < n || i < nh) first_diff = (long)i;
            free(raw);
        }
        unlink(tmp);
    }
    double hf_ms = h ? json_number_value(json_object_get(h, "encode_ms")) : 0;
    double hf_load = h ? json_number_value(json_object_get(h, "load_ms")) : 0;
    long hf_ids = h ? (long)json_integer_value(json_object_get(h, "ids")) : 0;
    int ok_hf = !hf || (h && first_diff < 0);
    if (json) {
        json_t *o = json_pack("{s:s, s:s, s:I, s:I, s:i, s:f, s:f, s:f, s:f}", "tokenizer", tok_path, "file",
                              file, "bytes", (json_int_t)len, "ids", (json_int_t)n, "repeat", repeat,
                              "load_ms", load * 1e3, "encode_first_ms", first * 1e3, "encode_ms",
                              best * 1e3, "mb_per_s", len / best / 1e6);
        if (h) {
            json_object_set_new(o, "hf", h);
            json_object_set_new(o, "speedup_vs_hf", json_real(hf_ms / (best * 1e3)));
            json_object_set_new(o, "same_ids_as_hf", json_boolean(first_diff < 0));
        }
        json_dumpf(o, stdout, JSON_INDENT(2));
        putchar('\n');
        json_decref(o);
    } else {
        printf("tokenizer  %s\nfile       %s (%zu bytes)\n", tok_path, file, len);
        printf("%-8s %10s %12s %12s %10s %10s\n", "", "load ms", "encode ms", "first ms", "MB/s", "ids");
        printf("%-8s %10.1f %12.2f %12.2f %10.2f %10zu\n", "leank", load * 1e3, best * 1e3, first * 1e3,
               len / best / 1e6, n);
        if (h) {
            printf("%-8s %10.1f %12.2f %12s %10.2f %10ld\n", "hf", hf_load, hf_ms, "-", len / hf_ms / 1e3, hf_ids);
            printf("encode speed: leank / HF tokenizers %s = %.2fx\n",
                   json_string_value(json_object_get(h, "version")) ? json_string_value(json_object_get(h, "version")) : "",
                   hf_ms / (best * 1e3));
            if (first_diff < 0) printf("ids: identical (%zu)\n", n);
            else printf("ids: DIFFER from HF's, first at index %ld\n", first_diff);
            json_decref(h);
        }
    }
    fflush(stdout);
    free(ids);
    free(text);
    free(tok_path);
    free(file);
    lk_tok_free(t);
    return ok_hf ? 0 : LK_EFAIL;
}
