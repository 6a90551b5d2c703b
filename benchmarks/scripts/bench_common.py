"""Helpers shared by the benchmark scripts in this folder (imported by name: Python puts a script's own
folder first on sys.path)."""
import datetime
import json
import os
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run(cmd, who):
    """Runs a CLI command without progress bars; its stdout, or exits naming `who` and the command."""
    r = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, QWEN_NO_PROGRESS="1"))
    if r.returncode != 0:
        sys.exit(f"{who}: {' '.join(cmd)} exited {r.returncode}:\n{r.stderr}")
    return r.stdout


def rel(a, b):
    """Relative L2 |a - b| / |b|."""
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def psnr_pm1(a, b):
    """PSNR of two images in [-1, 1], seen in [0, 1]."""
    mse = float(np.mean(((np.asarray(a, np.float64) - np.asarray(b, np.float64)) / 2) ** 2))
    return float("inf") if mse == 0 else float(10 * np.log10(1.0 / mse))


def write_results(name, records, **fields):
    """benchmarks/results/<name>.json: the command line that ran, the date (UTC), `fields` and the records."""
    script = os.path.relpath(os.path.abspath(sys.argv[0]), ROOT)
    out = {"name": name, "command": " ".join(["python3", script] + sys.argv[1:]),
           "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), **fields,
           "records": records}
    path = os.path.join(ROOT, "benchmarks", "results", f"{name}.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    print(f"wrote {path}")


def timed(cmd):
    """Wall seconds, peak RSS bytes (ru_maxrss of the child) and the --json summary of one run."""
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ, QWEN_NO_PROGRESS="1"))
    _, status, ru = os.wait4(p.pid, 0)
    dt = time.monotonic() - t0
    out, err = p.stdout.read().decode(), p.stderr.read().decode()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{os.path.basename(sys.argv[0])}: {' '.join(cmd)} exited {os.waitstatus_to_exitcode(status)}:\n{err}")
    return dt, ru.ru_maxrss * 1024, json.loads(out)


def ab_arguments(ap, name, repeat):
    """The options of the interleaved A/B scripts (vae_ab.py, text_ab.py): the two builds' folders, the
    pack, runs per build, their labels, extra qwen-run flags for both, the results name and a note."""
    ap.add_argument("--before", required=True, help="folder of the old build's qwen-run")
    ap.add_argument("--after", default=os.path.join(ROOT, ".build", "release"))
    ap.add_argument("--pack", required=True)
    ap.add_argument("--repeat", type=int, default=repeat)
    ap.add_argument("--labels", default="before,after")
    ap.add_argument("--flags", default="", help="extra qwen-run flags for both builds, e.g. --bf16-dot")
    ap.add_argument("--name", default=name)
    ap.add_argument("--note", default="")


def ab_builds(a):
    """[(label, folder)] from --labels, --before and --after; exits when a folder has no built qwen-run."""
    builds = list(zip(a.labels.split(","), [a.before, a.after]))
    for _, bdir in builds:
        if not os.access(os.path.join(bdir, "qwen-run"), os.X_OK):
            sys.exit(f"{os.path.basename(sys.argv[0])}: no qwen-run in {bdir}: build it there first "
                     "(swift build -c release --product qwen-run)")
    return builds

