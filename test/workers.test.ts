// worker_threads: several workers load the addon and compute at once, their results are right,
// and they (and the process) exit cleanly — including while OpenMP threads exist (-z nodelete).
import { expect } from 'chai';
import { spawnSync } from 'child_process';
import * as path from 'path';
import { Worker } from 'worker_threads';
import * as bn from '../lib';
import { Rng, randn, product } from './helpers/random';
import * as ref from './helpers/reference';
import type { WorkerResult, WorkerTask } from './helpers/worker-compute';

const LIB = path.resolve(__dirname, '..', 'lib');
const SCRIPT = path.join(__dirname, 'helpers', 'worker-compute.js');

function task(seed: number, shape: number[], steps: number, useAsync: boolean): WorkerTask {
  const rng = new Rng(seed);
  const total = product(shape);
  return {
    shape,
    xs: Array.from({ length: steps }, () => randn(rng, total, 'float32', rng.normal(), 1 + rng.uniform()) as Float32Array),
    dys: Array.from({ length: steps }, () => randn(rng, total, 'float32') as Float32Array),
    weight: randn(rng, shape[1], 'float32') as Float32Array,
    bias: randn(rng, shape[1], 'float32') as Float32Array,
    useAsync,
  };
}

function runWorker(t: WorkerTask): Promise<{ result: WorkerResult; exitCode: number }> {
  return new Promise((resolve, reject) => {
    const w = new Worker(SCRIPT, { workerData: t });
    let result: (WorkerResult & { error?: { message: string } }) | undefined;
    w.on('message', (m) => { result = m; });
    w.on('error', reject);
    w.on('exit', (exitCode) => {
      if (!result) reject(new Error(`worker exited with code ${exitCode} without a result`));
      else if (result.error) reject(new Error(`worker failed: ${result.error.message}`));
      else resolve({ result, exitCode });
    });
  });
}

function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: number, what: string): void {
  expect(actual.length, `${what} length`).to.equal(expected.length);
  for (let i = 0; i < actual.length; i++) {
    const d = Math.abs(actual[i] - expected[i]);
    if (!(d <= tol * (1 + Math.abs(expected[i])))) expect.fail(`${what}[${i}] = ${actual[i]}, expected ${expected[i]} (tol ${tol})`);
  }
}

/** The same steps on the main thread, synchronously. */
function mainThread(t: WorkerTask): WorkerResult {
  const L = new bn.BatchNorm(t.shape[1]);
  (L.weight as Float32Array).set(t.weight);
  (L.bias as Float32Array).set(t.bias);
  const ys: Float32Array[] = [];
  const dxs: Float32Array[] = [];
  t.xs.forEach((x, i) => {
    ys.push(L.forward(x, t.shape) as Float32Array);
    dxs.push(L.backward(t.dys[i]) as Float32Array);
  });
  return {
    ys, dxs, gradWeight: L.gradWeight as Float32Array, gradBias: L.gradBias as Float32Array,
    runningMean: L.runningMean as Float32Array, runningVar: L.runningVar as Float32Array,
    numBatchesTracked: L.numBatchesTracked, threadId: 0,
  };
}

