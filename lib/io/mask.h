/* mask.h - binary K-channel masks: which post-RoPE key channels of each
 * (layer, kv head) are stored for "middle" tokens. */
#ifndef LEANK_MASK_H
#define LEANK_MASK_H

#include "util.h"

typedef struct {
    int n_layers, n_kv_heads, head_dim;
    uint8_t *keep; /* (n_layers, n_kv_heads, head_dim): 1 = channel kept */
    int sink, recent; /* the full-width cache windows the mask was trained for
                       * (a plan: packed for); -1 = not recorded */
} lk_mask;

/* Allocates keep (every channel = value); windows not recorded (-1). 0, or
 * LK_ENOMEM with m left empty (keep NULL). */
int lk_mask_init(lk_mask *m, int n_layers, int n_kv_heads, int head_dim, int value, lk_err *err);
void lk_mask_free(lk_mask *m);
static inline uint8_t *lk_mask_head(const lk_mask *m, int layer, int kv_head) {
    return m->keep + ((size_t)layer * m->n_kv_heads + kv_head) * m->head_dim;
}
/* Kept channel indices of one head, ascending; returns their count. */
int lk_mask_channels(const lk_mask *m, int layer, int kv_head, int *idx);
/* Kept channels of one head (its width), and of the whole mask. */
int lk_mask_width(const lk_mask *m, int layer, int kv_head);
size_t lk_mask_count(const lk_mask *m);

/* The LeanK mask rule, shared by leank-train stage 2 and leank-binarize:
 * alpha (n_layers, n_kv_heads, head_dim) -> mask. With N = every channel and
 * K = floor((1 - ratio) * N + 0.5):
 *   1. global top-k: order all N channels by alpha descending, ties by lower
 *      flat index ((layer * n_kv_heads + head) * head_dim + channel); the first
 *      K are "selected" (exactly K, whatever the ties: all-zero alpha selects
 *      the K lowest flat indices, never everything);
 *   2. per head, the selected count c is rounded to the nearest multiple of
 *      align, halves up: w = floor((c + floor(align / 2)) / align) * align
 *      (0 and head_dim included);
 *   3. the head keeps its first w channels in the same order (alpha
 *      descending, ties by lower channel index).
 * The achieved kept fraction (sum of w / N) differs from 1 - ratio by at most
 * align / (2 * head_dim) (exactly 1 - ratio up to K's rounding when align = 1).
 * m is allocated here (lk_mask_free it); on error it is left empty
 * (keep NULL). Errors: ratio outside [0, 1) or align not dividing head_dim
 * (LK_EUSAGE), a NaN alpha (LK_EINPUT). */
int lk_mask_from_alpha(lk_mask *m, const float *alpha, int n_layers, int n_kv_heads,
                       int head_dim, double ratio, int align, lk_err *err);

/* Files.
 * Safetensors mask: one U8 tensor "layers.{i}" of shape [n_kv_heads,
 * head_dim] per layer i (values 0/1; BOOL accepted on input), metadata
 * format=leank-mask, version=1, n_layers, n_kv_heads, head_dim, kept (the kept
 * fraction, %.6f), and when derived from alpha: ratio (target, %g), align.
 * TSV (the form of ../shared/data/masks): lines starting with '#' are comments;
 * every other line is layer<TAB>kv_head<TAB>kept<TAB>c1,c2,... (0-based
 * channels, ascending on output, any order on input; the fourth field is
 * empty when kept is 0); exactly one line per (layer, kv_head). Our writer adds
 * the comment "# leank-mask n_layers=L n_kv_heads=H head_dim=D", which the
 * reader uses for head_dim, followed by " sink=S recent=R" when the mask
 * records its windows.
 * Windows: the safetensors metadata sink and recent (decimal, both or
 * neither), the TSV comment's sink= and recent=, a plan's sink and recent;
 * loaded into m->sink / m->recent (-1 when absent), written when >= 0. */
/* lk_mask_load: either format, by content ("-" = stdin); a decode plan
 * (leank-pack, format=leank-plan) is accepted too and gives its mask. */
