// JobQueue: bounded, first in first out, expired jobs taken out in order.
#include "server/supervisor/job_queue.h"

#include <catch2/catch.hpp>
#include <string>
#include <utility>
#include <vector>

namespace kiln {
namespace {

using Catch::Matchers::Contains;

// A job for a model named `name` (which names the job in these tests).
InferJob Job(const std::string& name, int64_t deadline_ns = 0) {
  InferJob job;
  auto spec = std::make_shared<ModelSpec>();
  spec->config.set_name(name);
  job.spec = std::move(spec);
  job.deadline_monotonic_ns = deadline_ns;
  return job;
}

std::string Name(const InferJob& job) { return job.spec->config.name(); }

std::vector<std::string> Names(const std::vector<InferJob>& jobs) {
  std::vector<std::string> names;
  for (const InferJob& job : jobs) names.push_back(Name(job));
  return names;
}

// The names of timed-out jobs, each with its status code.
std::vector<std::pair<std::string, absl::StatusCode>> Names(
    const std::vector<std::pair<InferJob, absl::Status>>& jobs) {
  std::vector<std::pair<std::string, absl::StatusCode>> names;
  for (const auto& [job, why] : jobs) names.emplace_back(Name(job), why.code());
  return names;
}

// A job at priority `priority` with a queue timeout of `timeout_us`.
InferJob Prioritised(const std::string& name, uint64_t priority, int64_t timeout_us = 0) {
  InferJob job = Job(name);
  job.priority = priority;
  job.timeout_us = timeout_us;
  return job;
}

// Levels 1..policies.size(), default `default_level`.
DynamicBatchingConfig Levels(const std::vector<DynamicBatchingConfig::QueuePolicy>& policies,
                             int default_level) {
  DynamicBatchingConfig batching;
  for (const auto& policy : policies) *batching.add_levels() = policy;
  batching.set_default_priority_level(default_level);
  return batching;
}

DynamicBatchingConfig::QueuePolicy Policy(int max_queue_size, int64_t timeout_us = 0,
                                          bool delay = false, bool allow_override = false) {
  DynamicBatchingConfig::QueuePolicy policy;
  policy.set_max_queue_size(max_queue_size);
  policy.set_default_timeout_us(timeout_us);
  policy.set_delay_on_timeout(delay);
  policy.set_allow_timeout_override(allow_override);
  return policy;
}

TEST_CASE("a job queue is first in first out and refuses past its capacity", "[job_queue]") {
  JobQueue queue(2);
  CHECK(queue.empty());
  REQUIRE(queue.Push(Job("a")).ok());
  REQUIRE(queue.Push(Job("b")).ok());
  const absl::Status full = queue.Push(Job("c"));
  CHECK(full.code() == absl::StatusCode::kResourceExhausted);
  CHECK_THAT(std::string(full.message()),
             Contains("queue full (2 requests waiting; config.pbtxt's "
                      "dynamic_batching.default_queue_policy.max_queue_size)"));
  CHECK(queue.size() == 2);
  CHECK(Names(queue.PopFront(1)) == std::vector<std::string>{"a"});
  REQUIRE(queue.Push(Job("d")).ok());  // room again
  REQUIRE(queue.Push(Job("e")).code() == absl::StatusCode::kResourceExhausted);
  CHECK(Name(*queue.Front(1).front()) == "b");
  CHECK(Names(queue.PopFront(1)) == std::vector<std::string>{"b"});
  REQUIRE(queue.Push(Job("e")).ok());
  CHECK(Names(queue.PopFront(2)) == std::vector<std::string>{"d", "e"});  // a batch, in order
  REQUIRE(queue.Push(Job("b")).ok());
  REQUIRE(queue.Push(Job("d")).ok());
  CHECK(Names(queue.TakeAll()) == std::vector<std::string>{"b", "d"});
  CHECK(queue.empty());
  CHECK(JobQueue(0).Push(Job("x")).code() == absl::StatusCode::kResourceExhausted);
}

TEST_CASE("a job queue takes out the expired jobs in order and keeps the rest in order",
          "[job_queue]") {
  JobQueue queue(8);
  for (const auto& [name, deadline] : std::vector<std::pair<std::string, int64_t>>{
           {"no deadline", 0}, {"early", 100}, {"late", 300}, {"at now", 200}, {"none", 0}}) {
    REQUIRE(queue.Push(Job(name, deadline)).ok());
  }
  CHECK(queue.NearestDeadlineNs() == 100);
  using Code = absl::StatusCode;
  CHECK(Names(queue.TakeTimedOut(200)) ==
        std::vector<std::pair<std::string, Code>>{{"early", Code::kDeadlineExceeded},
                                                  {"at now", Code::kDeadlineExceeded}});
  CHECK(queue.NearestDeadlineNs() == 300);
  CHECK(queue.TakeTimedOut(299).empty());
  CHECK(Names(queue.TakeAll()) == std::vector<std::string>{"no deadline", "late", "none"});
  CHECK(queue.NearestDeadlineNs() == 0);
}

TEST_CASE("a job its client cancelled is taken out of the queue, never to run", "[job_queue]") {
  JobQueue queue(8);
  bool gave_up = false;
  InferJob cancellable = Job("cancellable");
  cancellable.cancelled = [&gave_up] { return gave_up; };
  REQUIRE(queue.Push(Job("before")).ok());
  REQUIRE(queue.Push(std::move(cancellable)).ok());
  REQUIRE(queue.Push(Job("after")).ok());
  CHECK(queue.TakeTimedOut(1).empty());  // still wanted
  gave_up = true;
  const std::vector<std::pair<InferJob, absl::Status>> taken = queue.TakeTimedOut(1);
  CHECK(Names(taken) == std::vector<std::pair<std::string, absl::StatusCode>>{
                            {"cancellable", absl::StatusCode::kCancelled}});
  CHECK_THAT(std::string(taken.front().second.message()),
             Contains("the client cancelled the request while it was queued; not run"));
  CHECK(Names(queue.TakeAll()) == std::vector<std::string>{"before", "after"});
}

TEST_CASE("priority levels: level 1 goes first, each level FIFO and bounded by its own size",
          "[job_queue]") {
  JobQueue queue(Levels({Policy(2), Policy(1), Policy(4)}, /*default_level=*/3));
  REQUIRE(queue.Push(Prioritised("default a", 0)).ok());
  REQUIRE(queue.Push(Prioritised("two", 2)).ok());
  REQUIRE(queue.Push(Prioritised("one a", 1)).ok());
  REQUIRE(queue.Push(Prioritised("beyond the levels: default", 9)).ok());
  REQUIRE(queue.Push(Prioritised("one b", 1)).ok());
  const absl::Status full = queue.Push(Prioritised("one c", 1));
  CHECK(full.code() == absl::StatusCode::kResourceExhausted);
  CHECK_THAT(std::string(full.message()), Contains("queue full (2 requests waiting at priority "
                                                   "level 1"));
  CHECK(queue.Push(Prioritised("two b", 2)).code() == absl::StatusCode::kResourceExhausted);
  CHECK(queue.size() == 5);
  std::vector<std::string> front;
  for (const InferJob* job : queue.Front(3)) front.push_back(Name(*job));
  CHECK(front == std::vector<std::string>{"one a", "one b", "two"});
  CHECK(Names(queue.TakeAll()) == std::vector<std::string>{"one a", "one b", "two", "default a",
                                                           "beyond the levels: default"});
}

TEST_CASE("a queue timeout rejects at a REJECT level and moves a job back at a DELAY level",
          "[job_queue]") {
  using Code = absl::StatusCode;
  // Level 1 rejects after 10 us (a request may ask for less); level 2 delays after 10 us.
  JobQueue queue(Levels({Policy(8, 10, false, true), Policy(8, 10, true)}, 1));
  const int64_t us = 1000;
  REQUIRE(queue.Push(Prioritised("reject", 1), 0).ok());
  REQUIRE(queue.Push(Prioritised("shorter", 1, 5), 0).ok());   // its own 5 us
  REQUIRE(queue.Push(Prioritised("longer?", 1, 50), 0).ok());  // only shortens: 10 us
  REQUIRE(queue.Push(Prioritised("delay", 2), 0).ok());
  REQUIRE(queue.Push(Prioritised("ignored", 2, 1), 0).ok());  // no override at level 2
  REQUIRE(queue.Push(Prioritised("fresh", 2), 8 * us).ok());
  CHECK(queue.NearestDeadlineNs() == 5 * us);
  CHECK(Names(queue.TakeTimedOut(6 * us)) ==
        std::vector<std::pair<std::string, Code>>{{"shorter", Code::kUnavailable}});
  const std::vector<std::pair<InferJob, absl::Status>> rejected = queue.TakeTimedOut(10 * us);
  CHECK(Names(rejected) == std::vector<std::pair<std::string, Code>>{
                               {"reject", Code::kUnavailable}, {"longer?", Code::kUnavailable}});
  CHECK_THAT(std::string(rejected.front().second.message()), Contains("timeout_action REJECT"));
  // The delayed jobs go behind "fresh", which has not timed out; nothing was taken out.
  CHECK(queue.size() == 3);
  CHECK(Names(queue.TakeAll()) == std::vector<std::string>{"fresh", "delay", "ignored"});
}

}  // namespace
}  // namespace kiln
