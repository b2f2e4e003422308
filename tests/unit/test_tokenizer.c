/* test_tokenizer - lib/tokenizer against reference ids from HF tokenizers and
 * llama.cpp's test vectors (../shared), plus decode, streaming and errors. */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "t.h"
#include "tokenizer.h"
#include "util.h"

static char path[8192];
static const char *P(const char *shared, const char *rel) {
    snprintf(path, sizeof path, "%s/%s", shared, rel);
    return path;
}

static lk_tokenizer *load(const char *p) {
    lk_err err = {0};
    lk_tokenizer *t = NULL;
    double t0 = lk_now();
    int rc = lk_tok_load(&t, p, &err);
    CHECKF(rc == 0, "%s", err.msg);
    if (t) printf("loaded %s: %d ids in %.0f ms\n", p, lk_tok_vocab_size(t), 1e3 * (lk_now() - t0));
    return t;
}

/* decode ids and compare with text; also through the streaming decoder */
static void check_roundtrip(lk_tokenizer *t, const int *ids, size_t n, const char *text, size_t len,
                            const char *what) {
    char *out = NULL;
    size_t olen = 0, ocap = 0;
    lk_err err = {0};
    CHECKF(lk_tok_decode(t, ids, n, 1, &out, &olen, &ocap, &err) == 0, "%s", err.msg);
    CHECKF(olen == len && !memcmp(out, text, len), "%s: decode differs (%zu vs %zu bytes)", what, olen, len);
    lk_tok_stream st;
    lk_tok_stream_init(&st);
    size_t slen = 0;
    for (size_t i = 0; i < n; i++) lk_tok_stream_push(t, &st, ids[i], &out, &slen, &ocap);
    lk_tok_stream_flush(t, &st, &out, &slen, &ocap);
    CHECKF(slen == len && !memcmp(out, text, len), "%s: stream decode differs (%zu vs %zu bytes)", what,
           slen, len);
    free(out);
}

/* llama.cpp test-tokenizer-0 vectors: strings separated by
 * "\n__ggml_vocab_test__\n", one line of ids (no BOS) per string. The shared
 * copies have CRLF line ends: CRLF -> LF first (no string contains CR). */
static char *read_lf(const char *p, size_t *len) {
    char *d;
    lk_err err = {0};
    if (lk_read_file(p, 1u << 30, "test data", &d, len, &err)) {
        CHECKF(0, "%s", err.msg);
        return NULL;
    }
    size_t j = 0;
    for (size_t i = 0; i < *len; i++)
        if (!(d[i] == '\r' && i + 1 < *len && d[i + 1] == '\n')) d[j++] = d[i];
    d[j] = 0;
    *len = j;
    return d;
}

static void check_vectors(const char *shared, lk_tokenizer *t, const char *name) {
    char inp[8192], outp[8192];
    snprintf(inp, sizeof inp, "%s/data/tokenizers/vectors/%s.inp", shared, name);
    snprintf(outp, sizeof outp, "%s/data/tokenizers/vectors/%s.out", shared, name);
    size_t il, ol;
    char *in = read_lf(inp, &il), *out = read_lf(outp, &ol);
    if (!in || !out) return;
    static const char sep[] = "\n__ggml_vocab_test__\n";
    char *s = in, *line = out;
    int *ids = NULL, ncase = 0, nok = 0;
    size_t n = 0, cap = 0;
    while (*s) {
        char *e = strstr(s, sep);
        if (!e) break;
        char *eol = strchr(line, '\n');
        if (!eol) break;
        *eol = 0;
        lk_err err = {0};
        int rc = lk_tok_encode(t, s, (size_t)(e - s), 0, &ids, &n, &cap, &err);
        CHECKF(rc == 0, "%s", err.msg);
        /* expected ids */
        int want[4096], nw = 0;
        for (char *q = line; *q;) {
            char *end;
            long v = strtol(q, &end, 10);
            if (end == q) break;
            want[nw++] = (int)v;
            q = end;
        }
        int same = (int)n == nw && !memcmp(ids, want, n * sizeof(int));
        CHECKF(same, "%s case %d '%.*s': got %zu ids, expected %d", name, ncase, (int)(e - s), s, n, nw);
        if (!same) {
            fprintf(stderr, "  got:");
            for (size_t i = 0; i < n; i++) fprintf(stderr, " %d", ids[i]);
            fprintf(stderr, "\n  exp: %s\n", line);
        }
        nok += same;
        check_roundtrip(t, ids, n, s, (size_t)(e - s), name);
        ncase++;
        s = e + strlen(sep);
        line = eol + 1;
    }
    printf("%s: %d/%d vector strings match\n", name, nok, ncase);
    CHECKF(ncase == 46, "%s: %d strings parsed, expected 46", name, ncase);
    free(ids);
    free(in);
    free(out);
}

