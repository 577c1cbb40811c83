// Optional peers, measured in the same run where they are installed (they are not dependencies of
// node-batchnorm): onnxruntime-node (BatchNormalization, inference and training_mode=1) and
// TensorFlow.js on its WebAssembly backend (tf.moments + tf.batchNorm, tf.grads for backward).
// Installed into bench/peers by
//   ONNXRUNTIME_NODE_INSTALL=skip npm install --prefix bench/peers
// or found elsewhere with --peers DIR / BN_BENCH_PEERS=DIR (a folder holding node_modules/).
import { createRequire } from 'module';
import * as fs from 'fs';
import * as path from 'path';
import { batchNormModel } from './onnx';
import { fillRandom, ShapeData } from './ours';
import type { Result } from './results';
import { timeAsync, timeSync, TimingOptions } from './timing';

/* eslint-disable @typescript-eslint/no-explicit-any */
type Any = any;

export interface Peers {
  dir: string;
  ort?: { mod: Any; version: string };
  tf?: { tf: Any; version: string; threads: number; simd: boolean };
  notes: string[];
}

export function defaultPeersDir(): string {
  return path.resolve(__dirname, '..', '..', 'bench', 'peers');
}

export async function loadPeers(dir: string): Promise<Peers> {
  const root = path.basename(dir) === 'node_modules' ? path.dirname(dir) : dir;
  const peers: Peers = { dir: root, notes: [] };
  if (!fs.existsSync(path.join(root, 'node_modules'))) {
    peers.notes.push(`peers skipped: not installed (no ${path.join(root, 'node_modules')}; install with ONNXRUNTIME_NODE_INSTALL=skip npm install --prefix bench/peers)`);
    return peers;
  }
  const req = createRequire(path.join(root, 'noop.js'));
  try {
    const mod = req('onnxruntime-node');
    const version = (req('onnxruntime-node/package.json') as { version: string }).version;
    peers.ort = { mod, version };
  } catch (e) {
    peers.notes.push(`onnxruntime-node skipped: not installed (${(e as Error).message.split('\n')[0]})`);
  }
  try {
    // The union package registers the gradients tf.grads needs (tfjs-core alone does not).
    const tf = req('@tensorflow/tfjs');
    const wasm = req('@tensorflow/tfjs-backend-wasm');
    const quiet = console.warn;
    console.warn = () => {};
    try {
      if (!(await tf.setBackend('wasm'))) throw new Error('tf.setBackend("wasm") failed');
      await tf.ready();
    } finally {
      console.warn = quiet;
    }
    const threads = typeof wasm.getThreadsCount === 'function' ? wasm.getThreadsCount() : 1;
    peers.tf = { tf, version: wasm.version_wasm ?? tf.version_core, threads, simd: !!tf.env().getBool('WASM_HAS_SIMD_SUPPORT') };
  } catch (e) {
    peers.notes.push(`@tensorflow/tfjs-backend-wasm skipped: not installed or not loadable (${(e as Error).message.split('\n')[0]})`);
  }
  return peers;
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** onnxruntime-node on the same NCHW data, intraOpNumThreads = threads. */
export async function benchOrt(p: Peers, d: ShapeData, threads: number, t: TimingOptions, ourTrainY: Float32Array, notes: string[]): Promise<Result[]> {
  const ort = p.ort!.mod;
  const { dims, c, total, label } = d.shape;
  const out: Result[] = [];
  const T = (data: Float32Array, shape: number[]) => new ort.Tensor('float32', data, shape);
  const feeds = {
    X: T(d.x, dims), scale: T(d.weight, [c]), B: T(d.bias, [c]),
    input_mean: T(d.runningMean.slice(), [c]), input_var: T(d.runningVar.slice(), [c]),
  };
  const opts = { intraOpNumThreads: threads, interOpNumThreads: 1, executionMode: 'sequential', graphOptimizationLevel: 'all' };
  for (const training of [true, false]) {
    const op = training ? 'fwd-train' : 'fwd-infer';
    let session: Any;
    try {
      session = await ort.InferenceSession.create(batchNormModel(dims, training), opts);
    } catch (e) {
      notes.push(`onnxruntime-node ${op} ${label}: session failed: ${(e as Error).message.split('\n')[0]}`);
      continue;
    }
    const y = new Float32Array(total);
    const fetches: Record<string, Any> = { Y: T(y, dims) };
    if (training) {
      fetches.running_mean = T(new Float32Array(c), [c]);
      fetches.running_var = T(new Float32Array(c), [c]);
    }
    try {
      await session.run(feeds, fetches);
      if (training) {
        // Same computation as ours (ONNX momentum 0.9 = PyTorch's 0.1): outputs agree.
        const diff = maxAbsDiff(y, ourTrainY);
        if (!(diff < 1e-3)) notes.push(`onnxruntime-node fwd-train ${label}: output differs from node-batchnorm's by ${diff}`);
      }
      for (const output of ['provided', 'fresh'] as const) {
        const timing = await timeAsync(() => (output === 'provided' ? session.run(feeds, fetches) : session.run(feeds)), t);
        out.push({ shape: label, impl: 'onnxruntime-node', op, output, threads, bytes: 8 * total, timing });
      }
    } catch (e) {
      notes.push(`onnxruntime-node ${op} ${label}: run failed: ${(e as Error).message.split('\n')[0]}`);
    }
    await session.release?.();
  }
  return out;
}

/**
 * TensorFlow.js (WASM backend) on channels-last data of the same size: tf.batchNorm normalizes
 * over the last axis, so NHWC is its natural (fastest) layout. Outputs are always new tensors.
 */
export function benchTf(p: Peers, d: ShapeData, t: TimingOptions, notes: string[]): Result[] {
  const tf = p.tf!.tf;
  const { dims, c, total, label } = d.shape;
  const nhwc = [dims[0], ...dims.slice(2), c];
  const axes = nhwc.slice(0, -1).map((_, i) => i);
  const out: Result[] = [];
  const threads = p.tf!.threads;
  const keep: Any[] = [];
  try {
    const x = tf.tensor(fillRandom(new Float32Array(total), 1, 4, 0.5), nhwc);
    const dy = tf.tensor(fillRandom(new Float32Array(total), 2, 2, 0), nhwc);
    const gamma = tf.tensor1d(d.weight);
    const beta = tf.tensor1d(d.bias);
    let rm = tf.zeros([c]);
    let rv = tf.ones([c]);
    keep.push(x, dy, gamma, beta);
    const train = (xx: Any, g: Any, b: Any) => {
      const m = tf.moments(xx, axes);
      return { y: tf.batchNorm(xx, m.mean, m.variance, b, g, 1e-5), m };
    };
    const fwdTrain = () => {
      const [y, nrm, nrv] = tf.tidy(() => {
        const r = train(x, gamma, beta);
        const m = d.shape.n * d.shape.s;
        return [r.y, rm.mul(0.9).add(r.m.mean.mul(0.1)), rv.mul(0.9).add(r.m.variance.mul(0.1 * m / (m - 1)))];
      });
      y.dispose();
      rm.dispose(); rv.dispose();
      rm = nrm; rv = nrv;
    };
    const fwdInfer = () => { tf.tidy(() => tf.batchNorm(x, rm, rv, beta, gamma, 1e-5)).dispose(); };
    const gradFn = tf.grads((xx: Any, g: Any, b: Any) => train(xx, g, b).y);
    const backward = () => { for (const g of gradFn([x, gamma, beta], dy)) g.dispose(); };
    for (const [op, fn] of [['fwd-train', fwdTrain], ['fwd-infer', fwdInfer], ['backward', backward]] as const) {
      try {
        const timing = timeSync(fn, t);
        out.push({ shape: label, impl: 'tfjs-wasm', op, output: 'fresh', threads, bytes: (op === 'backward' ? 12 : 8) * total, timing, note: 'NHWC' });
      } catch (e) {
        notes.push(`tfjs-wasm ${op} ${label}: failed: ${(e as Error).message.split('\n')[0]}`);
      }
    }
    keep.push(rm, rv);
  } catch (e) {
    notes.push(`tfjs-wasm ${label}: failed: ${(e as Error).message.split('\n')[0]}`);
  } finally {
    for (const k of keep) k.dispose();
  }
  return out;
}
