/* leank-pack - a mask and a model configuration -> the decode plan (the
 * LeanK KV-cache layout, lib/io/plan.h) and a report of the cache it implies:
 * bytes per token of K and V, dense vs pruned, and the whole cache at a
 * context length. See leank-pack(1). */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "mask.h"
#include "plan.h"
#include "cli.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: leank-pack --mask MASK (-m MODEL_DIR | --config config.json) [-o PLAN]\n"
            "  -k, --mask FILE      the mask (safetensors or TSV, as leank-binarize writes), or the\n"
            "                       name of a mask leank ships (qwen2.5-coder-1.5b-instruct)\n"
            "  -m, --model DIR      model directory (its config.json)\n"
            "      --config FILE    a config.json\n"
            "  -o, --output FILE    write the decode plan (safetensors, format=leank-plan); '-' = stdout\n"
            "      --sink N         full-width tokens at the start (default: the mask's, else 128)\n"
            "      --recent N       full-width most recent tokens (default: the mask's, else 1024)\n"
            "      --context N      tokens for the cache size report (default: the model's\n"
            "                       max_position_embeddings)\n"
            "      --dtype T        cache element type: bf16 (default), f16, f32\n"
            "      --gpu-mem SIZE   also the largest batch of --context-token sequences whose paged GPU\n"
            "                       caches fit in SIZE bytes of KV pool (suffix k, M, G: powers of 1000),\n"
            "                       dense and with the plan; e.g. the pool leank-bench e2e reports\n"
            "      --json           the report as one JSON object\n"
            "  -q, --quiet          no report (needs -o)\n"
            "  -h, --help           show this help and exit\n"
            "  -V, --version        show the version and exit\n");
}

#define human lk_human_bytes

/* where the windows came from, for the report */
static const char *windows_from = "the mask";

static double pct_saved(int64_t dense, int64_t pruned) {
    return dense ? 100.0 * (double)(dense - pruned) / (double)dense : 0.0;
}

/* --gpu-mem: the GPU engine's pages (plan.h), dense and pruned */
static double gpu_mem;
static void batch_fit(const lk_plan *p, const lk_config *c, int *dense, int *pruned, size_t *sd, size_t *sp) {
    lk_kv_pages a, b;
    lk_kv_pages_at(c, NULL, p->elem_bytes, p->context, &a);
    lk_kv_pages_at(c, p, p->elem_bytes, p->context, &b);
    *sd = a.bytes;
    *sp = b.bytes;
    *dense = a.bytes ? (int)(gpu_mem / (double)a.bytes) : 0;
    *pruned = b.bytes ? (int)(gpu_mem / (double)b.bytes) : 0;
}

