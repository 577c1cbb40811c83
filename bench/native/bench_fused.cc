// Benchmark of the fused activation (issue 13) on the core alone: BN+ReLU and BN+Add+ReLU,
// training and inference forward and backward, beside the unfused chain (our BN, then our own
// ReLU / add+ReLU pass, or our ReLU-backward pass then our BN backward) and a copy of the same
// bytes (bench/native/bench_copy_kernels.h, the copies `npm run bench` uses).
//
// Build and run (from the repository root):
//   cmake -S . -B build-bench -DBN_BUILD_NATIVE_TESTS=ON -DCMAKE_BUILD_TYPE=Release
//   cmake --build build-bench --target bn_bench_fused
//   build-bench/bn_bench_fused [--shapes 16x64x112x112,...] [--threads 1,2] [--reps N] [--min]
//
// Bytes per element (float32) that each op must move, one pass each (docs: bench/RESULTS.md):
//   forward:  BN 8; BN+ReLU 8 (unfused 8 + 8); BN+Add+ReLU 12 (unfused 8 + 12)
//   backward: BN 12; BN+ReLU 16, mask from y (unfused: ReLU backward 12, then BN 12);
//             BN+Add+ReLU 20, dz written too (unfused 24: dz is the ReLU backward's output)
// Each fused op and its unfused chain are timed A/B interleaved (one call of each in turn); the
// copies of the op's bytes the same way, right before. Reported: median ms, GB/s of the op's own
// bytes, ratio to the faster (plain or streaming) copy of those bytes, and unfused / fused time.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "bench_cli.h"
#include "bench_copy_kernels.h"
#include "batchnorm.h"

namespace {

using Clock = std::chrono::steady_clock;

[[noreturn]] void die(const std::string& msg) {
  std::fprintf(stderr, "bn_bench_fused: %s\n", msg.c_str());
  std::exit(2);
}

void ok(bn::Status st, const char* what) {
  if (st != bn::Status::kOk) die(std::string(what) + ": " + bn::status_message(st));
}

double now() { return std::chrono::duration<double>(Clock::now().time_since_epoch()).count(); }

// The summary of a case's times: the median, or with --min the minimum (on a machine shared with
// other work, the one least touched by preemption; say which with any figure).
bool g_use_min = false;
double median(std::vector<double> t) {
  std::sort(t.begin(), t.end());
  const size_t k = t.size();
  if (g_use_min) return t[0];
  return k % 2 ? t[k / 2] : 0.5 * (t[k / 2 - 1] + t[k / 2]);
}

// A and B in turn, `reps` times each after one warm-up call of each: their medians (or minima).
std::pair<double, double> ab(const std::function<void()>& a, const std::function<void()>& b, int reps) {
  a();
  b();
  std::vector<double> ta, tb;
  for (int i = 0; i < reps; ++i) {
    double t0 = now();
    a();
    ta.push_back(now() - t0);
    t0 = now();
    b();
    tb.push_back(now() - t0);
  }
  return {median(ta), median(tb)};
}

// The unfused chain's own elementwise passes: OpenMP over the elements, branch-free loops the
// compiler vectorizes, cloned for AVX-512 / AVX2 / baseline and chosen at load (memory-bound: their
// ratio to a copy of their bytes is printed too). Every load is unconditional: `c ? 0 : dy[i]`
// would read dy only where c is false, which GCC keeps as a branch (mispredicted half the time).
#define BN_BENCH_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
BN_BENCH_CLONES void relu_pass(float* y, size_t n, int t) {
#pragma omp parallel for simd schedule(static) num_threads(t)
  for (size_t i = 0; i < n; ++i) {
    const float v = y[i];
    y[i] = v < 0.0f ? 0.0f : v;
  }
}
BN_BENCH_CLONES void add_relu_pass(float* y, const float* z, size_t n, int t) {
#pragma omp parallel for simd schedule(static) num_threads(t)
  for (size_t i = 0; i < n; ++i) {
    const float v = y[i] + z[i];
    y[i] = v < 0.0f ? 0.0f : v;
  }
}
BN_BENCH_CLONES void relu_bwd_pass(const float* y, const float* dy, float* g, size_t n, int t) {
#pragma omp parallel for simd schedule(static) num_threads(t)
  for (size_t i = 0; i < n; ++i) {
    const float d = dy[i];
    g[i] = y[i] <= 0.0f ? 0.0f : d;
  }
}

void fill(std::vector<float>& v, uint64_t seed, float scale, float offset) {
  uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
  for (float& x : v) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    x = offset + scale * (float(s >> 40) / float(1 << 24) - 0.5f);
  }
}

