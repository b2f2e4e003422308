/* mask.c - binary K-channel masks: the LeanK rule (alpha -> mask), the
 * safetensors and TSV files, summary figures. */
#include "mask.h"

#include "config.h" /* LK_MAX_* */

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "safetensors.h"

/* a mask or plan read whole (a TSV, or stdin): 80 layers x 8 heads x 128
 * channels are 0.3 MB; far more is the wrong file, or an endless one */
#define MASK_MAX ((size_t)64 << 20)

int lk_mask_init(lk_mask *m, int n_layers, int n_kv_heads, int head_dim, int value, lk_err *err) {
    memset(m, 0, sizeof *m);
    size_t n = (size_t)n_layers * n_kv_heads * head_dim;
    if (!(m->keep = lk_alloc(n, 1, "a mask", err))) return LK_ENOMEM;
    memset(m->keep, value ? 1 : 0, n);
    m->n_layers = n_layers;
    m->n_kv_heads = n_kv_heads;
    m->head_dim = head_dim;
    m->sink = m->recent = -1;
    return 0;
}

void lk_mask_free(lk_mask *m) {
    if (!m) return;
    free(m->keep);
    memset(m, 0, sizeof *m);
}

int lk_mask_channels(const lk_mask *m, int layer, int kv_head, int *idx) {
    const uint8_t *k = lk_mask_head(m, layer, kv_head);
    int n = 0;
    for (int c = 0; c < m->head_dim; c++)
        if (k[c]) idx[n++] = c;
    return n;
}

int lk_mask_width(const lk_mask *m, int layer, int kv_head) {
    const uint8_t *k = lk_mask_head(m, layer, kv_head);
    int n = 0;
    for (int c = 0; c < m->head_dim; c++) n += k[c] != 0;
    return n;
}

size_t lk_mask_count(const lk_mask *m) {
    size_t n = (size_t)m->n_layers * m->n_kv_heads * m->head_dim, kept = 0;
    for (size_t i = 0; i < n; i++) kept += m->keep[i] != 0;
    return kept;
}

/* ---- the rule ---- */

/* Sort key: ascending order of the key = alpha descending, then flat index
 * ascending. The float's bits are mapped to an unsigned integer that orders
 * like the float (negatives flipped), then complemented for "descending". */
