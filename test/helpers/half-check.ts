// Checks of 16-bit outputs (raw bits in Uint16Arrays) against float64 values, in units in the last
// place of the storage format, built on the independent encoder/decoder of half-reference.ts.
import { expect } from 'chai';
import { BF16, decodeHalf, encodeHalf, F16, HalfFormat } from './half-reference';

export type HalfName = 'bfloat16' | 'float16';
export const FORMATS: Record<HalfName, HalfFormat> = { bfloat16: BF16, float16: F16 };

/** A NaN pattern neither format's rule writes (the canonical NaNs are 0x7FC0 / 0x7E00). */
export const POISON = 0x7fbe;

export function decodeAll(f: HalfFormat, h: ArrayLike<number>): Float64Array {
  const out = new Float64Array(h.length);
  for (let i = 0; i < h.length; i++) out[i] = decodeHalf(f, h[i]);
  return out;
}

export function encodeAll(f: HalfFormat, v: ArrayLike<number>): Uint16Array {
  const out = new Uint16Array(v.length);
  for (let i = 0; i < v.length; i++) out[i] = encodeHalf(f, v[i]);
  return out;
}

/** One unit in the last place of the format at |v| (the subnormal quantum below the normal range). */
export function ulpOf(f: HalfFormat, v: number): number {
  const emin = f.mant === 7 ? -126 : -14;
  const a = Math.abs(v);
  let e = a === 0 ? emin : Math.floor(Math.log2(a));
  if (e < emin) e = emin;
  return 2 ** (e - f.mant);
}

/**
 * Every got[i] (16-bit bits) within one ulp of the format of ref[i] (+ slack[i], the float32
 * rounding of terms that cancel, when given); NaN only where ref is NaN. Returns the largest
 * error in ulps.
 */
export function expectWithinUlp(what: string, f: HalfFormat, got: Uint16Array, ref: ArrayLike<number>, slack?: ArrayLike<number>): number {
  expect(got.length, `${what}: length`).to.equal(ref.length);
  let worst = 0;
  for (let i = 0; i < ref.length; i++) {
    const g = decodeHalf(f, got[i]);
    const r = ref[i];
    if (Number.isNaN(r)) {
      expect(got[i], `${what}[${i}]: NaN bits`).to.equal(f.nan);
      continue;
    }
    const u = ulpOf(f, r);
    const err = Math.abs(g - r);
    const ok = err <= u + (slack ? slack[i] : 0) || (g === r);
    if (!ok) expect.fail(`${what}[${i}]: got ${g} (0x${got[i].toString(16)}), exact ${r}, error ${(err / u).toFixed(3)} ulp`);
    worst = Math.max(worst, err / u);
  }
  return worst;
}

/** Relative closeness for float32 outputs (statistics, gradients, running statistics). */
export function expectClose(what: string, got: ArrayLike<number>, ref: ArrayLike<number>, rel: number, abs = 0): void {
  expect(got.length, `${what}: length`).to.equal(ref.length);
  for (let i = 0; i < ref.length; i++) {
    const tol = rel * Math.abs(ref[i]) + abs;
    if (!(Math.abs(got[i] - ref[i]) <= tol)) expect.fail(`${what}[${i}]: got ${got[i]}, expected ${ref[i]} (tol ${tol})`);
  }
}
