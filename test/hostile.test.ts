// Hostile and edge inputs, case by case: every call either gives the right answer or throws an
// Error subclass with a stable .code and a message naming the argument, what was expected and
// what was received; afterwards the layer (weights, gradients, running statistics, counter,
// saved forward) is exactly as before, and the process is alive.
import { expect } from 'chai';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as bn from '../lib';
import { native } from '../lib/load';
import { Rng, randn, product } from './helpers/random';
import * as ref from './helpers/reference';
import { expectBitwiseEqual, expectUnchanged, snapshot } from './helpers/state-snapshot';
import { expectChildAlive } from './helpers/child';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Loose = any;
type ErrorClass = typeof bn.BatchNormTypeError | typeof bn.BatchNormRangeError | typeof bn.BatchNormError;

/** Calls f, which must throw an instance of `cls` with `code` and a message matching every pattern. */
function expectError(f: () => unknown, cls: ErrorClass | typeof TypeError | typeof RangeError, code: string, patterns: Array<string | RegExp>): Error & { code: string } {
  let err: unknown;
  let threw = false;
  try {
    f();
  } catch (e) {
    threw = true;
    err = e;
  }
  expect(threw, `expected a ${cls.name} with code ${code}, but the call returned`).to.equal(true);
  expect(err, `error class (got ${String(err)})`).to.be.instanceOf(cls);
  const e = err as Error & { code: string };
  expect(e.code, `code of "${e.message}"`).to.equal(code);
  for (const p of patterns) {
    if (typeof p === 'string') expect(e.message).to.include(p);
    else expect(e.message).to.match(p);
  }
  return e;
}

function detachedF32(n: number): Float32Array {
  const buf = new ArrayBuffer(n * 4);
  const a = new Float32Array(buf);
  structuredClone(buf, { transfer: [buf] });
  expect(buf.byteLength).to.equal(0);
  return a;
}

function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: number, what: string): void {
  expect(actual.length, `${what} length`).to.equal(expected.length);
  for (let i = 0; i < actual.length; i++) {
    const d = Math.abs(actual[i] - expected[i]);
    if (!(d <= tol * (1 + Math.abs(expected[i])))) expect.fail(`${what}[${i}] = ${actual[i]}, expected ${expected[i]} (tol ${tol})`);
  }
}

const SHAPE = [2, 3, 4, 5];
const TOTAL = product(SHAPE);
const rng = new Rng(7);
const X0 = randn(rng, TOTAL, 'float32', 1, 2) as Float32Array;
const X1 = randn(rng, TOTAL, 'float32', -1, 0.5) as Float32Array;
const DY = randn(rng, TOTAL, 'float32') as Float32Array;

/** A layer with non-trivial state: parameters, gradients, running stats, counter 2, a saved forward. */
function primed<T extends bn.BatchNorm>(Ctor: new (c: number, o?: bn.BatchNormOptions) => T = bn.BatchNorm2d as never, shape = SHAPE): T {
  const L = new Ctor(3);
  (L.weight as Float32Array).set([0.5, 2, -1]);
  (L.bias as Float32Array).set([0.1, -0.2, 0.3]);
  const total = product(shape);
  L.forward(X0.subarray(0, total), shape);
  L.backward(DY.subarray(0, total));
  L.forward(X1.subarray(0, total), shape);
  return L;
}

interface LayerCase {
  name: string;
  run: (L: Loose) => unknown;
  cls: ErrorClass;
  code: bn.BatchNormErrorCode;
  msg: Array<string | RegExp>;
  layer?: () => bn.BatchNorm;
  /** A valid call made before the snapshot. */
  prepare?: (L: Loose) => void;
}

const SAVED_X = X0.slice();

