// Shared by test/loader.test.ts (loader logic, part of npm test) and test/shipped/prebuilds.check.ts
// (the binaries `npm run prebuild` makes, run on their own after it). Builds throw-away package
// layouts in the temp folder and loads them in a child Node process, so what is loaded is chosen on
// purpose and a stale build/ can neither hide a broken prebuild nor the other way round.
import { expect } from 'chai';
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

/** The repository root (this file runs as dist/test/helpers/loader-probe.js). */
export const repo = path.resolve(__dirname, '..', '..', '..');
export const platformDir = `${process.platform}-${process.arch}`;
export const shippedDir = path.join(repo, 'prebuilds', platformDir);
export const shipped = path.join(shippedDir, 'node-batchnorm.node');
export const localBuild = path.join(repo, 'build', 'Release', 'batchnorm.node');
export const GARBAGE = 'this is not an ELF shared object\n';

export interface ProbeResult {
  ok: boolean;
  info?: { binding: { file: string; kind: string; skipped: string[] }; simdLevel: string };
  y?: number[];
  gomp?: string[];
  warnings: { code?: string; message: string }[];
  name?: string;
  code?: string;
  message?: string;
  isBatchNormError?: boolean;
}

// Loads the package at root in a fresh process, runs one tiny training forward, and reports.
const PROBE = `
const root = process.argv[1];
const warnings = [];
process.on('warning', (w) => warnings.push({ code: w.code, message: w.message }));
const bn = require(root + '/dist/lib');
let out;
try {
  const info = bn.runtimeInfo();
  const y = Array.from(bn.batchNormTraining(new Float64Array([1, 2, 3, 4]), [2, 2]).y);
  const gomp = require('fs').readFileSync('/proc/self/maps', 'utf8').split('\\n')
    .map((l) => l.split(/\\s+/).slice(5).join(' ')).filter((p) => /libgomp\\.so/.test(p))
    .filter((p, i, a) => a.indexOf(p) === i);
  out = { ok: true, info, y, gomp };
} catch (e) {
  out = { ok: false, name: e.name, code: e.code, message: e.message, isBatchNormError: e instanceof bn.BatchNormError };
}
setImmediate(() => { out.warnings = warnings; process.stdout.write(JSON.stringify(out)); });
`;

/** process.env without the variables that steer the loader (or inject code), plus extra. */
export function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const k of ['BATCHNORM_BINDING', 'BATCHNORM_PREFER', 'BATCHNORM_SIMD', 'BATCHNORM_BUILD_FROM_SOURCE', 'NODE_OPTIONS', 'NODE_PATH']) {
    delete env[k];
  }
  return { ...env, ...extra };
}

/** Runs the probe on the package at root; wrap is a command line put before node (unshare...). */
export function probe(root: string, extraEnv: Record<string, string> = {}, wrap: string[] = []): ProbeResult {
  const args = [...wrap, process.execPath, '-e', PROBE, root];
  const r = spawnSync(args[0], args.slice(1), { env: cleanEnv(extraEnv), encoding: 'utf8', timeout: 60000 });
  if (r.status !== 0) throw new Error(`probe of ${root} exited with ${r.status} ${r.signal ?? ''}: ${r.stderr}`);
  return JSON.parse(r.stdout) as ProbeResult;
}

// Expected output of the probe's forward: per channel, values {1, 3} and {2, 4}: mean +- 1, var 1.
export const PROBE_Y = [-1, -1, 1, 1].map((v) => v / Math.sqrt(1 + 1e-5));

export function expectClose(got: number[] | undefined, want: number[]): void {
  expect(got).to.have.length(want.length);
  got!.forEach((v, i) => expect(v).to.be.closeTo(want[i], 1e-12));
}

/**
 * What goes into a slot of a temporary package: 'real' = a copy of a working binary (the local
 * build, else the shipped prebuild), 'garbage' = a file that is not ELF, 'shipped' = a copy of the
 * whole prebuilds/<platform>-<arch>/ folder (binary + bundled libgomp), null = nothing.
 */
export type Slot = 'real' | 'garbage' | 'shipped' | null;

