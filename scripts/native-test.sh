#!/usr/bin/env bash
# Build and run the native core test (bn_core_test, native/test/*.cc): no Node needed.
#
#   scripts/native-test.sh                 Release build in build-native/, run the test
#   scripts/native-test.sh --sanitize      ASan + UBSan build (RelWithDebInfo) in build-asan/, run it
#   scripts/native-test.sh --qemu-nehalem  Release build, run under `qemu-x86_64 -cpu Nehalem` (no AVX):
#                                          the dispatcher must pick scalar and never execute AVX
#
# Installs cmake / g++ / qemu-user with apt-get only when missing. Idempotent; works from a clean
# clone (build directories are created or reused).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

usage() { sed -n '2,11p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

mode=release
for arg in "$@"; do
  case "$arg" in
    --sanitize) mode=asan ;;
    --qemu-nehalem) mode=nehalem ;;
    -h|--help) usage; exit 0 ;;
    *) echo "native-test.sh: unknown argument: $arg" >&2; usage >&2; exit 2 ;;
  esac
done

apt_updated=0
# need <command> <debian package>: install the package if the command is missing.
need() {
  if command -v "$1" >/dev/null 2>&1; then return 0; fi
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  echo "native-test.sh: '$1' not found, installing Debian package $2" >&2
  if [ "$apt_updated" -eq 0 ]; then $sudo apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$2"
}

need cmake cmake
need g++ g++
need make make

jobs="$(nproc 2>/dev/null || echo 2)"

build() {  # build <dir> <cmake args...>
  local dir="$1"; shift
  cmake -S "$ROOT" -B "$ROOT/$dir" -DBN_BUILD_NATIVE_TESTS=ON "$@" >/dev/null
  cmake --build "$ROOT/$dir" --target bn_core_test -j "$jobs"
}

# The run must see the real detector, not a level forced from the caller's environment.
unset BATCHNORM_SIMD

start=$(date +%s.%N)
case "$mode" in
  release)
    build build-native -DCMAKE_BUILD_TYPE=Release -DBN_SANITIZE=OFF
    "$ROOT/build-native/bn_core_test"
    ;;
  asan)
    build build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBN_SANITIZE=ON
    supp="$ROOT/native/test/lsan.supp"
    export ASAN_OPTIONS="detect_leaks=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
    export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
    if [ -f "$supp" ]; then
      export LSAN_OPTIONS="suppressions=$supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
    fi
    "$ROOT/build-asan/bn_core_test"
    ;;
  nehalem)
    need qemu-x86_64 qemu-user
    build build-native -DCMAKE_BUILD_TYPE=Release -DBN_SANITIZE=OFF
    # Nehalem: SSE4.2, no AVX/AVX2/FMA/AVX-512, no OSXSAVE. Any AVX instruction would SIGILL here.
    # BN_TEST_EXPECT_SIMD makes "the detector chose scalar" a checked test.
    out="$(mktemp)"
    trap 'rm -f "$out"' EXIT
    status=0
    # Passive OpenMP waits: spinning threads are expensive under emulation on a busy machine.
    OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}" BN_TEST_EXPECT_SIMD=scalar qemu-x86_64 -cpu Nehalem "$ROOT/build-native/bn_core_test" | tee "$out" || status=$?
    if [ "$status" -ne 0 ]; then
      echo "native-test.sh: bn_core_test under qemu -cpu Nehalem failed (exit $status)" >&2
      exit "$status"
    fi
    grep -q '^simd level: scalar ' "$out" || { echo "native-test.sh: expected 'simd level: scalar'" >&2; exit 1; }
    ;;
esac
end=$(date +%s.%N)
awk -v m="$mode" -v s="$start" -v e="$end" 'BEGIN { printf "native-test.sh (%s): ok in %.1f s (build + run)\n", m, e - s }'
