// Scalar kernels: the reference every vector ISA is tested against, and the path on CPUs without
// AVX2 (compiled for the x86-64 / armv8 baseline). Width 1 instantiation of kernels_body.inl.
#include "kernels.h"

namespace bn {
namespace {

template <typename TT>
struct ScalarTraits {
  using T = TT;
  using Vec = TT;
  static constexpr size_t W = 1;
  static constexpr size_t kRegisters = 16;  // counted low: the reference level walks as simply as it can
  static Vec load(const T* p) { return *p; }
  static void store(T* p, Vec v) { *p = v; }
  static Vec set1(T v) { return v; }
  static Vec add(Vec a, Vec b) { return a + b; }
  static Vec sub(Vec a, Vec b) { return a - b; }
  static Vec mul(Vec a, Vec b) { return a * b; }
  // Unfused on purpose: a CPU without FMA would run std::fma in software, ~50x slower.
  static Vec fmadd(Vec a, Vec b, Vec c) { return a * b + c; }
  // W = 1: a tail never happens and every address is aligned; these exist to compile the bodies.
  static constexpr size_t kStreamAlign = sizeof(T);
  static Vec load_tail(const T* p, size_t n, T fill) { return n ? *p : fill; }
  static void store_tail(T* p, Vec v, size_t n) { if (n) *p = v; }
  static void stream(T* p, Vec v) { *p = v; }
  static Vec blend_lanes(Vec a, Vec, size_t) { return a; }
  static void prefetch(const T* p) { __builtin_prefetch(p, 0, 2); }
  using Acc = double;
  static Acc acc_zero() { return 0.0; }
  static Acc acc_load(const double* p) { return *p; }
  static void acc_store(double* p, Acc a) { *p = a; }
  static void acc_add(Acc& s, Vec v) { s += double(v); }
  static double acc_sum(Acc acc) { return acc; }
};

// The fused ReLU's lane operations (kernels_body.inl); compared so that NaN passes as in the vector ISAs.
inline float relu_lanes(float v) { return v < 0.0f ? 0.0f : v; }
inline double relu_lanes(double v) { return v < 0.0 ? 0.0 : v; }
inline float gate_lanes(float g, float y) { return y <= 0.0f ? 0.0f : g; }
inline double gate_lanes(double g, double y) { return y <= 0.0 ? 0.0 : g; }

#include "kernels_body.inl"
#include "kernels_half.inl"

// 16-bit storage one value at a time, by the rule itself (convert_rule.h).
template <typename S, float (*kWiden)(uint16_t), uint16_t (*kRound)(float)>
struct ScalarHalf {
  using Storage = S;
  static constexpr size_t kStreamAlign = sizeof(S);
  static float load(const uint16_t* p) { return kWiden(*p); }
  static float load_tail(const uint16_t* p, size_t n) { return n ? kWiden(*p) : 0.0f; }
  static void store(uint16_t* p, float v) { *p = kRound(v); }
  static void store_tail(uint16_t* p, float v, size_t n) {
    if (n) *p = kRound(v);
  }
  static void stream(uint16_t* p, float v) { *p = kRound(v); }
};
using ScalarBf16 = HalfTraits<ScalarTraits<float>, ScalarHalf<bf16, bf16_to_f32, f32_to_bf16_rne>>;
using ScalarF16 = HalfTraits<ScalarTraits<float>, ScalarHalf<f16, f16_to_f32, f32_to_f16_rne>>;

constexpr KernelSet kScalar{"scalar", Kernels<ScalarTraits<float>>::table(),
                            Kernels<ScalarTraits<double>>::table(), Kernels<ScalarBf16>::table(),
                            Kernels<ScalarF16>::table()};

}  // namespace

const KernelSet* kernels_scalar() { return &kScalar; }

}  // namespace bn
