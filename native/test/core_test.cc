// Native tests of the batch-norm core (no Node, no framework).
//
//  1. Microkernel tester (XNNPACK style): every kernel of every table this CPU + build can run,
//     f32 and f64, swept over sizes around the vector width (tails), with aligned and unaligned
//     (offset by one element) pointers, NaN-poisoned outputs with guard regions before and after,
//     exact-size input allocations (so ASan sees any over-read), compared to a compensated float64
//     reference.
//  2. Driver tests through the public API (forward_training / forward_inference / backward) for
//     every SIMD level and 1, 2, 3 threads against a float64 reference written from
//     /work/shared/docs/batchnorm.md (two-pass statistics with compensated sums).
//  3. Argument checks: every error status, and nothing written on error.
//
// Output: one line per failing check, then a last line "N passed, M failed". Exit code 0 iff M == 0.
// Environment: BN_TEST_EXPECT_SIMD=scalar|avx2|avx512|neon makes the level the detector chose at
// load a checked expectation (used by the qemu runs in scripts/); BN_TEST_TIMING=1 prints the time
// of every driver configuration; BATCHNORM_STREAM_MIN_BYTES defaults to 1 MiB here (see main).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <new>
#include <string>
#include <type_traits>
#include <vector>

#include "batchnorm.h"
#include "kernels.h"

namespace {

// ------------------------------------------------------------------------------------------------
// Reporting
// ------------------------------------------------------------------------------------------------
int g_passed = 0;
int g_failed = 0;

__attribute__((format(printf, 2, 3))) bool check(bool ok, const char* fmt, ...) {
  if (ok) {
    ++g_passed;
    return true;
  }
  ++g_failed;
  std::fputs("FAIL: ", stdout);
  va_list ap;
  va_start(ap, fmt);
  std::vprintf(fmt, ap);
  va_end(ap);
  std::fputc('\n', stdout);
  std::fflush(stdout);
  return false;
}

__attribute__((format(printf, 1, 2))) std::string fmt(const char* f, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, f);
  std::vsnprintf(buf, sizeof buf, f, ap);
  va_end(ap);
  return buf;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// ------------------------------------------------------------------------------------------------
// Deterministic pseudo-random numbers (splitmix64)
// ------------------------------------------------------------------------------------------------
struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed) {}
  uint64_t next() {
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double uniform() { return double(next() >> 11) * 0x1.0p-53; }  // [0, 1)
  double sym() { return 2.0 * uniform() - 1.0; }                 // [-1, 1)
  // Approximately standard normal (Irwin-Hall of 4), no libm needed.
  double normal() { return (uniform() + uniform() + uniform() + uniform() - 2.0) * 1.7320508075688772; }
};

// ------------------------------------------------------------------------------------------------
// Type traits: poison value and tolerances
// ------------------------------------------------------------------------------------------------
template <typename T>
struct TI;
template <>
struct TI<float> {
  static constexpr const char* name = "f32";
  static constexpr double eps = 0x1.0p-23;   // ulp of 1
  static constexpr double acc_rel = 1e-6;    // accumulations (statistics, sums) relative
  // The run and group reductions sum at most 8 terms per lane in T (the square or product rounded
  // once in T too), then accumulate those partial sums in float64: (8 + 2) unit roundoffs of the
  // sum of magnitudes bound the difference from the same terms summed exactly. A kernel that
  // accumulated in T throughout would exceed it within a few hundred values.
  static constexpr double partial_rel = 10 * 0x1.0p-24;
  static constexpr double stat_rel = 1e-7;   // extra relative error of mean/invstd in elementwise outputs
  static constexpr double var_rel = 1e-6;    // relative error of var / invstd
  static float poison() {
    const uint32_t bits = 0x7fc0beefu;
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
  }
};
template <>
struct TI<double> {
  static constexpr const char* name = "f64";
  static constexpr double eps = 0x1.0p-52;
  static constexpr double acc_rel = 1e-13;
  static constexpr double partial_rel = 1e-12;  // 10 unit roundoffs are 1e-15: the float64 order dominates
  static constexpr double stat_rel = 1e-12;
  static constexpr double var_rel = 1e-12;
  static double poison() {
    const uint64_t bits = 0x7ff80000deadbeefull;
    double d;
    std::memcpy(&d, &bits, sizeof d);
    return d;
  }
};

template <typename T>
bool is_poison(T v) {
  const T p = TI<T>::poison();
  return std::memcmp(&v, &p, sizeof(T)) == 0;
}

// Neumaier-compensated float64 sum: the reference accumulator (portable: no long double, which is
// a slow software type on aarch64).
struct KSum {
  double s = 0.0, c = 0.0;
  void add(double v) {
    const double t = s + v;
    if (std::fabs(s) >= std::fabs(v)) {
      c += (s - t) + v;
    } else {
      c += (v - t) + s;
    }
    s = t;
  }
  double get() const { return s + c; }
};

// ------------------------------------------------------------------------------------------------
// Buffers: 64-byte aligned base, `pre` elements before the data, `post` after, all poisoned.
// Inputs use pre = offset, post = 0 (exact end: ASan flags any over-read); outputs use guard
// regions that must still hold the poison bit pattern after the call.
// ------------------------------------------------------------------------------------------------
constexpr size_t kGuardPre = 16;  // 64 bytes of f32, 128 of f64: keeps data aligned when off = 0
constexpr size_t kGuardPost = 5;

template <typename T>
class Buf {
 public:
  Buf(size_t n, size_t pre, size_t post) : n_(n), pre_(pre), post_(post) {
    const size_t bytes = (pre + n + post) * sizeof(T);
    base_ = static_cast<T*>(::operator new(bytes ? bytes : 1, std::align_val_t(64)));
    for (size_t i = 0; i < pre + n + post; ++i) base_[i] = TI<T>::poison();
  }
  ~Buf() { ::operator delete(base_, std::align_val_t(64)); }
  Buf(const Buf&) = delete;
  Buf& operator=(const Buf&) = delete;
  T* data() { return base_ + pre_; }
  const T* data() const { return base_ + pre_; }
  T& operator[](size_t i) { return base_[pre_ + i]; }
  const T& operator[](size_t i) const { return base_[pre_ + i]; }
  size_t size() const { return n_; }
  bool guards_intact() const {
    for (size_t i = 0; i < pre_; ++i) {
      if (!is_poison(base_[i])) return false;
    }
    for (size_t i = 0; i < post_; ++i) {
      if (!is_poison(base_[pre_ + n_ + i])) return false;
    }
    return true;
  }
  bool all_poison() const {
    for (size_t i = 0; i < n_; ++i) {
      if (!is_poison((*this)[i])) return false;
    }
    return guards_intact();
  }

 private:
  T* base_;
  size_t n_, pre_, post_;
};

// One check per compared array: counts the mismatches and reports the first.
struct ElemCheck {
  size_t bad = 0, count = 0, first = 0;
  double got0 = 0, ref0 = 0, tol0 = 0;
  void add(size_t i, double got, double ref, double tol) {
    ++count;
    if (std::fabs(got - ref) <= tol) return;  // NaN fails
    if (bad++ == 0) {
      first = i;
      got0 = got;
      ref0 = ref;
      tol0 = tol;
    }
  }
  void report(const std::string& ctx, const char* what) const {
    check(bad == 0, "%s: %s: %zu of %zu wrong; first [%zu] got %.17g ref %.17g |err| %.3g tol %.3g",
          ctx.c_str(), what, bad, count, first, got0, ref0, std::fabs(got0 - ref0), tol0);
  }
};

void check_acc(const std::string& ctx, const char* what, double got, double ref, double mag,
               double rel) {
  const double tol = rel * mag + 1e-300;
  check(std::fabs(got - ref) <= tol, "%s: %s got %.17g ref %.17g |err| %.3g tol %.3g", ctx.c_str(),
        what, got, ref, std::fabs(got - ref), tol);
}

// ================================================================================================
// 1. Microkernel tester
// ================================================================================================
std::vector<size_t> sweep_sizes(size_t w) {
  std::vector<size_t> v = {1, w - 1, w, w + 1, 2 * w - 1, 2 * w, 2 * w + 1, 2 * w + 3, 4 * w + 5, 100, 1000};
  std::sort(v.begin(), v.end());
  v.erase(std::unique(v.begin(), v.end()), v.end());
  return v;  // includes 0 when w == 1 (w - 1): the empty call must write nothing
}

template <typename T>
void fill(Buf<T>& b, Rng& r, double center, double scale) {
  for (size_t i = 0; i < b.size(); ++i) b[i] = T(center + scale * r.normal());
}

template <typename T>
struct KernelTester {
  const char* isa;
  const bn::KernelTable<T>& kt;
  Rng& r;
  static constexpr double eT = TI<T>::eps;

  std::string ctx(const char* kernel, size_t n, size_t off, int regime, size_t rows = 0) const {
    if (rows) {
      return fmt("kernel %s/%s %s rows=%zu ch=%zu off=%zu %s", isa, TI<T>::name, kernel, rows, n,
                 off, regime ? "offset100/inplace" : "centered");
    }
    return fmt("kernel %s/%s %s n=%zu off=%zu %s", isa, TI<T>::name, kernel, n, off,
               regime ? "offset100/inplace" : "centered");
  }

  // dx = dy * k1 + ((x - c) * k2 + k3): checked against float64, within 8 ulps of its terms.
  static void add_dx(ElemCheck& ec, size_t q, T got, T x, T dy, T c, T k1, T k2, T k3) {
    const double xc = double(x) - double(c);
    const double t1 = double(dy) * double(k1), t2 = xc * double(k2);
    ec.add(q, double(got), t1 + (t2 + double(k3)), 8 * eT * (std::fabs(t1) + std::fabs(t2) + std::fabs(double(k3))) + 1e-300);
  }

  // ---- run kernels: `rows` runs of n values, `stride` apart ----
  // Inputs: every element outside the runs (gaps between runs) is NaN, so a kernel that reads a
  // gap into a sum or an output is caught. Outputs: gaps and guards must still hold the poison.
  struct Runs {
    size_t rows, n, stride, off;
    size_t span() const { return rows == 0 ? 0 : (rows - 1) * stride + n; }
    template <class F>
    void each(F&& f) const {  // f(flat index, run, position in run)
      for (size_t r = 0; r < rows; ++r)
        for (size_t i = 0; i < n; ++i) f(r * stride + i, r, i);
    }
  };

