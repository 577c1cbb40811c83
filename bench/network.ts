// npm run bench -- --network resnet50: one training step's batch norms (every BN layer's training
// forward, then backward in reverse order) and one inference pass, through the layer API
// (BatchNorm2d.forward / backward) as a training loop calls it, with outputs the library
// allocates ("fresh") and outputs the caller reuses ("reused"), beside the copy floor of the same
// bytes measured in the same rounds. See bench/README.md ("Network benchmark").
import * as fs from 'fs';
import * as path from 'path';
import { constants as perfConstants, PerformanceObserver } from 'perf_hooks';
import * as bn from '../lib';
import { cacheFacts, cpusText, machineInfo, mib } from './machine';
import { networkChartSvg } from './network-chart';
import {
  copyKey, faultKey, Layout, Measured, Mode, networkMarkdown, networkText, readKey, replaceNetworkSection, sectionName, Series,
  stepKey, summarize, NetworkRun,
} from './network-report';
import { layerDims, layerElements, Network, NETWORKS } from './networks';
import { copyKernel, CopyKernel } from './ours';

const HELP = `Usage: npm run bench -- --network NAME [options]

  --network NAME      ${Object.keys(NETWORKS).join(' | ')} (bench/networks.ts)
  --batch N           batch size (default 32; mnist: 60, the demo's)
  --threads LIST      thread counts (default 1,2; --quick: 1)
  --layouts LIST      nchw,nhwc (default both; BatchNorm1d networks: nchw)
  --rounds N          measured rounds after one warm-up round (default 7; --quick 2)
  --quick             batch 2, 2 rounds, 1 thread: seconds (CI runs this)
  --no-yield          do not return to the event loop between steps (see bench/README.md)
  --list              print the network's BN table and exit
  --write             write the network's section of bench/RESULTS.md and bench/network-NAME.svg
  --label NAME        keep the run's RESULTS.md section and chart beside the default run's, under this
                      name (another machine: --label xeon-2mib-l2); with --from-json, names the saved run
  --json FILE         where the results go (default bench/out/network-NAME.json)
  --from-json FILE    measure nothing: rewrite the run's RESULTS.md section and chart from its saved JSON
                      (npm run bench -- --network --from-json FILE: the network comes from the file)
`;

export interface NetworkArgs {
  network: Network;
  batch: number;
  threads: number[];
  layouts: Layout[];
  rounds: number;
  quick: boolean;
  yieldBetweenSteps: boolean;
  list: boolean;
  write: boolean;
  json: string;
  fromJson: string | null;
  label: string | null;
}

function parseList<T extends string>(flag: string, v: string, allowed: readonly T[]): T[] {
  const items = v.split(',').map((s) => s.trim());
  for (const i of items) if (!allowed.includes(i as T)) throw new Error(`${flag}: expected a list of ${allowed.join(', ')}, received '${v}'`);
  return items as T[];
}

