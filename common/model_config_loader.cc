#include "common/model_config_loader.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "common/config_defects.h"
#include "common/status_macros.h"
#include "common/text_proto_file.h"
#include "common/triton_config.h"
#include "glog/logging.h"
#include "google/protobuf/text_format.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;

bool HasVariableDim(const TensorConfig& tensor) {
  return std::find(tensor.dims().begin(), tensor.dims().end(), -1) != tensor.dims().end();
}

// Checks one list of inputs or outputs (`kind` is "input" or "output").
void CheckTensors(const google::protobuf::RepeatedPtrField<TensorConfig>& tensors,
                  absl::string_view kind, const ModelConfig& config, Defects& defects) {
  if (tensors.empty()) {
    defects.Field(kind, "at least one tensor", "none");
    return;
  }
  std::set<std::string> names;
  for (int i = 0; i < tensors.size(); ++i) {
    const TensorConfig& tensor = tensors[i];
    const std::string field = Indexed(kind, i);
    if (tensor.name().empty()) {
      defects.Field(field + ".name", "a non-empty name", "\"\"");
    } else if (!names.insert(tensor.name()).second) {
      defects.Field(field + ".name", "a name unique among the model's " + std::string(kind) + "s",
                    Quoted(tensor.name()) + " twice");
    }
    // data_type is checked where it is translated (TranslateTensor, common/triton_config.cc),
    // which knows whether a TYPE_INVALID here was no type, TYPE_STRING or a type LibTorch lacks.
    if (tensor.dims().empty() && config.max_batch_size() == 0) {
      defects.Field(field + ".dims", "at least one dimension when max_batch_size is 0", "[]");
    }
    for (int d = 0; d < tensor.dims().size(); ++d) {
      const int64_t dim = tensor.dims(d);
      if (dim <= 0 && dim != -1) {
        defects.Field(Indexed(field + ".dims", d), "a positive size or -1 (variable)", dim);
      }
    }
  }
}

// Checks a list of positive sizes: each >= 1 and <= `max` (when max > 0), strictly increasing.
void CheckSizes(const google::protobuf::RepeatedField<int32_t>& sizes, absl::string_view field,
                int64_t max, absl::string_view max_name, Defects& defects) {
  for (int i = 0; i < sizes.size(); ++i) {
    const int32_t size = sizes[i];
    if (size < 1 || (max > 0 && size > max)) {
      const std::string expected = max > 0
                                       ? absl::StrCat("a value in [1, ", max_name, "=", max, "]")
                                       : std::string("a value >= 1");
      defects.Field(Indexed(field, i), expected, size);
    } else if (i > 0 && size <= sizes[i - 1]) {
      defects.Field(Indexed(field, i),
                    absl::StrCat("sizes in increasing order, each once (after ", sizes[i - 1], ")"),
                    size);
    }
  }
}

