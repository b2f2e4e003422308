/* tokenizer_encode.c - text -> ids: added tokens, normalizer,
 * pre-tokenizer, BPE with a word cache, post-processor (see tokenizer.c for
 * the pipeline). */
#include "tokenizer_impl.h"

#include <utf8proc.h>

void lk_tok_work_free(work *w) {
    if (w->md) pcre2_match_data_free(w->md);
    free(w->norm.p);
    free(w->word.p);
    free(w->pieces.p);
    free(w->pieces2.p);
    free(w->tmp.p);
    free(w->sym);
    free(w->prev);
    free(w->next);
    free(w->heap);
    free(w->tab);
    free(w->arena.p);
    memset(w, 0, sizeof *w);
}

int lk_tok_work_oom(work *w) {
    buf *bs[] = {&w->norm, &w->word, &w->pieces, &w->pieces2, &w->tmp};
    int oom = w->oom;
    w->oom = 0;
    for (size_t i = 0; i < sizeof bs / sizeof *bs; i++) {
        oom |= bs[i]->oom;
        bs[i]->oom = 0;
    }
    return oom;
}


/* ------------------------------------------------------------------ */
/* encoding                                                             */

/* Append id; out of memory, it is dropped and w->oom set. */
static void push_id(work *w, int **ids, size_t *n, size_t *cap, int id) {
    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : 1024;
        if (w->oom || lk_resize(ids, c, sizeof(int), NULL, NULL)) {
            w->oom = 1;
            return;
        }
        *cap = c;
    }
    (*ids)[(*n)++] = id;
}

/* BPE merge loop over w->sym[0..n): a min-heap of candidate pairs keyed by
 * (rank, position): leftmost lowest-rank pair first, as HF. Stale entries
 * (a side already merged away) are skipped when popped. O(n log n). */
static void heap_push(work *w, size_t *hn, uint64_t v) {
    size_t i = (*hn)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (w->heap[p] <= v) break;
        w->heap[i] = w->heap[p];
        i = p;
    }
    w->heap[i] = v;
}
static uint64_t heap_pop(work *w, size_t *hn) {
    uint64_t top = w->heap[0], v = w->heap[--*hn];
    size_t i = 0, n = *hn;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && w->heap[c + 1] < w->heap[c]) c++;
        if (v <= w->heap[c]) break;
        w->heap[i] = w->heap[c];
        i = c;
    }
    if (n) w->heap[i] = v;
    return top;
}

/* Room for n symbols; 0, or -1 with w->oom set (the capacities stay those
 * of the arrays that grew: each array is at least the old capacity) */
static int work_reserve(work *w, size_t n) {
    if (n <= w->symcap) return 0;
    size_t c = pow2_at_least(n);
    if (lk_resize(&w->sym, c, sizeof(int), NULL, NULL) || lk_resize(&w->prev, c, sizeof(int), NULL, NULL) ||
        lk_resize(&w->next, c, sizeof(int), NULL, NULL) || lk_resize(&w->heap, 2 * c, sizeof(uint64_t), NULL, NULL)) {
        w->oom = 1;
        return -1;
    }
    w->symcap = c;
    w->heapcap = 2 * c;
    return 0;
}

static void bpe_merge(const lk_tokenizer *t, work *w, size_t n) {
    int *sym = w->sym, *prev = w->prev, *next = w->next, nid;
    size_t hn = 0;
    for (size_t i = 0; i < n; i++) {
        prev[i] = (int)i - 1;
        next[i] = i + 1 < n ? (int)i + 1 : -1;
    }
    for (size_t i = 0; i + 1 < n; i++) {
        uint32_t r = merge_rank(t, sym[i], sym[i + 1], &nid);
        if (r != UINT32_MAX) heap_push(w, &hn, (uint64_t)r << 32 | i);
    }
    while (hn) {
        uint64_t top = heap_pop(w, &hn);
        int i = (int)(uint32_t)top, j = next[i];
        uint32_t rank = (uint32_t)(top >> 32);
        if (sym[i] < 0 || j < 0) continue;
        /* still the same pair? (a neighbour may have changed since the push) */
        if (merge_rank(t, sym[i], sym[j], &nid) != rank) continue;
        sym[i] = nid;
        sym[j] = -1;
        next[i] = next[j];
        if (next[j] >= 0) prev[next[j]] = i;
        if (hn + 2 > w->heapcap) {
            if (lk_resize(&w->heap, 2 * w->heapcap, sizeof(uint64_t), NULL, NULL)) {
                w->oom = 1; /* the word stays partly merged; the call fails */
                return;
            }
            w->heapcap *= 2;
        }
        if (prev[i] >= 0) {
            uint32_t r = merge_rank(t, sym[prev[i]], sym[i], &nid);
            if (r != UINT32_MAX) heap_push(w, &hn, (uint64_t)r << 32 | (uint32_t)prev[i]);
        }
        if (next[i] >= 0) {
            uint32_t r = merge_rank(t, sym[i], sym[next[i]], &nid);
            if (r != UINT32_MAX) heap_push(w, &hn, (uint64_t)r << 32 | (uint32_t)i);
        }
    }
}

