/* test_mask - the LeanK mask rule (lk_mask_from_alpha), TSV parsing and
 * writing, safetensors round trip, summary figures; the official masks when
 * ../shared is present. */
#include "mask.h"
#include "plan.h"
#include "t.h"

#include <unistd.h>

static uint64_t rng = 0x9e3779b97f4a7c15ULL;
static double urand(void) {
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return (double)((rng * 0x2545F4914F6CDD1DULL) >> 11) / 9007199254740992.0;
}

/* Every head width a multiple of align. */
static int widths_aligned(const lk_mask *m, int align) {
    for (int l = 0; l < m->n_layers; l++)
        for (int h = 0; h < m->n_kv_heads; h++)
            if (lk_mask_width(m, l, h) % align) return 0;
    return 1;
}

/* Within each head, every kept channel has alpha >= every dropped one. */
static int head_top(const lk_mask *m, const float *alpha) {
    int D = m->head_dim;
    for (int hh = 0; hh < m->n_layers * m->n_kv_heads; hh++) {
        const uint8_t *k = m->keep + (size_t)hh * D;
        const float *a = alpha + (size_t)hh * D;
        float min_kept = INFINITY, max_drop = -INFINITY;
        for (int c = 0; c < D; c++) {
            if (k[c] && a[c] < min_kept) min_kept = a[c];
            if (!k[c] && a[c] > max_drop) max_drop = a[c];
        }
        if (min_kept < max_drop) return 0;
    }
    return 1;
}

static void test_exact_ratio(void) {
    int L = 4, H = 2, D = 16, N = L * H * D;
    float *a = malloc(N * sizeof *a);
    for (int i = 0; i < N; i++) a[i] = (float)urand();
    double ratios[] = {0.0, 0.3, 0.5, 0.7, 0.9, 0.999};
    for (size_t r = 0; r < sizeof ratios / sizeof *ratios; r++) {
        lk_mask m;
        lk_err err = {0};
        CHECK(lk_mask_from_alpha(&m, a, L, H, D, ratios[r], 1, &err) == 0);
        size_t want = (size_t)floor((1 - ratios[r]) * N + 0.5);
        CHECKF(lk_mask_count(&m) == want, "ratio %g: kept %zu, want %zu", ratios[r], lk_mask_count(&m), want);
        /* align 1: exactly the global top-k */
        float thr = INFINITY;
        for (int i = 0; i < N; i++)
            if (m.keep[i] && a[i] < thr) thr = a[i];
        int ok = 1;
        for (int i = 0; i < N; i++)
            if (!m.keep[i] && a[i] > thr) ok = 0;
        CHECK(ok);
        lk_mask_free(&m);
    }
    free(a);
}

static void test_ties_at_zero(void) {
    int L = 2, H = 4, D = 32, N = L * H * D;
    float *a = calloc(N, sizeof *a);
    a[5] = 0.9f;
    a[70] = 0.8f;
    a[200] = 0.7f;
    lk_mask m;
    lk_err err = {0};
    CHECK(lk_mask_from_alpha(&m, a, L, H, D, 0.9, 1, &err) == 0);
    size_t want = (size_t)floor(0.1 * N + 0.5); /* 26 */
    CHECK(lk_mask_count(&m) == want);
    CHECK(m.keep[5] && m.keep[70] && m.keep[200]);
    /* the rest are ties at 0, broken by lower flat index: 0..(want-3) besides 5 */
    size_t low = 0;
    for (int i = 0; i < (int)want; i++) low += m.keep[i];
    CHECK(low == want - 2); /* all of [0, want) except one slot taken by 70 and 200 outside */
    lk_mask_free(&m);
    /* all zero: still exactly K, never everything */
    memset(a, 0, N * sizeof *a);
    CHECK(lk_mask_from_alpha(&m, a, L, H, D, 0.5, 1, &err) == 0);
    CHECK(lk_mask_count(&m) == (size_t)N / 2);
    for (int i = 0; i < N; i++) CHECK(m.keep[i] == (i < N / 2));
    lk_mask_free(&m);
    /* -0.0 ties with +0.0 */
    a[3] = -0.0f;
    CHECK(lk_mask_from_alpha(&m, a, L, H, D, 0.5, 1, &err) == 0);
    CHECK(m.keep[3]);
    lk_mask_free(&m);
    free(a);
}

