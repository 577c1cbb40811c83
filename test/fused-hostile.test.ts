// Hostile input to the fused activation (issue 13): every misuse is a coded error that names the
// argument, and nothing is written (outputs, running statistics, gradients unchanged). The layer,
// the functional API and the raw binding (whose own checks are the last line).
import { expect } from 'chai';
import { BatchNorm, batchNormBackward, batchNormInference, batchNormTraining } from '../lib';
import { native } from '../lib/load';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Loose = any;

const SHAPE = [2, 3, 4];
const TOTAL = 24;

function filled(n: number, v: number): Float32Array {
  return new Float32Array(n).fill(v);
}

function xs(): Float32Array {
  return Float32Array.from({ length: TOTAL }, (_, i) => Math.sin(i) * 2);
}

function snapshot(l: BatchNorm): number[][] {
  return [l.runningMean!, l.runningVar!, l.gradWeight!, l.gradBias!, l.weight!, l.bias!].map((a) => Array.from(a)).concat([[l.numBatchesTracked]]);
}

function expectCode(f: () => unknown, code: string, mention?: RegExp): void {
  let err: Loose = null;
  try {
    f();
  } catch (e) {
    err = e;
  }
  expect(err, `expected ${code}`).to.not.equal(null);
  expect(err.code, String(err && err.message)).to.equal(code);
  if (mention) expect(err.message).to.match(mention);
}

