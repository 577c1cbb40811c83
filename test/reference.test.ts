// The BatchNorm layer against an independent float64 reference (test/helpers/reference.ts) on
// random shapes of rank 2 to 5, every mode and option, and on large inputs that take the
// parallel paths, with 1 and 2 threads.
import { expect } from 'chai';
import { BatchNorm, batchNormTraining, getNumThreads, setNumThreads } from '../lib';
import * as ref from './helpers/reference';
import { assertClose } from './helpers/reference';
import { ctorOf, DTypeName, product, randn, randu, Rng } from './helpers/random';

interface Case {
  shape: number[];
  dtype: DTypeName;
  training: boolean;
  affine: boolean;
  track: boolean;
  momentum: number | null;
  steps: number;
  eps: number;
  seed: number;
  /** x = offset + std * randn */
  offset: number;
  std: number;
}

function describeCase(k: Case): string {
  return `[${k.shape.join(', ')}] ${k.dtype} ${k.training ? 'train' : 'eval'} affine=${k.affine} track=${k.track} ` +
    `momentum=${k.momentum} steps=${k.steps} eps=${k.eps}`;
}

function tolFor(dtype: DTypeName): number {
  return dtype === 'float64' ? 1e-12 : 4e-6;
}

interface CaseResult {
  y: Float32Array | Float64Array;
  dx: Float32Array | Float64Array;
  gradWeight: Float32Array | Float64Array | null;
  gradBias: Float32Array | Float64Array | null;
  runningMean: Float32Array | Float64Array | null;
  runningVar: Float32Array | Float64Array | null;
}

/** Runs `steps` forwards and one backward through the layer, checking each against the reference. */
function runCase(k: Case): CaseResult {
  const rng = new Rng(k.seed);
  const C = k.shape[1];
  const d = ref.dimsOf(k.shape);
  const total = product(k.shape);
  const m = d.n * d.s;
  const tol = tolFor(k.dtype);
  const label = describeCase(k);
  const layer = new BatchNorm(C, { eps: k.eps, momentum: k.momentum, affine: k.affine, trackRunningStats: k.track, dtype: k.dtype });
  let weight: Float32Array | Float64Array | null = null;
  let bias: Float32Array | Float64Array | null = null;
  if (k.affine) {
    weight = randn(rng, C, k.dtype, 1, 0.5);
    bias = randn(rng, C, k.dtype, 0, 0.5);
    layer.weight!.set(weight);
    layer.bias!.set(bias);
  }
  let rm: Float64Array | null = null;
  let rv: Float64Array | null = null;
  if (k.track) {
    const m0 = randn(rng, C, k.dtype, 0, 0.3);
    const v0 = randu(rng, C, k.dtype, 0.5, 2);
    layer.runningMean!.set(m0);
    layer.runningVar!.set(v0);
    rm = Float64Array.from(m0);
    rv = Float64Array.from(v0);
  }
  layer.train(k.training);
  let x: Float32Array | Float64Array = new (ctorOf(k.dtype))(0);
  let y: Float32Array | Float64Array = x;
  let used: { mean: ArrayLike<number>; invstd: ArrayLike<number>; batch: boolean } | null = null;
  for (let step = 1; step <= k.steps; step++) {
    x = randn(rng, total, k.dtype, k.offset, k.std);
    y = layer.forward(x, k.shape);
    if (k.training || !k.track) {
      const st = ref.batchStats(x, d, k.eps);
      assertClose(`${label} step ${step} y`, y, ref.normalize(x, d, st.mean, st.invstd, weight, bias), tol);
      used = { mean: st.mean, invstd: st.invstd, batch: true };
      if (k.training && k.track) {
        const up = ref.runningUpdate(rm!, rv!, st, m, k.momentum, step);
        rm = up.mean;
        rv = up.variance;
      }
    } else {
      assertClose(`${label} step ${step} y`, y, ref.forwardInference(x, d, weight, bias, rm!, rv!, k.eps), tol);
      used = { mean: rm!, invstd: Array.from(rv!, (v) => 1 / Math.sqrt(v + k.eps)), batch: false };
    }
  }
  if (k.track) {
    assertClose(`${label} runningMean`, layer.runningMean!, rm!, tol);
    assertClose(`${label} runningVar`, layer.runningVar!, rv!, tol);
    expect(layer.numBatchesTracked, `${label} numBatchesTracked`).to.equal(k.training ? k.steps : 0);
  } else {
    expect(layer.runningMean).to.equal(null);
    expect(layer.runningVar).to.equal(null);
    expect(layer.numBatchesTracked, `${label} numBatchesTracked`).to.equal(0);
  }
  const dy = randn(rng, total, k.dtype);
  const dx = layer.backward(dy);
  const g = ref.backward(x, dy, d, weight, used!.mean, used!.invstd, used!.batch);
  assertClose(`${label} dx`, dx, g.dx, tol);
  if (k.affine) {
    assertClose(`${label} dweight`, layer.gradWeight!, g.dweight, tol);
    assertClose(`${label} dbias`, layer.gradBias!, g.dbias, tol);
  } else {
    expect(layer.gradWeight).to.equal(null);
    expect(layer.gradBias).to.equal(null);
  }
  return { y, dx, gradWeight: layer.gradWeight, gradBias: layer.gradBias, runningMean: layer.runningMean, runningVar: layer.runningVar };
}

function randomShape(rng: Rng, rank: number, batchStats: boolean): number[] {
  for (;;) {
    const shape = [rng.int(1, 5), rng.int(1, 7)];
    for (let i = 2; i < rank; i++) shape.push(rng.int(1, 6));
    // Batch statistics (training, or evaluation without running stats) need more than one value per channel.
    if (!batchStats || shape[0] * product(shape.slice(2)) >= 2) return shape;
  }
}

