// The one home of how ranks' contributions combine. Every rank receives every rank's values (an
// all-gather) and combines them here in rank order, so every rank computes the same bits whatever
// order the transport delivered them in.
//
// Statistics: each rank sends (count, mean[C], var[C]), its slice's batch statistics as the local
// BatchNorm computes them (the core's chunks, native/core/sync_ops.h), and they are merged with
// Chan, Golub & LeVeque's pairwise formula on M2 = var * count = Σ(x - mean)². Unlike sums of x and
// x², it does not cancel when |mean| >> std (mean 1e4, std 1e-2 in float64 loses every digit of the
// variance with sums). When one rank holds every sample, its statistics pass through untouched: a
// group with one non-empty rank normalizes with the local BatchNorm's bits.

/** One rank's statistics as sent: [count, mean_0..mean_{C-1}, var_0..var_{C-1}] (2C + 1 values). */
export function packMoments(count: number, mean: Float64Array, variance: Float64Array): Float64Array {
  const C = mean.length;
  const out = new Float64Array(2 * C + 1);
  out[0] = count;
  out.set(mean, 1);
  out.set(variance, 1 + C);
  return out;
}

export interface GlobalMoments {
  /** Values per channel over every rank. */
  count: number;
  mean: Float64Array;
  /** Biased variance: M2 / count (0 where count is 0). */
  variance: Float64Array;
  /** Unbiased: M2 / (count - 1) (NaN where count < 2). */
  unbiasedVariance: Float64Array;
}

/** Merges the ranks' packed moments (index = rank) in rank order. Ranks with count 0 add nothing. */
export function mergeMoments(perRank: readonly Float64Array[], C: number): GlobalMoments {
  let n = 0;
  let only: Float64Array | null = null; // the one rank with samples so far
  const mean = new Float64Array(C);
  const m2 = new Float64Array(C);
  for (const r of perRank) {
    const nb = r[0];
    if (nb === 0) continue;
    const total = n + nb;
    only = n === 0 ? r : null;
    for (let c = 0; c < C; ++c) {
      const mb = r[1 + c];
      const m2b = r[1 + C + c] * nb;
      const delta = mb - mean[c];
      // Chan et al.: mean = ma + δ·nb/n, M2 = M2a + M2b + δ²·na·nb/n
      mean[c] = n === 0 ? mb : mean[c] + delta * (nb / total);
      m2[c] = n === 0 ? m2b : m2[c] + m2b + delta * delta * ((n * nb) / total);
    }
    n = total;
  }
  const variance = new Float64Array(C);
  const unbiasedVariance = new Float64Array(C);
  for (let c = 0; c < C; ++c) {
    variance[c] = only ? only[1 + C + c] : n > 0 ? m2[c] / n : 0;
    // var * m / (m - 1): the core's running-variance update (coefficients.h), in its order
    unbiasedVariance[c] = n > 1 ? m2[c] / (n - 1) : NaN;
  }
  return { count: n, mean, variance, unbiasedVariance };
}

/** Σ over ranks of equally long vectors, added in rank order (element i: ((r0 + r1) + r2) + ...). */
export function sumInRankOrder(perRank: readonly Float64Array[], length: number): Float64Array {
  const out = new Float64Array(length);
  for (const r of perRank) {
    for (let i = 0; i < length; ++i) out[i] += r[i];
  }
  return out;
}
