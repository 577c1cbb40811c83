// Chooses the kernel table once at load: the best level the CPU, the OS and this build support,
// lowered by BATCHNORM_SIMD (scalar | avx2 | avx512 | neon; read with the machine facts) when set.
// Compiled for the baseline.
#include <atomic>
#include <cstring>
#include <initializer_list>

#include "batchnorm.h"
#include "convert_kernels.h"
#include "cpu_features.h"
#include "kernels.h"
#include "machine.h"

namespace bn {
namespace {

const KernelSet* table_for(SimdLevel level) {
  switch (level) {
    case SimdLevel::kScalar: return kernels_scalar();
#if defined(BN_HAVE_AVX2)
    case SimdLevel::kAvx2: return kernels_avx2();
#endif
#if defined(BN_HAVE_AVX512)
    case SimdLevel::kAvx512: return kernels_avx512();
#endif
#if defined(BN_HAVE_NEON)
    case SimdLevel::kNeon: return kernels_neon();
#endif
    default: return nullptr;
  }
}

// A level's set as this CPU runs it: at the AVX-512 level the bfloat16 table of AVX512_BF16 where
// the CPU has it; without F16C (a hypervisor may hide it) the scalar float16 table at the x86
// levels. Built once per level, from pointers only (no vector instruction runs here).
KernelSet adapted(const KernelSet& base, bool avx512) {
  KernelSet s = base;
  static const CpuFeatures f = probe_cpu_features();
  if (!f.f16c) s.f16 = kernels_scalar()->f16;
#if defined(BN_HAVE_AVX512BF16)
  if (avx512 && cpu_has_avx512_bf16()) s.bf16 = *bf16_table_avx512bf16();
#endif
  (void)avx512;
  return s;
}

const KernelSet* set_for(SimdLevel level) {
  switch (level) {
#if defined(BN_HAVE_AVX2)
    case SimdLevel::kAvx2: {
      static const KernelSet s = adapted(*kernels_avx2(), false);
      return &s;
    }
#endif
#if defined(BN_HAVE_AVX512)
    case SimdLevel::kAvx512: {
      static const KernelSet s = adapted(*kernels_avx512(), true);
      return &s;
    }
#endif
    default: return table_for(level);
  }
}

bool cpu_runs(SimdLevel level) {
  static const CpuFeatures f = probe_cpu_features();
  switch (level) {
    case SimdLevel::kScalar: return true;
    case SimdLevel::kAvx2: return f.avx2_fma;
    case SimdLevel::kAvx512: return f.avx512f;
    case SimdLevel::kNeon: return f.neon;
  }
  return false;
}

SimdLevel best_level() {
  for (SimdLevel l : {SimdLevel::kAvx512, SimdLevel::kAvx2, SimdLevel::kNeon}) {
    if (simd_level_supported(l)) return l;
  }
  return SimdLevel::kScalar;
}

bool parse_level(const char* s, SimdLevel* out) {
  for (SimdLevel l : {SimdLevel::kScalar, SimdLevel::kAvx2, SimdLevel::kAvx512, SimdLevel::kNeon}) {
    if (std::strcmp(s, simd_level_name(l)) == 0) {
      *out = l;
      return true;
    }
  }
  return false;
}

// The environment can only lower the level: asking for more than the CPU has would SIGILL.
SimdLevel initial_level() {
  const SimdLevel best = best_level();
  const char* env = machine_facts().simd_request;
  SimdLevel wanted;
  if (env[0] == '\0' || !parse_level(env, &wanted) || !simd_level_supported(wanted)) return best;
  return wanted;
}

struct Active {
  std::atomic<SimdLevel> level;
  std::atomic<const KernelSet*> table;
  Active() {
    const SimdLevel l = initial_level();
    level.store(l);
    table.store(set_for(l));
  }
};

Active& active() {
  static Active a;
  return a;
}

}  // namespace

const char* simd_level_name(SimdLevel level) {
  switch (level) {
    case SimdLevel::kScalar: return "scalar";
    case SimdLevel::kAvx2: return "avx2";
    case SimdLevel::kAvx512: return "avx512";
    case SimdLevel::kNeon: return "neon";
  }
  return "unknown";
}

bool simd_level_supported(SimdLevel level) { return table_for(level) != nullptr && cpu_runs(level); }

SimdLevel detected_simd_level() { return best_level(); }

SimdLevel active_simd_level() { return active().level.load(); }

Status set_simd_level(SimdLevel level) {
  if (!simd_level_supported(level)) return Status::kUnsupported;
  Active& a = active();
  a.table.store(set_for(level));
  a.level.store(level);
  return Status::kOk;
}

const KernelSet& active_kernels() { return *active().table.load(); }

int default_num_threads() { return machine_facts().default_threads; }

const char* status_message(Status s) {
  switch (s) {
    case Status::kOk: return "ok";
    case Status::kNullPointer: return "a required buffer is missing";
    case Status::kBadShape: return "shape dimensions must be positive and their product must fit in memory";
    case Status::kTooFewValues: return "expected more than 1 value per channel when training";
    case Status::kBadEps: return "eps must be finite and >= 0";
    case Status::kBadMomentum: return "momentum factor must be in [0, 1]";
    case Status::kBadThreads: return "thread count must be >= 1";
    case Status::kUnsupported: return "SIMD level not supported by this CPU or build";
    case Status::kOutOfMemory: return "out of memory";
    case Status::kMismatchedStats: return "running_mean and running_var must be given together";
    case Status::kBadEpilogue: return "unknown epilogue, or a residual it does not take";
  }
  return "unknown status";
}

}  // namespace bn
