#!/usr/bin/env python3
"""Peers side by side: this project, llama.cpp and PyTorch on the same synthetic weights, in one run.

Run through `benchmarks/peers/run.sh` (it makes the virtual environment, builds the release binaries and
writes the synthetic checkpoints); it calls this script as

    peers.py --model SYNTH_DIR --work WORK_DIR [--quick] [--accuracy-model NAME=DIR ...] [options]

Every measurement is a fresh child process, timed from start to exit, with its peak RSS from wait4.
Writes benchmarks/results/peers.json, peers.section.md (appended to RESULTS.md by `qwen-bench report`)
and peers_accuracy.svg.
"""
import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
BIN = os.path.join(ROOT, ".build", "release")
PY = sys.executable

TEMPLATE = ("<|im_start|>system\nDescribe the image by detailing the color, shape, size, texture, quantity, text, "
            "spatial relationships of the objects and background:<|im_end|>\n<|im_start|>user\n{}<|im_end|>\n"
            "<|im_start|>assistant\n")
DROP = 34   # QwenImagePipeline's prompt_template_encode_start_idx
ACCURACY_PROMPTS = [
    "A red fox standing in fresh snow at dawn, soft light, photo",
    "A small old stone house beside a green river under a blue sky, the water is calm and reflects the trees; "
    "in the style of a soft watercolor painting, with light at dawn, a cat sits at the door of the house and "
    "a big tree stands in the snow behind it. The photo shows the red roof, the old stone walls, the small "
    "windows and the river in soft morning light, with snow on the trees and on the stone path to the water.",
]
WORDS = ["red", "fox", "snow", "dawn", "soft", "light", "cat", "photo", "of", "the", "in", "at", "and", "a",
         "water", "style", "blue", "sky", "tree", "house", "river", "stone", "green", "old", "small", "big"]


