/* batch.h - one request of leank-decode --batch (a JSON object on one line).
 * Fields (each optional but one of prompt / ids): "prompt" a string, "ids" an
 * array of token ids in [0, vocab), "max_tokens" an integer in [0, 1000000],
 * "temperature" a number in [0, 100], "top_k" an integer in [0, 2^30],
 * "top_p" a number in [0, 1], "seed" a non-negative integer, "template" and
 * "system" strings. A field of the wrong type or out of range is refused
 * (never truncated into range); absent fields keep the defaults. */
#ifndef LEANK_BATCH_H
#define LEANK_BATCH_H

#include "generate.h"
#include "util.h"

typedef struct {
    lk_gen_request q;     /* defaults with the request's sampling fields; q.prompt unset */
    const char *template; /* the request's, else the default given */
    const char *system;   /* the request's, else the default given (may be NULL) */
    const char *prompt;   /* "prompt", or NULL when "ids" are given */
    int *ids;             /* (n_ids) "ids", or NULL */
    int n_ids;
    void *json;           /* owns the strings above */
} lk_batch_req;

/* Parse line[len]; where ("FILE:LINE") prefixes messages. 0, LK_EINPUT or
 * LK_ENOMEM. */
int lk_batch_parse(lk_batch_req *r, const char *line, size_t len, const char *where, int vocab_size,
                   const lk_gen_request *defaults, const char *template, const char *system, lk_err *err);
void lk_batch_req_free(lk_batch_req *r);

#endif
