#!/usr/bin/env bash
# s15e.sh - 2026-11-30 (session 15): a chunked prefill's residual parked in
# att (the next layer's attention norm adds it; no pass of its own), the
# profile's residual add marked as a norm (it was counted in o_proj): the
# GPU tests (gpu_engine's new chunked case), the train step beside PyTorch's,
# its prefill profile, and the B 1 x 32K e2e.
. "$(dirname "$0")/call.sh"
B=$LEANK_BIN
nvidia-smi --query-gpu=name,power.limit --format=csv,noheader | tee "$O/gpu.txt"
step tests tests/run.sh --gpu
step engine "$B/tests/gpu_engine"
LEANK_CUDA_PROFILE=1 step train "$B/leank-bench" train --random llama3.1-8b -c 32768 -a 32 -n 5
step torch python3 dev/bench/torch_train_step.py --shape llama3.1-8b -c 32768 -a 32 -n 5
step train2 "$B/leank-bench" train --random llama3.1-8b -c 32768 -a 32 -n 5
step e2e "$B/leank-bench" e2e --random llama3.1-8b -b 1 -p 32768 -g 128 --runs 3
grep -E "^(ok|not ok|[0-9]+ passed)" "$O/tests.txt"; grep -B5 -A30 "^not ok" "$O/tests.txt" | head -60
grep -E "chunked|checks" "$O/engine.txt"
echo "---- train"; cat "$O/train.txt"; echo "---- torch"; tail -1 "$O/torch.txt"; echo "---- train2"; sed -n 3,8p "$O/train2.txt"
echo "---- e2e"; tail -8 "$O/e2e.txt"
cat "$O/summary.txt"
(cd "$O" && tar cf res.tar --exclude=res.tar * && ls | grep -v res.tar | xargs rm -f)
