/* generate.h - text generation over an engine (engine.h): prefill prompts,
 * then sample one token at a time until EOS or max_tokens, decoding text as
 * it goes. Many requests run together: each has its own sequence (dense or
 * with a plan); every step samples and decodes all active sequences in one
 * engine call, so the GPU batches them. leank-decode and leank-bench are
 * built on it. */
#ifndef LEANK_GENERATE_H
#define LEANK_GENERATE_H

#include <stdint.h>

#include "engine.h"
#include "tokenizer.h"

typedef struct {
    lk_engine *e;
    const lk_tokenizer *tok;
    int eos[10]; /* stop ids: the config's eos list and the tokenizer's eos */
    int n_eos;
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
    double prefill_s, decode_s; /* prefill_s 0 for a task that adopted another's prefill */
    int n_decode;               /* decode steps this request took part in */
    lk_seq_kv kv;               /* its KV cache at the end */
} lk_gen_result;

/* Optional callbacks while generating (any may be NULL). */
typedef struct {
    void (*prompt)(void *ctx, const int *ids, int n, const char *text, size_t len);
    void (*token)(void *ctx, int id, const char *piece, size_t len); /* each non-EOS token, its new text */
    void (*end)(void *ctx, const char *piece, size_t len);           /* text held back to the end */
    void *ctx;
} lk_gen_stream;

/* One request of a batch. */
typedef struct {
    lk_gen_request q;
    const lk_plan *plan;      /* NULL: dense cache */
    int adopt;                /* -1, or the index of an earlier dense task with the same prompt whose
                                 prefill this one takes (LeanK prefills densely: bitwise the same) */
    const lk_gen_stream *out; /* may be NULL */
    lk_gen_result r;          /* filled by lk_gen_run; lk_gen_result_free it */
    /* private */
    lk_seq *seq;
    lk_tok_stream ts;
    int active;
} lk_gen_task;

void lk_generator_init(lk_generator *g, lk_engine *e, const lk_tokenizer *tok);

/* Positions a request needs: the prompt plus max_tokens - 1, capped at the
 * model's context (or the prompt, if longer); generation stops there as at
 * max_tokens. */
int lk_gen_positions(const lk_generator *g, const lk_gen_request *q);

/* Runs n tasks together: every sequence is made first (so a batch that does
 * not fit fails before any work), then the prompts are prefilled (or
 * adopted) one by one, then all decode in lock step. */
int lk_gen_run(const lk_generator *g, lk_gen_task *t, int n, lk_err *err);

/* One request (lk_gen_run of one task). */
int lk_generate(const lk_generator *g, const lk_gen_request *q, const lk_plan *plan, const lk_gen_stream *out,
                lk_gen_result *r, lk_err *err);
void lk_gen_result_free(lk_gen_result *r);

#endif
