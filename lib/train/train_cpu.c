/* train_cpu.c - the CPU reference backend of leank-train: forward of the full
 * and the pruned model over a sample's answer rows and the backward of the
 * distillation loss to alpha. Everything is in double (weights converted once):
 * this file is the definition the GPU backend is checked against, and the
 * finite-difference gradient check needs the precision.
 *
 * A sample is tokens[0..n): context rows [0, C), answer rows [C, n), A = n - C.
 * prepare():  dense model over the context in chunks (no activations kept),
 *             keeping each layer's post-RoPE K and V of the context in the
 *             cache; then the dense (full) answer rows -> h_full (A, D).
 * loss_grad(): pruned answer rows, keeping activations; loss
 *             L = sum (h_pruned - h_full)^2 / (A*D); backward through final
 *             norm, each layer's MLP, norms, projections, RoPE and attention
 *             over context keys (fixed) and answer keys (functions of alpha
 *             through earlier layers), accumulating dL/dalpha.
 *
 * Attention of answer row i (position p = C + i), head h, kv group g:
 *   z_ij = q_i . k_j                  if j < sink or p - j < recent ("full")
 *   z_ij = sum_c q_ic a_gc k_jc        otherwise ("middle"), j <= p
 *   P_i = softmax(scale * z_i), o_i = sum_j P_ij v_j.
 * Logits as two gemms per head, q K^T and (q*a) K^T, selected per key.
 * Backward, with dO, dZ_ij = scale * P_ij (dP_ij - sum_j' P_ij' dP_ij'),
 * dP = dO V^T:
 *   full keys:   dq_i += dZ_ij k_j,   dk_j += dZ_ij q_i (answer keys only)
 *   middle keys: G = dZ K,  dq += a * G,  dalpha_g += sum_i q_i * G_i,
 *                dk_j += sum_i dZ_ij (a * q_i) (answer keys only)
 *   dv_j += sum_i P_ij dO_i (answer keys only).
 */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "model.h"
#include "train.h"

#define CHUNK 128 /* context rows per block in prepare() */

typedef struct {
    double *attn_norm;    /* (D) */
    double *wq, *wk, *wv; /* (H*hd, D), (KV*hd, D), (KV*hd, D) */
    double *bq, *bk, *bv; /* (H*hd), (KV*hd), (KV*hd); NULL without bias */
    double *wo;           /* (D, H*hd) */
    double *mlp_norm;     /* (D) */
    double *wg, *wu;      /* (F, D) */
    double *wd;           /* (D, F) */
} cpu_layer;

/* Saved activations of the answer rows of one layer (pruned pass). */
typedef struct {
    double *x_in;  /* (A, D) layer input */
    double *xn1;   /* (A, D) attention-norm output */
    double *r1;    /* (A) 1/rms of x_in */
    double *q;     /* (A, H*hd) post-RoPE queries */
    double *att;   /* (A, H*hd) attention output before Wo */
    double *lse;   /* (H, A) log-sum-exp of each row's scaled logits */
    double *x_mid; /* (A, D) after the attention residual */
    double *xn2;   /* (A, D) */
    double *r2;    /* (A) */
    double *gate, *up; /* (A, F) */
} cpu_acts;

typedef struct {
    int L, D, H, KV, hd, F, vocab;
    int qdim, kvdim; /* H*hd, KV*hd */
    double eps, scale;
    int sink, recent;
    const struct lk_model *model;
    cpu_layer *layers; /* (L) */
    double *final_norm; /* (D) */
    /* sample */
    int n, C, A;
    int cap_T, cap_A; /* allocated sizes */
    double *kcache, *vcache; /* (L, cap_T, KV*hd) post-RoPE K, V */
    double *cos, *sin;       /* (cap_T, hd/2) */
    double *x0;              /* (A, D) embeddings of the answer tokens */
    double *h_full;          /* (A, D) */
    double *qabs;            /* (L, KV, hd) mean |q| of the answer rows (dense) */
    cpu_acts *acts;          /* (L) */
    double *x_final, *r_final, *h_p; /* (A, D), (A), (A, D) */
    /* scratch, sized for max(CHUNK, A) rows and cap_T keys */
    int cap_R;
    double *x, *xn, *q, *att, *tmp, *hmid, *gate, *up; /* rows x (D | qdim | F) */
    double *S, *Sa, *dP; /* (R, cap_T) */
    double *qf, *qa;     /* (R, hd) one head's queries, and times alpha */
    double *r;       /* (R) */
    /* backward scratch (A rows) */
    double *dx, *dxm, *dxn, *dq, *dk, *dv, *datt, *dh, *dgate, *dup; /* rows x (D | qdim | kvdim | F) */
} cpu_ctx;

