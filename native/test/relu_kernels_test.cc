// The fused activation's kernels (issue 13), every family and ISA, f32 and f64, over the sizes
// where SIMD tails break, aligned and offset, plain and streaming stores, into poisoned outputs
// with guards:
//   - the writers of kRelu / kAddRelu (kernels_base.inl's epilogue) against the kNone writer of
//     the same table followed by the ReLU (and the residual added first) in T: bit for bit, as
//     the elementwise formulas round the same way at every level;
//   - the masked backward kernels (MaskedBackwardKernels) against the unmasked ones of the same
//     table run on dy gated by y (y <= 0 ? 0 : dy, NaN in y passing dy): bit for bit (the same
//     operations in the same order), dres = the gated dy exactly, evaluation's dx = g * k1 in T.
// y holds exact +0 and -0, negatives, NaN; inputs outside the runs are NaN (a read shows).
#include "kernel_tester.h"

namespace bntest {
namespace {

using bn::Epilogue;

template <typename T>
T relu_ref(T v) {
  return v < T(0) ? T(0) : v;
}
template <typename T>
T gate_ref(T g, T y) {
  return y <= T(0) ? T(0) : g;
}

template <typename T>
bool same_bits(T a, T b) {
  return std::memcmp(&a, &b, sizeof(T)) == 0;
}

template <typename T>
struct ReluKernelTester : KernelTesterBase<T> {
  BN_TESTER_USES_BASE(T);
  const bn::MaskedBackwardKernels<T>& mk = kt.relu_bwd;

  // The mask source: normal values, with exact +0, -0 and (unless finite_only) NaN sprinkled in.
  void fill_y(Buf<T>& y, size_t span, size_t stride, size_t n) {
    for (size_t q = 0; q < span; ++q) {
      if (q % stride >= n) continue;  // gaps keep their poison
      const double u = r.uniform();
      y[q] = u < 0.1 ? T(0) : u < 0.15 ? T(-0.0) : u < 0.18 ? T(NAN) : T(r.normal());
    }
  }
  void fill_in(Buf<T>& b, size_t span, size_t stride, size_t n, double center) {
    for (size_t q = 0; q < span; ++q) {
      if (q % stride < n) b[q] = T(center + 2.0 * r.normal());
    }
  }

  // Compares outputs over the positions q with q % stride < n (bit for bit), and that the gaps and
  // guards still hold the poison.
  void compare(const std::string& c, const char* what, const Buf<T>& got, const Buf<T>& want, size_t span, size_t stride,
               size_t n) {
    size_t bad = 0, first = 0;
    for (size_t q = 0; q < span; ++q) {
      const bool in = q % stride < n;
      const bool ok = in ? same_bits(got[q], want[q]) : is_poison(got[q]);
      if (!ok && bad++ == 0) first = q;
    }
    check(bad == 0, "%s: %s: %zu wrong; first [%zu] got %.9g want %.9g", c.c_str(), what, bad, first,
          double(got[first]), double(want[first]));
    check(got.guards_intact(), "%s: wrote outside %s", c.c_str(), what);
  }

