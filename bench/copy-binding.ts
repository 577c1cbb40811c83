// The benchmark-only addon bench_copy.node (bench/native/bench_copy_addon.cc): the copy kernels
// every "x copy" ratio is measured against, and the read kernels of the read baselines.
// CMakeLists.txt builds it next to batchnorm.node in build/Release; before loading it, the benchmark brings it up to date with cmake-js (an incremental
// build of that one target: a no-op after `npm install` built it from source, and a build when the
// install used a prebuilt batchnorm.node and build/ has no bench_copy.node yet).
import { spawnSync } from 'child_process';
import * as path from 'path';

const root = path.resolve(__dirname, '..', '..');
export const benchCopyFile = path.join(root, 'build', 'Release', 'bench_copy.node');

export interface BenchCopyBinding {
  /** Copies src into dst[0, src.length) with `threads` OpenMP threads; streaming = non-temporal stores + sfence. Returns the kernel used, e.g. 'avx512-stream'. */
  benchCopy(src: Float32Array, dst: Float32Array, streaming: boolean, threads: number): string;
  /** Reads a (and b[0, a.length) unless null) with `threads` OpenMP threads, one loop over both; returns the sum of what it read. */
  benchRead(a: Float32Array, b: Float32Array | null, threads: number): number;
  /** ISA of the copy kernels and whether streaming stores exist on this architecture. */
  benchCopyInfo(): { isa: 'avx512' | 'avx2' | 'sse2' | 'generic'; streaming: boolean };
}

/** `cmake-js build --target bench_copy` into build/ (what `npm install` configured); throws with its output on failure. */
export function buildBenchCopy(): void {
  let cmakeJs: string;
  try {
    cmakeJs = require.resolve('cmake-js/bin/cmake-js', { paths: [root] });
  } catch {
    throw new Error('bench: building bench/native/bench_copy_addon.cc needs cmake-js (an optional dependency): run `npm install`');
  }
  const r = spawnSync(process.execPath, [cmakeJs, 'build', '--target', 'bench_copy', '--CDCMAKE_BUILD_TYPE=Release', '--log-level', 'error'],
    { cwd: root, encoding: 'utf8' });
  if (r.status !== 0) {
    throw new Error(`bench: building ${path.relative(root, benchCopyFile)} failed (cmake-js build --target bench_copy, exit ${r.status}):\n${r.stdout}${r.stderr}`);
  }
}

let loaded: BenchCopyBinding | undefined;

/** bench_copy.node, built or brought up to date first. */
export function benchCopyBinding(): BenchCopyBinding {
  if (!loaded) {
    buildBenchCopy();
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    loaded = require(benchCopyFile) as BenchCopyBinding;
  }
  return loaded;
}
