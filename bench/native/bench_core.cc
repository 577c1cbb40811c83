// Benchmark of the batch-norm core alone (no Node, no N-API), next to this machine's copy
// bandwidth measured by the same copy kernels `npm run bench` calls through bench_copy.node
// (bench/native/bench_copy_kernels.h). Comparing its numbers with `npm run bench` shows what the
// binding and the TypeScript facade cost.
//
// Build and run (from the repository root):
//   cmake -S . -B build-bench -DBN_BUILD_NATIVE_TESTS=ON -DCMAKE_BUILD_TYPE=Release
//   cmake --build build-bench --target bn_bench_core
//   build-bench/bn_bench_core [--quick] [--shapes 32x64x112x112,256x1024] [--threads 1,2]
//                              [--layout nchw,nhwc] [--ops train,infer,backward] [--time SECONDS] [--json]
//
// --layout nhwc runs the same shapes channels-last (shape named NxCxHxW-cl; the copies are the
// same bytes); --ops keeps only some ops (the copies and reads always run).
//
// For every shape and thread count: a plain and a streaming copy of the op's byte count, a read of
// x (4 bytes per element: the statistics pass's traffic) and of x and dy (8: backward's
// reductions), then
// forward training (running statistics updated), forward inference (into another buffer and in
// place), backward (training), each into a caller-provided output and into a freshly malloc'ed one
// (freed after each call, so every call pays the page faults). Times: median and min over
// repetitions after a warm-up; GB/s counts 8 bytes per element for the forwards (one read, one
// write) and 12 for backward (x and dy read, dx written); the ratio is to the faster copy.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "bench_cli.h"
#include "bench_copy_kernels.h"
#include "batchnorm.h"

namespace {

using Clock = std::chrono::steady_clock;

// The read baselines' sums end here, so the compiler keeps their loads.
volatile float g_read_sink = 0.0f;

struct Options {
  std::vector<std::vector<int64_t>> shapes;
  std::vector<int> threads{1, 2};
  double seconds = 0.5;
  int min_reps = 5;
  bool quick = false;
  bool json = false;
  std::vector<bool> layouts{false};  // channels_last per pass
  bool train = true, infer = true, backward = true, fresh = true;
  size_t out_offset = 0;  // floats
};

struct Stat {
  double median = 0, min = 0;
  int reps = 0;
};

[[noreturn]] void die(const std::string& msg) {
  std::fprintf(stderr, "bn_bench_core: %s\n", msg.c_str());
  std::exit(2);
}

std::vector<int64_t> parse_shape(const std::string& s) {
  std::vector<int64_t> dims = bnbench::parse_dims(s);
  if (dims.empty()) die("bad shape '" + s + "': expected dims like 32x64x112x112 (at least N and C)");
  return dims;
}

using bnbench::split;

Options parse(int argc, char** argv) {
  Options o;
  std::string shapes;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) die(a + " needs a value");
      return argv[++i];
    };
    if (a == "--quick") o.quick = true;
    else if (a == "--json") o.json = true;
    else if (a == "--shapes") shapes = value();
    else if (a == "--time") o.seconds = std::atof(value().c_str());
    else if (a == "--layout") {
      o.layouts.clear();
      for (const std::string& l : split(value(), ',')) {
        if (l != "nchw" && l != "nhwc") die("--layout: nchw and/or nhwc");
        o.layouts.push_back(l == "nhwc");
      }
    } else if (a == "--ops") {
      o.train = o.infer = o.backward = false;
      for (const std::string& l : split(value(), ',')) {
        if (l == "train") o.train = true;
        else if (l == "infer") o.infer = true;
        else if (l == "backward") o.backward = true;
        else die("--ops: train, infer, backward");
      }
    } else if (a == "--no-fresh") o.fresh = false;
    else if (a == "--out-offset") o.out_offset = size_t(std::atol(value().c_str()));
    else if (a == "--threads") {
      o.threads.clear();
      for (const std::string& t : split(value(), ',')) o.threads.push_back(std::atoi(t.c_str()));
      for (int t : o.threads) if (t < 1) die("--threads: positive integers, e.g. 1,2");
    } else if (a == "--help" || a == "-h") {
      std::printf("bn_bench_core [--quick] [--shapes NxCxHxW,...] [--threads 1,2] [--layout nchw,nhwc]\n"
                  "              [--ops train,infer,backward] [--no-fresh] [--out-offset FLOATS] [--time SECONDS] [--json]\n");
      std::exit(0);
    } else die("unknown option " + a);
  }
  if (o.quick) {
    if (shapes.empty()) shapes = "1x256x56x56";
    o.seconds = std::min(o.seconds, 0.03);
    o.min_reps = 3;
  }
  if (shapes.empty()) shapes = "32x64x112x112,32x256x56x56,32x1024x14x14,32x2048x7x7,1x256x56x56,64x3x224x224,256x1024";
  for (const std::string& s : split(shapes, ',')) o.shapes.push_back(parse_shape(s));
  if (!(o.seconds > 0)) die("--time must be > 0");
  return o;
}

