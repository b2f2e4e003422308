# leank-pack: the official masks on Llama-3.1-8B and Qwen2.5-7B configs ->
# decode plans and the KV-cache report; clean failures.
. "$(dirname "$0")/../lib.sh"
PK=$B/leank-pack
need_shared
L=$S/data/masks/llama3.1-8b-instruct.tsv Q=$S/data/masks/qwen2.5-7b-instruct.tsv
[ -f "$L" ] && [ -f "$Q" ] || { echo "skip: official masks absent from $S/data/masks"; exit 77; }

mkdir -p "$T/llama" "$T/qwen"
cat >"$T/llama/config.json" <<'EOF'
{"architectures": ["LlamaForCausalLM"], "attention_bias": false, "bos_token_id": 128000,
 "eos_token_id": [128001, 128008, 128009], "head_dim": 128, "hidden_act": "silu",
 "hidden_size": 4096, "intermediate_size": 14336, "max_position_embeddings": 131072,
 "mlp_bias": false, "model_type": "llama", "num_attention_heads": 32, "num_hidden_layers": 32,
 "num_key_value_heads": 8, "rms_norm_eps": 1e-05,
 "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
   "original_max_position_embeddings": 8192, "rope_type": "llama3"},
 "rope_theta": 500000.0, "tie_word_embeddings": false, "torch_dtype": "bfloat16", "vocab_size": 128256}
EOF
cat >"$T/qwen/config.json" <<'EOF'
{"architectures": ["Qwen2ForCausalLM"], "bos_token_id": 151643, "eos_token_id": 151645,
 "hidden_act": "silu", "hidden_size": 3584, "intermediate_size": 18944,
 "max_position_embeddings": 32768, "model_type": "qwen2", "num_attention_heads": 28,
 "num_hidden_layers": 28, "num_key_value_heads": 4, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
 "sliding_window": 131072, "use_sliding_window": false, "tie_word_embeddings": false,
 "torch_dtype": "bfloat16", "vocab_size": 152064}
EOF
"$PK" --help | grep -q -- "--context" && ok "--help" || fail "--help"
"$PK" --version | grep -q "leank-pack (leank)" && ok "--version" || fail "--version"

# Llama: per middle token K 20480 of 65536 bytes (31.25 %), V 209 of 256 heads
"$PK" --mask "$L" -m "$T/llama" --json >"$T/l.json" || fail "llama json"
python3 - "$T/l.json" <<'EOF' && ok "llama bytes per token and at 131072" || fail "llama figures"
import json, sys
r = json.load(open(sys.argv[1]))
t, c = r["per_token"], r["at_context"]
assert (t["k_dense"], t["k_middle"], t["v_dense"], t["v_middle"]) == (65536, 20480, 65536, 209 * 128 * 2), t
assert t["k_saved_pct"] == 68.75 and r["heads_width0"] == 47 and r["align"] == 32
assert r["context"] == 131072 and c["full_tokens"] == 1152 and c["middle_tokens"] == 129920
assert c["kv_dense"] == 131072 * 131072
assert c["kv_pruned"] == 1152 * 131072 + 129920 * (20480 + 53504)
EOF
"$PK" --mask "$L" -m "$T/llama" --context 32768 >"$T/l.txt" || fail "llama text"
grep -q "K .* 65536 .* 20480 .* 68.75 %" "$T/l.txt" && grep -q "KV cache at 32768 tokens" "$T/l.txt" &&
    ok "llama text report" || fail "llama text report: $(cat "$T/l.txt")"
# the plan file: magic, version, tables consistent with the mask
"$PK" --mask "$L" --config "$T/llama/config.json" -o "$T/l.plan" -q --sink 64 --recent 512 || fail "llama plan"
python3 - "$T/l.plan" <<'EOF' && ok "plan file" || fail "plan file"
import json, struct, sys
b = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n])
m = h["__metadata__"]
assert m["format"] == "leank-plan" and m["version"] == "1" and m["sink"] == "64" and m["recent"] == "512"
assert m["dtype"] == "bf16" and m["n_layers"] == "32" and m["align"] == "32"
def get(name, fmt):
    e = h[name]; o = 8 + n + e["data_offsets"][0]
    k = (e["data_offsets"][1] - e["data_offsets"][0]) // struct.calcsize(fmt)
    return list(struct.unpack("<%d%s" % (k, fmt), b[o:o + k * struct.calcsize(fmt)]))
w, koff, vcol = get("width", "i"), get("k_off", "q"), get("v_col", "i")
assert h["channels"]["shape"] == [32, 8, 128] and sum(w) == 10240 and koff[-1] == 10240
assert sum(1 for x in vcol if x == -1) == 47 and sum(1 for x in w if x == 0) == 47
EOF
# the plan carries its mask: leank-binarize reads it back
"$B/leank-binarize" "$T/l.plan" --tsv | grep -v '^#' | cmp -s - <(grep -v '^#' "$L") &&
    ok "plan -> mask -> TSV = official TSV" || fail "plan -> mask"