static uint64_t rank_key(float a, uint32_t idx) {
    if (a == 0.0f) a = 0.0f; /* -0 ranks as +0 */
    uint32_t u;
    memcpy(&u, &a, 4);
    u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
    return ((uint64_t)~u << 32) | idx;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

int lk_mask_from_alpha(lk_mask *m, const float *alpha, int n_layers, int n_kv_heads,
                       int head_dim, double ratio, int align, lk_err *err) {
    memset(m, 0, sizeof *m);
    if (!(ratio >= 0.0 && ratio < 1.0))
        return lk_seterr(err, LK_EUSAGE, "ratio %g is outside [0, 1) (expected the fraction of channels to prune)", ratio);
    if (n_layers <= 0 || n_kv_heads <= 0 || head_dim <= 0)
        return lk_seterr(err, LK_EINPUT, "alpha shape [%d, %d, %d] is empty (expected positive sizes)",
                         n_layers, n_kv_heads, head_dim);
    if (align < 1 || head_dim % align)
        return lk_seterr(err, LK_EUSAGE, "align %d does not divide head_dim %d (expected a divisor such as 1, 8, 32)",
                         align, head_dim);
    size_t n = (size_t)n_layers * n_kv_heads * head_dim;
    if (n > UINT32_MAX) return lk_seterr(err, LK_EINPUT, "alpha has %zu values (too many)", n);
    for (size_t i = 0; i < n; i++)
        if (isnan(alpha[i]))
            return lk_seterr(err, LK_EINPUT, "alpha[%zu, %zu, %zu] is NaN (expected finite scales)",
                             i / ((size_t)n_kv_heads * head_dim), i / head_dim % n_kv_heads,
                             i % head_dim);

    size_t n_heads = (size_t)n_layers * n_kv_heads;
    uint64_t *order = lk_alloc(n, sizeof *order, "the channel order", err);
    int *cnt = lk_zalloc(n_heads, sizeof *cnt, "the head widths", err);
    if (!order || !cnt || lk_mask_init(m, n_layers, n_kv_heads, head_dim, 0, err)) {
        free(order);
        free(cnt);
        return LK_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) order[i] = rank_key(alpha[i], (uint32_t)i);
    qsort(order, n, sizeof *order, cmp_u64);

    size_t k = (size_t)floor((1.0 - ratio) * (double)n + 0.5);
    if (k > n) k = n;
    for (size_t r = 0; r < k; r++) cnt[(uint32_t)order[r] / head_dim]++;
    for (size_t h = 0; h < n_heads; h++) cnt[h] = (cnt[h] + align / 2) / align * align;

    /* Walking the whole order, each head takes its first w channels: that is
     * the head's own top-w by (alpha desc, channel asc), since the flat index
     * order within one head is the channel order. */
    for (size_t r = 0; r < n; r++) {
        uint32_t i = (uint32_t)order[r];
        if (cnt[i / head_dim] > 0) {
            cnt[i / head_dim]--;
            m->keep[i] = 1;
        }
    }
    free(cnt);
    free(order);
    return 0;
}

int lk_mask_check_shape(const lk_mask *m, const char *mask_name, int n_layers, int n_kv_heads,
                        int head_dim, const char *model_name, lk_err *err) {
    if (m->n_layers == n_layers && m->n_kv_heads == n_kv_heads && m->head_dim == head_dim) return 0;
    return lk_seterr(err, LK_EINPUT,
                     "%s: mask has shape [%d layers, %d kv heads, %d head_dim] but %s has "
                     "[%d, %d, %d] (expected a mask made for this model)",
                     mask_name, m->n_layers, m->n_kv_heads, m->head_dim, model_name, n_layers,
                     n_kv_heads, head_dim);
}

/* ---- TSV ---- */

typedef struct {
    int layer, head, line;
    size_t first, n; /* range in the channel array */
} tsv_row;

/* Parse a non-negative decimal integer of s[0..len); -1 if not one. */
static long parse_uint(const char *s, size_t len) {
    if (len == 0 || len > 9) return -1;
    long v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

/* "# leank-mask n_layers=L n_kv_heads=H head_dim=D": our header comment.
 * Fills dims[0..2] (0 where absent); returns 1 if the comment is ours. */
static int tsv_comment_dims(const char *s, size_t len, int dims[3]) {
    const char *tag = "leank-mask ";
    const char *p = s + 1;
    while (p < s + len && *p == ' ') p++;
    if ((size_t)(s + len - p) < strlen(tag) || memcmp(p, tag, strlen(tag))) return 0;
    char buf[256];
    size_t n = (size_t)(s + len - p) < sizeof buf - 1 ? (size_t)(s + len - p) : sizeof buf - 1;
    memcpy(buf, p, n);
    buf[n] = 0;
    const char *keys[3] = {"n_layers=", "n_kv_heads=", "head_dim="};
    const long max[3] = {LK_MAX_LAYERS, LK_MAX_HEADS, LK_MAX_HEAD_DIM};
    for (int i = 0; i < 3; i++) {
        const char *q = strstr(buf, keys[i]);
        long v = q ? strtol(q + strlen(keys[i]), NULL, 10) : 0;
        dims[i] = v > 0 && v <= max[i] ? (int)v : (q ? -1 : 0); /* -1: present but out of bounds */
    }
    return 1;
}

/* The " sink=S recent=R" of our header comment: win[0..1] = -1 where absent,
 * -2 where present but not an integer in [0, 2^30]. */
static void tsv_comment_windows(const char *s, size_t len, int win[2]) {
    char buf[256];
    size_t n = len < sizeof buf - 1 ? len : sizeof buf - 1;
    memcpy(buf, s, n);
    buf[n] = 0;
    const char *keys[2] = {" sink=", " recent="};
    for (int i = 0; i < 2; i++) {
        const char *q = strstr(buf, keys[i]);
        if (!q) continue;
        char *end;
        long v = strtol(q + strlen(keys[i]), &end, 10);
        win[i] = end != q + strlen(keys[i]) && (*end == 0 || *end == ' ' || *end == '\t') && v >= 0 &&
                         v <= (1L << 30)
                     ? (int)v
                     : -2;
    }
}

int lk_mask_parse_tsv(lk_mask *m, const char *text, size_t len, const char *name, int head_dim,
                      lk_err *err) {
    memset(m, 0, sizeof *m);
    tsv_row *rows = NULL;
    int *chan = NULL;
    size_t n_rows = 0, cap_rows = 0, n_chan = 0, cap_chan = 0;
    int max_layer = -1, max_head = -1, max_chan = -1, rc = 0;
    int cdims[3] = {0, 0, 0}; /* from our header comment, if any */
    int cwin[2] = {-1, -1}; /* its sink= and recent= */
    /* layers, heads, channels: within the model bounds, so that the mask
     * allocated below (one byte per line and channel) stays small */
    const char *p = text, *end = text + len;
    for (int line = 1; p < end; line++) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol) eol = end;
        const char *e = eol;
        if (e > p && e[-1] == '\r') e--;
        const char *s = p;
        p = eol < end ? eol + 1 : end;
        const char *t = s;
        while (t < e && (*t == ' ' || *t == '\t')) t++;
        if (t == e) continue; /* blank */
        if (*t == '#') {
            if (tsv_comment_dims(t, (size_t)(e - t), cdims) && (cdims[0] < 0 || cdims[1] < 0 || cdims[2] < 0)) {
                rc = lk_seterr(err, LK_EINPUT, "%s:%d: bad leank-mask header (expected n_layers in [1, %d], "
                               "n_kv_heads in [1, %d] and head_dim in [1, %d])", name, line, LK_MAX_LAYERS,
                               LK_MAX_HEADS, LK_MAX_HEAD_DIM);
                goto out;
            }
            if (tsv_comment_dims(t, (size_t)(e - t), cdims)) {
                tsv_comment_windows(t, (size_t)(e - t), cwin);
                if (cwin[0] == -2 || cwin[1] == -2 || (cwin[0] < 0) != (cwin[1] < 0)) {
                    rc = lk_seterr(err, LK_EINPUT, "%s:%d: bad leank-mask header windows (expected both sink= and recent=, integers in [0, 2^30])",
                                   name, line);
                    goto out;
                }
            }
            continue;
        }
        /* split into tab-separated fields */
        const char *f[5];
        size_t fl[5];
        int nf = 0;
        for (const char *q = s;;) {
            const char *tab = memchr(q, '\t', (size_t)(e - q));
            const char *fe = tab ? tab : e;
            if (nf < 5) {
                f[nf] = q;
                fl[nf] = (size_t)(fe - q);
            }
            nf++;
            if (!tab) break;
            q = tab + 1;
        }
        if (nf == 3) { /* kept 0 may come without the (empty) channel field */
            f[3] = e;
            fl[3] = 0;
        } else if (nf != 4) {
            rc = lk_seterr(err, LK_EINPUT,
                           "%s:%d: %d tab-separated fields (expected 4: layer, kv_head, kept, "
                           "comma-separated channels)", name, line, nf);
            goto out;
        }
        long layer = parse_uint(f[0], fl[0]), head = parse_uint(f[1], fl[1]),
             kept = parse_uint(f[2], fl[2]);
        if (layer < 0 || layer >= LK_MAX_LAYERS || head < 0 || head >= LK_MAX_HEADS || kept < 0 ||
            kept > LK_MAX_HEAD_DIM) {
            static const char *const names[3] = {"layer", "kv_head", "kept"};
            static const int lim[3] = {LK_MAX_LAYERS, LK_MAX_HEADS, LK_MAX_HEAD_DIM + 1};
            int k = layer < 0 || layer >= LK_MAX_LAYERS ? 0 : head < 0 || head >= LK_MAX_HEADS ? 1 : 2;
            const char *what = names[k];
            rc = lk_seterr(err, LK_EINPUT, "%s:%d: bad %s '%.*s' (expected an integer in [0, %d))",
                           name, line, what, (int)(fl[k] > 40 ? 40 : fl[k]), f[k], lim[k]);
            goto out;
        }
        if ((rc = lk_grow(&rows, &cap_rows, n_rows + 1, sizeof *rows, "the mask lines", err))) goto out;
        tsv_row *r = &rows[n_rows++];
        r->layer = (int)layer;
        r->head = (int)head;
        r->line = line;
        r->first = n_chan;
        r->n = 0;
        for (const char *q = f[3], *qe = f[3] + fl[3]; q < qe;) {
            const char *comma = memchr(q, ',', (size_t)(qe - q));
            const char *ce = comma ? comma : qe;
            long c = parse_uint(q, (size_t)(ce - q));
            if (c < 0 || c >= LK_MAX_HEAD_DIM || (head_dim > 0 && c >= head_dim)) {
                int w = (int)(ce - q);
                if (head_dim > 0)
                    rc = lk_seterr(err, LK_EINPUT, "%s:%d: bad channel '%.*s' (expected integers in [0, %d))",
                                   name, line, w > 40 ? 40 : w, q, head_dim);
                else
                    rc = lk_seterr(err, LK_EINPUT, "%s:%d: bad channel '%.*s' (expected integers in [0, %d) "
                                   "separated by commas)", name, line, w > 40 ? 40 : w, q, LK_MAX_HEAD_DIM);
                goto out;
            }
            if ((rc = lk_grow(&chan, &cap_chan, n_chan + 1, sizeof *chan, "the mask channels", err))) goto out;
            chan[n_chan++] = (int)c;
            r->n++;
            if (c > max_chan) max_chan = (int)c;
            if (!comma) break;
            q = comma + 1;
            if (q == qe) { /* trailing comma */
                rc = lk_seterr(err, LK_EINPUT, "%s:%d: empty channel after ',' (expected integers separated by commas)", name, line);
                goto out;
            }
        }
        if ((long)r->n != kept) {
            rc = lk_seterr(err, LK_EINPUT, "%s:%d: kept is %ld but %zu channels are listed (expected equal)",
                           name, line, kept, r->n);
            goto out;
        }
        if (layer > max_layer) max_layer = (int)layer;
        if (head > max_head) max_head = (int)head;
    }
    if (n_rows == 0) {
        rc = lk_seterr(err, LK_EINPUT, "%s: no mask lines (expected layer<TAB>kv_head<TAB>kept<TAB>channels lines)", name);
        goto out;
    }
    /* a file cut short at a line boundary still parses: our header says
     * how many layers and heads there must be */
    if ((cdims[0] > 0 && cdims[0] != max_layer + 1) || (cdims[1] > 0 && cdims[1] != max_head + 1)) {
        rc = lk_seterr(err, LK_EINPUT, "%s: lines cover %d layers x %d kv heads but the header says %d x %d (expected a complete mask; truncated file?)",
                       name, max_layer + 1, max_head + 1, cdims[0], cdims[1]);
        goto out;
    }
    if (head_dim > 0 && cdims[2] > 0 && cdims[2] != head_dim) {
        rc = lk_seterr(err, LK_EINPUT, "%s: header says head_dim=%d but the model has head_dim %d (expected a "
                       "mask made for this model)", name, cdims[2], head_dim);
        goto out;
    }
    if (head_dim <= 0) head_dim = cdims[2];
    if (head_dim <= 0) { /* infer: smallest power of two above the largest channel */
        head_dim = 1;
        while (head_dim <= max_chan) head_dim *= 2;
    } else if (max_chan >= head_dim) {
        for (size_t i = 0; i < n_rows; i++)
            for (size_t j = 0; j < rows[i].n; j++)
                if (chan[rows[i].first + j] >= head_dim) {
                    rc = lk_seterr(err, LK_EINPUT, "%s:%d: channel %d is out of range (expected integers in [0, %d))",
                                   name, rows[i].line, chan[rows[i].first + j], head_dim);
                    goto out;
                }
    }
    int nl = max_layer + 1, nh = max_head + 1;
    if (n_rows < (size_t)nl * nh) {
        /* a head has no line: found from the sorted (layer, head) keys, before
         * allocating nl x nh x head_dim for what may be a few stray lines */
        uint64_t *key = lk_alloc(n_rows, sizeof *key, "the mask lines", err), want = 0;
        if (!key) {
            rc = LK_ENOMEM;
            goto out;
        }
        for (size_t i = 0; i < n_rows; i++) key[i] = (uint64_t)rows[i].layer * nh + rows[i].head;
        qsort(key, n_rows, sizeof *key, cmp_u64);
        for (size_t i = 0; i < n_rows && key[i] <= want; i++) want += key[i] == want;
        free(key);
        rc = lk_seterr(err, LK_EINPUT, "%s: no line for layer %d kv_head %d (expected one line per (layer, kv_head) of a %d x %d mask)",
                       name, (int)(want / nh), (int)(want % nh), nl, nh);
        goto out;
    }
    int *seen = lk_zalloc((size_t)nl * nh, sizeof *seen, "the mask lines", err); /* line of each (layer, head) */
    if (!seen || lk_mask_init(m, nl, nh, head_dim, 0, err)) {
        free(seen);
        rc = LK_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < n_rows && !rc; i++) {
        tsv_row *r = &rows[i];
        int *sl = &seen[(size_t)r->layer * nh + r->head];
        if (*sl) {
            rc = lk_seterr(err, LK_EINPUT, "%s:%d: second line for layer %d kv_head %d (first at line %d; expected one line per head)",
                           name, r->line, r->layer, r->head, *sl);
            break;
        }
        *sl = r->line;
        uint8_t *k = lk_mask_head(m, r->layer, r->head);
        for (size_t j = 0; j < r->n; j++) {
            int c = chan[r->first + j];
            if (k[c]) {
                rc = lk_seterr(err, LK_EINPUT, "%s:%d: channel %d listed twice (expected distinct channels)",
                               name, r->line, c);
                break;
            }
            k[c] = 1;
        }
    }
    /* with n_rows >= nl x nh and no line twice, every head has its line */
    free(seen);
    m->sink = cwin[0];
    m->recent = cwin[1];
    if (rc) lk_mask_free(m);
out:
    free(rows);
    free(chan);
    return rc;
}

