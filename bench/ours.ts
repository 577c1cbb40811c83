// node-batchnorm's cases through the public functional API (what users call: validation, N-API,
// kernels), the copy baselines through the benchmark-only addon bench_copy.node, and the
// plain-JavaScript allocation baseline.
import * as bn from '../lib';
import { native } from '../lib/load';
import { benchCopyBinding } from './copy-binding';
import type { Result } from './results';
import type { BenchShape } from './shapes';
import { timePerCall, timePerCallAsync, timeSync, TimingOptions } from './timing';

export interface CopyKernel {
  /** e.g. "avx512 (bench_copy.node)" */
  name: string;
  streaming: boolean;
  run(src: Float32Array, dst: Float32Array, streaming: boolean, threads: number): void;
  /** Reads a (and b, when given) as a pass that only reads does. */
  read(a: Float32Array, b: Float32Array | null, threads: number): void;
}

/** The copy kernels of bench_copy.node (bench/native/bench_copy_kernels.h). */
export function copyKernel(): CopyKernel {
  const b = benchCopyBinding();
  const info = b.benchCopyInfo();
  return { name: `${info.isa} (bench_copy.node)`, streaming: info.streaming, run: (s, d, st, t) => { b.benchCopy(s, d, st, t); },
    read: (a, c, t) => { b.benchRead(a, c, t); } };
}

/** Deterministic pseudo-random fill in [offset - scale/2, offset + scale/2). */
export function fillRandom(a: Float32Array, seed: number, scale: number, offset: number): Float32Array {
  let s = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < a.length; i++) {
    s ^= s << 13; s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5; s >>>= 0;
    a[i] = offset + scale * (s / 4294967296 - 0.5);
  }
  return a;
}

/** The buffers of one shape, allocated and touched once. */
export class ShapeData {
  readonly x: Float32Array;
  readonly y: Float32Array;
  readonly dy: Float32Array;
  readonly dx: Float32Array;
  readonly weight: Float32Array;
  readonly bias: Float32Array;
  readonly runningMean: Float32Array;
  readonly runningVar: Float32Array;
  readonly ones: Float32Array;
  readonly zeros: Float32Array;
  readonly gradWeight: Float32Array;
  readonly gradBias: Float32Array;
  readonly batchMean: Float64Array;
  readonly batchInvstd: Float64Array;
  /** copy buffers: 1.5 * total floats (the backward's 12 bytes per element) */
  readonly copySrc: Float32Array;
  readonly copyDst: Float32Array;

  constructor(readonly shape: BenchShape) {
    const { total, c } = shape;
    this.x = fillRandom(new Float32Array(total), 1, 4, 0.5);
    this.dy = fillRandom(new Float32Array(total), 2, 2, 0);
    this.y = new Float32Array(total).fill(0);
    this.dx = new Float32Array(total).fill(0);
    this.weight = fillRandom(new Float32Array(c), 3, 1, 1);
    this.bias = fillRandom(new Float32Array(c), 4, 1, 0);
    this.runningMean = new Float32Array(c);
    this.runningVar = new Float32Array(c).fill(1);
    this.ones = new Float32Array(c).fill(1);
    this.zeros = new Float32Array(c);
    this.gradWeight = new Float32Array(c);
    this.gradBias = new Float32Array(c);
    this.batchMean = new Float64Array(c);
    this.batchInvstd = new Float64Array(c);
    const copyLen = total + Math.floor(total / 2);
    this.copySrc = fillRandom(new Float32Array(copyLen), 5, 1, 0);
    this.copyDst = new Float32Array(copyLen).fill(0);
    // Batch statistics for backward (as a training forward would leave them).
    const r = bn.batchNormTraining(this.x, shape.dims, { weight: this.weight, bias: this.bias, out: this.y });
    this.batchMean.set(r.batchMean);
    this.batchInvstd.set(r.batchInvstd);
  }
}

export type Op = 'fwd-train' | 'fwd-infer' | 'backward';

/** One call of an op: output 'provided' (into the shape's buffer), 'fresh' (a new array) or 'inplace' (inference only). */
export function opCall(d: ShapeData, op: Op, output: 'provided' | 'fresh' | 'inplace'): () => void {
  const dims = d.shape.dims;
  switch (op) {
    case 'fwd-train': {
      const o: bn.TrainingOptions = { weight: d.weight, bias: d.bias, runningMean: d.runningMean, runningVar: d.runningVar, momentum: 0.1 };
      if (output === 'provided') o.out = d.y;
      return () => { bn.batchNormTraining(d.x, dims, o); };
    }
    case 'fwd-infer': {
      if (output === 'inplace') {
        // On y (a scratch buffer), with identity statistics so the values stay put over the reps.
        const o: bn.InferenceOptions = { weight: d.ones, bias: d.zeros, runningMean: d.zeros, runningVar: d.ones, out: d.y };
        return () => { bn.batchNormInference(d.y, dims, o); };
      }
      const o: bn.InferenceOptions = { weight: d.weight, bias: d.bias, runningMean: d.bias, runningVar: d.weight };
      if (output === 'provided') o.out = d.y;
      return () => { bn.batchNormInference(d.x, dims, o); };
    }
    case 'backward': {
      const o: bn.BackwardOptions = {
        training: true, weight: d.weight, mean: d.batchMean, invstd: d.batchInvstd,
        gradWeight: d.gradWeight, gradBias: d.gradBias, accumulate: false,
      };
      if (output === 'provided') o.out = d.dx;
      return () => { bn.batchNormBackward(d.x, d.dy, dims, o); };
    }
  }
}

