/* tok_jsonl - driver for dev/bench/hf_fuzz.py: lib/tokenizer on many strings
 * in one process. stdin: JSON lines ["text", add_special] (or a JSON array
 * of ids: decode only); stdout: one JSON object a line, {"ids": [...],
 * "dec": decode(skip_special), "dec_all": decode(keep special),
 * "stream": streaming decode(skip_special)} or {"err": "..."}.
 * Build: make && cc -std=c11 -D_GNU_SOURCE -Ilib/io -Ilib/tokenizer -Icmd \
 *   dev/bench/tok_jsonl.c cmd/cli.c lib/libleank.a -Wl,-Bstatic -lyaml -lutf8proc \
 *   -Wl,-Bdynamic -ljansson -lpcre2-8 -lzstd -lopenblas -lm -lpthread -o tok_jsonl */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"
#include "tokenizer.h"

static json_t *decode(const lk_tokenizer *t, const int *ids, size_t n) {
    json_t *o = json_object(), *a = json_array();
    char *out = NULL;
    size_t len = 0, cap = 0;
    lk_err err = {0};
    for (size_t i = 0; i < n; i++) json_array_append_new(a, json_integer(ids[i]));
    json_object_set_new(o, "ids", a);
    for (int skip = 1; skip >= 0; skip--) {
        len = 0;
        if (lk_tok_decode(t, ids, n, skip, &out, &len, &cap, &err)) {
            json_object_set_new(o, "err", json_string(err.msg));
            break;
        }
        json_object_set_new(o, skip ? "dec" : "dec_all", json_stringn(out, len));
    }
    lk_tok_stream st;
    lk_tok_stream_init(&st);
    len = 0;
    for (size_t i = 0; i < n; i++) lk_tok_stream_push(t, &st, ids[i], &out, &len, &cap);
    lk_tok_stream_flush(t, &st, &out, &len, &cap);
    json_object_set_new(o, "stream", json_stringn(out, len));
    free(out);
    return o;
}

int main(int argc, char **argv) {
    lk_progname = "tok_jsonl";
    if (argc != 2) lk_die(LK_EUSAGE, "usage: tok_jsonl TOKENIZER < JSONL");
    lk_err err = {0};
    lk_tokenizer *t;
    if (lk_tok_load(&t, argv[1], &err)) lk_fail(&err);
    char *line = NULL;
    size_t lcap = 0, n = 0, cap = 0;
    int *ids = NULL;
    while (getline(&line, &lcap, stdin) > 0) {
        json_error_t je;
        json_t *j = json_loads(line, JSON_ALLOW_NUL, &je), *o;
        if (!json_is_array(j)) lk_die(LK_EINPUT, "<stdin>: line %d: %s", je.line, je.text);
        if (json_is_string(json_array_get(j, 0))) {
            json_t *s = json_array_get(j, 0);
            if (lk_tok_encode(t, json_string_value(s), json_string_length(s),
                              json_is_true(json_array_get(j, 1)), &ids, &n, &cap, &err)) {
                o = json_object();
                json_object_set_new(o, "err", json_string(err.msg));
            } else
                o = decode(t, ids, n);
        } else {
            n = json_array_size(j);
            if (n > cap) ids = lk_realloc(ids, (cap = n) * sizeof(int));
            for (size_t i = 0; i < n; i++) ids[i] = (int)json_integer_value(json_array_get(j, i));
            o = decode(t, ids, n);
        }
        char *s = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII);
        puts(s);
        free(s);
        json_decref(o);
        json_decref(j);
    }
    free(line);
    free(ids);
    lk_tok_free(t);
    return 0;
}
