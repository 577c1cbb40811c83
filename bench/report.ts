// Text tables for the terminal, the target verdicts, and bench/RESULTS.md.
import type { MachineInfo } from './machine';
import { cpusText, mib } from './machine';
import { bestCopy, find, gbs, Result, ratioToCopy } from './results';
import type { BenchShape } from './shapes';

export interface RunInfo {
  command: string;
  machine: MachineInfo;
  simdLevel: string;
  copyKernel: string;
  threads: number[];
  /** thread count the targets are judged at */
  targetThreads: number;
  secondsPerCase: number;
  quick: boolean;
  peers: string[];
  notes: string[];
  binding: string;
  inPlaceOk: Record<string, boolean>;
  /** bytes: a shape whose x (one tensor) fits in this (the L2 of all cores) is "in cache" */
  cacheBytes: number;
}

export interface Verdict {
  name: string;
  status: 'PASS' | 'FAIL' | 'n/a';
  detail: string;
}

const f = (v: number | undefined, d = 2) => (v === undefined || !Number.isFinite(v) ? '-' : v.toFixed(d));
const ms = (s: number) => (s * 1e3 < 0.1 ? (s * 1e3).toFixed(4) : s * 1e3 < 10 ? (s * 1e3).toFixed(3) : (s * 1e3).toFixed(1));

export function inCache(s: BenchShape, run: RunInfo): boolean {
  return 4 * s.total <= run.cacheBytes;
}

function pad(rows: string[][]): string {
  const w = rows[0].map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => (i < 4 ? c.padEnd(w[i]) : c.padStart(w[i]))).join('  ').trimEnd()).join('\n');
}

/** A case whose median is well above its min: the machine was busy (or the case is bimodal). */
export function noisy(r: Result): boolean {
  return r.timing.median > 1.3 * r.timing.min;
}

/** The full table: every case, in run order. "~" marks a noisy case (median > 1.3 x min). */
export function textTable(all: Result[]): string {
  const rows = [['impl', 'shape', 'op', 'output', 'thr', 'median ms', 'min ms', 'reps', 'GB/s', 'x copy', 'x copy (mins)', 'faults/call', '']];
  for (const r of all) {
    if (r.op.startsWith('tiny')) continue;
    const base = r.impl === 'copy' || r.impl === 'js' || (r.impl === 'core' && (r.op.startsWith('copy') || r.op.startsWith('read')));
    const ratio = base ? undefined : ratioToCopy(all, r);
    const ratioMin = base ? undefined : ratioToCopy(all, r, 'min');
    rows.push([r.impl, r.shape, r.op, r.output, String(r.threads), ms(r.timing.median), ms(r.timing.min), String(r.timing.reps), f(gbs(r)), f(ratio), f(ratioMin), r.timing.faults === undefined ? '-' : String(Math.round(r.timing.faults)), noisy(r) ? '~' : '']);
  }
  return pad(rows);
}

export function tinyTable(all: Result[]): string {
  const rows = [['impl', 'call (1x16x1x1 inference)', 'thr', 'median us', 'min us']];
  for (const r of all.filter((x) => x.op.startsWith('tiny'))) {
    rows.push([r.impl, r.op, String(r.threads), (r.timing.median * 1e6).toFixed(2), (r.timing.min * 1e6).toFixed(2)]);
  }
  return pad(rows);
}

/** " (N page faults/call)" when the timing counted them: which allocator state a fresh case measured (bench/timing.ts). */
function pf(r: Result | undefined): string {
  return r?.timing.faults === undefined ? '' : ` (${Math.round(r.timing.faults)} page faults/call)`;
}

/** Fresh-output overhead of plain JavaScript at this shape: new Float32Array(n).set(x) minus y.set(x). */

function jsAllocCost(all: Result[], shape: string): number | undefined {
  const a = find(all, { impl: 'js', shape, op: 'js-alloc-set' });
  const b = find(all, { impl: 'js', shape, op: 'js-set' });
  return a && b ? Math.max(0, a.timing.median - b.timing.median) : undefined;
}

