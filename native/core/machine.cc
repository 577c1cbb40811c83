// Reads the machine facts (machine.h) once, at load.
#include "machine.h"

#include "batchnorm.h"

#include <algorithm>
#include <cstdio>
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

// The first line of a small text file ("" if it cannot be read).
void read_line(const char* path, char* out, size_t cap) {
  out[0] = '\0';
  if (FILE* f = std::fopen(path, "r")) {
    if (std::fgets(out, int(cap), f) == nullptr) out[0] = '\0';
    std::fclose(f);
  }
}

CacheFacts read_caches() {
  constexpr int kMaxIndex = 8;
  char text[kMaxIndex][4][64];
  SysfsCache entries[kMaxIndex];
  int n = 0;
#if defined(__linux__)
  static const char* const kFiles[4] = {"level", "type", "size", "shared_cpu_list"};
  for (int i = 0; i < kMaxIndex; ++i) {
    for (int k = 0; k < 4; ++k) {
      char path[96];
      std::snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/%s", i, kFiles[k]);
      read_line(path, text[n][k], sizeof text[n][k]);
    }
    if (text[n][0][0] == '\0') continue;  // no such index
    entries[n] = SysfsCache{text[n][0], text[n][1], text[n][2], text[n][3]};
    ++n;
  }
#endif
  long l2 = 0, l3 = 0;
#if defined(_SC_LEVEL2_CACHE_SIZE)
  l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
#endif
#if defined(_SC_LEVEL3_CACHE_SIZE)
  l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
#endif
  return cache_facts_from(entries, n, l2, l3);
}

MachineFacts read_facts() {
  MachineFacts f;
  const CacheFacts caches = read_caches();
  f.l2_bytes = caches.l2_bytes;
  f.l3_bytes = caches.l3_bytes;
  f.l3_sharing = caches.l3_sharing;
  f.cache_source = caches.source;
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

CacheSizes cache_sizes() {
  const MachineFacts& f = facts();
  return CacheSizes{f.l2_bytes, f.l3_bytes, f.l3_sharing, f.cache_source};
}

MachineFacts replace_machine_facts(const MachineFacts& f) {
  const MachineFacts old = facts();
  facts() = f;
  return old;
}

int64_t l2_bytes_from(long sysconf_l2) {
  const int64_t b = sysconf_l2 > 0 ? int64_t(sysconf_l2) : int64_t(1) << 20;
  return std::min<int64_t>(std::max<int64_t>(b, int64_t(256) << 10), int64_t(4) << 20);
}

int64_t sysfs_size_bytes(const char* text) {
  if (text == nullptr) return -1;
  char* end = nullptr;
  const long long v = std::strtoll(text, &end, 10);
  if (end == text || v < 0) return -1;
  int64_t unit = 1;
  if (*end == 'K' || *end == 'k') unit = int64_t(1) << 10, ++end;
  else if (*end == 'M' || *end == 'm') unit = int64_t(1) << 20, ++end;
  else if (*end == 'G' || *end == 'g') unit = int64_t(1) << 30, ++end;
  while (*end == '\n' || *end == ' ') ++end;
  if (*end != '\0' || v > (int64_t(1) << 40) / unit) return -1;
  return int64_t(v) * unit;
}

int cpu_list_count(const char* text) {
  if (text == nullptr) return -1;
  int count = 0;
  const char* p = text;
  for (;;) {
    char* end = nullptr;
    const long lo = std::strtol(p, &end, 10);
    if (end == p || lo < 0) return -1;
    long hi = lo;
    p = end;
    if (*p == '-') {
      ++p;
      hi = std::strtol(p, &end, 10);
      if (end == p || hi < lo) return -1;
      p = end;
    }
    if (hi - lo >= 1 << 20) return -1;
    count += int(hi - lo + 1);
    if (*p == ',') {
      ++p;
      continue;
    }
    while (*p == '\n' || *p == ' ') ++p;
    return *p == '\0' ? count : -1;
  }
}

CacheFacts cache_facts_from(const SysfsCache* entries, int n, long sysconf_l2, long sysconf_l3) {
  int64_t l2 = -1, l3 = -1;
  int l3_sharing = 1;
  for (int i = 0; i < n; ++i) {
    const SysfsCache& e = entries[i];
    if (e.type == nullptr || std::strncmp(e.type, "Instruction", 11) == 0) continue;
    const int64_t bytes = sysfs_size_bytes(e.size);
    if (bytes <= 0 || e.level == nullptr) continue;
    const int level = std::atoi(e.level);
    if (level == 2 && l2 < 0) l2 = bytes;
    if (level == 3 && l3 < 0) {
      l3 = bytes;
      const int sharing = cpu_list_count(e.shared_cpu_list);
      l3_sharing = sharing > 0 ? sharing : 1;
    }
  }
  CacheFacts f;
  const bool l2_sysfs = l2 > 0, l3_sysfs = l3 > 0;
  if (!l2_sysfs && sysconf_l2 > 0) l2 = int64_t(sysconf_l2);
  if (!l3_sysfs && sysconf_l3 > 0) l3 = int64_t(sysconf_l3);
  f.l2_bytes = l2_bytes_from(l2 > 0 ? long(l2) : 0);
  f.l3_bytes = l3 > 0 ? l3 : 0;
  f.l3_sharing = l3_sysfs ? l3_sharing : 1;
  f.source = l2_sysfs ? "sysfs" : l2 > 0 ? "sysconf" : "default";
  return f;
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
