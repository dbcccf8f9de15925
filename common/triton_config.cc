#include "common/triton_config.h"

#include <algorithm>
#include <climits>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "common/dtype.h"
#include "common/model_config_loader.h"
#include "common/tensor.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/reflection.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::TextFormat;

// The fields of Triton's ModelConfig kiln implements, as dotted paths (a map's entries have the
// fields "key" and "value"). A path ending in ".*" takes its whole subtree. Every other field a
// config sets is refused.
constexpr absl::string_view kImplemented[] = {
    "name",
    "platform",
    "backend",
    "max_batch_size",
    "version_policy.*",
    "input.name",
    "input.data_type",
    "input.format",
    "input.dims",
    "input.reshape.*",
    "input.optional",
    "output.name",
    "output.data_type",
    "output.dims",
    "output.reshape.*",
    "output.label_filename",
    "instance_group.name",
    "instance_group.kind",
    "instance_group.count",
    "instance_group.gpus",
    "default_model_filename",
    "parameters.*",
    "model_warmup.name",
    "model_warmup.batch_size",
    "model_warmup.count",
    "model_warmup.inputs.key",
    "model_warmup.inputs.value.data_type",
    "model_warmup.inputs.value.dims",
    "model_warmup.inputs.value.zero_data",
    "model_warmup.inputs.value.random_data",
    "model_warmup.inputs.value.input_data_file",
    // Accepted whole: requests are served one at a time until the batcher is built, which the
    // log says (FromTritonConfig).
    "dynamic_batching.*",
};

// Why a field is refused, where a hint helps more than the generic reason.
std::string WhyRefused(const std::string& path) {
  static const std::pair<absl::string_view, absl::string_view> kHints[] = {
      {"sequence_batching", "stateful models are not served by kiln: each request stands alone"},
      {"ensemble_scheduling", "kiln serves no ensembles: chain the models in the client"},
      {"response_cache", "kiln has no response cache"},
      {"model_repository_agents", "kiln runs no repository agents"},
      {"optimization", "the CPU workers of kiln take no optimization policy"},
      {"model_transaction_policy", "kiln answers each request once (not decoupled)"},
  };
  for (const auto& [field, hint] : kHints) {
    if (path == field) return absl::StrCat("Triton's, not supported by kiln: ", hint);
  }
  return "Triton's, not supported by kiln: remove it";
}

// The most workers a model may ask for, in all its instance groups.
constexpr int64_t kMaxInstances = 4096;
// The most optional inputs a model may declare: warmup runs every shape once per combination of
// them left out (2^4 = 16 passes per shape), so that no combination is a cold call.
constexpr int kMaxOptionalInputs = 4;
// The largest label file read (Triton's label_filename): a label per line, read at load.
constexpr uintmax_t kMaxLabelFileBytes = uintmax_t{16} << 20;

bool Implemented(const std::string& path) {
  for (absl::string_view entry : kImplemented) {
    if (absl::EndsWith(entry, ".*")) {
      const absl::string_view prefix = entry.substr(0, entry.size() - 2);
      if (path == prefix || absl::StartsWith(path, absl::StrCat(prefix, "."))) return true;
    } else if (path == entry) {
      return true;
    }
  }
  return false;
}

// Whether `path` leads to an implemented field (so its message is worth walking into).
bool ImplementedBelow(const std::string& path) {
  const std::string prefix = absl::StrCat(path, ".");
  for (absl::string_view entry : kImplemented) {
    if (absl::StartsWith(entry, prefix)) return true;
  }
  return false;
}

// Refuses, at its line, each field set in `message` (at `prefix`) that kiln does not implement.
void Walk(const Message& message, const TextFormat::ParseInfoTree* tree, const std::string& prefix,
          Defects& defects) {
  std::vector<const FieldDescriptor*> fields;
  message.GetReflection()->ListFields(message, &fields);
  for (const FieldDescriptor* field : fields) {
    const std::string path =
        prefix.empty() ? field->name() : absl::StrCat(prefix, ".", field->name());
    if (Implemented(path)) continue;
    const int count = field->is_repeated() ? message.GetReflection()->FieldSize(message, field) : 1;
    for (int i = 0; i < count; ++i) {
      const int index = field->is_repeated() ? i : -1;
      if (field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE && ImplementedBelow(path)) {
        const Message& nested = field->is_repeated()
                                    ? message.GetReflection()->GetRepeatedMessage(message, field, i)
                                    : message.GetReflection()->GetMessage(message, field);
        Walk(nested, tree == nullptr ? nullptr : tree->GetTreeForNested(field, index), path,
             defects);
        continue;
      }
      const TextFormat::ParseLocation at =
          tree == nullptr ? TextFormat::ParseLocation() : tree->GetLocation(field, index);
      defects.AtLine(at.line + 1, path, WhyRefused(path));
      break;  // one defect per field, at its first value
    }
  }
}

