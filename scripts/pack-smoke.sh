#!/usr/bin/env bash
# CI check of the package as users get it: `npm pack`, then install the tarball into a fresh
# folder with no compiler, cmake, make or ninja on PATH, offline and with an EMPTY npm cache (so
# nothing can come from the network or from a cache CI happened to fill), and run the smoke test
# (test/smoke/) there through both require and import:
#   1. with each SIMD level this CPU supports forced by BATCHNORM_SIMD (scalar, avx2, avx512);
#   2. with the system libgomp hidden (private mount namespace), so the bundled copy must load;
#   3. under qemu-x86_64 -cpu Nehalem (no AVX): detection must pick scalar and nothing may SIGILL;
#      and under -cpu qemu64 (plain x86-64 baseline);
#   4. installed again without its prebuilds (a platform none fits): the install hook builds from
#      the packed sources alone (build tools linked from the repo), and the smoke test passes.
# The tarball holds only what users need (an allow-list below) and the sources its maps name.
# Before that, test/shipped/prebuilds.check.ts checks the prebuilt binaries themselves (mocha).
# Prerequisites: `npm ci` (or npm install) and `npm run prebuild` in the repo; qemu-user for 3.
#
# Environment:
#   PACK_SMOKE_KEEP=1                keep the temporary folder
#   PACK_SMOKE_REQUIRE_ALL_LEVELS=1  fail (instead of reporting NOT RUN) when this CPU lacks a level
#   PACK_SMOKE_NO_QEMU=1             skip 3 (reported as NOT RUN); otherwise a missing qemu fails
#   PACK_SMOKE_NO_NAMESPACE=1        skip 2 (reported as NOT RUN); otherwise no namespace fails
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
node_exe=$(command -v node)
npm_exe=$(command -v npm)
work=$(mktemp -d "${TMPDIR:-/tmp}/bn-pack-smoke.XXXXXX")
cleanup() { if [ "${PACK_SMOKE_KEEP:-0}" = 1 ]; then echo "kept $work"; else rm -rf "$work"; fi; }
trap cleanup EXIT

step() { echo; echo "== $*"; }
fail() { echo "pack-smoke: FAILED: $*" >&2; exit 1; }
not_run=()

case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) target=linux-x64 ;;
  Linux-aarch64) target=linux-arm64 ;;
  *) fail "pack-smoke runs on linux x86_64 or aarch64 (this is $(uname -s)-$(uname -m))" ;;
esac

# ---- 0. the prebuilt binaries exist and were built from these sources ----
step "prebuilds"
hash=$(bash scripts/prebuild.sh --source-hash)
for t in linux-x64 linux-arm64; do
  for f in node-batchnorm.node libgomp.so.1 build-info.json; do
    [ -f "prebuilds/$t/$f" ] || fail "prebuilds/$t/$f is missing: run \`npm run prebuild\` first"
  done
  built_from=$(node -p "require('./prebuilds/$t/build-info.json').sourceHash")
  [ "$built_from" = "$hash" ] || fail "prebuilds/$t was built from other sources than native/ now has: run \`npm run prebuild\`"
  echo "prebuilds/$t: $(node -p "const i = require('./prebuilds/$t/build-info.json'); i.compiler + ', glibc >= ' + i.glibc")"
done

# The same and more (ELF headers, glibc floor, loading with the bundled libgomp, also with the system
# copy hidden) as mocha checks; they fail, never skip, on a missing or stale prebuild.
step "shipped-prebuild checks (test/shipped/prebuilds.check.ts)"
{ node_modules/.bin/tsc -p tsconfig.json && node scripts/write-esm-wrapper.js; } || fail "the TypeScript build failed"
node_modules/.bin/mocha --no-config --timeout 120000 dist/test/shipped/prebuilds.check.js || fail "the shipped-prebuild checks failed"

