// Benchmark of synchronized batch norm: the latency of one SyncBatchNorm2d forward + backward
// (training) against the local BatchNorm2d on the same per-rank batch, on ResNet-50's BN layer
// shapes, with 2 ranks (--ranks N: N) as worker threads (ThreadGroup) and as processes (Gloo over
// 127.0.0.1). Each rank has one compute thread's worth of the budget (setNumThreads is per
// process: 1 in each rank process, N in the process of the N worker threads); local and
// synchronized calls alternate (A/B interleaved) for a fixed number of repetitions, the same on
// every rank (a collective needs every rank), each section started by all ranks at once (an
// untimed barrier). Reported: medians (of the slower rank), and the overhead (sync - local) in µs
// per layer.
//
//   npm run build:ts && node dist/bench/sync.js            # all shapes, threads and processes
//   node dist/bench/sync.js --quick                         # 2 small shapes, few repetitions
//   node dist/bench/sync.js --ranks 8 --append              # 8 ranks (a machine with 8 cores)
//   node dist/bench/sync.js --backend threads --reps 30 --batch 8 --write   # bench/sync-results.md
//   chrt -f 20 node dist/bench/sync.js --append   # real-time priority (root): without the other
//                                                 # tenants' scheduling delays; appended to it
import { ChildProcess, fork } from 'child_process';
import * as fs from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import { isMainThread, parentPort, Worker, workerData } from 'worker_threads';
import * as bn from '../lib';
import { native } from '../lib/load';

/** ResNet-50's batch-norm layers (channels, spatial size) at 224x224 input. */
const RESNET50 = [
  [64, 112], [64, 56], [256, 56], [128, 56], [128, 28], [512, 28], [256, 28], [256, 14], [1024, 14], [512, 14], [512, 7], [2048, 7],
];

interface Task {
  shapes: number[][]; // [n, c, h, w] per rank
  reps: number;
  warmup: number;
}

interface RankTiming {
  shape: string;
  local: number; // seconds, median
  sync: number;
  /** The four per-rank native pieces of the synchronized pass alone (no exchange, no wait). */
  kernels: number;
  /** The pass's two exchanges alone (all-gathers of 2C + 1 and 2C float64 values). */
  exchanges: number;
  localMin: number;
  syncMin: number;
}

function median(a: number[]): number {
  const t = a.slice().sort((x, y) => x - y);
  return t.length % 2 ? t[(t.length - 1) / 2] : 0.5 * (t[t.length / 2 - 1] + t[t.length / 2]);
}

function now(): number {
  return Number(process.hrtime.bigint()) / 1e9;
}

async function runRank(task: Task, group: bn.SyncGroup): Promise<RankTiming[]> {
  // The compute-thread budget is per process: 1 per rank process, worldSize for the process whose
  // worker threads are the ranks (one core per rank either way).
  bn.setNumThreads(group.backend === 'threads' ? group.worldSize : 1);
  const out: RankTiming[] = [];
  for (const dims of task.shapes) {
    const [n, c, h, w] = dims;
    const total = n * c * h * w;
    const x = new Float32Array(total).map((_, i) => Math.sin(i * 0.37 + group.rank));
    const dy = new Float32Array(total).map((_, i) => Math.cos(i * 0.11));
    const y = new Float32Array(total);
    const dx = new Float32Array(total);
    const local = new bn.BatchNorm2d(c);
    const sync = new bn.SyncBatchNorm2d(c, { group });
    const tl: number[] = [];
    const ts: number[] = [];
    const tk: number[] = [];
    const tx: number[] = [];
    const statsPayload = new Float64Array(2 * c + 1);
    const sumsPayload = new Float64Array(2 * c);
    const base = { fn: 'bench', x, n, c, s: h * w, channelsLast: false };
    const mean = new Float64Array(c);
    const localVar = new Float64Array(c);
    const variance = new Float64Array(c).fill(1);
    const invstd = new Float64Array(c);
    const g = new Float64Array(c);
    const p = new Float64Array(c);
    const kernels = () => {
      const b = native();
      b.syncMoments({ ...base, mean, variance: localVar });
      b.syncNormalize({ ...base, out: y, weight: local.weight, bias: local.bias, mean, variance, eps: 1e-5, invstd });
      b.syncBackwardReduce({ ...base, dy, mean, sumDy: g, sumDyXmu: p });
      b.syncBackwardDx({ ...base, dy, out: dx, weight: local.weight, mean, invstd, sumDy: g, sumDyXmu: p, count: 2 * n * h * w });
    };
    // Untimed: every rank starts each measured section at the same moment, so a section's time
    // is its own (for the synchronized pass: its compute, its exchanges, and the imbalance
    // between the ranks within it), not the wait for a rank still busy with the previous one.
    const barrier = () => group.allReduce(new Float64Array(1));
    const time = (f: () => void) => {
      barrier();
      const a = now();
      f();
      return now() - a;
    };
    for (let r = 0; r < task.warmup + task.reps; r++) {
      // Interleaved: local, the synchronized pass's kernels alone, then the synchronized pass
      // (forward + backward each)
      const l = time(() => { local.forward(x, dims, y); local.backward(dy, dx); });
      const k = time(kernels);
      const e = time(() => { sync.forward(x, dims, y); sync.backward(dy, dx); });
      const xc = time(() => { group.allGather(statsPayload); group.allGather(sumsPayload); });
      if (r >= task.warmup) {
        tl.push(l);
        tk.push(k);
        ts.push(e);
        tx.push(xc);
      }
    }
    out.push({ shape: dims.join('x'), local: median(tl), sync: median(ts), kernels: median(tk), exchanges: median(tx), localMin: Math.min(...tl), syncMin: Math.min(...ts) });
  }
  return out;
}