/* ---- word cache ---- */
enum { CACHE_MAX = 1 << 16 };

static const cache_ent *cache_get(work *w, const char *s, size_t n, uint64_t h) {
    if (!w->tabcap) return NULL;
    size_t mask = w->tabcap - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        cache_ent *e = &w->tab[i];
        if (!e->klen) return NULL;
        if (e->h == h && e->klen == n && !memcmp(w->arena.p + e->key, s, n)) return e;
    }
}
/* The cache only saves time: out of memory, the word is simply not cached. */
static void cache_put(work *w, const char *s, size_t n, uint64_t h, const int *ids, size_t nids) {
    if (n > 256 || w->nocache || w->oom) return; /* long runs rarely repeat */
    if (!w->tabcap || w->tabn >= CACHE_MAX) {
        /* first use, or full: start over (prose keeps reusing a small set) */
        if (!w->tabcap) {
            if (!(w->tab = malloc(2 * CACHE_MAX * sizeof *w->tab))) return;
            w->tabcap = 2 * CACHE_MAX;
        }
        memset(w->tab, 0, w->tabcap * sizeof *w->tab);
        w->tabn = 0;
        w->arena.n = 0;
    }
    size_t mask = w->tabcap - 1, i = h & mask;
    while (w->tab[i].klen) i = (i + 1) & mask;
    static const char pad[sizeof(int)];
    buf_put(&w->arena, pad, (sizeof(int) - w->arena.n % sizeof(int)) % sizeof(int));
    cache_ent e = {h, (uint32_t)w->arena.n, (uint32_t)n, 0, (uint32_t)nids};
    buf_put(&w->arena, s, n);
    buf_put(&w->arena, pad, (sizeof(int) - w->arena.n % sizeof(int)) % sizeof(int));
    e.ids = (uint32_t)w->arena.n;
    buf_put(&w->arena, ids, nids * sizeof(int));
    if (w->arena.oom) { /* not cached; what the arena held stays valid */
        w->arena.oom = 0;
        return;
    }
    w->tab[i] = e;
    w->tabn++;
}

