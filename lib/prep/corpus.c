/* corpus.c - streaming corpus reader and sentence splitter (see corpus.h). */
#include "corpus.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zstd.h>

/* a corpus read whole (stdin, or one document of a directory): larger is
 * not text for leank-prep but the wrong file, or an endless one */
#define CORPUS_MAX ((size_t)256 << 20)

enum { K_JSON, K_JSONL, K_DIR, K_TXT };

struct lk_corpus {
    char *path;
    int kind;
    /* K_JSON: the parsed file; documents are its objects */
    json_t *root;
    size_t json_i;
    /* K_JSONL: a byte stream (plain or zstd) cut into lines */
    FILE *f;
    int zst;
    ZSTD_DCtx *dc;
    uint8_t *zin;
    size_t zin_cap;
    ZSTD_inBuffer in;
    size_t frame_hint; /* 0 = at a frame boundary */
    int eof;
    char *buf;         /* decompressed/read bytes not yet consumed: [beg, n) */
    size_t beg, n, cap;
    long line;
    json_t *cur;       /* document handed out */
    /* K_DIR / K_TXT */
    char **files;
    size_t n_files, file_i;
    char *doc;         /* current plain document */
    char *mem;         /* "-": standard input read whole (behind f, or the text itself) */
    size_t mem_len;
};

const char *lk_corpus_path(const lk_corpus *c) { return c->path; }

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* JSON lines compressed with zstd: the decompressor */
static int zstd_init(lk_corpus *c, lk_err *err) {
    c->dc = ZSTD_createDCtx();
    c->zin_cap = ZSTD_DStreamInSize();
    if (!(c->zin = lk_alloc(c->zin_cap, 1, "the decompressor's input", err))) return LK_ENOMEM;
    return c->dc ? 0 : lk_nomem(err, 0, "a zstd decompression context");
}

/* a corpus of one plain-text document */
static int one_file(lk_corpus *c, const char *name, lk_err *err) {
    c->kind = K_TXT;
    if (!(c->files = lk_alloc(1, sizeof *c->files, "the corpus files", err)) || !(c->files[0] = lk_dup(name, err)))
        return LK_ENOMEM;
    c->n_files = 1;
    return 0;
}

/* "-": standard input, read whole, of any kind by its content: zstd data
 * (JSON lines inside), a JSON document ({"text"} or an array of them), JSON
 * lines, else plain text. */
static int open_stdin(lk_corpus *c, lk_err *err) {
    int rc = lk_read_file("-", CORPUS_MAX, "a corpus", &c->mem, &c->mem_len, err);
    if (rc) return rc;
    free(c->path);
    if (!(c->path = lk_dup("<stdin>", err))) return LK_ENOMEM;
    const unsigned char *d = (const unsigned char *)c->mem;
    size_t k = 0;
    while (k < c->mem_len && strchr(" \t\r\n", d[k])) k++;
    int zst = c->mem_len >= 4 && d[0] == 0x28 && d[1] == 0xb5 && d[2] == 0x2f && d[3] == 0xfd;
    if (!zst && k < c->mem_len && (d[k] == '{' || d[k] == '[')) {
        c->root = json_loadb(c->mem, c->mem_len, 0, NULL);
        if (c->root && (json_is_object(c->root) || json_is_array(c->root))) {
            c->kind = K_JSON;
            return 0;
        }
        json_decref(c->root);
        c->root = NULL;
    }
    if (zst || (k < c->mem_len && d[k] == '{')) {
        c->kind = K_JSONL;
        c->zst = zst;
        c->f = fmemopen(c->mem, c->mem_len ? c->mem_len : 1, "rb");
        if (!c->f) return lk_seterr(err, LK_ENOMEM, "<stdin>: cannot buffer: %s", strerror(errno));
        return zst ? zstd_init(c, err) : 0;
    }
    return one_file(c, "-", err);
}

