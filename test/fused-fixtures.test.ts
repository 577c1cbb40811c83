// The fused-activation fixtures (test/fixtures/fused, copied from ../shared/fixtures/fused; format
// in ../shared/fixtures/SECOND_SET.md, PyTorch 1.13.1): y = relu(BN(x) [+ z]) and its gradients
// (dx, dweight, dbias, dz) through the layer with activation 'relu', at every SIMD level, in the
// file's layout and channels-last, and through the functional API.
import { expect } from 'chai';
import * as fs from 'fs';
import * as path from 'path';
import {
  BatchNorm, BatchNorm1d, BatchNorm2d, BatchNorm3d, batchNormBackward, batchNormInference, batchNormTraining, setSimdLevel,
  simdLevel, supportedSimdLevels,
} from '../lib';
import { Fixture, fusedFixturesDir, loadFixture, sharedFixturesDir } from './helpers/fixtures';
import { fromChannelsLast, toChannelsLast } from './helpers/layout';
import { relErr } from './helpers/reference';

const NAMES = fs.readdirSync(fusedFixturesDir).filter((f) => f.endsWith('.safetensors')).map((f) => f.slice(0, -12)).sort();

function layerClass(rank: number): typeof BatchNorm {
  return rank <= 3 ? BatchNorm1d : rank === 4 ? BatchNorm2d : BatchNorm3d;
}

// float32 files: PyTorch's float32 chain against ours, both within a few ulps of the exact answer
// (SECOND_SET.md: every file was checked against a float64 chain). float64: rounding only.
function tolerance(fx: Fixture): number {
  return fx.dtype === 'float64' ? 1e-12 : 4e-6;
}

interface Outs {
  y: ArrayLike<number>;
  dx: ArrayLike<number>;
  dz?: ArrayLike<number>;
  dweight: ArrayLike<number>;
  dbias: ArrayLike<number>;
  running_mean_out?: ArrayLike<number>;
  running_var_out?: ArrayLike<number>;
}

const residualOf = (fx: Fixture): boolean => fx.file.meta.residual === 'true';

function runLayer(fx: Fixture, channelsLast: boolean): Outs {
  const layer = new (layerClass(fx.shape.length))(fx.shape[1], { eps: fx.eps, momentum: fx.momentum, dtype: fx.dtype, activation: 'relu' });
  expect(layer.activation).to.equal('relu');
  layer.weight!.set(fx.f('weight'));
  layer.bias!.set(fx.f('bias'));
  layer.runningMean!.set(fx.f('running_mean'));
  layer.runningVar!.set(fx.f('running_var'));
  layer.train(fx.training);
  const [N, C] = fx.shape, S = fx.shape.slice(2).reduce((p, v) => p * v, 1);
  const io = (t: string) => (channelsLast ? toChannelsLast(fx.f(t), N, C, S) : fx.f(t).slice());
  const back = (a: Float32Array | Float64Array) => (channelsLast ? fromChannelsLast(a, N, C, S) : a);
  const residual = residualOf(fx) ? io('z') : undefined;
  const y = layer.forward(io('x'), fx.shape, { channelsLast, residual });
  const dz = residual ? new (y.constructor as typeof Float32Array)(y.length).fill(NaN) : undefined;
  const dx = layer.backward(io('dy'), { residualGrad: dz });
  return {
    y: back(y), dx: back(dx), dz: dz && back(dz), dweight: layer.gradWeight!, dbias: layer.gradBias!,
    running_mean_out: layer.runningMean!, running_var_out: layer.runningVar!,
  };
}

function runFunctional(fx: Fixture): Outs {
  const weight = fx.f('weight'), bias = fx.f('bias');
  const runningMean = fx.f('running_mean').slice(), runningVar = fx.f('running_var').slice();
  const residual = residualOf(fx) ? fx.f('z') : null;
  const x = fx.f('x');
  const dz = residual ? new (x.constructor as typeof Float32Array)(x.length) : null;
  if (fx.training) {
    const r = batchNormTraining(x, fx.shape, { weight, bias, runningMean, runningVar, eps: fx.eps, momentum: fx.momentum ?? 1, activation: 'relu', residual });
    const g = batchNormBackward(x, fx.f('dy'), fx.shape, {
      weight, training: true, mean: r.batchMean, invstd: r.batchInvstd, activation: 'relu', y: r.y, residualGrad: dz,
    });
    return { y: r.y, dx: g.dx, dz: dz ?? undefined, dweight: g.gradWeight, dbias: g.gradBias, running_mean_out: runningMean, running_var_out: runningVar };
  }
  const y = batchNormInference(x, fx.shape, { weight, bias, runningMean, runningVar, eps: fx.eps, activation: 'relu', residual });
  const g = batchNormBackward(x, fx.f('dy'), fx.shape, {
    weight, training: false, runningMean, runningVar, eps: fx.eps, activation: 'relu', y, residualGrad: dz,
  });
  return { y, dx: g.dx, dz: dz ?? undefined, dweight: g.gradWeight, dbias: g.gradBias };
}

