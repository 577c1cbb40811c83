// Runs the three kernel-family testers (kernel_tester.h) over every table this build has, and
// checks that the dispatcher hands out exactly the table tested for each level.
#include "kernel_tester.h"

namespace bntest {
namespace {

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

}  // namespace

void test_microkernels() {
  const FamilyTest families[] = {test_run_kernels, test_group_kernels, test_rows_kernels, test_relu_kernels};
  Rng rng(0x5EED0001);
  for (const TableEntry& e : all_tables()) {
    // The getter itself runs no vector instruction; the kernels only run if the CPU has the ISA.
    if (!bn::simd_level_supported(e.level)) {
      std::printf("microkernels: %s not supported on this CPU, skipped\n", e.name);
      continue;
    }
    const bn::KernelSet* ks = e.get();
    if (!check(ks != nullptr, "kernel table %s is null", e.name)) continue;
    check(std::strcmp(ks->isa, bn::simd_level_name(e.level)) == 0, "kernel set %s names its ISA '%s'", e.name,
          ks->isa);
    const int before = g_failed;
    for (FamilyTest family : families) family(e.name, *ks, e.w32, e.w64, rng);
    std::printf("microkernels: %s (w = %zu f32, %zu f64) %s\n", e.name, e.w32, e.w64,
                g_failed == before ? "ok" : "FAILED");
    // The dispatcher hands out exactly this table when asked for the level.
    const bn::SimdLevel prev = bn::active_simd_level();
    check(bn::set_simd_level(e.level) == bn::Status::kOk, "set_simd_level(%s) failed", e.name);
    // Its float tables are this set's; its 16-bit ones this set's or the CPU's variants of them
    // (AVX512_BF16, no F16C: dispatch.cc), checked in half_kernels_test.cc.
    const bn::KernelSet& act = bn::active_kernels();
    check(std::memcmp(&act.f32, &ks->f32, sizeof act.f32) == 0 && std::memcmp(&act.f64, &ks->f64, sizeof act.f64) == 0,
          "active_kernels() after set_simd_level(%s) is not %s's table", e.name, e.name);
    check(bn::set_simd_level(prev) == bn::Status::kOk, "could not restore the SIMD level");
  }
}

}  // namespace bntest
