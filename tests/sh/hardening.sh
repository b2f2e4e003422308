# hardening.sh - regression tests of the bugs of issue 16, each on
# leank-mini (shipped), so that they run without ../shared.
. "$LEANK_TOP/tests/lib.sh"
M=$LEANK_TOP/data/models/leank-mini
F=$LEANK_TOP/tests/fuzz
PR=$B/leank-prep TR=$B/leank-train BZ=$B/leank-binarize PK=$B/leank-pack DE=$B/leank-decode BE=$B/leank-bench
SMP=$F/samples/seed-train.smp
no_tmp() { # no output and no temporary left in directory $1
    local left
    left=$(find "$1" -name '*.leank-tmp.*' | head -n1)
    [ -z "$left" ] || fail "$2: temporary left behind: $left"
}
corrupt_mini() { # DIR PY-EXPR: leank-mini with the shards linked, the index and config copied, then edited
    mkdir -p "$1"
    for f in "$M"/*; do ln -s "$f" "$1/"; done
    rm "$1/config.json"
    cp "$M/config.json" "$1/"
    python3 - "$1" "$2" <<'PY'
import json, sys
d, expr = sys.argv[1], sys.argv[2]
c = json.load(open(d + "/config.json"))
exec(expr)
json.dump(c, open(d + "/config.json", "w"))
PY
}

# 1. an added token id >= 2^31 is refused, not cast into a heap overflow
python3 - "$M/tokenizer.json" "$T/tok.json" <<'PY'
import json, sys
t = json.load(open(sys.argv[1]))
t["added_tokens"].append({"id": 4294967306, "content": "<x>", "special": True})
json.dump(t, open(sys.argv[2], "w"))
PY
echo hi | expect_fail 3 "added token id 2^32+10" -- "$PR" -t "$T/tok.json" --encode
grep -q "out of range" "$T/err" || fail "added token message: $(cat "$T/err")"

# 2. -o onto a special file writes in place: /dev/null stays a device, a FIFO a FIFO
printf '# leank-mask n_layers=6 n_kv_heads=1 head_dim=128\n' >"$T/m.tsv"
for l in 0 1 2 3 4 5; do printf '%d\t0\t2\t0,1\n' $l >>"$T/m.tsv"; done
"$BZ" --from-tsv "$T/m.tsv" -o /dev/null -q && [ -c /dev/null ] && ok "-o /dev/null" || fail "-o /dev/null"
ls /dev/null.leank-tmp.* >/dev/null 2>&1 && fail "a temporary was made beside /dev/null"
mkfifo "$T/fifo"
cat "$T/fifo" >"$T/fifo.out" &
"$BZ" --from-tsv "$T/m.tsv" -o "$T/fifo" -q; rc=$?
wait
[ $rc -eq 0 ] && [ -p "$T/fifo" ] && [ -s "$T/fifo.out" ] && ok "-o FIFO written in place" || fail "-o FIFO: rc $rc"

# 3. a TSV whose header says head_dim 64 is refused for a head_dim-128 model
sed 's/head_dim=128/head_dim=64/' "$T/m.tsv" >"$T/m64.tsv"
expect_fail 3 "TSV head_dim 64 vs model 128 (pack)" -- "$PK" --mask "$T/m64.tsv" -m "$M"
expect_fail 3 "TSV head_dim 64 vs model 128 (decode)" -- "$DE" -m "$M" --mask "$T/m64.tsv" -p hi --max-tokens 1
expect_fail 3 "TSV head_dim 64 vs model 128 (binarize -m)" -- "$BZ" --from-tsv "$T/m64.tsv" -m "$M" -o "$T/x.st"
[ -e "$T/x.st" ] && fail "binarize left an output"

# 4. NaN weights stop training at step 1; alpha outside [0, 1] is refused
mkdir -p "$T/nan"
for f in "$M"/*; do ln -s "$f" "$T/nan/"; done
rm "$T/nan/model-00003-of-00003.safetensors"
python3 - "$M/model-00003-of-00003.safetensors" "$T/nan/model-00003-of-00003.safetensors" <<'PY'
import json, struct, sys
b = bytearray(open(sys.argv[1], "rb").read())
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n])
t = h["model.norm.weight"]
o = 8 + n + t["data_offsets"][0]
b[o:o + 8] = {"F32": struct.pack("<ff", float("nan"), float("inf")), "BF16": b"\xc0\x7f\x80\x7f\xc0\x7f\x80\x7f",
              "F16": b"\x00\x7e\x00\x7c\x00\x7e\x00\x7c"}[t["dtype"]]
open(sys.argv[2], "wb").write(b)
PY
expect_fail 3 "NaN weights" -- "$TR" -m "$T/nan" "$SMP" -o "$T/nan.st" --steps 3 --sink 4 --recent 16
grep -q "step 1: the loss is" "$T/err" || fail "NaN message: $(cat "$T/err")"
[ -e "$T/nan.st" ] && fail "NaN training left an output"
for v in nan inf -0.5 1.5; do
    python3 - "$F/maskfiles/seed-alpha-mini.safetensors" "$T/alpha-$v.st" "$v" <<'PY'
import json, struct, sys
b = bytearray(open(sys.argv[1], "rb").read())
n = struct.unpack("<Q", b[:8])[0]
o = 8 + n + json.loads(b[8:8 + n])["alpha"]["data_offsets"][0]
b[o + 40:o + 44] = struct.pack("<f", float(sys.argv[3]))
open(sys.argv[2], "wb").write(b)
PY
    expect_fail 3 "alpha $v (binarize)" -- "$BZ" "$T/alpha-$v.st" --ratio 0.5 -o "$T/x.st"
    expect_fail 3 "alpha $v (train --init)" -- "$TR" -m "$M" --stage2 --init "$T/alpha-$v.st" "$SMP" -o "$T/x.st"
done
[ -e "$T/x.st" ] && fail "an output was left after a bad alpha"

# 5. a TSV naming 65536 heads / channel 65535 is refused before allocating (1 GiB of address space)
python3 -c '
import sys
w = sys.stdout.write
for h in range(65536): w("0\t%d\t1\t65535\n" % h if h == 65535 else "0\t%d\t0\t\n" % h)' >"$T/big.tsv"
if [ -z "${LEANK_SAN:-}" ]; then
    (ulimit -v 1048576; "$BZ" --from-tsv "$T/big.tsv" -o "$T/big.st" -q) 2>"$T/err"; rc=$?
else
    "$BZ" --from-tsv "$T/big.tsv" -o "$T/big.st" -q 2>"$T/err"; rc=$?
fi
[ $rc -eq 3 ] && ok "TSV of 65536 heads: exit 3: $(head -n1 "$T/err")" || fail "TSV of 65536 heads: exit $rc"

# 6. config sizes: bounded, a config error (3), never an out-of-memory
corrupt_mini "$T/hd" 'c["head_dim"] = 2**30'
expect_fail 3 "head_dim 2^30" -- "$DE" -m "$T/hd" -p hi --max-tokens 1
grep -q '"head_dim" is 1073741824' "$T/err" || fail "head_dim message: $(cat "$T/err")"
corrupt_mini "$T/vs" 'c["vocab_size"] = 4000000'
expect_fail 3 "vocab_size 4000000 (checkpoint has 8192)" -- "$DE" -m "$T/vs" -p hi --max-tokens 1
corrupt_mini "$T/hs" 'c["hidden_size"] = 100000; c["head_dim"] = 128'
expect_fail 3 "hidden_size 100000" -- "$TR" -m "$T/hs" "$SMP" -o "$T/x.st"
corrupt_mini "$T/nl" 'c["num_hidden_layers"] = 1000000'
expect_fail 3 "num_hidden_layers 10^6" -- "$PK" --mask "$T/m.tsv" -m "$T/nl"

# 7. --batch: a read error is an error; max_tokens out of range is refused, not wrapped
expect_fail 4 "--batch DIRECTORY" -- "$DE" -m "$M" --batch "$T"
echo '{"prompt": "hi", "max_tokens": 4294967298}' >"$T/req"
expect_fail 3 "--batch max_tokens 2^32+2" -- "$DE" -m "$M" --batch "$T/req"
echo '{"prompt": "hi", "temperature": "hot"}' >"$T/req"
expect_fail 3 "--batch temperature a string" -- "$DE" -m "$M" --batch "$T/req"

# 8. outputs are checked before the work: a missing directory fails before the inputs are read
for cmd in "$TR -m $M $T/absent.smp -o $T/no/dir/a.st" \
           "$PR -t $M --corpus $T/absent.txt -T niah_single_1 -l 300 -n 1 -o $T/no/dir/s.smp" \
           "$BZ $T/absent.st --ratio 0.5 -o $T/no/dir/m.st" \
           "$PK --mask $T/absent.st -m $M -o $T/no/dir/p.st"; do
    expect_fail 4 "${cmd%% *} output in a missing directory" -- $cmd
    grep -q "no/dir" "$T/err" || fail "${cmd%% *}: output not checked first: $(cat "$T/err")"
done

# 9. the interrupted-training path frees what it holds (SAN=1 checks leaks)
"$TR" -m "$M" "$SMP" -o "$T/int.st" --steps 4 --stop-after 1 --sink 4 --recent 16 2>"$T/err"; rc=$?
[ $rc -eq 130 ] && ok "--stop-after 1: exit 130" || fail "--stop-after 1: exit $rc: $(cat "$T/err")"

# 10. a write error on stdout is an error
for p in prep train binarize pack decode bench; do
    "$B/leank-$p" --help >/dev/full 2>"$T/err"; rc=$?
    [ $rc -eq 4 ] || fail "leank-$p --help >/dev/full: exit $rc"
    "$B/leank-$p" --version >/dev/full 2>"$T/err"; rc=$?
    [ $rc -eq 4 ] || fail "leank-$p --version >/dev/full: exit $rc"
done
ok "--help/--version >/dev/full: exit 4"
expect_fail 4 "--list-tasks >/dev/full" -- sh -c "'$PR' --list-tasks >/dev/full"
echo "hello world" >"$T/text"
expect_fail 4 "bench tokenize >/dev/full" -- sh -c "'$BE' tokenize -t '$M' --file '$T/text' --repeat 1 >/dev/full"
expect_fail 4 "--encode >/dev/full" -- sh -c "'$PR' -t '$M' --encode <'$T/text' >/dev/full"

# 11. SIGQUIT removes the temporary; a stale temporary of a dead writer is removed by the next run
python3 -c 'import itertools; print("\n".join("".join(w) for w in itertools.product("bcdfgklmnprstvz", "aeiou", "nrst")))' >"$T/words.txt"
printf 'The grass is green. The sky is blue. The sun is yellow. Here we go.\n%.0s' $(seq 300) >"$T/corpus.txt"
mkdir "$T/q"
ulimit -c 0 # SIGQUIT dumps core by default: not here
# (a background job of a script starts with SIGQUIT ignored, which leank respects: restore it)
env --default-signal=QUIT "$PR" -t "$M" --corpus "$T/corpus.txt" -w "$T/words.txt" -T niah_single_1 -l 2000 -n 100000 -j 1 \
    -o "$T/q/s.smp" 2>/dev/null &
pid=$!
for i in $(seq 50); do ls "$T"/q/s.smp.leank-tmp.* >/dev/null 2>&1 && break; sleep 0.1; done
kill -QUIT $pid; wait $pid; rc=$?
[ $rc -ne 0 ] && [ -z "$(ls -A "$T/q")" ] && ok "SIGQUIT: exit $rc, nothing left" || fail "SIGQUIT: exit $rc, left: $(ls "$T/q")"
sh -c 'exit 0' & dead=$!
wait $dead
touch "$T/q/m.st.leank-tmp.$dead.AbCdEf" "$T/q/m.st.leank-tmp.$$.AbCdEf"
"$BZ" --from-tsv "$T/m.tsv" -o "$T/q/m.st" -q || fail "binarize into q"
[ ! -e "$T/q/m.st.leank-tmp.$dead.AbCdEf" ] && ok "stale temporary of a dead run removed" || fail "stale temporary kept"
[ -e "$T/q/m.st.leank-tmp.$$.AbCdEf" ] && ok "temporary of a live run kept" || fail "live run's temporary removed"
rm -f "$T/q/m.st.leank-tmp.$$.AbCdEf"

# 12. stdin corpora and words; samples without the zstd checksum; question_pos; the regex limit
"$PR" -t "$M" --corpus "$T/corpus.txt" -w "$T/words.txt" -T niah_single_1 -l 300 -n 1 -o "$T/a.smp" &&
    "$PR" -t "$M" --corpus - -w "$T/words.txt" -T niah_single_1 -l 300 -n 1 -o "$T/b.smp" <"$T/corpus.txt" &&
    "$PR" -t "$M" --corpus "$T/corpus.txt" -w - -T niah_single_1 -l 300 -n 1 -o "$T/c.smp" <"$T/words.txt" ||
    fail "prep with stdin"
for s in a b c; do "$PR" -t "$M" --dump "$T/$s.smp" | tail -n +2 >"$T/$s.jsonl"; done
cmp -s "$T/a.jsonl" "$T/b.jsonl" && cmp -s "$T/a.jsonl" "$T/c.jsonl" && ok "--corpus - and -w - read stdin" ||
    fail "--corpus - / -w - samples differ"
expect_fail 2 "--corpus - and -w - together" -- "$PR" -t "$M" --corpus - -w - -T niah_single_1 -l 300 -o "$T/x.smp"
python3 - "$T/a.smp" "$T" <<'PY'
import subprocess, struct, sys
src, d = sys.argv[1], sys.argv[2]
b = open(src, "rb").read()
at = b.index(b"\x28\xb5\x2f\xfd")
head, body = b[:at], subprocess.run(["zstd", "-dc"], input=b[at:], capture_output=True, check=True).stdout
def z(data, *opts): return subprocess.run(["zstd", "-c", "-q", *opts], input=data, capture_output=True, check=True).stdout
open(d + "/nocheck.smp", "wb").write(head + z(body, "--no-check"))
# first record: kind, length, task length + task, target_len, question_pos
tl = body[8]
qp = 8 + 1 + tl + 4
for name, v in (("qneg", -5), ("qbig", 10**9)):
    open(f"{d}/{name}.smp", "wb").write(head + z(body[:qp] + struct.pack("<i", v) + body[qp + 4:], "--check"))
PY
expect_fail 3 "samples without the zstd checksum" -- "$PR" -t "$M" --dump "$T/nocheck.smp"
expect_fail 3 "question_pos -5" -- "$PR" -t "$M" --dump "$T/qneg.smp"
expect_fail 3 "question_pos 10^9" -- "$PR" -t "$M" --dump "$T/qbig.smp"
head -c 10000000 /dev/zero | tr '\0' ' ' >"$T/spaces"
expect_fail 3 "10 MB of spaces (regex match limit)" -- "$PR" -t "$M" --encode <"$T/spaces"
# 13. a file read whole that never ends (/dev/zero as a config, a mask, a
# word list, a prompt) is refused by its size, naming it and what was
# expected, not by running out of memory
for l in 0 1 2 3 4 5; do printf '%d\t0\t32\t%s\n' $l "$(seq -s, 32 63)"; done >"$T/half.tsv"
for c in "$PK -m /dev/zero --mask $T/half.tsv" "$DE -m $M --mask /dev/zero -p hi" \
         "$TR -m $M -c /dev/zero $SMP -o $T/a.st" "$PR -t $M -w /dev/zero -T vt -l 300 -n 1 -o $T/y.smp" \
         "$BZ --from-tsv /dev/zero -o $T/m.st" "$DE -m $M -f /dev/zero"; do
    expect_fail 3 "${c#$B/} (/dev/zero)" -- $c
    grep -q "^leank-[a-z]*: /dev/zero: longer than [0-9.]* [KMG]iB (expected " "$T/err" ||
        fail "${c#$B/}: $(head -c 200 "$T/err")"
done
no_tmp "$T" "hardening"
finish
