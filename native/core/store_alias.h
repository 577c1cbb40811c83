// Streamed rows walks and 4 KiB aliasing: how many rows a tile of a streamed walk may take so that
// its loads keep off the lines its earlier rows streamed. Pure (addresses as integers) and
// header-only: the rows writers ask it once per call (kernels_rows.inl), native/test/plan_test.cc
// asks it by table.
#pragma once

#include <cstddef>
#include <cstdint>

namespace bn {

// A load may wait for an earlier store whose address agrees with its own in the low 12 bits until
// that store completes (4 KiB aliasing in the load-store unit); a streaming store completes late,
// so streamed walks keep their loads off such offsets.
constexpr size_t kStoreAliasBytes = 4096;
// How far (in tile rows' spans, either side, mod 4 KiB) from a streamed line a load of a row a
// page or more on still waits for it: two, the bound included (bench/PERFORMANCE.md, fourteenth
// round; further out the waits come and go, and smaller tiles cost as much as they save).
constexpr size_t kAliasSpans = 2;

// A tile loads row r + k after streaming row r (rows of row_bytes, a tile row of span_bytes), so
// no input may sit k rows past the output modulo kStoreAliasBytes, within a span (row strides that
// are multiples of 2 KiB with an input at the output's offset, as JavaScript's allocations are), or
// within kAliasSpans spans where row r + k is a page or more past row r (there the loads wait on
// lines their low 12 bits only come near). The most rows up to max_rows that keep every load of a
// tile off its streamed lines. inputs: the addresses the tile loads (0: none).
inline size_t alias_free_tile_rows(uintptr_t y, size_t row_bytes, size_t span_bytes, const uintptr_t (&inputs)[3],
                                   size_t max_rows) {
  const intptr_t page = intptr_t(kStoreAliasBytes), span = intptr_t(span_bytes);
  size_t k = 1;
  for (; k < max_rows; ++k) {
    const size_t ahead = k * row_bytes;  // from row r to row r + k
    const intptr_t reach = ahead >= kStoreAliasBytes ? intptr_t(kAliasSpans) * span + 1 : span;
    for (const uintptr_t p : inputs) {
      if (p == 0) continue;
      const intptr_t apart = intptr_t(p - y) + intptr_t(ahead);
      const intptr_t off = ((apart % page) + page) % page;
      if (off < reach || off > page - reach) return k;
    }
  }
  return k;
}

}  // namespace bn
