#!/usr/bin/env bash
# s15d.sh - 2026-11-30 (session 15): energy, not only time. Is our prefill
# attention (form 8) cheaper in joules than cuDNN's, and what does a train
# step cost? NVML's energy counter around each command (dev/bench/energy.py),
# each measured as a difference of two runs (more work minus less), and the
# SM clock every 20 ms (smi/summ of call.sh).
. "$(dirname "$0")/call.sh"
B=$LEANK_BIN
E="python3 dev/bench/energy.py"
nvidia-smi --query-gpu=name,power.limit --format=csv,noheader | tee "$O/gpu.txt"
export LEANK_PF_MASK=256 # prefill forms 0 (the reference) and 8
step att0 $E --label att_sustain0 -- "$B/leank-bench" attention --batch 1 --reps 7 --sustain 0
p=$(smi att300); step att300 $E --label att_sustain300 -- "$B/leank-bench" attention --batch 1 --reps 7 --sustain 300; kill $p; summ att300 | tee -a "$O/summary.txt"
unset LEANK_PF_MASK
step floor python3 dev/bench/power_floor.py -m 32768 -r 5
step train1 $E --label train_n1 -- "$B/leank-bench" train --random llama3.1-8b -c 32768 -a 32 -n 1
p=$(smi train6); step train6 $E --label train_n6 -- "$B/leank-bench" train --random llama3.1-8b -c 32768 -a 32 -n 6; kill $p; summ train6 | tee -a "$O/summary.txt"
step torch1 $E --label torch_n1 -- python3 dev/bench/torch_train_step.py --shape llama3.1-8b -c 32768 -a 32 -n 1
p=$(smi torch6); step torch6 $E --label torch_n6 -- python3 dev/bench/torch_train_step.py --shape llama3.1-8b -c 32768 -a 32 -n 6; kill $p; summ torch6 | tee -a "$O/summary.txt"
for f in att0 att300; do echo "---- $f"; grep -E "^form|^[08] |back to back|label" "$O/$f.txt"; done
echo "---- floor"; tail -4 "$O/floor.txt"
for f in train1 train6 torch1 torch6; do echo "---- $f"; grep -E "step \(s\)|prefill|label|torch step" "$O/$f.txt"; done
cat "$O/summary.txt"
(cd "$O" && tar cf res.tar --exclude=res.tar * && ls | grep -v res.tar | xargs rm -f)
