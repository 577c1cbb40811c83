// The functional API: batch normalization on buffers the caller owns. The BatchNorm class is
// built on it. Every function validates its arguments fully before calling the addon.
import { Buffer, constants as bufferConstants } from 'buffer';
import type { NativeBinding } from './binding';
import { BatchNormRangeError } from './errors';
import { native } from './load';
import {
  arrayType, checkArray, checkBoolean, checkEps, checkNoOverlap, checkOptionalArray, checkOptions,
  DType, dtypeOf, FloatArray, isFloatArray, ParsedShape, parseShape,
} from './validate';
import { BatchNormTypeError, describe } from './errors';

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
}

export interface TrainingResult {
  y: FloatArray;
  /** Batch mean and 1/sqrt(biased var + eps), in x's dtype (PyTorch's save_mean / save_invstd). */
  saveMean: FloatArray;
  saveInvstd: FloatArray;
  /** The same in float64: pass these to batchNormBackward for the most exact gradients. */
  batchMean: Float64Array;
  batchInvstd: Float64Array;
}

export interface InferenceOptions {
  weight?: FloatArray | null;
  bias?: FloatArray | null;
  runningMean: FloatArray;
  runningVar: FloatArray;
  eps?: number;
  out?: FloatArray;
  channelsLast?: boolean;
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
}

export interface BackwardResult {
  dx: FloatArray;
  gradWeight: FloatArray;
  gradBias: FloatArray;
}

type Call<K extends keyof NativeBinding> = { fn: K; args: Parameters<NativeBinding[K]> };

function xAndShape(fn: string, x: unknown, shape: unknown): { x: FloatArray; dtype: DType; sh: ParsedShape } {
  if (!isFloatArray(x)) {
    throw new BatchNormTypeError('ERR_BN_INVALID_ARG_TYPE', `${fn}: x must be a Float32Array or Float64Array, received ${describe(x)}`);
  }
  const sh = parseShape(fn, shape);
  const dtype = dtypeOf(x);
  checkArray(fn, 'x', x, dtype, sh.total);
  return { x, dtype, sh };
}

function channelsLastOption(fn: string, v: unknown): boolean {
  return v === undefined ? false : checkBoolean(fn, 'channelsLast', v);
}

// A new output array for the kernels to fill, not zero-filled. Every call that gets one writes
// all of its elements before the caller can see it (on an error the call throws and the array is
// dropped), so the zero fill of `new Float32Array(n)` (calloc) is pure waste: on memory malloc
// recycles it is a memset of the whole output (~0.8 ms on 12 MiB here, as long as the kernel's
// own write), and it leaves the output dirty in cache right before the kernels stream over it.
// Buffer.allocUnsafeSlow is the same allocator without the fill, with its own ArrayBuffer (not
// Node's pool; byteOffset 0, so aligned). Past Buffer's size limit: the plain constructor.
// From 4 MiB (at least one whole 2 MiB page inside), the memory is also advised to use
// transparent huge pages (native/addon/addon.cc, adviseHugePages): when malloc hands out
// never-touched memory, its first write costs a page fault per 4 KiB page, ~4 ms on 12 MiB here.
// BATCHNORM_HUGEPAGES=0 turns the advice off (read once): with THP defrag in `madvise` mode the
// kernel may compact memory on an advised fault, which some latency-bound servers would rather avoid.
const kHugePageAdviceBytes = 4 << 20;
const hugePageAdvice = process.env.BATCHNORM_HUGEPAGES !== '0';

function freshOutput(dtype: DType, total: number): FloatArray {
  const T = arrayType(dtype);
  const bytes = total * T.BYTES_PER_ELEMENT;
  if (bytes > bufferConstants.MAX_LENGTH) return new T(total);
  const a = new T(Buffer.allocUnsafeSlow(bytes).buffer, 0, total);
  if (hugePageAdvice && bytes >= kHugePageAdviceBytes) {
    const b = native();
    if (typeof b.adviseHugePages === 'function') b.adviseHugePages(a);  // absent from older prebuilds
  }
  return a;
}

function outputFor(fn: string, out: unknown, x: FloatArray, dtype: DType, total: number, name = 'out'): FloatArray {
  if (out === undefined || out === null) return freshOutput(dtype, total);
  const o = checkArray(fn, name, out, dtype, total);
  checkNoOverlap(fn, name, o, 'x', x, true);
  return o;
}

