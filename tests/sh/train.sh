# leank-train on stories260K: stage 1 lowers the loss and drives alpha toward
# 0, stage 2 gives a mask of the requested ratio and alignment, the norm
# method, resume == uninterrupted, SIGINT, bad inputs (no output left);
# --device: cuda refused (exit 6) where there is no GPU, cpu == the default there.
. "$(dirname "$0")/../lib.sh"
export OPENBLAS_NUM_THREADS=1
tr=$B/leank-train

# command line (no shared data needed)
$tr --help | grep -q -- --stage2 && ok "--help" || fail "--help"
$tr --version | grep -q "leank-train (leank)" && ok "--version" || fail "--version"
expect_fail 2 "no arguments" -- $tr
expect_fail 2 "bad --method" -- $tr -m x --method magic s.smp -o a
expect_fail 2 "stage 2 without --init" -- $tr -m x --stage2 s.smp -o a
printf 'sink: 4\nstage1:\n  lamda: 0.1\n' >"$T/bad.yaml"
expect_fail 2 "bad --device" -- $tr -m x --device tpu s.smp -o a
grep -q "expected cuda, cpu or auto" "$T/err" || fail "--device message: $(cat "$T/err")"
# --device cuda without a GPU (or in a build without CUDA): exit 6, one line saying which, no output
gpu=0
nvidia-smi -L 2>/dev/null | grep -q GPU && gpu=1
if [ $gpu = 0 ]; then
    expect_fail 6 "--device cuda, no GPU" -- $tr -m "$LEANK_TOP/data/models/leank-mini" --device cuda \
        "$LEANK_TOP/tests/fuzz/samples/seed-train.smp" -o "$T/cuda.safetensors" --steps 1
    [ "$(wc -l <"$T/err")" -eq 1 ] && grep -qE "^leank-train: .*(no GPU|no CUDA)" "$T/err" \
        || fail "--device cuda message: $(cat "$T/err")"
    ls "$T"/cuda.safetensors* >/dev/null 2>&1 && fail "output left after --device cuda"
else
    skip "a GPU is visible: the --device cuda refusal is not checked"
fi

need_shared
M=$S/models/stories260K
C=$LEANK_TOP/data/configs/stories260k.yaml
[ -d "$M" ] || { echo "skip: $M absent"; exit 77; }
expect_fail 3 "config with an unknown key" -- $tr -m "$M" -c "$T/bad.yaml" x.smp -o "$T/bad.safetensors"
[ -e "$T/bad.safetensors" ] && fail "output left after a config error"
# stage-2 settings that cannot work are refused before any step, naming where they came from
printf 'stage2:\n  ratio: 1\n' >"$T/r1.yaml"
printf 'stage2:\n  align: 3\n' >"$T/a3.yaml"
expect_fail 3 "config stage2 ratio 1" -- $tr -m "$M" -c "$T/r1.yaml" --stage2 --init x.st x.smp -o "$T/bad.safetensors"
grep -q "r1.yaml: stage2 ratio 1" "$T/err" || fail "ratio message: $(cat "$T/err")"
expect_fail 3 "config stage2 align 3 (head_dim 8)" -- $tr -m "$M" -c "$T/a3.yaml" --stage2 --init x.st x.smp -o "$T/bad.safetensors"
grep -q "a3.yaml: stage2 align 3 does not divide head_dim 8" "$T/err" || fail "align message: $(cat "$T/err")"
expect_fail 2 "--ratio 1" -- $tr -m "$M" -c "$C" --stage2 --ratio 1 --init x.st x.smp -o "$T/bad.safetensors"

# samples: 200-400 tokens with the stories260K tokenizer, from leank-prep
if ! $B/leank-prep -t "$M" --corpus "$S/data/paulgraham/PaulGrahamEssays.json" --task train \
        --lengths 400 -n 3 --words "$S/data/words" -o "$T/s.smp" 2>"$T/prep.err"; then
    echo "skip: leank-prep cannot make training samples yet: $(head -n1 "$T/prep.err")"
    [ $fails -eq 0 ] && exit 77
    finish
fi
ok "leank-prep made samples"

# stage 1: 50 steps; loss + regulariser goes down, part of alpha toward 0
$tr -m "$M" -c "$C" "$T/s.smp" -o "$T/a1.safetensors" --log "$T/s1.tsv" 2>"$T/err" \
    && ok "stage 1" || { fail "stage 1: $(cat "$T/err")"; finish; }