function ourRatio(all: Result[], shape: string, op: string, output: string, thr: number): number | undefined {
  const r = find(all, { impl: 'node-batchnorm', shape, op, output: output as Result['output'], threads: thr });
  return r ? ratioToCopy(all, r) : undefined;
}

export function verdicts(all: Result[], shapes: BenchShape[], run: RunInfo): Verdict[] {
  const T = run.targetThreads;
  const out: Verdict[] = [];
  const big = shapes.filter((s) => !inCache(s, run));
  const ratioTarget = (name: string, op: string, output: string, min: number) => {
    if (!big.length) { out.push({ name, status: 'n/a', detail: 'no shape outside the cache in this run' }); return; }
    const parts: string[] = [];
    let ok = true;
    for (const s of big) {
      const r = ourRatio(all, s.label, op, output, T);
      const res = find(all, { impl: 'node-batchnorm', shape: s.label, op, output: output as Result['output'], threads: T });
      const rm = res ? ratioToCopy(all, res, 'min') : undefined;
      if (r === undefined || r < min) ok = false;
      parts.push(`${s.label} ${f(r)}${r !== undefined && r < min ? ` (${f((r / min - 1) * 100, 0)}%)` : ''} [mins ${f(rm)}]`);
    }
    out.push({ name, status: ok ? 'PASS' : 'FAIL', detail: `median ratios (and min-time ratios): ${parts.join(', ')}` });
  };
  ratioTarget(`forward training >= 0.85 x faster copy (${T} thr, provided out, shapes not in cache)`, 'fwd-train', 'provided', 0.85);
  ratioTarget(`forward inference >= 0.90 x faster copy (${T} thr, provided out, shapes not in cache)`, 'fwd-infer', 'provided', 0.9);
  {
    const bad = Object.entries(run.inPlaceOk).filter(([, ok]) => !ok).map(([s]) => s);
    const ran = shapes.every((s) => find(all, { impl: 'node-batchnorm', shape: s.label, op: 'fwd-infer', output: 'inplace', threads: T }));
    out.push({
      name: 'forward inference in place (out === x): runs and equals the out-of-place result bit for bit',
      status: bad.length || !ran ? 'FAIL' : 'PASS',
      detail: bad.length ? `differs on ${bad.join(', ')}` : `checked on ${Object.keys(run.inPlaceOk).join(', ')}`,
    });
  }
  ratioTarget(`backward >= 0.85 x faster copy of its 12 bytes/element (${T} thr, provided out, shapes not in cache)`, 'backward', 'provided', 0.85);
  {
    const name = '(64,3,224,224) as fast per byte as (32,64,112,112), within 10% (GB/s ratio >= 0.90)';
    const a = shapes.find((s) => s.label === '64x3x224x224');
    const b = shapes.find((s) => s.label === '32x64x112x112');
    if (!a || !b) out.push({ name, status: 'n/a', detail: 'needs both shapes in the run' });
    else {
      let ok = true;
      const parts: string[] = [];
      for (const op of ['fwd-train', 'fwd-infer', 'backward']) {
        const ra = find(all, { impl: 'node-batchnorm', shape: a.label, op, output: 'provided', threads: T });
        const rb = find(all, { impl: 'node-batchnorm', shape: b.label, op, output: 'provided', threads: T });
        const q = ra && rb ? gbs(ra) / gbs(rb) : undefined;
        if (q === undefined || q < 0.9) ok = false;
        parts.push(`${op} ${f(q)}`);
      }
      out.push({ name, status: ok ? 'PASS' : 'FAIL', detail: parts.join(', ') });
    }
  }
  {
    const name = `shapes in cache (x <= ${mib(run.cacheBytes)}): faster than every peer (${T} thr, best peer output mode and thread count)`;
    const small = shapes.filter((s) => inCache(s, run));
    const peerRows = all.filter((r) => r.impl === 'onnxruntime-node' || r.impl === 'tfjs-wasm');
    if (!small.length) out.push({ name, status: 'n/a', detail: 'no in-cache shape in this run' });
    else if (!peerRows.length) out.push({ name, status: 'n/a', detail: 'no peer installed (see bench/peers)' });
    else {
      let ok = true;
      const parts: string[] = [];
      for (const s of small) {
        for (const op of ['fwd-train', 'fwd-infer', 'backward']) {
          const ours = find(all, { impl: 'node-batchnorm', shape: s.label, op, output: 'provided', threads: T });
          for (const impl of ['onnxruntime-node', 'tfjs-wasm'] as const) {
            const ps = peerRows.filter((r) => r.impl === impl && r.shape === s.label && r.op === op);
            if (!ps.length || !ours) continue;
            const best = Math.min(...ps.map((r) => r.timing.median));
            const speedup = best / ours.timing.median;
            if (speedup <= 1) ok = false;
            parts.push(`${s.label} ${op} vs ${impl}: ${f(speedup)}x`);
          }
        }
      }
      out.push({ name, status: parts.length ? (ok ? 'PASS' : 'FAIL') : 'n/a', detail: parts.join(', ') || 'no comparable peer case' });
    }
  }
  {
    const name = `fresh output costs no more than the same allocation in plain JS (fresh - provided <= 1.1 x (new Float32Array(n).set(x) - y.set(x)) + 50 us, ${T} thr)`;
    let ok = true;
    const parts: string[] = [];
    for (const s of shapes) {
      const js = jsAllocCost(all, s.label);
      for (const op of ['fwd-train', 'fwd-infer', 'backward']) {
        const p = find(all, { impl: 'node-batchnorm', shape: s.label, op, output: 'provided', threads: T });
        const q = find(all, { impl: 'node-batchnorm', shape: s.label, op, output: 'fresh', threads: T });
        if (!p || !q || js === undefined) continue;
        const extra = q.timing.median - p.timing.median;
        const pass = extra <= 1.1 * js + 50e-6;
        if (!pass) { ok = false; parts.push(`${s.label} ${op}: +${ms(extra)} ms${pf(q)} vs JS +${ms(js)} ms${pf(find(all, { impl: 'js', shape: s.label, op: 'js-alloc-set' }))}`); }
      }
    }
    out.push({ name, status: ok ? 'PASS' : 'FAIL', detail: ok ? 'every shape and op' : parts.join('; ') });
  }
  return out;
}

