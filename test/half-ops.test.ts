// Batch norm on 16-bit storage (bfloat16 / float16 raw bits in Uint16Arrays, float32 parameters)
// against the float64 reference at every SIMD level: sizes where SIMD tails break (1, w - 1, w,
// w + 1, 2w + 3 for w = 8 and 16), NaN-poisoned outputs with guards, NCHW, [N, C] and
// channels-last, large means, NaN / infinity / subnormal inputs and float16 overflow, and the sync,
// async and functional entry points agreeing bit for bit.
import { expect } from 'chai';
import {
  BatchNorm, BatchNorm1d, BatchNorm2d, batchNormBackward, batchNormInference, batchNormInferenceAsync, batchNormTraining,
  batchNormTrainingAsync, setSimdLevel, simdLevel, supportedSimdLevels,
} from '../lib';
import {
  decodeAll, encodeAll, expectClose, expectWithinUlp, FORMATS, HalfName, POISON,
} from './helpers/half-check';
import { fromChannelsLast, toChannelsLast } from './helpers/layout';
import { encodeHalf } from './helpers/half-reference';
import { Rng } from './helpers/random';
import * as ref from './helpers/reference';

const HALVES: HalfName[] = ['bfloat16', 'float16'];
const TAILS = [1, 7, 8, 9, 15, 16, 17, 35]; // w - 1, w, w + 1 and 2w + 3 for w = 8 (AVX2) and 16 (AVX-512)
const GUARD = 5;
// float32 compute: a few roundings of the terms before the one rounding to 16 bits.
const F32_SLACK = 2 ** -20;

/** A poisoned buffer with GUARD poisoned values on each side; `view` is the output. */
function poisoned(n: number): { all: Uint16Array; view: Uint16Array } {
  const all = new Uint16Array(n + 2 * GUARD).fill(POISON);
  return { all, view: all.subarray(GUARD, GUARD + n) };
}

function expectGuards(what: string, all: Uint16Array, n: number): void {
  for (let i = 0; i < GUARD; i++) {
    expect(all[i], `${what}: guard before`).to.equal(POISON);
    expect(all[GUARD + n + i], `${what}: guard after`).to.equal(POISON);
  }
}

interface Data {
  x: Uint16Array;
  dy: Uint16Array;
  xv: Float64Array; // x's values, NCHW
  dyv: Float64Array;
  weight: Float32Array;
  bias: Float32Array;
}

/** Random inputs rounded to the format (values NCHW; bits in the requested layout). */
function makeData(dtype: HalfName, rng: Rng, n: number, c: number, s: number, channelsLast: boolean, mean = 0, std = 1): Data {
  const f = FORMATS[dtype];
  const total = n * c * s;
  const xbits = encodeAll(f, Array.from({ length: total }, (_, i) => mean + (i % 5 === 0 ? 3 : 1) * std * rng.normal() + 0.25 * ((i / s | 0) % c)));
  const dybits = encodeAll(f, Array.from({ length: total }, () => rng.normal()));
  const weight = Float32Array.from({ length: c }, () => 1 + 0.5 * rng.normal());
  const bias = Float32Array.from({ length: c }, () => 0.5 * rng.normal());
  const make = (len: number) => new Uint16Array(len);
  return {
    x: channelsLast ? toChannelsLast(xbits, n, c, s, make) : xbits,
    dy: channelsLast ? toChannelsLast(dybits, n, c, s, make) : dybits,
    xv: decodeAll(f, xbits), dyv: decodeAll(f, dybits), weight, bias,
  };
}

/** Slack of y = (x - mean) * a + b in float32: the terms' magnitudes. */
function ySlack(d: ref.Dims, xv: Float64Array, mean: ArrayLike<number>, a: ArrayLike<number>, b: ArrayLike<number>): Float64Array {
  const out = new Float64Array(xv.length);
  for (let i = 0; i < xv.length; i++) {
    const c = Math.floor(i / d.s) % d.c;
    out[i] = F32_SLACK * (Math.abs((xv[i] - mean[c]) * a[c]) + Math.abs(b[c]));
  }
  return out;
}

function nchw(bits: Uint16Array, n: number, c: number, s: number, channelsLast: boolean): Uint16Array {
  return channelsLast ? fromChannelsLast(bits, n, c, s, (len) => new Uint16Array(len)) : bits;
}