/* ---- building blocks (double) ---- */

/* y (n, out) = x (n, in) W^T (+ b), W (out, in) row-major as in HF. */
static void linear(double *y, const double *x, const double *w, const double *b, int n,
                   int in, int out) {
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, out, in, 1.0, x, in, w, in, 0.0, y,
                out);
    if (b)
        for (int i = 0; i < n; i++)
            for (int o = 0; o < out; o++) y[(size_t)i * out + o] += b[o];
}

/* dx (n, in) (+)= dy (n, out) W (out, in) */
static void linear_back(double *dx, const double *dy, const double *w, int n, int in, int out,
                        double beta) {
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, in, out, 1.0, dy, out, w, in, beta,
                dx, in);
}

/* y = x * r * w with r = 1/sqrt(mean(x^2) + eps), per row; r saved. */
static void rmsnorm(double *y, double *r, const double *x, const double *w, int n, int d,
                    double eps) {
    for (int i = 0; i < n; i++) {
        const double *xi = x + (size_t)i * d;
        double ss = 0;
        for (int k = 0; k < d; k++) ss += xi[k] * xi[k];
        double ri = 1.0 / sqrt(ss / d + eps);
        if (r) r[i] = ri;
        for (int k = 0; k < d; k++) y[(size_t)i * d + k] = xi[k] * ri * w[k];
    }
}

/* dx += d/dx of rmsnorm given dy: dx = r (w dy) - r^3 x sum(x w dy) / d */
static void rmsnorm_back(double *dx, const double *dy, const double *x, const double *r,
                         const double *w, int n, int d) {
    for (int i = 0; i < n; i++) {
        const double *xi = x + (size_t)i * d, *dyi = dy + (size_t)i * d;
        double dot = 0, ri = r[i];
        for (int k = 0; k < d; k++) dot += xi[k] * w[k] * dyi[k];
        double c = ri * ri * ri * dot / d;
        for (int k = 0; k < d; k++) dx[(size_t)i * d + k] += ri * w[k] * dyi[k] - c * xi[k];
    }
}

/* HF rotate_half RoPE on n rows of nh heads (row stride nh*hd) at positions
 * pos0 + i; inverse = the transpose (for the backward). */
static void rope(cpu_ctx *c, double *x, int n, int nh, int pos0, int inverse) {
    int hd = c->hd, half = hd / 2;
    for (int i = 0; i < n; i++) {
        const double *cs = c->cos + (size_t)(pos0 + i) * half, *sn = c->sin + (size_t)(pos0 + i) * half;
        for (int h = 0; h < nh; h++) {
            double *v = x + (size_t)i * nh * hd + (size_t)h * hd;
            for (int k = 0; k < half; k++) {
                double a = v[k], b = v[k + half], s = inverse ? -sn[k] : sn[k];
                v[k] = a * cs[k] - b * s;
                v[k + half] = b * cs[k] + a * s;
            }
        }
    }
}

static inline double silu(double g) { return g / (1.0 + exp(-g)); }

/* Is key j at full precision for the query at position p? */
static inline int full_key(const cpu_ctx *c, int j, int p) {
    return j < c->sink || p - j < c->recent;
}

/* Scaled, causally masked logits S (n, T) of head h for rows at positions
 * r0..r0+n-1 (queries q, row stride qdim) over keys 0..T-1 of layer l.
 * alpha (hd) of the head's group or NULL (dense). Full logits come from the
 * same gemm in both cases, so that alpha = 1 reproduces the dense model
 * exactly; middle logits from a second gemm with q*alpha (left in c->qa). */
static void logits(cpu_ctx *c, int l, int h, const double *q, int n, int r0, const double *alpha,
                   double *S) {
    int hd = c->hd, T = r0 + n, g = h / (c->H / c->KV);
    const double *K = c->kcache + (size_t)l * c->cap_T * c->kvdim + (size_t)g * hd;
    for (int i = 0; i < n; i++)
        memcpy(c->qf + (size_t)i * hd, q + (size_t)i * c->qdim + (size_t)h * hd, hd * sizeof(double));
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, T, hd, c->scale, c->qf, hd, K,
                c->kvdim, 0.0, S, T);
    if (alpha) {
        for (int i = 0; i < n; i++)
            for (int k = 0; k < hd; k++) c->qa[(size_t)i * hd + k] = c->qf[(size_t)i * hd + k] * alpha[k];
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, T, hd, c->scale, c->qa, hd, K,
                    c->kvdim, 0.0, c->Sa, T);
        for (int i = 0; i < n; i++) /* middle keys: sink <= j <= p - recent */
            for (int j = c->sink; j <= r0 + i - c->recent; j++) S[(size_t)i * T + j] = c->Sa[(size_t)i * T + j];
    }
    for (int i = 0; i < n; i++)
        for (int j = r0 + i + 1; j < T; j++) S[(size_t)i * T + j] = -INFINITY;
}