std::string DimsText(const google::protobuf::RepeatedField<int64_t>& dims) {
  return absl::StrCat("[", absl::StrJoin(dims, ", "), "]");
}

// One input or output's name, type, dims and reshape into `tensor`.
template <typename TritonTensor>
void TranslateTensor(const TritonTensor& from, const std::string& field, TensorConfig* tensor,
                     Defects& defects) {
  tensor->set_name(from.name());
  tensor->set_data_type(FromTritonDataType(from.data_type()));
  // One defect per bad data_type (the resolved TYPE_INVALID is not checked again downstream).
  if (from.data_type() == inference::TYPE_INVALID) {
    defects.Field(field + ".data_type",
                  "one of TYPE_BOOL, TYPE_UINT8, TYPE_INT8, TYPE_INT16, "
                  "TYPE_INT32, TYPE_INT64, TYPE_FP16, TYPE_FP32, TYPE_FP64, TYPE_BF16",
                  "TYPE_INVALID (or no data_type)");
  } else if (from.data_type() == inference::TYPE_STRING) {
    defects.Field(field + ".data_type",
                  "a numeric type: text reaches a model through the tokenizer of its kiln.pbtxt, "
                  "which adds the TYPE_STRING input itself",
                  "TYPE_STRING on " + Quoted(from.name()));
    tensor->set_data_type(TYPE_INVALID);
  } else if (tensor->data_type() == TYPE_INVALID) {
    defects.Field(field + ".data_type", "a type LibTorch holds (not TYPE_UINT16/32/64)",
                  inference::DataType_Name(from.data_type()));
  }
  tensor->mutable_dims()->CopyFrom(from.dims());
  if (from.has_reshape()) {
    tensor->mutable_reshape()->mutable_shape()->CopyFrom(from.reshape().shape());
  }
}

// Triton's label file: `file` in `model_dir`, one label per line (a trailing newline ends the last
// one; "\r\n" line ends are read as "\n"), into output.labels.
void ReadLabels(const std::string& model_dir, const std::string& file, const std::string& field,
                TensorConfig& output, Defects& defects) {
  const fs::path path = fs::path(model_dir) / file;
  std::error_code error;
  const uintmax_t bytes = fs::file_size(path, error);
  if (!IsRegularFile(path) || error) {
    defects.Field(field, "a file in " + model_dir, Quoted(file));
    return;
  }
  if (bytes > kMaxLabelFileBytes) {
    defects.Field(field, absl::StrCat("a label file of at most ", kMaxLabelFileBytes, " bytes"),
                  absl::StrCat(Quoted(file), " of ", bytes));
    return;
  }
  std::ifstream in(path, std::ios::binary);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    output.add_labels(line);
  }
  if (in.bad()) defects.Field(field, "a readable file", Quoted(file));
}

