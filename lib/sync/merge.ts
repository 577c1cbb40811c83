// The one home of how ranks' contributions combine. Every rank receives every rank's values (an
// all-gather) and combines them here in rank order, so every rank computes the same bits whatever
// order the transport delivered them in.
//
// Statistics: each rank sends (count, mean[C], M2[C]) with M2 = Σ(x - mean)², and they are merged
// with Chan, Golub & LeVeque's pairwise formula. Unlike sums of x and x², it does not cancel when
// |mean| >> std (mean 1e4, std 1e-2 in float64 loses every digit of the variance with sums).

/** One rank's statistics as sent: [count, mean_0..mean_{C-1}, m2_0..m2_{C-1}] (2C + 1 values). */
export function packMoments(count: number, mean: Float64Array, m2: Float64Array): Float64Array {
  const C = mean.length;
  const out = new Float64Array(2 * C + 1);
  out[0] = count;
  out.set(mean, 1);
  out.set(m2, 1 + C);
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
  const mean = new Float64Array(C);
  const m2 = new Float64Array(C);
  for (const r of perRank) {
    const nb = r[0];
    if (nb === 0) continue;
    const total = n + nb;
    for (let c = 0; c < C; ++c) {
      const mb = r[1 + c];
      const delta = mb - mean[c];
      // Chan et al.: mean = ma + δ·nb/n, M2 = M2a + M2b + δ²·na·nb/n
      mean[c] = n === 0 ? mb : mean[c] + delta * (nb / total);
      m2[c] = n === 0 ? r[1 + C + c] : m2[c] + r[1 + C + c] + delta * delta * ((n * nb) / total);
    }
    n = total;
  }
  const variance = new Float64Array(C);
  const unbiasedVariance = new Float64Array(C);
  for (let c = 0; c < C; ++c) {
    variance[c] = n > 0 ? m2[c] / n : 0;
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
