// npm run bench:convert [-- --quick]: the float32 <-> bfloat16/float16 helpers (toBFloat16 & co.,
// into a given output) at every SIMD level, as a ratio to bench_copy.node copying the same bytes
// (6 bytes per element: 4 read, 2 written, or the reverse), measured interleaved in the same run.
// Results: bench/CONVERT.md.
import * as bn from '../lib';
import { copyKernel } from './ours';
import { timeSync, TimingOptions } from './timing';

const quick = process.argv.includes('--quick');
const sizes = quick ? [1 << 20] : [1 << 20, 1 << 24];
const threadCounts = quick ? [1] : [1, 2];
const rounds = quick ? 2 : 5;
const t: TimingOptions = { seconds: quick ? 0.02 : 0.15, minReps: 3 };

function median(v: number[]): number {
  const s = v.slice().sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

const copy = copyKernel();
const original = bn.simdLevel();
console.log(`copy baseline: ${copy.name}; levels: ${bn.supportedSimdLevels().join(', ')}`);
console.log('n            threads level    op             ms/call   GB/s    x copy');
for (const n of sizes) {
  const f32 = new Float32Array(n).map((_, i) => Math.sin(i) * 1000);
  const u16 = bn.toBFloat16(f32);
  const outF32 = new Float32Array(n);
  const outU16 = new Uint16Array(n);
  // The same bytes as a float32 copy: 6n bytes moved = 0.75 n floats read and written.
  const k = Math.floor((3 * n) / 4);
  const copySrc = new Float32Array(k).fill(1);
  const copyDst = new Float32Array(k);
  for (const threads of threadCounts) {
    bn.setNumThreads(threads);
    for (const level of bn.supportedSimdLevels()) {
      bn.setSimdLevel(level);
      const ops: Array<[string, () => void]> = [
        ['toBFloat16', () => bn.toBFloat16(f32, outU16)],
        ['fromBFloat16', () => bn.fromBFloat16(u16, outF32)],
        ['toFloat16', () => bn.toFloat16(f32, outU16)],
        ['fromFloat16', () => bn.fromFloat16(u16, outF32)],
      ];
      for (const [name, run] of ops) {
        const a: number[] = [];
        const b: number[] = [];
        for (let r = 0; r < rounds; r++) {
          a.push(timeSync(run, t).median);
          b.push(timeSync(() => copy.run(copySrc, copyDst, false, threads), t).median);
        }
        const ms = median(a) * 1e3;
        const ratio = median(a.map((x, i) => x / b[i]));
        console.log(`${String(n).padEnd(12)} ${String(threads).padEnd(7)} ${level.padEnd(8)} ${name.padEnd(14)} ${ms.toFixed(3).padStart(8)}  ${((6 * n) / (ms * 1e6)).toFixed(1).padStart(5)}  ${ratio.toFixed(2).padStart(6)}`);
      }
    }
  }
}
bn.setSimdLevel(original);
