// The README's ResNet-block example (examples/resnet-block.ts) against the unfused chain: a plain
// BatchNorm2d, then add and ReLU and their backward written out here.
import { expect } from 'chai';
import { BatchNorm2d } from '../lib';
import { resnetBlockEnd } from '../examples/resnet-block';

describe('README ResNet-block example (examples/resnet-block.ts)', () => {
  it('matches BN, then add + ReLU, forward and backward', () => {
    const r = resnetBlockEnd();
    const C = r.shape[1];
    const bn = new BatchNorm2d(C);
    const z = bn.forward(r.c2, r.shape);
    const out = z.map((v, i) => Math.max(v + r.identity[i], 0));
    const gate = r.dOut.map((g, i) => (out[i] > 0 ? g : 0)); // ReLU's gradient, 0 at the kink
    const dC2 = bn.backward(gate);
    let active = 0;
    for (let i = 0; i < out.length; i++) {
      expect(Math.abs(r.out[i] - out[i])).to.be.at.most(1e-5 * (1 + Math.abs(out[i])), `out[${i}]`);
      expect(r.dIdentity[i]).to.equal(gate[i], `dIdentity[${i}]`);
      expect(Math.abs(r.dC2[i] - dC2[i])).to.be.at.most(1e-5 * (1e-2 + Math.abs(dC2[i])), `dC2[${i}]`);
      if (out[i] > 0) active++;
    }
    expect(active).to.be.within(out.length * 0.2, out.length * 0.8); // both sides of the kink are exercised
    for (let c = 0; c < C; c++) {
      expect(Math.abs(r.gradWeight[c] - bn.gradWeight![c])).to.be.at.most(1e-4);
      expect(Math.abs(r.gradBias[c] - bn.gradBias![c])).to.be.at.most(1e-4);
    }
  });
});
