/* leank-binarize - alpha (leank-train) -> binary K-channel mask by the LeanK
 * rule; also converts masks between safetensors and the TSV text form,
 * reports on a mask and plots alpha or a mask. See leank-binarize(1). */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "mask.h"
#include "plot.h"
#include "safetensors.h"
#include "cli.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: leank-binarize ALPHA --ratio R [--align A] -o MASK\n"
            "       leank-binarize --from-tsv FILE.tsv [-o MASK] [--report]\n"
            "       leank-binarize MASK [--tsv] [--report [--json]] [--plot FILE.svg]\n"
            "INPUT is an alpha file (leank-train: F32 tensor \"alpha\" [layers, kv_heads,\n"
            "head_dim], format=leank-alpha) or a mask (safetensors or TSV); '-' = stdin;\n"
            "a name that is no file here is a mask leank ships (qwen2.5-coder-1.5b-instruct).\n"
            "  -r, --ratio R          fraction of K channels to prune, in [0, 1) (alpha input)\n"
            "  -a, --align A          per-head kept count multiple, divides head_dim (default 1)\n"
            "  -o, --output FILE      write the mask (safetensors; TSV with --tsv); '-' = stdout\n"
            "      --tsv              write the TSV text form (to stdout without -o)\n"
            "      --from-tsv FILE    read the input mask from a TSV file\n"
            "      --head-dim N       head_dim of a TSV mask (default: model, file comment, inferred)\n"
            "  -m, --model DIR        check shapes against DIR/config.json\n"
            "      --config FILE      check shapes against a config.json\n"
            "      --report           print K kept, V dropped, widths, per layer, RoPE bands\n"
            "      --json             with --report: one JSON object\n"
            "      --plot FILE.svg    heatmap of alpha (alpha input) or of the mask\n"
            "      --sink N, --recent N  record these cache windows in the mask (default: those\n"
            "                         the alpha or input mask records, from the training config)\n"
            "  -q, --quiet            no summary line on stderr\n"
            "  -h, --help             show this help and exit\n"
            "  -V, --version          show the version and exit\n");
}

/* ---- input ---- */

typedef struct {
    const char *path, *name; /* name for messages */
    int is_alpha;
    float *alpha;            /* (L, H, D) when is_alpha */
    int L, H, D;
    double alpha_mean, alpha_min, alpha_max;
    int sink, recent; /* windows the alpha records, -1 = none */
} input;

/* Alpha file or mask? By the first bytes (safetensors) and then the metadata. */
static int input_is_alpha(const char *path, lk_err *err) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        lk_seterr(err, LK_EIO, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    uint8_t b[16];
    size_t n = fread(b, 1, sizeof b, f);
    fclose(f);
    if (n < 9 || b[8] != '{') return 0; /* TSV */
    lk_st *st;
    if (lk_st_open(&st, path, err)) return -1;
    const char *fmt = lk_st_meta(st, "format");
    int alpha = fmt ? !strcmp(fmt, "leank-alpha") : lk_st_find(st, "alpha") != NULL;
    lk_st_close(st);
    return alpha;
}

