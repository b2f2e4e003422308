/* leank-train - a model and samples -> LeanK's channel scales alpha
 * (stage 1, stage 2, or the training-free norm heuristic). See leank-train(1).
 *
 * Sections: command line; SIGINT; progress; main. The run (the sample
 * source, the loop, resume, log, checkpoints) is lib/train/loop.c, the step
 * and the files lib/train/train.c, the backends lib/train/train_cpu.c and
 * kernels/train_cuda.cu. */
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine.h"      /* lk_device_parse */
#include "tokenizer.h"   /* tokenizer fingerprint */
#include "train.h"       /* options, the backend, the run, alpha files */
#include "cli.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: leank-train -m MODEL -c CONFIG.yaml [OPTION]... SAMPLES -o ALPHA.safetensors\n"
            "  -m, --model DIR          model directory (config.json, safetensors, tokenizer.json)\n"
            "  -c, --config FILE        training config (YAML); options below override it; a bare\n"
            "                           name (leank-mini.yaml, leank-mini) not in the working\n"
            "                           directory is looked up in leank's configs (share/leank/configs)\n"
            "  -o, --output FILE        alpha (safetensors, tensor \"alpha\"); - for stdout\n"
            "      --stage2             stage 2: train through the binary mask (needs --init)\n"
            "      --init FILE          start from this alpha (stage 1's output for stage 2)\n"
            "      --method M           learned (default) or norm (training-free heuristic)\n"
            "      --steps N            optimisation steps (norm: samples to read)\n"
            "      --lr X               peak learning rate\n"
            "      --lambda X           stage 1: weight of mean|alpha|\n"
            "      --ratio X            stage 2: fraction of channels pruned\n"
            "      --align N            stage 2: kept channels per head, a multiple of N\n"
            "      --sink N             first N tokens keep every channel\n"
            "      --recent N           N most recent keys keep every channel\n"
            "      --seed N             sample order\n"
            "      --shuffle N          pick each sample at random among N buffered ones\n"
            "      --checkpoint FILE    checkpoint path (default OUTPUT.ckpt)\n"
            "      --checkpoint-every N steps between checkpoints (0: only on SIGINT)\n"
            "      --resume             continue from the checkpoint\n"
            "      --stop-after N       stop after N steps of this run: checkpoint, exit 130\n"
            "      --log FILE           TSV log of every step\n"
            "      --device D           cuda, cpu or auto (default auto: cuda when built with it and\n"
            "                           a GPU is present)\n"
            "      --progress           progress on stderr even when it is not a terminal\n"
            "  -h, --help               show this help and exit\n"
            "  -V, --version            show the version and exit\n");
}

/* ---- SIGINT: finish the step, write the checkpoint, exit 130 ---- */

static volatile sig_atomic_t stop_requested;
static void on_sigint(int sig) {
    if (stop_requested) { /* second ^C: leave at once, no partial outputs */
        lk_out_cleanup_all();
        _exit(LK_EINTR);
    }
    stop_requested = 1;
}

/* ---- progress (stderr) ---- */

static void on_progress(void *ctx, const lk_train_progress *p) {
    (void)ctx;
    switch (p->event) {
    case LK_TRAIN_RESUMED:
        fprintf(stderr, "leank-train: resuming at step %ld/%ld\n", p->step, p->steps);
        break;
    case LK_TRAIN_STEPPED:
        fprintf(stderr, "leank-train: step %ld/%ld  len %d  loss %.6g  reg %.4g  "
                "mean alpha %.4f  <0.1 %.3f  %.0f tok/s\n", p->step, p->steps, p->length,
                p->stats->loss, p->stats->reg, p->stats->mean_alpha, p->stats->frac_small, p->tokens_per_s);
        break;
    case LK_TRAIN_NORM_READ:
        fprintf(stderr, "\rleank-train: norm: sample %ld/%ld (%d tokens)", p->step, p->steps, p->length);
        break;
    }
}

static const char *hex64(uint64_t v, char *buf) {
    snprintf(buf, 17, "%016" PRIx64, v);
    return buf;
}

