// What a worker may serve after its warmup: the shapes it warmed (a request of another shape is a
// cold-shape hit), the sequence lengths a text batch is padded up to, and how many rows one
// forward pass may take within the worker's memory budget (a larger batch is split into passes
// of that size; a single row over the budget is refused).
#ifndef KILN_WORKER_SHAPE_GUARD_H_
#define KILN_WORKER_SHAPE_GUARD_H_

#include <cstdint>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "common/memory_budget.h"
#include "proto/model_config.pb.h"

namespace kiln {

// Ownership: a value built once after warmup and owned by the worker's serving loop.
// Thread-safety: const after construction; const methods are safe from any thread.
class ShapeGuard {
 public:
  // `warmed` holds (batch size, sequence length) pairs that ran in warmup within the budget;
  // `budget_bytes` 0 means no budget. `memory` is the warmup's projection model.
  ShapeGuard(const ModelConfig& config, std::set<std::pair<int32_t, int32_t>> warmed,
             ShapeMemoryModel memory, int64_t budget_bytes);

  bool Warmed(int32_t batch_size, int32_t sequence_length) const;

  // Every warmed sequence length (for padding text up to), ascending.
  std::vector<int32_t> SequenceBuckets() const;

  // The batch size to pad a single-pass request of `batch_size` rows up to: the smallest warmed
  // batch size >= it at `sequence_length` whose projected peak fits the budget, or `batch_size`
  // itself when it is warmed, when none is, or when padding is off
  // (dynamic_batching.pad_to_warmed false, or a model without a batch dim).
  int32_t PaddedBatch(int32_t batch_size, int32_t sequence_length) const;

  // Rows per forward pass for a request of `batch_size` rows (1 for a model without a batch
  // dim) at `sequence_length`: `batch_size` when its projected peak fits the budget (or there is
  // no budget), else the largest warmed batch size that fits, else the most rows that fit.
  // ResourceExhausted, with the projected and budget
  // MB, when not even one row fits, or when a model without a batch dim does not fit.
  absl::StatusOr<int32_t> RowsPerPass(int32_t batch_size, int32_t sequence_length) const;

  int64_t budget_bytes() const { return budget_bytes_; }

 private:
  const std::string model_;
  const bool batched_;
  const bool pad_to_warmed_;
  const std::set<std::pair<int32_t, int32_t>> warmed_;
  const ShapeMemoryModel memory_;
  const int64_t budget_bytes_;
};

}  // namespace kiln

#endif  // KILN_WORKER_SHAPE_GUARD_H_
