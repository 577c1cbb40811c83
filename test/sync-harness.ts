// Runs sync scenarios (test/sync-rank.ts) and probes (test/sync-probe.ts) on worker threads or
// child processes, and checks a scenario's ranks against one BatchNorm on the concatenated batch.
import { expect } from 'chai';
import { ChildProcess, fork } from 'child_process';
import * as net from 'net';
import * as path from 'path';
import { Worker } from 'worker_threads';
import * as bn from '../lib';
import * as reference from './helpers/reference';
import { assertClose } from './helpers/reference';
import type { ProbeEvent, ProbeTask } from './sync-probe';
import { initialParams, RankResult, rankSlice, Scenario, stepData } from './sync-rank';

const RANK_SCRIPT = path.join(__dirname, 'sync-rank.js');
const PROBE_SCRIPT = path.join(__dirname, 'sync-probe.js');

export interface ProbeResult {
  rank: number;
  events: ProbeEvent[];
  exitCode?: number | null;
}

// Starts n ranks and waits for their results; past limitMs it rejects and kills the ranks still
// running, so that a hung rank fails its test instead of keeping mocha alive after the suite.
function collect<R extends { rank: number }>(n: number, start: (rank: number, done: (r: R) => void, fail: (e: Error) => void) => ChildProcess | Worker, limitMs: number): Promise<R[]> {
  return new Promise((resolve, reject) => {
    const out: R[] = [];
    const ranks: Array<ChildProcess | Worker> = [];
    let left = n;
    const stopAll = () => {
      for (const r of ranks) {
        if (r instanceof Worker) void r.terminate();
        else if (r.exitCode === null && r.signalCode === null) r.kill('SIGKILL');
      }
    };
    const timer = setTimeout(() => {
      stopAll();
      reject(new Error(`sync harness: ranks still running after ${limitMs} ms (a hang); killed`));
    }, limitMs);
    for (let r = 0; r < n; r++) {
      ranks.push(start(r, (res) => {
        out[res.rank] = res;
        if (--left === 0) {
          clearTimeout(timer);
          resolve(out);
        }
      }, (e) => {
        clearTimeout(timer);
        stopAll();
        reject(e);
      }));
    }
  });
}