/** Training forward, backward and evaluation forward of one shape against the float64 reference. */
function checkShape(dtype: HalfName, shape: number[], channelsLast: boolean, rng: Rng, mean = 0, std = 1): void {
  const f = FORMATS[dtype];
  const d = ref.dimsOf(shape);
  const total = d.n * d.c * d.s;
  const what = `${dtype} [${shape.join(', ')}]${channelsLast ? ' channels-last' : ''}`;
  const data = makeData(dtype, rng, d.n, d.c, d.s, channelsLast, mean, std);
  const Layer: typeof BatchNorm = shape.length === 4 ? BatchNorm2d : shape.length <= 3 ? BatchNorm1d : BatchNorm;
  const bn = new Layer(d.c, { dtype });
  bn.weight?.set(data.weight);
  bn.bias?.set(data.bias);

  const y = poisoned(total);
  bn.forward(data.x, shape, { out: y.view, channelsLast });
  expectGuards(`${what} y`, y.all, total);
  const r = ref.forwardTraining(data.xv, d, data.weight, data.bias, 1e-5);
  const a = Float64Array.from(data.weight, (w, c) => w * r.invstd[c]);
  expectWithinUlp(`${what} y`, f, nchw(y.view, d.n, d.c, d.s, channelsLast), r.y, ySlack(d, data.xv, r.mean, a, data.bias));
  const upd = ref.runningUpdate(new Float64Array(d.c), new Float64Array(d.c).fill(1), r, d.n * d.s, 0.1, 1);
  expectClose(`${what} runningMean`, bn.runningMean as Float32Array, upd.mean, 1e-5, 1e-6 * (Math.abs(mean) + std));
  expectClose(`${what} runningVar`, bn.runningVar as Float32Array, upd.variance, 1e-4, 1e-6);

  const dx = poisoned(total);
  bn.backward(data.dy, { out: dx.view });
  expectGuards(`${what} dx`, dx.all, total);
  const g = ref.backward(data.xv, data.dyv, d, data.weight, r.mean, r.invstd, true);
  const m = d.n * d.s;
  const dxSlack = new Float64Array(total);
  for (let i = 0; i < total; i++) {
    const c = Math.floor(i / d.s) % d.c;
    const k1 = a[c];
    const xhat = (data.xv[i] - r.mean[c]) * r.invstd[c];
    dxSlack[i] = F32_SLACK * (Math.abs(data.dyv[i] * k1) + Math.abs(k1 / m) * (Math.abs(g.dbias[c]) + Math.abs(xhat * g.dweight[c])));
  }
  expectWithinUlp(`${what} dx`, f, nchw(dx.view, d.n, d.c, d.s, channelsLast), g.dx, dxSlack);
  const gscale = Math.max(1, ...Array.from(g.dweight, Math.abs), ...Array.from(g.dbias, Math.abs));
  expectClose(`${what} gradWeight`, bn.gradWeight as Float32Array, g.dweight, 1e-5, 1e-6 * gscale);
  expectClose(`${what} gradBias`, bn.gradBias as Float32Array, g.dbias, 1e-5, 1e-6 * gscale);

  bn.eval();
  const ye = poisoned(total);
  bn.forward(data.x, shape, { out: ye.view, channelsLast });
  expectGuards(`${what} eval y`, ye.all, total);
  const rm = bn.runningMean as Float32Array;
  const rv = bn.runningVar as Float32Array;
  const inv = Float64Array.from(rv, (v) => 1 / Math.sqrt(v + 1e-5));
  const ae = Float64Array.from(data.weight, (w, c) => w * inv[c]);
  expectWithinUlp(`${what} eval y`, f, nchw(ye.view, d.n, d.c, d.s, channelsLast), ref.forwardInference(data.xv, d, data.weight, data.bias, rm, rv, 1e-5),
    ySlack(d, data.xv, rm, ae, data.bias));
}

