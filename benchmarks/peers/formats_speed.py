#!/usr/bin/env python3
"""Text-encoder prefill time of our formats on the full-size synthetic checkpoint (issue 12's speed
target: the new 4-bit format within 15% of q4-g32). Give the machine to it alone.

    formats_speed.py --model SYNTH --work DIR [--cases q4-g32,q4c,...] [--repeat 5] [--tokens 256]

Writes benchmarks/results/formats_speed.json (formats_report.py puts it into RESULTS.md).
"""
import argparse
import datetime
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peers  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--cases", default="q4-g32,q4c,preset:q4-lean,q8-g32,q8s")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--results", default=os.path.join(peers.ROOT, "benchmarks", "results", "formats_speed.json"))
    a = ap.parse_args()
    ns = argparse.Namespace(work=a.work, threads=a.threads, quick=False, same_weights_cos=0.9, calibration_prompts=64)
    b = peers.Bench(ns)
    rows = []
    prompt = None
    for case in a.cases.split(","):
        pack = b.our_pack(a.model, case)
        prompt = prompt or b.prompt_of(pack, a.tokens)   # every pack carries the same tokenizer
        argv, key = b.text_speed_argv("ours", case, pack, a.tokens, None, prompt, a.threads)
        r = peers.measure(argv, f"text {case} {a.tokens} tokens", a.repeat, 1, key)
        r.update({"case": case, "bits_per_weight": peers.pack_bits(pack)})
        rows.append(r)
        b.delete(a.model, "ours", case)
    out = {"bench": "formats_speed", "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
           "command": "benchmarks/peers/formats_speed.py " + " ".join(sys.argv[1:]), "machine": peers.machine(),
           "tokens": a.tokens + 39, "prompt_tokens": a.tokens, "threads": a.threads, "repeat": a.repeat, "rows": rows}
    with open(a.results + ".tmp", "w") as f:
        json.dump(out, f, indent=1)
    os.replace(a.results + ".tmp", a.results)


if __name__ == "__main__":
    main()
