#include "server/supervisor/job_queue.h"

#include <algorithm>
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
  // Why a job ends in the queue whatever its level's policy: its client gave up, or its deadline
  // passed; OK when neither.
  const auto ended = [now_ns](const Queued& queued) {
    if (queued.job.deadline_monotonic_ns != 0 && now_ns >= queued.job.deadline_monotonic_ns) {
      return absl::DeadlineExceededError("deadline expired while queued; not run");
    }
    if (queued.job.cancelled && queued.job.cancelled()) {
      return absl::CancelledError("the client cancelled the request while it was queued; not run");
    }
    return absl::OkStatus();
  };
  const auto timed_out = [now_ns](const Queued& queued) {
    return queued.timeout_ns != 0 && now_ns >= queued.timeout_ns;
  };
  for (size_t l = 0; l < levels_.size(); ++l) {
    Level& level = levels_[l];
    std::deque<Queued> kept;
    std::deque<Queued> delayed_now;
    for (Queued& queued : level.waiting) {
      if (absl::Status why = ended(queued); !why.ok()) {
        taken.emplace_back(std::move(queued.job), std::move(why));
      } else if (timed_out(queued) && !level.policy.delay_on_timeout()) {
        taken.emplace_back(std::move(queued.job),
                           absl::UnavailableError(absl::StrCat(
                               "queue timeout of ", level.policy.default_timeout_us(),
                               " us (or the request's own) expired before a worker was free; not "
                               "run (dynamic_batching's queue policy: timeout_action REJECT)")));
      } else if (timed_out(queued)) {
        queued.timeout_ns = 0;
        delayed_now.push_back(std::move(queued));
      } else {
        kept.push_back(std::move(queued));
      }
    }
    level.waiting = std::move(kept);
    std::deque<Queued> delayed;
    for (Queued& queued : level.delayed) {
      if (absl::Status why = ended(queued); !why.ok()) {
        taken.emplace_back(std::move(queued.job), std::move(why));
      } else {
        delayed.push_back(std::move(queued));
      }
    }
    for (Queued& queued : delayed_now) delayed.push_back(std::move(queued));
    level.delayed = std::move(delayed);
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
