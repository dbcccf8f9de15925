// WorkerPool against a FakeZygote over real FrameChannels: supervision (respawn, the crash-loop
// limit, a protocol break), quorums, the queue (full, deadlines, dispatch, stopping), and
// outputs read in place from alternating halves of a worker's arena.
#include "server/supervisor/worker_pool.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "common/arena_tensors.h"
#include "common/clock.h"
#include "common/memory_probe.h"
#include "tests/server/fake_zygote.h"

namespace kiln {
namespace {

using Catch::Matchers::Contains;
using testing::FakeZygote;
using testing::WaitUntil;

// Outcomes of submitted jobs, by the order of submission. Thread-safe: the pool's thread fills
// it.
class Outcomes {
 public:
  // A job for the version of "m" that `pool` routes to.
  InferJob Job(const WorkerPool& pool, int64_t deadline_ns = 0) {
    InferJob job;
    absl::StatusOr<SharedSpec> spec = pool.Route("m", "");
    REQUIRE(spec.ok());
    job.spec = *spec;
    job.inputs.push_back(TensorView{"x", DType::kFloat32, {1, 4}, row_, sizeof(row_)});
    job.deadline_monotonic_ns = deadline_ns;
    absl::MutexLock lock(&mu_);
    const size_t index = codes_.size();
    codes_.push_back(std::nullopt);
    never_sent_.push_back(false);
    job.done = [this, index](InferOutcome outcome) {
      absl::MutexLock lock(&mu_);
      codes_[index] = outcome.outputs.status().code();
      never_sent_[index] = outcome.never_sent;
      messages_.push_back(std::string(outcome.outputs.status().message()));
    };
    return job;
  }
  std::optional<absl::StatusCode> code(size_t index) const {
    absl::MutexLock lock(&mu_);
    return codes_.at(index);
  }
  // Whether job `index` ended in the queue (InferOutcome::never_sent).
  bool never_sent(size_t index) const {
    absl::MutexLock lock(&mu_);
    return never_sent_.at(index);
  }
  int finished() const {
    absl::MutexLock lock(&mu_);
    int n = 0;
    for (const auto& code : codes_) n += code.has_value();
    return n;
  }
  std::string messages() const {
    absl::MutexLock lock(&mu_);
    std::string all;
    for (const std::string& message : messages_) all += message + "\n";
    return all;
  }

 private:
  const float row_[4] = {1, 2, 3, 4};
  mutable absl::Mutex mu_;
  std::vector<std::optional<absl::StatusCode>> codes_;
  std::vector<bool> never_sent_;
  std::vector<std::string> messages_;
};

// A pool of `workers` workers of FakeModelSpec(max_queue_size, quorum), served by a FakeZygote
// that behaves as `behaviour` from the start. With a memory limit, the memory in use is always
// `usage_bytes`.
struct PoolUnderTest {
  PoolUnderTest(int workers, int max_queue_size, int quorum, FakeZygote::Behaviour behaviour = {},
                double compute_timeout_ms = 0, int64_t memory_limit_bytes = 0,
                int64_t budget_bytes = 0, int64_t usage_bytes = 0, FakeZygote::Outputs outputs = {},
                const std::function<void(ModelConfig&)>& edit_config = nullptr) {
    specs.push_back(testing::FakeModelSpec(max_queue_size, quorum));
    if (edit_config) edit_config(specs.back().config);
    specs.back().config.mutable_supervision()->set_compute_timeout_ms(compute_timeout_ms);
    specs.back().config.mutable_memory()->set_limit_bytes(budget_bytes);
    absl::StatusOr<std::pair<FrameChannel, FrameChannel>> pair = FrameChannel::CreatePair();
    REQUIRE(pair.ok());
    zygote = std::make_unique<FakeZygote>(std::move(pair->second), std::move(outputs));
    zygote->SetBehaviour(behaviour);
    WorkerPoolOptions options;
    options.threads["m:1"] = ModelThreads{workers, 1};
    options.memory_limit = {memory_limit_bytes, MemoryLimit::Source::kPhysicalMemory, "test"};
    options.memory_usage = [usage_bytes]() -> absl::StatusOr<MemoryUsage> {
      return MemoryUsage{usage_bytes, "the test's"};
    };
    options.on_worker_ready = [this](const ModelSpec&, WorkerStart cause, double fork_s,
                                     double warm_s) {
      std::lock_guard<std::mutex> lock(starts_mu);
      starts.push_back(cause);
      phases_valid = phases_valid && fork_s >= 0 && warm_s >= 0;
    };
    absl::StatusOr<std::unique_ptr<WorkerPool>> started =
        WorkerPool::Start({0, std::move(pair->first)}, specs, options);
    REQUIRE(started.ok());
    pool = *std::move(started);
  }
  ~PoolUnderTest() { pool->Stop(); }

