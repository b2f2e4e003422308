#!/usr/bin/env bash
# demo.sh - the whole leank pipeline on one model, end to end, in a few minutes
# on a laptop CPU: samples -> alpha (stage 1, stage 2) -> mask -> plan -> a
# long-context question answered dense and with the pruned cache.
#   dev/demo.sh [MODEL_DIR [OUT_DIR]]   (default: data/models/leank-mini, demo/)
# Environment: LEN (context tokens, default 2048), STEPS1/STEPS2 (training
# steps, default 12/6), CONF (training config), RATIO/ALIGN (mask, default
# 0.7/32), BIN (programs, default bin/).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
M=${1:-$top/data/models/leank-mini}
O=${2:-demo}
B=${BIN:-$top/bin}
LEN=${LEN:-2048}
CONF=${CONF:-$top/data/configs/leank-mini.yaml}
RATIO=${RATIO:-0.7}
ALIGN=${ALIGN:-32}
[ -f "$M/config.json" ] || { echo "demo: $M: no config.json (expected a Hugging Face model directory)" >&2; exit 3; }
mkdir -p "$O"
step() { printf '\n== %s\n' "$*"; }

step "leank-prep: training samples (uuid haystacks) and one variable-tracking question, $LEN tokens"
"$B/leank-prep" -t "$M" --task train-uuid --lengths "$LEN" -n 8 -o "$O/train.smp"
"$B/leank-prep" -t "$M" --task vt --lengths "$LEN" -n 1 --seed 7 -o "$O/eval.smp"
"$B/leank-prep" -t "$M" --dump "$O/eval.smp" -o "$O/eval.jsonl"
expected=$(python3 -c 'import json,sys; l=open(sys.argv[1]).read().splitlines(); d=json.loads(l[1]); open(sys.argv[2],"w").write(d["prompt"]); print(d["answer"])' \
    "$O/eval.jsonl" "$O/question.txt")
echo "question asks for: $expected"

sink=$(( LEN / 64 )); recent=$(( LEN / 8 ))
step "leank-train: stage 1 (${STEPS1:-12} steps), sink $sink, recent $recent"
"$B/leank-train" -m "$M" -c "$CONF" --sink $sink --recent $recent \
    --steps "${STEPS1:-12}" --progress "$O/train.smp" -o "$O/alpha1.safetensors"
step "leank-train: stage 2 (${STEPS2:-6} steps) through the binary mask"
"$B/leank-train" -m "$M" -c "$CONF" --sink $sink --recent $recent \
    --stage2 --init "$O/alpha1.safetensors" --steps "${STEPS2:-6}" --progress "$O/train.smp" -o "$O/alpha2.safetensors"

step "leank-binarize: $RATIO of K channels pruned, widths multiples of $ALIGN"
"$B/leank-binarize" "$O/alpha2.safetensors" --ratio "$RATIO" --align "$ALIGN" -o "$O/mask.safetensors" --plot "$O/alpha.svg"
"$B/leank-binarize" "$O/mask.safetensors" --report

step "leank-pack: cache plan at $LEN tokens"
"$B/leank-pack" --mask "$O/mask.safetensors" -m "$M" --sink $sink --recent $recent --context "$LEN" -o "$O/plan.safetensors"

# The answer is printed, then the statistics leank-decode writes to stderr.
answer() {
    "$B/leank-decode" -m "$M" --prompt-file "$O/question.txt" -n 32 "$@" 2>"$O/decode.err"
    echo; cat "$O/decode.err"
}
step "leank-decode: dense (expected: $expected)"
answer
step "leank-decode: LeanK pruned cache (a mask from a few dozen steps; leank-train's defaults run hundreds)"
answer --mask "$O/mask.safetensors" --sink $sink --recent $recent
printf '\ndemo: outputs in %s/ (alpha.svg is the learned alpha as a heatmap)\n' "$O"
