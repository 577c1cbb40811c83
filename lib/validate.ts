// User-argument checks shared by the layer and the functional API: the one place that owns the
// messages. Each check reads a user value exactly once (a getter or Proxy cannot answer twice)
// and throws a BatchNorm*Error naming the function, the argument, what was expected and what was
// received.
import {
  arrayName, dtypeOf, DType, FloatArray, FloatDType, isFloatArray, isHalf, isResizable, isUint16Array, lengthOf, sameView,
  sharesMemory, TensorArray,
} from './arrays';
import { BatchNormRangeError, BatchNormTypeError, describe } from './errors';

export type { DType, FloatArray, FloatDType, TensorArray } from './arrays';

export function checkDType(fn: string, dtype: unknown): DType {
  if (dtype !== 'float32' && dtype !== 'float64' && dtype !== 'bfloat16' && dtype !== 'float16') {
    throw new BatchNormTypeError(
      'ERR_BN_INVALID_ARG_TYPE',
      `${fn}: dtype must be 'float32' or 'float64' (or 'bfloat16' / 'float16': 16-bit storage), received ${describe(dtype)}`,
    );
  }
  return dtype;
}

const HALF_HELPER = { bfloat16: 'toBFloat16', float16: 'toFloat16' } as const;

/** A tensor (x, out, dy) of storage dtype `dtype`: a float typed array of that dtype, or for the
 * 16-bit dtypes a Uint16Array of raw bits; of exactly `length` elements if given. */
export function checkTensor(fn: string, name: string, v: unknown, dtype: DType, length?: number): TensorArray {
  if (!isHalf(dtype)) {
    if (isUint16Array(v)) {
      throw new BatchNormTypeError(
        'ERR_BN_DTYPE_MISMATCH',
        `${fn}: ${name} must be a ${arrayName(dtype)} (dtype ${dtype}), received ${describe(v)}; 16-bit values need a layer or ` +
          "call with dtype 'bfloat16' or 'float16'",
      );
    }
    return checkArray(fn, name, v, dtype, length);
  }
  if (!isUint16Array(v)) {
    const code = isFloatArray(v) ? 'ERR_BN_DTYPE_MISMATCH' : 'ERR_BN_INVALID_ARG_TYPE';
    const hint = isFloatArray(v) ? `; convert it with ${HALF_HELPER[dtype]}()` : '';
    throw new BatchNormTypeError(code, `${fn}: ${name} must be a Uint16Array of ${dtype} bits (dtype ${dtype}), received ${describe(v)}${hint}`);
  }
  if (length !== undefined && lengthOf(v) !== length) {
    throw new BatchNormRangeError('ERR_BN_BAD_LENGTH', `${fn}: ${name} must have ${length} elements, received ${describe(v)}${detachedNote(v)}`);
  }
  return v;
}

export function checkOptionalTensor(fn: string, name: string, v: unknown, dtype: DType, length: number): TensorArray | null {
  if (v === undefined || v === null) return null;
  return checkTensor(fn, name, v, dtype, length);
}

function detachedNote(a: ArrayBufferView): string {
  return lengthOf(a) === 0 ? ' (its buffer is detached, empty or shrunk)' : '';
}

/** A Float32Array/Float64Array of the given dtype, and of exactly `length` elements if given. */
export function checkArray(fn: string, name: string, v: unknown, dtype: FloatDType, length?: number): FloatArray {
  if (!isFloatArray(v)) {
    throw new BatchNormTypeError('ERR_BN_INVALID_ARG_TYPE', `${fn}: ${name} must be a ${arrayName(dtype)}, received ${describe(v)}`);
  }
  if (dtypeOf(v) !== dtype) {
    throw new BatchNormTypeError(
      'ERR_BN_DTYPE_MISMATCH',
      `${fn}: ${name} must be a ${arrayName(dtype)} (dtype ${dtype}), received ${describe(v)}; convert it explicitly`,
    );
  }
  if (length !== undefined && lengthOf(v) !== length) {
    throw new BatchNormRangeError('ERR_BN_BAD_LENGTH', `${fn}: ${name} must have ${length} elements, received ${describe(v)}${detachedNote(v)}`);
  }
  return v;
}

export function checkOptionalArray(fn: string, name: string, v: unknown, dtype: FloatDType, length: number): FloatArray | null {
  if (v === undefined || v === null) return null;
  return checkArray(fn, name, v, dtype, length);
}

/** `out` may be `input` itself (in place) only when `inPlaceOk`; otherwise no shared memory. */
export function checkNoOverlap(fn: string, outName: string, out: TensorArray, inName: string, input: TensorArray, inPlaceOk: boolean): void {
  if (!sharesMemory(out, input)) return;
  if (inPlaceOk && sameView(out, input)) return;
  throw new BatchNormRangeError(
    'ERR_BN_OVERLAP',
    `${fn}: ${outName} shares memory with ${inName}` +
      (inPlaceOk ? '; it must be the very same view (in place) or a separate buffer' : '; pass a separate buffer'),
  );
}

/** An async call runs on another thread while JavaScript goes on: no array of it may be a view of
 * a resizable ArrayBuffer (growable SharedArrayBuffers never shrink and are fine). */
export function checkFixedLength(fn: string, arrays: ReadonlyArray<readonly [string, TensorArray | null]>): void {
  for (const [name, a] of arrays) {
    if (a && isResizable(a)) {
      throw new BatchNormTypeError(
        'ERR_BN_RESIZABLE_BUFFER',
        `${fn}: ${name} is a view of a resizable ArrayBuffer, which JavaScript could shrink while the call runs on another ` +
          'thread; pass a fixed-length buffer (or a SharedArrayBuffer), or use the synchronous call',
      );
    }
  }
}

