// Forward, training mode: batch statistics (first pass), then normalize (second pass), with the
// running statistics updated in between. The walk is the schedule's (schedule.h), the geometry
// the planner's (plan.h), the loops the active ISA's kernels (kernels.h).
#include <algorithm>
#include <new>
#include <type_traits>
#include <vector>

#include "batchnorm.h"
#include "coefficients.h"
#include "exact_stats.h"
#include "invstd.h"
#include "kernels.h"
#include "machine.h"
#include "memory.h"
#include "plan.h"
#include "schedule.h"
#include "validate.h"

namespace bn {
namespace {

// How far ahead of the group writes kAddRelu's residual is requested (bench/RESULTS.md, "Fused
// activation").
constexpr size_t kResidualAheadBytes = 16384;

// What both layouts share: the shifts, the partial sums, and finishing a channel.
template <typename T>
struct TrainingStats {
  using C = compute_t<T>;
  static_assert(std::is_same<C, param_t<T>>::value, "parameters and statistics are kept in the compute type");
  const ForwardTrainingArgs<T>& a;
  const KernelTable<T>& k;
  const ElementwiseKernels<T>& w;
  std::vector<C> shift;  // k per channel
  PartialSums sums;      // of x - k, and (x - k)²
  Affine<T> affine;
  // zeroed: whether the partial sums start at 0 (the rows schedule zeroes each chunk's itself).
  TrainingStats(const ForwardTrainingArgs<T>& args, bool zeroed)
      : a(args), k(active_table<T>()), w(k.writers(args.epilogue)), shift(size_t(args.shape.c)),
        sums(args.shape.c, reduction_chunks(args.shape), zeroed), affine(args.shape.c) {}

  // The epilogue's operand at offset off (null when it takes none).
  const T* res(int64_t off) const { return a.residual ? a.residual + off : nullptr; }

  // Channel c's statistics: save_* / batch_* outputs, running statistics, and the affine.
  void finish(int64_t c) {
    const double m = double(a.shape.n) * double(a.shape.s);
    const ChannelMoments mo = channel_moments(sums, c, double(shift[c]), m);
    double mean = mo.mean, var = mo.var;
    C center = C(mean);
    if (forward_needs_exact<C>(mo.sum, mo.sumsq)) {  // sums in T overflowed (at some level), or inf / NaN in x
      const ExactMoments ex = exact_moments(a.shape, a.x, c);
      mean = ex.mean;
      var = ex.var;
      center = safe_center<C>(mean, ex.min, ex.max);
    }
    const double invstd = invstd_of<C>(var, a.eps);
    if (a.save_mean) a.save_mean[c] = C(mean);
    if (a.save_invstd) a.save_invstd[c] = C(invstd);
    if (a.batch_mean) a.batch_mean[c] = mean;
    if (a.batch_invstd) a.batch_invstd[c] = invstd;
    if (a.running_mean) update_running(a.running_mean, a.running_var, c, a.momentum_factor, mean, var, m);
    const double wt = a.weight ? double(a.weight[c]) : 1.0;
    const double b = a.bias ? double(a.bias[c]) : 0.0;
    affine.set(c, mean, wt * invstd, b, center);
  }
};

// Rows layout: stages of run_rows_two_pass.
template <typename T>
struct TrainingRowsStages : TrainingStats<T> {
  const bool stream;
  TrainingRowsStages(const ForwardTrainingArgs<T>& args, const Plan& plan)
      : TrainingStats<T>(args, false), stream(plan.stream) {}
  void reduce_rows(int64_t lo, int64_t rows, double* s0, double* s1) {
    const int64_t C = this->a.shape.c;
    this->k.stats_rows(this->a.x + lo * C, size_t(rows), size_t(C), this->shift.data(), s0, s1);
  }
  bool writes() const { return true; }
  void write_rows(int64_t lo, int64_t rows) {
    const int64_t C = this->a.shape.c;
    const Affine<T>& af = this->affine;
    this->w.affine_rows(this->a.x + lo * C, this->a.y + lo * C, this->res(lo * C), size_t(rows), size_t(C), af.c.data(),
                        af.a.data(), af.b.data(), stream);
  }
};

// NCHW: stages of run_two_pass.
template <typename T>
struct TrainingChannelStages : TrainingStats<T> {
  const Plan& pt;
  const size_t stride;
  const bool fresh_out;  // y is none of the inputs
  TrainingChannelStages(const ForwardTrainingArgs<T>& args, const Plan& plan, bool in_place)
      : TrainingStats<T>(args, true), pt(plan), stride(size_t(args.shape.c * args.shape.s)), fresh_out(!in_place) {}

