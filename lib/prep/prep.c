/* prep.c - sample generators (see prep.h and leank-prep(1)).
 *
 * How a sample is sized: the prompt is chat(P + H + Q) + AP and the answer
 * ANS follows it, where P/Q are the task's text before/after the haystack H,
 * AP is RULER's answer prefix and ANS the supervised answer. H is made of
 * units (corpus sentences, noise paragraphs, distractor needles, list items)
 * whose token counts are known: each unit carries its separator on the side
 * where the Llama-3/Qwen pre-tokenizer splits (" Sentence" leads with its
 * space, "Line.\n" ends with its newline), so the tokens of H are the sum of
 * its units'. Units are taken until the budget is reached, a word-prefix of
 * the next unit fills what is left, then the whole prompt is encoded once:
 * that encoding is the sample's context, and if its length misses the target
 * (a tokenizer without that additivity), the budget is corrected and H
 * rebuilt. */
#include "prep.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "chat.h"
#include "corpus.h"

#define MAX_NEEDLES 16
#define FWE_VOCAB 2000
#define SENT_MAX_BYTES 1200 /* longer "sentences" (lists, verse) are cut at whitespace */

const lk_prep_task lk_prep_tasks[] = {
    {"train-uuid", "LeanK training: uuid distractor haystack, one uuid key queried", 0, 0},
    {"train-essay", "LeanK training: essay haystack, one word key with four 7-digit values", 1, 1},
    {"passkey", "DuoAttention: 10 passkeys of 32 NATO words in a book haystack, all asked", 1, 0},
    {"niah_single_1", "RULER: noise haystack, word key, number value", 0, 1},
    {"niah_single_2", "RULER: essay haystack, word key, number value", 1, 1},
    {"niah_single_3", "RULER: essay haystack, word key, uuid value", 1, 1},
    {"niah_multikey_1", "RULER: essay haystack, 4 word keys, one asked", 1, 1},
    {"niah_multikey_2", "RULER: haystack of word-key needles, one asked", 0, 1},
    {"niah_multikey_3", "RULER: haystack of uuid-key needles, one asked", 0, 0},
    {"niah_multivalue", "RULER: essay haystack, one word key with 4 number values", 1, 1},
    {"niah_multiquery", "RULER: essay haystack, 4 word keys, all asked", 1, 1},
    {"vt", "RULER variable tracking: one chain of 4 hops in a noise haystack", 0, 0},
    {"cwe", "RULER common words: 10 words x30 among words x3 in a numbered list (x6 and x1 under 4K), after one worked example", 0, 1},
    {"fwe", "RULER frequent words: 3 most frequent coded words, Zipf(2) counts", 0, 0},
};
const int lk_prep_n_tasks = (int)(sizeof lk_prep_tasks / sizeof lk_prep_tasks[0]);

const lk_prep_task *lk_prep_find_task(const char *name) {
    for (int i = 0; i < lk_prep_n_tasks; i++)
        if (!strcmp(lk_prep_tasks[i].name, name)) return &lk_prep_tasks[i];
    return NULL;
}

static const char NOISE[] = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.";
static const char *const NATO[] = {"alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf",
                                   "hotel", "india", "juliett", "kilo", "lima", "mike", "november",
                                   "oscar", "papa", "quebec", "romeo", "sierra", "tango", "uniform",
                                   "victor", "whiskey", "xray", "yankee", "zulu"};
static const char *const ORDINAL[] = {"first", "second", "third", "fourth", "fifth",
                                      "sixth", "seventh", "eighth", "ninth", "tenth"};

/* ---- PRNG: xoshiro256**, seeded through splitmix64 (not rand(): same
 * numbers on every libc) ---- */
typedef struct {
    uint64_t s[4];
} rng;
static uint64_t splitmix(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
static void rng_seed(rng *r, uint64_t seed) {
    for (int i = 0; i < 4; i++) r->s[i] = splitmix(&seed);
}
static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
static uint64_t rng_u64(rng *r) {
    uint64_t *s = r->s, out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}
/* uniform in [0, n) without modulo bias */
static uint64_t rng_below(rng *r, uint64_t n) {
    uint64_t lim = -n % n, x;
    do x = rng_u64(r);
    while (x < lim);
    return x % n;
}
static double rng_unit(rng *r) { return (double)(rng_u64(r) >> 11) * 0x1.0p-53; }

/* ---- growable string ----
 * A growth that fails sets oom and drops that append and every later one:
 * the string stays as it was, NUL-terminated (s_p: "" before any byte), so
 * the generator can go on reading it; lk_prep_sample checks gen_oom before
 * it hands a sample out, and reports LK_ENOMEM. */
typedef struct {
    char *p;
    size_t n, cap;
    int oom;
} str;
static int s_room(str *s, size_t n) {
    if (s->oom) return -1;
    if (s->n + n + 1 > s->cap) {
        size_t cap = (s->n + n + 1) * 2 + 64;
        if (lk_resize(&s->p, cap, 1, NULL, NULL)) {
            s->oom = 1;
            return -1;
        }
        s->cap = cap;
    }
    return 0;
}
static const char *s_p(const str *s) { return s->p ? s->p : ""; }
static void s_add(str *s, const char *d, size_t n) {
    if (s_room(s, n)) return;
    memcpy(s->p + s->n, d, n);
    s->n += n;
    s->p[s->n] = 0;
}
static void s_cat(str *s, const char *d) { s_add(s, d, strlen(d)); }
__attribute__((format(printf, 2, 3))) static void s_printf(str *s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || s_room(s, (size_t)n)) return;
    va_start(ap, fmt);
    vsnprintf(s->p + s->n, (size_t)n + 1, fmt, ap);
    va_end(ap);
    s->n += (size_t)n;
}
static void s_clear(str *s) {
    s->n = 0;
    if (s->p) s->p[0] = 0;
}

/* ---- corpus pools: sentences and their token counts ---- */
typedef struct {
    size_t off;        /* in text (no leading space); pools may pass 4 GiB */
    uint32_t len;      /* bytes */
    uint32_t ntok;     /* tokens of " " + sentence */
} sent;
typedef struct {
    char *path;
    str text;
    sent *s;
    size_t n, cap;
    long ntok;
} pool;

struct lk_prep {
    const lk_tokenizer *tok;
    lk_prep_opts o;
    char *template_name;
    pool *pools;
    int n_pools;
    char **adj, **noun, **all; /* word lists; all = sorted unique single words */
    int n_adj, n_noun, n_all;
    char *words_from;
    int noise_cost; /* tokens of NOISE "\n" */
    char *chat_head, *chat_tail; /* chat(user) = head + user + tail */
    int add_special;             /* template none: the post-processor's tokens (BOS) */
};