int lk_mask_load_tsv_dim(lk_mask *m, const char *path, int head_dim, lk_err *err) {
    char *text;
    size_t len;
    memset(m, 0, sizeof *m);
    if (lk_read_file(path, MASK_MAX, "a mask", &text, &len, err)) return err ? err->code : LK_EIO;
    int rc = lk_mask_parse_tsv(m, text, len, strcmp(path, "-") ? path : "<stdin>", head_dim, err);
    free(text);
    return rc;
}

int lk_mask_load_tsv(lk_mask *m, const char *path, lk_err *err) {
    return lk_mask_load_tsv_dim(m, path, 0, err);
}

int lk_mask_save_tsv(const lk_mask *m, const char *path, lk_err *err) {
    lk_out o;
    if (lk_out_open(&o, path, err)) return err ? err->code : LK_EIO;
    fprintf(o.f, "# layer\tkv_head\tkept\tchannels (0-based, post-RoPE, rotate_half layout)\n");
    fprintf(o.f, "# leank-mask n_layers=%d n_kv_heads=%d head_dim=%d", m->n_layers, m->n_kv_heads,
            m->head_dim);
    if (m->sink >= 0 && m->recent >= 0) fprintf(o.f, " sink=%d recent=%d", m->sink, m->recent);
    fputc('\n', o.f);
    int *idx = lk_alloc((size_t)m->head_dim, sizeof *idx, "a head's channels", err);
    if (!idx) {
        lk_out_abort(&o);
        return LK_ENOMEM;
    }
    for (int l = 0; l < m->n_layers; l++)
        for (int h = 0; h < m->n_kv_heads; h++) {
            int w = lk_mask_channels(m, l, h, idx);
            fprintf(o.f, "%d\t%d\t%d\t", l, h, w);
            for (int j = 0; j < w; j++) fprintf(o.f, j ? ",%d" : "%d", idx[j]);
            fputc('\n', o.f);
        }
    free(idx);
    return lk_out_commit(&o, err);
}

