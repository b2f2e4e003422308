#!/bin/sh
# leank-mini: our tokenizer reproduces HF tokenizers' ids on held-out text
# (tests/data/mini/heldout.{txt,ids}, ids made by HF tokenizers 0.23), and the
# CPU engine's logits match PyTorch fp32 (the C unit test test_mini).
# Usage: tests/sh/mini.sh [BIN_DIR]   (default bin/); run from the repo root.
B=${1:-${LEANK_BIN:-bin}}
M=data/models/leank-mini
D=tests/data/mini
[ -f "$M/tokenizer.json" ] || { echo "skip: $M absent"; exit 77; }
[ -x "$B/leank-prep" ] || { echo "skip: $B/leank-prep not built"; exit 77; }
tmp=$(mktemp) || exit 1
trap 'rm -f "$tmp"' EXIT
"$B/leank-prep" -t "$M/tokenizer.json" --encode < "$D/heldout.txt" > "$tmp" || { echo "FAIL: leank-prep --encode"; exit 1; }
if ! cmp -s "$tmp" "$D/heldout.ids"; then
    echo "FAIL: leank-prep --encode ids differ from HF tokenizers:"; diff "$D/heldout.ids" "$tmp" | head -5; exit 1
fi
echo "ok: tokenizer ids ($(wc -l < "$D/heldout.ids") ids) equal HF tokenizers'"
# the shipped LeanK mask (learned on the GPU at 16K: dev/mini/README.md) fits the model
if [ -x "$B/leank-pack" ]; then
    "$B/leank-pack" -m "$M" --mask "$M/leank-mask.safetensors" --context 16384 > "$tmp" 2>&1 ||
        { echo "FAIL: leank-pack on $M/leank-mask.safetensors: $(head -n1 "$tmp")"; exit 1; }
    grep -q "37.50 % of K channels kept, 0 of 6 heads width 0" "$tmp" && grep -q "sink 64 + recent 256" "$tmp" ||
        { echo "FAIL: leank-mask.safetensors report:"; head -n3 "$tmp"; exit 1; }
    echo "ok: the shipped mask: 37.5 % of K channels, windows 64 + 256"
fi
T=$B/tests/test_mini
[ -x "$T" ] || T=$(dirname "$B")/bin/tests/test_mini
if [ -x "$T" ]; then
    "$T"; rc=$?
    [ $rc -eq 77 ] && echo "skip: test_mini skipped its logits check"
    [ $rc -eq 0 ] || [ $rc -eq 77 ] || { echo "FAIL: test_mini (engine logits vs PyTorch)"; exit 1; }
else
    echo "skip: $B/tests/test_mini not built; logits check not run here"
fi
