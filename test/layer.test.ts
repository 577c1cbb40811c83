// The BatchNorm layer's API contract: defaults, ranks, dtypes, modes, gradient accumulation,
// in-place use, and errors (Error subclasses with a stable .code and a message naming the
// argument, the expectation and what was received).
import { expect } from 'chai';
import {
  BatchNorm, BatchNorm1d, BatchNorm2d, BatchNorm3d, BatchNormError, BatchNormRangeError, BatchNormTypeError,
} from '../lib';
import * as ref from './helpers/reference';
import { assertClose } from './helpers/reference';
import { product, randn, randu, Rng } from './helpers/random';

type ErrorClass = typeof BatchNormTypeError | typeof BatchNormRangeError | typeof BatchNormError;

/** f must throw an instance of cls (and of the matching builtin) with .code, mentioning each pattern. */
function expectBnError(f: () => unknown, cls: ErrorClass, code: string, ...mentions: RegExp[]): Error {
  let err: unknown;
  try {
    f();
  } catch (e) {
    err = e;
  }
  expect(err, `expected ${cls.name} ${code}`).to.be.instanceOf(cls);
  expect(err).to.be.instanceOf(Error);
  if (cls === BatchNormTypeError) expect(err).to.be.instanceOf(TypeError);
  if (cls === BatchNormRangeError) expect(err).to.be.instanceOf(RangeError);
  expect((err as { code?: string }).code).to.equal(code);
  for (const m of mentions) expect((err as Error).message).to.match(m);
  return err as Error;
}

/** Snapshot of everything a failed call must leave alone. */
function snapshot(layer: BatchNorm): unknown {
  return {
    weight: layer.weight && Array.from(layer.weight),
    bias: layer.bias && Array.from(layer.bias),
    rm: layer.runningMean && Array.from(layer.runningMean),
    rv: layer.runningVar && Array.from(layer.runningVar),
    gw: layer.gradWeight && Array.from(layer.gradWeight),
    gb: layer.gradBias && Array.from(layer.gradBias),
    n: layer.numBatchesTracked,
    training: layer.training,
  };
}

function randomize(layer: BatchNorm, rng: Rng): void {
  const C = layer.numFeatures;
  layer.weight?.set(randn(rng, C, layer.dtype, 1, 0.5));
  layer.bias?.set(randn(rng, C, layer.dtype, 0, 0.5));
  layer.runningMean?.set(randn(rng, C, layer.dtype, 0, 0.3));
  layer.runningVar?.set(randu(rng, C, layer.dtype, 0.5, 2));
}

describe('BatchNorm layer: defaults', () => {
  it('running_mean 0, running_var 1, weight 1, bias 0, momentum 0.1, eps 1e-5, affine, tracking, float32, training', () => {
    for (const Cls of [BatchNorm, BatchNorm1d, BatchNorm2d, BatchNorm3d]) {
      const bn = new Cls(3);
      expect(bn.numFeatures).to.equal(3);
      expect(bn.eps).to.equal(1e-5);
      expect(bn.momentum).to.equal(0.1);
      expect(bn.affine).to.equal(true);
      expect(bn.trackRunningStats).to.equal(true);
      expect(bn.dtype).to.equal('float32');
      expect(bn.training).to.equal(true);
      expect(bn.numBatchesTracked).to.equal(0);
      expect(bn.weight).to.be.instanceOf(Float32Array);
      expect(Array.from(bn.weight!)).to.deep.equal([1, 1, 1]);
      expect(Array.from(bn.bias!)).to.deep.equal([0, 0, 0]);
      expect(Array.from(bn.runningMean!)).to.deep.equal([0, 0, 0]);
      expect(Array.from(bn.runningVar!)).to.deep.equal([1, 1, 1]);
      expect(Array.from(bn.gradWeight!)).to.deep.equal([0, 0, 0]);
      expect(Array.from(bn.gradBias!)).to.deep.equal([0, 0, 0]);
    }
    const d = new BatchNorm2d(2, { dtype: 'float64' });
    expect(d.weight).to.be.instanceOf(Float64Array);
    expect(d.runningVar).to.be.instanceOf(Float64Array);
    expect(d.gradWeight).to.be.instanceOf(Float64Array);
  });

  it('train() / eval() switch the mode and return the layer', () => {
    const bn = new BatchNorm(2);
    expect(bn.eval()).to.equal(bn);
    expect(bn.training).to.equal(false);
    expect(bn.train()).to.equal(bn);
    expect(bn.training).to.equal(true);
    bn.train(false);
    expect(bn.training).to.equal(false);
  });
});

