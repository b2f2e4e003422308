/* test_config.c - config.json parsing (Llama-3.1, Qwen2.5, Mistral, the v5
 * rope_parameters form), refusals, and RoPE inverse frequencies checked
 * against the published formulas written out here independently. */
#include <unistd.h>

#include "config.h"
#include "cli.h" /* lk_asprintf, lk_malloc: a test is a program */
#include "t.h"

static const char *LLAMA31_8B =
    "{\"architectures\":[\"LlamaForCausalLM\"],\"attention_bias\":false,\"attention_dropout\":0.0,"
    "\"bos_token_id\":128000,\"eos_token_id\":[128001,128008,128009],\"hidden_act\":\"silu\","
    "\"hidden_size\":4096,\"initializer_range\":0.02,\"intermediate_size\":14336,"
    "\"max_position_embeddings\":131072,\"mlp_bias\":false,\"model_type\":\"llama\","
    "\"num_attention_heads\":32,\"num_hidden_layers\":32,\"num_key_value_heads\":8,\"pretraining_tp\":1,"
    "\"rms_norm_eps\":1e-05,\"rope_scaling\":{\"factor\":8.0,\"low_freq_factor\":1.0,"
    "\"high_freq_factor\":4.0,\"original_max_position_embeddings\":8192,\"rope_type\":\"llama3\"},"
    "\"rope_theta\":500000.0,\"tie_word_embeddings\":false,\"torch_dtype\":\"bfloat16\","
    "\"transformers_version\":\"4.43.0.dev0\",\"use_cache\":true,\"vocab_size\":128256}";

/* the same model as transformers v5 writes it */
static const char *LLAMA31_8B_V5 =
    "{\"architectures\":[\"LlamaForCausalLM\"],\"bos_token_id\":128000,\"eos_token_id\":128009,"
    "\"hidden_size\":4096,\"intermediate_size\":14336,\"max_position_embeddings\":131072,"
    "\"model_type\":\"llama\",\"num_attention_heads\":32,\"num_hidden_layers\":32,"
    "\"num_key_value_heads\":8,\"rms_norm_eps\":1e-05,\"vocab_size\":128256,"
    "\"rope_parameters\":{\"rope_type\":\"llama3\",\"rope_theta\":500000.0,\"factor\":8.0,"
    "\"low_freq_factor\":1.0,\"high_freq_factor\":4.0,\"original_max_position_embeddings\":8192}}";

/* Qwen2.5-7B-Instruct with the YaRN rope_scaling its model card suggests */
static const char *QWEN25_7B_YARN =
    "{\"architectures\":[\"Qwen2ForCausalLM\"],\"attention_dropout\":0.0,\"bos_token_id\":151643,"
    "\"eos_token_id\":151645,\"hidden_act\":\"silu\",\"hidden_size\":3584,\"initializer_range\":0.02,"
    "\"intermediate_size\":18944,\"max_position_embeddings\":32768,\"max_window_layers\":28,"
    "\"model_type\":\"qwen2\",\"num_attention_heads\":28,\"num_hidden_layers\":28,"
    "\"num_key_value_heads\":4,\"rms_norm_eps\":1e-06,\"rope_theta\":1000000.0,"
    "\"sliding_window\":131072,\"tie_word_embeddings\":false,\"torch_dtype\":\"bfloat16\","
    "\"use_cache\":true,\"use_sliding_window\":false,\"vocab_size\":152064,"
    "\"rope_scaling\":{\"factor\":4.0,\"original_max_position_embeddings\":32768,\"type\":\"yarn\"}}";

static const char *MISTRAL_7B =
    "{\"architectures\":[\"MistralForCausalLM\"],\"bos_token_id\":1,\"eos_token_id\":2,"
    "\"hidden_act\":\"silu\",\"hidden_size\":4096,\"initializer_range\":0.02,\"intermediate_size\":14336,"
    "\"max_position_embeddings\":32768,\"model_type\":\"mistral\",\"num_attention_heads\":32,"
    "\"num_hidden_layers\":32,\"num_key_value_heads\":8,\"rms_norm_eps\":1e-05,\"rope_theta\":10000.0,"
    "\"sliding_window\":4096,\"tie_word_embeddings\":false,\"torch_dtype\":\"bfloat16\","
    "\"use_cache\":true,\"vocab_size\":32000}";

