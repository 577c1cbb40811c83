#include "output_pool.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "env_state.h"
#include "errors.h"

namespace bnaddon {
namespace {

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

size_t round_to_pages(size_t bytes) { return (bytes + kPoolBlockAlign - 1) / kPoolBlockAlign * kPoolBlockAlign; }

// The memory this process may use: physical memory, or less under a cgroup v2 limit.
uint64_t usable_memory() {
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  uint64_t mem = pages > 0 && page > 0 ? uint64_t(pages) * uint64_t(page) : 0;
  std::ifstream f("/sys/fs/cgroup/memory.max");
  uint64_t limit = 0;
  if (f >> limit && limit > 0 && (mem == 0 || limit < mem)) mem = limit;  // "max" (no limit) fails to parse
  return mem;
}

// BATCHNORM_OUTPUT_POOL_BYTES (a decimal byte count; 0 turns the pool off), else a quarter of the
// usable memory: room for a whole step of a large network's outputs, freed again an idle time
// after the loop stops. An unreadable value keeps the default (as BATCHNORM_SIMD does).
size_t initial_max_bytes() {
  if (const char* v = std::getenv("BATCHNORM_OUTPUT_POOL_BYTES")) {
    char* end = nullptr;
    const unsigned long long n = std::strtoull(v, &end, 10);
    if (*v >= '0' && *v <= '9' && end != v && *end == '\0') return size_t(n);
  }
  return size_t(usable_memory() / 4);
}

struct Block {
  void* data;
  size_t capacity;
  double idle_since;
};

class Pool;

// What a lent block's finalizer needs: the block, and its pool kept alive until it comes back.
struct Lease {
  Block block;
  std::shared_ptr<Pool> pool;
  // Set once its ArrayBuffer exists. Node calls the finalizer at once when it fails to create
  // the buffer (too large): TakeOutput then still owns the lease and the block.
  bool live = false;
};

class Pool {
 public:
  explicit Pool(size_t max_bytes) : max_bytes_(max_bytes) {}

  // An idle block that fits `bytes` (the smallest), or a new one if the bound allows; false
  // otherwise. *idle_change: the change of idle bytes, for the caller to report.
  bool take(size_t bytes, Block* out, int64_t* idle_change) {
    std::lock_guard<std::mutex> lock(mu_);
    *idle_change = 0;
    if (closed_ || !external_ok_ || bytes < kPoolMinBytes || max_bytes_ == 0) return false;
    last_take_ = now_seconds();
    const size_t cap = round_to_pages(bytes);
    auto best = idle_.end();
    for (auto it = idle_.begin(); it != idle_.end(); ++it) {
      if (it->capacity >= cap && it->capacity - cap <= cap / kPoolSlackDivisor &&
          (best == idle_.end() || it->capacity < best->capacity)) {
        best = it;
      }
    }
    if (best != idle_.end()) {
      *out = *best;
      idle_.erase(best);
      idle_bytes_ -= out->capacity;
      lent_bytes_ += out->capacity;
      ++lent_blocks_;
      ++reuses_;
      *idle_change = sync_report_locked();
      return true;
    }
    if (idle_bytes_ + lent_bytes_ + cap > max_bytes_) {
      // Full: make room from blocks unused for the idle time (left by outputs of another size).
      free_idle_locked(now_seconds() - idle_seconds_);
      *idle_change = sync_report_locked();
      if (idle_bytes_ + lent_bytes_ + cap > max_bytes_) {
        ++over_bound_;
        return false;
      }
    }
    const size_t allowance =
        std::max({max_bytes_ / kNewBytesDivisor, kNewBytesFloor, kWorkingSets * returning_peak_});
    if (new_since_return_ + cap > allowance) {
      ++awaiting_returns_;
      return false;
    }
    void* p = nullptr;
    if (posix_memalign(&p, kPoolBlockAlign, cap) != 0) return false;
    *out = Block{p, cap, 0};
    lent_bytes_ += cap;
    ++lent_blocks_;
    ++allocations_;
    new_since_return_ += cap;
    return true;
  }

  // A lent block that could not be handed out after all (creating its ArrayBuffer failed).
  void untake(const Block& b, bool forbid_external) {
    std::lock_guard<std::mutex> lock(mu_);
    lent_bytes_ -= b.capacity;
    --lent_blocks_;
    if (forbid_external) external_ok_ = false;
    std::free(b.data);
  }

