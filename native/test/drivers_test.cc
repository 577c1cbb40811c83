// Driver tests: forward_training, forward_inference and backward through the public API, for
// every SIMD level and 1, 2, 3 threads, against the float64 reference (reference.h). The cases
// are chosen to take every path of the planner; check_driver_coverage asks the planner so.
#include <type_traits>

#include "machine.h"
#include "plan.h"
#include "reference.h"

namespace bntest {
namespace {

template <typename T>
void run_driver_variants(const Ref<T>& R, const std::string& base, int threads, int ti) {
  DriverRun<T> D{R, ""};
  const size_t C = size_t(R.C), total = R.total;
  const double fs[3] = {0.1, 1.0, 0.0};
  const double f = fs[ti % 3];

  // V1: training forward, out of place, affine, running statistics, every optional output.
  {
    D.ctx = base + " fwd_train";
    Buf<T> y(total, kGuardPre, kGuardPost), sm(C, kGuardPre, kGuardPost), si(C, kGuardPre, kGuardPost);
    Buf<double> bm(C, kGuardPre, kGuardPost), bi(C, kGuardPre, kGuardPost);
    Buf<T> rm(C, kGuardPre, kGuardPost), rv(C, kGuardPre, kGuardPost);
    copy_into(rm, R.rm0);
    copy_into(rv, R.rv0);
    bn::ForwardTrainingArgs<T> a;
    a.shape = R.shape;
    a.x = R.x.data();
    a.y = y.data();
    a.weight = R.w.data();
    a.bias = R.b.data();
    a.save_mean = sm.data();
    a.save_invstd = si.data();
    a.batch_mean = bm.data();
    a.batch_invstd = bi.data();
    a.running_mean = rm.data();
    a.running_var = rv.data();
    a.eps = R.eps;
    a.momentum_factor = f;
    a.num_threads = threads;
    const bn::Status st = bn::forward_training(a);
    if (check(st == bn::Status::kOk, "%s: status %d", D.ctx.c_str(), int(st))) {
      D.check_y(y.data(), R.mean, R.inv, true, "y");
      D.check_batch_stats(sm.data(), si.data(), bm.data(), bi.data());
      D.check_running(rm.data(), rv.data(), f);
    }
    check(y.guards_intact() && sm.guards_intact() && si.guards_intact() && bm.guards_intact() &&
              bi.guards_intact() && rm.guards_intact() && rv.guards_intact(),
          "%s: wrote outside an output", D.ctx.c_str());
  }
  // V2: training forward in place (y == x), affine = false, no running stats, float64 stats only.
  {
    D.ctx = base + " fwd_train inplace noaffine";
    Buf<T> y(total, kGuardPre, kGuardPost);
    Buf<double> bm(C, kGuardPre, kGuardPost), bi(C, kGuardPre, kGuardPost);
    copy_into(y, R.x);
    bn::ForwardTrainingArgs<T> a;
    a.shape = R.shape;
    a.x = y.data();
    a.y = y.data();
    a.batch_mean = bm.data();
    a.batch_invstd = bi.data();
    a.eps = R.eps;
    a.num_threads = threads;
    const bn::Status st = bn::forward_training(a);
    if (check(st == bn::Status::kOk, "%s: status %d", D.ctx.c_str(), int(st))) {
      D.check_y(y.data(), R.mean, R.inv, false, "y");
      D.check_batch_stats(nullptr, nullptr, bm.data(), bi.data());
    }
    check(y.guards_intact() && bm.guards_intact() && bi.guards_intact(),
          "%s: wrote outside an output", D.ctx.c_str());
  }
  // V3: inference, out of place with affine, then in place without.
  for (int inplace = 0; inplace < 2; ++inplace) {
    D.ctx = base + (inplace ? " fwd_infer inplace noaffine" : " fwd_infer");
    Buf<T> y(total, kGuardPre, kGuardPost);
    if (inplace) copy_into(y, R.x);
    bn::ForwardInferenceArgs<T> a;
    a.shape = R.shape;
    a.x = inplace ? y.data() : R.x.data();
    a.y = y.data();
    a.weight = inplace ? nullptr : R.w.data();
    a.bias = inplace ? nullptr : R.b.data();
    a.mean = R.rm0.data();
    a.var = R.rv0.data();
    a.eps = R.eps;
    a.num_threads = threads;
    const bn::Status st = bn::forward_inference(a);
    if (check(st == bn::Status::kOk, "%s: status %d", D.ctx.c_str(), int(st))) {
      D.check_y(y.data(), R.rmean, R.rinv, !inplace, "y");
    }
    check(y.guards_intact(), "%s: wrote outside y", D.ctx.c_str());
  }
  // V4: training backward, separate dx, affine, accumulate = true.
  {
    D.ctx = base + " bwd_train accumulate";
    Buf<T> dx(total, kGuardPre, kGuardPost), gw(C, kGuardPre, kGuardPost), gb(C, kGuardPre, kGuardPost);
    copy_into(gw, R.gw0);
    copy_into(gb, R.gb0);
    bn::BackwardArgs<T> a;
    a.shape = R.shape;
    a.x = R.x.data();
    a.dy = R.dy.data();
    a.dx = dx.data();
    a.weight = R.w.data();
    a.mean = R.mean.data();
    a.invstd = R.inv.data();
    a.grad_weight = gw.data();
    a.grad_bias = gb.data();
    a.use_batch_stats = true;
    a.accumulate = true;
    a.num_threads = threads;
    const bn::Status st = bn::backward(a);
    if (check(st == bn::Status::kOk, "%s: status %d", D.ctx.c_str(), int(st))) {
      D.check_dx_train(dx.data(), true, "dx");
      D.check_grads(gw.data(), gb.data(), true, false);
    }
    check(dx.guards_intact() && gw.guards_intact() && gb.guards_intact(), "%s: wrote outside an output",
          D.ctx.c_str());
  }
  // V5: training backward, dx aliasing dy, no weight, accumulate = false (poisoned grads overwritten).
  {
    D.ctx = base + " bwd_train dx=dy noaffine overwrite";
    Buf<T> dx(total, kGuardPre, kGuardPost), gw(C, kGuardPre, kGuardPost), gb(C, kGuardPre, kGuardPost);
    copy_into(dx, R.dy);
    bn::BackwardArgs<T> a;
    a.shape = R.shape;
    a.x = R.x.data();
    a.dy = dx.data();
    a.dx = dx.data();
    a.mean = R.mean.data();
    a.invstd = R.inv.data();
    a.grad_weight = gw.data();
    a.grad_bias = gb.data();
    a.accumulate = false;
    a.num_threads = threads;
    const bn::Status st = bn::backward(a);
    if (check(st == bn::Status::kOk, "%s: status %d", D.ctx.c_str(), int(st))) {
      D.check_dx_train(dx.data(), false, "dx");
      D.check_grads(gw.data(), gb.data(), false, false);
    }
    check(dx.guards_intact() && gw.guards_intact() && gb.guards_intact(), "%s: wrote outside an output",
          D.ctx.c_str());
  }
  // V6: evaluation-mode backward (constant statistics), dx aliasing x, affine, overwrite.
  {
    D.ctx = base + " bwd_eval dx=x";
    Buf<T> dx(total, kGuardPre, kGuardPost), gw(C, kGuardPre, kGuardPost), gb(C, kGuardPre, kGuardPost);
    copy_into(dx, R.x);
    bn::BackwardArgs<T> a;
    a.shape = R.shape;
    a.x = dx.data();
    a.dy = R.dy.data();
    a.dx = dx.data();
    a.weight = R.w.data();
    a.mean = R.rmean.data();
    a.invstd = R.rinv.data();
    a.grad_weight = gw.data();
    a.grad_bias = gb.data();
    a.use_batch_stats = false;
    a.accumulate = false;
    a.num_threads = threads;
    const bn::Status st = bn::backward(a);
    if (check(st == bn::Status::kOk, "%s: status %d", D.ctx.c_str(), int(st))) {
      D.check_dx_eval(dx.data(), true, "dx");
      D.check_grads(gw.data(), gb.data(), false, true);
    }
    check(dx.guards_intact() && gw.guards_intact() && gb.guards_intact(), "%s: wrote outside an output",
          D.ctx.c_str());
  }
  // V6b: evaluation-mode backward given running_var and eps instead of invstd (the core computes
  // invstd with forward_inference's rule), dx separate.
  {
    D.ctx = base + " bwd_eval from running_var";
    Buf<T> dx(total, kGuardPre, kGuardPost), gw(C, kGuardPre, kGuardPost), gb(C, kGuardPre, kGuardPost);
    bn::BackwardArgs<T> a;
    a.shape = R.shape;
    a.x = R.x.data();
    a.dy = R.dy.data();
    a.dx = dx.data();
    a.weight = R.w.data();
    a.mean = R.rmean.data();
    a.running_var = R.rv0.data();
    a.eps = R.eps;
    a.grad_weight = gw.data();
    a.grad_bias = gb.data();
    a.use_batch_stats = false;
    a.accumulate = false;
    a.num_threads = threads;
    const bn::Status st = bn::backward(a);
    if (check(st == bn::Status::kOk, "%s: status %d", D.ctx.c_str(), int(st))) {
      D.check_dx_eval(dx.data(), true, "dx");
      D.check_grads(gw.data(), gb.data(), false, true);
    }
    check(dx.guards_intact() && gw.guards_intact() && gb.guards_intact(), "%s: wrote outside an output",
          D.ctx.c_str());
  }
  // V7: training backward without dx, only grad_weight, accumulate = true.
  {
    D.ctx = base + " bwd_train nodx";
    Buf<T> gw(C, kGuardPre, kGuardPost);
    copy_into(gw, R.gw0);
    bn::BackwardArgs<T> a;
    a.shape = R.shape;
    a.x = R.x.data();
    a.dy = R.dy.data();
    a.weight = R.w.data();
    a.mean = R.mean.data();
    a.invstd = R.inv.data();
    a.grad_weight = gw.data();
    a.accumulate = true;
    a.num_threads = threads;
    const bn::Status st = bn::backward(a);
    if (check(st == bn::Status::kOk, "%s: status %d", D.ctx.c_str(), int(st))) {
      D.check_grads(gw.data(), nullptr, true, false);
    }
    check(gw.guards_intact(), "%s: wrote outside grad_weight", D.ctx.c_str());
  }
}

const DCase kCases[] = {
    {7, 5, 1, 0.0, true, "rows, const channel"},
    {2, 3, 1, 0.0, false, "rows, m=2"},
    {5000, 7, 1, 0.0, false, "rows, parallel"},
    {1, 3, 35, 0.0, false, "N=1"},
    {3, 5, 15, 0.0, false, "tail"},
    {3, 5, 16, 0.0, false, "tail"},
    {3, 5, 17, 0.0, true, "tail, const channel"},
    {3, 5, 35, 0.0, false, "tail"},
    {4, 3, 4099, 0.0, true, "above serial threshold, const channel"},
    {2, 1, 17000, 0.0, false, "C < threads"},
    {2, 2, 20000, 0.0, false, "C < threads (3)"},
    {3, 5, 7000, 0.0, false, "split channels, parts cross runs"},
    {3, 5, 2500, 0.0, false, "C not a multiple of threads"},
    {8, 3, 100, 1e4, false, "mean offset 1e4"},
    {4, 1, 9000, 1e4, false, "mean offset 1e4, split channel"},
    // Channels in waves (2 and 3 threads): > 1 MB per channel, uneven last wave; with
    // BATCHNORM_STREAM_MIN_BYTES = 1 MiB (set in main) also the streaming-store path.
    {4, 5, 35000, 0.0, true, "waves, streaming stores"},
    // Training's normalize pass fused with the next piece's statistics: across full waves (2
    // threads: waves of 3 channels, the third one short), and across whole channels (1 thread).
    {4, 7, 35000, 0.0, false, "pipelined waves"},
    // Short maps: groups of channels reduced channel by channel from L2, the first group of each
    // thread prefetched by the driver (1 thread: groups of 334 and 178 channels).
    {8, 512, 49, 0.0, false, "groups"},
    // The same groups with outputs large enough to stream: the group writers stream whole spans.
    {16, 512, 49, 0.0, false, "groups, spans streamed"},
    // Short runs (784 bytes, f32) of a large batch: one channel per piece (no groups), the runs
    // streamed with a masked head and tail.
    {512, 4, 196, 0.0, false, "short runs, large batch, streaming"},
    // Backward pieces larger than L2 (2 MiB here): the second pass walks them last block first.
    {2, 2, 240000, 0.0, false, "backward second pass reversed"},
    // Waves whose piece fits L2 once but not twice (f32, 2 threads, 2 MiB L2): no prefetch,
    // pipelined all the same.
    {2, 2, 350000, 0.0, false, "waves, a piece fits L2 once"},
    // Waves of short runs (3 channels on 2 threads): sums through the group kernels, no pipeline.
    {32, 3, 784, 0.0, false, "waves, group sums"},
    // channels_last (NHWC): the rows kernels over N*S rows of C channels.
    {3, 5, 17, 0.0, true, "NHWC, const channel", true},
    {2, 7, 3, 0.0, false, "NHWC small", true},
    {4, 3, 4099, 0.0, false, "NHWC, parallel", true},
    {2, 1, 17000, 0.0, false, "NHWC, C=1", true},
    {8, 6, 700, 1e4, false, "NHWC, mean offset 1e4", true},
};


// What the planner decides for a driver case (the test's machine facts, stream_out as the
// out-of-place variants see it: fresh resident buffers).
bn::Plan plan_for(const DCase& dc, size_t elem_bytes, int threads, bn::OpKind op) {
  const bn::MachineFacts& f = bn::machine_facts();
  bn::PlanInput in;
  in.shape = bn::Shape{dc.n, dc.c, dc.s, dc.channels_last};
  in.elem_bytes = elem_bytes;
  in.threads = threads;
  in.l2_bytes = f.l2_bytes;
  in.op = op;
  in.stream_out = !in.shape.rows_layout() && int64_t(elem_bytes) * dc.n * dc.c * dc.s >= f.stream_min_bytes;
  return bn::plan_op(in);
}

// The cases must take every path and variant of the planner, for each op, in float32 or float64
// (asked of the planner, so a change of its thresholds that leaves a path untested fails here,
// naming the path).
void check_driver_coverage() {
  struct Need {
    bn::OpKind op;
    const char* what;
    bool (*met)(const bn::Plan&);
  };
  const Need needs[] = {
      {bn::OpKind::kForwardTraining, "rows", [](const bn::Plan& p) { return p.path == bn::Path::kRows && p.nt > 1; }},
      {bn::OpKind::kForwardTraining, "channels", [](const bn::Plan& p) { return p.path == bn::Path::kChannels && !p.pipeline; }},
      {bn::OpKind::kForwardTraining, "channels pipelined", [](const bn::Plan& p) { return p.path == bn::Path::kChannels && p.pipeline; }},
      {bn::OpKind::kForwardTraining, "groups", [](const bn::Plan& p) { return p.path == bn::Path::kGroups; }},
      {bn::OpKind::kForwardTraining, "groups, spans streamed", [](const bn::Plan& p) { return p.path == bn::Path::kGroups && p.stream_spans; }},
      {bn::OpKind::kForwardTraining, "waves", [](const bn::Plan& p) { return p.path == bn::Path::kWaves && !p.pipeline; }},
      {bn::OpKind::kForwardTraining, "waves pipelined", [](const bn::Plan& p) { return p.path == bn::Path::kWaves && p.pipeline; }},
      {bn::OpKind::kForwardTraining, "runs streamed", [](const bn::Plan& p) { return p.stream; }},
      {bn::OpKind::kBackward, "rows", [](const bn::Plan& p) { return p.path == bn::Path::kRows && p.nt > 1; }},
      {bn::OpKind::kBackward, "channels", [](const bn::Plan& p) { return p.path == bn::Path::kChannels; }},
      {bn::OpKind::kBackward, "groups", [](const bn::Plan& p) { return p.path == bn::Path::kGroups; }},
      {bn::OpKind::kBackward, "waves", [](const bn::Plan& p) { return p.path == bn::Path::kWaves; }},
      {bn::OpKind::kBackward, "second pass reversed", [](const bn::Plan& p) { return p.reverse; }},
      {bn::OpKind::kBackward, "runs streamed", [](const bn::Plan& p) { return p.stream; }},
      {bn::OpKind::kForwardInference, "rows", [](const bn::Plan& p) { return p.path == bn::Path::kRows && p.nt > 1; }},
      {bn::OpKind::kForwardInference, "spans", [](const bn::Plan& p) { return p.path == bn::Path::kSpans; }},
      {bn::OpKind::kForwardInference, "runs", [](const bn::Plan& p) { return p.path == bn::Path::kRuns; }},
      {bn::OpKind::kForwardInference, "runs split", [](const bn::Plan& p) { return p.path == bn::Path::kRuns && p.run_pieces > 1; }},
      {bn::OpKind::kForwardInference, "streamed", [](const bn::Plan& p) { return p.stream; }},
  };
  const char* op_names[] = {"forward_training", "forward_inference", "backward"};
  for (const Need& need : needs) {
    bool met = false;
    for (size_t elem_bytes : {sizeof(float), sizeof(double)})
      for (const DCase& dc : kCases)
        for (int threads = 1; threads <= 3 && !met; ++threads) met = need.met(plan_for(dc, elem_bytes, threads, need.op));
    check(met, "driver cases never take %s's path '%s'", op_names[int(need.op)], need.what);
  }
}

template <typename T>
void test_drivers() {
  const std::vector<bn::SimdLevel> levels = supported_levels();
  uint64_t seed = std::is_same<T, float>::value ? 0xF32000 : 0xF64000;
  for (const DCase& dc : kCases) {
    Ref<T> R;
    make_ref(R, dc, ++seed);
    for (bn::SimdLevel level : levels) {
      if (!check(bn::set_simd_level(level) == bn::Status::kOk, "set_simd_level(%s)",
                 bn::simd_level_name(level))) {
        continue;
      }
      check(bn::active_simd_level() == level, "active_simd_level() != %s after set",
            bn::simd_level_name(level));
      for (int ti = 0; ti < 3; ++ti) {
        const int threads = ti + 1;
        const std::string base =
            fmt("driver %s/%s [N=%lld C=%lld S=%lld%s] (%s) threads=%d", bn::simd_level_name(level),
                TI<T>::name, (long long)dc.n, (long long)dc.c, (long long)dc.s,
                dc.channels_last ? " NHWC" : "", dc.note, threads);
        const auto t0 = std::chrono::steady_clock::now();
        run_driver_variants(R, base, threads, ti);
        if (std::getenv("BN_TEST_TIMING")) std::printf("%.3f s  %s\n", seconds_since(t0), base.c_str());
      }
    }
  }
}

}  // namespace

void test_drivers_f32() {
  check_driver_coverage();
  test_drivers<float>();
}
void test_drivers_f64() { test_drivers<double>(); }

// The float32 cancellation case also checked directly: with x = 1e4 + noise the textbook
// E[x^2] - E[x]^2 in float32 has no correct digit left; the core must keep var to ~1e-6.
void test_offset_accuracy() {
  const int64_t N = 16, C = 2, S = 64;
  Rng rng(0x0FF5E7);
  std::vector<float> x(size_t(N * C * S));
  for (float& v : x) v = float(1e4 + rng.normal());
  std::vector<double> bm(C), bi(C);
  for (bn::SimdLevel level : supported_levels()) {
    bn::set_simd_level(level);
    bn::ForwardTrainingArgs<float> a;
    a.shape = {N, C, S};
    a.x = x.data();
    std::vector<float> y(x.size());
    a.y = y.data();
    a.batch_mean = bm.data();
    a.batch_invstd = bi.data();
    a.eps = 0.0;
    if (!check(bn::forward_training(a) == bn::Status::kOk, "offset accuracy: status")) continue;
    for (int64_t c = 0; c < C; ++c) {
      KSum s;
      for (int64_t n = 0; n < N; ++n)
        for (int64_t j = 0; j < S; ++j) s.add(x[size_t((n * C + c) * S + j)]);
      const double mean = s.get() / double(N * S);
      KSum q;
      for (int64_t n = 0; n < N; ++n)
        for (int64_t j = 0; j < S; ++j) {
          const double d = x[size_t((n * C + c) * S + j)] - mean;
          q.add(d * d);
        }
      const double var = q.get() / double(N * S);
      const double got_var = 1.0 / (bi[c] * bi[c]);
      check(std::fabs(bm[c] - mean) <= 1e-9 * std::sqrt(var),
            "offset accuracy %s c=%lld: mean %.12g ref %.12g", bn::simd_level_name(level),
            (long long)c, bm[c], mean);
      check(std::fabs(got_var - var) <= 1e-6 * var, "offset accuracy %s c=%lld: var %.9g ref %.9g",
            bn::simd_level_name(level), (long long)c, got_var, var);
    }
  }
}

}  // namespace bntest