// kiln.pbtxt's warmup (checked against `defects`, kiln.pbtxt's) with its defaults; then
// config.pbtxt's model_warmup samples join it (checked against `triton_defects`).
void ResolveWarmup(const inference::ModelConfig& triton, const std::string& model_dir,
                   ModelConfig& config, Defects& defects, Defects& triton_defects) {
  WarmupConfig& warmup = *config.mutable_warmup();
  if (!warmup.has_enabled()) warmup.set_enabled(true);
  if (!warmup.has_pad_to_warmed()) warmup.set_pad_to_warmed(true);

  const int32_t max_batch = config.max_batch_size();
  if (max_batch == 0) {
    for (int i = 0; i < warmup.batch_sizes().size(); ++i) {
      if (warmup.batch_sizes(i) != 1) {
        defects.Field(Indexed("warmup.batch_sizes", i),
                      "no batch sizes other than 1 when max_batch_size is 0",
                      warmup.batch_sizes(i));
      }
    }
  } else {
    CheckSizes(warmup.batch_sizes(), "warmup.batch_sizes", max_batch, "max_batch_size", defects);
  }
  if (warmup.batch_sizes().empty()) {
    const std::vector<int32_t> sizes = DefaultWarmupBatchSizes(triton);
    warmup.mutable_batch_sizes()->Add(sizes.begin(), sizes.end());
  }

  const int64_t max_length = config.has_tokenizer() ? config.tokenizer().max_length() : 0;
  CheckSizes(warmup.sequence_lengths(), "warmup.sequence_lengths", max_length,
             "tokenizer.max_length", defects);
  if (!warmup.sequence_lengths().empty() && !HasVariableDim(config)) {
    defects.Field("warmup.sequence_lengths",
                  "none: no input has a variable (-1) dimension for a length to fill",
                  absl::StrCat("[", absl::StrJoin(warmup.sequence_lengths(), ", "), "]"));
  }
  if (warmup.sequence_lengths().empty() && config.has_tokenizer()) {
    warmup.add_sequence_lengths(config.tokenizer().max_length());
  }

  if (warmup.calls_per_shape() < 0) {
    defects.Field("warmup.calls_per_shape",
                  absl::StrCat("a count >= 1 (0 = default ", kDefaultWarmupCallsPerShape, ")"),
                  warmup.calls_per_shape());
  }
  if (warmup.calls_per_shape() <= 0) warmup.set_calls_per_shape(kDefaultWarmupCallsPerShape);
  if (warmup.settle_tolerance() == 0) warmup.set_settle_tolerance(kDefaultWarmupSettleTolerance);
  if (!(warmup.settle_tolerance() > 0 && warmup.settle_tolerance() <= 1)) {
    defects.Field("warmup.settle_tolerance", "a fraction in (0, 1]", warmup.settle_tolerance());
  }
  if (warmup.steady_calls() < 0) {
    defects.Field("warmup.steady_calls", "a count >= 1 (0 = default 2)", warmup.steady_calls());
  }
  if (warmup.steady_calls() <= 0) warmup.set_steady_calls(kDefaultWarmupSteadyCalls);

  if (!warmup.input_files().empty()) {
    defects.Field("warmup.input_files",
                  "none: warmup data files are config.pbtxt's model_warmup input_data_file",
                  warmup.input_files().begin()->first);
    warmup.clear_input_files();
  }
  AddTritonWarmup(triton, model_dir, &config, triton_defects);  // may raise calls_per_shape

  if (warmup.max_calls_per_shape() == 0) {
    warmup.set_max_calls_per_shape(
        std::max(kDefaultWarmupMaxCallsPerShape, warmup.calls_per_shape()));
  }
  if (warmup.max_calls_per_shape() < warmup.calls_per_shape()) {
    defects.Field("warmup.max_calls_per_shape",
                  absl::StrCat("a count >= calls_per_shape=", warmup.calls_per_shape()),
                  warmup.max_calls_per_shape());
  }
  if (warmup.sequence_lengths().empty()) {
    for (const TensorConfig& input : config.input()) {
      if (HasVariableDim(input)) {
        defects.Field("warmup.sequence_lengths",
                      absl::StrCat("at least one length (here, or as the dims of config.pbtxt's "
                                   "model_warmup), since input ",
                                   Quoted(input.name()), " has a variable (-1) dimension"),
                      "none");
        break;
      }
    }
  }
}

void ResolveMemory(ModelConfig& config, Defects& defects) {
  MemoryConfig& memory = *config.mutable_memory();
  if (memory.limit_bytes() < 0) {
    defects.Field("memory.limit_bytes", "a byte count >= 0 (0 = from cgroup_share)",
                  memory.limit_bytes());
  }
  if (memory.cgroup_share() == 0) memory.set_cgroup_share(kDefaultCgroupShare);
  if (!(memory.cgroup_share() > 0 && memory.cgroup_share() <= 1)) {
    defects.Field("memory.cgroup_share", "a fraction in (0, 1]", memory.cgroup_share());
  }
  if (memory.headroom_bytes() < 0) {
    defects.Field("memory.headroom_bytes", "a byte count >= 0", memory.headroom_bytes());
  }
}

