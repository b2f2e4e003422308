/* tokenizer.c - Hugging Face tokenizer.json, BPE models: byte-level BPE
 * (GPT-2, Llama-3, Qwen) and SentencePiece-style BPE with byte fallback
 * (Llama-2, Mistral, stories260K).
 *
 * Encoding follows HF tokenizers' pipeline:
 *   added tokens split out of the raw text (leftmost-longest)
 *   -> normalizer (NFC, Prepend, Replace, ...) on each remaining segment
 *   -> pre-tokenizer (Split regex, ByteLevel) into pre-tokens ("words")
 *   -> BPE on each word: symbols = bytes (byte-level) or characters
 *      (SentencePiece, unknown ones -> <0xNN> byte tokens), then the
 *      lowest-ranked adjacent pair is merged until none is left
 *   -> post-processor (TemplateProcessing: BOS).
 * Speed: vocabulary and merges live in open-addressing hash maps; words
 * repeat in prose, so a word cache maps a pre-token's bytes to its ids; the
 * regex is PCRE2 JIT-compiled with one match block reused per call. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "tokenizer.h"

#include <jansson.h>
#include <pcre2.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <utf8proc.h>

/* ------------------------------------------------------------------ */
/* small helpers                                                        */

typedef struct {
    char *p;
    size_t n, cap;
} buf;

