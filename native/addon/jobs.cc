#include "jobs.h"

#include <cstdint>
#include <string>

#include "call_object.h"
#include "errors.h"
#include "thread_budget.h"

namespace bnaddon {
namespace {

bool overlap(const ArrayArg& a, const ArrayArg& b) {
  if (!a.present || !b.present || a.length == 0 || b.length == 0) return false;
  const uintptr_t a0 = reinterpret_cast<uintptr_t>(a.data), b0 = reinterpret_cast<uintptr_t>(b.data);
  const uintptr_t a1 = a0 + a.length * dtype_bytes(a.dtype), b1 = b0 + b.length * dtype_bytes(b.dtype);
  return a0 < b1 && b0 < a1;
}

// `out` may be exactly `in` (in place) but must not partly overlap it.
void check_inplace_or_disjoint(const CallObject& call, const ArrayArg& out, const ArrayArg& in) {
  if (overlap(out, in) && (out.data != in.data || out.length != in.length)) {
    throw_error(call.env(), ErrorKind::kRange, "ERR_BN_OVERLAP",
                call.fn() + ": " + out.name + " partly overlaps " + in.name +
                    ": it must be the same array (in place) or not share memory with it");
  }
}

void check_disjoint(const CallObject& call, const ArrayArg& a, const ArrayArg& b) {
  if (overlap(a, b)) {
    throw_error(call.env(), ErrorKind::kRange, "ERR_BN_OVERLAP", call.fn() + ": " + a.name + " must not share memory with " + b.name);
  }
}

// Every pair of `outs` disjoint, and each of them disjoint from every one of `ins`.
void check_outputs_disjoint(const CallObject& call, std::initializer_list<const ArrayArg*> outs,
                            std::initializer_list<const ArrayArg*> ins) {
  for (auto o = outs.begin(); o != outs.end(); ++o) {
    for (const ArrayArg* i : ins) check_disjoint(call, **o, *i);
    for (auto p = o + 1; p != outs.end(); ++p) check_disjoint(call, **o, **p);
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

void keep(Job& job, std::initializer_list<const ArrayArg*> arrays) {
  for (const ArrayArg* arr : arrays) {
    if (arr->present) job.arrays.emplace_back(arr->name, arr->value);
  }
}

template <typename T>
std::unique_ptr<Job> forward_training_job(const CallObject& call, const ArrayArg& x, DType d, const bn::Shape& s) {
  const size_t total = size_t(s.n) * size_t(s.c) * size_t(s.s), C = size_t(s.c);
  call.check(x, d, total);
  const DType p = param_dtype(d);
  const ArrayArg y = call.array_of("out", d, total, false);
  const ArrayArg w = call.array_of("weight", p, C, true);
  const ArrayArg b = call.array_of("bias", p, C, true);
  const ArrayArg sm = call.array_of("saveMean", p, C, false);
  const ArrayArg si = call.array_of("saveInvstd", p, C, false);
  const ArrayArg bm = call.array_of("batchMean", DType::kF64, C, false);
  const ArrayArg bi = call.array_of("batchInvstd", DType::kF64, C, false);
  const ArrayArg rm = call.array_of("runningMean", p, C, true);
  const ArrayArg rv = call.array_of("runningVar", p, C, true);
  check_inplace_or_disjoint(call, y, x);
  check_outputs_disjoint(call, {&sm, &si, &bm, &bi, &rm, &rv}, {&x, &y, &w, &b});
  check_outputs_disjoint(call, {&y}, {&w, &b});
  auto job = std::make_unique<CoreJob<bn::ForwardTrainingArgs<T>>>();
  bn::ForwardTrainingArgs<T>& a = job->a;
  a.shape = s;
  a.x = x.ptr<T>();
  a.y = y.ptr<T>();
  a.weight = w.ptr<bn::param_t<T>>();
  a.bias = b.ptr<bn::param_t<T>>();
  a.save_mean = sm.ptr<bn::param_t<T>>();
  a.save_invstd = si.ptr<bn::param_t<T>>();
  a.batch_mean = bm.ptr<double>();
  a.batch_invstd = bi.ptr<double>();
  a.running_mean = rm.ptr<bn::param_t<T>>();
  a.running_var = rv.ptr<bn::param_t<T>>();
  a.eps = call.number("eps");
  a.momentum_factor = call.number("momentum");
  keep(*job, {&x, &y, &w, &b, &sm, &si, &bm, &bi, &rm, &rv});
  return job;
}

template <typename T>
std::unique_ptr<Job> forward_inference_job(const CallObject& call, const ArrayArg& x, DType d, const bn::Shape& s) {
  const size_t total = size_t(s.n) * size_t(s.c) * size_t(s.s), C = size_t(s.c);
  call.check(x, d, total);
  const DType p = param_dtype(d);
  const ArrayArg y = call.array_of("out", d, total, false);
  const ArrayArg w = call.array_of("weight", p, C, true);
  const ArrayArg b = call.array_of("bias", p, C, true);
  const ArrayArg mean = call.array_of("runningMean", p, C, false);
  const ArrayArg var = call.array_of("runningVar", p, C, false);
  check_inplace_or_disjoint(call, y, x);
  check_outputs_disjoint(call, {&y}, {&w, &b, &mean, &var});
  auto job = std::make_unique<CoreJob<bn::ForwardInferenceArgs<T>>>();
  bn::ForwardInferenceArgs<T>& a = job->a;
  a.shape = s;
  a.x = x.ptr<T>();
  a.y = y.ptr<T>();
  a.weight = w.ptr<bn::param_t<T>>();
  a.bias = b.ptr<bn::param_t<T>>();
  a.mean = mean.ptr<bn::param_t<T>>();
  a.var = var.ptr<bn::param_t<T>>();
  a.eps = call.number("eps");
  keep(*job, {&x, &y, &w, &b, &mean, &var});
  return job;
}

template <typename T>
std::unique_ptr<Job> backward_job(const CallObject& call, const ArrayArg& x, DType d, const bn::Shape& s) {
  const size_t total = size_t(s.n) * size_t(s.c) * size_t(s.s), C = size_t(s.c);
  const bool training = call.boolean("training");
  call.check(x, d, total);
  const ArrayArg dy = call.array_of("dy", d, total, false);
  const ArrayArg dx = call.array_of("out", d, total, true);
  const DType p = param_dtype(d);
  const ArrayArg w = call.array_of("weight", p, C, true);
  const ArrayArg mean = call.array_of("mean", DType::kF64, C, false);
  const ArrayArg invstd = call.array_of("invstd", DType::kF64, C, !training);
  const ArrayArg var = call.array_of("runningVar", p, C, training);
  const ArrayArg gw = call.array_of("gradWeight", p, C, true);
  const ArrayArg gb = call.array_of("gradBias", p, C, true);
  const double eps = call.number("eps");
  check_inplace_or_disjoint(call, dx, dy);
  check_outputs_disjoint(call, {&dx}, {&x});
  check_outputs_disjoint(call, {&gw, &gb}, {&x, &dy, &dx, &w, &mean, &invstd});  // runningVar is read whole first
  auto job = std::make_unique<CoreJob<bn::BackwardArgs<T>>>();
  bn::BackwardArgs<T>& a = job->a;
  a.shape = s;
  a.x = x.ptr<T>();
  a.dy = dy.ptr<T>();
  a.dx = dx.ptr<T>();
  a.weight = w.ptr<bn::param_t<T>>();
  a.mean = mean.ptr<double>();
  a.invstd = invstd.ptr<double>();  // training; evaluation: the core's invstd from runningVar and eps
  a.running_var = var.ptr<bn::param_t<T>>();
  a.eps = eps;
  a.grad_weight = gw.ptr<bn::param_t<T>>();
  a.grad_bias = gb.ptr<bn::param_t<T>>();
  a.use_batch_stats = training;
  a.accumulate = call.boolean("accumulate");
  keep(*job, {&x, &dy, &dx, &w, &mean, &invstd, &var, &gw, &gb});
  return job;
}

// x's dtype is the call's: one instantiation per storage dtype, chosen exhaustively.
template <template <typename> class Make>
std::unique_ptr<Job> parse(const Napi::CallbackInfo& info, const char* op, std::initializer_list<const char*> known) {
  const CallObject call(info, op, known);
  const bn::Shape s = call.shape();
  const ArrayArg x = call.array("x", false);
  DType half = DType::kBF16;
  if (call.half(&half) && x.dtype != half) {  // a dtype key names the storage of x, y, dy and dx
    throw_error(call.env(), ErrorKind::kType, "ERR_BN_DTYPE_MISMATCH",
                call.fn() + ": x must be a " + dtype_array_name(half) + " (the call's dtype), received a " + dtype_array_name(x.dtype));
  }
  std::unique_ptr<Job> job;
  switch (x.dtype) {
    case DType::kF32: job = Make<float>::make(call, x, x.dtype, s); break;
    case DType::kF64: job = Make<double>::make(call, x, x.dtype, s); break;
    case DType::kBF16: job = Make<bn::bf16>::make(call, x, x.dtype, s); break;
    case DType::kF16: job = Make<bn::f16>::make(call, x, x.dtype, s); break;
  }
  job->fn = call.fn();
  return job;
}

template <typename T> struct MakeFT { static std::unique_ptr<Job> make(const CallObject& c, const ArrayArg& x, DType d, const bn::Shape& s) { return forward_training_job<T>(c, x, d, s); } };
template <typename T> struct MakeFI { static std::unique_ptr<Job> make(const CallObject& c, const ArrayArg& x, DType d, const bn::Shape& s) { return forward_inference_job<T>(c, x, d, s); } };
template <typename T> struct MakeBW { static std::unique_ptr<Job> make(const CallObject& c, const ArrayArg& x, DType d, const bn::Shape& s) { return backward_job<T>(c, x, d, s); } };

#define BN_CALL_BASE "x", "n", "c", "s", "channelsLast", "dtype"

}  // namespace

std::unique_ptr<Job> parse_forward_training(const Napi::CallbackInfo& info) {
  return parse<MakeFT>(info, "forwardTraining", {BN_CALL_BASE, "out", "weight", "bias", "saveMean", "saveInvstd", "batchMean", "batchInvstd",
                              "runningMean", "runningVar", "eps", "momentum"});
}
std::unique_ptr<Job> parse_forward_inference(const Napi::CallbackInfo& info) {
  return parse<MakeFI>(info, "forwardInference", {BN_CALL_BASE, "out", "weight", "bias", "runningMean", "runningVar", "eps"});
}
std::unique_ptr<Job> parse_backward(const Napi::CallbackInfo& info) {
  return parse<MakeBW>(info, "backward", {BN_CALL_BASE, "dy", "out", "weight", "training", "mean", "invstd", "runningVar", "eps",
                              "gradWeight", "gradBias", "accumulate"});
}

bn::Status run_with_budget(Job& job) {
  ThreadLease lease(job.threads_wanted(thread_limit()));
  return job.run(lease.count());
}

}  // namespace bnaddon