void ResolveSupervision(ModelConfig& config, Defects& defects) {
  const double timeout = config.supervision().compute_timeout_ms();
  if (!(timeout >= 0) || std::isinf(timeout)) {
    defects.Field("supervision.compute_timeout_ms", "a duration > 0 ms (0 = derived from warmup)",
                  timeout);
  }
}

void ResolveReadiness(ModelConfig& config, Defects& defects) {
  ReadinessConfig& readiness = *config.mutable_readiness();
  // 0 stays 0 ("all"): the worker count may be chosen only when the server starts.
  const int32_t count = config.instance_group().count();
  if (readiness.quorum() < 0 || (count > 0 && readiness.quorum() > count)) {
    defects.Field("readiness.quorum",
                  count > 0 ? absl::StrCat("a worker count in [1, instance_group.count=", count,
                                           "] (0 = all)")
                            : std::string("a worker count >= 1 (0 = all)"),
                  readiness.quorum());
  }
  // At most the quorum (all the workers when that is 0), where it is known before startup.
  const int32_t most = readiness.quorum() > 0 ? readiness.quorum() : count;
  if (readiness.min_ready() < 0 || (most > 0 && readiness.min_ready() > most)) {
    defects.Field("readiness.min_ready",
                  "a worker count >= 1, at most readiness.quorum (0 = default 1)",
                  readiness.min_ready());
  }
  if (readiness.min_ready() <= 0) readiness.set_min_ready(kDefaultReadinessMinReady);
  // 0 stays 0: sized by the warmed shapes and the workers, when the check runs.
  if (readiness.check_requests() < 0) {
    defects.Field("readiness.check_requests",
                  "a count >= 1 (0 = default: one per worker and one per other warmed shape)",
                  readiness.check_requests());
  }
  if (readiness.check_concurrency() < 0) {
    defects.Field("readiness.check_concurrency",
                  "a count >= 1 (0 = default: as many as the model's workers)",
                  readiness.check_concurrency());
  }
  if (readiness.max_p95_factor() == 0) readiness.set_max_p95_factor(kDefaultReadinessMaxP95Factor);
  if (!(readiness.max_p95_factor() >= 1.0)) {
    defects.Field("readiness.max_p95_factor", "a factor >= 1.0", readiness.max_p95_factor());
  }
  if (readiness.check_allowance_ms() == 0) {
    readiness.set_check_allowance_ms(kDefaultReadinessCheckAllowanceMs);
  }
  if (!(readiness.check_allowance_ms() > 0)) {
    defects.Field("readiness.check_allowance_ms", "a duration > 0 ms",
                  readiness.check_allowance_ms());
  }
}

// Must run before the tensors and warmup are checked: they depend on its resolved names.
void ResolveTokenizerDefaults(ModelConfig& config, Defects& defects) {
  if (!config.has_tokenizer()) return;
  TokenizerConfig& tokenizer = *config.mutable_tokenizer();
  if (tokenizer.max_length() < 0) {
    defects.Field("tokenizer.max_length", "a length >= 1 (0 = default 128)",
                  tokenizer.max_length());
  }
  if (tokenizer.max_length() <= 0) tokenizer.set_max_length(kDefaultTokenizerMaxLength);
  if (tokenizer.pad_id() < 0) defects.Field("tokenizer.pad_id", "an id >= 0", tokenizer.pad_id());
  if (tokenizer.text_input().empty()) tokenizer.set_text_input("text");
  if (tokenizer.ids_input().empty()) tokenizer.set_ids_input("input_ids");
  if (tokenizer.mask_input().empty()) tokenizer.set_mask_input("attention_mask");
}

