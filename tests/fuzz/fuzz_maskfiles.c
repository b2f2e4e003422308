/* fuzz_maskfiles - the safetensors files leank writes: a mask (any shape,
 * and leank-mini's head_dim 64), an alpha file (2 x 2 x 8) and a plan. */
#include "fuzz.h"
#include "mask.h"
#include "plan.h"
#include "train.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_file(data, size);
    lk_err err = {0};
    lk_mask m;
    if (lk_mask_load(&m, path, &err) == 0) {
        lk_mask_stats st;
        if (lk_mask_stats_compute(&m, &st, &err) == 0) lk_mask_stats_free(&st);
        lk_mask_free(&m);
    }
    if (lk_mask_load_dim(&m, path, 64, &err) == 0) lk_mask_free(&m);
    float alpha[2 * 2 * 8];
    lk_alpha_load(path, alpha, 2, 2, 8, &err);
    lk_plan p;
    if (lk_plan_load(&p, path, &err) == 0) lk_plan_free(&p);
    return 0;
}
