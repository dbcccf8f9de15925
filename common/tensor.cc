#include "common/tensor.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace kiln {

std::optional<int64_t> NumElements(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t dim : shape) {
    if (dim < 0) return std::nullopt;
    if (__builtin_mul_overflow(n, dim, &n)) return std::nullopt;
  }
  return n;
}

std::optional<size_t> ByteSize(DType dtype, const std::vector<int64_t>& shape) {
  const std::optional<int64_t> elements = NumElements(shape);
  size_t bytes = 0;
  if (!elements.has_value() ||
      __builtin_mul_overflow(static_cast<size_t>(*elements), DTypeSize(dtype), &bytes)) {
    return std::nullopt;
  }
  return bytes;
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  return "[" + absl::StrJoin(shape, ", ") + "]";
}

std::vector<TensorView> Views(const std::vector<Tensor>& tensors) {
  std::vector<TensorView> views;
  views.reserve(tensors.size());
  for (const Tensor& tensor : tensors) views.push_back(tensor.view());
  return views;
}

TensorView SliceRows(const TensorView& tensor, int64_t begin, int64_t count) {
  TensorView slice = tensor;
  const int64_t rows = tensor.shape.empty() ? 0 : tensor.shape[0];
  const size_t row_bytes = rows > 0 ? tensor.nbytes / static_cast<size_t>(rows) : 0;
  slice.shape[0] = count;
  slice.data = static_cast<const uint8_t*>(tensor.data) + static_cast<size_t>(begin) * row_bytes;
  slice.nbytes = static_cast<size_t>(count) * row_bytes;
  return slice;
}

Tensor PadRows(const TensorView& tensor, int64_t rows) {
  Tensor padded{tensor.name, tensor.dtype, tensor.shape, {}};
  // From the trailing dims, so that a tensor of 0 rows pads to whole rows too.
  const std::vector<int64_t> row_shape(tensor.shape.begin() + (tensor.shape.empty() ? 0 : 1),
                                       tensor.shape.end());
  const size_t row_bytes =
      static_cast<size_t>(NumElements(row_shape).value_or(0)) * DTypeSize(tensor.dtype);
  const auto* begin = static_cast<const uint8_t*>(tensor.data);
  padded.bytes.assign(begin, begin + tensor.nbytes);
  padded.bytes.resize(static_cast<size_t>(rows) * row_bytes, 0);
  padded.shape[0] = rows;
  return padded;
}

void KeepRows(Tensor& tensor, int64_t rows) {
  const int64_t own = tensor.shape.empty() ? 0 : tensor.shape[0];
  if (own <= rows) return;
  tensor.bytes.resize(tensor.bytes.size() / static_cast<size_t>(own) * static_cast<size_t>(rows));
  tensor.shape[0] = rows;
}

absl::StatusOr<Tensor> ConcatRows(const std::vector<const Tensor*>& parts) {
  if (parts.empty()) return absl::InvalidArgumentError("ConcatRows: no parts");
  Tensor joined = *parts.front();
  if (joined.shape.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("'", joined.name, "' has no batch dim"));
  }
  for (size_t i = 1; i < parts.size(); ++i) {
    const Tensor& part = *parts[i];
    if (part.dtype != joined.dtype || part.shape.size() != joined.shape.size() ||
        !std::equal(part.shape.begin() + 1, part.shape.end(), joined.shape.begin() + 1)) {
      return absl::InvalidArgumentError(
          absl::StrCat("'", joined.name, "': part ", i, " is ", DTypeName(part.dtype), " ",
                       ShapeString(part.shape), ", part 0 is ", DTypeName(parts.front()->dtype),
                       " ", ShapeString(parts.front()->shape)));
    }
    joined.shape[0] += part.shape[0];
    joined.bytes.insert(joined.bytes.end(), part.bytes.begin(), part.bytes.end());
  }
  return joined;
}

}  // namespace kiln