static int parse(lk_config *c, const char *json, lk_err *err) {
    return lk_config_parse(c, json, strlen(json), "test.json", err);
}

/* A small llama config with a rope_scaling / rope_parameters fragment spliced in. */
static char *with_rope(const char *frag) {
    return lk_asprintf("{\"model_type\":\"llama\",\"vocab_size\":32,\"hidden_size\":1024,"
                       "\"intermediate_size\":64,\"num_hidden_layers\":1,\"num_attention_heads\":8,"
                       "\"max_position_embeddings\":4096%s%s}", *frag ? "," : "", frag);
}

static void refuse(const char *json, const char *want) {
    lk_config c;
    lk_err err = {0};
    int rc = parse(&c, json, &err);
    CHECKF(rc == LK_EINPUT, "rc %d for %s", rc, want);
    CHECKF(strstr(err.msg, want) && strstr(err.msg, "test.json"), "message \"%s\" lacks \"%s\"",
           err.msg, want);
    printf("refused: %s\n", err.msg);
}

/* relative float comparison of our float against a double reference */
#define CHECK_REL(got, want) CHECK_NEAR((got), (want), 2e-7 * fabs(want) + 1e-30)

static void test_llama31(void) {
    lk_config c;
    lk_err err = {0};
    CHECKF(parse(&c, LLAMA31_8B, &err) == 0, "%s", err.msg);
    CHECK(strcmp(c.arch, "LlamaForCausalLM") == 0 && strcmp(c.model_type, "llama") == 0);
    CHECK(c.vocab_size == 128256 && c.hidden_size == 4096 && c.intermediate_size == 14336);
    CHECK(c.n_layers == 32 && c.n_heads == 32 && c.n_kv_heads == 8 && c.head_dim == 128);
    CHECK(c.max_position_embeddings == 131072 && c.rms_eps == 1e-5);
    CHECK(!c.tie_word_embeddings && !c.attention_bias && !c.mlp_bias && c.sliding_window == 0);
    CHECK(c.bos_token_id == 128000 && c.eos_token_id == 128001 && c.n_eos == 3);
    CHECK(c.eos_ids[1] == 128008 && c.eos_ids[2] == 128009);
    CHECK(c.rope.type == LK_ROPE_LLAMA3 && c.rope.theta == 500000.0 && c.rope.factor == 8.0);
    CHECK(c.rope.low_freq_factor == 1.0 && c.rope.high_freq_factor == 4.0);
    CHECK(c.rope.original_max_position_embeddings == 8192);

    float f[64], s = 0;
    lk_rope_inv_freq(&c, f, &s);
    CHECK(s == 1.0f);
    /* Llama 3.1: base f_i = 500000^(-2i/128); wavelength w = 2 pi / f_i.
     * w < 8192/4: kept; w > 8192/1: divided by 8; else
     * (1 - k) f/8 + k f with k = (8192/w - 1) / (4 - 1). */
    for (int i = 0; i < 64; i++) {
        double base = pow(500000.0, -2.0 * i / 128), w = 2 * M_PI / base, want;
        if (w < 2048) want = base;
        else if (w > 8192) want = base / 8;
        else {
            double k = (8192 / w - 1) / 3;
            want = (1 - k) * base / 8 + k * base;
        }
        CHECK_REL(f[i], want);
    }
    /* values computed once with Python's math module (float64) */
    CHECK(f[0] == 1.0f);
    CHECK_REL(f[28], 0.0032114459947525913); /* high frequency: unchanged */
    CHECK_REL(f[30], 0.0013718935677611381); /* smoothed */
    CHECK_REL(f[34], 0.00017850781276799638);
    CHECK_REL(f[35], 9.556212353964683e-05); /* low frequency: / 8 */
    CHECK_REL(f[63], 3.068925988914511e-07);
    CHECK_REL(f[63], pow(500000.0, -126.0 / 128) / 8);

    /* the v5 rope_parameters form gives the same frequencies */
    lk_config v5;
    CHECKF(parse(&v5, LLAMA31_8B_V5, &err) == 0, "%s", err.msg);
    CHECK(v5.rope.type == LK_ROPE_LLAMA3 && v5.rope.theta == 500000.0 && v5.n_eos == 1 &&
          v5.eos_token_id == 128009);
    CHECK(v5.rms_eps == 1e-5 && v5.head_dim == 128);
    float g[64];
    lk_rope_inv_freq(&v5, g, &s);
    CHECK(memcmp(f, g, sizeof f) == 0 && s == 1.0f);
}

