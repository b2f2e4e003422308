#!/bin/sh
# One stage-1 training call on the GPU machine (resumes from /root/ckpt).
#   sh dev/mini/stage1.sh SECONDS TOTAL_STEPS [INIT_DIR]
# Data: .carry/m2 (build_corpus.py output, the .u16 files xz-compressed so
# that they travel), unpacked to /tmp/mini once per machine.
set -e
. dev/mini/unpack.sh
init=${3:+--init $3}
export PYTHONUNBUFFERED=1
python3 dev/mini/train.py --data $D --ckpt /root/ckpt --out "$OUT" --seconds "$1" \
	--total-steps "$2" --final-eval-n 16 $init 2>&1 | tee "$OUT/log.txt"
