// The network benchmark's numbers (bench/network.ts): step sums per round, their medians and
// spread, fresh over reused and reused over the copy floor paired by round, the per-layer medians,
// and the text and Markdown tables (its own section of bench/RESULTS.md, between markers, so the
// main benchmark's --write and each network's --write leave each other's sections alone).
import { cpusText, type MachineInfo } from './machine';

export type Layout = 'nchw' | 'nhwc';
export type Mode = 'reused' | 'fresh';
export type StepOp = 'train' | 'backward' | 'infer';
export const STEP_OPS: StepOp[] = ['train', 'backward', 'infer'];

/** Per-round times in seconds, [round][layer]. */
export type Series = number[][];

export interface Measured {
  /** `${layout}|${threads}|${mode}|${op}` -> per round, per layer */
  steps: Record<string, Series>;
  /** `${threads}|${kind}|${family}` -> per round, per layer; kind plain | stream; family 8 | 12 */
  copies: Record<string, Series>;
  /** `${threads}|${family}` -> per round, per layer; family 4 (read x) | 8 (read x and dy). Absent in runs saved before it. */
  reads?: Record<string, Series>;
  /** `${layout}|${threads}|${mode}` -> minor page faults of the training step (forward + backward), per round */
  faults: Record<string, number[]>;
  /** the same keys -> V8's full collections (mark-compact) that started during the training step,
   * per round. Absent in runs saved before it. */
  majorGcs?: Record<string, number[]>;
  /** the same for V8's scavenges. Absent in runs saved before it. */
  minorGcs?: Record<string, number[]>;
}

export const stepKey = (layout: Layout, threads: number, mode: Mode, op: StepOp) => `${layout}|${threads}|${mode}|${op}`;
export const copyKey = (threads: number, kind: 'plain' | 'stream', fam: 8 | 12) => `${threads}|${kind}|${fam}`;
export const readKey = (threads: number, fam: 4 | 8) => `${threads}|${fam}`;
export const faultKey = (layout: Layout, threads: number, mode: Mode) => `${layout}|${threads}|${mode}`;


export interface Stat { median: number; min: number; max: number }

/** step = training forward + backward (the issue's "step"); the three ops on their own. */
export type RowOp = 'step' | StepOp;
export const ROW_OPS: RowOp[] = ['step', 'train', 'backward', 'infer'];
const OP_LABEL: Record<RowOp, string> = {
  step: 'training step (fwd + bwd)', train: 'forward, training', backward: 'backward', infer: 'forward, inference',
};

export interface StepRow {
  layout: Layout;
  threads: number;
  op: RowOp;
  reused: Stat;
  fresh: Stat;
  floor: Stat;
  /** paired by round */
  freshOverReused: Stat;
  reusedOverFloor: Stat;
  freshOverFloor: Stat;
  /** What the op's first passes read, alone (x for the forwards, x and dy for backward), and its
   * share of the copy floor, paired by round; null in runs saved before the read baselines. */
  reads: Stat | null;
  readsOverFloor: Stat | null;
  /** median minor page faults of the training step, per mode; 'step' rows only */
  faults?: Record<Mode, number>;
  /** median full collections during the training step, per mode; 'step' rows of runs that counted them */
  majorGcs?: Record<Mode, number>;
  /** median scavenges during the training step, per mode; the same rows */
  minorGcs?: Record<Mode, number>;
  /** The step's figures round by round, in the order measured ('step' rows; absent in runs saved
   * before them): where the machine's memory changed speed mid-run, the floor shows it. */
  rounds?: { floor: number[]; reads: number[] | null; reused: number[]; fresh: number[] };
}

export interface LayerRow {
  layout: Layout;
  threads: number;
  layer: number;
  /** median seconds per op */
  reused: Record<StepOp, number>;
  fresh: Record<StepOp, number>;
  floor8: number;
  floor12: number;
  /** the read baselines (x; x and dy); NaN in runs saved before them */
  read4: number;
  read8: number;
}

export interface Summary { steps: StepRow[]; layers: LayerRow[]; targetThreads: number }

