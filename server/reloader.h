// Reloads (docs/ARCHITECTURE.md, "Versions and reload"): the requests of SIGHUP and of the
// repository RPCs, run one at a time on the master's main thread, make-before-break:
//
//   plan (server/reload_plan.h) --> start generation g+1's zygote (fork+exec, loading only the new
//   or changed versions) --> stage them in the pool (their workers warm beside the served ones)
//   --> every staged version at its quorum --> the readiness check through the whole request
//   path --> Commit: routing switches in one step; the replaced versions finish their calls and
//   their workers leave.
//
// A failure at any step (a config or files that do not load, a warmup or readiness check that
// fails, no memory for both generations, the deadline) abandons the staged versions: what was
// served keeps serving, and the reason is logged, returned to the RPC and shown in the
// repository index.
#ifndef KILN_SERVER_RELOADER_H_
#define KILN_SERVER_RELOADER_H_

#include <deque>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/frame_channel.h"
#include "common/thread_plan.h"
#include "proto/grpc_service.pb.h"
#include "server/reload_plan.h"
#include "server/worker_pool.h"

namespace kiln {

// What the reloader needs from the master.
struct ReloadHooks {
  // Starts the zygote of `generation`, loading the versions `models` (keys), by fork+exec; returns
  // the pool's end of its channel.
  std::function<absl::StatusOr<FrameChannel>(int generation,
                                             const std::vector<std::string>& models)>
      start_zygote;
  // The readiness check of the Staged versions (WorkerPool::Served(true)).
  std::function<absl::Status()> check_staged;
  // One turn of the master's loop while a reload waits (signals, health, the watchdog); false
  // when the server must stop.
  std::function<bool()> keep_serving;
  // Wakes the master's main loop (a request was queued).
  std::function<void()> wake;
  // The workers and intra-op threads of a version a reload loads.
  std::function<ModelThreads(const ModelSpec&)> threads_for;
  // Called right after routing switched (health follows the served models).
  std::function<void()> switched;
};

// Ownership: owned by the master; borrows the pool. Thread-safety: Request, FailPending and Index
// from any thread; RunPending on the master's main thread only.
class Reloader {
 public:
  using Done = std::function<void(absl::Status)>;

  // `timeout_s`: how long the staged versions may take to become warm.
  Reloader(std::string repository, WorkerPool& pool, ReloadHooks hooks, int timeout_s);

  // Queues `request`; `done` is called once, on the main thread, with its outcome: OK when the
  // repository's versions serve (or nothing changed), else why the old ones keep serving.
  void Request(ReloadRequest request, Done done);
  // Runs the queued requests in order. False when the server must stop (keep_serving said so).
  bool RunPending();
  // Ends every queued request with `why` (the server stops).
  void FailPending(const absl::Status& why);

  // Triton's repository index: every served version (READY, or UNAVAILABLE below its quorum),
  // every staged one (LOADING), and every model of the repository that serves nothing
  // (UNAVAILABLE); a model whose last reload failed says why. `ready_only`: READY entries only.
  std::vector<inference::RepositoryIndexResponse::ModelIndex> Index(bool ready_only) const;

 private:
  absl::Status Run(const ReloadRequest& request);
  // Stages `plan.load` in a new generation and waits until it is warm and checked, or failed.
  absl::Status StageAndCheck(const ReloadPlan& plan);

  const std::string repository_;
  WorkerPool& pool_;
  const ReloadHooks hooks_;
  const int timeout_s_;
  int next_generation_ = 2;  // main thread only

  mutable absl::Mutex mu_;
  std::deque<std::pair<ReloadRequest, Done>> queue_ ABSL_GUARDED_BY(mu_);
  // By model name: why its last reload failed (cleared by one that succeeds).
  std::map<std::string, std::string> failures_ ABSL_GUARDED_BY(mu_);
  // Models unloaded by RepositoryModelUnload (until loaded again).
  std::map<std::string, bool> unloaded_ ABSL_GUARDED_BY(mu_);
};

}  // namespace kiln

#endif  // KILN_SERVER_RELOADER_H_
