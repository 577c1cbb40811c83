// Whole-array conversions (convert_array.h): the active table's kernel over equal pieces, one per thread.
#include "convert_array.h"

#include "convert_kernels.h"

namespace bn {
namespace {

// Below this many elements per thread, starting a thread costs more than it saves.
constexpr size_t kMinElementsPerThread = size_t(1) << 16;
// Piece boundaries on whole cache lines of the 16-bit side.
constexpr size_t kPieceAlign = 32;

template <typename Src, typename Dst>
Status run_pieces(void (*kernel)(const Src*, Dst*, size_t), const Src* src, Dst* dst, size_t n, int num_threads) {
  if (n == 0) return Status::kOk;
  if (src == nullptr || dst == nullptr) return Status::kNullPointer;
  if (num_threads < 1) return Status::kBadThreads;
  const int t = convert_useful_threads(n, num_threads);
  if (t == 1) {
    kernel(src, dst, n);
    return Status::kOk;
  }
  const size_t piece = ((n + size_t(t) - 1) / size_t(t) + kPieceAlign - 1) / kPieceAlign * kPieceAlign;
#pragma omp parallel for num_threads(t) schedule(static)
  for (int p = 0; p < t; ++p) {
    const size_t begin = size_t(p) * piece;
    if (begin < n) kernel(src + begin, dst + begin, (n - begin < piece ? n - begin : piece));
  }
  return Status::kOk;
}

}  // namespace

int convert_useful_threads(size_t n, int limit) {
  const size_t want = n / kMinElementsPerThread;
  if (want <= 1 || limit <= 1) return 1;
  return want < size_t(limit) ? int(want) : limit;
}

Status convert_f32_to_half(HalfFormat format, const float* src, uint16_t* dst, size_t n, int num_threads) {
  const ConvertKernels& k = active_convert_kernels();
  return run_pieces(format == HalfFormat::kBF16 ? k.f32_to_bf16 : k.f32_to_f16, src, dst, n, num_threads);
}

Status convert_half_to_f32(HalfFormat format, const uint16_t* src, float* dst, size_t n, int num_threads) {
  const ConvertKernels& k = active_convert_kernels();
  return run_pieces(format == HalfFormat::kBF16 ? k.bf16_to_f32 : k.f16_to_f32, src, dst, n, num_threads);
}

}  // namespace bn
