#include "worker/shape_guard.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"

namespace kiln {

ShapeGuard::ShapeGuard(const ModelConfig& config, std::set<Shape> warmed, ShapeMemoryModel memory,
                       int64_t budget_bytes)
    : model_(config.name()),
      batched_(config.max_batch_size() > 0),
      pad_to_warmed_(config.warmup().pad_to_warmed()),
      warmed_(std::move(warmed)),
      memory_(std::move(memory)),
      budget_bytes_(budget_bytes) {}

absl::StatusOr<PassPlan> ShapeGuard::Plan(const Shape& request) const {
  if (request.batch_size < 1) {  // PrepareCall refuses it first; no division by zero here
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: a request of %d rows has nothing to run", model_, request.batch_size));
  }
  ASSIGN_OR_RETURN(const int32_t rows, RowsPerPass(request));
  PassPlan plan;
  plan.pass = {rows, request.sequence_length};
  if (rows == request.batch_size) {
    plan.pass.batch_size = PaddedBatch(request);
    plan.padded_rows = plan.pass.batch_size - request.batch_size;
  }
  plan.passes = (request.batch_size + rows - 1) / rows;
  // A split request's last pass takes the rows left over.
  const Shape last{request.batch_size - (plan.passes - 1) * rows, request.sequence_length};
  plan.cold = !Warmed(plan.pass) || (plan.passes > 1 && !Warmed(last));
  return plan;
}

bool ShapeGuard::Warmed(const Shape& shape) const { return warmed_.count(shape) > 0; }

std::vector<int32_t> ShapeGuard::SequenceBuckets() const {
  std::set<int32_t> lengths;
  for (const Shape& shape : warmed_) {
    if (shape.sequence_length > 0) lengths.insert(shape.sequence_length);
  }
  return {lengths.begin(), lengths.end()};
}

int32_t ShapeGuard::PaddedBatch(const Shape& request) const {
  if (!batched_ || !pad_to_warmed_ || Warmed(request)) return request.batch_size;
  int32_t best = 0;
  for (const auto& [batch, length] : warmed_) {
    if (length == request.sequence_length && batch > request.batch_size &&
        (best == 0 || batch < best) &&
        (budget_bytes_ <= 0 || memory_.Projected(ShapeUnits(batch, length)) <= budget_bytes_)) {
      best = batch;
    }
  }
  return best > 0 ? best : request.batch_size;
}

absl::StatusOr<int32_t> ShapeGuard::RowsPerPass(const Shape& request) const {
  const auto [batch_size, sequence_length] = request;
  if (budget_bytes_ <= 0) return batch_size;
  const int64_t per_row = ShapeUnits(1, sequence_length);
  if (memory_.Projected(ShapeUnits(batch_size, sequence_length)) <= budget_bytes_) {
    return batch_size;
  }
  const int64_t rows = batched_ ? memory_.MaxUnitsWithin(budget_bytes_) / per_row : 0;
  if (rows < 1) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "%s: a forward pass of %s%s is projected to peak at %.0f MB, over this worker's memory "
        "budget of %.0f MB (memory.limit_bytes / memory.cgroup_share); not run",
        model_, batched_ ? "1 row" : "this request",
        sequence_length > 0 ? absl::StrFormat(" of length %d", sequence_length) : "",
        memory_.Projected(ShapeUnits(batched_ ? 1 : batch_size, sequence_length)) / 1e6,
        budget_bytes_ / 1e6));
  }
  // Passes of a warmed batch size when one fits, so a split request runs warm shapes.
  int32_t warmed_rows = 0;
  for (const auto& [batch, length] : warmed_) {
    if (length == sequence_length && batch <= rows) warmed_rows = std::max(warmed_rows, batch);
  }
  return warmed_rows > 0 ? warmed_rows : static_cast<int32_t>(std::min<int64_t>(rows, batch_size));
}

}  // namespace kiln
