/* train.c - options and YAML config, the learning-rate schedule, AdamW, the
 * training step, alpha and checkpoint files. The forward/backward lives in a
 * backend (train_cpu.c). */
#include "train.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "mask.h"
#include "plan.h" /* LK_PLAN_DEFAULT_SINK, _RECENT */
#include "safetensors.h"

/* ---- options ---- */

void lk_train_opts_default(lk_train_opts *o, int stage) {
    memset(o, 0, sizeof *o);
    o->stage = stage;
    o->method = LK_TRAIN_LEARN;
    o->steps = 1000;
    o->lr = stage == 2 ? 0.01 : 0.02;
    o->lambda = stage == 2 ? 0.0 : 0.06;
    o->ratio = 0.7;
    o->align = 32;
    o->sink = LK_PLAN_DEFAULT_SINK; /* the windows decoding assumes when a mask records none */
    o->recent = LK_PLAN_DEFAULT_RECENT;
    o->checkpoint_every = 50;
    o->seed = 0;
    o->shuffle = 16;
    o->beta1 = 0.9;
    o->beta2 = 0.999;
    o->eps = 1e-8;
    o->weight_decay = 0.0;
}

/* A scalar node's value as a number, with file:line in errors. */
static int y_num(const char *path, yaml_node_t *n, const char *key, double lo, double hi,
                 double *out, lk_err *err) {
    if (n->type != YAML_SCALAR_NODE)
        return lk_seterr(err, LK_EINPUT, "%s:%lu: %s: expected a number", path,
                         (unsigned long)n->start_mark.line + 1, key);
    const char *s = (const char *)n->data.scalar.value;
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || !isfinite(v) || v < lo || v > hi)
        return lk_seterr(err, LK_EINPUT, "%s:%lu: %s: '%s' is not a number in [%g, %g]", path,
                         (unsigned long)n->start_mark.line + 1, key, s, lo, hi);
    *out = v;
    return 0;
}

static int y_int(const char *path, yaml_node_t *n, const char *key, double lo, double hi,
                 long *out, lk_err *err) {
    double v;
    int rc = y_num(path, n, key, lo, hi, &v, err);
    if (rc) return rc;
    if (v != floor(v))
        return lk_seterr(err, LK_EINPUT, "%s:%lu: %s: expected an integer", path,
                         (unsigned long)n->start_mark.line + 1, key);
    *out = (long)v;
    return 0;
}

/* Apply one "key: value" of a mapping. section: NULL (top), "stage1",
 * "stage2", "adam". apply: whether this section is the one in use. */
