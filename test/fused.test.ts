// Fused BN+ReLU and BN+Add+ReLU (issue 13) against the float64 reference of the unfused chain:
// every SIMD level, float32 and float64, NCHW and channels-last, training and evaluation, with and
// without a residual, over the sizes where SIMD tails break, into NaN-poisoned outputs; exact zeros
// at the kink, NaN through the ReLU, in place over x and over z, sync and async, functional,
// finite differences away from the kink, scaleShift.
import { expect } from 'chai';
import {
  BatchNorm, BatchNorm2d, batchNormBackward, batchNormBackwardAsync, batchNormInference, batchNormTraining, batchNormTrainingAsync,
  setSimdLevel, simdLevel, supportedSimdLevels,
} from '../lib';
import * as ref from './helpers/reference';
import { fromChannelsLast, toChannelsLast } from './helpers/layout';
import { AnyFloatArray, ctorOf, DTypeName, randn, Rng } from './helpers/random';

type Arr = AnyFloatArray;

interface Case {
  x: Arr;
  z: Arr | null;
  dy: Arr;
  weight: Arr;
  bias: Arr;
  runningMean: Arr;
  runningVar: Arr;
  shape: number[];
}

function makeCase(rng: Rng, dtype: DTypeName, shape: number[], residual: boolean): Case {
  const total = shape.reduce((p, v) => p * v, 1);
  const C = shape[1];
  return {
    x: randn(rng, total, dtype, 0.3, 1.5),
    z: residual ? randn(rng, total, dtype) : null,
    dy: randn(rng, total, dtype),
    weight: randn(rng, C, dtype, 1, 0.5),
    bias: randn(rng, C, dtype, 0, 0.5),
    runningMean: randn(rng, C, dtype, 0, 0.3),
    runningVar: Float64Array.from(randn(rng, C, 'float64'), (v) => Math.fround(0.5 + Math.abs(v))) as Arr,
    shape,
  };
}

/** The unfused chain in float64: BN (batch or running statistics), + z, ReLU; backward with the
 * mask taken from the y under test (the contract: dy where y > 0, or y NaN). NCHW. */
function reference(k: Case, training: boolean, y: ArrayLike<number>) {
  const d = ref.dimsOf(k.shape);
  const eps = 1e-5;
  const st = training ? ref.batchStats(k.x, d, eps) : null;
  const mean = st ? st.mean : k.runningMean;
  const invstd = st ? st.invstd : Float64Array.from(k.runningVar as ArrayLike<number>, (v) => 1 / Math.sqrt(v + eps));
  const bn = ref.normalize(k.x, d, mean, invstd, k.weight, k.bias);
  const pre = bn.map((v, i) => v + (k.z ? k.z[i] : 0));
  const yRef = pre.map((v) => (v < 0 ? 0 : v));
  const g = Float64Array.from(k.dy as ArrayLike<number>, (v, i) => (y[i] <= 0 ? 0 : v));
  const b = ref.backward(k.x, g, d, k.weight, mean, invstd, training);
  return { y: yRef, pre, dx: b.dx, dz: g, dweight: b.dweight, dbias: b.dbias };
}

/** Where the reference's pre-activation is this close to 0, float32 may put y on either side. */
function maskAgrees(pre: Float64Array, y: ArrayLike<number>, tol: number): boolean {
  for (let i = 0; i < pre.length; i++) if (Math.abs(pre[i]) > tol && (pre[i] > 0) !== (y[i] > 0)) return false;
  return true;
}

/** One layer step (forward + backward) in a layout, outputs poisoned with NaN first; NCHW back. */
function layerStep(k: Case, dtype: DTypeName, training: boolean, channelsLast: boolean) {
  const [N, C] = k.shape;
  const S = k.shape.slice(2).reduce((p, v) => p * v, 1);
  const T = ctorOf(dtype);
  const lay = (a: Arr) => (channelsLast ? toChannelsLast(a, N, C, S) : a.slice());
  const back = (a: Arr) => (channelsLast ? fromChannelsLast(a, N, C, S) : a);
  const layer = new BatchNorm(C, { dtype, activation: 'relu' });
  layer.weight!.set(k.weight);
  layer.bias!.set(k.bias);
  layer.runningMean!.set(k.runningMean);
  layer.runningVar!.set(k.runningVar);
  layer.train(training);
  const out = new T(k.x.length).fill(NaN);
  const y = layer.forward(lay(k.x), k.shape, { out, channelsLast, residual: k.z ? lay(k.z) : undefined });
  expect(y).to.equal(out);
  const dx = new T(k.x.length).fill(NaN);
  const dz = k.z ? new T(k.x.length).fill(NaN) : undefined;
  layer.backward(lay(k.dy), { out: dx, residualGrad: dz });
  return { y: back(y), dx: back(dx), dz: dz && back(dz), dweight: layer.gradWeight!, dbias: layer.gradBias! };
}

