/* tokenizer_json.c - fast reading of the two big members of a tokenizer.json,
 * model.vocab and model.merges (see tokenizer_impl.h: tj_*).
 *
 * Why: Llama-3's tokenizer.json is 9 MB, almost all of it 128 K vocabulary
 * entries and 280 K merges; building jansson's tree of it (one malloc'd object
 * per string) and freeing it took ~250 ms of a ~380 ms load. Here the file is
 * scanned once to find those two values; they are decoded straight into flat
 * arrays (strings in one arena), and jansson parses only the rest of the
 * document (the two values replaced by {} and []), which is a few KB. */
#include <string.h>

#include "tokenizer_impl.h"

static const char *ws(const char *p, const char *e) {
    while (p < e && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) p++;
    return p;
}

/* Past the string starting at p (on its opening quote); NULL if unterminated. */
static const char *skip_string(const char *p, const char *e) {
    for (p++; p < e; p++) {
        if (*p == '\\') p++;
        else if (*p == '"') return p + 1;
    }
    return NULL;
}

/* Past the value at p (loosely: the reduced document is checked by jansson,
 * and the two values read here by the strict readers below). */
static const char *skip_value(const char *p, const char *e) {
    int depth = 0;
    do {
        p = ws(p, e);
        if (p >= e) return NULL;
        char c = *p;
        if (c == '"') {
            if (!(p = skip_string(p, e))) return NULL;
        } else if (c == '{' || c == '[') {
            depth++, p++;
        } else if (c == '}' || c == ']') {
            if (--depth < 0) return NULL;
            p++;
        } else if (c == ',' || c == ':') {
            if (!depth) return NULL;
            p++;
        } else {
            const char *q = p;
            while (p < e && !strchr(" \n\r\t,:]}[{\"", *p)) p++;
            if (p == q) return NULL;
        }
    } while (depth > 0);
    return p;
}

/* Does the string at p (a JSON key) equal lit (no escapes)? */
static int key_is(const char *p, const char *q, const char *lit) {
    size_t n = strlen(lit);
    return (size_t)(q - p) == n + 2 && !memcmp(p + 1, lit, n);
}

/* Members of the object at p: calls found(key begin, key end, value begin,
 * value end) for each; returns the end of the object or NULL. descend, if
 * not NULL, may read a value itself and return its end (NULL: skip it). */
typedef void (*member_fn)(void *ctx, const char *k, const char *ke, const char *v, const char *ve);
typedef const char *(*descend_fn)(void *ctx, const char *k, const char *ke, const char *v, const char *e);
static const char *members(const char *p, const char *e, member_fn found, descend_fn descend, void *ctx) {
    p = ws(p, e);
    if (p >= e || *p != '{') return NULL;
    p = ws(p + 1, e);
    if (p < e && *p == '}') return p + 1;
    for (;;) {
        if (p >= e || *p != '"') return NULL;
        const char *k = p, *ke = skip_string(p, e);
        if (!ke) return NULL;
        p = ws(ke, e);
        if (p >= e || *p != ':') return NULL;
        const char *v = ws(p + 1, e), *ve = descend ? descend(ctx, k, ke, v, e) : NULL;
        if (!ve) ve = skip_value(v, e);
        if (!ve) return NULL;
        found(ctx, k, ke, v, ve);
        p = ws(ve, e);
        if (p < e && *p == ',') {
            p = ws(p + 1, e);
            continue;
        }
        if (p < e && *p == '}') return p + 1;
        return NULL;
    }
}

typedef struct {
    const char *model, *model_e, *vocab, *vocab_e, *merges, *merges_e;
} spans;

static void model_member(void *ctx, const char *k, const char *ke, const char *v, const char *ve) {
    spans *s = ctx;
    if (key_is(k, ke, "vocab")) s->vocab = v, s->vocab_e = ve;
    else if (key_is(k, ke, "merges")) s->merges = v, s->merges_e = ve;
}
static void top_member(void *ctx, const char *k, const char *ke, const char *v, const char *ve) {
    spans *s = ctx;
    if (key_is(k, ke, "model") && *v == '{') s->model = v, s->model_e = ve; /* the last one, as jansson */
}
/* "model" is read member by member as the top level is scanned (one pass
 * over its 9 MB instead of a skip, then a second pass for its members); a
 * later "model" key replaces what an earlier one found, as in jansson. */
