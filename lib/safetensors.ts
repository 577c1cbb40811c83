// safetensors: 8-byte little-endian header length H, H bytes of JSON (name -> {dtype, shape,
// data_offsets}, plus "__metadata__"), then the raw little-endian data. The format PyTorch's
// ecosystem uses for checkpoints; every offset and size is checked before anything is read.
import * as fs from 'fs';
import { BatchNormError, BatchNormTypeError, describe } from './errors';

export type TensorDType = 'F32' | 'F64' | 'I64';
export type TensorData = Float32Array | Float64Array | BigInt64Array;

export interface Tensor {
  dtype: TensorDType;
  shape: number[];
  data: TensorData;
}

export interface SafetensorsFile {
  tensors: Record<string, Tensor>;
  metadata: Record<string, string>;
}

const ITEM: Record<TensorDType, number> = { F32: 4, F64: 8, I64: 8 };
const MAX_HEADER = 100 * 1024 * 1024;

function fail(msg: string): never {
  throw new BatchNormError('ERR_BN_SAFETENSORS', `safetensors: ${msg}`);
}

/** Parses a safetensors buffer. Tensor data is copied out (aligned, independent of `buf`). */
export function parseSafetensors(buf: Uint8Array): SafetensorsFile {
  if (!(buf instanceof Uint8Array)) fail(`expected a Uint8Array or Buffer, received ${describe(buf)}`);
  if (buf.length < 8) fail(`file is ${buf.length} bytes, shorter than the 8-byte header length`);
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const h = dv.getBigUint64(0, true);
  if (h > BigInt(buf.length - 8)) fail(`header length ${h} runs past the end of the file (${buf.length} bytes)`);
  if (h > BigInt(MAX_HEADER)) fail(`header length ${h} exceeds ${MAX_HEADER} bytes`);
  const hl = Number(h);
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(buf.subarray(8, 8 + hl)));
  } catch (e) {
    fail(`header is not valid UTF-8 JSON (${(e as Error).message})`);
  }
  if (header === null || typeof header !== 'object' || Array.isArray(header)) fail('header must be a JSON object');
  const dataStart = 8 + hl;
  const dataLen = buf.length - dataStart;
  const out: SafetensorsFile = { tensors: {}, metadata: {} };
  const ranges: Array<[number, number, string]> = [];
  for (const [name, raw] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) fail('__metadata__ must be an object of strings');
      for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
        if (typeof v !== 'string') fail(`__metadata__.${k} must be a string`);
        out.metadata[k] = v;
      }
      continue;
    }
    const t = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (t === null || typeof t !== 'object') fail(`entry '${name}' must be an object`);
    if (t.dtype !== 'F32' && t.dtype !== 'F64' && t.dtype !== 'I64') {
      fail(`tensor '${name}' has dtype ${JSON.stringify(t.dtype)}; supported: F32, F64, I64`);
    }
    const dtype = t.dtype as TensorDType;
    if (!Array.isArray(t.shape) || !t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      fail(`tensor '${name}' has an invalid shape ${JSON.stringify(t.shape)}`);
    }
    const shape = t.shape as number[];
    const offs = t.data_offsets;
    if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      fail(`tensor '${name}' has invalid data_offsets ${JSON.stringify(offs)}`);
    }
    const [b, e] = offs as [number, number];
    if (b > e || e > dataLen) fail(`tensor '${name}' data_offsets [${b}, ${e}] lie outside the ${dataLen}-byte data section`);
    const count = shape.reduce((p, d) => p * d, 1);
    if (!Number.isSafeInteger(count) || count * ITEM[dtype] !== e - b) {
      fail(`tensor '${name}' of shape [${shape.join(', ')}] and dtype ${dtype} needs ${count * ITEM[dtype]} bytes, its offsets span ${e - b}`);
    }
    // A fresh copy at offset 0 of its own buffer (aligned for the typed view). Not buf.slice():
    // on a Buffer that is a view into the shared pool, and its .buffer starts elsewhere.
    const bytes = new Uint8Array(e - b);
    bytes.set(buf.subarray(dataStart + b, dataStart + e));
    const data = dtype === 'F32' ? new Float32Array(bytes.buffer, 0, count)
      : dtype === 'F64' ? new Float64Array(bytes.buffer, 0, count)
        : new BigInt64Array(bytes.buffer, 0, count);
    out.tensors[name] = { dtype, shape, data };
    ranges.push([b, e, name]);
  }
  ranges.sort((p, q) => p[0] - q[0]);
  for (let i = 1; i < ranges.length; i++) {
    if (ranges[i][0] < ranges[i - 1][1]) fail(`tensors '${ranges[i - 1][2]}' and '${ranges[i][2]}' overlap`);
  }
  return out;
}

