// The one (batch size, sequence length) shape type, and every function that plans with shapes:
// which shapes warmup runs, the concrete tensor shape of a config input at a shape, the shape a
// request arrived as, and whether a recorded shape can be served. Warmup, the worker's shape
// guard, the master <-> worker frames and traffic profiles all speak `Shape`; the wire form is
// the frame message `internal::Shape` (ToProto / FromProto), and traffic profiles keep their own
// file format (common/traffic_profile.h converts at the file's edge).
#ifndef KILN_COMMON_SHAPE_H_
#define KILN_COMMON_SHAPE_H_

#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

#include "common/tensor.h"
#include "proto/model_config.pb.h"
#include "proto/worker_frames.pb.h"

namespace kiln {

// A value; ordered by (batch size, sequence length) so it can key maps and sets.
struct Shape {
  int32_t batch_size = 1;       // rows; 1 (and no batch dim) when max_batch_size is 0
  int32_t sequence_length = 0;  // the size of the config's -1 dims; 0 when the model has none

  friend bool operator==(const Shape& a, const Shape& b) {
    return a.batch_size == b.batch_size && a.sequence_length == b.sequence_length;
  }
  friend bool operator!=(const Shape& a, const Shape& b) { return !(a == b); }
  friend bool operator<(const Shape& a, const Shape& b) {
    return std::tie(a.batch_size, a.sequence_length) < std::tie(b.batch_size, b.sequence_length);
  }
  // "b4 s16", or "b4" without a sequence length.
  std::string Describe() const;
};

internal::Shape ToProto(const Shape& shape);
Shape FromProto(const internal::Shape& shape);

// The config's warmup plan: warmup.batch_sizes x warmup.sequence_lengths (batch 1 for a model
// without a batch dim, length 0 for one without -1 dims), smallest (batch x length) first.
std::vector<Shape> WarmupShapes(const ModelConfig& config);

// WarmupShapes plus `extra` (recorded traffic), without repeats, smallest (batch x length) first.
std::vector<Shape> PlanShapes(const ModelConfig& config, const std::vector<Shape>& extra);

// The largest shape a request may have: max_batch_size rows (at least 1) at the longest warmup
// sequence length or tokenizer.max_length.
Shape LargestShape(const ModelConfig& config);

// The full shape of `tensor` at `shape`: the batch dim first when max_batch_size > 0, then its
// dims with -1 replaced by the sequence length.
std::vector<int64_t> ConcreteShape(const TensorConfig& tensor, const ModelConfig& config,
                                   const Shape& shape);

// Which config input each of `inputs` is, when they are the config's inputs in its order with
// optional ones perhaps left out: given_as[c] is the index in `inputs` of config input c, or -1
// when it was left out. Otherwise `missing` names the first required input not found where it
// belongs, or `unexpected` the first of `inputs` left over (unknown, or out of order).
struct InputMatch {
  std::vector<int> given_as;
  std::string missing;
  std::string unexpected;
};
InputMatch MatchInputs(const ModelConfig& config, const std::vector<TensorView>& inputs);

// The shape of a request whose inputs (in the config's input order, optional ones perhaps left
// out) are `inputs`: the batch dim (1 without one) and the size of the first -1 dim among them
// (0 when none).
Shape RequestShape(const ModelConfig& config, const std::vector<TensorView>& inputs);

// The sequence length a text row of at most `longest` tokens is padded to: the smallest of
// `buckets` (the warmed sequence lengths, any order; 0 is no bucket) that holds it, else `longest`
// itself (at least 1): a shape that was never warmed, which the worker counts as a cold-shape hit.
// The worker pads with it (worker/text_batch.h), and the batcher groups texts by it.
int32_t PaddedLength(int32_t longest, const std::vector<int32_t>& buckets);

// Why `config` cannot serve `shape` (batch above max_batch_size, a length for a model without a
// variable dim or none for one with it, a length above a text model's max_length), or "" when it
// can.
std::string Unservable(const ModelConfig& config, const Shape& shape);

}  // namespace kiln

#endif  // KILN_COMMON_SHAPE_H_
