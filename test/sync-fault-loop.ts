// Loops one Gloo fault scenario (a rank killed at a chosen moment) and checks that every surviving
// rank reports a coded error within the group's timeout (plus slack). When one does not, it dumps
// the threads' stacks of every process still alive with gdb, then kills them. For CI soak runs and
// for hunting hangs under load; not a mocha test.
//   node dist/test/sync-fault-loop.js --variant joined|header|forward|random|connect --n 200
//        [--ranks 4] [--timeout-ms 3000] [--slack-ms 6000] [--out DIR]
import { ChildProcess, execFileSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { processProbe, ProbeResult } from './sync-harness';
import type { ProbeTask } from './sync-probe';

const args = process.argv.slice(2);
const arg = (k: string, d: string): string => {
  const i = args.indexOf(`--${k}`);
  return i >= 0 ? args[i + 1] : d;
};
const variant = arg('variant', 'joined');
const n = Number(arg('n', '50'));
const ranks = Number(arg('ranks', '4'));
const timeoutMs = Number(arg('timeout-ms', '3000'));
const slackMs = Number(arg('slack-ms', '6000'));
const out = arg('out', '/tmp/sync-fault-loop');
const CODES = ['ERR_BN_SYNC_PEER_LOST', 'ERR_BN_SYNC_TIMEOUT', 'ERR_BN_SYNC_RENDEZVOUS'];
// How the surviving ranks ended ("joined PEER_LOST", "rendezvous TIMEOUT", ...), with one message each.
const outcomes = new Map<string, { count: number; message: string }>();

// 'header': 600 channels, so that the statistics (2C + 1 values) follow the header's all-gather.
const C = variant === 'header' ? 600 : 3;
const step = (r: number): ProbeTask => ({ probe: 'steps', C, shape: [2, C, 4], useAsync: r % 2 === 1 });

function tasks(): ProbeTask[] {
  const ts = Array.from({ length: ranks }, (_, r) => step(r));
  if (variant === 'joined') ts[1] = { probe: 'hang' };
  else if (variant === 'header' || variant === 'forward') ts[1] = { probe: 'die', dieAt: variant, C, shape: [2, C, 4] };
  return ts;
}

function stacks(children: Map<number, ChildProcess>, iter: number): string {
  fs.mkdirSync(out, { recursive: true });
  const file = path.join(out, `hang-${variant}-${iter}-${Date.now()}.txt`);
  let text = '';
  for (const [rank, c] of children) {
    if (c.exitCode !== null || c.signalCode !== null || !c.pid) continue;
    text += `\n===== rank ${rank} pid ${c.pid} =====\n`;
    try {
      text += execFileSync('gdb', ['-p', String(c.pid), '-batch', '-ex', 'set pagination off', '-ex', 'thread apply all bt'], { encoding: 'utf8', timeout: 60000, stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (e) {
      text += `gdb failed: ${(e as Error).message}\n`;
    }
  }
  fs.writeFileSync(file, text);
  return file;
}

async function once(iter: number): Promise<string | null> {
  const children = new Map<number, ChildProcess>();
  const ends = new Map<number, string>(); // how each process exited
  let killedAt = 0;
  const kill = (c: ChildProcess) => {
    killedAt = Date.now();
    c.kill('SIGKILL');
  };
  const started = Date.now();
  const run = processProbe(tasks(), {
    timeoutMs,
    onSpawn: (rank, child) => {
      children.set(rank, child);
      child.once('exit', (code, signal) => ends.set(rank, signal ?? `code ${code}`));
      if (rank !== 1) return;
      if (variant === 'joined') child.once('message', () => kill(child));
      if (variant === 'random') child.once('message', () => setTimeout(() => kill(child), Math.random() * 40));
      if (variant === 'connect') setTimeout(() => kill(child), Math.random() * 400);
      if (variant === 'header' || variant === 'forward') child.once('exit', () => { killedAt = Date.now(); });
    },
  });
  const limit = timeoutMs + slackMs;
  let timer: NodeJS.Timeout | undefined;
  const hung = new Promise<'hang'>((r) => { timer = setTimeout(() => r('hang'), limit + 2000); });
  const res = await Promise.race([run, hung]);
  clearTimeout(timer);
  if (res === 'hang') {
    const file = stacks(children, iter);
    for (const c of children.values()) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await run.catch(() => undefined);
    return `HANG: a rank had not reported ${limit + 2000} ms after the start; stacks in ${file}`;
  }
  const rs = res as ProbeResult[];
  for (let r = 0; r < ranks; r++) {
    if (r === 1) continue;
    const ev = rs[r].events;
    const err = ev.find((e) => e.code !== undefined);
    if (!err || !CODES.includes(err.code as string)) return `rank ${r}: no coded error (the process ended by ${ends.get(r)}): ${JSON.stringify(ev)}`;
    const after = ev.find((e) => e.what === 'after');
    if (after && after.code !== 'ERR_BN_SYNC_BROKEN') return `rank ${r}: the group is not broken after the error: ${JSON.stringify(ev)}`;
    const kind = `${ev[0].what === 'joined' ? 'joined' : 'rendezvous'} ${(err.code as string).replace('ERR_BN_SYNC_', '')}`;
    const o = outcomes.get(kind) ?? { count: 0, message: err.message ?? '' };
    o.count++;
    outcomes.set(kind, o);
    const late = (err.at ?? Date.now()) - (killedAt || started);
    if (late > limit) return `rank ${r}: error ${late} ms after the kill (limit ${limit}): ${JSON.stringify(ev)}`;
  }
  return null;
}

async function main(): Promise<void> {
  let bad = 0;
  const t0 = Date.now();
  for (let i = 1; i <= n; i++) {
    const why = await once(i);
    if (why) {
      bad++;
      console.log(`#${i} ${variant}: ${why}`);
    }
    if (i % 10 === 0) console.log(`${variant}: ${i}/${n} runs, ${bad} failed, ${((Date.now() - t0) / i).toFixed(0)} ms per run`);
  }
  for (const [k, o] of outcomes) console.log(`  survivors ${k}: ${o.count} (e.g. ${o.message.slice(0, 300)})`);
  console.log(`RESULT ${variant}: ${n} runs, ${bad} failed (ranks ${ranks}, timeout ${timeoutMs} ms)`);
  process.exit(bad ? 1 : 0);
}

void main();
