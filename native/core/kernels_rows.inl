// Rows kernels: channel fastest, so the lanes of a vector are channels and nothing is reduced
// across lanes. The reductions walk strips of kPartial rows and add each strip's partial sums
// into the float64 per-channel sums (a channel's sums depend on the strips only, not on how the
// columns are walked or on W). Those of one tensor (the statistics) keep a block of kRowBlock
// vectors' partials in registers over the strip's rows and prefetch the rows ahead; those of two
// (backward) walk the strip in memory order with the partials in L1. The writers hold a vector
// of channels' coefficients in registers over a block of rows and prefetch the rows ahead.
// Included inside struct Kernels<V> (kernels_body.inl).
// Eight vectors where the ISA has 32 registers (their shifts and partials take 24), then four:
// each row of a strip is read 8 lines at a time; with 16 registers, four.
static constexpr size_t kRowBlock = V::kRegisters >= 32 ? 8 : 4;

// Adds the partial sums v (lanes = channels j, j + 1, ...) into the float64 sums out[j...]:
// the first cnt lanes (cnt == W: a whole vector, through the float64 accumulator type).
static void add_lanes(double* out, Vec v, size_t cnt) {
  if (cnt == W) {
    typename V::Acc t = V::acc_load(out);
    V::acc_add(t, v);
    V::acc_store(out, t);
    return;
  }
  alignas(64) C lanes[W];
  V::store(lanes, v);
  for (size_t l = 0; l < cnt; ++l) out[l] += double(lanes[l]);
}

// How far ahead (in values) a rows walk prefetches: at least kPrefetch values and a whole number of
// blocks of `block` values, so that the targets of consecutive blocks tile the memory after them.
static size_t rows_ahead(size_t block) {
  return block == 0 ? kPrefetch : (kPrefetch + block - 1) / block * block;
}

// Whole blocks of B vectors of channels from column j0 over rows [r0, r1) of a strip (no lane
// count to carry); returns the column after the last block.
template <size_t B, class F, class P>
static size_t reduce_row_blocks(const T* a, size_t r0, size_t r1, size_t ch, size_t j0, const C* shift, double* out_s,
                                double* out_q, F& f, P& pf) {
  for (; j0 + B * W <= ch; j0 += B * W) {
    Vec sh[B], ps[B], pq[B];
#pragma GCC unroll 8
    for (size_t u = 0; u < B; ++u) {
      sh[u] = V::load(shift + j0 + u * W);
      ps[u] = pq[u] = V::set1(C(0));
    }
    // scalar math: that of f for channels j0 + u * W + lane of row r
    for (size_t r = r0; r < r1; ++r) {
#pragma GCC unroll 8
      for (size_t u = 0; u < B; ++u) {
        const size_t q = r * ch + j0 + u * W;
        pf(q);
        f(ps[u], pq[u], V::load(a + q), Vec(), sh[u]);
      }
    }
#pragma GCC unroll 8
    for (size_t u = 0; u < B; ++u) {
      add_lanes(out_s + j0 + u * W, ps[u], W);
      add_lanes(out_q + j0 + u * W, pq[u], W);
    }
  }
  return j0;
}

// f(ps, pq, va, -, vshift): adds one vector of channels of a into the partials. Lanes past ch
// load 0 (shift too) and must add 0. A strip of kPartial rows is contiguous memory; each load
// also requests the line `ahead` values on (strips ahead, same column), so the walk reads memory
// as a stream although it goes column block by column block within a strip.
template <class F>
static void reduce_rows(const T* a, size_t rows, size_t ch, const C* shift, double* out_s, double* out_q, F&& f) {
  const size_t ahead = rows_ahead(kPartial * ch);
  auto pf = [&](size_t q) { prefetch_next(a + q, ahead); };
  for (size_t r0 = 0; r0 < rows; r0 += kPartial) {
    const size_t r1 = rows - r0 < kPartial ? rows : r0 + kPartial;
    size_t j0 = reduce_row_blocks<kRowBlock>(a, r0, r1, ch, 0, shift, out_s, out_q, f, pf);
    if constexpr (kRowBlock > 4) j0 = reduce_row_blocks<4>(a, r0, r1, ch, j0, shift, out_s, out_q, f, pf);
    // The rest, a vector at a time (the last one partial, lanes past ch loading 0).
    for (; j0 < ch; j0 += W) {
      const size_t cnt = ch - j0 < W ? ch - j0 : W;
      const Vec sh = V::load_tail(shift + j0, cnt, C(0));
      Vec ps = V::set1(C(0)), pq = ps;
      // scalar math: the same, lanes past ch loading 0
      for (size_t r = r0; r < r1; ++r) {
        const size_t q = r * ch + j0;
        pf(q);
        f(ps, pq, V::load_tail(a + q, cnt, C(0)), Vec(), sh);
      }
      add_lanes(out_s + j0, ps, cnt);
      add_lanes(out_q + j0, pq, cnt);
    }
  }
}

