// Benchmark of batch norm on 16-bit storage (bfloat16, float16; float32 parameters) beside float32,
// in the same run, each op's time as a ratio to a copy of its own bytes: float32 forward 8 bytes
// per element (x read, y written), 16-bit forward 4; backward 12 and 6 (x and dy read, dx
// written). A ratio of 1 is copy speed; the same ratio for 16-bit as for float32 means about
// twice the elements per second. Rounds interleave every case (A/B), so a load change on a shared
// machine hits all of them alike; the figure is the median over rounds of the per-round ratio.
//
//   cmake -S . -B build-bench -DBN_BUILD_NATIVE_TESTS=ON -DCMAKE_BUILD_TYPE=Release
//   cmake --build build-bench --target bn_bench_half
//   build-bench/bn_bench_half [--shapes 32x64x112x112,...] [--threads 1] [--rounds 5] [--reps 5]
//                             [--ops fwd-train,fwd-infer,backward] (a subset, e.g. to profile one op)
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "batchnorm.h"
#include "bench_cli.h"
#include "bench_copy_kernels.h"

namespace {

using Clock = std::chrono::steady_clock;

[[noreturn]] void die(const std::string& msg) {
  std::fprintf(stderr, "bn_bench_half: %s\n", msg.c_str());
  std::exit(2);
}

struct Time {
  double median, min;
};

// Median and min of `reps` timed calls after one warm-up call. On a shared machine the min is
// the time least disturbed by other processes.
Time time_of(const std::function<void()>& fn, int reps) {
  fn();
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    const auto a = Clock::now();
    fn();
    t.push_back(std::chrono::duration<double>(Clock::now() - a).count());
  }
  std::sort(t.begin(), t.end());
  return {t[t.size() / 2], t[0]};
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

using bnbench::split;

bn::Shape parse_shape(const std::string& s) {
  const std::vector<std::string> d = split(s, 'x');
  if (d.size() < 2) die("bad shape " + s);
  bn::Shape sh;
  sh.n = std::atoll(d[0].c_str());
  sh.c = std::atoll(d[1].c_str());
  for (size_t i = 2; i < d.size(); ++i) sh.s *= std::atoll(d[i].c_str());
  if (sh.n < 1 || sh.c < 1 || sh.s < 1) die("bad shape " + s);
  return sh;
}

void check(bn::Status st, const char* what) {
  if (st != bn::Status::kOk) die(std::string(what) + ": " + bn::status_message(st));
}

float value(uint64_t& s, float scale, float offset) {
  s = s * 6364136223846793005ull + 1442695040888963407ull;
  return offset + scale * (float(s >> 40) / float(1 << 24) - 0.5f);
}

// One storage type's buffers and its three ops on one shape.
template <typename S>
struct Case {
  bn::Shape sh;
  int threads;
  std::vector<S> x, y, dy, dx;
  std::vector<float> w, b, rm, rv, smean, sinv, gw, gb, imean, ivar;
  std::vector<double> bmean, binv;
  Case(const bn::Shape& shape, int t) : sh(shape), threads(t) {
    const size_t total = size_t(sh.n * sh.c * sh.s), C = size_t(sh.c);
    uint64_t s = 1;
    x.resize(total), y.resize(total), dy.resize(total), dx.resize(total);
    for (size_t i = 0; i < total; ++i) x[i] = S(value(s, 4.0f, 0.5f)), dy[i] = S(value(s, 2.0f, 0.0f)), y[i] = dx[i] = S(0.0f);
    w.assign(C, 1.0f), b.assign(C, 0.0f), rm.assign(C, 0.0f), rv.assign(C, 1.0f), smean.resize(C), sinv.resize(C);
    gw.resize(C), gb.resize(C), imean.assign(C, 0.0f), ivar.assign(C, 1.0f), bmean.resize(C), binv.resize(C);
    for (size_t c = 0; c < C; ++c) w[c] = value(s, 1.0f, 1.0f), b[c] = value(s, 1.0f, 0.0f);
    train();  // backward's batch statistics (zero invstd would send it to the exact fallback)
  }
  void train() {
    bn::ForwardTrainingArgs<S> a;
    a.shape = sh, a.x = x.data(), a.y = y.data(), a.weight = w.data(), a.bias = b.data();
    a.save_mean = smean.data(), a.save_invstd = sinv.data(), a.batch_mean = bmean.data(), a.batch_invstd = binv.data();
    a.running_mean = rm.data(), a.running_var = rv.data(), a.momentum_factor = 0.1, a.num_threads = threads;
    check(bn::forward_training(a), "forward_training");
  }
  void infer() {
    bn::ForwardInferenceArgs<S> a;
    a.shape = sh, a.x = x.data(), a.y = y.data(), a.weight = w.data(), a.bias = b.data(), a.mean = imean.data();
    a.var = ivar.data(), a.num_threads = threads;
    check(bn::forward_inference(a), "forward_inference");
  }
  void backward() {
    bn::BackwardArgs<S> a;
    a.shape = sh, a.x = x.data(), a.dy = dy.data(), a.dx = dx.data(), a.weight = w.data(), a.mean = bmean.data();
    a.invstd = binv.data(), a.grad_weight = gw.data(), a.grad_bias = gb.data(), a.accumulate = false, a.num_threads = threads;
    check(bn::backward(a), "backward");
  }
};

}  // namespace

