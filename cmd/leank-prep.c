/* leank-prep - corpora and a tokenizer -> training / evaluation samples; also
 * the tokenizer on the command line (--encode, --decode). See leank-prep(1). */
#include <ctype.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer.h"
#include "util.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: leank-prep -t TOKENIZER --encode [--add-special] < TEXT\n"
            "       leank-prep -t TOKENIZER --decode [--skip-special] < IDS\n"
            "  -t, --tokenizer PATH  model directory or tokenizer.json\n"
            "      --encode          UTF-8 text on stdin -> token ids, one per line\n"
            "      --add-special     with --encode: add the post-processor's BOS\n"
            "      --decode          whitespace-separated ids on stdin -> text\n"
            "      --skip-special    with --decode: leave special tokens out\n"
            "  -h, --help            show this help and exit\n"
            "  -V, --version         show the version and exit\n");
}

/* --encode: stdin text -> ids, one decimal per line on stdout */
static int do_encode(const lk_tokenizer *tok, int add_special, lk_err *err) {
    char *text;
    size_t len;
    if (lk_read_file("-", &text, &len, err)) return err->code;
    int *ids = NULL;
    size_t n = 0, cap = 0;
    if (lk_tok_encode(tok, text, len, add_special, &ids, &n, &cap, err)) {
        free(text);
        /* the tokenizer names no file; the input is stdin */
        char m[sizeof err->msg];
        snprintf(m, sizeof m, "%s", err->msg);
        return lk_seterr(err, err->code ? err->code : LK_EINPUT, "<stdin>: %s", m);
    }
    free(text);
    for (size_t i = 0; i < n; i++) printf("%d\n", ids[i]);
    free(ids);
    return fflush(stdout) || ferror(stdout) ? lk_seterr(err, LK_EIO, "<stdout>: write error") : 0;
}

/* --decode: whitespace-separated ids on stdin -> text on stdout */
static int do_decode(const lk_tokenizer *tok, int skip_special, lk_err *err) {
    char *text;
    size_t len;
    if (lk_read_file("-", &text, &len, err)) return err->code;
    int *ids = NULL;
    size_t n = 0, cap = 0;
    int vocab = lk_tok_vocab_size(tok);
    for (char *p = text;;) {
        while (isspace((unsigned char)*p)) p++;
        if (!*p) break;
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || (*end && !isspace((unsigned char)*end)) || v < 0 || v >= vocab) {
            int w = (int)strcspn(p, " \t\r\n");
            lk_seterr(err, LK_EINPUT, "<stdin>: bad token id '%.*s' (expected integers in [0, %d))",
                      w > 40 ? 40 : w, p, vocab);
            free(text);
            free(ids);
            return LK_EINPUT;
        }
        if (n == cap) ids = lk_realloc(ids, (cap = cap ? 2 * cap : 1024) * sizeof *ids);
        ids[n++] = (int)v;
        p = end;
    }
    free(text);
    char *out = NULL;
    size_t olen = 0, ocap = 0;
    int rc = lk_tok_decode(tok, ids, n, skip_special, &out, &olen, &ocap, err);
    free(ids);
    if (rc) return rc;
    fwrite(out ? out : "", 1, olen, stdout);
    free(out);
    return fflush(stdout) || ferror(stdout) ? lk_seterr(err, LK_EIO, "<stdout>: write error") : 0;
}

int main(int argc, char **argv) {
    lk_progname = "leank-prep";
    enum { O_ENCODE = 256, O_DECODE, O_ADD_SPECIAL, O_SKIP_SPECIAL };
    static const struct option opts[] = {{"help", no_argument, 0, 'h'},
                                         {"version", no_argument, 0, 'V'},
                                         {"tokenizer", required_argument, 0, 't'},
                                         {"encode", no_argument, 0, O_ENCODE},
                                         {"decode", no_argument, 0, O_DECODE},
                                         {"add-special", no_argument, 0, O_ADD_SPECIAL},
                                         {"skip-special", no_argument, 0, O_SKIP_SPECIAL},
                                         {0, 0, 0, 0}};
    const char *tok_path = NULL;
    int mode = 0, add_special = 0, skip_special = 0, c;
    while ((c = getopt_long(argc, argv, "hVt:", opts, NULL)) != -1) {
        switch (c) {
        case 'h': usage(stdout); return 0;
        case 'V': lk_print_version(stdout); return 0;
        case 't': tok_path = optarg; break;
        case O_ENCODE: case O_DECODE: mode = c; break;
        case O_ADD_SPECIAL: add_special = 1; break;
        case O_SKIP_SPECIAL: skip_special = 1; break;
        default: usage(stderr); return LK_EUSAGE;
        }
    }
    if (optind < argc) lk_die(LK_EUSAGE, "unexpected argument '%s' (see --help)", argv[optind]);
    if (!mode) lk_die(LK_EUSAGE, "nothing to do (see --help)");
    if (!tok_path) lk_die(LK_EUSAGE, "--tokenizer PATH is required");
    lk_err err = {0};
    lk_tokenizer *tok;
    if (lk_tok_load(&tok, tok_path, &err)) lk_fail(&err);
    int rc = mode == O_ENCODE ? do_encode(tok, add_special, &err) : do_decode(tok, skip_special, &err);
    lk_tok_free(tok);
    if (rc) lk_fail(&err);
    return 0;
}
