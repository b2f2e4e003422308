/* gpu_engine.c - the CUDA engine (kernels/engine_cuda.cu) through engine.h,
 * against the CPU engine (the f32 reference, model.c):
 * 1. stories260K (../shared, f32 on the GPU): the four greedy cases of
 *    expected.json give exactly output_ids, last logits within 1e-4;
 * 2. random models in memory (tmodel.h; head_dim 64 and 128, GQA 1:1, 4:1,
 *    7:1, q/k/v bias on and off, every rope_scaling type, tied and untied),
 *    uploaded as f32 and as bf16: logits of a prefill and of every decode
 *    step against the CPU engine (relative L2 < 1e-4 f32, < 2e-2 bf16, the
 *    CPU reference using the same bf16-rounded weights: bf16 activations
 *    alone, emulated on the CPU, move these models' logits by 0.6-1e-2);
 *    prefill-then-decode equals one prefill of the whole sequence; a batch
 *    of ragged sequences with mixed plans (dense, two random masks) decodes
 *    as each would alone; a random-mask plan matches the CPU engine with
 *    the same plan; an adopted dense prefill equals the pruned sequence's
 *    own; device greedy sampling equals the argmax of the logits;
 *    a 300-token prompt in product chunks of 64 rows (LEANK_CUDA_CHUNK) gives
 *    the CPU engine's logits, with the q width equal to the hidden size and not;
 *    A BF16 and an F16 checkpoint written to a temporary directory (Qwen2
 *    shape: bias, untied head) open on both engines and agree (2e-2, 3e-2);
 * 3. a random-weight model made on the device runs; the pool refuses what
 *    does not fit (LK_ENOMEM, naming bytes), max_batch sequences fit.
 * Seed printed; LEANK_SEED=n repeats a run. Exit 77 without a GPU. */
#include <cuda_runtime.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "engine.h"
#include "plan.h"
#include "sampler.h"
#include "t.h"
#include "tgpu.h" /* CK, the PRNG, rel_l2 */
#include "tmodel.h"

static lk_engine_opts gpu_opts(void) {
    lk_engine_opts o;
    memset(&o, 0, sizeof o);
    o.device = LK_DEVICE_CUDA;
    o.pool_bytes = 256u << 20;
    o.max_batch = 16;
    o.max_prefill = 512;
    return o;
}



static lk_err err;