const forwardCases: LayerCase[] = [
  { name: 'x a plain Array', run: (L) => L.forward(Array.from(X0), SHAPE), cls: bn.BatchNormTypeError, code: 'ERR_BN_INVALID_ARG_TYPE', msg: ['BatchNorm2d.forward: x must be a Float32Array', 'received an Array of length 120'] },
  { name: 'x an Int32Array', run: (L) => L.forward(new Int32Array(TOTAL), SHAPE), cls: bn.BatchNormTypeError, code: 'ERR_BN_INVALID_ARG_TYPE', msg: ['x must be a Float32Array', 'received an Int32Array'] },
  { name: 'x a string', run: (L) => L.forward('0,1,2', SHAPE), cls: bn.BatchNormTypeError, code: 'ERR_BN_INVALID_ARG_TYPE', msg: ['x must be', 'received the string'] },
  { name: 'x undefined', run: (L) => L.forward(undefined, SHAPE), cls: bn.BatchNormTypeError, code: 'ERR_BN_INVALID_ARG_TYPE', msg: ['x must be', 'received undefined'] },
  { name: 'x a DataView', run: (L) => L.forward(new DataView(X0.buffer), SHAPE), cls: bn.BatchNormTypeError, code: 'ERR_BN_INVALID_ARG_TYPE', msg: ['x must be', 'received a DataView'] },
  { name: 'x a Float64Array on a float32 layer', run: (L) => L.forward(Float64Array.from(X0), SHAPE), cls: bn.BatchNormTypeError, code: 'ERR_BN_DTYPE_MISMATCH', msg: ['x must be a Float32Array', 'received a Float64Array'] },
  { name: 'shape not matching the data length', run: (L) => L.forward(X0, [2, 3, 4, 6]), cls: bn.BatchNormRangeError, code: 'ERR_BN_BAD_LENGTH', msg: ['x must have 144 elements', 'received a Float32Array of length 120'] },
  { name: 'data longer than the shape', run: (L) => L.forward(new Float32Array(121), SHAPE), cls: bn.BatchNormRangeError, code: 'ERR_BN_BAD_LENGTH', msg: ['x must have 120 elements', 'length 121'] },
  { name: 'a negative dimension', run: (L) => L.forward(X0, [2, 3, -4, 5]), cls: bn.BatchNormRangeError, code: 'ERR_BN_BAD_SHAPE', msg: ['shape[2] must be an integer >= 1', 'received the number -4'] },
  { name: 'a fractional dimension', run: (L) => L.forward(X0, [2, 3, 4.5, 5]), cls: bn.BatchNormRangeError, code: 'ERR_BN_BAD_SHAPE', msg: ['shape[2]', 'received the number 4.5'] },
  { name: 'a zero dimension', run: (L) => L.forward(new Float32Array(0), [0, 3, 4, 5]), cls: bn.BatchNormRangeError, code: 'ERR_BN_BAD_SHAPE', msg: ['shape[0] must be an integer >= 1', 'received the number 0'] },
  { name: 'a NaN dimension', run: (L) => L.forward(X0, [2, 3, NaN, 5]), cls: bn.BatchNormRangeError, code: 'ERR_BN_BAD_SHAPE', msg: ['shape[2]', 'NaN'] },
  { name: 'a string dimension', run: (L) => L.forward(X0, [2, 3, '4', 5]), cls: bn.BatchNormRangeError, code: 'ERR_BN_BAD_SHAPE', msg: ['shape[2]', 'received the string "4"'] },
  { name: 'shape not an array', run: (L) => L.forward(X0, '2,3,4,5'), cls: bn.BatchNormTypeError, code: 'ERR_BN_INVALID_ARG_TYPE', msg: ['shape must be an array', 'received the string'] },
  { name: 'shape undefined', run: (L) => L.forward(X0), cls: bn.BatchNormTypeError, code: 'ERR_BN_INVALID_ARG_TYPE', msg: ['shape must be an array', 'received undefined'] },
  { name: 'a wrong rank with a symbol and a null-prototype object in the shape', run: (L) => L.forward(X0, [2, 3, 4, 5, Symbol('s'), Object.create(null)]), cls: bn.BatchNormRangeError, code: 'ERR_BN_BAD_SHAPE', msg: ['received rank 6', '[2, 3, 4, 5, a symbol, an object (Object)]'] },
  { name: 'an overflowing shape followed by junk', run: (L) => L.forward(X0, [2 ** 20, 3, 2 ** 20, 2 ** 20, { toString() { throw new Error('toString called'); } }]), cls: bn.BatchNormRangeError, code: 'ERR_BN_BAD_SHAPE', msg: ['more than 2^53 - 1 elements'], layer: () => primed(bn.BatchNorm) },
  { name: 'a huge sparse shape array', run: (L) => { const sh: unknown[] = [2, 3]; sh.length = 2 ** 30; return L.forward(X0, sh); }, cls: bn.BatchNormRangeError, code: 'ERR_BN_BAD_SHAPE', msg: ['received rank 1073741824', '(1073741824 entries)'] },
  { name: 'rank 3 on BatchNorm2d', run: (L) => L.forward(X0, [2, 3, 20]), cls: bn.BatchNormRangeError, code: 'ERR_BN_BAD_SHAPE', msg: ['shape must have rank 4', 'received rank 3'] },
  { name: 'rank 1 on BatchNorm', run: (L) => L.forward(new Float32Array(3), [3]), cls: bn.BatchNormRangeError, code: 'ERR_BN_BAD_SHAPE', msg: ['BatchNorm.forward: shape must have rank 2 to 5', 'received rank 1'], layer: () => primed(bn.BatchNorm) },
  { name: 'rank 6 on BatchNorm', run: (L) => L.forward(X0, [2, 3, 2, 2, 5, 1]), cls: bn.BatchNormRangeError, code: 'ERR_BN_BAD_SHAPE', msg: ['rank 2 to 5', 'received rank 6'], layer: () => primed(bn.BatchNorm) },
  { name: 'rank 4 on BatchNorm1d', run: (L) => L.forward(X0, SHAPE), cls: bn.BatchNormRangeError, code: 'ERR_BN_BAD_SHAPE', msg: ['BatchNorm1d.forward: shape must have rank 2 to 3', 'received rank 4'], layer: () => primed(bn.BatchNorm1d, [2, 3, 20]) },
  { name: 'rank 4 on BatchNorm3d', run: (L) => L.forward(X0, SHAPE), cls: bn.BatchNormRangeError, code: 'ERR_BN_BAD_SHAPE', msg: ['BatchNorm3d.forward: shape must have rank 5', 'received rank 4'], layer: () => primed(bn.BatchNorm3d, [2, 3, 2, 2, 5]) },
  { name: 'a channel count other than numFeatures', run: (L) => L.forward(X0, [2, 4, 3, 5]), cls: bn.BatchNormRangeError, code: 'ERR_BN_BAD_SHAPE', msg: ['shape[1] must be 3 (numFeatures)', 'received shape [2, 4, 3, 5]'] },
  { name: 'a product beyond 32 bits', run: (L) => L.forward(X0, [65536, 3, 65536, 2]), cls: bn.BatchNormRangeError, code: 'ERR_BN_BAD_LENGTH', msg: ['x must have 25769803776 elements', 'length 120'] },
  { name: 'a product beyond 2^53', run: (L) => L.forward(X0, [2 ** 20, 3, 2 ** 20, 2 ** 20]), cls: bn.BatchNormRangeError, code: 'ERR_BN_BAD_SHAPE', msg: ['more than 2^53 - 1 elements'] },
  { name: 'dimensions of 2^60', run: (L) => L.forward(X0, [2 ** 60, 3, 1, 1]), cls: bn.BatchNormRangeError, code: 'ERR_BN_BAD_SHAPE', msg: ['more than 2^53 - 1 elements'] },
  { name: 'a detached x', run: (L) => L.forward(detachedF32(TOTAL), SHAPE), cls: bn.BatchNormRangeError, code: 'ERR_BN_BAD_LENGTH', msg: ['x must have 120 elements', 'detached'] },
  { name: 'one value per channel in training', run: (L) => L.forward(new Float32Array(3), [1, 3, 1, 1]), cls: bn.BatchNormRangeError, code: 'ERR_BN_TOO_FEW_VALUES', msg: ['more than 1 value per channel', 'shape [1, 3, 1, 1]'] },
  { name: 'out too short', run: (L) => L.forward(X0, SHAPE, new Float32Array(119)), cls: bn.BatchNormRangeError, code: 'ERR_BN_BAD_LENGTH', msg: ['out must have 120 elements', 'length 119'] },
  { name: 'out a Float64Array', run: (L) => L.forward(X0, SHAPE, new Float64Array(TOTAL)), cls: bn.BatchNormTypeError, code: 'ERR_BN_DTYPE_MISMATCH', msg: ['out must be a Float32Array', 'received a Float64Array'] },
  { name: 'out an Int32Array', run: (L) => L.forward(X0, SHAPE, new Int32Array(TOTAL)), cls: bn.BatchNormTypeError, code: 'ERR_BN_INVALID_ARG_TYPE', msg: ['out must be a Float32Array', 'received an Int32Array'] },
  { name: 'out a plain Array', run: (L) => L.forward(X0, SHAPE, new Array(TOTAL).fill(0)), cls: bn.BatchNormTypeError, code: 'ERR_BN_INVALID_ARG_TYPE', msg: ['out must be a Float32Array', 'received an Array of length 120'] },
  { name: 'options.out an Int32Array', run: (L) => L.forward(X0, SHAPE, { out: new Int32Array(TOTAL) }), cls: bn.BatchNormTypeError, code: 'ERR_BN_INVALID_ARG_TYPE', msg: ['out must be a Float32Array', 'received an Int32Array'] },
  { name: 'options.channelsLast not a boolean', run: (L) => L.forward(X0, SHAPE, { channelsLast: 'yes' }), cls: bn.BatchNormTypeError, code: 'ERR_BN_INVALID_ARG_TYPE', msg: ['channelsLast must be a boolean', 'received the string'] },
  { name: 'options a number', run: (L) => L.forward(X0, SHAPE, 5), cls: bn.BatchNormTypeError, code: 'ERR_BN_INVALID_ARG_TYPE', msg: ['options must be an object', 'received the number 5'] },
  { name: 'out detached', run: (L) => L.forward(X0, SHAPE, detachedF32(TOTAL)), cls: bn.BatchNormRangeError, code: 'ERR_BN_BAD_LENGTH', msg: ['out must have 120 elements', 'detached'] },
  {
    name: 'out partly overlapping x',
    run: (L) => { const b = new Float32Array(TOTAL + 1); b.set(X0); return L.forward(b.subarray(0, TOTAL), SHAPE, b.subarray(1)); },
    cls: bn.BatchNormRangeError, code: 'ERR_BN_OVERLAP', msg: ['out shares memory with x'],
  },
  { name: 'train(mode) with a non-boolean', run: (L) => L.train('no'), cls: bn.BatchNormTypeError, code: 'ERR_BN_INVALID_ARG_TYPE', msg: ['BatchNorm2d.train: mode must be a boolean', 'received the string'] },
  {
    name: 'eval-mode out partly overlapping x',
    run: (L) => { L.eval(); try { const b = new Float32Array(TOTAL + 1); b.set(X0); return L.forward(b.subarray(0, TOTAL), SHAPE, b.subarray(1)); } finally { L.train(); } },
    cls: bn.BatchNormRangeError, code: 'ERR_BN_OVERLAP', msg: ['out shares memory with x'],
  },
];

const backwardCases: LayerCase[] = [
  { name: 'backward before any forward', run: (L) => L.backward(DY), cls: bn.BatchNormError, code: 'ERR_BN_NO_FORWARD', msg: ['BatchNorm2d.backward: no forward to differentiate'], layer: () => new bn.BatchNorm2d(3) },
  { name: 'backward after releaseSaved', run: (L) => L.backward(DY), cls: bn.BatchNormError, code: 'ERR_BN_NO_FORWARD', msg: ['no forward'], layer: () => { const L = new bn.BatchNorm2d(3); L.forward(X0, SHAPE); L.releaseSaved(); return L; } },
  { name: 'dy of another shape', run: (L) => L.backward(new Float32Array(60)), cls: bn.BatchNormRangeError, code: 'ERR_BN_BAD_LENGTH', msg: ['dy must have 120 elements', 'length 60'] },
  { name: 'dy a Float64Array', run: (L) => L.backward(Float64Array.from(DY)), cls: bn.BatchNormTypeError, code: 'ERR_BN_DTYPE_MISMATCH', msg: ['dy must be a Float32Array', 'received a Float64Array'] },
  { name: 'dy a plain Array', run: (L) => L.backward(Array.from(DY)), cls: bn.BatchNormTypeError, code: 'ERR_BN_INVALID_ARG_TYPE', msg: ['dy must be a Float32Array', 'received an Array'] },
  { name: 'dy null', run: (L) => L.backward(null), cls: bn.BatchNormTypeError, code: 'ERR_BN_INVALID_ARG_TYPE', msg: ['dy must be', 'received null'] },
  { name: 'dy detached', run: (L) => L.backward(detachedF32(TOTAL)), cls: bn.BatchNormRangeError, code: 'ERR_BN_BAD_LENGTH', msg: ['dy must have 120', 'detached'] },
  {
    name: 'dx out partly overlapping dy',
    run: (L) => { const b = new Float32Array(TOTAL + 2); b.set(DY); return L.backward(b.subarray(0, TOTAL), b.subarray(2)); },
    cls: bn.BatchNormRangeError, code: 'ERR_BN_OVERLAP', msg: ['out shares memory with dy'],
  },
  {
    name: 'dx out === the saved x',
    prepare: (L) => { L.forward(SAVED_X, SHAPE); },
    run: (L) => L.backward(DY, SAVED_X),
    cls: bn.BatchNormRangeError, code: 'ERR_BN_OVERLAP', msg: ['out shares memory with x'],
  },
  { name: 'dx out too short', run: (L) => L.backward(DY, new Float32Array(10)), cls: bn.BatchNormRangeError, code: 'ERR_BN_BAD_LENGTH', msg: ['out must have 120 elements', 'length 10'] },
];

function stateDictOf(L: bn.BatchNorm): Record<string, unknown> {
  return { ...(L.stateDict() as Record<string, unknown>) };
}