export function parseNetworkArgs(argv: string[]): NetworkArgs {
  let name: string | undefined;
  let batch: number | undefined;
  let threads: string | undefined;
  let layouts: Layout[] | undefined;
  let rounds: number | undefined;
  let quick = false, yieldBetweenSteps = true, list = false, write = false;
  let json: string | undefined;
  let fromJson: string | null = null;
  let label: string | null = null;
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    const val = () => {
      if (i + 1 >= argv.length) throw new Error(`${k} needs a value`);
      return argv[++i];
    };
    if (k === '--network') { if (argv[i + 1] !== undefined && !argv[i + 1].startsWith('--')) name = argv[++i]; }
    else if (k === '--batch') batch = Number(val());
    else if (k === '--threads') threads = val();
    else if (k === '--layouts') layouts = parseList('--layouts', val(), ['nchw', 'nhwc'] as const);
    else if (k === '--rounds') rounds = Number(val());
    else if (k === '--quick') quick = true;
    else if (k === '--no-yield') yieldBetweenSteps = false;
    else if (k === '--list') list = true;
    else if (k === '--write') write = true;
    else if (k === '--json') json = val();
    else if (k === '--from-json') fromJson = path.resolve(val());
    else if (k === '--label') {
      label = val();
      if (!/^[a-z0-9][a-z0-9-]{0,39}$/.test(label)) throw new Error(`--label: lower-case letters, digits and '-' (at most 40), received '${label}'`);
    }
    else if (k === '--help' || k === '-h') { process.stdout.write(HELP); process.exit(0); }
    else throw new Error(`unknown option ${k} for --network (see --network x --help)`);
  }
  const network = name === undefined ? (fromJson ? NETWORKS.resnet50 : undefined) : NETWORKS[name];  // --from-json names its own
  if (!network) throw new Error(`--network: one of ${Object.keys(NETWORKS).join(', ')}, received '${name}'`);
  const b = batch ?? (quick ? 2 : network.defaultBatch);
  if (!Number.isInteger(b) || b < 2 || b > 4096) throw new Error(`--batch: an integer in [2, 4096], received '${batch}'`);
  const th = (threads ?? (quick ? '1' : '1,2')).split(',').map(Number);
  if (th.some((t) => !Number.isInteger(t) || t < 1 || t > 4096)) throw new Error(`--threads: integers in [1, 4096] separated by commas, received '${threads}'`);
  const r = rounds ?? (quick ? 2 : 7);
  if (!Number.isInteger(r) || r < 1 || r > 1000) throw new Error(`--rounds: an integer in [1, 1000], received '${rounds}'`);
  const spatial = network.layers.some((l) => l.spatial.length > 0);
  return {
    network, batch: b, threads: th, rounds: r, quick, yieldBetweenSteps, list, write, fromJson, label,
    layouts: spatial ? layouts ?? ['nchw', 'nhwc'] : ['nchw'],
    json: path.resolve(json ?? path.join(__dirname, '..', '..', 'bench', 'out', `network-${network.name}.json`)),
  };
}

const now = () => Number(process.hrtime.bigint()) / 1e9;
const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Fills with a repeating block of pseudo-random values in [-2, 2) (the values do not matter to the timing, only that they are finite and varied). */
function fillPattern(a: Float32Array, seed: number): Float32Array {
  const block = new Float32Array(Math.min(a.length, 1 << 16));
  let s = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < block.length; i++) {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    block[i] = 4 * (s / 4294967296 - 0.5);
  }
  for (let o = 0; o < a.length; o += block.length) a.set(block.subarray(0, Math.min(block.length, a.length - o)), o);
  return a;
}

/** One layer's tensors: its own x, dy and the reused outputs, as a network holds them. */
interface LayerData {
  dims: number[];
  n: number;
  layer: bn.BatchNorm;
  x: Float32Array;
  dy: Float32Array;
  y: Float32Array;
  dx: Float32Array;
}

function push(rec: Record<string, Series>, key: string, row: number[]): void {
  (rec[key] ??= []).push(row);
}

/** One training step: training forward of every layer, then backward in reverse order. */
function trainStep(data: LayerData[], mode: Mode, layout: Layout): { train: number[]; backward: number[] } {
  const channelsLast = layout === 'nhwc';
  const L = data.length;
  const train: number[] = new Array(L), backward: number[] = new Array(L);
  // The forward outputs stay alive until the step ends, as a network's activations do.
  const ys: Float32Array[] = new Array(L);
  for (let l = 0; l < L; l++) {
    const d = data[l];
    d.layer.train();
    const a = now();
    ys[l] = d.layer.forward(d.x, d.dims, mode === 'reused' ? { out: d.y, channelsLast } : { channelsLast }) as Float32Array;
    train[l] = now() - a;
  }
  for (let l = L - 1; l >= 0; l--) {
    const d = data[l];
    const a = now();
    d.layer.backward(d.dy, mode === 'reused' ? { out: d.dx } : undefined);
    backward[l] = now() - a;
  }
  return { train, backward };
}

/** One inference pass: every layer in evaluation mode. */
function inferencePass(data: LayerData[], mode: Mode, layout: Layout): number[] {
  const channelsLast = layout === 'nhwc';
  const t: number[] = new Array(data.length);
  data.forEach((d, l) => {
    d.layer.eval();
    const a = now();
    d.layer.forward(d.x, d.dims, mode === 'reused' ? { out: d.y, channelsLast } : { channelsLast });
    t[l] = now() - a;
    d.layer.train();
    d.layer.releaseSaved();  // an evaluation pass keeps nothing for backward
  });
  return t;
}

