// The planner as a table (plan.h): given shape, layout, dtype size, threads, L2 and op, the plan
// it must return. The rows come from the reasoning in plan.h (and the measurements behind it in
// bench/notes-from-code.md); a change of a threshold shows here as the shapes whose path moved.
// Also: the pure parts of reading the machine facts, the memory policy's one system call, and the
// block walk of a channel's parts.
#include <cstring>
#include <functional>

#include "blocks.h"
#include "machine.h"
#include "memory.h"
#include "plan.h"
#include "store_alias.h"
#include "test_util.h"

namespace bntest {
namespace {

using bn::OpKind;
using bn::Path;

constexpr int64_t KiB = 1024, MiB = 1024 * 1024;

struct PlanRow {
  // input
  int64_t n, c, s;
  bool channels_last;
  int elem_bytes, threads;
  int64_t l2;
  OpKind op;
  bool stream_out;
  // expected
  Path path;
  int nt;
  int64_t parts, wave, group, run_pieces;
  bool stream, stream_spans, prefetch, reverse, pipeline;
};

constexpr OpKind kTrain = OpKind::kForwardTraining, kInfer = OpKind::kForwardInference, kBack = OpKind::kBackward;
constexpr bool Y = true, N = false;

// clang-format off
const PlanRow kPlanTable[] = {
  //  n     c      s    NHWC eb thr  l2      op      out   path              nt parts wave grp Q   strm span pf  rev pipe
  // The benchmark's shapes, float32, 2 threads, 2 MiB L2, large outputs that may stream.
  {32,   64, 12544, N, 4, 2, 2 * MiB, kTrain, Y,  Path::kWaves,    2, 8,  1,  1,  1,  Y,   Y,   Y,  N,  Y},
  {32,  256,  3136, N, 4, 2, 2 * MiB, kTrain, Y,  Path::kChannels, 2, 1,  1,  1,  1,  Y,   Y,   Y,  N,  Y},
  {32, 1024,   196, N, 4, 2, 2 * MiB, kTrain, Y,  Path::kGroups,   2, 1,  1, 20,  1,  Y,   Y,   Y,  N,  N},
  {32, 2048,    49, N, 4, 2, 2 * MiB, kTrain, Y,  Path::kGroups,   2, 1,  1, 83,  1,  N,   Y,   Y,  N,  N},
  { 1,  256,  3136, N, 4, 2, 2 * MiB, kTrain, Y,  Path::kChannels, 2, 1,  1,  1,  1,  Y,   Y,   Y,  N,  Y},
  {64,    3, 50176, N, 4, 2, 2 * MiB, kTrain, Y,  Path::kWaves,    2, 8,  1,  1,  1,  Y,   Y,   N,  N,  Y},
  {256, 1024,    1, N, 4, 2, 2 * MiB, kTrain, Y,  Path::kRows,     2, 2,  1,  1,  1,  Y,   N,   N,  N,  N},
  {32,   64, 12544, N, 4, 2, 2 * MiB, kBack,  Y,  Path::kWaves,    2, 8,  1,  1,  1,  Y,   Y,   N,  N,  N},
  {32,  256,  3136, N, 4, 2, 2 * MiB, kBack,  Y,  Path::kChannels, 2, 1,  1,  1,  1,  Y,   Y,   Y,  N,  N},
  {32, 1024,   196, N, 4, 2, 2 * MiB, kBack,  Y,  Path::kGroups,   2, 1,  1, 10,  1,  Y,   Y,   Y,  N,  N},
  {32, 2048,    49, N, 4, 2, 2 * MiB, kBack,  Y,  Path::kGroups,   2, 1,  1, 41,  1,  N,   Y,   Y,  N,  N},
  { 1,  256,  3136, N, 4, 2, 2 * MiB, kBack,  Y,  Path::kChannels, 2, 1,  1,  1,  1,  Y,   Y,   Y,  N,  N},
  {64,    3, 50176, N, 4, 2, 2 * MiB, kBack,  Y,  Path::kWaves,    2, 8,  1,  1,  1,  Y,   Y,   N,  Y,  N},
  {256, 1024,    1, N, 4, 2, 2 * MiB, kBack,  Y,  Path::kRows,     2, 2,  1,  1,  1,  Y,   N,   N,  N,  N},
  {32,   64, 12544, N, 4, 2, 2 * MiB, kInfer, Y,  Path::kRuns,     2, 1,  1,  1,  1,  Y,   Y,   N,  N,  N},
  {32, 1024,   196, N, 4, 2, 2 * MiB, kInfer, Y,  Path::kSpans,    2, 1,  1, 668, 1,  Y,   Y,   N,  N,  N},
  {32, 2048,    49, N, 4, 2, 2 * MiB, kInfer, Y,  Path::kSpans,    2, 1,  1, 2048, 1, Y,   Y,   N,  N,  N},
  {256, 1024,    1, N, 4, 2, 2 * MiB, kInfer, Y,  Path::kRows,     2, 2,  1,  1,  1,  Y,   N,   N,  N,  N},
  // One thread: whole channels; backward's 3.2 MB channel does not stay in L2, so reversed; a
  // training piece that fits L2 once but not twice is not pipelined.
  {32,   64, 12544, N, 4, 1, 2 * MiB, kBack,  Y,  Path::kChannels, 1, 1,  1,  1,  1,  Y,   Y,   N,  Y,  N},
  {32,   64, 12544, N, 4, 1, 2 * MiB, kTrain, Y,  Path::kChannels, 1, 1,  1,  1,  1,  Y,   Y,   N,  N,  N},
  // Other L2 sizes: at 1 MiB the split piece fits once but not twice (no prefetch; pipelined,
  // as waves always are); at 4 MiB whole channels fit twice (fused).
  {32,   64, 12544, N, 4, 2, 1 * MiB, kTrain, Y,  Path::kWaves,    2, 8,  1,  1,  1,  Y,   Y,   N,  N,  Y},
  {32,   64, 12544, N, 4, 2, 4 * MiB, kTrain, Y,  Path::kChannels, 2, 1,  1,  1,  1,  Y,   Y,   Y,  N,  Y},
  // Waves of several channels: 4 x 5 x 35000 has 560 KB channels, and a wave is what half of the
  // L2 of every thread holds (2 threads: 3 channels; 3 threads: 5).
  { 4,    5, 35000, N, 4, 2, 2 * MiB, kTrain, Y,  Path::kWaves,    2, 8,  3,  1,  1,  Y,   Y,   Y,  N,  Y},
  { 4,    7, 35000, N, 4, 3, 2 * MiB, kTrain, Y,  Path::kWaves,    3, 12,  5,  1,  1,  Y,   Y,   Y,  N,  Y},
  // Waves of short runs (C not a multiple of the threads) take their sums through the group
  // kernels: not pipelined.
  {32,    3,   784, N, 4, 2, 1 * MiB, kTrain, Y,  Path::kWaves,    2, 8,  3,  1,  1,  Y,   Y,   Y,  N,  N},
  // No streaming when the memory policy said no (in place, small, or pages not resident).
  {32,   64, 12544, N, 4, 2, 2 * MiB, kTrain, N,  Path::kWaves,    2, 8,  1,  1,  1,  N,   N,   Y,  N,  Y},
  // Runs of 784 bytes stream; 196 do not (float64 7x7: 392 bytes).
  {512,   4,   196, N, 4, 2, 2 * MiB, kTrain, Y,  Path::kChannels, 2, 1,  1,  1,  1,  Y,   Y,   Y,  N,  Y},
  {32, 2048,    49, N, 8, 2, 2 * MiB, kTrain, Y,  Path::kGroups,   2, 1,  1, 41,  1,  N,   Y,   Y,  N,  N},
  // Large batches of short maps: runs under kNarrowRunBytes (7x7 and 14x14 maps: float32, 16-bit;
  // 7x7 float64) in groups of as many as kNarrowSpanBytes holds per sample (twenty 7x7 float32
  // runs, five 14x14), past what L2 holds twice if need be (then nothing is prefetched).
  {256, 512,    49, N, 4, 2, 1 * MiB, kBack,  Y,  Path::kGroups,   2, 1,  1, 20,  1,  N,   Y,   N,  N,  N},
  {512, 512,    49, N, 4, 2, 1 * MiB, kBack,  Y,  Path::kGroups,   2, 1,  1, 20,  1,  N,   Y,   N,  N,  N},
  {512, 512,    49, N, 4, 2, 1 * MiB, kTrain, Y,  Path::kGroups,   2, 1,  1, 20,  1,  N,   Y,   N,  N,  N},
  {256, 512,    49, N, 4, 2, 2 * MiB, kBack,  Y,  Path::kGroups,   2, 1,  1, 20,  1,  N,   Y,   N,  N,  N},
  {512, 512,    49, N, 8, 2, 1 * MiB, kTrain, Y,  Path::kGroups,   2, 1,  1, 10,  1,  N,   Y,   N,  N,  N},
  {128, 256,   196, N, 4, 2, 1 * MiB, kTrain, Y,  Path::kGroups,   2, 1,  1,  5,  1,  Y,   Y,   Y,  N,  N},
  {256, 512,    49, N, 2, 2, 1 * MiB, kTrain, Y,  Path::kGroups,   2, 1,  1, 41,  1,  N,   Y,   N,  N,  N},
  {128, 256,   196, N, 4, 2, 1 * MiB, kBack,  Y,  Path::kGroups,   2, 1,  1,  5,  1,  Y,   Y,   N,  N,  N},
  // Small tensors run on one thread whatever was asked; few long runs are split for inference.
  { 4,    3,     5, N, 4, 8, 2 * MiB, kTrain, N,  Path::kGroups,   1, 1,  1,  3,  1,  N,   N,   Y,  N,  N},
  { 1,    3, 50176, N, 4, 2, 2 * MiB, kInfer, Y,  Path::kRuns,     2, 1,  1,  1,  3,  Y,   Y,   N,  N,  N},
  // Channel-fastest layouts go by rows whatever the op: at most one range of rows per thread.
  {32,  256,  3136, Y, 4, 2, 2 * MiB, kTrain, Y,  Path::kRows,     2, 2,  1,  1,  1,  Y,   N,   N,  N,  N},
  { 2,    7,     3, Y, 4, 2, 2 * MiB, kBack,  N,  Path::kRows,     1, 1,  1,  1,  1,  N,   N,   N,  N,  N},
};
// clang-format on

const char* op_name(OpKind op) {
  switch (op) {
    case OpKind::kForwardTraining: return "forward_training";
    case OpKind::kForwardInference: return "forward_inference";
    case OpKind::kBackward: return "backward";
  }
  return "?";
}

void check_plan_row(const PlanRow& r) {
  bn::PlanInput in;
  in.shape = bn::Shape{r.n, r.c, r.s, r.channels_last};
  in.elem_bytes = size_t(r.elem_bytes);
  in.threads = r.threads;
  in.l2_bytes = r.l2;
  in.op = r.op;
  in.stream_out = r.stream_out;
  const bn::Plan p = bn::plan_op(in);
  const std::string ctx = fmt("plan %s [%lld, %lld, %lld%s] %d-byte, %d threads, L2 %lld KiB%s", op_name(r.op),
                              (long long)r.n, (long long)r.c, (long long)r.s, r.channels_last ? " NHWC" : "",
                              r.elem_bytes, r.threads, (long long)(r.l2 / KiB), r.stream_out ? ", may stream" : "");
  check(p.path == r.path, "%s: path %s, expected %s", ctx.c_str(), bn::path_name(p.path), bn::path_name(r.path));
  check(p.nt == r.nt, "%s: nt %d, expected %d", ctx.c_str(), p.nt, r.nt);
  check(p.parts == r.parts, "%s: parts %lld, expected %lld", ctx.c_str(), (long long)p.parts, (long long)r.parts);
  check(p.wave == r.wave, "%s: wave %lld, expected %lld", ctx.c_str(), (long long)p.wave, (long long)r.wave);
  check(p.group == r.group, "%s: group %lld, expected %lld", ctx.c_str(), (long long)p.group, (long long)r.group);
  check(p.run_pieces == r.run_pieces, "%s: run_pieces %lld, expected %lld", ctx.c_str(), (long long)p.run_pieces,
        (long long)r.run_pieces);
  check(p.stream == r.stream, "%s: stream %d, expected %d", ctx.c_str(), p.stream, r.stream);
  check(p.stream_spans == r.stream_spans, "%s: stream_spans %d, expected %d", ctx.c_str(), p.stream_spans,
        r.stream_spans);
  check(p.prefetch == r.prefetch, "%s: prefetch %d, expected %d", ctx.c_str(), p.prefetch, r.prefetch);
  check(p.reverse == r.reverse, "%s: reverse %d, expected %d", ctx.c_str(), p.reverse, r.reverse);
  check(p.pipeline == r.pipeline, "%s: pipeline %d, expected %d", ctx.c_str(), p.pipeline, r.pipeline);
  check(p.fused() == (p.path == Path::kChannels || p.path == Path::kGroups), "%s: fused() disagrees with the path",
        ctx.c_str());
}

// Every part's blocks cover its share of the channel once, in order or reversed, and the parts
// together cover the channel: each of the N * S values exactly once.
void check_blocks(const bn::Shape& s, int64_t P) {
  for (int64_t c = 0; c < s.c; c += s.c - 1 > 0 ? s.c - 1 : 1) {
    std::vector<int> seen(size_t(s.n * s.c * s.s), 0), seen_rev(seen.size(), 0);
    for (int64_t part = 0; part < P; ++part) {
      bn::for_each_block(s, c, part, P, [&](int64_t off, int64_t rows, int64_t n) {
        for (int64_t r = 0; r < rows; ++r)
          for (int64_t i = 0; i < n; ++i) ++seen[size_t(off + r * s.c * s.s + i)];
      });
      bn::for_each_block_reversed(s, c, part, P, [&](int64_t off, int64_t rows, int64_t n) {
        for (int64_t r = 0; r < rows; ++r)
          for (int64_t i = 0; i < n; ++i) ++seen_rev[size_t(off + r * s.c * s.s + i)];
      });
    }
    bool ok = true;
    for (int64_t b = 0; b < s.n; ++b)
      for (int64_t ch = 0; ch < s.c; ++ch)
        for (int64_t j = 0; j < s.s; ++j) {
          const size_t q = size_t((b * s.c + ch) * s.s + j);
          const int want = ch == c ? 1 : 0;
          ok = ok && seen[q] == want && seen_rev[q] == want;
        }
    check(ok, "blocks [%lld, %lld, %lld] channel %lld in %lld parts: not every value exactly once", (long long)s.n,
          (long long)s.c, (long long)s.s, (long long)c, (long long)P);
  }
}

// The reduction chunks of a channel: fixed by the shape, each one block, in the channel's order,
// together every value once; at most kChunkElems values, or whole runs (at least one); a piece
// of a run never crosses into the next run. The parts of any P are ranges of whole chunks.
void check_chunks(const bn::Shape& s) {
  const bn::Chunking ch = bn::chunking(s);
  const int64_t m = s.n * s.s, c = s.c - 1;
  std::vector<int> seen(size_t(s.n * s.c * s.s), 0);
  int64_t next_j = 0;
  bool ok = bn::chunk_begin(s, ch, 0) == 0 && bn::chunk_begin(s, ch, ch.count) == m;
  for (int64_t k = 0; k < ch.count; ++k) {
    int64_t calls = 0;
    const int64_t j0 = bn::chunk_begin(s, ch, k);
    ok = ok && j0 == next_j;
    bn::chunk_block(s, ch, c, k, [&](int64_t off, int64_t rows, int64_t n) {
      ++calls;
      ok = ok && off == bn::channel_offset(s, c, j0) && (rows == 1 || n == s.s) && rows >= 1 && n >= 1;
      ok = ok && (rows * n <= bn::kChunkElems || (rows == 1 && n == s.s)) && (rows > 1 || j0 % s.s + n <= s.s);
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t i = 0; i < n; ++i) ++seen[size_t(off + r * s.c * s.s + i)];
      next_j = j0 + rows * n;
    });
    ok = ok && calls == 1;
  }
  for (int64_t b = 0; b < s.n; ++b)
    for (int64_t j = 0; j < s.s; ++j) ok = ok && seen[size_t((b * s.c + c) * s.s + j)] == 1;
  check(ok && next_j == m, "chunks of [%lld, %lld, %lld] (%lld chunks): not one block each, in order, every value once",
        (long long)s.n, (long long)s.c, (long long)s.s, (long long)ch.count);
  for (int64_t P : {1, 2, 3, 7}) {
    for (int64_t part = 0; part < P; ++part) {
      int64_t k0, k1;
      bn::part_range(ch.count, part, P, &k0, &k1);
      const bn::PartBlocks b = bn::part_blocks(s, part, P);
      check(b.lo == bn::chunk_begin(s, ch, k0) && b.head + b.full * s.s + b.tail == bn::chunk_begin(s, ch, k1) - b.lo,
            "part %lld of %lld of [%lld, %lld, %lld] is not its chunks %lld..%lld", (long long)part, (long long)P,
            (long long)s.n, (long long)s.c, (long long)s.s, (long long)k0, (long long)k1);
    }
  }
}

// A residency probe that counts its calls (the memory policy's system call, stubbed).
int g_probe_calls = 0;
bool probe_resident(const void*) { return ++g_probe_calls, true; }
bool probe_absent(const void*) { return ++g_probe_calls, false; }

}  // namespace

