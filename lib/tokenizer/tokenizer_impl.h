/* tokenizer_impl.h - internals shared by tokenizer.c (loading a
 * tokenizer.json), tokenizer_encode.c (text -> ids) and tokenizer_decode.c
 * (ids -> text): the lk_tokenizer struct, its hash maps, byte buffers and
 * UTF-8 helpers. Not part of the API: use tokenizer.h. */
#ifndef LEANK_TOKENIZER_IMPL_H
#define LEANK_TOKENIZER_IMPL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer.h"

/* ------------------------------------------------------------------ */
/* small helpers                                                        */

/* A growing byte buffer, NUL-terminated after its n bytes. A growth that
 * fails sets oom and every later put is dropped (n and the bytes so far stay
 * as they were, so reading the buffer is still safe): its owner checks oom
 * once, at the end, and reports LK_ENOMEM. */
typedef struct {
    char *p;
    size_t n, cap;
    int oom;
} buf;

static inline int buf_grow(buf *b, size_t extra) {
    if (b->oom) return -1;
    if (b->n + extra + 1 > b->cap) {
        size_t c = b->cap ? b->cap : 256;
        while (c < b->n + extra + 1) c *= 2;
        if (lk_resize(&b->p, c, 1, NULL, NULL)) {
            b->oom = 1;
            return -1;
        }
        b->cap = c;
    }
    return 0;
}
static inline void buf_put(buf *b, const void *s, size_t n) {
    if (buf_grow(b, n)) return;
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static inline uint64_t hash_bytes(const void *s, size_t n) {
    return lk_fnv1a64(s, n, LK_FNV_OFFSET);
}
static inline uint64_t hash_u64(uint64_t x) { /* splitmix64 finalizer */
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}
static inline size_t pow2_at_least(size_t n) {
    size_t c = 16;
    while (c < n) c *= 2;
    return c;
}

/* UTF-8 at s (n bytes left, n >= 1): the number of leading bytes that could
 * still be a valid character (1..*need; 0 if s[0] can never start one), with
 * the character's full length in *need. Overlongs, surrogates and
 * > U+10FFFF are invalid from their second byte on. */
static inline size_t utf8_prefix(const unsigned char *s, size_t n, size_t *need) {
    unsigned c = s[0];
    size_t k;
    unsigned lo = 0x80, hi = 0xBF;
    *need = 1;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) k = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        k = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        k = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else
        return *need = 0;
    *need = k;
    if (n < 2 || s[1] < lo || s[1] > hi) return 1;
    size_t i = 2;
    while (i < n && i < k && s[i] >= 0x80 && s[i] <= 0xBF) i++;
    return i;
}

/* Length of the UTF-8 sequence at s (n bytes left), or 0 if invalid there
 * (overlong, surrogate, > U+10FFFF, truncated). */
static inline size_t utf8_len(const unsigned char *s, size_t n) {
    size_t k, p = utf8_prefix(s, n, &k);
    return p == k ? k : 0;
}

/* Replace every `from` with `to` in s[0..n) into b */
static inline void put_replaced(buf *b, const char *s, size_t n, const char *from, const char *to) {
    size_t fl = strlen(from), tl = strlen(to), i = 0, run = 0;
    while (i + fl <= n) {
        if (!memcmp(s + i, from, fl)) {
            buf_put(b, s + run, i - run);
            buf_put(b, to, tl);
            i += fl;
            run = i;
        } else
            i++;
    }
    buf_put(b, s + run, n - run);
}

/* offset of the first invalid UTF-8 byte, or n */
static inline size_t utf8_check(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        /* ASCII fast path, 8 bytes at a time */
        while (i + 8 <= n) {
            uint64_t x;
            memcpy(&x, s + i, 8);
            if (x & 0x8080808080808080ULL) break;
            i += 8;
        }
        if (i >= n) break;
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        size_t k = utf8_len(s + i, n - i);
        if (!k) return i;
        i += k;
    }
    return n;
}

/* ------------------------------------------------------------------ */
/* the tokenizer                                                        */

