#include "jobs.h"

#include <cstdint>
#include <string>

#include "args.h"
#include "errors.h"
#include "thread_budget.h"

namespace bnaddon {
namespace {

constexpr const char* kF64Stats = "statistics are float64 whatever the dtype of x";

struct Span {
  uintptr_t begin = 0, end = 0;
};

Span span_of(const ArrayArg& a) {
  const size_t item = a.dtype == DType::kF32 ? 4 : 8;
  const uintptr_t b = reinterpret_cast<uintptr_t>(a.data);
  return {b, b + a.length * item};
}

bool overlap(const ArrayArg& a, const ArrayArg& b) {
  if (!a.present || !b.present || a.length == 0 || b.length == 0) return false;
  const Span x = span_of(a), y = span_of(b);
  return x.begin < y.end && y.begin < x.end;
}

// `out` may be exactly `in` (same first element: in place) but must not partly overlap it.
void check_inplace_or_disjoint(const Args& args, const ArrayArg& out, const char* out_name,
                               const ArrayArg& in, const char* in_name) {
  if (overlap(out, in) && out.data != in.data) {
    throw_range_error(args.env(), "ERR_BN_OVERLAP",
                      std::string(out_name) + " partly overlaps " + in_name +
                          ": it must be the same array (in place) or not share memory with it");
  }
}

void check_disjoint(const Args& args, const ArrayArg& a, const char* an, const ArrayArg& b,
                    const char* bn_) {
  if (overlap(a, b)) {
    throw_range_error(args.env(), "ERR_BN_OVERLAP",
                      std::string(an) + " must not share memory with " + bn_);
  }
}

template <typename T> bn::Status run_core(const bn::ForwardTrainingArgs<T>& a) { return bn::forward_training(a); }
template <typename T> bn::Status run_core(const bn::ForwardInferenceArgs<T>& a) { return bn::forward_inference(a); }
template <typename T> bn::Status run_core(const bn::BackwardArgs<T>& a) { return bn::backward(a); }

// A job is the core's argument struct; the thread count is filled in when it runs.
template <typename CoreArgs>
class CoreJob : public Job {
 public:
  CoreArgs a;
  bn::Status run(int nt) override {
    a.num_threads = nt;
    return run_core(a);
  }
  int threads_wanted(int limit) const override { return bn::useful_threads(a.shape, limit); }
};

template <typename T> using ForwardTrainingJob = CoreJob<bn::ForwardTrainingArgs<T>>;
template <typename T> using ForwardInferenceJob = CoreJob<bn::ForwardInferenceArgs<T>>;
template <typename T> using BackwardJob = CoreJob<bn::BackwardArgs<T>>;

// forwardTraining(x, y, n, c, s, weight, bias, saveMean, saveInvstd, batchMean, batchInvstd,
//                 runningMean, runningVar, eps, momentumFactor, channelsLast?)
template <typename T>
std::unique_ptr<Job> forward_training_job(const Args& args, DType d, const bn::Shape& s) {
  const size_t total = size_t(s.n) * size_t(s.c) * size_t(s.s), C = size_t(s.c);
  const ArrayArg x = args.array_of(0, "x", d, total, false);
  const ArrayArg y = args.array_of(1, "y", d, total, false);
  const ArrayArg w = args.array_of(5, "weight", d, C, true);
  const ArrayArg b = args.array_of(6, "bias", d, C, true);
  const ArrayArg sm = args.array_of(7, "saveMean", d, C, true);
  const ArrayArg si = args.array_of(8, "saveInvstd", d, C, true);
  const ArrayArg bm = args.array_of(9, "batchMean", DType::kF64, C, true, kF64Stats);
  const ArrayArg bi = args.array_of(10, "batchInvstd", DType::kF64, C, true, kF64Stats);
  const ArrayArg rm = args.array_of(11, "runningMean", d, C, true);
  const ArrayArg rv = args.array_of(12, "runningVar", d, C, true);
  const double eps = args.number(13, "eps");
  const double f = args.number(14, "momentumFactor");
  bn::Shape shape = s;
  shape.channels_last = args.optional_boolean(15, "channelsLast", false);
  check_inplace_or_disjoint(args, y, "y", x, "x");
  const ArrayArg* outs[] = {&sm, &si, &bm, &bi, &rm, &rv};
  const char* out_names[] = {"saveMean", "saveInvstd", "batchMean", "batchInvstd", "runningMean", "runningVar"};
  for (int i = 0; i < 6; ++i) {
    check_disjoint(args, *outs[i], out_names[i], x, "x");
    check_disjoint(args, *outs[i], out_names[i], y, "y");
    for (int j = i + 1; j < 6; ++j) check_disjoint(args, *outs[i], out_names[i], *outs[j], out_names[j]);
  }
  auto job = std::make_unique<ForwardTrainingJob<T>>();
  job->name = "forwardTraining";
  job->a.shape = shape;
  job->a.x = x.ptr<T>();
  job->a.y = y.ptr<T>();
  job->a.weight = w.ptr<T>();
  job->a.bias = b.ptr<T>();
  job->a.save_mean = sm.ptr<T>();
  job->a.save_invstd = si.ptr<T>();
  job->a.batch_mean = bm.ptr<double>();
  job->a.batch_invstd = bi.ptr<double>();
  job->a.running_mean = rm.ptr<T>();
  job->a.running_var = rv.ptr<T>();
  job->a.eps = eps;
  job->a.momentum_factor = f;
  for (const ArrayArg* arr : {&x, &y, &w, &b, &sm, &si, &bm, &bi, &rm, &rv}) {
    if (arr->present) job->arrays.push_back(arr->value);
  }
  return job;
}

// forwardInference(x, y, n, c, s, weight, bias, mean, var, eps, channelsLast?)
template <typename T>
std::unique_ptr<Job> forward_inference_job(const Args& args, DType d, const bn::Shape& s) {
  const size_t total = size_t(s.n) * size_t(s.c) * size_t(s.s), C = size_t(s.c);
  const ArrayArg x = args.array_of(0, "x", d, total, false);
  const ArrayArg y = args.array_of(1, "y", d, total, false);
  const ArrayArg w = args.array_of(5, "weight", d, C, true);
  const ArrayArg b = args.array_of(6, "bias", d, C, true);
  const ArrayArg mean = args.array_of(7, "mean", d, C, false);
  const ArrayArg var = args.array_of(8, "var", d, C, false);
  const double eps = args.number(9, "eps");
  bn::Shape shape = s;
  shape.channels_last = args.optional_boolean(10, "channelsLast", false);
  check_inplace_or_disjoint(args, y, "y", x, "x");
  for (const ArrayArg* in : {&w, &b, &mean, &var}) check_disjoint(args, y, "y", *in, "a per-channel input");
  auto job = std::make_unique<ForwardInferenceJob<T>>();
  job->name = "forwardInference";
  job->a.shape = shape;
  job->a.x = x.ptr<T>();
  job->a.y = y.ptr<T>();
  job->a.weight = w.ptr<T>();
  job->a.bias = b.ptr<T>();
  job->a.mean = mean.ptr<T>();
  job->a.var = var.ptr<T>();
  job->a.eps = eps;
  for (const ArrayArg* arr : {&x, &y, &w, &b, &mean, &var}) {
    if (arr->present) job->arrays.push_back(arr->value);
  }
  return job;
}

// backward(x, dy, dx, n, c, s, weight, mean, invstd, gradWeight, gradBias, useBatchStats, accumulate,
//          channelsLast?, runningVar?, eps?)
// Evaluation mode may pass invstd = null with runningVar and eps: the core computes invstd.
template <typename T>
std::unique_ptr<Job> backward_job(const Args& args, DType d, const bn::Shape& s) {
  const size_t total = size_t(s.n) * size_t(s.c) * size_t(s.s), C = size_t(s.c);
  const ArrayArg x = args.array_of(0, "x", d, total, false);
  const ArrayArg dy = args.array_of(1, "dy", d, total, false);
  const ArrayArg dx = args.array_of(2, "dx", d, total, true);
  const ArrayArg w = args.array_of(6, "weight", d, C, true);
  const ArrayArg mean = args.array_of(7, "mean", DType::kF64, C, false, kF64Stats);
  const ArrayArg rv = args.array_of(14, "runningVar", d, C, true);
  const ArrayArg invstd = args.array_of(8, "invstd", DType::kF64, C, rv.present, kF64Stats);
  const double eps = rv.present ? args.number(15, "eps") : 0.0;
  const ArrayArg gw = args.array_of(9, "gradWeight", d, C, true);
  const ArrayArg gb = args.array_of(10, "gradBias", d, C, true);
  const bool use_batch = args.boolean(11, "useBatchStats");
  const bool accumulate = args.boolean(12, "accumulate");
  bn::Shape shape = s;
  shape.channels_last = args.optional_boolean(13, "channelsLast", false);
  check_inplace_or_disjoint(args, dx, "dx", dy, "dy");
  check_inplace_or_disjoint(args, dx, "dx", x, "x");
  for (const ArrayArg* out : {&gw, &gb}) {
    for (const ArrayArg* in : {&x, &dy, &dx, &w, &mean, &invstd}) {  // runningVar: read whole before any write
      check_disjoint(args, *out, "gradWeight/gradBias", *in, "an input or dx");
    }
  }
  check_disjoint(args, gw, "gradWeight", gb, "gradBias");
  auto job = std::make_unique<BackwardJob<T>>();
  job->name = "backward";
  job->a.shape = shape;
  job->a.x = x.ptr<T>();
  job->a.dy = dy.ptr<T>();
  job->a.dx = dx.ptr<T>();
  job->a.weight = w.ptr<T>();
  job->a.mean = mean.ptr<double>();
  job->a.invstd = invstd.ptr<double>();
  job->a.grad_weight = gw.ptr<T>();
  job->a.grad_bias = gb.ptr<T>();
  job->a.running_var = rv.ptr<T>();
  job->a.eps = eps;
  job->a.use_batch_stats = use_batch;
  job->a.accumulate = accumulate;
  for (const ArrayArg* arr : {&x, &dy, &dx, &w, &mean, &invstd, &gw, &gb, &rv}) {
    if (arr->present) job->arrays.push_back(arr->value);
  }
  return job;
}

template <template <typename> class Make>
std::unique_ptr<Job> parse(const Napi::CallbackInfo& info, const char* fn, size_t shape_at) {
  Args args(info, fn);
  const ArrayArg x = args.array(0, "x", false);  // its dtype is the call's dtype
  const bn::Shape s = args.shape(shape_at);
  if (x.dtype == DType::kF32) return Make<float>::make(args, x.dtype, s);
  return Make<double>::make(args, x.dtype, s);
}

template <typename T> struct MakeFT { static std::unique_ptr<Job> make(const Args& a, DType d, const bn::Shape& s) { return forward_training_job<T>(a, d, s); } };
template <typename T> struct MakeFI { static std::unique_ptr<Job> make(const Args& a, DType d, const bn::Shape& s) { return forward_inference_job<T>(a, d, s); } };
template <typename T> struct MakeBW { static std::unique_ptr<Job> make(const Args& a, DType d, const bn::Shape& s) { return backward_job<T>(a, d, s); } };

}  // namespace

std::unique_ptr<Job> parse_forward_training(const Napi::CallbackInfo& info) {
  return parse<MakeFT>(info, "forwardTraining", 2);
}
std::unique_ptr<Job> parse_forward_inference(const Napi::CallbackInfo& info) {
  return parse<MakeFI>(info, "forwardInference", 2);
}
std::unique_ptr<Job> parse_backward(const Napi::CallbackInfo& info) {
  return parse<MakeBW>(info, "backward", 3);
}

bn::Status run_with_budget(Job& job) {
  ThreadLease lease(job.threads_wanted(thread_limit()));
  return job.run(lease.count());
}

}  // namespace bnaddon