static int load_alpha(input *in, lk_err *err) {
    lk_st *st;
    if (lk_st_open(&st, in->path, err)) return err->code;
    int rc = 0;
    const lk_tensor *t = lk_st_find(st, "alpha");
    in->sink = in->recent = -1;
    const char *ws = lk_st_meta(st, "sink"), *wr = lk_st_meta(st, "recent");
    if (ws && wr) {
        char *e1, *e2;
        long s = strtol(ws, &e1, 10), r = strtol(wr, &e2, 10);
        if (e1 == ws || *e1 || e2 == wr || *e2 || s < 0 || r < 0 || s > (1L << 30) || r > (1L << 30)) {
            lk_st_close(st);
            return lk_seterr(err, LK_EINPUT, "%s: metadata sink '%s', recent '%s' (expected integers in [0, 2^30])",
                             in->name, ws, wr);
        }
        in->sink = (int)s;
        in->recent = (int)r;
    }
    if (!t) {
        rc = lk_seterr(err, LK_EINPUT, "%s: no tensor 'alpha' (expected a leank-alpha file from leank-train)", in->name);
    } else if (t->ndim != 3 || t->shape[0] <= 0 || t->shape[1] <= 0 || t->shape[2] <= 0 ||
               t->shape[0] > 65536 || t->shape[1] > 65536 || t->shape[2] > 65536) {
        char sh[128];
        rc = lk_seterr(err, LK_EINPUT, "%s: tensor alpha has shape %s (expected [n_layers, n_kv_heads, head_dim], "
                       "each in [1, 65536])", in->name, lk_shape_str(sh, sizeof sh, t->ndim, t->shape));
    } else {
        in->L = (int)t->shape[0];
        in->H = (int)t->shape[1];
        in->D = (int)t->shape[2];
        in->alpha = lk_malloc((size_t)t->numel * sizeof(float));
        rc = lk_tensor_to_f32(t, in->alpha, err);
    }
    lk_st_close(st);
    if (rc) return rc;
    size_t n = (size_t)in->L * in->H * in->D;
    double s = 0;
    in->alpha_min = INFINITY;
    in->alpha_max = -INFINITY;
    for (size_t i = 0; i < n; i++) {
        if (!(in->alpha[i] >= 0.0f && in->alpha[i] <= 1.0f))
            return lk_seterr(err, LK_EINPUT, "%s: alpha[%zu, %zu, %zu] is %g (expected a scale in [0, 1])",
                             in->path, i / ((size_t)in->H * in->D), i / in->D % in->H, i % in->D,
                             (double)in->alpha[i]);
        s += in->alpha[i];
        if (in->alpha[i] < in->alpha_min) in->alpha_min = in->alpha[i];
        if (in->alpha[i] > in->alpha_max) in->alpha_max = in->alpha[i];
    }
    in->alpha_mean = s / (double)n;
    return 0;
}

/* ---- report ---- */

/* Period in tokens of RoPE pair i: 2 pi / inv_freq[i]. */
static void band_periods(const lk_config *cfg, const lk_mask_stats *s, int half, double (*per)[2]) {
    float *inv = lk_malloc((size_t)half * sizeof *inv), scale;
    lk_rope_inv_freq(cfg, inv, &scale);
    for (int b = 0; b < s->n_bands; b++) {
        int p0 = b * s->band_pairs, p1 = b == s->n_bands - 1 ? half - 1 : p0 + s->band_pairs - 1;
        per[b][0] = 2 * M_PI / inv[p0];
        per[b][1] = 2 * M_PI / inv[p1];
    }
    free(inv);
}

static void report_text(FILE *f, const input *in, const lk_mask *m, const lk_mask_stats *s,
                        const lk_config *cfg, double ratio, int align) {
    int D = m->head_dim, half = D / 2;
    fprintf(f, "mask: %s (%d layers x %d kv heads x %d channels)\n", in->name, m->n_layers,
            m->n_kv_heads, D);
    if (in->is_alpha)
        fprintf(f, "from alpha: mean %.4f, min %.4f, max %.4f; target ratio %g (keep %.2f %%), align %d\n",
                in->alpha_mean, in->alpha_min, in->alpha_max, ratio, 100 * (1 - ratio), align);
    fprintf(f, "K kept: %.2f %% (%zu of %zu channels)\n", 100.0 * s->kept / s->total, s->kept, s->total);
    if (m->sink >= 0)
        fprintf(f, "windows: sink %d, recent %d (trained for; leank-pack and leank-decode use them)\n", m->sink,
                m->recent);
    else
        fprintf(f, "windows: not recorded (leank-pack and leank-decode fall back to their defaults)\n");
    fprintf(f, "V dropped: %.1f %% (%d of %d heads have width 0: their middle tokens keep no K and no V)\n",
            100.0 * s->heads_zero / s->heads, s->heads_zero, s->heads);
    fprintf(f, "\nhead widths:\n  width  heads\n");
    for (int w = 0; w <= D; w++)
        if (s->width_hist[w]) {
            int bar = (int)lround(40.0 * s->width_hist[w] / s->heads);
            fprintf(f, "  %5d  %5d  ", w, s->width_hist[w]);
            for (int i = 0; i < bar; i++) fputc('#', f);
            fputc('\n', f);
        }
    fprintf(f, "\nper layer:\n  layer  kept %%  width-0  widths by kv head\n");
    for (int l = 0; l < m->n_layers; l++) {
        fprintf(f, "  %5d  %6.2f  %7d ", l, 100 * s->layer_kept[l], s->layer_zero[l]);
        for (int h = 0; h < m->n_kv_heads; h++) fprintf(f, " %d", lk_mask_width(m, l, h));
        fputc('\n', f);
    }
    if (s->n_bands) {
        double per[LK_MASK_MAX_BANDS][2];
        if (cfg) band_periods(cfg, s, half, per);
        fprintf(f, "\nRoPE frequency bands (pair i = channels i and i+%d; band 0 = highest frequency):\n",
                half);
        fprintf(f, "  band  pairs      kept %%%s\n", cfg ? "   period (tokens)" : "");
        for (int b = 0; b < s->n_bands; b++) {
            int p0 = b * s->band_pairs, p1 = b == s->n_bands - 1 ? half - 1 : p0 + s->band_pairs - 1;
            char pairs[32];
            snprintf(pairs, sizeof pairs, "%d-%d", p0, p1);
            fprintf(f, "  %4d  %-9s %6.2f", b, pairs, 100 * s->band_kept[b]);
            if (cfg) fprintf(f, "   %.0f - %.0f", per[b][0], per[b][1]);
            fputc('\n', f);
        }
    }
}

