// Reproducible test inputs. The generator is the project's one seeded Rng (examples/mnist/rng.ts,
// xoshiro128** + Box-Muller), which depends on nothing under test.
import { Rng } from '../../examples/mnist/rng';

export { Rng };

export type DTypeName = 'float32' | 'float64';
export type AnyFloatArray = Float32Array | Float64Array;
/** A layer's dtype: the 16-bit ones keep float32 parameters, so they mean Float32Array here. */
export type LayerDType = DTypeName | 'bfloat16' | 'float16';

export function ctorOf(dtype: LayerDType): typeof Float32Array | typeof Float64Array {
  return dtype === 'float64' ? Float64Array : Float32Array;
}

/**
 * n values mean + std * N(0, 1), rounded to float32 so that float32 and float64 runs see the same
 * inputs, in an array of the given dtype.
 */
export function randn(rng: Rng, n: number, dtype: LayerDType, mean = 0, std = 1): AnyFloatArray {
  const a = new (ctorOf(dtype))(n);
  for (let i = 0; i < n; i++) a[i] = Math.fround(mean + std * rng.normal());
  return a;
}

/** n values uniform in [lo, hi), rounded to float32. */
export function randu(rng: Rng, n: number, dtype: LayerDType, lo: number, hi: number): AnyFloatArray {
  const a = new (ctorOf(dtype))(n);
  for (let i = 0; i < n; i++) a[i] = Math.fround(lo + (hi - lo) * rng.uniform());
  return a;
}

export function product(dims: readonly number[]): number {
  return dims.reduce((p, d) => p * d, 1);
}
