"""Turns peers.json into peers.section.md (appended to RESULTS.md by `qwen-bench report`) and
peers_accuracy.svg. Every number comes from the JSON; nothing is typed in.

    python3 report.py [RESULTS_DIR]      # rewrites both from RESULTS_DIR/peers.json
"""
import json
import math
import os
import sys


def fmt_s(r):
    return f"{r['wall_s_median']:.2f} s ({r['wall_s_min']:.2f}–{r['wall_s_max']:.2f})"


def mib(b):
    return f"{b / 2**20:,.0f} MiB"


def tool(peer):
    return {"ours": "**this project**", "llama.cpp": "llama.cpp", "pytorch": "PyTorch"}[peer]


TIE = 0.02          # relative L2 differences under 2% are within the spread of two prompts: "as accurate"
BPW_SLACK = 0.1     # "the same bits per weight": IQ4_XS's 4.26 counts as the same size as our 4.25


def names_of(rows):
    return ", ".join(f"{p['case']} ({p['bits_per_weight']:.2f} bpw, {p['rel_l2']:.4f})" for p in
                     sorted(rows, key=lambda p: p["bits_per_weight"]))


def accuracy_tables(res):
    out = []
    models = []
    for r in res["text_accuracy"]:
        if r["model"] not in models:
            models.append(r["model"])
    for m in models:
        rows = sorted((r for r in res["text_accuracy"] if r["model"] == m), key=lambda r: (-r["bits_per_weight"], r["rel_l2"]))
        out.append(f"\n**Text encoder accuracy, model `{m}`** ({MODEL_TEXT.get(m, m)}): the last hidden state of every "
                   f"prompt token (after the 34 template tokens), against this project's bf16 pack, over "
                   f"{len(rows[0]['per_prompt'])} prompts (relative L2: the worse prompt; cosines: mean and worst token).\n")
        out.append("| tool | format | bits/weight | relative L2 | mean cosine | worst cosine |")
        out.append("|---|---|---|---|---|---|")
        for r in rows:
            out.append(f"| {tool(r['peer'])} | {r['case']} | {r['bits_per_weight']:.2f} | {r['rel_l2']:.4f} | "
                       f"{r['cos_mean']:.5f} | {r['cos_worst']:.5f} |")
        out.append("")
        ours = [r for r in rows if r["peer"] == "ours" and r["case"] != "bf16"]
        peers = [r for r in rows if r["peer"] == "llama.cpp" and r["case"] != "BF16"]
        for o in sorted(ours, key=lambda r: r["bits_per_weight"]):
            fewer = [p for p in peers if p["bits_per_weight"] <= o["bits_per_weight"] + BPW_SLACK]
            better = [p for p in fewer if p["rel_l2"] < o["rel_l2"] * (1 - TIE)]
            tied = [p for p in fewer if p not in better and p["rel_l2"] <= o["rel_l2"] * (1 + TIE)]
            head = f"- ours **{o['case']}** ({o['bits_per_weight']:.2f} bpw, {o['rel_l2']:.4f})"
            if better:
                out.append(f"{head} is **less accurate** than llama.cpp {names_of(better)} at about the same (±{BPW_SLACK}) or fewer bits per weight.")
            elif tied:
                out.append(f"{head} is as accurate (within {TIE:.0%}) as llama.cpp {names_of(tied)}, which needs about the same (±{BPW_SLACK}) or fewer bits per weight.")
            else:
                out.append(f"{head}: no llama.cpp type at about the same (±{BPW_SLACK}) or fewer bits per weight is as accurate.")
    return out


MODEL_TEXT = {
    "main": "the full-size synthetic text encoder",
    "depth4": "the full-size synthetic text encoder cut to 4 of its 28 layers",
    "outliers": "full-size synthetic, outlier channels in the activations",
    "depth4-outliers": "4 layers, outlier channels in the activations",
}