# a safetensors mask gives the same figures as its TSV
"$B/leank-binarize" --from-tsv "$L" -o "$T/l.st" -q || fail "binarize"
"$PK" --mask "$T/l.st" -m "$T/llama" --json | grep -v '"mask"' >"$T/l2.json"
grep -v '"mask"' "$T/l.json" | cmp -s - "$T/l2.json" && ok "safetensors mask = TSV mask" || fail "safetensors vs TSV"
# dtype f32 doubles every byte count
"$PK" --mask "$L" -m "$T/llama" --dtype f32 --json | python3 -c 'import json,sys; r=json.load(sys.stdin); assert r["per_token"]["k_middle"]==40960 and r["elem_bytes"]==4' &&
    ok "--dtype f32" || fail "--dtype f32"
# a context inside sink + recent saves nothing
"$PK" --mask "$L" -m "$T/llama" --context 1000 --json | python3 -c 'import json,sys; c=json.load(sys.stdin)["at_context"]; assert c["middle_tokens"]==0 and c["kv_pruned"]==c["kv_dense"]' &&
    ok "short context" || fail "short context"
# Qwen2.5-7B
"$PK" --mask "$Q" -m "$T/qwen" --json >"$T/q.json" || fail "qwen"
python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); assert round(r["k_kept_pct"],1)==29.0 and r["n_layers"]==28 and r["context"]==32768' "$T/q.json" &&
    ok "qwen 29.0 % kept" || fail "qwen"

# align is the largest power of two <= head_dim dividing every width: head_dim 96
mkdir -p "$T/h96"
sed 's/"head_dim": 128/"head_dim": 96/' "$T/llama/config.json" >"$T/h96/config.json"
for w in 32 96; do
    for l in $(seq 0 31); do for h in $(seq 0 7); do printf '%d\t%d\t%d\t%s\n' $l $h $w "$(seq -s, 0 $((w - 1)))"; done; done >"$T/w$w.tsv"
    "$PK" --mask "$T/w$w.tsv" -m "$T/h96" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["align"])' >"$T/align$w"
done
[ "$(cat "$T/align32")" = 32 ] && [ "$(cat "$T/align96")" = 32 ] && ok "head_dim 96: align 32 for widths 32 and 96" ||
    fail "head_dim 96 align: $(cat "$T/align32") $(cat "$T/align96")"

# errors: one line, exit code, no plan file
expect_fail 3 "mask vs wrong model" -- "$PK" --mask "$Q" -m "$T/llama" -o "$T/bad.plan"
grep -q "mask has shape \[28 layers, 4 kv heads, 128 head_dim\] but .*llama has \[32, 8, 128\]" "$T/err" || fail "shape message: $(cat "$T/err")"
expect_fail 4 "missing mask" -- "$PK" --mask "$T/nope.st" -m "$T/llama" -o "$T/bad.plan"
expect_fail 2 "no --mask" -- "$PK" -m "$T/llama" -o "$T/bad.plan"
expect_fail 2 "no model" -- "$PK" --mask "$L" -o "$T/bad.plan"
expect_fail 2 "bad dtype" -- "$PK" --mask "$L" -m "$T/llama" --dtype fp8 -o "$T/bad.plan"
expect_fail 2 "negative sink" -- "$PK" --mask "$L" -m "$T/llama" --sink -1 -o "$T/bad.plan"
printf '0\t0\t1\t200\n' >"$T/bad.tsv"
expect_fail 3 "channel beyond head_dim" -- "$PK" --mask "$T/bad.tsv" -m "$T/llama" -o "$T/bad.plan"
if [ -w /dev/full ]; then # a failed report: no plan written
    "$PK" --mask "$L" -m "$T/llama" -o "$T/bad.plan" >/dev/full 2>"$T/err"
    rc=$?
    [ $rc = 4 ] && ok "report to a full disk: exit 4" || fail "report to a full disk: exit $rc"
fi
[ -e "$T/bad.plan" ] && fail "a plan file was left after an error" || ok "no plan file after errors"
# --gpu-mem: the largest batch from the GPU engine's own page accounting (plan.h). On the lent H200,
# leank-bench e2e --random llama3.1-8b --max-batch at 32 768 + 128 fit 27 dense and 46 LeanK
# sequences (official mask, sink 128 + recent 1 024) in a 116.42 GB pool (docs/perf.md).
if [ -f "$S/data/masks/llama3.1-8b-instruct.tsv" ]; then
    cat >"$T/l8b.json" <<'J'
{"architectures":["LlamaForCausalLM"],"model_type":"llama","vocab_size":128256,"hidden_size":4096,"intermediate_size":14336,"num_hidden_layers":32,"num_attention_heads":32,"num_key_value_heads":8,"max_position_embeddings":131072,"rms_norm_eps":1e-5,"rope_theta":500000.0,"tie_word_embeddings":false}
J
    out=$("$B/leank-pack" -k "$S/data/masks/llama3.1-8b-instruct.tsv" --config "$T/l8b.json" --sink 128 --recent 1024 \
        --context 32895 --gpu-mem 116.42G --json 2>/dev/null)
    echo "$out" | grep -q '"max_batch_dense": 27' && echo "$out" | grep -q '"max_batch_pruned": 46' &&
        ok "--gpu-mem predicts the H200's largest batches (27 dense, 46 LeanK)" || fail "--gpu-mem: $out"
    expect_fail 2 "--gpu-mem nonsense" -- "$B/leank-pack" -k "$S/data/masks/llama3.1-8b-instruct.tsv" --config "$T/l8b.json" --gpu-mem 12Q
fi
finish
