/* leank-prep - corpora and a tokenizer -> training / evaluation samples; also
 * the tokenizer on the command line (--encode, --decode). See leank-prep(1). */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <pthread.h>

#include "chat.h"
#include "prep.h"
#include "samples.h"
#include "tokenizer.h"
#include "cli.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: leank-prep -t TOKENIZER [--corpus FILE]... --task LIST --lengths L,... [-n N] -o OUT\n"
            "       leank-prep -t TOKENIZER --dump [SAMPLES] [-o OUT.jsonl]\n"
            "       leank-prep -t TOKENIZER --encode [--add-special] < TEXT\n"
            "       leank-prep -t TOKENIZER --decode [--skip-special] < IDS\n"
            "Makes training / evaluation samples sized in the tokenizer's tokens (see leank-prep(1)).\n\n"
            "  -t, --tokenizer PATH  model directory or tokenizer.json (required)\n"
            "      --corpus FILE     haystack text: .json {\"text\"}, .jsonl[.zst] lines with \"text\",\n"
            "                        a directory of .txt files, or a .txt file (repeatable;\n"
            "                        - = stdin, any of those kinds but a directory)\n"
            "  -T, --task LIST       comma-separated tasks; train (= train-uuid and train-essay\n"
            "                        alternating), ruler (the 11 RULER tasks), all; --list-tasks\n"
            "  -l, --lengths L,...   target lengths in tokens (prompt + answer), e.g. 4096,16384\n"
            "      --min L --max L --count K   K lengths evenly spaced from L to L\n"
            "  -n, --samples N       samples per task and length (default 100)\n"
            "      --template NAME   chat template of the prompt: llama3, qwen, none (default none)\n"
            "  -s, --seed N          random seed (default 42)\n"
            "  -w, --words PATH      word lists: a directory with adjectivelist.txt and nounlist.txt\n"
            "                        (verblist.txt too if present) or a word-per-line file (- = stdin)\n"
            "                        (default /usr/share/dict/words)\n"
            "      --pool TOKENS     tokens of each corpus read for haystacks (default 4 x the\n"
            "                        longest length, at least 262144)\n"
            "  -j, --threads N       generator threads (default 2)\n"
            "  -o, --output FILE     output file, - for stdout (default -; not a terminal)\n"
            "      --dump            samples file (argument or stdin) -> JSON lines with the text\n"
            "      --list-tasks      list the tasks and exit\n"
            "      --encode          UTF-8 text on stdin -> token ids, one per line\n"
            "      --add-special     with --encode: add the post-processor's BOS\n"
            "      --decode          whitespace-separated ids on stdin -> text\n"
            "      --skip-special    with --decode: leave special tokens out\n"
            "      --progress        progress on stderr even when it is not a terminal\n"
            "  -h, --help            show this help and exit\n"
            "  -V, --version         show the version and exit\n");
}

