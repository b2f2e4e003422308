/* test_samples - samples file: write -> read round trip, truncated and
 * corrupt files refused with a clear message. */
#include <unistd.h>
#include <zstd.h>
#if defined(__SANITIZE_ADDRESS__)
size_t __sanitizer_get_current_allocated_bytes(void); /* sanitizer/allocator_interface.h, not always installed */
static size_t heap_bytes(void) { return __sanitizer_get_current_allocated_bytes(); }
#else
#include <malloc.h>
static size_t heap_bytes(void) {
    struct mallinfo2 m = mallinfo2();
    return m.uordblks + m.hblkhd;
}
#endif

#include "samples.h"
#include "t.h"

static char tmpdir[] = "/tmp/test_samples.XXXXXX";

static void make_sample(lk_sample *s, int i, int *ctx, int *ans, double *dep, char **refs, char **needles) {
    memset(s, 0, sizeof *s);
    snprintf(s->task, sizeof s->task, i % 2 ? "niah_single_%d" : "train-essay", i);
    s->target_len = 1000 + i;
    s->question_pos = i % 3 ? 800 + i : -1; /* inside the context */
    for (int k = 0; k < 1000 + i; k++) ctx[k] = (k * 7919 + i) % 128256;
    s->ctx = ctx;
    s->n_ctx = 900 + i;
    for (int k = 0; k < 5; k++) ans[k] = 100 + k + i;
    s->ans = ans;
    s->n_ans = i % 4; /* 0 answers too */
    dep[0] = 0.25 + i * 0.01;
    dep[1] = 1.0 / 3;
    s->depths = dep;
    s->n_depths = i % 3;
    static char r0[64], r1[64];
    snprintf(r0, sizeof r0, "%07d", 1234567 + i);
    snprintf(r1, sizeof r1, "h\xc3\xa9llo %d", i);
    refs[0] = r0;
    refs[1] = r1;
    s->refs = refs;
    s->n_refs = i % 3;
    needles[0] = "One of the special magic numbers for x is: 1.";
    needles[1] = "";
    s->needles = needles;
    s->n_needles = 2;
}

static int write_file(const char *path, int n) {
    FILE *f = fopen(path, "wb");
    lk_err err = {0};
    lk_samples_writer *w;
    if (lk_samples_write_open(&w, f, path, 0xfeedULL, "{\"seed\":1}", &err)) return 1;
    int ctx[1100], ans[8];
    double dep[2];
    char *refs[2], *needles[2];
    for (int i = 0; i < n; i++) {
        lk_sample s;
        make_sample(&s, i, ctx, ans, dep, refs, needles);
        if (lk_samples_write(w, &s, &err)) return 1;
    }
    int rc = lk_samples_write_close(w, &err);
    fclose(f);
    return rc;
}

/* read everything; returns samples read, or -1 with err filled */
static long read_all(const char *path, lk_err *err, int verify) {
    lk_samples_reader *r;
    if (lk_samples_open(&r, path, err)) return -1;
    lk_sample s;
    int rc, ctx[1100], ans[8];
    double dep[2];
    char *refs[2], *needles[2];
    while ((rc = lk_samples_next(r, &s, err)) == 1) {
        if (!verify) continue;
        long i = lk_samples_index(r) - 1;
        lk_sample e;
        make_sample(&e, (int)i, ctx, ans, dep, refs, needles);
        CHECK(!strcmp(s.task, e.task));
        CHECK(s.target_len == e.target_len && s.question_pos == e.question_pos);
        CHECK(s.n_ctx == e.n_ctx && !memcmp(s.ctx, e.ctx, e.n_ctx * sizeof(int)));
        CHECK(s.n_ans == e.n_ans && (!e.n_ans || !memcmp(s.ans, e.ans, e.n_ans * sizeof(int))));
        CHECK(s.n_depths == e.n_depths);
        for (int k = 0; k < e.n_depths && k < s.n_depths; k++) CHECK(s.depths[k] == e.depths[k]);
        CHECK(s.n_refs == e.n_refs);
        for (int k = 0; k < e.n_refs && k < s.n_refs; k++) CHECK(!strcmp(s.refs[k], e.refs[k]));
        CHECK(s.n_needles == 2 && !strcmp(s.needles[0], e.needles[0]) && !strcmp(s.needles[1], ""));
    }
    long n = lk_samples_index(r);
    if (verify) {
        CHECK(lk_samples_hdr(r)->tok_fingerprint == 0xfeedULL);
        CHECK(!strcmp(lk_samples_hdr(r)->params, "{\"seed\":1}"));
    }
    lk_samples_close(r);
    return rc < 0 ? -1 : n;
}

static size_t file_size(const char *p) {
    struct stat st;
    return stat(p, &st) ? 0 : (size_t)st.st_size;
}

