// Property-based hostile inputs (fast-check): generated garbage and edge values fed to the public
// API either give a result of the right length and dtype, or an Error subclass whose .code is one
// of the documented codes (lib/errors.ts) — with the layer's state exactly as before. Valid random
// inputs give the float64 reference's answer.
import { expect } from 'chai';
import fc from 'fast-check';
import * as fs from 'fs';
import * as path from 'path';
import * as bn from '../lib';
import { product } from './helpers/random';
import * as ref from './helpers/reference';
import { bitwiseEqual, expectUnchanged, snapshot } from './helpers/state-snapshot';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Loose = any;

const SEED = process.env.BN_FC_SEED !== undefined ? Number(process.env.BN_FC_SEED) : 20240611;
const RUNS = process.env.BN_FC_RUNS !== undefined ? Number(process.env.BN_FC_RUNS) : 200;
const params = { seed: SEED, numRuns: RUNS };

/** The documented codes: every ERR_BN_* literal of the BatchNormErrorCode union in lib/errors.ts. */
function documentedCodes(): Set<string> {
  const src = fs.readFileSync(path.resolve(__dirname, '..', '..', 'lib', 'errors.ts'), 'utf8');
  const union = src.slice(src.indexOf('export type BatchNormErrorCode'), src.indexOf(';', src.indexOf('export type BatchNormErrorCode')));
  const codes = new Set(Array.from(union.matchAll(/'(ERR_BN_[A-Z_]+)'/g), (m) => m[1]));
  expect(codes.size).to.be.at.least(10);
  return codes;
}
const CODES = documentedCodes();

/** e must be a BatchNorm error with a documented code and a message naming the function. */
function checkError(e: unknown, fnName: string): void {
  if (!(e instanceof bn.BatchNormTypeError || e instanceof bn.BatchNormRangeError || e instanceof bn.BatchNormError)) {
    throw new Error(`not a BatchNorm error: ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`);
  }
  if (!CODES.has(e.code)) throw new Error(`undocumented code ${e.code}: ${e.message}`);
  if (!e.message.includes(fnName)) throw new Error(`message does not name ${fnName}: ${e.message}`);
  if (e.message.length > 600) throw new Error(`message too long (${e.message.length})`);
}

// ---------- arbitraries ----------

/** Any JS value, including the awkward ones: null-prototype objects, symbols, boxed values, maps,
 * sparse arrays, and objects whose toString / valueOf throw (the library must never call them). */
const hostileObjects = [
  { toString() { throw new Error('toString called'); }, valueOf() { throw new Error('valueOf called'); } },
  Object.create(null),
  Symbol('s'),
  new Proxy({}, {}),
  Object.freeze([1, 2, 3]),
];
for (const o of hostileObjects) {
  if (typeof o === 'object' && Object.isExtensible(o)) Object.defineProperty(o, fc.toStringMethod, { value: () => '<hostile object>' });
}
const nasty: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 4, arbitrary: fc.anything({ withNullPrototype: true, withBigInt: true, withBoxedValues: true, withMap: true, withSet: true, withSparseArray: true, withDate: true, withTypedArray: true, withObjectString: true }) },
  { weight: 1, arbitrary: fc.constantFrom(...hostileObjects) },
);

const typedCtors = [Float32Array, Float64Array, Int32Array, Uint8Array, Int16Array, Uint32Array, BigInt64Array] as const;

function detached(n: number): Float32Array {
  const buf = new ArrayBuffer(n * 4);
  const a = new Float32Array(buf);
  structuredClone(buf, { transfer: [buf] });
  // fast-check prints counterexamples by iterating arrays, which throws on a detached one.
  Object.defineProperty(a, fc.toStringMethod, { value: () => `detached Float32Array(${n})` });
  return a;
}

