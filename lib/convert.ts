// float32 <-> bfloat16 / float16 for users. JavaScript has no 16-bit float arrays: as everywhere
// (onnxruntime's float16, every bfloat16 library) the 16-bit values travel as their raw bits in a
// Uint16Array. The rule (native/core/convert_rule.h, the same on every SIMD level): float32 to
// 16 bits rounds to nearest, ties to even; subnormals and infinities are kept, float16 overflows to
// infinity (|x| >= 65520); every NaN becomes 0x7FC0 (bfloat16) / 0x7E00 (float16). The way back to
// float32 is exact.
import { Buffer, constants as bufferConstants } from 'buffer';
import { lengthOf, sharesMemory, typedArrayKind } from './arrays';
import type { ConvertCall, NativeBinding } from './binding';
import { BatchNormRangeError, BatchNormTypeError, describe } from './errors';
import { native } from './load';
import { readOptions } from './validate';

/** Where to write: the output array itself, or { out }. */
export type ConvertOut<T> = T | { out?: T | null };

type Kind = 'Float32Array' | 'Uint16Array';

interface Conversion {
  fn: string;
  from: Kind;
  to: Kind;
  call: (b: NativeBinding, args: ConvertCall<never, never>) => void;
}

function readOut(c: Conversion, v: unknown): unknown {
  if (v === undefined || v === null || typedArrayKind(v) !== undefined) return v ?? null;
  const o = readOptions(c.fn, v, ['out'] as const);
  return o.out ?? null;
}

function fresh(kind: Kind, n: number): Float32Array | Uint16Array {
  const T = kind === 'Float32Array' ? Float32Array : Uint16Array;
  const bytes = n * T.BYTES_PER_ELEMENT;
  try {
    // Not zero-filled: the kernel writes every element (the fill would cost as much as the conversion).
    return bytes === 0 || bytes > bufferConstants.MAX_LENGTH ? new T(n) : new T(Buffer.allocUnsafeSlow(bytes).buffer, 0, n);
  } catch (e) {
    throw new BatchNormRangeError('ERR_BN_OUT_OF_MEMORY', `node-batchnorm: a ${kind} of ${n} elements could not be allocated (${(e as Error).message}); pass an output array`);
  }
}

function run(c: Conversion, src: unknown, outArg: unknown): Float32Array | Uint16Array {
  if (typedArrayKind(src) !== c.from) {
    throw new BatchNormTypeError('ERR_BN_INVALID_ARG_TYPE', `${c.fn}: src must be a ${c.from}, received ${describe(src)}`);
  }
  const s = src as Float32Array | Uint16Array;
  const n = lengthOf(s);
  const given = readOut(c, outArg);
  let out: Float32Array | Uint16Array;
  if (given === null) {
    out = fresh(c.to, n);
  } else {
    if (typedArrayKind(given) !== c.to) {
      throw new BatchNormTypeError('ERR_BN_INVALID_ARG_TYPE', `${c.fn}: out must be a ${c.to}, received ${describe(given)}`);
    }
    out = given as Float32Array | Uint16Array;
    if (lengthOf(out) !== n) {
      throw new BatchNormRangeError('ERR_BN_BAD_LENGTH', `${c.fn}: out must have ${n} elements (src's length), received ${describe(out)}`);
    }
    if (sharesMemory(out, s)) {
      throw new BatchNormRangeError('ERR_BN_OVERLAP', `${c.fn}: out shares memory with src; pass a separate buffer`);
    }
  }
  if (n > 0) c.call(native(), { fn: c.fn, src: s, out } as ConvertCall<never, never>);
  return out;
}

const F32_TO_BF16: Conversion = { fn: 'toBFloat16', from: 'Float32Array', to: 'Uint16Array', call: (b, a) => b.convertF32ToBF16(a) };
const BF16_TO_F32: Conversion = { fn: 'fromBFloat16', from: 'Uint16Array', to: 'Float32Array', call: (b, a) => b.convertBF16ToF32(a) };
const F32_TO_F16: Conversion = { fn: 'toFloat16', from: 'Float32Array', to: 'Uint16Array', call: (b, a) => b.convertF32ToF16(a) };
const F16_TO_F32: Conversion = { fn: 'fromFloat16', from: 'Uint16Array', to: 'Float32Array', call: (b, a) => b.convertF16ToF32(a) };

/** float32 -> bfloat16 bits (round to nearest even; NaN -> 0x7FC0). Writes `out` when given. */
export function toBFloat16(src: Float32Array, out?: ConvertOut<Uint16Array>): Uint16Array {
  return run(F32_TO_BF16, src, out) as Uint16Array;
}

/** bfloat16 bits -> float32 (exact). Writes `out` when given. */
export function fromBFloat16(src: Uint16Array, out?: ConvertOut<Float32Array>): Float32Array {
  return run(BF16_TO_F32, src, out) as Float32Array;
}

/** float32 -> IEEE float16 bits (round to nearest even; |x| >= 65520 -> infinity; NaN -> 0x7E00). */
export function toFloat16(src: Float32Array, out?: ConvertOut<Uint16Array>): Uint16Array {
  return run(F32_TO_F16, src, out) as Uint16Array;
}

/** IEEE float16 bits -> float32 (exact). Writes `out` when given. */
export function fromFloat16(src: Uint16Array, out?: ConvertOut<Float32Array>): Float32Array {
  return run(F16_TO_F32, src, out) as Float32Array;
}
