/* fuzz_tokenizer - tokenizer.json: load, then encode, decode and stream a
 * fixed text with whatever was loaded. */
#include "fuzz.h"
#include "tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lk_tokenizer *t;
    lk_err err = {0};
    if (lk_tok_load(&t, fuzz_file(data, size), &err)) return 0;
    static const char text[] = "Hello, world! <s> 12345 \xc3\xa9t\xc3\xa9\n\n  tabs\there \xf0\x9f\x98\x80";
    int *ids = NULL;
    size_t n = 0, cap = 0;
    if (lk_tok_encode(t, text, sizeof text - 1, 1, &ids, &n, &cap, &err) == 0) {
        char *out = NULL;
        size_t len = 0, ocap = 0;
        lk_tok_decode(t, ids, n, 0, &out, &len, &ocap, &err);
        free(out);
        lk_tok_stream s;
        lk_tok_stream_init(&s);
        char *piece = NULL;
        size_t plen = 0, pcap = 0;
        for (size_t i = 0; i < n; i++) lk_tok_stream_push(t, &s, ids[i], &piece, &plen, &pcap);
        lk_tok_stream_flush(t, &s, &piece, &plen, &pcap);
        free(piece);
    }
    free(ids);
    for (int id = 0; id < lk_tok_vocab_size(t) && id < 64; id++) lk_tok_piece(t, id);
    lk_tok_free(t);
    return 0;
}
