// Hardening, round two: resizable and growable buffers on every async entry point, arguments that
// answer differently when read twice, arrays from another realm, fake and lying typed arrays,
// methods called on the wrong `this`, calls whose inputs change after they are made, interleaved
// async chains, and option keys the library does not know. Every refusal is a BatchNormError with
// a code, and leaves the layer as it was.
import { expect } from 'chai';
import * as vm from 'vm';
import * as bn from '../lib';
import { native } from '../lib/load';
import { expectChildAlive } from './helpers/child';
import { product, randn, Rng } from './helpers/random';
import * as ref from './helpers/reference';
import { expectBitwiseEqual, expectUnchanged, snapshot } from './helpers/state-snapshot';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Loose = any;

const SHAPE = [4, 3, 5, 7];
const TOTAL = product(SHAPE);
const rng = new Rng(2026);
const X = randn(rng, TOTAL, 'float32', 0.5, 2) as Float32Array;
const DY = randn(rng, TOTAL, 'float32') as Float32Array;

function expectCoded(e: unknown, code: string, patterns: string[] = []): void {
  expect(e, String(e)).to.be.instanceOf(bn.BatchNormError);
  expect((e as { code: string }).code, String(e)).to.equal(code);
  for (const p of patterns) expect((e as Error).message).to.include(p);
}

function expectThrowsCoded(f: () => unknown, code: string, patterns: string[] = []): void {
  let err: unknown = null;
  try {
    f();
  } catch (e) {
    err = e;
  }
  expect(err, 'expected an error').to.not.equal(null);
  expectCoded(err, code, patterns);
}

async function expectRejectsCoded(p: Promise<unknown>, code: string, patterns: string[] = []): Promise<void> {
  let err: unknown = null;
  try {
    await p;
  } catch (e) {
    err = e;
  }
  expect(err, 'expected a rejection').to.not.equal(null);
  expectCoded(err, code, patterns);
}

/** A Float32Array over a resizable ArrayBuffer, holding `src`. */
function resizable(src: Float32Array): Float32Array {
  const buf = new (ArrayBuffer as Loose)(src.byteLength, { maxByteLength: src.byteLength * 2 });
  const a = new Float32Array(buf);
  a.set(src);
  return a;
}

/** A length-tracking Float32Array over a growable SharedArrayBuffer, holding `src`. */
function growable(src: Float32Array): { a: Float32Array; sab: Loose } {
  const sab = new (SharedArrayBuffer as Loose)(src.byteLength, { maxByteLength: src.byteLength * 4 });
  const a = new Float32Array(sab, 0, src.length);
  a.set(src);
  return { a, sab };
}

function expectClose(got: ArrayLike<number>, want: ArrayLike<number>, tol: number, what: string): void {
  expect(got.length, `${what} length`).to.equal(want.length);
  for (let i = 0; i < got.length; i++) {
    if (!(Math.abs(got[i] - want[i]) <= tol * (1 + Math.abs(want[i])))) expect.fail(`${what}[${i}] = ${got[i]}, expected ${want[i]}`);
  }
}