export function verdictText(v: Verdict[]): string {
  return v.map((x) => `${x.status.padEnd(4)}  ${x.name}\n      ${x.detail}`).join('\n');
}

/** One row per shape at the target thread count, caller-provided outputs. */
export function summaryMarkdown(all: Result[], shapes: BenchShape[], run: RunInfo): string {
  const T = run.targetThreads;
  const lines = [
    `| shape | MiB (x) | in cache | copy plain GB/s | copy stream GB/s | fwd-train GB/s (x copy) | fwd-infer | fwd-infer in place | backward (x copy of 12 B) | core fwd-train / fwd-infer / backward (x copy) |`,
    '|---|---:|:---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const s of shapes) {
    const cp = find(all, { impl: 'copy', shape: s.label, op: 'copy8-plain', threads: T });
    const cs = find(all, { impl: 'copy', shape: s.label, op: 'copy8-stream', threads: T });
    const cell = (op: string, output: string, impl: 'node-batchnorm' | 'core' = 'node-batchnorm') => {
      const r = find(all, { impl, shape: s.label, op, output: output as Result['output'], threads: T });
      return r ? `${f(gbs(r), 1)} (${f(ratioToCopy(all, r))})` : '-';
    };
    const core = ['fwd-train', 'fwd-infer', 'backward'].map((op) => {
      const r = find(all, { impl: 'core', shape: s.label, op, output: 'provided', threads: T });
      return r ? f(ratioToCopy(all, r)) : '-';
    }).join(' / ');
    lines.push(`| ${s.label} | ${f(4 * s.total / 1024 ** 2, 1)} | ${inCache(s, run) ? 'yes' : 'no'} | ${cp ? f(gbs(cp), 1) : '-'} | ${cs ? f(gbs(cs), 1) : '-'} | ${cell('fwd-train', 'provided')} | ${cell('fwd-infer', 'provided')} | ${cell('fwd-infer', 'inplace')} | ${cell('backward', 'provided')} | ${core} |`);
  }
  return lines.join('\n');
}

