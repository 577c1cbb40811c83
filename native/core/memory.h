// Memory policy of the drivers: whether an output streams, the fence after streaming, and the
// prefetch of a group of short maps. Internal to the core.
#pragma once

#include <cstddef>
#include <cstdint>

#include "batchnorm.h"
#include "machine.h"
#include "plan.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>  // _mm_sfence: SSE, part of the x86-64 baseline
#endif

namespace bn {

// Whether an output of `bytes` at y is worth streaming: large enough (facts.stream_min_bytes), and
// its middle page resident, since streaming stores to pages not yet mapped (a fresh allocation)
// take the page faults at a worse time than plain stores. The residency question is a system
// call, asked only for outputs large enough to stream, so small calls make none.
inline bool stream_output(const MachineFacts& facts, const void* y, int64_t bytes) {
  if (bytes < facts.stream_min_bytes) return false;
  return facts.page_resident(static_cast<const char*>(y) + bytes / 2);
}

// What the planner needs of a call writing `out` (T values, the size of s): the machine's L2 and
// whether out may stream. `out_read` says out is one of the call's inputs (in place): its lines
// were just read and are in cache, where plain stores write them back without a read for
// ownership while streaming stores would evict them first.
template <typename T>
PlanInput plan_input(const Shape& s, int threads, OpKind op, const T* out, bool out_read) {
  const MachineFacts& facts = machine_facts();
  PlanInput in;
  in.shape = s;
  in.elem_bytes = sizeof(T);
  in.threads = threads;
  in.l2_bytes = facts.l2_bytes;
  in.op = op;
  in.stream_out = out != nullptr && !out_read && stream_output(facts, out, int64_t(sizeof(T)) * s.n * s.c * s.s);
  return in;
}

// Non-temporal stores are weakly ordered: a thread that streamed output fences once, after its
// last kernel call and before the parallel region ends (the kernels themselves do not fence).
// arm64's "streaming" stores are plain stores: nothing to do.
inline void store_fence() {
#if defined(__x86_64__) || defined(_M_X64)
  _mm_sfence();
#endif
}

// Requests (into L2) a group's data, G channels of all N samples from p (sample 0's first run),
// in memory order: the group reductions then walk it channel by channel from L2. For a thread's
// first group; each later one was prefetched by the second pass over the group before it. A loop
// of prefetches keeps as many lines in flight as the core allows, which the reductions' strided
// walk (runs of 49 values, C * S apart) would not.
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

// Prefetch (into L2) the n values at p, line by line: a short span the next step reads, which the
// hardware prefetcher would meet cold (kAddRelu's residual in the group walk, forward_training.cc).
template <typename T>
void prefetch_span(const T* p, size_t n) {
  const uintptr_t begin = reinterpret_cast<uintptr_t>(p);
  for (uintptr_t line = begin & ~uintptr_t(63); line < begin + n * sizeof(T); line += 64) {
    __builtin_prefetch(reinterpret_cast<const void*>(line), 0, 2);
  }
}

// The group writers' out_next for sample b's span of a group (at off): the same channels' span of
// sample b + 1, C * S on, when the output is written with plain stores and is none of the call's
// inputs (`fresh`), so that its reads for ownership are under way when the walk gets there
// (bench/PERFORMANCE.md, "Short maps in a step's cold caches"); 0 otherwise.
inline size_t group_out_next(const Shape& s, const Plan& pt, bool fresh, int64_t off) {
  const int64_t step = s.c * s.s;
  return fresh && !pt.stream_spans && off + step < s.n * step ? size_t(step) : 0;
}

}  // namespace bn
