/* test_safetensors.c - reader on a real checkpoint, writer round trips,
 * sharded checkpoints, and every refusal on hand-made bad files. */
#include <sys/wait.h>
#include <unistd.h>

#include "safetensors.h"
#include "cli.h" /* lk_asprintf, lk_malloc: a test is a program */
#include "t.h"

static char dir[] = "/tmp/leank-test-st-XXXXXX";

/* Write a raw safetensors file: header text (length prefix computed unless
 * hlen_override != -1; -2 is 2^64-2) followed by ndata bytes of data. */
static char *raw(const char *name, const char *header, long long hlen_override, size_t ndata) {
    char *p = lk_asprintf("%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    uint64_t n = hlen_override != -1 ? (uint64_t)hlen_override : strlen(header);
    uint8_t b[8];
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)(n >> (8 * i));
    fwrite(b, 1, 8, f);
    fputs(header, f);
    for (size_t i = 0; i < ndata; i++) fputc((int)(i & 0xff), f);
    fclose(f);
    return p;
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

/* Open must fail with LK_EINPUT (or code) and a message containing want. */
static void refuse(const char *path, int code, const char *want) {
    lk_st *st = (lk_st *)1;
    lk_err err = {0};
    int rc = lk_st_open(&st, path, &err);
    CHECKF(rc == code, "%s: rc %d (expected %d) msg: %s", path, rc, code, err.msg);
    CHECKF(st == NULL, "%s: handle not NULL on failure", path);
    CHECKF(strstr(err.msg, want) != NULL, "%s: message \"%s\" lacks \"%s\"", path, err.msg, want);
    printf("refused: %s\n", err.msg);
}

static void test_real(void) {
    const char *sh = t_shared();
    if (!sh) {
        T_SKIP_PART("stories260K check: shared data absent");
        return;
    }
    char *p = lk_asprintf("%s/models/stories260K/model.safetensors", sh);
    lk_st *st;
    lk_err err = {0};
    int rc = lk_st_open(&st, p, &err);
    CHECKF(rc == 0, "%s", err.msg);
    if (rc) return;
    CHECK(lk_st_count(st) > 10);
    const lk_tensor *t;
    CHECKF(lk_st_expect(st, "model.embed_tokens.weight", 2, (int64_t[]){512, 64}, &t, &err) == 0, "%s",
           err.msg);
    CHECK(t && t->dtype == LK_DT_F32 && t->numel == 512 * 64 && t->nbytes == 512 * 64 * 4);
    CHECKF(lk_st_expect(st, "model.layers.0.self_attn.k_proj.weight", 2, (int64_t[]){32, 64}, &t,
                        &err) == 0, "%s", err.msg);
    CHECKF(lk_st_expect(st, "model.layers.4.mlp.gate_proj.weight", 2, (int64_t[]){172, 64}, &t,
                        &err) == 0, "%s", err.msg);
    CHECK(lk_st_expect(st, "model.norm.weight", 1, (int64_t[]){64}, &t, &err) == 0);
    float *x = lk_malloc(64 * sizeof *x);
    CHECK(lk_tensor_to_f32(t, x, &err) == 0);
    int finite = 1;
    for (int i = 0; i < 64; i++) finite &= isfinite(x[i]) && x[i] != 0;
    CHECK(finite);
    free(x);
    /* wrong shape and missing names are refused with a message */
    CHECK(lk_st_expect(st, "model.norm.weight", 1, (int64_t[]){65}, &t, &err) == LK_EINPUT);
    CHECK(t == NULL && strstr(err.msg, "[64]") && strstr(err.msg, "[65]"));
    CHECK(lk_st_expect(st, "no.such.tensor", 1, (int64_t[]){1}, &t, &err) == LK_EINPUT);
    CHECK(strstr(err.msg, "no.such.tensor") != NULL);
    CHECK(lk_st_find(st, "no.such.tensor") == NULL);
    lk_st_close(st);
    /* the directory resolves to model.safetensors */
    char *d = lk_asprintf("%s/models/stories260K", sh);
    CHECKF(lk_st_open(&st, d, &err) == 0, "%s", err.msg);
    if (st) CHECK(lk_st_find(st, "model.layers.3.self_attn.q_proj.weight") != NULL);
    lk_st_close(st);
    free(d);
    free(p);
}

static void test_roundtrip(void) {
    float f32[6] = {1.5f, -2.25f, 3.0e-8f, INFINITY, -0.0f, 65504.0f};
    uint16_t bf[5], f16[5];
    for (int i = 0; i < 5; i++) {
        bf[i] = lk_f32_to_bf16(f32[i] * 3.1f);
        f16[i] = lk_f32_to_f16(f32[i] / 7.0f);
    }
    uint8_t u8[3] = {0, 127, 255}, bl[4] = {1, 0, 0, 1};
    double f64[2] = {1.0 / 3.0, -1e300};
    lk_stw *w = lk_stw_new();
    lk_stw_meta(w, "format", "leank-test");
    lk_stw_meta(w, "note", "quote \" and \xc3\xa9");
    lk_stw_add(w, "u8", LK_DT_U8, 1, (int64_t[]){3}, u8); /* 3 bytes: misaligns what follows */
    lk_stw_add(w, "a.f32", LK_DT_F32, 2, (int64_t[]){2, 3}, f32);
    lk_stw_add(w, "bf", LK_DT_BF16, 1, (int64_t[]){5}, bf);
    lk_stw_add(w, "h", LK_DT_F16, 3, (int64_t[]){5, 1, 1}, f16);
    lk_stw_add(w, "mask", LK_DT_BOOL, 2, (int64_t[]){2, 2}, bl);
    lk_stw_add(w, "empty", LK_DT_F32, 2, (int64_t[]){0, 4}, NULL);
    lk_stw_add(w, "d", LK_DT_F64, 1, (int64_t[]){2}, f64);
    lk_stw_add(w, "scalar", LK_DT_I32, 0, NULL, (int32_t[]){-7});
    char *p = lk_asprintf("%s/rt.safetensors", dir);
    lk_err err = {0};
    CHECKF(lk_stw_write(w, p, &err) == 0, "%s", err.msg);
    lk_stw_free(w);

    lk_st *st;
    CHECKF(lk_st_open(&st, p, &err) == 0, "%s", err.msg);
    if (!st) return;
    CHECK(lk_st_count(st) == 8);
    /* header order is insertion order */
    const char *names[] = {"u8", "a.f32", "bf", "h", "mask", "empty", "d", "scalar"};
    for (int i = 0; i < 8; i++) CHECK(strcmp(lk_st_at(st, i)->name, names[i]) == 0);
    const char *m = lk_st_meta(st, "format");
    CHECK(m && strcmp(m, "leank-test") == 0);
    m = lk_st_meta(st, "note");
    CHECK(m && strcmp(m, "quote \" and \xc3\xa9") == 0);
    CHECK(lk_st_meta(st, "absent") == NULL);
    const lk_tensor *t = lk_st_find(st, "a.f32");
    CHECK(t && t->dtype == LK_DT_F32 && t->ndim == 2 && t->shape[1] == 3 && memcmp(t->data, f32, 24) == 0);
    CHECK(((uintptr_t)t->data & 3) == 0); /* aligned to its element size */
    float back[6];
    CHECK(lk_tensor_to_f32(t, back, &err) == 0 && memcmp(back, f32, sizeof back) == 0);
    t = lk_st_find(st, "bf");
    CHECK(t && t->dtype == LK_DT_BF16 && memcmp(t->data, bf, 10) == 0);
    CHECK(lk_tensor_to_f32(t, back, &err) == 0);
    for (int i = 0; i < 5; i++) CHECK(memcmp(&back[i], &(float){lk_bf16_to_f32(bf[i])}, 4) == 0);
    t = lk_st_find(st, "h");
    CHECK(t && t->dtype == LK_DT_F16 && t->ndim == 3 && memcmp(t->data, f16, 10) == 0);
    CHECK(lk_tensor_to_f32(t, back, &err) == 0);
    for (int i = 0; i < 5; i++) CHECK(memcmp(&back[i], &(float){lk_f16_to_f32(f16[i])}, 4) == 0);
    t = lk_st_find(st, "u8");
    CHECK(t && t->dtype == LK_DT_U8 && memcmp(t->data, u8, 3) == 0);
    CHECK(lk_tensor_to_f32(t, back, &err) == LK_EINPUT && strstr(err.msg, "U8"));
    t = lk_st_find(st, "mask");
    CHECK(t && t->dtype == LK_DT_BOOL && t->numel == 4 && memcmp(t->data, bl, 4) == 0);
    t = lk_st_find(st, "empty");
    CHECK(t && t->numel == 0 && t->nbytes == 0 && t->ndim == 2 && t->shape[0] == 0);
    t = lk_st_find(st, "d");
    CHECK(t && t->dtype == LK_DT_F64 && memcmp(t->data, f64, 16) == 0 && ((uintptr_t)t->data & 7) == 0);
    t = lk_st_find(st, "scalar");
    CHECK(t && t->ndim == 0 && t->numel == 1 && *(const int32_t *)t->data == -7);
    lk_st_close(st);

    /* header padded with spaces to a multiple of 8, no holes in the data */
    char *text;
    size_t len;
    CHECK(lk_read_file(p, 1u << 30, "a file", &text, &len, &err) == 0);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | (uint8_t)text[i];
    CHECK(hl % 8 == 0 && text[8] == '{');
    CHECK(strncmp(text + 8, "{\"__metadata__\":", 16) == 0);
    CHECK(len == 8 + hl + 24 + 10 + 10 + 3 + 4 + 16 + 4);
    free(text);

    /* "-" writes the same bytes to stdout */
    w = lk_stw_new();
    lk_stw_meta(w, "k", "v");
    lk_stw_add(w, "u8", LK_DT_U8, 1, (int64_t[]){3}, u8);
    lk_stw_add(w, "f", LK_DT_F32, 1, (int64_t[]){2}, f32);
    char *pf = lk_asprintf("%s/file.safetensors", dir), *ps = lk_asprintf("%s/stdout.safetensors", dir);
    CHECK(lk_stw_write(w, pf, &err) == 0);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        if (!freopen(ps, "wb", stdout)) _exit(2);
        _exit(lk_stw_write(w, "-", NULL) == 0 ? 0 : 1);
    }
    int status = -1;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    char *a, *b;
    size_t la, lb;
    CHECK(lk_read_file(pf, 1u << 30, "a file", &a, &la, &err) == 0 && lk_read_file(ps, 1u << 30, "a file", &b, &lb, &err) == 0);
    CHECK(la == lb && memcmp(a, b, la) == 0);
    free(a);
    free(b);
    /* an unwritable path fails with LK_EIO and names the path */
    CHECK(lk_stw_write(w, "/nonexistent/dir/x.safetensors", &err) == LK_EIO);
    CHECK(strstr(err.msg, "/nonexistent/dir/x.safetensors") != NULL);
    lk_stw_free(w);
    free(pf);
    free(ps);

    /* duplicate names are refused by the writer, nothing is written */
    w = lk_stw_new();
    lk_stw_add(w, "x", LK_DT_U8, 1, (int64_t[]){1}, u8);
    lk_stw_add(w, "x", LK_DT_U8, 1, (int64_t[]){1}, u8);
    char *p2 = lk_asprintf("%s/dup.safetensors", dir);
    CHECK(lk_stw_write(w, p2, &err) != 0 && strstr(err.msg, "\"x\""));
    CHECK(access(p2, F_OK) != 0);
    lk_stw_free(w);
    /* a failed add is kept for lk_stw_write, which reports it and writes
     * nothing; a writer that could not be made (NULL) is accepted throughout */
    w = lk_stw_new();
    lk_stw_add(w, "deep", LK_DT_U8, LK_MAX_DIMS + 1, (int64_t[LK_MAX_DIMS + 1]){1}, u8);
    lk_stw_add(w, "y", LK_DT_U8, 1, (int64_t[]){1}, u8);
    CHECK(lk_stw_write(w, p2, &err) == LK_EFAIL && strstr(err.msg, "deep"));
    CHECK(access(p2, F_OK) != 0);
    lk_stw_free(w);
    w = NULL;
    lk_stw_add(w, "y", LK_DT_U8, 1, (int64_t[]){1}, u8);
    lk_stw_meta(w, "k", "v");
    CHECK(lk_stw_write(w, p2, &err) == LK_ENOMEM && strstr(err.msg, "out of memory"));
    CHECK(access(p2, F_OK) != 0);
    lk_stw_free(w);
    free(p2);
    free(p);
}

