/* fuzz_safetensors - a .safetensors file: header, tensors, conversion to f32. */
#include "fuzz.h"
#include "safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lk_st *st;
    lk_err err = {0};
    if (lk_st_open(&st, fuzz_file(data, size), &err)) return 0;
    for (int i = 0; i < lk_st_count(st); i++) {
        const lk_tensor *t = lk_st_at(st, i);
        if (t->numel > (1 << 20)) continue;
        float *dst = malloc((size_t)(t->numel ? t->numel : 1) * sizeof *dst);
        lk_tensor_to_f32(t, dst, &err);
        free(dst);
        lk_st_find(st, t->name);
    }
    lk_st_meta(st, "format");
    lk_st_close(st);
    return 0;
}
