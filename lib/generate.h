/* generate.h - text generation over the CPU engine: prefill a prompt, then
 * sample one token at a time until EOS or max_tokens, decoding text as it
 * goes. One lk_generator per thread: it holds the run state (activations and
 * KV cache, reused across requests); the model, tokenizer and mask are
 * shared read-only. leank-decode and leank-bench accuracy are built on it. */
#ifndef LEANK_GENERATE_H
#define LEANK_GENERATE_H

#include <stdint.h>

#include "mask.h"
#include "model.h"
#include "tokenizer.h"

typedef struct {
    const lk_model *model;
    const lk_tokenizer *tok;
    const lk_mask *mask; /* NULL: dense cache */
    int sink, recent;    /* full-width windows with a mask */
    int eos[10];         /* stop ids: the config's eos list and the tokenizer's eos */
    int n_eos;
    lk_state state;
    int built; /* state allocated */
    const char *progress; /* non-NULL: prefills of 1024+ tokens show their layers on stderr under this name */
} lk_generator;

typedef struct {
    const int *prompt; /* ids */
    int n_prompt;
    int max_tokens;
    float temperature, top_p; /* temperature 0 = greedy */
    int top_k;
    uint64_t seed;
} lk_gen_request;

typedef struct {
    int *ids; /* generated ids (EOS included when it stopped there) */
    int n;
    char *text; /* generated text (special tokens skipped), NUL-terminated */
    size_t len, cap;
    int stopped_eos;
    double prefill_s, decode_s;
    int n_decode; /* single-token forward calls */
    size_t kv_bytes, kv_dense;
} lk_gen_result;

/* Optional callbacks while generating (any may be NULL). */
typedef struct {
    void (*prompt)(void *ctx, const int *ids, int n, const char *text, size_t len);
    void (*token)(void *ctx, int id, const char *piece, size_t len); /* each non-EOS token, its new text */
    void (*end)(void *ctx, const char *piece, size_t len);           /* text held back to the end */
    void *ctx;
} lk_gen_stream;

void lk_generator_init(lk_generator *g, const lk_model *m, const lk_tokenizer *tok, const lk_mask *mask,
                       int sink, int recent);
void lk_generator_free(lk_generator *g);
/* Positions are the prompt plus max_tokens - 1, capped at the model's context
 * (or the prompt, if longer): generation stops there as at max_tokens. */
int lk_generate(lk_generator *g, const lk_gen_request *q, const lk_gen_stream *out, lk_gen_result *r,
                lk_err *err);
void lk_gen_result_free(lk_gen_result *r);

/* lk_generate in steps: prefill the prompt, then decode from it. Between the
 * two, lk_gen_adopt gives a masked generator the state of a dense one that
 * has just prefilled the same prompt: LeanK prefills densely, so this is
 * bitwise what its own prefill would give (runs of one prompt with several
 * masks then share one prefill). */
int lk_gen_prefill(lk_generator *g, const lk_gen_request *q, lk_err *err);
int lk_gen_adopt(lk_generator *g, const lk_generator *dense_src, const lk_gen_request *q, lk_err *err);
int lk_gen_decode(lk_generator *g, const lk_gen_request *q, const lk_gen_stream *out, lk_gen_result *r,
                  lk_err *err);

#endif