// Warm-up (at least one call and ~10% of the budget), then repetitions until `seconds` have
// passed and at least min_reps were made. Median and min of the per-call times.
Stat measure(const std::function<void()>& fn, double seconds, int min_reps) {
  auto now = [] { return std::chrono::duration<double>(Clock::now().time_since_epoch()).count(); };
  const double w0 = now();
  do fn(); while (now() - w0 < seconds * 0.1);
  std::vector<double> t;
  const double t0 = now();
  while (int(t.size()) < min_reps || (now() - t0 < seconds && t.size() < 100000)) {
    const double a = now();
    fn();
    t.push_back(now() - a);
  }
  std::sort(t.begin(), t.end());
  const size_t k = t.size();
  Stat s;
  s.median = k % 2 ? t[k / 2] : 0.5 * (t[k / 2 - 1] + t[k / 2]);
  s.min = t[0];
  s.reps = int(k);
  return s;
}

struct Row {
  std::string shape, op, output;
  int threads;
  double bytes;
  Stat st;
  double copy_best_gbs;  // NaN for the copy rows themselves
};

std::string shape_str(const std::vector<int64_t>& d) {
  std::string s;
  for (size_t i = 0; i < d.size(); ++i) s += (i ? "x" : "") + std::to_string(d[i]);
  return s;
}

void check(bn::Status st, const char* what) {
  if (st != bn::Status::kOk) die(std::string(what) + ": " + bn::status_message(st));
}