[ "$(tail -n +2 "$T/s1.tsv" | wc -l)" -eq 50 ] && ok "log has 50 steps" || fail "log lines"
awk -F'\t' 'NR == 1 { next }
    NR <= 6 { first += $5 + $6; nf++ } { last5[NR % 5] = $5 + $6; frac = $9 }
    END { for (i in last5) last += last5[i]; first /= nf; last /= 5;
          printf "loss+reg first 5 steps %.5f, last 5 %.5f, alpha < 0.1: %.3f\n", first, last, frac;
          exit !(last < first && frac > 0.1) }' "$T/s1.tsv" >"$T/sum" \
    && ok "$(cat "$T/sum")" || fail "stage 1 did not train: $(cat "$T/sum")"

# --device cpu == the default where auto is the cpu (no GPU), bitwise; a run stopped with
# --device cpu resumes under the default (the checkpoint records no device)
if [ $gpu = 0 ]; then
    $tr -m "$M" -c "$C" --steps 6 --device cpu "$T/s.smp" -o "$T/dcpu.safetensors" 2>"$T/err" \
        || fail "--device cpu: $(cat "$T/err")"
    $tr -m "$M" -c "$C" --steps 6 "$T/s.smp" -o "$T/dauto.safetensors" 2>"$T/err" || fail "auto: $(cat "$T/err")"
    cmp -s "$T/dcpu.safetensors" "$T/dauto.safetensors" && ok "--device cpu == default (auto), bitwise" \
        || fail "--device cpu differs from the default"
    $tr -m "$M" -c "$C" --steps 6 --device cpu --stop-after 3 "$T/s.smp" -o "$T/dres.safetensors" 2>/dev/null
    $tr -m "$M" -c "$C" --steps 6 --device auto --resume "$T/s.smp" -o "$T/dres.safetensors" 2>"$T/err" \
        || fail "resume under --device auto: $(cat "$T/err")"
    cmp -s "$T/dcpu.safetensors" "$T/dres.safetensors" && ok "stopped on --device cpu, resumed on auto: same alpha" \
        || fail "resume across --device differs"
else
    skip "a GPU is visible: auto is not the cpu, --device cpu == default not checked"
fi

# stage 2 and the mask: ratio 0.5, align 2 (head_dim 8, 5 x 4 heads)
$tr -m "$M" -c "$C" --stage2 --init "$T/a1.safetensors" "$T/s.smp" -o "$T/a2.safetensors" \
    --log "$T/s2.tsv" 2>"$T/err" && ok "stage 2" || fail "stage 2: $(cat "$T/err")"
if $B/leank-binarize "$T/a2.safetensors" --ratio 0.5 --align 2 --tsv -o "$T/mask.tsv" -q 2>"$T/err"; then
    awk -F'\t' '/^#/ { next } { kept += $3; heads++; if ($3 % 2) bad++ }
        END { target = 0.5 * heads * 8; d = kept - target; if (d < 0) d = -d;
              printf "mask keeps %d of %d (target %d, %d heads)\n", kept, heads * 8, target, heads;
              exit !(heads == 20 && !bad && d <= heads) }' "$T/mask.tsv" >"$T/sum" \
        && ok "$(cat "$T/sum")" || fail "mask: $(cat "$T/sum")"
else
    fail "leank-binarize: $(cat "$T/err")"
fi

# norm method: same format
$tr -m "$M" -c "$C" --method norm --steps 4 "$T/s.smp" -o "$T/norm.safetensors" 2>"$T/err" \
    && $B/leank-binarize "$T/norm.safetensors" --ratio 0.5 --align 2 -o "$T/norm.mask" -q \
    && ok "norm method -> mask" || fail "norm method: $(cat "$T/err")"

# resume: stopped after 5 of 12 steps, resumed -> the same alpha and log
$tr -m "$M" -c "$C" --steps 12 --checkpoint-every 4 "$T/s.smp" -o "$T/ra.safetensors" \
    --log "$T/ra.tsv" 2>/dev/null
$tr -m "$M" -c "$C" --steps 12 --checkpoint-every 4 "$T/s.smp" -o "$T/rb.safetensors" \
    --log "$T/rb.tsv" --stop-after 5 2>/dev/null
rc=$?
[ $rc -eq 130 ] && [ -s "$T/rb.safetensors.ckpt" ] && [ ! -e "$T/rb.safetensors" ] \
    && ok "--stop-after 5: exit 130, checkpoint, no output" || fail "--stop-after: rc $rc"