export interface NetworkRun {
  command: string;
  network: string;
  /** --label: names the run's RESULTS.md section beside the default one (another machine) */
  label?: string;
  source: string;
  batch: number;
  threads: number[];
  layouts: Layout[];
  rounds: number;
  quick: boolean;
  yieldBetweenSteps: boolean;
  layers: Array<{ name: string; dims: number[] }>;
  machine: MachineInfo;
  caches: string;
  simdLevel: string;
  copyKernel: string;
  /** outputPoolStats() after the run, when the library has an output pool */
  pool: Record<string, number | boolean> | null;
  measured: Measured;
  summary: Summary;
}

function median(v: number[]): number {
  const t = v.slice().sort((a, b) => a - b);
  const k = t.length;
  return k % 2 ? t[(k - 1) / 2] : 0.5 * (t[k / 2 - 1] + t[k / 2]);
}

export function stat(v: number[]): Stat {
  return { median: median(v), min: Math.min(...v), max: Math.max(...v) };
}

const sum = (v: number[]) => v.reduce((a, b) => a + b, 0);

export function summarize(m: Measured, L: number, layouts: Layout[], threads: number[]): Summary {
  const steps: StepRow[] = [];
  const layers: LayerRow[] = [];
  for (const t of threads) {
    // Per round and layer, the faster of the plain and the streaming copy.
    const floorOf = (fam: 8 | 12): number[][] => {
      const plain = m.copies[copyKey(t, 'plain', fam)];
      const stream = m.copies[copyKey(t, 'stream', fam)];
      return plain.map((row, r) => row.map((v, l) => (stream ? Math.min(v, stream[r][l]) : v)));
    };
    const f8 = floorOf(8), f12 = floorOf(12);
    const r4 = m.reads?.[readKey(t, 4)], r8 = m.reads?.[readKey(t, 8)];
    for (const layout of layouts) {
      const series = (mode: Mode, op: StepOp) => m.steps[stepKey(layout, t, mode, op)];
      const perRound = (mode: Mode, op: RowOp): number[] =>
        op === 'step' ? series(mode, 'train').map((row, r) => sum(row) + sum(series(mode, 'backward')[r])) : series(mode, op).map(sum);
      // The floors and the reads of an op, per round: the forwards move 8 bytes per element and read
      // x (4), backward 12 and reads x and dy (8); a step is a training forward and a backward.
      const perOp = (fwd: Series, bwd: Series) => (op: RowOp): number[] =>
        fwd.map((row, r) => (op === 'backward' ? 0 : sum(row)) + (op === 'step' || op === 'backward' ? sum(bwd[r]) : 0));
      const floorRound = perOp(f8, f12);
      const readRound = r4 && r8 ? perOp(r4, r8) : null;
      for (const op of ROW_OPS) {
        const re = perRound('reused', op), fr = perRound('fresh', op), fl = floorRound(op);
        const rd = readRound ? readRound(op) : null;
        const row: StepRow = {
          layout, threads: t, op, reused: stat(re), fresh: stat(fr), floor: stat(fl),
          freshOverReused: stat(fr.map((v, r) => v / re[r])),
          reusedOverFloor: stat(re.map((v, r) => v / fl[r])),
          freshOverFloor: stat(fr.map((v, r) => v / fl[r])),
          reads: rd ? stat(rd) : null,
          readsOverFloor: rd ? stat(rd.map((v, r) => v / fl[r])) : null,
        };
        if (op === 'step') {
          row.rounds = { floor: fl, reads: rd, reused: re, fresh: fr };
          row.faults = { reused: median(m.faults[faultKey(layout, t, 'reused')]), fresh: median(m.faults[faultKey(layout, t, 'fresh')]) };
          const gcs = m.majorGcs;
          if (gcs) row.majorGcs = { reused: median(gcs[faultKey(layout, t, 'reused')]), fresh: median(gcs[faultKey(layout, t, 'fresh')]) };
          const minor = m.minorGcs;
          if (minor) row.minorGcs = { reused: median(minor[faultKey(layout, t, 'reused')]), fresh: median(minor[faultKey(layout, t, 'fresh')]) };
        }
        steps.push(row);
      }
      for (let l = 0; l < L; l++) {
        const med = (mode: Mode) => ({
          train: median(series(mode, 'train').map((row) => row[l])),
          backward: median(series(mode, 'backward').map((row) => row[l])),
          infer: median(series(mode, 'infer').map((row) => row[l])),
        });
        layers.push({
          layout, threads: t, layer: l, reused: med('reused'), fresh: med('fresh'),
          floor8: median(f8.map((row) => row[l])), floor12: median(f12.map((row) => row[l])),
          read4: r4 ? median(r4.map((row) => row[l])) : NaN, read8: r8 ? median(r8.map((row) => row[l])) : NaN,
        });
      }
    }
  }
  return { steps, layers, targetThreads: threads.includes(2) ? 2 : Math.max(...threads) };
}

