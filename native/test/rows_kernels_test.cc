// Rows kernels (kernels_rows.inl): `rows` rows of `ch` channels, channel fastest, per-channel
// arrays and accumulators of length ch with guard regions.
#include "kernel_tester.h"
#include "memory.h"

namespace bntest {
namespace {

template <typename T>
struct RowsKernelTester : KernelTesterBase<T> {
  BN_TESTER_USES_BASE(T);

  std::string ctx(const char* kernel, size_t n, size_t off, int regime, size_t rows, int stream = -1,
                  bool same_page = false) const {
    return fmt("kernel %s rows=%zu ch=%zu off=%zu %s%s%s", kname(kernel).c_str(), rows, n, off,
               regime ? "offset100/inplace" : "centered", stream < 0 ? "" : (stream ? " stream" : ""),
               same_page ? " inputs at the output's 4 KiB offset" : "");
  }

  // same_page: every array at the same offset from a 4 KiB boundary (pre = kGuardPre + off).
  static size_t pre_of(size_t off, bool same_page) { return same_page ? kGuardPre + off : off; }
  static size_t align_of(bool same_page) { return same_page ? 4096 : 64; }

  // The partial sums of a channel depend on the strips of kPartial (8) rows only: per strip, the
  // terms added in T in row order, then widened and added in float64 in strip order. Plain adds
  // (the first sum of each reduction) are the same at every ISA, so they are checked bit for bit.
  template <class Term>
  static double strip_sum(double start, size_t rows, Term term) {
    double acc = start;
    for (size_t r0 = 0; r0 < rows; r0 += 8) {
      T p = T(0);
      for (size_t r = r0; r < rows && r < r0 + 8; ++r) p = T(p + term(r));
      acc += double(p);
    }
    return acc;
  }

  void stats_rows(size_t rows, size_t ch, size_t off, int regime) {
    const std::string c = ctx("stats_rows", ch, off, regime, rows);
    const double center = regime ? 100.0 : 0.0;
    Buf<T> x(rows * ch, off, 0), k(ch, off, 0);
    fill(x, r, center, 2.0);
    fill_vec(k, center, 1.0);
    Buf<double> sum(ch, kGuardPre + off, kGuardPost), sq(ch, kGuardPre + off, kGuardPost);
    std::vector<double> sum0(ch), sq0(ch);
    for (size_t j = 0; j < ch; ++j) {
      sum[j] = sum0[j] = r.sym();
      sq[j] = sq0[j] = r.uniform();
    }
    kt.stats_rows(x.data(), rows, ch, k.data(), sum.data(), sq.data());
    for (size_t j = 0; j < ch; ++j) {
      const double want = strip_sum(sum0[j], rows, [&](size_t i) { return T(x[i * ch + j] - k[j]); });
      if (!(sum[j] == want)) {
        check(false, "%s: sum[%zu] = %.17g, not the strips' sum %.17g (bit for bit)", c.c_str(), j, sum[j], want);
        break;
      }
    }
    ElemCheck es, eq, ms, mq;
    for (size_t j = 0; j < ch; ++j) {
      KSum s1, s2, m1, m2;
      double a1 = std::fabs(sum0[j]), a2 = sq0[j];
      for (size_t i = 0; i < rows; ++i) {
        const T xv = x[i * ch + j];
        const double d = double(xv) - double(k[j]);
        s1.add(d);
        s2.add(d * d);
        a1 += std::fabs(d);
        a2 += d * d;
        const T dt = T(xv - k[j]);
        m1.add(double(dt));
        m2.add(double(dt) * double(dt));
      }
      es.add(j, sum[j], sum0[j] + s1.get(), TI<T>::acc_rel * a1 + 1e-300);
      eq.add(j, sq[j], sq0[j] + s2.get(), TI<T>::acc_rel * a2 + 1e-300);
      ms.add(j, sum[j], sum0[j] + m1.get(), TI<T>::partial_rel * a1 + 1e-300);
      mq.add(j, sq[j], sq0[j] + m2.get(), TI<T>::partial_rel * a2 + 1e-300);
    }
    es.report(c, "sum");
    eq.report(c, "sumsq");
    ms.report(c, "sum (T terms, f64 accumulation)");
    mq.report(c, "sumsq (T terms, f64 accumulation)");
    check(sum.guards_intact() && sq.guards_intact(), "%s: wrote outside sum/sumsq[0, ch)", c.c_str());
  }

