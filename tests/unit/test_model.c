/* test_model.c - the CPU reference forward pass.
 * 1. stories260K (../shared): prefill logits of each case in expected.json
 *    against HF's last_logits (1e-4 absolute), greedy 64 tokens = output_ids.
 * 2. Random Llama/Qwen2/Mistral-shaped models written by the test as a model
 *    directory (config.json + F32/BF16/F16 safetensors; GQA, head_dim 64 and
 *    128, q/k/v bias on and off, every rope_scaling type): one prefill of N
 *    tokens and N single-token steps give the same logits (1e-5 relative).
 * 3. The sampler: greedy ties, top-k 1, the nucleus, seeded reproducibility. */
#include <jansson.h>
#include <stdint.h>
#include <unistd.h>

#include "config.h"
#include "model.h"
#include "safetensors.h"
#include "sampler.h"
#include "t.h"

/* ---- 1. stories260K golden test ---- */

static void golden(const char *shared) {
    char dir[8192], path[8300];
    snprintf(dir, sizeof dir, "%s/models/stories260K", shared);
    snprintf(path, sizeof path, "%s/expected.json", dir);
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    if (!root) {
        T_SKIP_PART("stories260K golden test: %s: %s", path, je.text);
        return;
    }
    lk_model m;
    lk_err err;
    if (lk_model_load(&m, dir, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        CHECK(0);
        json_decref(root);
        return;
    }
    int V = m.cfg.vocab_size;
    json_t *cases = json_object_get(root, "cases");
    size_t ci;
    json_t *cs;
    json_array_foreach(cases, ci, cs) {
        json_t *in = json_object_get(cs, "input_ids"), *outj = json_object_get(cs, "output_ids"),
               *ll = json_object_get(cs, "last_logits");
        int n_in = (int)json_array_size(in), n_out = (int)json_array_size(outj);
        int *ids = malloc(sizeof(int) * (n_in + n_out));
        for (int i = 0; i < n_in; i++) ids[i] = (int)json_integer_value(json_array_get(in, i));
        lk_state s;
        CHECK(lk_state_build(&s, &m, n_in, n_in + n_out, NULL, 0, 0, &err) == 0);
        CHECK(lk_forward(&m, &s, ids, n_in, NULL, &err) == 0);
        CHECK((int)json_array_size(ll) == V);
        double maxd = 0;
        for (int i = 0; i < V; i++) {
            double d = fabs(s.logits[i] - json_number_value(json_array_get(ll, i)));
            if (d > maxd) maxd = d;
        }
        CHECKF(maxd <= 1e-4, "case %zu: last logits max |diff| %.3g", ci, maxd);
        int same = 1;
        for (int t = 0; t < n_out; t++) {
            int next = lk_argmax(s.logits, V);
            if (next != (int)json_integer_value(json_array_get(outj, t))) {
                fprintf(stderr, "case %zu: token %d: got %d, expected %lld\n", ci, t, next,
                        (long long)json_integer_value(json_array_get(outj, t)));
                same = 0;
                break;
            }
            if (t + 1 < n_out) CHECK(lk_forward(&m, &s, &next, 1, NULL, &err) == 0);
        }
        CHECKF(same, "case %zu: greedy output differs", ci);
        printf("stories260K case %zu: %d prompt tokens, logits max |diff| %.2g, %d tokens %s\n",
               ci, n_in, maxd, n_out, same ? "match" : "DIFFER");
        lk_state_free(&s);
        free(ids);
    }
    lk_model_free(&m);
    json_decref(root);
}

/* ---- 2. random models: prefill == token-by-token decode ---- */

static uint64_t rng = 0x1234567887654321ULL;
static float frand(void) { /* uniform in [-1, 1) */
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return (float)((rng * 0x2545f4914f6cdd1dULL) >> 40) / 8388608.0f - 1.0f;
}

static lk_dtype wdtype = LK_DT_F32; /* dtype the weights are written in */

static void add_rand(lk_stw *w, const char *name, int64_t d0, int64_t d1, float scale, float base) {
    int64_t shape[2] = {d0, d1};
    size_t n = (size_t)d0 * (d1 ? d1 : 1);
    float *x = malloc(n * sizeof(float));
    uint16_t *h = malloc(n * sizeof(uint16_t));
    for (size_t i = 0; i < n; i++) {
        x[i] = base + scale * frand();
        h[i] = wdtype == LK_DT_BF16 ? lk_f32_to_bf16(x[i]) : lk_f32_to_f16(x[i]);
    }
    lk_stw_add(w, name, wdtype, d1 ? 2 : 1, shape, wdtype == LK_DT_F32 ? (void *)x : (void *)h);
    free(x);
    free(h);
}

typedef struct {
    const char *what;
    const char *arch, *model_type;
    lk_dtype dtype;
    int head_dim, bias, tied;
    const char *rope_scaling; /* JSON value */
} variant;

static void prefill_vs_decode(const char *tmp, const variant *v) {
    int dim = 128, n_heads = 4, n_kv = 2, hd = v->head_dim, hidden = 192, L = 2, V = 97, N = 48;
    char cfg[2048];
    snprintf(cfg, sizeof cfg,
             "{\"architectures\": [\"%s\"], \"model_type\": \"%s\", "
             "\"vocab_size\": %d, \"hidden_size\": %d, \"intermediate_size\": %d, "
             "\"num_hidden_layers\": %d, \"num_attention_heads\": %d, \"num_key_value_heads\": %d, "
             "\"head_dim\": %d, \"max_position_embeddings\": 4096, \"rms_norm_eps\": 1e-5, "
             "\"rope_theta\": 10000.0, \"rope_scaling\": %s, \"attention_bias\": %s, "
             "\"tie_word_embeddings\": %s, \"bos_token_id\": 1, \"eos_token_id\": 2}",
             v->arch, v->model_type, V, dim, hidden, L, n_heads, n_kv, hd, v->rope_scaling, v->bias ? "true" : "false",
             v->tied ? "true" : "false");
    lk_config c;
    lk_err err;
    if (lk_config_parse(&c, cfg, strlen(cfg), "test config", &err)) {
        fprintf(stderr, "%s: %s\n", v->what, err.msg);
        CHECK(0);
        return;
    }
    wdtype = v->dtype;
    lk_stw *w = lk_stw_new();
    int q_dim = n_heads * hd, kv_dim = n_kv * hd;
    add_rand(w, "model.embed_tokens.weight", V, dim, 1.0f, 0.0f);
    for (int l = 0; l < L; l++) {
        char name[128];
#define P(suffix) (snprintf(name, sizeof name, "model.layers.%d.%s", l, suffix), name)
        add_rand(w, P("input_layernorm.weight"), dim, 0, 0.1f, 1.0f);
        add_rand(w, P("self_attn.q_proj.weight"), q_dim, dim, 0.15f, 0.0f);
        add_rand(w, P("self_attn.k_proj.weight"), kv_dim, dim, 0.15f, 0.0f);
        add_rand(w, P("self_attn.v_proj.weight"), kv_dim, dim, 0.1f, 0.0f);
        if (v->bias) {
            add_rand(w, P("self_attn.q_proj.bias"), q_dim, 0, 0.2f, 0.0f);
            add_rand(w, P("self_attn.k_proj.bias"), kv_dim, 0, 0.2f, 0.0f);
            add_rand(w, P("self_attn.v_proj.bias"), kv_dim, 0, 0.2f, 0.0f);
        }
        add_rand(w, P("self_attn.o_proj.weight"), dim, q_dim, 0.1f, 0.0f);
        add_rand(w, P("post_attention_layernorm.weight"), dim, 0, 0.1f, 1.0f);
        add_rand(w, P("mlp.gate_proj.weight"), hidden, dim, 0.1f, 0.0f);
        add_rand(w, P("mlp.up_proj.weight"), hidden, dim, 0.1f, 0.0f);
        add_rand(w, P("mlp.down_proj.weight"), dim, hidden, 0.1f, 0.0f);
#undef P
    }
    add_rand(w, "model.norm.weight", dim, 0, 0.1f, 1.0f);
    if (!v->tied) add_rand(w, "lm_head.weight", V, dim, 0.2f, 0.0f);
    char path[4200];
    snprintf(path, sizeof path, "%s/model.safetensors", tmp);
    CHECK(lk_stw_write(w, path, &err) == 0);
    lk_stw_free(w);

    char cpath[4200];
    snprintf(cpath, sizeof cpath, "%s/config.json", tmp);
    FILE *cf = fopen(cpath, "w");
    CHECK(cf && fputs(cfg, cf) >= 0 && fclose(cf) == 0);
    lk_model m;
    if (lk_model_load(&m, tmp, &err)) { /* the directory: config.json + model.safetensors */
        fprintf(stderr, "%s: %s\n", v->what, err.msg);
        CHECK(0);
        return;
    }
    CHECK(m.cfg.rope.type == c.rope.type && m.cfg.head_dim == hd);
    CHECK(v->tied ? m.w.lm_head == m.w.embed : m.w.lm_head != m.w.embed);
    CHECK((m.w.layer[0].bq != NULL) == v->bias);

    int tokens[48];
    for (int i = 0; i < N; i++) tokens[i] = (int)((frand() + 1.0f) * 0.5f * V) % V;
    float *all = malloc(sizeof(float) * N * V);
    lk_state s;
    CHECK(lk_state_build(&s, &m, N, N, NULL, 0, 0, &err) == 0);
    CHECK(lk_forward(&m, &s, tokens, N, all, &err) == 0);
    lk_state_free(&s);
    CHECK(lk_state_build(&s, &m, 1, N, NULL, 0, 0, &err) == 0);
    double worst = 0;
    for (int t = 0; t < N; t++) {
        CHECK(lk_forward(&m, &s, tokens + t, 1, NULL, &err) == 0);
        double maxabs = 0, maxd = 0;
        for (int i = 0; i < V; i++) {
            double a = all[(size_t)t * V + i];
            if (fabs(a) > maxabs) maxabs = fabs(a);
            if (fabs(a - s.logits[i]) > maxd) maxd = fabs(a - s.logits[i]);
        }
        double rel = maxd / (maxabs > 1 ? maxabs : 1);
        if (rel > worst) worst = rel;
    }
    CHECKF(worst <= 1e-5, "%s: prefill vs decode relative diff %.3g", v->what, worst);
    printf("%-34s prefill vs decode: max relative diff %.2g\n", v->what, worst);
    /* a full cache and a bad token are refused */
    int bad = V;
    CHECK(lk_forward(&m, &s, tokens, 1, NULL, &err) == LK_EINPUT);
    lk_kv_reset(&s.kv);
    CHECK(lk_forward(&m, &s, &bad, 1, NULL, &err) == LK_EINPUT);
    lk_state_free(&s);
    free(all);
    lk_model_free(&m);
}

/* ---- 3. sampler ---- */

static void sampler(void) {
    float base[6] = {0.5f, 2.0f, 2.0f, -1.0f, 1.9f, 0.0f}, x[6];
    lk_sampler s;
    CHECK(lk_sampler_build(&s, 6, 0.0f, 0, 1.0f, 1, NULL) == 0);
    memcpy(x, base, sizeof x);
    CHECK(lk_sample(&s, x) == 1); /* greedy: lowest id among equal maxima */
    lk_sampler_free(&s);
    int kept_ok = 1, nucleus_ok = 1, seen[6] = {0};
    CHECK(lk_sampler_build(&s, 6, 1.0f, 1, 1.0f, 7, NULL) == 0); /* top-k 1 = greedy */
    for (int i = 0; i < 50; i++) {
        memcpy(x, base, sizeof x);
        kept_ok &= lk_sample(&s, x) == 1;
    }
    lk_sampler_free(&s);
    CHECK(lk_sampler_build(&s, 6, 1.0f, 0, 0.8f, 7, NULL) == 0); /* p = .30 .30 .27 ...: nucleus 0.8 = ids 1, 2, 4 */
    for (int i = 0; i < 300; i++) {
        memcpy(x, base, sizeof x);
        int id = lk_sample(&s, x);
        seen[id]++;
        nucleus_ok &= id == 1 || id == 2 || id == 4;
    }
    lk_sampler_free(&s);
    CHECK(kept_ok);
    CHECKF(nucleus_ok && seen[1] && seen[2] && seen[4], "top-p: %d %d %d", seen[1], seen[2], seen[4]);
    int a[20], b[20];
    for (int rep = 0; rep < 2; rep++) {
        CHECK(lk_sampler_build(&s, 6, 0.8f, 0, 1.0f, 42, NULL) == 0);
        for (int i = 0; i < 20; i++) {
            memcpy(x, base, sizeof x);
            (rep ? b : a)[i] = lk_sample(&s, x);
        }
        lk_sampler_free(&s);
    }
    CHECK(memcmp(a, b, sizeof a) == 0); /* same seed, same draws */
}

int main(void) {
    sampler();
    const char *shared = t_shared();
    if (shared)
        golden(shared);
    else
        T_SKIP_PART("stories260K golden test: shared data absent");

    char tmp[] = "/tmp/leank-test-model-XXXXXX";
    if (!mkdtemp(tmp)) T_SKIP("cannot create a temporary directory");
    const variant vs[] = {
        {"llama hd64 no-bias default tied", "LlamaForCausalLM", "llama", LK_DT_F32, 64, 0, 1, "null"},
        {"qwen2 hd128 bias linear bf16", "Qwen2ForCausalLM", "qwen2", LK_DT_BF16, 128, 1, 0,
         "{\"rope_type\": \"linear\", \"factor\": 4.0}"},
        {"llama hd64 bias llama3 f16", "LlamaForCausalLM", "llama", LK_DT_F16, 64, 1, 0,
         "{\"rope_type\": \"llama3\", \"factor\": 8.0, \"low_freq_factor\": 1.0, "
         "\"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 512}"},
        {"mistral hd128 no-bias yarn tied", "MistralForCausalLM", "mistral", LK_DT_F32, 128, 0, 1,
         "{\"rope_type\": \"yarn\", \"factor\": 4.0, \"original_max_position_embeddings\": 1024}"},
    };
    for (size_t i = 0; i < sizeof vs / sizeof vs[0]; i++) prefill_vs_decode(tmp, &vs[i]);
    char path[4200];
    snprintf(path, sizeof path, "%s/model.safetensors", tmp);
    remove(path);
    snprintf(path, sizeof path, "%s/config.json", tmp);
    remove(path);
    rmdir(tmp);
    return t_done();
}
