// One layer as a training step meets it: every call's tensors were last touched long ago (the
// probe cycles through sets of x, dy and y, six L3s of reads apart), so x and dy come from memory, as in `npm run bench -- --network`. Beside each op, in the same round and the
// same cold state: a streaming copy of the same bytes (the network benchmark's floor: 8 bytes per
// element forward, 12 backward), a read of x (and dy), the output's bytes written alone (streaming
// stores), for NCHW forwards the copy walked in the group schedule's order (one sample's span of G
// channels at a time, C * S apart), with and without the next group requested line by line as the
// library's second pass does (what the short maps are bound by in a step: bench/PERFORMANCE.md,
// "Short maps in a step's cold caches"), and for NCHW long runs in training and backward the
// planner's two-pass schedule with bare loads and stores, no arithmetic (what the schedule alone
// costs this machine's memory: bench/PERFORMANCE.md, twelfth round), and for channels-last training
// and backward the first pass alone (the rows reductions over each thread's share of the chunks,
// against the read of the same bytes: fifteenth round).
// x86-64 only (the span copies are AVX2 loops).
//
//   build-native/bn_probe_cold_layer [--shapes 32x256x14x14,...] [--ops train,infer,backward]
//                                    [--layout nchw|nhwc] [--threads 2] [--reps 300] [--group G]
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "batchnorm.h"
#include "bench_cli.h"
#include "bench_copy_kernels.h"
#include "blocks.h"
#include "kernels.h"
#include "machine.h"
#include "plan.h"

