// Numerical edge cases (issue 18, section 4), at every SIMD level, float32 and float64, NCHW,
// channels-last and [N, C] layouts, sizes across the vector tails: one channel of the tensor holds
// the case, the others ordinary values. Training forward, evaluation forward, backward in both
// modes. The rules (README, conventions):
// - statistics are exact (float64) even where sums in the tensor's type would overflow: a channel
//   of 1.5e38..3e38 or of +-3e38 is normalized correctly; running_var, stored in float32, rounds
//   to +Infinity there (as PyTorch);
// - invstd = 0 when var + eps == 0 (eps = 0 on a constant channel: y = bias, gradients finite),
//   else 1 / sqrt(var + eps) capped at the dtype's largest value (eps = 5e-324 on a constant
//   channel: y = bias, gradWeight = 0, no NaN); the same rule in evaluation mode;
// - infinities and NaN follow IEEE arithmetic: -Infinity as a value gives mean -Infinity;
// - evaluation-mode dx = dy * weight * invstd does not read x (an infinite x gives a finite dx).
// And every level gives the scalar level's bits on the edge channel, for every output that does
// not come from an ordinary (fast, order-dependent) sum.
import { expect } from 'chai';
import {
  batchNormBackward, batchNormInference, batchNormTraining, setSimdLevel, simdLevel, supportedSimdLevels,
} from '../lib';
import * as ref from './helpers/reference';
import { AnyFloatArray, ctorOf, DTypeName, randn, randu, Rng } from './helpers/random';

const F32_MAX = 3.4028234663852886e38;
const MOMENTUM = 0.1;

interface Layout {
  name: string;
  shape: number[];
  channelsLast: boolean;
}

// C and the spatial size cross the vector widths 4, 8, 16 (w - 1, w + 1, 2w + 3); short runs take
// the group kernels, runs of more than 4 KiB the run kernels; [N, 1] is one contiguous channel.
const LAYOUTS: Layout[] = [
  { name: 'NCHW [2, 3, 19]', shape: [2, 3, 19], channelsLast: false },
  { name: 'NCHW [4, 3, 5]', shape: [4, 3, 5], channelsLast: false },
  { name: 'NCHW [2, 3, 1031]', shape: [2, 3, 1031], channelsLast: false },
  { name: '[N, C] [37, 3]', shape: [37, 3], channelsLast: false },
  { name: '[N, C] [35, 1]', shape: [35, 1], channelsLast: false },
  { name: 'channels-last [3, 17, 5]', shape: [3, 17, 5], channelsLast: true },
  { name: 'channels-last [2, 3, 4, 5]', shape: [2, 3, 4, 5], channelsLast: true },
  { name: 'channels-last [2, 1, 19]', shape: [2, 1, 19], channelsLast: true },
];

type Output =
  | 'y' | 'saveMean' | 'saveInvstd' | 'batchMean' | 'batchInvstd' | 'runningMean' | 'runningVar'
  | 'dx' | 'gradWeight' | 'gradBias' | 'yEval' | 'dxEval' | 'gradWeightEval' | 'gradBiasEval';
const OUTPUTS: Output[] = [
  'y', 'saveMean', 'saveInvstd', 'batchMean', 'batchInvstd', 'runningMean', 'runningVar',
  'dx', 'gradWeight', 'gradBias', 'yEval', 'dxEval', 'gradWeightEval', 'gradBiasEval',
];

interface Case {
  name: string;
  eps: number;
  /** The special channel's m values (in memory order of the channel). */
  values(m: number, rng: Rng, dtype: DTypeName): number[];
  /** Evaluation-mode running statistics of the special channel; null: the training call's. */
  evalStats: { mean: number; variance: number } | null;
  /** Outputs of the special channel that every level must give bit for bit as the scalar level. */
  bitwise(dtype: DTypeName): Output[];
  /** Exact checks of the rule on the special channel (beyond the reference comparison). */
  rule(r: Results, c: number, g: Gathered, dtype: DTypeName): void;
}

