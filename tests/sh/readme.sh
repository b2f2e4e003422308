# readme.sh - the README's command lines run as written, on leank-mini and the
# shared data instead of an 8B model: the real-model recipe, its accuracy
# check, the pipe. Sizes are cut (lengths, sample counts, training steps) and
# the Llama-3 chat template becomes none (leank-mini has no chat tokens); the
# options, file names and the order of the steps are the README's.
. "$LEANK_TOP/tests/lib.sh"
need_shared
R=$LEANK_TOP/README.md
M=$LEANK_TOP/data/models/leank-mini
cd "$T"
# indented blocks: the one that starts with M=/models/..., then the accuracy lines, then the pipe
awk '/^    M=\/models\//{on=1} on && /^$/{exit} on' "$R" >recipe
awk '/^    leank-prep .*-o eval.smp$/{on=1} on && /^$/{exit} on' "$R" >eval
awk '/^    leank-prep .*-o - \|$/{on=1} on && /^$/{exit} on' "$R" >pipe
[ "$(grep -c leank- recipe)" -ge 6 ] && [ "$(grep -c leank- eval)" -eq 2 ] && [ "$(grep -c leank- pipe)" -eq 3 ] ||
    { fail "README blocks not found: $(cat recipe eval pipe)"; finish; }
cat recipe eval pipe | sed -E \
    -e 's|^    ||' \
    -e "s|^M=/models/.*|M=$M|" -e "s|^D=.*|D=$S/data|" \
    -e 's/--template llama3/--template none/g' \
    -e 's/llama3\.1-8b-instruct\.yaml/leank-mini.yaml/g' \
    -e 's/--lengths 16384|-l 16384|-l 4096/-l 700/g' -e 's/--context 131072/--context 4096/' \
    -e 's/ -n (200|300|50) / -n 2 /' \
    -e 's/^( *)leank-train /\1leank-train --steps 2 /' \
    -e 's/^leank-decode /leank-decode --max-tokens 4 /' \
    -e "s|heldout.json|\$D/paulgraham/PaulGrahamEssays.json|; s|essays.json|\$D/paulgraham/PaulGrahamEssays.json|; s|-w words/|-w \$D/words|" >run.sh
printf 'Where was the cat?\n' >question.txt
PATH=$B:$PATH bash -e run.sh >log 2>&1 && ok "README recipe, accuracy check and pipe ran as written" ||
    { tail -n 20 log; fail "a README command failed"; }
for f in train.smp alpha1.safetensors alpha2.safetensors mask.safetensors plan.safetensors eval.smp answers.jsonl; do
    [ -s "$f" ] || fail "the README recipe made no $f"
done
grep -q '^KV [0-9.]* % of dense' log && ok "pack reported in the one wording" || fail "no pack report"
finish
