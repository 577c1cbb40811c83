#include "errors.h"

namespace bnaddon {
namespace {

[[noreturn]] void throw_with_code(Napi::Error err, const std::string& code) {
  err.Set("code", Napi::String::New(err.Env(), code));
  throw err;
}

}  // namespace

void throw_type_error(Napi::Env env, const std::string& code, const std::string& msg) {
  throw_with_code(Napi::TypeError::New(env, msg), code);
}

void throw_range_error(Napi::Env env, const std::string& code, const std::string& msg) {
  throw_with_code(Napi::RangeError::New(env, msg), code);
}

Napi::Error status_error(Napi::Env env, bn::Status st, const char* where) {
  const std::string msg = std::string(where) + ": " + bn::status_message(st);
  const char* code = "ERR_BN_INTERNAL";
  Napi::Error err;
  switch (st) {
    case bn::Status::kBadShape: code = "ERR_BN_BAD_SHAPE"; break;
    case bn::Status::kTooFewValues: code = "ERR_BN_TOO_FEW_VALUES"; break;
    case bn::Status::kBadEps:
    case bn::Status::kBadMomentum:
    case bn::Status::kBadThreads: code = "ERR_BN_OUT_OF_RANGE"; break;
    case bn::Status::kUnsupported: code = "ERR_BN_UNSUPPORTED"; break;
    case bn::Status::kNullPointer:
    case bn::Status::kMismatchedStats: code = "ERR_BN_INVALID_ARG_TYPE"; break;
    case bn::Status::kOutOfMemory: code = "ERR_BN_OUT_OF_MEMORY"; break;
    case bn::Status::kOk: break;
  }
  switch (st) {
    case bn::Status::kNullPointer:
    case bn::Status::kMismatchedStats: err = Napi::TypeError::New(env, msg); break;
    case bn::Status::kOutOfMemory:
    case bn::Status::kOk: err = Napi::Error::New(env, msg); break;
    default: err = Napi::RangeError::New(env, msg); break;
  }
  err.Set("code", Napi::String::New(env, code));
  return err;
}

void throw_status(Napi::Env env, bn::Status st, const char* where) { throw status_error(env, st, where); }

void check_status(Napi::Env env, bn::Status st, const char* where) {
  if (st != bn::Status::kOk) throw_status(env, st, where);
}

}  // namespace bnaddon
