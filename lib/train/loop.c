/* loop.c - a training run (train.h, "a run"): the backend for a model
 * directory on a device, the sample source (a shuffle buffer over the
 * streamed samples file, cycled; stdin kept for replay), the learned loop
 * with its resume, TSV log, checkpoints and stop, and the norm heuristic.
 * The step and the files are train.c's; the forward/backward a backend's
 * (train_cpu.c, kernels/train_cuda.cu). Nothing here prints; errors are
 * returned, out of memory included. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"  /* the model on the GPU (cuda backend) */
#include "model.h"   /* the model in host memory (cpu backend), its fingerprint */
#include "samples.h" /* the streamed samples file */
#include "train.h"

/* The CUDA training backend is built when kernels/train_cuda.cu is (the
 * Makefile defines LEANK_TRAIN_CUDA); otherwise train.c's lk_train_cuda_new
 * refuses, saying which part of CUDA the build lacks. */
#ifdef LEANK_TRAIN_CUDA
#define HAVE_TRAIN_CUDA 1
#else
#define HAVE_TRAIN_CUDA 0
#endif

/* ---- the backend for a model directory ---- */

/* The backend and what it was made over (a host model, an engine), freed with it. */
typedef struct {
    lk_train_backend in;
    lk_model *model;
    lk_engine *engine;
} owner;

static int ow_prepare(void *ctx, const int *tokens, int n, int n_ctx, lk_err *err) {
    owner *o = ctx;
    return o->in.prepare(o->in.ctx, tokens, n, n_ctx, err);
}
static int ow_loss_grad(void *ctx, const double *alpha, double *loss, double *grad, lk_err *err) {
    owner *o = ctx;
    return o->in.loss_grad(o->in.ctx, alpha, loss, grad, err);
}
static int ow_norm_stats(void *ctx, double *q_abs, double *k_abs, lk_err *err) {
    owner *o = ctx;
    return o->in.norm_stats(o->in.ctx, q_abs, k_abs, err);
}
static size_t ow_device_bytes(void *ctx) {
    owner *o = ctx;
    return o->in.device_bytes(o->in.ctx);
}
static void ow_times(void *ctx, double t[4]) {
    owner *o = ctx;
    o->in.times(o->in.ctx, t);
}
static void ow_free(void *ctx) {
    owner *o = ctx;
    if (!o) return;
    lk_train_backend_free(&o->in);
    lk_engine_free(o->engine);
    if (o->model) lk_model_free(o->model);
    free(o->model);
    free(o);
}

int lk_train_backend_open(lk_train_backend *b, const char *model_dir, lk_device dev, int sink,
                          int recent, uint64_t *model_fp, int *vocab, lk_err *err) {
    memset(b, 0, sizeof *b);
    if (dev == LK_DEVICE_AUTO) dev = HAVE_TRAIN_CUDA && lk_cuda_available() ? LK_DEVICE_CUDA : LK_DEVICE_CPU;
    owner *o = lk_zalloc(1, sizeof *o, "the training backend", err);
    if (!o) return LK_ENOMEM;
    uint64_t fp;
    int rc, nv;
    if (dev == LK_DEVICE_CUDA && !HAVE_TRAIN_CUDA && lk_cuda_available()) {
        /* a GPU but no CUDA trainer in this build: its refusal, before loading the model */
        rc = lk_train_cuda_new(&o->in, NULL, 0, sink, recent, err);
        goto fail;
    } else if (dev == LK_DEVICE_CUDA) {
        /* a pool of one page (32 tokens of every layer's K and V, at f32, the
         * widest cache type) to start with: the backend grows it per sample */
        lk_config c;
        if ((rc = lk_config_load(&c, model_dir, err))) goto fail;
        lk_engine_opts eo = {.device = LK_DEVICE_CUDA, .max_batch = 1, /* one sequence: the context */
                             .pool_bytes = (size_t)32 * c.n_layers * 2 * c.n_kv_heads * c.head_dim * 4};
        if ((rc = lk_engine_open(&o->engine, model_dir, &eo, err))) goto fail;
        if ((rc = lk_train_cuda_new(&o->in, o->engine, 0, sink, recent, err))) goto fail;
        fp = lk_engine_fingerprint(o->engine);
        nv = lk_engine_config(o->engine)->vocab_size;
    } else {
        o->model = lk_zalloc(1, sizeof *o->model, "the model", err);
        if (!o->model || (rc = lk_model_load(o->model, model_dir, err))) {
            if (!o->model) rc = LK_ENOMEM;
            free(o->model); /* lk_model_load frees what it loaded on failure */
            o->model = NULL;
            goto fail;
        }
        if ((rc = lk_train_cpu_new(&o->in, o->model, sink, recent, err))) goto fail;
        fp = lk_model_fingerprint(o->model);
        nv = o->model->cfg.vocab_size;
    }
    b->name = o->in.name;
    b->ctx = o;
    b->n_layers = o->in.n_layers;
    b->n_kv_heads = o->in.n_kv_heads;
    b->head_dim = o->in.head_dim;
    b->prepare = ow_prepare;
    b->loss_grad = ow_loss_grad;
    b->norm_stats = o->in.norm_stats ? ow_norm_stats : NULL;
    b->device_bytes = o->in.device_bytes ? ow_device_bytes : NULL;
    b->times = o->in.times ? ow_times : NULL;
    b->free = ow_free;
    if (model_fp) *model_fp = fp;
    if (vocab) *vocab = nv;
    return 0;
fail:
    ow_free(o);
    return rc;
}

