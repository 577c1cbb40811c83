// What the core needs to know about this machine and process: cache size, the streaming
// threshold, environment overrides, and the one system call of a call (page residency). Read once
// at load, then passed in: the planner and the drivers never read the environment mid-call.
#pragma once

#include <cstdint>

namespace bn {

// One cache as Linux describes it (/sys/devices/system/cpu/cpu0/cache/index*/): level, type
// ("Data", "Instruction", "Unified"), size ("1024K") and the CPUs sharing it ("0-1", "0,2-3").
struct SysfsCache {
  const char* level;
  const char* type;
  const char* size;
  const char* shared_cpu_list;
};

// The caches the pieces are sized from, and where the sizes came from.
struct CacheFacts {
  int64_t l2_bytes = int64_t(1) << 20;  // per core, clamped (l2_bytes_from)
  int64_t l3_bytes = 0;                 // the whole L3 as one core sees it (0: none or unknown)
  int l3_sharing = 1;                   // CPUs sharing that L3 (its per-CPU share: l3_bytes / l3_sharing)
  const char* source = "default";       // "sysfs", "sysconf" or "default"
};

struct MachineFacts {
  // L2 per core: sysfs first, the C library's sysconf as fallback (cache_facts_from), clamped by
  // l2_bytes_from.
  int64_t l2_bytes = int64_t(1) << 20;
  // L3 and the CPUs that share it, and where both sizes came from.
  int64_t l3_bytes = 0;
  int l3_sharing = 1;
  const char* cache_source = "default";
  // Outputs at least this large are written with non-temporal stores when their pages are
  // resident (BATCHNORM_STREAM_MIN_BYTES; 0: always, a huge value: never).
  int64_t stream_min_bytes = int64_t(8) << 20;
  // Threads when the caller asks for none (OMP_NUM_THREADS, else the online processors).
  int default_threads = 1;
  // BATCHNORM_SIMD, as given ("" when unset): the dispatcher lowers its level to it.
  char simd_request[16] = {0};
  // Memory policy: whether the page holding p is resident. A system call (mincore on Linux), so it
  // is a unit injected here and asked by the drivers only for outputs that would stream.
  bool (*page_resident)(const void* p) = nullptr;
};

// The facts read at load (never null fields after that).
const MachineFacts& machine_facts();
// Tests only: replace the facts (not while an op runs); returns the previous ones.
MachineFacts replace_machine_facts(const MachineFacts& f);

// The pure parts of reading the facts, tested alone.
// A sysfs cache size ("48K", "1024K", "32M", "512"): bytes, or -1 if it is not one.
int64_t sysfs_size_bytes(const char* text);
// A sysfs CPU list ("0", "0-1", "0,2-3\n"): how many CPUs it names, or -1 if it is not one.
int cpu_list_count(const char* text);
// The L2 and L3 of cpu0 from its sysfs entries (n of them; the data or unified cache of each
// level), each level falling back to sysconf's answer (<= 0: unknown) when sysfs lacks it or
// cannot be read: sysconf can be wrong in a VM (it reported a 384 MiB L3 where sysfs said 32 MiB).
CacheFacts cache_facts_from(const SysfsCache* entries, int n, long sysconf_l2, long sysconf_l3);
// An L2 size in bytes (<= 0: unknown, 1 MiB), clamped to [256 KiB, 4 MiB]
// so that a wrong answer cannot make the pieces absurd.
int64_t l2_bytes_from(long sysconf_l2);
// BATCHNORM_STREAM_MIN_BYTES's value (null, empty, negative or not a number: the default 8 MiB).
int64_t stream_min_bytes_from(const char* env);
// OMP_NUM_THREADS's value ("4", or "4,2" for nested levels: the first) if in [1, 4096], else `online`.
int default_threads_from(const char* env, unsigned online);

}  // namespace bn
