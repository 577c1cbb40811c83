#!/usr/bin/env node
// Interleaved A/B of two builds of bn_bench_core (e.g. main's core and a branch's): rounds of
// A then B (order alternating per round), each with --json and the same arguments, then per case
// the ratio B/A of the medians per round (and of the minimum times), and each build's ratio to the
// copy of the same bytes measured in the same process. The machine's load average is printed with
// every round: on a shared machine only same-run ratios mean anything.
//
//   node bench/native/ab.mjs A_BINARY B_BINARY [--rounds 3] [--out FILE.json] -- [bn_bench_core args]
//   node bench/native/ab.mjs --from FILE.json          # the summary of a saved run
//
// Example (main's core built into /tmp/main-build):
//   node bench/native/ab.mjs /tmp/main-build/bn_bench_core build-bench/bn_bench_core --rounds 3 -- \
//     --shapes 32x256x56x56,32x2048x7x7 --layout nchw,nhwc --threads 1,2 --no-fresh --time 0.3
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';

const argv = process.argv.slice(2);
const dd = argv.indexOf('--');
const own = dd >= 0 ? argv.slice(0, dd) : argv;
const passArgs = dd >= 0 ? argv.slice(dd + 1) : [];
const opt = (name, def) => {
  const i = own.indexOf(name);
  return i >= 0 ? own[i + 1] : def;
};

let runs;
const from = opt('--from');
if (from) {
  runs = JSON.parse(fs.readFileSync(from, 'utf8'));
} else {
  const [a, b] = own.filter((x, i) => !x.startsWith('--') && !(i > 0 && own[i - 1].startsWith('--')));
  if (!a || !b) {
    console.error('usage: ab.mjs A_BINARY B_BINARY [--rounds N] [--out FILE] -- [bn_bench_core args]');
    process.exit(2);
  }
  const rounds = Number(opt('--rounds', '3'));
  runs = { a, b, args: passArgs, rounds: [] };
  for (let r = 0; r < rounds; r++) {
    const order = r % 2 === 0 ? ['a', 'b'] : ['b', 'a'];
    const round = { load: os.loadavg(), date: new Date().toISOString() };
    for (const which of order) {
      const out = execFileSync(runs[which], [...passArgs, '--json'], { maxBuffer: 1 << 26 }).toString();
      round[which] = JSON.parse(out.slice(out.indexOf('{')));
    }
    round.loadAfter = os.loadavg();
    runs.rounds.push(round);
    console.error(`round ${r + 1}/${rounds} done, load ${round.load.map((x) => x.toFixed(1)).join(' ')} -> ${round.loadAfter.map((x) => x.toFixed(1)).join(' ')}`);
  }
  const file = opt('--out');
  if (file) fs.writeFileSync(file, JSON.stringify(runs, null, 1));
}

// Per build and round: each op's ratio to the faster copy (8 bytes per element forward, 12
// backward) of the same shape and threads, and its median and min.
const key = (r) => `${r.shape}|${r.op}|${r.output}|${r.threads}`;
function index(res) {
  const m = new Map();
  const copy = new Map();
  for (const r of res.rows) {
    if (r.op.startsWith('copy')) {
      const k = `${r.shape}|${r.threads}|${r.op.startsWith('copy8') ? 8 : 12}`;
      copy.set(k, Math.min(copy.get(k) ?? Infinity, r.median));
    }
  }
  for (const r of res.rows) {
    if (r.op.startsWith('copy') || r.op.startsWith('read') || r.op === 'tiny-infer') continue;
    const c = copy.get(`${r.shape}|${r.threads}|${r.op === 'backward' ? 12 : 8}`);
    m.set(key(r), { median: r.median, min: r.min, ofCopy: c / r.median });
  }
  return m;
}
const med = (v) => {
  const s = [...v].sort((x, y) => x - y);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const rounds = runs.rounds.map((r) => ({ a: index(r.a), b: index(r.b) }));
console.log(`A = ${runs.a}\nB = ${runs.b}\nargs: ${runs.args.join(' ')}`);
console.log(`loads (1/5/15 min) per round: ${runs.rounds.map((r) => r.load.map((x) => x.toFixed(1)).join('/')).join('; ')}`);
console.log('\n| case | threads | A ms | B ms | B/A (rounds) | B/A of mins | A x copy | B x copy |');
console.log('|---|---:|---:|---:|---|---:|---:|---:|');
for (const k of rounds[0].a.keys()) {
  if (!rounds.every((r) => r.a.has(k) && r.b.has(k))) continue;
  const [shape, op, output, threads] = k.split('|');
  const ratios = rounds.map((r) => r.b.get(k).median / r.a.get(k).median);
  const minA = Math.min(...rounds.map((r) => r.a.get(k).min));
  const minB = Math.min(...rounds.map((r) => r.b.get(k).min));
  const f = (x) => x.toFixed(2);
  console.log(`| ${shape} ${op} ${output} | ${threads} | ${f(1e3 * med(rounds.map((r) => r.a.get(k).median)))} | ${f(1e3 * med(rounds.map((r) => r.b.get(k).median)))} | ${f(med(ratios))} (${ratios.map(f).join(' ')}) | ${f(minB / minA)} | ${f(med(rounds.map((r) => r.a.get(k).ofCopy)))} | ${f(med(rounds.map((r) => r.b.get(k).ofCopy)))} |`);
}
