// The conversion calls (lib/binding.ts: convertF32ToBF16 & co.): { fn, src, out } -> writes out.
#pragma once

#include <napi.h>

namespace bnaddon {

Napi::Value ConvertF32ToBF16(const Napi::CallbackInfo& info);
Napi::Value ConvertBF16ToF32(const Napi::CallbackInfo& info);
Napi::Value ConvertF32ToF16(const Napi::CallbackInfo& info);
Napi::Value ConvertF16ToF32(const Napi::CallbackInfo& info);

}  // namespace bnaddon