// The tokenizer's model file and the inputs it feeds; returns the file's path ("" if none).
std::string CheckTokenizer(const ModelConfig& config, const std::string& version_dir,
                           Defects& defects) {
  if (!config.has_tokenizer()) return "";
  const TokenizerConfig& tokenizer = config.tokenizer();
  const std::pair<const char*, const std::string*> fed[] = {
      {"tokenizer.ids_input", &tokenizer.ids_input()},
      {"tokenizer.mask_input", &tokenizer.mask_input()}};
  for (const TensorConfig& input : config.input()) {
    if (input.name() != tokenizer.ids_input() && input.name() != tokenizer.mask_input()) {
      defects.Field("tokenizer",
                    "a model whose inputs are only the tokenizer's ids_input and "
                    "mask_input (it fills both from the text)",
                    "another input " + Quoted(input.name()));
    }
  }
  if (FindInput(config, tokenizer.text_input()) != nullptr) {
    defects.Field("tokenizer.text_input", "a name that is not one of the model's inputs",
                  Quoted(tokenizer.text_input()));
  }
  for (const auto& [field, name] : fed) {
    const TensorConfig* input = FindInput(config, *name);
    if (input == nullptr) {
      defects.Field(field, "the name of one of the model's inputs", Quoted(*name));
    } else if (input->data_type() != TYPE_INT64 && input->data_type() != TYPE_INT32) {
      defects.Field(field, "an input of TYPE_INT64 or TYPE_INT32",
                    Quoted(*name) + " of " + DataType_Name(input->data_type()));
    } else if (!HasVariableDim(*input)) {
      defects.Field(
          field, "an input with a variable (-1) dimension: the tokenizer sets the length",
          absl::StrCat(Quoted(*name), " of dims [", absl::StrJoin(input->dims(), ", "), "]"));
    }
  }
  if (tokenizer.model_file().empty()) {
    defects.Field("tokenizer.model_file", "a SentencePiece model file name", "\"\"");
    return "";
  }
  if (!IsBareFileName(tokenizer.model_file())) {
    defects.Field("tokenizer.model_file", "a file name in the version directory (no '/')",
                  Quoted(tokenizer.model_file()));
    return "";
  }
  const fs::path path = fs::path(version_dir) / tokenizer.model_file();
  if (!IsRegularFile(path)) {
    defects.Field("tokenizer.model_file", "an existing file in " + version_dir,
                  Quoted(tokenizer.model_file()));
  }
  return path.string();
}

// The numbered subdirectories of `model_dir` (versions >= 1), ascending.
std::vector<int64_t> VersionDirectories(const fs::path& model_dir) {
  std::vector<int64_t> versions;
  std::error_code ec;
  for (const fs::directory_entry& entry : fs::directory_iterator(model_dir, ec)) {
    int64_t version = 0;
    if (entry.is_directory(ec) && absl::SimpleAtoi(entry.path().filename().string(), &version) &&
        version >= 1) {
      versions.push_back(version);
    }
  }
  std::sort(versions.begin(), versions.end());
  return versions;
}

// The versions `config` asks to serve out of `present` (ascending), with a defect for each one
// it names that is not there.
std::vector<int64_t> ServedVersions(const ModelConfig& config, const std::string& model_dir,
                                    const std::vector<int64_t>& present, Defects& defects) {
  const VersionPolicy& policy = config.version_policy();
  std::vector<int64_t> wanted;
  if (policy.has_all()) {
    wanted = present;
  } else if (policy.has_specific()) {
    if (policy.specific().versions().empty()) {
      defects.Field("version_policy.specific.versions", "at least one version", "none");
    }
    for (int64_t version : policy.specific().versions()) {
      if (version < 1) {
        defects.Field("version_policy.specific.versions", "versions >= 1", version);
        return {};
      }
      wanted.push_back(version);
    }
    std::sort(wanted.begin(), wanted.end());
    wanted.erase(std::unique(wanted.begin(), wanted.end()), wanted.end());
  } else {
    const size_t latest = policy.has_latest() && policy.latest().num_versions() > 0
                              ? policy.latest().num_versions()
                              : 1;
    wanted.assign(present.end() - std::min(latest, present.size()), present.end());
  }
  if (present.empty()) {
    defects.Add(absl::StrCat("no version directory (e.g. ", model_dir, "/1) holds the model"));
    return {};
  }
  std::vector<int64_t> served;
  for (int64_t version : wanted) {
    if (std::binary_search(present.begin(), present.end(), version)) {
      served.push_back(version);
    } else {
      defects.Add(absl::StrCat("version directory ",
                               (fs::path(model_dir) / std::to_string(version)).string(),
                               " does not exist"));
    }
  }
  return served;
}