enum { NORM_NFC, NORM_NFD, NORM_NFKC, NORM_NFKD, NORM_LOWER, NORM_PREPEND, NORM_REPLACE };
typedef struct {
    int kind;
    char *a, *b; /* Prepend: a; Replace: a -> b */
} norm_op;

enum { PRE_SPLIT, PRE_BYTELEVEL, PRE_METASPACE };
enum { B_REMOVED, B_ISOLATED, B_MERGED_PREV, B_MERGED_NEXT, B_CONTIGUOUS };
typedef struct {
    int kind;
    pcre2_code *re; /* Split pattern, or ByteLevel's GPT-2 regex when use_regex */
    int behavior, invert;
    int add_prefix_space;
    char repl[8]; /* Metaspace: replacement for ' ' (and the prefix) */
    int prepend;  /* Metaspace: 0 never, 1 first segment only, 2 always */
} pre_op;

typedef struct {
    char *s;    /* content */
    size_t len;
    char *pat;  /* what is matched: the content, normalized if `normalized` (HF) */
    size_t plen;
    int id;
    int special, lstrip, rstrip, single_word, normalized;
} added_tok;

enum { WORK_SLOTS = 8 };

/* merges map slot: key (a << 32 | b) + 1, 0 = empty */
typedef struct {
    uint64_t key;
    uint32_t rank, id;
} merge_ent;

/* word cache entry: a pre-token's raw bytes -> its ids (both in cache arena) */
typedef struct {
    uint64_t h;
    uint32_t key, klen, ids, nids;
} cache_ent;

/* per-call scratch; one lives in the tokenizer (taken with a trylock), a
 * concurrent caller makes its own */
typedef struct {
    pcre2_match_data *md;
    buf norm, word, pieces, pieces2, tmp; /* normalized segment, mapped word, piece lists */
    int *sym, *prev, *next; /* BPE symbols (linked list) */
    uint64_t *heap;         /* merge candidates: rank << 32 | position */
    size_t symcap, heapcap;
    /* word cache */
    cache_ent *tab;
    size_t tabcap, tabn;
    buf arena;
    int seg_first; /* the segment being encoded starts the text (Metaspace "first") */
    int nocache;   /* a one-call work area: no word cache */
    int oom;       /* an allocation of this call failed (ids, the heap, a text copy): the
                    * call reports LK_ENOMEM at its end (so do its bufs' own oom flags) */
} work;

struct lk_tokenizer {
    char *path;
    int nvocab;                /* ids 0..nvocab-1 (added tokens included) */
    char *arena;               /* all token strings, NUL-separated */
    uint32_t *tok_off, *tok_len; /* [nvocab] string of each id; off UINT32_MAX: none */
    uint8_t *is_special;       /* [nvocab] */
    /* vocabulary map: string -> id (model vocab and added tokens) */
    uint64_t *vmap;
    size_t vmap_cap;
    /* merges: (left id, right id) -> rank, merged id */
    merge_ent *merges; /* one 16-byte slot per probe: one cache line */
    size_t mcap, nmerges;
    /* model options */
    int byte_level;             /* symbols are bytes mapped to printable chars */
    int ignore_merges, byte_fallback, fuse_unk, unk_id;
    int byte_id[256];           /* byte-level: id of each byte's char; SP: <0xNN> id */
    char bl_chr[256][3];        /* byte-level char of each byte (UTF-8) */
    uint8_t bl_chrlen[256];
    /* pipeline */
    norm_op *norm;
    int nnorm;
    pre_op *pre;
    int npre;
    added_tok *added;
    int nadded;
    uint8_t added_first[256]; /* some added token starts with this byte */
    int any_norm_added;       /* some added token has normalized: true */
    int *prefix, *suffix;     /* post-processor ids for add_special */
    int nprefix, nsuffix;
    int bos, eos;
    /* decoder: pieces of each id, precomputed */
    char *dec;                 /* bytes of all pieces */
    uint32_t *dec_off, *dec_len;
    int16_t *dec_byte;         /* ByteFallback byte value of id, -1 if not <0xNN> */
    int dec_strip_start;       /* strip this many leading spaces of the text */
    int dec_join_space;        /* no decoder: pieces joined with " " */
    int byte_fallback_dec;     /* decoder has ByteFallback */
    uint64_t fingerprint;
    /* scratch + word cache for up to WORK_SLOTS concurrent encoders (each
     * call takes a free slot with a trylock; a caller finding none works
     * without a cache) */
    pthread_mutex_t lock[WORK_SLOTS];
    work w[WORK_SLOTS];
};

