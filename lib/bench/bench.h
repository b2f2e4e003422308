/* bench.h - the benchmarks behind leank-bench's subcommands. Each takes the
 * subcommand's own argc/argv (argv[0] = subcommand name) and returns an exit
 * status. They print a short table on stdout, and JSON with --json. */
#ifndef LEANK_BENCH_H
#define LEANK_BENCH_H

#include "config.h"

int lk_bench_tokenize(int argc, char **argv); /* tokenizer encode speed (issue: foundation) */
int lk_bench_decode(int argc, char **argv);   /* CPU prefill / decode speed (issue: CPU engine) */
int lk_bench_prep(int argc, char **argv);     /* sample generation speed (issue: leank-prep) */
int lk_bench_accuracy(int argc, char **argv); /* RULER accuracy, dense vs LeanK pruned cache */
int lk_bench_e2e(int argc, char **argv);      /* end-to-end generation speed and memory (GPU) */
int lk_bench_train(int argc, char **argv);    /* leank-train step time and memory (GPU) */

/* The config of a known shape (llama3.1-8b, qwen2.5-1.5b) for random
 * weights; -1 for an unknown name. */
int lk_bench_shape(lk_config *c, const char *name);

/* The reference data directory (the project's ../shared: data/tokenizers,
 * data/paulgraham, data/words, models/stories260K): `opt` (--data DIR) if
 * given, else $LEANK_DATA, else $LEANK_SHARED, else ../shared. Exits
 * (LK_EIO) with one line naming the directory, what comes from it (needs),
 * how to say where it is, and the alternative (alt) when it is not a
 * directory. Returns a heap string. */
char *lk_bench_data_dir(const char *opt, const char *bench, const char *needs, const char *alt);

#endif
