#!/usr/bin/env bash
# s14b.sh - 2026-11-30, third call: the warp-per-row KV store, kv_only trainer prefill, GEMM chunk / tuning knobs
. "$(dirname "$0")/call.sh"
B=$LEANK_BIN
LIMIT=${LIMIT:-200}
for t in gpu_engine gpu_train gpu_stories_mask gpu_ops gpu_train_open gpu_attention; do step $t $B/tests/$t; tail -1 "$O/$t.txt"; done
E="$B/leank-bench e2e --random llama3.1-8b -b 1 -p 32768 -g 16 --runs 2"
LEANK_CUDA_PROFILE=1 LEANK_CUDA_GRAPH=0 step prof_c4 $E; grep profile "$O/prof_c4.txt" | head -1
LEANK_CUDA_PROFILE=1 LEANK_CUDA_GRAPH=0 LEANK_CUDA_CHUNK=8192 step prof_c8 $E; grep profile "$O/prof_c8.txt" | head -1
LEANK_CUDA_PROFILE=1 LEANK_CUDA_GRAPH=0 LEANK_CUDA_TUNE_MAX_M=1000000 step prof_t $E; grep profile "$O/prof_t.txt" | head -1
LEANK_CUDA_PROFILE=1 LEANK_CUDA_GRAPH=0 LEANK_CUDA_CHUNK=8192 LEANK_CUDA_TUNE_MAX_M=1000000 step prof_c8t $E; grep profile "$O/prof_c8t.txt" | head -1
for v in "" "LEANK_CUDA_CHUNK=8192" "LEANK_CUDA_TUNE_MAX_M=1000000" "LEANK_CUDA_CHUNK=8192 LEANK_CUDA_TUNE_MAX_M=1000000"; do
  env $v $B/leank-bench train --random llama3.1-8b -c 32768 -a 32 -n 5 >"$O/tr.txt" 2>&1; echo "train [$v]: $(grep -E '^step|prefill' "$O/tr.txt" | tr -s ' ' | tr '\n' ' ')"
  env $v $B/leank-bench e2e --random llama3.1-8b -b 1 -p 32768 -g 128 --runs 3 >"$O/e.txt" 2>&1; echo "e2e [$v]: $(grep -E 'warm' "$O/e.txt" | tr -s ' ' | tr '\n' ' ')"
done
cat "$O/summary.txt"; (cd "$O" && tar cf res.tar *.txt && rm -f *.txt)
