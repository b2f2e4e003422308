/* tokenizer.h - Hugging Face tokenizer.json: byte-level BPE (Llama-3, Qwen,
 * GPT-2 style) and SentencePiece-style BPE (Llama-2/Mistral, stories260K). */
#ifndef LEANK_TOKENIZER_H
#define LEANK_TOKENIZER_H

#include "util.h"

typedef struct lk_tokenizer lk_tokenizer;

/* path: a tokenizer.json or a model directory containing one. Supported:
 * model BPE (byte_fallback, ignore_merges, unk/fuse_unk, merges as "a b" or
 * ["a", "b"]); normalizers NFC/NFD/NFKC/NFKD, Lowercase, Prepend, Replace
 * (string), Sequence; pre-tokenizers Split (regex or string, every
 * behavior, invert), ByteLevel, Metaspace, Sequence; post-processors
 * TemplateProcessing, ByteLevel, Bert/Roberta, Sequence; decoders ByteLevel,
 * ByteFallback, Fuse, Replace, Strip, Metaspace, Sequence. Anything else is
 * refused with a message (LK_EINPUT). Takes ~0.4 s for Llama-3's 9 MB file. */
int lk_tok_load(lk_tokenizer **out, const char *path, lk_err *err);
void lk_tok_free(lk_tokenizer *t);

int lk_tok_vocab_size(const lk_tokenizer *t); /* includes added tokens */
/* Stable fingerprint of the vocabulary, merges and special tokens (to refuse
 * samples made with another tokenizer). */
uint64_t lk_tok_fingerprint(const lk_tokenizer *t);

/* BOS: what the post-processor puts first (TemplateProcessing), else the
 * bos_token of a tokenizer_config.json beside the tokenizer.json; -1 if none
 * (Qwen). EOS: tokenizer_config.json's eos_token (Llama-3 Instruct:
 * <|eot_id|>, Qwen: <|im_end|>), else the first present of </s>,
 * <|end_of_text|>, <|endoftext|>, <|im_end|>, <|eot_id|>; -1 if none. A
 * generation loop may also stop on others: look them up with lk_tok_id. */
int lk_tok_bos(const lk_tokenizer *t);
int lk_tok_eos(const lk_tokenizer *t);
/* Id of a token's exact string (added/special tokens included), -1 if none. */
int lk_tok_id(const lk_tokenizer *t, const char *token);

/* Encode UTF-8 text. add_special: apply the post-processor's BOS (as HF
 * encode(add_special_tokens=True) does). Added/special tokens appearing in
 * the text are matched before BPE. On success returns 0 with the number of
 * ids in *n (the ids replace *ids' contents; *ids is allocated / grown with
 * realloc, *cap holds its capacity). Invalid UTF-8 is an error (LK_EINPUT,
 * the message gives the byte offset); out of memory, LK_ENOMEM with *n 0
 * (*ids still the caller's to free). Thread-safe: concurrent calls on one
 * tokenizer work (one of them uses the shared word cache). */
int lk_tok_encode(const lk_tokenizer *t, const char *text, size_t len, int add_special,
                  int **ids, size_t *n, size_t *cap, lk_err *err);

/* Decode ids to UTF-8 text, as HF decode(skip_special_tokens=skip_special)
 * does (lossy: invalid UTF-8 becomes U+FFFD). Result appended to *out at
 * *len (NUL-terminated; grown with realloc). An id outside the vocabulary
 * is an error (LK_EINPUT); out of memory, LK_ENOMEM; either way *out keeps
 * what it held (and stays the caller's to free). */
int lk_tok_decode(const lk_tokenizer *t, const int *ids, size_t n, int skip_special,
                  char **out, size_t *len, size_t *cap, lk_err *err);

const char *lk_tok_piece(const lk_tokenizer *t, int id); /* raw vocabulary string */

/* Streaming decode for generation. Push ids one at a time; each push appends
 * to *out (NUL-terminated; grown with realloc) only complete UTF-8: the
 * bytes of a character split over several tokens are held back until it is
 * complete, invalid bytes become U+FFFD (as HF's lossy decode does). The
 * SentencePiece leading-space strip applies to the first text of the stream.
 * The concatenation of all pushes and the final flush equals
 * lk_tok_decode(all ids, skip_special) (byte-fallback runs longer than 64
 * bytes excepted: they are let out as they come). Fields are private except
 * skip_special (default 1 after init: special tokens produce no text). */
typedef struct {
    int skip_special;       /* set after lk_tok_stream_init to change */
    int started;            /* some text was produced (leading-space strip done) */
    int npend;              /* bytes held back: an unfinished character, or a */
    int run_bad;            /* run of <0xNN> byte tokens (HF turns an invalid run */
    unsigned char pend[64]; /* into one U+FFFD per token, so it waits for its end) */
} lk_tok_stream;
void lk_tok_stream_init(lk_tok_stream *s);
/* Returns the number of bytes appended (0 is normal: special token or an
 * incomplete character), -1 for an id out of range, or -LK_ENOMEM when out
 * of memory (nothing appended either way; after -LK_ENOMEM the stream may
 * have lost held-back bytes: stop it). */
int lk_tok_stream_push(const lk_tokenizer *t, lk_tok_stream *s, int id, char **out,
                       size_t *len, size_t *cap);
/* End of stream: held-back bytes of an unfinished character become U+FFFD.
 * Returns the number of bytes appended, or -LK_ENOMEM (none). */
int lk_tok_stream_flush(const lk_tokenizer *t, lk_tok_stream *s, char **out, size_t *len,
                        size_t *cap);

/* Is id a special token (skipped by decode with skip_special)? */
int lk_tok_is_special(const lk_tokenizer *t, int id);

#endif