/* One pre-token (raw bytes, after normalization) -> ids appended. */
static int encode_word(const lk_tokenizer *t, work *w, const char *s, size_t n, int **ids,
                       size_t *nid, size_t *cap, lk_err *err) {
    if (!n) return 0;
    uint64_t h = hash_bytes(s, n);
    const cache_ent *e = cache_get(w, s, n, h);
    if (e) {
        const int *c = (const int *)(w->arena.p + e->ids);
        for (uint32_t k = 0; k < e->nids; k++) push_id(w, ids, nid, cap, c[k]);
        return 0;
    }
    size_t start = *nid;
    if (t->byte_level) {
        if (t->ignore_merges) {
            w->word.n = 0;
            for (size_t i = 0; i < n; i++) {
                unsigned char b = (unsigned char)s[i];
                buf_put(&w->word, t->bl_chr[b], t->bl_chrlen[b]);
            }
            int id = vmap_find(t, w->word.p, w->word.n);
            if (id >= 0) {
                push_id(w, ids, nid, cap, id);
                cache_put(w, s, n, h, *ids + start, 1);
                return 0;
            }
        }
        if (work_reserve(w, n)) return lk_nomem(err, 0, "a word's BPE symbols");
        for (size_t i = 0; i < n; i++) {
            int id = t->byte_id[(unsigned char)s[i]];
            if (id < 0) {
                if (t->unk_id < 0)
                    return lk_seterr(err, LK_EINPUT, "%s: byte 0x%02x has no token and there is no unk_token",
                                     t->path, (unsigned char)s[i]);
                id = t->unk_id;
            }
            w->sym[i] = id;
        }
        bpe_merge(t, w, n);
    } else {
        if (t->ignore_merges) {
            int id = vmap_find(t, s, n);
            if (id >= 0) {
                push_id(w, ids, nid, cap, id);
                cache_put(w, s, n, h, *ids + start, 1);
                return 0;
            }
        }
        /* characters; unknown ones -> byte tokens, else unk. As HF, an unk
         * waits until the next known character (or the end): consecutive
         * unknowns fuse into one with fuse_unk. */
        if (work_reserve(w, n)) return lk_nomem(err, 0, "a word's BPE symbols");
        size_t m = 0; /* symbols */
        int unk_pending = 0;
        for (size_t i = 0; i < n;) {
            size_t k = utf8_len((const unsigned char *)s + i, n - i);
            if (!k) k = 1;
            int id = vmap_find(t, s + i, k);
            if (id >= 0) {
                if (unk_pending) w->sym[m++] = t->unk_id, unk_pending = 0;
                w->sym[m++] = id;
            } else {
                int all = t->byte_fallback;
                for (size_t b = 0; b < k && all; b++) all = t->byte_id[(unsigned char)s[i + b]] >= 0;
                if (all) {
                    for (size_t b = 0; b < k; b++) w->sym[m++] = t->byte_id[(unsigned char)s[i + b]];
                } else if (t->unk_id >= 0) {
                    if (unk_pending && !t->fuse_unk) w->sym[m++] = t->unk_id;
                    unk_pending = 1;
                } else
                    return lk_seterr(err, LK_EINPUT, "%s: character at '%.*s' has no token and there is "
                                     "no unk_token", t->path, (int)k, s + i);
            }
            i += k;
        }
        if (unk_pending) w->sym[m++] = t->unk_id;
        bpe_merge(t, w, m);
    }
    /* symbol 0 always survives (merges keep the left one) */
    for (int i = 0; i >= 0; i = w->next[i]) push_id(w, ids, nid, cap, w->sym[i]);
    cache_put(w, s, n, h, *ids + start, *nid - start);
    return 0;
}

/* Is s already in every normal form (so NFC etc. may be skipped)? True when
 * each character is a starter (combining class 0) without a canonical
 * (compat: any) decomposition that cannot compose with what precedes it
 * (not the second of a composition pair, not a Hangul jamo). Prose passes;
 * e.g. an em dash does not require a utf8proc_map call. */
static int nf_inert(const char *s, size_t n, int compat) {
    for (size_t i = 0; i < n;) {
        if ((unsigned char)s[i] < 0x80) {
            i++;
            continue;
        }
        utf8proc_int32_t cp;
        utf8proc_ssize_t l = utf8proc_iterate((const utf8proc_uint8_t *)s + i, n - i, &cp);
        if (l <= 0) return 0;
        const utf8proc_property_t *p = utf8proc_get_property(cp);
        if (p->combining_class || (p->decomp_seqindex != UINT16_MAX && (compat || p->decomp_type == 0)) ||
            (p->comb_index != UINT16_MAX && p->comb_index >= 0x8000) || (cp >= 0x1100 && cp <= 0x11FF))
            return 0;
        i += (size_t)l;
    }
    return 1;
}