// "<dev>:<inode>:<size>:<mtime ns>;" per existing file of `paths` (after symlinks).
std::string FileStamps(const std::vector<std::string>& paths) {
  std::string stamps;
  for (const std::string& path : paths) {
    struct stat st;
    if (path.empty() || stat(path.c_str(), &st) != 0) continue;
    absl::StrAppend(&stamps, st.st_dev, ":", st.st_ino, ":", st.st_size, ":",
                    static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec,
                    ";");
  }
  return stamps;
}

// "models/mlp/" -> "mlp".
std::string BaseName(const std::string& dir) {
  fs::path path = fs::path(dir).lexically_normal();
  if (path.filename().empty()) path = path.parent_path();
  return path.filename().string();
}

// Reads kiln.pbtxt into `settings` when the model has one; its path, or "" when it has none.
absl::StatusOr<std::string> ReadSettings(const std::string& model_dir, ModelSettings* settings) {
  const fs::path path = fs::path(model_dir) / kSettingsFileName;
  std::error_code ec;
  if (!fs::exists(path, ec)) return std::string();
  RETURN_IF_ERROR(ParseTextProtoFile(path.string(), settings));
  return path.string();
}

}  // namespace

std::string ModelKey(const std::string& name, int64_t version) {
  return absl::StrCat(name, ":", version);
}

absl::StatusOr<std::vector<ModelSpec>> LoadModelVersions(const std::string& model_dir) {
  ModelSpec spec;
  spec.directory = model_dir;
  spec.config_path = (fs::path(model_dir) / kConfigFileName).string();
  google::protobuf::TextFormat::ParseInfoTree locations;
  RETURN_IF_ERROR(ParseTextProtoFile(spec.config_path, &spec.triton, &locations));
  ModelSettings settings;
  ASSIGN_OR_RETURN(spec.settings_path, ReadSettings(model_dir, &settings));
  Defects defects(spec.config_path);
  Defects kiln_defects(spec.settings_path.empty()
                           ? (fs::path(model_dir) / kSettingsFileName).string()
                           : spec.settings_path);
  RefuseUnsupportedTritonFields(spec.triton, locations, defects);

  ModelConfig& config = spec.config;
  FromTritonConfig(spec.triton, model_dir, BaseName(model_dir), &config, defects, &spec.notes);
  if (config.max_batch_size() < 0) {
    defects.Field("max_batch_size", "a size >= 0 (0 = no batch dimension)",
                  config.max_batch_size());
  }
  *config.mutable_warmup() = settings.warmup();
  *config.mutable_memory() = settings.memory();
  *config.mutable_readiness() = settings.readiness();
  *config.mutable_supervision() = settings.supervision();
  if (settings.has_tokenizer()) *config.mutable_tokenizer() = settings.tokenizer();

  ResolveTokenizerDefaults(config, kiln_defects);
  CheckTensors(config.input(), "input", config, defects);
  CheckTensors(config.output(), "output", config, defects);
  ResolveWarmup(spec.triton, model_dir, config, kiln_defects, defects);
  ResolveMemory(config, kiln_defects);
  ResolveReadiness(config, kiln_defects);
  ResolveSupervision(config, kiln_defects);

  std::vector<ModelSpec> specs;
  for (int64_t version :
       ServedVersions(config, model_dir, VersionDirectories(model_dir), defects)) {
    ModelSpec& served = specs.emplace_back(spec);
    served.version = version;
    served.config.set_version(version);
    served.version_dir = (fs::path(model_dir) / std::to_string(version)).string();
    served.model_path = (fs::path(served.version_dir) / config.model_filename()).string();
    if (!IsRegularFile(served.model_path)) {
      defects.Add(absl::StrCat("model file ", served.model_path, " does not exist"));
    }
    const fs::path weights = fs::path(served.version_dir) / kWeightsFileName;
    if (IsRegularFile(weights)) served.weights_path = weights.string();
    served.tokenizer_path = CheckTokenizer(config, served.version_dir, kiln_defects);
    served.stamp = FileStamps({served.config_path, served.settings_path, served.model_path,
                               served.weights_path, served.tokenizer_path});
  }
  defects.Append(kiln_defects);
  if (!defects.empty()) return defects.ToStatus();
  return specs;
}

