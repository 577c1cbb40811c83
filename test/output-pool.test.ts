// The output pool (native/addon/output_pool.h, lib/output-pool.ts): fresh outputs of >= 1 MiB come
// from blocks freed by earlier outputs of the same thread. Checked: results equal (bit for bit) to
// the same calls into provided outputs pre-filled with NaN, with the pool on and off and from
// reused blocks that held NaN; the bound holds; a block comes back only after its ArrayBuffer was
// collected; pooled buffers cannot be transferred; workers use their own pool and exit cleanly;
// disabling and the environment variable work; a process exits 0 with pooled outputs outstanding.
import { expect } from 'chai';
import { spawnSync } from 'child_process';
import * as path from 'path';
import * as bn from '../lib';
import { native } from '../lib/load';
import { collect } from './helpers/gc';

const LIB = path.resolve(__dirname, '..', 'lib');
const MiB = 1 << 20;


function filled(n: number, f: (i: number) => number): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = f(i);
  return a;
}

function sameBits(a: Float32Array, b: Float32Array, what: string): void {
  expect(a.length, what).to.equal(b.length);
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) expect.fail(`${what}: element ${i}: ${a[i]} vs ${b[i]}`);
}

function run(script: string, env: Record<string, string> = {}): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', env: { ...process.env, ...env }, timeout: 60000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('output pool', function () {
  this.timeout(60000);
  const initial = bn.outputPoolStats().maxBytes;
  // Each test starts from an empty pool: earlier outputs collected, their blocks freed.
  beforeEach(async () => {
    await collect();
    bn.setOutputPool({ maxBytes: 0 });
    bn.setOutputPool({ maxBytes: initial });
  });
  afterEach(() => bn.setOutputPool({ maxBytes: initial, idleSeconds: 30 }));

  // 18 x 8 x 48 x 40 floats = 1.05 MiB per tensor, just over the pool's smallest output; plus a
  // shape whose size is not a whole number of pages, and one with a SIMD tail per channel.
  const shapes = [[18, 8, 48, 40], [3, 5, 137, 131], [2, 7, 19999]];

  it('is on by default, bounded, and says so', () => {
    const s = bn.outputPoolStats();
    expect(s.enabled).to.equal(true);
    expect(s.maxBytes).to.be.above(0);
    expect(s.minOutputBytes).to.equal(MiB);
    expect(s.idleSeconds).to.equal(30);
    for (const k of ['idleBytes', 'idleBlocks', 'lentBytes', 'lentBlocks', 'reuses', 'allocations', 'overBound', 'awaitingReturns', 'frees'] as const) {
      expect(s[k], k).to.be.a('number').and.to.be.at.least(0);
    }
  });

  for (const shape of shapes) {
    it(`[${shape}]: fresh outputs equal provided ones, pool on (new and reused blocks) and off`, async () => {
      const n = shape.reduce((a, b) => a * b), C = shape[1];
      const x = filled(n, (i) => Math.sin(i * 0.37) * 3 + (i % 7));
      const dy = filled(n, (i) => Math.cos(i * 0.11));
      const weight = filled(C, (c) => 1 + 0.1 * c), bias = filled(C, (c) => -0.2 * c);
      const rm = filled(C, (c) => 0.3 * c), rv = filled(C, (c) => 1 + 0.05 * c);
      const nan = () => new Float32Array(n).fill(NaN);
      for (const channelsLast of [false, true]) {
        const common = { weight, bias, channelsLast };
        const t = bn.batchNormTraining(x, shape, { ...common, out: nan() });
        const inf = { ...common, runningMean: rm, runningVar: rv };
        const i = bn.batchNormInference(x, shape, { ...inf, out: nan() });
        const bw = { weight, training: true, mean: t.batchMean, invstd: t.batchInvstd, channelsLast };
        const d = bn.batchNormBackward(x, dy, shape, { ...bw, out: nan() });
        // Each output is poisoned and dropped, so a reused block starts out as NaN. The outputs are
        // locals of once(): an async function's locals live on while it awaits.
        const check = async (label: string) => {
          const once = async () => {
            const y = bn.batchNormTraining(x, shape, common).y as Float32Array;
            sameBits(y, t.y as Float32Array, `${label} training`);
            y.fill(NaN);
            const yi = bn.batchNormInference(x, shape, inf) as Float32Array;
            sameBits(yi, i as Float32Array, `${label} inference`);
            yi.fill(NaN);
            const yia = (await bn.batchNormInferenceAsync(x, shape, inf)) as Float32Array;
            sameBits(yia, i as Float32Array, `${label} inference async`);
            yia.fill(NaN);
            const dx = bn.batchNormBackward(x, dy, shape, bw).dx as Float32Array;
            sameBits(dx, d.dx as Float32Array, `${label} backward`);
            dx.fill(NaN);
          };
          for (let k = 0; k < 2; k++) {
            await once();
            await collect();
          }
        };
        const before = bn.outputPoolStats();
        await check(`pool on${channelsLast ? ' channels-last' : ''}`);
        const after = bn.outputPoolStats();
        expect(after.allocations + after.reuses - before.allocations - before.reuses, 'outputs served by the pool').to.equal(8);
        expect(after.reuses - before.reuses, 'outputs from reused blocks').to.be.at.least(4);
        bn.setOutputPool({ maxBytes: 0 });
        await check(`pool off${channelsLast ? ' channels-last' : ''}`);
        const off = bn.outputPoolStats();
        expect(off.allocations + off.reuses, 'nothing from the pool while it is off').to.equal(after.allocations + after.reuses);
        bn.setOutputPool({ maxBytes: initial });
      }
    });
  }

  it('the layer API: forward and backward outputs come from the pool and are right', async () => {
    const shape = [18, 8, 48, 40], n = 18 * 8 * 48 * 40;
    const x = filled(n, (i) => (i % 13) - 6 + Math.sin(i));
    const dy = filled(n, (i) => Math.cos(i * 0.5));
    const ref = new bn.BatchNorm2d(8);
    const yRef = ref.forward(x, shape, new Float32Array(n).fill(NaN)) as Float32Array;
    const dxRef = ref.backward(dy, new Float32Array(n).fill(NaN)) as Float32Array;
    const L = new bn.BatchNorm2d(8);
    const s0 = bn.outputPoolStats();
    const step = (k: number) => {
      L.zeroGrad();
      const y = L.forward(x, shape) as Float32Array;
      sameBits(y, yRef, `step ${k} y`);
      const dx = L.backward(dy) as Float32Array;
      sameBits(dx, dxRef, `step ${k} dx`);
      y.fill(NaN);
      dx.fill(NaN);
      L.releaseSaved();
    };
    for (let k = 0; k < 3; k++) {
      step(k);
      await collect();
    }
    expect(bn.outputPoolStats().reuses - s0.reuses, 'reused blocks').to.be.at.least(2);
  });

  it('never holds more than maxBytes, idle and lent together', async () => {
    const shape = [18, 8, 48, 40], n = 18 * 8 * 48 * 40;
    const x = filled(n, (i) => i % 11);
    const want = bn.batchNormTraining(x, shape, { out: new Float32Array(n) }).y as Float32Array;
    await collect();
    const bound = Math.floor(3.5 * 4 * n);  // room for three blocks
    bn.setOutputPool({ maxBytes: bound });
    const s0 = bn.outputPoolStats();
    const fill = () => {
      const kept: Float32Array[] = [];
      for (let k = 0; k < 8; k++) {
        const y = bn.batchNormTraining(x, shape).y as Float32Array;
        sameBits(y, want, `output ${k}`);
        kept.push(y);
        const s = bn.outputPoolStats();
        expect(s.idleBytes + s.lentBytes, `pool bytes after output ${k}`).to.be.at.most(bound);
      }
      const s1 = bn.outputPoolStats();
      expect(s1.lentBlocks, 'blocks lent while all outputs live').to.equal(3);
      expect(s1.overBound - s0.overBound, 'plain allocations once full').to.equal(5);
    };
    fill();
    await collect();
    const s2 = bn.outputPoolStats();
    expect(s2.idleBytes + s2.lentBytes).to.be.at.most(bound);
    expect(s2.lentBlocks).to.equal(0);
    // Lowering the bound frees idle blocks at once.
    bn.setOutputPool({ maxBytes: 4 * n + 8192 });
    const s3 = bn.outputPoolStats();
    expect(s3.idleBytes).to.be.at.most(4 * n + 8192);
    expect(s3.idleBlocks).to.be.at.most(1);
  });

  it('a loop that never yields gets at most 64 MiB of new blocks (maxBytes / 8 at least), then plain outputs until blocks come back', async () => {
    const shape = [18, 8, 48, 40], n = 18 * 8 * 48 * 40;
    const block = Math.ceil(4 * n / 4096) * 4096;
    const x = filled(n, (i) => (i % 5) - 2);
    const want = bn.batchNormInference(x, shape, { runningMean: x.subarray(0, 8), runningVar: x.subarray(8, 16).map(Math.abs), out: new Float32Array(n) });
    const opts = { runningMean: x.subarray(0, 8), runningVar: x.subarray(8, 16).map(Math.abs) };
    const syncLoop = (k: number) => {
      for (let i = 0; i < k; i++) {
        const y = bn.batchNormInference(x, shape, opts) as Float32Array;
        if (i % 17 === 0) sameBits(y, want as Float32Array, `output ${i}`);
      }
    };
    bn.setOutputPool({ maxBytes: 256 << 20 });  // maxBytes / 8 is below the 64 MiB floor
    const base = bn.outputPoolStats();
    syncLoop(100);  // every output dropped at once, but no turn of the event loop
    const s0 = bn.outputPoolStats();
    const fresh = Math.floor((64 << 20) / block);
    expect(s0.allocations - base.allocations, 'new blocks').to.equal(fresh);
    expect(s0.awaitingReturns - base.awaitingReturns, 'plain outputs').to.equal(100 - fresh);
    expect(s0.lentBytes).to.be.at.most(64 << 20);
    await collect();  // the turn: the dead outputs' blocks come back
    const s1 = bn.outputPoolStats();
    expect(s1.lentBlocks).to.equal(0);
    expect(s1.idleBlocks).to.equal(fresh);
    syncLoop(30);
    const s2 = bn.outputPoolStats();
    expect(s2.reuses - s1.reuses, 'served from the returned blocks').to.equal(30);
    expect(s2.allocations).to.equal(s1.allocations);
  });

  it('a loop whose blocks came back may take twice as much in new blocks as it held then, when the next returns are late', async () => {
    const shape = [18, 8, 48, 40], n = 18 * 8 * 48 * 40;
    const block = Math.ceil(4 * n / 4096) * 4096;
    const x = filled(n, (i) => (i % 5) - 2);
    const opts = { runningMean: x.subarray(0, 8), runningVar: x.subarray(8, 16).map(Math.abs) };
    const out = () => bn.batchNormInference(x, shape, opts) as Float32Array;
    bn.setOutputPool({ maxBytes: 512 << 20 });  // maxBytes / 8 = the 64 MiB floor
    const base = bn.outputPoolStats();
    // A working set of 101 blocks (106 MiB), built in two steps of under 64 MiB with a return
    // between them; the last return happens while all 101 are lent.
    const held: Float32Array[] = [];
    for (let i = 0; i < 50; i++) held.push(out());
    out();
    await collect();
    for (let i = 0; i < 50; i++) held.push(out());
    out();
    await collect();
    const s0 = bn.outputPoolStats();
    expect(s0.allocations - base.allocations, 'blocks of the working set').to.equal(101);
    expect(s0.awaitingReturns - base.awaitingReturns).to.equal(0);
    held.length = 0;
    await collect();
    const s1 = bn.outputPoolStats();
    expect(s1.idleBlocks).to.equal(101);
    // Late returns: 400 outputs without a turn of the event loop. The 101 idle blocks, then 202
    // new ones (twice the working set; the 64 MiB floor allows 60), then plain outputs.
    for (let i = 0; i < 400; i++) out();
    const s2 = bn.outputPoolStats();
    expect(s2.reuses - s1.reuses, 'from idle blocks').to.equal(101);
    expect(s2.allocations - s1.allocations, 'new blocks').to.equal(202);
    expect(s2.allocations - s1.allocations).to.be.above(Math.floor((64 << 20) / block));
    expect(s2.awaitingReturns - s1.awaitingReturns, 'plain outputs').to.equal(97);
    expect(s2.idleBytes + s2.lentBytes).to.be.at.most(512 << 20);
    // A new bound forgets the working set: the floor again.
    await collect();
    bn.setOutputPool({ maxBytes: 0 });
    bn.setOutputPool({ maxBytes: 512 << 20 });
    const s3 = bn.outputPoolStats();
    for (let i = 0; i < 100; i++) out();
    const s4 = bn.outputPoolStats();
    expect(s4.allocations - s3.allocations, 'new blocks after a new bound').to.equal(Math.floor((64 << 20) / block));
  });

  it('reuses a block only after its ArrayBuffer was collected', async () => {
    const shape = [18, 8, 48, 40], n = 18 * 8 * 48 * 40;
    const x = filled(n, (i) => (i % 5) - 2);
    const a = bn.batchNormTraining(x, shape).y as Float32Array;
    const copyOfA = a.slice();
    const s0 = bn.outputPoolStats();
    expect(s0.lentBlocks).to.equal(1);
    await collect();  // a is alive: its block must stay lent
    const s1 = bn.outputPoolStats();
    expect(s1.lentBlocks, 'a still lent').to.equal(1);
    expect(s1.idleBlocks, 'nothing idle while a lives').to.equal(0);
    const b = bn.batchNormTraining(filled(n, (i) => i % 3), shape).y as Float32Array;
    expect(bn.outputPoolStats().reuses, 'b is a new block').to.equal(s1.reuses);
    sameBits(a, copyOfA, 'a untouched by the call that made b');
    expect(b.buffer).to.not.equal(a.buffer);
  });

  it('an output whose buffer alone is still referenced stays lent', async () => {
    const shape = [18, 8, 48, 40], n = 18 * 8 * 48 * 40;
    const x = filled(n, (i) => (i % 5) - 2);
    const bufferOnly = () => bn.batchNormTraining(x, shape).y.buffer;  // the view does not escape
    let buf: ArrayBufferLike | null = bufferOnly();
    await collect();
    expect(bn.outputPoolStats().lentBlocks, 'buffer referenced').to.equal(1);
    expect(bn.outputPoolStats().idleBlocks).to.equal(0);
    expect(buf.byteLength).to.equal(4 * n);
    buf = null;
    await collect();
    expect(bn.outputPoolStats().lentBlocks, 'buffer dropped').to.equal(0);
    expect(bn.outputPoolStats().idleBlocks).to.equal(1);
  });

  it('a dropped output comes back and is reused', async () => {
    const shape = [18, 8, 48, 40], n = 18 * 8 * 48 * 40;
    const x = filled(n, (i) => (i % 5) - 2);
    (bn.batchNormTraining(x, shape).y as Float32Array).fill(NaN);
    await collect();
    const s0 = bn.outputPoolStats();
    expect(s0.lentBlocks).to.equal(0);
    expect(s0.idleBlocks).to.equal(1);
    const y = bn.batchNormTraining(x, shape).y as Float32Array;
    const s1 = bn.outputPoolStats();
    expect(s1.reuses).to.equal(s0.reuses + 1);
    expect(s1.idleBlocks).to.equal(0);
    expect(y.some((v) => Number.isNaN(v))).to.equal(false);
  });

  it('blocks coming back start no collection: V8 is told of them at the next take', () => {
    // V8 lowers its external-memory limit to 64 MiB over the lowest level as it sweeps dead
    // ArrayBuffers; each return reported from its finalizer then passed the limit and started a
    // full collection of its own. In a child: a clean heap, and its collections counted alone.
    const script = `const v8 = require('v8'); v8.setFlagsFromString('--expose-gc'); const gc = require('vm').runInNewContext('gc');
      const { PerformanceObserver, constants } = require('perf_hooks');
      const pool = require(${JSON.stringify(path.join(LIB, 'output-pool'))});
      const majors = [];
      new PerformanceObserver((l) => { for (const e of l.getEntries()) if (e.detail.kind === constants.NODE_PERFORMANCE_GC_MAJOR) majors.push(e.startTime); }).observe({ entryTypes: ['gc'] });
      (async () => {
        let held = [];
        for (let i = 0; i < 6; i++) held.push(pool.takePooled(100 << 20));  // never touched: no real memory
        if (held.some((b) => b === null)) throw new Error('not pooled');
        held = null;
        gc();
        const t0 = performance.now();
        await new Promise((r) => setTimeout(r, 300));  // the finalizers run, and any collection they start
        const idle = pool.outputPoolStats().idleBlocks, reuses = pool.outputPoolStats().reuses;
        const again = pool.takePooled(100 << 20);
        process.stdout.write(JSON.stringify({ idle, majors: majors.filter((t) => t > t0).length, reused: again !== null && pool.outputPoolStats().reuses === reuses + 1 }));
      })();`;
    const r = run(script);
    expect(r.status, r.stderr).to.equal(0);
    const got = JSON.parse(r.stdout) as { idle: number; majors: number; reused: boolean };
    expect(got.idle, 'blocks came back').to.be.at.least(3);
    expect(got.majors, 'full collections after the returns').to.equal(0);
    expect(got.reused, 'the next take reuses one').to.equal(true);
  });

  it('a loop with large fresh outputs makes V8 scavenge for none of its small arrays', () => {
    // V8 scavenges before a backing store of its own while 32 MiB or more of ArrayBuffers are
    // young: the saved statistics, parameter snapshots and gradients of each call did, after each
    // fresh 33.5 MB output. In a child: its minor collections counted alone.
    const script = `const { PerformanceObserver, constants } = require('perf_hooks');
      const bn = require(${JSON.stringify(LIB)});
      const minors = [];
      new PerformanceObserver((l) => { for (const e of l.getEntries()) if (e.detail.kind === constants.NODE_PERFORMANCE_GC_MINOR) minors.push(e.startTime); }).observe({ entryTypes: ['gc'] });
      const shape = [8, 64, 128, 128], n = 8 * 64 * 128 * 128;
      const x = new Float32Array(n).map((v, i) => (i % 13) - 6), dy = new Float32Array(n).map((v, i) => (i % 7) - 3);
      const layer = new bn.BatchNorm2d(64);
      const tick = () => new Promise((r) => setImmediate(r));
      (async () => {
        let t0 = 0, last = null;
        for (let k = 0; k < 14; k++) {
          if (k === 4) t0 = performance.now();  // x and dy promoted, the pool filled
          const y = layer.forward(x, shape);
          const dx = layer.backward(dy);
          last = [y, dx, layer.gradWeight[0]];
          await tick();
        }
        await tick();
        process.stdout.write(JSON.stringify({ minors: minors.filter((t) => t > t0).length, finite: Number.isFinite(last[0][5] + last[1][7] + last[2]) }));
      })();`;
    const r = run(script);
    expect(r.status, r.stderr).to.equal(0);
    const got = JSON.parse(r.stdout) as { minors: number; finite: boolean };
    expect(got.finite).to.equal(true);
    expect(got.minors, 'scavenges in 10 steps').to.equal(0);
  });

  it('small arrays of a call are zero-filled where the op does not write them, and stay with their thread', async () => {
    const n = 4 * 3 * 5 * 5;
    const x = filled(n, (i) => (i % 9) - 4);
    const r = bn.batchNormTraining(x, [4, 3, 5, 5]);
    const dy = filled(n, (i) => (i % 5) - 2), weight = new Float32Array([1, 2, 3]);
    const opts = { training: true, weight, mean: r.batchMean, invstd: r.batchInvstd, accumulate: true };
    const g = bn.batchNormBackward(x, dy, [4, 3, 5, 5], opts);
    const ref = bn.batchNormBackward(x, dy, [4, 3, 5, 5], { ...opts, gradWeight: new Float32Array(3), gradBias: new Float32Array(3) });
    sameBits(g.gradWeight as Float32Array, ref.gradWeight as Float32Array, 'gradWeight accumulated into a new array');
    sameBits(g.gradBias as Float32Array, ref.gradBias as Float32Array, 'gradBias accumulated into a new array');
    const { MessageChannel } = await import('worker_threads');
    const mc = new MessageChannel();
    const want = (r.saveMean as Float32Array).slice();
    try { mc.port1.postMessage(r.saveMean, [r.saveMean.buffer as ArrayBuffer]); } catch (e) { expect((e as Error).name).to.equal('DataCloneError'); }
    expect(r.saveMean.length, 'still attached').to.equal(3);
    sameBits(r.saveMean as Float32Array, want, 'saveMean');
    mc.port1.close();
  });

  it('pooled outputs are never transferred to another thread (refused, or copied: Node 20 ignores them in transfer lists)', async () => {
    const n = 18 * 8 * 48 * 40;
    const y = bn.batchNormTraining(filled(n, (i) => i % 9), [18, 8, 48, 40]).y as Float32Array;
    const want = y.slice();
    expect(bn.outputPoolStats().lentBlocks).to.equal(1);
    const { MessageChannel } = await import('worker_threads');
    const mc = new MessageChannel();
    const got = new Promise<Float32Array>((resolve) => mc.port2.once('message', resolve));
    try { mc.port1.postMessage(y, [y.buffer as ArrayBuffer]); } catch (e) { expect((e as Error).name).to.equal('DataCloneError'); }
    try { structuredClone(y.buffer, { transfer: [y.buffer] }); } catch (e) { expect((e as Error).name).to.equal('DataCloneError'); }
    expect(y.length, 'still attached').to.equal(n);
    expect(y.buffer.byteLength).to.equal(4 * n);
    sameBits(y, want, 'contents');
    const received = await Promise.race([got, new Promise<null>((r) => setTimeout(() => r(null), 200))]);
    if (received) {
      sameBits(received, want, 'the copy received');
      expect(received.buffer).to.not.equal(y.buffer);
    }
    mc.port1.close();
  });

  it('an external ArrayBuffer Node refuses to create (raw binding: over buffer.constants.MAX_LENGTH) gives undefined, no error, no leak', () => {
    bn.setOutputPool({ maxBytes: 2 ** 40 });  // the block itself is never touched: no real memory
    const s0 = bn.outputPoolStats();
    expect(native().takeOutput(2 ** 32 + 4096)).to.equal(undefined);
    const s1 = bn.outputPoolStats();
    expect(s1.lentBlocks).to.equal(s0.lentBlocks);
    expect(s1.idleBlocks).to.equal(s0.idleBlocks);
    expect(s1.enabled, 'still on: only a sandbox refusal turns it off').to.equal(true);
    const y = bn.batchNormTraining(filled(18 * 8 * 48 * 40, (i) => i % 3), [18, 8, 48, 40]).y;
    expect(bn.outputPoolStats().lentBlocks).to.equal(s0.lentBlocks + 1);
    expect(y.length).to.equal(18 * 8 * 48 * 40);
  });

  it('setOutputPool checks its argument', () => {
    const bad: Array<[unknown, string]> = [
      [undefined, 'ERR_BN_INVALID_ARG_TYPE'], [{}, 'ERR_BN_INVALID_ARG_TYPE'], [{ maxBytes: '1' }, 'ERR_BN_INVALID_ARG_TYPE'],
      [{ maxBytes: -1 }, 'ERR_BN_OUT_OF_RANGE'], [{ maxBytes: 1.5 }, 'ERR_BN_OUT_OF_RANGE'], [{ maxBytes: NaN }, 'ERR_BN_OUT_OF_RANGE'],
      [{ maxBytes: 2 ** 53 }, 'ERR_BN_OUT_OF_RANGE'], [{ maxbytes: 1 }, 'ERR_BN_UNKNOWN_OPTION'], [5, 'ERR_BN_INVALID_ARG_TYPE'],
      [{ idleSeconds: '3' }, 'ERR_BN_INVALID_ARG_TYPE'], [{ idleSeconds: -1 }, 'ERR_BN_OUT_OF_RANGE'], [{ idleSeconds: NaN }, 'ERR_BN_OUT_OF_RANGE'],
      [{ maxBytes: 1 << 20, idleSeconds: Infinity }, 'ERR_BN_OUT_OF_RANGE'],
    ];
    for (const [arg, code] of bad) {
      expect(() => bn.setOutputPool(arg as { maxBytes: number }), JSON.stringify(arg) ?? 'undefined')
        .to.throw(/setOutputPool/).with.property('code', code);
    }
    expect(bn.outputPoolStats().maxBytes).to.equal(initial);
    expect(bn.outputPoolStats().idleSeconds).to.equal(30);
    bn.setOutputPool({ idleSeconds: 7.5 });  // one key: the other keeps its value
    expect(bn.outputPoolStats()).to.include({ maxBytes: initial, idleSeconds: 7.5 });
  });

  it('BATCHNORM_OUTPUT_POOL_BYTES sets the bound; 0 turns the pool off; a bad value keeps the default', () => {
    const probe = `const bn = require(${JSON.stringify(LIB)}); const n = 18 * 8 * 48 * 40;
      const y = bn.batchNormTraining(new Float32Array(n).fill(1).map((v, i) => i % 7), [18, 8, 48, 40]).y;
      const s = bn.outputPoolStats(); process.stdout.write(JSON.stringify({ max: s.maxBytes, enabled: s.enabled, lent: s.lentBlocks, ok: y.every(Number.isFinite) }));`;
    const get = (v: string) => {
      const r = run(probe, { BATCHNORM_OUTPUT_POOL_BYTES: v });
      expect(r.status, r.stderr).to.equal(0);
      return JSON.parse(r.stdout) as { max: number; enabled: boolean; lent: number; ok: boolean };
    };
    expect(get('0')).to.deep.equal({ max: 0, enabled: false, lent: 0, ok: true });
    expect(get('123456789')).to.deep.equal({ max: 123456789, enabled: true, lent: 1, ok: true });
    for (const v of ['bogus', '-5', '', '12MB']) expect(get(v).max, `'${v}'`).to.equal(initial);
  });

  it('workers each use their own pool, reuse blocks, and exit cleanly with outputs outstanding', () => {
    const script = `
      const { Worker } = require('worker_threads');
      const code = \`
        // Not named gc: once one worker has set --expose-gc, a later worker's global scope has gc.
        const v8 = require('v8'); v8.setFlagsFromString('--expose-gc'); const collect = require('vm').runInNewContext('gc');
        const { parentPort, workerData } = require('worker_threads');
        const bn = require(\${JSON.stringify(${JSON.stringify(LIB)})});
        (async () => {
          const shape = [18, 8, 48, 40], n = 18 * 8 * 48 * 40;
          const x = new Float32Array(n).map((v, i) => ((i * 7 + workerData) % 23) - 11);
          const want = bn.batchNormTraining(x, shape, { out: new Float32Array(n) }).y;
          const keep = [];
          for (let k = 0; k < 6; k++) {
            const y = bn.batchNormTraining(x, shape).y;
            for (let i = 0; i < n; i++) if (!Object.is(y[i], want[i])) throw new Error('worker ' + workerData + ': element ' + i);
            if (k % 2) keep.push(y); else y.fill(NaN);
            collect(); await new Promise((r) => setImmediate(r)); collect(); await new Promise((r) => setImmediate(r));
          }
          parentPort.postMessage(bn.outputPoolStats());
        })();\`;
      const runs = [1, 2, 3].map((id) => new Promise((resolve, reject) => {
        const w = new Worker(code, { eval: true, workerData: id });
        let stats; w.on('message', (m) => { stats = m; }); w.on('error', reject);
        w.on('exit', (c) => resolve({ code: c, stats }));
      }));
      // One more that is terminated in the middle of its loop.
      const t = new Worker(code, { eval: true, workerData: 9 });
      setTimeout(() => t.terminate(), 30);
      Promise.all(runs).then((r) => process.stdout.write(JSON.stringify(r)));`;
    const r = run(script);
    expect(r.status, r.stderr).to.equal(0);
    expect(r.stderr).to.equal('');
    const out = JSON.parse(r.stdout) as Array<{ code: number; stats: bn.OutputPoolStats }>;
    expect(out).to.have.length(3);
    for (const w of out) {
      expect(w.code).to.equal(0);
      expect(w.stats.reuses, 'a worker reuses its own blocks').to.be.at.least(1);
      expect(w.stats.lentBlocks, 'the kept outputs').to.be.at.least(1);
    }
  });

  const workerHolding = `const { Worker } = require('worker_threads');
        const w = new Worker(\`const bn = require(\${JSON.stringify(${JSON.stringify(LIB)})}); globalThis.k = [];
          for (let i = 0; i < 3; i++) globalThis.k.push(bn.batchNormTraining(new Float32Array(18 * 8 * 48 * 40).fill(i), [18, 8, 48, 40]).y);
          require('worker_threads').parentPort.postMessage(bn.outputPoolStats().lentBlocks); setInterval(() => {}, 1000);\`, { eval: true });
        w.on('message', (m) => { if (m < 3) throw new Error('worker outputs not pooled'); process.stdout.write('ok'); process.exit(0); });`;
  for (const ending of ['returns', 'process.exit(0)', 'process.exit(0) while a worker holds pooled outputs']) {
    it(`a process with pooled outputs outstanding exits 0 (${ending})`, () => {
      const end = ending === 'returns' ? "process.stdout.write('ok');" : ending === 'process.exit(0)' ? "process.stdout.write('ok'); process.exit(0);" : workerHolding;
      const script = `const bn = require(${JSON.stringify(LIB)}); const n = 18 * 8 * 48 * 40;
        const x = new Float32Array(n).map((v, i) => i % 5);
        globalThis.keep = [];
        for (let k = 0; k < 4; k++) globalThis.keep.push(bn.batchNormTraining(x, [18, 8, 48, 40]).y);
        bn.batchNormTraining(x, [18, 8, 48, 40]);  // one dropped, maybe not yet collected
        if (bn.outputPoolStats().lentBlocks < 4) throw new Error('not pooled');
        ${end}`;
      const r = run(script);
      expect(r.status, r.stderr).to.equal(0);
      expect(r.stdout).to.equal('ok');
      expect(r.stderr).to.equal('');
    });
  }

  it('a full pool makes room for another size from blocks unused for its idle time', async function () {
    this.timeout(30000);
    const a = [18, 8, 48, 40], b = [20, 8, 48, 40], c = [22, 8, 48, 40];  // 1.05, 1.17, 1.29 MiB
    const bytes = (s: number[]) => 4 * s.reduce((p, q) => p * q);
    const x = (s: number[]) => filled(s.reduce((p, q) => p * q), (i) => i % 9);
    const xa = x(a), xb = x(b), xc = x(c);
    bn.setOutputPool({ maxBytes: bytes(b) + bytes(c) + 8192, idleSeconds: 1 });  // room for a and b, or b and c: not all three
    bn.batchNormTraining(xa, a);
    bn.batchNormTraining(xb, b);
    await collect();
    expect(bn.outputPoolStats().idleBlocks).to.equal(2);
    // Keep the pool busy with b for 1.6 s: a's block stays idle and unused.
    const t0 = Date.now();
    while (Date.now() - t0 < 1600) {
      bn.batchNormTraining(xb, b);
      await collect();
      await new Promise((r) => setTimeout(r, 200));
    }
    const s0 = bn.outputPoolStats();
    expect(s0.idleBlocks, 'a and b still idle while the pool is in use').to.equal(2);
    const y = bn.batchNormTraining(xc, c).y;
    const s1 = bn.outputPoolStats();
    expect(s1.allocations, 'c got a pool block').to.equal(s0.allocations + 1);
    expect(s1.overBound).to.equal(s0.overBound);
    expect(s1.idleBlocks, 'a freed, b kept').to.equal(1);
    expect(s1.idleBytes).to.equal(Math.ceil(bytes(b) / 4096) * 4096);
    expect(y.length).to.equal(bytes(c) / 4);
  });

  it('idle blocks are freed once the pool has served nothing for its idle time', async function () {
    this.timeout(30000);
    const n = 18 * 8 * 48 * 40;
    bn.setOutputPool({ idleSeconds: 1 });
    bn.batchNormTraining(filled(n, (i) => i % 3), [18, 8, 48, 40]);
    await collect();
    expect(bn.outputPoolStats().idleBlocks).to.be.at.least(1);
    const t0 = Date.now();
    while (bn.outputPoolStats().idleBlocks > 0 && Date.now() - t0 < 15000) await new Promise((r) => setTimeout(r, 250));
    expect(bn.outputPoolStats().idleBlocks, 'idle blocks left after 15 s').to.equal(0);
    expect(Date.now() - t0, 'not before the idle time').to.be.at.least(800);
  });
});
