#!/usr/bin/env bash
# s15c.sh - 2026-11-30 (session 15), the final calls, on nvidia-h200-x2 (for
# gpu_engine's two-GPU case): `s15c.sh run`: the GPU tests, the train step
# beside PyTorch's at 32K, and the step at 4K and 131 040 tokens of context;
# `s15c.sh san`: compute-sanitizer over what changed (gpu_train: memcheck
# with leaks, racecheck on its small mode; gpu_engine: memcheck).
. "$(dirname "$0")/call.sh"
B=$LEANK_BIN
nvidia-smi --query-gpu=name,power.limit --format=csv,noheader | tee "$O/gpu.txt"
if [ "${1:-run}" = run ]; then
    step tests tests/run.sh --gpu
    export CUDA_VISIBLE_DEVICES=0
    step train "$B/leank-bench" train --random llama3.1-8b -c 32768 -a 32 -n 5
    step torch python3 dev/bench/torch_train_step.py --shape llama3.1-8b -c 32768 -a 32 -n 5
    step train2 "$B/leank-bench" train --random llama3.1-8b -c 32768 -a 32 -n 5
    step train_4k "$B/leank-bench" train --random llama3.1-8b -c 4096 -a 32 -n 3
    step train_128k "$B/leank-bench" train --random llama3.1-8b -c 131040 -a 32 -n 1
    grep -E "^(ok|not ok|[0-9]+ passed)" "$O/tests.txt"; grep -B5 -A30 "^not ok" "$O/tests.txt" | head -60
    for f in train torch train2 train_4k train_128k; do echo "---- $f"; tail -n 9 "$O/$f.txt"; done
else
    export LEANK_SEED=15
    LIMIT=420 LEANK_GPU_SAN=1 LEANK_TESTS=gpu_train step san_train tests/run.sh --gpu
    LIMIT=150 LEANK_VARIANTS="hd 64, GQA 7:1" step mc_engine compute-sanitizer --tool memcheck --leak-check full \
        --error-exitcode 86 "$B/tests/gpu_engine"
    grep -E "^(ok|not ok|[0-9]+ passed)" "$O/san_train.txt"; tail -n 4 "$O/mc_engine.txt"
    ls -R /tmp/leank-tests 2>/dev/null | head -5
fi
cat "$O/summary.txt"
(cd "$O" && tar cf res.tar --exclude=res.tar * && ls | grep -v res.tar | xargs rm -f)
