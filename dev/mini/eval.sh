#!/bin/sh
# Retrieval scores of data/models/leank-mini with leank-decode (dense, CPU,
# greedy) on RULER samples built from the HELD-OUT essays.
#   sh dev/mini/eval.sh N PROCS [LENGTHS [SEED]]   (writes $OUT/eval.json and a table)
# Binaries and data: .carry/m2 (leank-prep, leank-decode, pg_heldout.txt, words).
set -e
M=.carry/m2
$M/bin/leank-prep -t data/models/leank-mini --corpus $M/pg_heldout.txt -w $M/words -j 4 \
	-T niah_single_1,niah_single_2,niah_single_3,niah_multikey_1,vt \
	-l "${3:-4096,8192,16384}" -n "$1" -s "${4:-42}" -o /tmp/ev.smp
$M/bin/leank-prep -t data/models/leank-mini --dump /tmp/ev.smp -o /tmp/ev.jsonl
EVAL_OUT="$OUT/eval.json" python3 dev/mini/eval_ruler.py /tmp/ev.jsonl $M/bin data/models/leank-mini "$2" 1 \
	| tee "$OUT/eval.txt"
