// PyTorch-compatible state dicts: exact keys, strict / non-strict loading with the layer left
// unchanged on error, and safetensors round trips (checked with the tests' own reader/writer).
import { expect } from 'chai';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { BatchNorm, BatchNorm1d, BatchNorm2d, BatchNormRangeError, BatchNormTypeError } from '../lib';
import { loadFixture, readSt, writeSt } from './helpers/fixtures';
import { randn, randu, Rng } from './helpers/random';

function fill(layer: BatchNorm, seed: number): void {
  const rng = new Rng(seed);
  const C = layer.numFeatures;
  layer.weight?.set(randn(rng, C, layer.dtype, 1, 0.5));
  layer.bias?.set(randn(rng, C, layer.dtype, 0, 0.5));
  layer.runningMean?.set(randn(rng, C, layer.dtype, 0, 0.3));
  layer.runningVar?.set(randu(rng, C, layer.dtype, 0.5, 2));
  if (layer.trackRunningStats) layer.numBatchesTracked = 17;
}

function state(layer: BatchNorm): unknown {
  return {
    weight: layer.weight && Array.from(layer.weight),
    bias: layer.bias && Array.from(layer.bias),
    rm: layer.runningMean && Array.from(layer.runningMean),
    rv: layer.runningVar && Array.from(layer.runningVar),
    n: layer.numBatchesTracked,
  };
}

/** Bit-identical comparison of two float arrays (same type, same bytes). */
function expectBitIdentical(what: string, got: ArrayBufferView, want: ArrayBufferView): void {
  expect(got.constructor.name, what).to.equal(want.constructor.name);
  const a = Buffer.from(got.buffer, got.byteOffset, got.byteLength);
  const b = Buffer.from(want.buffer, want.byteOffset, want.byteLength);
  expect(a.equals(b), `${what} is not bit-identical`).to.equal(true);
}

function expectStateDictError(f: () => unknown, ...mentions: RegExp[]): void {
  let err: unknown;
  try {
    f();
  } catch (e) {
    err = e;
  }
  expect(err, 'expected ERR_BN_STATE_DICT').to.be.instanceOf(Error);
  expect(err instanceof BatchNormRangeError || err instanceof BatchNormTypeError, 'a BatchNormRangeError or BatchNormTypeError').to.equal(true);
  expect((err as { code?: string }).code).to.equal('ERR_BN_STATE_DICT');
  for (const m of mentions) expect((err as Error).message).to.match(m);
}

describe('stateDict', () => {
  it("has exactly PyTorch's keys: weight, bias, running_mean, running_var, num_batches_tracked (copies)", () => {
    const bn = new BatchNorm2d(4);
    fill(bn, 1);
    const sd = bn.stateDict();
    expect(Object.keys(sd)).to.deep.equal(['weight', 'bias', 'running_mean', 'running_var', 'num_batches_tracked']);
    expect(sd.num_batches_tracked).to.be.instanceOf(BigInt64Array);
    expect(sd.num_batches_tracked!.length).to.equal(1);
    expect(sd.num_batches_tracked![0]).to.equal(17n);
    expectBitIdentical('weight', sd.weight!, bn.weight!);
    expectBitIdentical('running_var', sd.running_var!, bn.runningVar!);
    // Copies, not views of the layer.
    sd.weight![0] = 123;
    expect(bn.weight![0]).to.not.equal(123);
  });

  it('omits weight/bias without affine and the running statistics without tracking', () => {
    expect(Object.keys(new BatchNorm(2, { affine: false }).stateDict())).to.deep.equal(['running_mean', 'running_var', 'num_batches_tracked']);
    expect(Object.keys(new BatchNorm(2, { trackRunningStats: false }).stateDict())).to.deep.equal(['weight', 'bias']);
    expect(Object.keys(new BatchNorm(2, { affine: false, trackRunningStats: false }).stateDict())).to.deep.equal([]);
  });
});

