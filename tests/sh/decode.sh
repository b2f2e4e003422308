#!/usr/bin/env bash
# leank-decode end to end on stories260K: greedy text and ids equal HF's
# (expected.json), --json/--batch, masked decoding, and the error paths.
. "$LEANK_TOP/tests/lib.sh"
need_shared
M=$S/models/stories260K
[ -f "$M/expected.json" ] || { echo "skip: $M/expected.json not found"; exit 77; }
command -v jq >/dev/null || { echo "skip: jq not installed"; exit 77; }
D=$B/leank-decode
X=$M/expected.json

# greedy 64 tokens: --echo prints the prompt, so stdout is HF's decode(input + output)
n=$(jq '.cases | length' "$X")
for i in $(seq 0 $((n - 1))); do
    prompt=$(jq -r ".cases[$i].prompt // \"\"" "$X")
    jq -j ".cases[$i].text" "$X" >"$T/want"
    if "$D" -m "$M" -p "$prompt" -n 64 --echo -q >"$T/got" 2>"$T/err"; then
        cmp -s "$T/want" "$T/got" && ok "case $i text" || fail "case $i text: got '$(head -c 200 "$T/got")'"
    else
        fail "case $i: exit $?: $(cat "$T/err")"
    fi
    jq -r "(.cases[$i].input_ids + .cases[$i].output_ids) | map(tostring) | join(\" \")" "$X" >"$T/want"
    "$D" -m "$M" -p "$prompt" -n 64 --ids --echo -q | sed 's/ *$//' >"$T/got"
    cmp -s "$T/want" "$T/got" && ok "case $i ids" || fail "case $i ids: $(cat "$T/got")"
done

# the prompt on stdin and from a file, the same result
jq -r '.cases[1].prompt' "$X" >"$T/prompt"
printf '%s' "$(cat "$T/prompt")" | "$D" -m "$M" -n 16 -q >"$T/a"
"$D" -m "$M" --prompt-file "$T/prompt" -n 16 -q >"$T/b" 2>/dev/null
"$D" -m "$M" -p "$(cat "$T/prompt")" -n 16 -q >"$T/c"
cmp -s "$T/a" "$T/c" && ok "stdin prompt" || fail "stdin prompt differs"
# (the file keeps jq's trailing newline: a different prompt, but it must run)
[ -s "$T/b" ] && ok "--prompt-file" || fail "--prompt-file produced nothing"

# --json: one object with the generated ids and text
"$D" -m "$M" -p "$(jq -r '.cases[2].prompt' "$X")" -n 64 --json >"$T/j" 2>"$T/err" || fail "--json exit $?"
[ "$(jq -c .ids "$T/j")" = "$(jq -c '.cases[2].output_ids' "$X")" ] && ok "--json ids" || fail "--json ids"
[ "$(jq .generated_tokens "$T/j")" = 64 ] && [ "$(jq .prompt_tokens "$T/j")" = 17 ] &&
    ok "--json counts" || fail "--json counts: $(cat "$T/j")"

# --batch: ids requests give HF's output ids; one line per request
jq -c '.cases[] | {ids: .input_ids, max_tokens: 64}' "$X" >"$T/req"
echo '{"prompt": "Once upon a time", "max_tokens": 5, "temperature": 0.9, "top_k": 20, "seed": 7}' >>"$T/req"
"$D" -m "$M" --batch "$T/req" >"$T/res" 2>"$T/err" || fail "--batch exit $?: $(cat "$T/err")"
[ "$(wc -l <"$T/res")" = $((n + 1)) ] && ok "--batch lines" || fail "--batch: $(wc -l <"$T/res") lines"
for i in $(seq 0 $((n - 1))); do
    [ "$(sed -n "$((i + 1))p" "$T/res" | jq -c .ids)" = "$(jq -c ".cases[$i].output_ids" "$X")" ] ||
        fail "--batch case $i ids"
done
[ "$(tail -n1 "$T/res" | jq .generated_tokens)" = 5 ] && ok "--batch sampled request" || fail "--batch sampled"
# sampling is reproducible for a seed
"$D" -m "$M" -p "Once" -n 20 --temperature 1 --top-p 0.9 --seed 11 -q >"$T/s1"
"$D" -m "$M" -p "Once" -n 20 --temperature 1 --top-p 0.9 --seed 11 -q >"$T/s2"
cmp -s "$T/s1" "$T/s2" && ok "seeded sampling reproducible" || fail "seeded sampling differs"

# generation stops at the model's context (512 positions: 5 prompt + 508 generated)
"$D" -m "$M" -p "Once upon a time" -n 100000 --json >"$T/j" 2>/dev/null
[ "$(jq .generated_tokens "$T/j")" = 508 ] && ok "stops at the context" || fail "context: $(jq -c '{generated_tokens,stop}' "$T/j")"