static void test_alignment(void) {
    /* Hand-made: one layer, 4 heads, D = 8, align 4. Head h has its top
     * channels with alpha well above the others in a controlled count. */
    int L = 1, H = 4, D = 8, N = L * H * D;
    float a[32];
    for (int i = 0; i < N; i++) a[i] = 0.01f * (float)(i % D); /* low values */
    /* head 0: all 8 high -> would keep 8; head 1: 5 high; head 2: 1 high;
     * head 3: 2 high (tie at the rounding half: 2/4 rounds up to 4) */
    int high[4] = {8, 5, 1, 2};
    for (int h = 0; h < H; h++)
        for (int c = 0; c < high[h]; c++) a[h * D + c] = 1.0f - 0.001f * (float)c;
    /* K = 16 = 8+5+1+2 exactly when ratio = 0.5 */
    lk_mask m;
    lk_err err = {0};
    CHECK(lk_mask_from_alpha(&m, a, L, H, D, 0.5, 4, &err) == 0);
    CHECK(lk_mask_width(&m, 0, 0) == 8); /* head_dim allowed */
    CHECK(lk_mask_width(&m, 0, 1) == 4); /* 5 -> 4 */
    CHECK(lk_mask_width(&m, 0, 2) == 0); /* 1 -> 0 allowed */
    CHECK(lk_mask_width(&m, 0, 3) == 4); /* 2 -> 4 (halves up) */
    CHECK(head_top(&m, a));
    /* head 3 keeps its 2 high channels, then the next by alpha: channels 7, 6 */
    uint8_t *k3 = lk_mask_head(&m, 0, 3);
    CHECK(k3[0] && k3[1] && k3[7] && k3[6] && !k3[2]);
    lk_mask_free(&m);

    /* random, several aligns: widths multiples of align, each head its top-w,
     * achieved ratio within align/(2*head_dim) of the target */
    int L2 = 8, H2 = 4, D2 = 64, N2 = L2 * H2 * D2;
    float *b = malloc(N2 * sizeof *b);
    for (int i = 0; i < N2; i++) b[i] = (float)(urand() * urand());
    int aligns[] = {1, 2, 8, 16, 32, 64};
    for (size_t j = 0; j < sizeof aligns / sizeof *aligns; j++)
        for (double r = 0.1; r < 0.95; r += 0.2) {
            CHECK(lk_mask_from_alpha(&m, b, L2, H2, D2, r, aligns[j], &err) == 0);
            CHECK(widths_aligned(&m, aligns[j]));
            CHECK(head_top(&m, b));
            double kept = (double)lk_mask_count(&m) / N2;
            CHECKF(fabs(kept - (1 - r)) <= aligns[j] / (2.0 * D2) + 1.0 / N2,
                   "align %d ratio %g: kept %g", aligns[j], r, kept);
            lk_mask_free(&m);
        }
    free(b);
}

static void test_deterministic_and_errors(void) {
    int L = 32, H = 8, D = 128, N = L * H * D;
    float *a = malloc(N * sizeof *a);
    for (int i = 0; i < N; i++) a[i] = (float)((int)(urand() * 20)) / 20.0f; /* many ties */
    lk_mask m1, m2;
    lk_err err = {0};
    double t0 = lk_now();
    CHECK(lk_mask_from_alpha(&m1, a, L, H, D, 0.7, 32, &err) == 0);
    double dt = lk_now() - t0;
    CHECKF(dt < 0.5, "%g s for a Llama-sized alpha", dt);
    CHECK(lk_mask_from_alpha(&m2, a, L, H, D, 0.7, 32, &err) == 0);
    CHECK(memcmp(m1.keep, m2.keep, N) == 0);
    lk_mask_free(&m1);
    lk_mask_free(&m2);
    CHECK(lk_mask_from_alpha(&m1, a, L, H, D, 1.0, 32, &err) == LK_EUSAGE && m1.keep == NULL);
    CHECK(lk_mask_from_alpha(&m1, a, L, H, D, -0.1, 32, &err) == LK_EUSAGE);
    CHECK(lk_mask_from_alpha(&m1, a, L, H, D, 0.5, 48, &err) == LK_EUSAGE);
    CHECK(strstr(err.msg, "align 48") != NULL);
    CHECK(lk_mask_from_alpha(&m1, a, L, H, D, 0.5, 0, &err) == LK_EUSAGE);
    a[77] = NAN;
    CHECK(lk_mask_from_alpha(&m1, a, L, H, D, 0.5, 1, &err) == LK_EINPUT);
    free(a);
}