export function freshMarkdown(all: Result[], shapes: BenchShape[], run: RunInfo): string {
  const T = run.targetThreads;
  const lines = [
    '| shape | JS: new Float32Array(n).set(x) - y.set(x), ms | fwd-train fresh - provided, ms | fwd-infer | backward |',
    '|---|---:|---:|---:|---:|',
  ];
  // Page faults per call in brackets: about one per 4 KiB of output when malloc handed out
  // never-touched memory, about none when it recycled a freed output.
  const faults = (r: Result | undefined) => (r?.timing.faults === undefined ? '' : ` [${Math.round(r.timing.faults)} pf]`);
  for (const s of shapes) {
    const js = jsAllocCost(all, s.label);
    const jsRow = find(all, { impl: 'js', shape: s.label, op: 'js-alloc-set' });
    const d = (op: string) => {
      const p = find(all, { impl: 'node-batchnorm', shape: s.label, op, output: 'provided', threads: T });
      const q = find(all, { impl: 'node-batchnorm', shape: s.label, op, output: 'fresh', threads: T });
      return p && q ? ms(q.timing.median - p.timing.median) + faults(q) : '-';
    };
    lines.push(`| ${s.label} | ${js === undefined ? '-' : ms(js) + faults(jsRow)} | ${d('fwd-train')} | ${d('fwd-infer')} | ${d('backward')} |`);
  }
  return lines.join('\n');
}

/**
 * What reading alone costs, from the core benchmark: a pass that reads x (the statistics) or x and
 * dy (backward's reductions) and writes nothing, as a share of the time of the copy the op is
 * judged against (same process, same threads). A schedule that reads everything first and writes
 * after cannot beat the op's copy by more than what this leaves for its writes.
 */
export function readMarkdown(all: Result[], shapes: BenchShape[], run: RunInfo): string {
  const T = run.targetThreads;
  const lines = [
    '| shape | in cache | read x GB/s | read x time / copy (8 B) time | core fwd-train (x copy) | read x, dy GB/s | read x, dy time / copy (12 B) time | core backward (x copy) |',
    '|---|:---:|---:|---:|---:|---:|---:|---:|',
  ];
  let any = false;
  for (const s of shapes) {
    const cells: string[] = [];
    for (const [op, fam, ours] of [['read-x', 8, 'fwd-train'], ['read-x-dy', 12, 'backward']] as const) {
      const r = find(all, { impl: 'core', shape: s.label, op, threads: T });
      // The faster copy of the op's bytes, as a time: the same baseline its "x copy" ratio uses.
      const copyGbs = bestCopy(all, s.label, T, fam, 'core');
      const copyTime = copyGbs ? (fam * s.total) / (copyGbs * 1e9) : undefined;
      const o = find(all, { impl: 'core', shape: s.label, op: ours, output: 'provided', threads: T });
      cells.push(r ? f(gbs(r), 1) : '-', r && copyTime ? f(r.timing.median / copyTime) : '-', o ? f(ratioToCopy(all, o)) : '-');
      any ||= r !== undefined;
    }
    lines.push(`| ${s.label} | ${inCache(s, run) ? 'yes' : 'no'} | ${cells.join(' | ')} |`);
  }
  return any ? lines.join('\n') : 'Not measured (run with --native).';
}

