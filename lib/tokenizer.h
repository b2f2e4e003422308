/* tokenizer.h - Hugging Face tokenizer.json: byte-level BPE (Llama-3, Qwen,
 * GPT-2 style) and SentencePiece-style BPE (Llama-2/Mistral, stories260K). */
#ifndef LEANK_TOKENIZER_H
#define LEANK_TOKENIZER_H

#include "util.h"

typedef struct lk_tokenizer lk_tokenizer;

/* path: a tokenizer.json or a model directory containing one. */
int lk_tok_load(lk_tokenizer **out, const char *path, lk_err *err);
void lk_tok_free(lk_tokenizer *t);

int lk_tok_vocab_size(const lk_tokenizer *t); /* includes added tokens */
/* Stable fingerprint of the vocabulary, merges and special tokens (to refuse
 * samples made with another tokenizer). */
uint64_t lk_tok_fingerprint(const lk_tokenizer *t);

int lk_tok_bos(const lk_tokenizer *t); /* -1 if none */
int lk_tok_eos(const lk_tokenizer *t); /* -1 if none */
/* Id of a token's exact string (added/special tokens included), -1 if none. */
int lk_tok_id(const lk_tokenizer *t, const char *token);

/* Encode UTF-8 text. add_special: apply the post-processor's BOS (as HF
 * encode(add_special_tokens=True) does). Added/special tokens appearing in
 * the text are matched before BPE. Returns the number of ids written to
 * *ids (allocated / grown with lk_realloc; *cap holds its capacity). Invalid
 * UTF-8 is an error. */
int lk_tok_encode(const lk_tokenizer *t, const char *text, size_t len, int add_special,
                  int **ids, size_t *n, size_t *cap, lk_err *err);

/* Decode ids to UTF-8 text, as HF decode(skip_special_tokens=skip_special)
 * does. Result appended to *out (NUL-terminated; grown with lk_realloc). */
int lk_tok_decode(const lk_tokenizer *t, const int *ids, size_t n, int skip_special,
                  char **out, size_t *len, size_t *cap, lk_err *err);

/* Streaming decode for generation: bytes of one token appended to out, with
 * the state needed to finish partial UTF-8 sequences and the SentencePiece
 * leading-space rule. Pass prev = previous id or -1. */
const char *lk_tok_piece(const lk_tokenizer *t, int id); /* raw vocabulary string */

#endif
