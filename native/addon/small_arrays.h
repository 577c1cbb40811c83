// Small arrays of a call (saved statistics, parameter snapshots, parameter gradients) are made
// here, not by V8: V8 scavenges before each backing store it allocates itself while 32 MiB or
// more of ArrayBuffers are young (Heap::AllocateExternalBackingStore), and fresh outputs are such
// buffers, so a call's first small array after a large fresh output started a scavenge.
// External buffers: zero-filled, freed by their finalizer, marked untransferable (Node frees an
// environment's external buffers when it exits, wherever they went).
#pragma once

#include <napi.h>

#include <cstddef>

namespace bnaddon {

// Larger arrays are left to V8: they are not "small", and there are few of them.
constexpr size_t kSmallArrayMaxBytes = size_t(1) << 20;

// takeSmall(bytes): a zero-filled ArrayBuffer of 1 to kSmallArrayMaxBytes bytes, or undefined
// (another size, or external buffers forbidden): the caller then allocates it the plain way.
Napi::Value TakeSmall(const Napi::CallbackInfo& info);

}  // namespace bnaddon
