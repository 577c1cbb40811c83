// The contract between the TypeScript facade and the native addon (batchnorm.node): one named
// call object per op, parsed by name in native/addon/calls.cc. The facade validates every user
// argument and owns the messages; the addon re-checks only what memory safety needs (array kinds,
// lengths, overlap, resizable buffers on async calls) and throws the facade's error classes
// (handed to it by setErrorClasses) with `fn` in the message. A key the addon does not know is an
// error, so the two sides cannot drift apart silently.
//
// Shapes are (n, c, s): batch, channels, product of the spatial dimensions (1 for [N, C]); memory
// is [N, C, S], or [N, S, C] with channelsLast. Arrays of one call share x's dtype, except the
// float64 statistics (batchMean, batchInvstd, and backward's mean and invstd).

import type { BatchNormError, BatchNormRangeError, BatchNormTypeError } from './errors';
import type { OutputPoolStats } from './output-pool';

export type FloatArray = Float32Array | Float64Array;
/** x, out, dy: float arrays, or raw 16-bit values (Uint16Array) with the call's `dtype`. */
export type TensorArray = FloatArray | Uint16Array;

export type SimdLevelName = 'scalar' | 'avx2' | 'avx512' | 'neon';

/** Fields every op call has. */
export interface CallBase {
  /** The user-facing function, for messages ("BatchNorm2d.forwardAsync"). */
  fn: string;
  x: TensorArray;
  n: number;
  c: number;
  s: number;
  channelsLast: boolean;
  /** Present for 16-bit storage: the format of the Uint16Arrays x, out and dy (parameters and
   * statistics are then Float32Array). Absent for float arrays. */
  dtype?: 'bfloat16' | 'float16';
}

/** The fused activation of a forward: y = relu(BN(x)), or relu(BN(x) + residual) when a residual
 * (x's dtype, length and layout; out may be that very array) is given. null or absent: none. */
export interface FusedActivation {
  activation?: 'relu' | null;
  residual?: TensorArray | null;
}

/** Backward through a forward's fused ReLU: y is that forward's output (the mask: dy where y > 0;
 * out may be y itself); residualGrad receives dL/dresidual (its own memory), with a residual. */
export interface BackwardActivation {
  activation?: 'relu' | null;
  y?: TensorArray | null;
  residualGrad?: TensorArray | null;
}

/** Training forward: batch statistics, normalize, affine, save stats, update running stats. */
export interface ForwardTrainingCall extends CallBase, FusedActivation {
  /** y; may be x itself (in place). */
  out: TensorArray;
  weight: FloatArray | null;
  bias: FloatArray | null;
  saveMean: FloatArray;
  saveInvstd: FloatArray;
  batchMean: Float64Array;
  batchInvstd: Float64Array;
  /** Updated in place when given (both or neither). */
  runningMean: FloatArray | null;
  runningVar: FloatArray | null;
  eps: number;
  /** Factor of this batch in the running statistics (momentum, or 1 / numBatchesTracked). */
  momentum: number;
}

/** Inference forward with given statistics: y = (x - mean) * invstd(var, eps) * weight + bias. */
export interface ForwardInferenceCall extends CallBase, FusedActivation {
  out: TensorArray;
  weight: FloatArray | null;
  bias: FloatArray | null;
  runningMean: FloatArray;
  runningVar: FloatArray;
  eps: number;
}

/** Backward. Training: mean and invstd are the forward's batch statistics. Evaluation: mean is the
 * running mean (widened) and the core computes invstd from runningVar and eps. */
export interface BackwardCall extends CallBase, BackwardActivation {
  dy: TensorArray;
  /** dx; may be dy itself; null when only the parameter gradients are wanted. */
  out: TensorArray | null;
  weight: FloatArray | null;
  training: boolean;
  mean: Float64Array;
  invstd: Float64Array | null;
  runningVar: FloatArray | null;
  eps: number;
  /** Gradients are added to (accumulate) or written into these. */
  gradWeight: FloatArray | null;
  gradBias: FloatArray | null;
  accumulate: boolean;
}

