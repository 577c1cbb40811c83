// One layer in a loop, fresh and reused outputs alternated with an event-loop turn before every
// call, as a training loop gives V8 the chance to collect: what a fresh output costs beside a
// caller's buffer (bench/PERFORMANCE.md, "V8's collector is not helped").
//
//   node dist/bench/fresh-loop.js [NxCxHxW] [infer|fwd|train] [pairs]
//   e.g. node dist/bench/fresh-loop.js 32x64x112x112 infer 40
// train: forward in training mode and backward; fwd: the forward alone. Prints the medians (ms).
import { BatchNorm2d, setNumThreads } from '../lib';

async function main(): Promise<void> {
  const [dims = '32x64x112x112', mode = 'infer', pairsArg = '40'] = process.argv.slice(2);
  const shape = dims.split('x').map(Number);
  const pairs = Number(pairsArg);
  if (shape.length !== 4 || shape.some((d) => !Number.isInteger(d) || d < 1) || !['infer', 'fwd', 'train'].includes(mode) ||
      !Number.isInteger(pairs) || pairs < 1) {
    throw new Error('usage: fresh-loop.js [NxCxHxW] [infer|fwd|train] [pairs]');
  }
  setNumThreads(Number(process.env.OMP_NUM_THREADS ?? 2));
  const n = shape.reduce((a, b) => a * b, 1);
  const bn = new BatchNorm2d(shape[1]);
  if (mode === 'infer') bn.eval();
  const x = new Float32Array(n).map((_, i) => Math.sin(i));
  const dy = new Float32Array(n).map((_, i) => Math.cos(i));
  const out = new Float32Array(n), dout = new Float32Array(n);
  const turn = () => new Promise<void>((resolve) => setImmediate(resolve));
  const times: Record<'reused' | 'fresh', number[]> = { reused: [], fresh: [] };
  const warmUp = 5;
  for (let i = 0; i < pairs + warmUp; ++i) {
    for (const m of i % 2 ? (['reused', 'fresh'] as const) : (['fresh', 'reused'] as const)) {
      await turn();
      const t0 = process.hrtime.bigint();
      if (m === 'reused') {
        bn.forward(x, shape, out);
        if (mode === 'train') bn.backward(dy, dout);
      } else {
        bn.forward(x, shape);
        if (mode === 'train') bn.backward(dy);
      }
      if (i >= warmUp) times[m].push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
  }
  const median = (a: number[]) => [...a].sort((p, q) => p - q)[a.length >> 1];
  const r = median(times.reused), f = median(times.fresh);
  console.log(`${dims} ${mode}: reused ${r.toFixed(2)} ms, fresh ${f.toFixed(2)} ms, fresh / reused ${(f / r).toFixed(2)}`);
}

main().catch((e) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