namespace {

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

// The thread's channels [cb, ce) copied group by group in the group walk's order, streaming;
// with `ahead`, each line also requests the same line of the next group (ahead values on). One
// fence at the end, as the library's drivers do.
__attribute__((target("avx2"))) void span_copy(const float* x, float* y, const bn::Shape& s, int64_t cb, int64_t ce,
                                               int64_t G, bool ahead) {
  for (int64_t c0 = cb; c0 < ce; c0 += G) {
    const int64_t g = std::min(G, ce - c0);
    const size_t next = ahead && c0 + g < ce ? size_t(g * s.s) : 0;
    for (int64_t b = 0; b < s.n; ++b) {
      const size_t off = size_t((b * s.c + c0) * s.s), cnt = size_t(g * s.s);
      const float* src = x + off;
      float* dst = y + off;
      size_t i = 0;
      while (i < cnt && (reinterpret_cast<uintptr_t>(dst + i) & 31) != 0) dst[i] = src[i], ++i;
      for (; i + 8 <= cnt; i += 8) {
        if (next != 0 && (reinterpret_cast<uintptr_t>(src + i) & 63) < 32) {
          _mm_prefetch(reinterpret_cast<const char*>(src + i + next), _MM_HINT_T1);
        }
        _mm256_stream_ps(dst + i, _mm256_loadu_ps(src + i));
      }
      for (; i < cnt; ++i) dst[i] = src[i];
    }
  }
  _mm_sfence();
}

// Streaming stores of n values at y, alone (the write half of a copy; one fence at the end).
__attribute__((target("avx2"))) void write_only(float* y, size_t n) {
  const __m256 v = _mm256_set1_ps(1.0f);
  size_t i = 0;
  while (i < n && (reinterpret_cast<uintptr_t>(y + i) & 31) != 0) y[i++] = 1.0f;
  for (; i + 8 <= n; i += 8) _mm256_stream_ps(y + i, v);
  for (; i < n; ++i) y[i] = 1.0f;
  _mm_sfence();
}

// Request (into L2) the line at p + i values, an integer address: it may lie past the tensor.
inline void request(const float* p, size_t i) {
  _mm_prefetch(reinterpret_cast<const char*>(reinterpret_cast<uintptr_t>(p) + i * sizeof(float)), _MM_HINT_T1);
}

// One pass over the runs of samples [b0, b1) of channels [c0, c1), bare loads and stores (the
// schedule's cost to the memory, without the kernels' arithmetic): the `arrays` inputs (x, and dy
// at x + n) loaded and summed, requested kPrefetchAheadBytes ahead along the walk as the library's
// reductions do; or, with `out`, loaded and streamed into out (x + dy for two arrays), and with
// `next` (not 0) the values `next` on (the next piece) loaded and summed too, requested
// kPipelineAheadBytes ahead (the pipelined pass), or with `req` (not 0) the x values `req` on
// requested line by line (the second pass prefetching the next piece).
__attribute__((target("avx2"))) float bare_pass(const float* x, size_t n, int arrays, float* out, size_t next,
                                                size_t req, const bn::Shape& s, int64_t c0, int64_t c1, int64_t b0,
                                                int64_t b1) {
  __m256 acc = _mm256_setzero_ps();
  float tail = 0.0f;
  const size_t S = size_t(s.s), stride = size_t(s.c) * S;
  const size_t reduce_ahead = bn::kPrefetchAheadBytes / sizeof(float);  // shorter than a long run
  const size_t pipeline_ahead = bn::kPipelineAheadBytes / sizeof(float);
  for (int64_t c = c0; c < c1; ++c) {
    for (int64_t b = b0; b < b1; ++b) {
      const size_t off = size_t(b * s.c + c) * S;
      const float* p = x + off;
      float* q = out != nullptr ? out + off : nullptr;
      size_t i = 0;
      if (q != nullptr) {
        for (; i < S && (reinterpret_cast<uintptr_t>(q + i) & 31) != 0; ++i) q[i] = p[i];
      }
      for (; i + 8 <= S; i += 8) {
        const bool line = (reinterpret_cast<uintptr_t>(p + i) & 63) < 32;  // once per line of x
        if (q == nullptr && line) {  // first pass: ahead in the walk, past this run into the next sample's
          const size_t j = i + reduce_ahead, at = j < S ? j : j - S + stride;
          request(p, at);
          if (arrays == 2) request(p + n, at);
        }
        if (req != 0 && line) request(p, req + i);
        if (next != 0 && line) request(p, next + i + pipeline_ahead);
        __m256 v = _mm256_loadu_ps(p + i);
        if (arrays == 2) v = _mm256_add_ps(v, _mm256_loadu_ps(p + n + i));
        if (next != 0) acc = _mm256_add_ps(acc, _mm256_loadu_ps(p + next + i));
        if (q != nullptr) {
          _mm256_stream_ps(q + i, v);
        } else {
          acc = _mm256_add_ps(acc, v);
        }
      }
      for (; i < S; ++i) (q != nullptr ? q[i] : tail) = p[i];
    }
  }
  float lanes[8];
  _mm256_storeu_ps(lanes, acc);
  return lanes[0] + lanes[7] + tail;
}

// The planner's two-pass schedule for NCHW long runs, bare (bare_pass): whole channels or waves,
// pipelined where the plan says so (training) or requesting the next piece's x (plan.prefetch); the
// first pass reads `arrays` inputs, the second reads them again and streams one output. Thread t
// takes channels c * t / T (whole channels) or samples n * t / T of every wave (a barrier after
// each pass), statically: the library's claims give the same shares to threads that keep pace.
float bare_two_pass(const float* x, float* y, size_t n, int arrays, const bn::Shape& s, const bn::Plan& pt, int threads) {
  float keep = 0.0f;
#pragma omp parallel num_threads(threads) reduction(+ : keep)
  {
    const int64_t t = omp_get_thread_num(), T = omp_get_num_threads();
    const bool waves = pt.path == bn::Path::kWaves;
    const int64_t cb = waves ? 0 : s.c * t / T, ce = waves ? s.c : s.c * (t + 1) / T;
    const int64_t b0 = waves ? s.n * t / T : 0, b1 = waves ? s.n * (t + 1) / T : s.n;
    const int64_t step = waves ? pt.wave : 1;
    const size_t S = size_t(s.s);
    int64_t summed = cb;  // channels whose first pass is done
    for (int64_t c = cb; c < ce; c += step) {
      const int64_t c1 = std::min(ce, c + step);
      if (summed < c1) keep += bare_pass(x, n, arrays, nullptr, 0, 0, s, c, c1, b0, b1);
      if (waves) {
#pragma omp barrier
      }
      // Pipelined: the next piece (the same samples' runs, c1 - c channels on) when it is as wide.
      // Else, where the plan prefetches, the next piece's x is requested (whole channels: the next
      // channel, waves: the same samples of the next wave).
      const bool pipe = pt.pipeline && c1 + (c1 - c) <= ce;
      const bool ask = !pipe && pt.prefetch && c1 + (c1 - c) <= ce;
      const size_t on = size_t(c1 - c) * S;
      keep += bare_pass(x, n, arrays, y, pipe ? on : 0, ask ? on : 0, s, c, c1, b0, b1);
      summed = pipe ? c1 + (c1 - c) : c1;
      if (waves) {
#pragma omp barrier
      }
    }
  }
  _mm_sfence();
  return keep;
}

// Channels-last: the first pass of the rows schedule alone. Each thread reduces its static share
// of the row chunks (what run_rows_two_pass's claims give threads of equal speed) into sums of its
// own, with the active table's rows reductions (dy null: the statistics, else backward's).
void reduce_rows_alone(const float* x, const float* dy, const bn::Shape& s, int threads, const float* shift,
                       std::vector<double>& sums) {
  const bn::KernelTable<float>& kt = bn::active_table<float>();
  const bn::Chunking ch = bn::row_chunking(s);
  const int64_t rows = s.rows();
  const size_t C = size_t(s.c), slice = (2 * C + 7) / 8 * 8 + 8;  // whole lines apart
  sums.assign(size_t(threads) * slice + 8, 0.0);
#pragma omp parallel num_threads(threads)
  {
    const int64_t t = omp_get_thread_num(), T = omp_get_num_threads();
    double* sm = sums.data() + size_t(t) * slice;
    for (int64_t k = ch.count * t / T; k < ch.count * (t + 1) / T; ++k) {
      const int64_t lo = k * ch.runs, cnt = std::min(ch.runs, rows - lo);
      const size_t o = size_t(lo) * C;
      if (dy != nullptr) {
        kt.bwd_reduce_rows(x + o, dy + o, size_t(cnt), C, shift, sm, sm + C);
      } else {
        kt.stats_rows(x + o, size_t(cnt), C, shift, sm, sm + C);
      }
    }
  }
}

struct Set {
  std::vector<float> in;   // x, then dy (2n values)
  std::vector<float> out;  // y or dx (2n values: the 12-byte copy writes 1.5n)
};

struct Row {
  double op, copy, read, span, span_ahead, write, bare, reduce;
  int64_t group;      // channels per group of the span copies (the planner's unless --group)
  const char* path;   // the plan's path where the bare schedule ran, else "-"
  bool pipeline;      // the plan pipelines the training pass
};

// A table cell: v printed with fmt, or "-" where the column does not apply.
std::string cell(bool on, const char* fmt, double v) {
  char b[32];
  if (on) {
    std::snprintf(b, sizeof b, fmt, v);
  } else {
    std::snprintf(b, sizeof b, "-");
  }
  return b;
}

Row probe(const std::string& name, const std::vector<int64_t>& d, const std::string& opname, bool cl, int threads,
          int reps, int64_t group) {
  bn::Shape s;
  s.n = d[0];
  s.c = d[1];
  s.s = 1;
  for (size_t i = 2; i < d.size(); ++i) s.s *= d[i];
  s.channels_last = cl;
  const size_t n = size_t(s.n * s.c * s.s);
  const bool bwd = opname == "backward";
  const int64_t l3 = std::max<int64_t>(bn::cache_sizes().l3_bytes, int64_t(8) << 20);
  // Each measurement takes the next set; the others (at least 4n bytes read each) pass six L3s of
  // data through the caches before a set comes round again.
  const size_t sets = std::max<size_t>(6, size_t(6 * l3) / (n * 4) + 2);
  std::vector<Set> pool(sets);
  for (Set& st : pool) {
    st.in.resize(2 * n);
    st.out.assign(2 * n, 0.0f);
    for (size_t i = 0; i < 2 * n; ++i) st.in[i] = float((i * 2654435761u) % 1000) * 0.001f - 0.3f;
  }
  const size_t C = size_t(s.c);
  std::vector<float> w(C, 1.5f), b(C, 0.25f), sm(C), si(C), rm(C, 0.0f), rv(C, 1.0f), gw(C), gb(C);
  std::vector<double> mean(C, 0.2), invstd(C, 1.1);
  bn::PlanInput in;
  in.shape = s;
  in.threads = threads;
  in.l2_bytes = bn::machine_facts().l2_bytes;
  in.op = bwd ? bn::OpKind::kBackward : opname == "train" ? bn::OpKind::kForwardTraining : bn::OpKind::kForwardInference;
  in.stream_out = int64_t(n * 4) >= bn::machine_facts().stream_min_bytes;
  const int64_t G = group > 0 ? group : std::max<int64_t>(1, bn::plan_op(in).group);
  const bool spans = !cl && !bwd;
  const auto isa = bnbench::best_copy_isa();
  size_t next_set = 0;
  auto take = [&]() -> Set& { return pool[next_set++ % sets]; };
  const bn::Plan plan = bn::plan_op(in);
  const bool bare = !cl && opname != "infer" && s.s * 4 >= bn::kShortRunBytes;
  const bool rows_first = cl && opname != "infer";
  std::vector<double> t_op, t_copy, t_read, t_span, t_ahead, t_write, t_bare, t_reduce, red_sums;
  const std::vector<float> shift(C, 0.125f);
  volatile float keep = 0.0f;
  bn::Status status = bn::Status::kOk;
  for (int r = 0; r < reps + 3; ++r) {
    Set& a = take();
    double t0 = now();
    if (opname == "train") {
      bn::ForwardTrainingArgs<float> f;
      f.shape = s, f.x = a.in.data(), f.y = a.out.data(), f.weight = w.data(), f.bias = b.data();
      f.save_mean = sm.data(), f.save_invstd = si.data(), f.running_mean = rm.data(), f.running_var = rv.data();
      f.num_threads = threads;
      status = bn::forward_training(f);
    } else if (opname == "infer") {
      bn::ForwardInferenceArgs<float> f;
      f.shape = s, f.x = a.in.data(), f.y = a.out.data(), f.weight = w.data(), f.bias = b.data();
      f.mean = rm.data(), f.var = rv.data(), f.num_threads = threads;
      status = bn::forward_inference(f);
    } else {
      bn::BackwardArgs<float> f;
      f.shape = s, f.x = a.in.data(), f.dy = a.in.data() + n, f.dx = a.out.data(), f.weight = w.data();
      f.mean = mean.data(), f.invstd = invstd.data(), f.grad_weight = gw.data(), f.grad_bias = gb.data();
      f.num_threads = threads;
      status = bn::backward(f);
    }
    const double t_op1 = now() - t0;
    if (status != bn::Status::kOk) {
      std::fprintf(stderr, "bn_probe_cold_layer: %s %s: %s\n", name.c_str(), opname.c_str(), bn::status_message(status));
      std::exit(1);
    }
    Set& c = take();
    t0 = now();
    bnbench::bench_copy(c.in.data(), c.out.data(), bwd ? n + n / 2 : n, true, threads, isa);
    const double t_copy1 = now() - t0;
    Set& rd = take();
    t0 = now();
    keep = keep + bnbench::bench_read(rd.in.data(), bwd ? rd.in.data() + n : nullptr, n, threads, isa);
    const double t_read1 = now() - t0;
    Set& wr = take();
    t0 = now();
    write_only(wr.out.data(), n);
    const double t_write1 = now() - t0;
    double t_bare1 = 0.0;
    if (bare) {
      Set& bs = take();
      t0 = now();
      keep = keep + bare_two_pass(bs.in.data(), bs.out.data(), n, bwd ? 2 : 1, s, plan, threads);
      t_bare1 = now() - t0;
    }
    double t_reduce1 = 0.0;
    if (rows_first) {
      Set& rs = take();
      t0 = now();
      reduce_rows_alone(rs.in.data(), bwd ? rs.in.data() + n : nullptr, s, threads, shift.data(), red_sums);
      t_reduce1 = now() - t0;
    }
    double t_span1 = 0.0, t_ahead1 = 0.0;
    for (int mode = 0; spans && mode < 2; ++mode) {
      Set& sp = take();
      t0 = now();
#pragma omp parallel num_threads(threads)
      {
        const int64_t t = omp_get_thread_num(), T = omp_get_num_threads();
        span_copy(sp.in.data(), sp.out.data(), s, s.c * t / T, s.c * (t + 1) / T, G, mode == 1);
      }
      (mode == 0 ? t_span1 : t_ahead1) = now() - t0;
    }
    if (r < 3) continue;  // warm-up: page faults, thread start
    t_op.push_back(t_op1), t_copy.push_back(t_copy1), t_read.push_back(t_read1);
    t_span.push_back(t_span1), t_ahead.push_back(t_ahead1), t_write.push_back(t_write1), t_bare.push_back(t_bare1);
    t_reduce.push_back(t_reduce1);
  }
  return Row{median(t_op),   median(t_copy),  median(t_read), median(t_span),   median(t_ahead),
             median(t_write), median(t_bare),  median(t_reduce), G, bare ? bn::path_name(plan.path) : "-", plan.pipeline};
}

}  // namespace

