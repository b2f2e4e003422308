#!/bin/sh
# The CPU engine against llama2.c's run.c, side by side (docs/perf.md, issue 17).
#   sh dev/bench/cpu_compare.sh L2C_DIR [PAIRS_STORIES [PAIRS_MINI]]
# L2C_DIR holds: run (run.c patched by llama2c_patch.py, built -Ofast -march=native),
# stories260K.bin tok512.bin (llama2c_export.py stories / tokenizer of stories260K),
# mini.bin tokmini.bin (the same of data/models/leank-mini, seq_len 8192), and
# p8k.txt / p8k.ids: an 8 000-token prompt for leank-mini and its ids (leank-prep --encode
# --add-special of the text, so both programs see the same tokens).
# Environment: LEANK_BIN (default bin), LEANK_SHARED (stories260K), CPUS (taskset list for
# the two-thread runs, default 0,1). Prints paired.py's tables.
set -eu
D=$1; NS=${2:-15}; NM=${3:-3}
B=${LEANK_BIN:-bin}; S=${LEANK_SHARED:-/work/shared}/models/stories260K
H=$(dirname "$0")
CPUS=${CPUS:-0,1}; ONE=${CPUS%%,*}
echo "== machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2) x $(nproc) CPUs; $(grep -o -m1 -w -e avx512f /proc/cpuinfo | head -1) $(grep -o -m1 -w avx2 /proc/cpuinfo | head -1); load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== stories260K, greedy 500 tokens from BOS, one thread (CPU $ONE): $NS pairs"
LEANK_THREADS=1 python3 $H/paired.py -n $NS --name-a leank --name-b run.c \
    --a "taskset -c $ONE $B/leank-decode -m $S --max-tokens 500 --ids -p ''" \
    --b "cd $D && taskset -c $ONE ./run stories260K.bin -z tok512.bin -t 0 -n 501"
echo "== leank-mini, 8000-token prompt + 64 tokens, one thread (CPU $ONE): $NM pairs"
LEANK_THREADS=1 python3 $H/paired.py -n $NM --name-a leank --name-b run.c \
    --a "taskset -c $ONE $B/leank-decode -m data/models/leank-mini --max-tokens 64 --ids -f $D/p8k.txt" \
    --b "cd $D && RUNC_PROMPT_IDS=p8k.ids taskset -c $ONE ./run mini.bin -z tokmini.bin -t 0 -n 8064" \
    --grep-a 'prefill=prefill ([0-9.]+) tok/s' --grep-a 'decode=decode ([0-9.]+) tok/s' \
    --grep-b 'prefill=\(([0-9.]+) tok/s\), decode' --grep-b 'decode=steps [0-9.]+ s \(([0-9.]+) tok/s'
echo "== leank-mini, same run, 2 threads (CPUs $CPUS) vs 1 thread (CPU $ONE): $NM pairs"
python3 $H/paired.py -n $NM --name-a 2-threads --name-b 1-thread \
    --a "LEANK_THREADS=2 taskset -c $CPUS $B/leank-decode -m data/models/leank-mini --max-tokens 64 --ids -f $D/p8k.txt" \
    --b "LEANK_THREADS=1 taskset -c $ONE $B/leank-decode -m data/models/leank-mini --max-tokens 64 --ids -f $D/p8k.txt" \
    --grep-a 'prefill=prefill ([0-9.]+) tok/s' --grep-a 'decode=decode ([0-9.]+) tok/s' \
    --grep-b 'prefill=prefill ([0-9.]+) tok/s' --grep-b 'decode=decode ([0-9.]+) tok/s'
