// NEON kernels (arm64, where Advanced SIMD with float64 lanes is part of the baseline).
// Everything here has internal linkage but the table getter.
#include <arm_neon.h>

#include "convert_neon.h"
#include "kernels.h"

namespace bn {
namespace {

// NEON has no masked loads or stores: tails (at most W - 1 values) and lane blends go through a
// small stack buffer. Shared by both element types; Self provides load/store.
template <class Self, typename T, typename Vec, size_t W>
struct NeonStackLanes {
  static Vec load_tail(const T* p, size_t n, T fill) {
    T buf[W];
    for (size_t i = 0; i < W; ++i) buf[i] = i < n ? p[i] : fill;
    return Self::load(buf);
  }
  static void store_tail(T* p, Vec v, size_t n) {
    T buf[W];
    Self::store(buf, v);
    for (size_t i = 0; i < n; ++i) p[i] = buf[i];
  }
  // Lanes [0, k) from a, the rest from b.
  static Vec blend_lanes(Vec a, Vec b, size_t k) {
    T x[W], y[W];
    Self::store(x, a);
    Self::store(y, b);
    for (size_t i = k; i < W; ++i) x[i] = y[i];
    return Self::load(x);
  }
};

struct NeonF32 : NeonStackLanes<NeonF32, float, float32x4_t, 4> {
  using T = float;
  using Vec = float32x4_t;
  static constexpr size_t W = 4;
  static constexpr size_t kRegisters = 32;  // vector registers of the ISA
  static Vec load(const T* p) { return vld1q_f32(p); }
  static void store(T* p, Vec v) { vst1q_f32(p, v); }
  static Vec set1(T v) { return vdupq_n_f32(v); }
  static Vec add(Vec a, Vec b) { return vaddq_f32(a, b); }
  static Vec sub(Vec a, Vec b) { return vsubq_f32(a, b); }
  static Vec mul(Vec a, Vec b) { return vmulq_f32(a, b); }
  static Vec fmadd(Vec a, Vec b, Vec c) { return vfmaq_f32(c, a, b); }
  // ACLE has no non-temporal store intrinsic; a plain store keeps the kernels identical.
  static constexpr size_t kStreamAlign = 16;
  static void stream(T* p, Vec v) { vst1q_f32(p, v); }
  static void prefetch(const T* p) { __builtin_prefetch(p, 0, 2); }
  struct Acc {
    float64x2_t lo, hi;
  };
  static Acc acc_zero() { return {vdupq_n_f64(0.0), vdupq_n_f64(0.0)}; }
  static float64x2_t lo(Vec v) { return vcvt_f64_f32(vget_low_f32(v)); }
  static float64x2_t hi(Vec v) { return vcvt_high_f64_f32(v); }
  static Acc acc_load(const double* p) { return {vld1q_f64(p), vld1q_f64(p + 2)}; }
  static void acc_store(double* p, const Acc& a) {
    vst1q_f64(p, a.lo);
    vst1q_f64(p + 2, a.hi);
  }
  static void acc_add(Acc& s, Vec v) {
    s.lo = vaddq_f64(s.lo, lo(v));
    s.hi = vaddq_f64(s.hi, hi(v));
  }
  static double acc_sum(const Acc& acc) { return vaddvq_f64(vaddq_f64(acc.lo, acc.hi)); }
};

struct NeonF64 : NeonStackLanes<NeonF64, double, float64x2_t, 2> {
  using T = double;
  using Vec = float64x2_t;
  static constexpr size_t W = 2;
  static constexpr size_t kRegisters = 32;
  static Vec load(const T* p) { return vld1q_f64(p); }
  static void store(T* p, Vec v) { vst1q_f64(p, v); }
  static Vec set1(T v) { return vdupq_n_f64(v); }
  static Vec add(Vec a, Vec b) { return vaddq_f64(a, b); }
  static Vec sub(Vec a, Vec b) { return vsubq_f64(a, b); }
  static Vec mul(Vec a, Vec b) { return vmulq_f64(a, b); }
  static Vec fmadd(Vec a, Vec b, Vec c) { return vfmaq_f64(c, a, b); }
  // ACLE has no non-temporal store intrinsic; a plain store keeps the kernels identical.
  static constexpr size_t kStreamAlign = 16;
  static void stream(T* p, Vec v) { vst1q_f64(p, v); }
  static void prefetch(const T* p) { __builtin_prefetch(p, 0, 2); }
  using Acc = float64x2_t;
  static Acc acc_zero() { return vdupq_n_f64(0.0); }
  static Acc acc_load(const double* p) { return vld1q_f64(p); }
  static void acc_store(double* p, Acc a) { vst1q_f64(p, a); }
  static void acc_add(Acc& s, Vec v) { s = vaddq_f64(s, v); }
  static double acc_sum(Acc acc) { return vaddvq_f64(acc); }
};

// The fused ReLU's lane operations (kernels_body.inl) by compare and select, not vmaxq (which
// turns max(0, -0) into +0): v < 0 ? 0 : v, and y <= 0 ? 0 : g (false for NaN: NaN passes).
inline float32x4_t relu_lanes(float32x4_t v) { return vbslq_f32(vcltzq_f32(v), vdupq_n_f32(0.0f), v); }
inline float64x2_t relu_lanes(float64x2_t v) { return vbslq_f64(vcltzq_f64(v), vdupq_n_f64(0.0), v); }
inline float32x4_t gate_lanes(float32x4_t g, float32x4_t y) { return vbslq_f32(vclezq_f32(y), vdupq_n_f32(0.0f), g); }
inline float64x2_t gate_lanes(float64x2_t g, float64x2_t y) { return vbslq_f64(vclezq_f64(y), vdupq_n_f64(0.0), g); }

#include "kernels_body.inl"
#include "kernels_half.inl"

// 16-bit storage through convert_neon.h (native FCVTL/FCVTN for float16).
struct Bf16Neon {
  using Storage = bf16;
  static constexpr size_t kStreamAlign = 8;
  static float32x4_t load(const uint16_t* p) { return load_bf16_as_f32_neon(p); }
  static float32x4_t load_tail(const uint16_t* p, size_t n) { return load_bf16_as_f32_tail_neon(p, n); }
  static void store(uint16_t* p, float32x4_t v) { store_f32_as_bf16_neon(p, v); }
  static void store_tail(uint16_t* p, float32x4_t v, size_t n) { store_f32_as_bf16_tail_neon(p, v, n); }
  static void stream(uint16_t* p, float32x4_t v) { store_f32_as_bf16_neon(p, v); }  // no NT store in ACLE
};
struct F16Neon {
  using Storage = f16;
  static constexpr size_t kStreamAlign = 8;
  static float32x4_t load(const uint16_t* p) { return load_f16_as_f32_neon(p); }
  static float32x4_t load_tail(const uint16_t* p, size_t n) { return load_f16_as_f32_tail_neon(p, n); }
  static void store(uint16_t* p, float32x4_t v) { store_f32_as_f16_neon(p, v); }
  static void store_tail(uint16_t* p, float32x4_t v, size_t n) { store_f32_as_f16_tail_neon(p, v, n); }
  static void stream(uint16_t* p, float32x4_t v) { store_f32_as_f16_neon(p, v); }  // no NT store in ACLE
};

constexpr KernelSet kNeon{"neon", Kernels<NeonF32>::table(), Kernels<NeonF64>::table(),
                          Kernels<HalfTraits<NeonF32, Bf16Neon>>::table(), Kernels<HalfTraits<NeonF32, F16Neon>>::table()};

}  // namespace

const KernelSet* kernels_neon() { return &kNeon; }

}  // namespace bn
