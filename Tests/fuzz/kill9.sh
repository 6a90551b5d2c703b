#!/usr/bin/env bash
# kill -9 at random moments: runs each writer (convert, encode --prompts-file, encode --out-dir
# --resume, vae-encode, vae-decode)
# on the bundled tiny model, kills it with SIGKILL after a random delay, and checks that
#   - an output that exists is complete: byte-identical to an uninterrupted run's (the pack: verifies);
#   - the next run succeeds and removes the dead run's temporaries (no .NAME.tmp-* left behind).
# For encode --out-dir, every chunk file (and the index) present after a kill must be byte-identical to
# an uninterrupted run's, and `--resume` must complete the folder.
# Usage: Tests/fuzz/kill9.sh [N]   (N kills per command, default 100; needs a release build)
#        COMMANDS="encode-dir" Tests/fuzz/kill9.sh 100   (only some of the commands)
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-100}
Q=.build/release/qwen-quant; R=.build/release/qwen-run
[ -x "$Q" ] && [ -x "$R" ] || swift build -c release >&2
W=$(mktemp -d /tmp/qwen-kill9.XXXXXX); trap 'rm -rf "$W"' EXIT
export QWEN_NO_PROGRESS=1
SRC=Tests/Fixtures/tiny-random-qwen-image
printf '"a red fox in the snow"\n"a cat on a sofa"\n"%s"\n' "$(head -c 3000 /dev/zero | tr '\0' 'x')" > "$W/prompts.jsonl"
$Q convert "$SRC" -o "$W/ref.pack" --scheme q8 --zstd 3 >/dev/null 2>&1
$R encode --pack "$W/ref.pack" --prompts-file "$W/prompts.jsonl" --out "$W/ref-emb.safetensors" >/dev/null 2>&1
$R encode --pack "$W/ref.pack" --prompts-file "$W/prompts.jsonl" --out-dir "$W/ref-ds" --chunk-size 1 >/dev/null 2>&1
$R vae-encode --pack "$W/ref.pack" --image Tests/Fixtures/refs/images/vae_enc0.png --out "$W/ref-lat.safetensors" >/dev/null 2>&1
$R vae-decode --pack "$W/ref.pack" --latents "$W/ref-lat.safetensors" --out "$W/ref-dec.png" >/dev/null 2>&1
# Every file in the dataset folder is one the uninterrupted run wrote, byte for byte; nothing else.
check_ds() {
  for f in "$W/ds"/*; do [ -e "$f" ] || continue; cmp -s "$f" "$W/ref-ds/$(basename "$f")" || return 1; done
}
check_ds_complete() { check_ds && diff -rq "$W/ds" "$W/ref-ds" >/dev/null; }
declare -A CMD CHECK OUTS
CMD[convert]="$Q convert $SRC -o $W/out.pack --scheme q8 --zstd 3 --force"
CHECK[convert]="$Q verify $W/out.pack"
CMD[encode]="$R encode --pack $W/ref.pack --prompts-file $W/prompts.jsonl --out $W/emb.safetensors --force"
CHECK[encode]="cmp -s $W/emb.safetensors $W/ref-emb.safetensors"
CMD[encode-dir]="$R encode --pack $W/ref.pack --prompts-file $W/prompts.jsonl --out-dir $W/ds --chunk-size 1 --resume"
CHECK[encode-dir]="check_ds_complete"
CMD[vae-encode]="$R vae-encode --pack $W/ref.pack --image Tests/Fixtures/refs/images/vae_enc0.png --out $W/lat.safetensors --force"
CHECK[vae-encode]="cmp -s $W/lat.safetensors $W/ref-lat.safetensors"
CMD[vae-decode]="$R vae-decode --pack $W/ref.pack --latents $W/ref-lat.safetensors --out $W/dec.png --force"
CHECK[vae-decode]="cmp -s $W/dec.png $W/ref-dec.png"
OUTS=([convert]=out.pack [encode]=emb.safetensors [encode-dir]=ds [vae-encode]=lat.safetensors [vae-decode]=dec.png)
passed=0; failed=0
for c in ${COMMANDS:-convert encode encode-dir vae-encode vae-decode}; do
  out="$W/${OUTS[$c]}"
  t0=$(date +%s%N); ${CMD[$c]} >/dev/null 2>&1; t1=$(date +%s%N)
  dur_us=$(( (t1 - t0) / 1000 )); rm -rf "$out"
  killed=0; complete=0
  for i in $(seq 1 "$N"); do
    # Odd runs start with no output (a kill must leave none or a complete one); even runs replace an
    # existing one (--force: the old output is moved aside, then the new one renamed in), or, for
    # encode-dir, resume what the previous killed run left.
    if [ $((i % 2)) -eq 1 ]; then rm -rf "$out"; fi
    ${CMD[$c]} >/dev/null 2>&1 & pid=$!
    sleep "$(awk -v d="$dur_us" -v r="$RANDOM" 'BEGIN { printf "%.6f", d * (r / 32768.0) / 1e6 }')"
    kill -9 "$pid" 2>/dev/null && killed=$((killed + 1)) || true
    wait "$pid" 2>/dev/null || true
    if [ "$c" = encode-dir ]; then
      # A killed dataset run may leave some chunks: each must be complete; the folder need not be.
      if [ -n "$(ls "$out" 2>/dev/null | grep -v '^\.' || true)" ]; then complete=$((complete + 1)); fi
      if ! check_ds; then echo "FAIL $c kill $i: a file in $out is not complete"; failed=$((failed + 1)); continue; fi
    elif [ -e "$out" ]; then
      complete=$((complete + 1))
      if ! ${CHECK[$c]} >/dev/null 2>&1; then echo "FAIL $c kill $i: $out exists but is not complete"; failed=$((failed + 1)); continue; fi
    fi
    # Every few kills: a rerun must succeed, give the complete output and leave no temporaries.
    if [ $((i % 10)) -eq 0 ]; then
      if ! ${CMD[$c]} >/dev/null 2>&1 || ! ${CHECK[$c]} >/dev/null 2>&1; then echo "FAIL $c rerun after kill $i"; failed=$((failed + 1)); continue; fi
      left=$(ls -a "$W" | grep -c "^\.${OUTS[$c]}\.\(tmp\|old\)-" || true)
      if [ "$c" = encode-dir ]; then left=$(ls -a "$out" | grep -c '\.\(tmp\|old\)-' || true); fi
      if [ "$left" -ne 0 ]; then echo "FAIL $c: $left temporaries left after a rerun"; failed=$((failed + 1)); continue; fi
    fi
    passed=$((passed + 1))
  done
  echo "$c: $N runs (uninterrupted $((dur_us / 1000)) ms), $killed killed mid-run, $complete outputs present after the kill (half the runs start with one), all checked"
done
echo "kill9: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
