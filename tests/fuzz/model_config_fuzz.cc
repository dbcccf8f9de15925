// libFuzzer target for a model's files (common/model_config_loader.h): Triton's config.pbtxt and
// kiln's optional kiln.pbtxt, in a scratch repository whose model "m" has version directory 1
// holding model.pt and tokenizer.model. The input is
//   <config.pbtxt text>
//   --- kiln.pbtxt
//   <kiln.pbtxt text>
// split at the first line that is exactly kSeparator; without that line the model has no
// kiln.pbtxt. Whatever the text, LoadModelVersions must return; an error is InvalidArgument naming
// config.pbtxt or kiln.pbtxt; a model it accepts has every default resolved and every value in its
// documented range, and what the server computes from it next (the warmup plan, the largest shape,
// the arena size, the model's metadata, Triton's ModelConfig for the ModelConfig RPC) works: every
// warmup shape and the largest shape are servable. The ModelConfig RPC's answer carries kiln's
// resolved settings (parameters["kiln_config"]): written as kiln.pbtxt beside config.pbtxt as it
// was loaded, they load to the same config. Run with scripts/fuzz.sh.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "common/arena_tensors.h"
#include "common/memory_budget.h"
#include "common/model_config_loader.h"
#include "common/shape.h"
#include "common/tensor.h"
#include "common/triton_config.h"
#include "google/protobuf/text_format.h"
#include "google/protobuf/util/message_differencer.h"
#include "proto/grpc_service.pb.h"
#include "proto/model_config.pb.h"
#include "proto/triton_model_config.pb.h"
#include "server/codec/infer_codec.h"
#include "server/codec/triton_model_config.h"
#include "tests/fuzz/fuzz_expect.h"

