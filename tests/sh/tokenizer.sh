#!/usr/bin/env bash
# The tokenizer through the programs: leank-prep --encode/--decode on real
# tokenizers against HF's ids, error paths, and leank-bench tokenize.
. "$(dirname "$0")/../lib.sh"
need_shared
V=$S/data/tokenizers/vectors
P=$B/leank-prep

# pg excerpt: exact HF ids (uint32 LE files) and a byte-exact round trip
for m in llama3 qwen3; do
    od -An -v -tu4 -w4 "$V/$m-pg-excerpt.ids" | tr -d ' ' >"$T/$m.want"
    if "$P" -t "$S/data/tokenizers/$m" --encode <"$V/pg-excerpt.txt" >"$T/$m.ids"; then
        if cmp -s "$T/$m.ids" "$T/$m.want"; then ok "$m: pg excerpt ids ($(wc -l <"$T/$m.want")) match HF"
        else fail "$m: pg excerpt ids differ from HF ($(wc -l <"$T/$m.ids") vs $(wc -l <"$T/$m.want") ids)"; fi
    else fail "$m: --encode exited $?"; fi
done
# (each run loads a 9-11 MB tokenizer.json: one decode here, both in test_tokenizer)
if "$P" -t "$S/data/tokenizers/llama3/tokenizer.json" --decode <"$T/llama3.want" >"$T/llama3.txt" &&
    cmp -s "$T/llama3.txt" "$V/pg-excerpt.txt"; then ok "llama3: decode gives the text back byte for byte"
else fail "llama3: decode differs from the text"; fi

# stories260K (SentencePiece-style): BOS with --add-special, leading space stripped on decode
st=$S/models/stories260K
ids=$(printf 'Hello world' | "$P" -t "$st" --encode --add-special | tr '\n' ' ')
[ "$ids" = "1 346 306 414 263 304 341 " ] && ok "stories260K: Hello world -> $ids" || fail "stories260K ids: '$ids'"
out=$(echo "$ids" | "$P" -t "$st" --decode --skip-special)
[ "$out" = "Hello world" ] && ok "stories260K: decode --skip-special" || fail "stories260K decode: '$out'"
out=$(echo "$ids" | "$P" -t "$st" --decode)
[ "$out" = "<s> Hello world" ] && ok "stories260K: decode keeps <s>" || fail "stories260K decode with <s>: '$out'"

# errors: one line on stderr, the documented exit codes
printf 'ab\377c' >"$T/bad.txt"
expect_fail 3 "invalid UTF-8 refused" -- "$P" -t "$st" --encode <"$T/bad.txt"
grep -q "offset 2" "$T/err" && ok "message gives the byte offset" || fail "no byte offset in: $(cat "$T/err")"
printf '{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [' >"$T/trunc.json"
expect_fail 3 "truncated tokenizer.json refused" -- "$P" -t "$T/trunc.json" --encode </dev/null
grep -q "trunc.json" "$T/err" && ok "message names the file" || fail "file not named in: $(cat "$T/err")"
printf '{"model": {"type": "Unigram", "vocab": []}}' >"$T/uni.json"
expect_fail 3 "unsupported model refused" -- "$P" -t "$T/uni.json" --encode </dev/null
expect_fail 4 "missing tokenizer" -- "$P" -t "$T/nope.json" --encode </dev/null
expect_fail 3 "id out of range refused" -- "$P" -t "$st" --decode <<<"1 512"

# the benchmark runs and finds the same number of ids (no HF here: CI may lack it)
if LEANK_SHARED=$S "$B/leank-bench" tokenize --repeat 1 --json >"$T/bench.json"; then
    grep -q '"ids": 58773' "$T/bench.json" && ok "leank-bench tokenize: $(grep -o '"mb_per_s": [0-9.]*' "$T/bench.json")" ||
        fail "leank-bench tokenize: $(cat "$T/bench.json")"
else fail "leank-bench tokenize exited $?"; fi
finish
