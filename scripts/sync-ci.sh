#!/usr/bin/env bash
# SyncBatchNorm checks beyond `npm test` (issue 15), for CI: the demo as users run it
# (`npm run demo -- --workers 2`), the sync benchmark's quick mode (so it never rots), and a soak of
# the Gloo fault cases: a rank killed at each moment (right after the rendezvous, during it, at a
# random point of training, between the two all-gathers of an exchange, between forward and
# backward), each run checking that every other rank gets a coded error in time, never a hang
# (test/sync-fault-loop.ts; a hang dumps the ranks' stacks with gdb when it is installed).
#   bash scripts/sync-ci.sh [runs per kill moment, default 30]
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-30}"

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
npm run demo -- --workers 2 --steps 200 --checkpoints 4 --sweep none --quiet --out "$out" | tee "$out/demo.log"
grep -q 'Every worker ends with the same parameters (bitwise): yes' "$out/demo.log"
grep -q 'Data-parallel: the BN network on 2 worker threads with SyncBatchNorm1d' "$out/demo.log"

npm run bench:sync -- --quick

for moment in joined connect random header forward; do
  node dist/test/sync-fault-loop.js --variant "$moment" --n "$runs" --out "$out/hangs"
done
