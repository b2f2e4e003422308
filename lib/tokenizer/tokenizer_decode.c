/* tokenizer_decode.c - ids -> text, as HF decode(); and the streaming
 * decoder for generation. Each id's bytes are precomputed at load
 * (build_pieces in tokenizer.c); here they are joined, byte-fallback runs
 * resolved and invalid UTF-8 replaced as HF does. */
#include "tokenizer_impl.h"

/* Bytes of the longest prefix of s that could still become a valid
 * character (used to hold back an unfinished character); 0 if s[0] can
 * never start one. Stops at n. */
static size_t utf8_valid_prefix(const unsigned char *s, size_t n) {
    size_t need;
    return utf8_prefix(s, n, &need);
}

/* Append s to b as Rust's String::from_utf8_lossy does: each maximal
 * invalid subpart becomes one U+FFFD. If hold is non-NULL, an unfinished
 * character at the very end is not written; its length goes to *hold. */
static void put_lossy(buf *b, const unsigned char *s, size_t n, size_t *hold) {
    static const char fffd[] = "\xEF\xBF\xBD";
    size_t i = 0, run = 0;
    if (hold) *hold = 0;
    while (i < n) {
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        size_t k = utf8_len(s + i, n - i);
        if (k) {
            i += k;
            continue;
        }
        size_t p = utf8_valid_prefix(s + i, n - i);
        if (hold && p > 0 && i + p == n && p < 4) {
            /* may be completed by the next token */
            buf_put(b, s + run, i - run);
            *hold = p;
            return;
        }
        buf_put(b, s + run, i - run);
        buf_put(b, fffd, 3);
        i += p ? p : 1;
        run = i;
    }
    buf_put(b, s + run, n - run);
}

/* ------------------------------------------------------------------ */
/* decoding                                                             */

int lk_tok_decode(const lk_tokenizer *t, const int *ids, size_t n, int skip_special, char **out,
                  size_t *len, size_t *cap, lk_err *err) {
    buf b = {*out, *len, *cap, 0}, raw = {0};
    size_t start = b.n;
    int first = 1;
    for (size_t i = 0; i < n;) {
        int id = ids[i];
        if (id < 0 || id >= t->nvocab || t->tok_off[id] == UINT32_MAX) {
            free(raw.p);
            if (b.p) b.p[start] = 0;
            *out = b.p, *len = start, *cap = b.cap;
            return lk_seterr(err, LK_EINPUT, "ids[%zu] = %d: not a token id (expected 0..%d)", i, id,
                             t->nvocab - 1);
        }
        if (skip_special && t->is_special[id]) {
            i++;
            continue;
        }
        if (t->dec_byte[id] >= 0) {
            /* ByteFallback: a run of <0xNN> tokens is its UTF-8 if valid,
             * else one U+FFFD per token (HF) */
            raw.n = 0;
            size_t j = i;
            for (; j < n; j++) {
                int x = ids[j];
                if (x < 0 || x >= t->nvocab) break;
                if (skip_special && t->is_special[x]) continue;
                if (t->dec_byte[x] < 0) break;
                unsigned char c = (unsigned char)t->dec_byte[x];
                buf_put(&raw, &c, 1);
            }
            if (utf8_check((unsigned char *)raw.p, raw.n) == raw.n) buf_put(&b, raw.p, raw.n);
            else
                for (size_t k = 0; k < raw.n; k++) buf_put(&b, "\xEF\xBF\xBD", 3);
            i = j;
        } else {
            if (t->dec_join_space && !first) buf_put(&b, " ", 1);
            buf_put(&b, t->dec + t->dec_off[id], t->dec_len[id]);
            i++;
        }
        first = 0;
    }
    int oom = raw.oom;
    free(raw.p);
    buf_grow(&b, 0);
    /* byte-level pieces may split characters: lossy UTF-8 over the whole */
    size_t bad = b.oom ? b.n - start : utf8_check((unsigned char *)b.p + start, b.n - start);
    if (bad < b.n - start) {
        buf fixed = {0};
        put_lossy(&fixed, (unsigned char *)b.p + start, b.n - start, NULL);
        b.n = start;
        if (!(oom |= fixed.oom)) buf_put(&b, fixed.p, fixed.n);
        free(fixed.p);
    }
    if (oom || b.oom) { /* what *out held before stays, the block is still the caller's */
        if (b.p) b.p[start] = 0;
        *out = b.p, *len = start, *cap = b.cap;
        return lk_nomem(err, 0, "the decoded text");
    }
    for (int k = 0; k < t->dec_strip_start && b.n > start && b.p[start] == ' '; k++) {
        memmove(b.p + start, b.p + start + 1, b.n - start - 1);
        b.n--;
    }
    b.p[b.n] = 0;
    *out = b.p, *len = b.n, *cap = b.cap;
    return 0;
}

void lk_tok_stream_init(lk_tok_stream *s) {
    memset(s, 0, sizeof *s);
    s->skip_special = 1;
}