/** In-place inference gives bit for bit what the out-of-place call gives. */
export function checkInPlace(d: ShapeData): boolean {
  const o = { weight: d.weight, bias: d.bias, runningMean: d.bias, runningVar: d.weight };
  const ref = bn.batchNormInference(d.x, d.shape.dims, o);
  const buf = d.x.slice();
  const out = bn.batchNormInference(buf, d.shape.dims, { ...o, out: buf });
  if (out !== buf) return false;
  for (let i = 0; i < buf.length; i++) if (!Object.is(buf[i], ref[i])) return false;
  return true;
}

export function benchCopies(d: ShapeData, kernel: CopyKernel, threads: number, t: TimingOptions): Result[] {
  const out: Result[] = [];
  const { total } = d.shape;
  for (const fam of [8, 12] as const) {
    const n = fam === 8 ? total : total + Math.floor(total / 2);
    const src = d.copySrc.subarray(0, n);
    const dst = d.copyDst.subarray(0, n);
    for (const streaming of kernel.streaming ? [false, true] : [false]) {
      out.push({
        shape: d.shape.label, impl: 'copy', op: `copy${fam}-${streaming ? 'stream' : 'plain'}`, output: '-', threads,
        bytes: 8 * n, timing: timeSync(() => kernel.run(src, dst, streaming, threads), { ...t, seconds: t.seconds / 2 }),
      });
    }
  }
  return out;
}

export function benchOps(d: ShapeData, threads: number, t: TimingOptions): Result[] {
  bn.setNumThreads(threads);
  const out: Result[] = [];
  const label = d.shape.label;
  const cases: Array<[Op, 'provided' | 'fresh' | 'inplace']> = [
    ['fwd-train', 'provided'], ['fwd-infer', 'provided'], ['fwd-infer', 'inplace'], ['backward', 'provided'],
    ['fwd-train', 'fresh'], ['fwd-infer', 'fresh'], ['backward', 'fresh'],
  ];
  for (const [op, output] of cases) {
    const bytes = (op === 'backward' ? 12 : 8) * d.shape.total;
    out.push({ shape: label, impl: 'node-batchnorm', op, output, threads, bytes, timing: timeSync(opCall(d, op, output), t) });
  }
  return out;
}

/** Plain JavaScript: copying x into an existing array, and into a freshly allocated one. */
export function benchJsAlloc(d: ShapeData, t: TimingOptions): Result[] {
  const { x, y } = d;
  const n = d.shape.total;
  return [
    { shape: d.shape.label, impl: 'js', op: 'js-set', output: 'provided', threads: 1, bytes: 8 * n, timing: timeSync(() => { y.set(x); }, t) },
    { shape: d.shape.label, impl: 'js', op: 'js-alloc-set', output: 'fresh', threads: 1, bytes: 8 * n, timing: timeSync(() => { new Float32Array(n).set(x); }, t) },
  ];
}

/** Per-call overhead on a (1, 16, 1, 1) tensor, inference: facade and raw binding, sync and async. */
export async function benchTiny(threads: number, quick: boolean): Promise<Result[]> {
  bn.setNumThreads(threads);
  const dims = [1, 16, 1, 1];
  const x = fillRandom(new Float32Array(16), 7, 2, 0);
  const y = new Float32Array(16);
  const w = new Float32Array(16).fill(1);
  const z = new Float32Array(16);
  const o: bn.InferenceOptions = { weight: w, bias: z, runningMean: z, runningVar: w, out: y };
  const b = native();
  const t: TimingOptions = { seconds: quick ? 0.05 : 0.3, minReps: 5, warmupSeconds: quick ? 0.01 : 0.05 };
  const batch = 200;
  const raw = { fn: 'bench', x, out: y, n: 1, c: 16, s: 1, channelsLast: false, weight: w, bias: z, runningMean: z, runningVar: w, eps: 1e-5 };
  const r = (op: string, timing: Result['timing']): Result => ({ shape: '1x16x1x1', impl: 'node-batchnorm', op, output: 'provided', threads, bytes: 8 * 16, timing });
  return [
    r('tiny-infer-sync', timePerCall(() => { bn.batchNormInference(x, dims, o); }, batch, t)),
    r('tiny-infer-sync-raw', timePerCall(() => { b.forwardInference(raw); }, batch, t)),
    r('tiny-infer-async', await timePerCallAsync(() => bn.batchNormInferenceAsync(x, dims, o), batch, t)),
    r('tiny-infer-async-raw', await timePerCallAsync(() => b.forwardInferenceAsync(raw), batch, t)),
  ];
}

