// Seeded pseudo-random numbers for the tests (mulberry32 + Box-Muller): reproducible inputs
// without any dependency on the code under test.

export class Rng {
  private state: number;
  private spare: number | null = null;

  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  /** Uniform in [0, 1). */
  uniform(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** Integer in [lo, hi] (both inclusive). */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.uniform() * (hi - lo + 1));
  }

  /** Standard normal. */
  normal(): number {
    if (this.spare !== null) {
      const s = this.spare;
      this.spare = null;
      return s;
    }
    let u = 0;
    while (u === 0) u = this.uniform();
    const v = this.uniform();
    const r = Math.sqrt(-2 * Math.log(u));
    this.spare = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  }

  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.uniform() * items.length)];
  }
}

export type DTypeName = 'float32' | 'float64';
export type AnyFloatArray = Float32Array | Float64Array;

export function ctorOf(dtype: DTypeName): typeof Float32Array | typeof Float64Array {
  return dtype === 'float64' ? Float64Array : Float32Array;
}

/**
 * n values mean + std * N(0, 1), rounded to float32 so that float32 and float64 runs see the same
 * inputs, in an array of the given dtype.
 */
export function randn(rng: Rng, n: number, dtype: DTypeName, mean = 0, std = 1): AnyFloatArray {
  const a = new (ctorOf(dtype))(n);
  for (let i = 0; i < n; i++) a[i] = Math.fround(mean + std * rng.normal());
  return a;
}

/** n values uniform in [lo, hi), rounded to float32. */
export function randu(rng: Rng, n: number, dtype: DTypeName, lo: number, hi: number): AnyFloatArray {
  const a = new (ctorOf(dtype))(n);
  for (let i = 0; i < n; i++) a[i] = Math.fround(lo + (hi - lo) * rng.uniform());
  return a;
}

export function product(dims: readonly number[]): number {
  return dims.reduce((p, d) => p * d, 1);
}
