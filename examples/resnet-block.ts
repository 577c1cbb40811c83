// The README's ResNet-block example as a program (test/resnet-block.test.ts runs it): the end of a
// basic block, out = relu(bn2(conv2(h)) + identity), forward and backward with the fused layer.
import { BatchNorm2d } from '../lib';

export function resnetBlockEnd(N = 4, C = 16, H = 7, W = 7) {
  const shape = [N, C, H, W];
  const len = N * C * H * W;
  const c2 = Float32Array.from({ length: len }, (_, i) => Math.sin(0.37 * i) * 2 + 0.1); // conv2(h)
  const identity = Float32Array.from({ length: len }, (_, i) => Math.cos(0.11 * i)); // the block's input
  const dOut = Float32Array.from({ length: len }, (_, i) => Math.sin(0.05 * i) * 1e-2); // from the next block

  const bn2 = new BatchNorm2d(C, { activation: 'relu' });
  const out = bn2.forward(c2, shape, { residual: identity });
  const dIdentity = new Float32Array(len);
  const dC2 = bn2.backward(dOut, { residualGrad: dIdentity }); // dC2 to conv2, dIdentity to the shortcut
  return { shape, c2, identity, dOut, out, dC2, dIdentity, gradWeight: bn2.gradWeight!, gradBias: bn2.gradBias! };
}

if (require.main === module) {
  const r = resnetBlockEnd();
  console.log({ out0: r.out[0], dC2_0: r.dC2[0], dIdentity0: r.dIdentity[0] });
}
