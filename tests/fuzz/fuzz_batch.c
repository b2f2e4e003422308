/* fuzz_batch - leank-decode --batch requests: each line of the input parsed
 * as one request (vocabulary of 1000 ids). */
#include "batch.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const lk_gen_request def = {.max_tokens = 256, .top_p = 1.0f};
    const char *p = (const char *)data, *end = p + size;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
        lk_batch_req r;
        lk_err err = {0};
        lk_batch_parse(&r, p, len, "batch:1", 1000, &def, "none", NULL, &err);
        lk_batch_req_free(&r);
        p += len + (nl != NULL);
    }
    return 0;
}
