/* fuzz_yaml - a training config (YAML) for stage 1 and stage 2. */
#include "fuzz.h"
#include "train.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_file(data, size);
    for (int stage = 1; stage <= 2; stage++) {
        lk_train_opts o;
        lk_err err = {0};
        lk_train_opts_default(&o, stage);
        lk_train_config_load(&o, path, &err);
    }
    return 0;
}
