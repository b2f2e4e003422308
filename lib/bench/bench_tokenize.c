/* bench_tokenize.c - `leank-bench tokenize`: tokenizer load and encode speed,
 * single-threaded; with --hf, HF `tokenizers` on the same input side by side
 * (dev/bench/hf_tokenize.py) and the ratio. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "tokenizer.h"
#include "util.h"

/* dev/bench/hf_tokenize.py: $LEANK_HF_SCRIPT, else from the working
 * directory, else beside the binary's tree (O=DIR builds: $LEANK_TOP); NULL
 * out of memory */
static char *hf_script(lk_err *err) {
    const char *env = getenv("LEANK_HF_SCRIPT");
    if (env) return lk_dup(env, err);
    if (access("dev/bench/hf_tokenize.py", R_OK) == 0) return lk_dup("dev/bench/hf_tokenize.py", err);
    char *share = lk_share_find("bench", "hf_tokenize.py"); /* installed: share/leank/bench */
    if (share) return share;
    const char *top = getenv("LEANK_TOP");
    if (top) return lk_fmt(err, "%s/dev/bench/hf_tokenize.py", top);
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        char *s = strrchr(exe, '/');
        if (s) *s = 0;
        return lk_fmt(err, "%s/../dev/bench/hf_tokenize.py", exe);
    }
    return lk_dup("dev/bench/hf_tokenize.py", err);
}

