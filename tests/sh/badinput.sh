# badinput.sh - the bad-input matrix: every program x every file it reads x
# (missing, empty, truncated, wrong kind, a directory, /dev/zero under a
# memory limit), mismatched model/mask/samples, out-of-range options, an
# unwritable output and /dev/full. Each must exit non-zero (not by a signal,
# not by the time limit) with exactly one line on stderr, and leave no output.
# /dev/zero is refused by name, not by running out of memory (issue 16).
. "$LEANK_TOP/tests/lib.sh"
M=$LEANK_TOP/data/models/leank-mini
F=$LEANK_TOP/tests/fuzz
PR=$B/leank-prep TR=$B/leank-train BZ=$B/leank-binarize PK=$B/leank-pack DE=$B/leank-decode BE=$B/leank-bench
O=$T/out # every output goes here; it must stay empty
mkdir -p "$O" "$T/dir" "$T/emptydir"

# ---- valid inputs of each kind (for truncation), and their stand-ins ----
SMP=$F/samples/seed-train.smp
MASK=$F/maskfiles/seed-mask-mini.safetensors
ALPHA=$F/maskfiles/seed-alpha-mini.safetensors
PLAN=$F/maskfiles/seed-plan-mini.safetensors
TSV=$F/tsv/seed-mini.tsv
YAML=$LEANK_TOP/data/configs/leank-mini.yaml
python3 -c 'import itertools; print("\n".join("".join(w) for w in itertools.product("bcdfgklmnprstvz", "aeiou", "nrst")))' >"$T/words.txt"
printf 'The grass is green. The sky is blue. The sun is yellow. Here we go.\n%.0s' $(seq 200) >"$T/corpus.txt"
echo '{"prompt": "hi", "max_tokens": 1}' >"$T/req.jsonl"
: >"$T/empty"
half() { head -c $(( $(stat -c %s "$1") / 2 )) "$1" >"$2"; }
# a model directory whose config.json (or shard) is cut in half
model_cut() { # DIR FILE-TO-CUT
    mkdir -p "$1"
    for f in "$M"/*; do ln -s "$f" "$1/"; done
    rm "$1/$2"
    half "$M/$2" "$1/$2"
}
model_cut "$T/m-config" config.json
model_cut "$T/m-shard" model-00003-of-00003.safetensors
model_cut "$T/m-tok" tokenizer.json
model_cut "$T/m-index" model.safetensors.index.json
# mismatched: a 2 x 2 x 8 mask, samples made with another tokenizer
"$BZ" "$F/maskfiles/seed-alpha-2x2x8.safetensors" --ratio 0.5 --align 2 -o "$T/small.mask" -q ||
    fail "setup: small mask"
"$PR" -t "$F/tokenizer/seed-mini400.json" --corpus "$T/corpus.txt" -w "$T/words.txt" -T niah_single_1 -l 300 -n 1 \
    -o "$T/other.smp" 2>/dev/null || fail "setup: samples of another tokenizer"

limit_kb=1048576 # /dev/zero cases run under a 1 GiB address-space limit
n_cases=0
# check WHAT -- command...: the command must fail cleanly
check() {
    local what=$1; shift 2
    n_cases=$((n_cases + 1))
    local zero=0
    case $what in *"/dev/zero"*) zero=1 ;; esac
    if [ -n "${LEANK_SAN:-}" ] && [ $zero = 1 ]; then
        # ASan reserves terabytes, so no ulimit: its allocator refuses above 1 GiB instead
        ASAN_OPTIONS=$ASAN_OPTIONS:allocator_may_return_null=1:max_allocation_size_mb=1024 \
            timeout 60 "$@" >"$T/stdout" 2>"$T/err.san" </dev/null
        rc=$?
        grep -v '^==[0-9]*==WARNING: AddressSanitizer failed to allocate' "$T/err.san" >"$T/err"
        (exit $rc)
    elif [ -n "${LEANK_SAN:-}" ]; then
        timeout 60 "$@" >"$T/stdout" 2>"$T/err" </dev/null
    elif [ $zero = 1 ]; then
        (ulimit -v $limit_kb; timeout 60 "$@" >"$T/stdout" 2>"$T/err" </dev/null)
    else # (OpenBLAS spins when a worker thread cannot map its buffer under the limit)
        timeout 60 "$@" >"$T/stdout" 2>"$T/err" </dev/null
    fi
    local rc=$? lines
    lines=$(wc -l <"$T/err")
    if [ $rc -eq 0 ]; then fail "$what: exit 0"
    elif [ $rc -eq 124 ]; then fail "$what: timed out"
    elif [ $rc -ge 126 ] && [ $rc -ne 130 ]; then fail "$what: exit $rc (signal or crash): $(head -n3 "$T/err")"
    elif [ "$lines" -ne 1 ]; then fail "$what: $lines lines on stderr: $(head -n3 "$T/err")"
    elif ! grep -q '^leank-[a-z]*: ' "$T/err"; then fail "$what: message not 'leank-X: ...': $(cat "$T/err")"
    elif [ $zero = 1 ] && { [ $rc -eq 5 ] || ! grep -q '/dev/zero' "$T/err"; }; then
        fail "$what: exit $rc, not refused by name: $(cat "$T/err")"
    elif [ -n "$(ls -A "$O")" ]; then fail "$what: output left: $(ls -A "$O")"
    else echo "ok: $what: exit $rc: $(cut -c1-150 "$T/err")"; fi
    rm -rf "${O:?}"/* "$O"/.[!.]* 2>/dev/null
}

# file slots: NAME, a valid file (truncated to half), a file of another kind, the command with @ for the file
file_slot() {
    local name=$1 valid=$2 wrong=$3; shift 3
    local h=$T/half.${valid##*.} # keeps the extension: some readers go by it
    half "$valid" "$h"
    for kind in missing empty truncated wrong-kind directory /dev/zero; do
        local f
        case $kind in
        missing) f=$T/absent ;;
        empty) f=$T/empty ;;
        truncated) f=$h ;;
        wrong-kind) f=$wrong ;;
        directory) f=$T/dir ;;
        /dev/zero) f=/dev/zero ;;
        esac
        check "$name: $kind" -- "${@/@/$f}"
    done
}
# model slots: missing, an empty directory, a regular file, /dev/zero, and a
# model with one file cut (config_slot: the readers of config.json alone)
model_slot() {
    local name=$1; shift
    for f in "$T/absent" "$T/emptydir" "$SMP" /dev/zero "$T/m-config" "$T/m-shard" "$T/m-index" "$T/m-tok"; do
        check "$name: model ${f#$T/}" -- "${@/@/$f}"
    done
}
config_slot() {
    local name=$1; shift
    for f in "$T/absent" "$T/emptydir" "$SMP" /dev/zero "$T/m-config"; do
        check "$name: model ${f#$T/}" -- "${@/@/$f}"
    done
}

# ---- leank-prep ----
file_slot "prep -t" "$M/tokenizer.json" "$SMP" "$PR" -t @ --corpus "$T/corpus.txt" -w "$T/words.txt" -T niah_single_1 -l 300 -n 1 -o "$O/s.smp"
python3 -c 'import json, sys; print(json.dumps({"text": open(sys.argv[1]).read()}))' "$T/corpus.txt" >"$T/corpus.json"
file_slot "prep --corpus (.json)" "$T/corpus.json" "$SMP" "$PR" -t "$M" --corpus @ -w "$T/words.txt" -T niah_single_1 -l 300 -n 1 -o "$O/s.smp"
for kind in missing empty directory /dev/zero wrong-kind; do
    case $kind in missing) f=$T/absent ;; empty) f=$T/empty ;; directory) f=$T/emptydir ;; /dev/zero) f=/dev/zero ;; wrong-kind) f=$SMP ;; esac
    check "prep --words: $kind" -- "$PR" -t "$M" --corpus "$T/corpus.txt" -w "$f" -T niah_single_1 -l 300 -n 1 -o "$O/s.smp"
done
file_slot "prep --dump" "$SMP" "$MASK" "$PR" -t "$M" --dump @ -o "$O/d.jsonl"
check "prep: samples of another tokenizer" -- "$PR" -t "$M" --dump "$T/other.smp" -o "$O/d.jsonl"
check "prep -l 0" -- "$PR" -t "$M" --corpus "$T/corpus.txt" -T niah_single_1 -l 0 -o "$O/s.smp"
check "prep -n -1" -- "$PR" -t "$M" --corpus "$T/corpus.txt" -T niah_single_1 -l 300 -n -1 -o "$O/s.smp"
check "prep -j 100000" -- "$PR" -t "$M" --corpus "$T/corpus.txt" -T niah_single_1 -l 300 -j 100000 -o "$O/s.smp"

# ---- leank-train ----
model_slot "train -m" "$TR" -m @ "$SMP" -o "$O/a.st" --steps 1
file_slot "train -c" "$YAML" "$SMP" "$TR" -m "$M" -c @ "$SMP" -o "$O/a.st" --steps 1
file_slot "train SAMPLES" "$SMP" "$MASK" "$TR" -m "$M" @ -o "$O/a.st" --steps 1
file_slot "train --init" "$ALPHA" "$MASK" "$TR" -m "$M" --stage2 --init @ "$SMP" -o "$O/a.st" --steps 1
check "train: samples of another tokenizer" -- "$TR" -m "$M" "$T/other.smp" -o "$O/a.st" --steps 1
check "train: --init of another shape" -- "$TR" -m "$M" --stage2 --init "$F/maskfiles/seed-alpha-2x2x8.safetensors" "$SMP" -o "$O/a.st"
check "train --steps 0" -- "$TR" -m "$M" "$SMP" -o "$O/a.st" --steps 0
check "train --ratio 2" -- "$TR" -m "$M" --stage2 --init "$ALPHA" --ratio 2 "$SMP" -o "$O/a.st"
check "train --lr -1" -- "$TR" -m "$M" "$SMP" -o "$O/a.st" --lr -1

# ---- leank-binarize ----
file_slot "binarize INPUT" "$ALPHA" "$SMP" "$BZ" @ --ratio 0.5 -o "$O/m.st"
file_slot "binarize --from-tsv" "$TSV" "$SMP" "$BZ" --from-tsv @ -o "$O/m.st"
config_slot "binarize -m" "$BZ" --from-tsv "$TSV" -m @ -o "$O/m.st"
check "binarize: mask of another model" -- "$BZ" "$T/small.mask" -m "$M" -o "$O/m.st"
check "binarize --ratio 1" -- "$BZ" "$ALPHA" --ratio 1 -o "$O/m.st"
check "binarize --align 0" -- "$BZ" "$ALPHA" --ratio 0.5 --align 0 -o "$O/m.st"

# ---- leank-pack ----
file_slot "pack --mask" "$MASK" "$SMP" "$PK" --mask @ -m "$M" -o "$O/p.st"
config_slot "pack -m" "$PK" --mask "$MASK" -m @ -o "$O/p.st"
check "pack: mask of another model" -- "$PK" --mask "$T/small.mask" -m "$M" -o "$O/p.st"
check "pack --context -1" -- "$PK" --mask "$MASK" -m "$M" --context -1 -o "$O/p.st"

# ---- leank-decode ----
model_slot "decode -m" "$DE" -m @ -p hi --max-tokens 1
file_slot "decode --mask" "$MASK" "$SMP" "$DE" -m "$M" --mask @ -p hi --max-tokens 1
for kind in missing directory /dev/zero; do
    case $kind in missing) f=$T/absent ;; directory) f=$T/dir ;; /dev/zero) f=/dev/zero ;; esac
    check "decode --prompt-file: $kind" -- "$DE" -m "$M" --prompt-file "$f" --max-tokens 1
done
for kind in missing truncated wrong-kind directory /dev/zero; do
    case $kind in missing) f=$T/absent ;; truncated) half "$T/req.jsonl" "$T/half"; f=$T/half ;; wrong-kind) f=$SMP ;;
                  directory) f=$T/dir ;; /dev/zero) f=/dev/zero ;; esac
    check "decode --batch: $kind" -- "$DE" -m "$M" --batch "$f"
done
check "decode: mask of another model" -- "$DE" -m "$M" --mask "$T/small.mask" -p hi --max-tokens 1
check "decode: a plan as the model" -- "$DE" -m "$PLAN" -p hi --max-tokens 1
check "decode -n -1" -- "$DE" -m "$M" -p hi -n -1
check "decode --top-p 2" -- "$DE" -m "$M" -p hi --top-p 2

# ---- leank-bench ----
file_slot "bench accuracy SAMPLES" "$SMP" "$MASK" "$BE" accuracy -m "$M" @ -o "$O/ans.jsonl"
file_slot "bench accuracy --mask" "$MASK" "$SMP" "$BE" accuracy -m "$M" "$SMP" --mask @ -o "$O/ans.jsonl"
model_slot "bench accuracy -m" "$BE" accuracy -m @ "$SMP" -o "$O/ans.jsonl"
check "bench accuracy: samples of another tokenizer" -- "$BE" accuracy -m "$M" "$T/other.smp" -o "$O/ans.jsonl"
check "bench accuracy: mask of another model" -- "$BE" accuracy -m "$M" "$SMP" --mask "$T/small.mask" -o "$O/ans.jsonl"
file_slot "bench tokenize -t" "$M/tokenizer.json" "$SMP" "$BE" tokenize -t @ --file "$T/corpus.txt" --repeat 1
check "bench no-such-benchmark" -- "$BE" no-such-benchmark
check "bench tokenize --repeat 0" -- "$BE" tokenize -t "$M" --file "$T/corpus.txt" --repeat 0

# ---- outputs: unwritable, /dev/full ----
mkfile=$T/afile
: >"$mkfile"
for out in /proc/leank-no "$mkfile/x" /dev/full; do
    check "prep -o $out" -- "$PR" -t "$M" --corpus "$T/corpus.txt" -w "$T/words.txt" -T niah_single_1 -l 300 -n 1 -o "$out"
    check "train -o $out" -- "$TR" -m "$M" "$SMP" -o "$out" --steps 1 --checkpoint "$O/../ck"
    check "binarize -o $out" -- "$BZ" "$ALPHA" --ratio 0.5 -o "$out"
    check "pack -o $out" -- "$PK" --mask "$MASK" -m "$M" -o "$out"
    check "bench accuracy -o $out" -- "$BE" accuracy -m "$M" "$SMP" -o "$out" --max-tokens 1
    check "prep --dump -o $out" -- "$PR" -t "$M" --dump "$SMP" -o "$out"
done
check "decode >/dev/full" -- sh -c "'$DE' -m '$M' -p hi --max-tokens 2 >/dev/full"
check "pack report >/dev/full" -- sh -c "'$PK' --mask '$MASK' -m '$M' >/dev/full"
check "binarize --report >/dev/full" -- sh -c "'$BZ' '$MASK' --report >/dev/full"
check "prep --decode >/dev/full" -- sh -c "echo 1 2 3 | '$PR' -t '$M' --decode >/dev/full"
[ -n "${LEANK_SAN:-}" ] && skip "SAN=1: the /dev/zero cases ran with ASan's allocation limit, not an address-space limit"
echo "$n_cases cases"
finish
