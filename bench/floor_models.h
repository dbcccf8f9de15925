// The models kiln-floor-server answers for: each one's served versions, loaded from a model
// repository with kiln's own loader (common/model_config_loader.h), so that the floor validates
// and decodes a request against exactly the config kiln-server would, and the zero-filled output
// bytes every answer points into.
//
// No LibTorch: the floor never loads a model file, only the configs that describe it.
#ifndef KILN_BENCH_FLOOR_MODELS_H_
#define KILN_BENCH_FLOOR_MODELS_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/dtype.h"
#include "common/model_config_loader.h"
#include "common/tensor.h"

namespace kiln::bench {

// One output of a served version, answered as zeros. A plain value, immutable once built.
struct FloorOutput {
  std::string name;
  DType dtype = DType::kFloat32;
  std::vector<int64_t> row_shape;  // the config's dims, a variable (-1) dim as 1
  size_t row_bytes = 0;            // bytes of one row (of the whole tensor without a batch dim)
  std::vector<uint8_t> zeros;      // max(max_batch_size, 1) rows of zero bytes
};

// One served version: its resolved spec (what kiln-server loads) and its outputs. A plain value,
// immutable once built.
struct FloorVersion {
  ModelSpec spec;
  std::vector<FloorOutput> outputs;  // in the config's order
};

// The outputs of `version` for a request of `batch_size` rows (0: a model without a batch dim):
// views of the zero bytes, shaped [batch_size, dims...] (or [dims...]), which live as long as
// `version`. The caller keeps batch_size <= max_batch_size (DecodeInferRequest checks it).
std::vector<TensorView> ZeroOutputs(const FloorVersion& version, int64_t batch_size);

// Every served version of the models the floor answers for, by model name.
//
// Ownership: owns the loaded specs and their output buffers. Thread-safety: immutable once
// Load returns, so any number of gRPC threads may read it at once.
class FloorModels {
 public:
  // Loads the repository's models named in `names` (empty: every model directory the repository
  // holds) with kiln's loader. NotFound when the repository or a named model is missing; the
  // loader's error (naming the file, the field and what was expected) when a config is bad;
  // InvalidArgument when a model has an output kiln cannot return (BYTES).
  static absl::StatusOr<std::unique_ptr<FloorModels>> Load(const std::string& repository,
                                                           const std::vector<std::string>& names);

  // The version a request for `name` and `version` goes to, as kiln-server routes it: an empty
  // `version` is the newest served one. NotFound for an unknown model or a version not served
  // (the message lists what is), InvalidArgument for a version that is not a number >= 1.
  absl::StatusOr<const FloorVersion*> Route(const std::string& name,
                                            const std::string& version) const;

  // The served version numbers of `name`, ascending ("1", "2"); empty for an unknown model.
  std::vector<std::string> Versions(const std::string& name) const;

  // The model names, sorted.
  std::vector<std::string> Names() const;

 private:
  FloorModels() = default;

  // By name; each model's versions ascending.
  std::map<std::string, std::vector<FloorVersion>> models_;
};

}  // namespace kiln::bench

#endif  // KILN_BENCH_FLOOR_MODELS_H_
