/* leank-decode - generate text on the GPU (or the CPU reference engine),
 * dense or with a LeanK plan or mask (pruned K cache). One prompt (streamed
 * text) or a JSON-lines batch. See leank-decode(1). */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "batch.h"    /* one --batch request line */
#include "chat.h"     /* chat templates (llama3, qwen, none) */
#include "engine.h"   /* the model on a device: CPU or CUDA backend */
#include "generate.h" /* prefill + sampling loop, streamed text */
#include "plan.h"     /* the cache geometry: dense, or a LeanK plan/mask */
#include "tokenizer.h"/* encode the prompt, stream-decode the output */
#include "cli.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: leank-decode -m MODEL_DIR [OPTION]... [--prompt TEXT | --prompt-file FILE]\n"
            "       leank-decode -m MODEL_DIR --batch FILE|- [OPTION]...\n"
            "Generate text on the GPU (default when built with CUDA and one is present) or the\n"
            "CPU; the prompt is read from stdin when neither --prompt nor --prompt-file is given.\n\n"
            "  -m, --model DIR        model directory (config.json, safetensors, tokenizer.json)\n"
            "      --device D         cuda, cpu or auto (default auto)\n"
            "  -p, --prompt TEXT      the prompt\n"
            "  -f, --prompt-file FILE read the prompt from FILE ('-' = stdin)\n"
            "      --template NAME    chat template: %s (default none)\n"
            "      --system TEXT      system message for the template\n"
            "      --max-tokens N     generate at most N tokens (default 256)\n"
            "      --temperature T    0 = greedy (default 0)\n"
            "      --top-k K          sample among the K most likely tokens (0 = off)\n"
            "      --top-p P          nucleus sampling, 0 < P <= 1 (1 = off)\n"
            "  -s, --seed N           sampler seed (default 0)\n"
            "  -k, --mask FILE        LeanK decode plan (leank-pack) or mask (safetensors or TSV):\n"
            "                         pruned cache; --plan FILE is the same option; a name\n"
            "                         (qwen2.5-coder-1.5b-instruct) picks a mask leank ships\n"
            "      --sink N           first N tokens keep full keys (default: the plan's, or the\n"
            "                         mask's training window; else 128)\n"
            "      --recent N         last N tokens keep full keys (default: likewise; else 1024)\n"
            "      --ids              print token ids (space separated) instead of text\n"
            "      --echo             print the prompt before the generated text\n"
            "      --json             print one JSON summary on stdout instead of streaming\n"
            "      --batch FILE|-     JSON-lines requests in, one JSON result a line out\n"
            "      --progress         prefill progress on stderr even when it is not a terminal\n"
            "  -q, --quiet            no statistics on stderr\n"
            "  -h, --help             show this help and exit\n"
            "  -V, --version          show the version and exit\n",
            lk_chat_names);
}

/* Everything loaded once. */
typedef struct {
    lk_engine *eng;
    lk_tokenizer *tok;
    lk_plan plan;
    int has_plan;
    lk_generator gen;
} engine;

/* Output while generating (stdout: text or ids as they come). */
typedef struct {
    FILE *f;
    int ids; /* print ids rather than text */
} stream;

static void on_prompt(void *ctx, const int *ids, int n, const char *text, size_t len) {
    const stream *o = ctx;
    if (o->ids)
        for (int i = 0; i < n; i++) fprintf(o->f, "%d ", ids[i]);
    else
        fwrite(text, 1, len, o->f);
    fflush(o->f);
}

static void on_token(void *ctx, int id, const char *piece, size_t len) {
    const stream *o = ctx;
    if (o->ids)
        fprintf(o->f, "%d ", id);
    else
        fwrite(piece, 1, len, o->f);
    fflush(o->f);
}

static void on_end(void *ctx, const char *piece, size_t len) {
    const stream *o = ctx;
    if (o->ids)
        fputc('\n', o->f);
    else
        fwrite(piece, 1, len, o->f);
    fflush(o->f);
}

