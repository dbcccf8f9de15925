#include "server/supervisor/job_queue.h"

#include <algorithm>
#include <cstddef>
#include <deque>
#include <iterator>
#include <utility>

#include "absl/strings/str_cat.h"

namespace kiln {
namespace {

DynamicBatchingConfig OneLevel(int capacity) {
  DynamicBatchingConfig batching;
  batching.add_levels()->set_max_queue_size(capacity);
  return batching;
}

// Why `job` ends in the queue whatever its level's policy: its deadline passed, or its client
// gave up; OK when neither.
absl::Status EndedInQueue(const InferJob& job, int64_t now_ns) {
  if (job.deadline_monotonic_ns != 0 && now_ns >= job.deadline_monotonic_ns) {
    return absl::DeadlineExceededError("deadline expired while queued; not run");
  }
  if (job.cancelled && job.cancelled()) {
    return absl::CancelledError("the client cancelled the request while it was queued; not run");
  }
  return absl::OkStatus();
}

}  // namespace

JobQueue::JobQueue(int capacity) : JobQueue(OneLevel(capacity)) {}

JobQueue::JobQueue(const DynamicBatchingConfig& batching) {
  for (const DynamicBatchingConfig::QueuePolicy& policy : batching.levels()) {
    levels_.push_back(Level{policy, {}, {}});
  }
  if (levels_.empty())
    levels_.push_back(Level{OneLevel(batching.max_queue_size()).levels(0), {}, {}});
  default_level_ =
      std::clamp(batching.default_priority_level(), 1, static_cast<int>(levels_.size())) - 1;
}

absl::Status JobQueue::Push(InferJob job, int64_t now_ns) {
  const int index = job.priority >= 1 && job.priority <= levels_.size()
                        ? static_cast<int>(job.priority) - 1
                        : default_level_;
  Level& level = levels_[index];
  if (level.size() >= level.policy.max_queue_size()) {
    return absl::ResourceExhaustedError(
        absl::StrCat("queue full (", level.policy.max_queue_size(), " requests waiting",
                     levels_.size() > 1 ? absl::StrCat(" at priority level ", index + 1) : "",
                     "; config.pbtxt's dynamic_batching.",
                     levels_.size() > 1 ? "priority_queue_policy or default_queue_policy"
                                        : "default_queue_policy",
                     ".max_queue_size)"));
  }
  int64_t timeout_us = level.policy.default_timeout_us();
  if (job.timeout_us > 0 && level.policy.allow_timeout_override()) {
    timeout_us = timeout_us == 0 ? job.timeout_us : std::min(timeout_us, job.timeout_us);
  }
  const int64_t timeout_ns = timeout_us > 0 ? now_ns + timeout_us * 1000 : 0;
  level.waiting.push_back(Queued{std::move(job), timeout_ns});
  ++size_;
  return absl::OkStatus();
}

template <typename Visit>
void JobQueue::ForEach(Visit visit) const {
  for (const Level& level : levels_) {
    for (const auto* queue : {&level.waiting, &level.delayed}) {
      for (const Queued& queued : *queue) {
        if (!visit(queued)) return;
      }
    }
  }
}

std::vector<InferJob> JobQueue::PopFront(int count) {
  std::vector<InferJob> taken;
  for (Level& level : levels_) {
    for (auto* queue : {&level.waiting, &level.delayed}) {
      while (static_cast<int>(taken.size()) < count && !queue->empty()) {
        taken.push_back(std::move(queue->front().job));
        queue->pop_front();
        --size_;
      }
    }
  }
  return taken;
}

std::vector<const InferJob*> JobQueue::Front(int count) const {
  std::vector<const InferJob*> front;
  ForEach([&](const Queued& queued) {
    if (static_cast<int>(front.size()) >= count) return false;
    front.push_back(&queued.job);
    return true;
  });
  return front;
}

std::vector<std::pair<InferJob, absl::Status>> JobQueue::TakeTimedOut(int64_t now_ns) {
  std::vector<std::pair<InferJob, absl::Status>> taken;
  for (Level& level : levels_) {
    std::deque<Queued> delayed_now;  // timed out at a DELAY level: they go behind the others
    // A delayed job has no queue timeout any more (timeout_ns 0), so one pass serves both.
    for (std::deque<Queued>* queue : {&level.waiting, &level.delayed}) {
      // In place: a job that stays is moved only when one before it left, so a turn of the pool
      // with nothing to take moves nothing.
      size_t kept = 0;
      for (size_t i = 0; i < queue->size(); ++i) {
        Queued& queued = (*queue)[i];
        absl::Status why = EndedInQueue(queued.job, now_ns);
        const bool timed_out = queued.timeout_ns != 0 && now_ns >= queued.timeout_ns;
        if (why.ok() && timed_out && !level.policy.delay_on_timeout()) {
          why = absl::UnavailableError(
              absl::StrCat("queue timeout of ", level.policy.default_timeout_us(),
                           " us (or the request's own) expired before a worker was free; not run "
                           "(dynamic_batching's queue policy: timeout_action REJECT)"));
        }
        if (!why.ok()) {
          taken.emplace_back(std::move(queued.job), std::move(why));
        } else if (timed_out) {
          queued.timeout_ns = 0;
          delayed_now.push_back(std::move(queued));
        } else {
          if (kept != i) (*queue)[kept] = std::move(queued);
          ++kept;
        }
      }
      queue->erase(queue->begin() + static_cast<std::ptrdiff_t>(kept), queue->end());
    }
    for (Queued& queued : delayed_now) level.delayed.push_back(std::move(queued));
  }
  size_ -= static_cast<int>(taken.size());
  return taken;
}

std::vector<InferJob> JobQueue::TakeAll() { return PopFront(size_); }

int64_t JobQueue::NearestDeadlineNs() const {
  int64_t nearest = 0;
  const auto consider = [&nearest](int64_t at) {
    if (at != 0 && (nearest == 0 || at < nearest)) nearest = at;
  };
  ForEach([&](const Queued& queued) {
    consider(queued.job.deadline_monotonic_ns);
    consider(queued.timeout_ns);
    return true;
  });
  return nearest;
}

}  // namespace kiln
