// Backward: reductions of dy and dy * (x - mean) (first pass), the weight and bias gradients, then
// dx (second pass). The walk is the schedule's (schedule.h), the geometry the planner's (plan.h).
// dx may alias dy or x: each channel is fully reduced before its dx is written. Evaluation mode
// writes dx = dy * k1 through the affine writers, without reading x (an infinite x would give
// 0 * inf = NaN in the dx formula). Through a fused ReLU (args.epilogue), the masked kernels take
// the forward's y as the prologue of both passes, and the dx pass writes residual_grad.
#include <new>
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

template <typename T>
struct BackwardSums {
  const BackwardArgs<T>& a;
  const KernelTable<T>& k;
  const ElementwiseKernels<T>& w;  // kNone: a forward epilogue is undone on dy, before these sums
  const MaskedBackwardKernels<T>& mk;  // that undoing: the kernels with the ReLU's prologue
  const bool masked;                   // the forward ended with a ReLU: dy is gated by a.y
  PartialSums sums;                 // Σ dy, Σ dy * (x - c)
  DxCoefs<T> dxc;
  // zeroed: as in TrainingStats (the rows schedule zeroes each chunk's partial sums itself).
  BackwardSums(const BackwardArgs<T>& args, bool zeroed)
      : a(args), k(active_table<T>()), w(k.writers(Epilogue::kNone)), mk(k.relu_bwd),
        masked(args.epilogue != Epilogue::kNone), sums(args.shape.c, reduction_chunks(args.shape), zeroed),
        dxc(args.shape.c) {
    for (int64_t c = 0; c < args.shape.c; ++c) dxc.c[c] = compute_t<T>(args.mean[c]);
  }

  // residual_grad at offset off (null: not wanted).
  T* dres(int64_t off) const { return a.residual_grad ? a.residual_grad + off : nullptr; }

  // Channel ch's gradients (written or accumulated) and dx coefficients.
  void finish(int64_t ch) {
    double g, p;
    sums.fold(ch, &g, &p);
    const double mean = a.mean[ch], invstd = a.invstd[ch];
    double dweight;  // Σ dy * (x - mean) * invstd
    if (!backward_needs_exact<compute_t<T>>(g, p, invstd)) {
      dweight = invstd * (p - (mean - double(dxc.c[ch])) * g);
    } else {  // sums in T overflowed, or inf / NaN in x or dy
      const ExactBackwardSums ex = exact_backward_sums(a.shape, a.x, a.dy, ch, mean, masked ? a.y : nullptr);
      g = ex.sum_dy;
      // invstd = 0 (var + eps == 0, or a float64 variance beyond float64): xhat = 0, so dweight = 0
      // even where dy * (x - mean) overflows.
      dweight = invstd == 0.0 ? 0.0 : invstd * ex.sum_dy_xmu;
      dxc.c[ch] = safe_center<compute_t<T>>(mean, ex.min, ex.max);
    }
    const double dbias = g;
    if (a.grad_bias) a.grad_bias[ch] = compute_t<T>(a.accumulate ? double(a.grad_bias[ch]) + dbias : dbias);
    if (a.grad_weight) a.grad_weight[ch] = compute_t<T>(a.accumulate ? double(a.grad_weight[ch]) + dweight : dweight);
    const double m = double(a.shape.n) * double(a.shape.s);
    const double wt = a.weight ? double(a.weight[ch]) : 1.0;
    const DxChannel r = dx_coefficients(dbias, dweight, mean - double(dxc.c[ch]), invstd, wt, a.use_batch_stats, m);
    dxc.k1[ch] = saturate_to<compute_t<T>>(r.k1);
    dxc.k2[ch] = saturate_to<compute_t<T>>(r.k2);
    dxc.k3[ch] = saturate_to<compute_t<T>>(r.k3);
  }
};

