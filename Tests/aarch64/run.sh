#!/usr/bin/env bash
# Tests/aarch64/run.sh: builds Sources/Kernels + driver.c for aarch64 and runs the driver under qemu-user
# on CPU models with and without the optional extensions, so every ARM tier runs:
#   cortex-a72  Armv8.0: neon only
#   cortex-a76  Armv8.2 + dotprod: neon, dotprod
#   max         everything qemu implements (i8mm included): neon, dotprod, i8mm
# Compilers: clang --target=aarch64-linux-gnu (what SwiftPM uses on an arm64 machine; run on every model)
# and aarch64-linux-gnu-gcc (a second compiler over the same code; run on `max`). Both with -Werror.
# Needs: gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user-static (clang is optional).
# Exits non-zero on any build or test failure.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
src="$here/../../Sources/Kernels"
out="${TMPDIR:-/tmp}/qk-aarch64-$$"
mkdir -p "$out"
trap 'rm -rf "$out"' EXIT
qemu="$(command -v qemu-aarch64-static || command -v qemu-aarch64)"

# -D_GNU_SOURCE as Package.swift; -static so qemu-user needs no aarch64 sysroot at run time.
common=(-std=gnu11 -O2 -D_GNU_SOURCE -I"$src/include" -Wall -Wextra -Werror -static -pthread)
build() { # name compiler flags...
    local name="$1" cc="$2"; shift 2
    echo "build $name: $cc"
    "$cc" "${common[@]}" "$@" "$src"/*.c "$here/driver.c" -o "$out/driver-$name" -lm
}

builds=()
if command -v clang >/dev/null && clang --target=aarch64-linux-gnu -fsyntax-only -x c /dev/null 2>/dev/null; then
    build clang clang --target=aarch64-linux-gnu
    builds+=(clang)
else
    echo "clang with an aarch64 target not found: gcc build only"
fi
# GCC ignores `#pragma clang ...` (x86 unroll hints, fp contract): -Wno-unknown-pragmas, and
# -ffp-contract=off to keep clang's "no fusion across statements" numerics in the scalar twins.
build gcc aarch64-linux-gnu-gcc -Wno-unknown-pragmas -ffp-contract=off
builds+=(gcc)

status=0 passed=0 failed=0
run() { # build cpu
    echo "== $1 on qemu -cpu $2"
    local t0=$SECONDS log="$out/log-$1-$2"
    if ! "$qemu" -cpu "$2" "$out/driver-$1" | tee "$log"; then status=1; echo "== $1 on $2: FAILED"; fi
    # the driver's closing line; a run that died before printing it counts as one failure
    local last
    last="$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -n 1 || true)"
    if [ -n "$last" ]; then
        passed=$((passed + ${last%% *})); failed=$((failed + $(echo "$last" | cut -d' ' -f3)))
    else
        failed=$((failed + 1)); status=1
    fi
    echo "== $1 on $2: $((SECONDS - t0)) s"
}
for cpu in cortex-a72 cortex-a76 max; do run "${builds[0]}" "$cpu"; done
if [ "${builds[0]}" != gcc ]; then run gcc max; fi
echo "all runs:"
echo "$passed passed, $failed failed"
exit $status
