#!/usr/bin/env bash
# s14f.sh - 2026-11-30: programmatic dependent launch in the decode step (pdl.h): the GPU
# tests with it on, then the decode step with it on and off (LEANK_CUDA_PDL=0), same call
. "$(dirname "$0")/call.sh"
B=$LEANK_BIN
MASK=$LEANK_SHARED/data/masks/llama3.1-8b-instruct.tsv
LIMIT=${LIMIT:-280}
step tests tests/run.sh --gpu; grep -E "^(ok|not ok|[0-9]+ passed)" "$O/tests.txt"; grep -A20 "^not ok" "$O/tests.txt" | head -30
for pdl in 1 0 1 0; do
  for c in "llama3.1-8b -b 1 -p 32768 -g 128 --runs 3" "llama3.1-8b -b 52 -p 4096 -g 64 --runs 2" "qwen2.5-1.5b -b 1 -p 4096 -g 256 --runs 3" "llama3.1-8b -b 1 -p 32768 -g 128 --runs 3 --plan $MASK --sink 128 --recent 1024"; do
    LEANK_CUDA_PDL=$pdl $B/leank-bench e2e --random $c --json >"$O/e.json" 2>"$O/e.err" || { echo "FAIL pdl=$pdl $c: $(head -2 "$O/e.err")"; continue; }
    python3 -c "import json,sys; j=json.load(open('$O/e.json')); print('pdl=$pdl', '${c%% --runs*}'[:40], 'plan' if j['plan']!='dense' else 'dense', 'step %.3f ms (min %.3f) floor x%.3f warm total %.3f s' % (j['step_ms_median'], j['step_ms_min'], j['step_over_floor'], j.get('warm_total_s_median', j['total_s'])))"
  done
done
cat "$O/summary.txt"; (cd "$O" && tar cf res.tar *.txt && rm -f *.txt)