// Outputs that come from ordinary sums (dbias = sum(dy), and what depends on it) differ between
// levels in their last bits by the order of the additions; the rest must be identical.
const ALL_BUT_FAST_SUMS = (...fast: Output[]): Output[] => OUTPUTS.filter((o) => !fast.includes(o));

type Gathered = (a: AnyFloatArray, c: number) => number[];
type Results = Record<Output, AnyFloatArray>;

const expectAll = (what: string, vals: number[], pred: (v: number, i: number) => boolean): void => {
  vals.forEach((v, i) => {
    if (!pred(v, i)) throw new Error(`${what}: element ${i} of the channel is ${v}`);
  });
};

const WEIGHT = 1.5;
const BIAS = 0.25;

const CASES: Case[] = [
  {
    name: 'values in 1.5e38..3e38 (float32 sums of squares overflow)',
    eps: 1e-5,
    values: (m, rng) => Array.from(randu(rng, m, 'float32', 1.5e38, 3e38)),
    evalStats: null,
    bitwise: (dtype) => (dtype === 'float32' ? OUTPUTS : []),
    rule: (r, c, g, dtype) => {
      if (dtype === 'float32') {
        // The unbiased variance (~2e75) rounds to +Infinity in float32, as in PyTorch; evaluation
        // then has invstd = 0: y = bias, dx = 0, gradWeight = 0.
        expect(r.runningVar[c]).to.equal(Infinity);
        expectAll('yEval', g(r.yEval, c), (v) => v === Math.fround(BIAS));
        expectAll('dxEval', g(r.dxEval, c), (v) => v === 0);
        expect(r.gradWeightEval[c]).to.equal(0);
      }
      // Correctly normalized (not y = bias): xhat has variance 1, so it spans at least 2.
      const y = g(r.y, c).map((v) => (v - BIAS) / WEIGHT);
      expect(Math.max(...y) - Math.min(...y)).to.be.greaterThan(1.99);
    },
  },
  {
    name: '+-3e38 alternating',
    eps: 1e-5,
    values: (m) => Array.from({ length: m }, (_, i) => (i % 2 === 0 ? 1 : -1) * Math.fround(3e38)),
    evalStats: null,
    bitwise: (dtype) => (dtype === 'float32' ? OUTPUTS : []),
    rule: (r, c, g, dtype) => {
      if (dtype === 'float32') expect(r.runningVar[c]).to.equal(Infinity);
      // xhat = +-1 (up to the mean 3e38 / m of an odd count): y = +-weight + bias.
      const m = g(r.y, c).length;
      g(r.y, c).forEach((v, i) => {
        const sign = i % 2 === 0 ? 1 : -1;
        const mu = m % 2 === 0 ? 0 : 1 / m;
        const sd = Math.sqrt(1 - mu * mu);
        expect(v, `y[${i}]`).to.be.closeTo(((sign - mu) / sd) * WEIGHT + BIAS, 1e-5);
      });
    },
  },
  {
    name: '+-3e38, three + for one - (x - mean reaches 4.5e38, beyond float32)',
    eps: 1e-5,
    values: (m) => Array.from({ length: m }, (_, i) => (i % 4 === 3 ? -1 : 1) * Math.fround(3e38)),
    evalStats: null,
    bitwise: (dtype) => (dtype === 'float32' ? OUTPUTS : []),
    rule: (r, c, g) => {
      // The elementwise centre moves so that x - centre stays finite: no inf, no NaN.
      for (const name of ['y', 'dx', 'yEval', 'dxEval'] as const) expectAll(name, g(r[name], c), (v) => Number.isFinite(v));
    },
  },
  {
    name: 'eps = 0, constant channel',
    eps: 0,
    values: (m) => new Array<number>(m).fill(2.5),
    evalStats: { mean: 2.5, variance: 0 },
    bitwise: () => ALL_BUT_FAST_SUMS('gradBias'),
    rule: (r, c, g) => {
      // PyTorch's rule: invstd = 0, so y = bias and the gradients are finite (dx = 0, dweight = 0).
      expect(r.batchInvstd[c]).to.equal(0);
      expect(r.saveInvstd[c]).to.equal(0);
      for (const name of ['y', 'yEval'] as const) expectAll(name, g(r[name], c), (v) => v === Math.fround(BIAS));
      for (const name of ['dx', 'dxEval'] as const) expectAll(name, g(r[name], c), (v) => v === 0);
      expect(r.gradWeight[c]).to.equal(0);
      expect(r.gradWeightEval[c]).to.equal(0);
    },
  },
  {
    name: 'eps = Number.MIN_VALUE, constant channel',
    eps: Number.MIN_VALUE,
    values: (m) => new Array<number>(m).fill(2.5),
    evalStats: { mean: 2.5, variance: 0 },
    bitwise: () => ALL_BUT_FAST_SUMS('gradBias', 'dx', 'gradBiasEval'),
    rule: (r, c, g, dtype) => {
      // invstd = 1 / sqrt(5e-324) = 4.5e161, capped at the dtype's largest value: y = bias,
      // dweight = 0, and no NaN anywhere (dx is huge: the true gradient is).
      expect(r.batchInvstd[c]).to.equal(dtype === 'float32' ? F32_MAX : 1 / Math.sqrt(Number.MIN_VALUE));
      for (const name of ['y', 'yEval'] as const) expectAll(name, g(r[name], c), (v) => v === Math.fround(BIAS));
      expect(r.gradWeight[c]).to.equal(0);
      expect(r.gradWeightEval[c]).to.equal(0);
      for (const name of ['dx', 'dxEval'] as const) expectAll(name, g(r[name], c), (v) => !Number.isNaN(v));
    },
  },
  {
    name: '-Infinity as the first value',
    eps: 1e-5,
    values: (m, rng) => {
      const v = Array.from(randn(rng, m, 'float32'));
      v[0] = -Infinity;
      return v;
    },
    evalStats: { mean: 0.5, variance: 2 },
    bitwise: () => OUTPUTS,
    rule: (r, c, g) => {
      // IEEE: mean -inf (running_mean -inf, as PyTorch), variance NaN, y NaN.
      expect(r.batchMean[c]).to.equal(-Infinity);
      expect(r.saveMean[c]).to.equal(-Infinity);
      expect(r.runningMean[c]).to.equal(-Infinity);
      expect(r.runningVar[c]).to.be.NaN;
      expectAll('y', g(r.y, c), (v) => Number.isNaN(v));
      expectAll('yEval', g(r.yEval, c), (v, i) => (i === 0 ? v === -Infinity : Number.isFinite(v)));
      expectAll('dxEval', g(r.dxEval, c), (v) => Number.isFinite(v));
    },
  },
  {
    name: '+Infinity in the middle',
    eps: 1e-5,
    values: (m, rng) => {
      const v = Array.from(randn(rng, m, 'float32'));
      v[m >> 1] = Infinity;
      return v;
    },
    evalStats: { mean: 0.5, variance: 2 },
    bitwise: () => OUTPUTS,
    rule: (r, c, g) => {
      expect(r.batchMean[c]).to.equal(Infinity);
      expect(r.runningMean[c]).to.equal(Infinity);
      expect(r.runningVar[c]).to.be.NaN;
      expectAll('y', g(r.y, c), (v) => Number.isNaN(v));
      const m = g(r.y, c).length;
      expectAll('yEval', g(r.yEval, c), (v, i) => (i === m >> 1 ? v === Infinity : Number.isFinite(v)));
      expectAll('dxEval', g(r.dxEval, c), (v) => Number.isFinite(v));
    },
  },
  {
    name: 'NaN as the last value',
    eps: 1e-5,
    values: (m, rng) => {
      const v = Array.from(randn(rng, m, 'float32'));
      v[m - 1] = NaN;
      return v;
    },
    evalStats: { mean: 0.5, variance: 2 },
    bitwise: () => OUTPUTS,
    rule: (r, c, g) => {
      expect(r.batchMean[c]).to.be.NaN;
      expect(r.runningMean[c]).to.be.NaN;
      expect(r.runningVar[c]).to.be.NaN;
      expectAll('y', g(r.y, c), (v) => Number.isNaN(v));
      expectAll('dx', g(r.dx, c), (v) => Number.isNaN(v));
      expect(r.gradWeight[c]).to.be.NaN;
      expect(r.gradBias[c]).to.satisfy(Number.isFinite); // dbias = sum(dy) does not read x
      const m = g(r.y, c).length;
      expectAll('yEval', g(r.yEval, c), (v, i) => (i === m - 1 ? Number.isNaN(v) : Number.isFinite(v)));
      expectAll('dxEval', g(r.dxEval, c), (v) => Number.isFinite(v));
    },
  },
  {
    name: 'large mean (|mean| = 3e4, std 0.05)',
    eps: 1e-5,
    values: (m, rng) => Array.from(randn(rng, m, 'float32', 3e4, 0.05)),
    evalStats: { mean: 3e4, variance: 0.0025 },
    // Ordinary sums: levels agree to rounding, checked against the reference below.
    bitwise: () => [],
    rule: (r, c, g) => {
      const y = g(r.y, c).map((v) => (v - BIAS) / WEIGHT);
      const mean = y.reduce((s, v) => s + v, 0) / y.length;
      const variance = y.reduce((s, v) => s + (v - mean) ** 2, 0) / y.length;
      // No cancellation: xhat has mean 0 and variance var / (var + eps) = 1 - eps * invstd^2.
      expect(mean).to.be.closeTo(0, 1e-4);
      expect(variance).to.be.closeTo(1 - 1e-5 * r.batchInvstd[c] ** 2, 1e-4);
    },
  },
];

