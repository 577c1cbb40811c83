#!/usr/bin/env bash
# Builds the binaries the package ships (`npm run prebuild`), into the layout lib/load.ts and
# node-gyp-build both find:
#
#   prebuilds/linux-x64/node-batchnorm.node     baseline x86-64 + AVX2/AVX-512 TUs chosen at run time
#   prebuilds/linux-x64/libgomp.so.1            the OpenMP runtime, found through RUNPATH $ORIGIN
#   prebuilds/linux-arm64/node-batchnorm.node   cross-compiled with g++-aarch64-linux-gnu (NEON)
#   prebuilds/linux-arm64/libgomp.so.1
#   prebuilds/<target>/build-info.json          compiler, glibc floor, hash of the native sources
#
# Usage: scripts/prebuild.sh [linux-x64] [linux-arm64]     (default: both)
#        scripts/prebuild.sh --source-hash                  (prints the hash of the native sources)
# Needs cmake, ninja or make, g++ with OpenMP, and for arm64 Debian's g++-aarch64-linux-gnu
# (which brings libgomp1-arm64-cross). Builds in build-prebuild/<target>/ (never in build/, the
# local from-source build), always from scratch. Downloads nothing: Node-API headers come from
# node-api-headers, node-addon-api from node_modules.
#
# libstdc++ is linked statically (its symbols stay hidden: --exclude-libs,ALL) and --gc-sections
# drops the parts of it the addon never calls (std::random_device would need glibc 2.36's
# arc4random); libgcc_s stays shared (a static unwinder would need glibc 2.35's _dl_find_object).
# So the binary needs glibc >= 2.32, libgcc_s.so.1 (present wherever Node runs) and the bundled
# libgomp (glibc >= 2.34 for Debian 12's copy). What each binary needs is checked below and the
# script fails if anything else shows up.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then targets=(linux-x64 linux-arm64); fi

cmakejs="$root/node_modules/cmake-js/bin/cmake-js"
[ -f "$cmakejs" ] || { echo "prebuild: $cmakejs not found; run npm install first" >&2; exit 1; }
jobs=$(nproc 2>/dev/null || echo 2)

# Hash of the sources that go into the binary (native/core, native/addon, CMakeLists.txt): computed
# by sourceHash() in scripts/install.js, its one home (the install hook compares it with
# build-info.json to catch a stale prebuild; so do the tests and pack-smoke, through
# `scripts/prebuild.sh --source-hash`).
source_hash() {
  node -e 'process.stdout.write(require(process.argv[1]).sourceHash() + "\n")' "$root/scripts/install.js"
}

# Highest GLIBC_x.y symbol version an ELF file needs: the oldest glibc it runs on.
glibc_floor() {
  "$readelf" -W --version-info "$@" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -t. -k1,1n -k2,2n -k3,3n | tail -1
}

fail() { echo "prebuild: $*" >&2; exit 1; }

if [ "${1:-}" = --source-hash ]; then source_hash; exit 0; fi

