#include "common/shape.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/memory_budget.h"
#include "common/model_config_loader.h"

namespace kiln {
namespace {

// Smallest (batch x length) first; equal products keep their order.
void SortSmallestFirst(std::vector<Shape>& shapes) {
  std::stable_sort(shapes.begin(), shapes.end(), [](const Shape& a, const Shape& b) {
    return ShapeUnits(a.batch_size, a.sequence_length) <
           ShapeUnits(b.batch_size, b.sequence_length);
  });
}

}  // namespace

std::string Shape::Describe() const {
  return absl::StrCat("b", batch_size,
                      sequence_length > 0 ? absl::StrCat(" s", sequence_length) : "");
}

internal::Shape ToProto(const Shape& shape) {
  internal::Shape proto;
  proto.set_batch_size(shape.batch_size);
  proto.set_sequence_length(shape.sequence_length);
  return proto;
}

Shape FromProto(const internal::Shape& shape) {
  return {shape.batch_size(), shape.sequence_length()};
}

std::vector<Shape> WarmupShapes(const ModelConfig& config) {
  std::vector<int32_t> lengths = {0};
  if (HasVariableDim(config)) {
    lengths.assign(config.warmup().sequence_lengths().begin(),
                   config.warmup().sequence_lengths().end());
  }
  std::vector<int32_t> batches = {1};
  if (config.max_batch_size() > 0) {
    batches.assign(config.warmup().batch_sizes().begin(), config.warmup().batch_sizes().end());
  }
  std::vector<Shape> shapes;
  for (int32_t batch : batches) {
    for (int32_t length : lengths) shapes.push_back({batch, length});
  }
  SortSmallestFirst(shapes);
  return shapes;
}

std::vector<Shape> PlanShapes(const ModelConfig& config, const std::vector<Shape>& extra) {
  std::vector<Shape> shapes = WarmupShapes(config);
  for (const Shape& shape : extra) {
    if (std::find(shapes.begin(), shapes.end(), shape) == shapes.end()) shapes.push_back(shape);
  }
  SortSmallestFirst(shapes);
  return shapes;
}

Shape LargestShape(const ModelConfig& config) {
  Shape largest{std::max(config.max_batch_size(), 1), 0};
  for (int32_t length : config.warmup().sequence_lengths()) {
    largest.sequence_length = std::max(largest.sequence_length, length);
  }
  if (config.has_tokenizer()) {
    largest.sequence_length = std::max(largest.sequence_length, config.tokenizer().max_length());
  }
  return largest;
}

std::vector<int64_t> ConcreteShape(const TensorConfig& tensor, const ModelConfig& config,
                                   const Shape& shape) {
  std::vector<int64_t> dims;
  if (config.max_batch_size() > 0) dims.push_back(shape.batch_size);
  for (int64_t dim : tensor.dims()) dims.push_back(dim == -1 ? shape.sequence_length : dim);
  return dims;
}

InputMatch MatchInputs(const ModelConfig& config, const std::vector<TensorView>& inputs) {
  InputMatch match;
  match.given_as.assign(config.input_size(), -1);
  size_t given = 0;  // inputs[given] is the next one to match
  for (int c = 0; c < config.input_size(); ++c) {
    if (given < inputs.size() && inputs[given].name == config.input(c).name()) {
      match.given_as[c] = static_cast<int>(given++);
    } else if (!config.input(c).optional()) {
      match.missing = config.input(c).name();
      return match;
    }
  }
  if (given != inputs.size()) match.unexpected = inputs[given].name;
  return match;
}

Shape RequestShape(const ModelConfig& config, const std::vector<TensorView>& inputs) {
  Shape shape;
  const bool batched = config.max_batch_size() > 0;
  if (batched && !inputs.empty() && !inputs[0].shape.empty()) {
    shape.batch_size = static_cast<int32_t>(inputs[0].shape[0]);
  }
  const size_t offset = batched ? 1 : 0;
  for (const TensorView& given : inputs) {
    const auto config_input =
        std::find_if(config.input().begin(), config.input().end(),
                     [&given](const TensorConfig& input) { return input.name() == given.name; });
    if (config_input == config.input().end()) continue;
    for (int d = 0; d < config_input->dims_size(); ++d) {
      if (config_input->dims(d) == -1 && d + offset < given.shape.size()) {
        shape.sequence_length = static_cast<int32_t>(given.shape[d + offset]);
        return shape;
      }
    }
  }
  return shape;
}

int32_t PaddedLength(int32_t longest, const std::vector<int32_t>& buckets) {
  int32_t best = 0;
  for (int32_t bucket : buckets) {
    if (bucket >= longest && bucket > 0 && (best == 0 || bucket < best)) best = bucket;
  }
  return best > 0 ? best : std::max(longest, 1);
}

std::string Unservable(const ModelConfig& config, const Shape& shape) {
  if (shape.batch_size > std::max(config.max_batch_size(), 1)) return "batch above max_batch_size";
  if (HasVariableDim(config) != (shape.sequence_length > 0)) {
    return "length does not fit the model's dims";
  }
  if (config.has_tokenizer() && shape.sequence_length > config.tokenizer().max_length()) {
    return "length above tokenizer.max_length";
  }
  return "";
}

}  // namespace kiln
