/* plot.h - SVG heatmaps of per-(layer, kv head, channel) values: the alpha
 * scales of leank-train and binary masks (leank-binarize --plot). */
#ifndef LEANK_PLOT_H
#define LEANK_PLOT_H

#include "util.h"

typedef struct {
    const char *title;    /* top line */
    const char *subtitle; /* second line, may be NULL */
    int binary;           /* values are 0/1: two colours (kept / pruned) */
} lk_plot_opts;

/* v (n_layers, n_kv_heads, head_dim); layers are rows (layer 0 on top),
 * channels are columns grouped by head (a dashed line marks head_dim/2, where
 * the rotate_half second halves start). Continuous values are drawn with a
 * viridis-like scale over [0, 1] (clamped) with a legend; the right column
 * shows each layer's mean (continuous) or kept percentage (binary). Written
 * atomically to path ("-" = stdout). */
int lk_plot_heatmap_svg(const char *path, const float *v, int n_layers, int n_kv_heads,
                        int head_dim, const lk_plot_opts *o, lk_err *err);

#endif
