# options.sh - one meaning per short option across the toolkit (as leank(7)
# says), --progress on every long-running program, and the checks of
# issue 15: --top-p 0, leank-bench prep --help, --batch echoes id, chat
# templates the tokenizer lacks.
. "$LEANK_TOP/tests/lib.sh"
M=$LEANK_TOP/data/models/leank-mini
cd "$T"
# every "-x, --long" line of every --help: one long name per letter
{
    for p in prep train binarize pack decode; do "$B/leank-$p" --help; done
    for c in tokenize decode prep accuracy; do "$B/leank-bench" $c --help; done
} | sed -nE 's/^ +-([a-zA-Z]), --([a-z-]+).*/\1 \2/p' | sort -u >letters
# the same meaning spelled two ways: --output/--outputs, --lengths/--length
sed -E 's/ outputs$/ output/; s/ length$/ lengths/' letters | sort -u >meanings
awk '{ n[$1]++; l[$1] = l[$1] " --" $2 } END { for (k in n) if (n[k] > 1) print "-" k ":" l[k] }' meanings >clash
[ -s clash ] && fail "short options with two meanings: $(tr '\n' ';' <clash)" || ok "$(wc -l <meanings) short options, one meaning each"
for want in "m model" "t tokenizer" "c config" "n samples" "j threads" "k mask" "o output" "s seed"; do
    grep -qx "$want" meanings || fail "-${want% *} is not --${want#* } anywhere"
    grep -q -- "^\\.B \\\\-${want% *}\$" "$LEANK_TOP/man/leank.7" || fail "leank.7 does not document -${want% *}"
done
# the former meanings point to the long option
expect_fail 2 "leank-prep -c (corpus)" -- "$B/leank-prep" -t "$M" -c x.json -T vt -l 300 -o x.smp
grep -q -- '--corpus x.json' "$T/err" || fail "prep -c does not name --corpus"
expect_fail 2 "leank-decode -t (template)" -- "$B/leank-decode" -m "$M" -t llama3 -p hi
grep -q -- '--template llama3' "$T/err" || fail "decode -t does not name --template"
expect_fail 2 "leank-decode -n (tokens)" -- "$B/leank-decode" -m "$M" -n 4 -p hi
expect_fail 2 "leank-bench accuracy -n" -- "$B/leank-bench" accuracy -m "$M" -n 4 x.smp
# --progress on every program that runs long
for p in "leank-prep" "leank-train" "leank-decode" "leank-bench tokenize" "leank-bench decode" "leank-bench prep" \
         "leank-bench accuracy"; do
    $B/$p --help | grep -q -- '--progress' || fail "$p --help has no --progress"
done
ok "--progress: prep, train, decode, bench tokenize/decode/prep/accuracy"
# prefill progress (forced; the prompt is 2K tokens)
"$B/leank-decode" -m "$M" -f "$LEANK_TOP/tests/data/mini/heldout.txt" --max-tokens 1 --progress -q >/dev/null 2>err
grep -q 'prefill [0-9]* tokens, layer 6/6' err && ok "decode --progress: prefill layer by layer" || fail "no prefill progress: $(head -c 300 err)"
"$B/leank-decode" -m "$M" -f "$LEANK_TOP/tests/data/mini/heldout.txt" --max-tokens 1 -q >/dev/null 2>err
grep -q 'prefill' err && fail "prefill progress without a terminal or --progress"
# --top-p 0 is refused, as leank-decode(1) says; so is top_p 0 in a batch
expect_fail 2 "--top-p 0" -- "$B/leank-decode" -m "$M" --top-p 0 -p hi
echo '{"prompt": "Once", "top_p": 0}' >b0.jsonl
expect_fail 3 "batch top_p 0" -- "$B/leank-decode" -m "$M" --batch b0.jsonl
# leank-bench prep --help lists its options
h=$("$B/leank-bench" prep --help)
for o in --tokenizer --corpus --words --data --task --samples --length --json --progress; do
    echo "$h" | grep -q -- "$o" || fail "leank-bench prep --help lacks $o"
done
ok "leank-bench prep --help lists its options"
# --batch results echo the request's id (any JSON value)
printf '%s\n' '{"id": "q-1", "prompt": "Once", "max_tokens": 2}' '{"prompt": "Once", "max_tokens": 2}' \
    '{"id": 7, "ids": [1, 2], "max_tokens": 2}' >b.jsonl
"$B/leank-decode" -m "$M" --batch b.jsonl -q >res 2>err || fail "batch: $(cat err)"
python3 - res <<'PY' && ok "--batch echoes id" || fail "--batch id: $(cat res)"
import json, sys
r = [json.loads(l) for l in open(sys.argv[1])]
assert [x.get("id") for x in r] == ["q-1", None, 7], r
PY
# a chat template whose special tokens the tokenizer lacks (leank-mini has no <|start_header_id|>)
expect_fail 3 "llama3 template, tokenizer without its tokens" -- "$B/leank-decode" -m "$M" --template llama3 -p hi
grep -q '<|start_header_id|>' "$T/err" || fail "the refusal does not name the token"
echo '{"prompt": "hi", "template": "qwen"}' >bq.jsonl
expect_fail 3 "batch request with the qwen template" -- "$B/leank-decode" -m "$M" --batch bq.jsonl
expect_fail 3 "leank-prep --template llama3 on leank-mini" -- "$B/leank-prep" -t "$M" --template llama3 -T vt -l 300 -n 1 -o x.smp
[ -e x.smp ] && fail "refused template left x.smp"
finish