/** Synchronized BN, one rank's pieces (native/core/sync_ops.h). Statistics are float64 [C]. */
export interface SyncMomentsCall extends CallBase {
  /** Outputs: Σx/m and Σ(x - mean)²/m per channel, m = n * s (the core's batch statistics, bit for bit). */
  mean: Float64Array;
  variance: Float64Array;
}
export interface SyncNormalizeCall extends CallBase {
  /** y; may be x itself. */
  out: FloatArray;
  weight: FloatArray | null;
  bias: FloatArray | null;
  /** The global mean and biased variance. */
  mean: Float64Array;
  variance: Float64Array;
  eps: number;
  /** Output: the core's invstd of (variance, eps), for backward. */
  invstd: Float64Array;
}
export interface SyncBackwardReduceCall extends CallBase {
  dy: FloatArray;
  mean: Float64Array;
  /** Outputs: Σdy and Σdy·(x - mean) per channel over this rank's values. */
  sumDy: Float64Array;
  sumDyXmu: Float64Array;
}
export interface SyncBackwardDxCall extends CallBase {
  dy: FloatArray;
  /** dx; may be dy itself. */
  out: FloatArray;
  weight: FloatArray | null;
  mean: Float64Array;
  invstd: Float64Array;
  /** The sums over every rank, and the global number of values per channel. */
  sumDy: Float64Array;
  sumDyXmu: Float64Array;
  count: number;
}

export interface ErrorClasses {
  TypeError: typeof BatchNormTypeError;
  RangeError: typeof BatchNormRangeError;
  Error: typeof BatchNormError;
}

export interface NativeBinding {
  /** Called once by the loader: the addon throws these classes from then on. */
  setErrorClasses(classes: ErrorClasses): void;

  forwardTraining(call: ForwardTrainingCall): void;
  forwardInference(call: ForwardInferenceCall): void;
  backward(call: BackwardCall): void;
  /** The same on libuv's thread pool. The arrays' buffers are marked untransferable. */
  forwardTrainingAsync(call: ForwardTrainingCall): Promise<void>;
  forwardInferenceAsync(call: ForwardInferenceCall): Promise<void>;
  backwardAsync(call: BackwardCall): Promise<void>;

  syncMoments(call: SyncMomentsCall): void;
  syncMomentsAsync(call: SyncMomentsCall): Promise<void>;
  syncNormalize(call: SyncNormalizeCall): void;
  syncNormalizeAsync(call: SyncNormalizeCall): Promise<void>;
  syncBackwardReduce(call: SyncBackwardReduceCall): void;
  syncBackwardReduceAsync(call: SyncBackwardReduceCall): Promise<void>;
  syncBackwardDx(call: SyncBackwardDxCall): void;
  syncBackwardDxAsync(call: SyncBackwardDxCall): Promise<void>;

  /** Kernel level in use. */
  simdLevel(): SimdLevelName;
  /** Best level this CPU, OS and build support (before BATCHNORM_SIMD lowers it). */
  detectedSimdLevel(): SimdLevelName;
  supportedSimdLevels(): SimdLevelName[];
  /** Process-wide: switch kernels. */
  setSimdLevel(level: SimdLevelName): void;

  /** Process-wide compute-thread budget shared by all calls, sync and async. */
  setNumThreads(n: number): void;
  getNumThreads(): number;
  /** Compute threads in use now, and the most in use at once since the last reset. */
  threadCounters(reset: boolean): { inUse: number; peak: number };

  /** Linux: madvise(MADV_HUGEPAGE) on the whole 2 MiB pages inside a new output; true if taken. */
  adviseHugePages(a: TensorArray): boolean;

  /** An ArrayBuffer of exactly `bytes` from this environment's output pool, or undefined (too
   * small, pool off or full): native/addon/output_pool.h. */
  takeOutput(bytes: number): ArrayBuffer | undefined;
  /** A zero-filled external ArrayBuffer of 1 B to 1 MiB, or undefined: native/addon/small_arrays.h. */
  takeSmall(bytes: number): ArrayBuffer | undefined;
  setOutputPool(maxBytes: number, idleSeconds: number): void;
  outputPoolStats(): OutputPoolStats;
  /** Frees the idle blocks once the pool served nothing for its idle time; true while it holds blocks. */
  outputPoolTrim(): boolean;

  /** l2Bytes, l3Bytes, l3Sharing, cacheSource: the caches the core sizes its pieces from (read at load). */
  buildInfo(): { arch: string; openmp?: number; compiler: string; defaultNumThreads: number; l2Bytes: number; l3Bytes: number; l3Sharing: number; cacheSource: string };

  /** float32 <-> 16-bit storage (raw bits in a Uint16Array): src and out of equal length, no shared memory. */
  convertF32ToBF16(call: ConvertCall<Float32Array, Uint16Array>): void;
  convertBF16ToF32(call: ConvertCall<Uint16Array, Float32Array>): void;
  convertF32ToF16(call: ConvertCall<Float32Array, Uint16Array>): void;
  convertF16ToF32(call: ConvertCall<Uint16Array, Float32Array>): void;
}

export interface ConvertCall<Src, Out> {
  fn: string;
  src: Src;
  out: Out;
}
