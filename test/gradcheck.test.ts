// Central finite differences in float64 of L = sum(y * r) through the float64 BatchNorm layer:
// the analytic dx, dweight and dbias of backward() must agree to about 1e-6 relative.
import { expect } from 'chai';
import { BatchNorm } from '../lib';
import { product, randn, randu, Rng } from './helpers/random';

const H = 1e-6;

interface Setup {
  shape: number[];
  training: boolean;
  x: Float64Array;
  weight: Float64Array;
  bias: Float64Array;
  runningMean: Float64Array;
  runningVar: Float64Array;
  r: Float64Array;
}

function makeLayer(s: Setup, weight: Float64Array, bias: Float64Array): BatchNorm {
  const layer = new BatchNorm(s.shape[1], { dtype: 'float64', eps: 1e-3 });
  layer.weight!.set(weight);
  layer.bias!.set(bias);
  layer.runningMean!.set(s.runningMean);
  layer.runningVar!.set(s.runningVar);
  layer.train(s.training);
  return layer;
}

/** L(x, weight, bias) = sum(y * r), through a fresh float64 layer. */
function loss(s: Setup, x: Float64Array, weight: Float64Array, bias: Float64Array): number {
  const y = makeLayer(s, weight, bias).forward(x, s.shape);
  let l = 0;
  for (let i = 0; i < y.length; i++) l += y[i] * s.r[i];
  return l;
}

/** Central difference of L with respect to element i of the array `which`. */
function numeric(s: Setup, which: 'x' | 'weight' | 'bias', i: number): number {
  const arrays = { x: s.x.slice(), weight: s.weight.slice(), bias: s.bias.slice() };
  const a = arrays[which];
  const v = a[i];
  a[i] = v + H;
  const lp = loss(s, arrays.x, arrays.weight, arrays.bias);
  a[i] = v - H;
  const lm = loss(s, arrays.x, arrays.weight, arrays.bias);
  return (lp - lm) / (2 * H);
}

function gradcheck(shape: number[], training: boolean, seed: number): void {
  const rng = new Rng(seed);
  const C = shape[1];
  const total = product(shape);
  const s: Setup = {
    shape,
    training,
    x: randn(rng, total, 'float64', 0.5, 1.5) as Float64Array,
    weight: randn(rng, C, 'float64', 1, 0.5) as Float64Array,
    bias: randn(rng, C, 'float64', 0, 0.5) as Float64Array,
    runningMean: randn(rng, C, 'float64', 0, 0.3) as Float64Array,
    runningVar: randu(rng, C, 'float64', 0.5, 2) as Float64Array,
    r: randn(rng, total, 'float64') as Float64Array,
  };
  const layer = makeLayer(s, s.weight, s.bias);
  layer.forward(s.x, shape);
  const dx = layer.backward(s.r); // dL/dy = r
  const analytic = { x: dx, weight: layer.gradWeight!, bias: layer.gradBias! };
  for (const which of ['x', 'weight', 'bias'] as const) {
    const a = analytic[which];
    const n = Float64Array.from(a, (_, i) => numeric(s, which, i));
    let scale = 1;
    for (const v of n) scale = Math.max(scale, Math.abs(v));
    let worst = 0;
    for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - n[i]) / scale);
    expect(worst, `d${which} [${shape.join(', ')}] ${training ? 'train' : 'eval'}: max |analytic - numeric| / max(1, max|numeric|)`).to.be.below(1e-6);
    // The check must not be vacuous: the gradient is not all zeros.
    expect(Math.max(...Array.from(n, Math.abs)), `d${which} is not trivially zero`).to.be.greaterThan(1e-3);
  }
}

describe('gradient check: central finite differences (float64, h = 1e-6)', () => {
  const shapes = [[6, 3], [3, 2, 5], [2, 3, 3, 2], [2, 2, 2, 3, 2]];
  let seed = 1000;
  for (const shape of shapes) {
    for (const training of [true, false]) {
      const sd = seed++;
      it(`[${shape.join(', ')}] ${training ? 'training' : 'evaluation'} mode: dx, dweight, dbias`, () => {
        gradcheck(shape, training, sd);
      });
    }
  }
});
