// The functional API: batch normalization on buffers the caller owns. Each function validates its
// user arguments once (lib/validate.ts), then builds the addon's named call (lib/ops.ts).
import {
  DType, dtypeOf, FloatArray, FloatDType, HalfDType, isFloat64Array, isFloatArray, isUint16Array, paramDType, SameKind, TensorArray,
} from './arrays';
import { BatchNormRangeError, BatchNormTypeError, describe } from './errors';
import { runAsync, runSync } from './native-call';
import {
  BackwardResult, BackwardSpec, backwardCall, checkAsync, checkOutputs, InferenceSpec, inferenceCall, TrainingResult,
  TrainingSpec, trainingCall,
} from './ops';
import {
  checkArray, checkBoolean, checkEps, checkMomentum, checkNoOverlap, checkOptionalArray, checkOptionalBoolean,
  checkOptionalTensor, checkTensor, ParsedShape, parseShape, readOptions,
} from './validate';

export type { BackwardResult, TrainingResult } from './ops';

export interface TrainingOptions {
  weight?: FloatArray | null;
  bias?: FloatArray | null;
  /** Updated in place when given (both or neither): running = (1 - momentum) * running + momentum * batch. */
  runningMean?: FloatArray | null;
  runningVar?: FloatArray | null;
  /** The factor applied to this step's statistics (PyTorch's momentum; 1/n for a cumulative average). Default 0.1. */
  momentum?: number;
  eps?: number;
  /** Output array (x's dtype and length). May be x itself (in place). */
  out?: TensorArray;
  /** x is stored channels-last ([N, ...spatial, C], e.g. NHWC); shape stays logical [N, C, ...spatial]. */
  channelsLast?: boolean;
  /** Required when x is a Uint16Array: the format of its raw 16-bit values (then weight, bias and
   * the statistics are Float32Array). With a float array, x's own dtype (if given, it must match). */
  dtype?: DType;
}

export interface InferenceOptions {
  weight?: FloatArray | null;
  bias?: FloatArray | null;
  runningMean: FloatArray;
  runningVar: FloatArray;
  eps?: number;
  out?: TensorArray;
  channelsLast?: boolean;
  /** As TrainingOptions.dtype. */
  dtype?: DType;
}

export interface BackwardOptions {
  weight?: FloatArray | null;
  /** true: the forward used batch statistics (mean/invstd below are its saved statistics). */
  training: boolean;
  /** training: saveMean/saveInvstd (x's dtype) or batchMean/batchInvstd (Float64Array). */
  mean?: FloatArray;
  invstd?: FloatArray;
  /** evaluation: the running statistics the forward used. */
  runningMean?: FloatArray;
  runningVar?: FloatArray;
  eps?: number;
  /** Parameter gradients are added into these when given (accumulate, default true) or written. */
  gradWeight?: FloatArray | null;
  gradBias?: FloatArray | null;
  accumulate?: boolean;
  /** dx output (x's dtype and length); may be dy itself. Default: a new array. */
  out?: TensorArray;
  /** x, dy and dx are stored channels-last. */
  channelsLast?: boolean;
  /** As TrainingOptions.dtype (x, dy and dx share it). */
  dtype?: DType;
}

const TRAINING_KEYS = ['weight', 'bias', 'runningMean', 'runningVar', 'momentum', 'eps', 'out', 'channelsLast', 'dtype'] as const;
const INFERENCE_KEYS = ['weight', 'bias', 'runningMean', 'runningVar', 'eps', 'out', 'channelsLast', 'dtype'] as const;
const BACKWARD_KEYS = [
  'weight', 'training', 'mean', 'invstd', 'runningMean', 'runningVar', 'eps', 'gradWeight', 'gradBias', 'accumulate', 'out', 'channelsLast',
  'dtype',
] as const;

