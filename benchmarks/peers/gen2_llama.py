#!/usr/bin/env python3
"""Qwen-Image 2.1's text encoder beside llama.cpp, in one run, on the same full-size synthetic weights.

    gen2_llama.py --model SYNTH21 --packs PACKS21 --work WORK [--ours q8s,q4c] [--llama Q8_0,Q4_K_M,Q4_0]

SYNTH21 is `qwen-bench synth --config-dir benchmarks/configs/qwen-image-2.1` (Qwen3-VL-8B shapes, random
bf16 values); PACKS21 holds our packs of it (`qwen-quant convert SYNTH21 -o PACKS21/q8s --scheme q8s ...`).
The language model is written as a BF16 GGUF of arch `qwen3` (to_gguf.py --qwen3, checked tensor by tensor)
and quantized by llama.cpp itself. Text-only positions make Qwen3-VL's interleaved mrope the plain rope of
`qwen3`, so both sides compute the same function of the same weights.

Accuracy: the 2.1 pipeline reads the last layer's output *before* the final norm; llama.cpp's embeddings
come after its output norm. Both are compared after the final RMSNorm: ours normed here, in f64, with the
checkpoint's `norm.weight` (what `model.norm` computes). The baseline is our bf16 pack (exact weights, f32
arithmetic), converted, run on the accuracy prompts and deleted (disk). Speed: a 256-token prompt (291 tokens
with the 2.1 template), fresh processes, median of --repeat after --warmup, peak RSS from wait4.
Writes benchmarks/results/gen2_peers.json.
"""
import argparse
import datetime
import json
import os
import shutil
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import peers as P  # noqa: E402

