// The zygote with real workers and the real pool, without gRPC: the zygote forks a worker that
// loads and warms the demo mlp, the pool serves a call through it, replaces it when it is
// killed, and the whole tree goes when the pool stops.
#include "server/zygote/zygote.h"

#include <sys/types.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <csignal>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "common/model_config_loader.h"
#include "server/supervisor/worker_pool.h"
#include "tests/catch_shape.h"
#include "tests/process_identity.h"
#include "tests/server/fake_zygote.h"
#include "tests/test_paths.h"

namespace kiln {
namespace {

using testing::WaitUntil;

// Runs one call of one row through `pool` and returns its outcome.
InferOutcome InferOneRow(WorkerPool& pool) {
  static const float kRow[16] = {0.5f, -1, 2, 0, 1, 1, -0.25f, 3, 0, 0, 1, 2, -2, 1, 0, 0.75f};
  absl::Mutex mu;
  std::optional<InferOutcome> result;
  InferJob job;
  absl::StatusOr<SharedSpec> spec = pool.Route("mlp", "");
  REQUIRE(spec.ok());
  job.spec = *spec;
  job.inputs.push_back(TensorView{"input", DType::kFloat32, {1, 16}, kRow, sizeof(kRow)});
  job.done = [&](InferOutcome outcome) {
    absl::MutexLock lock(&mu);
    result = std::move(outcome);
  };
  const absl::Status submitted = pool.Submit(std::move(job));
  if (!submitted.ok()) return {submitted, std::nullopt};
  REQUIRE(WaitUntil([&] {
    absl::MutexLock lock(&mu);
    return result.has_value();
  }));
  absl::MutexLock lock(&mu);
  return *std::move(result);
}

pid_t OnlyWorkerPid(const WorkerPool& pool) {
  const std::vector<WorkerInfo> workers = pool.Workers();
  return workers.size() == 1 ? workers.front().pid : 0;
}

TEST_CASE(
    "the zygote forks workers that warm and serve, replaces a killed one, and goes with "
    "the pool",
    "[zygote]") {
  absl::StatusOr<ModelSpec> spec = LoadModel(testing::ModelsDir() + "/mlp");
  REQUIRE(spec.ok());
  const std::vector<ModelSpec> specs = {*spec};
  std::map<std::string, ZygoteModel> models;
  models["mlp:1"].spec = &specs.front();  // not loaded here: the worker loads its own copy

  absl::StatusOr<std::pair<FrameChannel, FrameChannel>> channel = FrameChannel::CreatePair();
  REQUIRE(channel.ok());
  absl::StatusOr<pid_t> zygote = ForkZygote(models, channel->first, std::move(channel->second));
  REQUIRE(zygote.ok());
  WorkerPoolOptions options;
  options.threads["mlp:1"] = ModelThreads{1, 1};
  absl::StatusOr<std::unique_ptr<WorkerPool>> pool =
      WorkerPool::Start({*zygote, std::move(channel->first)}, specs, options);
  REQUIRE(pool.ok());
  REQUIRE(WaitUntil([&] { return (*pool)->ModelReady("mlp"); }, 120));
  const pid_t first = OnlyWorkerPid(**pool);
  CHECK(first > 0);
  CHECK(first != *zygote);
  CHECK((*pool)->Workers().front().warmup.shapes_size() == 4);  // batch 1, 2, 4, 8

  InferOutcome outcome = InferOneRow(**pool);
  REQUIRE(outcome.outputs.ok());
  REQUIRE(outcome.outputs->size() == 1);
  CHECK(outcome.outputs->front().shape == std::vector<int64_t>{1, 4});
  REQUIRE(outcome.ran_as.has_value());
  CHECK(*outcome.ran_as == Shape{1, 0});

  // Killed: a new worker is forked from the zygote, warms, and serves.
  REQUIRE(kill(first, SIGKILL) == 0);
  REQUIRE(WaitUntil(
      [&] {
        const pid_t pid = OnlyWorkerPid(**pool);
        return pid > 0 && pid != first && (*pool)->ModelReady("mlp");
      },
      120));
  const pid_t second = OnlyWorkerPid(**pool);
  CHECK(InferOneRow(**pool).outputs.ok());
  CHECK((*pool)->fatal_error().ok());

  // Stopping the pool closes the zygote's channel: the zygote leaves, its worker with it, and
  // the pool reaps it.
  (*pool)->Stop();
  CHECK(WaitUntil([&] { return !testing::Identify(second).has_value(); }));
  CHECK_FALSE(testing::Identify(*zygote).has_value());
}

}  // namespace
}  // namespace kiln