static const char *top_descend(void *ctx, const char *k, const char *ke, const char *v, const char *e) {
    spans *s = ctx;
    if (!key_is(k, ke, "model") || *v != '{') return NULL;
    s->vocab = s->merges = NULL;
    return members(v, e, model_member, NULL, s);
}

int tj_split(const char *text, size_t n, tj_parts *out) {
    memset(out, 0, sizeof *out);
    const char *e = text + n;
    spans s = {0};
    const char *end = members(text, e, top_member, top_descend, &s);
    if (!end || ws(end, e) != e || !s.model || !s.vocab || !s.merges) return -1;
    if (*s.vocab != '{' || *s.merges != '[') return -1;
    /* the rest: text with the two values replaced by {} and [] */
    const char *a = s.vocab, *ae = s.vocab_e, *b = s.merges, *be = s.merges_e;
    const char *al = "{}", *bl = "[]";
    if (b < a) {
        const char *t;
        t = a, a = b, b = t;
        t = ae, ae = be, be = t;
        t = al, al = bl, bl = t;
    }
    size_t rn = (size_t)(a - text) + 2 + (size_t)(b - ae) + 2 + (size_t)(e - be);
    char *r = malloc(rn + 1);
    if (!r) return LK_ENOMEM;
    size_t o = 0;
    memcpy(r + o, text, a - text), o += a - text;
    memcpy(r + o, al, 2), o += 2;
    memcpy(r + o, ae, b - ae), o += b - ae;
    memcpy(r + o, bl, 2), o += 2;
    memcpy(r + o, be, e - be), o += e - be;
    r[o] = 0;
    out->rest = r;
    out->rest_len = rn;
    out->vocab = s.vocab, out->vocab_end = s.vocab_e;
    out->merges = s.merges, out->merges_end = s.merges_e;
    return 0;
}

/* ---- strict readers ---- */

static int hex4(const char *p, const char *e, unsigned *v) {
    if (e - p < 4) return -1;
    *v = 0;
    for (int i = 0; i < 4; i++) {
        int c = p[i], d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                        : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return -1;
        *v = *v << 4 | (unsigned)d;
    }
    return 0;
}

/* Decode the JSON string at *pp into the arena (NUL-terminated); its offset
 * and length in *off, *len. Escapes as jansson: \uXXXX with surrogate pairs
 * (a lone surrogate is an error), control characters refused. */
static int read_string(const char **pp, const char *e, buf *ar, size_t *off, size_t *len) {
    const char *p = *pp;
    if (p >= e || *p != '"') return -1;
    p++;
    *off = ar->n;
    for (;;) {
        const char *q = p;
        while (q < e && *q != '"' && *q != '\\' && (unsigned char)*q >= 0x20) q++;
        buf_put(ar, p, q - p);
        p = q;
        if (p >= e || (unsigned char)*p < 0x20) return -1;
        if (*p == '"') break;
        p++; /* backslash */
        if (p >= e) return -1;
        char c = *p++, o;
        switch (c) {
        case '"': o = '"'; break;
        case '\\': o = '\\'; break;
        case '/': o = '/'; break;
        case 'b': o = '\b'; break;
        case 'f': o = '\f'; break;
        case 'n': o = '\n'; break;
        case 'r': o = '\r'; break;
        case 't': o = '\t'; break;
        case 'u': {
            unsigned u, lo;
            if (hex4(p, e, &u)) return -1;
            p += 4;
            if (u >= 0xDC00 && u <= 0xDFFF) return -1;
            if (u >= 0xD800 && u <= 0xDBFF) {
                if (e - p < 6 || p[0] != '\\' || p[1] != 'u' || hex4(p + 2, e, &lo) || lo < 0xDC00 || lo > 0xDFFF)
                    return -1;
                p += 6;
                u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
            }
            char b[4];
            int n = 0;
            if (u < 0x80) b[n++] = (char)u;
            else if (u < 0x800) b[n++] = (char)(0xC0 | u >> 6), b[n++] = (char)(0x80 | (u & 63));
            else if (u < 0x10000)
                b[n++] = (char)(0xE0 | u >> 12), b[n++] = (char)(0x80 | (u >> 6 & 63)), b[n++] = (char)(0x80 | (u & 63));
            else
                b[n++] = (char)(0xF0 | u >> 18), b[n++] = (char)(0x80 | (u >> 12 & 63)),
                b[n++] = (char)(0x80 | (u >> 6 & 63)), b[n++] = (char)(0x80 | (u & 63));
            buf_put(ar, b, n);
            continue;
        }
        default: return -1;
        }
        buf_put(ar, &o, 1);
    }
    *len = ar->n - *off;
    char z = 0;
    buf_put(ar, &z, 1);
    *pp = p + 1;
    return 0;
}

