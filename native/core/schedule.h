// The two-pass schedules: a first pass that reduces (statistics; backward's sums) and a second
// that writes (normalize; dx), spread over threads as the plan says (plan.h). An op supplies its
// stages as named members of one struct; the schedule owns the threads, the walk and the order.
// Sums are formed per reduction chunk (blocks.h), each into its own slot, and folded in chunk
// order: every output has the same bits for any thread count and any path.
#pragma once

#include <algorithm>
#include <atomic>
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

// Items 0 .. count shared out as part_range does, each thread taking its own from the front and,
// once they are gone, another thread's from the back. Threads that run at the same speed take
// exactly their static shares, so each finds its share where it left it (its caches, from call to
// call); a thread whose core is shared (V8's collector, another process) gives its last items to
// the others instead of making them wait at the end. Counts below 2^32.
class ClaimRanges {
 public:
  ClaimRanges(int64_t count, int threads)
      : n_(threads), heap_(threads > kLocal ? new Range[size_t(threads)] : nullptr), r_(heap_ ? heap_.get() : local_) {
    reset(count);
  }
  ClaimRanges(const ClaimRanges&) = delete;
  ClaimRanges& operator=(const ClaimRanges&) = delete;
  // Shares out `count` items again; no thread may be taking meanwhile.
  void reset(int64_t count) {
    for (int t = 0; t < n_; ++t) {
      int64_t lo, hi;
      part_range(count, t, n_, &lo, &hi);
      r_[size_t(t)].v.store(pack(lo, hi), std::memory_order_relaxed);
    }
  }
  // The next of thread t's own items, or -1 when they are gone.
  int64_t take_own(int t) { return take_end(t, false); }
  // The next item for thread t, or -1 when none is left. last_first: thread t takes its own items
  // last first (and another thread's first first).
  int64_t take(int t, bool last_first = false) {
    if (const int64_t i = take_end(t, last_first); i >= 0) return i;
    for (int d = 1; d < n_; ++d) {
      if (const int64_t i = take_end((t + d) % n_, !last_first); i >= 0) return i;
    }
    return -1;
  }

 private:
  struct alignas(64) Range {
    std::atomic<uint64_t> v;  // front in the low half, back (one past the last) in the high half
  };
  static uint64_t pack(int64_t f, int64_t b) { return uint64_t(uint32_t(f)) | uint64_t(b) << 32; }
  // Thread t's first item (back = false) or last one, or -1 when its range is empty.
  int64_t take_end(int t, bool back) {
    std::atomic<uint64_t>& a = r_[size_t(t)].v;
    uint64_t v = a.load(std::memory_order_relaxed);
    for (;;) {
      const int64_t f = int64_t(uint32_t(v)), b = int64_t(v >> 32);
      if (f >= b) return -1;
      if (a.compare_exchange_weak(v, back ? pack(f, b - 1) : pack(f + 1, b), std::memory_order_relaxed)) {
        return back ? b - 1 : f;
      }
    }
  }
  static constexpr int kLocal = 4;  // threads whose ranges need no allocation (a call's own cost)
  int n_;
  Range local_[kLocal];
  std::unique_ptr<Range[]> heap_;
  Range* r_;
};

// Items of `item_bytes` each to claim at a time: about kClaimBytes (a claim costs an atomic operation).
constexpr int64_t kClaimBytes = int64_t(64) << 10;
inline int64_t claim_block(int64_t item_bytes) { return std::max<int64_t>(1, kClaimBytes / std::max<int64_t>(1, item_bytes)); }

// Items 0 .. items in blocks of `block`, the blocks claimed from `claims` by thread t: f(item) for
// each item of each block it gets, in order.
template <class F>
void for_claimed_items(ClaimRanges& claims, int t, int64_t items, int64_t block, F&& f) {
  for (int64_t u; (u = claims.take(t)) >= 0;) {
    const int64_t end = std::min(items, (u + 1) * block);
    for (int64_t it = u * block; it < end; ++it) f(it);
  }
}

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
    // Groups of G channels (G = 1: a channel's N runs, C * S apart; G > 1, short runs: the group
    // kernels walk the group's G runs of each sample, contiguous, in memory order, so the hardware
    // prefetcher sees one stream instead of N islands per channel), claimed one at a time, no
    // barrier: a thread that shares its core (V8's collector, another process) takes fewer. A
    // thread claims its next group before it writes this one, so that it can prefetch it or run
    // its first pass along. Which thread takes a group changes no sum (blocks.h).
    const Chunking ch = chunking(s);
    const int64_t K = ch.count, G0 = pt.group, groups = (s.c + G0 - 1) / G0;
    ClaimRanges claims(groups, pt.nt);
