// Drivers: argument checks, work partitioning, OpenMP regions, per-channel coefficients. The
// elementwise and reduction loops are the active ISA's kernels (kernels.h).
//
// Partitioning (see partition() below). A piece is part p of the m = N*S values of channel c,
// walked as blocks of runs. "Fused": a thread owns whole channels (or groups of short-map
// channels) and runs the statistics and the normalize pass back to back, while the piece is still
// in its L2. Otherwise (fewer channels than threads, an uneven split, or a channel whose split
// fits L2 when the whole does not) channels go in waves: every piece of the wave computes partial
// sums, one thread turns them into coefficients, and the same static schedule gives every thread
// back the pieces it just read. Either way, forward training's normalize pass also reads and sums
// the thread's next piece (pt.pipeline: after its first piece, a thread's passes read and write
// memory at once), and backward's dx pass prefetches the next piece's x. Partial sums share one
// shift per channel, so they simply add: no Chan merge, and the result depends only on the number
// of parts, not on the threads.
//
// For [N, C] and channels-last the channel is the fastest index: the rows kernels vectorize over
// channels and the parts are ranges of rows.
#include "batchnorm.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <new>
#include <omp.h>
#include <unistd.h>
#if defined(__linux__)
#include <sys/mman.h>
#endif
#include <vector>

#include "exact_stats.h"
#include "invstd.h"
#include "kernels.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>  // _mm_sfence: SSE, part of the x86-64 baseline
#endif

