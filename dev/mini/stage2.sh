#!/bin/sh
# Stage 2 on the GPU machine: the format fine-tune (ft.py) of the stage-1 model
# in data/models/leank-mini, then perplexities and the reference logits.
#   sh dev/mini/stage2.sh SECONDS        (writes $OUT/model, $OUT/ref.f32)
# Data and binaries: .carry/m2 (see stage1.sh).
set -e
. dev/mini/unpack.sh
export PYTHONUNBUFFERED=1
# leank-prep's own RULER prompts, on the TRAINING essays only
.carry/m2/bin/leank-prep -t data/models/leank-mini --corpus $D/pg_train.txt -w $D/words -j 16 \
	-T niah_single_1,niah_single_2,niah_single_3,niah_multikey_1,niah_multikey_2,niah_multikey_3,niah_multivalue,niah_multiquery,vt,fwe \
	-l 2048,4096,8192,16384 -n 30 -s 7 -o /tmp/ft.smp
.carry/m2/bin/leank-prep -t data/models/leank-mini --dump /tmp/ft.smp -o /tmp/ft.jsonl
MINI_DATA=$D python3 dev/mini/ft.py data/models/leank-mini /tmp/ft.jsonl "$OUT/model" "$1" 2>&1 | tee "$OUT/ft_log.txt"
cp data/models/leank-mini/tokenizer.json "$OUT/model/"
python3 dev/mini/ref.py "$OUT/model" tests/data/mini/prompt2k.ids "$OUT/ref.f32" 2>&1 | tee -a "$OUT/ft_log.txt"