/* ---- safetensors ---- */

int lk_mask_save_meta(const lk_mask *m, const char *path, double ratio, int align,
                      const char *source, lk_err *err) {
    lk_stw *w = lk_stw_new();
    int64_t shape[2] = {m->n_kv_heads, m->head_dim};
    size_t per = (size_t)m->n_kv_heads * m->head_dim;
    for (int l = 0; l < m->n_layers; l++) {
        char name[32];
        snprintf(name, sizeof name, "layers.%d", l);
        lk_stw_add(w, name, LK_DT_U8, 2, shape, m->keep + (size_t)l * per);
    }
    lk_stw_meta(w, "format", "leank-mask");
    lk_stw_meta(w, "version", "1");
    lk_stw_metaf(w, "n_layers", "%d", m->n_layers);
    lk_stw_metaf(w, "n_kv_heads", "%d", m->n_kv_heads);
    lk_stw_metaf(w, "head_dim", "%d", m->head_dim);
    size_t total = (size_t)m->n_layers * per;
    lk_stw_metaf(w, "kept", "%.6f", total ? (double)lk_mask_count(m) / (double)total : 0.0);
    if (ratio >= 0) lk_stw_metaf(w, "ratio", "%g", ratio);
    if (align > 0) lk_stw_metaf(w, "align", "%d", align);
    if (source) lk_stw_meta(w, "source", source);
    if (m->sink >= 0 && m->recent >= 0) {
        lk_stw_metaf(w, "sink", "%d", m->sink);
        lk_stw_metaf(w, "recent", "%d", m->recent);
    }
    int rc = lk_stw_write(w, path, err);
    lk_stw_free(w);
    return rc;
}