/** invstd by the decided rule, in float64 (the reference's own copy of it). */
function ruleInvstd(variance: number, eps: number, dtype: DTypeName): number {
  const d = variance + eps;
  if (d === 0) return 0;
  const r = 1 / Math.sqrt(d);
  const cap = dtype === 'float32' ? F32_MAX : Number.MAX_VALUE;
  return r > cap ? cap : r;
}

interface Setup {
  x: AnyFloatArray;
  dy: AnyFloatArray;
  weight: AnyFloatArray;
  bias: AnyFloatArray;
  rm0: AnyFloatArray;
  rv0: AnyFloatArray;
  C: number;
  m: number;
  special: number;
  gather: Gathered;
}

function setup(cs: Case, layout: Layout, dtype: DTypeName, seed: number): Setup {
  const rng = new Rng(seed);
  const [N, C, ...sp] = layout.shape;
  const S = sp.reduce((p, d) => p * d, 1);
  const m = N * S;
  const at = (n: number, c: number, j: number): number => (layout.channelsLast ? (n * S + j) * C + c : (n * C + c) * S + j);
  const gather: Gathered = (a, c) => {
    const out: number[] = [];
    for (let n = 0; n < N; n++) for (let j = 0; j < S; j++) out.push(a[at(n, c, j)]);
    return out;
  };
  const T = ctorOf(dtype);
  const x = new T(m * C);
  const special = C >> 1;
  for (let c = 0; c < C; c++) {
    const v = c === special ? cs.values(m, rng, dtype) : Array.from(randn(rng, m, dtype, 0.5, 2));
    let k = 0;
    for (let n = 0; n < N; n++) for (let j = 0; j < S; j++) x[at(n, c, j)] = v[k++];
  }
  const weight = randn(rng, C, dtype, 1, 0.3);
  const bias = randn(rng, C, dtype, 0, 0.3);
  weight[special] = WEIGHT;
  bias[special] = BIAS;
  return {
    x, dy: randn(rng, m * C, dtype), weight, bias, rm0: randn(rng, C, dtype, 0, 0.3), rv0: randu(rng, C, dtype, 0.5, 2),
    C, m, special, gather,
  };
}

