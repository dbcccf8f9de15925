#include "server/supervisor/worker_state.h"

#include <algorithm>

namespace kiln {
namespace {

// The derived compute timeout (supervision.compute_timeout_ms unset): this many times the
// worker's slowest warmed steady latency, and never below the floor.
constexpr double kComputeTimeoutFactor = 20;
constexpr double kMinComputeTimeoutMs = 5000;
constexpr double kMaxComputeTimeoutMs = 24 * 3600 * 1000.0;

}  // namespace

double ComputeTimeoutMs(const ModelConfig& config, const internal::WarmupReport& warmup) {
  if (config.supervision().compute_timeout_ms() > 0) {
    return config.supervision().compute_timeout_ms();
  }
  double slowest = 0;
  for (const internal::ShapeWarmup& shape : warmup.shapes()) {
    slowest = std::max(slowest, shape.steady_ms());
  }
  // Bounded both ways: the report is the worker's word (an inf latency must not overflow the call
  // deadline; a NaN one is passed over by the std::max above).
  const double derived = kComputeTimeoutFactor * slowest;
  return derived >= kMinComputeTimeoutMs ? std::min(derived, kMaxComputeTimeoutMs)
                                         : kMinComputeTimeoutMs;
}

bool WorkerTransitionAllowed(WorkerState from, WorkerState to) {
  switch (from) {
    case WorkerState::kSpawning:
      return to == WorkerState::kWarming || to == WorkerState::kExited;
    case WorkerState::kWarming:
      return to == WorkerState::kReady || to == WorkerState::kExited;
    case WorkerState::kReady:
      return to == WorkerState::kBusy || to == WorkerState::kExited;
    case WorkerState::kBusy:
      return to == WorkerState::kReady || to == WorkerState::kExited;
    case WorkerState::kExited:
      return false;
  }
  return false;
}

const char* VersionPhaseName(VersionPhase phase) {
  switch (phase) {
    case VersionPhase::kStaged:
      return "Staged";
    case VersionPhase::kLive:
      return "Live";
    case VersionPhase::kRetiring:
      return "Retiring";
  }
  return "?";
}

const char* WorkerStartName(WorkerStart cause) {
  switch (cause) {
    case WorkerStart::kStart:
      return "start";
    case WorkerStart::kRespawn:
      return "respawn";
    case WorkerStart::kScaleUp:
      return "scale_up";
    case WorkerStart::kReload:
      return "reload";
  }
  return "?";
}

const char* WorkerStateName(WorkerState state) {
  switch (state) {
    case WorkerState::kSpawning:
      return "spawning";
    case WorkerState::kWarming:
      return "warming";
    case WorkerState::kReady:
      return "ready";
    case WorkerState::kBusy:
      return "busy";
    case WorkerState::kExited:
      return "exited";
  }
  return "?";
}

}  // namespace kiln
