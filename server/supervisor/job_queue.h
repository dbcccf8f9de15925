// One model's queue of jobs waiting for a worker (docs/ARCHITECTURE.md, "A request's path"):
// bounded by dynamic_batching.max_queue_size (a full queue refuses at once), first in first out,
// and a job whose deadline passes while it waits is taken out before it is ever sent.
#ifndef KILN_SERVER_SUPERVISOR_JOB_QUEUE_H_
#define KILN_SERVER_SUPERVISOR_JOB_QUEUE_H_

#include <cstdint>
#include <deque>
#include <vector>

#include "absl/status/status.h"
#include "server/supervisor/infer_job.h"

namespace kiln {

// Ownership: owns the jobs it holds; a job leaves it only through Pop, TakeExpired or TakeAll,
// and it never calls a job's `done`. Thread-safety: none; the worker pool guards it with its
// mutex.
class JobQueue {
 public:
  explicit JobQueue(int capacity) : capacity_(capacity) {}

  // Queues `job` at the back; ResourceExhausted, naming the limit, when `capacity` jobs wait
  // already (`job` is then dropped without its `done` being called).
  absl::Status Push(InferJob job);

  bool empty() const { return jobs_.empty(); }
  int size() const { return static_cast<int>(jobs_.size()); }

  // The front job. Must not be called when empty.
  InferJob Pop();

  // The jobs whose deadline is at or before `now_ns` (CLOCK_MONOTONIC), in queue order; the
  // others keep theirs.
  std::vector<InferJob> TakeExpired(int64_t now_ns);

  // Every job, in queue order; the queue is empty after.
  std::vector<InferJob> TakeAll();

  // The earliest deadline among the jobs, or 0 when none has one.
  int64_t NearestDeadlineNs() const;

 private:
  const int capacity_;
  std::deque<InferJob> jobs_;
};

}  // namespace kiln

#endif  // KILN_SERVER_SUPERVISOR_JOB_QUEUE_H_
