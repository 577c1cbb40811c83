// npm run bench [-- options]: node-batchnorm's kernels against this machine's copy bandwidth,
// measured in the same run; optional peers; target verdicts. See bench/README.md.
import * as fs from 'fs';
import * as path from 'path';
import * as bn from '../lib';
import { chartSvg } from './chart';
import { coreCaches, cpusText, machineInfo, mib } from './machine';
import { buildNative, nativeAvailable, nativeBinary, runNative } from './native';
import { benchCopies, benchJsAlloc, benchOps, benchTiny, checkInPlace, copyKernel, ShapeData } from './ours';
import { networkMain } from './network';
import { networkSections } from './network-report';
import { benchOrt, benchTf, defaultPeersDir, loadPeers, Peers } from './peers';
import { inCache, noisy, peersMarkdown, resultsMarkdown, RunInfo, textTable, tinyTable, Verdict, verdicts, verdictText } from './report';
import type { Result } from './results';
import { BenchShape, DEFAULT_SHAPES, makeShape, parseShapes, QUICK_SHAPES } from './shapes';
import type { TimingOptions } from './timing';

const HELP = `Usage: npm run bench -- [options]

  --quick             one small shape (${QUICK_SHAPES.join(',')}), 1 thread, few repetitions: seconds
  --shapes LIST       e.g. 32x64x112x112,256x1024 (default: the issue's seven shapes)
  --threads LIST      thread counts, e.g. 1,2 (default 1,2; --quick: 1)
  --time SECONDS      measured time per case after warm-up (default 0.6; --quick 0.04)
  --peers DIR         folder whose node_modules holds the peers (default bench/peers, or $BN_BENCH_PEERS)
  --no-peers          skip the peers
  --native            build (cmake, into build-bench/) and run the native core benchmark
  --no-native         do not run it even if built (default: run it when build-bench/bn_bench_core exists, not in --quick)
  --write             write bench/RESULTS.md and bench/chart.svg from this run
  --json FILE         also write every result as JSON (default bench/out/results.json)
  --from-json FILE    measure nothing: rewrite bench/RESULTS.md and bench/chart.svg from a saved run
  --help

  --network NAME      the network benchmark instead: resnet50 | resnet18 | mnist (--network x --help)

Environment: BATCHNORM_BINDING / BATCHNORM_PREFER select the addon (lib/load.ts; default here: build/Release first,\nthen the prebuild); BATCHNORM_SIMD lowers the SIMD level; BN_BENCH_PEERS is the peers folder.
`;

interface Args {
  quick: boolean;
  shapes: BenchShape[];
  threads: number[];
  seconds: number;
  peersDir: string | null;
  native: 'auto' | 'yes' | 'no';
  write: boolean;
  json: string;
  fromJson: string | null;
}

function parseArgs(argv: string[]): Args {
  const a: Partial<Args> & { quick: boolean } = { quick: false };
  let shapes: string | undefined;
  let threads: string | undefined;
  let seconds: number | undefined;
  let peers: string | null | undefined;
  let native: Args['native'] = 'auto';
  let write = false;
  let json: string | undefined;
  let fromJson: string | null = null;
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    const val = () => {
      if (i + 1 >= argv.length) throw new Error(`${k} needs a value`);
      return argv[++i];
    };
    if (k === '--quick') a.quick = true;
    else if (k === '--shapes') shapes = val();
    else if (k === '--threads') threads = val();
    else if (k === '--time') seconds = Number(val());
    else if (k === '--peers') peers = val();
    else if (k === '--no-peers') peers = null;
    else if (k === '--native') native = 'yes';
    else if (k === '--no-native') native = 'no';
    else if (k === '--write') write = true;
    else if (k === '--json') json = val();
    else if (k === '--from-json') fromJson = path.resolve(val());
    else if (k === '--help' || k === '-h') { process.stdout.write(HELP); process.exit(0); }
    else throw new Error(`unknown option ${k} (see --help)`);
  }
  const th = (threads ?? (a.quick ? '1' : '1,2')).split(',').map(Number);
  if (th.some((t) => !Number.isInteger(t) || t < 1 || t > 4096)) throw new Error(`--threads: integers in [1, 4096] separated by commas, received '${threads}'`);
  const secs = seconds ?? (a.quick ? 0.04 : 0.6);
  if (!(secs > 0 && secs < 600)) throw new Error(`--time: seconds in (0, 600), received '${seconds}'`);
  return {
    quick: a.quick,
    shapes: parseShapes(shapes ?? (a.quick ? QUICK_SHAPES : DEFAULT_SHAPES).join(',')),
    threads: th,
    seconds: secs,
    peersDir: peers === null ? null : path.resolve(peers ?? process.env.BN_BENCH_PEERS ?? defaultPeersDir()),
    native: a.quick && native === 'auto' ? 'no' : native,
    write,
    json: path.resolve(json ?? path.join(__dirname, '..', '..', 'bench', 'out', 'results.json')),
    fromJson,
  };
}

