// A worker's life as the master's pool sees it, and the policies that follow from its warmup
// report (docs/ARCHITECTURE.md, "State machines").
//
// The state machine (a transition not listed is a bug, and WorkerPool logs it as one):
//
//   Spawning --(zygote: started)--> Warming --(worker: warmup report)--> Ready
//   Ready --(call sent)--> Busy --(result)--> Ready
//   Spawning | Warming | Ready | Busy --(channel closed / worker failed / pool stopped)--> Exited
//   Busy --(call past the compute timeout: killed)--> Exited
//   Spawning | Warming | Ready --(scaled away: SetWorkers)--> Exited
//   (a Busy worker scaled away is `retiring`: it goes Busy -> Ready -> Exited after its call)
//
#ifndef KILN_SERVER_SUPERVISOR_WORKER_STATE_H_
#define KILN_SERVER_SUPERVISOR_WORKER_STATE_H_

#include <cstdint>

#include "proto/model_config.pb.h"
#include "proto/worker_frames.pb.h"

namespace kiln {

enum class WorkerState { kSpawning, kWarming, kReady, kBusy, kExited };
inline constexpr int kWorkerStates = static_cast<int>(WorkerState::kExited) + 1;

// Why a worker was started: with the pool (its versions' first workers), to replace one that
// exited, to scale a version up, or for a reload's staged version. Its start's phases are reported
// under this cause (WorkerPoolOptions::on_worker_ready).
enum class WorkerStart { kStart, kRespawn, kScaleUp, kReload };
// "start", "respawn", "scale_up", "reload": the metrics' label.
const char* WorkerStartName(WorkerStart cause);

// A served model version's place in the pool across reloads (docs/ARCHITECTURE.md, "Versions and
// reload"):
//
//   (start) --> Live
//   (WorkerPool::Stage) --> Staged --(Commit)--> Live --(Commit retiring it)--> Retiring
//   Staged --(Abort)--> gone
//   Retiring --(its queue served, its workers gone)--> gone
//
// Only Live versions take requests (Route); a Staged one takes only the readiness check's, and a
// Retiring one only serves what was queued on it before the switch.
enum class VersionPhase { kStaged, kLive, kRetiring };
const char* VersionPhaseName(VersionPhase phase);
const char* WorkerStateName(WorkerState state);
// Whether the diagram at the top of this file has an arrow from `from` to `to`.
bool WorkerTransitionAllowed(WorkerState from, WorkerState to);

// How long one call to a worker of `config` may compute before the worker counts as hung:
// supervision.compute_timeout_ms, or else 20 x the slowest steady latency of the worker's
// `warmup`, at least 5000 ms and at most a day (NaN latencies are ignored).
double ComputeTimeoutMs(const ModelConfig& config, const internal::WarmupReport& warmup);

}  // namespace kiln

#endif  // KILN_SERVER_SUPERVISOR_WORKER_STATE_H_