static double rate(int n, double s) { return s > 0 ? n / s : 0.0; }

static json_t *result_json(const lk_gen_request *q, const lk_gen_result *r) {
    json_t *ids = json_array();
    for (int i = 0; i < r->n; i++) json_array_append_new(ids, json_integer(r->ids[i]));
    json_t *o = json_object();
    json_object_set_new(o, "text", json_stringn(r->text, r->len));
    json_object_set_new(o, "ids", ids);
    json_object_set_new(o, "prompt_tokens", json_integer(q->n_prompt));
    json_object_set_new(o, "generated_tokens", json_integer(r->n));
    json_object_set_new(o, "stop", json_string(r->stopped_eos ? "eos" : "length"));
    json_object_set_new(o, "prefill_tok_s", json_real(rate(q->n_prompt, r->prefill_s)));
    json_object_set_new(o, "decode_tok_s", json_real(rate(r->n_decode, r->decode_s)));
    json_object_set_new(o, "kv_bytes", json_integer((json_int_t)r->kv.bytes));
    json_object_set_new(o, "kv_dense_bytes", json_integer((json_int_t)r->kv.dense));
    json_object_set_new(o, "kv_dtype", json_string(r->kv.dtype));
    return o;
}

static void print_stats(const engine *e, const lk_gen_request *q, const lk_gen_result *r) {
    fprintf(stderr,
            "leank-decode: %s; prompt %d tokens, generated %d (%s); prefill %.1f tok/s, decode %.1f tok/s\n",
            lk_engine_device_name(e->eng), q->n_prompt, r->n, r->stopped_eos ? "eos" : "length",
            rate(q->n_prompt, r->prefill_s), rate(r->n_decode, r->decode_s));
    char kv[160]; /* the toolkit's one wording (leank-pack's too) */
    fprintf(stderr, "leank-decode: %s\n", lk_kv_phrase(kv, sizeof kv, (double)r->kv.bytes, (double)r->kv.dense, r->kv.dtype));
    if (e->has_plan && !r->kv.pruned)
        lk_warn("the %d-token sequence fits in sink %d + recent %d: the pruned run was exactly dense",
                q->n_prompt + r->n, e->plan.sink, e->plan.recent);
}

/* Prompt text -> ids through the template. */
static int encode_prompt(engine *e, const char *template, const char *system, const char *text,
                         lk_gen_request *q, int **ids_out, lk_err *err) {
    if (lk_chat_check(template, e->tok, "tokenizer.json", err)) return err->code;
    char *formatted = lk_chat_format(template, system, text, err);
    if (!formatted) return err->code ? err->code : LK_EUSAGE;
    size_t n = 0, cap = 0;
    int *ids = NULL;
    int rc = lk_tok_encode(e->tok, formatted, strlen(formatted), !strcmp(template, "none"), &ids,
                           &n, &cap, err);
    free(formatted);
    if (rc) {
        free(ids);
        return rc;
    }
    /* a text that already starts with BOS (a leank-prep --dump prompt, say)
     * does not get a second one from the post-processor */
    int bos = lk_tok_bos(e->tok);
    if (n >= 2 && bos >= 0 && ids[0] == bos && ids[1] == bos) memmove(ids, ids + 1, --n * sizeof *ids);
    q->prompt = *ids_out = ids;
    q->n_prompt = (int)n;
    return 0;
}

/* A --batch line: at most 64 MiB (a longer one, /dev/zero's say, is not a
 * request), newline included, NUL-terminated. Its length, 0 at the end of
 * the input, -1 on a read error, -2 when longer (the rest of it unread). */
