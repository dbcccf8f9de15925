// What the pool serves (docs/ARCHITECTURE.md, "Versions and reload"): every model version, whatever
// its phase, with its queue, quorum, budget, counters and the slots of its workers; how a request
// is routed to one; where a reload's staging stands. Who serves it (the workers, their channels
// and arenas, the zygotes) is the supervisor's, WorkerPool (server/supervisor/worker_pool.h).
//
// Like leveldb's VersionSet under DBImpl's mutex, the table has no lock of its own: REQUIRES: the
// pool's mutex is held for every call, and for every use of a ServedVersion it hands out.
#ifndef KILN_SERVER_SUPERVISOR_VERSION_TABLE_H_
#define KILN_SERVER_SUPERVISOR_VERSION_TABLE_H_

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/model_config_loader.h"
#include "common/shape.h"
#include "common/thread_plan.h"
#include "proto/worker_frames.pb.h"
#include "server/supervisor/infer_job.h"
#include "server/supervisor/job_queue.h"
#include "server/supervisor/worker_state.h"

namespace kiln {

// Per model, since start: what the workers reported with each result.
struct ModelCounters {
  int64_t requests = 0;          // requests whose call returned a result, OK or not
  int64_t calls = 0;             // calls that returned one (a dynamic batch is one call)
  int64_t cold_shape_hits = 0;   // requests that ran a shape their worker had not warmed
  int64_t padded_to_bucket = 0;  // text padded up to a warmed sequence length longer than needed
  int64_t split = 0;             // run in several passes to fit the memory budget
  int64_t over_budget = 0;       // refused: not even one row fits the memory budget
  int64_t padded_batch = 0;      // padded with zero rows up to a warmed batch size
};

// A model's warm workers against what keeps it SERVING: the quorum until it was first reached,
// then min_ready (readiness.min_ready).
struct ModelReadiness {
  int warm = 0;     // Ready or Busy workers
  int workers = 0;  // the target count
  int quorum = 0;
  int min_ready = 0;
  bool serving = false;
  bool degraded() const { return serving && warm < workers; }
};

// The methods below that take a model's name and a version read `version` 0 as every served
// version of the model.
inline constexpr int64_t kEveryVersion = 0;

// One served version (known by its spec's identity: two may share a key while one is staged to
// replace the other). Owned by the VersionTable; REQUIRES the pool's mutex.
struct ServedVersion {
  SharedSpec spec;
  int generation = 1;  // of the zygote that forks its workers
  VersionPhase phase = VersionPhase::kLive;
  int workers = 0;  // target count
  int quorum = 0;
  int min_ready = 1;            // warm workers that keep it SERVING once it reached the quorum
  bool reached_quorum = false;  // since then, min_ready decides readiness
  int threads = 1;              // intra-op threads per worker
  // `threads` chosen by the CPU plan, not the config (SpawnWorker.intra_op_threads_automatic).
  bool threads_automatic = false;
  uint64_t arena_bytes = 0;
  std::optional<JobQueue> queue;  // set by VersionTable::Add
  int failed_starts = 0;          // consecutive deaths before ready
  bool ever_ready = false;
  int64_t budget_bytes = 0;     // per worker; 0 = none
  std::vector<Shape> replay;    // recorded traffic shapes to warm
  std::set<int> missing_slots;  // exited workers not replaced yet (no memory room)
  // When the worker of a slot died, until its replacement is ready (the respawn's duration).
  std::map<int, std::chrono::steady_clock::time_point> died_at;
  ModelCounters counters;
  // Its workers by state, indexed by WorkerState (Exited ones are not counted), kept by the
  // supervisor as they change.
  std::array<int, kWorkerStates> by_state{};

  int warm() const;  // Ready or Busy workers
  // The quorum (readiness.quorum: 0 is "all", an explicit one is capped) and min_ready for the
  // target count `workers`.
  void ResolveQuorum();
};

// Ownership: owns every ServedVersion; the pointers it hands out live until Erase or
// DropStaged. Thread-safety: none of its own; REQUIRES the pool's mutex (see above).
class VersionTable {
 public:
  // Adds `spec` in `phase` for generation `generation`'s zygote, with `threads` (one worker of
  // one thread when missing) and the recorded `replay` shapes.
  ServedVersion& Add(const ModelSpec& spec, int generation, VersionPhase phase,
                     const std::map<std::string, ModelThreads>& threads, std::vector<Shape> replay);
  ServedVersion* Find(const ModelSpec* spec) const;
  // The versions of `name` in `phase` (the one `version`, or every one for kEveryVersion).
  std::vector<ServedVersion*> Match(const std::string& name, int64_t version,
                                    VersionPhase phase = VersionPhase::kLive) const;
  const std::vector<std::unique_ptr<ServedVersion>>& all() const { return versions_; }
  // Drops a version whose workers are gone.
  void Erase(const ServedVersion* version);

  // Every version's per-worker memory budget, for the workers wanted now, under
  // `memory_limit_bytes` (0: none); a version keeps the budget its workers warmed under.
  void ResolveBudgets(int64_t memory_limit_bytes);

  // --- Routing and readiness (`stopping`: nothing is SERVING any more) ---
  ModelReadiness Readiness(const ServedVersion& version, bool stopping) const;
  // Summed over the matching Live versions (serving: every one is).
  ModelReadiness Readiness(const std::string& name, int64_t version, bool stopping) const;
  bool AllLiveReady(bool stopping) const;
  // WorkerPool::Route's contract.
  absl::StatusOr<SharedSpec> Route(const std::string& name, const std::string& version, bool staged,
                                   bool stopping) const;
  std::vector<SharedSpec> Served(bool staged) const;

  // --- Counters ---
  static void Count(ServedVersion& version, const internal::InferResult& result, int jobs = 1);
  ModelCounters Counters(const std::string& name, int64_t version) const;
  void ResetCounters();

  // --- A reload's staging (make-before-break) ---
  int staging_generation() const { return staging_generation_; }
  const absl::Status& staging_failed() const { return staging_failed_; }
  void BeginStaging(int generation);
  // The staging fails with `why` (the first reason is kept): true when this call failed it.
  bool FailStaging(const absl::Status& why);
  struct Staging {
    bool staging = false;  // BeginStaging was called, and neither Commit nor DropStaged since
    bool ready = false;    // every Staged version reached its quorum
    absl::Status failed;
    std::string summary;  // "mlp:2 1/1 warm, resnet18:3 0/2 warm"
  };
  Staging StagingState(bool stopping) const;
  // In one step: every Staged version turns Live, every Live one in `retire` Retiring. Returns
  // the generation that was staged (0: none).
  int Commit(const std::vector<SharedSpec>& retire);
  // Drops the Staged versions and ends the staging; returns the jobs still queued on them.
  std::vector<InferJob> DropStaged();
  // Whether a version, or the staging, still uses generation `generation`'s zygote.
  bool GenerationUsed(int generation) const;

 private:
  // Every version, whatever its phase.
  std::vector<std::unique_ptr<ServedVersion>> versions_;
  int staging_generation_ = 0;  // 0: no staging
  absl::Status staging_failed_;
};

}  // namespace kiln

#endif  // KILN_SERVER_SUPERVISOR_VERSION_TABLE_H_