describe('loadStateDict', () => {
  for (const dtype of ['float32', 'float64'] as const) {
    it(`loads another layer's state dict bit-identically (${dtype})`, () => {
      const a = new BatchNorm1d(5, { dtype });
      fill(a, 2);
      const b = new BatchNorm1d(5, { dtype });
      b.loadStateDict(a.stateDict() as Record<string, unknown>);
      expect(state(b)).to.deep.equal(state(a));
      expectBitIdentical('weight', b.weight!, a.weight!);
      expectBitIdentical('running_mean', b.runningMean!, a.runningMean!);
    });
  }

  it('missing entries -> ERR_BN_STATE_DICT naming them, layer unchanged', () => {
    const src = new BatchNorm(3);
    fill(src, 3);
    const bn = new BatchNorm(3);
    fill(bn, 4);
    const before = state(bn);
    for (const key of ['weight', 'bias', 'running_mean', 'running_var', 'num_batches_tracked']) {
      const sd = src.stateDict() as Record<string, unknown>;
      delete sd[key];
      expectStateDictError(() => bn.loadStateDict(sd), /missing/, new RegExp(key));
      expectStateDictError(() => bn.loadStateDict(sd, { strict: false }), /missing/, new RegExp(key));
      expect(state(bn)).to.deep.equal(before);
    }
  });

  it('unexpected entries -> ERR_BN_STATE_DICT when strict (default), ignored with strict: false', () => {
    const src = new BatchNorm(3);
    fill(src, 5);
    const bn = new BatchNorm(3);
    const before = state(bn);
    const sd = { ...src.stateDict(), extra_thing: new Float32Array(3) } as Record<string, unknown>;
    expectStateDictError(() => bn.loadStateDict(sd), /unexpected/, /extra_thing/);
    expect(state(bn)).to.deep.equal(before);
    // A layer without affine given weight/bias: unexpected too.
    const noAffine = new BatchNorm(3, { affine: false });
    const na0 = state(noAffine);
    expectStateDictError(() => noAffine.loadStateDict(src.stateDict() as Record<string, unknown>), /unexpected/, /weight/, /bias/);
    expect(state(noAffine)).to.deep.equal(na0);
    bn.loadStateDict(sd, { strict: false });
    expect(state(bn)).to.deep.equal(state(src));
  });

  it('entries of the wrong length or type -> ERR_BN_STATE_DICT, layer unchanged (nothing half-written)', () => {
    const src = new BatchNorm(3);
    fill(src, 6);
    const bn = new BatchNorm(3);
    fill(bn, 7);
    const before = state(bn);
    const bad: Array<[string, unknown, RegExp]> = [
      ['running_var', new Float32Array(4), /running_var must have 3 elements/],
      ['bias', new Float32Array(2), /bias must have 3 elements/],
      ['weight', [1, 2, 3], /weight must be a Float32Array or Float64Array/],
      ['num_batches_tracked', -1, /num_batches_tracked/],
      ['num_batches_tracked', new BigInt64Array(2), /num_batches_tracked/],
      ['num_batches_tracked', 'seven', /num_batches_tracked/],
    ];
    for (const [key, value, msg] of bad) {
      // The bad entry comes last in the expected order for running_var / num_batches_tracked, so
      // earlier valid entries would be written first by a careless implementation.
      const sd = { ...(src.stateDict() as Record<string, unknown>), [key]: value };
      expectStateDictError(() => bn.loadStateDict(sd), msg);
      expect(state(bn), `after a bad ${key}`).to.deep.equal(before);
    }
  });

  it('converts float64 entries into a float32 layer and accepts num_batches_tracked as bigint / number', () => {
    const bn = new BatchNorm(2);
    bn.loadStateDict({
      weight: Float64Array.of(0.5, 2), bias: Float64Array.of(1, -1), running_mean: Float64Array.of(0.25, 3),
      running_var: Float64Array.of(4, 9), num_batches_tracked: 5n,
    });
    expect(Array.from(bn.weight!)).to.deep.equal([0.5, 2]);
    expect(Array.from(bn.runningVar!)).to.deep.equal([4, 9]);
    expect(bn.numBatchesTracked).to.equal(5);
    bn.loadStateDict({ ...bn.stateDict(), num_batches_tracked: 9 } as Record<string, unknown>);
    expect(bn.numBatchesTracked).to.equal(9);
  });
});