/* A JSON integer (jansson's syntax: -?(0|[1-9][0-9]*), no fraction or
 * exponent); nonzero when it is not one. */
static int read_int(const char **pp, const char *e, long long *v) {
    const char *p = *pp;
    int neg = p < e && *p == '-';
    p += neg;
    if (p >= e || *p < '0' || *p > '9') return -1;
    long long x = 0;
    const char *d = p;
    while (p < e && *p >= '0' && *p <= '9') {
        if (x > (long long)1e15) return 1;
        x = x * 10 + (*p++ - '0');
    }
    if ((*d == '0' && p - d > 1) || (p < e && (*p == '.' || *p == 'e' || *p == 'E'))) return 1;
    (void)neg;
    *v = neg ? -x : x;
    *pp = p;
    return 0;
}

int tj_vocab(const char *p, const char *e, tj_vocab_t *v) {
    memset(v, 0, sizeof *v);
    size_t cap = 0;
    p = ws(p, e);
    if (p >= e || *p != '{') return -1;
    p = ws(p + 1, e);
    if (p < e && *p == '}') return 0;
    for (;;) {
        size_t off, len;
        long long id;
        if (read_string(&p, e, &v->arena, &off, &len)) return -1;
        if (v->arena.oom) return LK_ENOMEM;
        p = ws(p, e);
        if (p >= e || *p != ':') return -1;
        p = ws(p + 1, e);
        if (read_int(&p, e, &id) || id < 0 || id > 0x7fffffff) return -1; /* jansson's path reports it */
        if (lk_grow(&v->ent, &cap, v->n + 1, sizeof *v->ent, NULL, NULL)) return LK_ENOMEM;
        /* jansson's key is a C string: a \u0000 in a key ends it there */
        v->ent[v->n++] = (tj_entry){off, strnlen(v->arena.p + off, len), (int)id};
        p = ws(p, e);
        if (p < e && *p == ',') {
            p = ws(p + 1, e);
            continue;
        }
        return p < e && *p == '}' ? 0 : -1;
    }
}

int tj_merges(const char *p, const char *e, tj_merges_t *m) {
    memset(m, 0, sizeof *m);
    size_t cap = 0;
    p = ws(p, e);
    if (p >= e || *p != '[') return -1;
    p = ws(p + 1, e);
    if (p < e && *p == ']') return 0;
    for (;;) {
        tj_merge x = {0};
        if (p < e && *p == '"') {
            size_t off, len;
            if (read_string(&p, e, &m->arena, &off, &len)) return -1;
            x.a = off, x.alen = len, x.form = 1; /* "a b": split by the loader */
        } else if (p < e && *p == '[') {
            size_t o1, l1, o2, l2;
            p = ws(p + 1, e);
            x.form = 2;
            if (p < e && *p == '"' && !read_string(&p, e, &m->arena, &o1, &l1)) {
                p = ws(p, e);
                if (p < e && *p == ',') {
                    p = ws(p + 1, e);
                    if (p < e && *p == '"' && !read_string(&p, e, &m->arena, &o2, &l2)) {
                        x.a = o1, x.alen = l1, x.b = o2, x.blen = l2;
                        p = ws(p, e);
                        if (p < e && *p == ']') p++, x.form = 0;
                    }
                }
            }
            if (x.form) return -1; /* not two strings: jansson's path says what it is */
        } else {
            return -1;
        }
        if (m->arena.oom || lk_grow(&m->ent, &cap, m->n + 1, sizeof *m->ent, NULL, NULL)) return LK_ENOMEM;
        m->ent[m->n++] = x;
        p = ws(p, e);
        if (p < e && *p == ',') {
            p = ws(p + 1, e);
            continue;
        }
        return p < e && *p == ']' ? 0 : -1;
    }
}

void tj_free(tj_parts *parts, tj_vocab_t *v, tj_merges_t *m) {
    if (parts) free(parts->rest);
    if (v) {
        free(v->arena.p);
        free(v->ent);
    }
    if (m) {
        free(m->arena.p);
        free(m->ent);
    }
}
