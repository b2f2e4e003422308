/* model.c - weights loading, building blocks and the forward pass of the CPU
 * reference engine (see model.h). Attention and the KV cache are in
 * attention.c. */
#include "model.h"

#include "cpu.h"

#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* ---------------------------------------------------------------- weights */

/* Hand the whole pages inside [p, p+n) of a read-only file mapping back to
 * the kernel: they stay in the page cache but leave this process's RSS (a
 * later read faults them in again from the file, unchanged). */
static void release(const void *p, size_t n) {
    static long page;
    if (!page) page = sysconf(_SC_PAGESIZE);
    uintptr_t a = ((uintptr_t)p + page - 1) & ~(uintptr_t)(page - 1);
    uintptr_t b = ((uintptr_t)p + n) & ~(uintptr_t)(page - 1);
    if (b > a) madvise((void *)a, b - a, MADV_DONTNEED);
}

/* Load tensor name of shape (d0[, d1]) into dst (float32). The engine keeps
 * every weight layer-contiguous in float32 (the layout lk_weights promises its
 * users: training, the GPU upload), so even F32 tensors are copied; the copy
 * goes in slices of 16 M elements, each slice's source pages released after
 * it, so the peak is the float32 weights plus one slice, not weights plus
 * checkpoint (a 7 GB F32 checkpoint used to peak at twice its size; a BF16 one
 * at 1.5x). */
static int load(const lk_st *st, const char *name, int ndim, int64_t d0, int64_t d1, float *dst,
                lk_err *err) {
    int64_t shape[2] = {d0, d1};
    const lk_tensor *t;
    int rc = lk_st_expect(st, name, ndim, shape, &t, err);
    if (rc) return rc;
    size_t es = lk_dtype_size(t->dtype), n = (size_t)t->numel, step = (size_t)1 << 24;
    for (size_t i = 0; i < n; i += step) {
        lk_tensor s = *t;
        s.numel = (int64_t)(n - i < step ? n - i : step);
        s.data = (const uint8_t *)t->data + i * es;
        s.nbytes = (size_t)s.numel * es;
        if ((rc = lk_tensor_to_f32(&s, dst + i, err))) return rc;
        release(s.data, s.nbytes);
    }
    return 0;
}

/* Per-layer tensor "model.layers.{l}.{suffix}" into dst + l * numel. */
static int load_layers(const lk_st *st, int n_layers, const char *suffix, int ndim, int64_t d0,
                       int64_t d1, float *dst, lk_err *err) {
    size_t numel = (size_t)d0 * (ndim == 2 ? (size_t)d1 : 1);
    for (int l = 0; l < n_layers; l++) {
        char name[256];
        snprintf(name, sizeof name, "model.layers.%d.%s", l, suffix);
        int rc = load(st, name, ndim, d0, d1, dst + (size_t)l * numel, err);
        if (rc) return rc;
    }
    return 0;
}

/* Every tensor's shape against the config before anything is allocated: a
 * config with sizes its checkpoint lacks is bad input, not a huge allocation. */
static int check_shapes(const lk_st *st, const lk_config *c, lk_err *err) {
    int64_t D = c->hidden_size, H = c->intermediate_size, QD = (int64_t)c->n_heads * c->head_dim,
            KD = (int64_t)c->n_kv_heads * c->head_dim;
    const struct { const char *suffix; int ndim; int64_t shape[2]; } per[] = {
        {"input_layernorm.weight", 1, {D}},          {"self_attn.q_proj.weight", 2, {QD, D}},
        {"self_attn.k_proj.weight", 2, {KD, D}},     {"self_attn.v_proj.weight", 2, {KD, D}},
        {"self_attn.o_proj.weight", 2, {D, QD}},     {"post_attention_layernorm.weight", 1, {D}},
        {"mlp.gate_proj.weight", 2, {H, D}},         {"mlp.up_proj.weight", 2, {H, D}},
        {"mlp.down_proj.weight", 2, {D, H}},
    };
    const lk_tensor *t;
    int64_t embed[2] = {c->vocab_size, D};
    int rc = lk_st_expect(st, "model.embed_tokens.weight", 2, embed, &t, err);
    for (int l = 0; !rc && l < c->n_layers; l++)
        for (size_t i = 0; !rc && i < sizeof per / sizeof *per; i++) {
            char name[256];
            snprintf(name, sizeof name, "model.layers.%d.%s", l, per[i].suffix);
            rc = lk_st_expect(st, name, per[i].ndim, per[i].shape, &t, err);
        }
    return rc;
}

