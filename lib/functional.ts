// The functional API: batch normalization on buffers the caller owns. Each function validates its
// user arguments once (lib/validate.ts), then builds the addon's named call (lib/ops.ts).
import { DType, dtypeOf, FloatArray, isFloat64Array, isFloatArray } from './arrays';
import { BatchNormRangeError, BatchNormTypeError, describe } from './errors';
import { checkActivation, checkResidual } from './activation';
import { runAsync, runSync } from './native-call';
import {
  BackwardResult, BackwardSpec, backwardCall, checkAsync, checkOutputs, InferenceSpec, inferenceCall, TrainingResult,
  TrainingSpec, trainingCall,
} from './ops';
import {
  checkArray, checkBoolean, checkEps, checkMomentum, checkNoOverlap, checkOptionalArray, checkOptionalBoolean,
  ParsedShape, parseShape, readOptions,
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
  out?: FloatArray;
  /** x is stored channels-last ([N, ...spatial, C], e.g. NHWC); shape stays logical [N, C, ...spatial]. */
  channelsLast?: boolean;
  /** Fused activation: y = relu(BN(x)), or relu(BN(x) + residual) with a residual. */
  activation?: 'relu' | null;
  /** Added before the ReLU (x's dtype, length and layout); out may be this very array. */
  residual?: FloatArray | null;
}

export interface InferenceOptions {
  weight?: FloatArray | null;
  bias?: FloatArray | null;
  runningMean: FloatArray;
  runningVar: FloatArray;
  eps?: number;
  out?: FloatArray;
  channelsLast?: boolean;
  activation?: 'relu' | null;
  residual?: FloatArray | null;
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
  out?: FloatArray;
  /** x, dy and dx are stored channels-last. */
  channelsLast?: boolean;
  /** The forward's fused activation: dy is masked where its output y <= 0 (y required, unchanged since). */
  activation?: 'relu' | null;
  y?: FloatArray;
  /** After a forward with a residual: receives dL/dresidual (the masked dy). */
  residualGrad?: FloatArray | null;
}

const TRAINING_KEYS = ['weight', 'bias', 'runningMean', 'runningVar', 'momentum', 'eps', 'out', 'channelsLast', 'activation', 'residual'] as const;
const INFERENCE_KEYS = ['weight', 'bias', 'runningMean', 'runningVar', 'eps', 'out', 'channelsLast', 'activation', 'residual'] as const;
const BACKWARD_KEYS = [
  'weight', 'training', 'mean', 'invstd', 'runningMean', 'runningVar', 'eps', 'gradWeight', 'gradBias', 'accumulate', 'out', 'channelsLast',
  'activation', 'y', 'residualGrad',
] as const;

function xAndShape(fn: string, x: unknown, shape: unknown): { x: FloatArray; dtype: DType; sh: ParsedShape } {
  if (!isFloatArray(x)) {
    throw new BatchNormTypeError('ERR_BN_INVALID_ARG_TYPE', `${fn}: x must be a Float32Array or Float64Array, received ${describe(x)}`);
  }
  const sh = parseShape(fn, shape);
  const dtype = dtypeOf(x);
  checkArray(fn, 'x', x, dtype, sh.total);
  return { x, dtype, sh };
}

function validateTraining(fn: string, x: unknown, shape: unknown, options: unknown): TrainingSpec {
  const { x: xa, dtype, sh } = xAndShape(fn, x, shape);
  const o = readOptions(fn, options, TRAINING_KEYS);
  const C = sh.c;
  const weight = checkOptionalArray(fn, 'weight', o.weight, dtype, C);
  const bias = checkOptionalArray(fn, 'bias', o.bias, dtype, C);
  const runningMean = checkOptionalArray(fn, 'runningMean', o.runningMean, dtype, C);
  const runningVar = checkOptionalArray(fn, 'runningVar', o.runningVar, dtype, C);
  if ((runningMean === null) !== (runningVar === null)) {
    throw new BatchNormTypeError('ERR_BN_INVALID_ARG_TYPE', `${fn}: runningMean and runningVar must be given together, received only ${runningMean ? 'runningMean' : 'runningVar'}`);
  }
  const spec: TrainingSpec = {
    fn, x: xa, dtype, sh, weight, bias, runningMean, runningVar,
    eps: checkEps(fn, o.eps ?? 1e-5),
    momentum: checkMomentum(fn, o.momentum ?? 0.1, false) as number,
    out: checkOptionalArray(fn, 'out', o.out, dtype, sh.total),
    channelsLast: checkOptionalBoolean(fn, 'channelsLast', o.channelsLast, false),
    ...fusedActivation(fn, o, dtype, sh.total),
  };
  checkTooFewValues(fn, sh);
  checkOutputs(spec);
  return spec;
}

function fusedActivation(fn: string, o: { activation?: unknown; residual?: unknown }, dtype: DType, total: number) {
  const activation = checkActivation(fn, o.activation);
  return { activation, residual: checkResidual(fn, o.residual, activation, dtype, total) };
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
  const { x: xa, dtype, sh } = xAndShape(fn, x, shape);
  const o = readOptions(fn, options, INFERENCE_KEYS);
  const C = sh.c;
  const spec: InferenceSpec = {
    fn, x: xa, dtype, sh,
    weight: checkOptionalArray(fn, 'weight', o.weight, dtype, C),
    bias: checkOptionalArray(fn, 'bias', o.bias, dtype, C),
    runningMean: checkArray(fn, 'runningMean', o.runningMean, dtype, C),
    runningVar: checkArray(fn, 'runningVar', o.runningVar, dtype, C),
    eps: checkEps(fn, o.eps ?? 1e-5),
    out: checkOptionalArray(fn, 'out', o.out, dtype, sh.total),
    channelsLast: checkOptionalBoolean(fn, 'channelsLast', o.channelsLast, false),
    ...fusedActivation(fn, o, dtype, sh.total),
  };
  checkOutputs(spec);
  return spec;
}

