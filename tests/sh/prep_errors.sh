#!/usr/bin/env bash
# leank-prep error paths: bad corpora, impossible requests, bad samples files.
# Each must fail with one clear line on stderr and leave no output file.
. "$(dirname "$0")/../lib.sh"
need_shared
P=$B/leank-prep
TOK=$S/data/tokenizers/llama3/tokenizer.json
W=$S/data/words
gen="$P -t $TOK -w $W --task niah_single_2 -l 2048 -n 2"

# expect_fail plus: no output file, no temporary left beside it
no_output() {
    if [ -e $T/out.smp ] || ls $T/out.smp.tmp.* >/dev/null 2>&1; then fail "$1: output file left behind"; fi
}
check() { # CODE WHAT PATTERN -- command...
    local code=$1 what=$2 pat=$3
    shift 3
    expect_fail $code "$what" -- "$@" -o $T/out.smp
    grep -q -- "$pat" $T/err || fail "$what: message lacks '$pat': $(cat $T/err)"
    [ "$(wc -l < $T/err)" -eq 1 ] || fail "$what: more than one line on stderr"
    no_output "$what"
}

: > $T/empty.txt
check 3 "empty corpus" "empty corpus" $gen --corpus $T/empty.txt
: > $T/empty.jsonl
check 3 "empty JSON lines" "empty corpus" $gen --corpus $T/empty.jsonl
mkdir -p $T/nodocs
check 3 "directory without .txt" "no .txt files" $gen --corpus $T/nodocs
printf 'Caf\xe9 au lait. It is good.\n' > $T/latin1.txt
check 3 "not UTF-8" "not UTF-8" $gen --corpus $T/latin1.txt
printf '{"title": "no text here"}\n' > $T/notext.jsonl
check 3 "JSON lines without text" 'no "text"' $gen --corpus $T/notext.jsonl
printf '{"title": "no text here"}' > $T/notext.json
check 3 "JSON without text" 'no "text"' $gen --corpus $T/notext.json
printf '{"text": "unterminated' > $T/broken.json
check 3 "broken JSON" "broken.json" $gen --corpus $T/broken.json
head -c 100000 $S/data/books/books.jsonl.zst > $T/trunc.jsonl.zst
check 3 "truncated zstd" "truncated zstd" $gen --corpus $T/trunc.jsonl.zst
head -c 5000 $S/data/books/books.jsonl.zst > $T/garbage.jsonl.zst
printf 'this is not zstd at all' >> $T/garbage.jsonl.zst
check 3 "corrupt zstd" "zstd" $gen --corpus $T/garbage.jsonl.zst --pool 100000000
check 4 "missing corpus" "cannot open" $gen --corpus $T/nonexistent.json

PG=$S/data/paulgraham/PaulGrahamEssays.json
check 2 "length shorter than the question" "too short" $P -t $TOK --corpus $PG -w $W --task niah_multiquery -l 100 -n 1
check 2 "passkeys do not fit" "too short" $P -t $TOK --corpus $PG --task passkey -l 800 -n 1
check 2 "cwe example and common words do not fit" "too short" $P -t $TOK -w $W --task cwe -l 300 -n 1
# ... while a short cwe that fits is made (RULER's 6x/1x repeats under 4K tokens)
$P -t $TOK -w $W --task cwe -l 1024 -n 2 -o $T/cwe.smp 2>$T/err && ok "cwe at 1024 tokens" \
    || fail "cwe at 1024 tokens: $(cat $T/err)"
check 2 "essay task without corpus" "needs a haystack corpus" $P -t $TOK -w $W --task niah_single_2 -l 4096 -n 1
check 2 "unknown task" "unknown task" $P -t $TOK --task nope -l 4096
check 2 "unknown template" "unknown chat template" $P -t $TOK --task vt -l 4096 --template chatml
check 2 "no lengths" "lengths" $P -t $TOK --task vt
check 2 "bad length" "--lengths" $P -t $TOK --task vt -l 4k
check 2 "no tokenizer" "tokenizer" $P --task vt -l 4096
check 2 "cwe needs more words than the list has" "too few" $P -t $TOK -w $W/adjectivelist.txt --task cwe -l 32768 -n 1
check 4 "missing tokenizer" "cannot open" $P -t $T/none.json --task vt -l 4096