/** A working binary to copy into temporary packages: the local build, else the shipped prebuild. */
export function realBinary(): string {
  if (fs.existsSync(localBuild)) return localBuild;
  if (fs.existsSync(shipped)) return shipped;
  throw new Error(`neither ${localBuild} nor ${shipped} exists: build the addon (npm install, or npm run prebuild) first`);
}

const tmpRoots: string[] = [];

/** A fresh temporary folder, removed by removeTempPackages(). */
export function tempRoot(prefix = 'bn-loader-'): string {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  tmpRoots.push(root);
  return root;
}

/** A temporary package: dist/lib, package.json, and the prebuild / build slots as asked. */
export function makePackage(prebuild: Slot, build: Slot): string {
  const root = tempRoot();
  fs.cpSync(path.join(repo, 'dist', 'lib'), path.join(root, 'dist', 'lib'), { recursive: true });
  fs.copyFileSync(path.join(repo, 'package.json'), path.join(root, 'package.json'));
  const put = (slot: Slot, dir: string, name: string): void => {
    if (slot === null) return;
    fs.mkdirSync(dir, { recursive: true });
    if (slot === 'shipped') fs.cpSync(shippedDir, dir, { recursive: true });
    else if (slot === 'garbage') fs.writeFileSync(path.join(dir, name), GARBAGE);
    else fs.copyFileSync(realBinary(), path.join(dir, name));
  };
  put(prebuild, path.join(root, 'prebuilds', platformDir), 'node-batchnorm.node');
  put(build, path.join(root, 'build', 'Release'), 'batchnorm.node');
  return root;
}

export function removeTempPackages(): void {
  for (const r of tmpRoots.splice(0)) fs.rmSync(r, { recursive: true, force: true });
}

/** `scripts/prebuild.sh --source-hash`: the hash of the native sources recorded in build-info.json. */
export function prebuildSourceHash(root = repo): string {
  const r = spawnSync('bash', [path.join(root, 'scripts', 'prebuild.sh'), '--source-hash'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`scripts/prebuild.sh --source-hash exited with ${r.status}: ${r.stderr}`);
  return r.stdout.trim();
}

/** Minimal ELF64 little-endian reader: machine, and the NEEDED / RUNPATH entries of .dynamic. */
export function readElf(file: string): { machine: number; needed: string[]; runpath: string | null } {
  const b = fs.readFileSync(file);
  if (b.length < 64 || b.readUInt32BE(0) !== 0x7f454c46 || b[4] !== 2 || b[5] !== 1) {
    throw new Error(`${file}: not an ELF64 little-endian file`);
  }
  const machine = b.readUInt16LE(18);
  const shoff = Number(b.readBigUInt64LE(40));
  const shentsize = b.readUInt16LE(58);
  const shnum = b.readUInt16LE(60);
  const sections = Array.from({ length: shnum }, (_, i) => {
    const o = shoff + i * shentsize;
    return { type: b.readUInt32LE(o + 4), offset: Number(b.readBigUInt64LE(o + 24)), size: Number(b.readBigUInt64LE(o + 32)), link: b.readUInt32LE(o + 40) };
  });
  const dyn = sections.find((s) => s.type === 6); // SHT_DYNAMIC
  if (!dyn) throw new Error(`${file}: no .dynamic section`);
  const strtab = sections[dyn.link];
  const str = (off: number): string => {
    const start = strtab.offset + off;
    return b.toString('latin1', start, b.indexOf(0, start));
  };
  const needed: string[] = [];
  let runpath: string | null = null;
  for (let o = dyn.offset; o < dyn.offset + dyn.size; o += 16) {
    const tag = Number(b.readBigInt64LE(o));
    const val = Number(b.readBigUInt64LE(o + 8));
    if (tag === 0) break;
    if (tag === 1) needed.push(str(val)); // DT_NEEDED
    if (tag === 29) runpath = str(val); // DT_RUNPATH
  }
  return { machine, needed, runpath };
}

export const EM_X86_64 = 62;
export const EM_AARCH64 = 183;
