#include "server/supervisor/batch_plan.h"

#include <algorithm>
#include <limits>

namespace kiln {
namespace {

// What a call costs beside its pass: the master <-> worker round trip, the arena copies and the
// response (about 0.1-0.2 ms on a 2-vCPU VM, BENCHMARKS.md "Per-request overhead"). Counted once
// per call, so that a batch's saving in calls weighs against its padding.
constexpr double kCallOverheadMs = 0.1;

// Whether `b`'s inputs are `a`'s but for the batch dimension: the same names, dtypes and dims
// after the first; for text, padded to the same length on the worker whose `costs` are given.
bool SameRowShape(const InferJob& a, const InferJob& b, const WarmedCosts& costs) {
  if ((a.text == nullptr) != (b.text == nullptr)) return false;
  if (a.text != nullptr) return costs.TextLength(a.text_tokens) == costs.TextLength(b.text_tokens);
  if (a.inputs.size() != b.inputs.size()) return false;
  for (size_t i = 0; i < a.inputs.size(); ++i) {
    const TensorView& x = a.inputs[i];
    const TensorView& y = b.inputs[i];
    if (x.name != y.name || x.dtype != y.dtype || x.shape.size() != y.shape.size() ||
        !std::equal(x.shape.begin() + 1, x.shape.end(), y.shape.begin() + 1)) {
      return false;
    }
  }
  return true;
}

}  // namespace

WarmedCosts::WarmedCosts(const internal::WarmupReport& report) {
  for (const internal::ShapeWarmup& shape : report.shapes()) {
    if (!shape.refused()) {
      steady_cpu_ms_[Shape{shape.batch_size(), shape.sequence_length()}] = shape.steady_cpu_ms();
      if (shape.sequence_length() > 0) sequence_lengths_.push_back(shape.sequence_length());
    }
  }
}

std::optional<double> WarmedCosts::PassCost(int64_t rows, int32_t sequence_length, bool pad) const {
  for (const auto& [shape, cost] : steady_cpu_ms_) {  // by batch size, then length
    if (shape.sequence_length != sequence_length || shape.batch_size < rows) continue;
    if (shape.batch_size == rows || pad) return cost;
    return std::nullopt;  // the smallest warmed batch above: padding is off
  }
  return std::nullopt;
}

int64_t JobRows(const InferJob& job) {
  if (job.text != nullptr) return static_cast<int64_t>(job.text->size());
  if (job.inputs.empty() || job.inputs.front().shape.empty()) return 1;
  return job.inputs.front().shape.front();
}

bool Batchable(const ModelConfig& config, const InferJob& job) {
  if (job.alone || config.max_batch_size() <= 0) return false;
  if (job.text != nullptr) return job.text_tokens >= 0;
  return !job.inputs.empty() && !job.inputs.front().shape.empty();
}

int PlanBatch(const ModelConfig& config, const std::vector<const InferJob*>& queue,
              const WarmedCosts& costs) {
  const InferJob& front = *queue.front();
  if (!config.dynamic_batching().enabled() || !Batchable(config, front)) return 1;
  const bool pad = config.warmup().pad_to_warmed();
  const int32_t length = front.text != nullptr ? costs.TextLength(front.text_tokens)
                                               : RequestShape(config, front.inputs).sequence_length;
  int best = 1;
  double best_per_row = std::numeric_limits<double>::infinity();
  int64_t rows = 0;
  for (size_t taken = 1; taken <= queue.size(); ++taken) {
    const InferJob& job = *queue[taken - 1];
    if (taken > 1 && (!Batchable(config, job) || !SameRowShape(front, job, costs))) break;
    rows += JobRows(job);
    if (rows > config.max_batch_size()) break;
    const std::optional<double> cost = costs.PassCost(rows, length, pad);
    if (!cost.has_value()) continue;  // a longer run may reach a warmed size
    const double per_row = (*cost + kCallOverheadMs) / static_cast<double>(rows);
    if (per_row <= best_per_row) {
      best_per_row = per_row;
      best = static_cast<int>(taken);
    }
  }
  return best;
}

}  // namespace kiln
