// 16-bit storage at the edges: NaN, infinities and subnormals in and out (the rule of
// docs/16-bit.md at every SIMD level, AVX512_BF16's flushing bypassed), float16 overflow, the sync,
// async and functional entry points agreeing bit for bit, and hostile arguments refused with a
// coded error that names the argument, the layer unchanged.
import { expect } from 'chai';
import {
  BatchNorm, BatchNorm2d, batchNormBackward, batchNormBackwardAsync, batchNormInference, batchNormInferenceAsync,
  batchNormTraining, batchNormTrainingAsync, BatchNormTypeError, setSimdLevel, simdLevel, supportedSimdLevels,
} from '../lib';
import { FORMATS, HalfName } from './helpers/half-check';
import { encodeHalf, f32FromBits } from './helpers/half-reference';
import { native } from '../lib/load';

const HALVES: HalfName[] = ['bfloat16', 'float16'];

/** Interesting 16-bit inputs of a format: zeros, subnormals, normals near the ends, inf, NaNs. */
function edgeBits(dtype: HalfName): number[] {
  const sub = dtype === 'bfloat16' ? [0x0001, 0x0040, 0x007f, 0x8001, 0x80ff] : [0x0001, 0x0200, 0x03ff, 0x8001, 0x83ff];
  const big = dtype === 'bfloat16' ? [0x7f7f, 0xff7f, 0x7f00] : [0x7bff, 0xfbff, 0x7800];
  const inf = dtype === 'bfloat16' ? [0x7f80, 0xff80] : [0x7c00, 0xfc00];
  const nan = dtype === 'bfloat16' ? [0x7fc1, 0xffff, 0x7f81] : [0x7e01, 0xffff, 0x7c01];
  const one = dtype === 'bfloat16' ? 0x3f80 : 0x3c00;
  return [0x0000, 0x8000, ...sub, ...big, ...inf, ...nan, one, one | 0x8000];
}

/** 16-bit value -> float32 value (exact). */
function widen(dtype: HalfName, h: number): number {
  if (dtype === 'bfloat16') return f32FromBits(h << 16);
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 31;
  const m = h & 1023;
  if (e === 31) return m ? NaN : s * Infinity;
  return e === 0 ? s * m * 2 ** -24 : s * (1 + m / 1024) * 2 ** (e - 15);
}

