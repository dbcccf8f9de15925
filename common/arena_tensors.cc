#include "common/arena_tensors.h"

#include <cstring>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/dtype.h"

namespace kiln {

absl::StatusOr<uint64_t> WriteToArena(const std::vector<TensorView>& tensors, uint64_t offset,
                                      SharedArena& arena, TensorRefs& refs) {
  for (const TensorView& tensor : tensors) {
    offset = SharedArena::Align(offset);
    if (!arena.Fits(offset, tensor.nbytes)) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "tensor '", tensor.name, "' (", tensor.nbytes, " bytes at offset ", offset,
          ") does not fit in the worker's arena of ", arena.size(), " bytes"));
    }
    if (tensor.nbytes > 0) std::memcpy(arena.data() + offset, tensor.data, tensor.nbytes);
    internal::TensorRef& ref = *refs.Add();
    ref.set_name(tensor.name);
    ref.set_dtype(std::string(DTypeName(tensor.dtype)));
    *ref.mutable_shape() = {tensor.shape.begin(), tensor.shape.end()};
    ref.set_offset(offset);
    ref.set_nbytes(tensor.nbytes);
    offset += tensor.nbytes;
  }
  return SharedArena::Align(offset);
}

absl::StatusOr<std::vector<TensorView>> ViewsInArena(const TensorRefs& refs,
                                                     const SharedArena& arena) {
  std::vector<TensorView> views;
  views.reserve(refs.size());
  for (const internal::TensorRef& ref : refs) {
    const std::optional<DType> dtype = DTypeFromName(ref.dtype());
    if (!dtype.has_value() || !arena.Fits(ref.offset(), ref.nbytes())) {
      return absl::InternalError(absl::StrCat("bad arena ref for tensor '", ref.name(), "' (",
                                              ref.dtype(), ", ", ref.nbytes(), " bytes at ",
                                              ref.offset(), ")"));
    }
    views.push_back(TensorView{ref.name(), *dtype, {ref.shape().begin(), ref.shape().end()},
                               arena.data() + ref.offset(), ref.nbytes()});
  }
  return views;
}

}  // namespace kiln
