/* tokenizer.c - Hugging Face tokenizer.json, BPE models: byte-level BPE
 * (GPT-2, Llama-3, Qwen) and SentencePiece-style BPE with byte fallback
 * (Llama-2, Mistral, stories260K). This file loads a tokenizer.json into an
 * lk_tokenizer (tokenizer_impl.h); tokenizer_encode.c and tokenizer_decode.c
 * use it.
 *
 * Encoding follows HF tokenizers' pipeline:
 *   added tokens split out of the raw text (leftmost-longest)
 *   -> normalizer (NFC, Prepend, Replace, ...) on each remaining segment
 *   -> pre-tokenizer (Split regex, ByteLevel, Metaspace) into pre-tokens
 *      ("words")
 *   -> BPE on each word: symbols = bytes (byte-level) or characters
 *      (SentencePiece, unknown ones -> <0xNN> byte tokens), then the
 *      lowest-ranked adjacent pair is merged until none is left
 *   -> post-processor (TemplateProcessing: BOS).
 * Decoding maps each id to bytes precomputed here (build_pieces), then
 * applies the run-level decoders (ByteFallback, lossy UTF-8, Strip).
 * Speed: vocabulary and merges live in open-addressing hash maps; words
 * repeat in prose, so a word cache maps a pre-token's bytes to its ids; the
 * regex is PCRE2 JIT-compiled with one match block reused per call. */
#include "tokenizer_impl.h"

#include "config.h" /* LK_MAX_VOCAB */

#include <jansson.h>
#include <sys/stat.h>
#include <utf8proc.h>

static void vmap_insert(lk_tokenizer *t, int id) {
    size_t n = t->tok_len[id];
    const char *s = t->arena + t->tok_off[id];
    size_t mask = t->vmap_cap - 1;
    uint64_t h = hash_bytes(s, n), slot = (h >> 32) << 32 | ((uint32_t)id + 1);
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        uint64_t v = t->vmap[i];
        int o = (int)(uint32_t)v - 1;
        if (!v || (v >> 32 == h >> 32 && t->tok_len[o] == n && !memcmp(t->arena + t->tok_off[o], s, n))) {
            t->vmap[i] = slot; /* same string twice: the later id wins */
            return;
        }
    }
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
        if (!(op.a = lk_dup(p, err))) return LK_ENOMEM;
    } else if (!strcmp(type, "Replace")) {
        json_t *pat = json_object_get(n, "pattern");
        const char *s = pat ? jstr(pat, "String") : NULL, *c = jstr(n, "content");
        if (!s || !c || !*s)
            return BAD("%s: Replace normalizer: only a non-empty {\"String\": ...} pattern and a "
                       "\"content\" string are supported", t->path);
        op.kind = NORM_REPLACE;
        op.a = lk_dup(s, err);
        op.b = lk_dup(c, err);
    } else
        return BAD("%s: normalizer type '%s' is not supported (expected NFC, NFD, NFKC, NFKD, "
                   "Lowercase, Prepend, Replace or a Sequence of them)", t->path, type);
    if ((op.kind == NORM_REPLACE && (!op.a || !op.b)) ||
        lk_resize(&t->norm, t->nnorm + 1, sizeof *t->norm, "the normalizers", err)) {
        free(op.a);
        free(op.b);
        return LK_ENOMEM;
    }
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
    if (lk_resize(&t->pre, t->npre + 1, sizeof *t->pre, "the pre-tokenizers", err)) {
        if (op.re) pcre2_code_free(op.re);
        return LK_ENOMEM;
    }
    t->pre[t->npre++] = op;
    return 0;
}