describe('safetensors checkpoints', () => {
  let tmp: string;
  before(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'bn-state-dict-'));
  });
  after(() => {
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  for (const dtype of ['float32', 'float64'] as const) {
    it(`saveSafetensors writes PyTorch names, dtypes and shapes; loadSafetensors reads them back bit-identically (${dtype})`, () => {
      const a = new BatchNorm2d(6, { dtype });
      fill(a, 8);
      const file = path.join(tmp, `rt-${dtype}.safetensors`);
      a.saveSafetensors(file, { note: 'round trip' });
      // Our own reader: names, dtypes and shapes as PyTorch's state_dict would have them.
      const st = readSt(file);
      expect(Object.keys(st.tensors).sort()).to.deep.equal(['bias', 'num_batches_tracked', 'running_mean', 'running_var', 'weight']);
      const D = dtype === 'float64' ? 'F64' : 'F32';
      for (const k of ['weight', 'bias', 'running_mean', 'running_var']) {
        expect(st.tensors[k].dtype, k).to.equal(D);
        expect(st.tensors[k].shape, k).to.deep.equal([6]);
      }
      expect(st.tensors.num_batches_tracked.dtype).to.equal('I64');
      expect(st.tensors.num_batches_tracked.shape).to.deep.equal([]);
      expect((st.tensors.num_batches_tracked.data as BigInt64Array)[0]).to.equal(17n);
      expect(st.meta.note).to.equal('round trip');
      expectBitIdentical('saved weight', st.tensors.weight.data, a.weight!);
      expectBitIdentical('saved running_var', st.tensors.running_var.data, a.runningVar!);

      const b = new BatchNorm2d(6, { dtype });
      b.loadSafetensors(file);
      expect(state(b)).to.deep.equal(state(a));
      for (const [k, av, bv] of [['weight', a.weight!, b.weight!], ['bias', a.bias!, b.bias!], ['running_mean', a.runningMean!, b.runningMean!], ['running_var', a.runningVar!, b.runningVar!]] as const) {
        expectBitIdentical(`loaded ${k}`, bv, av);
      }
    });
  }

  it('loadSafetensors with a prefix picks one module out of a whole-model file', () => {
    const a = new BatchNorm2d(3);
    fill(a, 9);
    const other = new BatchNorm2d(3);
    fill(other, 10);
    const sa = a.stateDict();
    const so = other.stateDict();
    const tensors: Record<string, { shape: number[]; data: Float32Array | Float64Array | BigInt64Array }> = {
      'conv1.weight': { shape: [3, 1, 2, 2], data: new Float32Array(12).fill(0.5) },
    };
    for (const [k, v] of Object.entries(sa)) tensors[`layer1.bn.${k}`] = { shape: k === 'num_batches_tracked' ? [] : [3], data: v };
    for (const [k, v] of Object.entries(so)) tensors[`layer2.bn.${k}`] = { shape: k === 'num_batches_tracked' ? [] : [3], data: v };
    const file = path.join(tmp, 'model.safetensors');
    writeSt(file, tensors, { format: 'pt' });
    const b = new BatchNorm2d(3);
    b.loadSafetensors(file, { prefix: 'layer1.bn.' });
    expect(state(b)).to.deep.equal(state(a));
    b.loadSafetensors(file, { prefix: 'layer2.bn.' });
    expect(state(b)).to.deep.equal(state(other));
    // Without the prefix nothing matches: missing keys (and, strict, unexpected ones).
    const before = state(b);
    expectStateDictError(() => b.loadSafetensors(file), /missing/);
    expect(state(b)).to.deep.equal(before);
  });

  for (const name of ['2d_basic_train_f32', '2d_basic_train_f64', 'momentum_none_3steps_train_f32']) {
    it(`loading a PyTorch fixture's parameters and buffers (${name}) gives bit-identical values`, () => {
      const fx = loadFixture(name);
      const C = fx.shape[1];
      const T = fx.dtype === 'float64' ? 'F64' : 'F32';
      expect(fx.file.tensors.weight.dtype).to.equal(T);
      // Two checkpoints: the state before the steps and after (running stats and counter updated).
      for (const [suffix, nbt] of [['', 'num_batches_tracked'], ['_out', 'num_batches_tracked_out']] as const) {
        const file = path.join(tmp, `${name}${suffix}.safetensors`);
        writeSt(file, {
          weight: { shape: [C], data: fx.f('weight') },
          bias: { shape: [C], data: fx.f('bias') },
          running_mean: { shape: [C], data: fx.f(`running_mean${suffix}`) },
          running_var: { shape: [C], data: fx.f(`running_var${suffix}`) },
          num_batches_tracked: { shape: [], data: fx.file.tensors[nbt].data },
        });
        const bn = new BatchNorm(C, { dtype: fx.dtype });
        bn.loadSafetensors(file);
        expectBitIdentical('weight', bn.weight!, fx.f('weight'));
        expectBitIdentical('bias', bn.bias!, fx.f('bias'));
        expectBitIdentical('running_mean', bn.runningMean!, fx.f(`running_mean${suffix}`));
        expectBitIdentical('running_var', bn.runningVar!, fx.f(`running_var${suffix}`));
        expect(bn.numBatchesTracked).to.equal(fx.i(nbt));
      }
    });
  }
});
