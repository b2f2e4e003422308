/* safetensors.c - mmap reader with full header validation, sharded
 * checkpoints (model.safetensors.index.json), and an atomic writer.
 *
 * File layout: u64 little-endian N | N bytes of JSON header | data region.
 * Every data_offsets pair is relative to the start of the data region. */
#include "safetensors.h"

#include <dirent.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- dtypes ---- */

static const struct { const char *name; size_t size; } dtypes[] = {
    [LK_DT_F32] = {"F32", 4}, [LK_DT_F16] = {"F16", 2}, [LK_DT_BF16] = {"BF16", 2},
    [LK_DT_F64] = {"F64", 8}, [LK_DT_I64] = {"I64", 8}, [LK_DT_I32] = {"I32", 4},
    [LK_DT_I16] = {"I16", 2}, [LK_DT_I8] = {"I8", 1},   [LK_DT_U8] = {"U8", 1},
    [LK_DT_BOOL] = {"BOOL", 1},
};
#define N_DTYPES ((int)(sizeof dtypes / sizeof dtypes[0]))
#define DTYPE_LIST "F32 F16 BF16 F64 I64 I32 I16 I8 U8 BOOL"

const char *lk_dtype_name(lk_dtype t) {
    return (int)t >= 0 && (int)t < N_DTYPES ? dtypes[t].name : "?";
}
size_t lk_dtype_size(lk_dtype t) { return (int)t >= 0 && (int)t < N_DTYPES ? dtypes[t].size : 0; }

int lk_dtype_parse(const char *s, lk_dtype *t) {
    for (int i = 0; i < N_DTYPES; i++)
        if (strcmp(s, dtypes[i].name) == 0) {
            *t = (lk_dtype)i;
            return 0;
        }
    return -1;
}

/* "[2,3,4]" into buf (for messages) */
const char *lk_shape_str(char *buf, size_t cap, int ndim, const int64_t *shape) {
    size_t n = 0;
    n += snprintf(buf + n, cap - n, "[");
    for (int i = 0; i < ndim && n < cap; i++)
        n += snprintf(buf + n, cap - n, "%s%lld", i ? "," : "", (long long)shape[i]);
    if (n < cap) snprintf(buf + n, cap - n, "]");
    return buf;
}

/* ---- reader ---- */

typedef struct {
    char *path;
    lk_map map;
    json_t *meta; /* the "__metadata__" object or NULL */
} st_file;

struct lk_st {
    char *path;     /* as opened (file, index or directory), for messages */
    st_file *files; /* (nfiles) */
    int nfiles;
    lk_tensor *t; /* (n) in header order, shard by shard */
    int n;
    int *by_name; /* (n) indices into t sorted by name, for lk_st_find */
    atomic_int refs; /* lk_st_open's reference + lk_st_ref's; lk_st_close drops one */
};

static int cmp_by_name(const void *a, const void *b, void *ctx) {
    const lk_st *st = ctx;
    return strcmp(st->t[*(const int *)a].name, st->t[*(const int *)b].name);
}

