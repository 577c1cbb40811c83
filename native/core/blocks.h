// Where the pieces of a channel lie, and its reduction chunks. Internal to the core; pure index
// arithmetic on the shape.
//
// Determinism: a channel's sums are formed chunk by chunk, each chunk by one kernel call into its
// own slot, and folded in chunk order (schedule.h). The chunks depend on the shape alone, and a
// thread's share is a range of whole chunks, so every output has the same bits for any thread
// count and any path the planner picks.
#pragma once

#include <algorithm>
#include <cstdint>

#include "batchnorm.h"

namespace bn {

constexpr int64_t kChunkElems = 4096;      // NCHW: values of a channel per chunk, at most
constexpr int64_t kRowChunkElems = 65536;  // rows layout: values per chunk, at least (its slots: 2 C doubles)
constexpr int64_t kMinChunkRows = 16;      // rows layout: rows per chunk, at least (slots <= 1/4 of f32 data)
constexpr int64_t kMaxRowChunks = 64;      // rows layout: chunks, at most (bounds the slots' memory)

// The chunks of an NCHW channel (its N runs of S values): runs of at most kChunkElems values are
// taken `runs` whole runs at a time; a longer run is cut into `pieces` of near-equal length, a
// multiple of 64 values (the last one shorter). Either way a chunk is one block of the run kernels
// (rows runs of n values), and chunk k + 1 follows chunk k in the channel's order of values.
struct Chunking {
  int64_t runs = 1;    // whole runs per chunk (the last chunk may have fewer)
  int64_t pieces = 1;  // chunks per run
  int64_t piece = 0;   // values per piece (pieces > 1), a multiple of 64: no seam splits a line of an aligned run
  int64_t count = 1;   // chunks per channel
};
inline Chunking chunking(const Shape& s) {
  Chunking ch;
  if (s.s <= kChunkElems) {
    ch.runs = std::max<int64_t>(1, kChunkElems / std::max<int64_t>(1, s.s));
    ch.count = std::max<int64_t>(1, (s.n + ch.runs - 1) / ch.runs);
  } else {
    const int64_t q = (s.s + kChunkElems - 1) / kChunkElems;  // fewest pieces of at most kChunkElems
    ch.piece = ((s.s + q - 1) / q + 63) / 64 * 64;             // their even length, rounded up to 64
    ch.pieces = (s.s + ch.piece - 1) / ch.piece;
    ch.count = s.n * ch.pieces;
  }
  return ch;
}

// The chunks of a rows layout ([N, C], channels-last): `runs` whole rows each.
inline Chunking row_chunking(const Shape& s) {
  const int64_t rows = s.rows(), c = std::max<int64_t>(1, s.c);
  Chunking ch;
  ch.runs = std::max({(kRowChunkElems + c - 1) / c, kMinChunkRows, (rows + kMaxRowChunks - 1) / kMaxRowChunks});
  ch.count = std::max<int64_t>(1, (rows + ch.runs - 1) / ch.runs);
  return ch;
}

// Range [lo, hi) of part `part` of P over `count` items (rows, chunks).
inline void part_range(int64_t count, int64_t part, int64_t P, int64_t* lo, int64_t* hi) {
  *lo = count / P * part + std::min(part, count % P);
  *hi = *lo + count / P + (part < count % P ? 1 : 0);
}

// Offset in the tensor of value j (of m) of channel c.
inline int64_t channel_offset(const Shape& s, int64_t c, int64_t j) { return (j / s.s * s.c + c) * s.s + j % s.s; }

// Where chunk k begins among the channel's m values (k = count: m).
inline int64_t chunk_begin(const Shape& s, const Chunking& ch, int64_t k) {
  if (ch.pieces == 1) return std::min(k * ch.runs, s.n) * s.s;
  return k / ch.pieces * s.s + k % ch.pieces * ch.piece;
}

// Calls f(offset, rows, n) for chunk k of channel c: rows runs of n values, C * S apart.
template <class F>
void chunk_block(const Shape& s, const Chunking& ch, int64_t c, int64_t k, F&& f) {
  if (ch.pieces == 1) {
    const int64_t r0 = k * ch.runs;
    f(channel_offset(s, c, r0 * s.s), std::min(ch.runs, s.n - r0), s.s);
    return;
  }
  const int64_t lo = chunk_begin(s, ch, k);
  f(channel_offset(s, c, lo), int64_t(1), chunk_begin(s, ch, k + 1) - lo);
}

// The stride to give a run kernel for the chunk at off: the kernels prefetch ahead, wrapping
// from the end of the block to the next run `stride` on. After a piece of a run (rows = 1,
// n < S) the walk reads the rest of its run (stride n: straight on), or after the run's last
// piece the channel's next run (C * S - lo on). Sums do not depend on it.
inline size_t chunk_stride(const Shape& s, int64_t off, int64_t rows, int64_t n) {
  if (rows != 1 || n >= s.s) return size_t(s.c * s.s);
  const int64_t lo = off % s.s;
  return lo + n < s.s ? size_t(n) : size_t(s.c * s.s - lo);
}

// Values [lo, lo + len) of a channel: a partial first run (`head` values from lo), `full` whole
// runs, a partial last run (`tail` values).
struct PartBlocks {
  int64_t lo, head, full, tail;
  PartBlocks(const Shape& s, int64_t lo_, int64_t len) : lo(lo_) {
    head = len > 0 && lo % s.s != 0 ? std::min(len, s.s - lo % s.s) : 0;
    full = (len - head) / s.s;
    tail = len - head - full * s.s;
  }
};

// Values [lo, hi) of part `part` of P of a channel: whole chunks.
inline PartBlocks part_blocks(const Shape& s, int64_t part, int64_t P) {
  const Chunking ch = chunking(s);
  int64_t k0, k1;
  part_range(ch.count, part, P, &k0, &k1);
  const int64_t lo = chunk_begin(s, ch, k0);
  return PartBlocks(s, lo, chunk_begin(s, ch, k1) - lo);
}

// Calls f(offset, rows, n) for the blocks of part `part` (of P) of channel c: rows runs of n
// values starting at offset, C * S apart. For the passes that write (no sums).
template <class F>
void for_each_block(const Shape& s, int64_t c, int64_t part, int64_t P, F&& f) {
  const PartBlocks b = part_blocks(s, part, P);
  if (b.head > 0) f(channel_offset(s, c, b.lo), int64_t(1), b.head);
  if (b.full > 0) f(channel_offset(s, c, b.lo + b.head), b.full, s.s);
  if (b.tail > 0) f(channel_offset(s, c, b.lo + b.head + b.full * s.s), int64_t(1), b.tail);
}

// The same blocks in reverse order, the whole runs one at a time, last first: for a second pass
// over a piece that did not stay in L2, whose last-read part is the part still there.
template <class F>
void for_each_block_reversed(const Shape& s, int64_t c, int64_t part, int64_t P, F&& f) {
  const PartBlocks b = part_blocks(s, part, P);
  if (b.tail > 0) f(channel_offset(s, c, b.lo + b.head + b.full * s.s), int64_t(1), b.tail);
  for (int64_t r = b.full - 1; r >= 0; --r) f(channel_offset(s, c, b.lo + b.head + r * s.s), int64_t(1), s.s);
  if (b.head > 0) f(channel_offset(s, c, b.lo), int64_t(1), b.head);
}

}  // namespace bn