static int y_key(const char *path, yaml_document_t *doc, const char *section, int apply,
                 const char *key, yaml_node_t *v, lk_train_opts *o, lk_err *err) {
    double d;
    long l;
    int rc = 0;
    unsigned long line = (unsigned long)v->start_mark.line + 1;
#define NUM(name, lo, hi, field)                                    \
    if (strcmp(key, name) == 0) {                                   \
        if ((rc = y_num(path, v, name, lo, hi, &d, err))) return rc; \
        if (apply) field = d;                                       \
        return 0;                                                   \
    }
#define INT(name, lo, hi, field)                                    \
    if (strcmp(key, name) == 0) {                                   \
        if ((rc = y_int(path, v, name, lo, hi, &l, err))) return rc; \
        if (apply) field = l;                                       \
        return 0;                                                   \
    }
    if (!section) {
        if (strcmp(key, "model") == 0) return 0;
        INT("sink", 0, 1e9, o->sink)
        INT("recent", 1, 1e9, o->recent)
        INT("seed", 0, 9.007199254740992e15, o->seed)
        INT("checkpoint_every", 0, 1e12, o->checkpoint_every)
        INT("shuffle", 1, 1 << 16, o->shuffle)
        if (strcmp(key, "stage1") == 0 || strcmp(key, "stage2") == 0 || strcmp(key, "adam") == 0) {
            if (v->type != YAML_MAPPING_NODE)
                return lk_seterr(err, LK_EINPUT, "%s:%lu: %s: expected a mapping", path, line, key);
            int use = strcmp(key, "adam") == 0 || (key[5] - '0') == o->stage;
            for (yaml_node_pair_t *p = v->data.mapping.pairs.start; p < v->data.mapping.pairs.top; p++) {
                yaml_node_t *k = yaml_document_get_node(doc, p->key);
                yaml_node_t *val = yaml_document_get_node(doc, p->value);
                if (k->type != YAML_SCALAR_NODE)
                    return lk_seterr(err, LK_EINPUT, "%s:%lu: expected a key", path,
                                     (unsigned long)k->start_mark.line + 1);
                if ((rc = y_key(path, doc, key, use, (const char *)k->data.scalar.value, val, o, err)))
                    return rc;
            }
            return 0;
        }
    } else if (strcmp(section, "adam") == 0) {
        NUM("beta1", 0, 0.999999, o->beta1)
        NUM("beta2", 0, 0.999999999, o->beta2)
        NUM("eps", 0, 1, o->eps)
        NUM("weight_decay", 0, 1, o->weight_decay)
    } else {
        NUM("lr", 0, 10, o->lr)
        INT("steps", 1, 1e12, o->steps)
        if (strcmp(section, "stage1") == 0) {
            NUM("lambda", 0, 1e3, o->lambda)
        } else {
            NUM("ratio", 0, 1, o->ratio)
            INT("align", 1, 1 << 20, o->align)
        }
    }
#undef NUM
#undef INT
    return lk_seterr(err, LK_EINPUT, "%s:%lu: unknown key '%s'%s%s", path, line, key,
                     section ? " in " : "", section ? section : "");
}

int lk_train_config_load(lk_train_opts *o, const char *path, lk_err *err) {
    char *text;
    size_t len;
    int rc = lk_read_file(path, 16u << 20, "a YAML training config", &text, &len, err);
    if (rc) return rc;
    yaml_parser_t parser;
    yaml_document_t doc;
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        rc = lk_seterr(err, LK_EINPUT, "%s:%lu: YAML error: %s", path,
                       (unsigned long)parser.problem_mark.line + 1,
                       parser.problem ? parser.problem : "malformed");
        yaml_parser_delete(&parser);
        free(text);
        return rc;
    }
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (!root) {
        rc = lk_seterr(err, LK_EINPUT, "%s: empty config (expected a mapping of training options)", path);
    } else if (root->type != YAML_MAPPING_NODE) {
        rc = lk_seterr(err, LK_EINPUT, "%s: expected a mapping of training options at the top", path);
    } else {
        for (yaml_node_pair_t *p = root->data.mapping.pairs.start; !rc && p < root->data.mapping.pairs.top; p++) {
            yaml_node_t *k = yaml_document_get_node(&doc, p->key);
            yaml_node_t *v = yaml_document_get_node(&doc, p->value);
            if (k->type != YAML_SCALAR_NODE)
                rc = lk_seterr(err, LK_EINPUT, "%s:%lu: expected a key", path,
                               (unsigned long)k->start_mark.line + 1);
            else
                rc = y_key(path, &doc, NULL, 1, (const char *)k->data.scalar.value, v, o, err);
        }
    }
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    free(text);
    return rc;
}

double lk_train_lr_mult(long t, long n) {
    double w = n / 5.0;
    double up = fmax((t + 1) / w, 0.1), down = fmax((n - t) / w, 0.1);
    return fmin(1.0, fmin(up, down));
}

/* ---- state and step ---- */

