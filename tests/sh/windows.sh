# windows.sh - the cache windows travel with the mask (leank-train's alpha ->
# leank-binarize's mask, both forms -> leank-pack's plan), pipes between the
# programs, one memory wording, binary outputs refuse a terminal.
# leank-mini (data/models) only: runs without the shared data.
. "$LEANK_TOP/tests/lib.sh"
M=$LEANK_TOP/data/models/leank-mini
C=$LEANK_TOP/data/configs/leank-mini.yaml
[ -f "$M/config.json" ] || { echo "skip: $M absent"; exit 77; }
P=$B/leank-prep TR=$B/leank-train BZ=$B/leank-binarize PK=$B/leank-pack
cd "$T"

# ---- pipes: leank-prep -o - | leank-train -  ==  the same through a file, with the defaults
"$P" -t "$M" -T train-uuid -l 300 -n 3 -o s.smp || fail "prep"
"$P" -t "$M" -T train-uuid -l 300 -n 3 -o - | "$TR" -m "$M" -c "$C" --steps 12 --sink 8 --recent 32 - -o a_pipe.safetensors 2>err &&
    ok "prep | train - (3 samples, 12 steps, shuffle 8: replayed from memory)" || fail "prep | train -: $(cat err)"
"$TR" -m "$M" -c "$C" --steps 12 --sink 8 --recent 32 s.smp -o a.safetensors 2>/dev/null || fail "train from a file"
cmp -s a.safetensors a_pipe.safetensors && ok "stdin samples give the file's alpha, byte for byte" ||
    fail "alpha from stdin differs from alpha from the file"

# ---- pipes: leank-train -o - | leank-binarize -  ==  the same through a file
"$TR" -m "$M" -c "$C" --steps 12 --sink 8 --recent 32 s.smp -o - 2>/dev/null |
    "$BZ" - --ratio 0.7 --align 32 -o m_pipe.safetensors -q 2>err && ok "train -o - | binarize -" ||
    fail "train | binarize -: $(cat err)"
"$BZ" a.safetensors --ratio 0.7 --align 32 -o m.safetensors -q || fail "binarize a file"
"$BZ" m.safetensors --tsv >m.tsv && "$BZ" m_pipe.safetensors --tsv >m_pipe.tsv && cmp -s m.tsv m_pipe.tsv &&
    ok "the piped mask equals the file's" || fail "piped mask differs: $(diff m.tsv m_pipe.tsv | head -3)"
ls | grep -q 'leank-binarize-stdin' && fail "binarize left its copy of stdin"
ls "${TMPDIR:-/tmp}" 2>/dev/null | grep -q "leank-binarize-stdin.tmp.$" && fail "binarize left its copy of stdin in TMPDIR"
expect_fail 3 "binarize - with empty stdin" -- "$BZ" - --ratio 0.5 -o x.safetensors </dev/null
[ -e x.safetensors ] && fail "empty stdin left x.safetensors"

# ---- the windows: alpha -> mask (safetensors, TSV) -> plan
grep -a -q '"sink":"8","recent":"32"' a.safetensors && ok "alpha records sink 8, recent 32" || fail "alpha metadata lacks the windows"
"$BZ" m.safetensors --report | grep -q '^windows: sink 8, recent 32' && ok "mask records them (from the alpha)" ||
    fail "mask windows: $("$BZ" m.safetensors --report | grep windows)"
grep -q '^# leank-mask .* sink=8 recent=32$' m.tsv && ok "TSV header carries them" || fail "TSV header: $(sed -n 2p m.tsv)"
"$BZ" --from-tsv m.tsv -o back.safetensors -q && "$BZ" back.safetensors --report | grep -q '^windows: sink 8, recent 32' &&
    ok "TSV -> safetensors keeps them" || fail "windows lost through TSV"
