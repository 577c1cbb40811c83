// Asynchronous calls: off the event loop, ordered per layer, independent across layers, within
// the process-wide thread budget, and holding on to the arrays they use.
import { expect } from 'chai';
import { spawnSync } from 'child_process';
import * as os from 'os';
import * as path from 'path';
import * as bn from '../lib';
import { native } from '../lib/load';
import { Rng, randn, product } from './helpers/random';
import * as ref from './helpers/reference';
import { expectBitwiseEqual, expectSameState, expectUnchanged, snapshot } from './helpers/state-snapshot';
import { expectChildAlive } from './helpers/child';
import { gcFunction } from './helpers/gc';

const LIB = path.resolve(__dirname, '..', 'lib');

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Fills a large array quickly with a deterministic, non-constant pattern. */
function bigInput(n: number): Float32Array {
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = ((i * 2654435761) >>> 0) / 4294967296 - 0.5;
  return x;
}

function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: number, what: string): void {
  expect(actual.length, `${what} length`).to.equal(expected.length);
  for (let i = 0; i < actual.length; i++) {
    const d = Math.abs(actual[i] - expected[i]);
    if (!(d <= tol * (1 + Math.abs(expected[i])))) expect.fail(`${what}[${i}] = ${actual[i]}, expected ${expected[i]} (tol ${tol})`);
  }
}

describe('async: the event loop keeps running', function () {
  this.timeout(60000);

  it('timers fire on schedule during forwardAsync; none fire during the synchronous forward', async function () {
    // Short runs ([N, 8, 3]) make the kernels compute-bound rather than memory-bound, so a
    // tensor of moderate size (<= 200 MB) takes >= 150 ms. N doubles until it does.
    const C = 8;
    const S = 3;
    let N = 1 << 18;
    let x!: Float32Array;
    let out!: Float32Array;
    let syncMs = 0;
    let syncTicks = -1;
    let ticks = 0;
    const timer = setInterval(() => { ticks++; }, 5);
    try {
      for (;;) {
        const shape = [N, C, S];
        x = bigInput(product(shape));
        out = new Float32Array(x.length).fill(1); // pages touched before timing
        const L = new bn.BatchNorm1d(C);
        await sleep(10);
        const t0 = performance.now();
        const before = ticks;
        L.forward(x, shape, out);
        syncTicks = ticks - before;
        syncMs = performance.now() - t0;
        if (syncMs >= 150 || N >= 1 << 21) break;
        N *= 2;
      }
      const shape = [N, C, S];
      const stride = 9973;
      const ySync = Float32Array.from({ length: Math.floor(out.length / stride) }, (_, i) => out[i * stride]);
      out.fill(0);
      const L = new bn.BatchNorm1d(C);
      await sleep(10);
      const before = ticks;
      const t0 = performance.now();
      const y = await L.forwardAsync(x, shape, out);
      const asyncMs = performance.now() - t0;
      const asyncTicks = ticks - before;
      expect(y).to.equal(out);
      expect(syncTicks, `ticks during the ${syncMs.toFixed(0)} ms synchronous forward`).to.equal(0);
      // An eighth of the 5 ms ticks the shorter of the two calls allows: a loaded machine delays timers.
      const want = Math.max(3, Math.floor(Math.min(syncMs, asyncMs) / 5 / 8));
      if (process.env.BN_TEST_VERBOSE) console.log(`    sync ${syncMs.toFixed(0)} ms, async ${asyncMs.toFixed(0)} ms, ${asyncTicks} ticks (want >= ${want}), N = ${N}`);
      expect(asyncTicks, `ticks during the ${asyncMs.toFixed(0)} ms forwardAsync of [${shape.join(', ')}] (sync took ${syncMs.toFixed(0)} ms)`)
        .to.be.at.least(want);
      const yAsync = Float32Array.from({ length: ySync.length }, (_, i) => out[i * stride]);
      expectBitwiseEqual(yAsync, ySync, 'forwardAsync output vs forward output (sampled)');
      expect(L.numBatchesTracked).to.equal(1);
    } finally {
      clearInterval(timer);
    }
  });
});

