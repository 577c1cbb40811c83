// Backward: reductions of dy and dy * (x - mean) (first pass), the weight and bias gradients, then
// dx (second pass). The walk is the schedule's (schedule.h), the geometry the planner's (plan.h).
// dx may alias dy or x: each channel is fully reduced before its dx is written.
#include <new>

#include "batchnorm.h"
#include "coefficients.h"
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
  PartialSums sums;                 // Σ dy, Σ dy * (x - c)
  DxCoefs<T> dxc;
  BackwardSums(const BackwardArgs<T>& args, int64_t P)
      : a(args), k(active_table<T>()), w(k.writers(Epilogue::kNone)), sums(args.shape.c, P), dxc(args.shape.c) {
    for (int64_t c = 0; c < args.shape.c; ++c) dxc.c[c] = compute_t<T>(args.mean[c]);
  }

  // Channel ch's gradients (written or accumulated) and dx coefficients.
  void finish(int64_t ch) {
    const int64_t P = sums.parts;
    double g = 0.0, p = 0.0;
    for (int64_t q = 0; q < P; ++q) {
      g += sums.first[ch * P + q];
      p += sums.second[ch * P + q];
    }
    const double m = double(a.shape.n) * double(a.shape.s);
    const double wt = a.weight ? double(a.weight[ch]) : 1.0;
    const BackwardChannel r =
        backward_channel(g, p, a.mean[ch], a.invstd[ch], double(dxc.c[ch]), wt, a.use_batch_stats, m);
    if (a.grad_bias) a.grad_bias[ch] = T(a.accumulate ? double(a.grad_bias[ch]) + r.dbias : r.dbias);
    if (a.grad_weight) a.grad_weight[ch] = T(a.accumulate ? double(a.grad_weight[ch]) + r.dweight : r.dweight);
    dxc.k1[ch] = compute_t<T>(r.k1);
    dxc.k2[ch] = compute_t<T>(r.k2);
    dxc.k3[ch] = compute_t<T>(r.k3);
  }
};

// Rows layout: stages of run_rows_two_pass.
template <typename T>
struct BackwardRowsStages : BackwardSums<T> {
  using BackwardSums<T>::BackwardSums;
  void reduce_rows(int64_t lo, int64_t rows, double* s0, double* s1) {
    const int64_t C = this->a.shape.c;
    this->k.bwd_reduce_rows(this->a.x + lo * C, this->a.dy + lo * C, size_t(rows), size_t(C), this->dxc.c.data(), s0,
                            s1);
  }
  bool writes() const { return this->a.dx != nullptr; }
  void write_rows(int64_t lo, int64_t rows) {
    const int64_t C = this->a.shape.c;
    const DxCoefs<T>& d = this->dxc;
    this->w.bwd_dx_rows(this->a.x + lo * C, this->a.dy + lo * C, this->a.dx + lo * C, nullptr, size_t(rows),
                        size_t(C), d.c.data(), d.k1.data(), d.k2.data(), d.k3.data());
  }
};

// NCHW: stages of run_two_pass (never pipelined: the planner keeps backward in two passes).
template <typename T>
struct BackwardChannelStages : BackwardSums<T> {
  const Plan& pt;
  const size_t stride;
  BackwardChannelStages(const BackwardArgs<T>& args, const Plan& plan)
      : BackwardSums<T>(args, plan.parts), pt(plan), stride(size_t(args.shape.c * args.shape.s)) {}

  void start(int64_t) {}
  void reduce(int64_t c, int64_t slot, int64_t off, int64_t rows, int64_t n) {
    this->k.bwd_reduce_run(this->a.x + off, this->a.dy + off, size_t(rows), size_t(n), stride, this->dxc.c[c],
                           &this->sums.first[slot], &this->sums.second[slot]);
  }
  void reduce_group(int64_t c0, int64_t G, int64_t off, bool cold) {
    const Shape& s = this->a.shape;
    if (cold) {
      prefetch_group(s, this->a.x + off, G);
      prefetch_group(s, this->a.dy + off, G);
    }
    this->k.bwd_reduce_group(this->a.x + off, this->a.dy + off, size_t(s.n), stride, size_t(G), size_t(s.s),
                             &this->dxc.c[c0], &this->sums.first[c0], &this->sums.second[c0]);
  }
  void write(int64_t c, int64_t off, int64_t rows, int64_t n, size_t next) {
    if (this->a.dx == nullptr) return;
    const DxCoefs<T>& d = this->dxc;
    this->w.bwd_dx_run(this->a.x + off, this->a.dy + off, this->a.dx + off, nullptr, size_t(rows), size_t(n), stride,
                       d.c[c], d.k1[c], d.k2[c], d.k3[c], pt.stream, next);
  }
  void write_group(int64_t c0, int64_t G, int64_t off, size_t next) {
    if (this->a.dx == nullptr) return;
    const DxCoefs<T>& d = this->dxc;
    this->w.bwd_dx_group(this->a.x + off, this->a.dy + off, this->a.dx + off, nullptr, size_t(G),
                         size_t(this->a.shape.s), &d.c[c0], &d.k1[c0], &d.k2[c0], &d.k3[c0], pt.stream_spans, next);
  }
  void write_and_reduce(int64_t, int64_t, int64_t, int64_t, size_t, int64_t, int64_t) {}  // never planned
};

template <typename T>
void run(const BackwardArgs<T>& a) {
  const Shape& s = a.shape;
  const MachineFacts& facts = machine_facts();
  PlanInput in;
  in.shape = s;
  in.elem_bytes = sizeof(T);
  in.threads = a.num_threads;
  in.l2_bytes = facts.l2_bytes;
  in.op = OpKind::kBackward;
  // dx aliasing x or dy: its lines were just read, plain stores are better (as in place forward).
  in.stream_out = !s.rows_layout() && a.dx != nullptr && a.dx != a.x && a.dx != a.dy &&
                  stream_output(facts, a.dx, int64_t(sizeof(T)) * s.n * s.c * s.s);
  const Plan pt = plan_op(in);
  if (pt.path == Path::kRows) {
    BackwardRowsStages<T> st(a, pt.parts);
    run_rows_two_pass(s, pt, st);
  } else {
    BackwardChannelStages<T> st(a, pt);
    run_two_pass(s, pt, st);
  }
}

}  // namespace

template <typename T>
Status backward(const BackwardArgs<T>& a) {
  if (Status st = check_args(a); st != Status::kOk) return st;
  try {
    run(a);
  } catch (const std::bad_alloc&) {
    return Status::kOutOfMemory;
  }
  return Status::kOk;
}

template Status backward<float>(const BackwardArgs<float>&);
template Status backward<double>(const BackwardArgs<double>&);

}  // namespace bn