// Values of a column block of reduce_rows_in_order: its partial sums (two arrays of 8 KiB: 2048
// float32 channels, a ResNet's widest, whole) stay in L1 beside the lines streaming through it.
// Rows cut into blocks read slower (bench/PERFORMANCE.md, fifteenth round).
static constexpr size_t kOrderedColumns = 8192 / sizeof(C);

// The reductions of two tensors (backward): each strip's rows in memory order, a column block
// (kOrderedColumns values) at a time, the strip's partial sums in L1 instead of registers, so
// that both tensors are read as two plain streams the hardware prefetcher follows (no software
// prefetch: reduce_rows' column-block walk, with its prefetches, reads two tensors markedly
// slower than a plain read of them; bench/PERFORMANCE.md, fifteenth round). Per channel the same
// additions in the same order as a strip of reduce_rows: the sums keep their bits. kMask: a (dy)
// gated by m (y), as in reduce_runs.
template <bool kMask, class F>
static void reduce_rows_in_order(const T* a, const T* b, size_t rows, size_t ch, const C* shift, double* out_s,
                                 double* out_q, F&& f, const T* m = nullptr) {
  alignas(64) C part_s[kOrderedColumns], part_q[kOrderedColumns];
  for (size_t j0 = 0; j0 < ch; j0 += kOrderedColumns) {
    const size_t cols = ch - j0 < kOrderedColumns ? ch - j0 : kOrderedColumns;
    for (size_t r0 = 0; r0 < rows; r0 += kPartial) {
      const size_t r1 = rows - r0 < kPartial ? rows : r0 + kPartial;
      for (size_t j = 0; j < cols; j += W) {
        V::store(part_s + j, V::set1(C(0)));
        V::store(part_q + j, V::set1(C(0)));
      }
      for (size_t r = r0; r < r1; ++r) {
        const size_t o = r * ch + j0;
        size_t j = 0;
        // scalar math: that of f for channel j0 + j of row r, its partials in part_s[j], part_q[j]
        for (; j + W <= cols; j += W) {
          Vec ps = V::load(part_s + j), pq = V::load(part_q + j);
          f(ps, pq, load_dy<kMask>(a + o + j, at(m, o + j)), V::load(b + o + j), V::load(shift + j0 + j));
          V::store(part_s + j, ps);
          V::store(part_q + j, pq);
        }
        if (j < cols) {
          // The last lanes (cols - j of them); lanes past ch load 0 (shift too) and add 0.
          const size_t cnt = cols - j;
          Vec ps = V::load(part_s + j), pq = V::load(part_q + j);
          f(ps, pq, load_dy_tail<kMask>(a + o + j, at(m, o + j), cnt, C(0)), V::load_tail(b + o + j, cnt, C(0)),
            V::load_tail(shift + j0 + j, cnt, C(0)));
          V::store(part_s + j, ps);
          V::store(part_q + j, pq);
        }
      }
      for (size_t j = 0; j < cols; j += W) {
        const size_t cnt = cols - j < W ? cols - j : W;
        add_lanes(out_s + j0 + j, V::load(part_s + j), cnt);
        add_lanes(out_q + j0 + j, V::load(part_q + j), cnt);
      }
    }
  }
}

static void stats_rows(const T* x, size_t rows, size_t ch, const C* k, double* sum, double* sumsq) {
  reduce_rows(x, rows, ch, k, sum, sumsq, StatsStep());
}

static void bwd_reduce_rows(const T* x, const T* dy, size_t rows, size_t ch, const C* c, double* sum_dy,
                            double* sum_dyxc) {
  reduce_rows_in_order<false>(dy, x, rows, ch, c, sum_dy, sum_dyxc, BwdStep());
}

// The writers walk tiles of kWriteRows rows by kWriteCols vectors of channels: a tile's
// coefficients are loaded once for its rows (not once per row), each row of a tile is a
// contiguous run of kWriteCols vectors, and each load of x (dy) requests the line `ahead` values
// on. Streaming stores when asked and every row has the same alignment (ch a multiple of the
// streaming alignment). y aligned: the columns [0, ch) of each row. y misaligned by h values (as
// JavaScript's arrays are, 16 bytes into a malloc'ed block): the walk is shifted by h, row r's
// columns [h, ch + h) ending with the first h values of row r + 1, so every vector is a whole
// aligned line; only the call's first h values and its last row's last vector are plain masked
// stores.
static constexpr size_t kWriteRows = 4;
static constexpr size_t kWriteCols = 4;