function run(cs: Case, layout: Layout, dtype: DTypeName, s: Setup): Results {
  const { x, dy, weight, bias, C } = s;
  const T = ctorOf(dtype);
  const opts = { channelsLast: layout.channelsLast };
  const runningMean = s.rm0.slice();
  const runningVar = s.rv0.slice();
  const tr = batchNormTraining(x, layout.shape, { ...opts, weight, bias, runningMean, runningVar, momentum: MOMENTUM, eps: cs.eps });
  const gw = new T(C).fill(NaN);
  const gb = new T(C).fill(NaN);
  const bw = batchNormBackward(x, dy, layout.shape, {
    ...opts, weight, training: true, mean: tr.batchMean, invstd: tr.batchInvstd, gradWeight: gw, gradBias: gb, accumulate: false,
  });
  // Evaluation: the other channels use the updated running statistics, the special one its case's.
  const rmE = runningMean.slice();
  const rvE = runningVar.slice();
  if (cs.evalStats) {
    rmE[s.special] = cs.evalStats.mean;
    rvE[s.special] = cs.evalStats.variance;
  }
  const yEval = batchNormInference(x, layout.shape, { ...opts, weight, bias, runningMean: rmE, runningVar: rvE, eps: cs.eps });
  const gwE = new T(C).fill(NaN);
  const gbE = new T(C).fill(NaN);
  const be = batchNormBackward(x, dy, layout.shape, {
    ...opts, weight, training: false, runningMean: rmE, runningVar: rvE, eps: cs.eps, gradWeight: gwE, gradBias: gbE, accumulate: false,
  });
  return {
    y: tr.y, saveMean: tr.saveMean, saveInvstd: tr.saveInvstd, batchMean: tr.batchMean, batchInvstd: tr.batchInvstd,
    runningMean, runningVar, dx: bw.dx, gradWeight: gw, gradBias: gb, yEval, dxEval: be.dx, gradWeightEval: gwE, gradBiasEval: gbE,
  };
}