/* one more post-processor id before (prefix) or after the sequence */
static int add_special_id(lk_tokenizer *t, int prefix, int id, lk_err *err) {
    int **ids = prefix ? &t->prefix : &t->suffix, *n = prefix ? &t->nprefix : &t->nsuffix;
    if (lk_resize(ids, (size_t)*n + 1, sizeof(int), "the post-processor's ids", err)) return LK_ENOMEM;
    (*ids)[(*n)++] = id;
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
                if (!json_is_integer(x) || json_integer_value(x) < 0 || json_integer_value(x) >= t->nvocab)
                    return BAD("%s: TemplateProcessing token '%s' ids[%zu] is not a token id (expected an "
                               "integer in [0, %d))", t->path, name, j, t->nvocab);
                int id = (int)json_integer_value(x);
                if (add_special_id(t, !seen_seq, id, err)) return LK_ENOMEM;
            }
        }
        return 0;
    }
    if (!strcmp(type, "BertProcessing") || !strcmp(type, "RobertaProcessing")) {
        json_t *cls = json_object_get(n, "cls"), *sep = json_object_get(n, "sep");
        if (!json_is_array(cls) || !json_is_array(sep))
            return BAD("%s: %s without cls/sep pairs", t->path, type);
        for (int k = 0; k < 2; k++) {
            json_t *id = json_array_get(k ? sep : cls, 1);
            if (!json_is_integer(id) || json_integer_value(id) < 0 || json_integer_value(id) >= t->nvocab)
                return BAD("%s: %s %s id is not a token id (expected an integer in [0, %d))", t->path, type,
                           k ? "sep" : "cls", t->nvocab);
        }
        if (add_special_id(t, 1, (int)json_integer_value(json_array_get(cls, 1)), err) ||
            add_special_id(t, 0, (int)json_integer_value(json_array_get(sep, 1)), err))
            return LK_ENOMEM;
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
        d->rep_from[d->nrep] = lk_dup(s, err);
        d->rep_to[d->nrep++] = lk_dup(c, err);
        if (!d->rep_from[d->nrep - 1] || !d->rep_to[d->nrep - 1]) return LK_ENOMEM;
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

/* Decoded bytes of one token string s[0..n) appended to out: the per-token
 * decoders (Replace, Metaspace, ByteLevel); returns the ByteFallback byte
 * value of a <0xNN> token (its one byte is what is appended), else -1. */
static int piece_of(const dec_cfg *d, const char *s, size_t n, buf *tmp, buf *tmp2, buf *out) {
    buf x;
    tmp->n = 0;
    buf_put(tmp, s, n);
    for (int r = 0; r < d->nrep; r++) {
        tmp2->n = 0;
        put_replaced(tmp2, tmp->p, tmp->n, d->rep_from[r], d->rep_to[r]);
        x = *tmp, *tmp = *tmp2, *tmp2 = x;
    }
    if (d->metaspace) {
        tmp2->n = 0;
        put_replaced(tmp2, tmp->p, tmp->n, d->ms_repl, " ");
        x = *tmp, *tmp = *tmp2, *tmp2 = x;
    }
    int byte = d->byte_fallback ? byte_token(tmp->p, tmp->n) : -1;
    if (d->byte_level) {
        /* every char must be a byte-level char, else the raw bytes (HF) */
        tmp2->n = 0;
        int all = 1;
        for (size_t i = 0; i < tmp->n && all;) {
            utf8proc_int32_t cp;
            utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)tmp->p + i, tmp->n - i, &cp);
            int by = k > 0 ? bl_byte(cp) : -1;
            if (by < 0) all = 0;
            else {
                unsigned char c = (unsigned char)by;
                buf_put(tmp2, &c, 1);
                i += k;
            }
        }
        if (all) x = *tmp, *tmp = *tmp2, *tmp2 = x;
    }
    if (byte >= 0) {
        unsigned char c = (unsigned char)byte;
        buf_put(out, &c, 1);
    } else
        buf_put(out, tmp->p, tmp->n);
    return byte;
}

