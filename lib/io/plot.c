/* plot.c - SVG heatmaps (see plot.h). Adjacent cells of one colour are merged
 * into one rectangle, so a Llama-sized heatmap (32 x 8 x 128) stays a few
 * hundred kilobytes. */
#include "plot.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define LEVELS 64 /* colour steps of the continuous scale */

/* Viridis, sampled at 9 points; linear interpolation in between. */
static void viridis(double t, int rgb[3]) {
    static const int k[9][3] = {{68, 1, 84},    {71, 44, 122},  {59, 81, 139},
                                {44, 113, 142}, {33, 144, 141}, {39, 173, 129},
                                {92, 200, 99},  {170, 220, 50}, {253, 231, 37}};
    if (!(t > 0)) t = 0;
    if (t > 1) t = 1;
    double x = t * 8;
    int i = (int)x;
    if (i > 7) i = 7;
    double f = x - i;
    for (int c = 0; c < 3; c++) rgb[c] = (int)lround(k[i][c] + f * (k[i + 1][c] - k[i][c]));
}

static const char *KEPT = "#1d4e89", *PRUNED = "#e8ecf1";

static int level(float v) {
    if (!(v > 0)) return 0; /* NaN too */
    if (v >= 1) return LEVELS - 1;
    return (int)(v * (LEVELS - 1) + 0.5f);
}

static void colour(char out[8], int lv, int binary) {
    if (binary) {
        strcpy(out, lv ? KEPT : PRUNED);
        return;
    }
    int rgb[3];
    viridis((double)lv / (LEVELS - 1), rgb);
    snprintf(out, 8, "#%02x%02x%02x", rgb[0], rgb[1], rgb[2]);
}

/* XML-escape s into f */
static void put_text(FILE *f, const char *s) {
    for (; *s; s++) {
        switch (*s) {
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '&': fputs("&amp;", f); break;
        case '"': fputs("&quot;", f); break;
        default: fputc(*s, f);
        }
    }
}