// Rows layout: stages of run_rows_two_pass.
template <typename T>
struct BackwardRowsStages : BackwardSums<T> {
  const bool stream;
  BackwardRowsStages(const BackwardArgs<T>& args, const Plan& plan) : BackwardSums<T>(args, false), stream(plan.stream) {}
  void reduce_rows(int64_t lo, int64_t rows, double* s0, double* s1) {
    const int64_t C = this->a.shape.c;
    if (this->masked) {
      this->mk.bwd_reduce_rows(this->a.x + lo * C, this->a.dy + lo * C, this->a.y + lo * C, size_t(rows), size_t(C),
                               this->dxc.c.data(), s0, s1);
      return;
    }
    this->k.bwd_reduce_rows(this->a.x + lo * C, this->a.dy + lo * C, size_t(rows), size_t(C), this->dxc.c.data(), s0,
                            s1);
  }
  bool writes() const { return this->a.dx != nullptr; }
  void write_rows(int64_t lo, int64_t rows) {
    const int64_t C = this->a.shape.c;
    const DxCoefs<T>& d = this->dxc;
    if (this->masked) {
      T* dres = this->dres(lo * C);
      if (!this->a.use_batch_stats) {
        this->mk.bwd_scale_rows(this->a.dy + lo * C, this->a.y + lo * C, this->a.dx + lo * C, dres, size_t(rows),
                                size_t(C), d.k1.data());
        return;
      }
      this->mk.bwd_dx_rows(this->a.x + lo * C, this->a.dy + lo * C, this->a.y + lo * C, this->a.dx + lo * C, dres,
                           size_t(rows), size_t(C), d.c.data(), d.k1.data(), d.k2.data(), d.k3.data());
      return;
    }
    if (!this->a.use_batch_stats) {  // dx = dy * k1 (k3 = 0 as c and b)
      this->w.affine_rows(this->a.dy + lo * C, this->a.dx + lo * C, nullptr, size_t(rows), size_t(C), d.k3.data(),
                          d.k1.data(), d.k3.data(), stream);
      return;
    }
    this->w.bwd_dx_rows(this->a.x + lo * C, this->a.dy + lo * C, this->a.dx + lo * C, nullptr, size_t(rows),
                        size_t(C), d.c.data(), d.k1.data(), d.k2.data(), d.k3.data(), stream);
  }
};

// NCHW: stages of run_two_pass (never pipelined: the planner keeps backward in two passes).
template <typename T>
struct BackwardChannelStages : BackwardSums<T> {
  const Plan& pt;
  const size_t stride;
  const bool fresh_out;  // dx is none of the inputs
  BackwardChannelStages(const BackwardArgs<T>& args, const Plan& plan, bool in_place)
      : BackwardSums<T>(args, true), pt(plan), stride(size_t(args.shape.c * args.shape.s)), fresh_out(!in_place) {}

