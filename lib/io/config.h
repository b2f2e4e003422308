/* config.h - model configuration from a Hugging Face config.json
 * (LlamaForCausalLM, Qwen2ForCausalLM, MistralForCausalLM). */
#ifndef LEANK_CONFIG_H
#define LEANK_CONFIG_H

#include "util.h"

/* Bounds on every model size leank reads (config.json, tokenizer.json, masks,
 * plans, alpha files): far above any released model (Llama-3.1-405B: 126
 * layers, 128 heads, 16384 hidden, 53248 intermediate; Gemma: 262144 tokens),
 * low enough that every size product fits in 64 bits. A file past them is
 * bad input (exit 3), never an attempt at a huge allocation. */
#define LK_MAX_LAYERS 1024
#define LK_MAX_HEADS 1024        /* query and kv heads */
#define LK_MAX_HEAD_DIM 1024
#define LK_MAX_HIDDEN (1 << 17)  /* hidden_size */
#define LK_MAX_INTERMEDIATE (1 << 20)
#define LK_MAX_VOCAB (1 << 22)   /* token ids are below this */
#define LK_MAX_POSITIONS (1 << 26) /* max_position_embeddings */

typedef enum {
    LK_ROPE_DEFAULT,
    LK_ROPE_LINEAR,
    LK_ROPE_LLAMA3,
    LK_ROPE_YARN,
} lk_rope_type;

typedef struct {
    lk_rope_type type;
    double theta;          /* rope_theta */
    double factor;         /* linear, llama3, yarn */
    double low_freq_factor, high_freq_factor;  /* llama3 */
    int original_max_position_embeddings;      /* llama3; yarn (max_position_embeddings if absent) */
    double beta_fast, beta_slow;               /* yarn (defaults 32, 1) */
    double attention_factor;                   /* yarn mscale (derived if absent: 0.1*ln(factor)+1,
                                                  or get_mscale(f, mscale)/get_mscale(f, mscale_all_dim)) */
    double partial_rotary_factor;              /* 1.0 unless given */
    int truncate;                              /* yarn: floor/ceil the correction range (default 1) */
} lk_rope;

typedef struct {
    char arch[64];        /* "LlamaForCausalLM", ... */
    char model_type[32];  /* "llama", "qwen2", "mistral" */
    int vocab_size;
    int hidden_size;       /* dim */
    int intermediate_size; /* MLP hidden */
    int n_layers;
    int n_heads;    /* query heads */
    int n_kv_heads; /* key/value heads (GQA) */
    int head_dim;   /* explicit or hidden_size / n_heads */
    int max_position_embeddings;
    double rms_eps;
    int tie_word_embeddings;
    int attention_bias; /* q/k/v projections carry a bias (Qwen2 always) */
    int mlp_bias;       /* refused if true (not used by supported models) */
    int sliding_window; /* 0 = none; Mistral may set it (used only as information) */
    int bos_token_id, eos_token_id; /* -1 if absent */
    int n_eos; int eos_ids[8];      /* eos_token_id may be a list */
    lk_rope rope;
} lk_config;

/* path: config.json or a model directory containing it. Unknown
 * architectures and unsupported options are refused with a clear message. */
int lk_config_load(lk_config *c, const char *path, lk_err *err);
/* Parse from a JSON text (name used in messages). */
int lk_config_parse(lk_config *c, const char *json, size_t len, const char *name, lk_err *err);

/* A Llama config made in code (tests, benchmarks): every other field as
 * config.json would leave it by default (rope_theta 10000, no scaling, rms
 * eps 1e-5, untied, no bias, no BOS/EOS). */
void lk_config_llama(lk_config *c, int vocab, int hidden, int intermediate, int n_layers, int n_heads,
                     int n_kv_heads, int head_dim);

struct lk_st;
/* The model fingerprint (leank-formats(5)): FNV-1a over the config's sizes
 * and, when st is given, every tensor's name, dtype and shape, in the
 * checkpoint's order. Not the weights' values: hashing them costs about a
 * minute on an 8B model, and a model's layout is what masks depend on. */
uint64_t lk_config_fingerprint(const lk_config *c, const struct lk_st *st);

/* Inverse frequencies for RoPE (head_dim/2 values), with rope_scaling applied,
 * exactly as HF transformers computes them (in double, rounded to float);
 * *attn_scale receives the factor applied to cos/sin (1 except yarn). With
 * partial_rotary_factor < 1 only the first int(head_dim*prf)/2 are set, the
 * rest are 0. */
void lk_rope_inv_freq(const lk_config *c, float *inv_freq, float *attn_scale);

#endif
