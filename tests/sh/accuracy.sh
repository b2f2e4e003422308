#!/usr/bin/env bash
# leank-bench accuracy on leank-mini (shipped in data/): an all-channels mask
# answers exactly as dense; threads do not change any answer; a real mask
# shrinks the cache; bad requests fail cleanly with no outputs file.
. "$LEANK_TOP/tests/lib.sh"
M=$LEANK_TOP/data/models/leank-mini
[ -f "$M/config.json" ] || { echo "skip: $M not found"; exit 77; }
command -v jq >/dev/null || { echo "skip: jq not installed"; exit 77; }
A="$B/leank-bench accuracy"
# vt needs neither corpus nor word lists
$B/leank-prep -t "$M" --task vt -l 600 -n 3 -s 3 -o "$T/s.smp" 2>"$T/err" || { fail "prep: $(cat "$T/err")"; finish; }

# masks: every channel kept; and 32 channels per head except a width-0 head
for l in 0 1 2 3 4 5; do printf '%d\t0\t128\t%s\n' $l "$(seq -s, 0 127)"; done >"$T/all.tsv"
for l in 0 1 2 3 4 5; do
    if [ $l = 1 ]; then printf '1\t0\t0\t\n'; else printf '%d\t0\t32\t%s\n' $l "$(seq -s, 32 63)"; fi
done >"$T/half.tsv"
$B/leank-binarize --from-tsv "$T/all.tsv" -o "$T/all.safetensors" -q && $B/leank-binarize --from-tsv "$T/half.tsv" --head-dim 128 -o "$T/half.safetensors" -q \
    || fail "masks from TSV"

$A -m "$M" "$T/s.smp" --mask "$T/all.safetensors" --sink 4 --recent 16 -o "$T/all.jsonl" --json >"$T/all.json" 2>"$T/err" \
    || fail "all-channels run: $(cat "$T/err")"
[ "$(jq -s 'map(select(.answers.dense != .answers.all)) | length' "$T/all.jsonl")" = 0 ] && [ "$(wc -l <"$T/all.jsonl")" = 3 ] &&
    ok "all channels kept: pruned answers = dense answers" || fail "all-channels answers differ: $(cat "$T/all.jsonl")"
# scores are RULER's string_match_all of the texts written
python3 - "$T/all.jsonl" "$T/all.json" <<'PY' && ok "scores = share of references found" || fail "scores"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
for r in rows:
    for k in ("dense", "all"):
        want = sum(x.lower() in r["answers"][k].lower() for x in r["refs"]) / len(r["refs"])
        assert abs(r["scores"][k] - want) < 1e-9, r
t = json.load(open(sys.argv[2]))
assert t["n"] == 3 and abs(t["scores"]["dense"] - 100 * sum(r["scores"]["dense"] for r in rows) / 3) < 1e-6, t
assert t["rows"][0]["task"] == "vt" and t["rows"][0]["n"] == 3 and list(t["masks"]) == ["all"]
PY

# threads: the same answers
$A -m "$M" "$T/s.smp" --mask "$T/half.safetensors" --sink 4 --recent 16 -j 1 -o "$T/h1.jsonl" >"$T/h1.txt" 2>/dev/null &&
    $A -m "$M" "$T/s.smp" --mask "$T/half.safetensors" --sink 4 --recent 16 -j 3 -o "$T/h3.jsonl" >/dev/null 2>&1 &&
    cmp -s "$T/h1.jsonl" "$T/h3.jsonl" && ok "-j 3 answers = -j 1 answers" || fail "threads change answers"
# the pruned cache is smaller: 32 of 128 K channels for middle tokens, one head without middle K/V
kv=$(awk '$1 == "vt" { print $NF }' "$T/h1.txt" | tr -d %)
awk -v k="$kv" 'BEGIN { exit !(k > 40 && k < 80) }' && ok "pruned KV ${kv}% of dense" || fail "KV ratio '$kv': $(cat "$T/h1.txt")"
grep -q "^all " "$T/h1.txt" && grep -q "^task .* half  *KV half$" "$T/h1.txt" && ok "table" || fail "table: $(cat "$T/h1.txt")"
# several masks in one run: one column each, each the same answers as alone
$A -m "$M" "$T/s.smp" --mask "$T/all.safetensors" --mask "$T/half.safetensors" --sink 4 --recent 16 -j 2 \
    -o "$T/two.jsonl" >/dev/null 2>&1 || fail "two masks run"
