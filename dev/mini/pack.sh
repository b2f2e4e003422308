#!/bin/sh
# Assemble what the GPU-machine calls carry (.carry/m2, under the 64 MiB carry
# limit): build_corpus.py's output with the token files xz-compressed, the
# word lists, and leank-prep/leank-decode/leank-bench from bin/ (the Makefile links libyaml
# and utf8proc statically: the GPU machine lacks them).
#   sh dev/mini/pack.sh [CORPUS_DIR [SHARED_DATA]]   (defaults .carry/mini2, ../shared/data)
set -e
C=${1:-.carry/mini2}
S=${2:-../shared/data}
M=.carry/m2
for p in leank-prep leank-decode leank-bench; do [ -x bin/$p ] || { echo "pack.sh: bin/$p: not built (run make)" >&2; exit 1; }; done
rm -rf $M && mkdir -p $M/bin
for f in "$C"/*.u16; do xz -T0 -6 -c "$f" > $M/$(basename "$f").xz; done
cp "$C"/tokenizer.json "$C"/pg_train.txt "$C"/pg_heldout.txt "$C"/stats.json $M/
cp -r "$S"/words $M/words
cp bin/leank-prep bin/leank-decode bin/leank-bench $M/bin/
du -sh $M