describe('BatchNorm layer: ranks of the 1d / 2d / 3d classes', () => {
  const x = (shape: number[]) => new Float32Array(product(shape)).map((_, i) => Math.sin(i));
  const ok: Array<[typeof BatchNorm, number[][]]> = [
    [BatchNorm1d, [[4, 3], [2, 3, 5]]],
    [BatchNorm2d, [[2, 3, 2, 2]]],
    [BatchNorm3d, [[2, 3, 2, 2, 2]]],
    [BatchNorm, [[4, 3], [2, 3, 5], [2, 3, 2, 2], [2, 3, 2, 2, 2]]],
  ];
  const bad: Array<[typeof BatchNorm, number[][], RegExp]> = [
    [BatchNorm1d, [[2, 3, 2, 2], [2, 3, 2, 2, 2]], /rank 2 to 3/],
    [BatchNorm2d, [[4, 3], [2, 3, 5], [2, 3, 2, 2, 2]], /rank 4\b/],
    [BatchNorm3d, [[4, 3], [2, 3, 5], [2, 3, 2, 2]], /rank 5\b/],
  ];
  for (const [Cls, shapes] of ok) {
    it(`${Cls.name} accepts ${shapes.map((s) => `rank ${s.length}`).join(', ')}`, () => {
      for (const shape of shapes) expect(new Cls(3).forward(x(shape), shape).length).to.equal(product(shape));
    });
  }
  for (const [Cls, shapes, want] of bad) {
    it(`${Cls.name} refuses ${shapes.map((s) => `rank ${s.length}`).join(', ')} with ERR_BN_BAD_SHAPE`, () => {
      for (const shape of shapes) {
        const bn = new Cls(3);
        const before = snapshot(bn);
        expectBnError(() => bn.forward(x(shape), shape), BatchNormRangeError, 'ERR_BN_BAD_SHAPE', /shape/, want, new RegExp(`received rank ${shape.length}`));
        expect(snapshot(bn)).to.deep.equal(before);
      }
    });
  }
  it('rank 1 and rank 6 are refused by the generic class; shape[1] must be numFeatures', () => {
    const bn = new BatchNorm(3);
    expectBnError(() => bn.forward(new Float32Array(3), [3]), BatchNormRangeError, 'ERR_BN_BAD_SHAPE', /rank 2 to 5/, /received rank 1/);
    expectBnError(() => bn.forward(new Float32Array(64 * 3), [2, 3, 2, 2, 2, 4]), BatchNormRangeError, 'ERR_BN_BAD_SHAPE', /received rank 6/);
    expectBnError(() => bn.forward(new Float32Array(8), [2, 4]), BatchNormRangeError, 'ERR_BN_BAD_SHAPE', /shape\[1\] must be 3/, /\[2, 4\]/);
    expectBnError(() => bn.forward(new Float32Array(6), [2, 3, 0]), BatchNormRangeError, 'ERR_BN_BAD_SHAPE', /shape\[2\]/, /the number 0/);
    expectBnError(() => bn.forward(new Float32Array(5), [2, 3]), BatchNormRangeError, 'ERR_BN_BAD_LENGTH', /x must have 6 elements/, /length 5/);
    expectBnError(() => bn.forward([1, 2, 3, 4, 5, 6] as unknown as Float32Array, [2, 3]), BatchNormTypeError, 'ERR_BN_INVALID_ARG_TYPE', /\bx\b/, /an Array of length 6/);
  });
});