describe('BatchNorm against the float64 reference: small random shapes', () => {
  const rng = new Rng(20150211);
  const cases: Case[] = [];
  // Every combination of dtype, mode, affine, trackRunningStats and momentum (number / null),
  // each on a random shape whose rank cycles through 2..5.
  let rank = 2;
  for (const dtype of ['float32', 'float64'] as const) {
    for (const training of [true, false]) {
      for (const affine of [true, false]) {
        for (const track of [true, false]) {
          for (const momentum of [0.1, null, 0.7]) {
            cases.push({
              shape: randomShape(rng, rank, training || !track), dtype, training, affine, track, momentum,
              steps: rng.int(1, 3), eps: rng.pick([1e-5, 1e-3, 0.1]), seed: rng.int(1, 1e9), offset: rng.pick([0, 2, -5]), std: rng.pick([1, 0.25, 3]),
            });
            rank = rank === 5 ? 2 : rank + 1;
          }
        }
      }
    }
  }
  // Cumulative average (momentum null) over several steps, in both dtypes and ranks 2..5.
  for (const dtype of ['float32', 'float64'] as const) {
    for (let r = 2; r <= 5; r++) {
      cases.push({ shape: randomShape(rng, r, true), dtype, training: true, affine: true, track: true, momentum: null, steps: 5, eps: 1e-5, seed: rng.int(1, 1e9), offset: 1, std: 2 });
    }
  }
  for (const k of cases) {
    it(describeCase(k), () => {
      runCase(k);
    });
  }

  it('covers ranks 2 to 5, channel counts including 1, and both modes', () => {
    const ranks = new Set(cases.map((k) => k.shape.length));
    expect([...ranks].sort()).to.deep.equal([2, 3, 4, 5]);
    expect(cases.some((k) => k.shape[1] === 1)).to.equal(true);
    expect(cases.filter((k) => k.momentum === null && k.steps > 1 && k.training).length).to.be.greaterThan(4);
  });
});

describe('BatchNorm against the float64 reference: large inputs (parallel paths), 1 and 2 threads', function () {
  const original = getNumThreads();
  after(() => setNumThreads(original));

  const big: Array<{ what: string; shape: number[] }> = [
    { what: 'C = 1: the single channel split between threads', shape: [8, 1, 64, 80] },
    { what: 'C = 3 with 2 threads: channels split into parts', shape: [4, 3, 64, 64] },
    { what: 'S = 1 ([N, C] rows path) with N large', shape: [20000, 3] },
    { what: 'many channels, whole channels per thread', shape: [2, 16, 40, 30] },
    { what: 'rank 5, odd sizes', shape: [3, 5, 7, 19, 23] },
  ];
  let seed = 7;
  for (const { what, shape } of big) {
    for (const dtype of ['float32', 'float64'] as const) {
      for (const training of [true, false]) {
        const k: Case = { shape, dtype, training, affine: true, track: true, momentum: 0.1, steps: 1, eps: 1e-5, seed: seed++, offset: 3, std: 2 };
        it(`${what}: ${describeCase(k)}`, () => {
          expect(product(shape)).to.be.greaterThan(32768);
          setNumThreads(1);
          const one = runCase(k);
          setNumThreads(2);
          expect(getNumThreads()).to.equal(2);
          const two = runCase(k);
          // Different partitions may round differently, but only at float precision.
          const tol = dtype === 'float64' ? 1e-13 : 1e-6;
          assertClose('y: 1 vs 2 threads', two.y, one.y, tol);
          assertClose('dx: 1 vs 2 threads', two.dx, one.dx, tol);
          assertClose('gradWeight: 1 vs 2 threads', two.gradWeight!, one.gradWeight!, tol);
          assertClose('gradBias: 1 vs 2 threads', two.gradBias!, one.gradBias!, tol);
          assertClose('runningMean: 1 vs 2 threads', two.runningMean!, one.runningMean!, tol);
          assertClose('runningVar: 1 vs 2 threads', two.runningVar!, one.runningVar!, tol);
        });
      }
    }
  }
  // Trackless eval (batch statistics) on a large input with 2 threads.
  it('trackRunningStats = false in evaluation mode uses batch statistics, 2 threads, float32 [4, 3, 64, 64]', () => {
    setNumThreads(2);
    runCase({ shape: [4, 3, 64, 64], dtype: 'float32', training: false, affine: true, track: false, momentum: 0.1, steps: 1, eps: 1e-5, seed: 99, offset: -2, std: 0.5 });
  });
});

describe('float32 statistics: robust to an outlier at the start of a channel', () => {
  // The statistics are shifted sums; a shift far from the mean (in units of std) costs digits in
  // float32. The shift is the mean of the channel's first 64 values, so one extreme first value
  // moves it by 1/64 of the outlier only. (With the first value itself as the shift, x[0] = 1000
  // gave a relative variance error of 1e-5.)
  for (const outlier of [30, 1000]) {
    it(`x = randn(2^16) with x[0] = ${outlier}: variance within 5e-7 relative of float64 two-pass`, () => {
      const rng = new Rng(7 + outlier);
      const x = randn(rng, 1 << 16, 'float32') as Float32Array;
      x[0] = outlier;
      const shape = [1, 1, 1 << 16];
      const r = batchNormTraining(x, shape, { eps: 0 });
      const st = ref.batchStats(x, ref.dimsOf(shape), 0);
      const varGot = 1 / (r.batchInvstd[0] * r.batchInvstd[0]);
      expect(Math.abs(varGot - st.variance[0]) / st.variance[0]).to.be.below(5e-7);
      expect(Math.abs(r.batchMean[0] - st.mean[0])).to.be.below(1e-7);
    });
  }
});
