// Argument checks shared by the layer and the functional API. Each throws a BatchNorm*Error whose
// message names the function, the argument, what was expected and what was received.
import { BatchNormRangeError, BatchNormTypeError, describe } from './errors';

export type FloatArray = Float32Array | Float64Array;
export type DType = 'float32' | 'float64';

export function dtypeOf(a: FloatArray): DType {
  return a instanceof Float64Array ? 'float64' : 'float32';
}

export function arrayType(dtype: DType): typeof Float32Array | typeof Float64Array {
  return dtype === 'float64' ? Float64Array : Float32Array;
}

export function arrayName(dtype: DType): string {
  return dtype === 'float64' ? 'Float64Array' : 'Float32Array';
}

export function isFloatArray(v: unknown): v is FloatArray {
  return v instanceof Float32Array || v instanceof Float64Array;
}

export function checkDType(fn: string, dtype: unknown): DType {
  if (dtype !== 'float32' && dtype !== 'float64') {
    throw new BatchNormTypeError('ERR_BN_INVALID_ARG_TYPE', `${fn}: dtype must be 'float32' or 'float64', received ${describe(dtype)}`);
  }
  return dtype;
}

/** A Float32Array/Float64Array of the given dtype, and of exactly `length` elements if given. */
export function checkArray(fn: string, name: string, v: unknown, dtype: DType, length?: number): FloatArray {
  if (!isFloatArray(v)) {
    throw new BatchNormTypeError('ERR_BN_INVALID_ARG_TYPE', `${fn}: ${name} must be a ${arrayName(dtype)}, received ${describe(v)}`);
  }
  if (dtypeOf(v) !== dtype) {
    throw new BatchNormTypeError(
      'ERR_BN_DTYPE_MISMATCH',
      `${fn}: ${name} must be a ${arrayName(dtype)} (dtype ${dtype}), received ${describe(v)}; convert it explicitly`,
    );
  }
  if (length !== undefined && v.length !== length) {
    const detached = v.length === 0 && v.buffer.byteLength === 0 ? ' (its buffer is detached or empty)' : '';
    throw new BatchNormRangeError(
      'ERR_BN_BAD_LENGTH',
      `${fn}: ${name} must have ${length} elements, received ${describe(v)}${detached}`,
    );
  }
  return v;
}

export function checkOptionalArray(fn: string, name: string, v: unknown, dtype: DType, length: number): FloatArray | null {
  if (v === undefined || v === null) return null;
  return checkArray(fn, name, v, dtype, length);
}

function byteRange(a: ArrayBufferView): [number, number] {
  return [a.byteOffset, a.byteOffset + a.byteLength];
}

/** True when two views share at least one byte of the same buffer. */
export function sharesMemory(a: ArrayBufferView, b: ArrayBufferView): boolean {
  if (a.buffer !== b.buffer || a.byteLength === 0 || b.byteLength === 0) return false;
  const [a0, a1] = byteRange(a);
  const [b0, b1] = byteRange(b);
  return a0 < b1 && b0 < a1;
}

/** `out` may be `input` itself (in place) only when `inPlaceOk`; otherwise no shared memory. */
export function checkNoOverlap(fn: string, outName: string, out: FloatArray, inName: string, input: FloatArray, inPlaceOk: boolean): void {
  if (!sharesMemory(out, input)) return;
  const same = out.buffer === input.buffer && out.byteOffset === input.byteOffset && out.length === input.length;
  if (same && inPlaceOk) return;
  throw new BatchNormRangeError(
    'ERR_BN_OVERLAP',
    `${fn}: ${outName} shares memory with ${inName}` +
      (inPlaceOk ? '; it must be the very same view (in place) or a separate buffer' : '; pass a separate buffer'),
  );
}

export interface ParsedShape {
  dims: number[];
  n: number;
  c: number;
  s: number; // product of the spatial dims
  total: number;
}

