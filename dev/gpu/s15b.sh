#!/usr/bin/env bash
# s15b.sh - 2026-11-30 (session 15), second call: the post-prefill changes
# (16-byte KV store/gather rows, one-read softmax, the pruned passes' full
# score and Zf products over the full keys only): the GPU tests, the step
# against PyTorch's in the same call, the B 1 x 32K e2e, and the kernels of
# one step under ncu (dev/gpu/ncu_split.py).
. "$(dirname "$0")/call.sh"
B=$LEANK_BIN
nvidia-smi --query-gpu=name,power.limit,clocks.max.sm --format=csv,noheader | tee "$O/gpu.txt"
step tests tests/run.sh --gpu
step train "$B/leank-bench" train --random llama3.1-8b -c 32768 -a 32 -n 5
step torch python3 dev/bench/torch_train_step.py --shape llama3.1-8b -c 32768 -a 32 -n 5
step train2 "$B/leank-bench" train --random llama3.1-8b -c 32768 -a 32 -n 5
step e2e "$B/leank-bench" e2e --random llama3.1-8b -b 1 -p 32768 -g 128 --runs 3
LIMIT=300 step ncu ncu --clock-control none --metrics gpu__time_duration.sum --csv --page raw \
    "$B/leank-bench" train --random llama3.1-8b -c 32768 -a 32 -n 1
python3 dev/gpu/ncu_split.py "$O/ncu.txt" >"$O/ncu_split.txt" 2>&1 && xz -T4 "$O/ncu.txt"
grep -E "^(ok|not ok|[0-9]+ passed)" "$O/tests.txt"; grep -B5 -A30 "^not ok" "$O/tests.txt" | head -80
echo "---- train"; cat "$O/train.txt"; echo "---- torch"; tail -1 "$O/torch.txt"; echo "---- train2"; sed -n 3,8p "$O/train2.txt"
echo "---- e2e"; tail -8 "$O/e2e.txt"
echo "---- ncu"; sed -n 1,50p "$O/ncu_split.txt"
cat "$O/summary.txt"
(cd "$O" && tar cf res.tar --exclude=res.tar * && ls | grep -v res.tar | xargs rm -f)