  void start(int64_t) {}
  void reduce(int64_t c, int64_t slot, int64_t off, int64_t rows, int64_t n) {
    if (this->masked) {
      if (pt.group_sums) {
        this->mk.bwd_reduce_group(this->a.x + off, this->a.dy + off, this->a.y + off, size_t(rows), stride, 1,
                                  size_t(n), &this->dxc.c[c], &this->sums.first[slot], &this->sums.second[slot]);
        return;
      }
      this->mk.bwd_reduce_run(this->a.x + off, this->a.dy + off, this->a.y + off, size_t(rows), size_t(n),
                              chunk_stride(this->a.shape, off, rows, n), this->dxc.c[c], &this->sums.first[slot],
                              &this->sums.second[slot]);
      return;
    }
    if (pt.group_sums) {  // the group kernel one run wide: the sums a group of channels gets
      this->k.bwd_reduce_group(this->a.x + off, this->a.dy + off, size_t(rows), stride, 1, size_t(n), &this->dxc.c[c],
                               &this->sums.first[slot], &this->sums.second[slot]);
      return;
    }
    this->k.bwd_reduce_run(this->a.x + off, this->a.dy + off, size_t(rows), size_t(n), chunk_stride(this->a.shape, off, rows, n),
                           this->dxc.c[c],
                           &this->sums.first[slot], &this->sums.second[slot]);
  }
  void reduce_group(int64_t c0, int64_t G, int64_t off, int64_t rows, int64_t slot, bool cold) {
    const Shape& s = this->a.shape;
    if (cold) {
      prefetch_group(s, this->a.x + off, G);
      prefetch_group(s, this->a.dy + off, G);
      if (this->masked) prefetch_group(s, this->a.y + off, G);
    }
    if (this->masked) {
      this->mk.bwd_reduce_group(this->a.x + off, this->a.dy + off, this->a.y + off, size_t(rows), stride, size_t(G),
                                size_t(s.s), &this->dxc.c[c0], &this->sums.first[slot], &this->sums.second[slot]);
      return;
    }
    this->k.bwd_reduce_group(this->a.x + off, this->a.dy + off, size_t(rows), stride, size_t(G), size_t(s.s),
                             &this->dxc.c[c0], &this->sums.first[slot], &this->sums.second[slot]);
  }
  void write(int64_t c, int64_t off, int64_t rows, int64_t n, size_t next) {
    if (this->a.dx == nullptr) return;
    const DxCoefs<T>& d = this->dxc;
    if (this->masked) {
      if (!this->a.use_batch_stats) {
        this->mk.bwd_scale_run(this->a.dy + off, this->a.y + off, this->a.dx + off, this->dres(off), size_t(rows),
                               size_t(n), stride, d.k1[c], pt.stream, next);
        return;
      }
      this->mk.bwd_dx_run(this->a.x + off, this->a.dy + off, this->a.y + off, this->a.dx + off, this->dres(off),
                          size_t(rows), size_t(n), stride, d.c[c], d.k1[c], d.k2[c], d.k3[c], pt.stream, next);
      return;
    }
    if (!this->a.use_batch_stats) {  // dx = dy * k1, as in the rows layout
      this->w.affine_run(this->a.dy + off, this->a.dx + off, nullptr, size_t(rows), size_t(n), stride, 0, d.k1[c], 0,
                         pt.stream, next);
      return;
    }
    this->w.bwd_dx_run(this->a.x + off, this->a.dy + off, this->a.dx + off, nullptr, size_t(rows), size_t(n), stride,
                       d.c[c], d.k1[c], d.k2[c], d.k3[c], pt.stream, next);
  }
  void write_group(int64_t c0, int64_t G, int64_t off, size_t next) {
    if (this->a.dx == nullptr) return;
    const DxCoefs<T>& d = this->dxc;
    const size_t S = size_t(this->a.shape.s), out_next = group_out_next(this->a.shape, pt, fresh_out, off);
    if (this->masked) {
      if (!this->a.use_batch_stats) {
        this->mk.bwd_scale_group(this->a.dy + off, this->a.y + off, this->a.dx + off, this->dres(off), size_t(G), S,
                                 &d.k1[c0], pt.stream_spans, next, out_next);
        return;
      }
      this->mk.bwd_dx_group(this->a.x + off, this->a.dy + off, this->a.y + off, this->a.dx + off, this->dres(off),
                            size_t(G), S, &d.c[c0], &d.k1[c0], &d.k2[c0], &d.k3[c0], pt.stream_spans, next, out_next);
      return;
    }
    if (!this->a.use_batch_stats) {  // dx = dy * k1, as in the rows layout
      this->w.affine_group(this->a.dy + off, this->a.dx + off, nullptr, size_t(G), S, &d.k3[c0], &d.k1[c0], &d.k3[c0],
                           pt.stream_spans, next, out_next);
      return;
    }
    this->w.bwd_dx_group(this->a.x + off, this->a.dy + off, this->a.dx + off, nullptr, size_t(G), S, &d.c[c0],
                         &d.k1[c0], &d.k2[c0], &d.k3[c0], pt.stream_spans, next, out_next);
  }
  void write_and_reduce(int64_t, int64_t, int64_t, int64_t, size_t, int64_t, int64_t) {}  // never planned
};

template <typename T>
void run(const BackwardArgs<T>& a) {
  const Shape& s = a.shape;
  const bool in_place = a.dx == a.x || a.dx == a.dy || a.dx == a.y;
  const Plan pt = plan_op(plan_input(s, a.num_threads, OpKind::kBackward, a.dx, in_place));
  if (pt.path == Path::kRows) {
    BackwardRowsStages<T> st(a, pt);
    run_rows_two_pass(s, pt, st);
  } else {
    BackwardChannelStages<T> st(a, pt, in_place);
    run_two_pass(s, pt, st);
  }
}

}  // namespace

template <typename T>
Status backward(const BackwardArgs<T>& args) {
  if (Status st = check_args(args); st != Status::kOk) return st;
  BackwardArgs<T> a = args;
  a.shape = canonical_shape(args.shape);
  try {
    std::vector<double> invstd;  // evaluation mode from running_var: the rule forward_inference uses
    if (invstd_from_var(a)) {
      invstd.resize(size_t(a.shape.c));
      for (int64_t c = 0; c < a.shape.c; ++c) invstd[size_t(c)] = invstd_of<compute_t<T>>(double(a.running_var[c]), a.eps);
      a.invstd = invstd.data();
    }
    run(a);
  } catch (const std::bad_alloc&) {
    return Status::kOutOfMemory;
  }
  return Status::kOk;
}

template Status backward<float>(const BackwardArgs<float>&);
template Status backward<double>(const BackwardArgs<double>&);
template Status backward<bf16>(const BackwardArgs<bf16>&);
template Status backward<f16>(const BackwardArgs<f16>&);

}  // namespace bn
