# demo.sh - `make demo`'s recipe on leank-mini (data/models, no shared data
# needed) proves its point: on held-out samples the pruned cache scores as
# dense does, with about half the KV cache, and the verdict says so.
# (Shorter than make demo: 1 held-out sample per task.)
. "$LEANK_TOP/tests/lib.sh"
M=$LEANK_TOP/data/models/leank-mini
[ -f "$M/config.json" ] || { echo "skip: $M absent"; exit 77; }
BIN=$B EVAL_N=1 "$LEANK_TOP/dev/demo.sh" "$M" "$T/demo" >"$T/log" 2>&1 || { cat "$T/log"; fail "demo.sh failed"; finish; }
v=$(grep '^verdict:' "$T/log")
echo "$v" | grep -q ', as dense does' && ok "$v" || fail "pruned below dense: $v"
kv=$(echo "$v" | sed -nE 's/.*KV ([0-9.]+) % of dense.*/\1/p')
awk -v p="$kv" 'BEGIN { exit !(p > 30 && p < 60) }' && ok "KV $kv % of dense" || fail "KV '$kv' % of dense (expected about 48)"
grep -A2 '^  expected' "$T/log" | head -n 3 >"$T/side"
want=$(sed -n 1p "$T/side" | sed 's/^  expected *//')
[ -n "$want" ] && sed -n 3p "$T/side" | grep -qF "mask         $want  (100 %)" && ok "side by side: $want" ||
    fail "first pruned answer is not the expected one: $(cat "$T/side")"
grep -q 'stage 2 skipped' "$T/log" || fail "the demo no longer says why stage 2 is skipped"
finish