def note(msg):
    print(f"[peers {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Failed(Exception):
    pass


# Children are started by a small spawner process, not by this one: a child's peak RSS (ru_maxrss from
# wait4) includes the address space it was forked from, and this process holds hundreds of MiB of
# reference outputs. The spawner stays at a few MiB, so the figures are the children's own.
SPAWNER = r"""
import json, os, sys, time
for line in sys.stdin:
    job = json.loads(line)
    t0 = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        try:
            fd_in = os.open(os.devnull, os.O_RDONLY)
            fd_out = os.open(job["out"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            fd_err = os.open(job["err"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(fd_in, 0); os.dup2(fd_out, 1); os.dup2(fd_err, 2)
            os.execv(job["argv"][0], job["argv"])
        finally:
            os._exit(127)
    _, status, usage = os.wait4(pid, 0)
    sys.stdout.write(json.dumps({"exit": os.waitstatus_to_exitcode(status), "seconds": time.perf_counter() - t0,
                                 "maxrss": usage.ru_maxrss * 1024}) + "\n")
    sys.stdout.flush()
"""
_spawner = None


def run(argv, label, check=True):
    """Runs a child to completion: (seconds, peak RSS bytes, stdout, stderr, exit status)."""
    global _spawner
    if _spawner is None:
        _spawner = subprocess.Popen([sys.executable, "-S", "-c", SPAWNER], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, text=True)
    with tempfile.NamedTemporaryFile() as out, tempfile.NamedTemporaryFile() as err:
        _spawner.stdin.write(json.dumps({"argv": argv, "out": out.name, "err": err.name}) + "\n")
        _spawner.stdin.flush()
        line = _spawner.stdout.readline()
        if not line:
            raise SystemExit("peers: the spawner process died")
        r = json.loads(line)
        so = open(out.name, errors="replace").read()
        se = open(err.name, errors="replace").read()
    if check and r["exit"] != 0:
        raise Failed(f"{label}: exit {r['exit']}: {se.strip().splitlines()[-1] if se.strip() else '(no message)'}")
    return r["seconds"], r["maxrss"], so, se, r["exit"]


def last_json(text):
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                pass
    return {}


def measure(argv, label, repeat, warmup, inner_key):
    """Median of `repeat` timed runs after `warmup` untimed ones. inner_key: the child's own compute time field."""
    for i in range(warmup):
        s, rss, _, _, _ = run(argv, label)
        note(f"{label}: warm-up {s:.2f} s, peak RSS {rss / 2**20:.0f} MiB")
    walls, inner, rss_all = [], [], []
    for i in range(repeat):
        s, rss, so, se, _ = run(argv, label)
        j = last_json(so) or last_json(se)
        walls.append(s)
        rss_all.append(rss)
        if inner_key in j:
            inner.append(float(j[inner_key]))
        note(f"{label}: run {i + 1} {s:.2f} s (own {j.get(inner_key, float('nan')):.2f} s), peak RSS {rss / 2**20:.0f} MiB")
    rec = {"status": "ok", "repeats": repeat, "wall_s_median": statistics.median(walls), "wall_s_min": min(walls),
           "wall_s_max": max(walls), "wall_s_all": walls, "peak_rss_bytes": max(rss_all),
           "command": " ".join(os.path.basename(argv[0]) if k == 0 else a for k, a in enumerate(argv))}
    if inner:
        rec["own_s_median"] = statistics.median(inner)
    return rec


# ---------------------------------------------------------------------------------------------- errors

def compare(ref, cand):
    ref = np.asarray(ref, dtype=np.float64).reshape(ref.shape[0], -1) if ref.ndim > 1 else np.asarray(ref, np.float64)[None]
    cand = np.asarray(cand, dtype=np.float64).reshape(ref.shape)
    rel = float(np.linalg.norm(cand - ref) / max(np.linalg.norm(ref), 1e-30))
    num = (ref * cand).sum(1)
    den = np.linalg.norm(ref, axis=1) * np.linalg.norm(cand, axis=1)
    cos = num / np.maximum(den, 1e-30)
    return {"rel_l2": rel, "cos_mean": float(cos.mean()), "cos_worst": float(cos.min())}


def psnr(ref, cand):
    mse = float(np.mean((np.asarray(ref, np.float64) - np.asarray(cand, np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(4.0 / mse)   # images in [-1, 1]: peak-to-peak 2


def read_safetensors(path, name):
    from safetensors.numpy import load_file
    return load_file(path)[name]


# ---------------------------------------------------------------------------------------------- sizes

def pack_bits(pack):
    """Bits per weight of the language model's tensors in a pack (vision tower excluded)."""
    folder = os.path.join(pack, "text_encoder")
    m = json.load(open(os.path.join(folder, "manifest.json")))
    tensors = [t for shard in m["shards"] for t in shard["tensors"]]
    nbytes = params = 0
    for t in tensors:
        name = t.get("name", "")
        if name.startswith(("visual.", "model.visual.")):
            continue
        n = 1
        for d in t.get("shape", []):
            n *= d
        params += n
        nbytes += int(t.get("bytes", t.get("length", 0)))
    return 8 * nbytes / params if params else None


def gguf_bits(path):
    """Bits per weight of a GGUF's tensors, without output.weight (the LM head, which our packs do not keep)."""
    import gguf
    r = gguf.GGUFReader(path)
    nbytes = params = 0
    types = {}
    for t in r.tensors:
        if t.name == "output.weight":
            continue
        nbytes += int(t.n_bytes)
        params += int(t.n_elements)
        types[t.tensor_type.name] = types.get(t.tensor_type.name, 0) + int(t.n_elements)
    return 8 * nbytes / params, types


# ---------------------------------------------------------------------------------------------- weight error

SAMPLE = [f"model.layers.0.{m}.weight" for m in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                               "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")]


def weight_error(model, peer, target):
    """Relative RMS error of the first decoder layer's seven matrices, together (‖W − Ŵ‖ / ‖W‖ over all
    of them): ours from the pack manifest's per-tensor rel_rmse, llama.cpp by dequantizing its GGUF."""
    import to_gguf
    src = to_gguf.read_safetensors_index(os.path.join(model, "text_encoder"))
    names = [n for n in SAMPLE if n in src]
    norms = {n: float(np.sum(to_gguf.load(src[n], as_f32=True).astype(np.float64) ** 2)) for n in names}
    err = 0.0
    if peer == "ours":
        m = json.load(open(os.path.join(target, "text_encoder", "manifest.json")))
        rel = {t["name"]: t.get("rel_rmse") for sh in m["shards"] for t in sh["tensors"]}
        for n in names:
            if rel.get(n) is None:
                return None
            err += rel[n] ** 2 * norms[n]
    else:
        import gguf
        r = gguf.GGUFReader(target)
        by = {t.name: t for t in r.tensors}
        for n in names:
            t = by[to_gguf.gguf_name(n)]
            w = to_gguf.load(src[n], as_f32=True)
            got = gguf.quants.dequantize(np.asarray(t.data), t.tensor_type).reshape(w.shape)
            err += float(np.sum((got.astype(np.float64) - w) ** 2))
    return (err / sum(norms.values())) ** 0.5


# ---------------------------------------------------------------------------------------------- the run

class Bench:
    def __init__(self, a):
        self.a = a
        self.work = a.work
        os.makedirs(self.work, exist_ok=True)
        self.qrun = os.path.join(BIN, "qwen-run")
        self.qquant = os.path.join(BIN, "qwen-quant")
        self.results = {"bench": "peers", "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                        "command": " ".join(sys.argv), "machine": machine(), "versions": versions(),
                        "threads": a.threads, "quick": a.quick, "calibration_prompts": a.calibration_prompts, "same_weights_cos": a.same_weights_cos, "text_speed": [], "text_accuracy": [],
                        "vision": [], "vae": [], "not_measured": []}
        self.prompt_cache = {}
        self.llama_info = []

    # -- tokens
    def tokenize(self, pack, text):
        _, _, so, _, _ = run([self.qrun, "tokenize", "--pack", pack, "--text", text], "qwen-run tokenize")
        return json.loads(so)

    def prompt_of(self, pack, n):
        """A prompt of exactly n tokens (as qwen-bench text builds them)."""
        if n in self.prompt_cache:
            return self.prompt_cache[n]
        words = [WORDS[i % len(WORDS)] for i in range(n)]
        for _ in range(6):
            text = " ".join(words)
            c = len(self.tokenize(pack, text))
            if c == n:
                self.prompt_cache[n] = text
                return text
            words = words[: len(words) - (c - n)] if c > n else words + ["cat"] * (n - c)
        raise Failed(f"could not build a {n}-token prompt")

    def ids_file(self, pack, prompt, tag):
        ids = self.tokenize(pack, TEMPLATE.format(prompt))
        path = os.path.join(self.work, f"ids-{tag}.json")
        json.dump(ids, open(path, "w"))
        return path, ids

    # -- conversions
    def our_pack(self, model, case, components="text_encoder"):
        """Case names: SCHEME[-pc|-gN] (q8-pc, q4-g32, q4c), preset:NAME (qwen-quant's --preset), either
        with +imp: converted with an importance file calibrated on this model's bf16 pack. A +dot case is
        its pack run with --bf16-dot (our_flags)."""
        case = case[:-4] if case.endswith("+dot") else case
        pack = os.path.join(self.work, f"pack-{os.path.basename(model)}-{case.replace(':', '_')}")
        if not os.path.exists(os.path.join(pack, "pack.json")):
            base, imp = (case[:-4], True) if case.endswith("+imp") else (case, False)
            if base.startswith("preset:"):
                flags = ["--preset", base[7:]]
            else:
                scheme, *rest = base.split("-")
                flags = ["--scheme", scheme]
                if rest:
                    flags += ["--group-size", "0" if rest[0] == "pc" else rest[0][1:]]
            if imp:
                flags += ["--importance", self.importance(model)]
            s, rss, _, _, _ = run([self.qquant, "convert", model, "-o", pack, "--components", components, "--force",
                                   "--threads", str(self.a.threads)] + flags, f"convert {case}")
            note(f"converted {case} in {s:.0f} s (peak RSS {rss / 2**20:.0f} MiB)")
        return pack

    @staticmethod
    def our_flags(case):
        """qwen-run flags of one of our cases: `+dot` runs the pack with --bf16-dot (bf16 activations and
        the CPU's bf16 dot product, as llama.cpp BF16 and PyTorch bf16 compute)."""
        return ["--bf16-dot"] if case.endswith("+dot") else []

    def importance(self, model):
        """`qwen-quant calibrate` on this model's bf16 pack (the first --calibration-prompts bundled prompts), once."""
        path = os.path.join(self.work, f"importance-{os.path.basename(model)}.safetensors")
        if not os.path.exists(path):
            base = self.our_pack(model, "bf16")
            s, rss, _, _, _ = run([self.qquant, "calibrate", base, "-o", path, "--limit", str(self.a.calibration_prompts),
                                   "--threads", str(self.a.threads)], "calibrate")
            note(f"calibrated on {self.a.calibration_prompts} prompts in {s:.0f} s (peak RSS {rss / 2**20:.0f} MiB)")
        return path

    def gguf_bf16(self, model):
        path = os.path.join(self.work, f"{os.path.basename(model)}-BF16.gguf")
        if not os.path.exists(path):
            s, rss, so, _, _ = run([PY, os.path.join(HERE, "to_gguf.py"), os.path.join(model, "text_encoder"),
                                    os.path.join(model, "tokenizer"), path], "to_gguf")
            note(f"wrote {path} in {s:.0f} s and checked every tensor bit for bit")
        return path

    def gguf_type(self, model, t):
        src = self.gguf_bf16(model)
        if t == "BF16":
            return src
        path = os.path.join(self.work, f"{os.path.basename(model)}-{t}.gguf")
        if not os.path.exists(path):
            s, rss, so, _, _ = run([PY, os.path.join(HERE, "llama_child.py"), "quantize", "--model", src, "--type", t,
                                    "--threads", str(self.a.threads), "--out", path], f"llama quantize {t}")
            note(f"quantized {t} in {s:.0f} s")
        return path

    # -- one text case: accuracy on the accuracy prompts (once) and speed at each length
    def text_hidden(self, peer, case, target, ids_path, prompt, pack_for_prompt):
        out = os.path.join(self.work, "out.npy")
        if peer == "ours":
            st = os.path.join(self.work, "out.safetensors")
            run([self.qrun, "encode", "--pack", target, "--prompt", prompt, "--out", st, "--force",
                 "--threads", str(self.a.threads), "--json"] + self.our_flags(case), f"ours {case}")
            return read_safetensors(st, "prompt_embeds")[0]
        if peer == "llama.cpp":
            _, _, so, _, _ = run([PY, os.path.join(HERE, "llama_child.py"), "embed", "--model", target, "--ids", ids_path,
                                  "--threads", str(self.a.threads), "--out", out, "--also-last"], f"llama.cpp {case}")
            self.llama_info.append(last_json(so))
        else:
            run([PY, os.path.join(HERE, "torch_child.py"), "text", "--model", target, "--ids", ids_path,
                 "--threads", str(self.a.threads), "--dtype", case, "--out", out], f"pytorch {case}")
        return np.load(out)[DROP:]

    def text_speed_argv(self, peer, case, target, n, ids_path, prompt, threads):
        if peer == "ours":
            return [self.qrun, "encode", "--pack", target, "--prompt", prompt, "--out",
                    os.path.join(self.work, "speed.safetensors"), "--force", "--threads", str(threads), "--json"] + self.our_flags(case), "seconds"
        if peer == "llama.cpp":
            return [PY, os.path.join(HERE, "llama_child.py"), "embed", "--model", target, "--ids", ids_path,
                    "--threads", str(threads), "--out", os.path.join(self.work, "speed.npy")], "run_s"
        return [PY, os.path.join(HERE, "torch_child.py"), "text", "--model", target, "--ids", ids_path,
                "--threads", str(threads), "--dtype", case, "--out", os.path.join(self.work, "speed.npy")], "run_s"

    def text(self):
        a = self.a
        models = [(a.model_name, a.model)] + [tuple(x.split("=", 1)) for x in a.accuracy_model]
        for mname, model in models:
            speed = mname == a.model_name
            note(f"text encoder, model {mname} ({model})")
            base_pack = self.our_pack(model, "bf16")
            prompts = [(f"acc{i}", p) for i, p in enumerate(ACCURACY_PROMPTS)]
            ids = {tag: self.ids_file(base_pack, p, f"{mname}-{tag}") for tag, p in prompts}
            lengths = [int(x) for x in a.tokens.split(",")] if speed else []
            speed_prompts = {n: self.prompt_of(base_pack, n) for n in lengths}
            speed_ids = {n: self.ids_file(base_pack, speed_prompts[n], f"{mname}-speed{n}")[0] for n in lengths}
            baseline = {}
            ours_list = a.ours if speed else (a.accuracy_ours or a.ours)
            llama_list = a.llama if speed else (a.accuracy_llama or a.llama)
            cases = [("ours", c) for c in ours_list.split(",")] + [("llama.cpp", t) for t in llama_list.split(",")] + \
                    [("pytorch", d) for d in a.torch_text.split(",") if d]
            # Our bf16 pack first: it is the baseline of every error below.
            cases.sort(key=lambda pc: (pc != ("ours", "bf16"),))
            for peer, case in cases:
                try:
                    if peer == "ours":
                        target = self.our_pack(model, case)
                        bits = pack_bits(target)
                        types = None
                    elif peer == "llama.cpp":
                        target = self.gguf_type(model, case)
                        bits, types = gguf_bits(target)
                    else:
                        target, bits, types = model, {"bf16": 16.0, "f32": 16.0}[case], None
                    rec = {"model": mname, "peer": peer, "case": case, "bits_per_weight": bits}
                    if types:
                        rec["gguf_types"] = types
                    if peer != "pytorch":
                        rec["weight_rel_rmse"] = weight_error(model, peer, target)
                    errs = []
                    self.llama_info = []
                    for tag, p in prompts:
                        h = self.text_hidden(peer, case, target, ids[tag][0], p, base_pack)
                        expect = len(ids[tag][1]) - DROP
                        if h.shape[0] != expect:
                            raise Failed(f"{peer} {case}: {h.shape[0]} tokens after the template, expected {expect}")
                        if (peer, case) == ("ours", "bf16"):
                            baseline[tag] = h
                        errs.append(compare(baseline[tag], h))
                    rec["rel_l2"] = max(e["rel_l2"] for e in errs)
                    rec["cos_mean"] = float(np.mean([e["cos_mean"] for e in errs]))
                    rec["cos_worst"] = min(e["cos_worst"] for e in errs)
                    rec["per_prompt"] = errs
                    if self.llama_info:
                        # llama.cpp's embeddings path also runs its LM head on every output token; the
                        # second prefill (one output token) shows how much of its time that is.
                        rec["llama_decode_s"] = [j.get("run_s") for j in self.llama_info]
                        rec["llama_decode_last_only_s"] = [j.get("run_last_only_s") for j in self.llama_info]
                        rec["prompt_tokens_total"] = [len(ids[t][1]) for t, _ in prompts]
                    note(f"{mname} {peer} {case}: {bits:.2f} bpw, rel L2 {rec['rel_l2']:.4g}, worst cos {rec['cos_worst']:.4f}")
                    self.check_same_weights(peer, case, rec)
                    self.results["text_accuracy"].append(rec)
                    if speed and (peer, case) in self.speed_cases():
                        for n in lengths:
                            if n != 256 and (peer, case) not in self.speed_cases(extra=True):
                                continue
                            thread_list = [a.threads] + ([1] if n == 256 and a.one_thread and (peer, case) in self.speed_cases(extra=True) else [])
                            for th in thread_list:
                                argv, key = self.text_speed_argv(peer, case, target, n, speed_ids[n], speed_prompts[n], th)
                                reps, warm = (a.torch_repeat, 0) if peer == "pytorch" else (a.repeat, a.warmup)
                                r = measure(argv, f"text {peer} {case} {n} tokens {th} threads", reps, warm, key)
                                r.update({"model": mname, "peer": peer, "case": case, "prompt_tokens": n, "tokens": n + 39, "threads": th,
                                          "bits_per_weight": bits})
                                self.results["text_speed"].append(r)
                    self.save()
                except Failed as e:
                    note(f"NOT MEASURED: {e}")
                    self.not_measured("text", e, model=mname, peer=peer, case=case)
                    self.save()
                finally:
                    # Our bf16 pack is the baseline, but its outputs are kept in memory: once measured it can go
                    # (disk: a full-size run must fit in ~40 GB). llama.cpp's BF16 GGUF is the source of its types.
                    keep = (peer == "ours" and speed and "vision" in a.components.split(",")
                            and case in a.vision_ours.split(",")) or (peer == "llama.cpp" and case == "BF16") \
                        or (peer == "ours" and case == "bf16")   # the +imp cases calibrate on it
                    if a.delete and not keep:
                        self.delete(model, peer, case)
            if a.delete:
                self.delete(model, "llama.cpp", "BF16")
                if not (speed and "vision" in a.components.split(",") and "bf16" in a.vision_ours.split(",")):
                    self.delete(model, "ours", "bf16")

    def not_measured(self, component, error, **case):
        """Records a case that failed, with the reason and its component (what --merge keeps or replaces)."""
        self.results["not_measured"].append({"component": component, **case, "reason": str(error)})

    def speed_cases(self, extra=False):
        names = self.a.speed_extra if extra else self.a.speed
        out = set()
        for x in filter(None, names.split(",")):
            peer, case = x.split(":", 1)
            out.add(({"ours": "ours", "llama": "llama.cpp", "torch": "pytorch"}[peer], case))
        return out

    def check_same_weights(self, peer, case, rec):
        """A peer that did not load the same tensors fails loudly. The BF16/bf16 runs of the same weights
        must agree with our bf16 pack within the difference of their arithmetic (bf16 activations)."""
        if (peer, case) in {("llama.cpp", "BF16"), ("pytorch", "bf16"), ("pytorch", "f32")} and rec["cos_worst"] < self.a.same_weights_cos:
            raise Failed(f"{peer} {case}: worst per-token cosine {rec['cos_worst']:.4f} against our bf16 pack on the "
                         f"same weights (expected ≥ {self.a.same_weights_cos}): the peer did not compute the same function")

    def delete(self, model, peer, case):
        if peer == "ours":
            shutil.rmtree(os.path.join(self.work, f"pack-{os.path.basename(model)}-{case.replace(':', '_')}"), ignore_errors=True)
        elif peer == "llama.cpp":
            p = os.path.join(self.work, f"{os.path.basename(model)}-{case}.gguf")
            if os.path.exists(p):
                os.remove(p)

    # -- vision tower
    def vision(self):
        a = self.a
        pack_cases = a.vision_ours.split(",")
        sizes = [392] if a.quick else [392, 1008]
        imgs = {}
        for s in sizes:
            imgs[s] = os.path.join(self.work, f"photo{s}.png")
            photo(s, imgs[s])
        ref = {}
        for s in sizes:
            argv = [PY, os.path.join(HERE, "torch_child.py"), "vision", "--model", a.model, "--image", imgs[s],
                    "--threads", str(a.threads), "--out", os.path.join(self.work, f"vision-torch-{s}.npy")]
            try:
                r = measure(argv, f"vision pytorch f32 {s}", a.repeat, a.warmup, "run_s")
                ref[s] = np.load(os.path.join(self.work, f"vision-torch-{s}.npy"))
                r.update({"peer": "pytorch", "case": "f32", "size": s})
                self.results["vision"].append(r)
            except Failed as e:
                self.not_measured("vision", e, peer="pytorch", case=f"vision {s}")
        for c in pack_cases:
            try:
                pack = self.our_pack(a.model, c)
                for s in sizes:
                    out = os.path.join(self.work, "vision.safetensors")
                    argv = [self.qrun, "vision", "--pack", pack, "--image", imgs[s], "--preresize", "none", "--out", out,
                            "--force", "--threads", str(a.threads), "--json"]
                    r = measure(argv, f"vision ours {c} {s}", a.repeat, a.warmup, "seconds")
                    r.update({"peer": "ours", "case": c, "size": s})
                    if s in ref:
                        r.update({"vs_pytorch_f32": compare(ref[s], read_safetensors(out, "image_embeds"))})
                    self.results["vision"].append(r)
            except Failed as e:
                self.not_measured("vision", e, peer="ours", case=f"vision {c}")
            finally:
                if a.delete:
                    self.delete(a.model, "ours", c)
            self.save()

    # -- VAE
    def vae(self):
        a = self.a
        img = os.path.join(self.work, "photo1024.png")
        photo(1024, img)
        lat = np.random.default_rng(11).standard_normal((1, 16, 1, 128, 128)).astype(np.float32)
        np.save(os.path.join(self.work, "lat128.npy"), lat)
        from safetensors.numpy import save_file
        save_file({"latents": lat}, os.path.join(self.work, "lat128.safetensors"))
        ref = {}
        for job in ("vae-decode", "vae-encode"):
            for tiling in (False, True):
                label = f"{job} pytorch f32{' tiled' if tiling else ''}"
                out = os.path.join(self.work, f"{job}-torch{'-tiled' if tiling else ''}.npy")
                argv = [PY, os.path.join(HERE, "torch_child.py"), job, "--model", a.model, "--threads", str(a.threads),
                        "--out", out] + (["--latents", os.path.join(self.work, "lat128.npy")] if job == "vae-decode" else ["--image", img]) + \
                       (["--tiling"] if tiling else [])
                try:
                    r = measure(argv, label, a.vae_repeat, 0, "run_s")
                    r.update({"peer": "pytorch", "case": "f32" + ("-tiled" if tiling else ""), "job": job})
                    if not tiling:
                        ref[job] = np.load(out)
                    else:
                        r["vs_untiled"] = compare(ref[job].reshape(1, -1), np.load(out).reshape(1, -1))
                    self.results["vae"].append(r)
                except (Failed, KeyError) as e:
                    self.not_measured("vae", e, peer="pytorch", case=label)
                self.save()
        for c in a.vae_ours.split(","):
            try:
                pack = self.our_pack(a.model, c, components="vae")
                for job in ("vae-decode", "vae-encode"):
                    for cap in a.vae_caps.split(","):
                        out = os.path.join(self.work, "vae-out.safetensors")
                        io = ["--latents", os.path.join(self.work, "lat128.safetensors")] if job == "vae-decode" else ["--image", img]
                        argv = [self.qrun, job, "--pack", pack] + io + ["--out", out, "--force", "--threads", str(a.threads),
                                                                         "--json"] + (["--max-ram", cap] if cap != "default" else [])
                        r = measure(argv, f"{job} ours {c} max-ram {cap}", a.vae_repeat, 0, "seconds")
                        r.update({"peer": "ours", "case": c, "job": job, "max_ram": cap})
                        if job in ref:
                            name = "sample" if job == "vae-decode" else "latents"
                            got = read_safetensors(out, name)
                            r["vs_pytorch_f32"] = compare(ref[job].reshape(1, -1), got.reshape(1, -1))
                            if job == "vae-decode":
                                r["vs_pytorch_f32"]["psnr_db"] = psnr(ref[job], got.reshape(ref[job].shape))
                        self.results["vae"].append(r)
                        self.save()
            except Failed as e:
                self.not_measured("vae", e, peer="ours", case=f"vae {c}")
            finally:
                if a.delete:
                    self.delete(a.model, "ours", c)

    def save(self):
        out = self.a.results
        os.makedirs(out, exist_ok=True)
        tmp = os.path.join(out, ".peers.json.tmp")
        with open(tmp, "w") as f:
            json.dump(self.results, f, indent=1, sort_keys=True)
        os.replace(tmp, os.path.join(out, "peers.json"))


def photo(s, path):
    """A deterministic synthetic photo: gradients, discs, mild noise."""
    from PIL import Image
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:s, 0:s] / s
    img = np.stack([x, y, 0.5 + 0.5 * np.sin((x + y) * s / 50)], -1)
    for _ in range(12):
        cx, cy, r = rng.random() , rng.random(), 0.05 + rng.random() / 4
        img[(x - cx) ** 2 + (y - cy) ** 2 < r * r] = rng.random(3)
    img = np.clip(img + (rng.random(img.shape) - 0.5) * 0.06, 0, 1)
    Image.fromarray((img * 255).astype(np.uint8)).save(path)


def machine():
    cpu = "unknown"
    flags = ""
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name") and cpu == "unknown":
            cpu = line.split(":", 1)[1].strip()
        if line.startswith("flags") and not flags:
            flags = line
    isa = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile") if f" {f}" in flags]
    mem = next(int(l.split()[1]) * 1024 for l in open("/proc/meminfo") if l.startswith("MemTotal"))
    return {"cpu": cpu, "logical_cpus": os.cpu_count(), "mem_bytes": mem, "isa": isa, "kernel": platform.release()}


def versions():
    from importlib import metadata
    v = {"python": platform.python_version()}
    for mod, dist in (("torch", "torch"), ("transformers", "transformers"), ("diffusers", "diffusers"),
                      ("llama_cpp", "llama-cpp-python"), ("gguf", "gguf"), ("numpy", "numpy"),
                      ("safetensors", "safetensors"), ("PIL", "pillow")):
        try:
            v[mod] = metadata.version(dist)
        except metadata.PackageNotFoundError:   # recorded, never fatal: the cases that need it fail as not measured
            v[mod] = "not installed"
    try:
        v["qwen-run"] = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    except OSError:
        pass
    return v


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="synthetic checkpoint (qwen-bench synth) used for speed and accuracy")
    p.add_argument("--model-name", default="main", help="name of --model in the tables (main: the full-size checkpoint)")
    p.add_argument("--accuracy-model", action="append", default=[], help="NAME=DIR: another checkpoint, accuracy only")
    p.add_argument("--work", required=True, help="folder for packs, GGUFs and outputs (outside the repository)")
    p.add_argument("--results", default=os.path.join(ROOT, "benchmarks", "results"))
    p.add_argument("--quick", action="store_true")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--one-thread", action="store_true", help="also time the text encoder on 1 thread (256 tokens, --speed-extra cases)")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--torch-repeat", type=int, default=1, help="timed PyTorch text runs (no warm-up: its accuracy runs read the weights first)")
    p.add_argument("--tokens", default="256")
    p.add_argument("--ours", default="bf16,q8-pc,q8-g32,q4-g32,q4-g128")
    p.add_argument("--llama", default="BF16,Q8_0,Q6_K,Q5_K_M,Q4_K_M,Q4_0,IQ4_XS")
    p.add_argument("--accuracy-ours", default="", help="our schemes for the --accuracy-model checkpoints (default: --ours)")
    p.add_argument("--accuracy-llama", default="", help="llama.cpp types for the --accuracy-model checkpoints (default: --llama)")
    p.add_argument("--torch-text", default="bf16")
    p.add_argument("--speed", default="ours:bf16,ours:q8-pc,ours:q4-g32,llama:BF16,llama:Q8_0,llama:Q4_K_M,llama:Q4_0,llama:IQ4_XS,torch:bf16")
    p.add_argument("--speed-extra", default="ours:q8-pc,ours:q4-g32,llama:Q8_0,llama:Q4_0,llama:Q4_K_M",
                   help="cases also timed at the other --tokens lengths and on 1 thread")
    p.add_argument("--same-weights-cos", type=float, default=0.9, help="a bf16 peer whose worst per-token cosine against our bf16 pack is lower did not load the same weights (random weights give ~0)")
    p.add_argument("--components", default="text,vision,vae")
    p.add_argument("--vision-ours", default="q8-pc,q4-g32")
    p.add_argument("--vae-ours", default="f32,q8-pc")
    p.add_argument("--vae-caps", default="default,512M")
    p.add_argument("--vae-repeat", type=int, default=3)
    p.add_argument("--calibration-prompts", type=int, default=64, help="bundled prompts `qwen-quant calibrate` uses for the +imp cases")
    p.add_argument("--merge", action="store_true", help="keep the existing peers.json results of the components not run now")
    p.add_argument("--delete", action="store_true", help="delete each pack and GGUF once measured (saves disk)")
    a = p.parse_args()
    for tool in ("qwen-run", "qwen-quant"):
        if not os.access(os.path.join(BIN, tool), os.X_OK):
            raise SystemExit(f"peers: {os.path.join(BIN, tool)} missing: run `swift build -c release` first")
    b = Bench(a)
    comps = a.components.split(",")
    old_path = os.path.join(a.results, "peers.json")
    if a.merge and os.path.exists(old_path):
        # Keep the earlier run's results for the components not run this time (each keeps its own command).
        old = json.load(open(old_path))
        keys = {"text": ["text_speed", "text_accuracy"], "vision": ["vision"], "vae": ["vae"]}
        for comp, fields in keys.items():
            if comp not in comps:
                for f in fields:
                    b.results[f] = old.get(f, [])
        b.results["not_measured"] += [n for n in old.get("not_measured", []) if n.get("component") not in comps]
        b.results["merged_from"] = {"date": old.get("date"), "command": old.get("command"),
                                    "total_seconds": old.get("total_seconds"), "components": [c for c in keys if c not in comps]}
    t0 = time.time()
    if "text" in comps:
        b.text()
    if "vision" in comps:
        b.vision()
    if "vae" in comps:
        b.vae()
    b.results["total_seconds"] = time.time() - t0
    b.save()
    import report
    report.write(b.results, a.results)
    note(f"done in {(time.time() - t0) / 60:.1f} min")


if __name__ == "__main__":
    main()
