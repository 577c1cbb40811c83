// The layer's options: the constructor's (BatchNormOptions) and each forward's and backward's,
// with the readers of the per-call ones (an output array alone, or an options object read by name).
import { Activation } from './activation';
import { arrayName, DType, isTensorArray, TensorArray } from './arrays';
import { BatchNormTypeError, describe } from './errors';
import { checkOptionalBoolean, checkTensor, readOptions } from './validate';

export interface BatchNormOptions {
  /** Added to the variance. Default 1e-5. */
  eps?: number;
  /** PyTorch convention: running = (1 - momentum) * running + momentum * batch. null: cumulative average. Default 0.1. */
  momentum?: number | null;
  /** Learnable per-channel weight (gamma) and bias (beta). Default true. */
  affine?: boolean;
  /** Keep running statistics; without them evaluation mode uses batch statistics. Default true. */
  trackRunningStats?: boolean;
  /** Storage of x, y, dy, dx: 'float32' (default), 'float64', or 'bfloat16' / 'float16' (raw bits in
   * Uint16Arrays, with float32 parameters, statistics and gradients: PyTorch's mixed type). */
  dtype?: DType;
  /** Fused activation after the normalization: 'relu' (y = relu(BN(x)), or relu(BN(x) + residual)
   * with forward's residual), in the same pass. Default null (none). Backward masks dy with the y
   * the forward returned (no extra memory): keep that y unchanged until its backward. */
  activation?: Activation;
}

/** Per-call options of forward (the third argument may also be just the output array). */
export interface ForwardOptions {
  /** Output (layer dtype, x's length); may be x itself (in place). */
  out?: TensorArray;
  /** x is stored channels-last ([N, ...spatial, C], e.g. NHWC); shape stays logical [N, C, ...spatial]. */
  channelsLast?: boolean;
  /** With activation 'relu': added before the ReLU (layer dtype, x's length and layout); out may be
   * this very array. */
  residual?: TensorArray;
}

/** Per-call options of backward (the second argument may also be just the output array). */
export interface BackwardCallOptions {
  /** dx (layer dtype, x's length); may be dy itself. Default: a new array. */
  out?: TensorArray;
  /** The y returned by the forward to differentiate. Default: the last forward. */
  output?: TensorArray;
  /** After a forward with a residual (required then): receives dL/dresidual (layer dtype, x's
   * length), written in the same pass as dx; must not share memory with dy, x, y or out. */
  residualGrad?: TensorArray;
}

export const LAYER_KEYS = ['eps', 'momentum', 'affine', 'trackRunningStats', 'dtype', 'activation'] as const;
const FORWARD_KEYS = ['out', 'channelsLast', 'residual'] as const;
const BACKWARD_KEYS = ['out', 'output', 'residualGrad'] as const;

export function readForwardOptions(fn: string, dtype: DType, v: unknown): { out: TensorArray | null; channelsLast: boolean; residual?: unknown } {
  if (v === undefined || v === null) return { out: null, channelsLast: false };
  if (isTensorArray(v)) return { out: checkTensor(fn, 'out', v, dtype), channelsLast: false };
  if (ArrayBuffer.isView(v) || Array.isArray(v)) {
    throw new BatchNormTypeError(
      'ERR_BN_INVALID_ARG_TYPE',
      `${fn}: out must be a ${arrayName(dtype)} (or an options object { out, channelsLast }), received ${describe(v)}`,
    );
  }
  const o = readOptions(fn, v, FORWARD_KEYS);
  return {
    out: o.out === undefined || o.out === null ? null : checkTensor(fn, 'out', o.out, dtype),
    channelsLast: checkOptionalBoolean(fn, 'channelsLast', o.channelsLast, false),
    residual: o.residual,
  };
}

export function readBackwardOptions(fn: string, dtype: DType, v: unknown): { out: TensorArray | null; output: TensorArray | null; residualGrad?: unknown } {
  if (v === undefined || v === null) return { out: null, output: null };
  if (isTensorArray(v)) return { out: checkTensor(fn, 'out', v, dtype), output: null };
  if (ArrayBuffer.isView(v) || Array.isArray(v)) {
    throw new BatchNormTypeError(
      'ERR_BN_INVALID_ARG_TYPE',
      `${fn}: out must be a ${arrayName(dtype)} (or an options object { out, output }), received ${describe(v)}`,
    );
  }
  const o = readOptions(fn, v, BACKWARD_KEYS);
  return {
    out: o.out === undefined || o.out === null ? null : checkTensor(fn, 'out', o.out, dtype),
    output: o.output === undefined || o.output === null ? null : checkTensor(fn, 'output', o.output, dtype),
    residualGrad: o.residualGrad,
  };
}