describe('16-bit storage: special values', () => {
  const original = simdLevel();
  after(() => setSimdLevel(original));
  for (const level of supportedSimdLevels()) {
    for (const dtype of HALVES) {
      it(`${level} ${dtype}: inference y = x * w keeps subnormals, infinities and gives the one quiet NaN`, () => {
        setSimdLevel(level);
        const f = FORMATS[dtype];
        const vals = edgeBits(dtype);
        // C = 1, 37 values: whole vectors mixing every kind of lane, and a tail.
        const x = Uint16Array.from({ length: 37 }, (_, i) => vals[i % vals.length]);
        for (const w of [1, -1, 0.5, 3, dtype === 'float16' ? 65519 / 1024 : 2 ** 100]) {
          const y = batchNormInference(x, [37, 1], {
            dtype, weight: Float32Array.of(w), bias: Float32Array.of(0), runningMean: Float32Array.of(0), runningVar: Float32Array.of(1), eps: 0,
          });
          for (let i = 0; i < x.length; i++) {
            const want = encodeHalf(f, Math.fround(widen(dtype, x[i]) * Math.fround(w)) + 0); // + bias 0: -0 becomes +0
            expect(y[i], `x 0x${x[i].toString(16)} * ${w}: got 0x${y[i].toString(16)}, want 0x${want.toString(16)}`).to.equal(want);
          }
        }
      });

      it(`${level} ${dtype}: training statistics with NaN / inf in one channel; the others exact`, () => {
        setSimdLevel(level);
        const f = FORMATS[dtype];
        const one = dtype === 'bfloat16' ? 0x3f80 : 0x3c00;
        const two = dtype === 'bfloat16' ? 0x4000 : 0x4000;
        const shape = [4, 3, 9];
        const x = Uint16Array.from({ length: 108 }, (_, i) => (i % 2 ? one : two));
        x[9 + 4] = f.nan; // channel 1, sample 0
        x[2 * 9 + 27 * 2] = dtype === 'bfloat16' ? 0x7f80 : 0x7c00; // channel 2, sample 2: +inf
        const r = batchNormTraining(x, shape, { dtype });
        expect(Number.isNaN(r.saveMean[1])).to.equal(true);
        expect(r.saveMean[2]).to.equal(Infinity);
        for (let b = 0; b < 4; b++) {
          for (let j = 0; j < 9; j++) {
            const i0 = b * 27 + j;
            expect(r.y[i0 + 9], 'NaN channel: the one quiet NaN').to.equal(f.nan);
            expect(r.y[i0 + 18], 'inf channel: (x - inf) * 0 is NaN').to.equal(f.nan);
            // channel 0: values 1 and 2 alternate: y = +-1 (to rounding of invstd) exactly representable
            expect(Math.abs(widen(dtype, r.y[i0])), 'finite channel').to.be.closeTo(1, 2 ** -7);
          }
        }
      });
    }

    it(`${level} float16: outputs past 65504 overflow to infinity as IEEE says (65520 rounds up)`, () => {
      setSimdLevel(level);
      const x = Uint16Array.from({ length: 19 }, () => 0x3c00); // 1
      for (const [w, want] of [[65504, 0x7bff], [65519.99, 0x7bff], [65520, 0x7c00], [-65520, 0xfc00], [1e6, 0x7c00]] as const) {
        const y = batchNormInference(x, [19, 1], { dtype: 'float16', weight: Float32Array.of(w), runningMean: Float32Array.of(0), runningVar: Float32Array.of(1), eps: 0 });
        expect(Array.from(y), `1 * ${w}`).to.deep.equal(new Array(19).fill(want));
      }
    });
  }
});

function sample(dtype: HalfName): { x: Uint16Array; dy: Uint16Array; shape: number[] } {
  const shape = [3, 5, 6, 7];
  const n = 630;
  const enc = (v: number) => encodeHalf(FORMATS[dtype], v);
  return {
    shape,
    x: Uint16Array.from({ length: n }, (_, i) => enc(Math.sin(i * 0.7) * 2 + (i % 5))),
    dy: Uint16Array.from({ length: n }, (_, i) => enc(Math.cos(i * 0.3))),
  };
}

describe('16-bit storage: sync, async and functional agree bit for bit', () => {
  for (const dtype of HALVES) {
    for (const channelsLast of [false, true]) {
      it(`${dtype}${channelsLast ? ' channels-last' : ''}: layer forward/backward, async and functional`, async () => {
        const { x, dy, shape } = sample(dtype);
        const a = new BatchNorm2d(5, { dtype });
        const b = new BatchNorm2d(5, { dtype });
        for (const l of [a, b]) l.weight!.set([1, 2, 0.5, -1, 3]);
        const ya = a.forward(x, shape, { channelsLast });
        const yb = await b.forwardAsync(x, shape, { channelsLast });
        expect(Array.from(yb)).to.deep.equal(Array.from(ya));
        expect(Array.from(b.runningVar!)).to.deep.equal(Array.from(a.runningVar!));
        const dxa = a.backward(dy);
        const dxb = await b.backwardAsync(dy);
        expect(Array.from(dxb)).to.deep.equal(Array.from(dxa));
        expect(Array.from(b.gradWeight!)).to.deep.equal(Array.from(a.gradWeight!));

        const weight = Float32Array.of(1, 2, 0.5, -1, 3);
        const bias = new Float32Array(5);
        const r = batchNormTraining(x, shape, { dtype, weight, bias, channelsLast });
        const ra = await batchNormTrainingAsync(x, shape, { dtype, weight, bias, channelsLast });
        expect(Array.from(r.y)).to.deep.equal(Array.from(ya));
        expect(Array.from(ra.y)).to.deep.equal(Array.from(ya));
        const g = batchNormBackward(x, dy, shape, { dtype, weight, training: true, mean: r.batchMean, invstd: r.batchInvstd, channelsLast });
        const ga = await batchNormBackwardAsync(x, dy, shape, { dtype, weight, training: true, mean: r.batchMean, invstd: r.batchInvstd, channelsLast });
        expect(Array.from(g.dx)).to.deep.equal(Array.from(dxa));
        expect(Array.from(ga.dx)).to.deep.equal(Array.from(dxa));
        expect(Array.from(g.gradWeight)).to.deep.equal(Array.from(a.gradWeight!));

        a.eval();
        const ye = a.forward(x, shape, { channelsLast });
        const opts = { dtype, weight, bias, runningMean: a.runningMean!, runningVar: a.runningVar!, channelsLast };
        expect(Array.from(batchNormInference(x, shape, opts))).to.deep.equal(Array.from(ye));
        expect(Array.from(await batchNormInferenceAsync(x, shape, opts))).to.deep.equal(Array.from(ye));
      });
    }
  }
});

