/* fuzz_encode - encode any text with leank-mini's tokenizer (and Llama-3's
 * from ../shared when present), decode the ids back, stream-decode them. */
#include "fuzz.h"
#include "tokenizer.h"

static lk_tokenizer *toks[2];
static int ntoks;

static void load(const char *path) {
    lk_tokenizer *t;
    lk_err err = {0};
    if (access(path, R_OK) != 0) return;
    if (lk_tok_load(&t, path, &err)) { fprintf(stderr, "%s\n", err.msg); abort(); }
    toks[ntoks++] = t;
}

static void free_toks(void) {
    for (int i = 0; i < ntoks; i++) lk_tok_free(toks[i]);
}

static void one(const lk_tokenizer *t, const char *text, size_t len, int add_special) {
    int *ids = NULL;
    size_t n = 0, cap = 0;
    lk_err err = {0};
    if (lk_tok_encode(t, text, len, add_special, &ids, &n, &cap, &err) == 0) {
        char *out = NULL, *piece = NULL;
        size_t olen = 0, ocap = 0, plen = 0, pcap = 0;
        lk_tok_decode(t, ids, n, add_special, &out, &olen, &ocap, &err);
        lk_tok_stream s;
        lk_tok_stream_init(&s);
        for (size_t i = 0; i < n; i++) lk_tok_stream_push(t, &s, ids[i], &piece, &plen, &pcap);
        lk_tok_stream_flush(t, &s, &piece, &plen, &pcap);
        free(out);
        free(piece);
    }
    free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!ntoks) {
        char path[4096];
        snprintf(path, sizeof path, "%s/data/models/leank-mini/tokenizer.json", fuzz_top());
        load(path);
        const char *sh = getenv("LEANK_SHARED");
        snprintf(path, sizeof path, "%s/data/tokenizers/llama3/tokenizer.json",
                 sh ? sh : "../shared");
        load(path);
        if (!ntoks) { fprintf(stderr, "fuzz_encode: no tokenizer (run from the repository root)\n"); abort(); }
        atexit(free_toks);
    }
    for (int i = 0; i < ntoks; i++) one(toks[i], (const char *)data, size, size & 1);
    return 0;
}