static void test_sharded(void) {
    float a[4] = {1, 2, 3, 4}, b[2] = {5, 6};
    lk_err err = {0};
    char *sd = lk_asprintf("%s/sharded", dir);
    mkdir(sd, 0755);
    lk_stw *w = lk_stw_new();
    lk_stw_add(w, "layer.0.w", LK_DT_F32, 2, (int64_t[]){2, 2}, a);
    lk_stw_add(w, "embed", LK_DT_F32, 1, (int64_t[]){2}, b);
    char *s1 = lk_asprintf("%s/model-00001-of-00002.safetensors", sd);
    CHECK(lk_stw_write(w, s1, &err) == 0);
    lk_stw_free(w);
    w = lk_stw_new();
    lk_stw_meta(w, "format", "pt");
    lk_stw_add(w, "layer.1.w", LK_DT_F32, 2, (int64_t[]){1, 2}, b);
    char *s2 = lk_asprintf("%s/model-00002-of-00002.safetensors", sd);
    CHECK(lk_stw_write(w, s2, &err) == 0);
    lk_stw_free(w);
    char *ix = lk_asprintf("%s/model.safetensors.index.json", sd);
    write_text(ix, "{\"metadata\": {\"total_size\": 32}, \"weight_map\": {"
                   "\"embed\": \"model-00001-of-00002.safetensors\","
                   "\"layer.0.w\": \"model-00001-of-00002.safetensors\","
                   "\"layer.1.w\": \"model-00002-of-00002.safetensors\"}}");
    lk_st *st;
    /* by directory and by index path */
    for (int k = 0; k < 2; k++) {
        CHECKF(lk_st_open(&st, k ? ix : sd, &err) == 0, "%s", err.msg);
        if (!st) continue;
        CHECK(lk_st_count(st) == 3);
        const lk_tensor *t = lk_st_find(st, "layer.1.w");
        CHECK(t && t->shape[0] == 1 && memcmp(t->data, b, 8) == 0 && strcmp(t->file, s2) == 0);
        t = lk_st_find(st, "layer.0.w");
        CHECK(t && memcmp(t->data, a, 16) == 0 && strcmp(t->file, s1) == 0);
        CHECK(lk_st_meta(st, "format") && strcmp(lk_st_meta(st, "format"), "pt") == 0);
        lk_st_close(st);
    }
    /* index naming a tensor its shard lacks */
    write_text(ix, "{\"weight_map\": {\"embed\": \"model-00001-of-00002.safetensors\","
                   "\"layer.9.w\": \"model-00002-of-00002.safetensors\"}}");
    refuse(sd, LK_EINPUT, "layer.9.w");
    /* index naming a tensor in the wrong shard */
    write_text(ix, "{\"weight_map\": {\"embed\": \"model-00002-of-00002.safetensors\","
                   "\"layer.1.w\": \"model-00002-of-00002.safetensors\"}}");
    refuse(ix, LK_EINPUT, "embed");
    /* index naming a missing file */
    write_text(ix, "{\"weight_map\": {\"embed\": \"model-00003-of-00002.safetensors\"}}");
    refuse(ix, LK_EIO, "model-00003-of-00002.safetensors");
    /* index without weight_map, malformed index */
    write_text(ix, "{\"metadata\": {}}");
    refuse(ix, LK_EINPUT, "weight_map");
    write_text(ix, "{\"weight_map\": {");
    refuse(ix, LK_EINPUT, "model.safetensors.index.json");
    /* same tensor in two shards */
    w = lk_stw_new();
    lk_stw_add(w, "embed", LK_DT_F32, 1, (int64_t[]){2}, b);
    lk_stw_add(w, "extra", LK_DT_F32, 1, (int64_t[]){2}, b);
    CHECK(lk_stw_write(w, s2, &err) == 0);
    lk_stw_free(w);
    write_text(ix, "{\"weight_map\": {\"embed\": \"model-00001-of-00002.safetensors\","
                   "\"extra\": \"model-00002-of-00002.safetensors\"}}");
    refuse(ix, LK_EINPUT, "\"embed\"");
    unlink(ix);
    refuse(sd, LK_EINPUT, "several");
    free(s1);
    free(s2);
    free(ix);
    free(sd);
}