static void check_excerpt(const char *shared, lk_tokenizer *t, const char *idsfile) {
    char *text, *raw;
    size_t tl, rl;
    lk_err err = {0};
    CHECK(lk_read_file(P(shared, "data/tokenizers/vectors/pg-excerpt.txt"), 1u << 30, "text", &text, &tl, &err) == 0);
    CHECK(lk_read_file(P(shared, idsfile), 1u << 30, "ids", &raw, &rl, &err) == 0);
    int *ids = NULL;
    size_t n = 0, cap = 0;
    double t0 = lk_now();
    CHECKF(lk_tok_encode(t, text, tl, 0, &ids, &n, &cap, &err) == 0, "%s", err.msg);
    double dt = lk_now() - t0;
    size_t nw = rl / 4, first = n < nw ? n : nw;
    for (size_t i = 0; i < n && i < nw; i++) {
        uint32_t v;
        memcpy(&v, raw + 4 * i, 4);
        if ((int)v != ids[i]) {
            first = i;
            break;
        }
    }
    CHECKF(n == nw && first == n, "%s: %zu ids (expected %zu), first difference at %zu", idsfile, n, nw, first);
    printf("%s: %zu ids, encode %.1f ms\n", idsfile, n, 1e3 * dt);
    check_roundtrip(t, ids, n, text, tl, idsfile);
    free(ids);
    free(text);
    free(raw);
}

/* random id sequences (mostly single-byte tokens, to split characters):
 * streaming equals whole decode */
static void check_stream_random(lk_tokenizer *t, const char *name) {
    uint64_t x = 88172645463325252ULL;
    int ids[40], nbad = 0, V = lk_tok_vocab_size(t);
    char *a = NULL, *b = NULL;
    size_t al = 0, ac = 0, bl = 0, bc = 0;
    for (int r = 0; r < 500; r++) {
        int n = r % 40;
        for (int i = 0; i < n; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            ids[i] = (int)(x % 10 < 7 ? (x >> 8) % 300 % V : (x >> 8) % V);
        }
        lk_err err = {0};
        al = bl = 0;
        CHECK(lk_tok_decode(t, ids, n, 1, &a, &al, &ac, &err) == 0);
        lk_tok_stream st;
        lk_tok_stream_init(&st);
        for (int i = 0; i < n; i++) lk_tok_stream_push(t, &st, ids[i], &b, &bl, &bc);
        lk_tok_stream_flush(t, &st, &b, &bl, &bc);
        nbad += !(al == bl && !memcmp(a, b, al));
    }
    CHECKF(nbad == 0, "%s: %d of 500 random id sequences stream-decode differently", name, nbad);
    free(a);
    free(b);
}