static void buf_grow(buf *b, size_t extra) {
    if (b->n + extra + 1 > b->cap) {
        size_t c = b->cap ? b->cap : 256;
        while (c < b->n + extra + 1) c *= 2;
        b->p = lk_realloc(b->p, c);
        b->cap = c;
    }
}
static void buf_put(buf *b, const void *s, size_t n) {
    buf_grow(b, n);
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
static size_t pow2_at_least(size_t n) {
    size_t c = 16;
    while (c < n) c *= 2;
    return c;
}

/* Length of the UTF-8 sequence at s (n bytes left), or 0 if invalid there
 * (overlong, surrogate, > U+10FFFF, truncated). */
static size_t utf8_len(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    if (c < 0x80) return 1;
    size_t k;
    unsigned lo = 0x80, hi = 0xBF;
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
        return 0;
    if (n < k || s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < k; i++)
        if (s[i] < 0x80 || s[i] > 0xBF) return 0;
    return k;
}

/* Bytes of the longest prefix of s that could still become a valid
 * character (used to hold back an unfinished character); 0 if s[0] can
 * never start one. Stops at n. */
static size_t utf8_valid_prefix(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    size_t k;
    unsigned lo = 0x80, hi = 0xBF;
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
        return 0;
    size_t i = 1;
    if (i < n && i < k) {
        if (s[1] < lo || s[1] > hi) return 1;
        for (i = 2; i < n && i < k; i++)
            if (s[i] < 0x80 || s[i] > 0xBF) break;
    }
    return i;
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
    char *s;
    size_t len;
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
} work;

struct lk_tokenizer {
    char *path;
    int nvocab;                /* ids 0..nvocab-1 (added tokens included) */
    char *arena;               /* all token strings, NUL-separated */
    uint32_t *tok_off, *tok_len; /* [nvocab] string of each id; off UINT32_MAX: none */
    uint8_t *is_special;       /* [nvocab] */
    /* vocabulary map: string -> id (model vocab and added tokens) */
    uint32_t *vmap;
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

static const char *tok_str(const lk_tokenizer *t, int id, size_t *len) {
    if (id < 0 || id >= t->nvocab || t->tok_off[id] == UINT32_MAX) return NULL;
    *len = t->tok_len[id];
    return t->arena + t->tok_off[id];
}

static int vmap_find(const lk_tokenizer *t, const char *s, size_t n) {
    size_t mask = t->vmap_cap - 1;
    for (size_t i = hash_bytes(s, n) & mask;; i = (i + 1) & mask) {
        uint32_t v = t->vmap[i];
        if (!v) return -1;
        int id = (int)v - 1;
        if (t->tok_len[id] == n && !memcmp(t->arena + t->tok_off[id], s, n)) return id;
    }
}

static void vmap_insert(lk_tokenizer *t, int id) {
    size_t n = t->tok_len[id];
    const char *s = t->arena + t->tok_off[id];
    size_t mask = t->vmap_cap - 1;
    for (size_t i = hash_bytes(s, n) & mask;; i = (i + 1) & mask) {
        uint32_t v = t->vmap[i];
        if (!v) {
            t->vmap[i] = (uint32_t)id + 1;
            return;
        }
        int o = (int)v - 1;
        if (t->tok_len[o] == n && !memcmp(t->arena + t->tok_off[o], s, n)) {
            t->vmap[i] = (uint32_t)id + 1; /* same string: the later id wins */
            return;
        }
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

/* ------------------------------------------------------------------ */
/* loading                                                              */

#define BAD(...) lk_seterr(err, LK_EINPUT, __VA_ARGS__)

static const char *jstr(json_t *o, const char *key) {
    json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}
static int jbool(json_t *o, const char *key, int def) {
    json_t *v = json_object_get(o, key);
    return json_is_boolean(v) ? json_is_true(v) : def;
}

static int compile_re(lk_tokenizer *t, const char *pat, size_t len, int literal,
                      pcre2_code **out, lk_err *err) {
    int ec;
    PCRE2_SIZE off;
    /* PCRE2_LITERAL refuses PCRE2_UCP (nothing to classify) */
    uint32_t opt = PCRE2_UTF | PCRE2_NO_UTF_CHECK | (literal ? PCRE2_LITERAL : PCRE2_UCP);
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pat, len, opt, &ec, &off, NULL);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(ec, msg, sizeof msg);
        return BAD("%s: pre_tokenizer regex does not compile at offset %zu: %s (expected a "
                   "PCRE-compatible pattern)", t->path, (size_t)off, (char *)msg);
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* falls back to the interpreter if no JIT */
    *out = re;
    return 0;
}

static int load_normalizer(lk_tokenizer *t, json_t *n, lk_err *err) {
    if (!n || json_is_null(n)) return 0;
    const char *type = jstr(n, "type");
    if (!type) return BAD("%s: normalizer without \"type\" (expected an object with a type)", t->path);
    if (!strcmp(type, "Sequence")) {
        json_t *a = json_object_get(n, "normalizers"), *v;
        size_t i;
        if (!json_is_array(a)) return BAD("%s: Sequence normalizer without \"normalizers\" array", t->path);
        json_array_foreach(a, i, v) {
            int rc = load_normalizer(t, v, err);
            if (rc) return rc;
        }
        return 0;
    }
    norm_op op = {0};
    if (!strcmp(type, "NFC")) op.kind = NORM_NFC;
    else if (!strcmp(type, "NFD")) op.kind = NORM_NFD;
    else if (!strcmp(type, "NFKC")) op.kind = NORM_NFKC;
    else if (!strcmp(type, "NFKD")) op.kind = NORM_NFKD;
    else if (!strcmp(type, "Lowercase")) op.kind = NORM_LOWER;
    else if (!strcmp(type, "Prepend")) {
        const char *p = jstr(n, "prepend");
        if (!p) return BAD("%s: Prepend normalizer without \"prepend\" string", t->path);
        op.kind = NORM_PREPEND;
        op.a = lk_strdup(p);
    } else if (!strcmp(type, "Replace")) {
        json_t *pat = json_object_get(n, "pattern");
        const char *s = pat ? jstr(pat, "String") : NULL, *c = jstr(n, "content");
        if (!s || !c || !*s)
            return BAD("%s: Replace normalizer: only a non-empty {\"String\": ...} pattern and a "
                       "\"content\" string are supported", t->path);
        op.kind = NORM_REPLACE;
        op.a = lk_strdup(s);
        op.b = lk_strdup(c);
    } else
        return BAD("%s: normalizer type '%s' is not supported (expected NFC, NFD, NFKC, NFKD, "
                   "Lowercase, Prepend, Replace or a Sequence of them)", t->path, type);
    t->norm = lk_realloc(t->norm, (t->nnorm + 1) * sizeof *t->norm);
    t->norm[t->nnorm++] = op;
    return 0;
}

/* GPT-2's pattern, used by ByteLevel pre-tokenizers with use_regex */
static const char gpt2_re[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static int load_pretok(lk_tokenizer *t, json_t *n, lk_err *err) {
    if (!n || json_is_null(n)) return 0;
    const char *type = jstr(n, "type");
    if (!type) return BAD("%s: pre_tokenizer without \"type\"", t->path);
    if (!strcmp(type, "Sequence")) {
        json_t *a = json_object_get(n, "pretokenizers"), *v;
        size_t i;
        if (!json_is_array(a)) return BAD("%s: Sequence pre_tokenizer without \"pretokenizers\" array", t->path);
        json_array_foreach(a, i, v) {
            int rc = load_pretok(t, v, err);
            if (rc) return rc;
        }
        return 0;
    }
    pre_op op = {0};
    int rc;
    if (!strcmp(type, "Split")) {
        json_t *pat = json_object_get(n, "pattern");
        const char *re = pat ? jstr(pat, "Regex") : NULL, *lit = pat ? jstr(pat, "String") : NULL;
        const char *beh = jstr(n, "behavior");
        if (!re && !lit) return BAD("%s: Split pre_tokenizer without a {\"Regex\"} or {\"String\"} pattern", t->path);
        static const char *names[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"};
        op.behavior = -1;
        for (int i = 0; i < 5 && beh; i++)
            if (!strcmp(beh, names[i])) op.behavior = i;
        if (op.behavior < 0)
            return BAD("%s: Split behavior '%s' unknown (expected Removed, Isolated, "
                       "MergedWithPrevious, MergedWithNext or Contiguous)", t->path, beh ? beh : "(none)");
        op.kind = PRE_SPLIT;
        op.invert = jbool(n, "invert", 0);
        if ((rc = compile_re(t, re ? re : lit, strlen(re ? re : lit), !re, &op.re, err))) return rc;
    } else if (!strcmp(type, "ByteLevel")) {
        op.kind = PRE_BYTELEVEL;
        op.add_prefix_space = jbool(n, "add_prefix_space", 0);
        if (jbool(n, "use_regex", 1) && (rc = compile_re(t, gpt2_re, strlen(gpt2_re), 0, &op.re, err)))
            return rc;
        op.behavior = B_ISOLATED;
        t->byte_level = 1;
    } else if (!strcmp(type, "Metaspace")) {
        /* ' ' -> replacement, a replacement prepended (always / first
         * segment of the text / never), split before each replacement */
        const char *r = jstr(n, "replacement"), *scheme = jstr(n, "prepend_scheme");
        op.kind = PRE_METASPACE;
        snprintf(op.repl, sizeof op.repl, "%s", r ? r : "\xE2\x96\x81");
        op.prepend = scheme ? (!strcmp(scheme, "always") ? 2 : !strcmp(scheme, "first") ? 1 : 0)
                            : (jbool(n, "add_prefix_space", 1) ? 2 : 0);
        op.behavior = B_MERGED_NEXT;
        if (jbool(n, "split", 1) && (rc = compile_re(t, op.repl, strlen(op.repl), 1, &op.re, err))) return rc;
    } else
        return BAD("%s: pre_tokenizer type '%s' is not supported (expected Split, ByteLevel, "
                   "Metaspace or a Sequence of them)", t->path, type);
    t->pre = lk_realloc(t->pre, (t->npre + 1) * sizeof *t->pre);
    t->pre[t->npre++] = op;
    return 0;
}

/* post-processor: ids to put before / after the sequence */
static int load_post(lk_tokenizer *t, json_t *n, lk_err *err) {
    if (!n || json_is_null(n)) return 0;
    const char *type = jstr(n, "type");
    if (!type) return BAD("%s: post_processor without \"type\"", t->path);
    if (!strcmp(type, "Sequence")) {
        json_t *a = json_object_get(n, "processors"), *v;
        size_t i;
        if (!json_is_array(a)) return BAD("%s: Sequence post_processor without \"processors\" array", t->path);
        json_array_foreach(a, i, v) {
            int rc = load_post(t, v, err);
            if (rc) return rc;
        }
        return 0;
    }
    if (!strcmp(type, "ByteLevel")) return 0; /* offsets only */
    if (!strcmp(type, "TemplateProcessing")) {
        json_t *single = json_object_get(n, "single"), *st = json_object_get(n, "special_tokens"), *it;
        size_t i;
        int seen_seq = 0;
        if (!json_is_array(single)) return BAD("%s: TemplateProcessing without \"single\" array", t->path);
        json_array_foreach(single, i, it) {
            json_t *sp = json_object_get(it, "SpecialToken");
            if (json_object_get(it, "Sequence")) {
                seen_seq = 1;
                continue;
            }
            const char *name = sp ? jstr(sp, "id") : NULL;
            json_t *tok = name ? json_object_get(st, name) : NULL, *ids = json_object_get(tok, "ids"), *x;
            if (!json_is_array(ids))
                return BAD("%s: TemplateProcessing token '%s' not in special_tokens (expected its ids)",
                           t->path, name ? name : "?");
            size_t j;
            json_array_foreach(ids, j, x) {
                int id = (int)json_integer_value(x);
                if (!seen_seq) {
                    t->prefix = lk_realloc(t->prefix, (t->nprefix + 1) * sizeof(int));
                    t->prefix[t->nprefix++] = id;
                } else {
                    t->suffix = lk_realloc(t->suffix, (t->nsuffix + 1) * sizeof(int));
                    t->suffix[t->nsuffix++] = id;
                }
            }
        }
        return 0;
    }
    if (!strcmp(type, "BertProcessing") || !strcmp(type, "RobertaProcessing")) {
        json_t *cls = json_object_get(n, "cls"), *sep = json_object_get(n, "sep");
        if (!json_is_array(cls) || !json_is_array(sep))
            return BAD("%s: %s without cls/sep pairs", t->path, type);
        t->prefix = lk_realloc(t->prefix, (t->nprefix + 1) * sizeof(int));
        t->prefix[t->nprefix++] = (int)json_integer_value(json_array_get(cls, 1));
        t->suffix = lk_realloc(t->suffix, (t->nsuffix + 1) * sizeof(int));
        t->suffix[t->nsuffix++] = (int)json_integer_value(json_array_get(sep, 1));
        return 0;
    }
    return BAD("%s: post_processor type '%s' is not supported (expected TemplateProcessing, "
               "ByteLevel, Bert/RobertaProcessing or a Sequence)", t->path, type);
}

/* decoder: flags for the per-id pieces built by build_pieces() */
typedef struct {
    int byte_level, byte_fallback, metaspace, strip_start, fused, ok;
    char *rep_from[4], *rep_to[4];
    int nrep;
    char ms_repl[8];
} dec_cfg;

static int load_decoder(lk_tokenizer *t, json_t *n, dec_cfg *d, lk_err *err) {
    if (!n || json_is_null(n)) return 0;
    const char *type = jstr(n, "type");
    if (!type) return BAD("%s: decoder without \"type\"", t->path);
    d->ok = 1;
    if (!strcmp(type, "Sequence")) {
        json_t *a = json_object_get(n, "decoders"), *v;
        size_t i;
        if (!json_is_array(a)) return BAD("%s: Sequence decoder without \"decoders\" array", t->path);
        json_array_foreach(a, i, v) {
            int rc = load_decoder(t, v, d, err);
            if (rc) return rc;
        }
    } else if (!strcmp(type, "ByteLevel")) d->byte_level = 1;
    else if (!strcmp(type, "ByteFallback")) d->byte_fallback = 1;
    else if (!strcmp(type, "Fuse")) d->fused = 1;
    else if (!strcmp(type, "Replace")) {
        json_t *pat = json_object_get(n, "pattern");
        const char *s = pat ? jstr(pat, "String") : NULL, *c = jstr(n, "content");
        if (!s || !c || !*s || d->nrep == 4)
            return BAD("%s: Replace decoder: only {\"String\": ...} patterns are supported", t->path);
        d->rep_from[d->nrep] = lk_strdup(s);
        d->rep_to[d->nrep++] = lk_strdup(c);
    } else if (!strcmp(type, "Strip")) {
        const char *c = jstr(n, "content");
        if (!c || strcmp(c, " ") || json_integer_value(json_object_get(n, "stop")) != 0 || !d->fused)
            return BAD("%s: Strip decoder: only content \" \", stop 0, after Fuse is supported", t->path);
        d->strip_start = (int)json_integer_value(json_object_get(n, "start"));
    } else if (!strcmp(type, "Metaspace")) {
        const char *r = jstr(n, "replacement");
        const char *scheme = jstr(n, "prepend_scheme");
        snprintf(d->ms_repl, sizeof d->ms_repl, "%s", r ? r : "\xE2\x96\x81");
        d->metaspace = 1;
        if (jbool(n, "add_prefix_space", 1) && !(scheme && !strcmp(scheme, "never"))) d->strip_start = 1;
    } else
        return BAD("%s: decoder type '%s' is not supported (expected ByteLevel, ByteFallback, "
                   "Fuse, Replace, Strip, Metaspace or a Sequence)", t->path, type);
    return 0;
}

/* GPT-2 byte <-> printable character table */
static void byte_level_table(lk_tokenizer *t) {
    int n = 0;
    for (int b = 0; b < 256; b++) {
        int cp = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174) ? b : 256 + n++;
        t->bl_chrlen[b] = (uint8_t)utf8proc_encode_char(cp, (utf8proc_uint8_t *)t->bl_chr[b]);
    }
}
/* byte of a byte-level code point, -1 if cp is not one. The bytes that are
 * not printable (0-32, 127-160, 173) map to 256, 257, ... in order. */
static int bl_byte(int32_t cp) {
    if ((cp >= 33 && cp <= 126) || (cp >= 161 && cp <= 172) || (cp >= 174 && cp <= 255)) return cp;
    if (cp >= 256 && cp <= 288) return cp - 256;
    if (cp >= 289 && cp <= 322) return cp - 289 + 127;
    return cp == 323 ? 173 : -1;
}

static int hexval(int c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}
/* "<0xNN>" -> NN, else -1 */
static int byte_token(const char *s, size_t n) {
    if (n != 6 || memcmp(s, "<0x", 3) || s[5] != '>') return -1;
    int h = hexval(s[3]), l = hexval(s[4]);
    return h < 0 || l < 0 ? -1 : h * 16 + l;
}

/* Replace every `from` with `to` in s[0..n) into b */
static void put_replaced(buf *b, const char *s, size_t n, const char *from, const char *to) {
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

/* decoded bytes of every id */
static void build_pieces(lk_tokenizer *t, dec_cfg *d) {
    buf out = {0}, tmp = {0}, tmp2 = {0};
    t->dec_off = lk_malloc(t->nvocab * sizeof(uint32_t));
    t->dec_len = lk_malloc(t->nvocab * sizeof(uint32_t));
    t->dec_byte = lk_malloc(t->nvocab * sizeof(int16_t));
    t->dec_join_space = !d->ok;
    t->dec_strip_start = d->strip_start;
    t->byte_fallback_dec = d->byte_fallback;
    for (int id = 0; id < t->nvocab; id++) {
        size_t n;
        const char *s = tok_str(t, id, &n);
        t->dec_off[id] = (uint32_t)out.n;
        t->dec_byte[id] = -1;
        if (!s) {
            t->dec_len[id] = 0;
            continue;
        }
        tmp.n = 0;
        buf_put(&tmp, s, n);
        for (int r = 0; r < d->nrep; r++) {
            tmp2.n = 0;
            put_replaced(&tmp2, tmp.p, tmp.n, d->rep_from[r], d->rep_to[r]);
            buf x = tmp;
            tmp = tmp2;
            tmp2 = x;
        }
        if (d->metaspace) {
            tmp2.n = 0;
            put_replaced(&tmp2, tmp.p, tmp.n, d->ms_repl, " ");
            buf x = tmp;
            tmp = tmp2;
            tmp2 = x;
        }
        if (d->byte_fallback) t->dec_byte[id] = (int16_t)byte_token(tmp.p, tmp.n);
        if (d->byte_level) {
            /* every char must be a byte-level char, else the raw bytes (HF) */
            tmp2.n = 0;
            int all = 1;
            for (size_t i = 0; i < tmp.n && all;) {
                utf8proc_int32_t cp;
                utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)tmp.p + i, tmp.n - i, &cp);
                int by = k > 0 ? bl_byte(cp) : -1;
                if (by < 0) all = 0;
                else {
                    unsigned char c = (unsigned char)by;
                    buf_put(&tmp2, &c, 1);
                    i += k;
                }
            }
            if (all) {
                buf x = tmp;
                tmp = tmp2;
                tmp2 = x;
            }
        }
        if (t->dec_byte[id] >= 0) {
            unsigned char c = (unsigned char)t->dec_byte[id];
            buf_put(&out, &c, 1);
        } else
            buf_put(&out, tmp.p, tmp.n);
        t->dec_len[id] = (uint32_t)(out.n - t->dec_off[id]);
    }
    t->dec = out.p ? out.p : lk_strdup("");
    free(tmp.p);
    free(tmp2.p);
}

/* bos/eos from tokenizer_config.json beside the tokenizer, else guesses */
static int config_token(lk_tokenizer *t, json_t *cfg, const char *key) {
    json_t *v = cfg ? json_object_get(cfg, key) : NULL;
    if (json_is_object(v)) v = json_object_get(v, "content");
    return json_is_string(v) ? lk_tok_id(t, json_string_value(v)) : -2;
}
static void find_bos_eos(lk_tokenizer *t, const char *json_path) {
    char *dir = lk_strdup(json_path), *slash = strrchr(dir, '/');
    char *cp = slash ? (*slash = 0, lk_asprintf("%s/tokenizer_config.json", dir))
                     : lk_strdup("tokenizer_config.json");
    json_t *cfg = json_load_file(cp, JSON_DECODE_INT_AS_REAL, NULL); /* model_max_length: 1e30 */
    free(cp);
    free(dir);
    int bos = config_token(t, cfg, "bos_token"), eos = config_token(t, cfg, "eos_token");
    json_decref(cfg);
    /* BOS: what the post-processor prepends; else the config's */
    t->bos = t->nprefix ? t->prefix[0] : bos >= 0 ? bos : -1;
    if (eos >= 0) t->eos = eos;
    else {
        static const char *names[] = {"</s>", "<|end_of_text|>", "<|endoftext|>", "<|im_end|>", "<|eot_id|>", NULL};
        t->eos = -1;
        for (int i = 0; names[i] && t->eos < 0; i++) t->eos = lk_tok_id(t, names[i]);
    }
}

static int load_json(lk_tokenizer *t, json_t *root, lk_err *err) {
    json_t *model = json_object_get(root, "model");
    if (!json_is_object(model))
        return BAD("%s: no \"model\" object (expected a Hugging Face tokenizer.json)", t->path);
    const char *mtype = jstr(model, "type");
    json_t *vocab = json_object_get(model, "vocab"), *merges = json_object_get(model, "merges");
    if (mtype && strcmp(mtype, "BPE"))
        return BAD("%s: model type '%s' is not supported (expected BPE)", t->path, mtype);
    if (!json_is_object(vocab) || !json_is_array(merges))
        return BAD("%s: model has no \"vocab\" object or \"merges\" array (expected a BPE model)", t->path);
    json_t *dropout = json_object_get(model, "dropout");
    if (dropout && !json_is_null(dropout) && json_number_value(dropout) > 0)
        return BAD("%s: BPE dropout is not supported (expected \"dropout\": null)", t->path);
    const char *csp = jstr(model, "continuing_subword_prefix"), *eow = jstr(model, "end_of_word_suffix");
    if ((csp && *csp) || (eow && *eow))
        return BAD("%s: continuing_subword_prefix / end_of_word_suffix are not supported "
                   "(expected null or \"\")", t->path);
    t->ignore_merges = jbool(model, "ignore_merges", 0);
    t->byte_fallback = jbool(model, "byte_fallback", 0);
    t->fuse_unk = jbool(model, "fuse_unk", 0);

    /* ids: vocab and added tokens */
    json_t *added = json_object_get(root, "added_tokens"), *v;
    const char *key;
    size_t i;
    int maxid = -1;
    json_object_foreach(vocab, key, v) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 0x7fffffff)
            return BAD("%s: vocab entry '%s' has no valid id (expected a non-negative integer)", t->path, key);
        if (json_integer_value(v) > maxid) maxid = (int)json_integer_value(v);
    }
    if (added && !json_is_array(added)) return BAD("%s: \"added_tokens\" is not an array", t->path);
    json_array_foreach(added, i, v) {
        json_t *id = json_object_get(v, "id");
        if (!json_is_integer(id) || json_integer_value(id) < 0 || !jstr(v, "content"))
            return BAD("%s: added_tokens[%zu] lacks an integer \"id\" or a \"content\" string", t->path, i);
        if (json_integer_value(id) > maxid) maxid = (int)json_integer_value(id);
    }
    t->nvocab = maxid + 1;
    t->tok_off = lk_malloc(t->nvocab * sizeof(uint32_t));
    t->tok_len = lk_calloc(t->nvocab, sizeof(uint32_t));
    t->is_special = lk_calloc(t->nvocab, 1);
    memset(t->tok_off, 0xff, t->nvocab * sizeof(uint32_t));
    buf ar = {0};
    json_object_foreach(vocab, key, v) {
        int id = (int)json_integer_value(v);
        size_t n = strlen(key);
        t->tok_off[id] = (uint32_t)ar.n;
        t->tok_len[id] = (uint32_t)n;
        buf_put(&ar, key, n + 1);
    }
    t->nadded = (int)json_array_size(added);
    t->added = lk_calloc(t->nadded ? t->nadded : 1, sizeof *t->added);
    json_array_foreach(added, i, v) {
        added_tok *a = &t->added[i];
        const char *s = jstr(v, "content");
        a->id = (int)json_integer_value(json_object_get(v, "id"));
        a->len = strlen(s);
        a->s = lk_strdup(s);
        a->special = jbool(v, "special", 0);
        a->lstrip = jbool(v, "lstrip", 0);
        a->rstrip = jbool(v, "rstrip", 0);
        a->single_word = jbool(v, "single_word", 0);
        a->normalized = jbool(v, "normalized", !a->special);
        if (!a->len) return BAD("%s: added_tokens[%zu] has empty content", t->path, i);
        t->added_first[(unsigned char)s[0]] = 1;
        t->any_norm_added |= a->normalized;
        t->is_special[a->id] = (uint8_t)a->special;
        /* the arena is still being built: compare in ar */
        uint32_t o = t->tok_off[a->id];
        if (o == UINT32_MAX || t->tok_len[a->id] != a->len || memcmp(ar.p + o, s, a->len)) {
            t->tok_off[a->id] = (uint32_t)ar.n;
            t->tok_len[a->id] = (uint32_t)a->len;
            buf_put(&ar, s, a->len + 1);
        }
    }
    t->arena = ar.p ? ar.p : lk_strdup("");
    t->vmap_cap = pow2_at_least(2 * (size_t)t->nvocab);
    t->vmap = lk_calloc(t->vmap_cap, sizeof(uint32_t));
    for (int id = 0; id < t->nvocab; id++)
        if (t->tok_off[id] != UINT32_MAX) vmap_insert(t, id);
    /* an added token's string maps to the added id (later insert wins) */
    for (int k = 0; k < t->nadded; k++) vmap_insert(t, t->added[k].id);

    const char *unk = jstr(model, "unk_token");
    t->unk_id = unk ? lk_tok_id(t, unk) : -1;

    /* merges: "a b" strings or ["a", "b"] arrays */
    t->nmerges = json_array_size(merges);
    t->mcap = pow2_at_least(2 * t->nmerges);
    t->merges = lk_calloc(t->mcap, sizeof *t->merges);
    buf cat = {0};
    json_array_foreach(merges, i, v) {
        const char *a, *b;
        size_t al, bl;
        if (json_is_string(v)) {
            a = json_string_value(v);
            const char *sp = strchr(a, ' ');
            if (!sp || strchr(sp + 1, ' '))
                return BAD("%s: merges[%zu] '%s' is not two tokens separated by one space", t->path, i, a);
            al = (size_t)(sp - a);
            b = sp + 1;
            bl = strlen(b);
        } else if (json_is_array(v) && json_array_size(v) == 2 && json_is_string(json_array_get(v, 0)) &&
                   json_is_string(json_array_get(v, 1))) {
            a = json_string_value(json_array_get(v, 0));
            b = json_string_value(json_array_get(v, 1));
            al = strlen(a);
            bl = strlen(b);
        } else
            return BAD("%s: merges[%zu] is neither \"a b\" nor [\"a\", \"b\"]", t->path, i);
        int ia = vmap_find(t, a, al), ib = vmap_find(t, b, bl);
        cat.n = 0;
        buf_put(&cat, a, al);
        buf_put(&cat, b, bl);
        int in = vmap_find(t, cat.p, cat.n);
        if (ia < 0 || ib < 0 || in < 0) {
            free(cat.p);
            return BAD("%s: merges[%zu] ('%.*s' + '%.*s') uses a token not in the vocabulary", t->path,
                       i, (int)al, a, (int)bl, b);
        }
        uint64_t k = (uint64_t)(uint32_t)ia << 32 | (uint32_t)ib;
        size_t s = merge_slot(t, k);
        /* a repeated pair: the later one wins, as in HF */
        t->merges[s] = (merge_ent){k + 1, (uint32_t)i, (uint32_t)in};
    }
    free(cat.p);

    int rc;
    if ((rc = load_normalizer(t, json_object_get(root, "normalizer"), err))) return rc;
    if ((rc = load_pretok(t, json_object_get(root, "pre_tokenizer"), err))) return rc;
    if ((rc = load_post(t, json_object_get(root, "post_processor"), err))) return rc;
    for (int k = 0; k < t->nprefix + t->nsuffix; k++) {
        int id = k < t->nprefix ? t->prefix[k] : t->suffix[k - t->nprefix];
        if (id < 0 || id >= t->nvocab) return BAD("%s: post_processor id %d out of range", t->path, id);
    }
    dec_cfg d = {0};
    rc = load_decoder(t, json_object_get(root, "decoder"), &d, err);
    if (!rc) build_pieces(t, &d);
    for (int r = 0; r < d.nrep; r++) {
        free(d.rep_from[r]);
        free(d.rep_to[r]);
    }
    if (rc) return rc;

    /* initial symbols: byte-level -> each byte's char; SentencePiece -> <0xNN> */
    byte_level_table(t);
    for (int b = 0; b < 256; b++) {
        if (t->byte_level) {
            t->byte_id[b] = vmap_find(t, t->bl_chr[b], t->bl_chrlen[b]);
        } else {
            char s[8];
            snprintf(s, sizeof s, "<0x%02X>", b);
            t->byte_id[b] = vmap_find(t, s, 6);
        }
    }

    /* fingerprint: every id's string, the merges in rank order, added tokens */
    uint64_t h = LK_FNV_OFFSET;
    for (int id = 0; id < t->nvocab; id++) {
        size_t n;
        const char *s = tok_str(t, id, &n);
        if (s) h = lk_fnv1a64(s, n + 1, h); /* with its NUL, as a separator */
        else h = lk_fnv1a64("\xff", 1, h);
    }
    uint32_t *byrank = lk_malloc((t->nmerges ? t->nmerges : 1) * 2 * sizeof(uint32_t));
    memset(byrank, 0xff, (t->nmerges ? t->nmerges : 1) * 2 * sizeof(uint32_t));
    for (size_t s = 0; s < t->mcap; s++)
        if (t->merges[s].key) {
            byrank[2 * t->merges[s].rank] = (uint32_t)((t->merges[s].key - 1) >> 32);
            byrank[2 * t->merges[s].rank + 1] = (uint32_t)(t->merges[s].key - 1);
        }
    h = lk_fnv1a64(byrank, t->nmerges * 2 * sizeof(uint32_t), h);
    free(byrank);
    for (int k = 0; k < t->nadded; k++) {
        added_tok *a = &t->added[k];
        int32_t rec[2] = {a->id, a->special | a->lstrip << 1 | a->rstrip << 2 | a->single_word << 3 | a->normalized << 4};
        h = lk_fnv1a64(rec, sizeof rec, h);
        h = lk_fnv1a64(a->s, a->len, h);
    }
    t->fingerprint = h;
    return 0;
}

int lk_tok_load(lk_tokenizer **out, const char *path, lk_err *err) {
    *out = NULL;
    struct stat st;
    char *p = stat(path, &st) == 0 && S_ISDIR(st.st_mode) ? lk_asprintf("%s/tokenizer.json", path)
                                                           : lk_strdup(path);
    lk_map m;
    int rc = lk_map_file(p, &m, err);
    if (rc) {
        free(p);
        return rc;
    }
    json_error_t je;
    json_t *root = json_loadb((const char *)m.data, m.size, JSON_ALLOW_NUL, &je);
    lk_unmap(&m);
    if (!json_is_object(root)) {
        if (root) BAD("%s: top level is not an object (expected a Hugging Face tokenizer.json)", p);
        else BAD("%s: line %d column %d: %s (expected a Hugging Face tokenizer.json)", p, je.line,
                 je.column, je.text);
        json_decref(root);
        free(p);
        return LK_EINPUT;
    }
    lk_tokenizer *t = lk_calloc(1, sizeof *t);
    t->path = p;
    for (int i = 0; i < WORK_SLOTS; i++) pthread_mutex_init(&t->lock[i], NULL);
    rc = load_json(t, root, err);
    json_decref(root);
    if (rc) {
        lk_tok_free(t);
        return rc;
    }
    find_bos_eos(t, p);
    *out = t;
    return 0;
}

static void work_free(work *w) {
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

void lk_tok_free(lk_tokenizer *t) {
    if (!t) return;
    for (int i = 0; i < t->nnorm; i++) {
        free(t->norm[i].a);
        free(t->norm[i].b);
    }
    for (int i = 0; i < t->npre; i++)
        if (t->pre[i].re) pcre2_code_free(t->pre[i].re);
    for (int i = 0; i < t->nadded; i++) free(t->added[i].s);
    for (int i = 0; i < WORK_SLOTS; i++) {
        work_free(&t->w[i]);
        pthread_mutex_destroy(&t->lock[i]);
    }
    free(t->norm);
    free(t->pre);
    free(t->added);
    free(t->prefix);
    free(t->suffix);
    free(t->path);
    free(t->arena);
    free(t->tok_off);
    free(t->tok_len);
    free(t->is_special);
    free(t->vmap);
    free(t->merges);
    free(t->dec);
    free(t->dec_off);
    free(t->dec_len);
    free(t->dec_byte);
    free(t);
}

int lk_tok_vocab_size(const lk_tokenizer *t) { return t->nvocab; }
uint64_t lk_tok_fingerprint(const lk_tokenizer *t) { return t->fingerprint; }
int lk_tok_bos(const lk_tokenizer *t) { return t->bos; }
int lk_tok_eos(const lk_tokenizer *t) { return t->eos; }
int lk_tok_id(const lk_tokenizer *t, const char *token) { return vmap_find(t, token, strlen(token)); }
int lk_tok_is_special(const lk_tokenizer *t, int id) {
    return id >= 0 && id < t->nvocab && t->is_special[id];
}
const char *lk_tok_piece(const lk_tokenizer *t, int id) {
    size_t n;
    return tok_str(t, id, &n);
}

/* ------------------------------------------------------------------ */
/* encoding                                                             */

static void push_id(int **ids, size_t *n, size_t *cap, int id) {
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 1024;
        *ids = lk_realloc(*ids, *cap * sizeof(int));
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

static void work_reserve(work *w, size_t n) {
    if (n <= w->symcap) return;
    w->symcap = pow2_at_least(n);
    w->sym = lk_realloc(w->sym, w->symcap * sizeof(int));
    w->prev = lk_realloc(w->prev, w->symcap * sizeof(int));
    w->next = lk_realloc(w->next, w->symcap * sizeof(int));
    w->heapcap = 2 * w->symcap;
    w->heap = lk_realloc(w->heap, w->heapcap * sizeof(uint64_t));
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
            w->heapcap *= 2;
            w->heap = lk_realloc(w->heap, w->heapcap * sizeof(uint64_t));
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
static void cache_put(work *w, const char *s, size_t n, uint64_t h, const int *ids, size_t nids) {
    if (n > 256 || w->nocache) return; /* long runs rarely repeat */
    if (!w->tabcap || w->tabn >= CACHE_MAX) {
        /* first use, or full: start over (prose keeps reusing a small set) */
        if (!w->tabcap) {
            w->tabcap = 2 * CACHE_MAX;
            w->tab = lk_malloc(w->tabcap * sizeof *w->tab);
        }
        memset(w->tab, 0, w->tabcap * sizeof *w->tab);
        w->tabn = 0;
        w->arena.n = 0;
    }
    size_t mask = w->tabcap - 1, i = h & mask;
    while (w->tab[i].klen) i = (i + 1) & mask;
    while (w->arena.n % sizeof(int)) buf_put(&w->arena, "", 1);
    cache_ent e = {h, (uint32_t)w->arena.n, (uint32_t)n, 0, (uint32_t)nids};
    buf_put(&w->arena, s, n);
    while (w->arena.n % sizeof(int)) buf_put(&w->arena, "", 1);
    e.ids = (uint32_t)w->arena.n;
    buf_put(&w->arena, ids, nids * sizeof(int));
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
        for (uint32_t k = 0; k < e->nids; k++) push_id(ids, nid, cap, c[k]);
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
                push_id(ids, nid, cap, id);
                cache_put(w, s, n, h, *ids + start, 1);
                return 0;
            }
        }
        work_reserve(w, n);
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
                push_id(ids, nid, cap, id);
                cache_put(w, s, n, h, *ids + start, 1);
                return 0;
            }
        }
        /* characters; unknown ones -> byte tokens, else unk (fused if fuse_unk) */
        work_reserve(w, n);
        size_t m = 0; /* symbols */
        int unk_open = 0;
        for (size_t i = 0; i < n;) {
            size_t k = utf8_len((const unsigned char *)s + i, n - i);
            if (!k) k = 1;
            int id = vmap_find(t, s + i, k);
            if (id >= 0) {
                w->sym[m++] = id;
                unk_open = 0;
            } else {
                int all = t->byte_fallback;
                for (size_t b = 0; b < k && all; b++) all = t->byte_id[(unsigned char)s[i + b]] >= 0;
                if (all) {
                    for (size_t b = 0; b < k; b++) w->sym[m++] = t->byte_id[(unsigned char)s[i + b]];
                    unk_open = 0;
                } else if (t->unk_id >= 0) {
                    if (!(unk_open && t->fuse_unk)) w->sym[m++] = t->unk_id;
                    unk_open = 1;
                } else
                    return lk_seterr(err, LK_EINPUT, "%s: character at '%.*s' has no token and there is "
                                     "no unk_token", t->path, (int)k, s + i);
            }
            i += k;
        }
        bpe_merge(t, w, m);
    }
    /* symbol 0 always survives (merges keep the left one) */
    for (int i = 0; i >= 0; i = w->next[i]) push_id(ids, nid, cap, w->sym[i]);
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
static void normalize(const lk_tokenizer *t, work *w, const char *s, size_t n) {
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
            }
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
            return lk_seterr(err, LK_EFAIL, "%s: pre_tokenizer regex failed at byte %zu of a %zu-byte "
                             "segment: %s", t->path, pos, n, (char *)msg);
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
        normalize(t, w, s, n);
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
    return cp == '_' || (c >= UTF8PROC_CATEGORY_LU && c <= UTF8PROC_CATEGORY_LO) ||
           (c >= UTF8PROC_CATEGORY_ND && c <= UTF8PROC_CATEGORY_NO);
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
    normalize(t, w, s, n);
    char *copy = lk_malloc(w->norm.n + 1); /* w->norm is reused below */
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
            if (a->normalized != want_norm || a->len > n - i || (best && a->len <= best->len)) continue;
            if (!memcmp(s + i, a->s, a->len)) best = a;
        }
        if (!best) {
            i++;
            continue;
        }
        size_t start = i, stop = i + best->len;
        i = stop; /* a rejected match still consumes its text, as HF */
        if (best->single_word && (is_word_char(s + seg, start - seg, 1) || is_word_char(s + stop, n - stop, 0)))
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
        push_id(ids, nid, cap, best->id);
        seg = i = stop;
    }
    w->seg_first = base_first && seg == 0;
    return encode_plain(t, w, s + seg, n - seg, want_norm, ids, nid, cap, err);
}

