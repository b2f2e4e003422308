#!/usr/bin/env bash
# leank-prep: the tokenizer CLI, every task at 4K/16K/64K tokens on the Paul
# Graham essays and the books corpus with the Llama-3 tokenizer (lengths,
# needles at their depths, answers), determinism, --dump.
. "$(dirname "$0")/../lib.sh"
need_shared
P=$B/leank-prep
TOK=$S/data/tokenizers/llama3/tokenizer.json
PG=$S/data/paulgraham/PaulGrahamEssays.json
BOOKS=$S/data/books/books.jsonl.zst
W=$S/data/words

$P --help | grep -q -- --lengths && ok "--help" || fail "--help"
$P --version | grep -q "leank-prep (leank)" && ok "--version" || fail "--version"
[ "$($P --list-tasks | wc -l)" -ge 17 ] && ok "--list-tasks" || fail "--list-tasks"

# tokenizer CLI: encode -> decode round trip, --add-special adds BOS 128000
txt='Hello, world! The special magic number is: 1234567.'
ids=$(printf '%s' "$txt" | $P -t $TOK --encode) || fail "--encode"
[ "$(printf '%s' "$ids" | head -n1)" = 9906 ] && ok "--encode ids" || fail "--encode: first id $(printf '%s' "$ids" | head -n1)"
[ "$(printf '%s' "$txt" | $P -t $TOK --encode --add-special | head -n1)" = 128000 ] && ok "--add-special" || fail "--add-special"
[ "$(printf '%s\n' "$ids" | $P -t $TOK --decode)" = "$txt" ] && ok "--decode round trip" || fail "--decode round trip"
[ "$(printf '128000 9906\n' | $P -t $TOK --decode --skip-special)" = "Hello" ] && ok "--skip-special" || fail "--skip-special"

# every task, 20 samples at each length, both corpora (samples alternate them)
start=$(date +%s)
$P -t $TOK --corpus $PG --corpus $BOOKS -w $W --template llama3 --task all -l 4096,16384,65536 -n 20 -s 7 \
    -o $T/all.smp || fail "generate all tasks"
$P -t $TOK --dump $T/all.smp -o $T/all.jsonl || fail "--dump"
echo "generated and dumped in $(( $(date +%s) - start )) s"
if command -v python3 >/dev/null; then
python3 - "$T/all.jsonl" <<'PY' && ok "lengths, needles at depths, answers" || fail "sample checks"
import json, sys
bad = 0
def err(d, msg):
    global bad
    bad += 1
    if bad < 20: print(f"sample {d['index']} {d['task']} {d['target_len']}: {msg}")
lines = open(sys.argv[1], encoding="utf-8").read().splitlines()
hdr = json.loads(lines[0])
assert hdr["version"] == 1 and hdr["params"]["seed"] == 7
seen = {}
worst = 0.0
for line in lines[1:]:
    d = json.loads(line)
    seen[(d["task"], d["target_len"])] = seen.get((d["task"], d["target_len"]), 0) + 1
    n, t = d["n_ctx"] + d["n_ans"], d["target_len"]
    if n > t or n < 0.99 * t: err(d, f"{n} tokens for target {t}")
    p = d["prompt"]
    # haystack: after the task's first line, up to the question
    h0 = p.index("\n", p.index("<|end_header_id|>\n\n") + 19) + 1
    if d["task"] == "vt": h0 += 1
    h1 = max(p.rfind("\nWhat"), p.rfind("\nQuestion:"))
    pos = h0
    for needle, depth in zip(d["needles"], d["depths"]):
        i = p.find(needle, pos)
        if i < 0: err(d, f"needle not found: {needle[:60]}"); break
        frac = (i - h0) / (h1 - h0)
        worst = max(worst, abs(frac - depth))
        if abs(frac - depth) > 0.05: err(d, f"needle at {frac:.3f}, recorded depth {depth:.3f}")
        pos = i + len(needle)
    if len(d["needles"]) != len(d["depths"]): err(d, "needles and depths differ in number")
    refs = d["refs"][:1] if d["task"] == "train-essay" else d["refs"]
    for r in refs:
        if r not in d["answer"]: err(d, f"answer {d['answer'][:80]!r} lacks {r!r}")
    if not d["refs"]: err(d, "no reference answers")
    if d["task"] not in ("cwe", "fwe") and not d["needles"]: err(d, "no needles")