void test_machine_facts() {
  check(bn::l2_bytes_from(0) == MiB, "l2_bytes_from(0) != 1 MiB (unknown)");
  check(bn::l2_bytes_from(-1) == MiB, "l2_bytes_from(-1) != 1 MiB (unknown)");
  check(bn::l2_bytes_from(100000) == 256 * KiB, "l2_bytes_from(100000) not clamped to 256 KiB");
  check(bn::l2_bytes_from(long(2 * MiB)) == 2 * MiB, "l2_bytes_from(2 MiB) != 2 MiB");
  check(bn::l2_bytes_from(long(64 * MiB)) == 4 * MiB, "l2_bytes_from(64 MiB) not clamped to 4 MiB");
  struct SizeRow {
    const char* text;
    int64_t want;
  };
  const SizeRow size_rows[] = {{"48K", 48 * KiB}, {"1024K\n", MiB}, {"32768K", 32 * MiB}, {"2M", 2 * MiB},
                               {"512", 512},      {"1G", 1024 * MiB}, {"", -1},           {"K", -1},
                               {"12Q", -1},       {"-4K", -1},        {nullptr, -1},      {"99999999999G", -1}};
  for (const SizeRow& r : size_rows) {
    check(bn::sysfs_size_bytes(r.text) == r.want, "sysfs_size_bytes(%s) = %lld, expected %lld", r.text ? r.text : "null",
          (long long)bn::sysfs_size_bytes(r.text), (long long)r.want);
  }
  struct ListRow {
    const char* text;
    int want;
  };
  const ListRow list_rows[] = {{"0", 1},     {"0-1\n", 2}, {"0,2-3", 3}, {"0-7,16-23", 16}, {"", -1},
                               {"3-1", -1},  {"0-", -1},   {"a", -1},    {"0,,1", -1},      {nullptr, -1}};
  for (const ListRow& r : list_rows) {
    check(bn::cpu_list_count(r.text) == r.want, "cpu_list_count(%s) = %d, expected %d", r.text ? r.text : "null",
          bn::cpu_list_count(r.text), r.want);
  }
  // cpu0's caches: sysfs first, sysconf per level when sysfs lacks it. This VM's case: sysfs says
  // 1 MiB L2 and 32 MiB L3 shared by 2 CPUs, sysconf a 384 MiB L3.
  const bn::SysfsCache vm[] = {{"1", "Data", "48K", "0"},
                               {"1", "Instruction", "32K", "0"},
                               {"2", "Unified", "1024K", "0"},
                               {"3", "Unified", "32768K", "0-1"}};
  const bn::SysfsCache no_l3[] = {{"1", "Data", "32K", "0"}, {"2", "Unified", "2048K", "0"}};
  const bn::SysfsCache instr_only[] = {{"2", "Instruction", "512K", "0"}, {"3", "Unified", "bad", "0-3"}};
  struct CacheRow {
    const char* name;
    const bn::SysfsCache* e;
    int n;
    long sc_l2, sc_l3;
    int64_t l2, l3;
    int sharing;
    const char* source;
  };
  const CacheRow cache_rows[] = {
      {"vm", vm, 4, long(MiB), long(384 * MiB), MiB, 32 * MiB, 2, "sysfs"},
      {"vm without sysconf", vm, 4, 0, 0, MiB, 32 * MiB, 2, "sysfs"},
      {"no L3 in sysfs", no_l3, 2, long(MiB), long(8 * MiB), 2 * MiB, 8 * MiB, 1, "sysfs"},
      {"no sysfs", nullptr, 0, long(2 * MiB), long(260 * MiB), 2 * MiB, 260 * MiB, 1, "sysconf"},
      {"instruction L2, bad L3 size", instr_only, 2, long(512 * KiB), 0, 512 * KiB, 0, 1, "sysconf"},
      {"nothing", nullptr, 0, 0, -1, MiB, 0, 1, "default"},
      {"huge L2 clamped", nullptr, 0, long(64 * MiB), 0, 4 * MiB, 0, 1, "sysconf"},
  };
  for (const CacheRow& r : cache_rows) {
    const bn::CacheFacts f = bn::cache_facts_from(r.e, r.n, r.sc_l2, r.sc_l3);
    check(f.l2_bytes == r.l2 && f.l3_bytes == r.l3 && f.l3_sharing == r.sharing && std::strcmp(f.source, r.source) == 0,
          "cache_facts_from(%s) = L2 %lld, L3 %lld / %d, %s; expected L2 %lld, L3 %lld / %d, %s", r.name,
          (long long)f.l2_bytes, (long long)f.l3_bytes, f.l3_sharing, f.source, (long long)r.l2, (long long)r.l3,
          r.sharing, r.source);
  }
  struct EnvRow {
    const char* env;
    int64_t want;
  };
  const EnvRow stream_rows[] = {{nullptr, 8 * MiB}, {"", 8 * MiB}, {"0", 0}, {"1048576", MiB},
                                {"abc", 8 * MiB},   {"-5", 8 * MiB}, {"12x", 12}};
  for (const EnvRow& r : stream_rows) {
    check(bn::stream_min_bytes_from(r.env) == r.want, "stream_min_bytes_from(%s) = %lld, expected %lld",
          r.env ? r.env : "null", (long long)bn::stream_min_bytes_from(r.env), (long long)r.want);
  }
  struct ThreadRow {
    const char* env;
    unsigned online;
    int want;
  };
  const ThreadRow thread_rows[] = {{nullptr, 8, 8}, {"4", 8, 4}, {"4,2", 8, 4}, {"0", 8, 8},
                                   {"5000", 8, 8},  {"x", 0, 1}, {nullptr, 0, 1}};
  for (const ThreadRow& r : thread_rows) {
    check(bn::default_threads_from(r.env, r.online) == r.want, "default_threads_from(%s, %u) = %d, expected %d",
          r.env ? r.env : "null", r.online, bn::default_threads_from(r.env, r.online), r.want);
  }
  const bn::MachineFacts& f = bn::machine_facts();
  check(f.page_resident != nullptr, "machine facts without a residency probe");
  check(f.l2_bytes >= 256 * KiB && f.l2_bytes <= 4 * MiB, "machine facts: L2 %lld outside its clamp",
        (long long)f.l2_bytes);
  const bn::CacheSizes cs = bn::cache_sizes();
  check(cs.l2_bytes == f.l2_bytes && cs.l3_bytes == f.l3_bytes && cs.l3_bytes >= 0 && cs.l3_sharing >= 1 &&
            cs.source != nullptr,
        "cache_sizes() does not report the machine facts");
  check(f.default_threads >= 1 && bn::default_num_threads() == f.default_threads,
        "default_num_threads() is not the facts' default_threads");
  std::vector<char> touched(size_t(64 * KiB), 1);
  check(f.page_resident(touched.data() + 32 * KiB), "a page just written is not resident");

  // The memory policy asks the system only for outputs large enough to stream.
  bn::MachineFacts t = f;
  t.stream_min_bytes = 1000;
  t.page_resident = probe_resident;
  g_probe_calls = 0;
  check(!bn::stream_output(t, touched.data(), 999) && g_probe_calls == 0,
        "stream_output below the threshold streams or asks the system");
  check(bn::stream_output(t, touched.data(), 1000) && g_probe_calls == 1,
        "stream_output at the threshold does not stream a resident output (or asks more than once)");
  t.page_resident = probe_absent;
  check(!bn::stream_output(t, touched.data(), 5000), "stream_output streams into pages not resident");

  // The group writers' output prefetch: the next sample's span (C * S on) of a fresh output
  // written with plain stores; none at the last sample, for a streamed output or an input.
  const bn::Shape g{3, 10, 49};
  bn::Plan plain_spans, streamed;
  streamed.stream_spans = true;
  const int64_t step = g.c * g.s;
  check(bn::group_out_next(g, plain_spans, true, 4 * g.s) == size_t(step) &&
            bn::group_out_next(g, plain_spans, true, step + 4 * g.s) == size_t(step),
        "group_out_next: not C * S for a fresh output before the last sample");
  check(bn::group_out_next(g, plain_spans, true, 2 * step + 4 * g.s) == 0,
        "group_out_next: a request past the last sample");
  check(bn::group_out_next(g, streamed, true, 0) == 0 && bn::group_out_next(g, plain_spans, false, 0) == 0,
        "group_out_next: a request for a streamed output or an input");
}

