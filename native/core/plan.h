// The planner: how one call is spread over threads and walked, as a pure function of the shape,
// layout, dtype size, requested threads, L2 size and op. No system call, no environment, no
// pointer: the drivers ask the memory policy (memory.h) whether the output may stream and pass
// the answer in. Tests ask it which path a shape takes (native/test/plan_test.cc). Header-only:
// it runs on every call, and a call into another translation unit cost a tenth of a tiny call.
// The measurements behind each rule are in bench/notes-from-code.md.
#pragma once

#include <cstddef>
#include <algorithm>
#include <cstdint>

#include "batchnorm.h"

namespace bn {

enum class OpKind : int { kForwardTraining, kForwardInference, kBackward };

enum class Path : int {
  kRows,      // channel fastest ([N, C], channels-last): row chunks, then `parts` ranges of rows; rows kernels
  kChannels,  // two passes, whole channels per thread, back to back without a barrier ("fused")
  kGroups,    // the same over groups of `group` short-map channels, group kernels
  kWaves,     // two passes, each channel split in `parts` pieces, `wave` channels at a time
  kSpans,     // inference, short runs: a sample's runs of `group` channels as one span
  kRuns,      // inference, long runs: one call per run, each split in `run_pieces`
};

struct PlanInput {
  Shape shape;
  size_t elem_bytes = 4;     // storage size of one value
  int threads = 1;           // requested (>= 1)
  int64_t l2_bytes = 1 << 20;
  OpKind op = OpKind::kForwardTraining;
  bool stream_out = false;   // the output may stream (memory policy said so; not in place)
};

struct Plan {
  Path path = Path::kChannels;
  int nt = 1;               // threads of the parallel regions
  int64_t parts = 1;        // pieces per channel of whole chunks (waves), or ranges of rows to write (rows)
  int64_t wave = 1;         // channels per wave: a wave's data is still in cache for the second pass
  int64_t group = 1;        // channels per group (groups, spans)
  int64_t run_pieces = 1;   // pieces per run (inference runs)
  bool stream = false;      // run kernels write with non-temporal stores
  bool stream_spans = false;  // group writers (whole spans) write with non-temporal stores
  bool prefetch = false;    // the second pass prefetches the first pass's next piece
  bool reverse = false;     // the piece (whole channels, waves) does not stay in L2: second pass last block first
  bool pipeline = false;    // the second pass over a piece also runs the first pass of the next
  bool group_sums = false;  // short runs: every reduction (any path) goes through the group kernels
  bool fused() const { return path == Path::kChannels || path == Path::kGroups; }
};

// Geometry constants, one home each (the reasons are with the rules below).
constexpr int64_t kSerialBelow = 1 << 15;       // elements
constexpr int64_t kMinPartElems = 1 << 13;      // smallest piece of a channel worth a thread
constexpr int64_t kShortRunBytes = 4096;        // shorter runs go in groups of channels
constexpr int64_t kStreamRunBytes = 512;        // shorter runs never stream from the run kernels
constexpr int64_t kGroupBytes = int64_t(512) << 10;  // data of one group
constexpr int64_t kNarrowRunBytes = 1024;            // groups of shorter runs (7x7, 14x14 maps) widen...
constexpr int64_t kNarrowSpanBytes = 4096;           // ...to as many runs as fit this span per sample
constexpr int64_t kClaimsPerThread = 4;              // waves: pieces of a thread's share, that a slowed thread can give away

namespace plan_detail {  // the rules of plan_op, by op kind

inline int64_t total_elems(const Shape& s) { return s.n * s.c * s.s; }

// What a thread may keep in its L2 between the two passes: seven eighths of it, leaving room for
// the output stream and stray lines.
inline int64_t l2_budget(int64_t l2) { return l2 / 8 * 7; }

// Channel-fastest layouts: the rows are shared out in ranges, at most one per thread (the
// reductions go by row chunks, blocks.h, whatever the ranges).
inline Plan plan_rows(const PlanInput& in, Plan p) {
  p.path = Path::kRows;
  p.stream = in.stream_out;  // the rows writers stream when the rows are aligned for it
  p.parts = std::max<int64_t>(1, std::min<int64_t>(p.nt, in.shape.rows()));
  return p;
}

// Inference has no statistics: it walks the tensor in memory order. Short runs: whole samples
// (or parts of them) through the group writer. Long runs: one call per run, each run split in
// run_pieces when there are too few runs to share among the threads.
inline Plan plan_inference(const PlanInput& in, Plan p) {
  const Shape& s = in.shape;
  const int64_t eb = int64_t(in.elem_bytes);
  // In place the lines were just read and are in cache: the caller says so through stream_out.
  p.stream = p.stream_spans = in.stream_out;
  if (s.s * eb < kShortRunBytes) {
    p.path = Path::kSpans;
    p.group = std::max<int64_t>(1, std::min<int64_t>(s.c, kGroupBytes / eb / s.s));
    return p;
  }
  p.path = Path::kRuns;
  const int64_t runs = s.n * s.c, nt = p.nt;
  p.run_pieces = runs >= 4 * nt ? 1 : std::min<int64_t>(s.s, (4 * nt + runs - 1) / runs);
  return p;
}

// Training and backward: statistics (or reductions) then a pass that writes. `arrays`: how many
// tensors the first pass reads (x; x and dy for backward): the data a thread must keep in cache
// between the two passes is that many times its share of a channel.
//
// Preference, by what a thread holds between its two passes (its "piece"): whole channels (or
// groups of short ones) whose piece fits twice in L2, so the second pass can prefetch the next
// piece while it writes; else channels split over the threads, for the same; else whichever piece
// fits in L2 at all, without prefetching; else whole channels (memory is read twice anyway).
inline Plan plan_two_pass(const PlanInput& in, Plan p) {
  const Shape& s = in.shape;
  const int64_t eb = int64_t(in.elem_bytes);
  const int arrays = in.op == OpKind::kBackward ? 2 : 1;
  // Runs written one by one (whole channels, not a group's span) stream their whole lines; the
  // partial lines at both ends of a run get plain masked stores. Down to kStreamRunBytes it pays.
  p.stream = in.stream_out && s.s * eb >= kStreamRunBytes;
  p.stream_spans = in.stream_out;
  const int64_t nt = p.nt;
  const int64_t m = s.n * s.s;
  const int64_t chan_bytes = m * eb;
  const int64_t whole = arrays * chan_bytes, split = whole / nt, l2 = in.l2_bytes, budget = l2_budget(l2);
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
  // Short runs: at most a quarter of L2 per group, so it and the next one (prefetched) stay there.
  const bool short_runs = s.s * eb < kShortRunBytes;
  const int64_t group_bytes = std::min<int64_t>(kGroupBytes, l2 / 4);
  // When some thread count or L2 size could group channels, every reduction goes through the group
  // kernels (their sums must not depend on whether the planner grouped); the fused
  // normalize-and-sum kernel cannot. kGroupBytes, not group_bytes: a rule of the shape alone.
  p.group_sums = short_runs && std::min<int64_t>(kGroupBytes / whole, s.c) >= 2;
  int64_t piece = whole;
  if (fused) {
    p.path = Path::kChannels;
    if (short_runs) {
      p.group = std::max<int64_t>(1, std::min<int64_t>(group_bytes / whole, s.c / nt));
      // Both passes walk a group one sample's span at a time; short spans of narrow runs cost
      // more in per-span work than in bandwidth (large batches of 7x7 and 14x14 maps leave room in
      // L2 for one to five channels), so such groups widen to kNarrowSpanBytes per sample, past L2 if
      // need be (no further: one run past it measured slower). Only where the group kernels take
      // the sums whatever the grouping.
      const int64_t run_bytes = s.s * eb;
      const int64_t min_group = run_bytes < kNarrowRunBytes ? kNarrowSpanBytes / run_bytes : 1;
      if (p.group_sums && p.group < min_group) p.group = std::max<int64_t>(1, std::min<int64_t>(min_group, s.c / nt));
      piece *= p.group;
      if (p.group > 1) p.path = Path::kGroups;
    }
  } else {
    p.path = Path::kWaves;
    p.parts = nt * kClaimsPerThread;
    p.wave = std::max<int64_t>(1, std::min<int64_t>(s.c, nt * (l2 / 2) / whole));
    piece = split * p.wave;
  }
  // The second pass prefetches the next piece while it writes when both fit in L2.
  p.prefetch = 2 * piece <= l2;
  // Backward's piece too large for L2 (x and dy of a large channel) is written last block first,
  // starting with what is still in L2 (whole channels and waves; a group is written span by
  // span). For training it measured no better.
  p.reverse = arrays == 2 && p.group == 1 && piece > budget;
  // Forward training, long runs: the normalize pass over a piece reads the next one and sums it
  // as it goes, so every pass after the first reads and writes memory at once, like a copy. Whole
  // channels that fit L2 once but not twice are not: the loads of the next piece would evict the
  // part of this one still to be read, and without the pipeline the threads, never synchronized,
  // overlap one's reads with another's writes anyway. Waves always are: their barrier lines the
  // threads up, so unpipelined all read and then all write. Backward stays in two passes (its dx
  // pass prefetches the next x instead); short runs too (their statistics read the group from L2
  // channel by channel, which a fused walk in memory order cannot).
  const bool overlap = p.prefetch || piece > budget || p.path == Path::kWaves;
  p.pipeline = arrays == 1 && p.group == 1 && !p.group_sums && overlap;
  return p;
}

}  // namespace plan_detail

// The layout a shape runs as: a channel-fastest layout with one channel is one contiguous run, so
// the run kernels take it whole (the rows kernels would walk it one value per row).
inline Shape canonical_shape(const Shape& s) {
  if (s.rows_layout() && s.c == 1) return Shape{1, 1, s.rows(), false};
  return s;
}

// Threads a call on this shape can use: 1 below the size where a parallel region costs more than
// it saves, else `requested` (at least 1).
inline int threads_for(const Shape& s, int requested) {
  if (plan_detail::total_elems(s) < kSerialBelow) return 1;
  return std::max(1, requested);
}

inline Plan plan_op(const PlanInput& in) {
  Plan p;
  p.nt = threads_for(in.shape, in.threads);
  if (in.shape.rows_layout()) return plan_detail::plan_rows(in, p);
  switch (in.op) {
    case OpKind::kForwardInference: return plan_detail::plan_inference(in, p);
    case OpKind::kForwardTraining:
    case OpKind::kBackward: return plan_detail::plan_two_pass(in, p);
  }
  return p;  // unreachable: the switch names every op
}

inline const char* path_name(Path p) {
  switch (p) {
    case Path::kRows: return "rows";
    case Path::kChannels: return "channels";
    case Path::kGroups: return "groups";
    case Path::kWaves: return "waves";
    case Path::kSpans: return "spans";
    case Path::kRuns: return "runs";
  }
  return "unknown";
}

}  // namespace bn