SYSTEM = "<|im_start|>system\nComprehend and analyze the provided prompt.<|im_end|>\n"
TEMPLATE = SYSTEM + "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--packs", required=True)
    p.add_argument("--work", required=True)
    p.add_argument("--ours", default="q8s,q4c")
    p.add_argument("--llama", default="Q8_0,Q4_K_M,Q4_0")
    p.add_argument("--tokens", type=int, default=256)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--results", default=os.path.join(P.ROOT, "benchmarks", "results"))
    a = p.parse_args()
    os.makedirs(a.work, exist_ok=True)
    qrun, qquant = os.path.join(P.BIN, "qwen-run"), os.path.join(P.BIN, "qwen-quant")
    tok_pack = os.path.join(a.packs, a.ours.split(",")[0])
    results = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
               "command": " ".join(sys.argv), "machine": P.machine(), "versions": P.versions(), "threads": a.threads,
               "accuracy": [], "speed": [], "not_measured": []}
    out_path = os.path.join(a.results, "gen2_peers.json")

    def save():
        json.dump(results, open(out_path, "w"), indent=1)

    def tokenize(text):
        _, _, so, _, _ = P.run([qrun, "tokenize", "--pack", tok_pack, "--text", text], "qwen-run tokenize")
        return json.loads(so)

    drop = len(tokenize(SYSTEM))
    results["drop_index"] = drop

    def ids_file(prompt, tag):
        ids = tokenize(TEMPLATE.format(prompt))
        path = os.path.join(a.work, f"ids-{tag}.json")
        json.dump(ids, open(path, "w"))
        return path, ids

    # A prompt of exactly --tokens tokens (as qwen-bench text builds them).
    words = [P.WORDS[i % len(P.WORDS)] for i in range(a.tokens)]
    for _ in range(6):
        c = len(tokenize(" ".join(words)))
        if c == a.tokens:
            break
        words = words[: len(words) - (c - a.tokens)] if c > a.tokens else words + ["cat"] * (a.tokens - c)
    speed_prompt = " ".join(words)
    speed_ids, _ = ids_file(speed_prompt, "speed")
    prompts = [(f"acc{i}", t) for i, t in enumerate(P.ACCURACY_PROMPTS)]
    ids = {tag: ids_file(t, tag) for tag, t in prompts}

    # The final RMSNorm, to put our pre-norm output where llama.cpp's embeddings are.
    import to_gguf
    te = os.path.join(a.model, "text_encoder")
    index = to_gguf.read_safetensors_index(te)
    norm_w = to_gguf.load(index["model.language_model.norm.weight"], as_f32=True).astype(np.float64)
    cfg = json.load(open(os.path.join(te, "config.json")))
    eps = float(cfg.get("text_config", cfg).get("rms_norm_eps", 1e-6))

    def final_norm(x):
        x = np.asarray(x, np.float64)
        return x / np.sqrt((x * x).mean(1, keepdims=True) + eps) * norm_w

    def ours_hidden(pack, prompt):
        st = os.path.join(a.work, "out.safetensors")
        P.run([qrun, "encode", "--pack", pack, "--prompt", prompt, "--out", st, "--force", "--threads", str(a.threads),
               "--json"], f"ours {pack}")
        return final_norm(P.read_safetensors(st, "prompt_embeds")[0])

    def llama_hidden(gguf, tag):
        out = os.path.join(a.work, "out.npy")
        P.run([P.PY, os.path.join(HERE, "llama_child.py"), "embed", "--model", gguf, "--ids", ids[tag][0],
               "--threads", str(a.threads), "--out", out], f"llama.cpp {gguf}")
        return np.load(out)[drop:]

    # 1. Baseline: our bf16 pack, then deleted.
    bf16 = os.path.join(a.work, "pack-bf16")
    if not os.path.exists(os.path.join(bf16, "pack.json")):
        s, rss, _, _, _ = P.run([qquant, "convert", a.model, "-o", bf16, "--components", "text_encoder,processor", "--force",
                                 "--scheme", "bf16", "--threads", str(a.threads)], "convert bf16")
        P.note(f"converted bf16 in {s:.0f} s")
    base = {tag: ours_hidden(bf16, t) for tag, t in prompts}
    results["accuracy"].append({"peer": "ours", "case": "bf16", "bits_per_weight": P.pack_bits(bf16), "rel_l2": 0.0,
                                "cos_worst": 1.0, "note": "baseline"})
    shutil.rmtree(bf16)
    save()

    def accuracy(peer, case, target, bits, types=None):
        errs = []
        for tag, t in prompts:
            h = ours_hidden(target, t) if peer == "ours" else llama_hidden(target, tag)
            if h.shape != base[tag].shape:
                raise P.Failed(f"{peer} {case}: shape {h.shape}, expected {base[tag].shape}")
            errs.append(P.compare(base[tag], h))
        rec = {"peer": peer, "case": case, "bits_per_weight": bits, "rel_l2": max(e["rel_l2"] for e in errs),
               "cos_mean": float(np.mean([e["cos_mean"] for e in errs])), "cos_worst": min(e["cos_worst"] for e in errs),
               "per_prompt": errs}
        if types:
            rec["gguf_types"] = types
        if case == "BF16" and rec["cos_worst"] < 0.9:   # quantized cases may drift far on random weights
            raise P.Failed(f"{peer} {case}: worst cosine {rec['cos_worst']:.3f} against our bf16: not the same weights")
        P.note(f"{peer} {case}: {bits:.2f} bpw, rel L2 {rec['rel_l2']:.4g}, worst cos {rec['cos_worst']:.5f}")
        results["accuracy"].append(rec)
        save()

    def speed(peer, case, argv, key):
        r = P.measure(argv, f"{peer} {case} {a.tokens} tokens", a.repeat, a.warmup, key)
        r.update({"peer": peer, "case": case, "prompt_tokens": a.tokens, "tokens": len(json.load(open(speed_ids))),
                  "threads": a.threads})
        results["speed"].append(r)
        save()

    # 2. Our quantized packs.
    for case in a.ours.split(","):
        pack = os.path.join(a.packs, case)
        try:
            accuracy("ours", case, pack, P.pack_bits(pack))
            speed("ours", case, [qrun, "encode", "--pack", pack, "--prompt", speed_prompt, "--out",
                                 os.path.join(a.work, "speed.safetensors"), "--force", "--threads", str(a.threads),
                                 "--json"], "seconds")
        except P.Failed as e:
            P.note(f"NOT MEASURED: {e}")
            results["not_measured"].append({"peer": "ours", "case": case, "error": str(e)})

    # 3. llama.cpp: BF16 GGUF (checked bit for bit), its own quantizer, its own prefill.
    src = os.path.join(a.work, "synth21-BF16.gguf")
    if not os.path.exists(src):
        s, _, _, _, _ = P.run([P.PY, os.path.join(HERE, "to_gguf.py"), te, os.path.join(a.model, "processor"), src,
                               "--qwen3"], "to_gguf")
        P.note(f"wrote {src} in {s:.0f} s, every tensor checked")
    for t in ["BF16"] + a.llama.split(","):
        path = src if t == "BF16" else os.path.join(a.work, f"synth21-{t}.gguf")
        try:
            if not os.path.exists(path):
                s, _, so, _, _ = P.run([P.PY, os.path.join(HERE, "llama_child.py"), "quantize", "--model", src, "--type", t,
                                        "--threads", str(a.threads), "--out", path], f"llama quantize {t}")
                P.note(f"quantized {t} in {s:.0f} s")
            bits, types = P.gguf_bits(path)
            accuracy("llama.cpp", t, path, bits, types)
            if t != "BF16":
                speed("llama.cpp", t, [P.PY, os.path.join(HERE, "llama_child.py"), "embed", "--model", path, "--ids",
                                       speed_ids, "--threads", str(a.threads), "--out", os.path.join(a.work, "speed.npy")],
                      "run_s")
        except P.Failed as e:
            P.note(f"NOT MEASURED: {e}")
            results["not_measured"].append({"peer": "llama.cpp", "case": t, "error": str(e)})
        finally:
            if t != "BF16" and os.path.exists(path):
                os.remove(path)
    os.remove(src)
    save()
    P.note(f"wrote {out_path}")


if __name__ == "__main__":
    main()
