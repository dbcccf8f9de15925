// Triton's classification extension: a request asks, for one of its requested outputs, for the
// top `classification` classes of each row instead of the tensor, and gets a BYTES tensor of
// strings "<value>:<index>" or, where the output has a label file (label_filename in
// config.pbtxt, read into TensorConfig.labels), "<value>:<index>:<label>", best first.
//
// Pure functions of their arguments: no state, safe to call from any thread.
#ifndef KILN_SERVER_CODEC_CLASSIFICATION_H_
#define KILN_SERVER_CODEC_CLASSIFICATION_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/tensor.h"
#include "proto/grpc_service.pb.h"
#include "proto/model_config.pb.h"

namespace kiln {

// The parameter of a requested output (InferRequestedOutputTensor.parameters) that asks for
// classification, as tritonclient sends it: an int64_param, the number of classes.
inline constexpr char kClassificationParameter[] = "classification";

// How many classes `requested` (an output of the model, described by `tensor`) asks for; 0 when
// it does not ask. InvalidArgument, naming the output, when the parameter is not a positive
// int64_param, or the output's data type has no order Triton classifies by (BOOL, FP16, BF16).
absl::StatusOr<uint32_t> RequestedClassCount(
    const inference::ModelInferRequest::InferRequestedOutputTensor& requested,
    const TensorConfig& tensor);

// The top min(`count`, classes) classes of each of `output`'s `rows` rows (a row: its elements
// after the batch dimension, or the whole tensor when rows is 1 without one), best first, ties by
// the lower index (NaN last); row after row. tensor.labels(i), where there is one, names index
// i. The output must be dense and of a classifiable dtype (RequestedClassCount checked it).
std::vector<std::string> TopClasses(const TensorView& output, int64_t rows, uint32_t count,
                                    const TensorConfig& tensor);

}  // namespace kiln

#endif  // KILN_SERVER_CODEC_CLASSIFICATION_H_