static void check_stories(const char *shared) {
    lk_tokenizer *t = load(P(shared, "models/stories260K"));
    if (!t) return;
    check_stream_random(t, "stories260K");
    CHECK(lk_tok_bos(t) == 1);
    CHECK(lk_tok_eos(t) == 2);
    json_error_t je;
    json_t *root = json_load_file(P(shared, "models/stories260K/expected.json"), 0, &je), *c;
    CHECKF(root != NULL, "expected.json: %s", je.text);
    size_t i, ncase = 0;
    int *ids = NULL;
    size_t n = 0, cap = 0;
    json_array_foreach(json_object_get(root, "tokenizer"), i, c) {
        const char *text = json_string_value(json_object_get(c, "text"));
        json_t *want = json_object_get(c, "ids");
        lk_err err = {0};
        CHECKF(lk_tok_encode(t, text, strlen(text), 1, &ids, &n, &cap, &err) == 0, "%s", err.msg);
        int same = n == json_array_size(want);
        for (size_t k = 0; same && k < n; k++) same = ids[k] == json_integer_value(json_array_get(want, k));
        CHECKF(same, "stories260K '%s': ids differ", text);
        check_roundtrip(t, ids, n, text, strlen(text), "stories260K");
        ncase++;
    }
    CHECK(ncase == 5);
    /* byte fallback tokens and the leading space in streaming */
    char *out = NULL;
    size_t len = 0, ocap = 0;
    lk_err err = {0};
    int bytes[] = {1, lk_tok_id(t, "<0xF0>"), lk_tok_id(t, "<0x9F>"), lk_tok_id(t, "<0xA6>"), lk_tok_id(t, "<0x99>")};
    CHECK(lk_tok_decode(t, bytes, 5, 1, &out, &len, &ocap, &err) == 0 && !strcmp(out, "\xF0\x9F\xA6\x99"));
    len = 0; /* an invalid run: one U+FFFD per byte token, as HF's ByteFallback */
    CHECK(lk_tok_decode(t, bytes + 1, 2, 1, &out, &len, &ocap, &err) == 0 &&
          !strcmp(out, "\xEF\xBF\xBD\xEF\xBF\xBD"));
    len = 0;
    CHECK(lk_tok_decode(t, bytes, 1, 0, &out, &len, &ocap, &err) == 0 && !strcmp(out, "<s>"));
    free(out);
    free(ids);
    json_decref(root);
    lk_tok_free(t);
}

/* stories260K rewritten to a Metaspace pre-tokenizer (prepend "first",
 * split) with lstrip/rstrip and single_word added tokens; ids and decodes
 * from HF tokenizers 0.23.3 on the same JSON */
static void check_metaspace_flags(const char *shared) {
    json_error_t je;
    json_t *j = json_load_file(P(shared, "models/stories260K/tokenizer.json"), 0, &je), *a;
    if (!j) {
        CHECKF(0, "stories260K tokenizer.json: %s", je.text);
        return;
    }
    json_object_set_new(j, "normalizer", json_null());
    json_object_set_new(j, "pre_tokenizer", json_pack("{s:s, s:s, s:s, s:b}", "type", "Metaspace", "replacement",
                                                      "\xE2\x96\x81", "prepend_scheme", "first", "split", 1));
    size_t i;
    json_array_foreach(json_object_get(j, "added_tokens"), i, a) {
        const char *c = json_string_value(json_object_get(a, "content"));
        if (!strcmp(c, "</s>")) {
            json_object_set_new(a, "lstrip", json_true());
            json_object_set_new(a, "rstrip", json_true());
        }
        if (!strcmp(c, "<unk>")) json_object_set_new(a, "single_word", json_true());
    }
    char dir[] = "/tmp/lk-tok-ms-XXXXXX", p[64];
    CHECK(mkdtemp(dir) != NULL);
    snprintf(p, sizeof p, "%s/tokenizer.json", dir);
    CHECK(json_dump_file(j, p, 0) == 0);
    json_decref(j);
    lk_tokenizer *t = load(dir);
    unlink(p);
    rmdir(dir);
    if (!t) return;
    static const struct {
        const char *text, *dec;
        int ids[12];
    } cases[] = {
        {"Hello  world</s>", "Hello  world", {1, 346, 306, 414, 410, 263, 304, 341, 2, -1}},
        {"Hi   </s>   there", "Hithere", {1, 320, 417, 2, 413, 260, 276, -1}},
        {"a<unk>b <unk> c", "a<unk>b  c", {1, 261, 504, 379, 433, 505, 430, 410, 0, 280, -1}},
        {"<s>Once upon", "Once upon", {1, 1, 441, 416, 331, 407, -1}},
    };
    int *ids = NULL;
    size_t n = 0, cap = 0;
    char *out = NULL;
    size_t len = 0, ocap = 0;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        lk_err err = {0};
        CHECKF(lk_tok_encode(t, cases[c].text, strlen(cases[c].text), 1, &ids, &n, &cap, &err) == 0, "%s", err.msg);
        size_t k = 0;
        while (cases[c].ids[k] >= 0) k++;
        CHECKF(n == k && !memcmp(ids, cases[c].ids, k * sizeof(int)), "metaspace case '%s': %zu ids", cases[c].text, n);
        len = 0;
        CHECK(lk_tok_decode(t, ids, n, 1, &out, &len, &ocap, &err) == 0);
        CHECKF(!strcmp(out, cases[c].dec), "metaspace decode '%s': '%s'", cases[c].text, out);
    }
    free(ids);
    free(out);
    lk_tok_free(t);
}

