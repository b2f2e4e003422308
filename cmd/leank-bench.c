/* leank-bench - benchmarks: kernels, end-to-end speed and memory, accuracy.
 * One subcommand per benchmark. This file is each one's command line: its
 * --help, its options (parsed into the benchmark's options struct, bench.h,
 * or bench_kernels.h for the CUDA kernels) and their defaults; the work lives
 * in lib/bench/bench_*.c (kernel, attention: kernels/bench_kernels.cu). A
 * subcommand is a usage_NAME, a cmd_NAME that parses and calls lk_bench_NAME,
 * and a line in `benches`. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#ifdef LEANK_CUDA
#include "bench_kernels.h" /* kernel, attention: the CUDA kernels (kernels/bench_kernels.cu) */
#endif
#include "cli.h"

/* A benchmark's result: its error said on stderr (exit status rc), or, with
 * err empty, a failure its table already shows. */
static int finish(int rc, const lk_err *err) {
    if (rc && err->code) lk_fail(err);
    return rc;
}

/* ---- tokenize ---- */
static void usage_tokenize(FILE *f) {
    fprintf(f, "usage: leank-bench tokenize [-t TOKENIZER] [--file F] [--repeat N] [--hf] [--json]\n"
               "Encode F (no special tokens) with TOKENIZER, best of N runs, one thread.\n\n"
               "  -t, --tokenizer PATH  tokenizer.json or its directory\n"
               "                        (default DATA/data/tokenizers/llama3)\n"
               "      --file F          UTF-8 text (default DATA/data/tokenizers/vectors/pg-excerpt.txt)\n"
               "      --data DIR        reference data directory DATA (default $LEANK_DATA, else ../shared)\n"
               "      --repeat N        runs; the best is reported (default 5)\n"
               "      --hf              also run HF tokenizers (python3 dev/bench/hf_tokenize.py,\n"
               "                        and compare every id: exit 1 if any differs;\n"
               "                        $LEANK_HF_SCRIPT overrides) with RAYON_NUM_THREADS=1\n"
               "      --json            one JSON object on stdout\n"
               "      --progress        a line per phase on stderr even when it is not a terminal\n"
               "  -h, --help            this help\n");
}

static int cmd_tokenize(int argc, char **argv) {
    enum { O_FILE = 256, O_HF, O_JSON, O_DATA, O_PROGRESS, O_REPEAT };
    static const struct option opts[] = {{"tokenizer", required_argument, 0, 't'},
                                         {"file", required_argument, 0, O_FILE},
                                         {"repeat", required_argument, 0, O_REPEAT},
                                         {"data", required_argument, 0, O_DATA},
                                         {"progress", no_argument, 0, O_PROGRESS},
                                         {"hf", no_argument, 0, O_HF},
                                         {"json", no_argument, 0, O_JSON},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    lk_bench_tokenize_opts o = {.repeat = 5};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "t:h", opts, NULL)) != -1) {
        switch (c) {
        case 't': o.tokenizer = optarg; break;
        case O_FILE: o.file = optarg; break;
        case O_DATA: o.data = optarg; break;
        case O_PROGRESS: o.progress = 1; break;
        case O_REPEAT: o.repeat = (int)lk_parse_long("--repeat", optarg, 1, 1000); break;
        case O_HF: o.hf = 1; break;
        case O_JSON: o.json = 1; break;
        case 'h': usage_tokenize(stdout); return 0;
        default: usage_tokenize(stderr); return LK_EUSAGE;
        }
    }
    if (optind < argc) lk_die(LK_EUSAGE, "tokenize: unexpected argument '%s' (see --help)", argv[optind]);
    lk_err err = {0};
    return finish(lk_bench_tokenize(&o, &err), &err);
}