/* ---- the sample source ---- */

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

static int slot_copy(slot *d, const slot *src, lk_err *err) {
    if (src->n > d->cap) {
        if (lk_resize(&d->tok, (size_t)src->n, sizeof(int), "a training sample", err)) return LK_ENOMEM;
        d->cap = src->n;
    }
    memcpy(d->tok, src->tok, (size_t)src->n * sizeof(int));
    d->n = src->n;
    d->n_ctx = src->n_ctx;
    d->index = src->index;
    return 0;
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
            if (slot_copy(d, &s->mem[s->mem_pos], err)) return LK_ENOMEM;
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
    const char *name = is_stdin ? "<stdin>" : s->path;
    if (smp.n_ctx < 1 || smp.n_ans < 1)
        return lk_seterr(err, LK_EINPUT, "%s: sample %ld has %d context and %d answer tokens "
                         "(training needs both)", name, s->in_pass, smp.n_ctx, smp.n_ans);
    int n = smp.n_ctx + smp.n_ans;
    if (n > d->cap) {
        if (lk_resize(&d->tok, (size_t)n, sizeof(int), "a training sample", err)) return LK_ENOMEM;
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
            long cap = s->cap_mem ? 2 * s->cap_mem : 64;
            if (lk_resize(&s->mem, (size_t)cap, sizeof *s->mem, "the samples kept for replay", err)) return LK_ENOMEM;
            s->cap_mem = cap;
        }
        slot *k = &s->mem[s->n_mem++];
        memset(k, 0, sizeof *k);
        if (slot_copy(k, d, err)) return LK_ENOMEM;
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
        if (!(s->slots = lk_zalloc((size_t)n_slots, sizeof(slot), "the shuffle buffer", err))) return LK_ENOMEM;
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

static int stop_asked(const lk_train_run_params *p) { return p->stop && *p->stop; }

static void report(const lk_train_run_params *p, const lk_train_progress *e) {
    if (p->progress) p->progress(p->progress_ctx, e);
}

/* Norm heuristic: score = mean |q_c| (answer queries of the group) x mean
 * |k_c| (middle keys), averaged over samples, scaled so that the largest is 1. */
static int run_norm(const lk_train_run_params *p, source *src, lk_err *err) {
    const lk_train_opts *o = p->opts;
    lk_train_backend *b = p->backend;
    lk_train_state *st = p->state;
    if (!b->norm_stats)
        return lk_seterr(err, LK_EUSAGE, "the %s training backend has no norm method (use the cpu one)", b->name);
    uint64_t rng = st->rng; /* a copy: the state keeps the seed's */
    size_t n = (size_t)b->n_layers * b->n_kv_heads * b->head_dim;
    double *q = lk_zalloc(n, sizeof(double), "the norm statistics", err),
           *k = lk_zalloc(n, sizeof(double), "the norm statistics", err);
    int rc = q && k ? 0 : LK_ENOMEM;
    for (long t = 0; t < o->steps && !stop_asked(p); t++) {
        if ((rc = source_next(src, o->shuffle, &rng, err)) ||
            (rc = b->prepare(b->ctx, src->cur.tok, src->cur.n, src->cur.n_ctx, err)) ||
            (rc = b->norm_stats(b->ctx, q, k, err)))
            break;
        report(p, &(lk_train_progress){.event = LK_TRAIN_NORM_READ, .step = t + 1, .steps = o->steps,
                                       .sample = src->cur.index, .length = src->cur.n,
                                       .context = src->cur.n_ctx});
    }
    if (!rc && stop_asked(p))
        rc = lk_seterr(err, LK_EINTR, "interrupted (the norm method keeps no checkpoint)");
    if (!rc) {
        double mx = 0;
        for (size_t i = 0; i < n; i++) mx = fmax(mx, q[i] * k[i]);
        for (size_t i = 0; i < n; i++) st->alpha[i] = mx > 0 ? (float)(q[i] * k[i] / mx) : 1.0f;
    }
    free(q);
    free(k);
    return rc;
}

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

/* The learned method: resume, then steps until opts->steps or a stop. */
static int run_learned(const lk_train_run_params *p, source *src, lk_err *err) {
    const lk_train_opts *o = p->opts;
    lk_train_backend *b = p->backend;
    lk_train_state *st = p->state;
    int rc;
    /* resume: the checkpoint's state; the sample source replayed to its position */
    if (p->resume) {
        if (!p->checkpoint) return lk_seterr(err, LK_EUSAGE, "resume: no checkpoint path");
        uint64_t rng = st->rng; /* the seed's initial state, replayed */
        if ((rc = lk_train_checkpoint_load(p->checkpoint, st, o, p->model_fp, err))) return rc;
        for (long t = 0; t < st->step; t++)
            if ((rc = source_next(src, o->shuffle, &rng, err))) return rc;
        if (rng != st->rng || src->read != st->sample_pos)
            return lk_seterr(err, LK_EINPUT, "%s: the samples do not replay to the checkpoint's position "
                             "(read %ld, expected %ld): resume with the same SAMPLES", p->checkpoint, src->read,
                             st->sample_pos);
        report(p, &(lk_train_progress){.event = LK_TRAIN_RESUMED, .step = st->step, .steps = o->steps});
    }
    lk_out log = {0};
    if (p->log) {
        if ((rc = lk_out_open(&log, p->log, err))) return rc;
        fprintf(log.f, "step\tsample\tlength\tcontext\tloss\treg\tlr\tmean_alpha\tfrac_lt_0.1\tkept\tseconds\n");
        if (p->resume) log_carry(log.f, p->log, st->step);
    }
    int every = p->checkpoint && o->checkpoint_every > 0; /* periodic checkpoints */
    double t_start = lk_now();
    long tokens_done = 0, first = st->step;
    int stopped = 0; /* 1: *stop, 2: stop_after */
    rc = 0;
    while (st->step < o->steps) {
        if (stop_asked(p)) {
            stopped = 1;
            break;
        }
        if (p->stop_after && st->step - first >= p->stop_after) {
            stopped = 2;
            break;
        }
        double t0 = lk_now();
        lk_train_stats s;
        if ((rc = source_next(src, o->shuffle, &st->rng, err))) break;
        st->sample_pos = src->read;
        if ((rc = b->prepare(b->ctx, src->cur.tok, src->cur.n, src->cur.n_ctx, err)) ||
            (rc = lk_train_step(st, b, o, &s, err)))
            break;
        double dt = lk_now() - t0;
        tokens_done += src->cur.n;
        if (log.f)
            fprintf(log.f, "%ld\t%ld\t%d\t%d\t%.9g\t%.9g\t%.9g\t%.9g\t%.9g\t%.9g\t%.3f\n",
                    st->step, src->cur.index, src->cur.n, src->cur.n_ctx, s.loss, s.reg,
                    s.lr, s.mean_alpha, s.frac_small, o->stage == 2 ? s.kept : 1.0, dt);
        report(p, &(lk_train_progress){.event = LK_TRAIN_STEPPED, .step = st->step, .steps = o->steps,
                                       .sample = src->cur.index, .length = src->cur.n,
                                       .context = src->cur.n_ctx, .stats = &s, .seconds = dt,
                                       .tokens_per_s = tokens_done / fmax(lk_now() - t_start, 1e-9)});
        if (every && st->step % o->checkpoint_every == 0 && st->step < o->steps &&
            (rc = lk_train_checkpoint_save(p->checkpoint, st, o, p->model_fp, err)))
            break;
    }
    /* a stop that arrived during the last step still stops (as before the end) */
    if (!rc && !stopped && stop_asked(p)) stopped = 1;
    if (!rc && (stopped ? p->checkpoint != NULL : every))
        rc = lk_train_checkpoint_save(p->checkpoint, st, o, p->model_fp, err);
    if (!rc && log.f) rc = lk_out_commit(&log, err);
    if (rc) {
        if (log.f) lk_out_abort(&log);
        return rc;
    }
    if (stopped)
        return lk_seterr(err, LK_EINTR, "%s at step %ld/%ld%s%s",
                         stopped == 2 ? "stopped (--stop-after)" : "interrupted", st->step, o->steps,
                         p->checkpoint ? "; checkpoint written to " : " (no checkpoint: -o -)",
                         p->checkpoint ? p->checkpoint : "");
    lk_train_clamp(st->alpha, st->n);
    return 0;
}

int lk_train_run(const lk_train_run_params *p, lk_err *err) {
    const lk_train_backend *b = p->backend;
    const lk_train_state *st = p->state;
    if (b->n_layers != st->n_layers || b->n_kv_heads != st->n_kv_heads || b->head_dim != st->head_dim)
        return lk_seterr(err, LK_EUSAGE, "training state of shape (%d, %d, %d) for a model of (%d, %d, %d)",
                         st->n_layers, st->n_kv_heads, st->head_dim, b->n_layers, b->n_kv_heads, b->head_dim);
    source src = {.path = p->samples, .tok_fp = p->tok_fp, .vocab = p->vocab};
    int rc = p->opts->method == LK_TRAIN_NORM ? run_norm(p, &src, err) : run_learned(p, &src, err);
    source_close(&src);
    return rc;
}