namespace kiln {
namespace {

using fuzz::Expect;
namespace fs = std::filesystem;

// The line that ends config.pbtxt's text and starts kiln.pbtxt's.
constexpr std::string_view kSeparator = "--- kiln.pbtxt";

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
std::string SettingsPath() { return fs::path(ModelDir()) / kSettingsFileName; }

void WriteText(const std::string& path, std::string_view text) {
  fuzz::WriteScratchFile(path, reinterpret_cast<const uint8_t*>(text.data()), text.size());
}

// Writes the input as the model's files: config.pbtxt, and kiln.pbtxt when the input has the
// separator line (else none). Returns whether kiln.pbtxt was written.
bool WriteModelFiles(std::string_view input) {
  size_t at = std::string_view::npos;
  for (size_t line = 0; line <= input.size();) {
    const size_t end = std::min(input.find('\n', line), input.size());
    if (input.substr(line, end - line) == kSeparator) {
      at = line;
      break;
    }
    line = end + 1;
  }
  if (at == std::string_view::npos) {
    WriteText(ConfigPath(), input);
    std::error_code ignored;
    fs::remove(SettingsPath(), ignored);
    return false;
  }
  WriteText(ConfigPath(), input.substr(0, at));
  const size_t rest = std::min(at + kSeparator.size() + 1, input.size());
  WriteText(SettingsPath(), input.substr(rest));
  return true;
}

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
void CheckResolved(const ModelSpec& spec) {
  const ModelConfig& config = spec.config;
  Expect(config.name() == "m", "the directory's name");
  Expect(config.platform() == kTritonPlatform, "the platform is pytorch_libtorch");
  Expect(config.version() == 1, "the served version");
  Expect(config.max_batch_size() >= 0, "max_batch_size >= 0");
  Expect(config.max_batch_size() == spec.triton.max_batch_size(), "config.pbtxt's batch size");
  CheckTensors(config.input(), config);
  CheckTensors(config.output(), config);
  Expect(config.input_size() == spec.triton.input_size() &&
             config.output_size() == spec.triton.output_size(),
         "config.pbtxt's inputs and outputs");
  Expect(!config.model_filename().empty() &&
             fs::path(config.model_filename()).filename() == config.model_filename(),
         "a model file name in the version directory");

  const InstanceConfig& group = config.instance_group();
  Expect(group.count() >= 0 && group.intra_op_threads() >= 0, "instance counts");
  Expect(group.count() > 0 || spec.triton.instance_group().empty(),
         "written instance groups serve at least one instance");
  Expect(group.kind() == InstanceConfig::KIND_GPU || group.gpus().empty(), "gpus only on GPUs");
  for (int32_t gpu : group.gpus()) Expect(gpu >= 0, "gpu ids");

  const VersionPolicy& policy = config.version_policy();
  Expect(policy.has_all() || policy.has_specific() ||
             (policy.has_latest() && policy.latest().num_versions() >= 1),
         "a version policy, latest resolved");

  const TorchOptions& torch = config.torch();
  if (spec.triton.parameters().empty()) {
    Expect(torch.jit_executor() && torch.jit_profiling() && torch.tensor_fuser() &&
               !torch.inference_mode() && !torch.disable_optimized_execution(),
           "the PyTorch backend's defaults");
  }

  const WarmupConfig& warmup = config.warmup();
  Expect(warmup.has_enabled(), "warmup.enabled resolved");
  Expect(warmup.has_pad_to_warmed(), "warmup.pad_to_warmed resolved");
  Expect(WarmupConfig::Data_IsValid(warmup.data()), "warmup data DATA_ZERO or DATA_RANDOM");
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
  for (const inference::ModelWarmup& sample : spec.triton.model_warmup()) {
    const int32_t batch = std::max<int32_t>(static_cast<int32_t>(sample.batch_size()), 1);
    Expect(std::binary_search(warmup.batch_sizes().begin(), warmup.batch_sizes().end(), batch),
           "model_warmup's batch sizes are warmed");
  }

  const DynamicBatchingConfig& batching = config.dynamic_batching();
  Expect(batching.has_enabled() && batching.enabled() == spec.triton.has_dynamic_batching(),
         "dynamic_batching.enabled: whether config.pbtxt asks for it");
  Expect(batching.has_max_queue_delay_us() && batching.max_queue_delay_us() >= 0, "delay");
  Expect(batching.max_queue_size() >= 1, "a queue of at least 1");

  const MemoryConfig& memory = config.memory();
  Expect(memory.limit_bytes() >= 0 && memory.headroom_bytes() >= 0, "memory bytes");
  Expect(memory.cgroup_share() > 0 && memory.cgroup_share() <= 1, "cgroup share");

  const ReadinessConfig& readiness = config.readiness();
  Expect(readiness.quorum() >= 0 && readiness.min_ready() >= 1, "quorum");
  Expect(readiness.check_requests() >= 0 && readiness.check_concurrency() >= 0, "check");  // 0: sized
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

// Triton's ModelConfig for the ModelConfig RPC; returns parameters["kiln_config"].
std::string CheckTritonConfig(const ModelSpec& spec) {
  constexpr int kInstances = 3;
  const inference::ModelConfig triton = ToTritonModelConfig(spec, kInstances);
  Expect(triton.name() == "m" && triton.platform() == kTritonPlatform &&
             triton.backend() == kTritonBackend,
         "Triton's name, platform and backend");
  Expect(triton.default_model_filename() == spec.config.model_filename(), "the model file");
  Expect(triton.has_version_policy(), "a version policy");
  Expect(triton.max_batch_size() == spec.triton.max_batch_size(), "max_batch_size as written");
  Expect(triton.model_warmup_size() == spec.triton.model_warmup_size(), "model_warmup as written");
  Expect(triton.has_dynamic_batching() == spec.triton.has_dynamic_batching(),
         "dynamic_batching as written");
  const int groups = std::max(1, spec.triton.instance_group_size());
  Expect(triton.instance_group_size() == groups, "the instance groups as written, or one");
  for (const inference::ModelInstanceGroup& group : triton.instance_group()) {
    Expect(!group.name().empty() && group.count() >= 0, "named groups");
  }
  const int text = spec.config.has_tokenizer() ? 1 : 0;
  Expect(triton.input_size() == spec.config.input_size() + text, "the inputs");
  if (text == 1) {
    Expect(triton.input(0).name() == spec.config.tokenizer().text_input() &&
               triton.input(0).data_type() == inference::TYPE_STRING,
           "a text model's text input first");
    for (const inference::ModelInput& input : triton.input()) {
      Expect(input.optional(), "a text model's inputs are optional");
    }
  }
  auto found = triton.parameters().find(kKilnConfigParameter);
  Expect(found != triton.parameters().end(), "kiln's settings in the parameters");
  ModelSettings settings;
  Expect(google::protobuf::TextFormat::ParseFromString(found->second.string_value(), &settings),
         "kiln_config parses as kiln.ModelSettings");
  using google::protobuf::util::MessageDifferencer;
  Expect(MessageDifferencer::Equals(settings.warmup(), spec.config.warmup()) &&
             MessageDifferencer::Equals(settings.memory(), spec.config.memory()) &&
             MessageDifferencer::Equals(settings.readiness(), spec.config.readiness()) &&
             MessageDifferencer::Equals(settings.supervision(), spec.config.supervision()) &&
             settings.has_tokenizer() == spec.config.has_tokenizer() &&
             MessageDifferencer::Equals(settings.tokenizer(), spec.config.tokenizer()),
         "kiln_config is the resolved settings");
  return found->second.string_value();
}

// config.pbtxt as it was read, with the resolved settings as kiln.pbtxt, loads to the same config.
void CheckReloads(const ModelSpec& spec, const std::string& settings) {
  std::string text;
  Expect(google::protobuf::TextFormat::PrintToString(spec.triton, &text), "printing config.pbtxt");
  WriteText(ConfigPath(), text);
  WriteText(SettingsPath(), settings);
  absl::StatusOr<std::vector<ModelSpec>> again = LoadModelVersions(ModelDir());
  if (!again.ok()) std::fprintf(stderr, "reload: %s\n", again.status().ToString().c_str());
  Expect(again.ok() && again->size() == 1, "the resolved settings load again");
  // A label file may be one of the two files rewritten here (the seeds' label_filename is
  // config.pbtxt): its labels are the file's lines, so they change with it.
  const auto without_rewritten_labels = [&spec](ModelConfig config) {
    for (int i = 0; i < config.output_size() && i < spec.triton.output_size(); ++i) {
      const std::string& file = spec.triton.output(i).label_filename();
      if (file == "config.pbtxt" || file == "kiln.pbtxt") config.mutable_output(i)->clear_labels();
    }
    return config;
  };
  Expect(
      google::protobuf::util::MessageDifferencer::Equals(
          without_rewritten_labels(again->front().config), without_rewritten_labels(spec.config)),
      "the resolved settings load to the same config");
}

}  // namespace
}  // namespace kiln

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace kiln;
  const bool has_settings =
      WriteModelFiles(std::string_view(reinterpret_cast<const char*>(data), size));
  absl::StatusOr<std::vector<ModelSpec>> specs = LoadModelVersions(ModelDir());
  fuzz::Note("LoadModelVersions", specs.status());
  if (!specs.ok()) {
    fuzz::ExpectError(specs.status(), absl::StatusCode::kInvalidArgument,
                      "a bad model is InvalidArgument");
    // A setting config.pbtxt leaves to kiln.pbtxt (a sequence length) names kiln.pbtxt even
    // where there is none yet.
    fuzz::Expect(absl::StrContains(specs.status().message(), ConfigPath()) ||
                     absl::StrContains(specs.status().message(), SettingsPath()),
                 "errors name config.pbtxt or kiln.pbtxt");
    return 0;
  }
  fuzz::Expect(specs->size() == 1 && specs->front().version == 1, "the one version there is");
  const ModelSpec& spec = specs->front();
  fuzz::Expect(spec.config_path == ConfigPath(), "the config file");
  fuzz::Expect(spec.settings_path == (has_settings ? SettingsPath() : std::string()),
               "the settings file, when there is one");
  fuzz::Expect(
      spec.model_path ==
          (std::filesystem::path(ModelDir()) / "1" / spec.config.model_filename()).string(),
      "the model file");
  fuzz::Expect(spec.tokenizer_path.empty() != spec.config.has_tokenizer(), "the tokenizer file");
  CheckResolved(spec);
  CheckDerived(spec.config);
  CheckReloads(spec, CheckTritonConfig(spec));
  return 0;
}
