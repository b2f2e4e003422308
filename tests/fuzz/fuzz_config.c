/* fuzz_config - a model's config.json (and the RoPE tables it implies). */
#include "config.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lk_config c;
    lk_err err = {0};
    if (lk_config_parse(&c, (const char *)data, size, "config.json", &err)) return 0;
    float *inv = malloc((size_t)c.head_dim / 2 * sizeof *inv + sizeof *inv), scale;
    lk_rope_inv_freq(&c, inv, &scale);
    free(inv);
    return 0;
}
