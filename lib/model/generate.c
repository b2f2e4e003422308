/* generate.c - prefill + sampling loop over the engine (see generate.h). */
#include "generate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void lk_generator_init(lk_generator *g, lk_engine *e, const lk_tokenizer *tok) {
    const lk_config *c = lk_engine_config(e);
    memset(g, 0, sizeof *g);
    g->e = e;
    g->tok = tok;
    for (int i = 0; i < c->n_eos && i < 8; i++) g->eos[g->n_eos++] = c->eos_ids[i];
    if (g->n_eos == 0 && c->eos_token_id >= 0) g->eos[g->n_eos++] = c->eos_token_id;
    if (lk_tok_eos(tok) >= 0) g->eos[g->n_eos++] = lk_tok_eos(tok);
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

int lk_gen_positions(const lk_generator *g, const lk_gen_request *q) {
    int ctx = lk_engine_config(g->e)->max_position_embeddings;
    if (ctx < q->n_prompt) ctx = q->n_prompt;
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

/* The prompt's text goes through the task's stream first, so that the
 * generated text is exactly the continuation of decode(prompt + generated). */
static int start_text(const lk_generator *g, lk_gen_task *t, lk_err *err) {
    lk_gen_result *r = &t->r;
    lk_tok_stream_init(&t->ts);
    for (int i = 0; i < t->q.n_prompt; i++) {
        int got = lk_tok_stream_push(g->tok, &t->ts, t->q.prompt[i], &r->text, &r->len, &r->cap);
        if (got == -LK_ENOMEM) return lk_nomem(err, 0, "the prompt's text");
        if (got < 0) return lk_seterr(err, LK_EINPUT, "prompt: token id %d out of range", t->q.prompt[i]);
    }
    if (t->out && t->out->prompt) t->out->prompt(t->out->ctx, t->q.prompt, t->q.n_prompt, r->text ? r->text : "", r->len);
    r->len = 0;
    if (r->text) r->text[0] = 0;
    return 0;
}

/* The task's end: its text complete (0), or LK_ENOMEM. */
static int finish(const lk_generator *g, lk_gen_task *t, lk_err *err) {
    lk_gen_result *r = &t->r;
    size_t before = r->len;
    t->active = 0;
    if (lk_tok_stream_flush(g->tok, &t->ts, &r->text, &r->len, &r->cap) < 0 || (!r->text && !(r->text = lk_dup("", err))))
        return lk_nomem(err, 0, "the generated text");
    if (t->out && t->out->end) t->out->end(t->out->ctx, r->text + before, r->len - before);
    lk_seq_kv_info(t->seq, &r->kv);
    return 0;
}

static void free_seqs(lk_gen_task *t, int n) {
    for (int i = 0; i < n; i++) {
        lk_seq_free(t[i].seq);
        t[i].seq = NULL;
    }
}

int lk_gen_run(const lk_generator *g, lk_gen_task *t, int n, lk_err *err) {
    int rc = 0;
    for (int i = 0; i < n; i++) {
        lk_gen_result *r = &t[i].r;
        r->n = 0;
        r->len = 0;
        r->stopped_eos = 0;
        r->n_decode = 0;
        r->prefill_s = r->decode_s = 0;
        t[i].seq = NULL;
        t[i].active = 0;
    }
    /* every cache first: a batch that does not fit fails before any work */
    for (int i = 0; i < n && rc == 0; i++) {
        const lk_gen_request *q = &t[i].q;
        if (q->n_prompt < 1) {
            rc = lk_seterr(err, LK_EINPUT, "empty prompt (no tokens)");
            break;
        }
        if (t[i].adopt >= i || (t[i].adopt >= 0 && t[t[i].adopt].plan)) {
            rc = lk_seterr(err, LK_EUSAGE, "task %d adopts task %d, which is not an earlier dense task", i, t[i].adopt);
            break;
        }
        lk_seq_opts o = {.plan = t[i].plan, .max_len = lk_gen_positions(g, q),
                         .sampling = {q->temperature, q->top_k, q->top_p > 0 ? q->top_p : 1.0f, q->seed}};
        rc = lk_seq_new(g->e, &t[i].seq, &o, err);
        if (rc == 0) rc = lk_resize(&t[i].r.ids, (size_t)q->max_tokens + 1, sizeof(int), "the generated ids", err);
    }
    for (int i = 0; i < n && rc == 0; i++) {
        double t0 = lk_now();
        if (t[i].adopt >= 0) {
            rc = lk_seq_adopt(g->e, t[i].seq, t[t[i].adopt].seq, err);
        } else {
            prefill_progress pp = {g->progress, t[i].q.n_prompt, t0};
            int show = g->progress && t[i].q.n_prompt >= 1024;
            if (show) lk_seq_set_progress(t[i].seq, on_layer, &pp);
            rc = lk_engine_prefill(g->e, t[i].seq, t[i].q.prompt, t[i].q.n_prompt, err);
            if (show) lk_seq_set_progress(t[i].seq, NULL, NULL);
            t[i].r.prefill_s = lk_now() - t0;
        }
        if (rc == 0) rc = start_text(g, &t[i], err);
        t[i].active = t[i].q.max_tokens > 0;
        if (!t[i].active && rc == 0) rc = finish(g, &t[i], err);
    }
    lk_seq **act = lk_alloc((size_t)n, sizeof *act, "the batch", err);
    int *ids = lk_alloc((size_t)n, sizeof *ids, "the batch", err), *who = lk_alloc((size_t)n, sizeof *who, "the batch", err);
    if (!rc && (!act || !ids || !who)) rc = LK_ENOMEM;
    while (rc == 0) {
        int na = 0;
        for (int i = 0; i < n; i++)
            if (t[i].active) {
                who[na] = i;
                act[na++] = t[i].seq;
            }
        if (na == 0) break;
        double t0 = lk_now();
        if ((rc = lk_engine_sample(g->e, act, na, ids, err))) break;
        int nd = 0; /* sequences that go on: one more token each */
        for (int a = 0; a < na; a++) {
            lk_gen_task *k = &t[who[a]];
            lk_gen_result *r = &k->r;
            int next = ids[a];
            r->ids[r->n++] = next;
            if (is_eos(g, next)) {
                r->stopped_eos = 1;
                if ((rc = finish(g, k, err))) break;
                continue;
            }
            size_t before = r->len;
            if (lk_tok_stream_push(g->tok, &k->ts, next, &r->text, &r->len, &r->cap) == -LK_ENOMEM) {
                rc = lk_nomem(err, 0, "the generated text");
                break;
            }
            if (k->out && k->out->token) k->out->token(k->out->ctx, next, r->text + before, r->len - before);
            if (r->n < k->q.max_tokens && lk_seq_len(k->seq) < lk_seq_max_len(k->seq)) {
                who[nd] = who[a];
                act[nd] = k->seq;
                ids[nd++] = next;
            } else if ((rc = finish(g, k, err))) {
                break;
            }
        }
        if (rc) break;
        if (nd) rc = lk_engine_decode(g->e, act, nd, ids, err);
        double dt = lk_now() - t0;
        for (int a = 0; a < nd; a++) {
            t[who[a]].r.n_decode++;
            t[who[a]].r.decode_s += dt;
        }
        if (rc) break;
    }
    free(act);
    free(ids);
    free(who);
    free_seqs(t, n);
    return rc;
}

int lk_generate(const lk_generator *g, const lk_gen_request *q, const lk_plan *plan, const lk_gen_stream *out,
                lk_gen_result *r, lk_err *err) {
    lk_gen_task t = {.q = *q, .plan = plan, .adopt = -1, .out = out, .r = *r};
    int rc = lk_gen_run(g, &t, 1, err);
    *r = t.r;
    return rc;
}
