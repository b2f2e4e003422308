# Sourced by stage1.sh/stage2.sh on the GPU machine: unpack .carry/m2 (made by
# pack.sh) to /tmp/mini once per machine; sets D to that directory.
D=/tmp/mini
if [ ! -f $D/train_dict.u16 ]; then
	mkdir -p $D && cp -r .carry/m2/tokenizer.json .carry/m2/pg_*.txt .carry/m2/words $D/
	for f in .carry/m2/*.u16.xz; do xz -dc "$f" > $D/$(basename "$f" .xz); done
fi
