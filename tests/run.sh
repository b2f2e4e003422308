#!/usr/bin/env bash
# Test runner: every C unit test (bin/tests/test_*) and every shell test
# (tests/sh/*.sh; tests/gpu/* with --gpu). Exit 0 = pass, 77 = skip, else fail.
# A test that exits 0 but printed "skip: ..." lines ran only in part: it is
# counted as partly skipped, not as passed.
# Prints TAP-like lines and a final "N passed, N failed, N skipped, N partly skipped".
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
export LEANK_BIN=${LEANK_BIN:-$top/bin}
export LEANK_TOP=$top
export LEANK_SHARED=${LEANK_SHARED:-$top/../shared}
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}
cd "$top"
gpu=0
if [ "${1:-}" = --gpu ]; then
    gpu=1
    if ! nvidia-smi -L 2>/dev/null | grep -q GPU; then
        echo "leank: make test-gpu needs an NVIDIA GPU and none is visible (nvidia-smi -L)" >&2
        echo "0 passed, 1 failed, 0 skipped"
        exit 1
    fi
    tests=$(ls tests/gpu/*.sh 2>/dev/null; ls "$LEANK_BIN"/tests/gpu_* 2>/dev/null | grep -v "\.d$")
else
    tests=$(ls "$LEANK_BIN"/tests/test_* 2>/dev/null | grep -v "\.d$"; ls tests/sh/*.sh 2>/dev/null)
fi
if [ -n "${LEANK_TESTS:-}" ]; then # filter on test names, not paths
    tests=$(for t in $tests; do basename "$t" | grep -qE "$LEANK_TESTS" && echo "$t"; done)
fi
pass=0 fail=0 skip=0 n=0 failed="" partial=0 skipped_parts=0
log=$(mktemp -d)
for t in $tests; do
    n=$((n + 1))
    name=$(basename "$t")
    start=$(date +%s)
    if [ "${t%.sh}" != "$t" ]; then
        bash "$t" >"$log/$name" 2>&1
    elif [ $gpu = 1 ] && [ "${LEANK_GPU_SAN:-0}" = 1 ]; then
        # make test-gpu SAN=1: every GPU test program under compute-sanitizer's memcheck (bad
        # accesses, leaks of device memory) and racecheck (shared-memory hazards); any report fails
        { compute-sanitizer --tool memcheck --leak-check full --error-exitcode 86 "$t" &&
          LEANK_SAN_SMALL=1 compute-sanitizer --tool racecheck --racecheck-report hazard --error-exitcode 86 "$t"; } >"$log/$name" 2>&1
    else
        "$t" >"$log/$name" 2>&1
    fi
    rc=$?
    dur=$(( $(date +%s) - start ))
    parts=$(grep -c '^skip:' "$log/$name")
    if [ $rc -eq 0 ] && [ "$parts" -gt 0 ]; then # ran, but some checks could not: not a plain pass
        partial=$((partial + 1)); skipped_parts=$((skipped_parts + parts))
        echo "ok $n - $name (${dur}s) # PARTLY SKIPPED ($parts): $(grep -m1 '^skip:' "$log/$name" | cut -c1-140)"
    elif [ $rc -eq 0 ]; then
        pass=$((pass + 1)); echo "ok $n - $name (${dur}s)"
    elif [ $rc -eq 77 ]; then
        skip=$((skip + 1)); echo "ok $n - $name # SKIP $(grep -m1 -i skip "$log/$name" | cut -c1-160)"
    else
        fail=$((fail + 1)); failed="$failed $name"; echo "not ok $n - $name (exit $rc)"
        sed 's/^/#   /' "$log/$name" | tail -n 40
    fi
done
rm -rf "$log"
echo "1..$n"
[ -n "$failed" ] && echo "# failed:$failed"
if [ $gpu = 1 ] && [ $pass -eq 0 ]; then
    echo "# no GPU test passed: a GPU run that tests nothing is a failure"
    fail=$((fail + 1))
fi
echo "$pass passed, $fail failed, $skip skipped, $partial partly skipped ($skipped_parts checks not run)"
[ $fail -eq 0 ]
