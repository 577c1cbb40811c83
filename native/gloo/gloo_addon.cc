// batchnorm_gloo.node: the Gloo backend of the sync groups (lib/sync/gloo.ts), a separate addon so
// that batchnorm.node keeps its dependencies (it is loaded only when a Gloo group is created).
//   connect({ rank, size, host, port, path, timeoutMs, localAddress, iface }) -> Promise<group>
//   allGather(group, input: Float64Array, output: Float64Array)        (blocks this thread)
//   allGatherAsync(group, input, output) -> Promise<void>              (libuv's thread pool)
//   close(group)
// Errors carry `code`: ERR_BN_SYNC_TIMEOUT, ERR_BN_SYNC_PEER_LOST, ERR_BN_SYNC_RENDEZVOUS,
// ERR_BN_SYNC_BROKEN, ERR_BN_INVALID_ARG_TYPE.
#include <napi.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gloo/allgather.h>
#include <gloo/common/error.h>
#include <gloo/rendezvous/file_store.h>
#include <gloo/rendezvous/prefix_store.h>
#include <gloo/transport/tcp/device.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>

#include "mesh.h"
#include "tcp_store.h"
#include "watchdog.h"

namespace bngloo {
namespace {

struct Group {
  std::unique_ptr<TcpStoreServer> server;  // rank 0 of a tcp:// group
  std::shared_ptr<gloo::rendezvous::Store> store;
  std::shared_ptr<gloo::transport::Device> device;
  std::shared_ptr<MeshContext> context;
  std::chrono::milliseconds timeout{60000};
  std::mutex mu;  // one collective at a time
  bool closed = false;
  std::atomic<bool> closing{false};  // set by close() before it aborts a running collective
  Watchdog watchdog;  // last: destroyed first, while what its `fire` touches still exists
};

// A collective on a group closed on this rank: ERR_BN_SYNC_BROKEN.
struct ClosedError : std::logic_error {
  ClosedError() : std::logic_error("the group was closed on this rank") {}
};

using GroupRef = std::shared_ptr<Group>;

struct CodedError {
  std::string code, message;
};

// Gloo reports a timeout and a lost peer with the same exception type; its message tells them apart.
CodedError classify(const std::exception& e, const char* what) {
  const std::string m = e.what();
  const bool timeout = m.find("imed out") != std::string::npos || m.find("imeout") != std::string::npos;
  if (dynamic_cast<const DeadlineError*>(&e)) return {"ERR_BN_SYNC_TIMEOUT", std::string(what) + ": a rank did not take part in time: " + m};
  if (dynamic_cast<const ClosedError*>(&e)) return {"ERR_BN_SYNC_BROKEN", std::string(what) + ": " + m};
  if (const auto* se = dynamic_cast<const StoreError*>(&e)) {
    return {se->timed_out ? "ERR_BN_SYNC_TIMEOUT" : "ERR_BN_SYNC_RENDEZVOUS", std::string(what) + ": " + m};
  }
  return {timeout ? "ERR_BN_SYNC_TIMEOUT" : "ERR_BN_SYNC_PEER_LOST",
          std::string(what) + (timeout ? ": a rank did not take part in time: " : ": a rank's connection failed (its process died?): ") + m};
}

Napi::Error coded(Napi::Env env, const CodedError& c) {
  Napi::Error e = Napi::Error::New(env, c.message);
  e.Set("code", Napi::String::New(env, c.code));
  return e;
}

[[noreturn]] void throw_coded(Napi::Env env, const char* code, const std::string& msg) {
  throw coded(env, {code, msg});
}

// The local address on the route to `host` (no packet is sent): the address other ranks can reach
// this one at when they reach the rendezvous host the same way.
std::string routed_address(const std::string& host, int port) {
  sockaddr_in dst{};
  dst.sin_family = AF_INET;
  dst.sin_port = htons(uint16_t(port));
  if (inet_pton(AF_INET, host.c_str(), &dst.sin_addr) != 1) return "";
  const int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return "";
  std::string out;
  sockaddr_in me{};
  socklen_t len = sizeof me;
  if (connect(fd, reinterpret_cast<sockaddr*>(&dst), sizeof dst) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&me), &len) == 0) {
    char buf[INET_ADDRSTRLEN] = {0};
    if (inet_ntop(AF_INET, &me.sin_addr, buf, sizeof buf)) out = buf;
  }
  close(fd);
  return out;
}

struct ConnectArgs {
  int rank = 0, size = 1, port = 0;
  std::string host, path, local_address, iface;
  std::chrono::milliseconds timeout{60000};
};