/** The float64 reference of every output of channel c, by the decided rule, rounded to the dtype. */
function reference(cs: Case, s: Setup, r: Results, c: number, dtype: DTypeName): Record<Output, number[]> {
  const xs = s.gather(s.x, c);
  const dys = s.gather(s.dy, c);
  const d1: ref.Dims = { n: s.m, c: 1, s: 1 };
  const st = ref.batchStats(xs, d1, 1);
  const mean = st.mean[0];
  const variance = st.variance[0];
  const inv = ruleInvstd(variance, cs.eps, dtype);
  const w = [s.weight[c]];
  const b = [s.bias[c]];
  const g = ref.backward(xs, dys, d1, w, [mean], [inv], true);
  const up = ref.runningUpdate([s.rm0[c]], [s.rv0[c]], { ...st, invstd: Float64Array.of(inv) }, s.m, MOMENTUM, 1);
  // Evaluation statistics as the call got them (rounded to the dtype).
  const rmE = cs.evalStats && c === s.special ? cs.evalStats.mean : r.runningMean[c];
  const rvE = cs.evalStats && c === s.special ? cs.evalStats.variance : r.runningVar[c];
  const round = dtype === 'float32' ? Math.fround : (v: number) => v;
  const invE = ruleInvstd(round(rvE), cs.eps, dtype);
  const ge = ref.backward(xs, dys, d1, w, [round(rmE)], [invE], false);
  const T = (a: ArrayLike<number>): number[] => Array.from(a, round);
  return {
    y: T(ref.normalize(xs, d1, [mean], [inv], w, b)),
    saveMean: T([mean]),
    saveInvstd: T([inv]),
    batchMean: [mean],
    batchInvstd: [inv],
    runningMean: T(up.mean),
    runningVar: T(up.variance),
    dx: T(g.dx),
    gradWeight: T(g.dweight),
    gradBias: T(g.dbias),
    yEval: T(ref.normalize(xs, d1, [round(rmE)], [invE], w, b)),
    dxEval: T(ge.dx),
    gradWeightEval: T(ge.dweight),
    gradBiasEval: T(ge.dbias),
  };
}