/* ---- decode ---- */
static void usage_decode(FILE *f) {
    fprintf(f,
            "usage: leank-bench decode [OPTION]...\n"
            "CPU engine speed: greedy decode of stories260K, prefill of a long prompt on a\n"
            "random Llama-3-head-shaped model (head_dim 128, GQA 4:1, 4 layers of dim 1024).\n\n"
            "  -m, --model DIR     stories260K directory (default DATA/models/stories260K)\n"
            "      --data DIR      reference data directory (default $LEANK_DATA, else ../shared)\n"
            "      --tokens N      decode steps on stories260K (default 511; context 512)\n"
            "      --prompt-ids FILE  instead: prefill FILE's token ids (whitespace separated)\n"
            "                      on the -m model in one call, then -n greedy steps\n"
            "      --prompt-len N  prefill length on the random model (default 2048; 0 = skip)\n"
            "      --decode-steps N  decode steps after that prompt (default 32)\n"
            "      --repeat N      runs of each measurement, best kept (default 3)\n"
            "  -j, --threads N     threads of the CPU engine (default 1)\n"
            "      --json          JSON instead of the table\n"
            "      --progress      a line per measurement on stderr even when it is not a terminal\n"
            "  -h, --help          show this help and exit\n");
}

static int cmd_decode(int argc, char **argv) {
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'},  {"tokens", required_argument, 0, 'n'},
        {"prompt-len", required_argument, 0, 'P'}, {"decode-steps", required_argument, 0, 'D'},
        {"repeat", required_argument, 0, 'r'}, {"threads", required_argument, 0, 'j'},
        {"json", no_argument, 0, 'J'},         {"help", no_argument, 0, 'h'},
        {"data", required_argument, 0, 'd'},   {"progress", no_argument, 0, 'G'},
        {"prompt-ids", required_argument, 0, 'I'},
        {0, 0, 0, 0}};
    lk_bench_decode_opts o = {.n_tokens = 511, .prompt_len = 2048, .decode_steps = 32, .repeat = 3, .threads = 1};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "m:j:h", opts, NULL)) != -1) {
        switch (c) {
        case 'm': o.model = optarg; break;
        case 'n': o.n_tokens = (int)lk_parse_long("--tokens", optarg, 1, 1 << 20); break;
        case 'P': o.prompt_len = (int)lk_parse_long("--prompt-len", optarg, 0, 1 << 20); break;
        case 'D': o.decode_steps = (int)lk_parse_long("--decode-steps", optarg, 0, 1 << 20); break;
        case 'r': o.repeat = (int)lk_parse_long("--repeat", optarg, 1, 1000); break;
        case 'j': o.threads = (int)lk_parse_long("--threads", optarg, 1, 1024); break;
        case 'J': o.json = 1; break;
        case 'd': o.data = optarg; break;
        case 'G': o.progress = 1; break;
        case 'I': o.prompt_ids = optarg; break;
        case 'h': usage_decode(stdout); return 0;
        default: usage_decode(stderr); return LK_EUSAGE;
        }
    }
    if (optind < argc) lk_die(LK_EUSAGE, "decode: unexpected argument '%s'", argv[optind]);
    if (o.model && o.data) lk_die(LK_EUSAGE, "decode: --data is where the default model lives; -m %s was given", o.model);
    lk_err err = {0};
    return finish(lk_bench_decode(&o, &err), &err);
}

/* ---- prep ---- */
static void usage_prep(FILE *f) {
    fprintf(f,
            "usage: leank-bench prep [OPTION]...\n"
            "Times leank-prep's generation of N samples of LEN tokens, one thread, written (zstd\n"
            "included) to /dev/null. The defaults come from the reference data directory DATA.\n\n"
            "  -t, --tokenizer PATH  tokenizer.json or its directory (default DATA/data/tokenizers/llama3)\n"
            "      --corpus FILE     haystack corpus (default DATA/data/paulgraham/PaulGrahamEssays.json)\n"
            "  -w, --words PATH      word lists (default DATA/data/words)\n"
            "      --data DIR        reference data directory DATA (default $LEANK_DATA, else ../shared)\n"
            "  -T, --task NAME       task (default train; see leank-prep --list-tasks)\n"
            "  -n, --samples N       samples (default 200)\n"
            "  -l, --length LEN      tokens per sample (default 32768)\n"
            "      --json            one JSON object instead of the table\n"
            "      --progress        progress on stderr even when it is not a terminal\n"
            "  -h, --help            show this help and exit\n");
}