/** Saved statistics: a Float64Array (exact) or an array of x's dtype, widened. */
function widen(fn: string, name: string, v: unknown, dtype: DType, C: number): Float64Array {
  if (isFloat64Array(v)) return checkArray(fn, name, v, 'float64', C) as Float64Array;
  return Float64Array.from(checkArray(fn, name, v, dtype, C));
}

function validateBackward(fn: string, x: unknown, dy: unknown, shape: unknown, options: unknown): BackwardSpec {
  const { x: xa, dtype, sh } = xAndShape(fn, x, shape);
  const dya = checkArray(fn, 'dy', dy, dtype, sh.total);
  const o = readOptions(fn, options, BACKWARD_KEYS);
  const C = sh.c;
  const training = checkBoolean(fn, 'training', o.training);
  const weight = checkOptionalArray(fn, 'weight', o.weight, dtype, C);
  const stats: Pick<BackwardSpec, 'mean' | 'invstd' | 'runningVar' | 'eps'> = training
    ? { mean: widen(fn, 'mean', o.mean, dtype, C), invstd: widen(fn, 'invstd', o.invstd, dtype, C), runningVar: null, eps: 0 }
    : {
        mean: widen(fn, 'runningMean', o.runningMean, dtype, C),
        invstd: null,
        runningVar: checkArray(fn, 'runningVar', o.runningVar, dtype, C),
        eps: checkEps(fn, o.eps ?? 1e-5),
      };
  const out = checkOptionalArray(fn, 'out', o.out, dtype, sh.total);
  const spec: BackwardSpec = {
    fn, x: xa, dy: dya, dtype, sh, weight, training, ...stats,
    gradWeight: checkOptionalArray(fn, 'gradWeight', o.gradWeight, dtype, C),
    gradBias: checkOptionalArray(fn, 'gradBias', o.gradBias, dtype, C),
    accumulate: checkOptionalBoolean(fn, 'accumulate', o.accumulate, true),
    out,
    channelsLast: checkOptionalBoolean(fn, 'channelsLast', o.channelsLast, false),
    ...backwardActivation(fn, o, dtype, sh.total),
  };
  if (out) checkNoOverlap(fn, 'out', out, 'x', xa, false);
  checkOutputs(spec);
  return spec;
}

function backwardActivation(fn: string, o: { activation?: unknown; y?: unknown; residualGrad?: unknown }, dtype: DType, total: number) {
  const activation = checkActivation(fn, o.activation);
  if (activation === null) {
    for (const k of ['y', 'residualGrad'] as const) {
      if (o[k] !== undefined && o[k] !== null) {
        throw new BatchNormRangeError('ERR_BN_ACTIVATION', `${fn}: ${k} is for a backward through activation 'relu', and this call has none`);
      }
    }
    return { activation, y: null, residualGrad: null };
  }
  const y = checkArray(fn, "y (the forward's output, the ReLU's mask)", o.y, dtype, total);
  const residualGrad = checkOptionalArray(fn, 'residualGrad', o.residualGrad, dtype, total);
  return { activation, y, residualGrad };
}

/** Training-mode forward: y, the batch statistics, and (if given) running statistics updated in place. */
export function batchNormTraining(x: FloatArray, shape: readonly number[], options: TrainingOptions = {}): TrainingResult {
  const p = trainingCall(validateTraining('batchNormTraining', x, shape, options));
  runSync(p.call);
  return p.result;
}

/** Inference-mode forward with the given statistics. */
export function batchNormInference(x: FloatArray, shape: readonly number[], options: InferenceOptions): FloatArray {
  const p = inferenceCall(validateInference('batchNormInference', x, shape, options));
  runSync(p.call);
  return p.y;
}

/** Backward: dx, and dweight/dbias added into gradWeight/gradBias (new zeroed arrays if not given). */
export function batchNormBackward(x: FloatArray, dy: FloatArray, shape: readonly number[], options: BackwardOptions): BackwardResult {
  const p = backwardCall(validateBackward('batchNormBackward', x, dy, shape, options));
  runSync(p.call);
  return p.result;
}

// The async variants report every error through the Promise.

function asyncChecked<S extends TrainingSpec | InferenceSpec | BackwardSpec>(spec: S): S {
  checkAsync(spec);
  return spec;
}

/** As batchNormTraining, computed on libuv's thread pool. Arrays must not be touched until it settles. */
export async function batchNormTrainingAsync(x: FloatArray, shape: readonly number[], options: TrainingOptions = {}): Promise<TrainingResult> {
  const p = trainingCall(asyncChecked(validateTraining('batchNormTrainingAsync', x, shape, options)));
  await runAsync(p.call);
  return p.result;
}

export async function batchNormInferenceAsync(x: FloatArray, shape: readonly number[], options: InferenceOptions): Promise<FloatArray> {
  const p = inferenceCall(asyncChecked(validateInference('batchNormInferenceAsync', x, shape, options)));
  await runAsync(p.call);
  return p.y;
}

export async function batchNormBackwardAsync(x: FloatArray, dy: FloatArray, shape: readonly number[], options: BackwardOptions): Promise<BackwardResult> {
  const p = backwardCall(asyncChecked(validateBackward('batchNormBackwardAsync', x, dy, shape, options)));
  await runAsync(p.call);
  return p.result;
}
