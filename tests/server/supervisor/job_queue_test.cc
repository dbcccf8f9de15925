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
  CHECK(Name(queue.Pop()) == "a");
  REQUIRE(queue.Push(Job("d")).ok());  // room again
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
  CHECK(Names(queue.TakeExpired(200)) == std::vector<std::string>{"early", "at now"});
  CHECK(queue.NearestDeadlineNs() == 300);
  CHECK(queue.TakeExpired(299).empty());
  CHECK(Names(queue.TakeAll()) == std::vector<std::string>{"no deadline", "late", "none"});
  CHECK(queue.NearestDeadlineNs() == 0);
}

}  // namespace
}  // namespace kiln