// Coefficients for channels j, j + 1, ... wrapping past ch to channel 0 (the shifted walk's vector
// that crosses into the next row; j < ch <= j + W then).
static Vec load_coef(const C* p, size_t j, size_t ch) {
  if (j + W <= ch) return V::load(p + j);
  alignas(64) C lanes[W];
  for (size_t l = 0; l < W; ++l) lanes[l] = p[j + l < ch ? j + l : j + l - ch];
  return V::load(lanes);
}

// The rows writers' prefetches: pf(p) requests the input line `ahead` values past p;
// pf.output(p), the output's line `out` values past p (0: none; see write_rows_blocks).
struct RowsAhead {
  size_t ahead;
  size_t out;
  void operator()(const T* p) const { prefetch_next(p, ahead); }
  void output(const T* p) const {
    if (out != 0) prefetch_next(p, out);
  }
};

// Rows in a tile of a streamed walk that keep its loads off the lines it streamed (store_alias.h).
static size_t streamed_tile_rows(const T* y, size_t ch, const T* const (&inputs)[3]) {
  const size_t row = kWriteCols * W < ch ? kWriteCols * W : ch;  // a tile row's values
  auto addr = [](const T* p) { return reinterpret_cast<uintptr_t>(p); };
  const uintptr_t in[3] = {addr(inputs[0]), addr(inputs[1]), addr(inputs[2])};
  return alias_free_tile_rows(addr(y), ch * sizeof(T), row * sizeof(T), in, kWriteRows);
}

// loop(j, cnt, r0, r1, store, pf): channels [j, j + cnt) over rows [r0, r1), cnt being
// kWriteCols * W (a tile), W, or less (masked, plain stores); columns past ch continue into the
// next row (the shifted walk; the loop loads coefficients with load_coef). The walk shared by the
// rows writers. `fresh`: y is none of the call's inputs; where its stores are plain, the loop also
// requests y's line `ahead` values on (pf.output), so that a cold output's reads for ownership
// start early (an input's lines are requested as that input's). `inputs`: what the loop loads
// (null: none), for the streamed tiles' rows.
template <class Loop>
static void write_rows_blocks(const T* y, size_t rows, size_t ch, bool stream, bool fresh, const T* const (&inputs)[3],
                              Loop&& loop) {
  if (rows == 0) return;  // the shifted walk writes the first row's head unconditionally
  auto plain = [](T* d, Vec v) { V::store(d, v); };
  auto nt = [](T* d, Vec v) { V::stream(d, v); };
  const bool whole_lines = stream && (ch * sizeof(T)) % V::kStreamAlign == 0;
  const size_t ahead = rows_ahead(kWriteRows * ch);
  const RowsAhead pf{ahead, fresh && !whole_lines ? ahead : 0};  // whole lines: streamed
  const size_t tile = whole_lines ? streamed_tile_rows(y, ch, inputs) : kWriteRows;
  // A tile streams a block of each of its rows in turn: a block aligned to the vector alone ends
  // in a half-written line that waits, its write-combining buffer open, until the tile comes back
  // to its row. Where rows are whole lines and a tile holds more than two (two measured no better:
  // bench/PERFORMANCE.md, sixteenth round), blocks start on a line.
  const bool line_blocks = tile > 2 && ch % kLineValues == 0;
  const size_t h = whole_lines ? head_to_align(y, ch, line_blocks ? kLineValues * sizeof(T) : V::kStreamAlign) : 0;
  if (h != 0) {  // the same h for every row: the columns shift by h, wrapping into the next row
    for (size_t v = 0; v < h; v += W) {  // the first row's first h values, a vector at a time
      loop(v, h - v < W ? h - v : W, size_t(0), size_t(1), plain, pf);
    }
    for (size_t r0 = 0; r0 < rows; r0 += tile) {
      const size_t r1 = rows - r0 < tile ? rows : r0 + tile;
      // The call's last row stops at ch: what follows it is not this call's.
      const size_t full = r1 == rows ? r1 - 1 : r1;
      auto last_row = [&](size_t j, size_t span) {
        for (size_t v = j; v < j + span && v < ch; v += W) {
          if (v + W <= ch) loop(v, W, rows - 1, rows, nt, pf); else loop(v, ch - v, rows - 1, rows, plain, pf);
        }
      };
      size_t j = h;
      for (; j + kWriteCols * W <= ch + h; j += kWriteCols * W) {
        if (full > r0) loop(j, kWriteCols * W, r0, full, nt, pf);
        if (full < r1) last_row(j, kWriteCols * W);
      }
      for (; j < ch + h; j += W) {
        if (full > r0) loop(j, W, r0, full, nt, pf);
        if (full < r1) last_row(j, W);
      }
    }
    return;
  }
  const bool st = whole_lines && h == 0;
  for (size_t r0 = 0; r0 < rows; r0 += tile) {
    const size_t r1 = rows - r0 < tile ? rows : r0 + tile;
    size_t j = 0;
    for (; j + kWriteCols * W <= ch; j += kWriteCols * W) {
      if (st) loop(j, kWriteCols * W, r0, r1, nt, pf); else loop(j, kWriteCols * W, r0, r1, plain, pf);
    }
    for (; j < ch; j += W) {
      const size_t cnt = ch - j < W ? ch - j : W;
      if (st && cnt == W) loop(j, cnt, r0, r1, nt, pf); else loop(j, cnt, r0, r1, plain, pf);
    }
  }
}