/* Normalize s into w->norm. */
void lk_tok_normalize(const lk_tokenizer *t, work *w, const char *s, size_t n) {
    buf *b = &w->norm;
    b->n = 0;
    buf_put(b, s, n);
    buf tmp = w->tmp; /* scratch kept in w between calls */
    for (int k = 0; k < t->nnorm; k++) {
        const norm_op *op = &t->norm[k];
        switch (op->kind) {
        case NORM_NFC: case NORM_NFD: case NORM_NFKC: case NORM_NFKD: {
            if (nf_inert(b->p, b->n, op->kind == NORM_NFKC || op->kind == NORM_NFKD)) break;
            int opt = UTF8PROC_STABLE | (op->kind == NORM_NFC || op->kind == NORM_NFKC ? UTF8PROC_COMPOSE
                                                                                        : UTF8PROC_DECOMPOSE);
            if (op->kind == NORM_NFKC || op->kind == NORM_NFKD) opt |= UTF8PROC_COMPAT;
            utf8proc_uint8_t *o = NULL;
            utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *)b->p, (utf8proc_ssize_t)b->n, &o, opt);
            if (r >= 0) {
                b->n = 0;
                buf_put(b, o, (size_t)r);
            } else if (r == UTF8PROC_ERROR_NOMEM)
                w->oom = 1;
            free(o);
            break;
        }
        case NORM_LOWER: {
            tmp.n = 0;
            for (size_t i = 0; i < b->n;) {
                utf8proc_int32_t cp;
                utf8proc_ssize_t l = utf8proc_iterate((const utf8proc_uint8_t *)b->p + i, b->n - i, &cp);
                if (l <= 0) l = 1, cp = 0xFFFD;
                utf8proc_uint8_t e[4];
                buf_put(&tmp, e, (size_t)utf8proc_encode_char(utf8proc_tolower(cp), e));
                i += (size_t)l;
            }
            b->n = 0;
            buf_put(b, tmp.p, tmp.n);
            break;
        }
        case NORM_PREPEND:
            if (b->n) { /* HF prepends only to a non-empty string */
                tmp.n = 0;
                buf_put(&tmp, op->a, strlen(op->a));
                buf_put(&tmp, b->p, b->n);
                b->n = 0;
                buf_put(b, tmp.p, tmp.n);
            }
            break;
        case NORM_REPLACE:
            tmp.n = 0;
            put_replaced(&tmp, b->p, b->n, op->a, op->b);
            b->n = 0;
            buf_put(b, tmp.p, tmp.n);
            break;
        }
    }
    w->tmp = tmp;
}

/* Pre-token pieces as (offset, length) pairs into a text (w->pieces). */
typedef struct {
    uint32_t off, len;
} span;

static void add_span(buf *p, size_t off, size_t len) {
    if (!len) return;
    span s = {(uint32_t)off, (uint32_t)len};
    buf_put(p, &s, sizeof s);
}