  std::string rctx(const char* kernel, const Runs& g, int regime, int stream = -1) const {
    return fmt("kernel %s/%s %s rows=%zu n=%zu stride=%zu off=%zu %s%s", isa, TI<T>::name, kernel,
               g.rows, g.n, g.stride, g.off, regime ? "offset100/inplace" : "centered",
               stream < 0 ? "" : (stream ? " stream" : ""));
  }

  void fill_runs(Buf<T>& b, const Runs& g, double center, double scale) {
    g.each([&](size_t q, size_t, size_t) { b[q] = T(center + scale * r.normal()); });
  }

  void stats_run(const Runs& g, int regime) {
    const std::string c = rctx("stats_run", g, regime);
    const double center = regime ? 100.0 : 0.0;
    Buf<T> x(g.span(), g.off, 0);
    fill_runs(x, g, center, 2.0);
    const T k = T(center + r.sym());
    const double pd = TI<double>::poison();
    const double sum0 = r.sym(), sq0 = r.uniform();
    double acc[4] = {sum0, pd, sq0, pd};
    kt.stats_run(x.data(), g.rows, g.n, g.stride, k, &acc[0], &acc[2]);
    KSum s1, s2, m1, m2;
    double a1 = std::fabs(sum0), a2 = sq0;
    g.each([&](size_t q, size_t, size_t) {
      const double d = double(x[q]) - double(k);
      s1.add(d);
      s2.add(d * d);
      a1 += std::fabs(d);
      a2 += d * d;
      const T dt = T(x[q] - k);  // the documented per-term rounding: the difference in T, the rest in f64
      m1.add(double(dt));
      m2.add(double(dt) * double(dt));
    });
    check_acc(c, "sum", acc[0], sum0 + s1.get(), a1, TI<T>::acc_rel);
    check_acc(c, "sumsq", acc[2], sq0 + s2.get(), a2, TI<T>::acc_rel);
    // Accumulation in float64 (not T): against the per-term-rounded model, only the order of the
    // float64 additions may differ.
    check_acc(c, "sum (T terms, partial sums in T)", acc[0], sum0 + m1.get(), a1, TI<T>::partial_rel);
    check_acc(c, "sumsq (T terms, partial sums in T)", acc[2], sq0 + m2.get(), a2, TI<T>::partial_rel);
    check(is_poison(acc[1]) && is_poison(acc[3]), "%s: wrote past an accumulator", c.c_str());
  }

  // Output buffer of the runs; gaps and guards poisoned. In place: runs hold a copy of `src`.
  void check_out_untouched(const std::string& c, const Buf<T>& y, const Runs& g, const char* what) {
    bool gaps_ok = true;
    for (size_t rr = 0; rr + 1 < g.rows; ++rr)
      for (size_t i = g.n; i < g.stride; ++i) gaps_ok = gaps_ok && is_poison(y[rr * g.stride + i]);
    check(gaps_ok, "%s: wrote into the gap between runs of %s", c.c_str(), what);
    check(y.guards_intact(), "%s: wrote outside %s", c.c_str(), what);
  }

  void affine_run(const Runs& g, int regime, bool stream) {
    const std::string c = rctx("affine_run", g, regime, stream);
    const double center = regime ? 100.0 : 0.0;
    Buf<T> x(g.span(), g.off, 0);
    fill_runs(x, g, center, 2.0);
    const T cc = T(center + 0.5 * r.sym());
    const T a = T((0.5 + r.uniform()) * (r.uniform() < 0.5 ? -1 : 1));
    const T b = T(r.sym());
    Buf<T> y(g.span(), kGuardPre + g.off, kGuardPost);
    const bool inplace = regime == 1;
    if (inplace) {
      g.each([&](size_t q, size_t, size_t) { y[q] = x[q]; });
      kt.affine_run(y.data(), y.data(), g.rows, g.n, g.stride, cc, a, b, stream, g.stride);
    } else {
      kt.affine_run(x.data(), y.data(), g.rows, g.n, g.stride, cc, a, b, stream, g.stride);
    }
    ElemCheck ec;
    g.each([&](size_t q, size_t, size_t) {
      const double xc = double(x[q]) - double(cc);
      const double ref = xc * double(a) + double(b);
      ec.add(q, double(y[q]), ref, 8 * eT * (std::fabs(xc * double(a)) + std::fabs(double(b))) + 1e-300);
    });
    ec.report(c, "y");
    check_out_untouched(c, y, g, "y");
  }

  // The normalize pass over the runs g fused with the statistics of the same runs `nxt` values
  // on (a region after the first, at another alignment). y: the first runs only; the second ones
  // are read, never written (in place: they must still hold x).
  void affine_stats_run(const Runs& g, int regime, bool stream) {
    const std::string c = rctx("affine_stats_run", g, regime, stream);
    const double center = regime ? 100.0 : 0.0;
    const size_t nxt = g.span() + 2;
    Buf<T> x(nxt + g.span(), g.off, 0);
    fill_runs(x, g, center, 2.0);
    g.each([&](size_t q, size_t, size_t) { x[nxt + q] = T(center + 1.0 + 3.0 * r.normal()); });
    const T cc = T(center + 0.5 * r.sym());
    const T a = T((0.5 + r.uniform()) * (r.uniform() < 0.5 ? -1 : 1));
    const T b = T(r.sym());
    const T k = T(center + r.sym());
    const double pd = TI<double>::poison();
    const double sum0 = r.sym(), sq0 = r.uniform();
    double acc[4] = {sum0, pd, sq0, pd};
    const bool inplace = regime == 1;
    Buf<T> y(inplace ? nxt + g.span() : g.span(), kGuardPre + g.off, kGuardPost);
    if (inplace) {
      for (size_t q = 0; q < y.size(); ++q) y[q] = x[q];
      kt.affine_stats_run(y.data(), y.data(), g.rows, g.n, g.stride, cc, a, b, stream, nxt, k, &acc[0], &acc[2]);
    } else {
      kt.affine_stats_run(x.data(), y.data(), g.rows, g.n, g.stride, cc, a, b, stream, nxt, k, &acc[0], &acc[2]);
    }
    ElemCheck ec;
    bool next_kept = true;
    KSum s1, s2, m1, m2;
    double a1 = std::fabs(sum0), a2 = sq0;
    g.each([&](size_t q, size_t, size_t) {
      const double xc = double(x[q]) - double(cc);
      ec.add(q, double(y[q]), xc * double(a) + double(b), 8 * eT * (std::fabs(xc * double(a)) + std::fabs(double(b))) + 1e-300);
      if (inplace) next_kept = next_kept && std::memcmp(&y[nxt + q], &x[nxt + q], sizeof(T)) == 0;
      const double d = double(x[nxt + q]) - double(k);
      s1.add(d);
      s2.add(d * d);
      a1 += std::fabs(d);
      a2 += d * d;
      const T dt = T(x[nxt + q] - k);
      m1.add(double(dt));
      m2.add(double(dt) * double(dt));
    });
    ec.report(c, "y");
    check_out_untouched(c, y, g, "y");
    check(next_kept, "%s: wrote into the next piece", c.c_str());
    // The same sums as stats_run's, bit for bit: a channel's statistics must not depend on which
    // kernel read it (the first piece of a thread goes through stats_run) or on y's alignment.
    double solo[2] = {sum0, sq0};
    kt.stats_run(x.data() + nxt, g.rows, g.n, g.stride, k, &solo[0], &solo[1]);
    check(std::memcmp(&solo[0], &acc[0], sizeof(double)) == 0 && std::memcmp(&solo[1], &acc[2], sizeof(double)) == 0,
          "%s: sums differ from stats_run's: %.17g %.17g vs %.17g %.17g", c.c_str(), acc[0], acc[2], solo[0], solo[1]);
    check_acc(c, "sum", acc[0], sum0 + s1.get(), a1, TI<T>::acc_rel);
    check_acc(c, "sumsq", acc[2], sq0 + s2.get(), a2, TI<T>::acc_rel);
    check_acc(c, "sum (T terms, partial sums in T)", acc[0], sum0 + m1.get(), a1, TI<T>::partial_rel);
    check_acc(c, "sumsq (T terms, partial sums in T)", acc[2], sq0 + m2.get(), a2, TI<T>::partial_rel);
    check(is_poison(acc[1]) && is_poison(acc[3]), "%s: wrote past an accumulator", c.c_str());
  }

  void bwd_reduce_run(const Runs& g, int regime) {
    const std::string c = rctx("bwd_reduce_run", g, regime);
    const double center = regime ? 100.0 : 0.0;
    Buf<T> x(g.span(), g.off, 0), dy(g.span(), g.off, 0);
    fill_runs(x, g, center, 2.0);
    fill_runs(dy, g, 0.0, 1.0);
    const T cc = T(center + 0.5 * r.sym());
    const double pd = TI<double>::poison();
    const double g0 = r.sym(), p0 = r.sym();
    double acc[4] = {g0, pd, p0, pd};
    kt.bwd_reduce_run(x.data(), dy.data(), g.rows, g.n, g.stride, cc, &acc[0], &acc[2]);
    KSum sg, sp, mp;
    double ag = std::fabs(g0), ap = std::fabs(p0);
    g.each([&](size_t q, size_t, size_t) {
      const double d = double(x[q]) - double(cc);
      sg.add(double(dy[q]));
      sp.add(double(dy[q]) * d);
      ag += std::fabs(double(dy[q]));
      ap += std::fabs(double(dy[q]) * d);
      mp.add(double(dy[q]) * double(T(x[q] - cc)));
    });
    check_acc(c, "sum_dy", acc[0], g0 + sg.get(), ag, TI<T>::acc_rel);
    check_acc(c, "sum_dyxc", acc[2], p0 + sp.get(), ap, TI<T>::acc_rel);
    check_acc(c, "sum_dy (partial sums in T)", acc[0], g0 + sg.get(), ag, TI<T>::partial_rel);
    check_acc(c, "sum_dyxc (T terms, partial sums in T)", acc[2], p0 + mp.get(), ap, TI<T>::partial_rel);
    check(is_poison(acc[1]) && is_poison(acc[3]), "%s: wrote past an accumulator", c.c_str());
  }