// 1, w-1, w, w+1, 2w+3 for w = 4, 8, 16 (float64 / float32 lanes of AVX2 and AVX-512).
const SIZES = [1, 3, 4, 5, 7, 8, 9, 11, 15, 16, 17, 19, 35];
const levels = supportedSimdLevels();

describe('fused BN+ReLU / BN+Add+ReLU against the float64 unfused chain: tails, NaN-poisoned outputs', () => {
  const original = simdLevel();
  after(() => setSimdLevel(original));
  for (const level of levels) {
    for (const dtype of ['float32', 'float64'] as const) {
      it(`${level}, ${dtype}: C and S over ${SIZES.join(', ')}, both layouts, train/eval, with/without residual`, () => {
        setSimdLevel(level);
        const rng = new Rng(1300 + SIZES.length);
        const tol = dtype === 'float64' ? 1e-12 : 2e-5;
        let runs = 0;
        for (const C of [1, 3, 8, 9, 17]) {
          for (const S of SIZES) {
            for (const residual of [false, true]) {
              for (const training of [true, false]) {
                for (const channelsLast of [false, true]) {
                  const k = makeCase(rng, dtype, [2, C, S], residual);
                  const got = layerStep(k, dtype, training, channelsLast);
                  const r = reference(k, training, got.y);
                  const what = `${level} ${dtype} C=${C} S=${S} ${residual ? 'add+relu' : 'relu'} ${training ? 'train' : 'eval'}${channelsLast ? ' NHWC' : ''}`;
                  ref.assertClose(`${what} y`, got.y, r.y, tol);
                  expect(maskAgrees(r.pre, got.y, dtype === 'float64' ? 1e-12 : 1e-5), `${what}: mask`).to.equal(true);
                  ref.assertClose(`${what} dx`, got.dx, r.dx, tol);
                  ref.assertClose(`${what} dweight`, got.dweight, r.dweight, tol);
                  ref.assertClose(`${what} dbias`, got.dbias, r.dbias, tol);
                  if (residual) ref.assertClose(`${what} dz`, got.dz!, r.dz, 0);
                  runs++;
                }
              }
            }
          }
        }
        expect(runs).to.equal(5 * SIZES.length * 8);
      });
    }
  }
});