/* One layer over rows r0..r0+n-1 (x (n, D) in place: input -> output); keys
 * and values of these rows written to the cache. alpha: (KV, hd) of this
 * layer or NULL. a: activations to keep (n = A) or NULL. qabs: accumulate
 * mean |q| per (group, channel) when not NULL. */
static void layer_fwd(cpu_ctx *c, int l, double *x, int n, int r0, const double *alpha,
                      cpu_acts *a, double *qabs) {
    const cpu_layer *w = c->layers + l;
    int D = c->D, hd = c->hd, T = r0 + n, F = c->F;
    double *K = c->kcache + (size_t)l * c->cap_T * c->kvdim;
    double *V = c->vcache + (size_t)l * c->cap_T * c->kvdim;
    double *xn = a ? a->xn1 : c->xn, *r = a ? a->r1 : c->r;
    double *q = a ? a->q : c->q, *att = a ? a->att : c->att;
    if (a) memcpy(a->x_in, x, (size_t)n * D * sizeof(double));
    /* attention */
    rmsnorm(xn, r, x, w->attn_norm, n, D, c->eps);
    linear(q, xn, w->wq, w->bq, n, D, c->qdim);
    linear(K + (size_t)r0 * c->kvdim, xn, w->wk, w->bk, n, D, c->kvdim);
    linear(V + (size_t)r0 * c->kvdim, xn, w->wv, w->bv, n, D, c->kvdim);
    rope(c, q, n, c->H, r0, 0);
    rope(c, K + (size_t)r0 * c->kvdim, n, c->KV, r0, 0);
    if (qabs) {
        int gs = c->H / c->KV;
        for (int i = 0; i < n; i++)
            for (int h = 0; h < c->H; h++)
                for (int k = 0; k < hd; k++)
                    qabs[(size_t)(l * c->KV + h / gs) * hd + k] +=
                        fabs(q[(size_t)i * c->qdim + h * hd + k]) / ((double)n * gs);
    }
    for (int h = 0; h < c->H; h++) {
        int g = h / (c->H / c->KV);
        double *S = c->S;
        logits(c, l, h, q, n, r0, alpha ? alpha + (size_t)g * hd : NULL, S);
        for (int i = 0; i < n; i++) {
            double *s = S + (size_t)i * T, mx = -INFINITY, sum = 0;
            for (int j = 0; j < T; j++) mx = fmax(mx, s[j]);
            for (int j = 0; j < T; j++) sum += (s[j] = exp(s[j] - mx));
            for (int j = 0; j < T; j++) s[j] /= sum;
            if (a) a->lse[(size_t)h * n + i] = mx + log(sum);
        }
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, hd, T, 1.0, S, T,
                    V + (size_t)g * hd, c->kvdim, 0.0, att + (size_t)h * hd, c->qdim);
    }
    /* x_mid = x + att Wo^T */
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, D, c->qdim, 1.0, att, c->qdim, w->wo,
                c->qdim, 1.0, x, D);
    if (a) memcpy(a->x_mid, x, (size_t)n * D * sizeof(double));
    /* MLP: x += (silu(xn2 Wg^T) * xn2 Wu^T) Wd^T */
    double *xn2 = a ? a->xn2 : c->xn, *r2 = a ? a->r2 : c->r;
    double *gate = a ? a->gate : c->gate, *up = a ? a->up : c->up;
    rmsnorm(xn2, r2, x, w->mlp_norm, n, D, c->eps);
    linear(gate, xn2, w->wg, NULL, n, D, F);
    linear(up, xn2, w->wu, NULL, n, D, F);
    for (size_t i = 0; i < (size_t)n * F; i++) c->hmid[i] = silu(gate[i]) * up[i];
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, D, F, 1.0, c->hmid, F, w->wd, F, 1.0,
                x, D);
}