/* append text to the stream's output, applying the leading-space strip */
static void stream_emit(const lk_tokenizer *t, lk_tok_stream *s, buf *b, const unsigned char *p, size_t n) {
    if (!n) return;
    if (!s->started) {
        for (int k = 0; k < t->dec_strip_start && n && *p == ' '; k++) p++, n--;
        s->started = 1;
    }
    buf_put(b, p, n);
}

/* end of a run of byte tokens: its UTF-8 if valid, else U+FFFD per token */
static void stream_end_run(const lk_tokenizer *t, lk_tok_stream *s, buf *b) {
    if (s->npend && utf8_check(s->pend, (size_t)s->npend) == (size_t)s->npend)
        stream_emit(t, s, b, s->pend, (size_t)s->npend);
    else
        for (int k = 0; k < s->npend; k++) stream_emit(t, s, b, (const unsigned char *)"\xEF\xBF\xBD", 3);
    s->npend = 0;
    s->run_bad = 0;
}

/* Hand b back to the caller's (out, len, cap), NUL-terminated: the bytes
 * appended since before, or -LK_ENOMEM with none of them. */
static int stream_out(buf *b, size_t before, int oom, char **out, size_t *len, size_t *cap) {
    buf_grow(b, 0);
    if (oom || b->oom) b->n = before;
    if (b->p) b->p[b->n] = 0;
    *out = b->p, *len = b->n, *cap = b->cap;
    return oom || b->oom ? -LK_ENOMEM : (int)(b->n - before);
}

int lk_tok_stream_push(const lk_tokenizer *t, lk_tok_stream *s, int id, char **out, size_t *len,
                       size_t *cap) {
    if (id < 0 || id >= t->nvocab || t->tok_off[id] == UINT32_MAX) return -1;
    if (s->skip_special && t->is_special[id]) return 0;
    buf b = {*out, *len, *cap, 0};
    size_t before = b.n;
    int oom = 0;
    const unsigned char *p = (const unsigned char *)t->dec + t->dec_off[id];
    size_t n = t->dec_len[id];
    if (t->dec_byte[id] >= 0) {
        /* ByteFallback: hold the run until it ends, unless already invalid */
        if (s->run_bad) stream_emit(t, s, &b, (const unsigned char *)"\xEF\xBF\xBD", 3);
        else {
            s->pend[s->npend++] = *p;
            size_t m = (size_t)s->npend, i = 0, k;
            while (i < m && (k = utf8_len(s->pend + i, m - i))) i += k;
            if (i < m && i + utf8_valid_prefix(s->pend + i, m - i) < m) { /* can never be valid */
                for (size_t q = 0; q < m; q++) stream_emit(t, s, &b, (const unsigned char *)"\xEF\xBF\xBD", 3);
                s->npend = 0;
                s->run_bad = 1;
            } else if (m == sizeof s->pend) { /* very long valid run: let it out */
                stream_emit(t, s, &b, s->pend, i);
                memmove(s->pend, s->pend + i, m - i);
                s->npend = (int)(m - i);
            }
        }
    } else if (t->byte_fallback_dec) {
        stream_end_run(t, s, &b);
        if (t->dec_join_space && s->started) buf_put(&b, " ", 1);
        stream_emit(t, s, &b, p, n);
    } else {
        /* byte-level: held-back bytes + this piece, lossy, holding back an
         * unfinished character at the end */
        if (t->dec_join_space && s->started) buf_put(&b, " ", 1);
        unsigned char tmp[256], *all = s->npend + n <= sizeof tmp ? tmp : malloc(s->npend + n);
        size_t m = (size_t)s->npend + n, hold;
        buf lossy = {0};
        if (all) {
            memcpy(all, s->pend, (size_t)s->npend);
            memcpy(all + s->npend, p, n);
            put_lossy(&lossy, all, m, &hold);
        }
        if (!all || lossy.oom) oom = 1;
        else {
            stream_emit(t, s, &b, (const unsigned char *)lossy.p, lossy.n);
            memcpy(s->pend, all + m - hold, hold);
            s->npend = (int)hold;
        }
        free(lossy.p);
        if (all != tmp) free(all);
    }
    return stream_out(&b, before, oom, out, len, cap);
}

int lk_tok_stream_flush(const lk_tokenizer *t, lk_tok_stream *s, char **out, size_t *len, size_t *cap) {
    buf b = {*out, *len, *cap, 0};
    size_t before = b.n;
    int oom = 0;
    if (t->byte_fallback_dec) stream_end_run(t, s, &b);
    else if (s->npend) {
        buf lossy = {0};
        put_lossy(&lossy, s->pend, (size_t)s->npend, NULL);
        if (!(oom = lossy.oom)) stream_emit(t, s, &b, (const unsigned char *)lossy.p, lossy.n);
        free(lossy.p);
    }
    s->npend = 0;
    return stream_out(&b, before, oom, out, len, cap);
}
