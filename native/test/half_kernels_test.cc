// The 16-bit storage kernel tables (bf16, f16) of every ISA this build and CPU run, the AVX512_BF16
// bfloat16 table included: the writers (affine, affine + stats, dx; run, group and rows layouts)
// bit for bit equal to the scalar table's (the same float formula at every level, and one
// conversion rule: convert_rule.h), swept over sizes around the vector width, offsets (2-byte
// alignments), streaming on and off, NaN-poisoned outputs with guards, inputs with subnormals,
// infinities and NaNs; the reductions against a compensated float64 reference with the float
// partial-sum bound (TI<float>::partial_rel: the compute type is float).
#include "convert_kernels.h"
#include "kernel_tester.h"

namespace bntest {
namespace {

template <typename S>
struct HalfTester {
  const char* isa;
  const bn::KernelTable<S>& kt;
  const bn::KernelTable<S>& ref;  // the scalar table
  Rng& r;
  const bn::ElementwiseKernels<S>& kw = kt.writers(bn::Epilogue::kNone);
  const bn::ElementwiseKernels<S>& rw = ref.writers(bn::Epilogue::kNone);

  std::string ctx(const char* kernel, size_t rows, size_t n, size_t off, bool stream) const {
    return fmt("kernel %s_%s__%s rows=%zu n=%zu off=%zu%s", bn::dtype_name<S>(), kernel, isa, rows, n, off, stream ? " stream" : "");
  }

  // Mostly normal values around `center`; every 13th a special one (subnormal, +-inf, NaN, +-0).
  void fill(Buf<S>& b, double center, double scale, bool specials) {
    static const float kSpecial[] = {1e-40f, -3e-39f, 1e-45f, INFINITY, -INFINITY, NAN, 0.0f, -0.0f, 6e-8f, -5.9e-8f};
    for (size_t i = 0; i < b.size(); ++i) {
      b[i] = S(float(center + scale * r.normal()));
      if (specials && i % 13 == 5) b[i] = S(kSpecial[(i / 13) % 10]);
    }
  }

  void same_bits(const std::string& c, const Buf<S>& got, const Buf<S>& want, const char* what) {
    size_t bad = 0, first = 0;
    for (size_t i = 0; i < got.size(); ++i) {
      if (std::memcmp(&got[i], &want[i], sizeof(S)) != 0 && bad++ == 0) first = i;
    }
    check(bad == 0, "%s: %s: %zu of %zu differ from the scalar table's; first [%zu] 0x%04x vs 0x%04x", c.c_str(), what, bad,
          got.size(), first, bad ? unsigned(got[first].bits) : 0u, bad ? unsigned(want[first].bits) : 0u);
    check(got.guards_intact(), "%s: %s written outside", c.c_str(), what);
  }

  void writers_run(size_t rows, size_t n, size_t off, bool stream, bool specials) {
    const size_t stride = rows == 1 ? n : n + 3;
    const size_t span = rows == 0 ? 0 : (rows - 1) * stride + n;
    Buf<S> x(span, off, 0), dy(span, off, 0);
    fill(x, 3.0, 2.0, specials);
    fill(dy, 0.0, 1.0, specials);
    const float c = float(3.0 + 0.5 * r.sym()), a = float(0.5 + r.uniform()), b = float(r.sym());
    const float k1 = float(2 * r.sym()), k2 = float(r.sym()), k3 = float(r.sym());
    {
      const std::string cx = ctx("affine_run", rows, n, off, stream);
      Buf<S> y(span, kGuardPre + off, kGuardPost), yr(span, kGuardPre + off, kGuardPost);
      kw.affine_run(x.data(), y.data(), nullptr, rows, n, stride, c, a, b, stream, stride);
      rw.affine_run(x.data(), yr.data(), nullptr, rows, n, stride, c, a, b, false, 0);
      same_bits(cx, y, yr, "y");
    }
    {
      const std::string cx = ctx("bwd_dx_run", rows, n, off, stream);
      Buf<S> d(span, kGuardPre + off, kGuardPost), dr(span, kGuardPre + off, kGuardPost);
      kw.bwd_dx_run(x.data(), dy.data(), d.data(), nullptr, rows, n, stride, c, k1, k2, k3, stream, stride);
      rw.bwd_dx_run(x.data(), dy.data(), dr.data(), nullptr, rows, n, stride, c, k1, k2, k3, false, 0);
      same_bits(cx, d, dr, "dx");
    }
    if (!specials) {  // the fused pass: y as affine_run's, its sums bit for bit stats_run's
      const std::string cx = ctx("affine_stats_run", rows, n, off, stream);
      Buf<S> y(span, kGuardPre + off, kGuardPost), yr(span, kGuardPre + off, kGuardPost);
      double s[2] = {0.5, 0.25}, t[2] = {0.5, 0.25};
      kw.affine_stats_run(x.data(), y.data(), nullptr, rows, n, stride, c, a, b, stream, 0, c, &s[0], &s[1]);
      rw.affine_run(x.data(), yr.data(), nullptr, rows, n, stride, c, a, b, false, 0);
      kt.stats_run(x.data(), rows, n, stride, c, &t[0], &t[1]);
      same_bits(cx, y, yr, "y");
      check(std::memcmp(s, t, sizeof s) == 0, "%s: sums differ from stats_run's", cx.c_str());
    }
  }