describe('fused activation: hostile input to the layer', () => {
  it('an unknown activation is refused at construction', () => {
    expectCode(() => new BatchNorm(3, { activation: 'gelu' as Loose }), 'ERR_BN_ACTIVATION', /activation must be 'relu' or null/);
    expect(new BatchNorm(3, { activation: null }).activation).to.equal(null);
  });

  it('a residual given to a layer without activation: coded error, nothing changed', () => {
    const l = new BatchNorm(3);
    const before = snapshot(l);
    const out = filled(TOTAL, 7);
    expectCode(() => l.forward(xs(), SHAPE, { residual: filled(TOTAL, 1), out }), 'ERR_BN_ACTIVATION', /residual.*activation 'relu'/);
    expect(snapshot(l)).to.deep.equal(before);
    expect(Array.from(out)).to.deep.equal(Array.from(filled(TOTAL, 7)));
    expectCode(() => l.backward(filled(TOTAL, 1)), 'ERR_BN_NO_FORWARD');
  });

  it('a residual of the wrong dtype, length or kind, or overlapping what it must not: coded errors, nothing changed', () => {
    const l = new BatchNorm(3, { activation: 'relu' });
    const before = snapshot(l);
    const out = filled(TOTAL, 7);
    expectCode(() => l.forward(xs(), SHAPE, { residual: new Float64Array(TOTAL) as Loose, out }), 'ERR_BN_DTYPE_MISMATCH', /residual/);
    expectCode(() => l.forward(xs(), SHAPE, { residual: filled(TOTAL - 1, 0), out }), 'ERR_BN_BAD_LENGTH', /residual must have 24 elements/);
    expectCode(() => l.forward(xs(), SHAPE, { residual: Array(TOTAL).fill(0) as Loose, out }), 'ERR_BN_INVALID_ARG_TYPE', /residual/);
    // out partly over the residual (the same array is fine: in place over z).
    const buf = new Float32Array(TOTAL + 4);
    expectCode(() => l.forward(xs(), SHAPE, { residual: buf.subarray(0, TOTAL), out: buf.subarray(4) }), 'ERR_BN_OVERLAP', /residual/);
    // The running statistics are written by a training forward: the residual must not share them.
    const rs = new Float32Array(TOTAL);
    const l2 = new BatchNorm(3, { activation: 'relu' });
    (l2 as Loose).runningMean = rs.subarray(0, 3); // a layer whose running mean lives inside the residual
    expectCode(() => l2.forward(xs(), SHAPE, { residual: rs }), 'ERR_BN_OVERLAP', /runningMean/);
    expect(snapshot(l)).to.deep.equal(before);
    expect(Array.from(out)).to.deep.equal(Array.from(filled(TOTAL, 7)));
  });

  it('backward after a residual: residualGrad missing, of the wrong dtype or length, or overlapping dy, x, y or out', () => {
    const l = new BatchNorm(3, { activation: 'relu' });
    const x = xs();
    const y = l.forward(x, SHAPE, { residual: filled(TOTAL, 0.5) });
    const yCopy = Array.from(y);
    const before = snapshot(l);
    const dy = Float32Array.from({ length: TOTAL }, (_, i) => Math.cos(i));
    const dyCopy = Array.from(dy);
    expectCode(() => l.backward(dy), 'ERR_BN_ACTIVATION', /needs residualGrad/);
    expectCode(() => l.backward(dy, { residualGrad: new Float64Array(TOTAL) as Loose }), 'ERR_BN_DTYPE_MISMATCH', /residualGrad/);
    expectCode(() => l.backward(dy, { residualGrad: filled(3, 0) }), 'ERR_BN_BAD_LENGTH', /residualGrad/);
    expectCode(() => l.backward(dy, { residualGrad: dy }), 'ERR_BN_OVERLAP', /residualGrad shares memory with dy/);
    expectCode(() => l.backward(dy, { residualGrad: x }), 'ERR_BN_OVERLAP', /residualGrad shares memory with x/);
    expectCode(() => l.backward(dy, { residualGrad: y }), 'ERR_BN_OVERLAP', /residualGrad shares memory with y/);
    const out = new Float32Array(TOTAL);
    expectCode(() => l.backward(dy, { residualGrad: out, out }), 'ERR_BN_OVERLAP', /residualGrad shares memory with out/);
    expect(snapshot(l)).to.deep.equal(before);
    expect(Array.from(dy)).to.deep.equal(dyCopy);
    expect(Array.from(y)).to.deep.equal(yCopy);
    // And it still works afterwards.
    const dz = new Float32Array(TOTAL);
    l.backward(dy, { residualGrad: dz });
    expect(Array.from(dz)).to.deep.equal(dyCopy.map((v, i) => (yCopy[i] > 0 ? Math.fround(v) : 0)));
  });

  it("the forward's y changed before backward (its buffer reused): ERR_BN_INPUT_OVERWRITTEN, nothing changed", () => {
    const l = new BatchNorm(3, { activation: 'relu' });
    const y = l.forward(xs(), SHAPE);
    const before = snapshot(l);
    const saved = y.slice();
    y.fill(1); // e.g. the array passed as another call's out
    const out = filled(TOTAL, 7);
    expectCode(() => l.backward(filled(TOTAL, 1), { out }), 'ERR_BN_INPUT_OVERWRITTEN', /y changed since the forward/);
    expect(snapshot(l)).to.deep.equal(before);
    expect(Array.from(out)).to.deep.equal(Array.from(filled(TOTAL, 7)));
    y.set(saved);
    l.backward(filled(TOTAL, 1), { out });
    expect(Array.from(out).some((v) => v === 7)).to.equal(false);
  });

  it('residualGrad after a forward without residual is refused', () => {
    const l = new BatchNorm(3, { activation: 'relu' });
    l.forward(xs(), SHAPE);
    const before = snapshot(l);
    const dz = filled(TOTAL, 3);
    expectCode(() => l.backward(filled(TOTAL, 1), { residualGrad: dz }), 'ERR_BN_ACTIVATION', /had none/);
    expect(snapshot(l)).to.deep.equal(before);
    expect(Array.from(dz)).to.deep.equal(Array.from(filled(TOTAL, 3)));
  });
});