// The whole rendezvous (store, addresses, every pair's connection) ends by one deadline.
GroupRef connect_group(const ConnectArgs& a) {
  const auto deadline = Clock::now() + a.timeout;
  auto g = std::make_shared<Group>();
  g->timeout = a.timeout;
  std::shared_ptr<gloo::rendezvous::Store> base;
  if (!a.path.empty()) {
    base = std::make_shared<gloo::rendezvous::FileStore>(a.path);
  } else {
    if (a.rank == 0) g->server = std::make_unique<TcpStoreServer>(a.port);
    base = std::make_shared<TcpStoreClient>(a.host, a.port, a.timeout, deadline);
  }
  g->store = base;
  gloo::transport::tcp::attr attr;
  if (!a.iface.empty()) {
    attr.iface = a.iface;
  } else {
    std::string addr = a.local_address;
    if (addr.empty() && !a.host.empty()) addr = routed_address(a.host, a.port);
    if (addr.empty()) {
      char name[256] = {0};
      gethostname(name, sizeof name - 1);
      addr = name;
    }
    attr.hostname = addr;
  }
  g->device = gloo::transport::tcp::CreateDevice(attr);
  g->context = std::make_shared<MeshContext>(a.rank, a.size);
  g->context->setTimeout(a.timeout);
  gloo::rendezvous::PrefixStore prefixed("node-batchnorm", *base);
  g->context->connect(prefixed, g->device, g->watchdog, deadline);
  return g;
}

// One all-gather, ended by the group's timeout as a whole (Gloo's own bound is per wait).
void all_gather(Group& g, double* in, size_t n, double* out) {
  std::lock_guard<std::mutex> l(g.mu);
  if (g.closed) throw ClosedError();
  gloo::AllgatherOptions opts(g.context);
  opts.setInput(in, n);
  auto out_buf = g.context->createUnboundBuffer(out, n * size_t(g.context->size) * sizeof(double));
  gloo::transport::UnboundBuffer* waits = out_buf.get();  // every wait of Gloo's all-gather is on it
  opts.setOutput<double>(std::move(out_buf));
  opts.setTimeout(g.timeout);
  // After opts: disarmed (and `fire` done) before the buffer goes. Closing the connections makes
  // every later send or receive fail; aborting the waits ends the current ones.
  Armed armed(g.watchdog, Clock::now() + g.timeout, [&g, waits] {
    g.context->closeConnections();
    waits->abortWaitRecv();
    waits->abortWaitSend();
  });
  if (g.closing) throw ClosedError();  // after arming: close() either sees the armed watchdog or we see `closing`
  try {
    gloo::allgather(opts);
  } catch (const std::exception& e) {
    if (!armed.disarm()) throw;
    if (g.closing) throw ClosedError();
    throw DeadlineError("the all-gather did not complete within " + std::to_string(g.timeout.count()) + " ms (" + e.what() + ")");
  }
  if (armed.disarm()) {
    if (g.closing) throw ClosedError();
    throw DeadlineError("the all-gather completed after its timeout (" + std::to_string(g.timeout.count()) + " ms)");
  }
}

GroupRef group_of(const Napi::Value& v) {
  if (!v.IsExternal()) throw_coded(v.Env(), "ERR_BN_INVALID_ARG_TYPE", "batchnorm_gloo: expected a group handle");
  GroupRef* p = v.As<Napi::External<GroupRef>>().Data();
  if (!p || !*p || (*p)->closed) throw_coded(v.Env(), "ERR_BN_SYNC_BROKEN", "batchnorm_gloo: the group was closed");
  return *p;
}

Napi::Float64Array f64(const Napi::Value& v, const char* name) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float64_array) {
    throw_coded(v.Env(), "ERR_BN_INVALID_ARG_TYPE", std::string("batchnorm_gloo: ") + name + " must be a Float64Array");
  }
  return v.As<Napi::Float64Array>();
}

class ConnectWorker : public Napi::AsyncWorker {
 public:
  ConnectWorker(Napi::Env env, ConnectArgs a) : Napi::AsyncWorker(env), args_(std::move(a)), deferred_(env) {}
  Napi::Promise promise() { return deferred_.Promise(); }
  void Execute() override {
    try {
      group_ = connect_group(args_);
    } catch (const std::exception& e) {
      err_ = classify(e, "the rendezvous of the Gloo group failed");
      if (err_.code == "ERR_BN_SYNC_PEER_LOST") err_.code = "ERR_BN_SYNC_RENDEZVOUS";
    }
  }
  void OnOK() override {
    Napi::Env env = Env();
    if (!group_) {
      deferred_.Reject(coded(env, err_).Value());
      return;
    }
    auto ext = Napi::External<GroupRef>::New(env, new GroupRef(group_), [](Napi::Env, GroupRef* p) { delete p; });
    deferred_.Resolve(ext);
  }

 private:
  ConnectArgs args_;
  Napi::Promise::Deferred deferred_;
  GroupRef group_;
  CodedError err_;
};

