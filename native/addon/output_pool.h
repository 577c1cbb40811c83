// The output pool: large outputs the library allocates itself (no `out`) come from recently freed
// blocks instead of fresh memory, so a training loop does not fault in every page of every output
// on every step (the OS takes freed large blocks back at once).
//
// A pooled output is an external ArrayBuffer over a block of this pool; its finalizer (run by Node
// on the environment's own thread, after the ArrayBuffer and its backing store are gone) puts the
// block back. So a block is never handed out while JavaScript, or anything holding the backing
// store, can still reach it. One pool per environment (main thread, each worker): no block crosses
// threads, pooled outputs are marked untransferable, and a worker's pool goes with it.
//
// Bounded: the blocks a pool holds, idle or lent, never exceed its maxBytes; a request that would
// pass it first frees idle blocks unused for the idle time, else gets a plain allocation. Idle
// blocks are reported to V8 as external memory (lent ones V8 counts itself, as any ArrayBuffer),
// those that came back at the next take, trim or set rather than from their finalizers, and all are
// freed once the pool has served nothing for its idle time (outputPoolTrim, called from the
// facade's timer). Where external ArrayBuffers are forbidden (Electron's sandbox),
// the pool turns itself off and callers fall back to plain allocation.
#pragma once

#include <napi.h>

#include <cstddef>

namespace bnaddon {

// Smaller outputs come from malloc's own free lists without page faults: not worth a pool block.
constexpr size_t kPoolMinBytes = size_t(1) << 20;
// Blocks are page-aligned (and their capacity a whole number of pages).
constexpr size_t kPoolBlockAlign = 4096;
// An idle block whose capacity exceeds a request by more than 1/kPoolSlackDivisor is not used for it.
constexpr size_t kPoolSlackDivisor = 8;
// Default idle time: a pool that served nothing this long frees its idle blocks (outputPoolTrim);
// a full pool frees the idle blocks unused this long to make room. Long enough for a loop that
// does other work between its steps (jemalloc's dirty pages decay over 10 s).
constexpr double kIdleSeconds = 30.0;
// Blocks come back only when the event loop turns (Node runs the finalizers there): a loop that
// never yields would turn the whole bound into dead blocks and make every output new memory. So
// between two returns a pool allocates at most maxBytes / kNewBytesDivisor (at least
// kNewBytesFloor) in new blocks; past that, plain allocations until a block comes back. A loop
// whose blocks have come back may allocate kWorkingSets times what it held when they did: when V8
// collects a step's outputs late, they are still lent while the next step takes its own, and that
// step gets new blocks, not plain memory faulted in page by page.
constexpr size_t kNewBytesDivisor = 8;
constexpr size_t kNewBytesFloor = size_t(64) << 20;
constexpr size_t kWorkingSets = 2;

// takeOutput(bytes): an ArrayBuffer of exactly `bytes` from the pool, or undefined (too small, pool
// off or full, external buffers forbidden): the caller then allocates it the plain way.
Napi::Value TakeOutput(const Napi::CallbackInfo& info);
// setOutputPool(maxBytes, idleSeconds): 0 bytes turns the pool off; idle blocks over the new bound
// are freed now, lent ones when they come back.
Napi::Value SetOutputPool(const Napi::CallbackInfo& info);
// outputPoolStats(): this environment's pool.
Napi::Value OutputPoolStats(const Napi::CallbackInfo& info);
// outputPoolTrim(): frees the idle blocks if the pool served nothing for its idle time; returns
// whether the pool still holds any block (idle or lent), i.e. whether to ask again later.
Napi::Value OutputPoolTrim(const Napi::CallbackInfo& info);

}  // namespace bnaddon
