#!/usr/bin/env bash
# pws.sh - the first GPU call of the warp-specialized prefill forms 7/8 (branch prefill-ws)
set -u
mkdir -p /tmp/x && tar xJf .carry/bin.tar.xz -C /tmp/x
B=/tmp/x/bin; O=${OUT:-/tmp/o}; mkdir -p "$O"
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader
s() { local n=$1; shift; local t0=$(date +%s.%N); timeout "${LIM:-150}" "$@" >"$O/$n.txt" 2>&1; local rc=$?
      printf '== %s: exit %d, %.1f s\n' "$n" $rc "$(echo "$(date +%s.%N) - $t0" | bc)" | tee -a "$O/summary.txt"; return $rc; }
LEANK_PF_MASK=384 s att78 $B/tests/gpu_attention || { tail -30 "$O/att78.txt"; exit 1; }; tail -4 "$O/att78.txt"
s attall $B/tests/gpu_attention; tail -3 "$O/attall.txt"
LEANK_PREFILL_FORM=7 s eng7 $B/tests/gpu_engine; tail -2 "$O/eng7.txt"
LEANK_PREFILL_FORM=8 s eng8 $B/tests/gpu_engine; tail -2 "$O/eng8.txt"
LEANK_PF_MASK=449 s bench $B/leank-bench attention --sdpa dev/bench/sdpa_decode.py --reps 7; tail -25 "$O/bench.txt"
for f in 6 7 8; do LEANK_PREFILL_FORM=$f s e2e_f$f $B/leank-bench e2e --random llama3.1-8b -b 1 -p 32768 -g 128; tail -12 "$O/e2e_f$f.txt"; done
for f in 6 7; do LEANK_PREFILL_FORM=$f s train_f$f $B/leank-bench train --random llama3.1-8b -c 32768 -a 32 -n 5; tail -8 "$O/train_f$f.txt"; done
cat "$O/summary.txt"
