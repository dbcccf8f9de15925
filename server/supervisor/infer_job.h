// A request as the worker pool takes it (InferJob), and what becomes of it (InferOutcome).
#ifndef KILN_SERVER_SUPERVISOR_INFER_JOB_H_
#define KILN_SERVER_SUPERVISOR_INFER_JOB_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/model_config_loader.h"
#include "common/shape.h"
#include "common/tensor.h"

namespace kiln {

// What became of a job: the outputs (named after the config's outputs) or why there are none,
// the shape its forward passes ran as (nullopt when none ran), and how long they took in the
// worker: wall time, and the worker's CPU time (which a busy node does not stretch).
struct InferOutcome {
  // Views into the arena of the worker that ran it: valid only while `done` runs (the worker's
  // next call uses the other half of its arena). Whoever needs the bytes later copies them.
  absl::StatusOr<std::vector<TensorView>> outputs;
  std::optional<Shape> ran_as;
  double compute_ms = 0;
  double compute_cpu_ms = 0;
  bool cold_shape = false;  // the shape was not warmed by the worker that ran it
  int worker_pid = 0;       // the worker that ran it (0 when none did)
  // For the metrics (server/metrics/metrics.h), in milliseconds: queued until sent to a worker,
  // copying the inputs into its arena, its tokenizing (-1: none), copying the outputs out.
  double queue_ms = 0;
  double input_ms = 0;
  double tokenize_ms = -1;
  double output_ms = 0;
  int executions = 0;          // forward passes run (0 when none ran)
  int padded_rows = 0;         // rows of zeros added to reach a warmed batch size
  bool padded_length = false;  // text padded up to a longer warmed sequence length
  // The call that ran it: its jobs (more than 1: a dynamic batch) and rows before padding.
  // executions and padded_rows are the call's, and so are counted once per call: with its
  // first job (first_in_call).
  int call_jobs = 1;
  int64_t call_rows = 0;
  bool first_in_call = true;
  // It ended in the queue, never sent to a worker: its deadline or queue timeout passed, its
  // client cancelled it, the pool stopped, or its version's workers were gone.
  bool never_sent = false;
};

// Called exactly once per job, on the pool's thread and without the pool's lock held. It must
// not block.
using InferDone = std::function<void(InferOutcome)>;

struct InferJob {
  SharedSpec spec;  // the served version it was routed to (WorkerPool::Route) and decoded for
  // Config input order (optional inputs left out); the memory must outlive `done`'s call.
  std::vector<TensorView> inputs;
  // A text model's request as text instead (one string per row; `inputs` empty). The strings
  // must outlive `done`'s call.
  const std::vector<std::string>* text = nullptr;
  // A text job's longest row in tokens, counted by the master (server/front/text_tokens.h) when
  // its model batches: texts that pad to the same warmed length may then share a call. -1: not
  // counted (the job goes alone).
  int32_t text_tokens = -1;
  // Never shares a call with other jobs, even under dynamic batching (Batchable false): the
  // readiness check's requests, each of which must take its own shape through a worker of its own.
  bool alone = false;
  int64_t deadline_monotonic_ns = 0;  // CLOCK_MONOTONIC; 0 = none
  // Triton's schedule policy extension (the request's "priority" and "timeout" parameters):
  // its priority level (1 is the highest; 0 or above the model's levels: the default level) and
  // its queue timeout in microseconds (0: the level's default; it may only shorten that, and
  // only where the level's policy allows the override).
  uint64_t priority = 0;
  int64_t timeout_us = 0;
  // Whether the client gave up on it (its RPC was cancelled): asked on the pool's thread while it
  // waits in the queue, so a cancelled job never reaches a worker. Null: never.
  std::function<bool()> cancelled;
  InferDone done;
  // Set by the pool (CLOCK_MONOTONIC): when Submit queued it, and how long writing its inputs to
  // the worker's arena took.
  int64_t queued_ns = 0;
  int64_t sent_ns = 0;
  double input_ms = 0;
};

}  // namespace kiln

#endif  // KILN_SERVER_SUPERVISOR_INFER_JOB_H_
