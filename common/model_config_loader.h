// Loading a model repository in Triton's layout (docs/model-repository.md):
//
//   <repository>/<model name>/config.pbtxt   Triton's ModelConfig (inference.ModelConfig), text
//   format <repository>/<model name>/kiln.pbtxt     optional: kiln's own settings
//   (kiln.ModelSettings) <repository>/<model name>/<version>/model.pt   TorchScript (or
//   default_model_filename) <repository>/<model name>/<version>/model.safetensors   optional:
//   weights to map and share <repository>/<model name>/<version>/<tokenizer.model_file>   with a
//   tokenizer in kiln.pbtxt
//
// A model serves the version directories its version_policy names (default: the highest one);
// each served version is one ModelSpec.
//
// The loader parses both files, refuses at its line each Triton field kiln does not implement
// (common/triton_config.h), resolves every default (so the resolved config holds explicit
// values), checks every value and the files it names, and reports each defect with the file, the
// field and what was expected. What the config accepts works, or the log says how it is served
// (ModelSpec::notes).
#ifndef KILN_COMMON_MODEL_CONFIG_LOADER_H_
#define KILN_COMMON_MODEL_CONFIG_LOADER_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "proto/model_config.pb.h"
#include "proto/triton_model_config.pb.h"

namespace kiln {

inline constexpr char kConfigFileName[] = "config.pbtxt";
inline constexpr char kSettingsFileName[] = "kiln.pbtxt";
inline constexpr char kModelFileName[] = "model.pt";  // without default_model_filename
inline constexpr char kWeightsFileName[] = "model.safetensors";

// Defaults that the comments of ModelSettings and ModelConfig promise; the loader writes them
// into the resolved config.
// Calls before settling is judged; the first shape a process warms takes at least
// kNewPlanMinCalls (worker/warmup.h says why).
inline constexpr int32_t kDefaultWarmupCallsPerShape = 2;
inline constexpr double kDefaultWarmupSettleTolerance = 0.15;
inline constexpr int32_t kDefaultWarmupMaxCallsPerShape = 50;
// The settling pair alone: the two calls that agreed are the steady latency, no call more.
inline constexpr int32_t kDefaultWarmupSteadyCalls = 2;
inline constexpr int32_t kDefaultMaxQueueSize = 256;
inline constexpr double kDefaultCgroupShare = 0.8;
inline constexpr int32_t kDefaultReadinessMinReady = 1;
// 0: sized when the check runs (server/front/readiness_check.h): one request per worker and one
// per other warmed shape, as many at a time as the model has workers.
inline constexpr int32_t kDefaultReadinessCheckRequests = 0;
inline constexpr int32_t kDefaultReadinessCheckConcurrency = 0;
inline constexpr double kDefaultReadinessMaxP95Factor = 1.5;
inline constexpr double kDefaultReadinessCheckAllowanceMs = 1.0;
inline constexpr int32_t kDefaultTokenizerMaxLength = 128;

// "<name>:<version>": how a served model version is named in maps, frames and logs.
std::string ModelKey(const std::string& name, int64_t version);

// One served version of a model of the repository, resolved: a plain value, immutable once
// loaded.
struct ModelSpec {
  ModelConfig config;             // every default resolved
  inference::ModelConfig triton;  // config.pbtxt as it was read (for the ModelConfig RPC)
  std::string directory;          // <repository>/<name>
  std::string config_path;        // <directory>/config.pbtxt
  std::string settings_path;      // <directory>/kiln.pbtxt; empty when there is none
  int64_t version = 0;            // the version served
  std::string version_dir;        // <directory>/<version>
  std::string model_path;         // <version_dir>/<config.model_filename>
  std::string weights_path;    // <version_dir>/model.safetensors; empty when there is none
  std::string tokenizer_path;  // empty when the config has no tokenizer
  // Identifies the files as they were when loaded (device, inode, size and modification time
  // of both config files, the model, the weights and the tokenizer): a reload reloads a version
  // whose stamp changed, and leaves the others alone.
  std::string stamp;
  // What the config asks for that is accepted but served otherwise than a reader might expect
  // (dynamic batching before the batcher, a GPU-only parameter): logged when the model loads.
  std::vector<std::string> notes;

  std::string key() const { return ModelKey(config.name(), version); }
};

// How the server shares a loaded spec: requests in flight keep the version they were routed to.
using SharedSpec = std::shared_ptr<const ModelSpec>;

// Loads one model directory. Its config.pbtxt's (or kiln.pbtxt's) errno code (NotFound when there
// is no config.pbtxt) when it cannot be read; otherwise InvalidArgument for every defect (a parse
// error or a Triton field kiln does not implement, at its line; a bad value; a missing model or
// tokenizer file), naming the file and, for a bad value, the field and what was expected. A model
// with several defects reports all of them, one per line.
// Every version it serves, ascending (at least one).
absl::StatusOr<std::vector<ModelSpec>> LoadModelVersions(const std::string& model_dir);

// Logs each model's notes (ModelSpec::notes) as warnings naming its config.pbtxt: once per
// model, however many of its versions `specs` holds.
void LogConfigNotes(const std::vector<ModelSpec>& specs);

// The newest version LoadModelVersions serves.
absl::StatusOr<ModelSpec> LoadModel(const std::string& model_dir);

// The config's input named `name`, or nullptr.
const TensorConfig* FindInput(const ModelConfig& config, const std::string& name);

// Whether any input has a variable (-1) dim, i.e. the model takes a sequence length.
bool HasVariableDim(const ModelConfig& config);

// The repository as it is now: for each model directory (a subdirectory holding config.pbtxt), by
// name, its served versions or why they do not load. NotFound when the repository is not a
// directory.
absl::StatusOr<std::map<std::string, absl::StatusOr<std::vector<ModelSpec>>>> ScanRepository(
    const std::string& repository);

// Loads every model directory of the repository: every served version of each, sorted by name and
// then version. Fails if the repository is missing,
// holds no model, or any model fails to load (all failures are reported, not just the first).
absl::StatusOr<std::vector<ModelSpec>> LoadModelRepository(const std::string& repository);

}  // namespace kiln

#endif  // KILN_COMMON_MODEL_CONFIG_LOADER_H_