struct lk_prep_gen {
    lk_prep *p;
    rng r;     /* task draws: keys, values, depths */
    rng ru;    /* haystack units (drawn lazily, so kept apart) */
    str user, prompt, hay, tmp, tmp2;
    str P, Q, AP, ANS;
    int *ids;
    size_t nids, cap;
    int *ctx, *ans;
    size_t nctx, ctxcap, nans, anscap;
    /* haystack units made on demand (distractors, items) */
    str units;
    size_t *uoff;
    int *ucost;
    int nu, ucap;
    /* needles and results */
    int n_needles;
    str needle[MAX_NEEDLES];
    int needle_cost[MAX_NEEDLES];
    double want[MAX_NEEDLES], depth[MAX_NEEDLES];
    int n_refs;
    str ref[MAX_NEEDLES];
    char *refp[MAX_NEEDLES], *needlep[MAX_NEEDLES];
    /* haystack description for the unit filler */
    int kind;  /* HK_* */
    int lead;  /* units carry a leading " " (else a trailing "\n") */
    int pool, start;
    int distract_uuid; /* distractor needles: uuid keys and values, else word keys / numbers */
    int hay_tokens;    /* tokens of H as built */
    /* cwe/fwe scratch */
    int *order, *wc, *list, *nc;
    size_t order_cap, list_cap;
    int cwe_fcw, cwe_fucw; /* repeats of the 10 common words and of the others */
    long cwe_min;          /* tokens of the 10 common words' items alone */
    int nnc;
    char fwe_vocab[FWE_VOCAB * 8];
    int oom; /* an allocation of this sample failed (a local string, a table) */
    lk_err *err;
};

/* Did an allocation of this sample fail (g->oom, or a string's)? */
static int gen_oom(const lk_prep_gen *g) {
    const str *ss[] = {&g->user, &g->prompt, &g->hay, &g->tmp, &g->tmp2, &g->P, &g->Q, &g->AP, &g->ANS, &g->units};
    int oom = g->oom;
    for (size_t i = 0; i < sizeof ss / sizeof *ss; i++) oom |= ss[i]->oom;
    for (int i = 0; i < MAX_NEEDLES; i++) oom |= g->needle[i].oom | g->ref[i].oom;
    return oom;
}

enum { HK_CORPUS, HK_NOISE, HK_DISTRACT, HK_CWE, HK_FWE };

/* tokens of text (no special tokens added) */
static int ntok(lk_prep_gen *g, const char *text, size_t len) {
    if (lk_tok_encode(g->p->tok, text, len, 0, &g->ids, &g->nids, &g->cap, g->err)) return -1;
    return (int)g->nids;
}

