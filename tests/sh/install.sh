# install.sh - `make install` into a scratch PREFIX; the installed programs
# work from any directory: leank-train -c leank-mini.yaml finds the installed
# configs, leank-mini is installed and runs, leank-bench finds its HF script
# and says clearly where its reference data is missing (--data, LEANK_DATA).
. "$LEANK_TOP/tests/lib.sh"
P=$T/prefix
O=$(cd "$B/.." && pwd)
[ "$O" = "$LEANK_TOP" ] && oarg="" || oarg="O=$O"
make -s -C "$LEANK_TOP" $oarg install PREFIX="$P" >"$T/log" 2>&1 || { cat "$T/log"; fail "make install"; finish; }
for f in bin/leank-prep bin/leank-train bin/leank-binarize bin/leank-pack bin/leank-decode bin/leank-bench \
         share/man/man1/leank-train.1 share/man/man5/leank-formats.5 share/man/man7/leank.7 \
         share/leank/configs/leank-mini.yaml share/leank/models/leank-mini/config.json \
         share/leank/models/leank-mini/tokenizer.json share/leank/bench/hf_tokenize.py \
         share/leank/masks/qwen2.5-coder-1.5b-instruct.safetensors share/leank/masks/README.md; do
    [ -e "$P/$f" ] || fail "make install did not install $f"
done
ok "make install: programs, man pages, configs, masks, leank-mini, the HF script"
mkdir "$T/elsewhere" && cd "$T/elsewhere"
unset LEANK_SHARE LEANK_DATA
MI=$P/share/leank/models/leank-mini
"$P/bin/leank-prep" -t "$MI" -T train-uuid -l 300 -n 2 -o s.smp || fail "installed prep"
"$P/bin/leank-train" -m "$MI" -c leank-mini.yaml --steps 1 s.smp -o a.safetensors 2>err &&
    ok "installed leank-train -c leank-mini.yaml from another directory" || fail "-c leank-mini.yaml: $(cat err)"
"$P/bin/leank-train" -m "$MI" -c leank-mini --steps 1 s.smp -o b.safetensors 2>err && cmp -s a.safetensors b.safetensors &&
    ok "-c leank-mini (no extension) is the same config" || fail "-c leank-mini: $(cat err)"
"$P/bin/leank-binarize" a.safetensors --ratio 0.7 --report | grep -q '^windows: sink 64, recent 256' &&
    ok "the installed config's windows are recorded" || fail "windows of the installed config"
expect_fail 4 "-c of a config that exists nowhere" -- "$P/bin/leank-train" -m "$MI" -c nosuch.yaml s.smp -o c.safetensors
grep -q "share/leank/configs" "$T/err" || fail "the message does not say where configs were looked for"
"$P/bin/leank-decode" -m "$MI" -p "Once upon a time" --max-tokens 4 -q >out && [ -s out ] && ok "installed leank-mini decodes" ||
    fail "installed leank-decode on leank-mini"
# a shipped mask by name, from another directory: found (the shape check against leank-mini names it)
expect_fail x "--plan qwen2.5-coder-1.5b-instruct on leank-mini" -- "$P/bin/leank-decode" -m "$MI" \
    --plan qwen2.5-coder-1.5b-instruct -p x --max-tokens 1
grep -q "share/leank/masks/qwen2.5-coder-1.5b-instruct.safetensors" "$T/err" &&
    ok "--plan NAME finds the installed mask" || fail "--plan NAME: $(cat "$T/err")"
# leank-bench: reference data absent -> one clear line, non-zero, no table
for c in tokenize decode prep; do
    env -u LEANK_SHARED "$P/bin/leank-bench" $c >out 2>err; rc=$?
    [ $rc -eq 4 ] && [ ! -s out ] && grep -q -- '--data DIR or set LEANK_DATA' err && ok "bench $c without data: exit 4: $(head -c 120 err)..." ||
        fail "bench $c without data: exit $rc, stdout '$(head -c 100 out)', stderr '$(cat err)'"
done
env -u LEANK_SHARED "$P/bin/leank-bench" decode >/dev/null 2>err; grep -qF -- "-m $(cd "$P" && pwd -P)/share/leank/models/leank-mini" err &&
    ok "bench decode suggests the installed leank-mini" || fail "no installed model suggested: $(cat err)"
LEANK_DATA=$T/nowhere "$P/bin/leank-bench" decode >/dev/null 2>err; grep -q "$T/nowhere (LEANK_DATA)" err &&
    ok "LEANK_DATA named when wrong" || fail "LEANK_DATA: $(cat err)"
"$P/bin/leank-bench" decode -m "$MI" --tokens 8 --repeat 1 --prompt-len 0 >out 2>err && grep -q "decode stories260K greedy\|greedy" out &&
    ok "bench decode -m the installed model" || fail "bench decode -m: $(cat err)"
if [ -d "$S" ]; then
    "$P/bin/leank-bench" decode --data "$S" --tokens 8 --repeat 1 --prompt-len 0 >out 2>err && grep -q greedy out &&
        ok "bench decode --data $S" || fail "bench decode --data: $(cat err)"
    LEANK_DATA=$S "$P/bin/leank-bench" tokenize --repeat 1 >out 2>err && grep -q '^leank' out &&
        ok "bench tokenize with LEANK_DATA" || fail "bench tokenize LEANK_DATA: $(cat err)"
else
    echo "note: $S absent: --data runs not checked"
fi
finish
