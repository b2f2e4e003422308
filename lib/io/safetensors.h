/* safetensors.h - read (mmap) and write safetensors files and sharded
 * Hugging Face checkpoints. Format: u64 little-endian header length N, N bytes
 * of JSON {name: {dtype, shape, data_offsets:[begin,end]}, "__metadata__":
 * {str: str}}, then the data; offsets are relative to the end of the header. */
#ifndef LEANK_SAFETENSORS_H
#define LEANK_SAFETENSORS_H

#include "util.h"

typedef enum {
    LK_DT_F32,
    LK_DT_F16,
    LK_DT_BF16,
    LK_DT_F64,
    LK_DT_I64,
    LK_DT_I32,
    LK_DT_I16,
    LK_DT_I8,
    LK_DT_U8,
    LK_DT_BOOL,
} lk_dtype;

const char *lk_dtype_name(lk_dtype t); /* "F32", ... as in safetensors */
size_t lk_dtype_size(lk_dtype t);
/* "BF16" -> LK_DT_BF16; 0 on success, -1 for an unknown name. */
int lk_dtype_parse(const char *s, lk_dtype *t);

#define LK_MAX_DIMS 8

typedef struct {
    const char *name;
    lk_dtype dtype;
    int ndim;
    int64_t shape[LK_MAX_DIMS];
    int64_t numel;
    const void *data; /* points into the mapping; may be unaligned for >1-byte types */
    size_t nbytes;
    const char *file; /* file it lives in (for messages) */
} lk_tensor;

typedef struct lk_st lk_st; /* an opened checkpoint: one file or many shards */

/* path: a .safetensors file, a model.safetensors.index.json, or a model
 * directory (uses model.safetensors.index.json if present, else
 * model.safetensors, else the single *.safetensors file in it). Validates every
 * header completely; refuses malformed files with a message naming the file,
 * the byte position or tensor, and what was expected (LK_EINPUT; LK_EIO when a
 * file cannot be opened; LK_EUSAGE for "-"). Checked: header length within
 * the file, JSON object without duplicate keys, known dtype, shape of at most
 * LK_MAX_DIMS non-negative ints, data_offsets [begin, end] inside the data
 * region with end - begin == numel * dtype size, no two tensors overlapping
 * (holes between tensors are accepted), __metadata__ string -> string, each
 * tensor name once across shards, every weight_map entry present in its shard.
 * lk_st_at order: header order, shard by shard. */
int lk_st_open(lk_st **out, const char *path, lk_err *err);
/* Another reference to st (for what keeps pointers into its mapping, e.g. a
 * model's F32 weights): st and its tensors' data stay valid until every
 * reference is closed. */
lk_st *lk_st_ref(const lk_st *st);
/* Drop a reference (lk_st_open's or lk_st_ref's); the last one unmaps. */
void lk_st_close(lk_st *st);

int lk_st_count(const lk_st *st);
const lk_tensor *lk_st_at(const lk_st *st, int i);
const lk_tensor *lk_st_find(const lk_st *st, const char *name); /* NULL if absent */
/* Value of a "__metadata__" key (first file that has it), NULL if absent. */
const char *lk_st_meta(const lk_st *st, const char *key);

/* "[2,3,4]" into buf, for messages; returns buf. */
const char *lk_shape_str(char *buf, size_t cap, int ndim, const int64_t *shape);

/* Find name and check it has the given shape (ndim dims); error otherwise. */
int lk_st_expect(const lk_st *st, const char *name, int ndim, const int64_t *shape,
                 const lk_tensor **out, lk_err *err);
/* Convert a F32/F16/BF16 tensor's elements to float32 (dst has numel floats). */
int lk_tensor_to_f32(const lk_tensor *t, float *dst, lk_err *err);

/* Writer: collect tensors (data copied), then write atomically. Failures are
 * kept for the end, as stdio keeps a stream's error: lk_stw_new returns NULL
 * when out of memory and every lk_stw_* call accepts that NULL; an
 * lk_stw_add that fails (out of memory, too many dims) is remembered and the
 * later ones ignored. lk_stw_write reports the first failure (LK_ENOMEM,
 * LK_EFAIL), so a caller adds everything and checks once, there. */
typedef struct lk_stw lk_stw;
lk_stw *lk_stw_new(void);
void lk_stw_free(lk_stw *w);
void lk_stw_add(lk_stw *w, const char *name, lk_dtype dtype, int ndim, const int64_t *shape,
                const void *data);
void lk_stw_meta(lk_stw *w, const char *key, const char *value);
/* printf-style value: lk_stw_metaf(w, "n_layers", "%d", n) */
void lk_stw_metaf(lk_stw *w, const char *key, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* path "-" writes to stdout. Header keys: "__metadata__" first (if any
 * lk_stw_meta), then tensors in insertion order; header padded with spaces to a
 * multiple of 8. Data is contiguous (no holes, as the reference reader
 * requires), larger element sizes first, so every tensor is aligned to its
 * element size. Duplicate names are refused. */
int lk_stw_write(const lk_stw *w, const char *path, lk_err *err);

#endif