static int cmd_prep(int argc, char **argv) {
    static const struct option opts[] = {{"tokenizer", required_argument, 0, 't'}, {"corpus", required_argument, 0, 'c'},
                                         {"words", required_argument, 0, 'w'},     {"task", required_argument, 0, 'T'},
                                         {"samples", required_argument, 0, 'n'},   {"length", required_argument, 0, 'l'},
                                         {"json", no_argument, 0, 'J'},            {"help", no_argument, 0, 'h'},
                                         {"data", required_argument, 0, 'd'},      {"progress", no_argument, 0, 'G'},
                                         {0, 0, 0, 0}};
    lk_bench_prep_opts o = {.task = "train", .n = 200, .len = 32768};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "t:w:T:n:l:h", opts, NULL)) != -1) {
        switch (c) {
        case 't': o.tokenizer = optarg; break;
        case 'c': o.corpus = optarg; break;
        case 'w': o.words = optarg; break;
        case 'd': o.data = optarg; break;
        case 'G': o.progress = 1; break;
        case 'T': o.task = optarg; break;
        case 'n': o.n = lk_parse_long("--samples", optarg, 1, 1000000); break;
        case 'l': o.len = lk_parse_long("--length", optarg, 64, 1 << 24); break;
        case 'J': o.json = 1; break;
        case 'h': usage_prep(stdout); return 0;
        default: usage_prep(stderr); return LK_EUSAGE;
        }
    }
    if (optind < argc) lk_die(LK_EUSAGE, "prep: unexpected argument '%s' (see --help)", argv[optind]);
    lk_err err = {0};
    return finish(lk_bench_prep(&o, &err), &err);
}

/* ---- accuracy ---- */
static void usage_accuracy(FILE *f) {
    fprintf(f,
            "usage: leank-bench accuracy -m MODEL_DIR SAMPLES [--mask MASK [--sink N] [--recent N]] [OPTION]...\n"
            "Greedy generation on every sample of SAMPLES (a leank-prep file made with the model's\n"
            "tokenizer), scored as RULER does (string_match_all: the share of reference strings found,\n"
            "case-insensitive), dense and, with --mask, with the LeanK pruned cache, side by side.\n\n"
            "  -m, --model DIR      model directory\n"
            "      --device D       cuda, cpu or auto (default auto: cuda when built with it and a GPU is present)\n"
            "  -k, --mask FILE      LeanK plan (leank-pack) or mask (leank-binarize): also answer with that\n"
            "                       pruned cache (up to 4 --mask, one column each); --plan is the same\n"
            "      --sink N         first N tokens keep every channel (default: the plan's, or the mask's\n"
            "                       training window; else 128)\n"
            "      --recent N       N most recent tokens keep every channel (default: likewise; else 1024)\n"
            "  -b, --batch N        samples answered together (default 16 on the GPU, 1 on the CPU)\n"
            "      --max-tokens N   tokens to generate (default: the sample's answer length + 16)\n"
            "      --limit N        only the first N samples\n"
            "  -j, --threads N      CPU: samples answered in parallel (default 1; OpenBLAS runs single-threaded)\n"
            "  -o, --outputs FILE   every sample's generated text and scores, as JSON lines\n"
            "      --json           the table as JSON\n"
            "      --progress       progress on stderr even when it is not a terminal\n"
            "  -h, --help           show this help\n");
}

