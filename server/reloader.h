// Reloads (docs/ARCHITECTURE.md, "Versions and reload"): the requests of SIGHUP and of the
// repository RPCs, one at a time, make-before-break, as steps of the master's own loop. Each turn
// of the loop calls Advance(), which takes at most one step:
//
//   kIdle --(a queued request, planned (server/supervisor/reload_plan.h): versions to load; their
//           generation's zygote started by fork+exec and staged in the pool)--> kStaging
//   kIdle --(planned: nothing to load)--> Commit (retirements only) --> kIdle
//   kStaging --(every staged version at its quorum)--> kChecking
//   kChecking --(the readiness check through the whole request path passed)--> Commit --> kIdle
//   kStaging, kChecking --(staging failed, --startup_timeout_s, check failed, Cancel)--> Abort
//           --> kIdle
//
// Commit switches routing in one step and tells the master (ReloadHooks::switched, which publishes
// health) before the request is answered, so a client that hears OK finds the health it implies;
// the replaced versions finish their calls and their workers leave. A failure at any step (a config
// or files that do not load, a warmup or readiness check that fails, no memory for both
// generations, the deadline) aborts the staged versions: what was served keeps serving, and the
// reason is logged, returned to the RPC and shown in the repository index. Each request's `done` is
// called exactly once, on the master's main thread.
#ifndef KILN_SERVER_RELOADER_H_
#define KILN_SERVER_RELOADER_H_

#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/thread_plan.h"
#include "proto/grpc_service.pb.h"
#include "server/front/repository_control.h"
#include "server/supervisor/reload_plan.h"
#include "server/supervisor/worker_pool.h"
#include "server/supervisor/zygote_generation.h"

namespace kiln {

// What the reloader needs from the master.
struct ReloadHooks {
  // Starts the zygote of `generation`, loading the versions `models` (keys), by fork+exec.
  std::function<absl::StatusOr<ZygoteProcess>(int generation,
                                              const std::vector<std::string>& models)>
      start_zygote;
  // The readiness check of the Staged versions (WorkerPool::Served(true)).
  std::function<absl::Status()> check_staged;
  // Wakes the master's main loop (a request was queued).
  std::function<void()> wake;
  // The workers and intra-op threads of a version a reload loads.
  std::function<ModelThreads(const ModelSpec&)> threads_for;
  // Routing switched (a commit): called before the request is answered.
  std::function<void()> switched;
  // A phase of the reload ended after `seconds` (for the metrics; may be empty): "plan" (the
  // repository read and planned), "start_zygote" (the new generation's zygote started and its
  // workers asked for), "warm" (until every staged version reached its quorum: the zygote's
  // loading, the templates' warmups, the workers'), "readiness_check", "switch".
  std::function<void(const std::string& phase, double seconds)> phase_done;
};

// Where the reload under way stands (see the diagram above).
enum class ReloadStep { kIdle, kStaging, kChecking };

// Ownership: owned by the master; borrows the pool. Thread-safety: Request and Index from any
// thread; Advance, Cancel and step() on the master's main thread only.
class Reloader final : public RepositoryControl {
 public:
  // `timeout_s`: how long the staged versions may take to become warm.
  Reloader(std::string repository, WorkerPool& pool, ReloadHooks hooks, int timeout_s);

  // Queues `request`; `done` is called once, on the main thread, with its outcome: OK when the
  // repository's versions serve (or nothing changed), else why the old ones keep serving.
  void Request(ReloadRequest request, Done done) override;
  // Takes the next step of the reload under way, or starts the next queued one.
  void Advance();
  // The server stops: a reload under way is aborted and every request ends with `why`.
  void Cancel(const absl::Status& why);
  ReloadStep step() const { return current_.has_value() ? current_->step : ReloadStep::kIdle; }

  // Triton's repository index: every served version (READY, or UNAVAILABLE below its quorum),
  // every staged one (LOADING), and every model of the repository that serves nothing
  // (UNAVAILABLE); a model whose last reload failed says why. `ready_only`: READY entries only.
  std::vector<inference::RepositoryIndexResponse::ModelIndex> Index(bool ready_only) const override;

 private:
  // The reload under way (main thread only).
  struct Current {
    ReloadRequest request;
    Done done;
    ReloadPlan plan;
    ReloadStep step = ReloadStep::kIdle;
    bool loading = false;  // a zygote was asked for: a failure from here is the loaded models'
    std::chrono::steady_clock::time_point start;
    std::chrono::steady_clock::time_point deadline;      // for kStaging
    std::chrono::steady_clock::time_point phase_start;   // of the phase under way
    std::vector<std::pair<std::string, double>> phases;  // those done, in ms
  };

  // Ends the current reload's phase `name` (ReloadHooks::phase_done) and starts the next.
  void EndPhase(const char* name);

  // kIdle: plans the next queued request and stages what it loads (or commits, when it loads
  // nothing).
  void Begin();
  // Routing switches to the staged versions and away from plan.retire; ends the reload.
  void Commit();
  // Drops the staged versions and ends the reload with `why`.
  void Abort(const absl::Status& why);
  // Ends the reload under way: logs, records failures, calls its `done`.
  void Finish(absl::Status status);

  const std::string repository_;
  WorkerPool& pool_;
  const ReloadHooks hooks_;
  const int timeout_s_;
  int next_generation_ = 2;         // main thread only
  std::optional<Current> current_;  // main thread only

  mutable absl::Mutex mu_;
  std::deque<std::pair<ReloadRequest, Done>> queue_ ABSL_GUARDED_BY(mu_);
  // By model name: why its last reload failed (cleared by one that succeeds).
  std::map<std::string, std::string> failures_ ABSL_GUARDED_BY(mu_);
  // Models unloaded by RepositoryModelUnload (until loaded again).
  std::map<std::string, bool> unloaded_ ABSL_GUARDED_BY(mu_);
};

}  // namespace kiln

#endif  // KILN_SERVER_RELOADER_H_
