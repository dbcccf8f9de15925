// WorkerPool's reload steps with fake zygotes: Stage adds a generation whose versions warm beside
// the served ones and take no client request; Commit switches routing in one step while the
// replaced version serves what was queued on it and then leaves; a staging that fails or does not
// fit in memory leaves the served versions and the pool as they were.
#include <atomic>
#include <catch2/catch.hpp>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "server/supervisor/worker_pool.h"
#include "tests/server/fake_zygote.h"

namespace kiln {
namespace {

using Catch::Matchers::Contains;
using testing::FakeZygote;
using testing::WaitUntil;

ModelSpec Version(int64_t version) {
  return testing::FakeModelSpec(/*max_queue_size=*/8, /*quorum=*/0, version);
}

// A pool serving m:1 (one worker) through `first`, with room to stage generation 2 through
// `second`; with a memory limit, the memory in use is always `usage_bytes`.
struct Generations {
  explicit Generations(FakeZygote::Behaviour first_behaviour = {}, int64_t memory_limit_bytes = 0) {
    auto pair = FrameChannel::CreatePair();
    REQUIRE(pair.ok());
    first = std::make_unique<FakeZygote>(std::move(pair->second), FakeZygote::Outputs{"y", 2});
    first->SetBehaviour(first_behaviour);
    WorkerPoolOptions options;
    options.threads["m:1"] = ModelThreads{1, 1};
    options.memory_limit = {memory_limit_bytes, MemoryLimit::Source::kPhysicalMemory, "test"};
    options.memory_usage = [this]() -> absl::StatusOr<MemoryUsage> {
      return MemoryUsage{usage_bytes.load(), "the test's"};
    };
    ModelSpec served = Version(1);
    served.config.mutable_memory()->set_limit_bytes(100'000'000);
    auto started = WorkerPool::Start({0, std::move(pair->first)}, {served}, options);
    REQUIRE(started.ok());
    pool = *std::move(started);
    REQUIRE(WaitUntil([&] { return pool->AllModelsReady(); }));
  }
  ~Generations() { pool->Stop(); }

  absl::Status Stage(FakeZygote::Behaviour behaviour = {}) {
    auto pair = FrameChannel::CreatePair();
    REQUIRE(pair.ok());
    second = std::make_unique<FakeZygote>(std::move(pair->second), FakeZygote::Outputs{"y", 2});
    second->SetBehaviour(behaviour);
    ModelSpec staged = Version(2);
    staged.config.mutable_memory()->set_limit_bytes(100'000'000);
    return pool->Stage({0, std::move(pair->first)}, 2, {staged}, {{"m:2", ModelThreads{1, 1}}});
  }

  int64_t Routed(bool staged = false) const {
    absl::StatusOr<SharedSpec> spec = pool->Route("m", "", staged);
    REQUIRE(spec.ok());
    return (*spec)->version;
  }