/* two threads encoding at once (one gets the shared word cache, the other
 * a private work area) give the same ids as one */
typedef struct {
    lk_tokenizer *t;
    const char *text;
    size_t len;
    int *want;
    size_t nwant;
    int bad;
} thr_arg;
static void *thr_encode(void *p) {
    thr_arg *a = p;
    int *ids = NULL;
    size_t n = 0, cap = 0;
    for (int r = 0; r < 20; r++) {
        lk_err err = {0};
        if (lk_tok_encode(a->t, a->text, a->len, 0, &ids, &n, &cap, &err) || n != a->nwant ||
            memcmp(ids, a->want, n * sizeof(int)))
            a->bad++;
    }
    free(ids);
    return NULL;
}
static void check_threads(const char *shared, lk_tokenizer *t) {
    char *text;
    size_t len;
    lk_err err = {0};
    if (lk_read_file(P(shared, "data/tokenizers/vectors/pg-excerpt.txt"), 1u << 30, "text", &text, &len, &err)) return;
    if (len > 30000) len = 30000;
    while (len && ((unsigned char)text[len] & 0xC0) == 0x80) len--; /* whole characters */
    int *want = NULL;
    size_t nw = 0, cap = 0;
    CHECK(lk_tok_encode(t, text, len, 0, &want, &nw, &cap, &err) == 0);
    thr_arg a[2] = {{t, text, len, want, nw, 0}, {t, text, len, want, nw, 0}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++) pthread_create(&th[i], NULL, thr_encode, &a[i]);
    for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
    CHECKF(a[0].bad + a[1].bad == 0, "concurrent encodes differ: %d, %d", a[0].bad, a[1].bad);
    free(want);
    free(text);
}

static void check_llama3_special(lk_tokenizer *t) {
    CHECK(lk_tok_bos(t) == 128000);
    CHECK(lk_tok_eos(t) == 128009); /* <|eot_id|>, from tokenizer_config.json */
    CHECK(lk_tok_id(t, "<|end_of_text|>") == 128001);
    CHECK(lk_tok_id(t, "Hello") == 9906);
    CHECK(lk_tok_id(t, "no such token") == -1);
    CHECK(lk_tok_is_special(t, 128000) && !lk_tok_is_special(t, 9906));
    CHECK(lk_tok_fingerprint(t) != 0);
    int *ids = NULL;
    size_t n = 0, cap = 0;
    lk_err err = {0};
    const char *s = "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>";
    CHECKF(lk_tok_encode(t, s, strlen(s), 1, &ids, &n, &cap, &err) == 0, "%s", err.msg);
    int want[] = {128000, 128006, 882, 128007, 271, 13347, 128009};
    CHECKF(n == 7 && !memcmp(ids, want, sizeof want), "chat template: %zu ids", n);
    char *out = NULL;
    size_t len = 0, ocap = 0;
    CHECK(lk_tok_decode(t, ids, n, 0, &out, &len, &ocap, &err) == 0 && !strncmp(out, "<|begin_of_text|>", 17) &&
          !strcmp(out + 17, s));
    len = 0;
    CHECK(lk_tok_decode(t, ids, n, 1, &out, &len, &ocap, &err) == 0 && !strcmp(out, "user\n\nHi"));
    /* streaming holds back a split character: "🦙" is 2 tokens */
    const char *llama = " \xF0\x9F\xA6\x99!";
    CHECK(lk_tok_encode(t, llama, strlen(llama), 0, &ids, &n, &cap, &err) == 0 && n >= 3);
    lk_tok_stream st;
    lk_tok_stream_init(&st);
    len = 0;
    int got0 = lk_tok_stream_push(t, &st, ids[0], &out, &len, &ocap);
    CHECKF(got0 >= 0 && len == strlen(out) && strspn(out, " ") == len, "partial character leaked: %zu bytes", len);
    for (size_t i = 1; i < n; i++) lk_tok_stream_push(t, &st, ids[i], &out, &len, &ocap);
    CHECK(lk_tok_stream_flush(t, &st, &out, &len, &ocap) == 0 && !strcmp(out, llama));
    CHECK(lk_tok_stream_push(t, &st, -1, &out, &len, &ocap) == -1);
    /* an unfinished character at the end becomes U+FFFD */
    lk_tok_stream_init(&st);
    len = 0;
    lk_tok_stream_push(t, &st, ids[0], &out, &len, &ocap);
    lk_tok_stream_flush(t, &st, &out, &len, &ocap);
    CHECK(strstr(out, "\xEF\xBF\xBD") != NULL);
    /* invalid UTF-8 in: refused with the byte offset */
    const char *bad = "abc\xff" "def";
    int rc = lk_tok_encode(t, bad, 7, 0, &ids, &n, &cap, &err);
    CHECKF(rc == LK_EINPUT && strstr(err.msg, "offset 3"), "invalid UTF-8: rc %d: %s", rc, err.msg);
    rc = lk_tok_encode(t, "\xe2\x82", 2, 0, &ids, &n, &cap, &err);
    CHECKF(rc == LK_EINPUT && strstr(err.msg, "offset 0"), "truncated UTF-8: rc %d: %s", rc, err.msg);
    int badid = 1 << 30;
    CHECK(lk_tok_decode(t, &badid, 1, 1, &out, &len, &ocap, &err) == LK_EINPUT);
    free(out);
    free(ids);
}

