#!/usr/bin/env bash
# Real pretrained models (dev/real/README.md): leank-decode --device cpu gives
# HF transformers' input ids (tokenizer and Qwen chat template) and greedy ids
# on the prompts of tests/data/real/prompts.json (references made by
# dev/real/ref.py: tests/data/real/NAME.json); the logits are test_real's.
# Models: $LEANK_REAL_MODELS/NAME (default ~/.cache/leank/models/NAME), made by
# dev/models/get.sh. Skips (77) when none is there, after checking get.sh's
# argument errors (no network needed).
. "$LEANK_TOP/tests/lib.sh"
D=$B/leank-decode
R=$LEANK_TOP/tests/data/real
G=$LEANK_TOP/dev/models/get.sh
command -v jq >/dev/null || { echo "skip: jq not installed"; exit 77; }

# get.sh: usage errors are one line on stderr, exit 1, before any download
expect_fail 1 "get.sh without a name" -- "$G"
expect_fail 1 "get.sh unknown model" -- "$G" llama-7b "$T/x"
expect_fail 1 "get.sh bad --dtype" -- "$G" qwen2.5-coder-0.5b-instruct "$T/x" --dtype f8
[ ! -e "$T/x" ] && ok "get.sh: nothing made on a usage error" || fail "get.sh made $T/x on a usage error"

root=${LEANK_REAL_MODELS:-$HOME/.cache/leank/models}
models=()
for n in qwen2.5-coder-0.5b-instruct qwen2.5-coder-1.5b-instruct; do
    if [ -f "$root/$n/config.json" ]; then models+=("$n"); else echo "note: $root/$n absent (dev/models/get.sh $n $root/$n)"; fi
done
if [ ${#models[@]} = 0 ]; then
    [ $fails = 0 ] || finish
    echo "skip: no real model under $root (dev/models/get.sh NAME DIR; LEANK_REAL_MODELS=DIR)"
    exit 77
fi

P=$R/prompts.json
np=$(jq '.prompts | length' "$P")
for n in "${models[@]}"; do
    X=$R/$n.json
    [ -f "$X" ] || { fail "$X absent (dev/real/ref.py model $n DIR)"; continue; }
    for i in $(seq 0 $((np - 1))); do
        name=$(jq -r ".prompts[$i].name" "$P")
        jq -j ".prompts[$i].prompt" "$P" >"$T/prompt"
        tmpl=$(jq -r ".prompts[$i].template" "$P")
        max=$(jq -r ".prompts[$i].max_new" "$P")
        sys=()
        [ "$(jq -r ".prompts[$i] | has(\"system\")" "$P")" = true ] && sys=(--system "$(jq -r ".prompts[$i].system" "$P")")
        want_in=$(jq -r ".prompts[$i].input_ids | map(tostring) | join(\" \")" "$P")
        # --ids prints no EOS: HF's greedy ids less a final stop id (leank stops on the same ids)
        want_out=$(jq -r ".stop_ids as \$s | .cases[] | select(.name == \"$name\") | .greedy_ids |
            (if (.[-1] as \$l | \$s | index(\$l)) then .[:-1] else . end) | map(tostring) | join(\" \")" "$X")
        jq -e ".cases[] | select(.name == \"$name\")" "$X" >/dev/null || { fail "$n $name: no case in $X"; continue; }
        start=$(date +%s)
        if ! "$D" -m "$root/$n" --device cpu --template "$tmpl" "${sys[@]}" --max-tokens "$max" --ids --echo -q \
             --prompt-file "$T/prompt" >"$T/got" 2>"$T/err"; then
            fail "$n $name: leank-decode exit $?: $(head -n1 "$T/err")"; continue
        fi
        got=$(sed 's/ *$//' "$T/got")
        nin=$(jq ".prompts[$i].input_ids | length" "$P")
        got_in=$(echo "$got" | tr ' ' '\n' | head -n "$nin" | paste -sd' ')
        got_out=$(echo "$got" | tr ' ' '\n' | tail -n +$((nin + 1)) | paste -sd' ')
        if [ "$got_in" != "$want_in" ]; then
            fail "$n $name: input ids differ from HF's ($nin expected, $(echo "$got" | wc -w) ids in all)"
        elif [ "$got_out" != "$want_out" ]; then
            fail "$n $name: greedy ids differ from HF's: got '$got_out', HF '$want_out'"
        else
            ok "$n $name: $nin input ids and $(echo "$want_out" | wc -w) greedy ids equal HF's ($(( $(date +%s) - start )) s)"
        fi
        ans=$(jq -r ".prompts[$i].answer // empty" "$P")
        if [ -n "$ans" ]; then
            text=$(jq -r ".cases[] | select(.name == \"$name\") | .greedy_text" "$X")
            case $text in *"$ans"*) echo "note: $n $name: the answer ($ans) is in HF's and leank's greedy text" ;;
                               *) echo "note: $n $name: the model misses the answer $ans: '$text'" ;; esac
        fi
    done
done
finish