describe('hardening: resizable and growable buffers', function () {
  this.timeout(60000);
  const C = SHAPE[1];

  it('every async entry point refuses a view of a resizable ArrayBuffer with ERR_BN_RESIZABLE_BUFFER and changes nothing', async function () {
    const L = new bn.BatchNorm2d(C);
    L.forward(X, SHAPE);
    const before = snapshot(L);
    await expectRejectsCoded(L.forwardAsync(resizable(X), SHAPE), 'ERR_BN_RESIZABLE_BUFFER', ['BatchNorm2d.forwardAsync: x is a view of a resizable ArrayBuffer']);
    await expectRejectsCoded(L.forwardAsync(X, SHAPE, { out: resizable(new Float32Array(TOTAL)) }), 'ERR_BN_RESIZABLE_BUFFER', ['out is a view']);
    await expectRejectsCoded(L.backwardAsync(resizable(DY)), 'ERR_BN_RESIZABLE_BUFFER', ['BatchNorm2d.backwardAsync: dy']);
    await expectRejectsCoded(L.backwardAsync(DY, resizable(new Float32Array(TOTAL))), 'ERR_BN_RESIZABLE_BUFFER', ['out is a view']);
    expectUnchanged(L, before, 'after the refused async calls');
    const rm = new Float32Array(C), rv = new Float32Array(C).fill(1);
    await expectRejectsCoded(bn.batchNormTrainingAsync(resizable(X), SHAPE), 'ERR_BN_RESIZABLE_BUFFER', ['batchNormTrainingAsync: x']);
    await expectRejectsCoded(bn.batchNormTrainingAsync(X, SHAPE, { out: resizable(new Float32Array(TOTAL)), runningMean: rm, runningVar: rv }), 'ERR_BN_RESIZABLE_BUFFER', ['out']);
    expectBitwiseEqual(rm, new Float32Array(C), 'runningMean after a refused call');
    await expectRejectsCoded(bn.batchNormInferenceAsync(resizable(X), SHAPE, { runningMean: rm, runningVar: rv }), 'ERR_BN_RESIZABLE_BUFFER', ['batchNormInferenceAsync: x']);
    await expectRejectsCoded(
      bn.batchNormBackwardAsync(X, resizable(DY), SHAPE, { training: false, runningMean: rm, runningVar: rv }),
      'ERR_BN_RESIZABLE_BUFFER', ['batchNormBackwardAsync: dy'],
    );
    await expectRejectsCoded(
      bn.batchNormInferenceAsync(X, SHAPE, { runningMean: resizable(rm), runningVar: rv }),
      'ERR_BN_RESIZABLE_BUFFER', ['runningMean'],
    );
  });

  it('the synchronous calls accept resizable buffers (nothing can resize them while they run) and give the same bits', function () {
    const want = new bn.BatchNorm2d(C).forward(X, SHAPE);
    const got = new bn.BatchNorm2d(C).forward(resizable(X), SHAPE, { out: resizable(new Float32Array(TOTAL)) });
    expectBitwiseEqual(got, want, 'y through resizable buffers');
  });

  it('a resizable input shrunk between forward and backward gives ERR_BN_BAD_LENGTH, not a read past its end', function () {
    const L = new bn.BatchNorm2d(C);
    const x = resizable(X);
    L.forward(x, SHAPE);
    (x.buffer as Loose).resize(0);
    const before = snapshot(L);
    expectThrowsCoded(() => L.backward(DY), 'ERR_BN_BAD_LENGTH', ['BatchNorm2d.backward: x must have']);
    expectUnchanged(L, before);
  });

  it('growable SharedArrayBuffers are accepted by async calls, and growing them during the call is harmless', async function () {
    const want = new bn.BatchNorm2d(C).forward(X, SHAPE);
    for (const entry of ['layer', 'functional'] as const) {
      const { a, sab } = growable(X);
      const out = growable(new Float32Array(TOTAL));
      const p = entry === 'layer' ? new bn.BatchNorm2d(C).forwardAsync(a, SHAPE, { out: out.a }) : bn.batchNormTrainingAsync(a, SHAPE, { out: out.a }).then((r) => r.y);
      sab.grow(sab.byteLength * 2);
      out.sab.grow(out.sab.byteLength * 2);
      expectBitwiseEqual(await p, want, `${entry}: y through growable buffers`);
    }
  });

  it('the process survives a resizable buffer shrunk under every async entry point (the crash of round one)', function () {
    const lib = require.resolve('../lib');
    expectChildAlive(`
      const bn = require(${JSON.stringify(lib)});
      const shape = [16, 64, 64, 64], n = 16 * 64 * 64 * 64, C = 64;
      const mk = () => { const b = new ArrayBuffer(n * 4, { maxByteLength: n * 8 }); return new Float32Array(b).fill(1); };
      const rm = new Float32Array(C), rv = new Float32Array(C).fill(1);
      (async () => {
        const L = new bn.BatchNorm2d(C); L.forward(new Float32Array(n).fill(2), shape);
        const calls = [
          (x) => L.forwardAsync(x, shape),
          (x) => L.backwardAsync(x),
          (x) => bn.batchNormTrainingAsync(new Float32Array(n), shape, { out: x }),
          (x) => bn.batchNormInferenceAsync(x, shape, { runningMean: rm, runningVar: rv }),
          (x) => bn.batchNormBackwardAsync(new Float32Array(n), x, shape, { training: false, runningMean: rm, runningVar: rv }),
        ];
        for (const call of calls) {
          const x = mk();
          const p = call(x);
          x.buffer.resize(0);
          try { await p; process.exit(3); } catch (e) { if (e.code !== 'ERR_BN_RESIZABLE_BUFFER') throw e; }
        }
        process.stdout.write('alive');
      })().catch((e) => { console.error(e); process.exit(2); });`);
  });

  it('an input transferred after forwardAsync was called but before it ran gives a coded rejection', async function () {
    const L = new bn.BatchNorm2d(C);
    const big = [16, C, 64, 64];
    const first = L.forwardAsync(new Float32Array(product(big)).fill(1), big);
    const x = X.slice();
    const p = L.forwardAsync(x, SHAPE); // queued behind `first`
    structuredClone(x.buffer, { transfer: [x.buffer] });
    await first;
    await expectRejectsCoded(p, 'ERR_BN_BAD_LENGTH', ['BatchNorm2d.forwardAsync: x must have']);
  });
});