/** The copy floor of every layer: 8 bytes per element (x -> y) and 12 (x -> dx, then half of dy -> y). */
function runCopies(data: LayerData[], kernel: CopyKernel, streaming: boolean, threads: number): { c8: number[]; c12: number[] } {
  const c8: number[] = [], c12: number[] = [];
  for (const d of data) {
    let a = now();
    kernel.run(d.x, d.y, streaming, threads);
    c8.push(now() - a);
    a = now();
    kernel.run(d.x, d.dx, streaming, threads);
    kernel.run(d.dy.subarray(0, d.n >> 1), d.y, streaming, threads);
    c12.push(now() - a);
  }
  return { c8, c12 };
}

/** The read baselines of every layer: x alone (4 bytes per element, what the statistics read) and
 * x with dy (8, what backward's reductions read). */
function runReads(data: LayerData[], kernel: CopyKernel, threads: number): { r4: number[]; r8: number[] } {
  const r4: number[] = [], r8: number[] = [];
  for (const d of data) {
    let a = now();
    kernel.read(d.x, null, threads);
    r4.push(now() - a);
    a = now();
    kernel.read(d.x, d.dy, threads);
    r8.push(now() - a);
  }
  return { r4, r8 };
}

/** Start times of V8's full collections (mark-compact) and scavenges since the benchmark began:
 * Node reports them after the fact, so steps count theirs by time window once the run is over. */
const gcTimes = { major: [] as number[], minor: [] as number[] };
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) {
    const kind = (e as unknown as { detail?: { kind?: number } }).detail?.kind;
    if (kind === perfConstants.NODE_PERFORMANCE_GC_MAJOR) gcTimes.major.push(e.startTime);
    if (kind === perfConstants.NODE_PERFORMANCE_GC_MINOR) gcTimes.minor.push(e.startTime);
  }
}).observe({ entryTypes: ['gc'] });

function minorFaults(): number {
  return process.resourceUsage().minorPageFault;
}

/** What the output pool has done so far that a steady loop stops doing: new blocks, and plain
 * allocations while blocks were still to come back or the pool was full. */
function poolGrowth(): number {
  const p = bn.outputPoolStats();
  return p.allocations + p.awaitingReturns + p.overBound;
}

/** After the warm-up round, fresh-mode steps until one adds no pool block and no plain allocation
 * (at most kMaxSettleSteps): the pool grows by a bounded amount between two returns (an eighth of
 * its bound, or twice its working set), so the first steps of a loop are not its steady state.
 * Returns how many steps it took. */
const kMaxSettleSteps = 8;
async function settlePool(args: NetworkArgs, data: LayerData[]): Promise<number> {
  let steps = 0;
  for (const threads of args.threads) {
    bn.setNumThreads(threads);
    for (const layout of args.layouts) {
      for (let k = 0; k < kMaxSettleSteps; k++) {
        const before = poolGrowth();
        if (args.yieldBetweenSteps) await nextTurn();
        trainStep(data, 'fresh', layout);
        if (args.yieldBetweenSteps) await nextTurn();
        inferencePass(data, 'fresh', layout);
        steps++;
        if (poolGrowth() === before) break;
      }
    }
  }
  return steps;
}