  void bwd_dx_run(const Runs& g, int regime, bool stream) {
    const std::string c = rctx("bwd_dx_run", g, regime, stream);
    const double center = regime ? 100.0 : 0.0;
    Buf<T> x(g.span(), g.off, 0), dy(g.span(), g.off, 0);
    fill_runs(x, g, center, 2.0);
    fill_runs(dy, g, 0.0, 1.0);
    const T cc = T(center + 0.5 * r.sym()), k1 = T(r.sym() * 2), k2 = T(r.sym()), k3 = T(r.sym());
    Buf<T> dx(g.span(), kGuardPre + g.off, kGuardPost);
    const bool alias = regime == 1;  // dx aliases dy
    if (alias) {
      g.each([&](size_t q, size_t, size_t) { dx[q] = dy[q]; });
      kt.bwd_dx_run(x.data(), dx.data(), dx.data(), g.rows, g.n, g.stride, cc, k1, k2, k3, stream, 0);
    } else {
      kt.bwd_dx_run(x.data(), dy.data(), dx.data(), g.rows, g.n, g.stride, cc, k1, k2, k3, stream, g.stride);
    }
    ElemCheck ec;
    g.each([&](size_t q, size_t, size_t) {
      add_dx(ec, q, dx[q], x[q], dy[q], cc, k1, k2, k3);
    });
    ec.report(c, "dx");
    check_out_untouched(c, dx, g, "dx");
  }

  // ---- rows kernels ----
  void fill_vec(Buf<T>& b, double center, double scale) {
    for (size_t i = 0; i < b.size(); ++i) b[i] = T(center + scale * r.sym());
  }