/* Attention backward of layer l over the answer rows: datt (A, qdim) ->
 * dq (A, qdim), dk, dv (A, kvdim) (post-RoPE), dalpha (KV, hd) += . */
static void attn_back(cpu_ctx *c, int l, const cpu_acts *a, const double *alpha, double *dalpha) {
    int A = c->A, C = c->C, T = c->n, hd = c->hd, gs = c->H / c->KV;
    const double *K = c->kcache + (size_t)l * c->cap_T * c->kvdim;
    const double *V = c->vcache + (size_t)l * c->cap_T * c->kvdim;
    memset(c->dq, 0, (size_t)A * c->qdim * sizeof(double));
    memset(c->dk, 0, (size_t)A * c->kvdim * sizeof(double));
    memset(c->dv, 0, (size_t)A * c->kvdim * sizeof(double));
    for (int h = 0; h < c->H; h++) {
        int g = h / gs;
        const double *ag = alpha + (size_t)g * hd, *Kg = K + (size_t)g * hd, *Vg = V + (size_t)g * hd;
        const double *qh = a->q + (size_t)h * hd, *dO = c->datt + (size_t)h * hd;
        double *S = c->S, *dP = c->dP, *dqh = c->dq + (size_t)h * hd;
        double *dkg = c->dk + (size_t)g * hd, *dvg = c->dv + (size_t)g * hd;
        /* P from the saved log-sum-exp (logits() also leaves q*a in c->qa) */
        logits(c, l, h, a->q, A, C, ag, S);
        for (int i = 0; i < A; i++)
            for (int j = 0; j < T; j++) S[(size_t)i * T + j] = exp(S[(size_t)i * T + j] - a->lse[(size_t)h * A + i]);
        /* dP = dO V^T (A, T) */
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, A, T, hd, 1.0, dO, c->qdim, Vg,
                    c->kvdim, 0.0, dP, T);
        /* dv (answer keys) += P[:, C:]^T dO */
        cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, A, hd, A, 1.0, S + C, T, dO, c->qdim,
                    1.0, dvg, c->kvdim);
        /* dZ = scale * P (dP - rowsum(P dP)), into dP */
        for (int i = 0; i < A; i++) {
            double *p = S + (size_t)i * T, *d = dP + (size_t)i * T, s = 0;
            for (int j = 0; j < T; j++) s += p[j] * d[j];
            for (int j = 0; j < T; j++) d[j] = c->scale * p[j] * (d[j] - s);
        }
        /* full keys: direct, then removed from dZ */
        for (int i = 0; i < A; i++) {
            int p = C + i;
            const double *qi = qh + (size_t)i * c->qdim;
            double *dqi = dqh + (size_t)i * c->qdim, *dz = dP + (size_t)i * T;
            for (int j = 0; j <= p; j++) {
                if (!full_key(c, j, p)) {
                    if (j >= c->sink) j = p - c->recent;
                    continue;
                }
                const double *kj = Kg + (size_t)j * c->kvdim;
                for (int k = 0; k < hd; k++) dqi[k] += dz[j] * kj[k];
                if (j >= C) {
                    double *dkj = dkg + (size_t)(j - C) * c->kvdim;
                    for (int k = 0; k < hd; k++) dkj[k] += dz[j] * qi[k];
                }
                dz[j] = 0;
            }
        }
        /* middle keys: G = dZ K (A, hd), kept in c->tmp */
        double *G = c->tmp;
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, A, hd, T, 1.0, dP, T, Kg, c->kvdim,
                    0.0, G, hd);
        for (int i = 0; i < A; i++)
            for (int k = 0; k < hd; k++) {
                dqh[(size_t)i * c->qdim + k] += ag[k] * G[(size_t)i * hd + k];
                dalpha[(size_t)g * hd + k] += qh[(size_t)i * c->qdim + k] * G[(size_t)i * hd + k];
            }
        /* dk (answer keys) += dZ[:, C:]^T (q * a) */
        cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, A, hd, A, 1.0, dP + C, T, c->qa, hd,
                    1.0, dkg, c->kvdim);
    }
}