/* ---- 1. stories260K ---- */
static void golden(const char *shared) {
    char dir[4200], path[4300];
    snprintf(dir, sizeof dir, "%s/models/stories260K", shared);
    snprintf(path, sizeof path, "%s/expected.json", dir);
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    if (!root) {
        printf("skip: stories260K golden test: %s: %s\n", path, je.text);
        return;
    }
    lk_engine_opts o = gpu_opts();
    lk_engine *e;
    if (lk_engine_open(&e, dir, &o, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        CHECK(0);
        json_decref(root);
        return;
    }
    CHECK(!strcmp(lk_engine_name(e), "cuda") && !strcmp(lk_engine_cache_dtype(e), "f32"));
    int V = lk_engine_config(e)->vocab_size;
    float *lg = malloc(V * sizeof(float));
    json_t *cases = json_object_get(root, "cases"), *cs;
    size_t ci;
    json_array_foreach(cases, ci, cs) {
        json_t *in = json_object_get(cs, "input_ids"), *outj = json_object_get(cs, "output_ids"),
               *ll = json_object_get(cs, "last_logits");
        int n_in = (int)json_array_size(in), n_out = (int)json_array_size(outj);
        int *ids = malloc(sizeof(int) * (n_in + 1));
        for (int i = 0; i < n_in; i++) ids[i] = (int)json_integer_value(json_array_get(in, i));
        lk_seq *s;
        lk_seq_opts so = {.plan = NULL, .max_len = n_in + n_out, .sampling = {.top_p = 1.0f}};
        OK(lk_seq_new(e, &s, &so, &err));
        OK(lk_engine_prefill(e, s, ids, n_in, &err));
        OK(lk_engine_logits(e, s, lg, &err));
        double maxd = 0;
        for (int i = 0; i < V && i < (int)json_array_size(ll); i++)
            maxd = fmax(maxd, fabs(lg[i] - json_number_value(json_array_get(ll, i))));
        CHECKF(maxd <= 1e-4, "case %zu: last logits max |diff| %.3g", ci, maxd);
        int same = 1;
        for (int t = 0; t < n_out; t++) {
            int next;
            OK(lk_engine_sample(e, &s, 1, &next, &err));
            int want = (int)json_integer_value(json_array_get(outj, t));
            if (next != want) {
                fprintf(stderr, "case %zu: token %d: got %d, expected %d\n", ci, t, next, want);
                same = 0;
                break;
            }
            if (t + 1 < n_out) OK(lk_engine_decode(e, &s, 1, &next, &err));
        }
        CHECKF(same, "case %zu: greedy output differs", ci);
        printf("stories260K case %zu: %d prompt tokens, logits max |diff| %.2g, %d tokens %s\n", ci, n_in, maxd,
               n_out, same ? "match" : "DIFFER");
        lk_seq_free(s);
        free(ids);
    }
    free(lg);
    lk_engine_free(e);
    json_decref(root);
}

/* ---- 2. random models ---- */
typedef struct {
    const char *what;
    int hd, nh, nkv, bias, tied;
    const char *rope;
} variant;

/* Weights rounded to bf16 in place: the CPU reference of a bf16 engine
 * computes with the weights the GPU holds. */
static void round_bf16(const float *p, size_t n) {
    float *x = tm_w(p);
    for (size_t i = 0; x && i < n; i++) x[i] = lk_bf16_to_f32(lk_f32_to_bf16(x[i]));
}
static void model_bf16(lk_model *m) {
    const lk_config *c = &m->cfg;
    size_t L = c->n_layers, D = m->dim, H = m->hidden, QD = m->q_dim, KD = m->kv_dim, V = c->vocab_size;
    lk_weights *w = &m->w;
    round_bf16(w->embed, V * D);
    for (size_t l = 0; l < L; l++) {
        const lk_layer_weights *y = &w->layer[l];
        round_bf16(y->attn_norm, D);
        round_bf16(y->wq, QD * D);
        round_bf16(y->wk, KD * D);
        round_bf16(y->wv, KD * D);
        round_bf16(y->bq, QD);
        round_bf16(y->bk, KD);
        round_bf16(y->bv, KD);
        round_bf16(y->wo, D * QD);
        round_bf16(y->ffn_norm, D);
        round_bf16(y->w_gate, H * D);
        round_bf16(y->w_up, H * D);
        round_bf16(y->w_down, D * H);
    }
    round_bf16(w->final_norm, D);
    if (w->lm_head != w->embed) round_bf16(w->lm_head, V * D);
}

/* q_proj and k_proj of every layer times 0.5 */
static void halve_qk(lk_model *m) {
    for (int l = 0; l < m->cfg.n_layers; l++) {
        float *q = tm_w(m->w.layer[l].wq), *k = tm_w(m->w.layer[l].wk);
        for (size_t i = 0; i < (size_t)m->q_dim * m->dim; i++) q[i] *= 0.5f;
        for (size_t i = 0; i < (size_t)m->kv_dim * m->dim; i++) k[i] *= 0.5f;
    }
}

static const variant variants[] = {
    {"hd 64, GQA 1:1", 64, 4, 4, 0, 1, "null"},
    {"hd 128, GQA 4:1, bias, linear", 128, 8, 2, 1, 0, "{\"type\": \"linear\", \"factor\": 4.0}"},
    {"hd 64, GQA 7:1, bias, llama3", 64, 7, 1, 1, 0,
     "{\"rope_type\": \"llama3\", \"factor\": 8.0, \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0, "
     "\"original_max_position_embeddings\": 64}"},
    {"hd 128, GQA 1:1, yarn", 128, 2, 2, 0, 1,
     "{\"rope_type\": \"yarn\", \"factor\": 4.0, \"original_max_position_embeddings\": 64}"},
    {"hd 128, GQA 4:1", 128, 8, 2, 0, 1, "null"},
    {"hd 128, GQA 1:1, 8 heads", 128, 8, 8, 0, 1, "null"},
    {"hd 128, GQA 4:1, 4 heads", 128, 4, 1, 0, 1, "null"},
    {"hd 64, GQA 4:1, 16 heads", 64, 16, 4, 0, 1, "null"},
    {"hd 64, GQA 4:1, bias, linear", 64, 8, 2, 1, 0, "{\"type\": \"linear\", \"factor\": 4.0}"},
};

enum { N0 = 37, K = 24, NSEQ = 3 };

typedef struct {
    lk_engine *e;
    lk_seq *s[NSEQ];
} side;

static int V;
static float *la, *lb;

/* rel L2 of b's logits against a's */
static double diff(lk_engine *ea, lk_seq *sa, lk_engine *eb, lk_seq *sb) {
    lk_engine_logits(ea, sa, la, &err);
    lk_engine_logits(eb, sb, lb, &err);
    return rel_l2(lb, la, V);
}

static void random_model(const variant *v, const char *dtype) {
    int gpu_f32 = !strcmp(dtype, "f32");
    double tol = gpu_f32 ? 1e-4 : 2e-2, tol_self = gpu_f32 ? 1e-4 : 2e-2;
    char js[2048];
    snprintf(js, sizeof js,
             "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", \"vocab_size\": 301, "
             "\"hidden_size\": 128, \"intermediate_size\": 200, \"num_hidden_layers\": 2, "
             "\"num_attention_heads\": %d, \"num_key_value_heads\": %d, \"head_dim\": %d, "
             "\"max_position_embeddings\": 512, \"rms_norm_eps\": 1e-5, \"rope_theta\": 10000.0, "
             "\"rope_scaling\": %s, \"attention_bias\": %s, \"tie_word_embeddings\": %s}",
             v->nh, v->nkv, v->hd, v->rope, v->bias ? "true" : "false", v->tied ? "true" : "false");
    lk_config c;
    if (lk_config_parse(&c, js, strlen(js), v->what, &err)) {
        fprintf(stderr, "%s: %s\n", v->what, err.msg);
        CHECK(0);
        return;
    }
    V = c.vocab_size;
    lk_model m;
    tm_random_model(&m, &c);
    /* attention logits of std ~1 (tmodel's scales give ~4: a softmax so
     * sharp that bf16 rounding alone, emulated on the CPU, moves the logits
     * by 1-3e-2; at half the q/k scale by 0.6-1e-2) */
    halve_qk(&m);
    if (!gpu_f32) model_bf16(&m);
    /* masks: widths in steps of 8 (incl. 0 and head_dim), random channels */
    lk_mask m1, m2;
    tm_random_mask(&m1, &c, 8);
    tm_random_mask(&m2, &c, 16);
    lk_plan p1, p2;
    OK(lk_plan_build(&p1, &m1, "mask1", &c, v->what, 4, 8, 0, dtype, &err));
    OK(lk_plan_build(&p2, &m2, "mask2", &c, v->what, 0, 5, 0, dtype, &err));
    const lk_plan *plans[NSEQ] = {NULL, &p1, &p2};
    int lens[NSEQ] = {N0, N0 - 11, N0 + 6};
    int *prompt[NSEQ], *steps[NSEQ];
    for (int i = 0; i < NSEQ; i++) {
        prompt[i] = malloc(sizeof(int) * (lens[i] + K));
        steps[i] = prompt[i] + lens[i];
        for (int j = 0; j < lens[i] + K; j++) prompt[i][j] = tm_irand(V);
    }
    lk_engine_opts co = {.device = LK_DEVICE_CPU}, go = gpu_opts();
    side cpu, gpu, solo;
    OK(lk_engine_from_model(&cpu.e, &m, "f32", &co, &err));
    OK(lk_engine_from_model(&gpu.e, &m, dtype, &go, &err));
    if (!cpu.e || !gpu.e) {
        lk_engine_free(cpu.e);
        lk_engine_free(gpu.e);
        lk_model_free(&m);
        return;
    }
    solo.e = gpu.e;
    double e_pre = 0, e_dec = 0, e_batch = 0, e_whole = 0, e_adopt = 0, e_seq[NSEQ][2] = {{0}};
    int greedy_ok = 1;
    for (int i = 0; i < NSEQ; i++) {
        lk_seq_opts so = {.plan = plans[i], .max_len = lens[i] + K, .sampling = {.top_p = 1.0f}};
        OK(lk_seq_new(cpu.e, &cpu.s[i], &so, &err));
        OK(lk_seq_new(gpu.e, &gpu.s[i], &so, &err));
        OK(lk_seq_new(gpu.e, &solo.s[i], &so, &err));
        OK(lk_engine_prefill(cpu.e, cpu.s[i], prompt[i], lens[i], &err));
        OK(lk_engine_prefill(gpu.e, gpu.s[i], prompt[i], lens[i], &err));
        OK(lk_engine_prefill(gpu.e, solo.s[i], prompt[i], lens[i], &err));
        e_seq[i][0] = diff(cpu.e, cpu.s[i], gpu.e, gpu.s[i]);
        e_pre = fmax(e_pre, e_seq[i][0]);
    }
    /* decode: the batch (mixed plans, ragged) on the GPU, one by one on the
     * CPU and on the GPU alone */
    for (int t = 0; t < K; t++) {
        int ids[NSEQ], got[NSEQ];
        for (int i = 0; i < NSEQ; i++) ids[i] = steps[i][t];
        OK(lk_engine_sample(gpu.e, gpu.s, NSEQ, got, &err));
        for (int i = 0; i < NSEQ; i++) {
            lk_engine_logits(gpu.e, gpu.s[i], lb, &err);
            greedy_ok &= got[i] == lk_argmax(lb, V);
        }
        OK(lk_engine_decode(gpu.e, gpu.s, NSEQ, ids, &err));
        for (int i = 0; i < NSEQ; i++) {
            OK(lk_engine_decode(cpu.e, &cpu.s[i], 1, &ids[i], &err));
            OK(lk_engine_decode(solo.e, &solo.s[i], 1, &ids[i], &err));
            double d = diff(cpu.e, cpu.s[i], gpu.e, gpu.s[i]);
            e_seq[i][1] = fmax(e_seq[i][1], d);
            e_dec = fmax(e_dec, d);
            e_batch = fmax(e_batch, diff(solo.e, solo.s[i], gpu.e, gpu.s[i]));
        }
    }
    /* the dense sequence: one prefill of everything equals prefill + decode */
    lk_seq *whole;
    lk_seq_opts so = {.plan = NULL, .max_len = lens[0] + K, .sampling = {.top_p = 1.0f}};
    OK(lk_seq_new(gpu.e, &whole, &so, &err));
    OK(lk_engine_prefill(gpu.e, whole, prompt[0], lens[0] + K, &err));
    e_whole = diff(gpu.e, gpu.s[0], gpu.e, whole);
    lk_seq_free(whole);
    /* adopt: a dense prefill of prompt 1 into a p1 sequence, then the same
     * decode steps: equal to gpu.s[1] (its own prefill) */
    lk_seq *src, *dst;
    so.max_len = lens[1] + K;
    OK(lk_seq_new(gpu.e, &src, &so, &err));
    so.plan = &p1;
    OK(lk_seq_new(gpu.e, &dst, &so, &err));
    OK(lk_engine_prefill(gpu.e, src, prompt[1], lens[1], &err));
    OK(lk_seq_adopt(gpu.e, dst, src, &err));
    lk_seq_free(src);
    for (int t = 0; t < K; t++) OK(lk_engine_decode(gpu.e, &dst, 1, &steps[1][t], &err));
    e_adopt = diff(solo.e, solo.s[1], gpu.e, dst);
    lk_seq_free(dst);
    /* kv_only (the trainer's context): the prefill skips the last layer's
     * attention and MLP; no logits until a decode, then the same as solo.s[1] */
    so.kv_only = 1;
    OK(lk_seq_new(gpu.e, &dst, &so, &err));
    OK(lk_engine_prefill(gpu.e, dst, prompt[1], lens[1], &err));
    int got0 = -1;
    CHECKF(lk_engine_sample(gpu.e, &dst, 1, &got0, &err) == LK_EUSAGE && strstr(err.msg, "kv_only"),
           "%s %s: sample after a kv_only prefill: %s", v->what, dtype, err.msg);
    for (int t = 0; t < K; t++) OK(lk_engine_decode(gpu.e, &dst, 1, &steps[1][t], &err));
    double e_kvonly = diff(solo.e, solo.s[1], gpu.e, dst);
    CHECKF(e_kvonly < 1e-6, "%s %s: kv_only prefill + decode vs a full prefill + decode: %.3g", v->what, dtype,
           e_kvonly);
    lk_seq_free(dst);
    CHECKF(e_pre < tol && e_dec < tol,
           "%s %s: vs CPU: prefill %.3g, decode %.3g (tol %.0e); by sequence (dense, mask1, mask2): prefill %.3g %.3g "
           "%.3g, decode %.3g %.3g %.3g",
           v->what, dtype, e_pre, e_dec, tol, e_seq[0][0], e_seq[1][0], e_seq[2][0], e_seq[0][1], e_seq[1][1],
           e_seq[2][1]);
    CHECKF(e_batch < tol_self && e_whole < tol_self && e_adopt < 1e-6,
           "%s %s: batch vs alone %.3g, whole prefill %.3g, adopt %.3g", v->what, dtype, e_batch, e_whole, e_adopt);
    CHECKF(greedy_ok, "%s %s: device greedy sample != argmax of the logits", v->what, dtype);
    printf("%-32s %-4s rel L2 vs CPU: prefill %.2g, decode (dense+2 masks) %.2g | batch vs alone %.2g, whole "
           "prefill %.2g, adopt %.2g, greedy %s\n",
           v->what, dtype, e_pre, e_dec, e_batch, e_whole, e_adopt, greedy_ok ? "ok" : "WRONG");
    for (int i = 0; i < NSEQ; i++) {
        lk_seq_free(cpu.s[i]);
        lk_seq_free(gpu.s[i]);
        lk_seq_free(solo.s[i]);
        free(prompt[i]);
    }
    lk_engine_free(cpu.e);
    lk_engine_free(gpu.e);
    lk_plan_free(&p1);
    lk_plan_free(&p2);
    lk_mask_free(&m1);
    lk_mask_free(&m2);
    lk_model_free(&m);
}

/* ---- 2b. a checkpoint on disk (BF16 / F16 safetensors + config.json) ---- */
static void add16(lk_stw *w, lk_dtype dt, const char *name, const float *x, int64_t d0, int64_t d1) {
    size_t n = (size_t)d0 * (d1 ? d1 : 1);
    uint16_t *h = malloc(n * 2);
    for (size_t i = 0; i < n; i++) h[i] = dt == LK_DT_BF16 ? lk_f32_to_bf16(x[i]) : lk_f32_to_f16(x[i]);
    int64_t shape[2] = {d0, d1};
    lk_stw_add(w, name, dt, d1 ? 2 : 1, shape, h);
    free(h);
}

static void checkpoint(lk_dtype dt) {
    const char *dtn = dt == LK_DT_BF16 ? "BF16" : "F16";
    char dir[] = "/tmp/leank-gpu-engine-XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        CHECK(0);
        return;
    }
    char js[1024], path[256];
    snprintf(js, sizeof js,
             "{\"architectures\": [\"Qwen2ForCausalLM\"], \"model_type\": \"qwen2\", \"vocab_size\": 301, "
             "\"hidden_size\": 128, \"intermediate_size\": 200, \"num_hidden_layers\": 2, "
             "\"num_attention_heads\": 8, \"num_key_value_heads\": 2, \"head_dim\": 64, "
             "\"max_position_embeddings\": 512, \"rms_norm_eps\": 1e-6, \"rope_theta\": 1000000.0, "
             "\"tie_word_embeddings\": false}");
    lk_config c;
    if (lk_config_parse(&c, js, strlen(js), "checkpoint config", &err)) {
        fprintf(stderr, "%s\n", err.msg);
        CHECK(0);
        return;
    }
    lk_model m;
    tm_random_model(&m, &c);
    size_t L = c.n_layers, D = m.dim, H = m.hidden, QD = m.q_dim, KD = m.kv_dim;
    halve_qk(&m);
    lk_stw *w = lk_stw_new();
    add16(w, dt, "model.embed_tokens.weight", m.w.embed, c.vocab_size, D);
    add16(w, dt, "model.norm.weight", m.w.final_norm, D, 0);
    add16(w, dt, "lm_head.weight", m.w.lm_head, c.vocab_size, D);
    for (size_t l = 0; l < L; l++) {
        char name[128];
#define P(suffix) (snprintf(name, sizeof name, "model.layers.%zu.%s", l, suffix), name)
        const lk_layer_weights *y = &m.w.layer[l];
        add16(w, dt, P("input_layernorm.weight"), y->attn_norm, D, 0);
        add16(w, dt, P("self_attn.q_proj.weight"), y->wq, QD, D);
        add16(w, dt, P("self_attn.k_proj.weight"), y->wk, KD, D);
        add16(w, dt, P("self_attn.v_proj.weight"), y->wv, KD, D);
        add16(w, dt, P("self_attn.q_proj.bias"), y->bq, QD, 0);
        add16(w, dt, P("self_attn.k_proj.bias"), y->bk, KD, 0);
        add16(w, dt, P("self_attn.v_proj.bias"), y->bv, KD, 0);
        add16(w, dt, P("self_attn.o_proj.weight"), y->wo, D, QD);
        add16(w, dt, P("post_attention_layernorm.weight"), y->ffn_norm, D, 0);
        add16(w, dt, P("mlp.gate_proj.weight"), y->w_gate, H, D);
        add16(w, dt, P("mlp.up_proj.weight"), y->w_up, H, D);
        add16(w, dt, P("mlp.down_proj.weight"), y->w_down, D, H);
#undef P
    }
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    OK(lk_stw_write(w, path, &err));
    lk_stw_free(w);
    lk_model_free(&m);
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    CHECK(f && fputs(js, f) >= 0 && fclose(f) == 0);
    lk_engine_opts co = {.device = LK_DEVICE_CPU}, go = gpu_opts();
    lk_engine *ce = NULL, *ge = NULL;
    OK(lk_engine_open(&ce, dir, &co, &err));
    OK(lk_engine_open(&ge, dir, &go, &err));
    if (ce && ge) {
        CHECK(!strcmp(lk_engine_cache_dtype(ge), "bf16"));
        V = c.vocab_size;
        int ids[37 + 8];
        for (int i = 0; i < 45; i++) ids[i] = tm_irand(V);
        lk_seq *cs, *gs;
        lk_seq_opts so = {.max_len = 45, .sampling = {.top_p = 1.0f}};
        OK(lk_seq_new(ce, &cs, &so, &err));
        OK(lk_seq_new(ge, &gs, &so, &err));
        OK(lk_engine_prefill(ce, cs, ids, 37, &err));
        OK(lk_engine_prefill(ge, gs, ids, 37, &err));
        double e = diff(ce, cs, ge, gs);
        for (int t = 37; t < 45; t++) {
            OK(lk_engine_decode(ce, &cs, 1, &ids[t], &err));
            OK(lk_engine_decode(ge, &gs, 1, &ids[t], &err));
            e = fmax(e, diff(ce, cs, ge, gs));
        }
        /* F16 weights reach the GPU as bf16 (one more rounding than the CPU's) */
        double tol = dt == LK_DT_BF16 ? 2e-2 : 3e-2;
        CHECKF(e < tol, "%s checkpoint: GPU vs CPU rel L2 %.3g", dtn, e);
        CHECK(lk_engine_fingerprint(ce) == lk_engine_fingerprint(ge));
        printf("%s checkpoint on disk (Qwen2 shape, bias, untied): GPU vs CPU rel L2 %.2g over a prefill and 8 steps\n",
               dtn, e);
        lk_seq_free(cs);
        lk_seq_free(gs);
    }
    lk_engine_free(ce);
    lk_engine_free(ge);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/config.json", dir);
    unlink(path);
    rmdir(dir);
}

