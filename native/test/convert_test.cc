// Native tests of the float32 <-> bfloat16 / float16 conversions (no Node, no framework).
//
//  1. The rule itself (convert_rule.h, the scalar table) against an independent reference written
//     in double arithmetic from the IEEE definition (frexp, ldexp, nearbyint): named cases, every
//     16-bit value decoded, float32 inputs around every rounding boundary, every 97th float32.
//  2. Every table this CPU + build can run: all 65,536 16-bit values -> float32, and float32 ->
//     16-bit over all 2^32 inputs (OpenMP over chunks), bit for bit equal to the scalar table.
//     BN_CONVERT_STRIDE=k tests every k-th chunk of 65,536 inputs only, and every (97 k)-th
//     float32 in part 1 (qemu runs, dispatch-only runs).
//  3. Tails and alignment: n in {0, 1, w-1, w, w+1, 2w+3, ...} for w in {4, 8, 16}, pointers
//     offset by 0, 1 or 3 elements, outputs inside NaN-poisoned guards, inputs allocated to their
//     exact end (ASan sees over-reads).
//  4. The dispatcher (the table of every SIMD level, the active one following set_simd_level)
//     and the whole-array entry points on 1, 2, 3 threads, with their error statuses.
//
// Output: one line per failing check, timings, then "N passed, M failed"; exit code 0 iff M == 0.
// Environment: BN_TEST_EXPECT_SIMD=<level> checks the level chosen at load (qemu runs, BATCHNORM_SIMD
// runs); BN_TEST_EXPECT_CONVERT=<table> checks the conversion table chosen for it.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "batchnorm.h"
#include "convert_array.h"
#include "convert_kernels.h"
#include "convert_rule.h"
#include "half_reference.h"

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace {

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

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed) {}
  uint64_t next() {
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
};

using namespace half_ref;

using bn::ConvertKernels;
using bn::F32ToHalfKernel;
using bn::HalfToF32Kernel;

F32ToHalfKernel encoder(const ConvertKernels& t, const Format& f) { return f.mant == 7 ? t.f32_to_bf16 : t.f32_to_f16; }
HalfToF32Kernel decoder(const ConvertKernels& t, const Format& f) { return f.mant == 7 ? t.bf16_to_f32 : t.f16_to_f32; }
uint16_t rule_encode(const Format& f, float x) { return f.mant == 7 ? bn::f32_to_bf16_rne(x) : bn::f32_to_f16_rne(x); }

std::vector<const ConvertKernels*> tables() {
  const ConvertKernels* t[8];
  const size_t n = bn::convert_kernel_tables(t, 8);
  return std::vector<const ConvertKernels*>(t, t + (n < 8 ? n : 8));
}

