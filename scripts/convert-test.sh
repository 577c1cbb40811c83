#!/usr/bin/env bash
# Build and run the native conversion test (bn_convert_test, native/test/convert_test.cc): the
# float32 <-> bfloat16/float16 rule, every ISA table bit for bit against scalar over all 2^32
# float32 inputs and all 65,536 16-bit values, tails, and the dispatcher. No Node needed.
#
#   scripts/convert-test.sh           Release build in build-native/: the exhaustive run at the
#                                     detected level, then BATCHNORM_SIMD=avx2 and =scalar runs
#                                     (where the CPU has them) checking that the conversion table
#                                     follows the lowered level (those two sample every 4096th chunk)
#                                     and under qemu-x86_64 -cpu Nehalem (no AVX: the scalar table,
#                                     no SIGILL from the cpuid probes)
#   scripts/convert-test.sh --sanitize  ASan + UBSan build in build-asan/ (every 1024th chunk)
#   scripts/convert-test.sh --arm64   cross-built for arm64 in build-arm64/, run under qemu-aarch64
#                                     (NEON): every 65,536-value decode, and every 16th chunk of the
#                                     2^32 encodes (BN_CONVERT_STRIDE overrides; 1 = all, minutes)
#
# Installs what it needs with apt-get only when missing (like native-test.sh / arm64-test.sh).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

usage() { sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

mode=native
for arg in "$@"; do
  case "$arg" in
    --arm64) mode=arm64 ;;
    --sanitize) mode=asan ;;
    -h|--help) usage; exit 0 ;;
    *) echo "convert-test.sh: unknown argument: $arg" >&2; usage >&2; exit 2 ;;
  esac
done

apt_updated=0
apt_install() {
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  if [ "$apt_updated" -eq 0 ]; then $sudo apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@"
}
need() {  # need <command> <debian package>
  if command -v "$1" >/dev/null 2>&1; then return 0; fi
  echo "convert-test.sh: '$1' not found, installing Debian package $2" >&2
  apt_install "$2"
}
need cmake cmake
need make make
jobs="$(nproc 2>/dev/null || echo 2)"

# run <label> <env assignments...> -- <command...>: runs, prints its output, fails loudly.
run() {
  local label="$1"; shift
  echo "--- $label"
  local status=0
  env "$@" || status=$?
  if [ "$status" -ne 0 ]; then echo "convert-test.sh: $label failed (exit $status)" >&2; exit "$status"; fi
}

start=$(date +%s.%N)
unset BATCHNORM_SIMD BN_TEST_EXPECT_SIMD BN_TEST_EXPECT_CONVERT
case "$mode" in
  native)
    need g++ g++
    cmake -S "$ROOT" -B "$ROOT/build-native" -DBN_BUILD_NATIVE_TESTS=ON -DCMAKE_BUILD_TYPE=Release -DBN_SANITIZE=OFF >/dev/null
    cmake --build "$ROOT/build-native" --target bn_convert_test -j "$jobs"
    bin="$ROOT/build-native/bn_convert_test"
    run "exhaustive, detected level" "$bin"
    levels="$(BN_CONVERT_STRIDE=65536 "$bin" | sed -n 's/^tables tested: //p')"
    if [[ " $levels " == *" avx2 "* ]]; then
      run "BATCHNORM_SIMD=avx2" BATCHNORM_SIMD=avx2 BN_TEST_EXPECT_SIMD=avx2 BN_TEST_EXPECT_CONVERT=avx2 BN_CONVERT_STRIDE=4096 "$bin"
    fi
    run "BATCHNORM_SIMD=scalar" BATCHNORM_SIMD=scalar BN_TEST_EXPECT_SIMD=scalar BN_TEST_EXPECT_CONVERT=scalar BN_CONVERT_STRIDE=4096 "$bin"
    need qemu-x86_64 qemu-user
    run "qemu-x86_64 -cpu Nehalem" OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}" BN_TEST_EXPECT_SIMD=scalar \
      BN_TEST_EXPECT_CONVERT=scalar BN_CONVERT_STRIDE=4096 qemu-x86_64 -cpu Nehalem "$bin"
    ;;
  asan)
    need g++ g++
    cmake -S "$ROOT" -B "$ROOT/build-asan" -DBN_BUILD_NATIVE_TESTS=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBN_SANITIZE=ON >/dev/null
    cmake --build "$ROOT/build-asan" --target bn_convert_test -j "$jobs"
    run "ASan + UBSan" ASAN_OPTIONS="detect_leaks=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}" \
      UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}" BN_CONVERT_STRIDE=1024 \
      "$ROOT/build-asan/bn_convert_test"
    ;;
  arm64)
    TRIPLE=aarch64-linux-gnu
    SYSROOT=/usr/$TRIPLE
    need "$TRIPLE-g++" "g++-$TRIPLE"
    need qemu-aarch64 qemu-user
    if [ ! -e "$SYSROOT/lib/libgomp.so.1" ]; then apt_install libgomp1-arm64-cross; fi
    cmake -S "$ROOT" -B "$ROOT/build-arm64" -DCMAKE_TOOLCHAIN_FILE="$ROOT/cmake/toolchain-aarch64.cmake" \
      -DCMAKE_BUILD_TYPE=Release -DBN_BUILD_NATIVE_TESTS=ON -DBN_SANITIZE=OFF >/dev/null
    cmake --build "$ROOT/build-arm64" --target bn_convert_test -j "$jobs"
    # Passive OpenMP waits: spinning threads are expensive under emulation on a busy machine.
    run "arm64 NEON under qemu-aarch64" OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}" BN_TEST_EXPECT_SIMD=neon \
      BN_TEST_EXPECT_CONVERT=neon BN_CONVERT_STRIDE="${BN_CONVERT_STRIDE:-16}" \
      qemu-aarch64 -L "$SYSROOT" "$ROOT/build-arm64/bn_convert_test"
    ;;
esac
end=$(date +%s.%N)
awk -v m="$mode" -v s="$start" -v e="$end" 'BEGIN { printf "convert-test.sh (%s): ok in %.1f s (build + runs)\n", m, e - s }'