void TranslateInstances(const inference::ModelConfig& triton, ModelConfig* config,
                        Defects& defects) {
  InstanceConfig& group = *config->mutable_instance_group();
  group.set_kind(InstanceConfig::KIND_CPU);
  if (triton.instance_group().empty()) return;  // count 0: the master chooses
  std::set<InstanceConfig::Kind> kinds;
  int64_t count = 0;
  for (int i = 0; i < triton.instance_group_size(); ++i) {
    const inference::ModelInstanceGroup& from = triton.instance_group(i);
    const std::string field = Indexed("instance_group", i);
    InstanceConfig::Kind kind = InstanceConfig::KIND_CPU;
    switch (from.kind()) {
      case inference::ModelInstanceGroup::KIND_GPU:
        kind = InstanceConfig::KIND_GPU;
        break;
      case inference::ModelInstanceGroup::KIND_AUTO:  // GPU where it names GPUs, else the CPU
        kind = from.gpus().empty() ? InstanceConfig::KIND_CPU : InstanceConfig::KIND_GPU;
        break;
      case inference::ModelInstanceGroup::KIND_CPU:
        break;
      default:
        defects.Field(field + ".kind", "KIND_CPU, KIND_GPU or KIND_AUTO",
                      inference::ModelInstanceGroup::Kind_Name(from.kind()));
    }
    kinds.insert(kind);
    if (kind == InstanceConfig::KIND_CPU && !from.gpus().empty()) {
      defects.Field(field + ".gpus", "no gpus with kind KIND_CPU",
                    absl::StrCat("[", absl::StrJoin(from.gpus(), ", "), "]"));
    }
    for (int g = 0; g < from.gpus_size(); ++g) {
      if (from.gpus(g) < 0) {
        defects.Field(Indexed(field + ".gpus", g), "a CUDA device id >= 0", from.gpus(g));
      }
      group.add_gpus(from.gpus(g));
    }
    // As in Triton: a group without a count has 1 instance, per GPU it names.
    const int64_t instances = from.count() == 0 ? 1 : from.count();
    if (instances < 0 || instances > kMaxInstances) {
      defects.Field(field + ".count", absl::StrCat("a count in [1, ", kMaxInstances, "]"),
                    from.count());
    } else {
      count += instances * std::max(1, from.gpus_size());
    }
  }
  if (count > kMaxInstances) {
    defects.Field("instance_group",
                  absl::StrCat("at most ", kMaxInstances, " instances in all (count x gpus)"),
                  count);
    count = 0;
  }
  if (kinds.size() > 1) {
    defects.Field("instance_group", "groups of one kind (a model is served on the CPU or on GPUs)",
                  "KIND_CPU and KIND_GPU");
  }
  group.set_kind(*kinds.rbegin());
  group.set_count(static_cast<int32_t>(count));
}

// A boolean parameter of the PyTorch backend ("true"/"false", any case; also yes/no, 1/0).
bool BoolParameter(const std::string& key, const std::string& value, bool fallback,
                   Defects& defects) {
  bool parsed = fallback;
  if (!absl::SimpleAtob(value, &parsed)) {
    defects.Field(absl::StrCat("parameters[", Quoted(key), "]"), "\"true\" or \"false\"",
                  Quoted(value));
  }
  return parsed;
}

// The PyTorch backend's parameters (its README), as they apply to kiln's CPU workers.
void TranslateParameters(const inference::ModelConfig& triton, ModelConfig* config,
                         Defects& defects, std::vector<std::string>* notes) {
  TorchOptions& torch = *config->mutable_torch();
  torch.set_jit_executor(true);
  torch.set_jit_profiling(true);
  torch.set_tensor_fuser(true);
  std::vector<std::string> unused;
  for (const auto& [key, parameter] : triton.parameters()) {
    const std::string& value = parameter.string_value();
    if (key == "INTRA_OP_THREAD_COUNT") {
      int32_t threads = 0;
      if (!absl::SimpleAtoi(value, &threads) || threads < 1) {
        defects.Field("parameters[\"INTRA_OP_THREAD_COUNT\"]", "a thread count >= 1",
                      Quoted(value));
      } else {
        config->mutable_instance_group()->set_intra_op_threads(threads);
      }
    } else if (key == "INFERENCE_MODE") {
      torch.set_inference_mode(BoolParameter(key, value, false, defects));
    } else if (key == "DISABLE_OPTIMIZED_EXECUTION") {
      torch.set_disable_optimized_execution(BoolParameter(key, value, false, defects));
    } else if (key == "ENABLE_JIT_EXECUTOR") {
      torch.set_jit_executor(BoolParameter(key, value, true, defects));
    } else if (key == "ENABLE_JIT_PROFILING") {
      torch.set_jit_profiling(BoolParameter(key, value, true, defects));
    } else if (key == "ENABLE_TENSOR_FUSER") {
      torch.set_tensor_fuser(BoolParameter(key, value, true, defects));
    } else if (key == "ENABLE_WEIGHT_SHARING") {
      BoolParameter(key, value, true, defects);
      notes->push_back(
          "parameters[\"ENABLE_WEIGHT_SHARING\"]: kiln's workers always share the weights");
    } else if (key == "INTER_OP_THREAD_COUNT" || key == "ENABLE_NVFUSER" ||
               key == "ENABLE_CACHE_CLEANING") {
      notes->push_back(absl::StrCat("parameters[\"", key,
                                    "\"]: no effect in kiln's workers (one forward pass at a "
                                    "time, on the CPU)"));
    } else {
      unused.push_back(key);
    }
  }
  if (!unused.empty()) {
    notes->push_back(absl::StrCat("parameters ", absl::StrJoin(unused, ", "),
                                  ": not a parameter of the PyTorch backend; unused"));
  }
}