describe('async: calls on one layer are ordered', function () {
  this.timeout(30000);
  const shape = [6, 5, 7, 9];
  const C = shape[1];

  function inputs(seed: number, k: number): Float32Array[] {
    const rng = new Rng(seed);
    return Array.from({ length: k }, (_, i) => randn(rng, product(shape), 'float32', i - 2, 1 + i) as Float32Array);
  }

  it('5 forwardAsync without awaiting == 5 sync forwards in the same order (bitwise)', async function () {
    const xs = inputs(11, 5);
    const a = new bn.BatchNorm2d(C, { momentum: 0.3 });
    const b = new bn.BatchNorm2d(C, { momentum: 0.3 });
    const promises = xs.map((x) => a.forwardAsync(x, shape));
    const ys = await Promise.all(promises);
    const want = xs.map((x) => b.forward(x, shape));
    expect(a.numBatchesTracked).to.equal(5);
    ys.forEach((y, i) => expectBitwiseEqual(y, want[i], `y of call ${i}`));
    expectSameState(a, b, 'after 5 forwards');
    // And the order matters: the stats differ from those of the reversed sequence.
    const r = new bn.BatchNorm2d(C, { momentum: 0.3 });
    for (const x of xs.slice().reverse()) r.forward(x, shape);
    expect(Array.from(r.runningMean as Float32Array)).to.not.deep.equal(Array.from(a.runningMean as Float32Array));
    // The cumulative average (momentum null) depends on the counter of each call.
    const ca = new bn.BatchNorm2d(C, { momentum: null });
    const cb = new bn.BatchNorm2d(C, { momentum: null });
    await Promise.all(xs.map((x) => ca.forwardAsync(x, shape)));
    for (const x of xs) cb.forward(x, shape);
    expectSameState(ca, cb, 'cumulative average');
    const d = ref.dimsOf(shape);
    let rm: ArrayLike<number> = new Float64Array(C);
    let rv: ArrayLike<number> = new Float64Array(C).fill(1);
    xs.forEach((x, i) => {
      const st = ref.batchStats(x, d, 1e-5);
      const u = ref.runningUpdate(rm, rv, st, d.n * d.s, null, i + 1);
      rm = u.mean;
      rv = u.variance;
    });
    expectClose(ca.runningMean as Float32Array, rm, 1e-5, 'runningMean vs float64 reference');
    expectClose(ca.runningVar as Float32Array, rv, 1e-5, 'runningVar vs float64 reference');
  });

  it('forwardAsync(a), backwardAsync(dy), forwardAsync(b), backwardAsync(dy2) == the sync sequence', async function () {
    const [xa, xb, dy, dy2] = inputs(12, 4);
    const a = new bn.BatchNorm2d(C);
    const b = new bn.BatchNorm2d(C);
    for (const L of [a, b]) {
      (L.weight as Float32Array).set([0.5, -1, 2, 1.5, 0.25]);
      (L.bias as Float32Array).set([0, 1, -1, 2, 0.5]);
    }
    const p = [a.forwardAsync(xa, shape), a.backwardAsync(dy), a.forwardAsync(xb, shape), a.backwardAsync(dy2)];
    const [ya, dxa, yb, dxb] = await Promise.all(p);
    const wya = b.forward(xa, shape);
    const wdxa = b.backward(dy);
    const wyb = b.forward(xb, shape);
    const wdxb = b.backward(dy2);
    expectBitwiseEqual(ya, wya, 'y(a)');
    expectBitwiseEqual(dxa, wdxa, 'dx for a');
    expectBitwiseEqual(yb, wyb, 'y(b)');
    expectBitwiseEqual(dxb, wdxb, 'dx for b');
    expectSameState(a, b, 'interleaved');
    // Each backward used the forward right before it: dx for a differs from dx computed against b.
    const c = new bn.BatchNorm2d(C);
    (c.weight as Float32Array).set(a.weight as Float32Array);
    c.forward(xb, shape);
    expect(Array.from(c.backward(dy).subarray(0, 20))).to.not.deep.equal(Array.from(dxa.subarray(0, 20)));
    // The gradients match the float64 reference (sum of the two backward passes).
    const d = ref.dimsOf(shape);
    const w = Float64Array.from(a.weight as Float32Array);
    const sa = ref.batchStats(xa, d, 1e-5);
    const sb = ref.batchStats(xb, d, 1e-5);
    const ga = ref.backward(xa, dy, d, w, sa.mean, sa.invstd, true);
    const gb = ref.backward(xb, dy2, d, w, sb.mean, sb.invstd, true);
    expectClose(a.gradWeight as Float32Array, ga.dweight.map((v, i) => v + gb.dweight[i]), 2e-4, 'gradWeight');
    expectClose(a.gradBias as Float32Array, ga.dbias.map((v, i) => v + gb.dbias[i]), 2e-4, 'gradBias');
    expectClose(dxb, gb.dx, 2e-4, 'dx for b vs reference');
  });

  it('sync calls and state changes while async calls are pending throw ERR_BN_BUSY and change nothing', async function () {
    const [x, x2, dy] = inputs(13, 3);
    const a = new bn.BatchNorm2d(C);
    const twin = new bn.BatchNorm2d(C);
    a.forward(x2, shape);
    twin.forward(x2, shape);
    const before = snapshot(a);
    const p = a.forwardAsync(x, shape);
    const busy: Array<[string, () => unknown]> = [
      ['forward', () => a.forward(x2, shape)],
      ['backward', () => a.backward(dy)],
      ['loadStateDict', () => a.loadStateDict(twin.stateDict() as Record<string, unknown>)],
      ['zeroGrad', () => a.zeroGrad()],
    ];
    for (const [name, f] of busy) {
      let err: unknown;
      try {
        f();
      } catch (e) {
        err = e;
      }
      expect(err, name).to.be.instanceOf(bn.BatchNormError);
      expect((err as bn.BatchNormError).code, name).to.equal('ERR_BN_BUSY');
      expect((err as Error).message, name).to.match(new RegExp(`BatchNorm2d\\.${name}: .*async`));
      expectUnchanged(a, before, `after the refused ${name}`);
    }
    await p;
    twin.forward(x, shape);
    expectSameState(a, twin, 'only the async forward took effect');
    // Once idle, sync calls work again.
    a.forward(x2, shape);
    expect(a.numBatchesTracked).to.equal(3);
  });

  it('an async call that fails validation rejects (no synchronous throw) and the queue goes on', async function () {
    const [x, x2] = inputs(14, 2);
    const a = new bn.BatchNorm2d(C);
    const twin = new bn.BatchNorm2d(C);
    let p1!: Promise<Float32Array | Float64Array>;
    let p3!: Promise<Float32Array | Float64Array>;
    expect(() => {
      p1 = a.forwardAsync(x, shape);
      a.forwardAsync(x, [6, 4, 7, 9]).catch(() => undefined); // wrong channel count
      p3 = a.forwardAsync(x2, shape);
    }).to.not.throw();
    const bad = a.forwardAsync(x.subarray(1), shape);
    const badBackward = new bn.BatchNorm2d(C).backwardAsync(x);
    const results = await Promise.allSettled([p1, bad, p3, badBackward]);
    expect(results.map((r) => r.status)).to.deep.equal(['fulfilled', 'rejected', 'fulfilled', 'rejected']);
    const e1 = (results[1] as PromiseRejectedResult).reason;
    expect(e1).to.be.instanceOf(bn.BatchNormRangeError);
    expect(e1.code).to.equal('ERR_BN_BAD_LENGTH');
    expect(e1.message).to.include('forwardAsync: x must have');
    const e3 = (results[3] as PromiseRejectedResult).reason;
    expect(e3.code).to.equal('ERR_BN_NO_FORWARD');
    twin.forward(x, shape);
    twin.forward(x2, shape);
    expectSameState(a, twin, 'the failed calls left no trace');
    expect(a.numBatchesTracked).to.equal(2);

    // The functional API rejects too, rather than throwing.
    let fp!: Promise<unknown>;
    expect(() => { fp = bn.batchNormTrainingAsync(x, [6, 5, 7] as number[]); }).to.not.throw();
    const err = await fp.then(() => null, (e: unknown) => e);
    expect(err).to.be.instanceOf(bn.BatchNormRangeError);
    expect((err as bn.BatchNormRangeError).code).to.equal('ERR_BN_BAD_LENGTH');
    let bp!: Promise<unknown>;
    expect(() => { bp = bn.batchNormBackwardAsync(x, 'dy' as unknown as Float32Array, shape, { training: true }); }).to.not.throw();
    const berr = await bp.then(() => null, (e: unknown) => e);
    expect((berr as bn.BatchNormTypeError).code).to.equal('ERR_BN_INVALID_ARG_TYPE');
  });

  it('the functional async API gives the same results as the sync one', async function () {
    const [x, dy] = inputs(15, 2);
    const rng = new Rng(16);
    const weight = randn(rng, C, 'float32') as Float32Array;
    const bias = randn(rng, C, 'float32') as Float32Array;
    const rmA = new Float32Array(C);
    const rvA = new Float32Array(C).fill(1);
    const rmS = rmA.slice();
    const rvS = rvA.slice();
    const ta = await bn.batchNormTrainingAsync(x, shape, { weight, bias, runningMean: rmA, runningVar: rvA, momentum: 0.2 });
    const ts = bn.batchNormTraining(x, shape, { weight, bias, runningMean: rmS, runningVar: rvS, momentum: 0.2 });
    expectBitwiseEqual(ta.y, ts.y, 'y');
    expectBitwiseEqual(rmA, rmS, 'runningMean');
    expectBitwiseEqual(rvA, rvS, 'runningVar');
    expectBitwiseEqual(ta.batchInvstd, ts.batchInvstd, 'batchInvstd');
    const ia = await bn.batchNormInferenceAsync(x, shape, { weight, bias, runningMean: rmA, runningVar: rvA });
    expectBitwiseEqual(ia, bn.batchNormInference(x, shape, { weight, bias, runningMean: rmS, runningVar: rvS }), 'inference y');
    const opts = { weight, training: true, mean: ts.batchMean, invstd: ts.batchInvstd };
    const ba = await bn.batchNormBackwardAsync(x, dy, shape, opts);
    const bs = bn.batchNormBackward(x, dy, shape, opts);
    expectBitwiseEqual(ba.dx, bs.dx, 'dx');
    expectBitwiseEqual(ba.gradWeight, bs.gradWeight, 'gradWeight');
    expectBitwiseEqual(ba.gradBias, bs.gradBias, 'gradBias');
  });
});

