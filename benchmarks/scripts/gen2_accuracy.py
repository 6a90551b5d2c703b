#!/usr/bin/env python3
"""Error of every pack scheme on Qwen-Image 2.1's tiny references (Tests/Fixtures/gen2), through the CLI.

    python3 benchmarks/scripts/gen2_accuracy.py [--bin-dir .build/release] [--schemes f32,bf16,...]

For each scheme: `qwen-quant convert Tests/Fixtures/gen2/model --scheme S` (text_encoder with its vision tower,
processor, vae), then, against the upstream outputs of make_gen2.py:
  t2i      `qwen-run encode` of prompt 0                           vs t2i.p0.prompt_embeds
  ti2i     `qwen-run encode --image A B C --preresize none`        vs ti2i.multi.prompt_embeds
  vision   `qwen-run vision --image A B C --preresize none`        vs ti2i.multi.image_embeds
  vae-enc  `qwen-run vae-encode --normalize` of the RGBA test image vs vae.enc.latents_normalized
  vae-dec  `qwen-run vae-decode` of the reference latents           vs vae.dec.sample (and PSNR)
Relative L2 |ours - ref| / |ref|. The weights are random and tiny (width 64), so the figures rank the schemes;
full-size errors against the same pack's bf16 are in RESULTS ("Qwen-Image 2.1"). Writes
benchmarks/results/gen2_accuracy.json.
"""
import argparse
import json
import os
import sys
import tempfile

import numpy as np
from PIL import Image
from safetensors.numpy import load_file, save_file

from bench_common import ROOT, rel, psnr_pm1 as psnr
from bench_common import run as common_run

FIX = os.path.join(ROOT, "Tests", "Fixtures", "gen2")
T2I_PROMPT = "A cat sitting on a red sofa, oil painting"   # make_gen2.py PROMPTS[0]


def run(cmd):
    return common_run(cmd, "gen2_accuracy")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", default=os.path.join(ROOT, ".build", "release"))
    ap.add_argument("--schemes", default="f32,bf16,f16,q8,q8s,q6s,q5s,q4,q4c")
    a = ap.parse_args()
    qrun, qquant = os.path.join(a.bin_dir, "qwen-run"), os.path.join(a.bin_dir, "qwen-quant")
    ti2i = json.load(open(os.path.join(FIX, "refs", "gen2_cases.json")))["ti2i_prompts"]["multi"][0]
    refs = {**load_file(os.path.join(FIX, "refs", "gen2_t2i.safetensors")),
            **load_file(os.path.join(FIX, "refs", "gen2_ti2i.safetensors")),
            **load_file(os.path.join(FIX, "refs", "gen2_vae.safetensors"))}
    work = tempfile.mkdtemp(prefix="gen2-acc-")
    images = []
    for k in "ABC":
        px = refs[f"image.{k}"]
        p = os.path.join(work, f"{k}.png")
        Image.fromarray(px, "RGBA" if px.shape[2] == 4 else "RGB").save(p)
        images += ["--image", p]
    vae_png = os.path.join(work, "vae.png")
    Image.fromarray(refs["vae.enc.image_uint8"], "RGBA").save(vae_png)
    lat = os.path.join(work, "latents.safetensors")
    save_file({"latents": np.ascontiguousarray(refs["vae.dec.latents"])}, lat)
    out = os.path.join(work, "out.safetensors")
    records = []
    for s in a.schemes.split(","):
        pack = os.path.join(work, f"pack-{s}")
        run([qquant, "convert", os.path.join(FIX, "model"), "-o", pack, "--scheme", s, "--force"])
        info = json.load(open(os.path.join(pack, "pack.json")))
        r = {"scheme": s, "options": info.get("options", {})}
        run([qrun, "encode", "--pack", pack, "--prompt", T2I_PROMPT, "--out", out, "--force"])
        r["t2i"] = rel(load_file(out)["prompt_embeds"], refs["t2i.p0.prompt_embeds"])
        run([qrun, "encode", "--pack", pack, "--prompt", ti2i, "--preresize", "none", "--out", out, "--force"] + images)
        r["ti2i"] = rel(load_file(out)["prompt_embeds"], refs["ti2i.multi.prompt_embeds"])
        run([qrun, "vision", "--pack", pack, "--preresize", "none", "--out", out, "--force"] + images)
        r["vision"] = rel(load_file(out)["image_embeds"], refs["ti2i.multi.image_embeds"])
        run([qrun, "vae-encode", "--pack", pack, "--image", vae_png, "--normalize", "--out", out, "--force"])
        r["vae_enc"] = rel(load_file(out)["latents"], refs["vae.enc.latents_normalized"])
        run([qrun, "vae-decode", "--pack", pack, "--latents", lat, "--out", out, "--force"])
        sample = load_file(out)["sample"]
        r["vae_dec"] = rel(sample, refs["vae.dec.sample"])
        r["vae_dec_psnr_db"] = psnr(sample, refs["vae.dec.sample"])
        print(json.dumps(r))
        records.append(r)
    res = os.path.join(ROOT, "benchmarks", "results", "gen2_accuracy.json")
    json.dump({"command": " ".join(sys.argv), "records": records}, open(res, "w"), indent=1)
    print(f"wrote {res}")


if __name__ == "__main__":
    main()
