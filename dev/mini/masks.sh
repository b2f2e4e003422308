#!/bin/sh
# LeanK masks for data/models/leank-mini, made with our own tools on this
# machine's CPU (stage 1 ~30 min, stage 2 ~10 min on 2 cores): training
# samples from the TRAINING essays (4K tokens), stage 1, stage 2, the
# training-free norm heuristic, and the binary masks. Evaluate them on the
# held-out essays with eval_masks.sh.
#   sh dev/mini/masks.sh [OUTDIR [SHARED_DATA]]   (defaults .carry/masks, ../shared/data)
# Needs bin/ (make) and .carry/m2/pg_train.txt (pack.sh).
set -e
O=${1:-.carry/masks}
S=${2:-../shared/data}
M=data/models/leank-mini
C=data/configs/leank-mini.yaml
mkdir -p "$O"
bin/leank-prep -t $M --corpus .carry/m2/pg_train.txt -w "$S/words" --task train -l 4096 -n 300 -s 11 -o "$O/train.smp"
bin/leank-train -m $M -c $C "$O/train.smp" --log "$O/stage1.tsv" -o "$O/alpha1.safetensors"
bin/leank-train -m $M -c $C --stage2 --init "$O/alpha1.safetensors" "$O/train.smp" \
	--log "$O/stage2.tsv" -o "$O/alpha2.safetensors"
bin/leank-train -m $M -c $C --method norm --steps 16 "$O/train.smp" -o "$O/norm_alpha.safetensors"
# learned: LeanK's mask (stage 2); stage1: stage 1's alpha binarized directly
bin/leank-binarize "$O/alpha2.safetensors" --ratio 0.7 --align 32 -o "$O/learned.safetensors"
bin/leank-binarize "$O/alpha1.safetensors" --ratio 0.7 --align 32 -o "$O/stage1.safetensors"
bin/leank-binarize "$O/norm_alpha.safetensors" --ratio 0.7 --align 32 -o "$O/norm.safetensors"