/* decoded bytes of every id; 0 or LK_ENOMEM */
static int build_pieces(lk_tokenizer *t, dec_cfg *d, lk_err *err) {
    buf out = {0}, tmp = {0}, tmp2 = {0};
    t->dec_off = lk_alloc((size_t)t->nvocab, sizeof(uint32_t), "the decoder's pieces", err);
    t->dec_len = lk_zalloc((size_t)t->nvocab, sizeof(uint32_t), "the decoder's pieces", err);
    t->dec_byte = lk_alloc((size_t)t->nvocab, sizeof(int16_t), "the decoder's pieces", err);
    if (!t->dec_off || !t->dec_len || !t->dec_byte) return LK_ENOMEM;
    t->dec_join_space = !d->ok;
    t->dec_strip_start = d->strip_start;
    t->byte_fallback_dec = d->byte_fallback;
    for (int id = 0; id < t->nvocab; id++) {
        size_t n;
        const char *s = tok_str(t, id, &n);
        t->dec_off[id] = (uint32_t)out.n;
        t->dec_byte[id] = (int16_t)(s ? piece_of(d, s, n, &tmp, &tmp2, &out) : -1);
        t->dec_len[id] = (uint32_t)(out.n - t->dec_off[id]);
    }
    /* HF decodes a normalized added token from its normalized content */
    for (int k = 0; k < t->nadded; k++) {
        const added_tok *a = &t->added[k];
        if (a->pat == a->s) continue;
        t->dec_off[a->id] = (uint32_t)out.n;
        t->dec_byte[a->id] = (int16_t)piece_of(d, a->pat, a->plen, &tmp, &tmp2, &out);
        t->dec_len[a->id] = (uint32_t)(out.n - t->dec_off[a->id]);
    }
    int oom = out.oom || tmp.oom || tmp2.oom;
    t->dec = out.p ? out.p : lk_dup("", err);
    free(tmp.p);
    free(tmp2.p);
    if (oom) return lk_nomem(err, out.cap ? 2 * out.cap : 0, "the decoder's pieces");
    return t->dec ? 0 : LK_ENOMEM;
}

/* bos/eos from tokenizer_config.json beside the tokenizer, else guesses */
static int config_token(lk_tokenizer *t, json_t *cfg, const char *key) {
    json_t *v = cfg ? json_object_get(cfg, key) : NULL;
    if (json_is_object(v)) v = json_object_get(v, "content");
    return json_is_string(v) ? lk_tok_id(t, json_string_value(v)) : -2;
}
static int find_bos_eos(lk_tokenizer *t, const char *json_path, lk_err *err) {
    const char *slash = strrchr(json_path, '/');
    char *cp = lk_fmt(err, "%.*stokenizer_config.json", slash ? (int)(slash + 1 - json_path) : 0, json_path);
    if (!cp) return LK_ENOMEM;
    json_t *cfg = json_load_file(cp, JSON_DECODE_INT_AS_REAL, NULL); /* model_max_length: 1e30 */
    free(cp);
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
    return 0;
}

static int load_model(lk_tokenizer *t, json_t *root, json_t *model, const tj_vocab_t *xv,
                      const tj_merges_t *xm, lk_err *err);

/* The vocabulary and merges of a jansson tree as tj arrays (the path for a
 * file tj_split or its readers do not take), with the checks' messages. */
