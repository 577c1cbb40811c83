// BF16 / F16 checkpoints: the PyTorch fixtures in ../shared/fixtures/reduced (their 16-bit tensors
// parse to the raw bits and widen exactly: recomputing the exact float64 result from the widened
// inputs gives their y_ref), serializeSafetensors writing 16-bit tensors, and loadCheckpoint: one
// read of a whole-model file, its BatchNorm prefixes, layers of any dtype loaded all or none.
import { expect } from 'chai';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as bn from '../lib';
import { repoRoot, sharedFixturesDir } from './helpers/fixtures';
import { BF16, decodeHalf, encodeHalf, F16, HalfFormat } from './helpers/half-reference';
import { randn, randu, Rng } from './helpers/random';

type Loose = never;
// The repo's copy (a clean clone has no ../shared); equal byte for byte to the shared master where it exists.
const reducedDir = path.join(repoRoot, 'test', 'fixtures', 'reduced');
const sharedReducedDir = path.join(sharedFixturesDir, 'reduced');

function expectCode(f: () => unknown, code: string, ...texts: string[]): void {
  let err: (Error & { code?: string }) | undefined;
  try {
    f();
  } catch (e) {
    err = e as Error & { code?: string };
  }
  expect(err, `expected ${code}`).to.not.equal(undefined);
  expect(err).to.be.instanceOf(bn.BatchNormError);
  expect(err!.code, err!.message).to.equal(code);
  for (const t of texts) expect(err!.message).to.contain(t);
}

/** The test's own reading of one tensor's little-endian uint16 values (not lib/safetensors.ts). */
function rawU16(bytes: Buffer, name: string): Uint16Array {
  const h = Number(bytes.readBigUInt64LE(0));
  const entry = JSON.parse(bytes.toString('utf8', 8, 8 + h))[name] as { data_offsets: [number, number] };
  const [b, e] = entry.data_offsets;
  const out = new Uint16Array((e - b) / 2);
  for (let i = 0; i < out.length; i++) out[i] = bytes.readUInt16LE(8 + h + b + 2 * i);
  return out;
}

/** One unit in the last place of the format at |v| (its spacing in v's binade). */
function ulp(f: HalfFormat, v: number): number {
  const minExp = f === BF16 ? -126 : -14;
  const e = Math.max(Math.floor(Math.log2(Math.abs(v) || 2 ** minExp)), minExp);
  return 2 ** (e - f.mant);
}