int lk_mask_save(const lk_mask *m, const char *path, lk_err *err) {
    return lk_mask_save_meta(m, path, -1, 0, NULL, err);
}

/* The mask a plan (leank-pack) carries: its I32 tables width [L, H] and
 * channels [L, H, head_dim] (kept channels, then -1), and its windows. Read
 * here from the tensors, not through plan.c, which depends on masks. */
static int from_plan(lk_mask *m, const lk_st *st, const char *name, lk_err *err) {
    const lk_tensor *w = lk_st_find(st, "width"), *c = lk_st_find(st, "channels");
    if (!w || !c || w->dtype != LK_DT_I32 || c->dtype != LK_DT_I32 || w->ndim != 2 || c->ndim != 3 ||
        c->shape[0] != w->shape[0] || c->shape[1] != w->shape[1] || w->shape[0] <= 0 || w->shape[1] <= 0 ||
        c->shape[2] <= 0 || w->shape[0] > 65536 || w->shape[1] > 65536 || c->shape[2] > 65536)
        return lk_seterr(err, LK_EINPUT, "%s: a plan without consistent I32 tables width [L, H] and channels [L, H, "
                         "head_dim] (expected leank-pack output)", name);
    int L = (int)w->shape[0], H = (int)w->shape[1], D = (int)c->shape[2];
    if (lk_mask_init(m, L, H, D, 0, err)) return LK_ENOMEM;
    for (size_t lh = 0; lh < (size_t)L * H; lh++) {
        int32_t wd;
        memcpy(&wd, (const char *)w->data + 4 * lh, 4);
        for (int j = 0; j < D; j++) {
            int32_t ch;
            memcpy(&ch, (const char *)c->data + 4 * (lh * D + j), 4);
            if (j < wd ? (ch < 0 || ch >= D) : ch != -1) {
                lk_mask_free(m);
                return lk_seterr(err, LK_EINPUT, "%s: channels[%zu, %zu, %d] is %d with width %d (expected kept "
                                 "channels in [0, %d), then -1)", name, lh / H, lh % H, j, ch, wd, D);
            }
            if (j < wd) m->keep[lh * D + ch] = 1;
        }
    }
    const char *sk = lk_st_meta(st, "sink"), *rc = lk_st_meta(st, "recent");
    m->sink = sk ? (int)strtol(sk, NULL, 10) : -1;
    m->recent = rc ? (int)strtol(rc, NULL, 10) : -1;
    return 0;
}