describe('BatchNorm layer: dtypes', () => {
  for (const [dtype, Wrong, wrongName] of [['float32', Float64Array, 'Float64Array'], ['float64', Float32Array, 'Float32Array']] as const) {
    it(`a ${dtype} layer refuses ${wrongName} input with TypeError ERR_BN_DTYPE_MISMATCH and stays unchanged`, () => {
      const bn = new BatchNorm2d(2, { dtype });
      randomize(bn, new Rng(1));
      const before = snapshot(bn);
      expectBnError(() => bn.forward(new Wrong(16), [2, 2, 2, 2]), BatchNormTypeError, 'ERR_BN_DTYPE_MISMATCH', /\bx\b/, new RegExp(`received a ${wrongName} of length 16`), new RegExp(dtype));
      expect(snapshot(bn)).to.deep.equal(before);
      // No forward was recorded.
      expectBnError(() => bn.backward(new (dtype === 'float32' ? Float32Array : Float64Array)(16)), BatchNormError, 'ERR_BN_NO_FORWARD');
      // And dy of the wrong dtype after a good forward.
      bn.forward(new (dtype === 'float32' ? Float32Array : Float64Array)(16).map((_, i) => i % 5), [2, 2, 2, 2]);
      const mid = snapshot(bn);
      expectBnError(() => bn.backward(new Wrong(16)), BatchNormTypeError, 'ERR_BN_DTYPE_MISMATCH', /\bdy\b/, new RegExp(wrongName));
      expect(snapshot(bn)).to.deep.equal(mid);
    });
  }
});

describe('BatchNorm layer: backward', () => {
  it('backward without a forward -> ERR_BN_NO_FORWARD', () => {
    const bn = new BatchNorm1d(3);
    const e = expectBnError(() => bn.backward(new Float32Array(6)), BatchNormError, 'ERR_BN_NO_FORWARD', /forward/);
    expect(e.message).to.match(/backward/);
  });

  it('backward twice adds the parameter gradients twice; zeroGrad clears them', () => {
    const rng = new Rng(5);
    const bn = new BatchNorm2d(3, { dtype: 'float64' });
    randomize(bn, rng);
    const shape = [2, 3, 3, 2];
    const x = randn(rng, 36, 'float64');
    const dy = randn(rng, 36, 'float64');
    bn.forward(x, shape);
    const dx1 = Array.from(bn.backward(dy));
    const gw1 = Array.from(bn.gradWeight!);
    const gb1 = Array.from(bn.gradBias!);
    expect(gw1.some((v) => v !== 0)).to.equal(true);
    const dx2 = Array.from(bn.backward(dy));
    expect(dx2).to.deep.equal(dx1);
    assertClose('gradWeight after two backwards', bn.gradWeight!, gw1.map((v) => 2 * v), 1e-15);
    assertClose('gradBias after two backwards', bn.gradBias!, gb1.map((v) => 2 * v), 1e-15);
    bn.zeroGrad();
    expect(Array.from(bn.gradWeight!)).to.deep.equal([0, 0, 0]);
    expect(Array.from(bn.gradBias!)).to.deep.equal([0, 0, 0]);
    bn.backward(dy);
    assertClose('gradWeight after zeroGrad and one backward', bn.gradWeight!, gw1, 1e-15);
  });

  for (const training of [true, false]) {
    it(`backward uses the weight as it was at the forward (${training ? 'training' : 'evaluation'} mode)`, () => {
      const rng = new Rng(training ? 6 : 7);
      const bn = new BatchNorm1d(4, { dtype: 'float64' });
      randomize(bn, rng);
      bn.train(training);
      const w0 = Float64Array.from(bn.weight!);
      const rm0 = Float64Array.from(bn.runningMean!);
      const rv0 = Float64Array.from(bn.runningVar!);
      const shape = [5, 4, 3];
      const d = ref.dimsOf(shape);
      const x = randn(rng, 60, 'float64');
      const dy = randn(rng, 60, 'float64');
      bn.forward(x, shape);
      bn.weight!.fill(-3); // changed after the forward
      if (!training) {
        bn.runningMean!.fill(10);
        bn.runningVar!.fill(10);
      }
      const dx = bn.backward(dy);
      let mean: ArrayLike<number>;
      let invstd: ArrayLike<number>;
      if (training) {
        const st = ref.batchStats(x, d, bn.eps);
        mean = st.mean;
        invstd = st.invstd;
      } else {
        mean = rm0;
        invstd = Array.from(rv0, (v) => 1 / Math.sqrt(v + bn.eps));
      }
      const g = ref.backward(x, dy, d, w0, mean, invstd, training);
      assertClose('dx with the forward-time weight', dx, g.dx, 1e-12);
      assertClose('dweight', bn.gradWeight!, g.dweight, 1e-12);
      assertClose('dbias', bn.gradBias!, g.dbias, 1e-12);
    });
  }

  it('dy of the wrong length -> ERR_BN_BAD_LENGTH naming dy', () => {
    const bn = new BatchNorm1d(2);
    bn.forward(new Float32Array([1, 2, 3, 5]), [2, 2]);
    expectBnError(() => bn.backward(new Float32Array(3)), BatchNormRangeError, 'ERR_BN_BAD_LENGTH', /\bdy\b/, /4 elements/, /length 3/);
  });
});