# corrupt checkpoints are refused: a negative step, a NaN in alpha
python3 - "$T/rb.safetensors.ckpt" "$T/neg.ckpt" "$T/nan.ckpt" <<'PY' || fail "corrupt checkpoints"
import json, struct, sys
b = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n]); body = b[8 + n:]
def write(path, h, body):
    j = json.dumps(h).encode(); j += b" " * (-len(j) % 8)
    open(path, "wb").write(struct.pack("<Q", len(j)) + j + body)
g = json.loads(json.dumps(h)); g["__metadata__"]["step"] = "-1"; write(sys.argv[2], g, body)
o = h["alpha"]["data_offsets"][0]
write(sys.argv[3], h, body[:o] + struct.pack("<f", float("nan")) + body[o + 4:])
PY
for k in neg nan; do
    expect_fail 3 "resume from a checkpoint with a $k value" -- $tr -m "$M" -c "$C" --steps 12 --checkpoint-every 4 \
        "$T/s.smp" -o "$T/rc.safetensors" --checkpoint "$T/$k.ckpt" --resume
done
grep -q 'nan.ckpt: alpha\[0, 0, 0\] is not finite' "$T/err" || fail "NaN message: $(cat "$T/err")"
[ -e "$T/rc.safetensors" ] && fail "output after a corrupt checkpoint"
$tr -m "$M" -c "$C" --steps 12 --checkpoint-every 4 "$T/s.smp" -o "$T/rb.safetensors" \
    --log "$T/rb.tsv" --resume 2>"$T/err" || fail "resume: $(cat "$T/err")"
cmp -s "$T/ra.safetensors" "$T/rb.safetensors" && ok "resumed alpha == uninterrupted" \
    || fail "resumed alpha differs"
diff <(cut -f1-10 "$T/ra.tsv") <(cut -f1-10 "$T/rb.tsv") >/dev/null && ok "resumed log == uninterrupted" \
    || fail "resumed log differs"
expect_fail 3 "resume with other options" -- $tr -m "$M" -c "$C" --steps 12 --lr 0.1 \
    --checkpoint-every 4 "$T/s.smp" -o "$T/rb.safetensors" --resume

# SIGINT: the step finishes, a checkpoint is written, exit 130, no output
$tr -m "$M" -c "$C" --steps 100000 --checkpoint-every 0 --progress "$T/s.smp" \
    -o "$T/int.safetensors" 2>"$T/int.err" &
pid=$!
for _ in $(seq 100); do grep -q "step 3/" "$T/int.err" 2>/dev/null && break; sleep 0.1; done
kill -INT $pid
wait $pid
rc=$?
[ $rc -eq 130 ] && [ -s "$T/int.safetensors.ckpt" ] && [ ! -e "$T/int.safetensors" ] \
    && ok "SIGINT: exit 130, checkpoint kept, no output" || fail "SIGINT: rc $rc"
ls "$T"/*.tmp.* >/dev/null 2>&1 && fail "temporary files left"

# bad inputs: clear message, exit 3, no output
python3 - "$T/a1.safetensors" "$T/wrong.safetensors" <<'EOF' 2>/dev/null || true
import json, struct, sys
b = open(sys.argv[1], 'rb').read(); n = struct.unpack('<Q', b[:8])[0]
h = json.loads(b[8:8 + n]); h['alpha']['shape'] = [5, 2, 16]
t = json.dumps(h).encode(); t += b' ' * (-len(t) % 8)
open(sys.argv[2], 'wb').write(struct.pack('<Q', len(t)) + t + b[8 + n:])
EOF
if [ -s "$T/wrong.safetensors" ]; then
    expect_fail 3 "--init of another shape" -- $tr -m "$M" -c "$C" --stage2 --init "$T/wrong.safetensors" \
        "$T/s.smp" -o "$T/bad.safetensors"
    grep -q "shape" "$T/err" || fail "shape message: $(cat "$T/err")"
fi
if $B/leank-prep -t "$S/data/tokenizers/llama3/tokenizer.json" --corpus "$S/data/paulgraham/PaulGrahamEssays.json" \
        --task train --lengths 300 -n 1 --words "$S/data/words" -o "$T/other.smp" 2>/dev/null; then
    expect_fail 3 "samples of another tokenizer" -- $tr -m "$M" -c "$C" "$T/other.smp" -o "$T/bad.safetensors"
    grep -q "tokenizer" "$T/err" || fail "tokenizer message: $(cat "$T/err")"
fi
[ -e "$T/bad.safetensors" ] && fail "output left after bad input"
finish
