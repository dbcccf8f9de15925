// Tensors in a worker's shared-memory arena, described by internal::TensorRef frames: the one
// encoding the master (inputs in, outputs out) and the worker (the reverse) share.
#ifndef KILN_COMMON_ARENA_TENSORS_H_
#define KILN_COMMON_ARENA_TENSORS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/shared_arena.h"
#include "common/tensor.h"
#include "google/protobuf/repeated_ptr_field.h"
#include "proto/model_config.pb.h"
#include "proto/worker_frames.pb.h"

namespace kiln {

using TensorRefs = google::protobuf::RepeatedPtrField<internal::TensorRef>;

// The arena a worker of `config` needs: two halves (a worker's calls alternate between them), each
// room for every input and output at the largest shape a request may have (LargestShape), each
// 64-byte aligned, and for a text model's text (32 bytes per token of tokenizer.max_length, per
// row); at least 4 MiB.
uint64_t ArenaBytesFor(const ModelConfig& config);

// Copies `tensors` into `arena` from `offset` on, each at a kArenaAlignment boundary, and
// appends a ref for each to `refs`. Returns the offset after the last one (aligned), or
// ResourceExhausted, naming the tensor, when they do not fit before `end` (0: the arena's end).
absl::StatusOr<uint64_t> WriteToArena(const std::vector<TensorView>& tensors, uint64_t offset,
                                      SharedArena& arena, TensorRefs& refs, uint64_t end = 0);

// Copies the inputs of several requests into `arena` as one batch: requests[0]'s tensors, each
// joined along its first (batch) dim with the same tensor of every later request, in order (the
// caller keeps them alike: the same names, dtypes and dims after the first). Each request's bytes
// are copied once, straight to their rows. Otherwise as WriteToArena, which is the one-request
// case.
absl::StatusOr<uint64_t> WriteBatchToArena(
    const std::vector<const std::vector<TensorView>*>& requests, uint64_t offset,
    SharedArena& arena, TensorRefs& refs, uint64_t end = 0);

// Views of the tensors `refs` describe, pointing into `arena` (how the master reads a worker's
// outputs, and a worker its inputs: no copy). Internal when a ref has an unknown dtype or lies
// outside the arena; the bytes are not checked against the shapes here (EncodeInferResponse does,
// against the model's config).
absl::StatusOr<std::vector<TensorView>> ViewsInArena(const TensorRefs& refs,
                                                     const SharedArena& arena);

// A text batch (one string per row) in the BYTES form: per string a 4-byte little-endian length,
// then its bytes. Written from `offset` on (aligned); `ref` gets dtype "BYTES" and shape
// [rows, 1]. Returns the offset after it (aligned), or ResourceExhausted when it does not fit
// before `end` (0: the arena's end).
absl::StatusOr<uint64_t> WriteTextToArena(const std::string& name,
                                          const std::vector<std::string>& rows, uint64_t offset,
                                          SharedArena& arena, internal::TensorRef& ref,
                                          uint64_t end = 0);

// As WriteTextToArena, for a dynamic batch of text requests: each request's rows in turn, as one
// text batch of all their rows (the strings go straight from each request to the arena).
absl::StatusOr<uint64_t> WriteTextBatchToArena(
    const std::string& name, const std::vector<const std::vector<std::string>*>& requests,
    uint64_t offset, SharedArena& arena, internal::TensorRef& ref, uint64_t end = 0);

// The strings of a text ref written by WriteTextToArena. Internal when the ref lies outside the
// arena or its bytes do not hold exactly shape[0] strings.
absl::StatusOr<std::vector<std::string>> TextInArena(const internal::TensorRef& ref,
                                                     const SharedArena& arena);

}  // namespace kiln

#endif  // KILN_COMMON_ARENA_TENSORS_H_
