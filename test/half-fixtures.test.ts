// The reduced-precision fixtures (test/fixtures/reduced, copies of ../shared/fixtures/reduced:
// bfloat16 from PyTorch 1.13's mixed-type CPU BatchNorm, float16 from the float64 result rounded
// once) through the 16-bit BatchNorm layers at every SIMD level: y and dx within one ulp of the
// storage format of the exact y_ref / dx_ref, the float32 outputs within float32 tolerances.
import { expect } from 'chai';
import * as fs from 'fs';
import * as path from 'path';
import {
  BatchNorm, BatchNorm1d, BatchNorm2d, BatchNorm3d, batchNormTraining, setSimdLevel, simdLevel, supportedSimdLevels,
} from '../lib';
import { readSt, repoRoot, sharedFixturesDir, StFile } from './helpers/fixtures';
import { decodeAll, expectClose, expectWithinUlp, FORMATS, HalfName } from './helpers/half-check';

const reducedDir = path.join(repoRoot, 'test', 'fixtures', 'reduced');
const NAMES = fs.readdirSync(reducedDir).filter((f) => f.endsWith('.safetensors')).map((f) => f.replace(/\.safetensors$/, '')).sort();

interface Case {
  name: string;
  dtype: HalfName;
  training: boolean;
  eps: number;
  momentum: number;
  shape: number[];
  t: StFile['tensors'];
}

function load(name: string): Case {
  const f = readSt(path.join(reducedDir, `${name}.safetensors`));
  const dtype = f.meta.dtype as HalfName;
  expect(['bfloat16', 'float16'], `${name}: dtype`).to.include(dtype);
  return {
    name, dtype, training: f.meta.training === 'true', eps: Number(f.meta.eps), momentum: Number(f.meta.momentum),
    shape: f.tensors.x.shape, t: f.tensors,
  };
}

function layerClass(rank: number): typeof BatchNorm {
  return rank <= 3 ? BatchNorm1d : rank === 4 ? BatchNorm2d : BatchNorm3d;
}

const f32 = (a: unknown) => Float32Array.from(a as Float32Array);
// float32 tolerances: our float32 rounding plus PyTorch's (bfloat16 files: PyTorch's own float32
// outputs; its sums are float32 too) on sums of a few hundred values.
const STAT_REL = 2e-6;
const GRAD_REL = 2e-5;

describe('16-bit storage: reduced fixtures through the layer', () => {
  const original = simdLevel();
  after(() => setSimdLevel(original));

  it('finds the five reduced fixtures, identical to ../shared/fixtures/reduced when present', () => {
    expect(NAMES).to.deep.equal(['eval_bf16', 'eval_f16', 'mean_offset_train_bf16', 'train_bf16', 'train_f16']);
    const shared = path.join(sharedFixturesDir, 'reduced');
    if (!fs.existsSync(shared)) return; // a clean clone: the copies are the fixtures
    for (const n of NAMES) {
      expect(fs.readFileSync(path.join(shared, `${n}.safetensors`)).equals(fs.readFileSync(path.join(reducedDir, `${n}.safetensors`))), n).to.equal(true);
    }
  });

  for (const level of supportedSimdLevels()) {
    describe(`level ${level}`, () => {
      before(() => setSimdLevel(level));
      for (const name of NAMES) {
        it(`${name}: forward, running statistics and backward`, () => {
          const k = load(name);
          const f = FORMATS[k.dtype];
          const t = k.t;
          const C = k.shape[1];
          const Layer = layerClass(k.shape.length);
          const bn = new Layer(C, { dtype: k.dtype, eps: k.eps, momentum: k.momentum });
          bn.loadStateDict({
            weight: f32(t.weight.data), bias: f32(t.bias.data), running_mean: f32(t.running_mean.data),
            running_var: f32(t.running_var.data), num_batches_tracked: t.num_batches_tracked.data,
          });
          bn.training = k.training;
          const x = t.x.data as Uint16Array;
          const y = bn.forward(x, k.shape);
          expect(y).to.be.instanceOf(Uint16Array);
          expectWithinUlp(`${name} y`, f, y, t.y_ref.data as Float64Array);
          // Against the file's own rounded y (PyTorch's for bfloat16): at most one step apart.
          expectWithinUlp(`${name} y vs file`, f, y, decodeAll(f, t.y.data as Uint16Array));
          expect(bn.runningMean).to.be.instanceOf(Float32Array);
          expectClose(`${name} running_mean`, bn.runningMean as Float32Array, t.running_mean_out.data as Float32Array, STAT_REL, 1e-6);
          expectClose(`${name} running_var`, bn.runningVar as Float32Array, t.running_var_out.data as Float32Array, STAT_REL, 1e-6);
          expect(BigInt(bn.numBatchesTracked)).to.equal((t.num_batches_tracked_out.data as BigInt64Array)[0]);
          const dx = bn.backward(t.dy.data as Uint16Array);
          expect(dx).to.be.instanceOf(Uint16Array);
          expectWithinUlp(`${name} dx`, f, dx, t.dx_ref.data as Float64Array);
          const dw = t.dweight.data as Float32Array;
          const scale = Math.max(...Array.from(dw, Math.abs), ...Array.from(t.dbias.data as Float32Array, Math.abs));
          expectClose(`${name} dweight`, bn.gradWeight as Float32Array, dw, GRAD_REL, 1e-6 * scale);
          expectClose(`${name} dbias`, bn.gradBias as Float32Array, t.dbias.data as Float32Array, GRAD_REL, 1e-6 * scale);
        });

        // Training files only: an evaluation forward saves no batch statistics.
        if (!load(name).training) continue;
        it(`${name}: functional save_mean / save_invstd`, () => {
          const k = load(name);
          const t = k.t;
          const r = batchNormTraining(t.x.data as Uint16Array, k.shape, {
            dtype: k.dtype, weight: f32(t.weight.data), bias: f32(t.bias.data), eps: k.eps,
          });
          expect(r.saveMean).to.be.instanceOf(Float32Array);
          expectClose(`${name} save_mean`, r.saveMean, t.save_mean.data as Float32Array, STAT_REL, 1e-6);
          expectClose(`${name} save_invstd`, r.saveInvstd, t.save_invstd.data as Float32Array, STAT_REL);
          expectWithinUlp(`${name} functional y`, FORMATS[k.dtype], r.y, t.y_ref.data as Float64Array);
        });
      }
    });
  }
});