# bad samples files for --dump
$P -t $TOK --task vt,fwe -l 2048 -n 3 -o $T/ok.smp || fail "make a samples file"
head -c $(( $(wc -c < $T/ok.smp) / 2 )) $T/ok.smp > $T/trunc.smp
expect_fail 3 "--dump truncated samples" -- $P -t $TOK --dump $T/trunc.smp -o $T/out.jsonl
grep -q truncated $T/err || fail "--dump truncated: $(cat $T/err)"
[ -e $T/out.jsonl ] && fail "--dump left a partial output"
expect_fail 3 "--dump not a samples file" -- $P -t $TOK --dump $PG -o $T/out.jsonl
expect_fail 3 "--dump with another tokenizer" -- $P -t $S/data/tokenizers/qwen3/tokenizer.json --dump $T/ok.smp
fp=$(od -An -tx8 -j16 -N8 $T/ok.smp | tr -d ' ')
grep -q "fingerprint $fp;" $T/err || fail "--dump tokenizer message lacks the file's fingerprint $fp: $(cat $T/err)"
# header flags (bytes 12-15) must be 0; the parameters must be a JSON object
python3 - $T/ok.smp $T/flags.smp $T/params.smp <<'PY'
import sys
b = bytearray(open(sys.argv[1], "rb").read())
f = bytearray(b); f[12] = 1; open(sys.argv[2], "wb").write(f)
p = bytearray(b); p[28] = ord("["); open(sys.argv[3], "wb").write(p)
PY
expect_fail 3 "--dump with header flags set" -- $P -t $TOK --dump $T/flags.smp -o $T/out.jsonl
expect_fail 3 "--dump with corrupt parameters" -- $P -t $TOK --dump $T/params.smp -o $T/out.jsonl
[ -e $T/out.jsonl ] && fail "--dump left an output"

# requests that would repeat or lose samples
check 2 "--lengths without a length" "no length" $P -t $TOK --task vt -l , -n 1
check 2 "a length given twice" "given twice" $P -t $TOK --task vt -l 600,600 -n 1
check 2 "train with train-uuid" "already includes" $P -t $TOK -w $W --task train,train-uuid -l 2048 -n 1
check 2 "negative seed" "--seed" $P -t $TOK --task vt -l 600 -n 1 -s ' -1'
$P -t $TOK --task vt,vt -l 600 -n 2 -o $T/vt2.smp 2>/dev/null && [ "$($P -t $TOK --dump $T/vt2.smp | tail -n +2 | wc -l)" = 2 ] &&
    ok "a task named twice is made once" || fail "vt,vt"
mkdir -p $T/w2 && printf 'red\nblue\n' >$T/w2/adjectivelist.txt && printf 'cat\ncat\ndog\n' >$T/w2/nounlist.txt
check 3 "word lists with 4 keys" "16 adjective-noun keys" $P -t $TOK -w $T/w2 --task niah_multikey_2 -l 2048 -n 1
for _ in $(seq 100); do echo same; done >$T/w1.txt
check 3 "a word file of one word 100 times" "16 adjective-noun keys" $P -t $TOK -w $T/w1.txt --task niah_multikey_2 -l 2048 -n 1
python3 -c "print('一二三四五六七八九十' * 20000)" >$T/nobreak.txt
check 3 "corpus without breaks" "sentence or word breaks" $gen --corpus $T/nobreak.txt
# a hang-up mid-run leaves no temporary file
$P -t $TOK -w $W --corpus $PG --task ruler -l 131072 -n 100 -j 1 -o $T/out.smp 2>/dev/null &
pid=$!
for _ in $(seq 50); do ls $T/out.smp.tmp.* >/dev/null 2>&1 && break; sleep 0.1; done
kill -HUP $pid
wait $pid
rc=$?
[ $rc = 129 ] && ok "SIGHUP: exit 129" || fail "SIGHUP: exit $rc (finished first?)"
no_output "SIGHUP"
expect_fail 3 "--decode bad id" -- sh -c "echo '1 2 x' | $P -t $TOK --decode"
expect_fail 3 "--encode invalid UTF-8" -- sh -c "printf 'a\377b' | $P -t $TOK --encode"
finish
