// Native tests of the batch-norm core (no Node, no framework): the microkernel testers per kernel
// family, the planner's table tests, the drivers against a float64 reference, and the argument
// checks. Output: one line per failing check, then a last line "N passed, M failed"; exit code 0
// iff M == 0.
// Environment: BN_TEST_EXPECT_SIMD=scalar|avx2|avx512|neon makes the level the detector chose at
// load a checked expectation (used by the qemu runs in scripts/); BN_TEST_TIMING=1 prints the time
// of every driver configuration; BATCHNORM_STREAM_MIN_BYTES (read at load) overrides the test's
// 1 MiB streaming threshold.
#include "machine.h"
#include "test_util.h"

using namespace bntest;

int main() {
  const auto t_start = std::chrono::steady_clock::now();
  // The driver cases take the same paths on every machine: L2 as on the machine they were chosen
  // on (2 MiB), and outputs >= 1 MiB streamed (default 8 MiB), so the largest cases cover the
  // streaming path while the others keep plain stores. A threshold from the caller wins.
  bn::MachineFacts facts = bn::machine_facts();
  facts.l2_bytes = int64_t(2) << 20;
  if (!std::getenv("BATCHNORM_STREAM_MIN_BYTES")) facts.stream_min_bytes = int64_t(1) << 20;
  bn::replace_machine_facts(facts);

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
  test_machine_facts();
  test_planner();
  test_schedule_claims();
  std::printf("planner: %.2f s\n", seconds_since(t));
  t = std::chrono::steady_clock::now();
  test_microkernels();
  test_half_kernels();
  std::printf("microkernels: %.2f s\n", seconds_since(t));
  t = std::chrono::steady_clock::now();
  test_drivers_f32();
  test_drivers_f64();
  test_offset_accuracy();
  test_numerics_f32();
  test_numerics_f64();
  std::printf("drivers: %.2f s\n", seconds_since(t));
  t = std::chrono::steady_clock::now();
  test_relu_drivers();
  std::printf("relu drivers: %.2f s\n", seconds_since(t));
  t = std::chrono::steady_clock::now();
  test_determinism();
  std::printf("determinism: %.2f s\n", seconds_since(t));
  t = std::chrono::steady_clock::now();
  test_errors_f32();
  test_errors_f64();
  std::printf("errors: %.2f s\n", seconds_since(t));
  bn::set_simd_level(initial);
  std::printf("total: %.2f s\n", seconds_since(t_start));
  std::printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed == 0 ? 0 : 1;
}
