/* prep.h - sample generators: LeanK training data (uuid / essay haystacks),
 * DuoAttention's multi-passkey task, and RULER-style evaluation tasks. Every
 * sample is sized in the tokenizer's tokens so that prompt + answer is within
 * a few tokens of (never above) the requested length, and is a pure function
 * of (seed, task, length, index) and the inputs. */
#ifndef LEANK_PREP_H
#define LEANK_PREP_H

#include "samples.h"
#include "tokenizer.h"
#include "util.h"

typedef struct {
    const char *name;
    const char *what;  /* one line for --help and the man page */
    int needs_corpus;  /* haystack from --corpus */
    int needs_words;   /* keys or words from the word lists */
} lk_prep_task;

extern const lk_prep_task lk_prep_tasks[];
extern const int lk_prep_n_tasks;
/* Task by name, NULL if unknown. "train" (alternating train-uuid and
 * train-essay) is also accepted by lk_prep_sample. */
const lk_prep_task *lk_prep_find_task(const char *name);

typedef struct {
    uint64_t seed;
    const char *template_name; /* chat template: llama3, qwen, none */
    const char *const *corpora;
    int n_corpora;
    const char *words;         /* word-list directory or file; NULL = system dictionary */
    long pool_tokens;          /* tokens of each corpus kept for haystacks */
} lk_prep_opts;

typedef struct lk_prep lk_prep;

/* Loads the word lists and reads each corpus until pool_tokens of its
 * sentences are tokenized (or it ends). tok must outlive p. */
int lk_prep_new(lk_prep **p, const lk_tokenizer *tok, const lk_prep_opts *o, lk_err *err);
void lk_prep_free(lk_prep *p);
/* 1 if the word lists were found (tasks with needs_words require them). */
int lk_prep_have_words(const lk_prep *p);

/* Per-thread generator state (buffers reused across samples). */
typedef struct lk_prep_gen lk_prep_gen;
int lk_prep_gen_new(lk_prep_gen **g, lk_prep *p, lk_err *err); /* 0 or LK_ENOMEM */
void lk_prep_gen_free(lk_prep_gen *g);

/* Makes sample number index of task at target_len tokens into *s (arrays
 * owned by g, valid until its next call). LK_EUSAGE if the length cannot hold
 * the task's question, needles and answer. */
int lk_prep_sample(lk_prep_gen *g, const char *task, int target_len, long index, lk_sample *s, lk_err *err);

#endif