  // ---- run family -------------------------------------------------------------------------
  void run_family(size_t n, size_t off, bool stream) {
    const size_t rows = 3, stride = n + 3, span = (rows - 1) * stride + n;
    const std::string c0 = fmt("rows=%zu n=%zu stride=%zu off=%zu%s", rows, n, stride, off, stream ? " stream" : "");
    Buf<T> x(span, off, 0), res(span, off, 0), dy(span, off, 0), y(span, off, 0), g(span, off, 0);
    fill_in(x, span, stride, n, 0.5);
    fill_in(res, span, stride, n, 0.0);
    fill_in(dy, span, stride, n, 0.0);
    fill_y(y, span, stride, n);
    for (size_t q = 0; q < span; ++q) g[q] = q % stride < n ? gate_ref(dy[q], y[q]) : dy[q];
    const T cc = T(0.5 + 0.3 * r.sym()), a = T(1.5 * r.sym()), b = T(r.sym());
    const T k1 = T(2 * r.sym()), k2 = T(r.sym()), k3 = T(r.sym());
    const bn::ElementwiseKernels<T>& none = kt.writers(Epilogue::kNone);
    for (Epilogue e : {Epilogue::kRelu, Epilogue::kAddRelu}) {
      const bool add = e == Epilogue::kAddRelu;
      const char* en = add ? "add_relu" : "relu";
      const T* rp = add ? res.data() : nullptr;
      Buf<T> base(span, kGuardPre + off, kGuardPost), want(span, kGuardPre + off, kGuardPost);
      none.affine_run(x.data(), base.data(), nullptr, rows, n, stride, cc, a, b, false, 0);
      for (size_t q = 0; q < span; ++q) want[q] = q % stride < n ? relu_ref(add ? T(base[q] + res[q]) : base[q]) : base[q];
      Buf<T> got(span, kGuardPre + off, kGuardPost);
      kt.writers(e).affine_run(x.data(), got.data(), rp, rows, n, stride, cc, a, b, stream, 0);
      compare(fmt("kernel %s %s", kname(fmt("affine_run<%s>", en).c_str()).c_str(), c0.c_str()), "y", got, want, span,
              stride, n);
      // Fused with the statistics of the same runs (next = 0): the sums are the plain ones.
      Buf<T> got2(span, kGuardPre + off, kGuardPost);
      double s[2] = {0, 0}, s0[2] = {0, 0};
      kt.writers(e).affine_stats_run(x.data(), got2.data(), rp, rows, n, stride, cc, a, b, stream, 0, cc, &s[0], &s[1]);
      kt.stats_run(x.data(), rows, n, stride, cc, &s0[0], &s0[1]);
      const std::string c2 = fmt("kernel %s %s", kname(fmt("affine_stats_run<%s>", en).c_str()).c_str(), c0.c_str());
      compare(c2, "y", got2, want, span, stride, n);
      check(same_bits(s[0], s0[0]) && same_bits(s[1], s0[1]), "%s: sums %.17g %.17g, stats_run's %.17g %.17g",
            c2.c_str(), s[0], s[1], s0[0], s0[1]);
      // The dx writer with the epilogue (instantiated for every epilogue).
      Buf<T> dbase(span, kGuardPre + off, kGuardPost), dwant(span, kGuardPre + off, kGuardPost);
      none.bwd_dx_run(x.data(), dy.data(), dbase.data(), nullptr, rows, n, stride, cc, k1, k2, k3, false, 0);
      for (size_t q = 0; q < span; ++q) dwant[q] = q % stride < n ? relu_ref(add ? T(dbase[q] + res[q]) : dbase[q]) : dbase[q];
      Buf<T> dgot(span, kGuardPre + off, kGuardPost);
      kt.writers(e).bwd_dx_run(x.data(), dy.data(), dgot.data(), rp, rows, n, stride, cc, k1, k2, k3, stream, 0);
      compare(fmt("kernel %s %s", kname(fmt("bwd_dx_run<%s>", en).c_str()).c_str(), c0.c_str()), "dx", dgot, dwant, span,
              stride, n);
    }
    // Masked reductions = the unmasked ones on the gated dy.
    double m[2] = {0.25, -0.5}, u[2] = {0.25, -0.5};
    mk.bwd_reduce_run(x.data(), dy.data(), y.data(), rows, n, stride, cc, &m[0], &m[1]);
    kt.bwd_reduce_run(x.data(), g.data(), rows, n, stride, cc, &u[0], &u[1]);
    check(same_bits(m[0], u[0]) && same_bits(m[1], u[1]), "kernel %s %s: sums %.17g %.17g, on the gated dy %.17g %.17g",
          kname("bwd_reduce_relu_run").c_str(), c0.c_str(), m[0], m[1], u[0], u[1]);
    // Masked dx (training and evaluation), with and without dres.
    Buf<T> dwant(span, kGuardPre + off, kGuardPost), swant(span, kGuardPre + off, kGuardPost), gwant(span, kGuardPre + off, kGuardPost);
    kt.writers(Epilogue::kNone).bwd_dx_run(x.data(), g.data(), dwant.data(), nullptr, rows, n, stride, cc, k1, k2, k3, false, 0);
    for (size_t q = 0; q < span; ++q) {
      swant[q] = q % stride < n ? T(g[q] * k1) : swant[q];
      gwant[q] = q % stride < n ? g[q] : gwant[q];
    }
    for (bool with_dres : {false, true}) {
      Buf<T> dx(span, kGuardPre + off, kGuardPost), dres(span, kGuardPre + off, kGuardPost);
      T* dr = with_dres ? dres.data() : nullptr;
      const std::string cd = fmt("kernel %s %s%s", kname("bwd_dx_relu_run").c_str(), c0.c_str(), with_dres ? " dres" : "");
      mk.bwd_dx_run(x.data(), dy.data(), y.data(), dx.data(), dr, rows, n, stride, cc, k1, k2, k3, stream, 0);
      compare(cd, "dx", dx, dwant, span, stride, n);
      if (with_dres) compare(cd, "dres", dres, gwant, span, stride, n);
      else check(dres.all_poison(), "%s: wrote dres though null", cd.c_str());
      Buf<T> sx(span, kGuardPre + off, kGuardPost), sres(span, kGuardPre + off, kGuardPost);
      const std::string cs = fmt("kernel %s %s%s", kname("bwd_scale_relu_run").c_str(), c0.c_str(), with_dres ? " dres" : "");
      mk.bwd_scale_run(dy.data(), y.data(), sx.data(), with_dres ? sres.data() : nullptr, rows, n, stride, k1, stream, 0);
      compare(cs, "dx", sx, swant, span, stride, n);
      if (with_dres) compare(cs, "dres", sres, gwant, span, stride, n);
    }
  }

