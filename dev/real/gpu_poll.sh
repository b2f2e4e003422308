#!/usr/bin/env bash
# dev/real/gpu_poll.sh [SECONDS] - a device call while dev/real/gpu_job.sh runs:
# waits until every job under RES_ROOT (default /tmp/res) has DONE or SECONDS
# (default 0) have passed, then prints each job's summary and the last lines of
# its running step, and packs the results so far (masks, alphas, logs,
# answers; no samples) into $OUT/res.tar.xz.
set -u
R=${RES_ROOT:-/tmp/res}
end=$(( $(date +%s) + ${1:-0} ))
while [ "$(date +%s)" -lt $end ]; do
    all=1
    for d in "$R"/*/; do [ -f "$d/DONE" ] || all=0; done
    [ $all = 1 ] && break
    sleep 5
done
for d in "$R"/*/; do
    echo "==== $(basename "$d") $([ -f "$d/DONE" ] && echo DONE || echo running)"
    cat "$d/summary.txt" 2>/dev/null
    for f in $(ls -t "$d"/*.txt 2>/dev/null | head -n 2); do
        echo "-- $(basename "$f")"; tail -n 3 "$f" | cut -c1-200
    done
done
nvidia-smi --query-gpu=index,utilization.gpu,memory.used --format=csv,noheader 2>/dev/null
df -h /tmp | tail -n 1
if [ -n "${OUT:-}" ]; then
    (cd "$R/.." && tar cf - --exclude='*.smp' --exclude='*.ckpt' "$(basename "$R")" | xz -2 -T4 >"$OUT/res.tar.xz")
    ls -l "$OUT/res.tar.xz"
fi
date