static int cmd_accuracy(int argc, char **argv) {
    enum { O_MAXTOK = 256, O_SINK, O_RECENT, O_LIMIT, O_JSON, O_PROGRESS, O_DEVICE };
    static const struct option opts[] = {{"model", required_argument, 0, 'm'},     {"mask", required_argument, 0, 'k'},
                                         {"plan", required_argument, 0, 'k'},       {"device", required_argument, 0, O_DEVICE},
                                         {"batch", required_argument, 0, 'b'},
                                         {"sink", required_argument, 0, O_SINK},    {"recent", required_argument, 0, O_RECENT},
                                         {"max-tokens", required_argument, 0, O_MAXTOK}, {"limit", required_argument, 0, O_LIMIT},
                                         {"threads", required_argument, 0, 'j'},    {"outputs", required_argument, 0, 'o'},
                                         {"json", no_argument, 0, O_JSON},          {"progress", no_argument, 0, O_PROGRESS},
                                         {"help", no_argument, 0, 'h'},             {0, 0, 0, 0}};
    lk_bench_accuracy_opts o = {.sink = -1, .recent = -1, .device = LK_DEVICE_AUTO, .threads = 1};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "m:n:k:j:o:b:h", opts, NULL)) != -1) {
        switch (c) {
        case 'm': o.model = optarg; break;
        case 'k':
            if (o.n_masks == LK_BENCH_MAX_MASKS) lk_die(LK_EUSAGE, "accuracy: at most %d --mask", LK_BENCH_MAX_MASKS);
            o.masks[o.n_masks++] = optarg;
            break;
        case O_SINK: o.sink = (int)lk_parse_long("--sink", optarg, 0, 1 << 30); break;
        case O_RECENT: o.recent = (int)lk_parse_long("--recent", optarg, 1, 1 << 30); break;
        case 'b': o.batch = (int)lk_parse_long("--batch", optarg, 1, 4096); break;
        case O_DEVICE: {
            int d = lk_device_parse(optarg);
            if (d < 0) lk_die(LK_EUSAGE, "accuracy: --device '%s' (expected cuda, cpu or auto)", optarg);
            o.device = (lk_device)d;
            break;
        }
        case 'n':
            lk_die(LK_EUSAGE, "accuracy: -n counts samples across leank (see leank(7)): the tokens to generate are "
                   "--max-tokens %s, the samples taken --limit %s", optarg, optarg);
        case O_MAXTOK: o.max_tokens = (int)lk_parse_long("--max-tokens", optarg, 1, 1 << 20); break;
        case O_LIMIT: o.limit = lk_parse_long("--limit", optarg, 1, 1L << 40); break;
        case 'j': o.threads = (int)lk_parse_long("--threads", optarg, 1, 1024); break;
        case 'o': o.outputs = optarg; break;
        case O_JSON: o.json = 1; break;
        case O_PROGRESS: o.progress = 1; break;
        case 'h': usage_accuracy(stdout); return 0;
        default: usage_accuracy(stderr); return LK_EUSAGE;
        }
    }
    if (!o.model) lk_die(LK_EUSAGE, "accuracy: no model: give -m MODEL_DIR (see --help)");
    if (optind + 1 != argc) lk_die(LK_EUSAGE, "accuracy: expected one SAMPLES file (see --help)");
    if ((o.sink >= 0 || o.recent >= 0) && !o.n_masks) lk_die(LK_EUSAGE, "accuracy: --sink/--recent need --mask");
    o.samples = argv[optind];
    lk_err err = {0};
    if (o.outputs && lk_out_check(o.outputs, &err)) lk_fail(&err); /* before the model is loaded */
    return finish(lk_bench_accuracy(&o, &err), &err);
}

#ifdef LEANK_CUDA
/* ---- kernel, attention (the CUDA kernels; built with CUDA only) ----
 * One set of options for both, as ever: each takes what it uses (the help
 * says which) and accepts the rest. */
static const char kernel_what[] = "Decode attention of one layer: dense, LeanK with a mask (per layer and averaged),\n"
                                  "and torch SDPA cuDNN dense (--sdpa).";
static const char attention_what[] = "Our dense decode attention vs torch SDPA cuDNN (--sdpa), and causal prefill\n"
                                     "attention (B 1 x --prefill-len x --heads x --head-dim).";