tasks = {k[0] for k in seen}
if len(tasks) != 14 or any(v != 20 for v in seen.values()) or len(seen) != 42:
    print("wrong sample counts:", seen); bad += 1
print(f"{len(lines) - 1} samples, worst depth error {worst:.4f}, {bad} problems")
sys.exit(1 if bad else 0)
PY
else
    skip "python3 absent: sample content checks not run"
fi

# determinism: same seed -> same bytes (threads too), another seed -> different
args="-t $TOK --corpus $PG --corpus $BOOKS -w $W --task train,passkey,niah_multikey_2,vt,cwe,fwe -l 4096,16384 -n 3"
$P $args -s 1 -o $T/a.smp && $P $args -s 1 -j 1 -o $T/b.smp && $P $args -s 2 -o $T/c.smp || fail "determinism runs"
cmp -s $T/a.smp $T/b.smp && ok "same seed, 1 or 2 threads: identical" || fail "same seed differs"
cmp -s $T/a.smp $T/c.smp && fail "different seeds give the same file" || ok "different seeds differ"
$P $args -s 1 -o - > $T/d.smp && cmp -s $T/a.smp $T/d.smp && ok "-o - writes the same bytes" || fail "-o -"
$P -t $TOK --dump < $T/a.smp | head -n1 | grep -q '"tokenizer_fingerprint"' && ok "--dump from stdin" || fail "--dump stdin"

# --min/--max/--count and a directory of .txt files with the qwen template
mkdir -p $T/txt
python3 -c "import json;t=json.load(open('$PG'))['text'];open('$T/txt/a.txt','w').write(t[:400000]);open('$T/txt/b.txt','w').write(t[400000:800000])" 2>/dev/null ||
    head -c 400000 $PG | tr -d '{}"\\' > $T/txt/a.txt
QTOK=$S/data/tokenizers/qwen3
$P -t $QTOK --corpus $T/txt -w $W/nounlist.txt --template qwen --task niah_single_2,niah_multivalue \
    --min 2000 --max 3000 --count 3 -n 2 -o $T/q.smp && $P -t $QTOK --dump $T/q.smp |
    grep -c '"target_len":2500' | grep -q '^4$' && ok "--min/--max/--count, txt dir, qwen" || fail "--min/--max/--count"
$P -t $QTOK --dump $T/q.smp | grep -q 'im_start|>system' && ok "qwen template in prompt" || fail "qwen template"
# a template whose special tokens the tokenizer lacks is refused, naming the token
expect_fail 3 "qwen template with the Llama-3 tokenizer" -- $P -t $TOK --template qwen --task vt -l 2048 -n 1 -o $T/x.smp
grep -q '<|im_start|>' "$T/err" || fail "template refusal does not name the token: $(cat "$T/err")"
[ -e $T/x.smp ] && fail "refused template left $T/x.smp"
# no template: the tokenizer's BOS starts the context, once (as leank-decode and HF add it)
$P -t $TOK --corpus $PG -w $W --template none --task niah_single_2,vt -l 2048 -n 2 -o $T/n.smp &&
    [ "$($P -t $TOK --dump $T/n.smp | tail -n +2 | grep -c '"prompt":"<|begin_of_text|>[^<]')" = 4 ] &&
    ok "--template none: BOS first" || fail "--template none BOS: $($P -t $TOK --dump $T/n.smp | sed -n 2p | cut -c1-200)"
finish
