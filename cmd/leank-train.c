/* leank-train - a model and samples -> LeanK's channel scales alpha
 * (stage 1, stage 2, or the training-free norm heuristic). See leank-train(1).
 *
 * Sections: command line; the sample source (a shuffle buffer over the
 * streamed samples file, cycled); the training loop (progress, TSV log,
 * checkpoints, SIGINT); main. The math is in lib/train/train.c (step, files) and
 * lib/train/train_cpu.c (the CPU backend). */
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model.h"       /* weights, loading, fingerprint */
#include "samples.h"     /* the streamed samples file */
#include "tokenizer.h"   /* tokenizer fingerprint */
#include "train.h"       /* options, step, backend, alpha/checkpoint files */
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

/* ---- sample source ---- */

typedef struct {
    int *tok; /* context then answer */
    int n, n_ctx, cap;
    long index; /* position in the samples file (0-based) */
} slot;

typedef struct {
    const char *path;
    lk_samples_reader *r;
    uint64_t tok_fp;   /* the model's tokenizer */
    int vocab;
    long read;         /* samples read in all (every pass) */
    long in_pass;      /* samples read in this pass */
    slot *slots;       /* (n_slots) the shuffle buffer */
    int n_slots;
    slot cur;          /* the sample handed out */
    /* stdin cannot be read twice: its samples are kept, and replayed in the
     * same order where a file would be reopened */
    slot *mem;
    long n_mem, cap_mem, mem_pos;
    size_t mem_bytes;
    int replay;
} source;

#define STDIN_KEEP_MAX ((size_t)8 << 30) /* bytes of stdin samples kept for replay */

static void slot_copy(slot *d, const slot *src) {
    if (src->n > d->cap) {
        d->tok = lk_realloc(d->tok, (size_t)src->n * sizeof(int));
        d->cap = src->n;
    }
    memcpy(d->tok, src->tok, (size_t)src->n * sizeof(int));
    d->n = src->n;
    d->n_ctx = src->n_ctx;
    d->index = src->index;
}

static int source_open_pass(source *s, lk_err *err) {
    if (s->r) lk_samples_close(s->r);
    s->r = NULL;
    int rc = lk_samples_open(&s->r, s->path, err);
    if (rc) return rc;
    uint64_t fp = lk_samples_hdr(s->r)->tok_fingerprint;
    if (fp != s->tok_fp)
        return lk_seterr(err, LK_EINPUT, "%s: samples were made with another tokenizer "
                         "(fingerprint %016" PRIx64 ", the model's tokenizer %016" PRIx64 "): "
                         "regenerate them with leank-prep -t MODEL", s->path, fp, s->tok_fp);
    s->in_pass = 0;
    return 0;
}

/* Next sample of the stream into d, reopening the file at its end (cycling). */
static int source_read(source *s, slot *d, lk_err *err) {
    lk_sample smp;
    int is_stdin = !strcmp(s->path, "-");
    for (;;) {
        if (s->replay) {
            slot_copy(d, &s->mem[s->mem_pos]);
            s->mem_pos = (s->mem_pos + 1) % s->n_mem;
            s->read++;
            return 0;
        }
        int rc = lk_samples_next(s->r, &smp, err);
        if (rc < 0) return -rc;
        if (rc == 1) break;
        if (s->in_pass == 0)
            return lk_seterr(err, LK_EINPUT, "%s: no samples", is_stdin ? "<stdin>" : s->path);
        if (is_stdin) {
            s->replay = 1;
            s->mem_pos = 0;
            continue;
        }
        if ((rc = source_open_pass(s, err))) return rc;
    }
    s->read++;
    s->in_pass++;
    const char *name = strcmp(s->path, "-") ? s->path : "<stdin>";
    if (smp.n_ctx < 1 || smp.n_ans < 1)
        return lk_seterr(err, LK_EINPUT, "%s: sample %ld has %d context and %d answer tokens "
                         "(training needs both)", name, s->in_pass, smp.n_ctx, smp.n_ans);
    int n = smp.n_ctx + smp.n_ans;
    if (n > d->cap) {
        d->tok = lk_realloc(d->tok, (size_t)n * sizeof(int));
        d->cap = n;
    }
    memcpy(d->tok, smp.ctx, (size_t)smp.n_ctx * sizeof(int));
    memcpy(d->tok + smp.n_ctx, smp.ans, (size_t)smp.n_ans * sizeof(int));
    for (int i = 0; i < n; i++)
        if (d->tok[i] < 0 || d->tok[i] >= s->vocab)
            return lk_seterr(err, LK_EINPUT, "%s: sample %ld: token %d outside the model's "
                             "vocabulary (%d)", name, s->in_pass, d->tok[i], s->vocab);
    d->n = n;
    d->n_ctx = smp.n_ctx;
    d->index = s->in_pass - 1;
    if (is_stdin) {
        s->mem_bytes += (size_t)n * sizeof(int);
        if (s->mem_bytes > STDIN_KEEP_MAX)
            return lk_seterr(err, LK_EINPUT, "<stdin>: more than %zu GiB of samples to keep for replay "
                             "(expected a stream that fits in memory): write the samples to a file and give its path",
                             STDIN_KEEP_MAX >> 30);
        if (s->n_mem == s->cap_mem) {
            s->cap_mem = s->cap_mem ? 2 * s->cap_mem : 64;
            s->mem = lk_realloc(s->mem, (size_t)s->cap_mem * sizeof *s->mem);
        }
        slot *k = &s->mem[s->n_mem++];
        memset(k, 0, sizeof *k);
        slot_copy(k, d);
    }
    return 0;
}