async function measure(args: NetworkArgs, data: LayerData[], kernel: CopyKernel, log: (s: string) => void): Promise<Measured> {
  const reads: Record<string, Series> = {};
  const m: Measured = { steps: {}, copies: {}, reads, faults: {}, majorGcs: {}, minorGcs: {} };
  // Training-step windows [start, end) by key, counted against gcTimes at the end.
  const gcWindows: Array<{ key: string; from: number; to: number }> = [];
  const modesFor = (round: number): Mode[] => (round % 2 ? ['fresh', 'reused'] : ['reused', 'fresh']);
  // Round 0 is the warm-up (every buffer touched, the pool, if any, filled); not recorded.
  for (let round = 0; round <= args.rounds; round++) {
    const r0 = now();
    for (const threads of args.threads) {
      bn.setNumThreads(threads);
      for (const streaming of kernel.streaming ? [false, true] : [false]) {
        const c = runCopies(data, kernel, streaming, threads);
        if (round > 0) {
          push(m.copies, copyKey(threads, streaming ? 'stream' : 'plain', 8), c.c8);
          push(m.copies, copyKey(threads, streaming ? 'stream' : 'plain', 12), c.c12);
        }
      }
      const rd = runReads(data, kernel, threads);
      if (round > 0) {
        push(reads, readKey(threads, 4), rd.r4);
        push(reads, readKey(threads, 8), rd.r8);
      }
      for (const layout of args.layouts) {
        for (const mode of modesFor(round)) {
          if (args.yieldBetweenSteps) await nextTurn();
          const f0 = minorFaults(), g0 = performance.now();
          const t = trainStep(data, mode, layout);
          const faults = minorFaults() - f0;
          if (args.yieldBetweenSteps) await nextTurn();
          const g1 = performance.now();  // the step's collections, and those it started that end in its turn
          const infer = inferencePass(data, mode, layout);
          if (round === 0) continue;
          push(m.steps, stepKey(layout, threads, mode, 'train'), t.train);
          push(m.steps, stepKey(layout, threads, mode, 'backward'), t.backward);
          push(m.steps, stepKey(layout, threads, mode, 'infer'), infer);
          (m.faults[faultKey(layout, threads, mode)] ??= []).push(faults);
          gcWindows.push({ key: faultKey(layout, threads, mode), from: g0, to: g1 });
        }
      }
    }
    if (round === 0) {
      const settle = await settlePool(args, data);
      log(`[${args.network.name}] warm-up round and ${settle} fresh-output steps until the output pool stopped growing ${(now() - r0).toFixed(1)} s`);
      continue;
    }
    log(`[${args.network.name}] round ${round}/${args.rounds} ${(now() - r0).toFixed(1)} s`);
  }
  await nextTurn();  // the last entries
  const within = (times: number[], w: { from: number; to: number }) => times.filter((t) => t >= w.from && t < w.to).length;
  for (const w of gcWindows) {
    (m.majorGcs![w.key] ??= []).push(within(gcTimes.major, w));
    (m.minorGcs![w.key] ??= []).push(within(gcTimes.minor, w));
  }
  return m;
}

function allocate(args: NetworkArgs): LayerData[] {
  return args.network.layers.map((l, i) => {
    const n = layerElements(l, args.batch);
    const layer = l.spatial.length ? new bn.BatchNorm2d(l.c) : new bn.BatchNorm1d(l.c);
    return {
      dims: layerDims(l, args.batch), n, layer,
      x: fillPattern(new Float32Array(n), 2 * i + 1),
      dy: fillPattern(new Float32Array(n), 2 * i + 2),
      y: new Float32Array(n).fill(0),
      dx: new Float32Array(n).fill(0),
    };
  });
}

function listTable(args: NetworkArgs): string {
  const rows = [`${args.network.name}: ${args.network.layers.length} BN layers; ${args.network.source}; batch ${args.batch}`, ''];
  rows.push('  #  layer                       shape                 MiB');
  args.network.layers.forEach((l, i) => {
    rows.push(`${String(i + 1).padStart(3)}  ${l.name.padEnd(26)}  ${layerDims(l, args.batch).join('x').padEnd(20)}  ${(4 * layerElements(l, args.batch) / 2 ** 20).toFixed(1).padStart(6)}`);
  });
  const total = args.network.layers.reduce((s, l) => s + layerElements(l, args.batch), 0);
  rows.push('', `one tensor per layer, all layers: ${(4 * total / 2 ** 20).toFixed(0)} MiB`);
  return rows.join('\n');
}

const benchDir = path.join(__dirname, '..', '..', 'bench');

function write(run: NetworkRun): void {
  const file = path.join(benchDir, 'RESULTS.md');
  const old = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '# Benchmark results\n';
  const name = sectionName(run);
  fs.writeFileSync(file, replaceNetworkSection(old, name, networkMarkdown(run)));
  const svg = path.join(benchDir, `network-${name}.svg`);
  fs.writeFileSync(svg, networkChartSvg(run));
  console.log(`wrote the ${name} section of bench/RESULTS.md and ${path.relative(process.cwd(), svg)}`);
}