/* Backward of one layer: c->dx (A, D) = dL/d(layer output) -> dL/d(layer input). */
static void layer_back(cpu_ctx *c, int l, const double *alpha, double *dalpha) {
    const cpu_layer *w = c->layers + l;
    const cpu_acts *a = c->acts + l;
    int A = c->A, D = c->D, F = c->F;
    /* MLP */
    linear_back(c->dh, c->dx, w->wd, A, F, D, 0.0); /* dhmid (A, F) */
    for (size_t i = 0; i < (size_t)A * F; i++) {
        double g = a->gate[i], sg = 1.0 / (1.0 + exp(-g));
        c->dup[i] = c->dh[i] * g * sg;
        c->dgate[i] = c->dh[i] * a->up[i] * sg * (1.0 + g * (1.0 - sg));
    }
    linear_back(c->dxn, c->dgate, w->wg, A, D, F, 0.0);
    linear_back(c->dxn, c->dup, w->wu, A, D, F, 1.0);
    memcpy(c->dxm, c->dx, (size_t)A * D * sizeof(double));
    rmsnorm_back(c->dxm, c->dxn, a->x_mid, a->r2, w->mlp_norm, A, D);
    /* attention */
    linear_back(c->datt, c->dxm, w->wo, A, c->qdim, D, 0.0);
    attn_back(c, l, a, alpha, dalpha);
    rope(c, c->dq, A, c->H, c->C, 1);
    rope(c, c->dk, A, c->KV, c->C, 1);
    linear_back(c->dxn, c->dq, w->wq, A, D, c->qdim, 0.0);
    linear_back(c->dxn, c->dk, w->wk, A, D, c->kvdim, 1.0);
    linear_back(c->dxn, c->dv, w->wv, A, D, c->kvdim, 1.0);
    memcpy(c->dx, c->dxm, (size_t)A * D * sizeof(double));
    rmsnorm_back(c->dx, c->dxn, a->x_in, a->r1, w->attn_norm, A, D);
}

/* ---- sample buffers ---- */

static void acts_free(cpu_ctx *c) {
    if (!c->acts) return;
    for (int l = 0; l < c->L; l++) free(c->acts[l].x_in); /* one block per layer */
    free(c->acts);
    c->acts = NULL;
}

static void buffers_free(cpu_ctx *c) {
    acts_free(c);
    double **p[] = {&c->kcache, &c->vcache, &c->cos, &c->sin, &c->x0, &c->h_full, &c->x_final,
                    &c->r_final, &c->h_p, &c->x, &c->xn, &c->q, &c->att, &c->tmp, &c->hmid,
                    &c->gate, &c->up, &c->S, &c->Sa, &c->dP, &c->qf, &c->qa, &c->r, &c->dx, &c->dxm, &c->dxn,
                    &c->dq, &c->dk, &c->dv, &c->datt, &c->dh, &c->dgate, &c->dup};
    for (size_t i = 0; i < sizeof p / sizeof *p; i++) {
        free(*p[i]);
        *p[i] = NULL;
    }
    c->cap_T = c->cap_A = c->cap_R = 0;
}

/* Grow the buffers for n tokens with A answer rows (only when they grow).
 * 0, or LK_ENOMEM with no buffers. */