static uint64_t xorshift(uint64_t *x) {
    *x ^= *x >> 12;
    *x ^= *x << 25;
    *x ^= *x >> 27;
    return *x * 0x2545F4914F6CDD1DULL;
}

/* The next training sample into s->cur: a random slot of the shuffle buffer
 * (filled on first use), which is then refilled from the stream. */
static int source_next(source *s, int n_slots, uint64_t *rng, lk_err *err) {
    int rc;
    if (!s->slots) {
        if ((rc = source_open_pass(s, err))) return rc;
        s->slots = lk_calloc(n_slots, sizeof(slot));
        s->n_slots = n_slots;
        for (int i = 0; i < n_slots; i++)
            if ((rc = source_read(s, s->slots + i, err))) return rc;
    }
    int i = n_slots > 1 ? (int)(xorshift(rng) % (uint64_t)n_slots) : 0;
    slot t = s->cur;
    s->cur = s->slots[i];
    s->slots[i] = t;
    return source_read(s, s->slots + i, err);
}

static void source_close(source *s) {
    if (s->r) lk_samples_close(s->r);
    for (int i = 0; i < s->n_slots; i++) free(s->slots[i].tok);
    free(s->slots);
    free(s->cur.tok);
    for (long i = 0; i < s->n_mem; i++) free(s->mem[i].tok);
    free(s->mem);
    memset(s, 0, sizeof *s);
}

/* ---- the run ---- */

typedef struct {
    const char *model_dir, *config, *output, *init, *ckpt, *log, *samples;
    int resume, progress;
} run_args;

/* Copy the lines of an earlier log up to step `upto` into the new one (resume). */
static void log_carry(FILE *out, const char *path, long upto) {
    FILE *f = fopen(path, "r");
    if (!f) return;
    char line[1024];
    while (fgets(line, sizeof line, f)) {
        if (line[0] == 's') continue; /* header, written anew */
        if (atol(line) > upto) break;
        fputs(line, out);
    }
    fclose(f);
}

static const char *hex64(uint64_t v, char *buf) {
    snprintf(buf, 17, "%016" PRIx64, v);
    return buf;
}

static void save_checkpoint(const run_args *a, const lk_train_state *st, const lk_train_opts *o,
                            uint64_t mfp) {
    lk_err err;
    if (lk_train_checkpoint_save(a->ckpt, st, o, mfp, &err)) lk_fail(&err);
}

/* Norm heuristic: score = mean |q_c| (answer queries of the group) x mean
 * |k_c| (middle keys), averaged over samples, scaled so that the largest is 1. */
