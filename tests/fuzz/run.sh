#!/bin/sh
# run.sh SECONDS BUILD_DIR NAME... - run each libFuzzer target build/fuzz/fuzz_NAME
# for SECONDS, starting from the kept inputs in tests/fuzz/NAME/ (read only)
# and adding what it finds to BUILD_DIR/corpus/NAME/. A crash, leak, timeout
# or out-of-memory stops with the input's path: fix the bug, then keep the
# input as a regression case in tests/fuzz/NAME/ (make test replays them).
set -u
secs=$1 dir=$2
shift 2
top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top" || exit 1
failed=""
for name in "$@"; do
    bin=$dir/fuzz_$name
    [ -x "$bin" ] || { echo "fuzz: $bin not built" >&2; failed="$failed $name"; continue; }
    mkdir -p "$dir/corpus/$name" "$dir/artifacts"
    log=$dir/fuzz_$name.log
    # -rss_limit_mb: what a bad input may make us allocate; -timeout: per input
    "$bin" -max_total_time="$secs" -rss_limit_mb=2048 -timeout=20 -print_final_stats=1 \
        -artifact_prefix="$dir/artifacts/$name-" "$dir/corpus/$name" "tests/fuzz/$name" >"$log" 2>&1
    rc=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n1)
    if [ $rc -eq 0 ]; then
        echo "fuzz $name: ${secs}s, ${runs:-?} runs, ${cov:-cov: ?}, no crash"
    else
        failed="$failed $name"
        echo "fuzz $name: FAILED (exit $rc) after ${runs:-?} runs; log $log"
        grep -E "ERROR|SUMMARY|Test unit written|==[0-9]+==" "$log" | head -n 8 | sed 's/^/  /'
    fi
done
if [ -n "$failed" ]; then
    echo "fuzz: failed:$failed" >&2
    exit 1
fi