describe('checkpoints: the reduced-precision PyTorch fixtures', () => {
  const files = fs.readdirSync(reducedDir).filter((f) => f.endsWith('.safetensors')).sort();
  it('the repo copy is every file of the shared master, byte for byte (when ../shared is there)', function () {
    expect(files.length).to.equal(5);
    if (!fs.existsSync(sharedReducedDir)) return;
    const shared = fs.readdirSync(sharedReducedDir).filter((f) => f.endsWith('.safetensors')).sort();
    expect(files).to.deep.equal(shared);
    for (const f of files) expect(fs.readFileSync(path.join(reducedDir, f)).equals(fs.readFileSync(path.join(sharedReducedDir, f))), f).to.equal(true);
  });

  it('are all there (5 files)', () => expect(files.length).to.equal(5));

  for (const file of files) {
    describe(file, () => {
      const bytes = fs.readFileSync(path.join(reducedDir, file));
      const st = bn.parseSafetensors(bytes);
      const meta = st.metadata;
      const f = meta.dtype === 'bfloat16' ? BF16 : F16;
      const dtype = f === BF16 ? 'BF16' : 'F16';
      const widen = (name: string): Float32Array =>
        (f === BF16 ? bn.fromBFloat16 : bn.fromFloat16)(st.tensors[name].data as Uint16Array);
      const f64 = (name: string): Float64Array => st.tensors[name].data as Float64Array;
      const f32 = (name: string): Float32Array => st.tensors[name].data as Float32Array;

      it(`x, y, dy, dx are ${dtype}: raw bits in a Uint16Array, dtype and shape reported; the rest F32/F64/I64`, () => {
        for (const name of ['x', 'y', 'dy', 'dx']) {
          const t = st.tensors[name];
          expect(t.dtype).to.equal(dtype);
          expect(t.data).to.be.instanceOf(Uint16Array);
          expect(t.data.length).to.equal(t.shape.reduce((p, d) => p * d, 1));
          expect(Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength).equals(Buffer.from(rawU16(bytes, name).buffer)), name).to.equal(true);
        }
        for (const name of ['weight', 'bias', 'running_mean', 'running_var', 'save_mean', 'save_invstd', 'dweight', 'dbias']) {
          expect(st.tensors[name].dtype, name).to.equal('F32');
        }
        expect(st.tensors.y_ref.dtype).to.equal('F64');
      });

      it('the widened x gives the file\'s exact float64 y_ref (the 16-bit inputs converted exactly)', () => {
        const x = widen('x');
        const [N, C] = st.tensors.x.shape;
        const S = x.length / (N * C);
        const w = f32('weight'), b = f32('bias'), eps = Number(meta.eps);
        const yRef = f64('y_ref');
        let worst = 0;
        for (let c = 0; c < C; c++) {
          let mean: number, variance: number;
          if (meta.training === 'true') {
            let s = 0;
            for (let n = 0; n < N; n++) for (let i = 0; i < S; i++) s += x[(n * C + c) * S + i];
            mean = s / (N * S);
            let q = 0;
            for (let n = 0; n < N; n++) for (let i = 0; i < S; i++) q += (x[(n * C + c) * S + i] - mean) ** 2;
            variance = q / (N * S);
            // PyTorch's float32 save_mean of the same stored inputs.
            expect(Math.abs(f32('save_mean')[c] - mean)).to.be.at.most(1e-6 * Math.max(1, Math.abs(mean)));
          } else {
            mean = f32('running_mean')[c];
            variance = f32('running_var')[c];
          }
          const k = w[c] / Math.sqrt(variance + eps);
          for (let n = 0; n < N; n++) {
            for (let i = 0; i < S; i++) {
              const j = (n * C + c) * S + i;
              worst = Math.max(worst, Math.abs((x[j] - mean) * k + b[c] - yRef[j]) / Math.max(1, Math.abs(yRef[j])));
            }
          }
        }
        expect(worst).to.be.below(1e-9);
      });

      it(`y and dx are within one ${meta.dtype} ulp of y_ref and dx_ref${f === F16 ? ' (float16: exactly y_ref rounded once)' : ''}`, () => {
        for (const [name, ref] of [['y', 'y_ref'], ['dx', 'dx_ref']] as const) {
          const got = widen(name);
          const bits = st.tensors[name].data as Uint16Array;
          const want = f64(ref);
          for (let i = 0; i < got.length; i++) {
            expect(got[i], `${name}[${i}] decodes as the reference says`).to.equal(decodeHalf(f, bits[i]));
            expect(Math.abs(got[i] - want[i]), `${name}[${i}]`).to.be.at.most(ulp(f, want[i]));
            if (f === F16) expect(bits[i], `${name}[${i}] = round(${ref})`).to.equal(encodeHalf(F16, want[i]));
          }
        }
      });

      it('round trip: toBFloat16/toFloat16 of the widened values gives back the stored bits', () => {
        for (const name of ['x', 'y', 'dy', 'dx']) {
          const back = (f === BF16 ? bn.toBFloat16 : bn.toFloat16)(widen(name));
          expect(Array.from(back)).to.deep.equal(Array.from(st.tensors[name].data as Uint16Array));
        }
      });

      it('loadCheckpoint: one BatchNorm prefix (\'\'), loaded into float32 and float64 layers', () => {
        const ck = bn.loadCheckpoint(path.join(reducedDir, file));
        expect(ck.prefixes()).to.deep.equal(['']);
        expect(ck.metadata.dtype).to.equal(meta.dtype);
        const C = st.tensors.weight.shape[0];
        for (const d of ['float32', 'float64'] as const) {
          const L = new bn.BatchNorm(C, { dtype: d });
          ck.loadInto(L, '', { strict: false });
          expect(Array.from(L.weight!)).to.deep.equal(Array.from(f32('weight')));
          expect(Array.from(L.runningVar!)).to.deep.equal(Array.from(f32('running_var')));
        }
        // strict: the fixture's other top-level tensors (x, y, ...) are not a layer's.
        expectCode(() => ck.loadInto(new bn.BatchNorm(C), ''), 'ERR_BN_STATE_DICT', 'unexpected', 'x');
      });
    });
  }
});