/* Split one span of text by a pre-tokenizer regex into out. */
static int split_span(const lk_tokenizer *t, const pre_op *op, work *w, const char *text, span in,
                      buf *out, lk_err *err) {
    const char *s = text + in.off;
    size_t n = in.len, pos = 0, last = 0;
    /* matches (or with invert, the gaps) are the "delimiters" */
    size_t pend_off = 0, pend_len = 0; /* MergedWithNext: delimiter waiting for the next piece */
    int have_pend = 0, last_delim = 0; /* Contiguous: last piece was a delimiter */
    while (pos <= n) {
        int rc = pcre2_jit_match(op->re, (PCRE2_SPTR)s, n, pos, PCRE2_NO_UTF_CHECK, w->md, NULL);
        if (rc < 0 && rc != PCRE2_ERROR_NOMATCH) /* no JIT, or its stack ran out: interpret */
            rc = pcre2_match(op->re, (PCRE2_SPTR)s, n, pos, PCRE2_NO_UTF_CHECK, w->md, NULL);
        if (rc < 0 && rc != PCRE2_ERROR_NOMATCH) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            /* a limit hit is the text's doing (10 MB of spaces): bad input, not a failure */
            int limit = rc == PCRE2_ERROR_MATCHLIMIT || rc == PCRE2_ERROR_DEPTHLIMIT ||
                        rc == PCRE2_ERROR_HEAPLIMIT || rc == PCRE2_ERROR_JIT_STACKLIMIT || rc == PCRE2_ERROR_NOMEMORY;
            return lk_seterr(err, limit ? LK_EINPUT : LK_EFAIL, "%s: pre_tokenizer regex failed at byte %zu of a "
                             "%zu-byte segment: %s%s", t->path, pos, n, (char *)msg,
                             limit ? " (expected text the regex can split: shorten the run)" : "");
        }
        size_t ms, me;
        if (rc < 0) ms = me = n;
        else {
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(w->md);
            ms = ov[0];
            me = ov[1];
        }
        int done = rc < 0;
        if (!done && me == ms) { /* empty match: not a delimiter, step on */
            pos = me + 1;
            while (pos < n && ((unsigned char)s[pos] & 0xC0) == 0x80) pos++;
            if (pos > n) done = 1, ms = me = n;
            else continue;
        }
        /* gap [last, ms), delimiter [ms, me) */
        size_t gs = last, ge = ms, ds = ms, de = me;
        if (op->invert) { /* the gaps are the delimiters */
            size_t a = gs, b = ge;
            gs = ds, ge = de, ds = a, de = b;
        }
        /* emit in text order: gap first, then delimiter (inverted: the reverse) */
        for (int part = 0; part < 2; part++) {
            int is_delim = (part == 0) == (op->invert != 0);
            size_t a = is_delim ? ds : gs, b = is_delim ? de : ge;
            if (a >= b) continue;
            if (!is_delim) {
                last_delim = 0;
                if (have_pend) {
                    add_span(out, in.off + pend_off, b - pend_off);
                    have_pend = 0;
                } else
                    add_span(out, in.off + a, b - a);
                continue;
            }
            span *ps;
            switch (op->behavior) {
            case B_REMOVED: break;
            case B_ISOLATED: add_span(out, in.off + a, b - a); break;
            case B_MERGED_PREV: /* delimiter joins the previous piece unless that is one too (HF) */
                ps = out->n ? (span *)(out->p + out->n - sizeof(span)) : NULL;
                if (ps && ps->off + ps->len == in.off + a && ps->off >= in.off && !last_delim)
                    ps->len += (uint32_t)(b - a);
                else add_span(out, in.off + a, b - a);
                break;
            case B_MERGED_NEXT:
                if (have_pend) add_span(out, in.off + pend_off, pend_len);
                pend_off = a, pend_len = b - a, have_pend = 1;
                break;
            case B_CONTIGUOUS:
                ps = out->n ? (span *)(out->p + out->n - sizeof(span)) : NULL;
                if (ps && ps->off + ps->len == in.off + a && ps->off >= in.off && last_delim)
                    ps->len += (uint32_t)(b - a);
                else add_span(out, in.off + a, b - a);
                break;
            }
            last_delim = 1;
        }
        if (done) break;
        last = pos = me;
    }
    if (have_pend) add_span(out, in.off + pend_off, pend_len);
    return 0;
}

/* Encode one segment without added tokens: normalize, pre-tokenize, BPE. */
static int encode_segment(const lk_tokenizer *t, work *w, const char *s, size_t n, int normalized,
                          int **ids, size_t *nid, size_t *cap, lk_err *err) {
    const char *text = s;
    size_t tn = n;
    if (t->nnorm && !normalized) {
        lk_tok_normalize(t, w, s, n);
        text = w->norm.p;
        tn = w->norm.n;
    }
    if (!tn) return 0;
    /* pieces: start with the whole segment, each pre-tokenizer refines them */
    buf *cur = &w->pieces, *nxt = &w->pieces2, *x; /* swapped after each step */
    cur->n = 0;
    add_span(cur, 0, tn);
    char *own = NULL; /* text copy when ByteLevel add_prefix_space inserts bytes */
    for (int k = 0; k < t->npre; k++) {
        const pre_op *op = &t->pre[k];
        if (op->kind == PRE_METASPACE) {
            buf nt = {0};
            size_t rl = strlen(op->repl);
            nxt->n = 0;
            span *sp = (span *)cur->p;
            for (size_t i = 0; i < cur->n / sizeof(span); i++) {
                size_t o = nt.n;
                const char *ps = text + sp[i].off;
                int starts = sp[i].len >= rl && !memcmp(ps, op->repl, rl);
                if (!starts && *ps != ' ' && (op->prepend == 2 || (op->prepend == 1 && w->seg_first && sp[i].off == 0)))
                    buf_put(&nt, op->repl, rl);
                put_replaced(&nt, ps, sp[i].len, " ", op->repl);
                add_span(nxt, o, nt.n - o);
            }
            if (nt.oom) w->oom = 1;
            free(own);
            own = nt.p;
            text = own;
            x = cur, cur = nxt, nxt = x;
        }
        if (op->kind == PRE_BYTELEVEL && op->add_prefix_space) {
            /* a space before every piece not starting with one */
            buf nt = {0};
            nxt->n = 0;
            span *sp = (span *)cur->p;
            for (size_t i = 0; i < cur->n / sizeof(span); i++) {
                size_t o = nt.n;
                if (text[sp[i].off] != ' ') buf_put(&nt, " ", 1);
                buf_put(&nt, text + sp[i].off, sp[i].len);
                add_span(nxt, o, nt.n - o);
            }
            if (nt.oom) w->oom = 1;
            free(own);
            own = nt.p;
            text = own;
            x = cur, cur = nxt, nxt = x;
        }
        if (!op->re) continue;
        nxt->n = 0;
        span *sp = (span *)cur->p;
        size_t np = cur->n / sizeof(span);
        for (size_t i = 0; i < np; i++) {
            int rc = split_span(t, op, w, text, sp[i], nxt, err);
            if (rc) {
                free(own);
                return rc;
            }
        }
        x = cur, cur = nxt, nxt = x;
    }
    span *sp = (span *)cur->p;
    size_t np = cur->n / sizeof(span);
    int rc = 0;
    for (size_t i = 0; i < np && !rc; i++) rc = encode_word(t, w, text + sp[i].off, sp[i].len, ids, nid, cap, err);
    free(own);
    return rc;
}

