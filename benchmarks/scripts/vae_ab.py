#!/usr/bin/env python3
"""Interleaved A/B of two qwen-run builds on the VAE (same packs, same inputs, same session).

    python3 benchmarks/scripts/vae_ab.py --before /path/to/old/release --after .build/release \
        --pack /work/bench-data/packs/vae-q8s --repeat 5 [--max-ram 512M] [--name vae_ab] [--note TEXT]

On a shared 2-vCPU host the speed drifts by 10-20% within an hour, so runs of two builds taken one after the
other compare the hour, not the code. Here each repeat runs decode 1024² and encode 1024² with the old build,
then with the new one (alternating), and the medians (min-max) and peak RSS (ru_maxrss of the child) of each
are recorded in the `vae` records format (benchmarks/results/<name>.json), with whether the outputs are
byte-identical.
"""
import argparse
import os
import statistics
import tempfile

import numpy as np
from safetensors.numpy import save_file

from bench_common import ab_arguments, ab_builds, run, timed, write_results


def main():
    ap = argparse.ArgumentParser()
    ab_arguments(ap, "vae_ab", repeat=5)
    ap.add_argument("--max-ram", default="512M")
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--z-dim", type=int, default=16, help="latent channels (64 for the 2.1 VAE)")
    ap.add_argument("--compression", type=int, default=8, help="spatial compression (16 for the 2.1 VAE)")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="vae-ab-")
    rng = np.random.default_rng(0)
    n = a.size
    lat = os.path.join(work, "latents.safetensors")
    f = a.compression
    save_file({"latents": rng.standard_normal((1, a.z_dim, 1, n // f, n // f)).astype(np.float32)}, lat)
    png = os.path.join(work, "image.png")
    builds = ab_builds(a)
    run([os.path.join(a.after, "qwen-run"), "vae-decode", "--pack", a.pack, "--latents", lat, "--out", png,
         "--force", "--max-ram", a.max_ram], "vae_ab")
    jobs = {"decode": (f"decode {n // f}x{n // f} -> {n}x{n}", lambda b, o: ["vae-decode", "--latents", lat, "--out", o + ".png"]),
            "encode": (f"encode {n}x{n}", lambda b, o: ["vae-encode", "--image", png, "--out", o + ".safetensors"])}
    runs = {(lab, j): [] for lab, _ in builds for j in jobs}
    for i in range(a.repeat):
        for j, (_, args) in jobs.items():
            for lab, bdir in builds:
                out = os.path.join(work, f"{j}-{lab}")
                cmd = [os.path.join(bdir, "qwen-run"), *args(bdir, out), "--pack", a.pack, "--force", "--json",
                       "--threads", "2", "--max-ram", a.max_ram, *a.flags.split()]
                dt, rss, summ = timed(cmd)
                runs[(lab, j)].append((dt, rss, summ))
                print(f"{lab} {j} run {i + 1}: {dt:.2f} s, peak RSS {rss / 2**20:.1f} MiB", flush=True)
    same = {}
    for j, _ in jobs.items():
        ext = ".png" if j == "decode" else ".safetensors"
        blobs = [open(os.path.join(work, f"{j}-{lab}{ext}"), "rb").read() for lab, _ in builds]
        same[j] = blobs[0] == blobs[1]
    records = []
    for lab, bdir in builds:
        for j, (job, _) in jobs.items():
            rs = runs[(lab, j)]
            ts = [r[0] for r in rs]
            pack = os.path.basename(a.pack.rstrip('/')).removeprefix('vae-') + ("+dot" if "--bf16-dot" in a.flags.split() else "")
            records.append({"case": f"{pack} ({lab})", "job": job,
                            "status": "ok", "wall_s_median": statistics.median(ts), "wall_s_min": min(ts),
                            "wall_s_max": max(ts), "repeats": len(ts), "peak_rss_bytes": max(r[1] for r in rs),
                            "pixels": n * n, "summary": {"gflop": rs[-1][2].get("gflop")},
                            "outputs_identical_to_other_build": same[j]})
    write_results(a.name, records, bench="vae_ab",
                  note=a.note + " Outputs byte-identical between the builds: "
                  + ", ".join(f"{j} {'yes' if s else 'no'}" for j, s in same.items()) + ".")

if __name__ == "__main__":
    main()
