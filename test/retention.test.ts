// What a layer keeps alive between calls: the tensors of its last forward (backward needs them),
// nothing older. An inference loop (evaluation mode) or a training loop that runs forward without
// backward (recalibrating statistics) must not keep every output it ever returned.
import { expect } from 'chai';
import * as bn from '../lib';
import { collect } from './helpers/gc';

const SHAPE = [4, 3, 5, 5];
const N = 4 * 3 * 5 * 5;

/** Runs `calls` forwards, each on a new x into a new y, and counts how many of those arrays are
 * still alive once collected, the layer itself kept alive. */
async function aliveAfter(layer: bn.BatchNorm, calls: number, forward: (x: Float32Array) => Promise<Float32Array>): Promise<{ xs: number; ys: number }> {
  const xs: WeakRef<Float32Array>[] = [], ys: WeakRef<Float32Array>[] = [];
  for (let i = 0; i < calls; i++) {
    const x = new Float32Array(N).map((_, j) => Math.sin(i + j));
    xs.push(new WeakRef(x));
    ys.push(new WeakRef(await forward(x)));
  }
  await collect();
  expect(layer.numFeatures).to.equal(3); // the layer is alive
  return { xs: xs.filter((r) => r.deref()).length, ys: ys.filter((r) => r.deref()).length };
}

describe('retention: a layer keeps only its last forward', function () {
  this.timeout(30000);
  const calls = 12;

  it('evaluation mode: 12 forwards keep at most the last x and y', async () => {
    const layer = new bn.BatchNorm2d(3);
    layer.forward(new Float32Array(N).map((_, j) => j % 7), SHAPE); // running statistics
    layer.eval();
    const alive = await aliveAfter(layer, calls, async (x) => layer.forward(x, SHAPE));
    expect(alive.xs, 'x arrays alive').to.be.at.most(1);
    expect(alive.ys, 'y arrays alive').to.be.at.most(1);
  });

  it('training mode without backward: 12 forwards keep at most the last x and y', async () => {
    const layer = new bn.BatchNorm2d(3);
    const alive = await aliveAfter(layer, calls, async (x) => layer.forward(x, SHAPE));
    expect(alive.xs, 'x arrays alive').to.be.at.most(1);
    expect(alive.ys, 'y arrays alive').to.be.at.most(1);
  });

  it('async forwards, one at a time: the same', async () => {
    const layer = new bn.BatchNorm2d(3);
    const alive = await aliveAfter(layer, calls, (x) => layer.forwardAsync(x, SHAPE));
    expect(alive.xs, 'x arrays alive').to.be.at.most(1);
    expect(alive.ys, 'y arrays alive').to.be.at.most(1);
  });

  it('fused ReLU (the mask comes from y): the same', async () => {
    const layer = new bn.BatchNorm2d(3, { activation: 'relu' });
    const alive = await aliveAfter(layer, calls, async (x) => layer.forward(x, SHAPE));
    expect(alive.ys, 'y arrays alive').to.be.at.most(1);
  });

  it('the last forward stays differentiable, and releaseSaved() lets it go', async () => {
    const layer = new bn.BatchNorm2d(3);
    let x: Float32Array | null = new Float32Array(N).map((_, j) => Math.cos(j));
    const ref = new WeakRef(x);
    layer.forward(x, SHAPE);
    x = null;
    await collect();
    expect(ref.deref(), 'x of the last forward, kept for backward').to.not.equal(undefined);
    const dx = layer.backward(new Float32Array(N).map((_, j) => (j % 5) - 2));
    expect(dx.every(Number.isFinite)).to.equal(true);
    layer.releaseSaved();
    await collect();
    expect(ref.deref(), 'x after releaseSaved()').to.equal(undefined);
  });
});
