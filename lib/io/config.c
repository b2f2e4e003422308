/* config.c - Hugging Face config.json for Llama / Qwen2 / Mistral, and the
 * RoPE inverse frequencies exactly as transformers' modeling_rope_utils
 * computes them (default, linear, llama3, yarn). Defaults for absent keys are
 * those of transformers' LlamaConfig / Qwen2Config / MistralConfig. */
#include "config.h"

#include "safetensors.h" /* the tensor table of lk_config_fingerprint */

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const struct {
    const char *arch, *model_type;
    int max_pos;    /* HF default max_position_embeddings */
    int always_bias; /* q/k/v carry a bias whatever the config says */
    int has_bias_keys; /* reads attention_bias / mlp_bias */
} archs[] = {
    {"LlamaForCausalLM", "llama", 2048, 0, 1},
    {"Qwen2ForCausalLM", "qwen2", 32768, 1, 0},
    {"MistralForCausalLM", "mistral", 4096 * 32, 0, 0},
};
#define N_ARCHS ((int)(sizeof archs / sizeof archs[0]))
#define ARCH_LIST "LlamaForCausalLM, Qwen2ForCausalLM, MistralForCausalLM " \
                  "(model_type llama, qwen2, mistral)"
#define ROPE_LIST "default, linear, llama3, yarn"

/* ---- typed getters: absent or null -> default; wrong type -> error ---- */

typedef struct {
    const char *name; /* file name for messages */
    lk_err *err;
    int rc;
} ctx;

static int bad(ctx *x, const char *key, const char *expected, const json_t *v) {
    if (x->rc) return x->rc;
    const char *got = json_is_string(v) ? "a string" : json_is_boolean(v) ? "a boolean" :
                      json_is_array(v) ? "an array" : json_is_object(v) ? "an object" : "a number";
    return x->rc = lk_seterr(x->err, LK_EINPUT, "%s: \"%s\" is %s (expected %s)", x->name, key, got,
                             expected);
}

static double get_num(ctx *x, const json_t *o, const char *key, double def) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return def;
    if (!json_is_number(v)) { bad(x, key, "a number", v); return def; }
    return json_number_value(v);
}

/* Integer (a real with an integral value is accepted too). required: absent is an error. */
static int get_int(ctx *x, const json_t *o, const char *key, int def, int required, int min) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        if (required && !x->rc)
            x->rc = lk_seterr(x->err, LK_EINPUT, "%s: missing \"%s\" (expected an integer >= %d)",
                              x->name, key, min);
        return def;
    }
    double d = json_is_number(v) ? json_number_value(v) : NAN;
    if (!(d == floor(d)) || d < min || d > 2147483647.0) {
        if (!x->rc)
            x->rc = lk_seterr(x->err, LK_EINPUT, "%s: \"%s\": %s (expected an integer >= %d)", x->name,
                              key, json_is_number(v) ? "out of range or not an integer" : "not a number",
                              min);
        return def;
    }
    return (int)d;
}

static int get_bool(ctx *x, const json_t *o, const char *key, int def) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return def;
    if (!json_is_boolean(v)) { bad(x, key, "true or false", v); return def; }
    return json_is_true(v);
}

/* ---- rope ---- */

/* rp: the rope_scaling / rope_parameters object (may be NULL). Fills c->rope;
 * where (message) names the key it came from. */
static void rope_defaults(lk_rope *r) {
    memset(r, 0, sizeof *r);
    r->type = LK_ROPE_DEFAULT;
    r->theta = 10000.0;
    r->factor = 1.0;
    r->beta_fast = 32;
    r->beta_slow = 1;
    r->attention_factor = 1.0;
    r->partial_rotary_factor = 1.0;
    r->truncate = 1;
}

void lk_config_llama(lk_config *c, int vocab, int hidden, int intermediate, int n_layers, int n_heads,
                     int n_kv_heads, int head_dim) {
    memset(c, 0, sizeof *c);
    snprintf(c->arch, sizeof c->arch, "LlamaForCausalLM");
    snprintf(c->model_type, sizeof c->model_type, "llama");
    c->vocab_size = vocab;
    c->hidden_size = hidden;
    c->intermediate_size = intermediate;
    c->n_layers = n_layers;
    c->n_heads = n_heads;
    c->n_kv_heads = n_kv_heads;
    c->head_dim = head_dim;
    c->max_position_embeddings = 2048;
    c->rms_eps = 1e-5;
    c->bos_token_id = c->eos_token_id = -1;
    rope_defaults(&c->rope);
}

