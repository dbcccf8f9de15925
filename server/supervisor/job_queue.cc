#include "server/supervisor/job_queue.h"

#include <algorithm>
#include <iterator>
#include <utility>

#include "absl/strings/str_cat.h"

namespace kiln {

absl::Status JobQueue::Push(InferJob job) {
  if (size() >= capacity_) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "queue full (", capacity_,
        " requests waiting; config.pbtxt's dynamic_batching.default_queue_policy.max_queue_size)"));
  }
  jobs_.push_back(std::move(job));
  return absl::OkStatus();
}

InferJob JobQueue::Pop() {
  InferJob job = std::move(jobs_.front());
  jobs_.pop_front();
  return job;
}

std::vector<InferJob> JobQueue::TakeExpired(int64_t now_ns) {
  auto expired = std::stable_partition(jobs_.begin(), jobs_.end(), [now_ns](const InferJob& job) {
    return job.deadline_monotonic_ns == 0 || now_ns < job.deadline_monotonic_ns;
  });
  std::vector<InferJob> taken(std::make_move_iterator(expired),
                              std::make_move_iterator(jobs_.end()));
  jobs_.erase(expired, jobs_.end());
  return taken;
}

std::vector<InferJob> JobQueue::TakeAll() {
  std::vector<InferJob> taken(std::make_move_iterator(jobs_.begin()),
                              std::make_move_iterator(jobs_.end()));
  jobs_.clear();
  return taken;
}

int64_t JobQueue::NearestDeadlineNs() const {
  int64_t nearest = 0;
  for (const InferJob& job : jobs_) {
    if (job.deadline_monotonic_ns != 0 && (nearest == 0 || job.deadline_monotonic_ns < nearest)) {
      nearest = job.deadline_monotonic_ns;
    }
  }
  return nearest;
}

}  // namespace kiln
