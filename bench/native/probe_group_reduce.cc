// The short-map group reductions alone (stats_group, bwd_reduce_group of the active ISA's float32
// table), reading a group from L2: what the statistics of a group cost once the pass before has
// brought it there (bench/notes-from-code.md, "Group reductions"). For each group of channels, one
// call warms L2 and a second one is timed; the sum over groups of the second calls is reported,
// minimum over repetitions. BATCHNORM_SIMD=avx2 (or scalar) times a lower level.
//
//   build-native/bn_probe_group_reduce [--shapes 32x2048x7x7,32x256x14x14] [--reps 40]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "bench_cli.h"
#include "kernels.h"
#include "machine.h"
#include "plan.h"

namespace {

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

struct Timing {
  double stats = 1e30, bwd = 1e30;
};

// Groups as the planner sizes them for one thread on this machine's L2 (plan.h).
Timing probe(const std::string& name, const std::vector<int64_t>& d, int reps) {
  const size_t N = size_t(d[0]), C = size_t(d[1]);
  size_t S = 1;
  for (size_t i = 2; i < d.size(); ++i) S *= size_t(d[i]);
  bn::PlanInput in;
  in.shape = bn::Shape{d[0], d[1], int64_t(S), false};
  in.threads = 1;
  in.l2_bytes = bn::machine_facts().l2_bytes;
  in.op = bn::OpKind::kBackward;
  const size_t G = size_t(std::max<int64_t>(1, bn::plan_op(in).group));
  std::vector<float> x(N * C * S), dy(N * C * S), shift(C, 0.25f);
  for (size_t i = 0; i < x.size(); ++i) {
    x[i] = float(i % 97) * 0.01f;
    dy[i] = float(i % 89) * 0.01f - 0.4f;
  }
  std::vector<double> s0(C), s1(C);
  const auto& k = bn::active_table<float>();
  Timing best;
  for (int r = 0; r < reps; ++r) {
    double ts = 0, tb = 0;
    for (size_t c0 = 0; c0 < C; c0 += G) {
      const size_t g = std::min(G, C - c0);
      const float* xs = x.data() + c0 * S;
      const float* ds = dy.data() + c0 * S;
      k.bwd_reduce_group(xs, ds, N, C * S, g, S, &shift[c0], &s0[c0], &s1[c0]);  // x and dy into L2
      double t0 = now();
      k.stats_group(xs, N, C * S, g, S, &shift[c0], &s0[c0], &s1[c0]);
      double t1 = now();
      k.bwd_reduce_group(xs, ds, N, C * S, g, S, &shift[c0], &s0[c0], &s1[c0]);
      double t2 = now();
      ts += t1 - t0;
      tb += t2 - t1;
    }
    best.stats = std::min(best.stats, ts);
    best.bwd = std::min(best.bwd, tb);
  }
  std::printf("%-16s group %3zu  stats_group %.3f ms  bwd_reduce_group %.3f ms  (%s, %.1f MB per tensor; sums %g)\n",
              name.c_str(), G, best.stats * 1e3, best.bwd * 1e3, bn::active_kernels().isa,
              double(x.size()) * 4e-6, s0[0] + s1[0]);
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  std::string shapes = "32x2048x7x7,32x512x7x7,256x512x7x7,32x256x14x14,32x1024x14x14";
  int reps = 40;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--shapes" && i + 1 < argc) {
      shapes = argv[++i];
    } else if (a == "--reps" && i + 1 < argc) {
      reps = std::max(1, std::atoi(argv[++i]));
    } else {
      std::fprintf(stderr, "bn_probe_group_reduce [--shapes NxCxHxW,...] [--reps N]\n");
      return 2;
    }
  }
  for (const std::string& s : bnbench::split(shapes, ',')) {
    const std::vector<int64_t> d = bnbench::parse_dims(s);
    if (d.size() < 3) {
      std::fprintf(stderr, "bn_probe_group_reduce: '%s' is not an NxCxHxW shape\n", s.c_str());
      return 2;
    }
    probe(s, d, reps);
  }
  return 0;
}