/* ---- 2c. prompts longer than the engine's product chunk ----
 * LEANK_CUDA_CHUNK=64 (read when an engine is made) cuts a 300-token prompt
 * into 5 chunks of products. With the q width equal to the hidden size (as
 * in Llama, Qwen, Mistral) chunk c's down projection waits in att for the
 * next layer's attention norm; otherwise it is added at once. Either way the
 * logits of the prefill and of the decode steps after it must be the CPU
 * engine's (f32: 1e-4), and the unchunked GPU engine's. */
static void chunked(void) {
    static const struct {
        int hidden, nh, nkv, hd;
        const char *what;
    } shapes[] = {{256, 4, 2, 64, "q width == hidden (residual parked in att)"},
                  {128, 4, 2, 64, "q width 256 != hidden 128 (residual added at once)"}};
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        lk_config c;
        lk_config_llama(&c, 301, shapes[k].hidden, 200, 3, shapes[k].nh, shapes[k].nkv, shapes[k].hd);
        V = c.vocab_size;
        lk_model m;
        tm_random_model(&m, &c);
        halve_qk(&m);
        lk_engine_opts co = {.device = LK_DEVICE_CPU}, go = gpu_opts();
        lk_engine *ce = NULL, *ge = NULL, *gc = NULL;
        OK(lk_engine_from_model(&ce, &m, "f32", &co, &err));
        OK(lk_engine_from_model(&ge, &m, "f32", &go, &err));
        setenv("LEANK_CUDA_CHUNK", "64", 1);
        OK(lk_engine_from_model(&gc, &m, "f32", &go, &err));
        unsetenv("LEANK_CUDA_CHUNK");
        enum { N = 300, STEPS = 6 };
        int ids[N + STEPS];
        for (int i = 0; i < N + STEPS; i++) ids[i] = tm_irand(V);
        if (ce && ge && gc) {
            lk_seq *cs, *gs, *ks;
            lk_seq_opts so = {.max_len = N + STEPS, .sampling = {.top_p = 1.0f}};
            OK(lk_seq_new(ce, &cs, &so, &err));
            OK(lk_seq_new(ge, &gs, &so, &err));
            OK(lk_seq_new(gc, &ks, &so, &err));
            OK(lk_engine_prefill(ce, cs, ids, N, &err));
            OK(lk_engine_prefill(ge, gs, ids, N, &err));
            OK(lk_engine_prefill(gc, ks, ids, N, &err));
            double e_cpu = diff(ce, cs, gc, ks), e_one = diff(ge, gs, gc, ks);
            for (int t = N; t < N + STEPS; t++) {
                OK(lk_engine_decode(ce, &cs, 1, &ids[t], &err));
                OK(lk_engine_decode(ge, &gs, 1, &ids[t], &err));
                OK(lk_engine_decode(gc, &ks, 1, &ids[t], &err));
                e_cpu = fmax(e_cpu, diff(ce, cs, gc, ks));
                e_one = fmax(e_one, diff(ge, gs, gc, ks));
            }
            CHECKF(e_cpu < 1e-4 && e_one < 1e-4, "chunked prefill, %s: vs CPU %.3g, vs one chunk %.3g",
                   shapes[k].what, e_cpu, e_one);
            printf("chunked prefill (%d tokens, chunks of 64), %s: rel L2 vs CPU %.2g, vs one chunk %.2g\n", N,
                   shapes[k].what, e_cpu, e_one);
            lk_seq_free(cs);
            lk_seq_free(gs);
            lk_seq_free(ks);
        }
        lk_engine_free(ce);
        lk_engine_free(ge);
        lk_engine_free(gc);
        lk_model_free(&m);
    }
}

