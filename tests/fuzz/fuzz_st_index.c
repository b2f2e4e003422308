/* fuzz_st_index - model.safetensors.index.json: weight_map over two real
 * shards ("a.safetensors" holding x and y, "b.safetensors" holding z). */
#include <sys/stat.h>

#include "fuzz.h"
#include "safetensors.h"

static char dir[] = "/tmp/leank-fuzz-index.XXXXXX";

static void shard(const char *name, const char *tensor) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    lk_stw *w = lk_stw_new();
    static const float v[4] = {1, 2, 3, 4};
    int64_t shape[1] = {4};
    lk_stw_add(w, tensor, LK_DT_F32, 1, shape, v);
    if (!strcmp(tensor, "x")) lk_stw_add(w, "y", LK_DT_F32, 1, shape, v);
    lk_err err = {0};
    if (lk_stw_write(w, path, &err)) { fprintf(stderr, "%s\n", err.msg); abort(); }
    lk_stw_free(w);
}

static void cleanup(void) {
    char path[256];
    const char *names[] = {"a.safetensors", "b.safetensors", "model.safetensors.index.json"};
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        unlink(path);
    }
    rmdir(dir);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static char index[256];
    if (!index[0]) {
        if (!mkdtemp(dir)) { perror("mkdtemp"); abort(); }
        atexit(cleanup);
        shard("a.safetensors", "x");
        shard("b.safetensors", "z");
        snprintf(index, sizeof index, "%s/model.safetensors.index.json", dir);
    }
    FILE *f = fopen(index, "wb");
    if (!f || fwrite(data, 1, size, f) != size || fclose(f)) abort();
    lk_st *st;
    lk_err err = {0};
    if (lk_st_open(&st, index, &err) == 0) {
        for (int i = 0; i < lk_st_count(st); i++) lk_st_find(st, lk_st_at(st, i)->name);
        lk_st_close(st);
    }
    if (lk_st_open(&st, dir, &err) == 0) lk_st_close(st);
    return 0;
}
