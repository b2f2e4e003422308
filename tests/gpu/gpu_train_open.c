/* gpu_train_open.c - leank-train's device choice on a GPU (lk_train_backend_open):
 * the CUDA engine's model fingerprint is the host model's (so alpha files and
 * checkpoints move between devices), auto picks cuda when the build has the
 * CUDA training backend, and cuda either opens (the same fingerprint, the
 * model's shape and vocabulary) or, in a build without that backend, is
 * refused with LK_EDEVICE and one clear line. leank-mini, from the top of
 * the tree. */
#include "engine.h"
#include "model.h"
#include "t.h"
#include "train.h"

#define MINI "data/models/leank-mini"

int main(void) {
    if (!lk_cuda_available()) T_SKIP("no GPU visible (or a build without CUDA)");
    lk_err err = {0};
    lk_model m;
    if (lk_model_load(&m, MINI, &err)) T_SKIP("%s (run from the top of the tree): %s", MINI, err.msg);
    uint64_t host_fp = lk_model_fingerprint(&m);
    lk_engine *e;
    lk_engine_opts eo = {.device = LK_DEVICE_CUDA, .pool_bytes = (size_t)64 << 20};
    CHECKF(lk_engine_open(&e, MINI, &eo, &err) == 0, "%s", err.msg);
    if (e) {
        CHECKF(lk_engine_fingerprint(e) == host_fp, "cuda engine %016llx, host model %016llx",
               (unsigned long long)lk_engine_fingerprint(e), (unsigned long long)host_fp);
        printf("leank-mini on %s: fingerprint %016llx on both devices\n", lk_engine_device_name(e),
               (unsigned long long)host_fp);
        lk_engine_free(e);
    }
    lk_train_backend b;
    uint64_t fp = 0;
    int vocab = 0;
    int rc = lk_train_backend_open(&b, MINI, LK_DEVICE_CUDA, 4, 16, &fp, &vocab, &err);
    if (rc == 0) {
        CHECK(!strcmp(b.name, "cuda"));
        CHECK(fp == host_fp && vocab == m.cfg.vocab_size && b.n_layers == m.cfg.n_layers &&
              b.n_kv_heads == m.cfg.n_kv_heads && b.head_dim == m.cfg.head_dim);
        lk_train_backend_free(&b);
        CHECKF(lk_train_backend_open(&b, MINI, LK_DEVICE_AUTO, 4, 16, NULL, NULL, &err) == 0, "%s", err.msg);
        CHECK(b.name && !strcmp(b.name, "cuda"));
        lk_train_backend_free(&b);
    } else {
        CHECKF(rc == LK_EDEVICE && strstr(err.msg, "no CUDA training backend"), "rc %d: %s", rc, err.msg);
        T_SKIP_PART("this build has no CUDA training backend: %s", err.msg);
        /* then auto is the cpu */
        CHECKF(lk_train_backend_open(&b, MINI, LK_DEVICE_AUTO, 4, 16, &fp, NULL, &err) == 0, "%s", err.msg);
        CHECK(b.name && !strcmp(b.name, "cpu") && fp == host_fp);
        lk_train_backend_free(&b);
    }
    lk_model_free(&m);
    return t_done();
}