#pragma omp parallel num_threads(pt.nt) if (pt.nt > 1)
    {
      const int t = omp_get_thread_num();
      auto claim = [&] {
        const int64_t g = claims.take(t);
        return g < 0 ? groups : g;
      };
      bool have_first = false;  // the previous second pass ran this group's first pass
      bool prefetched = false;  // the previous second pass prefetched this group
      for (int64_t g = claim(); g < groups;) {
        const int64_t c0 = g * G0, G = std::min(G0, s.c - c0);
        if (!have_first) {
          for (int64_t c = c0; c < c0 + G; ++c) st.start(c);
          for (int64_t k = 0; k < K; ++k) {
            chunk_block(s, ch, c0, k, [&](int64_t off, int64_t rows, int64_t n) {
              if (G == 1) {
                st.reduce(c0, k * s.c + c0, off, rows, n);
              } else {
                // The group reductions read from L2 when the previous group's second pass
                // prefetched this one; else they bring it there first.
                st.reduce_group(c0, G, off, rows, k * s.c + c0, k == 0 && !prefetched);
              }
            });
          }
        }
        for (int64_t c = c0; c < c0 + G; ++c) st.finish(c);
        const int64_t gn = claim();
        // This thread's next group, `to` values on; 0 for none, or one taken from another thread's
        // back (before this one): its first pass runs on its own.
        const int64_t cn = gn * G0;
        const size_t to = gn < groups && gn > g ? size_t((cn - c0) * s.s) : 0;
        have_first = pt.pipeline && to != 0;  // pt.pipeline: G = 1
        if (have_first) {
          st.start(cn);
          for (int64_t k = 0; k < K; ++k) {
            chunk_block(s, ch, c0, k, [&](int64_t off, int64_t rows, int64_t n) {
              st.write_and_reduce(c0, off, rows, n, to, cn, k * s.c + cn);
            });
          }
          g = gn;
          continue;
        }
        // While writing this group, prefetch the next one: its first pass then reads from L2, and
        // this thread's reads from memory overlap its writes.
        const size_t next = pt.prefetch ? to : 0;
        auto blk = [&](int64_t off, int64_t rows, int64_t n) { st.write(c0, off, rows, n, next); };
        if (pt.reverse) {  // whole channels only (plan.h)
          for_each_block_reversed(s, c0, 0, 1, blk);
        } else if (G == 1) {
          for_each_block(s, c0, 0, 1, blk);
        } else {
          for (int64_t b = 0; b < s.n; ++b) st.write_group(c0, G, (b * s.c + c0) * s.s, next);
        }
        prefetched = next != 0;
        g = gn;
      }
      store_fence();
    }
    return;
  }
  // Waves of `wave` channels, each split into P parts of whole chunks (plan.h: kClaimsPerThread
  // per thread). Every piece of a wave computes its chunks' sums, one thread turns them into
  // coefficients, and the same split gives every thread back the pieces it just read. Pieces are
  // claimed (ClaimRanges), so that a slowed thread gives some of its share away.
  const int64_t P = pt.parts, W = pt.wave;
  const Chunking ch = chunking(s);
  const int64_t K = ch.count;
  auto wave_items = [&](int64_t c0) { return std::min(W, s.c - c0) * P; };
  ClaimRanges reads(wave_items(0), pt.nt), writes(wave_items(0), pt.nt);
  for (int64_t c = 0; c < s.c; ++c) st.start(c);  // few channels here (fewer than 8 per thread)
#pragma omp parallel num_threads(pt.nt)
  {
    const int t = omp_get_thread_num();
    // A team smaller than planned (a call inside another parallel region) leaves shares without
    // their thread: then every pass takes any piece.
    const bool own_only = omp_get_num_threads() == pt.nt;
    bool have_first = false;  // as in the fused walk
    for (int64_t c0 = 0; c0 < s.c; c0 += W) {
      if (!have_first) {
        for (int64_t it; (it = reads.take(t)) >= 0;) {
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
      {
        for (int64_t c = c0; c < std::min(s.c, c0 + W); ++c) st.finish(c);
        // Every thread is past the barrier: no claim is under way (the writes of the wave
        // before ended before it).
        if (c0 + W < s.c) reads.reset(wave_items(c0 + W));
        writes.reset(wave_items(c0));
      }
      // The next wave's item `it` is this one's, W channels on, when that wave is a full one.
      // Each thread takes its own share only: the next wave's writes find in its L2 what its
      // pieces of this pass read (a piece taken from another thread would be written from that
      // thread's cache, wave after wave).
      have_first = pt.pipeline && c0 + 2 * W <= s.c;
      if (have_first) {
        for (int64_t it; (it = own_only ? writes.take_own(t) : writes.take(t)) >= 0;) {
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
      // pt.reverse: this thread's pieces last first too (the last read is what L2 still holds).
      for (int64_t it; (it = writes.take(t, pt.reverse)) >= 0;) {
        const int64_t c = c0 + it / P;
        // The same piece of channel c + W is this thread's in the next wave (unless another takes
        // it): prefetch it.
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
  ClaimRanges reads(ch.count, nt), writes(ch.count, nt);
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    const int t = omp_get_thread_num(), T = omp_get_num_threads();
    // Each chunk of rows into its own [C] slots (chunk-major, as the rows kernels write them);
    // thread t takes its share of the chunks (ClaimRanges).
    for (int64_t k; (k = reads.take(t)) >= 0;) {
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
        // Every thread writes its share of the chunks, the one it read, the last read first: the
        // end of what it read is still in the caches when the tensor is larger than them, so that
        // much is not read from memory twice.
        for (int64_t k; (k = writes.take(t, true)) >= 0;) {
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
