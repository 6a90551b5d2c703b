#!/usr/bin/env python3
"""Interleaved A/B of two qwen-run builds on the text encoder: the same ~300-token prompt, the builds taking
turns (one untimed warm-up each), so drift of the host hits both alike.

    python3 benchmarks/scripts/text_ab.py --before /work/base/.build/release --pack /work/bench-data/packs/q8s \
        [--after .build/release] [--repeat 3] [--labels before,after] [--flags ...] [--name ab_text] [--note ...]

Records the medians (min-max) of wall and matmul seconds, peak RSS, and whether the two builds wrote
byte-identical prompt_embeds. Writes benchmarks/results/<name>.json.
"""
import argparse
import json
import os
import statistics
import tempfile

from bench_common import ab_arguments, ab_builds, timed, write_results

WORDS = "red fox snow dawn soft light cat photo of the in at and a water style blue sky tree house river stone green old small big "

def main():
    ap = argparse.ArgumentParser()
    ab_arguments(ap, "ab_text", repeat=3)
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="text-ab-")
    prompt = (WORDS * 10).strip()
    builds = ab_builds(a)
    runs = {lab: [] for lab, _ in builds}
    for i in range(a.repeat + 1):
        for lab, bdir in builds:
            cmd = [os.path.join(bdir, "qwen-run"), "encode", "--pack", a.pack, "--prompt", prompt, "--out",
                   os.path.join(work, f"{lab}.safetensors"), "--force", "--json", "--threads", "2", *a.flags.split()]
            dt, rss, summ = timed(cmd)
            print(f"{lab} {'warm-up' if i == 0 else f'run {i}'}: {dt:.2f} s (matmul {summ.get('matmul_seconds')} s), "
                  f"peak RSS {rss / 2**20:.1f} MiB", flush=True)
            if i > 0:
                runs[lab].append((dt, rss, summ))
    blobs = [open(os.path.join(work, f"{lab}.safetensors"), "rb").read() for lab, _ in builds]
    records = []
    for lab, _ in builds:
        rs = runs[lab]
        ts, mm = [r[0] for r in rs], [r[2].get("matmul_seconds", 0) for r in rs]
        records.append({"case": f"{os.path.basename(a.pack.rstrip('/'))} ({lab})", "tokens": rs[-1][2].get("tokens"),
                        "wall_s_median": statistics.median(ts), "wall_s_min": min(ts), "wall_s_max": max(ts),
                        "matmul_s_median": statistics.median(mm), "repeats": len(rs),
                        "peak_rss_bytes": max(r[1] for r in rs), "outputs_identical_to_other_build": blobs[0] == blobs[1]})
        print(json.dumps(records[-1]))
    write_results(a.name, records, bench="text_ab", note=a.note)

if __name__ == "__main__":
    main()
