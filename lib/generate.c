/* generate.c - prefill + sampling loop over lk_forward (see generate.h). */
#include "generate.h"

#include <stdlib.h>
#include <string.h>

#include "sampler.h"

void lk_generator_init(lk_generator *g, const lk_model *m, const lk_tokenizer *tok, const lk_mask *mask,
                       int sink, int recent) {
    memset(g, 0, sizeof *g);
    g->model = m;
    g->tok = tok;
    g->mask = mask;
    g->sink = sink;
    g->recent = recent;
    for (int i = 0; i < m->cfg.n_eos && i < 8; i++) g->eos[g->n_eos++] = m->cfg.eos_ids[i];
    if (g->n_eos == 0 && m->cfg.eos_token_id >= 0) g->eos[g->n_eos++] = m->cfg.eos_token_id;
    if (lk_tok_eos(tok) >= 0) g->eos[g->n_eos++] = lk_tok_eos(tok);
}

void lk_generator_free(lk_generator *g) {
    if (g->built) lk_state_free(&g->state);
    g->built = 0;
}

void lk_gen_result_free(lk_gen_result *r) {
    free(r->ids);
    free(r->text);
    memset(r, 0, sizeof *r);
}

static int is_eos(const lk_generator *g, int id) {
    for (int i = 0; i < g->n_eos; i++)
        if (g->eos[i] == id) return 1;
    return 0;
}

/* The state is rebuilt only when a request needs more rows or positions. */
static int ensure_state(lk_generator *g, int rows, int seq, lk_err *err) {
    if (g->built && g->state.max_rows >= rows && g->state.max_seq >= seq) {
        lk_kv_reset(&g->state.kv);
        return 0;
    }
    lk_generator_free(g);
    int rc = lk_state_build(&g->state, g->model, rows, seq, g->mask, g->sink, g->recent, err);
    if (rc == 0) g->built = 1;
    return rc;
}

/* positions for a request: the prompt plus max_tokens - 1, capped at the
 * model's context (or the prompt, if longer) */
static int positions(const lk_generator *g, const lk_gen_request *q) {
    int ctx = g->model->cfg.max_position_embeddings > q->n_prompt ? g->model->cfg.max_position_embeddings
                                                                   : q->n_prompt;
    long want = (long)q->n_prompt + (q->max_tokens > 0 ? q->max_tokens - 1 : 0);
    return want < ctx ? (int)want : ctx;
}

/* prefill progress (g->progress): "\rNAME: prefill N tokens, layer l/L, s" */
typedef struct {
    const char *name;
    int n;
    double t0;
} prefill_progress;
static void on_layer(void *ctx, int done, int n_layers) {
    const prefill_progress *p = ctx;
    fprintf(stderr, "\r%s: prefill %d tokens, layer %d/%d, %.1f s", p->name, p->n, done, n_layers, lk_now() - p->t0);
    if (done == n_layers) fputc('\n', stderr);
}

int lk_gen_prefill(lk_generator *g, const lk_gen_request *q, lk_err *err) {
    if (q->n_prompt < 1) return lk_seterr(err, LK_EINPUT, "empty prompt (no tokens)");
    int rc = ensure_state(g, q->n_prompt, positions(g, q), err);
    if (rc) return rc;
    prefill_progress pp = {g->progress, q->n_prompt, lk_now()};
    if (g->progress && q->n_prompt >= 1024) {
        g->state.on_layer = on_layer;
        g->state.on_layer_ctx = &pp;
    }
    rc = lk_forward(g->model, &g->state, q->prompt, q->n_prompt, NULL, err);
    g->state.on_layer = NULL;
    return rc;
}

int lk_gen_adopt(lk_generator *g, const lk_generator *src, const lk_gen_request *q, lk_err *err) {
    if (src->mask || !src->built || src->state.kv.len != q->n_prompt)
        return lk_seterr(err, LK_EUSAGE, "adopt: the source generator has not just prefilled this prompt densely");
    /* after adoption only single-token steps run: one row is enough */
    int rc = ensure_state(g, 1, positions(g, q), err);
    if (rc) return rc;
    if ((rc = lk_kv_copy(&g->state.kv, &src->state.kv, err))) return rc;
    memcpy(g->state.logits, src->state.logits, sizeof(float) * (size_t)g->model->cfg.vocab_size);
    return 0;
}

int lk_gen_decode(lk_generator *g, const lk_gen_request *q, const lk_gen_stream *out, lk_gen_result *r,
                  lk_err *err) {
    static const lk_gen_stream none = {0};
    const lk_model *m = g->model;
    lk_state *s = &g->state;
    if (!out) out = &none;
    r->n = 0;
    r->len = 0;
    r->stopped_eos = 0;
    r->n_decode = 0;
    r->decode_s = 0;
    if (!g->built || s->kv.len != q->n_prompt)
        return lk_seterr(err, LK_EUSAGE, "decode: the generator holds no prefilled prompt of %d tokens", q->n_prompt);
    r->ids = lk_realloc(r->ids, sizeof(int) * (q->max_tokens + 1));
    /* prompt text goes through the stream first, so that the generated text is
     * exactly the continuation of decode(prompt + generated) */
    lk_tok_stream ts;
    lk_tok_stream_init(&ts);
    for (int i = 0; i < q->n_prompt; i++)
        if (lk_tok_stream_push(g->tok, &ts, q->prompt[i], &r->text, &r->len, &r->cap) < 0)
            return lk_seterr(err, LK_EINPUT, "prompt: token id %d out of range", q->prompt[i]);
    if (out->prompt) out->prompt(out->ctx, q->prompt, q->n_prompt, r->text ? r->text : "", r->len);
    r->len = 0;
    if (r->text) r->text[0] = 0;

    lk_sampler smp;
    lk_sampler_build(&smp, m->cfg.vocab_size, q->temperature, q->top_k, q->top_p, q->seed);
    double t0 = lk_now();
    int rc = 0, fresh = 1; /* s->logits follow the last token (0: the context is full) */
    for (int t = 0; rc == 0 && fresh && t < q->max_tokens; t++) {
        int next = lk_sample(&smp, s->logits);
        r->ids[r->n++] = next;
        if (is_eos(g, next)) {
            r->stopped_eos = 1;
            break;
        }
        size_t before = r->len;
        lk_tok_stream_push(g->tok, &ts, next, &r->text, &r->len, &r->cap);
        if (out->token) out->token(out->ctx, next, r->text + before, r->len - before);
        fresh = 0;
        if (t + 1 < q->max_tokens && s->kv.len < s->max_seq) {
            rc = lk_forward(m, s, &next, 1, NULL, err);
            r->n_decode++;
            fresh = 1;
        }
    }
    r->decode_s = lk_now() - t0;
    size_t before = r->len;
    lk_tok_stream_flush(g->tok, &ts, &r->text, &r->len, &r->cap);
    if (!r->text) r->text = lk_strdup("");
    if (out->end) out->end(out->ctx, r->text + before, r->len - before);
    r->kv_bytes = lk_kv_bytes(&s->kv, s->kv.len);
    r->kv_dense = lk_kv_dense_bytes(&s->kv, s->kv.len);
    lk_sampler_free(&smp);
    return rc;
}

int lk_generate(lk_generator *g, const lk_gen_request *q, const lk_gen_stream *out, lk_gen_result *r,
                lk_err *err) {
    double t0 = lk_now();
    int rc = lk_gen_prefill(g, q, err);
    r->prefill_s = lk_now() - t0;
    return rc ? rc : lk_gen_decode(g, q, out, r, err);
}