void TranslateVersionPolicy(const inference::ModelVersionPolicy& from, VersionPolicy* to) {
  if (from.has_all()) {
    to->mutable_all();
  } else if (from.has_specific()) {
    to->mutable_specific()->mutable_versions()->CopyFrom(from.specific().versions());
  } else {
    to->mutable_latest()->set_num_versions(
        from.has_latest() && from.latest().num_versions() > 0 ? from.latest().num_versions() : 1);
  }
}

// A queue policy's bound on waiting requests: its max_queue_size, or kiln's default where
// Triton's 0 means unbounded.
int32_t QueueBound(const inference::ModelQueuePolicy& policy) {
  return policy.max_queue_size() > 0
             ? static_cast<int32_t>(std::min<uint32_t>(policy.max_queue_size(), INT32_MAX))
             : kDefaultMaxQueueSize;
}

// Triton's priority levels and queue policies into batching.levels (one level without
// priority_levels), each level's policy priority_queue_policy[level] or default_queue_policy.
void TranslatePriorities(const inference::ModelDynamicBatching& from,
                         DynamicBatchingConfig& batching, Defects& defects) {
  constexpr uint64_t kMaxLevels = 64;  // a queue each: more is no policy anyone means
  constexpr uint64_t kMaxTimeoutUs = uint64_t{3600} * 1'000'000;  // an hour
  if (from.priority_levels() > kMaxLevels) {
    defects.Field("dynamic_batching.priority_levels", absl::StrCat("at most ", kMaxLevels),
                  from.priority_levels());
  }
  const int levels = static_cast<int>(std::clamp<uint64_t>(from.priority_levels(), 1, kMaxLevels));
  if (from.priority_levels() > 0 && (from.default_priority_level() < 1 ||
                                     from.default_priority_level() > from.priority_levels())) {
    defects.Field("dynamic_batching.default_priority_level",
                  absl::StrCat("a level in [1, priority_levels=", from.priority_levels(), "]"),
                  from.default_priority_level());
  } else if (from.priority_levels() == 0 && from.default_priority_level() > 0) {
    defects.Field("dynamic_batching.default_priority_level", "none without priority_levels",
                  from.default_priority_level());
  }
  batching.set_default_priority_level(
      static_cast<int32_t>(std::clamp<uint64_t>(from.default_priority_level(), 1, levels)));
  for (const auto& [level, policy] : from.priority_queue_policy()) {
    if (level < 1 || level > from.priority_levels()) {
      defects.Field(absl::StrCat("dynamic_batching.priority_queue_policy[", level, "]"),
                    absl::StrCat("a level in [1, priority_levels=", from.priority_levels(), "]"),
                    level);
    }
  }
  batching.clear_levels();
  for (int level = 1; level <= levels; ++level) {
    const auto found = from.priority_queue_policy().find(static_cast<uint64_t>(level));
    const inference::ModelQueuePolicy& policy =
        found != from.priority_queue_policy().end() ? found->second : from.default_queue_policy();
    const std::string field =
        found != from.priority_queue_policy().end()
            ? absl::StrCat("dynamic_batching.priority_queue_policy[", level, "]")
            : "dynamic_batching.default_queue_policy";
    if (policy.default_timeout_microseconds() > kMaxTimeoutUs) {
      defects.Field(field + ".default_timeout_microseconds",
                    absl::StrCat("a timeout of at most an hour (", kMaxTimeoutUs, ")"),
                    policy.default_timeout_microseconds());
    }
    DynamicBatchingConfig::QueuePolicy& resolved = *batching.add_levels();
    resolved.set_delay_on_timeout(policy.timeout_action() == inference::ModelQueuePolicy::DELAY);
    resolved.set_default_timeout_us(
        static_cast<int64_t>(std::min(policy.default_timeout_microseconds(), kMaxTimeoutUs)));
    resolved.set_allow_timeout_override(policy.allow_timeout_override());
    resolved.set_max_queue_size(QueueBound(policy));
  }
}