static int buffers_fit(cpu_ctx *c, int n, int A, lk_err *err) {
    if (n <= c->cap_T && A <= c->cap_A) return 0;
    buffers_free(c);
    int T = n, R = A > CHUNK ? A : CHUNK, D = c->D, F = c->F, half = c->hd / 2;
    int wide = c->qdim > F ? c->qdim : F;
    wide = wide > D ? wide : D;
    c->cap_T = T;
    c->cap_A = A;
    c->cap_R = R;
    c->kcache = lk_alloc((size_t)c->L * T * c->kvdim, sizeof(double), "the training buffers", err);
    c->vcache = lk_alloc((size_t)c->L * T * c->kvdim, sizeof(double), "the training buffers", err);
    c->cos = lk_alloc((size_t)T * half, sizeof(double), "the training buffers", err);
    c->sin = lk_alloc((size_t)T * half, sizeof(double), "the training buffers", err);
    lk_rope_table rt; /* the engine's table (float32, as HF), widened */
    if (!c->cos || !c->sin || lk_rope_table_build(&rt, &c->model->cfg, T, err)) {
        buffers_free(c);
        return LK_ENOMEM;
    }
    for (size_t i = 0; i < (size_t)T * half; i++) {
        c->cos[i] = rt.cos[i];
        c->sin[i] = rt.sin[i];
    }
    lk_rope_table_free(&rt);
    c->x0 = lk_alloc((size_t)A * D, sizeof(double), "the training buffers", err);
    c->h_full = lk_alloc((size_t)A * D, sizeof(double), "the training buffers", err);
    c->x_final = lk_alloc((size_t)A * D, sizeof(double), "the training buffers", err);
    c->r_final = lk_alloc((size_t)A, sizeof(double), "the training buffers", err);
    c->h_p = lk_alloc((size_t)A * D, sizeof(double), "the training buffers", err);
    c->x = lk_alloc((size_t)R * D, sizeof(double), "the training buffers", err);
    c->xn = lk_alloc((size_t)R * D, sizeof(double), "the training buffers", err);
    c->q = lk_alloc((size_t)R * c->qdim, sizeof(double), "the training buffers", err);
    c->att = lk_alloc((size_t)R * c->qdim, sizeof(double), "the training buffers", err);
    c->tmp = lk_alloc((size_t)R * wide, sizeof(double), "the training buffers", err);
    c->hmid = lk_alloc((size_t)R * F, sizeof(double), "the training buffers", err);
    c->gate = lk_alloc((size_t)R * F, sizeof(double), "the training buffers", err);
    c->up = lk_alloc((size_t)R * F, sizeof(double), "the training buffers", err);
    c->S = lk_alloc((size_t)R * T, sizeof(double), "the training buffers", err);
    c->dP = lk_alloc((size_t)A * T, sizeof(double), "the training buffers", err);
    c->qa = lk_alloc((size_t)R * c->hd, sizeof(double), "the training buffers", err);
    c->qf = lk_alloc((size_t)R * c->hd, sizeof(double), "the training buffers", err);
    c->Sa = lk_alloc((size_t)R * T, sizeof(double), "the training buffers", err);
    c->r = lk_alloc((size_t)R, sizeof(double), "the training buffers", err);
    c->dx = lk_alloc((size_t)A * D, sizeof(double), "the training buffers", err);
    c->dxm = lk_alloc((size_t)A * D, sizeof(double), "the training buffers", err);
    c->dxn = lk_alloc((size_t)A * D, sizeof(double), "the training buffers", err);
    c->dq = lk_alloc((size_t)A * c->qdim, sizeof(double), "the training buffers", err);
    c->dk = lk_alloc((size_t)A * c->kvdim, sizeof(double), "the training buffers", err);
    c->dv = lk_alloc((size_t)A * c->kvdim, sizeof(double), "the training buffers", err);
    c->datt = lk_alloc((size_t)A * c->qdim, sizeof(double), "the training buffers", err);
    c->dh = lk_alloc((size_t)A * F, sizeof(double), "the training buffers", err);
    c->dgate = lk_alloc((size_t)A * F, sizeof(double), "the training buffers", err);
    c->dup = lk_alloc((size_t)A * F, sizeof(double), "the training buffers", err);
    c->acts = lk_zalloc((size_t)c->L, sizeof(cpu_acts), "the training buffers", err);
    double **all[] = {&c->kcache, &c->vcache, &c->x0, &c->h_full, &c->x_final, &c->r_final, &c->h_p, &c->x,
                      &c->xn, &c->q, &c->att, &c->tmp, &c->hmid, &c->gate, &c->up, &c->S, &c->Sa, &c->dP, &c->qf,
                      &c->qa, &c->r, &c->dx, &c->dxm, &c->dxn, &c->dq, &c->dk, &c->dv, &c->datt, &c->dh, &c->dgate,
                      &c->dup};
    int oom = !c->acts;
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) oom |= !*all[i];
    size_t per = (size_t)A * (5 * D + 2 * c->qdim + 2 * F + 2) + (size_t)c->H * A;
    for (int l = 0; l < c->L; l++) {
        cpu_acts *a = oom ? NULL : c->acts + l;
        double *p = a ? lk_alloc(per, sizeof(double), "the training activations", err) : NULL;
        if (!p) {
            oom = 1;
            break;
        }
        a->x_in = p;                p += (size_t)A * D;
        a->xn1 = p;                 p += (size_t)A * D;
        a->x_mid = p;               p += (size_t)A * D;
        a->xn2 = p;                 p += (size_t)A * D;
        a->q = p;                   p += (size_t)A * c->qdim;
        a->att = p;                 p += (size_t)A * c->qdim;
        a->gate = p;                p += (size_t)A * F;
        a->up = p;                  p += (size_t)A * F;
        a->r1 = p;                  p += A;
        a->r2 = p;                  p += A;
        a->lse = p;                 p += (size_t)c->H * A;
        (void)p; /* the remaining A*D doubles are spare */
    }
    if (oom) {
        buffers_free(c);
        return LK_ENOMEM;
    }
    return 0;
}