describe('hardening: arguments read exactly once', function () {
  /** An array that answers `first` to the first read of each entry (and of length), `then` after. */
  function lying(first: number[], then: number[]): number[] {
    const seen = new Set<PropertyKey>();
    return new Proxy(first.slice(), {
      get(target, key, receiver) {
        if (typeof key === 'string' && (key === 'length' || /^\d+$/.test(key))) {
          const src = seen.has(key) ? then : first;
          seen.add(key);
          return key === 'length' ? src.length : src[Number(key)];
        }
        return Reflect.get(target, key, receiver);
      },
    });
  }
  const TRUE_SHAPE = [8, 16, 4, 4];
  const LIE = [2, 16, 1, 1];
  const x = randn(new Rng(5), product(TRUE_SHAPE), 'float32') as Float32Array;

  it('a shape that answers differently on a second read is used as first read, on every entry point (no unwritten memory)', async function () {
    const want = ref.forwardTraining(x, ref.dimsOf(TRUE_SHAPE), null, null, 1e-5).y;
    const check = (y: Float32Array, what: string) => expectClose(y, want, 1e-5, what);
    check(bn.batchNormTraining(x, lying(TRUE_SHAPE, LIE)).y as Float32Array, 'batchNormTraining');
    check((await bn.batchNormTrainingAsync(x, lying(TRUE_SHAPE, LIE))).y as Float32Array, 'batchNormTrainingAsync');
    check(new bn.BatchNorm2d(16).forward(x, lying(TRUE_SHAPE, LIE)) as Float32Array, 'BatchNorm2d.forward');
    check(await new bn.BatchNorm2d(16).forwardAsync(x, lying(TRUE_SHAPE, LIE)) as Float32Array, 'BatchNorm2d.forwardAsync');
    const rm = new Float32Array(16), rv = new Float32Array(16).fill(1);
    const wantEval = ref.forwardInference(x, ref.dimsOf(TRUE_SHAPE), null, null, rm, rv, 1e-5);
    expectClose(bn.batchNormInference(x, lying(TRUE_SHAPE, LIE), { runningMean: rm, runningVar: rv }), wantEval, 1e-6, 'batchNormInference');
    expectClose(await bn.batchNormInferenceAsync(x, lying(TRUE_SHAPE, LIE), { runningMean: rm, runningVar: rv }), wantEval, 1e-6, 'batchNormInferenceAsync');
    const dy = randn(new Rng(6), x.length, 'float32') as Float32Array;
    const b = bn.batchNormBackward(x, dy, lying(TRUE_SHAPE, LIE), { training: false, runningMean: rm, runningVar: rv });
    const wantB = ref.backward(x, dy, ref.dimsOf(TRUE_SHAPE), null, rm, Array.from(rv, (v) => 1 / Math.sqrt(v + 1e-5)), false);
    expectClose(b.dx, wantB.dx, 1e-5, 'batchNormBackward dx');
  });

  it('a getter that grows the shape cannot get a rank-5 shape through BatchNorm2d', function () {
    const shape: Loose = [2, 3, 4, 5];
    let reads = 0;
    Object.defineProperty(shape, 3, { get() { if (++reads > 1) shape.push(1); return 5; } });
    const y = new bn.BatchNorm2d(3).forward(X.subarray(0, 120), shape);
    expect(y.length).to.equal(120);
    expect(reads, 'each entry read once').to.equal(1);
  });

  it('each option is read once: a getter cannot validate as one array and run as another', function () {
    let reads = 0;
    const big = new Float32Array(TOTAL);
    const opts = { get out() { reads++; return reads === 1 ? big : new Float32Array(3); } };
    const y = new bn.BatchNorm2d(3).forward(X, SHAPE, opts as Loose);
    expect(y).to.equal(big);
    expect(reads).to.equal(1);
  });
});

