// Folding BN (evaluation mode) into the convolution / linear layer before it: the folded layer
// must equal layer-then-BN, checked with naive float64 convolutions (test/helpers/reference.ts).
import { expect } from 'chai';
import { BatchNorm, BatchNormError, BatchNormRangeError } from '../lib';
import * as ref from './helpers/reference';
import { assertClose } from './helpers/reference';
import { DTypeName, product, randn, randu, Rng } from './helpers/random';

function makeBn(C: number, dtype: DTypeName, rng: Rng, affine = true): BatchNorm {
  const bn = new BatchNorm(C, { dtype, affine, eps: 1e-3 });
  if (affine) {
    bn.weight!.set(randn(rng, C, dtype, 1, 0.6));
    bn.bias!.set(randn(rng, C, dtype, 0, 0.5));
  }
  bn.runningMean!.set(randn(rng, C, dtype, 0.2, 0.5));
  bn.runningVar!.set(randu(rng, C, dtype, 0.3, 3));
  return bn.eval();
}

interface ConvCase {
  what: string;
  x: number[];
  w: number[];
  groups: number;
  transposed: boolean;
  withBias: boolean;
  affine: boolean;
}

const CONV_CASES: ConvCase[] = [
  { what: 'plain convolution', x: [2, 3, 6, 5], w: [4, 3, 3, 2], groups: 1, transposed: false, withBias: true, affine: true },
  { what: 'convolution with groups = 2', x: [2, 4, 5, 5], w: [6, 2, 3, 3], groups: 2, transposed: false, withBias: true, affine: true },
  { what: 'depthwise convolution (groups = C_in = C_out)', x: [2, 4, 5, 5], w: [4, 1, 3, 3], groups: 4, transposed: false, withBias: true, affine: true },
  { what: 'transposed convolution, groups = 1', x: [2, 3, 4, 4], w: [3, 5, 2, 3], groups: 1, transposed: true, withBias: true, affine: true },
  // Output channel of W[i, j] is g*(O/groups)+j with g = i div (I/groups) (PyTorch's own fuse helper gets this wrong for groups > 1).
  { what: 'transposed convolution, groups = 2', x: [2, 4, 4, 3], w: [4, 3, 2, 2], groups: 2, transposed: true, withBias: true, affine: true },
  { what: 'transposed convolution, groups = 3, no bias', x: [1, 6, 3, 3], w: [6, 2, 2, 2], groups: 3, transposed: true, withBias: false, affine: true },
  { what: 'convolution without bias', x: [2, 3, 6, 5], w: [4, 3, 3, 2], groups: 1, transposed: false, withBias: false, affine: true },
  { what: 'BN with affine = false', x: [2, 4, 5, 5], w: [6, 2, 3, 3], groups: 2, transposed: false, withBias: true, affine: false },
];

function conv(c: ConvCase, x: ArrayLike<number>, w: ArrayLike<number>, b: ArrayLike<number> | null): { y: Float64Array; shape: number[] } {
  return c.transposed ? ref.convTranspose2d(x, c.x, w, c.w, b, c.groups) : ref.conv2d(x, c.x, w, c.w, b, c.groups);
}

