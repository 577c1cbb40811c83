// Microkernel testers (XNNPACK style), one per kernel family (run_kernels_test.cc,
// group_kernels_test.cc, rows_kernels_test.cc): every kernel of every table this CPU and build can
// run, f32 and f64, swept over sizes around the vector width (tails), aligned and offset pointers,
// NaN-poisoned outputs with guard regions, exact-size inputs (ASan sees any over-read), compared
// to a compensated float64 reference. This header holds what the families share.
#pragma once

#include "test_util.h"

namespace bntest {

// Sizes where SIMD tails break: 1, w-1, w, w+1, 2w-1, 2w, 2w+1, 2w+3, 4w+5, and two long ones.
inline std::vector<size_t> sweep_sizes(size_t w) {
  std::vector<size_t> v = {1, w - 1, w, w + 1, 2 * w - 1, 2 * w, 2 * w + 1, 2 * w + 3, 4 * w + 5, 100, 1000};
  std::sort(v.begin(), v.end());
  v.erase(std::unique(v.begin(), v.end()), v.end());
  return v;  // includes 0 when w == 1 (w - 1): the empty call must write nothing
}

template <typename T>
void fill(Buf<T>& b, Rng& r, double center, double scale) {
  for (size_t i = 0; i < b.size(); ++i) b[i] = T(center + scale * r.normal());
}

// One table (ISA x dtype) under test, and the helpers every family's tester uses.
template <typename T>
struct KernelTesterBase {
  const char* isa;
  const bn::KernelTable<T>& kt;
  Rng& r;
  const bn::ElementwiseKernels<T>& kw = kt.writers(bn::Epilogue::kNone);
  static constexpr double eT = TI<T>::eps;

  // The kernel's full name, <dtype>_<op>_<layout>__<isa> (kernels.h).
  std::string kname(const char* kernel) const { return fmt("%s_%s__%s", bn::dtype_name<T>(), kernel, isa); }

  // dx = dy * k1 + ((x - c) * k2 + k3): checked against float64, within 8 ulps of its terms.
  static void add_dx(ElemCheck& ec, size_t q, T got, T x, T dy, T c, T k1, T k2, T k3) {
    const double xc = double(x) - double(c);
    const double t1 = double(dy) * double(k1), t2 = xc * double(k2);
    ec.add(q, double(got), t1 + (t2 + double(k3)), 8 * eT * (std::fabs(t1) + std::fabs(t2) + std::fabs(double(k3))) + 1e-300);
  }

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
};

#define BN_TESTER_USES_BASE(T)                                                                      \
  using Base = KernelTesterBase<T>;                                                                 \
  using Base::isa;                                                                                  \
  using Base::kt;                                                                                   \
  using Base::r;                                                                                    \
  using Base::kw;                                                                                   \
  using Base::eT;                                                                                   \
  using Base::kname;                                                                                \
  using Base::add_dx;                                                                               \
  using Base::fill_vec;                                                                             \
  using Base::fill_dx_inputs

// One family's sweep over one table: (isa, f32 table, its width, f64 table, its width).
using FamilyTest = void (*)(const char* isa, const bn::KernelSet& ks, size_t w32, size_t w64, Rng& rng);
void test_run_kernels(const char* isa, const bn::KernelSet& ks, size_t w32, size_t w64, Rng& rng);
void test_group_kernels(const char* isa, const bn::KernelSet& ks, size_t w32, size_t w64, Rng& rng);
void test_rows_kernels(const char* isa, const bn::KernelSet& ks, size_t w32, size_t w64, Rng& rng);
// The fused activation's writers (kRelu, kAddRelu) and masked backward kernels, every family.
void test_relu_kernels(const char* isa, const bn::KernelSet& ks, size_t w32, size_t w64, Rng& rng);

}  // namespace bntest
