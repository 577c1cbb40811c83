// The statistics merge of synchronized BN (lib/sync/merge.ts) and the per-rank native pieces it
// is fed with: against a float64 two-pass reference over the concatenated batch, with uneven and
// empty ranks, and the large-mean case where exchanging Σx and Σx² (Keras' synchronized BN) fails.
import { expect } from 'chai';
import { native } from '../lib/load';
import { mergeMoments, packMoments, sumInRankOrder } from '../lib/sync/merge';
import { Rng, randn } from './helpers/random';
import * as ref from './helpers/reference';

type F = Float32Array | Float64Array;

/** This rank's packed (count, mean, variance) from the native per-rank entry, [n, C, S] NCHW. */
function rankMoments(x: F, n: number, C: number, S: number): Float64Array {
  const mean = new Float64Array(C);
  const variance = new Float64Array(C);
  if (n > 0) native().syncMoments({ fn: 'test', x, n, c: C, s: S, channelsLast: false, mean, variance });
  return packMoments(n * S, mean, variance);
}

/** Σx and Σx² per channel of one rank: what a sum/sum-of-squares exchange would send. */
function naiveSums(x: F, n: number, C: number, S: number): Float64Array {
  const out = new Float64Array(2 * C);
  for (let b = 0; b < n; b++) for (let c = 0; c < C; c++) for (let j = 0; j < S; j++) {
    const v = x[(b * C + c) * S + j];
    out[c] += v;
    out[C + c] += v * v;
  }
  return out;
}

function split(x: F, batches: number[], C: number, S: number): F[] {
  let lo = 0;
  return batches.map((n) => {
    const part = x.subarray(lo, lo + n * C * S);
    lo += n * C * S;
    return part;
  });
}