int lk_corpus_open(lk_corpus **cp, const char *path, lk_err *err) {
    if (!strcmp(path, "-")) {
        lk_corpus *c = lk_zalloc(1, sizeof *c, "a corpus", err);
        if (!c) return LK_ENOMEM;
        int rc = (c->path = lk_dup(path, err)) ? open_stdin(c, err) : LK_ENOMEM;
        if (rc) {
            lk_corpus_close(c);
            return rc;
        }
        *cp = c;
        return 0;
    }
    struct stat st;
    if (stat(path, &st) != 0) return lk_seterr(err, LK_EIO, "%s: cannot open: %s", path, strerror(errno));
    lk_corpus *c = lk_zalloc(1, sizeof *c, "a corpus", err);
    if (!c) return LK_ENOMEM;
    int rc = 0;
    if (!(c->path = lk_dup(path, err))) rc = LK_ENOMEM;
    else if (S_ISDIR(st.st_mode)) {
        c->kind = K_DIR;
        DIR *d = opendir(path);
        if (!d) {
            lk_seterr(err, LK_EIO, "%s: cannot open directory: %s", path, strerror(errno));
            lk_corpus_close(c);
            return LK_EIO;
        }
        struct dirent *e;
        size_t cap = 0;
        while ((e = readdir(d)) && !rc) {
            if (!ends_with(e->d_name, ".txt")) continue;
            if ((rc = lk_grow(&c->files, &cap, c->n_files + 1, sizeof *c->files, "the corpus files", err))) break;
            if ((c->files[c->n_files] = lk_fmt(err, "%s/%s", path, e->d_name))) c->n_files++;
            else rc = LK_ENOMEM;
        }
        closedir(d);
        if (rc) {
            lk_corpus_close(c);
            return rc;
        }
        if (!c->n_files) {
            lk_seterr(err, LK_EINPUT, "%s: no .txt files in the directory (expected a corpus of *.txt)", path);
            lk_corpus_close(c);
            return LK_EINPUT;
        }
        qsort(c->files, c->n_files, sizeof *c->files, cmp_str); /* name order: deterministic */
    } else if (ends_with(path, ".jsonl") || ends_with(path, ".jsonl.zst") || ends_with(path, ".zst")) {
        c->kind = K_JSONL;
        c->zst = ends_with(path, ".zst");
        c->f = fopen(path, "rb");
        if (!c->f) {
            lk_seterr(err, LK_EIO, "%s: cannot open: %s", path, strerror(errno));
            lk_corpus_close(c);
            return LK_EIO;
        }
        if (c->zst) rc = zstd_init(c, err);
    } else if (ends_with(path, ".json")) {
        c->kind = K_JSON;
        json_error_t je;
        c->root = json_load_file(path, 0, &je);
        if (!c->root) {
            lk_seterr(err, LK_EINPUT, "%s:%d: %s (expected a JSON object with a \"text\" string)", path, je.line,
                      je.text);
            lk_corpus_close(c);
            return LK_EINPUT;
        }
        if (!json_is_object(c->root) && !json_is_array(c->root)) {
            lk_seterr(err, LK_EINPUT, "%s: not a JSON object (expected {\"text\": ...})", path);
            lk_corpus_close(c);
            return LK_EINPUT;
        }
    } else
        rc = one_file(c, path, err);
    if (rc) {
        lk_corpus_close(c);
        return rc;
    }
    *cp = c;
    return 0;
}