#define BATCH_LINE_MAX ((size_t)64 << 20)
static ssize_t batch_line(FILE *in, char **line, size_t *cap) {
    size_t n = 0;
    int c;
    while ((c = getc_unlocked(in)) != EOF) {
        if (n == BATCH_LINE_MAX) return -2;
        if (n + 2 > *cap) {
            size_t want = *cap ? 2 * *cap : 4096;
            *line = lk_realloc(*line, *cap = want < BATCH_LINE_MAX + 1 ? want : BATCH_LINE_MAX + 1);
        }
        (*line)[n++] = (char)c;
        if (c == '\n') break;
    }
    if (ferror(in)) return -1;
    if (n) (*line)[n] = 0;
    return (ssize_t)n;
}

/* --batch: one JSON request a line, one JSON result a line. */
static int run_batch(engine *e, const char *path, const lk_gen_request *defaults, const char *template,
                     const char *system, lk_err *err) {
    FILE *in = strcmp(path, "-") ? fopen(path, "r") : stdin;
    if (!in) return lk_seterr(err, LK_EIO, "%s: cannot open: %s", path, strerror(errno));
    char *line = NULL;
    size_t lcap = 0;
    ssize_t ll;
    long lineno = 0;
    int rc = 0;
    lk_gen_result r = {0};
    int progress = e->gen.progress != NULL;
    while (rc == 0 && (ll = batch_line(in, &line, &lcap)) > 0) {
        lineno++;
        if (strspn(line, " \t\r\n") == (size_t)ll) continue;
        char where[64 + sizeof err->msg / 2];
        snprintf(where, sizeof where, "%.500s:%ld", path, lineno);
        lk_batch_req b;
        lk_gen_request q;
        int *prompt_ids = NULL;
        rc = lk_batch_parse(&b, line, (size_t)ll, where, lk_engine_config(e->eng)->vocab_size, defaults, template, system, err);
        q = b.q;
        json_t *id = rc == 0 && b.json ? json_object_get((json_t *)b.json, "id") : NULL; /* echoed in the result */
        if (rc == 0 && b.ids) {
            q.prompt = b.ids;
            q.n_prompt = b.n_ids;
        } else if (rc == 0 && encode_prompt(e, b.template, b.system, b.prompt, &q, &prompt_ids, err)) {
            char m[sizeof err->msg];
            snprintf(m, sizeof m, "%s", err->msg);
            rc = lk_seterr(err, err->code ? err->code : LK_EINPUT, "%s: %s", where, m);
        }
        if (rc == 0) {
            if (progress) fprintf(stderr, "\rleank-decode: request %ld", lineno);
            if ((rc = lk_generate(&e->gen, &q, e->has_plan ? &e->plan : NULL, NULL, &r, err)) == 0) {
                json_t *res = result_json(&q, &r);
                if (id) json_object_set(res, "id", id);
                char *s = json_dumps(res, JSON_COMPACT);
                puts(s);
                fflush(stdout);
                free(s);
                json_decref(res);
            } else {
                char m[sizeof err->msg];
                snprintf(m, sizeof m, "%s", err->msg);
                rc = lk_seterr(err, err->code, "%s:%ld: %s", path, lineno, m);
            }
        }
        free(prompt_ids);
        lk_batch_req_free(&b);
    }
    if (rc == 0 && ll == -2) {
        char hb[32];
        rc = lk_seterr(err, LK_EINPUT, "%s:%ld: longer than %s (expected one JSON request a line)", path, lineno + 1,
                       lk_human_bytes(hb, sizeof hb, (double)BATCH_LINE_MAX));
    } else if (rc == 0 && ll < 0)
        rc = lk_seterr(err, LK_EIO, "%s:%ld: read error: %s", path, lineno + 1, strerror(errno));
    if (progress) fputc('\n', stderr);
    free(line);
    lk_gen_result_free(&r);
    if (in != stdin) fclose(in);
    if (rc == 0 && ferror(stdout)) rc = lk_seterr(err, LK_EIO, "<stdout>: write error");
    return rc;
}