class GatherWorker : public Napi::AsyncWorker {
 public:
  GatherWorker(Napi::Env env, GroupRef g, Napi::Float64Array in, Napi::Float64Array out)
      : Napi::AsyncWorker(env), g_(std::move(g)), deferred_(env), in_ref_(Napi::Persistent(in)),
        out_ref_(Napi::Persistent(out)), in_(in.Data()), n_(in.ElementLength()), out_(out.Data()) {}
  Napi::Promise promise() { return deferred_.Promise(); }
  void Execute() override {
    try {
      all_gather(*g_, in_, n_, out_);
      ok_ = true;
    } catch (const std::exception& e) {
      err_ = classify(e, "Gloo allgather");
    }
  }
  void OnOK() override {
    if (ok_) deferred_.Resolve(Env().Undefined());
    else deferred_.Reject(coded(Env(), err_).Value());
  }

 private:
  GroupRef g_;
  Napi::Promise::Deferred deferred_;
  Napi::Reference<Napi::Float64Array> in_ref_, out_ref_;
  double* in_;
  size_t n_;
  double* out_;
  bool ok_ = false;
  CodedError err_;
};

std::string str_field(const Napi::Object& o, const char* k) {
  const Napi::Value v = o.Get(k);
  return v.IsString() ? v.As<Napi::String>().Utf8Value() : std::string();
}

int int_field(const Napi::Object& o, const char* k) {
  const Napi::Value v = o.Get(k);
  if (!v.IsNumber()) throw_coded(o.Env(), "ERR_BN_INVALID_ARG_TYPE", std::string("batchnorm_gloo.connect: ") + k + " must be a number");
  return v.As<Napi::Number>().Int32Value();
}

Napi::Value Connect(const Napi::CallbackInfo& info) {
  if (!info[0].IsObject()) throw_coded(info.Env(), "ERR_BN_INVALID_ARG_TYPE", "batchnorm_gloo.connect: expected an options object");
  const Napi::Object o = info[0].As<Napi::Object>();
  ConnectArgs a;
  a.rank = int_field(o, "rank");
  a.size = int_field(o, "size");
  a.port = int_field(o, "port");
  a.timeout = std::chrono::milliseconds(int_field(o, "timeoutMs"));
  a.host = str_field(o, "host");
  a.path = str_field(o, "path");
  a.local_address = str_field(o, "localAddress");
  a.iface = str_field(o, "iface");
  auto* w = new ConnectWorker(info.Env(), a);
  Napi::Promise p = w->promise();
  w->Queue();
  return p;
}

Napi::Value AllGather(const Napi::CallbackInfo& info) {
  GroupRef g = group_of(info[0]);
  Napi::Float64Array in = f64(info[1], "input"), out = f64(info[2], "output");
  if (out.ElementLength() != in.ElementLength() * size_t(g->context->size)) {
    throw_coded(info.Env(), "ERR_BN_INVALID_ARG_TYPE", "batchnorm_gloo.allGather: output must hold size * input values");
  }
  try {
    all_gather(*g, in.Data(), in.ElementLength(), out.Data());
  } catch (const std::exception& e) {
    throw coded(info.Env(), classify(e, "Gloo allgather"));
  }
  return info.Env().Undefined();
}

Napi::Value AllGatherAsync(const Napi::CallbackInfo& info) {
  GroupRef g = group_of(info[0]);
  Napi::Float64Array in = f64(info[1], "input"), out = f64(info[2], "output");
  if (out.ElementLength() != in.ElementLength() * size_t(g->context->size)) {
    throw_coded(info.Env(), "ERR_BN_INVALID_ARG_TYPE", "batchnorm_gloo.allGatherAsync: output must hold size * input values");
  }
  auto* w = new GatherWorker(info.Env(), g, in, out);
  Napi::Promise p = w->promise();
  w->Queue();
  return p;
}

// Drops the connections (and rank 0's rendezvous server); a collective running on libuv's pool is
// aborted first (it fails with ERR_BN_SYNC_BROKEN) rather than waited for.
Napi::Value Close(const Napi::CallbackInfo& info) {
  if (!info[0].IsExternal()) return info.Env().Undefined();
  GroupRef* p = info[0].As<Napi::External<GroupRef>>().Data();
  if (p && *p) {
    GroupRef g = *p;
    g->closing = true;
    g->watchdog.fire_now();
    std::lock_guard<std::mutex> l(g->mu);
    g->closed = true;
    g->context.reset();
    g->device.reset();
    g->store.reset();
    g->server.reset();
  }
  return info.Env().Undefined();
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("connect", Napi::Function::New(env, Connect, "connect"));
  exports.Set("allGather", Napi::Function::New(env, AllGather, "allGather"));
  exports.Set("allGatherAsync", Napi::Function::New(env, AllGatherAsync, "allGatherAsync"));
  exports.Set("close", Napi::Function::New(env, Close, "close"));
  return exports;
}

}  // namespace
}  // namespace bngloo

static Napi::Object InitGloo(Napi::Env env, Napi::Object exports) { return bngloo::Init(env, exports); }

NODE_API_MODULE(batchnorm_gloo, InitGloo)