/* Embedding rows of tokens[r0..r0+n) into x (n, D). */
static void embed(cpu_ctx *c, const int *tokens, int r0, int n, double *x) {
    for (int i = 0; i < n; i++) {
        const float *e = c->model->w.embed + (size_t)tokens[r0 + i] * c->D;
        for (int k = 0; k < c->D; k++) x[(size_t)i * c->D + k] = e[k];
    }
}

/* ---- backend entry points ---- */

static int cpu_prepare(void *ctx, const int *tokens, int n, int C, lk_err *err) {
    cpu_ctx *c = ctx;
    if (C < 1 || n <= C)
        return lk_seterr(err, LK_EINPUT, "sample of %d tokens with context %d: need a context "
                         "and at least one answer token", n, C);
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= c->vocab)
            return lk_seterr(err, LK_EINPUT, "token %d at position %d is outside the model's "
                             "vocabulary (%d)", tokens[i], i, c->vocab);
    if (buffers_fit(c, n, n - C, err)) return LK_ENOMEM;
    c->n = n;
    c->C = C;
    c->A = n - C;
    /* dense context, in chunks; every layer of a chunk before the next chunk */
    for (int r0 = 0; r0 < C; r0 += CHUNK) {
        int m = C - r0 < CHUNK ? C - r0 : CHUNK;
        embed(c, tokens, r0, m, c->x);
        for (int l = 0; l < c->L; l++) layer_fwd(c, l, c->x, m, r0, NULL, NULL, NULL);
    }
    /* dense answer rows: h_full, and |q| statistics for the norm method */
    memset(c->qabs, 0, (size_t)c->L * c->KV * c->hd * sizeof(double));
    double *x = c->x_final;
    embed(c, tokens, C, c->A, c->x0);
    memcpy(x, c->x0, (size_t)c->A * c->D * sizeof(double));
    for (int l = 0; l < c->L; l++) layer_fwd(c, l, x, c->A, C, NULL, NULL, c->qabs);
    rmsnorm(c->h_full, NULL, x, c->final_norm, c->A, c->D, c->eps);
    return 0;
}

static int cpu_loss_grad(void *ctx, const double *alpha, double *loss, double *grad, lk_err *err) {
    cpu_ctx *c = ctx;
    if (!c->A) return lk_seterr(err, LK_EFAIL, "loss_grad before prepare");
    int A = c->A, D = c->D;
    size_t per_layer = (size_t)c->KV * c->hd;
    /* pruned answer rows, keeping activations */
    double *x = c->x_final;
    memcpy(x, c->x0, (size_t)A * D * sizeof(double));
    for (int l = 0; l < c->L; l++)
        layer_fwd(c, l, x, A, c->C, alpha + l * per_layer, c->acts + l, NULL);
    rmsnorm(c->h_p, c->r_final, x, c->final_norm, A, D, c->eps);
    double sum = 0, inv = 1.0 / ((double)A * D);
    for (size_t i = 0; i < (size_t)A * D; i++) {
        double d = c->h_p[i] - c->h_full[i];
        sum += d * d;
    }
    *loss = sum * inv;
    if (!grad) return 0;
    /* backward: dL/dh = 2 (h_p - h_full) / (A D) */
    memset(grad, 0, (size_t)c->L * per_layer * sizeof(double));
    for (size_t i = 0; i < (size_t)A * D; i++) c->dxn[i] = 2.0 * (c->h_p[i] - c->h_full[i]) * inv;
    memset(c->dx, 0, (size_t)A * D * sizeof(double));
    rmsnorm_back(c->dx, c->dxn, x, c->r_final, c->final_norm, A, D);
    for (int l = c->L - 1; l >= 0; l--) layer_back(c, l, alpha + l * per_layer, grad + l * per_layer);
    return 0;
}

static int cpu_norm_stats(void *ctx, double *q_abs, double *k_abs, lk_err *err) {
    cpu_ctx *c = ctx;
    if (!c->A) return lk_seterr(err, LK_EFAIL, "norm_stats before prepare");
    int hd = c->hd, j0 = c->sink, j1 = c->n - c->recent;
    for (int l = 0; l < c->L; l++)
        for (int g = 0; g < c->KV; g++) {
            size_t o = (size_t)(l * c->KV + g) * hd;
            const double *K = c->kcache + (size_t)l * c->cap_T * c->kvdim + (size_t)g * hd;
            for (int k = 0; k < hd; k++) {
                q_abs[o + k] += c->qabs[o + k];
                double s = 0;
                for (int j = j0; j < j1; j++) s += fabs(K[(size_t)j * c->kvdim + k]);
                if (j1 > j0) k_abs[o + k] += s / (j1 - j0);
            }
        }
    return 0;
}

