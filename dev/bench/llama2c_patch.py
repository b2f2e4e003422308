# Make the benchmark copy of karpathy/llama2.c's run.c (docs/perf.md, issue 17). The copy
# lives outside this repository (never commit llama2.c's code here); build it as its own fast
# build does, plus -march=native:  gcc -Ofast -march=native -o run run_bench.c -lm
#   python3 llama2c_patch.py path/to/run.c path/to/run_bench.c
# Edits, each checked to apply exactly once:
#   1. the stop at BOS (id 1) is removed, so a run makes exactly `-n` - 1 tokens after BOS,
#      as leank-decode does (leank's models do not use id 1 as a delimiter);
#   2. with RUNC_PROMPT_IDS=FILE the prompt is FILE's token ids (whitespace separated) instead
#      of run.c's own encoding of -i (its O(n^2) encoder is not what is measured, and it
#      does not know leank-mini's byte-level BPE);
#   3. prefill (the forwards of the prompt tokens) and decode (the forwards after) are timed
#      separately and printed on stderr as "run.c: prompt N tokens, prefill S s (R tok/s),
#      decode M steps S s (R tok/s)", then the same phases' CPU time (CLOCK_PROCESS_CPUTIME_ID:
#      on a shared machine, time the process did not run is not counted). The forward pass,
#      sampler and printing are untouched.
import sys
src = open(sys.argv[1]).read()
def sub(old, new):
    global src
    if src.count(old) != 1: sys.exit(f'llama2c_patch: {old[:60]!r} found {src.count(old)} times (another run.c version?)')
    src = src.replace(old, new)
sub('        if (next == 1) { break; }\n', '')
sub('    encode(tokenizer, prompt, 1, 0, prompt_tokens, &num_prompt_tokens);\n',
    '    const char *ids_path = getenv("RUNC_PROMPT_IDS");\n'
    '    if (ids_path) {\n'
    '        FILE *f = fopen(ids_path, "r"); int cap = 1024, id;\n'
    '        if (!f) { fprintf(stderr, "couldn\'t open %s\\n", ids_path); exit(EXIT_FAILURE); }\n'
    '        free(prompt_tokens); prompt_tokens = malloc(cap * sizeof(int));\n'
    '        while (fscanf(f, "%d", &id) == 1) {\n'
    '            if (num_prompt_tokens == cap) prompt_tokens = realloc(prompt_tokens, (cap *= 2) * sizeof(int));\n'
    '            prompt_tokens[num_prompt_tokens++] = id;\n'
    '        }\n'
    '        fclose(f);\n'
    '    } else {\n'
    '        encode(tokenizer, prompt, 1, 0, prompt_tokens, &num_prompt_tokens);\n'
    '    }\n'
    '    struct timespec bt0, bt1, bt2, bc0, bc1, bc2; clock_gettime(CLOCK_MONOTONIC, &bt0); bt1 = bt0;\n'
    '    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &bc0); bc1 = bc0;\n')
sub('            next = sample(sampler, logits);\n        }\n        pos++;\n',
    '            next = sample(sampler, logits);\n        }\n        pos++;\n'
    '        if (pos == num_prompt_tokens) { clock_gettime(CLOCK_MONOTONIC, &bt1); clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &bc1); }\n')
sub('    printf("\\n");\n\n',
    '    printf("\\n");\n'
    '    clock_gettime(CLOCK_MONOTONIC, &bt2); clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &bc2);\n'
    '    double pre = (bt1.tv_sec - bt0.tv_sec) + (bt1.tv_nsec - bt0.tv_nsec) * 1e-9;\n'
    '    double dec = (bt2.tv_sec - bt1.tv_sec) + (bt2.tv_nsec - bt1.tv_nsec) * 1e-9;\n'
    '    int ndec = pos - (num_prompt_tokens < pos ? num_prompt_tokens : pos);\n'
    '    fprintf(stderr, "run.c: prompt %d tokens, prefill %.3f s (%.1f tok/s), decode %d steps %.3f s (%.1f tok/s)\\n",\n'
    '            num_prompt_tokens, pre, num_prompt_tokens / pre, ndec, dec, ndec / dec);\n'
    '    fprintf(stderr, "run.c: cpu prefill %.3f s, cpu decode %.3f s\\n", (bc1.tv_sec - bc0.tv_sec) + (bc1.tv_nsec - bc0.tv_nsec) * 1e-9,\n'
    '            (bc2.tv_sec - bc1.tv_sec) + (bc2.tv_nsec - bc1.tv_nsec) * 1e-9);\n\n')
open(sys.argv[2], 'w').write(src)
