#include "sync_calls.h"

#include <cmath>
#include <string>

#include "call_object.h"
#include "errors.h"
#include "sync_ops.h"  // the core's

namespace bnaddon {
namespace {

template <typename T> bn::Status run_core(const bn::SyncMomentsArgs<T>& a) { return bn::sync_moments(a); }
template <typename T> bn::Status run_core(const bn::SyncNormalizeArgs<T>& a) { return bn::sync_normalize(a); }
template <typename T> bn::Status run_core(const bn::SyncBackwardReduceArgs<T>& a) { return bn::sync_backward_reduce(a); }
template <typename T> bn::Status run_core(const bn::SyncBackwardDxArgs<T>& a) { return bn::sync_backward_dx(a); }

template <typename CoreArgs>
class SyncJob : public Job {
 public:
  CoreArgs a;
  bn::Status run(int nt) override {
    a.num_threads = nt;
    return run_core(a);
  }
  int threads_wanted(int limit) const override { return a.shape.n == 0 ? 1 : bn::useful_threads(a.shape, limit); }
};

bool overlaps(const ArrayArg& a, const ArrayArg& b) {
  if (!a.present || !b.present || a.length == 0 || b.length == 0) return false;
  const uintptr_t a0 = reinterpret_cast<uintptr_t>(a.data), b0 = reinterpret_cast<uintptr_t>(b.data);
  return a0 < b0 + b.length * dtype_bytes(b.dtype) && b0 < a0 + a.length * dtype_bytes(a.dtype);
}

// Every output disjoint from every other array of the call, except `out` exactly over `inplace`.
void check_aliasing(const CallObject& call, std::initializer_list<const ArrayArg*> outs,
                    std::initializer_list<const ArrayArg*> all, const ArrayArg* inplace) {
  for (const ArrayArg* o : outs) {
    for (const ArrayArg* i : all) {
      if (o == i || !overlaps(*o, *i)) continue;
      if (i == inplace && std::string(o->name) == "out" && o->data == i->data && o->length == i->length) continue;
      throw_error(call.env(), ErrorKind::kRange, "ERR_BN_OVERLAP",
                  call.fn() + ": " + o->name + " must not share memory with " + i->name);
    }
  }
}

void keep(Job& job, std::initializer_list<const ArrayArg*> arrays) {
  for (const ArrayArg* arr : arrays) {
    if (arr->present) job.arrays.emplace_back(arr->name, arr->value);
  }
}

size_t total_of(const bn::Shape& s) { return size_t(s.n) * size_t(s.c) * size_t(s.s); }

template <typename T>
std::unique_ptr<Job> moments_job(const CallObject& call, const ArrayArg& x, DType d, const bn::Shape& s) {
  call.check(x, d, total_of(s));
  const ArrayArg mean = call.array_of("mean", DType::kF64, size_t(s.c), false);
  const ArrayArg var = call.array_of("variance", DType::kF64, size_t(s.c), false);
  check_aliasing(call, {&mean, &var}, {&x, &mean, &var}, nullptr);
  auto job = std::make_unique<SyncJob<bn::SyncMomentsArgs<T>>>();
  job->a.shape = s;
  job->a.x = x.ptr<T>();
  job->a.mean = mean.ptr<double>();
  job->a.var = var.ptr<double>();
  keep(*job, {&x, &mean, &var});
  return job;
}

template <typename T>
std::unique_ptr<Job> normalize_job(const CallObject& call, const ArrayArg& x, DType d, const bn::Shape& s) {
  const size_t C = size_t(s.c);
  call.check(x, d, total_of(s));
  const ArrayArg y = call.array_of("out", d, total_of(s), false);
  const ArrayArg w = call.array_of("weight", d, C, true);
  const ArrayArg b = call.array_of("bias", d, C, true);
  const ArrayArg mean = call.array_of("mean", DType::kF64, C, false);
  const ArrayArg var = call.array_of("variance", DType::kF64, C, false);
  const ArrayArg invstd = call.array_of("invstd", DType::kF64, C, false);
  check_aliasing(call, {&y, &invstd}, {&x, &w, &b, &mean, &var, &invstd, &y}, &x);
  auto job = std::make_unique<SyncJob<bn::SyncNormalizeArgs<T>>>();
  job->a.shape = s;
  job->a.x = x.ptr<T>();
  job->a.y = y.ptr<T>();
  job->a.weight = w.ptr<T>();
  job->a.bias = b.ptr<T>();
  job->a.mean = mean.ptr<double>();
  job->a.var = var.ptr<double>();
  job->a.eps = call.number("eps");
  job->a.invstd = invstd.ptr<double>();
  keep(*job, {&x, &y, &w, &b, &mean, &var, &invstd});
  return job;
}

template <typename T>
std::unique_ptr<Job> backward_reduce_job(const CallObject& call, const ArrayArg& x, DType d, const bn::Shape& s) {
  const size_t C = size_t(s.c);
  call.check(x, d, total_of(s));
  const ArrayArg dy = call.array_of("dy", d, total_of(s), false);
  const ArrayArg mean = call.array_of("mean", DType::kF64, C, false);
  const ArrayArg g = call.array_of("sumDy", DType::kF64, C, false);
  const ArrayArg p = call.array_of("sumDyXmu", DType::kF64, C, false);
  check_aliasing(call, {&g, &p}, {&x, &dy, &mean, &g, &p}, nullptr);
  auto job = std::make_unique<SyncJob<bn::SyncBackwardReduceArgs<T>>>();
  job->a.shape = s;
  job->a.x = x.ptr<T>();
  job->a.dy = dy.ptr<T>();
  job->a.mean = mean.ptr<double>();
  job->a.sum_dy = g.ptr<double>();
  job->a.sum_dy_xmu = p.ptr<double>();
  keep(*job, {&x, &dy, &mean, &g, &p});
  return job;
}

template <typename T>
std::unique_ptr<Job> backward_dx_job(const CallObject& call, const ArrayArg& x, DType d, const bn::Shape& s) {
  const size_t C = size_t(s.c);
  call.check(x, d, total_of(s));
  const ArrayArg dy = call.array_of("dy", d, total_of(s), false);
  const ArrayArg dx = call.array_of("out", d, total_of(s), false);
  const ArrayArg w = call.array_of("weight", d, C, true);
  const ArrayArg mean = call.array_of("mean", DType::kF64, C, false);
  const ArrayArg invstd = call.array_of("invstd", DType::kF64, C, false);
  const ArrayArg g = call.array_of("sumDy", DType::kF64, C, false);
  const ArrayArg p = call.array_of("sumDyXmu", DType::kF64, C, false);
  check_aliasing(call, {&dx}, {&x, &dy, &w, &mean, &invstd, &g, &p}, &dy);
  auto job = std::make_unique<SyncJob<bn::SyncBackwardDxArgs<T>>>();
  job->a.shape = s;
  job->a.x = x.ptr<T>();
  job->a.dy = dy.ptr<T>();
  job->a.dx = dx.ptr<T>();
  job->a.weight = w.ptr<T>();
  job->a.mean = mean.ptr<double>();
  job->a.invstd = invstd.ptr<double>();
  job->a.sum_dy = g.ptr<double>();
  job->a.sum_dy_xmu = p.ptr<double>();
  job->a.count = call.number("count");
  keep(*job, {&x, &dy, &dx, &w, &mean, &invstd, &g, &p});
  return job;
}

// n, c, s and channelsLast; unlike the other ops, n may be 0 (a rank without samples takes part).
bn::Shape sync_shape(const CallObject& call) {
  const double n = call.number("n");
  if (!(n >= 0.0 && n <= 9007199254740991.0 && std::floor(n) == n)) {
    throw_error(call.env(), ErrorKind::kRange, "ERR_BN_BAD_SHAPE", call.fn() + ": n must be an integer >= 0");
  }
  bn::Shape s;
  s.n = int64_t(n);
  s.c = int64_t(call.number("c"));
  s.s = int64_t(call.number("s"));
  s.channels_last = call.boolean("channelsLast");
  bn::Shape one = s;
  if (one.n == 0) one.n = 1;
  if (double(s.c) != call.number("c") || double(s.s) != call.number("s") || bn::validate_shape(one) != bn::Status::kOk) {
    throw_error(call.env(), ErrorKind::kRange, "ERR_BN_BAD_SHAPE", call.fn() + ": c and s must be integers >= 1 and n * c * s not too large");
  }
  return s;
}

template <template <typename> class Make>
std::unique_ptr<Job> parse(const Napi::CallbackInfo& info, const char* op, std::initializer_list<const char*> known) {
  const CallObject call(info, op, known);
  const bn::Shape s = sync_shape(call);
  const ArrayArg x = call.array("x", false);
  std::unique_ptr<Job> job;
  switch (x.dtype) {
    case DType::kF32: job = Make<float>::make(call, x, x.dtype, s); break;
    case DType::kF64: job = Make<double>::make(call, x, x.dtype, s); break;
    case DType::kBF16:
    case DType::kF16:  // unreachable: the sync ops' calls have no dtype key, so no Uint16Array is read
      throw_error(call.env(), ErrorKind::kType, "ERR_BN_DTYPE_MISMATCH", call.fn() + ": synchronized batch norm takes float32 or float64");
  }
  job->fn = call.fn();
  return job;
}

template <typename T> struct MakeMoments { static std::unique_ptr<Job> make(const CallObject& c, const ArrayArg& x, DType d, const bn::Shape& s) { return moments_job<T>(c, x, d, s); } };
template <typename T> struct MakeNormalize { static std::unique_ptr<Job> make(const CallObject& c, const ArrayArg& x, DType d, const bn::Shape& s) { return normalize_job<T>(c, x, d, s); } };
template <typename T> struct MakeBwdReduce { static std::unique_ptr<Job> make(const CallObject& c, const ArrayArg& x, DType d, const bn::Shape& s) { return backward_reduce_job<T>(c, x, d, s); } };
template <typename T> struct MakeBwdDx { static std::unique_ptr<Job> make(const CallObject& c, const ArrayArg& x, DType d, const bn::Shape& s) { return backward_dx_job<T>(c, x, d, s); } };

#define BN_SYNC_CALL_BASE "x", "n", "c", "s", "channelsLast"

}  // namespace

std::unique_ptr<Job> parse_sync_moments(const Napi::CallbackInfo& info) {
  return parse<MakeMoments>(info, "syncMoments", {BN_SYNC_CALL_BASE, "mean", "variance"});
}
std::unique_ptr<Job> parse_sync_normalize(const Napi::CallbackInfo& info) {
  return parse<MakeNormalize>(info, "syncNormalize", {BN_SYNC_CALL_BASE, "out", "weight", "bias", "mean", "variance", "eps", "invstd"});
}
std::unique_ptr<Job> parse_sync_backward_reduce(const Napi::CallbackInfo& info) {
  return parse<MakeBwdReduce>(info, "syncBackwardReduce", {BN_SYNC_CALL_BASE, "dy", "mean", "sumDy", "sumDyXmu"});
}
std::unique_ptr<Job> parse_sync_backward_dx(const Napi::CallbackInfo& info) {
  return parse<MakeBwdDx>(info, "syncBackwardDx", {BN_SYNC_CALL_BASE, "dy", "out", "weight", "mean", "invstd", "sumDy", "sumDyXmu", "count"});
}

}  // namespace bnaddon