export async function networkMain(argv: string[]): Promise<void> {
  const log = (s: string) => process.stderr.write(`${s}\n`);
  const args = parseNetworkArgs(argv);
  if (args.list) { console.log(listTable(args)); return; }
  if (args.fromJson) {
    const saved = JSON.parse(fs.readFileSync(args.fromJson, 'utf8')) as NetworkRun;
    saved.summary = summarize(saved.measured, saved.layers.length, saved.layouts, saved.threads);
    if (args.label) saved.label = args.label;
    console.log(networkText(saved));
    write(saved);
    return;
  }
  if (!process.env.BATCHNORM_BINDING && !process.env.BATCHNORM_PREFER) process.env.BATCHNORM_PREFER = 'build';
  const t0 = now();
  const machine = machineInfo();
  const caches = cacheFacts();
  const info = bn.runtimeInfo();
  const kernel = copyKernel();
  const poolApi = bn as unknown as { outputPoolStats?: () => Record<string, number | boolean> };
  // The command that reproduces the run (where its JSON went does not matter; the pool setting does).
  const shown = argv.filter((a, i) => a !== '--json' && argv[i - 1] !== '--json');
  const env = process.env.BATCHNORM_OUTPUT_POOL_BYTES !== undefined ? `BATCHNORM_OUTPUT_POOL_BYTES=${process.env.BATCHNORM_OUTPUT_POOL_BYTES} ` : '';
  // Node's own flags (e.g. --single-threaded-gc) cannot go through npm run: the command runs node itself.
  const command = process.execArgv.length
    ? `npm run build:ts && ${env}node ${process.execArgv.join(' ')} dist/bench/run.js ${shown.join(' ')}`
    : `${env}npm run bench -- ${shown.join(' ')}`;
  console.log(`node-batchnorm network benchmark  ${machine.date}  commit ${machine.commit}`);
  console.log(`CPU: ${machine.cpuModel} (${cpusText(machine)}), ${machine.memGiB} GiB, ${machine.platform}; load average ${machine.loadAvg.map((x) => x.toFixed(2)).join(' ')}`);
  console.log(`caches seen by this process: ${caches.text}`);
  console.log(`Node ${machine.node}${process.execArgv.length ? ` (${process.execArgv.join(' ')})` : ''}; simd ${info.simdLevel}; OpenMP ${info.openmp ?? 'none'}; copy kernel ${kernel.name}`);
  console.log(listTable(args).split('\n')[0]);
  console.log(`threads ${args.threads.join(',')}; layouts ${args.layouts.join(',')}; ${args.rounds} rounds after a warm-up; ${args.yieldBetweenSteps ? 'back to the event loop between steps' : 'no event-loop turn between steps (--no-yield)'}`);
  const data = allocate(args);
  const m = await measure(args, data, kernel, log);
  const pool = poolApi.outputPoolStats ? poolApi.outputPoolStats() : null;
  const run: NetworkRun = {
    command, network: args.network.name, source: args.network.source, batch: args.batch, threads: args.threads,
    ...(args.label ? { label: args.label } : {}),
    layouts: args.layouts, rounds: args.rounds, quick: args.quick, yieldBetweenSteps: args.yieldBetweenSteps,
    layers: args.network.layers.map((l) => ({ name: l.name, dims: layerDims(l, args.batch) })),
    machine, caches: caches.text, simdLevel: info.simdLevel, copyKernel: kernel.name, pool, measured: m,
    summary: summarize(m, args.network.layers.length, args.layouts, args.threads),
  };
  console.log('');
  console.log(networkText(run));
  fs.mkdirSync(path.dirname(args.json), { recursive: true });
  fs.writeFileSync(args.json, JSON.stringify(run));
  console.log(`\nresults: ${path.relative(process.cwd(), args.json)}`);
  if (args.write) write(run);
  console.log(`total ${(now() - t0).toFixed(1)} s; fresh outputs of one training step and inference pass: ${mib(data.reduce((s, d) => s + 3 * 4 * d.n, 0))}`);
}
