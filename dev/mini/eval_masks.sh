#!/bin/sh
# Retrieval of data/models/leank-mini dense and with LeanK masks, side by side
# (leank-bench accuracy: greedy, CPU, one thread per core), on RULER samples
# built from the HELD-OUT essays.
#   sh dev/mini/eval_masks.sh N LENGTHS SEED MASK...   (writes $OUT/acc.txt, $OUT/answers.jsonl)
# Masks: masks.sh. Results of the runs in docs/perf.md: dev/mini/logs/masks/.
# Binaries and data: .carry/m2 (pack.sh); the masks are carried too.
set -e
n=$1 lengths=$2 seed=$3
shift 3
M=.carry/m2
masks=
for m in "$@"; do masks="$masks --mask $m"; done
$M/bin/leank-prep -t data/models/leank-mini --corpus $M/pg_heldout.txt -w $M/words -j 4 \
	-T niah_single_1,niah_single_2,niah_single_3,niah_multikey_1,vt -l "$lengths" -n "$n" -s "$seed" -o /tmp/ev.smp
$M/bin/leank-bench accuracy -m data/models/leank-mini /tmp/ev.smp $masks --sink 64 --recent 256 \
	-j "$(nproc)" -o "$OUT/answers.jsonl" | tee "$OUT/acc.txt"