/** Arrays of every kind: float typed arrays of given or random length, other typed arrays, plain arrays, detached, shared, offset views. */
function arrayArb(len: number | null, dtype: 'float32' | 'float64'): fc.Arbitrary<unknown> {
  const n = len === null ? fc.nat(130) : fc.oneof(fc.constant(len), fc.constant(len), fc.nat(130), fc.constant(Math.max(0, len - 1)), fc.constant(len + 1));
  const T = dtype === 'float64' ? Float64Array : Float32Array;
  const fill = (a: Float32Array | Float64Array, seed: number) => { for (let i = 0; i < a.length; i++) a[i] = Math.sin(seed + i * 1.7) * 3; return a; };
  return fc.oneof(
    { weight: 6, arbitrary: fc.tuple(n, fc.integer()).map(([k, s]) => fill(new T(k), s)) },
    { weight: 2, arbitrary: fc.tuple(n, fc.integer()).map(([k, s]) => fill(new (dtype === 'float64' ? Float32Array : Float64Array)(k), s)) },
    { weight: 1, arbitrary: fc.tuple(n, fc.constantFrom(...typedCtors)).map(([k, C]) => new C(k)) },
    { weight: 1, arbitrary: n.map((k) => Array.from({ length: k }, (_, i) => i)) },
    { weight: 1, arbitrary: n.map((k) => detached(k)) },
    { weight: 1, arbitrary: fc.tuple(n, fc.integer()).map(([k, s]) => fill(new T(new SharedArrayBuffer(k * T.BYTES_PER_ELEMENT) as unknown as ArrayBuffer), s)) },
    { weight: 1, arbitrary: fc.tuple(n, fc.integer()).map(([k, s]) => fill(new T(new ArrayBuffer((k + 1) * T.BYTES_PER_ELEMENT), T.BYTES_PER_ELEMENT, k), s)) },
    { weight: 1, arbitrary: nasty },
  );
}

const badDim = fc.constantFrom(0, -1, -0, 1.5, NaN, Infinity, -Infinity, 2 ** 31, 2 ** 32 + 1, 2 ** 53, 2 ** 60, '3', null, undefined, 3n);
const dimArb = fc.oneof({ weight: 5, arbitrary: fc.integer({ min: 1, max: 5 }) }, { weight: 1, arbitrary: badDim }, { weight: 1, arbitrary: nasty });

function shapeArb(valid: number[]): fc.Arbitrary<unknown> {
  return fc.oneof(
    { weight: 4, arbitrary: fc.constant(valid) },
    // one dimension replaced
    { weight: 3, arbitrary: fc.tuple(fc.nat(valid.length - 1), dimArb).map(([i, d]) => valid.map((v, j) => (j === i ? d : v))) },
    { weight: 2, arbitrary: fc.array(dimArb, { maxLength: 7 }) },
    { weight: 1, arbitrary: nasty },
  );
}

const numberArb = fc.oneof(fc.double(), fc.constantFrom(NaN, Infinity, -Infinity, -0, 0, 1, -1e-5, 1e-5, 0.5, 1.0000001), nasty);

interface LayerConfig {
  kind: 0 | 1 | 2 | 3;
  c: number;
  dtype: 'float32' | 'float64';
  affine: boolean;
  track: boolean;
  momentum: number | null;
  training: boolean;
  primed: boolean;
}

const configArb: fc.Arbitrary<LayerConfig> = fc.record({
  kind: fc.constantFrom(0 as const, 1 as const, 2 as const, 3 as const),
  c: fc.integer({ min: 1, max: 4 }),
  dtype: fc.constantFrom('float32' as const, 'float64' as const),
  affine: fc.boolean(),
  track: fc.boolean(),
  momentum: fc.oneof(fc.constant(null), fc.double({ min: 0, max: 1, noNaN: true })),
  training: fc.boolean(),
  primed: fc.boolean(),
});

const CTORS = [bn.BatchNorm, bn.BatchNorm1d, bn.BatchNorm2d, bn.BatchNorm3d];

function validShape(cfg: LayerConfig): number[] {
  switch (cfg.kind) {
    case 0: return [3, cfg.c, 2, 2];
    case 1: return [3, cfg.c, 4];
    case 2: return [2, cfg.c, 3, 2];
    default: return [2, cfg.c, 2, 1, 3];
  }
}