// ------------------------------------------------------------------------------------------------
// 1. The rule against the independent reference
// ------------------------------------------------------------------------------------------------
void test_named_cases() {
  struct Case {
    const Format* f;
    uint32_t in;
    uint16_t want;
    const char* what;
  };
  const Case cases[] = {
      {&kBF16, 0x3F800000, 0x3F80, "1"},
      {&kBF16, 0x3F808000, 0x3F80, "tie to even (down)"},
      {&kBF16, 0x3F818000, 0x3F82, "tie to even (up)"},
      {&kBF16, 0x3F808001, 0x3F81, "above the tie"},
      {&kBF16, 0x7F7FFFFF, 0x7F80, "FLT_MAX rounds to inf"},
      {&kBF16, 0x7F7F7FFF, 0x7F7F, "largest value below the inf tie"},
      {&kBF16, 0xFF800000, 0xFF80, "-inf"},
      {&kBF16, 0xFFC00001, 0x7FC0, "negative NaN with payload: canonical"},
      {&kBF16, 0x7F800001, 0x7FC0, "signaling NaN: canonical"},
      {&kBF16, 0x00000001, 0x0000, "smallest subnormal rounds to 0"},
      {&kBF16, 0x00008000, 0x0000, "subnormal tie to even 0"},
      {&kBF16, 0x00008001, 0x0001, "subnormal above the tie"},
      {&kBF16, 0x00018000, 0x0002, "subnormal tie to even 2"},
      {&kBF16, 0x807FFFFF, 0x8080, "largest negative subnormal rounds to -smallest normal"},
      {&kBF16, 0x80000000, 0x8000, "-0"},
      {&kF16, 0x3F800000, 0x3C00, "1"},
      {&kF16, bits_of(65504.0f), 0x7BFF, "65504 (largest float16)"},
      {&kF16, 0x477FEFFF, 0x7BFF, "just below 65520"},
      {&kF16, 0x477FF000, 0x7C00, "65520 ties to even: inf"},
      {&kF16, 0xC77FF000, 0xFC00, "-65520: -inf"},
      {&kF16, bits_of(1e10f), 0x7C00, "overflow"},
      {&kF16, bits_of(0x1p-24f), 0x0001, "2^-24 (smallest subnormal)"},
      {&kF16, bits_of(0x1p-25f), 0x0000, "2^-25 ties to even 0"},
      {&kF16, 0x33000001, 0x0001, "just above 2^-25"},
      {&kF16, bits_of(0x1.8p-24f), 0x0002, "1.5 * 2^-24 ties to even 2"},
      {&kF16, bits_of(0x1p-14f), 0x0400, "2^-14 (smallest normal)"},
      {&kF16, bits_of(0x1.ffcp-15f), 0x0400, "largest subnormal + half ulp rounds up to the smallest normal"},
      {&kF16, bits_of(0.1f), 0x2E66, "0.1"},
      {&kF16, bits_of(-1.0f / 3.0f), 0xB555, "-1/3"},
      {&kF16, 0x00000001, 0x0000, "float32 subnormal: 0"},
      {&kF16, 0x80000001, 0x8000, "negative float32 subnormal: -0"},
      {&kF16, 0xFFFFFFFF, 0x7E00, "NaN: canonical"},
  };
  for (const Case& c : cases) {
    const float x = float_of(c.in);
    const uint16_t got = rule_encode(*c.f, x), ref = ref_encode(*c.f, x);
    check(got == c.want, "%s %s: rule(0x%08X) = 0x%04X, want 0x%04X", c.f->name, c.what, c.in, got, c.want);
    check(ref == c.want, "%s %s: reference(0x%08X) = 0x%04X, want 0x%04X (the test's reference is wrong)", c.f->name,
          c.what, c.in, ref, c.want);
  }
}

void test_rule_against_reference(uint32_t stride) {
  const Format* formats[] = {&kBF16, &kF16};
  for (const Format* f : formats) {
    // Decoding: every value.
    int bad = 0;
    for (uint32_t h = 0; h < 65536; ++h) {
      const float got = f->mant == 7 ? bn::bf16_to_f32(uint16_t(h)) : bn::f16_to_f32(uint16_t(h));
      const uint32_t want = ref_decode_bits(*f, uint16_t(h));
      if (bits_of(got) != want && bad++ < 5) check(false, "%s decode 0x%04X: 0x%08X, want 0x%08X", f->name, h, bits_of(got), want);
    }
    check(bad == 0, "%s decode: %d of 65536 values differ from the reference", f->name, bad);
    // Encoding: every 16-bit value's neighbourhood (the float32 inputs just below, at and above
    // each rounding boundary, in every binade), every 97th float32, and random inputs.
    bad = 0;
    uint64_t tried = 0;
    auto one = [&](uint32_t u) {
      ++tried;
      const float x = float_of(u);
      const uint16_t got = rule_encode(*f, x), want = ref_encode(*f, x);
      if (got != want && bad++ < 5) check(false, "%s encode 0x%08X: 0x%04X, want 0x%04X", f->name, u, got, want);
    };
    for (uint32_t e = 0; e < 256; ++e) {
      for (uint32_t m = 0; m < (1u << 10); ++m) {
        for (int shift : {13, 16}) {  // float16 / bfloat16 boundaries in this binade
          if (shift == 16 && m >= (1u << 7)) continue;
          const uint32_t base = (e << 23) | (m << shift);
          const uint32_t half = 1u << (shift - 1);
          for (uint32_t d : {0u, 1u, half - 1, half, half + 1, 2 * half - 1}) {
            one(base + d);
            one(0x80000000u | (base + d));
          }
        }
        // float16 subnormal results: boundaries at every shift 14..24 of the binades 102..112.
        if (e >= 101 && e <= 113) {
          for (int shift = 12; shift <= 24; ++shift) {
            const uint32_t base = (e << 23) | ((m << shift) & 0x7FFFFF);
            const uint32_t half = 1u << (shift - 1);
            for (uint32_t d : {0u, 1u, half - 1, half, half + 1}) one((base + d) & 0x7FFFFFFF);
          }
        }
      }
    }
    for (uint64_t u = 0; u < (uint64_t(1) << 32); u += 97 * uint64_t(stride)) one(uint32_t(u));
    Rng rng(f->mant);
    for (int i = 0; i < 1000000; ++i) one(uint32_t(rng.next()));
    check(bad == 0, "%s encode: %d of %llu inputs differ from the reference", f->name, bad, (unsigned long long)tried);
    std::printf("rule vs reference (%s): 65536 decoded, %llu encoded\n", f->name, (unsigned long long)tried);
  }
}

