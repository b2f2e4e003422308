#!/usr/bin/env bash
# mini_accuracy.sh - leank-mini in bf16 on the GPU answers held-out RULER
# samples (niah_single_1-3, niah_multikey_1, vt at 4K, 8K and 16K tokens;
# 60 samples) within 2 points of the CPU engine on the same samples, dense
# and with its learned LeanK mask (the pruned cache and kernel on the GPU).
# The held-out essays are the last 20 % of the Paul Graham collection
# (dev/mini/build_corpus.py's split).
. "$LEANK_TOP/tests/lib.sh"
need_shared
PG=$S/data/paulgraham/PaulGrahamEssays.json
MM=$LEANK_TOP/data/models/leank-mini
MASK=$LEANK_TOP/dev/mini/logs/masks/learned.safetensors
command -v python3 >/dev/null || { echo "skip: python3 not installed"; exit 77; }
python3 - "$PG" "$T/heldout.txt" <<'PY'
import json, sys
t = json.load(open(sys.argv[1]))["text"]
cut = int(len(t) * 0.8); nl = t.find("\n", cut); nl = cut if nl < 0 else nl
open(sys.argv[2], "w").write(t[nl + 1:])
PY
"$B/leank-prep" --tokenizer "$MM" --corpus "$T/heldout.txt" --words "$S/data/words" \
    --task niah_single_1,niah_single_2,niah_single_3,niah_multikey_1,vt --lengths 4096,8192,16384 \
    --samples 4 --seed 7 -o "$T/ev.smp" || { fail "leank-prep"; finish; }
acc() { # device -> $T/$1.json
    "$B/leank-bench" accuracy -m "$MM" "$T/ev.smp" --device "$1" --mask "$MASK" --sink 64 --recent 256 \
        ${2:-} --json >"$T/$1.json" 2>"$T/$1.err" || { fail "$1 accuracy: $(tail -n 3 "$T/$1.err")"; return 1; }
}
acc cuda --batch=20 && acc cpu "-j $(nproc)" || finish
score() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["scores"][sys.argv[2]])' "$@"; }
for k in dense learned; do
    g=$(score "$T/cuda.json" $k) c=$(score "$T/cpu.json" $k)
    awk -v g="$g" -v c="$c" 'BEGIN { d = g - c; exit !(d <= 2 && d >= -2) }' &&
        ok "$k: GPU $g vs CPU $c (60 samples)" || fail "$k: GPU $g vs CPU $c differ by more than 2 points"
done
for d in cuda cpu; do
    python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(sys.argv[2], j["device"], "%.1f s" % j["wall_s"], j["scores"])' "$T/$d.json" $d
done
finish
