# pipeline.sh - the whole pipeline (dev/demo.sh) end to end on stories260K:
# prep -> train stage 1 -> stage 2 -> binarize -> pack -> decode dense and pruned.
. "$LEANK_TOP/tests/lib.sh"
need_shared
M=$S/models/stories260K
BIN=$B LEN=400 CONF=$LEANK_TOP/data/configs/stories260k.yaml RATIO=0.5 ALIGN=2 STEPS1=6 STEPS2=3 \
    "$LEANK_TOP/dev/demo.sh" "$M" "$T/demo" >"$T/log" 2>&1 || { cat "$T/log"; fail "demo.sh failed"; finish; }
for f in train.smp eval.smp question.txt alpha1.safetensors alpha2.safetensors mask.safetensors plan.safetensors alpha.svg; do
    [ -s "$T/demo/$f" ] || fail "demo produced no $f"
done
grep -q 'K kept:' "$T/log" || fail "no binarize report"
grep -q 'KV cache at 400 tokens' "$T/log" || fail "no pack report"
# the pruned decode used a smaller cache than the dense one
grep -Eq 'KV [0-9.]+ % of dense, [0-9.]+ % saved' "$T/log" || fail "no pruned cache figure"
pct=$(sed -nE 's/.*KV ([0-9.]+) % of dense, [0-9.]+ % saved.*/\1/p' "$T/log" | tail -n1)
awk -v p="$pct" 'BEGIN { exit !(p > 0 && p < 100) }' || fail "pruned cache is $pct % of dense"
# nothing temporary left behind
ls "$T/demo" | grep -q '\.tmp\.' && fail "temporary files left"
finish
