// node-batchnorm core: batch normalization over [N, C, S] tensors (S = product of the spatial
// dimensions, 1 for [N, C]). Pure C++: pointers, sizes, status codes. Knows nothing of N-API.
//
// Conventions (PyTorch's): biased variance to normalize, unbiased variance (m / (m - 1)) for the
// running variance, running = (1 - f) * running + f * batch, where the caller passes f
// (momentum, or 1 / num_batches_tracked for a cumulative average).
//
// Every entry point validates its arguments and returns a Status; none of them throws or aborts.
// Statistics are accumulated in float64 whatever the tensor dtype.
#pragma once

#include <cstddef>
#include <cstdint>

#include "dtypes.h"

namespace bn {

enum class Status : int {
  kOk = 0,
  kNullPointer = 1,       // a required pointer is null
  kBadShape = 2,          // N, C or S is zero/negative, or N*C*S overflows
  kTooFewValues = 3,      // training mode with one value per channel (m == 1)
  kBadEps = 4,            // eps is NaN, infinite or negative
  kBadMomentum = 5,       // momentum factor outside [0, 1] or NaN
  kBadThreads = 6,        // thread count < 1
  kUnsupported = 7,       // requested SIMD level not available on this CPU or build
  kOutOfMemory = 8,       // scratch allocation failed
  kMismatchedStats = 9,   // running_mean given without running_var, or the other way round
  kBadEpilogue = 10,      // unknown epilogue, or a residual given to one that takes none
};

const char* status_message(Status s);

enum class SimdLevel : int { kScalar = 0, kAvx2 = 1, kAvx512 = 2, kNeon = 3 };

const char* simd_level_name(SimdLevel level);

// The level the detector chose at load (cpuid + xgetbv on x86-64, always NEON on arm64),
// lowered by the environment variable BATCHNORM_SIMD=scalar|avx2|avx512|neon if set.
SimdLevel detected_simd_level();   // best level this CPU + OS + build supports
SimdLevel active_simd_level();     // the level kernels use now
// Switch kernels (tests and benchmarks). kUnsupported if the CPU/build cannot run `level`.
Status set_simd_level(SimdLevel level);
bool simd_level_supported(SimdLevel level);

// Thread count for every parallel region (explicit num_threads, never the OpenMP default).
// Defaults to OMP_NUM_THREADS if set and valid, else the number of online processors.
int default_num_threads();

// The caches the core sizes its pieces from, read once at load (sysfs first, sysconf as
// fallback): L2 per core, the L3 one core sees (0: unknown), how many CPUs share that L3, and
// where the sizes came from ("sysfs", "sysconf" or "default").
struct CacheSizes {
  int64_t l2_bytes;
  int64_t l3_bytes;
  int l3_sharing;
  const char* source;
};
CacheSizes cache_sizes();

// Geometry of one activation tensor: x[n][c][s] contiguous (NCHW-style), or x[n][s][c] when
// channels_last (NHWC-style, channel fastest).
struct Shape {
  int64_t n = 0;
  int64_t c = 0;
  int64_t s = 1;  // product of spatial dims (1 for [N, C])
  bool channels_last = false;
  // Channel-fastest layouts ([N, C] is one too) run the rows kernels over n * s rows of c values.
  bool rows_layout() const { return channels_last || s == 1; }
  int64_t rows() const { return n * s; }
};

// What the forward ops do to each output value after normalizing it: nothing, the fused ReLU
// (kRelu: y < 0 ? 0 : y, so NaN and -0 pass), or the residual added before it (kAddRelu:
// relu(y + residual), the residual a tensor of x's shape, layout and dtype given in the args).
enum class Epilogue : int { kNone = 0, kRelu = 1, kAddRelu = 2 };
constexpr int kEpilogueCount = 3;

// Threads a call on this shape can use when `requested` are available: 1 below the size where a
// parallel region costs more than it saves. (Callers that budget threads lease this many.)
int useful_threads(const Shape& shape, int requested);

// Checks n, c, s >= 1 and that n*c*s fits in int64 (and in size_t). Returns kBadShape otherwise.
Status validate_shape(const Shape& shape);

// The type of the per-channel parameters and statistics (weight, bias, running and saved
// statistics, gradients) of a tensor stored as T: T itself, and float for the 16-bit storage
// types (PyTorch's mixed type: bf16 activations, float32 parameters). Also their compute type.
template <typename T> struct ParamOf { using type = T; };
template <> struct ParamOf<bf16> { using type = float; };
template <> struct ParamOf<f16> { using type = float; };
template <typename T> using param_t = typename ParamOf<T>::type;

// ----- Forward, training mode ----------------------------------------------------------------
// Inputs: x; weight/bias may be null (affine = false: weight 1, bias 0).
// Outputs: y (may equal x: in place); optional per-channel outputs: save_mean / save_invstd in param_t<T>
// (PyTorch's saved statistics) and batch_mean / batch_invstd in float64 (what backward should be
// given: the float64 mean keeps dweight exact when |mean| >> std).
// Running statistics: if running_mean and running_var are non-null they are updated with factor f
// (running = (1 - f) * running + f * batch; var is the unbiased one). Pass both or neither.
template <typename T>
struct ForwardTrainingArgs {
  Shape shape;
  const T* x = nullptr;
  T* y = nullptr;
  const param_t<T>* weight = nullptr;
  const param_t<T>* bias = nullptr;
  param_t<T>* save_mean = nullptr;
  param_t<T>* save_invstd = nullptr;
  double* batch_mean = nullptr;
  double* batch_invstd = nullptr;
  param_t<T>* running_mean = nullptr;
  param_t<T>* running_var = nullptr;
  double eps = 1e-5;
  double momentum_factor = 0.1;
  int num_threads = 1;
  Epilogue epilogue = Epilogue::kNone;
  const T* residual = nullptr;  // kAddRelu's second operand (required there, null for the others)
};

// ----- Forward, inference mode ------------------------------------------------------------
// y = (x - mean) / sqrt(var + eps) * weight + bias with mean/var given per channel
// (normally the running statistics). y may equal x.
template <typename T>
struct ForwardInferenceArgs {
  Shape shape;
  const T* x = nullptr;
  T* y = nullptr;
  const param_t<T>* weight = nullptr;
  const param_t<T>* bias = nullptr;
  const param_t<T>* mean = nullptr;
  const param_t<T>* var = nullptr;
  double eps = 1e-5;
  int num_threads = 1;
  Epilogue epilogue = Epilogue::kNone;
  const T* residual = nullptr;  // as in ForwardTrainingArgs
};

// ----- Backward ----------------------------------------------------------------------------
// Training mode (statistics depend on x): mean/invstd are the batch statistics of the forward
// (batch_mean/batch_invstd, or save_mean/save_invstd widened).
// Evaluation mode (use_batch_stats = false): mean/invstd describe the constant statistics
// (running_mean and 1 / sqrt(running_var + eps)). Both in float64, [C]. Or, in evaluation mode,
// give running_var (in param_t<T>, [C]) and eps instead of invstd: the core then computes invstd with the
// rule forward_inference uses (invstd_of in invstd.h), and invstd may be null.
// dx may be null (not wanted). grad_weight/grad_bias may be null; when given, the gradients are
// ADDED to them (accumulate = true) or written (accumulate = false).
// dx may alias dy or x (each channel is fully reduced before its dx is written).
// Through a fused activation (epilogue = the forward's kRelu or kAddRelu): y is the forward's
// output, kept unchanged since; dy is masked where y <= 0 (PyTorch's threshold_backward: the
// gradient at exactly 0 is 0, NaN in y passes dy) before everything, and kAddRelu writes the
// masked dy, dL/dresidual, into residual_grad (may be null: not wanted; needs dx) in the dx pass.
// residual_grad must not overlap x, dy, y or dx; dx may alias dy, x or y.
template <typename T>
struct BackwardArgs {
  Shape shape;
  const T* x = nullptr;
  const T* dy = nullptr;
  T* dx = nullptr;
  const param_t<T>* weight = nullptr;
  const double* mean = nullptr;
  const double* invstd = nullptr;
  param_t<T>* grad_weight = nullptr;
  param_t<T>* grad_bias = nullptr;
  const param_t<T>* running_var = nullptr;  // evaluation mode only, instead of invstd
  double eps = 1e-5;               // with running_var
  bool use_batch_stats = true;
  bool accumulate = true;
  int num_threads = 1;
  Epilogue epilogue = Epilogue::kNone;  // the forward's
  const T* y = nullptr;                 // the forward's output: kRelu, kAddRelu
  T* residual_grad = nullptr;           // kAddRelu only
};

template <typename T> Status forward_training(const ForwardTrainingArgs<T>& args);
template <typename T> Status forward_inference(const ForwardInferenceArgs<T>& args);
template <typename T> Status backward(const BackwardArgs<T>& args);

extern template Status forward_training<float>(const ForwardTrainingArgs<float>&);
extern template Status forward_training<double>(const ForwardTrainingArgs<double>&);
extern template Status forward_inference<float>(const ForwardInferenceArgs<float>&);
extern template Status forward_inference<double>(const ForwardInferenceArgs<double>&);
extern template Status backward<float>(const BackwardArgs<float>&);
extern template Status backward<double>(const BackwardArgs<double>&);
extern template Status forward_training<bf16>(const ForwardTrainingArgs<bf16>&);
extern template Status forward_training<f16>(const ForwardTrainingArgs<f16>&);
extern template Status forward_inference<bf16>(const ForwardInferenceArgs<bf16>&);
extern template Status forward_inference<f16>(const ForwardInferenceArgs<f16>&);
extern template Status backward<bf16>(const BackwardArgs<bf16>&);
extern template Status backward<f16>(const BackwardArgs<f16>&);

}  // namespace bn
