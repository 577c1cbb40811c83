// Inference-time folding: BN with fixed statistics is y = x * scale + shift per channel, which can
// be merged into the convolution or linear layer before it. Everything is computed in float64
// and cast once to the output dtype.
import { BatchNormRangeError, BatchNormTypeError, describe } from './errors';
import { arrayType, dtypeOf, FloatArray, FloatDType, isFloatArray } from './arrays';
import { checkArray } from './validate';

export interface ScaleShift {
  scale: Float64Array;
  shift: Float64Array;
}

const DTYPE_MAX = { float32: 3.4028234663852886e38, float64: Number.MAX_VALUE } as const;

/** The core's invstd rule (native/core/invstd.h, mirrored for the float64 folding maths): 0 when
 * var + eps == 0, else 1 / sqrt(var + eps) capped at the dtype's largest finite value. */
export function invstdOf(variance: number, eps: number, dtype: FloatDType): number {
  const d = variance + eps;
  if (d === 0) return 0;
  const r = 1 / Math.sqrt(d);
  return r > DTYPE_MAX[dtype] ? DTYPE_MAX[dtype] : r;
}

/** scale = weight * invstd, shift = bias - mean * scale (weight 1 and bias 0 when null). */
export function computeScaleShift(
  mean: FloatArray, variance: FloatArray, eps: number, weight: FloatArray | null, bias: FloatArray | null,
): ScaleShift {
  const C = mean.length;
  const dtype = dtypeOf(variance);
  const scale = new Float64Array(C);
  const shift = new Float64Array(C);
  for (let c = 0; c < C; c++) {
    const s = (weight ? weight[c] : 1) * invstdOf(variance[c], eps, dtype);
    scale[c] = s;
    shift[c] = (bias ? bias[c] : 0) - mean[c] * s;
  }
  return { scale, shift };
}

export interface FoldedLayer {
  weight: FloatArray;
  bias: FloatArray;
}

export interface ConvFoldOptions {
  groups?: number;
  /** Transposed convolution: weight is [I, O/groups, ...k] instead of [O, I/groups, ...k]. */
  transposed?: boolean;
}

function checkShape(fn: string, weight: FloatArray, shape: unknown): number[] {
  if (!Array.isArray(shape) || shape.length < 2 || !shape.every((d) => Number.isInteger(d) && d >= 1)) {
    throw new BatchNormRangeError('ERR_BN_BAD_SHAPE', `${fn}: weightShape must be an array of at least 2 integers >= 1, received ${describe(shape)}`);
  }
  const total = shape.reduce((p: number, d: number) => p * d, 1);
  if (total !== weight.length) {
    throw new BatchNormRangeError('ERR_BN_BAD_LENGTH', `${fn}: weight has ${weight.length} elements but weightShape [${shape.join(', ')}] needs ${total}`);
  }
  return shape as number[];
}

function checkWeight(fn: string, weight: unknown): FloatArray {
  if (!isFloatArray(weight)) {
    throw new BatchNormTypeError('ERR_BN_INVALID_ARG_TYPE', `${fn}: weight must be a Float32Array or Float64Array, received ${describe(weight)}`);
  }
  return weight;
}

/**
 * Folds BN (scale, shift over C = output channels) into a convolution.
 * Regular: W'[o, ...] = W[o, ...] * scale[o]. Transposed ([I, O/g, ...k]): output channel of
 * W[i, j, ...] is (i div (I/g)) * (O/g) + j. Bias: b'[o] = b[o] * scale[o] + shift[o].
 */
export function foldConv(fn: string, ss: ScaleShift, weight: unknown, weightShape: unknown, bias: unknown, options: ConvFoldOptions = {}): FoldedLayer {
  const w = checkWeight(fn, weight);
  const shape = checkShape(fn, w, weightShape);
  const groups = options.groups ?? 1;
  const transposed = options.transposed ?? false;
  if (!Number.isInteger(groups) || groups < 1) {
    throw new BatchNormRangeError('ERR_BN_OUT_OF_RANGE', `${fn}: groups must be an integer >= 1, received ${describe(groups)}`);
  }
  if (typeof transposed !== 'boolean') {
    throw new BatchNormTypeError('ERR_BN_INVALID_ARG_TYPE', `${fn}: transposed must be a boolean, received ${describe(transposed)}`);
  }
  const C = ss.scale.length;
  const kernel = shape.slice(2).reduce((p, d) => p * d, 1);
  const out = new (arrayType(dtypeOf(w)))(w.length);
  if (!transposed) {
    if (shape[0] !== C) {
      throw new BatchNormRangeError('ERR_BN_BAD_SHAPE', `${fn}: weightShape[0] (output channels) must be ${C}, the layer's numFeatures, received ${shape[0]}`);
    }
    if (C % groups !== 0) {
      throw new BatchNormRangeError('ERR_BN_OUT_OF_RANGE', `${fn}: output channels ${C} must be divisible by groups ${groups}`);
    }
    const per = shape[1] * kernel;
    for (let o = 0; o < C; o++) {
      const s = ss.scale[o];
      for (let k = o * per, e = k + per; k < e; k++) out[k] = w[k] * s;
    }
  } else {
    const I = shape[0];
    const oPerG = shape[1];
    if (I % groups !== 0) {
      throw new BatchNormRangeError('ERR_BN_OUT_OF_RANGE', `${fn}: input channels weightShape[0] = ${I} must be divisible by groups ${groups}`);
    }
    if (oPerG * groups !== C) {
      throw new BatchNormRangeError(
        'ERR_BN_BAD_SHAPE',
        `${fn}: a transposed weight [I, O/groups, ...k] must have weightShape[1] * groups = ${C} (numFeatures), received ${oPerG} * ${groups}`,
      );
    }
    const iPerG = I / groups;
    for (let i = 0; i < I; i++) {
      const g = Math.floor(i / iPerG);
      for (let j = 0; j < oPerG; j++) {
        const s = ss.scale[g * oPerG + j];
        const base = (i * oPerG + j) * kernel;
        for (let k = base, e = base + kernel; k < e; k++) out[k] = w[k] * s;
      }
    }
  }
  return { weight: out, bias: foldBias(fn, ss, bias, dtypeOf(w)) };
}

/** Linear weight [out, in] (row-major) with out = C. */
export function foldLinear(fn: string, ss: ScaleShift, weight: unknown, bias: unknown): FoldedLayer {
  const w = checkWeight(fn, weight);
  const C = ss.scale.length;
  if (w.length % C !== 0 || w.length === 0) {
    throw new BatchNormRangeError('ERR_BN_BAD_LENGTH', `${fn}: a linear weight [out = ${C}, in] must have a multiple of ${C} elements, received ${describe(w)}`);
  }
  const inFeatures = w.length / C;
  return foldConv(fn, ss, w, [C, inFeatures], bias);
}

function foldBias(fn: string, ss: ScaleShift, bias: unknown, dtype: 'float32' | 'float64'): FloatArray {
  const C = ss.scale.length;
  if (bias !== undefined && bias !== null && !isFloatArray(bias)) {
    throw new BatchNormTypeError('ERR_BN_INVALID_ARG_TYPE', `${fn}: bias must be a Float32Array, Float64Array or null, received ${describe(bias)}`);
  }
  const b = bias === undefined || bias === null ? null : checkArray(fn, 'bias', bias, dtypeOf(bias), C);
  const out = new (arrayType(dtype))(C);
  for (let o = 0; o < C; o++) out[o] = (b ? b[o] : 0) * ss.scale[o] + ss.shift[o];
  return out;
}
