// The reloader's state machine (server/reloader.h) driven as the master's loop drives it, one
// Advance() per turn, over a real WorkerPool whose zygotes are FakeZygotes and a model repository
// on disk (the reloader reads configs and file stamps, never the model files).
#include "server/reloader.h"

#include <catch2/catch.hpp>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "common/model_config_loader.h"
#include "server/supervisor/worker_pool.h"
#include "tests/server/fake_zygote.h"
#include "tests/test_paths.h"

namespace kiln {
namespace {

using Catch::Matchers::Contains;
using testing::FakeZygote;
using testing::WaitUntil;

// Triton's config.pbtxt; no kiln.pbtxt (every setting its default).
constexpr char kConfig[] = R"(name: "m"
backend: "pytorch"
max_batch_size: 4
input [ { name: "x" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "y" data_type: TYPE_FP32 dims: [ 2 ] } ]
)";

std::vector<std::string> Keys(const std::vector<SharedSpec>& specs) {
  std::vector<std::string> keys;
  for (const SharedSpec& spec : specs) keys.push_back(spec->key());
  return keys;
}

// Model "m" version 1 in a repository on disk, served by a pool whose zygotes are fakes; a
// reloader over both whose readiness check answers `check`.
struct ReloadUnderTest {
  ReloadUnderTest() {
    dir.WriteFile("m/config.pbtxt", kConfig);
    dir.WriteFile("m/1/model.pt", "not read");
    absl::StatusOr<std::vector<ModelSpec>> specs = LoadModelRepository(dir.path());
    INFO(specs.status());
    REQUIRE(specs.ok());
    zygotes.push_back(nullptr);
    WorkerPoolOptions options;
    options.threads["m:1"] = ModelThreads{1, 1};
    absl::StatusOr<std::unique_ptr<WorkerPool>> started =
        WorkerPool::Start(StartFake(), *specs, options);
    REQUIRE(started.ok());
    pool = *std::move(started);
    REQUIRE(WaitUntil([&] { return pool->AllModelsReady(); }));
    ReloadHooks hooks;
    hooks.start_zygote = [this](int, const std::vector<std::string>&) {
      return absl::StatusOr<ZygoteProcess>(StartFake());
    };
    hooks.check_staged = [this] {
      ++checks;
      return check;
    };
    hooks.wake = [] {};
    hooks.threads_for = [](const ModelSpec&) { return ModelThreads{1, 1}; };
    hooks.switched = [this] {
      ++switches;
      answered_before_switch = answered_before_switch || outcome.has_value();
    };
    hooks.phase_done = [this](const std::string& phase, double seconds) {
      phases.push_back(phase);
      phase_seconds_valid = phase_seconds_valid && seconds >= 0;
    };
    reloader = std::make_unique<Reloader>(dir.path(), *pool, std::move(hooks), 60);
  }
  ~ReloadUnderTest() { pool->Stop(); }

  // A zygote of the test's own (pid 0: nothing to reap), kept until the pool stops.
  ZygoteProcess StartFake() {
    absl::StatusOr<std::pair<FrameChannel, FrameChannel>> pair = FrameChannel::CreatePair();
    REQUIRE(pair.ok());
    zygotes.push_back(std::make_unique<FakeZygote>(std::move(pair->second)));
    return ZygoteProcess{0, std::move(pair->first)};
  }

  // Queues a reload of the whole repository; its outcome lands in `outcome`.
  void RequestReload() {
    reloader->Request({ReloadRequest::Kind::kRepository, ""},
                      [this](absl::Status status) { outcome = std::move(status); });
  }
  // Turns of the master's loop until the reload reaches `step`.
  bool AdvanceUntil(ReloadStep step) {
    return WaitUntil([&] {
      reloader->Advance();
      return reloader->step() == step;
    });
  }

