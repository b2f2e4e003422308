# leank-bench kernel / attention (the CUDA kernels, kernels/bench_kernels.cu):
# the command line (cmd/leank-bench.c: --help, bad options and values, one
# line and exit 2), a bad mask, and a clear refusal where there is no GPU.
# Built without CUDA, neither command exists: one line, exit 2.
. "$(dirname "$0")/../lib.sh"
be="$B/leank-bench"

if ! "$be" --help | grep -q '^  kernel '; then
    expect_fail 2 "kernel in a build without CUDA" -- "$be" kernel
    expect_fail 2 "attention in a build without CUDA" -- "$be" attention --help
    finish
fi

for c in kernel attention; do
    if "$be" $c --help >"$T/h" 2>"$T/e" && [ ! -s "$T/e" ] && grep -q "^usage: leank-bench $c " "$T/h"; then
        miss=""
        for o in --batch --heads --kv-heads --head-dim --len --sink --recent --mask --layers --prefill-len --reps \
            --sdpa --json --ab --sustain; do
            grep -q -- "$o" "$T/h" || miss="$miss $o"
        done
        [ -z "$miss" ] && ok "$c --help lists its options" || fail "$c --help lacks$miss"
    else
        fail "$c --help: $(cat "$T/e")"
    fi
    expect_fail 2 "$c --no-such-option" -- "$be" $c --no-such-option
    [ "$(wc -l <"$T/err")" = 1 ] || fail "$c --no-such-option: $(wc -l <"$T/err") lines on stderr"
    expect_fail 2 "$c: an unexpected argument" -- "$be" $c extra
    expect_fail 2 "$c --batch abc" -- "$be" $c --batch abc
    expect_fail 2 "$c --head-dim 512" -- "$be" $c --head-dim 512
    expect_fail 2 "$c: heads not a multiple of kv-heads" -- "$be" $c --heads 12 --kv-heads 8
    grep -q "bad shape" "$T/err" || fail "$c: heads 12 / kv-heads 8: $(cat "$T/err")"
done
expect_fail 2 "attention --prefill-len -1" -- "$be" attention --prefill-len -1
expect_fail 2 "attention --sustain -5" -- "$be" attention --sustain -5
expect_fail 2 "kernel --layers 0" -- "$be" kernel --layers 0
expect_fail 4 "kernel --mask absent" -- "$be" kernel --mask "$T/absent.tsv"

# a small mask: 2 layers of 8 kv heads, head_dim 128 (32 channels a head; in layer 1 half the heads none)
ch=$(seq -s, 0 15),$(seq -s, 64 79)
{
    printf '# layer\tkv_head\tkept\tchannels\n'
    for g in 0 1 2 3 4 5 6 7; do printf '0\t%d\t32\t%s\n' $g "$ch"; done
    for g in 0 1 2 3; do printf '1\t%d\t32\t%s\n' $g "$ch"; done
    for g in 4 5 6 7; do printf '1\t%d\t0\t\n' $g; done
} >"$T/m.tsv"
if ! nvidia-smi -L 2>/dev/null | grep -q GPU; then # no GPU here (CI): one clear line, exit 6
    expect_fail 6 "kernel without a GPU" -- "$be" kernel --mask "$T/m.tsv" --reps 1
    [ "$(wc -l <"$T/err")" = 1 ] || fail "kernel without a GPU: $(cat "$T/err")"
    expect_fail 6 "attention without a GPU" -- "$be" attention --prefill-len 0 --reps 1
    [ "$(wc -l <"$T/err")" = 1 ] || fail "attention without a GPU: $(cat "$T/err")"
else # small shapes: the tables come out
    small="--batch 2 --len 2048 --sink 64 --recent 256 --reps 2"
    "$be" kernel --mask "$T/m.tsv" $small >"$T/k" 2>"$T/e" && grep -q '^ours leank avg 2 ' "$T/k" &&
        grep -q '^leank layer 1 ' "$T/k" && ok "kernel: the table" || fail "kernel: $(cat "$T/e" "$T/k")"
    "$be" attention $small --prefill-len 512 >"$T/a" 2>"$T/e" && grep -q '^ours dense ' "$T/a" &&
        grep -q '^causal prefill attention' "$T/a" && ok "attention: the table" || fail "attention: $(cat "$T/e" "$T/a")"
fi
finish
