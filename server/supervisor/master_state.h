// The master's lifecycle as one state machine (docs/ARCHITECTURE.md, "State machines").
//
//   Loading --> Warming --> Checking --> Serving --> Draining --> Stopped
//      |           |           |            |
//      `-----------`-----------`------------`------------------> Stopped
//
// Loading, Warming and Checking go to Stopped when startup fails or TERM or INT arrives; Serving
// goes to Draining on TERM and to Stopped on INT or when the pool can no longer serve. Scaling
// and reloads happen within Serving: they change the pool, not the master's state (a reload is
// its own state machine, server/reloader.h, stepped by the serving loop).
#ifndef KILN_SERVER_SUPERVISOR_MASTER_STATE_H_
#define KILN_SERVER_SUPERVISOR_MASTER_STATE_H_

#include <atomic>

#include "absl/status/status.h"

namespace kiln {

enum class MasterState {
  kLoading,   // port lock, model repository, mapped weights, TorchScript, tokenizers; one thread
  kWarming,   // the zygote is forked and its workers warm until every model has its quorum
  kChecking,  // the readiness check runs through the whole request path, port still closed
  kServing,   // the port is open; health follows each model's quorum
  kDraining,  // TERM: health NOT_SERVING, no new calls, in-flight calls finish
  kStopped,   // the workers and the zygote are gone; the master returns its exit code
};

const char* MasterStateName(MasterState state);

// Whether the diagram above has an arrow from `from` to `to`.
bool MasterTransitionAllowed(MasterState from, MasterState to);

// Ownership: a value owned by the master. Thread-safety: state() is safe from any thread (gRPC
// threads read it to answer readiness); TransitionTo only from the master's main thread.
class MasterStateMachine {
 public:
  MasterState state() const { return state_.load(std::memory_order_acquire); }

  // Moves to `next`; FailedPrecondition, naming both states, for a transition not in the diagram
  // (the state is then unchanged).
  absl::Status TransitionTo(MasterState next);

 private:
  std::atomic<MasterState> state_{MasterState::kLoading};
};

}  // namespace kiln

#endif  // KILN_SERVER_SUPERVISOR_MASTER_STATE_H_