  void start(int64_t c) { this->shift[c] = channel_shift(this->a.shape, this->a.x, c); }
  void reduce(int64_t c, int64_t slot, int64_t off, int64_t rows, int64_t n) {
    if (pt.group_sums) {  // the group kernel one run wide: the sums a group of channels gets
      this->k.stats_group(this->a.x + off, size_t(rows), stride, 1, size_t(n), &this->shift[c], &this->sums.first[slot],
                          &this->sums.second[slot]);
      return;
    }
    this->k.stats_run(this->a.x + off, size_t(rows), size_t(n), chunk_stride(this->a.shape, off, rows, n), this->shift[c],
                      &this->sums.first[slot], &this->sums.second[slot]);
  }
  void reduce_group(int64_t c0, int64_t G, int64_t off, int64_t rows, int64_t slot, bool cold) {
    const Shape& s = this->a.shape;
    if (cold) prefetch_group(s, this->a.x + off, G);
    this->k.stats_group(this->a.x + off, size_t(rows), stride, size_t(G), size_t(s.s), &this->shift[c0],
                        &this->sums.first[slot], &this->sums.second[slot]);
  }
  void write(int64_t c, int64_t off, int64_t rows, int64_t n, size_t next) {
    const Affine<T>& af = this->affine;
    this->w.affine_run(this->a.x + off, this->a.y + off, this->res(off), size_t(rows), size_t(n), stride, af.c[c], af.a[c],
                       af.b[c], pt.stream, next);
  }
  void write_group(int64_t c0, int64_t G, int64_t off, size_t next) {
    const Affine<T>& af = this->affine;
    // kAddRelu: the residual is read only here, one sample's span of G runs at a time, C * S apart;
    // the span `ahead` samples on is requested now (all of them up to it for the first sample), so
    // that enough of its lines are in flight while this span is written.
    const Shape& s = this->a.shape;
    if (this->a.residual != nullptr) {
      const int64_t step = s.c * s.s, span = G * s.s, total = s.n * step;
      const int64_t ahead = std::max<int64_t>(1, int64_t(kResidualAheadBytes / sizeof(T)) / span);
      for (int64_t k = off < step ? 1 : ahead; k <= ahead && off + k * step < total; ++k) {
        prefetch_span(this->a.residual + off + k * step, size_t(span));
      }
    }
    this->w.affine_group(this->a.x + off, this->a.y + off, this->res(off), size_t(G), size_t(s.s), &af.c[c0], &af.a[c0],
                         &af.b[c0], pt.stream_spans, next, group_out_next(s, pt, fresh_out, off));
  }
  void write_and_reduce(int64_t c, int64_t off, int64_t rows, int64_t n, size_t next, int64_t cn, int64_t slot) {
    const Affine<T>& af = this->affine;
    this->w.affine_stats_run(this->a.x + off, this->a.y + off, this->res(off), size_t(rows), size_t(n),
                             chunk_stride(this->a.shape, off, rows, n), af.c[c], af.a[c], af.b[c], pt.stream, next,
                             this->shift[cn], &this->sums.first[slot], &this->sums.second[slot]);
  }
};

template <typename T>
void run(const ForwardTrainingArgs<T>& a) {
  const Shape& s = a.shape;
  const bool in_place = a.y == a.x || a.y == a.residual;
  const Plan pt = plan_op(plan_input(s, a.num_threads, OpKind::kForwardTraining, a.y, in_place));
  if (pt.path == Path::kRows) {
    TrainingRowsStages<T> st(a, pt);
    rows_shifts(s, a.x, st.shift.data());
    run_rows_two_pass(s, pt, st);
  } else {
    TrainingChannelStages<T> st(a, pt, in_place);
    run_two_pass(s, pt, st);
  }
}

}  // namespace

template <typename T>
Status forward_training(const ForwardTrainingArgs<T>& args) {
  if (Status st = check_args(args); st != Status::kOk) return st;
  ForwardTrainingArgs<T> a = args;
  a.shape = canonical_shape(args.shape);
  try {
    run(a);
  } catch (const std::bad_alloc&) {
    return Status::kOutOfMemory;
  }
  return Status::kOk;
}

template Status forward_training<float>(const ForwardTrainingArgs<float>&);
template Status forward_training<double>(const ForwardTrainingArgs<double>&);
template Status forward_training<bf16>(const ForwardTrainingArgs<bf16>&);
template Status forward_training<f16>(const ForwardTrainingArgs<f16>&);

}  // namespace bn