/* ---- 3. random weights on the device, pool limits ---- */
static void device_random(void) {
    lk_config c;
    lk_config_llama(&c, 1000, 256, 512, 3, 8, 2, 32);
    lk_engine_opts o = gpu_opts();
    o.pool_bytes = 2u << 20;
    lk_engine *e;
    OK(lk_engine_random(&e, &c, "bf16", 5, &o, &err));
    if (!e) return;
    lk_engine_mem mem;
    lk_engine_memory(e, &mem);
    size_t per = lk_engine_seq_bytes(e, NULL, 300);
    int nb = lk_engine_max_batch(e, NULL, 300);
    printf("random bf16 model: weights %zu bytes, pool %zu, a 300-position dense sequence %zu bytes, %d fit\n",
           mem.weights, mem.pool, per, nb);
    CHECK(mem.weights > 2 * (size_t)1000 * 256 && mem.pool <= (2u << 20) && nb >= 1);
    lk_seq *s[64];
    int n = 0;
    lk_seq_opts so = {.max_len = 300, .sampling = {.temperature = 0.8f, .top_k = 40, .top_p = 0.9f, .seed = 1}};
    while (n < 64 && lk_seq_new(e, &s[n], &so, &err) == 0) n++;
    CHECKF(n == nb, "%d sequences fit, max_batch said %d", n, nb);
    CHECKF(err.code == LK_ENOMEM && strstr(err.msg, "bytes"), "refusal: %d %s", err.code, err.msg);
    printf("refusal past the pool: %s\n", err.msg);
    int ids[64], next[64];
    for (int i = 0; i < n; i++) {
        int prompt[50];
        for (int j = 0; j < 50; j++) prompt[j] = (i * 31 + j * 7) % 1000;
        OK(lk_engine_prefill(e, s[i], prompt, 50, &err));
    }
    for (int t = 0; t < 5; t++) {
        OK(lk_engine_sample(e, s, n, ids, &err));
        for (int i = 0; i < n; i++) CHECK(ids[i] >= 0 && ids[i] < 1000);
        OK(lk_engine_decode(e, s, n, ids, &err));
    }
    float *lg = malloc(1000 * sizeof(float));
    OK(lk_engine_logits(e, s[0], lg, &err));
    int finite = 1;
    for (int i = 0; i < 1000; i++) finite &= isfinite(lg[i]);
    CHECK(finite);
    (void)next;
    free(lg);
    for (int i = 0; i < n; i++) lk_seq_free(s[i]);
    lk_engine_memory(e, &mem);
    CHECK(mem.pool_free == mem.pool);
    lk_engine_free(e);
}

