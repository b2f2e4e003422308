/* samples.c - streaming writer and reader of samples files (see samples.h). */
#include "samples.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

enum { REC_SAMPLE = 1, REC_END = 2 };
#define MAX_BODY (1u << 30) /* sanity bound on one record: 256 M tokens */
#define MIN_BODY 29u        /* task length byte, target, question pos, five counts */
#define BODY_STEP (1u << 20) /* a body is read in steps of this, its buffer growing with the data */

/* ---- little-endian byte buffer ---- */
typedef struct {
    uint8_t *p;
    size_t n, cap;
    int oom; /* a growth failed: later puts are dropped, the writer reports LK_ENOMEM */
} buf;

static void b_put(buf *b, const void *d, size_t n) {
    if (b->oom) return;
    if (b->n + n > b->cap) {
        size_t cap = (b->n + n) * 2 + 256;
        if (lk_resize(&b->p, cap, 1, NULL, NULL)) {
            b->oom = 1;
            return;
        }
        b->cap = cap;
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}
static void b_u32(buf *b, uint32_t v) {
    uint8_t x[4] = {v, v >> 8, v >> 16, v >> 24};
    b_put(b, x, 4);
}
static void b_u64(buf *b, uint64_t v) {
    b_u32(b, (uint32_t)v);
    b_u32(b, (uint32_t)(v >> 32));
}
static void b_str(buf *b, const char *s) {
    size_t n = strlen(s);
    b_u32(b, (uint32_t)n);
    b_put(b, s, n);
}
static uint32_t rd_u32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t rd_u64(const uint8_t *p) { return rd_u32(p) | (uint64_t)rd_u32(p + 4) << 32; }

/* ---- writer ---- */
struct lk_samples_writer {
    FILE *f;
    char *name;
    ZSTD_CCtx *cc;
    buf rec;     /* one record, serialized */
    buf zout;    /* compressor output staging */
    uint64_t n;
};

static int w_flush(lk_samples_writer *w, const void *d, size_t n, ZSTD_EndDirective mode, lk_err *err) {
    ZSTD_inBuffer in = {d, n, 0};
    for (;;) {
        ZSTD_outBuffer out = {w->zout.p, w->zout.cap, 0};
        size_t left = ZSTD_compressStream2(w->cc, &out, &in, mode);
        if (ZSTD_isError(left))
            return lk_seterr(err, LK_EFAIL, "%s: zstd: %s", w->name, ZSTD_getErrorName(left));
        if (out.pos && fwrite(w->zout.p, 1, out.pos, w->f) != out.pos)
            return lk_seterr(err, LK_EIO, "%s: write error: %s", w->name, strerror(errno));
        if (mode == ZSTD_e_continue ? in.pos == in.size : left == 0) return 0;
    }
}

int lk_samples_write_open(lk_samples_writer **wp, FILE *f, const char *name, uint64_t fp,
                          const char *params, lk_err *err) {
    lk_samples_writer *w = lk_zalloc(1, sizeof *w, "a samples writer", err);
    if (!w) return LK_ENOMEM;
    w->f = f;
    w->cc = ZSTD_createCCtx();
    w->zout.cap = ZSTD_CStreamOutSize();
    w->zout.p = lk_alloc(w->zout.cap, 1, "the compressor's output", err);
    buf h = {0};
    b_put(&h, LK_SAMPLES_MAGIC, 8);
    b_u32(&h, LK_SAMPLES_VERSION);
    b_u32(&h, 0);
    b_u64(&h, fp);
    b_str(&h, params ? params : "{}");
    int rc = 0;
    if (!(w->name = lk_dup(name, err)) || !w->zout.p) rc = LK_ENOMEM;
    else if (!w->cc) rc = lk_nomem(err, 0, "a zstd compression context");
    else if (h.oom) rc = lk_nomem(err, h.n, "the samples header");
    else if (fwrite(h.p, 1, h.n, f) != h.n) rc = lk_seterr(err, LK_EIO, "%s: write error: %s", name, strerror(errno));
    free(h.p);
    if (rc) {
        lk_samples_write_abort(w);
        return rc;
    }
    ZSTD_CCtx_setParameter(w->cc, ZSTD_c_compressionLevel, 3);
    ZSTD_CCtx_setParameter(w->cc, ZSTD_c_checksumFlag, 1);
    *wp = w;
    return 0;
}

int lk_samples_write(lk_samples_writer *w, const lk_sample *s, lk_err *err) {
    buf *r = &w->rec;
    r->n = 0;
    b_u32(r, REC_SAMPLE);
    b_u32(r, 0); /* body length, patched below */
    size_t tl = strnlen(s->task, LK_SAMPLES_TASK_MAX);
    uint8_t l8 = (uint8_t)tl;
    b_put(r, &l8, 1);
    b_put(r, s->task, tl);
    b_u32(r, (uint32_t)s->target_len);
    b_u32(r, (uint32_t)s->question_pos);
    b_u32(r, (uint32_t)s->n_ctx);
    for (int i = 0; i < s->n_ctx; i++) b_u32(r, (uint32_t)s->ctx[i]);
    b_u32(r, (uint32_t)s->n_ans);
    for (int i = 0; i < s->n_ans; i++) b_u32(r, (uint32_t)s->ans[i]);
    b_u32(r, (uint32_t)s->n_depths);
    for (int i = 0; i < s->n_depths; i++) {
        uint64_t u;
        memcpy(&u, &s->depths[i], 8);
        b_u64(r, u);
    }
    b_u32(r, (uint32_t)s->n_refs);
    for (int i = 0; i < s->n_refs; i++) b_str(r, s->refs[i]);
    b_u32(r, (uint32_t)s->n_needles);
    for (int i = 0; i < s->n_needles; i++) b_str(r, s->needles[i]);
    uint32_t body = (uint32_t)(r->n - 8);
    uint8_t x[4] = {body, body >> 8, body >> 16, body >> 24};
    if (r->oom) {
        r->oom = 0; /* the buffer stays usable for a smaller sample */
        return lk_nomem(err, r->n, "a sample's record");
    }
    memcpy(r->p + 4, x, 4);
    w->n++;
    return w_flush(w, r->p, r->n, ZSTD_e_continue, err);
}

int lk_samples_write_close(lk_samples_writer *w, lk_err *err) {
    buf *r = &w->rec;
    r->n = 0;
    b_u32(r, REC_END);
    b_u64(r, w->n);
    int rc = r->oom ? lk_nomem(err, 12, "the end record") : w_flush(w, r->p, r->n, ZSTD_e_end, err);
    lk_samples_write_abort(w);
    return rc;
}

void lk_samples_write_abort(lk_samples_writer *w) {
    if (!w) return;
    ZSTD_freeCCtx(w->cc);
    free(w->rec.p);
    free(w->zout.p);
    free(w->name);
    free(w);
}

/* ---- reader ---- */
struct lk_samples_reader {
    FILE *f;
    int is_stdin;
    char *name;
    lk_samples_header hdr;
    char *params;
    ZSTD_DCtx *dc;
    uint8_t *in;          /* compressed input buffer */
    size_t in_cap;
    ZSTD_inBuffer zin;
    size_t frame_left;    /* last ZSTD_decompressStream hint: 0 = frame complete */
    int done;             /* end record seen */
    int frame_checked;    /* the frame header was checked (zstd magic, checksum on) */
    long index;
    buf body;             /* current record */
    /* arrays handed out in lk_sample */
    int *ctx, *ans;
    size_t ctx_cap, ans_cap;
    double *depths;
    size_t depths_cap;
    char **strs;          /* refs then needles, pointers into strbuf */
    size_t strs_cap;
    char *strbuf;
    size_t strbuf_cap;
};

const lk_samples_header *lk_samples_hdr(const lk_samples_reader *r) { return &r->hdr; }
long lk_samples_index(const lk_samples_reader *r) { return r->index; }

/* The first got bytes of the frame: one zstd frame (not a skippable one)
 * with its content checksum on, as the format says. */
static int check_frame(lk_samples_reader *r, size_t got, lk_err *err) {
    r->frame_checked = 1;
    if (got < 5 || rd_u32(r->in) != 0xFD2FB528u)
        return -lk_seterr(err, LK_EINPUT, "%s: no zstd frame after the header (expected one; regenerate the "
                          "file with leank-prep)", r->name);
    if (!(r->in[4] & 0x04)) /* Frame_Header_Descriptor: Content_Checksum_flag */
        return -lk_seterr(err, LK_EINPUT, "%s: the zstd frame has no checksum (expected one; regenerate the "
                          "file with leank-prep)", r->name);
    return 0;
}

/* Exactly n decompressed bytes into dst. 1 = ok, 0 = clean end of input with
 * nothing read, < 0 = error. */
static int r_read(lk_samples_reader *r, void *dst, size_t n, const char *what, lk_err *err) {
    ZSTD_outBuffer out = {dst, n, 0};
    int rc;
    while (out.pos < n) {
        if (r->zin.pos == r->zin.size) {
            size_t got = fread(r->in, 1, r->in_cap, r->f);
            if (got == 0) {
                if (ferror(r->f))
                    return -lk_seterr(err, LK_EIO, "%s: read error: %s", r->name, strerror(errno));
                if (out.pos == 0 && r->frame_left == 0 && !strcmp(what, "record")) return 0;
                return -lk_seterr(err, LK_EINPUT,
                                  "%s: truncated in %s of sample %ld (expected a complete samples "
                                  "file; regenerate it with leank-prep)",
                                  r->name, what, r->index + 1);
            }
            r->zin = (ZSTD_inBuffer){r->in, got, 0};
            if (!r->frame_checked && (rc = check_frame(r, got, err)) < 0) return rc;
        }
        size_t hint = ZSTD_decompressStream(r->dc, &out, &r->zin);
        if (ZSTD_isError(hint))
            return -lk_seterr(err, LK_EINPUT, "%s: corrupt data near sample %ld: %s (expected zstd frame)",
                              r->name, r->index + 1, ZSTD_getErrorName(hint));
        r->frame_left = hint;
        if (hint == 0 && out.pos < n)
            return -lk_seterr(err, LK_EINPUT, "%s: data ends inside sample %ld (expected an end record)",
                              r->name, r->index + 1);
    }
    return 1;
}

int lk_samples_open(lk_samples_reader **rp, const char *path, lk_err *err) {
    lk_samples_reader *r = lk_zalloc(1, sizeof *r, "a samples reader", err);
    if (!r) return LK_ENOMEM;
    r->is_stdin = !strcmp(path, "-");
    if (!(r->name = lk_dup(r->is_stdin ? "<stdin>" : path, err))) {
        free(r);
        return LK_ENOMEM;
    }
    r->f = r->is_stdin ? stdin : fopen(path, "rb");
    if (!r->f) {
        lk_seterr(err, LK_EIO, "%s: cannot open: %s", path, strerror(errno));
        free(r->name);
        free(r);
        return LK_EIO;
    }
    uint8_t h[28];
    size_t got = fread(h, 1, sizeof h, r->f);
    int rc = 0;
    if (got < 8 || memcmp(h, LK_SAMPLES_MAGIC, 8))
        rc = lk_seterr(err, LK_EINPUT, "%s: not a samples file (expected magic %s; make one with leank-prep)",
                       r->name, LK_SAMPLES_MAGIC);
    else if (got < sizeof h)
        rc = lk_seterr(err, LK_EINPUT, "%s: truncated header (expected %zu bytes)", r->name, sizeof h);
    else if (rd_u32(h + 8) != LK_SAMPLES_VERSION)
        rc = lk_seterr(err, LK_EINPUT, "%s: samples format version %u (expected %u; regenerate with this leank-prep)",
                       r->name, rd_u32(h + 8), LK_SAMPLES_VERSION);
    else if (rd_u32(h + 12) != 0)
        rc = lk_seterr(err, LK_EINPUT, "%s: header flags %#x (expected 0)", r->name, rd_u32(h + 12));
    if (!rc) {
        r->hdr.version = rd_u32(h + 8);
        r->hdr.tok_fingerprint = rd_u64(h + 16);
        uint32_t plen = rd_u32(h + 24);
        if (plen > (1u << 24))
            rc = lk_seterr(err, LK_EINPUT, "%s: corrupt header (parameters of %u bytes; expected < 16 MiB)",
                           r->name, plen);
        else if (!(r->params = lk_alloc((size_t)plen + 1, 1, "the samples parameters", err)))
            rc = LK_ENOMEM;
        else {
            if (fread(r->params, 1, plen, r->f) != plen)
                rc = lk_seterr(err, LK_EINPUT, "%s: truncated header (expected %u bytes of parameters)", r->name, plen);
            r->params[plen] = 0;
            r->hdr.params = r->params;
            json_t *pj = rc ? NULL : json_loads(r->params, JSON_REJECT_DUPLICATES, NULL);
            if (!rc && !json_is_object(pj))
                rc = lk_seterr(err, LK_EINPUT, "%s: corrupt header (parameters are not a JSON object)", r->name);
            json_decref(pj);
        }
    }
    if (rc) {
        lk_samples_close(r);
        return rc;
    }
    r->dc = ZSTD_createDCtx();
    r->in_cap = ZSTD_DStreamInSize();
    r->in = lk_alloc(r->in_cap, 1, "the decompressor's input", err);
    if (!r->dc || !r->in) {
        rc = r->in ? lk_nomem(err, 0, "a zstd decompression context") : LK_ENOMEM;
        lk_samples_close(r);
        return rc;
    }
    r->frame_left = 1; /* a frame must follow */
    *rp = r;
    return 0;
}

/* string table: refs then needles, each NUL-terminated in strbuf. 0, -1
 * for fields that do not add up, or -LK_ENOMEM with err set. */
static int r_strings(lk_samples_reader *r, const uint8_t **pp, const uint8_t *end, int *count, int base,
                     size_t *sb_used, lk_err *err) {
    const uint8_t *p = *pp;
    if (end - p < 4) return -1;
    uint32_t n = rd_u32(p);
    p += 4;
    if (n > (uint32_t)(end - p) / 4) return -1;
    if (lk_grow(&r->strs, &r->strs_cap, (size_t)base + n, sizeof *r->strs, "a sample's strings", err))
        return -LK_ENOMEM;
    for (uint32_t i = 0; i < n; i++) {
        if (end - p < 4) return -1;
        uint32_t len = rd_u32(p);
        p += 4;
        if (len > (uint32_t)(end - p)) return -1;
        if (lk_grow(&r->strbuf, &r->strbuf_cap, *sb_used + len + 1, 1, "a sample's strings", err))
            return -LK_ENOMEM;
        memcpy(r->strbuf + *sb_used, p, len);
        r->strbuf[*sb_used + len] = 0;
        r->strs[base + i] = (char *)(uintptr_t)*sb_used; /* offset now, pointer later */
        *sb_used += len + 1;
        p += len;
    }
    *count = (int)n;
    *pp = p;
    return 0;
}

/* 0, -1 for fields that do not add up, or -LK_ENOMEM with err set */
static int r_ids(const uint8_t **pp, const uint8_t *end, int **arr, size_t *cap, int *count, lk_err *err) {
    const uint8_t *p = *pp;
    if (end - p < 4) return -1;
    uint32_t n = rd_u32(p);
    p += 4;
    if (n > (uint32_t)(end - p) / 4) return -1;
    if (n > *cap) {
        if (lk_resize(arr, n, sizeof **arr, "a sample's token ids", err)) return -LK_ENOMEM;
        *cap = n;
    }
    for (uint32_t i = 0; i < n; i++) (*arr)[i] = (int)rd_u32(p + 4 * i);
    *pp = p + 4 * (size_t)n;
    *count = (int)n;
    return 0;
}

int lk_samples_next(lk_samples_reader *r, lk_sample *s, lk_err *err) {
    if (r->done) return 0;
    uint8_t k[8];
    int rc = r_read(r, k, 4, "record", err);
    if (rc < 0) return rc;
    if (rc == 0)
        return -lk_seterr(err, LK_EINPUT, "%s: truncated after %ld samples (expected an end record)", r->name,
                          r->index);
    uint32_t kind = rd_u32(k);
    if (kind == REC_END) {
        if ((rc = r_read(r, k, 8, "end record", err)) < 0) return rc;
        if (rd_u64(k) != (uint64_t)r->index)
            return -lk_seterr(err, LK_EINPUT, "%s: end record counts %llu samples, read %ld (expected equal)",
                              r->name, (unsigned long long)rd_u64(k), r->index);
        /* the frame must end here (its checksum is verified then) and the file too */
        uint8_t extra;
        ZSTD_outBuffer out = {&extra, 1, 0};
        while (r->frame_left) {
            if (r->zin.pos == r->zin.size) {
                size_t got = fread(r->in, 1, r->in_cap, r->f);
                if (!got)
                    return -lk_seterr(err, LK_EINPUT, "%s: truncated at the end (expected the zstd frame's end)",
                                      r->name);
                r->zin = (ZSTD_inBuffer){r->in, got, 0};
            }
            size_t hint = ZSTD_decompressStream(r->dc, &out, &r->zin);
            if (ZSTD_isError(hint))
                return -lk_seterr(err, LK_EINPUT, "%s: corrupt data at the end: %s", r->name,
                                  ZSTD_getErrorName(hint));
            if (out.pos)
                return -lk_seterr(err, LK_EINPUT, "%s: data after the end record (expected none)", r->name);
            r->frame_left = hint;
        }
        if (r->zin.pos < r->zin.size || fread(&extra, 1, 1, r->f) == 1)
            return -lk_seterr(err, LK_EINPUT, "%s: bytes after the end of the samples (expected none)", r->name);
        r->done = 1;
        return 0;
    }
    if (kind != REC_SAMPLE)
        return -lk_seterr(err, LK_EINPUT, "%s: corrupt record kind %u at sample %ld (expected 1 or 2)", r->name,
                          kind, r->index + 1);
    if ((rc = r_read(r, k, 4, "record length", err)) < 0) return rc;
    uint32_t len = rd_u32(k);
    if (len < MIN_BODY || len > MAX_BODY)
        return -lk_seterr(err, LK_EINPUT, "%s: corrupt record length %u at sample %ld (expected %u to %u)", r->name,
                          len, r->index + 1, MIN_BODY, MAX_BODY);
    /* the buffer grows with the data actually decompressed, not with the
     * declared length: a corrupt length costs at most twice what the file
     * holds, and ends as "truncated" */
    for (size_t got = 0; got < len;) {
        size_t step = len - got < BODY_STEP ? len - got : BODY_STEP;
        if (got + step > r->body.cap) {
            size_t cap = 2 * (got + step) < len ? 2 * (got + step) : len;
            if (lk_resize(&r->body.p, cap, 1, "a sample's record", err)) return -LK_ENOMEM;
            r->body.cap = cap;
        }
        if ((rc = r_read(r, r->body.p + got, step, "body", err)) < 0) return rc;
        got += step;
    }
    const uint8_t *p = r->body.p, *end = p + len;
    memset(s, 0, sizeof *s);
    size_t sb = 0;
    int bad = 0;
    if (end - p < 1 || *p > LK_SAMPLES_TASK_MAX || end - p < 1 + *p + 8) bad = 1;
    if (!bad) {
        memcpy(s->task, p + 1, *p);
        s->task[*p] = 0;
        p += 1 + *p;
        s->target_len = (int)rd_u32(p);
        s->question_pos = (int)rd_u32(p + 4);
        p += 8;
        if ((bad = r_ids(&p, end, &r->ctx, &r->ctx_cap, &s->n_ctx, err)) == 0)
            bad = r_ids(&p, end, &r->ans, &r->ans_cap, &s->n_ans, err);
        if (!bad && (s->target_len < 0 || s->question_pos < -1 || s->question_pos >= s->n_ctx))
            return -lk_seterr(err, LK_EINPUT, "%s: sample %ld: question_pos %d, target_len %d (expected "
                              "question_pos -1 or in [0, %d), target_len >= 0)", r->name, r->index + 1,
                              s->question_pos, s->target_len, s->n_ctx);
    }
    if (!bad) {
        if (end - p < 4 || rd_u32(p) > (uint32_t)(end - p - 4) / 8) bad = 1;
        else {
            uint32_t n = rd_u32(p);
            p += 4;
            if (n > r->depths_cap) {
                if (lk_resize(&r->depths, n, sizeof(double), "a sample's depths", err)) return -LK_ENOMEM;
                r->depths_cap = n;
            }
            for (uint32_t i = 0; i < n; i++) {
                uint64_t u = rd_u64(p + 8 * i);
                memcpy(&r->depths[i], &u, 8);
            }
            p += 8 * (size_t)n;
            s->n_depths = (int)n;
        }
    }
    if (!bad && (bad = r_strings(r, &p, end, &s->n_refs, 0, &sb, err)) == 0 &&
        (bad = r_strings(r, &p, end, &s->n_needles, s->n_refs, &sb, err)) == 0)
        bad = p != end;
    if (bad == -LK_ENOMEM) return bad;
    if (bad)
        return -lk_seterr(err, LK_EINPUT, "%s: corrupt sample %ld (fields do not add up to its %u bytes)", r->name,
                          r->index + 1, len);
    for (int i = 0; i < s->n_refs + s->n_needles; i++) r->strs[i] = r->strbuf + (uintptr_t)r->strs[i];
    s->ctx = r->ctx;
    s->ans = r->ans;
    s->depths = r->depths;
    s->refs = r->strs;
    s->needles = r->strs + s->n_refs;
    r->index++;
    return 1;
}

void lk_samples_close(lk_samples_reader *r) {
    if (!r) return;
    if (r->f && !r->is_stdin) fclose(r->f);
    ZSTD_freeDCtx(r->dc);
    free(r->in);
    free(r->params);
    free(r->name);
    free(r->body.p);
    free(r->ctx);
    free(r->ans);
    free(r->depths);
    free(r->strs);
    free(r->strbuf);
    free(r);
}