describe('fused activation: hostile input to the functional API', () => {
  it('residual without activation, y missing or unexpected: coded errors, running statistics untouched', () => {
    const runningMean = filled(3, 0.5), runningVar = filled(3, 2);
    expectCode(() => batchNormTraining(xs(), SHAPE, { runningMean, runningVar, residual: filled(TOTAL, 0) }), 'ERR_BN_ACTIVATION');
    expectCode(() => batchNormTraining(xs(), SHAPE, { activation: 'tanh' as Loose }), 'ERR_BN_ACTIVATION');
    expectCode(() => batchNormInference(xs(), SHAPE, { runningMean, runningVar, residual: filled(TOTAL, 0) }), 'ERR_BN_ACTIVATION');
    expect(Array.from(runningMean)).to.deep.equal(Array.from(filled(3, 0.5)));
    expect(Array.from(runningVar)).to.deep.equal(Array.from(filled(3, 2)));
    const t = batchNormTraining(xs(), SHAPE, { activation: 'relu' });
    const base = { training: true, mean: t.batchMean, invstd: t.batchInvstd };
    expectCode(() => batchNormBackward(xs(), filled(TOTAL, 1), SHAPE, { ...base, activation: 'relu' }), 'ERR_BN_INVALID_ARG_TYPE', /y \(the forward's output/);
    expectCode(() => batchNormBackward(xs(), filled(TOTAL, 1), SHAPE, { ...base, y: t.y }), 'ERR_BN_ACTIVATION', /y is for a backward through activation 'relu'/);
    const dy = filled(TOTAL, 1);
    expectCode(() => batchNormBackward(xs(), dy, SHAPE, { ...base, activation: 'relu', y: t.y, residualGrad: dy }), 'ERR_BN_OVERLAP');
  });
});

describe('fused activation: the raw binding re-checks (memory safety)', () => {
  const b = native() as Loose;
  const x = xs();
  const call = (extra: Record<string, unknown>) => ({
    fn: 'raw', x, n: 2, c: 3, s: 4, channelsLast: false, out: new Float32Array(TOTAL), weight: null, bias: null,
    runningMean: filled(3, 0), runningVar: filled(3, 1), eps: 1e-5, ...extra,
  });
  it('forward: residual without activation, an unknown activation, a residual of the wrong dtype or partly over out', () => {
    expectCode(() => b.forwardInference(call({ residual: filled(TOTAL, 0) })), 'ERR_BN_ACTIVATION', /raw: residual/);
    expectCode(() => b.forwardInference(call({ activation: 'elu' })), 'ERR_BN_ACTIVATION', /raw: activation/);
    expectCode(() => b.forwardInference(call({ activation: 'relu', residual: new Float64Array(TOTAL) })), 'ERR_BN_DTYPE_MISMATCH');
    const buf = new Float32Array(TOTAL + 2);
    expectCode(() => b.forwardInference(call({ activation: 'relu', residual: buf.subarray(0, TOTAL), out: buf.subarray(2) })), 'ERR_BN_OVERLAP');
  });
  it('backward: y missing, residualGrad over dy or x, y or residualGrad without activation', () => {
    const dy = filled(TOTAL, 1);
    const base = {
      fn: 'raw', x, dy, n: 2, c: 3, s: 4, channelsLast: false, out: new Float32Array(TOTAL), weight: null, training: true,
      mean: new Float64Array(3), invstd: new Float64Array(3).fill(1), runningVar: null, eps: 1e-5, gradWeight: null, gradBias: null,
      accumulate: true,
    };
    const y = filled(TOTAL, 1);
    expectCode(() => b.backward({ ...base, activation: 'relu' }), 'ERR_BN_INVALID_ARG_TYPE', /y \(the forward's output\)/);
    expectCode(() => b.backward({ ...base, activation: 'relu', y, residualGrad: dy }), 'ERR_BN_OVERLAP', /residualGrad/);
    expectCode(() => b.backward({ ...base, activation: 'relu', y, residualGrad: x }), 'ERR_BN_OVERLAP', /residualGrad/);
    expectCode(() => b.backward({ ...base, activation: 'relu', y, residualGrad: y }), 'ERR_BN_OVERLAP', /residualGrad/);
    expectCode(() => b.backward({ ...base, y }), 'ERR_BN_ACTIVATION');
    expectCode(() => b.backward({ ...base, residualGrad: filled(TOTAL, 0) }), 'ERR_BN_ACTIVATION');
  });
});