export interface ParsedShape {
  dims: number[];
  n: number;
  c: number;
  s: number; // product of the spatial dims
  total: number;
}

/** "[2, 3, the string \"x\"]", at most 8 entries of `length`. */
export function formatDims(dims: readonly unknown[], length = dims.length): string {
  const parts = dims.slice(0, 8).map((d) => (typeof d === 'number' ? String(d) : describe(d)));
  return `[${parts.join(', ')}${length > 8 ? `, … (${length} entries)` : ''}]`;
}

/** shape: an array of rank in [minRank, maxRank] of integers >= 1 whose product is <= 2^53 - 1.
 * Its length and each entry are read once, into a copy that is then validated. */
export function parseShape(fn: string, shape: unknown, minRank = 2, maxRank = 5): ParsedShape {
  if (!Array.isArray(shape)) {
    throw new BatchNormTypeError('ERR_BN_INVALID_ARG_TYPE', `${fn}: shape must be an array of integers like [N, C, H, W], received ${describe(shape)}`);
  }
  const rank: number = shape.length;
  if (rank < minRank || rank > maxRank) {
    const want = minRank === maxRank ? `${minRank}` : `${minRank} to ${maxRank}`;
    const preview: unknown[] = [];
    for (let i = 0; i < Math.min(8, rank); i++) preview.push(shape[i]);
    throw new BatchNormRangeError('ERR_BN_BAD_SHAPE', `${fn}: shape must have rank ${want}, received rank ${rank} (${formatDims(preview, rank)})`);
  }
  const dims: unknown[] = [];
  for (let i = 0; i < rank; i++) dims.push(shape[i]);
  let total = 1;
  for (let i = 0; i < dims.length; i++) {
    const d = dims[i];
    if (typeof d !== 'number' || !Number.isInteger(d) || d < 1) {
      throw new BatchNormRangeError('ERR_BN_BAD_SHAPE', `${fn}: shape[${i}] must be an integer >= 1, received ${describe(d)}`);
    }
    total *= d;
    if (total > Number.MAX_SAFE_INTEGER) {
      throw new BatchNormRangeError('ERR_BN_BAD_SHAPE', `${fn}: shape ${formatDims(dims)} has more than 2^53 - 1 elements`);
    }
  }
  const nums = dims as number[];
  const s = nums.slice(2).reduce((p, d) => p * d, 1);
  return { dims: nums, n: nums[0], c: nums[1], s, total };
}

export function checkEps(fn: string, eps: unknown): number {
  if (typeof eps !== 'number') throw new BatchNormTypeError('ERR_BN_INVALID_ARG_TYPE', `${fn}: eps must be a number, received ${describe(eps)}`);
  if (!Number.isFinite(eps) || eps < 0) throw new BatchNormRangeError('ERR_BN_OUT_OF_RANGE', `${fn}: eps must be finite and >= 0, received ${eps}`);
  return eps;
}

/** A momentum in [0, 1]; null (cumulative average) only where `nullable`. */
export function checkMomentum(fn: string, momentum: unknown, nullable: boolean): number | null {
  if (momentum === null && nullable) return null;
  const want = `${fn}: momentum must be a number in [0, 1]${nullable ? ' or null' : ''}, received ${describe(momentum)}`;
  if (typeof momentum !== 'number') throw new BatchNormTypeError('ERR_BN_INVALID_ARG_TYPE', want);
  if (!(momentum >= 0 && momentum <= 1)) throw new BatchNormRangeError('ERR_BN_OUT_OF_RANGE', want);
  return momentum;
}

export function checkBoolean(fn: string, name: string, v: unknown): boolean {
  if (typeof v !== 'boolean') throw new BatchNormTypeError('ERR_BN_INVALID_ARG_TYPE', `${fn}: ${name} must be a boolean, received ${describe(v)}`);
  return v;
}

export function checkOptionalBoolean(fn: string, name: string, v: unknown, fallback: boolean): boolean {
  return v === undefined ? fallback : checkBoolean(fn, name, v);
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diag = row[0];
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const next = Math.min(row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = row[j];
      row[j] = next;
    }
  }
  return row[b.length];
}

/** The known key nearest to `key`, if it is a plausible typo of it. */
function closest(key: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const k of known) {
    const d = editDistance(key.toLowerCase(), k.toLowerCase());
    if (d < bestDistance) {
      best = k;
      bestDistance = d;
    }
  }
  return bestDistance <= Math.max(2, Math.floor(key.length / 3)) ? best : undefined;
}

/**
 * An options object (undefined: {}) read once: every known key copied into a fresh object, any
 * other own key an error that names it and the closest known one.
 */
export function readOptions<K extends string>(fn: string, options: unknown, known: readonly K[], what = 'options'): Partial<Record<K, unknown>> {
  if (options === undefined) return {};
  if (options === null || typeof options !== 'object' || Array.isArray(options) || ArrayBuffer.isView(options)) {
    throw new BatchNormTypeError('ERR_BN_INVALID_ARG_TYPE', `${fn}: ${what} must be an object, received ${describe(options)}`);
  }
  for (const key of Object.keys(options)) {
    if (!(known as readonly string[]).includes(key)) {
      const near = closest(key, known);
      throw new BatchNormTypeError(
        'ERR_BN_UNKNOWN_OPTION',
        `${fn}: unknown ${what} key '${key}'${near ? `; did you mean '${near}'?` : ''} (known: ${known.join(', ')})`,
      );
    }
  }
  const copy: Partial<Record<K, unknown>> = {};
  for (const key of known) {
    const v = (options as Record<string, unknown>)[key];
    if (v !== undefined) copy[key] = v;
  }
  return copy;
}
