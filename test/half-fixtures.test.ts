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
