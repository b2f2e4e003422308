# leank-bench train: the command line, the CPU reference backend on
# stories260K (a step is timed, its parts and loss reported, JSON parses),
# and a clear refusal of the GPU path where there is no GPU.
. "$(dirname "$0")/../lib.sh"
export OPENBLAS_NUM_THREADS=1
be="$B/leank-bench train"

$be --help | grep -q -- "--context" && ok "--help" || fail "--help"
expect_fail 2 "no model" -- $be
expect_fail 2 "both a model and a shape" -- $be -m x --random llama3.1-8b
expect_fail 2 "random weights on the CPU" -- $be --random llama3.1-8b --device cpu
expect_fail 2 "unknown shape" -- $be --random llama9 --device cuda
if ! command -v nvidia-smi >/dev/null 2>&1; then # no GPU here (CI): one clear line, exit 6
    expect_fail 6 "--random without a GPU" -- $be --random llama3.1-8b -c 64 -a 4 -n 1
fi

need_shared
M=$S/models/stories260K
[ -d "$M" ] || { echo "skip: $M absent"; exit 77; }
if $be -m "$M" --device cpu -c 200 -a 16 -n 2 --sink 4 --recent 32 --json >"$T/j" 2>"$T/err"; then
    python3 - "$T/j" <<'PY' && ok "CPU backend: a timed step, JSON" || fail "JSON: $(cat "$T/j")"
import json, sys
j = json.load(open(sys.argv[1]))
assert j["bench"] == "train" and j["context"] == 200 and j["answer"] == 16 and j["steps"] == 2, j
assert 0 < j["step_min_s"] <= j["step_median_s"] <= j["step_max_s"], j
assert j["loss_first"] == 0 and j["loss_last"] > 0, j   # alpha starts at 1: the first loss is exactly 0
PY
else
    fail "CPU backend: exit $?: $(head -n1 "$T/err")"
fi
$be -m "$M" --device cpu -c 200 -a 16 -n 2 --sink 4 --recent 32 >"$T/t" 2>&1 &&
    grep -q "^step (s)" "$T/t" && ok "table" || fail "table: $(cat "$T/t")"
finish
