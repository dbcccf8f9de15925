// Generated inputs for one shape of a model (its config's warmup.data): what a worker warms with,
// what the readiness check sends through the whole request path, and what kiln-forward-bench
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
// (DATA_RANDOM: floats in [-1, 1), integers and bools 0 or 1). FailedPrecondition for
// DATA_FILE (not supported yet) and TYPE_BYTES inputs.
absl::StatusOr<std::vector<Tensor>> MakeWarmupInputs(const ModelConfig& config, const Shape& shape,
                                                     uint32_t seed);

}  // namespace kiln

#endif  // KILN_COMMON_WARMUP_INPUTS_H_