describe('hardening: option keys', function () {
  it('an unknown option key is an error naming it and the closest known one, on every options object', async function () {
    expectThrowsCoded(() => new bn.BatchNorm(3, { momentun: 0.5 } as Loose), 'ERR_BN_UNKNOWN_OPTION', ["BatchNorm: unknown options key 'momentun'; did you mean 'momentum'?"]);
    const L = new bn.BatchNorm2d(3);
    const before = snapshot(L);
    expectThrowsCoded(() => L.forward(X.subarray(0, 120), [2, 3, 4, 5], { chanelsLast: true } as Loose), 'ERR_BN_UNKNOWN_OPTION', ["'chanelsLast'; did you mean 'channelsLast'?"]);
    expectUnchanged(L, before);
    expectThrowsCoded(() => bn.batchNormTraining(X, SHAPE, { runingMean: new Float32Array(3) } as Loose), 'ERR_BN_UNKNOWN_OPTION', ["did you mean 'runningMean'?"]);
    expectThrowsCoded(() => bn.batchNormInference(X, SHAPE, { runningMean: new Float32Array(3), runningVar: new Float32Array(3), bais: null } as Loose), 'ERR_BN_UNKNOWN_OPTION', ["did you mean 'bias'?"]);
    expectThrowsCoded(() => bn.batchNormBackward(X, DY, SHAPE, { training: true, accumulat: false } as Loose), 'ERR_BN_UNKNOWN_OPTION', ["did you mean 'accumulate'?"]);
    await expectRejectsCoded(bn.batchNormTrainingAsync(X, SHAPE, { zzz: 1 } as Loose), 'ERR_BN_UNKNOWN_OPTION', ["unknown options key 'zzz'"]);
    L.forward(X.subarray(0, 120), [2, 3, 4, 5]);
    expectThrowsCoded(() => L.backward(DY.subarray(0, 120), { outt: null } as Loose), 'ERR_BN_UNKNOWN_OPTION', ["did you mean 'out'?"]);
    expectThrowsCoded(() => L.loadStateDict(L.stateDict() as Loose, { stict: true } as Loose), 'ERR_BN_UNKNOWN_OPTION', ["did you mean 'strict'?"]);
    expectThrowsCoded(() => bn.threadCounters({ rest: true } as Loose), 'ERR_BN_UNKNOWN_OPTION', ["did you mean 'reset'?"]);
  });
});