static void run_norm(const lk_train_opts *o, lk_train_backend *b, source *src,
                     uint64_t rng, float *alpha, int progress, lk_err *err) {
    size_t n = (size_t)b->n_layers * b->n_kv_heads * b->head_dim;
    double *q = lk_calloc(n, sizeof(double)), *k = lk_calloc(n, sizeof(double));
    for (long t = 0; t < o->steps && !stop_requested; t++) {
        if (source_next(src, o->shuffle, &rng, err) ||
            b->prepare(b->ctx, src->cur.tok, src->cur.n, src->cur.n_ctx, err) ||
            b->norm_stats(b->ctx, q, k, err))
            lk_fail(err);
        if (progress)
            fprintf(stderr, "\rleank-train: norm: sample %ld/%ld (%d tokens)", t + 1, o->steps,
                    src->cur.n);
    }
    if (progress) fputc('\n', stderr);
    if (stop_requested) lk_die(LK_EINTR, "interrupted (the norm method keeps no checkpoint)");
    double mx = 0;
    for (size_t i = 0; i < n; i++) mx = fmax(mx, q[i] * k[i]);
    for (size_t i = 0; i < n; i++) alpha[i] = mx > 0 ? (float)(q[i] * k[i] / mx) : 1.0f;
    free(q);
    free(k);
}

