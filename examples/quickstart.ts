// The README's quick start, as a program that runs (test/quickstart.test.ts runs it).
import * as os from 'os';
import * as path from 'path';
import { BatchNorm2d, simdLevel } from '../lib';

export function quickstart(): { simd: string; y0: number; dx0: number; folded: number; file: string } {
  const bn = new BatchNorm2d(64); // eps 1e-5, momentum 0.1, affine, running statistics
  const shape = [8, 64, 14, 14]; // [N, C, H, W], NCHW memory
  const x = Float32Array.from({ length: 8 * 64 * 14 * 14 }, (_, i) => Math.sin(i));

  const y = bn.forward(x, shape); // training mode: batch statistics, running stats updated
  const dy = new Float32Array(y.length).fill(1e-3);
  const dx = bn.backward(dy); // dL/dx; dL/dweight and dL/dbias added to bn.gradWeight, bn.gradBias
  bn.zeroGrad();

  bn.eval(); // inference: running statistics
  const yEval = bn.forward(x, shape);
  bn.forward(yEval, shape, yEval); // in place

  const convW = new Float32Array(64 * 32 * 3 * 3).fill(0.01);
  const { weight } = bn.foldIntoConv(convW, [64, 32, 3, 3], null); // BN folded into the conv before it
  const file = path.join(os.tmpdir(), `bn-quickstart-${process.pid}.safetensors`);
  bn.saveSafetensors(file); // PyTorch's key names: weight, bias, running_mean, running_var, ...
  return { simd: simdLevel(), y0: y[0], dx0: dx[0], folded: weight[0], file };
}

if (require.main === module) console.log(quickstart());
