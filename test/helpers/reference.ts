// The float64 reference of the JS tests (the one: every test, the streaming child and the packed
// smoke test use it): batch normalization, folding and the layers it folds into, as plain loops
// written from the formulas of docs/batchnorm.md (Ioffe & Szegedy 2015, PyTorch's conventions).
// Nothing here imports the library under test, or anything else.

export type Num = ArrayLike<number>;

/** Layout: x is [N, C, S] flattened, S = product of the spatial dims (1 for [N, C]). */
export interface Dims {
  n: number;
  c: number;
  s: number;
}

export function dimsOf(shape: readonly number[]): Dims {
  let s = 1;
  for (let i = 2; i < shape.length; i++) s *= shape[i];
  return { n: shape[0], c: shape[1], s };
}

function idx(d: Dims, n: number, c: number, j: number): number {
  return (n * d.c + c) * d.s + j;
}

export interface BatchStats {
  mean: Float64Array;
  /** biased */
  variance: Float64Array;
  invstd: Float64Array;
}

/** Per channel: mean, biased variance (two-pass, float64), invstd = 1/sqrt(var + eps). */
export function batchStats(x: Num, d: Dims, eps: number): BatchStats {
  const mean = new Float64Array(d.c);
  const variance = new Float64Array(d.c);
  const invstd = new Float64Array(d.c);
  const m = d.n * d.s;
  for (let c = 0; c < d.c; c++) {
    let sum = 0;
    for (let n = 0; n < d.n; n++) for (let j = 0; j < d.s; j++) sum += x[idx(d, n, c, j)];
    const mu = sum / m;
    let sq = 0;
    for (let n = 0; n < d.n; n++) {
      for (let j = 0; j < d.s; j++) {
        const t = x[idx(d, n, c, j)] - mu;
        sq += t * t;
      }
    }
    mean[c] = mu;
    variance[c] = sq / m;
    invstd[c] = 1 / Math.sqrt(sq / m + eps);
  }
  return { mean, variance, invstd };
}

/** y = (x - mean) * invstd * weight + bias with the given per-channel statistics. */
export function normalize(x: Num, d: Dims, mean: Num, invstd: Num, weight: Num | null, bias: Num | null): Float64Array {
  const y = new Float64Array(d.n * d.c * d.s);
  for (let n = 0; n < d.n; n++) {
    for (let c = 0; c < d.c; c++) {
      const w = weight ? weight[c] : 1;
      const b = bias ? bias[c] : 0;
      for (let j = 0; j < d.s; j++) {
        const i = idx(d, n, c, j);
        y[i] = (x[i] - mean[c]) * invstd[c] * w + b;
      }
    }
  }
  return y;
}

export interface TrainingRef extends BatchStats {
  y: Float64Array;
}

/** Training forward (Algorithm 1): batch statistics and normalized, scaled, shifted output. */
export function forwardTraining(x: Num, d: Dims, weight: Num | null, bias: Num | null, eps: number): TrainingRef {
  const st = batchStats(x, d, eps);
  return { ...st, y: normalize(x, d, st.mean, st.invstd, weight, bias) };
}

/**
 * Running statistics after one training step: f = momentum, or 1 / n (n = steps so far,
 * including this one) when momentum is null; the variance term is the unbiased one.
 */
export function runningUpdate(
  runningMean: Num, runningVar: Num, st: BatchStats, m: number, momentum: number | null, stepNumber: number,
): { mean: Float64Array; variance: Float64Array } {
  const f = momentum === null ? 1 / stepNumber : momentum;
  const C = st.mean.length;
  const mean = new Float64Array(C);
  const variance = new Float64Array(C);
  for (let c = 0; c < C; c++) {
    mean[c] = (1 - f) * runningMean[c] + f * st.mean[c];
    variance[c] = (1 - f) * runningVar[c] + f * st.variance[c] * m / (m - 1);
  }
  return { mean, variance };
}