describe('hardening: typed arrays from another realm, fakes and liars', function () {
  it('arrays made in a vm context (as Jest runs tests) work everywhere a Float32Array does', function () {
    const other = vm.runInNewContext('({ f32: (n) => new Float32Array(n), f64: (n) => new Float64Array(n) })');
    const x = other.f32(TOTAL) as Float32Array;
    x.set(X);
    expect(x instanceof Float32Array, 'really from another realm').to.equal(false);
    const L = new bn.BatchNorm2d(3);
    const y = L.forward(x, SHAPE, other.f32(TOTAL));
    expectBitwiseEqual(Float32Array.from(y), new bn.BatchNorm2d(3).forward(X, SHAPE), 'y');
    const dy = other.f32(TOTAL) as Float32Array;
    dy.set(DY);
    L.backward(dy, { out: other.f32(TOTAL) });
    const r = bn.batchNormTraining(x, SHAPE, { runningMean: other.f32(3), runningVar: other.f32(3).fill(1) });
    expectBitwiseEqual(Float32Array.from(r.y), Float32Array.from(y), 'functional y');
    const d = new bn.BatchNorm1d(2, { dtype: 'float64' });
    d.loadStateDict({ weight: other.f64(2).fill(2), bias: other.f64(2), running_mean: other.f64(2), running_var: other.f64(2).fill(1), num_batches_tracked: 0 });
    expect(Array.from(d.weight as Float64Array)).to.deep.equal([2, 2]);
    const folded = d.foldIntoLinear(other.f64(6).fill(1), null);
    expect(folded.weight.length).to.equal(6);
  });

  it('a subclass whose length lies is read by its real length; a fake Float32Array.prototype object is refused with a code', function () {
    class Liar extends Float32Array {
      get length(): number { return 7; }
    }
    const x = new Liar(TOTAL);
    x.set(X);
    expectBitwiseEqual(new bn.BatchNorm2d(3).forward(x, SHAPE), new bn.BatchNorm2d(3).forward(X, SHAPE), 'y of the liar');
    expectThrowsCoded(() => new bn.BatchNorm2d(3).forward(new Liar(5), SHAPE), 'ERR_BN_BAD_LENGTH', ['x must have 420 elements, received a Float32Array of length 5']);
    const fake = Object.create(Float32Array.prototype);
    for (const call of [
      () => new bn.BatchNorm2d(3).forward(fake, SHAPE),
      () => bn.batchNormTraining(fake, SHAPE),
      () => bn.batchNormInference(X, SHAPE, { runningMean: fake, runningVar: new Float32Array(3) }),
      () => new bn.BatchNorm1d(3).foldIntoLinear(fake),
    ]) {
      expectThrowsCoded(call, 'ERR_BN_INVALID_ARG_TYPE', ['received an object']);
    }
  });

  it('every error of the raw binding is one of the library classes, with a code', function () {
    const b = native() as Loose;
    const fake = Object.create(Float32Array.prototype);
    for (const call of [
      () => b.forwardTraining({ fn: 'raw', x: fake }),
      () => b.forwardInference(null),
      () => b.backward({ fn: 1 }),
      () => b.setSimdLevel({}),
    ]) {
      let err: unknown = null;
      try { call(); } catch (e) { err = e; }
      expect(err).to.be.instanceOf(bn.BatchNormError);
      expect((err as { code?: string }).code).to.match(/^ERR_BN_/);
    }
  });
});

describe('hardening: methods on the wrong this, and state fields', function () {
  it('a method called on something that is not a layer throws a coded error (async ones reject)', async function () {
    const proto = bn.BatchNorm.prototype as Loose;
    for (const m of ['forward', 'backward', 'train', 'eval', 'zeroGrad', 'scaleShift', 'stateDict', 'releaseSaved']) {
      expectThrowsCoded(() => proto[m].call({}, X, SHAPE), 'ERR_BN_INVALID_ARG_TYPE', [`BatchNorm.${m}: must be called on a BatchNorm layer`]);
    }
    for (const m of ['forwardAsync', 'backwardAsync']) {
      let p: unknown;
      expect(() => { p = proto[m].call({}, X, SHAPE); }, `${m} must not throw synchronously`).to.not.throw();
      await expectRejectsCoded(p as Promise<unknown>, 'ERR_BN_INVALID_ARG_TYPE', [`BatchNorm.${m}: must be called on a BatchNorm layer`]);
    }
  });

  it('async methods reject (never throw synchronously) on bad arguments', async function () {
    const L = new bn.BatchNorm2d(3);
    let p: Promise<unknown> | undefined;
    expect(() => { p = L.forwardAsync('x' as Loose, SHAPE); }).to.not.throw();
    await expectRejectsCoded(p as Promise<unknown>, 'ERR_BN_INVALID_ARG_TYPE');
    expect(() => { p = L.backwardAsync(DY); }).to.not.throw();
    await expectRejectsCoded(p as Promise<unknown>, 'ERR_BN_NO_FORWARD');
  });

  it('training takes only booleans; numBatchesTracked only non-negative safe integers', function () {
    const L = new bn.BatchNorm2d(3, { momentum: null });
    expectThrowsCoded(() => { (L as Loose).training = 'no'; }, 'ERR_BN_INVALID_ARG_TYPE', ['training', "received the string \"no\""]);
    expect(L.training).to.equal(true);
    L.training = false;
    expect(L.training).to.equal(false);
    for (const v of [-1, 1.5, NaN, Infinity, '3']) {
      expectThrowsCoded(() => { (L as Loose).numBatchesTracked = v; }, 'ERR_BN_OUT_OF_RANGE', ['numBatchesTracked must be a non-negative safe integer']);
    }
    expect(L.numBatchesTracked).to.equal(0);
    L.numBatchesTracked = 4;
    L.train();
    L.forward(X, SHAPE);
    expect(L.numBatchesTracked).to.equal(5);
  });
});

