#!/usr/bin/env bash
# s14d.sh - 2026-11-30, the final call: make test-gpu's programs, then issue 12's and 14's
# measurements beside their peers in the same call (HF transformers, the PyTorch step, cuDNN).
. "$(dirname "$0")/call.sh"
B=$LEANK_BIN
MASK=$LEANK_SHARED/data/masks/llama3.1-8b-instruct.tsv
LIMIT=${LIMIT:-280}
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,power.limit --format=csv,noheader | tee "$O/gpu.txt"
step tests tests/run.sh --gpu; grep -E "^(ok|not ok|[0-9]+ passed)" "$O/tests.txt"; grep -A20 "^not ok" "$O/tests.txt" | head -30
step e2e_b1 $B/leank-bench e2e --random llama3.1-8b -b 1 -p 32768 -g 128 --runs 4; tail -11 "$O/e2e_b1.txt"
step hf_b1 python3 dev/bench/hf_e2e.py --shape llama3.1-8b -b 1 -p 32768 -g 128; tail -3 "$O/hf_b1.txt"
step train $B/leank-bench train --random llama3.1-8b -c 32768 -a 32 -n 7; tail -10 "$O/train.txt"
step torch python3 dev/bench/torch_train_step.py --shape llama3.1-8b -c 32768 -a 32 -n 5; tail -1 "$O/torch.txt"
step kernel $B/leank-bench kernel --mask "$MASK" --sdpa dev/bench/sdpa_decode.py; tail -14 "$O/kernel.txt"
step e2e_b52 $B/leank-bench e2e --random llama3.1-8b -b 52 -p 4096 -g 128 --runs 3; tail -11 "$O/e2e_b52.txt"
step hf_b52 python3 dev/bench/hf_e2e.py --shape llama3.1-8b -b 52 -p 4096 -g 128 --variants eager; tail -2 "$O/hf_b52.txt"
cat "$O/summary.txt"; (cd "$O" && tar cf res.tar *.txt && rm -f *.txt)
