// Connects a Gloo context to every other rank (Gloo's connectFullMesh), with one deadline for the
// whole rendezvous: Gloo's own waits each take the timeout, its pair connect 5x it, so a rank that
// died after publishing its address held the others long after the group's timeout (issue 15).
#pragma once

#include <gloo/context.h>
#include <gloo/rendezvous/store.h>
#include <gloo/transport/device.h>

#include <memory>
#include <stdexcept>
#include <string>

#include "watchdog.h"

namespace bngloo {

// The group's deadline passed (a rank did not take part in time): ERR_BN_SYNC_TIMEOUT.
struct DeadlineError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class MeshContext : public gloo::Context {
 public:
  MeshContext(int rank, int size) : gloo::Context(rank, size) {}
  // Publishes this rank's pair addresses in `store`, reads the others' and connects every pair,
  // all before `deadline` (else DeadlineError, saying what this rank was waiting for).
  void connect(gloo::rendezvous::Store& store, const std::shared_ptr<gloo::transport::Device>& dev, Watchdog& wd,
               Clock::time_point deadline);
};

}  // namespace bngloo
