/* samples.h - the samples file: what leank-prep writes and leank-train (and
 * the evaluation tools) read. Streaming both ways: a writer appends one sample
 * at a time, a reader hands back one sample at a time; neither holds the file.
 *
 * Layout (little-endian):
 *   plain header   "LEANKSMP" (8 bytes), u32 version (1), u32 flags (0),
 *                  u64 tokenizer fingerprint (lk_tok_fingerprint),
 *                  u32 P, P bytes of JSON: the generation parameters
 *   one zstd frame (content checksum on) holding records:
 *     u32 kind = 1 (sample), u32 body length, body:
 *       u8 L, L bytes task name
 *       u32 target length (tokens), i32 question position (token index in
 *       ctx where the question starts, -1 if none)
 *       u32 n_ctx, n_ctx x u32 context (prompt) token ids
 *       u32 n_ans, n_ans x u32 supervised answer token ids
 *       u32 n_depths, n_depths x f64 needle depths (fractions of the haystack)
 *       u32 n_refs, n_refs x (u32 len, bytes): reference answers (UTF-8)
 *       u32 n_needles, n_needles x (u32 len, bytes): inserted needle texts
 *     u32 kind = 2 (end), u64 number of samples
 * A file without the end record, or with bytes after the frame, is refused. */
#ifndef LEANK_SAMPLES_H
#define LEANK_SAMPLES_H

#include <stdint.h>
#include <stdio.h>

#include "util.h"

#define LK_SAMPLES_MAGIC "LEANKSMP"
#define LK_SAMPLES_VERSION 1u
#define LK_SAMPLES_TASK_MAX 47

typedef struct {
    uint32_t version;
    uint64_t tok_fingerprint; /* refuse samples made with another tokenizer */
    const char *params;       /* NUL-terminated JSON object (seed, tasks, lengths, ...) */
} lk_samples_header;

/* One sample. The reader owns the arrays (valid until the next
 * lk_samples_next or lk_samples_close); a writer only reads them. */
typedef struct {
    char task[LK_SAMPLES_TASK_MAX + 1]; /* "train-essay", "niah_single_1", ... */
    int target_len;                     /* requested length: n_ctx + n_ans is within 1 % of it */
    int question_pos;                   /* ctx index where the question starts, -1 if none */
    int *ctx;                           /* (n_ctx) prompt token ids, chat template included */
    int n_ctx;
    int *ans;                           /* (n_ans) supervised answer ids, following ctx */
    int n_ans;
    double *depths;                     /* (n_depths) needle depths in [0, 1] of the haystack */
    int n_depths;
    char **refs;                        /* (n_refs) reference answers for scoring */
    int n_refs;
    char **needles;                     /* (n_needles) inserted needle texts, haystack order */
    int n_needles;
} lk_sample;

/* ---- writer ---- */
typedef struct lk_samples_writer lk_samples_writer;
/* Starts a file on f (an lk_out's FILE, or any stream); name is for messages. */
int lk_samples_write_open(lk_samples_writer **w, FILE *f, const char *name, uint64_t tok_fingerprint,
                          const char *params_json, lk_err *err);
int lk_samples_write(lk_samples_writer *w, const lk_sample *s, lk_err *err);
/* Writes the end record and finishes the frame; frees w (f stays open). */
int lk_samples_write_close(lk_samples_writer *w, lk_err *err);
/* Frees w without finishing the file (after an error). */
void lk_samples_write_abort(lk_samples_writer *w);

/* ---- reader ---- */
typedef struct lk_samples_reader lk_samples_reader;
/* path "-" reads stdin. Checks magic, version and the plain header. */
int lk_samples_open(lk_samples_reader **r, const char *path, lk_err *err);
const lk_samples_header *lk_samples_hdr(const lk_samples_reader *r);
/* 1 = got one (s filled, arrays owned by r), 0 = clean end of file (end
 * record seen, frame complete, nothing after it), < 0 = error: -code with
 * err set ("FILE: truncated ...", "FILE: corrupt ..."). */
int lk_samples_next(lk_samples_reader *r, lk_sample *s, lk_err *err);
/* Number of samples read so far. */
long lk_samples_index(const lk_samples_reader *r);
void lk_samples_close(lk_samples_reader *r);

#endif