/* offset of the first invalid UTF-8 byte, or n */
static size_t utf8_check(const unsigned char *s, size_t n) {
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
    if (!w->md) {
        w->md = pcre2_match_data_create(1, NULL);
        if (!w->md) lk_die(LK_ENOMEM, "out of memory (PCRE2 match data)");
    }
    if (add_special)
        for (int k = 0; k < t->nprefix; k++) push_id(ids, n, cap, t->prefix[k]);
    w->seg_first = 1;
    int rc = encode_added(t, w, text, len, 0, ids, n, cap, err);
    if (add_special && !rc)
        for (int k = 0; k < t->nsuffix; k++) push_id(ids, n, cap, t->suffix[k]);
    if (slot >= 0) pthread_mutex_unlock(&tm->lock[slot]);
    else work_free(&priv);
    if (rc) *n = 0;
    return rc;
}

/* ------------------------------------------------------------------ */
/* decoding                                                             */

int lk_tok_decode(const lk_tokenizer *t, const int *ids, size_t n, int skip_special, char **out,
                  size_t *len, size_t *cap, lk_err *err) {
    buf b = {*out, *len, *cap}, raw = {0};
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
    free(raw.p);
    buf_grow(&b, 0);
    /* byte-level pieces may split characters: lossy UTF-8 over the whole */
    size_t bad = utf8_check((unsigned char *)b.p + start, b.n - start);
    if (bad < b.n - start) {
        buf fixed = {0};
        put_lossy(&fixed, (unsigned char *)b.p + start, b.n - start, NULL);
        b.n = start;
        buf_put(&b, fixed.p, fixed.n);
        free(fixed.p);
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

int lk_tok_stream_push(const lk_tokenizer *t, lk_tok_stream *s, int id, char **out, size_t *len,
                       size_t *cap) {
    if (id < 0 || id >= t->nvocab || t->tok_off[id] == UINT32_MAX) return -1;
    if (s->skip_special && t->is_special[id]) return 0;
    buf b = {*out, *len, *cap};
    size_t before = b.n;
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
        unsigned char tmp[256], *all = s->npend + n <= sizeof tmp ? tmp : lk_malloc(s->npend + n);
        size_t m = (size_t)s->npend + n, hold;
        memcpy(all, s->pend, (size_t)s->npend);
        memcpy(all + s->npend, p, n);
        buf lossy = {0};
        put_lossy(&lossy, all, m, &hold);
        stream_emit(t, s, &b, (const unsigned char *)lossy.p, lossy.n);
        free(lossy.p);
        memcpy(s->pend, all + m - hold, hold);
        s->npend = (int)hold;
        if (all != tmp) free(all);
    }
    buf_grow(&b, 0);
    b.p[b.n] = 0;
    *out = b.p, *len = b.n, *cap = b.cap;
    return (int)(b.n - before);
}

int lk_tok_stream_flush(const lk_tokenizer *t, lk_tok_stream *s, char **out, size_t *len, size_t *cap) {
    buf b = {*out, *len, *cap};
    size_t before = b.n;
    if (t->byte_fallback_dec) stream_end_run(t, s, &b);
    else if (s->npend) {
        buf lossy = {0};
        put_lossy(&lossy, s->pend, (size_t)s->npend, NULL);
        stream_emit(t, s, &b, (const unsigned char *)lossy.p, lossy.n);
        free(lossy.p);
    }
    s->npend = 0;
    buf_grow(&b, 0);
    b.p[b.n] = 0;
    *out = b.p, *len = b.n, *cap = b.cap;
    return (int)(b.n - before);
}