describe('BatchNorm layer: evaluation mode', () => {
  it('reads the current weight, bias and running statistics (changes after eval() take effect)', () => {
    const rng = new Rng(8);
    const bn = new BatchNorm2d(3, { dtype: 'float64' }).eval();
    randomize(bn, rng); // after eval()
    const shape = [2, 3, 2, 2];
    const x = randn(rng, 24, 'float64');
    const d = ref.dimsOf(shape);
    const y1 = bn.forward(x, shape);
    assertClose('eval y', y1, ref.forwardInference(x, d, bn.weight, bn.bias, bn.runningMean!, bn.runningVar!, bn.eps), 1e-13);
    bn.runningMean![1] += 0.5;
    bn.runningVar![2] *= 3;
    bn.weight![0] = -2;
    bn.bias![2] = 7;
    const y2 = bn.forward(x, shape);
    assertClose('eval y after the changes', y2, ref.forwardInference(x, d, bn.weight, bn.bias, bn.runningMean!, bn.runningVar!, bn.eps), 1e-13);
    expect(bn.numBatchesTracked).to.equal(0);
  });

  it('does not update the running statistics or the counter', () => {
    const bn = new BatchNorm1d(2).eval();
    const before = snapshot(bn);
    bn.forward(new Float32Array([1, 9, 3, -4, 5, 2]), [3, 2]);
    expect(snapshot(bn)).to.deep.equal(before);
  });
});

describe('BatchNorm layer: training with one value per channel', () => {
  for (const [Cls, shape] of [[BatchNorm1d, [1, 3]], [BatchNorm2d, [1, 3, 1, 1]], [BatchNorm3d, [1, 3, 1, 1, 1]]] as const) {
    it(`${Cls.name} [${shape.join(', ')}] -> RangeError ERR_BN_TOO_FEW_VALUES, nothing changed`, () => {
      const rng = new Rng(11);
      const bn = new Cls(3);
      randomize(bn, rng);
      // A good forward first: a failed one must not replace it.
      const goodShape = [2, ...shape.slice(1)];
      const xg = randn(rng, 6, 'float32');
      bn.forward(xg, goodShape);
      const before = snapshot(bn);
      expectBnError(() => bn.forward(new Float32Array([1, 2, 3]), shape), BatchNormRangeError, 'ERR_BN_TOO_FEW_VALUES',
        /more than 1 value per channel/, new RegExp(`\\[${shape.join(', ')}\\]`));
      expect(snapshot(bn)).to.deep.equal(before);
      // backward still differentiates the good forward (x of 6 elements).
      expect(bn.backward(new Float32Array(6).fill(1)).length).to.equal(6);
      // In evaluation mode (running statistics) one value per channel is fine.
      bn.eval();
      expect(bn.forward(new Float32Array([1, 2, 3]), shape).length).to.equal(3);
    });
  }
});