  void affine_rows(size_t rows, size_t ch, size_t off, int regime, bool stream, bool same_page = false) {
    const std::string c = ctx("affine_rows", ch, off, regime, rows, stream, same_page);
    const double center = regime ? 100.0 : 0.0;
    Buf<T> x(rows * ch, pre_of(off, same_page), 0, align_of(same_page)), cc(ch, off, 0), a(ch, off, 0), b(ch, off, 0);
    fill(x, r, center, 2.0);
    fill_vec(cc, center, 0.5);
    fill_vec(a, 0.0, 1.5);
    fill_vec(b, 0.0, 1.0);
    Buf<T> y(rows * ch, kGuardPre + off, kGuardPost, align_of(same_page));
    if (regime == 1) {
      for (size_t i = 0; i < rows * ch; ++i) y[i] = x[i];
      kw.affine_rows(y.data(), y.data(), nullptr, rows, ch, cc.data(), a.data(), b.data(), stream);
    } else {
      kw.affine_rows(x.data(), y.data(), nullptr, rows, ch, cc.data(), a.data(), b.data(), stream);
    }
    bn::store_fence();
    ElemCheck ec;
    for (size_t i = 0; i < rows; ++i) {
      for (size_t j = 0; j < ch; ++j) {
        const double xc = double(x[i * ch + j]) - double(cc[j]);
        const double t = xc * double(a[j]);
        ec.add(i * ch + j, double(y[i * ch + j]), t + double(b[j]),
               8 * eT * (std::fabs(t) + std::fabs(double(b[j]))) + 1e-300);
      }
    }
    ec.report(c, "y");
    check(y.guards_intact(), "%s: wrote outside y[0, rows*ch)", c.c_str());
  }

  void bwd_reduce_rows(size_t rows, size_t ch, size_t off, int regime) {
    const std::string c = ctx("bwd_reduce_rows", ch, off, regime, rows);
    const double center = regime ? 100.0 : 0.0;
    Buf<T> x(rows * ch, off, 0), dy(rows * ch, off, 0), cc(ch, off, 0);
    fill(x, r, center, 2.0);
    fill(dy, r, 0.0, 1.0);
    fill_vec(cc, center, 0.5);
    Buf<double> g(ch, kGuardPre + off, kGuardPost), p(ch, kGuardPre + off, kGuardPost);
    std::vector<double> g0(ch), p0(ch);
    for (size_t j = 0; j < ch; ++j) {
      g[j] = g0[j] = r.sym();
      p[j] = p0[j] = r.sym();
    }
    kt.bwd_reduce_rows(x.data(), dy.data(), rows, ch, cc.data(), g.data(), p.data());
    for (size_t j = 0; j < ch; ++j) {
      const double want = strip_sum(g0[j], rows, [&](size_t i) { return dy[i * ch + j]; });
      if (!(g[j] == want)) {
        check(false, "%s: sum_dy[%zu] = %.17g, not the strips' sum %.17g (bit for bit)", c.c_str(), j, g[j], want);
        break;
      }
    }
    ElemCheck eg, ep, mp;
    for (size_t j = 0; j < ch; ++j) {
      KSum sg, sp, m;
      double ag = std::fabs(g0[j]), ap = std::fabs(p0[j]);
      for (size_t i = 0; i < rows; ++i) {
        const T xv = x[i * ch + j], gv = dy[i * ch + j];
        const double d = double(xv) - double(cc[j]);
        sg.add(double(gv));
        sp.add(double(gv) * d);
        ag += std::fabs(double(gv));
        ap += std::fabs(double(gv) * d);
        m.add(double(gv) * double(T(xv - cc[j])));
      }
      eg.add(j, g[j], g0[j] + sg.get(), TI<T>::acc_rel * ag + 1e-300);
      ep.add(j, p[j], p0[j] + sp.get(), TI<T>::acc_rel * ap + 1e-300);
      mp.add(j, p[j], p0[j] + m.get(), TI<T>::partial_rel * ap + 1e-300);
    }
    eg.report(c, "sum_dy");
    ep.report(c, "sum_dyxc");
    mp.report(c, "sum_dyxc (T terms, f64 accumulation)");
    check(g.guards_intact() && p.guards_intact(), "%s: wrote outside sum_dy/sum_dyxc[0, ch)",
          c.c_str());
  }

