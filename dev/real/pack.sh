#!/bin/sh
# dev/real/pack.sh [OUT] - what the first device call of a real-model session
# carries (dev/real/README.md, "On the GPU machine"), one xz tarball (default
# .carry/real-tools.tar.xz, a few MB) unpacked there into /tmp/x: bin/ (the
# programs and bin/tests/gpu_real, debug info stripped), the scripts of
# dev/models and dev/real, data/configs, tests/data/real, the essays split by
# dev/mini/build_corpus.py (.carry/m2/pg_train.txt, pg_heldout.txt), the word
# lists (../shared/data/words, or $SHARED/data/words) and the gguf wheel
# (.carry/whl, left there by dev/models/to_device.sh split).
set -e
out=${1:-.carry/real-tools.tar.xz}
S=${SHARED:-../shared}
for f in bin/leank-prep bin/leank-train bin/leank-binarize bin/leank-bench bin/leank-decode bin/tests/gpu_real; do
    [ -x "$f" ] || { echo "pack.sh: $f: not built (make all gpu-tests)" >&2; exit 1; }
done
for f in .carry/m2/pg_train.txt .carry/m2/pg_heldout.txt "$S/data/words"; do
    [ -e "$f" ] || { echo "pack.sh: $f: missing" >&2; exit 1; }
done
ls .carry/whl/gguf-*.whl >/dev/null 2>&1 || { echo "pack.sh: no gguf wheel in .carry/whl (dev/models/to_device.sh split)" >&2; exit 1; }
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
mkdir -p "$t/bin/tests" "$t/dev" "$t/data" "$t/tests/data" "$t/.carry/m2" "$t/.carry/shared/data" "$t/.carry/whl"
for f in leank-prep leank-train leank-binarize leank-bench leank-decode leank-pack; do strip --strip-debug -o "$t/bin/$f" "bin/$f"; done
strip --strip-debug -o "$t/bin/tests/gpu_real" bin/tests/gpu_real
cp -r dev/models dev/real "$t/dev/"
cp -r data/configs "$t/data/"
cp -r tests/data/real "$t/tests/data/"
cp .carry/m2/pg_train.txt .carry/m2/pg_heldout.txt "$t/.carry/m2/"
cp -r "$S/data/words" "$t/.carry/shared/data/"
cp .carry/whl/gguf-*.whl "$t/.carry/whl/"
tar cf - -C "$t" . | xz -6 -T2 >"$out.tmp"
mv "$out.tmp" "$out"
ls -l "$out"
