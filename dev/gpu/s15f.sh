#!/usr/bin/env bash
# s15f.sh - 2026-11-30 (session 15): compute-sanitizer memcheck (leaks: full)
# over the whole gpu_engine, which now prefills in chunks with the residual
# parked in att (s15e), and over gpu_train.
. "$(dirname "$0")/call.sh"
B=$LEANK_BIN
export LEANK_SEED=16
LIMIT=400 step mc_engine compute-sanitizer --tool memcheck --leak-check full --error-exitcode 86 "$B/tests/gpu_engine"
LIMIT=150 step mc_train compute-sanitizer --tool memcheck --leak-check full --error-exitcode 86 "$B/tests/gpu_train"
for f in mc_engine mc_train; do echo "---- $f"; grep -E "chunked|checks|SUMMARY" "$O/$f.txt" | tail -5; done
cat "$O/summary.txt"
(cd "$O" && tar cf res.tar --exclude=res.tar * && ls | grep -v res.tar | xargs rm -f)
