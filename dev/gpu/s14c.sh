#!/usr/bin/env bash
# s14c.sh - 2026-11-30: SM clock and power while the prefill runs (is form 8 slower in the engine
# than alone because the GPU clocks down under sustained tensor-core load?)
. "$(dirname "$0")/call.sh"
B=$LEANK_BIN
p=$(smi att); LEANK_PF_MASK=256 $B/leank-bench attention --batch 1 --reps 7 >"$O/att.txt" 2>&1; kill $p; summ att; grep -A3 "^form" "$O/att.txt"
p=$(smi e2e); $B/leank-bench e2e --random llama3.1-8b -b 1 -p 32768 -g 8 --runs 3 >"$O/e2e.txt" 2>&1; kill $p; summ e2e; grep warm "$O/e2e.txt"
p=$(smi pro); LEANK_CUDA_PROFILE=1 LEANK_CUDA_GRAPH=0 LEANK_PREFILL_FORM=6 $B/leank-bench e2e --random llama3.1-8b -b 1 -p 32768 -g 8 --runs 2 >"$O/p6.txt" 2>&1; kill $p; summ pro; grep "prefill calls" "$O/p6.txt"
(cd "$O" && tar cf res.tar * )
