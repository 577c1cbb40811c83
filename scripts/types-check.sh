#!/usr/bin/env bash
# CI check of the TypeScript declarations as a consumer gets them: `npm pack`, install the tarball
# into fresh folders (offline, empty npm cache, install scripts off: only the .d.ts files matter
# here), and compile test/shipped/consumer/use-api.ts there with strict settings and
# skipLibCheck: false, which also checks every shipped .d.ts it reaches:
#
#   nodenext  module/moduleResolution nodenext: use-api.mts (ESM) and use-api.cts (CommonJS)
#   bundler   module esnext, moduleResolution bundler: use-api.ts
#
# each once without @types/node (lib ES2022 only: the declarations must not need Node's types) and
# once with it ("types": ["node"], the repository's copy). use-api.ts asserts at the type level
# that no export is or leaks `any` and that SimdLevelName is exactly its four levels: a declaration
# that fails to resolve turns into `any` under skipLibCheck: true without a word, so a fifth build
# (bundler, without @types/node) uses skipLibCheck: true and relies on those assertions alone.
# TypeScript is the repository's own (node_modules/typescript), so nothing is downloaded.
#
# Usage: scripts/types-check.sh                  pack this checkout and check it
#        scripts/types-check.sh --tarball F.tgz  check an existing tarball (e.g. of an older commit)
# Environment: TYPES_CHECK_KEEP=1 keeps the temporary folder.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
tsc="$root/node_modules/typescript/bin/tsc"
[ -f "$tsc" ] || { echo "types-check: $tsc not found; run npm install first" >&2; exit 1; }
for dep in @types/node undici-types; do
  [ -d "$root/node_modules/$dep" ] || { echo "types-check: node_modules/$dep not found; run npm install first" >&2; exit 1; }
done

tgz=
case "${1:-}" in
  --tarball) tgz=$(realpath "${2:?--tarball needs a file}") ;;
  '') ;;
  *) echo "types-check: unknown argument '$1' (usage: scripts/types-check.sh [--tarball F.tgz])" >&2; exit 2 ;;
esac

work=$(mktemp -d "${TMPDIR:-/tmp}/bn-types-check.XXXXXX")
cleanup() { if [ "${TYPES_CHECK_KEEP:-0}" = 1 ]; then echo "kept $work"; else rm -rf "$work"; fi; }
trap cleanup EXIT

if [ -z "$tgz" ]; then
  npm pack --pack-destination "$work" >"$work/pack.log" 2>&1 || { cat "$work/pack.log" >&2; echo "types-check: npm pack failed" >&2; exit 1; }
  tgz=$(ls "$work"/node-batchnorm-*.tgz | head -1)
fi
echo "types-check: $(basename "$tgz"), TypeScript $(node "$tsc" -v | sed 's/^Version //')"

# app <dir> <with-node-types 0|1>: a fresh project with the tarball installed and the consumer files.
app() {
  local dir=$1 node_types=$2
  mkdir -p "$dir"
  printf '{ "name": "bn-types-consumer", "version": "1.0.0", "private": true }\n' >"$dir/package.json"
  (cd "$dir" && env HOME="$work/home" npm install --offline --cache "$work/npm-cache" --ignore-scripts --omit=optional \
      --no-audit --no-fund --loglevel=error "$tgz") >"$dir/install.log" 2>&1 \
    || { cat "$dir/install.log" >&2; echo "types-check: npm install of the tarball failed" >&2; exit 1; }
  if [ "$node_types" = 1 ]; then
    mkdir -p "$dir/node_modules/@types"
    cp -r "$root/node_modules/@types/node" "$dir/node_modules/@types/node"
    cp -r "$root/node_modules/undici-types" "$dir/node_modules/undici-types"
  fi
  for ext in mts cts ts; do cp "$root/test/shipped/consumer/use-api.ts" "$dir/use-api.$ext"; done
  local types='[]'
  [ "$node_types" = 1 ] && types='["node"]'
  local common='"strict": true, "skipLibCheck": false, "noEmit": true, "target": "ES2022", "lib": ["ES2022"],
    "exactOptionalPropertyTypes": true, "noImplicitOverride": true, "forceConsistentCasingInFileNames": true,
    "types": '"$types"
  printf '{ "compilerOptions": { %s, "module": "nodenext", "moduleResolution": "nodenext" },\n  "files": ["use-api.mts", "use-api.cts"] }\n' \
    "$common" >"$dir/tsconfig.nodenext.json"
  printf '{ "compilerOptions": { %s, "module": "esnext", "moduleResolution": "bundler" },\n  "files": ["use-api.ts"] }\n' \
    "$common" >"$dir/tsconfig.bundler.json"
  # The common lenient setting: a declaration that fails to resolve is not reported, its types turn
  # into any, and only use-api.ts's assertions can tell.
  printf '{ "extends": "./tsconfig.bundler.json", "compilerOptions": { "skipLibCheck": true } }\n' >"$dir/tsconfig.bundler-skiplibcheck.json"
}

failed=()
total=0
for node_types in 0 1; do
  dir="$work/app-node-types-$node_types"
  app "$dir" "$node_types"
  label_types=$([ "$node_types" = 1 ] && echo "with @types/node" || echo "without @types/node")
  configs="nodenext bundler"
  [ "$node_types" = 0 ] && configs="$configs bundler-skiplibcheck"
  for config in $configs; do
    case $config in
      nodenext) label="nodenext (use-api.mts + use-api.cts), $label_types" ;;
      bundler) label="bundler (use-api.ts), $label_types" ;;
      bundler-skiplibcheck) label="bundler (use-api.ts), $label_types, skipLibCheck true" ;;
    esac
    total=$((total + 1))
    if (cd "$dir" && node "$tsc" -p "tsconfig.$config.json") >"$dir/tsc-$config.log" 2>&1; then
      echo "  PASS $label"
    else
      echo "  FAIL $label:"
      sed 's/^/      /' "$dir/tsc-$config.log" | head -40
      failed+=("$label")
    fi
  done
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "types-check: FAILED: ${#failed[@]} of $total consumer builds" >&2
  exit 1
fi
echo "types-check: passed ($total consumer builds)"