void fill(std::vector<float>& v, uint64_t seed, float scale, float offset) {
  uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
  for (float& x : v) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    x = offset + scale * (float(s >> 40) / float(1 << 24) - 0.5f);
  }
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  const bnbench::CopyIsa isa = bnbench::best_copy_isa();
  std::vector<Row> rows;

  if (!o.json) {
    const bn::CacheSizes cs = bn::cache_sizes();
    std::printf("bn_bench_core: simd %s, copy kernels %s, time/case %.2fs; core sizes pieces for L2 %lld KiB, L3 %lld KiB "
                "shared by %d CPUs (from %s)\n",
                bn::simd_level_name(bn::active_simd_level()), bnbench::copy_isa_name(isa), o.seconds,
                (long long)(cs.l2_bytes >> 10), (long long)(cs.l3_bytes >> 10), cs.l3_sharing, cs.source);
    std::printf("%-18s %-14s %-8s %3s %10s %10s %8s %6s\n", "shape", "op", "output", "thr", "median ms", "min ms", "GB/s", "ratio");
  }
  auto emit = [&](const Row& r) {
    rows.push_back(r);
    if (o.json) return;
    const double gbs = r.bytes / r.st.median / 1e9;
    char ratio[16] = "";
    if (!std::isnan(r.copy_best_gbs)) std::snprintf(ratio, sizeof ratio, "%.2f", gbs / r.copy_best_gbs);
    std::printf("%-18s %-14s %-8s %3d %10.3f %10.3f %8.2f %6s\n", r.shape.c_str(), r.op.c_str(), r.output.c_str(),
                r.threads, r.st.median * 1e3, r.st.min * 1e3, gbs, ratio);
    std::fflush(stdout);
  };

  for (const auto& dims : o.shapes)
  for (const bool cl : o.layouts) {
    bn::Shape sh;
    sh.channels_last = cl;
    sh.n = dims[0];
    sh.c = dims[1];
    sh.s = 1;
    for (size_t i = 2; i < dims.size(); ++i) sh.s *= dims[i];
    const size_t total = size_t(sh.n * sh.c * sh.s), C = size_t(sh.c);
    const std::string name = shape_str(dims) + (cl ? "-cl" : "");
    // --out-offset K: the outputs start K floats into their buffers (their distance to x mod 4 KiB
    // changes: loads that alias a recent store's low 12 address bits wait for it).
    std::vector<float> x(total), y_buf(total + o.out_offset), dy(total), dx_buf(total + o.out_offset);
    float* const y_out = y_buf.data() + o.out_offset;
    float* const dx_out = dx_buf.data() + o.out_offset;
    fill(x, 1, 4.0f, 0.5f);
    fill(dy, 2, 2.0f, 0.0f);
    std::fill(y_buf.begin(), y_buf.end(), 0.0f);
    std::fill(dx_buf.begin(), dx_buf.end(), 0.0f);
    std::vector<float> w(C), b(C), rm(C), rv(C), smean(C), sinv(C), gw(C), gb(C), imean(C, 0.0f), ivar(C, 1.0f);
    std::vector<float> ones(C, 1.0f), zeros(C, 0.0f);
    fill(w, 3, 1.0f, 1.0f);
    fill(b, 4, 1.0f, 0.0f);
    std::fill(rm.begin(), rm.end(), 0.0f);
    std::fill(rv.begin(), rv.end(), 1.0f);
    std::vector<double> bmean(C), binv(C);
    // Copy buffers sized for the larger (backward) byte count: 12 bytes/element = 1.5 floats copied.
    const size_t copy_max = total + total / 2 + 1;
    std::vector<float> csrc(copy_max), cdst(copy_max);
    fill(csrc, 5, 1.0f, 0.0f);
    std::fill(cdst.begin(), cdst.end(), 0.0f);

    for (int t : o.threads) {
      // Copy baselines for the forward (8 B/elem: copy `total` floats) and backward (12 B/elem).
      double best_fwd = 0, best_bwd = 0;
      for (int fam = 0; fam < 2; ++fam) {
        const size_t n = fam == 0 ? total : total + total / 2;
        for (bool nt : {false, true}) {
          if (nt && !bnbench::streaming_copy_supported()) continue;
          Row r{name, std::string(fam == 0 ? "copy8" : "copy12") + (nt ? "-stream" : "-plain"), "-", t, 8.0 * double(n),
                measure([&] { bnbench::bench_copy(csrc.data(), cdst.data(), n, nt, t, isa); }, o.seconds * 0.5, o.min_reps),
                NAN};
          const double gbs = r.bytes / r.st.median / 1e9;
          (fam == 0 ? best_fwd : best_bwd) = std::max(fam == 0 ? best_fwd : best_bwd, gbs);
          emit(r);
        }
      }
      // Read baselines: what a pass that only reads costs here. read-x (4 B/elem) is the traffic of
      // the statistics pass, read-x-dy (8 B/elem) that of backward's reductions: a schedule that
      // reads first and writes after cannot beat this time plus its writes.
      for (bool two : {false, true}) {
        float keep = 0.0f;
        Row r{name, two ? "read-x-dy" : "read-x", "-", t, (two ? 8.0 : 4.0) * double(total),
              measure([&] { keep += bnbench::bench_read(x.data(), two ? dy.data() : nullptr, total, t, isa); },
                      o.seconds * 0.5, o.min_reps),
              NAN};
        g_read_sink = g_read_sink + keep;
        emit(r);
      }
      const double fwd_bytes = 8.0 * double(total), bwd_bytes = 12.0 * double(total);

      bn::ForwardTrainingArgs<float> ft;
      ft.shape = sh;
      ft.x = x.data();
      ft.weight = w.data();
      ft.bias = b.data();
      ft.save_mean = smean.data();
      ft.save_invstd = sinv.data();
      ft.batch_mean = bmean.data();
      ft.batch_invstd = binv.data();
      ft.running_mean = rm.data();
      ft.running_var = rv.data();
      ft.momentum_factor = 0.1;
      ft.num_threads = t;

      bn::ForwardInferenceArgs<float> fi;
      fi.shape = sh;
      fi.x = x.data();
      fi.weight = w.data();
      fi.bias = b.data();
      fi.mean = imean.data();
      fi.var = ivar.data();
      fi.num_threads = t;

      bn::BackwardArgs<float> bw;
      bw.shape = sh;
      bw.x = x.data();
      bw.dy = dy.data();
      bw.weight = w.data();
      bw.mean = bmean.data();
      bw.invstd = binv.data();
      bw.grad_weight = gw.data();
      bw.grad_bias = gb.data();
      bw.use_batch_stats = true;
      bw.accumulate = false;
      bw.num_threads = t;
      {  // backward's mean and invstd are the batch statistics of a forward (--ops without train too)
        auto a = ft;
        a.y = y_out;
        check(bn::forward_training(a), "forward_training");
      }

      for (bool fresh : {false, true}) {
        if (fresh && !o.fresh) continue;
        const char* out = fresh ? "fresh" : "provided";
        auto with_out = [&](auto body) {
          if (!fresh) return body(fresh ? nullptr : (float*)nullptr);
          float* p = static_cast<float*>(std::malloc(total * sizeof(float)));
          if (p == nullptr) die("out of memory");
          body(p);
          std::free(p);
        };
        if (o.train) emit({name, "fwd-train", out, t, fwd_bytes, measure([&] {
                with_out([&](float* p) {
                  auto a = ft;
                  a.y = p ? p : y_out;
                  check(bn::forward_training(a), "forward_training");
                });
              }, o.seconds, o.min_reps), best_fwd});
        if (o.infer) emit({name, "fwd-infer", out, t, fwd_bytes, measure([&] {
                with_out([&](float* p) {
                  auto a = fi;
                  a.y = p ? p : y_out;
                  check(bn::forward_inference(a), "forward_inference");
                });
              }, o.seconds, o.min_reps), best_fwd});
        if (!fresh && o.infer) {
          // In place on y (a scratch buffer), not on x.
          emit({name, "fwd-infer", "inplace", t, fwd_bytes, measure([&] {
                  auto a = fi;  // weight 1, bias 0, mean 0, var 1: values stay put over the reps
                  a.weight = ones.data();
                  a.bias = zeros.data();
                  a.x = y_out;
                  a.y = y_out;
                  check(bn::forward_inference(a), "forward_inference in place");
                }, o.seconds, o.min_reps), best_fwd});
        }
        if (o.backward) emit({name, "backward", out, t, bwd_bytes, measure([&] {
                with_out([&](float* p) {
                  auto a = bw;
                  a.dx = p ? p : dx_out;
                  check(bn::backward(a), "backward");
                });
              }, o.seconds, o.min_reps), best_bwd});
      }
    }
  }

  // Per-call cost of the core on a tiny tensor (1, 16, 1, 1), inference (training needs > 1 value
  // per channel): what the binding's overhead is added to.
  {
    std::vector<float> tx(16, 0.5f), ty(16), tw(16, 1.0f), tb(16, 0.0f), tm(16, 0.0f), tv(16, 1.0f);
    bn::ForwardInferenceArgs<float> fi;
    fi.shape.n = 1;
    fi.shape.c = 16;
    fi.shape.s = 1;
    fi.x = tx.data();
    fi.y = ty.data();
    fi.weight = tw.data();
    fi.bias = tb.data();
    fi.mean = tm.data();
    fi.var = tv.data();
    fi.num_threads = o.threads.back();
    const int batch = 1000;
    Stat st = measure([&] { for (int i = 0; i < batch; ++i) check(bn::forward_inference(fi), "tiny"); }, o.quick ? 0.02 : 0.2, 5);
    st.median /= batch;
    st.min /= batch;
    emit({"1x16x1x1", "tiny-infer", "provided", fi.num_threads, 8.0 * 16, st, NAN});
  }

  if (o.json) {
    const bn::CacheSizes cs = bn::cache_sizes();
    std::printf("{\"simd\":\"%s\",\"copyIsa\":\"%s\",\"l2Bytes\":%lld,\"l3Bytes\":%lld,\"l3Sharing\":%d,"
                "\"cacheSource\":\"%s\",\"rows\":[",
                bn::simd_level_name(bn::active_simd_level()), bnbench::copy_isa_name(isa), (long long)cs.l2_bytes,
                (long long)cs.l3_bytes, cs.l3_sharing, cs.source);
    for (size_t i = 0; i < rows.size(); ++i) {
      const Row& r = rows[i];
      std::printf("%s{\"shape\":\"%s\",\"op\":\"%s\",\"output\":\"%s\",\"threads\":%d,\"bytes\":%.0f,"
                  "\"median\":%.9g,\"min\":%.9g,\"reps\":%d}",
                  i ? "," : "", r.shape.c_str(), r.op.c_str(), r.output.c_str(), r.threads, r.bytes, r.st.median,
                  r.st.min, r.st.reps);
    }
    std::printf("]}\n");
  }
  return 0;
}