  // The inputs of the group and rows families: `span` contiguous values of x, the residual, dy,
  // y and the gated dy g, and `coefs` channels of coefficients.
  struct Inputs {
    Buf<T> x, res, dy, y, g;
    std::vector<T> cc, a, b, k1, k2, k3;
    Inputs(size_t span, size_t off, size_t coefs)
        : x(span, off, 0), res(span, off, 0), dy(span, off, 0), y(span, off, 0), g(span, off, 0),
          cc(coefs), a(coefs), b(coefs), k1(coefs), k2(coefs), k3(coefs) {}
  };
  void fill_inputs(Inputs& in, size_t span) {
    fill_in(in.x, span, span, span, 0.5);
    fill_in(in.res, span, span, span, 0.0);
    fill_in(in.dy, span, span, span, 0.0);
    fill_y(in.y, span, span, span);
    for (size_t q = 0; q < span; ++q) in.g[q] = gate_ref(in.dy[q], in.y[q]);
    for (size_t j = 0; j < in.cc.size(); ++j) {
      in.cc[j] = T(0.5 + 0.3 * r.sym()), in.a[j] = T(1.5 * r.sym()), in.b[j] = T(r.sym());
      in.k1[j] = T(2 * r.sym()), in.k2[j] = T(r.sym()), in.k3[j] = T(r.sym());
    }
  }

