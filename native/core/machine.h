// What the core needs to know about this machine and process: cache size, the streaming
// threshold, environment overrides, and the one system call of a call (page residency). Read once
// at load, then passed in: the planner and the drivers never read the environment mid-call.
#pragma once

#include <cstdint>

namespace bn {

struct MachineFacts {
  // L2 per core, from the C library (cpuid on x86); see l2_bytes_from() for the clamping.
  int64_t l2_bytes = int64_t(1) << 20;
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
// sysconf(_SC_LEVEL2_CACHE_SIZE)'s answer (<= 0: unknown, 1 MiB), clamped to [256 KiB, 4 MiB]
// so that a wrong answer cannot make the pieces absurd.
int64_t l2_bytes_from(long sysconf_l2);
// BATCHNORM_STREAM_MIN_BYTES's value (null, empty, negative or not a number: the default 8 MiB).
int64_t stream_min_bytes_from(const char* env);
// OMP_NUM_THREADS's value ("4", or "4,2" for nested levels: the first) if in [1, 4096], else `online`.
int default_threads_from(const char* env, unsigned online);

}  // namespace bn
