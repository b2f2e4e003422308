/* gpu_stories_mask.c - stories260K (../shared, f32) with a random LeanK mask
 * (sink 4 + recent 16, so most of a 13 + 100-token run is pruned): the GPU
 * engine's greedy ids equal the CPU engine's with the same plan, token for
 * token, and both differ from dense somewhere only if the mask matters (the
 * ids of the dense run are printed beside). Seed printed; LEANK_SEED repeats. */
#include <string.h>
#include <time.h>

#include "engine.h"
#include "plan.h"
#include "t.h"
#include "tmodel.h"

enum { N_PROMPT = 13, N_GEN = 100 };

/* greedy ids of prompt + N_GEN on engine e with plan p (NULL dense) */
static int greedy(lk_engine *e, const lk_plan *p, const int *prompt, int *out, lk_err *err) {
    lk_seq *s;
    lk_seq_opts o = {.plan = p, .max_len = N_PROMPT + N_GEN, .sampling = {.top_p = 1.0f}};
    int rc = lk_seq_new(e, &s, &o, err);
    if (rc) return rc;
    rc = lk_engine_prefill(e, s, prompt, N_PROMPT, err);
    for (int t = 0; rc == 0 && t < N_GEN; t++) {
        rc = lk_engine_sample(e, &s, 1, &out[t], err);
        if (rc == 0 && t + 1 < N_GEN) rc = lk_engine_decode(e, &s, 1, &out[t], err);
    }
    lk_seq_free(s);
    return rc;
}

int main(void) {
    if (!lk_cuda_available()) T_SKIP("no GPU visible (or a build without CUDA)");
    const char *shared = t_shared();
    if (!shared) T_SKIP("../shared absent (LEANK_SHARED): stories260K is needed");
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/models/stories260K", shared);
    const char *sd = getenv("LEANK_SEED");
    uint64_t seed = sd ? strtoull(sd, NULL, 10) : (uint64_t)time(NULL);
    printf("seed %llu (LEANK_SEED=%llu repeats this run)\n", (unsigned long long)seed, (unsigned long long)seed);
    tm_rng = seed * 0x9e3779b97f4a7c15ULL + 1;
    lk_err err = {0};
    lk_engine *gpu, *cpu;
    lk_engine_opts og = {.device = LK_DEVICE_CUDA, .pool_bytes = 64u << 20, .max_batch = 4, .max_prefill = 512};
    lk_engine_opts oc = {.device = LK_DEVICE_CPU};
    if (lk_engine_open(&gpu, dir, &og, &err) || lk_engine_open(&cpu, dir, &oc, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    const lk_config *c = lk_engine_config(cpu);
    CHECK(!strcmp(lk_engine_cache_dtype(gpu), "f32"));
    int prompt[N_PROMPT];
    for (int i = 0; i < N_PROMPT; i++) prompt[i] = 3 + tm_irand(c->vocab_size - 3);
    for (int trial = 0; trial < 3; trial++) {
        lk_mask m;
        tm_random_mask(&m, c, 2); /* widths 0, 2, 4, 6, 8 of head_dim 8 */
        lk_plan p;
        CHECK(lk_plan_build(&p, &m, "random", c, dir, 4, 16, N_PROMPT + N_GEN, "f32", &err) == 0);
        int g[N_GEN], k[N_GEN], d[N_GEN];
        CHECKF(greedy(gpu, &p, prompt, g, &err) == 0, "gpu: %s", err.msg);
        CHECKF(greedy(cpu, &p, prompt, k, &err) == 0, "cpu: %s", err.msg);
        CHECKF(greedy(cpu, NULL, prompt, d, &err) == 0, "cpu dense: %s", err.msg);
        int first = -1, differs = 0;
        for (int t = 0; t < N_GEN; t++) {
            if (g[t] != k[t] && first < 0) first = t;
            differs += k[t] != d[t];
        }
        CHECKF(first < 0, "trial %d: GPU and CPU greedy ids part at token %d (%d vs %d)", trial, first,
               first >= 0 ? g[first] : 0, first >= 0 ? k[first] : 0);
        printf("trial %d: %d kept of %zu channels; GPU == CPU on %d tokens; %d tokens differ from dense\n", trial,
               (int)lk_mask_count(&m), (size_t)c->n_layers * c->n_kv_heads * c->head_dim, N_GEN, differs);
        lk_plan_free(&p);
        lk_mask_free(&m);
    }
    lk_engine_free(gpu);
    lk_engine_free(cpu);
    return t_done();
}