  int Ready() const {
    int ready = 0;
    for (const WorkerInfo& worker : pool->Workers()) {
      ready += worker.state == WorkerState::kReady || worker.state == WorkerState::kBusy;
    }
    return ready;
  }

  // The causes WorkerPoolOptions::on_worker_ready reported, in order.
  std::vector<WorkerStart> Starts() {
    std::lock_guard<std::mutex> lock(starts_mu);
    return starts;
  }

  std::mutex starts_mu;
  std::vector<WorkerStart> starts;
  bool phases_valid = true;
  std::vector<ModelSpec> specs;
  std::unique_ptr<FakeZygote> zygote;
  std::unique_ptr<WorkerPool> pool;
};

TEST_CASE("worker transitions outside the state diagram are refused", "[worker_pool]") {
  using S = WorkerState;
  CHECK(WorkerTransitionAllowed(S::kSpawning, S::kWarming));
  CHECK(WorkerTransitionAllowed(S::kWarming, S::kReady));
  CHECK(WorkerTransitionAllowed(S::kReady, S::kBusy));
  CHECK(WorkerTransitionAllowed(S::kBusy, S::kReady));
  for (S state : {S::kSpawning, S::kWarming, S::kReady, S::kBusy}) {
    CHECK(WorkerTransitionAllowed(state, S::kExited));
  }
  CHECK_FALSE(WorkerTransitionAllowed(S::kSpawning, S::kReady));  // warmup skipped
  CHECK_FALSE(WorkerTransitionAllowed(S::kWarming, S::kBusy));    // a call before ready
  CHECK_FALSE(WorkerTransitionAllowed(S::kReady, S::kWarming));
  CHECK_FALSE(WorkerTransitionAllowed(S::kBusy, S::kBusy));  // two calls at once
  for (S state : {S::kSpawning, S::kWarming, S::kReady, S::kBusy, S::kExited}) {
    CHECK_FALSE(WorkerTransitionAllowed(S::kExited, state));  // a dead worker stays dead
  }
}

// Where `data` lies: in a worker's arena (its shared memory, not a copy), or not.
bool InArena(const void* data) {
  std::ifstream maps("/proc/self/maps");
  const auto address = reinterpret_cast<uintptr_t>(data);
  for (std::string line; std::getline(maps, line);) {
    uintptr_t begin = 0, end = 0;
    if (std::sscanf(line.c_str(), "%lx-%lx", &begin, &end) == 2 && address >= begin &&
        address < end) {
      return line.find("kiln-arena") != std::string::npos;
    }
  }
  return false;
}

TEST_CASE("outputs are read in place, a worker's calls alternate between its arena's halves, and "
          "routing goes on meanwhile",
          "[worker_pool]") {
  PoolUnderTest pool(1, 8, 0, {}, 0, 0, 0, 0, {"y", 3});
  REQUIRE(WaitUntil([&] { return pool.Ready() == 1; }));
  // What each job's `done` saw, checked on the test's thread afterwards.
  struct Seen {
    bool zeros = false;  // the outputs, read in place
    const void* data = nullptr;
    bool in_arena = false;
    bool routed = false;  // the request path takes only the pool's lock
  };
  std::vector<Seen> seen(3);
  std::atomic<int> finished{0};
  Outcomes outcomes;
  for (Seen& one : seen) {
    InferJob job = outcomes.Job(*pool.pool);
    job.done = [&pool, &one, &finished](InferOutcome outcome) {
      if (outcome.outputs.ok() && outcome.outputs->size() == 1) {
        const TensorView& y = outcome.outputs->front();
        const auto* values = static_cast<const float*>(y.data);
        one.zeros = y.shape == std::vector<int64_t>{1, 3} && y.nbytes == 3 * sizeof(float) &&
                    std::all_of(values, values + 3, [](float v) { return v == 0.0f; });
        one.data = y.data;
        one.in_arena = InArena(y.data);
      }
      one.routed = pool.pool->Route("m", "").ok();
      ++finished;
    };
    REQUIRE(pool.pool->Submit(std::move(job)).ok());
  }
  REQUIRE(WaitUntil([&] { return finished.load() == 3; }));
  for (const Seen& one : seen) {
    CHECK(one.zeros);
    CHECK(one.in_arena);
    CHECK(one.routed);
  }
  // Consecutive calls of the one worker use the two halves in turn: while `done` reads one
  // call's outputs, the worker may already write the next call's into the other half.
  const auto half = static_cast<ptrdiff_t>(ArenaBytesFor(pool.specs[0].config) / 2);
  const auto* first = static_cast<const char*>(seen[0].data);
  CHECK(std::abs(static_cast<const char*>(seen[1].data) - first) == half);
  CHECK(seen[2].data == seen[0].data);
}

TEST_CASE("with dynamic batching, queued requests go to a free worker as one call, split back",
          "[worker_pool][batching]") {
  FakeZygote::Behaviour holding;
  holding.answer_calls = false;
  holding.warmed_batches = {1, 2, 4};
  holding.steady_cpu_ms = 1.0;  // as costly at 4 rows as at 1: batches pay
  PoolUnderTest pool(1, 8, 0, holding, 0, 0, 0, 0, {"y", 2, /*echo=*/true},
                     [](ModelConfig& config) {
                       config.mutable_dynamic_batching()->set_enabled(true);
                       config.mutable_warmup()->set_pad_to_warmed(true);
                     });
  REQUIRE(WaitUntil([&] { return pool.Ready() == 1; }));
  // Job i sends the row {i, 10 i, 0, 0}; what its `done` saw is checked on the test's thread.
  struct Seen {
    std::vector<float> y;
    int call_jobs = 0;
    bool first_in_call = false;
  };
  constexpr int kJobs = 4;
  std::vector<std::array<float, 4>> rows(kJobs);
  std::vector<Seen> seen(kJobs);
  std::atomic<int> finished{0};
  const auto submit = [&](int i) {
    rows[i] = {static_cast<float>(i), 10.0f * i, 0, 0};
    InferJob job;
    job.spec = *pool.pool->Route("m", "");
    job.inputs.push_back(TensorView{"x", DType::kFloat32, {1, 4}, rows[i].data(), 16});
    job.done = [&seen, &finished, i](InferOutcome outcome) {
      if (outcome.outputs.ok() && outcome.outputs->size() == 1) {
        const TensorView& y = outcome.outputs->front();
        if (y.shape == std::vector<int64_t>{1, 2}) {
          seen[i].y.resize(2);
          std::memcpy(seen[i].y.data(), y.data, 2 * sizeof(float));
        }
      }
      seen[i].call_jobs = outcome.call_jobs;
      seen[i].first_in_call = outcome.first_in_call;
      ++finished;
    };
    REQUIRE(pool.pool->Submit(std::move(job)).ok());
  };
  // Job 0 finds the worker free and goes at once, alone; 1, 2 and 3 queue behind it.
  submit(0);
  REQUIRE(WaitUntil([&] { return pool.zygote->held_calls() == 1; }));
  for (int i = 1; i < kJobs; ++i) submit(i);
  pool.zygote->AnswerHeld();
  REQUIRE(WaitUntil([&] { return finished.load() == 1; }));
  // Then the three queued go as one call of 3 rows (padded to the warmed 4 by a real worker).
  REQUIRE(WaitUntil([&] { return pool.zygote->held_calls() == 1; }));
  pool.zygote->AnswerHeld();
  REQUIRE(WaitUntil([&] { return finished.load() == kJobs; }));
  CHECK(seen[0].call_jobs == 1);
  for (int i = 0; i < kJobs; ++i) {
    INFO("job " << i);
    CHECK(seen[i].y == std::vector<float>{static_cast<float>(i), 10.0f * i});  // its own row
    if (i > 0) CHECK(seen[i].call_jobs == 3);
    CHECK(seen[i].first_in_call == (i <= 1));
  }
  CHECK(pool.pool->Counters("m").requests == kJobs);
  CHECK(pool.pool->Counters("m").calls == 2);
}

TEST_CASE("a free worker takes the highest priority level's request first", "[worker_pool]") {
  FakeZygote::Behaviour holding;
  holding.answer_calls = false;
  Outcomes outcomes;
  PoolUnderTest pool(1, 8, 0, holding, 0, 0, 0, 0, {}, [](ModelConfig& config) {
    DynamicBatchingConfig& batching = *config.mutable_dynamic_batching();
    batching.clear_levels();
    batching.add_levels()->set_max_queue_size(8);
    batching.add_levels()->set_max_queue_size(8);
    batching.set_default_priority_level(2);
  });
  REQUIRE(WaitUntil([&] { return pool.Ready() == 1; }));
  REQUIRE(pool.pool->Submit(outcomes.Job(*pool.pool)).ok());  // 0: runs at once
  REQUIRE(WaitUntil([&] { return pool.zygote->held_calls() == 1; }));
  REQUIRE(pool.pool->Submit(outcomes.Job(*pool.pool)).ok());  // 1: the default level, 2
  InferJob urgent = outcomes.Job(*pool.pool);                 // 2: level 1, queued after 1
  urgent.priority = 1;
  REQUIRE(pool.pool->Submit(std::move(urgent)).ok());
  pool.zygote->AnswerHeld();
  REQUIRE(WaitUntil([&] { return outcomes.finished() == 1 && pool.zygote->held_calls() == 1; }));
  pool.zygote->AnswerHeld();
  REQUIRE(WaitUntil([&] { return outcomes.finished() == 2; }));
  CHECK(outcomes.code(2) == absl::StatusCode::kOk);  // level 1 went first
  CHECK_FALSE(outcomes.code(1).has_value());
  REQUIRE(WaitUntil([&] { return pool.zygote->held_calls() == 1; }));
  pool.zygote->AnswerHeld();
  REQUIRE(WaitUntil([&] { return outcomes.finished() == 3; }));
}

TEST_CASE("the pool spawns every worker and a model is ready at its quorum", "[worker_pool]") {
  SECTION("quorum 0 means all workers") {
    PoolUnderTest pool(2, 8, 0);
    REQUIRE(WaitUntil([&] { return pool.Ready() == 2; }));
    CHECK(pool.pool->ModelReady("m"));
    CHECK(pool.pool->AllModelsReady());
    CHECK_FALSE(pool.pool->ModelReady("other"));
    CHECK(pool.zygote->spawns() == 2);
  }
  SECTION("workers that never report keep the model below its quorum") {
    PoolUnderTest pool(2, 8, 1, {/*report_ready=*/false});
    REQUIRE(WaitUntil([&] { return pool.zygote->spawns() == 2; }));
    REQUIRE(WaitUntil([&] {
      const std::vector<WorkerInfo> workers = pool.pool->Workers();
      return workers.size() == 2 && workers[0].state == WorkerState::kWarming &&
             workers[1].state == WorkerState::kWarming;
    }));
    CHECK_FALSE(pool.pool->ModelReady("m"));
  }
}

TEST_CASE("a dead worker is respawned, and the quorum decides readiness meanwhile",
          "[worker_pool]") {
  PoolUnderTest pool(2, 8, 1);
  REQUIRE(WaitUntil([&] { return pool.Ready() == 2; }));
  const std::vector<int> before = pool.zygote->live();
  REQUIRE(before.size() == 2);

  // Replacements stay warming: one worker of two left is still the quorum of 1.
  pool.zygote->SetBehaviour({/*report_ready=*/false});
  pool.zygote->Kill(before[0]);
  REQUIRE(WaitUntil([&] { return pool.zygote->spawns() == 3; }));
  CHECK(pool.Ready() == 1);
  CHECK(pool.pool->ModelReady("m"));
  // The replacement is a new worker (new id) in the dead one's slot.
  const std::vector<WorkerInfo> workers = pool.pool->Workers();
  REQUIRE(workers.size() == 2);
  CHECK(workers.back().id > before[1]);
  CHECK(std::set<int>{workers[0].slot, workers[1].slot} == std::set<int>{0, 1});

  // Both gone: below the quorum until a replacement reports ready.
  pool.zygote->Kill(before[1]);
  REQUIRE(WaitUntil([&] { return pool.zygote->spawns() == 4; }));
  CHECK_FALSE(pool.pool->ModelReady("m"));
  pool.zygote->SetBehaviour({});
  pool.zygote->Kill(pool.zygote->live().front());
  REQUIRE(WaitUntil([&] { return pool.pool->ModelReady("m"); }));
  CHECK(pool.pool->fatal_error().ok());
}

TEST_CASE("each worker's start is reported with its cause: start, respawn, scale-up",
          "[worker_pool]") {
  PoolUnderTest pool(2, 8, 0);
  REQUIRE(WaitUntil([&] { return pool.Ready() == 2; }));
  using S = WorkerStart;
  CHECK(pool.Starts() == std::vector<S>{S::kStart, S::kStart});
  pool.zygote->Kill(pool.zygote->live().front());
  REQUIRE(WaitUntil([&] { return pool.Starts().size() == 3; }));
  CHECK(pool.Starts().back() == S::kRespawn);
  REQUIRE(pool.pool->SetWorkers("m", 3).ok());
  REQUIRE(WaitUntil([&] { return pool.Starts().size() == 4; }));
  CHECK(pool.Starts().back() == S::kScaleUp);
  std::lock_guard<std::mutex> lock(pool.starts_mu);
  CHECK(pool.phases_valid);
  CHECK(std::string(WorkerStartName(S::kReload)) == "reload");
}

TEST_CASE("after its quorum a model stays SERVING while min_ready workers are warm",
          "[worker_pool]") {
  PoolUnderTest pool(2, 8, 0);  // quorum 0: all 2; min_ready unset: 1
  REQUIRE(WaitUntil([&] { return pool.Ready() == 2; }));
  ModelReadiness readiness = pool.pool->Readiness("m");
  CHECK(readiness.warm == 2);
  CHECK(readiness.workers == 2);
  CHECK(readiness.quorum == 2);
  CHECK(readiness.min_ready == 1);
  CHECK(readiness.serving);
  CHECK_FALSE(readiness.degraded());

  // One dies and its replacement stays warming: 1 of 2 warm, still SERVING, degraded.
  pool.zygote->SetBehaviour({/*report_ready=*/false});
  const std::vector<int> first = pool.zygote->live();
  pool.zygote->Kill(first[0]);
  REQUIRE(WaitUntil([&] { return pool.zygote->spawns() == 3; }));
  readiness = pool.pool->Readiness("m");
  CHECK(readiness.warm == 1);
  CHECK(readiness.serving);
  CHECK(readiness.degraded());
  CHECK(pool.pool->ModelReady("m"));

  // Both die: below min_ready. One replacement warm again is enough (the quorum was reached).
  pool.zygote->Kill(first[1]);
  REQUIRE(WaitUntil([&] { return pool.zygote->spawns() == 4; }));
  CHECK_FALSE(pool.pool->ModelReady("m"));
  pool.zygote->SetBehaviour({});
  pool.zygote->Kill(pool.zygote->live().front());
  REQUIRE(WaitUntil([&] { return pool.pool->ModelReady("m"); }));
  CHECK(pool.pool->Readiness("m").warm == 1);
}

TEST_CASE("before its quorum a model is not ready, whatever min_ready says", "[worker_pool]") {
  PoolUnderTest pool(2, 8, 0, {/*report_ready=*/false});
  REQUIRE(WaitUntil([&] { return pool.zygote->live().size() == 2; }));
  pool.zygote->SetBehaviour({});
  pool.zygote->Kill(pool.zygote->live().front());  // its replacement reports ready
  REQUIRE(WaitUntil([&] { return pool.Ready() == 1; }));
  CHECK_FALSE(pool.pool->ModelReady("m"));
  CHECK_FALSE(pool.pool->Readiness("m").degraded());
}

TEST_CASE(
    "each served version has its own workers, and an unversioned request goes to the "
    "newest ready one",
    "[worker_pool]") {
  std::vector<ModelSpec> specs;
  WorkerPoolOptions options;
  for (int64_t version : {1, 2}) {
    const ModelSpec& spec = specs.emplace_back(testing::FakeModelSpec(8, 0, version));
    options.threads[spec.key()] = ModelThreads{1, 1};
  }
  absl::StatusOr<std::pair<FrameChannel, FrameChannel>> pair = FrameChannel::CreatePair();
  REQUIRE(pair.ok());
  FakeZygote zygote(std::move(pair->second));
  absl::StatusOr<std::unique_ptr<WorkerPool>> started =
      WorkerPool::Start({0, std::move(pair->first)}, specs, options);
  REQUIRE(started.ok());
  WorkerPool& pool = **started;
  REQUIRE(WaitUntil([&] { return pool.AllModelsReady(); }));
  CHECK(pool.Readiness("m").workers == 2);
  CHECK(pool.Readiness("m", 2).workers == 1);
  const auto routed = [&](const std::string& version) {
    absl::StatusOr<SharedSpec> spec = pool.Route("m", version);
    INFO("version '" << version << "': " << spec.status());
    REQUIRE(spec.ok());
    return (*spec)->version;
  };
  CHECK(routed("") == 2);
  CHECK(routed("1") == 1);
  CHECK(pool.Route("m", "3").status().code() == absl::StatusCode::kNotFound);
  CHECK_THAT(std::string(pool.Route("m", "3").status().message()),
             Contains("serves version(s) 1, 2"));
  CHECK(pool.Route("m", "0").status().code() == absl::StatusCode::kInvalidArgument);
  CHECK_THAT(std::string(pool.Route("x", "").status().message()),
             Contains("unknown model 'x'; this server serves: m"));

  // Version 2's worker dies and its replacement stays warming: version 1 takes the unversioned
  // requests meanwhile, and the model as a whole is not ready.
  zygote.SetBehaviour({/*report_ready=*/false});
  for (const WorkerInfo& worker : pool.Workers()) {
    if (worker.version == 2) zygote.Kill(worker.id);
  }
  REQUIRE(WaitUntil([&] { return !pool.ModelReady("m", 2); }));
  CHECK(routed("") == 1);
  CHECK(routed("2") == 2);
  CHECK(pool.ModelReady("m", 1));
  CHECK_FALSE(pool.ModelReady("m"));
  pool.Stop();
}

TEST_CASE("workers that keep dying before ready make the pool fatal after 3 in a row",
          "[worker_pool]") {
  FakeZygote::Behaviour dying;
  dying.die_at_start = true;
  PoolUnderTest pool(1, 8, 0, dying);
  REQUIRE(WaitUntil([&] { return !pool.pool->fatal_error().ok(); }));
  CHECK_THAT(std::string(pool.pool->fatal_error().message()),
             Contains("died 3 times in a row before becoming ready"));
  CHECK(pool.zygote->spawns() == 3);  // no fourth try
  CHECK_FALSE(pool.pool->ModelReady("m"));
}

TEST_CASE("a full queue answers RESOURCE_EXHAUSTED at once and never calls back", "[worker_pool]") {
  Outcomes outcomes;  // outlives the pool, which calls back into it when it stops
  PoolUnderTest pool(1, 2, 0, {/*report_ready=*/false});  // no worker ever takes a call
  CHECK(pool.pool->Submit(outcomes.Job(*pool.pool)).ok());
  CHECK(pool.pool->Submit(outcomes.Job(*pool.pool)).ok());
  const absl::Status full = pool.pool->Submit(outcomes.Job(*pool.pool));
  CHECK(full.code() == absl::StatusCode::kResourceExhausted);
  CHECK_THAT(std::string(full.message()), Contains("queue full (2 requests waiting"));
  const SharedSpec never_served = std::make_shared<const ModelSpec>(pool.specs.front());
  InferJob stray;
  stray.spec = never_served;
  stray.done = [](InferOutcome) {};
  CHECK(pool.pool->Submit(std::move(stray)).code() == absl::StatusCode::kNotFound);
  // Stopping ends the queued jobs with UNAVAILABLE, not the refused one.
  pool.pool->Stop();
  CHECK(outcomes.finished() == 2);
  CHECK(outcomes.code(0) == absl::StatusCode::kUnavailable);
  CHECK_FALSE(outcomes.code(2).has_value());
  CHECK(pool.pool->Submit(outcomes.Job(*pool.pool)).code() == absl::StatusCode::kUnavailable);
}

TEST_CASE("a job whose deadline passes in the queue ends DEADLINE_EXCEEDED without running",
          "[worker_pool]") {
  Outcomes outcomes;  // outlives the pool, which calls back into it when it stops
  PoolUnderTest pool(1, 8, 0, {/*report_ready=*/false});
  REQUIRE(
      pool.pool->Submit(outcomes.Job(*pool.pool, MonotonicNowNs() + 20'000'000)).ok());  // 20 ms
  REQUIRE(pool.pool->Submit(outcomes.Job(*pool.pool)).ok());  // no deadline: stays queued
  REQUIRE(WaitUntil([&] { return outcomes.finished() == 1; }));
  CHECK(outcomes.code(0) == absl::StatusCode::kDeadlineExceeded);
  CHECK_THAT(outcomes.messages(), Contains("deadline expired while queued; not run"));
  CHECK(outcomes.never_sent(0));  // the metrics' REJECTED or CANCELED, never BACKEND
  CHECK(pool.zygote->held_calls() == 0);
  CHECK_FALSE(outcomes.code(1).has_value());
}

TEST_CASE(
    "calls go to ready workers, one at a time each, and a busy worker's death is "
    "UNAVAILABLE",
    "[worker_pool]") {
  FakeZygote::Behaviour holding;
  holding.answer_calls = false;
  Outcomes outcomes;  // outlives the pool, which calls back into it when it stops
  PoolUnderTest pool(2, 8, 0, holding);
  REQUIRE(WaitUntil([&] { return pool.Ready() == 2; }));
  for (int i = 0; i < 3; ++i) REQUIRE(pool.pool->Submit(outcomes.Job(*pool.pool)).ok());
  // Two workers: two calls out, the third waits in the queue.
  REQUIRE(WaitUntil([&] { return pool.zygote->held_calls() == 2; }));
  int busy = 0;
  for (const WorkerInfo& worker : pool.pool->Workers()) busy += worker.state == WorkerState::kBusy;
  CHECK(busy == 2);

  pool.zygote->Kill(pool.zygote->live().front());
  REQUIRE(WaitUntil([&] { return outcomes.finished() == 1; }));
  CHECK(outcomes.code(0) == absl::StatusCode::kUnavailable);
  CHECK_THAT(outcomes.messages(), Contains("died while serving this request"));
  CHECK_FALSE(outcomes.never_sent(0));  // a worker had it: BACKEND

  // The survivor answers; the queued call then goes to the survivor (which holds it again) or
  // to the replacement (which answers at once), and is answered too.
  pool.zygote->SetBehaviour({});
  pool.zygote->AnswerHeld();
  REQUIRE(WaitUntil([&] { return outcomes.finished() >= 2; }));
  REQUIRE(WaitUntil([&] { return pool.zygote->held_calls() == 1 || outcomes.finished() == 3; }));
  pool.zygote->AnswerHeld();
  REQUIRE(WaitUntil([&] { return outcomes.finished() == 3; }));
  CHECK(outcomes.code(1) == absl::StatusCode::kOk);
  CHECK(outcomes.code(2) == absl::StatusCode::kOk);
  CHECK(pool.pool->Counters("m").requests == 2);
}

TEST_CASE(
    "the compute timeout is the config's, or 20 x the slowest warmed shape, from 5 s to a day",
    "[worker_pool]") {
  ModelConfig config;
  internal::WarmupReport warmup;
  CHECK(ComputeTimeoutMs(config, warmup) == 5000);  // no warmup: the floor
  warmup.add_shapes()->set_steady_ms(40);
  warmup.add_shapes()->set_steady_ms(400);
  CHECK(ComputeTimeoutMs(config, warmup) == 8000);
  // The report is the worker's word: what it cannot mean is bounded (seen while writing the
  // worker_results fuzzer, whose seed-ready holds it: 1e300 overflowed the call deadline).
  internal::WarmupReport wild = warmup;
  wild.add_shapes()->set_steady_ms(1e300);
  CHECK(ComputeTimeoutMs(config, wild) == 24 * 3600 * 1000.0);
  wild.mutable_shapes(2)->set_steady_ms(std::nan(""));
  CHECK(ComputeTimeoutMs(config, wild) == 8000);
  config.mutable_supervision()->set_compute_timeout_ms(250);
  CHECK(ComputeTimeoutMs(config, warmup) == 250);
}

TEST_CASE(
    "a call past the compute timeout kills its worker, ends UNAVAILABLE naming the "
    "timeout, and a replacement serves",
    "[worker_pool]") {
  Outcomes outcomes;
  FakeZygote::Behaviour hung;
  hung.answer_calls = false;  // a hung (or SIGSTOPped) worker
  PoolUnderTest pool(1, 8, 0, hung, /*compute_timeout_ms=*/100);
  REQUIRE(WaitUntil([&] { return pool.Ready() == 1; }));
  pool.zygote->SetBehaviour({});  // the replacement answers
  REQUIRE(pool.pool->Submit(outcomes.Job(*pool.pool)).ok());
  REQUIRE(WaitUntil([&] { return outcomes.finished() == 1; }));
  CHECK(outcomes.code(0) == absl::StatusCode::kUnavailable);
  CHECK_THAT(outcomes.messages(), Contains("after the compute timeout of 100 ms"));
  REQUIRE(WaitUntil([&] { return pool.zygote->spawns() == 2 && pool.Ready() == 1; }));
  REQUIRE(pool.pool->Submit(outcomes.Job(*pool.pool)).ok());
  REQUIRE(WaitUntil([&] { return outcomes.finished() == 2; }));
  CHECK(outcomes.code(1) == absl::StatusCode::kOk);
}

TEST_CASE("scaling up forks new workers that take calls once warm, and follows the quorum",
          "[worker_pool]") {
  PoolUnderTest pool(1, 8, 0);
  REQUIRE(WaitUntil([&] { return pool.Ready() == 1; }));
  REQUIRE(pool.pool->SetWorkers("m", 3).ok());
  REQUIRE(WaitUntil([&] { return pool.Ready() == 3; }));
  CHECK(pool.zygote->spawns() == 3);
  ModelReadiness readiness = pool.pool->Readiness("m");
  CHECK(readiness.workers == 3);
  CHECK(readiness.quorum == 3);  // quorum 0: all the workers there are
  std::set<int> slots;
  for (const WorkerInfo& worker : pool.pool->Workers()) slots.insert(worker.slot);
  CHECK(slots == std::set<int>{0, 1, 2});
}

TEST_CASE(
    "scaling down retires the highest slots, an idle worker at once and a busy one after "
    "its call, and none is replaced",
    "[worker_pool]") {
  Outcomes outcomes;
  FakeZygote::Behaviour holding;
  holding.answer_calls = false;
  PoolUnderTest pool(3, 8, 0, holding);
  REQUIRE(WaitUntil([&] { return pool.Ready() == 3; }));
  REQUIRE(
      pool.pool->Submit(outcomes.Job(*pool.pool)).ok());  // to the idlest worker: slot 0, 1 or 2
  REQUIRE(pool.pool->Submit(outcomes.Job(*pool.pool)).ok());
  REQUIRE(WaitUntil([&] { return pool.zygote->held_calls() == 2; }));
  int busy_above_0 = 0;
  for (const WorkerInfo& worker : pool.pool->Workers()) {
    busy_above_0 += worker.state == WorkerState::kBusy && worker.slot > 0;
  }
  REQUIRE(pool.pool->SetWorkers("m", 1).ok());
  // The idle ones above slot 0 leave at once; the busy ones keep their call.
  REQUIRE(
      WaitUntil([&] { return static_cast<int>(pool.pool->Workers().size()) == 1 + busy_above_0; }));
  CHECK(outcomes.finished() == 0);
  pool.zygote->AnswerHeld();
  REQUIRE(WaitUntil([&] { return outcomes.finished() == 2; }));
  CHECK(outcomes.code(0) == absl::StatusCode::kOk);
  CHECK(outcomes.code(1) == absl::StatusCode::kOk);
  REQUIRE(WaitUntil([&] { return pool.pool->Workers().size() == 1; }));
  CHECK(pool.pool->Workers().front().slot == 0);
  CHECK(pool.zygote->spawns() == 3);  // nothing replaced
  CHECK(pool.pool->Readiness("m").workers == 1);
  CHECK(pool.pool->ModelReady("m"));
}

TEST_CASE(
    "a worker count that is out of range, for an unknown model, or does not fit in memory "
    "is refused and changes nothing",
    "[worker_pool]") {
  SECTION("bad requests") {
    PoolUnderTest pool(1, 8, 0);
    CHECK(pool.pool->SetWorkers("m", 0).code() == absl::StatusCode::kInvalidArgument);
    CHECK(pool.pool->SetWorkers("m", kMaxWorkersPerModel + 1).code() ==
          absl::StatusCode::kInvalidArgument);
    CHECK(pool.pool->SetWorkers("nope", 2).code() == absl::StatusCode::kNotFound);
    CHECK(pool.pool->Readiness("m").workers == 1);
  }
  constexpr int64_t kMB = 1000 * 1000;
  SECTION("memory: nothing measured yet, so a worker costs its budget: room for one, not two") {
    PoolUnderTest pool(1, 8, 0, {}, 0, /*memory_limit_bytes=*/1000 * kMB,
                       /*budget_bytes=*/100 * kMB, /*usage_bytes=*/850 * kMB);
    REQUIRE(WaitUntil([&] { return pool.Ready() == 1; }));
    const absl::Status refused = pool.pool->SetWorkers("m", 3);
    CHECK(refused.code() == absl::StatusCode::kResourceExhausted);
    CHECK_THAT(std::string(refused.message()),
               Contains("no memory for 2 more worker(s) of 'm:1': 850.0 MB in use (the test's)") &&
                   Contains("2 x 100.0 MB (its memory budget") &&
                   Contains("= 1050.0 MB, over the 1000.0 MB limit"));
    CHECK(pool.pool->Readiness("m").workers == 1);
    CHECK(pool.zygote->spawns() == 1);
    CHECK(pool.pool->SetWorkers("m", 2).ok());
    REQUIRE(WaitUntil([&] { return pool.Ready() == 2; }));
  }
  SECTION(
      "memory: a warm worker's measured private peak, not its budget, is what a new one costs") {
    FakeZygote::Behaviour measured;
    measured.private_peak_bytes = 200 * kMB;
    PoolUnderTest pool(1, 8, 0, measured, 0, /*memory_limit_bytes=*/1000 * kMB,
                       /*budget_bytes=*/400 * kMB, /*usage_bytes=*/550 * kMB);
    REQUIRE(WaitUntil([&] { return pool.Ready() == 1; }));
    const absl::Status refused = pool.pool->SetWorkers("m", 4);
    CHECK(refused.code() == absl::StatusCode::kResourceExhausted);
    CHECK_THAT(std::string(refused.message()), Contains("3 x 200.0 MB (the private peak"));
    // 550 + 2 x 200 <= 1000, where 2 x the budget (400) would not fit.
    REQUIRE(pool.pool->SetWorkers("m", 3).ok());
    REQUIRE(WaitUntil([&] { return pool.Ready() == 3; }));
  }
}

TEST_CASE("a worker that breaks the protocol is dropped and replaced", "[worker_pool]") {
  PoolUnderTest pool(1, 8, 0);
  REQUIRE(WaitUntil([&] { return pool.Ready() == 1; }));
  const int first = pool.zygote->live().front();
  pool.zygote->SendStrayResult(first);  // a result while ready, for a call never sent
  REQUIRE(WaitUntil([&] { return pool.zygote->spawns() == 2 && pool.Ready() == 1; }));
  CHECK(pool.pool->Workers().front().id != first);
  CHECK(pool.pool->fatal_error().ok());
}

}  // namespace
}  // namespace kiln
