#include "common/warmup_inputs.h"

#include <cstring>
#include <optional>
#include <random>

#include "absl/strings/str_cat.h"
#include "common/dtype.h"
#include "common/status_macros.h"
#include "common/text_proto_file.h"

namespace kiln {
namespace {

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

// Fills every batch row of `tensor` (the whole tensor when it has no batch dimension) with the
// row read from `path`.
absl::Status FillRows(const std::string& path, bool batched, Tensor& tensor) {
  ASSIGN_OR_RETURN(const std::string row, ReadWholeFile(path));
  const size_t rows = batched && !tensor.shape.empty() ? static_cast<size_t>(tensor.shape[0]) : 1;
  if (row.empty() || row.size() * rows != tensor.bytes.size()) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, ": ", row.size(), " bytes, not one row of input '", tensor.name, "' (",
                     rows == 0 ? 0 : tensor.bytes.size() / rows, " bytes)"));
  }
  for (size_t r = 0; r < rows; ++r)
    std::memcpy(tensor.bytes.data() + r * row.size(), row.data(), row.size());
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<Tensor>> MakeWarmupInputs(const ModelConfig& config, const Shape& shape,
                                                     uint32_t seed) {
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
    tensor.bytes.assign(ByteSize(*dtype, tensor.shape).value_or(0), 0);
    if (config.warmup().data() == WarmupConfig::DATA_RANDOM) FillRandom(*dtype, tensor.bytes, rng);
    const auto file = config.warmup().input_files().find(input.name());
    if (file != config.warmup().input_files().end() &&
        (file->second.sequence_length() == 0 ||
         file->second.sequence_length() == shape.sequence_length)) {
      RETURN_IF_ERROR(FillRows(file->second.path(), config.max_batch_size() > 0, tensor));
    }
  }
  return inputs;
}

}  // namespace kiln
