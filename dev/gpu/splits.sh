export LEANK_BIN=$PWD/bin LEANK_SHARED=$PWD/.carry/shared
B=bin/leank-bench
LEANK_TESTS=gpu_ tests/run.sh --gpu 2>&1 | tail -2
for s in 0 8 16 24; do echo "B1 splits=$s: $(LEANK_DECODE_SPLITS=$s $B e2e --random llama3.1-8b -b 1 -p 32768 -g 48 | grep 'decode step')"; done
for s in 0 1 2 4; do echo "B52 splits=$s: $(LEANK_DECODE_SPLITS=$s $B e2e --random llama3.1-8b -b 52 -p 4096 -g 24 | grep 'decode step')"; done
for s in 0 2 3 6; do echo "kernel splits=$s: $(LEANK_DECODE_SPLITS=$s $B kernel --mask $LEANK_SHARED/data/masks/llama3.1-8b-instruct.tsv --reps 10 | grep -E '^ours (dense|leank avg)' | tr '\n' ' ')"; done
