#include "errors.h"

#include <cstdint>

#include "env_state.h"

namespace bnaddon {
namespace {

Napi::FunctionReference* facade_class(Napi::Env env, ErrorKind kind) {
  EnvState* st = env_state(env);
  if (st == nullptr) return nullptr;
  Napi::FunctionReference* ref = kind == ErrorKind::kType    ? &st->type_error
                                 : kind == ErrorKind::kRange ? &st->range_error
                                                             : &st->error;
  return ref->IsEmpty() ? nullptr : ref;
}

Napi::Error plain_error(Napi::Env env, ErrorKind kind, const char* code, const std::string& msg) {
  Napi::Error err = kind == ErrorKind::kType    ? Napi::TypeError::New(env, msg)
                    : kind == ErrorKind::kRange ? Napi::Error(Napi::RangeError::New(env, msg))
                                                : Napi::Error::New(env, msg);
  err.Set("code", Napi::String::New(env, code));
  return err;
}

}  // namespace

Napi::Error make_error(Napi::Env env, ErrorKind kind, const char* code, const std::string& msg) {
  if (Napi::FunctionReference* cls = facade_class(env, kind)) {
    Napi::Object e = cls->New({Napi::String::New(env, code), Napi::String::New(env, msg)});
    return Napi::Error(env, e);
  }
  return plain_error(env, kind, code, msg);
}

void throw_error(Napi::Env env, ErrorKind kind, const char* code, const std::string& msg) {
  throw make_error(env, kind, code, msg);
}

Napi::Error status_error(Napi::Env env, bn::Status st, const std::string& fn) {
  const std::string msg = fn + ": " + bn::status_message(st);
  switch (st) {
    case bn::Status::kBadShape: return make_error(env, ErrorKind::kRange, "ERR_BN_BAD_SHAPE", msg);
    case bn::Status::kTooFewValues: return make_error(env, ErrorKind::kRange, "ERR_BN_TOO_FEW_VALUES", msg);
    case bn::Status::kBadEps:
    case bn::Status::kBadMomentum:
    case bn::Status::kBadThreads: return make_error(env, ErrorKind::kRange, "ERR_BN_OUT_OF_RANGE", msg);
    case bn::Status::kUnsupported: return make_error(env, ErrorKind::kRange, "ERR_BN_UNSUPPORTED", msg);
    case bn::Status::kNullPointer:
    case bn::Status::kMismatchedStats: return make_error(env, ErrorKind::kType, "ERR_BN_INVALID_ARG_TYPE", msg);
    case bn::Status::kOutOfMemory: return make_error(env, ErrorKind::kState, "ERR_BN_OUT_OF_MEMORY", msg);
    case bn::Status::kBadEpilogue: return make_error(env, ErrorKind::kRange, "ERR_BN_UNSUPPORTED", msg);
    default: return make_error(env, ErrorKind::kState, "ERR_BN_INTERNAL", msg);
  }
}

void check_status(Napi::Env env, bn::Status st, const std::string& fn) {
  if (st != bn::Status::kOk) throw status_error(env, st, fn);
}

size_t byte_count_arg(Napi::Env env, const Napi::Value& v, const std::string& what) {
  if (!v.IsNumber()) throw_error(env, ErrorKind::kType, "ERR_BN_INVALID_ARG_TYPE", what + " must be a number");
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0 && d <= 9007199254740991.0 && d == double(uint64_t(d)))) {
    throw_error(env, ErrorKind::kRange, "ERR_BN_OUT_OF_RANGE", what + " must be a non-negative safe integer");
  }
  return size_t(d);
}

Napi::Value SetErrorClasses(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  EnvState* st = env_state(env);
  if (!info[0].IsObject() || st == nullptr) {
    throw_error(env, ErrorKind::kType, "ERR_BN_INVALID_ARG_TYPE", "setErrorClasses: expected { TypeError, RangeError, Error }");
  }
  Napi::Object o = info[0].As<Napi::Object>();
  Napi::Value t = o.Get("TypeError"), r = o.Get("RangeError"), e = o.Get("Error");
  if (!t.IsFunction() || !r.IsFunction() || !e.IsFunction()) {
    throw_error(env, ErrorKind::kType, "ERR_BN_INVALID_ARG_TYPE", "setErrorClasses: TypeError, RangeError and Error must be classes");
  }
  st->type_error = Napi::Persistent(t.As<Napi::Function>());
  st->range_error = Napi::Persistent(r.As<Napi::Function>());
  st->error = Napi::Persistent(e.As<Napi::Function>());
  return env.Undefined();
}

}  // namespace bnaddon
