// The two-pass schedules: a first pass that reduces (statistics; backward's sums) and a second
// that writes (normalize; dx), spread over threads as the plan says (plan.h). An op supplies its
// stages as named members of one struct; the schedule owns the threads, the walk and the order.
// Sums are formed per reduction chunk (blocks.h), each into its own slot, and folded in chunk
// order: every output has the same bits for any thread count and any path.
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <omp.h>
#include <vector>

#include "batchnorm.h"
#include "blocks.h"
#include "memory.h"
#include "plan.h"

namespace bn {

// The reduction chunks per channel of a (canonical) shape: rows chunks or NCHW chunks.
inline int64_t reduction_chunks(const Shape& s) {
  return s.rows_layout() ? row_chunking(s).count : chunking(s).count;
}

// Per-chunk sums of the first pass: two of them (sum, sumsq; sum_dy, sum_dyxc), K chunks per
// channel; chunk k of channel c in slot k * C + c (a chunk of all channels is contiguous, as the
// rows and group kernels write it).
// zeroed = false: the slots start undefined and each chunk's are zeroed by the thread that reduces
// it, just before (the rows schedule): no serial pass over all slots before the parallel region.
// The slots live in a buffer of the calling thread kept from call to call (up to kKeepSlotBytes):
// a fresh allocation of them faulted in new pages on every call.
constexpr size_t kKeepSlotBytes = size_t(2) << 20;
struct PartialSums {
  int64_t channels, chunks;
  double* first;
  double* second;
  PartialSums(int64_t C, int64_t K, bool zeroed = true) : channels(C), chunks(K) {
    const size_t n = size_t(C * K);
    first = slot_storage(2 * n);
    second = first + n;
    if (zeroed) std::fill_n(first, 2 * n, 0.0);
  }
  PartialSums(const PartialSums&) = delete;
  PartialSums& operator=(const PartialSums&) = delete;
  ~PartialSums() {
    if (own_) delete[] first;
    else kept().busy = false;
  }

 private:
  struct Kept {
    std::unique_ptr<double[]> buf;
    size_t cap = 0;
    bool busy = false;  // held by a PartialSums of this thread (never two at once, but be safe)
  };
  static Kept& kept() {
    static thread_local Kept k;
    return k;
  }
  bool own_ = false;
  double* slot_storage(size_t n) {
    Kept& k = kept();
    if (k.busy || n * sizeof(double) > kKeepSlotBytes) {
      own_ = true;
      return new double[n];
    }
    if (k.cap < n) {
      k.buf.reset();
      k.cap = 0;
      k.buf.reset(new double[n]);
      k.cap = n;
    }
    k.busy = true;
    return k.buf.get();
  }

 public:
  // Channel c's totals: a left fold in chunk order (the one order, whatever the threads).
  void fold(int64_t c, double* s0, double* s1) const {
    if (folded_) {
      *s0 = first[c];
      *s1 = second[c];
      return;
    }
    double a = 0.0, b = 0.0;
    for (int64_t k = 0; k < chunks; ++k) {
      a += first[size_t(k * channels + c)];
      b += second[size_t(k * channels + c)];
    }
    *s0 = a;
    *s1 = b;
  }
  // The same fold for channels [c0, c1) at once, into chunk 0's slots, chunk by chunk along the
  // channels (contiguous; fold(c) walks one channel's slots C apart, which on many channels miss
  // the cache at every step). Same additions in the same order as fold: the same bits. Every
  // range folded, mark_folded() lets fold(c) read the totals.
  void fold_range(int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      first[c] = 0.0 + first[c];
      second[c] = 0.0 + second[c];
    }
    for (int64_t k = 1; k < chunks; ++k) {
      const double* f = first + k * channels;
      const double* s = second + k * channels;
      for (int64_t c = c0; c < c1; ++c) {
        first[c] += f[c];
        second[c] += s[c];
      }
    }
  }
  void mark_folded() { folded_ = true; }

 private:
  bool folded_ = false;
};

