// What Triton's repository extension (RepositoryIndex, RepositoryModelLoad/Unload) asks of whoever
// changes the served models: the master's reloader (server/reloader.h) implements it, so the gRPC
// front never reaches up into the master.
#ifndef KILN_SERVER_FRONT_REPOSITORY_CONTROL_H_
#define KILN_SERVER_FRONT_REPOSITORY_CONTROL_H_

#include <functional>
#include <vector>

#include "absl/status/status.h"
#include "proto/grpc_service.pb.h"
#include "server/supervisor/reload_plan.h"

namespace kiln {

// Thread-safety: implementations must allow both methods from any thread (gRPC's).
class RepositoryControl {
 public:
  using Done = std::function<void(absl::Status)>;
  virtual ~RepositoryControl() = default;

  // Queues `request`; `done` is called once with its outcome: OK when the repository's versions
  // serve (or nothing changed), else why the old ones keep serving.
  virtual void Request(ReloadRequest request, Done done) = 0;
  // Triton's repository index; `ready_only`: READY entries only.
  virtual std::vector<inference::RepositoryIndexResponse::ModelIndex> Index(
      bool ready_only) const = 0;
};

}  // namespace kiln

#endif  // KILN_SERVER_FRONT_REPOSITORY_CONTROL_H_
