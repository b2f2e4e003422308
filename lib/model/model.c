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

/* Fault the pages of [p, p+n) of a file mapping into this process now (and
 * read them from disk if they are not cached), as copying them at load did:
 * the first forward's time is then the forward's, not the file's. Best effort
 * (MADV_POPULATE_READ is Linux 5.14+; without it the first forward faults). */
static void populate(const void *p, size_t n) {
#ifdef MADV_POPULATE_READ
    static long page;
    if (!page) page = sysconf(_SC_PAGESIZE);
    uintptr_t a = (uintptr_t)p & ~(uintptr_t)(page - 1);
    madvise((void *)a, (uintptr_t)p + n - a, MADV_POPULATE_READ);
#endif
}

/* An F32 tensor the engine can read where it lies in the mapping: aligned
 * for a float (4 bytes). That is all the kernels need: cpu.c reads weights
 * with unaligned vector loads only, OpenBLAS takes any float pointer, and the
 * GPU upload copies from it. safetensors aligns data to 8 bytes at best (its
 * header is padded to 8), and a file writing 2-byte tensors first can leave
 * an F32 one at 2 mod 4: that one is copied. The file's bytes are
 * little-endian, so a big-endian host copies (converts) every tensor. */
static int mappable(const lk_tensor *t) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    return t->dtype == LK_DT_F32 && (uintptr_t)t->data % _Alignof(float) == 0;
#else
    return 0;
#endif
}

/* Widen (or copy) t into dst (float32) in slices of 16 M elements, each
 * slice's source pages released after it, so the peak is the float32 copy
 * plus one slice, not copy plus checkpoint (a 7 GB checkpoint converted whole
 * used to peak at twice its size). */
static int widen(const lk_tensor *t, float *dst, lk_err *err) {
    size_t es = lk_dtype_size(t->dtype), n = (size_t)t->numel, step = (size_t)1 << 24;
    for (size_t i = 0; i < n; i += step) {
        lk_tensor s = *t;
        s.numel = (int64_t)(n - i < step ? n - i : step);
        s.data = (const uint8_t *)t->data + i * es;
        s.nbytes = (size_t)s.numel * es;
        int rc = lk_tensor_to_f32(&s, dst + i, err);
        if (rc) return rc;
        release(s.data, s.nbytes);
    }
    return 0;
}

/* One weight of the model: its checkpoint name and shape, the lk_weights
 * pointer it sets, and (from a checkpoint) its tensor. */
typedef struct {
    char name[128];
    int ndim;
    int64_t shape[2];
    const float **dst;
    const lk_tensor *t;
} wslot;

/* The config's checks, derived sizes, the layer table, and the list of every
 * weight (*out, *count: 3 + 12 per layer at most) in checkpoint order (a
 * layer's tensors together). tied: lm_head is embed. */
static int list_weights(lk_model *m, const lk_config *c, int tied, wslot **out, int *count, lk_err *err) {
    memset(m, 0, sizeof *m);
    m->cfg = *c;
    *out = NULL;
    *count = 0;
    if (c->rope.partial_rotary_factor != 1.0)
        return lk_seterr(err, LK_EINPUT, "%s: partial_rotary_factor %g is not supported (expected 1)",
                         c->arch, c->rope.partial_rotary_factor);
    if (c->n_kv_heads <= 0 || c->n_heads % c->n_kv_heads || c->head_dim % 2)
        return lk_seterr(err, LK_EINPUT,
                         "config: %d heads, %d kv heads, head_dim %d (expected heads a multiple "
                         "of kv heads, even head_dim)",
                         c->n_heads, c->n_kv_heads, c->head_dim);
    int64_t V = c->vocab_size, D = m->dim = c->hidden_size, H = m->hidden = c->intermediate_size;
    int64_t QD = m->q_dim = c->n_heads * c->head_dim, KD = m->kv_dim = c->n_kv_heads * c->head_dim;
    lk_weights *w = &m->w;
    w->layer = lk_zalloc(c->n_layers > 0 ? c->n_layers : 1, sizeof *w->layer, "the weights", err);
    wslot *s = lk_zalloc(3 + 12 * (size_t)(c->n_layers > 0 ? c->n_layers : 0), sizeof *s, "the weights", err);
    if (!w->layer || !s) {
        free(s);
        free(w->layer);
        w->layer = NULL;
        return LK_ENOMEM;
    }
    int n = 0;
#define WANT(ptr, nd, d0, d1, ...) \
    (snprintf(s[n].name, sizeof s[n].name, __VA_ARGS__), s[n].ndim = nd, s[n].shape[0] = d0, \
     s[n].shape[1] = d1, s[n++].dst = ptr)
    WANT(&w->embed, 2, V, D, "model.embed_tokens.weight");
    for (int l = 0; l < c->n_layers; l++) {
        lk_layer_weights *y = &w->layer[l];
#define LAYER(field, nd, d0, d1, suffix) WANT(&y->field, nd, d0, d1, "model.layers.%d.%s", l, suffix)
        LAYER(attn_norm, 1, D, 0, "input_layernorm.weight");
        LAYER(wq, 2, QD, D, "self_attn.q_proj.weight");
        LAYER(wk, 2, KD, D, "self_attn.k_proj.weight");
        LAYER(wv, 2, KD, D, "self_attn.v_proj.weight");
        if (c->attention_bias) {
            LAYER(bq, 1, QD, 0, "self_attn.q_proj.bias");
            LAYER(bk, 1, KD, 0, "self_attn.k_proj.bias");
            LAYER(bv, 1, KD, 0, "self_attn.v_proj.bias");
        }
        LAYER(wo, 2, D, QD, "self_attn.o_proj.weight");
        LAYER(ffn_norm, 1, D, 0, "post_attention_layernorm.weight");
        LAYER(w_gate, 2, H, D, "mlp.gate_proj.weight");
        LAYER(w_up, 2, H, D, "mlp.up_proj.weight");
        LAYER(w_down, 2, D, H, "mlp.down_proj.weight");
#undef LAYER
    }
    WANT(&w->final_norm, 1, D, 0, "model.norm.weight");
    if (!tied) WANT(&w->lm_head, 2, V, D, "lm_head.weight");
#undef WANT
    *out = s;
    *count = n;
    return 0;
}