const stateDictCases: LayerCase[] = [
  { name: 'missing running_var', run: (L) => { const d = stateDictOf(L); delete d.running_var; return L.loadStateDict(d); }, cls: bn.BatchNormRangeError, code: 'ERR_BN_STATE_DICT', msg: ['BatchNorm2d.loadStateDict: expected keys', 'missing running_var'] },
  { name: 'an entry undefined', run: (L) => L.loadStateDict({ ...stateDictOf(L), weight: undefined }), cls: bn.BatchNormRangeError, code: 'ERR_BN_STATE_DICT', msg: ['missing weight'] },
  { name: 'an extra entry (strict)', run: (L) => L.loadStateDict({ ...stateDictOf(L), foo: new Float32Array(3) }), cls: bn.BatchNormRangeError, code: 'ERR_BN_STATE_DICT', msg: ['unexpected foo'] },
  { name: 'a wrongly sized last entry (nothing written before it)', run: (L) => L.loadStateDict({ weight: new Float32Array(3).fill(9), bias: new Float32Array(3).fill(9), running_mean: new Float32Array(3).fill(9), running_var: new Float32Array(4), num_batches_tracked: 7n }), cls: bn.BatchNormRangeError, code: 'ERR_BN_STATE_DICT', msg: ['running_var must have 3 elements', 'length 4'] },
  { name: 'a bad counter after good arrays', run: (L) => L.loadStateDict({ ...stateDictOf(L), weight: new Float32Array(3).fill(9), num_batches_tracked: -1 }), cls: bn.BatchNormRangeError, code: 'ERR_BN_STATE_DICT', msg: ['num_batches_tracked must be a non-negative safe integer', '-1'] },
  { name: 'a fractional counter', run: (L) => L.loadStateDict({ ...stateDictOf(L), num_batches_tracked: 1.5 }), cls: bn.BatchNormRangeError, code: 'ERR_BN_STATE_DICT', msg: ['num_batches_tracked', '1.5'] },
  { name: 'a NaN counter', run: (L) => L.loadStateDict({ ...stateDictOf(L), num_batches_tracked: NaN }), cls: bn.BatchNormRangeError, code: 'ERR_BN_STATE_DICT', msg: ['num_batches_tracked', 'NaN'] },
  { name: 'a counter of 2^60', run: (L) => L.loadStateDict({ ...stateDictOf(L), num_batches_tracked: BigInt64Array.of(2n ** 60n) }), cls: bn.BatchNormRangeError, code: 'ERR_BN_STATE_DICT', msg: ['num_batches_tracked', 'safe integer'] },
  { name: 'a string counter', run: (L) => L.loadStateDict({ ...stateDictOf(L), num_batches_tracked: '3' }), cls: bn.BatchNormTypeError, code: 'ERR_BN_STATE_DICT', msg: ['num_batches_tracked must be', 'received the string'] },
  { name: 'an Int32Array weight', run: (L) => L.loadStateDict({ ...stateDictOf(L), weight: new Int32Array(3) }), cls: bn.BatchNormTypeError, code: 'ERR_BN_STATE_DICT', msg: ['weight must be a Float32Array or Float64Array', 'received an Int32Array'] },
  { name: 'a detached bias', run: (L) => L.loadStateDict({ ...stateDictOf(L), bias: detachedF32(3) }), cls: bn.BatchNormRangeError, code: 'ERR_BN_STATE_DICT', msg: ['bias must have 3 elements', 'length 0'] },
  { name: 'state null', run: (L) => L.loadStateDict(null), cls: bn.BatchNormTypeError, code: 'ERR_BN_INVALID_ARG_TYPE', msg: ['state must be an object', 'received null'] },
  { name: 'state an Array', run: (L) => L.loadStateDict([1, 2]), cls: bn.BatchNormTypeError, code: 'ERR_BN_INVALID_ARG_TYPE', msg: ['state must be an object', 'received an Array'] },
  { name: 'strict not a boolean', run: (L) => L.loadStateDict(stateDictOf(L), { strict: 'no' }), cls: bn.BatchNormTypeError, code: 'ERR_BN_INVALID_ARG_TYPE', msg: ['strict must be a boolean', 'received the string'] },
  { name: 'options a string', run: (L) => L.loadStateDict(stateDictOf(L), 'strict'), cls: bn.BatchNormTypeError, code: 'ERR_BN_INVALID_ARG_TYPE', msg: ['options must be an object', 'received the string'] },
];

const foldCases: LayerCase[] = [
  { name: 'foldIntoConv: weight a plain Array', run: (L) => L.foldIntoConv([1, 2, 3], [3, 1]), cls: bn.BatchNormTypeError, code: 'ERR_BN_INVALID_ARG_TYPE', msg: ['BatchNorm2d.foldIntoConv: weight must be', 'received an Array'] },
  { name: 'foldIntoConv: shape not matching the weight', run: (L) => L.foldIntoConv(new Float32Array(12), [3, 2, 3, 3]), cls: bn.BatchNormRangeError, code: 'ERR_BN_BAD_LENGTH', msg: ['weight has 12 elements but weightShape [3, 2, 3, 3] needs 54'] },
  { name: 'foldIntoConv: a bad weightShape', run: (L) => L.foldIntoConv(new Float32Array(12), [3, -4]), cls: bn.BatchNormRangeError, code: 'ERR_BN_BAD_SHAPE', msg: ['weightShape must be an array of at least 2 integers >= 1', 'received an Array'] },
  { name: 'foldIntoConv: output channels other than numFeatures', run: (L) => L.foldIntoConv(new Float32Array(12), [4, 3]), cls: bn.BatchNormRangeError, code: 'ERR_BN_BAD_SHAPE', msg: ['weightShape[0] (output channels) must be 3', 'received 4'] },
  { name: 'foldIntoConv: groups 0', run: (L) => L.foldIntoConv(new Float32Array(12), [3, 4], null, { groups: 0 }), cls: bn.BatchNormRangeError, code: 'ERR_BN_OUT_OF_RANGE', msg: ['groups must be an integer >= 1', 'received the number 0'] },
  { name: 'foldIntoConv: groups NaN', run: (L) => L.foldIntoConv(new Float32Array(12), [3, 4], null, { groups: NaN }), cls: bn.BatchNormRangeError, code: 'ERR_BN_OUT_OF_RANGE', msg: ['groups', 'NaN'] },
  { name: 'foldIntoConv: transposed not a boolean', run: (L) => L.foldIntoConv(new Float32Array(12), [3, 4], null, { transposed: 1 }), cls: bn.BatchNormTypeError, code: 'ERR_BN_INVALID_ARG_TYPE', msg: ['transposed must be a boolean', 'received the number 1'] },
  { name: 'foldIntoConv: options null', run: (L) => L.foldIntoConv(new Float32Array(12), [3, 4], null, null), cls: bn.BatchNormTypeError, code: 'ERR_BN_INVALID_ARG_TYPE', msg: ['options must be an object', 'received null'] },
  { name: 'foldIntoConv: bias of the wrong length', run: (L) => L.foldIntoConv(new Float32Array(12), [3, 4], new Float32Array(4)), cls: bn.BatchNormRangeError, code: 'ERR_BN_BAD_LENGTH', msg: ['bias must have 3 elements', 'length 4'] },
  { name: 'foldIntoConv: bias a string', run: (L) => L.foldIntoConv(new Float32Array(12), [3, 4], 'b'), cls: bn.BatchNormTypeError, code: 'ERR_BN_INVALID_ARG_TYPE', msg: ['bias must be', 'received the string'] },
  { name: 'foldIntoLinear: length not a multiple of numFeatures', run: (L) => L.foldIntoLinear(new Float32Array(10)), cls: bn.BatchNormRangeError, code: 'ERR_BN_BAD_LENGTH', msg: ['must have a multiple of 3 elements', 'length 10'] },
  { name: 'foldIntoLinear: an empty weight', run: (L) => L.foldIntoLinear(new Float32Array(0)), cls: bn.BatchNormRangeError, code: 'ERR_BN_BAD_LENGTH', msg: ['multiple of 3', 'length 0'] },
  { name: 'scaleShift without running statistics', run: (L) => L.scaleShift(), cls: bn.BatchNormError, code: 'ERR_BN_NO_RUNNING_STATS', msg: ['BatchNorm2d.scaleShift: the layer has no running statistics'], layer: () => new bn.BatchNorm2d(3, { trackRunningStats: false }) },
];

function runLayerCases(title: string, cases: LayerCase[]): void {
  describe(title, function () {
    for (const c of cases) {
      it(`${c.name}: ${c.cls.name} ${c.code}`, function () {
        const L = c.layer ? c.layer() : primed();
        c.prepare?.(L);
        const before = snapshot(L);
        const err = expectError(() => c.run(L), c.cls, c.code, c.msg);
        expect(err.message.length).to.be.below(400);
        expectUnchanged(L, before, c.name);
        // The layer still works after the refused call.
        const shape = L instanceof bn.BatchNorm1d ? [2, 3, 20] : L instanceof bn.BatchNorm3d ? [2, 3, 2, 2, 5] : SHAPE;
        L.forward(X0.slice(), shape);
        L.backward(DY);
      });
    }
  });
}

