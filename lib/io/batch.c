/* batch.c - parse one leank-decode --batch request (see batch.h). */
#include "batch.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* An integer field in [min, max]; absent keeps *v. */
static int get_int(const json_t *o, const char *key, json_int_t min, json_int_t max, json_int_t *v,
                   const char *where, lk_err *err) {
    json_t *x = json_object_get(o, key);
    if (!x) return 0;
    if (!json_is_integer(x) || json_integer_value(x) < min || json_integer_value(x) > max)
        return lk_seterr(err, LK_EINPUT, "%s: \"%s\" is not an integer in [%" JSON_INTEGER_FORMAT ", %"
                         JSON_INTEGER_FORMAT "]", where, key, min, max);
    *v = json_integer_value(x);
    return 0;
}

/* A number field in [min, max]; absent keeps *v. */
static int get_num(const json_t *o, const char *key, double min, double max, double *v, const char *where,
                   lk_err *err) {
    json_t *x = json_object_get(o, key);
    if (!x) return 0;
    if (!json_is_number(x) || !(json_number_value(x) >= min && json_number_value(x) <= max))
        return lk_seterr(err, LK_EINPUT, "%s: \"%s\" is not a number in [%g, %g]", where, key, min, max);
    *v = json_number_value(x);
    return 0;
}

/* A string field; absent keeps *v. */
static int get_str(const json_t *o, const char *key, const char **v, const char *where, lk_err *err) {
    json_t *x = json_object_get(o, key);
    if (!x) return 0;
    if (!json_is_string(x)) return lk_seterr(err, LK_EINPUT, "%s: \"%s\" is not a string", where, key);
    *v = json_string_value(x);
    return 0;
}

static int get_ids(lk_batch_req *r, const json_t *ids, int vocab_size, const char *where, lk_err *err) {
    size_t n = json_array_size(ids), i;
    json_t *x;
    if (n > (size_t)1 << 30) return lk_seterr(err, LK_EINPUT, "%s: %zu ids (expected at most 2^30)", where, n);
    if (!(r->ids = lk_alloc(n + 1, sizeof(int), "a request's ids", err))) return LK_ENOMEM;
    r->n_ids = (int)n;
    json_array_foreach(ids, i, x) {
        if (!json_is_integer(x) || json_integer_value(x) < 0 || json_integer_value(x) >= vocab_size)
            return lk_seterr(err, LK_EINPUT, "%s: ids[%zu] is not a token id in [0, %d)", where, i, vocab_size);
        r->ids[i] = (int)json_integer_value(x);
    }
    return 0;
}

int lk_batch_parse(lk_batch_req *r, const char *line, size_t len, const char *where, int vocab_size,
                   const lk_gen_request *defaults, const char *template, const char *system, lk_err *err) {
    memset(r, 0, sizeof *r);
    r->q = *defaults;
    r->q.prompt = NULL;
    r->template = template;
    r->system = system;
    json_error_t je;
    json_t *o = json_loadb(line, len, JSON_REJECT_DUPLICATES, &je);
    r->json = o;
    if (!json_is_object(o))
        return lk_seterr(err, LK_EINPUT, "%s: not a JSON object (%s)", where, o ? "other JSON value" : je.text);
    json_int_t max_tokens = r->q.max_tokens, top_k = r->q.top_k, seed = (json_int_t)(r->q.seed & INT64_MAX);
    double temperature = r->q.temperature, top_p = r->q.top_p;
    int rc;
    if ((rc = get_int(o, "max_tokens", 0, 1000000, &max_tokens, where, err)) ||
        (rc = get_num(o, "temperature", 0, 100, &temperature, where, err)) ||
        (rc = get_int(o, "top_k", 0, 1 << 30, &top_k, where, err)) ||
        (rc = get_num(o, "top_p", 0, 1, &top_p, where, err)) ||
        (rc = get_int(o, "seed", 0, INT64_MAX, &seed, where, err)) ||
        (rc = get_str(o, "template", &r->template, where, err)) ||
        (rc = get_str(o, "system", &r->system, where, err)))
        return rc;
    r->q.max_tokens = (int)max_tokens;
    r->q.temperature = (float)temperature;
    r->q.top_k = (int)top_k;
    if (!(top_p > 0)) /* nucleus of nothing: 1 = off, as on the command line */
        return lk_seterr(err, LK_EINPUT, "%s: \"top_p\" is 0 (expected 0 < top_p <= 1; 1 = off)", where);
    r->q.top_p = (float)top_p;
    if (json_object_get(o, "seed")) r->q.seed = (uint64_t)seed;
    json_t *ids = json_object_get(o, "ids"), *prompt = json_object_get(o, "prompt");
    if (json_is_array(ids) && !prompt) return get_ids(r, ids, vocab_size, where, err);
    if (json_is_string(prompt) && !ids) {
        r->prompt = json_string_value(prompt);
        return 0;
    }
    return lk_seterr(err, LK_EINPUT, "%s: request needs \"prompt\" (a string) or \"ids\" (an array), not both",
                     where);
}

void lk_batch_req_free(lk_batch_req *r) {
    json_decref(r->json);
    free(r->ids);
    memset(r, 0, sizeof *r);
}