/* Does s start (last: end) with a word character, as HF's regex \w (Rust:
 * Alphabetic, marks, Nd, Pc, joiners)? For single_word added tokens. */
static int is_word_char(const char *s, size_t n, int last) {
    if (!n) return 0;
    size_t i = 0;
    if (last) { /* back to the start of the last character */
        i = n - 1;
        while (i > 0 && ((unsigned char)s[i] & 0xC0) == 0x80) i--;
    }
    utf8proc_int32_t cp;
    if (utf8proc_iterate((const utf8proc_uint8_t *)s + i, n - i, &cp) <= 0) return 0;
    int c = utf8proc_category(cp);
    return (c >= UTF8PROC_CATEGORY_LU && c <= UTF8PROC_CATEGORY_ME) || /* letters, marks */
           c == UTF8PROC_CATEGORY_ND || c == UTF8PROC_CATEGORY_NL || c == UTF8PROC_CATEGORY_PC ||
           cp == 0x200C || cp == 0x200D ||
           /* symbols that are Other_Alphabetic: circled / squared letters */
           (cp >= 0x24B6 && cp <= 0x24E9) || (cp >= 0x1F130 && cp <= 0x1F149) ||
           (cp >= 0x1F150 && cp <= 0x1F169) || (cp >= 0x1F170 && cp <= 0x1F189);
}
static int is_ws(const char *s, size_t n, size_t *len) {
    utf8proc_int32_t cp;
    utf8proc_ssize_t l = utf8proc_iterate((const utf8proc_uint8_t *)s, n, &cp);
    if (l <= 0) return 0;
    *len = (size_t)l;
    int c = utf8proc_category(cp);
    return (cp >= 9 && cp <= 13) || cp == 0x85 || c == UTF8PROC_CATEGORY_ZS ||
           c == UTF8PROC_CATEGORY_ZL || c == UTF8PROC_CATEGORY_ZP;
}

/* Split s on added tokens (those with normalized == want_norm), leftmost-
 * longest as HF's aho-corasick; other text goes to encode_plain. */
static int encode_added(const lk_tokenizer *t, work *w, const char *s, size_t n, int want_norm,
                        int **ids, size_t *nid, size_t *cap, lk_err *err);

/* Text between added tokens. From the raw text (want_norm 0): normalize;
 * if some added tokens match normalized text (normalized: true), split the
 * normalized text on them first. */