static void cpu_free(void *ctx) {
    cpu_ctx *c = ctx;
    if (!c) return;
    buffers_free(c);
    for (int l = 0; c->layers && l < c->L; l++) free(c->layers[l].attn_norm); /* one block per layer */
    free(c->layers);
    free(c->final_norm);
    free(c->qabs);
    free(c);
}

/* n floats from src into a new double array at *p (advanced) */
static double *widen(double **p, const float *src, size_t n) {
    double *d = *p;
    for (size_t i = 0; i < n; i++) d[i] = src[i];
    *p += n;
    return d;
}

int lk_train_cpu_new(lk_train_backend *b, const lk_model *m, int sink, int recent, lk_err *err) {
    const lk_config *cfg = &m->cfg;
    if (cfg->rope.partial_rotary_factor != 1.0)
        return lk_seterr(err, LK_EINPUT, "partial rotary embeddings are not supported by leank-train");
    if (cfg->n_heads % cfg->n_kv_heads || cfg->head_dim % 2)
        return lk_seterr(err, LK_EINPUT, "n_heads %d not a multiple of n_kv_heads %d, or odd "
                         "head_dim %d", cfg->n_heads, cfg->n_kv_heads, cfg->head_dim);
    cpu_ctx *c = lk_zalloc(1, sizeof *c, "the training backend", err);
    if (!c) return LK_ENOMEM;
    c->model = m;
    c->L = cfg->n_layers;
    c->D = m->dim;
    c->H = cfg->n_heads;
    c->KV = cfg->n_kv_heads;
    c->hd = cfg->head_dim;
    c->F = m->hidden;
    c->vocab = cfg->vocab_size;
    c->qdim = m->q_dim;
    c->kvdim = m->kv_dim;
    c->eps = cfg->rms_eps;
    c->scale = 1.0 / sqrt((double)c->hd);
    c->sink = sink;
    c->recent = recent;
    int D = c->D, F = c->F, qd = c->qdim, kvd = c->kvdim;
    int bias = cfg->attention_bias; /* the model has bq, bk, bv exactly then */
    size_t per = 2 * (size_t)D + (size_t)qd * D + 2 * (size_t)kvd * D + (size_t)D * qd +
                 3 * (size_t)F * D + (bias ? (size_t)qd + 2 * kvd : 0);
    if (!(c->layers = lk_zalloc((size_t)c->L, sizeof(cpu_layer), "the training weights", err))) {
        cpu_free(c);
        return LK_ENOMEM;
    }
    for (int l = 0; l < c->L; l++) {
        cpu_layer *w = c->layers + l;
        const lk_layer_weights *s = &m->w.layer[l];
        double *p = lk_alloc(per, sizeof(double), "the training weights", err);
        if (!p) {
            cpu_free(c);
            return LK_ENOMEM;
        }
        w->attn_norm = widen(&p, s->attn_norm, D);
        w->mlp_norm = widen(&p, s->ffn_norm, D);
        w->wq = widen(&p, s->wq, (size_t)qd * D);
        w->wk = widen(&p, s->wk, (size_t)kvd * D);
        w->wv = widen(&p, s->wv, (size_t)kvd * D);
        w->wo = widen(&p, s->wo, (size_t)D * qd);
        w->wg = widen(&p, s->w_gate, (size_t)F * D);
        w->wu = widen(&p, s->w_up, (size_t)F * D);
        w->wd = widen(&p, s->w_down, (size_t)D * F);
        if (bias) {
            w->bq = widen(&p, s->bq, qd);
            w->bk = widen(&p, s->bk, kvd);
            w->bv = widen(&p, s->bv, kvd);
        }
    }
    double *p = lk_alloc((size_t)D, sizeof(double), "the training weights", err);
    c->final_norm = p ? widen(&p, m->w.final_norm, D) : NULL;
    c->qabs = lk_zalloc((size_t)c->L * c->KV * c->hd, sizeof(double), "the training statistics", err);
    if (!c->final_norm || !c->qabs) {
        cpu_free(c);
        return LK_ENOMEM;
    }
    memset(b, 0, sizeof *b);
    b->name = "cpu";
    b->ctx = c;
    b->n_layers = c->L;
    b->n_kv_heads = c->KV;
    b->head_dim = c->hd;
    b->prepare = cpu_prepare;
    b->loss_grad = cpu_loss_grad;
    b->norm_stats = cpu_norm_stats;
    b->free = cpu_free;
    return 0;
}
