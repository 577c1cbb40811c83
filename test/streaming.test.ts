// Non-temporal (streaming) stores: forced on small tensors with BATCHNORM_STREAM_MIN_BYTES=0 in a
// child process, every SIMD level, short and long runs (a short-run group is written as one span
// whose vectors straddle runs), unaligned NaN-guarded views, against the float64 reference
// (test/helpers/reference.ts, required compiled by the child).
import { expect } from 'chai';
import { spawnSync } from 'child_process';
import * as path from 'path';

const LIB = path.resolve(__dirname, '..', 'lib');
const REF = path.resolve(__dirname, 'helpers', 'reference'); // the one float64 reference, compiled

const script = `
const bn = require(${JSON.stringify(LIB)});
const ref = require(${JSON.stringify(REF)});
const shapes = [[3, 5, 4, 4], [2, 7, 17, 1], [4, 64, 7, 7], [2, 9, 5, 7], [2, 3, 40, 41], [1, 2, 1, 300]];
let checked = 0, worst = 0;
for (const level of bn.supportedSimdLevels()) {
  bn.setSimdLevel(level);
  for (const shape of shapes) for (const dtype of ['float32', 'float64']) for (const training of [true, false]) {
    const T = dtype === 'float32' ? Float32Array : Float64Array;
    const n = shape.reduce((a, b) => a * b), C = shape[1];
    const x = new T(new ArrayBuffer((n + 3) * T.BYTES_PER_ELEMENT), T.BYTES_PER_ELEMENT, n);
    for (let i = 0; i < n; i++) x[i] = Math.sin(i * 0.37) * 3 + (i % 7);
    const L = new bn.BatchNorm(C, { dtype });
    for (let c = 0; c < C; c++) { L.weight[c] = 1 + 0.1 * c; L.bias[c] = -0.2 * c; L.runningMean[c] = 0.3 * c; L.runningVar[c] = 1 + 0.05 * c; }
    const w = Array.from(L.weight), b = Array.from(L.bias), rm = Array.from(L.runningMean), rv = Array.from(L.runningVar);
    L.train(training);
    const buf = new T(n + 5).fill(NaN), out = buf.subarray(1, 1 + n);
    L.forward(x, shape, out);
    if (!Number.isNaN(buf[0]) || !Number.isNaN(buf[n + 1])) throw new Error('write outside the output: ' + level + ' ' + shape);
    const d = ref.dimsOf(shape);
    const fwd = training ? ref.forwardTraining(x, d, w, b, 1e-5) : null;
    const want = fwd ? fwd.y : ref.forwardInference(x, d, w, b, rm, rv, 1e-5);
    for (let i = 0; i < n; i++) {
      const e = Math.abs(out[i] - want[i]) / Math.max(1, Math.abs(want[i]));
      if (!(e <= (dtype === 'float32' ? 2e-5 : 1e-10))) throw new Error(level + ' ' + dtype + ' [' + shape + '] training=' + training + ' at ' + i + ': ' + out[i] + ' vs ' + want[i]);
      worst = Math.max(worst, dtype === 'float32' ? e / 2e-5 : e / 1e-10);
    }
    if (fwd) {
      const dy = new T(n); for (let i = 0; i < n; i++) dy[i] = Math.cos(i * 0.11);
      const gbuf = new T(n + 5).fill(NaN), dx = gbuf.subarray(3, 3 + n);
      L.backward(dy, dx);
      if (!Number.isNaN(gbuf[2]) || !Number.isNaN(gbuf[n + 3])) throw new Error('dx written outside: ' + level + ' ' + shape);
      const g = ref.backward(x, dy, d, w, fwd.mean, fwd.invstd, true);
      for (let k = 0; k < n; k++) {
        const e = Math.abs(dx[k] - g.dx[k]) / Math.max(1, Math.abs(g.dx[k]));
        if (!(e <= (dtype === 'float32' ? 2e-5 : 1e-10))) throw new Error('dx ' + level + ' ' + dtype + ' [' + shape + '] at ' + k + ': ' + dx[k] + ' vs ' + g.dx[k]);
      }
    }
    checked++;
  }
}
process.stdout.write(JSON.stringify({ checked, worst }));
`;

describe('streaming stores (BATCHNORM_STREAM_MIN_BYTES=0: every output streams)', () => {
  it('forward training, inference and backward match the float64 reference at every SIMD level, short and long runs', () => {
    const r = spawnSync(process.execPath, ['-e', script], { env: { ...process.env, BATCHNORM_STREAM_MIN_BYTES: '0' }, encoding: 'utf8' });
    expect(r.status, r.stderr).to.equal(0);
    const { checked, worst } = JSON.parse(r.stdout);
    expect(checked).to.be.at.least(24);
    expect(worst).to.be.below(1);
  });
});
