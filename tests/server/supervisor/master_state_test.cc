#include "server/supervisor/master_state.h"

#include <catch2/catch.hpp>
#include <string>
#include <utility>
#include <vector>

namespace kiln {
namespace {

using Catch::Matchers::Contains;
using S = MasterState;

const std::vector<S> kAll = {S::kLoading, S::kWarming,  S::kChecking,
                             S::kServing, S::kDraining, S::kStopped};

TEST_CASE("the master's legal transitions are exactly the diagram's arrows", "[master_state]") {
  const std::vector<std::pair<S, S>> arrows = {
      {S::kLoading, S::kWarming},  {S::kWarming, S::kChecking}, {S::kChecking, S::kServing},
      {S::kServing, S::kDraining}, {S::kDraining, S::kStopped}, {S::kLoading, S::kStopped},
      {S::kWarming, S::kStopped},  {S::kChecking, S::kStopped}, {S::kServing, S::kStopped},
  };
  for (S from : kAll) {
    for (S to : kAll) {
      const bool arrow =
          std::find(arrows.begin(), arrows.end(), std::make_pair(from, to)) != arrows.end();
      INFO(MasterStateName(from) << " -> " << MasterStateName(to));
      CHECK(MasterTransitionAllowed(from, to) == arrow);
    }
  }
}

TEST_CASE("the state machine refuses an illegal transition and keeps its state", "[master_state]") {
  MasterStateMachine machine;
  CHECK(machine.state() == S::kLoading);
  const absl::Status skipped = machine.TransitionTo(S::kServing);  // no warmup, no check
  CHECK(skipped.code() == absl::StatusCode::kFailedPrecondition);
  CHECK_THAT(std::string(skipped.message()), Contains("loading -> serving"));
  CHECK(machine.state() == S::kLoading);
  for (S next : {S::kWarming, S::kChecking, S::kServing, S::kDraining, S::kStopped}) {
    REQUIRE(machine.TransitionTo(next).ok());
    CHECK(machine.state() == next);
  }
  CHECK_FALSE(machine.TransitionTo(S::kServing).ok());  // no way back from Stopped
  CHECK(machine.state() == S::kStopped);
}

}  // namespace
}  // namespace kiln
