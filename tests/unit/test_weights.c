/* test_weights.c - where a loaded model's weights live (model.h, lk_weights).
 * 1. An F32 checkpoint, data 8-aligned (as the project's writer and HF's
 *    leave it) or only 4-aligned: every weight points into the checkpoint's
 *    mapping (n_mapped == n_params, no own memory), and the model keeps the
 *    mapping after the caller has closed its lk_st.
 * 2. The same tensors at 2 mod 4 in the file (a 2-byte tensor written first):
 *    copied into the model's own memory; a prefill's logits (every row) and
 *    single-token steps' are bitwise those of the mapped model. BF16: widened,
 *    nothing mapped.
 * 3. Memory: loading and running a 24 MB F32 model (one thread) adds less
 *    than a quarter of its weights to the process's anonymous memory
 *    (/proc/self/status RssAnon; the run state and OpenBLAS's buffers, ~1.2 MB
 *    here): the weights are the file's pages, not a copy (which adds all 24).
 * 4. stories260K (../shared, F32): all of it mapped. */
#include <stddef.h>
#include <stdint.h>
#include <unistd.h>

#include <jansson.h>

#include "config.h"
#include "model.h"
#include "safetensors.h"
#include "t.h"

static uint64_t rng = 0x2545f4914f6cdd1dULL;
static float frand(void) { /* uniform in [-1, 1) */
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return (float)((rng * 0x2545f4914f6cdd1dULL) >> 40) / 8388608.0f - 1.0f;
}

typedef struct {
    int dim, hidden, layers, heads, kv_heads, head_dim, vocab;
} shape;

/* The model's tensors in file order: name, dims, scale and base of the random values. */
typedef struct {
    char name[96];
    int ndim;
    int64_t d[2];
    float scale, base;
} tinfo;

static int tensors(const shape *s, tinfo *t) {
    int n = 0, D = s->dim, QD = s->heads * s->head_dim, KD = s->kv_heads * s->head_dim, H = s->hidden;
#define T(nd, a, b, sc, bs, ...) \
    (snprintf(t[n].name, sizeof t[n].name, __VA_ARGS__), t[n].ndim = nd, t[n].d[0] = a, t[n].d[1] = b, \
     t[n].scale = sc, t[n++].base = bs)
    T(2, s->vocab, D, 1.0f, 0.0f, "model.embed_tokens.weight");
    for (int l = 0; l < s->layers; l++) {
        T(1, D, 0, 0.1f, 1.0f, "model.layers.%d.input_layernorm.weight", l);
        T(2, QD, D, 0.15f, 0.0f, "model.layers.%d.self_attn.q_proj.weight", l);
        T(1, QD, 0, 0.2f, 0.0f, "model.layers.%d.self_attn.q_proj.bias", l);
        T(2, KD, D, 0.15f, 0.0f, "model.layers.%d.self_attn.k_proj.weight", l);
        T(1, KD, 0, 0.2f, 0.0f, "model.layers.%d.self_attn.k_proj.bias", l);
        T(2, KD, D, 0.1f, 0.0f, "model.layers.%d.self_attn.v_proj.weight", l);
        T(1, KD, 0, 0.2f, 0.0f, "model.layers.%d.self_attn.v_proj.bias", l);
        T(2, D, QD, 0.1f, 0.0f, "model.layers.%d.self_attn.o_proj.weight", l);
        T(1, D, 0, 0.1f, 1.0f, "model.layers.%d.post_attention_layernorm.weight", l);
        T(2, H, D, 0.1f, 0.0f, "model.layers.%d.mlp.gate_proj.weight", l);
        T(2, H, D, 0.1f, 0.0f, "model.layers.%d.mlp.up_proj.weight", l);
        T(2, D, H, 0.1f, 0.0f, "model.layers.%d.mlp.down_proj.weight", l);
    }
    T(1, D, 0, 0.1f, 1.0f, "model.norm.weight");
    T(2, s->vocab, D, 0.2f, 0.0f, "lm_head.weight");
#undef T
    return n;
}