  std::atomic<int64_t> usage_bytes{0};  // what the memory in use reads as
  std::unique_ptr<FakeZygote> first;
  std::unique_ptr<FakeZygote> second;
  std::unique_ptr<WorkerPool> pool;
};

// A job of one row for `spec`, whose outcome lands in `code`.
InferJob Job(SharedSpec spec, absl::Mutex& mu, std::optional<absl::Status>& code) {
  static const float kRow[4] = {1, 2, 3, 4};
  InferJob job;
  job.spec = std::move(spec);
  job.inputs.push_back(TensorView{"x", DType::kFloat32, {1, 4}, kRow, sizeof(kRow)});
  job.done = [&mu, &code](InferOutcome outcome) {
    absl::MutexLock lock(&mu);
    code = outcome.outputs.status();
  };
  return job;
}

TEST_CASE(
    "a staged version warms beside the served one, and Commit switches in one step while "
    "the replaced one serves what was queued on it",
    "[worker_pool][reload]") {
  FakeZygote::Behaviour holding;
  holding.answer_calls = false;  // version 1's worker holds each call until AnswerHeld
  Generations pool(holding);
  const SharedSpec v1 = *pool.pool->Route("m", "");
  REQUIRE(pool.Stage().ok());
  REQUIRE(WaitUntil([&] { return pool.pool->StagingState().ready; }));
  CHECK(pool.pool->StagingState().summary == "m:2 1/1 warm");
  CHECK(pool.Routed() == 1);  // clients still reach version 1 only
  CHECK(pool.Routed(/*staged=*/true) == 2);
  CHECK(pool.pool->Served().size() == 1);

  // Two calls on version 1: one running (held), one queued behind it.
  absl::Mutex mu;
  std::optional<absl::Status> running, queued;
  REQUIRE(pool.pool->Submit(Job(v1, mu, running)).ok());
  REQUIRE(WaitUntil([&] { return pool.first->held_calls() == 1; }));
  REQUIRE(pool.pool->Submit(Job(v1, mu, queued)).ok());

  pool.pool->Commit({v1});
  CHECK(pool.Routed() == 2);
  CHECK_FALSE(pool.pool->StagingState().staging);
  std::optional<absl::Status> late;
  const absl::Status refused = pool.pool->Submit(Job(v1, mu, late));
  CHECK(refused.code() == absl::StatusCode::kAborted);  // routed before the switch: route again
  CHECK_THAT(std::string(refused.message()), Contains("was replaced; route it again"));

  // Version 1 finishes both calls, then its worker leaves and generation 1 closes.
  pool.first->AnswerHeld();
  REQUIRE(WaitUntil([&] {
    absl::MutexLock lock(&mu);
    return running.has_value();
  }));
  REQUIRE(WaitUntil([&] { return pool.first->held_calls() == 1; }));  // the queued call
  pool.first->AnswerHeld();
  REQUIRE(WaitUntil([&] {
    absl::MutexLock lock(&mu);
    return running.has_value() && queued.has_value();
  }));
  CHECK(running->ok());
  INFO("queued: " << *queued);
  CHECK(queued->ok());
  CHECK_FALSE(late.has_value());
  CHECK(WaitUntil([&] { return pool.pool->Generations() == std::vector<int>{2}; }));
  CHECK(WaitUntil([&] { return pool.first->live().empty(); }));  // its fake notices the EOF
  CHECK(pool.pool->ModelReady("m"));
}

TEST_CASE("a staged version whose workers keep dying fails its staging, not the pool",
          "[worker_pool][reload]") {
  Generations pool;
  FakeZygote::Behaviour dying;
  dying.die_at_start = true;
  REQUIRE(pool.Stage(dying).ok());
  REQUIRE(WaitUntil([&] { return !pool.pool->StagingState().failed.ok(); }));
  CHECK_THAT(std::string(pool.pool->StagingState().failed.message()),
             Contains("workers of model 'm:2' died 3 times in a row before becoming ready"));
  CHECK(pool.pool->fatal_error().ok());
  pool.pool->Abort();
  CHECK_FALSE(pool.pool->StagingState().staging);
  CHECK(pool.pool->Generations() == std::vector<int>{1});
  CHECK(pool.Routed() == 1);
  CHECK(pool.pool->ModelReady("m"));
  CHECK(pool.pool->Route("m", "", /*staged=*/true).status().code() == absl::StatusCode::kNotFound);
}

TEST_CASE("a staging whose zygote goes away fails with that reason", "[worker_pool][reload]") {
  Generations pool;
  FakeZygote::Behaviour warming;
  warming.report_ready = false;
  REQUIRE(pool.Stage(warming).ok());
  pool.second.reset();  // the generation's zygote exits
  REQUIRE(WaitUntil([&] { return !pool.pool->StagingState().failed.ok(); }));
  CHECK_THAT(std::string(pool.pool->StagingState().failed.message()),
             Contains("its zygote exited before its workers were warm"));
  CHECK(pool.pool->fatal_error().ok());
  pool.pool->Abort();
  CHECK(pool.pool->ModelReady("m"));
}

TEST_CASE(
    "a staging that does not fit in memory beside the served version is refused with the "
    "numbers, and nothing is staged",
    "[worker_pool][reload]") {
  constexpr int64_t kMB = 1000 * 1000;
  Generations pool({}, /*memory_limit_bytes=*/1000 * kMB);
  pool.usage_bytes = 950 * kMB;
  const absl::Status refused = pool.Stage();
  CHECK(refused.code() == absl::StatusCode::kResourceExhausted);
  CHECK_THAT(std::string(refused.message()),
             Contains("no memory for 1 more worker(s) of 'm:2': 950.0 MB in use (the test's)") &&
                 Contains("over the 1000.0 MB limit"));
  CHECK_FALSE(pool.pool->StagingState().staging);
  CHECK(pool.pool->Generations() == std::vector<int>{1});
  CHECK(pool.Routed() == 1);
  CHECK(pool.pool->ModelReady("m"));
}

}  // namespace
}  // namespace kiln