/* ---- JSON lines: fill buf with more bytes; 0 = none left ---- */
static int jl_fill(lk_corpus *c, lk_err *err) {
    if (c->beg > 0 && c->beg == c->n) c->beg = c->n = 0;
    if (c->beg > (1 << 20)) { /* compact */
        memmove(c->buf, c->buf + c->beg, c->n - c->beg);
        c->n -= c->beg;
        c->beg = 0;
    }
    if (c->cap - c->n < (1 << 16)) {
        size_t cap = c->cap * 2 + (1 << 17);
        if (lk_resize(&c->buf, cap, 1, "a corpus line", err)) return -LK_ENOMEM;
        c->cap = cap;
    }
    if (!c->zst) {
        size_t got = fread(c->buf + c->n, 1, c->cap - c->n - 1, c->f);
        if (!got && ferror(c->f)) return -lk_seterr(err, LK_EIO, "%s: read error: %s", c->path, strerror(errno));
        c->n += got;
        return got > 0;
    }
    for (;;) {
        if (c->in.pos == c->in.size) {
            size_t got = fread(c->zin, 1, c->zin_cap, c->f);
            if (!got) {
                if (ferror(c->f)) return -lk_seterr(err, LK_EIO, "%s: read error: %s", c->path, strerror(errno));
                if (c->frame_hint)
                    return -lk_seterr(err, LK_EINPUT, "%s: truncated zstd data (expected a complete .zst file)",
                                      c->path);
                return 0;
            }
            c->in = (ZSTD_inBuffer){c->zin, got, 0};
        }
        ZSTD_outBuffer out = {c->buf + c->n, c->cap - c->n - 1, 0};
        size_t hint = ZSTD_decompressStream(c->dc, &out, &c->in);
        if (ZSTD_isError(hint))
            return -lk_seterr(err, LK_EINPUT, "%s: corrupt zstd data: %s (expected zstd-compressed JSON lines)",
                              c->path, ZSTD_getErrorName(hint));
        c->frame_hint = hint;
        c->n += out.pos;
        if (out.pos) return 1;
    }
}

static int next_jsonl(lk_corpus *c, const char **text, size_t *len, lk_err *err) {
    for (;;) {
        char *nl = c->n > c->beg ? memchr(c->buf + c->beg, '\n', c->n - c->beg) : NULL;
        if (!nl && c->n - c->beg > CORPUS_MAX) {
            char hb[32];
            return -lk_seterr(err, LK_EINPUT, "%s: line %ld: longer than %s (expected JSON lines)", c->path,
                              c->line + 1, lk_human_bytes(hb, sizeof hb, (double)CORPUS_MAX));
        }
        if (!nl) {
            int rc = jl_fill(c, err);
            if (rc < 0) return rc;
            if (rc > 0) continue;
            if (c->beg == c->n) return 0; /* clean end */
            nl = c->buf + c->n;           /* last line without a newline */
        }
        size_t l = (size_t)(nl - (c->buf + c->beg));
        const char *line = c->buf + c->beg;
        c->beg = nl < c->buf + c->n ? (size_t)(nl - c->buf) + 1 : c->n;
        c->line++;
        size_t k = 0;
        while (k < l && (line[k] == ' ' || line[k] == '\t' || line[k] == '\r')) k++;
        if (k == l) continue; /* blank line */
        json_error_t je;
        json_decref(c->cur);
        c->cur = json_loadb(line, l, 0, &je);
        if (!c->cur)
            return -lk_seterr(err, LK_EINPUT, "%s: line %ld: %s (expected one JSON object a line)", c->path, c->line,
                              je.text);
        json_t *t = json_object_get(c->cur, "text");
        if (!json_is_string(t))
            return -lk_seterr(err, LK_EINPUT, "%s: line %ld: no \"text\" string (expected JSON lines with a "
                              "\"text\" field)", c->path, c->line);
        *text = json_string_value(t);
        *len = json_string_length(t);
        return 1;
    }
}

int lk_utf8_valid(const char *s, size_t n, size_t *bad) {
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        unsigned c = p[i];
        size_t k;
        unsigned min;
        if (c < 0x80) { i++; continue; }
        else if ((c & 0xe0) == 0xc0) { k = 1; min = 0x80; c &= 0x1f; }
        else if ((c & 0xf0) == 0xe0) { k = 2; min = 0x800; c &= 0x0f; }
        else if ((c & 0xf8) == 0xf0) { k = 3; min = 0x10000; c &= 0x07; }
        else goto fail;
        for (size_t j = 1; j <= k; j++) {
            if (i + j >= n || (p[i + j] & 0xc0) != 0x80) goto fail;
            c = c << 6 | (p[i + j] & 0x3f);
        }
        if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff)) goto fail;
        i += k + 1;
        continue;
    fail:
        if (bad) *bad = i;
        return 0;
    }
    return 1;
}

