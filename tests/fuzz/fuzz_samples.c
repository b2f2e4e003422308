/* fuzz_samples - a samples file (zstd frame of records), read to its end. */
#include "fuzz.h"
#include "samples.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lk_samples_reader *r;
    lk_err err = {0};
    if (lk_samples_open(&r, fuzz_file(data, size), &err)) return 0;
    lk_samples_hdr(r);
    lk_sample s;
    while (lk_samples_next(r, &s, &err) == 1) {}
    lk_samples_close(r);
    return 0;
}