type Loose = any; // eslint-disable-line @typescript-eslint/no-explicit-any

function expectCoded(fn: () => unknown, code: string, ...words: string[]): void {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err, `expected ${code}`).to.be.instanceOf(Error);
  expect((err as { code?: string }).code, (err as Error).message).to.equal(code);
  for (const w of words) expect((err as Error).message).to.include(w);
}

function snapshot(l: BatchNorm): string {
  return JSON.stringify([l.weight, l.bias, l.runningMean, l.runningVar, l.gradWeight, l.gradBias].map((a) => Array.from(a!)).concat([[l.numBatchesTracked]]));
}

describe('16-bit storage: hostile arguments', () => {
  const { x, dy, shape } = sample('bfloat16');

  it('a bfloat16 layer refuses float arrays for x, out and dy, naming them; nothing changes', () => {
    const l = new BatchNorm2d(5, { dtype: 'bfloat16' });
    const before = snapshot(l);
    expectCoded(() => l.forward(new Float32Array(630) as Loose, shape), 'ERR_BN_DTYPE_MISMATCH', 'x must be a Uint16Array', 'bfloat16', 'toBFloat16');
    expectCoded(() => l.forward(x, shape, new Float32Array(630) as Loose), 'ERR_BN_DTYPE_MISMATCH', 'out must be a Uint16Array');
    expectCoded(() => l.forward(x, shape, { out: new Int16Array(630) as Loose }), 'ERR_BN_INVALID_ARG_TYPE', 'out');
    expectCoded(() => l.forward(x.subarray(1), shape), 'ERR_BN_BAD_LENGTH', 'x must have 630 elements');
    expectCoded(() => l.forward(x, shape, { out: x.subarray(0, 630 - 1) as Loose }), 'ERR_BN_BAD_LENGTH', 'out');
    expect(snapshot(l)).to.equal(before);
    l.forward(x, shape);
    const after = snapshot(l);
    expectCoded(() => l.backward(new Float32Array(630) as Loose), 'ERR_BN_DTYPE_MISMATCH', 'dy must be a Uint16Array');
    expectCoded(() => l.backward(dy, new Float64Array(630) as Loose), 'ERR_BN_DTYPE_MISMATCH', 'out must be a Uint16Array');
    expect(snapshot(l)).to.equal(after);
  });

  it('a float32 layer refuses a Uint16Array, pointing at the 16-bit dtypes', () => {
    const l = new BatchNorm2d(5);
    const before = snapshot(l);
    expectCoded(() => l.forward(x as Loose, shape), 'ERR_BN_DTYPE_MISMATCH', 'x must be a Float32Array', "'bfloat16'");
    expect(snapshot(l)).to.equal(before);
  });

  it('the functional API needs dtype with a Uint16Array, and float32 parameters with it', () => {
    const rm = new Float32Array(5);
    const rv = new Float32Array(5).fill(1);
    expectCoded(() => batchNormTraining(x, shape), 'ERR_BN_DTYPE_REQUIRED', 'x is a Uint16Array', "'bfloat16' or 'float16'");
    expectCoded(() => batchNormTraining(x, shape, { dtype: 'float32' }), 'ERR_BN_DTYPE_MISMATCH', 'x is a Uint16Array');
    expectCoded(() => batchNormTraining(new Float32Array(630), shape, { dtype: 'bfloat16' }), 'ERR_BN_DTYPE_MISMATCH', 'options.dtype');
    expectCoded(() => batchNormTraining(x, shape, { dtype: 'bfloat16', weight: new Uint16Array(5) as Loose, runningMean: rm, runningVar: rv }), 'ERR_BN_INVALID_ARG_TYPE', 'weight must be a Float32Array');
    expectCoded(() => batchNormTraining(x, shape, { dtype: 'bfloat16', runningMean: new Float64Array(5) as Loose, runningVar: rv }), 'ERR_BN_DTYPE_MISMATCH', 'runningMean must be a Float32Array');
    expectCoded(() => batchNormInference(x, shape, { dtype: 'float16', runningMean: rm, runningVar: rv, out: new Float32Array(630) as Loose }), 'ERR_BN_DTYPE_MISMATCH', 'out must be a Uint16Array');
    expectCoded(() => batchNormBackward(x, new Float32Array(630) as Loose, shape, { dtype: 'bfloat16', training: false, runningMean: rm, runningVar: rv }), 'ERR_BN_DTYPE_MISMATCH', 'dy must be a Uint16Array');
    const shared = new Uint16Array(1260);
    expectCoded(() => batchNormTraining(shared.subarray(0, 630), shape, { dtype: 'bfloat16', out: shared.subarray(1, 631) }), 'ERR_BN_OVERLAP', 'out');
    expect(Array.from(rm)).to.deep.equal([0, 0, 0, 0, 0]);
    expect(Array.from(rv)).to.deep.equal([1, 1, 1, 1, 1]);
  });

  it('the addon re-checks: the dtype key, Uint16Array parameters, a Uint16Array without dtype', () => {
    const b = native();
    const C = 5;
    const call = (o: Record<string, unknown>) => () => b.forwardInference({
      fn: 'probe', x, out: new Uint16Array(630), n: 3, c: C, s: 42, channelsLast: false, weight: null, bias: null,
      runningMean: new Float32Array(C), runningVar: new Float32Array(C).fill(1), eps: 1e-5, dtype: 'bfloat16', ...o,
    } as Loose);
    expect(call({})).to.not.throw();
    expectCoded(call({ dtype: undefined }), 'ERR_BN_INVALID_ARG_TYPE', 'probe: x', 'Uint16Array');
    expectCoded(call({ dtype: 'float8' }), 'ERR_BN_INVALID_ARG_TYPE', "dtype must be 'bfloat16' or 'float16'");
    expectCoded(call({ x: new Float32Array(630) }), 'ERR_BN_DTYPE_MISMATCH', 'x must be a Uint16Array (bfloat16)');
    expectCoded(call({ weight: new Uint16Array(C) }), 'ERR_BN_DTYPE_MISMATCH', 'weight must be a Float32Array');
    expectCoded(call({ runningVar: new Float64Array(C) }), 'ERR_BN_DTYPE_MISMATCH', 'runningVar must be a Float32Array');
    expectCoded(call({ out: new Uint16Array(629) }), 'ERR_BN_BAD_LENGTH', 'out must have 630 elements');
    expectCoded(call({ out: x.subarray(0) as Loose, x: new Uint16Array(x.buffer, 2, 629) as Loose, n: 1, c: 1, s: 629 }), 'ERR_BN_BAD_LENGTH');
  });

  it('synchronized batch norm refuses the 16-bit dtypes', () => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { SyncBatchNorm, ThreadGroup } = require('../lib') as typeof import('../lib');
    expectCoded(() => new SyncBatchNorm(3, { group: null as Loose, dtype: 'bfloat16' }), 'ERR_BN_DTYPE_MISMATCH', "'float32' or 'float64'");
    expect(ThreadGroup).to.be.a('function');
  });
});

export { BatchNormTypeError };