describe('checkpoints: writing BF16 / F16 tensors', () => {
  it('serializeSafetensors writes a Uint16Array as the stated BF16 / F16; parse gives the same bits and dtype', () => {
    const bits = Uint16Array.of(0x3f80, 0x7fc0, 0x0001, 0xff80);
    const bytes = bn.serializeSafetensors({
      a: { dtype: 'BF16', shape: [2, 2], data: bits },
      b: { dtype: 'F16', shape: [4], data: bits },
      c: { shape: [1], data: Float64Array.of(0.1) },
    }, { k: 'v' });
    const st = bn.parseSafetensors(bytes);
    expect(st.tensors.a.dtype).to.equal('BF16');
    expect(st.tensors.a.shape).to.deep.equal([2, 2]);
    expect(Array.from(st.tensors.a.data as Uint16Array)).to.deep.equal(Array.from(bits));
    expect(st.tensors.b.dtype).to.equal('F16');
    expect(Array.from(st.tensors.b.data as Uint16Array)).to.deep.equal(Array.from(bits));
    expect(st.tensors.c.dtype).to.equal('F64');
    expect(st.metadata).to.deep.equal({ k: 'v' });
    // The test's own reading of the bytes.
    expect(Array.from(rawU16(Buffer.from(bytes), 'b'))).to.deep.equal(Array.from(bits));
  });

  it('refuses a Uint16Array without a 16-bit dtype, a dtype its data cannot have, and a shape that lies', () => {
    const u = new Uint16Array(3);
    expectCode(() => bn.serializeSafetensors({ t: { shape: [3], data: u } }), 'ERR_BN_INVALID_ARG_TYPE', "tensor 't' holds a Uint16Array: state its dtype, 'BF16' or 'F16'");
    expectCode(() => bn.serializeSafetensors({ t: { shape: [3], data: u, dtype: 'F32' } }), 'ERR_BN_DTYPE_MISMATCH', "tensor 't' has dtype F32 but its data is a Uint16Array");
    expectCode(() => bn.serializeSafetensors({ t: { shape: [3], data: new Float32Array(3), dtype: 'BF16' } }), 'ERR_BN_DTYPE_MISMATCH', 'convert it with toBFloat16 first');
    expectCode(() => bn.serializeSafetensors({ t: { shape: [3], data: u, dtype: 'Q8' as Loose } }), 'ERR_BN_INVALID_ARG_TYPE', 'dtype must be one of F32, F64, I64, BF16, F16');
    expectCode(() => bn.serializeSafetensors({ t: { shape: [4], data: new Float32Array(3) } }), 'ERR_BN_BAD_LENGTH', "tensor 't' of shape [4] needs 4 elements, its data has 3");
    expectCode(() => bn.serializeSafetensors({ t: { shape: [-3], data: new Float32Array(3) } }), 'ERR_BN_BAD_SHAPE');
    expectCode(() => bn.serializeSafetensors({ t: { shape: [3], data: new Int32Array(3) as Loose } }), 'ERR_BN_INVALID_ARG_TYPE', 'received an Int32Array');
    expectCode(() => bn.serializeSafetensors({ t: null as Loose }), 'ERR_BN_INVALID_ARG_TYPE', "tensor 't' must be an object");
  });
});