const log = (s: string) => process.stderr.write(`${s}\n`);
const benchDir = path.join(__dirname, '..', '..', 'bench');

function writeReport(all: Result[], shapes: BenchShape[], run: RunInfo, v: Verdict[]): void {
  const file = path.join(benchDir, 'RESULTS.md');
  const kept = fs.existsSync(file) ? networkSections(fs.readFileSync(file, 'utf8')) : '';  // the network benchmark's sections
  fs.writeFileSync(file, resultsMarkdown(all, shapes, run, v) + kept);
  fs.writeFileSync(path.join(benchDir, 'chart.svg'), chartSvg(all, shapes, run.targetThreads, `node-batchnorm vs copy bandwidth — ${run.machine.cpuModel}`));
  console.log('wrote bench/RESULTS.md and bench/chart.svg');
}

function rewriteFrom(file: string): void {
  const saved = JSON.parse(fs.readFileSync(file, 'utf8')) as { run: RunInfo; results: Result[]; verdicts: Verdict[] };
  const labels = [...new Set(saved.results.filter((r) => !r.op.startsWith('tiny')).map((r) => r.shape))];
  const shapes = labels.map((l) => makeShape(l.split('x').map(Number)));
  writeReport(saved.results, shapes, saved.run, verdicts(saved.results, shapes, saved.run));
}

