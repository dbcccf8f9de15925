#include "server/codec/classification.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "common/dtype.h"

namespace kiln {
namespace {

// A value as Triton writes it (std::to_string of the element type: "%f" for floats).
std::string ValueText(DType dtype, double value) {
  switch (dtype) {
    case DType::kFloat32:
      return std::to_string(static_cast<float>(value));
    case DType::kFloat64:
      return std::to_string(value);
    default:
      return std::to_string(static_cast<int64_t>(value));
  }
}

}  // namespace

absl::StatusOr<uint32_t> RequestedClassCount(
    const inference::ModelInferRequest::InferRequestedOutputTensor& requested,
    const TensorConfig& tensor) {
  const auto found = requested.parameters().find(kClassificationParameter);
  if (found == requested.parameters().end()) return 0;
  const inference::InferParameter& parameter = found->second;
  if (parameter.parameter_choice_case() != inference::InferParameter::kInt64Param ||
      parameter.int64_param() < 1 || parameter.int64_param() > UINT32_MAX) {
    return absl::InvalidArgumentError(
        absl::StrCat("output '", requested.name(), "': parameter '", kClassificationParameter,
                     "' must be an int64_param in [1, 2^32-1], the number of classes"));
  }
  switch (tensor.data_type()) {
    case TYPE_UINT8:
    case TYPE_INT8:
    case TYPE_INT16:
    case TYPE_INT32:
    case TYPE_INT64:
    case TYPE_FP32:
    case TYPE_FP64:
      return static_cast<uint32_t>(parameter.int64_param());
    default:
      return absl::InvalidArgumentError(absl::StrCat(
          "class result not available for output '", requested.name(), "' of type ",
          DataType_Name(tensor.data_type()), " (UINT8, INT8-64, FP32 and FP64 classify)"));
  }
}

std::vector<std::string> TopClasses(const TensorView& output, int64_t rows, uint32_t count,
                                    const TensorConfig& tensor) {
  std::vector<std::string> classes;
  const size_t element_size = DTypeSize(output.dtype);
  if (rows < 1 || element_size == 0) return classes;
  const int64_t elements = static_cast<int64_t>(output.nbytes / element_size) / rows;
  const int64_t top = std::min<int64_t>(count, elements);
  const auto* data = static_cast<const uint8_t*>(output.data);
  std::vector<int64_t> order(elements);
  for (int64_t row = 0; row < rows; ++row) {
    std::vector<double> values(elements);
    for (int64_t e = 0; e < elements; ++e) {
      values[e] = ElementAsDouble(output.dtype, data, row * elements + e);
    }
    std::iota(order.begin(), order.end(), 0);
    // NaN ranks with -inf: last, so that the order stays a strict weak one.
    const auto key = [&values](int64_t i) {
      return std::isnan(values[i]) ? -std::numeric_limits<double>::infinity() : values[i];
    };
    std::partial_sort(
        order.begin(), order.begin() + top, order.end(),
        [&key](int64_t a, int64_t b) { return key(a) > key(b) || (key(a) == key(b) && a < b); });
    for (int64_t k = 0; k < top; ++k) {
      const int64_t index = order[k];
      std::string& text =
          classes.emplace_back(absl::StrCat(ValueText(output.dtype, values[index]), ":", index));
      if (index < tensor.labels_size()) absl::StrAppend(&text, ":", tensor.labels(index));
    }
  }
  return classes;
}

}  // namespace kiln
