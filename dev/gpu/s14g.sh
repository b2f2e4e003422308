#!/usr/bin/env bash
# s14g.sh - 2026-11-30: compute-sanitizer over what this session changed: prefill forms 7/8
# (TMA, mbarriers; memcheck and racecheck), the warp-per-position KV store and kv_only
# (gpu_engine, gpu_train; memcheck). Four jobs at once, 150 s each at most.
. "$(dirname "$0")/call.sh"
B=$LEANK_BIN
export LEANK_SEED=13
CS="compute-sanitizer --error-exitcode 86"
( LEANK_PF_MASK=385 timeout 150 $CS --tool memcheck --leak-check full $B/tests/gpu_attention >"$O/mc_att.txt" 2>&1; echo "mc_att exit $?" >>"$O/summary.txt" ) &
( LEANK_PF_MASK=384 LEANK_SAN_SMALL=1 timeout 150 $CS --tool racecheck --racecheck-report hazard $B/tests/gpu_attention >"$O/rc_att.txt" 2>&1; echo "rc_att exit $?" >>"$O/summary.txt" ) &
( LEANK_VARIANTS="hd 128, GQA 4:1, bias" timeout 150 $CS --tool memcheck --leak-check full $B/tests/gpu_engine >"$O/mc_eng.txt" 2>&1; echo "mc_eng exit $?" >>"$O/summary.txt" ) &
( LEANK_SAN_SMALL=1 timeout 150 $CS --tool memcheck --leak-check full $B/tests/gpu_train >"$O/mc_train.txt" 2>&1; echo "mc_train exit $?" >>"$O/summary.txt" ) &
wait
cat "$O/summary.txt"
for f in "$O"/*.txt; do echo "---- $(basename "$f")"; grep -E "checks|ERROR SUMMARY|LEAK SUMMARY|RACECHECK SUMMARY|hazard|Error" "$f" | head -6; done
(cd "$O" && tar cf res.tar *.txt && rm -f *.txt)
