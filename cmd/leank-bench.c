/* leank-bench - benchmarks: kernels, end-to-end speed and memory, accuracy.
 * One subcommand per benchmark; the work lives in lib/bench_*.c. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#ifdef LEANK_CUDA
#include "bench_kernels.h" /* kernel, attention: the CUDA kernels (kernels/bench_kernels.cu) */
#endif
#include "util.h"

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *what;
} benches[] = {
    {"tokenize", lk_bench_tokenize, "tokenizer encode speed (vs HF tokenizers with --hf)"},
    {"decode", lk_bench_decode, "CPU engine prefill and decode speed"},
    {"prep", lk_bench_prep, "leank-prep sample generation speed"},
    {"accuracy", lk_bench_accuracy, "RULER accuracy of a model on samples, dense vs LeanK pruned cache"},
#ifdef LEANK_CUDA
    {"kernel", lk_bench_kernel, "decode attention kernels: dense, LeanK per layer, torch SDPA (GPU)"},
    {"attention", lk_bench_attention, "dense decode attention vs torch SDPA, causal prefill attention (GPU)"},
#endif
    {"e2e", lk_bench_e2e, "end-to-end generation speed and memory on the GPU, dense vs LeanK"},
    {"train", lk_bench_train, "leank-train step time and memory (stage 1, random samples)"},
};
#define N_BENCH (int)(sizeof benches / sizeof benches[0])

static void usage(FILE *f) {
    fprintf(f, "usage: leank-bench COMMAND [OPTION]...\n"
               "Benchmarks; each prints a short table (--json for machine-readable output).\n\n"
               "commands:\n");
    for (int i = 0; i < N_BENCH; i++) fprintf(f, "  %-10s %s\n", benches[i].name, benches[i].what);
    fprintf(f, "\n  -h, --help     show this help (COMMAND --help: that command's)\n"
               "  -V, --version  show the version and exit\n");
}

int main(int argc, char **argv) {
    lk_progname = "leank-bench";
    atexit(lk_close_stdout); /* a write error on stdout is an error */
    lk_install_cleanup(); /* a killed run leaves no temporary output file */
    if (argc < 2) {
        usage(stderr);
        return LK_EUSAGE;
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "-V") || !strcmp(argv[1], "--version")) {
        lk_print_version(stdout);
        return 0;
    }
    for (int i = 0; i < N_BENCH; i++)
        if (!strcmp(argv[1], benches[i].name)) {
            return benches[i].fn(argc - 1, argv + 1);
        }
    lk_die(LK_EUSAGE, "unknown command '%s' (see --help)", argv[1]);
}