// The stages of a channel-layout (NCHW) op, called by run_two_pass:
//   start(c)                           before channel c's first pass (e.g. its shift)
//   reduce(c, slot, off, rows, n)      first pass over one chunk of channel c: `rows` runs of n
//                                      values at off (C * S apart), into partial sums `slot`
//                                      (plan.group_sums: through the group kernels, one run wide)
//   reduce_group(c0, G, off, rows, slot, cold)
//                                      first pass over one chunk (`rows` samples from off) of
//                                      channels c0..c0+G, into slots slot..slot+G; cold: the
//                                      group is not in cache yet
//   finish(c)                          channel c's partial sums into its coefficients
//   write(c, off, rows, n, next)       second pass over the same values; `next`: how far ahead (in
//                                      values) this thread's next first pass reads, to prefetch
//                                      (0: nothing)
//   write_group(c0, G, off, next)      second pass over one sample's G contiguous runs at off
//   write_and_reduce(c, off, rows, n, next, cn, slot)
//                                      write(c, ...) fused with reduce(cn, slot, ...) over the
//                                      same chunk `next` values on (plan.pipeline only)
template <class Stages>
void run_two_pass(const Shape& s, const Plan& pt, Stages& st) {
  if (pt.fused()) {
    // Each thread owns a contiguous range of channels, walked in groups of G: no barrier at all.
    // G = 1: a channel's N runs, C * S apart. G > 1 (short runs): the group kernels walk the
    // group's G runs of each sample (contiguous) in memory order, so the hardware prefetcher sees
    // one stream instead of N islands per channel.
    const Chunking ch = chunking(s);
    const int64_t K = ch.count;
#pragma omp parallel num_threads(pt.nt) if (pt.nt > 1)
    {
      const int64_t t = omp_get_thread_num(), T = omp_get_num_threads();
      const int64_t cb = s.c * t / T, ce = s.c * (t + 1) / T;
      bool have_first = false;  // the previous second pass ran this group's first pass
      for (int64_t c0 = cb; c0 < ce; c0 += pt.group) {
        const int64_t G = std::min(pt.group, ce - c0);
        if (!have_first) {
          for (int64_t c = c0; c < c0 + G; ++c) st.start(c);
          for (int64_t k = 0; k < K; ++k) {
            chunk_block(s, ch, c0, k, [&](int64_t off, int64_t rows, int64_t n) {
              if (G == 1) {
                st.reduce(c0, k * s.c + c0, off, rows, n);
              } else {
                // The group reductions read from L2: the previous group's second pass prefetched
                // this one, except for the thread's first group.
                st.reduce_group(c0, G, off, rows, k * s.c + c0, k == 0 && (c0 == cb || !pt.prefetch));
              }
            });
          }
        }
        for (int64_t c = c0; c < c0 + G; ++c) st.finish(c);
        have_first = pt.pipeline && c0 + 1 < ce;  // pt.pipeline: G = 1
        if (have_first) {
          st.start(c0 + 1);
          for (int64_t k = 0; k < K; ++k) {
            chunk_block(s, ch, c0, k, [&](int64_t off, int64_t rows, int64_t n) {
              st.write_and_reduce(c0, off, rows, n, size_t(s.s), c0 + 1, k * s.c + c0 + 1);
            });
          }
          continue;
        }
        // While writing this group, prefetch the next one (G channels on): its first pass then
        // reads from L2, and this thread's reads from memory overlap its writes.
        const size_t next = pt.prefetch && c0 + G < ce ? size_t(G * s.s) : 0;
        auto blk = [&](int64_t off, int64_t rows, int64_t n) { st.write(c0, off, rows, n, next); };
        if (G == 1 && pt.reverse) {
          for_each_block_reversed(s, c0, 0, 1, blk);
        } else if (G == 1) {
          for_each_block(s, c0, 0, 1, blk);
        } else {
          for (int64_t b = 0; b < s.n; ++b) st.write_group(c0, G, (b * s.c + c0) * s.s, next);
        }
      }
      store_fence();
    }
    return;
  }
  // Waves of `wave` channels, each split into P parts of whole chunks. Every piece of a wave
  // computes its chunks' sums, one thread turns them into coefficients, and the same split gives
  // every thread back the pieces it just read.
  const int64_t P = pt.parts, W = pt.wave;
  const Chunking ch = chunking(s);
  const int64_t K = ch.count;
  for (int64_t c = 0; c < s.c; ++c) st.start(c);  // few channels here (fewer than 8 per thread)
#pragma omp parallel num_threads(pt.nt)
  {
    const int64_t t = omp_get_thread_num(), T = omp_get_num_threads();
    bool have_first = false;  // as in the fused walk
    for (int64_t c0 = 0; c0 < s.c; c0 += W) {
      const int64_t items = std::min(W, s.c - c0) * P;
      const int64_t lo = items * t / T, hi = items * (t + 1) / T;
      if (!have_first) {
        for (int64_t it = lo; it < hi; ++it) {
          const int64_t c = c0 + it / P;
          int64_t k0, k1;
          part_range(K, it % P, P, &k0, &k1);
          for (int64_t k = k0; k < k1; ++k) {
            chunk_block(s, ch, c, k, [&](int64_t off, int64_t rows, int64_t n) { st.reduce(c, k * s.c + c, off, rows, n); });
          }
        }
      }
#pragma omp barrier
#pragma omp single
      for (int64_t c = c0; c < std::min(s.c, c0 + W); ++c) st.finish(c);
      // The next wave's item `it` is this one's, W channels on, when that wave is a full one.
      have_first = pt.pipeline && c0 + 2 * W <= s.c;
      if (have_first) {
        for (int64_t it = lo; it < hi; ++it) {
          const int64_t c = c0 + it / P;
          int64_t k0, k1;
          part_range(K, it % P, P, &k0, &k1);
          for (int64_t k = k0; k < k1; ++k) {
            chunk_block(s, ch, c, k, [&](int64_t off, int64_t rows, int64_t n) {
              st.write_and_reduce(c, off, rows, n, size_t(W * s.s), c + W, k * s.c + c + W);
            });
          }
        }
        continue;
      }
      for (int64_t it = lo; it < hi; ++it) {
        const int64_t c = c0 + it / P;
        // The same piece of channel c + W is this thread's in the next wave: prefetch it.
        const size_t next = pt.prefetch && c + W < s.c ? size_t(W * s.s) : 0;
        auto blk = [&](int64_t off, int64_t rows, int64_t n) { st.write(c, off, rows, n, next); };
        if (pt.reverse) {
          for_each_block_reversed(s, c, it % P, P, blk);
        } else {
          for_each_block(s, c, it % P, P, blk);
        }
      }
    }
    store_fence();
  }
}