static void usage_kernels(FILE *f, const char *name, const char *what) {
    fprintf(f, "usage: leank-bench %s [OPTION]...\n%s\n\n"
               "  -b, --batch N      sequences (default 64)\n"
               "      --heads N      query heads (default 32)\n"
               "      --kv-heads N   kv heads (default 8)\n"
               "      --head-dim N   (default 128)\n"
               "  -n, --len N        keys a sequence (default 32768)\n"
               "      --sink N, --recent N  LeanK windows (default 128, 1024)\n"
               "  -m, --mask FILE    LeanK mask (kernel; default $LEANK_SHARED/data/masks/llama3.1-8b-instruct.tsv)\n"
               "      --layers N     mask layers timed (kernel; default 32)\n"
               "      --prefill-len N  causal prefill length (attention; default 32768, 0 = skip)\n"
               "      --reps N       timed runs, median kept (default 20)\n"
               "      --sustain N    (attention) then the default prefill form N times back to back, one\n"
               "                     time over all: its pace once the GPU's power cap acts (default 0)\n"
               "      --sdpa SCRIPT  also time torch SDPA (cuDNN) with dev/bench/sdpa_decode.py\n"
               "      --json         JSON instead of the table\n"
               "      --ab           (kernel) every decode form side by side a layer, outputs compared,\n"
               "                     and the layers again in reverse order\n",
            name, what);
}

static const lk_bench_kernel_opts kernel_defaults = {.batch = 64, .heads = 32, .kv_heads = 8, .head_dim = 128,
                                                     .len = 32768, .sink = 128, .recent = 1024, .layers = 32,
                                                     .reps = 20};

/* kernel's or attention's options (argv[0]: which) into *k, *prefill_len and *sustain:
 * -1 to go on, else the exit status (--help: 0; a bad option: getopt's line,
 * LK_EUSAGE). The shape's consistency is the benchmark's to check. */
static int parse_kernels(int argc, char **argv, const char *what, lk_bench_kernel_opts *k, int *prefill_len,
                         int *sustain) {
    enum { O_HEADS = 256, O_KV_HEADS, O_HEAD_DIM, O_SINK, O_RECENT, O_REPS, O_LAYERS, O_SDPA, O_PREFILL, O_JSON, O_AB,
           O_SUSTAIN };
    static const struct option opts[] = {
        {"batch", required_argument, 0, 'b'},         {"heads", required_argument, 0, O_HEADS},
        {"kv-heads", required_argument, 0, O_KV_HEADS}, {"head-dim", required_argument, 0, O_HEAD_DIM},
        {"len", required_argument, 0, 'n'},           {"sink", required_argument, 0, O_SINK},
        {"recent", required_argument, 0, O_RECENT},   {"reps", required_argument, 0, O_REPS},
        {"layers", required_argument, 0, O_LAYERS},   {"mask", required_argument, 0, 'm'},
        {"sdpa", required_argument, 0, O_SDPA},       {"prefill-len", required_argument, 0, O_PREFILL},
        {"json", no_argument, 0, O_JSON},             {"help", no_argument, 0, 'h'},
        {"ab", no_argument, 0, O_AB},                 {"sustain", required_argument, 0, O_SUSTAIN},
        {0, 0, 0, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "b:n:m:h", opts, NULL)) != -1) {
        switch (c) {
        case 'b': k->batch = (int)lk_parse_long("--batch", optarg, 1, 1 << 20); break;
        case O_HEADS: k->heads = (int)lk_parse_long("--heads", optarg, 1, 1 << 16); break;
        case O_KV_HEADS: k->kv_heads = (int)lk_parse_long("--kv-heads", optarg, 1, 64); break;
        case O_HEAD_DIM: k->head_dim = (int)lk_parse_long("--head-dim", optarg, 8, 256); break;
        case 'n': k->len = (int)lk_parse_long("--len", optarg, 1, 1 << 30); break;
        case O_SINK: k->sink = (int)lk_parse_long("--sink", optarg, 0, 1 << 30); break;
        case O_RECENT: k->recent = (int)lk_parse_long("--recent", optarg, 0, 1 << 30); break;
        case O_REPS: k->reps = (int)lk_parse_long("--reps", optarg, 1, 100000); break;
        case O_LAYERS: k->layers = (int)lk_parse_long("--layers", optarg, 1, 1 << 16); break;
        case 'm': k->mask = optarg; break;
        case O_SDPA: k->sdpa = optarg; break;
        case O_PREFILL: *prefill_len = (int)lk_parse_long("--prefill-len", optarg, 0, 1 << 30); break;
        case O_JSON: k->json = 1; break;
        case O_AB: k->ab = 1; break;
        case O_SUSTAIN: *sustain = (int)lk_parse_long("--sustain", optarg, 0, 1000000); break;
        case 'h': usage_kernels(stdout, argv[0], what); return 0;
        default: return LK_EUSAGE;
        }
    }
    if (optind < argc) lk_die(LK_EUSAGE, "%s: unexpected argument '%s' (see --help)", argv[0], argv[optind]);
    return -1;
}