int main(int argc, char **argv) {
    lk_progname = "leank-train";
    atexit(lk_close_stdout); /* a write error on stdout is an error */
    enum { O_STAGE2 = 256, O_INIT, O_METHOD, O_STEPS, O_LR, O_LAMBDA, O_RATIO, O_ALIGN, O_SINK,
           O_RECENT, O_SEED, O_SHUFFLE, O_CKPT, O_CKPT_EVERY, O_RESUME, O_STOP, O_LOG, O_PROGRESS };
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
        {"log", required_argument, 0, O_LOG},
        {"progress", no_argument, 0, O_PROGRESS}, {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, 'V'}, {0, 0, 0, 0}};
    run_args a = {0};
    int stage = 1, method = LK_TRAIN_LEARN;
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
    if (!a.ckpt) o.checkpoint_every = 0;

    lk_install_cleanup();
    signal(SIGINT, on_sigint);

    /* model, tokenizer, backend */
    lk_model m;
    if (lk_model_load(&m, a.model_dir, &err)) lk_fail(&err);
    lk_tokenizer *tok;
    if (lk_tok_load(&tok, a.model_dir, &err)) lk_fail(&err);
    const lk_config *cfg = &m.cfg;
    uint64_t mfp = lk_model_fingerprint(&m);
    source src = {.path = a.samples, .tok_fp = lk_tok_fingerprint(tok), .vocab = cfg->vocab_size};
    lk_tok_free(tok);
    if (stage == 2) { /* checked here, not at step 1: the model gives head_dim */
        if (!(o.ratio < 1.0)) {
            if (!isnan(ratio)) lk_die(LK_EUSAGE, "--ratio %g: expected a fraction in [0, 1)", o.ratio);
            lk_die(LK_EINPUT, "%s: stage2 ratio %g (expected a fraction in [0, 1))", a.config ? a.config : "defaults", o.ratio);
        }
        if (cfg->head_dim % o.align) {
            if (align >= 0) lk_die(LK_EUSAGE, "--align %d does not divide head_dim %d of %s", o.align, cfg->head_dim,
                                   a.model_dir);
            lk_die(LK_EINPUT, "%s: stage2 align %d does not divide head_dim %d of %s", a.config ? a.config : "defaults", o.align,
                   cfg->head_dim, a.model_dir);
        }
    }
    lk_train_backend b;
    if (lk_train_cpu_new(&b, &m, o.sink, o.recent, &err)) lk_fail(&err);
    lk_train_state st;
    if (lk_train_state_init(&st, cfg->n_layers, cfg->n_kv_heads, cfg->head_dim, o.seed, &err)) lk_fail(&err);
    if (a.init && !a.resume &&
        lk_alpha_load(a.init, st.alpha, cfg->n_layers, cfg->n_kv_heads, cfg->head_dim, &err))
        lk_fail(&err);
    if (a.init && !a.resume) lk_train_clamp(st.alpha, st.n);
    int progress = lk_progress_enabled(a.progress);
    char fp[17];
    char steps_s[32], sink_s[16], recent_s[16];
    lk_alpha_meta meta = {stage == 2 ? "2" : "1", steps_s, method == LK_TRAIN_NORM ? "norm" : "learned",
                          hex64(mfp, fp), sink_s, recent_s};
    snprintf(steps_s, sizeof steps_s, "%ld", o.steps);
    snprintf(sink_s, sizeof sink_s, "%d", o.sink);
    snprintf(recent_s, sizeof recent_s, "%d", o.recent);

    if (method == LK_TRAIN_NORM) {
        run_norm(&o, &b, &src, st.rng, st.alpha, progress, &err);
        meta.stage = "0";
    } else {
        /* resume: the checkpoint's state; the sample source replayed to its position */
        if (a.resume) {
            uint64_t rng = st.rng; /* the seed's initial state, replayed */
            if (lk_train_checkpoint_load(a.ckpt, &st, &o, mfp, &err)) lk_fail(&err);
            for (long t = 0; t < st.step; t++)
                if (source_next(&src, o.shuffle, &rng, &err)) lk_fail(&err);
            if (rng != st.rng || src.read != st.sample_pos)
                lk_die(LK_EINPUT, "%s: the samples do not replay to the checkpoint's position "
                       "(read %ld, expected %ld): resume with the same SAMPLES", a.ckpt, src.read,
                       st.sample_pos);
            if (progress) fprintf(stderr, "leank-train: resuming at step %ld/%ld\n", st.step, o.steps);
        }
        lk_out log = {0};
        if (a.log) {
            if (lk_out_open(&log, a.log, &err)) lk_fail(&err);
            fprintf(log.f, "step\tsample\tlength\tcontext\tloss\treg\tlr\tmean_alpha\tfrac_lt_0.1\tkept\tseconds\n");
            if (a.resume) log_carry(log.f, a.log, st.step);
        }
        double t_start = lk_now();
        long tokens_done = 0, first = st.step;
        while (st.step < o.steps && !stop_requested) {
            if (stop_after && st.step - first >= stop_after) {
                stop_requested = 2;
                break;
            }
            double t0 = lk_now();
            lk_train_stats s;
            if (source_next(&src, o.shuffle, &st.rng, &err)) lk_fail(&err);
            st.sample_pos = src.read;
            if (b.prepare(b.ctx, src.cur.tok, src.cur.n, src.cur.n_ctx, &err) ||
                lk_train_step(&st, &b, &o, &s, &err))
                lk_fail(&err);
            double dt = lk_now() - t0;
            tokens_done += src.cur.n;
            if (log.f)
                fprintf(log.f, "%ld\t%ld\t%d\t%d\t%.9g\t%.9g\t%.9g\t%.9g\t%.9g\t%.9g\t%.3f\n",
                        st.step, src.cur.index, src.cur.n, src.cur.n_ctx, s.loss, s.reg,
                        s.lr, s.mean_alpha, s.frac_small, o.stage == 2 ? s.kept : 1.0, dt);
            if (progress)
                fprintf(stderr, "leank-train: step %ld/%ld  len %d  loss %.6g  reg %.4g  "
                        "mean alpha %.4f  <0.1 %.3f  %.0f tok/s\n", st.step, o.steps, src.cur.n,
                        s.loss, s.reg, s.mean_alpha, s.frac_small,
                        tokens_done / fmax(lk_now() - t_start, 1e-9));
            if (o.checkpoint_every > 0 && st.step % o.checkpoint_every == 0 && st.step < o.steps)
                save_checkpoint(&a, &st, &o, mfp);
        }
        if (stop_requested) {
            if (a.ckpt) save_checkpoint(&a, &st, &o, mfp);
            if (log.f && lk_out_commit(&log, &err)) lk_fail(&err);
            lk_warn("%s at step %ld/%ld%s%s", stop_requested == 2 ? "stopped (--stop-after)" : "interrupted",
                    st.step, o.steps,
                    a.ckpt ? "; checkpoint written to " : " (no checkpoint: -o -)",
                    a.ckpt ? a.ckpt : "");
            source_close(&src);
            lk_train_state_free(&st);
            lk_train_backend_free(&b);
            lk_model_free(&m);
            free(ckpt_owned);
            return LK_EINTR;
        }
        if (a.ckpt && o.checkpoint_every > 0) save_checkpoint(&a, &st, &o, mfp);
        if (log.f && lk_out_commit(&log, &err)) lk_fail(&err);
        lk_train_clamp(st.alpha, st.n);
    }
    if (lk_alpha_save(a.output, st.alpha, cfg->n_layers, cfg->n_kv_heads, cfg->head_dim, &meta, &err))
        lk_fail(&err);
    source_close(&src);
    lk_train_state_free(&st);
    lk_train_backend_free(&b);
    lk_model_free(&m);
    free(ckpt_owned);
    free(config_found);
    return 0;
}
