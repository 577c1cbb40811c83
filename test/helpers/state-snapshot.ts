// Snapshot and compare everything a BatchNorm layer carries: parameters, gradients, running
// statistics, the batch counter, the mode, and what backward would differentiate (the saved
// forward, a private field: its identity and the contents of every typed array it holds).
// Typed arrays are compared bitwise (byte for byte), so NaN payloads and -0 count.
import { expect } from 'chai';
import type { BatchNorm } from '../../lib';

type AnyTyped = Float32Array | Float64Array | BigInt64Array;

export interface LayerSnapshot {
  weight: Float32Array | Float64Array | null;
  bias: Float32Array | Float64Array | null;
  runningMean: Float32Array | Float64Array | null;
  runningVar: Float32Array | Float64Array | null;
  gradWeight: Float32Array | Float64Array | null;
  gradBias: Float32Array | Float64Array | null;
  numBatchesTracked: number;
  training: boolean;
  /** The saved-forward object itself (identity) and a copy of every typed array in it. */
  saved: unknown;
  savedArrays: Record<string, AnyTyped | null>;
  /** The layer's own arrays (identity: a call must not replace them). */
  refs: Array<unknown>;
}

function copy<T extends AnyTyped | null>(a: T): T {
  return (a === null ? null : a.slice()) as T;
}

function savedOf(layer: BatchNorm): Record<string, unknown> | null {
  return ((layer as unknown as { saved: Record<string, unknown> | null }).saved) ?? null;
}

function savedArrays(layer: BatchNorm): Record<string, AnyTyped | null> {
  const s = savedOf(layer);
  const out: Record<string, AnyTyped | null> = {};
  if (!s) return out;
  for (const [k, v] of Object.entries(s)) {
    if (v instanceof Float32Array || v instanceof Float64Array || v instanceof BigInt64Array) out[k] = v.slice();
    else if (v === null) out[k] = null;
  }
  return out;
}

export function snapshot(layer: BatchNorm): LayerSnapshot {
  return {
    weight: copy(layer.weight),
    bias: copy(layer.bias),
    runningMean: copy(layer.runningMean),
    runningVar: copy(layer.runningVar),
    gradWeight: copy(layer.gradWeight),
    gradBias: copy(layer.gradBias),
    numBatchesTracked: layer.numBatchesTracked,
    training: layer.training,
    saved: savedOf(layer),
    savedArrays: savedArrays(layer),
    refs: [layer.weight, layer.bias, layer.runningMean, layer.runningVar, layer.gradWeight, layer.gradBias],
  };
}

function bytes(a: AnyTyped): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/** True when a and b have the same type, length and bytes. */
export function bitwiseEqual(a: AnyTyped | null | undefined, b: AnyTyped | null | undefined): boolean {
  if (a === null || a === undefined || b === null || b === undefined) return a === b;
  if (a.constructor !== b.constructor || a.length !== b.length) return false;
  const x = bytes(a);
  const y = bytes(b);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}

/** Asserts two arrays are bitwise equal, with the first differing element in the message. */
export function expectBitwiseEqual(actual: AnyTyped | null | undefined, expected: AnyTyped | null | undefined, what: string): void {
  if (bitwiseEqual(actual, expected)) return;
  if (!actual || !expected) expect.fail(`${what}: ${actual ? 'an array' : String(actual)} vs ${expected ? 'an array' : String(expected)}`);
  if (actual.constructor !== expected.constructor || actual.length !== expected.length) {
    expect.fail(`${what}: ${actual.constructor.name}(${actual.length}) vs ${expected.constructor.name}(${expected.length})`);
  }
  for (let i = 0; i < actual.length; i++) {
    if (!bitwiseEqual(actual.subarray(i, i + 1), expected.subarray(i, i + 1))) {
      expect.fail(`${what}: element ${i} is ${String(actual[i])}, expected ${String(expected[i])} (bitwise)`);
    }
  }
}

const FIELDS = ['weight', 'bias', 'runningMean', 'runningVar', 'gradWeight', 'gradBias'] as const;

/** Asserts the layer's whole state is exactly what `before` recorded. */
export function expectUnchanged(layer: BatchNorm, before: LayerSnapshot, context = ''): void {
  const at = context ? ` (${context})` : '';
  const now = snapshot(layer);
  for (const f of FIELDS) expectBitwiseEqual(now[f], before[f], `${f}${at}`);
  expect(now.numBatchesTracked, `numBatchesTracked${at}`).to.equal(before.numBatchesTracked);
  expect(now.training, `training${at}`).to.equal(before.training);
  expect(now.saved === before.saved, `the saved forward was replaced${at}`).to.equal(true);
  expect(Object.keys(now.savedArrays), `saved forward fields${at}`).to.deep.equal(Object.keys(before.savedArrays));
  for (const k of Object.keys(before.savedArrays)) {
    expectBitwiseEqual(now.savedArrays[k], before.savedArrays[k], `saved.${k}${at}`);
  }
  now.refs.forEach((r, i) => expect(r === before.refs[i], `${FIELDS[i]} array identity${at}`).to.equal(true));
}

/** Asserts two layers (e.g. one driven async, a twin driven sync) hold bitwise-equal state. */
export function expectSameState(a: BatchNorm, b: BatchNorm, context = ''): void {
  const at = context ? ` (${context})` : '';
  for (const f of FIELDS) expectBitwiseEqual(a[f], b[f], `${f}${at}`);
  expect(a.numBatchesTracked, `numBatchesTracked${at}`).to.equal(b.numBatchesTracked);
  const sa = savedArrays(a);
  const sb = savedArrays(b);
  expect(Object.keys(sa), `saved forward fields${at}`).to.deep.equal(Object.keys(sb));
  for (const k of Object.keys(sa)) expectBitwiseEqual(sa[k], sb[k], `saved.${k}${at}`);
}