static int cmd_kernel(int argc, char **argv) {
    lk_bench_kernel_opts o = kernel_defaults;
    int prefill_len = 32768, sustain = 0; /* attention's, accepted */
    int rc = parse_kernels(argc, argv, kernel_what, &o, &prefill_len, &sustain);
    if (rc >= 0) return rc;
    lk_err err = {0};
    return finish(lk_bench_kernel(&o, &err), &err);
}

static int cmd_attention(int argc, char **argv) {
    lk_bench_kernel_opts k = kernel_defaults; /* --sink, --recent, --mask, --layers, --ab: kernel's, accepted */
    lk_bench_attention_opts o = {.prefill_len = 32768};
    int rc = parse_kernels(argc, argv, attention_what, &k, &o.prefill_len, &o.sustain);
    if (rc >= 0) return rc;
    o.batch = k.batch, o.heads = k.heads, o.kv_heads = k.kv_heads, o.head_dim = k.head_dim, o.len = k.len;
    o.reps = k.reps, o.sdpa = k.sdpa, o.json = k.json;
    lk_err err = {0};
    return finish(lk_bench_attention(&o, &err), &err);
}
#endif

/* ---- e2e ---- */
static void usage_e2e(FILE *f) {
    fprintf(f,
            "usage: leank-bench e2e (-m MODEL_DIR | --random SHAPE) [-b B | --max-batch] -p P -g G [OPTION]...\n"
            "End-to-end generation on the GPU: B random prompts of P tokens prefilled, then G - 1\n"
            "batched greedy decode steps; dense, or with the LeanK cache of --plan.\n\n"
            "  -m, --model DIR      model directory\n"
            "      --random SHAPE   random weights made on the GPU: llama3.1-8b, qwen2.5-1.5b\n"
            "      --dtype T        weights of --random: bf16 (default) or f32\n"
            "      --plan FILE      LeanK plan or mask (windows: the plan's, or --sink/--recent)\n"
            "      --sink N, --recent N  override the plan's windows\n"
            "  -b, --batch B        sequences (default 1)\n"
            "      --max-batch      as many sequences as fit (the engine's count before allocating)\n"
            "  -p, --prompt-len P   prompt tokens (default 4096)\n"
            "  -g, --gen G          tokens generated per sequence (default 128)\n"
            "      --device D       cuda (default), cpu\n"
            "      --bandwidth GBS  copy bandwidth for the floor, GB/s (default 4260, the lent H200's)\n"
            "      --seed N         prompt and weight seed (default 1)\n"
            "      --runs N         generate N times in one process: run 1 cold, runs 2..N warm\n"
            "                       (their median, min and max; default 1)\n"
            "      --json           one JSON object\n"
            "  -h, --help           show this help\n");
}