describe('async: different layers are independent', function () {
  this.timeout(30000);

  it('two layers\' async calls are in flight together; two calls on one layer are not', async function () {
    const b = native();
    const original = b.forwardTrainingAsync;
    const events: string[] = [];
    const names = new Map<unknown, string>();
    b.forwardTrainingAsync = (...args: Parameters<typeof original>) => {
      const who = names.get(args[0].x) ?? '?';
      events.push(`start ${who}`);
      return original(...args).finally(() => events.push(`end ${who}`));
    };
    try {
      const shape = [8, 16, 64, 64];
      const rng = new Rng(21);
      const x1 = randn(rng, product(shape), 'float32') as Float32Array;
      const x2 = randn(rng, product(shape), 'float32') as Float32Array;
      const x3 = randn(rng, product(shape), 'float32') as Float32Array;
      names.set(x1, 'L1a').set(x2, 'L2').set(x3, 'L1b');
      const L1 = new bn.BatchNorm2d(16);
      const L2 = new bn.BatchNorm2d(16);
      const [y1, y2, y3] = await Promise.all([L1.forwardAsync(x1, shape), L2.forwardAsync(x2, shape), L1.forwardAsync(x3, shape)]);
      // L2 started before L1's first call ended; L1's second call started only after its first ended.
      expect(events.indexOf('start L2'), events.join(', ')).to.be.below(events.indexOf('end L1a'));
      expect(events.indexOf('start L1b'), events.join(', ')).to.be.above(events.indexOf('end L1a'));
      const d = ref.dimsOf(shape);
      for (const [x, y, what] of [[x1, y1, 'L1a'], [x2, y2, 'L2'], [x3, y3, 'L1b']] as const) {
        expectClose(y, ref.forwardTraining(x, d, null, null, 1e-5).y, 1e-4, what);
      }
    } finally {
      b.forwardTrainingAsync = original;
    }
  });

  it('the arrays of an async call stay alive when the caller drops them and GC runs', async function () {
    const gc = gcFunction();
    const shape = [16, 8, 64, 64];
    const make = () => bigInput(product(shape));
    const want = new bn.BatchNorm2d(8).forward(make(), shape);
    const L = new bn.BatchNorm2d(8);
    const p = L.forwardAsync(make(), shape); // neither x nor y is referenced by the test
    for (let i = 0; i < 3; i++) {
      gc();
      await new Promise((r) => setImmediate(r));
    }
    const y = await p;
    expectBitwiseEqual(y, want, 'y');
  });

  it('an async call survives the transfer (detachment) of its buffers while it runs', function () {
    // Run in a child: if the addon does not keep the memory alive, this is a use-after-free.
    const script = `
      const v8 = require('v8'); v8.setFlagsFromString('--expose-gc'); const gc = require('vm').runInNewContext('gc');
      const bn = require(${JSON.stringify(LIB)});
      (async () => {
        const shape = [32, 64, 56, 56]; const N = shape.reduce((a, b) => a * b);
        for (let k = 0; k < 3; k++) {
          const L = new bn.BatchNorm2d(64); const x = new Float32Array(N).fill(1); x[0] = 2;
          const out = new Float32Array(N);
          const p = L.forwardAsync(x, shape, out);
          await new Promise((r) => setImmediate(r));
          // Node 20 copies an untransferable buffer; Node 22+ refuses with a DataCloneError. Either is safe.
          for (const b of [out.buffer, x.buffer]) {
            try { structuredClone(b, { transfer: [b] }); } catch (e) { if (e.name !== 'DataCloneError') throw e; }
          }
          gc(); gc();
          try { await p; } catch (e) { if (!e.code) throw e; }
        }
        process.stdout.write('alive');
      })();`;
    expectChildAlive(script);
  });
});

