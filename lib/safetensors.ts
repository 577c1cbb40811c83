// safetensors: 8-byte little-endian header length H, H bytes of JSON (name -> {dtype, shape,
// data_offsets}, plus "__metadata__"), then the raw little-endian data. The format PyTorch's
// ecosystem uses for checkpoints; every offset and size is checked before anything is read.
// dtypes: F32, F64, I64, and BF16 / F16 (their raw 16-bit values in a Uint16Array).
import * as fs from 'fs';
import { bufferOf, lengthOf, typedArrayKind } from './arrays';
import { BatchNormError, BatchNormRangeError, BatchNormTypeError, describe } from './errors';

export type TensorDType = 'F32' | 'F64' | 'I64' | 'BF16' | 'F16';
/** BF16 and F16 tensors hold their raw 16-bit values (fromBFloat16 / fromFloat16 widen them). */
export type TensorData = Float32Array | Float64Array | BigInt64Array | Uint16Array;

export interface Tensor {
  dtype: TensorDType;
  shape: number[];
  data: TensorData;
}

/** A tensor to write: `dtype` is required for a Uint16Array ('BF16' or 'F16'), else implied by the array. */
export interface TensorInput {
  shape: number[];
  data: TensorData;
  dtype?: TensorDType;
}

export interface SafetensorsFile {
  tensors: Record<string, Tensor>;
  metadata: Record<string, string>;
}

/** Where one tensor lies in a checked file: bytes [begin, end) of the whole buffer. */
export interface TensorEntry {
  name: string;
  dtype: TensorDType;
  shape: number[];
  begin: number;
  end: number;
}

export interface SafetensorsHeader {
  /** In the header's order. */
  entries: TensorEntry[];
  metadata: Record<string, string>;
}

const ITEM: Record<TensorDType, number> = { F32: 4, F64: 8, I64: 8, BF16: 2, F16: 2 };
const DTYPES = Object.keys(ITEM) as TensorDType[];
const MAX_HEADER = 100 * 1024 * 1024;

function fail(msg: string): never {
  throw new BatchNormError('ERR_BN_SAFETENSORS', `safetensors: ${msg}`);
}

function isDType(v: unknown): v is TensorDType {
  return typeof v === 'string' && (DTYPES as string[]).includes(v);
}

/** Checks a safetensors buffer's header, every offset and size, without copying any tensor. */
export function parseSafetensorsHeader(buf: Uint8Array): SafetensorsHeader {
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
  const out: SafetensorsHeader = { entries: [], metadata: {} };
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
    if (!isDType(t.dtype)) fail(`tensor '${name}' has dtype ${JSON.stringify(t.dtype)}; supported: ${DTYPES.join(', ')}`);
    const dtype = t.dtype;
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
    out.entries.push({ name, dtype, shape, begin: dataStart + b, end: dataStart + e });
    ranges.push([b, e, name]);
  }
  ranges.sort((p, q) => p[0] - q[0]);
  for (let i = 1; i < ranges.length; i++) {
    if (ranges[i][0] < ranges[i - 1][1]) fail(`tensors '${ranges[i - 1][2]}' and '${ranges[i][2]}' overlap`);
  }
  return out;
}

/** A copy of one checked entry's tensor, at offset 0 of its own buffer (aligned for the typed view).
 * Not buf.slice(): on a Buffer that is a view into the shared pool, and its .buffer starts elsewhere. */
export function tensorAt(buf: Uint8Array, entry: TensorEntry): Tensor {
  const bytes = new Uint8Array(entry.end - entry.begin);
  bytes.set(buf.subarray(entry.begin, entry.end));
  const count = bytes.length / ITEM[entry.dtype];
  let data: TensorData;
  switch (entry.dtype) {
    case 'F32': data = new Float32Array(bytes.buffer, 0, count); break;
    case 'F64': data = new Float64Array(bytes.buffer, 0, count); break;
    case 'I64': data = new BigInt64Array(bytes.buffer, 0, count); break;
    case 'BF16':
    case 'F16': data = new Uint16Array(bytes.buffer, 0, count); break;
  }
  return { dtype: entry.dtype, shape: entry.shape.slice(), data };
}

/** Parses a safetensors buffer. Tensor data is copied out (aligned, independent of `buf`); BF16
 * and F16 tensors come as their raw 16-bit values in a Uint16Array, their dtype says which. */