describe('folding BN into the preceding convolution', () => {
  let seed = 300;
  for (const dtype of ['float64', 'float32'] as const) {
    for (const c of CONV_CASES) {
      const sd = seed++;
      it(`${c.what} (${dtype})`, () => {
        const rng = new Rng(sd);
        const O = c.transposed ? c.w[1] * c.groups : c.w[0];
        const bn = makeBn(O, dtype, rng, c.affine);
        const x = randn(rng, product(c.x), dtype);
        const w = randn(rng, product(c.w), dtype, 0, 0.5);
        const b = c.withBias ? randn(rng, O, dtype, 0, 0.5) : null;
        const wCopy = w.slice();
        const folded = bn.foldIntoConv(w, c.w, b, { groups: c.groups, transposed: c.transposed });
        expect(folded.weight).to.be.instanceOf(dtype === 'float64' ? Float64Array : Float32Array);
        expect(folded.weight.length).to.equal(w.length);
        expect(folded.bias.length).to.equal(O);
        expect(Array.from(w), 'the input weight is not modified').to.deep.equal(Array.from(wCopy));

        // conv then BN: in float64 (exact reference) and through the layer itself.
        const before = conv(c, x, w, b);
        expect(before.shape[1]).to.equal(O);
        const exact = ref.forwardInference(before.y, ref.dimsOf(before.shape), bn.weight, bn.bias, bn.runningMean!, bn.runningVar!, bn.eps);
        const T = dtype === 'float64' ? Float64Array : Float32Array;
        const viaLayer = bn.forward(T.from(before.y), before.shape);
        // The folded layer: conv with W', b'.
        const after = conv(c, x, folded.weight, folded.bias);
        const tol = dtype === 'float64' ? 1e-12 : 1e-6;
        assertClose(`${c.what}: folded vs exact conv-then-BN`, after.y, exact, tol);
        assertClose(`${c.what}: folded vs conv then the BN layer`, after.y, viaLayer, dtype === 'float64' ? 1e-12 : 2e-6);
      });
    }

    it(`linear layer (${dtype})`, () => {
      const rng = new Rng(dtype === 'float64' ? 401 : 402);
      const [N, inF, outF] = [5, 7, 4];
      const bn = makeBn(outF, dtype, rng);
      const x = randn(rng, N * inF, dtype);
      const w = randn(rng, outF * inF, dtype, 0, 0.5);
      const b = randn(rng, outF, dtype, 0, 0.5);
      const folded = bn.foldIntoLinear(w, b);
      const before = ref.linear(x, N, inF, w, outF, b);
      const exact = ref.forwardInference(before, { n: N, c: outF, s: 1 }, bn.weight, bn.bias, bn.runningMean!, bn.runningVar!, bn.eps);
      const after = ref.linear(x, N, inF, folded.weight, outF, folded.bias);
      assertClose('linear: folded vs linear-then-BN', after, exact, dtype === 'float64' ? 1e-12 : 1e-6);
      // Without bias.
      const f2 = bn.foldIntoLinear(w, null);
      const exact2 = ref.forwardInference(ref.linear(x, N, inF, w, outF, null), { n: N, c: outF, s: 1 }, bn.weight, bn.bias, bn.runningMean!, bn.runningVar!, bn.eps);
      assertClose('linear without bias', ref.linear(x, N, inF, f2.weight, outF, f2.bias), exact2, dtype === 'float64' ? 1e-12 : 1e-6);
    });

    it(`scaleShift() matches scale = weight / sqrt(var + eps), shift = bias - mean * scale (${dtype})`, () => {
      const rng = new Rng(dtype === 'float64' ? 501 : 502);
      for (const affine of [true, false]) {
        const bn = makeBn(9, dtype, rng, affine);
        const { scale, shift } = bn.scaleShift();
        expect(scale).to.be.instanceOf(dtype === 'float64' ? Float64Array : Float32Array);
        const { scale: es, shift: eh } = ref.scaleShift(bn.runningMean!, bn.runningVar!, bn.eps, bn.weight, bn.bias);
        // float64 maths, one final rounding to the dtype.
        const tol = dtype === 'float64' ? 1e-15 : 1e-7;
        assertClose('scale', scale, es, tol);
        assertClose('shift', shift, eh, tol);
        // And applying it equals the layer's inference forward.
        const x = randn(rng, 2 * 9 * 4, dtype);
        const y = bn.forward(x, [2, 9, 4]);
        const z = Float64Array.from(x, (v, i) => v * scale[Math.floor(i / 4) % 9] + shift[Math.floor(i / 4) % 9]);
        assertClose('x * scale + shift vs forward', y, z, dtype === 'float64' ? 1e-12 : 1e-6);
      }
    });
  }
});

describe('folding: errors', () => {
  const rng = new Rng(9);
  const bn = makeBn(4, 'float32', rng);
  const w = new Float32Array(4 * 3 * 2 * 2);

  function expectCode(f: () => unknown, cls: Function, code: string, ...mentions: RegExp[]): void {
    let err: unknown;
    try {
      f();
    } catch (e) {
      err = e;
    }
    expect(err, 'expected an error').to.be.instanceOf(cls);
    expect((err as { code?: string }).code).to.equal(code);
    for (const m of mentions) expect((err as Error).message).to.match(m);
  }

  it('a weight whose output channels are not numFeatures -> ERR_BN_BAD_SHAPE', () => {
    expectCode(() => bn.foldIntoConv(new Float32Array(5 * 3 * 4), [5, 3, 2, 2]), BatchNormRangeError, 'ERR_BN_BAD_SHAPE', /weightShape\[0\]/, /\b4\b/, /\b5\b/);
    // Transposed: O = weightShape[1] * groups must be numFeatures.
    expectCode(() => bn.foldIntoConv(w, [4, 3, 2, 2], null, { transposed: true }), BatchNormRangeError, 'ERR_BN_BAD_SHAPE', /weightShape\[1\]/, /3 \* 1/);
    expectCode(() => bn.foldIntoConv(w, [4, 3, 2, 2], null, { transposed: true, groups: 2 }), BatchNormRangeError, 'ERR_BN_BAD_SHAPE', /3 \* 2/);
  });

  it('a weightShape that does not match the weight length -> ERR_BN_BAD_LENGTH', () => {
    expectCode(() => bn.foldIntoConv(w, [4, 3, 2, 3]), BatchNormRangeError, 'ERR_BN_BAD_LENGTH', /48 elements/, /\[4, 3, 2, 3\]/, /72/);
  });

  it('a linear weight that is not [numFeatures, in] or a bias of the wrong length -> ERR_BN_BAD_LENGTH', () => {
    expectCode(() => bn.foldIntoLinear(new Float32Array(10)), BatchNormRangeError, 'ERR_BN_BAD_LENGTH', /multiple of 4/, /length 10/);
    expectCode(() => bn.foldIntoLinear(new Float32Array(8), new Float32Array(3)), BatchNormRangeError, 'ERR_BN_BAD_LENGTH', /bias/, /length 3/);
  });

  it('trackRunningStats = false -> ERR_BN_NO_RUNNING_STATS for foldIntoConv, foldIntoLinear and scaleShift', () => {
    const nostats = new BatchNorm(4, { trackRunningStats: false });
    expectCode(() => nostats.foldIntoConv(w, [4, 3, 2, 2]), BatchNormError, 'ERR_BN_NO_RUNNING_STATS', /running statistics/, /trackRunningStats/);
    expectCode(() => nostats.foldIntoLinear(new Float32Array(8)), BatchNormError, 'ERR_BN_NO_RUNNING_STATS', /foldIntoLinear/);
    expectCode(() => nostats.scaleShift(), BatchNormError, 'ERR_BN_NO_RUNNING_STATS', /scaleShift/);
  });
});