export function prepareTraining(fn: string, x: unknown, shape: unknown, options: unknown): { call: Call<'forwardTraining'>; result: TrainingResult } {
  const { x: xa, dtype, sh } = xAndShape(fn, x, shape);
  const o = checkOptions(fn, options) as TrainingOptions;
  const C = sh.c;
  const weight = checkOptionalArray(fn, 'weight', o.weight, dtype, C);
  const bias = checkOptionalArray(fn, 'bias', o.bias, dtype, C);
  const rm = checkOptionalArray(fn, 'runningMean', o.runningMean, dtype, C);
  const rv = checkOptionalArray(fn, 'runningVar', o.runningVar, dtype, C);
  if ((rm === null) !== (rv === null)) {
    throw new BatchNormTypeError('ERR_BN_INVALID_ARG_TYPE', `${fn}: runningMean and runningVar must be given together, received only ${rm ? 'runningMean' : 'runningVar'}`);
  }
  const eps = checkEps(fn, o.eps ?? 1e-5);
  const momentum = o.momentum ?? 0.1;
  if (typeof momentum !== 'number' || !(momentum >= 0 && momentum <= 1)) {
    throw new BatchNormRangeError('ERR_BN_OUT_OF_RANGE', `${fn}: momentum must be a number in [0, 1], received ${describe(momentum)}`);
  }
  if (sh.n * sh.s < 2) {
    throw new BatchNormRangeError(
      'ERR_BN_TOO_FEW_VALUES',
      `${fn}: expected more than 1 value per channel when training, received input of shape [${sh.dims.join(', ')}]`,
    );
  }
  const y = outputFor(fn, o.out, xa, dtype, sh.total);
  for (const [name, a] of [['runningMean', rm], ['runningVar', rv], ['weight', weight], ['bias', bias]] as const) {
    if (a) checkNoOverlap(fn, 'out', y, name, a, false);
  }
  const T = arrayType(dtype);
  const result: TrainingResult = {
    y,
    saveMean: new T(C),
    saveInvstd: new T(C),
    batchMean: new Float64Array(C),
    batchInvstd: new Float64Array(C),
  };
  return {
    result,
    call: {
      fn: 'forwardTraining',
      args: [xa, y, sh.n, sh.c, sh.s, weight, bias, result.saveMean, result.saveInvstd, result.batchMean, result.batchInvstd, rm, rv, eps, momentum, channelsLastOption(fn, o.channelsLast)],
    },
  };
}

export function prepareInference(fn: string, x: unknown, shape: unknown, options: unknown): { call: Call<'forwardInference'>; y: FloatArray } {
  const { x: xa, dtype, sh } = xAndShape(fn, x, shape);
  const o = checkOptions(fn, options) as unknown as InferenceOptions;
  const C = sh.c;
  const weight = checkOptionalArray(fn, 'weight', o.weight, dtype, C);
  const bias = checkOptionalArray(fn, 'bias', o.bias, dtype, C);
  const rm = checkArray(fn, 'runningMean', o.runningMean, dtype, C);
  const rv = checkArray(fn, 'runningVar', o.runningVar, dtype, C);
  const eps = checkEps(fn, o.eps ?? 1e-5);
  const y = outputFor(fn, o.out, xa, dtype, sh.total);
  for (const [name, a] of [['runningMean', rm], ['runningVar', rv], ['weight', weight], ['bias', bias]] as const) {
    if (a) checkNoOverlap(fn, 'out', y, name, a, false);
  }
  return { y, call: { fn: 'forwardInference', args: [xa, y, sh.n, sh.c, sh.s, weight, bias, rm, rv, eps, channelsLastOption(fn, o.channelsLast)] } };
}

function widen(fn: string, name: string, v: unknown, dtype: DType, C: number): Float64Array {
  if (v instanceof Float64Array) return checkArray(fn, name, v, 'float64', C) as Float64Array;
  return Float64Array.from(checkArray(fn, name, v, dtype, C));
}

