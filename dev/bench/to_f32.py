#!/usr/bin/env python3
# A model directory's checkpoint widened to F32, for the engine's F32 path (docs/perf.md: leank-mini in
# F32, whose weights the engine then uses in place from the mapping). Every tensor of SRC's shards
# (F32/BF16/F16) into one DST/model.safetensors (sorted by name, header padded to 8 bytes); config.json
# (torch_dtype float32) and tokenizer.json copied. Needs numpy.
#   to_f32.py SRC_DIR DST_DIR
import glob, json, os, shutil, struct, sys
import numpy as np

src, dst = sys.argv[1], sys.argv[2]
os.makedirs(dst, exist_ok=True)
ts = {}
for p in sorted(glob.glob(f"{src}/*.safetensors")):
    b = open(p, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    for k, v in json.loads(b[8:8 + n]).items():
        if k == "__metadata__": continue
        raw = b[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]]
        x = {"F32": lambda r: np.frombuffer(r, "<f4"),
             "BF16": lambda r: (np.frombuffer(r, "<u2").astype("<u4") << 16).view("<f4"),
             "F16": lambda r: np.frombuffer(r, "<f2").astype("<f4")}[v["dtype"]](raw)
        ts[k] = (v["shape"], x.astype("<f4").tobytes())
hdr, off = {}, 0
for k in sorted(ts):
    hdr[k] = {"dtype": "F32", "shape": ts[k][0], "data_offsets": [off, off + len(ts[k][1])]}
    off += len(ts[k][1])
h = json.dumps(hdr, separators=(",", ":")).encode()
h += b" " * ((8 - len(h) % 8) % 8)
with open(f"{dst}/model.safetensors", "wb") as f:
    f.write(struct.pack("<Q", len(h)))
    f.write(h)
    for k in sorted(ts): f.write(ts[k][1])
cfg = json.load(open(f"{src}/config.json"))
cfg["torch_dtype"] = "float32"
json.dump(cfg, open(f"{dst}/config.json", "w"), indent=1)
shutil.copy(f"{src}/tokenizer.json", dst)
print(f"{dst}: {off} bytes of F32 weights")