  // Inputs of the dx kernels over rows or a group: x around center, dy around 0, per-channel
  // c near center and k1, k2, k3.
  void fill_dx_inputs(Buf<T>& x, Buf<T>& dy, Buf<T>& cc, Buf<T>& k1, Buf<T>& k2, Buf<T>& k3, double center) {
    fill(x, r, center, 2.0);
    fill(dy, r, 0.0, 1.0);
    fill_vec(cc, center, 0.5);
    fill_vec(k1, 0.0, 2.0);
    fill_vec(k2, 0.0, 1.0);
    fill_vec(k3, 0.0, 1.0);
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

  void affine_rows(size_t rows, size_t ch, size_t off, int regime) {
    const std::string c = ctx("affine_rows", ch, off, regime, rows);
    const double center = regime ? 100.0 : 0.0;
    Buf<T> x(rows * ch, off, 0), cc(ch, off, 0), a(ch, off, 0), b(ch, off, 0);
    fill(x, r, center, 2.0);
    fill_vec(cc, center, 0.5);
    fill_vec(a, 0.0, 1.5);
    fill_vec(b, 0.0, 1.0);
    Buf<T> y(rows * ch, kGuardPre + off, kGuardPost);
    if (regime == 1) {
      for (size_t i = 0; i < rows * ch; ++i) y[i] = x[i];
      kt.affine_rows(y.data(), y.data(), rows, ch, cc.data(), a.data(), b.data());
    } else {
      kt.affine_rows(x.data(), y.data(), rows, ch, cc.data(), a.data(), b.data());
    }
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

  void bwd_dx_rows(size_t rows, size_t ch, size_t off, int regime) {
    const std::string c = ctx("bwd_dx_rows", ch, off, regime, rows);
    const double center = regime ? 100.0 : 0.0;
    Buf<T> x(rows * ch, off, 0), dy(rows * ch, off, 0), cc(ch, off, 0), k1(ch, off, 0),
        k2(ch, off, 0), k3(ch, off, 0);
    fill_dx_inputs(x, dy, cc, k1, k2, k3, center);
    Buf<T> dx(rows * ch, kGuardPre + off, kGuardPost);
    if (regime == 1) {  // dx aliases dy
      for (size_t i = 0; i < rows * ch; ++i) dx[i] = dy[i];
      kt.bwd_dx_rows(x.data(), dx.data(), dx.data(), rows, ch, cc.data(), k1.data(), k2.data(),
                     k3.data());
    } else {
      kt.bwd_dx_rows(x.data(), dy.data(), dx.data(), rows, ch, cc.data(), k1.data(), k2.data(),
                     k3.data());
    }
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
  // reductions' partial sums (every kPartial / terms-per-run samples).
  struct Group {
    size_t rows, runs, n, stride, off;
    size_t span() const { return (rows - 1) * stride + runs * n; }
  };
  std::string gctx(const char* kernel, const Group& g, int regime, int stream = -1) const {
    return fmt("kernel %s/%s %s rows=%zu runs=%zu n=%zu stride=%zu off=%zu %s%s", isa, TI<T>::name, kernel, g.rows,
               g.runs, g.n, g.stride, g.off, regime ? "offset100/inplace" : "centered",
               stream < 0 ? "" : (stream ? " stream" : ""));
  }
  void fill_group(Buf<T>& b, const Group& g, double center, double scale) {
    for (size_t rr = 0; rr < g.rows; ++rr)
      for (size_t q = 0; q < g.runs * g.n; ++q) b[rr * g.stride + q] = T(center + scale * r.normal());
  }

  void stats_group(const Group& g, int regime) {
    const std::string c = gctx("stats_group", g, regime);
    const double center = regime ? 100.0 : 0.0;
    Buf<T> x(g.span(), g.off, 0), k(g.runs, 0, 0);
    fill_group(x, g, center, 2.0);
    fill_vec(k, center, 1.0);
    Buf<double> sum(g.runs, kGuardPre, kGuardPost), sq(g.runs, kGuardPre, kGuardPost);
    for (size_t j = 0; j < g.runs; ++j) sum[j] = sq[j] = 0.0;
    kt.stats_group(x.data(), g.rows, g.stride, g.runs, g.n, k.data(), sum.data(), sq.data());
    for (size_t j = 0; j < g.runs; ++j) {
      KSum m1, m2;
      double a1 = 0, a2 = 0;
      for (size_t rr = 0; rr < g.rows; ++rr) {
        for (size_t i = 0; i < g.n; ++i) {
          const double d = double(T(x[rr * g.stride + j * g.n + i] - k[j]));
          m1.add(d);
          m2.add(d * d);
          a1 += std::fabs(d);
          a2 += d * d;
        }
      }
      check_acc(c, "sum", sum[j], m1.get(), a1, TI<T>::partial_rel);
      check_acc(c, "sumsq", sq[j], m2.get(), a2, TI<T>::partial_rel);
    }
    check(sum.guards_intact() && sq.guards_intact(), "%s: wrote past the accumulators", c.c_str());
  }

  void bwd_reduce_group(const Group& g, int regime) {
    const std::string c = gctx("bwd_reduce_group", g, regime);
    const double center = regime ? 100.0 : 0.0;
    Buf<T> x(g.span(), g.off, 0), dy(g.span(), g.off, 0), cc(g.runs, 0, 0);
    fill_group(x, g, center, 2.0);
    fill_group(dy, g, 0.0, 1.0);
    fill_vec(cc, center, 0.5);
    Buf<double> sg(g.runs, kGuardPre, kGuardPost), sp(g.runs, kGuardPre, kGuardPost);
    for (size_t j = 0; j < g.runs; ++j) sg[j] = sp[j] = 0.0;
    kt.bwd_reduce_group(x.data(), dy.data(), g.rows, g.stride, g.runs, g.n, cc.data(), sg.data(), sp.data());
    for (size_t j = 0; j < g.runs; ++j) {
      KSum mg, mp;
      double ag = 0, ap = 0;
      for (size_t rr = 0; rr < g.rows; ++rr) {
        for (size_t i = 0; i < g.n; ++i) {
          const size_t q = rr * g.stride + j * g.n + i;
          const double t = double(dy[q]) * double(T(x[q] - cc[j]));
          mg.add(double(dy[q]));
          mp.add(t);
          ag += std::fabs(double(dy[q]));
          ap += std::fabs(t);
        }
      }
      check_acc(c, "sum_dy", sg[j], mg.get(), ag, TI<T>::partial_rel);
      check_acc(c, "sum_dyxc", sp[j], mp.get(), ap, TI<T>::partial_rel);
    }
    check(sg.guards_intact() && sp.guards_intact(), "%s: wrote past the accumulators", c.c_str());
  }

  void affine_group(const Group& g, int regime, bool stream) {
    const std::string c = gctx("affine_group", g, regime, stream);
    const double center = regime ? 100.0 : 0.0;
    const size_t total = g.runs * g.n;
    Buf<T> x(total, g.off, 0), cc(g.runs, 0, 0), a(g.runs, 0, 0), b(g.runs, 0, 0);
    fill(x, r, center, 2.0);
    fill_vec(cc, center, 0.5);
    fill_vec(a, 0.0, 2.0);
    fill_vec(b, 0.0, 1.0);
    Buf<T> y(total, kGuardPre + g.off, kGuardPost);
    if (regime == 1) {
      for (size_t q = 0; q < total; ++q) y[q] = x[q];
      kt.affine_group(y.data(), y.data(), g.runs, g.n, cc.data(), a.data(), b.data(), stream, total);
    } else {
      kt.affine_group(x.data(), y.data(), g.runs, g.n, cc.data(), a.data(), b.data(), stream, total);
    }
    ElemCheck ec;
    for (size_t q = 0; q < total; ++q) {
      const size_t j = q / g.n;
      const double xc = double(x[q]) - double(cc[j]);
      ec.add(q, double(y[q]), xc * double(a[j]) + double(b[j]),
             8 * eT * (std::fabs(xc * double(a[j])) + std::fabs(double(b[j]))) + 1e-300);
    }
    ec.report(c, "y");
    check(y.guards_intact(), "%s: wrote outside y", c.c_str());
  }

  void bwd_dx_group(const Group& g, int regime, bool stream) {
    const std::string c = gctx("bwd_dx_group", g, regime, stream);
    const double center = regime ? 100.0 : 0.0;
    const size_t total = g.runs * g.n;
    Buf<T> x(total, g.off, 0), dy(total, g.off, 0), cc(g.runs, 0, 0), k1(g.runs, 0, 0), k2(g.runs, 0, 0),
        k3(g.runs, 0, 0);
    fill_dx_inputs(x, dy, cc, k1, k2, k3, center);
    Buf<T> dx(total, kGuardPre + g.off, kGuardPost);
    if (regime == 1) {  // dx aliases dy
      for (size_t q = 0; q < total; ++q) dx[q] = dy[q];
      kt.bwd_dx_group(x.data(), dx.data(), dx.data(), g.runs, g.n, cc.data(), k1.data(), k2.data(), k3.data(),
                      stream, 0);
    } else {
      kt.bwd_dx_group(x.data(), dy.data(), dx.data(), g.runs, g.n, cc.data(), k1.data(), k2.data(), k3.data(),
                      stream, total);
    }
    ElemCheck ec;
    for (size_t q = 0; q < total; ++q) {
      const size_t j = q / g.n;
      add_dx(ec, q, dx[q], x[q], dy[q], cc[j], k1[j], k2[j], k3[j]);
    }
    ec.report(c, "dx");
    check(dx.guards_intact(), "%s: wrote outside dx", c.c_str());
  }

  void run_all(size_t w) {
    const std::vector<size_t> sizes = sweep_sizes(w);
    for (size_t n : sizes) {
      for (size_t off : {size_t(0), size_t(1), size_t(3)}) {
        for (int regime : {0, 1}) {
          // One run, then 3 runs with a gap of 3 elements (each run starts at another alignment).
          for (size_t rows : {size_t(1), size_t(3)}) {
            const Runs g{rows, n, rows == 1 ? n : n + 3, off};
            stats_run(g, regime);
            bwd_reduce_run(g, regime);
            for (bool stream : {false, true}) {
              affine_run(g, regime, stream);
              affine_stats_run(g, regime, stream);
              bwd_dx_run(g, regime, stream);
            }
          }
          // Group kernels: 1 to 33 runs. The reductions at every n (their partial sums span
          // several runs when runs are short, and widen within each run when they are long) and
          // up to 17 samples (several widenings); the writers up to 2w + 3 (short maps are what
          // they are for).
          if (n > 0) {
            for (size_t runs : {size_t(1), size_t(3), size_t(33)}) {
              if (n > 4 * w + 5 && runs == 33) continue;
              for (size_t rows : {size_t(1), size_t(3), size_t(17)}) {
                const Group g{rows, runs, n, runs * n + (rows == 1 ? 0 : 5), off};
                stats_group(g, regime);
                bwd_reduce_group(g, regime);
              }
              if (n > 2 * w + 3) continue;
              const Group g1{1, runs, n, runs * n, off};
              for (bool stream : {false, true}) {
                affine_group(g1, regime, stream);
                bwd_dx_group(g1, regime, stream);
              }
            }
          }
          if (off == 3) continue;  // rows kernels: aligned and offset by one
          for (size_t rows : {size_t(1), size_t(3)}) {
            stats_rows(rows, n, off, regime);
            affine_rows(rows, n, off, regime);
            bwd_reduce_rows(rows, n, off, regime);
            bwd_dx_rows(rows, n, off, regime);
          }
        }
      }
    }
  }
};

struct TableEntry {
  const char* name;
  bn::SimdLevel level;
  const bn::KernelSet* (*get)();
  size_t w32, w64;
};

std::vector<TableEntry> all_tables() {
  std::vector<TableEntry> t = {{"scalar", bn::SimdLevel::kScalar, bn::kernels_scalar, 1, 1}};
#if defined(__x86_64__)
  t.push_back({"avx2", bn::SimdLevel::kAvx2, bn::kernels_avx2, 8, 4});
  t.push_back({"avx512", bn::SimdLevel::kAvx512, bn::kernels_avx512, 16, 8});
#endif
#if defined(__aarch64__)
  t.push_back({"neon", bn::SimdLevel::kNeon, bn::kernels_neon, 4, 2});
#endif
  return t;
}

void test_microkernels() {
  Rng rng(0x5EED0001);
  for (const TableEntry& e : all_tables()) {
    // The getter itself runs no vector instruction; the kernels only run if the CPU has the ISA.
    if (!bn::simd_level_supported(e.level)) {
      std::printf("microkernels: %s not supported on this CPU, skipped\n", e.name);
      continue;
    }
    const bn::KernelSet* ks = e.get();
    if (!check(ks != nullptr, "kernel table %s is null", e.name)) continue;
    const int before = g_failed;
    KernelTester<float>{e.name, ks->f32, rng}.run_all(e.w32);
    KernelTester<double>{e.name, ks->f64, rng}.run_all(e.w64);
    std::printf("microkernels: %s (w = %zu f32, %zu f64) %s\n", e.name, e.w32, e.w64,
                g_failed == before ? "ok" : "FAILED");
    // The dispatcher hands out exactly this table when asked for the level.
    const bn::SimdLevel prev = bn::active_simd_level();
    check(bn::set_simd_level(e.level) == bn::Status::kOk, "set_simd_level(%s) failed", e.name);
    check(&bn::active_kernels() == ks, "active_kernels() after set_simd_level(%s) is not %s's table",
          e.name, e.name);
    check(bn::set_simd_level(prev) == bn::Status::kOk, "could not restore the SIMD level");
  }
}

// ================================================================================================
// 2. Driver tests against a float64 reference
// ================================================================================================
struct DCase {
  int64_t n, c, s;
  double offset;        // added to every channel centre (1e4: cancellation test)
  bool const_channel;   // channel 0 constant (variance 0)
  const char* note;
  bool channels_last = false;  // x[n][s][c] (rows kernels over N*S rows)
};

template <typename T>
struct Ref {
  int64_t N, C, S, m;
  size_t total;
  bool cl = false;
  bn::Shape shape;
  double eps = 1e-5;
  std::vector<T> x, dy, w, b, rm0, rv0, gw0, gb0;
  // forward, batch statistics (biased var)
  std::vector<double> mean, var, inv, sd;
  // Tolerance of a float64 batch mean: the kernels form x - k in T (k = a value of the channel, the
  // first one; kernels.h), so each term carries half an ulp of T of |x - k|.
  std::vector<double> mean_tol;
  // backward, training mode (mean/inv above) and evaluation mode (rm0, rinv)
  std::vector<double> rmean, rinv;
  std::vector<double> G, DW, abs_dy, abs_dyxh, DWe, abs_dyxhe;

  size_t idx(int64_t n, int64_t c, int64_t j) const {
    return cl ? size_t((n * S + j) * C + c) : size_t((n * C + c) * S + j);
  }
};

template <typename T>
void make_ref(Ref<T>& R, const DCase& dc, uint64_t seed) {
  Rng rng(seed);
  R.N = dc.n;
  R.C = dc.c;
  R.S = dc.s;
  R.m = dc.n * dc.s;
  R.total = size_t(dc.n * dc.c * dc.s);
  R.cl = dc.channels_last;
  R.shape = bn::Shape{dc.n, dc.c, dc.s, dc.channels_last};
  const size_t C = size_t(dc.c);
  R.x.resize(R.total);
  R.dy.resize(R.total);
  R.w.resize(C);
  R.b.resize(C);
  R.rm0.resize(C);
  R.rv0.resize(C);
  R.gw0.resize(C);
  R.gb0.resize(C);
  std::vector<double> center(C), scale(C);
  for (size_t c = 0; c < C; ++c) {
    center[c] = dc.offset + 2.0 * rng.sym();
    scale[c] = 0.5 + 1.5 * rng.uniform();
    R.w[c] = T((0.5 + rng.uniform()) * (rng.uniform() < 0.3 ? -1.0 : 1.0));
    R.b[c] = T(rng.sym());
    R.rm0[c] = T(center[c] + 0.1 * rng.sym());
    R.rv0[c] = T(scale[c] * scale[c] * (0.8 + 0.4 * rng.uniform()));
    R.gw0[c] = T(rng.sym());
    R.gb0[c] = T(rng.sym());
  }
  for (int64_t n = 0; n < R.N; ++n) {
    for (int64_t c = 0; c < R.C; ++c) {
      for (int64_t j = 0; j < R.S; ++j) {
        const size_t q = R.idx(n, c, j);
        R.x[q] = (dc.const_channel && c == 0) ? T(3.25) : T(center[c] + scale[c] * rng.normal());
        R.dy[q] = T(rng.normal());
      }
    }
  }
  // Batch statistics: two-pass, compensated sums in float64.
  R.mean.assign(C, 0);
  R.var.assign(C, 0);
  R.inv.assign(C, 0);
  R.sd.assign(C, 0);
  R.mean_tol.assign(C, 0);
  R.rmean.assign(C, 0);
  R.rinv.assign(C, 0);
  R.G.assign(C, 0);
  R.DW.assign(C, 0);
  R.abs_dy.assign(C, 0);
  R.abs_dyxh.assign(C, 0);
  R.DWe.assign(C, 0);
  R.abs_dyxhe.assign(C, 0);
  for (int64_t c = 0; c < R.C; ++c) {
    KSum s;
    for (int64_t n = 0; n < R.N; ++n)
      for (int64_t j = 0; j < R.S; ++j) s.add(double(R.x[R.idx(n, c, j)]));
    const double mean = s.get() / double(R.m);
    KSum q;
    for (int64_t n = 0; n < R.N; ++n)
      for (int64_t j = 0; j < R.S; ++j) {
        const double d = double(R.x[R.idx(n, c, j)]) - mean;
        q.add(d * d);
      }
    const double var = q.get() / double(R.m);
    const double k = double(R.x[R.idx(0, c, 0)]);
    double adk = 0;
    for (int64_t n = 0; n < R.N; ++n)
      for (int64_t j = 0; j < R.S; ++j) adk += std::fabs(double(R.x[R.idx(n, c, j)]) - k);
    R.mean_tol[c] = 0.5 * TI<T>::eps * adk / double(R.m) + 1e-12 * (std::fabs(mean) + std::sqrt(var)) + 1e-300;
    R.mean[c] = mean;
    R.var[c] = var;
    R.sd[c] = std::sqrt(var);
    R.inv[c] = 1.0 / std::sqrt(var + R.eps);
    R.rmean[c] = double(R.rm0[c]);
    R.rinv[c] = 1.0 / std::sqrt(double(R.rv0[c]) + R.eps);
    KSum g, dw, dwe;
    double ady = 0, adyx = 0, adyxe = 0;
    const double ct = double(T(mean));  // the core centres on mean rounded to T
    for (int64_t n = 0; n < R.N; ++n)
      for (int64_t j = 0; j < R.S; ++j) {
        const size_t i = R.idx(n, c, j);
        const double gv = double(R.dy[i]), xv = double(R.x[i]);
        g.add(gv);
        dw.add(gv * (xv - mean) * R.inv[c]);
        dwe.add(gv * (xv - R.rmean[c]) * R.rinv[c]);
        ady += std::fabs(gv);
        adyx += std::fabs(gv * (xv - ct)) * R.inv[c] + std::fabs(gv * (xv - mean)) * R.inv[c];
        adyxe += std::fabs(gv * (xv - R.rmean[c])) * R.rinv[c];
      }
    R.G[c] = g.get();
    R.DW[c] = dw.get();
    R.DWe[c] = dwe.get();
    R.abs_dy[c] = ady;
    R.abs_dyxh[c] = adyx;
    R.abs_dyxhe[c] = adyxe;
  }
}

template <typename T>
struct DriverRun {
  const Ref<T>& R;
  std::string ctx;
  static constexpr double eT = TI<T>::eps;
  static constexpr double rs = TI<T>::stat_rel;

  // y = (x - mean) * inv * w + b against the batch statistics (or given ones).
  void check_y(const T* y, const std::vector<double>& mean, const std::vector<double>& inv,
               bool affine, const char* what) const {
    ElemCheck ec;
    for (int64_t n = 0; n < R.N; ++n)
      for (int64_t c = 0; c < R.C; ++c) {
        const double w = affine ? double(R.w[c]) : 1.0, b = affine ? double(R.b[c]) : 0.0;
        for (int64_t j = 0; j < R.S; ++j) {
          const size_t i = R.idx(n, c, j);
          const double t = (double(R.x[i]) - mean[c]) * inv[c] * w;
          // The last term: a float64 mean is itself only known to an ulp of |mean| (matters for
          // float64 data with |mean| >> std), in the reference as in the core.
          ec.add(i, double(y[i]), t + b,
                 (8 * eT + rs) * (std::fabs(t) + std::fabs(b) + std::fabs(w)) +
                     2 * 0x1.0p-52 * std::fabs(mean[c]) * inv[c] * std::fabs(w) + 1e-300);
        }
      }
    ec.report(ctx, what);
  }

  void check_batch_stats(const T* save_mean, const T* save_inv, const double* bmean,
                         const double* binv) const {
    ElemCheck sm, si, bm, bi;
    const double vr = TI<T>::var_rel;
    for (int64_t c = 0; c < R.C; ++c) {
      const double mt = R.mean_tol[c];
      if (bmean) bm.add(size_t(c), bmean[c], R.mean[c], mt);
      if (binv) bi.add(size_t(c), binv[c], R.inv[c], vr * R.inv[c]);
      if (save_mean) sm.add(size_t(c), double(save_mean[c]), R.mean[c], eT * std::fabs(R.mean[c]) + mt);
      if (save_inv) si.add(size_t(c), double(save_inv[c]), R.inv[c], (eT + vr) * R.inv[c]);
    }
    if (bmean) bm.report(ctx, "batch_mean");
    if (binv) bi.report(ctx, "batch_invstd");
    if (save_mean) sm.report(ctx, "save_mean");
    if (save_inv) si.report(ctx, "save_invstd");
  }

  void check_running(const T* rm, const T* rv, double f) const {
    ElemCheck em, ev;
    for (int64_t c = 0; c < R.C; ++c) {
      const double m0 = double(R.rm0[c]), v0 = double(R.rv0[c]);
      const double unb = R.var[c] * double(R.m) / double(R.m - 1);
      const double refm = (1 - f) * m0 + f * R.mean[c];
      const double refv = (1 - f) * v0 + f * unb;
      em.add(size_t(c), double(rm[c]), refm,
             2 * eT * (std::fabs((1 - f) * m0) + std::fabs(f * R.mean[c])) + f * R.mean_tol[c]);
      ev.add(size_t(c), double(rv[c]), refv,
             2 * eT * (std::fabs((1 - f) * v0) + std::fabs(f * unb)) + f * unb * TI<T>::var_rel + 1e-300);
    }
    em.report(ctx, fmt("running_mean (f=%g)", f).c_str());
    ev.report(ctx, fmt("running_var (f=%g, unbiased)", f).c_str());
  }

  // Training-mode dx (batch statistics).
  void check_dx_train(const T* dx, bool affine, const char* what) const {
    ElemCheck ec;
    const double md = double(R.m);
    for (int64_t n = 0; n < R.N; ++n)
      for (int64_t c = 0; c < R.C; ++c) {
        const double w = affine ? double(R.w[c]) : 1.0, inv = R.inv[c];
        const double G = R.G[c], DW = R.DW[c];
        for (int64_t j = 0; j < R.S; ++j) {
          const size_t i = R.idx(n, c, j);
          const double g = double(R.dy[i]);
          const double xh = (double(R.x[i]) - R.mean[c]) * inv;
          const double ref = w * inv / md * (md * g - G - xh * DW);
          const double mag = std::fabs(w) * inv *
                             (std::fabs(g) + (std::fabs(G) + R.abs_dy[c]) / md +
                              std::fabs(xh) * (std::fabs(DW) + R.abs_dyxh[c]) / md);
          ec.add(i, double(dx[i]), ref, (8 * eT + rs) * mag + 1e-300);
        }
      }
    ec.report(ctx, what);
  }

  void check_dx_eval(const T* dx, bool affine, const char* what) const {
    ElemCheck ec;
    for (int64_t n = 0; n < R.N; ++n)
      for (int64_t c = 0; c < R.C; ++c) {
        const double w = affine ? double(R.w[c]) : 1.0;
        for (int64_t j = 0; j < R.S; ++j) {
          const size_t i = R.idx(n, c, j);
          const double ref = double(R.dy[i]) * w * R.rinv[c];
          ec.add(i, double(dx[i]), ref, 4 * eT * std::fabs(ref) + 1e-300);
        }
      }
    ec.report(ctx, what);
  }

  void check_grads(const T* gw, const T* gb, bool accumulate, bool eval) const {
    ElemCheck ew, eb;
    for (int64_t c = 0; c < R.C; ++c) {
      const double w0 = accumulate ? double(R.gw0[c]) : 0.0, b0 = accumulate ? double(R.gb0[c]) : 0.0;
      const double DW = eval ? R.DWe[c] : R.DW[c], adw = eval ? R.abs_dyxhe[c] : R.abs_dyxh[c];
      if (gw) {
        ew.add(size_t(c), double(gw[c]), w0 + DW,
               2 * eT * (std::fabs(w0) + std::fabs(DW)) + (eT + TI<T>::partial_rel) * adw + 1e-300);
      }
      if (gb) {
        eb.add(size_t(c), double(gb[c]), b0 + R.G[c],
               2 * eT * (std::fabs(b0) + std::fabs(R.G[c])) + TI<T>::partial_rel * R.abs_dy[c] + 1e-300);
      }
    }
    if (gw) ew.report(ctx, accumulate ? "grad_weight (accumulated)" : "grad_weight (written)");
    if (gb) eb.report(ctx, accumulate ? "grad_bias (accumulated)" : "grad_bias (written)");
  }
};

template <typename T>
void copy_into(Buf<T>& dst, const std::vector<T>& src) {
  for (size_t i = 0; i < src.size(); ++i) dst[i] = src[i];
}

template <typename T>
void run_driver_variants(const Ref<T>& R, const std::string& base, int threads, int ti) {
  DriverRun<T> D{R, ""};
  const size_t C = size_t(R.C), total = R.total;
  const double fs[3] = {0.1, 1.0, 0.0};
  const double f = fs[ti % 3];

  // V1: training forward, out of place, affine, running statistics, every optional output.
  {
    D.ctx = base + " fwd_train";
    Buf<T> y(total, kGuardPre, kGuardPost), sm(C, kGuardPre, kGuardPost), si(C, kGuardPre, kGuardPost);
    Buf<double> bm(C, kGuardPre, kGuardPost), bi(C, kGuardPre, kGuardPost);
    Buf<T> rm(C, kGuardPre, kGuardPost), rv(C, kGuardPre, kGuardPost);
    copy_into(rm, R.rm0);
    copy_into(rv, R.rv0);
    bn::ForwardTrainingArgs<T> a;
    a.shape = R.shape;
    a.x = R.x.data();
    a.y = y.data();
    a.weight = R.w.data();
    a.bias = R.b.data();
    a.save_mean = sm.data();
    a.save_invstd = si.data();
    a.batch_mean = bm.data();
    a.batch_invstd = bi.data();
    a.running_mean = rm.data();
    a.running_var = rv.data();
    a.eps = R.eps;
    a.momentum_factor = f;
    a.num_threads = threads;
    const bn::Status st = bn::forward_training(a);
    if (check(st == bn::Status::kOk, "%s: status %d", D.ctx.c_str(), int(st))) {
      D.check_y(y.data(), R.mean, R.inv, true, "y");
      D.check_batch_stats(sm.data(), si.data(), bm.data(), bi.data());
      D.check_running(rm.data(), rv.data(), f);
    }
    check(y.guards_intact() && sm.guards_intact() && si.guards_intact() && bm.guards_intact() &&
              bi.guards_intact() && rm.guards_intact() && rv.guards_intact(),
          "%s: wrote outside an output", D.ctx.c_str());
  }
  // V2: training forward in place (y == x), affine = false, no running stats, float64 stats only.
  {
    D.ctx = base + " fwd_train inplace noaffine";
    Buf<T> y(total, kGuardPre, kGuardPost);
    Buf<double> bm(C, kGuardPre, kGuardPost), bi(C, kGuardPre, kGuardPost);
    copy_into(y, R.x);
    bn::ForwardTrainingArgs<T> a;
    a.shape = R.shape;
    a.x = y.data();
    a.y = y.data();
    a.batch_mean = bm.data();
    a.batch_invstd = bi.data();
    a.eps = R.eps;
    a.num_threads = threads;
    const bn::Status st = bn::forward_training(a);
    if (check(st == bn::Status::kOk, "%s: status %d", D.ctx.c_str(), int(st))) {
      D.check_y(y.data(), R.mean, R.inv, false, "y");
      D.check_batch_stats(nullptr, nullptr, bm.data(), bi.data());
    }
    check(y.guards_intact() && bm.guards_intact() && bi.guards_intact(),
          "%s: wrote outside an output", D.ctx.c_str());
  }
  // V3: inference, out of place with affine, then in place without.
  for (int inplace = 0; inplace < 2; ++inplace) {
    D.ctx = base + (inplace ? " fwd_infer inplace noaffine" : " fwd_infer");
    Buf<T> y(total, kGuardPre, kGuardPost);
    if (inplace) copy_into(y, R.x);
    bn::ForwardInferenceArgs<T> a;
    a.shape = R.shape;
    a.x = inplace ? y.data() : R.x.data();
    a.y = y.data();
    a.weight = inplace ? nullptr : R.w.data();
    a.bias = inplace ? nullptr : R.b.data();
    a.mean = R.rm0.data();
    a.var = R.rv0.data();
    a.eps = R.eps;
    a.num_threads = threads;
    const bn::Status st = bn::forward_inference(a);
    if (check(st == bn::Status::kOk, "%s: status %d", D.ctx.c_str(), int(st))) {
      D.check_y(y.data(), R.rmean, R.rinv, !inplace, "y");
    }
    check(y.guards_intact(), "%s: wrote outside y", D.ctx.c_str());
  }
  // V4: training backward, separate dx, affine, accumulate = true.
  {
    D.ctx = base + " bwd_train accumulate";
    Buf<T> dx(total, kGuardPre, kGuardPost), gw(C, kGuardPre, kGuardPost), gb(C, kGuardPre, kGuardPost);
    copy_into(gw, R.gw0);
    copy_into(gb, R.gb0);
    bn::BackwardArgs<T> a;
    a.shape = R.shape;
    a.x = R.x.data();
    a.dy = R.dy.data();
    a.dx = dx.data();
    a.weight = R.w.data();
    a.mean = R.mean.data();
    a.invstd = R.inv.data();
    a.grad_weight = gw.data();
    a.grad_bias = gb.data();
    a.use_batch_stats = true;
    a.accumulate = true;
    a.num_threads = threads;
    const bn::Status st = bn::backward(a);
    if (check(st == bn::Status::kOk, "%s: status %d", D.ctx.c_str(), int(st))) {
      D.check_dx_train(dx.data(), true, "dx");
      D.check_grads(gw.data(), gb.data(), true, false);
    }
    check(dx.guards_intact() && gw.guards_intact() && gb.guards_intact(), "%s: wrote outside an output",
          D.ctx.c_str());
  }
  // V5: training backward, dx aliasing dy, no weight, accumulate = false (poisoned grads overwritten).
  {
    D.ctx = base + " bwd_train dx=dy noaffine overwrite";
    Buf<T> dx(total, kGuardPre, kGuardPost), gw(C, kGuardPre, kGuardPost), gb(C, kGuardPre, kGuardPost);
    copy_into(dx, R.dy);
    bn::BackwardArgs<T> a;
    a.shape = R.shape;
    a.x = R.x.data();
    a.dy = dx.data();
    a.dx = dx.data();
    a.mean = R.mean.data();
    a.invstd = R.inv.data();
    a.grad_weight = gw.data();
    a.grad_bias = gb.data();
    a.accumulate = false;
    a.num_threads = threads;
    const bn::Status st = bn::backward(a);
    if (check(st == bn::Status::kOk, "%s: status %d", D.ctx.c_str(), int(st))) {
      D.check_dx_train(dx.data(), false, "dx");
      D.check_grads(gw.data(), gb.data(), false, false);
    }
    check(dx.guards_intact() && gw.guards_intact() && gb.guards_intact(), "%s: wrote outside an output",
          D.ctx.c_str());
  }
  // V6: evaluation-mode backward (constant statistics), dx aliasing x, affine, overwrite.
  {
    D.ctx = base + " bwd_eval dx=x";
    Buf<T> dx(total, kGuardPre, kGuardPost), gw(C, kGuardPre, kGuardPost), gb(C, kGuardPre, kGuardPost);
    copy_into(dx, R.x);
    bn::BackwardArgs<T> a;
    a.shape = R.shape;
    a.x = dx.data();
    a.dy = R.dy.data();
    a.dx = dx.data();
    a.weight = R.w.data();
    a.mean = R.rmean.data();
    a.invstd = R.rinv.data();
    a.grad_weight = gw.data();
    a.grad_bias = gb.data();
    a.use_batch_stats = false;
    a.accumulate = false;
    a.num_threads = threads;
    const bn::Status st = bn::backward(a);
    if (check(st == bn::Status::kOk, "%s: status %d", D.ctx.c_str(), int(st))) {
      D.check_dx_eval(dx.data(), true, "dx");
      D.check_grads(gw.data(), gb.data(), false, true);
    }
    check(dx.guards_intact() && gw.guards_intact() && gb.guards_intact(), "%s: wrote outside an output",
          D.ctx.c_str());
  }
  // V7: training backward without dx, only grad_weight, accumulate = true.
  {
    D.ctx = base + " bwd_train nodx";
    Buf<T> gw(C, kGuardPre, kGuardPost);
    copy_into(gw, R.gw0);
    bn::BackwardArgs<T> a;
    a.shape = R.shape;
    a.x = R.x.data();
    a.dy = R.dy.data();
    a.weight = R.w.data();
    a.mean = R.mean.data();
    a.invstd = R.inv.data();
    a.grad_weight = gw.data();
    a.accumulate = true;
    a.num_threads = threads;
    const bn::Status st = bn::backward(a);
    if (check(st == bn::Status::kOk, "%s: status %d", D.ctx.c_str(), int(st))) {
      D.check_grads(gw.data(), nullptr, true, false);
    }
    check(gw.guards_intact(), "%s: wrote outside grad_weight", D.ctx.c_str());
  }
}

std::vector<bn::SimdLevel> supported_levels() {
  std::vector<bn::SimdLevel> v;
  for (bn::SimdLevel l : {bn::SimdLevel::kScalar, bn::SimdLevel::kAvx2, bn::SimdLevel::kAvx512,
                          bn::SimdLevel::kNeon}) {
    if (bn::simd_level_supported(l)) v.push_back(l);
  }
  return v;
}

const DCase kCases[] = {
    {7, 5, 1, 0.0, true, "rows, const channel"},
    {2, 3, 1, 0.0, false, "rows, m=2"},
    {5000, 7, 1, 0.0, false, "rows, parallel"},
    {1, 3, 35, 0.0, false, "N=1"},
    {3, 5, 15, 0.0, false, "tail"},
    {3, 5, 16, 0.0, false, "tail"},
    {3, 5, 17, 0.0, true, "tail, const channel"},
    {3, 5, 35, 0.0, false, "tail"},
    {4, 3, 4099, 0.0, true, "above serial threshold, const channel"},
    {2, 1, 17000, 0.0, false, "C < threads"},
    {2, 2, 20000, 0.0, false, "C < threads (3)"},
    {3, 5, 7000, 0.0, false, "split channels, parts cross runs"},
    {3, 5, 2500, 0.0, false, "C not a multiple of threads"},
    {8, 3, 100, 1e4, false, "mean offset 1e4"},
    {4, 1, 9000, 1e4, false, "mean offset 1e4, split channel"},
    // Channels in waves (2 and 3 threads): > 1 MB per channel, uneven last wave; with
    // BATCHNORM_STREAM_MIN_BYTES = 1 MiB (set in main) also the streaming-store path.
    {4, 5, 35000, 0.0, true, "waves, streaming stores"},
    // Training's normalize pass fused with the next piece's statistics: across full waves (2
    // threads: waves of 3 channels, the third one short), and across whole channels (1 thread).
    {4, 7, 35000, 0.0, false, "pipelined waves"},
    // Short maps: groups of channels reduced channel by channel from L2, the first group of each
    // thread prefetched by the driver (1 thread: groups of 334 and 178 channels).
    {8, 512, 49, 0.0, false, "groups"},
    // Short runs (784 bytes, f32) of a large batch: one channel per piece (no groups), the runs
    // streamed with a masked head and tail.
    {512, 4, 196, 0.0, false, "short runs, large batch, streaming"},
    // Backward pieces larger than L2 (2 MiB here): the second pass walks them last block first.
    {2, 2, 240000, 0.0, false, "backward second pass reversed"},
    // channels_last (NHWC): the rows kernels over N*S rows of C channels.
    {3, 5, 17, 0.0, true, "NHWC, const channel", true},
    {2, 7, 3, 0.0, false, "NHWC small", true},
    {4, 3, 4099, 0.0, false, "NHWC, parallel", true},
    {2, 1, 17000, 0.0, false, "NHWC, C=1", true},
    {8, 6, 700, 1e4, false, "NHWC, mean offset 1e4", true},
};

template <typename T>
void test_drivers() {
  const std::vector<bn::SimdLevel> levels = supported_levels();
  uint64_t seed = std::is_same<T, float>::value ? 0xF32000 : 0xF64000;
  for (const DCase& dc : kCases) {
    Ref<T> R;
    make_ref(R, dc, ++seed);
    for (bn::SimdLevel level : levels) {
      if (!check(bn::set_simd_level(level) == bn::Status::kOk, "set_simd_level(%s)",
                 bn::simd_level_name(level))) {
        continue;
      }
      check(bn::active_simd_level() == level, "active_simd_level() != %s after set",
            bn::simd_level_name(level));
      for (int ti = 0; ti < 3; ++ti) {
        const int threads = ti + 1;
        const std::string base =
            fmt("driver %s/%s [N=%lld C=%lld S=%lld%s] (%s) threads=%d", bn::simd_level_name(level),
                TI<T>::name, (long long)dc.n, (long long)dc.c, (long long)dc.s,
                dc.channels_last ? " NHWC" : "", dc.note, threads);
        const auto t0 = std::chrono::steady_clock::now();
        run_driver_variants(R, base, threads, ti);
        if (std::getenv("BN_TEST_TIMING")) std::printf("%.3f s  %s\n", seconds_since(t0), base.c_str());
      }
    }
  }
}

// The float32 cancellation case also checked directly: with x = 1e4 + noise the textbook
// E[x^2] - E[x]^2 in float32 has no correct digit left; the core must keep var to ~1e-6.
void test_offset_accuracy() {
  const int64_t N = 16, C = 2, S = 64;
  Rng rng(0x0FF5E7);
  std::vector<float> x(size_t(N * C * S));
  for (float& v : x) v = float(1e4 + rng.normal());
  std::vector<double> bm(C), bi(C);
  for (bn::SimdLevel level : supported_levels()) {
    bn::set_simd_level(level);
    bn::ForwardTrainingArgs<float> a;
    a.shape = {N, C, S};
    a.x = x.data();
    std::vector<float> y(x.size());
    a.y = y.data();
    a.batch_mean = bm.data();
    a.batch_invstd = bi.data();
    a.eps = 0.0;
    if (!check(bn::forward_training(a) == bn::Status::kOk, "offset accuracy: status")) continue;
    for (int64_t c = 0; c < C; ++c) {
      KSum s;
      for (int64_t n = 0; n < N; ++n)
        for (int64_t j = 0; j < S; ++j) s.add(x[size_t((n * C + c) * S + j)]);
      const double mean = s.get() / double(N * S);
      KSum q;
      for (int64_t n = 0; n < N; ++n)
        for (int64_t j = 0; j < S; ++j) {
          const double d = x[size_t((n * C + c) * S + j)] - mean;
          q.add(d * d);
        }
      const double var = q.get() / double(N * S);
      const double got_var = 1.0 / (bi[c] * bi[c]);
      check(std::fabs(bm[c] - mean) <= 1e-9 * std::sqrt(var),
            "offset accuracy %s c=%lld: mean %.12g ref %.12g", bn::simd_level_name(level),
            (long long)c, bm[c], mean);
      check(std::fabs(got_var - var) <= 1e-6 * var, "offset accuracy %s c=%lld: var %.9g ref %.9g",
            bn::simd_level_name(level), (long long)c, got_var, var);
    }
  }
}

// ================================================================================================
// 3. Argument checks: statuses, and nothing written on error
// ================================================================================================
constexpr int64_t kI64Max = std::numeric_limits<int64_t>::max();

template <typename T>
void test_errors() {
  const char* tn = TI<T>::name;
  const int64_t N = 4, C = 3, S = 5;
  const size_t total = size_t(N * C * S);
  Rng rng(0xE7707);
  std::vector<T> x(total), dy(total), w(C), b(C), mean_t(C), var_t(C);
  for (auto& v : x) v = T(rng.normal());
  for (auto& v : dy) v = T(rng.normal());
  for (size_t c = 0; c < size_t(C); ++c) {
    w[c] = T(1 + rng.uniform());
    b[c] = T(rng.sym());
    mean_t[c] = T(rng.sym());
    var_t[c] = T(1 + rng.uniform());
  }
  std::vector<double> mean_d(C, 0.1), inv_d(C, 1.5);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();

  struct ShapeCase {
    int64_t n, c, s;
    const char* what;
  };
  const ShapeCase bad_shapes[] = {
      {0, C, S, "N=0"},
      {N, 0, S, "C=0"},
      {N, C, 0, "S=0"},
      {-1, C, S, "N<0"},
      {N, -3, S, "C<0"},
      {N, C, -5, "S<0"},
      {kI64Max, 2, 1, "N*C overflows"},
      {int64_t(1) << 22, int64_t(1) << 22, int64_t(1) << 22, "N*C*S = 2^66"},
      {int64_t(1) << 31, int64_t(1) << 31, 4, "N*C*S = 2^64"},
      {kI64Max, kI64Max, kI64Max, "all INT64_MAX"},
      {int64_t(1) << 30, int64_t(1) << 30, int64_t(1) << 1, "N*C*S*8 > INT64_MAX"},
  };
  for (const ShapeCase& s : bad_shapes) {
    check(bn::validate_shape({s.n, s.c, s.s}) == bn::Status::kBadShape, "validate_shape(%s) != kBadShape",
          s.what);
  }
  check(bn::validate_shape({int64_t(1) << 20, int64_t(1) << 20, int64_t(1) << 10}) == bn::Status::kOk,
        "validate_shape(2^50 elements) != kOk");
  check(bn::validate_shape({1, 1, 1}) == bn::Status::kOk, "validate_shape(1,1,1) != kOk");

  // ---- forward_training ----
  {
    Buf<T> y(total, kGuardPre, kGuardPost), sm(C, kGuardPre, kGuardPost), si(C, kGuardPre, kGuardPost);
    Buf<double> bm(C, kGuardPre, kGuardPost), bi(C, kGuardPre, kGuardPost);
    Buf<T> rm(C, kGuardPre, kGuardPost), rv(C, kGuardPre, kGuardPost);
    std::vector<T> rm_init(C), rv_init(C);
    for (size_t c = 0; c < size_t(C); ++c) {
      rm[c] = rm_init[c] = T(0.25 * double(c));
      rv[c] = rv_init[c] = T(1.0 + double(c));
    }
    auto base = [&] {
      bn::ForwardTrainingArgs<T> a;
      a.shape = {N, C, S};
      a.x = x.data();
      a.y = y.data();
      a.weight = w.data();
      a.bias = b.data();
      a.save_mean = sm.data();
      a.save_invstd = si.data();
      a.batch_mean = bm.data();
      a.batch_invstd = bi.data();
      a.running_mean = rm.data();
      a.running_var = rv.data();
      a.eps = 1e-5;
      a.momentum_factor = 0.1;
      a.num_threads = 2;
      return a;
    };
    auto untouched = [&] {
      bool ok = y.all_poison() && sm.all_poison() && si.all_poison() && bm.all_poison() &&
                bi.all_poison() && rm.guards_intact() && rv.guards_intact();
      for (size_t c = 0; c < size_t(C); ++c) {
        ok = ok && std::memcmp(&rm[c], &rm_init[c], sizeof(T)) == 0 &&
             std::memcmp(&rv[c], &rv_init[c], sizeof(T)) == 0;
      }
      return ok;
    };
    struct Case {
      std::string what;
      std::function<void(bn::ForwardTrainingArgs<T>&)> mutate;
      bn::Status expect;
    };
    std::vector<Case> cases;
    for (const ShapeCase& s : bad_shapes) {
      cases.push_back({fmt("shape %s", s.what), [s](auto& a) { a.shape = {s.n, s.c, s.s}; },
                       bn::Status::kBadShape});
    }
    cases.push_back({"m == 1 ([1, 3])", [](auto& a) { a.shape = {1, 3, 1}; }, bn::Status::kTooFewValues});
    cases.push_back({"m == 1 ([1, 1, 1])", [](auto& a) { a.shape = {1, 1, 1}; }, bn::Status::kTooFewValues});
    cases.push_back({"eps NaN", [nan](auto& a) { a.eps = nan; }, bn::Status::kBadEps});
    cases.push_back({"eps < 0", [](auto& a) { a.eps = -1e-5; }, bn::Status::kBadEps});
    cases.push_back({"eps inf", [inf](auto& a) { a.eps = inf; }, bn::Status::kBadEps});
    cases.push_back({"momentum 1.5", [](auto& a) { a.momentum_factor = 1.5; }, bn::Status::kBadMomentum});
    cases.push_back({"momentum -0.1", [](auto& a) { a.momentum_factor = -0.1; }, bn::Status::kBadMomentum});
    cases.push_back({"momentum NaN", [nan](auto& a) { a.momentum_factor = nan; }, bn::Status::kBadMomentum});
    cases.push_back({"running_mean without running_var", [](auto& a) { a.running_var = nullptr; },
                     bn::Status::kMismatchedStats});
    cases.push_back({"running_var without running_mean", [](auto& a) { a.running_mean = nullptr; },
                     bn::Status::kMismatchedStats});
    cases.push_back({"null x", [](auto& a) { a.x = nullptr; }, bn::Status::kNullPointer});
    cases.push_back({"null y", [](auto& a) { a.y = nullptr; }, bn::Status::kNullPointer});
    cases.push_back({"threads 0", [](auto& a) { a.num_threads = 0; }, bn::Status::kBadThreads});
    cases.push_back({"threads -3", [](auto& a) { a.num_threads = -3; }, bn::Status::kBadThreads});
    for (const Case& cs : cases) {
      bn::ForwardTrainingArgs<T> a = base();
      cs.mutate(a);
      const bn::Status st = bn::forward_training(a);
      check(st == cs.expect, "errors %s forward_training %s: status %d (%s), expected %d", tn,
            cs.what.c_str(), int(st), bn::status_message(st), int(cs.expect));
      check(untouched(), "errors %s forward_training %s: an output was written", tn, cs.what.c_str());
    }
    // Boundary values that are valid: momentum 0 and 1, eps 0.
    for (double mf : {0.0, 1.0}) {
      bn::ForwardTrainingArgs<T> a = base();
      a.momentum_factor = mf;
      check(bn::forward_training(a) == bn::Status::kOk, "errors %s forward_training momentum %g rejected",
            tn, mf);
    }
    bn::ForwardTrainingArgs<T> a = base();
    a.eps = 0.0;
    a.running_mean = a.running_var = nullptr;
    check(bn::forward_training(a) == bn::Status::kOk, "errors %s forward_training eps 0 rejected", tn);
  }

  // ---- forward_inference ----
  {
    Buf<T> y(total, kGuardPre, kGuardPost);
    auto base = [&] {
      bn::ForwardInferenceArgs<T> a;
      a.shape = {N, C, S};
      a.x = x.data();
      a.y = y.data();
      a.weight = w.data();
      a.bias = b.data();
      a.mean = mean_t.data();
      a.var = var_t.data();
      a.eps = 1e-5;
      a.num_threads = 2;
      return a;
    };
    struct Case {
      std::string what;
      std::function<void(bn::ForwardInferenceArgs<T>&)> mutate;
      bn::Status expect;
    };
    std::vector<Case> cases;
    for (const ShapeCase& s : bad_shapes) {
      cases.push_back({fmt("shape %s", s.what), [s](auto& a) { a.shape = {s.n, s.c, s.s}; },
                       bn::Status::kBadShape});
    }
    cases.push_back({"null x", [](auto& a) { a.x = nullptr; }, bn::Status::kNullPointer});
    cases.push_back({"null y", [](auto& a) { a.y = nullptr; }, bn::Status::kNullPointer});
    cases.push_back({"null mean", [](auto& a) { a.mean = nullptr; }, bn::Status::kNullPointer});
    cases.push_back({"null var", [](auto& a) { a.var = nullptr; }, bn::Status::kNullPointer});
    cases.push_back({"eps NaN", [nan](auto& a) { a.eps = nan; }, bn::Status::kBadEps});
    cases.push_back({"eps < 0", [](auto& a) { a.eps = -1.0; }, bn::Status::kBadEps});
    cases.push_back({"threads 0", [](auto& a) { a.num_threads = 0; }, bn::Status::kBadThreads});
    for (const Case& cs : cases) {
      bn::ForwardInferenceArgs<T> a = base();
      cs.mutate(a);
      const bn::Status st = bn::forward_inference(a);
      check(st == cs.expect, "errors %s forward_inference %s: status %d (%s), expected %d", tn,
            cs.what.c_str(), int(st), bn::status_message(st), int(cs.expect));
      check(y.all_poison(), "errors %s forward_inference %s: y was written", tn, cs.what.c_str());
    }
    // One value per channel is fine in inference mode.
    bn::ForwardInferenceArgs<T> a = base();
    a.shape = {1, 3, 1};
    check(bn::forward_inference(a) == bn::Status::kOk, "errors %s forward_inference [1, 3] rejected", tn);
  }

  // ---- backward ----
  {
    Buf<T> dx(total, kGuardPre, kGuardPost), gw(C, kGuardPre, kGuardPost), gb(C, kGuardPre, kGuardPost);
    for (size_t c = 0; c < size_t(C); ++c) {
      gw[c] = T(0.5);
      gb[c] = T(-0.5);
    }
    auto base = [&] {
      bn::BackwardArgs<T> a;
      a.shape = {N, C, S};
      a.x = x.data();
      a.dy = dy.data();
      a.dx = dx.data();
      a.weight = w.data();
      a.mean = mean_d.data();
      a.invstd = inv_d.data();
      a.grad_weight = gw.data();
      a.grad_bias = gb.data();
      a.num_threads = 2;
      return a;
    };
    auto untouched = [&] {
      bool ok = dx.all_poison() && gw.guards_intact() && gb.guards_intact();
      for (size_t c = 0; c < size_t(C); ++c) ok = ok && gw[c] == T(0.5) && gb[c] == T(-0.5);
      return ok;
    };
    struct Case {
      std::string what;
      std::function<void(bn::BackwardArgs<T>&)> mutate;
      bn::Status expect;
    };
    std::vector<Case> cases;
    for (const ShapeCase& s : bad_shapes) {
      cases.push_back({fmt("shape %s", s.what), [s](auto& a) { a.shape = {s.n, s.c, s.s}; },
                       bn::Status::kBadShape});
    }
    cases.push_back({"null x", [](auto& a) { a.x = nullptr; }, bn::Status::kNullPointer});
    cases.push_back({"null dy", [](auto& a) { a.dy = nullptr; }, bn::Status::kNullPointer});
    cases.push_back({"null mean", [](auto& a) { a.mean = nullptr; }, bn::Status::kNullPointer});
    cases.push_back({"null invstd", [](auto& a) { a.invstd = nullptr; }, bn::Status::kNullPointer});
    cases.push_back({"threads 0", [](auto& a) { a.num_threads = 0; }, bn::Status::kBadThreads});
    for (const Case& cs : cases) {
      bn::BackwardArgs<T> a = base();
      cs.mutate(a);
      const bn::Status st = bn::backward(a);
      check(st == cs.expect, "errors %s backward %s: status %d (%s), expected %d", tn, cs.what.c_str(),
            int(st), bn::status_message(st), int(cs.expect));
      check(untouched(), "errors %s backward %s: an output was written", tn, cs.what.c_str());
    }
  }
}

void test_misc() {
  for (int s = 0; s <= 9; ++s) {
    const char* msg = bn::status_message(bn::Status(s));
    check(msg != nullptr && msg[0] != '\0', "status_message(%d) empty", s);
  }
  const bn::SimdLevel cur = bn::active_simd_level();
  for (bn::SimdLevel l : {bn::SimdLevel::kScalar, bn::SimdLevel::kAvx2, bn::SimdLevel::kAvx512,
                          bn::SimdLevel::kNeon}) {
    if (bn::simd_level_supported(l)) continue;
    check(bn::set_simd_level(l) == bn::Status::kUnsupported, "set_simd_level(%s) not kUnsupported",
          bn::simd_level_name(l));
    check(bn::active_simd_level() == cur, "failed set_simd_level(%s) changed the level",
          bn::simd_level_name(l));
  }
  check(bn::simd_level_supported(bn::SimdLevel::kScalar), "scalar level not supported");
  check(bn::simd_level_supported(bn::detected_simd_level()), "detected level not supported");
  check(bn::default_num_threads() >= 1, "default_num_threads() < 1");
#if defined(__aarch64__)
  check(bn::detected_simd_level() == bn::SimdLevel::kNeon, "arm64 build did not detect neon");
#endif
}

}  // namespace

// ---- Numerics (issue 18, section 4): a channel of +-(near T's max), three + for one -, so that
// the fast sums overflow and x - mean exceeds T's range. The exact float64 path (exact_stats.cc)
// must give finite y and dx, the same bits at every level and thread count, in every layout.
template <typename T>
void test_numerics() {
  const T big = std::is_same<T, float>::value ? T(3e38) : T(1.5e308);
  struct L { int64_t n, c, s; bool cl; };
  for (const L l : {L{2, 3, 19, false}, L{37, 3, 1, false}, L{3, 17, 5, true}, L{2, 3, 1031, false}}) {
    const bn::Shape sh{l.n, l.c, l.s, l.cl};
    const size_t total = size_t(l.n * l.c * l.s);
    std::vector<T> x(total), dy(total), y(total), dx(total);
    for (size_t i = 0; i < total; ++i) {
      x[i] = T(0.25 * double(i % 7));
      dy[i] = T(double(i % 5) - 2.0);
    }
    std::vector<size_t> in1;  // channel 1's elements, in memory order
    for (size_t i = 0; i < total; ++i) {
      const int64_t ch = l.cl || l.s == 1 ? int64_t(i) % l.c : int64_t(i) / l.s % l.c;
      if (ch == 1) x[i] = (in1.size() % 4 == 3 ? -big : big), in1.push_back(i);
    }
    std::vector<T> first_y, first_dx;
    for (bn::SimdLevel level : supported_levels()) {
      bn::set_simd_level(level);
      for (int threads : {1, 2}) {
        std::vector<double> mean(size_t(l.c)), invstd(size_t(l.c));
        bn::ForwardTrainingArgs<T> f;
        f.shape = sh;
        f.x = x.data();
        f.y = y.data();
        f.batch_mean = mean.data();
        f.batch_invstd = invstd.data();
        f.num_threads = threads;
        bn::BackwardArgs<T> b;
        b.shape = sh;
        b.x = x.data();
        b.dy = dy.data();
        b.dx = dx.data();
        b.mean = mean.data();
        b.invstd = invstd.data();
        b.num_threads = threads;
        const bool ok = bn::forward_training(f) == bn::Status::kOk && bn::backward(b) == bn::Status::kOk;
        const std::string ctx = std::string("numerics ") + bn::simd_level_name(level) + " n=" + std::to_string(l.n) +
                                " c=" + std::to_string(l.c) + " s=" + std::to_string(l.s) + " t=" + std::to_string(threads);
        check(ok, "%s: status", ctx.c_str());
        bool finite = true;
        for (size_t i = 0; i < total; ++i) finite = finite && std::isfinite(y[i]) && std::isfinite(dx[i]);
        check(finite, "%s %s: y and dx finite", ctx.c_str(), sizeof(T) == 4 ? "f32" : "f64");
        std::vector<T> y1, dx1;  // channel 1 (the others' sums differ between levels by their order)
        for (size_t i : in1) y1.push_back(y[i]), dx1.push_back(dx[i]);
        if (first_y.empty()) {
          first_y = y1;
          first_dx = dx1;
        } else {
          check(std::memcmp(y1.data(), first_y.data(), y1.size() * sizeof(T)) == 0 &&
                    std::memcmp(dx1.data(), first_dx.data(), dx1.size() * sizeof(T)) == 0,
                "%s: channel 1's y and dx bit for bit as the first level and thread count", ctx.c_str());
        }
      }
    }
  }
}

int main() {
  const auto t_start = std::chrono::steady_clock::now();
  // Outputs >= 1 MiB use non-temporal stores (default 16 MiB), so the largest driver case covers
  // the streaming path while the others keep the default one. A value from the caller wins.
  setenv("BATCHNORM_STREAM_MIN_BYTES", "1048576", 0);
  const bn::SimdLevel initial = bn::active_simd_level();
  std::printf("simd level: %s (detected %s)\n", bn::simd_level_name(initial),
              bn::simd_level_name(bn::detected_simd_level()));
  std::printf("supported levels:");
  for (bn::SimdLevel l : supported_levels()) std::printf(" %s", bn::simd_level_name(l));
  std::printf("\n");
  std::fflush(stdout);
  if (const char* want = std::getenv("BN_TEST_EXPECT_SIMD")) {
    check(std::strcmp(bn::simd_level_name(initial), want) == 0,
          "BN_TEST_EXPECT_SIMD=%s but the detector chose %s", want, bn::simd_level_name(initial));
  }

  auto t = std::chrono::steady_clock::now();
  test_misc();
  test_microkernels();
  std::printf("microkernels: %.2f s\n", seconds_since(t));
  t = std::chrono::steady_clock::now();
  test_drivers<float>();
  test_drivers<double>();
  test_offset_accuracy();
  test_numerics<float>();
  test_numerics<double>();
  std::printf("drivers: %.2f s\n", seconds_since(t));
  t = std::chrono::steady_clock::now();
  test_errors<float>();
  test_errors<double>();
  std::printf("errors: %.2f s\n", seconds_since(t));
  bn::set_simd_level(initial);
  std::printf("total: %.2f s\n", seconds_since(t_start));
  std::printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed == 0 ? 0 : 1;
}