describe('sync: statistics merge (Chan, rank order)', () => {
  const cases: Array<{ batches: number[]; C: number; S: number; dtype: 'float32' | 'float64' }> = [
    { batches: [5], C: 3, S: 7, dtype: 'float64' },
    { batches: [2, 3], C: 4, S: 1, dtype: 'float32' },
    { batches: [3, 0, 4], C: 2, S: 9, dtype: 'float64' },
    { batches: [0, 1, 1, 6, 0, 2, 3, 1], C: 5, S: 17, dtype: 'float32' },
    { batches: [1, 0], C: 3, S: 2, dtype: 'float64' },
  ];
  for (const { batches, C, S, dtype } of cases) {
    it(`matches the two-pass float64 statistics of the whole batch: ranks ${JSON.stringify(batches)}, C=${C}, S=${S}, ${dtype}`, () => {
      const rng = new Rng(batches.length * 31 + C);
      const N = batches.reduce((a, b) => a + b, 0);
      const x = randn(rng, N * C * S, dtype, 3, 2);
      const parts = split(x, batches, C, S).map((p, r) => rankMoments(p, batches[r], C, S));
      const g = mergeMoments(parts, C);
      const want = ref.batchStats(x, { n: N, c: C, s: S }, 0);
      expect(g.count).to.equal(N * S);
      // float32: the kernels' partial sums of 8 terms per lane are formed in float32 (kernels_body.inl)
      const tol = dtype === 'float32' ? 1e-6 : 1e-12;
      ref.assertClose('mean', g.mean, want.mean, tol);
      ref.assertClose('variance', g.variance, want.variance, tol);
      const m = N * S;
      ref.assertClose('unbiased variance', g.unbiasedVariance, Array.from(want.variance, (v) => (v * m) / (m - 1)), tol);
    });
  }

  it('depends only on the values by rank: an empty rank anywhere adds nothing, the same bits each time', () => {
    const rng = new Rng(7);
    const a = rankMoments(randn(rng, 4 * 3 * 5, 'float64'), 4, 3, 5);
    const b = rankMoments(randn(rng, 2 * 3 * 5, 'float64'), 2, 3, 5);
    const empty = packMoments(0, new Float64Array(3), new Float64Array(3));
    const base = mergeMoments([a, b], 3);
    for (const order of [[empty, a, b], [a, empty, b], [a, b, empty]]) {
      const g = mergeMoments(order, 3);
      expect(Array.from(g.mean)).to.deep.equal(Array.from(base.mean));
      expect(Array.from(g.variance)).to.deep.equal(Array.from(base.variance));
    }
    const again = mergeMoments([a, b], 3);
    expect(Array.from(again.variance)).to.deep.equal(Array.from(base.variance));
  });

  it('counts only: no rank with data gives count 0, and one value gives an undefined unbiased variance', () => {
    const empty = packMoments(0, new Float64Array(2), new Float64Array(2));
    expect(mergeMoments([empty, empty], 2).count).to.equal(0);
    const one = packMoments(1, Float64Array.of(5, 6), new Float64Array(2));
    const g = mergeMoments([empty, one], 2);
    expect(g.count).to.equal(1);
    expect(Array.from(g.mean)).to.deep.equal([5, 6]);
    expect(Number.isNaN(g.unbiasedVariance[0])).to.equal(true);
  });

  for (const dtype of ['float32', 'float64'] as const) {
    it(`large mean (1e4, std 1e-2, ${dtype}, 4 ranks): ours keeps the variance, a Σx/Σx² exchange does not`, () => {
      const rng = new Rng(11);
      const batches = [64, 0, 32, 96];
      const C = 2;
      const S = 64;
      const N = batches.reduce((p, q) => p + q, 0);
      const x = randn(rng, N * C * S, dtype, 1e4, 1e-2);
      const want = ref.batchStats(x, { n: N, c: C, s: S }, 0);
      const xs = split(x, batches, C, S);
      const ours = mergeMoments(xs.map((p, r) => rankMoments(p, batches[r], C, S)), C);
      // The naive exchange, even summed in float64: var = E[x²] - E[x]²
      const sums = sumInRankOrder(xs.map((p, r) => naiveSums(p, batches[r], C, S)), 2 * C);
      const m = N * S;
      const naive = Array.from({ length: C }, (_, c) => sums[C + c] / m - (sums[c] / m) ** 2);
      for (let c = 0; c < C; c++) {
        const oursErr = Math.abs(ours.variance[c] - want.variance[c]) / want.variance[c];
        const naiveErr = Math.abs(naive[c] - want.variance[c]) / want.variance[c];
        expect(oursErr, `ours, channel ${c}`).to.be.below(1e-9);
        expect(naiveErr, `sum/sum-of-squares exchange, channel ${c} (${naive[c]} vs ${want.variance[c]})`).to.be.above(1e-4);
      }
    });
  }

  it('sumInRankOrder adds rank 0 first', () => {
    const big = Float64Array.of(1e16);
    const small = Float64Array.of(1);
    const neg = Float64Array.of(-1e16);
    // (1e16 + 1) - 1e16 = 0 in float64; 1e16 - 1e16 + 1 = 1: the order is observable and fixed
    expect(sumInRankOrder([big, small, neg], 1)[0]).to.equal(0);
    expect(sumInRankOrder([big, neg, small], 1)[0]).to.equal(1);
  });
});

