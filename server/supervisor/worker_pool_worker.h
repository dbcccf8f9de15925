// The pool's record of one worker (WorkerPool::Worker), which the pool's source files share:
// worker_pool.cc (starting, the loop, a worker's frames and exit, scaling),
// worker_pool_generations.cc (zygotes, a reload's staging, reaping, retiring) and
// worker_pool_calls.cc (dispatch, hung and expired calls, completions). Not part of the pool's
// interface: nothing outside those files includes it.
// Ownership: the pool owns every Worker (WorkerPool::workers_). Thread-safety: guarded by the
// pool's mu_, as the pool's other state.
#ifndef KILN_SERVER_SUPERVISOR_WORKER_POOL_WORKER_H_
#define KILN_SERVER_SUPERVISOR_WORKER_POOL_WORKER_H_

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>

#include "common/frame_channel.h"
#include "common/shared_arena.h"
#include "proto/worker_frames.pb.h"
#include "server/supervisor/batch_plan.h"
#include "server/supervisor/infer_job.h"
#include "server/supervisor/worker_pool.h"
#include "server/supervisor/worker_state.h"

namespace kiln {

struct WorkerPool::Worker {
  int id = 0;
  int slot = 0;
  ServedVersion* model = nullptr;
  pid_t pid = 0;
  WorkerState state = WorkerState::kSpawning;
  FrameChannel channel{-1};
  std::unique_ptr<SharedArena> arena;
  // The jobs its call serves (state kBusy): one, or a batch (server/supervisor/batch_plan.h),
  // their rows in this order.
  std::vector<InferJob> jobs;
  uint64_t call_id = 0;  // the last call sent to it; the smallest among idle workers is the LRU
  double compute_timeout_ms = 0;  // ComputeTimeoutMs, from its warmup report once Ready
  int64_t call_deadline_ns = 0;   // CLOCK_MONOTONIC; past it the call is hung (state kBusy)
  bool retiring = false;          // scaled away: leaves after its call, and is not replaced
  bool upper_half = false;        // the half of its arena its next call uses (they alternate)
  internal::WarmupReport warmup;
  WarmedCosts costs;  // what its warmed passes cost, from `warmup`, for the batch plan
  // Its start (WorkerPoolOptions::on_worker_ready): why, when the zygote was asked, when it forked.
  WorkerStart cause = WorkerStart::kStart;
  std::chrono::steady_clock::time_point spawned_at;
  std::chrono::steady_clock::time_point forked_at;
};

}  // namespace kiln

#endif  // KILN_SERVER_SUPERVISOR_WORKER_POOL_WORKER_H_