export function peersMarkdown(all: Result[], shapes: BenchShape[], run: RunInfo): string {
  const T = run.targetThreads;
  const peerRows = all.filter((r) => r.impl === 'onnxruntime-node' || r.impl === 'tfjs-wasm');
  if (!peerRows.length) return '_No peer installed in this run._';
  const lines = ['| shape | op | node-batchnorm ms (provided / fresh) | peer | peer thr | peer ms (provided / fresh) | peer time / ours (provided) |', '|---|---|---:|---|---:|---:|---:|'];
  for (const s of shapes) {
    for (const op of ['fwd-train', 'fwd-infer', 'backward']) {
      const ours = find(all, { impl: 'node-batchnorm', shape: s.label, op, output: 'provided', threads: T });
      const oursF = find(all, { impl: 'node-batchnorm', shape: s.label, op, output: 'fresh', threads: T });
      for (const impl of ['onnxruntime-node', 'tfjs-wasm'] as const) {
        const thrs = [...new Set(peerRows.filter((r) => r.impl === impl && r.shape === s.label && r.op === op).map((r) => r.threads))];
        for (const thr of thrs) {
          const p = find(all, { impl, shape: s.label, op, output: 'provided', threads: thr });
          const q = find(all, { impl, shape: s.label, op, output: 'fresh', threads: thr });
          const best = Math.min(...[p, q].filter((r): r is Result => !!r).map((r) => r.timing.median));
          lines.push(`| ${s.label} | ${op} | ${ours ? ms(ours.timing.median) : '-'} / ${oursF ? ms(oursF.timing.median) : '-'} | ${impl}${impl === 'tfjs-wasm' ? ' (NHWC)' : ''} | ${thr} | ${p ? ms(p.timing.median) : '-'} / ${q ? ms(q.timing.median) : '-'} | ${ours ? f(best / ours.timing.median) : '-'} |`);
        }
      }
    }
  }
  return lines.join('\n');
}

export function resultsMarkdown(all: Result[], shapes: BenchShape[], run: RunInfo, v: Verdict[]): string {
  const m = run.machine;
  const T = run.targetThreads;
  return `# Benchmark results

Generated by \`${run.command}\` (bench/run.ts) on ${m.date}, commit ${m.commit}. Re-run the same command to regenerate this file and [chart.svg](chart.svg).

- Machine: ${m.cpuModel}, ${cpusText(m)}, L2 ${mib(m.l2PerCore)}/core, L3 ${m.l3 ? mib(m.l3) : '?'}, ${m.memGiB} GiB, ${m.platform}${m.coreCaches ? `; ${m.coreCaches}` : ''}; load average at start ${m.loadAvg.map((x) => x.toFixed(2)).join(' ')}
- Node ${m.node}; addon ${run.binding}; SIMD level ${run.simdLevel}; copy kernel ${run.copyKernel}
- Threads measured: ${run.threads.join(', ')}; targets judged at ${T}. Time per case ~${run.secondsPerCase} s after warm-up; median and min per call.
- Verdicts use medians; "x copy (mins)" and "[mins ...]" give the same ratio from the fastest repetitions, which a busy machine disturbs least.
- GB/s counts the floor: 8 bytes per element for the forwards (read x, write y), 12 for backward (read x and dy, write dx). "x copy" is that GB/s over the faster of a plain and a streaming (non-temporal store) copy of the same number of bytes, same threads, measured in the same process right before the shape's ops.
- "In cache": x (one tensor) <= ${mib(run.cacheBytes)}, the L2 of all cores; the bandwidth targets apply to the other shapes. The ratio to a copy of the same bytes stays meaningful at every size (the copy runs from the same cache level).
- Peers: ${run.peers.length ? run.peers.join('; ') : 'none'}
${run.notes.length ? run.notes.map((n) => `- Note: ${n}`).join('\n') + '\n' : ''}
## Targets (${T} threads, float32, caller-provided outputs)

\`\`\`
${verdictText(v)}
\`\`\`

## Summary (${T} threads, caller-provided outputs)

${summaryMarkdown(all, shapes, run)}

![GB/s per shape and op next to the copy bandwidth](chart.svg)

## Freshly allocated outputs (${T} threads): extra time over a provided output

${freshMarkdown(all, shapes, run)}

## Reading alone (core benchmark, ${T} threads)

A pass that only reads: x (what the statistics read) and x with dy (what backward's reductions read), timed as a share of the copy each op is judged against. Training and backward must read all of a channel before writing any of it, so where a channel's data does not stay in cache, or where the reads cannot overlap the previous piece's writes, these shares come on top of the writes.

${readMarkdown(all, shapes, run)}

## Peers

${peersMarkdown(all, shapes, run)}

## Per-call overhead, tiny tensor

\`\`\`
${tinyTable(all)}
\`\`\`

## Every case

\`\`\`
${textTable(all)}
\`\`\`
`;
}