void TranslateBatching(const inference::ModelConfig& triton, ModelConfig* config, Defects& defects,
                       std::vector<std::string>* notes) {
  DynamicBatchingConfig& batching = *config->mutable_dynamic_batching();
  batching.set_enabled(triton.has_dynamic_batching());
  const inference::ModelDynamicBatching& from = triton.dynamic_batching();
  constexpr uint64_t kMaxDelayUs = uint64_t{3600} * 1'000'000;  // an hour
  if (from.max_queue_delay_microseconds() > kMaxDelayUs) {
    defects.Field("dynamic_batching.max_queue_delay_microseconds",
                  absl::StrCat("a delay of at most an hour (", kMaxDelayUs, ")"),
                  from.max_queue_delay_microseconds());
  }
  batching.set_max_queue_delay_us(
      static_cast<int64_t>(std::min(from.max_queue_delay_microseconds(), kMaxDelayUs)));
  for (int i = 0; i < from.preferred_batch_size_size(); ++i) {
    const int32_t size = from.preferred_batch_size(i);
    if (size < 1 || (triton.max_batch_size() > 0 && size > triton.max_batch_size())) {
      defects.Field(Indexed("dynamic_batching.preferred_batch_size", i),
                    absl::StrCat("a size in [1, max_batch_size=", triton.max_batch_size(), "]"),
                    size);
    }
  }
  batching.set_max_queue_size(QueueBound(from.default_queue_policy()));
  batching.set_preserve_ordering(from.preserve_ordering());
  TranslatePriorities(from, batching, defects);
  if (!triton.has_dynamic_batching()) return;
  if (triton.max_batch_size() == 0) {
    notes->push_back(
        "dynamic_batching: max_batch_size is 0 (no batch dimension), so each request runs alone");
  }
}

// Records `given`'s input_data_file for `input` after checking that it is a file under
// <model_dir>/warmup/ that holds exactly one row at the sample's dims (`length` for the -1 dims).
void AddInputFile(const TensorConfig& input, const inference::ModelWarmup::Input& given,
                  const std::string& model_dir, const std::string& field, int64_t length,
                  WarmupConfig& warmup, Defects& defects) {
  const fs::path relative = fs::path(given.input_data_file()).lexically_normal();
  if (relative.is_absolute() || relative.empty() || *relative.begin() == "..") {
    defects.Field(field, "a file in the model's warmup/ directory",
                  Quoted(given.input_data_file()));
    return;
  }
  const fs::path path = fs::path(model_dir) / "warmup" / relative;
  std::error_code ec;
  const bool found = IsRegularFile(path);
  const uintmax_t size = found ? fs::file_size(path, ec) : 0;
  if (!found || ec) {
    defects.Field(field, "an existing file in " + (fs::path(model_dir) / "warmup").string(),
                  Quoted(given.input_data_file()));
    return;
  }
  std::vector<int64_t> row(given.dims().begin(), given.dims().end());
  for (int64_t& dim : row) dim = dim == -1 ? length : dim;
  const std::optional<DType> dtype = DTypeFromDataType(input.data_type());
  const std::optional<size_t> bytes =
      dtype.has_value() ? ByteSize(*dtype, row) : std::optional<size_t>();
  if (!bytes.has_value() || *bytes != size) {
    defects.Field(field,
                  absl::StrCat("one row of the input, ", bytes.value_or(0), " bytes (",
                               DataType_Name(input.data_type()), " ", DimsText(given.dims()), ")"),
                  absl::StrCat(size, " bytes in ", path.string()));
    return;
  }
  WarmupConfig::InputFile& file = (*warmup.mutable_input_files())[input.name()];
  if (!file.path().empty()) return;  // the first sample's file for this input
  file.set_path(path.string());
  file.set_sequence_length(static_cast<int32_t>(length));
}

}  // namespace

void RefuseUnsupportedTritonFields(const inference::ModelConfig& triton,
                                   const TextFormat::ParseInfoTree& locations, Defects& defects) {
  Walk(triton, &locations, "", defects);
}