namespace bn {
namespace {

constexpr int64_t kSerialBelow = 1 << 15;   // elements; below this a parallel region costs more
constexpr int64_t kMinPartElems = 1 << 13;  // smallest piece of a channel worth a thread

template <typename T>
const KernelTable<T>& table();
template <>
const KernelTable<float>& table<float>() { return active_kernels().f32; }
template <>
const KernelTable<double>& table<double>() { return active_kernels().f64; }

int64_t total_elems(const Shape& s) { return s.n * s.c * s.s; }

int threads_for(const Shape& s, int requested) {
  if (total_elems(s) < kSerialBelow) return 1;
  return std::max(1, requested);
}

// Outputs at least this large are written with non-temporal stores: they cannot stay in cache
// anyway, and streaming skips the read-for-ownership of every destination line.
// BATCHNORM_STREAM_MIN_BYTES overrides it (0: always stream; a huge value: never).
int64_t stream_min_bytes() {
  static const int64_t v = [] {
    const char* e = std::getenv("BATCHNORM_STREAM_MIN_BYTES");
    if (e != nullptr) {
      char* end = nullptr;
      const long long x = std::strtoll(e, &end, 10);
      if (end != e && x >= 0) return int64_t(x);
    }
    return int64_t(8) << 20;
  }();
  return v;
}

// Non-temporal stores are weakly ordered: a thread that streamed output fences once, after its
// last kernel call and before the parallel region ends (the kernels themselves do not fence,
// see kernels_body.inl). arm64's "streaming" stores are plain stores: nothing to do.
void store_fence() {
#if defined(__x86_64__) || defined(_M_X64)
  _mm_sfence();
#endif
}

// Whether a large output is worth streaming. Streaming stores to pages not yet mapped (a fresh
// allocation) take the page faults at a worse time than plain stores: measured here, 12 MiB of
// new pages written by 2 threads, 3.7 ms streaming against 2.9 ms plain. So stream only when the
// page in the middle of the output is resident (mincore); elsewhere than Linux, assume it is.
// The check runs only for outputs that would stream, so small calls make no system call.
bool stream_output(const void* y, int64_t bytes) {
  if (bytes < stream_min_bytes()) return false;
#if defined(__linux__)
  static const uintptr_t page = uintptr_t(sysconf(_SC_PAGESIZE));
  const uintptr_t mid = (reinterpret_cast<uintptr_t>(y) + uintptr_t(bytes) / 2) & ~(page - 1);
  unsigned char resident = 0;
  if (mincore(reinterpret_cast<void*>(mid), page, &resident) != 0) return false;
  return (resident & 1) != 0;
#else
  (void)y;
  return true;
#endif
}

// How a two-pass operation (statistics then normalize; reductions then dx) is spread over threads.
struct Partition {
  int nt = 1;
  bool fused = true;   // whole channels per thread, both passes back to back, no barrier
  int64_t parts = 1;   // otherwise: each channel split into `parts` pieces...
  int64_t wave = 1;    // ...and channels processed `wave` at a time, so the data of a wave is
                       // still in cache when the second pass reads it again
  int64_t group = 1;   // fused, short runs: channels that make one piece (see kShortRunBytes)
  bool stream = false;
  bool prefetch = false;  // the second pass prefetches the first pass's next piece
  bool reverse = false;   // the piece does not stay in L2: second pass last block first
  bool pipeline = false;  // the second pass over a piece also runs the first pass of the next
};

// Runs shorter than this go in groups of channels (a channel's N runs of a 7x7 map are 196-byte
// islands C*S apart: hopeless for the hardware prefetcher). A group is brought into L2 in memory
// order, reduced there channel by channel, and written in memory order.
constexpr int64_t kShortRunBytes = 4096;
// Runs shorter than this are never streamed by the run kernels (see partition()).
constexpr int64_t kStreamRunBytes = 512;
// Data of one group (all the tensors its first pass reads), sized to stay in L2 between the two
// passes (and capped at a quarter of L2, see partition()).
constexpr int64_t kGroupBytes = int64_t(512) << 10;

// This CPU's L2 per core, from the C library (cpuid on x86); 1 MiB when it does not say. Clamped:
// a wrong answer must not make the pieces absurd.
int64_t l2_bytes() {
  static const int64_t v = [] {
    const long l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
    const int64_t b = l2 > 0 ? int64_t(l2) : int64_t(1) << 20;
    return std::min<int64_t>(std::max<int64_t>(b, int64_t(256) << 10), int64_t(4) << 20);
  }();
  return v;
}

// What a thread may keep in its L2 between the two passes: seven eighths of it, leaving room for
// the output stream and stray lines.
int64_t l2_budget() { return l2_bytes() / 8 * 7; }


// `arrays`: how many tensors the first pass reads (x; x and dy for backward): the data a thread
// must keep in cache between the two passes is that many times its share of a channel.
//
// Preference, by what a thread holds between its two passes (its "piece"): whole channels (or
// groups of short ones) whose piece fits twice in L2, so the second pass can prefetch the next
// piece while it writes; else channels split over the threads, for the same; else whichever piece
// fits in L2 at all, without prefetching; else whole channels (memory is read twice anyway).
// Measured here (2 threads, 2 MiB L2): 32x64x112x112 forward training 0.63 -> 0.69 of a copy with
// split channels and prefetch instead of whole 1.6 MB channels; backward 0.52 -> 0.67 with split
// 1.6 MB pieces instead of whole 3.2 MB ones.
Partition partition(const Shape& s, int requested, size_t elem_bytes, int arrays, bool stream_out) {
  Partition pt;
  pt.nt = threads_for(s, requested);
  // Runs written one by one (whole channels, not a group's span) stream their whole lines; the
  // partial lines at both ends of a run get plain masked stores. Down to runs of kStreamRunBytes
  // that still pays: 2 threads, 256x256x28x28 (runs of 3136 bytes) training 0.37 -> 0.59 of a
  // copy and backward 0.48 -> 0.70, 256x1024x14x14 (784 bytes) backward 0.40 -> 0.50.
  pt.stream = stream_out && s.s * int64_t(elem_bytes) >= kStreamRunBytes;
  const int64_t nt = pt.nt;
  const int64_t m = s.n * s.s;
  const int64_t chan_bytes = m * int64_t(elem_bytes);
  const int64_t whole = arrays * chan_bytes, split = whole / nt, l2 = l2_bytes(), budget = l2_budget();
  const bool can_split = nt > 1 && m / nt >= kMinPartElems;
  const bool even = s.c % nt == 0 || s.c >= 8 * nt;  // whole channels share out well
  bool fused;
  if (!can_split) {
    fused = true;
  } else if (!even) {
    fused = false;
  } else if (2 * whole <= l2) {
    fused = true;
  } else if (2 * split <= l2) {
    fused = false;
  } else {
    fused = whole <= budget || split > budget;
  }
  int64_t piece = whole;
  if (fused) {
    if (s.s * int64_t(elem_bytes) < kShortRunBytes) {
      // At most a quarter of L2 per group: it and the next one (prefetched) stay there.
      const int64_t group_bytes = std::min<int64_t>(kGroupBytes, l2 / 4);
      pt.group = std::max<int64_t>(1, std::min<int64_t>(group_bytes / whole, s.c / nt));
      piece *= pt.group;
    }
  } else {
    pt.fused = false;
    pt.parts = nt;
    pt.wave = std::max<int64_t>(1, std::min<int64_t>(s.c, nt * (l2 / 2) / whole));
    piece = split * pt.wave;
  }
  // The second pass prefetches the next piece while it writes (see two_pass) when both fit in L2.
  pt.prefetch = 2 * piece <= l2;
  // Backward's piece too large for L2 (x and dy of a large channel) is written last block first,
  // starting with what is still in L2: 32x64x112x112 on 1 thread, 0.59 -> 0.63 of a copy. For
  // training it measured no better.
  pt.reverse = arrays == 2 && piece > budget;
  // Forward training, long runs: the normalize pass over a piece reads the next one and sums it
  // as it goes, so every pass after the first reads and writes memory at once, like a copy (2
  // threads, interleaved runs: 32x256x56x56 0.80 -> 0.86 of a copy, 32x64x112x112 0.77 -> 0.81,
  // 64x3x224x224 0.58 -> 0.63, where a piece never fits and x is read twice anyway). Not when one
  // piece fits L2 but two do not: the loads of the next piece would evict the part of this one
  // still to be read (32x64x112x112 in whole channels, pipelined: 0.62, against 0.81 in waves).
  // Backward stays in two passes: fused, it measured 0.80 -> 0.65 on 32x256x56x56 with the
  // reductions' prefetch, and 0.78 -> 0.80 (within noise) with both next streams requested 1 KiB
  // ahead; its dx pass prefetches the next x instead. Short runs neither: their statistics read the group from L2 channel by channel, which a fused walk in memory order
  // cannot (fused: 32x2048x7x7 0.56, 32x1024x14x14 0.66; channel by channel: 0.64, 0.71).
  pt.pipeline = arrays == 1 && pt.group == 1 && (pt.prefetch || piece > budget);
  return pt;
}

// Part `part` (of P) of channel c, as blocks of runs C * S apart: a partial first run (`head`
// values from lo), `full` whole runs, a partial last run (`tail` values).
struct PartBlocks {
  int64_t lo, head, full, tail;
  PartBlocks(const Shape& s, int64_t part, int64_t P) {
    const int64_t m = s.n * s.s;
    lo = m / P * part + std::min(part, m % P);
    const int64_t len = m / P + (part < m % P ? 1 : 0);
    head = len > 0 && lo % s.s != 0 ? std::min(len, s.s - lo % s.s) : 0;
    full = (len - head) / s.s;
    tail = len - head - full * s.s;
  }
};

// Requests (into L2) a group's data, G channels of all N samples from p (sample 0's first run),
// in memory order: the group reductions then walk it channel by channel from L2. For a thread's
// first group; each later one was prefetched by the second pass over the group before it. A loop
// of prefetches keeps as many lines in flight as the core allows, which the reductions' strided
// walk (runs of 49 values, C * S apart) would not. (On this VM the benchmark's short-map tensors
// sit in L3, where it measured within noise; it is for a first group that comes from memory.)
template <typename T>
void prefetch_group(const Shape& s, const T* p, int64_t G) {
  const size_t span = size_t(G * s.s) * sizeof(T);
  for (int64_t b = 0; b < s.n; ++b) {
    const uintptr_t begin = reinterpret_cast<uintptr_t>(p + b * s.c * s.s);
    for (uintptr_t line = begin & ~uintptr_t(63); line < begin + span; line += 64) {
      __builtin_prefetch(reinterpret_cast<const void*>(line), 0, 2);
    }
  }
}

// Calls f(offset, rows, n) for the blocks of part `part` (of P) of channel c: rows runs of n
// values starting at offset, C * S apart.
template <class F>
void for_each_block(const Shape& s, int64_t c, int64_t part, int64_t P, F&& f) {
  const PartBlocks b(s, part, P);
  auto offset = [&](int64_t j) { return (j / s.s * s.c + c) * s.s + j % s.s; };
  if (b.head > 0) f(offset(b.lo), int64_t(1), b.head);
  if (b.full > 0) f(offset(b.lo + b.head), b.full, s.s);
  if (b.tail > 0) f(offset(b.lo + b.head + b.full * s.s), int64_t(1), b.tail);
}

// The same blocks in reverse order, the whole runs one at a time, last first: for a second pass
// over a piece that did not stay in L2, whose last-read part is the part still there.
template <class F>
void for_each_block_reversed(const Shape& s, int64_t c, int64_t part, int64_t P, F&& f) {
  const PartBlocks b(s, part, P);
  auto offset = [&](int64_t j) { return (j / s.s * s.c + c) * s.s + j % s.s; };
  if (b.tail > 0) f(offset(b.lo + b.head + b.full * s.s), int64_t(1), b.tail);
  for (int64_t r = b.full - 1; r >= 0; --r) f(offset(b.lo + b.head + r * s.s), int64_t(1), s.s);
  if (b.head > 0) f(offset(b.lo), int64_t(1), b.head);
}

// The two-pass skeleton. first(c, slot, off, rows, n) reads `rows` runs of n values of channel c
// (C * S apart) into partial sums `slot`; finish(c) turns a channel's sums into coefficients;
// second(c, off, rows, n, next) writes them; start(c) runs before channel c's first pass.
// first_group(c0, G, off, cold) reads the G channels c0.. of all N samples (fused partition: slot =
// c; cold: the group is not in cache yet);
// second_group(c0, G, off, next) writes the G contiguous runs of one sample at off. `next`: how
// far ahead (in values) the data of this thread's next first pass lies, for the second pass to
// prefetch (0: nothing to prefetch). Between the two passes over a piece, the piece stays in the
// thread's cache (L2) when it fits: per channel for long runs, per group of channels for short ones.
// pt.pipeline: second_first(c, off, rows, n, next, cn, slot) is second(c, ...) fused with
// first(cn, slot, ...) over the same blocks `next` values on, the thread's next piece; that
// piece's own first pass is then skipped.
template <class Start, class First, class Finish, class Second, class FirstGroup, class SecondGroup,
          class SecondFirst>
void two_pass(const Shape& s, const Partition& pt, Start&& start, First&& first, Finish&& finish, Second&& second,
              FirstGroup&& first_group, SecondGroup&& second_group, SecondFirst&& second_first) {
  if (pt.fused) {
    // Each thread owns a contiguous range of channels, walked in groups of G: no barrier at all.
    // G = 1: a channel's N runs, C * S apart. G > 1 (short runs): the group kernels walk the
    // group's G runs of each sample (contiguous) in memory order, so the hardware prefetcher sees
    // one stream instead of N islands per channel.
#pragma omp parallel num_threads(pt.nt) if (pt.nt > 1)
    {
      const int64_t t = omp_get_thread_num(), T = omp_get_num_threads();
      const int64_t cb = s.c * t / T, ce = s.c * (t + 1) / T;
      bool have_first = false;  // the previous second pass ran this group's first pass
      for (int64_t c0 = cb; c0 < ce; c0 += pt.group) {
        const int64_t G = std::min(pt.group, ce - c0);
        if (!have_first) {
          for (int64_t c = c0; c < c0 + G; ++c) start(c);
          if (G == 1) {
            for_each_block(s, c0, 0, 1, [&](int64_t off, int64_t rows, int64_t n) { first(c0, c0, off, rows, n); });
          } else {
            // The group reductions read from L2: the previous group's second pass prefetched this
            // one, except for the thread's first group.
            first_group(c0, G, c0 * s.s, c0 == cb || !pt.prefetch);
          }
        }
        for (int64_t c = c0; c < c0 + G; ++c) finish(c);
        have_first = pt.pipeline && c0 + 1 < ce;  // pt.pipeline: G = 1
        if (have_first) {
          start(c0 + 1);
          for_each_block(s, c0, 0, 1, [&](int64_t off, int64_t rows, int64_t n) {
            second_first(c0, off, rows, n, size_t(s.s), c0 + 1, c0 + 1);
          });
          continue;
        }
        // While writing this group, prefetch the next one (G channels on): its first pass then
        // reads from L2, and this thread's reads from memory overlap its writes.
        const size_t next = pt.prefetch && c0 + G < ce ? size_t(G * s.s) : 0;
        if (G == 1 && pt.reverse) {
          for_each_block_reversed(s, c0, 0, 1, [&](int64_t off, int64_t rows, int64_t n) { second(c0, off, rows, n, next); });
        } else if (G == 1) {
          for_each_block(s, c0, 0, 1, [&](int64_t off, int64_t rows, int64_t n) { second(c0, off, rows, n, next); });
        } else {
          for (int64_t b = 0; b < s.n; ++b) second_group(c0, G, (b * s.c + c0) * s.s, next);
        }
      }
      store_fence();
    }
    return;
  }
  // Waves of `wave` channels, each split into P parts. Every piece of a wave computes partial
  // sums, one thread turns them into coefficients, and the same split gives every thread back the
  // pieces it just read.
  const int64_t P = pt.parts, W = pt.wave;
  for (int64_t c = 0; c < s.c; ++c) start(c);  // few channels here (fewer than 8 per thread)
#pragma omp parallel num_threads(pt.nt)
  {
    const int64_t t = omp_get_thread_num(), T = omp_get_num_threads();
    bool have_first = false;  // as in the fused walk
    for (int64_t c0 = 0; c0 < s.c; c0 += W) {
      const int64_t items = std::min(W, s.c - c0) * P;
      const int64_t lo = items * t / T, hi = items * (t + 1) / T;
      if (!have_first) {
        for (int64_t it = lo; it < hi; ++it) {
          const int64_t c = c0 + it / P, slot = c0 * P + it;
          for_each_block(s, c, it % P, P, [&](int64_t off, int64_t rows, int64_t n) { first(c, slot, off, rows, n); });
        }
      }
#pragma omp barrier
#pragma omp single
      for (int64_t c = c0; c < std::min(s.c, c0 + W); ++c) finish(c);
      // The next wave's item `it` is this one's, W channels on, when that wave is a full one.
      have_first = pt.pipeline && c0 + 2 * W <= s.c;
      if (have_first) {
        for (int64_t it = lo; it < hi; ++it) {
          const int64_t c = c0 + it / P;
          for_each_block(s, c, it % P, P, [&](int64_t off, int64_t rows, int64_t n) {
            second_first(c, off, rows, n, size_t(W * s.s), c + W, (c0 + W) * P + it);
          });
        }
        continue;
      }
      for (int64_t it = lo; it < hi; ++it) {
        const int64_t c = c0 + it / P;
        // The same piece of channel c + W is this thread's in the next wave: prefetch it.
        const size_t next = pt.prefetch && c + W < s.c ? size_t(W * s.s) : 0;
        auto blk = [&](int64_t off, int64_t rows, int64_t n) { second(c, off, rows, n, next); };
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

// Row range of part p of P over `rows` rows.
void row_range(int64_t rows, int64_t part, int64_t P, int64_t* lo, int64_t* hi) {
  *lo = rows / P * part + std::min(part, rows % P);
  *hi = *lo + rows / P + (part < rows % P ? 1 : 0);
}

bool finite_nonneg(double v) { return std::isfinite(v) && v >= 0.0; }

// Per-channel elementwise coefficients: y = (x - c) * a + b.
template <typename T>
struct Affine {
  std::vector<T> c, a, b;
  explicit Affine(int64_t ch) : c(size_t(ch)), a(size_t(ch)), b(size_t(ch)) {}
  // mean and scale in float64; c is mean rounded to T (or the centre ct), its remainder goes into b.
  void set(int64_t j, double mean, double scale, double shift) { set(j, mean, scale, shift, T(mean)); }
  void set(int64_t j, double mean, double scale, double shift, T ct) {
    c[j] = ct;
    a[j] = saturate_to<T>(scale);
    b[j] = saturate_to<T>(shift - (mean - double(ct)) * scale);
  }
};

template <typename T>
struct TrainingStats {
  const ForwardTrainingArgs<T>& args;
  std::vector<T> shift;             // k per channel (set_shift)
  std::vector<double> sum, sumsq;   // [C * P]
  Affine<T> affine;
  // Shifts are set by set_shift(c) before channel c's first pass (by the thread that reads it
  // next, so the values come from lines about to be loaded anyway), or all at once up front.
  TrainingStats(const ForwardTrainingArgs<T>& a, int64_t P)
      : args(a), shift(size_t(a.shape.c)), sum(size_t(a.shape.c * P)), sumsq(size_t(a.shape.c * P)),
        affine(a.shape.c) {}

  // The shift k: the mean of the channel's first (up to) 64 values, rounded to T. Any k works
  // for the maths, but the rounding of x - k in T grows with |mean - k| / std; a single first
  // value can be an outlier, an average of 64 rarely is by much.
  void set_shift(int64_t c) {
    const Shape& s = args.shape;
    double acc = 0.0;
    int64_t count = 0;
    if (s.rows_layout()) {
      for (; count < 64 && count < s.rows(); ++count) acc += double(args.x[count * s.c + c]);
    } else {
      // Four independent sums: one chain of 64 dependent additions cost more than the rest of
      // a 7x7 channel's statistics.
      double part[4] = {0.0, 0.0, 0.0, 0.0};
      for (int64_t b = 0; b < s.n && count < 64; ++b) {
        const T* p = args.x + (b * s.c + c) * s.s;
        const int64_t m = std::min<int64_t>(s.s, 64 - count);
        int64_t j = 0;
        for (; j + 4 <= m; j += 4) {
          for (int u = 0; u < 4; ++u) part[u] += double(p[j + u]);
        }
        for (; j < m; ++j) part[j & 3] += double(p[j]);
        count += m;
      }
      acc = (part[0] + part[1]) + (part[2] + part[3]);
    }
    shift[c] = T(acc / double(count));
  }

  // Channel-fastest layouts: all shifts from the first (up to) 16 rows, read in memory order.
  void set_shifts_rows() {
    const Shape& s = args.shape;
    // 16 rows, not 64: this is a serial read of count * C values before the parallel passes (a
    // quarter of a [256, 1024] tensor at 64), and a mean of 16 is within ~std/4 of the channel's
    // mean, which is all the shift needs to keep E[x^2] - E[x]^2 from cancelling.
    const int64_t count = std::min<int64_t>(16, s.rows());
    std::vector<double> acc(size_t(s.c), 0.0);
    for (int64_t r = 0; r < count; ++r) {
      const T* p = args.x + r * s.c;
      for (int64_t c = 0; c < s.c; ++c) acc[c] += double(p[c]);
    }
    for (int64_t c = 0; c < s.c; ++c) shift[c] = T(acc[c] / double(count));
  }

  // Reduce the P partial sums of channel c, write save_* / running stats, set the affine.
  void finish_channel(int64_t c, int64_t P) {
    const Shape& s = args.shape;
    double sm = 0.0, sq = 0.0;
    for (int64_t p = 0; p < P; ++p) {
      sm += sum[c * P + p];
      sq += sumsq[c * P + p];
    }
    const double m = double(s.n) * double(s.s);
    const double d = sm / m;
    double mean = double(shift[c]) + d;
    double var = sq / m - d * d;  // biased
    if (var < 0.0) var = 0.0;     // rounding only; written so that NaN (NaN or Inf in x) propagates
    T center = T(mean);
    if (forward_needs_exact<T>(sm, sq)) {  // sums in T overflowed (at some level), or inf / NaN in x
      const ExactMoments ex = exact_moments(s, args.x, c);
      mean = ex.mean;
      var = ex.var;
      center = safe_center<T>(mean, ex.min, ex.max);
    }
    const double invstd = invstd_of<T>(var, args.eps);
    if (args.save_mean) args.save_mean[c] = T(mean);
    if (args.save_invstd) args.save_invstd[c] = T(invstd);
    if (args.batch_mean) args.batch_mean[c] = mean;
    if (args.batch_invstd) args.batch_invstd[c] = invstd;
    if (args.running_mean) {
      const double f = args.momentum_factor;
      const double unbiased = var * m / (m - 1.0);
      args.running_mean[c] = T((1.0 - f) * double(args.running_mean[c]) + f * mean);
      args.running_var[c] = T((1.0 - f) * double(args.running_var[c]) + f * unbiased);
    }
    const double w = args.weight ? double(args.weight[c]) : 1.0;
    const double b = args.bias ? double(args.bias[c]) : 0.0;
    affine.set(c, mean, w * invstd, b, center);
  }
};

template <typename T>
Status check_common(const Shape& shape, const void* x, const void* y, int num_threads) {
  if (x == nullptr || y == nullptr) return Status::kNullPointer;
  if (Status st = validate_shape(shape); st != Status::kOk) return st;
  if (num_threads < 1) return Status::kBadThreads;
  return Status::kOk;
}

template <typename T>
void forward_training_rows(const ForwardTrainingArgs<T>& a, int nt) {
  const KernelTable<T>& k = table<T>();
  const int64_t C = a.shape.c, rows = a.shape.rows();
  const int64_t P = std::max<int64_t>(1, std::min<int64_t>(nt, rows));
  TrainingStats<T> st(a, P);
  st.set_shifts_rows();
  // Rows kernels accumulate into contiguous [C] arrays, so keep them per part, then transpose.
  std::vector<double> part_sum(size_t(C * P), 0.0), part_sq(size_t(C * P), 0.0);
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
#pragma omp for schedule(static)
    for (int64_t p = 0; p < P; ++p) {
      int64_t lo, hi;
      row_range(rows, p, P, &lo, &hi);
      k.stats_rows(a.x + lo * C, size_t(hi - lo), size_t(C), st.shift.data(), &part_sum[p * C],
                   &part_sq[p * C]);
    }
    // Channels are independent from here on: shared out too (with many channels, finishing them
    // on one thread cost more than the passes: [256, 1024] on 2 threads).
#pragma omp for schedule(static)
    for (int64_t c = 0; c < C; ++c) {
      for (int64_t p = 0; p < P; ++p) {
        st.sum[c * P + p] = part_sum[p * C + c];
        st.sumsq[c * P + p] = part_sq[p * C + c];
      }
      st.finish_channel(c, P);
    }
#pragma omp for schedule(static)
    for (int64_t p = 0; p < P; ++p) {
      int64_t lo, hi;
      row_range(rows, p, P, &lo, &hi);
      k.affine_rows(a.x + lo * C, a.y + lo * C, size_t(hi - lo), size_t(C), st.affine.c.data(),
                    st.affine.a.data(), st.affine.b.data());
    }
  }
}

template <typename T>
void forward_training_runs(const ForwardTrainingArgs<T>& a, int requested) {
  const KernelTable<T>& k = table<T>();
  const Shape& s = a.shape;
  // Short runs stream too when the group kernel writes a sample's runs as one span.
  const bool span_stream = a.y != a.x && stream_output(a.y, int64_t(sizeof(T)) * total_elems(s));
  const Partition pt = partition(s, requested, sizeof(T), 1, span_stream);
  const int64_t P = pt.parts;
  const size_t stride = size_t(s.c * s.s);
  TrainingStats<T> st(a, P);
  two_pass(
      s, pt, [&](int64_t c) { st.set_shift(c); },
      [&](int64_t c, int64_t slot, int64_t off, int64_t rows, int64_t n) {
        k.stats_run(a.x + off, size_t(rows), size_t(n), stride, st.shift[c], &st.sum[slot], &st.sumsq[slot]);
      },
      [&](int64_t c) { st.finish_channel(c, P); },
      [&](int64_t c, int64_t off, int64_t rows, int64_t n, size_t next) {
        k.affine_run(a.x + off, a.y + off, size_t(rows), size_t(n), stride, st.affine.c[c], st.affine.a[c],
                     st.affine.b[c], pt.stream, next);
      },
      [&](int64_t c0, int64_t G, int64_t off, bool cold) {
        if (cold) prefetch_group(s, a.x + off, G);
        k.stats_group(a.x + off, size_t(s.n), stride, size_t(G), size_t(s.s), &st.shift[c0], &st.sum[c0],
                      &st.sumsq[c0]);
      },
      [&](int64_t c0, int64_t G, int64_t off, size_t next) {
        k.affine_group(a.x + off, a.y + off, size_t(G), size_t(s.s), &st.affine.c[c0], &st.affine.a[c0],
                       &st.affine.b[c0], span_stream, next);
      },
      [&](int64_t c, int64_t off, int64_t rows, int64_t n, size_t next, int64_t cn, int64_t slot) {
        k.affine_stats_run(a.x + off, a.y + off, size_t(rows), size_t(n), stride, st.affine.c[c], st.affine.a[c],
                           st.affine.b[c], pt.stream, next, st.shift[cn], &st.sum[slot], &st.sumsq[slot]);
      });
}

// Elementwise pass over the whole tensor with fixed per-channel coefficients.
template <typename T>
void apply_affine(const Shape& s, const T* x, T* y, const Affine<T>& af, int requested) {
  const KernelTable<T>& k = table<T>();
  const int nt = threads_for(s, requested);
  if (s.rows_layout()) {
    const int64_t P = std::max<int64_t>(1, std::min<int64_t>(nt, s.rows()));
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
    for (int64_t p = 0; p < P; ++p) {
      int64_t lo, hi;
      row_range(s.rows(), p, P, &lo, &hi);
      k.affine_rows(x + lo * s.c, y + lo * s.c, size_t(hi - lo), size_t(s.c), af.c.data(),
                    af.a.data(), af.b.data());
    }
    return;
  }
  // No statistics: walk the tensor in memory order. Short runs: whole samples (or parts of
  // them) through the group kernel. Long runs: one call per run, each run split in Q pieces when
  // there are too few runs to share among the threads.
  // In place, the lines were just read and are in cache: plain stores write them back without a
  // read for ownership, while streaming stores would evict them first.
  const bool stream = y != x && stream_output(y, int64_t(sizeof(T)) * total_elems(s));
  // Memory order: what comes next is further along x. Prefetch that far ahead into L2.
  const size_t ahead = kPrefetchAheadBytes / sizeof(T);
  if (s.s * int64_t(sizeof(T)) < kShortRunBytes) {
    const int64_t per = std::max<int64_t>(1, std::min<int64_t>(s.c, kGroupBytes / int64_t(sizeof(T)) / s.s));
    const int64_t pieces = (s.c + per - 1) / per;
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
#pragma omp for schedule(static) nowait
      for (int64_t it = 0; it < s.n * pieces; ++it) {
        const int64_t b = it / pieces, c0 = it % pieces * per, G = std::min(per, s.c - c0);
        const int64_t off = (b * s.c + c0) * s.s;
        k.affine_group(x + off, y + off, size_t(G), size_t(s.s), &af.c[c0], &af.a[c0], &af.b[c0], stream, ahead);
      }
      store_fence();
    }
    return;
  }
  const int64_t runs = s.n * s.c;
  const int64_t Q = runs >= 4 * int64_t(nt) ? 1 : std::min<int64_t>(s.s, (4 * int64_t(nt) + runs - 1) / runs);
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
#pragma omp for schedule(static) nowait
    for (int64_t it = 0; it < runs * Q; ++it) {
      const int64_t r = it / Q, q = it % Q, c = r % s.c;
      const int64_t lo = s.s / Q * q + std::min(q, s.s % Q), len = s.s / Q + (q < s.s % Q ? 1 : 0);
      const int64_t off = r * s.s + lo;
      k.affine_run(x + off, y + off, size_t(1), size_t(len), size_t(s.s), af.c[c], af.a[c], af.b[c], stream, ahead);
    }
    store_fence();
  }
}

template <typename T>
struct BackwardCoefs {
  std::vector<double> sum_dy, sum_dyxc;  // [C * P]
  std::vector<T> c, k1, k2, k3;          // [C]
  BackwardCoefs(int64_t C, int64_t P)
      : sum_dy(size_t(C * P)), sum_dyxc(size_t(C * P)), c(size_t(C)), k1(size_t(C)), k2(size_t(C)),
        k3(size_t(C)) {}
};

template <typename T>
void backward_finish_channel(const BackwardArgs<T>& a, BackwardCoefs<T>& bc, int64_t ch, int64_t P) {
  double g = 0.0, p = 0.0;
  for (int64_t q = 0; q < P; ++q) {
    g += bc.sum_dy[ch * P + q];
    p += bc.sum_dyxc[ch * P + q];
  }
  const double mean = a.mean[ch], invstd = a.invstd[ch];
  double dweight;  // Σ dy * (x - mean) * invstd
  if (!backward_needs_exact<T>(g, p, invstd)) {
    dweight = invstd * (p - (mean - double(bc.c[ch])) * g);
  } else {  // sums in T overflowed, or inf / NaN in x or dy
    const ExactBackwardSums ex = exact_backward_sums(a.shape, a.x, a.dy, ch, mean);
    g = ex.sum_dy;
    // invstd = 0 (var + eps == 0, or a float64 variance beyond float64): xhat = 0, so dweight = 0
    // even where dy * (x - mean) overflows.
    dweight = invstd == 0.0 ? 0.0 : invstd * ex.sum_dy_xmu;
    bc.c[ch] = safe_center<T>(mean, ex.min, ex.max);
  }
  const double lo = mean - double(bc.c[ch]);
  const double dbias = g;
  if (a.grad_bias) a.grad_bias[ch] = T(a.accumulate ? double(a.grad_bias[ch]) + dbias : dbias);
  if (a.grad_weight) {
    a.grad_weight[ch] = T(a.accumulate ? double(a.grad_weight[ch]) + dweight : dweight);
  }
  const double w = a.weight ? double(a.weight[ch]) : 1.0;
  const double k1 = w * invstd;
  double k2 = 0.0, k3 = 0.0;  // evaluation mode: dx = dy * k1, and the dx pass uses k3 = 0 as its zeros
  if (a.use_batch_stats) {
    // dx = w * invstd / m * (m * dy - dbias - xhat * dweight), xhat = ((x - c) - lo) * invstd
    const double m = double(a.shape.n) * double(a.shape.s);
    k2 = -k1 * (invstd * (dweight / m));  // this order: a capped invstd squared would overflow
    k3 = -w * invstd * dbias / m - k2 * lo;
  }
  bc.k1[ch] = saturate_to<T>(k1);
  bc.k2[ch] = saturate_to<T>(k2);
  bc.k3[ch] = saturate_to<T>(k3);
}

template <typename T>
void backward_rows(const BackwardArgs<T>& a, int nt) {
  const KernelTable<T>& k = table<T>();
  const int64_t C = a.shape.c, rows = a.shape.rows();
  const int64_t P = std::max<int64_t>(1, std::min<int64_t>(nt, rows));
  BackwardCoefs<T> bc(C, P);
  for (int64_t c = 0; c < C; ++c) bc.c[c] = T(a.mean[c]);
  std::vector<double> part_g(size_t(C * P), 0.0), part_p(size_t(C * P), 0.0);
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
#pragma omp for schedule(static)
    for (int64_t p = 0; p < P; ++p) {
      int64_t lo, hi;
      row_range(rows, p, P, &lo, &hi);
      k.bwd_reduce_rows(a.x + lo * C, a.dy + lo * C, size_t(hi - lo), size_t(C), bc.c.data(),
                        &part_g[p * C], &part_p[p * C]);
    }
#pragma omp for schedule(static)
    for (int64_t c = 0; c < C; ++c) {
      for (int64_t p = 0; p < P; ++p) {
        bc.sum_dy[c * P + p] = part_g[p * C + c];
        bc.sum_dyxc[c * P + p] = part_p[p * C + c];
      }
      backward_finish_channel(a, bc, c, P);
    }
    if (a.dx) {
#pragma omp for schedule(static)
      for (int64_t p = 0; p < P; ++p) {
        int64_t lo, hi;
        row_range(rows, p, P, &lo, &hi);
        if (a.use_batch_stats) {
          k.bwd_dx_rows(a.x + lo * C, a.dy + lo * C, a.dx + lo * C, size_t(hi - lo), size_t(C),
                        bc.c.data(), bc.k1.data(), bc.k2.data(), bc.k3.data());
        } else {  // dx = dy * k1 (k3 = 0): x not read, so an infinite x gives no 0 * inf
          k.affine_rows(a.dy + lo * C, a.dx + lo * C, size_t(hi - lo), size_t(C), bc.k3.data(), bc.k1.data(),
                        bc.k3.data());
        }
      }
    }
  }
}

template <typename T>
void backward_runs(const BackwardArgs<T>& a, int requested) {
  const KernelTable<T>& k = table<T>();
  const Shape& s = a.shape;
  const bool span_stream =
      a.dx != nullptr && a.dx != a.x && a.dx != a.dy && stream_output(a.dx, int64_t(sizeof(T)) * total_elems(s));
  const Partition pt = partition(s, requested, sizeof(T), 2, span_stream);
  const int64_t P = pt.parts;
  const size_t stride = size_t(s.c * s.s);
  BackwardCoefs<T> bc(s.c, P);
  for (int64_t c = 0; c < s.c; ++c) bc.c[c] = T(a.mean[c]);
  two_pass(
      s, pt, [](int64_t) {},
      [&](int64_t c, int64_t slot, int64_t off, int64_t rows, int64_t n) {
        k.bwd_reduce_run(a.x + off, a.dy + off, size_t(rows), size_t(n), stride, bc.c[c], &bc.sum_dy[slot],
                         &bc.sum_dyxc[slot]);
      },
      [&](int64_t c) { backward_finish_channel(a, bc, c, P); },
      [&](int64_t c, int64_t off, int64_t rows, int64_t n, size_t next) {
        if (a.dx == nullptr) return;
        if (!a.use_batch_stats) {  // dx = dy * k1, as in backward_rows
          k.affine_run(a.dy + off, a.dx + off, size_t(rows), size_t(n), stride, T(0), bc.k1[c], T(0), pt.stream, next);
          return;
        }
        k.bwd_dx_run(a.x + off, a.dy + off, a.dx + off, size_t(rows), size_t(n), stride, bc.c[c], bc.k1[c],
                     bc.k2[c], bc.k3[c], pt.stream, next);
      },
      [&](int64_t c0, int64_t G, int64_t off, bool cold) {
        if (cold) {
          prefetch_group(s, a.x + off, G);
          prefetch_group(s, a.dy + off, G);
        }
        k.bwd_reduce_group(a.x + off, a.dy + off, size_t(s.n), stride, size_t(G), size_t(s.s), &bc.c[c0],
                           &bc.sum_dy[c0], &bc.sum_dyxc[c0]);
      },
      [&](int64_t c0, int64_t G, int64_t off, size_t next) {
        if (a.dx == nullptr) return;
        if (!a.use_batch_stats) {  // dx = dy * k1, as in backward_rows
          k.affine_group(a.dy + off, a.dx + off, size_t(G), size_t(s.s), &bc.k3[c0], &bc.k1[c0], &bc.k3[c0],
                         span_stream, next);
          return;
        }
        k.bwd_dx_group(a.x + off, a.dy + off, a.dx + off, size_t(G), size_t(s.s), &bc.c[c0], &bc.k1[c0], &bc.k2[c0],
                       &bc.k3[c0], span_stream, next);
      },
      [](int64_t, int64_t, int64_t, int64_t, size_t, int64_t, int64_t) {});  // no pipeline (see partition)
}

// A channel-fastest layout with one channel is one contiguous run: the run kernels take it whole
// (the rows kernels would walk it one value per row).
Shape canonical(Shape s) {
  if (s.rows_layout() && s.c == 1) return Shape{1, 1, s.rows(), false};
  return s;
}

}  // namespace

int useful_threads(const Shape& shape, int requested) { return threads_for(shape, requested); }

Status validate_shape(const Shape& s) {
  if (s.n < 1 || s.c < 1 || s.s < 1) return Status::kBadShape;
  // Product must fit in int64 and in the address space (as bytes of float64).
  const int64_t lim = std::numeric_limits<int64_t>::max() / 8;
  if (s.n > lim / s.c) return Status::kBadShape;
  if (s.n * s.c > lim / s.s) return Status::kBadShape;
  return Status::kOk;
}

template <typename T>
Status forward_training(const ForwardTrainingArgs<T>& args) {
  if (Status st = check_common<T>(args.shape, args.x, args.y, args.num_threads); st != Status::kOk) return st;
  ForwardTrainingArgs<T> a = args;
  a.shape = canonical(args.shape);
  if ((a.running_mean == nullptr) != (a.running_var == nullptr)) return Status::kMismatchedStats;
  if (!finite_nonneg(a.eps)) return Status::kBadEps;
  if (a.running_mean && !(a.momentum_factor >= 0.0 && a.momentum_factor <= 1.0)) {
    return Status::kBadMomentum;
  }
  if (a.shape.n * a.shape.s < 2) return Status::kTooFewValues;
  try {
    if (a.shape.rows_layout()) {
      forward_training_rows(a, threads_for(a.shape, a.num_threads));
    } else {
      forward_training_runs(a, a.num_threads);
    }
  } catch (const std::bad_alloc&) {
    return Status::kOutOfMemory;
  }
  return Status::kOk;
}

template <typename T>
Status forward_inference(const ForwardInferenceArgs<T>& args) {
  if (Status st = check_common<T>(args.shape, args.x, args.y, args.num_threads); st != Status::kOk) return st;
  ForwardInferenceArgs<T> a = args;
  a.shape = canonical(args.shape);
  if (a.mean == nullptr || a.var == nullptr) return Status::kNullPointer;
  if (!finite_nonneg(a.eps)) return Status::kBadEps;
  try {
    Affine<T> af(a.shape.c);
    for (int64_t c = 0; c < a.shape.c; ++c) {
      const double invstd = invstd_of<T>(double(a.var[c]), a.eps);
      const double w = a.weight ? double(a.weight[c]) : 1.0;
      const double b = a.bias ? double(a.bias[c]) : 0.0;
      af.set(c, double(a.mean[c]), w * invstd, b);
    }
    apply_affine(a.shape, a.x, a.y, af, a.num_threads);
  } catch (const std::bad_alloc&) {
    return Status::kOutOfMemory;
  }
  return Status::kOk;
}

template <typename T>
Status backward(const BackwardArgs<T>& args) {
  if (Status st = check_common<T>(args.shape, args.x, args.dy, args.num_threads); st != Status::kOk) return st;
  const bool from_var = !args.use_batch_stats && args.running_var != nullptr;
  if (args.mean == nullptr || (args.invstd == nullptr && !from_var)) return Status::kNullPointer;
  if (from_var && !finite_nonneg(args.eps)) return Status::kBadEps;
  BackwardArgs<T> a = args;
  a.shape = canonical(args.shape);
  try {
    std::vector<double> invstd;
    if (from_var) {
      invstd.resize(size_t(a.shape.c));
      for (int64_t c = 0; c < a.shape.c; ++c) invstd[size_t(c)] = invstd_of<T>(double(a.running_var[c]), a.eps);
      a.invstd = invstd.data();
    }
    if (a.shape.rows_layout()) {
      backward_rows(a, threads_for(a.shape, a.num_threads));
    } else {
      backward_runs(a, a.num_threads);
    }
  } catch (const std::bad_alloc&) {
    return Status::kOutOfMemory;
  }
  return Status::kOk;
}

template Status forward_training<float>(const ForwardTrainingArgs<float>&);
template Status forward_training<double>(const ForwardTrainingArgs<double>&);
template Status forward_inference<float>(const ForwardInferenceArgs<float>&);
template Status forward_inference<double>(const ForwardInferenceArgs<double>&);
template Status backward<float>(const BackwardArgs<float>&);
template Status backward<double>(const BackwardArgs<double>&);

}  // namespace bn