static void test_refusals(void) {
    const char *ok = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    lk_st *st;
    lk_err err = {0};
    /* the well-formed one opens, so each refusal below is due to its one defect */
    char *p = raw("ok.st", ok, -1, 8);
    CHECKF(lk_st_open(&st, p, &err) == 0, "%s", err.msg);
    lk_st_close(st);
    free(p);

    FILE *f = fopen(p = lk_asprintf("%s/short.st", dir), "wb");
    fwrite("\x10\0\0", 1, 3, f);
    fclose(f);
    refuse(p, LK_EINPUT, "truncated");
    free(p);
    f = fopen(p = lk_asprintf("%s/zero.st", dir), "wb");
    fclose(f);
    refuse(p, LK_EINPUT, "truncated");
    free(p);
    refuse(p = raw("cut.st", ok, -1, 5), LK_EINPUT, "beyond the data region");
    free(p);
    refuse(p = raw("hlen.st", ok, 4096, 8), LK_EINPUT, "header length 4096");
    free(p);
    refuse(p = raw("huge.st", ok, -2, 8), LK_EINPUT, "runs past the end"); /* 2^64-2 */
    free(p);
    refuse(p = raw("json.st", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],", -1, 8), LK_EINPUT, "JSON");
    free(p);
    refuse(p = raw("notobj.st", "[1,2]", -1, 0), LK_EINPUT, "'{'");
    free(p);
    refuse(p = raw("dupkey.st", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                                "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}", -1, 2),
           LK_EINPUT, "JSON");
    free(p);
    refuse(p = raw("overlap.st", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                                 "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", -1, 12),
           LK_EINPUT, "overlap");
    free(p);
    refuse(p = raw("range.st", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[100,108]}}", -1, 8),
           LK_EINPUT, "beyond the data region");
    free(p);
    refuse(p = raw("order.st", "{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,0]}}", -1, 8),
           LK_EINPUT, "begin > end");
    free(p);
    refuse(p = raw("dtype.st", "{\"a\":{\"dtype\":\"F8_E4M3\",\"shape\":[2],\"data_offsets\":[0,2]}}", -1, 2),
           LK_EINPUT, "F8_E4M3");
    free(p);
    refuse(p = raw("nodtype.st", "{\"a\":{\"shape\":[2],\"data_offsets\":[0,2]}}", -1, 2), LK_EINPUT,
           "dtype");
    free(p);
    refuse(p = raw("size.st", "{\"a\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[0,8]}}", -1, 8),
           LK_EINPUT, "needs 6");
    free(p);
    refuse(p = raw("negshape.st", "{\"a\":{\"dtype\":\"U8\",\"shape\":[-1],\"data_offsets\":[0,0]}}", -1, 0),
           LK_EINPUT, "shape[0]");
    free(p);
    refuse(p = raw("fshape.st", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1.5],\"data_offsets\":[0,0]}}", -1, 0),
           LK_EINPUT, "shape[0]");
    free(p);
    refuse(p = raw("bigshape.st", "{\"a\":{\"dtype\":\"F64\",\"shape\":[4294967296,4294967296,16],"
                                  "\"data_offsets\":[0,0]}}", -1, 0), LK_EINPUT, "too large");
    free(p);
    refuse(p = raw("offs.st", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0]}}", -1, 1),
           LK_EINPUT, "data_offsets");
    free(p);
    refuse(p = raw("meta.st", "{\"__metadata__\":{\"k\":1}}", -1, 0), LK_EINPUT, "\"k\"");
    free(p);
    refuse(p = raw("entry.st", "{\"a\":3}", -1, 0), LK_EINPUT, "\"a\"");
    free(p);
    refuse("/nonexistent/leank.safetensors", LK_EIO, "/nonexistent/leank.safetensors");
    refuse("-", LK_EUSAGE, "stdin");
    char *empty = lk_asprintf("%s/emptydir", dir);
    mkdir(empty, 0755);
    refuse(empty, LK_EINPUT, "no safetensors file");
    free(empty);
}