// ---- rank entry points (worker thread or child process) ----
async function rankMain(): Promise<boolean> {
  if (!isMainThread && workerData?.benchSync) {
    const { handle, rank, task } = workerData as { handle: bn.ThreadGroupHandle; rank: number; task: Task };
    parentPort?.postMessage({ rank, timings: await runRank(task, bn.ThreadGroup.join(handle, rank)) });
    return true;
  }
  if (isMainThread && process.env.BN_BENCH_SYNC && process.send) {
    const task = JSON.parse(process.env.BN_BENCH_SYNC) as Task;
    const group = await bn.initProcessGroup({ timeoutMs: 120000 });
    const timings = await runRank(task, group);
    process.send({ rank: group.rank, timings }, () => {
      group.destroy();
      process.exit(0);
    });
    return true;
  }
  return false;
}

// ---- driver ----
async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

function gather(n: number, start: (rank: number, done: (t: RankTiming[]) => void, fail: (e: Error) => void) => void): Promise<RankTiming[][]> {
  return new Promise((resolve, reject) => {
    const out: RankTiming[][] = [];
    let left = n;
    for (let r = 0; r < n; r++) start(r, (t) => { out[r] = t; if (--left === 0) resolve(out); }, reject);
  });
}

function viaThreads(task: Task, ranks: number): Promise<RankTiming[][]> {
  const handle = bn.ThreadGroup.create(ranks, { timeoutMs: 120000 });
  return gather(ranks, (rank, done, fail) => {
    const w = new Worker(__filename, { workerData: { benchSync: true, handle, rank, task } });
    w.on('message', (m: { timings: RankTiming[] }) => done(m.timings));
    w.on('error', fail);
  });
}

async function viaProcesses(task: Task, ranks: number): Promise<RankTiming[][]> {
  const port = await freePort();
  const children: ChildProcess[] = [];
  return gather(ranks, (rank, done, fail) => {
    const c = fork(__filename, [], {
      serialization: 'advanced',
      env: { ...process.env, BN_BENCH_SYNC: JSON.stringify(task), MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(port), RANK: String(rank), WORLD_SIZE: String(ranks), OMP_NUM_THREADS: '1' },
    });
    children.push(c);
    c.on('message', (m: { timings: RankTiming[] }) => done(m.timings));
    c.on('error', fail);
    c.on('exit', (code) => { if (code !== 0) fail(new Error(`rank ${rank} exited with ${code}`)); });
  });
}

/** This process's scheduling policy (Linux): 'SCHED_FIFO' when run under `chrt -f`, which keeps
 * the other tenants of a shared machine from delaying every wake-up of a waiting rank. */