describe('hardening: an async call takes what it needs when it is made', function () {
  const C = SHAPE[1];

  it('mode, weight, bias and shape are those of the moment of the call, as for a sync call', async function () {
    const want = new bn.BatchNorm2d(C);
    want.weight!.set([0.5, 2, -1]);
    const wantY = want.forward(X, SHAPE);

    const L = new bn.BatchNorm2d(C);
    L.weight!.set([0.5, 2, -1]);
    const shape = SHAPE.slice();
    const p = L.forwardAsync(X, shape);
    L.eval();
    L.weight!.fill(2);
    L.bias!.fill(9);
    shape[0] = 2;
    shape[3] = 14;
    expectBitwiseEqual(await p, wantY, 'y of the call made in training mode with the old weight');
    expectBitwiseEqual(L.runningMean, want.runningMean, 'running mean updated by that training call');
    expect(L.numBatchesTracked).to.equal(1);
  });

  it('queued calls see the running statistics as the earlier calls left them (the sync sequence)', async function () {
    const s = new bn.BatchNorm2d(C, { momentum: null });
    const x2 = X.map((v) => v * 3 + 1);
    s.forward(X, SHAPE);
    s.forward(x2, SHAPE);
    s.eval();
    const yEval = s.forward(X, SHAPE);
    const a = new bn.BatchNorm2d(C, { momentum: null });
    const p1 = a.forwardAsync(X, SHAPE);
    const p2 = a.forwardAsync(x2, SHAPE);
    a.eval();
    const p3 = a.forwardAsync(X, SHAPE);
    await Promise.all([p1, p2]);
    expectBitwiseEqual(await p3, yEval, 'eval y after two queued training forwards');
    expect(a.numBatchesTracked).to.equal(2);
  });
});

describe('hardening: which forward a backward differentiates', function () {
  const C = SHAPE[1];
  const xB = X.map((v) => -2 * v + 0.25);

  function syncGrad(x: Float32Array): { dx: Float32Array; gw: Float32Array } {
    const L = new bn.BatchNorm2d(C);
    L.forward(x, SHAPE);
    const dx = L.backward(DY) as Float32Array;
    return { dx, gw: L.gradWeight as Float32Array };
  }

  it('two interleaved async chains: an unnamed backward is refused with ERR_BN_AMBIGUOUS_BACKWARD; named by output it is right', async function () {
    const L = new bn.BatchNorm2d(C);
    const chain = async (x: Float32Array, name: boolean) => {
      const y = await L.forwardAsync(x, SHAPE);
      return L.backwardAsync(DY, name ? { output: y } : undefined);
    };
    const unnamed = await Promise.allSettled([chain(X, false), chain(xB, false)]);
    for (const r of unnamed) {
      expect(r.status).to.equal('rejected');
      expectCoded((r as PromiseRejectedResult).reason, 'ERR_BN_AMBIGUOUS_BACKWARD', ['{ output: y }']);
    }
    expectBitwiseEqual(L.gradWeight, new Float32Array(C), 'no gradient from refused calls');
    const [dxA, dxB] = await Promise.all([chain(X, true), chain(xB, true)]);
    expectBitwiseEqual(dxA, syncGrad(X).dx, 'dx of chain A');
    expectBitwiseEqual(dxB, syncGrad(xB).dx, 'dx of chain B');
  });

  it('sequential async use needs no name, even with evaluation forwards in between', async function () {
    const L = new bn.BatchNorm2d(C);
    await L.forwardAsync(X, SHAPE);
    await L.backwardAsync(DY);
    L.eval();
    await L.forwardAsync(xB, SHAPE);
    L.train();
    await L.forwardAsync(xB, SHAPE);
    const dx = await L.backwardAsync(DY);
    const s = new bn.BatchNorm2d(C);
    s.forward(X, SHAPE);
    s.backward(DY);
    s.forward(xB, SHAPE);
    expectBitwiseEqual(dx, s.backward(DY), 'dx of the last training forward');
  });

  it('backward({ output }) differentiates an older forward; an array that is no forward output is refused', function () {
    const L = new bn.BatchNorm2d(C);
    const yA = L.forward(X, SHAPE);
    L.forward(xB, SHAPE);
    expectBitwiseEqual(L.backward(DY, { output: yA }), syncGrad(X).dx, 'dx of the first forward');
    expectThrowsCoded(() => L.backward(DY, { output: new Float32Array(TOTAL) }), 'ERR_BN_NO_FORWARD', ['output is not the output of a forward on this layer']);
    L.releaseSaved();
    expectThrowsCoded(() => L.backward(DY, { output: yA }), 'ERR_BN_NO_FORWARD');
  });
});

