// An independent, minimal safetensors reader for the PyTorch golden fixtures (deliberately not
// lib/safetensors.ts: the tests must not trust the code they test), and a tiny writer for tests
// that need to produce PyTorch-style checkpoint files.
import * as fs from 'fs';
import * as path from 'path';

/** Repository root, from dist/test/helpers/ (compiled) — three levels up. */
export const repoRoot = path.resolve(__dirname, '..', '..', '..');
export const fixturesDir = path.join(repoRoot, 'test', 'fixtures', 'pytorch');
/** The shared master copy the repo copy was taken from (absent on a clean clone / CI). */
export const sharedFixturesDir = path.resolve(repoRoot, '..', 'shared', 'fixtures');

export type StData = Float32Array | Float64Array | BigInt64Array | Uint16Array;

export interface StTensor {
  dtype: 'F32' | 'F64' | 'I64' | 'BF16' | 'F16';
  shape: number[];
  data: StData;
}

export interface StFile {
  meta: Record<string, string>;
  tensors: Record<string, StTensor>;
}

const ITEM = { F32: 4, F64: 8, I64: 8, BF16: 2, F16: 2 } as const;

/** Parses safetensors bytes: u64 LE header length, JSON header, raw little-endian data. */
export function parseSt(buf: Buffer): StFile {
  const h = Number(buf.readBigUInt64LE(0));
  if (8 + h > buf.length) throw new Error(`safetensors: header length ${h} exceeds the file`);
  const header = JSON.parse(buf.toString('utf8', 8, 8 + h)) as Record<string, unknown>;
  const meta = (header.__metadata__ ?? {}) as Record<string, string>;
  delete header.__metadata__;
  const tensors: Record<string, StTensor> = {};
  const dataLen = buf.length - 8 - h;
  for (const [name, raw] of Object.entries(header)) {
    const { dtype, shape, data_offsets: [b, e] } = raw as { dtype: StTensor['dtype']; shape: number[]; data_offsets: [number, number] };
    const count = shape.reduce((p, d) => p * d, 1);
    if (!(dtype in ITEM)) throw new Error(`safetensors: tensor ${name} has unsupported dtype ${dtype}`);
    if (e - b !== count * ITEM[dtype] || e > dataLen) throw new Error(`safetensors: tensor ${name} has bad offsets [${b}, ${e}]`);
    // Copy the bytes: a Buffer may sit at an unaligned offset of its pool.
    const bytes = new Uint8Array(e - b);
    buf.copy(bytes, 0, 8 + h + b, 8 + h + e);
    const data = dtype === 'F32' ? new Float32Array(bytes.buffer) : dtype === 'F64' ? new Float64Array(bytes.buffer)
      : dtype === 'I64' ? new BigInt64Array(bytes.buffer) : new Uint16Array(bytes.buffer); // BF16 / F16: raw bits
    tensors[name] = { dtype, shape, data };
  }
  return { meta, tensors };
}

export function readSt(file: string): StFile {
  return parseSt(fs.readFileSync(file));
}

/** Writes tensors (in the given order) as safetensors, with optional string metadata. */
export function writeSt(file: string, tensors: Record<string, { shape: number[]; data: StData }>, meta?: Record<string, string>): void {
  const header: Record<string, unknown> = {};
  if (meta) header.__metadata__ = meta;
  let off = 0;
  for (const [name, t] of Object.entries(tensors)) {
    const dtype = t.data instanceof Float32Array ? 'F32' : t.data instanceof Float64Array ? 'F64' : 'I64';
    header[name] = { dtype, shape: t.shape, data_offsets: [off, off + t.data.byteLength] };
    off += t.data.byteLength;
  }
  let json = JSON.stringify(header);
  while ((8 + Buffer.byteLength(json)) % 8 !== 0) json += ' ';
  const hb = Buffer.from(json, 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(hb.length));
  const parts: Buffer[] = [len, hb];
  for (const t of Object.values(tensors)) parts.push(Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength));
  fs.writeFileSync(file, Buffer.concat(parts));
}

/** A fixture with its metadata parsed. */
export interface Fixture {
  name: string;
  file: StFile;
  training: boolean;
  eps: number;
  momentum: number | null;
  affine: boolean;
  layout: 'NCHW' | 'NHWC';
  dtype: 'float32' | 'float64';
  steps: number;
  /** Logical shape of one batch, (N, C, spatial...). */
  shape: number[];
  /** Floating tensor by name (throws if missing or not floating). */
  f(name: string): Float32Array | Float64Array;
  /** Scalar int64 tensor by name, as a number. */
  i(name: string): number;
}

/** Names (without .safetensors) of every fixture file in the repo copy, sorted. */
export function fixtureNames(): string[] {
  return fs.readdirSync(fixturesDir).filter((f) => f.endsWith('.safetensors')).map((f) => f.slice(0, -'.safetensors'.length)).sort();
}

export function loadFixture(name: string): Fixture {
  const file = readSt(path.join(fixturesDir, `${name}.safetensors`));
  const m = file.meta;
  const need = (k: string): string => {
    if (typeof m[k] !== 'string') throw new Error(`fixture ${name}: metadata ${k} missing`);
    return m[k];
  };
  const momentum = need('momentum');
  return {
    name,
    file,
    training: need('training') === 'true',
    eps: parseFloat(need('eps')),
    momentum: momentum === 'none' ? null : parseFloat(momentum),
    affine: need('affine') === 'true',
    layout: need('layout') as 'NCHW' | 'NHWC',
    dtype: need('dtype') as 'float32' | 'float64',
    steps: parseInt(need('steps'), 10),
    shape: JSON.parse(need('shape_nchw')) as number[],
    f(t: string) {
      const v = file.tensors[t];
      if (!v || v.dtype === 'I64') throw new Error(`fixture ${name}: no floating tensor ${t}`);
      return v.data as Float32Array | Float64Array;
    },
    i(t: string) {
      const v = file.tensors[t];
      if (!v || v.dtype !== 'I64' || v.data.length !== 1) throw new Error(`fixture ${name}: no int64 scalar ${t}`);
      return Number((v.data as BigInt64Array)[0]);
    },
  };
}

/** The file names of the README's case table (first column), in order. */
export function readmeCaseNames(): string[] {
  const text = fs.readFileSync(path.join(fixturesDir, 'README.md'), 'utf8');
  const at = text.indexOf('## Cases');
  if (at < 0) throw new Error('README.md has no "## Cases" section');
  const names: string[] = [];
  for (const line of text.slice(at).split('\n')) {
    const m = /^\|\s*`([^`]+)`\s*\|/.exec(line);
    if (m) names.push(m[1]);
  }
  return names;
}
