#!/usr/bin/env bash
# s14c.sh - 2026-11-30: SM clock and power while the prefill runs (is form 8 slower in the engine
# than alone because the GPU clocks down under sustained tensor-core load?)
. "$(dirname "$0")/call.sh"
B=$LEANK_BIN
smi() { nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,clocks_event_reasons.active --format=csv,noheader,nounits -lms 20 >"$O/$1.csv" & echo $!; }
summ() { python3 - "$O/$1.csv" "$1" <<'PY'
import sys, statistics as st
rows = [l.split(", ") for l in open(sys.argv[1]) if l.strip()]
busy = [r for r in rows if float(r[2]) > 250]
if not busy: print(sys.argv[2], "no busy samples", len(rows)); sys.exit()
c = [float(r[1]) for r in busy]; p = [float(r[2]) for r in busy]
reasons = {}
for r in busy: reasons[r[3].strip()] = reasons.get(r[3].strip(), 0) + 1
print(f"{sys.argv[2]}: {len(busy)} busy samples of {len(rows)}: SM clock min {min(c):.0f} median {st.median(c):.0f} max {max(c):.0f} MHz; power median {st.median(p):.0f} max {max(p):.0f} W; reasons {reasons}")
PY
}
p=$(smi att); LEANK_PF_MASK=256 $B/leank-bench attention --batch 1 --reps 7 >"$O/att.txt" 2>&1; kill $p; summ att; grep -A3 "^form" "$O/att.txt"
p=$(smi e2e); $B/leank-bench e2e --random llama3.1-8b -b 1 -p 32768 -g 8 --runs 3 >"$O/e2e.txt" 2>&1; kill $p; summ e2e; grep warm "$O/e2e.txt"
p=$(smi pro); LEANK_CUDA_PROFILE=1 LEANK_CUDA_GRAPH=0 LEANK_PREFILL_FORM=6 $B/leank-bench e2e --random llama3.1-8b -b 1 -p 32768 -g 8 --runs 2 >"$O/p6.txt" 2>&1; kill $p; summ pro; grep "prefill calls" "$O/p6.txt"
(cd "$O" && tar cf res.tar * )