int lk_mask_load(lk_mask *m, const char *path, lk_err *err);
int lk_mask_save(const lk_mask *m, const char *path, lk_err *err);
int lk_mask_load_tsv(lk_mask *m, const char *path, lk_err *err);
int lk_mask_save_tsv(const lk_mask *m, const char *path, lk_err *err);

/* lk_mask_load / lk_mask_load_tsv with a known head_dim (0 = unknown). A TSV
 * gets its head_dim from, in order: this argument, our "# leank-mask" comment,
 * else the smallest power of two > the largest channel listed. */
int lk_mask_load_dim(lk_mask *m, const char *path, int head_dim, lk_err *err);
int lk_mask_load_tsv_dim(lk_mask *m, const char *path, int head_dim, lk_err *err);
/* lk_mask_load_dim of a file (not "-") named `name` in messages (a
 * temporary copy of stdin, say). */
int lk_mask_load_as(lk_mask *m, const char *path, const char *name, int head_dim, lk_err *err);

/* A name that is no file in the working directory and has no '/'
 * (qwen2.5-coder-1.5b-instruct) as the path of a mask leank ships:
 * share/leank/masks/NAME, then NAME.safetensors (data/masks beside an
 * uninstalled bin/). Malloc'd; NULL when there is none (use the name as given). */
char *lk_mask_shipped(const char *name);
/* Parse TSV text (name for messages). */
int lk_mask_parse_tsv(lk_mask *m, const char *text, size_t len, const char *name, int head_dim,
                      lk_err *err);
/* lk_mask_save with the derivation recorded in the metadata (ratio < 0:
 * not recorded; align 0: not recorded; source NULL: not recorded). */
int lk_mask_save_meta(const lk_mask *m, const char *path, double ratio, int align,
                      const char *source, lk_err *err);

/* The windows a mask file records (any form lk_mask_load reads, "-" not
 * allowed: it would consume stdin): returns 1 and sets *sink and *recent when
 * it records them, 0 when it does not (both set to -1), or -LK_E* with err
 * set when the file cannot be read as a mask. */
int lk_mask_windows(const char *path, int *sink, int *recent, lk_err *err);

/* The windows to run a mask with: sink_opt / recent_opt when given (>= 0,
 * e.g. --sink/--recent), else the mask's recorded ones, else def_sink /
 * def_recent. Says on stderr ("PROG: --sink 32 overrides the 64 that MASK
 * was trained for") when an option overrides a recorded window, and, when
 * quiet is 0, when a mask records none and the defaults are used. */
void lk_mask_pick_windows(const lk_mask *m, const char *mask_name, int sink_opt, int recent_opt,
                          int def_sink, int def_recent, int quiet, int *sink, int *recent);

/* Error (LK_EINPUT) unless the mask has shape (n_layers, n_kv_heads,
 * head_dim); the message names the mask file and the model. */
int lk_mask_check_shape(const lk_mask *m, const char *mask_name, int n_layers, int n_kv_heads,
                        int head_dim, const char *model_name, lk_err *err);

/* Summary figures of a mask (leank-binarize --report, leank-pack). RoPE
 * bands: channel pair i is channels i and i + head_dim/2 (HF rotate_half), pair
 * 0 rotating fastest; the head_dim/2 pairs are split into n_bands equal bands
 * (band 0 = highest frequency), n_bands = min(8, head_dim/2). */
#define LK_MASK_MAX_BANDS 8
typedef struct {
    size_t total, kept;         /* channels */
    int heads, heads_zero;      /* (layer, kv head) pairs; those of width 0 (middle V dropped) */
    int *width_hist;            /* (head_dim + 1) heads of each width */
    int n_bands, band_pairs;    /* bands, pairs per band */
    double band_kept[LK_MASK_MAX_BANDS]; /* kept fraction of the band's channels */
    double *layer_kept;         /* (n_layers) kept fraction of the layer's channels */
    int *layer_zero;            /* (n_layers) width-0 heads of the layer */
} lk_mask_stats;
int lk_mask_stats_compute(const lk_mask *m, lk_mask_stats *s, lk_err *err); /* 0 or LK_ENOMEM */
void lk_mask_stats_free(lk_mask_stats *s);

#endif