def speed_tables(res):
    out = []
    sp = res["text_speed"]
    if not sp:
        return out
    out.append("\n**Text encoder speed**: one prefill of the prompt plus the 39 template tokens, a fresh process per "
               "run (start to exit, loading included), median of the runs (min–max), warm page cache. "
               "*Own* is the tool's own compute time (ours: everything after start-up; llama.cpp: `llama_decode`; "
               "PyTorch: the forward pass).\n")
    out.append("| tool | format | prompt tokens | threads | wall | own | peak RSS |")
    out.append("|---|---|---|---|---|---|---|")
    for r in sorted(sp, key=lambda r: (r["prompt_tokens"], -r["threads"], r["peer"] != "ours", r["peer"], -r["bits_per_weight"])):
        own = f"{r['own_s_median']:.2f} s" if "own_s_median" in r else "–"
        out.append(f"| {tool(r['peer'])} | {r['case']} | {r['prompt_tokens']} | {r['threads']} | {fmt_s(r)} | {own} | "
                   f"{mib(r['peak_rss_bytes'])} |")
    heads = [r for r in res["text_accuracy"] if r.get("llama_decode_last_only_s") and r["model"] == sp[0].get("model", r["model"])]
    if heads:
        h = heads[0]
        parts = ", ".join(f"{r['case']} {r['llama_decode_s'][-1]:.2f} s → {r['llama_decode_last_only_s'][-1]:.2f} s" for r in heads
                          if r["llama_decode_s"][-1] is not None and r["llama_decode_last_only_s"][-1] is not None)
        out.append(f"\nllama.cpp's embeddings path also applies its LM head to every output token, work this job does not "
                   f"need. The same {h['prompt_tokens_total'][-1]}-token prefill asking for the last token's output only "
                   f"(`llama_decode` time, all outputs → last only; measured once on the longer accuracy prompt): {parts}.")
    keys = sorted({(r["prompt_tokens"], r["threads"]) for r in sp})
    for n, th in keys:
        rows = [r for r in sp if r["prompt_tokens"] == n and r["threads"] == th]
        ours = [r for r in rows if r["peer"] == "ours"]
        peers = [r for r in rows if r["peer"] != "ours"]
        if not ours or not peers:
            continue
        out.append(f"\n**Our wall time ÷ peer wall time**, {n}-token prompt, {th} thread{'s' if th > 1 else ''} "
                   f"(below 1: ours is faster):\n")
        out.append("| ours \\ peer | " + " | ".join(f"{p['peer']} {p['case']}" for p in peers) + " |")
        out.append("|---|" + "---|" * len(peers))
        for o in ours:
            out.append(f"| {o['case']} | " + " | ".join(f"{o['wall_s_median'] / p['wall_s_median']:.2f}" for p in peers) + " |")
    return out


def vision_tables(res):
    v = res["vision"]
    if not v:
        return []
    out = ["\n**Vision tower** (one image at the size the processor keeps, a fresh process per run, median (min–max)); "
           "error of our output against PyTorch f32 on the same weights:\n",
           "| tool | format | image | wall | own | peak RSS | relative L2 vs PyTorch f32 |", "|---|---|---|---|---|---|---|"]
    for r in sorted(v, key=lambda r: (r["size"], r["peer"] != "pytorch", r["case"])):
        own = f"{r['own_s_median']:.2f} s" if "own_s_median" in r else "–"
        err = f"{r['vs_pytorch_f32']['rel_l2']:.2e}" if "vs_pytorch_f32" in r else "–"
        out.append(f"| {tool(r['peer'])} | {r['case']} | {r['size']}² | {fmt_s(r)} | {own} | {mib(r['peak_rss_bytes'])} | {err} |")
    for s in sorted({r["size"] for r in v}):
        t = next((r for r in v if r["size"] == s and r["peer"] == "pytorch"), None)
        if t:
            ratios = ", ".join(f"{r['case']} {r['wall_s_median'] / t['wall_s_median']:.2f}" for r in v if r["size"] == s and r["peer"] == "ours")
            out.append(f"\n- {s}²: our wall time ÷ PyTorch f32 wall time: {ratios}.")
    return out