/* ---- word lists ---- */
static int read_words(const char *path, char ***out, int *n, lk_err *err) {
    char *data;
    size_t len;
    if (lk_read_file(path, 64u << 20, "a word list, one word a line", &data, &len, err)) return err->code;
    size_t bad;
    if (!lk_utf8_valid(data, len, &bad)) {
        free(data);
        return lk_seterr(err, LK_EINPUT, "%s: not UTF-8 at byte %zu (expected one word a line)", path, bad);
    }
    size_t cap = 0;
    *out = NULL;
    *n = 0;
    int rc = 0;
    for (char *line = strtok(data, "\r\n"); line && !rc; line = strtok(NULL, "\r\n")) {
        while (*line == ' ' || *line == '\t') line++;
        size_t l = strlen(line);
        while (l && (line[l - 1] == ' ' || line[l - 1] == '\t')) line[--l] = 0;
        if (!l) continue;
        if ((rc = lk_grow(out, &cap, (size_t)*n + 1, sizeof **out, "a word list", err))) break;
        if (((*out)[*n] = lk_dup(line, err))) ++*n;
        else rc = LK_ENOMEM;
    }
    free(data);
    if (rc) {
        for (int i = 0; i < *n; i++) free((*out)[i]);
        free(*out);
        *out = NULL;
        *n = 0;
        return rc;
    }
    if (!*n) return lk_seterr(err, LK_EINPUT, "%s: no words (expected one word a line)", path);
    return 0;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* distinct strings among v[0..n) (v itself keeps its order: it sets the draws);
 * -1 out of memory, with err set */
static long n_distinct(char **v, int n, lk_err *err) {
    char **c = lk_alloc((size_t)n, sizeof *c, "a word list", err);
    if (!c) return -1;
    memcpy(c, v, (size_t)n * sizeof *c);
    qsort(c, (size_t)n, sizeof *c, cmp_str);
    long d = 0;
    for (int i = 0; i < n; i++) d += !i || strcmp(c[i - 1], c[i]);
    free(c);
    return d;
}

static int load_words(lk_prep *p, lk_err *err) {
    const char *w = p->o.words;
    int rc;
    if (!w) {
        if (access("/usr/share/dict/words", R_OK) != 0) return 0; /* tasks needing words will say so */
        w = "/usr/share/dict/words";
    }
    if (!(p->words_from = lk_dup(w, err))) return LK_ENOMEM;
    struct stat st;
    int is_stdin = !strcmp(w, "-"); /* a word-per-line list on standard input */
    if (!is_stdin && stat(w, &st) != 0) return lk_seterr(err, LK_EIO, "%s: cannot open: %s", w, strerror(errno));
    if (!is_stdin && S_ISDIR(st.st_mode)) {
        char *a = lk_fmt(err, "%s/adjectivelist.txt", w), *nn = lk_fmt(err, "%s/nounlist.txt", w),
             *v = lk_fmt(err, "%s/verblist.txt", w);
        rc = a && nn && v ? read_words(a, &p->adj, &p->n_adj, err) : LK_ENOMEM;
        if (!rc) rc = read_words(nn, &p->noun, &p->n_noun, err);
        char **verbs = NULL;
        int n_verbs = 0;
        if (!rc && access(v, R_OK) == 0) rc = read_words(v, &verbs, &n_verbs, err);
        free(a);
        free(nn);
        free(v);
        /* all words: adjectives, nouns, verbs (RULER's word pool) */
        if (!rc && !(p->all = lk_alloc((size_t)(p->n_adj + p->n_noun + n_verbs), sizeof *p->all, "a word list", err)))
            rc = LK_ENOMEM;
        for (int i = 0; i < p->n_adj + p->n_noun && !rc; i++) {
            const char *x = i < p->n_adj ? p->adj[i] : p->noun[i - p->n_adj];
            if ((p->all[p->n_all] = lk_dup(x, err))) p->n_all++;
            else rc = LK_ENOMEM;
        }
        for (int i = 0; i < n_verbs; i++) {
            if (rc) free(verbs[i]);
            else p->all[p->n_all++] = verbs[i];
        }
        free(verbs);
        if (rc) return rc;
    } else {
        char **list;
        int n;
        if ((rc = read_words(w, &list, &n, err))) return rc;
        /* a plain dictionary: keep lower-case ASCII words (no names, no possessives) */
        int k = 0;
        for (int i = 0; i < n; i++) {
            const char *s = list[i];
            int okw = *s != 0;
            for (; *s; s++)
                if (*s < 'a' || *s > 'z') okw = 0;
            if (okw) list[k++] = list[i];
            else free(list[i]);
        }
        if (k < 100) {
            for (int i = 0; i < k; i++) free(list[i]);
            free(list);
            return lk_seterr(err, LK_EINPUT, "%s: %d usable words (expected at least 100 lower-case words)", w, k);
        }
        p->all = list;
        p->n_all = k;
        p->adj = lk_alloc((size_t)k, sizeof *p->adj, "a word list", err);
        p->noun = lk_alloc((size_t)k, sizeof *p->noun, "a word list", err);
        if (!p->adj || !p->noun) return LK_ENOMEM;
        for (int i = 0; i < k; i++) {
            char *a = lk_dup(list[i], err), *b = lk_dup(list[i], err);
            if (!a || !b) {
                free(a);
                free(b);
                return LK_ENOMEM;
            }
            p->adj[p->n_adj++] = a;
            p->noun[p->n_noun++] = b;
        }
    }
    /* keys must differ from each other and from distractor keys (the loops
     * that redraw a clashing key rely on this) */
    long da = n_distinct(p->adj, p->n_adj, err), dn = da < 0 ? -1 : n_distinct(p->noun, p->n_noun, err);
    if (da < 0 || dn < 0) return LK_ENOMEM;
    if (da * dn < 16)
        return lk_seterr(err, LK_EINPUT, "%s: %ld distinct adjectives x %ld nouns (expected at least 16 "
                         "adjective-noun keys)", w, da, dn);
    /* unique single words, sorted: the draw order must not depend on file order twice */
    qsort(p->all, (size_t)p->n_all, sizeof *p->all, cmp_str);
    int k = 0;
    for (int i = 0; i < p->n_all; i++) {
        if (strchr(p->all[i], ' ') || (k && !strcmp(p->all[k - 1], p->all[i]))) free(p->all[i]);
        else p->all[k++] = p->all[i];
    }
    p->n_all = k;
    return 0;
}

int lk_prep_have_words(const lk_prep *p) { return p->n_adj > 0 && p->n_noun > 0; }

/* ---- corpora ---- */
static int load_pool(lk_prep *p, pool *pl, const char *path, lk_err *err) {
    lk_corpus *c;
    int rc = lk_corpus_open(&c, path, err);
    if (rc) return rc;
    if (!(pl->path = lk_dup(path, err))) {
        lk_corpus_close(c);
        return LK_ENOMEM;
    }
    int *ids = NULL;
    size_t nids = 0, cap = 0;
    str one = {0};
    const char *text;
    size_t len;
    while (pl->ntok < p->o.pool_tokens && (rc = lk_corpus_next(c, &text, &len, err)) == 1) {
        size_t pos = 0, a, b;
        while (pl->ntok < p->o.pool_tokens && lk_next_sentence(text, len, &pos, &a, &b, SENT_MAX_BYTES)) {
            s_clear(&one);
            s_add(&one, " ", 1);
            s_add(&one, text + a, b - a);
            if (one.oom) {
                rc = -lk_nomem(err, one.n + (b - a) + 1, "a sentence");
                break;
            }
            if (lk_tok_encode(p->tok, one.p, one.n, 0, &ids, &nids, &cap, err)) {
                char m[sizeof err->msg];
                snprintf(m, sizeof m, "%s", err->msg);
                rc = -lk_seterr(err, err->code ? err->code : LK_EINPUT, "%s: %s", path, m);
                break;
            }
            if (lk_grow(&pl->s, &pl->cap, pl->n + 1, sizeof *pl->s, "a corpus's sentences", err)) {
                rc = -LK_ENOMEM;
                break;
            }
            s_add(&pl->text, text + a, b - a);
            if (pl->text.oom) {
                rc = -lk_nomem(err, pl->text.n, "a corpus's text");
                break;
            }
            pl->s[pl->n++] = (sent){pl->text.n - (b - a), (uint32_t)(b - a), (uint32_t)nids};
            pl->ntok += (long)nids;
        }
        if (rc < 0) break;
    }
    free(ids);
    free(one.p);
    lk_corpus_close(c);
    if (rc < 0) return -rc;
    if (pl->n == 0) return lk_seterr(err, LK_EINPUT, "%s: empty corpus (expected text to make haystacks from)", path);
    return 0;
}

int lk_prep_new(lk_prep **pp, const lk_tokenizer *tok, const lk_prep_opts *o, lk_err *err) {
    lk_prep *p = lk_zalloc(1, sizeof *p, "the sample generator", err);
    if (!p) return LK_ENOMEM;
    p->tok = tok;
    p->o = *o;
    if (!(p->template_name = lk_dup(o->template_name ? o->template_name : "none", err))) {
        free(p);
        return LK_ENOMEM;
    }
    p->o.template_name = p->template_name;
    p->add_special = !strcmp(p->template_name, "none");
    if (p->o.pool_tokens <= 0) p->o.pool_tokens = 262144;
    int rc = 0;
    if (!lk_chat_known(p->template_name)) {
        char *x = lk_chat_format(p->template_name, NULL, "", err);
        free(x);
        rc = err->code;
    }
    if (!rc) rc = lk_chat_check(p->template_name, tok, "tokenizer", err);
    if (!rc) {
        char *c = lk_chat_format(p->template_name, NULL, "\x01", err);
        char *mark = c ? strchr(c, 1) : NULL;
        if (mark) {
            *mark = 0;
            p->chat_head = lk_dup(c, err);
            p->chat_tail = lk_dup(mark + 1, err);
        }
        free(c);
        rc = p->chat_head && p->chat_tail ? load_words(p, err) : LK_ENOMEM;
    }
    if (!rc && o->n_corpora && !(p->pools = lk_zalloc((size_t)o->n_corpora, sizeof *p->pools, "the corpora", err)))
        rc = LK_ENOMEM;
    for (int i = 0; i < o->n_corpora && !rc; i++, p->n_pools++) rc = load_pool(p, &p->pools[i], o->corpora[i], err);
    if (!rc) {
        int *ids = NULL;
        size_t n = 0, cap = 0;
        char line[sizeof NOISE]; /* NOISE "\n" */
        memcpy(line, NOISE, sizeof NOISE - 1);
        line[sizeof NOISE - 1] = '\n';
        rc = lk_tok_encode(tok, line, sizeof line, 0, &ids, &n, &cap, err);
        p->noise_cost = (int)n;
        free(ids);
    }
    if (rc) {
        lk_prep_free(p);
        return rc;
    }
    *pp = p;
    return 0;
}

void lk_prep_free(lk_prep *p) {
    if (!p) return;
    for (int i = 0; i < p->n_pools; i++) {
        free(p->pools[i].path);
        free(p->pools[i].text.p);
        free(p->pools[i].s);
    }
    free(p->pools);
    for (int i = 0; i < p->n_adj; i++) free(p->adj[i]);
    for (int i = 0; i < p->n_noun; i++) free(p->noun[i]);
    for (int i = 0; i < p->n_all; i++) free(p->all[i]);
    free(p->adj);
    free(p->noun);
    free(p->all);
    free(p->words_from);
    free(p->template_name);
    free(p->chat_head);
    free(p->chat_tail);
    free(p);
}

int lk_prep_gen_new(lk_prep_gen **gp, lk_prep *p, lk_err *err) {
    lk_prep_gen *g = *gp = lk_zalloc(1, sizeof *g, "a sample generator", err);
    if (!g) return LK_ENOMEM;
    g->p = p;
    return 0;
}

void lk_prep_gen_free(lk_prep_gen *g) {
    if (!g) return;
    str *ss[] = {&g->user, &g->prompt, &g->hay, &g->tmp, &g->tmp2, &g->P, &g->Q, &g->AP, &g->ANS, &g->units};
    for (size_t i = 0; i < sizeof ss / sizeof *ss; i++) free(ss[i]->p);
    for (int i = 0; i < MAX_NEEDLES; i++) free(g->needle[i].p), free(g->ref[i].p);
    free(g->ids);
    free(g->ctx);
    free(g->ans);
    free(g->uoff);
    free(g->ucost);
    free(g->order);
    free(g->wc);
    free(g->list);
    free(g->nc);
    free(g);
}

/* ---- keys and values ---- */
static void uuid4(lk_prep_gen *g, str *s) {
    uint64_t a = rng_u64(&g->r), b = rng_u64(&g->r);
    a = (a & ~0xf000ULL) | 0x4000ULL;             /* version 4 */
    b = (b & ~(3ULL << 62)) | (2ULL << 62);       /* RFC 4122 variant */
    s_printf(s, "%08llx-%04llx-%04llx-%04llx-%012llx", (unsigned long long)(a >> 32),
             (unsigned long long)((a >> 16) & 0xffff), (unsigned long long)(a & 0xffff),
             (unsigned long long)(b >> 48), (unsigned long long)(b & 0xffffffffffffULL));
}
static void word_key(lk_prep_gen *g, str *s) {
    lk_prep *p = g->p;
    s_printf(s, "%s-%s", p->adj[rng_below(&g->r, (uint64_t)p->n_adj)], p->noun[rng_below(&g->r, (uint64_t)p->n_noun)]);
}
static void number7(lk_prep_gen *g, str *s) { s_printf(s, "%d", 1000000 + (int)rng_below(&g->r, 9000000)); }

/* depths: k distinct levels of RULER's 40 (round(linspace(0, 100, 40)) %), sorted */
static void depth_levels(lk_prep_gen *g, int k, double *out) {
    int lv[40];
    for (int i = 0; i < 40; i++) lv[i] = i;
    for (int i = 0; i < k; i++) {
        int j = i + (int)rng_below(&g->r, (uint64_t)(40 - i)), t = lv[i];
        lv[i] = lv[j];
        lv[j] = t;
    }
    for (int i = 0; i < k; i++) out[i] = round(lv[i] * 100.0 / 39.0) / 100.0;
    for (int i = 1; i < k; i++) /* insertion sort */
        for (int j = i; j > 0 && out[j] < out[j - 1]; j--) {
            double t = out[j];
            out[j] = out[j - 1];
            out[j - 1] = t;
        }
}
static void depth_uniform(lk_prep_gen *g, int k, double lo, double hi, double *out) {
    for (int i = 0; i < k; i++) out[i] = lo + (hi - lo) * rng_unit(&g->r);
    for (int i = 1; i < k; i++)
        for (int j = i; j > 0 && out[j] < out[j - 1]; j--) {
            double t = out[j];
            out[j] = out[j - 1];
            out[j - 1] = t;
        }
}

static void add_needle(lk_prep_gen *g, const char *text, double want) {
    str *s = &g->needle[g->n_needles];
    s_clear(s);
    s_cat(s, text);
    g->want[g->n_needles++] = want;
}
static void add_ref(lk_prep_gen *g, const char *text) {
    s_clear(&g->ref[g->n_refs]);
    s_cat(&g->ref[g->n_refs++], text);
}

/* ---- haystack units ---- */
/* one distractor needle appended to g->units (drawn from g->ru) */
static void make_distractor(lk_prep_gen *g) {
    lk_prep *p = g->p;
    str *u = &g->units;
    rng keep = g->r;
    g->r = g->ru; /* the key/value helpers draw from g->r */
    for (;;) {
        size_t mark = u->n;
        if (g->distract_uuid) {
            s_cat(u, "One of the special magic uuids for ");
            uuid4(g, u);
            s_cat(u, " is: ");
            uuid4(g, u);
            s_cat(u, ".");
            break;
        }
        s_cat(u, "One of the special magic numbers for ");
        size_t k0 = u->n;
        word_key(g, u);
        /* a distractor must not reuse a real key */
        int clash = 0;
        for (int i = 0; i < g->n_needles; i++) {
            const char *n = strstr(s_p(&g->needle[i]), " for ");
            size_t kl = u->n - k0;
            if (n && !strncmp(n + 5, s_p(u) + k0, kl) && !strncmp(n + 5 + kl, " is:", 4)) clash = 1;
        }
        if (clash) {
            u->n = mark;
            continue;
        }
        s_cat(u, " is: ");
        number7(g, u);
        s_cat(u, ".");
        (void)p;
        break;
    }
    g->ru = g->r;
    g->r = keep;
}

/* unit k: body text (without separator) and its tokens with the separator */
static int unit_get(lk_prep_gen *g, int k, const char **t, size_t *n) {
    lk_prep *p = g->p;
    if (g->kind == HK_CORPUS) {
        pool *pl = &p->pools[g->pool];
        const sent *s = &pl->s[((size_t)g->start + (size_t)k) % pl->n];
        *t = pl->text.p + s->off;
        *n = s->len;
        return (int)s->ntok;
    }
    if (g->kind == HK_NOISE) {
        *t = NOISE;
        *n = sizeof NOISE - 1;
        return p->noise_cost;
    }
    /* HK_DISTRACT: made on demand, costed once */
    while (g->nu <= k) {
        if (g->nu + 1 >= g->ucap) {
            int cap = g->ucap * 2 + 1024;
            if (lk_resize(&g->uoff, (size_t)cap, sizeof *g->uoff, "the haystack units", g->err) ||
                lk_resize(&g->ucost, (size_t)cap, sizeof *g->ucost, "the haystack units", g->err))
                return -1;
            g->ucap = cap;
        }
        if (g->nu == 0) g->uoff[0] = 0;
        make_distractor(g);
        s_cat(&g->units, "\n");
        if (g->units.oom) { /* the separator below is taken off again: it must be there */
            lk_nomem(g->err, g->units.n, "the haystack units");
            return -1;
        }
        size_t a = g->uoff[g->nu], b = g->units.n;
        int c = ntok(g, g->units.p + a, b - a);
        if (c < 0) return -1;
        g->units.n--; /* keep bodies without the separator */
        g->units.p[g->units.n] = 0;
        g->ucost[g->nu] = c;
        g->uoff[++g->nu] = g->units.n;
    }
    *t = g->units.p + g->uoff[k];
    *n = g->uoff[k + 1] - g->uoff[k];
    return g->ucost[k];
}

/* text of unit body with its separator into s */
static void with_sep(lk_prep_gen *g, str *s, const char *t, size_t n) {
    if (g->lead) s_add(s, " ", 1);
    s_add(s, t, n);
    if (!g->lead) s_add(s, "\n", 1);
}

/* Longest word-prefix of unit body t[0..n) whose tokens (with separator) are
 * at most r; written to out (with separator). Returns its tokens, 0 if none. */
static int partial_unit(lk_prep_gen *g, const char *t, size_t n, int r, str *out) {
    s_clear(out);
    if (r <= 1) return 0;
    /* candidate cuts: before each space or hyphen */
    int lo = 0, hi = 0, best = 0;
    size_t *cut = NULL;
    int nc = 0;
    for (size_t i = 1; i < n; i++)
        if ((t[i] == ' ' || t[i] == '-') && t[i - 1] != ' ') { /* words, and uuid groups */
            if ((nc & 255) == 0 && lk_resize(&cut, (size_t)nc + 256, sizeof *cut, "a unit's word cuts", g->err)) {
                free(cut);
                return -1;
            }
            cut[nc++] = i;
        }
    hi = nc - 1;
    size_t best_cut = 0;
    while (lo <= hi) { /* token count grows with the cut: binary search */
        int mid = (lo + hi) / 2;
        s_clear(&g->tmp);
        with_sep(g, &g->tmp, t, cut[mid]);
        int c = ntok(g, s_p(&g->tmp), g->tmp.n);
        if (c < 0) {
            free(cut);
            return -1;
        }
        if (c <= r) best = c, best_cut = cut[mid], lo = mid + 1;
        else hi = mid - 1;
    }
    /* line units (distractors, noise) may end mid-word: refine by characters
     * up to the next word cut when words are too coarse (uuids) */
    if (!g->lead && best < r - 1) {
        size_t next = lo < nc ? cut[lo] : n;
        for (size_t i = best_cut + 1; i < next; i++) {
            if ((unsigned char)t[i] >= 0x80) continue; /* ASCII boundaries only */
            s_clear(&g->tmp);
            with_sep(g, &g->tmp, t, i);
            int c = ntok(g, s_p(&g->tmp), g->tmp.n);
            if (c < 0) {
                free(cut);
                return -1;
            }
            if (c <= r) best = c, best_cut = i;
            else break;
        }
    }
    free(cut);
    if (best_cut) with_sep(g, out, t, best_cut);
    return best;
}

/* H from units and needles within budget tokens; sets depths and hay_tokens */
static int build_units(lk_prep_gen *g, long budget) {
    long avail = budget;
    for (int j = 0; j < g->n_needles; j++) avail -= g->needle_cost[j];
    long used = 0;
    int n = 0;
    const char *t;
    size_t tl;
    for (;;) {
        int c = unit_get(g, n, &t, &tl);
        if (c < 0) return -1;
        if (used + c > avail) break;
        used += c;
        n++;
    }
    int pc = partial_unit(g, t, tl, (int)(avail - used), &g->tmp2);
    if (pc < 0) return -1;
    long total = used + pc;
    for (int j = 0; j < g->n_needles; j++) total += g->needle_cost[j];
    s_clear(&g->hay);
    long at = 0;
    int j = 0;
    for (int k = 0; k <= n; k++) {
        for (; j < g->n_needles && (k == n || (int)floor(g->want[j] * n) <= k); j++) {
            g->depth[j] = total > 0 ? (double)at / (double)total : 0;
            with_sep(g, &g->hay, s_p(&g->needle[j]), g->needle[j].n);
            at += g->needle_cost[j];
        }
        if (k == n) break;
        int c = unit_get(g, k, &t, &tl);
        with_sep(g, &g->hay, t, tl);
        at += c;
    }
    s_add(&g->hay, s_p(&g->tmp2), g->tmp2.n);
    g->hay_tokens = (int)total;
    return 0;
}

/* ---- CWE and FWE: counted lists ---- */
static int word_cost(lk_prep_gen *g, const char *w) {
    s_clear(&g->tmp);
    s_cat(&g->tmp, " ");
    s_cat(&g->tmp, w);
    return ntok(g, s_p(&g->tmp), g->tmp.n);
}

/* tokens of list item number " {i}." (memo per generator) */
static int num_cost(lk_prep_gen *g, int i) {
    while (i >= g->nnc) {
        if (lk_resize(&g->nc, (size_t)g->nnc + 4096, sizeof *g->nc, "the list numbers' costs", g->err))
            return -1000000;
        for (int k = g->nnc; k < g->nnc + 4096; k++) {
            char b[32];
            int l = snprintf(b, sizeof b, " %d.", k);
            if ((g->nc[k] = ntok(g, b, (size_t)l)) < 0) return -1000000;
        }
        g->nnc += 4096;
    }
    return g->nc[i];
}

static void shuffle(rng *r, int *a, int n) {
    for (int i = n - 1; i > 0; i--) {
        int j = (int)rng_below(r, (uint64_t)i + 1), t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}

/* RULER common words: 10 words fcw times (30; 6 under 4K tokens), then words
 * fucw times (3; 1 under 4K) while the budget allows, then words once (still
 * uncommon) to fill the last tokens. g->order holds the drawn word order
 * (indices into p->all), wc their token counts. */
static int build_cwe(lk_prep_gen *g, long budget, const int *wc, int n_words) {
    lk_prep *p = g->p;
    const int ncw = 10, fcw = g->cwe_fcw, fucw = g->cwe_fucw;
    long cost = 0;
    int items = 0;
    for (int i = 0; i < ncw; i++) {
        cost += (long)fcw * wc[i];
        for (int r = 0; r < fcw; r++) cost += num_cost(g, ++items);
    }
    g->cwe_min = cost;
    int u = 0, e = 0;
    while (ncw + u < n_words) {
        long add = (long)fucw * wc[ncw + u];
        for (int i = 1; i <= fucw; i++) add += num_cost(g, items + i);
        if (cost + add > budget) break;
        cost += add;
        items += fucw;
        u++;
    }
    while (ncw + u + e < n_words) {
        long add = wc[ncw + u + e] + num_cost(g, items + 1);
        if (cost + add > budget) break;
        cost += add;
        items++;
        e++;
    }
    if (cost < 0) return -1; /* a num_cost failed */
    if ((size_t)items > g->list_cap) {
        if (lk_resize(&g->list, (size_t)items, sizeof *g->list, "the word list", g->err)) return -1;
        g->list_cap = (size_t)items;
    }
    int k = 0;
    for (int i = 0; i < ncw; i++)
        for (int r = 0; r < fcw; r++) g->list[k++] = g->order[i];
    for (int i = 0; i < u; i++)
        for (int r = 0; r < fucw; r++) g->list[k++] = g->order[ncw + i];
    for (int i = 0; i < e; i++) g->list[k++] = g->order[ncw + u + i];
    rng sh = g->ru; /* the same shuffle on every refit of this sample */
    shuffle(&sh, g->list, k);
    s_clear(&g->hay);
    for (int i = 0; i < k; i++) s_printf(&g->hay, "%s%d. %s", i ? " " : "", i + 1, p->all[g->list[i]]);
    g->hay_tokens = (int)cost;
    return 0;
}

#define FWE_ALPHA 2.0
/* RULER frequent words: word k of the coded vocabulary appears
 * floor(N k^-alpha / zeta(alpha)) times; the largest N within budget, then
 * single extra copies of rare words fill the last tokens. g->fwe_vocab holds
 * the words ("..." first), wc their token counts (with the leading space). */
static int build_fwe(lk_prep_gen *g, long budget, const int *wc) {
    const double zeta2 = M_PI * M_PI / 6;
    long lo = 0, hi = 16 * budget + 16;
    while (lo < hi) { /* largest N with cost(N) <= budget */
        long mid = (lo + hi + 1) / 2, c = 0;
        for (int k = 0; k < FWE_VOCAB; k++) c += (long)floor(mid * pow(k + 1, -FWE_ALPHA) / zeta2) * wc[k];
        if (c <= budget) lo = mid;
        else hi = mid - 1;
    }
    long cost = 0, n = 0;
    int cnt[FWE_VOCAB];
    for (int k = 0; k < FWE_VOCAB; k++) {
        cnt[k] = (int)floor(lo * pow(k + 1, -FWE_ALPHA) / zeta2);
        cost += (long)cnt[k] * wc[k];
    }
    for (int k = 20; k < FWE_VOCAB; k++) /* rare words once more: the top 3 stay the top 3 */
        if (cost + wc[k] <= budget) cost += wc[k], cnt[k]++;
    for (int k = 0; k < FWE_VOCAB; k++) n += cnt[k];
    if ((size_t)n > g->list_cap) {
        if (lk_resize(&g->list, (size_t)n, sizeof *g->list, "the word list", g->err)) return -1;
        g->list_cap = (size_t)n;
    }
    int m = 0;
    for (int k = 0; k < FWE_VOCAB; k++)
        for (int r = 0; r < cnt[k]; r++) g->list[m++] = k;
    rng sh = g->ru;
    shuffle(&sh, g->list, m);
    s_clear(&g->hay);
    for (int i = 0; i < m; i++) {
        s_add(&g->hay, " ", 1);
        s_add(&g->hay, g->fwe_vocab + 8 * g->list[i], strlen(g->fwe_vocab + 8 * g->list[i]));
    }
    g->hay_tokens = (int)cost;
    return 0;
}

/* ---- tasks ---- */
/* RULER's NIAH wording; singular when one value is asked (as RULER does) */
static void niah_text(lk_prep_gen *g, const char *tv, const char *query, int plural, int q_newline) {
    size_t tl = strlen(tv) - 1; /* "numbers" -> "number" */
    s_clear(&g->P);
    s_clear(&g->Q);
    s_clear(&g->AP);
    if (plural) {
        s_printf(&g->P, "Some special magic %s are hidden within the following text. Make sure to memorize it. "
                        "I will quiz you about the %s afterwards.\n", tv, tv);
        s_printf(&g->Q, "%sWhat are all the special magic %s for %s mentioned in the provided text?",
                 q_newline ? "\n" : "", tv, query);
        s_printf(&g->AP, " The special magic %s for %s mentioned in the provided text are", tv, query);
    } else {
        s_printf(&g->P, "A special magic %.*s is hidden within the following text. Make sure to memorize it. "
                        "I will quiz you about the %.*s afterwards.\n", (int)tl, tv, (int)tl, tv);
        s_printf(&g->Q, "%sWhat is the special magic %.*s for %s mentioned in the provided text?",
                 q_newline ? "\n" : "", (int)tl, tv, query);
        s_printf(&g->AP, " The special magic %.*s for %s mentioned in the provided text is", (int)tl, tv, query);
    }
}

/* NIAH family: nk keys, nv values each, nq keys asked. key/value kinds: 'w'
 * adjective-noun words, 'n' 7-digit numbers, 'u' uuids. */
static void setup_niah(lk_prep_gen *g, int nk, int nv, int nq, char kk, char vk, int supervise_first) {
    const char *tv = vk == 'u' ? "uuids" : "numbers";
    str key[4] = {{0}}, vals[4][4] = {{{0}}}, needle = {0}, query = {0};
    double dep[16];
    depth_levels(g, nk * nv, dep);
    for (int i = 0; i < nk; i++) {
        int dup;
        do { /* distinct keys: a key asked twice would have two answers */
            s_clear(&key[i]);
            if (kk == 'u') uuid4(g, &key[i]);
            else word_key(g, &key[i]);
            dup = 0;
            for (int j = 0; j < i; j++) dup |= !strcmp(s_p(&key[j]), s_p(&key[i]));
        } while (dup && !key[i].oom);
        for (int j = 0; j < nv; j++) {
            if (vk == 'u') uuid4(g, &vals[i][j]);
            else number7(g, &vals[i][j]);
        }
    }
    /* needles in key order, values in order, at the sorted depths */
    int d = 0;
    for (int i = 0; i < nk; i++)
        for (int j = 0; j < nv; j++) {
            s_clear(&needle);
            s_printf(&needle, "One of the special magic %s for %s is: %s.", tv, s_p(&key[i]), s_p(&vals[i][j]));
            add_needle(g, s_p(&needle), dep[d++]);
        }
    /* which keys are asked: nq distinct of nk */
    int ask[4] = {0, 1, 2, 3};
    for (int i = 0; i < nq; i++) {
        int j = i + (int)rng_below(&g->r, (uint64_t)(nk - i)), t = ask[i];
        ask[i] = ask[j];
        ask[j] = t;
    }
    for (int i = 0; i < nq; i++) {
        if (i) s_cat(&query, nq > 2 && i == nq - 1 ? ", and " : nq == 2 ? " and " : ", ");
        s_cat(&query, s_p(&key[ask[i]]));
    }
    s_clear(&g->ANS);
    for (int i = 0; i < nq; i++)
        for (int j = 0; j < nv; j++) {
            add_ref(g, s_p(&vals[ask[i]][j]));
            if (supervise_first && g->n_refs > 1) continue;
            s_cat(&g->ANS, g->n_refs > 1 ? ", " : " ");
            s_cat(&g->ANS, s_p(&vals[ask[i]][j]));
        }
    niah_text(g, tv, s_p(&query), nq * nv > 1, g->lead);
    g->oom |= needle.oom | query.oom;
    for (int i = 0; i < nk; i++) {
        g->oom |= key[i].oom;
        free(key[i].p);
        for (int j = 0; j < nv; j++) {
            g->oom |= vals[i][j].oom;
            free(vals[i][j].p);
        }
    }
    free(needle.p);
    free(query.p);
}

static void setup_passkey(lk_prep_gen *g) {
    double dep[10];
    depth_uniform(g, 10, 0.05, 0.95, dep);
    str pk = {0}, needle = {0};
    s_clear(&g->Q);
    s_clear(&g->ANS);
    for (int i = 0; i < 10; i++) {
        s_clear(&pk);
        for (int w = 0; w < 32; w++) {
            if (w) s_cat(&pk, " ");
            s_cat(&pk, NATO[rng_below(&g->r, 26)]);
        }
        s_clear(&needle);
        s_printf(&needle, "The %s passkey is: %s.", ORDINAL[i], s_p(&pk));
        add_needle(g, s_p(&needle), dep[i]);
        add_ref(g, s_p(&pk));
        s_printf(&g->Q, "%sWhat is the %s passkey?", i ? " " : "\n", ORDINAL[i]);
        s_printf(&g->ANS, "%sThe %s passkey is: %s.", i ? "\n" : "", ORDINAL[i], s_p(&pk));
    }
    g->oom |= pk.oom | needle.oom;
    s_clear(&g->P);
    s_cat(&g->P, "There are ten passkeys hidden within the following text. Make sure to memorize them, "
                 "in order. I will quiz you about the passkeys afterwards.\n");
    s_clear(&g->AP);
    free(pk.p);
    free(needle.p);
}

static void setup_vt(lk_prep_gen *g) {
    char var[5][6];
    for (int i = 0; i < 5; i++) {
    again:
        for (int c = 0; c < 5; c++) var[i][c] = (char)('A' + rng_below(&g->r, 26));
        var[i][5] = 0;
        for (int k = 0; k < i; k++)
            if (!strcmp(var[k], var[i])) goto again;
    }
    int value = 10000 + (int)rng_below(&g->r, 89999);
    double dep[5];
    depth_uniform(g, 5, 0, 1, dep);
    char line[64];
    snprintf(line, sizeof line, "VAR %s = %d", var[0], value);
    add_needle(g, line, dep[0]);
    for (int i = 1; i < 5; i++) {
        snprintf(line, sizeof line, "VAR %s = VAR %s", var[i], var[i - 1]);
        add_needle(g, line, dep[i]);
    }
    s_clear(&g->P);
    s_cat(&g->P, "Memorize and track the chain(s) of variable assignment hidden in the following text.\n\n");
    s_clear(&g->Q);
    s_printf(&g->Q, "Question: Find all variables that are assigned the value %d in the text above.", value);
    s_clear(&g->AP);
    s_printf(&g->AP, " Answer: According to the chain(s) of variable assignment in the text above, 5 variables "
                     "are assgined the value %d, they are: ", value); /* sic: RULER's wording */
    s_clear(&g->ANS);
    for (int i = 0; i < 5; i++) {
        add_ref(g, var[i]);
        s_printf(&g->ANS, "%s%s", i ? " " : "", var[i]);
    }
}

/* RULER's prompt: one worked example (under 4K tokens: 20 words, 10 of them
 * 3 times; else 40 words, 10 of them 10 times and the rest 3 times) with its
 * answer, then the list to count. The example takes its words from the end of
 * the shuffled order, the list from the start: they share none. */
static int setup_cwe(lk_prep_gen *g, int target, int *n_words) {
    static const char intro[] = "Below is a numbered list of words. In these words, some appear more often "
                                "than others. Memorize the ones that appear most often.\n";
    lk_prep *p = g->p;
    int n = p->n_all, small = target < 4096;
    int ex_words = small ? 20 : 40, ex_fcw = small ? 3 : 10, ex_fucw = small ? 1 : 3;
    g->cwe_fcw = small ? 6 : 30;
    g->cwe_fucw = small ? 1 : 3;
    if (n < 10 + ex_words + 10)
        return lk_seterr(g->err, LK_EUSAGE, "task cwe: %d words in %s are too few (expected at least %d)", n,
                         p->words_from, 10 + ex_words + 10);
    if ((size_t)n > g->order_cap) {
        if (lk_resize(&g->order, (size_t)n, sizeof *g->order, "the word order", g->err) ||
            lk_resize(&g->wc, (size_t)n, sizeof *g->wc, "the word order", g->err))
            return -1;
        g->order_cap = (size_t)n;
    }
    for (int i = 0; i < n; i++) g->order[i] = i;
    shuffle(&g->r, g->order, n);
    *n_words = n - ex_words;
    for (int i = 0; i < *n_words; i++)
        if ((g->wc[i] = word_cost(g, p->all[g->order[i]])) < 0) return -1;
    static const char question[] = "\nQuestion: What are the 10 most common words in the above list?";
    static const char answer_prefix[] = " Answer: The top 10 words that appear most often in the list are:";
    /* the example: its words, repeated and shuffled, numbered */
    const int *ex = g->order + *n_words;
    int ex_items = 10 * ex_fcw + (ex_words - 10) * ex_fucw, k = 0;
    if ((size_t)ex_items > g->list_cap) {
        if (lk_resize(&g->list, (size_t)ex_items, sizeof *g->list, "the word list", g->err)) return -1;
        g->list_cap = (size_t)ex_items;
    }
    for (int i = 0; i < ex_words; i++)
        for (int r = 0; r < (i < 10 ? ex_fcw : ex_fucw); r++) g->list[k++] = ex[i];
    shuffle(&g->r, g->list, k);
    s_clear(&g->P);
    s_cat(&g->P, intro);
    for (int i = 0; i < k; i++) s_printf(&g->P, "%s%d. %s", i ? " " : "", i + 1, p->all[g->list[i]]);
    s_cat(&g->P, question);
    s_cat(&g->P, answer_prefix);
    for (int i = 0; i < 10; i++) s_printf(&g->P, " %d. %s", i + 1, p->all[ex[i]]);
    s_cat(&g->P, "\n");
    s_cat(&g->P, intro);
    s_clear(&g->Q);
    s_cat(&g->Q, question);
    s_clear(&g->AP);
    s_cat(&g->AP, answer_prefix);
    s_clear(&g->ANS);
    for (int i = 0; i < 10; i++) {
        add_ref(g, p->all[g->order[i]]);
        s_printf(&g->ANS, " %d. %s", i + 1, p->all[g->order[i]]);
    }
    return 0;
}

static int setup_fwe(lk_prep_gen *g) {
    if (g->order_cap < FWE_VOCAB) {
        if (lk_resize(&g->order, FWE_VOCAB, sizeof *g->order, "the word order", g->err) ||
            lk_resize(&g->wc, FWE_VOCAB, sizeof *g->wc, "the word order", g->err))
            return -1;
        g->order_cap = FWE_VOCAB;
    }
    /* distinct 6-letter codes; the most frequent is "..." (noise, as in RULER) */
    for (int k = 0; k < FWE_VOCAB; k++) {
        char *w = g->fwe_vocab + 8 * k;
    redo:
        for (int c = 0; c < 6; c++) w[c] = (char)('a' + rng_below(&g->r, 26));
        w[6] = 0;
        for (int j = 1; j < k; j++)
            if (!memcmp(w, g->fwe_vocab + 8 * j, 7)) goto redo;
    }
    strcpy(g->fwe_vocab, "...");
    for (int k = 0; k < FWE_VOCAB; k++)
        if ((g->wc[k] = word_cost(g, g->fwe_vocab + 8 * k)) < 0) return -1;
    s_clear(&g->P);
    s_cat(&g->P, "Read the following coded text and track the frequency of each coded word. Find the three most "
                 "frequently appeared coded words.");
    s_clear(&g->Q);
    s_cat(&g->Q, "\nQuestion: Do not provide any explanation. Please ignore the dots '....'. What are the three most "
                 "frequently appeared words in the above coded text?");
    s_clear(&g->AP);
    s_cat(&g->AP, " Answer: According to the coded text above, the three most frequently appeared words are:");
    s_clear(&g->ANS);
    for (int k = 1; k <= 3; k++) {
        add_ref(g, g->fwe_vocab + 8 * k);
        s_printf(&g->ANS, "%s%s", k > 1 ? ", " : " ", g->fwe_vocab + 8 * k);
    }
    return 0;
}

static uint64_t mix(uint64_t h, uint64_t v) {
    h ^= v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
    return splitmix(&h);
}

/* encode head + P + H + Q + tail + AP into g->ctx */
static int encode_prompt(lk_prep_gen *g, int strip_lead) {
    lk_prep *p = g->p;
    str *u = &g->prompt;
    s_clear(u);
    s_cat(u, p->chat_head);
    s_add(u, s_p(&g->P), g->P.n);
    const char *h = s_p(&g->hay);
    size_t hn = g->hay.n;
    if (strip_lead && hn && h[0] == ' ') h++, hn--;
    s_add(u, h, hn);
    s_add(u, s_p(&g->Q), g->Q.n);
    s_cat(u, p->chat_tail);
    s_add(u, s_p(&g->AP), g->AP.n);
    if (gen_oom(g)) { /* the prompt would lack what was not appended */
        lk_nomem(g->err, u->n, "a sample's prompt");
        return -1;
    }
    /* without a chat template, the tokenizer's post-processor adds what it adds
     * to any text (BOS for Llama-family tokenizers), as leank-decode and HF's
     * tokenizer(prompt) do; a template's text carries its own */
    if (lk_tok_encode(p->tok, u->p, u->n, p->add_special, &g->ctx, &g->nctx, &g->ctxcap, g->err)) return -1;
    return 0;
}

int lk_prep_sample(lk_prep_gen *g, const char *task, int target, long index, lk_sample *s, lk_err *err) {
    lk_prep *p = g->p;
    g->err = err;
    if (!strcmp(task, "train")) task = index % 2 ? "train-essay" : "train-uuid";
    const lk_prep_task *t = lk_prep_find_task(task);
    if (!t) return lk_seterr(err, LK_EUSAGE, "unknown task '%s' (see --list-tasks)", task);
    if (t->needs_corpus && !p->n_pools)
        return lk_seterr(err, LK_EUSAGE, "task %s needs a haystack corpus (--corpus FILE)", task);
    if (t->needs_words && !lk_prep_have_words(p))
        return lk_seterr(err, LK_EUSAGE, "task %s needs word lists (--words DIR with adjectivelist.txt and "
                         "nounlist.txt, or a word-per-line file; /usr/share/dict/words is absent)", task);
    uint64_t h = mix(mix(mix(p->o.seed, lk_fnv1a64(task, strlen(task), LK_FNV_OFFSET)), (uint64_t)target),
                     (uint64_t)index);
    rng_seed(&g->r, h);
    rng_seed(&g->ru, mix(h, 1));
    g->n_needles = g->n_refs = 0;
    g->nu = 0;
    g->oom = 0;
    str *ss[] = {&g->user, &g->prompt, &g->hay, &g->tmp, &g->tmp2, &g->P, &g->Q, &g->AP, &g->ANS, &g->units};
    for (size_t i = 0; i < sizeof ss / sizeof *ss; i++) ss[i]->oom = 0; /* a new sample, a new try */
    for (int i = 0; i < MAX_NEEDLES; i++) g->needle[i].oom = g->ref[i].oom = 0;
    s_clear(&g->units);
    s_clear(&g->tmp2);
    s_clear(&g->hay);
    g->lead = 0;
    g->kind = HK_NOISE;
    if (t->needs_corpus) {
        g->kind = HK_CORPUS;
        g->lead = 1;
        g->pool = (int)(index % p->n_pools);
        g->start = (int)rng_below(&g->r, p->pools[g->pool].n);
    }
    int n_words = 0, rc = 0;
    if (!strcmp(task, "train-uuid")) {
        g->kind = HK_DISTRACT;
        g->distract_uuid = 1;
        setup_niah(g, 1, 1, 1, 'u', 'u', 0);
    } else if (!strcmp(task, "train-essay")) setup_niah(g, 1, 4, 1, 'w', 'n', 1);
    else if (!strcmp(task, "passkey")) setup_passkey(g);
    else if (!strcmp(task, "niah_single_1")) setup_niah(g, 1, 1, 1, 'w', 'n', 0);
    else if (!strcmp(task, "niah_single_2")) setup_niah(g, 1, 1, 1, 'w', 'n', 0);
    else if (!strcmp(task, "niah_single_3")) setup_niah(g, 1, 1, 1, 'w', 'u', 0);
    else if (!strcmp(task, "niah_multikey_1")) setup_niah(g, 4, 1, 1, 'w', 'n', 0);
    else if (!strcmp(task, "niah_multikey_2")) {
        g->kind = HK_DISTRACT;
        g->distract_uuid = 0;
        setup_niah(g, 1, 1, 1, 'w', 'n', 0);
    } else if (!strcmp(task, "niah_multikey_3")) {
        g->kind = HK_DISTRACT;
        g->distract_uuid = 1;
        setup_niah(g, 1, 1, 1, 'u', 'u', 0);
    } else if (!strcmp(task, "niah_multivalue")) setup_niah(g, 1, 4, 1, 'w', 'n', 0);
    else if (!strcmp(task, "niah_multiquery")) setup_niah(g, 4, 1, 4, 'w', 'n', 0);
    else if (!strcmp(task, "vt")) setup_vt(g);
    else if (!strcmp(task, "cwe")) {
        g->kind = HK_CWE;
        rc = setup_cwe(g, target, &n_words);
    } else if (!strcmp(task, "fwe")) {
        g->kind = HK_FWE;
        rc = setup_fwe(g);
    }
    if (rc) return err->code ? err->code : LK_EFAIL;
    for (int j = 0; j < g->n_needles; j++) {
        s_clear(&g->tmp);
        with_sep(g, &g->tmp, s_p(&g->needle[j]), g->needle[j].n);
        if ((g->needle_cost[j] = ntok(g, s_p(&g->tmp), g->tmp.n)) < 0) return err->code;
    }
    if (gen_oom(g)) return lk_nomem(err, 0, "a sample's question and needles");
    /* answer ids, and the prompt's tokens without a haystack */
    if (lk_tok_encode(p->tok, s_p(&g->ANS), g->ANS.n, 0, &g->ans, &g->nans, &g->anscap, err))
        return err->code;
    s_clear(&g->hay);
    int strip = g->kind == HK_CORPUS;
    if (encode_prompt(g, strip)) return err->code;
    long fixed = (long)g->nctx + (long)g->nans, need = fixed;
    for (int j = 0; j < g->n_needles; j++) need += g->needle_cost[j];
    if (g->kind == HK_CWE) need += 10L * g->cwe_fcw * 3; /* 10 words x fcw, about 3 tokens each */
    if (need > target)
        return lk_seterr(err, LK_EUSAGE, "task %s: length %d is too short (its question, needles and answer "
                         "take about %ld tokens)", task, target, need);
    /* fit: build H for the budget, encode, correct the budget by the miss */
    long budget = target - fixed, best_budget = -1;
    int tol = 2 + target / 2000, diff = 0, best_diff = 1 << 30;
    for (int iter = 0; iter < 10; iter++) {
        if (iter == 9) { /* no exact fit (coarse units): the closest fit under the target */
            if (best_budget < 0) break;
            budget = best_budget;
        }
        if (g->kind == HK_CWE) rc = build_cwe(g, budget, g->wc, n_words);
        else if (g->kind == HK_FWE) rc = build_fwe(g, budget, g->wc);
        else rc = build_units(g, budget);
        if (rc) return err->code ? err->code : LK_EFAIL;
        if (encode_prompt(g, strip)) return err->code;
        diff = target - (int)(g->nctx + g->nans);
        if (diff >= 0 && diff <= tol) break;
        if (diff >= 0 && diff < best_diff) best_diff = diff, best_budget = budget;
        budget += diff > 0 ? (diff + 1) / 2 : diff; /* halve upward steps: no ping-pong */
    }
    if (diff < 0 || diff > target / 100) {
        if (g->kind == HK_CWE && fixed + g->cwe_min > target)
            return lk_seterr(err, LK_EUSAGE, "task cwe: length %d is too short (its example, question, answer "
                             "and 10 words x %d take %ld tokens)", target, g->cwe_fcw, fixed + g->cwe_min);
        if (g->kind == HK_CWE)
            return lk_seterr(err, LK_EUSAGE, "task cwe: %d words in %s are too few for length %d (got %d tokens)",
                             n_words, p->words_from, target, target - diff);
        if (g->kind == HK_CORPUS) /* text with few sentence or word breaks cannot be cut to size */
            return lk_seterr(err, LK_EINPUT, "%s: task %s: cannot fit length %d within 1 %% (got %d tokens; expected "
                             "text with sentence or word breaks)", p->pools[g->pool].path, task, target, target - diff);
        return lk_seterr(err, LK_EFAIL, "task %s: cannot fit length %d (got %d tokens)", task, target, target - diff);
    }
    /* question position: the tokens after it counted alone */
    s_clear(&g->tmp);
    s_add(&g->tmp, s_p(&g->Q), g->Q.n);
    s_cat(&g->tmp, p->chat_tail);
    s_add(&g->tmp, s_p(&g->AP), g->AP.n);
    int qt = ntok(g, s_p(&g->tmp), g->tmp.n);
    if (qt < 0) return err->code;
    if (gen_oom(g)) return lk_nomem(err, 0, "a sample's text");
    memset(s, 0, sizeof *s);
    snprintf(s->task, sizeof s->task, "%s", task);
    s->target_len = target;
    s->question_pos = (int)g->nctx - qt;
    s->ctx = g->ctx;
    s->n_ctx = (int)g->nctx;
    s->ans = g->ans;
    s->n_ans = (int)g->nans;
    s->depths = g->depth;
    s->n_depths = g->n_needles;
    for (int i = 0; i < g->n_refs; i++) g->refp[i] = g->ref[i].p;
    for (int i = 0; i < g->n_needles; i++) g->needlep[i] = g->needle[i].p;
    s->refs = g->refp;
    s->n_refs = g->n_refs;
    s->needles = g->needlep;
    s->n_needles = g->n_needles;
    return 0;
}