describe('fused ReLU: the kink, NaN, in place', () => {
  it('exact zeros at the kink: y = +0 where BN(x) + z is exactly 0, and there dx = dz = 0 (gradient 0 at 0)', () => {
    // Evaluation with weight 1, bias 0, mean 0, var + eps = 1: BN(x) = x exactly, so z = -x gives 0.
    for (const level of levels) {
      setSimdLevel(level);
      for (const dtype of ['float32', 'float64'] as const) {
        const T = ctorOf(dtype);
        const C = 3, S = 37, total = 2 * C * S;
        const layer = new BatchNorm(C, { dtype, activation: 'relu', eps: 0 });
        layer.eval();
        const rng = new Rng(7);
        const x = randn(rng, total, dtype);
        const z = x.map((v, i) => (i % 3 === 0 ? -v : 0.5)) as Arr;
        const y = layer.forward(x, [2, C, S], { residual: z });
        const dy = new T(total).fill(1);
        const dz = new T(total).fill(NaN);
        const dx = layer.backward(dy, { residualGrad: dz });
        for (let i = 0; i < total; i++) {
          if (i % 3 === 0) {
            expect(Object.is(y[i], 0), `${level} ${dtype} y[${i}] = ${y[i]}`).to.equal(true);
            expect(dx[i], `dx[${i}]`).to.equal(0);
            expect(dz[i], `dz[${i}]`).to.equal(0);
          } else {
            expect(y[i]).to.equal(Math.max(0, T.of(x[i] + 0.5)[0]));
            expect(dz[i]).to.equal(y[i] > 0 ? 1 : 0);
          }
        }
      }
    }
    setSimdLevel(levels[levels.length - 1]);
  });

  it('NaN propagates: relu(NaN) = NaN, and backward passes dy where y is NaN (threshold_backward)', () => {
    for (const level of levels) {
      setSimdLevel(level);
      const layer = new BatchNorm(2, { activation: 'relu' });
      layer.eval();
      const x = Float32Array.from({ length: 2 * 2 * 9 }, (_, i) => (i % 5) - 2);
      x[4] = NaN;
      const z = new Float32Array(x.length).fill(0.25);
      const y = layer.forward(x, [2, 2, 9], { residual: z });
      expect(Number.isNaN(y[4])).to.equal(true);
      const dy = new Float32Array(x.length).fill(2);
      const dz = new Float32Array(x.length);
      const dx = layer.backward(dy, { residualGrad: dz });
      expect(dz[4]).to.equal(2);
      expect(dx[4]).to.be.closeTo(2 / Math.sqrt(1 + 1e-5), 1e-6);
      for (let i = 0; i < x.length; i++) if (i !== 4) expect(dz[i]).to.equal(y[i] > 0 ? 2 : 0);
    }
  });

  it('in place over x (inference) and over z (training and inference): the same values as separate outputs', () => {
    for (const level of levels) {
      setSimdLevel(level);
      for (const training of [true, false]) {
        const rng = new Rng(11);
        const k = makeCase(rng, 'float32', [3, 5, 33], true);
        const mk = () => {
          const l = new BatchNorm(5, { activation: 'relu' });
          l.weight!.set(k.weight);
          l.bias!.set(k.bias);
          l.train(training);
          return l;
        };
        const a = mk();
        const ySep = a.forward(k.x, k.shape, { residual: k.z! });
        const dzSep = new Float32Array(k.x.length);
        const dxSep = a.backward(k.dy, { residualGrad: dzSep });
        // Over z: out === residual.
        const b = mk();
        const zb = k.z!.slice();
        const yz = b.forward(k.x, k.shape, { residual: zb, out: zb });
        expect(yz).to.equal(zb);
        expect(Array.from(yz)).to.deep.equal(Array.from(ySep));
        const dzb = new Float32Array(k.x.length);
        const dxb = b.backward(k.dy, { residualGrad: dzb });
        expect(Array.from(dxb)).to.deep.equal(Array.from(dxSep));
        expect(Array.from(dzb)).to.deep.equal(Array.from(dzSep));
        expect(Array.from(b.gradWeight!)).to.deep.equal(Array.from(a.gradWeight!));
        // Over x: the output replaces x; training backward then refuses (x is gone), as without activation.
        const c = mk();
        const xc = k.x.slice();
        const yx = c.forward(xc, k.shape, { residual: k.z!, out: xc });
        expect(Array.from(yx)).to.deep.equal(Array.from(ySep));
        if (training) {
          expect(() => c.backward(k.dy, { residualGrad: new Float32Array(k.x.length) })).to.throw().with.property('code', 'ERR_BN_INPUT_OVERWRITTEN');
        }
        // dx over dy (in place) through the mask.
        const d = mk();
        d.forward(k.x, k.shape, { residual: k.z! });
        const dyd = k.dy.slice();
        d.backward(dyd, { out: dyd, residualGrad: new Float32Array(k.x.length) });
        expect(Array.from(dyd)).to.deep.equal(Array.from(dxSep));
      }
    }
  });
});

describe('fused ReLU: gradients by finite differences (away from the kink)', () => {
  it('dx, dz, dweight, dbias of L = sum(r * relu(BN(x) + z)) in float64, training and evaluation', () => {
    const shape = [3, 2, 5];
    const total = 30;
    const rng = new Rng(99);
    const k = makeCase(rng, 'float64', shape, true);
    const r = randn(rng, total, 'float64');
    for (const training of [true, false]) {
      const layerOf = (w: Arr, b: Arr) => {
        const l = new BatchNorm(2, { dtype: 'float64', activation: 'relu' });
        l.weight!.set(w);
        l.bias!.set(b);
        l.runningMean!.set(k.runningMean);
        l.runningVar!.set(k.runningVar);
        l.train(training);
        return l;
      };
      // Keep every pre-activation at least 0.05 away from 0, so that h = 1e-6 never crosses the kink.
      const pre = reference(k, training, new Float64Array(total)).pre;
      const z = k.z!.map((v, i) => (Math.abs(pre[i]) < 0.05 ? v + (pre[i] >= 0 ? 0.1 : -0.1) : v)) as Float64Array;
      const loss = (x: Arr, zz: Arr, w: Arr, b: Arr) => {
        const y = layerOf(w, b).forward(x, shape, { residual: zz });
        let s = 0;
        for (let i = 0; i < total; i++) s += r[i] * y[i];
        return s;
      };
      const l = layerOf(k.weight, k.bias);
      l.forward(k.x, shape, { residual: z });
      const dz = new Float64Array(total);
      const dx = l.backward(r, { residualGrad: dz });
      const h = 1e-6;
      const fd = (f: (e: number) => number) => (f(h) - f(-h)) / (2 * h);
      const bump = (a: Arr, i: number, e: number) => {
        const c = a.slice();
        c[i] += e;
        return c;
      };
      for (let i = 0; i < total; i++) {
        expect(dx[i], `dx[${i}]`).to.be.closeTo(fd((e) => loss(bump(k.x, i, e), z, k.weight, k.bias)), 1e-6);
        expect(dz[i], `dz[${i}]`).to.be.closeTo(fd((e) => loss(k.x, bump(z, i, e), k.weight, k.bias)), 1e-6);
      }
      for (let c = 0; c < 2; c++) {
        expect(l.gradWeight![c], `dweight[${c}]`).to.be.closeTo(fd((e) => loss(k.x, z, bump(k.weight, c, e), k.bias)), 1e-6);
        expect(l.gradBias![c], `dbias[${c}]`).to.be.closeTo(fd((e) => loss(k.x, z, k.weight, bump(k.bias, c, e))), 1e-6);
      }
    }
  });
});