  // A lent block's ArrayBuffer is gone: keep it idle if the bound allows, else free it. Not
  // reported to V8 here but at the next take, trim or set (sync_report_locked).
  void give_back(const Block& b) {
    std::lock_guard<std::mutex> lock(mu_);
    returning_peak_ = std::max(returning_peak_, lent_bytes_);
    lent_bytes_ -= b.capacity;
    --lent_blocks_;
    new_since_return_ = 0;
    if (closed_ || idle_bytes_ + lent_bytes_ + b.capacity > max_bytes_) {
      std::free(b.data);
      ++frees_;
      return;
    }
    idle_.push_back(Block{b.data, b.capacity, now_seconds()});
    idle_bytes_ += b.capacity;
  }

  // New bound and idle time; frees idle blocks (oldest first) until idle + lent fit the bound.
  // Returns the change of idle bytes to report.
  int64_t set(size_t max_bytes, double idle_seconds) {
    std::lock_guard<std::mutex> lock(mu_);
    max_bytes_ = max_bytes;
    idle_seconds_ = idle_seconds;
    returning_peak_ = 0;
    std::sort(idle_.begin(), idle_.end(), [](const Block& a, const Block& b) { return a.idle_since < b.idle_since; });
    size_t k = 0;
    while (k < idle_.size() && idle_bytes_ + lent_bytes_ > max_bytes_) {
      std::free(idle_[k].data);
      idle_bytes_ -= idle_[k].capacity;
      ++frees_;
      ++k;
    }
    idle_.erase(idle_.begin(), idle_.begin() + long(k));
    return sync_report_locked();
  }

  // Frees every idle block once the pool has served nothing for its idle time (the loop that used
  // it stopped). A loop whose steps take longer than that keeps its blocks while it runs. Returns
  // the change of idle bytes to report; *holding: any block left.
  int64_t trim(bool* holding) {
    std::lock_guard<std::mutex> lock(mu_);
    const double now = now_seconds();
    if (now - last_take_ >= idle_seconds_) {
      free_idle_locked(now);
      returning_peak_ = 0;  // the loop that used the pool stopped
    }
    *holding = !idle_.empty() || lent_blocks_ > 0;
    return sync_report_locked();
  }

  // The environment is going away: free the idle blocks; lent ones are freed when they come back.
  void close() {
    std::lock_guard<std::mutex> lock(mu_);
    closed_ = true;
    for (const Block& b : idle_) std::free(b.data);
    frees_ += idle_.size();
    idle_.clear();
    idle_bytes_ = 0;
  }

  Napi::Object stats(Napi::Env env) {
    std::lock_guard<std::mutex> lock(mu_);
    Napi::Object o = Napi::Object::New(env);
    o.Set("enabled", !closed_ && external_ok_ && max_bytes_ > 0);
    o.Set("externalBuffers", external_ok_);
    o.Set("maxBytes", double(max_bytes_));
    o.Set("idleSeconds", idle_seconds_);
    o.Set("minOutputBytes", double(kPoolMinBytes));
    o.Set("idleBytes", double(idle_bytes_));
    o.Set("idleBlocks", double(idle_.size()));
    o.Set("lentBytes", double(lent_bytes_));
    o.Set("lentBlocks", double(lent_blocks_));
    o.Set("reuses", double(reuses_));
    o.Set("allocations", double(allocations_));
    o.Set("overBound", double(over_bound_));
    o.Set("awaitingReturns", double(awaiting_returns_));
    o.Set("frees", double(frees_));
    return o;
  }

 private:
  // The change of idle bytes since V8 was last told, now told. A block's return is not reported
  // from its finalizer: V8 lowers its external-memory limit as it sweeps the dead ArrayBuffers,
  // and each return reported after that started a collection of its own. Reported at the next
  // take, trim or set, the returns of a collection come as one change.
  int64_t sync_report_locked() {
    const int64_t d = int64_t(idle_bytes_) - int64_t(reported_idle_);
    reported_idle_ = idle_bytes_;
    return d;
  }

  // Frees the idle blocks that became idle at or before `since`.
  void free_idle_locked(double since) {
    auto stale = [&](const Block& b) { return b.idle_since <= since; };
    for (const Block& b : idle_) {
      if (stale(b)) {
        std::free(b.data);
        idle_bytes_ -= b.capacity;
        ++frees_;
      }
    }
    idle_.erase(std::remove_if(idle_.begin(), idle_.end(), stale), idle_.end());
  }

