#include "tcp_store.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace bngloo {
namespace {

// Wire format, both ways: u32 lengths in network order. Request: op, key, [value]. Reply to SET:
// one byte 1. Reply to GET: one byte found, then (found) the value.
enum Op : uint32_t { kSet = 1, kGet = 2 };

using Clock = std::chrono::steady_clock;

// Waits until fd is readable/writable or the deadline; false on timeout or a stop request.
bool wait_fd(int fd, short events, Clock::time_point deadline, const std::atomic<bool>* stop) {
  for (;;) {
    if (stop && stop->load()) return false;
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return false;
    pollfd p{fd, events, 0};
    const int r = poll(&p, 1, int(std::min<long long>(left, 100)));
    if (r > 0) return true;
    if (r < 0 && errno != EINTR) return false;
  }
}

void io_all(int fd, void* buf, size_t n, bool reading, Clock::time_point deadline, const std::atomic<bool>* stop,
            const std::string& where) {
  char* p = static_cast<char*>(buf);
  while (n > 0) {
    if (!wait_fd(fd, reading ? POLLIN : POLLOUT, deadline, stop)) {
      throw StoreError("rendezvous store " + where + ": no answer in time", true);
    }
    const ssize_t r = reading ? recv(fd, p, n, 0) : send(fd, p, n, MSG_NOSIGNAL);
    if (r == 0) throw StoreError("rendezvous store " + where + ": connection closed", false);
    if (r < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      throw StoreError("rendezvous store " + where + ": " + std::strerror(errno), false);
    }
    p += r;
    n -= size_t(r);
  }
}

void put_u32(std::vector<char>& b, uint32_t v) {
  const uint32_t n = htonl(v);
  b.insert(b.end(), reinterpret_cast<const char*>(&n), reinterpret_cast<const char*>(&n) + 4);
}

uint32_t get_u32(int fd, Clock::time_point deadline, const std::atomic<bool>* stop, const std::string& where) {
  uint32_t n = 0;
  io_all(fd, &n, 4, true, deadline, stop, where);
  return ntohl(n);
}

std::vector<char> get_bytes(int fd, Clock::time_point deadline, const std::atomic<bool>* stop, const std::string& where) {
  const uint32_t len = get_u32(fd, deadline, stop, where);
  if (len > (64u << 20)) throw StoreError("rendezvous store " + where + ": oversized message", false);
  std::vector<char> v(len);
  if (len) io_all(fd, v.data(), len, true, deadline, stop, where);
  return v;
}

const auto kForever = std::chrono::hours(24 * 365);

}  // namespace

TcpStoreServer::TcpStoreServer(int port) {
  listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0) throw StoreError(std::string("socket: ") + std::strerror(errno), false);
  const int one = 1;
  setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_ANY);
  a.sin_port = htons(uint16_t(port));
  if (bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(listen_fd_, 128) != 0) {
    const std::string why = std::strerror(errno);
    close(listen_fd_);
    throw StoreError("rank 0 could not listen on port " + std::to_string(port) + " for the rendezvous: " + why, false);
  }
  acceptor_ = std::thread([this] { accept_loop(); });
}

TcpStoreServer::~TcpStoreServer() {
  stop_ = true;
  acceptor_.join();
  close(listen_fd_);
  std::vector<std::thread> ws;
  {
    std::lock_guard<std::mutex> l(mu_);
    ws.swap(workers_);
  }
  for (auto& t : ws) t.join();
}

void TcpStoreServer::accept_loop() {
  while (!stop_) {
    if (!wait_fd(listen_fd_, POLLIN, Clock::now() + kForever, &stop_)) continue;
    const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    std::lock_guard<std::mutex> l(mu_);
    workers_.emplace_back([this, fd] { serve(fd); });
  }
}

