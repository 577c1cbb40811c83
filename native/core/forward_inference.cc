// Forward, inference mode: y = (x - mean) / sqrt(var + eps) * weight + bias with given statistics.
// One elementwise pass in memory order; the geometry is the planner's (plan.h).
#include <algorithm>
#include <new>

#include "batchnorm.h"
#include "coefficients.h"
#include "invstd.h"
#include "kernels.h"
#include "machine.h"
#include "memory.h"
#include "plan.h"
#include "schedule.h"
#include "validate.h"

namespace bn {
namespace {

// The per-channel coefficients from the given statistics.
template <typename T>
void inference_affine(const ForwardInferenceArgs<T>& a, Affine<T>& af) {
  for (int64_t c = 0; c < a.shape.c; ++c) {
    const double invstd = invstd_of<compute_t<T>>(double(a.var[c]), a.eps);
    const double w = a.weight ? double(a.weight[c]) : 1.0;
    const double b = a.bias ? double(a.bias[c]) : 0.0;
    af.set(c, double(a.mean[c]), w * invstd, b);
  }
}

// The epilogue's operand at offset off (null when it takes none).
template <typename T>
const T* at(const T* res, int64_t off) {
  return res ? res + off : nullptr;
}

template <typename T>
void apply(const ForwardInferenceArgs<T>& a, const Affine<T>& af, const Plan& pt) {
  const Shape& s = a.shape;
  const T* x = a.x;
  T* y = a.y;
  const ElementwiseKernels<T>& w = active_table<T>().writers(a.epilogue);
  const int nt = pt.nt;
  if (pt.path == Path::kRows) {
    // Blocks of rows, claimed (schedule.h).
    const int64_t rows = s.rows(), block = claim_block(s.c * int64_t(sizeof(T)));
    ClaimRanges claims((rows + block - 1) / block, nt);
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
      const int t = omp_get_thread_num();
      for (int64_t u; (u = claims.take(t)) >= 0;) {
        const int64_t lo = u * block, hi = std::min(rows, lo + block);
        w.affine_rows(x + lo * s.c, y + lo * s.c, at(a.residual, lo * s.c), size_t(hi - lo), size_t(s.c), af.c.data(),
                      af.a.data(), af.b.data(), pt.stream);
      }
      if (pt.stream) store_fence();
    }
    return;
  }
  // Memory order: what comes next is further along x. Prefetch that far ahead into L2, unless
  // the output streams (x then comes from memory too, and the hardware prefetcher follows the
  // walk better alone).
  auto ahead_for = [](bool stream) { return stream ? size_t(0) : kPrefetchAheadBytes / sizeof(T); };
  if (pt.path == Path::kSpans) {
    const int64_t per = pt.group;
    const int64_t pieces = (s.c + per - 1) / per;
    const int64_t items = s.n * pieces, block = claim_block(per * s.s * int64_t(sizeof(T)));
    ClaimRanges claims((items + block - 1) / block, nt);
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
      const int t = omp_get_thread_num();
      for_claimed_items(claims, t, items, block, [&](int64_t it) {
        const int64_t b = it / pieces, c0 = it % pieces * per, G = std::min(per, s.c - c0);
        const int64_t off = (b * s.c + c0) * s.s;
        // out_next 0: the walk goes on in memory order, where the hardware prefetcher follows y.
        w.affine_group(x + off, y + off, at(a.residual, off), size_t(G), size_t(s.s), &af.c[c0], &af.a[c0], &af.b[c0],
                       pt.stream_spans, ahead_for(pt.stream_spans), 0);
      });
      store_fence();
    }
    return;
  }
  const int64_t runs = s.n * s.c, Q = pt.run_pieces;
  const int64_t items = runs * Q, block = claim_block(s.s / Q * int64_t(sizeof(T)));
  ClaimRanges claims((items + block - 1) / block, nt);
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    const int t = omp_get_thread_num();
    for_claimed_items(claims, t, items, block, [&](int64_t it) {
      const int64_t r = it / Q, q = it % Q, c = r % s.c;
      const int64_t lo = s.s / Q * q + std::min(q, s.s % Q), len = s.s / Q + (q < s.s % Q ? 1 : 0);
      const int64_t off = r * s.s + lo;
      w.affine_run(x + off, y + off, at(a.residual, off), size_t(1), size_t(len), size_t(s.s), af.c[c], af.a[c], af.b[c],
                   pt.stream, ahead_for(pt.stream));
    });
    store_fence();
  }
}

template <typename T>
void run(const ForwardInferenceArgs<T>& a) {
  const Shape& s = a.shape;
  Affine<T> af(s.c);
  inference_affine(a, af);
  const bool in_place = a.y == a.x || a.y == a.residual;
  apply(a, af, plan_op(plan_input(s, a.num_threads, OpKind::kForwardInference, a.y, in_place)));
}

}  // namespace

template <typename T>
Status forward_inference(const ForwardInferenceArgs<T>& args) {
  if (Status st = check_args(args); st != Status::kOk) return st;
  ForwardInferenceArgs<T> a = args;
  a.shape = canonical_shape(args.shape);
  try {
    run(a);
  } catch (const std::bad_alloc&) {
    return Status::kOutOfMemory;
  }
  return Status::kOk;
}

template Status forward_inference<float>(const ForwardInferenceArgs<float>&);
template Status forward_inference<double>(const ForwardInferenceArgs<double>&);
template Status forward_inference<bf16>(const ForwardInferenceArgs<bf16>&);
template Status forward_inference<f16>(const ForwardInferenceArgs<f16>&);

}  // namespace bn