void FromTritonConfig(const inference::ModelConfig& triton, const std::string& model_dir,
                      const std::string& dir_name, ModelConfig* config, Defects& defects,
                      std::vector<std::string>* notes) {
  config->set_name(triton.name().empty() ? dir_name : triton.name());
  if (config->name() != dir_name) {
    defects.Field("name", "the model directory's name " + Quoted(dir_name), Quoted(config->name()));
  }
  if (!triton.platform().empty() && triton.platform() != kTritonPlatform) {
    defects.Field("platform",
                  absl::StrCat(Quoted(kTritonPlatform), " (kiln serves TorchScript models)"),
                  Quoted(triton.platform()));
  }
  if (!triton.backend().empty() && triton.backend() != kTritonBackend) {
    defects.Field("backend",
                  absl::StrCat(Quoted(kTritonBackend), " (kiln serves TorchScript models)"),
                  Quoted(triton.backend()));
  }
  config->set_platform(kTritonPlatform);
  config->set_max_batch_size(triton.max_batch_size());

  int optional_inputs = 0;
  for (int i = 0; i < triton.input_size(); ++i) {
    const inference::ModelInput& from = triton.input(i);
    const std::string field = Indexed("input", i);
    TensorConfig& input = *config->add_input();
    TranslateTensor(from, field, &input, defects);
    if (from.optional()) {
      input.set_optional(true);
      ++optional_inputs;
      if (optional_inputs == kMaxOptionalInputs + 1) {
        defects.Field(field + ".optional",
                      absl::StrCat("at most ", kMaxOptionalInputs,
                                   " optional inputs (warmup runs every shape once per "
                                   "combination of them left out)"),
                      "a fifth");
      }
    }
    // As Triton checks it: an image format describes 3 dims (C, H, W or H, W, C).
    if (from.format() != inference::ModelInput::FORMAT_NONE && from.dims_size() != 3) {
      defects.Field(
          field + ".dims",
          absl::StrCat("3 dims for format ", inference::ModelInput::Format_Name(from.format())),
          DimsText(from.dims()));
    }
  }
  for (int i = 0; i < triton.output_size(); ++i) {
    const inference::ModelOutput& from = triton.output(i);
    const std::string field = Indexed("output", i);
    TensorConfig& output = *config->add_output();
    TranslateTensor(from, field, &output, defects);
    if (!from.label_filename().empty()) {
      ReadLabels(model_dir, from.label_filename(), field + ".label_filename", output, defects);
    }
  }
  TranslateInstances(triton, config, defects);
  TranslateParameters(triton, config, defects, notes);
  TranslateVersionPolicy(triton.version_policy(), config->mutable_version_policy());
  TranslateBatching(triton, config, defects, notes);

  const std::string& file = triton.default_model_filename();
  const bool bad_name = !file.empty() && !IsBareFileName(file);
  if (bad_name) {
    defects.Field("default_model_filename", "a file name in each version directory (no '/')",
                  Quoted(file));
  }
  config->set_model_filename(file.empty() || bad_name ? kModelFileName : file);
}

std::vector<int32_t> DefaultWarmupBatchSizes(const inference::ModelConfig& triton) {
  std::vector<int32_t> sizes = {1};
  const int32_t max = triton.max_batch_size();
  if (max > 1) {
    for (int32_t size : triton.dynamic_batching().preferred_batch_size()) {
      if (size > 1 && size < max) sizes.push_back(size);
    }
    sizes.push_back(max);
  }
  std::sort(sizes.begin(), sizes.end());
  sizes.erase(std::unique(sizes.begin(), sizes.end()), sizes.end());
  return sizes;
}

