#!/usr/bin/env bash
# dev/real/gpu_job.sh - issue 18's GPU work on one real model, on the GPU
# machine, once its GGUF chunks are there (dev/models/to_device.sh recv):
#
#   dev/real/gpu_job.sh NAME           (started with setsid from a device call,
#                                       so that it runs on between calls)
#
#   1. join the chunks; convert to bf16 (what the pipeline runs) and, beside
#      it, to f32 (what bin/tests/gpu_real compares with HF's references)
#   2. gpu_real: GPU f32 and bf16 logits / greedy ids against HF transformers
#   3. training samples (training essays, TRAIN lengths), stage 1 + stage 2,
#      ratio 0.7, align 32 (data/configs/NAME.yaml); the norm heuristic on the
#      first length's samples; binarized; --report of each (RoPE bands)
#   4. leank-bench accuracy on held-out essays: the 11 RULER tasks at EVAL
#      lengths, N per task and length, dense vs every mask
#   5. (E2E=1) leank-bench e2e at 32K: dense and LeanK, the largest batches
#
# Two GPUs (GPU_A, GPU_B) share the work: the longest training length and the
# longest evaluation length run on GPU_A, the rest on GPU_B; one GPU: set both
# to 0. WAIT_FOR=FILE holds GPU_B's work (all of it, on one GPU) until FILE
# exists: another job's DONE, when two jobs share a GPU. Everything is logged under RES (default /tmp/res/NAME): NAME.txt per
# step, summary.txt (step, exit, seconds), DONE at the end. Paths:
#   X     the unpacked tool tree (bin/, dev/, data/configs, tests/data/real)
#   D     data: m2/pg_train.txt, m2/pg_heldout.txt, shared/data/words
#   XFER  where recv left the chunks (default /tmp/leank-xfer)
# Also runnable here on the CPU with small settings (DEVICE=cpu, small
# TRAIN/EVAL/N/STEPS) to check the flow before a device session.
set -u -o pipefail
name=${1:?usage: gpu_job.sh NAME}
X=${X:-$(cd "$(dirname "$0")/../.." && pwd)}
BIN=${BIN:-$X/bin}
D=${D:-$X/.carry}
XFER=${XFER:-/tmp/leank-xfer}
R=${RES:-/tmp/res/$name}
MODELS=${MODELS:-/tmp/models}
M=$MODELS/$name-bf16 M32=$MODELS/$name
GPU_A=${GPU_A:-0} GPU_B=${GPU_B:-$GPU_A}
DEVICE=${DEVICE:-cuda}
TRAIN=${TRAIN:-16384}             # training lengths, longest last
EVAL=${EVAL:-4096,8192,16384,32768}
N=${N:-50}                        # samples per task and length
NTRAIN=${NTRAIN:-300}             # training samples per length
S1=${S1:-} S2=${S2:-}             # steps (default: the config's)
NORM_STEPS=${NORM_STEPS:-16}
E2E=${E2E:-0}
WAIT_FOR=${WAIT_FOR:-}            # a file (another job's DONE) to wait for before GPU_B's work
J=${J:-16}
C=$X/data/configs/$name.yaml
W=$D/shared/data/words
export PYTHONUNBUFFERED=1 OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}
mkdir -p "$R" || exit 1
: >"$R/summary.txt"
rm -f "$R/DONE"

step() { # NAME GPU COMMAND...: log to $R/NAME.txt, one summary line; returns the exit
    local n=$1 g=$2; shift 2
    local t0=$(date +%s%N) rc
    CUDA_VISIBLE_DEVICES=$g "$@" >"$R/$n.txt" 2>&1
    rc=$?
    local ms=$(( ($(date +%s%N) - t0) / 1000000 ))
    printf '%-18s exit %3d %5d.%d s  gpu %s  %s\n' "$n" $rc $((ms / 1000)) $((ms % 1000 / 100)) "$g" "$(date +%T)" >>"$R/summary.txt"
    return $rc
}
steps() { # the optional --steps of stage 1 (1) or 2 (2)
    local s; [ "$1" = 1 ] && s=$S1 || s=$S2
    [ -n "$s" ] && echo "--steps $s"
}

# ---- 1. join and convert (bf16 first: training waits for it; f32 beside it)
if [ ! -f "$M/model.safetensors" ]; then
    step join_bf16 - "$X/dev/models/to_device.sh" join "$name" "$M" --dtype bf16 || { touch "$R/DONE"; exit 1; }
fi
[ -d /tmp/site ] && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
rm -f "$R/f32.ok" "$R/f32.failed"
if [ ! -f "$M32/model.safetensors" ]; then
    { step convert_f32 - python3 "$X/dev/models/gguf2hf.py" convert "$XFER/$name.gguf" "$M32" &&
        touch "$R/f32.ok" || touch "$R/f32.failed"; } &
else touch "$R/f32.ok"
fi

