#!/bin/sh
# LeanK masks for data/models/leank-mini trained on the GPU at 16K tokens
# (issue 14): training samples from the TRAINING essays (16 384 tokens),
# stage 1 + stage 2 (data/configs/leank-mini.yaml: ratio 0.7, align 32), the
# training-free norm heuristic on the same samples, binarized; then scored
# with leank-bench accuracy on the HELD-OUT essays at 4K, 8K and 16K
# (niah_single_1-3, niah_multikey_1, vt; N per task and length), dense,
# learned and norm side by side. One GPU-machine call:
#   run: sh dev/mini/masks_gpu.sh      carry: ["bin", ".carry"]
# Needs .carry/m2/pg_train.txt, pg_heldout.txt (the essays split as
# build_corpus.py splits them) and .carry/shared/data/words. Output in $OUT.
set -e
BIN=${BIN:-bin}
O=${OUT:-/tmp/mini16}
M=data/models/leank-mini
C=data/configs/leank-mini.yaml
D=${CARRY:-.carry}
W=$D/shared/data/words
N=${N:-24}
mkdir -p "$O"
t() { s=$(date +%s); "$@"; echo "== $(basename "$1") $2: $(( $(date +%s) - s )) s" >>"$O/times.txt"; }
t $BIN/leank-prep -t $M --corpus $D/m2/pg_train.txt -w $W --task train -l 16384 -n 300 -s 11 -j 8 -o "$O/train16k.smp"
t $BIN/leank-train -m $M -c $C --device cuda "$O/train16k.smp" --log "$O/stage1.tsv" -o "$O/alpha1.safetensors"
t $BIN/leank-train -m $M -c $C --device cuda --stage2 --init "$O/alpha1.safetensors" "$O/train16k.smp" \
	--log "$O/stage2.tsv" -o "$O/alpha2.safetensors"
t $BIN/leank-train -m $M -c $C --device cuda --method norm --steps 16 "$O/train16k.smp" -o "$O/norm_alpha.safetensors"
$BIN/leank-binarize "$O/alpha2.safetensors" --ratio 0.7 --align 32 -o "$O/learned16k.safetensors"
$BIN/leank-binarize "$O/norm_alpha.safetensors" --ratio 0.7 --align 32 -o "$O/norm16k.safetensors"
t $BIN/leank-prep -t $M --corpus $D/m2/pg_heldout.txt -w $W -j 8 \
	-T niah_single_1,niah_single_2,niah_single_3,niah_multikey_1,vt -l 4096,8192,16384 -n "$N" -s 7 -o "$O/eval.smp"
t $BIN/leank-bench accuracy -m $M --device cuda "$O/eval.smp" --mask "$O/learned16k.safetensors" \
	--mask "$O/norm16k.safetensors" -o "$O/answers.jsonl" >"$O/acc.txt"
rm -f "$O/train16k.smp" "$O/eval.smp" # large; remade from the seeds
cat "$O/acc.txt" "$O/times.txt"