static void test_tsv(void) {
    const char *good = "# layer\tkv_head\tkept\tchannels\n"
                       "0\t0\t2\t3,1\n"
                       "0\t1\t0\t\n"
                       "1\t0\t1\t7\r\n"
                       "1\t1\t0\n";
    lk_mask m;
    lk_err err = {0};
    CHECK(lk_mask_parse_tsv(&m, good, strlen(good), "g.tsv", 0, &err) == 0);
    CHECK(m.n_layers == 2 && m.n_kv_heads == 2 && m.head_dim == 8);
    CHECK(lk_mask_head(&m, 0, 0)[1] && lk_mask_head(&m, 0, 0)[3] && lk_mask_width(&m, 0, 0) == 2);
    CHECK(lk_mask_width(&m, 1, 0) == 1 && lk_mask_width(&m, 1, 1) == 0);
    lk_mask_free(&m);
    CHECK(lk_mask_parse_tsv(&m, good, strlen(good), "g.tsv", 16, &err) == 0 && m.head_dim == 16);
    /* write, read back (head_dim from our comment) */
    char path[] = "/tmp/test_mask.XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    CHECK(lk_mask_save_tsv(&m, path, &err) == 0);
    lk_mask r;
    CHECK(lk_mask_load(&r, path, &err) == 0);
    CHECK(r.head_dim == 16 && r.n_layers == 2 && memcmp(r.keep, m.keep, 2 * 2 * 16) == 0);
    lk_mask_free(&r);
    /* safetensors round trip through lk_mask_load (detected by content) */
    CHECK(lk_mask_save_meta(&m, path, 0.7, 1, "test", &err) == 0);
    CHECKF(lk_mask_load(&r, path, &err) == 0, "%s", err.msg);
    CHECK(r.head_dim == 16 && r.n_kv_heads == 2 && memcmp(r.keep, m.keep, 2 * 2 * 16) == 0);
    lk_mask_free(&r);
    unlink(path);
    lk_mask_free(&m);

    struct { const char *text, *want; } bad[] = {
        {"0\t0\t1\t1\n0\t1\t1\n", "g.tsv:2: kept is 1 but 0"},
        {"0\t0\t1\tx\n", "g.tsv:1: bad channel 'x'"},
        {"# c\n0\t0\n", "g.tsv:2: 2 tab-separated fields"},
        {"0\t0\t1\t1\n0\t0\t1\t2\n", "g.tsv:2: second line for layer 0 kv_head 0 (first at line 1"},
        {"0\t0\t2\t1,1\n", "g.tsv:1: channel 1 listed twice"},
        {"0\t0\t1\t1\n1\t1\t1\t1\n", "g.tsv: no line for layer 0 kv_head 1"},
        {"# only comments\n", "g.tsv: no mask lines"},
        {"0\t-1\t1\t1\n", "g.tsv:1: bad kv_head '-1'"},
        {"0\t0\t2\t1,\n", "g.tsv:1: empty channel"},
        {"# leank-mask n_layers=3 n_kv_heads=1 head_dim=8\n0\t0\t1\t1\n1\t0\t0\t\n", "header says 3 x 1"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int rc = lk_mask_parse_tsv(&m, bad[i].text, strlen(bad[i].text), "g.tsv", 0, &err);
        CHECKF(rc == LK_EINPUT && strstr(err.msg, bad[i].want), "case %zu: rc %d msg '%s'", i, rc, err.msg);
        CHECK(m.keep == NULL);
    }
    CHECK(lk_mask_parse_tsv(&m, "0\t0\t1\t9\n", 8, "g.tsv", 8, &err) == LK_EINPUT &&
          strstr(err.msg, "g.tsv:1: bad channel '9' (expected integers in [0, 8))"));
    CHECK(lk_mask_load(&m, "/nonexistent/mask.tsv", &err) == LK_EIO);
}

static void test_stats(void) {
    lk_mask m;
    CHECK(lk_mask_init(&m, 2, 2, 16, 0, NULL) == 0);
    /* layer 0 head 0: pair 0 (channels 0, 8) -> band 0; layer 1 head 1: all */
    lk_mask_head(&m, 0, 0)[0] = lk_mask_head(&m, 0, 0)[8] = 1;
    memset(lk_mask_head(&m, 1, 1), 1, 16);
    lk_mask_stats s;
    CHECK(lk_mask_stats_compute(&m, &s, NULL) == 0);
    CHECK(s.total == 64 && s.kept == 18 && s.heads == 4 && s.heads_zero == 2);
    CHECK(s.width_hist[0] == 2 && s.width_hist[2] == 1 && s.width_hist[16] == 1);
    CHECK(s.n_bands == 8 && s.band_pairs == 1);
    CHECK_NEAR(s.band_kept[0], 4.0 / 8, 1e-12); /* 2 heads' pair 0 of 4 heads * 2 channels */
    CHECK_NEAR(s.band_kept[1], 2.0 / 8, 1e-12);
    CHECK_NEAR(s.layer_kept[0], 2.0 / 32, 1e-12);
    CHECK(s.layer_zero[0] == 1 && s.layer_zero[1] == 1);
    lk_mask_stats_free(&s);
    lk_mask_free(&m);
}

static void test_official(void) {
    const char *sh = t_shared();
    if (!sh) {
        printf("skip: official masks (../shared absent)\n");
        return;
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/data/masks/llama3.1-8b-instruct.tsv", sh);
    lk_mask m;
    lk_err err = {0};
    CHECKF(lk_mask_load(&m, path, &err) == 0, "%s", err.msg);
    if (!m.keep) return;
    CHECK(m.n_layers == 32 && m.n_kv_heads == 8 && m.head_dim == 128);
    lk_mask_stats s;
    CHECK(lk_mask_stats_compute(&m, &s, NULL) == 0);
    CHECK_NEAR((double)s.kept / s.total, 0.3125, 1e-9);
    CHECK(s.width_hist[0] == 47 && s.width_hist[32] == 120 && s.width_hist[64] == 67 &&
          s.width_hist[96] == 22);
    lk_mask_stats_free(&s);
    lk_mask_free(&m);
    snprintf(path, sizeof path, "%s/data/masks/qwen2.5-7b-instruct.tsv", sh);
    CHECKF(lk_mask_load(&m, path, &err) == 0, "%s", err.msg);
    if (!m.keep) return;
    CHECK(m.n_layers == 28 && m.n_kv_heads == 4 && m.head_dim == 128);
    CHECK_NEAR((double)lk_mask_count(&m) / (28 * 4 * 128), 0.290, 0.0005);
    lk_mask_free(&m);
}

static void test_plan(void) {
    lk_config c;
    memset(&c, 0, sizeof c);
    snprintf(c.arch, sizeof c.arch, "LlamaForCausalLM");
    c.n_layers = 2, c.n_kv_heads = 3, c.head_dim = 8, c.n_heads = 6;
    lk_mask m;
    CHECK(lk_mask_init(&m, 2, 3, 8, 0, NULL) == 0);
    /* widths: layer 0: 4, 0, 8; layer 1: 0, 0, 4 */
    uint8_t *k = lk_mask_head(&m, 0, 0);
    k[1] = k[2] = k[5] = k[7] = 1;
    memset(lk_mask_head(&m, 0, 2), 1, 8);
    k = lk_mask_head(&m, 1, 2);
    k[0] = k[3] = k[4] = k[6] = 1;
    lk_plan p, q;
    lk_err err = {0};
    CHECK(lk_plan_build(&p, &m, "m", &c, "cfg", 2, 3, 100, "bf16", &err) == 0);
    CHECK(p.width[0] == 4 && p.width[1] == 0 && p.width[2] == 8 && p.width[5] == 4);
    CHECK(p.k_col[0] == 0 && p.k_col[1] == 4 && p.k_col[2] == 4 && p.k_row[0] == 12 && p.k_row[1] == 4);
    CHECK(p.v_col[0] == 0 && p.v_col[1] == -1 && p.v_col[2] == 8 && p.v_row[0] == 16);
    CHECK(p.v_col[3] == -1 && p.v_col[5] == 0 && p.v_row[1] == 8);
    CHECK(p.k_off[1] == 12 && p.k_off[2] == 16 && p.v_off[2] == 24 && p.align == 4);
    CHECK(p.chan[0] == 1 && p.chan[3] == 7 && p.chan[4] == -1);
    lk_plan_bytes b;
    lk_plan_bytes_at(&p, 100, &b);
    CHECK(b.k_dense == 2 * 3 * 8 * 2 && b.k_middle == 16 * 2 && b.v_middle == 24 * 2);
    CHECK(b.n_full == 5 && b.n_middle == 95 && b.total_dense == 100 * 2 * 96);
    CHECK(b.total == 5 * 2 * 96 + 95 * (32 + 48));
    lk_plan_bytes_at(&p, 3, &b);
    CHECK(b.n_full == 3 && b.n_middle == 0 && b.total == b.total_dense);
    char path[] = "/tmp/test_plan.XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    const char *extra[] = {"model", "LlamaForCausalLM", NULL, NULL};
    CHECK(lk_plan_save(&p, path, extra, &err) == 0);
    CHECKF(lk_plan_load(&q, path, &err) == 0, "%s", err.msg);
    CHECK(q.n_layers == 2 && q.sink == 2 && q.recent == 3 && q.context == 100 && q.elem_bytes == 2);
    CHECK(q.k_off[2] == 16 && q.v_col[1] == -1 && !strcmp(q.dtype, "bf16"));
    lk_mask r;
    CHECK(lk_plan_mask(&q, &r, NULL) == 0);
    CHECK(memcmp(r.keep, m.keep, 48) == 0);
    lk_mask_free(&r);
    lk_plan_free(&q);
    /* a mask file is not a plan */
    CHECK(lk_mask_save(&m, path, &err) == 0);
    CHECK(lk_plan_load(&q, path, &err) == LK_EINPUT && strstr(err.msg, "leank-plan"));
    unlink(path);
    /* shape must fit the model */
    c.n_kv_heads = 4;
    c.n_heads = 8;
    CHECK(lk_plan_build(&q, &m, "m", &c, "cfg", 2, 3, 100, "bf16", &err) == LK_EINPUT);
    CHECK(strstr(err.msg, "m: mask has shape [2 layers, 3 kv heads, 8 head_dim] but cfg has [2, 4, 8]") != NULL);
    lk_plan_free(&p);
    lk_mask_free(&m);
}

/* The windows a mask was trained for: recorded in safetensors and TSV,
 * carried by a plan, read by lk_mask_windows, picked by lk_mask_pick_windows. */
static void test_windows(void) {
    lk_mask m, r;
    lk_err err = {0};
    CHECK(lk_mask_init(&m, 2, 1, 8, 1, NULL) == 0);
    CHECK(m.sink == -1 && m.recent == -1);
    char st[] = "/tmp/test_win.XXXXXX", tsv[] = "/tmp/test_win_tsv.XXXXXX";
    close(mkstemp(st));
    close(mkstemp(tsv));
    int s, rc;
    CHECK(lk_mask_save(&m, st, &err) == 0);
    CHECK(lk_mask_windows(st, &s, &rc, &err) == 0 && s == -1 && rc == -1); /* none recorded */
    m.sink = 16, m.recent = 64;
    CHECK(lk_mask_save(&m, st, &err) == 0 && lk_mask_save_tsv(&m, tsv, &err) == 0);
    CHECKF(lk_mask_windows(st, &s, &rc, &err) == 1 && s == 16 && rc == 64, "%s", err.msg);
    CHECKF(lk_mask_windows(tsv, &s, &rc, &err) == 1 && s == 16 && rc == 64, "%s", err.msg);
    CHECK(lk_mask_load(&r, tsv, &err) == 0 && r.sink == 16 && r.recent == 64);
    lk_mask_free(&r);
    CHECK(lk_mask_windows("/nonexistent/m", &s, &rc, &err) == -LK_EIO);
    /* a plan gives its own windows */
    lk_config c;
    memset(&c, 0, sizeof c);
    c.n_layers = 2, c.n_kv_heads = 1, c.head_dim = 8, c.n_heads = 2;
    lk_plan p;
    CHECK(lk_plan_build(&p, &m, "m", &c, "cfg", 4, 32, 100, "bf16", &err) == 0 && lk_plan_save(&p, st, NULL, &err) == 0);
    CHECK(lk_mask_windows(st, &s, &rc, &err) == 1 && s == 4 && rc == 32);
    lk_plan_free(&p);
    /* picking: options over the record, the record over the defaults */
    lk_mask_pick_windows(&m, "m", -1, -1, 128, 1024, 1, &s, &rc);
    CHECK(s == 16 && rc == 64);
    lk_mask_pick_windows(&m, "m", 8, -1, 128, 1024, 1, &s, &rc);
    CHECK(s == 8 && rc == 64);
    m.sink = m.recent = -1;
    lk_mask_pick_windows(&m, "m", -1, 5, 128, 1024, 1, &s, &rc);
    CHECK(s == 128 && rc == 5);
    unlink(st);
    unlink(tsv);
    lk_mask_free(&m);
}

int main(void) {
    test_windows();
    test_plan();
    test_exact_ratio();
    test_ties_at_zero();
    test_alignment();
    test_deterministic_and_errors();
    test_tsv();
    test_stats();
    test_official();
    return t_done();
}