describe('sync: native per-rank pieces (syncMoments, syncNormalize, syncBackwardReduce, syncBackwardDx)', () => {
  // Sizes around the SIMD widths (tails) and the rows block, NCHW and channels-last.
  const sizes = [1, 7, 8, 9, 19, 70000];
  for (const dtype of ['float32', 'float64'] as const) {
    for (const channelsLast of [false, true]) {
      for (const [S, Cwide] of [...sizes.map((v) => [v, 0]), [7, 600], [49, 300]]) {
        const n = S > 1000 ? 2 : Cwide ? 40 : 3;
        // wide: short runs in groups of channels (the last group partial) and several sample blocks
        const C = Cwide || (channelsLast ? 5 : 3);
        it(`${dtype}, ${channelsLast ? 'channels-last' : 'NCHW'}, n=${n}, C=${C}, S=${S}: against the float64 reference`, () => {
          const rng = new Rng(S + C);
          const total = n * C * S;
          const nchw = randn(rng, total, dtype, 2, 3);
          const dyN = randn(rng, total, dtype);
          const T = dtype === 'float32' ? Float32Array : Float64Array;
          // channels-last storage of the same logical tensor
          const toStore = (a: F): F => {
            if (!channelsLast) return a;
            const o = new T(total);
            for (let b = 0; b < n; b++) for (let c = 0; c < C; c++) for (let j = 0; j < S; j++) o[(b * S + j) * C + c] = a[(b * C + c) * S + j];
            return o;
          };
          const fromStore = (a: F): Float64Array => {
            const o = new Float64Array(total);
            for (let b = 0; b < n; b++) for (let c = 0; c < C; c++) for (let j = 0; j < S; j++) {
              o[(b * C + c) * S + j] = channelsLast ? a[(b * S + j) * C + c] : a[(b * C + c) * S + j];
            }
            return o;
          };
          const x = toStore(nchw);
          const dy = toStore(dyN);
          const d = { n, c: C, s: S };
          const base = { fn: 'test', x, n, c: C, s: S, channelsLast };
          const mean = new Float64Array(C);
          const variance = new Float64Array(C);
          native().syncMoments({ ...base, mean, variance });
          const want = ref.batchStats(nchw, d, 1e-5);
          ref.assertClose('mean', mean, want.mean, dtype === 'float32' ? 1e-6 : 1e-13);
          ref.assertClose('variance', variance, want.variance, dtype === 'float32' ? 1e-5 : 1e-12);
          const weight = randn(rng, C, dtype, 1, 0.5);
          const bias = randn(rng, C, dtype);
          const y = new T(total).fill(NaN);
          const invstd = new Float64Array(C).fill(NaN);
          native().syncNormalize({ ...base, out: y, weight, bias, mean: want.mean, variance: want.variance, eps: 1e-5, invstd });
          ref.assertClose('invstd', invstd, want.invstd, 1e-15);
          const yRef = ref.normalize(nchw, d, want.mean, want.invstd, weight, bias);
          const tol = dtype === 'float32' ? 2e-6 : 1e-13;
          ref.assertClose('y', fromStore(y), yRef, tol);
          const sumDy = new Float64Array(C);
          const sumDyXmu = new Float64Array(C);
          native().syncBackwardReduce({ ...base, dy, mean: want.mean, sumDy, sumDyXmu });
          const bw = ref.backward(nchw, dyN, d, weight, want.mean, want.invstd, true);
          ref.assertClose('Σdy', sumDy, bw.dbias, tol * 10);
          ref.assertClose('Σdy·xhat', Array.from(sumDyXmu, (v, c) => v * want.invstd[c]), bw.dweight, tol * 10);
          const dx = new T(total).fill(NaN);
          native().syncBackwardDx({ ...base, dy, out: dx, weight, mean: want.mean, invstd: want.invstd, sumDy, sumDyXmu, count: n * S });
          ref.assertClose('dx', fromStore(dx), bw.dx, dtype === 'float32' ? 1e-5 : 1e-12);
        });
      }
    }
  }

  // Shapes that take each of the core's reduction layouts: short runs through the group kernels,
  // whole runs per chunk, long runs cut into pieces, N = 1, rows ([N, C] and channels-last), and a
  // channels-last tensor of one channel (one run). Mostly float64: float32 values often sum exactly
  // in float64, in any order, so they would not show a wrong chunking.
  const CORE_SHAPES: Array<{ n: number; C: number; S: number; channelsLast: boolean; dtype: 'float32' | 'float64' }> = [
    { n: 8, C: 64, S: 49, channelsLast: false, dtype: 'float64' },
    { n: 40, C: 300, S: 49, channelsLast: false, dtype: 'float32' },
    { n: 6, C: 5, S: 3000, channelsLast: false, dtype: 'float64' },
    { n: 2, C: 3, S: 70000, channelsLast: false, dtype: 'float64' },
    { n: 1, C: 16, S: 9000, channelsLast: false, dtype: 'float64' },
    { n: 700, C: 24, S: 1, channelsLast: false, dtype: 'float64' },
    { n: 4, C: 5, S: 40000, channelsLast: true, dtype: 'float64' },
    { n: 3, C: 1, S: 30000, channelsLast: true, dtype: 'float64' },
    { n: 4, C: 5, S: 40000, channelsLast: true, dtype: 'float32' },
  ];
  for (const sh of CORE_SHAPES) {
    it(`one rank's pieces are the local BatchNorm's bits on 1, 2 and 3 threads (the core's chunks): ${sh.dtype} [${sh.n}, ${sh.C}, ${sh.S}] ${sh.channelsLast ? 'channels-last' : 'NCHW'}`, () => {
      const before = native().getNumThreads();
      const { n, C, S, channelsLast, dtype } = sh;
      const T = dtype === 'float32' ? Float32Array : Float64Array;
      const rng = new Rng(n + C + S);
      const x = randn(rng, n * C * S, dtype, 5, 2);
      const dy = randn(rng, n * C * S, dtype);
      const weight = randn(rng, C, dtype, 1, 0.5);
      const bias = randn(rng, C, dtype);
      const base = { fn: 'test', x, n, c: C, s: S, channelsLast };
      const bits = (a: ArrayLike<number>) => Array.from(a);
      try {
        const results = [1, 2, 3].map((threads) => {
          native().setNumThreads(threads);
          // The core: BatchNorm's training forward and backward.
          const core = { y: new T(n * C * S), batchMean: new Float64Array(C), batchInvstd: new Float64Array(C), dx: new T(n * C * S), gw: new T(C), gb: new T(C) };
          native().forwardTraining({
            ...base, out: core.y, weight, bias, saveMean: new T(C), saveInvstd: new T(C), batchMean: core.batchMean, batchInvstd: core.batchInvstd,
            runningMean: null, runningVar: null, eps: 1e-5, momentum: 0.1,
          } as never);
          native().backward({
            ...base, dy, out: core.dx, weight, training: true, mean: core.batchMean, invstd: core.batchInvstd, runningVar: null, eps: 1e-5,
            gradWeight: core.gw, gradBias: core.gb, accumulate: false,
          } as never);
          // The sync pieces of one rank holding the whole batch.
          const mean = new Float64Array(C), variance = new Float64Array(C), invstd = new Float64Array(C);
          native().syncMoments({ ...base, mean, variance });
          const y = new T(n * C * S).fill(NaN);
          native().syncNormalize({ ...base, out: y, weight, bias, mean, variance, eps: 1e-5, invstd });
          const sumDy = new Float64Array(C), sumDyXmu = new Float64Array(C);
          native().syncBackwardReduce({ ...base, dy, mean, sumDy, sumDyXmu });
          expect(bits(mean), 'mean = the core\'s batch mean').to.deep.equal(bits(core.batchMean));
          expect(bits(invstd), 'invstd of the local variance = the core\'s').to.deep.equal(bits(core.batchInvstd));
          expect(bits(y), 'y = the core\'s').to.deep.equal(bits(core.y));
          expect(bits(T.from(sumDy)), 'Σdy in the dtype = the core\'s gradBias').to.deep.equal(bits(core.gb));
          expect(bits(T.from(Array.from(sumDyXmu, (v, c) => v * invstd[c]))), 'Σdy·xhat in the dtype = the core\'s gradWeight').to.deep.equal(bits(core.gw));
          return [...mean, ...variance, ...sumDy, ...sumDyXmu];
        });
        expect(results[1], '2 threads = 1 thread').to.deep.equal(results[0]);
        expect(results[2], '3 threads = 1 thread').to.deep.equal(results[0]);
      } finally {
        native().setNumThreads(before);
      }
    });
  }

  it('syncBackwardDx refuses a global count below 2 (ERR_BN_TOO_FEW_VALUES), writing nothing', () => {
    const x = new Float32Array(3);
    const dx = new Float32Array(3).fill(7);
    const z = new Float64Array(3);
    expect(() => native().syncBackwardDx({ fn: 'test', x, n: 1, c: 3, s: 1, channelsLast: false, dy: x.slice(), out: dx, weight: null, mean: z, invstd: z, sumDy: z, sumDyXmu: z, count: 1 }))
      .to.throw().with.property('code', 'ERR_BN_TOO_FEW_VALUES');
    expect(Array.from(dx)).to.deep.equal([7, 7, 7]);
  });

  for (const dtype of ['float32', 'float64'] as const) {
    it(`${dtype}: outputs over 8 MiB (streaming stores) into unaligned views of NaN-filled buffers, and in place`, () => {
      const rng = new Rng(21);
      const n = 2, C = 3, S = 400003;
      const total = n * C * S;
      const T = dtype === 'float32' ? Float32Array : Float64Array;
      const x = randn(rng, total, dtype, 1, 2);
      const dy = randn(rng, total, dtype);
      const d = { n, c: C, s: S };
      const want = ref.batchStats(x, d, 1e-5);
      const weight = randn(rng, C, dtype, 1, 0.5);
      const base = { fn: 'test', x, n, c: C, s: S, channelsLast: false };
      const tol = dtype === 'float32' ? 2e-6 : 1e-13;
      const yBuf = new T(total + 5).fill(NaN);
      const y = yBuf.subarray(3, 3 + total);
      const invstd = new Float64Array(C);
      native().syncNormalize({ ...base, out: y, weight, bias: null, mean: want.mean, variance: want.variance, eps: 1e-5, invstd });
      ref.assertClose('y', y, ref.normalize(x, d, want.mean, want.invstd, weight, null), tol);
      expect([yBuf[0], yBuf[1], yBuf[2], yBuf[total + 3], yBuf[total + 4]].every(Number.isNaN), 'nothing written outside the view').to.equal(true);
      const sumDy = new Float64Array(C);
      const sumDyXmu = new Float64Array(C);
      native().syncBackwardReduce({ ...base, dy, mean: want.mean, sumDy, sumDyXmu });
      const bw = ref.backward(x, dy, d, weight, want.mean, want.invstd, true);
      const dxBuf = new T(total + 5).fill(NaN);
      const dx = dxBuf.subarray(1, 1 + total);
      native().syncBackwardDx({ ...base, dy, out: dx, weight, mean: want.mean, invstd, sumDy, sumDyXmu, count: n * S });
      ref.assertClose('dx', dx, bw.dx, dtype === 'float32' ? 1e-5 : 1e-12);
      expect(Number.isNaN(dxBuf[0]) && Number.isNaN(dxBuf[total + 1])).to.equal(true);
      // in place (never streamed): dx over dy
      const dyCopy = dy.slice();
      native().syncBackwardDx({ ...base, dy: dyCopy, out: dyCopy, weight, mean: want.mean, invstd, sumDy, sumDyXmu, count: n * S });
      expect(Array.from(dyCopy.subarray(0, 1000))).to.deep.equal(Array.from(dx.subarray(0, 1000)));
    });
  }

  it('a rank without samples (n = 0) takes part: zero moments and sums, the core\'s invstd, no data touched', () => {
    const C = 3;
    const x = new Float32Array(0);
    const base = { fn: 'test', x, n: 0, c: C, s: 5, channelsLast: false };
    const mean = new Float64Array(C).fill(NaN);
    const variance = new Float64Array(C).fill(NaN);
    native().syncMoments({ ...base, mean, variance });
    expect([...mean, ...variance]).to.deep.equal([0, 0, 0, 0, 0, 0]);
    const invstd = new Float64Array(C).fill(NaN);
    native().syncNormalize({ ...base, out: x, weight: null, bias: null, mean: Float64Array.of(1, 2, 3), variance: Float64Array.of(3, 0, 0), eps: 1, invstd });
    expect(Array.from(invstd)).to.deep.equal([0.5, 1, 1]);
    // eps = 0 on a constant channel: the core's rule gives invstd 0 (PyTorch's), not infinity
    native().syncNormalize({ ...base, out: x, weight: null, bias: null, mean: new Float64Array(C), variance: new Float64Array(C), eps: 0, invstd });
    expect(Array.from(invstd)).to.deep.equal([0, 0, 0]);
    const g = new Float64Array(C).fill(NaN);
    const p = new Float64Array(C).fill(NaN);
    native().syncBackwardReduce({ ...base, dy: x, mean, sumDy: g, sumDyXmu: p });
    expect([...g, ...p]).to.deep.equal([0, 0, 0, 0, 0, 0]);
    native().syncBackwardDx({ ...base, dy: x, out: x, weight: null, mean, invstd, sumDy: g, sumDyXmu: p, count: 10 });
    expect(() => native().syncMoments({ ...base, n: -1, mean, variance })).to.throw().with.property('code', 'ERR_BN_BAD_SHAPE');
  });

  it('the named calls refuse wrong lengths and dtypes', () => {
    const x = new Float32Array(6);
    const call = { fn: 'test', x, n: 2, c: 3, s: 1, channelsLast: false, mean: new Float64Array(3), variance: new Float64Array(3) };
    expect(() => native().syncMoments({ ...call, variance: new Float64Array(2) })).to.throw().with.property('code', 'ERR_BN_BAD_LENGTH');
    expect(() => native().syncMoments({ ...call, x: new Float32Array(5) })).to.throw().with.property('code', 'ERR_BN_BAD_LENGTH');
    expect(() => native().syncMoments({ ...call, mean: new Float32Array(3) as never })).to.throw().with.property('code', 'ERR_BN_DTYPE_MISMATCH');
  });
});