describe('checkpoints: loadCheckpoint on a whole-model file', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bn-ckpt-'));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  // A ResNet-like state dict: convolutions, BN layers stored in every dtype, a classifier.
  const BN_LAYERS: Array<[string, number, bn.TensorDType]> = [
    ['bn1.', 8, 'BF16'],
    ['layer1.0.bn1.', 8, 'F16'],
    ['layer1.0.bn2.', 8, 'F32'],
    ['layer2.0.bn1.', 16, 'BF16'],
    ['layer2.0.bn2.', 16, 'F64'],
    ['layer2.0.downsample.1.', 16, 'BF16'],
  ];
  const rng = new Rng(2024);
  const tensors: Record<string, bn.TensorInput> = {};
  const stored: Record<string, Record<string, Float64Array>> = {}; // exact values per layer
  tensors['conv1.weight'] = { shape: [8, 3, 3, 3], data: randn(rng, 8 * 27, 'float32') };
  for (const [p, C, dtype] of BN_LAYERS) {
    if (p.startsWith('layer')) tensors[`${p.replace(/bn\d\.$|downsample\.1\.$/, 'conv1.')}weight`] = { shape: [C, C, 1, 1], data: randn(rng, C * C, 'float32') };
    stored[p] = {};
    const values: Record<string, Float64Array> = {
      weight: randn(rng, C, 'float64', 1, 0.5) as Float64Array,
      bias: randn(rng, C, 'float64', 0, 0.5) as Float64Array,
      running_mean: randn(rng, C, 'float64', 0, 2) as Float64Array,
      running_var: randu(rng, C, 'float64', 1e-3, 4) as Float64Array,
    };
    // Stored exactly as the dtype holds them: 16-bit through the independent reference, F64 with
    // a remainder below float32 precision (loading it into float32 rounds once).
    for (const [k, v] of Object.entries(values)) {
      if (dtype === 'BF16' || dtype === 'F16') {
        const f = dtype === 'BF16' ? BF16 : F16;
        const bits = Uint16Array.from(v, (x) => encodeHalf(f, x));
        tensors[p + k] = { dtype, shape: [C], data: bits };
        stored[p][k] = Float64Array.from(bits, (h) => decodeHalf(f, h));
      } else if (dtype === 'F64') {
        const exact = Float64Array.from(v, (x) => x + x * 2 ** -30);
        tensors[p + k] = { shape: [C], data: exact };
        stored[p][k] = exact;
      } else {
        tensors[p + k] = { shape: [C], data: Float32Array.from(v) };
        stored[p][k] = Float64Array.from(Float32Array.from(v));
      }
    }
    tensors[`${p}num_batches_tracked`] = { shape: [], data: BigInt64Array.of(BigInt(C * 10)) };
  }
  tensors['fc.weight'] = { dtype: 'BF16', shape: [10, 16], data: bn.toBFloat16(randn(rng, 160, 'float32') as Float32Array) };
  tensors['fc.bias'] = { shape: [10], data: new Float32Array(10) };
  const file = path.join(dir, 'resnet-like.safetensors');
  bn.writeSafetensorsFile(file, tensors, { format: 'pt' });

  const freshLayers = (dtype: 'float32' | 'float64'): Record<string, bn.BatchNorm2d> =>
    Object.fromEntries(BN_LAYERS.map(([p, C]) => [p, new bn.BatchNorm2d(C, { dtype })]));
  const snapshot = (layers: Record<string, bn.BatchNorm>): string => JSON.stringify(Object.values(layers).map((L) => [
    Array.from(L.weight!), Array.from(L.bias!), Array.from(L.runningMean!), Array.from(L.runningVar!), L.numBatchesTracked,
  ]));

  it('lists the BatchNorm prefixes in file order (not the convolutions or the classifier)', () => {
    const ck = bn.loadCheckpoint(file);
    expect(ck.prefixes()).to.deep.equal(BN_LAYERS.map(([p]) => p));
    expect(ck.keys()).to.deep.equal(Object.keys(tensors));
    expect(ck.metadata).to.deep.equal({ format: 'pt' });
    const t = ck.tensor('bn1.weight');
    expect(t.dtype).to.equal('BF16');
    expect(Array.from(t.data as Uint16Array)).to.deep.equal(Array.from(tensors['bn1.weight'].data as Uint16Array));
    expectCode(() => ck.tensor('nope'), 'ERR_BN_STATE_DICT', 'no tensor named "nope"');
  });

  for (const dtype of ['float32', 'float64'] as const) {
    it(`loadAll loads every layer into ${dtype} layers with one read of the file: 16-bit and float32 exact, float64 ${dtype === 'float32' ? 'rounded once' : 'exact'}`, () => {
      const reads: string[] = [];
      // The module object itself (the library's `import * as fs` reads its properties live).
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const realFs = require('fs') as { readFileSync: (...a: unknown[]) => unknown };
      const original = realFs.readFileSync;
      realFs.readFileSync = (...args: unknown[]) => {
        reads.push(String(args[0]));
        return original(...args);
      };
      let layers: Record<string, bn.BatchNorm2d>;
      try {
        layers = freshLayers(dtype);
        bn.loadCheckpoint(file).loadAll(layers);
      } finally {
        realFs.readFileSync = original;
      }
      expect(reads.filter((r) => r === file)).to.have.length(1);
      for (const [p, C] of BN_LAYERS) {
        const L = layers[p];
        const want = (k: string): number[] => Array.from(stored[p][k], (v) => (dtype === 'float32' ? Math.fround(v) : v));
        expect(Array.from(L.weight!), `${p}weight`).to.deep.equal(want('weight'));
        expect(Array.from(L.bias!), `${p}bias`).to.deep.equal(want('bias'));
        expect(Array.from(L.runningMean!), `${p}running_mean`).to.deep.equal(want('running_mean'));
        expect(Array.from(L.runningVar!), `${p}running_var`).to.deep.equal(want('running_var'));
        expect(L.numBatchesTracked).to.equal(C * 10);
      }
    });
  }

  it('loadInto loads one layer; the layer\'s own loadSafetensors reads BF16 too', () => {
    const ck = bn.loadCheckpoint(file);
    const a = new bn.BatchNorm2d(16);
    ck.loadInto(a, 'layer2.0.downsample.1.');
    const b = new bn.BatchNorm2d(16);
    b.loadSafetensors(file, { prefix: 'layer2.0.downsample.1.' });
    expect(Array.from(a.runningVar!)).to.deep.equal(Array.from(stored['layer2.0.downsample.1.'].running_var, Math.fround));
    expect(Array.from(b.runningVar!)).to.deep.equal(Array.from(a.runningVar!));
    const s = ck.stateDict('bn1.');
    expect(Object.keys(s)).to.deep.equal(['weight', 'bias', 'running_mean', 'running_var', 'num_batches_tracked']);
    expect(s.weight).to.be.instanceOf(Float32Array);
  });

  it('all or nothing: a wrong size, an unexpected key (strict), a busy layer or a non-layer changes no layer', async () => {
    const ck = bn.loadCheckpoint(file);
    const layers = freshLayers('float32');
    const before = snapshot(layers);
    // Wrong channel count for the last layer.
    expectCode(() => ck.loadAll({ ...layers, 'layer2.0.downsample.1.': new bn.BatchNorm2d(15) }), 'ERR_BN_STATE_DICT', 'Checkpoint.loadAll("layer2.0.downsample.1.")', 'must have 15 elements');
    expect(snapshot(layers)).to.equal(before);
    // A prefix with no such module.
    expectCode(() => ck.loadAll({ ...layers, 'layer9.': new bn.BatchNorm2d(4) }), 'ERR_BN_STATE_DICT', 'missing weight');
    expect(snapshot(layers)).to.equal(before);
    // An unexpected key in one module: refused when strict, ignored otherwise.
    const extra = path.join(dir, 'extra.safetensors');
    bn.writeSafetensorsFile(extra, { ...tensors, 'layer2.0.bn2.momentum_buffer': { shape: [16], data: new Float32Array(16) } });
    const ck2 = bn.loadCheckpoint(extra);
    expectCode(() => ck2.loadAll(layers), 'ERR_BN_STATE_DICT', 'unexpected momentum_buffer');
    expect(snapshot(layers)).to.equal(before);
    // A layer with an async call in flight (an evaluation forward: it changes no state itself).
    const busy = layers['layer1.0.bn2.'];
    busy.eval();
    const pending = busy.forwardAsync(new Float32Array(2 * 8 * 4), [2, 8, 2, 2]);
    expectCode(() => ck.loadAll(layers), 'ERR_BN_BUSY', 'Checkpoint.loadAll');
    await pending;
    expect(snapshot(layers)).to.equal(before);
    expectCode(() => ck.loadAll({ 'bn1.': {} as Loose }), 'ERR_BN_INVALID_ARG_TYPE', 'layers["bn1."] must be a BatchNorm layer');
    expectCode(() => ck.loadAll(null as Loose), 'ERR_BN_INVALID_ARG_TYPE', 'layers must be an object');
    expectCode(() => ck.loadAll(layers, { strict: true, other: 1 } as Loose), 'ERR_BN_UNKNOWN_OPTION');
    expectCode(() => ck.loadInto(layers['bn1.'], 3 as Loose), 'ERR_BN_INVALID_ARG_TYPE', 'prefix must be a string');
    expectCode(() => ck.loadAll({ ...layers, 'layer1.0.bn1': new bn.BatchNorm2d(8) }), 'ERR_BN_STATE_DICT', `prefix must be '' or end with '.'`, '"layer1.0.bn1"');
    expect(snapshot(layers)).to.equal(before);
    ck2.loadAll(layers, { strict: false });
    expect(snapshot(layers)).to.not.equal(before);
  });

  it('loadCheckpoint: coded errors for a bad path, a missing file and a malformed file', () => {
    expectCode(() => bn.loadCheckpoint(7 as Loose), 'ERR_BN_INVALID_ARG_TYPE', 'loadCheckpoint: path must be a non-empty string');
    expectCode(() => bn.loadCheckpoint(path.join(dir, 'missing.safetensors')), 'ERR_BN_IO', 'ENOENT');
    const bad = path.join(dir, 'bad.safetensors');
    fs.writeFileSync(bad, Buffer.from([1, 2, 3]));
    expectCode(() => bn.loadCheckpoint(bad), 'ERR_BN_SAFETENSORS', 'shorter than the 8-byte header');
  });
});
