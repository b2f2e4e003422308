#!/usr/bin/env bash
# pws.sh - the first GPU call of the warp-specialized prefill forms 7/8 (branch prefill-ws)
. "$(dirname "$0")/call.sh"
B=$LEANK_BIN
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader
LIMIT=${LIMIT:-150}
LEANK_PF_MASK=384 step att78 $B/tests/gpu_attention || { tail -30 "$O/att78.txt"; exit 1; }; tail -4 "$O/att78.txt"
step attall $B/tests/gpu_attention; tail -3 "$O/attall.txt"
LEANK_PREFILL_FORM=7 step eng7 $B/tests/gpu_engine; tail -2 "$O/eng7.txt"
LEANK_PREFILL_FORM=8 step eng8 $B/tests/gpu_engine; tail -2 "$O/eng8.txt"
LEANK_PF_MASK=449 step bench $B/leank-bench attention --sdpa dev/bench/sdpa_decode.py --reps 7; tail -25 "$O/bench.txt"
for f in 6 7 8; do LEANK_PREFILL_FORM=$f step e2e_f$f $B/leank-bench e2e --random llama3.1-8b -b 1 -p 32768 -g 128; tail -12 "$O/e2e_f$f.txt"; done
for f in 6 7; do LEANK_PREFILL_FORM=$f step train_f$f $B/leank-bench train --random llama3.1-8b -c 32768 -a 32 -n 5; tail -8 "$O/train_f$f.txt"; done
cat "$O/summary.txt"