static int cmd_e2e(int argc, char **argv) {
    enum { O_RANDOM = 256, O_DTYPE, O_PLAN, O_SINK, O_RECENT, O_MAXB, O_DEVICE, O_BW, O_SEED, O_RUNS, O_JSON };
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'},   {"random", required_argument, 0, O_RANDOM},
        {"dtype", required_argument, 0, O_DTYPE}, {"plan", required_argument, 0, O_PLAN},
        {"mask", required_argument, 0, O_PLAN}, {"sink", required_argument, 0, O_SINK},
        {"recent", required_argument, 0, O_RECENT}, {"batch", required_argument, 0, 'b'},
        {"max-batch", no_argument, 0, O_MAXB},  {"prompt-len", required_argument, 0, 'p'},
        {"gen", required_argument, 0, 'g'},     {"device", required_argument, 0, O_DEVICE},
        {"bandwidth", required_argument, 0, O_BW}, {"seed", required_argument, 0, O_SEED},
        {"runs", required_argument, 0, O_RUNS}, {"json", no_argument, 0, O_JSON},
        {"help", no_argument, 0, 'h'},          {0, 0, 0, 0}};
    lk_bench_e2e_opts o = {.dtype = "bf16", .sink = -1, .recent = -1, .batch = 1, .prompt_len = 4096, .gen = 128,
                           .device = LK_DEVICE_CUDA, .bandwidth = 4260, .seed = 1};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "m:b:p:g:h", opts, NULL)) != -1) {
        switch (c) {
        case 'm': o.model = optarg; break;
        case O_RANDOM: o.random = optarg; break;
        case O_DTYPE: o.dtype = optarg; break;
        case O_PLAN: o.plan = optarg; break;
        case O_SINK: o.sink = (int)lk_parse_long("--sink", optarg, 0, 1 << 30); break;
        case O_RECENT: o.recent = (int)lk_parse_long("--recent", optarg, 1, 1 << 30); break;
        case 'b': o.batch = (int)lk_parse_long("--batch", optarg, 1, 1 << 20); break;
        case O_MAXB: o.max_batch = 1; break;
        case 'p': o.prompt_len = (int)lk_parse_long("--prompt-len", optarg, 1, 1 << 24); break;
        case 'g': o.gen = (int)lk_parse_long("--gen", optarg, 1, 1 << 20); break;
        case O_DEVICE: {
            int d = lk_device_parse(optarg);
            if (d < 0) lk_die(LK_EUSAGE, "e2e: --device '%s' (expected cuda, cpu or auto)", optarg);
            o.device = (lk_device)d;
            break;
        }
        case O_BW: o.bandwidth = lk_parse_double("--bandwidth", optarg, 1, 1e6); break;
        case O_SEED: o.seed = (uint64_t)lk_parse_long("--seed", optarg, 0, INT64_MAX); break;
        case O_RUNS: o.runs = (int)lk_parse_long("--runs", optarg, 1, 1000); break;
        case O_JSON: o.json = 1; break;
        case 'h': usage_e2e(stdout); return 0;
        default: usage_e2e(stderr); return LK_EUSAGE;
        }
    }
    if (optind < argc) lk_die(LK_EUSAGE, "e2e: unexpected argument '%s' (see --help)", argv[optind]);
    if (!o.model == !o.random) lk_die(LK_EUSAGE, "e2e: give one of -m MODEL_DIR or --random SHAPE (see --help)");
    if ((o.sink >= 0 || o.recent >= 0) && !o.plan) lk_die(LK_EUSAGE, "e2e: --sink/--recent need --plan");
    lk_err err = {0};
    return finish(lk_bench_e2e(&o, &err), &err);
}

static void usage_train(FILE *f) {
    fprintf(f,
            "usage: leank-bench train (-m MODEL_DIR | --random SHAPE) [-c C] [-a A] [OPTION]...\n"
            "Time and memory of leank-train steps (stage 1) on random samples of C context and A\n"
            "answer tokens: one warm-up step, then N timed.\n\n"
            "  -m, --model DIR      model directory\n"
            "      --random SHAPE   random weights made on the GPU: llama3.1-8b, qwen2.5-1.5b\n"
            "      --dtype T        weights of --random: bf16 (default) or f32\n"
            "  -c, --context C      context tokens (default 32768)\n"
            "  -a, --answer A       answer tokens (default 32)\n"
            "  -n, --steps N        timed steps (default 5)\n"
            "      --sink N         full-key sink (default 128)\n"
            "      --recent N       full-key recent window (default 1024)\n"
            "      --device D       cuda (default) or cpu (a model directory only)\n"
            "      --seed N         sample and weight seed (default 1)\n"
            "      --json           one JSON object\n"
            "  -h, --help           show this help\n");
}