static void parse_rope(ctx *x, lk_config *c, const json_t *root, const json_t *rp, const char *where) {
    lk_rope *r = &c->rope;
    rope_defaults(r);
    r->theta = get_num(x, root, "rope_theta", 10000.0);
    r->partial_rotary_factor = get_num(x, root, "partial_rotary_factor", 1.0);
    if (!rp) return;
    r->theta = get_num(x, rp, "rope_theta", r->theta);
    r->partial_rotary_factor = get_num(x, rp, "partial_rotary_factor", r->partial_rotary_factor);
    /* HF: rope_scaling.get("rope_type", rope_scaling.get("type")) */
    json_t *t = json_object_get(rp, "rope_type");
    if (!t || json_is_null(t)) t = json_object_get(rp, "type");
    const char *type = json_is_string(t) ? json_string_value(t) : "default";
    if (t && !json_is_null(t) && !json_is_string(t)) {
        bad(x, "rope_type", "a string", t);
        return;
    }
    if (strcmp(type, "default") == 0) return;
    int is_linear = strcmp(type, "linear") == 0, is_llama3 = strcmp(type, "llama3") == 0,
        is_yarn = strcmp(type, "yarn") == 0;
    if (!is_linear && !is_llama3 && !is_yarn) {
        if (!x->rc)
            x->rc = lk_seterr(x->err, LK_EINPUT, "%s: %s: rope type \"%s\" is not supported "
                              "(supported: " ROPE_LIST ")", x->name, where, type);
        return;
    }
    json_t *f = json_object_get(rp, "factor");
    if (!json_is_number(f) || json_number_value(f) < 1.0) {
        if (!x->rc)
            x->rc = lk_seterr(x->err, LK_EINPUT, "%s: %s: rope type \"%s\" needs \"factor\" >= 1 "
                              "(a number)", x->name, where, type);
        return;
    }
    r->factor = json_number_value(f);
    if (is_linear) {
        r->type = LK_ROPE_LINEAR;
    } else if (is_llama3) {
        r->type = LK_ROPE_LLAMA3;
        const char *need[] = {"low_freq_factor", "high_freq_factor", "original_max_position_embeddings"};
        for (int i = 0; i < 3; i++)
            if (!json_is_number(json_object_get(rp, need[i]))) {
                if (!x->rc)
                    x->rc = lk_seterr(x->err, LK_EINPUT, "%s: %s: rope type \"llama3\" needs \"%s\" "
                                      "(a number)", x->name, where, need[i]);
                return;
            }
        r->low_freq_factor = get_num(x, rp, "low_freq_factor", 1);
        r->high_freq_factor = get_num(x, rp, "high_freq_factor", 4);
        r->original_max_position_embeddings = get_int(x, rp, "original_max_position_embeddings", 0, 1, 1);
        if (!x->rc && !(r->high_freq_factor > r->low_freq_factor && r->low_freq_factor > 0))
            x->rc = lk_seterr(x->err, LK_EINPUT, "%s: %s: low_freq_factor %g, high_freq_factor %g "
                              "(expected 0 < low < high)", x->name, where, r->low_freq_factor,
                              r->high_freq_factor);
    } else {
        r->type = LK_ROPE_YARN;
        /* HF: original_max_position_embeddings or max_position_embeddings;
         * beta_fast/beta_slow "or 32" / "or 1" (0 and null mean the default) */
        r->original_max_position_embeddings =
            get_int(x, rp, "original_max_position_embeddings", 0, 0, 0);
        if (!r->original_max_position_embeddings)
            r->original_max_position_embeddings = c->max_position_embeddings;
        double bf = get_num(x, rp, "beta_fast", 0), bs = get_num(x, rp, "beta_slow", 0);
        r->beta_fast = bf ? bf : 32;
        r->beta_slow = bs ? bs : 1;
        r->truncate = get_bool(x, rp, "truncate", 1);
        double af = get_num(x, rp, "attention_factor", NAN);
        double ms = get_num(x, rp, "mscale", 0), msa = get_num(x, rp, "mscale_all_dim", 0);
        /* get_mscale(scale, m) = 1 if scale <= 1 else 0.1*m*ln(scale) + 1 */
#define MSCALE(s, m) ((s) <= 1 ? 1.0 : 0.1 * (m) * log(s) + 1.0)
        if (!isnan(af)) r->attention_factor = af;
        else if (ms && msa) r->attention_factor = MSCALE(r->factor, ms) / MSCALE(r->factor, msa);
        else r->attention_factor = MSCALE(r->factor, 1.0);
#undef MSCALE
    }
}

