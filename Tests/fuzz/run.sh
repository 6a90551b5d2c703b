#!/usr/bin/env bash
# Fuzzes the parsers with libFuzzer: builds qwen-fuzz with -sanitize=fuzzer,address into .build-fuzz,
# then runs each harness (default: all) for RUNS executions or SECONDS, whichever comes first, on a
# working copy of its committed corpus (Tests/Fixtures/fuzz/HARNESS). Prints execs, corpus growth and
# findings per harness and writes them to FUZZ_OUT (default /tmp/qwen-fuzz)/summary.tsv. A finding
# (crash, leak, timeout, out-of-memory) is saved as FUZZ_OUT/HARNESS/crash-*: fix it, then copy the
# input into Tests/Fixtures/fuzz/HARNESS/regress-NAME so the normal test suite replays it.
#
#   Tests/fuzz/run.sh                       # every harness, 10^6 runs or 30 min each
#   RUNS=100000 SECONDS_EACH=120 Tests/fuzz/run.sh safetensors index
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=${RUNS:-1000000}
SECONDS_EACH=${SECONDS_EACH:-1800}
OUT=${FUZZ_OUT:-/tmp/qwen-fuzz}
HARNESSES=("$@")
[ ${#HARNESSES[@]} -gt 0 ] || HARNESSES=(safetensors index packManifest componentManifest shard textConfig vaeConfig tokenizerJSON vocabMerges promptsFile image serveRequest gguf)
swift build -c release --product qwen-fuzz --scratch-path .build-fuzz -Xswiftc -sanitize=fuzzer,address -Xswiftc -DFUZZING >&2
BIN=.build-fuzz/release/qwen-fuzz
mkdir -p "$OUT"
printf "harness\texecs\tseconds\tcorpus_start\tcorpus_end\tfindings\n" > "$OUT/summary.tsv"
for h in "${HARNESSES[@]}"; do
  work="$OUT/$h"; rm -rf "$work"; mkdir -p "$work/corpus" "$work/findings"
  cp Tests/Fixtures/fuzz/"$h"/* "$work/corpus/"
  start=$(ls "$work/corpus" | wc -l)
  dict=(); case "$h" in image|shard|gguf) ;; *) dict=(-dict=Tests/fuzz/json.dict);; esac
  t0=$(date +%s)
  # -rss_limit_mb: an input that makes a parser allocate more than this is a finding (unbounded allocation).
  QWEN_FUZZ_TARGET="$h" QWEN_NO_PROGRESS=1 ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 \
    "$BIN" "$work/corpus" "${dict[@]}" -runs="$RUNS" -max_total_time="$SECONDS_EACH" -max_len=262144 -timeout=10 \
    -rss_limit_mb=2048 -malloc_limit_mb=2048 -artifact_prefix="$work/findings/" -print_final_stats=1 \
    > "$work/log.txt" 2>&1 || true
  t1=$(date +%s)
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$work/log.txt" | grep -o '[0-9]*$' || echo 0)
  end=$(ls "$work/corpus" | wc -l)
  found=$(ls "$work/findings" | wc -l)
  printf "%s\t%s\t%s\t%s\t%s\t%s\n" "$h" "${execs:-0}" "$((t1 - t0))" "$start" "$end" "$found" | tee -a "$OUT/summary.tsv"
done