  void bwd_dx_rows(size_t rows, size_t ch, size_t off, int regime, bool stream, bool same_page = false) {
    const std::string c = ctx("bwd_dx_rows", ch, off, regime, rows, stream, same_page);
    const double center = regime ? 100.0 : 0.0;
    const size_t pre = pre_of(off, same_page), align = align_of(same_page);
    Buf<T> x(rows * ch, pre, 0, align), dy(rows * ch, pre, 0, align), cc(ch, off, 0), k1(ch, off, 0),
        k2(ch, off, 0), k3(ch, off, 0);
    fill_dx_inputs(x, dy, cc, k1, k2, k3, center);
    Buf<T> dx(rows * ch, kGuardPre + off, kGuardPost, align);
    if (regime == 1) {  // dx aliases dy
      for (size_t i = 0; i < rows * ch; ++i) dx[i] = dy[i];
      kw.bwd_dx_rows(x.data(), dx.data(), dx.data(), nullptr, rows, ch, cc.data(), k1.data(), k2.data(),
                     k3.data(), stream);
    } else {
      kw.bwd_dx_rows(x.data(), dy.data(), dx.data(), nullptr, rows, ch, cc.data(), k1.data(), k2.data(),
                     k3.data(), stream);
    }
    bn::store_fence();
    ElemCheck ec;
    for (size_t i = 0; i < rows; ++i) {
      for (size_t j = 0; j < ch; ++j) {
        const size_t q = i * ch + j;
        add_dx(ec, q, dx[q], x[q], dy[q], cc[j], k1[j], k2[j], k3[j]);
      }
    }
    ec.report(c, "dx");
    check(dx.guards_intact(), "%s: wrote outside dx[0, rows*ch)", c.c_str());
  }

  // ---- group kernels: `runs` contiguous runs of n values (one per channel) per sample ----
  // Reductions take `rows` samples, stride apart (the gap after each sample's runs is NaN); the
  // writers take one sample's runs as one span. 17 samples cross several widenings of the

  void run_all(size_t w) {
    std::vector<size_t> sizes = sweep_sizes(w);
    sizes.push_back(512);  // long rows
    for (size_t n : sizes) {
      // Aligned, offset by one value, and by 16 bytes (JavaScript's arrays): the misaligned
      // writers that stream take the shifted walk (rows crossing into the next row's lines).
      for (size_t off : {size_t(0), size_t(1), 16 / sizeof(T)}) {
        for (int regime : {0, 1}) {
          // Around the writers' blocks of 4 rows and the reductions' strips of 8.
          for (size_t rows : {size_t(1), size_t(3), size_t(4), size_t(5), size_t(8), size_t(9), size_t(17)}) {
            if (n > 100 && rows > 5 && rows != 17) continue;  // the long rows: a few counts are enough
            stats_rows(rows, n, off, regime);
            bwd_reduce_rows(rows, n, off, regime);
            for (bool stream : {false, true}) {  // streams only where every row has y's alignment: n a multiple of w
              affine_rows(rows, n, off, regime, stream);
              bwd_dx_rows(rows, n, off, regime, stream);
            }
          }
        }
      }
    }
  }

  // Rows wider than the backward reductions' column block (kOrderedColumns: 8 KiB of partial
  // sums per array, 2048 float32 or 1024 float64 values): one value short of it, exactly it, past it
  // by a partial vector, and cut into three blocks.
  void run_wide() {
    const size_t block = 8192 / sizeof(T);
    for (size_t ch : {block - 1, block, block + 3, 2 * block + 5}) {
      for (size_t off : {size_t(0), size_t(1)}) {
        for (int regime : {0, 1}) {
          for (size_t rows : {size_t(1), size_t(9)}) {
            bwd_reduce_rows(rows, ch, off, regime);
            stats_rows(rows, ch, off, regime);
          }
        }
      }
    }
  }

  // Inputs at the output's 4 KiB offset (as large allocations are) with rows 1, 2 and 4 KiB long:
  // a streamed walk then takes tiles of 4, 2 and 1 rows (streamed_tile_rows), aligned and shifted
  // (16 and 48 bytes in) or aligned to the vector but not to the line (32 bytes in): tiles of more
  // than two rows then start their blocks on a line after a head of 12, 4 or 8 float32 values
  // (6, 2 or 4 float64), every row count around them.
  void run_same_page() {
    for (size_t bytes : {size_t(1024), size_t(2048), size_t(4096)}) {
      const size_t ch = bytes / sizeof(T);
      for (size_t off : {size_t(0), 16 / sizeof(T), 32 / sizeof(T), 48 / sizeof(T)}) {
        for (size_t rows : {size_t(1), size_t(2), size_t(3), size_t(5), size_t(9)}) {
          affine_rows(rows, ch, off, 0, true, true);
          bwd_dx_rows(rows, ch, off, 0, true, true);
        }
      }
    }
  }
};

}  // namespace

void test_rows_kernels(const char* isa, const bn::KernelSet& ks, size_t w32, size_t w64, Rng& rng) {
  RowsKernelTester<float>{{isa, ks.f32, rng}}.run_all(w32);
  RowsKernelTester<double>{{isa, ks.f64, rng}}.run_all(w64);
  RowsKernelTester<float>{{isa, ks.f32, rng}}.run_same_page();
  RowsKernelTester<double>{{isa, ks.f64, rng}}.run_same_page();
  RowsKernelTester<float>{{isa, ks.f32, rng}}.run_wide();
  RowsKernelTester<double>{{isa, ks.f64, rng}}.run_wide();
}

}  // namespace bntest