typedef struct { uint64_t begin, end; int idx; } span;
static int cmp_span(const void *a, const void *b) {
    const span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

/* JSON integer >= 0, into *v */
static int json_u64(const json_t *j, uint64_t *v) {
    if (!json_is_integer(j) || json_integer_value(j) < 0) return -1;
    *v = (uint64_t)json_integer_value(j);
    return 0;
}

/* Map one file and append its tensors to st. */
static int load_file(lk_st *st, const char *path, lk_err *err) {
    if (lk_resize(&st->files, st->nfiles + 1, sizeof *st->files, "the list of checkpoint files", err))
        return LK_ENOMEM;
    st_file *f = &st->files[st->nfiles++];
    memset(f, 0, sizeof *f);
    if (!(f->path = lk_dup(path, err))) return LK_ENOMEM;
    int rc = lk_map_file(path, &f->map, err);
    if (rc) return rc;
    const uint8_t *d = f->map.data;
    size_t size = f->map.size;
    if (size < 8)
        return lk_seterr(err, LK_EINPUT,
                         "%s: truncated: %zu bytes (expected at least 8: the u64 header length)",
                         path, size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | d[i];
    if (hlen > size - 8)
        return lk_seterr(err, LK_EINPUT,
                         "%s: header length %llu runs past the end of the file (%zu bytes; "
                         "expected at most %zu: truncated, or not a safetensors file)",
                         path, (unsigned long long)hlen, size, size - 8);
    if (hlen < 2 || d[8] != '{')
        return lk_seterr(err, LK_EINPUT,
                         "%s: byte 8: header does not start with '{' (expected a JSON object; "
                         "not a safetensors file?)", path);
    json_error_t je;
    json_t *root = json_loadb((const char *)d + 8, hlen, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return lk_seterr(err, LK_EINPUT, "%s: byte %lld: header JSON: %s (expected a JSON object)",
                         path, (long long)je.position + 8, je.text);
    if (!json_is_object(root)) {
        json_decref(root);
        return lk_seterr(err, LK_EINPUT, "%s: header is not a JSON object", path);
    }
    uint64_t data_len = size - 8 - hlen;
    const uint8_t *data = d + 8 + hlen;
    size_t nent = json_object_size(root);
    span *spans = lk_alloc(nent, sizeof *spans, "the tensor table", err);
    int ns = 0;
    rc = !spans || lk_resize(&st->t, st->n + nent + 1, sizeof *st->t, "the tensor table", err) ? LK_ENOMEM : 0;
    const char *key;
    json_t *v;
    char sb[256];
    if (!rc) json_object_foreach(root, key, v) {
        if (strcmp(key, "__metadata__") == 0) {
            if (!json_is_object(v)) {
                rc = lk_seterr(err, LK_EINPUT, "%s: __metadata__ is not an object "
                               "(expected {\"key\": \"string\", ...})", path);
                break;
            }
            const char *mk;
            json_t *mv;
            json_object_foreach(v, mk, mv) if (!json_is_string(mv)) {
                rc = lk_seterr(err, LK_EINPUT, "%s: __metadata__: value of \"%s\" is not a string",
                               path, mk);
                break;
            }
            if (rc) break;
            f->meta = json_incref(v);
            continue;
        }
        if (!json_is_object(v)) {
            rc = lk_seterr(err, LK_EINPUT, "%s: tensor \"%s\": not an object "
                           "(expected {\"dtype\", \"shape\", \"data_offsets\"})", path, key);
            break;
        }
        lk_tensor *t = &st->t[st->n];
        memset(t, 0, sizeof *t);
        json_t *jd = json_object_get(v, "dtype"), *js = json_object_get(v, "shape"),
               *jo = json_object_get(v, "data_offsets");
        if (!json_is_string(jd)) {
            rc = lk_seterr(err, LK_EINPUT, "%s: tensor \"%s\": missing \"dtype\" string", path, key);
            break;
        }
        if (lk_dtype_parse(json_string_value(jd), &t->dtype)) {
            rc = lk_seterr(err, LK_EINPUT, "%s: tensor \"%s\": unknown dtype \"%s\" (expected one of "
                           DTYPE_LIST ")", path, key, json_string_value(jd));
            break;
        }
        if (!json_is_array(js) || json_array_size(js) > LK_MAX_DIMS) {
            rc = lk_seterr(err, LK_EINPUT, "%s: tensor \"%s\": \"shape\" %s (expected an array of "
                           "at most %d non-negative integers)", path, key,
                           json_is_array(js) ? "has too many dimensions" : "missing or not an array",
                           LK_MAX_DIMS);
            break;
        }
        t->ndim = (int)json_array_size(js);
        uint64_t numel = 1;
        int overflow = 0;
        for (int i = 0; i < t->ndim; i++) {
            uint64_t dim;
            if (json_u64(json_array_get(js, i), &dim)) {
                rc = lk_seterr(err, LK_EINPUT, "%s: tensor \"%s\": shape[%d] is not a non-negative "
                               "integer", path, key, i);
                break;
            }
            t->shape[i] = (int64_t)dim;
            if (dim && numel > (UINT64_MAX >> 4) / dim) overflow = 1;
            numel *= dim;
        }
        if (rc) break;
        uint64_t b, e;
        if (!json_is_array(jo) || json_array_size(jo) != 2 || json_u64(json_array_get(jo, 0), &b) ||
            json_u64(json_array_get(jo, 1), &e)) {
            rc = lk_seterr(err, LK_EINPUT, "%s: tensor \"%s\": \"data_offsets\" missing or malformed "
                           "(expected [begin, end], non-negative integers)", path, key);
            break;
        }
        if (b > e) {
            rc = lk_seterr(err, LK_EINPUT, "%s: tensor \"%s\": data_offsets [%llu, %llu]: begin > end",
                           path, key, (unsigned long long)b, (unsigned long long)e);
            break;
        }
        if (e > data_len) {
            rc = lk_seterr(err, LK_EINPUT, "%s: tensor \"%s\": data_offsets end %llu is beyond the data "
                           "region (%llu bytes; file truncated?)", path, key,
                           (unsigned long long)e, (unsigned long long)data_len);
            break;
        }
        if (overflow) {
            rc = lk_seterr(err, LK_EINPUT, "%s: tensor \"%s\": shape %s is too large", path, key,
                           lk_shape_str(sb, sizeof sb, t->ndim, t->shape));
            break;
        }
        uint64_t need = numel * lk_dtype_size(t->dtype);
        if (e - b != need) {
            rc = lk_seterr(err, LK_EINPUT, "%s: tensor \"%s\": data_offsets span %llu bytes but shape "
                           "%s of %s needs %llu", path, key, (unsigned long long)(e - b),
                           lk_shape_str(sb, sizeof sb, t->ndim, t->shape), lk_dtype_name(t->dtype),
                           (unsigned long long)need);
            break;
        }
        if (!(t->name = lk_dup(key, err))) {
            rc = LK_ENOMEM;
            break;
        }
        t->numel = (int64_t)numel;
        t->data = data + b;
        t->nbytes = (size_t)need;
        t->file = f->path;
        spans[ns++] = (span){b, e, st->n};
        st->n++;
    }
    /* no two tensors may share bytes: sorted by begin, each starts at or after
     * the previous end (empty tensors included) */
    if (!rc) {
        qsort(spans, ns, sizeof *spans, cmp_span);
        for (int i = 1; i < ns; i++)
            if (spans[i].begin < spans[i - 1].end) {
                rc = lk_seterr(err, LK_EINPUT, "%s: tensors \"%s\" [%llu, %llu) and \"%s\" [%llu, %llu) "
                               "overlap (expected disjoint data_offsets)", path,
                               st->t[spans[i - 1].idx].name, (unsigned long long)spans[i - 1].begin,
                               (unsigned long long)spans[i - 1].end, st->t[spans[i].idx].name,
                               (unsigned long long)spans[i].begin, (unsigned long long)spans[i].end);
                break;
            }
    }
    free(spans);
    json_decref(root);
    return rc;
}

static int is_dir(const char *p) {
    struct stat s;
    return stat(p, &s) == 0 && S_ISDIR(s.st_mode);
}
static int is_file(const char *p) {
    struct stat s;
    return stat(p, &s) == 0 && S_ISREG(s.st_mode);
}
static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

/* A directory: the index, else model.safetensors, else the one *.safetensors. */
static int resolve_dir(const char *dir, char **out, lk_err *err) {
    const char *first[2] = {"model.safetensors.index.json", "model.safetensors"};
    for (int i = 0; i < 2; i++) {
        char *p = lk_fmt(err, "%s/%s", dir, first[i]);
        if (!p) return LK_ENOMEM;
        if (is_file(p)) { *out = p; return 0; }
        free(p);
    }
    DIR *d = opendir(dir);
    if (!d) return lk_seterr(err, LK_EIO, "%s: cannot open directory", dir);
    char *found = NULL;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (ends_with(e->d_name, ".safetensors")) {
            if (n++ == 0 && !(found = lk_dup(e->d_name, err))) break;
        }
    closedir(d);
    if (n && !found) return LK_ENOMEM;
    if (n != 1) {
        free(found);
        return lk_seterr(err, LK_EINPUT, "%s: %s (expected model.safetensors.index.json, "
                         "model.safetensors, or exactly one *.safetensors file)", dir,
                         n ? "several *.safetensors files and no index" : "no safetensors file");
    }
    *out = lk_fmt(err, "%s/%s", dir, found);
    free(found);
    return *out ? 0 : LK_ENOMEM;
}

/* Sort the name index and refuse a name present twice (across shards). */
static int build_index(lk_st *st, lk_err *err) {
    if (!(st->by_name = lk_alloc(st->n, sizeof *st->by_name, "the tensor name index", err))) return LK_ENOMEM;
    for (int i = 0; i < st->n; i++) st->by_name[i] = i;
    qsort_r(st->by_name, st->n, sizeof *st->by_name, cmp_by_name, st);
    for (int i = 1; i < st->n; i++) {
        const lk_tensor *a = &st->t[st->by_name[i - 1]], *b = &st->t[st->by_name[i]];
        if (strcmp(a->name, b->name) == 0)
            return lk_seterr(err, LK_EINPUT, "%s: tensor \"%s\" is also in %s (expected each tensor "
                             "once)", b->file, b->name, a->file);
    }
    return 0;
}

static int load_index(lk_st *st, const char *path, lk_err *err) {
    char *text;
    size_t len;
    int rc = lk_read_file(path, 64u << 20, "a model.safetensors.index.json", &text, &len, err);
    if (rc) return rc;
    json_error_t je;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    free(text);
    if (!root)
        return lk_seterr(err, LK_EINPUT, "%s: line %d column %d: %s (expected JSON)", path, je.line,
                         je.column, je.text);
    json_t *wm = json_object_get(root, "weight_map");
    if (!json_is_object(root) || !json_is_object(wm)) {
        json_decref(root);
        return lk_seterr(err, LK_EINPUT, "%s: missing \"weight_map\" object "
                         "(expected {\"weight_map\": {tensor: shard file}})", path);
    }
    char *dir = lk_alloc(strlen(path) + 2, 1, "a directory name", err);
    if (!dir) {
        json_decref(root);
        return LK_ENOMEM;
    }
    strcpy(dir, path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0; else strcpy(dir, ".");
    /* shards in order of first appearance, each opened once */
    const char *name;
    json_t *v;
    json_object_foreach(wm, name, v) {
        if (!json_is_string(v) || !json_string_length(v)) {
            rc = lk_seterr(err, LK_EINPUT, "%s: weight_map: \"%s\": expected a shard file name", path,
                           name);
            break;
        }
        char *sp = lk_fmt(err, "%s/%s", dir, json_string_value(v));
        if (!sp) {
            rc = LK_ENOMEM;
            break;
        }
        int seen = 0;
        for (int i = 0; i < st->nfiles && !seen; i++) seen = strcmp(st->files[i].path, sp) == 0;
        if (!seen) rc = load_file(st, sp, err);
        free(sp);
        if (rc) break;
    }
    if (!rc) rc = build_index(st, err);
    /* every listed tensor lives in its shard */
    if (!rc) {
        json_object_foreach(wm, name, v) {
            char *sp = lk_fmt(err, "%s/%s", dir, json_string_value(v));
            if (!sp) {
                rc = LK_ENOMEM;
                break;
            }
            const lk_tensor *t = lk_st_find(st, name);
            int ok = t && strcmp(t->file, sp) == 0;
            free(sp);
            if (!ok) {
                rc = lk_seterr(err, LK_EINPUT, "%s: weight_map lists tensor \"%s\" in %s, which has "
                               "no such tensor", path, name, json_string_value(v));
                break;
            }
        }
    }
    free(dir);
    json_decref(root);
    return rc;
}

int lk_st_open(lk_st **out, const char *path, lk_err *err) {
    *out = NULL;
    if (strcmp(path, "-") == 0)
        return lk_seterr(err, LK_EUSAGE, "-: a checkpoint cannot be read from stdin (it is mapped; "
                         "expected a .safetensors file, an index.json or a model directory)");
    lk_st *st = lk_zalloc(1, sizeof *st, "a checkpoint", err);
    if (!st) return LK_ENOMEM;
    atomic_init(&st->refs, 1);
    char *file = NULL;
    int rc = (st->path = lk_dup(path, err)) ? 0 : LK_ENOMEM;
    if (!rc && is_dir(path)) rc = resolve_dir(path, &file, err);
    else if (!rc && !(file = lk_dup(path, err))) rc = LK_ENOMEM;
    if (!rc) {
        if (ends_with(file, ".json")) rc = load_index(st, file, err); /* builds the index itself */
        else if (!(rc = load_file(st, file, err))) rc = build_index(st, err);
    }
    free(file);
    if (rc) {
        lk_st_close(st);
        return rc;
    }
    *out = st;
    return 0;
}

lk_st *lk_st_ref(const lk_st *st) {
    lk_st *s = (lk_st *)st; /* the count is bookkeeping, not the checkpoint's contents */
    atomic_fetch_add(&s->refs, 1);
    return s;
}

void lk_st_close(lk_st *st) {
    if (!st || atomic_fetch_sub(&st->refs, 1) > 1) return;
    for (int i = 0; i < st->n; i++) free((char *)st->t[i].name);
    for (int i = 0; i < st->nfiles; i++) {
        lk_unmap(&st->files[i].map);
        json_decref(st->files[i].meta);
        free(st->files[i].path);
    }
    free(st->files);
    free(st->t);
    free(st->by_name);
    free(st->path);
    free(st);
}

int lk_st_count(const lk_st *st) { return st->n; }
const lk_tensor *lk_st_at(const lk_st *st, int i) { return i >= 0 && i < st->n ? &st->t[i] : NULL; }

const lk_tensor *lk_st_find(const lk_st *st, const char *name) {
    int lo = 0, hi = st->n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        const lk_tensor *t = &st->t[st->by_name[mid]];
        int c = strcmp(name, t->name);
        if (c == 0) return t;
        if (c < 0) hi = mid - 1; else lo = mid + 1;
    }
    return NULL;
}

const char *lk_st_meta(const lk_st *st, const char *key) {
    for (int i = 0; i < st->nfiles; i++) {
        json_t *v = st->files[i].meta ? json_object_get(st->files[i].meta, key) : NULL;
        if (v) return json_string_value(v);
    }
    return NULL;
}

int lk_st_expect(const lk_st *st, const char *name, int ndim, const int64_t *shape,
                 const lk_tensor **out, lk_err *err) {
    char a[256], b[256];
    const lk_tensor *t = lk_st_find(st, name);
    if (out) *out = t;
    if (!t)
        return lk_seterr(err, LK_EINPUT, "%s: no tensor \"%s\" (expected shape %s)", st->path, name,
                         lk_shape_str(b, sizeof b, ndim, shape));
    int same = t->ndim == ndim;
    for (int i = 0; same && i < ndim; i++) same = t->shape[i] == shape[i];
    if (!same) {
        if (out) *out = NULL;
        return lk_seterr(err, LK_EINPUT, "%s: tensor \"%s\": shape %s (expected %s)", t->file, name,
                         lk_shape_str(a, sizeof a, t->ndim, t->shape), lk_shape_str(b, sizeof b, ndim, shape));
    }
    return 0;
}

/* Inline conversions for the load path (the util.h ones cost a call per
 * element: 0.2 G elements/s, i.e. 40 s for an 8B model). Bit-identical to
 * lk_bf16_to_f32 / lk_f16_to_f32 (checked exhaustively by the unit test).
 * They return the float's bits (stored with memcpy). */
static inline uint32_t bf16_bits(uint16_t h) { return (uint32_t)h << 16; }
static inline uint32_t f16_bits(uint16_t h) {
    /* move exponent+mantissa into place and rebias 15 -> 127; Inf/NaN get
     * the top exponent; subnormals are renormalised by a float subtraction.
     * All three are computed and selected with masks (no branches). */
    const uint32_t exp_mask = 0x7c00u << 13, magic_bits = 113u << 23;
    uint32_t u = (uint32_t)(h & 0x7fff) << 13, e = u & exp_mask;
    uint32_t norm = u + ((127 - 15) << 23), infnan = norm + ((128 - 16) << 23), sub_bits = u + magic_bits;
    float sub, magic;
    memcpy(&sub, &sub_bits, 4);
    memcpy(&magic, &magic_bits, 4);
    sub -= magic;
    memcpy(&sub_bits, &sub, 4);
    uint32_t is_inf = 0u - (uint32_t)(e == exp_mask), is_sub = 0u - (uint32_t)(e == 0);
    uint32_t r = (infnan & is_inf) | (sub_bits & is_sub) | (norm & ~(is_inf | is_sub));
    return r | (uint32_t)(h & 0x8000) << 16;
}

int lk_tensor_to_f32(const lk_tensor *t, float *dst, lk_err *err) {
    const uint8_t *p = t->data; /* may be unaligned: read through memcpy */
    size_t n = (size_t)t->numel;
    switch (t->dtype) {
    case LK_DT_F32: memcpy(dst, p, n * 4); return 0;
    case LK_DT_BF16:
    case LK_DT_F16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            uint32_t u = t->dtype == LK_DT_BF16 ? bf16_bits(h) : f16_bits(h);
            memcpy(dst + i, &u, 4);
        }
        return 0;
    case LK_DT_F64:
        for (size_t i = 0; i < n; i++) {
            double x;
            memcpy(&x, p + 8 * i, 8);
            dst[i] = (float)x;
        }
        return 0;
    default:
        return lk_seterr(err, LK_EINPUT, "%s: tensor \"%s\": dtype %s (expected F32, F16, BF16 or F64)",
                         t->file, t->name, lk_dtype_name(t->dtype));
    }
}

/* ---- writer ---- */

typedef struct {
    char *name;
    lk_dtype dtype;
    int ndim;
    int64_t shape[LK_MAX_DIMS];
    void *data; /* (nbytes) copy */
    size_t nbytes;
} stw_tensor;

struct lk_stw {
    stw_tensor *t;
    int n, cap;
    json_t *meta; /* object, insertion order */
    lk_err fail;  /* the first failed lk_stw_add, reported by lk_stw_write */
};

lk_stw *lk_stw_new(void) {
    lk_stw *w = calloc(1, sizeof *w);
    if (w && !(w->meta = json_object())) {
        free(w);
        w = NULL;
    }
    return w;
}

void lk_stw_free(lk_stw *w) {
    if (!w) return;
    for (int i = 0; i < w->n; i++) {
        free(w->t[i].name);
        free(w->t[i].data);
    }
    free(w->t);
    json_decref(w->meta);
    free(w);
}

void lk_stw_add(lk_stw *w, const char *name, lk_dtype dtype, int ndim, const int64_t *shape,
                const void *data) {
    if (!w || w->fail.code) return; /* reported by lk_stw_write */
    if (ndim < 0 || ndim > LK_MAX_DIMS) {
        lk_seterr(&w->fail, LK_EFAIL, "lk_stw_add: %s: %d dims (expected 0 to %d)", name, ndim, LK_MAX_DIMS);
        return;
    }
    if (w->n == w->cap) {
        int cap = w->cap ? 2 * w->cap : 16;
        if (lk_resize(&w->t, (size_t)cap, sizeof *w->t, "the tensors to write", &w->fail)) return;
        w->cap = cap;
    }
    stw_tensor *t = &w->t[w->n];
    memset(t, 0, sizeof *t);
    t->dtype = dtype;
    t->ndim = ndim;
    size_t numel = 1;
    for (int i = 0; i < ndim; i++) numel *= (size_t)(t->shape[i] = shape[i]);
    t->nbytes = numel * lk_dtype_size(dtype);
    if (!(t->name = lk_dup(name, &w->fail)) || !(t->data = lk_alloc(t->nbytes, 1, name, &w->fail))) {
        free(t->name);
        return;
    }
    if (t->nbytes) memcpy(t->data, data, t->nbytes);
    w->n++;
}

void lk_stw_meta(lk_stw *w, const char *key, const char *value) {
    if (w) json_object_set_new(w->meta, key, json_string(value));
}

void lk_stw_metaf(lk_stw *w, const char *key, const char *fmt, ...) {
    char buf[128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    lk_stw_meta(w, key, buf);
}

/* Data order: larger element sizes first (stable), contiguous, as the
 * reference writer does: with the data region starting at a multiple of 8,
 * every tensor is then aligned to its element size, and the file has no holes
 * (the reference reader refuses holes). */
static int data_order(const lk_stw *w, int *order) {
    int k = 0;
    for (size_t sz = 8; sz >= 1; sz /= 2)
        for (int i = 0; i < w->n; i++)
            if (lk_dtype_size(w->t[i].dtype) == sz) order[k++] = i;
    return k;
}

static int cmp_stw_name(const void *a, const void *b, void *ctx) {
    const lk_stw *w = ctx;
    return strcmp(w->t[*(const int *)a].name, w->t[*(const int *)b].name);
}

int lk_stw_write(const lk_stw *w, const char *path, lk_err *err) {
    if (!w) return lk_nomem(err, sizeof(lk_stw), "a safetensors writer");
    if (w->fail.code) {
        if (err) *err = w->fail;
        return w->fail.code;
    }
    int *order = lk_alloc((size_t)w->n, sizeof *order, "the tensor order", err);
    uint64_t *begin = lk_alloc((size_t)w->n, sizeof *begin, "the tensor offsets", err);
    if (!order || !begin) {
        free(order);
        free(begin);
        return LK_ENOMEM;
    }
    /* names: sorted once to find duplicates */
    for (int i = 0; i < w->n; i++) order[i] = i;
    qsort_r(order, w->n, sizeof *order, cmp_stw_name, (void *)w);
    for (int k = 0; k < w->n; k++) {
        const char *name = w->t[order[k]].name;
        int rc = 0;
        if (strcmp(name, "__metadata__") == 0)
            rc = lk_seterr(err, LK_EFAIL, "%s: \"__metadata__\" is not a valid tensor name", path);
        else if (k && strcmp(name, w->t[order[k - 1]].name) == 0)
            rc = lk_seterr(err, LK_EFAIL, "%s: tensor \"%s\" added twice", path, name);
        if (rc) {
            free(order);
            free(begin);
            return rc;
        }
    }
    data_order(w, order);
    uint64_t off = 0;
    for (int k = 0; k < w->n; k++) {
        begin[order[k]] = off;
        off += w->t[order[k]].nbytes;
    }
    /* header: __metadata__ first, then tensors in insertion order */
    json_t *h = json_object();
    if (json_object_size(w->meta)) json_object_set(h, "__metadata__", w->meta);
    for (int i = 0; i < w->n; i++) {
        const stw_tensor *t = &w->t[i];
        json_t *shape = json_array();
        for (int d = 0; d < t->ndim; d++) json_array_append_new(shape, json_integer(t->shape[d]));
        json_t *e = json_pack("{s:s, s:o, s:[I,I]}", "dtype", lk_dtype_name(t->dtype), "shape", shape,
                              "data_offsets", (json_int_t)begin[i],
                              (json_int_t)(begin[i] + t->nbytes));
        json_object_set_new(h, t->name, e);
    }
    char *js = json_dumps(h, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(h);
    if (!js) {
        free(order);
        free(begin);
        return lk_nomem(err, 0, "the safetensors header");
    }
    size_t jl = strlen(js), hl = (jl + 7) / 8 * 8;
    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)hl >> (8 * i));

    lk_out o;
    int rc = lk_out_open(&o, path, err);
    if (!rc) {
        fwrite(len8, 1, 8, o.f);
        fwrite(js, 1, jl, o.f);
        for (size_t i = jl; i < hl; i++) fputc(' ', o.f);
        for (int k = 0; k < w->n; k++) fwrite(w->t[order[k]].data, 1, w->t[order[k]].nbytes, o.f);
        rc = lk_out_commit(&o, err);
    }
    free(js);
    free(order);
    free(begin);
    return rc;
}