const ms = (s: number) => (s * 1e3 >= 100 ? (s * 1e3).toFixed(0) : s * 1e3 >= 10 ? (s * 1e3).toFixed(1) : (s * 1e3).toFixed(2));
const x2 = (v: number) => v.toFixed(2);
const msStat = (s: Stat) => `${ms(s.median)} (${ms(s.min)}-${ms(s.max)})`;
const ratioStat = (s: Stat) => `${x2(s.median)} (${x2(s.min)}-${x2(s.max)})`;

export const FRESH_TARGET = 1.15;
export const FLOOR_TARGET = 1.3;

export interface NetworkVerdict { status: 'PASS' | 'FAIL'; text: string }

/** The issue's two step targets at the target thread count, for each layout. */
export function networkVerdicts(run: NetworkRun): NetworkVerdict[] {
  const T = run.summary.targetThreads;
  const out: NetworkVerdict[] = [];
  for (const r of run.summary.steps.filter((s) => s.threads === T && s.op === 'step')) {
    const a = r.freshOverReused.median, b = r.reusedOverFloor.median;
    // [mins]: the same ratio from each mode's fastest round, which a busy machine disturbs least.
    out.push({ status: a <= FRESH_TARGET ? 'PASS' : 'FAIL', text: `${run.network} ${r.layout} step, fresh outputs <= ${FRESH_TARGET} x reused (${T} thr): ${x2(a)} (rounds ${x2(r.freshOverReused.min)}-${x2(r.freshOverReused.max)}) [mins ${x2(r.fresh.min / r.reused.min)}]` });
    out.push({ status: b <= FLOOR_TARGET ? 'PASS' : 'FAIL', text: `${run.network} ${r.layout} step, reused outputs <= ${FLOOR_TARGET} x copy floor (${T} thr): ${x2(b)} (rounds ${x2(r.reusedOverFloor.min)}-${x2(r.reusedOverFloor.max)}) [mins ${x2(r.reused.min / r.floor.min)}]` });
  }
  return out;
}

function pad(rows: string[][], leftCols: number): string {
  const w = rows[0].map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => (i < leftCols ? c.padEnd(w[i]) : c.padStart(w[i]))).join('  ').trimEnd()).join('\n');
}

function stepRows(run: NetworkRun): string[][] {
  const rows = [['layout', 'thr', 'what', 'reused ms (min-max)', 'fresh ms (min-max)', 'fresh / reused', 'copy floor ms', 'reused / floor', 'fresh / floor', 'reads alone ms', 'reads / floor', 'page faults/step (reused, fresh)', 'full GCs/step (reused, fresh)', 'scavenges/step (reused, fresh)']];
  for (const r of run.summary.steps) {
    rows.push([r.layout, String(r.threads), OP_LABEL[r.op], msStat(r.reused), msStat(r.fresh), ratioStat(r.freshOverReused), msStat(r.floor),
      ratioStat(r.reusedOverFloor), ratioStat(r.freshOverFloor), r.reads ? msStat(r.reads) : '-', r.readsOverFloor ? ratioStat(r.readsOverFloor) : '-',
      r.faults ? `${Math.round(r.faults.reused)}, ${Math.round(r.faults.fresh)}` : '',
      r.majorGcs ? `${r.majorGcs.reused}, ${r.majorGcs.fresh}` : (r.op === 'step' ? '-' : ''),
      r.minorGcs ? `${r.minorGcs.reused}, ${r.minorGcs.fresh}` : (r.op === 'step' ? '-' : '')]);
  }
  return rows;
}

