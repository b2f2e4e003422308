/* plan.h - the decode plan (leank-pack): a mask laid out for one model, i.e.
 * the LeanK KV-cache layout that leank-decode and the GPU kernel consume.
 *
 * Cache layout the plan describes (per layer l; E = bytes per element):
 *   full tokens (the first `sink` positions and the `recent` latest ones):
 *     K and V rows of n_kv_heads * head_dim elements, as a dense cache;
 *   middle tokens (every other position), K: one row of k_row[l] elements per
 *     token, the concatenation over kv heads h (ascending) of the head's kept
 *     channels chan[l][h][0 .. width[l][h]) (ascending); head h starts at
 *     column k_col[l][h]. A head-major store (head, token, width) uses the
 *     same numbers: head h's block starts at k_col[l][h] * max_middle.
 *   middle tokens, V: one row of v_row[l] elements, the full head_dim values
 *     of the heads with width > 0 (ascending), head h at column v_col[l][h];
 *     v_col = -1 for a head of width 0 (its middle tokens are not attended).
 *   k_off[l] / v_off[l]: prefix sums of k_row / v_row over layers (a single
 *   per-token row spanning every layer puts layer l at that offset);
 *   k_off[n_layers] is the middle-K elements per token over all layers. */
#ifndef LEANK_PLAN_H
#define LEANK_PLAN_H

#include "config.h"
#include "mask.h"
#include "util.h"

#define LK_PLAN_VERSION 1

/* Full-width windows when neither the file nor the command line gives them. */
#define LK_PLAN_DEFAULT_SINK 128
#define LK_PLAN_DEFAULT_RECENT 1024

typedef struct {
    int n_layers, n_kv_heads, head_dim, n_heads;
    int sink, recent;  /* full-width windows */
    long context;      /* tokens the plan's report was made for (information) */
    char dtype[8];     /* cache element type: "bf16", "f16" or "f32" */
    int elem_bytes;    /* 2 or 4 */
    int align;         /* largest power of two (<= head_dim) dividing every width */
    int *width;        // (layer, kv_head) kept K channels of middle tokens
    int *chan;         // (layer, kv_head, head_dim) kept channels ascending, then -1
    int *k_col;        // (layer, kv_head) column of the head in the layer's middle-K row
    int *v_col;        // (layer, kv_head) column in the middle-V row, -1 = middle V dropped
    int *k_row;        // (layer) middle-K row width = sum of the layer's widths
    int *v_row;        // (layer) middle-V row width = heads with width > 0 * head_dim
    int64_t *k_off;    // (layer + 1) prefix sums of k_row
    int64_t *v_off;    // (layer + 1) prefix sums of v_row
} lk_plan;

/* Element size of a cache dtype name ("bf16", "f16", "f32"); 0 if unknown. */
int lk_plan_dtype_bytes(const char *dtype);

/* Build from a mask and a model config (shape checked: LK_EINPUT naming
 * mask_name and model_name). sink, recent >= 0; dtype as above. */
int lk_plan_build(lk_plan *p, const lk_mask *m, const char *mask_name, const lk_config *c,
                  const char *model_name, int sink, int recent, long context, const char *dtype,
                  lk_err *err);
void lk_plan_free(lk_plan *p);

/* The mask the plan encodes (allocated; lk_mask_free it). 0 or LK_ENOMEM. */
int lk_plan_mask(const lk_plan *p, lk_mask *m, lk_err *err);

/* Bytes of one token's K (and V) over all layers: dense, and as a middle
 * token of the plan. */
typedef struct {
    int64_t k_dense, v_dense;   /* per token, every layer */
    int64_t k_middle, v_middle; /* per middle token, every layer */
    int64_t n_full, n_middle;   /* tokens of each kind at the given context */
    int64_t total_dense, total; /* K+V bytes at the given context */
    int64_t k_total, v_total;   /* pruned K and V bytes at the given context */
} lk_plan_bytes;
void lk_plan_bytes_at(const lk_plan *p, long context, lk_plan_bytes *b);

/* File: safetensors with I32 tensors width [L, H], channels [L, H, head_dim],
 * k_col [L, H], v_col [L, H], k_row [L], v_row [L] and I64 k_off [L+1],
 * v_off [L+1]; metadata format=leank-plan, version (LK_PLAN_VERSION),
 * n_layers, n_kv_heads, head_dim, n_heads, sink, recent, context, dtype,
 * align, plus the free-text entries given in extra (key, value pairs, NULL
 * terminated; may be NULL), e.g. model and mask. The loader checks the magic,
 * the version and that every table is consistent with the widths. */
int lk_plan_save(const lk_plan *p, const char *path, const char *const *extra, lk_err *err);
int lk_plan_load(lk_plan *p, const char *path, lk_err *err);

/* The GPU engine's paged cache (kernels/kvcache.h) for one sequence of
 * max_len positions with plan p (NULL: dense) of config c, elem_bytes per
 * element: one definition for the engine's reservations and for leank-pack's
 * prediction of the largest batch. Blocks hold 32 dense tokens (every
 * layer's K and V), rounded up to 256 bytes; a full page holds full_tokens
 * sink/recent slots, a middle page mid_tokens pruned middle tokens. */
typedef struct {
    size_t block_bytes;
    int full_tokens, mid_tokens; /* per page */
    int n_full, n_mid;           /* pages the sequence reserves */
    size_t bytes;                /* (n_full + n_mid) * block_bytes */
} lk_kv_pages;
void lk_kv_pages_at(const lk_config *c, const lk_plan *p, int elem_bytes, long max_len, lk_kv_pages *out);

/* The cache geometry for decoding from a file given as --mask or --plan:
 * a plan (leank-pack) is loaded as it is; a mask (safetensors or TSV) gets
 * a plan made in memory (dtype, context 0). Windows: sink/recent >= 0
 * override the file's; -1 takes the plan's (a mask's: the defaults above).
 * *overridden (may be NULL) is set when an override changed a plan's
 * window. The plan's shape is checked against the model (c, model_name).
 * A bare name that is no file here (qwen2.5-coder-1.5b-instruct) names a
 * mask leank ships (share/leank/masks; data/masks in the source tree). */
int lk_plan_open(lk_plan *p, const char *path, const lk_config *c, const char *model_name, int sink,
                 int recent, const char *dtype, int *overridden, lk_err *err);

#endif
