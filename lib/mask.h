/* mask.h - binary K-channel masks: which post-RoPE key channels of each
 * (layer, kv head) are stored for "middle" tokens. */
#ifndef LEANK_MASK_H
#define LEANK_MASK_H

#include "util.h"

typedef struct {
    int n_layers, n_kv_heads, head_dim;
    uint8_t *keep; /* (n_layers, n_kv_heads, head_dim): 1 = channel kept */
} lk_mask;

void lk_mask_init(lk_mask *m, int n_layers, int n_kv_heads, int head_dim, int value);
void lk_mask_free(lk_mask *m);
static inline uint8_t *lk_mask_head(const lk_mask *m, int layer, int kv_head) {
    return m->keep + ((size_t)layer * m->n_kv_heads + kv_head) * m->head_dim;
}
/* Kept channel indices of one head, ascending; returns their count. */
int lk_mask_channels(const lk_mask *m, int layer, int kv_head, int *idx);

/* The LeanK mask rule, shared by leank-train stage 2 and leank-binarize:
 * alpha (n_layers, n_kv_heads, head_dim) -> mask. Exact global top-k: the
 * K = round((1 - ratio) * total) largest alpha values over every channel are
 * "kept" (ties broken by lower flat index); per head the kept count is rounded
 * to the nearest multiple of align (halves up, 0 and head_dim allowed), and
 * that head keeps its top channels by alpha (ties by lower channel index). */
int lk_mask_from_alpha(lk_mask *m, const float *alpha, int n_layers, int n_kv_heads,
                       int head_dim, double ratio, int align, lk_err *err);

/* Files: safetensors (one U8 tensor "layers.{i}" of shape [kv_heads, head_dim]
 * per layer, metadata format=leank-mask) and the TSV text form of
 * ../shared/data/masks (layer, kv_head, kept, comma-separated channels). */
int lk_mask_load(lk_mask *m, const char *path, lk_err *err); /* either format, by content */
int lk_mask_save(const lk_mask *m, const char *path, lk_err *err);
int lk_mask_load_tsv(lk_mask *m, const char *path, lk_err *err);
int lk_mask_save_tsv(const lk_mask *m, const char *path, lk_err *err);

#endif