// The target thread count's step, round by round, for each layout.
function roundRows(run: NetworkRun): string[][] {
  const T = run.summary.targetThreads;
  const rows = [['layout', 'round', 'copy floor ms', 'reads alone ms', 'reused ms', 'fresh ms', 'reused / floor', 'fresh / reused']];
  for (const r of run.summary.steps.filter((q) => q.threads === T && q.op === 'step' && q.rounds)) {
    const k = r.rounds!;
    k.floor.forEach((fl, i) => rows.push([r.layout, String(i + 1), ms(fl), k.reads ? ms(k.reads[i]) : '-', ms(k.reused[i]), ms(k.fresh[i]),
      x2(k.reused[i] / fl), x2(k.fresh[i] / k.reused[i])]));
  }
  return rows;
}

function layerRows(run: NetworkRun, layout: Layout, threads: number): string[][] {
  const rows = [['#', 'layer', 'shape', 'fwd-train reused / fresh ms', 'x copy', 'backward reused / fresh ms', 'x copy', 'inference reused / fresh ms', 'x copy', 'copy 8 B / 12 B ms', 'read x / x, dy ms']];
  for (const r of run.summary.layers.filter((q) => q.layout === layout && q.threads === threads)) {
    const l = run.layers[r.layer];
    rows.push([String(r.layer + 1), l.name, l.dims.join('x'),
      `${ms(r.reused.train)} / ${ms(r.fresh.train)}`, x2(r.floor8 / r.reused.train),
      `${ms(r.reused.backward)} / ${ms(r.fresh.backward)}`, x2(r.floor12 / r.reused.backward),
      `${ms(r.reused.infer)} / ${ms(r.fresh.infer)}`, x2(r.floor8 / r.reused.infer),
      `${ms(r.floor8)} / ${ms(r.floor12)}`, Number.isNaN(r.read4) ? '-' : `${ms(r.read4)} / ${ms(r.read8)}`]);
  }
  return rows;
}

function header(run: NetworkRun): string[] {
  const m = run.machine;
  return [
    `${run.network}: ${run.layers.length} BN layers at batch ${run.batch}, float32 (${run.source})`,
    `machine: ${m.cpuModel}, ${cpusText(m)}, ${m.memGiB} GiB, ${m.platform}; load average at start ${m.loadAvg.map((x) => x.toFixed(2)).join(' ')}; Node ${m.node}; SIMD ${run.simdLevel}; copy kernel ${run.copyKernel}`,
    `caches seen by the process: ${run.caches}`,
    `${run.rounds} rounds after a warm-up round and fresh-output steps until the output pool stopped growing; in each round, per thread count: the copies, the reads, then per layout the reused and the fresh mode (order alternating by round), each a training step then an inference pass${run.yieldBetweenSteps ? ', each after a turn of the event loop' : ', no event-loop turn between them'}`,
    ...(run.pool ? [`output pool after the run: ${Object.entries(run.pool).map(([k, v]) => `${k} ${v}`).join(', ')}`] : []),
  ];
}

export function networkText(run: NetworkRun): string {
  const T = run.summary.targetThreads;
  const out = [...header(run), '', pad(stepRows(run), 3), ''];
  const rounds = roundRows(run);
  if (rounds.length > 1) out.push(`the training step round by round, ${T} threads:`, pad(rounds, 1), '');
  for (const layout of run.layouts) {
    out.push(`per layer, ${layout}, ${T} threads (medians; x copy = copy floor time / op time, reused outputs):`, pad(layerRows(run, layout, T), 3), '');
  }
  out.push(`Targets (${T} threads, float32):`);
  for (const v of networkVerdicts(run)) out.push(`${v.status.padEnd(4)}  ${v.text}`);
  return out.join('\n');
}

