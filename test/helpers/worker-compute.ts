// A worker_threads script for test/workers.test.ts (compiled to dist/test/helpers/worker-compute.js).
// It loads the library in the worker, runs training steps (forward + backward, sync or async) on
// the data it was given, and posts every result back.
import { parentPort, workerData } from 'worker_threads';
import * as path from 'path';

export interface WorkerTask {
  shape: number[];
  /** One input and one output gradient per step, float32. */
  xs: Float32Array[];
  dys: Float32Array[];
  weight: Float32Array;
  bias: Float32Array;
  useAsync: boolean;
  /** Set the process-wide thread budget from this worker before computing (optional). */
  numThreads?: number;
}

export interface WorkerResult {
  ys: Float32Array[];
  dxs: Float32Array[];
  gradWeight: Float32Array;
  gradBias: Float32Array;
  runningMean: Float32Array;
  runningVar: Float32Array;
  numBatchesTracked: number;
  threadId: number;
}

async function main(): Promise<void> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const bn = require(path.resolve(__dirname, '..', '..', 'lib')) as typeof import('../../lib');
  const { threadId } = await import('worker_threads');
  const t = workerData as WorkerTask;
  if (t.numThreads !== undefined) bn.setNumThreads(t.numThreads);
  const layer = new bn.BatchNorm(t.shape[1]);
  (layer.weight as Float32Array).set(t.weight);
  (layer.bias as Float32Array).set(t.bias);
  const ys: Float32Array[] = [];
  const dxs: Float32Array[] = [];
  for (let i = 0; i < t.xs.length; i++) {
    if (t.useAsync) {
      ys.push((await layer.forwardAsync(t.xs[i], t.shape)) as Float32Array);
      dxs.push((await layer.backwardAsync(t.dys[i])) as Float32Array);
    } else {
      ys.push(layer.forward(t.xs[i], t.shape) as Float32Array);
      dxs.push(layer.backward(t.dys[i]) as Float32Array);
    }
  }
  const result: WorkerResult = {
    ys,
    dxs,
    gradWeight: layer.gradWeight as Float32Array,
    gradBias: layer.gradBias as Float32Array,
    runningMean: layer.runningMean as Float32Array,
    runningVar: layer.runningVar as Float32Array,
    numBatchesTracked: layer.numBatchesTracked,
    threadId,
  };
  parentPort?.postMessage(result);
}

if (parentPort) {
  main().catch((e: Error & { code?: string }) => {
    parentPort?.postMessage({ error: { message: e.message, code: e.code, stack: e.stack } });
  });
}
