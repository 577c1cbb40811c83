// One rank of a synchronized-BN scenario (test/sync*.test.ts), run in a worker thread (the group
// comes in workerData) or in a child process (a Gloo group from PyTorch's environment variables).
// Every rank generates the same whole batch from the seed and takes its own slice of samples.
import { isMainThread, parentPort, workerData } from 'worker_threads';
import * as bn from '../lib';
import { Rng, randn, product } from './helpers/random';

export interface Scenario {
  kind: 'plain' | '1d' | '2d' | '3d';
  C: number;
  spatial: number[];
  dtype: 'float32' | 'float64';
  channelsLast: boolean;
  /** Samples per rank (index = rank), 0 allowed. */
  batches: number[];
  seed: number;
  steps: number;
  momentum: number | null;
  useAsync: boolean;
  /** Per-channel mean offset of x (a large one shows cancellation). */
  offset: number;
  scale: number;
  /** BatchNorm options (default true). */
  affine?: boolean;
  trackRunningStats?: boolean;
}

export interface StepData {
  x: Float32Array | Float64Array;
  dy: Float32Array | Float64Array;
}

export interface RankResult {
  rank: number;
  ys: Array<Float32Array | Float64Array>;
  dxs: Array<Float32Array | Float64Array>;
  runningMean: Float32Array | Float64Array | null;
  runningVar: Float32Array | Float64Array | null;
  gradWeight: Float32Array | Float64Array | null;
  gradBias: Float32Array | Float64Array | null;
  numBatchesTracked: number;
  error?: { code?: string; message: string };
}

export function layerShape(sc: Scenario, n: number): number[] {
  return [n, sc.C, ...sc.spatial];
}

/** The whole batch of every step (identical on every rank and in the test's reference). */
export function stepData(sc: Scenario): StepData[] {
  const rng = new Rng(sc.seed);
  const N = sc.batches.reduce((a, b) => a + b, 0);
  const total = product(layerShape(sc, N));
  const out: StepData[] = [];
  for (let t = 0; t < sc.steps; ++t) {
    out.push({ x: randn(rng, total, sc.dtype, sc.offset, sc.scale), dy: randn(rng, total, sc.dtype) });
  }
  return out;
}

/** Weight and bias every layer starts from. */
export function initialParams(sc: Scenario): { weight: Float64Array; bias: Float64Array } {
  const rng = new Rng(sc.seed + 1000);
  return { weight: Float64Array.from(randn(rng, sc.C, 'float64', 1, 0.5)), bias: Float64Array.from(randn(rng, sc.C, 'float64')) };
}

export function rankSlice(sc: Scenario, rank: number, a: Float32Array | Float64Array): Float32Array | Float64Array {
  const per = sc.C * product(sc.spatial);
  const lo = sc.batches.slice(0, rank).reduce((p, b) => p + b, 0) * per;
  return a.subarray(lo, lo + sc.batches[rank] * per);
}

function layerClass(kind: Scenario['kind']): typeof bn.SyncBatchNorm {
  return { plain: bn.SyncBatchNorm, '1d': bn.SyncBatchNorm1d, '2d': bn.SyncBatchNorm2d, '3d': bn.SyncBatchNorm3d }[kind];
}

export async function runRank(sc: Scenario, group: bn.SyncGroup): Promise<RankResult> {
  const Layer = layerClass(sc.kind);
  const layer = new Layer(sc.C, { group, dtype: sc.dtype, momentum: sc.momentum, affine: sc.affine ?? true, trackRunningStats: sc.trackRunningStats ?? true });
  const p = initialParams(sc);
  layer.weight?.set(p.weight);
  layer.bias?.set(p.bias);
  const shape = layerShape(sc, sc.batches[group.rank]);
  const ys: Array<Float32Array | Float64Array> = [];
  const dxs: Array<Float32Array | Float64Array> = [];
  for (const d of stepData(sc)) {
    const x = rankSlice(sc, group.rank, d.x).slice();
    const dy = rankSlice(sc, group.rank, d.dy).slice();
    const opts = { channelsLast: sc.channelsLast };
    const y = sc.useAsync ? await layer.forwardAsync(x, shape, opts) : layer.forward(x, shape, opts);
    const dx = sc.useAsync ? await layer.backwardAsync(dy) : layer.backward(dy);
    ys.push(y);
    dxs.push(dx);
  }
  return {
    rank: group.rank, ys, dxs,
    runningMean: layer.runningMean, runningVar: layer.runningVar, gradWeight: layer.gradWeight, gradBias: layer.gradBias,
    numBatchesTracked: layer.numBatchesTracked,
  };
}

function errorOf(e: unknown): { code?: string; message: string } {
  return { code: (e as { code?: string }).code, message: (e as Error).message };
}

async function main(): Promise<void> {
  if (!isMainThread && workerData?.syncRank) {
    const { handle, rank, scenario } = workerData as { handle: bn.ThreadGroupHandle; rank: number; scenario: Scenario };
    try {
      const group = bn.ThreadGroup.join(handle, rank);
      parentPort?.postMessage(await runRank(scenario, group));
    } catch (e) {
      parentPort?.postMessage({ rank, error: errorOf(e) });
    }
    return;
  }
  if (isMainThread && process.env.BN_SYNC_SCENARIO && process.send) {
    const scenario = JSON.parse(process.env.BN_SYNC_SCENARIO) as Scenario;
    let group: bn.SyncGroup | undefined;
    try {
      group = await bn.initProcessGroup({ backend: 'gloo', initMethod: process.env.BN_SYNC_INIT, timeoutMs: Number(process.env.BN_SYNC_TIMEOUT_MS ?? 20000) });
      const r = await runRank(scenario, group);
      process.send(r, () => { group?.destroy(); process.exit(0); });
    } catch (e) {
      process.send({ rank: Number(process.env.RANK), error: errorOf(e) }, () => process.exit(0));
    }
  }
}

void main();
