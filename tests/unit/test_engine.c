/* test_engine.c - the engine interface over the CPU backend: a sequence gives
 * exactly lk_forward's results; ragged batches with mixed plans equal each
 * sequence run alone; adopting a dense prefill equals a pruned sequence's own
 * prefill; KV bytes are the plan's; bad uses are refused. */
#include "engine.h"
#include "model.h"
#include "plan.h"
#include "sampler.h"
#include "t.h"
#include "tmodel.h"

static lk_config cfg;
static lk_model model;
static lk_engine *eng;

static void setup(void) {
    lk_config_llama(&cfg, 67, 48, 80, 3, 4, 2, 16);
    cfg.attention_bias = 1;
    cfg.max_position_embeddings = 512;
    tm_random_model(&model, &cfg);
    lk_err err = {0};
    lk_engine_opts o = {.device = LK_DEVICE_CPU};
    CHECKF(lk_engine_from_model(&eng, &model, "f32", &o, &err) == 0, "%s", err.msg);
    CHECK(!strcmp(lk_engine_name(eng), "cpu"));
    CHECK(!strcmp(lk_engine_cache_dtype(eng), "f32"));
}

static void prompt(int *ids, int n, int salt) {
    for (int i = 0; i < n; i++) ids[i] = (i * 7 + salt * 13 + 1) % cfg.vocab_size;
}

static lk_seq *seq(const lk_plan *p, int max_len) {
    lk_seq *s = NULL;
    lk_err err = {0};
    lk_seq_opts o = {.plan = p, .max_len = max_len, .sampling = {.top_p = 1.0f}};
    CHECKF(lk_seq_new(eng, &s, &o, &err) == 0, "%s", err.msg);
    return s;
}

/* 1. prefill + greedy decode through the engine == lk_forward on a state of the same cache */
static void same_as_forward(const lk_plan *p, const lk_mask *mask) {
    enum { N = 23, STEPS = 9 };
    int ids[N + STEPS];
    prompt(ids, N, 1);
    lk_err err = {0};
    lk_state st;
    CHECK(lk_state_build(&st, &model, N, N + STEPS, mask, p ? p->sink : 0, p ? p->recent : 0, &err) == 0);
    lk_seq *s = seq(p, N + STEPS);
    CHECK(lk_engine_prefill(eng, s, ids, N, &err) == 0);
    CHECK(lk_forward(&model, &st, ids, N, NULL, &err) == 0);
    float *lg = malloc(sizeof(float) * cfg.vocab_size);
    int same = 1;
    for (int t = 0; t < STEPS; t++) {
        CHECK(lk_engine_logits(eng, s, lg, &err) == 0);
        same &= !memcmp(lg, st.logits, sizeof(float) * cfg.vocab_size);
        int next;
        CHECK(lk_engine_sample(eng, &s, 1, &next, &err) == 0);
        CHECK(next == lk_argmax(st.logits, cfg.vocab_size));
        CHECK(lk_engine_decode(eng, &s, 1, &next, &err) == 0);
        CHECK(lk_forward(&model, &st, &next, 1, NULL, &err) == 0);
    }
    CHECKF(same, "engine logits differ from lk_forward (%s)", p ? "plan" : "dense");
    CHECK(lk_seq_len(s) == N + STEPS);
    free(lg);
    lk_seq_free(s);
    lk_state_free(&st);
}

/* 2. a ragged batch mixing dense and two plans == each sequence alone; 3. adopt == own prefill */
static void batch_and_adopt(const lk_plan *p1, const lk_plan *p2) {
    enum { B = 5, STEPS = 12 };
    const lk_plan *plans[B] = {NULL, p1, p2, p1, NULL};
    int lens[B] = {9, 31, 3, 17, 40};
    lk_err err = {0};
    lk_seq *one[B], *all[B];
    int ids[B][64], next[B];
    for (int b = 0; b < B; b++) {
        prompt(ids[b], lens[b], b + 2);
        one[b] = seq(plans[b], lens[b] + STEPS);
        all[b] = seq(plans[b], lens[b] + STEPS);
        CHECK(lk_engine_prefill(eng, one[b], ids[b], lens[b], &err) == 0);
        if (plans[b]) { /* the batch's pruned sequences adopt a dense prefill */
            lk_seq *d = seq(NULL, lens[b] + STEPS);
            CHECK(lk_engine_prefill(eng, d, ids[b], lens[b], &err) == 0);
            CHECKF(lk_seq_adopt(eng, all[b], d, &err) == 0, "%s", err.msg);
            lk_seq_free(d);
        } else {
            CHECK(lk_engine_prefill(eng, all[b], ids[b], lens[b], &err) == 0);
        }
    }
    float *a = malloc(sizeof(float) * cfg.vocab_size), *c = malloc(sizeof(float) * cfg.vocab_size);
    int same = 1;
    for (int t = 0; t < STEPS; t++) {
        CHECK(lk_engine_sample(eng, all, B, next, &err) == 0);
        for (int b = 0; b < B; b++) {
            int n1;
            CHECK(lk_engine_sample(eng, &one[b], 1, &n1, &err) == 0);
            same &= n1 == next[b];
            CHECK(lk_engine_decode(eng, &one[b], 1, &next[b], &err) == 0);
        }
        CHECK(lk_engine_decode(eng, all, B, next, &err) == 0);
        for (int b = 0; b < B; b++) {
            lk_engine_logits(eng, one[b], a, &err);
            lk_engine_logits(eng, all[b], c, &err);
            same &= !memcmp(a, c, sizeof(float) * cfg.vocab_size);
        }
    }
    CHECKF(same, "batched decode (with adopted prefills) differs from one sequence at a time");
    /* KV accounting: the plan's count at the sequence's length, in f32 */
    for (int b = 0; b < B; b++) {
        lk_seq_kv kv;
        lk_seq_kv_info(all[b], &kv);
        int len = lens[b] + STEPS;
        CHECK(lk_seq_len(all[b]) == len);
        CHECK(kv.dense == 2LL * 4 * cfg.n_layers * cfg.n_kv_heads * cfg.head_dim * len);
        if (plans[b]) {
            lk_plan p = *plans[b];
            p.elem_bytes = 4;
            lk_plan_bytes pb;
            lk_plan_bytes_at(&p, len, &pb);
            CHECK(kv.bytes == pb.total);
            CHECK(kv.pruned == (len > p.sink + p.recent && pb.total < pb.total_dense));
        } else {
            CHECK(kv.bytes == kv.dense && !kv.pruned);
        }
        CHECK(kv.reserved >= kv.bytes);
        lk_seq_free(one[b]);
        lk_seq_free(all[b]);
    }
    free(a);
    free(c);
}