void TcpStoreServer::serve(int fd) {
  const std::string where = "server";
  try {
    for (;;) {
      const auto forever = Clock::now() + kForever;
      const uint32_t op = get_u32(fd, forever, &stop_, where);
      const std::vector<char> key = get_bytes(fd, forever, &stop_, where);
      std::vector<char> reply;
      if (op == kSet) {
        std::vector<char> value = get_bytes(fd, forever, &stop_, where);
        std::lock_guard<std::mutex> l(mu_);
        map_[std::string(key.begin(), key.end())] = std::move(value);
        reply.push_back(1);
      } else if (op == kGet) {
        std::lock_guard<std::mutex> l(mu_);
        auto it = map_.find(std::string(key.begin(), key.end()));
        reply.push_back(it != map_.end() ? 1 : 0);
        if (it != map_.end()) {
          put_u32(reply, uint32_t(it->second.size()));
          reply.insert(reply.end(), it->second.begin(), it->second.end());
        }
      } else {
        break;
      }
      io_all(fd, reply.data(), reply.size(), false, forever, &stop_, where);
    }
  } catch (const StoreError&) {
    // The client left, or the server stops.
  }
  close(fd);
}

TcpStoreClient::TcpStoreClient(const std::string& host, int port, std::chrono::milliseconds timeout, Clock::time_point deadline)
    : where_(host + ":" + std::to_string(port)), timeout_(timeout), deadline_(deadline) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  std::string last = "no attempt";
  while (Clock::now() < deadline_) {
    addrinfo* res = nullptr;
    const int gai = getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res);
    if (gai != 0) {
      throw StoreError("cannot resolve the rendezvous host '" + host + "': " + gai_strerror(gai), false);
    }
    for (addrinfo* ai = res; ai && fd_ < 0; ai = ai->ai_next) {
      // Non-blocking: a blocking connect to a host that drops packets outlasts any deadline.
      const int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
      if (fd < 0) continue;
      int err = connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 ? 0 : errno;
      if (err == EINPROGRESS) {
        socklen_t len = sizeof err;
        err = wait_fd(fd, POLLOUT, deadline_, nullptr) ? (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 ? err : errno) : ETIMEDOUT;
      }
      if (err == 0) {
        const int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        fd_ = fd;
      } else {
        last = std::strerror(err);
        close(fd);
      }
    }
    freeaddrinfo(res);
    if (fd_ >= 0) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  throw StoreError("could not reach the rendezvous at " + where_ + " within " + std::to_string(timeout.count()) +
                       " ms (last error: " + last + "); is rank 0 running, and is the port open?",
                   true);
}

TcpStoreClient::~TcpStoreClient() {
  if (fd_ >= 0) close(fd_);
}

void TcpStoreClient::set(const std::string& key, const std::vector<char>& data) {
  std::lock_guard<std::mutex> l(mu_);
  std::vector<char> b;
  put_u32(b, kSet);
  put_u32(b, uint32_t(key.size()));
  b.insert(b.end(), key.begin(), key.end());
  put_u32(b, uint32_t(data.size()));
  b.insert(b.end(), data.begin(), data.end());
  const auto deadline = std::min(Clock::now() + timeout_, deadline_);
  io_all(fd_, b.data(), b.size(), false, deadline, nullptr, where_);
  char ok = 0;
  io_all(fd_, &ok, 1, true, deadline, nullptr, where_);
}

bool TcpStoreClient::try_get(const std::string& key, std::vector<char>* out) {
  std::lock_guard<std::mutex> l(mu_);
  std::vector<char> b;
  put_u32(b, kGet);
  put_u32(b, uint32_t(key.size()));
  b.insert(b.end(), key.begin(), key.end());
  const auto deadline = std::min(Clock::now() + timeout_, deadline_);
  io_all(fd_, b.data(), b.size(), false, deadline, nullptr, where_);
  char found = 0;
  io_all(fd_, &found, 1, true, deadline, nullptr, where_);
  if (!found) return false;
  std::vector<char> v = get_bytes(fd_, deadline, nullptr, where_);
  if (out) *out = std::move(v);
  return true;
}

std::vector<char> TcpStoreClient::get(const std::string& key) {
  wait({key}, timeout_);
  std::vector<char> v;
  try_get(key, &v);
  return v;
}

void TcpStoreClient::wait(const std::vector<std::string>& keys, const std::chrono::milliseconds& timeout) {
  const auto deadline = std::min(Clock::now() + timeout, deadline_);
  for (const std::string& k : keys) {
    while (!try_get(k, nullptr)) {
      if (Clock::now() >= deadline) {
        throw StoreError("rendezvous at " + where_ + ": key '" + k + "' did not appear within " +
                             std::to_string(timeout_.count()) + " ms (a rank did not join)",
                         true);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
}

}  // namespace bngloo
