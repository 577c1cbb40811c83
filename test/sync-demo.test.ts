// The MNIST demo's data-parallel run (examples/mnist/data-parallel.ts, `npm run demo -- --workers N`):
// N worker threads with SyncBatchNorm1d and all-reduced gradients take the same SGD steps as one
// process on the whole mini-batch.
import { expect } from 'chai';
import { loadMnistPackage } from '../examples/mnist/data';
import { parametersOf, runDataParallel } from '../examples/mnist/data-parallel';
import { BatchStream, DEFAULTS, evaluate, makeInitialWeights } from '../examples/mnist/experiment';
import { Mlp } from '../examples/mnist/network';
import { Rng } from '../examples/mnist/rng';
import { assertClose } from './helpers/reference';

describe('sync: the MNIST demo trained data-parallel with SyncBatchNorm1d', function () {
  this.timeout(60000);

  for (const { workers, batchSize } of [{ workers: 2, batchSize: 60 }, { workers: 3, batchSize: 50 }]) {
    it(`${workers} workers, batches of ${batchSize}: the parameters after 15 steps are those of the single-process run`, async () => {
      const o = { steps: 15, lr: 0.5, seed: 3, batchSize, hidden: DEFAULTS.hidden, initStd: DEFAULTS.initStd };
      const dp = await runDataParallel({ ...o, workers, data: 'mnist', dataDir: '', evalSteps: [15], threads: 1 });
      expect(dp.identicalOnEveryRank).to.equal(true);
      const data = loadMnistPackage();
      const net = new Mlp(makeInitialWeights(o.seed, o.hidden, o.initStd), true);
      const stream = new BatchStream(data, batchSize, new Rng((o.seed ^ 0x5bd1e995) >>> 0));
      for (let s = 0; s < o.steps; s++) {
        stream.next();
        net.trainStep(stream.x, stream.y, 0, batchSize, o.lr);
      }
      const want = parametersOf(net);
      expect(dp.params.length).to.equal(want.length);
      // float32 sums in another order (per-worker partial sums), 15 steps of SGD at lr 0.5
      want.forEach((w, i) => assertClose(`parameter array ${i}`, dp.params[i], w, 2e-4));
      // Evaluation (running statistics, no communication) gives the single process's accuracy.
      expect(dp.checkpoints.map((c) => c.step)).to.deep.equal([15]);
      const single = evaluate(net, data.testX, data.testY, data.nTest).accuracy;
      expect(Math.abs(dp.checkpoints[0].accuracy - single)).to.be.at.most(0.002);
    });
  }
});