describe('worker_threads', function () {
  this.timeout(60000);

  it('4 workers load the library, compute at once, match the main thread and exit with code 0', async function () {
    // Large enough for the parallel paths (>= 2^15 elements); two workers sync, two async.
    const shapes = [[4, 6, 40, 40], [8, 3, 33, 37], [6, 5, 1000], [2, 7, 9, 11, 13]];
    const tasks = shapes.map((s, i) => task(100 + i, s, 3, i % 2 === 1));
    const outcomes = await Promise.all(tasks.map(runWorker));
    const ids = new Set<number>();
    outcomes.forEach(({ result, exitCode }, i) => {
      const what = `worker ${i} [${tasks[i].shape.join(', ')}]`;
      expect(exitCode, what).to.equal(0);
      ids.add(result.threadId);
      const want = mainThread(tasks[i]);
      // The number of threads a call gets depends on what else runs, and so does the summation
      // order: compare with a float32 tolerance, not bitwise.
      for (let k = 0; k < 3; k++) {
        expectClose(result.ys[k], want.ys[k], 1e-4, `${what} y${k}`);
        expectClose(result.dxs[k], want.dxs[k], 1e-4, `${what} dx${k}`);
      }
      expectClose(result.gradWeight, want.gradWeight, 1e-3, `${what} gradWeight`);
      expectClose(result.gradBias, want.gradBias, 1e-3, `${what} gradBias`);
      expectClose(result.runningMean, want.runningMean, 1e-5, `${what} runningMean`);
      expectClose(result.runningVar, want.runningVar, 1e-5, `${what} runningVar`);
      expect(result.numBatchesTracked, what).to.equal(3);
      // And against the independent float64 reference, for the first step.
      const d = ref.dimsOf(tasks[i].shape);
      const r = ref.forwardTraining(tasks[i].xs[0], d, tasks[i].weight, tasks[i].bias, 1e-5);
      expectClose(result.ys[0], r.y, 1e-4, `${what} y0 vs reference`);
      const g = ref.backward(tasks[i].xs[0], tasks[i].dys[0], d, tasks[i].weight, r.mean, r.invstd, true);
      expectClose(result.dxs[0], g.dx, 1e-3, `${what} dx0 vs reference`);
    });
    expect(ids.size, 'distinct worker threads').to.equal(4);
  });

  it('the main thread computes while workers do', async function () {
    const t = task(200, [8, 4, 64, 64], 2, true);
    const pending = [runWorker(t), runWorker(task(201, [8, 4, 64, 64], 2, false))];
    const mine = mainThread(t);
    const [a] = await Promise.all(pending);
    expectClose(a.result.ys[1], mine.ys[1], 1e-4, 'y1');
    expectClose(a.result.gradWeight, mine.gradWeight, 1e-3, 'gradWeight');
  });

  function runChild(script: string): ReturnType<typeof spawnSync> {
    return spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 30000 });
  }

  it('a process whose 2 workers computed with 2 OpenMP threads exits with status 0, 3 times', function () {
    // The workers' OpenMP threads outlive them; unloading the addon under them would crash at exit.
    const script = `
      const { Worker } = require('worker_threads');
      const code = \`
        const bn = require(${JSON.stringify(LIB)});
        bn.setNumThreads(2);
        const shape = [8, 4, 64, 64]; const n = shape.reduce((a, b) => a * b);
        const x = new Float32Array(n).map((_, i) => Math.sin(i));
        const L = new bn.BatchNorm2d(4);
        for (let k = 0; k < 5; k++) { L.forward(x, shape); L.backward(x); }
        require('worker_threads').parentPort.postMessage(L.numBatchesTracked);
      \`;
      let done = 0;
      for (let i = 0; i < 2; i++) {
        const w = new Worker(code, { eval: true });
        w.on('message', (m) => { if (m !== 5) { console.error('bad result', m); process.exitCode = 3; } });
        w.on('error', (e) => { console.error(e); process.exitCode = 4; });
        w.on('exit', (c) => { if (c !== 0) process.exitCode = 5; if (++done === 2) process.stdout.write('ok'); });
      }`;
    for (let run = 0; run < 3; run++) {
      const r = runChild(script);
      expect(r.signal, `run ${run}: killed by a signal; stderr: ${r.stderr}`).to.equal(null);
      expect(r.status, `run ${run}: stderr: ${r.stderr}`).to.equal(0);
      expect(r.stdout, `run ${run}`).to.equal('ok');
    }
  });

  it('terminating a worker while its async call runs does not crash the process', function () {
    const script = `
      const { Worker } = require('worker_threads');
      const code = \`
        const bn = require(${JSON.stringify(LIB)});
        const shape = [16, 8, 128, 128]; const n = shape.reduce((a, b) => a * b);
        const x = new Float32Array(n).fill(1); x[0] = 3;
        const L = new bn.BatchNorm2d(8);
        const go = () => { L.forwardAsync(x, shape); L.forwardAsync(x, shape); L.forwardAsync(x, shape); };
        go();
        // After the first job reached the pool (the queue starts it in a microtask).
        setImmediate(() => require('worker_threads').parentPort.postMessage('started'));
      \`;
      (async () => {
        for (let i = 0; i < 3; i++) {
          const w = new Worker(code, { eval: true });
          await new Promise((r) => w.once('message', r));
          await w.terminate();
        }
        // The addon still works in the main thread afterwards.
        const bn = require(${JSON.stringify(LIB)});
        const y = bn.batchNormTraining(new Float32Array([1, 2, 3, 4]), [4, 1]).y;
        process.stdout.write(Array.from(y, (v) => v.toFixed(3)).join(','));
      })();`;
    const r = runChild(script);
    expect(r.signal, `killed by a signal; stderr: ${r.stderr}`).to.equal(null);
    expect(r.status, r.stderr as string).to.equal(0);
    expect(r.stdout).to.equal('-1.342,-0.447,0.447,1.342');
  });
});