"$BZ" m.safetensors --report --json | grep -q '"sink": 8' && ok "--report --json: sink" || fail "--report --json lacks sink"
"$PK" -k m.safetensors -m "$M" --context 2048 -o plan.safetensors >rep 2>err || fail "pack: $(cat err)"
grep -q 'sink 8 + recent 32 tokens full width (the mask' rep && ok "pack takes the mask's windows" || fail "pack windows: $(grep cache: rep)"
[ ! -s err ] || fail "pack with the mask's windows said: $(cat err)"
"$BZ" plan.safetensors --report | grep -q '^windows: sink 8, recent 32' && ok "the plan records them (read back as a mask)" ||
    fail "plan windows"
"$PK" -k m.safetensors -m "$M" --context 2048 --sink 16 >rep 2>err
grep -q 'sink 16 + recent 32' rep && grep -q -- '--sink 16 overrides the 8 that m.safetensors was trained for' err &&
    ok "--sink overrides and says so" || fail "override: $(cat err) / $(grep cache: rep)"
# a mask that records none: the defaults, said on stderr
grep -v '^#' m.tsv >bare.tsv
"$PK" -k bare.tsv -m "$M" --context 2048 >rep 2>err
grep -q 'sink 128 + recent 1024' rep && grep -q 'records no cache windows' err && ok "no windows: defaults, said" ||
    fail "no windows: $(cat err)"
expect_fail 2 "binarize --sink alone on a mask without windows" -- "$BZ" bare.tsv --sink 4 -o y.safetensors
"$BZ" bare.tsv --sink 4 --recent 64 -o y.safetensors -q && "$BZ" y.safetensors --report | grep -q 'sink 4, recent 64' &&
    ok "binarize --sink/--recent record windows" || fail "binarize --sink/--recent"
sed 's/sink=8 recent=32/sink=8 recent=x/' m.tsv >badw.tsv
expect_fail 3 "TSV header with a bad window" -- "$PK" -k badw.tsv -m "$M"
sed 's/ sink=8 recent=32/ sink=8/' m.tsv >halfw.tsv
expect_fail 3 "TSV header with sink but no recent" -- "$PK" -k halfw.tsv -m "$M"

# ---- one memory wording; -q needs -o
grep -Eq '^KV [0-9]+\.[0-9] % of dense, [0-9]+\.[0-9] % saved \(bf16 cache, [0-9.]+ [KMG]?i?B of [0-9.]+ [KMG]?i?B\) at 2048 tokens$' \
    <("$PK" -k m.safetensors -m "$M" --context 2048) && ok "pack: KV X % of dense, Y % saved (bf16 cache)" ||
    fail "pack wording: $("$PK" -k m.safetensors -m "$M" --context 2048 | tail -n1)"
"$PK" -k m.safetensors -m "$M" --context 2048 --dtype f32 | grep -q '(f32 cache,' && ok "pack names the dtype" || fail "dtype not named"
expect_fail 2 "pack -q without -o" -- "$PK" -k m.safetensors -m "$M" -q

# ---- binary outputs refuse a terminal (python3's pty gives one)
on_tty() { python3 -c 'import os, pty, sys; sys.exit(os.waitstatus_to_exitcode(pty.spawn(sys.argv[1:])))' "$@" </dev/null; }
for c in "prep:$P -t $M -T vt -l 300 -n 1" "prep -o -:$P -t $M -T vt -l 300 -n 1 -o -" \
         "train -o -:$TR -m $M -c $C --steps 1 s.smp -o -" "binarize -o -:$BZ a.safetensors --ratio 0.5 -o -" \
         "pack -o -:$PK -k m.safetensors -m $M -o -"; do
    what=${c%%:*} cmd=${c#*:}
    on_tty $cmd >out 2>&1; rc=$?
    [ $rc -eq 2 ] && grep -q 'refusing to write .* to a terminal' out && ok "$what: terminal refused" ||
        fail "$what on a terminal: exit $rc: $(head -c 200 out)"
done
on_tty "$BZ" m.safetensors --tsv -o - >out 2>&1 && grep -q '^0	0	' out && ok "binarize --tsv -o - (text) is written to a terminal" ||
    fail "TSV to a terminal: $(head -c 200 out)"
finish
