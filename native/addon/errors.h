// JS errors thrown by the binding: TypeError / RangeError / Error with a stable `.code`.
// The TypeScript facade validates first and throws its own subclasses; these are the last line of
// defence, so that no argument from JavaScript can crash the process.
#pragma once

#include <napi.h>

#include <string>

#include "batchnorm.h"

namespace bnaddon {

[[noreturn]] void throw_type_error(Napi::Env env, const std::string& code, const std::string& msg);
[[noreturn]] void throw_range_error(Napi::Env env, const std::string& code, const std::string& msg);
// The JS error for a core Status (RangeError for values, TypeError for missing buffers, Error
// otherwise), with .code set. Does not throw: async completions reject with it.
Napi::Error status_error(Napi::Env env, bn::Status st, const char* where);
// Maps a core Status to the matching JS error (RangeError for values, Error otherwise).
[[noreturn]] void throw_status(Napi::Env env, bn::Status st, const char* where);
void check_status(Napi::Env env, bn::Status st, const char* where);

}  // namespace bnaddon