  kiln::testing::TempDir dir;
  std::vector<std::unique_ptr<FakeZygote>> zygotes;  // outlive the pool
  std::unique_ptr<WorkerPool> pool;
  std::unique_ptr<Reloader> reloader;
  absl::Status check;
  int checks = 0;
  int switches = 0;                     // routing switched (ReloadHooks::switched)
  bool answered_before_switch = false;  // the request heard OK before health could follow
  std::vector<std::string> phases;      // ReloadHooks::phase_done, in order
  bool phase_seconds_valid = true;
  std::optional<absl::Status> outcome;
};

TEST_CASE("a reload stages, checks and switches one step per turn of the master's loop",
          "[reloader]") {
  ReloadUnderTest test;
  test.reloader->Advance();  // nothing queued
  CHECK(test.reloader->step() == ReloadStep::kIdle);

  test.dir.WriteFile("m/2/model.pt", "not read");
  test.RequestReload();
  test.reloader->Advance();  // planned: m:2 loads in generation 2's zygote
  CHECK(test.reloader->step() == ReloadStep::kStaging);
  CHECK(Keys(test.pool->Served(/*staged=*/true)) == std::vector<std::string>{"m:2"});
  CHECK(Keys(test.pool->Served()) == std::vector<std::string>{"m:1"});  // still serving
  CHECK_FALSE(test.outcome.has_value());

  REQUIRE(test.AdvanceUntil(ReloadStep::kChecking));
  CHECK(test.checks == 0);
  CHECK(test.switches == 0);
  test.reloader->Advance();  // the check passes: routing switches
  CHECK(test.checks == 1);
  CHECK(test.switches == 1);
  CHECK(test.reloader->step() == ReloadStep::kIdle);
  REQUIRE(test.outcome.has_value());
  CHECK(test.outcome->ok());
  CHECK(Keys(test.pool->Served()) == std::vector<std::string>{"m:2"});
  // Every step timed, in order.
  CHECK(test.phases ==
        std::vector<std::string>{"plan", "start_zygote", "warm", "readiness_check", "switch"});
  CHECK(test.phase_seconds_valid);
  // m:1 drains, and its generation's zygote is closed.
  CHECK(WaitUntil([&] { return test.pool->Generations() == std::vector<int>{2}; }));

  // Nothing changed since: the next reload commits at once, with nothing to stage.
  test.outcome.reset();
  test.phases.clear();
  test.RequestReload();
  test.reloader->Advance();
  CHECK(test.switches == 2);
  CHECK(test.phases == std::vector<std::string>{"plan", "switch"});
  CHECK(test.reloader->step() == ReloadStep::kIdle);
  REQUIRE(test.outcome.has_value());
  CHECK(test.outcome->ok());
  CHECK_FALSE(test.answered_before_switch);  // health is published before OK is answered
}

TEST_CASE("a reload whose readiness check fails is aborted and what was served keeps serving",
          "[reloader]") {
  ReloadUnderTest test;
  test.check = absl::UnavailableError("p95 over the allowance");
  test.dir.WriteFile("m/2/model.pt", "not read");
  test.RequestReload();
  REQUIRE(test.AdvanceUntil(ReloadStep::kChecking));
  test.reloader->Advance();
  CHECK(test.switches == 0);
  CHECK(test.reloader->step() == ReloadStep::kIdle);
  REQUIRE(test.outcome.has_value());
  CHECK(test.outcome->code() == absl::StatusCode::kUnavailable);
  CHECK_THAT(std::string(test.outcome->message()),
             Contains("loading m:2 failed: p95 over the allowance"));
  CHECK(Keys(test.pool->Served()) == std::vector<std::string>{"m:1"});
  CHECK(test.pool->Served(/*staged=*/true).empty());
  CHECK_FALSE(test.pool->StagingState().staging);
  // The repository index says why m did not move on.
  bool said = false;
  for (const auto& entry : test.reloader->Index(/*ready_only=*/false)) {
    said = said || absl::StrContains(entry.reason(), "p95 over the allowance");
  }
  CHECK(said);
}

TEST_CASE("a server that stops mid-reload aborts the staging and answers every request",
          "[reloader]") {
  ReloadUnderTest test;
  test.dir.WriteFile("m/2/model.pt", "not read");
  test.RequestReload();
  test.reloader->Advance();
  REQUIRE(test.reloader->step() == ReloadStep::kStaging);
  std::optional<absl::Status> queued;
  test.reloader->Request({ReloadRequest::Kind::kUnload, "m"},
                         [&queued](absl::Status status) { queued = std::move(status); });
  test.reloader->Cancel(absl::UnavailableError("server is stopping"));
  CHECK(test.reloader->step() == ReloadStep::kIdle);
  REQUIRE(test.outcome.has_value());
  CHECK(test.outcome->code() == absl::StatusCode::kUnavailable);
  REQUIRE(queued.has_value());
  CHECK(queued->code() == absl::StatusCode::kUnavailable);
  CHECK(test.pool->Served(/*staged=*/true).empty());
  CHECK(Keys(test.pool->Served()) == std::vector<std::string>{"m:1"});
}

}  // namespace
}  // namespace kiln