/** "[2, 3, the string \"x\"]" without calling toString on the elements (they may be anything,
 * e.g. symbols or null-prototype objects), and at most 8 of them (the array may be huge or sparse). */
export function formatDims(shape: readonly unknown[]): string {
  const parts = shape.slice(0, 8).map((d) => (typeof d === 'number' ? String(d) : describe(d)));
  return `[${parts.join(', ')}${shape.length > 8 ? `, … (${shape.length} entries)` : ''}]`;
}

/** shape: an array of rank in [minRank, maxRank] of integers >= 1 whose product is <= 2^53 - 1. */
export function parseShape(fn: string, shape: unknown, minRank = 2, maxRank = 5): ParsedShape {
  if (!Array.isArray(shape)) {
    throw new BatchNormTypeError('ERR_BN_INVALID_ARG_TYPE', `${fn}: shape must be an array of integers like [N, C, H, W], received ${describe(shape)}`);
  }
  if (shape.length < minRank || shape.length > maxRank) {
    const want = minRank === maxRank ? `${minRank}` : `${minRank} to ${maxRank}`;
    throw new BatchNormRangeError('ERR_BN_BAD_SHAPE', `${fn}: shape must have rank ${want}, received rank ${shape.length} (${formatDims(shape)})`);
  }
  let total = 1;
  for (let i = 0; i < shape.length; i++) {
    const d = shape[i];
    if (typeof d !== 'number' || !Number.isInteger(d) || d < 1) {
      throw new BatchNormRangeError('ERR_BN_BAD_SHAPE', `${fn}: shape[${i}] must be an integer >= 1, received ${describe(d)}`);
    }
    total *= d;
    if (total > Number.MAX_SAFE_INTEGER) {
      throw new BatchNormRangeError('ERR_BN_BAD_SHAPE', `${fn}: shape ${formatDims(shape)} has more than 2^53 - 1 elements`);
    }
  }
  const dims = shape.slice() as number[];
  const s = dims.slice(2).reduce((p, d) => p * d, 1);
  return { dims, n: dims[0], c: dims[1], s, total };
}

export function checkEps(fn: string, eps: unknown): number {
  if (typeof eps !== 'number') throw new BatchNormTypeError('ERR_BN_INVALID_ARG_TYPE', `${fn}: eps must be a number, received ${describe(eps)}`);
  if (!Number.isFinite(eps) || eps < 0) throw new BatchNormRangeError('ERR_BN_OUT_OF_RANGE', `${fn}: eps must be finite and >= 0, received ${eps}`);
  return eps;
}

export function checkMomentum(fn: string, momentum: unknown): number | null {
  if (momentum === null) return null;
  if (typeof momentum !== 'number') {
    throw new BatchNormTypeError('ERR_BN_INVALID_ARG_TYPE', `${fn}: momentum must be a number in [0, 1] or null, received ${describe(momentum)}`);
  }
  if (!(momentum >= 0 && momentum <= 1)) {
    throw new BatchNormRangeError('ERR_BN_OUT_OF_RANGE', `${fn}: momentum must be in [0, 1] or null, received ${momentum}`);
  }
  return momentum;
}

export function checkBoolean(fn: string, name: string, v: unknown): boolean {
  if (typeof v !== 'boolean') throw new BatchNormTypeError('ERR_BN_INVALID_ARG_TYPE', `${fn}: ${name} must be a boolean, received ${describe(v)}`);
  return v;
}

export function checkPositiveInt(fn: string, name: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > Number.MAX_SAFE_INTEGER) {
    throw new BatchNormRangeError('ERR_BN_OUT_OF_RANGE', `${fn}: ${name} must be an integer >= 1, received ${describe(v)}`);
  }
  return v;
}

export function checkOptions(fn: string, options: unknown): Record<string, unknown> {
  if (options === undefined) return {};
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw new BatchNormTypeError('ERR_BN_INVALID_ARG_TYPE', `${fn}: options must be an object, received ${describe(options)}`);
  }
  return options as Record<string, unknown>;
}
