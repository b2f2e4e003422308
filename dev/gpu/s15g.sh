#!/usr/bin/env bash
# s15g.sh - 2026-11-30 (session 15), after the review: forms 2-8 share
# tile_softmax / pack_p / stage_out (form 7/8's loop SASS unchanged, their
# epilogue's registers moved; forms 2-6 lost the first tile's dead rescale), the
# trainer's key_split / pruned_scores and its norm statistics computed in
# prepare once asked for: the GPU tests, the prefill forms' times, the step.
. "$(dirname "$0")/call.sh"
B=$LEANK_BIN
nvidia-smi --query-gpu=name,power.limit --format=csv,noheader | tee "$O/gpu.txt"
step tests tests/run.sh --gpu
LEANK_PF_MASK=449 step att "$B/leank-bench" attention --batch 1 --reps 7 --sustain 100
step train "$B/leank-bench" train --random llama3.1-8b -c 32768 -a 32 -n 5
grep -E "^(ok|not ok|[0-9]+ passed)" "$O/tests.txt"; grep -B5 -A30 "^not ok" "$O/tests.txt" | head -60
echo "---- att"; grep -A6 "^form" "$O/att.txt"; echo "---- train"; sed -n 3,8p "$O/train.txt"
cat "$O/summary.txt"
(cd "$O" && tar cf res.tar --exclude=res.tar * && ls | grep -v res.tar | xargs rm -f)
