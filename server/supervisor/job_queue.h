// One model version's queue of jobs waiting for a worker (docs/ARCHITECTURE.md, "A request's
// path"; docs/batching.md): a queue per priority level (Triton's priority_levels, 1 the highest,
// one level without them), each first in first out and bounded by its max_queue_size (a full one
// refuses at once). Each level's queue policy times a job out of the queue: REJECT ends it,
// DELAY moves it behind the level's jobs that have not timed out. A job whose deadline passes, or
// whose client cancels it, while it waits is taken out before it is ever sent.
//
// Dispatch order: level 1's jobs, then its delayed ones, then level 2's, and so on.
#ifndef KILN_SERVER_SUPERVISOR_JOB_QUEUE_H_
#define KILN_SERVER_SUPERVISOR_JOB_QUEUE_H_

#include <cstdint>
#include <deque>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "proto/model_config.pb.h"
#include "server/supervisor/infer_job.h"

namespace kiln {

// Ownership: owns the jobs it holds; a job leaves it only through PopFront, TakeTimedOut or
// TakeAll, and it never calls a job's `done`. Thread-safety: none; the worker pool guards it with
// its mutex.
class JobQueue {
 public:
  // The levels and policies of `batching` (resolved by the loader; none: one level, FIFO,
  // bounded by batching.max_queue_size, no timeout).
  explicit JobQueue(const DynamicBatchingConfig& batching);
  // One level of `capacity` jobs, no timeout.
  explicit JobQueue(int capacity);

  // Queues `job` at the back of its level (job.priority, resolved), with its queue timeout from
  // `now_ns` (job.timeout_us and the level's policy); ResourceExhausted, naming the limit, when
  // that level holds its max_queue_size jobs already (`job` is then dropped without its `done`
  // being called).
  absl::Status Push(InferJob job, int64_t now_ns = 0);

  bool empty() const { return size_ == 0; }
  int size() const { return size_; }

  // The next `count` jobs (1 <= count <= size()), in dispatch order.
  std::vector<InferJob> PopFront(int count);
  // Up to `count` jobs from the front, in dispatch order, without taking them (for planning a
  // batch: server/supervisor/batch_plan.h); valid until the queue changes.
  std::vector<const InferJob*> Front(int count) const;

  // At `now_ns` (CLOCK_MONOTONIC): the jobs whose client cancelled them (Cancelled), whose
  // deadline passed (DeadlineExceeded) or whose queue timeout passed at a REJECT level
  // (Unavailable, naming the policy), each with why, in dispatch order; a DELAY level's timed-out
  // jobs move behind its others instead.
  std::vector<std::pair<InferJob, absl::Status>> TakeTimedOut(int64_t now_ns);

  // Every job, in dispatch order; the queue is empty after.
  std::vector<InferJob> TakeAll();

  // The earliest deadline or queue timeout among the jobs still to time out, or 0 when none.
  int64_t NearestDeadlineNs() const;

 private:
  struct Queued {
    InferJob job;
    int64_t timeout_ns = 0;  // CLOCK_MONOTONIC; 0 = none (or already delayed)
  };
  struct Level {
    DynamicBatchingConfig::QueuePolicy policy;
    std::deque<Queued> waiting;  // not timed out, in arrival order
    std::deque<Queued> delayed;  // timed out at a DELAY level, in the order they timed out
    int size() const { return static_cast<int>(waiting.size() + delayed.size()); }
  };
  // Calls `visit` on each queued job in dispatch order until it returns false.
  template <typename Visit>
  void ForEach(Visit visit) const;

  std::vector<Level> levels_;
  int default_level_ = 0;  // index into levels_
  int size_ = 0;
};

}  // namespace kiln

#endif  // KILN_SERVER_SUPERVISOR_JOB_QUEUE_H_