static int json_to_tj(lk_tokenizer *t, json_t *vocab, json_t *merges, tj_vocab_t *xv,
                      tj_merges_t *xm, lk_err *err) {
    const char *key;
    json_t *v;
    size_t i;
    if (!(xv->ent = lk_alloc(json_object_size(vocab) + 1, sizeof *xv->ent, "the vocabulary", err)))
        return LK_ENOMEM;
    json_object_foreach(vocab, key, v) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 0x7fffffff)
            return BAD("%s: vocab entry '%s' has no valid id (expected a non-negative integer)", t->path, key);
        size_t n = strlen(key);
        xv->ent[xv->n++] = (tj_entry){xv->arena.n, n, (int)json_integer_value(v)};
        buf_put(&xv->arena, key, n + 1);
    }
    if (!(xm->ent = lk_alloc(json_array_size(merges) + 1, sizeof *xm->ent, "the merges", err)))
        return LK_ENOMEM;
    json_array_foreach(merges, i, v) {
        tj_merge x = {0};
        if (json_is_string(v)) {
            const char *a = json_string_value(v);
            x.a = xm->arena.n, x.alen = strlen(a), x.form = 1;
            buf_put(&xm->arena, a, x.alen + 1);
        } else if (json_is_array(v) && json_array_size(v) == 2 && json_is_string(json_array_get(v, 0)) &&
                   json_is_string(json_array_get(v, 1))) {
            const char *a = json_string_value(json_array_get(v, 0)), *b = json_string_value(json_array_get(v, 1));
            x.a = xm->arena.n, x.alen = strlen(a);
            buf_put(&xm->arena, a, x.alen + 1);
            x.b = xm->arena.n, x.blen = strlen(b);
            buf_put(&xm->arena, b, x.blen + 1);
        } else
            return BAD("%s: merges[%zu] is neither \"a b\" nor [\"a\", \"b\"]", t->path, i);
        xm->ent[xm->n++] = x;
    }
    return xv->arena.oom || xm->arena.oom ? lk_nomem(err, 0, "the vocabulary and merges") : 0;
}

/* root: the document; xv, xm: its model.vocab and model.merges read by
 * tokenizer_json.c (root then holds {} and [] there), or NULL: read them from
 * root. */
static int load_json(lk_tokenizer *t, json_t *root, tj_vocab_t *xv, tj_merges_t *xm, lk_err *err) {
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
    tj_vocab_t jv = {0};
    tj_merges_t jm = {0};
    if (!xv) {
        int rc = json_to_tj(t, vocab, merges, &jv, &jm, err);
        if (rc) {
            tj_free(NULL, &jv, &jm);
            return rc;
        }
        xv = &jv, xm = &jm;
    }
    int rc = load_model(t, root, model, xv, xm, err);
    tj_free(NULL, &jv, &jm);
    return rc;
}

