#!/usr/bin/env bash
# s14e.sh - 2026-11-30, on nvidia-h200-x2: the GPU tests after the per-device shared-memory
# opt-in (gpu_engine's two-GPU case), the tensor-map fallback and train_cuda's one reduction
set -u
mkdir -p /tmp/x && tar xJf .carry/bin.tar.xz -C /tmp/x
B=/tmp/x/bin; O=${OUT:-/tmp/o}; mkdir -p "$O"; export PYTHONUNBUFFERED=1 LEANK_SHARED=$PWD/.carry/shared LEANK_BIN=$B
s() { local n=$1; shift; local t0=$SECONDS; timeout "${LIM:-280}" "$@" >"$O/$n.txt" 2>&1; local rc=$?
      echo "== $n: exit $rc, $((SECONDS - t0)) s" | tee -a "$O/summary.txt"; return $rc; }
nvidia-smi -L
s tests tests/run.sh --gpu; grep -E "^(ok|not ok|[0-9]+ passed)" "$O/tests.txt"; grep -A20 "^not ok" "$O/tests.txt" | head -30
s eng $B/tests/gpu_engine; grep -E "two GPUs|checks" "$O/eng.txt"
s train $B/leank-bench train --random llama3.1-8b -c 32768 -a 32 -n 5; grep -E "^step|prefill" "$O/train.txt"
cat "$O/summary.txt"; (cd "$O" && tar cf res.tar *.txt && rm -f *.txt)