function data(n: number, dtype: 'float32' | 'float64', seed: number): Float32Array | Float64Array {
  const a = new (dtype === 'float64' ? Float64Array : Float32Array)(n);
  for (let i = 0; i < n; i++) a[i] = Math.sin(seed * 7.3 + i * 1.3) * 2 + 0.5;
  return a;
}

function makeLayer(cfg: LayerConfig): bn.BatchNorm {
  const L = new CTORS[cfg.kind](cfg.c, { dtype: cfg.dtype, affine: cfg.affine, trackRunningStats: cfg.track, momentum: cfg.momentum });
  if (cfg.affine) {
    for (let i = 0; i < cfg.c; i++) {
      L.weight![i] = 1 + 0.25 * i;
      L.bias![i] = 0.1 * i;
    }
  }
  if (cfg.primed) {
    const sh = validShape(cfg);
    L.forward(data(product(sh), cfg.dtype, 1), sh);
    L.backward(data(product(sh), cfg.dtype, 2));
  }
  L.train(cfg.training);
  return L;
}

function describeArgs(v: unknown): string {
  try {
    return JSON.stringify(v, (_, x) => (typeof x === 'bigint' ? `${x}n` : ArrayBuffer.isView(x) ? `${x.constructor.name}(${(x as Float32Array).length})` : x))?.slice(0, 200) ?? String(v);
  } catch {
    return '<unprintable>';
  }
}

/** How many generated calls succeeded and how many threw, per property (to show neither side is empty). */
let tally = { ok: 0, err: 0 };
function expectBothOutcomes(what: string): void {
  expect(tally.ok, `${what}: generated calls that succeeded`).to.be.at.least(5);
  expect(tally.err, `${what}: generated calls that threw`).to.be.at.least(5);
  tally = { ok: 0, err: 0 };
}

/** Runs f on L: returns its result, or checks the error and that L is unchanged and returns undefined. */
function guarded<R>(L: bn.BatchNorm, fnName: string, f: () => R): R | undefined {
  const before = snapshot(L);
  try {
    const r = f();
    tally.ok++;
    return r;
  } catch (e) {
    tally.err++;
    checkError(e, fnName);
    expectUnchanged(L, before, (e as Error).message);
    return undefined;
  }
}

