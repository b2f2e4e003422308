/* test_mini.c - leank-mini (data/models/leank-mini): the CPU engine's fp32
 * logits on a 2048-token held-out prompt agree with PyTorch/transformers fp32
 * (tests/data/mini/logits_ref.f32: positions 255, 1023, 2047, computed on the
 * GPU machine by dev/mini/ref.py) to relative L2 < 1e-3. Skips if the model
 * directory is absent. Run from the repository root. */
#include "t.h"
#include "model.h"

int main(void) {
    const char *dir = "data/models/leank-mini";
    struct stat st;
    if (stat("data/models/leank-mini/config.json", &st) != 0) T_SKIP("data/models/leank-mini absent");
    FILE *f = fopen("tests/data/mini/prompt2k.ids", "r");
    if (!f) T_SKIP("tests/data/mini/prompt2k.ids absent");
    int ids[2048], n = 0;
    while (n < 2048 && fscanf(f, "%d", &ids[n]) == 1) n++;
    fclose(f);
    CHECK(n == 2048);
    lk_model m;
    lk_err err = {0};
    if (lk_model_load(&m, dir, &err)) { fprintf(stderr, "%s\n", err.msg); return 1; }
    int V = m.cfg.vocab_size;
    CHECK(V == 8192 && m.cfg.head_dim == 128 && m.cfg.n_kv_heads < m.cfg.n_heads);
    float *ref = malloc(sizeof(float) * 3 * V);
    f = fopen("tests/data/mini/logits_ref.f32", "rb");
    CHECK(f && fread(ref, sizeof(float), 3 * (size_t)V, f) == 3 * (size_t)V);
    if (f) fclose(f);
    lk_state s;
    CHECK(lk_state_build(&s, &m, 1024, 2048, NULL, 0, 0, &err) == 0);
    const int cut[4] = {0, 256, 1024, 2048};
    for (int k = 0; k < 3; k++) {
        CHECK(lk_forward(&m, &s, ids + cut[k], cut[k + 1] - cut[k], NULL, &err) == 0);
        double num = 0, den = 0;
        int am = 0, amr = 0;
        for (int i = 0; i < V; i++) {
            double d = (double)s.logits[i] - ref[k * V + i];
            num += d * d;
            den += (double)ref[k * V + i] * ref[k * V + i];
            if (s.logits[i] > s.logits[am]) am = i;
            if (ref[k * V + i] > ref[k * V + amr]) amr = i;
        }
        double rel = sqrt(num / den);
        printf("position %d: relative L2 %.3g, argmax %d (ref %d)\n", cut[k + 1] - 1, rel, am, amr);
        CHECKF(rel < 1e-3, "position %d: relative L2 %.3g", cut[k + 1] - 1, rel);
        CHECK(am == amr);
    }
    lk_state_free(&s);
    lk_model_free(&m);
    free(ref);
    return t_done();
}
