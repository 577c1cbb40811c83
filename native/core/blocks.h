// Where a piece of a channel lies in an NCHW tensor: part `part` (of P) of the m = N * S values of
// channel c, as blocks of runs C * S apart. Internal to the core; pure index arithmetic.
#pragma once

#include <algorithm>
#include <cstdint>

#include "batchnorm.h"

namespace bn {

// Part `part` (of P) of a channel: a partial first run (`head` values from lo), `full` whole
// runs, a partial last run (`tail` values).
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

// Offset in the tensor of value j (of m) of channel c.
inline int64_t channel_offset(const Shape& s, int64_t c, int64_t j) { return (j / s.s * s.c + c) * s.s + j % s.s; }

// Calls f(offset, rows, n) for the blocks of part `part` (of P) of channel c: rows runs of n
// values starting at offset, C * S apart.
template <class F>
void for_each_block(const Shape& s, int64_t c, int64_t part, int64_t P, F&& f) {
  const PartBlocks b(s, part, P);
  if (b.head > 0) f(channel_offset(s, c, b.lo), int64_t(1), b.head);
  if (b.full > 0) f(channel_offset(s, c, b.lo + b.head), b.full, s.s);
  if (b.tail > 0) f(channel_offset(s, c, b.lo + b.head + b.full * s.s), int64_t(1), b.tail);
}

// The same blocks in reverse order, the whole runs one at a time, last first: for a second pass
// over a piece that did not stay in L2, whose last-read part is the part still there.
template <class F>
void for_each_block_reversed(const Shape& s, int64_t c, int64_t part, int64_t P, F&& f) {
  const PartBlocks b(s, part, P);
  if (b.tail > 0) f(channel_offset(s, c, b.lo + b.head + b.full * s.s), int64_t(1), b.tail);
  for (int64_t r = b.full - 1; r >= 0; --r) f(channel_offset(s, c, b.lo + b.head + r * s.s), int64_t(1), s.s);
  if (b.head > 0) f(channel_offset(s, c, b.lo), int64_t(1), b.head);
}

// Range [lo, hi) of part `part` of P over `count` items (rows).
inline void part_range(int64_t count, int64_t part, int64_t P, int64_t* lo, int64_t* hi) {
  *lo = count / P * part + std::min(part, count % P);
  *hi = *lo + count / P + (part < count % P ? 1 : 0);
}

}  // namespace bn
