#!/usr/bin/env bash
# Peers side by side (issue 11): this project, llama.cpp and PyTorch on the same synthetic weights, in
# one run on this machine. Speed, peak RSS and accuracy of every format; writes
# benchmarks/results/peers.json, peers.section.md and peers_accuracy.svg, then regenerates RESULTS.md.
#
#   benchmarks/peers/run.sh            # full-size text encoder, vision tower and VAE, plus every format's
#                                      # accuracy on the 4-layer cuts (98 min on 2 Zen 4 cores)
#   benchmarks/peers/run.sh --quick    # the text encoder cut to 4 layers, every format, vision 392²,
#                                      # 1 repeat (~20 min once the peers are installed; IQ4_XS alone
#                                      # takes ~4 min to quantize); writes into $DATA/results-quick
#
# Extra arguments go to peers.py (see `peers.py --help`), e.g. --tokens 64,256,1024 --repeat 5.
# DATA (default /work/bench-data) holds everything large, never inside the repository: the synthetic
# checkpoints (~17 GB full size), the packs and GGUFs (deleted as soon as they are measured; peak about
# 35 GB), and the peers' virtual environment (PEERS_VENV, default $DATA/peers-venv). Installing the
# peers from PyPI takes ~15 min the first time (llama.cpp compiles from source).
set -euo pipefail
cd "$(dirname "$0")/../.."
QUICK=0
if [[ "${1:-}" == "--quick" ]]; then QUICK=1; shift; fi
DATA="${DATA:-/work/bench-data}"
CONFIGS="${REAL_CONFIGS:-/work/shared/real-configs}"
VENV="${PEERS_VENV:-$DATA/peers-venv}"
mkdir -p "$DATA"
if [[ ! -x "$VENV/bin/python" ]]; then python3 -m venv "$VENV"; fi
"$VENV/bin/pip" install -q -r benchmarks/peers/requirements.txt
swift build -c release
B=.build/release/qwen-bench
synth() {   # synth OUT [flags]: written once, kept for later runs; its own record stays out of the repository
  local out="$1"; shift
  [[ -d "$out" ]] || QWEN_BENCH_RESULTS="$DATA/results-synth" $B synth --config-dir "$CONFIGS" --out "$out" "$@"
}
PY="$VENV/bin/python"
if (( QUICK )); then
  synth "$DATA/synth-depth4" --components text_encoder,vae --text-layers 4
  mkdir -p "$DATA/results-quick"
  "$PY" benchmarks/peers/peers.py --model "$DATA/synth-depth4" --model-name depth4 \
    --work "$DATA/peers-work-quick" --results "$DATA/results-quick" --quick --repeat 1 --warmup 1 \
    --components text,vision --vision-ours q4-g32 --delete "$@"
else
  # Full size: the text encoder (every speed case at 256 tokens, q4-g32 against Q4_0 also at 64 and
  # 1,024 tokens and on 1 thread), the vision tower, the VAE; then every format's accuracy on the 4-layer
  # cuts (plain and with outlier columns), where the slow-to-make llama.cpp types (Q6_K, Q5_K_M, IQ4_XS:
  # minutes each at 4 layers) are affordable.
  synth "$DATA/synth"
  synth "$DATA/synth-depth4" --components text_encoder,vae --text-layers 4
  synth "$DATA/synth-depth4-outliers" --components text_encoder --text-layers 4 --outliers
  "$PY" benchmarks/peers/peers.py --model "$DATA/synth" --model-name main \
    --accuracy-model depth4="$DATA/synth-depth4" --accuracy-model depth4-outliers="$DATA/synth-depth4-outliers" \
    --ours bf16,q8-pc,q4-g32,q4-g128 --llama BF16,Q8_0,Q4_K_M,Q4_0 \
    --accuracy-ours bf16,q8-pc,q8-g32,q4-g32,q4-g128 --accuracy-llama BF16,Q8_0,Q6_K,Q5_K_M,Q4_K_M,Q4_0,IQ4_XS \
    --tokens 64,256,1024 --one-thread --speed-extra ours:q4-g32,llama:Q4_0 --vae-repeat 2 \
    --work "$DATA/peers-work" --delete "$@"
  $B report
fi
