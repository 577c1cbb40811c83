// The rendezvous store of a Gloo group over TCP (Gloo ships none; PyTorch writes its own): rank 0
// serves a key-value map on HOST:PORT, every rank (rank 0 too) is a client. Gloo's full-mesh
// connect publishes each rank's transport address under a key and waits for the others'.
#pragma once

#include <gloo/rendezvous/store.h>

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace bngloo {

// Thrown for every rendezvous failure; `timed_out` tells a timeout from the rest.
struct StoreError : std::runtime_error {
  StoreError(const std::string& m, bool t) : std::runtime_error(m), timed_out(t) {}
  bool timed_out;
};

// The server: a thread accepting connections, one thread per connection (at most world size).
class TcpStoreServer {
 public:
  // Listens on every interface at `port`; throws StoreError when it cannot (port in use).
  explicit TcpStoreServer(int port);
  ~TcpStoreServer();
  TcpStoreServer(const TcpStoreServer&) = delete;
  TcpStoreServer& operator=(const TcpStoreServer&) = delete;

 private:
  void accept_loop();
  void serve(int fd);
  int listen_fd_ = -1;
  std::atomic<bool> stop_{false};
  std::thread acceptor_;
  std::mutex mu_;  // guards map_ and workers_
  std::map<std::string, std::vector<char>> map_;
  std::vector<std::thread> workers_;
};

class TcpStoreClient : public gloo::rendezvous::Store {
 public:
  // Connects to host:port, retrying until `deadline` (rank 0 may not listen yet). Every later
  // request ends by `deadline` too: it is the rendezvous's.
  TcpStoreClient(const std::string& host, int port, std::chrono::milliseconds timeout, std::chrono::steady_clock::time_point deadline);
  ~TcpStoreClient() override;

  void set(const std::string& key, const std::vector<char>& data) override;
  std::vector<char> get(const std::string& key) override;
  void wait(const std::vector<std::string>& keys) override { wait(keys, timeout_); }
  void wait(const std::vector<std::string>& keys, const std::chrono::milliseconds& timeout) override;

 private:
  // One GET: whether the key is there (and its value into `out`).
  bool try_get(const std::string& key, std::vector<char>* out);
  std::string where_;
  std::chrono::milliseconds timeout_;
  std::chrono::steady_clock::time_point deadline_;
  int fd_ = -1;
  std::mutex mu_;
};

}  // namespace bngloo