void AddTritonWarmup(const inference::ModelConfig& triton, const std::string& model_dir,
                     ModelConfig* config, Defects& defects) {
  WarmupConfig& warmup = *config->mutable_warmup();
  std::set<int32_t> batch_sizes(warmup.batch_sizes().begin(), warmup.batch_sizes().end());
  std::set<int32_t> lengths(warmup.sequence_lengths().begin(), warmup.sequence_lengths().end());
  const bool batched = config->max_batch_size() > 0;
  for (int s = 0; s < triton.model_warmup_size(); ++s) {
    const inference::ModelWarmup& sample = triton.model_warmup(s);
    const std::string field = Indexed("model_warmup", s);
    const int64_t batch = sample.batch_size();
    if (batched && (batch < 1 || batch > config->max_batch_size())) {
      defects.Field(field + ".batch_size",
                    absl::StrCat("a value in [1, max_batch_size=", config->max_batch_size(), "]"),
                    batch);
    } else if (!batched && batch > 1) {
      defects.Field(field + ".batch_size", "1 (or none) when max_batch_size is 0", batch);
    } else {
      batch_sizes.insert(static_cast<int32_t>(std::max<int64_t>(batch, 1)));
    }
    for (const TensorConfig& input : config->input()) {
      auto found = sample.inputs().find(input.name());
      if (found == sample.inputs().end()) {
        // An optional input may be left out: warmup runs every shape with and without it.
        if (!input.optional()) {
          defects.Field(field + ".inputs",
                        absl::StrCat("an entry for input ", Quoted(input.name())), "none");
        }
        continue;
      }
      const inference::ModelWarmup::Input& given = found->second;
      const std::string at = absl::StrCat(field, ".inputs[", Quoted(input.name()), "]");
      if (FromTritonDataType(given.data_type()) != input.data_type()) {
        defects.Field(at + ".data_type", DataType_Name(input.data_type()),
                      inference::DataType_Name(given.data_type()));
      }
      if (given.dims_size() != input.dims_size()) {
        defects.Field(at + ".dims", absl::StrCat(input.dims_size(), " dims, as the input's"),
                      DimsText(given.dims()));
        continue;
      }
      std::set<int64_t> variable;  // what the sample gives the -1 dims
      for (int d = 0; d < input.dims_size(); ++d) {
        if (input.dims(d) == -1) {
          variable.insert(given.dims(d));
        } else if (given.dims(d) != input.dims(d)) {
          defects.Field(at + ".dims", absl::StrCat("the input's dims ", DimsText(input.dims())),
                        DimsText(given.dims()));
          break;
        }
      }
      if (variable.size() > 1 ||
          (!variable.empty() && (*variable.begin() < 1 || *variable.begin() > INT32_MAX))) {
        defects.Field(at + ".dims", "one length in [1, 2^31-1] for every variable (-1) dim",
                      DimsText(given.dims()));
      } else if (!variable.empty() && config->has_tokenizer() &&
                 *variable.begin() > config->tokenizer().max_length()) {
        defects.Field(at + ".dims",
                      absl::StrCat("a length of at most the tokenizer's max_length=",
                                   config->tokenizer().max_length()),
                      DimsText(given.dims()));
      } else if (!variable.empty()) {
        lengths.insert(static_cast<int32_t>(*variable.begin()));
      }
      if (given.random_data()) warmup.set_data(WarmupConfig::DATA_RANDOM);
      if (!given.input_data_file().empty()) {
        AddInputFile(input, given, model_dir, at + ".input_data_file",
                     variable.size() == 1 ? *variable.begin() : 0, warmup, defects);
      }
    }
    for (const auto& [name, given] : sample.inputs()) {
      const auto& inputs = config->input();
      if (std::none_of(inputs.begin(), inputs.end(), [&name = name](const TensorConfig& input) {
            return input.name() == name;
          })) {
        defects.Field(field + ".inputs", "names of the config's inputs", Quoted(name));
      }
    }
    if (static_cast<int32_t>(sample.count()) > warmup.calls_per_shape()) {
      warmup.set_calls_per_shape(static_cast<int32_t>(sample.count()));
    }
  }
  warmup.clear_batch_sizes();
  warmup.mutable_batch_sizes()->Add(batch_sizes.begin(), batch_sizes.end());
  warmup.clear_sequence_lengths();
  warmup.mutable_sequence_lengths()->Add(lengths.begin(), lengths.end());
}

DataType FromTritonDataType(inference::DataType type) {
  if (type == inference::TYPE_STRING) return TYPE_BYTES;
  DataType kiln = TYPE_INVALID;
  return DataType_Parse(inference::DataType_Name(type), &kiln) ? kiln : TYPE_INVALID;
}

inference::DataType TritonDataType(DataType type) {
  if (type == TYPE_BYTES) return inference::TYPE_STRING;
  inference::DataType triton = inference::TYPE_INVALID;
  return inference::DataType_Parse(DataType_Name(type), &triton) ? triton : inference::TYPE_INVALID;
}

}  // namespace kiln