int lk_model_from_st(lk_model *m, const lk_config *c, const lk_st *st, lk_err *err) {
    memset(m, 0, sizeof *m);
    m->cfg = *c;
    if (c->rope.partial_rotary_factor != 1.0)
        return lk_seterr(err, LK_EINPUT, "%s: partial_rotary_factor %g is not supported (expected 1)",
                         c->arch, c->rope.partial_rotary_factor);
    if (c->n_kv_heads <= 0 || c->n_heads % c->n_kv_heads || c->head_dim % 2)
        return lk_seterr(err, LK_EINPUT,
                         "config: %d heads, %d kv heads, head_dim %d (expected heads a multiple "
                         "of kv heads, even head_dim)",
                         c->n_heads, c->n_kv_heads, c->head_dim);
    int rc = check_shapes(st, c, err);
    if (rc) return rc;
    int L = c->n_layers, V = c->vocab_size;
    int D = m->dim = c->hidden_size, H = m->hidden = c->intermediate_size;
    int QD = m->q_dim = c->n_heads * c->head_dim, KD = m->kv_dim = c->n_kv_heads * c->head_dim;
    lk_weights *w = &m->w;
    size_t nL = (size_t)L;
    w->embed = lk_alloc((size_t)V * D, sizeof(float), "the weights", err);
    w->attn_norm = lk_alloc(nL * D, sizeof(float), "the weights", err);
    w->wq = lk_alloc(nL * QD * D, sizeof(float), "the weights", err);
    w->wk = lk_alloc(nL * KD * D, sizeof(float), "the weights", err);
    w->wv = lk_alloc(nL * KD * D, sizeof(float), "the weights", err);
    w->wo = lk_alloc(nL * D * QD, sizeof(float), "the weights", err);
    w->ffn_norm = lk_alloc(nL * D, sizeof(float), "the weights", err);
    w->w_gate = lk_alloc(nL * H * D, sizeof(float), "the weights", err);
    w->w_up = lk_alloc(nL * H * D, sizeof(float), "the weights", err);
    w->w_down = lk_alloc(nL * D * H, sizeof(float), "the weights", err);
    w->final_norm = lk_alloc((size_t)D, sizeof(float), "the weights", err);
    if (!w->embed || !w->attn_norm || !w->wq || !w->wk || !w->wv || !w->wo || !w->ffn_norm || !w->w_gate ||
        !w->w_up || !w->w_down || !w->final_norm) {
        rc = LK_ENOMEM;
        goto fail;
    }
    m->n_params = (size_t)V * D + nL * (2 * D + (size_t)QD * D * 2 + (size_t)KD * D * 2 +
                                        (size_t)H * D * 3) + D;
    if ((rc = load(st, "model.embed_tokens.weight", 2, V, D, w->embed, err)) ||
        (rc = load_layers(st, L, "input_layernorm.weight", 1, D, 0, w->attn_norm, err)) ||
        (rc = load_layers(st, L, "self_attn.q_proj.weight", 2, QD, D, w->wq, err)) ||
        (rc = load_layers(st, L, "self_attn.k_proj.weight", 2, KD, D, w->wk, err)) ||
        (rc = load_layers(st, L, "self_attn.v_proj.weight", 2, KD, D, w->wv, err)) ||
        (rc = load_layers(st, L, "self_attn.o_proj.weight", 2, D, QD, w->wo, err)) ||
        (rc = load_layers(st, L, "post_attention_layernorm.weight", 1, D, 0, w->ffn_norm, err)) ||
        (rc = load_layers(st, L, "mlp.gate_proj.weight", 2, H, D, w->w_gate, err)) ||
        (rc = load_layers(st, L, "mlp.up_proj.weight", 2, H, D, w->w_up, err)) ||
        (rc = load_layers(st, L, "mlp.down_proj.weight", 2, D, H, w->w_down, err)) ||
        (rc = load(st, "model.norm.weight", 1, D, 0, w->final_norm, err)))
        goto fail;
    if (c->attention_bias) {
        w->bq = lk_alloc(nL * QD, sizeof(float), "the weights", err);
        w->bk = lk_alloc(nL * KD, sizeof(float), "the weights", err);
        w->bv = lk_alloc(nL * KD, sizeof(float), "the weights", err);
        m->n_params += nL * (QD + 2 * KD);
        if (!w->bq || !w->bk || !w->bv) {
            rc = LK_ENOMEM;
            goto fail;
        }
        if ((rc = load_layers(st, L, "self_attn.q_proj.bias", 1, QD, 0, w->bq, err)) ||
            (rc = load_layers(st, L, "self_attn.k_proj.bias", 1, KD, 0, w->bk, err)) ||
            (rc = load_layers(st, L, "self_attn.v_proj.bias", 1, KD, 0, w->bv, err)))
            goto fail;
    }
    if (c->tie_word_embeddings && !lk_st_find(st, "lm_head.weight")) {
        w->lm_head = w->embed;
    } else {
        w->lm_head = lk_alloc((size_t)V * D, sizeof(float), "the weights", err);
        m->n_params += (size_t)V * D;
        if (!w->lm_head) {
            rc = LK_ENOMEM;
            goto fail;
        }
        if ((rc = load(st, "lm_head.weight", 2, V, D, w->lm_head, err))) goto fail;
    }
    m->fingerprint = lk_config_fingerprint(c, st);
    return 0;
fail:
    lk_model_free(m);
    return rc;
}