describe('16-bit storage: layers and checkpoints', () => {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const os = require('os') as typeof import('os');
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const lib = require('../lib') as typeof import('../lib');
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'bn-half-'));
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));
  const KEYS = ['weight', 'bias', 'running_mean', 'running_var'] as const;

  it('a bfloat16 / float16 layer loads the F32 parameters of a reduced fixture (loadCheckpoint, prefix "")', () => {
    for (const name of NAMES) {
      const k = load(name);
      const bn = new (layerClass(k.shape.length))(k.shape[1], { dtype: k.dtype });
      lib.loadCheckpoint(path.join(reducedDir, `${name}.safetensors`)).loadInto(bn, '', { strict: false });
      expect(Array.from(bn.weight!)).to.deep.equal(Array.from(k.t.weight.data as Float32Array));
      expect(Array.from(bn.runningVar!)).to.deep.equal(Array.from(k.t.running_var.data as Float32Array));
    }
  });

  for (const dtype of ['bfloat16', 'float16'] as const) {
    it(`${dtype} layer: saves PyTorch's mixed-type layout (F32 + I64) by default, BF16 / F16 on request, and loads them back`, () => {
      const bn = new BatchNorm2d(3, { dtype });
      bn.weight!.set([1.5, 0.1, -2]);
      bn.bias!.set([0.25, 1 / 3, 7]);
      bn.runningMean!.set([0.1, 0.2, 0.3]);
      bn.runningVar!.set([1, 2, 1e-3]);
      bn.numBatchesTracked = 5;
      const f32file = path.join(tmp, `${dtype}-f32.safetensors`);
      bn.saveSafetensors(f32file);
      const a = lib.readSafetensorsFile(f32file);
      for (const key of KEYS) expect(a.tensors[key].dtype, key).to.equal('F32');
      expect(a.tensors.num_batches_tracked.dtype).to.equal('I64');
      expect(Array.from(a.tensors.bias.data as Float32Array)).to.deep.equal(Array.from(bn.bias!));

      const half = dtype === 'bfloat16' ? 'BF16' : 'F16';
      const hfile = path.join(tmp, `${dtype}-half.safetensors`);
      bn.saveSafetensors(hfile, { note: 'x' }, { dtype: half });
      const h = lib.readSafetensorsFile(hfile);
      const round = dtype === 'bfloat16' ? lib.toBFloat16 : lib.toFloat16;
      const widen = dtype === 'bfloat16' ? lib.fromBFloat16 : lib.fromFloat16;
      for (const key of KEYS) {
        const layerArray = { weight: bn.weight, bias: bn.bias, running_mean: bn.runningMean, running_var: bn.runningVar }[key] as Float32Array;
        expect(h.tensors[key].dtype, key).to.equal(half);
        expect(Array.from(h.tensors[key].data as Uint16Array), key).to.deep.equal(Array.from(round(layerArray)));
      }
      expect(h.metadata.note).to.equal('x');
      // Loading: the float32 file exactly, the 16-bit file widened exactly (its rounded values).
      const back = new BatchNorm2d(3, { dtype });
      back.loadSafetensors(hfile);
      expect(Array.from(back.bias!)).to.deep.equal(Array.from(widen(round(bn.bias! as Float32Array))));
      expect(back.numBatchesTracked).to.equal(5);
      const f32layer = new BatchNorm2d(3);
      f32layer.loadSafetensors(hfile);
      expect(Array.from(f32layer.runningVar!)).to.deep.equal(Array.from(widen(round(bn.runningVar! as Float32Array))));
      back.loadSafetensors(f32file);
      expect(Array.from(back.bias!)).to.deep.equal(Array.from(bn.bias!));
    });
  }

  it('saveSafetensors refuses an unknown file dtype, and BF16 from float64 parameters (double rounding)', () => {
    const bn = new BatchNorm2d(2, { dtype: 'float64' });
    const file = path.join(tmp, 'never.safetensors');
    expect(() => bn.saveSafetensors(file, {}, { dtype: 'BF16' })).to.throw(lib.BatchNormTypeError).with.property('code', 'ERR_BN_DTYPE_MISMATCH');
    expect(() => bn.saveSafetensors(file, {}, { dtype: 'I8' as 'F32' })).to.throw(lib.BatchNormTypeError).with.property('code', 'ERR_BN_INVALID_ARG_TYPE');
    expect(fs.existsSync(file)).to.equal(false);
  });
});