  void writers_group(size_t runs, size_t n, size_t off, bool stream, bool specials) {
    const size_t total = runs * n;
    Buf<S> x(total, off, 0), dy(total, off, 0);
    fill(x, -2.0, 3.0, specials);
    fill(dy, 0.0, 1.0, specials);
    std::vector<float> c(runs), a(runs), b(runs), k2(runs);
    for (size_t j = 0; j < runs; ++j) c[j] = float(-2 + r.sym()), a[j] = float(r.sym() * 3), b[j] = float(r.sym()), k2[j] = float(r.sym());
    const std::string cx = ctx("affine_group", runs, n, off, stream);
    Buf<S> y(total, kGuardPre + off, kGuardPost), yr(total, kGuardPre + off, kGuardPost);
    kw.affine_group(x.data(), y.data(), nullptr, runs, n, c.data(), a.data(), b.data(), stream, 0, stream ? 0 : runs * n);
    rw.affine_group(x.data(), yr.data(), nullptr, runs, n, c.data(), a.data(), b.data(), false, 0, 0);
    same_bits(cx, y, yr, "y");
    const std::string cd = ctx("bwd_dx_group", runs, n, off, stream);
    Buf<S> d(total, kGuardPre + off, kGuardPost), dr(total, kGuardPre + off, kGuardPost);
    kw.bwd_dx_group(x.data(), dy.data(), d.data(), nullptr, runs, n, c.data(), a.data(), k2.data(), b.data(), stream, 0,
                    stream ? 0 : runs * n);
    rw.bwd_dx_group(x.data(), dy.data(), dr.data(), nullptr, runs, n, c.data(), a.data(), k2.data(), b.data(), false, 0, 0);
    same_bits(cd, d, dr, "dx");
  }

  void writers_rows(size_t rows, size_t ch, size_t off, bool specials) {
    Buf<S> x(rows * ch, off, 0), dy(rows * ch, off, 0);
    fill(x, 1.0, 2.0, specials);
    fill(dy, 0.0, 1.0, specials);
    std::vector<float> c(ch), a(ch), b(ch), k2(ch);
    for (size_t j = 0; j < ch; ++j) c[j] = float(1 + r.sym()), a[j] = float(r.sym() * 3), b[j] = float(r.sym()), k2[j] = float(r.sym());
    // Streamed or not, the same bits as the scalar table's plain stores.
    for (bool stream : {false, true}) {
      Buf<S> y(rows * ch, kGuardPre + off, kGuardPost), yr(rows * ch, kGuardPre + off, kGuardPost);
      kw.affine_rows(x.data(), y.data(), nullptr, rows, ch, c.data(), a.data(), b.data(), stream);
      rw.affine_rows(x.data(), yr.data(), nullptr, rows, ch, c.data(), a.data(), b.data(), false);
      same_bits(ctx("affine_rows", rows, ch, off, stream), y, yr, "y");
      Buf<S> d(rows * ch, kGuardPre + off, kGuardPost), dr(rows * ch, kGuardPre + off, kGuardPost);
      kw.bwd_dx_rows(x.data(), dy.data(), d.data(), nullptr, rows, ch, c.data(), a.data(), k2.data(), b.data(), stream);
      rw.bwd_dx_rows(x.data(), dy.data(), dr.data(), nullptr, rows, ch, c.data(), a.data(), k2.data(), b.data(), false);
      same_bits(ctx("bwd_dx_rows", rows, ch, off, stream), d, dr, "dx");
    }
  }