/* ---- config ---- */

/* Every size within the LK_MAX_* bounds (config.h). */
static void check_bounds(ctx *x, const lk_config *c) {
    const struct { const char *key; int v, max; } b[] = {
        {"vocab_size", c->vocab_size, LK_MAX_VOCAB},
        {"hidden_size", c->hidden_size, LK_MAX_HIDDEN},
        {"intermediate_size", c->intermediate_size, LK_MAX_INTERMEDIATE},
        {"num_hidden_layers", c->n_layers, LK_MAX_LAYERS},
        {"num_attention_heads", c->n_heads, LK_MAX_HEADS},
        {"num_key_value_heads", c->n_kv_heads, LK_MAX_HEADS},
        {"head_dim", c->head_dim, LK_MAX_HEAD_DIM},
        {"max_position_embeddings", c->max_position_embeddings, LK_MAX_POSITIONS},
        {"sliding_window", c->sliding_window, LK_MAX_POSITIONS},
    };
    for (size_t i = 0; i < sizeof b / sizeof *b && !x->rc; i++)
        if (b[i].v > b[i].max || (b[i].v < 1 && strcmp(b[i].key, "sliding_window")))
            x->rc = lk_seterr(x->err, LK_EINPUT, "%s: \"%s\" is %d (expected 1 to %d)", x->name, b[i].key,
                              b[i].v, b[i].max);
}