static int load_st(lk_mask *m, const char *path, const char *name, lk_err *err) {
    lk_st *st;
    if (lk_st_open(&st, path, err)) return err ? err->code : LK_EINPUT;
    int rc = 0;
    const char *fmt = lk_st_meta(st, "format");
    if (fmt && !strcmp(fmt, "leank-plan")) { /* a decode plan carries its mask */
        rc = from_plan(m, st, name, err);
        goto out;
    }
    if (fmt && strcmp(fmt, "leank-mask")) {
        rc = lk_seterr(err, LK_EINPUT, "%s: format is '%s' (expected a leank-mask file%s)", name, fmt,
                       strcmp(fmt, "leank-alpha") ? "" : "; binarize alpha with leank-binarize --ratio");
        goto out;
    }
    const lk_tensor *t0 = lk_st_find(st, "layers.0");
    if (!t0) {
        rc = lk_seterr(err, LK_EINPUT, "%s: no tensor 'layers.0' (expected a leank-mask file: U8 tensors layers.{i} [kv_heads, head_dim])", name);
        goto out;
    }
    if (t0->ndim != 2 || t0->shape[0] <= 0 || t0->shape[1] <= 0 || t0->shape[0] > 65536 ||
        t0->shape[1] > 65536) {
        rc = lk_seterr(err, LK_EINPUT, "%s: tensor layers.0 is not a non-empty 2-d tensor (expected [kv_heads, head_dim])", name);
        goto out;
    }
    const char *ver = lk_st_meta(st, "version"), *meta_nl = lk_st_meta(st, "n_layers");
    if (ver && strcmp(ver, "1")) {
        rc = lk_seterr(err, LK_EINPUT, "%s: mask version '%s' (expected 1)", name, ver);
        goto out;
    }
    int nl = 0, n_layer_tensors = 0;
    char tn[32];
    for (;; nl++) {
        snprintf(tn, sizeof tn, "layers.%d", nl);
        if (!lk_st_find(st, tn)) break;
    }
    for (int i = 0; i < lk_st_count(st); i++) n_layer_tensors += !strncmp(lk_st_at(st, i)->name, "layers.", 7);
    if (n_layer_tensors != nl) {
        rc = lk_seterr(err, LK_EINPUT, "%s: no tensor layers.%d but %d layers.* tensors (expected layers.0 to layers.N-1)",
                       name, nl, n_layer_tensors);
        goto out;
    }
    if (meta_nl && strtol(meta_nl, NULL, 10) != nl) {
        rc = lk_seterr(err, LK_EINPUT, "%s: metadata n_layers is %s but the file has %d layers (expected them equal)",
                       name, meta_nl, nl);
        goto out;
    }
    int win[2] = {-1, -1};
    const char *wkey[2] = {"sink", "recent"};
    for (int i = 0; i < 2; i++) {
        const char *v = lk_st_meta(st, wkey[i]);
        char *end;
        long x = v ? strtol(v, &end, 10) : -1;
        if (v && (end == v || *end || x < 0 || x > (1L << 30))) {
            rc = lk_seterr(err, LK_EINPUT, "%s: metadata %s is '%s' (expected an integer in [0, 2^30])", name, wkey[i], v);
            goto out;
        }
        win[i] = (int)x;
    }
    if ((win[0] < 0) != (win[1] < 0)) {
        rc = lk_seterr(err, LK_EINPUT, "%s: metadata has %s but not %s (expected both windows or neither)", name,
                       win[0] < 0 ? "recent" : "sink", win[0] < 0 ? "sink" : "recent");
        goto out;
    }
    if ((rc = lk_mask_init(m, nl, (int)t0->shape[0], (int)t0->shape[1], 0, err))) goto out;
    m->sink = win[0];
    m->recent = win[1];
    size_t per = (size_t)m->n_kv_heads * m->head_dim;
    for (int l = 0; l < nl && !rc; l++) {
        snprintf(tn, sizeof tn, "layers.%d", l);
        const lk_tensor *t = lk_st_find(st, tn);
        if (t->dtype != LK_DT_U8 && t->dtype != LK_DT_BOOL) {
            rc = lk_seterr(err, LK_EINPUT, "%s: tensor %s has dtype %s (expected U8)", name, tn, lk_dtype_name(t->dtype));
            break;
        }
        if (t->ndim != 2 || t->shape[0] != m->n_kv_heads || t->shape[1] != m->head_dim) {
            rc = lk_seterr(err, LK_EINPUT, "%s: tensor %s does not have the shape of layers.0 (expected [%d, %d])",
                           name, tn, m->n_kv_heads, m->head_dim);
            break;
        }
        const uint8_t *d = t->data;
        for (size_t i = 0; i < per; i++) {
            if (d[i] > 1) {
                rc = lk_seterr(err, LK_EINPUT, "%s: tensor %s holds %d at [%zu, %zu] (expected 0 or 1)",
                               name, tn, d[i], i / m->head_dim, i % m->head_dim);
                break;
            }
            m->keep[(size_t)l * per + i] = d[i];
        }
    }
    if (rc) lk_mask_free(m);
out:
    lk_st_close(st);
    return rc;
}