export function prepareBackward(fn: string, x: unknown, dy: unknown, shape: unknown, options: unknown): { call: Call<'backward'>; result: BackwardResult } {
  const { x: xa, dtype, sh } = xAndShape(fn, x, shape);
  const dya = checkArray(fn, 'dy', dy, dtype, sh.total);
  const o = checkOptions(fn, options) as unknown as BackwardOptions;
  const C = sh.c;
  const training = checkBoolean(fn, 'training', o.training);
  const weight = checkOptionalArray(fn, 'weight', o.weight, dtype, C);
  let mean: Float64Array;
  let invstd: Float64Array | null = null;
  let rv: FloatArray | null = null;
  let eps = 0;
  if (training) {
    mean = widen(fn, 'mean', o.mean, dtype, C);
    invstd = widen(fn, 'invstd', o.invstd, dtype, C);
  } else {
    // invstd comes from the core (native/core/invstd.h), the rule inference uses.
    mean = widen(fn, 'runningMean', o.runningMean, dtype, C);
    rv = checkArray(fn, 'runningVar', o.runningVar, dtype, C);
    eps = checkEps(fn, o.eps ?? 1e-5);
  }
  const T = arrayType(dtype);
  const gw = checkOptionalArray(fn, 'gradWeight', o.gradWeight, dtype, C) ?? new T(C);
  const gb = checkOptionalArray(fn, 'gradBias', o.gradBias, dtype, C) ?? new T(C);
  const accumulate = o.accumulate === undefined ? true : checkBoolean(fn, 'accumulate', o.accumulate);
  let dx: FloatArray;
  if (o.out === undefined || o.out === null) {
    dx = freshOutput(dtype, sh.total);
  } else {
    dx = checkArray(fn, 'out', o.out, dtype, sh.total);
    checkNoOverlap(fn, 'out', dx, 'dy', dya, true);
    checkNoOverlap(fn, 'out', dx, 'x', xa, false);
  }
  for (const [gname, g] of [['gradWeight', gw], ['gradBias', gb]] as const) {
    for (const [iname, a] of [['x', xa], ['dy', dya], ['out', dx], ['weight', weight]] as const) {
      if (a) checkNoOverlap(fn, gname, g, iname, a, false);
    }
  }
  checkNoOverlap(fn, 'gradWeight', gw, 'gradBias', gb, false);
  return {
    result: { dx, gradWeight: gw, gradBias: gb },
    call: { fn: 'backward', args: [xa, dya, dx, sh.n, sh.c, sh.s, weight, mean, invstd, gw, gb, training, accumulate, channelsLastOption(fn, o.channelsLast), rv, eps] },
  };
}

function runSync<K extends 'forwardTraining' | 'forwardInference' | 'backward'>(call: Call<K>): void {
  (native()[call.fn] as (...a: unknown[]) => void)(...call.args);
}

function runAsync<K extends 'forwardTraining' | 'forwardInference' | 'backward'>(call: Call<K>): Promise<void> {
  // The addon marks the ArrayBuffers of an async call untransferable (native/addon/addon.cc).
  const b = native();
  const fn = `${call.fn}Async` as const;
  return (b[fn] as (...a: unknown[]) => Promise<void>)(...call.args);
}

/** Training-mode forward: y, the batch statistics, and (if given) running statistics updated in place. */
export function batchNormTraining(x: FloatArray, shape: readonly number[], options: TrainingOptions = {}): TrainingResult {
  const p = prepareTraining('batchNormTraining', x, shape, options);
  runSync(p.call);
  return p.result;
}

/** Inference-mode forward with the given statistics. */
export function batchNormInference(x: FloatArray, shape: readonly number[], options: InferenceOptions): FloatArray {
  const p = prepareInference('batchNormInference', x, shape, options);
  runSync(p.call);
  return p.y;
}

/** Backward: dx, and dweight/dbias added into gradWeight/gradBias (new zeroed arrays if not given). */
export function batchNormBackward(x: FloatArray, dy: FloatArray, shape: readonly number[], options: BackwardOptions): BackwardResult {
  const p = prepareBackward('batchNormBackward', x, dy, shape, options);
  runSync(p.call);
  return p.result;
}

/** As batchNormTraining, computed on libuv's thread pool. Arrays must not be touched until it settles. */
export async function batchNormTrainingAsync(x: FloatArray, shape: readonly number[], options: TrainingOptions = {}): Promise<TrainingResult> {
  const p = prepareTraining('batchNormTrainingAsync', x, shape, options);
  await runAsync(p.call);
  return p.result;
}

export async function batchNormInferenceAsync(x: FloatArray, shape: readonly number[], options: InferenceOptions): Promise<FloatArray> {
  const p = prepareInference('batchNormInferenceAsync', x, shape, options);
  await runAsync(p.call);
  return p.y;
}

export async function batchNormBackwardAsync(x: FloatArray, dy: FloatArray, shape: readonly number[], options: BackwardOptions): Promise<BackwardResult> {
  const p = prepareBackward('batchNormBackwardAsync', x, dy, shape, options);
  await runAsync(p.call);
  return p.result;
}

export { runSync as _runSync, runAsync as _runAsync };