int lk_corpus_next(lk_corpus *c, const char **text, size_t *len, lk_err *err) {
    switch (c->kind) {
    case K_JSONL: return next_jsonl(c, text, len, err);
    case K_JSON: {
        json_t *o = c->root;
        if (json_is_array(c->root)) {
            if (c->json_i >= json_array_size(c->root)) return 0;
            o = json_array_get(c->root, c->json_i);
        } else if (c->json_i > 0) return 0;
        c->json_i++;
        json_t *t = json_object_get(o, "text");
        if (!json_is_string(t))
            return -lk_seterr(err, LK_EINPUT, "%s: no \"text\" string in object %zu (expected {\"text\": ...})",
                              c->path, c->json_i);
        *text = json_string_value(t);
        *len = json_string_length(t);
        return 1;
    }
    default: { /* K_DIR, K_TXT */
        if (c->file_i >= c->n_files) return 0;
        const char *fn = c->files[c->file_i++];
        free(c->doc);
        c->doc = NULL;
        size_t n, bad;
        if (c->mem && !strcmp(fn, "-")) { /* standard input, already read */
            c->doc = c->mem;
            n = c->mem_len;
            c->mem = NULL;
            fn = "<stdin>";
        } else if (lk_read_file(fn, CORPUS_MAX, "a corpus document", &c->doc, &n, err)) {
            return -err->code;
        }
        if (!lk_utf8_valid(c->doc, n, &bad) || memchr(c->doc, 0, n))
            return -lk_seterr(err, LK_EINPUT, "%s: not UTF-8 text at byte %zu (expected UTF-8)", fn,
                              memchr(c->doc, 0, n) ? (size_t)((char *)memchr(c->doc, 0, n) - c->doc) : bad);
        *text = c->doc;
        *len = n;
        return 1;
    }
    }
}

void lk_corpus_close(lk_corpus *c) {
    if (!c) return;
    json_decref(c->root);
    json_decref(c->cur);
    if (c->f) fclose(c->f);
    ZSTD_freeDCtx(c->dc);
    free(c->zin);
    free(c->buf);
    for (size_t i = 0; i < c->n_files; i++) free(c->files[i]);
    free(c->files);
    free(c->doc);
    free(c->mem);
    free(c->path);
    free(c);
}

/* ---- sentences ---- */
static int is_ws(char ch) { return ch == ' ' || ch == '\n' || ch == '\t' || ch == '\r' || ch == '\f' || ch == '\v'; }

int lk_next_sentence(const char *t, size_t len, size_t *pos, size_t *start, size_t *end, size_t max_bytes) {
    size_t i = *pos;
    while (i < len && is_ws(t[i])) i++;
    if (i >= len) {
        *pos = len;
        return 0;
    }
    size_t s = i, last_ws = 0;
    for (; i < len; i++) {
        char ch = t[i];
        if (is_ws(ch)) {
            if (i > s) last_ws = i;
            if (ch == '\n') { /* blank line = paragraph end */
                size_t j = i + 1;
                while (j < len && (t[j] == ' ' || t[j] == '\t' || t[j] == '\r')) j++;
                if (j < len && t[j] == '\n') break;
            }
        } else if (ch == '.' || ch == '!' || ch == '?') {
            size_t j = i + 1;
            /* closing quotes / brackets: ASCII, and UTF-8 right quotes (E2 80 99 / E2 80 9D) */
            for (;;) {
                if (j < len && (t[j] == '"' || t[j] == '\'' || t[j] == ')' || t[j] == ']')) j++;
                else if (j + 2 < len && (unsigned char)t[j] == 0xe2 && (unsigned char)t[j + 1] == 0x80 &&
                         ((unsigned char)t[j + 2] == 0x99 || (unsigned char)t[j + 2] == 0x9d)) j += 3;
                else break;
            }
            if (j >= len || is_ws(t[j])) {
                i = j;
                break;
            }
        }
        if (i - s >= max_bytes && last_ws > s) { /* too long: cut at the last whitespace */
            i = last_ws;
            break;
        }
    }
    size_t e = i;
    while (e > s && is_ws(t[e - 1])) e--;
    *start = s;
    *end = e;
    *pos = i;
    return 1;
}
