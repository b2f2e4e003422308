#!/usr/bin/env bash
# s14e.sh - 2026-11-30, on nvidia-h200-x2: the GPU tests after the per-device shared-memory
# opt-in (gpu_engine's two-GPU case), the tensor-map fallback and train_cuda's one reduction
. "$(dirname "$0")/call.sh"
B=$LEANK_BIN
LIMIT=${LIMIT:-280}
nvidia-smi -L
step tests tests/run.sh --gpu; grep -E "^(ok|not ok|[0-9]+ passed)" "$O/tests.txt"; grep -A20 "^not ok" "$O/tests.txt" | head -30
step eng $B/tests/gpu_engine; grep -E "two GPUs|checks" "$O/eng.txt"
step train $B/leank-bench train --random llama3.1-8b -c 32768 -a 32 -n 5; grep -E "^step|prefill" "$O/train.txt"
cat "$O/summary.txt"; (cd "$O" && tar cf res.tar *.txt && rm -f *.txt)
