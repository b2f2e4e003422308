# leank-binarize: alpha -> mask by the LeanK rule, TSV <-> safetensors,
# reports, plots, and clean failures (one line, exit code, no output file).
. "$(dirname "$0")/../lib.sh"
BZ=$B/leank-binarize

# alpha.safetensors as leank-train writes it: F32 "alpha" [L, H, D],
# format=leank-alpha. Modes: random (seeded), zeros (all 0 but three values).
write_alpha() { # FILE L H D MODE
    python3 - "$@" <<'EOF'
import json, random, struct, sys
path, L, H, D, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
n = L * H * D
if mode == "random":
    r = random.Random(7)
    v = [r.random() * r.random() for _ in range(n)]
else:
    v = [0.0] * n
    for i, x in ((5, 0.9), (70, 0.8), (200, 0.7)):
        v[i % n] = x
hdr = {"alpha": {"dtype": "F32", "shape": [L, H, D], "data_offsets": [0, 4 * n]},
       "__metadata__": {"format": "leank-alpha", "stage": "2"}}
h = json.dumps(hdr).encode()
h += b" " * (-len(h) % 8)
with open(path, "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h + struct.pack("<%df" % n, *v))
EOF
}
# a Llama config.json with the given layers, kv heads, head_dim
write_config() { # DIR L KV D
    mkdir -p "$1"
    cat >"$1/config.json" <<EOF
{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": $(($4 * $3 * 4)),
 "intermediate_size": 512, "num_hidden_layers": $2, "num_attention_heads": $(($3 * 4)),
 "num_key_value_heads": $3, "head_dim": $4, "vocab_size": 512, "rms_norm_eps": 1e-5,
 "max_position_embeddings": 4096, "rope_theta": 10000.0, "tie_word_embeddings": false}
EOF
}
# value of a top-level JSON key
jget() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$@"; }

"$BZ" --help | grep -q -- "--ratio" && ok "--help" || fail "--help"
"$BZ" --version | grep -q "leank-binarize (leank)" && ok "--version" || fail "--version"

write_alpha "$T/a.st" 4 2 64 random
write_alpha "$T/z.st" 4 2 64 zeros
write_config "$T/m" 4 2 64
write_config "$T/m8" 8 2 64

# align 1: exactly round((1 - ratio) * 512) channels kept
"$BZ" "$T/a.st" --ratio 0.7 -o "$T/a1.st" -q || fail "binarize align 1"
"$BZ" "$T/a1.st" --report --json >"$T/a1.json" || fail "report json"
[ "$(jget "$T/a1.json" kept)" = 154 ] && ok "align 1 keeps exactly 154 of 512" || fail "align 1 kept $(jget "$T/a1.json" kept)"
# align 16: widths multiples of 16, kept fraction within 16/(2*64) of 0.25
"$BZ" "$T/a.st" --ratio 0.75 --align 16 -m "$T/m" -o "$T/a16.st" --report --json >"$T/a16.json" 2>"$T/a16.err" || fail "binarize align 16"
python3 - "$T/a16.json" <<'EOF' && ok "align 16 widths and ratio" || fail "align 16 widths and ratio"
import json, sys
r = json.load(open(sys.argv[1]))
ws = [w for l in r["layers"] for w in l["widths"]]
assert all(w % 16 == 0 for w in ws), ws
assert abs(r["k_kept_pct"] - 25) <= 100 * 16 / 128 + 1e-9, r["k_kept_pct"]
assert r["ratio"] == 0.75 and r["align"] == 16
EOF
grep -q "target 25.00 %, align 16" "$T/a16.err" && ok "summary line" || fail "summary line: $(cat "$T/a16.err")"
# ties at 0 do not keep everything
"$BZ" "$T/z.st" --ratio 0.5 --tsv -q >"$T/z.tsv" || fail "zeros"
"$BZ" --from-tsv "$T/z.tsv" --report --json >"$T/z.json" || fail "zeros report"
[ "$(jget "$T/z.json" kept)" = 256 ] && ok "ties at zero: 256 of 512" || fail "ties at zero kept $(jget "$T/z.json" kept)"
# deterministic
"$BZ" "$T/a.st" --ratio 0.75 --align 16 -o "$T/a16b.st" -q && cmp -s "$T/a16.st" "$T/a16b.st" \
    && ok "deterministic" || fail "not deterministic"
# safetensors -> TSV -> safetensors -> TSV
"$BZ" "$T/a16.st" --tsv >"$T/a16.tsv" && "$BZ" --from-tsv "$T/a16.tsv" -o "$T/a16c.st" -q &&
    "$BZ" "$T/a16c.st" --tsv -o "$T/a16c.tsv" -q && cmp -s "$T/a16.tsv" "$T/a16c.tsv" &&
    ok "mask round trip" || fail "mask round trip"
# stdin
"$BZ" - --tsv <"$T/a16.tsv" | cmp -s - "$T/a16.tsv" && ok "TSV from stdin" || fail "TSV from stdin"
"$BZ" - --tsv <"$T/a16.st" | cmp -s - "$T/a16.tsv" && ok "safetensors from stdin" || fail "safetensors from stdin"
# plots: alpha and mask, well-formed SVG
"$BZ" "$T/a.st" --ratio 0.75 --align 16 --plot "$T/a.svg" -q && "$BZ" "$T/a16.st" --plot "$T/m.svg" &&
    python3 -c 'import sys, xml.etree.ElementTree as E; [E.parse(f) for f in sys.argv[1:]]' "$T/a.svg" "$T/m.svg" &&
    grep -q "kv head 1" "$T/m.svg" && ok "plots" || fail "plots"

# errors: one line, the exit code, no output file
expect_fail 2 "ratio 1" -- "$BZ" "$T/a.st" --ratio 1 -o "$T/bad.st"
expect_fail 2 "ratio -0.1" -- "$BZ" "$T/a.st" --ratio -0.1 -o "$T/bad.st"
expect_fail 2 "align 48 with head_dim 64" -- "$BZ" "$T/a.st" --ratio 0.5 --align 48 -o "$T/bad.st"
grep -q "align 48 does not divide head_dim 64" "$T/err" || fail "align message: $(cat "$T/err")"
expect_fail 2 "alpha without --ratio" -- "$BZ" "$T/a.st" -o "$T/bad.st"
expect_fail 2 "--ratio with a mask" -- "$BZ" "$T/a16.st" --ratio 0.5 -o "$T/bad.st"
expect_fail 2 "nothing to do" -- "$BZ" "$T/a.st" --ratio 0.5
expect_fail 3 "alpha shape vs model" -- "$BZ" "$T/a.st" --ratio 0.5 -m "$T/m8" -o "$T/bad.st"
grep -q "shape \[4, 2, 64\] but .*m8 has \[8 layers" "$T/err" || fail "shape message: $(cat "$T/err")"
expect_fail 3 "mask shape vs model" -- "$BZ" "$T/a16.st" --config "$T/m8/config.json" -o "$T/bad.st"
expect_fail 4 "missing file" -- "$BZ" "$T/nope.st" --ratio 0.5 -o "$T/bad.st"
printf '# c\n0\t0\t1\t3\n0\t1\t2\t3,x\n' >"$T/bad.tsv"
expect_fail 3 "malformed TSV" -- "$BZ" --from-tsv "$T/bad.tsv" -o "$T/bad.st"
grep -q "bad.tsv:3: bad channel 'x'" "$T/err" || fail "TSV message: $(cat "$T/err")"
[ "$(wc -l <"$T/err")" -eq 1 ] || fail "TSV error is not one line"
printf '0\t0\t2\t3\n' >"$T/bad2.tsv"
expect_fail 3 "TSV kept count" -- "$BZ" --from-tsv "$T/bad2.tsv" --tsv -o "$T/bad.st"
# masks that lie about themselves
python3 - "$T" <<'PY' || fail "making bad masks"
import json, struct, sys
def mask(path, layers, meta):
    h, off, body = {"__metadata__": meta}, 0, b""
    for i in layers:
        h["layers.%d" % i] = {"dtype": "U8", "shape": [2, 8], "data_offsets": [off, off + 16]}
        body += bytes([1, 0] * 8); off += 16
    j = json.dumps(h).encode(); j += b" " * (-len(j) % 8)
    open(path, "wb").write(struct.pack("<Q", len(j)) + j + body)
d = sys.argv[1]
mask(d + "/gap.st", [0, 1, 3], {"format": "leank-mask", "version": "1"})
mask(d + "/v9.st", [0, 1], {"format": "leank-mask", "version": "9"})
mask(d + "/nl.st", [0, 1], {"format": "leank-mask", "version": "1", "n_layers": "3"})
mask(d + "/ok.st", [0, 1], {"format": "leank-mask", "version": "1", "n_layers": "2"})
PY
expect_fail 3 "mask with a missing layer tensor" -- "$BZ" "$T/gap.st" --report
expect_fail 3 "mask version 9" -- "$BZ" "$T/v9.st" --report
expect_fail 3 "mask n_layers metadata vs tensors" -- "$BZ" "$T/nl.st" --report
"$BZ" "$T/ok.st" --report >/dev/null 2>&1 && ok "a well-formed hand-made mask" || fail "hand-made mask"
expect_fail 3 "head_dim of a mask on stdin" -- sh -c '"$0" - --head-dim 4 --report <"$1"' "$BZ" "$T/ok.st"
printf '1023\t1023\t0\t\n' >"$T/far.tsv"
expect_fail 3 "TSV with one far-away head" -- "$BZ" --from-tsv "$T/far.tsv" --report
grep -q "no line for layer 0 kv_head 0" "$T/err" || fail "far-away head message: $(cat "$T/err")"
printf '65535\t65535\t0\t\n' >"$T/far.tsv"
expect_fail 3 "TSV with a layer past the bound" -- "$BZ" --from-tsv "$T/far.tsv" --report
grep -q "bad layer '65535' (expected an integer in \[0, 1024))" "$T/err" || fail "bound message: $(cat "$T/err")"
printf '# leank-mask n_layers=1 n_kv_heads=1 head_dim=99999999999999\n0\t0\t1\t0\n' >"$T/hd.tsv"
expect_fail 3 "TSV header head_dim out of range" -- "$BZ" --from-tsv "$T/hd.tsv" --report
# a failed plot or report: no mask written
expect_fail 4 "plot into a missing directory" -- "$BZ" "$T/a.st" --ratio 0.5 --plot "$T/no/dir.svg" -o "$T/bad.st"
if [ -w /dev/full ]; then
    "$BZ" "$T/a.st" --ratio 0.5 --report -o "$T/bad.st" >/dev/full 2>"$T/err"
    rc=$?
    [ $rc = 4 ] && ok "report to a full disk: exit 4" || fail "report to a full disk: exit $rc"
fi
printf 'garbage' >"$T/bad3.st"
expect_fail 3 "not a mask" -- "$BZ" "$T/bad3.st" --report
[ -e "$T/bad.st" ] && fail "an output file was left after an error" || ok "no output file after errors"
ls "$T" | grep -q '\.tmp\.' && fail "temporary file left" || true

# the official masks
if [ -d "$S/data/masks" ]; then
    L=$S/data/masks/llama3.1-8b-instruct.tsv Q=$S/data/masks/qwen2.5-7b-instruct.tsv
    "$BZ" --from-tsv "$L" --report >"$T/l.txt" || fail "llama report"
    grep -q "^K kept: 31.25 %" "$T/l.txt" && grep -q "^V dropped: 18.4 % (47 of 256" "$T/l.txt" &&
        ok "llama: 31.25 % kept, 18.4 % V dropped" || fail "llama report: $(head -3 "$T/l.txt")"
    "$BZ" --from-tsv "$L" --report --json >"$T/l.json" || fail "llama json"
    python3 - "$T/l.json" <<'EOF' && ok "llama widths {0:47, 32:120, 64:67, 96:22}" || fail "llama widths"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["width_hist"] == {"0": 47, "32": 120, "64": 67, "96": 22}, r["width_hist"]
assert r["heads_width0"] == 47 and r["k_kept_pct"] == 31.25 and abs(r["v_dropped_pct"] - 18.36) < 0.01
assert r["n_layers"] == 32 and r["n_kv_heads"] == 8 and r["head_dim"] == 128 and len(r["bands"]) == 8
EOF
    "$BZ" --from-tsv "$Q" --report --json >"$T/q.json" || fail "qwen json"
    python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); assert round(r["k_kept_pct"],1)==29.0 and (r["n_layers"],r["n_kv_heads"],r["head_dim"])==(28,4,128)' "$T/q.json" &&
        ok "qwen: 29.0 % kept, 28 x 4 x 128" || fail "qwen report"
    for f in "$L" "$Q"; do
        n=$(basename "$f")
        "$BZ" --from-tsv "$f" --tsv | grep -v '^#' >"$T/$n.rt" && grep -v '^#' "$f" | cmp -s - "$T/$n.rt" &&
            ok "$n: TSV round trip" || fail "$n: TSV round trip"
        "$BZ" --from-tsv "$f" -o "$T/$n.st" -q && "$BZ" "$T/$n.st" --tsv | grep -v '^#' | cmp -s - "$T/$n.rt" &&
            ok "$n: TSV -> safetensors -> TSV" || fail "$n: TSV -> safetensors -> TSV"
    done
    "$BZ" --from-tsv "$L" --plot "$T/l.svg" && python3 -c 'import sys, xml.etree.ElementTree as E; E.parse(sys.argv[1])' "$T/l.svg" &&
        ok "llama plot" || fail "llama plot"
    write_config "$T/m32" 32 8 128
    "$BZ" --from-tsv "$L" -m "$T/m32" --report | grep -q "period (tokens)" && ok "bands with the model's RoPE" || fail "bands with config"
    expect_fail 3 "official mask vs wrong model" -- "$BZ" --from-tsv "$Q" -m "$T/m32" -o "$T/bad.st"
else
    skip "$S/data/masks absent: official-mask checks not run"
fi
finish