describe('hostile inputs: a hand-written table', function () {
  runLayerCases('forward', forwardCases);
  runLayerCases('backward', backwardCases);
  runLayerCases('loadStateDict', stateDictCases);
  runLayerCases('folding', foldCases);

  describe('the constructor', function () {
    const cases: Array<[string, () => unknown, ErrorClass, bn.BatchNormErrorCode, string[]]> = [
      ['eps NaN', () => new bn.BatchNorm(3, { eps: NaN }), bn.BatchNormRangeError, 'ERR_BN_OUT_OF_RANGE', ['eps must be finite and >= 0', 'received NaN']],
      ['eps Infinity', () => new bn.BatchNorm(3, { eps: Infinity }), bn.BatchNormRangeError, 'ERR_BN_OUT_OF_RANGE', ['eps', 'Infinity']],
      ['eps < 0', () => new bn.BatchNorm(3, { eps: -1e-5 }), bn.BatchNormRangeError, 'ERR_BN_OUT_OF_RANGE', ['eps', '-0.00001']],
      ['eps a string', () => new bn.BatchNorm(3, { eps: '1e-5' as Loose }), bn.BatchNormTypeError, 'ERR_BN_INVALID_ARG_TYPE', ['eps must be a number', 'received the string']],
      ['momentum NaN', () => new bn.BatchNorm(3, { momentum: NaN }), bn.BatchNormRangeError, 'ERR_BN_OUT_OF_RANGE', ['momentum must be a number in [0, 1] or null', 'received the number NaN']],
      ['momentum Infinity', () => new bn.BatchNorm(3, { momentum: Infinity }), bn.BatchNormRangeError, 'ERR_BN_OUT_OF_RANGE', ['momentum', 'Infinity']],
      ['momentum -0.1', () => new bn.BatchNorm(3, { momentum: -0.1 }), bn.BatchNormRangeError, 'ERR_BN_OUT_OF_RANGE', ['momentum', '-0.1']],
      ['momentum 1.5', () => new bn.BatchNorm(3, { momentum: 1.5 }), bn.BatchNormRangeError, 'ERR_BN_OUT_OF_RANGE', ['momentum', '1.5']],
      ['momentum a string', () => new bn.BatchNorm(3, { momentum: '0.1' as Loose }), bn.BatchNormTypeError, 'ERR_BN_INVALID_ARG_TYPE', ['momentum must be a number', 'received the string']],
      ['numFeatures 0', () => new bn.BatchNorm(0), bn.BatchNormRangeError, 'ERR_BN_OUT_OF_RANGE', ['numFeatures must be an integer in [1, 2^31]', 'received the number 0']],
      ['numFeatures 1.5', () => new bn.BatchNorm2d(1.5), bn.BatchNormRangeError, 'ERR_BN_OUT_OF_RANGE', ['BatchNorm2d: numFeatures', '1.5']],
      ['numFeatures a string', () => new bn.BatchNorm('3' as Loose), bn.BatchNormRangeError, 'ERR_BN_OUT_OF_RANGE', ['numFeatures', 'received the string']],
      ['numFeatures 2^40', () => new bn.BatchNorm(2 ** 40), bn.BatchNormRangeError, 'ERR_BN_OUT_OF_RANGE', ['numFeatures', '1099511627776']],
      ['dtype float8', () => new bn.BatchNorm(3, { dtype: 'float8' as Loose }), bn.BatchNormTypeError, 'ERR_BN_INVALID_ARG_TYPE', ["dtype must be 'float32' or 'float64'", 'received the string "float8"']],
      ['affine a number', () => new bn.BatchNorm(3, { affine: 1 as Loose }), bn.BatchNormTypeError, 'ERR_BN_INVALID_ARG_TYPE', ['affine must be a boolean', 'received the number 1']],
      ['options a string', () => new bn.BatchNorm(3, 'eps' as Loose), bn.BatchNormTypeError, 'ERR_BN_INVALID_ARG_TYPE', ['options must be an object', 'received the string']],
    ];
    for (const [name, f, cls, code, msg] of cases) {
      it(`${name}: ${cls.name} ${code}`, () => { expectError(f, cls, code, msg); });
    }
  });

  describe('process-wide settings', function () {
    it('setNumThreads refuses 0, -1, 1.5, NaN, Infinity, 5000 (RangeError) and non-numbers (TypeError), keeping the budget', function () {
      const before = bn.getNumThreads();
      for (const v of [0, -1, 1.5, NaN, Infinity, 5000]) {
        expectError(() => bn.setNumThreads(v), bn.BatchNormRangeError, 'ERR_BN_OUT_OF_RANGE', ['setNumThreads: n must be an integer in [1, 4096]', 'received the number']);
      }
      for (const v of ['2', undefined, null, 2n, [2]]) {
        expectError(() => bn.setNumThreads(v as Loose), bn.BatchNormTypeError, 'ERR_BN_INVALID_ARG_TYPE', ['setNumThreads: n must be', 'received']);
      }
      expect(bn.getNumThreads()).to.equal(before);
    });

    it('setSimdLevel refuses unknown or unsupported levels and non-strings, keeping the level', function () {
      const before = bn.simdLevel();
      expectError(() => bn.setSimdLevel(3 as Loose), bn.BatchNormTypeError, 'ERR_BN_INVALID_ARG_TYPE', ['setSimdLevel: level must be a string', 'received the number 3']);
      expectError(() => bn.setSimdLevel('sse4' as Loose), bn.BatchNormRangeError, 'ERR_BN_UNSUPPORTED', ['setSimdLevel: level must be one of', 'received the string "sse4"']);
      const unsupported = (['scalar', 'avx2', 'avx512', 'neon'] as const).filter((l) => !bn.supportedSimdLevels().includes(l));
      for (const l of unsupported) expectError(() => bn.setSimdLevel(l), bn.BatchNormRangeError, 'ERR_BN_UNSUPPORTED', [`"${l}"`]);
      expect(bn.simdLevel()).to.equal(before);
    });
  });
});