/* A samples file whose one record declares a body of len bytes and holds
 * `have` of them (zeros), then nothing: no end record, a complete frame. */
static void write_liar(const char *path, uint32_t len, size_t have) {
    size_t rn = 8 + have;
    uint8_t *raw = calloc(rn, 1), z[4096];
    uint8_t head[30] = "LEANKSMP\1\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\2\0\0\0{}";
    raw[0] = 1; /* kind: sample */
    for (int i = 0; i < 4; i++) raw[4 + i] = (uint8_t)(len >> (8 * i));
    ZSTD_CCtx *cc = ZSTD_createCCtx();
    ZSTD_CCtx_setParameter(cc, ZSTD_c_checksumFlag, 1);
    size_t zn = ZSTD_compress2(cc, z, sizeof z, raw, rn);
    FILE *f = fopen(path, "wb");
    fwrite(head, 1, sizeof head, f);
    if (!ZSTD_isError(zn)) fwrite(z, 1, zn, f);
    fclose(f);
    ZSTD_freeCCtx(cc);
    free(raw);
}

static void copy_prefix(const char *src, const char *dst, size_t n, long flip_at) {
    FILE *f = fopen(src, "rb"), *g = fopen(dst, "wb");
    for (size_t i = 0; i < n; i++) {
        int c = fgetc(f);
        if ((long)i == flip_at) c ^= 0x5a;
        fputc(c, g);
    }
    fclose(f);
    fclose(g);
}

int main(void) {
    if (!mkdtemp(tmpdir)) return 1;
    char path[256], bad[256];
    snprintf(path, sizeof path, "%s/a.smp", tmpdir);
    snprintf(bad, sizeof bad, "%s/bad.smp", tmpdir);
    lk_err err = {0};

    CHECK(write_file(path, 50) == 0);
    CHECK(read_all(path, &err, 1) == 50);

    /* empty set of samples is a valid file */
    char empty[256];
    snprintf(empty, sizeof empty, "%s/empty.smp", tmpdir);
    CHECK(write_file(empty, 0) == 0);
    CHECK(read_all(empty, &err, 0) == 0);

    /* every truncation is an error that says so, never a clean short read */
    size_t n = file_size(path);
    size_t cuts[] = {0, 5, 20, 30, n / 3, n / 2, n - 20, n - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++) {
        copy_prefix(path, bad, cuts[i], -1);
        memset(&err, 0, sizeof err);
        CHECKF(read_all(bad, &err, 0) == -1, "cut at %zu read fine", cuts[i]);
        CHECKF(err.code == LK_EINPUT && strstr(err.msg, bad) &&
               (strstr(err.msg, "truncated") || strstr(err.msg, "not a samples file") || strstr(err.msg, "ends")),
               "cut %zu: %s", cuts[i], err.msg);
    }
    /* a flipped byte in the compressed data: refused (zstd checksum) */
    copy_prefix(path, bad, n, (long)(n / 2));
    memset(&err, 0, sizeof err);
    CHECK(read_all(bad, &err, 0) == -1 && err.code == LK_EINPUT);
    printf("corrupt: %s\n", err.msg);
    /* bytes after the end */
    copy_prefix(path, bad, n, -1);
    FILE *f = fopen(bad, "ab");
    fputs("x", f);
    fclose(f);
    CHECK(read_all(bad, &err, 0) == -1 && strstr(err.msg, "after"));
    /* wrong magic / version */
    f = fopen(bad, "wb");
    fputs("{\"text\": \"hello\"}\n", f);
    fclose(f);
    CHECK(read_all(bad, &err, 0) == -1 && strstr(err.msg, "not a samples file"));
    copy_prefix(path, bad, n, 8);
    CHECK(read_all(bad, &err, 0) == -1 && strstr(err.msg, "version"));
    printf("version: %s\n", err.msg);
    CHECK(read_all("/nonexistent/x.smp", &err, 0) == -1 && err.code == LK_EIO);

    /* a record that declares 1 GiB and holds 100 KB: refused, with the
     * reader's memory following the data there is, not the declared length
     * (issue 16: the buffer was allocated for the length first) */
    write_liar(bad, 1u << 30, 100000);
    lk_samples_reader *r;
    size_t before = heap_bytes();
    CHECK(lk_samples_open(&r, bad, &err) == 0);
    lk_sample smp;
    CHECK(lk_samples_next(r, &smp, &err) == -LK_EINPUT && strstr(err.msg, "ends inside sample 1"));
    size_t grew = heap_bytes() - before;
    CHECKF(grew < ((size_t)16 << 20), "reading a record that declares 1 GiB took %zu bytes", grew);
    lk_samples_close(r);
    printf("liar: %s (%zu bytes)\n", err.msg, grew);

    unlink(path);
    unlink(bad);
    unlink(empty);
    rmdir(tmpdir);
    return t_done();
}
