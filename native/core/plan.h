// The planner: how one call is spread over threads and walked, as a pure function of the shape,
// layout, dtype size, requested threads, L2 size and op. No system call, no environment, no
// pointer: the drivers ask the memory policy (memory.h) whether the output may stream and pass
// the answer in. Tests ask it which path a shape takes (native/test/plan_test.cc).
#pragma once

#include <cstddef>
#include <cstdint>

#include "batchnorm.h"

namespace bn {

enum class OpKind : int { kForwardTraining, kForwardInference, kBackward };

enum class Path : int {
  kRows,      // channel fastest ([N, C], channels-last): `parts` ranges of rows, rows kernels
  kChannels,  // two passes, whole channels per thread, back to back without a barrier ("fused")
  kGroups,    // the same over groups of `group` short-map channels, group kernels
  kWaves,     // two passes, each channel split in `parts` pieces, `wave` channels at a time
  kSpans,     // inference, short runs: a sample's runs of `group` channels as one span
  kRuns,      // inference, long runs: one call per run, each split in `run_pieces`
};

const char* path_name(Path p);

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
  int64_t parts = 1;        // pieces per channel (waves), or ranges of rows (rows)
  int64_t wave = 1;         // channels per wave: a wave's data is still in cache for the second pass
  int64_t group = 1;        // channels per group (groups, spans)
  int64_t run_pieces = 1;   // pieces per run (inference runs)
  bool stream = false;      // run kernels write with non-temporal stores
  bool stream_spans = false;  // group writers (whole spans) write with non-temporal stores
  bool prefetch = false;    // the second pass prefetches the first pass's next piece
  bool reverse = false;     // the piece does not stay in L2: second pass last block first
  bool pipeline = false;    // the second pass over a piece also runs the first pass of the next
  bool fused() const { return path == Path::kChannels || path == Path::kGroups; }
};

Plan plan_op(const PlanInput& in);

// Threads a call on this shape can use: 1 below the size where a parallel region costs more than
// it saves, else `requested` (at least 1).
int threads_for(const Shape& s, int requested);

// Geometry constants, one home each (the reasons are in plan.cc).
constexpr int64_t kSerialBelow = 1 << 15;       // elements
constexpr int64_t kMinPartElems = 1 << 13;      // smallest piece of a channel worth a thread
constexpr int64_t kShortRunBytes = 4096;        // shorter runs go in groups of channels
constexpr int64_t kStreamRunBytes = 512;        // shorter runs never stream from the run kernels
constexpr int64_t kGroupBytes = int64_t(512) << 10;  // data of one group

}  // namespace bn