function schedPolicy(): string {
  try {
    const m = /^policy\s*:\s*(\d+)/m.exec(fs.readFileSync('/proc/self/sched', 'utf8'));
    return ['SCHED_OTHER', 'SCHED_FIFO', 'SCHED_RR', 'SCHED_BATCH', '', 'SCHED_IDLE'][Number(m?.[1])] ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

function us(s: number): string {
  return (s * 1e6).toFixed(0);
}

function table(kind: string, per: RankTiming[][]): string[] {
  const lines = [
    `| ${kind} | per-rank shape | local fwd+bwd (µs) | sync kernels alone (µs) | 2 exchanges alone (µs) | sync fwd+bwd (µs) | overhead (µs) | sync / local |`,
    '|---|---|---:|---:|---:|---:|---:|---:|',
  ];
  per[0].forEach((t0, i) => {
    // The slower rank's medians: a synchronized call cannot finish before the slowest rank's.
    const local = Math.max(...per.map((r) => r[i].local));
    const sync = Math.max(...per.map((r) => r[i].sync));
    const kernels = Math.max(...per.map((r) => r[i].kernels));
    const exchanges = Math.max(...per.map((r) => r[i].exchanges));
    lines.push(`| ${kind} | ${t0.shape} | ${us(local)} | ${us(kernels)} | ${us(exchanges)} | ${us(sync)} | ${us(sync - local)} | ${(sync / local).toFixed(2)} |`);
  });
  return lines;
}

async function main(): Promise<void> {
  if (await rankMain()) return;
  const args = process.argv.slice(2);
  const opt = (name: string, fallback: string) => {
    const i = args.indexOf(`--${name}`);
    return i >= 0 ? args[i + 1] : fallback;
  };
  const quick = args.includes('--quick');
  const batch = Number(opt('batch', quick ? '2' : '8'));
  const reps = Number(opt('reps', quick ? '5' : '20'));
  const backend = opt('backend', 'both');
  const ranks = Number(opt('ranks', '2'));
  if (!Number.isInteger(ranks) || ranks < 2 || ranks > 64) throw new Error(`--ranks: an integer in [2, 64], received '${opt('ranks', '')}'`);
  const layers = quick ? [[64, 56], [2048, 7]] : RESNET50;
  const task: Task = { shapes: layers.map(([c, s]) => [batch, c, s, s]), reps, warmup: quick ? 1 : 3 };
  const lines: string[] = [];
  const policy = schedPolicy();
  const cmd = `${policy === 'SCHED_FIFO' ? 'chrt -f 20 ' : ''}node dist/bench/sync.js ${args.filter((a) => a !== '--write' && a !== '--append').join(' ')}`.trim();
  lines.push(`Command: \`${cmd}\`  `);
  lines.push(`Date: ${new Date().toISOString()}; ${os.cpus()[0]?.model ?? 'cpu'} x ${os.cpus().length}; Node ${process.version}; ` +
    `load average ${os.loadavg().map((v) => v.toFixed(1)).join(' ')} at the start; scheduling ${policy}; ` +
    `${ranks} ranks, 1 compute thread each (budget), float32 NCHW, per-rank batch ${batch} (global ${ranks * batch}), ${reps} repetitions (medians, slower rank).`);
  lines.push('');
  if (backend === 'both' || backend === 'threads') {
    const per = await viaThreads(task, ranks);
    lines.push(...table('threads', per), '');
  }
  if (backend === 'both' || backend === 'gloo') {
    try {
      const per = await viaProcesses(task, ranks);
      lines.push(...table('gloo', per), '');
    } catch (e) {
      lines.push(`gloo: not measured (${(e as Error).message})`, '');
    }
  }
  const text = lines.join('\n');
  console.log(text);
  const file = path.resolve(__dirname, '..', '..', 'bench', 'sync-results.md');
  if (args.includes('--append')) fs.appendFileSync(file, `\n${text}\n`);
  if (args.includes('--write')) {
    fs.writeFileSync(file, `# SyncBatchNorm: cost of synchronization\n\nOne training forward + backward of SyncBatchNorm2d against the local BatchNorm2d on the same per-rank\nbatch (bench/sync.ts). The overhead is the exchange: two all-gathers (2C + 1 and 2C float64 values per\nrank) and the wait for the slower rank, plus the float64 merge. "sync kernels alone" is the per-rank native\nwork of the synchronized pass (moments, normalize, backward sums, dx) without any exchange: the\ndifference between it and the synchronized pass is the communication and the waiting. "2 exchanges alone"\nis the pass's two all-gathers by themselves (2C + 1, then 2C values; over Gloo each is one Gloo\nall-gather of a fixed 1027 values per rank, the header that checks every rank makes the same call and\nthe payload, for C up to 511; a header then the payload for larger C).\n\nOn a machine shared with other work, every wake-up of a waiting rank (Gloo's I/O thread, the\nrank's own thread) can wait for a scheduling quantum: the first table below was measured on a 2-core\nVM under the load average its header line gives (other sessions building and testing), where a Gloo all-gather took\nmilliseconds; the second one (appended with --append) ran the ranks at real-time priority\n(\`chrt -f 20\`, root), which removes that wait: what the exchanges cost on a quiet machine.\n\n${text}\n`);
  }
}

void main().catch((e) => {
  console.error(e);
  process.exit(1);
});
