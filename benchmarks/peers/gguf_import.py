#!/usr/bin/env python3
"""GGUF import at full size (issue 15): a user's llama.cpp files -> our pack, timed, with peak RSS and
the extra error of the import; beside it, the same weights converted from safetensors in the same run.

    gguf_import.py --model DATA/synth --work DATA/gguf-work [--types Q8_0,Q4_K_M] [--repeat 3] [--threads 2]

1. lm-BF16.gguf: the synthetic text encoder's language model, bit for bit (to_gguf.py --qwen2vl: arch
   qwen2vl with the mrope sections, as llama.cpp's converter writes Qwen2.5-VL);
   mmproj-F16.gguf: its vision tower as llama.cpp's converter writes it (attn.qkv split into q/k/v, the
   Conv3d patch embedding split into two temporal slices, F16 weights, F32 norms and biases).
2. llama.cpp (llama-cpp-python's llama_model_quantize, llama_child.py) quantizes the BF16 file to each type.
3. `qwen-quant convert TYPE.gguf --mmproj mmproj-F16.gguf` (each ggml type in its matching scheme, and
   for Q4_K_M also --scheme q4c), repeated; and `qwen-quant convert` of the safetensors checkpoint
   (text_encoder, q8 groups of 32) once per repeat as the baseline.
Writes RESULTS/gguf_import.json and gguf_import.section.md (for `qwen-bench report`).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np
import gguf

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "Tests/Fixtures/scripts"))
import make_gguf  # noqa: E402
import to_gguf  # noqa: E402

QUANT = os.path.join(ROOT, ".build/release/qwen-quant")


def note(m):
    print(f"[gguf_import] {m}", file=sys.stderr, flush=True)


def write_mmproj(te_dir, out):
    """The vision tower of a text_encoder folder as a llama.cpp Qwen2.5-VL mmproj (F16 matrices), with the
    fixtures' writer (Tests/Fixtures/scripts/make_gguf.py), tensors loaded one at a time."""
    cfg = json.load(open(os.path.join(te_dir, "config.json")))
    tensors = to_gguf.read_safetensors_index(te_dir)
    tmp = out + ".tmp"
    make_gguf.write_mmproj(tmp, cfg, tensors, lambda n: to_gguf.load(tensors[n], as_f32=True),
                           qtype=gguf.GGMLQuantizationType.F16, window_size=False)
    os.replace(tmp, out)


