// The same bits for any thread count, L2 size and streaming choice: forward training (y, saved
// and float64 statistics, running statistics) and backward (dx, weight and bias gradients, both
// modes) on shapes whose plan differs with the threads (fused channels, groups, waves, pipelined
// walks, long runs cut in pieces, rows), at every SIMD level; each output compared byte for byte
// with the first configuration's. The reduction chunks (blocks.h) are what makes this hold.
#include <omp.h>

#include <string>
#include <utility>

#include "machine.h"
#include "plan.h"
#include "test_util.h"

namespace bntest {
namespace {

template <typename T>
struct Outputs {
  std::vector<T> y, sm, si, rm, rv, dx, gw, gb, edx, egw, egb;
  std::vector<double> bm, bi;
  bool operator==(const Outputs& o) const {
    auto eq = [](const auto& a, const auto& b) {
      return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(a[0])) == 0;
    };
    return eq(y, o.y) && eq(sm, o.sm) && eq(si, o.si) && eq(rm, o.rm) && eq(rv, o.rv) && eq(dx, o.dx) &&
           eq(gw, o.gw) && eq(gb, o.gb) && eq(edx, o.edx) && eq(egw, o.egw) && eq(egb, o.egb) && eq(bm, o.bm) &&
           eq(bi, o.bi);
  }
};

template <typename T>
Outputs<T> run_all(const bn::Shape& s, const std::vector<T>& x, const std::vector<T>& dy, const std::vector<T>& w,
                   const std::vector<T>& b, int threads) {
  const size_t total = size_t(s.n * s.c * s.s), C = size_t(s.c);
  Outputs<T> o;
  o.y.assign(total, T(0));
  o.sm.assign(C, T(0));
  o.si.assign(C, T(0));
  o.rm.assign(C, T(0.25));
  o.rv.assign(C, T(2));
  o.bm.assign(C, 0.0);
  o.bi.assign(C, 0.0);
  bn::ForwardTrainingArgs<T> f;
  f.shape = s;
  f.x = x.data();
  f.y = o.y.data();
  f.weight = w.data();
  f.bias = b.data();
  f.save_mean = o.sm.data();
  f.save_invstd = o.si.data();
  f.batch_mean = o.bm.data();
  f.batch_invstd = o.bi.data();
  f.running_mean = o.rm.data();
  f.running_var = o.rv.data();
  f.num_threads = threads;
  check(bn::forward_training(f) == bn::Status::kOk, "determinism: forward_training failed");
  o.dx.assign(total, T(0));
  o.gw.assign(C, T(0));
  o.gb.assign(C, T(0));
  bn::BackwardArgs<T> g;
  g.shape = s;
  g.x = x.data();
  g.dy = dy.data();
  g.dx = o.dx.data();
  g.weight = w.data();
  g.mean = o.bm.data();
  g.invstd = o.bi.data();
  g.grad_weight = o.gw.data();
  g.grad_bias = o.gb.data();
  g.accumulate = false;
  g.num_threads = threads;
  check(bn::backward(g) == bn::Status::kOk, "determinism: backward failed");
  o.edx.assign(total, T(0));
  o.egw.assign(C, T(0));
  o.egb.assign(C, T(0));
  g.dx = o.edx.data();
  g.grad_weight = o.egw.data();
  g.grad_bias = o.egb.data();
  g.use_batch_stats = false;
  check(bn::backward(g) == bn::Status::kOk, "determinism: backward (evaluation) failed");
  return o;
}

template <typename T>
void test_shape(const bn::Shape& s, bn::SimdLevel level) {
  const size_t total = size_t(s.n * s.c * s.s), C = size_t(s.c);
  Rng rng(uint64_t(total * 31 + C));
  std::vector<T> x(total), dy(total), w(C), b(C);
  for (T& v : x) v = T(3.0 + 2.0 * rng.normal());  // a mean far from 0: shifts and chunk sums matter
  for (T& v : dy) v = T(rng.normal());
  for (T& v : w) v = T(1.0 + 0.5 * rng.sym());
  for (T& v : b) v = T(rng.sym());
  const bn::MachineFacts saved = bn::machine_facts();
  Outputs<T> want;
  bool first = true;
  std::string paths;
  const std::pair<int64_t, int64_t> machines[] = {  // L2, streaming threshold (0: always, 2^40: never)
      {int64_t(2) << 20, int64_t(1) << 40}, {int64_t(2) << 20, 0}, {int64_t(256) << 10, int64_t(1) << 40}};
  for (const auto& [l2, stream_min] : machines) {
    {
      bn::MachineFacts f = saved;
      f.l2_bytes = l2;
      f.stream_min_bytes = stream_min;
      bn::replace_machine_facts(f);
      for (int nt : {1, 2, 3, 4, 7, 16}) {
        bn::PlanInput in;
        in.shape = bn::canonical_shape(s);
        in.elem_bytes = sizeof(T);
        in.threads = nt;
        in.l2_bytes = l2;
        const bn::Plan p = bn::plan_op(in);
        const std::string path = bn::path_name(p.path) + std::string(p.pipeline ? "+pipeline" : "");
        if (paths.find(path) == std::string::npos) paths += " " + path;
        const Outputs<T> got = run_all(s, x, dy, w, b, nt);
        if (first) {
          want = got;
          first = false;
          continue;
        }
        check(got == want, "determinism %s %s [%lld, %lld, %lld]%s: L2 %lld KiB, %s, %d threads (%s) differ from the first",
              bn::simd_level_name(level), bn::dtype_name<T>(), (long long)s.n, (long long)s.c, (long long)s.s,
              s.channels_last ? " channels-last" : "", (long long)(l2 >> 10), stream_min == 0 ? "streaming" : "plain stores",
              nt, path.c_str());
      }
    }
  }
  bn::replace_machine_facts(saved);
  // A call inside another parallel region: nested regions get one thread, fewer than the plan's
  // (the claims must still take every piece). L2 256 KiB: waves of fewer channels than C.
  {
    bn::MachineFacts f = saved;
    f.l2_bytes = int64_t(256) << 10;
    bn::replace_machine_facts(f);
    const int levels = omp_get_max_active_levels();
    omp_set_max_active_levels(1);
    Outputs<T> nested;
#pragma omp parallel num_threads(2)
    {
      if (omp_get_thread_num() == 0) nested = run_all(s, x, dy, w, b, 4);
    }
    omp_set_max_active_levels(levels);
    bn::replace_machine_facts(saved);
    check(nested == want, "determinism %s %s [%lld, %lld, %lld]%s: 4 threads asked inside a parallel region differ",
          bn::simd_level_name(level), bn::dtype_name<T>(), (long long)s.n, (long long)s.c, (long long)s.s,
          s.channels_last ? " channels-last" : "");
  }
  if (std::getenv("BN_TEST_TIMING")) {
    std::printf("determinism %s [%lld, %lld, %lld]: paths%s\n", bn::dtype_name<T>(), (long long)s.n, (long long)s.c,
                (long long)s.s, paths.c_str());
  }
}

}  // namespace