/* ---- LEANK_BENCH=1: Llama-3.1-8B shape, random bf16 weights (timings, not checks) ---- */
static double now_sync(void) {
    cudaDeviceSynchronize();
    return lk_now();
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void bench_case(lk_engine *e, int B, int n, int steps) {
    const lk_config *c = lk_engine_config(e);
    lk_seq **s = calloc(B, sizeof *s);
    int *prompt = malloc(sizeof(int) * n), *ids = malloc(sizeof(int) * B);
    lk_seq_opts so = {.max_len = n + steps + 1, .sampling = {.top_p = 1.0f}};
    for (int b = 0; b < B; b++) OK(lk_seq_new(e, &s[b], &so, &err));
    double t0 = now_sync();
    for (int b = 0; b < B; b++) {
        for (int j = 0; j < n; j++) prompt[j] = (int)((j * 7919u + b * 104729u) % (unsigned)c->vocab_size);
        OK(lk_engine_prefill(e, s[b], prompt, n, &err));
    }
    double tp = now_sync() - t0;
    double *dt = malloc(sizeof(double) * steps), *ds = malloc(sizeof(double) * steps);
    for (int t = 0; t < steps; t++) {
        double a = now_sync();
        OK(lk_engine_sample(e, s, B, ids, &err));
        double b = now_sync();
        OK(lk_engine_decode(e, s, B, ids, &err));
        double d = now_sync();
        ds[t] = b - a;
        dt[t] = d - b;
    }
    qsort(dt, steps, sizeof(double), cmp_d);
    qsort(ds, steps, sizeof(double), cmp_d);
    lk_engine_mem m;
    lk_engine_memory(e, &m);
    double kv = 2.0 * c->n_layers * c->n_kv_heads * c->head_dim * 2 * (double)B * (n + steps / 2);
    double floor_ms = ((double)m.weights + kv) / 4.26e12 * 1e3;
    printf("bench B %d x %d: prefill %.3f s (%.0f tok/s); decode step median %.3f ms (min %.3f), floor %.3f ms "
           "(x%.2f); sample %.3f ms; weights %.2f GB, engine peak %.2f GB\n",
           B, n, tp, B * (double)n / tp, dt[steps / 2] * 1e3, dt[0] * 1e3, floor_ms, dt[steps / 2] * 1e3 / floor_ms,
           ds[steps / 2] * 1e3, m.weights / 1e9, m.peak / 1e9);
    for (int b = 0; b < B; b++) lk_seq_free(s[b]);
    free(s), free(prompt), free(ids), free(dt), free(ds);
}

static void bench(void) {
    lk_config c;
    lk_config_llama(&c, 128256, 4096, 14336, 32, 32, 8, 128);
    c.max_position_embeddings = 131072;
    c.rope.theta = 500000.0;
    lk_engine_opts o;
    memset(&o, 0, sizeof o);
    o.device = LK_DEVICE_CUDA;
    o.max_batch = 64;
    o.max_prefill = 32768;
    static const int cases[][2] = {{1, 32768}, {52, 4096}};
    for (int i = 0; i < 2; i++) { /* an engine each: LEANK_CUDA_PROFILE prints per case */
        lk_engine *e;
        double t0 = lk_now();
        OK(lk_engine_random(&e, &c, "bf16", 1, &o, &err));
        if (!e) return;
        printf("bench: random Llama-3.1-8B-shaped bf16 model made in %.2f s on %s\n", lk_now() - t0,
               lk_engine_device_name(e));
        bench_case(e, cases[i][0], cases[i][1], 16);
        fflush(stdout);
        lk_engine_free(e);
    }
}

/* ---- 4. two GPUs in one process: the kernels' shared-memory opt-in is per
 * device, so an engine on GPU 1 after one on GPU 0 must prefill (wgmma and
 * TMA forms: bf16, hd 128, 300 rows) and decode the same as GPU 0 ---- */
static void two_gpus(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n < 2) {
        T_SKIP_PART("two GPUs in one process: %d visible", n);
        return;
    }
    lk_config c;
    lk_config_llama(&c, 1000, 512, 768, 2, 8, 2, 128);
    lk_engine *e[2] = {NULL, NULL};
    lk_seq *s[2] = {NULL, NULL};
    float *lg[2];
    int prompt[300], next = 17;
    for (int j = 0; j < 300; j++) prompt[j] = (j * 37 + 11) % 1000;
    for (int d = 0; d < 2; d++) {
        lk_engine_opts o = gpu_opts();
        o.gpu = d;
        o.pool_bytes = 64u << 20;
        o.max_prefill = 512;
        lg[d] = calloc(1000, sizeof(float));
        OK(lk_engine_random(&e[d], &c, "bf16", 9, &o, &err));
        if (!e[d]) return;
        lk_seq_opts so = {.max_len = 310, .sampling = {.top_p = 1.0f}};
        OK(lk_seq_new(e[d], &s[d], &so, &err));
        OK(lk_engine_prefill(e[d], s[d], prompt, 300, &err));
        OK(lk_engine_decode(e[d], &s[d], 1, &next, &err));
        OK(lk_engine_logits(e[d], s[d], lg[d], &err));
    }
    double d01 = rel_l2(lg[1], lg[0], 1000);
    /* not bitwise: the decode products' algorithms are timed per engine (1.2e-3 seen
     * on a busy GPU 0); a launch refused on GPU 1 fails an OK() above */
    CHECKF(d01 < 1e-2, "GPU 1 vs GPU 0, the same model and prompt: rel L2 %.3g", d01);
    printf("two GPUs in one process: GPU 1 vs GPU 0 logits rel L2 %.2g\n", d01);
    for (int d = 0; d < 2; d++) {
        lk_seq_free(s[d]);
        lk_engine_free(e[d]);
        free(lg[d]);
    }
}