// ------------------------------------------------------------------------------------------------
// 2. Exhaustive: every table equal to the scalar table
// ------------------------------------------------------------------------------------------------
void test_decode_exhaustive(const std::vector<const ConvertKernels*>& ts) {
  std::vector<uint16_t> all(65536);
  for (uint32_t h = 0; h < 65536; ++h) all[h] = uint16_t(h);
  for (const Format* f : {&kBF16, &kF16}) {
    std::vector<float> want(65536), got(65536);
    decoder(*ts[0], *f)(all.data(), want.data(), all.size());
    for (const ConvertKernels* t : ts) {
      std::memset(got.data(), 0xFF, got.size() * sizeof(float));
      decoder(*t, *f)(all.data(), got.data(), all.size());
      int bad = 0;
      for (uint32_t h = 0; h < 65536; ++h) {
        if (bits_of(got[h]) != bits_of(want[h]) && bad++ < 5) {
          check(false, "%s %s decode 0x%04X: 0x%08X, scalar 0x%08X", t->name, f->name, h, bits_of(got[h]), bits_of(want[h]));
        }
      }
      check(bad == 0, "%s %s decode: %d of 65536 values differ from scalar", t->name, f->name, bad);
    }
  }
}

void test_encode_exhaustive(const std::vector<const ConvertKernels*>& ts, uint32_t stride) {
  constexpr size_t kChunk = size_t(1) << 16;
  constexpr int64_t kChunks = int64_t(1) << 16;
  for (const Format* f : {&kBF16, &kF16}) {
    const size_t nt = ts.size();
    std::vector<double> secs(nt, 0.0);
    std::vector<long long> bad(nt, 0);
    std::vector<uint32_t> first_bad(nt, 0);
    std::atomic<long long> inputs{0};
    const auto t0 = std::chrono::steady_clock::now();
#pragma omp parallel
    {
      std::vector<float> in(kChunk);
      std::vector<uint16_t> want(kChunk), got(kChunk);
      std::vector<double> my_secs(nt, 0.0);
#pragma omp for schedule(dynamic, 8)
      for (int64_t c = 0; c < kChunks; c += stride) {
        for (size_t i = 0; i < kChunk; ++i) in[i] = float_of(uint32_t(c << 16) | uint32_t(i));
        for (size_t k = 0; k < nt; ++k) {
          uint16_t* out = k == 0 ? want.data() : got.data();
          const auto s = std::chrono::steady_clock::now();
          encoder(*ts[k], *f)(in.data(), out, kChunk);
          my_secs[k] += seconds_since(s);
          if (k == 0 || std::memcmp(got.data(), want.data(), kChunk * sizeof(uint16_t)) == 0) continue;
          for (size_t i = 0; i < kChunk; ++i) {
            if (got[i] == want[i]) continue;
#pragma omp critical(convert_bad)
            {
              if (bad[k]++ == 0) first_bad[k] = uint32_t(c << 16) | uint32_t(i);
            }
          }
        }
        inputs += kChunk;
      }
#pragma omp critical(convert_secs)
      for (size_t k = 0; k < nt; ++k) secs[k] += my_secs[k];
    }
    const double wall = seconds_since(t0);
    for (size_t k = 1; k < nt; ++k) {
      check(bad[k] == 0, "%s %s encode: %lld of %lld float32 inputs differ from scalar (first: 0x%08X -> 0x%04X, scalar 0x%04X)",
            ts[k]->name, f->name, bad[k], inputs.load(), first_bad[k], [&] {
              uint16_t o;
              const float x = float_of(first_bad[k]);
              encoder(*ts[k], *f)(&x, &o, 1);
              return unsigned(o);
            }(), unsigned(rule_encode(*f, float_of(first_bad[k]))));
    }
    std::printf("float32 -> %s over %lld inputs (%s): %.1f s wall;", f->name, inputs.load(),
                stride == 1 ? "all 2^32" : "every chunk of a stride", wall);
    for (size_t k = 0; k < nt; ++k) std::printf(" %s %.2f s", ts[k]->name, secs[k]);
    std::printf(" (kernel time, summed over threads)\n");
    std::fflush(stdout);
  }
}