async function main(): Promise<void> {
  if (process.argv.includes('--network')) { await networkMain(process.argv.slice(2)); return; }
  const args = parseArgs(process.argv.slice(2));
  if (args.fromJson) { rewriteFrom(args.fromJson); return; }
  // Benchmark the local build (what `npm run build:native` just made) before any prebuilt binary,
  // unless the caller chose with BATCHNORM_BINDING / BATCHNORM_PREFER.
  if (!process.env.BATCHNORM_BINDING && !process.env.BATCHNORM_PREFER) process.env.BATCHNORM_PREFER = 'build';
  const t0 = Date.now();
  const machine = machineInfo();
  const info = bn.runtimeInfo();
  const kernel = copyKernel();
  const cacheBytes = (machine.l2PerCore || 2 * 1024 ** 2) * machine.cpus;
  const targetThreads = args.threads.includes(2) ? 2 : Math.max(...args.threads);
  const run: RunInfo = {
    command: `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`,
    machine, simdLevel: info.simdLevel, copyKernel: kernel.name, threads: args.threads, targetThreads,
    secondsPerCase: args.seconds, quick: args.quick, peers: [], notes: [], binding: `${info.binding.kind} ${path.relative(process.cwd(), info.binding.file).startsWith('..') ? info.binding.file : path.relative(process.cwd(), info.binding.file)}`,
    inPlaceOk: {}, cacheBytes,
  };

  console.log(`node-batchnorm benchmark  ${machine.date}  commit ${machine.commit}`);
  console.log(`CPU: ${machine.cpuModel} (${cpusText(machine)}, L2 ${mib(machine.l2PerCore)}/core, L3 ${machine.l3 ? mib(machine.l3) : '?'}), ${machine.memGiB} GiB, ${machine.platform}`);
  console.log(`Node ${machine.node}; addon ${run.binding}; simd ${info.simdLevel}; OpenMP ${info.openmp ?? 'none'}; copy kernel: ${kernel.name}`);
  console.log(coreCaches());
  console.log(`threads ${args.threads.join(',')} (targets at ${targetThreads}); ~${args.seconds} s per case; shapes ${args.shapes.map((s) => s.label).join(' ')}`);
  if (machine.loadAvg[0] > 0.5) {
    const note = `machine busy at start (load average ${machine.loadAvg.map((x) => x.toFixed(2)).join(' ')} on ${machine.cpus} CPUs): times are noisy, 2-thread times especially`;
    run.notes.push(note);
    console.log(`WARNING: ${note}`);
  }

  let peers: Peers | null = null;
  if (args.peersDir) {
    peers = await loadPeers(args.peersDir);
    for (const n of peers.notes) console.log(n);
    if (peers.ort) run.peers.push(`onnxruntime-node ${peers.ort.version} (BatchNormalization opset 15, NCHW, intraOpNumThreads = threads)`);
    if (peers.tf) run.peers.push(`@tensorflow/tfjs-backend-wasm ${peers.tf.version} (${peers.tf.threads} thread, SIMD ${peers.tf.simd ? 'on' : 'off'}, NHWC: its native layout)`);
    run.notes.push(...peers.notes);
  } else {
    console.log('peers skipped (--no-peers)');
  }

  const all: Result[] = [];
  const timing: TimingOptions = { seconds: args.seconds, minReps: args.quick ? 3 : 5 };
  const peerTiming: TimingOptions = { seconds: args.seconds, minReps: args.quick ? 2 : 3, warmupSeconds: 0 };
  const peerNotes: string[] = [];
  for (const shape of args.shapes) {
    const s0 = Date.now();
    log(`[${shape.label}] ${(4 * shape.total / 1024 ** 2).toFixed(1)} MiB per tensor${inCache(shape, run) ? ' (in cache)' : ''}`);
    let d: ShapeData | null = new ShapeData(shape);
    run.inPlaceOk[shape.label] = checkInPlace(d);
    all.push(...benchJsAlloc(d, timing));
    for (const t of args.threads) {
      all.push(...benchCopies(d, kernel, t, timing));
      all.push(...benchOps(d, t, timing));
      if (peers?.ort) {
        bn.setNumThreads(t);
        const ref = bn.batchNormTraining(d.x, shape.dims, { weight: d.weight, bias: d.bias }).y as Float32Array;
        all.push(...(await benchOrt(peers, d, t, peerTiming, ref, peerNotes)));
      }
    }
    if (peers?.tf) all.push(...benchTf(peers, d, peerTiming, peerNotes));
    d = null;
    log(`[${shape.label}] done in ${((Date.now() - s0) / 1000).toFixed(1)} s`);
  }
  run.notes.push(...peerNotes);
  all.push(...(await benchTiny(targetThreads, args.quick)));

  if (args.native !== 'no') {
    try {
      if (args.native === 'yes') buildNative(log);
      if (nativeAvailable()) {
        log(`running ${nativeBinary} ...`);
        const nat = runNative(args.shapes.map((s) => s.label), args.threads, args.seconds, args.quick);
        all.push(...nat.rows);
      } else {
        console.log(`native core benchmark not built (run with --native to build ${path.relative(process.cwd(), nativeBinary)})`);
      }
    } catch (e) {
      const note = `native core benchmark failed: ${(e as Error).message.split('\n')[0]}`;
      run.notes.push(note);
      console.log(note);
    }
  }

  console.log('');
  console.log(textTable(all));
  const loud = all.filter((r) => !r.op.startsWith('tiny') && noisy(r));
  if (loud.length) {
    const note = `${loud.length} of ${all.length} cases noisy (~: median > 1.3 x min): another process was competing for the CPUs; re-run on a quiet machine`;
    run.notes.push(note);
    console.log(note);
  }
  console.log('');
  console.log(tinyTable(all));
  if (all.some((r) => r.impl === 'onnxruntime-node' || r.impl === 'tfjs-wasm')) {
    console.log(`\nPeers (last column: peer time / node-batchnorm time at ${targetThreads} threads, provided outputs; > 1 means node-batchnorm is faster):`);
    console.log(peersMarkdown(all, args.shapes, run));
  }
  for (const n of peerNotes) console.log(`note: ${n}`);
  const v = verdicts(all, args.shapes, run);
  console.log('');
  console.log(`Targets (${targetThreads} threads, float32, caller-provided outputs, ratio to the faster copy)${args.quick ? ' [--quick: indicative only]' : ''}:`);
  console.log(verdictText(v));

  fs.mkdirSync(path.dirname(args.json), { recursive: true });
  fs.writeFileSync(args.json, JSON.stringify({ run, results: all, verdicts: v }, null, 1));
  console.log(`\nresults: ${path.relative(process.cwd(), args.json)}`);
  if (args.write) writeReport(all, args.shapes, run, v);
  console.log(`total ${((Date.now() - t0) / 1000).toFixed(1)} s`);
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? e.stack ?? e.message : e);
  process.exit(1);
});
