// An independent float32 <-> bfloat16 / float16 reference for the tests, written from the IEEE 754
// definition in float64 arithmetic (every float32 and every quotient by a power of two is exact in
// a double), sharing nothing with the library. Formats: 15 - mant exponent bits, mant mantissa bits.

export interface HalfFormat {
  name: 'bfloat16' | 'float16';
  mant: number;
  /** The library's canonical NaN: sign clear, quiet bit set, payload 0. */
  nan: number;
}

export const BF16: HalfFormat = { name: 'bfloat16', mant: 7, nan: 0x7fc0 };
export const F16: HalfFormat = { name: 'float16', mant: 10, nan: 0x7e00 };

const scratch = new DataView(new ArrayBuffer(4));

export function f32FromBits(u: number): number {
  scratch.setUint32(0, u >>> 0);
  return scratch.getFloat32(0);
}

export function bitsOfF32(x: number): number {
  scratch.setFloat32(0, x);
  return scratch.getUint32(0);
}

function layout(f: HalfFormat): { bias: number; emin: number; emax: number; inf: number } {
  const expBits = 15 - f.mant;
  const bias = 2 ** (expBits - 1) - 1;
  return { bias, emin: 1 - bias, emax: bias, inf: (2 ** expBits - 1) * 2 ** f.mant };
}

/** x (a float32 value, or any double: rounded once) to the format's bits, round to nearest even. */
export function encodeHalf(f: HalfFormat, x: number): number {
  if (Number.isNaN(x)) return f.nan;
  const { bias, emin, emax, inf } = layout(f);
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  const a = Math.abs(x);
  if (a === Infinity) return sign | inf;
  if (a === 0) return sign;
  let e = Math.floor(Math.log2(a));
  while (2 ** e > a) e--;
  while (2 ** (e + 1) <= a) e++;
  if (e < emin) e = emin; // subnormal: the quantum of the smallest binade
  const q = a / 2 ** (e - f.mant);
  let k = Math.floor(q);
  const frac = q - k;
  if (frac > 0.5 || (frac === 0.5 && k % 2 === 1)) k++;
  if (k >= 2 ** (f.mant + 1)) {
    k /= 2;
    e++;
  }
  if (e > emax) return sign | inf;
  if (k < 2 ** f.mant) return sign | k;
  return sign | ((e + bias) * 2 ** f.mant + (k - 2 ** f.mant));
}

/** The float32 bits the 16-bit value `h` decodes to (NaN payloads shifted up; a float16 NaN quieted). */
export function decodeHalfBits(f: HalfFormat, h: number): number {
  const { bias, emin } = layout(f);
  const neg = (h & 0x8000) !== 0;
  const eField = (h & 0x7fff) >> f.mant;
  const m = h & (2 ** f.mant - 1);
  if (eField === 2 ** (15 - f.mant) - 1) {
    const quiet = m !== 0 && f.mant === 10 ? 0x400000 : 0;
    return ((neg ? 0x80000000 : 0) | 0x7f800000 | (m << (23 - f.mant)) | quiet) >>> 0;
  }
  const v = eField === 0 ? m * 2 ** (emin - f.mant) : (1 + m / 2 ** f.mant) * 2 ** (eField - bias);
  return bitsOfF32(neg ? -v : v);
}

/** The value of a 16-bit number (NaN for NaNs). */
export function decodeHalf(f: HalfFormat, h: number): number {
  return f32FromBits(decodeHalfBits(f, h));
}