// The stages of a rows-layout op ([N, C], channels-last), called by run_rows_two_pass:
//   sums                               a PartialSums member with reduction_chunks(s) chunks (zeroed
//                                      or not: each chunk's slots are zeroed here before its reduction)
//   reduce_rows(lo, rows, s0, s1)      first pass over rows [lo, lo + rows) into [C] sums s0, s1
//   finish(c)                          channel c's partial sums into its coefficients
//   writes()                           whether there is a second pass (backward without dx: none)
//   write_rows(lo, rows)               second pass over rows [lo, lo + rows)
template <class Stages>
void run_rows_two_pass(const Shape& s, const Plan& pt, Stages& st) {
  const int64_t C = s.c, rows = s.rows(), P = pt.parts;
  const Chunking ch = row_chunking(s);
  const int nt = pt.nt;
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    const int64_t t = omp_get_thread_num(), T = omp_get_num_threads();
    // Each chunk of rows into its own [C] slots (chunk-major, as the rows kernels write them);
    // thread t takes the chunks [k0, k1).
    int64_t k0, k1;
    part_range(ch.count, t, T, &k0, &k1);
    for (int64_t k = k0; k < k1; ++k) {
      const int64_t lo = k * ch.runs;
      std::fill_n(&st.sums.first[size_t(k * C)], C, 0.0);
      std::fill_n(&st.sums.second[size_t(k * C)], C, 0.0);
      st.reduce_rows(lo, std::min(ch.runs, rows - lo), &st.sums.first[size_t(k * C)], &st.sums.second[size_t(k * C)]);
    }
    // Channels are independent from here on: shared out too (with many channels, finishing them
    // on one thread costs more than the passes), in blocks folded at once (fold_range).
    constexpr int64_t kFoldBlock = 256;
#pragma omp single
    st.sums.mark_folded();  // read only after the barrier that ends this construct
#pragma omp for schedule(static)
    for (int64_t c0 = 0; c0 < C; c0 += kFoldBlock) {
      const int64_t c1 = std::min(C, c0 + kFoldBlock);
      st.sums.fold_range(c0, c1);
      for (int64_t c = c0; c < c1; ++c) st.finish(c);
    }
    if (st.writes()) {
      if (ch.count >= T) {
        // Every thread writes the chunks it read, the last read first: the end of what it read is
        // still in the caches when the tensor is larger than them, so that much is not read from
        // memory twice.
        for (int64_t k = k1 - 1; k >= k0; --k) {
          const int64_t lo = k * ch.runs;
          st.write_rows(lo, std::min(ch.runs, rows - lo));
        }
      } else {
#pragma omp for schedule(static)
        for (int64_t p = 0; p < P; ++p) {
          int64_t lo, hi;
          part_range(rows, p, P, &lo, &hi);
          st.write_rows(lo, hi - lo);
        }
      }
      store_fence();  // after streaming stores (plan.stream)
    }
  }
}

}  // namespace bn