int lk_train_state_init(lk_train_state *s, int n_layers, int n_kv_heads, int head_dim,
                        uint64_t seed, lk_err *err) {
    memset(s, 0, sizeof *s);
    s->n_layers = n_layers;
    s->n_kv_heads = n_kv_heads;
    s->head_dim = head_dim;
    s->n = (size_t)n_layers * n_kv_heads * head_dim;
    s->alpha = lk_alloc(s->n, sizeof(float), "the training state", err);
    s->m = lk_zalloc(s->n, sizeof(float), "the training state", err);
    s->v = lk_zalloc(s->n, sizeof(float), "the training state", err);
    s->alpha_eff = lk_zalloc(s->n, sizeof(double), "the training state", err);
    s->grad = lk_zalloc(s->n, sizeof(double), "the training state", err);
    s->keep = lk_zalloc(s->n, 1, "the training state", err);
    if (!s->alpha || !s->m || !s->v || !s->alpha_eff || !s->grad || !s->keep) {
        lk_train_state_free(s);
        return LK_ENOMEM;
    }
    for (size_t i = 0; i < s->n; i++) s->alpha[i] = 1.0f;
    s->rng = seed * 0x9E3779B97F4A7C15ULL + 0x2545F4914F6CDD1DULL;
    if (!s->rng) s->rng = 1;
    return 0;
}

void lk_train_state_free(lk_train_state *s) {
    free(s->alpha);
    free(s->m);
    free(s->v);
    free(s->alpha_eff);
    free(s->grad);
    free(s->keep);
    memset(s, 0, sizeof *s);
}

void lk_train_clamp(float *a, size_t n) {
    for (size_t i = 0; i < n; i++) a[i] = a[i] < 0.0f ? 0.0f : a[i] > 1.0f ? 1.0f : a[i];
}

int lk_train_objective(lk_train_state *s, lk_train_backend *b, const lk_train_opts *o,
                       lk_train_stats *st, lk_err *err) {
    size_t n = s->n;
    memset(st, 0, sizeof *st);
    lk_train_clamp(s->alpha, n);
    if (o->stage == 2) {
        lk_mask m;
        int rc = lk_mask_from_alpha(&m, s->alpha, s->n_layers, s->n_kv_heads, s->head_dim,
                                    o->ratio, o->align, err);
        if (rc) return rc;
        memcpy(s->keep, m.keep, n);
        lk_mask_free(&m);
        size_t kept = 0;
        for (size_t i = 0; i < n; i++) kept += s->keep[i];
        st->kept = (double)kept / n;
    }
    for (size_t i = 0; i < n; i++)
        s->alpha_eff[i] = o->stage == 2 && !s->keep[i] ? 0.0 : (double)s->alpha[i];
    int rc = b->loss_grad(b->ctx, s->alpha_eff, &st->loss, s->grad, err);
    if (rc) return rc;
    /* stage 1: lambda * mean|alpha|; d/dalpha = lambda * sign(alpha) / n
     * (sign(0) = 0, as torch's abs backward). Stage 2: the gradient with
     * respect to alpha*mask is passed straight through to alpha. */
    if (o->stage == 1 && o->lambda > 0) {
        double sum = 0;
        for (size_t i = 0; i < n; i++) {
            sum += fabs((double)s->alpha[i]);
            s->grad[i] += s->alpha[i] > 0 ? o->lambda / n : 0.0;
        }
        st->reg = o->lambda * sum / n;
    }
    return 0;
}