typedef struct {
    const char *model_dir, *config, *output, *init, *ckpt, *log, *samples;
    int resume, progress;
} run_args;

int main(int argc, char **argv) {
    lk_progname = "leank-train";
    atexit(lk_close_stdout); /* a write error on stdout is an error */
    enum { O_STAGE2 = 256, O_INIT, O_METHOD, O_STEPS, O_LR, O_LAMBDA, O_RATIO, O_ALIGN, O_SINK,
           O_RECENT, O_SEED, O_SHUFFLE, O_CKPT, O_CKPT_EVERY, O_RESUME, O_STOP, O_LOG, O_PROGRESS,
           O_DEVICE };
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'}, {"config", required_argument, 0, 'c'},
        {"output", required_argument, 0, 'o'}, {"stage2", no_argument, 0, O_STAGE2},
        {"init", required_argument, 0, O_INIT}, {"method", required_argument, 0, O_METHOD},
        {"steps", required_argument, 0, O_STEPS}, {"lr", required_argument, 0, O_LR},
        {"lambda", required_argument, 0, O_LAMBDA}, {"ratio", required_argument, 0, O_RATIO},
        {"align", required_argument, 0, O_ALIGN}, {"sink", required_argument, 0, O_SINK},
        {"recent", required_argument, 0, O_RECENT}, {"seed", required_argument, 0, O_SEED},
        {"shuffle", required_argument, 0, O_SHUFFLE},
        {"checkpoint", required_argument, 0, O_CKPT},
        {"checkpoint-every", required_argument, 0, O_CKPT_EVERY},
        {"resume", no_argument, 0, O_RESUME}, {"stop-after", required_argument, 0, O_STOP},
        {"log", required_argument, 0, O_LOG}, {"device", required_argument, 0, O_DEVICE},
        {"progress", no_argument, 0, O_PROGRESS}, {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, 'V'}, {0, 0, 0, 0}};
    run_args a = {0};
    int stage = 1, method = LK_TRAIN_LEARN;
    lk_device device = LK_DEVICE_AUTO;
    /* overrides, applied after the config: NAN / -1 = not given */
    double lr = NAN, lambda = NAN, ratio = NAN;
    long stop_after = 0; /* steps this run may take (0: all) */
    long steps = -1, align = -1, sink = -1, recent = -1, seed = -1, shuffle = -1, every = -1;
    int c;
    while ((c = getopt_long(argc, argv, "m:c:o:hV", opts, NULL)) != -1) {
        switch (c) {
        case 'm': a.model_dir = optarg; break;
        case 'c': a.config = optarg; break;
        case 'o': a.output = optarg; break;
        case O_STAGE2: stage = 2; break;
        case O_INIT: a.init = optarg; break;
        case O_METHOD:
            if (!strcmp(optarg, "learned")) method = LK_TRAIN_LEARN;
            else if (!strcmp(optarg, "norm")) method = LK_TRAIN_NORM;
            else lk_die(LK_EUSAGE, "--method: '%s' (expected learned or norm)", optarg);
            break;
        case O_STEPS: steps = lk_parse_long("--steps", optarg, 1, 1000000000L); break;
        case O_LR: lr = lk_parse_double("--lr", optarg, 0, 10); break;
        case O_LAMBDA: lambda = lk_parse_double("--lambda", optarg, 0, 1000); break;
        case O_RATIO: ratio = lk_parse_double("--ratio", optarg, 0, 1); break;
        case O_ALIGN: align = lk_parse_long("--align", optarg, 1, 1 << 20); break;
        case O_SINK: sink = lk_parse_long("--sink", optarg, 0, 1000000000L); break;
        case O_RECENT: recent = lk_parse_long("--recent", optarg, 1, 1000000000L); break;
        case O_SEED: seed = lk_parse_long("--seed", optarg, 0, 9007199254740992L); break;
        case O_SHUFFLE: shuffle = lk_parse_long("--shuffle", optarg, 1, 1 << 16); break;
        case O_CKPT: a.ckpt = optarg; break;
        case O_CKPT_EVERY: every = lk_parse_long("--checkpoint-every", optarg, 0, 1000000000L); break;
        case O_RESUME: a.resume = 1; break;
        case O_STOP: stop_after = lk_parse_long("--stop-after", optarg, 1, 1000000000L); break;
        case O_LOG: a.log = optarg; break;
        case O_PROGRESS: a.progress = 1; break;
        case O_DEVICE: {
            int d = lk_device_parse(optarg);
            if (d < 0) lk_die(LK_EUSAGE, "--device: '%s' (expected cuda, cpu or auto)", optarg);
            device = (lk_device)d;
            break;
        }
        case 'h': usage(stdout); return 0;
        case 'V': lk_print_version(stdout); return 0;
        default: usage(stderr); return LK_EUSAGE;
        }
    }
    if (optind + 1 != argc) {
        usage(stderr);
        lk_die(LK_EUSAGE, optind == argc ? "no SAMPLES file given" : "more than one SAMPLES file given");
    }
    a.samples = argv[optind];
    if (!a.model_dir) lk_die(LK_EUSAGE, "no model: give -m MODEL");
    if (!a.output) lk_die(LK_EUSAGE, "no output: give -o ALPHA.safetensors");
    if (stage == 2 && method == LK_TRAIN_NORM)
        lk_die(LK_EUSAGE, "--stage2 trains through the mask; the norm method has no stages");
    if (stage == 2 && !a.init && !a.resume)
        lk_die(LK_EUSAGE, "--stage2 needs --init ALPHA (stage 1's output)");
    if (a.init && method == LK_TRAIN_NORM) lk_die(LK_EUSAGE, "--init does not apply to --method norm");
    char *ckpt_owned = NULL;
    if (!a.ckpt && strcmp(a.output, "-")) a.ckpt = ckpt_owned = lk_asprintf("%s.ckpt", a.output);
    if (a.resume && !a.ckpt) lk_die(LK_EUSAGE, "--resume with -o -: give --checkpoint FILE");
    if (stop_after && !a.ckpt) lk_die(LK_EUSAGE, "--stop-after with -o -: give --checkpoint FILE");
    if (a.log && !strcmp(a.log, "-") && !strcmp(a.output, "-"))
        lk_die(LK_EUSAGE, "--log - and -o - would both write to stdout");
    if (!strcmp(a.output, "-")) lk_refuse_tty_stdout("a binary alpha file");
    if (!strcmp(a.samples, "-") && a.init && !strcmp(a.init, "-"))
        lk_die(LK_EUSAGE, "SAMPLES and --init cannot both be stdin");

    lk_err err;
    /* every output creatable before the model is even loaded */
    const char *outs[3] = {a.output, a.ckpt, a.log};
    for (int i = 0; i < 3; i++)
        if (outs[i] && lk_out_check(outs[i], &err)) lk_fail(&err);
    lk_train_opts o;
    lk_train_opts_default(&o, stage);
    o.method = method;
    char *config_found = NULL; /* -c NAME[.yaml] from the installed configs */
    if (a.config && !(config_found = lk_share_find("configs", a.config)) && !strchr(a.config, '.')) {
        char *y = lk_asprintf("%s.yaml", a.config);
        config_found = lk_share_find("configs", y);
        free(y);
    }
    if (config_found) a.config = config_found;
    else if (a.config && !strchr(a.config, '/') && access(a.config, F_OK) != 0) {
        char *share = lk_share_dir();
        lk_die(LK_EIO, "%s: no such config here nor in %s/configs (expected a path to a training config, or the "
               "name of one of leank's: leank-mini.yaml, llama3.1-8b-instruct.yaml, ...)", a.config,
               share ? share : "leank's share directory (not found)");
    }
    if (a.config && lk_train_config_load(&o, a.config, &err)) lk_fail(&err);
    if (!isnan(lr)) o.lr = lr;
    if (!isnan(lambda)) o.lambda = lambda;
    if (!isnan(ratio)) o.ratio = ratio;
    if (steps >= 0) o.steps = steps;
    if (align >= 0) o.align = (int)align;
    if (sink >= 0) o.sink = (int)sink;
    if (recent >= 0) o.recent = (int)recent;
    if (seed >= 0) o.seed = (uint64_t)seed;
    if (shuffle >= 0) o.shuffle = (int)shuffle;
    if (every >= 0) o.checkpoint_every = every;
    if (stage == 2) o.lambda = 0.0; /* no regulariser in stage 2 */

    lk_install_cleanup();
    signal(SIGINT, on_sigint);

    /* backend (the model on its device), tokenizer */
    lk_train_backend b;
    uint64_t mfp;
    int vocab;
    if (lk_train_backend_open(&b, a.model_dir, device, o.sink, o.recent, &mfp, &vocab, &err)) lk_fail(&err);
    lk_tokenizer *tok;
    if (lk_tok_load(&tok, a.model_dir, &err)) lk_fail(&err);
    uint64_t tok_fp = lk_tok_fingerprint(tok);
    lk_tok_free(tok);
    if (stage == 2) { /* checked here, not at step 1: the model gives head_dim */
        if (!(o.ratio < 1.0)) {
            if (!isnan(ratio)) lk_die(LK_EUSAGE, "--ratio %g: expected a fraction in [0, 1)", o.ratio);
            lk_die(LK_EINPUT, "%s: stage2 ratio %g (expected a fraction in [0, 1))", a.config ? a.config : "defaults", o.ratio);
        }
        if (b.head_dim % o.align) {
            if (align >= 0) lk_die(LK_EUSAGE, "--align %d does not divide head_dim %d of %s", o.align, b.head_dim,
                                   a.model_dir);
            lk_die(LK_EINPUT, "%s: stage2 align %d does not divide head_dim %d of %s", a.config ? a.config : "defaults", o.align,
                   b.head_dim, a.model_dir);
        }
    }
    lk_train_state st;
    if (lk_train_state_init(&st, b.n_layers, b.n_kv_heads, b.head_dim, o.seed, &err)) lk_fail(&err);
    if (a.init && !a.resume &&
        lk_alpha_load(a.init, st.alpha, b.n_layers, b.n_kv_heads, b.head_dim, &err))
        lk_fail(&err);
    if (a.init && !a.resume) lk_train_clamp(st.alpha, st.n);
    int progress = lk_progress_enabled(a.progress);

    lk_train_run_params rp = {.opts = &o, .backend = &b, .state = &st, .samples = a.samples,
                              .tok_fp = tok_fp, .vocab = vocab, .model_fp = mfp, .checkpoint = a.ckpt,
                              .log = method == LK_TRAIN_NORM ? NULL : a.log, .resume = a.resume,
                              .stop_after = stop_after, .stop = &stop_requested,
                              .progress = progress ? on_progress : NULL};
    int rc = lk_train_run(&rp, &err);
    if (method == LK_TRAIN_NORM && progress && (!rc || rc == LK_EINTR)) fputc('\n', stderr);
    if (!rc) {
        char fp[17], steps_s[32], sink_s[16], recent_s[16];
        lk_alpha_meta meta = {method == LK_TRAIN_NORM ? "0" : stage == 2 ? "2" : "1", steps_s,
                              method == LK_TRAIN_NORM ? "norm" : "learned", hex64(mfp, fp), sink_s, recent_s};
        snprintf(steps_s, sizeof steps_s, "%ld", o.steps);
        snprintf(sink_s, sizeof sink_s, "%d", o.sink);
        snprintf(recent_s, sizeof recent_s, "%d", o.recent);
        rc = lk_alpha_save(a.output, st.alpha, b.n_layers, b.n_kv_heads, b.head_dim, &meta, &err);
    }
    lk_train_state_free(&st);
    lk_train_backend_free(&b);
    free(ckpt_owned);
    free(config_found);
    if (rc) lk_fail(&err); /* LK_EINTR: "interrupted at step ..., checkpoint written to ..." */
    return 0;
}
