#include "server/supervisor/master_state.h"

#include "absl/strings/str_cat.h"

namespace kiln {

const char* MasterStateName(MasterState state) {
  switch (state) {
    case MasterState::kLoading:
      return "loading";
    case MasterState::kWarming:
      return "warming";
    case MasterState::kChecking:
      return "checking";
    case MasterState::kServing:
      return "serving";
    case MasterState::kDraining:
      return "draining";
    case MasterState::kStopped:
      return "stopped";
  }
  return "?";
}

bool MasterTransitionAllowed(MasterState from, MasterState to) {
  switch (from) {
    case MasterState::kLoading:
      return to == MasterState::kWarming || to == MasterState::kStopped;
    case MasterState::kWarming:
      return to == MasterState::kChecking || to == MasterState::kStopped;
    case MasterState::kChecking:
      return to == MasterState::kServing || to == MasterState::kStopped;
    case MasterState::kServing:
      return to == MasterState::kDraining || to == MasterState::kStopped;
    case MasterState::kDraining:
      return to == MasterState::kStopped;
    case MasterState::kStopped:
      return false;
  }
  return false;
}

absl::Status MasterStateMachine::TransitionTo(MasterState next) {
  const MasterState now = state();
  if (!MasterTransitionAllowed(now, next)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "master: illegal transition ", MasterStateName(now), " -> ", MasterStateName(next)));
  }
  state_.store(next, std::memory_order_release);
  return absl::OkStatus();
}

}  // namespace kiln