export function parseSafetensors(buf: Uint8Array): SafetensorsFile {
  const header = parseSafetensorsHeader(buf);
  const out: SafetensorsFile = { tensors: {}, metadata: header.metadata };
  for (const entry of header.entries) out.tensors[entry.name] = tensorAt(buf, entry);
  return out;
}

const NATURAL: Record<string, TensorDType | null> = { Float32Array: 'F32', Float64Array: 'F64', BigInt64Array: 'I64', Uint16Array: null };

/** The dtype a tensor is written as: the array's own, or the stated 16-bit one for a Uint16Array. */
function dtypeToWrite(fn: string, name: string, t: TensorInput): TensorDType {
  const kind = typedArrayKind(t.data);
  const natural = kind === undefined ? undefined : NATURAL[kind];
  if (natural === undefined) {
    throw new BatchNormTypeError('ERR_BN_INVALID_ARG_TYPE', `${fn}: tensor '${name}' data must be a Float32Array, Float64Array, BigInt64Array or Uint16Array (BF16/F16 bits), received ${describe(t.data)}`);
  }
  const stated = t.dtype;
  if (stated === undefined) {
    if (natural === null) {
      throw new BatchNormTypeError('ERR_BN_INVALID_ARG_TYPE', `${fn}: tensor '${name}' holds a Uint16Array: state its dtype, 'BF16' or 'F16'`);
    }
    return natural;
  }
  if (!isDType(stated)) {
    throw new BatchNormTypeError('ERR_BN_INVALID_ARG_TYPE', `${fn}: tensor '${name}' dtype must be one of ${DTYPES.join(', ')}, received ${describe(stated)}`);
  }
  if (natural === null ? stated !== 'BF16' && stated !== 'F16' : stated !== natural) {
    throw new BatchNormTypeError(
      'ERR_BN_DTYPE_MISMATCH',
      `${fn}: tensor '${name}' has dtype ${stated} but its data is ${describe(t.data)}` +
        (stated === 'BF16' || stated === 'F16' ? ` (convert it with ${stated === 'BF16' ? 'toBFloat16' : 'toFloat16'} first)` : ''),
    );
  }
  return stated;
}

function checkShape(fn: string, name: string, shape: unknown, length: number): number[] {
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new BatchNormTypeError('ERR_BN_BAD_SHAPE', `${fn}: tensor '${name}' shape must be an array of non-negative integers, received ${describe(shape)}`);
  }
  const count = shape.reduce((p: number, d: number) => p * d, 1);
  if (count !== length) {
    throw new BatchNormRangeError('ERR_BN_BAD_LENGTH', `${fn}: tensor '${name}' of shape [${shape.join(', ')}] needs ${count} elements, its data has ${length}`);
  }
  return shape.slice();
}

/** Serializes tensors (in the given order) and string metadata. */
export function serializeSafetensors(tensors: Record<string, TensorInput>, metadata: Record<string, string> = {}): Uint8Array {
  const fn = 'serializeSafetensors';
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length) header.__metadata__ = metadata;
  const parts: Uint8Array[] = [];
  let offset = 0;
  for (const [name, t] of Object.entries(tensors)) {
    if (t === null || typeof t !== 'object') {
      throw new BatchNormTypeError('ERR_BN_INVALID_ARG_TYPE', `${fn}: tensor '${name}' must be an object { shape, data, dtype? }, received ${describe(t)}`);
    }
    const dtype = dtypeToWrite(fn, name, t);
    const data = t.data;
    const shape = checkShape(fn, name, t.shape, lengthOf(data));
    const bytes = lengthOf(data) * ITEM[dtype];
    header[name] = { dtype, shape, data_offsets: [offset, offset + bytes] };
    parts.push(new Uint8Array(bufferOf(data), data.byteOffset, bytes)); // little-endian hosts only (x64, arm64)
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
  for (const src of parts) {
    out.set(src, at);
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

/** ERR_BN_IO naming the function and the file, the system's error as `cause`. */
export function ioError(fn: string, verb: string, path: string, cause: unknown): BatchNormError {
  const err = new BatchNormError('ERR_BN_IO', `${fn}: could not ${verb} ${JSON.stringify(path)}: ${(cause as Error).message}`);
  Object.defineProperty(err, 'cause', { value: cause });
  return err;
}

/** Writes a new file beside `path` and renames it over `path`: a failed write (a full disk, a
 * missing folder) leaves any existing file as it was, and no partial file behind. */
export function writeSafetensorsFile(path: string, tensors: Record<string, TensorInput>, metadata?: Record<string, string>): void {
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