/**
 * got against want: non-finite wants exactly (NaN as NaN, infinities with their sign), finite ones
 * within tol of the largest finite |want| of the output, or of `floor` if that is larger.
 */
function expectMatches(what: string, got: number[], want: number[], tol: number, floor: number): void {
  expect(got.length, `${what}: length`).to.equal(want.length);
  const scale = want.reduce((mx, v) => (Number.isFinite(v) ? Math.max(mx, Math.abs(v)) : mx), floor);
  for (let i = 0; i < want.length; i++) {
    const ok = Number.isFinite(want[i]) ? Math.abs(got[i] - want[i]) <= tol * scale : Object.is(got[i], want[i]);
    if (!ok) throw new Error(`${what}[${i}]: got ${got[i]}, expected ${want[i]} (tolerance ${tol} of ${scale})`);
  }
}

/** Bit for bit (NaN equals NaN; +0 and -0 are the same value here). */
function expectSameBits(what: string, got: number[], want: number[], wantName = 'the scalar level'): void {
  expect(got.length, `${what}: length`).to.equal(want.length);
  for (let i = 0; i < want.length; i++) {
    const same = Number.isNaN(want[i]) ? Number.isNaN(got[i]) : got[i] === want[i];
    if (!same) throw new Error(`${what}[${i}]: ${got[i]}, ${wantName} gave ${want[i]}`);
  }
}

// The two cases of values near float32's range: outputs as small as 1e-38 (dx), compared relative
// to their own size, not to 1.
const HUGE_RANGE = (cs: Case): boolean => cs.name.startsWith('values in') || cs.name.startsWith('+-3e38');

// Tolerances against the float64 reference (null: the case's rule checks it instead).
// eps = 5e-324, float32: the capped invstd (and weight * invstd, capped again) make dx saturate,
// where the reference's dx = weight * 3.4e38 * (dy - mean(dy)) rounds to infinity elsewhere.
// Values near float32's range, float32 dx: invstd^2 (~1e-76) is below float32's range, so the
// coefficient of dx's xhat * mean(dy * xhat) term rounds to 0 and that term is lost (a known
// limit, in the README: dx is ~1e-38 there): only the size and the absence of NaN/inf are checked.
function tolerance(cs: Case, out: Output, dtype: DTypeName, special: boolean): number | null {
  if (special && dtype === 'float32' && cs.eps === Number.MIN_VALUE && (out === 'dx' || out === 'dxEval')) return null;
  if (special && dtype === 'float32' && HUGE_RANGE(cs) && out === 'dx') return 1;
  if (dtype === 'float64') return special && cs.name.startsWith('large mean') ? 1e-9 : 1e-11;
  return 1e-5;
}