int lk_model_load(lk_model *m, const char *dir, lk_err *err) {
    lk_config c;
    int rc = lk_config_load(&c, dir, err);
    if (rc) return rc;
    lk_st *st;
    if ((rc = lk_st_open(&st, dir, err))) return rc;
    rc = lk_model_from_st(m, &c, st, err);
    lk_st_close(st);
    return rc;
}

void lk_model_free(lk_model *m) {
    lk_weights *w = &m->w;
    if (w->lm_head != w->embed) free(w->lm_head);
    free(w->embed);
    free(w->attn_norm);
    free(w->wq);
    free(w->wk);
    free(w->wv);
    free(w->bq);
    free(w->bk);
    free(w->bv);
    free(w->wo);
    free(w->ffn_norm);
    free(w->w_gate);
    free(w->w_up);
    free(w->w_down);
    free(w->final_norm);
    memset(m, 0, sizeof *m);
}

uint64_t lk_model_fingerprint(const lk_model *m) {
    return m->fingerprint ? m->fingerprint : lk_config_fingerprint(&m->cfg, NULL);
}

/* --------------------------------------------------------- building blocks */

int lk_rope_table_build(lk_rope_table *r, const lk_config *c, int n_pos, lk_err *err) {
    int half = c->head_dim / 2;
    r->n_pos = n_pos;
    r->half = half;
    r->cos = lk_alloc((size_t)n_pos * half, sizeof(float), "the RoPE tables", err);
    r->sin = lk_alloc((size_t)n_pos * half, sizeof(float), "the RoPE tables", err);
    float *inv_freq = lk_alloc((size_t)half, sizeof(float), "the RoPE tables", err);
    if (!r->cos || !r->sin || !inv_freq) {
        free(inv_freq);
        lk_rope_table_free(r);
        return LK_ENOMEM;
    }
    float scale = 1.0f;
    lk_rope_inv_freq(c, inv_freq, &scale);
    for (int p = 0; p < n_pos; p++)
        for (int i = 0; i < half; i++) {
            float f = (float)p * inv_freq[i]; /* float32 product, as HF computes freqs */
            r->cos[(size_t)p * half + i] = cosf(f) * scale;
            r->sin[(size_t)p * half + i] = sinf(f) * scale;
        }
    free(inv_freq);
    return 0;
}

void lk_rope_table_free(lk_rope_table *r) {
    free(r->cos);
    free(r->sin);
    memset(r, 0, sizeof *r);
}