  // stats_run / bwd_reduce_run / their group (one run wide) and rows forms against float64.
  void reductions(size_t rows, size_t n, size_t off) {
    const size_t stride = n + 2;
    const size_t span = (rows - 1) * stride + n;
    Buf<S> x(span, off, 0), dy(span, off, 0);
    fill(x, 100.0, 2.0, false);  // a mean far from 0: the shift must do its job in float
    fill(dy, 0.0, 1.0, false);
    const float k = float(100 + r.sym());
    KSum s1, s2, g1, g2;
    double a1 = 0, a2 = 0, b1 = 0, b2 = 0;
    for (size_t q = 0; q < rows; ++q) {
      for (size_t i = 0; i < n; ++i) {
        const double xv = double(x[q * stride + i]), gv = double(dy[q * stride + i]);
        s1.add(xv - k), s2.add((xv - k) * (xv - k)), g1.add(gv), g2.add(gv * (xv - k));
        a1 += std::fabs(xv - k), a2 += (xv - k) * (xv - k), b1 += std::fabs(gv), b2 += std::fabs(gv * (xv - k));
      }
    }
    const double rel = TI<float>::partial_rel;
    const std::string c = ctx("stats_run/bwd_reduce_run/_group", rows, n, off, false);
    double st[2] = {0, 0}, bw[2] = {0, 0}, sg[2] = {0, 0}, bg[2] = {0, 0};
    kt.stats_run(x.data(), rows, n, stride, k, &st[0], &st[1]);
    kt.bwd_reduce_run(x.data(), dy.data(), rows, n, stride, k, &bw[0], &bw[1]);
    kt.stats_group(x.data(), rows, stride, 1, n, &k, &sg[0], &sg[1]);
    kt.bwd_reduce_group(x.data(), dy.data(), rows, stride, 1, n, &k, &bg[0], &bg[1]);
    for (const double* p : {st, sg}) {
      check_acc(c, "sum", p[0], s1.get(), a1, rel);
      check_acc(c, "sumsq", p[1], s2.get(), a2, rel);
    }
    for (const double* p : {bw, bg}) {
      check_acc(c, "sum_dy", p[0], g1.get(), b1, rel);
      check_acc(c, "sum_dyxc", p[1], g2.get(), b2, rel);
    }
    // Rows: the same values as `rows` rows of n channels (stride = n): per-channel sums.
    Buf<S> xr(rows * n, off, 0);
    fill(xr, -50.0, 1.0, false);
    std::vector<float> kr(n, -50.0f);
    std::vector<double> rs(n, 0.0), rq(n, 0.0);
    kt.stats_rows(xr.data(), rows, n, kr.data(), rs.data(), rq.data());
    for (size_t j = 0; j < n; ++j) {
      KSum t1, t2;
      double m1 = 0, m2 = 0;
      for (size_t q = 0; q < rows; ++q) {
        const double d = double(xr[q * n + j]) + 50.0;
        t1.add(d), t2.add(d * d), m1 += std::fabs(d), m2 += d * d;
      }
      check_acc(ctx("stats_rows", rows, n, off, false), "sum", rs[j], t1.get(), m1, rel);
      check_acc(ctx("stats_rows", rows, n, off, false), "sumsq", rq[j], t2.get(), m2, rel);
    }
  }

  void run_all(size_t w) {
    for (size_t n : sweep_sizes(w)) {
      if (n == 0) continue;
      for (size_t off : {size_t(0), size_t(1), size_t(3)}) {
        for (bool specials : {false, true}) {
          for (bool stream : {false, true}) {
            writers_run(1, n, off, stream, specials);
            writers_run(3, n, off, stream, specials);
            writers_group(3, n, off, stream, specials);
          }
          writers_rows(5, n, off, specials);
        }
        reductions(3, n, off);
      }
    }
  }
};

}  // namespace

void test_half_kernels() {
  Rng rng(0x5EED0016);
  struct Entry {
    const char* name;
    bn::SimdLevel level;
    const bn::KernelSet* (*get)();
    size_t w;
  };
  std::vector<Entry> sets = {{"scalar", bn::SimdLevel::kScalar, bn::kernels_scalar, 1}};
#if defined(__x86_64__)
  sets.push_back({"avx2", bn::SimdLevel::kAvx2, bn::kernels_avx2, 8});
  sets.push_back({"avx512", bn::SimdLevel::kAvx512, bn::kernels_avx512, 16});
#endif
#if defined(__aarch64__)
  sets.push_back({"neon", bn::SimdLevel::kNeon, bn::kernels_neon, 4});
#endif
  const bn::KernelSet& scalar = *bn::kernels_scalar();
  for (const Entry& e : sets) {
    if (!bn::simd_level_supported(e.level)) {
      std::printf("half kernels: %s not supported on this CPU, skipped\n", e.name);
      continue;
    }
    const int before = g_failed;
    HalfTester<bn::bf16>{e.name, e.get()->bf16, scalar.bf16, rng}.run_all(e.w);
    HalfTester<bn::f16>{e.name, e.get()->f16, scalar.f16, rng}.run_all(e.w);
    std::printf("half kernels: %s (w = %zu) %s\n", e.name, e.w, g_failed == before ? "ok" : "FAILED");
  }
  if (bn::cpu_has_avx512_bf16() && bn::bf16_table_avx512bf16() != nullptr) {
    const int before = g_failed;
    HalfTester<bn::bf16>{"avx512bf16", *bn::bf16_table_avx512bf16(), scalar.bf16, rng}.run_all(16);
    std::printf("half kernels: avx512bf16 (w = 16) %s\n", g_failed == before ? "ok" : "FAILED");
    // The dispatcher's AVX-512 set carries this table on such a CPU.
    const bn::SimdLevel prev = bn::active_simd_level();
    bn::set_simd_level(bn::SimdLevel::kAvx512);
    check(bn::active_kernels().bf16.stats_run == bn::bf16_table_avx512bf16()->stats_run &&
              bn::active_kernels().bf16.write[0].affine_run == bn::bf16_table_avx512bf16()->write[0].affine_run,
          "the AVX-512 level does not use the AVX512_BF16 bfloat16 table on a CPU that has it");
    bn::set_simd_level(prev);
  } else {
    std::printf("half kernels: avx512bf16 not on this CPU or in this build, skipped\n");
  }
}

}  // namespace bntest
