# python.sh - the examples of docs/python.md run as written (reading alpha,
# masks and plans with Python's safetensors; the TSV export for the official
# LeanK code), on files made the way the page says. Skipped, saying so,
# without Python's safetensors and numpy.
. "$LEANK_TOP/tests/lib.sh"
DOC=$LEANK_TOP/docs/python.md
[ -f "$DOC" ] || { fail "docs/python.md missing"; finish; }
if ! python3 -c 'import safetensors, numpy' 2>/dev/null; then
    echo "skip: python3 has no safetensors/numpy (pip install safetensors numpy, or apt-get install python3-safetensors): docs/python.md examples not run"
    exit 77
fi
M=$LEANK_TOP/data/models/leank-mini
cd "$T"
# the recipe at the top of the page, as written (with bin/ for leank-*)
sed -n '/^    M=data\/models\/leank-mini$/,/^$/p' "$DOC" | sed 's/^    //' >recipe.sh
[ "$(grep -c '^leank-' recipe.sh)" -ge 5 ] || fail "the page's recipe was not found: $(cat recipe.sh)"
(PATH=$B:$PATH; M=$M; sed -i '1d' recipe.sh; . ./recipe.sh) >log 2>&1 || { cat log; fail "the page's recipe failed"; finish; }
# every ```python block, in order; those starting with "# needs torch" are shown, not run
awk '/^```python$/ { n++; f = sprintf("block%02d.py", n); inb = 1; next } /^```$/ { inb = 0; next } inb { print > f }' "$DOC"
run=0
for b in block*.py; do
    if head -n1 "$b" | grep -q '^# needs torch'; then echo "not run (needs torch): $b"; continue; fi
    if python3 "$b" >"$b.out" 2>&1; then run=$((run + 1)); ok "$b: $(head -n1 "$b.out")"; else fail "$b: $(tail -n 5 "$b.out")"; fi
done
[ $run -ge 4 ] || fail "only $run examples ran (expected alpha, mask, plan, TSV)"
[ -s leank_pattern.npy ] && ok "TSV -> leank_pattern.npy for the official code" || fail "no leank_pattern.npy"
finish