// The rows writers' masked vectors are partial (write_rows_blocks passes cnt < W there): said to
// the compiler, which otherwise warns that a tail mask for cnt > W would read outside its table.
static void partial_only(size_t cnt) {
  if (cnt >= W) __builtin_unreachable();
}

template <Epilogue E>
static void affine_rows(const T* x, T* y, const T* res, size_t rows, size_t ch, const C* c, const C* a, const C* b,
                        bool stream) {
  write_rows_blocks(y, rows, ch, stream, y != x && y != res, {x, res, nullptr},
                    [&](size_t j, size_t cnt, size_t r0, size_t r1, auto store, auto pf) {
    if (cnt == kWriteCols * W) {
      Vec vc[kWriteCols], va[kWriteCols], vb[kWriteCols];
#pragma GCC unroll 8
      for (size_t u = 0; u < kWriteCols; ++u) {
        vc[u] = load_coef(c, j + u * W, ch);
        va[u] = load_coef(a, j + u * W, ch);
        vb[u] = load_coef(b, j + u * W, ch);
      }
      // scalar math: y[r][j] = (x[r][j] - c[j]) * a[j] + b[j]
      for (size_t r = r0; r < r1; ++r) {
#pragma GCC unroll 8
        for (size_t u = 0; u < kWriteCols; ++u) {
          const size_t q = r * ch + j + u * W;
          pf(x + q);
          pf.output(y + q);
          store(y + q, epilogue<E>(mul_add(V::sub(V::load(x + q), vc[u]), va[u], vb[u]), at(res, q), W));
        }
      }
      return;
    }
    if (cnt == W) {
      const Vec vc = load_coef(c, j, ch), va = load_coef(a, j, ch), vb = load_coef(b, j, ch);
      // scalar math: the same, one vector
      for (size_t r = r0; r < r1; ++r) {
        const size_t q = r * ch + j;
        pf(x + q);
        pf.output(y + q);
        store(y + q, epilogue<E>(mul_add(V::sub(V::load(x + q), vc), va, vb), at(res, q), W));
      }
      return;
    }
    partial_only(cnt);
    const Vec vc = V::load_tail(c + j, cnt, C(0)), va = V::load_tail(a + j, cnt, C(0)),
              vb = V::load_tail(b + j, cnt, C(0));
    // scalar math: the same on the last cnt channels (masked loads and stores)
    for (size_t r = r0; r < r1; ++r) {
      const size_t q = r * ch + j;
      const Vec v = mul_add(V::sub(V::load_tail(x + q, cnt, C(0)), vc), va, vb);
      V::store_tail(y + q, epilogue<E>(v, at(res, q), cnt), cnt);
    }
  });
}