describe('BatchNorm layer: affine = false', () => {
  it('has no weight, bias or gradients; stateDict omits weight and bias; normalizes with weight 1, bias 0', () => {
    const bn = new BatchNorm1d(3, { affine: false, dtype: 'float64' });
    expect(bn.weight).to.equal(null);
    expect(bn.bias).to.equal(null);
    expect(bn.gradWeight).to.equal(null);
    expect(bn.gradBias).to.equal(null);
    expect(Object.keys(bn.stateDict()).sort()).to.deep.equal(['num_batches_tracked', 'running_mean', 'running_var']);
    const rng = new Rng(12);
    const x = randn(rng, 15, 'float64');
    const d = ref.dimsOf([5, 3]);
    const y = bn.forward(x, [5, 3]);
    const st = ref.batchStats(x, d, bn.eps);
    assertClose('y', y, ref.normalize(x, d, st.mean, st.invstd, null, null), 1e-13);
    const dy = randn(rng, 15, 'float64');
    assertClose('dx', bn.backward(dy), ref.backward(x, dy, d, null, st.mean, st.invstd, true).dx, 1e-12);
    bn.zeroGrad(); // no-op, no throw
  });
});

describe('BatchNorm layer: trackRunningStats = false', () => {
  it('has no running statistics, uses batch statistics in evaluation mode, never counts batches', () => {
    const bn = new BatchNorm2d(2, { trackRunningStats: false, dtype: 'float64' });
    expect(bn.runningMean).to.equal(null);
    expect(bn.runningVar).to.equal(null);
    const rng = new Rng(13);
    bn.weight!.set([1.5, -0.5]);
    bn.bias!.set([0.2, 0.3]);
    const shape = [3, 2, 2, 2];
    const x = randn(rng, 24, 'float64', 2, 3);
    const yTrain = Array.from(bn.forward(x, shape));
    expect(bn.numBatchesTracked).to.equal(0);
    bn.eval();
    const yEval = Array.from(bn.forward(x, shape));
    expect(yEval).to.deep.equal(yTrain);
    const d = ref.dimsOf(shape);
    const st = ref.batchStats(x, d, bn.eps);
    assertClose('eval y uses batch statistics', yEval, ref.normalize(x, d, st.mean, st.invstd, bn.weight, bn.bias), 1e-13);
    // Its backward is the training-mode one (the statistics depend on x).
    const dy = randn(rng, 24, 'float64');
    assertClose('eval dx', bn.backward(dy), ref.backward(x, dy, d, bn.weight, st.mean, st.invstd, true).dx, 1e-12);
    expect(bn.numBatchesTracked).to.equal(0);
    expect(Object.keys(bn.stateDict()).sort()).to.deep.equal(['bias', 'weight']);
  });
});

