#!/usr/bin/env python3
"""What --bf16-dot costs in accuracy on the text encoder, through the CLI.

    python3 benchmarks/scripts/bf16dot_accuracy.py --pack /work/bench-data/packs/bf16 \
        [--compare-pack q8s=/work/bench-data/packs/q8s] [--tiny-pack /tmp/tiny-bf16] [--name bf16dot_accuracy]

  full size  the oracle's three text-to-image prompts (batched) through the full-size bf16 pack with and
             without --bf16-dot (and through --compare-pack, for scale): relative L2 of prompt_embeds
             against the exact bf16 pack and the worst / mean per-token cosine over the valid tokens.
  tiny       with --tiny-pack (the bundled tiny model converted to bf16): the same prompts against the
             upstream float32 reference in Tests/Fixtures/refs, with and without --bf16-dot, beside the
             oracle's own figure for the upstream pipeline run in bf16 (cases.json precision notes).
Writes benchmarks/results/<name>.json.
"""
import argparse
import json
import os
import tempfile

import numpy as np
from safetensors.numpy import load_file

from bench_common import ROOT, rel, run, write_results

REFS = os.path.join(ROOT, "Tests", "Fixtures", "refs")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pack", required=True, help="full-size bf16 pack")
    ap.add_argument("--compare-pack", action="append", default=[], help="NAME=PACK, measured the same way for scale")
    ap.add_argument("--tiny-pack", help="the tiny model as a bf16 pack")
    ap.add_argument("--bin-dir", default=os.path.join(ROOT, ".build", "release"))
    ap.add_argument("--name", default="bf16dot_accuracy")
    a = ap.parse_args()
    qrun = os.path.join(a.bin_dir, "qwen-run")
    work = tempfile.mkdtemp(prefix="bf16dot-")
    cases = json.load(open(os.path.join(REFS, "cases.json")))
    prompts = os.path.join(work, "prompts.jsonl")
    with open(prompts, "w") as f:
        f.write("".join(json.dumps(s["prompt"]) + "\n" for s in cases["cases"]["t2i"]["singles"]))

    def encode(pack, tag, extra=()):
        out = os.path.join(work, f"{tag}.safetensors")
        s = json.loads(run([qrun, "encode", "--pack", pack, "--prompts-file", prompts, "--out", out, "--force", "--json", *extra],
                           "bf16dot_accuracy"))
        t = load_file(out)
        return t["prompt_embeds"].astype(np.float64), t["prompt_embeds_mask"].astype(bool), s

    def cosines(x, y, mask):
        a, b = x[mask], y[mask]
        c = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
        return float(c.min()), float(c.mean())

    records = []
    base, mask, _ = encode(a.pack, "exact")
    variants = [("bf16+dot", a.pack, ("--bf16-dot",))] + [(n, p, ()) for n, p in (c.split("=", 1) for c in a.compare_pack)]
    for name, pack, extra in variants:
        y, _, s = encode(pack, name.replace("+", "-"), extra)
        worst, mean = cosines(y, base, mask)
        rec = {"model": "full-size synthetic", "case": name, "against": "bf16 pack, exact", "rel_l2": rel(y, base),
               "worst_cos": worst, "mean_cos": mean, "bf16_dot": bool(s.get("bf16_dot", False))}
        print(json.dumps(rec))
        records.append(rec)
    if a.tiny_pack:
        ref = load_file(os.path.join(REFS, "t2i.safetensors"))["t2i.batch.prompt_embeds"]
        upstream = cases["precision_notes"].get("t2i.batch.prompt_embeds: bf16 weights+compute vs fp32 ref (rel L2)")
        for name, extra in [("bf16", ()), ("bf16+dot", ("--bf16-dot",))]:
            y, _, s = encode(a.tiny_pack, "tiny-" + name.replace("+", "-"), extra)
            rec = {"model": "tiny", "case": name, "against": "upstream float32 reference", "rel_l2": rel(y, ref),
                   "upstream_bf16_rel_l2": upstream, "bf16_dot": bool(s.get("bf16_dot", False))}
            print(json.dumps(rec))
            records.append(rec)
    write_results(a.name, records)


if __name__ == "__main__":
    main()
