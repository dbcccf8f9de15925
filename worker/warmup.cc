#include "worker/warmup.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <random>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "common/stats.h"
#include "common/dtype.h"

namespace kiln {
namespace {

bool HasVariableDim(const ModelConfig& config) {
  for (const TensorConfig& input : config.input()) {
    if (std::find(input.dims().begin(), input.dims().end(), -1) != input.dims().end()) {
      return true;
    }
  }
  return false;
}

// Fills `bytes` (elements of `dtype`) with seeded values: floats in [-1, 1), others 0 or 1.
void FillRandom(DType dtype, std::vector<uint8_t>& bytes, std::mt19937& rng) {
  const size_t n = bytes.size() / DTypeSize(dtype);
  if (dtype == DType::kFloat32) {
    std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
    for (size_t i = 0; i < n; ++i) {
      const float v = uniform(rng);
      std::memcpy(bytes.data() + i * sizeof(v), &v, sizeof(v));
    }
  } else if (dtype == DType::kFloat64) {
    std::uniform_real_distribution<double> uniform(-1.0, 1.0);
    for (size_t i = 0; i < n; ++i) {
      const double v = uniform(rng);
      std::memcpy(bytes.data() + i * sizeof(v), &v, sizeof(v));
    }
  } else if (dtype != DType::kFloat16 && dtype != DType::kBFloat16) {
    // Little-endian integers and bools: a 0/1 low byte is the value.
    for (size_t i = 0; i < n; ++i) bytes[i * DTypeSize(dtype)] = rng() & 1;
  }  // 16-bit floats stay zero: no portable half type here, and zero is a valid warmup value.
}


}  // namespace

std::vector<WarmupShape> WarmupShapes(const ModelConfig& config) {
  std::vector<int32_t> lengths = {0};
  if (HasVariableDim(config)) {
    lengths.assign(config.warmup().sequence_lengths().begin(),
                   config.warmup().sequence_lengths().end());
  }
  std::vector<int32_t> batches = {1};
  if (config.max_batch_size() > 0) {
    batches.assign(config.warmup().batch_sizes().begin(), config.warmup().batch_sizes().end());
  }
  std::vector<WarmupShape> shapes;
  for (int32_t batch : batches) {
    for (int32_t length : lengths) shapes.push_back({batch, length});
  }
  std::stable_sort(shapes.begin(), shapes.end(), [](const WarmupShape& a, const WarmupShape& b) {
    return int64_t{a.batch_size} * std::max(a.sequence_length, 1) <
           int64_t{b.batch_size} * std::max(b.sequence_length, 1);
  });
  return shapes;
}

std::vector<int64_t> ConcreteShape(const TensorConfig& tensor, const ModelConfig& config,
                                   const WarmupShape& shape) {
  std::vector<int64_t> dims;
  if (config.max_batch_size() > 0) dims.push_back(shape.batch_size);
  for (int64_t dim : tensor.dims()) dims.push_back(dim == -1 ? shape.sequence_length : dim);
  return dims;
}

absl::StatusOr<std::vector<Tensor>> MakeWarmupInputs(const ModelConfig& config,
                                                     const WarmupShape& shape, uint32_t seed) {
  if (config.warmup().data() == WarmupConfig::DATA_FILE) {
    return absl::FailedPreconditionError(
        absl::StrCat(config.name(),
                     ": warmup data DATA_FILE is not supported yet; use "
                     "DATA_ZERO or DATA_RANDOM"));
  }
  std::mt19937 rng(seed);
  std::vector<Tensor> inputs;
  for (const TensorConfig& input : config.input()) {
    const std::optional<DType> dtype = DTypeFromDataType(input.data_type());
    if (!dtype.has_value()) {
      return absl::FailedPreconditionError(absl::StrCat(config.name(), ": input '", input.name(),
                                                        "' of ", DataType_Name(input.data_type()),
                                                        " cannot be warmed with generated data"));
    }
    Tensor& tensor = inputs.emplace_back();
    tensor.name = input.name();
    tensor.dtype = *dtype;
    tensor.shape = ConcreteShape(input, config, shape);
    tensor.bytes.assign(
        static_cast<size_t>(NumElements(tensor.shape).value_or(0)) * DTypeSize(*dtype), 0);
    if (config.warmup().data() == WarmupConfig::DATA_RANDOM) FillRandom(*dtype, tensor.bytes, rng);
  }
  return inputs;
}

absl::StatusOr<SettleResult> SettleShape(const std::function<absl::StatusOr<double>()>& call,
                                         const SettlePlan& plan) {
  SettleResult result;
  auto agree = [&plan](double a, double b) {
    return std::abs(a - b) <= plan.tolerance * std::max(a, b);
  };
  for (int n = 1; n <= plan.max_calls; ++n) {
    absl::StatusOr<double> ms = call();
    if (!ms.ok()) return ms.status();
    result.latencies.push_back(*ms);
    if (n >= std::max(plan.min_calls, 2) && agree(result.latencies[n - 2], *ms)) {
      result.settled_after = n;
      break;
    }
  }
  std::vector<double> steady;
  for (int n = 0; n < plan.steady_calls; ++n) {
    absl::StatusOr<double> ms = call();
    if (!ms.ok()) return ms.status();
    result.latencies.push_back(*ms);
    steady.push_back(*ms);
  }
  result.first_ms = result.latencies.front();
  result.steady_ms = steady.empty() ? result.latencies.back() : Median(steady);
  return result;
}

absl::StatusOr<std::vector<internal::ShapeWarmup>> RunWarmup(TorchModel& model) {
  const ModelConfig& config = model.spec().config;
  const WarmupConfig& warmup = config.warmup();
  const SettlePlan plan{warmup.calls_per_shape(), warmup.max_calls_per_shape(),
                        warmup.settle_tolerance(), warmup.steady_calls()};
  std::vector<internal::ShapeWarmup> report;
  uint32_t seed = 1;
  for (const WarmupShape& shape : WarmupShapes(config)) {
    absl::StatusOr<std::vector<Tensor>> inputs = MakeWarmupInputs(config, shape, seed++);
    if (!inputs.ok()) return inputs.status();
    std::vector<TensorView> views;
    for (const Tensor& input : *inputs) views.push_back(input.view());
    auto call = [&]() -> absl::StatusOr<double> {
      const auto start = std::chrono::steady_clock::now();
      absl::StatusOr<std::vector<Tensor>> outputs = model.Forward(views);
      if (!outputs.ok()) {
        return absl::Status(outputs.status().code(),
                            absl::StrCat("warmup batch ", shape.batch_size, " length ",
                                         shape.sequence_length, ": ", outputs.status().message()));
      }
      return MillisecondsSince(start);
    };
    absl::StatusOr<SettleResult> settled = SettleShape(call, plan);
    if (!settled.ok()) return settled.status();
    internal::ShapeWarmup& entry = report.emplace_back();
    entry.set_batch_size(shape.batch_size);
    entry.set_sequence_length(shape.sequence_length);
    entry.set_calls(static_cast<int32_t>(settled->latencies.size()));
    entry.set_first_ms(settled->first_ms);
    entry.set_steady_ms(settled->steady_ms);
    entry.set_settled_after(settled->settled_after);
  }
  return report;
}

}  // namespace kiln