void test_determinism() {
  const bn::SimdLevel initial = bn::active_simd_level();
  const bn::Shape shapes[] = {
      {8, 3, 61 * 67, false},   // waves (pipelined), parts vary with the threads
      {8, 4, 8192, false},      // waves of fewer channels than C, the next one pipelined (256 KiB L2)
      {3, 1024, 49, false},     // groups of short maps, group size varies
      {64, 32, 49, false},      // short maps, several chunks per channel
      {1024, 3, 49, false},     // short maps: groups (1 thread), waves or single channels, group sums
      {512, 4, 196, false},     // short runs that never group: pipelined
      {256, 16, 49, false},     // short maps, large batch: groups widened past L2 (kNarrowSpanBytes)
      {128, 12, 196, false},    // 14x14 maps, large batch: groups of 5 down to 1 by thread count
      {2, 3, 10000, false},     // long runs cut in pieces
      {4096, 37, 1, false},     // [N, C]: rows
      {300, 2048, 1, false},    // [N, C], wide: row chunks bounded by kMaxRowChunks' rule
      {1, 16, 16384, true},     // N = 1 channels-last: rows
      {4, 8, 9000, false},      // whole channels of pieces, fused
  };
  for (bn::SimdLevel level : supported_levels()) {
    bn::set_simd_level(level);
    for (const bn::Shape& s : shapes) {
      test_shape<float>(s, level);
      test_shape<double>(s, level);
    }
  }
  bn::set_simd_level(initial);
}

}  // namespace bntest