describe('16-bit storage: ops against the float64 reference', () => {
  const original = simdLevel();
  after(() => setSimdLevel(original));

  for (const level of supportedSimdLevels()) {
    describe(`level ${level}`, () => {
      before(() => setSimdLevel(level));
      for (const dtype of HALVES) {
        it(`${dtype}: NCHW, C and spatial sizes ${TAILS.join(', ')}`, () => {
          const rng = new Rng(101);
          for (const c of [1, 3, 17]) for (const s of TAILS) checkShape(dtype, [2, c, s], false, rng);
          for (const c of TAILS) checkShape(dtype, [3, c, 5], false, rng);
        });
        it(`${dtype}: [N, C] rows, N and C sizes ${TAILS.join(', ')}`, () => {
          const rng = new Rng(202);
          for (const n of [2, 9, 35]) for (const c of TAILS) checkShape(dtype, [n, c], false, rng);
        });
        it(`${dtype}: channels-last [N, C, H, W]`, () => {
          const rng = new Rng(303);
          for (const c of TAILS) checkShape(dtype, [2, c, 3, 5], true, rng);
        });
        it(`${dtype}: large means (|mean| = 1000 std), NCHW and channels-last`, () => {
          const rng = new Rng(404);
          const mean = dtype === 'float16' ? 1000 : 65536;
          const std = mean / 1000;
          checkShape(dtype, [4, 3, 37], false, rng, mean, std);
          checkShape(dtype, [4, 19, 2, 3], true, rng, -mean, std);
          checkShape(dtype, [64, 5], false, rng, mean, std);
        });
        it(`${dtype}: long runs (S = 4160: two reduction pieces per run)`, () => {
          checkShape(dtype, [3, 4, 64, 65], false, new Rng(505));
        });
      }
    });
  }
});

// Streaming (non-temporal) 16-bit stores: a child process with BATCHNORM_STREAM_MIN_BYTES=0
// streams every output; its bits must equal this process's plain stores, at every level, on views
// starting one value (2 bytes) past a 32-byte boundary, with their guards intact.
const STREAM_SHAPES = [[3, 5, 4, 4], [2, 7, 17, 1], [4, 64, 7, 7], [2, 3, 40, 41]];
function streamCases(lib: typeof import('../lib')): string[] {
  const out: string[] = [];
  for (const level of lib.supportedSimdLevels()) {
    lib.setSimdLevel(level);
    for (const shape of STREAM_SHAPES) for (const dtype of ['bfloat16', 'float16'] as const) {
      const n = shape.reduce((p, q) => p * q, 1);
      const C = shape[1];
      const x = new Uint16Array(new ArrayBuffer(2 * (n + 1)), 2, n);
      const dy = new Uint16Array(n);
      for (let i = 0; i < n; i++) {
        x[i] = dtype === 'bfloat16' ? 0x3f80 + ((i * 37) % 300) - 150 : 0x3c00 + ((i * 37) % 900) - 450;
        dy[i] = dtype === 'bfloat16' ? 0x3f00 + ((i * 11) % 200) : 0x3800 + ((i * 11) % 700);
      }
      const L = new lib.BatchNorm(C, { dtype });
      for (let c = 0; c < C; c++) L.weight![c] = 1 + 0.1 * c;
      const buf = new Uint16Array(n + 2 + 16).fill(0x7fbe);
      const y = buf.subarray(17, 17 + n);
      L.forward(x, shape, y);
      const dxb = new Uint16Array(n + 2 + 16).fill(0x7fbe);
      const dx = dxb.subarray(17, 17 + n);
      L.backward(dy, dx);
      if (buf[16] !== 0x7fbe || buf[17 + n] !== 0x7fbe || dxb[16] !== 0x7fbe || dxb[17 + n] !== 0x7fbe) throw new Error(`guard overwritten: ${level} ${dtype} ${shape}`);
      let h = 0;
      for (const v of [...y, ...dx, ...new Uint16Array(L.gradWeight!.buffer)]) h = (Math.imul(h, 31) + v) | 0;
      out.push(`${level} ${dtype} [${shape}] ${h}`);
    }
  }
  return out;
}

describe('16-bit storage: streaming stores', () => {
  it('give the bits of plain stores at every level (child with BATCHNORM_STREAM_MIN_BYTES=0)', () => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { spawnSync } = require('child_process') as typeof import('child_process');
    const lib = require('../lib') as typeof import('../lib');
    const original = lib.simdLevel();
    const here = streamCases(lib);
    lib.setSimdLevel(original);
    const script = `const f = ${streamCases.toString()}; const STREAM_SHAPES = ${JSON.stringify(STREAM_SHAPES)};
      process.stdout.write(JSON.stringify(f(require(${JSON.stringify(require.resolve('../lib'))}))));`;
    const r = spawnSync(process.execPath, ['-e', script], { env: { ...process.env, BATCHNORM_STREAM_MIN_BYTES: '0' }, encoding: 'utf8' });
    expect(r.status, r.stderr).to.equal(0);
    expect(JSON.parse(r.stdout)).to.deep.equal(here);
  });
});
