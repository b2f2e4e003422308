#!/usr/bin/env bash
# s14.sh - 2026-11-30, second call: prefill form 8 as default; warm e2e (--runs) beside HF in
# the same call; the prefill/decode profile; the training step beside PyTorch's.
set -u
mkdir -p /tmp/x && tar xJf .carry/bin.tar.xz -C /tmp/x
B=/tmp/x/bin; O=${OUT:-/tmp/o}; mkdir -p "$O"; export PYTHONUNBUFFERED=1
s() { local n=$1; shift; local t0=$SECONDS; timeout "${LIM:-200}" "$@" >"$O/$n.txt" 2>&1; local rc=$?
      echo "== $n: exit $rc, $((SECONDS - t0)) s" | tee -a "$O/summary.txt"; return $rc; }
s eng $B/tests/gpu_engine; tail -1 "$O/eng.txt"
LEANK_CUDA_PROFILE=1 LEANK_CUDA_GRAPH=0 s prof $B/leank-bench e2e --random llama3.1-8b -b 1 -p 32768 -g 32 --runs 2
grep "profile" "$O/prof.txt"
s e2e1 $B/leank-bench e2e --random llama3.1-8b -b 1 -p 32768 -g 128 --runs 4; tail -12 "$O/e2e1.txt"
s hf1 python3 dev/bench/hf_e2e.py --shape llama3.1-8b -b 1 -p 32768 -g 128; tail -3 "$O/hf1.txt"
s e2e1b $B/leank-bench e2e --random llama3.1-8b -b 1 -p 32768 -g 128 --runs 4; grep total "$O/e2e1b.txt"
s train $B/leank-bench train --random llama3.1-8b -c 32768 -a 32 -n 7; tail -9 "$O/train.txt"
s torch python3 dev/bench/torch_train_step.py --shape llama3.1-8b -c 32768 -a 32 -n 5; tail -8 "$O/torch.txt"
s e2e52 $B/leank-bench e2e --random llama3.1-8b -b 52 -p 4096 -g 128 --runs 2; tail -12 "$O/e2e52.txt"
cat "$O/summary.txt"; (cd "$O" && tar cf res.tar *.txt && rm -f *.txt)
