#!/usr/bin/env bash
# dev/models/to_device.sh - bring a real model to the GPU machine, which cannot
# reach the registry and takes at most 64 MiB (working tree included) per call
# (dev/real/README.md, "On the GPU machine"). The GGUF travels (1 GB for the
# 1.5B, against 3 GB of bf16 safetensors) in chunks, one per call, while the
# machine stays warm; the last call joins and converts it there.
#
# Here (a developer machine, in the checkout whose tree the device calls send):
#   dev/models/to_device.sh split NAME [CHUNK_MIB]
#       GGUF (dev/models/get.sh NAME --gguf-only) -> .carry/models/NAME.gguf.00 ..
#       (CHUNK_MIB, default 32: 64 MiB less the tree's size, with a margin; 60 from
#       an empty checkout, as dev/real/README.md did it), .carry/models/NAME.sha256
#       and the gguf wheel in .carry/whl; prints the calls. LEANK_XFER_CARRY=DIR
#       puts the chunks in DIR instead of .carry/models (recv reads them there too).
# There (one device call each, back to back: the machine goes back 30 s after a call):
#   dev/models/to_device.sh recv NAME K      moves chunk K to /tmp/leank-xfer after
#                                            checking its sha256; says which have not come
#   dev/models/to_device.sh join NAME DIR [--dtype f32|bf16]
#                                            checks and joins the chunks, installs the
#                                            gguf wheel into /tmp/site, converts -> DIR
# Used on the H200 on 2026-11-30 for both models (26 calls of 60 MiB, 5-6 s
# each): dev/real/README.md. Any failure: one line on stderr, exit 1.
set -u -o pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
die() { echo "to_device.sh: $*" >&2; exit 1; }
X=/tmp/leank-xfer
C=${LEANK_XFER_CARRY:-$top/.carry/models} # where the device call left the carried chunks

case ${1:-} in
split)
    name=${2:?usage: to_device.sh split NAME [CHUNK_MIB]}; mib=${3:-32}
    gguf=$("$here/get.sh" "$name" --gguf-only) || exit 1
    mkdir -p "$C" "$top/.carry/whl" || die "cannot create $C"
    rm -f "$C/$name.gguf."* "$C/$name.sha256"
    split -b "${mib}M" -d -a 2 "$gguf" "$C/$name.gguf." || die "split $gguf failed"
    (cd "$C" && sha256sum "$name.gguf."* >"$name.sha256" && sha256sum "$gguf" |
        sed "s|  .*|  $name.gguf|" >>"$name.sha256") || die "sha256sum failed"
    py=${LEANK_PYTHON:-${LEANK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/leank}/venv/bin/python}
    ver=$("$py" -c 'import gguf, importlib.metadata as m; print(m.version("gguf"))' 2>/dev/null) ||
        die "no gguf package in $py (run dev/models/get.sh first)"
    ls "$top"/.carry/whl/gguf-*.whl >/dev/null 2>&1 ||
        "$py" -m pip download -q --no-deps -d "$top/.carry/whl" "gguf==$ver" || die "pip download gguf failed"
    n=$(ls "$C/$name.gguf."* | wc -l)
    tree=$(cd "$top" && git ls-files -z | du -cb --files0-from=- 2>/dev/null | tail -n1 | cut -f1)
    echo "to_device.sh: $n chunks of $mib MiB in $C; the tracked tree is $((tree / 1048576)) MiB (each call: tree + one chunk <= 64 MiB)"
    echo "device calls, back to back (carry = the paths named):"
    for k in $(seq 0 $((n - 1))); do
        kk=$(printf %02d "$k")
        echo "  carry [.carry/models/$name.gguf.$kk, .carry/models/$name.sha256]:  dev/models/to_device.sh recv $name $kk"
    done
    echo "  carry [.carry/models/$name.sha256, .carry/whl]:  dev/models/to_device.sh join $name /tmp/models/$name --dtype bf16 && <your command>"
    ;;
recv)
    name=${2:?usage: to_device.sh recv NAME K}; k=${3:?usage: to_device.sh recv NAME K}
    kk=$(printf %02d "$((10#$k))")
    mkdir -p "$X" || die "cannot create $X"
    [ -f "$C/$name.gguf.$kk" ] || die "chunk $kk not carried (.carry/models/$name.gguf.$kk)"
    [ -f "$C/$name.sha256" ] || die ".carry/models/$name.sha256 not carried"
    want=$(grep " $name.gguf.$kk\$" "$C/$name.sha256" | cut -d' ' -f1)
    got=$(sha256sum "$C/$name.gguf.$kk" | cut -d' ' -f1)
    [ -n "$want" ] && [ "$got" = "$want" ] || die "chunk $kk: sha256 $got, expected ${want:-(not in the manifest)}"
    mv -f "$C/$name.gguf.$kk" "$X/" && cp -f "$C/$name.sha256" "$X/" || die "mv chunk $kk failed"
    # any order; a chunk missing here that an earlier call brought means a fresh machine
    n=$(grep -c "$name.gguf\.[0-9]" "$C/$name.sha256") have=0 miss=""
    for j in $(seq 0 $((n - 1))); do
        jj=$(printf %02d "$j")
        if [ -f "$X/$name.gguf.$jj" ]; then have=$((have + 1)); else miss="$miss $jj"; fi
    done
    echo "to_device.sh: chunk $kk of $name here ($X): $have of $n${miss:+; not yet:$miss}"
    ;;
join)
    name=${2:?usage: to_device.sh join NAME DIR [--dtype f32|bf16]}; dir=${3:?usage: to_device.sh join NAME DIR}
    shift 3
    m=$C/$name.sha256
    [ -f "$m" ] || m=$X/$name.sha256 # recv's copy
    [ -f "$m" ] || die "$C/$name.sha256 not carried"
    if [ ! -f "$X/$name.gguf" ]; then
        n=$(grep -c "$name.gguf\.[0-9]" "$m")
        (cd "$X" && grep "$name.gguf\.[0-9]" "$m" | sha256sum -c --quiet >/dev/null 2>&1) ||
            die "some of the $n chunks are missing or damaged in $X: recv them again"
        cat "$X/$name.gguf."[0-9][0-9] >"$X/$name.gguf.tmp" || die "joining the chunks failed"
        want=$(grep " $name.gguf\$" "$m" | cut -d' ' -f1)
        [ "$(sha256sum "$X/$name.gguf.tmp" | cut -d' ' -f1)" = "$want" ] || die "the joined GGUF's sha256 differs"
        mv "$X/$name.gguf.tmp" "$X/$name.gguf" && rm -f "$X/$name.gguf."[0-9][0-9]
    fi
    python3 -c 'import gguf' 2>/dev/null || {
        ls "$top"/.carry/whl/gguf-*.whl >/dev/null 2>&1 || die "no gguf wheel carried (.carry/whl)"
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "${LEANK_SITE:-/tmp/site}" \
            "$top"/.carry/whl/gguf-*.whl >/dev/null 2>&1 || die "installing the gguf wheel failed"
        export PYTHONPATH=${LEANK_SITE:-/tmp/site}${PYTHONPATH:+:$PYTHONPATH}
    }
    python3 "$here/gguf2hf.py" convert "$X/$name.gguf" "$dir" "$@" || exit 1
    ;;
*)
    die "usage: to_device.sh split NAME [CHUNK_MIB] | recv NAME K | join NAME DIR [--dtype f32|bf16]" ;;
esac