template <Epilogue E>
static void bwd_dx_rows(const T* x, const T* dy, T* dx, const T* res, size_t rows, size_t ch, const C* c,
                        const C* k1, const C* k2, const C* k3, bool stream) {
  write_rows_blocks(dx, rows, ch, stream, dx != x && dx != dy && dx != res, {x, dy, res},
                    [&](size_t j, size_t cnt, size_t r0, size_t r1, auto store, auto pf) {
    if (cnt == kWriteCols * W) {
      Vec vc[kWriteCols], v1[kWriteCols], v2[kWriteCols], v3[kWriteCols];
#pragma GCC unroll 8
      for (size_t u = 0; u < kWriteCols; ++u) {
        vc[u] = load_coef(c, j + u * W, ch);
        v1[u] = load_coef(k1, j + u * W, ch);
        v2[u] = load_coef(k2, j + u * W, ch);
        v3[u] = load_coef(k3, j + u * W, ch);
      }
      // scalar math: dx[r][j] = dy[r][j] * k1[j] + ((x[r][j] - c[j]) * k2[j] + k3[j])
      for (size_t r = r0; r < r1; ++r) {
#pragma GCC unroll 8
        for (size_t u = 0; u < kWriteCols; ++u) {
          const size_t q = r * ch + j + u * W;
          pf(x + q);
          pf(dy + q);
          pf.output(dx + q);
          store(dx + q, epilogue<E>(dx_vec(V::load(x + q), V::load(dy + q), vc[u], v1[u], v2[u], v3[u]), at(res, q), W));
        }
      }
      return;
    }
    if (cnt == W) {
      const Vec vc = load_coef(c, j, ch), v1 = load_coef(k1, j, ch), v2 = load_coef(k2, j, ch), v3 = load_coef(k3, j, ch);
      // scalar math: the same, one vector
      for (size_t r = r0; r < r1; ++r) {
        const size_t q = r * ch + j;
        pf(x + q);
        pf(dy + q);
        pf.output(dx + q);
        store(dx + q, epilogue<E>(dx_vec(V::load(x + q), V::load(dy + q), vc, v1, v2, v3), at(res, q), W));
      }
      return;
    }
    partial_only(cnt);
    const Vec vc = V::load_tail(c + j, cnt, C(0)), v1 = V::load_tail(k1 + j, cnt, C(0)),
              v2 = V::load_tail(k2 + j, cnt, C(0)), v3 = V::load_tail(k3 + j, cnt, C(0));
    // scalar math: the same on the last cnt channels (masked loads and stores)
    for (size_t r = r0; r < r1; ++r) {
      const size_t q = r * ch + j;
      const Vec v = dx_vec(V::load_tail(x + q, cnt, C(0)), V::load_tail(dy + q, cnt, C(0)), vc, v1, v2, v3);
      V::store_tail(dx + q, epilogue<E>(v, at(res, q), cnt), cnt);
    }
  });
}

// Backward through a fused ReLU (MaskedBackwardKernels), rows layout: g = y <= 0 ? 0 : dy, written
// to dres unless null, then dx from g as bwd_dx_rows (kX), or dx = g * k1 (evaluation mode).
template <bool kX>
static void dx_relu_rows(const T* x, const T* dy, const T* y, T* dx, T* dres, size_t rows, size_t ch, const C* c,
                         const C* k1, const C* k2, const C* k3) {
  for (size_t r = 0; r < rows; ++r) {
    const size_t o = r * ch;
    auto dx_of = [&](size_t j, C g) {
      if constexpr (kX) return mul_add1(g, k1[j], mul_add1(C(x[o + j]) - c[j], k2[j], k3[j]));
      return g * k1[j];
    };
    if (dres != nullptr) {
      // scalar math: g = gate(dy, y); dres[j] = g; dx[j] = g * k1[j] + ((x[j] - c[j]) * k2[j] + k3[j])
      for (size_t j = 0; j < ch; ++j) {
        const C g = gate1(C(dy[o + j]), C(y[o + j]));
        dres[o + j] = T(g);
        dx[o + j] = T(dx_of(j, g));
      }
    } else {
      // scalar math: the same without dres
      for (size_t j = 0; j < ch; ++j) dx[o + j] = T(dx_of(j, gate1(C(dy[o + j]), C(y[o + j]))));
    }
  }
}

static void bwd_reduce_relu_rows(const T* x, const T* dy, const T* y, size_t rows, size_t ch, const C* c,
                                 double* sum_dy, double* sum_dyxc) {
  reduce_rows_in_order<true>(dy, x, rows, ch, c, sum_dy, sum_dyxc, BwdStep(), y);
}

static void bwd_dx_relu_rows(const T* x, const T* dy, const T* y, T* dx, T* dres, size_t rows, size_t ch, const C* c,
                             const C* k1, const C* k2, const C* k3) {
  dx_relu_rows<true>(x, dy, y, dx, dres, rows, ch, c, k1, k2, k3);
}

static void bwd_scale_relu_rows(const T* dy, const T* y, T* dx, T* dres, size_t rows, size_t ch, const C* k1) {
  // k1 stands in for c, k2, k3: without kX their values are not read.
  dx_relu_rows<false>(nullptr, dy, y, dx, dres, rows, ch, k1, k1, k1, k1);
}