describe(`hostile inputs: properties (fast-check seed ${SEED}, ${RUNS} runs each; BN_FC_SEED overrides)`, function () {
  this.timeout(60000);

  it('forward(x, shape, out) with generated arguments: a right-sized result or a documented error, state unchanged', function () {
    fc.assert(
      fc.property(configArb.chain((cfg) => {
        const sh = validShape(cfg);
        const total = product(sh);
        return fc.tuple(fc.constant(cfg), arrayArb(total, cfg.dtype), shapeArb(sh),
          fc.oneof(fc.constant(undefined), arrayArb(total, cfg.dtype), fc.record({ out: arrayArb(total, cfg.dtype), channelsLast: fc.oneof(fc.boolean(), nasty) }, { requiredKeys: [] })));
      }), ([cfg, x, shape, out]) => {
        const L = makeLayer(cfg);
        const y = guarded(L, `${L.constructor.name}.forward`, () => L.forward(x as Loose, shape as Loose, out as Loose));
        if (y !== undefined) {
          expect(y, describeArgs([shape])).to.be.instanceOf(cfg.dtype === 'float64' ? Float64Array : Float32Array);
          expect(y.length).to.equal(product(shape as number[]));
          if (ArrayBuffer.isView(out)) expect(y).to.equal(out);
        }
      }),
      params,
    );
    expectBothOutcomes(this.test?.title ?? '');
  });

  it('backward(dy, out) with generated arguments: a right-sized result or a documented error, state unchanged', function () {
    fc.assert(
      fc.property(configArb.chain((cfg) => {
        const total = product(validShape(cfg));
        return fc.tuple(fc.constant(cfg), arrayArb(total, cfg.dtype), fc.oneof(fc.constant(undefined), arrayArb(total, cfg.dtype)));
      }), ([cfg, dy, out]) => {
        const L = makeLayer(cfg);
        const total = product(validShape(cfg));
        const dx = guarded(L, `${L.constructor.name}.backward`, () => L.backward(dy as Loose, out as Loose));
        if (dx !== undefined) {
          expect(cfg.primed, 'backward succeeded without a forward').to.equal(true);
          expect(dx.length).to.equal(total);
          expect(dx).to.be.instanceOf(cfg.dtype === 'float64' ? Float64Array : Float32Array);
        }
      }),
      params,
    );
    expectBothOutcomes(this.test?.title ?? '');
  });

  it('loadStateDict with generated dicts: loads exactly the given values or throws a documented error, state unchanged', function () {
    const keys = ['weight', 'bias', 'running_mean', 'running_var', 'num_batches_tracked', 'extra', '__proto__x'];
    fc.assert(
      fc.property(configArb.chain((cfg) => {
        const valueArb = fc.oneof(
          arrayArb(cfg.c, cfg.dtype),
          fc.constantFrom(0, 3, -1, 1.5, NaN, 2 ** 60, 5n, -1n, 2n ** 62n, '2', null, undefined),
          fc.constant(BigInt64Array.of(4n)),
        );
        return fc.tuple(
          fc.constant(cfg),
          fc.oneof({ weight: 5, arbitrary: fc.dictionary(fc.constantFrom(...keys), valueArb) }, { weight: 1, arbitrary: nasty }),
          fc.oneof(fc.constant(undefined), fc.record({ strict: fc.oneof(fc.boolean(), nasty) }, { requiredKeys: [] }), nasty),
        );
      }), ([cfg, dict, options]) => {
        const L = makeLayer(cfg);
        const before = snapshot(L);
        const r = guarded(L, `${L.constructor.name}.loadStateDict`, () => { L.loadStateDict(dict as Loose, options as Loose); return true; });
        if (r) {
          const d = dict as Record<string, Loose>;
          for (const [k, field] of [['weight', 'weight'], ['bias', 'bias'], ['running_mean', 'runningMean'], ['running_var', 'runningVar']] as const) {
            const target = L[field];
            if (!target) continue;
            const want = new (cfg.dtype === 'float64' ? Float64Array : Float32Array)(d[k]);
            expect(bitwiseEqual(target, want), `${k} loaded`).to.equal(true);
          }
          if (cfg.track) expect(L.numBatchesTracked).to.equal(Number(ArrayBuffer.isView(d.num_batches_tracked) ? (d.num_batches_tracked as BigInt64Array)[0] : d.num_batches_tracked));
          else expect(L.numBatchesTracked).to.equal(before.numBatchesTracked);
          expect(L.gradWeight === null || bitwiseEqual(L.gradWeight, before.gradWeight), 'grads untouched').to.equal(true);
        }
      }),
      params,
    );
    expectBothOutcomes(this.test?.title ?? '');
  });

  it('the functional API with generated options: a result or a documented error, caller arrays unchanged on error', function () {
    fc.assert(
      fc.property(fc.tuple(fc.integer({ min: 1, max: 3 }), fc.constantFrom('float32' as const, 'float64' as const), fc.constantFrom(0, 1, 2)).chain(([c, dtype, which]) => {
        const sh = [3, c, 2];
        const total = product(sh);
        const T = dtype === 'float64' ? Float64Array : Float32Array;
        // Valid options for the function, then 0 to 3 entries replaced by generated values.
        const base = (): Record<string, unknown> => {
          const perChannel = (v: number) => new T(c).fill(v);
          if (which === 0) return { weight: perChannel(1.5), bias: perChannel(0.5), runningMean: perChannel(0), runningVar: perChannel(1), momentum: 0.1, eps: 1e-5 };
          if (which === 1) return { weight: perChannel(1.5), bias: perChannel(0.5), runningMean: perChannel(0.2), runningVar: perChannel(2), eps: 1e-5 };
          return { weight: perChannel(1.5), training: true, mean: new Float64Array(c).fill(0.1), invstd: new Float64Array(c).fill(2), gradWeight: perChannel(0), gradBias: perChannel(0) };
        };
        const keys = ['weight', 'bias', 'runningMean', 'runningVar', 'mean', 'invstd', 'gradWeight', 'gradBias', 'out', 'eps', 'momentum', 'training', 'accumulate'];
        const valueFor = (k: string): fc.Arbitrary<unknown> => {
          if (k === 'out') return fc.oneof(fc.constant(undefined), arrayArb(total, dtype));
          if (k === 'eps' || k === 'momentum') return fc.oneof(fc.constant(undefined), numberArb);
          if (k === 'training' || k === 'accumulate') return fc.oneof(fc.boolean(), nasty);
          return fc.oneof(fc.constant(undefined), fc.constant(null), arrayArb(c, dtype));
        };
        const override = fc.constantFrom(...keys).chain((k) => fc.tuple(fc.constant(k), valueFor(k)));
        return fc.tuple(
          fc.constant({ c, dtype, which, total }),
          arrayArb(total, dtype),
          shapeArb(sh),
          fc.oneof(
            { weight: 8, arbitrary: fc.array(override, { maxLength: 3 }).map((kv) => Object.assign(base(), Object.fromEntries(kv))) },
            { weight: 1, arbitrary: nasty },
          ),
        );
      }), ([{ dtype, which, total }, x, shape, o]) => {
        const arrays: Array<[ArrayBufferView, ArrayBufferView]> = [];
        const remember = (v: unknown) => { if ((v instanceof Float32Array || v instanceof Float64Array) && v.buffer.byteLength > 0) arrays.push([v, v.slice()]); };
        remember(x);
        if (o && typeof o === 'object') for (const v of Object.values(o)) remember(v);
        const name = ['batchNormTraining', 'batchNormInference', 'batchNormBackward'][which];
        let result: Loose;
        try {
          if (which === 0) result = bn.batchNormTraining(x as Loose, shape as Loose, o as Loose);
          else if (which === 1) result = bn.batchNormInference(x as Loose, shape as Loose, o as Loose);
          else result = bn.batchNormBackward(x as Loose, data(total, dtype, 3) as Loose, shape as Loose, o as Loose);
        } catch (e) {
          tally.err++;
          checkError(e, name);
          for (const [a, copy] of arrays) expect(bitwiseEqual(a as Float32Array, copy as Float32Array), `${name} modified an argument before throwing`).to.equal(true);
          return;
        }
        tally.ok++;
        const y = which === 0 ? result.y : which === 1 ? result : result.dx;
        expect(y.length).to.equal(product(shape as number[]));
        expect(y.constructor, 'the output has x\'s dtype').to.equal((x as Float32Array).constructor);
        void dtype;
      }),
      params,
    );
    expectBothOutcomes(this.test?.title ?? '');
  });

  it('forwardAsync / backwardAsync with generated arguments reject (never throw) with a documented code, state unchanged', async function () {
    await fc.assert(
      fc.asyncProperty(configArb.chain((cfg) => {
        const sh = validShape(cfg);
        const total = product(sh);
        return fc.tuple(fc.constant(cfg), arrayArb(total, cfg.dtype), shapeArb(sh), arrayArb(total, cfg.dtype));
      }), async ([cfg, x, shape, dy]) => {
        const L = makeLayer(cfg);
        const before = snapshot(L);
        let pf!: Promise<unknown>;
        let pb!: Promise<unknown>;
        expect(() => {
          pf = L.forwardAsync(x as Loose, shape as Loose);
          pb = L.backwardAsync(dy as Loose);
        }).to.not.throw();
        const [rf, rb] = await Promise.allSettled([pf, pb]);
        tally[rf.status === 'rejected' ? 'err' : 'ok']++;
        if (rf.status === 'rejected') {
          checkError(rf.reason, `${L.constructor.name}.forwardAsync`);
          if (rb.status === 'rejected') {
            checkError(rb.reason, `${L.constructor.name}.backwardAsync`);
            expectUnchanged(L, before, `${rf.reason.message} / ${rb.reason.message}`);
          }
        } else {
          expect((rf.value as Float32Array).length).to.equal(product(shape as number[]));
          if (rb.status === 'rejected') checkError(rb.reason, `${L.constructor.name}.backwardAsync`);
        }
      }),
      { ...params, numRuns: 100 },
    );
    expectBothOutcomes(this.test?.title ?? '');
  });

  it('valid random inputs match the float64 reference (forward, running statistics, backward)', function () {
    const shapeGen = fc.integer({ min: 2, max: 5 }).chain((rank) => fc.tuple(
      fc.integer({ min: 1, max: 5 }), fc.integer({ min: 1, max: 4 }), ...Array.from({ length: rank - 2 }, () => fc.integer({ min: 1, max: 5 })),
    ));
    fc.assert(
      fc.property(
        shapeGen, fc.constantFrom('float32' as const, 'float64' as const), fc.boolean(), fc.boolean(),
        fc.oneof(fc.constant(null), fc.double({ min: 0, max: 1, noNaN: true })), fc.double({ min: 0, max: 0.1, noNaN: true }),
        fc.integer({ min: 1, max: 3 }), fc.integer(), fc.boolean(),
        (shape, dtype, affine, training, momentum, eps, steps, seed, channelsLastUnused) => {
          void channelsLastUnused;
          const d = ref.dimsOf(shape);
          const m = d.n * d.s;
          if (training && m < 2) return; // one value per channel: an error, covered elsewhere
          if (!training && eps === 0) eps = 1e-5; // running_var may be 1: fine, but keep invstd finite
          const L = new bn.BatchNorm(d.c, { dtype, affine, momentum, eps });
          const w = Array.from({ length: d.c }, (_, i) => 0.5 + Math.abs(Math.sin(seed + i)));
          const b = Array.from({ length: d.c }, (_, i) => Math.cos(seed * 3 + i));
          if (affine) { L.weight!.set(w); L.bias!.set(b); }
          const wr = affine ? Array.from(L.weight!) : null;
          const br = affine ? Array.from(L.bias!) : null;
          let rm: ArrayLike<number> = new Float64Array(d.c);
          let rv: ArrayLike<number> = new Float64Array(d.c).fill(1);
          const tol = dtype === 'float32' ? 5e-4 : 1e-9;
          for (let step = 1; step <= steps; step++) {
            const x = data(product(shape), dtype, seed + step);
            // Spread the channels apart so the variance is not tiny relative to the mean.
            for (let i = 0; i < x.length; i++) x[i] = dtype === 'float32' ? Math.fround(x[i]) : x[i];
            if (!training) L.eval();
            const y = L.forward(x, shape);
            const dy = data(x.length, dtype, seed * 5 + step);
            const dx = L.backward(dy);
            if (training) {
              const r = ref.forwardTraining(x, d, wr, br, eps);
              const u = ref.runningUpdate(rm, rv, r, m, momentum, step);
              rm = u.mean;
              rv = u.variance;
              closeAll(y, r.y, tol, 'y');
              closeAll(L.runningMean!, rm, tol, 'runningMean');
              closeAll(L.runningVar!, rv, tol, 'runningVar');
              closeAll(dx, ref.backward(x, dy, d, wr, r.mean, r.invstd, true).dx, tol * 20, 'dx');
            } else {
              const invstd = Array.from(rv, (v) => 1 / Math.sqrt(v + eps));
              closeAll(y, ref.forwardInference(x, d, wr, br, rm, rv, eps), tol, 'eval y');
              closeAll(dx, ref.backward(x, dy, d, wr, rm, invstd, false).dx, tol, 'eval dx');
            }
          }
          expect(L.numBatchesTracked).to.equal(training ? steps : 0);
        },
      ),
      params,
    );
  });
});

function closeAll(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: number, what: string): void {
  expect(actual.length, `${what} length`).to.equal(expected.length);
  let scale = 1;
  for (let i = 0; i < expected.length; i++) scale = Math.max(scale, Math.abs(expected[i]));
  for (let i = 0; i < actual.length; i++) {
    if (!(Math.abs(actual[i] - expected[i]) <= tol * scale)) {
      throw new Error(`${what}[${i}] = ${actual[i]}, expected ${expected[i]} (tol ${tol} * ${scale})`);
    }
  }
}