static void test_qwen25_yarn(void) {
    lk_config c;
    lk_err err = {0};
    CHECKF(parse(&c, QWEN25_7B_YARN, &err) == 0, "%s", err.msg);
    CHECK(strcmp(c.arch, "Qwen2ForCausalLM") == 0 && strcmp(c.model_type, "qwen2") == 0);
    CHECK(c.hidden_size == 3584 && c.n_heads == 28 && c.n_kv_heads == 4 && c.head_dim == 128);
    CHECK(c.attention_bias == 1 && c.mlp_bias == 0); /* Qwen2: q/k/v bias always */
    CHECK(c.sliding_window == 0);                    /* use_sliding_window false */
    CHECK(c.rms_eps == 1e-6 && c.eos_token_id == 151645 && c.n_eos == 1 && c.bos_token_id == 151643);
    CHECK(c.rope.type == LK_ROPE_YARN && c.rope.factor == 4.0 && c.rope.theta == 1e6);
    CHECK(c.rope.original_max_position_embeddings == 32768 && c.rope.beta_fast == 32 &&
          c.rope.beta_slow == 1 && c.rope.truncate == 1);

    float f[64], s = 0;
    lk_rope_inv_freq(&c, f, &s);
    /* YaRN: mscale 0.1 ln(s) + 1 */
    CHECK_REL(s, 0.1 * log(4.0) + 1);
    CHECK_REL(s, 1.138629436111989);
    /* correction dims d ln(L / (2 pi beta)) / (2 ln theta) for beta 32 and 1:
     * 23.596 and 39.651, floored/ceiled to 23 and 40; ramp r = (i-23)/17
     * clamped; f = f_base (1-r) + f_base/4 r. */
    double lo = floor(128 * log(32768 / (32 * 2 * M_PI)) / (2 * log(1e6)));
    double hi = ceil(128 * log(32768 / (1 * 2 * M_PI)) / (2 * log(1e6)));
    CHECK(lo == 23 && hi == 40);
    for (int i = 0; i < 64; i++) {
        double base = pow(1e6, -2.0 * i / 128), r = (i - lo) / (hi - lo);
        r = r < 0 ? 0 : r > 1 ? 1 : r;
        CHECK_REL(f[i], base * (1 - r) + base / 4 * r);
    }
    CHECK(f[0] == 1.0f);
    CHECK_REL(f[22], 0.008659643233600653); /* python float64 values */
    CHECK_REL(f[24], 0.005375321490790102);
    CHECK_REL(f[30], 0.0010643609812470017);
    CHECK_REL(f[40], 4.445698525097307e-05);
    CHECK_REL(f[63], 3.102344401879299e-07);

    /* mscale / mscale_all_dim, explicit attention_factor, truncate false, betas */
    char *j = with_rope("\"rope_theta\":10000,\"rope_scaling\":{\"rope_type\":\"yarn\",\"factor\":40,"
                        "\"mscale\":1.0,\"mscale_all_dim\":0.5,\"beta_fast\":16,\"beta_slow\":2,"
                        "\"truncate\":false,\"original_max_position_embeddings\":1024}");
    CHECKF(parse(&c, j, &err) == 0, "%s", err.msg);
    free(j);
    CHECK(c.rope.truncate == 0 && c.rope.beta_fast == 16 && c.rope.beta_slow == 2);
    lk_rope_inv_freq(&c, f, &s);
    CHECK_REL(s, (0.1 * log(40.0) + 1) / (0.05 * log(40.0) + 1));
    lo = 128 * log(1024 / (16 * 2 * M_PI)) / (2 * log(1e4));
    hi = 128 * log(1024 / (2 * 2 * M_PI)) / (2 * log(1e4));
    for (int i = 0; i < 64; i++) {
        double base = pow(1e4, -2.0 * i / 128), r = (i - lo) / (hi - lo);
        r = r < 0 ? 0 : r > 1 ? 1 : r;
        CHECK_REL(f[i], base * (1 - r) + base / 40 * r);
    }
    j = with_rope("\"rope_scaling\":{\"type\":\"yarn\",\"factor\":2,\"attention_factor\":0.75}");
    CHECKF(parse(&c, j, &err) == 0, "%s", err.msg);
    free(j);
    CHECK(c.rope.original_max_position_embeddings == 4096); /* from max_position_embeddings */
    lk_rope_inv_freq(&c, f, &s);
    CHECK(s == 0.75f);
}