describe('hardening: file faults', function () {
  const fs = require('fs') as typeof import('fs');
  const os = require('os') as typeof import('os');
  const path = require('path') as typeof import('path');
  const { execFileSync } = require('child_process') as typeof import('child_process');

  it('saving into a missing folder or over a folder is ERR_BN_IO and leaves nothing behind', function () {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bn-io-'));
    try {
      const L = new bn.BatchNorm1d(4);
      expectThrowsCoded(() => L.saveSafetensors(path.join(dir, 'no', 'such', 'bn.safetensors')), 'ERR_BN_IO', ['could not write', 'ENOENT']);
      fs.mkdirSync(path.join(dir, 'taken'));
      fs.writeFileSync(path.join(dir, 'taken', 'keep'), 'x');
      expectThrowsCoded(() => L.saveSafetensors(path.join(dir, 'taken')), 'ERR_BN_IO', ['could not write']);
      expect(fs.readdirSync(dir).sort()).to.deep.equal(['taken']);
      expectThrowsCoded(() => L.loadSafetensors(path.join(dir, 'missing.safetensors')), 'ERR_BN_IO', ['could not read', 'ENOENT']);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a full disk while saving over a checkpoint: ERR_BN_IO, the old checkpoint intact, no partial file (a 64 KiB tmpfs, as root)', function () {
    if (process.getuid?.() !== 0) this.skip(); // mounting needs root (CI and the dev machines run as root)
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bn-full-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', dir]);
    try {
      const file = path.join(dir, 'bn.safetensors');
      const small = new bn.BatchNorm1d(8);
      small.weight!.fill(3);
      small.saveSafetensors(file);
      const before = fs.readFileSync(file);
      const big = new bn.BatchNorm1d(4096); // 4 tensors of 16 KiB and a header: more than is left
      expectThrowsCoded(() => big.saveSafetensors(file), 'ERR_BN_IO', ['could not write', 'ENOSPC']);
      expect(fs.readdirSync(dir)).to.deep.equal(['bn.safetensors']);
      expect(fs.readFileSync(file).equals(before), 'old checkpoint intact').to.equal(true);
      const back = new bn.BatchNorm1d(8);
      back.loadSafetensors(file);
      expectBitwiseEqual(back.weight, small.weight, 'weight loaded back');
    } finally {
      execFileSync('umount', [dir]);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('hardening: folding follows the core invstd rule', function () {
  it('eps = 0 with a zero running variance folds to scale 0, shift = bias, as the evaluation forward computes', function () {
    const L = new bn.BatchNorm1d(2, { eps: 0 });
    L.runningVar!.set([0, 4]);
    L.runningMean!.set([1, 2]);
    L.bias!.set([0.5, -1]);
    L.eval();
    const { scale, shift } = L.scaleShift();
    expect(Array.from(scale)).to.deep.equal([0, 0.5]);
    expect(Array.from(shift)).to.deep.equal([0.5, -2]);
    const x = Float32Array.from([3, 5, 7, 9]);
    const y = L.forward(x, [2, 2]);
    expect(Array.from(y)).to.deep.equal([3 * 0 + 0.5, 5 * 0.5 - 2, 7 * 0 + 0.5, 9 * 0.5 - 2]);
  });
});