int lk_train_step(lk_train_state *s, lk_train_backend *b, const lk_train_opts *o,
                  lk_train_stats *st, lk_err *err) {
    size_t n = s->n;
    int rc = lk_train_objective(s, b, o, st, err);
    if (rc) return rc;
    /* a NaN/Inf (non-finite weights, an overflow) would spread to every alpha */
    int finite = isfinite(st->loss) && isfinite(st->reg);
    for (size_t i = 0; finite && i < n; i++) finite = isfinite(s->grad[i]);
    if (!finite)
        return lk_seterr(err, LK_EINPUT, "step %ld: the loss is %g, its gradient %s (expected finite numbers: "
                         "the model's weights hold NaN or Inf, or the sample overflows)", s->step + 1, st->loss,
                         isfinite(st->loss) ? "not finite" : "undefined");
    /* AdamW (torch semantics; moments kept in float so that a checkpoint
     * holds the exact state) */
    long t = s->step + 1;
    double lr = o->lr * lk_train_lr_mult(s->step, o->steps);
    double bc1 = 1.0 - pow(o->beta1, (double)t), bc2 = 1.0 - pow(o->beta2, (double)t);
    double sum = 0;
    size_t small = 0;
    for (size_t i = 0; i < n; i++) {
        double g = s->grad[i], p = s->alpha[i];
        p *= 1.0 - lr * o->weight_decay;
        double m = o->beta1 * s->m[i] + (1.0 - o->beta1) * g;
        double v = o->beta2 * s->v[i] + (1.0 - o->beta2) * g * g;
        s->m[i] = (float)m;
        s->v[i] = (float)v;
        p -= lr / bc1 * s->m[i] / (sqrt((double)s->v[i]) / sqrt(bc2) + o->eps);
        float a = (float)p;
        s->alpha[i] = a < 0.0f ? 0.0f : a > 1.0f ? 1.0f : a;
        sum += s->alpha[i];
        small += s->alpha[i] < 0.1f;
    }
    s->step++;
    st->lr = lr;
    st->mean_alpha = sum / n;
    st->frac_small = (double)small / n;
    return 0;
}

/* ---- files ---- */

int lk_alpha_save(const char *path, const float *alpha, int n_layers, int n_kv_heads,
                  int head_dim, const lk_alpha_meta *meta, lk_err *err) {
    lk_stw *w = lk_stw_new();
    int64_t shape[3] = {n_layers, n_kv_heads, head_dim};
    lk_stw_add(w, "alpha", LK_DT_F32, 3, shape, alpha);
    lk_stw_meta(w, "format", "leank-alpha");
    if (meta) {
        if (meta->stage) lk_stw_meta(w, "stage", meta->stage);
        if (meta->steps) lk_stw_meta(w, "steps", meta->steps);
        if (meta->method) lk_stw_meta(w, "method", meta->method);
        if (meta->model) lk_stw_meta(w, "model", meta->model);
        if (meta->sink && meta->recent) {
            lk_stw_meta(w, "sink", meta->sink);
            lk_stw_meta(w, "recent", meta->recent);
        }
    }
    int rc = lk_stw_write(w, path, err);
    lk_stw_free(w);
    return rc;
}

/* A [layers, kv heads, head_dim] tensor as float32, every value finite. */
static int load_f32(const lk_st *st, const char *path, const char *name, float *dst,
                    int n_layers, int n_kv_heads, int head_dim, lk_err *err) {
    const int64_t shape[3] = {n_layers, n_kv_heads, head_dim};
    const lk_tensor *t;
    int rc = lk_st_expect(st, name, 3, shape, &t, err);
    if (!rc) rc = lk_tensor_to_f32(t, dst, err);
    size_t n = (size_t)n_layers * n_kv_heads * head_dim;
    for (size_t i = 0; !rc && i < n; i++)
        if (!isfinite(dst[i]))
            rc = lk_seterr(err, LK_EINPUT, "%s: %s[%zu, %zu, %zu] is not finite (expected a number)", path, name,
                           i / ((size_t)n_kv_heads * head_dim), i / head_dim % n_kv_heads, i % head_dim);
    return rc;
}

