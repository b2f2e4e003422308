#!/usr/bin/env bash
# s15a.sh - 2026-11-30 (session 15), first call: where the train step's time and
# energy go. (1) the step's kernels one by one under ncu (gpu__time_duration,
# clocks left alone): the post-prefill passes by kernel; (2) the prefill's
# power and clock (nvidia-smi every 20 ms) for leank-bench train and the
# PyTorch peer; (3) dev/bench/power_floor.py: the prefill's products (cuBLAS)
# and attention (cuDNN) alone, sustained, in seconds and joules; (4) form 8
# sustained (100 launches) with its power and clock.
. "$(dirname "$0")/call.sh"
B=$LEANK_BIN
nvidia-smi --query-gpu=name,power.limit,power.max_limit,clocks.max.sm --format=csv | tee "$O/gpu.txt"
which ncu nsys 2>&1 | tee -a "$O/gpu.txt"
p=$(smi train); LEANK_CUDA_PROFILE=1 step train "$B/leank-bench" train --random llama3.1-8b -c 32768 -a 32 -n 5; kill $p; summ train | tee -a "$O/summary.txt"
p=$(smi torch); step torch python3 dev/bench/torch_train_step.py --shape llama3.1-8b -c 32768 -a 32 -n 5; kill $p; summ torch | tee -a "$O/summary.txt"
LIMIT=240 step floor python3 dev/bench/power_floor.py -m 32768 -r 5
p=$(smi att8); LEANK_PF_MASK=256 step att8 "$B/leank-bench" attention --batch 1 --reps 100; kill $p; summ att8 | tee -a "$O/summary.txt"
LIMIT=300 step ncu ncu --clock-control none --metrics gpu__time_duration.sum --csv --page raw \
    "$B/leank-bench" train --random llama3.1-8b -c 32768 -a 32 -n 1
python3 dev/gpu/ncu_split.py "$O/ncu.txt" >"$O/ncu_split.txt" 2>&1
echo "---- train"; cat "$O/train.txt"; echo "---- torch"; tail -2 "$O/torch.txt"
echo "---- floor"; cat "$O/floor.txt"; echo "---- att8"; grep -A4 "^form" "$O/att8.txt"
echo "---- ncu"; head -70 "$O/ncu_split.txt"
cat "$O/summary.txt"
(cd "$O" && tar cf res.tar --exclude=res.tar * && ls | grep -v res.tar | xargs rm -f)
