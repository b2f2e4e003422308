/* pdl.h (tried 2026-11-30, not kept: see kernels/NOTES-engine.md) - programmatic
 * dependent launch for the decode step's kernels: each instrumented kernel
 * starts with griddepcontrol.launch_dependents, then griddepcontrol.wait (the
 * GEMV issues its first weight loads between the two); launches go through
 * cudaLaunchKernelEx with cudaLaunchAttributeProgrammaticStreamSerialization
 * while the engine issues a decode step on an sm_90 device. */
#include <cuda_runtime.h>
__device__ __forceinline__ void pdl_trigger(void) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_wait(void) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_start(void) { pdl_trigger(); pdl_wait(); }
extern "C" int lk_cuda_pdl_enabled(void);
template <typename... P, typename... A>
static inline cudaError_t pdl_launch(void (*kernel)(P...), dim3 grid, dim3 block, size_t smem, cudaStream_t st,
                                     A... args) {
    cudaLaunchAttribute at[1];
    at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    at[0].val.programmaticStreamSerializationAllowed = 1;
    cudaLaunchConfig_t c = {};
    c.gridDim = grid, c.blockDim = block, c.dynamicSmemBytes = smem, c.stream = st;
    c.attrs = at, c.numAttrs = lk_cuda_pdl_enabled() ? 1 : 0;
    return cudaLaunchKernelEx(&c, kernel, args...);
}