def vae_tables(res):
    v = res["vae"]
    if not v:
        return []
    out = ["\n**VAE, 1024² image** (decode of 128² latents, encode of a 1024² photo), a fresh process per run, median "
           "(min–max); errors against PyTorch f32 untiled on the same weights:\n",
           "| tool | format | job | memory setting | wall | own | peak RSS | vs PyTorch f32 |", "|---|---|---|---|---|---|---|---|"]
    for r in sorted(v, key=lambda r: (r["job"], r["peer"] != "pytorch", r["case"], r.get("max_ram", ""))):
        own = f"{r['own_s_median']:.2f} s" if "own_s_median" in r else "–"
        if "vs_pytorch_f32" in r:
            e = r["vs_pytorch_f32"]
            err = f"rel L2 {e['rel_l2']:.2e}" + (f", {e['psnr_db']:.1f} dB" if "psnr_db" in e else "")
        elif "vs_untiled" in r:
            err = f"tiled vs untiled rel L2 {r['vs_untiled']['rel_l2']:.2e}"
        else:
            err = "–"
        mem = r.get("max_ram", "tiling" if "tiled" in r["case"] else "untiled")
        out.append(f"| {tool(r['peer'])} | {r['case']} | {r['job']} | {mem} | {fmt_s(r)} | {own} | {mib(r['peak_rss_bytes'])} | {err} |")
    for job in ("vae-decode", "vae-encode"):
        torch_rows = [r for r in v if r["job"] == job and r["peer"] == "pytorch"]
        ours = [r for r in v if r["job"] == job and r["peer"] == "ours"]
        for t in torch_rows:
            ratios = ", ".join(f"{o['case']} (--max-ram {o['max_ram']}) {o['wall_s_median'] / t['wall_s_median']:.2f}" for o in ours)
            if ratios:
                out.append(f"\n- {job}: our wall time ÷ PyTorch {t['case']}: {ratios}.")
    return out


def svg(res, path, bx=(3.5, 17)):
    """Relative L2 error (log scale) against bits per weight (the range bx), one panel per model, ours beside
    llama.cpp."""
    models = []
    for r in res["text_accuracy"]:
        if r["model"] not in models:
            models.append(r["model"])
    W, H, pad = 460, 320, 56
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W * len(models)}" height="{H}" font-family="sans-serif" font-size="11">',
             f'<rect width="{W * len(models)}" height="{H}" fill="white"/>']
    for k, m in enumerate(models):
        rows = [r for r in res["text_accuracy"] if r["model"] == m and r["rel_l2"] > 0 and r["peer"] != "pytorch"
                and bx[0] <= r["bits_per_weight"] <= bx[1]]
        if not rows:
            continue
        x0 = k * W
        lo = math.floor(math.log10(min(r["rel_l2"] for r in rows)))
        hi = math.ceil(math.log10(max(r["rel_l2"] for r in rows)))
        hi = max(hi, lo + 1)
        X = lambda b: x0 + pad + (b - bx[0]) / (bx[1] - bx[0]) * (W - pad - 20)
        Y = lambda e: H - pad + (math.log10(e) - lo) / (lo - hi) * (H - pad - 30)
        parts.append(f'<text x="{x0 + W / 2}" y="16" text-anchor="middle" font-weight="bold">text encoder, model {m}</text>')
        parts.append(f'<line x1="{X(bx[0])}" y1="{H - pad}" x2="{X(bx[1])}" y2="{H - pad}" stroke="black"/>')
        parts.append(f'<line x1="{X(bx[0])}" y1="{H - pad}" x2="{X(bx[0])}" y2="30" stroke="black"/>')
        for b in (b for b in (4, 5, 6, 7, 8, 9, 12, 16) if bx[0] <= b <= bx[1] and (b not in (7, 9) or bx[1] < 12)):
            parts.append(f'<text x="{X(b)}" y="{H - pad + 14}" text-anchor="middle">{b}</text>')
        for e in range(lo, hi + 1):
            parts.append(f'<text x="{X(bx[0]) - 4}" y="{Y(10 ** e) + 4}" text-anchor="end">1e{e}</text>')
            parts.append(f'<line x1="{X(bx[0])}" y1="{Y(10 ** e)}" x2="{X(bx[1])}" y2="{Y(10 ** e)}" stroke="#ddd"/>')
        parts.append(f'<text x="{x0 + W / 2}" y="{H - 18}" text-anchor="middle">bits per weight</text>')
        parts.append(f'<text x="{x0 + 12}" y="{H / 2}" transform="rotate(-90 {x0 + 12} {H / 2})" text-anchor="middle">relative L2 vs bf16</text>')
        for r in rows:
            x, y = X(r["bits_per_weight"]), Y(r["rel_l2"])
            if r["peer"] == "ours":
                parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="#1f77b4"/>')
                parts.append(f'<text x="{x + 6:.1f}" y="{y - 4:.1f}" fill="#1f77b4">{r["case"]}</text>')
            else:
                parts.append(f'<rect x="{x - 4:.1f}" y="{y - 4:.1f}" width="8" height="8" fill="#ff7f0e"/>')
                parts.append(f'<text x="{x + 6:.1f}" y="{y + 12:.1f}" fill="#c05800">{r["case"]}</text>')
        parts.append(f'<circle cx="{x0 + W - 150}" cy="40" r="4" fill="#1f77b4"/><text x="{x0 + W - 140}" y="44">this project</text>')
        parts.append(f'<rect x="{x0 + W - 154}" y="52" width="8" height="8" fill="#ff7f0e"/><text x="{x0 + W - 140}" y="60">llama.cpp</text>')
    parts.append("</svg>")
    with open(path + ".tmp", "w") as f:
        f.write("\n".join(parts))
    os.replace(path + ".tmp", path)