// ------------------------------------------------------------------------------------------------
// 3. Tails and alignment
// ------------------------------------------------------------------------------------------------
constexpr size_t kGuard = 24;
constexpr uint16_t kPoison16 = 0x7E01;      // a NaN no kernel writes (not canonical)
constexpr uint32_t kPoison32 = 0x7FA5A5A5;  // a NaN no kernel writes

// Inputs with every kind of value: the random bits are mixed with NaNs, infinities, zeros,
// subnormals and exact ties.
std::vector<uint32_t> mixed_inputs(size_t n, uint64_t seed) {
  static const uint32_t special[] = {0x7FC00000, 0xFFC00001, 0x7F800001, 0x7F800000, 0xFF800000, 0x00000000,
                                     0x80000000, 0x00000001, 0x807FFFFF, 0x00008000, 0x3F808000, 0x477FF000,
                                     0x33000000, 0x387FFFFF, 0x7F7FFFFF, 0x3F800000};
  Rng rng(seed);
  std::vector<uint32_t> v(n);
  for (size_t i = 0; i < n; ++i) {
    const uint64_t r = rng.next();
    v[i] = (r & 3) == 0 ? special[(r >> 8) % (sizeof special / sizeof special[0])] : uint32_t(r >> 32);
  }
  return v;
}

void test_tails(const std::vector<const ConvertKernels*>& ts) {
  std::vector<size_t> sizes = {0, 1, 2, 3, 4, 5, 7, 8, 9, 11, 15, 16, 17, 19, 35, 64, 100, 1000};  // 1, w-1, w, w+1, 2w+3 for w = 4, 8, 16
  for (const ConvertKernels* t : ts) {
    for (const Format* f : {&kBF16, &kF16}) {
      for (size_t n : sizes) {
        for (size_t in_off : {0, 1, 3}) {
          for (size_t out_off : {0, 1, 3}) {
            const std::vector<uint32_t> bits = mixed_inputs(n, n * 131 + in_off * 7 + out_off);
            // Encode: exact-size input, output view inside poisoned guards.
            std::unique_ptr<float[]> src(new float[in_off + n]);
            for (size_t i = 0; i < n; ++i) src[in_off + i] = float_of(bits[i]);
            std::vector<uint16_t> dst(kGuard + out_off + n + kGuard, kPoison16);
            encoder(*t, *f)(src.get() + in_off, dst.data() + kGuard + out_off, n);
            int bad = 0;
            for (size_t i = 0; i < dst.size(); ++i) {
              const bool inside = i >= kGuard + out_off && i < kGuard + out_off + n;
              const uint16_t want = inside ? rule_encode(*f, float_of(bits[i - kGuard - out_off])) : kPoison16;
              if (dst[i] != want) ++bad;
            }
            check(bad == 0, "%s %s encode n=%zu in+%zu out+%zu: %d elements wrong or guards overwritten", t->name, f->name, n,
                  in_off, out_off, bad);
            // Decode: 16-bit inputs from the same bits.
            std::unique_ptr<uint16_t[]> hsrc(new uint16_t[in_off + n]);
            for (size_t i = 0; i < n; ++i) hsrc[in_off + i] = uint16_t(bits[i] >> 7);
            std::vector<uint32_t> fdst(kGuard + out_off + n + kGuard, kPoison32);
            decoder(*t, *f)(hsrc.get() + in_off, reinterpret_cast<float*>(fdst.data()) + kGuard + out_off, n);
            bad = 0;
            for (size_t i = 0; i < fdst.size(); ++i) {
              const bool inside = i >= kGuard + out_off && i < kGuard + out_off + n;
              uint32_t want = kPoison32;
              if (inside) {
                const uint16_t h = hsrc[in_off + i - kGuard - out_off];
                want = bits_of(f->mant == 7 ? bn::bf16_to_f32(h) : bn::f16_to_f32(h));
              }
              if (fdst[i] != want) ++bad;
            }
            check(bad == 0, "%s %s decode n=%zu in+%zu out+%zu: %d elements wrong or guards overwritten", t->name, f->name, n,
                  in_off, out_off, bad);
          }
        }
      }
    }
  }
}