export function dtypeOfData(d: TensorData): TensorDType {
  return d instanceof Float32Array ? 'F32' : d instanceof Float64Array ? 'F64' : 'I64';
}

/** Serializes tensors (in the given order) and string metadata. */
export function serializeSafetensors(tensors: Record<string, { shape: number[]; data: TensorData }>, metadata: Record<string, string> = {}): Uint8Array {
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length) header.__metadata__ = metadata;
  let offset = 0;
  for (const [name, t] of Object.entries(tensors)) {
    const dtype = dtypeOfData(t.data);
    const bytes = t.data.length * ITEM[dtype];
    header[name] = { dtype, shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  const pad = (8 - ((8 + Buffer.byteLength(json)) % 8)) % 8;
  json += ' '.repeat(pad);
  const hb = Buffer.from(json, 'utf8');
  const out = new Uint8Array(8 + hb.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(hb.length), true);
  out.set(hb, 8);
  let at = 8 + hb.length;
  for (const t of Object.values(tensors)) {
    const src = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    out.set(src, at); // little-endian hosts only (x64, arm64)
    at += src.length;
  }
  return out;
}

export function readSafetensorsFile(path: string): SafetensorsFile {
  if (typeof path !== 'string' || path.length === 0) {
    // fs.readFileSync would read from a file descriptor given a number.
    throw new BatchNormTypeError('ERR_BN_INVALID_ARG_TYPE', `readSafetensorsFile: path must be a non-empty string, received ${describe(path)}`);
  }
  let bytes: Buffer;
  try {
    bytes = fs.readFileSync(path);
  } catch (e) {
    throw ioError('readSafetensorsFile', 'read', path, e);
  }
  return parseSafetensors(bytes);
}

function ioError(fn: string, verb: string, path: string, cause: unknown): BatchNormError {
  const err = new BatchNormError('ERR_BN_IO', `${fn}: could not ${verb} ${JSON.stringify(path)}: ${(cause as Error).message}`);
  Object.defineProperty(err, 'cause', { value: cause });
  return err;
}

/** Writes a new file beside `path` and renames it over `path`: a failed write (a full disk, a
 * missing folder) leaves any existing file as it was, and no partial file behind. */
export function writeSafetensorsFile(path: string, tensors: Record<string, { shape: number[]; data: TensorData }>, metadata?: Record<string, string>): void {
  const fn = 'writeSafetensorsFile';
  if (typeof path !== 'string' || path.length === 0) {
    throw new BatchNormTypeError('ERR_BN_INVALID_ARG_TYPE', `${fn}: path must be a non-empty string, received ${describe(path)}`);
  }
  const bytes = serializeSafetensors(tensors, metadata);
  const temp = `${path}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
  try {
    const fd = fs.openSync(temp, 'wx');
    try {
      fs.writeFileSync(fd, bytes);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(temp, path);
  } catch (e) {
    try {
      fs.unlinkSync(temp);
    } catch {
      // never created, or already renamed
    }
    throw ioError(fn, 'write', path, e);
  }
}