int lk_alpha_load(const char *path, float *alpha, int n_layers, int n_kv_heads, int head_dim,
                  lk_err *err) {
    lk_st *st;
    int rc = lk_st_open(&st, path, err);
    if (rc) return rc;
    const char *fmt = lk_st_meta(st, "format");
    if (!fmt || strcmp(fmt, "leank-alpha") != 0)
        rc = lk_seterr(err, LK_EINPUT, "%s: not an alpha file (metadata format is %s%s%s, "
                       "expected leank-alpha)", path, fmt ? "\"" : "", fmt ? fmt : "absent",
                       fmt ? "\"" : "");
    if (!rc) rc = load_f32(st, path, "alpha", alpha, n_layers, n_kv_heads, head_dim, err);
    size_t n = (size_t)n_layers * n_kv_heads * head_dim;
    for (size_t i = 0; !rc && i < n; i++)
        if (!(alpha[i] >= 0.0f && alpha[i] <= 1.0f))
            rc = lk_seterr(err, LK_EINPUT, "%s: alpha[%zu, %zu, %zu] is %g (expected a scale in [0, 1])", path,
                           i / ((size_t)n_kv_heads * head_dim), i / head_dim % n_kv_heads, i % head_dim,
                           (double)alpha[i]);
    lk_st_close(st);
    return rc;
}

uint64_t lk_train_opts_fingerprint(const lk_train_opts *o) {
    char buf[512];
    int n = snprintf(buf, sizeof buf, "stage=%d method=%d steps=%ld lr=%.17g lambda=%.17g "
                     "ratio=%.17g align=%d sink=%d recent=%d seed=%" PRIu64 " shuffle=%d"
                     " b1=%.17g b2=%.17g eps=%.17g wd=%.17g", o->stage, (int)o->method, o->steps,
                     o->lr, o->lambda, o->ratio, o->align, o->sink, o->recent, o->seed, o->shuffle, o->beta1,
                     o->beta2, o->eps, o->weight_decay);
    return lk_fnv1a64(buf, (size_t)n, LK_FNV_OFFSET);
}

int lk_train_checkpoint_save(const char *path, const lk_train_state *s, const lk_train_opts *o,
                             uint64_t model_fp, lk_err *err) {
    lk_stw *w = lk_stw_new();
    int64_t shape[3] = {s->n_layers, s->n_kv_heads, s->head_dim};
    lk_stw_add(w, "alpha", LK_DT_F32, 3, shape, s->alpha);
    lk_stw_add(w, "adam_m", LK_DT_F32, 3, shape, s->m);
    lk_stw_add(w, "adam_v", LK_DT_F32, 3, shape, s->v);
    lk_stw_meta(w, "format", "leank-train-checkpoint");
    lk_stw_metaf(w, "stage", "%d", o->stage);
    lk_stw_meta(w, "method", o->method == LK_TRAIN_NORM ? "norm" : "learned");
    lk_stw_metaf(w, "step", "%ld", s->step);
    lk_stw_metaf(w, "steps", "%ld", o->steps);
    lk_stw_metaf(w, "sample_pos", "%ld", s->sample_pos);
    lk_stw_metaf(w, "rng", "%016" PRIx64, s->rng);
    lk_stw_metaf(w, "model", "%016" PRIx64, model_fp);
    lk_stw_metaf(w, "run", "%016" PRIx64, lk_train_opts_fingerprint(o));
    int rc = lk_stw_write(w, path, err);
    lk_stw_free(w);
    return rc;
}

static int meta_u64(const lk_st *st, const char *path, const char *key, int hex, uint64_t *out,
                    lk_err *err) {
    const char *v = lk_st_meta(st, key);
    char *end;
    if (!v || !*v) return lk_seterr(err, LK_EINPUT, "%s: checkpoint lacks metadata \"%s\"", path, key);
    errno = 0;
    unsigned long long x = strtoull(v, &end, hex ? 16 : 10);
    if (*v == '-' || *v == '+' || isspace((unsigned char)*v) || errno || *end)
        return lk_seterr(err, LK_EINPUT, "%s: metadata \"%s\" is \"%s\" (expected an unsigned %s number)", path, key,
                         v, hex ? "hexadecimal" : "decimal");
    *out = x;
    return 0;
}