describe('numerics: overflow, infinities, NaN, eps = 0 / 5e-324, large mean, at every SIMD level', () => {
  const original = simdLevel();
  after(() => setSimdLevel(original));
  const levels = supportedSimdLevels();

  for (const cs of CASES) {
    for (const dtype of ['float32', 'float64'] as DTypeName[]) {
      it(`${cs.name}, ${dtype}: every layout and level`, () => {
        LAYOUTS.forEach((layout, li) => {
          const s = setup(cs, layout, dtype, 1000 * CASES.indexOf(cs) + li);
          // Channel c of an output: per-channel arrays have C elements, tensors m * C (m >= 2).
          const pick = (a: AnyFloatArray, c: number): number[] => (a.length === s.C ? [a[c]] : s.gather(a, c));
          let first: Results | null = null;
          for (const level of levels) {
            setSimdLevel(level);
            const label = `${cs.name} ${dtype} ${layout.name} ${level}`;
            const r = run(cs, layout, dtype, s);
            for (let c = 0; c < s.C; c++) {
              const want = reference(cs, s, r, c, dtype);
              for (const out of OUTPUTS) {
                const tol = tolerance(cs, out, dtype, c === s.special);
                const floor = c === s.special && HUGE_RANGE(cs) ? 0 : 1;
                if (tol !== null) expectMatches(`${label} channel ${c} ${out}`, pick(r[out], c), want[out], tol, floor);
              }
            }
            cs.rule(r, s.special, s.gather, dtype);
            if (first === null) {
              first = r;
            } else {
              for (const out of cs.bitwise(dtype)) {
                expectSameBits(`${label} ${out}`, pick(r[out], s.special), pick(first[out], s.special));
              }
            }
          }
        });
      });
    }
  }
});

// A channel-fastest layout with one channel is one contiguous run of the channel's values: [N, 1]
// (and channels-last with C = 1) must give exactly what [1, 1, N] gives, at every level. (It also
// made [2^31, 1] 20x slower than [1, 1, 2^31]: the rows kernels walked it one value per row.)
describe('numerics: [N, 1] and channels-last C = 1 are the same computation as [1, 1, N]', () => {
  const original = simdLevel();
  after(() => setSimdLevel(original));
  const m = 70001; // above the size where calls go parallel; odd, so every vector width has a tail

  for (const level of supportedSimdLevels()) {
    for (const dtype of ['float32', 'float64'] as DTypeName[]) {
      it(`${level} ${dtype}: identical bits for every output`, () => {
        setSimdLevel(level);
        const rng = new Rng(77);
        const x = randn(rng, m, dtype, 3, 2);
        const dy = randn(rng, m, dtype);
        const T = ctorOf(dtype);
        const weight = T.of(1.25);
        const bias = T.of(-0.5);
        const outputs = (shape: number[], channelsLast: boolean): number[][] => {
          const rm = T.of(0.1);
          const rv = T.of(0.9);
          const tr = batchNormTraining(x, shape, { weight, bias, runningMean: rm, runningVar: rv, channelsLast });
          const bw = batchNormBackward(x, dy, shape, { weight, training: true, mean: tr.batchMean, invstd: tr.batchInvstd, channelsLast });
          const ye = batchNormInference(x, shape, { weight, bias, runningMean: rm, runningVar: rv, channelsLast });
          const be = batchNormBackward(x, dy, shape, { weight, training: false, runningMean: rm, runningVar: rv, channelsLast });
          return [tr.y, tr.saveMean, tr.saveInvstd, tr.batchMean, tr.batchInvstd, rm, rv, bw.dx, bw.gradWeight, bw.gradBias, ye, be.dx, be.gradWeight, be.gradBias]
            .map((a) => Array.from(a));
        };
        const run = outputs([1, 1, m], false);
        // The reference guards against two equally wrong layouts.
        const st = ref.batchStats(x, { n: 1, c: 1, s: m }, 1e-5);
        expectMatches(`${level} ${dtype} [1, 1, m] y`, run[0], Array.from(ref.normalize(x, { n: 1, c: 1, s: m }, st.mean, st.invstd, weight, bias)), 1e-5, 1);
        for (const [shape, channelsLast] of [[[m, 1], false], [[m, 1], true], [[1, 1, m], true]] as [number[], boolean][]) {
          const other = outputs(shape, channelsLast);
          other.forEach((a, i) => expectSameBits(`${level} ${dtype} ${JSON.stringify(shape)} channelsLast=${channelsLast} output ${i}`, a, run[i], '[1, 1, m]'));
        }
      });
    }
  }
});