describe('BatchNorm layer: momentum', () => {
  it('momentum null is the cumulative average of the batch statistics (initial values discarded)', () => {
    const rng = new Rng(14);
    const bn = new BatchNorm1d(3, { momentum: null, dtype: 'float64' });
    expect(bn.momentum).to.equal(null);
    randomize(bn, rng);
    const shape = [4, 3, 5];
    const d = ref.dimsOf(shape);
    const m = 20;
    const sumMean = new Float64Array(3);
    const sumVar = new Float64Array(3);
    for (let step = 1; step <= 4; step++) {
      const x = randn(rng, 60, 'float64', step, step);
      bn.forward(x, shape);
      const st = ref.batchStats(x, d, bn.eps);
      for (let c = 0; c < 3; c++) {
        sumMean[c] += st.mean[c];
        sumVar[c] += st.variance[c] * m / (m - 1);
      }
      expect(bn.numBatchesTracked).to.equal(step);
      assertClose(`running mean after ${step} steps`, bn.runningMean!, Array.from(sumMean, (v) => v / step), 1e-13);
      assertClose(`running var after ${step} steps`, bn.runningVar!, Array.from(sumVar, (v) => v / step), 1e-13);
    }
  });

  it('momentum 0.3: running = 0.7 * running + 0.3 * batch (unbiased variance)', () => {
    const rng = new Rng(15);
    const bn = new BatchNorm1d(2, { momentum: 0.3, dtype: 'float64' });
    randomize(bn, rng);
    const rm = Array.from(bn.runningMean!);
    const rv = Array.from(bn.runningVar!);
    const x = randn(rng, 10, 'float64');
    bn.forward(x, [5, 2]);
    const st = ref.batchStats(x, ref.dimsOf([5, 2]), bn.eps);
    assertClose('running mean', bn.runningMean!, rm.map((v, c) => 0.7 * v + 0.3 * st.mean[c]), 1e-14);
    assertClose('running var', bn.runningVar!, rv.map((v, c) => 0.7 * v + 0.3 * st.variance[c] * 5 / 4), 1e-14);
  });
});

describe('BatchNorm layer: in-place forward (out === x)', () => {
  for (const dtype of ['float32', 'float64'] as const) {
    it(`evaluation and training in place give the right y (${dtype}); backward after an in-place forward -> ERR_BN_INPUT_OVERWRITTEN`, () => {
      const rng = new Rng(16);
      const shape = [3, 2, 4];
      const d = ref.dimsOf(shape);
      const tol = dtype === 'float64' ? 1e-13 : 2e-6;
      const bn = new BatchNorm1d(2, { dtype });
      randomize(bn, rng);

      const x1 = randn(rng, 24, dtype);
      const copy1 = x1.slice();
      const y1 = bn.forward(x1, shape, x1);
      expect(y1).to.equal(x1);
      const st = ref.batchStats(copy1, d, bn.eps);
      assertClose('training in place', y1, ref.normalize(copy1, d, st.mean, st.invstd, bn.weight, bn.bias), tol);
      expect(bn.numBatchesTracked).to.equal(1);
      const before = snapshot(bn);
      expectBnError(() => bn.backward(new (dtype === 'float32' ? Float32Array : Float64Array)(24)), BatchNormError, 'ERR_BN_INPUT_OVERWRITTEN', /out === x/, /separate output/);
      expect(snapshot(bn)).to.deep.equal(before);

      bn.eval();
      const x2 = randn(rng, 24, dtype);
      const copy2 = x2.slice();
      const y2 = bn.forward(x2, shape, x2);
      expect(y2).to.equal(x2);
      assertClose('evaluation in place', y2, ref.forwardInference(copy2, d, bn.weight, bn.bias, bn.runningMean!, bn.runningVar!, bn.eps), tol);
      // Backward needs x (for dweight) in evaluation mode too.
      expectBnError(() => bn.backward(new (dtype === 'float32' ? Float32Array : Float64Array)(24)), BatchNormError, 'ERR_BN_INPUT_OVERWRITTEN');

      // A forward with a separate output makes backward possible again.
      bn.train();
      const x3 = randn(rng, 24, dtype);
      bn.forward(x3, shape, new (dtype === 'float32' ? Float32Array : Float64Array)(24));
      expect(bn.backward(randn(rng, 24, dtype)).length).to.equal(24);
    });
  }

  it('an out that overlaps x without being x -> ERR_BN_OVERLAP', () => {
    const bn = new BatchNorm1d(2);
    const buf = new Float32Array(10).map((_, i) => i);
    expectBnError(() => bn.forward(buf.subarray(0, 8), [4, 2], buf.subarray(2, 10)), BatchNormRangeError, 'ERR_BN_OVERLAP', /\bout\b/, /\bx\b/);
    expect(bn.numBatchesTracked).to.equal(0);
  });
});