function inWorker<R extends { rank: number }>(script: string, data: (rank: number) => object, rank: number, done: (r: R) => void, fail: (e: Error) => void): Worker {
  const w = new Worker(script, { workerData: data(rank) });
  let got: R | undefined;
  w.on('message', (m: R) => { got = m; });
  w.on('error', fail);
  w.on('exit', (code) => (got ? done(got) : fail(new Error(`worker of rank ${rank} exited with code ${code} and no result`))));
  return w;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

export function threadScenario(sc: Scenario, timeoutMs = 10000): Promise<RankResult[]> {
  const handle = bn.ThreadGroup.create(sc.batches.length, { timeoutMs });
  return collect<RankResult>(sc.batches.length, (rank, done, fail) => {
    return inWorker(RANK_SCRIPT, (r) => ({ syncRank: true, handle, rank: r, scenario: sc }), rank, done, fail);
  }, timeoutMs + 20000);
}

export function threadProbe(tasks: ProbeTask[], timeoutMs: number, capacity?: number): Promise<ProbeResult[]> {
  const handle = bn.ThreadGroup.create(tasks.length, capacity ? { timeoutMs, capacity } : { timeoutMs });
  return collect<ProbeResult>(tasks.length, (rank, done, fail) => {
    return inWorker(PROBE_SCRIPT, (r) => ({ syncProbe: true, handle, rank: r, task: tasks[r] }), rank, done, fail);
  }, timeoutMs + 20000);
}

export interface ProcessOptions {
  initMethod?: string;
  /** Per rank: a command prefix (e.g. ['ip', 'netns', 'exec', 'ns1']) and MASTER_ADDR. */
  wrap?: (rank: number) => string[];
  masterAddr?: string;
  timeoutMs?: number;
  extraEnv?: Record<string, string>;
  onSpawn?: (rank: number, child: ChildProcess) => void;
}

function spawnRank<R extends { rank: number }>(script: string, rank: number, worldSize: number, port: number, env: Record<string, string>, o: ProcessOptions, done: (r: R) => void, fail: (e: Error) => void): ChildProcess {
  const wrap = o.wrap ? o.wrap(rank) : [];
  const fullEnv = {
    ...process.env, ...env, ...(o.extraEnv ?? {}),
    MASTER_ADDR: o.masterAddr ?? '127.0.0.1', MASTER_PORT: String(port), RANK: String(rank), WORLD_SIZE: String(worldSize),
    BN_SYNC_TIMEOUT_MS: String(o.timeoutMs ?? 20000),
  };
  const child = wrap.length
    ? fork(script, [], { serialization: 'advanced', env: fullEnv, execPath: wrap[0], execArgv: [...wrap.slice(1), process.execPath] })
    : fork(script, [], { serialization: 'advanced', env: fullEnv });
  o.onSpawn?.(rank, child);
  let got: R | undefined;
  child.on('message', (m: R) => { got = m; });
  child.on('error', fail);
  // 'close', not 'exit': 'exit' can come before the last IPC message has been read.
  child.on('close', (code, signal) => {
    if (got) done(got);
    else done({ rank, events: [{ what: 'exit', code: signal ?? String(code) }], exitCode: code } as unknown as R);
  });
  return child;
}

export async function processScenario(sc: Scenario, o: ProcessOptions = {}): Promise<RankResult[]> {
  const port = await freePort();
  const env = { BN_SYNC_SCENARIO: JSON.stringify(sc), ...(o.initMethod ? { BN_SYNC_INIT: o.initMethod } : {}) };
  return collect<RankResult>(sc.batches.length, (rank, done, fail) => spawnRank(RANK_SCRIPT, rank, sc.batches.length, port, env, o, done, fail), (o.timeoutMs ?? 20000) + 30000);
}

export async function processProbe(tasks: ProbeTask[], o: ProcessOptions = {}): Promise<ProbeResult[]> {
  const port = await freePort();
  const json = JSON.stringify(tasks, (_k, v) => (v instanceof Float64Array ? { f64: Array.from(v) } : v instanceof Float32Array ? { f32: Array.from(v) } : v));
  const perRank = JSON.parse(json) as object[];
  return collect<ProbeResult>(tasks.length, (rank, done, fail) => spawnRank(PROBE_SCRIPT, rank, tasks.length, port, { BN_SYNC_PROBE: JSON.stringify(perRank[rank]) }, o, done, fail), (o.timeoutMs ?? 20000) + 30000);
}

function bits(a: ArrayLike<number>): number[] {
  return Array.from(a);
}

/** Every rank's results against one BatchNorm (same kind) on the whole batch. */
export function checkScenario(sc: Scenario, results: RankResult[]): void {
  for (const r of results) if (r.error) throw new Error(`rank ${r.rank} failed: ${r.error.code ?? ''} ${r.error.message}`);
  const Kind = { plain: bn.BatchNorm, '1d': bn.BatchNorm1d, '2d': bn.BatchNorm2d, '3d': bn.BatchNorm3d }[sc.kind];
  const ref = new Kind(sc.C, { dtype: sc.dtype, momentum: sc.momentum, affine: sc.affine ?? true, trackRunningStats: sc.trackRunningStats ?? true });
  const p = initialParams(sc);
  ref.weight?.set(p.weight);
  ref.bias?.set(p.bias);
  const N = sc.batches.reduce((a, b) => a + b, 0);
  const shape = [N, sc.C, ...sc.spatial];
  const exact = sc.batches.length === 1;
  const tol = sc.dtype === 'float32' ? 2e-5 : 1e-11;
  const S = sc.spatial.reduce((a, b) => a * b, 1);
  // NCHW order of a tensor stored channels-last (for the float64 reference, which reads NCHW).
  const nchw = (a: ArrayLike<number>): Float64Array => {
    const o = new Float64Array(a.length);
    for (let b = 0; b < N; b++) for (let c = 0; c < sc.C; c++) for (let j = 0; j < S; j++) {
      o[(b * sc.C + c) * S + j] = sc.channelsLast ? a[(b * S + j) * sc.C + c] : a[(b * sc.C + c) * S + j];
    }
    return o;
  };
  stepData(sc).forEach((d, t) => {
    const y = ref.forward(d.x, shape, { channelsLast: sc.channelsLast });
    const dx = ref.backward(d.dy);
    // The ranks' outputs put together, against the independent float64 reference too.
    const per = sc.C * S;
    const yAll = new Float64Array(N * per);
    let at = 0;
    for (const r of results) {
      yAll.set(r.ys[t], at);
      at += r.ys[t].length;
    }
    const affine = sc.affine ?? true;
    const want = reference.forwardTraining(nchw(d.x), { n: N, c: sc.C, s: S }, affine ? p.weight : null, affine ? p.bias : null, 1e-5);
    assertClose(`step ${t}: all ranks' y against the float64 reference`, nchw(yAll), want.y, sc.dtype === 'float32' ? 2e-5 : 1e-11);
    for (const r of results) {
      const ys = rankSlice(sc, r.rank, y);
      const dxs = rankSlice(sc, r.rank, dx);
      expect(r.ys[t].length, `rank ${r.rank} y length`).to.equal(ys.length);
      if (exact) {
        expect(bits(r.ys[t]), `step ${t}: y bitwise (world size 1)`).to.deep.equal(bits(ys));
        expect(bits(r.dxs[t]), `step ${t}: dx bitwise (world size 1)`).to.deep.equal(bits(dxs));
      } else {
        assertClose(`step ${t} rank ${r.rank} y`, r.ys[t], ys, tol);
        assertClose(`step ${t} rank ${r.rank} dx`, r.dxs[t], dxs, tol);
      }
    }
  });
  // Running statistics: every rank the same bits, and those of the whole batch.
  const tracked = sc.trackRunningStats ?? true;
  const affine = sc.affine ?? true;
  for (const r of results) {
    expect(r.runningMean === null, 'running statistics kept as asked').to.equal(!tracked);
    expect(r.gradWeight === null, 'parameters kept as asked').to.equal(!affine);
    if (tracked) {
      expect(bits(r.runningMean as Float32Array), `rank ${r.rank} runningMean = rank 0's, bitwise`).to.deep.equal(bits(results[0].runningMean as Float32Array));
      expect(bits(r.runningVar as Float32Array), `rank ${r.rank} runningVar = rank 0's, bitwise`).to.deep.equal(bits(results[0].runningVar as Float32Array));
    }
    expect(r.numBatchesTracked).to.equal(tracked ? sc.steps : 0);
  }
  const r0 = results[0];
  if (exact) {
    if (tracked) {
      expect(bits(r0.runningMean as Float32Array)).to.deep.equal(bits(ref.runningMean as Float32Array));
      expect(bits(r0.runningVar as Float32Array)).to.deep.equal(bits(ref.runningVar as Float32Array));
    }
    if (affine) {
      expect(bits(r0.gradWeight as Float32Array)).to.deep.equal(bits(ref.gradWeight as Float32Array));
      expect(bits(r0.gradBias as Float32Array)).to.deep.equal(bits(ref.gradBias as Float32Array));
    }
    return;
  }
  if (tracked) {
    assertClose('runningMean', r0.runningMean as Float32Array, ref.runningMean as Float32Array, tol);
    assertClose('runningVar', r0.runningVar as Float32Array, ref.runningVar as Float32Array, tol);
  }
  if (affine) {
    const gw = new Float64Array(sc.C);
    const gb = new Float64Array(sc.C);
    for (const r of results) for (let c = 0; c < sc.C; c++) {
      gw[c] += (r.gradWeight as Float32Array)[c];
      gb[c] += (r.gradBias as Float32Array)[c];
    }
    // Each rank's share is rounded to the dtype before the sum: a few roundings of the whole.
    assertClose('Σ ranks gradWeight', gw, ref.gradWeight as Float32Array, tol * sc.batches.length);
    assertClose('Σ ranks gradBias', gb, ref.gradBias as Float32Array, tol * sc.batches.length);
  }
}