# ---- 2.-3. per GPU: training (and, on A, gpu_real once f32 is there)
IFS=, read -r -a lens <<<"$TRAIN"
last=$((${#lens[@]} - 1))
train_len() { # L GPU: samples, stage 1, stage 2, binarize, report
    local L=$1 g=$2 k=$(( $1 / 1024 ))k
    step prep_train$k - "$BIN/leank-prep" -t "$M" --corpus "$D/m2/pg_train.txt" -w "$W" --task train \
        --template qwen -l "$L" -n "$NTRAIN" -s 11 -j "$J" -o "$R/train$k.smp" || return 1
    step stage1_$k "$g" "$BIN/leank-train" -m "$M" -c "$C" --device "$DEVICE" $(steps 1) "$R/train$k.smp" \
        --log "$R/stage1_$k.tsv" -o "$R/alpha1_$k.safetensors" || return 1
    step stage2_$k "$g" "$BIN/leank-train" -m "$M" -c "$C" --device "$DEVICE" $(steps 2) --stage2 \
        --init "$R/alpha1_$k.safetensors" "$R/train$k.smp" --log "$R/stage2_$k.tsv" \
        -o "$R/alpha2_$k.safetensors" || return 1
    "$BIN/leank-binarize" "$R/alpha2_$k.safetensors" --ratio 0.7 --align 32 -o "$R/learned$k.safetensors" &&
        "$BIN/leank-binarize" "$R/learned$k.safetensors" --report >"$R/report_learned$k.txt" 2>&1
}
norm() { # GPU: the norm heuristic on the first length's samples
    local k=$(( ${lens[0]} / 1024 ))k
    step norm$k "$1" "$BIN/leank-train" -m "$M" -c "$C" --device "$DEVICE" --method norm --steps "$NORM_STEPS" \
        "$R/train$k.smp" -o "$R/norm_alpha$k.safetensors" || return 1
    "$BIN/leank-binarize" "$R/norm_alpha$k.safetensors" --ratio 0.7 --align 32 -o "$R/norm$k.safetensors" &&
        "$BIN/leank-binarize" "$R/norm$k.safetensors" --report >"$R/report_norm$k.txt" 2>&1
}
gpu_real() { # GPU: once the f32 directory is there
    while [ ! -e "$R/f32.ok" ] && [ ! -e "$R/f32.failed" ]; do sleep 2; done
    [ -e "$R/f32.ok" ] && [ -x "$BIN/tests/gpu_real" ] || return 0
    (cd "$X" && step gpu_real "$1" env LEANK_REAL_MODELS="$MODELS" LEANK_REAL_ONLY="$name" "$BIN/tests/gpu_real")
}
wait_for() { [ -z "$WAIT_FOR" ] || while [ ! -e "$WAIT_FOR" ]; do sleep 2; done; }
branch_a() {
    [ "$GPU_A" = "$GPU_B" ] && wait_for
    [ $last -gt 0 ] || { train_len "${lens[0]}" "$GPU_A"; norm "$GPU_A"; gpu_real "$GPU_A"; return; }
    train_len "${lens[$last]}" "$GPU_A"
}
branch_b() {
    [ $last -gt 0 ] || return 0
    wait_for
    for i in $(seq 0 $((last - 1))); do train_len "${lens[$i]}" "$GPU_B"; done
    norm "$GPU_B"
    gpu_real "$GPU_B"
}
branch_a & a=$!
branch_b & b=$!
wait $a $b
while [ ! -e "$R/f32.ok" ] && [ ! -e "$R/f32.failed" ]; do sleep 2; done
rm -f "$R"/train*.smp # large; remade from the seeds

# ---- 4. accuracy: the longest length on A, the others on B
masks=()
for f in "$R"/learned*.safetensors "$R"/norm[0-9]*.safetensors; do [ -f "$f" ] && masks+=(--mask "$f"); done
IFS=, read -r -a ev <<<"$EVAL"
acc() { # TAG LENGTHS GPU
    step prep_eval_$1 - "$BIN/leank-prep" -t "$M" --corpus "$D/m2/pg_heldout.txt" -w "$W" -T ruler --template qwen \
        -l "$2" -n "$N" -s 7 -j "$J" -o "$R/eval_$1.smp" || return 1
    step acc_$1 "$3" "$BIN/leank-bench" accuracy -m "$M" --device "$DEVICE" "$R/eval_$1.smp" "${masks[@]}" \
        -o "$R/answers_$1.jsonl" --json
}
e2e() { # GPU: the largest batches at 32K, dense and LeanK (the longest training length's mask)
    [ "$E2E" = 1 ] || return 0
    local mk=$(ls "$R"/learned*.safetensors | sort -V | tail -n1)
    step e2e_dense "$1" "$BIN/leank-bench" e2e -m "$M" --max-batch -p 32768 -g 128 --json
    step e2e_leank "$1" "$BIN/leank-bench" e2e -m "$M" --max-batch -p 32768 -g 128 --plan "$mk" --json
    step e2e_b1_dense "$1" "$BIN/leank-bench" e2e -m "$M" -b 1 -p 32768 -g 128 --json
    step e2e_b1_leank "$1" "$BIN/leank-bench" e2e -m "$M" -b 1 -p 32768 -g 128 --plan "$mk" --json
}
if [ ${#ev[@]} -gt 1 ] && [ "$GPU_A" != "$GPU_B" ]; then # (the engine takes 90 % of a GPU's free memory: one process a GPU)
    rest=$(IFS=,; echo "${ev[*]:0:${#ev[@]}-1}")
    acc long "${ev[-1]}" "$GPU_A" & a=$!
    (acc short "$rest" "$GPU_B"; e2e "$GPU_B") & b=$!
    wait $a $b
else
    acc all "$EVAL" "$GPU_A"
    e2e "$GPU_A"
fi
rm -f "$R"/eval_*.smp
touch "$R/DONE"
cat "$R/summary.txt"