/* 3b. kv_only: no logits after the prefill (sample and logits refuse, and
 * so does an adopted copy); after one decode the same logits as a full prefill */
static void kv_only(const lk_plan *p) {
    enum { N = 23 };
    lk_err err = {0};
    int ids[N + 1], next = -1;
    prompt(ids, N + 1, 5);
    lk_seq *full = seq(p, N + 1), *kvo = NULL, *d = NULL, *a = seq(p, N + 1);
    lk_seq_opts o = {.plan = p, .max_len = N + 1, .sampling = {.top_p = 1.0f}, .kv_only = 1};
    CHECK(lk_seq_new(eng, &kvo, &o, &err) == 0);
    o.plan = NULL;
    CHECK(lk_seq_new(eng, &d, &o, &err) == 0);
    CHECK(lk_engine_prefill(eng, full, ids, N, &err) == 0);
    CHECK(lk_engine_prefill(eng, kvo, ids, N, &err) == 0);
    CHECK(lk_engine_prefill(eng, d, ids, N, &err) == 0);
    float *x = malloc(sizeof(float) * cfg.vocab_size), *y = malloc(sizeof(float) * cfg.vocab_size);
    CHECK(lk_engine_sample(eng, &kvo, 1, &next, &err) == LK_EUSAGE && strstr(err.msg, "kv_only"));
    CHECK(lk_engine_logits(eng, kvo, x, &err) == LK_EUSAGE && strstr(err.msg, "kv_only"));
    CHECK(lk_seq_adopt(eng, a, d, &err) == 0);
    CHECK(lk_engine_sample(eng, &a, 1, &next, &err) == LK_EUSAGE);
    CHECK(lk_engine_decode(eng, &full, 1, &ids[N], &err) == 0);
    CHECK(lk_engine_decode(eng, &kvo, 1, &ids[N], &err) == 0);
    CHECK(lk_engine_logits(eng, full, x, &err) == 0 && lk_engine_logits(eng, kvo, y, &err) == 0);
    CHECKF(!memcmp(x, y, sizeof(float) * cfg.vocab_size), "kv_only prefill + decode differs from a full one");
    CHECK(lk_engine_sample(eng, &kvo, 1, &next, &err) == 0 && next >= 0);
    free(x);
    free(y);
    lk_seq_free(full);
    lk_seq_free(kvo);
    lk_seq_free(d);
    lk_seq_free(a);
}