// The streamed rows tiles (store_alias.h): the output at a page boundary, an input K bytes past
// it (negative: before), rows of `row` bytes, a tile row of `span` bytes (128 at AVX2 float32,
// 256 at AVX-512), at most 4 rows.
struct TileRow {
  int64_t k_bytes;
  size_t row, span;
  size_t want;
};
constexpr TileRow kTileTable[] = {
    // 4 KiB rows (1024 float32 channels): every row a page on, two spans either side, bounds included
    {0, 4096, 128, 1}, {16, 4096, 128, 1}, {128, 4096, 128, 1}, {256, 4096, 128, 1}, {260, 4096, 128, 4},
    {-256, 4096, 128, 1}, {-260, 4096, 128, 4}, {512, 4096, 256, 1}, {516, 4096, 256, 4},
    // 8 KiB rows: the same
    {0, 8192, 128, 1}, {192, 8192, 128, 1}, {384, 8192, 128, 4},
    // 2 KiB rows: row r + 1 is half a page on (one span, bound excluded), row r + 2 a page on
    {0, 2048, 128, 2}, {256, 2048, 128, 2}, {320, 2048, 128, 4}, {-2048, 2048, 128, 1}, {-2048 + 128, 2048, 128, 3},
    {-2048 + 127, 2048, 128, 1},
    // 1 KiB and 256 B rows: rows within a page of each other; one span, bound excluded
    {0, 1024, 128, 4}, {-1024, 1024, 128, 1}, {-3072, 1024, 128, 3}, {-3072 + 128, 1024, 128, 4},
    {0, 256, 128, 4}, {-256, 256, 128, 1}, {-256 + 128, 256, 128, 4},
};