/** Inference forward: y = (x - running_mean) / sqrt(running_var + eps) * weight + bias. */
export function forwardInference(x: Num, d: Dims, weight: Num | null, bias: Num | null, runningMean: Num, runningVar: Num, eps: number): Float64Array {
  const invstd = Array.from({ length: d.c }, (_, c) => 1 / Math.sqrt(runningVar[c] + eps));
  return normalize(x, d, runningMean, invstd, weight, bias);
}

/** Inference BN as one affine map per channel: scale = weight / sqrt(running_var + eps), shift = bias - running_mean * scale. */
export function scaleShift(runningMean: Num, runningVar: Num, eps: number, weight: Num | null, bias: Num | null): { scale: Float64Array; shift: Float64Array } {
  const C = runningMean.length;
  const scale = Float64Array.from({ length: C }, (_, c) => (weight ? weight[c] : 1) / Math.sqrt(runningVar[c] + eps));
  const shift = Float64Array.from({ length: C }, (_, c) => (bias ? bias[c] : 0) - runningMean[c] * scale[c]);
  return { scale, shift };
}

export interface BackwardRef {
  dx: Float64Array;
  dweight: Float64Array;
  dbias: Float64Array;
}

/**
 * Backward. mean/invstd are what the forward used (batch statistics in training, running
 * statistics in evaluation, with invstd = 1/sqrt(running_var + eps)).
 */
export function backward(x: Num, dy: Num, d: Dims, weight: Num | null, mean: Num, invstd: Num, training: boolean): BackwardRef {
  const total = d.n * d.c * d.s;
  const dx = new Float64Array(total);
  const dweight = new Float64Array(d.c);
  const dbias = new Float64Array(d.c);
  const m = d.n * d.s;
  for (let c = 0; c < d.c; c++) {
    let sdy = 0;
    let sdyx = 0;
    for (let n = 0; n < d.n; n++) {
      for (let j = 0; j < d.s; j++) {
        const i = idx(d, n, c, j);
        sdy += dy[i];
        sdyx += dy[i] * (x[i] - mean[c]) * invstd[c];
      }
    }
    dbias[c] = sdy;
    dweight[c] = sdyx;
    const w = weight ? weight[c] : 1;
    for (let n = 0; n < d.n; n++) {
      for (let j = 0; j < d.s; j++) {
        const i = idx(d, n, c, j);
        if (training) {
          const xhat = (x[i] - mean[c]) * invstd[c];
          dx[i] = (w * invstd[c] / m) * (m * dy[i] - sdy - xhat * sdyx);
        } else {
          dx[i] = dy[i] * w * invstd[c];
        }
      }
    }
  }
  return { dx, dweight, dbias };
}

/**
 * Direct 2-D convolution, stride 1, no padding. x [N, Cin, H, W], w [O, Cin/groups, KH, KW],
 * b [O] or null. Output [N, O, H-KH+1, W-KW+1].
 */
export function conv2d(x: Num, xShape: readonly number[], w: Num, wShape: readonly number[], b: Num | null, groups: number): { y: Float64Array; shape: number[] } {
  const [N, Cin, H, W] = xShape;
  const [O, Ig, KH, KW] = wShape;
  if (Ig * groups !== Cin || O % groups !== 0) throw new Error('conv2d: bad shapes');
  const Og = O / groups;
  const OH = H - KH + 1;
  const OW = W - KW + 1;
  const y = new Float64Array(N * O * OH * OW);
  for (let n = 0; n < N; n++) {
    for (let o = 0; o < O; o++) {
      const g = Math.floor(o / Og);
      for (let oh = 0; oh < OH; oh++) {
        for (let ow = 0; ow < OW; ow++) {
          let acc = b ? b[o] : 0;
          for (let ig = 0; ig < Ig; ig++) {
            const ci = g * Ig + ig;
            for (let kh = 0; kh < KH; kh++) {
              for (let kw = 0; kw < KW; kw++) {
                acc += x[((n * Cin + ci) * H + oh + kh) * W + ow + kw] * w[((o * Ig + ig) * KH + kh) * KW + kw];
              }
            }
          }
          y[((n * O + o) * OH + oh) * OW + ow] = acc;
        }
      }
    }
  }
  return { y, shape: [N, O, OH, OW] };
}

