#!/usr/bin/env bash
# 0.5B follow-up: stage 1+2 at 32K (300+100, GPU 1) and at 16K with LeanK's full steps (1000+500, GPU 0),
# then accuracy with every mask, 32K on GPU 0 and 4K-16K on GPU 1.
set -u
name=qwen2.5-coder-0.5b-instruct
B=/tmp/x/bin; M=/tmp/models/$name-bf16; C=/tmp/x/data/configs/$name.yaml; D=/tmp/x/.carry; W=$D/shared/data/words
R=/tmp/res/q05b; P=/tmp/res/$name
mkdir -p $R; : > $R/summary.txt
st() { local n=$1 g=$2; shift 2; local t0=$(date +%s); CUDA_VISIBLE_DEVICES=$g "$@" > $R/$n.txt 2>&1; echo "$n exit $? $(( $(date +%s)-t0 )) s gpu $g $(date +%T)" >> $R/summary.txt; }
( $B/leank-prep -t $M --corpus $D/m2/pg_train.txt -w $W --task train --template qwen -l 32768 -n 300 -s 11 -j 16 -o $R/train32k.smp
  st s1_32k 1 $B/leank-train -m $M -c $C --device cuda $R/train32k.smp --log $R/stage1_32k.tsv -o $R/alpha1_32k.safetensors
  st s2_32k 1 $B/leank-train -m $M -c $C --device cuda --stage2 --init $R/alpha1_32k.safetensors $R/train32k.smp --log $R/stage2_32k.tsv -o $R/alpha2_32k.safetensors
  $B/leank-binarize $R/alpha2_32k.safetensors --ratio 0.7 --align 32 -o $R/learned32k.safetensors ) &
( $B/leank-prep -t $M --corpus $D/m2/pg_train.txt -w $W --task train --template qwen -l 16384 -n 1000 -s 12 -j 16 -o $R/train16k.smp
  st s1_16k_long 0 $B/leank-train -m $M -c $C --device cuda --steps 1000 $R/train16k.smp --log $R/stage1_16k_long.tsv -o $R/alpha1_16k_long.safetensors
  st s2_16k_long 0 $B/leank-train -m $M -c $C --device cuda --steps 500 --stage2 --init $R/alpha1_16k_long.safetensors $R/train16k.smp --log $R/stage2_16k_long.tsv -o $R/alpha2_16k_long.safetensors
  $B/leank-binarize $R/alpha2_16k_long.safetensors --ratio 0.7 --align 32 -o $R/learned16k_long.safetensors ) &
wait
for f in learned32k learned16k_long; do $B/leank-binarize $R/$f.safetensors --report > $R/report_$f.txt 2>&1; done
mk="--mask $P/learned16k.safetensors --mask $R/learned32k.safetensors --mask $R/learned16k_long.safetensors --mask $P/norm16k.safetensors"
$B/leank-prep -t $M --corpus $D/m2/pg_heldout.txt -w $W -T ruler --template qwen -l 32768 -n 50 -s 7 -j 16 -o $R/eval_long.smp
$B/leank-prep -t $M --corpus $D/m2/pg_heldout.txt -w $W -T ruler --template qwen -l 4096,8192,16384 -n 50 -s 7 -j 16 -o $R/eval_short.smp
st acc_long 0 $B/leank-bench accuracy -m $M --device cuda $R/eval_long.smp $mk -o $R/answers_long.jsonl --json &
st acc_short 1 $B/leank-bench accuracy -m $M --device cuda $R/eval_short.smp $mk -o $R/answers_short.jsonl --json &
wait
rm -f $R/*.smp; touch $R/DONE