/** x's storage dtype: a float array's own, or for a Uint16Array the `dtype` option, which it needs. */
function storageDType(fn: string, x: unknown, dtype: unknown): DType {
  if (isUint16Array(x)) {
    if (dtype === 'bfloat16' || dtype === 'float16') return dtype as HalfDType;
    throw new BatchNormTypeError(
      dtype === undefined ? 'ERR_BN_DTYPE_REQUIRED' : 'ERR_BN_DTYPE_MISMATCH',
      `${fn}: x is a Uint16Array, which holds 16-bit values of a format it does not say: pass options.dtype 'bfloat16' or 'float16', received ${describe(dtype)}`,
    );
  }
  if (!isFloatArray(x)) {
    throw new BatchNormTypeError('ERR_BN_INVALID_ARG_TYPE', `${fn}: x must be a Float32Array or Float64Array, or a Uint16Array with options.dtype, received ${describe(x)}`);
  }
  const own: FloatDType = dtypeOf(x);
  if (dtype !== undefined && dtype !== own) {
    throw new BatchNormTypeError('ERR_BN_DTYPE_MISMATCH', `${fn}: options.dtype is ${describe(dtype)} but x is ${describe(x)} (dtype ${own})`);
  }
  return own;
}

function xAndShape(fn: string, x: unknown, shape: unknown, dtypeOption: unknown): { x: TensorArray; dtype: DType; sh: ParsedShape } {
  const dtype = storageDType(fn, x, dtypeOption);
  const sh = parseShape(fn, shape);
  return { x: checkTensor(fn, 'x', x, dtype, sh.total), dtype, sh };
}

function validateTraining(fn: string, x: unknown, shape: unknown, options: unknown): TrainingSpec {
  const o = readOptions(fn, options, TRAINING_KEYS);
  const { x: xa, dtype, sh } = xAndShape(fn, x, shape, o.dtype);
  const C = sh.c;
  const p = paramDType(dtype);
  const weight = checkOptionalArray(fn, 'weight', o.weight, p, C);
  const bias = checkOptionalArray(fn, 'bias', o.bias, p, C);
  const runningMean = checkOptionalArray(fn, 'runningMean', o.runningMean, p, C);
  const runningVar = checkOptionalArray(fn, 'runningVar', o.runningVar, p, C);
  if ((runningMean === null) !== (runningVar === null)) {
    throw new BatchNormTypeError('ERR_BN_INVALID_ARG_TYPE', `${fn}: runningMean and runningVar must be given together, received only ${runningMean ? 'runningMean' : 'runningVar'}`);
  }
  const spec: TrainingSpec = {
    fn, x: xa, dtype, sh, weight, bias, runningMean, runningVar,
    eps: checkEps(fn, o.eps ?? 1e-5),
    momentum: checkMomentum(fn, o.momentum ?? 0.1, false) as number,
    out: checkOptionalTensor(fn, 'out', o.out, dtype, sh.total),
    channelsLast: checkOptionalBoolean(fn, 'channelsLast', o.channelsLast, false),
  };
  checkTooFewValues(fn, sh);
  checkOutputs(spec);
  return spec;
}

export function checkTooFewValues(fn: string, sh: ParsedShape): void {
  if (sh.n * sh.s < 2) {
    throw new BatchNormRangeError(
      'ERR_BN_TOO_FEW_VALUES',
      `${fn}: expected more than 1 value per channel when training, received input of shape [${sh.dims.join(', ')}]`,
    );
  }
}

function validateInference(fn: string, x: unknown, shape: unknown, options: unknown): InferenceSpec {
  const o = readOptions(fn, options, INFERENCE_KEYS);
  const { x: xa, dtype, sh } = xAndShape(fn, x, shape, o.dtype);
  const C = sh.c;
  const p = paramDType(dtype);
  const spec: InferenceSpec = {
    fn, x: xa, dtype, sh,
    weight: checkOptionalArray(fn, 'weight', o.weight, p, C),
    bias: checkOptionalArray(fn, 'bias', o.bias, p, C),
    runningMean: checkArray(fn, 'runningMean', o.runningMean, p, C),
    runningVar: checkArray(fn, 'runningVar', o.runningVar, p, C),
    eps: checkEps(fn, o.eps ?? 1e-5),
    out: checkOptionalTensor(fn, 'out', o.out, dtype, sh.total),
    channelsLast: checkOptionalBoolean(fn, 'channelsLast', o.channelsLast, false),
  };
  checkOutputs(spec);
  return spec;
}

/** Saved statistics: a Float64Array (exact) or an array of the parameters' dtype, widened. */
function widen(fn: string, name: string, v: unknown, dtype: FloatDType, C: number): Float64Array {
  if (isFloat64Array(v)) return checkArray(fn, name, v, 'float64', C) as Float64Array;
  return Float64Array.from(checkArray(fn, name, v, dtype, C));
}

