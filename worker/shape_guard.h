// What a worker may serve after its warmup: the shapes it warmed (a request of another shape is a
// cold-shape hit), the sequence lengths a text batch is padded up to, and how many rows one
// forward pass may take within the worker's memory budget (a larger batch is split into passes
// of that size; a single row over the budget is refused). Plan() puts these together into the one
// plan the worker follows for a request.
#ifndef KILN_WORKER_SHAPE_GUARD_H_
#define KILN_WORKER_SHAPE_GUARD_H_

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/memory_budget.h"
#include "common/shape.h"
#include "proto/model_config.pb.h"

namespace kiln {

// How a worker runs one request (ShapeGuard::Plan).
struct PassPlan {
  Shape pass;               // what each forward pass runs: rows per pass and the length
  int32_t passes = 1;       // forward passes; > 1 when split to fit the memory budget
  int32_t padded_rows = 0;  // zero rows added to a single pass to reach a warmed batch size
  bool cold = false;        // some pass runs a shape the worker did not warm
};

// Ownership: a value built once after warmup and owned by the worker's serving loop.
// Thread-safety: const after construction; const methods are safe from any thread.
class ShapeGuard {
 public:
  // `warmed` holds the shapes that ran in warmup within the budget;
  // `budget_bytes` 0 means no budget. `memory` is the warmup's projection model.
  ShapeGuard(const ModelConfig& config, std::set<Shape> warmed, ShapeMemoryModel memory,
             int64_t budget_bytes);

  // The plan for a request of `request` (its rows, and its length after any padding to a
  // sequence bucket): RowsPerPass rows per pass; a request that fits one pass is padded to
  // PaddedBatch. ResourceExhausted when not even one row fits the memory budget; InvalidArgument
  // for a request of no rows.
  absl::StatusOr<PassPlan> Plan(const Shape& request) const;

  bool Warmed(const Shape& shape) const;

  // Every warmed sequence length (for padding text up to), ascending.
  std::vector<int32_t> SequenceBuckets() const;

  // The batch size to pad a single-pass request of `batch_size` rows up to: the smallest warmed
  // batch size >= it at `sequence_length` whose projected peak fits the budget, or `batch_size`
  // itself when it is warmed, when none is, or when padding is off
  // (warmup.pad_to_warmed false in kiln.pbtxt, or a model without a batch dim).
  int32_t PaddedBatch(const Shape& request) const;

  // Rows per forward pass for a request of `batch_size` rows (1 for a model without a batch
  // dim) at `sequence_length`: `batch_size` when its projected peak fits the budget (or there is
  // no budget), else the largest warmed batch size that fits, else the most rows that fit.
  // ResourceExhausted, with the projected and budget
  // MB, when not even one row fits, or when a model without a batch dim does not fit.
  absl::StatusOr<int32_t> RowsPerPass(const Shape& request) const;

  int64_t budget_bytes() const { return budget_bytes_; }

 private:
  const std::string model_;
  const bool batched_;
  const bool pad_to_warmed_;
  const std::set<Shape> warmed_;
  const ShapeMemoryModel memory_;
  const int64_t budget_bytes_;
};

}  // namespace kiln

#endif  // KILN_WORKER_SHAPE_GUARD_H_
