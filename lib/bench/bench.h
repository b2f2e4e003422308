/* bench.h - the benchmarks behind leank-bench's subcommands. The command
 * line (options, their defaults, --help) is cmd/leank-bench.c's: each
 * benchmark takes an options struct, prints a short table on stdout (JSON
 * with json set) and returns 0, or an LK_E* code with err set for the program
 * to report. A benchmark that ran but whose result is a failure (tokenize
 * --hf: ids differ from HF's) has said so in its table and returns LK_EFAIL
 * with err->code left 0.
 *
 * Adding one (e.g. `leank-bench train`): an lk_bench_NAME_opts struct and
 * int lk_bench_NAME(const lk_bench_NAME_opts *, lk_err *) here, the work in
 * lib/bench/bench_NAME.c, and in cmd/leank-bench.c its usage text, its
 * option parser filling the struct, and a line in the table of commands.
 * The benchmarks of the CUDA kernels (kernel, attention) are the same, in
 * kernels/bench_kernels.h and .cu (built with CUDA only). */
#ifndef LEANK_BENCH_H
#define LEANK_BENCH_H

#include "engine.h"
#include "util.h"

/* Paths left NULL come from the reference data directory DATA (data, else
 * lk_bench_data_dir's default). progress: forced on (else only when stderr is
 * a terminal). */

/* tokenizer encode speed (issue: foundation) */
typedef struct {
    const char *tokenizer; /* tokenizer.json or its directory (NULL: DATA/data/tokenizers/llama3) */
    const char *file;      /* UTF-8 text (NULL: DATA/data/tokenizers/vectors/pg-excerpt.txt) */
    const char *data;      /* --data DIR, or NULL */
    int repeat;            /* runs, the best reported */
    int hf;                /* also HF tokenizers (dev/bench/hf_tokenize.py), every id compared */
    int json, progress;
} lk_bench_tokenize_opts;
int lk_bench_tokenize(const lk_bench_tokenize_opts *o, lk_err *err);

/* CPU prefill / decode speed (issue: CPU engine) */
typedef struct {
    const char *model;      /* model directory (NULL: DATA/models/stories260K) */
    const char *data;       /* --data DIR, or NULL (only with model NULL) */
    const char *prompt_ids; /* prefill this file's ids on model, then n_tokens steps; NULL: greedy from BOS */
    int n_tokens;           /* decode steps on model */
    int prompt_len;         /* prefill length on the random model (0: skip) */
    int decode_steps;       /* decode steps after that prompt */
    int repeat;             /* runs of each measurement, best kept */
    int threads;            /* threads of the CPU engine */
    int json, progress;
} lk_bench_decode_opts;
int lk_bench_decode(const lk_bench_decode_opts *o, lk_err *err);

/* sample generation speed (issue: leank-prep) */
typedef struct {
    const char *tokenizer; /* NULL: DATA/data/tokenizers/llama3/tokenizer.json */
    const char *corpus;    /* NULL: DATA/data/paulgraham/PaulGrahamEssays.json */
    const char *words;     /* NULL: DATA/data/words */
    const char *data;      /* --data DIR, or NULL */
    const char *task;      /* leank-prep task */
    long n;                /* samples */
    long len;              /* tokens per sample */
    int json, progress;
} lk_bench_prep_opts;
int lk_bench_prep(const lk_bench_prep_opts *o, lk_err *err);

/* RULER accuracy, dense vs LeanK pruned cache */
#define LK_BENCH_MAX_MASKS 4
typedef struct {
    const char *model;   /* model directory */
    const char *samples; /* samples file (leank-prep, the model's tokenizer) */
    const char *masks[LK_BENCH_MAX_MASKS]; /* plans or masks, one column each */
    int n_masks;
    int sink, recent;    /* windows overriding the masks' (-1: theirs) */
    lk_device device;
    int batch;           /* samples answered together (0: 16 on the GPU, 1 on the CPU) */
    int max_tokens;      /* tokens to generate (0: the sample's answer length + 16) */
    long limit;          /* only the first samples (0: all) */
    int threads;         /* CPU: samples answered in parallel */
    const char *outputs; /* every sample's text and scores as JSON lines, or NULL */
    int json, progress;
} lk_bench_accuracy_opts;
int lk_bench_accuracy(const lk_bench_accuracy_opts *o, lk_err *err);

/* end-to-end generation speed and memory (GPU) */
typedef struct {
    const char *model;  /* model directory, or NULL with random */
    const char *random; /* a shape with random weights (llama3.1-8b, qwen2.5-1.5b), or NULL */
    const char *dtype;  /* weights of random: bf16 or f32 */
    const char *plan;   /* LeanK plan or mask, or NULL: dense */
    int sink, recent;   /* windows overriding the plan's (-1: its own) */
    int batch;          /* sequences */
    int max_batch;      /* as many sequences as fit instead */
    int prompt_len, gen; /* prompt tokens, tokens generated per sequence */
    lk_device device;
    double bandwidth;   /* copy bandwidth for the floor, GB/s */
    uint64_t seed;      /* prompt and weight seed */
    int runs;           /* the whole generation this many times: run 1 cold, the rest warm (0: 1) */
    int json;
} lk_bench_e2e_opts;
int lk_bench_e2e(const lk_bench_e2e_opts *o, lk_err *err);

/* leank-train step time and memory (GPU, or the CPU reference on a model directory) */
typedef struct {
    const char *model;  /* model directory, or NULL with random */
    const char *random; /* a shape with random weights made on the GPU, or NULL */
    const char *dtype;  /* weights of random: bf16 or f32 */
    int context, answer; /* tokens of each random sample */
    int steps;          /* timed steps (after one warm-up) */
    int sink, recent;   /* full-key windows */
    lk_device device;   /* LK_DEVICE_CUDA or LK_DEVICE_CPU */
    uint64_t seed;      /* sample and weight seed */
    int json;
} lk_bench_train_opts;
int lk_bench_train(const lk_bench_train_opts *o, lk_err *err);

/* Sort v (n times) and give its min, median (the mean of the middle two for
 * an even n) and max; all 0 when n < 1. */
void lk_bench_spread(double *v, int n, double *min, double *median, double *max);

/* The config of a known shape (llama3.1-8b, qwen2.5-1.5b) for random
 * weights; -1 for an unknown name. */
int lk_bench_shape(lk_config *c, const char *name);

/* The reference data directory (the project's ../shared: data/tokenizers,
 * data/paulgraham, data/words, models/stories260K): `opt` (--data DIR) if
 * given, else $LEANK_DATA, else $LEANK_SHARED, else ../shared, into *dir (a
 * heap string). When it is not a directory: LK_EIO, one line naming the
 * directory, what comes from it (needs), how to say where it is, and the
 * alternative (alt). */
int lk_bench_data_dir(const char *opt, const char *bench, const char *needs, const char *alt, char **dir,
                      lk_err *err);

#endif
