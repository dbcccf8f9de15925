// Inputs for one shape of a model (its config's warmup.data or input files): what a worker warms
// with, what the readiness check sends through the whole request path, and what kiln-forward-bench
// times. No LibTorch: tensors are plain bytes (common/tensor.h).
#ifndef KILN_COMMON_WARMUP_INPUTS_H_
#define KILN_COMMON_WARMUP_INPUTS_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "common/shape.h"
#include "common/tensor.h"
#include "proto/model_config.pb.h"

namespace kiln {

// Inputs for one shape in the config's input order: zeros (DATA_ZERO), or seeded values
// (DATA_RANDOM: floats in [-1, 1), integers and bools 0 or 1); an input with a row in
// warmup.input_files (config.pbtxt's model_warmup input_data_file) that fits the shape gets that
// row in every batch row. FailedPrecondition for TYPE_BYTES inputs, and for a row file that
// cannot be read or no longer holds one row.
absl::StatusOr<std::vector<Tensor>> MakeWarmupInputs(const ModelConfig& config, const Shape& shape,
                                                     uint32_t seed);

}  // namespace kiln

#endif  // KILN_COMMON_WARMUP_INPUTS_H_