# masks: every channel kept = dense, bit for bit; a pruned mask runs and saves memory
{ echo "# leank-mask n_layers=5 n_kv_heads=4 head_dim=8"
  for l in 0 1 2 3 4; do for h in 0 1 2 3; do printf '%d\t%d\t8\t0,1,2,3,4,5,6,7\n' $l $h; done; done; } >"$T/all.tsv"
{ echo "# leank-mask n_layers=5 n_kv_heads=4 head_dim=8"
  for l in 0 1 2 3 4; do printf '%d\t0\t0\t\n%d\t1\t4\t0,1,4,5\n%d\t2\t2\t3,7\n%d\t3\t8\t0,1,2,3,4,5,6,7\n' $l $l $l $l; done; } >"$T/half.tsv"
p=$(jq -r '.cases[3].prompt' "$X")
"$D" -m "$M" -p "$p" -n 100 -q >"$T/dense"
"$D" -m "$M" -p "$p" -n 100 -q --mask "$T/all.tsv" --sink 4 --recent 16 >"$T/all"
cmp -s "$T/dense" "$T/all" && ok "all-channels mask = dense" || fail "all-channels mask differs from dense"
"$D" -m "$M" -p "$p" -n 100 --mask "$T/half.tsv" --sink 4 --recent 16 >"$T/half" 2>"$T/err" &&
    grep -Eq "KV [0-9.]+ % of dense, [0-9.]+ % saved" "$T/err" && ok "pruned decode: $(grep -o 'KV .*' "$T/err" | head -n1)" ||
    fail "pruned decode: $(cat "$T/err")"
# a plan carries its windows: packed with sink 4 + recent 16, decode uses them (not 128 + 1024) and
# its KV bytes are leank-pack's for the same plan, dtype (f32 on the CPU) and length (13 + 99 = 112)
"$B/leank-pack" -k "$T/half.tsv" -m "$M" --sink 4 --recent 16 --dtype f32 --context 112 -o "$T/plan.st" --json >"$T/pack.json"
"$D" -m "$M" -p "$p" -n 100 --plan "$T/plan.st" --device cpu --json >"$T/pj" 2>"$T/err" || fail "--plan: $(cat "$T/err")"
want=$(jq .at_context.kv_pruned "$T/pack.json")
got=$(jq .kv_bytes "$T/pj")
[ -n "$got" ] && [ "$got" = "$want" ] && ok "--plan KV bytes = leank-pack's ($got)" || fail "--plan KV bytes $got, pack says $want: $(cat "$T/pack.json")"
cmp -s "$T/half" <(jq -j .text "$T/pj") && ok "--plan = --mask with the same windows" || fail "--plan text differs from --mask"
"$D" -m "$M" -p "$p" -n 100 --plan "$T/plan.st" --sink 2 >/dev/null 2>"$T/err"
grep -q "override the plan's windows: sink 2, recent 16" "$T/err" && ok "--sink over a plan is said" || fail "override not said: $(cat "$T/err")"
"$D" -m "$M" -p "$p" -n 2 --mask "$T/half.tsv" >/dev/null 2>"$T/err"
grep -q "exactly dense" "$T/err" && ok "short run within sink + recent is said to be dense" || fail "no dense note: $(cat "$T/err")"
grep -q "KV 100.0 % of dense, 0.0 % saved" "$T/err" && ok "KV wording" || fail "KV wording: $(cat "$T/err")"

# errors: one line, the right exit code, nothing on stdout
expect_fail 2 "no model" -- "$D" -p hi
expect_fail 2 "unknown template" -- "$D" -m "$M" -p hi --template nope
expect_fail 2 "bad --top-p" -- "$D" -m "$M" -p hi --top-p 2
expect_fail 2 "--sink without --mask" -- "$D" -m "$M" -p hi --sink 4
expect_fail 4 "missing model dir" -- "$D" -m "$T/none" -p hi
echo '{"prompt": 5}' >"$T/bad"
expect_fail 3 "bad batch request" -- "$D" -m "$M" --batch "$T/bad"
echo '{"ids": [1, 99999]}' >"$T/bad"
expect_fail 3 "batch id out of range" -- "$D" -m "$M" --batch "$T/bad"
{ echo "# leank-mask n_layers=2 n_kv_heads=4 head_dim=8"; printf '0\t0\t0\t\n0\t1\t0\t\n0\t2\t0\t\n0\t3\t0\t\n1\t0\t0\t\n1\t1\t0\t\n1\t2\t0\t\n1\t3\t0\t\n'; } >"$T/small.tsv"
expect_fail 3 "mask of another model" -- "$D" -m "$M" -p hi --mask "$T/small.tsv"
# a prompt that already starts with BOS gets no second one (template none)
MM=$LEANK_TOP/data/models/leank-mini
if [ -f "$MM/config.json" ]; then
    a=$("$D" -m "$MM" -p "The cat" -n 4 --json | jq -c '[.prompt_tokens, .ids]')
    b=$("$D" -m "$MM" -p "<|begin_of_text|>The cat" -n 4 --json | jq -c '[.prompt_tokens, .ids]')
    [ "$a" = "$b" ] && [ "$(echo "$a" | jq '.[0]')" = 3 ] && ok "BOS not doubled" || fail "BOS: '$a' vs '$b'"
fi
"$D" --help | grep -q -- "--batch" && ok "--help" || fail "--help"
"$D" --version | grep -q leank && ok "--version" || fail "--version"
finish