int main(int argc, char** argv) {
  std::string shapes = "32x64x112x112,32x256x56x56,32x1024x14x14,32x2048x7x7,256x1024";
  std::string op_list = "fwd-train,fwd-infer,backward";
  int threads = 1, rounds = 5, reps = 5;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) die(a + " needs a value");
    if (a == "--shapes") shapes = argv[++i];
    else if (a == "--threads") threads = std::atoi(argv[++i]);
    else if (a == "--rounds") rounds = std::atoi(argv[++i]);
    else if (a == "--reps") reps = std::atoi(argv[++i]);
    else if (a == "--ops") op_list = argv[++i];
    else die("unknown option " + a);
  }
  if (threads < 1 || rounds < 1 || reps < 1) die("--threads, --rounds and --reps take positive integers");
  const char* ops[3] = {"fwd-train", "fwd-infer", "backward"};
  bool op_on[3] = {false, false, false};
  for (const std::string& o : split(op_list, ',')) {
    int k = 0;
    while (k < 3 && o != ops[k]) ++k;
    if (k == 3) die("unknown op " + o + " (fwd-train, fwd-infer, backward)");
    op_on[k] = true;
  }
  const bnbench::CopyIsa isa = bnbench::best_copy_isa();
  std::printf("bn_bench_half: simd %s, copy kernels %s, %d thread(s), %d rounds of %d reps; ratio = copy of the op's bytes / op time\n",
              bn::simd_level_name(bn::active_simd_level()), bnbench::copy_isa_name(isa), threads, rounds, reps);
  std::printf("%-16s %-10s %10s %10s %10s   %-17s   %s\n", "shape", "op", "f32", "bf16", "f16", "same from mins",
              "min ms per call f32 / bf16 / f16");
  std::printf("(ratios: median over rounds of copy time / op time, from medians of the reps, then from their mins)\n");
  for (const std::string& name : split(shapes, ',')) {
    const bn::Shape sh = parse_shape(name);
    const size_t total = size_t(sh.n * sh.c * sh.s);
    Case<float> f32(sh, threads);
    Case<bn::bf16> b16(sh, threads);
    Case<bn::f16> h16(sh, threads);
    std::vector<float> src(total + total / 2 + 1, 1.0f), dst(src.size(), 0.0f);
    // The faster of a plain and a streaming copy of n floats (8 n bytes of traffic).
    auto copy_time = [&](size_t n) {
      Time best = time_of([&] { bnbench::bench_copy(src.data(), dst.data(), n, false, threads, isa); }, reps);
      if (bnbench::streaming_copy_supported()) {
        const Time nt = time_of([&] { bnbench::bench_copy(src.data(), dst.data(), n, true, threads, isa); }, reps);
        best = {std::min(best.median, nt.median), std::min(best.min, nt.min)};
      }
      return best;
    };
    std::vector<double> ratio[3][3], ratio_min[3][3], ms[3][3];  // [op][dtype]
    for (int r = 0; r < rounds; ++r) {
      // Copies of each op's bytes: forward f32 8 B/elem = total floats, 16-bit 4 B/elem = total / 2;
      // backward f32 12 B/elem = 1.5 total floats, 16-bit 6 B/elem = 0.75 total.
      const bool fwd = op_on[0] || op_on[1];
      const Time none{0, 0};
      const Time c8 = fwd ? copy_time(total) : none, c4 = fwd ? copy_time(total / 2) : none;
      const Time c12 = op_on[2] ? copy_time(total + total / 2) : none, c6 = op_on[2] ? copy_time(3 * total / 4) : none;
      const std::function<void()> run[3][3] = {{[&] { f32.train(); }, [&] { b16.train(); }, [&] { h16.train(); }},
                                               {[&] { f32.infer(); }, [&] { b16.infer(); }, [&] { h16.infer(); }},
                                               {[&] { f32.backward(); }, [&] { b16.backward(); }, [&] { h16.backward(); }}};
      for (int op = 0; op < 3; ++op) {
        if (!op_on[op]) continue;
        for (int d = 0; d < 3; ++d) {
          const Time t = time_of(run[op][d], reps);
          const Time copy = op < 2 ? (d == 0 ? c8 : c4) : (d == 0 ? c12 : c6);
          ratio[op][d].push_back(copy.median / t.median);
          ratio_min[op][d].push_back(copy.min / t.min);
          ms[op][d].push_back(t.min * 1e3);
        }
      }
    }
    for (int op = 0; op < 3; ++op) {
      if (!op_on[op]) continue;
      std::printf("%-16s %-10s %10.2f %10.2f %10.2f   %5.2f %5.2f %5.2f   %.3f / %.3f / %.3f ms\n", name.c_str(), ops[op],
                  median(ratio[op][0]), median(ratio[op][1]), median(ratio[op][2]), median(ratio_min[op][0]),
                  median(ratio_min[op][1]), median(ratio_min[op][2]), median(ms[op][0]), median(ms[op][1]), median(ms[op][2]));
      std::fflush(stdout);
    }
  }
  return 0;
}