void lk_rope_apply(float *x, int n_heads, int head_dim, const float *cos, const float *sin) {
    int half = head_dim / 2;
    for (int h = 0; h < n_heads; h++) {
        float *a = x + (size_t)h * head_dim, *b = a + half;
        for (int i = 0; i < half; i++) {
            float x1 = a[i], x2 = b[i];
            a[i] = x1 * cos[i] - x2 * sin[i];
            b[i] = x2 * cos[i] + x1 * sin[i];
        }
    }
}

void lk_rmsnorm(float *out, const float *x, const float *w, int n, int dim, float eps) {
    for (int r = 0; r < n; r++) {
        const float *xr = x + (size_t)r * dim;
        float *o = out + (size_t)r * dim;
        double ss = 0;
        for (int i = 0; i < dim; i++) ss += (double)xr[i] * xr[i];
        float inv = (float)(1.0 / sqrt(ss / dim + eps));
        for (int i = 0; i < dim; i++) o[i] = w[i] * (xr[i] * inv);
    }
}

/* Threaded products. A single row (decode) is lk_matvec over blocks of output
 * rows (multiples of 16, so no two threads write one cache line of out); more
 * rows are one single-threaded OpenBLAS sgemm per block of output columns.
 * OpenBLAS's own threads are turned off once (the pool splits the work; two
 * sets of threads would contend for the same cores). Small products stay on
 * one thread: a job costs a few microseconds. */
typedef struct {
    float *out;
    const float *x, *w;
    int n, d_in, d_out, step;
} mm_job;

static void matvec_task(void *arg, int t, int thread) {
    const mm_job *J = arg;
    int r0 = t * J->step, r1 = r0 + J->step < J->d_out ? r0 + J->step : J->d_out;
    lk_matvec(J->out + r0, J->w + (size_t)r0 * J->d_in, J->x, r1 - r0, J->d_in);
}

static void sgemm_task(void *arg, int t, int thread) {
    const mm_job *J = arg;
    int c0 = t * J->step, c1 = c0 + J->step < J->d_out ? c0 + J->step : J->d_out;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, J->n, c1 - c0, J->d_in, 1.0f, J->x,
                J->d_in, J->w + (size_t)c0 * J->d_in, J->d_in, 0.0f, J->out + c0, J->d_out);
}

/* OpenBLAS's pthreads build starts its threads when it is loaded, and they
 * spin (sched_yield) for a while after start and after every threaded call:
 * up to ~0.1 s of a second core's time that a short run (stories260K: 40 ms)
 * paid for nothing. blas_thread_shutdown_ (exported by OpenBLAS; weak here, so
 * another BLAS or build without it links too) stops them; with one thread
 * OpenBLAS never needs them again. */
extern int blas_thread_shutdown_(void) __attribute__((weak));
static pthread_once_t blas_once = PTHREAD_ONCE_INIT;
static void blas_single(void) {
    openblas_set_num_threads(1);
    if (blas_thread_shutdown_) blas_thread_shutdown_();
}

void lk_matmul(float *out, const float *x, const float *w, const float *bias, int n, int d_in,
               int d_out) {
    pthread_once(&blas_once, blas_single);
    int T = lk_threads();
    double work = (double)n * d_in * d_out;
    mm_job J = {out, x, w, n, d_in, d_out, d_out};
    int tasks = 1;
    if (T > 1 && work >= 65536.0) {
        /* decode: a few tasks a thread for balance on a shared machine;
         * prefill: one column block a thread (sgemm packs per call) */
        int want = n == 1 ? 4 * T : T, unit = n == 1 ? 16 : 64;
        int step = (d_out + want - 1) / want;
        step = (step + unit - 1) / unit * unit;
        J.step = step;
        tasks = (d_out + step - 1) / step;
    }
    if (n == 1) {
        if (tasks > 1) lk_parallel_for(tasks, matvec_task, &J);
        else lk_matvec(out, w, x, d_out, d_in);
    } else {
        if (tasks > 1) lk_parallel_for(tasks, sgemm_task, &J);
        else cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, d_out, d_in, 1.0f, x, d_in, w,
                         d_in, 0.0f, out, d_out);
    }
    if (bias)
        for (int r = 0; r < n; r++)
            for (int i = 0; i < d_out; i++) out[(size_t)r * d_out + i] += bias[i];
}

