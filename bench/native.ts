// The native benchmark of the core alone (bench/native/bench_core.cc, no N-API): built with CMake
// into build-bench/ and run as a child process; its rows join the table as impl "core".
import { execFileSync, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import type { Result } from './results';

const root = path.resolve(__dirname, '..', '..');
export const nativeBuildDir = path.join(root, 'build-bench');
export const nativeBinary = path.join(nativeBuildDir, 'bn_bench_core');

export function buildNative(log: (s: string) => void): void {
  log(`building ${path.relative(root, nativeBinary)} (cmake -DBN_BUILD_NATIVE_TESTS=ON) ...`);
  execFileSync('cmake', ['-S', root, '-B', nativeBuildDir, '-DBN_BUILD_NATIVE_TESTS=ON', '-DCMAKE_BUILD_TYPE=Release'], { stdio: ['ignore', 'ignore', 'inherit'] });
  execFileSync('cmake', ['--build', nativeBuildDir, '--target', 'bn_bench_core', '--parallel', '2'], { stdio: ['ignore', 'ignore', 'inherit'] });
}

export function nativeAvailable(): boolean {
  return fs.existsSync(nativeBinary);
}

interface NativeRow { shape: string; op: string; output: string; threads: number; bytes: number; median: number; min: number; reps: number }

export function runNative(shapes: string[], threads: number[], seconds: number, quick: boolean): { rows: Result[]; simd: string; copyIsa: string } {
  const args = ['--json', '--shapes', shapes.join(','), '--threads', threads.join(','), '--time', String(seconds)];
  if (quick) args.push('--quick');
  const p = spawnSync(nativeBinary, args, { encoding: 'utf8', maxBuffer: 64 << 20 });
  if (p.status !== 0) throw new Error(`${nativeBinary} exited with ${p.status}: ${p.stderr}`);
  const j = JSON.parse(p.stdout) as { simd: string; copyIsa: string; rows: NativeRow[] };
  const rows: Result[] = j.rows.map((r) => ({
    shape: r.shape, impl: 'core', op: r.op.startsWith('tiny') ? 'tiny-infer-core' : r.op, output: r.output as Result['output'],
    threads: r.threads, bytes: r.bytes, timing: { median: r.median, min: r.min, reps: r.reps },
  }));
  return { rows, simd: j.simd, copyIsa: j.copyIsa };
}
