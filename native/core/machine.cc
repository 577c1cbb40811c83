// Reads the machine facts (machine.h) once, at load.
#include "machine.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <unistd.h>
#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace bn {
namespace {

bool page_resident_os(const void* p) {
#if defined(__linux__)
  static const uintptr_t page = uintptr_t(sysconf(_SC_PAGESIZE));
  const uintptr_t at = reinterpret_cast<uintptr_t>(p) & ~(page - 1);
  unsigned char resident = 0;
  if (mincore(reinterpret_cast<void*>(at), page, &resident) != 0) return false;
  return (resident & 1) != 0;
#else
  (void)p;
  return true;  // no cheap way to ask: assume resident
#endif
}

MachineFacts read_facts() {
  MachineFacts f;
#if defined(_SC_LEVEL2_CACHE_SIZE)
  f.l2_bytes = l2_bytes_from(sysconf(_SC_LEVEL2_CACHE_SIZE));
#else
  f.l2_bytes = l2_bytes_from(0);
#endif
  f.stream_min_bytes = stream_min_bytes_from(std::getenv("BATCHNORM_STREAM_MIN_BYTES"));
  f.default_threads = default_threads_from(std::getenv("OMP_NUM_THREADS"), std::thread::hardware_concurrency());
  if (const char* simd = std::getenv("BATCHNORM_SIMD")) {
    std::strncpy(f.simd_request, simd, sizeof f.simd_request - 1);
  }
  f.page_resident = page_resident_os;
  return f;
}

MachineFacts& facts() {
  static MachineFacts f = read_facts();
  return f;
}

// At load, not at the first call: the environment of the process start is what counts.
const bool g_read_at_load = (facts(), true);

}  // namespace

const MachineFacts& machine_facts() { return facts(); }

MachineFacts replace_machine_facts(const MachineFacts& f) {
  const MachineFacts old = facts();
  facts() = f;
  return old;
}

int64_t l2_bytes_from(long sysconf_l2) {
  const int64_t b = sysconf_l2 > 0 ? int64_t(sysconf_l2) : int64_t(1) << 20;
  return std::min<int64_t>(std::max<int64_t>(b, int64_t(256) << 10), int64_t(4) << 20);
}

int64_t stream_min_bytes_from(const char* env) {
  if (env != nullptr) {
    char* end = nullptr;
    const long long x = std::strtoll(env, &end, 10);
    if (end != env && x >= 0) return int64_t(x);
  }
  return int64_t(8) << 20;
}

int default_threads_from(const char* env, unsigned online) {
  if (env != nullptr) {
    char* end = nullptr;
    const long v = std::strtol(env, &end, 10);
    if (end != env && v >= 1 && v <= 4096) return int(v);
  }
  return online == 0 ? 1 : int(online);
}

}  // namespace bn