static int encode_plain(const lk_tokenizer *t, work *w, const char *s, size_t n, int want_norm,
                        int **ids, size_t *nid, size_t *cap, lk_err *err) {
    if (want_norm || !n) return encode_segment(t, w, s, n, want_norm, ids, nid, cap, err);
    if (!t->any_norm_added) return encode_segment(t, w, s, n, 0, ids, nid, cap, err);
    lk_tok_normalize(t, w, s, n);
    char *copy = lk_alloc(w->norm.n + 1, 1, "the normalized text", err); /* w->norm is reused below */
    if (!copy) return LK_ENOMEM;
    memcpy(copy, w->norm.p, w->norm.n);
    int rc = encode_added(t, w, copy, w->norm.n, 1, ids, nid, cap, err);
    free(copy);
    return rc;
}

static int encode_added(const lk_tokenizer *t, work *w, const char *s, size_t n, int want_norm,
                        int **ids, size_t *nid, size_t *cap, lk_err *err) {
    size_t seg = 0, i = 0;
    int base_first = w->seg_first;
    while (i < n) {
        if (!t->added_first[(unsigned char)s[i]]) {
            i++;
            continue;
        }
        const added_tok *best = NULL;
        for (int k = 0; k < t->nadded; k++) {
            const added_tok *a = &t->added[k];
            if (a->normalized != want_norm || !a->plen || a->plen > n - i || (best && a->plen <= best->plen))
                continue;
            if (!memcmp(s + i, a->pat, a->plen)) best = a;
        }
        if (!best) {
            i++;
            continue;
        }
        size_t start = i, stop = i + best->plen;
        i = stop; /* a rejected match still consumes its text, as HF */
        /* single_word: no word character just before or after (HF looks at
         * the whole text before the match, previous added tokens included) */
        if (best->single_word && (is_word_char(s, start, 1) || is_word_char(s + stop, n - stop, 0)))
            continue;
        if (best->lstrip) {
            while (start > seg) {
                size_t b = start - 1, l;
                while (b > seg && ((unsigned char)s[b] & 0xC0) == 0x80) b--;
                if (!is_ws(s + b, start - b, &l)) break;
                start = b;
            }
        }
        if (best->rstrip) {
            size_t l;
            while (stop < n && is_ws(s + stop, n - stop, &l)) stop += l;
        }
        w->seg_first = base_first && seg == 0;
        int rc = encode_plain(t, w, s + seg, start - seg, want_norm, ids, nid, cap, err);
        if (rc) return rc;
        push_id(w, ids, nid, cap, best->id);
        seg = i = stop;
    }
    w->seg_first = base_first && seg == 0;
    return encode_plain(t, w, s + seg, n - seg, want_norm, ids, nid, cap, err);
}

int lk_tok_encode(const lk_tokenizer *t, const char *text, size_t len, int add_special, int **ids,
                  size_t *n, size_t *cap, lk_err *err) {
    *n = 0;
    size_t bad = utf8_check((const unsigned char *)text, len);
    if (bad < len)
        return lk_seterr(err, LK_EINPUT, "invalid UTF-8 at byte offset %zu (byte 0x%02x; "
                         "expected UTF-8 text)", bad, (unsigned char)text[bad]);
    /* the tokenizer's own scratch and word cache if free, else a private one */
    lk_tokenizer *tm = (lk_tokenizer *)t;
    work priv = {0}, *w = &priv;
    int slot = -1;
    for (int i = 0; i < WORK_SLOTS && slot < 0; i++)
        if (pthread_mutex_trylock(&tm->lock[i]) == 0) slot = i;
    if (slot >= 0) w = &tm->w[slot];
    else priv.nocache = 1; /* a fresh 3 MB cache per call would cost more than it saves */
    int rc = 0;
    if (!w->md && !(w->md = pcre2_match_data_create(1, NULL))) rc = lk_nomem(err, 0, "PCRE2 match data");
    if (add_special && !rc)
        for (int k = 0; k < t->nprefix; k++) push_id(w, ids, n, cap, t->prefix[k]);
    w->seg_first = 1;
    if (!rc) rc = encode_added(t, w, text, len, 0, ids, n, cap, err);
    if (add_special && !rc)
        for (int k = 0; k < t->nsuffix; k++) push_id(w, ids, n, cap, t->suffix[k]);
    if (lk_tok_work_oom(w) && !rc) rc = lk_nomem(err, 0, "the encoder's buffers");
    if (slot >= 0) pthread_mutex_unlock(&tm->lock[slot]);
    else lk_tok_work_free(&priv);
    if (rc) *n = 0;
    return rc;
}

