#!/usr/bin/env python3
"""Per-tensor-class sensitivity of the text encoder to a quantization scheme (issue 12, item 3).

For each class of matrices (q, k, v, o, gate, up, down projections, the embedding table) and each
layer, converts the checkpoint with only that part in SCHEME and everything else bf16, encodes the
accuracy prompts of the peers benchmark, and records the prompt-embedding error against the all-bf16
pack. The cost side is the class's share of the real model's weights (from a dry-run plan of the
full-size checkpoint, if given). Writes benchmarks/results/sensitivity.json.

    sensitivity.py --model SYNTH_DEPTH4 --name depth4 --work DIR [--model-full SYNTH] [--scheme q4c]
                   [--importance FILE] [--append]
"""
import argparse
import json
import os
import re
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peers  # noqa: E402  (the accuracy prompts, the child runner and the comparison)

CLASSES = [("q_proj", r"self_attn\.q_proj"), ("k_proj", r"self_attn\.k_proj"), ("v_proj", r"self_attn\.v_proj"),
           ("o_proj", r"self_attn\.o_proj"), ("gate_proj", r"mlp\.gate_proj"), ("up_proj", r"mlp\.up_proj"),
           ("down_proj", r"mlp\.down_proj"), ("embed_tokens", r"embed_tokens")]


def convert(model, out, flags):
    if not os.path.exists(os.path.join(out, "pack.json")):
        peers.run([os.path.join(peers.BIN, "qwen-quant"), "convert", model, "-o", out, "--components", "text_encoder",
                   "--force"] + flags, f"convert {os.path.basename(out)}")
    return out


def embeds(pack, work, tag):
    outs = []
    for i, p in enumerate(peers.ACCURACY_PROMPTS):
        out = os.path.join(work, f"emb-{tag}-{i}.safetensors")
        peers.run([os.path.join(peers.BIN, "qwen-run"), "encode", "--pack", pack, "--prompt", p, "--out", out, "--force"],
                  f"encode {tag}")
        outs.append(peers.read_safetensors(out, "prompt_embeds")[0])
    return outs


def shares(model_full):
    """Share of every class in the matrix weights of the full-size model (dry-run plan, nothing written)."""
    _, _, so, _, _ = peers.run([os.path.join(peers.BIN, "qwen-quant"), "convert", model_full, "--dry-run", "--json",
                                "--components", "text_encoder"], "dry-run")
    plan = json.loads(so)
    tensors = [t for t in plan["tensors"] if len(t["shape"]) == 2 and not t["name"].startswith("visual.")]
    total = sum(t["shape"][0] * t["shape"][1] for t in tensors)
    out = {}
    for cls, rx in CLASSES:
        out[cls] = sum(t["shape"][0] * t["shape"][1] for t in tensors if re.search(rx, t["name"])) / total
    layers = max(int(m.group(1)) for t in tensors for m in [re.search(r"layers\.(\d+)\.", t["name"])] if m) + 1
    return out, layers, total


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("--model-full", help="full-size checkpoint for the weight shares (default: --model)")
    ap.add_argument("--work", required=True)
    ap.add_argument("--scheme", default="q4c")
    ap.add_argument("--importance", help="importance file for the quantized parts (qwen-quant calibrate)")
    ap.add_argument("--results", default=os.path.join(peers.ROOT, "benchmarks", "results", "sensitivity.json"))
    ap.add_argument("--append", action="store_true", help="add to the existing results file")
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    base = convert(a.model, os.path.join(a.work, "bf16"), ["--scheme", "bf16"])
    ref = embeds(base, a.work, "bf16")
    share, full_layers, total = shares(a.model_full or a.model)
    _, _, so, _, _ = peers.run([os.path.join(peers.BIN, "qwen-quant"), "convert", a.model, "--dry-run", "--json",
                                "--components", "text_encoder"], "dry-run")
    layers = max(int(m.group(1)) for t in json.loads(so)["tensors"] for m in [re.search(r"layers\.(\d+)\.", t["name"])] if m) + 1
    imp = ["--importance", a.importance] if a.importance else []
    cases = [(f"class:{c}", rx) for c, rx in CLASSES] + [(f"layer:{i}", rf"layers\.{i}\.") for i in range(layers)] + [("all", ".")]
    rows = []
    for tag, rx in cases:
        pack = convert(a.model, os.path.join(a.work, "case"), ["--scheme", "bf16", "--rule", f"{rx}={a.scheme}"] + imp)
        errs = [peers.compare(r, c) for r, c in zip(ref, embeds(pack, a.work, "case"))]
        row = {"model": a.name, "scheme": a.scheme, "importance": bool(a.importance), "case": tag,
               "rel_l2": max(e["rel_l2"] for e in errs), "cos_worst": min(e["cos_worst"] for e in errs)}
        if tag.startswith("class:"):
            row["weight_share_full_model"] = share[tag[6:]]
        elif tag.startswith("layer:"):
            row["weight_share_full_model"] = (1 - share["embed_tokens"]) / full_layers
        print(f"[sensitivity] {a.name} {a.scheme}{' +imp' if a.importance else ''} {tag}: rel L2 {row['rel_l2']:.4f}, "
              f"worst cos {row['cos_worst']:.4f}", flush=True)
        rows.append(row)
        import shutil
        shutil.rmtree(pack, ignore_errors=True)
    old = json.load(open(a.results)) if a.append and os.path.exists(a.results) else {"bench": "sensitivity", "rows": []}
    old["rows"] = [r for r in old["rows"] if not (r["model"] == a.name and r["scheme"] == a.scheme and r["importance"] == bool(a.importance))] + rows
    old["machine"] = peers.machine()
    old["full_model_matrix_weights"] = total
    json.dump(old, open(a.results, "w"), indent=1)


if __name__ == "__main__":
    main()
