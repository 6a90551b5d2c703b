#!/usr/bin/env python3
"""Quality of quantized full-size VAE packs against the f32 pack of the same checkpoint, through the CLI.

    python3 benchmarks/scripts/vae_quality.py --packs /work/bench-data/packs --cases q8s [--size 1024] \
        [--max-ram 512M] [--bin-dir .build/release] [--name vae_quality]

A case ending in +dot (e.g. bf16+dot) runs the pack vae-<case without +dot> with --bf16-dot.

The issue-13 targets for the VAE are speeds "at >= 45 dB PSNR against the f32 pack". Measured here:
  decode  `qwen-run vae-decode` of N(0, 1) latents (seed 0) with vae-<case> and with vae-f32: PSNR of the
          decoded images (safetensors output, [-1, 1] mapped to [0, 1]) and their relative L2.
  encode  `qwen-run vae-encode` of a synthetic photo (smooth gradients, discs and stripes, seed 0) with both
          packs; the two latents are decoded with the f32 pack and the images compared (PSNR: what the
          encoder's error costs in pixels), beside the latents' relative L2.
Weights are random (qwen-bench synth), so these figures compare packs, not real image quality. Writes
benchmarks/results/<name>.json.
"""
import argparse
import json
import os
import tempfile

import numpy as np
from PIL import Image
from safetensors.numpy import load_file, save_file

from bench_common import ROOT, psnr_pm1, rel, run, write_results


def photo(n, rng):
    y, x = np.mgrid[0:n, 0:n] / n
    img = np.stack([0.5 + 0.4 * np.sin(6 * x + 2 * y), 0.5 + 0.4 * np.cos(5 * y - 3 * x), 0.3 + 0.6 * x * y], -1)
    for _ in range(12):
        cx, cy, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.03, 0.15)
        img[(x - cx) ** 2 + (y - cy) ** 2 < r * r] = rng.uniform(0, 1, 3)
    img[:, : n // 8] += 0.2 * (np.sin(np.arange(n) * 0.8)[:, None, None] > 0)
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--packs", required=True, help="folder with vae-f32 and vae-<case> packs")
    ap.add_argument("--cases", default="q8s")
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--z-dim", type=int, default=16, help="latent channels (64 for the 2.1 VAE)")
    ap.add_argument("--compression", type=int, default=8, help="spatial compression (16 for the 2.1 VAE)")
    ap.add_argument("--max-ram", default="512M", help="for the quantized packs' runs")
    ap.add_argument("--bin-dir", default=os.path.join(ROOT, ".build", "release"))
    ap.add_argument("--name", default="vae_quality")
    ap.add_argument("--decode-only", action="store_true", help="skip the encode measurements (three f32 runs fewer)")
    a = ap.parse_args()
    qrun = os.path.join(a.bin_dir, "qwen-run")
    work = tempfile.mkdtemp(prefix="vae-quality-")
    rng = np.random.default_rng(0)
    lat = os.path.join(work, "latents.safetensors")
    f = a.compression
    save_file({"latents": rng.standard_normal((1, a.z_dim, 1, a.size // f, a.size // f)).astype(np.float32)}, lat)
    png = os.path.join(work, "photo.png")
    Image.fromarray(photo(a.size, rng)).save(png)

    def decode(pack, latents, out, extra=()):
        s = json.loads(run([qrun, "vae-decode", "--pack", os.path.join(a.packs, pack), "--latents", latents, "--out", out,
                            "--force", "--json", *extra], "vae_quality"))
        return load_file(out)["sample"], s

    def encode(pack, out, extra=()):
        s = json.loads(run([qrun, "vae-encode", "--pack", os.path.join(a.packs, pack), "--image", png, "--out", out,
                            "--force", "--json", *extra], "vae_quality"))
        return out, s

    ref_dec, _ = decode("vae-f32", lat, os.path.join(work, "dec-f32.safetensors"))
    if not a.decode_only:
        ref_lat, _ = encode("vae-f32", os.path.join(work, "enc-f32.safetensors"))
        ref_img, _ = decode("vae-f32", ref_lat, os.path.join(work, "encdec-f32.safetensors"))
    records = []
    for case in a.cases.split(","):
        extra = ("--max-ram", a.max_ram) if a.max_ram else ()
        pack = case
        if case.endswith("+dot"):   # the pack run with --bf16-dot (bf16 activations, the CPU's bf16 dot product)
            pack, extra = case[:-4], extra + ("--bf16-dot",)
        dec, ds = decode(f"vae-{pack}", lat, os.path.join(work, f"dec-{case}.safetensors"), extra)
        rec = {"case": case, "size": a.size, "pack_dir": a.packs,
               "decode_psnr_db": psnr_pm1(dec, ref_dec), "decode_rel_l2": rel(dec, ref_dec),
               "decode_seconds": ds.get("seconds")}
        if not a.decode_only:
            enc, es = encode(f"vae-{pack}", os.path.join(work, f"enc-{case}.safetensors"), extra)
            img, _ = decode("vae-f32", enc, os.path.join(work, f"encdec-{case}.safetensors"))
            rec.update({"encode_psnr_db": psnr_pm1(img, ref_img),
                        "encode_latents_rel_l2": rel(load_file(enc)["latents"], load_file(ref_lat)["latents"]),
                        "encode_seconds": es.get("seconds")})
        print(json.dumps(rec))
        records.append(rec)
    write_results(a.name, records)

if __name__ == "__main__":
    main()
