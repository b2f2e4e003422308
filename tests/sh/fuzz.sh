# fuzz.sh - replay every fuzz target's kept inputs (tests/fuzz/NAME/: seeds and
# the inputs of crashes found and fixed) through the same target code, built
# with the test compiler (bin/tests/fuzz_NAME; under SAN=1 with the sanitizers).
. "$LEANK_TOP/tests/lib.sh"
n=0
for src in "$LEANK_TOP"/tests/fuzz/fuzz_*.c; do
    name=$(basename "$src" .c)
    name=${name#fuzz_}
    bin=$B/tests/fuzz_$name
    dir=$LEANK_TOP/tests/fuzz/$name
    [ -x "$bin" ] || { fail "$bin not built"; continue; }
    [ -d "$dir" ] && [ -n "$(ls -A "$dir")" ] || { fail "tests/fuzz/$name/: no kept inputs"; continue; }
    if (cd "$LEANK_TOP" && "$bin" "$dir") >"$T/out" 2>&1; then
        ok "$(tail -n1 "$T/out")"
        n=$((n + 1))
    else
        fail "fuzz_$name: $(grep -m3 -E 'ERROR|SUMMARY|error' "$T/out")"
    fi
done
[ $n -gt 0 ] || fail "no fuzz target replayed"
finish