describe('fused ReLU: async, functional, scaleShift, state dict', () => {
  it('forwardAsync / backwardAsync give the sync results', async () => {
    const rng = new Rng(5);
    const k = makeCase(rng, 'float32', [4, 3, 7, 5], true);
    const mk = () => {
      const l = new BatchNorm2d(3, { activation: 'relu' });
      l.weight!.set(k.weight);
      return l;
    };
    const a = mk();
    const y = a.forward(k.x, k.shape, { residual: k.z! });
    const dz = new Float32Array(k.x.length);
    const dx = a.backward(k.dy, { residualGrad: dz });
    const b = mk();
    const ya = await b.forwardAsync(k.x, k.shape, { residual: k.z! });
    const dza = new Float32Array(k.x.length);
    const dxa = await b.backwardAsync(k.dy, { residualGrad: dza });
    expect(Array.from(ya)).to.deep.equal(Array.from(y));
    expect(Array.from(dxa)).to.deep.equal(Array.from(dx));
    expect(Array.from(dza)).to.deep.equal(Array.from(dz));
    expect(Array.from(b.runningVar!)).to.deep.equal(Array.from(a.runningVar!));
  });

  it('the functional API (sync and async, float64, channels-last) matches the reference', async () => {
    const rng = new Rng(6);
    const k = makeCase(rng, 'float64', [2, 4, 3, 3], true);
    const [N, C, S] = [2, 4, 9];
    const nhwc = (a: Arr) => toChannelsLast(a, N, C, S);
    const opts = { weight: k.weight, bias: k.bias, activation: 'relu' as const, channelsLast: true };
    const t = batchNormTraining(nhwc(k.x), k.shape, { ...opts, residual: nhwc(k.z!) });
    const ta = await batchNormTrainingAsync(nhwc(k.x), k.shape, { ...opts, residual: nhwc(k.z!) });
    expect(Array.from(ta.y)).to.deep.equal(Array.from(t.y));
    const yN = fromChannelsLast(t.y, N, C, S);
    const r = reference(k, true, yN);
    ref.assertClose('functional y', yN, r.y, 1e-12);
    const dz = new Float64Array(k.x.length);
    const bopts = { weight: k.weight, training: true, mean: t.batchMean, invstd: t.batchInvstd, activation: 'relu' as const, y: t.y, channelsLast: true };
    const g = batchNormBackward(nhwc(k.x), nhwc(k.dy), k.shape, { ...bopts, residualGrad: dz });
    const dza = new Float64Array(k.x.length);
    const ga = await batchNormBackwardAsync(nhwc(k.x), nhwc(k.dy), k.shape, { ...bopts, residualGrad: dza });
    expect(Array.from(ga.dx)).to.deep.equal(Array.from(g.dx));
    ref.assertClose('functional dx', fromChannelsLast(g.dx, N, C, S), r.dx, 1e-12);
    ref.assertClose('functional dz', fromChannelsLast(dz, N, C, S), r.dz, 0);
    ref.assertClose('functional dweight', g.gradWeight, r.dweight, 1e-12);
    // Inference, relu without residual.
    const rm = k.runningMean, rv = k.runningVar;
    const yi = batchNormInference(k.x, k.shape, { weight: k.weight, bias: k.bias, runningMean: rm, runningVar: rv, activation: 'relu' });
    ref.assertClose('functional inference y', yi, reference({ ...k, z: null }, false, yi).y, 1e-12);
  });

  it('scaleShift still applies: relu(x * scale + shift) is the evaluation forward; the state dict has no new entry', () => {
    const rng = new Rng(8);
    const k = makeCase(rng, 'float64', [2, 3, 4], false);
    const l = new BatchNorm(3, { dtype: 'float64', activation: 'relu' });
    l.weight!.set(k.weight);
    l.bias!.set(k.bias);
    l.runningMean!.set(k.runningMean);
    l.runningVar!.set(k.runningVar);
    l.eval();
    const y = l.forward(k.x, k.shape);
    const { scale, shift } = l.scaleShift();
    for (let i = 0; i < y.length; i++) {
      const c = Math.floor(i / 4) % 3;
      expect(y[i]).to.be.closeTo(Math.max(0, k.x[i] * scale[c] + shift[c]), 1e-12);
    }
    expect(Object.keys(l.stateDict()).sort()).to.deep.equal(Object.keys(new BatchNorm(3, { dtype: 'float64' }).stateDict()).sort());
  });
});
