// The schedule's claims (ClaimRanges, schedule.h): every item taken exactly once, by any number of
// threads racing for them; each thread's own share first, in order (or last first); a thread that
// does not come gives its share to those that do.
#include <chrono>
#include <omp.h>
#include <thread>

#include "schedule.h"
#include "test_util.h"

namespace bntest {
namespace {

// One thread takes everything: its own share in order (or last first), then the others' shares
// from the far end.
void check_one_taker(int64_t count, int threads, bool last_first) {
  bn::ClaimRanges claims(count, threads);
  std::vector<int64_t> got;
  for (int64_t i; (i = claims.take(0, last_first)) >= 0;) got.push_back(i);
  std::vector<int64_t> want;
  int64_t lo, hi;
  bn::part_range(count, 0, threads, &lo, &hi);
  for (int64_t i = 0; i < hi - lo; ++i) want.push_back(last_first ? hi - 1 - i : lo + i);
  for (int u = 1; u < threads; ++u) {
    bn::part_range(count, u, threads, &lo, &hi);
    for (int64_t i = 0; i < hi - lo; ++i) want.push_back(last_first ? lo + i : hi - 1 - i);
  }
  check(got == want, "claims of %lld items over %d threads taken by one thread%s: not its share, then the others'",
        (long long)count, threads, last_first ? " (last first)" : "");
}

// Threads race for the items: each item exactly once.
void check_race(int64_t count, int threads, bool last_first, int rounds) {
  std::vector<int> seen(static_cast<size_t>(count));
  bool ok = true;
  for (int r = 0; r < rounds && ok; ++r) {
    std::fill(seen.begin(), seen.end(), 0);
    bn::ClaimRanges claims(count, threads);
#pragma omp parallel num_threads(threads)
    {
      const int t = omp_get_thread_num();
      for (int64_t i; (i = claims.take(t, last_first && t % 2 == 0)) >= 0;) {
#pragma omp atomic
        seen[size_t(i)] += 1;
      }
    }
    for (int v : seen) ok = ok && v == 1;
  }
  check(ok, "claims of %lld items raced by %d threads: some item taken twice or never", (long long)count, threads);
}

}  // namespace

void test_schedule_claims() {
  for (int threads : {1, 2, 3, 5, 8}) {
    for (int64_t count : {0, 1, 2, 7, 64, 1000}) {
      check_one_taker(count, threads, false);
      check_one_taker(count, threads, true);
      check_race(count, threads, false, 50);
      check_race(count, threads, true, 50);
    }
  }
  // reset shares out a new count.
  bn::ClaimRanges claims(3, 2);
  while (claims.take(1) >= 0) {
  }
  claims.reset(5);
  int64_t n = 0;
  while (claims.take(0) >= 0) ++n;
  check(n == 5, "claims reset to 5 items gave %lld", (long long)n);
  // A thread that comes late finds its share taken by the one that came.
  bn::ClaimRanges late(64, 2);
  int taken[2] = {0, 0};
#pragma omp parallel num_threads(2)
  {
    const int t = omp_get_thread_num();
    if (t == 1) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    int k = 0;
    while (late.take(t) >= 0) ++k;
    taken[t] = k;
  }
  check(taken[0] == 64 && taken[1] == 0, "a late thread: %d and %d items taken, expected 64 and 0", taken[0], taken[1]);
}

}  // namespace bntest
