// Would a column-blocked schedule make channels-last training read x once? A probe of the two
// schedules with the same plain AVX2 kernels (sums in float, y = x * a + b streamed), not the
// library's: both are timed against a streaming copy of the same bytes, in the same process.
//
//   rows:    each thread reduces its range of rows over all channels, then (after a barrier)
//            writes them, last rows first (the library's rows schedule): x is read twice, the
//            second time from memory unless the tensor fits in the caches.
//   columns: each thread takes blocks of B channels and, per block, reduces it over all rows and
//            then writes it: B values of every row, C values apart. The block's second read can
//            come from L2/L3 when rows x B values fit there (a 56x56 batch-32 tensor has 100,352
//            rows: 6.4 MB per 16 channels).
//
// Results and their reading: bench/PERFORMANCE.md ("Tried and not kept").
//
//   build-native/bn_probe_column_blocks [--rows 100352] [--channels 256] [--threads 2]
//                                        [--blocks 16,32,64,128] [--ahead 32] [--reps 5]
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "bench_cli.h"

namespace {

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

struct Tensor {
  size_t rows, ch, ahead;  // ahead: rows between a load and the line it prefetches
  float* x;
  float* y;
};

// Sums (and sums of squares) of channels [c0, c0 + cb) over rows [r0, r1), 8 lanes at a time,
// cb a multiple of 8; every line of the row `ahead` rows on is requested.
__attribute__((target("avx2,fma"))) void reduce(const Tensor& t, size_t r0, size_t r1, size_t c0, size_t cb,
                                                 float* sum, float* sq) {
  for (size_t j = c0; j < c0 + cb; j += 32) {
    const size_t nv = std::min<size_t>(32, c0 + cb - j) / 8;
    __m256 s[4], q[4];
    for (size_t u = 0; u < 4; ++u) s[u] = q[u] = _mm256_setzero_ps();
    for (size_t r = r0; r < r1; ++r) {
      const float* p = t.x + r * t.ch + j;
      for (size_t u = 0; u < nv; u += 2) _mm_prefetch(reinterpret_cast<const char*>(p + t.ahead * t.ch + 8 * u), _MM_HINT_T0);
      for (size_t u = 0; u < nv; ++u) {
        const __m256 v = _mm256_loadu_ps(p + 8 * u);
        s[u] = _mm256_add_ps(s[u], v);
        q[u] = _mm256_fmadd_ps(v, v, q[u]);
      }
    }
    for (size_t u = 0; u < nv; ++u) {
      _mm256_storeu_ps(sum + j + 8 * u, _mm256_add_ps(s[u], _mm256_loadu_ps(sum + j + 8 * u)));
      _mm256_storeu_ps(sq + j + 8 * u, _mm256_add_ps(q[u], _mm256_loadu_ps(sq + j + 8 * u)));
    }
  }
}

// y = x * a + b over rows [r0, r1) (walked down when `down`), channels [c0, c0 + cb), streamed.
__attribute__((target("avx2,fma"))) void write(const Tensor& t, size_t r0, size_t r1, size_t c0, size_t cb,
                                               const float* a, const float* b, bool down) {
  for (size_t k = r0; k < r1; ++k) {
    const size_t r = down ? r1 - 1 - (k - r0) : k;
    const float* p = t.x + r * t.ch + c0;
    float* o = t.y + r * t.ch + c0;
    if (cb < t.ch) {
      for (size_t u = 0; u < cb; u += 16) _mm_prefetch(reinterpret_cast<const char*>(p + t.ahead * t.ch + u), _MM_HINT_T0);
    }
    for (size_t u = 0; u < cb; u += 8) {
      _mm256_stream_ps(o + u, _mm256_fmadd_ps(_mm256_loadu_ps(p + u), _mm256_loadu_ps(a + c0 + u), _mm256_loadu_ps(b + c0 + u)));
    }
  }
}

__attribute__((target("avx2"))) void copy(const Tensor& t, int threads) {
  const size_t n = t.rows * t.ch;
#pragma omp parallel num_threads(threads)
  {
    const size_t k = size_t(omp_get_thread_num()), p = size_t(omp_get_num_threads());
    for (size_t i = n * k / p / 8 * 8; i < n * (k + 1) / p / 8 * 8; i += 8) _mm256_stream_ps(t.y + i, _mm256_load_ps(t.x + i));
    _mm_sfence();
  }
}

void rows_schedule(const Tensor& t, int threads, const float* a, const float* b) {
  std::vector<float> sums(2 * t.ch * size_t(threads), 0.0f);
#pragma omp parallel num_threads(threads)
  {
    const size_t k = size_t(omp_get_thread_num()), p = size_t(omp_get_num_threads());
    const size_t lo = t.rows * k / p, hi = t.rows * (k + 1) / p;
    float* s = &sums[2 * t.ch * k];
    for (size_t r = lo; r < hi; r += 64) reduce(t, r, std::min(hi, r + 64), 0, t.ch, s, s + t.ch);
#pragma omp barrier
    write(t, lo, hi, 0, t.ch, a, b, true);
    _mm_sfence();
  }
}

void column_schedule(const Tensor& t, int threads, size_t cb, const float* a, const float* b) {
  std::vector<float> sums(2 * t.ch, 0.0f);
  const size_t blocks = t.ch / cb;
#pragma omp parallel num_threads(threads)
  {
    const size_t k = size_t(omp_get_thread_num()), p = size_t(omp_get_num_threads());
    for (size_t i = blocks * k / p; i < blocks * (k + 1) / p; ++i) {
      reduce(t, 0, t.rows, i * cb, cb, sums.data(), sums.data() + t.ch);
      write(t, 0, t.rows, i * cb, cb, a, b, false);
    }
    _mm_sfence();
  }
}

template <class F>
double best_of(int reps, F&& f) {
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    const double t0 = now();
    f();
    best = std::min(best, now() - t0);
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  size_t rows = 100352, ch = 256, ahead = 32;
  int threads = 2, reps = 5;
  std::string blocks = "16,32,64,128";
  for (int i = 1; i < argc; i += 2) {
    const std::string k = argv[i];
    const char* v = i + 1 < argc ? argv[i + 1] : nullptr;
    if (!v) {
      std::fprintf(stderr, "bn_probe_column_blocks: %s needs a value\n", k.c_str());
      return 2;
    }
    if (k == "--rows") rows = std::strtoull(v, nullptr, 10);
    else if (k == "--channels") ch = std::strtoull(v, nullptr, 10);
    else if (k == "--threads") threads = std::atoi(v);
    else if (k == "--blocks") blocks = v;
    else if (k == "--ahead") ahead = std::strtoull(v, nullptr, 10);
    else if (k == "--reps") reps = std::atoi(v);
    else {
      std::fprintf(stderr, "bn_probe_column_blocks [--rows R] [--channels C] [--threads T] [--blocks B,...] [--ahead ROWS] [--reps N]\n");
      return 2;
    }
  }
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) {
    std::fprintf(stderr, "bn_probe_column_blocks: needs AVX2 and FMA\n");
    return 2;
  }
  if (rows == 0 || ch == 0 || ch % 16 != 0 || threads < 1 || reps < 1) {
    std::fprintf(stderr, "bn_probe_column_blocks: rows >= 1, channels a multiple of 16, threads and reps >= 1\n");
    return 2;
  }
  const size_t n = rows * ch;
  Tensor t{rows, ch, ahead, static_cast<float*>(std::aligned_alloc(64, n * 4)), static_cast<float*>(std::aligned_alloc(64, n * 4))};
  for (size_t i = 0; i < n; ++i) t.x[i] = float(i % 97) * 0.01f, t.y[i] = 0.0f;
  std::vector<float> a(ch, 1.1f), b(ch, 0.2f);
  std::printf("%zu rows x %zu channels (%.1f MB), %d threads, prefetch %zu rows ahead; ms (x copy: copy time / time)\n",
              rows, ch, double(n) * 4e-6, threads, ahead);
  for (int round = 0; round < 3; ++round) {
    const double tc = best_of(reps, [&] { copy(t, threads); });
    const double tr = best_of(reps, [&] { rows_schedule(t, threads, a.data(), b.data()); });
    std::printf("copy %.2f  rows %.2f (%.2f)", tc * 1e3, tr * 1e3, tc / tr);
    for (const std::string& s : bnbench::split(blocks, ',')) {
      const size_t cb = std::strtoull(s.c_str(), nullptr, 10);
      if (cb == 0 || cb % 16 != 0 || ch % cb != 0) continue;
      const double tb = best_of(reps, [&] { column_schedule(t, threads, cb, a.data(), b.data()); });
      std::printf("  columns of %zu %.2f (%.2f)", cb, tb * 1e3, tc / tb);
    }
    std::printf("\n");
  }
  std::free(t.x);
  std::free(t.y);
  return 0;
}