int main(int argc, char** argv) {
  std::string shapes = "32x256x14x14,32x512x7x7,32x2048x7x7,32x1024x14x14", ops = "train,infer,backward",
              layout = "nchw";
  int threads = 2, reps = 300;
  int64_t group = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--shapes" && i + 1 < argc) {
      shapes = argv[++i];
    } else if (a == "--ops" && i + 1 < argc) {
      ops = argv[++i];
    } else if (a == "--layout" && i + 1 < argc) {
      layout = argv[++i];
    } else if (a == "--threads" && i + 1 < argc) {
      threads = std::max(1, std::atoi(argv[++i]));
    } else if (a == "--reps" && i + 1 < argc) {
      reps = std::max(1, std::atoi(argv[++i]));
    } else if (a == "--group" && i + 1 < argc) {
      group = std::max(0, std::atoi(argv[++i]));
    } else {
      std::fprintf(stderr,
                   "bn_probe_cold_layer [--shapes NxCxHxW,...] [--ops train,infer,backward] [--layout nchw|nhwc]\n"
                   "                    [--threads N] [--reps N] [--group G]\n");
      return 2;
    }
  }
  if (!__builtin_cpu_supports("avx2")) {
    std::fprintf(stderr, "bn_probe_cold_layer: the span copies need AVX2\n");
    return 2;
  }
  const bool cl = layout == "nhwc";
  std::printf("bn_probe_cold_layer: %d threads, %s, median ms over %d calls on cold tensors (L2 %lld KiB, L3 %lld KiB)\n",
              threads, cl ? "channels-last" : "NCHW", reps, (long long)(bn::machine_facts().l2_bytes >> 10),
              (long long)(bn::cache_sizes().l3_bytes >> 10));
  std::printf("%-16s %-9s %5s %8s %8s %8s %8s %8s %8s %8s %8s %8s %8s %9s %11s  %s\n", "shape", "op", "group", "op",
              "copy", "read", "write", "span", "span+pf", "bare", "reduce", "op/copy", "pf/copy", "bare/copy",
              "reduce/read", "bare schedule");
  for (const std::string& sh : bnbench::split(shapes, ',')) {
    const std::vector<int64_t> d = bnbench::parse_dims(sh);
    if (d.size() < 3) {
      std::fprintf(stderr, "bn_probe_cold_layer: '%s' is not an NxCxHxW shape\n", sh.c_str());
      return 2;
    }
    for (const std::string& op : bnbench::split(ops, ',')) {
      if (op != "train" && op != "infer" && op != "backward") {
        std::fprintf(stderr, "bn_probe_cold_layer: unknown op '%s'\n", op.c_str());
        return 2;
      }
      const Row r = probe(sh, d, op, cl, threads, reps, group);
      const bool spans = !cl && op != "backward", bare = r.path[0] != '-', first = cl && op != "infer";
      std::printf("%-16s %-9s %5lld %8.3f %8.3f %8.3f %8.3f %8s %8s %8s %8s %8.2f %8s %9s %11s  %s\n", sh.c_str(),
                  op.c_str(), (long long)(r.group), r.op * 1e3, r.copy * 1e3, r.read * 1e3, r.write * 1e3,
                  cell(spans, "%.3f", r.span * 1e3).c_str(), cell(spans, "%.3f", r.span_ahead * 1e3).c_str(),
                  cell(bare, "%.3f", r.bare * 1e3).c_str(), cell(first, "%.3f", r.reduce * 1e3).c_str(), r.copy / r.op,
                  cell(spans, "%.2f", r.copy / r.span_ahead).c_str(), cell(bare, "%.2f", r.copy / r.bare).c_str(),
                  cell(first, "%.2f", r.reduce / r.read).c_str(),
                  bare ? (std::string(r.path) + (r.pipeline ? ", pipelined" : "")).c_str() : "-");
    }
  }
  return 0;
}