int lk_config_parse(lk_config *c, const char *json, size_t len, const char *name, lk_err *err) {
    memset(c, 0, sizeof *c);
    json_error_t je;
    json_t *root = json_loadb(json, len, 0, &je);
    if (!root)
        return lk_seterr(err, LK_EINPUT, "%s: line %d column %d: %s (expected a JSON object)", name,
                         je.line, je.column, je.text);
    if (!json_is_object(root)) {
        json_decref(root);
        return lk_seterr(err, LK_EINPUT, "%s: not a JSON object (expected a config.json)", name);
    }
    ctx x = {name, err, 0};

    /* architecture: architectures[0] if given, else model_type */
    json_t *ja = json_object_get(root, "architectures"), *jm = json_object_get(root, "model_type");
    const char *arch = json_is_array(ja) && json_is_string(json_array_get(ja, 0))
                       ? json_string_value(json_array_get(ja, 0)) : NULL;
    const char *mtype = json_is_string(jm) ? json_string_value(jm) : NULL;
    int a = -1;
    for (int i = 0; i < N_ARCHS && a < 0; i++)
        if (arch ? strcmp(arch, archs[i].arch) == 0 : mtype && strcmp(mtype, archs[i].model_type) == 0)
            a = i;
    if (a < 0) {
        if (arch || mtype)
            lk_seterr(err, LK_EINPUT, "%s: unsupported architecture \"%s\" (supported: " ARCH_LIST ")",
                      name, arch ? arch : mtype);
        else
            lk_seterr(err, LK_EINPUT, "%s: no \"architectures\" or \"model_type\" (supported: "
                      ARCH_LIST ")", name);
        json_decref(root);
        return LK_EINPUT;
    }
    snprintf(c->arch, sizeof c->arch, "%s", archs[a].arch);
    snprintf(c->model_type, sizeof c->model_type, "%s", archs[a].model_type);

    c->vocab_size = get_int(&x, root, "vocab_size", 0, 1, 1);
    c->hidden_size = get_int(&x, root, "hidden_size", 0, 1, 1);
    c->intermediate_size = get_int(&x, root, "intermediate_size", 0, 1, 1);
    c->n_layers = get_int(&x, root, "num_hidden_layers", 0, 1, 1);
    c->n_heads = get_int(&x, root, "num_attention_heads", 0, 1, 1);
    c->n_kv_heads = get_int(&x, root, "num_key_value_heads", c->n_heads, 0, 1);
    c->head_dim = get_int(&x, root, "head_dim", 0, 0, 1);
    c->max_position_embeddings = get_int(&x, root, "max_position_embeddings", archs[a].max_pos, 0, 1);
    c->rms_eps = get_num(&x, root, "rms_norm_eps", 1e-6);
    c->tie_word_embeddings = get_bool(&x, root, "tie_word_embeddings", 0);
    c->attention_bias = archs[a].always_bias ||
                        (archs[a].has_bias_keys && get_bool(&x, root, "attention_bias", 0));
    c->mlp_bias = archs[a].has_bias_keys && get_bool(&x, root, "mlp_bias", 0);
    /* Qwen2 carries sliding_window but uses it only with use_sliding_window */
    if (a == 1 && !get_bool(&x, root, "use_sliding_window", 0)) c->sliding_window = 0;
    else c->sliding_window = get_int(&x, root, "sliding_window", 0, 0, 0);
    c->bos_token_id = get_int(&x, root, "bos_token_id", -1, 0, 0);
    c->eos_token_id = -1;
    json_t *je_ = json_object_get(root, "eos_token_id");
    if (json_is_array(je_)) {
        if (json_array_size(je_) > 8 && !x.rc)
            x.rc = lk_seterr(err, LK_EINPUT, "%s: \"eos_token_id\" lists %zu ids (expected at most 8)",
                             name, json_array_size(je_));
        for (size_t i = 0; i < json_array_size(je_) && i < 8 && !x.rc; i++) {
            json_t *e = json_array_get(je_, i);
            if (!json_is_integer(e) || json_integer_value(e) < 0)
                x.rc = lk_seterr(err, LK_EINPUT, "%s: \"eos_token_id\"[%zu] is not a token id "
                                 "(expected a non-negative integer)", name, i);
            else c->eos_ids[c->n_eos++] = (int)json_integer_value(e);
        }
    } else {
        int e = get_int(&x, root, "eos_token_id", -1, 0, 0);
        if (e >= 0) c->eos_ids[c->n_eos++] = e;
    }
    if (c->n_eos) c->eos_token_id = c->eos_ids[0];

    json_t *act = json_object_get(root, "hidden_act");
    if (!x.rc && act && !(json_is_string(act) && strcmp(json_string_value(act), "silu") == 0))
        x.rc = lk_seterr(err, LK_EINPUT, "%s: hidden_act %s%s%s is not supported (expected \"silu\")",
                         name, json_is_string(act) ? "\"" : "",
                         json_is_string(act) ? json_string_value(act) : "(not a string)",
                         json_is_string(act) ? "\"" : "");
    if (!x.rc && c->mlp_bias)
        x.rc = lk_seterr(err, LK_EINPUT, "%s: mlp_bias true is not supported (expected false)", name);
    if (!x.rc) {
        if (!c->head_dim) {
            if (c->hidden_size % c->n_heads)
                x.rc = lk_seterr(err, LK_EINPUT, "%s: hidden_size %d is not a multiple of "
                                 "num_attention_heads %d (and no head_dim given)", name,
                                 c->hidden_size, c->n_heads);
            c->head_dim = c->hidden_size / c->n_heads;
        }
        if (!x.rc) check_bounds(&x, c);
        if (!x.rc && c->n_heads % c->n_kv_heads)
            x.rc = lk_seterr(err, LK_EINPUT, "%s: num_attention_heads %d is not a multiple of "
                             "num_key_value_heads %d", name, c->n_heads, c->n_kv_heads);
        if (!x.rc && c->head_dim % 2)
            x.rc = lk_seterr(err, LK_EINPUT, "%s: head_dim %d is odd (expected even, for RoPE)", name,
                             c->head_dim);
        if (!x.rc && !(c->rms_eps > 0))
            x.rc = lk_seterr(err, LK_EINPUT, "%s: rms_norm_eps %g (expected > 0)", name, c->rms_eps);
    }

    /* rope: transformers v5 "rope_parameters" (theta inside), else the
     * classic "rope_theta" + "rope_scaling" */
    if (!x.rc) {
        json_t *rp = json_object_get(root, "rope_parameters");
        const char *where = "rope_parameters";
        if (!rp || json_is_null(rp)) {
            rp = json_object_get(root, "rope_scaling");
            where = "rope_scaling";
        }
        if (rp && json_is_null(rp)) rp = NULL;
        if (rp && !json_is_object(rp)) {
            bad(&x, where, "an object or null", rp);
        } else if (rp && strcmp(where, "rope_parameters") == 0 && !json_object_get(rp, "rope_type") &&
                   !json_object_get(rp, "rope_theta")) {
            x.rc = lk_seterr(err, LK_EINPUT, "%s: rope_parameters has neither \"rope_type\" nor "
                             "\"rope_theta\" (per-layer-type rope parameters are not supported)", name);
        } else {
            parse_rope(&x, c, root, rp, where);
        }
        if (!x.rc && !(c->rope.theta > 1))
            x.rc = lk_seterr(err, LK_EINPUT, "%s: rope_theta %g (expected > 1)", name, c->rope.theta);
        if (!x.rc && !(c->rope.partial_rotary_factor > 0 && c->rope.partial_rotary_factor <= 1))
            x.rc = lk_seterr(err, LK_EINPUT, "%s: partial_rotary_factor %g (expected in (0, 1])", name,
                             c->rope.partial_rotary_factor);
    }
    json_decref(root);
    if (x.rc) {
        lk_config z;
        memset(&z, 0, sizeof z);
        *c = z;
    }
    return x.rc;
}