/* The inline BF16/F16 conversions match util.h's on every bit pattern,
 * read from an odd (unaligned) address. */
static void test_convert_all(void) {
    uint8_t *buf = lk_malloc(2 * 65536 + 1);
    for (uint32_t h = 0; h < 65536; h++) memcpy(buf + 1 + 2 * h, &(uint16_t){(uint16_t)h}, 2);
    float *out = lk_malloc(65536 * sizeof *out);
    lk_err err = {0};
    lk_tensor t = {.name = "all", .ndim = 1, .shape = {65536}, .numel = 65536, .data = buf + 1,
                   .nbytes = 2 * 65536, .file = "mem"};
    int bad_bf = 0, bad_h = 0;
    t.dtype = LK_DT_BF16;
    CHECK(lk_tensor_to_f32(&t, out, &err) == 0);
    for (uint32_t h = 0; h < 65536; h++) {
        float want = lk_bf16_to_f32((uint16_t)h);
        bad_bf += memcmp(&out[h], &want, 4) != 0;
    }
    t.dtype = LK_DT_F16;
    CHECK(lk_tensor_to_f32(&t, out, &err) == 0);
    for (uint32_t h = 0; h < 65536; h++) {
        float want = lk_f16_to_f32((uint16_t)h);
        if (memcmp(&out[h], &want, 4) != 0 && bad_h++ < 5)
            fprintf(stderr, "f16 %04x: %a vs %a\n", h, out[h], want);
    }
    CHECKF(bad_bf == 0 && bad_h == 0, "%d bf16, %d f16 mismatches", bad_bf, bad_h);
    free(out);
    free(buf);
}

int main(void) {
    CHECK(mkdtemp(dir) != NULL);
    CHECK(lk_dtype_size(LK_DT_BF16) == 2 && strcmp(lk_dtype_name(LK_DT_BOOL), "BOOL") == 0);
    lk_dtype t;
    CHECK(lk_dtype_parse("I16", &t) == 0 && t == LK_DT_I16 && lk_dtype_parse("F8", &t) == -1);
    test_convert_all();
    test_real();
    test_roundtrip();
    test_sharded();
    test_refusals();
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", dir);
    return t_done();
}