  // ---- group family (one sample's `runs` contiguous runs of n) -------------------------------
  void group_family(size_t runs, size_t n, size_t off, bool stream) {
    const size_t span = runs * n;
    const std::string c0 = fmt("runs=%zu n=%zu off=%zu%s", runs, n, off, stream ? " stream" : "");
    Inputs in(span, off, runs);
    fill_inputs(in, span);
    auto& [x, res, dy, y, g, cc, a, b, k1, k2, k3] = in;
    const bn::ElementwiseKernels<T>& none = kt.writers(Epilogue::kNone);
    for (const auto& [e, stream] : {std::pair{Epilogue::kRelu, false}, std::pair{Epilogue::kAddRelu, false},
                                    std::pair{Epilogue::kRelu, true}, std::pair{Epilogue::kAddRelu, true}}) {
      const bool add = e == Epilogue::kAddRelu;
      const char* en = add ? (stream ? "add_relu, streamed" : "add_relu") : (stream ? "relu, streamed" : "relu");
      Buf<T> base(span, kGuardPre + off, kGuardPost), want(span, kGuardPre + off, kGuardPost), got(span, kGuardPre + off, kGuardPost);
      none.affine_group(x.data(), base.data(), nullptr, runs, n, cc.data(), a.data(), b.data(), false, 0, 0);
      for (size_t q = 0; q < span; ++q) want[q] = relu_ref(add ? T(base[q] + res[q]) : base[q]);
      kt.writers(e).affine_group(x.data(), got.data(), add ? res.data() : nullptr, runs, n, cc.data(), a.data(), b.data(),
                                 stream, 0, stream ? 0 : span);
      compare(fmt("kernel %s %s", kname(fmt("affine_group<%s>", en).c_str()).c_str(), c0.c_str()), "y", got, want, span,
              span, span);
      Buf<T> dbase(span, kGuardPre + off, kGuardPost), dwant(span, kGuardPre + off, kGuardPost), dgot(span, kGuardPre + off, kGuardPost);
      none.bwd_dx_group(x.data(), dy.data(), dbase.data(), nullptr, runs, n, cc.data(), k1.data(), k2.data(), k3.data(),
                        false, 0, 0);
      for (size_t q = 0; q < span; ++q) dwant[q] = relu_ref(add ? T(dbase[q] + res[q]) : dbase[q]);
      kt.writers(e).bwd_dx_group(x.data(), dy.data(), dgot.data(), add ? res.data() : nullptr, runs, n, cc.data(),
                                 k1.data(), k2.data(), k3.data(), stream, 0, stream ? 0 : span);
      compare(fmt("kernel %s %s", kname(fmt("bwd_dx_group<%s>", en).c_str()).c_str(), c0.c_str()), "dx", dgot, dwant,
              span, span, span);
    }
    // Masked group reduction over 2 samples (sample 1 = the same span again, stride apart).
    {
      const size_t stride = span + 5, total = stride + span;
      Buf<T> x2(total, off, 0), dy2(total, off, 0), y2(total, off, 0), g2(total, off, 0);
      for (size_t q = 0; q < span; ++q) {
        for (size_t s = 0; s < 2; ++s) {
          x2[s * stride + q] = x[q];
          dy2[s * stride + q] = dy[q];
          y2[s * stride + q] = y[(q + s * 7) % span];
          g2[s * stride + q] = gate_ref(dy2[s * stride + q], y2[s * stride + q]);
        }
      }
      std::vector<double> m0(runs, 0.5), m1(runs, -1.0), u0(runs, 0.5), u1(runs, -1.0);
      mk.bwd_reduce_group(x2.data(), dy2.data(), y2.data(), 2, stride, runs, n, cc.data(), m0.data(), m1.data());
      kt.bwd_reduce_group(x2.data(), g2.data(), 2, stride, runs, n, cc.data(), u0.data(), u1.data());
      bool ok = true;
      for (size_t j = 0; j < runs; ++j) ok = ok && same_bits(m0[j], u0[j]) && same_bits(m1[j], u1[j]);
      check(ok, "kernel %s %s: sums differ from the unmasked kernel's on the gated dy", kname("bwd_reduce_relu_group").c_str(),
            c0.c_str());
    }
    Buf<T> dwant(span, kGuardPre + off, kGuardPost), swant(span, kGuardPre + off, kGuardPost), gwant(span, kGuardPre + off, kGuardPost);
    none.bwd_dx_group(x.data(), g.data(), dwant.data(), nullptr, runs, n, cc.data(), k1.data(), k2.data(), k3.data(), false, 0,
                      0);
    for (size_t q = 0; q < span; ++q) {
      swant[q] = T(g[q] * k1[q / n]);
      gwant[q] = g[q];
    }
    for (bool with_dres : {false, true}) {
      Buf<T> dx(span, kGuardPre + off, kGuardPost), dres(span, kGuardPre + off, kGuardPost);
      const std::string cd = fmt("kernel %s %s%s", kname("bwd_dx_relu_group").c_str(), c0.c_str(), with_dres ? " dres" : "");
      mk.bwd_dx_group(x.data(), dy.data(), y.data(), dx.data(), with_dres ? dres.data() : nullptr, runs, n, cc.data(),
                      k1.data(), k2.data(), k3.data(), stream, 0, stream ? 0 : span);
      compare(cd, "dx", dx, dwant, span, span, span);
      if (with_dres) compare(cd, "dres", dres, gwant, span, span, span);
      else check(dres.all_poison(), "%s: wrote dres though null", cd.c_str());
      Buf<T> sx(span, kGuardPre + off, kGuardPost), sres(span, kGuardPre + off, kGuardPost);
      const std::string cs = fmt("kernel %s %s%s", kname("bwd_scale_relu_group").c_str(), c0.c_str(), with_dres ? " dres" : "");
      mk.bwd_scale_group(dy.data(), y.data(), sx.data(), with_dres ? sres.data() : nullptr, runs, n, k1.data(), stream, 0,
                         stream ? 0 : span);
      compare(cs, "dx", sx, swant, span, span, span);
      if (with_dres) compare(cs, "dres", sres, gwant, span, span, span);
    }
  }