static void test_mistral_and_forms(void) {
    lk_config c;
    lk_err err = {0};
    CHECKF(parse(&c, MISTRAL_7B, &err) == 0, "%s", err.msg);
    CHECK(strcmp(c.arch, "MistralForCausalLM") == 0 && strcmp(c.model_type, "mistral") == 0);
    CHECK(c.sliding_window == 4096 && c.attention_bias == 0 && c.head_dim == 128 && c.n_kv_heads == 8);
    CHECK(c.max_position_embeddings == 32768 && c.rope.type == LK_ROPE_DEFAULT && c.rope.theta == 1e4);
    CHECK(c.bos_token_id == 1 && c.eos_token_id == 2);
    float f[64], s = 0;
    lk_rope_inv_freq(&c, f, &s);
    CHECK(s == 1.0f);
    for (int i = 0; i < 64; i++) CHECK_REL(f[i], 1.0 / pow(10000.0, 2.0 * i / 128));

    /* head_dim explicit (Mistral-Nemo: 5120 / 32 would be 160) vs derived */
    const char *nemo = "{\"architectures\":[\"MistralForCausalLM\"],\"hidden_size\":5120,"
                       "\"head_dim\":128,\"intermediate_size\":14336,\"num_attention_heads\":32,"
                       "\"num_hidden_layers\":40,\"num_key_value_heads\":8,\"vocab_size\":131072,"
                       "\"rope_theta\":1000000.0,\"sliding_window\":null}";
    CHECKF(parse(&c, nemo, &err) == 0, "%s", err.msg);
    CHECK(c.head_dim == 128 && c.sliding_window == 0);
    CHECK(c.max_position_embeddings == 131072); /* MistralConfig default 4096*32 */
    CHECK(c.rms_eps == 1e-6);                    /* HF default */
    char *j = with_rope("");
    CHECKF(parse(&c, j, &err) == 0, "%s", err.msg);
    free(j);
    CHECK(c.head_dim == 128 && c.n_kv_heads == 8); /* derived; kv heads default to heads */
    CHECK(strcmp(c.arch, "LlamaForCausalLM") == 0); /* by model_type */
    CHECK(c.bos_token_id == -1 && c.eos_token_id == -1 && c.n_eos == 0 && !c.tie_word_embeddings);

    /* llama attention_bias key; linear scaling in both forms; "default" type */
    j = with_rope("\"attention_bias\":true,\"rope_scaling\":{\"type\":\"linear\",\"factor\":4.0}");
    CHECKF(parse(&c, j, &err) == 0, "%s", err.msg);
    free(j);
    CHECK(c.attention_bias == 1 && c.rope.type == LK_ROPE_LINEAR && c.rope.factor == 4);
    lk_rope_inv_freq(&c, f, &s);
    for (int i = 0; i < 64; i++) CHECK_REL(f[i], 1.0 / pow(10000.0, 2.0 * i / 128) / 4);
    j = with_rope("\"rope_theta\":5,\"rope_parameters\":{\"rope_type\":\"linear\",\"rope_theta\":250000,"
                  "\"factor\":2}");
    CHECKF(parse(&c, j, &err) == 0, "%s", err.msg);
    free(j);
    CHECK(c.rope.type == LK_ROPE_LINEAR && c.rope.theta == 250000); /* rope_parameters wins */
    lk_rope_inv_freq(&c, f, &s);
    CHECK_REL(f[10], 1.0 / pow(250000.0, 20.0 / 128) / 2);
    j = with_rope("\"rope_parameters\":{\"rope_type\":\"default\",\"rope_theta\":10000.0}");
    CHECKF(parse(&c, j, &err) == 0, "%s", err.msg);
    free(j);
    CHECK(c.rope.type == LK_ROPE_DEFAULT && c.rope.theta == 1e4);
    /* Qwen2 with sliding window in use */
    CHECKF(parse(&c, "{\"model_type\":\"qwen2\",\"vocab_size\":8,\"hidden_size\":64,"
                     "\"intermediate_size\":8,\"num_hidden_layers\":1,\"num_attention_heads\":4,"
                     "\"num_key_value_heads\":2,\"use_sliding_window\":true,\"sliding_window\":256,"
                     "\"tie_word_embeddings\":true}", &err) == 0, "%s", err.msg);
    CHECK(c.sliding_window == 256 && c.attention_bias && c.tie_word_embeddings && c.head_dim == 16);
}

