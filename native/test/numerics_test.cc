// Numerics (issue 18): values near T's range through the drivers. The fast reductions overflow
// there; the exact float64 path (native/core/exact_stats.cc) must take over.
#include <type_traits>

#include "test_util.h"

namespace bntest {
namespace {

// A channel of +-(near T's max), three + for one -, so that
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

}  // namespace

void test_numerics_f32() { test_numerics<float>(); }
void test_numerics_f64() { test_numerics<double>(); }

}  // namespace bntest
