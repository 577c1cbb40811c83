// SIMD tails: every channel count C and spatial size S in {1, w-1, w, w+1, 2w+3} for the vector
// widths w in {4, 8, 16} (float64/float32 lanes of NEON, AVX2, AVX-512), in every SIMD level,
// float32 and float64. Outputs are NaN-prefilled views inside larger NaN-filled buffers, so an
// unwritten element or a write past either end is caught; x and the outputs sit at unaligned
// offsets in half of the cases.
import { expect } from 'chai';
import {
  batchNormBackward, batchNormInference, batchNormTraining, setSimdLevel, simdLevel, supportedSimdLevels,
} from '../lib';
import * as ref from './helpers/reference';
import { assertClose } from './helpers/reference';
import { AnyFloatArray, ctorOf, DTypeName, product, randn, randu, Rng } from './helpers/random';

const WIDTHS = [4, 8, 16];
const SIZES = [...new Set(WIDTHS.flatMap((w) => [1, w - 1, w, w + 1, 2 * w + 3]))].sort((a, b) => a - b);
const N = 2;
const GUARD = 5; // NaN elements checked after the end of each output view

/** A view of `length` elements at element offset `offset` of a larger buffer filled with `fill`. */
function viewIn(dtype: DTypeName, length: number, offset: number, fill: number): { view: AnyFloatArray; whole: AnyFloatArray } {
  const T = ctorOf(dtype);
  const whole = new T(offset + length + GUARD).fill(fill);
  return { view: whole.subarray(offset, offset + length), whole };
}

/** Every element outside [offset, offset + length) of `whole` must still be NaN. */
function expectGuardsIntact(what: string, whole: AnyFloatArray, offset: number, length: number): void {
  for (let i = 0; i < whole.length; i++) {
    if (i >= offset && i < offset + length) continue;
    if (!Number.isNaN(whole[i])) throw new Error(`${what}: element ${i - offset} relative to the view (outside it) was overwritten with ${whole[i]}`);
  }
}

function checkOne(dtype: DTypeName, C: number, S: number, seed: number): void {
  const rng = new Rng(seed);
  const shape = S === 1 ? [N, C] : [N, C, S];
  const d = { n: N, c: C, s: S };
  const total = N * C * S;
  const tol = dtype === 'float64' ? 1e-12 : 4e-6;
  // Unaligned (1 element: 4 bytes for float32, 8 for float64) or 64-byte aligned offsets.
  const off = (C + S) % 2 === 0 ? 1 : 16;
  const label = `${simdLevel()} ${dtype} C=${C} S=${S} offset=${off}`;
  const affine = (C * S) % 3 !== 0;

  const xb = viewIn(dtype, total, off, NaN);
  xb.view.set(randn(rng, total, dtype, 1.5, 2));
  const x = xb.view;
  const weight = affine ? randn(rng, C, dtype, 1, 0.5) : null;
  const bias = affine ? randn(rng, C, dtype, 0, 0.5) : null;
  const rm0 = randn(rng, C, dtype, 0, 0.3);
  const rv0 = randu(rng, C, dtype, 0.5, 2);
  const dy = randn(rng, total, dtype);
  const eps = 1e-3;

  // Training forward.
  const yb = viewIn(dtype, total, off, NaN);
  const runningMean = rm0.slice();
  const runningVar = rv0.slice();
  const tr = batchNormTraining(x, shape, { weight, bias, runningMean, runningVar, momentum: 0.25, eps, out: yb.view });
  expect(tr.y).to.equal(yb.view);
  const st = ref.batchStats(x, d, eps);
  assertClose(`${label} train y`, yb.view, ref.normalize(x, d, st.mean, st.invstd, weight, bias), tol);
  expectGuardsIntact(`${label} train y`, yb.whole, off, total);
  assertClose(`${label} saveMean`, tr.saveMean, st.mean, tol);
  assertClose(`${label} saveInvstd`, tr.saveInvstd, st.invstd, tol);
  const up = ref.runningUpdate(rm0, rv0, st, N * S, 0.25, 1);
  assertClose(`${label} runningMean`, runningMean, up.mean, tol);
  assertClose(`${label} runningVar`, runningVar, up.variance, tol);
  expectGuardsIntact(`${label} x untouched`, xb.whole, off, total);

  // Training backward: dx into a NaN view, parameter gradients written (not accumulated) into NaN arrays.
  const T = ctorOf(dtype);
  const dxb = viewIn(dtype, total, off, NaN);
  const gw = new T(C).fill(NaN);
  const gb = new T(C).fill(NaN);
  batchNormBackward(x, dy, shape, { weight, training: true, mean: tr.batchMean, invstd: tr.batchInvstd, gradWeight: gw, gradBias: gb, accumulate: false, out: dxb.view });
  const g = ref.backward(x, dy, d, weight, st.mean, st.invstd, true);
  assertClose(`${label} train dx`, dxb.view, g.dx, tol);
  expectGuardsIntact(`${label} train dx`, dxb.whole, off, total);
  assertClose(`${label} train dweight`, gw, g.dweight, tol);
  assertClose(`${label} train dbias`, gb, g.dbias, tol);

  // Inference forward and backward.
  const eb = viewIn(dtype, total, off, NaN);
  batchNormInference(x, shape, { weight, bias, runningMean: rm0, runningVar: rv0, eps, out: eb.view });
  assertClose(`${label} eval y`, eb.view, ref.forwardInference(x, d, weight, bias, rm0, rv0, eps), tol);
  expectGuardsIntact(`${label} eval y`, eb.whole, off, total);
  const edxb = viewIn(dtype, total, off, NaN);
  gw.fill(NaN);
  gb.fill(NaN);
  batchNormBackward(x, dy, shape, { weight, training: false, runningMean: rm0, runningVar: rv0, eps, gradWeight: gw, gradBias: gb, accumulate: false, out: edxb.view });
  const eInv = Array.from(rv0, (v) => 1 / Math.sqrt(v + eps));
  const eg = ref.backward(x, dy, d, weight, rm0, eInv, false);
  assertClose(`${label} eval dx`, edxb.view, eg.dx, tol);
  expectGuardsIntact(`${label} eval dx`, edxb.whole, off, total);
  assertClose(`${label} eval dweight`, gw, eg.dweight, tol);
  assertClose(`${label} eval dbias`, gb, eg.dbias, tol);
}