static void report_text(FILE *f, const lk_plan *p, const lk_config *c, const char *mask,
                        const lk_plan_bytes *b) {
    char h1[32], h2[32];
    int zero = 0;
    for (int i = 0; i < p->n_layers * p->n_kv_heads; i++) zero += p->width[i] == 0;
    int64_t full_k = p->k_off[p->n_layers], all_k = (int64_t)p->n_layers * p->n_kv_heads * p->head_dim;
    fprintf(f, "plan: %s on %s (%d layers, %d kv heads, head_dim %d)\n", mask, c->arch, p->n_layers,
            p->n_kv_heads, p->head_dim);
    fprintf(f, "mask: %.2f %% of K channels kept, %d of %d heads width 0 (V dropped), widths multiple of %d\n",
            100.0 * full_k / all_k, zero, p->n_layers * p->n_kv_heads, p->align);
    fprintf(f, "cache: %s (%d bytes), sink %d + recent %d tokens full width (%s)\n", p->dtype,
            p->elem_bytes, p->sink, p->recent, windows_from);
    fprintf(f, "\nbytes per token     dense       pruned (middle token)   saved\n");
    fprintf(f, "  K            %10lld   %10lld               %6.2f %%\n", (long long)b->k_dense,
            (long long)b->k_middle, pct_saved(b->k_dense, b->k_middle));
    fprintf(f, "  V            %10lld   %10lld               %6.2f %%\n", (long long)b->v_dense,
            (long long)b->v_middle, pct_saved(b->v_dense, b->v_middle));
    fprintf(f, "  K+V          %10lld   %10lld               %6.2f %%\n",
            (long long)(b->k_dense + b->v_dense), (long long)(b->k_middle + b->v_middle),
            pct_saved(b->k_dense + b->v_dense, b->k_middle + b->v_middle));
    fprintf(f, "\nKV cache at %ld tokens (%lld full width + %lld middle), per sequence:\n", p->context,
            (long long)b->n_full, (long long)b->n_middle);
    int64_t kd = (int64_t)p->context * b->k_dense, vd = (int64_t)p->context * b->v_dense;
    fprintf(f, "  K    dense %12s   pruned %12s   saved %6.2f %%\n", human(h1, sizeof h1, (double)kd),
            human(h2, sizeof h2, (double)b->k_total), pct_saved(kd, b->k_total));
    fprintf(f, "  V    dense %12s   pruned %12s   saved %6.2f %%\n", human(h1, sizeof h1, (double)vd),
            human(h2, sizeof h2, (double)b->v_total), pct_saved(vd, b->v_total));
    fprintf(f, "  K+V  dense %12s   pruned %12s   saved %6.2f %%\n",
            human(h1, sizeof h1, (double)b->total_dense), human(h2, sizeof h2, (double)b->total),
            pct_saved(b->total_dense, b->total));
    char phrase[160];
    fprintf(f, "\n%s at %ld tokens\n", lk_kv_phrase(phrase, sizeof phrase, (double)b->total, (double)b->total_dense, p->dtype),
            p->context);
    if (gpu_mem > 0) {
        int nd, np;
        size_t sd, sp;
        batch_fit(p, c, &nd, &np, &sd, &sp);
        fprintf(f, "largest batch in %s of GPU KV pool (pages as the CUDA engine reserves them): dense %d "
                "(%s a sequence), pruned %d (%s a sequence): %.2fx\n", human(h1, sizeof h1, gpu_mem), nd,
                human(h2, sizeof h2, (double)sd), np, human(phrase, sizeof phrase, (double)sp),
                nd ? (double)np / nd : 0.0);
    }
}

static void report_json(FILE *f, const lk_plan *p, const lk_config *c, const char *mask,
                        const lk_plan_bytes *b) {
    int zero = 0;
    for (int i = 0; i < p->n_layers * p->n_kv_heads; i++) zero += p->width[i] == 0;
    int64_t kd = (int64_t)p->context * b->k_dense, vd = (int64_t)p->context * b->v_dense;
    json_t *o = json_pack(
        "{s:s, s:s, s:i, s:i, s:i, s:i, s:s, s:i, s:i, s:i, s:I, s:f, s:i, s:i}", "mask", mask,
        "arch", c->arch, "n_layers", p->n_layers, "n_kv_heads", p->n_kv_heads, "head_dim",
        p->head_dim, "n_heads", p->n_heads, "dtype", p->dtype, "elem_bytes", p->elem_bytes,
        "sink", p->sink, "recent", p->recent, "context", (json_int_t)p->context, "k_kept_pct",
        100.0 * p->k_off[p->n_layers] / ((double)p->n_layers * p->n_kv_heads * p->head_dim),
        "heads_width0", zero, "align", p->align);
    json_object_set_new(o, "windows_from", json_string(windows_from));
    json_object_set_new(o, "kv_pct_of_dense", json_real(b->total_dense ? 100.0 * b->total / b->total_dense : 100.0));
    json_object_set_new(o, "per_token", json_pack("{s:I, s:I, s:I, s:I, s:f, s:f, s:f}",
        "k_dense", (json_int_t)b->k_dense, "k_middle", (json_int_t)b->k_middle,
        "v_dense", (json_int_t)b->v_dense, "v_middle", (json_int_t)b->v_middle,
        "k_saved_pct", pct_saved(b->k_dense, b->k_middle),
        "v_saved_pct", pct_saved(b->v_dense, b->v_middle),
        "kv_saved_pct", pct_saved(b->k_dense + b->v_dense, b->k_middle + b->v_middle)));
    json_object_set_new(o, "at_context", json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:f, s:f}",
        "full_tokens", (json_int_t)b->n_full, "middle_tokens", (json_int_t)b->n_middle,
        "k_dense", (json_int_t)kd, "k_pruned", (json_int_t)b->k_total,
        "v_dense", (json_int_t)vd, "v_pruned", (json_int_t)b->v_total,
        "kv_dense", (json_int_t)b->total_dense, "kv_pruned", (json_int_t)b->total,
        "k_saved_pct", pct_saved(kd, b->k_total), "v_saved_pct", pct_saved(vd, b->v_total),
        "kv_saved_pct", pct_saved(b->total_dense, b->total)));
    if (gpu_mem > 0) {
        int nd, np;
        size_t sd, sp;
        batch_fit(p, c, &nd, &np, &sd, &sp);
        json_object_set_new(o, "gpu", json_pack("{s:f, s:I, s:I, s:i, s:i}", "pool_bytes", gpu_mem, "seq_bytes_dense",
                                                (json_int_t)sd, "seq_bytes_pruned", (json_int_t)sp, "max_batch_dense",
                                                nd, "max_batch_pruned", np));
    }
    json_dumpf(o, f, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    fputc('\n', f);
    json_decref(o);
}