int lk_config_load(lk_config *c, const char *path, lk_err *err) {
    struct stat st;
    char *p = stat(path, &st) == 0 && S_ISDIR(st.st_mode) ? lk_fmt(err, "%s/config.json", path)
                                                          : lk_dup(path, err);
    if (!p) return LK_ENOMEM;
    char *text;
    size_t len;
    int rc = lk_read_file(p, 64u << 20, "a model's config.json", &text, &len, err);
    if (!rc) {
        rc = lk_config_parse(c, text, len, p, err);
        free(text);
    }
    free(p);
    return rc;
}

/* ---- RoPE inverse frequencies (modeling_rope_utils), in double ---- */

void lk_rope_inv_freq(const lk_config *c, float *inv_freq, float *attn_scale) {
    const lk_rope *r = &c->rope;
    int half = c->head_dim / 2;
    /* dim = int(head_dim * partial_rotary_factor); the rest do not rotate */
    int dim = (int)(c->head_dim * r->partial_rotary_factor);
    int n = dim / 2;
    double base = r->theta;
    double scale = 1.0;
    for (int i = 0; i < half; i++) inv_freq[i] = 0.0f;

    /* yarn: correction range in dimension units from the numbers of
     * rotations beta_fast (low) and beta_slow (high) at the original length */
    double lo = 0, hi = 0;
    if (r->type == LK_ROPE_YARN) {
        double L = r->original_max_position_embeddings;
        lo = dim * log(L / (r->beta_fast * 2 * M_PI)) / (2 * log(base));
        hi = dim * log(L / (r->beta_slow * 2 * M_PI)) / (2 * log(base));
        if (r->truncate) {
            lo = floor(lo);
            hi = ceil(hi);
        }
        if (lo < 0) lo = 0;
        if (hi > dim - 1) hi = dim - 1;
        if (lo == hi) hi += 0.001; /* prevent singularity */
        scale = r->attention_factor;
    }
    for (int i = 0; i < n; i++) {
        double f = 1.0 / pow(base, (2.0 * i) / dim); /* 1 / theta^(2i/d) */
        switch (r->type) {
        case LK_ROPE_DEFAULT: break;
        case LK_ROPE_LINEAR: f /= r->factor; break;
        case LK_ROPE_LLAMA3: {
            /* wavelengths above old_len/low are divided by factor, below
             * old_len/high kept, in between smoothly interpolated */
            double old = r->original_max_position_embeddings;
            double lw = old / r->low_freq_factor, hw = old / r->high_freq_factor;
            double wl = 2 * M_PI / f;
            if (wl > lw) f /= r->factor;
            else if (!(wl < hw)) {
                double s = (old / wl - r->low_freq_factor) / (r->high_freq_factor - r->low_freq_factor);
                f = (1 - s) * f / r->factor + s * f;
            }
            break;
        }
        case LK_ROPE_YARN: {
            double ramp = (i - lo) / (hi - lo);
            ramp = ramp < 0 ? 0 : ramp > 1 ? 1 : ramp;
            double extra = 1 - ramp; /* inv_freq_extrapolation_factor */
            f = (f / r->factor) * (1 - extra) + f * extra;
            break;
        }
        }
        inv_freq[i] = (float)f;
    }
    if (attn_scale) *attn_scale = (float)scale;
}

uint64_t lk_config_fingerprint(const lk_config *c, const lk_st *st) {
    int sizes[8] = {c->vocab_size, c->hidden_size, c->intermediate_size, c->n_layers,
                    c->n_heads,    c->n_kv_heads,  c->head_dim,          c->attention_bias};
    uint64_t h = lk_fnv1a64(sizes, sizeof sizes, LK_FNV_OFFSET);
    int n = st ? lk_st_count(st) : 0;
    for (int i = 0; i < n; i++) {
        const lk_tensor *t = lk_st_at(st, i);
        h = lk_fnv1a64(t->name, strlen(t->name) + 1, h);
        int32_t dt = (int32_t)t->dtype, nd = t->ndim;
        h = lk_fnv1a64(&dt, sizeof dt, h);
        h = lk_fnv1a64(&nd, sizeof nd, h);
        h = lk_fnv1a64(t->shape, sizeof(int64_t) * (size_t)t->ndim, h);
    }
    return h;
}