static void check_malformed(void) {
    char dir[] = "/tmp/lk-tok-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    const char *cases[][2] = {
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [", "line"},
        {"[1, 2]", "not an object"},
        {"{\"model\": {\"type\": \"WordPiece\", \"vocab\": {}}}", "WordPiece"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [\"a b\"]}}", "not in the vocabulary"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []},"
         " \"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"(\"}, \"behavior\": \"Isolated\"}}",
         "regex"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char p[256];
        snprintf(p, sizeof p, "%s/tokenizer.json", dir);
        FILE *f = fopen(p, "w");
        fputs(cases[i][0], f);
        fclose(f);
        lk_tokenizer *t = NULL;
        lk_err err = {0};
        int rc = lk_tok_load(&t, dir, &err);
        CHECKF(rc == LK_EINPUT && t == NULL && strstr(err.msg, cases[i][1]) && strstr(err.msg, p),
               "malformed case %zu: rc %d: %s", i, rc, err.msg);
        unlink(p);
    }
    lk_tokenizer *t = NULL;
    lk_err err = {0};
    CHECK(lk_tok_load(&t, "/nonexistent/tokenizer.json", &err) == LK_EIO);
    rmdir(dir);
}

int main(void) {
    check_malformed();
    const char *sh = t_shared();
    if (!sh) {
        t_done();
        T_SKIP("shared data not found (set LEANK_SHARED)");
    }
    lk_tokenizer *llama = load(P(sh, "data/tokenizers/llama3")); /* the directory form */
    uint64_t fp_llama = 0;
    if (llama) {
        fp_llama = lk_tok_fingerprint(llama);
        /* samples files record it: it must not change with the code */
        CHECKF(fp_llama == 0x37e230966e97a9b9ULL, "llama3 fingerprint %016llx changed", (unsigned long long)fp_llama);
        check_vectors(sh, llama, "llama-bpe");
        check_excerpt(sh, llama, "data/tokenizers/vectors/llama3-pg-excerpt.ids");
        check_llama3_special(llama);
        check_stream_random(llama, "llama3");
        check_threads(sh, llama);
        lk_tok_free(llama);
    }
    lk_tokenizer *qwen = load(P(sh, "data/tokenizers/qwen3/tokenizer.json"));
    if (qwen) {
        check_vectors(sh, qwen, "qwen2");
        check_excerpt(sh, qwen, "data/tokenizers/vectors/qwen3-pg-excerpt.ids");
        CHECK(lk_tok_bos(qwen) == -1); /* no BOS: Qwen adds none */
        CHECK(lk_tok_eos(qwen) == lk_tok_id(qwen, "<|im_end|>"));
        CHECK(lk_tok_fingerprint(qwen) != fp_llama);
        printf("fingerprints: llama3 %016llx qwen3 %016llx\n", (unsigned long long)fp_llama,
               (unsigned long long)lk_tok_fingerprint(qwen));
        lk_tok_free(qwen);
    }
    check_stories(sh);
    check_metaspace_flags(sh);
    return t_done();
}
