#include "mesh.h"

#include <gloo/transport/context.h>
#include <gloo/transport/pair.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>
#include <vector>

namespace bngloo {
namespace {

std::chrono::milliseconds left(Clock::time_point deadline) {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return std::max(ms, std::chrono::milliseconds(1));
}

// "host:port" of a Gloo TCP pair address (its bytes start with a sockaddr_storage).
std::string describe(const std::vector<char>& addr) {
  sockaddr_storage ss{};
  if (addr.size() < sizeof ss) return "an unreadable address";
  std::memcpy(&ss, addr.data(), sizeof ss);
  char host[INET6_ADDRSTRLEN] = "?";
  int port = 0;
  if (ss.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
    port = ntohs(in->sin_port);
  } else if (ss.ss_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&ss);
    inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
    port = ntohs(in6->sin6_port);
  }
  return std::string(host) + ":" + std::to_string(port);
}

}  // namespace

void MeshContext::connect(gloo::rendezvous::Store& store, const std::shared_ptr<gloo::transport::Device>& dev, Watchdog& wd,
                          Clock::time_point deadline) {
  std::shared_ptr<gloo::transport::Context> tctx = dev->createContext(rank, size);
  tctx->setTimeout(getTimeout());
  std::vector<char> mine;
  for (int i = 0; i < size; ++i) {
    if (i == rank) continue;
    const std::vector<char> a = tctx->createPair(i)->address().bytes();
    mine.insert(mine.end(), a.begin(), a.end());
  }
  store.set(std::to_string(rank), mine);

  std::string where = "publishing its address";
  // Closing a pair wakes its connect (Gloo's is bounded by 5x the timeout only).
  Armed armed(wd, deadline, [this, &tctx] {
    for (int i = 0; i < size; ++i) {
      if (i != rank && tctx->getPair(i)) tctx->getPair(i)->close();
    }
  });
  try {
    for (int i = 0; i < size; ++i) {
      if (i == rank) continue;
      where = "waiting for rank " + std::to_string(i) + " to publish its address";
      store.wait({std::to_string(i)}, left(deadline));
      const std::vector<char> all = store.get(std::to_string(i));
      // Rank i lists its pairs' addresses in rank order, skipping itself: ours is at rank - (rank > i).
      const size_t width = all.size() / size_t(size - 1);
      const size_t at = size_t(rank > i ? rank - 1 : rank) * width;
      const std::vector<char> addr(all.begin() + at, all.begin() + at + width);
      where = "connecting to rank " + std::to_string(i) + " at " + describe(addr);
      tctx->getPair(i)->connect(addr);
    }
  } catch (const std::exception& e) {
    if (armed.disarm()) throw DeadlineError("rank " + std::to_string(rank) + " was " + where + " when the timeout passed (" + e.what() + ")");
    throw;
  }
  if (armed.disarm()) {
    throw DeadlineError("rank " + std::to_string(rank) + " was " + where + " when the timeout passed");
  }
  device_ = dev;
  transportContext_ = tctx;
}

}  // namespace bngloo