/* 4. refusals */
static void refusals(const lk_plan *p) {
    lk_err err = {0};
    lk_seq *s = NULL;
    int ids[4] = {1, 2, 3, 4};
    lk_seq_opts o = {.plan = NULL, .max_len = 0, .sampling = {.top_p = 1.0f}};
    CHECK(lk_seq_new(eng, &s, &o, &err) == LK_EUSAGE && !s);
    lk_plan q = *p;
    q.recent = 0;
    o = (lk_seq_opts){.plan = &q, .max_len = 8, .sampling = {.top_p = 1.0f}};
    CHECK(lk_seq_new(eng, &s, &o, &err) == LK_EUSAGE && strstr(err.msg, "recent"));
    q = *p;
    q.n_layers = 2;
    CHECK(lk_seq_new(eng, &s, &o, &err) == LK_EINPUT && strstr(err.msg, "does not match"));
    o = (lk_seq_opts){.plan = NULL, .max_len = 8, .sampling = {.top_p = 0.0f}};
    CHECK(lk_seq_new(eng, &s, &o, &err) == LK_EUSAGE);
    s = seq(NULL, 4);
    CHECK(lk_engine_decode(eng, &s, 1, ids, &err) == LK_EUSAGE); /* empty */
    CHECK(lk_engine_sample(eng, &s, 1, ids, &err) == LK_EUSAGE);
    int bad = cfg.vocab_size;
    CHECK(lk_engine_prefill(eng, s, &bad, 1, &err) == LK_EINPUT);
    CHECK(lk_engine_prefill(eng, s, ids, 5, &err) == LK_EINPUT); /* more than max_len */
    CHECK(lk_engine_prefill(eng, s, ids, 4, &err) == 0);
    CHECK(lk_engine_prefill(eng, s, ids, 1, &err) == LK_EUSAGE); /* not empty */
    CHECK(lk_engine_decode(eng, &s, 1, ids, &err) == LK_EINPUT); /* full */
    lk_seq_free(s);
    /* a sliding window shorter than the context is refused, not ignored */
    lk_config w = cfg;
    w.sliding_window = 16;
    lk_model m2 = model;
    m2.cfg = w;
    lk_engine *e2;
    lk_engine_opts eo = {.device = LK_DEVICE_CPU};
    CHECK(lk_engine_from_model(&e2, &m2, "f32", &eo, &err) == 0);
    o = (lk_seq_opts){.plan = NULL, .max_len = 17, .sampling = {.top_p = 1.0f}};
    CHECK(lk_seq_new(e2, &s, &o, &err) == LK_EINPUT && strstr(err.msg, "sliding_window"));
    o.max_len = 16;
    CHECK(lk_seq_new(e2, &s, &o, &err) == 0);
    lk_seq_free(s);
    lk_engine_free(e2);
    /* devices */
    CHECK(lk_device_parse("cuda") == LK_DEVICE_CUDA && lk_device_parse("cpu") == LK_DEVICE_CPU &&
          lk_device_parse("auto") == LK_DEVICE_AUTO && lk_device_parse("tpu") == -1);
    eo.device = LK_DEVICE_CPU;
    CHECK(lk_engine_random(&e2, &cfg, "bf16", 1, &eo, &err) == LK_EUSAGE);
    if (!lk_cuda_available()) {
        eo.device = LK_DEVICE_CUDA;
        int rc = lk_engine_from_model(&e2, &model, "f32", &eo, &err);
        CHECKF(rc == LK_EDEVICE, "no GPU here, yet --device cuda gave %d: %s", rc, err.msg);
    }
}

/* 5. the model fingerprint: config + tensor table, not the weights' values */
static void fingerprints(void) {
    CHECK(lk_engine_fingerprint(eng) == lk_config_fingerprint(&cfg, NULL));
    CHECK(lk_model_fingerprint(&model) == lk_config_fingerprint(&cfg, NULL));
    lk_config c2 = cfg;
    c2.intermediate_size++;
    CHECK(lk_config_fingerprint(&c2, NULL) != lk_config_fingerprint(&cfg, NULL));
    /* a real checkpoint: the engine's and the loaded model's agree, and depend on the table */
    const char *dir = "data/models/leank-mini";
    lk_config mc;
    lk_err err = {0};
    lk_st *st;
    if (lk_config_load(&mc, dir, &err) || lk_st_open(&st, dir, &err)) {
        T_SKIP_PART("part 5 needs %s (run from the top of the tree): %s", dir, err.msg);
        return;
    }
    lk_model m;
    double t0 = lk_now();
    CHECK(lk_model_from_st(&m, &mc, st, &err) == 0);
    uint64_t fp = lk_config_fingerprint(&mc, st);
    CHECK(fp == lk_model_fingerprint(&m) && fp != lk_config_fingerprint(&mc, NULL));
    lk_engine *e2;
    lk_engine_opts o = {.device = LK_DEVICE_CPU};
    CHECK(lk_engine_from_st(&e2, &mc, st, &o, &err) == 0);
    CHECK(lk_engine_fingerprint(e2) == fp);
    printf("leank-mini fingerprint %016llx (%.3f s to load and hash)\n", (unsigned long long)fp, lk_now() - t0);
    lk_engine_free(e2);
    lk_model_free(&m);
    lk_st_close(st);
}

int main(void) {
    setup();
    fingerprints();
    lk_err err = {0};
    lk_mask m1, m2;
    tm_random_mask(&m1, &cfg, 4);
    tm_random_mask(&m2, &cfg, 2);
    lk_plan p1, p2;
    CHECK(lk_plan_build(&p1, &m1, "m1", &cfg, "model", 3, 5, 0, "f32", &err) == 0);
    CHECK(lk_plan_build(&p2, &m2, "m2", &cfg, "model", 0, 7, 0, "bf16", &err) == 0);
    same_as_forward(NULL, NULL);
    same_as_forward(&p1, &m1);
    batch_and_adopt(&p1, &p2);
    kv_only(&p1);
    refusals(&p1);
    lk_plan_free(&p1);
    lk_plan_free(&p2);
    lk_mask_free(&m1);
    lk_mask_free(&m2);
    lk_engine_free(eng);
    lk_model_free(&model);
    return t_done();
}
