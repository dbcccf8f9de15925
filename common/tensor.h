// Backend-neutral tensors: what crosses the boundary between kiln's code and a backend
// (LibTorch), so that only the backend's translation units include LibTorch headers.
#ifndef KILN_COMMON_TENSOR_H_
#define KILN_COMMON_TENSOR_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/dtype.h"

namespace kiln {

// Number of elements of a shape; std::nullopt for a negative dim or on int64 overflow.
std::optional<int64_t> NumElements(const std::vector<int64_t>& shape);

// Bytes of a dense `dtype` tensor of `shape` (NumElements x DTypeSize); std::nullopt for a
// negative dim or on overflow.
std::optional<size_t> ByteSize(DType dtype, const std::vector<int64_t>& shape);

// "[1, 3, 224, 224]".
std::string ShapeString(const std::vector<int64_t>& shape);

// A non-owning view of dense, row-major tensor bytes. The viewed memory must outlive the view.
// A plain value: copyable, no synchronisation of its own.
struct TensorView {
  std::string name;
  DType dtype = DType::kFloat32;
  std::vector<int64_t> shape;
  const void* data = nullptr;
  size_t nbytes = 0;
};

// A dense, row-major tensor that owns its bytes. A plain value; no synchronisation.
struct Tensor {
  std::string name;
  DType dtype = DType::kFloat32;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;

  TensorView view() const { return {name, dtype, shape, bytes.data(), bytes.size()}; }
};

// Rows [begin, begin + count) of `tensor` along its first (batch) dim: a view of the same
// memory. The caller keeps 0 <= begin, count and begin + count <= shape[0].
TensorView SliceRows(const TensorView& tensor, int64_t begin, int64_t count);

// Views of `tensors` (which must outlive them).
std::vector<TensorView> Views(const std::vector<Tensor>& tensors);

// A copy of `tensor` with zero rows appended along its first (batch) dim up to `rows` (>= its
// own rows).
Tensor PadRows(const TensorView& tensor, int64_t rows);

// Drops every row of `tensor` after the first `rows` (<= its own rows).
void KeepRows(Tensor& tensor, int64_t rows);

// The parts of one tensor (same name, dtype and trailing dims) joined along the first dim, in
// order. InvalidArgument, naming the tensor, when their dtypes or trailing dims differ.
absl::StatusOr<Tensor> ConcatRows(const std::vector<const Tensor*>& parts);

}  // namespace kiln

#endif  // KILN_COMMON_TENSOR_H_