/* ---- vocabulary map ---- */

static inline const char *tok_str(const lk_tokenizer *t, int id, size_t *len) {
    if (id < 0 || id >= t->nvocab || t->tok_off[id] == UINT32_MAX) return NULL;
    *len = t->tok_len[id];
    return t->arena + t->tok_off[id];
}

/* slot: hash tag << 32 | (id + 1); 0 = empty. The tag spares reading the
 * string of a colliding entry (each read is a cache miss). */
static inline int vmap_find(const lk_tokenizer *t, const char *s, size_t n) {
    size_t mask = t->vmap_cap - 1;
    uint64_t h = hash_bytes(s, n), tag = h >> 32;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        uint64_t v = t->vmap[i];
        if (!v) return -1;
        int id = (int)(uint32_t)v - 1;
        if (v >> 32 == tag && t->tok_len[id] == n && !memcmp(t->arena + t->tok_off[id], s, n)) return id;
    }
}

/* ---- merges map ---- */

static inline size_t merge_slot(const lk_tokenizer *t, uint64_t key) {
    size_t mask = t->mcap - 1;
    size_t i = hash_u64(key) & mask;
    while (t->merges[i].key && t->merges[i].key != key + 1) i = (i + 1) & mask;
    return i;
}
/* rank of merging (a, b), or UINT32_MAX; merged id in *id */
static inline uint32_t merge_rank(const lk_tokenizer *t, int a, int b, int *id) {
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    size_t i = merge_slot(t, key);
    if (!t->merges[i].key) return UINT32_MAX;
    *id = (int)t->merges[i].id;
    return t->merges[i].rank;
}

/* ---- tokenizer_json.c: model.vocab and model.merges read without jansson ---- */

typedef struct {
    size_t off, len; /* string in the arena (NUL-terminated) */
    int id;
} tj_entry;
typedef struct {
    buf arena;
    tj_entry *ent; /* in file order */
    size_t n;
} tj_vocab_t;
typedef struct {
    size_t a, alen, b, blen; /* strings in the arena */
    int form;                /* 0: ["a", "b"]; 1: "a b" (a, alen: the whole string) */
} tj_merge;
typedef struct {
    buf arena;
    tj_merge *ent;
    size_t n;
} tj_merges_t;
typedef struct {
    char *rest; /* the document with model.vocab and model.merges replaced by {} and [] */
    size_t rest_len;
    const char *vocab, *vocab_end, *merges, *merges_end; /* the two values in the text */
} tj_parts;
/* Find the two values; -1 when the text is not laid out as expected (the
 * caller then parses it all with jansson, which explains what is wrong),
 * LK_ENOMEM when out of memory. */
int tj_split(const char *text, size_t n, tj_parts *out);
/* Read them; -1 on anything but well-formed entries with ids in 0..2^31-1
 * (the same fallback), LK_ENOMEM when out of memory. */
int tj_vocab(const char *p, const char *e, tj_vocab_t *v);
int tj_merges(const char *p, const char *e, tj_merges_t *m);
void tj_free(tj_parts *parts, tj_vocab_t *v, tj_merges_t *m);

/* free a work area's buffers (tokenizer_encode.c) */
void lk_tok_work_free(work *w);
/* apply the normalizer to s[0..n) into w->norm (tokenizer_encode.c); out of
 * memory is left in w for lk_tok_work_oom */
void lk_tok_normalize(const lk_tokenizer *t, work *w, const char *s, size_t n);
/* Did an allocation of w fail since the last call? Clears the flags. */
int lk_tok_work_oom(work *w);

#endif