static int load_model(lk_tokenizer *t, json_t *root, json_t *model, const tj_vocab_t *xv,
                      const tj_merges_t *xm, lk_err *err) {
    json_t *added = json_object_get(root, "added_tokens"), *v;
    size_t i;
    int maxid = -1;
    for (size_t k = 0; k < xv->n; k++) {
        if (xv->ent[k].id < 0 || xv->ent[k].id >= LK_MAX_VOCAB)
            return BAD("%s: vocab entry '%s' has no valid id (expected an integer in [0, %d))", t->path,
                       xv->arena.p + xv->ent[k].off, LK_MAX_VOCAB);
        if (xv->ent[k].id > maxid) maxid = xv->ent[k].id;
    }
    if (added && !json_is_array(added)) return BAD("%s: \"added_tokens\" is not an array", t->path);
    json_array_foreach(added, i, v) {
        json_t *id = json_object_get(v, "id");
        if (!json_is_integer(id) || !jstr(v, "content"))
            return BAD("%s: added_tokens[%zu] lacks an integer \"id\" or a \"content\" string", t->path, i);
        if (json_integer_value(id) < 0 || json_integer_value(id) >= LK_MAX_VOCAB)
            return BAD("%s: added_tokens[%zu] id %" JSON_INTEGER_FORMAT " is out of range (expected [0, %d))",
                       t->path, i, json_integer_value(id), LK_MAX_VOCAB);
        if (json_integer_value(id) > maxid) maxid = (int)json_integer_value(id);
    }
    t->nvocab = maxid + 1;
    t->tok_off = lk_alloc((size_t)t->nvocab, sizeof(uint32_t), "the vocabulary", err);
    t->tok_len = lk_zalloc((size_t)t->nvocab, sizeof(uint32_t), "the vocabulary", err);
    t->is_special = lk_zalloc((size_t)t->nvocab, 1, "the vocabulary", err);
    if (!t->tok_off || !t->tok_len || !t->is_special) return LK_ENOMEM;
    memset(t->tok_off, 0xff, t->nvocab * sizeof(uint32_t));
    buf ar = {0};
    for (size_t k = 0; k < xv->n; k++) {
        int id = xv->ent[k].id;
        size_t n = xv->ent[k].len;
        t->tok_off[id] = (uint32_t)ar.n;
        t->tok_len[id] = (uint32_t)n;
        buf_put(&ar, xv->arena.p + xv->ent[k].off, n + 1);
    }
    /* the map is the model's vocabulary only (merges, byte and character
     * lookups use it, as HF's BPE does); lk_tok_id also searches added tokens */
    t->arena = ar.p;
    if (ar.oom) return lk_nomem(err, 0, "the vocabulary's strings");
    t->vmap_cap = pow2_at_least(2 * (size_t)t->nvocab);
    if (!(t->vmap = lk_zalloc(t->vmap_cap, sizeof *t->vmap, "the vocabulary map", err))) return LK_ENOMEM;
    for (int id = 0; id < t->nvocab; id++)
        if (t->tok_off[id] != UINT32_MAX) vmap_insert(t, id);
    if (!(t->added = lk_zalloc(json_array_size(added), sizeof *t->added, "the added tokens", err)))
        return LK_ENOMEM;
    json_array_foreach(added, i, v) {
        added_tok *a = &t->added[i];
        const char *s = jstr(v, "content");
        a->id = (int)json_integer_value(json_object_get(v, "id"));
        a->len = strlen(s);
        if (!(a->s = lk_dup(s, err))) return LK_ENOMEM;
        t->nadded = (int)i + 1; /* lk_tok_free frees what is there */
        a->special = jbool(v, "special", 0);
        a->lstrip = jbool(v, "lstrip", 0);
        a->rstrip = jbool(v, "rstrip", 0);
        a->single_word = jbool(v, "single_word", 0);
        a->normalized = jbool(v, "normalized", !a->special);
        if (!a->len) return BAD("%s: added_tokens[%zu] has empty content", t->path, i);
        t->any_norm_added |= a->normalized;
        t->is_special[a->id] = (uint8_t)a->special;
        uint32_t o = t->tok_off[a->id];
        if (o != UINT32_MAX && (t->tok_len[a->id] != a->len || memcmp(ar.p + o, s, a->len)))
            return BAD("%s: added_tokens[%zu] '%s' reuses id %d of vocabulary entry '%.*s' (expected "
                       "a new id or the same string)", t->path, i, s, a->id, (int)t->tok_len[a->id], ar.p + o);
        if (o == UINT32_MAX) {
            t->tok_off[a->id] = (uint32_t)ar.n;
            t->tok_len[a->id] = (uint32_t)a->len;
            buf_put(&ar, s, a->len + 1);
            t->arena = ar.p; /* may have moved */
            if (ar.oom) return lk_nomem(err, 0, "the vocabulary's strings");
        }
    }
    if (!ar.p && !(ar.p = lk_dup("", err))) return LK_ENOMEM;
    t->arena = ar.p;

    const char *unk = jstr(model, "unk_token");
    t->unk_id = unk ? vmap_find(t, unk, strlen(unk)) : -1;

    /* merges: "a b" strings or ["a", "b"] arrays */
    t->nmerges = xm->n;
    t->mcap = pow2_at_least(2 * t->nmerges);
    t->merges = lk_zalloc(t->mcap, sizeof *t->merges, "the merges map", err);
    buf cat = {0};
    uint64_t *mkey = lk_alloc(xm->n + 1, sizeof *mkey, "the merges", err);
    uint32_t *mid = lk_alloc(xm->n + 1, sizeof *mid, "the merges", err);
    if (!t->merges || !mkey || !mid) {
        free(mkey), free(mid);
        return LK_ENOMEM;
    }
    for (i = 0; i < xm->n; i++) {
        const tj_merge *x = &xm->ent[i];
        const char *a = xm->arena.p + x->a, *b;
        size_t al = x->alen, bl;
        if (x->form == 1) {
            const char *sp = strchr(a, ' ');
            if (!sp || strchr(sp + 1, ' ')) {
                free(cat.p), free(mkey), free(mid);
                return BAD("%s: merges[%zu] '%s' is not two tokens separated by one space", t->path, i, a);
            }
            al = (size_t)(sp - a);
            b = sp + 1;
            bl = strlen(b);
        } else {
            b = xm->arena.p + x->b;
            bl = x->blen;
        }
        int ia = vmap_find(t, a, al), ib = vmap_find(t, b, bl);
        cat.n = 0;
        buf_put(&cat, a, al);
        buf_put(&cat, b, bl);
        if (cat.oom) {
            free(cat.p), free(mkey), free(mid);
            return lk_nomem(err, al + bl + 1, "a merged token");
        }
        int in = vmap_find(t, cat.p, cat.n);
        if (ia < 0 || ib < 0 || in < 0) {
            free(cat.p), free(mkey), free(mid);
            return BAD("%s: merges[%zu] ('%.*s' + '%.*s') uses a token not in the vocabulary", t->path,
                       i, (int)al, a, (int)bl, b);
        }
        mkey[i] = (uint64_t)(uint32_t)ia << 32 | (uint32_t)ib;
        mid[i] = (uint32_t)in;
    }
    free(cat.p);
    /* Insert in rank order, each slot prefetched 16 merges ahead: the table
     * (16 MB for Llama-3) is hit at random, and waiting on each miss was the
     * largest part of the load after the JSON. */
    size_t mmask = t->mcap - 1;
    for (i = 0; i < xm->n; i++) {
        if (i + 16 < xm->n) __builtin_prefetch(&t->merges[hash_u64(mkey[i + 16]) & mmask], 1);
        size_t s = merge_slot(t, mkey[i]);
        /* a repeated pair: the later one wins, as in HF */
        t->merges[s] = (merge_ent){mkey[i] + 1, (uint32_t)i, mid[i]};
    }
    free(mkey);
    free(mid);

    int rc;
    if ((rc = load_normalizer(t, json_object_get(root, "normalizer"), err))) return rc;
    /* added tokens are matched by their content; normalized ones by their
     * normalized content, in normalized text (HF) */
    work w = {0};
    for (int k = 0; k < t->nadded; k++) {
        added_tok *a = &t->added[k];
        a->pat = a->s, a->plen = a->len;
        if (a->normalized && t->nnorm) {
            lk_tok_normalize(t, &w, a->s, a->len);
            if (lk_tok_work_oom(&w) || !(a->pat = lk_alloc(w.norm.n + 1, 1, "an added token", err))) {
                a->pat = a->s;
                lk_tok_work_free(&w);
                return lk_nomem(err, 0, "an added token's normalized form");
            }
            memcpy(a->pat, w.norm.p, w.norm.n + 1);
            a->plen = w.norm.n;
        }
        if (a->plen) t->added_first[(unsigned char)a->pat[0]] = 1;
    }
    lk_tok_work_free(&w);
    if ((rc = load_pretok(t, json_object_get(root, "pre_tokenizer"), err))) return rc;
    if ((rc = load_post(t, json_object_get(root, "post_processor"), err))) return rc;
    for (int k = 0; k < t->nprefix + t->nsuffix; k++) {
        int id = k < t->nprefix ? t->prefix[k] : t->suffix[k - t->nprefix];
        if (id < 0 || id >= t->nvocab) return BAD("%s: post_processor id %d out of range", t->path, id);
    }
    dec_cfg d = {0};
    rc = load_decoder(t, json_object_get(root, "decoder"), &d, err);
    if (!rc) rc = build_pieces(t, &d, err);
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
    uint32_t *byrank = lk_alloc(t->nmerges ? t->nmerges : 1, 2 * sizeof(uint32_t), "the merges", err);
    if (!byrank) return LK_ENOMEM;
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
    char *p = stat(path, &st) == 0 && S_ISDIR(st.st_mode) ? lk_fmt(err, "%s/tokenizer.json", path)
                                                           : lk_dup(path, err);
    if (!p) return LK_ENOMEM;
    lk_map m;
    int rc = lk_map_file(p, &m, err);
    if (rc) {
        free(p);
        return rc;
    }
    /* fast path: model.vocab and model.merges read by tokenizer_json.c,
     * jansson parses the rest; any surprise -> jansson parses everything */
    tj_parts parts;
    tj_vocab_t xv = {0};
    tj_merges_t xm = {0};
    int tj = tj_split((const char *)m.data, m.size, &parts);
    if (!tj) tj = tj_vocab(parts.vocab, parts.vocab_end, &xv);
    if (!tj) tj = tj_merges(parts.merges, parts.merges_end, &xm);
    if (tj == LK_ENOMEM) {
        tj_free(&parts, &xv, &xm);
        lk_unmap(&m);
        free(p);
        return lk_nomem(err, 0, "the tokenizer's vocabulary and merges");
    }
    int fast = tj == 0;
    json_error_t je;
    json_t *root = fast ? json_loadb(parts.rest, parts.rest_len, JSON_ALLOW_NUL, &je)
                        : json_loadb((const char *)m.data, m.size, JSON_ALLOW_NUL, &je);
    if (!fast || !root) { /* errors are reported against the whole file */
        tj_free(&parts, &xv, &xm);
        memset(&parts, 0, sizeof parts);
        memset(&xv, 0, sizeof xv);
        memset(&xm, 0, sizeof xm);
        if (fast) root = json_loadb((const char *)m.data, m.size, JSON_ALLOW_NUL, &je);
        fast = 0;
    }
    lk_unmap(&m);
    if (!json_is_object(root)) {
        if (root) BAD("%s: top level is not an object (expected a Hugging Face tokenizer.json)", p);
        else BAD("%s: line %d column %d: %s (expected a Hugging Face tokenizer.json)", p, je.line,
                 je.column, je.text);
        json_decref(root);
        tj_free(&parts, &xv, &xm);
        free(p);
        return LK_EINPUT;
    }
    lk_tokenizer *t = lk_zalloc(1, sizeof *t, "a tokenizer", err);
    if (!t) {
        json_decref(root);
        tj_free(&parts, &xv, &xm);
        free(p);
        return LK_ENOMEM;
    }
    t->path = p;
    for (int i = 0; i < WORK_SLOTS; i++) pthread_mutex_init(&t->lock[i], NULL);
    rc = load_json(t, root, fast ? &xv : NULL, fast ? &xm : NULL, err);
    json_decref(root);
    tj_free(&parts, &xv, &xm);
    if (!rc) rc = find_bos_eos(t, p, err);
    if (rc) {
        lk_tok_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

void lk_tok_free(lk_tokenizer *t) {
    if (!t) return;
    for (int i = 0; i < t->nnorm; i++) {
        free(t->norm[i].a);
        free(t->norm[i].b);
    }
    for (int i = 0; i < t->npre; i++)
        if (t->pre[i].re) pcre2_code_free(t->pre[i].re);
    for (int i = 0; i < t->nadded; i++) {
        if (t->added[i].pat != t->added[i].s) free(t->added[i].pat);
        free(t->added[i].s);
    }
    for (int i = 0; i < WORK_SLOTS; i++) {
        lk_tok_work_free(&t->w[i]);
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
int lk_tok_id(const lk_tokenizer *t, const char *token) {
    size_t n = strlen(token);
    for (int k = 0; k < t->nadded; k++) /* added tokens first, as HF's token_to_id */
        if (t->added[k].len == n && !memcmp(t->added[k].s, token, n)) return t->added[k].id;
    return vmap_find(t, token, n);
}
int lk_tok_is_special(const lk_tokenizer *t, int id) {
    return id >= 0 && id < t->nvocab && t->is_special[id];
}
const char *lk_tok_piece(const lk_tokenizer *t, int id) {
    size_t n;
    return tok_str(t, id, &n);
}