static void test_refusals(void) {
    refuse("{\"architectures\":[\"GPT2LMHeadModel\"],\"hidden_size\":64}", "GPT2LMHeadModel");
    refuse("{\"architectures\":[\"GPT2LMHeadModel\"]}", "Qwen2ForCausalLM");
    refuse("{\"hidden_size\":64}", "supported");
    char *j;
    refuse(j = with_rope("\"mlp_bias\":true"), "mlp_bias");
    free(j);
    refuse(j = with_rope("\"rope_scaling\":{\"type\":\"dynamic\",\"factor\":2.0}"), "\"dynamic\"");
    free(j);
    refuse(j = with_rope("\"rope_scaling\":{\"rope_type\":\"longrope\",\"long_factor\":[1],"
                         "\"short_factor\":[1]}"), "longrope");
    free(j);
    refuse(j = with_rope("\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":8.0}"),
           "low_freq_factor");
    free(j);
    refuse(j = with_rope("\"rope_scaling\":{\"rope_type\":\"linear\"}"), "factor");
    free(j);
    refuse(j = with_rope("\"rope_scaling\":[1,2]"), "rope_scaling");
    free(j);
    refuse(j = with_rope("\"rope_parameters\":{\"full_attention\":{\"rope_type\":\"default\"}}"),
           "per-layer");
    free(j);
    refuse(j = with_rope("\"hidden_act\":\"gelu\""), "gelu");
    free(j);
    refuse(j = with_rope("\"num_key_value_heads\":3"), "num_key_value_heads");
    free(j);
    refuse(j = with_rope("\"rms_norm_eps\":\"small\""), "rms_norm_eps");
    free(j);
    refuse(j = with_rope("\"head_dim\":7"), "head_dim");
    free(j);
    refuse("{\"model_type\":\"llama\",\"vocab_size\":32,\"intermediate_size\":64,"
           "\"num_hidden_layers\":1,\"num_attention_heads\":8}", "missing \"hidden_size\"");
    refuse("{\"model_type\":\"llama\",\"vocab_size\":32,\"hidden_size\":-4,\"intermediate_size\":64,"
           "\"num_hidden_layers\":1,\"num_attention_heads\":8}", "hidden_size");
    refuse("{\"model_type\":\"llama\",\"hidden_size\":64,", "line 1");
    refuse("[1,2,3]", "not a JSON object");
    lk_config c;
    lk_err err = {0};
    CHECK(lk_config_load(&c, "/nonexistent/config.json", &err) == LK_EIO);
    CHECK(strstr(err.msg, "/nonexistent/config.json") != NULL);
}

static void test_stories(void) {
    const char *sh = t_shared();
    if (!sh) {
        T_SKIP_PART("stories260K config check: shared data absent");
        return;
    }
    lk_config c;
    lk_err err = {0};
    char *d = lk_asprintf("%s/models/stories260K", sh); /* directory form */
    CHECKF(lk_config_load(&c, d, &err) == 0, "%s", err.msg);
    free(d);
    CHECK(strcmp(c.arch, "LlamaForCausalLM") == 0 && c.vocab_size == 512 && c.hidden_size == 64);
    CHECK(c.intermediate_size == 172 && c.n_layers == 5 && c.n_heads == 8 && c.n_kv_heads == 4);
    CHECK(c.head_dim == 8 && c.max_position_embeddings == 512 && c.rms_eps == 1e-5);
    CHECK(c.tie_word_embeddings == 1 && c.bos_token_id == 1 && c.eos_token_id == 2);
    CHECK(c.rope.type == LK_ROPE_DEFAULT);
    float f[4], s;
    lk_rope_inv_freq(&c, f, &s);
    CHECK(f[0] == 1.0f && s == 1.0f);
    CHECK_REL(f[1], 0.1);
    CHECK_REL(f[2], 0.01);
    CHECK_REL(f[3], 0.001);
}

int main(void) {
    test_llama31();
    test_qwen25_yarn();
    test_mistral_and_forms();
    test_refusals();
    test_stories();
    return t_done();
}