int main(int argc, char **argv) {
    lk_progname = "leank-decode";
    atexit(lk_close_stdout); /* a write error on stdout is an error */
    enum { O_TEMP = 256, O_TOPK, O_TOPP, O_SEED, O_MASK, O_SINK, O_RECENT, O_IDS, O_ECHO,
           O_JSON, O_BATCH, O_SYSTEM, O_PROGRESS, O_TEMPLATE, O_MAXTOK, O_DEVICE };
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'},     {"prompt", required_argument, 0, 'p'},
        {"prompt-file", required_argument, 0, 'f'}, {"template", required_argument, 0, O_TEMPLATE},
        {"system", required_argument, 0, O_SYSTEM}, {"max-tokens", required_argument, 0, O_MAXTOK},
        {"temperature", required_argument, 0, O_TEMP}, {"top-k", required_argument, 0, O_TOPK},
        {"top-p", required_argument, 0, O_TOPP},  {"seed", required_argument, 0, 's'},
        {"mask", required_argument, 0, 'k'},      {"plan", required_argument, 0, 'k'},
        {"device", required_argument, 0, O_DEVICE}, {"sink", required_argument, 0, O_SINK},
        {"recent", required_argument, 0, O_RECENT}, {"ids", no_argument, 0, O_IDS},
        {"echo", no_argument, 0, O_ECHO},         {"json", no_argument, 0, O_JSON},
        {"batch", required_argument, 0, O_BATCH}, {"quiet", no_argument, 0, 'q'},
        {"help", no_argument, 0, 'h'},            {"version", no_argument, 0, 'V'},
        {"progress", no_argument, 0, O_PROGRESS}, {0, 0, 0, 0}};
    const char *model_dir = NULL, *prompt = NULL, *prompt_file = NULL, *template = "none",
               *system = NULL, *mask_path = NULL, *batch = NULL;
    lk_gen_request def = {.max_tokens = 256, .temperature = 0.0f, .top_k = 0, .top_p = 1.0f, .seed = 0};
    int sink = -1, recent = -1, ids_mode = 0, echo = 0, json = 0, quiet = 0, progress = 0;
    lk_engine_opts eo = {.device = LK_DEVICE_AUTO};
    int c;
    while ((c = getopt_long(argc, argv, "m:p:f:t:n:k:s:qhV", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model_dir = optarg; break;
        case 'p': prompt = optarg; break;
        case 'f': prompt_file = optarg; break;
        case 't': lk_die(LK_EUSAGE, "-t is the tokenizer across leank (see leank(7)): the chat template is --template %s", optarg);
        case 'n': lk_die(LK_EUSAGE, "-n counts samples across leank (see leank(7)): the tokens to generate are --max-tokens %s", optarg);
        case O_TEMPLATE: template = optarg; break;
        case O_PROGRESS: progress = 1; break;
        case O_SYSTEM: system = optarg; break;
        case O_MAXTOK: def.max_tokens = (int)lk_parse_long("--max-tokens", optarg, 0, 1000000); break;
        case O_TEMP: def.temperature = (float)lk_parse_double("--temperature", optarg, 0, 100); break;
        case O_TOPK: def.top_k = (int)lk_parse_long("--top-k", optarg, 0, 1 << 30); break;
        case O_TOPP:
            def.top_p = (float)lk_parse_double("--top-p", optarg, 0, 1);
            if (!(def.top_p > 0)) lk_die(LK_EUSAGE, "--top-p: '%s' is not in (0, 1] (expected 0 < P <= 1; 1 = off)", optarg);
            break;
        case 's': def.seed = (uint64_t)lk_parse_long("--seed", optarg, 0, INT64_MAX); break;
        case 'k': mask_path = optarg; break;
        case O_SINK: sink = (int)lk_parse_long("--sink", optarg, 0, 1 << 30); break;
        case O_RECENT: recent = (int)lk_parse_long("--recent", optarg, 1, 1 << 30); break;
        case O_DEVICE: {
            int d = lk_device_parse(optarg);
            if (d < 0) lk_die(LK_EUSAGE, "--device: '%s' (expected cuda, cpu or auto)", optarg);
            eo.device = (lk_device)d;
            break;
        }
        case O_IDS: ids_mode = 1; break;
        case O_ECHO: echo = 1; break;
        case O_JSON: json = 1; break;
        case O_BATCH: batch = optarg; break;
        case 'q': quiet = 1; break;
        case 'h': usage(stdout); return 0;
        case 'V': lk_print_version(stdout); return 0;
        default: usage(stderr); return LK_EUSAGE;
        }
    }
    if (optind < argc) lk_die(LK_EUSAGE, "unexpected argument '%s' (see --help)", argv[optind]);
    if (!model_dir) lk_die(LK_EUSAGE, "no model: give -m MODEL_DIR (see --help)");
    if (prompt && prompt_file) lk_die(LK_EUSAGE, "--prompt and --prompt-file are exclusive");
    if (batch && (prompt || prompt_file)) lk_die(LK_EUSAGE, "--batch takes no --prompt/--prompt-file");
    if ((sink >= 0 || recent >= 0) && !mask_path) lk_die(LK_EUSAGE, "--sink/--recent need --plan or --mask");
    if (!lk_chat_known(template))
        lk_die(LK_EUSAGE, "unknown template '%s' (expected one of: %s)", template, lk_chat_names);

    lk_err err = {0};
    engine e = {0};
    if (lk_tok_load(&e.tok, model_dir, &err)) lk_fail(&err);
    if (lk_engine_open(&e.eng, model_dir, &eo, &err)) lk_fail(&err);
    if (mask_path) {
        int overridden;
        if (lk_plan_open(&e.plan, mask_path, lk_engine_config(e.eng), model_dir, sink, recent,
                         lk_engine_cache_dtype(e.eng), &overridden, &err))
            lk_fail(&err);
        e.has_plan = 1;
        if (overridden && !quiet)
            lk_warn("--sink/--recent override the plan's windows: sink %d, recent %d", e.plan.sink, e.plan.recent);
    }
    lk_generator_init(&e.gen, e.eng, e.tok);
    if (lk_progress_enabled(progress)) e.gen.progress = "leank-decode";

    int rc;
    if (batch) {
        rc = run_batch(&e, batch, &def, template, system, &err);
    } else {
        char *text;
        size_t len;
        if (prompt) {
            text = lk_strdup(prompt);
        } else if (lk_read_file(prompt_file ? prompt_file : "-", 64u << 20, "a UTF-8 prompt", &text, &len, &err)) {
            lk_fail(&err);
        }
        lk_gen_request q = def;
        int *prompt_ids;
        if (encode_prompt(&e, template, system, text, &q, &prompt_ids, &err)) lk_fail(&err);
        free(text);
        lk_gen_result r = {0};
        stream st = {stdout, ids_mode};
        lk_gen_stream out = {echo ? on_prompt : NULL, on_token, on_end, &st};
        rc = lk_generate(&e.gen, &q, e.has_plan ? &e.plan : NULL, json ? NULL : &out, &r, &err);
        if (rc == 0 && json) {
            json_t *o = result_json(&q, &r);
            char *s = json_dumps(o, JSON_COMPACT);
            puts(s);
            free(s);
            json_decref(o);
        } else if (rc == 0 && !ids_mode && r.len && r.text[r.len - 1] != '\n') {
            if (isatty(fileno(stdout))) fputc('\n', stdout);
        }
        if (rc == 0 && (fflush(stdout) || ferror(stdout)))
            rc = lk_seterr(&err, LK_EIO, "<stdout>: write error: %s", strerror(errno));
        if (rc == 0 && !quiet) print_stats(&e, &q, &r);
        free(prompt_ids);
        lk_gen_result_free(&r);
    }
    if (e.has_plan) lk_plan_free(&e.plan);
    lk_tok_free(e.tok);
    lk_engine_free(e.eng);
    if (rc) lk_fail(&err);
    return 0;
}