describe('hostile inputs: the functional API', function () {
  const C = 3;
  const w = Float32Array.of(0.5, 2, -1);
  const b = Float32Array.of(0.1, -0.2, 0.3);

  it('batchNormTraining: bad options throw before the running statistics are touched', function () {
    const rm = Float32Array.of(1, 2, 3);
    const rv = Float32Array.of(4, 5, 6);
    const x = X0.slice();
    const run = (o: Loose, shape: Loose = SHAPE) => () => bn.batchNormTraining(x, shape, { runningMean: rm, runningVar: rv, ...o });
    expectError(run({ weight: new Float32Array(4) }), bn.BatchNormRangeError, 'ERR_BN_BAD_LENGTH', ['batchNormTraining: weight must have 3 elements', 'length 4']);
    expectError(run({ bias: [1, 2, 3] }), bn.BatchNormTypeError, 'ERR_BN_INVALID_ARG_TYPE', ['bias must be a Float32Array', 'received an Array']);
    expectError(run({ runningVar: null }), bn.BatchNormTypeError, 'ERR_BN_INVALID_ARG_TYPE', ['runningMean and runningVar must be given together']);
    expectError(run({ runningMean: new Float64Array(3) }), bn.BatchNormTypeError, 'ERR_BN_DTYPE_MISMATCH', ['runningMean must be a Float32Array', 'received a Float64Array']);
    for (const m of [NaN, Infinity, -0.5, 2]) {
      expectError(run({ momentum: m }), bn.BatchNormRangeError, 'ERR_BN_OUT_OF_RANGE', ['momentum must be a number in [0, 1]', `received the number ${m}`]);
    }
    expectError(run({ momentum: '0.1' }), bn.BatchNormTypeError, 'ERR_BN_INVALID_ARG_TYPE', ['momentum', 'received the string']);
    for (const e of [NaN, -Infinity, -1]) expectError(run({ eps: e }), bn.BatchNormRangeError, 'ERR_BN_OUT_OF_RANGE', ['eps must be finite and >= 0']);
    expectError(run({ out: new Float32Array(5) }), bn.BatchNormRangeError, 'ERR_BN_BAD_LENGTH', ['out must have 120 elements']);
    const shared = new Float32Array(TOTAL + C);
    expectError(run({ out: shared.subarray(0, TOTAL), weight: shared.subarray(TOTAL - 1, TOTAL - 1 + C) }), bn.BatchNormRangeError, 'ERR_BN_OVERLAP', ['out shares memory with weight']);
    const sharedStats = new Float32Array(TOTAL + C);
    expectError(() => bn.batchNormTraining(x, SHAPE, { out: sharedStats.subarray(0, TOTAL), runningMean: sharedStats.subarray(TOTAL - 1, TOTAL - 1 + C), runningVar: rv }), bn.BatchNormRangeError, 'ERR_BN_OVERLAP', ['out shares memory with runningMean']);
    expectError(run({}, [1, 3, 1, 1]), bn.BatchNormRangeError, 'ERR_BN_BAD_LENGTH', ['x must have 3 elements']);
    expectError(() => bn.batchNormTraining(x.subarray(0, 3), [1, 3], { runningMean: rm, runningVar: rv }), bn.BatchNormRangeError, 'ERR_BN_TOO_FEW_VALUES', ['more than 1 value per channel']);
    expectError(() => bn.batchNormTraining(x, SHAPE, 'opts' as Loose), bn.BatchNormTypeError, 'ERR_BN_INVALID_ARG_TYPE', ['options must be an object']);
    expectError(() => bn.batchNormTraining(Array.from(x) as Loose, SHAPE), bn.BatchNormTypeError, 'ERR_BN_INVALID_ARG_TYPE', ['x must be a Float32Array or Float64Array', 'received an Array']);
    expectError(() => bn.batchNormTraining(x, [2, 3, 4, 5, 1, 1] as Loose), bn.BatchNormRangeError, 'ERR_BN_BAD_SHAPE', ['rank 2 to 5', 'rank 6']);
    expectBitwiseEqual(rm, Float32Array.of(1, 2, 3), 'runningMean');
    expectBitwiseEqual(rv, Float32Array.of(4, 5, 6), 'runningVar');
    expectBitwiseEqual(x, X0, 'x');
  });

  it('batchNormInference and batchNormBackward: bad options throw and write nothing', function () {
    const rm = Float32Array.of(1, 2, 3);
    const rv = Float32Array.of(4, 5, 6);
    expectError(() => bn.batchNormInference(X0, SHAPE, undefined as Loose), bn.BatchNormTypeError, 'ERR_BN_INVALID_ARG_TYPE', ['batchNormInference: runningMean must be a Float32Array', 'received undefined']);
    expectError(() => bn.batchNormInference(X0, SHAPE, { runningMean: rm, runningVar: Float64Array.from(rv) }), bn.BatchNormTypeError, 'ERR_BN_DTYPE_MISMATCH', ['runningVar must be a Float32Array', 'received a Float64Array']);
    expectError(() => bn.batchNormInference(X0, SHAPE, { runningMean: rm, runningVar: rv, eps: NaN }), bn.BatchNormRangeError, 'ERR_BN_OUT_OF_RANGE', ['eps']);
    const inPlaceStats = new Float32Array(TOTAL);
    expectError(() => bn.batchNormInference(X0, SHAPE, { runningMean: inPlaceStats.subarray(0, 3), runningVar: rv, out: inPlaceStats }), bn.BatchNormRangeError, 'ERR_BN_OVERLAP', ['out shares memory with runningMean']);

    const st = bn.batchNormTraining(X0, SHAPE, { weight: w, bias: b });
    const gw = Float32Array.of(1, 1, 1);
    const gb = Float32Array.of(2, 2, 2);
    const base = { weight: w, training: true, mean: st.batchMean, invstd: st.batchInvstd, gradWeight: gw, gradBias: gb };
    const run = (o: Loose, dy: Loose = DY) => () => bn.batchNormBackward(X0, dy, SHAPE, { ...base, ...o });
    expectError(run({ training: 'yes' }), bn.BatchNormTypeError, 'ERR_BN_INVALID_ARG_TYPE', ['batchNormBackward: training must be a boolean', 'received the string']);
    expectError(run({ mean: undefined }), bn.BatchNormTypeError, 'ERR_BN_INVALID_ARG_TYPE', ['mean must be', 'received undefined']);
    expectError(run({ invstd: new Float32Array(2) }), bn.BatchNormRangeError, 'ERR_BN_BAD_LENGTH', ['invstd must have 3 elements', 'length 2']);
    expectError(run({ accumulate: 1 }), bn.BatchNormTypeError, 'ERR_BN_INVALID_ARG_TYPE', ['accumulate must be a boolean']);
    expectError(run({ training: false, runningMean: rm, runningVar: rv, eps: -1 }), bn.BatchNormRangeError, 'ERR_BN_OUT_OF_RANGE', ['eps']);
    const g = new Float32Array(5);
    expectError(run({ gradWeight: g.subarray(0, 3), gradBias: g.subarray(2, 5) }), bn.BatchNormRangeError, 'ERR_BN_OVERLAP', ['gradWeight shares memory with gradBias']);
    expectError(run({ gradWeight: w }), bn.BatchNormRangeError, 'ERR_BN_OVERLAP', ['gradWeight shares memory with weight']);
    expectError(run({ out: X0 }), bn.BatchNormRangeError, 'ERR_BN_OVERLAP', ['out shares memory with x']);
    expectError(run({}, new Float32Array(TOTAL + 1)), bn.BatchNormRangeError, 'ERR_BN_BAD_LENGTH', ['dy must have 120 elements']);
    expectError(run({}, Float64Array.from(DY)), bn.BatchNormTypeError, 'ERR_BN_DTYPE_MISMATCH', ['dy must be a Float32Array']);
    expectBitwiseEqual(gw, Float32Array.of(1, 1, 1), 'gradWeight');
    expectBitwiseEqual(gb, Float32Array.of(2, 2, 2), 'gradBias');
  });
});

describe('hostile inputs: edge inputs with a right answer', function () {
  const d = ref.dimsOf(SHAPE);

  it('NaN in x propagates to that channel only (training), to that element only (evaluation); not an error', function () {
    const x = X0.slice();
    x[1 * 20 + 7] = NaN; // n = 0, c = 1
    const L = primed();
    const y = L.forward(x, SHAPE);
    const clean = ref.forwardTraining(X0, d, L.weight as Float32Array, L.bias as Float32Array, 1e-5);
    for (let n = 0; n < 2; n++) {
      for (let c = 0; c < 3; c++) {
        for (let j = 0; j < 20; j++) {
          const i = (n * 3 + c) * 20 + j;
          if (c === 1) expect(Number.isNaN(y[i]), `y[${i}] in the NaN channel`).to.equal(true);
          else expect(Math.abs(y[i] - clean.y[i])).to.be.below(1e-4);
        }
      }
    }
    expect(Number.isNaN((L.runningMean as Float32Array)[1])).to.equal(true);
    expect(Number.isFinite((L.runningMean as Float32Array)[0])).to.equal(true);
    expect(Number.isFinite((L.runningVar as Float32Array)[0])).to.equal(true);
    expect(L.numBatchesTracked).to.equal(3);
    const dx = L.backward(DY);
    expect(Number.isNaN(dx[20 + 3])).to.equal(true);
    expect(Number.isFinite(dx[3])).to.equal(true);

    const E = primed().eval();
    const ye = E.forward(x, SHAPE);
    ye.forEach((v, i) => expect(Number.isNaN(v), `eval y[${i}]`).to.equal(i === 27));
  });

  it('NaN or Infinity in x makes that channel\'s saved invstd and running variance NaN, as in PyTorch', function () {
    // PyTorch computes the batch variance of such a channel as NaN, so invstd = 1/sqrt(var + eps)
    // and running_var = (1 - m) * running_var + m * var are NaN too (not 1/sqrt(eps) and (1 - m) * running_var).
    for (const bad of [NaN, Infinity, -Infinity]) {
      for (const at of [20, 20 + 7]) { // the channel's first element and another one
        const x = X0.slice();
        x[at] = bad; // channel 1
        const rm = new Float32Array(3);
        const rv = new Float32Array(3).fill(1);
        const t = bn.batchNormTraining(x, SHAPE, { runningMean: rm, runningVar: rv });
        const what = `${bad} at ${at}`;
        expect(t.saveInvstd[1], `saveInvstd, ${what}`).to.be.NaN;
        expect(t.batchInvstd[1], `batchInvstd, ${what}`).to.be.NaN;
        expect(rv[1], `runningVar, ${what}`).to.be.NaN;
        expect(Number.isFinite(t.saveInvstd[0]) && Number.isFinite(rv[0]) && Number.isFinite(rv[2]), `other channels, ${what}`).to.equal(true);
        expect(Number.isNaN(t.saveMean[1]) || Math.abs(t.saveMean[1]) === Infinity, `saveMean, ${what}`).to.equal(true);
      }
    }
  });

  it('Infinity in x gives NaN in that channel (training), as PyTorch does', function () {
    const x = X0.slice();
    x[2 * 20] = Infinity; // n = 0, c = 2
    const y = new bn.BatchNorm2d(3).forward(x, SHAPE);
    for (let n = 0; n < 2; n++) {
      for (let j = 0; j < 20; j++) expect(Number.isNaN(y[(n * 3 + 2) * 20 + j])).to.equal(true);
      for (let j = 0; j < 20; j++) expect(Number.isFinite(y[(n * 3 + 0) * 20 + j])).to.equal(true);
    }
  });

  it('SharedArrayBuffer-backed x, out, dy and parameters give the right answer', function () {
    const sab = (a: Float32Array) => { const s = new Float32Array(new SharedArrayBuffer(a.byteLength)); s.set(a); return s; };
    const L = new bn.BatchNorm2d(3);
    L.weight!.set([0.5, 2, -1]);
    const x = sab(X0);
    const out = sab(new Float32Array(TOTAL));
    const y = L.forward(x, SHAPE, out);
    expect(y).to.equal(out);
    const r = ref.forwardTraining(X0, d, L.weight as Float32Array, null, 1e-5);
    expectClose(y, r.y, 1e-4, 'y');
    const dx = L.backward(sab(DY), sab(new Float32Array(TOTAL)));
    const g = ref.backward(X0, DY, d, L.weight as Float32Array, r.mean, r.invstd, true);
    expectClose(dx, g.dx, 1e-4, 'dx');
    expectClose(L.gradWeight as Float32Array, g.dweight, 1e-4, 'gradWeight');
    // Functional API with SAB-backed running statistics; and overlap inside one SAB is still refused.
    const rm = sab(new Float32Array(3));
    const rv = sab(new Float32Array(3).fill(1));
    const t = bn.batchNormTraining(x, SHAPE, { runningMean: rm, runningVar: rv });
    expectClose(t.y, ref.forwardTraining(X0, d, null, null, 1e-5).y, 1e-4, 'functional y');
    expectClose(rm, r.mean.map((m) => 0.1 * m), 1e-5, 'runningMean');
    const big = new Float32Array(new SharedArrayBuffer((TOTAL + 1) * 4));
    big.set(X0);
    expectError(() => bn.batchNormTraining(big.subarray(0, TOTAL), SHAPE, { out: big.subarray(1) }), bn.BatchNormRangeError, 'ERR_BN_OVERLAP', ['out shares memory with x']);
  });

  it('views at unaligned byte offsets (float32 at +4, float64 at +8 bytes) give the right answer', function () {
    for (const shape of [[3, 5, 7, 11], [4, 3, 4097], [7, 33]]) {
      const total = product(shape);
      const dd = ref.dimsOf(shape);
      const data = randn(new Rng(total), total, 'float64') as Float64Array;
      const dy = randn(new Rng(total + 1), total, 'float64') as Float64Array;
      for (const [T, dtype, off] of [[Float32Array, 'float32', 1], [Float64Array, 'float64', 1]] as const) {
        const view = (src: ArrayLike<number>) => { const a = new T(new ArrayBuffer((total + 3) * T.BYTES_PER_ELEMENT), off * T.BYTES_PER_ELEMENT, total); a.set(src); return a; };
        const x = view(data);
        expect(x.byteOffset % 16).to.not.equal(0);
        const L = new bn.BatchNorm(shape[1], { dtype });
        const y = L.forward(x, shape, view(new Float64Array(total)));
        const r = ref.forwardTraining(data, dd, null, null, 1e-5);
        const tol = dtype === 'float32' ? 1e-4 : 1e-10;
        expectClose(y, r.y, tol, `${dtype} y [${shape.join(', ')}]`);
        const dx = L.backward(view(dy), view(new Float64Array(total)));
        expectClose(dx, ref.backward(data, dy, dd, null, r.mean, r.invstd, true).dx, tol * 10, `${dtype} dx [${shape.join(', ')}]`);
        L.eval();
        const ye = L.forward(x, shape, view(new Float64Array(total)));
        expectClose(ye, ref.forwardInference(data, dd, null, null, L.runningMean as Float64Array, L.runningVar as Float64Array, 1e-5), tol, `${dtype} eval y`);
      }
    }
  });

  it('in-place forward in evaluation mode is allowed; after an in-place training forward backward refuses', function () {
    const L = primed().eval();
    const x = X0.slice();
    const want = primed().eval().forward(X0, SHAPE);
    expect(L.forward(x, SHAPE, x)).to.equal(x);
    expectBitwiseEqual(x, want, 'in-place y');
    const T = primed();
    const x2 = X0.slice();
    T.forward(x2, SHAPE, x2);
    const before = snapshot(T);
    expectError(() => T.backward(DY), bn.BatchNormError, 'ERR_BN_INPUT_OVERWRITTEN', ['BatchNorm2d.backward: the last forward wrote its output over x']);
    expectUnchanged(T, before);
  });

  it('loadStateDict accepts float64 entries, bigint counters and extra keys when not strict', function () {
    const L = primed();
    const src = primed();
    src.forward(X0, SHAPE);
    const dict: Loose = {};
    for (const [k, v] of Object.entries(src.stateDict())) dict[k] = v instanceof Float32Array ? Float64Array.from(v) : v;
    dict.extra = 'ignored';
    L.loadStateDict(dict, { strict: false });
    expectBitwiseEqual(L.runningMean, src.runningMean, 'runningMean');
    expectBitwiseEqual(L.weight, src.weight, 'weight');
    expect(L.numBatchesTracked).to.equal(3);
    L.loadStateDict({ ...src.stateDict(), num_batches_tracked: 12n } as Loose);
    expect(L.numBatchesTracked).to.equal(12);
  });
});