/* A Qwen2-shaped model directory (q/k/v bias, untied head) in dir: the
 * tensors in dtype (F32 or BF16), the same values every call (seeded), after
 * `pad` bytes of a U8 tensor "pad" (0: none) that shift every tensor's data. */
static int write_model(const char *dir, const shape *s, lk_dtype dtype, int pad) {
    char path[4200], cfg[1024];
    snprintf(cfg, sizeof cfg,
             "{\"architectures\": [\"Qwen2ForCausalLM\"], \"model_type\": \"qwen2\", \"vocab_size\": %d, "
             "\"hidden_size\": %d, \"intermediate_size\": %d, \"num_hidden_layers\": %d, "
             "\"num_attention_heads\": %d, \"num_key_value_heads\": %d, \"max_position_embeddings\": 4096, "
             "\"rms_norm_eps\": 1e-6, \"rope_theta\": 1000000.0, \"tie_word_embeddings\": false}",
             s->vocab, s->dim, s->hidden, s->layers, s->heads, s->kv_heads);
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    if (!f || fputs(cfg, f) < 0 || fclose(f)) return -1;
    tinfo *t = calloc(3 + 12 * (size_t)s->layers, sizeof *t);
    int n = tensors(s, t);
    size_t es = lk_dtype_size(dtype), off = pad;
    json_t *h = json_object();
    if (pad)
        json_object_set_new(h, "pad", json_pack("{s:s, s:[i], s:[i,i]}", "dtype", "U8", "shape", pad,
                                                "data_offsets", 0, pad));
    for (int i = 0; i < n; i++) {
        size_t nb = (size_t)t[i].d[0] * (t[i].ndim == 2 ? (size_t)t[i].d[1] : 1) * es;
        json_t *sh = t[i].ndim == 2 ? json_pack("[I,I]", (json_int_t)t[i].d[0], (json_int_t)t[i].d[1])
                                    : json_pack("[I]", (json_int_t)t[i].d[0]);
        json_object_set_new(h, t[i].name, json_pack("{s:s, s:o, s:[I,I]}", "dtype", lk_dtype_name(dtype), "shape",
                                                     sh, "data_offsets", (json_int_t)off, (json_int_t)(off + nb)));
        off += nb;
    }
    char *js = json_dumps(h, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(h);
    size_t hl = strlen(js), hp = (hl + 7) / 8 * 8;
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    f = fopen(path, "wb");
    int rc = f ? 0 : -1;
    uint8_t len[8];
    for (int i = 0; i < 8; i++) len[i] = (uint8_t)((uint64_t)hp >> (8 * i));
    if (!rc && (fwrite(len, 1, 8, f) != 8 || fwrite(js, 1, hl, f) != hl)) rc = -1;
    for (size_t i = hl; !rc && i < hp; i++) rc = fputc(' ', f) == EOF;
    for (int i = 0; !rc && i < pad; i++) rc = fputc(0x5a, f) == EOF;
    uint64_t seed = rng;
    for (int i = 0; !rc && i < n; i++) {
        size_t k = (size_t)t[i].d[0] * (t[i].ndim == 2 ? (size_t)t[i].d[1] : 1);
        for (size_t j = 0; !rc && j < k; j++) {
            float x = t[i].base + t[i].scale * frand();
            uint16_t b = lk_f32_to_bf16(x);
            rc = dtype == LK_DT_F32 ? fwrite(&x, 4, 1, f) != 1 : fwrite(&b, 2, 1, f) != 1; /* little-endian host */
        }
    }
    rng = seed; /* the next model gets the same values */
    if (f && fclose(f)) rc = -1;
    free(js);
    free(t);
    return rc;
}

static void remove_model(const char *dir) {
    char path[4200];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    remove(path);
    snprintf(path, sizeof path, "%s/config.json", dir);
    remove(path);
}

/* Every weight pointer of m against the data of st's tensor of that name:
 * returns how many are equal (points into the mapping), of *total. */
static int count_in_place(const lk_model *m, const lk_st *st, int *total) {
    int same = 0, n = 0;
    char name[128];
#define AT(ptr, ...)                                                   \
    do {                                                               \
        snprintf(name, sizeof name, __VA_ARGS__);                      \
        const lk_tensor *t_ = lk_st_find(st, name);                    \
        n++;                                                           \
        same += t_ && (const void *)(ptr) == t_->data;                 \
    } while (0)
    AT(m->w.embed, "model.embed_tokens.weight");
    AT(m->w.final_norm, "model.norm.weight");
    AT(m->w.lm_head, "lm_head.weight");
    for (int l = 0; l < m->cfg.n_layers; l++) {
        const lk_layer_weights *y = &m->w.layer[l];
        AT(y->attn_norm, "model.layers.%d.input_layernorm.weight", l);
        AT(y->wq, "model.layers.%d.self_attn.q_proj.weight", l);
        AT(y->wk, "model.layers.%d.self_attn.k_proj.weight", l);
        AT(y->wv, "model.layers.%d.self_attn.v_proj.weight", l);
        AT(y->bq, "model.layers.%d.self_attn.q_proj.bias", l);
        AT(y->bk, "model.layers.%d.self_attn.k_proj.bias", l);
        AT(y->bv, "model.layers.%d.self_attn.v_proj.bias", l);
        AT(y->wo, "model.layers.%d.self_attn.o_proj.weight", l);
        AT(y->ffn_norm, "model.layers.%d.post_attention_layernorm.weight", l);
        AT(y->w_gate, "model.layers.%d.mlp.gate_proj.weight", l);
        AT(y->w_up, "model.layers.%d.mlp.up_proj.weight", l);
        AT(y->w_down, "model.layers.%d.mlp.down_proj.weight", l);
    }
#undef AT
    *total = n;
    return same;
}

enum { N = 12, K = 6 };

/* Logits of a prefill of N tokens (every row) then K single-token steps:
 * (N + K, vocab) into out. */
static void run(const lk_model *m, float *out) {
    int V = m->cfg.vocab_size, ids[N + K];
    for (int i = 0; i < N + K; i++) ids[i] = (i * 7 + 3) % V;
    lk_state s;
    lk_err err;
    CHECK(lk_state_build(&s, m, N, N + K, NULL, 0, 0, &err) == 0);
    CHECK(lk_forward(m, &s, ids, N, out, &err) == 0);
    for (int i = 0; i < K; i++) {
        CHECK(lk_forward(m, &s, ids + N + i, 1, NULL, &err) == 0);
        memcpy(out + (size_t)(N + i) * V, s.logits, V * sizeof(float));
    }
    lk_state_free(&s);
}

/* ---- 1 and 2 ---- */
static void placement(const char *dir) {
    shape sh = {64, 96, 2, 4, 2, 16, 50};
    size_t per = (size_t)(N + K) * sh.vocab;
    float *ref = malloc(per * sizeof(float)), *got = malloc(per * sizeof(float));
    const struct {
        lk_dtype dt;
        int pad, mapped;
        const char *what;
    } cs[] = {
        {LK_DT_F32, 0, 1, "F32, data 8-aligned"},
        {LK_DT_F32, 4, 1, "F32, data 4-aligned"},
        {LK_DT_F32, 2, 0, "F32, data at 2 mod 4"},
        {LK_DT_BF16, 0, 0, "BF16"},
    };
    for (size_t i = 0; i < sizeof cs / sizeof *cs; i++) {
        CHECK(write_model(dir, &sh, cs[i].dt, cs[i].pad) == 0);
        lk_config c;
        lk_st *st;
        lk_model m;
        lk_err err;
        if (lk_config_load(&c, dir, &err) || lk_st_open(&st, dir, &err)) {
            fprintf(stderr, "%s: %s\n", cs[i].what, err.msg);
            CHECK(0);
            continue;
        }
        if (lk_model_from_st(&m, &c, st, &err)) {
            fprintf(stderr, "%s: %s\n", cs[i].what, err.msg);
            CHECK(0);
            lk_st_close(st);
            continue;
        }
        int total, same = count_in_place(&m, st, &total);
        lk_st_close(st); /* the model keeps its own reference */
        CHECKF(same == (cs[i].mapped ? total : 0), "%s: %d of %d weights in the mapping", cs[i].what, same, total);
        CHECKF(cs[i].mapped ? m.n_mapped == m.n_params && !m.own && m.st
                            : m.n_mapped == 0 && m.own && !m.st,
               "%s: %zu of %zu floats mapped", cs[i].what, m.n_mapped, m.n_params);
        if (cs[i].dt == LK_DT_F32) { /* run after the caller's close: the mapping is the model's */
            run(&m, i == 0 ? ref : got);
            if (i) CHECKF(memcmp(ref, got, per * sizeof(float)) == 0, "%s: logits differ from the mapped model's", cs[i].what);
        }
        printf("%-22s %2d of %d weights in the mapping, %zu of %zu floats%s\n", cs[i].what, same, total, m.n_mapped,
               m.n_params, cs[i].dt == LK_DT_F32 && i ? ", logits bitwise equal" : "");
        lk_model_free(&m);
    }
    remove_model(dir);
    free(ref);
    free(got);
}

/* ---- 3 ---- */
static long status_kb(const char *key) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    size_t kl = strlen(key);
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, key, kl) && line[kl] == ':') v = atol(line + kl + 1);
    if (f) fclose(f);
    return v;
}