static int cmd_train(int argc, char **argv) {
    enum { O_RANDOM = 256, O_DTYPE, O_SINK, O_RECENT, O_DEVICE, O_SEED, O_JSON };
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'},   {"random", required_argument, 0, O_RANDOM},
        {"dtype", required_argument, 0, O_DTYPE}, {"context", required_argument, 0, 'c'},
        {"answer", required_argument, 0, 'a'},  {"steps", required_argument, 0, 'n'},
        {"sink", required_argument, 0, O_SINK}, {"recent", required_argument, 0, O_RECENT},
        {"device", required_argument, 0, O_DEVICE}, {"seed", required_argument, 0, O_SEED},
        {"json", no_argument, 0, O_JSON},       {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    lk_bench_train_opts o = {.dtype = "bf16", .context = 32768, .answer = 32, .steps = 5, .sink = 128,
                             .recent = 1024, .device = LK_DEVICE_CUDA, .seed = 1};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "m:c:a:n:h", opts, NULL)) != -1) {
        switch (c) {
        case 'm': o.model = optarg; break;
        case O_RANDOM: o.random = optarg; break;
        case O_DTYPE: o.dtype = optarg; break;
        case 'c': o.context = (int)lk_parse_long("--context", optarg, 1, 1 << 24); break;
        case 'a': o.answer = (int)lk_parse_long("--answer", optarg, 1, 1 << 16); break;
        case 'n': o.steps = (int)lk_parse_long("--steps", optarg, 1, 100000); break;
        case O_SINK: o.sink = (int)lk_parse_long("--sink", optarg, 0, 1 << 30); break;
        case O_RECENT: o.recent = (int)lk_parse_long("--recent", optarg, 1, 1 << 30); break;
        case O_DEVICE: {
            int d = lk_device_parse(optarg);
            if (d < 0) lk_die(LK_EUSAGE, "train: --device '%s' (expected cuda, cpu or auto)", optarg);
            o.device = d == LK_DEVICE_AUTO ? (lk_cuda_available() ? LK_DEVICE_CUDA : LK_DEVICE_CPU) : (lk_device)d;
            break;
        }
        case O_SEED: o.seed = (uint64_t)lk_parse_long("--seed", optarg, 0, INT64_MAX); break;
        case O_JSON: o.json = 1; break;
        case 'h': usage_train(stdout); return 0;
        default: usage_train(stderr); return LK_EUSAGE;
        }
    }
    if (optind < argc) lk_die(LK_EUSAGE, "train: unexpected argument '%s' (see --help)", argv[optind]);
    if (!o.model == !o.random) lk_die(LK_EUSAGE, "train: give one of -m MODEL_DIR or --random SHAPE (see --help)");
    if (o.random && o.device == LK_DEVICE_CPU)
        lk_die(LK_EUSAGE, "train: --random makes its weights on the GPU (--device cuda)");
    if (strcmp(o.dtype, "bf16") && strcmp(o.dtype, "f32"))
        lk_die(LK_EUSAGE, "train: --dtype '%s' (expected bf16 or f32)", o.dtype);
    lk_err err = {0};
    return finish(lk_bench_train(&o, &err), &err);
}

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *what;
} benches[] = {
    {"tokenize", cmd_tokenize, "tokenizer encode speed (vs HF tokenizers with --hf)"},
    {"decode", cmd_decode, "CPU engine prefill and decode speed"},
    {"prep", cmd_prep, "leank-prep sample generation speed"},
    {"accuracy", cmd_accuracy, "RULER accuracy of a model on samples, dense vs LeanK pruned cache"},
#ifdef LEANK_CUDA
    {"kernel", cmd_kernel, "decode attention kernels: dense, LeanK per layer, torch SDPA (GPU)"},
    {"attention", cmd_attention, "dense decode attention vs torch SDPA, causal prefill attention (GPU)"},
#endif
    {"e2e", cmd_e2e, "end-to-end generation speed and memory on the GPU, dense vs LeanK"},
    {"train", cmd_train, "leank-train step time and memory (stage 1, random samples)"},
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