static void report_json(FILE *f, const input *in, const lk_mask *m, const lk_mask_stats *s,
                        const lk_config *cfg, double ratio, int align) {
    int D = m->head_dim, half = D / 2;
    json_t *o = json_object();
    json_object_set_new(o, "file", json_string(in->name));
    json_object_set_new(o, "n_layers", json_integer(m->n_layers));
    json_object_set_new(o, "n_kv_heads", json_integer(m->n_kv_heads));
    json_object_set_new(o, "head_dim", json_integer(D));
    json_object_set_new(o, "channels", json_integer((json_int_t)s->total));
    json_object_set_new(o, "kept", json_integer((json_int_t)s->kept));
    json_object_set_new(o, "k_kept_pct", json_real(100.0 * s->kept / s->total));
    json_object_set_new(o, "heads", json_integer(s->heads));
    json_object_set_new(o, "heads_width0", json_integer(s->heads_zero));
    json_object_set_new(o, "v_dropped_pct", json_real(100.0 * s->heads_zero / s->heads));
    json_object_set_new(o, "sink", m->sink >= 0 ? json_integer(m->sink) : json_null());
    json_object_set_new(o, "recent", m->recent >= 0 ? json_integer(m->recent) : json_null());
    if (in->is_alpha) {
        json_object_set_new(o, "ratio", json_real(ratio));
        json_object_set_new(o, "align", json_integer(align));
        json_object_set_new(o, "alpha_mean", json_real(in->alpha_mean));
        json_object_set_new(o, "alpha_min", json_real(in->alpha_min));
        json_object_set_new(o, "alpha_max", json_real(in->alpha_max));
    }
    json_t *hist = json_object();
    for (int w = 0; w <= D; w++)
        if (s->width_hist[w]) {
            char k[16];
            snprintf(k, sizeof k, "%d", w);
            json_object_set_new(hist, k, json_integer(s->width_hist[w]));
        }
    json_object_set_new(o, "width_hist", hist);
    json_t *layers = json_array();
    for (int l = 0; l < m->n_layers; l++) {
        json_t *w = json_array();
        for (int h = 0; h < m->n_kv_heads; h++) json_array_append_new(w, json_integer(lk_mask_width(m, l, h)));
        json_array_append_new(layers, json_pack("{s:i, s:f, s:i, s:o}", "layer", l, "kept_pct",
                                                100 * s->layer_kept[l], "heads_width0",
                                                s->layer_zero[l], "widths", w));
    }
    json_object_set_new(o, "layers", layers);
    json_t *bands = json_array();
    double per[LK_MASK_MAX_BANDS][2];
    if (cfg && s->n_bands) band_periods(cfg, s, half, per);
    for (int b = 0; b < s->n_bands; b++) {
        int p0 = b * s->band_pairs, p1 = b == s->n_bands - 1 ? half - 1 : p0 + s->band_pairs - 1;
        json_t *bo = json_pack("{s:i, s:[i,i], s:f}", "band", b, "pairs", p0, p1, "kept_pct",
                               100 * s->band_kept[b]);
        if (cfg) json_object_set_new(bo, "period_tokens", json_pack("[f,f]", per[b][0], per[b][1]));
        json_array_append_new(bands, bo);
    }
    json_object_set_new(o, "bands", bands);
    json_dumpf(o, f, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    fputc('\n', f);
    json_decref(o);
}

int main(int argc, char **argv) {
    lk_progname = "leank-binarize";
    atexit(lk_close_stdout); /* a write error on stdout is an error */
    lk_install_cleanup();
    enum { O_TSV = 256, O_FROM_TSV, O_HEAD_DIM, O_CONFIG, O_REPORT, O_JSON, O_PLOT, O_SINK, O_RECENT };
    static const struct option opts[] = {{"help", no_argument, 0, 'h'},
                                         {"version", no_argument, 0, 'V'},
                                         {"ratio", required_argument, 0, 'r'},
                                         {"align", required_argument, 0, 'a'},
                                         {"output", required_argument, 0, 'o'},
                                         {"tsv", no_argument, 0, O_TSV},
                                         {"from-tsv", required_argument, 0, O_FROM_TSV},
                                         {"head-dim", required_argument, 0, O_HEAD_DIM},
                                         {"model", required_argument, 0, 'm'},
                                         {"config", required_argument, 0, O_CONFIG},
                                         {"report", no_argument, 0, O_REPORT},
                                         {"json", no_argument, 0, O_JSON},
                                         {"plot", required_argument, 0, O_PLOT},
                                         {"quiet", no_argument, 0, 'q'},
                                         {"sink", required_argument, 0, O_SINK},
                                         {"recent", required_argument, 0, O_RECENT},
                                         {0, 0, 0, 0}};
    const char *out_path = NULL, *from_tsv = NULL, *model = NULL, *plot = NULL;
    int sink_opt = -1, recent_opt = -1;
    double ratio = -1;
    int align = 0, tsv = 0, head_dim = 0, report = 0, json = 0, quiet = 0, c;
    while ((c = getopt_long(argc, argv, "hVr:a:o:m:q", opts, NULL)) != -1) {
        switch (c) {
        case 'h': usage(stdout); return 0;
        case 'V': lk_print_version(stdout); return 0;
        case 'r':
            ratio = lk_parse_double("--ratio", optarg, -HUGE_VAL, HUGE_VAL);
            if (!(ratio >= 0 && ratio < 1))
                lk_die(LK_EUSAGE, "--ratio: '%s' is not in [0, 1) (expected the fraction of K channels to prune)", optarg);
            break;
        case 'a': align = (int)lk_parse_long("--align", optarg, 1, 65536); break;
        case 'o': out_path = optarg; break;
        case O_TSV: tsv = 1; break;
        case O_FROM_TSV: from_tsv = optarg; break;
        case O_HEAD_DIM: head_dim = (int)lk_parse_long("--head-dim", optarg, 1, 65536); break;
        case 'm': case O_CONFIG: model = optarg; break;
        case O_REPORT: report = 1; break;
        case O_JSON: json = 1; break;
        case O_PLOT: plot = optarg; break;
        case 'q': quiet = 1; break;
        case O_SINK: sink_opt = (int)lk_parse_long("--sink", optarg, 0, 1L << 30); break;
        case O_RECENT: recent_opt = (int)lk_parse_long("--recent", optarg, 0, 1L << 30); break;
        default: usage(stderr); return LK_EUSAGE;
        }
    }
    input in = {0};
    if (from_tsv) {
        if (optind < argc) lk_die(LK_EUSAGE, "unexpected argument '%s' with --from-tsv (see --help)", argv[optind]);
        in.path = from_tsv;
    } else {
        if (optind >= argc) lk_die(LK_EUSAGE, "no input (give an alpha or mask file, or --from-tsv FILE; see --help)");
        if (optind + 1 < argc) lk_die(LK_EUSAGE, "unexpected argument '%s' (see --help)", argv[optind + 1]);
        in.path = argv[optind];
    }
    char *shipped = from_tsv ? NULL : lk_mask_shipped(in.path); /* leank-binarize qwen2.5-coder-1.5b-instruct --report */
    if (shipped) in.path = shipped;
    in.name = strcmp(in.path, "-") ? in.path : "<stdin>";
    if (tsv && !out_path) out_path = "-";
    if (!out_path && !report && !plot) lk_die(LK_EUSAGE, "nothing to do: give -o FILE, --tsv, --report or --plot (see --help)");
    if (json && !report) lk_die(LK_EUSAGE, "--json goes with --report");
    if (plot && out_path && !strcmp(plot, "-") && !strcmp(out_path, "-"))
        lk_die(LK_EUSAGE, "--plot - and -o - both write to stdout");
    int out_stdout = out_path && !strcmp(out_path, "-");
    if (out_stdout && plot && !strcmp(plot, "-")) lk_die(LK_EUSAGE, "the mask and the plot cannot both go to stdout");
    if (out_stdout && !tsv) lk_refuse_tty_stdout("a binary mask");

    lk_err err = {0};
    if ((out_path && lk_out_check(out_path, &err)) || (plot && lk_out_check(plot, &err))) lk_fail(&err);
    lk_config cfg, *cfgp = NULL;
    if (model) {
        if (lk_config_load(&cfg, model, &err)) lk_fail(&err);
        cfgp = &cfg;
        if (head_dim && head_dim != cfg.head_dim)
            lk_die(LK_EUSAGE, "--head-dim %d disagrees with %s (head_dim %d)", head_dim, model, cfg.head_dim);
        head_dim = cfg.head_dim;
    }

    /* stdin is copied to a temporary file (removed on every exit): an alpha
     * file and a safetensors mask are read by mapping a file */
    lk_out spool = {0};
    if (!strcmp(in.path, "-")) {
        char *data;
        size_t len;
        if (lk_read_file("-", 256u << 20, "an alpha file or a mask", &data, &len, &err)) lk_fail(&err);
        if (!len) lk_die(LK_EINPUT, "<stdin>: empty (expected an alpha file or a mask)");
        if (lk_tmp_copy(&spool, "binarize-stdin", data, len, &err)) lk_fail(&err);
        free(data);
        in.path = spool.tmp;
    }
    if (!from_tsv) {
        int a = input_is_alpha(in.path, &err);
        if (a < 0) lk_fail(&err);
        in.is_alpha = a;
    }
    lk_mask m;
    if (in.is_alpha) {
        if (ratio < 0) lk_die(LK_EUSAGE, "%s is an alpha file: --ratio R is required to binarize it", in.name);
        if (!align) align = 1;
        if (load_alpha(&in, &err)) lk_fail(&err);
        if (cfgp && (in.L != cfgp->n_layers || in.H != cfgp->n_kv_heads || in.D != cfgp->head_dim))
            lk_die(LK_EINPUT, "%s: alpha has shape [%d, %d, %d] but %s has [%d layers, %d kv heads, %d head_dim] "
                   "(expected alpha trained for this model)", in.name, in.L, in.H, in.D, model,
                   cfgp->n_layers, cfgp->n_kv_heads, cfgp->head_dim);
        if (head_dim && in.D != head_dim)
            lk_die(LK_EINPUT, "%s: alpha head_dim is %d (expected %d from --head-dim)", in.name, in.D, head_dim);
        if (in.D % align)
            lk_die(LK_EUSAGE, "--align %d does not divide head_dim %d (expected a divisor, e.g. 1, 8, 32)", align, in.D);
        if (lk_mask_from_alpha(&m, in.alpha, in.L, in.H, in.D, ratio, align, &err)) {
            if (err.code == LK_EINPUT) { /* the library does not know the file name */
                char msg[sizeof err.msg];
                snprintf(msg, sizeof msg, "%s", err.msg);
                lk_seterr(&err, LK_EINPUT, "%s: %s", in.name, msg);
            }
            lk_fail(&err);
        }
        m.sink = in.sink;
        m.recent = in.recent;
    } else {
        if (ratio >= 0 || align)
            lk_die(LK_EUSAGE, "--ratio and --align apply to alpha input; %s is a mask", in.name);
        int rc;
        if (from_tsv) {
            char *text;
            size_t len;
            if (!(rc = lk_read_file(in.path, 64u << 20, "a TSV mask", &text, &len, &err))) {
                rc = lk_mask_parse_tsv(&m, text, len, in.name, head_dim, &err);
                free(text);
            }
        } else
            rc = lk_mask_load_as(&m, in.path, in.name, head_dim, &err);
        if (rc) lk_fail(&err);
        if (cfgp && lk_mask_check_shape(&m, in.name, cfgp->n_layers, cfgp->n_kv_heads, cfgp->head_dim, model, &err))
            lk_fail(&err);
    }

    if (spool.tmp) { /* read: the copy of stdin goes */
        lk_out_abort(&spool);
        in.path = "-";
    }
    if (sink_opt >= 0 || recent_opt >= 0) {
        if ((sink_opt < 0 || recent_opt < 0) && m.sink < 0)
            lk_die(LK_EUSAGE, "%s records no windows: give both --sink and --recent", in.name);
        lk_mask_pick_windows(&m, in.name, sink_opt, recent_opt, -1, -1, 1, &m.sink, &m.recent);
    }
    lk_mask_stats s;
    if (lk_mask_stats_compute(&m, &s, &err)) lk_fail(&err);
    if (plot) {
        size_t n = s.total;
        float *v = in.alpha;
        if (!in.is_alpha) {
            v = lk_malloc(n * sizeof *v);
            for (size_t i = 0; i < n; i++) v[i] = m.keep[i];
        }
        char *title = lk_asprintf("LeanK %s: %s", in.is_alpha ? "alpha" : "K-channel mask", in.name);
        char *sub = in.is_alpha
            ? lk_asprintf("%d layers x %d kv heads x %d channels; mean alpha %.3f; binarized at ratio %g, "
                          "align %d: %.2f %% of K channels kept", m.n_layers, m.n_kv_heads, m.head_dim,
                          in.alpha_mean, ratio, align, 100.0 * s.kept / s.total)
            : lk_asprintf("%d layers x %d kv heads x %d channels; %.2f %% of K channels kept; "
                          "%d of %d heads width 0 (%.1f %% of V dropped)", m.n_layers, m.n_kv_heads,
                          m.head_dim, 100.0 * s.kept / s.total, s.heads_zero, s.heads,
                          100.0 * s.heads_zero / s.heads);
        lk_plot_opts po = {title, sub, !in.is_alpha};
        if (lk_plot_heatmap_svg(plot, v, m.n_layers, m.n_kv_heads, m.head_dim, &po, &err)) lk_fail(&err);
        free(title);
        free(sub);
        if (v != in.alpha) free(v);
    }
    if (report) {
        /* stdout unless the mask or the plot went there */
        FILE *f = out_stdout || (plot && !strcmp(plot, "-")) ? stderr : stdout;
        if (json) report_json(f, &in, &m, &s, cfgp, ratio, align);
        else report_text(f, &in, &m, &s, cfgp, ratio, align);
        if (fflush(f) || ferror(f)) lk_die(LK_EIO, "<stdout>: write error");
    }
    /* The mask is written last: a failed plot or report leaves no mask behind,
     * and a failed mask takes the plot it came with. */
    if (out_path) {
        int rc = tsv ? lk_mask_save_tsv(&m, out_path, &err)
                     : lk_mask_save_meta(&m, out_path, in.is_alpha ? ratio : -1, in.is_alpha ? align : 0,
                                         in.name, &err);
        if (rc) {
            if (plot && strcmp(plot, "-")) remove(plot);
            lk_fail(&err);
        }
    }
    if (out_path && !quiet && !out_stdout) {
        char target[64] = "";
        if (in.is_alpha) snprintf(target, sizeof target, "; target %.2f %%, align %d", 100 * (1 - ratio), align);
        fprintf(stderr, "leank-binarize: %s: kept %zu of %zu K channels (%.2f %%%s), %d of %d heads width 0\n",
                out_path, s.kept, s.total, 100.0 * s.kept / s.total, target, s.heads_zero, s.heads);
    }
    lk_mask_stats_free(&s);
    lk_mask_free(&m);
    free(in.alpha);
    free(shipped);
    return 0;
}
