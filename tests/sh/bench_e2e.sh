# leank-bench e2e: the command line, and the CPU engine on leank-mini (shipped
# with the project): prefill and decode timed, JSON parses, --runs gives run 1
# (cold) and the warm runs' median, min and max; a plan shrinks the KV.
. "$(dirname "$0")/../lib.sh"
export OPENBLAS_NUM_THREADS=1
be="$B/leank-bench e2e"
M=data/models/leank-mini

$be --help | grep -q -- "--runs" && ok "--help lists --runs" || fail "--help lacks --runs"
expect_fail 2 "no model" -- $be
expect_fail 2 "--runs 0" -- $be -m "$M" --device cpu --runs 0
expect_fail 2 "--runs abc" -- $be -m "$M" --device cpu --runs abc
expect_fail 2 "--sink without --plan" -- $be -m "$M" --device cpu --sink 4

if $be -m "$M" --device cpu -p 96 -g 6 --runs 3 --json >"$T/j" 2>"$T/err"; then
    python3 - "$T/j" <<'PY' && ok "CPU engine, 3 runs: cold run 1, warm median/min/max, JSON" || fail "JSON: $(cat "$T/j")"
import json, sys
j = json.load(open(sys.argv[1]))
assert j["bench"] == "e2e" and j["prompt"] == 96 and j["gen"] == 6 and j["runs"] == 3 and j["batch"] == 1, j
assert abs(j["total_s"] - j["prefill_s"] - j["decode_s"]) < 1e-9, j
for k in ("prefill_s", "total_s"):
    assert 0 < j["warm_%s_min" % k] <= j["warm_%s_median" % k] <= j["warm_%s_max" % k], (k, j)
assert 0 < j["step_ms_min"] <= j["step_ms_median"] <= j["step_ms_max"], j
assert j["kv_bytes"] == j["kv_dense_bytes"] > 0, j  # dense: all of it
PY
else
    fail "CPU engine: exit $?: $(head -n1 "$T/err")"
fi
if $be -m "$M" --device cpu -p 96 -g 6 >"$T/t" 2>"$T/err"; then
    grep -q "^  total " "$T/t" && ! grep -q "warm" "$T/t" && ok "one run: no warm lines" ||
        fail "one run: $(cat "$T/t")"
else
    fail "one run: exit $?: $(head -n1 "$T/err")"
fi
if $be -m "$M" --device cpu -p 96 -g 6 --plan "$M/leank-mask.safetensors" --sink 4 --recent 16 --json >"$T/p" \
    2>"$T/err"; then
    python3 - "$T/p" <<'PY' && ok "a LeanK plan: less KV than dense" || fail "plan: $(cat "$T/p")"
import json, sys
j = json.load(open(sys.argv[1]))
assert 0 < j["kv_bytes"] < j["kv_dense_bytes"], j
assert "warm_total_s_median" not in j and j["runs"] == 1, j
PY
else
    fail "plan: exit $?: $(head -n1 "$T/err")"
fi
finish
