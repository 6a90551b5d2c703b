#!/usr/bin/env bash
# Small-RAM survival: runs every command inside a memory cgroup (v2 memory.max, or v1
# memory.limit_in_bytes; page cache included) of LIMIT bytes, with and without --max-ram, and checks
# that each one either finishes (exit 0) or refuses with a message (exit 1 or 64): never killed by the
# kernel's OOM killer (SIGKILL, exit 137). Skips with a message where no cgroup can be made (not root,
# no writable memory controller).
#   Tests/fuzz/small_ram.sh                          # the bundled tiny model, limits 192M and 512M
#   PACK=/data/full-q4.pack IMAGE=big.png LIMITS="2G 4G" Tests/fuzz/small_ram.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
Q=.build/release/qwen-quant; R=.build/release/qwen-run
[ -x "$Q" ] && [ -x "$R" ] || swift build -c release >&2
LIMITS=${LIMITS:-"192M 512M"}
W=$(mktemp -d /tmp/qwen-smallram.XXXXXX)
export QWEN_NO_PROGRESS=1
# The cgroup: v2 where this process's cgroup is a v2 one with the memory controller, else v1.
CG=""
if [ -f /sys/fs/cgroup/cgroup.controllers ] && grep -qw memory /sys/fs/cgroup/cgroup.controllers; then
  CG=/sys/fs/cgroup/qwen-smallram-$$; KNOB=memory.max
elif V1=$(awk -F: '$2 ~ /(^|,)memory(,|$)/ {print $3}' /proc/self/cgroup) && [ -d "/sys/fs/cgroup/memory$V1" ]; then
  CG=/sys/fs/cgroup/memory$V1/qwen-smallram-$$; KNOB=memory.limit_in_bytes
fi
if [ -z "$CG" ] || ! mkdir "$CG" 2>/dev/null; then
  echo "small_ram: skipped: cannot create a memory cgroup here (need root and a writable cgroup memory controller)"; exit 0
fi
trap 'rmdir "$CG" 2>/dev/null; rm -rf "$W"' EXIT
if [ -z "${PACK:-}" ]; then
  PACK=$W/tiny.pack; $Q convert Tests/Fixtures/tiny-random-qwen-image -o "$PACK" --scheme q8 >/dev/null 2>&1
fi
IMAGE=${IMAGE:-Tests/Fixtures/refs/images/vae_enc0.png}
printf '"a red fox in the snow"\n"a cat on a sofa"\n' > "$W/prompts.jsonl"
passed=0; failed=0
run_in_cgroup() {   # LIMIT NAME CMD...: runs CMD in the cgroup, classifies its exit
  local limit=$1 name=$2; shift 2
  echo $(( $(numfmt --from=iec "$limit") )) > "$CG/$KNOB"
  bash -c 'echo $$ > "$0/cgroup.procs" && exec "$@"' "$CG" "$@" > "$W/out.txt" 2> "$W/err.txt"
  local code=$?
  local msg; msg=$(grep -m1 '^error:' "$W/err.txt" | cut -c1-150)
  if [ $code -eq 0 ] || [ $code -eq 1 ] || [ $code -eq 64 ]; then
    passed=$((passed + 1)); printf '%-6s %-34s exit %-3s %s\n' "$limit" "$name" "$code" "${msg:-ok}"
  else
    failed=$((failed + 1)); printf '%-6s %-34s exit %-3s FAIL (killed?) %s\n' "$limit" "$name" "$code" "$msg"
  fi
}
$R vae-encode --pack "$PACK" --image "$IMAGE" --out "$W/lat.safetensors" --force >/dev/null 2>&1
for L in $LIMITS; do
  run_in_cgroup "$L" "convert (tiny)" $Q convert Tests/Fixtures/tiny-random-qwen-image -o "$W/c.pack" --scheme q4 --force
  if [ -d "$PACK/text_encoder" ]; then
  run_in_cgroup "$L" "encode" $R encode --pack "$PACK" --prompts-file "$W/prompts.jsonl" --out "$W/e.safetensors" --force
  run_in_cgroup "$L" "encode --max-ram 64M" $R encode --pack "$PACK" --prompts-file "$W/prompts.jsonl" --out "$W/e.safetensors" --force --max-ram 64M
  fi
  run_in_cgroup "$L" "vae-encode (default cap)" $R vae-encode --pack "$PACK" --image "$IMAGE" --out "$W/l.safetensors" --force
  run_in_cgroup "$L" "vae-encode --max-ram ${SMALL_CAP:-96M}" $R vae-encode --pack "$PACK" --image "$IMAGE" --out "$W/l.safetensors" --force --max-ram "${SMALL_CAP:-96M}"
  run_in_cgroup "$L" "vae-decode (default cap)" $R vae-decode --pack "$PACK" --latents "$W/lat.safetensors" --out "$W/d.png" --force
  run_in_cgroup "$L" "vae-decode --max-ram 8G (over the cap)" $R vae-decode --pack "$PACK" --latents "$W/lat.safetensors" --out "$W/d.png" --force --max-ram 8G
done
echo "small_ram: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
