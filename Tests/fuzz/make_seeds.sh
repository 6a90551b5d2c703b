#!/usr/bin/env bash
# Writes the seed corpus of every harness into Tests/Fixtures/fuzz/HARNESS/seed-* from the committed
# fixtures (and the harness's own fixed pack seeds). Regression inputs found by fuzzing are added
# beside them as regress-*; this script never touches those. Usage: Tests/fuzz/make_seeds.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
F=Tests/Fixtures
C=$F/fuzz
T=$F/tiny-random-qwen-image
for h in safetensors index packManifest componentManifest shard textConfig vaeConfig tokenizerJSON vocabMerges promptsFile image serveRequest gguf; do
  mkdir -p "$C/$h"
  rm -f "$C/$h"/seed-*
done
swift build --product qwen-fuzz >/dev/null
.build/debug/qwen-fuzz --write-pack-seeds "$C"
python3 - "$C" "$T" <<'PY'
import json, struct, sys, os
C, T = sys.argv[1], sys.argv[2]
def st(tensors, meta=None):
    hdr, data, off = {}, b"", 0
    for name, dt, shape, raw in tensors:
        hdr[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(raw)]}
        data += raw; off += len(raw)
    if meta: hdr["__metadata__"] = meta
    h = json.dumps(hdr).encode()
    return struct.pack("<Q", len(h)) + h + data
open(f"{C}/safetensors/seed-small.safetensors", "wb").write(st([
    ("a", "F32", [2, 3], struct.pack("<6f", *range(6))), ("b", "BF16", [4], b"\x80\x3f" * 4),
    ("c", "F16", [2], b"\x00\x3c" * 2), ("d", "I64", [1], struct.pack("<q", 7))], {"format": "pt"}))
open(f"{C}/safetensors/seed-latents.safetensors", "wb").write(st([("latents", "F32", [1, 16, 1, 2, 2], struct.pack("<64f", *([0.5] * 64)))]))
idx = json.load(open(f"{T}/text_encoder/model.safetensors.index.json"))
json.dump(idx, open(f"{C}/index/seed-index.json", "w"))
json.dump({"format": "qwen-image-pack", "version": 1, "created_by": "seed", "components": [], "source": {"path": "", "files": []},
           "options": {}}, open(f"{C}/packManifest/seed-empty.json", "w"))
for src, dst in [("text_encoder/config.json", "textConfig/seed-config.json"), ("vae/config.json", "vaeConfig/seed-config.json"),
                 ("tokenizer/tokenizer.json", "tokenizerJSON/seed-tokenizer.json")]:
    open(f"{C}/{dst}", "wb").write(open(f"{T}/{src}", "rb").read())
if os.path.exists(f"{T}/vae_rgba/config.json"):
    open(f"{C}/vaeConfig/seed-config-rgba.json", "wb").write(open(f"{T}/vae_rgba/config.json", "rb").read())
open(f"{C}/vocabMerges/seed-vocab-merges", "wb").write(open(f"{T}/tokenizer/vocab.json", "rb").read() + b"\0" + open(f"{T}/tokenizer/merges.txt", "rb").read())
open(f"{C}/promptsFile/seed-prompts.jsonl", "w").write('"A cat sitting on a red sofa"\n"\\ufeffa prompt with a BOM"\n\n"日本語のプロンプト"\n')
PY
cp "$F/gguf/blocks.gguf" "$C/gguf/seed-blocks.gguf"
cp "$F/gguf/seed-lm-mini.gguf" "$C/gguf/seed-lm-mini.gguf"
for f in gray1.png gray16.png gray16_trns.png pal8_trns.png rgba8.png rgb8_adam7.png la16.png; do cp "$F/images/$f" "$C/image/seed-$f"; done
for f in "$F"/images/*.jpg; do case "$(basename "$f")" in bad_*) ;; *) cp "$f" "$C/image/seed-$(basename "$f")";; esac; done
# serveRequest: byte 0 = selector (mod 3: 0 encode, 1 vae/encode, 2 vae/decode; bit 2: raw body instead of
# JSON; bit 3: Accept octet-stream), then the query line, then the body.
python3 - "$C" "$F" <<'PY'
import base64, json, struct, sys
C, F = sys.argv[1], sys.argv[2]
png = open(f"{F}/images/gray8.png", "rb").read()
lat = struct.pack("<16f", *[0.1 * i for i in range(16)])
hdr = json.dumps({"latents": {"dtype": "F32", "shape": [1, 16, 1, 1, 1], "data_offsets": [0, 64]}}).encode()
st = struct.pack("<Q", len(hdr)) + hdr + lat
seeds = {
    "encode": (0, "", json.dumps({"prompt": "a cat", "negative_prompt": " ", "dtype": "bf16", "max_sequence_length": 512}).encode()),
    "encode-edit": (8, "", json.dumps({"prompt": "make it blue", "images": [base64.b64encode(png).decode()], "mode": "edit"}).encode()),
    "vae-encode-raw": (4, "normalize=true&format=safetensors", png),
    "vae-encode-json": (1, "", json.dumps({"image": base64.b64encode(png).decode(), "normalize": True, "component": "vae"}).encode()),
    "vae-decode-json": (2, "", json.dumps({"latents": {"dtype": "F32", "shape": [1, 16, 1, 1, 1], "data": base64.b64encode(lat).decode()},
                                           "denormalize": True, "png16": True}).encode()),
    "vae-decode-raw": (14, "denormalize=1&format=safetensors", st),
}
for name, (sel, query, body) in seeds.items():
    open(f"{C}/serveRequest/seed-{name}", "wb").write(bytes([sel]) + query.encode() + b"\n" + body)
PY
du -sh "$C"
