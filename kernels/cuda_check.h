/* cuda_check.h - the checks of the CUDA host files that report through
 * lk_err (engine_cuda.cu, train_cuda.cu): every runtime call (CU), kernel
 * launcher returning 0 or a cudaError_t value (KR) and cuBLAS call (BL) that
 * fails returns LK_EDEVICE from the enclosing function, with file:line and
 * the call's text; TRY passes an LK_E* code up. The enclosing function has
 * an `lk_err *err`. */
#ifndef LEANK_CUDA_CHECK_H
#define LEANK_CUDA_CHECK_H

#include <cublas_v2.h>
#include <cuda_runtime.h>

extern "C" {
#include "util.h"
}

#define CU(call)                                                                                 \
    do {                                                                                         \
        cudaError_t e_ = (call);                                                                 \
        if (e_ != cudaSuccess)                                                                   \
            return lk_seterr(err, LK_EDEVICE, "%s:%d: %s: %s", __FILE__, __LINE__, #call,        \
                             cudaGetErrorString(e_));                                            \
    } while (0)
/* launchers returning 0 or a cudaError_t value */
#define KR(call) CU((cudaError_t)(call))
#define BL(call)                                                                                 \
    do {                                                                                         \
        cublasStatus_t s_ = (call);                                                              \
        if (s_ != CUBLAS_STATUS_SUCCESS)                                                         \
            return lk_seterr(err, LK_EDEVICE, "%s:%d: %s: %s", __FILE__, __LINE__, #call,        \
                             cublasGetStatusString(s_));                                         \
    } while (0)
#define TRY(x)                                                                                   \
    do {                                                                                         \
        int rc_ = (x);                                                                           \
        if (rc_) return rc_;                                                                     \
    } while (0)

#endif