/* After load_st (rc its result): the mask must have the caller's head_dim. */
static int check_head_dim(lk_mask *m, const char *name, int head_dim, int rc, lk_err *err) {
    if (!rc && head_dim > 0 && m->head_dim != head_dim) {
        rc = lk_seterr(err, LK_EINPUT, "%s: mask head_dim is %d (expected %d)", name, m->head_dim, head_dim);
        lk_mask_free(m);
    }
    return rc;
}

/* A safetensors file starts with its u64 header length then '{'. */
static int looks_safetensors(const uint8_t *b, size_t n) {
    return n >= 9 && b[8] == '{' && b[5] == 0 && b[6] == 0 && b[7] == 0;
}

int lk_mask_load_dim(lk_mask *m, const char *path, int head_dim, lk_err *err) {
    memset(m, 0, sizeof *m);
    if (strcmp(path, "-") == 0) {
        /* stdin: TSV parsed from memory; a safetensors mask goes through a
         * temporary file because the reader maps files. */
        char *data;
        size_t len;
        if (lk_read_file("-", MASK_MAX, "a mask", &data, &len, err)) return err ? err->code : LK_EIO;
        int rc;
        if (!looks_safetensors((const uint8_t *)data, len)) {
            rc = lk_mask_parse_tsv(m, data, len, "<stdin>", head_dim, err);
        } else {
            lk_out tmp; /* a safetensors mask is read by mapping a file */
            rc = lk_tmp_copy(&tmp, "mask-stdin", data, len, err);
            if (!rc) {
                rc = load_st(m, tmp.tmp, "<stdin>", err);
                lk_out_abort(&tmp);
            }
            rc = check_head_dim(m, "<stdin>", head_dim, rc, err);
        }
        free(data);
        return rc;
    }
    return lk_mask_load_as(m, path, path, head_dim, err);
}

int lk_mask_load_as(lk_mask *m, const char *path, const char *name, int head_dim, lk_err *err) {
    memset(m, 0, sizeof *m);
    FILE *f = fopen(path, "rb");
    if (!f) return lk_seterr(err, LK_EIO, "%s: cannot open: %s", name, strerror(errno));
    uint8_t head[16];
    size_t n = fread(head, 1, sizeof head, f);
    fclose(f);
    if (looks_safetensors(head, n)) return check_head_dim(m, name, head_dim, load_st(m, path, name, err), err);
    char *text;
    size_t len;
    if (lk_read_file(path, MASK_MAX, "a TSV mask", &text, &len, err)) return err ? err->code : LK_EIO;
    int rc = lk_mask_parse_tsv(m, text, len, name, head_dim, err);
    free(text);
    return rc;
}