describe('BatchNorm layer: constructor arguments', () => {
  it('eps < 0, NaN or infinite -> RangeError ERR_BN_OUT_OF_RANGE naming eps and the value', () => {
    expectBnError(() => new BatchNorm(3, { eps: -1e-5 }), BatchNormRangeError, 'ERR_BN_OUT_OF_RANGE', /\beps\b/, /-0\.00001|-1e-5/);
    expectBnError(() => new BatchNorm(3, { eps: NaN }), BatchNormRangeError, 'ERR_BN_OUT_OF_RANGE', /\beps\b/, /NaN/);
    expectBnError(() => new BatchNorm2d(3, { eps: Infinity }), BatchNormRangeError, 'ERR_BN_OUT_OF_RANGE', /BatchNorm2d/, /\beps\b/, /Infinity/);
    expectBnError(() => new BatchNorm(3, { eps: '1e-5' as unknown as number }), BatchNormTypeError, 'ERR_BN_INVALID_ARG_TYPE', /\beps\b/, /the string "1e-5"/);
  });

  it('momentum outside [0, 1] -> RangeError ERR_BN_OUT_OF_RANGE naming momentum and the value', () => {
    for (const m of [-0.1, 1.5, NaN]) {
      expectBnError(() => new BatchNorm(3, { momentum: m }), BatchNormRangeError, 'ERR_BN_OUT_OF_RANGE', /\bmomentum\b/, /\[0, 1\]/, new RegExp(`received the number ${String(m).replace('.', '\\.')}`));
    }
    expect(new BatchNorm(3, { momentum: 0 }).momentum).to.equal(0);
    expect(new BatchNorm(3, { momentum: 1 }).momentum).to.equal(1);
    expectBnError(() => new BatchNorm(3, { momentum: 'none' as unknown as number }), BatchNormTypeError, 'ERR_BN_INVALID_ARG_TYPE', /\bmomentum\b/, /the string "none"/);
  });

  it('numFeatures, affine, trackRunningStats, dtype and options of the wrong kind are refused with a named argument', () => {
    expectBnError(() => new BatchNorm(0), BatchNormRangeError, 'ERR_BN_OUT_OF_RANGE', /numFeatures/, /the number 0/);
    expectBnError(() => new BatchNorm(2.5), BatchNormRangeError, 'ERR_BN_OUT_OF_RANGE', /numFeatures/, /2\.5/);
    expectBnError(() => new BatchNorm(3, { affine: 1 as unknown as boolean }), BatchNormTypeError, 'ERR_BN_INVALID_ARG_TYPE', /\baffine\b/, /the number 1/);
    expectBnError(() => new BatchNorm(3, { trackRunningStats: 'yes' as unknown as boolean }), BatchNormTypeError, 'ERR_BN_INVALID_ARG_TYPE', /trackRunningStats/, /"yes"/);
    expectBnError(() => new BatchNorm(3, { dtype: 'float8' as unknown as 'float32' }), BatchNormTypeError, 'ERR_BN_INVALID_ARG_TYPE', /\bdtype\b/, /"float8"/);
    expectBnError(() => new BatchNorm(3, 5 as unknown as object), BatchNormTypeError, 'ERR_BN_INVALID_ARG_TYPE', /options/, /the number 5/);
    expectBnError(() => new BatchNorm(3).train('no' as unknown as boolean), BatchNormTypeError, 'ERR_BN_INVALID_ARG_TYPE', /mode/, /"no"/);
  });
});
