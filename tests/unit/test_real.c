/* test_real.c - real pretrained models (dev/real/README.md): the CPU engine's
 * f32 logits equal HF transformers' f32 logits (SDPA) on the same dequantized
 * weights within 1e-4 (absolute, on HF's top 20 ids) and pick HF's argmax, on
 * the prompts of tests/data/real/prompts.json (one of ~2.5K tokens, prefilled
 * in chunks of 1024 as HF's reference was checked at each chunk's end) and at
 * the last greedy decode step. References: tests/data/real/NAME.json, made by
 * dev/real/ref.py. Models: $LEANK_REAL_MODELS/NAME (default
 * ~/.cache/leank/models/NAME), made by dev/models/get.sh; skips when none is
 * there. Run from the repository root. */
#include "t.h"
#include "treal.h"
#include "model.h"

#include <jansson.h>

#define TOL 1e-4
#define CHUNK 1024


/* Compares s->logits with the reference check for position pos, if any. */
static void compare(const char *model, const char *cas, json_t *checks, int pos, const float *logits,
                    int vocab, double *worst) {
    for (size_t c = 0; c < json_array_size(checks); c++) {
        json_t *ck = json_array_get(checks, c);
        if (json_integer_value(json_object_get(ck, "pos")) != pos) continue;
        json_t *ti = json_object_get(ck, "top_ids"), *tv = json_object_get(ck, "top_logits");
        double md = 0;
        int am = 0;
        for (int i = 1; i < vocab; i++)
            if (logits[i] > logits[am]) am = i;
        for (size_t k = 0; k < json_array_size(ti); k++) {
            int id = (int)json_integer_value(json_array_get(ti, k));
            double d = fabs((double)logits[id] - json_real_value(json_array_get(tv, k)));
            if (d > md) md = d;
        }
        int want = (int)json_integer_value(json_array_get(ti, 0));
        printf("%s %s position %d: max |logit - HF| over HF's top %zu = %.3g, argmax %d (HF %d)\n", model,
               cas, pos, json_array_size(ti), md, am, want);
        CHECKF(md <= TOL, "%s %s position %d: %.3g > %g", model, cas, pos, md, TOL);
        CHECKF(am == want, "%s %s position %d: argmax %d, HF %d", model, cas, pos, am, want);
        if (md > *worst) *worst = md;
    }
}

int main(void) {
    char def[1024], dir[2048], path[2560];
    const char *root = real_root(def, sizeof def);
    json_error_t je;
    json_t *pj = json_load_file("tests/data/real/prompts.json", 0, &je);
    if (!pj) T_SKIP("tests/data/real/prompts.json: %s", je.text);
    json_t *prompts = json_object_get(pj, "prompts");
    int ran = 0;
    for (int mi = 0; mi < REAL_MODELS; mi++) {
        struct stat st;
        snprintf(dir, sizeof dir, "%.1900s/%s", root, real_names[mi]);
        snprintf(path, sizeof path, "%s/config.json", dir);
        if (stat(path, &st) != 0) {
            printf("note: %s absent (dev/models/get.sh %s %s)\n", dir, real_names[mi], dir);
            continue;
        }
        snprintf(path, sizeof path, "tests/data/real/%s.json", real_names[mi]);
        json_t *rj = json_load_file(path, 0, &je);
        CHECKF(rj != NULL, "%s: %s", path, je.text);
        if (!rj) continue;
        lk_model m;
        lk_err err = {0};
        if (lk_model_load(&m, dir, &err)) {
            CHECKF(0, "%s: %s", dir, err.msg);
            json_decref(rj);
            continue;
        }
        ran++;
        json_t *cases = json_object_get(rj, "cases");
        double worst = 0;
        for (size_t c = 0; c < json_array_size(cases); c++) {
            json_t *cs = json_array_get(cases, c);
            const char *cname = json_string_value(json_object_get(cs, "name"));
            json_t *p = NULL;
            for (size_t k = 0; k < json_array_size(prompts); k++)
                if (!strcmp(json_string_value(json_object_get(json_array_get(prompts, k), "name")), cname))
                    p = json_array_get(prompts, k);
            CHECKF(p != NULL, "case %s not in prompts.json", cname);
            if (!p) continue;
            int n, ng;
            int *ids = json_ints(json_object_get(p, "input_ids"), &n);
            int *greedy = json_ints(json_object_get(cs, "greedy_ids"), &ng);
            json_t *checks = json_object_get(cs, "checks");
            CHECK(n == json_integer_value(json_object_get(cs, "n_input")));
            lk_state s;
            if (lk_state_build(&s, &m, n < CHUNK ? n : CHUNK, n + ng, NULL, 0, 0, &err)) {
                CHECKF(0, "%s: %s", cname, err.msg);
            } else {
                int ok = 1;
                for (int at = 0; at < n && ok; at += CHUNK) {
                    int len = n - at < CHUNK ? n - at : CHUNK;
                    ok = lk_forward(&m, &s, ids + at, len, NULL, &err) == 0;
                    CHECKF(ok, "%s: %s", cname, err.msg);
                    if (ok) compare(real_names[mi], cname, checks, at + len - 1, s.logits, m.cfg.vocab_size, &worst);
                }
                for (int g = 0; g + 1 < ng && ok; g++) { /* decode one token at a time */
                    ok = lk_forward(&m, &s, greedy + g, 1, NULL, &err) == 0;
                    CHECKF(ok, "%s: %s", cname, err.msg);
                    if (ok && g + 2 == ng) compare(real_names[mi], cname, checks, n + g, s.logits, m.cfg.vocab_size, &worst);
                }
                lk_state_free(&s);
            }
            free(ids);
            free(greedy);
        }
        printf("%s: worst |logit - HF| %.3g (tolerance %g)\n", real_names[mi], worst, TOL);
        lk_model_free(&m);
        json_decref(rj);
    }
    json_decref(pj);
    if (!ran) T_SKIP("no real model under %s (dev/models/get.sh NAME DIR; LEANK_REAL_MODELS=DIR)", root);
    return t_done();
}