int lk_plot_heatmap_svg(const char *path, const float *v, int n_layers, int n_kv_heads,
                        int head_dim, const lk_plot_opts *o, lk_err *err) {
    const int L = n_layers, H = n_kv_heads, D = head_dim;
    /* geometry: about 1000 px of cells across, rows 8..22 px high */
    double cw = 1000.0 / ((double)H * D);
    if (cw < 1) cw = 1;
    if (cw > 14) cw = 14;
    double gap = 8, rh = 560.0 / L;
    if (rh < 8) rh = 8;
    if (rh > 22) rh = 22;
    double left = 70, top = o->subtitle ? 86 : 70, grid_w = H * D * cw + (H - 1) * gap,
           grid_h = L * rh, right = 110, bottom = 110;
    double W = left + grid_w + right, Ht = top + grid_h + bottom;

    lk_out out;
    if (lk_out_open(&out, path, err)) return err ? err->code : LK_EIO;
    FILE *f = out.f;
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
               "viewBox=\"0 0 %.0f %.0f\" font-family=\"Helvetica, Arial, sans-serif\" "
               "font-size=\"12\">\n", W, Ht, W, Ht);
    fprintf(f, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
    fprintf(f, "<text x=\"%.1f\" y=\"24\" font-size=\"16\" font-weight=\"bold\">", left);
    put_text(f, o->title ? o->title : "");
    fputs("</text>\n", f);
    if (o->subtitle) {
        fprintf(f, "<text x=\"%.1f\" y=\"42\" fill=\"#444\">", left);
        put_text(f, o->subtitle);
        fputs("</text>\n", f);
    }
    /* head labels above each group */
    for (int h = 0; h < H; h++) {
        double x0 = left + h * (D * cw + gap);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">kv head %d</text>\n",
                x0 + D * cw / 2, top - 8, h);
    }
    /* cells in a scaled group: one unit per channel and per layer, so each
     * rectangle is a few small integers; a binary mask draws only its kept
     * runs over a background of the pruned colour */
    double gu = gap / cw; /* head gap in channel units */
    fprintf(f, "<g transform=\"translate(%.2f,%.2f) scale(%.4f,%.4f)\" shape-rendering=\"crispEdges\">\n",
            left, top, cw, rh);
    if (o->binary)
        for (int h = 0; h < H; h++)
            fprintf(f, "<rect x=\"%g\" y=\"0\" width=\"%d\" height=\"%d\" fill=\"%s\"/>\n",
                    h * (D + gu), D, L, PRUNED);
    char col[8];
    double *mean = lk_zalloc((size_t)L, sizeof *mean, "the layer means", err);
    if (!mean) {
        lk_out_abort(&out);
        return LK_ENOMEM;
    }
    for (int l = 0; l < L; l++) {
        double sum = 0;
        for (size_t i = 0; i < (size_t)H * D; i++) {
            float x = v[(size_t)l * H * D + i];
            sum += o->binary ? (x != 0) : (isnan(x) ? 0 : x);
        }
        mean[l] = sum / ((double)H * D);
        fprintf(f, "<g><title>layer %d: %s %.*f%s</title>\n", l, o->binary ? "kept" : "mean",
                o->binary ? 1 : 3, o->binary ? 100 * mean[l] : mean[l], o->binary ? " %" : "");
        for (int h = 0; h < H; h++) {
            const float *row = v + ((size_t)l * H + h) * D;
            for (int c = 0; c < D;) {
                int lv = o->binary ? row[c] != 0 : level(row[c]), e = c + 1;
                while (e < D && (o->binary ? row[e] != 0 : level(row[e])) == lv) e++;
                if (!o->binary || lv) {
                    colour(col, lv, o->binary);
                    fprintf(f, "<rect x=\"%g\" y=\"%d\" width=\"%d\" height=\"1\" fill=\"%s\"/>\n",
                            h * (D + gu) + c, l, e - c, col);
                }
                c = e;
            }
        }
        fputs("</g>\n", f);
    }
    fputs("</g>\n", f);
    /* right column: per-layer figure */
    for (int l = 0; l < L; l++) {
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"%.0f\" fill=\"#333\">",
                left + grid_w + 8, top + l * rh + rh / 2 + 4, rh < 12 ? rh : 11);
        if (o->binary) fprintf(f, "%.1f %%</text>\n", 100 * mean[l]);
        else fprintf(f, "%.3f</text>\n", mean[l]);
    }
    free(mean);
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-weight=\"bold\" fill=\"#333\">%s</text>\n",
            left + grid_w + 8, top - 8, o->binary ? "kept" : "mean");
    /* thin separators: head_dim/2 (rotate_half halves) and every 4th layer */
    for (int h = 0; h < H; h++) {
        double x = left + h * (D * cw + gap) + D / 2 * cw;
        fprintf(f, "<line x1=\"%.2f\" y1=\"%.1f\" x2=\"%.2f\" y2=\"%.1f\" stroke=\"#ff7f0e\" "
                   "stroke-width=\"0.8\" stroke-dasharray=\"3,3\"/>\n", x, top, x, top + grid_h);
    }
    /* layer axis: labels at a spacing of at least 12 px */
    int step = 1;
    while (step * rh < 12) step *= 2;
    for (int l = 0; l < L; l += step)
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" font-size=\"11\">%d</text>\n",
                left - 6, top + l * rh + rh / 2 + 4, l);
    fprintf(f, "<text transform=\"translate(%.1f,%.1f) rotate(-90)\" text-anchor=\"middle\">layer</text>\n",
            left - 40, top + grid_h / 2);
    /* channel axis: 0, D/2, D-1 under each head */
    for (int h = 0; h < H; h++) {
        double x0 = left + h * (D * cw + gap);
        int ticks[3] = {0, D / 2, D - 1};
        for (int t = 0; t < 3; t++) {
            if (t == 1 && D < 4) continue;
            double x = x0 + (ticks[t] + 0.5) * cw;
            fprintf(f, "<line x1=\"%.2f\" y1=\"%.1f\" x2=\"%.2f\" y2=\"%.1f\" stroke=\"#333\"/>\n",
                    x, top + grid_h, x, top + grid_h + 4);
            /* 0 and head_dim-1 anchored away from the neighbouring head's labels */
            fprintf(f, "<text x=\"%.2f\" y=\"%.1f\" text-anchor=\"%s\" font-size=\"10\">%d</text>\n",
                    x, top + grid_h + 15, t == 0 ? "start" : t == 1 ? "middle" : "end", ticks[t]);
        }
    }
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">channel within kv head "
               "(post-RoPE; dashed: head_dim/2, where the second rotate_half half starts)</text>\n",
            left + grid_w / 2, top + grid_h + 34);
    /* legend */
    double ly = top + grid_h + 56;
    if (o->binary) {
        fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"16\" height=\"12\" fill=\"%s\" stroke=\"#999\"/>"
                   "<text x=\"%.1f\" y=\"%.1f\">kept (stored for middle tokens)</text>\n",
                left, ly, KEPT, left + 22, ly + 10);
        fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"16\" height=\"12\" fill=\"%s\" stroke=\"#999\"/>"
                   "<text x=\"%.1f\" y=\"%.1f\">pruned</text>\n",
                left + 240, ly, PRUNED, left + 262, ly + 10);
    } else {
        fputs("<defs><linearGradient id=\"scale\">", f);
        for (int i = 0; i <= 8; i++) {
            int rgb[3];
            viridis(i / 8.0, rgb);
            fprintf(f, "<stop offset=\"%.3f\" stop-color=\"#%02x%02x%02x\"/>", i / 8.0, rgb[0], rgb[1], rgb[2]);
        }
        fputs("</linearGradient></defs>\n", f);
        double bw = 240;
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">\xce\xb1</text>\n", left - 6, ly + 11);
        fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.0f\" height=\"12\" fill=\"url(#scale)\" stroke=\"#999\"/>\n",
                left, ly, bw);
        for (int i = 0; i <= 4; i++)
            fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"10\">%.2g</text>\n",
                    left + bw * i / 4, ly + 25, i / 4.0);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" fill=\"#444\">values outside [0, 1] are clamped</text>\n",
                left + bw + 14, ly + 10);
    }
    fputs("</svg>\n", f);
    return lk_out_commit(&out, err);
}
