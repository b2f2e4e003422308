#!/usr/bin/env bash
# all.sh - what one GPU-machine call runs: the GPU tests, then the benchmarks of
# the GPU engine and the LeanK kernel, logs under $OUT (or /tmp/leank-gpu).
# Built here (the GPU machine has no headers for jansson/pcre2/yaml), packed
# by dev/gpu/pack.sh, carried with .carry/shared (a copy of what the tests read
# from ../shared):
#   run: bash dev/gpu/all.sh [tests|train|bench|cpu|hf|san|all]
#   carry: [".carry/bin.tar.xz", ".carry/shared"] (and .carry/p8k.ids for cpu)
what=${1:-all}
. "$(dirname "$0")/call.sh"
B=$LEANK_BIN/leank-bench
MASK=$LEANK_SHARED/data/masks/llama3.1-8b-instruct.tsv
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,clocks.max.mem --format=csv,noheader | tee "$O/gpu.txt"
if [ "$what" = san ]; then # compute-sanitizer over the GPU test programs
    LEANK_GPU_SAN=1 LEANK_TESTS=gpu_ LEANK_VARIANTS="hd 64, GQA 7:1" step san tests/run.sh --gpu
    grep -E "^(ok|not ok|[0-9]+ passed)" "$O/san.txt"; grep -A20 "^not ok" "$O/san.txt" | head -40
fi
if [ "$what" = train ] || [ "$what" = all ]; then # issue 14: the CUDA trainer against the CPU one, its step vs PyTorch's
    step gpu_train "$LEANK_BIN/tests/gpu_train"
    [ -x "$LEANK_BIN/tests/gpu_stories_mask" ] && step gpu_stories_mask "$LEANK_BIN/tests/gpu_stories_mask"
    step train_8b "$B" train --random llama3.1-8b -c 32768 -a 32 -n 5
    step torch_train python3 dev/bench/torch_train_step.py --shape llama3.1-8b -c 32768 -a 32 -n 5
    # the prefill's products (cuBLAS) and attention (cuDNN) alone at the power cap: the step's floor
    step power_floor python3 dev/bench/power_floor.py -m 32768 -r 5
    for f in gpu_train gpu_stories_mask train_8b torch_train power_floor; do
        [ -f "$O/$f.txt" ] && { echo "---- $f"; tail -n 30 "$O/$f.txt"; }
    done
fi
if [ "$what" = tests ] || [ "$what" = all ]; then
    step tests tests/run.sh --gpu
    grep -E "^(ok|not ok|[0-9]+ passed)" "$O/tests.txt"
    grep -A30 "^not ok" "$O/tests.txt" | head -60
fi
if [ "$what" = bench ] || [ "$what" = all ]; then
    step kernel "$B" kernel --mask "$MASK" --sdpa dev/bench/sdpa_decode.py
    step e2e_b52 "$B" e2e --random llama3.1-8b -b 52 -p 4096 -g 128 --runs 3 # run 1 cold, 2-3 warm (HF is timed warm)
    step e2e_b1_32k "$B" e2e --random llama3.1-8b -b 1 -p 32768 -g 128 --runs 4
    if [ "${MAXB:-1}" = 1 ]; then # the largest batches at 32K (2.5 minutes of prefill)
        step e2e_max_dense "$B" e2e --random llama3.1-8b --max-batch -p 32768 -g 128
        step e2e_max_leank "$B" e2e --random llama3.1-8b --max-batch -p 32768 -g 128 --plan "$MASK" --sink 128 --recent 1024
    fi
    for f in kernel e2e_b52 e2e_b1_32k e2e_max_dense e2e_max_leank; do
        [ -f "$O/$f.txt" ] && { echo "---- $f"; tail -n 16 "$O/$f.txt"; }
    done
fi
if [ "$what" = cpu ] || [ "$what" = all ]; then
    # the CPU engine on the GPU machine's idle cores: leank-mini, an 8 000-token prompt (.carry/p8k.ids,
    # held-out essays) + 64 greedy tokens, 1 and 2 threads, alternated (issue 17's scaling)
    for j in ${CPU_RUNS:-1 2 1 2 1 2}; do
        step cpu_j$j.$RANDOM "$B" decode -m data/models/leank-mini --prompt-ids .carry/p8k.ids --tokens 64 --repeat 1 \
            -j $j --prompt-len 0
    done
    for f in "$O"/cpu_j*; do echo "---- $(basename "$f")"; grep -E "prefill|decode after" "$f"; done
fi
if [ "$what" = hf ] || [ "$what" = all ]; then
    step hf_b52 python3 dev/bench/hf_e2e.py --shape llama3.1-8b -b 52 -p 4096 -g 128
    step hf_b1_32k python3 dev/bench/hf_e2e.py --shape llama3.1-8b -b 1 -p 32768 -g 128
    for f in hf_b52 hf_b1_32k; do echo "---- $f"; tail -n 4 "$O/$f.txt"; done
fi
cat "$O/summary.txt"