std::vector<int64_t> parse_shape(const std::string& s) {
  std::vector<int64_t> d = bnbench::parse_dims(s);
  if (d.empty()) die("bad shape " + s);
  return d;
}

using bnbench::split;

}  // namespace

int main(int argc, char** argv) {
  std::string shapes = "16x64x112x112,32x256x28x28,32x1024x14x14,32x2048x7x7";
  std::vector<int> threads{2};
  int reps = 15;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--min") {
      g_use_min = true;
      continue;
    }
    if (i + 1 >= argc) die(a + " needs a value");
    if (a == "--shapes") shapes = argv[++i];
    else if (a == "--threads") {
      threads.clear();
      for (const std::string& t : split(argv[++i], ',')) threads.push_back(std::atoi(t.c_str()));
    } else if (a == "--reps") reps = std::atoi(argv[++i]);
    else die("unknown option " + a);
  }
  const bnbench::CopyIsa isa = bnbench::best_copy_isa();
  std::printf("bn_bench_fused: simd %s, copy kernels %s, %d reps A/B interleaved, %s, float32, NCHW\n",
              bn::simd_level_name(bn::active_simd_level()), bnbench::copy_isa_name(isa), reps, g_use_min ? "min" : "median");
  std::printf("%-16s %3s %-22s %5s %9s %7s %6s | %-22s %9s %6s %8s\n", "shape", "thr", "op", "B/el", "ms", "GB/s",
              "xcopy", "unfused chain", "ms", "xcopy", "speed-up");
  for (const std::string& sname : split(shapes, ',')) {
    const std::vector<int64_t> dims = parse_shape(sname);
    bn::Shape sh;
    sh.n = dims[0], sh.c = dims[1], sh.s = 1;
    for (size_t i = 2; i < dims.size(); ++i) sh.s *= dims[i];
    const size_t n = size_t(sh.n * sh.c * sh.s), C = size_t(sh.c);
    std::vector<float> x(n), z(n), y(n), yu(n), dy(n), dx(n), g(n), dz(n);
    fill(x, 1, 4.0f, 0.5f);
    fill(z, 2, 2.0f, 0.0f);
    fill(dy, 3, 2.0f, 0.0f);
    std::vector<float> w(C, 1.0f), b(C, 0.1f), rm(C, 0.0f), rv(C, 1.0f), gw(C), gb(C);
    std::vector<double> bm(C), bi(C);
    // Copy buffers for up to 24 bytes per element (3 floats copied per element).
    std::vector<float> csrc(3 * n), cdst(3 * n);
    fill(csrc, 5, 1.0f, 0.0f);
    for (int t : threads) {
      // The faster of the plain and streaming copy of `bytes` per element: GB/s of that copy.
      auto copy_gbs = [&](int bytes) {
        const size_t m = n * size_t(bytes) / 8;  // floats copied: 8 bytes moved each
        auto [plain, stream] = ab([&] { bnbench::bench_copy(csrc.data(), cdst.data(), m, false, t, isa); },
                                  [&] { bnbench::bench_copy(csrc.data(), cdst.data(), m, true, t, isa); }, reps);
        return double(bytes) * double(n) / std::min(plain, stream) / 1e9;
      };
      bn::ForwardTrainingArgs<float> ft;
      ft.shape = sh, ft.x = x.data(), ft.weight = w.data(), ft.bias = b.data(), ft.batch_mean = bm.data();
      ft.batch_invstd = bi.data(), ft.running_mean = rm.data(), ft.running_var = rv.data(), ft.num_threads = t;
      bn::ForwardInferenceArgs<float> fi;
      fi.shape = sh, fi.x = x.data(), fi.weight = w.data(), fi.bias = b.data(), fi.mean = rm.data();
      fi.var = rv.data(), fi.num_threads = t;
      bn::BackwardArgs<float> bw;
      bw.shape = sh, bw.x = x.data(), bw.weight = w.data(), bw.mean = bm.data(), bw.invstd = bi.data();
      bw.grad_weight = gw.data(), bw.grad_bias = gb.data(), bw.accumulate = false, bw.num_threads = t;
      {
        auto a = ft;
        a.y = y.data();
        a.epilogue = bn::Epilogue::kAddRelu;
        a.residual = z.data();
        ok(bn::forward_training(a), "forward for backward");  // y, bm, bi: the backward's inputs
      }
      const double c8 = copy_gbs(8), c12 = copy_gbs(12), c16 = copy_gbs(16), c20 = copy_gbs(20), c24 = copy_gbs(24);
      auto row = [&](const char* op, int bytes, double ms, double cgbs, const char* uop, int ubytes, double ums, double ucgbs) {
        const double gbs = bytes * double(n) / ms / 1e9;
        std::printf("%-16s %3d %-22s %5d %9.3f %7.2f %6.2f | %-22s %9.3f %6.2f %8.2f\n", sname.c_str(), t, op, bytes,
                    ms * 1e3, gbs, gbs / cgbs, uop, ums * 1e3, ubytes * double(n) / ums / 1e9 / ucgbs, ums / ms);
        std::fflush(stdout);
      };
      // Plain BN, for its ratio to a copy of its bytes (the standard the fused ops are held to).
      {
        auto [tf, ti] = ab([&] { auto a = ft; a.y = yu.data(); ok(bn::forward_training(a), "fwd"); },
                           [&] { auto a = fi; a.y = yu.data(); ok(bn::forward_inference(a), "infer"); }, reps);
        auto [tb, tr] = ab([&] { auto a = bw; a.dy = dy.data(); a.dx = dx.data(); ok(bn::backward(a), "bwd"); },
                           [&] { relu_pass(yu.data(), n, t); }, reps);
        row("fwd-train (plain BN)", 8, tf, c8, "relu pass alone", 8, tr, c8);
        row("fwd-infer (plain BN)", 8, ti, c8, "-", 8, ti, c8);
        row("backward (plain BN)", 12, tb, c12, "-", 12, tb, c12);
      }
      for (bool train : {true, false}) {
        for (bool add : {false, true}) {
          const bn::Epilogue e = add ? bn::Epilogue::kAddRelu : bn::Epilogue::kRelu;
          auto fused = [&] {
            if (train) {
              auto a = ft;
              a.y = yu.data(), a.epilogue = e, a.residual = add ? z.data() : nullptr;
              ok(bn::forward_training(a), "fused training");
            } else {
              auto a = fi;
              a.y = yu.data(), a.epilogue = e, a.residual = add ? z.data() : nullptr;
              ok(bn::forward_inference(a), "fused inference");
            }
          };
          auto unfused = [&] {
            if (train) {
              auto a = ft;
              a.y = yu.data();
              ok(bn::forward_training(a), "training");
            } else {
              auto a = fi;
              a.y = yu.data();
              ok(bn::forward_inference(a), "inference");
            }
            if (add) add_relu_pass(yu.data(), z.data(), n, t);
            else relu_pass(yu.data(), n, t);
          };
          auto [tf, tu] = ab(fused, unfused, reps);
          const std::string op = std::string(train ? "fwd-train " : "fwd-infer ") + (add ? "add+relu" : "relu");
          row(op.c_str(), add ? 12 : 8, tf, add ? c12 : c8, add ? "BN, add+relu pass" : "BN, relu pass", add ? 20 : 16, tu,
              add ? c20 : c16);
        }
      }
      for (bool add : {false, true}) {
        auto fused = [&] {
          auto a = bw;
          a.dy = dy.data(), a.dx = dx.data(), a.epilogue = add ? bn::Epilogue::kAddRelu : bn::Epilogue::kRelu;
          a.y = y.data(), a.residual_grad = add ? dz.data() : nullptr;
          ok(bn::backward(a), "fused backward");
        };
        auto unfused = [&] {
          relu_bwd_pass(y.data(), dy.data(), g.data(), n, t);  // g is dL/dz when there is a residual
          auto a = bw;
          a.dy = g.data(), a.dx = dx.data();
          ok(bn::backward(a), "backward");
        };
        auto [tf, tu] = ab(fused, unfused, reps);
        row(add ? "backward add+relu" : "backward relu", add ? 20 : 16, tf, add ? c20 : c16, "relu-bwd pass, BN bwd", 24,
            tu, c24);
      }
    }
  }
  return 0;
}
