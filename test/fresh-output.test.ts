// Outputs the library allocates itself (no `out`) are not zero-filled first (lib/functional.ts,
// freshOutput): the kernels must write every element. Checked against the same call into a
// caller-provided output pre-filled with NaN (so an element a kernel skipped would show), bit for
// bit, for the three ops, both dtypes, both layouts, sync and async, on tensors large enough
// (>= 8 MiB) to take the streaming-store paths and the huge-page advice (>= 4 MiB).
import { expect } from 'chai';
import { spawnSync } from 'child_process';
import * as path from 'path';
import * as bn from '../lib';
import { native } from '../lib/load';

type T = typeof Float32Array | typeof Float64Array;

function filled(Ctor: T, n: number, f: (i: number) => number) {
  const a = new Ctor(n);
  for (let i = 0; i < n; i++) a[i] = f(i);
  return a;
}

function sameBits(a: ArrayLike<number>, b: ArrayLike<number>, what: string) {
  expect(a.length, what).to.equal(b.length);
  for (let i = 0; i < a.length; i++) {
    if (!Object.is(a[i], b[i])) expect.fail(`${what}: element ${i}: ${a[i]} (fresh) vs ${b[i]} (provided)`);
  }
}

describe('freshly allocated outputs', () => {
  const shapes = [[16, 64, 48, 48], [2, 3, 700, 700]];  // 9.0 MiB and 11.2 MiB in float32
  for (const dtype of ['float32', 'float64'] as const) {
    for (const shape of shapes) {
      for (const channelsLast of [false, true]) {
        it(`${dtype} [${shape}]${channelsLast ? ' channels-last' : ''}: every element written, as into a provided output`, async () => {
          const Ctor: T = dtype === 'float32' ? Float32Array : Float64Array;
          const n = shape.reduce((p, q) => p * q), C = shape[1];
          const x = filled(Ctor, n, (i) => Math.sin(i * 0.37) * 3 + (i % 7));
          const dy = filled(Ctor, n, (i) => Math.cos(i * 0.11));
          const weight = filled(Ctor, C, (c) => 1 + 0.1 * c), bias = filled(Ctor, C, (c) => -0.2 * c);
          const rm = filled(Ctor, C, (c) => 0.3 * c), rv = filled(Ctor, C, (c) => 1 + 0.05 * c);
          const nan = () => new Ctor(n).fill(NaN);
          const common = { weight, bias, channelsLast };

          const tProv = bn.batchNormTraining(x, shape, { ...common, out: nan() });
          sameBits(bn.batchNormTraining(x, shape, common).y, tProv.y, 'training');
          sameBits((await bn.batchNormTrainingAsync(x, shape, common)).y, tProv.y, 'training async');

          const inf = { ...common, runningMean: rm, runningVar: rv };
          const iProv = bn.batchNormInference(x, shape, { ...inf, out: nan() });
          sameBits(bn.batchNormInference(x, shape, inf), iProv, 'inference');
          sameBits(await bn.batchNormInferenceAsync(x, shape, inf), iProv, 'inference async');

          const bw = { weight, training: true, mean: tProv.batchMean, invstd: tProv.batchInvstd, channelsLast };
          const bProv = bn.batchNormBackward(x, dy, shape, { ...bw, out: nan() });
          sameBits(bn.batchNormBackward(x, dy, shape, bw).dx, bProv.dx, 'backward');
          sameBits((await bn.batchNormBackwardAsync(x, dy, shape, bw)).dx, bProv.dx, 'backward async');
        });
      }
    }
  }

  it('the layer returns fresh outputs equal to provided ones', () => {
    const shape = [8, 32, 40, 40], n = 8 * 32 * 40 * 40;
    const x = filled(Float32Array, n, (i) => (i % 13) - 6 + Math.sin(i));
    const L = new bn.BatchNorm(32);
    const provided = new Float32Array(n).fill(NaN);
    L.forward(x, shape, provided);
    const fresh = L.forward(x, shape);
    sameBits(fresh, provided, 'layer forward');
    const dy = filled(Float32Array, n, (i) => Math.cos(i * 0.5));
    const dxProv = new Float32Array(n).fill(NaN);
    L.zeroGrad();
    L.backward(dy, dxProv);
    L.zeroGrad();
    sameBits(L.backward(dy), dxProv, 'layer backward');
  });
});

describe('adviseHugePages (the addon)', () => {
  it('returns a boolean, never changes the contents, and ignores what it cannot use', () => {
    const b = native();
    const a = new Float32Array(3 << 20);  // 12 MiB: whole 2 MiB pages inside, wherever it starts
    for (let i = 0; i < a.length; i += 4099) a[i] = i;
    expect(b.adviseHugePages(a)).to.be.a('boolean');
    for (let i = 0; i < a.length; i += 4099) expect(a[i]).to.equal(i);
    expect(b.adviseHugePages(new Float32Array(16))).to.equal(false);  // nothing 2 MiB-aligned inside
    expect(b.adviseHugePages(new Float64Array(new SharedArrayBuffer(8 << 20)))).to.be.a('boolean');
    for (const v of [null, undefined, 3, 'x', {}, new ArrayBuffer(8)]) {
      expect((b.adviseHugePages as (v: unknown) => boolean)(v)).to.equal(false);
    }
  });
});

describe('huge-page advice on fresh outputs', () => {
  // In a child process (the setting is read once at load): count the facade's calls of the
  // addon's adviseHugePages for a fresh 8 MiB output and a fresh 1 MiB one.
  const LIB = path.resolve(__dirname, '..', 'lib');
  const LOAD = path.resolve(__dirname, '..', 'lib', 'load');
  const script = `
    const { native } = require(${JSON.stringify(LOAD)});
    const b = native(); const orig = b.adviseHugePages; let calls = 0;
    b.adviseHugePages = (a) => { calls++; return orig.call(b, a); };
    const bn = require(${JSON.stringify(LIB)});
    const opts = { runningMean: new Float32Array(4), runningVar: new Float32Array(4).fill(1) };
    bn.batchNormInference(new Float32Array(1 << 21), [512, 4, 1024], opts);
    bn.batchNormInference(new Float32Array(1 << 18), [64, 4, 1024], opts);
    process.stdout.write(String(calls));`;
  const calls = (env: NodeJS.ProcessEnv) => {
    const r = spawnSync(process.execPath, ['-e', script], { env, encoding: 'utf8', timeout: 20000 });
    expect(r.status, r.stderr).to.equal(0);
    return Number(r.stdout);
  };

  it('is given for outputs of 4 MiB or more, and BATCHNORM_HUGEPAGES=0 turns it off', function () {
    this.timeout(30000);
    const env = { ...process.env };
    delete env.BATCHNORM_HUGEPAGES;
    expect(calls(env)).to.equal(1);
    expect(calls({ ...env, BATCHNORM_HUGEPAGES: '0' })).to.equal(0);
  });
});