int main(int argc, char **argv) {
    lk_progname = "leank-pack";
    atexit(lk_close_stdout); /* a write error on stdout is an error */
    lk_install_cleanup();
    enum { O_CONFIG = 256, O_SINK, O_RECENT, O_CONTEXT, O_DTYPE, O_JSON, O_GPUMEM };
    static const struct option opts[] = {{"help", no_argument, 0, 'h'},
                                         {"version", no_argument, 0, 'V'},
                                         {"mask", required_argument, 0, 'k'},
                                         {"model", required_argument, 0, 'm'},
                                         {"config", required_argument, 0, O_CONFIG},
                                         {"output", required_argument, 0, 'o'},
                                         {"sink", required_argument, 0, O_SINK},
                                         {"recent", required_argument, 0, O_RECENT},
                                         {"context", required_argument, 0, O_CONTEXT},
                                         {"dtype", required_argument, 0, O_DTYPE},
                                         {"json", no_argument, 0, O_JSON},
                                         {"gpu-mem", required_argument, 0, O_GPUMEM},
                                         {"quiet", no_argument, 0, 'q'},
                                         {0, 0, 0, 0}};
    const char *mask_path = NULL, *model = NULL, *out_path = NULL, *dtype = "bf16";
    int sink = -1, recent = -1, json = 0, quiet = 0, c;
    long context = -1;
    while ((c = getopt_long(argc, argv, "hVk:m:o:q", opts, NULL)) != -1) {
        switch (c) {
        case 'h': usage(stdout); return 0;
        case 'V': lk_print_version(stdout); return 0;
        case 'k': mask_path = optarg; break;
        case 'm': case O_CONFIG: model = optarg; break;
        case 'o': out_path = optarg; break;
        case O_SINK: sink = (int)lk_parse_long("--sink", optarg, 0, 1L << 30); break;
        case O_RECENT: recent = (int)lk_parse_long("--recent", optarg, 0, 1L << 30); break;
        case O_CONTEXT: context = lk_parse_long("--context", optarg, 1, 1L << 40); break;
        case O_DTYPE:
            if (!lk_plan_dtype_bytes(optarg))
                lk_die(LK_EUSAGE, "--dtype: '%s' is not a cache type (expected bf16, f16 or f32)", optarg);
            dtype = optarg;
            break;
        case O_JSON: json = 1; break;
        case O_GPUMEM: {
            char *end;
            gpu_mem = strtod(optarg, &end);
            double mul = *end == 'k' || *end == 'K' ? 1e3 : *end == 'M' ? 1e6 : *end == 'G' ? 1e9 : *end == 'T' ? 1e12 : 1;
            if (mul != 1) end++;
            if (*end == 'B') end++;
            if (end == optarg || *end || !(gpu_mem > 0) || gpu_mem * mul > 1e16)
                lk_die(LK_EUSAGE, "--gpu-mem: '%s' (expected bytes, e.g. 116.4G)", optarg);
            gpu_mem *= mul;
            break;
        }
        case 'q': quiet = 1; break;
        default: usage(stderr); return LK_EUSAGE;
        }
    }
    if (optind < argc) lk_die(LK_EUSAGE, "unexpected argument '%s' (see --help)", argv[optind]);
    if (!mask_path) lk_die(LK_EUSAGE, "--mask FILE is required (see --help)");
    if (!model) lk_die(LK_EUSAGE, "-m MODEL_DIR or --config config.json is required (see --help)");
    if (json && quiet) lk_die(LK_EUSAGE, "--json and --quiet contradict each other");
    if (quiet && !out_path) lk_die(LK_EUSAGE, "--quiet without -o PLAN does nothing (give -o FILE, or drop -q for the report)");
    if (out_path && !strcmp(out_path, "-")) lk_refuse_tty_stdout("a binary decode plan");
    if (out_path && !strcmp(out_path, "-") && !quiet && !json)
        quiet = 1; /* the plan owns stdout; the text report would corrupt it */
    if (out_path && !strcmp(out_path, "-") && json)
        lk_die(LK_EUSAGE, "-o - and --json both write to stdout");

    lk_err err = {0};
    if (out_path && lk_out_check(out_path, &err)) lk_fail(&err);
    lk_config cfg;
    if (lk_config_load(&cfg, model, &err)) lk_fail(&err);
    if (context < 0) context = cfg.max_position_embeddings > 0 ? cfg.max_position_embeddings : 131072;
    char *shipped = lk_mask_shipped(mask_path); /* --mask qwen2.5-coder-1.5b-instruct */
    if (shipped) mask_path = shipped;
    lk_mask m;
    if (lk_mask_load_dim(&m, mask_path, cfg.head_dim, &err)) lk_fail(&err);
    const char *mask_name = strcmp(mask_path, "-") ? mask_path : "<stdin>";
    int has = m.sink >= 0 && m.recent >= 0;
    windows_from = sink >= 0 && recent >= 0 ? (has ? "--sink/--recent, over the mask's" : "--sink/--recent")
                 : sink >= 0 || recent >= 0 ? (has ? "the mask's, with an option over one" : "an option and a default")
                 : has ? "the mask's" : "defaults: the mask records none";
    int sink_opt = sink, recent_opt = recent;
    /* the "records no windows" notice waits for success: a failed run says one thing, its error */
    lk_mask_pick_windows(&m, mask_name, sink, recent, LK_PLAN_DEFAULT_SINK, LK_PLAN_DEFAULT_RECENT, 1, &sink, &recent);
    lk_plan p;
    if (lk_plan_build(&p, &m, mask_name, &cfg, model, sink, recent, context, dtype, &err)) lk_fail(&err);
    lk_plan_bytes b;
    lk_plan_bytes_at(&p, context, &b);
    if (json) report_json(stdout, &p, &cfg, mask_name, &b);
    else if (!quiet) report_text(stdout, &p, &cfg, mask_name, &b);
    if (fflush(stdout) || ferror(stdout)) lk_die(LK_EIO, "<stdout>: write error");
    if (out_path) { /* last: a failed report leaves no plan behind */
        const char *extra[] = {"model", cfg.arch, "mask", mask_name, NULL, NULL};
        if (lk_plan_save(&p, out_path, extra, &err)) lk_fail(&err);
    }
    if (!has && !quiet && !json && (sink_opt < 0 || recent_opt < 0))
        lk_warn("%s records no cache windows: sink %d, recent %d (the defaults)", mask_name, sink, recent);
    lk_plan_free(&p);
    lk_mask_free(&m);
    free(shipped);
    return 0;
}