/* --encode: stdin text -> ids, one decimal per line on stdout */
static int do_encode(const lk_tokenizer *tok, int add_special, lk_err *err) {
    char *text;
    size_t len;
    if (lk_read_file("-", 256u << 20, "UTF-8 text", &text, &len, err)) return err->code;
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
    if (lk_read_file("-", 256u << 20, "token ids", &text, &len, err)) return err->code;
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

/* ---- generation ---- */
typedef struct {
    const char *task;
    int len;
    long index;
} job;

typedef struct {
    lk_sample s; /* deep copy */
    lk_err err;
    int rc;
} result;

typedef struct {
    lk_prep *prep;
    const job *jobs;
    result *res;
    int n, stride, first;
} worker_arg;

static void copy_sample(lk_sample *d, const lk_sample *s) {
    *d = *s;
    d->ctx = memcpy(lk_malloc((size_t)s->n_ctx * sizeof(int) + 1), s->ctx, (size_t)s->n_ctx * sizeof(int));
    d->ans = memcpy(lk_malloc((size_t)s->n_ans * sizeof(int) + 1), s->ans, (size_t)s->n_ans * sizeof(int));
    d->depths = memcpy(lk_malloc((size_t)s->n_depths * sizeof(double) + 1), s->depths,
                       (size_t)s->n_depths * sizeof(double));
    d->refs = lk_malloc((size_t)(s->n_refs + 1) * sizeof(char *));
    for (int i = 0; i < s->n_refs; i++) d->refs[i] = lk_strdup(s->refs[i]);
    d->needles = lk_malloc((size_t)(s->n_needles + 1) * sizeof(char *));
    for (int i = 0; i < s->n_needles; i++) d->needles[i] = lk_strdup(s->needles[i]);
}

static void free_sample(lk_sample *s) {
    free(s->ctx);
    free(s->ans);
    free(s->depths);
    for (int i = 0; i < s->n_refs; i++) free(s->refs[i]);
    for (int i = 0; i < s->n_needles; i++) free(s->needles[i]);
    free(s->refs);
    free(s->needles);
}

static void *worker(void *arg) {
    worker_arg *a = arg;
    lk_prep_gen *g;
    lk_err gerr = {0};
    int grc = lk_prep_gen_new(&g, a->prep, &gerr);
    for (int i = a->first; i < a->n; i += a->stride) {
        lk_sample s;
        result *r = &a->res[i];
        if (grc) { /* every sample of this worker fails as it did */
            r->rc = grc;
            r->err = gerr;
            continue;
        }
        r->rc = lk_prep_sample(g, a->jobs[i].task, a->jobs[i].len, a->jobs[i].index, &s, &r->err);
        if (!r->rc) copy_sample(&r->s, &s);
    }
    lk_prep_gen_free(g);
    return NULL;
}

static char *params_json(const lk_prep_opts *o, char **tasks, int n_tasks, const int *lens, int n_lens, long n,
                         const char *tok_path) {
    json_t *j = json_object(), *a;
    json_object_set_new(j, "generator", json_string("leank-prep " LEANK_VERSION));
    json_object_set_new(j, "seed", json_integer((json_int_t)o->seed));
    json_object_set_new(j, "tasks", a = json_array());
    for (int i = 0; i < n_tasks; i++) json_array_append_new(a, json_string(tasks[i]));
    json_object_set_new(j, "lengths", a = json_array());
    for (int i = 0; i < n_lens; i++) json_array_append_new(a, json_integer(lens[i]));
    json_object_set_new(j, "samples_per_task_length", json_integer(n));
    json_object_set_new(j, "template", json_string(o->template_name));
    json_object_set_new(j, "corpora", a = json_array());
    for (int i = 0; i < o->n_corpora; i++) json_array_append_new(a, json_string(o->corpora[i]));
    json_object_set_new(j, "words", o->words ? json_string(o->words) : json_null());
    json_object_set_new(j, "pool_tokens", json_integer(o->pool_tokens));
    json_object_set_new(j, "tokenizer", json_string(tok_path));
    char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(j);
    return s;
}

/* Appends a task name once: a task named twice (or also inside ruler/all)
 * would repeat the same samples. */
static void add_task(char ***tasks, int *n, const char *name) {
    for (int i = 0; i < *n; i++)
        if (!strcmp((*tasks)[i], name)) return;
    *tasks = lk_realloc(*tasks, (size_t)(*n + 1) * sizeof **tasks);
    (*tasks)[(*n)++] = lk_strdup(name);
}

/* ---- --dump ---- */
static json_t *ids_text(const lk_tokenizer *tok, const int *ids, int n, lk_err *err) {
    char *out = NULL;
    size_t len = 0, cap = 0;
    if (lk_tok_decode(tok, ids, (size_t)n, 0, &out, &len, &cap, err)) {
        free(out);
        return NULL;
    }
    json_t *j = json_stringn(out ? out : "", len);
    free(out);
    return j;
}

static int do_dump(const lk_tokenizer *tok, const char *in, const char *outp, lk_err *err) {
    lk_samples_reader *r;
    if (lk_samples_open(&r, in, err)) return err->code;
    const lk_samples_header *h = lk_samples_hdr(r);
    if (h->tok_fingerprint != lk_tok_fingerprint(tok)) {
        lk_seterr(err, LK_EINPUT, "%s: made with another tokenizer (fingerprint %016llx; expected %016llx of -t)",
                  strcmp(in, "-") ? in : "<stdin>", (unsigned long long)h->tok_fingerprint,
                  (unsigned long long)lk_tok_fingerprint(tok));
        lk_samples_close(r);
        return err->code;
    }
    lk_out o;
    if (lk_out_open(&o, outp, err)) {
        lk_samples_close(r);
        return err->code;
    }
    json_error_t je;
    json_t *params = json_loads(h->params, 0, &je);
    json_t *hj = json_pack("{s:i,s:s,s:o}", "version", (int)h->version, "tokenizer_fingerprint",
                           "", "params", params ? params : json_null());
    char fp[24];
    snprintf(fp, sizeof fp, "%016llx", (unsigned long long)h->tok_fingerprint);
    json_object_set_new(hj, "tokenizer_fingerprint", json_string(fp));
    json_dumpf(hj, o.f, JSON_COMPACT);
    fputc('\n', o.f);
    json_decref(hj);
    lk_sample s;
    int rc;
    while ((rc = lk_samples_next(r, &s, err)) == 1) {
        json_t *j = json_object(), *a;
        json_object_set_new(j, "index", json_integer(lk_samples_index(r) - 1));
        json_object_set_new(j, "task", json_string(s.task));
        json_object_set_new(j, "target_len", json_integer(s.target_len));
        json_object_set_new(j, "n_ctx", json_integer(s.n_ctx));
        json_object_set_new(j, "n_ans", json_integer(s.n_ans));
        json_object_set_new(j, "question_pos", json_integer(s.question_pos));
        json_object_set_new(j, "depths", a = json_array());
        for (int i = 0; i < s.n_depths; i++) json_array_append_new(a, json_real(s.depths[i]));
        json_object_set_new(j, "needles", a = json_array());
        for (int i = 0; i < s.n_needles; i++) json_array_append_new(a, json_string(s.needles[i]));
        json_object_set_new(j, "refs", a = json_array());
        for (int i = 0; i < s.n_refs; i++) json_array_append_new(a, json_string(s.refs[i]));
        json_t *pt = ids_text(tok, s.ctx, s.n_ctx, err), *at = pt ? ids_text(tok, s.ans, s.n_ans, err) : NULL;
        if (!at) {
            json_decref(pt);
            json_decref(j);
            lk_err e = *err; /* name the file and the sample */
            rc = -lk_seterr(err, e.code ? e.code : LK_EFAIL, "%s: sample %ld: %s", strcmp(in, "-") ? in : "<stdin>",
                            lk_samples_index(r), e.msg);
            break;
        }
        json_object_set_new(j, "prompt", pt);
        json_object_set_new(j, "answer", at);
        json_dumpf(j, o.f, JSON_COMPACT);
        fputc('\n', o.f);
        json_decref(j);
    }
    lk_samples_close(r);
    if (rc < 0) {
        lk_out_abort(&o);
        return -rc;
    }
    return lk_out_commit(&o, err);
}

static char **split_list(const char *arg, int *n) {
    char *dup = lk_strdup(arg), **v = NULL;
    *n = 0;
    for (char *t = strtok(dup, ","); t; t = strtok(NULL, ",")) {
        v = lk_realloc(v, (size_t)(*n + 1) * sizeof *v);
        v[(*n)++] = lk_strdup(t);
    }
    free(dup);
    return v;
}

int main(int argc, char **argv) {
    lk_progname = "leank-prep";
    atexit(lk_close_stdout); /* a write error on stdout is an error */
    lk_install_cleanup();
    enum { O_ENCODE = 256, O_DECODE, O_ADD_SPECIAL, O_SKIP_SPECIAL, O_DUMP, O_LIST, O_MIN, O_MAX, O_COUNT,
           O_TEMPLATE, O_POOL, O_PROGRESS, O_CORPUS };
    static const struct option opts[] = {{"help", no_argument, 0, 'h'},
                                         {"version", no_argument, 0, 'V'},
                                         {"tokenizer", required_argument, 0, 't'},
                                         {"corpus", required_argument, 0, O_CORPUS},
                                         {"task", required_argument, 0, 'T'},
                                         {"lengths", required_argument, 0, 'l'},
                                         {"min", required_argument, 0, O_MIN},
                                         {"max", required_argument, 0, O_MAX},
                                         {"count", required_argument, 0, O_COUNT},
                                         {"samples", required_argument, 0, 'n'},
                                         {"template", required_argument, 0, O_TEMPLATE},
                                         {"seed", required_argument, 0, 's'},
                                         {"words", required_argument, 0, 'w'},
                                         {"pool", required_argument, 0, O_POOL},
                                         {"threads", required_argument, 0, 'j'},
                                         {"output", required_argument, 0, 'o'},
                                         {"dump", no_argument, 0, O_DUMP},
                                         {"list-tasks", no_argument, 0, O_LIST},
                                         {"encode", no_argument, 0, O_ENCODE},
                                         {"decode", no_argument, 0, O_DECODE},
                                         {"add-special", no_argument, 0, O_ADD_SPECIAL},
                                         {"skip-special", no_argument, 0, O_SKIP_SPECIAL},
                                         {"progress", no_argument, 0, O_PROGRESS},
                                         {0, 0, 0, 0}};
    const char *tok_path = NULL, *out_path = "-", *task_arg = NULL, *len_arg = NULL;
    const char **corpora = NULL;
    int n_corpora = 0, mode = 0, add_special = 0, skip_special = 0, progress = 0, c;
    long n_samples = 100, lmin = 0, lmax = 0, lcount = 0, threads = 2;
    lk_prep_opts po = {.seed = 42, .template_name = "none"};
    while ((c = getopt_long(argc, argv, "hVt:c:T:l:n:s:w:j:o:", opts, NULL)) != -1) {
        switch (c) {
        case 'h': usage(stdout); return 0;
        case 'V': lk_print_version(stdout); return 0;
        case 't': tok_path = optarg; break;
        case 'c':
            lk_die(LK_EUSAGE, "-c is the training config across leank (see leank(7)): give the corpus as --corpus %s", optarg);
        case O_CORPUS:
            corpora = lk_realloc(corpora, (size_t)(n_corpora + 1) * sizeof *corpora);
            corpora[n_corpora++] = optarg;
            break;
        case 'T': task_arg = optarg; break;
        case 'l': len_arg = optarg; break;
        case O_MIN: lmin = lk_parse_long("--min", optarg, 1, 1 << 24); break;
        case O_MAX: lmax = lk_parse_long("--max", optarg, 1, 1 << 24); break;
        case O_COUNT: lcount = lk_parse_long("--count", optarg, 1, 10000); break;
        case 'n': n_samples = lk_parse_long("--samples", optarg, 0, 100000000); break;
        case O_TEMPLATE: po.template_name = optarg; break;
        case 's': po.seed = (uint64_t)lk_parse_long("--seed", optarg, 0, LONG_MAX); break; /* JSON-safe */
        case 'w': po.words = optarg; break;
        case O_POOL: po.pool_tokens = lk_parse_long("--pool", optarg, 1024, 1L << 34); break;
        case 'j': threads = lk_parse_long("--threads", optarg, 1, 64); break;
        case 'o': out_path = optarg; break;
        case O_PROGRESS: progress = 1; break;
        case O_ENCODE: case O_DECODE: case O_DUMP: mode = c; break;
        case O_LIST:
            for (int i = 0; i < lk_prep_n_tasks; i++) printf("%-16s %s\n", lk_prep_tasks[i].name, lk_prep_tasks[i].what);
            printf("%-16s %s\n%-16s %s\n%-16s %s\n", "train", "train-uuid and train-essay, alternating", "ruler",
                   "the 11 RULER tasks (niah_*, vt, cwe, fwe)", "all", "every task above");
            return 0;
        case O_ADD_SPECIAL: add_special = 1; break;
        case O_SKIP_SPECIAL: skip_special = 1; break;
        default: usage(stderr); return LK_EUSAGE;
        }
    }
    if (!tok_path) lk_die(LK_EUSAGE, "--tokenizer PATH is required (see --help)");
    if (!lk_chat_known(po.template_name))
        lk_die(LK_EUSAGE, "--template: unknown chat template '%s' (expected one of: %s)", po.template_name,
               lk_chat_names);
    lk_err err = {0};
    if (mode == O_ENCODE || mode == O_DECODE) {
        if (optind < argc) lk_die(LK_EUSAGE, "unexpected argument '%s' (see --help)", argv[optind]);
        lk_tokenizer *tok;
        if (lk_tok_load(&tok, tok_path, &err)) lk_fail(&err);
        int rc = mode == O_ENCODE ? do_encode(tok, add_special, &err) : do_decode(tok, skip_special, &err);
        lk_tok_free(tok);
        if (rc) lk_fail(&err);
        return 0;
    }
    if (mode == O_DUMP) {
        if (argc - optind > 1) lk_die(LK_EUSAGE, "--dump takes one samples file (see --help)");
        lk_tokenizer *tok;
        if (lk_out_check(out_path, &err) || lk_tok_load(&tok, tok_path, &err)) lk_fail(&err);
        int rc = do_dump(tok, optind < argc ? argv[optind] : "-", out_path, &err);
        lk_tok_free(tok);
        if (rc) lk_fail(&err);
        return 0;
    }
    if (optind < argc) lk_die(LK_EUSAGE, "unexpected argument '%s' (see --help)", argv[optind]);

    /* tasks */
    if (!task_arg) lk_die(LK_EUSAGE, "--task LIST is required (see --list-tasks)");
    int n_arg;
    char **targ = split_list(task_arg, &n_arg), **tasks = NULL;
    int n_tasks = 0;
    for (int i = 0; i < n_arg; i++) {
        int all = !strcmp(targ[i], "all"), ruler = !strcmp(targ[i], "ruler");
        if (all || ruler) {
            for (int k = 0; k < lk_prep_n_tasks; k++) {
                const char *nm = lk_prep_tasks[k].name;
                if (ruler && (!strncmp(nm, "train", 5) || !strcmp(nm, "passkey"))) continue;
                add_task(&tasks, &n_tasks, nm);
            }
        } else if (!strcmp(targ[i], "train") || lk_prep_find_task(targ[i])) {
            add_task(&tasks, &n_tasks, targ[i]);
        } else
            lk_die(LK_EUSAGE, "--task: unknown task '%s' (see --list-tasks)", targ[i]);
        free(targ[i]);
    }
    free(targ);
    if (!n_tasks) lk_die(LK_EUSAGE, "--task: no task given (see --list-tasks)");
    for (int i = 0; i < n_tasks; i++)
        for (int j = 0; j < n_tasks; j++)
            if (!strcmp(tasks[i], "train") && !strncmp(tasks[j], "train-", 6))
                lk_die(LK_EUSAGE, "--task: train already includes %s", tasks[j]);
    /* lengths */
    int *lens = NULL, n_lens = 0;
    if (len_arg && (lmin || lmax || lcount)) lk_die(LK_EUSAGE, "give --lengths or --min/--max/--count, not both");
    if (len_arg) {
        char **v = split_list(len_arg, &n_lens);
        lens = lk_malloc((size_t)(n_lens + 1) * sizeof *lens);
        for (int i = 0; i < n_lens; i++) {
            lens[i] = (int)lk_parse_long("--lengths", v[i], 1, 1 << 24);
            free(v[i]);
        }
        free(v);
        if (!n_lens) lk_die(LK_EUSAGE, "--lengths: no length in '%s' (expected e.g. 4096,16384)", len_arg);
        for (int i = 0; i < n_lens; i++)
            for (int j = 0; j < i; j++)
                if (lens[i] == lens[j]) lk_die(LK_EUSAGE, "--lengths: %d given twice", lens[i]);
    } else if (lmin && lmax && lcount) {
        if (lmin > lmax) lk_die(LK_EUSAGE, "--min %ld is above --max %ld", lmin, lmax);
        n_lens = (int)lcount;
        lens = lk_malloc((size_t)n_lens * sizeof *lens);
        for (int i = 0; i < n_lens; i++)
            lens[i] = n_lens == 1 ? (int)lmin : (int)(lmin + ((lmax - lmin) * i + (n_lens - 1) / 2) / (n_lens - 1));
    } else
        lk_die(LK_EUSAGE, "give the lengths: --lengths L,... or --min L --max L --count K");
    int maxlen = 0;
    for (int i = 0; i < n_lens; i++) maxlen = lens[i] > maxlen ? lens[i] : maxlen;
    if (!po.pool_tokens) po.pool_tokens = 4L * maxlen > 262144 ? 4L * maxlen : 262144;
    if (!strcmp(out_path, "-")) lk_refuse_tty_stdout("a binary samples file");
    int n_stdin = po.words && !strcmp(po.words, "-");
    for (int i = 0; i < n_corpora; i++) n_stdin += !strcmp(corpora[i], "-");
    if (n_stdin > 1) lk_die(LK_EUSAGE, "standard input ('-') given for more than one of --corpus and --words");
    po.corpora = corpora;
    po.n_corpora = n_corpora;
    if (lk_out_check(out_path, &err)) lk_fail(&err); /* before the corpora are read */

    double t0 = lk_now();
    lk_tokenizer *tok;
    if (lk_tok_load(&tok, tok_path, &err)) lk_fail(&err);
    if (lk_chat_check(po.template_name, tok, tok_path, &err)) lk_fail(&err);
    lk_prep *prep;
    if (lk_prep_new(&prep, tok, &po, &err)) lk_fail(&err);
    int show = lk_progress_enabled(progress);
    if (show) lk_warn("loaded tokenizer, words and %d corpora in %.2f s", n_corpora, lk_now() - t0);

    /* every (task, length, index) in output order */
    long n_jobs = (long)n_tasks * n_lens * n_samples;
    job *jobs = lk_malloc((size_t)(n_jobs + 1) * sizeof *jobs);
    long k = 0;
    for (int ti = 0; ti < n_tasks; ti++)
        for (int li = 0; li < n_lens; li++)
            for (long i = 0; i < n_samples; i++) jobs[k++] = (job){tasks[ti], lens[li], i};

    lk_out out;
    if (lk_out_open(&out, out_path, &err)) lk_fail(&err);
    char *params = params_json(&po, tasks, n_tasks, lens, n_lens, n_samples, tok_path);
    lk_samples_writer *w;
    if (lk_samples_write_open(&w, out.f, out_path, lk_tok_fingerprint(tok), params, &err)) lk_fail(&err);
    free(params);
    /* batches: threads generate, the main thread writes in order */
    int nt = (int)threads;
    long batch = 4L * nt;
    result *res = lk_calloc((size_t)batch, sizeof *res);
    long long tokens = 0;
    for (long b0 = 0; b0 < n_jobs; b0 += batch) {
        int nb = (int)(n_jobs - b0 < batch ? n_jobs - b0 : batch);
        memset(res, 0, (size_t)nb * sizeof *res);
        worker_arg wa[64];
        pthread_t th[64];
        int use = nt < nb ? nt : nb;
        for (int i = 0; i < use; i++) {
            wa[i] = (worker_arg){prep, jobs + b0, res, nb, use, i};
            if (i && pthread_create(&th[i], NULL, worker, &wa[i])) lk_die(LK_EFAIL, "cannot start a thread");
        }
        worker(&wa[0]);
        for (int i = 1; i < use; i++) pthread_join(th[i], NULL);
        for (int i = 0; i < nb; i++) {
            if (res[i].rc) lk_fail(&res[i].err);
            if (lk_samples_write(w, &res[i].s, &err)) lk_fail(&err);
            tokens += res[i].s.n_ctx + res[i].s.n_ans;
            free_sample(&res[i].s);
        }
        if (show)
            fprintf(stderr, "\rleank-prep: %ld/%ld samples, %.1f M tokens, %.1f s", b0 + nb, n_jobs, tokens / 1e6,
                    lk_now() - t0);
    }
    if (show) fputc('\n', stderr);
    if (lk_samples_write_close(w, &err)) lk_fail(&err);
    if (lk_out_commit(&out, &err)) lk_fail(&err);
    free(res);
    free(jobs);
    for (int i = 0; i < n_tasks; i++) free(tasks[i]);
    free(tasks);
    free(lens);
    free(corpora);
    lk_prep_free(prep);
    lk_tok_free(tok);
    return 0;
}
