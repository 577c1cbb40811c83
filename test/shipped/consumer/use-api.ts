// A strict TypeScript consumer of the packed package. scripts/types-check.sh copies this file into
// a fresh project as use-api.mts (ESM) and use-api.cts (CommonJS) under "moduleResolution":
// "nodenext", and as use-api.ts under "bundler"; each is compiled with skipLibCheck: false, with
// and without @types/node. Never run, only type-checked (the smoke tests in test/smoke/ run the
// package). Excluded from the repository's own build (tsconfig.json): 'node-batchnorm' resolves
// only where the tarball is installed.
import {
  BatchNorm, BatchNorm2d, BatchNormError, BatchNormRangeError, BatchNormTypeError,
  batchNormBackward, batchNormInference, batchNormInferenceAsync, batchNormTraining, bindingInfo, computeScaleShift,
  detectedSimdLevel, getNumThreads, parseSafetensors, runtimeInfo, serializeSafetensors, setNumThreads, setSimdLevel,
  simdLevel, supportedSimdLevels, toBFloat16, fromBFloat16, toFloat16, fromFloat16, loadCheckpoint, Checkpoint,
} from 'node-batchnorm';
import type {
  BackwardResult, BatchNormErrorCode, BatchNormOptions, BatchNormStateDict, DType, FloatArray, SafetensorsFile,
  ScaleShift, SimdLevelName, TrainingOptions, TrainingResult, TensorArray, TensorDType,
} from 'node-batchnorm';
import * as api from 'node-batchnorm';

// ---- Type-level assertions: each fails to compile if a type is `any` or not what the API says ----
// Not the usual `0 extends 1 & T`: a type from a declaration that failed to resolve (skipLibCheck
// true) is an error type, and a conditional whose extends clause holds one evaluates to any, which
// would satisfy every Expect below. A check type that is any or an error type gives both branches.
type IsAny<T> = boolean extends (T extends never ? true : false) ? true : false;
type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends (<T>() => T extends B ? 1 : 2) ? true : false;
type Expect<T extends true> = T;
/** true if F is a function whose result or any parameter is `any`. */
type LeaksAny<F> = F extends (...args: infer P) => infer R
  ? IsAny<R> extends true ? true : true extends { [K in keyof P]: IsAny<P[K]> }[number] ? true : false
  : IsAny<F>;

type Api = typeof api;
/** The names of the package's exports whose type is, or whose signature uses, `any`: must be none. */
type AnyExports = { [K in keyof Api]: LeaksAny<Api[K]> extends true ? K : never }[keyof Api];