for target in "${targets[@]}"; do
  out="$root/build-prebuild/$target"
  dest="$root/prebuilds/$target"
  cmake_args=(--CDCMAKE_BUILD_TYPE=Release "--CDCMAKE_SHARED_LINKER_FLAGS=-static-libstdc++ -Wl,--gc-sections")
  case "$target" in
    linux-x64)
      [ "$(uname -m)" = x86_64 ] || fail "linux-x64 is only built on an x86_64 host"
      cxx=g++; readelf=readelf; strip=strip; machine='Advanced Micro Devices X86-64'
      ;;
    linux-arm64)
      if [ "$(uname -m)" = aarch64 ]; then
        cxx=g++; readelf=readelf; strip=strip
      else
        command -v aarch64-linux-gnu-g++ >/dev/null || fail "aarch64-linux-gnu-g++ not found (apt-get install g++-aarch64-linux-gnu)"
        cxx=aarch64-linux-gnu-g++; readelf=aarch64-linux-gnu-readelf; strip=aarch64-linux-gnu-strip
        cmake_args+=("--CDCMAKE_TOOLCHAIN_FILE=$root/cmake/toolchain-aarch64-addon.cmake")
      fi
      machine='AArch64'
      ;;
    *) fail "unknown target '$target' (known: linux-x64, linux-arm64)" ;;
  esac

  echo "== prebuild $target (compiler: $($cxx --version | head -1))"
  rm -rf "$out"
  mkdir -p "$root/build-prebuild"
  node "$cmakejs" build --out "$out" --target batchnorm --parallel "$jobs" "${cmake_args[@]}" >"$out.log" 2>&1 \
    || { tail -40 "$out.log" >&2; fail "build of $target failed (full log: $out.log)"; }
  built="$out/Release/batchnorm.node"
  [ -f "$built" ] || fail "$built was not produced (log: $out.log)"

  rm -rf "$dest"
  mkdir -p "$dest"
  cp "$built" "$dest/node-batchnorm.node"
  "$strip" --strip-unneeded "$dest/node-batchnorm.node"
  gomp=$($cxx -print-file-name=libgomp.so.1)
  [ -f "$gomp" ] || fail "the OpenMP runtime of $cxx (libgomp.so.1) was not found"
  cp "$(readlink -f "$gomp")" "$dest/libgomp.so.1"
  chmod 0644 "$dest/libgomp.so.1"

  # ---- What the binary needs, and nothing else ----
  node_bin="$dest/node-batchnorm.node"
  got_machine=$("$readelf" -h "$node_bin" | sed -n 's/^ *Machine: *//p')
  [ "$got_machine" = "$machine" ] || fail "$node_bin is for '$got_machine', expected '$machine'"
  runpath=$("$readelf" -d "$node_bin" | sed -n 's/.*(RUNPATH).*\[\(.*\)\]/\1/p')
  [ "$runpath" = '$ORIGIN' ] || fail "$node_bin has RUNPATH '$runpath', expected \$ORIGIN"
  needed=$("$readelf" -d "$node_bin" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | sort | tr '\n' ' ')
  for lib in $needed; do
    case "$lib" in
      libgomp.so.1|libgcc_s.so.1|libc.so.6|libm.so.6|libpthread.so.0|libdl.so.2|librt.so.1|ld-linux-*) ;;
      *) fail "$node_bin needs $lib, which is neither glibc, libgcc_s nor the bundled libgomp" ;;
    esac
  done
  case " $needed" in *" libgomp.so.1 "*) ;; *) fail "$node_bin does not need libgomp.so.1: was OpenMP linked statically?" ;; esac
  if "$readelf" -W --version-info "$node_bin" | grep -q 'GLIBCXX_\|CXXABI_'; then
    fail "$node_bin still needs libstdc++ symbols (GLIBCXX/CXXABI); -static-libstdc++ was not applied"
  fi
  gomp_needed=$("$readelf" -d "$dest/libgomp.so.1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')
  glibc=$(glibc_floor "$node_bin" "$dest/libgomp.so.1")
  size=$(du -k "$node_bin" | cut -f1)

  if [ "$target" = linux-x64 ]; then
    # Loads and runs here (the smoke tests load it again from the packed tarball).
    level=$(node -e "const b = require(process.argv[1]); process.stdout.write(b.simdLevel() + ' of ' + b.supportedSimdLevels().join(','))" "$node_bin") \
      || fail "$node_bin does not load on this host"
    echo "   loads here: simd $level"
  elif [ "$target" = linux-arm64 ] && [ "$(uname -m)" != aarch64 ] && command -v qemu-aarch64 >/dev/null; then
    # No arm64 Node here, but the dynamic loader can still be asked under qemu-aarch64: dlopen the
    # addon (lazy binding: the napi_* symbols Node would provide stay unresolved), find its entry
    # point, and report which libgomp was mapped. The NEON kernels themselves are checked by the
    # native core test under qemu-aarch64 (scripts/arm64-test.sh).
    probe_c="$out/dlopen_probe.c"
    cat >"$probe_c" <<'PROBE'
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>
int main(int argc, char **argv) {
  void *h = dlopen(argv[1], RTLD_LAZY | RTLD_LOCAL);
  if (!h) { fprintf(stderr, "dlopen: %s\n", dlerror()); return 1; }
  if (!dlsym(h, "napi_register_module_v1")) { fprintf(stderr, "no napi_register_module_v1\n"); return 2; }
  FILE *f = fopen("/proc/self/maps", "r");
  char line[4096], last[4096] = "";
  while (f && fgets(line, sizeof line, f)) {
    char *p = strchr(line, '/');
    if (p && strstr(p, "libgomp") && strcmp(p, last) != 0) { printf("libgomp mapped from %s", p); strcpy(last, p); }
  }
  return last[0] ? 0 : 3;
}
PROBE
    aarch64-linux-gnu-gcc -O1 -o "$out/dlopen_probe" "$probe_c" -ldl
    mapped=$(qemu-aarch64 -L "/usr/aarch64-linux-gnu" "$out/dlopen_probe" "$node_bin") \
      || fail "$node_bin does not dlopen under qemu-aarch64"
    case "$mapped" in
      *"$dest/libgomp.so.1"*) echo "   dlopens under qemu-aarch64; $mapped" ;;
      *) fail "under qemu-aarch64 the addon did not map the bundled libgomp: $mapped" ;;
    esac
  fi

  node -e '
    const [file, target, compiler, glibc, hash, needed] = process.argv.slice(1);
    require("fs").writeFileSync(file, JSON.stringify({ target, compiler, glibc, needed: needed.trim().split(" "),
      sourceHash: hash, builtAt: new Date().toISOString() }, null, 2) + "\n");' \
    "$dest/build-info.json" "$target" "$($cxx --version | head -1)" "$glibc" "$(source_hash)" "$needed"

  echo "   $node_bin: $machine, ${size} KiB, RUNPATH \$ORIGIN, NEEDED: $needed"
  echo "   libgomp.so.1 (bundled, from $(readlink -f "$gomp")) NEEDED: $gomp_needed"
  echo "   oldest glibc: $glibc"
done