  std::mutex mu_;  // finalizers run on the environment's thread, but never rely on it
  size_t max_bytes_;
  double idle_seconds_ = kIdleSeconds;
  std::vector<Block> idle_;
  size_t idle_bytes_ = 0, lent_bytes_ = 0, lent_blocks_ = 0;
  size_t reported_idle_ = 0;     // idle bytes V8 was told of (sync_report_locked)
  size_t new_since_return_ = 0;  // bytes of new blocks since a block last came back
  size_t returning_peak_ = 0;    // the most bytes lent when a block came back (since set() or an idle trim)
  uint64_t reuses_ = 0, allocations_ = 0, over_bound_ = 0, awaiting_returns_ = 0, frees_ = 0;
  double last_take_ = 0;
  bool closed_ = false;
  bool external_ok_ = true;
};

// One pool per environment, found by its napi_env; created on first use, closed by the
// environment's cleanup hook. The map is never destroyed: a worker's teardown may still look it up
// while the process exits.
std::mutex pools_mu;
auto* pools = new std::unordered_map<napi_env, std::shared_ptr<Pool>>();

void close_pool(void* arg) {
  const napi_env env = static_cast<napi_env>(arg);
  std::shared_ptr<Pool> pool;
  {
    std::lock_guard<std::mutex> lock(pools_mu);
    auto it = pools->find(env);
    if (it == pools->end()) return;
    pool = std::move(it->second);
    pools->erase(it);
  }
  pool->close();
}

std::shared_ptr<Pool> pool_of(napi_env env) {
  std::lock_guard<std::mutex> lock(pools_mu);
  auto it = pools->find(env);
  if (it != pools->end()) return it->second;
  auto pool = std::make_shared<Pool>(initial_max_bytes());
  if (napi_add_env_cleanup_hook(env, close_pool, env) != napi_ok) return nullptr;
  pools->emplace(env, pool);
  return pool;
}

// Idle blocks are memory V8 cannot see; lent ones it counts as their ArrayBuffers' size.
void report_idle(napi_env env, int64_t change) {
  int64_t ignored = 0;
  if (change != 0) napi_adjust_external_memory(env, change, &ignored);
}

void finalize_block(napi_env /*env*/, void* /*data*/, void* hint) {
  if (!static_cast<Lease*>(hint)->live) return;  // creation failed: TakeOutput cleans up
  std::unique_ptr<Lease> lease(static_cast<Lease*>(hint));
  lease->pool->give_back(lease->block);
}

}  // namespace

Napi::Value TakeOutput(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const size_t bytes = byte_count_arg(env, info[0], "takeOutput: bytes");
  std::shared_ptr<Pool> pool = pool_of(env);
  Block b{};
  int64_t idle_change = 0;
  const bool took = pool && pool->take(bytes, &b, &idle_change);
  report_idle(env, idle_change);
  if (!took) return env.Undefined();
  auto lease = std::make_unique<Lease>(Lease{b, pool});
  napi_value ab = nullptr;
  const napi_status st = napi_create_external_arraybuffer(env, b.data, bytes, finalize_block, lease.get(), &ab);
  if (st != napi_ok) {
    // Electron's sandbox forbids external buffers: off for good. Anything else: this call only.
    napi_value pending = nullptr;
    napi_get_and_clear_last_exception(env, &pending);
    pool->untake(b, st == napi_no_external_buffers_allowed);
    return env.Undefined();
  }
  lease.release()->live = true;  // owned by the finalizer now
  Napi::Value buffer(env, ab);
  if (EnvState* es = env_state(env); es && !es->mark_untransferable.IsEmpty()) {
    // Transferred to another thread, the block would outlive this environment's pool.
    es->mark_untransferable.Call({buffer});
  }
  return buffer;
}

Napi::Value SetOutputPool(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const size_t max_bytes = byte_count_arg(env, info[0], "setOutputPool: maxBytes");
  const double idle = info[1].IsUndefined() ? kIdleSeconds : info[1].ToNumber().DoubleValue();
  if (!(idle >= 0 && idle <= 1e9)) {
    throw_error(env, ErrorKind::kRange, "ERR_BN_OUT_OF_RANGE", "setOutputPool: idleSeconds must be a number in [0, 1e9]");
  }
  if (std::shared_ptr<Pool> pool = pool_of(env)) report_idle(env, pool->set(max_bytes, idle));
  return env.Undefined();
}

Napi::Value OutputPoolStats(const Napi::CallbackInfo& info) {
  std::shared_ptr<Pool> pool = pool_of(info.Env());
  return pool ? Napi::Value(pool->stats(info.Env())) : info.Env().Undefined();
}

Napi::Value OutputPoolTrim(const Napi::CallbackInfo& info) {
  std::shared_ptr<Pool> pool = pool_of(info.Env());
  bool holding = false;
  if (pool) report_idle(info.Env(), pool->trim(&holding));
  return Napi::Boolean::New(info.Env(), holding);
}

}  // namespace bnaddon