# ---- 1. pack (runs "prepare": the TypeScript build) ----
step "npm pack"
npm pack --pack-destination "$work" >"$work/pack.log" 2>&1 || { cat "$work/pack.log"; fail "npm pack failed"; }
tgz=$(ls "$work"/node-batchnorm-*.tgz 2>/dev/null | head -1)
[ -n "$tgz" ] || { cat "$work/pack.log"; fail "npm pack did not produce a tarball"; }
tar -tzf "$tgz" | sort >"$work/contents.txt"
echo "$(basename "$tgz"): $(wc -l <"$work/contents.txt") files, $(du -k "$tgz" | cut -f1) KiB"
for f in package.json README.md dist/lib/index.js dist/lib/index.mjs dist/lib/index.d.ts dist/lib/binding.d.ts lib/index.ts \
    scripts/install.js CMakeLists.txt native/core/forward_training.cc native/addon/addon.cc \
    prebuilds/linux-x64/node-batchnorm.node prebuilds/linux-x64/libgomp.so.1 \
    prebuilds/linux-arm64/node-batchnorm.node prebuilds/linux-arm64/libgomp.so.1; do
  grep -qx "package/$f" "$work/contents.txt" || fail "the tarball lacks $f"
done
# Only what a user needs: the runtime, the sources a from-source build and the source maps need.
# No tests, benchmarks (bench_copy* included), examples, build output or dev scripts.
if grep -vE '^package/(package\.json|README\.md|CMakeLists\.txt|scripts/install\.js|dist/lib/(sync/)?[^/]+|lib/(sync/)?[^/]+\.ts|native/(core|addon|gloo)/[^/]+|prebuilds/linux-(x64|arm64)/[^/]+)$' \
    "$work/contents.txt" | head -5 | grep .; then
  fail "the tarball contains files a user does not need (above; see \"files\" in package.json)"
fi
if grep -i 'bench' "$work/contents.txt" | grep .; then fail "the tarball contains benchmark files (above)"; fi
# Every source a shipped source map names is shipped too.
mkdir -p "$work/unpacked"
tar -xzf "$tgz" -C "$work/unpacked"
node -e '
  const fs = require("fs"), path = require("path");
  const pkg = process.argv[1], missing = [];
  let maps = 0;
  for (const f of fs.readdirSync(path.join(pkg, "dist/lib")).filter((f) => f.endsWith(".map"))) {
    maps++;
    const map = JSON.parse(fs.readFileSync(path.join(pkg, "dist/lib", f), "utf8"));
    for (const src of map.sources) {
      const p = path.resolve(pkg, "dist/lib", map.sourceRoot || "", src);
      if (!p.startsWith(pkg + path.sep) || !fs.existsSync(p)) missing.push(`dist/lib/${f} -> ${src}`);
    }
  }
  if (maps === 0) { console.error("no source maps in dist/lib (expected one per module)"); process.exit(1); }
  if (missing.length) { console.error("source maps name files the package lacks:\n  " + missing.join("\n  ")); process.exit(1); }
  console.log(`${maps} source maps; every source they name is in the package`);' "$work/unpacked/package" \
  || fail "the source maps do not match the shipped sources"

# ---- 2. a PATH with node, npm and sh only ----
step "tool-less PATH"
bin="$work/bin"
mkdir -p "$bin"
ln -s "$node_exe" "$bin/node"
ln -s "$npm_exe" "$bin/npm"
ln -s "$(command -v sh)" "$bin/sh"   # npm runs lifecycle scripts with sh
for tool in cc gcc g++ c++ clang clang++ cmake make gmake ninja ld; do
  if PATH="$bin" command -v "$tool" >/dev/null 2>&1; then fail "$tool is still on the stripped PATH"; fi
done
echo "PATH=$bin: $(ls "$bin" | tr '\n' ' ')(no cc, g++, cmake, make, ninja, ld)"

# ---- 3. offline install with an empty cache ----
step "npm install --offline (empty cache) of the tarball"
app="$work/app"
mkdir -p "$app"
printf '{ "name": "bn-smoke-app", "version": "1.0.0", "private": true }\n' >"$app/package.json"
(cd "$app" && env -i HOME="$work/home" PATH="$bin" npm install --offline --cache "$work/npm-cache" \
    --no-audit --no-fund --foreground-scripts --loglevel=warn "$tgz") >"$work/install.log" 2>&1 \
  || { cat "$work/install.log"; fail "npm install of the tarball failed"; }
cat "$work/install.log"
pkg="$app/node_modules/node-batchnorm"
grep -q "node-batchnorm: using prebuilt prebuilds/$target/node-batchnorm.node" "$work/install.log" \
  || fail "the install script did not report using the prebuilt binary"
