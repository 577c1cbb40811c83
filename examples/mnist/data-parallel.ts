// The BN network of the demo trained data-parallel on N worker threads (`npm run demo -- --workers N`):
// every worker holds the same network with SyncBatchNorm1d in place of BatchNorm1d, takes its
// slice of each global mini-batch (the same batches, in the same order, as the single-process
// run), and after each backward the gradients are all-reduced (group.allReduce), so every worker
// takes the same SGD step the single process takes on the whole batch. BN's statistics are those
// of the whole mini-batch (SyncBatchNorm), not of the worker's slice.
import * as path from 'path';
import { isMainThread, parentPort, Worker, workerData } from 'worker_threads';
import { BatchNorm1d, setNumThreads, SyncBatchNorm, ThreadGroup, ThreadGroupHandle } from '../../lib';
import { Dataset, IMAGE_SIZE, loadFashionMnist, loadMnistPackage, NUM_CLASSES } from './data';
import { BatchStream, evaluate, makeInitialWeights } from './experiment';
import { Mlp, softmaxCrossEntropy } from './network';
import { Rng } from './rng';

export interface DataParallelOptions {
  workers: number;
  data: 'mnist' | 'fashion';
  dataDir: string;
  steps: number;
  lr: number;
  seed: number;
  batchSize: number;
  hidden: number[];
  initStd: number;
  /** Steps after which rank 0 evaluates on the test set (0 = before training). */
  evalSteps: number[];
  /** BN kernels' compute threads per worker. */
  threads: number;
}

export interface DataParallelResult {
  checkpoints: Array<{ step: number; accuracy: number }>;
  /** Rank 0's parameters at the end: dense weights (transposed) and biases, BN weight and bias. */
  params: Float32Array[];
  /** Every worker's parameters equal rank 0's, bitwise. */
  identicalOnEveryRank: boolean;
  seconds: number;
}

interface RankInput {
  dataParallelRank: number;
  handle: ThreadGroupHandle;
  o: DataParallelOptions;
}

function loadData(o: Pick<DataParallelOptions, 'data' | 'dataDir'>): Dataset {
  return o.data === 'fashion' ? loadFashionMnist(o.dataDir) : loadMnistPackage();
}

/** Every trainable array of the network, in a fixed order. */
export function parametersOf(net: Mlp): Float32Array[] {
  const out: Float32Array[] = [];
  for (const d of net.dense) {
    out.push(d.wt);
    if (d.bias) out.push(d.bias);
  }
  for (const b of net.bns) out.push(b.weight as Float32Array, b.bias as Float32Array);
  return out;
}

function gradientsOf(net: Mlp): Float32Array[] {
  const out: Float32Array[] = [];
  for (const d of net.dense) {
    out.push(d.gradWt);
    if (d.gradBias) out.push(d.gradBias);
  }
  for (const b of net.bns) out.push(b.gradWeight as Float32Array, b.gradBias as Float32Array);
  return out;
}

/** One worker: its slice [lo, hi) of every global batch. */
async function rankMain(input: RankInput): Promise<void> {
  const { o, dataParallelRank: rank } = input;
  setNumThreads(o.threads);
  const group = ThreadGroup.join(input.handle, rank);
  const data = loadData(o);
  const net = new Mlp(makeInitialWeights(o.seed, o.hidden, o.initStd), true);
  for (let l = 0; l < net.bns.length; l++) net.bns[l] = SyncBatchNorm.from(net.bns[l], group) as unknown as BatchNorm1d;
  const stream = new BatchStream(data, o.batchSize, new Rng((o.seed ^ 0x5bd1e995) >>> 0));
  const lo = Math.floor((rank * o.batchSize) / o.workers);
  const hi = Math.floor(((rank + 1) * o.batchSize) / o.workers);
  const rows = hi - lo;
  const evalSet = new Set(o.evalSteps);
  const checkpoints: DataParallelResult['checkpoints'] = [];
  const checkpoint = (step: number) => {
    // Evaluation mode: SyncBatchNorm uses the running statistics and communicates nothing.
    if (rank === 0) checkpoints.push({ step, accuracy: evaluate(net, data.testX, data.testY, data.nTest).accuracy });
  };
  if (evalSet.has(0)) checkpoint(0);
  const grads = gradientsOf(net);
  const flat = new Float32Array(grads.reduce((n, g) => n + g.length, 0));
  const t0 = Date.now();
  for (let step = 1; step <= o.steps; step++) {
    stream.next();
    const x = stream.x.subarray(lo * IMAGE_SIZE, hi * IMAGE_SIZE);
    net.setTraining(true);
    const logits = net.forward(x, rows);
    const dlogits = net.dlogits(rows);
    softmaxCrossEntropy(logits, stream.y, lo, rows, NUM_CLASSES, dlogits);
    // The loss is the mean over the global batch: this slice's mean, weighted by its share.
    for (let k = 0; k < rows * NUM_CLASSES; k++) dlogits[k] *= rows / o.batchSize;
    net.backward(x, rows);
    // One all-reduce of every gradient at once (fewer collectives than one per array).
    let at = 0;
    for (const g of grads) { flat.set(g, at); at += g.length; }
    group.allReduce(flat);
    at = 0;
    for (const g of grads) { g.set(flat.subarray(at, at + g.length)); at += g.length; }
    net.step(o.lr);
    if (evalSet.has(step)) checkpoint(step);
  }
  const params = parametersOf(net);
  // Every rank took the same steps: compare with rank 0, bitwise (an all-gather of the bits).
  let identical = true;
  for (const p of params) {
    const gathered = group.allGather(Float64Array.from(p));
    for (const other of gathered) for (let k = 0; k < p.length; k++) if (other[k] !== gathered[0][k]) identical = false;
  }
  parentPort?.postMessage({ rank, checkpoints, params: rank === 0 ? params : [], identical, seconds: (Date.now() - t0) / 1000 });
}

/** Trains on o.workers worker threads; resolves with rank 0's checkpoints and parameters. */
export function runDataParallel(o: DataParallelOptions): Promise<DataParallelResult> {
  const handle = ThreadGroup.create(o.workers, { timeoutMs: 120000, capacity: 1 << 17 });
  return new Promise((resolve, reject) => {
    const results: Array<{ rank: number; checkpoints: DataParallelResult['checkpoints']; params: Float32Array[]; identical: boolean; seconds: number }> = [];
    let left = o.workers;
    for (let r = 0; r < o.workers; r++) {
      const w = new Worker(path.join(__dirname, 'data-parallel.js'), { workerData: { dataParallelRank: r, handle, o } satisfies RankInput });
      w.on('message', (m) => { results[m.rank] = m; });
      w.on('error', reject);
      w.on('exit', (code) => {
        if (code !== 0 || !results[r]) {
          reject(new Error(`data-parallel worker ${r} exited with code ${code}`));
          return;
        }
        if (--left === 0) {
          resolve({
            checkpoints: results[0].checkpoints, params: results[0].params,
            identicalOnEveryRank: results.every((x) => x.identical), seconds: Math.max(...results.map((x) => x.seconds)),
          });
        }
      });
    }
  });
}

if (!isMainThread && (workerData as RankInput | undefined)?.handle && typeof (workerData as RankInput).dataParallelRank === 'number') {
  rankMain(workerData as RankInput).catch((e) => {
    process.stderr.write(`data-parallel worker: ${(e as Error).stack ?? String(e)}\n`);
    process.exitCode = 1;
  });
}