describe('hostile inputs: safetensors files', function () {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bn-hostile-'));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  function good(): Uint8Array {
    const L = primed();
    const t: Record<string, { shape: number[]; data: Float32Array | BigInt64Array }> = {};
    for (const [k, v] of Object.entries(L.stateDict())) t[k] = { shape: k === 'num_batches_tracked' ? [] : [3], data: v as Float32Array };
    return bn.serializeSafetensors(t);
  }

  /** Rewrites the JSON header of a valid file (keeping the data section). */
  function withHeader(edit: (h: Loose) => void, bytes = good()): Uint8Array {
    const hl = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
    const h = JSON.parse(Buffer.from(bytes.subarray(8, 8 + hl)).toString('utf8'));
    edit(h);
    const json = Buffer.from(JSON.stringify(h), 'utf8');
    const out = new Uint8Array(8 + json.length + bytes.length - 8 - hl);
    new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
    out.set(json, 8);
    out.set(bytes.subarray(8 + hl), 8 + json.length);
    return out;
  }

  function headerLength(bytes: Uint8Array, h: bigint): Uint8Array {
    const out = bytes.slice();
    new DataView(out.buffer).setBigUint64(0, h, true);
    return out;
  }

  const cases: Array<[string, () => Uint8Array, bn.BatchNormErrorCode, Array<string | RegExp>]> = [
    ['an empty file', () => new Uint8Array(0), 'ERR_BN_SAFETENSORS', ['shorter than the 8-byte header length']],
    ['5 bytes', () => new Uint8Array(5), 'ERR_BN_SAFETENSORS', ['file is 5 bytes']],
    ['truncated in the data', () => good().subarray(0, good().length - 5), 'ERR_BN_SAFETENSORS', ['data_offsets', 'outside']],
    ['truncated in the header', () => good().subarray(0, 20), 'ERR_BN_SAFETENSORS', ['header length', 'runs past the end of the file']],
    ['a header length beyond the file', () => headerLength(good(), 1n << 40n), 'ERR_BN_SAFETENSORS', ['header length 1099511627776 runs past the end']],
    ['a header length of 2^64 - 1', () => headerLength(good(), (1n << 64n) - 1n), 'ERR_BN_SAFETENSORS', ['runs past the end']],
    ['a header that is not JSON', () => { const b = good(); b[9] = 0x7b; b[10] = 0x7b; return b; }, 'ERR_BN_SAFETENSORS', ['not valid UTF-8 JSON']],
    ['a header that is invalid UTF-8', () => { const b = good(); b[12] = 0xff; return b; }, 'ERR_BN_SAFETENSORS', ['not valid UTF-8 JSON']],
    ['a header that is a JSON array', () => { const j = Buffer.from('[1,2]'); const b = new Uint8Array(8 + j.length); new DataView(b.buffer).setBigUint64(0, BigInt(j.length), true); b.set(j, 8); return b; }, 'ERR_BN_SAFETENSORS', ['header must be a JSON object']],
    ['offsets beyond the data', () => withHeader((h) => { h.weight.data_offsets = [0, 4000]; }), 'ERR_BN_SAFETENSORS', ["tensor 'weight' data_offsets [0, 4000] lie outside"]],
    ['offsets reversed', () => withHeader((h) => { h.weight.data_offsets = [12, 0]; }), 'ERR_BN_SAFETENSORS', ['data_offsets [12, 0]']],
    ['negative offsets', () => withHeader((h) => { h.weight.data_offsets = [-4, 8]; }), 'ERR_BN_SAFETENSORS', ['invalid data_offsets [-4,8]']],
    ['offsets of 2^60', () => withHeader((h) => { h.weight.data_offsets = [2 ** 60, 2 ** 60 + 12]; }), 'ERR_BN_SAFETENSORS', ['invalid data_offsets']],
    ['fractional offsets', () => withHeader((h) => { h.weight.data_offsets = [0.5, 12.5]; }), 'ERR_BN_SAFETENSORS', ['invalid data_offsets']],
    ['an unknown dtype', () => withHeader((h) => { h.weight.dtype = 'BOOL'; }), 'ERR_BN_SAFETENSORS', ['dtype "BOOL"', 'supported: F32, F64, I64, BF16, F16']],
    ['a shape lying about the size', () => withHeader((h) => { h.weight.shape = [4]; }), 'ERR_BN_SAFETENSORS', ["tensor 'weight' of shape [4] and dtype F32 needs 16 bytes, its offsets span 12"]],
    ['a negative shape', () => withHeader((h) => { h.weight.shape = [-3]; }), 'ERR_BN_SAFETENSORS', ['invalid shape [-3]']],
    ['a huge shape', () => withHeader((h) => { h.weight.shape = [2 ** 30, 2 ** 30, 2 ** 30]; }), 'ERR_BN_SAFETENSORS', ['needs']],
    ['overlapping tensors', () => withHeader((h) => { h.bias.data_offsets = h.weight.data_offsets; }), 'ERR_BN_SAFETENSORS', ['overlap']],
    ['an entry that is null', () => withHeader((h) => { h.weight = null; }), 'ERR_BN_SAFETENSORS', ["entry 'weight' must be an object"]],
    ['non-string metadata', () => withHeader((h) => { h.__metadata__ = { a: 1 }; }), 'ERR_BN_SAFETENSORS', ['__metadata__.a must be a string']],
  ];

  for (const [name, make, code, msg] of cases) {
    it(`${name}: parseSafetensors and loadSafetensors throw ${code}, the layer unchanged`, function () {
      const bytes = make();
      expectError(() => bn.parseSafetensors(bytes), bn.BatchNormError, code, ['safetensors: ', ...msg]);
      const file = path.join(dir, `${name.replace(/[^a-z0-9]+/gi, '_')}.safetensors`);
      fs.writeFileSync(file, bytes);
      const L = primed();
      const before = snapshot(L);
      expectError(() => L.loadSafetensors(file), bn.BatchNormError, code, msg);
      expectUnchanged(L, before, name);
    });
  }

  it('a well-formed file with wrongly sized or missing entries: ERR_BN_STATE_DICT, the layer unchanged', function () {
    const L = primed();
    const before = snapshot(L);
    const wrong = path.join(dir, 'wrong-size.safetensors');
    bn.writeSafetensorsFile(wrong, {
      weight: { shape: [4], data: new Float32Array(4) }, bias: { shape: [3], data: new Float32Array(3) },
      running_mean: { shape: [3], data: new Float32Array(3) }, running_var: { shape: [3], data: new Float32Array(3) },
      num_batches_tracked: { shape: [], data: BigInt64Array.of(1n) },
    });
    expectError(() => L.loadSafetensors(wrong), bn.BatchNormRangeError, 'ERR_BN_STATE_DICT', ['weight must have 3 elements']);
    const ok = path.join(dir, 'ok.safetensors');
    fs.writeFileSync(ok, good());
    expectError(() => L.loadSafetensors(ok, { prefix: 'model.bn1.' }), bn.BatchNormRangeError, 'ERR_BN_STATE_DICT', ['missing weight, bias, running_mean, running_var, num_batches_tracked']);
    expectError(() => L.loadSafetensors(ok, { prefix: 7 } as Loose), bn.BatchNormTypeError, 'ERR_BN_INVALID_ARG_TYPE', ['prefix must be a string', 'received the number 7']);
    expectError(() => L.loadSafetensors(ok, null as Loose), bn.BatchNormTypeError, 'ERR_BN_INVALID_ARG_TYPE', ['options must be an object', 'received null']);
    expectError(() => L.loadSafetensors(3 as Loose), bn.BatchNormTypeError, 'ERR_BN_INVALID_ARG_TYPE', ['path must be a non-empty string', 'received the number 3']);
    const missing = expectError(() => L.loadSafetensors(path.join(dir, 'does-not-exist.safetensors')), bn.BatchNormError, 'ERR_BN_IO', ['does-not-exist', 'ENOENT']);
    expect((missing as Loose).cause.code, 'the system error is kept as the cause').to.equal('ENOENT');
    expectUnchanged(L, before);
    // And the valid file loads, including from a Buffer that lives inside Node's shared pool.
    L.loadSafetensors(ok);
    const src = primed();
    expectBitwiseEqual(L.weight, src.weight, 'weight loaded');
    expectBitwiseEqual(L.runningVar, src.runningVar, 'runningVar loaded');
    const pooled = Buffer.from(good());
    const parsed = bn.parseSafetensors(Buffer.concat([Buffer.from([1, 2, 3]), pooled]).subarray(3));
    expectBitwiseEqual(parsed.tensors.running_mean.data as Float32Array, src.runningMean, 'running_mean parsed from a pooled Buffer');
  });

  it('parseSafetensors refuses non-bytes and accepts SharedArrayBuffer-backed bytes', function () {
    for (const v of [undefined, 'abc', new ArrayBuffer(16), [1, 2, 3], new Float32Array(4)]) {
      expectError(() => bn.parseSafetensors(v as Loose), bn.BatchNormError, 'ERR_BN_SAFETENSORS', ['expected a Uint8Array or Buffer', 'received']);
    }
    const g = good();
    const s = new Uint8Array(new SharedArrayBuffer(g.length));
    s.set(g);
    expectBitwiseEqual(bn.parseSafetensors(s).tensors.weight.data as Float32Array, primed().weight, 'weight from shared bytes');
  });
});

