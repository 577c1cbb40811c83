// node-batchnorm: batch normalization (Ioffe & Szegedy, 2015) as a native Node.js addon.
import { BatchNormRangeError, BatchNormTypeError, describe } from './errors';
import { bindingInfo, native } from './load';
import { checkOptionalBoolean, readOptions } from './validate';
import type { SimdLevelName } from './binding';

export { BatchNorm, BatchNorm1d, BatchNorm2d, BatchNorm3d } from './batchnorm';
export type { BatchNormOptions, BatchNormStateDict, ForwardOptions, LoadStateDictOptions, SaveSafetensorsOptions } from './batchnorm';
export {
  batchNormTraining, batchNormInference, batchNormBackward,
  batchNormTrainingAsync, batchNormInferenceAsync, batchNormBackwardAsync,
} from './functional';
export type { TrainingOptions, TrainingResult, InferenceOptions, BackwardOptions, BackwardResult } from './functional';
export type { BackwardCallOptions } from './batchnorm';
export { computeScaleShift } from './fold';
export type { ConvFoldOptions, FoldedLayer, ScaleShift } from './fold';
export { parseSafetensors, serializeSafetensors, readSafetensorsFile, writeSafetensorsFile } from './safetensors';
export type { SafetensorsFile, Tensor, TensorDType, TensorData, TensorInput } from './safetensors';
export { Checkpoint, loadCheckpoint } from './checkpoint';
export { toBFloat16, fromBFloat16, toFloat16, fromFloat16 } from './convert';
export type { ConvertOut } from './convert';
export { BatchNormError, BatchNormRangeError, BatchNormTypeError } from './errors';
export type { BatchNormErrorCode } from './errors';
export type { DType, FloatArray, FloatDType, HalfDType, SameKind, TensorArray } from './arrays';
export type { SimdLevelName } from './binding';
export { bindingInfo } from './load';
export { outputPoolStats, setOutputPool } from './output-pool';
export type { OutputPoolStats } from './output-pool';

/** The kernel level in use: 'avx512' | 'avx2' | 'neon' | 'scalar'. */
export function simdLevel(): SimdLevelName {
  return native().simdLevel();
}

/** The best level this CPU, OS and build support (BATCHNORM_SIMD can only lower it). */
export function detectedSimdLevel(): SimdLevelName {
  return native().detectedSimdLevel();
}

/** Every level this CPU and build can run, lowest first. */
export function supportedSimdLevels(): SimdLevelName[] {
  return native().supportedSimdLevels();
}

/** Switches the kernels for the whole process (tests, benchmarks). */
export function setSimdLevel(level: SimdLevelName): void {
  if (typeof level !== 'string') {
    throw new BatchNormTypeError('ERR_BN_INVALID_ARG_TYPE', `setSimdLevel: level must be a string, received ${describe(level)}`);
  }
  const supported = supportedSimdLevels();
  if (!supported.includes(level)) {
    throw new BatchNormRangeError('ERR_BN_UNSUPPORTED', `setSimdLevel: level must be one of ${supported.join(', ')} on this machine, received ${describe(level)}`);
  }
  native().setSimdLevel(level);
}

/** Sets the process-wide compute-thread budget shared by every call, sync and async. */
export function setNumThreads(n: number): void {
  if (typeof n !== 'number') {
    throw new BatchNormTypeError('ERR_BN_INVALID_ARG_TYPE', `setNumThreads: n must be an integer in [1, 4096], received ${describe(n)}`);
  }
  if (!Number.isInteger(n) || n < 1 || n > 4096) {
    throw new BatchNormRangeError('ERR_BN_OUT_OF_RANGE', `setNumThreads: n must be an integer in [1, 4096], received ${describe(n)}`);
  }
  native().setNumThreads(n);
}

/** Compute threads in use now by every call of this process, and the most in use at once since
 * the last reset (monitoring, like sharp.counters()). */
export function threadCounters(options: { reset?: boolean } = {}): { inUse: number; peak: number } {
  const o = readOptions('threadCounters', options, ['reset'] as const);
  return native().threadCounters(checkOptionalBoolean('threadCounters', 'reset', o.reset, false));
}

/** The compute-thread budget (default: OMP_NUM_THREADS if set, else the number of CPUs). */
export function getNumThreads(): number {
  return native().getNumThreads();
}

/** Build and load facts: where the addon came from, its architecture, OpenMP version, SIMD level. */
export function runtimeInfo(): { binding: { file: string; kind: string }; arch: string; openmp?: number; compiler: string; simdLevel: SimdLevelName; numThreads: number; caches: { l2Bytes: number; l3Bytes: number; l3Sharing: number; source: string } } {
  const b = native();
  const info = b.buildInfo();
  // The caches the core sizes its pieces from (sysfs first, sysconf as fallback; read at load).
  const caches = { l2Bytes: info.l2Bytes, l3Bytes: info.l3Bytes, l3Sharing: info.l3Sharing, source: info.cacheSource };
  return { binding: bindingInfo(), arch: info.arch, openmp: info.openmp, compiler: info.compiler, simdLevel: b.simdLevel(), numThreads: b.getNumThreads(), caches };
}
export { SyncGroup, ThreadGroup, GlooGroup, initProcessGroup, SyncBatchNorm, SyncBatchNorm1d, SyncBatchNorm2d, SyncBatchNorm3d } from './sync';
export type { SyncBackend, ThreadGroupHandle, ThreadGroupOptions, SyncBatchNormOptions, ProcessGroupOptions } from './sync';