int lk_train_checkpoint_load(const char *path, lk_train_state *s, const lk_train_opts *o,
                             uint64_t model_fp, lk_err *err) {
    lk_st *st;
    int rc = lk_st_open(&st, path, err);
    if (rc) return rc;
    const char *fmt = lk_st_meta(st, "format");
    uint64_t step = 0, pos = 0, rng = 0, mfp = 0, run = 0;
    if (!fmt || strcmp(fmt, "leank-train-checkpoint") != 0)
        rc = lk_seterr(err, LK_EINPUT, "%s: not a leank-train checkpoint (metadata format %s)",
                       path, fmt ? fmt : "absent");
    if (!rc) rc = meta_u64(st, path, "step", 0, &step, err);
    if (!rc) rc = meta_u64(st, path, "sample_pos", 0, &pos, err);
    if (!rc) rc = meta_u64(st, path, "rng", 1, &rng, err);
    if (!rc) rc = meta_u64(st, path, "model", 1, &mfp, err);
    if (!rc) rc = meta_u64(st, path, "run", 1, &run, err);
    if (!rc && mfp != model_fp)
        rc = lk_seterr(err, LK_EINPUT, "%s: checkpoint was made with another model "
                       "(fingerprint %016" PRIx64 ", this model %016" PRIx64 ")", path, mfp, model_fp);
    if (!rc && run != lk_train_opts_fingerprint(o))
        rc = lk_seterr(err, LK_EINPUT, "%s: checkpoint was made with other training options "
                       "(stage, steps, lr, lambda, ratio, align, sink, recent, seed, shuffle "
                       "or AdamW settings differ): resume with the same config and options", path);
    if (!rc && step > (uint64_t)o->steps)
        rc = lk_seterr(err, LK_EINPUT, "%s: checkpoint step %" PRIu64 " (expected 0 to --steps %ld)",
                       path, step, o->steps);
    if (!rc && pos > LONG_MAX)
        rc = lk_seterr(err, LK_EINPUT, "%s: checkpoint sample_pos %" PRIu64 " is out of range", path, pos);
    if (!rc) rc = load_f32(st, path, "alpha", s->alpha, s->n_layers, s->n_kv_heads, s->head_dim, err);
    if (!rc) rc = load_f32(st, path, "adam_m", s->m, s->n_layers, s->n_kv_heads, s->head_dim, err);
    if (!rc) rc = load_f32(st, path, "adam_v", s->v, s->n_layers, s->n_kv_heads, s->head_dim, err);
    size_t n = (size_t)s->n_layers * s->n_kv_heads * s->head_dim;
    for (size_t i = 0; !rc && i < n; i++)
        if (s->v[i] < 0)
            rc = lk_seterr(err, LK_EINPUT, "%s: adam_v[%zu] is negative (expected second moments >= 0)", path, i);
    if (!rc) {
        s->step = (long)step;
        s->sample_pos = (long)pos;
        s->rng = rng;
    }
    lk_st_close(st);
    return rc;
}

/* A build without kernels/train_cuda.cu (the Makefile defines LEANK_TRAIN_CUDA
 * when it is built): the CUDA backend is refused, saying what the build lacks. */
#ifndef LEANK_TRAIN_CUDA
int lk_train_cuda_new(lk_train_backend *b, struct lk_engine *e, int own, int sink, int recent,
                      lk_err *err) {
    (void)b, (void)e, (void)own, (void)sink, (void)recent;
#ifdef LEANK_CUDA
    return lk_seterr(err, LK_EDEVICE, "this build of leank has the CUDA engine but no CUDA training backend "
                     "(kernels/train_cuda.cu): train on the CPU");
#else
    return lk_seterr(err, LK_EDEVICE,
                     "this build of leank has no CUDA backend (rebuild with the CUDA toolkit: make CUDA=1)");
#endif
}
#endif