describe('SIMD tails: C and S in {1, w-1, w, w+1, 2w+3}, w in {4, 8, 16}, NaN-guarded outputs', () => {
  const original = simdLevel();
  after(() => setSimdLevel(original));

  it('sweeps the sizes 1, 3, 4, 5, 7, 8, 9, 11, 15, 16, 17, 19, 35', () => {
    expect(SIZES).to.deep.equal([1, 3, 4, 5, 7, 8, 9, 11, 15, 16, 17, 19, 35]);
  });

  for (const level of supportedSimdLevels()) {
    describe(`SIMD level ${level}`, () => {
      before(() => setSimdLevel(level));
      for (const dtype of ['float32', 'float64'] as const) {
        for (const C of SIZES) {
          it(`${dtype}, C = ${C}, every S`, () => {
            expect(simdLevel()).to.equal(level);
            for (const S of SIZES) checkOne(dtype, C, S, C * 1000 + S);
          });
        }
      }
    });
  }
});

// Outputs of 16 MB or more are written with non-temporal (streaming) stores after an aligning
// head; check that path with an unaligned, NaN-guarded output view in every SIMD level.
describe('large outputs (streaming stores): unaligned NaN-guarded views', () => {
  const original = simdLevel();
  after(() => setSimdLevel(original));
  const shape = [2, 3, 1024, 683]; // 4,196,352 float32 values: 16.8 MB per output
  const d = ref.dimsOf(shape);
  const total = product(shape);
  const weight = Float32Array.of(1.5, -0.5, 0.75);
  const bias = Float32Array.of(0.1, 0.2, -0.3);
  let xb: { view: AnyFloatArray; whole: AnyFloatArray };
  let dy: AnyFloatArray;
  let yRef: Float64Array;
  let gRef: ref.BackwardRef;
  before(() => {
    const rng = new Rng(4242);
    xb = viewIn('float32', total, 1, NaN);
    xb.view.set(randn(rng, total, 'float32', -1, 2));
    dy = randn(rng, total, 'float32');
    const st = ref.batchStats(xb.view, d, 1e-5);
    yRef = ref.normalize(xb.view, d, st.mean, st.invstd, weight, bias);
    gRef = ref.backward(xb.view, dy, d, weight, st.mean, st.invstd, true);
  });

  for (const level of supportedSimdLevels()) {
    it(`${level}: training forward and backward into views at element offset 3 of NaN buffers`, () => {
      expect(total * 4).to.be.greaterThan(16 * 1024 * 1024);
      setSimdLevel(level);
      const yb = viewIn('float32', total, 3, NaN);
      const tr = batchNormTraining(xb.view, shape, { weight, bias, out: yb.view });
      assertClose(`${level} streaming y`, yb.view, yRef, 4e-6);
      expectGuardsIntact(`${level} streaming y`, yb.whole, 3, total);
      const dxb = viewIn('float32', total, 3, NaN);
      const g = batchNormBackward(xb.view, dy, shape, { weight, training: true, mean: tr.batchMean, invstd: tr.batchInvstd, out: dxb.view });
      assertClose(`${level} streaming dx`, dxb.view, gRef.dx, 4e-6);
      expectGuardsIntact(`${level} streaming dx`, dxb.whole, 3, total);
      assertClose(`${level} dweight`, g.gradWeight, gRef.dweight, 4e-6);
      assertClose(`${level} dbias`, g.gradBias, gRef.dbias, 4e-6);
    });
  }
});

describe('output views: the guard check and length checks', () => {
  it('the guard check is not vacuous: a write one past the end of the view is reported', () => {
    const { view, whole } = viewIn('float32', 6, 1, NaN);
    view.fill(0);
    expectGuardsIntact('intact', whole, 1, 6);
    whole[7] = 0; // one past the end of the view
    expect(() => expectGuardsIntact('overrun', whole, 1, 6)).to.throw(/element 6 relative to the view/);
  });

  it('an out view of the wrong length is refused and nothing is written', () => {
    const whole = new Float32Array(20).fill(NaN);
    const x = new Float32Array(12).fill(1);
    x[0] = 2;
    expect(() => batchNormInference(x, [2, 3, 2], { runningMean: new Float32Array(3), runningVar: new Float32Array(3).fill(1), out: whole.subarray(4, 14) }))
      .to.throw(RangeError).with.property('code', 'ERR_BN_BAD_LENGTH');
    expectGuardsIntact('too-short out', whole, 0, 0);
  });
});