int lk_mask_load(lk_mask *m, const char *path, lk_err *err) {
    return lk_mask_load_dim(m, path, 0, err);
}

int lk_mask_windows(const char *path, int *sink, int *recent, lk_err *err) {
    *sink = *recent = -1;
    if (!strcmp(path, "-")) return -lk_seterr(err, LK_EUSAGE, "lk_mask_windows: '-' (stdin) cannot be read twice");
    lk_mask m;
    int rc = lk_mask_load(&m, path, err);
    if (rc) return -rc;
    *sink = m.sink;
    *recent = m.recent;
    lk_mask_free(&m);
    return *sink >= 0 && *recent >= 0;
}

void lk_mask_pick_windows(const lk_mask *m, const char *mask_name, int sink_opt, int recent_opt,
                          int def_sink, int def_recent, int quiet, int *sink, int *recent) {
    int has = m->sink >= 0 && m->recent >= 0;
    const int opt[2] = {sink_opt, recent_opt}, rec[2] = {m->sink, m->recent}, def[2] = {def_sink, def_recent};
    const char *names[2] = {"sink", "recent"};
    int *out[2] = {sink, recent};
    for (int i = 0; i < 2; i++) {
        *out[i] = opt[i] >= 0 ? opt[i] : has ? rec[i] : def[i];
        if (opt[i] >= 0 && has && opt[i] != rec[i])
            lk_warn("--%s %d overrides the %d that %s was trained for", names[i], opt[i], rec[i], mask_name);
    }
    if (!has && !quiet && (sink_opt < 0 || recent_opt < 0))
        lk_warn("%s records no cache windows: sink %d, recent %d (%s)", mask_name, *sink, *recent,
                sink_opt < 0 && recent_opt < 0 ? "the defaults" : "defaults and options");
}

/* ---- summary ---- */

int lk_mask_stats_compute(const lk_mask *m, lk_mask_stats *s, lk_err *err) {
    memset(s, 0, sizeof *s);
    int D = m->head_dim, half = D / 2;
    s->width_hist = lk_zalloc((size_t)D + 1, sizeof *s->width_hist, "the mask summary", err);
    s->layer_kept = lk_zalloc((size_t)m->n_layers + 1, sizeof *s->layer_kept, "the mask summary", err);
    s->layer_zero = lk_zalloc((size_t)m->n_layers + 1, sizeof *s->layer_zero, "the mask summary", err);
    if (!s->width_hist || !s->layer_kept || !s->layer_zero) {
        lk_mask_stats_free(s);
        return LK_ENOMEM;
    }
    s->total = (size_t)m->n_layers * m->n_kv_heads * D;
    s->heads = m->n_layers * m->n_kv_heads;
    s->n_bands = half < LK_MASK_MAX_BANDS ? half : LK_MASK_MAX_BANDS;
    s->band_pairs = s->n_bands ? half / s->n_bands : 0;
    size_t band_kept[LK_MASK_MAX_BANDS] = {0};
    for (int l = 0; l < m->n_layers; l++) {
        size_t lk = 0;
        for (int h = 0; h < m->n_kv_heads; h++) {
            const uint8_t *k = lk_mask_head(m, l, h);
            int w = 0;
            for (int c = 0; c < D; c++) {
                if (!k[c]) continue;
                w++;
                /* pairs beyond n_bands * band_pairs (head_dim/2 not a multiple
                 * of the band count) fall into the last band */
                if (s->n_bands) {
                    int b = (c % half) / s->band_pairs;
                    band_kept[b < s->n_bands ? b : s->n_bands - 1]++;
                }
            }
            s->width_hist[w]++;
            if (w == 0) {
                s->heads_zero++;
                s->layer_zero[l]++;
            }
            lk += (size_t)w;
        }
        s->kept += lk;
        s->layer_kept[l] = (double)lk / ((double)m->n_kv_heads * D);
    }
    for (int b = 0; b < s->n_bands; b++) {
        int pairs = b == s->n_bands - 1 ? half - b * s->band_pairs : s->band_pairs;
        s->band_kept[b] = (double)band_kept[b] / (2.0 * pairs * s->heads);
    }
    return 0;
}

void lk_mask_stats_free(lk_mask_stats *s) {
    free(s->width_hist);
    free(s->layer_kept);
    free(s->layer_zero);
    memset(s, 0, sizeof *s);
}

char *lk_mask_shipped(const char *name) {
    if (!name || !*name || strchr(name, '/') || access(name, F_OK) == 0) return NULL;
    char *p = lk_share_find("masks", name);
    if (!p) {
        char *n = lk_fmt(NULL, "%s.safetensors", name);
        if (n) p = lk_share_find("masks", n);
        free(n);
    }
    return p;
}
