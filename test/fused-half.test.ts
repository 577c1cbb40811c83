// The fused activation on 16-bit storage (bfloat16 / float16 bits in Uint16Arrays, float32
// parameters): relu(BN(x) + z) computed in float32 and rounded once, within one unit in the last
// place of the float64 chain; backward's dL/dz exactly the masked dy bits; dx against the float64
// reference with the mask of the y under test. Every SIMD level, NCHW and channels-last, training
// and evaluation, sizes around the vector widths.
import { expect } from 'chai';
import { BatchNorm, setSimdLevel, simdLevel, supportedSimdLevels } from '../lib';
import { decodeAll, encodeAll, expectWithinUlp, FORMATS, HalfName } from './helpers/half-check';
import { fromChannelsLast, toChannelsLast } from './helpers/layout';
import { Rng } from './helpers/random';
import * as ref from './helpers/reference';

const HALVES: HalfName[] = ['bfloat16', 'float16'];
// float32 compute: a few roundings of the terms before the one rounding to 16 bits.
const F32_SLACK = 2 ** -20;

describe('fused activation on bfloat16 / float16 storage', () => {
  const original = simdLevel();
  after(() => setSimdLevel(original));
  for (const level of supportedSimdLevels()) {
    for (const dtype of HALVES) {
      it(`${level}, ${dtype}: relu(BN(x) + z) within 1 ulp, dz = masked dy exactly, dx against float64`, () => {
        setSimdLevel(level);
        const f = FORMATS[dtype];
        const rng = new Rng(1316);
        let runs = 0;
        for (const [N, C, S] of [[2, 3, 1], [2, 3, 9], [3, 5, 17], [2, 4, 35]]) {
          for (const channelsLast of [false, true]) {
            for (const training of [true, false]) {
              const total = N * C * S;
              const xb = encodeAll(f, Array.from({ length: total }, () => 0.3 + 1.5 * rng.normal()));
              const zb = encodeAll(f, Array.from({ length: total }, () => rng.normal()));
              const dyb = encodeAll(f, Array.from({ length: total }, () => rng.normal()));
              const [xv, zv, dyv] = [xb, zb, dyb].map((b) => decodeAll(f, b));
              const make = (n: number) => new Uint16Array(n);
              const lay = (b: Uint16Array) => (channelsLast ? toChannelsLast(b, N, C, S, make) : b.slice());
              const back = (b: Uint16Array) => (channelsLast ? fromChannelsLast(b, N, C, S, make) : b);
              const layer = new BatchNorm(C, { dtype, activation: 'relu' });
              const weight = Float32Array.from({ length: C }, () => 1 + 0.5 * rng.normal());
              const bias = Float32Array.from({ length: C }, () => 0.5 * rng.normal());
              layer.weight!.set(weight);
              layer.bias!.set(bias);
              layer.runningMean!.set(Float32Array.from({ length: C }, () => 0.3 * rng.normal()));
              layer.runningVar!.set(Float32Array.from({ length: C }, () => 0.5 + Math.abs(rng.normal())));
              const rm = Float64Array.from(layer.runningMean!), rv = Float64Array.from(layer.runningVar!);
              layer.train(training);
              const y = back(layer.forward(lay(xb), [N, C, S], { residual: lay(zb), channelsLast }) as Uint16Array);
              const d = { n: N, c: C, s: S };
              const st = training ? ref.batchStats(xv, d, 1e-5) : null;
              const mean = st ? st.mean : rm;
              const invstd = st ? st.invstd : rv.map((v) => 1 / Math.sqrt(Math.fround(v) + 1e-5));
              const bn = ref.normalize(xv, d, mean, invstd, weight, bias);
              const yref = bn.map((v, i) => Math.max(0, v + zv[i]));
              const what = `${level} ${dtype} [${N}, ${C}, ${S}]${channelsLast ? ' NHWC' : ''} ${training ? 'train' : 'eval'}`;
              expectWithinUlp(`${what} y`, f, y, yref, yref.map((_, i) => F32_SLACK * (Math.abs(bn[i]) + Math.abs(zv[i]) + 1)));
              const dz = new Uint16Array(total);
              const dx = back(layer.backward(lay(dyb), { residualGrad: dz }) as Uint16Array);
              const dzn = back(dz);
              const yv = decodeAll(f, y);
              for (let i = 0; i < total; i++) expect(dzn[i], `${what} dz[${i}]`).to.equal(yv[i] > 0 ? dyb[i] : 0);
              const g = Float64Array.from(dyv, (v, i) => (yv[i] > 0 ? v : 0));
              const r = ref.backward(xv, g, d, weight, mean, invstd, training);
              const scale = r.dx.reduce((m, v) => Math.max(m, Math.abs(v)), 0) + 1;
              expectWithinUlp(`${what} dx`, f, dx, r.dx, r.dx.map(() => 2 ** -14 * scale));
              runs++;
            }
          }
        }
        expect(runs).to.equal(16);
      });
    }
  }
});