describe('async: the thread budget', function () {
  this.timeout(60000);
  let saved = 0;
  before(() => { saved = bn.getNumThreads(); });
  after(() => bn.setNumThreads(saved));

  async function burst(layers: number, shape: number[]): Promise<{ inUse: number; peak: number; during: number[] }> {
    const rng = new Rng(31);
    const xs = Array.from({ length: layers }, () => randn(rng, product(shape), 'float32') as Float32Array);
    const Ls = xs.map(() => new bn.BatchNorm2d(shape[1]));
    bn.threadCounters({ reset: true });
    const during: number[] = [];
    const sampler = setInterval(() => during.push(bn.threadCounters().inUse), 1);
    const ys = await Promise.all(Ls.map((L, i) => L.forwardAsync(xs[i], shape)));
    clearInterval(sampler);
    const st = bn.threadCounters();
    // Every result is right (the budget only schedules, it does not change the maths).
    const d = ref.dimsOf(shape);
    expectClose(ys[layers - 1], ref.forwardTraining(xs[layers - 1], d, null, null, 1e-5).y, 1e-4, 'y of the last layer');
    return { inUse: st.inUse, peak: st.peak, during };
  }

  it('8 concurrent async forwards on 8 layers use at most setNumThreads threads', async function () {
    const shape = [8, 32, 48, 48];
    bn.setNumThreads(2);
    expect(bn.getNumThreads()).to.equal(2);
    const two = await burst(8, shape);
    expect(two.peak, 'peak threads with a budget of 2').to.be.within(1, 2);
    expect(Math.max(0, ...two.during)).to.be.at.most(2);
    expect(two.inUse, 'threads in use after all settled').to.equal(0);

    bn.setNumThreads(1);
    const one = await burst(8, shape);
    expect(one.peak, 'peak threads with a budget of 1').to.equal(1);
    expect(one.inUse).to.equal(0);

    // The budget is what limits: with a larger budget the same burst leases more.
    bn.setNumThreads(3);
    const three = await burst(8, shape);
    expect(three.peak, 'peak threads with a budget of 3').to.be.within(2, 3);

    // Sync calls draw from the same budget.
    bn.setNumThreads(2);
    bn.threadCounters({ reset: true });
    new bn.BatchNorm2d(32).forward(randn(new Rng(1), product(shape), 'float32') as Float32Array, shape);
    expect(bn.threadCounters().peak).to.be.within(1, 2);
  });

  it('the budget defaults to the number of CPUs and honours OMP_NUM_THREADS', function () {
    const run = (env: NodeJS.ProcessEnv) => {
      const r = spawnSync(process.execPath, ['-e', `process.stdout.write(String(require(${JSON.stringify(LIB)}).getNumThreads()))`], { env, encoding: 'utf8', timeout: 20000 });
      expect(r.status, r.stderr).to.equal(0);
      return Number(r.stdout);
    };
    const base = { ...process.env };
    delete base.OMP_NUM_THREADS;
    expect(run(base), 'default').to.equal(os.availableParallelism());
    expect(run({ ...base, OMP_NUM_THREADS: '1' }), 'OMP_NUM_THREADS=1').to.equal(1);
    expect(run({ ...base, OMP_NUM_THREADS: '3' }), 'OMP_NUM_THREADS=3').to.equal(3);
    expect(run({ ...base, OMP_NUM_THREADS: 'lots' }), 'an unparseable OMP_NUM_THREADS is ignored').to.equal(os.availableParallelism());
  });
});