describe('hostile inputs: the raw binding (bypassing the facade)', function () {
  const b = native() as Loose;
  const F = Float32Array;
  const D = Float64Array;
  const nul = null;

  interface RawCase { name: string; call: () => unknown; cls: typeof TypeError | typeof RangeError; code: string; msg: string[] }
  // Valid named calls on [2, 2, 1] (or as the overrides say); each case breaks one thing.
  const shape = { n: 2, c: 2, s: 1, channelsLast: false };
  const ftCall = (o: Record<string, unknown> = {}) => ({
    fn: 'raw', x: new F(4), out: new F(4), ...shape, weight: nul, bias: nul, saveMean: new F(2), saveInvstd: new F(2),
    batchMean: new D(2), batchInvstd: new D(2), runningMean: nul, runningVar: nul, eps: 1e-5, momentum: 0.1, ...o,
  });
  const fiCall = (o: Record<string, unknown> = {}) => ({
    fn: 'raw', x: new F(4), out: new F(4), ...shape, weight: nul, bias: nul, runningMean: new F(2), runningVar: new F(2), eps: 1e-5, ...o,
  });
  const bwCall = (o: Record<string, unknown> = {}) => ({
    fn: 'raw', x: new F(4), dy: new F(4), out: nul, ...shape, weight: nul, training: true, mean: new D(2), invstd: new D(2),
    runningVar: nul, eps: 0, gradWeight: nul, gradBias: nul, accumulate: true, ...o,
  });
  const ft = (o: Record<string, unknown>) => () => b.forwardTraining(ftCall(o));
  const fi = (o: Record<string, unknown>) => () => b.forwardInference(fiCall(o));
  const bw = (o: Record<string, unknown>) => () => b.backward(bwCall(o));
  const cases: RawCase[] = [
    { name: 'no arguments', call: () => b.forwardTraining(), cls: TypeError, code: 'ERR_BN_INVALID_ARG_TYPE', msg: ['expects one options object', 'received undefined'] },
    { name: 'positional arguments', call: () => b.forwardTraining(new F(4), new F(4), 2, 2, 1), cls: TypeError, code: 'ERR_BN_INVALID_ARG_TYPE', msg: ["fn must be a string"] },
    { name: 'numbers as arrays', call: ft({ x: 1 }), cls: TypeError, code: 'ERR_BN_INVALID_ARG_TYPE', msg: ['raw: x must be', 'received the number 1'] },
    { name: 'a missing dimension', call: () => b.forwardInference({ ...fiCall(), n: undefined }), cls: RangeError, code: 'ERR_BN_BAD_SHAPE', msg: ['raw: n must be an integer >= 1', 'received undefined'] },
    { name: 'n*c*s larger than the arrays', call: ft({ s: 2 }), cls: RangeError, code: 'ERR_BN_BAD_LENGTH', msg: ['raw: x must have 8 elements', 'received 4'] },
    { name: 'out shorter than x', call: ft({ out: new F(3) }), cls: RangeError, code: 'ERR_BN_BAD_LENGTH', msg: ['out must have 4'] },
    { name: 'a dimension of 2^60', call: ft({ n: 2 ** 60 }), cls: RangeError, code: 'ERR_BN_BAD_SHAPE', msg: ['n must be an integer >= 1'] },
    { name: 'n*c*s overflowing 64 bits', call: ft({ n: 2 ** 31, c: 2 ** 31, s: 2 ** 31 }), cls: RangeError, code: 'ERR_BN_BAD_SHAPE', msg: ['too large'] },
    { name: 'a fractional dimension', call: ft({ n: 1.5 }), cls: RangeError, code: 'ERR_BN_BAD_SHAPE', msg: ['n must be an integer >= 1', '1.5'] },
    { name: 'a string dimension', call: ft({ n: '2' }), cls: RangeError, code: 'ERR_BN_BAD_SHAPE', msg: ['n must be', 'a string'] },
    { name: 'Float64 running stats for float32 x', call: ft({ runningMean: new D(2), runningVar: new D(2) }), cls: TypeError, code: 'ERR_BN_DTYPE_MISMATCH', msg: ['runningMean must be a Float32Array', 'received a Float64Array'] },
    { name: 'Float32 batch stats (must be Float64)', call: ft({ batchMean: new F(2) }), cls: TypeError, code: 'ERR_BN_DTYPE_MISMATCH', msg: ['batchMean must be a Float64Array', 'received a Float32Array'] },
    { name: 'out partly overlapping x', call: () => { const a = new F(8); return b.forwardTraining(ftCall({ x: a.subarray(0, 4), out: a.subarray(1, 5) })); }, cls: RangeError, code: 'ERR_BN_OVERLAP', msg: ['out partly overlaps x'] },
    { name: 'runningMean overlapping runningVar', call: () => { const a = new F(3); return b.forwardTraining(ftCall({ runningMean: a.subarray(0, 2), runningVar: a.subarray(1, 3) })); }, cls: RangeError, code: 'ERR_BN_OVERLAP', msg: ['must not share memory with runningVar'] },
    { name: 'saveMean inside out', call: () => { const a = new F(8); return b.forwardTraining(ftCall({ out: a.subarray(0, 4), saveMean: a.subarray(2, 4) })); }, cls: RangeError, code: 'ERR_BN_OVERLAP', msg: ['saveMean must not share memory with out'] },
    { name: 'eps NaN', call: ft({ eps: NaN }), cls: RangeError, code: 'ERR_BN_OUT_OF_RANGE', msg: ['raw: eps must be finite and >= 0'] },
    { name: 'eps -1', call: fi({ eps: -1 }), cls: RangeError, code: 'ERR_BN_OUT_OF_RANGE', msg: ['eps'] },
    { name: 'eps a string', call: ft({ eps: '1e-5' }), cls: TypeError, code: 'ERR_BN_INVALID_ARG_TYPE', msg: ['eps must be a number', 'a string'] },
    { name: 'momentum 2', call: ft({ runningMean: new F(2), runningVar: new F(2), momentum: 2 }), cls: RangeError, code: 'ERR_BN_OUT_OF_RANGE', msg: ['momentum'] },
    { name: 'momentum NaN', call: ft({ runningMean: new F(2), runningVar: new F(2), momentum: NaN }), cls: RangeError, code: 'ERR_BN_OUT_OF_RANGE', msg: ['momentum'] },
    { name: 'only runningMean', call: ft({ runningMean: new F(2) }), cls: TypeError, code: 'ERR_BN_INVALID_ARG_TYPE', msg: ['together'] },
    { name: 'one value per channel', call: ft({ x: new F(2), out: new F(2), n: 1 }), cls: RangeError, code: 'ERR_BN_TOO_FEW_VALUES', msg: ['more than 1 value per channel'] },
    { name: 'an Int32Array x', call: ft({ x: new Int32Array(4) }), cls: TypeError, code: 'ERR_BN_INVALID_ARG_TYPE', msg: ['received a typed array of another kind'] },
    { name: 'a detached x', call: () => b.forwardTraining(ftCall({ x: detachedF32(4) })), cls: RangeError, code: 'ERR_BN_BAD_LENGTH', msg: ['detached'] },
    { name: 'inference without runningMean', call: fi({ runningMean: nul }), cls: TypeError, code: 'ERR_BN_INVALID_ARG_TYPE', msg: ['runningMean must be', 'received null'] },
    { name: 'inference out overlapping the variance', call: () => { const a = new F(6); return b.forwardInference(fiCall({ out: a.subarray(0, 4), runningVar: a.subarray(3, 5) })); }, cls: RangeError, code: 'ERR_BN_OVERLAP', msg: ['out must not share memory with runningVar'] },
    { name: 'backward with Float32 mean', call: bw({ mean: new F(2) }), cls: TypeError, code: 'ERR_BN_DTYPE_MISMATCH', msg: ['mean must be a Float64Array'] },
    { name: 'backward with a number flag', call: bw({ training: 1 }), cls: TypeError, code: 'ERR_BN_INVALID_ARG_TYPE', msg: ['training must be a boolean'] },
    { name: 'backward in evaluation mode without runningVar', call: bw({ training: false, invstd: nul }), cls: TypeError, code: 'ERR_BN_INVALID_ARG_TYPE', msg: ['runningVar must be'] },
    { name: 'backward out partly overlapping x', call: () => { const a = new F(6); return b.backward(bwCall({ x: a.subarray(0, 4), out: a.subarray(2, 6) })); }, cls: RangeError, code: 'ERR_BN_OVERLAP', msg: ['out must not share memory with x'] },
    { name: 'backward gradWeight overlapping gradBias', call: () => { const g = new F(3); return b.backward(bwCall({ gradWeight: g.subarray(0, 2), gradBias: g.subarray(1, 3) })); }, cls: RangeError, code: 'ERR_BN_OVERLAP', msg: ['gradWeight must not share memory with gradBias'] },
    { name: 'backward gradWeight inside dy', call: () => { const a = new F(4); return b.backward(bwCall({ dy: a, gradWeight: a.subarray(0, 2) })); }, cls: RangeError, code: 'ERR_BN_OVERLAP', msg: ['gradWeight must not share memory with dy'] },
    { name: 'async entry point with garbage (throws synchronously)', call: () => b.forwardTrainingAsync(1), cls: TypeError, code: 'ERR_BN_INVALID_ARG_TYPE', msg: ['expects one options object'] },
    { name: 'async backward with short arrays', call: () => b.backwardAsync(bwCall({ dy: new F(2) })), cls: RangeError, code: 'ERR_BN_BAD_LENGTH', msg: ['dy must have 4'] },
    { name: 'async call on a resizable buffer', call: () => b.forwardTrainingAsync(ftCall({ x: new F(new (ArrayBuffer as Loose)(16, { maxByteLength: 64 })) })), cls: TypeError, code: 'ERR_BN_RESIZABLE_BUFFER', msg: ['raw: x is a view of a resizable ArrayBuffer'] },
    { name: 'setNumThreads(0)', call: () => b.setNumThreads(0), cls: RangeError, code: 'ERR_BN_OUT_OF_RANGE', msg: ['setNumThreads'] },
    { name: 'setNumThreads(2^40)', call: () => b.setNumThreads(2 ** 40), cls: RangeError, code: 'ERR_BN_OUT_OF_RANGE', msg: ['setNumThreads'] },
    { name: 'setSimdLevel(3)', call: () => b.setSimdLevel(3), cls: TypeError, code: 'ERR_BN_INVALID_ARG_TYPE', msg: ['setSimdLevel'] },
    { name: 'setSimdLevel("sse")', call: () => b.setSimdLevel('sse'), cls: RangeError, code: 'ERR_BN_OUT_OF_RANGE', msg: ["received 'sse'"] },
  ];

  for (const c of cases) {
    it(`${c.name}: ${c.cls.name} ${c.code}`, function () {
      const threads = b.getNumThreads();
      expectError(c.call, c.cls as Loose, c.code, c.msg);
      expect(b.getNumThreads()).to.equal(threads);
    });
  }

  it('the first call of each op checks its keys: an unknown field is ERR_BN_UNKNOWN_OPTION (facade and addon drifted apart)', function () {
    // In a child: this process has already made every op's first call through the facade.
    const load = path.resolve(__dirname, '..', 'lib', 'load');
    const script = `
      const b = require(${JSON.stringify(load)}).native();
      const F = Float32Array, D = Float64Array;
      const call = { fn: 'raw', x: new F(4), out: new F(4), n: 2, c: 2, s: 1, channelsLast: false, weight: null, bias: null,
        saveMean: new F(2), saveInvstd: new F(2), batchMean: new D(2), batchInvstd: new D(2), runningMean: null, runningVar: null,
        eps: 1e-5, momentum: 0.1 };
      try { b.forwardTraining({ ...call, momentun: 0.5 }); process.exit(3); } catch (e) {
        if (e.code !== 'ERR_BN_UNKNOWN_OPTION' || !e.message.includes("raw: the native call has an unknown field 'momentun'")) throw e;
      }
      b.forwardTraining(call);
      process.stdout.write('alive');`;
    expectChildAlive(script);
  });

  it('a raw async call survives the transfer (detachment) of its buffers while it runs', function () {
    // The facade marks the buffers of async calls untransferable; the binding alone must not be
    // crashable either. Run in a child: a use-after-free would kill it.
    const load = path.resolve(__dirname, '..', 'lib', 'load');
    const script = `
      const v8 = require('v8'); v8.setFlagsFromString('--expose-gc'); const gc = require('vm').runInNewContext('gc');
      const b = require(${JSON.stringify(load)}).native();
      (async () => {
        for (let k = 0; k < 3; k++) {
          const n = 32 * 64 * 3136; const x = new Float32Array(n).fill(1); const y = new Float32Array(n);
          const C = 64; const st = () => new Float32Array(C); const st64 = () => new Float64Array(C);
          const p = b.forwardTrainingAsync({ fn: 'raw', x, out: y, n: 32, c: C, s: 3136, channelsLast: false, weight: null, bias: null,
            saveMean: st(), saveInvstd: st(), batchMean: st64(), batchInvstd: st64(), runningMean: null, runningVar: null, eps: 1e-5, momentum: 0.1 });
          await new Promise((r) => setImmediate(r));
          try { structuredClone(y.buffer, { transfer: [y.buffer] }); structuredClone(x.buffer, { transfer: [x.buffer] }); } catch (e) { /* refusing is fine */ }
          gc(); gc();
          try { await p; } catch (e) { if (!e.code) throw e; }
        }
        process.stdout.write('alive');
      })();`;
    expectChildAlive(script);
  });

  it('a refused raw call writes nothing into the arrays it was given', function () {
    const y = new F(8).fill(7);
    const rm = new F(2).fill(3);
    const rv = new F(2).fill(4);
    const call = (o: Record<string, unknown>) => () => b.forwardTraining(ftCall({ x: new F(8), out: y, s: 2, runningMean: rm, runningVar: rv, ...o }));
    expect(call({ momentum: 1.5 })).to.throw(RangeError);
    expect(call({ eps: -1 })).to.throw(RangeError);
    expectBitwiseEqual(y, new F(8).fill(7), 'y');
    expectBitwiseEqual(rm, new F(2).fill(3), 'runningMean');
    expectBitwiseEqual(rv, new F(2).fill(4), 'runningVar');
  });
});