void lk_softmax(float *x, int n) {
    float max = -INFINITY;
    for (int i = 0; i < n; i++)
        if (x[i] > max) max = x[i];
    float sum = 0.0f;
    for (int i = 0; i < n; i++) {
        x[i] = expf(x[i] - max);
        sum += x[i];
    }
    float inv = 1.0f / sum;
    for (int i = 0; i < n; i++) x[i] *= inv;
}

void lk_swiglu(float *gate, const float *up, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float g = gate[i];
        gate[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

/* ------------------------------------------------------- state and forward */

typedef struct {
    float *g;
    const float *u;
    int n, h, step;
} sw_job;
static void swiglu_task(void *arg, int t, int thread) {
    const sw_job *J = arg;
    int r0 = t * J->step, r1 = r0 + J->step < J->n ? r0 + J->step : J->n;
    lk_swiglu_fast(J->g + (size_t)r0 * J->h, J->u + (size_t)r0 * J->h, (size_t)(r1 - r0) * J->h);
}
/* SwiGLU of n rows: row blocks over the threads in a prefill (8 K tokens x
 * 1 024 is 8 M exps a layer). */
static void swiglu_rows(float *g, const float *u, int n, int h) {
    int T = lk_threads();
    if (T == 1 || (double)n * h < 262144.0) {
        lk_swiglu_fast(g, u, (size_t)n * h);
        return;
    }
    sw_job J = {g, u, n, h, (n + 4 * T - 1) / (4 * T)};
    lk_parallel_for((n + J.step - 1) / J.step, swiglu_task, &J);
}

int lk_state_build(lk_state *s, const lk_model *m, int max_rows, int max_seq, const lk_mask *mask,
                   int sink, int recent, lk_err *err) {
    memset(s, 0, sizeof *s);
    if (max_rows < 1 || max_seq < max_rows)
        return lk_seterr(err, LK_EUSAGE, "state: max_rows %d, max_seq %d (expected 1 <= rows <= seq)",
                         max_rows, max_seq);
    int rc = lk_kv_build(&s->kv, &m->cfg, max_seq, mask, sink, recent, err);
    if (rc) return rc;
    size_t R = max_rows;
    s->max_rows = max_rows;
    s->max_seq = max_seq;

    s->x = lk_alloc(R * m->dim, sizeof(float), "the activations", err);
    s->xb = lk_alloc(R * m->dim, sizeof(float), "the activations", err);
    s->q = lk_alloc(R * m->q_dim, sizeof(float), "the activations", err);
    s->k = lk_alloc(R * m->kv_dim, sizeof(float), "the activations", err);
    s->v = lk_alloc(R * m->kv_dim, sizeof(float), "the activations", err);
    s->att = lk_alloc(R * m->q_dim, sizeof(float), "the activations", err);
    s->hb = lk_alloc(R * m->hidden, sizeof(float), "the activations", err);
    s->hb2 = lk_alloc(R * m->hidden, sizeof(float), "the activations", err);
    s->qk = lk_alloc((size_t)m->cfg.head_dim, sizeof(float), "the activations", err);
    s->logits = lk_alloc((size_t)m->cfg.vocab_size, sizeof(float), "the logits", err);
    if (!s->x || !s->xb || !s->q || !s->k || !s->v || !s->att || !s->hb || !s->hb2 || !s->qk || !s->logits ||
        lk_state_threads(s, m, err) /* scores and the threads' work areas */ ||
        lk_rope_table_build(&s->rope, &m->cfg, max_seq, err)) {
        lk_state_free(s);
        return LK_ENOMEM;
    }
    return 0;
}

void lk_state_free(lk_state *s) {
    free(s->x);
    free(s->xb);
    free(s->q);
    free(s->k);
    free(s->v);
    free(s->att);
    free(s->hb);
    free(s->hb2);
    free(s->tscores); /* scores is its first block */
    free(s->tscratch);
    free(s->hsc);
    free(s->cmax);
    free(s->csum);
    free(s->pout);
    free(s->qk);
    free(s->logits);
    lk_rope_table_free(&s->rope);
    lk_kv_free(&s->kv);
    memset(s, 0, sizeof *s);
}

int lk_forward(const lk_model *m, lk_state *s, const int *tokens, int n, float *logits_all,
               lk_err *err) {
    const lk_config *c = &m->cfg;
    const lk_weights *w = &m->w;
    int pos0 = s->kv.len, D = m->dim, H = m->hidden, QD = m->q_dim, KD = m->kv_dim;
    int hd = c->head_dim, half = hd / 2, V = c->vocab_size;
    float eps = (float)c->rms_eps;
    if (n < 1 || n > s->max_rows)
        return lk_seterr(err, LK_EINPUT, "forward: %d tokens in one call (expected 1..%d)", n,
                         s->max_rows);
    if (pos0 + n > s->max_seq)
        return lk_seterr(err, LK_EINPUT, "forward: %d + %d tokens exceed the context of %d", pos0,
                         n, s->max_seq);
    for (int r = 0; r < n; r++) {
        if (tokens[r] < 0 || tokens[r] >= V)
            return lk_seterr(err, LK_EINPUT, "forward: token id %d out of range (vocab %d)",
                             tokens[r], V);
        memcpy(s->x + (size_t)r * D, w->embed + (size_t)tokens[r] * D, D * sizeof(float));
    }
    lk_forward_enter();
    for (int l = 0; l < c->n_layers; l++) {
        size_t lq = (size_t)l * QD, lkv = (size_t)l * KD;
        /* attention block */
        lk_rmsnorm(s->xb, s->x, w->attn_norm + (size_t)l * D, n, D, eps);
        lk_matmul(s->q, s->xb, w->wq + lq * D, w->bq ? w->bq + lq : NULL, n, D, QD);
        lk_matmul(s->k, s->xb, w->wk + lkv * D, w->bk ? w->bk + lkv : NULL, n, D, KD);
        lk_matmul(s->v, s->xb, w->wv + lkv * D, w->bv ? w->bv + lkv : NULL, n, D, KD);
        for (int r = 0; r < n; r++) {
            const float *cs = s->rope.cos + (size_t)(pos0 + r) * half;
            const float *sn = s->rope.sin + (size_t)(pos0 + r) * half;
            lk_rope_apply(s->q + (size_t)r * QD, c->n_heads, hd, cs, sn);
            lk_rope_apply(s->k + (size_t)r * KD, c->n_kv_heads, hd, cs, sn);
        }
        if (lk_attention(m, s, l, n, err)) {
            lk_forward_leave();
            return LK_ENOMEM;
        }
        lk_kv_store(&s->kv, l, pos0, n, s->k, s->v);
        lk_matmul(s->xb, s->att, w->wo + (size_t)l * D * QD, NULL, n, QD, D);
        for (size_t i = 0; i < (size_t)n * D; i++) s->x[i] += s->xb[i];
        /* MLP block */
        lk_rmsnorm(s->xb, s->x, w->ffn_norm + (size_t)l * D, n, D, eps);
        lk_matmul(s->hb, s->xb, w->w_gate + (size_t)l * H * D, NULL, n, D, H);
        lk_matmul(s->hb2, s->xb, w->w_up + (size_t)l * H * D, NULL, n, D, H);
        swiglu_rows(s->hb, s->hb2, n, H);
        lk_matmul(s->xb, s->hb, w->w_down + (size_t)l * D * H, NULL, n, H, D);
        for (size_t i = 0; i < (size_t)n * D; i++) s->x[i] += s->xb[i];
        if (s->on_layer && n > 1) s->on_layer(s->on_layer_ctx, l + 1, c->n_layers);
    }
    s->kv.len += n;
    lk_rmsnorm(s->xb, s->x, w->final_norm, n, D, eps);
    if (logits_all) {
        lk_matmul(logits_all, s->xb, w->lm_head, NULL, n, D, V);
        memcpy(s->logits, logits_all + (size_t)(n - 1) * V, V * sizeof(float));
    } else {
        lk_matmul(s->logits, s->xb + (size_t)(n - 1) * D, w->lm_head, NULL, 1, D, V);
    }
    lk_forward_leave();
    return 0;
}
