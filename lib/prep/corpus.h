/* corpus.h - haystack text: documents streamed from a corpus, split into
 * sentences. A corpus is one of
 *   FILE.json               one JSON object with a "text" string (RULER's
 *                           PaulGrahamEssays.json), or an array of them
 *   FILE.jsonl[.zst]        JSON lines, each an object with a "text" string,
 *                           plain or zstd-compressed (booksum layout)
 *   DIR                     every *.txt file in it, in name order
 *   FILE.txt (other names)  one plain UTF-8 document
 * Documents are read one at a time; nothing ahead of the caller is kept. */
#ifndef LEANK_CORPUS_H
#define LEANK_CORPUS_H

#include <stddef.h>

#include "util.h"

typedef struct lk_corpus lk_corpus;

int lk_corpus_open(lk_corpus **c, const char *path, lk_err *err);
/* Next document: 1 = *text (valid until the next call; UTF-8, NUL-terminated)
 * and *len set, 0 = end of corpus, < 0 = -code with err set (bad JSON, no
 * "text", invalid UTF-8, truncated zstd, read error). */
int lk_corpus_next(lk_corpus *c, const char **text, size_t *len, lk_err *err);
const char *lk_corpus_path(const lk_corpus *c);
void lk_corpus_close(lk_corpus *c);

/* Sentence splitter: the next sentence of text[*pos..len), whitespace-trimmed,
 * as [*start, *end); advances *pos. A sentence ends after . ! or ? (and any
 * closing quotes or brackets) followed by whitespace, at a blank line, or
 * after max_bytes (cut at whitespace). Returns 0 when no sentence is left. */
int lk_next_sentence(const char *text, size_t len, size_t *pos, size_t *start, size_t *end,
                     size_t max_bytes);

/* 1 if s[0..n) is valid UTF-8; else 0 and *bad = offset of the first bad byte. */
int lk_utf8_valid(const char *s, size_t n, size_t *bad);

#endif
