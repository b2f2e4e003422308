/* fuzz_tsv - a TSV mask (the official LeanK release format), with the head
 * dimension from the header (0) and given (128, as a model would). */
#include "fuzz.h"
#include "mask.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const int dims[] = {0, 128};
    for (int i = 0; i < 2; i++) {
        lk_mask m;
        lk_err err = {0};
        if (lk_mask_parse_tsv(&m, (const char *)data, size, "mask.tsv", dims[i], &err) == 0) {
            lk_mask_stats st;
            if (lk_mask_stats_compute(&m, &st, &err) == 0) lk_mask_stats_free(&st);
            lk_mask_free(&m);
        }
    }
    return 0;
}