[ ! -e "$pkg/build" ] || fail "the install created $pkg/build: it built from source"
cp test/smoke/smoke-checks.cjs test/smoke/smoke.cjs test/smoke/smoke.mjs "$app/"
# The tests' float64 reference and seeded generator, compiled (the smoke checks require both).
for f in dist/test/helpers/reference.js dist/examples/mnist/rng.js; do
  [ -f "$f" ] || fail "$f is missing: run npm run build:ts first"
  cp "$f" "$app/"
done

# smoke <label> [VAR=value...] [-- program args...]: smoke.cjs and smoke.mjs in the app folder with
# the tool-less PATH; the program before node (qemu, unshare...) must be an absolute path.
smoke() {
  local label=$1; shift
  local vars=() pre=()
  while [ $# -gt 0 ] && [ "$1" != -- ]; do vars+=("$1"); shift; done
  [ $# -gt 0 ] && { shift; pre=("$@"); }
  for entry in smoke.cjs smoke.mjs; do
    (cd "$app" && "${sudo[@]}" /usr/bin/env PATH="$bin" SMOKE_EXPECT_BINDING=prebuild SMOKE_EXPECT_BUNDLED_GOMP=1 "${vars[@]}" \
      "${pre[@]}" "$node_exe" "$entry") || fail "smoke test ($label, $entry)"
  done
}
sudo=()

# ---- 4. each SIMD level ----
step "smoke test at each SIMD level"
supported=$(cd "$app" && PATH="$bin" node -p "require('node-batchnorm').supportedSimdLevels().join(' ')")
echo "this CPU supports: $supported"
if [ "$target" = linux-x64 ]; then levels="scalar avx2 avx512"; else levels="scalar neon"; fi
for level in $levels; do
  if [[ " $supported " == *" $level "* ]]; then
    smoke "BATCHNORM_SIMD=$level" BATCHNORM_SIMD="$level"
  elif [ "${PACK_SMOKE_REQUIRE_ALL_LEVELS:-0}" = 1 ]; then
    fail "this CPU cannot run $level (supported: $supported) and PACK_SMOKE_REQUIRE_ALL_LEVELS=1"
  else
    not_run+=("smoke at $level: this CPU does not support it")
  fi
done

# ---- 5. system libgomp hidden ----
step "smoke test with the system libgomp hidden"
# In a private mount namespace, /dev/null is bind-mounted over every system libgomp.so.1, checked
# with dlopen("libgomp.so.1") failing (process.dlopen of a plain library that did load throws "Module
# did not self-register": that means still visible), then the smoke test runs there.
hide='for f in /usr/lib/*/libgomp.so.1* /lib/*/libgomp.so.1* /usr/lib64/libgomp.so.1* /usr/lib/libgomp.so.1*; do
        if [ -f "$f" ] && [ ! -L "$f" ]; then "$MOUNT" --bind /dev/null "$f" || exit 3; fi; done
      if "$0" -e "try { process.dlopen({ exports: {} }, \"libgomp.so.1\") } catch (e) { process.exit(/self-register/.test(e.message) ? 0 : 1) }" 2>/dev/null; then
        echo "libgomp.so.1 still loads" >&2; exit 3; fi
      echo "(system libgomp hidden: dlopen(\"libgomp.so.1\") fails)"
      exec "$0" "$@"'
unshare_exe=$(command -v unshare || true)
mount_exe=$(command -v mount || true)
ns=()
if [ -n "$unshare_exe" ] && [ -n "$mount_exe" ]; then
  if [ "$(id -u)" = 0 ] && "$unshare_exe" -m true 2>/dev/null; then ns=("$unshare_exe" -m)
  elif command -v sudo >/dev/null && sudo -n "$unshare_exe" -m true 2>/dev/null; then ns=("$unshare_exe" -m); sudo=(sudo -n)
  elif "$unshare_exe" -r -m true 2>/dev/null; then ns=("$unshare_exe" -r -m)
  fi
fi
if [ ${#ns[@]} -gt 0 ]; then
  # node is passed as $0 of the sh script, the smoke file as $1.
  smoke "system libgomp hidden" MOUNT="$mount_exe" -- "${ns[@]}" /bin/sh -c "$hide"
  sudo=()
elif [ "${PACK_SMOKE_NO_NAMESPACE:-0}" = 1 ]; then
  not_run+=("libgomp hidden: no mount namespace (not root, no sudo, no user namespaces)")
else
  fail "cannot make a private mount namespace to hide the system libgomp (need root, sudo or user namespaces; PACK_SMOKE_NO_NAMESPACE=1 to skip)"
fi

# ---- 6. CPUs without AVX, under qemu-user ----
step "smoke test under qemu-x86_64 (CPUs without AVX)"
if [ "$target" != linux-x64 ]; then
  not_run+=("qemu-x86_64 runs: this host is not x86_64")
elif command -v qemu-x86_64 >/dev/null && [ "${PACK_SMOKE_NO_QEMU:-0}" != 1 ]; then
  qemu=$(command -v qemu-x86_64)
  # qemu raises SIGILL for any instruction the CPU model lacks (checked: an AVX instruction under
  # -cpu Nehalem dies with signal 4), so these runs show that nothing outside the per-ISA kernels
  # uses AVX and that detection picks scalar.
  for cpu in Nehalem qemu64; do
    smoke "qemu-x86_64 -cpu $cpu" SMOKE_EXPECT_SIMD=scalar -- "$qemu" -cpu "$cpu"
  done
else
  [ "${PACK_SMOKE_NO_QEMU:-0}" = 1 ] || fail "qemu-x86_64 not found (apt-get install qemu-user; PACK_SMOKE_NO_QEMU=1 to skip)"
  not_run+=("qemu-x86_64 -cpu Nehalem: PACK_SMOKE_NO_QEMU=1")
fi

# ---- 7. no prebuild fits: the packed sources alone build ----
step "build from the packed sources (no prebuild for this platform), smoke test"
# A second install of the tarball, its prebuilds/ removed (as on a platform without one), with the
# build tools (optional dependencies: cmake-js, node-addon-api, node-api-headers) linked from the
# repo's node_modules, offline. `npm rebuild` runs the install hook, which must build from the
# packed files only: nothing from native/test, bench/ or cmake/ is there.
src_app="$work/app-src"
mkdir -p "$src_app"
printf '{ "name": "bn-source-build-app", "version": "1.0.0", "private": true }\n' >"$src_app/package.json"
(cd "$src_app" && env HOME="$work/home" npm install --offline --cache "$work/npm-cache-src" --ignore-scripts --omit=optional \
    --no-audit --no-fund --loglevel=warn "$tgz") >"$work/install-src.log" 2>&1 \
  || { cat "$work/install-src.log"; fail "npm install --ignore-scripts of the tarball failed"; }
src_pkg="$src_app/node_modules/node-batchnorm"
rm -rf "$src_pkg/prebuilds"
for tool in cmake-js node-addon-api node-api-headers; do ln -s "$root/node_modules/$tool" "$src_app/node_modules/$tool"; done
(cd "$src_app" && env HOME="$work/home" npm rebuild node-batchnorm --offline --cache "$work/npm-cache-src" --foreground-scripts \
    --loglevel=warn) >"$work/rebuild.log" 2>&1 || { tail -40 "$work/rebuild.log"; fail "the build from the packed sources failed"; }
grep -q "node-batchnorm: there is no prebuilt binary for $target" "$work/rebuild.log" \
  || { cat "$work/rebuild.log"; fail "the install hook did not report building from source"; }
[ -f "$src_pkg/build/Release/batchnorm.node" ] || fail "the build from the packed sources made no build/Release/batchnorm.node"
[ ! -e "$src_pkg/build/Release/bench_copy.node" ] || fail "the packed build made the benchmark-only bench_copy.node"
echo "built $src_pkg/build/Release/batchnorm.node from the packed sources"
cp test/smoke/smoke-checks.cjs test/smoke/smoke.cjs test/smoke/smoke.mjs \
  dist/test/helpers/reference.js dist/examples/mnist/rng.js "$src_app/"
for entry in smoke.cjs smoke.mjs; do
  (cd "$src_app" && SMOKE_EXPECT_BINDING=build "$node_exe" "$entry") || fail "smoke test (built from the packed sources, $entry)"
done

step "pack-smoke passed"
if [ ${#not_run[@]} -gt 0 ]; then
  echo "NOT RUN:"
  printf '  %s\n' "${not_run[@]}"
fi
