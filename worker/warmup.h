// The warmup plan of DESIGN.md's startup step 4: every batch size x sequence length of the
// config, `calls_per_shape` calls each, on the thread and under the guard that will serve
// (TorchModel::Forward's NoGradGuard), so the TorchScript profiling executor (which profiles on
// the first call and optimises on the second) and oneDNN's per-shape primitives are settled
// before the worker reports ready.
#ifndef KILN_WORKER_WARMUP_H_
#define KILN_WORKER_WARMUP_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "common/tensor.h"
#include "proto/model_config.pb.h"
#include "proto/worker_frames.pb.h"
#include "worker/torch_model.h"

namespace kiln {

struct WarmupShape {
  int32_t batch_size = 1;       // 1 (and no batch dim) when max_batch_size is 0
  int32_t sequence_length = 0;  // replaces -1 dims; 0 when the model has none
};

// The plan's shapes, smallest first: batch sizes x sequence lengths.
std::vector<WarmupShape> WarmupShapes(const ModelConfig& config);

// The full shape of `tensor` for `shape`: the batch dim first when max_batch_size > 0, then its
// dims with -1 replaced by the sequence length.
std::vector<int64_t> ConcreteShape(const TensorConfig& tensor, const ModelConfig& config,
                                   const WarmupShape& shape);

// Inputs for one shape in the config's input order: zeros (DATA_ZERO), or seeded values
// (DATA_RANDOM: floats in [-1, 1), integers and bools 0 or 1). FailedPrecondition for
// DATA_FILE (not supported yet) and TYPE_BYTES inputs.
absl::StatusOr<std::vector<Tensor>> MakeWarmupInputs(const ModelConfig& config,
                                                     const WarmupShape& shape, uint32_t seed);

// Runs the plan on `model` and reports each shape's first-call and steady (median of the other
// calls) latency. The first error of a forward pass stops it.
absl::StatusOr<std::vector<internal::ShapeWarmup>> RunWarmup(TorchModel& model);

}  // namespace kiln

#endif  // KILN_WORKER_WARMUP_H_