function check(fx: Fixture, out: Outs, label: string): void {
  const tol = tolerance(fx);
  const fails: string[] = [];
  const keys = ['y', 'dx', 'dweight', 'dbias', 'running_mean_out', 'running_var_out', ...(residualOf(fx) ? ['dz'] : [])] as const;
  for (const key of keys) {
    const got = out[key as keyof Outs];
    if (got === undefined) {
      if (key === 'dz' || key === 'y' || key === 'dx') fails.push(`${key} missing`);
      continue;
    }
    const e = relErr(got, fx.f(key));
    if (!(e <= tol)) fails.push(`${key}: ${e.toExponential(3)} > ${tol.toExponential(2)}`);
  }
  // The ReLU's zeros are exact: y is 0 wherever the file's is, and dz (the masked dy) too.
  const fy = fx.f('y');
  for (let i = 0; i < fy.length; i++) {
    if (fy[i] === 0 && out.y[i] !== 0) {
      fails.push(`y[${i}] = ${out.y[i]} where PyTorch's is 0`);
      break;
    }
  }
  if (fails.length) throw new Error(`${fx.name} (${label}): ${fails.join('; ')}`);
}

describe('fused fixtures (relu(BN(x) + z)): the repo copy', () => {
  it('holds the 5 files, each with its activation metadata, and equals ../shared/fixtures/fused when present', () => {
    expect(NAMES).to.deep.equal(['add_relu_eval_f32', 'add_relu_train_f32', 'add_relu_train_f64', 'relu_eval_f64', 'relu_train_f32']);
    for (const name of NAMES) {
      const fx = loadFixture(name, fusedFixturesDir);
      expect(fx.file.meta.activation, name).to.equal('relu');
      expect(Object.keys(fx.file.tensors).includes('z'), name).to.equal(residualOf(fx));
      expect(Object.keys(fx.file.tensors).includes('dz'), name).to.equal(residualOf(fx));
    }
    const shared = path.join(sharedFixturesDir, 'fused');
    if (!fs.existsSync(shared)) {
      console.log(`      (comparison with the shared fixtures not possible: ${shared} does not exist)`);
      return;
    }
    expect(fs.readdirSync(shared).filter((f) => f.endsWith('.safetensors')).sort()).to.deep.equal(NAMES.map((n) => `${n}.safetensors`));
    for (const n of NAMES) {
      const a = fs.readFileSync(path.join(fusedFixturesDir, `${n}.safetensors`));
      expect(a.equals(fs.readFileSync(path.join(shared, `${n}.safetensors`))), n).to.equal(true);
    }
  });
});

describe('fused fixtures through the layer (activation: relu)', () => {
  const original = simdLevel();
  const levels = supportedSimdLevels();
  let ran = 0;
  after(() => setSimdLevel(original));
  for (const level of levels) {
    describe(`SIMD level ${level}`, () => {
      before(() => setSimdLevel(level));
      for (const name of NAMES) {
        for (const channelsLast of [false, true]) {
          it(`${name}${channelsLast ? ' (channels-last)' : ''}`, () => {
            expect(simdLevel()).to.equal(level);
            const fx = loadFixture(name, fusedFixturesDir);
            check(fx, runLayer(fx, channelsLast), `layer, ${level}`);
            ran++;
          });
        }
      }
    });
  }
  describe('summary', () => {
    it('ran every file at every level, both layouts', () => {
      expect(ran).to.equal(NAMES.length * levels.length * 2);
    });
  });
});

describe('fused fixtures through the functional API', () => {
  for (const name of NAMES) {
    it(name, () => {
      const fx = loadFixture(name, fusedFixturesDir);
      check(fx, runFunctional(fx), 'functional');
    });
  }
});