int main(void) {
    if (!lk_cuda_available()) T_SKIP("no GPU visible (or a build without CUDA)");
    const char *sd = getenv("LEANK_SEED");
    uint64_t seed = sd ? strtoull(sd, NULL, 10) : (uint64_t)time(NULL);
    printf("seed %llu (LEANK_SEED=%llu repeats this run)\n", (unsigned long long)seed, (unsigned long long)seed);
    tm_rng = seed * 0x9e3779b97f4a7c15ULL + 1;
    if (getenv("LEANK_BENCH")) {
        bench();
        return t_done();
    }
    la = malloc(4096 * sizeof(float));
    lb = malloc(4096 * sizeof(float));
    const char *shared = t_shared();
    if (shared) golden(shared);
    else printf("skip: stories260K golden test: ../shared absent (LEANK_SHARED)\n");
    const char *only = getenv("LEANK_VARIANTS"); /* substring of the variants to run */
    for (size_t i = 0; i < sizeof variants / sizeof variants[0]; i++) {
        if (only && !strstr(variants[i].what, only)) continue;
        random_model(&variants[i], "f32");
        random_model(&variants[i], "bf16");
    }
    if (!only) {
        chunked();
        checkpoint(LK_DT_BF16);
        checkpoint(LK_DT_F16);
        device_random();
        two_gpus();
    }
    free(la);
    free(lb);
    return t_done();
}