  // ---- rows family (channel fastest) -------------------------------------------------------
  void rows_family(size_t rows, size_t ch, size_t off) {
    const size_t span = rows * ch;
    const std::string c0 = fmt("rows=%zu ch=%zu off=%zu", rows, ch, off);
    Inputs in(span, off, ch);
    fill_inputs(in, span);
    auto& [x, res, dy, y, g, cc, a, b, k1, k2, k3] = in;
    const bn::ElementwiseKernels<T>& none = kt.writers(Epilogue::kNone);
    for (const auto& [e, stream] : {std::pair{Epilogue::kRelu, false}, std::pair{Epilogue::kAddRelu, false},
                                    std::pair{Epilogue::kRelu, true}, std::pair{Epilogue::kAddRelu, true}}) {
      const bool add = e == Epilogue::kAddRelu;
      const char* en = add ? (stream ? "add_relu, streamed" : "add_relu") : (stream ? "relu, streamed" : "relu");
      Buf<T> base(span, kGuardPre + off, kGuardPost), want(span, kGuardPre + off, kGuardPost), got(span, kGuardPre + off, kGuardPost);
      none.affine_rows(x.data(), base.data(), nullptr, rows, ch, cc.data(), a.data(), b.data(), false);
      for (size_t q = 0; q < span; ++q) want[q] = relu_ref(add ? T(base[q] + res[q]) : base[q]);
      kt.writers(e).affine_rows(x.data(), got.data(), add ? res.data() : nullptr, rows, ch, cc.data(), a.data(), b.data(),
                                stream);
      compare(fmt("kernel %s %s", kname(fmt("affine_rows<%s>", en).c_str()).c_str(), c0.c_str()), "y", got, want, span,
              span, span);
      Buf<T> dbase(span, kGuardPre + off, kGuardPost), dwant(span, kGuardPre + off, kGuardPost), dgot(span, kGuardPre + off, kGuardPost);
      none.bwd_dx_rows(x.data(), dy.data(), dbase.data(), nullptr, rows, ch, cc.data(), k1.data(), k2.data(), k3.data(), false);
      for (size_t q = 0; q < span; ++q) dwant[q] = relu_ref(add ? T(dbase[q] + res[q]) : dbase[q]);
      kt.writers(e).bwd_dx_rows(x.data(), dy.data(), dgot.data(), add ? res.data() : nullptr, rows, ch, cc.data(),
                                k1.data(), k2.data(), k3.data(), stream);
      compare(fmt("kernel %s %s", kname(fmt("bwd_dx_rows<%s>", en).c_str()).c_str(), c0.c_str()), "dx", dgot, dwant, span,
              span, span);
    }
    std::vector<double> m0(ch, 0.5), m1(ch, -1.0), u0(ch, 0.5), u1(ch, -1.0);
    mk.bwd_reduce_rows(x.data(), dy.data(), y.data(), rows, ch, cc.data(), m0.data(), m1.data());
    kt.bwd_reduce_rows(x.data(), g.data(), rows, ch, cc.data(), u0.data(), u1.data());
    bool ok = true;
    for (size_t j = 0; j < ch; ++j) ok = ok && same_bits(m0[j], u0[j]) && same_bits(m1[j], u1[j]);
    check(ok, "kernel %s %s: sums differ from the unmasked kernel's on the gated dy", kname("bwd_reduce_relu_rows").c_str(),
          c0.c_str());
    Buf<T> dwant(span, kGuardPre + off, kGuardPost), swant(span, kGuardPre + off, kGuardPost), gwant(span, kGuardPre + off, kGuardPost);
    none.bwd_dx_rows(x.data(), g.data(), dwant.data(), nullptr, rows, ch, cc.data(), k1.data(), k2.data(), k3.data(), false);
    for (size_t q = 0; q < span; ++q) {
      swant[q] = T(g[q] * k1[q % ch]);
      gwant[q] = g[q];
    }
    for (bool with_dres : {false, true}) {
      Buf<T> dx(span, kGuardPre + off, kGuardPost), dres(span, kGuardPre + off, kGuardPost);
      const std::string cd = fmt("kernel %s %s%s", kname("bwd_dx_relu_rows").c_str(), c0.c_str(), with_dres ? " dres" : "");
      mk.bwd_dx_rows(x.data(), dy.data(), y.data(), dx.data(), with_dres ? dres.data() : nullptr, rows, ch, cc.data(),
                     k1.data(), k2.data(), k3.data());
      compare(cd, "dx", dx, dwant, span, span, span);
      if (with_dres) compare(cd, "dres", dres, gwant, span, span, span);
      else check(dres.all_poison(), "%s: wrote dres though null", cd.c_str());
      Buf<T> sx(span, kGuardPre + off, kGuardPost), sres(span, kGuardPre + off, kGuardPost);
      const std::string cs = fmt("kernel %s %s%s", kname("bwd_scale_relu_rows").c_str(), c0.c_str(), with_dres ? " dres" : "");
      mk.bwd_scale_rows(dy.data(), y.data(), sx.data(), with_dres ? sres.data() : nullptr, rows, ch, k1.data());
      compare(cs, "dx", sx, swant, span, span, span);
      if (with_dres) compare(cs, "dres", sres, gwant, span, span, span);
    }
  }

  void run_all(size_t w) {
    for (size_t n : sweep_sizes(w)) {
      if (n == 0) continue;
      for (size_t off : {size_t(0), size_t(1)}) {
        for (bool stream : {false, true}) {
          run_family(n, off, stream);
          group_family(3, n, off, stream);
        }
        rows_family(5, n, off);
      }
    }
    // Rows past the backward reductions' column block (8 KiB of partial sums per array).
    for (size_t n : {8192 / sizeof(T) + 3, 2 * 8192 / sizeof(T) + 5}) rows_family(3, n, 1);
  }
};

template <typename T>
void test_one(const char* isa, const bn::KernelTable<T>& kt, size_t w, Rng& rng) {
  ReluKernelTester<T> t{{isa, kt, rng}};
  t.run_all(w);
}

}  // namespace

void test_relu_kernels(const char* isa, const bn::KernelSet& ks, size_t w32, size_t w64, Rng& rng) {
  test_one<float>(isa, ks.f32, w32, rng);
  test_one<double>(isa, ks.f64, w64, rng);
}

}  // namespace bntest