python3 - "$T/two.jsonl" "$T/all.jsonl" "$T/h1.jsonl" <<'PY' && ok "two masks side by side" || fail "two masks"
import json, sys
two, alone_all, alone_half = ([json.loads(l) for l in open(f)] for f in sys.argv[1:])
assert len(two) == 3
for t, a, h in zip(two, alone_all, alone_half):
    assert list(t["answers"]) == ["dense", "all", "half"], t
    assert t["answers"]["all"] == a["answers"]["all"] and t["answers"]["half"] == h["answers"]["half"], (t, a, h)
PY

# errors: no partial outputs file
expect_fail 2 "--sink without --mask" -- $A -m "$M" "$T/s.smp" --sink 4 -o "$T/x.jsonl"
# an outputs file that cannot be written is refused before the model is loaded (issue 16)
expect_fail 4 "outputs in a missing directory" -- $A -m "$T/no-model" "$T/s.smp" -o "$T/no/dir/x.jsonl"
grep -q "no/dir/x.jsonl: cannot create" "$T/err" && ok "the refusal names the outputs file" ||
    fail "outputs checked after the model: $(cat "$T/err")"
expect_fail 4 "missing samples" -- $A -m "$M" "$T/nope.smp" -o "$T/x.jsonl"
printf 'LEANKSMPxx' >"$T/bad.smp"
expect_fail 3 "not a samples file" -- $A -m "$M" "$T/bad.smp" -o "$T/x.jsonl"
if [ -f "$S/models/stories260K/tokenizer.json" ]; then
    expect_fail 3 "samples of another tokenizer" -- $A -m "$S/models/stories260K" "$T/s.smp" -o "$T/x.jsonl"
    # the message names the samples' own fingerprint (header bytes 16-23, little-endian)
    fp=$(od -An -tx8 -j16 -N8 "$T/s.smp" | tr -d ' ')
    $A -m "$S/models/stories260K" "$T/s.smp" 2>&1 >/dev/null | grep -q "fingerprint $fp," &&
        ok "fingerprint $fp in the message" || fail "fingerprint message: $($A -m "$S/models/stories260K" "$T/s.smp" 2>&1)"
else
    echo "skip: samples of another tokenizer ($S absent)"
fi
for l in 0 1 2 3 4 5; do printf '%d\t0\t64\t%s\n' $l "$(seq -s, 0 63)"; done >"$T/hd64.tsv"
$B/leank-binarize --from-tsv "$T/hd64.tsv" --head-dim 64 -o "$T/hd64.safetensors" -q || fail "head_dim 64 mask"
expect_fail 3 "mask of another head_dim" -- $A -m "$M" "$T/s.smp" --mask "$T/hd64.safetensors" -o "$T/x.jsonl"
# killed mid-run: the temporary outputs file goes too
# (samples long enough to take many seconds; the signal once its temporary file exists)
$B/leank-prep -t "$M" --task vt -l 4000 -n 8 -s 5 -o "$T/long.smp" 2>/dev/null || fail "prep of long samples"
$A -m "$M" "$T/long.smp" --mask "$T/all.safetensors" --mask "$T/half.safetensors" -j 1 \
    -o "$T/x.jsonl" >/dev/null 2>&1 &
pid=$!
for i in $(seq 100); do ls "$T"/x.jsonl*tmp* >/dev/null 2>&1 && break; sleep 0.1; done
sleep 0.3
kill -TERM $pid
wait $pid
rc=$?
[ $rc = 143 ] && ok "SIGTERM: exit 143" || fail "SIGTERM: exit $rc (finished before the signal?)"
[ ! -e "$T/x.jsonl" ] && ! ls "$T"/x.jsonl*tmp* >/dev/null 2>&1 && ok "no outputs file left" || fail "partial outputs file: $(ls "$T")"
finish