static size_t numel(const wslot *s) { return (size_t)s->shape[0] * (s->ndim == 2 ? (size_t)s->shape[1] : 1); }
/* Owned tensors start on 64-byte lines (16 floats). */
static size_t padded(size_t n) { return (n + 15) & ~(size_t)15; }

int lk_model_from_st(lk_model *m, const lk_config *c, const lk_st *st, lk_err *err) {
    wslot *s;
    int n, rc = list_weights(m, c, c->tie_word_embeddings && !lk_st_find(st, "lm_head.weight"), &s, &n, err);
    if (rc) return rc;
    /* every shape against the config before the weights are allocated: a
     * config with sizes its checkpoint lacks is bad input, not a huge
     * allocation */
    size_t own = 0;
    for (int i = 0; i < n && !rc; i++) {
        rc = lk_st_expect(st, s[i].name, s[i].ndim, s[i].shape, &s[i].t, err);
        if (!rc && !mappable(s[i].t)) own += padded(numel(&s[i]));
    }
    if (rc) goto fail;
    if (own && !(m->own = lk_alloc(own, sizeof(float), "the weights", err))) {
        rc = LK_ENOMEM;
        goto fail;
    }
    float *p = m->own;
    for (int i = 0; i < n; i++) {
        size_t k = numel(&s[i]);
        m->n_params += k;
        if (mappable(s[i].t)) {
            *s[i].dst = s[i].t->data;
            m->n_mapped += k;
            /* an untied embedding is read a row a token: its pages come when used */
            if (s[i].dst != &m->w.embed || c->tie_word_embeddings) populate(s[i].t->data, s[i].t->nbytes);
        } else {
            if ((rc = widen(s[i].t, p, err))) goto fail;
            *s[i].dst = p;
            p += padded(k);
        }
    }
    if (!m->w.lm_head) m->w.lm_head = m->w.embed;
    if (m->n_mapped) m->st = lk_st_ref(st);
    m->fingerprint = lk_config_fingerprint(c, st);
    free(s);
    return 0;
fail:
    free(s);
    lk_model_free(m);
    return rc;
}

int lk_model_alloc(lk_model *m, const lk_config *c, lk_err *err) {
    wslot *s;
    int n, rc = list_weights(m, c, c->tie_word_embeddings, &s, &n, err);
    if (rc) return rc;
    size_t own = 0;
    for (int i = 0; i < n; i++) own += padded(numel(&s[i]));
    if (!(m->own = lk_zalloc(own ? own : 1, sizeof(float), "the weights", err))) {
        free(s);
        lk_model_free(m);
        return LK_ENOMEM;
    }
    float *p = m->own;
    for (int i = 0; i < n; i++) {
        *s[i].dst = p;
        p += padded(numel(&s[i]));
        m->n_params += numel(&s[i]);
    }
    if (!m->w.lm_head) m->w.lm_head = m->w.embed;
    free(s);
    return 0;
}

int lk_model_load(lk_model *m, const char *dir, lk_err *err) {
    lk_config c;
    int rc = lk_config_load(&c, dir, err);
    if (rc) return rc;
    lk_st *st;
    if ((rc = lk_st_open(&st, dir, err))) return rc;
    rc = lk_model_from_st(m, &c, st, err);
    lk_st_close(st); /* the model holds its own reference when it maps weights */
    return rc;
}

void lk_model_free(lk_model *m) {
    free(m->own);
    free(m->w.layer);
    lk_st_close(m->st);
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
        const lk_layer_weights *y = &w->layer[l];
        /* attention block */
        lk_rmsnorm(s->xb, s->x, y->attn_norm, n, D, eps);
        lk_matmul(s->q, s->xb, y->wq, y->bq, n, D, QD);
        lk_matmul(s->k, s->xb, y->wk, y->bk, n, D, KD);
        lk_matmul(s->v, s->xb, y->wv, y->bv, n, D, KD);
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
        lk_matmul(s->xb, s->att, y->wo, NULL, n, QD, D);
        for (size_t i = 0; i < (size_t)n * D; i++) s->x[i] += s->xb[i];
        /* MLP block */
        lk_rmsnorm(s->xb, s->x, y->ffn_norm, n, D, eps);
        lk_matmul(s->hb, s->xb, y->w_gate, NULL, n, D, H);
        lk_matmul(s->hb2, s->xb, y->w_up, NULL, n, D, H);
        swiglu_rows(s->hb, s->hb2, n, H);
        lk_matmul(s->xb, s->hb, y->w_down, NULL, n, H, D);
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
