#include "common/arena_tensors.h"

#include <algorithm>
#include <cstring>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/bytes_form.h"
#include "common/dtype.h"
#include "common/shape.h"
#include "common/status_macros.h"

namespace kiln {
namespace {

// Floor of a worker arena.
constexpr uint64_t kMinArenaBytes = 4 << 20;
// Text sent to a text model: bytes allowed per token of max_length, per row.
constexpr uint64_t kTextBytesPerToken = 32;

}  // namespace

uint64_t ArenaBytesFor(const ModelConfig& config) {
  const Shape largest = LargestShape(config);
  uint64_t bytes = 0;
  for (const auto* tensors : {&config.input(), &config.output()}) {
    for (const TensorConfig& tensor : *tensors) {
      const std::optional<DType> dtype = DTypeFromDataType(tensor.data_type());
      const int64_t elements = NumElements(ConcreteShape(tensor, config, largest)).value_or(0);
      bytes = SharedArena::Align(bytes) +
              static_cast<uint64_t>(elements) * (dtype.has_value() ? DTypeSize(*dtype) : 1);
    }
  }
  if (config.has_tokenizer()) {
    bytes += static_cast<uint64_t>(largest.batch_size) *
             (4 + kTextBytesPerToken * config.tokenizer().max_length());
  }
  // Two halves, each room for the largest call: a worker's calls alternate between them, so the
  // master may read one call's outputs while the worker runs the next.
  return std::max(kMinArenaBytes, 2 * SharedArena::Align(bytes));
}

namespace {

// Whether `n` bytes at `offset` lie in `arena` and before `end` (0: the arena's end).
bool FitsBefore(const SharedArena& arena, uint64_t offset, uint64_t n, uint64_t end) {
  return arena.Fits(offset, n) && (end == 0 || (offset <= end && n <= end - offset));
}

}  // namespace

absl::StatusOr<uint64_t> WriteToArena(const std::vector<TensorView>& tensors, uint64_t offset,
                                      SharedArena& arena, TensorRefs& refs, uint64_t end) {
  return WriteBatchToArena({&tensors}, offset, arena, refs, end);
}

absl::StatusOr<uint64_t> WriteBatchToArena(
    const std::vector<const std::vector<TensorView>*>& requests, uint64_t offset,
    SharedArena& arena, TensorRefs& refs, uint64_t end) {
  if (requests.empty()) return SharedArena::Align(offset);
  const std::vector<TensorView>& first = *requests.front();
  for (size_t t = 0; t < first.size(); ++t) {
    const TensorView& tensor = first[t];
    uint64_t nbytes = 0;
    std::vector<int64_t> shape = tensor.shape;
    for (size_t r = 0; r < requests.size(); ++r) {
      const TensorView& part = (*requests[r])[t];
      nbytes += part.nbytes;
      if (r > 0 && !shape.empty() && !part.shape.empty()) shape[0] += part.shape[0];
    }
    offset = SharedArena::Align(offset);
    if (!FitsBefore(arena, offset, nbytes, end)) {
      return absl::ResourceExhaustedError(
          absl::StrCat("tensor '", tensor.name, "' (", nbytes, " bytes at offset ", offset,
                       ") does not fit in the worker's arena (", arena.size(),
                       " bytes; this call may use up to ", end == 0 ? arena.size() : end, ")"));
    }
    uint64_t at = offset;
    for (const std::vector<TensorView>* request : requests) {
      const TensorView& part = (*request)[t];
      if (part.nbytes > 0) std::memcpy(arena.data() + at, part.data, part.nbytes);
      at += part.nbytes;
    }
    internal::TensorRef& ref = *refs.Add();
    ref.set_name(tensor.name);
    ref.set_dtype(std::string(DTypeName(tensor.dtype)));
    *ref.mutable_shape() = {shape.begin(), shape.end()};
    ref.set_offset(offset);
    ref.set_nbytes(nbytes);
    offset += nbytes;
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
    views.push_back(TensorView{ref.name(),
                               *dtype,
                               {ref.shape().begin(), ref.shape().end()},
                               arena.data() + ref.offset(),
                               ref.nbytes()});
  }
  return views;
}

absl::StatusOr<uint64_t> WriteTextToArena(const std::string& name,
                                          const std::vector<std::string>& rows, uint64_t offset,
                                          SharedArena& arena, internal::TensorRef& ref,
                                          uint64_t end) {
  return WriteTextBatchToArena(name, {&rows}, offset, arena, ref, end);
}

absl::StatusOr<uint64_t> WriteTextBatchToArena(
    const std::string& name, const std::vector<const std::vector<std::string>*>& requests,
    uint64_t offset, SharedArena& arena, internal::TensorRef& ref, uint64_t end) {
  offset = SharedArena::Align(offset);
  uint64_t nbytes = 0;
  int64_t rows = 0;
  for (const std::vector<std::string>* request : requests) {
    nbytes += BytesFormSize(*request);
    rows += static_cast<int64_t>(request->size());
  }
  if (!FitsBefore(arena, offset, nbytes, end)) {
    return absl::ResourceExhaustedError(
        absl::StrCat("text input '", name, "' (", nbytes, " bytes) does not fit in the worker's ",
                     "arena of ", end == 0 ? arena.size() : end - offset, " bytes; send shorter texts"));
  }
  uint64_t at = offset;
  for (const std::vector<std::string>* request : requests) {
    WriteBytesForm(*request, arena.data() + at);
    at += BytesFormSize(*request);
  }
  ref.set_name(name);
  ref.set_dtype("BYTES");
  ref.clear_shape();
  ref.add_shape(rows);
  ref.add_shape(1);
  ref.set_offset(offset);
  ref.set_nbytes(nbytes);
  return SharedArena::Align(offset + nbytes);
}

absl::StatusOr<std::vector<std::string>> TextInArena(const internal::TensorRef& ref,
                                                     const SharedArena& arena) {
  auto bad = [&ref](absl::string_view why) {
    return absl::InternalError(absl::StrCat("bad text ref '", ref.name(), "' (", ref.nbytes(),
                                            " bytes at ", ref.offset(), "): ", why));
  };
  if (ref.dtype() != "BYTES" || ref.shape_size() < 1 || ref.shape(0) < 0) {
    return bad("not a BYTES batch");
  }
  if (!arena.Fits(ref.offset(), ref.nbytes())) return bad("outside the arena");
  absl::StatusOr<std::vector<std::string>> rows = SplitBytesForm(
      absl::string_view(reinterpret_cast<const char*>(arena.data() + ref.offset()), ref.nbytes()),
      ref.shape(0));
  if (!rows.ok()) return bad(rows.status().message());
  return rows;
}

}  // namespace kiln