static void memory(const char *dir) {
    shape sh = {256, 1024, 4, 4, 2, 64, 4096};
    CHECK(write_model(dir, &sh, LK_DT_F32, 0) == 0);
    lk_set_threads(1); /* no other thread's buffers in the count */
    long a0 = status_kb("RssAnon"), f0 = status_kb("RssFile");
    if (a0 < 0 || f0 < 0) {
        T_SKIP_PART("anonymous memory of a loaded F32 model: no RssAnon in /proc/self/status");
        remove_model(dir);
        return;
    }
    lk_model m;
    lk_err err;
    if (lk_model_load(&m, dir, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        CHECK(0);
        remove_model(dir);
        return;
    }
    float *out = malloc((size_t)(N + K) * sh.vocab * sizeof(float));
    run(&m, out);
    long a1 = status_kb("RssAnon"), f1 = status_kb("RssFile");
    long wkb = (long)(m.n_params * sizeof(float) / 1024);
    CHECKF(a1 - a0 < wkb / 4, "anonymous memory grew by %ld KB for %ld KB of F32 weights", a1 - a0, wkb);
    printf("F32 model of %ld KB loaded and run: anonymous memory +%ld KB, file pages +%ld KB\n", wkb, a1 - a0,
           f1 - f0);
    free(out);
    lk_model_free(&m);
    remove_model(dir);
    lk_set_threads(0);
}

/* ---- 4 ---- */
static void stories(const char *shared) {
    char dir[8192];
    snprintf(dir, sizeof dir, "%s/models/stories260K", shared);
    lk_model m;
    lk_err err;
    if (lk_model_load(&m, dir, &err)) {
        T_SKIP_PART("stories260K: %s", err.msg);
        return;
    }
    CHECKF(m.n_mapped == m.n_params && !m.own, "stories260K: %zu of %zu floats mapped", m.n_mapped, m.n_params);
    printf("stories260K: %zu of %zu floats mapped\n", m.n_mapped, m.n_params);
    lk_model_free(&m);
}

int main(void) {
    char tmp[] = "/tmp/leank-test-weights-XXXXXX";
    if (!mkdtemp(tmp)) T_SKIP("cannot create a temporary directory");
    placement(tmp);
    memory(tmp);
    rmdir(tmp);
    const char *shared = t_shared();
    if (shared) stories(shared);
    else T_SKIP_PART("stories260K: shared data absent");
    return t_done();
}