void test_tiles() {
  const uintptr_t y = uintptr_t(1) << 20;
  for (const TileRow& r : kTileTable) {
    const uintptr_t in[3] = {uintptr_t(intptr_t(y) + r.k_bytes), 0, 0};
    const size_t got = bn::alias_free_tile_rows(y, r.row, r.span, in, 4);
    check(got == r.want, "alias_free_tile_rows(input %lld B from the output, rows of %zu B, span %zu B) = %zu, expected %zu",
          (long long)r.k_bytes, r.row, r.span, got, r.want);
  }
  // Every input counts (a null one does not): the second input's offset decides here.
  const uintptr_t two[3] = {y + 1024, y + 64, 0};
  check(bn::alias_free_tile_rows(y, 4096, 128, two, 4) == 1, "alias_free_tile_rows: the second input not checked");
  const uintptr_t none[3] = {0, 0, 0};
  check(bn::alias_free_tile_rows(y, 4096, 128, none, 4) == 4, "alias_free_tile_rows: no input, not 4 rows");
}

void test_planner() {
  for (const PlanRow& r : kPlanTable) check_plan_row(r);
  test_tiles();
  // threads_for: one thread below the serial threshold, else what was asked (at least 1).
  check(bn::threads_for(bn::Shape{1, 1, bn::kSerialBelow - 1}, 8) == 1, "threads_for below kSerialBelow != 1");
  check(bn::threads_for(bn::Shape{1, 1, bn::kSerialBelow}, 8) == 8, "threads_for at kSerialBelow != requested");
  check(bn::threads_for(bn::Shape{1, 1, bn::kSerialBelow}, 0) == 1, "threads_for(0 requested) != 1");
  check(bn::useful_threads(bn::Shape{1, 1, bn::kSerialBelow}, 3) == 3, "useful_threads is not threads_for");
  // The planner is a pure function: the same input, the same plan.
  bn::PlanInput in;
  in.shape = bn::Shape{32, 64, 12544};
  in.threads = 2;
  in.l2_bytes = 2 * MiB;
  const bn::Plan a = bn::plan_op(in), b = bn::plan_op(in);
  check(std::memcmp(&a, &b, sizeof a) == 0 || (a.path == b.path && a.parts == b.parts && a.wave == b.wave),
        "plan_op gave two plans for one input");
  for (int64_t P : {1, 2, 3, 5}) {
    check_blocks(bn::Shape{3, 5, 17}, P);
    check_blocks(bn::Shape{2, 3, 100}, P);
    check_blocks(bn::Shape{4, 2, 1}, P);
    check_blocks(bn::Shape{2, 3, 10000}, P);  // runs cut in pieces
    check_blocks(bn::Shape{40, 2, 300}, P);   // chunks of 13 whole runs
  }
  for (const bn::Shape& s : {bn::Shape{3, 5, 17}, bn::Shape{2, 3, 10000}, bn::Shape{40, 2, 300}, bn::Shape{5, 1, 4096},
                             bn::Shape{5, 1, 4097}, bn::Shape{1, 2, 12289}, bn::Shape{7, 2, 2049}}) {
    check_chunks(s);
  }
  // Rows chunks: whole rows, at least kMinChunkRows, at most kMaxRowChunks of them.
  for (const bn::Shape& s : {bn::Shape{4096, 37, 1}, bn::Shape{300, 2048, 1}, bn::Shape{5, 100000, 1},
                             bn::Shape{1, 16, 16384, true}}) {
    const bn::Chunking ch = bn::row_chunking(s);
    check(ch.runs >= bn::kMinChunkRows && ch.count <= bn::kMaxRowChunks && ch.count * ch.runs >= s.rows() &&
              (ch.count - 1) * ch.runs < s.rows(),
          "row_chunking [%lld, %lld, %lld]: %lld rows x %lld chunks", (long long)s.n, (long long)s.c, (long long)s.s,
          (long long)ch.runs, (long long)ch.count);
  }
  int64_t covered = 0;
  for (int64_t p = 0; p < 3; ++p) {
    int64_t lo, hi;
    bn::part_range(10, p, 3, &lo, &hi);
    check(lo == covered && hi > lo, "part_range(10, %lld, 3) = [%lld, %lld)", (long long)p, (long long)lo,
          (long long)hi);
    covered = hi;
  }
  check(covered == 10, "part_range parts do not cover the rows");
}

}  // namespace bntest
