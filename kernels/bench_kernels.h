/* bench_kernels.h - benchmarks of the attention kernels (bench_kernels.cu),
 * the bodies of `leank-bench kernel` and `leank-bench attention` (built with
 * CUDA only). As bench.h's benchmarks: the command line (options, defaults,
 * --help) is cmd/leank-bench.c's; each takes its options struct, prints a
 * short table on stdout (json: one JSON object) and returns 0, or an LK_E*
 * code with err set (a bad shape LK_EUSAGE, no GPU or a CUDA failure
 * LK_EDEVICE).
 *
 *   kernel     decode attention of one layer, B 64 x 32 q / 8 kv heads x 32 768
 *              keys x hd 128, bf16: our dense kernel, our LeanK kernel with a
 *              mask (sink 128 + recent 1 024) per layer and averaged over the
 *              layers, and torch SDPA (cuDNN) dense when --sdpa names
 *              dev/bench/sdpa_decode.py.
 *   attention  our dense decode kernel vs SDPA cuDNN on the same shape, and
 *              causal prefill attention (B 1 x 32 768 x 32 heads x hd 128).
 * Times: CUDA events, median of --reps runs after warm-up, over caches
 * larger than L2; bytes are the fewest a kernel must read and write, and the
 * floor is bytes / 4.26 TB/s (the H200's measured copy bandwidth).
 *
 * A shape: batch, heads, kv_heads, head_dim, len and reps >= 1, heads a
 * multiple of kv_heads, kv_heads <= 64, head_dim in [8, 256]. */
#ifndef LEANK_BENCH_KERNELS_H
#define LEANK_BENCH_KERNELS_H

#ifdef __cplusplus
extern "C" {
#endif

#include "util.h"

/* decode attention of one layer: dense, LeanK per layer of a mask */
typedef struct {
    int batch, heads, kv_heads, head_dim; /* B sequences, H q heads, G kv heads, hd */
    int len;                              /* keys a sequence */
    int sink, recent;                     /* LeanK windows */
    const char *mask; /* LeanK mask (TSV); NULL: $LEANK_SHARED/data/masks/llama3.1-8b-instruct.tsv
                       * ($LEANK_SHARED unset: ../shared) */
    int layers;       /* mask layers timed (at most the mask's) */
    int reps;         /* timed runs, median kept */
    const char *sdpa; /* dev/bench/sdpa_decode.py: also torch SDPA (cuDNN), or NULL */
    int json;
    int ab; /* every decode form side by side a layer, outputs compared, layers again in reverse */
} lk_bench_kernel_opts;
int lk_bench_kernel(const lk_bench_kernel_opts *o, lk_err *err);

/* dense decode attention (vs SDPA), causal prefill attention */
typedef struct {
    int batch, heads, kv_heads, head_dim; /* decode: B sequences, H q heads, G kv heads, hd */
    int len;                              /* decode: keys a sequence */
    int prefill_len;                      /* causal prefill tokens (B 1, the same heads); 0: skip */
    int reps;                             /* timed runs, median kept (prefill: at most 7) */
    int sustain;                          /* then the default prefill form this many times back to back */
    const char *sdpa;                     /* dev/bench/sdpa_decode.py, or NULL */
    int json;
} lk_bench_attention_opts;
int lk_bench_attention(const lk_bench_attention_opts *o, lk_err *err);

#ifdef __cplusplus
}
#endif
#endif
