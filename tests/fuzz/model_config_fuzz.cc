// libFuzzer target for config.pbtxt (common/model_config_loader.h): the input is the text of a
// model's config.pbtxt in a scratch repository whose model "m" has version directory 1 holding
// model.pt and tokenizer.model. Whatever the text, LoadModelVersions must return; an error is
// InvalidArgument naming the config file; a config it accepts has every default resolved and every
// value in its documented range, and what the server computes from it next (the warmup plan, the
// largest shape, the arena size, the model's metadata) works: every warmup shape and the largest
// shape are servable. Loading the accepted config's own text again gives the same config.
// Run with scripts/fuzz.sh.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "common/arena_tensors.h"
#include "common/memory_budget.h"
#include "common/model_config_loader.h"
#include "common/shape.h"
#include "common/tensor.h"
#include "google/protobuf/text_format.h"
#include "google/protobuf/util/message_differencer.h"
#include "proto/grpc_service.pb.h"
#include "proto/model_config.pb.h"
#include "server/codec/infer_codec.h"
#include "tests/fuzz/fuzz_expect.h"

namespace kiln {
namespace {

using fuzz::Expect;
namespace fs = std::filesystem;

// <scratch>/m with 1/model.pt and 1/tokenizer.model (empty: the loader only checks they exist).
const std::string& ModelDir() {
  static const std::string* const dir = [] {
    auto* made = new std::string(fs::path(fuzz::ScratchDir()) / "m");
    fs::create_directories(fs::path(*made) / "1");
    fuzz::WriteScratchFile(fs::path(*made) / "1" / kModelFileName, nullptr, 0);
    fuzz::WriteScratchFile(fs::path(*made) / "1" / "tokenizer.model", nullptr, 0);
    return made;
  }();
  return *dir;
}

std::string ConfigPath() { return fs::path(ModelDir()) / kConfigFileName; }

bool Increasing(const google::protobuf::RepeatedField<int32_t>& sizes) {
  return std::adjacent_find(sizes.begin(), sizes.end(),
                            [](int32_t a, int32_t b) { return a >= b; }) == sizes.end();
}

void CheckTensors(const google::protobuf::RepeatedPtrField<TensorConfig>& tensors,
                  const ModelConfig& config) {
  Expect(!tensors.empty(), "at least one tensor");
  std::set<std::string> names;
  for (const TensorConfig& tensor : tensors) {
    Expect(!tensor.name().empty() && names.insert(tensor.name()).second, "unique names");
    Expect(tensor.data_type() != TYPE_INVALID && tensor.data_type() != TYPE_BYTES &&
               DataType_IsValid(tensor.data_type()),
           "a numeric data type");
    Expect(!tensor.dims().empty() || config.max_batch_size() > 0, "dims without a batch dim");
    for (int64_t dim : tensor.dims()) Expect(dim > 0 || dim == -1, "dims > 0 or -1");
  }
}

// The promises of a loaded config: every default resolved, every value in range.
void CheckResolved(const ModelConfig& config) {
  Expect(config.name() == "m", "the directory's name");
  Expect(config.platform() == kDefaultPlatform, "the platform");
  Expect(config.version() == 1, "the served version");
  Expect(config.max_batch_size() >= 0, "max_batch_size >= 0");
  CheckTensors(config.input(), config);
  CheckTensors(config.output(), config);

  const InstanceConfig& group = config.instance_group();
  Expect(group.count() >= 0 && group.intra_op_threads() >= 0, "instance counts");
  for (int32_t gpu : group.gpus()) Expect(gpu >= 0, "gpu ids");

  const WarmupConfig& warmup = config.warmup();
  Expect(warmup.has_enabled(), "warmup.enabled resolved");
  Expect(!warmup.batch_sizes().empty() && Increasing(warmup.batch_sizes()), "batch sizes");
  for (int32_t batch : warmup.batch_sizes()) {
    Expect(batch >= 1 && batch <= std::max(config.max_batch_size(), 1), "batch sizes in range");
  }
  Expect(Increasing(warmup.sequence_lengths()), "sequence lengths");
  for (int32_t length : warmup.sequence_lengths()) {
    Expect(length >= 1, "sequence lengths >= 1");
    if (config.has_tokenizer()) Expect(length <= config.tokenizer().max_length(), "<= max_length");
  }
  Expect(HasVariableDim(config) != warmup.sequence_lengths().empty(),
         "lengths exactly when there are -1 dims");
  Expect(warmup.calls_per_shape() >= 1 && warmup.steady_calls() >= 1, "warmup calls");
  Expect(warmup.max_calls_per_shape() >= warmup.calls_per_shape(), "max calls");
  Expect(warmup.settle_tolerance() > 0 && warmup.settle_tolerance() <= 1, "settle tolerance");
  Expect(warmup.data() != WarmupConfig::DATA_FILE && warmup.data_file().empty(), "no data file");

  const DynamicBatchingConfig& batching = config.dynamic_batching();
  Expect(batching.has_enabled() && !batching.enabled(), "no cross-request batching");
  Expect(batching.has_max_queue_delay_us() && batching.max_queue_delay_us() >= 0, "delay");
  Expect(batching.max_queue_size() >= 1 && batching.has_pad_to_warmed(), "queue");

  const MemoryConfig& memory = config.memory();
  Expect(memory.limit_bytes() >= 0 && memory.headroom_bytes() >= 0, "memory bytes");
  Expect(memory.cgroup_share() > 0 && memory.cgroup_share() <= 1, "cgroup share");

  const ReadinessConfig& readiness = config.readiness();
  Expect(readiness.quorum() >= 0 && readiness.min_ready() >= 1, "quorum");
  Expect(readiness.check_requests() >= 1 && readiness.check_concurrency() >= 1, "check");
  Expect(readiness.max_p95_factor() >= 1 && readiness.check_allowance_ms() > 0, "factors");
  const double timeout = config.supervision().compute_timeout_ms();
  Expect(timeout >= 0 && std::isfinite(timeout), "compute timeout");

  if (config.has_tokenizer()) {
    const TokenizerConfig& tokenizer = config.tokenizer();
    Expect(tokenizer.max_length() >= 1 && tokenizer.pad_id() >= 0, "tokenizer values");
    Expect(FindInput(config, tokenizer.text_input()) == nullptr, "text input not a model input");
    for (const std::string* name : {&tokenizer.ids_input(), &tokenizer.mask_input()}) {
      const TensorConfig* input = FindInput(config, *name);
      Expect(input != nullptr &&
                 (input->data_type() == TYPE_INT64 || input->data_type() == TYPE_INT32),
             "the tokenizer feeds INT64 or INT32 inputs");
    }
    for (const TensorConfig& input : config.input()) {
      Expect(input.name() == tokenizer.ids_input() || input.name() == tokenizer.mask_input(),
             "a text model's inputs are the tokenizer's");
    }
  }
}

// What the server computes from an accepted config.
void CheckDerived(const ModelConfig& config) {
  const std::vector<Shape> shapes = WarmupShapes(config);
  Expect(!shapes.empty(), "a warmup plan");
  for (const Shape& shape : shapes) {
    Expect(Unservable(config, shape).empty(), "every warmup shape is servable");
    for (const TensorConfig& input : config.input())
      (void)NumElements(ConcreteShape(input, config, shape));
  }
  const Shape largest = LargestShape(config);
  Expect(Unservable(config, largest).empty(), "the largest shape is servable");
  Expect(ArenaBytesFor(config) >= (4u << 20), "an arena of at least 4 MiB");
  (void)WorkerBudgetBytes(config.memory(), int64_t{8} << 30, 4);
  inference::ModelMetadataResponse metadata;
  FillModelMetadata(config, {"1"}, &metadata);
  Expect(metadata.inputs_size() == config.input_size() + (config.has_tokenizer() ? 1 : 0),
         "metadata inputs");
  Expect(metadata.outputs_size() == config.output_size(), "metadata outputs");
}

void CheckReloads(const ModelConfig& config) {
  ModelConfig unversioned = config;
  unversioned.clear_version();  // set by the loader from the directory it serves
  std::string text;
  Expect(google::protobuf::TextFormat::PrintToString(unversioned, &text), "printing the config");
  fuzz::WriteScratchFile(ConfigPath(), reinterpret_cast<const uint8_t*>(text.data()), text.size());
  absl::StatusOr<std::vector<ModelSpec>> again = LoadModelVersions(ModelDir());
  if (!again.ok()) std::fprintf(stderr, "reload: %s\n", again.status().ToString().c_str());
  Expect(again.ok() && again->size() == 1, "a resolved config loads again");
  Expect(google::protobuf::util::MessageDifferencer::Equals(again->front().config, config),
         "a resolved config loads to itself");
}

}  // namespace
}  // namespace kiln

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace kiln;
  fuzz::WriteScratchFile(ConfigPath(), data, size);
  absl::StatusOr<std::vector<ModelSpec>> specs = LoadModelVersions(ModelDir());
  fuzz::Note("LoadModelVersions", specs.status());
  if (!specs.ok()) {
    fuzz::ExpectError(specs.status(), absl::StatusCode::kInvalidArgument,
                      "a bad config is InvalidArgument");
    fuzz::Expect(absl::StrContains(specs.status().message(), ConfigPath()),
                 "errors name the config file");
    return 0;
  }
  fuzz::Expect(specs->size() == 1 && specs->front().version == 1, "the one version there is");
  const ModelSpec& spec = specs->front();
  fuzz::Expect(
      spec.model_path == (std::filesystem::path(ModelDir()) / "1" / kModelFileName).string(),
      "the model file");
  fuzz::Expect(spec.tokenizer_path.empty() != spec.config.has_tokenizer(), "the tokenizer file");
  CheckResolved(spec.config);
  CheckDerived(spec.config);
  CheckReloads(spec.config);
  return 0;
}