/* single-quote for sh; NULL out of memory */
static char *shq(const char *s, lk_err *err) {
    if (!s) return NULL;
    size_t n = 3;
    for (const char *p = s; *p; p++) n += *p == '\'' ? 4 : 1;
    char *o = lk_alloc(n, 1, "a shell word", err), *q = o;
    if (!o) return NULL;
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

/* run the HF script; its JSON object into *out, or NULL (a message printed)
 * when it failed; its ids go to ids_out. 0, or LK_ENOMEM. */
static int run_hf(const char *tok, const char *file, int repeat, const char *ids_out, json_t **out_j, lk_err *err) {
    char *script = hf_script(err), *a = shq(script, err), *b = shq(tok, err), *c = shq(file, err),
         *d = shq(ids_out, err);
    char *cmd = a && b && c && d ? lk_fmt(err, "RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false python3 %s %s %s "
                                          "%d %s", a, b, c, repeat, d) : NULL;
    FILE *p = cmd ? popen(cmd, "r") : NULL;
    json_t *j = NULL;
    int rc = cmd ? 0 : LK_ENOMEM;
    if (p) {
        /* read to EOF before closing, or python dies of EPIPE at exit */
        char *out = NULL;
        size_t n = 0, cap = 0, got = 0;
        do {
            if (lk_grow(&out, &cap, n + 4096 + 1, 1, "the HF benchmark's output", err)) {
                rc = LK_ENOMEM;
                break;
            }
            got = fread(out + n, 1, cap - n - 1, p);
            n += got;
        } while (got > 0);
        if (out) out[n] = 0;
        int st = pclose(p);
        j = rc ? NULL : json_loads(out, JSON_DISABLE_EOF_CHECK, NULL);
        free(out);
        if (rc) {
        } else if (st != 0 || !json_is_object(j)) {
            lk_warn("%s: HF benchmark failed (exit status %d; expected python3 with `tokenizers`)", script, st);
            json_decref(j);
            j = NULL;
        }
    } else if (cmd)
        lk_warn("cannot run python3 for the HF benchmark");
    free(cmd);
    free(a);
    free(b);
    free(c);
    free(d);
    free(script);
    *out_j = j;
    return rc;
}

int lk_bench_tokenize(const lk_bench_tokenize_opts *o, lk_err *err) {
    char *tok_path = NULL, *file = NULL, *text = NULL, *d = NULL;
    int repeat = o->repeat, rc = 0;
    int *ids = NULL;
    lk_tokenizer *t = NULL;
    json_t *h = NULL;
    if (!o->tokenizer || !o->file) {
        char *share = lk_share_dir();
        char *alt = share ? lk_fmt(err, "give -t and --file (e.g. -t %s/models/leank-mini --file TEXT)", share)
                          : lk_dup("give -t and --file", err);
        rc = alt ? lk_bench_data_dir(o->data, "tokenize", "the default tokenizer and text", alt, &d, err) : LK_ENOMEM;
        free(alt);
        free(share);
        if (rc) return rc;
    }
    tok_path = o->tokenizer ? lk_dup(o->tokenizer, err) : lk_fmt(err, "%s/data/tokenizers/llama3/tokenizer.json", d);
    file = o->file ? lk_dup(o->file, err) : lk_fmt(err, "%s/data/tokenizers/vectors/pg-excerpt.txt", d);
    free(d);
    if (!tok_path || !file) {
        rc = LK_ENOMEM;
        goto out;
    }
    int progress = lk_progress_enabled(o->progress);
    if (progress) lk_warn("tokenize: %s with %s, best of %d", file, tok_path, repeat);

    size_t len;
    if ((rc = lk_read_file(file, 256u << 20, "UTF-8 text", &text, &len, err))) goto out;
    double t0 = lk_now();
    if ((rc = lk_tok_load(&t, tok_path, err))) goto out;
    double load = lk_now() - t0;
    size_t n = 0, cap = 0;
    double first = 0, best = 1e30;
    for (int r = 0; r < repeat; r++) {
        t0 = lk_now();
        if ((rc = lk_tok_encode(t, text, len, 0, &ids, &n, &cap, err))) goto out;
        double dt = lk_now() - t0;
        if (r == 0) first = dt; /* cold word cache */
        if (dt < best) best = dt;
    }
    /* HF's ids, compared with ours one by one */
    long first_diff = -1; /* -1: identical */
    if (o->hf) {
        char tmp[] = "/tmp/leank-bench-hf-XXXXXX";
        int fd = mkstemp(tmp);
        if (fd < 0) {
            rc = lk_seterr(err, LK_EIO, "/tmp: cannot create a temporary file");
            goto out;
        }
        close(fd);
        if (progress) lk_warn("tokenize: HF tokenizers on the same text");
        if ((rc = run_hf(tok_path, file, repeat, tmp, &h, err))) {
            unlink(tmp);
            goto out;
        }
        char *raw;
        size_t rl;
        lk_err rerr = {0}; /* an unreadable ids file counts as different ids, as before */
        if (h && !lk_read_file(tmp, 1u << 30, "token ids from HF", &raw, &rl, &rerr)) {
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
    int ok_hf = !o->hf || (h && first_diff < 0);
    if (o->json) {
        json_t *j = json_pack("{s:s, s:s, s:I, s:I, s:i, s:f, s:f, s:f, s:f}", "tokenizer", tok_path, "file",
                              file, "bytes", (json_int_t)len, "ids", (json_int_t)n, "repeat", repeat,
                              "load_ms", load * 1e3, "encode_first_ms", first * 1e3, "encode_ms",
                              best * 1e3, "mb_per_s", len / best / 1e6);
        if (h) {
            json_object_set_new(j, "hf", h);
            h = NULL; /* j's now */
            json_object_set_new(j, "speedup_vs_hf", json_real(hf_ms / (best * 1e3)));
            json_object_set_new(j, "same_ids_as_hf", json_boolean(first_diff < 0));
        }
        json_dumpf(j, stdout, JSON_INDENT(2));
        putchar('\n');
        json_decref(j);
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
        }
    }
    fflush(stdout);
    rc = ok_hf ? 0 : LK_EFAIL; /* said in the table: err stays empty */
out:
    json_decref(h);
    free(ids);
    free(text);
    free(tok_path);
    free(file);
    lk_tok_free(t);
    return rc;
}