/**
 * Direct 2-D transposed convolution, stride 1, no padding. x [N, I, H, W], w [I, O/groups, KH, KW],
 * b [O] or null. Input channel i of group g = i div (I/groups) feeds output channel g*(O/groups)+j
 * through w[i, j]. Output [N, O, H+KH-1, W+KW-1].
 */
export function convTranspose2d(x: Num, xShape: readonly number[], w: Num, wShape: readonly number[], b: Num | null, groups: number): { y: Float64Array; shape: number[] } {
  const [N, I, H, W] = xShape;
  const [I2, Og, KH, KW] = wShape;
  if (I2 !== I || I % groups !== 0) throw new Error('convTranspose2d: bad shapes');
  const Ig = I / groups;
  const O = Og * groups;
  const OH = H + KH - 1;
  const OW = W + KW - 1;
  const y = new Float64Array(N * O * OH * OW);
  for (let n = 0; n < N; n++) {
    for (let o = 0; o < O; o++) {
      const base = (n * O + o) * OH * OW;
      for (let k = 0; k < OH * OW; k++) y[base + k] = b ? b[o] : 0;
    }
    for (let i = 0; i < I; i++) {
      const g = Math.floor(i / Ig);
      for (let j = 0; j < Og; j++) {
        const o = g * Og + j;
        for (let h = 0; h < H; h++) {
          for (let ww = 0; ww < W; ww++) {
            const v = x[((n * I + i) * H + h) * W + ww];
            for (let kh = 0; kh < KH; kh++) {
              for (let kw = 0; kw < KW; kw++) {
                y[((n * O + o) * OH + h + kh) * OW + ww + kw] += v * w[((i * Og + j) * KH + kh) * KW + kw];
              }
            }
          }
        }
      }
    }
  }
  return { y, shape: [N, O, OH, OW] };
}

/** y[n, o] = sum_i x[n, i] * w[o, i] + b[o]. x [N, in], w [out, in]. */
export function linear(x: Num, N: number, inF: number, w: Num, outF: number, b: Num | null): Float64Array {
  const y = new Float64Array(N * outF);
  for (let n = 0; n < N; n++) {
    for (let o = 0; o < outF; o++) {
      let acc = b ? b[o] : 0;
      for (let i = 0; i < inF; i++) acc += x[n * inF + i] * w[o * inF + i];
      y[n * outF + o] = acc;
    }
  }
  return y;
}

/** max|got - ref| / max(1, max|ref|): the error measure of the fixtures' README. */
export function relErr(got: Num, ref: Num): number {
  if (got.length !== ref.length) throw new Error(`relErr: length ${got.length} vs ${ref.length}`);
  let maxDiff = 0;
  let maxRef = 0;
  for (let i = 0; i < ref.length; i++) {
    const diff = Math.abs(got[i] - ref[i]);
    // NaN anywhere must fail: a NaN difference becomes Infinity.
    maxDiff = Math.max(maxDiff, Number.isNaN(diff) ? Infinity : diff);
    maxRef = Math.max(maxRef, Math.abs(ref[i]));
  }
  return maxDiff / Math.max(1, maxRef);
}

/** Throws with a readable message when relErr(got, ref) > tol. */
export function assertClose(what: string, got: Num, ref: Num, tol: number): number {
  if (got.length !== ref.length) throw new Error(`${what}: length ${got.length}, expected ${ref.length}`);
  const e = relErr(got, ref);
  if (!(e <= tol)) {
    let worst = 0;
    let wi = 0;
    for (let i = 0; i < ref.length; i++) {
      const diff = Math.abs(got[i] - ref[i]);
      if (!(diff <= worst)) {
        worst = Number.isNaN(diff) ? Infinity : diff;
        wi = i;
      }
    }
    throw new Error(`${what}: relative error ${e.toExponential(3)} > ${tol.toExponential(2)} (worst at [${wi}]: got ${got[wi]}, expected ${ref[wi]})`);
  }
  return e;
}
