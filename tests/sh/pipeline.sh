# pipeline.sh - the whole pipeline (dev/demo.sh) end to end on stories260K:
# prep -> train stage 1 (and stage 2) -> binarize -> pack -> decode dense and
# pruned -> accuracy on held-out samples -> verdict.
. "$LEANK_TOP/tests/lib.sh"
need_shared
M=$S/models/stories260K
BIN=$B LEN=400 CONF=$LEANK_TOP/data/configs/stories260k.yaml RATIO=0.5 ALIGN=2 STEPS1=6 STEPS2=3 \
    EVAL_TASKS=vt EVAL_N=2 "$LEANK_TOP/dev/demo.sh" "$M" "$T/demo" >"$T/log" 2>&1 || { cat "$T/log"; fail "demo.sh failed"; finish; }
for f in train.smp eval.smp question.txt alpha1.safetensors alpha2.safetensors mask.safetensors mask2.safetensors \
         plan.safetensors alpha.svg answers.jsonl accuracy.json; do
    [ -s "$T/demo/$f" ] || fail "demo produced no $f"
done
grep -q 'K kept:' "$T/log" || fail "no binarize report"
grep -q 'KV cache at 400 tokens' "$T/log" || fail "no pack report"
# the windows travelled: alpha -> mask -> plan (400/64 = 6, 400/8 = 50)
grep -q 'windows: sink 6, recent 50' "$T/log" || fail "the mask does not record the training windows"
grep -q 'sink 6 + recent 50 tokens full width (the mask' "$T/log" || fail "leank-pack did not take the mask's windows"
# one wording for memory, in pack's report and in the verdict
pct=$(sed -nE 's/^KV ([0-9.]+) % of dense, [0-9.]+ % saved \(bf16 cache.*/\1/p' "$T/log" | head -n1)
awk -v p="$pct" 'BEGIN { exit !(p > 0 && p < 100) }' || fail "pack: pruned cache is '$pct' % of dense"
grep -Eq '^verdict: the LeanK cache \(mask\) scores [0-9.]+(, as dense does| against dense).*KV [0-9.]+ % of dense, [0-9.]+ % saved' "$T/log" ||
    fail "no verdict: $(tail -n 5 "$T/log")"
grep -q '^  expected ' "$T/log" || fail "no answers side by side"
grep -Eq '^mask2 +[0-9.]+' "$T/log" || fail "stage 2's mask not scored beside stage 1's"
# nothing temporary left behind
ls "$T/demo" | grep -q '\.tmp\.' && fail "temporary files left"
finish