def write(res, out_dir, name="peers", title=None):
    """<name>.section.md and <name>_accuracy.svg in out_dir; `title` replaces the default heading (a run
    other than run.sh's, e.g. a subset made with peers.py directly, which its command line then names)."""
    m = res["machine"]
    v = res["versions"]
    made_by = f"benchmarks/peers/run.sh{' --quick' if res.get('quick') else ''}" if name == "peers" else res.get("command", "peers.py")
    lines = ["## " + (title or "Peers side by side: llama.cpp and PyTorch, same machine, same weights, one run"), "",
             f"Generated by `{made_by}` on {res['date']} "
             f"(took {res.get('total_seconds', 0) / 60:.0f} min). Machine: {m['cpu']}, {m['logical_cpus']} logical CPUs, "
             f"{m['mem_bytes'] / 2**30:.0f} GiB, ISA {', '.join(m['isa'])}; {res['threads']} threads unless a row says otherwise.",
             f"Versions: this project {v.get('qwen-run', '?')}, llama.cpp through llama-cpp-python {v.get('llama_cpp')}, "
             f"gguf {v.get('gguf')}, torch {v.get('torch')}, transformers {v.get('transformers')}, diffusers {v.get('diffusers')}, "
             f"Python {v.get('python')}.",
             *([f"The {', '.join(res['merged_from']['components'])} results are kept from the run of "
                f"{res['merged_from']['date']} (`{res['merged_from']['command']}`, "
                f"{(res['merged_from'].get('total_seconds') or 0) / 60:.0f} min) on the same machine and weights; "
                f"the rest was measured by `{res['command']}`."] if res.get("merged_from") else []),
             "",
             "All three read the same synthetic bf16 safetensors (`qwen-bench synth`, real shapes, random weights): "
             "this project through `qwen-quant convert`, llama.cpp through a BF16 GGUF written from those files by "
             "`benchmarks/peers/to_gguf.py` (every tensor read back and compared bit for bit) and quantized by llama.cpp "
             "itself, PyTorch through transformers' and diffusers' own classes. Before a peer's numbers count, its bf16 "
             "output must agree with ours (worst token cosine ≥ "
             f"{res.get('same_weights_cos', 0.99)}); a peer that could not run is listed below as not measured, never filled in. Bits per weight "
             "count the language model's tensors without the LM head (our packs do not keep it; llama.cpp's files do). "
             "Random deep networks amplify quantization error far more than trained ones: compare formats with each "
             "other, not with published perplexities.",
             "",
             f"![relative L2 against bits per weight, ours and llama.cpp]({name}_accuracy.svg)"]
    lines += accuracy_tables(res)
    lines += speed_tables(res)
    lines += vision_tables(res)
    lines += vae_tables(res)
    if res["not_measured"]:
        lines.append("\n**Not measured** (with the reason):\n")
        for n in res["not_measured"]:
            lines.append(f"- {n['peer']} {n['case']}" + (f" ({n['model']})" if "model" in n else "") + f": {n['reason']}")
    lines.append("")
    path = os.path.join(out_dir, f"{name}.section.md")
    with open(path + ".tmp", "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(path + ".tmp", path)
    if res["text_accuracy"]:
        svg(res, os.path.join(out_dir, f"{name}_accuracy.svg"))


if __name__ == "__main__":
    # report.py [DIR [NAME [TITLE]]]: DIR/NAME.json (default: benchmarks/results, peers)
    d = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "results")
    name = sys.argv[2] if len(sys.argv) > 2 else "peers"
    write(json.load(open(os.path.join(d, f"{name}.json"))), d, name, sys.argv[3] if len(sys.argv) > 3 else None)