// ------------------------------------------------------------------------------------------------
// 4. Dispatcher and whole-array entry points
// ------------------------------------------------------------------------------------------------
std::string expected_table(bn::SimdLevel l) {
  switch (l) {
    case bn::SimdLevel::kScalar: return "scalar";
    case bn::SimdLevel::kAvx2: return "avx2";
    case bn::SimdLevel::kAvx512: return bn::cpu_has_avx512_bf16() ? "avx512bf16" : "avx512";
    case bn::SimdLevel::kNeon: return "neon";
  }
  return "?";
}

void test_dispatch_and_arrays() {
  const bn::SimdLevel initial = bn::active_simd_level();
  const size_t n = 3 * (size_t(1) << 16) + 37;  // enough for 3 threads, and a tail
  const std::vector<uint32_t> bits = mixed_inputs(n, 99);
  std::vector<float> src(n);
  std::vector<uint16_t> half(n);
  for (size_t i = 0; i < n; ++i) {
    src[i] = float_of(bits[i]);
    half[i] = uint16_t(bits[i] >> 11);
  }
  for (bn::SimdLevel l : {bn::SimdLevel::kScalar, bn::SimdLevel::kAvx2, bn::SimdLevel::kAvx512, bn::SimdLevel::kNeon}) {
    if (!bn::simd_level_supported(l)) {
      check(bn::convert_kernels_for(l) == nullptr, "level %s is not supported but has a conversion table", bn::simd_level_name(l));
      continue;
    }
    check(bn::set_simd_level(l) == bn::Status::kOk, "set_simd_level(%s)", bn::simd_level_name(l));
    const std::string got = bn::active_convert_kernels().name;
    // AVX2 without F16C (a hypervisor's choice) falls back to scalar.
    const bool ok = got == expected_table(l) || (l == bn::SimdLevel::kAvx2 && got == "scalar");
    check(ok, "level %s: conversion table %s, want %s", bn::simd_level_name(l), got.c_str(), expected_table(l).c_str());
    for (const Format* f : {&kBF16, &kF16}) {
      const bn::HalfFormat hf = f->mant == 7 ? bn::HalfFormat::kBF16 : bn::HalfFormat::kF16;
      for (int threads : {1, 2, 3}) {
        std::vector<uint16_t> enc(n + 1, kPoison16);
        check(bn::convert_f32_to_half(hf, src.data(), enc.data(), n, threads) == bn::Status::kOk, "convert_f32_to_half");
        size_t bad = 0;
        for (size_t i = 0; i < n; ++i) bad += enc[i] != rule_encode(*f, src[i]);
        check(bad == 0 && enc[n] == kPoison16, "level %s %s convert_f32_to_half, %d threads: %zu wrong", bn::simd_level_name(l), f->name,
              threads, bad);
        std::vector<uint32_t> dec(n + 1, kPoison32);
        check(bn::convert_half_to_f32(hf, half.data(), reinterpret_cast<float*>(dec.data()), n, threads) == bn::Status::kOk,
              "convert_half_to_f32");
        bad = 0;
        for (size_t i = 0; i < n; ++i) bad += dec[i] != bits_of(f->mant == 7 ? bn::bf16_to_f32(half[i]) : bn::f16_to_f32(half[i]));
        check(bad == 0 && dec[n] == kPoison32, "level %s %s convert_half_to_f32, %d threads: %zu wrong", bn::simd_level_name(l), f->name,
              threads, bad);
      }
    }
  }
  bn::set_simd_level(initial);
  // Statuses: nothing to do, missing buffers, no threads.
  float x = 1.0f;
  uint16_t h = kPoison16;
  check(bn::convert_f32_to_half(bn::HalfFormat::kBF16, nullptr, nullptr, 0, 1) == bn::Status::kOk, "n = 0 with null buffers is ok");
  check(bn::convert_f32_to_half(bn::HalfFormat::kBF16, nullptr, &h, 1, 1) == bn::Status::kNullPointer, "null src");
  check(bn::convert_half_to_f32(bn::HalfFormat::kF16, &h, nullptr, 1, 1) == bn::Status::kNullPointer, "null dst");
  check(bn::convert_f32_to_half(bn::HalfFormat::kF16, &x, &h, 1, 0) == bn::Status::kBadThreads, "0 threads");
  check(h == kPoison16, "nothing written on error");
  check(bn::convert_useful_threads(100, 8) == 1 && bn::convert_useful_threads(size_t(1) << 20, 8) == 8 &&
            bn::convert_useful_threads(size_t(1) << 20, 1) == 1,
        "convert_useful_threads");
}

}  // namespace

