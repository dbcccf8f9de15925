// Dynamic batching (Triton's dynamic_batching; docs/batching.md): which of a version's queued
// jobs one call to a worker takes. A batch is a run of jobs from the front of the queue, in
// order, that share every input's name, dtype and dims after the batch dimension (text jobs: that
// pad to the same warmed sequence length on the worker that takes the call), of at most
// max_batch_size rows in all, and whose row count the worker serves warm: it pads the rows up to
// a warmed batch size (warmup.pad_to_warmed), or, without padding, runs only warmed sizes. Among
// the runs that qualify, the one whose warmed pass, plus a call's fixed overhead, costs least per
// row is taken (ties: the longer): two requests of one row go to two warmed batch-1 passes when
// padding them to a warmed batch 4 costs more than both.
//
// Pure functions of their arguments; no state, no threads.
#ifndef KILN_SERVER_SUPERVISOR_BATCH_PLAN_H_
#define KILN_SERVER_SUPERVISOR_BATCH_PLAN_H_

#include <cstdint>
#include <map>
#include <optional>
#include <vector>

#include "common/shape.h"
#include "proto/model_config.pb.h"
#include "proto/worker_frames.pb.h"
#include "server/supervisor/infer_job.h"

namespace kiln {

// A worker's warmed passes: the steady CPU time of each shape it warmed (its WarmupReport),
// which is what a pass of that shape costs it. A value; no synchronisation.
class WarmedCosts {
 public:
  WarmedCosts() = default;  // nothing warmed
  explicit WarmedCosts(const internal::WarmupReport& report);

  // What a pass of `rows` rows at `sequence_length` costs: the steady CPU milliseconds of the
  // smallest warmed batch size >= rows at that length (the batch it is padded to), or exactly
  // rows when `pad` is false; nullopt when there is none (the pass would be cold or split).
  std::optional<double> PassCost(int64_t rows, int32_t sequence_length, bool pad) const;

  // The sequence length the worker pads text of at most `tokens` tokens to (PaddedLength over
  // its warmed lengths, as its shape guard pads).
  int32_t TextLength(int32_t tokens) const { return PaddedLength(tokens, sequence_lengths_); }

 private:
  std::map<Shape, double> steady_cpu_ms_;  // warmed shapes only (refused ones left out)
  std::vector<int32_t> sequence_lengths_;  // their lengths
};

// The rows `job` brings to a call: its first input's batch dimension, a text job's strings, 1
// without a batch dimension.
int64_t JobRows(const InferJob& job);

// Whether `job` may share a call with others: not InferJob::alone, a model with a batch dimension,
// and tensor inputs or text whose tokens the master counted (InferJob::text_tokens).
bool Batchable(const ModelConfig& config, const InferJob& job);

// How many jobs from the front of `queue` (not empty: the queue's next jobs in dispatch order,
// JobQueue::Front) the next call takes: 1 when batching is off (config.dynamic_batching().enabled()
// false) or the front job is not Batchable; else the run described above, judged with `costs`
// (the worker that takes the call: its warmed costs, and the lengths it pads text to).
int PlanBatch(const ModelConfig& config, const std::vector<const InferJob*>& queue,
              const WarmedCosts& costs);

}  // namespace kiln

#endif  // KILN_SERVER_SUPERVISOR_BATCH_PLAN_H_