def run_json(argv, label):
    t0 = time.perf_counter()
    p = subprocess.run(argv, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"{label} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    return wall, json.loads(p.stdout), p.stderr


def convert(src, out, extra, threads):
    wall, s, err = run_json([QUANT, "convert", src, "-o", out, "--force", "--json", "--threads", str(threads)] + extra, f"convert {src}")
    mats = [t for t in s["tensors"] if t["scheme"] != "f32"]
    by_scheme = {}
    for t in mats:
        by_scheme.setdefault(f"{t['scheme']}" + (f":{t['group']}" if t["scheme"] in ("q8", "q4") else ""), []).append(t["rel_rmse"])
    subprocess.run(["rm", "-rf", out])
    return {
        "wall_s": wall, "convert_s": s["seconds"], "peak_rss_bytes": s["peak_rss_bytes"], "source_bytes": s["source_bytes"],
        "pack_bytes": s["pack_bytes"], "bits_per_weight": s["components"][0]["bits_per_weight"],
        "extra_error": {k: {"tensors": len(v), "max": max(v), "median": statistics.median(v)} for k, v in sorted(by_scheme.items())},
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--results", default=os.path.join(ROOT, "benchmarks/results"))
    ap.add_argument("--types", default="Q8_0,Q4_K_M")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--python", default=sys.executable, help="a Python with llama-cpp-python (the peers venv)")
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    te, tok = os.path.join(a.model, "text_encoder"), os.path.join(a.model, "tokenizer")
    bf16 = os.path.join(a.work, "lm-BF16.gguf")
    mmproj = os.path.join(a.work, "mmproj-F16.gguf")
    types = a.types.split(",")
    made = {}
    if not os.path.exists(mmproj):
        t0 = time.perf_counter(); write_mmproj(te, mmproj); note(f"wrote {mmproj} in {time.perf_counter() - t0:.0f} s")
    missing = [t for t in types if not os.path.exists(os.path.join(a.work, f"lm-{t}.gguf"))]
    if missing and not os.path.exists(bf16):
        subprocess.run([sys.executable, os.path.join(HERE, "to_gguf.py"), te, tok, bf16, "--qwen2vl"], check=True)
    for t in missing:
        out = os.path.join(a.work, f"lm-{t}.gguf")
        wall, r, _ = run_json([a.python, os.path.join(HERE, "llama_child.py"), "quantize", "--model", bf16, "--type", t,
                               "--threads", str(a.threads), "--out", out], f"llama quantize {t}")
        made[t] = r["quantize_s"]
        note(f"llama.cpp quantized {t} in {r['quantize_s']:.0f} s")
    runs = {}
    cases = [(t, []) for t in types] + ([("Q4_K_M", ["--scheme", "q4c"])] if "Q4_K_M" in types else [])
    pack = os.path.join(a.work, "import.pack")
    for rep in range(a.repeat):
        for t, extra in cases:
            key = t + ("" if not extra else " " + " ".join(extra))
            r = convert(os.path.join(a.work, f"lm-{t}.gguf"), pack, ["--mmproj", mmproj] + extra, a.threads)
            r["gguf_bytes"] = os.path.getsize(os.path.join(a.work, f"lm-{t}.gguf")) + os.path.getsize(mmproj)
            runs.setdefault(key, []).append(r)
            note(f"{key}: {r['convert_s']:.1f} s, peak RSS {r['peak_rss_bytes'] / 2**20:.0f} MiB, {r['bits_per_weight']:.2f} bpw")
        r = convert(a.model, pack, ["--components", "text_encoder", "--scheme", "q8", "--group-size", "32"], a.threads)
        runs.setdefault("safetensors bf16 -> q8:32", []).append(r)
        note(f"safetensors: {r['convert_s']:.1f} s, peak RSS {r['peak_rss_bytes'] / 2**20:.0f} MiB")
    summary = {}
    for k, rs in runs.items():
        secs = sorted(r["convert_s"] for r in rs)
        summary[k] = {"median_s": statistics.median(secs), "min_s": secs[0], "max_s": secs[-1], "runs": len(rs),
                      "peak_rss_mib": max(r["peak_rss_bytes"] for r in rs) / 2**20, "source_gib": rs[0].get("gguf_bytes", rs[0]["source_bytes"]) / 2**30,
                      "pack_gib": rs[0]["pack_bytes"] / 2**30, "bits_per_weight": rs[0]["bits_per_weight"], "extra_error": rs[0]["extra_error"]}
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    rec = {"cpu": cpu, "threads": a.threads, "date": time.strftime("%Y-%m-%d"), "model": a.model, "llama_quantize_s": made, "cases": summary}
    os.makedirs(a.results, exist_ok=True)
    json.dump(rec, open(os.path.join(a.results, "gguf_import.json"), "w"), indent=1)
    lines = ["## GGUF import", "",
             f"`benchmarks/peers/gguf_import.py` on {cpu}, {a.threads} threads, {rec['date']}: the full-size synthetic text encoder "
             "(7B language model + vision tower, real shapes) written as llama.cpp writes Qwen2.5-VL (language model BF16, "
             "then quantized by llama.cpp's own `llama_model_quantize`; mmproj F16), imported with "
             "`qwen-quant convert LM.gguf --mmproj mmproj-F16.gguf`; beside it, in the same run, the bf16 safetensors checkpoint "
             f"converted to q8:32. Time is `convert`'s own wall time (median of {a.repeat}, min-max), peak RSS the process's. "
             "Extra error: relative RMSE of each stored matrix against the decoded GGUF (0 = bit-exact), worst and median per scheme.", "",
             "| source | size | pack | bits/weight | time (median, min-max) | peak RSS | extra error per scheme (max / median) |",
             "|---|---|---|---|---|---|---|"]
    for k, s in summary.items():
        err = "; ".join(f"{sch}: {v['max']:.2g} / {v['median']:.2g} ({v['tensors']})" for sch, v in s["extra_error"].items())
        lines.append(f"| {k} | {s['source_gib']:.2f} GiB | {s['pack_gib']:.2f} GiB | {s['bits_per_weight']:.2f} | "
                     f"{s['median_s']:.1f} s ({s['min_s']:.1f}-{s['max_s']:.1f}) | {s['peak_rss_mib']:.0f} MiB | {err} |")
    if made:
        lines += ["", "llama.cpp's quantize from the BF16 GGUF, for scale: " + ", ".join(f"{t} {s:.0f} s" for t, s in made.items()) + "."]
    open(os.path.join(a.results, "gguf_import.section.md"), "w").write("\n".join(lines) + "\n")
    print(json.dumps(rec, indent=1))


if __name__ == "__main__":
    main()