int main() {
  const auto t_start = std::chrono::steady_clock::now();
  const bn::SimdLevel initial = bn::active_simd_level();
  std::printf("simd level: %s (detected %s)\n", bn::simd_level_name(initial), bn::simd_level_name(bn::detected_simd_level()));
  std::printf("convert kernels: %s (avx512_bf16 %s)\n", bn::active_convert_kernels().name, bn::cpu_has_avx512_bf16() ? "yes" : "no");
  const std::vector<const ConvertKernels*> ts = tables();
  std::printf("tables tested:");
  for (const ConvertKernels* t : ts) std::printf(" %s", t->name);
#if defined(_OPENMP)
  std::printf(" (%d OpenMP threads)", omp_get_max_threads());
#endif
  std::printf("\n");
  std::fflush(stdout);
  if (const char* want = std::getenv("BN_TEST_EXPECT_SIMD")) {
    check(std::strcmp(bn::simd_level_name(initial), want) == 0, "BN_TEST_EXPECT_SIMD=%s but the level is %s", want,
          bn::simd_level_name(initial));
  }
  if (const char* want = std::getenv("BN_TEST_EXPECT_CONVERT")) {
    check(std::strcmp(bn::active_convert_kernels().name, want) == 0, "BN_TEST_EXPECT_CONVERT=%s but the table is %s", want,
          bn::active_convert_kernels().name);
  }
  uint32_t stride = 1;
  if (const char* s = std::getenv("BN_CONVERT_STRIDE")) stride = uint32_t(std::max(1L, std::strtol(s, nullptr, 10)));

  auto t = std::chrono::steady_clock::now();
  test_named_cases();
  test_rule_against_reference(stride);
  std::printf("rule: %.2f s\n", seconds_since(t));
  t = std::chrono::steady_clock::now();
  test_tails(ts);
  test_dispatch_and_arrays();
  test_decode_exhaustive(ts);
  std::printf("tails, dispatch, 65536 decoded per table: %.2f s\n", seconds_since(t));
  test_encode_exhaustive(ts, stride);
  std::printf("total: %.1f s\n", seconds_since(t_start));
  std::printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed == 0 ? 0 : 1;
}
