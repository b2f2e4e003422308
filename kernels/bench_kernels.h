/* bench_kernels.h - benchmarks of the attention kernels (bench_kernels.cu),
 * the bodies of `leank-bench kernel` and `leank-bench attention`. Each takes
 * the subcommand's argc/argv (argv[0] = its name), prints a short table on
 * stdout (--json: one JSON object) and returns an exit status.
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
 * floor is bytes / 4.26 TB/s (the H200's measured copy bandwidth). */
#ifndef LEANK_BENCH_KERNELS_H
#define LEANK_BENCH_KERNELS_H

#ifdef __cplusplus
extern "C" {
#endif

int lk_bench_kernel(int argc, char **argv);
int lk_bench_attention(int argc, char **argv);

#ifdef __cplusplus
}
#endif
#endif