function mdTable(rows: string[][]): string {
  return [`| ${rows[0].join(' | ')} |`, `|${rows[0].map(() => '---').join('|')}|`, ...rows.slice(1).map((r) => `| ${r.join(' | ')} |`)].join('\n');
}

/** The run's name in RESULTS.md and its chart's file name: the network, and how it differs from the default run. */
export function sectionName(run: NetworkRun): string {
  return run.network + (run.pool && run.pool.enabled === false ? '-pool-off' : '') + (run.yieldBetweenSteps ? '' : '-no-yield') + (run.label ? `-${run.label}` : '');
}

export function networkMarkdown(run: NetworkRun): string {
  const T = run.summary.targetThreads;
  const m = run.machine;
  const rounds = roundRows(run);
  const variant = [run.label ?? '', run.pool && run.pool.enabled === false ? 'output pool off' : '', run.yieldBetweenSteps ? '' : 'no event-loop turn between steps'].filter(Boolean).join(', ');
  const parts = [
    `## Network: ${run.network} at batch ${run.batch}${variant ? ` (${variant})` : ''}`,
    '',
    `Generated by \`${run.command}\` (bench/network.ts) on ${m.date}, commit ${m.commit}.`,
    '',
    ...header(run).map((h) => `- ${h}`),
    '- Verdicts use the median of the per-round ratios; [mins] is the ratio of the fastest rounds (least disturbed by other processes).',
    '- Times are the sum over layers of each call (the layer API: `forward(x, shape, { out?, channelsLast })`, `backward(dy, { out? })`), per round; medians over rounds with (min-max). Ratios are paired by round, then their median (and range). The copy floor is the sum over layers of the faster of a plain and a streaming copy of the same bytes (8 per element forward, 12 backward) with the same threads, in the same round. "Reads alone" is what the op\'s first passes must read, read by a loop that does nothing else (x: 4 bytes per element for the forwards; x and dy: 8 for backward), in the same round: a two-pass op reads all of a piece before it writes any of it, so these reads bound what it can overlap.',
    '',
    '```',
    ...networkVerdicts(run).map((v) => `${v.status.padEnd(4)}  ${v.text}`),
    '```',
    '',
    mdTable(stepRows(run)),
    '',
    ...(rounds.length > 1
      ? [`The training step round by round, ${T} threads (a floor that moves between rounds is this machine's memory changing speed):`, '', mdTable(rounds), '']
      : []),
    `![per layer: copy floor, reused and fresh outputs](network-${sectionName(run)}.svg)`,
    '',
  ];
  for (const layout of run.layouts) {
    parts.push(`Per layer, ${layout}, ${T} threads (medians; "x copy" = copy floor time / op time with reused outputs, higher is better):`, '', mdTable(layerRows(run, layout, T)), '');
  }
  return parts.join('\n');
}

const begin = (net: string) => `<!-- network:${net}:begin (bench/network.ts --write rewrites this section) -->`;
const end = (net: string) => `<!-- network:${net}:end -->`;

/** RESULTS.md with the network's section (between its markers) replaced, or appended. */
export function replaceNetworkSection(doc: string, net: string, section: string): string {
  const block = `${begin(net)}\n${section.trimEnd()}\n${end(net)}\n`;
  const a = doc.indexOf(begin(net)), b = doc.indexOf(end(net));
  if (a >= 0 && b > a) return doc.slice(0, a) + block + doc.slice(b + end(net).length).replace(/^\n/, '');
  return `${doc.trimEnd()}\n\n${block}`;
}

/** Every network section of a RESULTS.md, so that the main benchmark's --write keeps them. */
export function networkSections(doc: string): string {
  const out: string[] = [];
  // Also the hand-kept sections of the core A/B runs and of runs on other machines
  // (<!-- ab:NAME:begin --> ... end, <!-- device:NAME:begin --> ... end).
  const re = /<!-- (network|ab|device):([\w-]+):begin[^>]*-->[\s\S]*?<!-- \1:\2:end -->\n?/g;
  for (const m of doc.matchAll(re)) out.push(m[0].trimEnd());
  return out.length ? `\n${out.join('\n\n')}\n` : '';
}