function validateBackward(fn: string, x: unknown, dy: unknown, shape: unknown, options: unknown): BackwardSpec {
  const o = readOptions(fn, options, BACKWARD_KEYS);
  const { x: xa, dtype, sh } = xAndShape(fn, x, shape, o.dtype);
  const dya = checkTensor(fn, 'dy', dy, dtype, sh.total);
  const C = sh.c;
  const p = paramDType(dtype);
  const training = checkBoolean(fn, 'training', o.training);
  const weight = checkOptionalArray(fn, 'weight', o.weight, p, C);
  const stats: Pick<BackwardSpec, 'mean' | 'invstd' | 'runningVar' | 'eps'> = training
    ? { mean: widen(fn, 'mean', o.mean, p, C), invstd: widen(fn, 'invstd', o.invstd, p, C), runningVar: null, eps: 0 }
    : {
        mean: widen(fn, 'runningMean', o.runningMean, p, C),
        invstd: null,
        runningVar: checkArray(fn, 'runningVar', o.runningVar, p, C),
        eps: checkEps(fn, o.eps ?? 1e-5),
      };
  const out = checkOptionalTensor(fn, 'out', o.out, dtype, sh.total);
  const spec: BackwardSpec = {
    fn, x: xa, dy: dya, dtype, sh, weight, training, ...stats,
    gradWeight: checkOptionalArray(fn, 'gradWeight', o.gradWeight, p, C),
    gradBias: checkOptionalArray(fn, 'gradBias', o.gradBias, p, C),
    accumulate: checkOptionalBoolean(fn, 'accumulate', o.accumulate, true),
    out,
    channelsLast: checkOptionalBoolean(fn, 'channelsLast', o.channelsLast, false),
  };
  if (out) checkNoOverlap(fn, 'out', out, 'x', xa, false);
  checkOutputs(spec);
  return spec;
}

/** Training-mode forward: y, the batch statistics, and (if given) running statistics updated in place. */
export function batchNormTraining<X extends TensorArray>(x: X, shape: readonly number[], options: TrainingOptions = {}): TrainingResult<SameKind<X>> {
  const p = trainingCall(validateTraining('batchNormTraining', x, shape, options));
  runSync(p.call);
  return p.result as TrainingResult<SameKind<X>>;
}

/** Inference-mode forward with the given statistics. */
export function batchNormInference<X extends TensorArray>(x: X, shape: readonly number[], options: InferenceOptions): SameKind<X> {
  const p = inferenceCall(validateInference('batchNormInference', x, shape, options));
  runSync(p.call);
  return p.y as SameKind<X>;
}

/** Backward: dx, and dweight/dbias added into gradWeight/gradBias (new zeroed arrays if not given). */
export function batchNormBackward<D extends TensorArray>(x: TensorArray, dy: D, shape: readonly number[], options: BackwardOptions): BackwardResult<SameKind<D>> {
  const p = backwardCall(validateBackward('batchNormBackward', x, dy, shape, options));
  runSync(p.call);
  return p.result as BackwardResult<SameKind<D>>;
}

// The async variants report every error through the Promise.

function asyncChecked<S extends TrainingSpec | InferenceSpec | BackwardSpec>(spec: S): S {
  checkAsync(spec);
  return spec;
}

/** As batchNormTraining, computed on libuv's thread pool. Arrays must not be touched until it settles. */
export async function batchNormTrainingAsync<X extends TensorArray>(x: X, shape: readonly number[], options: TrainingOptions = {}): Promise<TrainingResult<SameKind<X>>> {
  const p = trainingCall(asyncChecked(validateTraining('batchNormTrainingAsync', x, shape, options)));
  await runAsync(p.call);
  return p.result as TrainingResult<SameKind<X>>;
}

export async function batchNormInferenceAsync<X extends TensorArray>(x: X, shape: readonly number[], options: InferenceOptions): Promise<SameKind<X>> {
  const p = inferenceCall(asyncChecked(validateInference('batchNormInferenceAsync', x, shape, options)));
  await runAsync(p.call);
  return p.y as SameKind<X>;
}

export async function batchNormBackwardAsync<D extends TensorArray>(x: TensorArray, dy: D, shape: readonly number[], options: BackwardOptions): Promise<BackwardResult<SameKind<D>>> {
  const p = backwardCall(asyncChecked(validateBackward('batchNormBackwardAsync', x, dy, shape, options)));
  await runAsync(p.call);
  return p.result as BackwardResult<SameKind<D>>;
}
