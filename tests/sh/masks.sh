# masks.sh - the LeanK masks shipped in data/masks (dev/real/README.md): each
# has its model's shape (by its name), the ratio it was binarized at (0.7 of
# the K channels pruned, align 32), the windows it was trained for and a line
# in data/masks/README.md; a bare name given as --plan (leank-decode) or --mask
# (leank-pack, with the 1.5B's config) finds it (data/masks
# beside bin/); the Qwen2.5-Coder-1.5B mask keeps the RoPE bands the way the
# official Qwen2.5-7B mask does (low-frequency bands kept most).
. "$LEANK_TOP/tests/lib.sh"
D=$LEANK_TOP/data/masks
n=0
for f in "$D"/*.safetensors; do
    b=$(basename "$f" .safetensors)
    case $b in
        qwen2.5-coder-1.5b-instruct*) want="28 2 128" ;;
        qwen2.5-coder-0.5b-instruct*) want="24 2 64" ;;
        *) fail "$f: no model known for this name"; continue ;;
    esac
    "$B/leank-binarize" "$f" --report --json >"$T/r.json" 2>"$T/err" || { fail "$f: $(cat "$T/err")"; continue; }
    got=$(jq -r '"\(.n_layers) \(.n_kv_heads) \(.head_dim)"' "$T/r.json")
    [ "$got" = "$want" ] || fail "$b: shape $got, expected $want"
    jq -e '.k_kept_pct >= 25 and .k_kept_pct <= 35 and .sink == 128 and .recent == 1024' "$T/r.json" >/dev/null ||
        fail "$b: $(jq -c '{k_kept_pct, sink, recent}' "$T/r.json"): expected 25-35 % kept, windows 128 + 1024"
    grep -q "\`$b.safetensors\`" "$D/README.md" || fail "$b.safetensors is not in data/masks/README.md"
    n=$((n + 1))
done
[ $n -ge 6 ] && ok "$n shipped masks: shapes, ratio, windows, README" || fail "only $n masks in $D"
# a bare name finds the shipped mask (the shape check against leank-mini names the file it read)
expect_fail x "--plan qwen2.5-coder-0.5b-instruct on leank-mini" -- "$B/leank-decode" -m "$LEANK_TOP/data/models/leank-mini" \
    --plan qwen2.5-coder-0.5b-instruct -p x --max-tokens 1
grep -q "data/masks/qwen2.5-coder-0.5b-instruct.safetensors" "$T/err" &&
    ok "--plan NAME reads data/masks/NAME.safetensors" || fail "--plan NAME: $(cat "$T/err")"
# leank-pack --mask NAME with the 1.5B's config (no weights needed): the plan of the shipped mask
cat >"$T/config.json" <<'JSON'
{"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "vocab_size": 151936, "hidden_size": 1536,
 "intermediate_size": 8960, "num_hidden_layers": 28, "num_attention_heads": 12, "num_key_value_heads": 2,
 "max_position_embeddings": 32768, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "tie_word_embeddings": false}
JSON
(cd "$T" && "$B/leank-pack" --mask qwen2.5-coder-1.5b-instruct --config config.json --context 32768 --json >pack.json 2>err) &&
    jq -e '.sink == 128 and .recent == 1024 and .kv_pct_of_dense > 55 and .kv_pct_of_dense < 65' "$T/pack.json" >/dev/null &&
    ok "leank-pack --mask qwen2.5-coder-1.5b-instruct: $(jq -c '{k_kept_pct, kv_pct_of_dense}' "$T/pack.json" 2>/dev/null)" ||
    fail "leank-pack --mask NAME: $(cat "$T/err") $(head -c 300 "$T/pack.json")"
# a safetensors mask on stdin goes through a temporary copy (lk_tmp_copy), which is gone afterwards
mkdir "$T/tmp"
TMPDIR=$T/tmp "$B/leank-pack" --mask - --config "$T/config.json" --json <"$D/qwen2.5-coder-1.5b-instruct.safetensors" >"$T/p2.json" &&
    cmp -s <(jq -S 'del(.mask)' "$T/pack.json") <(jq -S 'del(.mask)' "$T/p2.json") && [ -z "$(ls -A "$T/tmp")" ] &&
    ok "--mask - (safetensors on stdin): the same plan, no temporary left" || fail "--mask - : $(ls -A "$T/tmp")"
expect_fail 4 "--mask - with TMPDIR missing" -- env TMPDIR="$T/nowhere" "$B/leank-pack" --mask - --config "$T/config.json" \
    <"$D/qwen2.5-coder-1.5b-instruct.safetensors"
# leank-binarize NAME --report from another directory: the shipped mask's report
(cd "$T" && "$B/leank-binarize" qwen2.5-coder-0.5b-instruct --report --json >b.json 2>err) &&
    jq -e '.n_layers == 24 and .head_dim == 64 and (.file | endswith("data/masks/qwen2.5-coder-0.5b-instruct.safetensors"))' "$T/b.json" >/dev/null &&
    ok "leank-binarize qwen2.5-coder-0.5b-instruct --report reads the shipped mask" || fail "binarize NAME: $(cat "$T/err")"
# RoPE bands (8 bands of 8 pairs at head_dim 128): the learned 1.5B mask, like the official 7B one,
# keeps the highest-frequency bands least and the lowest most
"$B/leank-binarize" "$D/qwen2.5-coder-1.5b-instruct.safetensors" --report --json >"$T/r.json"
jq -e '.bands | length == 8 and (.[0].kept_pct < 15) and (.[7].kept_pct > 50) and (.[7].kept_pct > .[3].kept_pct)' "$T/r.json" >/dev/null &&
    ok "1.5B mask: bands $(jq -c '[.bands[].kept_pct | floor]' "$T/r.json") (% kept, high to low frequency)" ||
    fail "1.5B mask bands: $(jq -c '.bands' "$T/r.json")"
finish