export type Checks = [
  Expect<Equal<AnyExports, never>>,
  Expect<Equal<SimdLevelName, 'scalar' | 'avx2' | 'avx512' | 'neon'>>,
  Expect<Equal<ReturnType<typeof simdLevel>, SimdLevelName>>,
  Expect<Equal<ReturnType<typeof detectedSimdLevel>, SimdLevelName>>,
  Expect<Equal<ReturnType<typeof supportedSimdLevels>, SimdLevelName[]>>,
  Expect<Equal<Parameters<typeof setSimdLevel>[0], SimdLevelName>>,
  Expect<Equal<FloatArray, Float32Array | Float64Array>>,
  Expect<Equal<DType, 'float32' | 'float64' | 'bfloat16' | 'float16'>>,
  Expect<Equal<TensorArray, Float32Array | Float64Array | Uint16Array>>,
  Expect<Equal<ReturnType<typeof runtimeInfo>['simdLevel'], SimdLevelName>>,
  Expect<Equal<ReturnType<typeof bindingInfo>['skipped'], string[]>>,
  Expect<Equal<ReturnType<typeof batchNormTraining>, TrainingResult>>,
  Expect<Equal<TrainingResult['batchMean'], Float64Array>>,
  // Results are the kind of array given: a Float32Array for a Float32Array, a Uint16Array (16-bit
  // storage) for a Uint16Array, any of them for the union.
  Expect<Equal<ReturnType<typeof batchNormInference<Float32Array>>, Float32Array>>,
  Expect<Equal<ReturnType<typeof batchNormInference<Uint16Array>>, Uint16Array>>,
  Expect<Equal<ReturnType<typeof batchNormInference<FloatArray>>, FloatArray>>,
  Expect<Equal<ReturnType<typeof batchNormInferenceAsync<Float64Array>>, Promise<Float64Array>>>,
  Expect<Equal<ReturnType<typeof batchNormTraining<Uint16Array>>['y'], Uint16Array>>,
  Expect<Equal<ReturnType<typeof batchNormTraining<Uint16Array>>['saveMean'], FloatArray>>,
  Expect<Equal<ReturnType<typeof batchNormBackward>, BackwardResult>>,
  Expect<Equal<ReturnType<typeof computeScaleShift>, ScaleShift>>,
  Expect<Equal<ReturnType<typeof parseSafetensors>, SafetensorsFile>>,
  Expect<Equal<ReturnType<BatchNorm2d['forward']>, TensorArray>>,
  Expect<Equal<ReturnType<BatchNorm2d['stateDict']>, BatchNormStateDict>>,
  Expect<Equal<BatchNormError['code'], BatchNormErrorCode>>,
  Expect<Equal<IsAny<BatchNormOptions>, false>>,
  Expect<Equal<IsAny<TrainingOptions>, false>>,
  Expect<Equal<ReturnType<typeof toBFloat16>, Uint16Array>>,
  Expect<Equal<ReturnType<typeof fromBFloat16>, Float32Array>>,
  Expect<Equal<ReturnType<typeof toFloat16>, Uint16Array>>,
  Expect<Equal<ReturnType<typeof fromFloat16>, Float32Array>>,
  Expect<Equal<ReturnType<typeof loadCheckpoint>, Checkpoint>>,
  Expect<Equal<ReturnType<Checkpoint['prefixes']>, string[]>>,
  Expect<Equal<TensorDType, 'F32' | 'F64' | 'I64' | 'BF16' | 'F16'>>,
];

// ---- Ordinary use, as a strict program writes it ----
export function useApi(): number {
  const level: SimdLevelName = simdLevel();
  const levels: readonly SimdLevelName[] = supportedSimdLevels();
  if (levels.includes('avx2') && detectedSimdLevel() !== 'scalar') setSimdLevel('avx2');
  // @ts-expect-error: not a SIMD level (compiles only while SimdLevelName is a union of literals, not any)
  setSimdLevel('sse9');
  // @ts-expect-error: a SimdLevelName is not a number
  const wrong: number = level;

  setNumThreads(2);
  const threads: number = getNumThreads();
  const x = new Float32Array(2 * 3 * 4);
  const bn: BatchNorm = new BatchNorm2d(3, { momentum: 0.1, eps: 1e-5 });
  const y: FloatArray = bn.train().forward(x, [2, 3, 2, 2]);
  const dx: FloatArray = bn.backward(new Float32Array(y.length));
  const half = new BatchNorm2d(3, { dtype: 'bfloat16' });
  const yh: Uint16Array = half.forward(new Uint16Array(12), [1, 3, 2, 2]);
  // @ts-expect-error: 16-bit storage in, 16-bit storage out (not a FloatArray)
  const notFloat: FloatArray = half.forward(new Uint16Array(12), [1, 3, 2, 2]);
  const t: TrainingResult = batchNormTraining(x, [2, 3, 4], { momentum: 0.1 });
  const b = batchNormBackward(x, y, [2, 3, 4], { training: true, mean: t.batchMean, invstd: t.batchInvstd });
  const file = parseSafetensors(serializeSafetensors({ w: { shape: [3], data: new Float32Array(3) }, h: { dtype: 'BF16', shape: [3], data: toBFloat16(x.subarray(0, 3)) } }));
  const widened: Float32Array = fromFloat16(toFloat16(x), { out: new Float32Array(x.length) });
  // @ts-expect-error: toBFloat16 takes a Float32Array only
  toBFloat16(new Float64Array(2));
  try {
    setNumThreads(0);
  } catch (e) {
    if (e instanceof BatchNormRangeError || e instanceof BatchNormTypeError) {
      const code: BatchNormErrorCode = e.code;
      return code.length;
    }
  }
  const info = runtimeInfo();
  return threads + dx.length + yh.length + notFloat.length + b.dx.length + Object.keys(file.tensors).length + info.numThreads + wrong + widened.length + fromBFloat16(new Uint16Array(1)).length;
}
