#!/bin/sh
# dev/gpu/pack.sh [OUT] - the programs and the GPU test programs, debug info
# stripped, as one xz tarball (default .carry/bin.tar.xz, ~2.5 MB) for a
# device call: carry [".carry/bin.tar.xz", ".carry/shared"]; dev/gpu/call.sh
# unpacks it there.
set -e
out=${1:-.carry/bin.tar.xz}
[ -x bin/leank-bench ] && ls bin/tests/gpu_* >/dev/null 2>&1 || { echo "pack.sh: bin/ not built (make all gpu-tests)" >&2; exit 1; }
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
mkdir -p "$t/bin/tests" "$(dirname "$out")"
for f in bin/leank-* bin/tests/gpu_*; do strip --strip-debug -o "$t/$f" "$f"; done
tar cf - -C "$t" bin | xz -6 -T2 >"$out.tmp"
mv "$out.tmp" "$out"
echo "pack.sh: $out, $(wc -c <"$out") bytes"
