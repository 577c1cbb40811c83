#!/usr/bin/env bash
# Cross-compile the core and bn_core_test for linux-arm64 (Debian's g++-aarch64-linux-gnu) into
# build-arm64/, then run the test under qemu-user, so the NEON kernels are checked for real
# against the scalar reference. The detector must pick neon (checked by the test through
# BN_TEST_EXPECT_SIMD). No Node needed: without CMAKE_JS_VERSION, CMake builds only the core + tests.
#
#   scripts/arm64-test.sh
#
# Installs cmake, the cross compiler (+ libgomp1-arm64-cross) and qemu-user with apt-get only when
# missing. Idempotent; works from a clean clone.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

TRIPLE=aarch64-linux-gnu
SYSROOT=/usr/$TRIPLE
BUILD="$ROOT/build-arm64"

apt_updated=0
apt_install() {
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  if [ "$apt_updated" -eq 0 ]; then $sudo apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@"
}
# need <command> <debian package>: install the package if the command is missing.
need() {
  if command -v "$1" >/dev/null 2>&1; then return 0; fi
  echo "arm64-test.sh: '$1' not found, installing Debian package $2" >&2
  apt_install "$2"
}

need cmake cmake
need make make
need "$TRIPLE-g++" "g++-$TRIPLE"
need qemu-aarch64 qemu-user
# The OpenMP runtime for the target (normally pulled in by the cross g++).
if [ ! -e "$SYSROOT/lib/libgomp.so.1" ]; then
  echo "arm64-test.sh: $SYSROOT/lib/libgomp.so.1 missing, installing libgomp1-arm64-cross" >&2
  apt_install libgomp1-arm64-cross
fi

start=$(date +%s.%N)
cmake -S "$ROOT" -B "$BUILD" \
  -DCMAKE_TOOLCHAIN_FILE="$ROOT/cmake/toolchain-aarch64.cmake" \
  -DCMAKE_BUILD_TYPE=Release -DBN_BUILD_NATIVE_TESTS=ON -DBN_SANITIZE=OFF >/dev/null
cmake --build "$BUILD" --target bn_core_test -j "$(nproc 2>/dev/null || echo 2)"

if command -v file >/dev/null 2>&1; then file "$BUILD/bn_core_test"; fi

unset BATCHNORM_SIMD  # the real detector, not a level forced by the caller
out="$(mktemp)"
trap 'rm -f "$out"' EXIT
status=0
# Passive OpenMP waits: spinning threads are expensive under emulation on a busy machine.
OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}" BN_TEST_EXPECT_SIMD=neon qemu-aarch64 -L "$SYSROOT" "$BUILD/bn_core_test" | tee "$out" || status=$?
if [ "$status" -ne 0 ]; then
  echo "arm64-test.sh: bn_core_test under qemu-aarch64 failed (exit $status)" >&2
  exit "$status"
fi
grep -q '^simd level: neon ' "$out" || { echo "arm64-test.sh: expected 'simd level: neon'" >&2; exit 1; }
end=$(date +%s.%N)
awk -v s="$start" -v e="$end" 'BEGIN { printf "arm64-test.sh: ok in %.1f s (build + run under qemu-aarch64)\n", e - s }'
