// Errors thrown by the binding: the facade's own classes (BatchNormTypeError, BatchNormRangeError,
// BatchNormError, handed over by setErrorClasses), each with a stable `.code`; plain TypeError /
// RangeError / Error with the same code before that (the addon loaded without the facade).
#pragma once

#include <napi.h>

#include <string>

#include "batchnorm.h"

namespace bnaddon {

enum class ErrorKind { kType, kRange, kState };

Napi::Error make_error(Napi::Env env, ErrorKind kind, const char* code, const std::string& msg);
[[noreturn]] void throw_error(Napi::Env env, ErrorKind kind, const char* code, const std::string& msg);

// The JS error for a core Status; does not throw (async completions reject with it).
Napi::Error status_error(Napi::Env env, bn::Status st, const std::string& fn);
void check_status(Napi::Env env, bn::Status st, const std::string& fn);

// A byte count argument of the plain functions (not call objects): a non-negative safe integer;
// `what` names it in the message ("takeOutput: bytes").
size_t byte_count_arg(Napi::Env env, const Napi::Value& v, const std::string& what);

// setErrorClasses({ TypeError, RangeError, Error }).
Napi::Value SetErrorClasses(const Napi::CallbackInfo& info);

}  // namespace bnaddon
