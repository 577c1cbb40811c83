// The typed contract of what the native addon (batchnorm.node) exports. The TypeScript facade
// (lib/) validates every argument before calling these; the addon checks them again and throws
// TypeError / RangeError with a `.code` rather than crash.
//
// Shapes are passed as (n, c, s): batch, channels, product of the spatial dimensions (1 for
// [N, C]); memory is [N, C, S] or, with channelsLast, [N, S, C]. `FloatArray` arguments of one
// call must all have x's dtype, except the float64
// statistics (batchMean, batchInvstd, mean, invstd of backward), which are always Float64Array.

export type FloatArray = Float32Array | Float64Array;

export type SimdLevelName = 'scalar' | 'avx2' | 'avx512' | 'neon';

export interface NativeBinding {
  /** Training forward: batch statistics, normalize, affine, save stats, update running stats. */
  forwardTraining(
    x: FloatArray, y: FloatArray, n: number, c: number, s: number,
    weight: FloatArray | null, bias: FloatArray | null,
    saveMean: FloatArray | null, saveInvstd: FloatArray | null,
    batchMean: Float64Array | null, batchInvstd: Float64Array | null,
    runningMean: FloatArray | null, runningVar: FloatArray | null,
    eps: number, momentumFactor: number, channelsLast?: boolean,
  ): void;
  /** Inference forward: y = (x - mean) / sqrt(var + eps) * weight + bias. y may be x. */
  forwardInference(
    x: FloatArray, y: FloatArray, n: number, c: number, s: number,
    weight: FloatArray | null, bias: FloatArray | null, mean: FloatArray, variance: FloatArray,
    eps: number, channelsLast?: boolean,
  ): void;
  /** Backward; gradients are added to (accumulate) or written into gradWeight/gradBias. */
  backward(
    x: FloatArray, dy: FloatArray, dx: FloatArray | null, n: number, c: number, s: number,
    weight: FloatArray | null, mean: Float64Array, invstd: Float64Array | null,
    gradWeight: FloatArray | null, gradBias: FloatArray | null,
    useBatchStats: boolean, accumulate: boolean, channelsLast?: boolean,
    /** Evaluation mode, with invstd = null: the core computes invstd from these. */
    runningVar?: FloatArray | null, eps?: number,
  ): void;

  forwardTrainingAsync(...args: Parameters<NativeBinding['forwardTraining']>): Promise<void>;
  forwardInferenceAsync(...args: Parameters<NativeBinding['forwardInference']>): Promise<void>;
  backwardAsync(...args: Parameters<NativeBinding['backward']>): Promise<void>;

  /** Kernel level in use. */
  simdLevel(): SimdLevelName;
  /** Best level this CPU, OS and build support (before BATCHNORM_SIMD lowers it). */
  detectedSimdLevel(): SimdLevelName;
  supportedSimdLevels(): SimdLevelName[];
  /** Process-wide: switch kernels (RangeError with code ERR_BN_UNSUPPORTED if not supported). */
  setSimdLevel(level: string): void;

  /** Process-wide compute-thread budget shared by all calls, sync and async. */
  setNumThreads(n: number): void;
  getNumThreads(): number;
  /** Threads in use now and the peak since the last reset (tests of the budget). */
  threadStats(reset?: boolean): { inUse: number; peak: number };

  /** Benchmark baseline (bench/): copies src into dst[0, src.length) with `threads` OpenMP threads; streaming = non-temporal stores + sfence. Returns the kernel used, e.g. 'avx512-stream'. */
  benchCopy(src: Float32Array, dst: Float32Array, streaming: boolean, threads: number): string;
  /** ISA of the copy kernels and whether streaming stores exist on this architecture. */
  benchCopyInfo(): { isa: 'avx512' | 'avx2' | 'sse2' | 'generic'; streaming: boolean };

  /** Linux: madvise(MADV_HUGEPAGE) on the whole 2 MiB pages inside a's memory (a new output about to be written); true if the kernel took the advice. Contents unchanged. (Prebuilds older than it lack it: the facade checks.) */
  adviseHugePages(a: FloatArray): boolean;

  buildInfo(): { arch: string; openmp?: number; compiler: string; defaultNumThreads: number };
}