void LogConfigNotes(const std::vector<ModelSpec>& specs) {
  std::set<std::string> logged;  // config.pbtxt paths: the notes are the model's, not a version's
  for (const ModelSpec& spec : specs) {
    if (!logged.insert(spec.config_path).second) continue;
    for (const std::string& note : spec.notes) {
      LOG(WARNING) << spec.config_path << " (" << spec.config.name() << "): " << note;
    }
  }
}

absl::StatusOr<ModelSpec> LoadModel(const std::string& model_dir) {
  ASSIGN_OR_RETURN(std::vector<ModelSpec> specs, LoadModelVersions(model_dir));
  return std::move(specs.back());
}

absl::StatusOr<std::map<std::string, absl::StatusOr<std::vector<ModelSpec>>>> ScanRepository(
    const std::string& repository) {
  std::error_code ec;
  if (!fs::is_directory(repository, ec)) {
    return absl::NotFoundError(
        absl::StrCat("model repository ", repository, " is not a directory"));
  }
  std::map<std::string, absl::StatusOr<std::vector<ModelSpec>>> models;
  for (const fs::directory_entry& entry : fs::directory_iterator(repository, ec)) {
    if (entry.is_directory(ec) && fs::is_regular_file(entry.path() / kConfigFileName, ec)) {
      models.emplace(entry.path().filename().string(), LoadModelVersions(entry.path().string()));
    }
  }
  if (ec) return absl::InternalError(absl::StrCat(repository, ": ", ec.message()));
  return models;
}

absl::StatusOr<std::vector<ModelSpec>> LoadModelRepository(const std::string& repository) {
  ASSIGN_OR_RETURN(const auto models, ScanRepository(repository));
  if (models.empty()) {
    return absl::NotFoundError(absl::StrCat("model repository ", repository,
                                            " holds no model (no <name>/", kConfigFileName, ")"));
  }
  std::vector<ModelSpec> specs;
  std::vector<std::string> errors;
  for (const auto& [name, versions] : models) {
    if (versions.ok()) {
      specs.insert(specs.end(), versions->begin(), versions->end());
    } else {
      errors.emplace_back(versions.status().message());
    }
  }
  if (!errors.empty()) return absl::InvalidArgumentError(absl::StrJoin(errors, "\n"));
  return specs;
}

const TensorConfig* FindInput(const ModelConfig& config, const std::string& name) {
  for (const TensorConfig& input : config.input()) {
    if (input.name() == name) return &input;
  }
  return nullptr;
}

bool HasVariableDim(const ModelConfig& config) {
  return std::any_of(config.input().begin(), config.input().end(),
                     [](const TensorConfig& input) { return HasVariableDim(input); });
}

}  // namespace kiln
