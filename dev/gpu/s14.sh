#!/usr/bin/env bash
# s14.sh - 2026-11-30, second call: prefill form 8 as default; warm e2e (--runs) beside HF in
# the same call; the prefill/decode profile; the training step beside PyTorch's.
. "$(dirname "$0")/call.sh"
B=$LEANK_BIN
LIMIT=${LIMIT:-200}
step eng $B/tests/gpu_engine; tail -1 "$O/eng.txt"
LEANK_CUDA_PROFILE=1 LEANK_CUDA_GRAPH=0 step prof $B/leank-bench e2e --random llama3.1-8b -b 1 -p 32768 -g 32 --runs 2
grep "profile" "$O/prof.txt"
step e2e1 $B/leank-bench e2e --random llama3.1-8b -b 1 -p 32768 -g 128 --runs 4; tail -12 "$O/e2e1.txt"
step hf1 python3 dev/bench/hf_e2e.py --shape llama3.1-8b -b 1 -p 32768 -g 128; tail -3 "$O/hf1.txt"
step e2e1b $B/leank-bench e2e --random llama3.1-8b -b 1 -p 32768 -g 128 --runs 4; grep total "$O/e2e1b.txt"
step train $B/leank-bench train --random llama3.1-8b -c 32768 -a 32 -n 7; tail -9 "$O/train.txt"
step torch python3 dev/bench/torch_train_step.py --shape llama3.1-8b -c 32768 -a 32 -n 5; tail -8 "$O/torch.txt"
step e2e52 $B/leank-bench e2e --random llama3.1-8b -b 52 -p 4096 -g 128 --runs 2; tail -12 "$O/e2e52.txt"
cat "$O/summary.txt"; (cd "$O" && tar cf res.tar *.txt && rm -f *.txt)
