// The loader of a model repository in Triton's form (common/model_config_loader.h): Triton's
// config.pbtxt (common/triton_config.h) plus kiln's optional kiln.pbtxt.
#include "common/model_config_loader.h"

#include <catch2/catch.hpp>
#include <cctype>
#include <filesystem>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "tests/test_paths.h"

namespace kiln {
namespace {

using Catch::Matchers::Contains;
using kiln::testing::TempDir;

// One input and one output, as in the mlp demo model.
const std::string kIo = R"cfg(
  input [ { name: "input" data_type: TYPE_FP32 dims: [ 16 ] } ]
  output [ { name: "output" data_type: TYPE_FP32 dims: [ 4 ] } ]
)cfg";

// No name: it defaults to the directory's. No platform or backend: Triton infers one, and kiln
// serves TorchScript only.
const std::string kGoodConfig = "max_batch_size: 8\n" + kIo;

// The inputs and output of a text model fed by a tokenizer (kiln.pbtxt's tokenizer block).
const std::string kTextModelIo = R"cfg(
  input [
    { name: "input_ids" data_type: TYPE_INT64 dims: [ -1 ] },
    { name: "attention_mask" data_type: TYPE_INT64 dims: [ -1 ] }
  ]
  output [ { name: "logits" data_type: TYPE_FP32 dims: [ 3 ] } ]
)cfg";

// Writes <tmp>/<name>/config.pbtxt with `config`, <tmp>/<name>/kiln.pbtxt with `settings` unless
// that is empty, and, unless told otherwise, 1/model.pt.
std::string WriteModel(const TempDir& tmp, const std::string& name, const std::string& config,
                       const std::string& settings = "", bool with_model_file = true) {
  tmp.WriteFile(name + "/config.pbtxt", config);
  if (!settings.empty()) tmp.WriteFile(name + "/kiln.pbtxt", settings);
  if (with_model_file) tmp.WriteFile(name + "/1/model.pt", "torchscript bytes");
  return tmp.path() + "/" + name;
}

// Loads model "m" written with `config` and `settings`.
absl::StatusOr<ModelSpec> LoadM(const TempDir& tmp, const std::string& config,
                                const std::string& settings = "") {
  return LoadModel(WriteModel(tmp, "m", config, settings));
}

// The InvalidArgument message of loading model "m" written with `config` and `settings`.
std::string LoadError(const TempDir& tmp, const std::string& config,
                      const std::string& settings = "") {
  absl::StatusOr<ModelSpec> spec = LoadM(tmp, config, settings);
  REQUIRE_FALSE(spec.ok());
  CHECK(spec.status().code() == absl::StatusCode::kInvalidArgument);
  return std::string(spec.status().message());
}

template <typename T>
std::vector<T> Values(const google::protobuf::RepeatedField<T>& field) {
  return std::vector<T>(field.begin(), field.end());
}

// Whether `message` holds "<file>:<line>:<column>: ", a parse error's position.
bool HasParseErrorAt(const std::string& message, const std::string& file, int line) {
  const std::string prefix = absl::StrCat(file, ":", line, ":");
  for (size_t at = message.find(prefix); at != std::string::npos;
       at = message.find(prefix, at + 1)) {
    size_t end = at + prefix.size();
    while (end < message.size() && std::isdigit(static_cast<unsigned char>(message[end]))) ++end;
    if (end > at + prefix.size() && message.compare(end, 2, ": ") == 0) return true;
  }
  return false;
}

bool HasNoteContaining(const ModelSpec& spec, const std::string& part) {
  for (const std::string& note : spec.notes) {
    if (note.find(part) != std::string::npos) return true;
  }
  return false;
}

// ---- Defaults, explicit values, versions, tokenizer ----------------------------------------

TEST_CASE("a minimal config.pbtxt without kiln.pbtxt gets every default resolved", "[config]") {
  TempDir tmp;
  absl::StatusOr<ModelSpec> spec = LoadModel(WriteModel(tmp, "tiny", kGoodConfig));
  REQUIRE(spec.ok());
  const ModelConfig& config = spec->config;
  CHECK(config.name() == "tiny");
  CHECK(config.platform() == "pytorch_libtorch");
  CHECK(config.max_batch_size() == 8);
  REQUIRE(config.input_size() == 1);
  CHECK(config.input(0).name() == "input");
  CHECK(config.input(0).data_type() == TYPE_FP32);
  CHECK(Values(config.input(0).dims()) == std::vector<int64_t>{16});
  CHECK_FALSE(config.input(0).has_reshape());
  REQUIRE(config.output_size() == 1);
  CHECK(config.output(0).name() == "output");
  CHECK(config.instance_group().count() == 0);  // automatic: the master sizes it to its CPUs
  CHECK(config.instance_group().intra_op_threads() == 0);
  CHECK(config.instance_group().kind() == InstanceConfig::KIND_CPU);
  CHECK(config.instance_group().gpus().empty());
  CHECK(config.warmup().enabled());
  CHECK(Values(config.warmup().batch_sizes()) == std::vector<int32_t>{1, 8});
  CHECK(config.warmup().sequence_lengths().empty());
  CHECK(config.warmup().calls_per_shape() == kDefaultWarmupCallsPerShape);
  CHECK(config.warmup().settle_tolerance() == Approx(kDefaultWarmupSettleTolerance));
  CHECK(config.warmup().max_calls_per_shape() == kDefaultWarmupMaxCallsPerShape);
  CHECK(config.warmup().steady_calls() == kDefaultWarmupSteadyCalls);
  CHECK(config.warmup().data() == WarmupConfig::DATA_ZERO);
  CHECK(config.warmup().pad_to_warmed());
  CHECK_FALSE(config.dynamic_batching().enabled());  // no dynamic_batching block
  CHECK(config.dynamic_batching().max_queue_delay_us() == 0);
  CHECK(config.dynamic_batching().max_queue_size() == kDefaultMaxQueueSize);
  CHECK(config.memory().limit_bytes() == 0);
  CHECK(config.memory().cgroup_share() == Approx(kDefaultCgroupShare));
  CHECK(config.readiness().quorum() == 0);  // all, however many the master starts
  CHECK(config.readiness().min_ready() == kDefaultReadinessMinReady);
  CHECK(config.readiness().check_requests() == kDefaultReadinessCheckRequests);
  CHECK(config.readiness().check_concurrency() == kDefaultReadinessCheckConcurrency);
  CHECK(config.readiness().max_p95_factor() == Approx(kDefaultReadinessMaxP95Factor));
  CHECK(config.readiness().check_allowance_ms() == Approx(kDefaultReadinessCheckAllowanceMs));
  CHECK(config.supervision().compute_timeout_ms() == 0);  // derived from warmup
  CHECK_FALSE(config.has_tokenizer());
  CHECK(config.version_policy().has_latest());
  CHECK(config.version_policy().latest().num_versions() == 1);
  CHECK_FALSE(config.torch().inference_mode());
  CHECK_FALSE(config.torch().disable_optimized_execution());
  CHECK(config.torch().jit_executor());
  CHECK(config.torch().jit_profiling());
  CHECK(config.torch().tensor_fuser());
  CHECK(config.model_filename() == "model.pt");
  CHECK(spec->version == 1);
  CHECK(config.version() == 1);
  CHECK(spec->config_path == tmp.path() + "/tiny/config.pbtxt");
  CHECK(spec->settings_path.empty());
  CHECK(spec->version_dir == tmp.path() + "/tiny/1");
  CHECK(spec->model_path == tmp.path() + "/tiny/1/model.pt");
  CHECK(spec->weights_path.empty());
  CHECK(spec->tokenizer_path.empty());
  CHECK(spec->notes.empty());
  CHECK(spec->triton.max_batch_size() == 8);  // config.pbtxt as read
  CHECK(spec->triton.name().empty());
  CHECK_FALSE(spec->stamp.empty());
}

TEST_CASE("explicit values of both files survive, and the highest version is served", "[config]") {
  TempDir tmp;
  const std::string dir = WriteModel(tmp, "text",
                                     "max_batch_size: 4\n"
                                     "instance_group [ { count: 3 kind: KIND_CPU } ]\n"
                                     "parameters { key: \"INTRA_OP_THREAD_COUNT\" "
                                     "value { string_value: \"2\" } }\n" +
                                         kTextModelIo,
                                     R"cfg(
    warmup {
      batch_sizes: [ 1, 2, 4 ]
      sequence_lengths: [ 8, 32 ]
      calls_per_shape: 5
      settle_tolerance: 0.25
      max_calls_per_shape: 20
      steady_calls: 7
      data: DATA_RANDOM
      pad_to_warmed: false
    }
    memory { limit_bytes: 1000000 cgroup_share: 0.5 headroom_bytes: 1000 }
    readiness {
      quorum: 2
      min_ready: 2
      check_requests: 9
      check_concurrency: 3
      max_p95_factor: 2.5
      check_allowance_ms: 4
    }
    supervision { compute_timeout_ms: 9000 }
    tokenizer { model_file: "spm.model" max_length: 32 }
  )cfg");
  tmp.WriteFile("text/7/model.pt", "newer");
  tmp.WriteFile("text/7/spm.model", "spm");
  tmp.WriteFile("text/7/model.safetensors", "weights");
  absl::StatusOr<ModelSpec> spec = LoadModel(dir);
  REQUIRE(spec.ok());
  const ModelConfig& config = spec->config;
  CHECK(spec->version == 7);
  CHECK(config.version() == 7);
  CHECK(spec->settings_path == dir + "/kiln.pbtxt");
  CHECK(spec->model_path == dir + "/7/model.pt");
  CHECK(spec->weights_path == dir + "/7/model.safetensors");
  CHECK(spec->tokenizer_path == dir + "/7/spm.model");
  CHECK(config.instance_group().count() == 3);
  CHECK(config.instance_group().intra_op_threads() == 2);
  CHECK(Values(config.warmup().batch_sizes()) == std::vector<int32_t>{1, 2, 4});
  CHECK(Values(config.warmup().sequence_lengths()) == std::vector<int32_t>{8, 32});
  CHECK(config.warmup().calls_per_shape() == 5);
  CHECK(config.warmup().settle_tolerance() == Approx(0.25));
  CHECK(config.warmup().max_calls_per_shape() == 20);
  CHECK(config.warmup().steady_calls() == 7);
  CHECK(config.warmup().data() == WarmupConfig::DATA_RANDOM);
  CHECK_FALSE(config.warmup().pad_to_warmed());
  CHECK(config.memory().limit_bytes() == 1000000);
  CHECK(config.memory().cgroup_share() == Approx(0.5));
  CHECK(config.memory().headroom_bytes() == 1000);
  CHECK(config.readiness().quorum() == 2);
  CHECK(config.readiness().min_ready() == 2);
  CHECK(config.readiness().check_requests() == 9);
  CHECK(config.readiness().check_concurrency() == 3);
  CHECK(config.readiness().max_p95_factor() == Approx(2.5));
  CHECK(config.readiness().check_allowance_ms() == Approx(4));
  CHECK(config.supervision().compute_timeout_ms() == Approx(9000));
  CHECK(config.tokenizer().max_length() == 32);
  CHECK(config.tokenizer().ids_input() == "input_ids");
  CHECK(config.tokenizer().mask_input() == "attention_mask");
  CHECK(config.tokenizer().text_input() == "text");
  CHECK(config.tokenizer().pad_id() == 0);
}

TEST_CASE("version_policy serves the latest N, all, or specific version directories", "[config]") {
  TempDir tmp;
  // Directories 1, 2, 5 and 10 (numbers, not names: 10 is the newest), and one that is no
  // version.
  const std::string dir = WriteModel(tmp, "m", kGoodConfig);
  for (const char* version : {"2", "5", "10"}) {
    tmp.WriteFile(std::string("m/") + version + "/model.pt", "torchscript bytes");
  }
  tmp.WriteFile("m/notes/model.pt", "not a version");
  const auto served = [&](const std::string& policy) {
    tmp.WriteFile("m/config.pbtxt", kGoodConfig + policy);
    absl::StatusOr<std::vector<ModelSpec>> specs = LoadModelVersions(dir);
    INFO(policy << ": " << specs.status());
    REQUIRE(specs.ok());
    std::vector<int64_t> versions;
    for (const ModelSpec& spec : *specs) {
      CHECK(spec.config.version() == spec.version);
      CHECK(spec.model_path == dir + "/" + std::to_string(spec.version) + "/model.pt");
      CHECK(spec.key() == "m:" + std::to_string(spec.version));
      versions.push_back(spec.version);
    }
    return versions;
  };
  CHECK(served("") == std::vector<int64_t>{10});
  CHECK(served("version_policy { latest { num_versions: 2 } }") == std::vector<int64_t>{5, 10});
  CHECK(served("version_policy { latest { num_versions: 9 } }") ==
        std::vector<int64_t>{1, 2, 5, 10});
  CHECK(served("version_policy { all { } }") == std::vector<int64_t>{1, 2, 5, 10});
  CHECK(served("version_policy { specific { versions: [ 5, 1, 5 ] } }") ==
        std::vector<int64_t>{1, 5});
  // What the old `version: N` shorthand is now.
  CHECK(served("version_policy { specific { versions: [ 2 ] } }") == std::vector<int64_t>{2});
  absl::StatusOr<ModelSpec> newest = LoadModel(dir);  // the last policy: version 2
  REQUIRE(newest.ok());
  CHECK(newest->version == 2);
  CHECK(newest->config.version_policy().has_specific());
}

TEST_CASE("a tokenizer without sequence lengths warms its max length", "[config]") {
  TempDir tmp;
  const std::string dir = WriteModel(tmp, "text", "max_batch_size: 2\n" + kTextModelIo,
                                     "tokenizer { model_file: \"spm.model\" max_length: 64 }\n");
  tmp.WriteFile("text/1/spm.model", "spm");
  absl::StatusOr<ModelSpec> spec = LoadModel(dir);
  REQUIRE(spec.ok());
  CHECK(Values(spec->config.warmup().sequence_lengths()) == std::vector<int32_t>{64});
  CHECK(spec->tokenizer_path == dir + "/1/spm.model");
}

// ---- platform and backend ------------------------------------------------------------------

TEST_CASE("a TorchScript config as Triton's docs write it loads", "[config]") {
  // As in Triton's model_configuration.md and the PyTorch backend's README.
  const std::string body = R"cfg(
    max_batch_size: 8
    input [
      {
        name: "INPUT__0"
        data_type: TYPE_FP32
        dims: [ 16 ]
      }
    ]
    output [
      {
        name: "OUTPUT__0"
        data_type: TYPE_FP32
        dims: [ 4 ]
      }
    ]
    instance_group [
      {
        count: 2
        kind: KIND_CPU
      }
    ]
    parameters: {
      key: "INFERENCE_MODE"
      value: { string_value: "true" }
    }
  )cfg";
  std::string head;
  SECTION("platform pytorch_libtorch") { head = "name: \"m\"\nplatform: \"pytorch_libtorch\"\n"; }
  SECTION("backend pytorch") { head = "name: \"m\"\nbackend: \"pytorch\"\n"; }
  SECTION("both platform and backend") {
    head = "platform: \"pytorch_libtorch\"\nbackend: \"pytorch\"\n";
  }
  TempDir tmp;
  absl::StatusOr<ModelSpec> spec = LoadM(tmp, head + body);
  INFO(spec.status());
  REQUIRE(spec.ok());
  CHECK(spec->config.name() == "m");
  CHECK(spec->config.platform() == "pytorch_libtorch");
  CHECK(spec->config.input(0).name() == "INPUT__0");
  CHECK(spec->config.output(0).name() == "OUTPUT__0");
  CHECK(spec->config.instance_group().count() == 2);
  CHECK(spec->config.torch().inference_mode());
  CHECK(Values(spec->config.warmup().batch_sizes()) == std::vector<int32_t>{1, 8});
}

TEST_CASE("a platform or backend other than PyTorch's is refused, naming it", "[config]") {
  struct Case {
    std::string line;
    std::string field;
    std::string got;
  };
  const std::vector<Case> cases = {
      {"platform: \"onnxruntime_onnx\"", "platform", "\"onnxruntime_onnx\""},
      {"platform: \"tensorflow_savedmodel\"", "platform", "\"tensorflow_savedmodel\""},
      {"platform: \"torchscript\"", "platform", "\"torchscript\""},  // the old kiln form
      {"backend: \"onnxruntime\"", "backend", "\"onnxruntime\""},
      {"backend: \"python\"", "backend", "\"python\""},
  };
  for (const Case& c : cases) {
    SECTION(c.line) {
      TempDir tmp;
      const std::string message = LoadError(tmp, c.line + "\n" + kGoodConfig);
      INFO(message);
      CHECK_THAT(message, Contains(tmp.path() + "/m/config.pbtxt: field '" + c.field + "'"));
      CHECK_THAT(message, Contains("TorchScript"));
      CHECK_THAT(message, Contains("got " + c.got));
      CHECK(message.find('\n') == std::string::npos);  // that one defect only
    }
  }
}

// ---- instance_group ------------------------------------------------------------------------

TEST_CASE("instance groups are summed into one kind of workers", "[config]") {
  struct Case {
    std::string what;
    std::string groups;
    int32_t count;
    InstanceConfig::Kind kind;
    std::vector<int32_t> gpus;
  };
  const std::vector<Case> cases = {
      {"two CPU groups",
       "instance_group [ { count: 2 kind: KIND_CPU }, { count: 1 kind: KIND_CPU } ]",
       3,
       InstanceConfig::KIND_CPU,
       {}},
      {"a group without count has one instance",
       "instance_group [ { kind: KIND_CPU } ]",
       1,
       InstanceConfig::KIND_CPU,
       {}},
      {"a group without count or kind", "instance_group [ { } ]", 1, InstanceConfig::KIND_CPU, {}},
      {"no instance_group is automatic", "", 0, InstanceConfig::KIND_CPU, {}},
      {"a named group",
       "instance_group [ { name: \"cpus\" count: 4 } ]",
       4,
       InstanceConfig::KIND_CPU,
       {}},
      {"KIND_GPU on two GPUs, two each",
       "instance_group [ { count: 2 kind: KIND_GPU gpus: [ 0, 1 ] } ]",
       4,
       InstanceConfig::KIND_GPU,
       {0, 1}},
      {"KIND_AUTO naming GPUs is KIND_GPU",
       "instance_group [ { count: 1 gpus: [ 1 ] } ]",
       1,
       InstanceConfig::KIND_GPU,
       {1}},
  };
  for (const Case& c : cases) {
    SECTION(c.what) {
      TempDir tmp;
      absl::StatusOr<ModelSpec> spec = LoadM(tmp, kGoodConfig + c.groups);
      INFO(spec.status());
      REQUIRE(spec.ok());
      CHECK(spec->config.instance_group().count() == c.count);
      CHECK(spec->config.instance_group().kind() == c.kind);
      CHECK(Values(spec->config.instance_group().gpus()) == c.gpus);
    }
  }
}

TEST_CASE("instance groups of mixed kinds, of KIND_MODEL or with bad values are refused",
          "[config]") {
  TempDir tmp;
  const std::string path = tmp.path() + "/m/config.pbtxt";
  SECTION("KIND_CPU and KIND_GPU") {
    const std::string message = LoadError(tmp, kGoodConfig +
                                                   "instance_group [ { count: 1 kind: KIND_CPU }, "
                                                   "{ count: 1 kind: KIND_GPU gpus: [ 0 ] } ]");
    CHECK_THAT(message, Contains(path + ": field 'instance_group': expected groups of one kind"));
    CHECK_THAT(message, Contains("got KIND_CPU and KIND_GPU"));
  }
  SECTION("KIND_MODEL") {
    const std::string message =
        LoadError(tmp, kGoodConfig + "instance_group [ { count: 1 kind: KIND_MODEL } ]");
    CHECK_THAT(message, Contains(path + ": field 'instance_group[0].kind': expected KIND_CPU, "
                                        "KIND_GPU or KIND_AUTO, got KIND_MODEL"));
  }
  SECTION("KIND_MODEL in the second group") {
    const std::string message = LoadError(
        tmp, kGoodConfig + "instance_group [ { count: 1 }, { count: 1 kind: KIND_MODEL } ]");
    CHECK_THAT(message, Contains(path + ": field 'instance_group[1].kind'"));
    CHECK_THAT(message, Contains("got KIND_MODEL"));
  }
  SECTION("a negative GPU id") {
    const std::string message =
        LoadError(tmp, kGoodConfig + "instance_group [ { kind: KIND_GPU gpus: [ 0, -1 ] } ]");
    CHECK_THAT(message, Contains(path + ": field 'instance_group[0].gpus[1]': expected a CUDA "
                                        "device id >= 0, got -1"));
  }
}

// ---- parameters ----------------------------------------------------------------------------

std::string Parameter(const std::string& key, const std::string& value) {
  return absl::StrCat("parameters { key: \"", key, "\" value { string_value: \"", value,
                      "\" } }\n");
}

TEST_CASE("INTRA_OP_THREAD_COUNT sets the intra-op threads of each worker", "[config]") {
  TempDir tmp;
  SECTION("a count") {
    absl::StatusOr<ModelSpec> spec =
        LoadM(tmp, kGoodConfig + Parameter("INTRA_OP_THREAD_COUNT", "3"));
    REQUIRE(spec.ok());
    CHECK(spec->config.instance_group().intra_op_threads() == 3);
    CHECK(spec->notes.empty());
  }
  for (const char* bad : {"0", "-2", "four", ""}) {
    SECTION(std::string("refused ") + (*bad == '\0' ? "empty" : bad)) {
      const std::string message =
          LoadError(tmp, kGoodConfig + Parameter("INTRA_OP_THREAD_COUNT", bad));
      CHECK_THAT(message,
                 Contains(tmp.path() +
                          "/m/config.pbtxt: field 'parameters[\"INTRA_OP_THREAD_COUNT\"]': "
                          "expected a thread count >= 1, got \"" +
                          bad + "\""));
    }
  }
}

TEST_CASE("the PyTorch backend's boolean parameters resolve into config.torch", "[config]") {
  using Getter = bool (TorchOptions::*)() const;
  struct Case {
    std::string key;
    Getter get;
    bool fallback;
  };
  const std::vector<Case> cases = {
      {"INFERENCE_MODE", &TorchOptions::inference_mode, false},
      {"DISABLE_OPTIMIZED_EXECUTION", &TorchOptions::disable_optimized_execution, false},
      {"ENABLE_JIT_EXECUTOR", &TorchOptions::jit_executor, true},
      {"ENABLE_JIT_PROFILING", &TorchOptions::jit_profiling, true},
      {"ENABLE_TENSOR_FUSER", &TorchOptions::tensor_fuser, true},
  };
  for (const Case& c : cases) {
    SECTION(c.key) {
      TempDir tmp;
      // The default, then each spelling of the other value: only that option changes.
      absl::StatusOr<ModelSpec> spec = LoadM(tmp, kGoodConfig);
      REQUIRE(spec.ok());
      CHECK((spec->config.torch().*c.get)() == c.fallback);
      const std::vector<std::string> other = c.fallback
                                                 ? std::vector<std::string>{"false", "False", "0"}
                                                 : std::vector<std::string>{"true", "TRUE", "1"};
      for (const std::string& value : other) {
        spec = LoadM(tmp, kGoodConfig + Parameter(c.key, value));
        INFO(c.key << " = " << value << ": " << spec.status());
        REQUIRE(spec.ok());
        for (const Case& each : cases) {
          CHECK((spec->config.torch().*each.get)() ==
                (each.key == c.key ? !each.fallback : each.fallback));
        }
        CHECK(spec->notes.empty());
      }
      spec = LoadM(tmp, kGoodConfig + Parameter(c.key, c.fallback ? "true" : "false"));
      REQUIRE(spec.ok());
      CHECK((spec->config.torch().*c.get)() == c.fallback);
      // A value that is no boolean.
      const std::string message = LoadError(tmp, kGoodConfig + Parameter(c.key, "maybe"));
      CHECK_THAT(message, Contains(tmp.path() + "/m/config.pbtxt: field 'parameters[\"" + c.key +
                                   "\"]': expected \"true\" or \"false\", got \"maybe\""));
    }
  }
}

TEST_CASE("GPU-only and unknown parameters are accepted with a note", "[config]") {
  TempDir tmp;
  absl::StatusOr<ModelSpec> spec =
      LoadM(tmp, kGoodConfig + Parameter("ENABLE_NVFUSER", "true") +
                     Parameter("INTER_OP_THREAD_COUNT", "2") +
                     Parameter("ENABLE_CACHE_CLEANING", "true") +
                     Parameter("ENABLE_WEIGHT_SHARING", "true") + Parameter("MY_FLAG", "1"));
  REQUIRE(spec.ok());
  INFO(absl::StrJoin(spec->notes, "\n"));
  CHECK(HasNoteContaining(*spec, "parameters[\"ENABLE_NVFUSER\"]: no effect"));
  CHECK(HasNoteContaining(*spec, "parameters[\"INTER_OP_THREAD_COUNT\"]: no effect"));
  CHECK(HasNoteContaining(*spec, "parameters[\"ENABLE_CACHE_CLEANING\"]: no effect"));
  CHECK(HasNoteContaining(*spec, "parameters[\"ENABLE_WEIGHT_SHARING\"]"));
  CHECK(HasNoteContaining(*spec, "parameters MY_FLAG: not a parameter of the PyTorch backend"));
  CHECK(spec->notes.size() == 5);
  // None of them changes the resolved options.
  CHECK(spec->config.instance_group().intra_op_threads() == 0);
  CHECK(spec->config.torch().jit_executor());
  CHECK(spec->config.torch().tensor_fuser());
  // A bad boolean is still refused where the parameter is read at all.
  const std::string message =
      LoadError(tmp, kGoodConfig + Parameter("ENABLE_WEIGHT_SHARING", "sometimes"));
  CHECK_THAT(message, Contains("field 'parameters[\"ENABLE_WEIGHT_SHARING\"]'"));
}

// ---- model_warmup --------------------------------------------------------------------------

// One model_warmup sample for the input "input" of kGoodConfig.
std::string Sample(const std::string& fields, const std::string& input_fields) {
  return absl::StrCat("model_warmup [ { name: \"w\" ", fields, " inputs { key: \"input\" value { ",
                      input_fields, " } } } ]\n");
}

TEST_CASE("model_warmup samples join kiln's warmup shapes", "[config]") {
  TempDir tmp;
  SECTION("a batch size joins the default [1, max]") {
    absl::StatusOr<ModelSpec> spec = LoadM(
        tmp,
        kGoodConfig + Sample("batch_size: 4", "data_type: TYPE_FP32 dims: [ 16 ] zero_data: true"));
    INFO(spec.status());
    REQUIRE(spec.ok());
    CHECK(Values(spec->config.warmup().batch_sizes()) == std::vector<int32_t>{1, 4, 8});
    CHECK(spec->config.warmup().data() == WarmupConfig::DATA_ZERO);
    CHECK(spec->config.warmup().calls_per_shape() == kDefaultWarmupCallsPerShape);
  }
  SECTION("a batch size joins kiln.pbtxt's batch sizes") {
    absl::StatusOr<ModelSpec> spec =
        LoadM(tmp, kGoodConfig + Sample("batch_size: 3", "data_type: TYPE_FP32 dims: [ 16 ]"),
              "warmup { batch_sizes: [ 2, 6 ] }\n");
    REQUIRE(spec.ok());
    CHECK(Values(spec->config.warmup().batch_sizes()) == std::vector<int32_t>{2, 3, 6});
  }
  SECTION("a sample without batch size, for a model without batching") {
    absl::StatusOr<ModelSpec> spec =
        LoadM(tmp, kIo + Sample("", "data_type: TYPE_FP32 dims: [ 16 ]"));
    REQUIRE(spec.ok());
    CHECK(Values(spec->config.warmup().batch_sizes()) == std::vector<int32_t>{1});
  }
  SECTION("random_data asks for random inputs") {
    absl::StatusOr<ModelSpec> spec =
        LoadM(tmp, kGoodConfig + Sample("batch_size: 1",
                                        "data_type: TYPE_FP32 dims: [ 16 ] random_data: true"));
    REQUIRE(spec.ok());
    CHECK(spec->config.warmup().data() == WarmupConfig::DATA_RANDOM);
  }
  SECTION("count raises calls_per_shape") {
    absl::StatusOr<ModelSpec> spec = LoadM(
        tmp, kGoodConfig + Sample("batch_size: 1 count: 7", "data_type: TYPE_FP32 dims: [ 16 ]"));
    REQUIRE(spec.ok());
    CHECK(spec->config.warmup().calls_per_shape() == 7);
    CHECK(spec->config.warmup().max_calls_per_shape() == kDefaultWarmupMaxCallsPerShape);
  }
  SECTION("count above the settling cap raises the default cap") {
    absl::StatusOr<ModelSpec> spec = LoadM(
        tmp, kGoodConfig + Sample("batch_size: 1 count: 60", "data_type: TYPE_FP32 dims: [ 16 ]"));
    REQUIRE(spec.ok());
    CHECK(spec->config.warmup().calls_per_shape() == 60);
    CHECK(spec->config.warmup().max_calls_per_shape() == 60);
  }
  SECTION("count below kiln.pbtxt's calls_per_shape leaves it") {
    absl::StatusOr<ModelSpec> spec = LoadM(
        tmp, kGoodConfig + Sample("batch_size: 1 count: 2", "data_type: TYPE_FP32 dims: [ 16 ]"),
        "warmup { calls_per_shape: 6 }\n");
    REQUIRE(spec.ok());
    CHECK(spec->config.warmup().calls_per_shape() == 6);
  }
  SECTION("the dims of a variable input give a sequence length") {
    absl::StatusOr<ModelSpec> spec = LoadM(tmp, R"cfg(
      max_batch_size: 4
      input [ { name: "ids" data_type: TYPE_INT64 dims: [ -1 ] } ]
      output [ { name: "y" data_type: TYPE_FP32 dims: [ 2 ] } ]
      model_warmup [
        {
          name: "short"
          batch_size: 2
          inputs { key: "ids" value { data_type: TYPE_INT64 dims: [ 24 ] zero_data: true } }
        },
        {
          name: "long"
          batch_size: 1
          inputs { key: "ids" value { data_type: TYPE_INT64 dims: [ 96 ] zero_data: true } }
        }
      ]
    )cfg");
    INFO(spec.status());
    REQUIRE(spec.ok());  // no "warmup.sequence_lengths" defect: the samples give lengths
    CHECK(Values(spec->config.warmup().sequence_lengths()) == std::vector<int32_t>{24, 96});
    CHECK(Values(spec->config.warmup().batch_sizes()) == std::vector<int32_t>{1, 2, 4});
  }
  SECTION("a text model's sample lengths join the tokenizer's max length") {
    tmp.WriteFile("m/1/spm.model", "spm");
    absl::StatusOr<ModelSpec> spec =
        LoadM(tmp, "max_batch_size: 2\n" + kTextModelIo + R"cfg(
      model_warmup [ {
        batch_size: 1
        inputs { key: "input_ids" value { data_type: TYPE_INT64 dims: [ 16 ] zero_data: true } }
        inputs {
          key: "attention_mask"
          value { data_type: TYPE_INT64 dims: [ 16 ] zero_data: true }
        }
      } ]
    )cfg",
              "tokenizer { model_file: \"spm.model\" max_length: 64 }\n");
    INFO(spec.status());
    REQUIRE(spec.ok());
    CHECK(Values(spec->config.warmup().sequence_lengths()) == std::vector<int32_t>{16, 64});
  }
}

TEST_CASE("a model_warmup sample that does not fit the inputs is refused", "[config]") {
  const std::string two_inputs = R"cfg(
    max_batch_size: 8
    input [
      { name: "input" data_type: TYPE_FP32 dims: [ 16 ] },
      { name: "scale" data_type: TYPE_FP32 dims: [ 1 ] }
    ]
    output [ { name: "output" data_type: TYPE_FP32 dims: [ 4 ] } ]
  )cfg";
  struct Case {
    std::string what;
    std::string config;
    std::string at;  // after the config's path
    std::string expected;
  };
  const std::vector<Case> cases = {
      {"a sample missing an input",
       two_inputs + Sample("batch_size: 1", "data_type: TYPE_FP32 dims: [ 16 ]"),
       ": field 'model_warmup[0].inputs'", "expected an entry for input \"scale\", got none"},
      {"a wrong data type",
       kGoodConfig + Sample("batch_size: 1", "data_type: TYPE_INT32 dims: [ 16 ]"),
       ": field 'model_warmup[0].inputs[\"input\"].data_type'",
       "expected TYPE_FP32, got TYPE_INT32"},
      {"wrong dims", kGoodConfig + Sample("batch_size: 1", "data_type: TYPE_FP32 dims: [ 8 ]"),
       ": field 'model_warmup[0].inputs[\"input\"].dims'",
       "expected the input's dims [16], got [8]"},
      {"a wrong number of dims",
       kGoodConfig + Sample("batch_size: 1", "data_type: TYPE_FP32 dims: [ 16, 1 ]"),
       ": field 'model_warmup[0].inputs[\"input\"].dims'", "expected 1 dims, as the input's"},
      {"an unknown input name",
       kGoodConfig +
           "model_warmup [ { batch_size: 1\n"
           "  inputs { key: \"input\" value { data_type: TYPE_FP32 dims: [ 16 ] } }\n"
           "  inputs { key: \"bogus\" value { data_type: TYPE_FP32 dims: [ 16 ] } } } ]\n",
       ": field 'model_warmup[0].inputs'", "expected names of the config's inputs, got \"bogus\""},
      {"a batch size over max_batch_size",
       kGoodConfig + Sample("batch_size: 9", "data_type: TYPE_FP32 dims: [ 16 ]"),
       ": field 'model_warmup[0].batch_size'", "expected a value in [1, max_batch_size=8], got 9"},
      {"a batch size over 1 without batching",
       kIo + Sample("batch_size: 2", "data_type: TYPE_FP32 dims: [ 16 ]"),
       ": field 'model_warmup[0].batch_size'", "when max_batch_size is 0, got 2"},
      {"a variable dim given no length",
       R"cfg(max_batch_size: 2
            input [ { name: "input" data_type: TYPE_INT64 dims: [ -1 ] } ]
            output [ { name: "y" data_type: TYPE_FP32 dims: [ 2 ] } ]
       )cfg" +
           Sample("batch_size: 1", "data_type: TYPE_INT64 dims: [ -1 ]"),
       ": field 'model_warmup[0].inputs[\"input\"].dims'",
       "one length in [1, 2^31-1] for every variable (-1) dim"},
      {"the second sample",
       kGoodConfig + "model_warmup [\n"
                     "  { batch_size: 1 inputs { key: \"input\" value { data_type: TYPE_FP32 dims: "
                     "[ 16 ] } } },\n"
                     "  { batch_size: 2 inputs { key: \"input\" value { data_type: TYPE_FP64 dims: "
                     "[ 16 ] } } }\n"
                     "]\n",
       ": field 'model_warmup[1].inputs[\"input\"].data_type'", "got TYPE_FP64"},
  };
  for (const Case& c : cases) {
    SECTION(c.what) {
      TempDir tmp;
      const std::string message = LoadError(tmp, c.config);
      INFO(message);
      CHECK_THAT(message, Contains(tmp.path() + "/m/config.pbtxt" + c.at));
      CHECK_THAT(message, Contains(c.expected));
    }
  }
  SECTION("an input_data_file that is missing, the wrong size, or outside warmup/") {
    TempDir tmp;
    tmp.WriteFile("m/warmup/short", std::string(60, '\0'));  // 15 floats, not 16
    const std::string message =
        LoadError(tmp, kGoodConfig +
                           "model_warmup [\n"
                           "  { batch_size: 1 inputs { key: \"input\" value { data_type: TYPE_FP32 "
                           "dims: [ 16 ] input_data_file: \"absent\" } } },\n"
                           "  { batch_size: 1 inputs { key: \"input\" value { data_type: TYPE_FP32 "
                           "dims: [ 16 ] input_data_file: \"short\" } } },\n"
                           "  { batch_size: 1 inputs { key: \"input\" value { data_type: TYPE_FP32 "
                           "dims: [ 16 ] input_data_file: \"../config.pbtxt\" } } }\n"
                           "]\n");
    INFO(message);
    const std::string field = tmp.path() + "/m/config.pbtxt: field 'model_warmup[";
    CHECK_THAT(message, Contains(field +
                                 "0].inputs[\"input\"].input_data_file': expected an "
                                 "existing file in " +
                                 tmp.path() + "/m/warmup, got \"absent\""));
    CHECK_THAT(message, Contains(field + "1].inputs[\"input\"].input_data_file': expected one "
                                         "row of the input, 64 bytes (TYPE_FP32 [16]), got 60 "
                                         "bytes"));
    CHECK_THAT(message, Contains(field + "2].inputs[\"input\"].input_data_file': expected a "
                                         "file in the model's warmup/ directory"));
  }
}

TEST_CASE("a model_warmup input_data_file is one row of its input, from the warmup directory",
          "[config]") {
  TempDir tmp;
  tmp.WriteFile("m/warmup/ids_12", std::string(12 * 8, '\1'));  // 12 INT64 ids
  const std::string config = R"cfg(max_batch_size: 4
    input [ { name: "ids" data_type: TYPE_INT64 dims: [ -1 ] } ]
    output [ { name: "y" data_type: TYPE_FP32 dims: [ 2 ] } ]
    model_warmup [ { batch_size: 2
      inputs { key: "ids" value { data_type: TYPE_INT64 dims: [ 12 ] input_data_file: "ids_12" } }
    } ]
  )cfg";
  absl::StatusOr<ModelSpec> spec = LoadM(tmp, config);
  INFO(spec.status());
  REQUIRE(spec.ok());
  const WarmupConfig& warmup = spec->config.warmup();
  REQUIRE(warmup.input_files().count("ids") == 1);
  CHECK(warmup.input_files().at("ids").path() == tmp.path() + "/m/warmup/ids_12");
  CHECK(warmup.input_files().at("ids").sequence_length() == 12);
  CHECK(std::vector<int32_t>(warmup.sequence_lengths().begin(), warmup.sequence_lengths().end()) ==
        std::vector<int32_t>{12});
  // Set in kiln.pbtxt, it is refused there: the files are config.pbtxt's.
  const std::string message =
      LoadError(tmp, config, "warmup { input_files { key: \"ids\" value { path: \"/x\" } } }\n");
  CHECK_THAT(message, Contains(tmp.path() + "/m/kiln.pbtxt: field 'warmup.input_files'"));
}

// ---- dynamic_batching ----------------------------------------------------------------------

TEST_CASE("dynamic_batching turns batching on, with its priority levels and queue policies",
          "[config]") {
  TempDir tmp;
  const std::string batching = R"cfg(
    dynamic_batching {
      preferred_batch_size: [ 4 ]
      max_queue_delay_microseconds: 500
      default_queue_policy { max_queue_size: 16 }
    }
  )cfg";
  SECTION("carried, and preferred sizes join the default warmup batch sizes") {
    absl::StatusOr<ModelSpec> spec = LoadM(tmp, kGoodConfig + batching);
    INFO(spec.status());
    REQUIRE(spec.ok());
    CHECK(spec->config.dynamic_batching().enabled());
    CHECK(spec->config.dynamic_batching().max_queue_delay_us() == 500);
    CHECK(spec->config.dynamic_batching().max_queue_size() == 16);
    CHECK(Values(spec->config.warmup().batch_sizes()) == std::vector<int32_t>{1, 4, 8});
    CHECK(spec->notes.empty());  // every field it sets is in effect
  }
  SECTION("priority levels resolve to a queue policy each; preserve_ordering is carried") {
    absl::StatusOr<ModelSpec> spec = LoadM(tmp, kGoodConfig + R"cfg(
      dynamic_batching {
        preserve_ordering: true
        priority_levels: 3
        default_priority_level: 2
        default_queue_policy { timeout_action: DELAY default_timeout_microseconds: 1000 }
        priority_queue_policy {
          key: 1
          value { max_queue_size: 4 allow_timeout_override: true }
        }
      }
    )cfg");
    INFO(spec.status());
    REQUIRE(spec.ok());
    const DynamicBatchingConfig& batching = spec->config.dynamic_batching();
    CHECK(batching.default_priority_level() == 2);
    REQUIRE(batching.levels_size() == 3);
    CHECK(batching.levels(0).max_queue_size() == 4);  // its own policy: REJECT, no timeout
    CHECK_FALSE(batching.levels(0).delay_on_timeout());
    CHECK(batching.levels(0).default_timeout_us() == 0);
    CHECK(batching.levels(0).allow_timeout_override());
    for (int level : {1, 2}) {  // the default policy
      CHECK(batching.levels(level).delay_on_timeout());
      CHECK(batching.levels(level).default_timeout_us() == 1000);
      CHECK(batching.levels(level).max_queue_size() == kDefaultMaxQueueSize);
    }
    CHECK(batching.preserve_ordering());
    CHECK(spec->notes.empty());
  }
  SECTION("a default level or a policy's level outside priority_levels is refused") {
    const std::string message = LoadError(tmp, kGoodConfig + R"cfg(
      dynamic_batching {
        priority_levels: 2
        default_priority_level: 3
        priority_queue_policy { key: 5 value { } }
      }
    )cfg");
    CHECK_THAT(message, Contains("field 'dynamic_batching.default_priority_level': expected a "
                                 "level in [1, priority_levels=2], got 3"));
    CHECK_THAT(message, Contains("field 'dynamic_batching.priority_queue_policy[5]': expected a "
                                 "level in [1, priority_levels=2], got 5"));
  }
  SECTION("an empty block enables it with the defaults") {
    absl::StatusOr<ModelSpec> spec = LoadM(tmp, kGoodConfig + "dynamic_batching { }\n");
    REQUIRE(spec.ok());
    CHECK(spec->config.dynamic_batching().enabled());
    CHECK(spec->config.dynamic_batching().max_queue_delay_us() == 0);
    CHECK(spec->config.dynamic_batching().max_queue_size() == kDefaultMaxQueueSize);
    REQUIRE(spec->config.dynamic_batching().levels_size() == 1);  // one level, FIFO, no timeout
    CHECK(spec->config.dynamic_batching().levels(0).max_queue_size() == kDefaultMaxQueueSize);
    CHECK(spec->config.dynamic_batching().levels(0).default_timeout_us() == 0);
    CHECK(spec->config.dynamic_batching().default_priority_level() == 1);
    CHECK(Values(spec->config.warmup().batch_sizes()) == std::vector<int32_t>{1, 8});
    CHECK(spec->notes.empty());
  }
  SECTION("kiln.pbtxt's batch sizes replace the default, preferred sizes included") {
    absl::StatusOr<ModelSpec> spec =
        LoadM(tmp, kGoodConfig + batching, "warmup { batch_sizes: [ 2 ] pad_to_warmed: false }\n");
    REQUIRE(spec.ok());
    CHECK(Values(spec->config.warmup().batch_sizes()) == std::vector<int32_t>{2});
    CHECK_FALSE(spec->config.warmup().pad_to_warmed());
    CHECK(spec->config.dynamic_batching().max_queue_size() == 16);
  }
  SECTION("without a batch dimension") {
    absl::StatusOr<ModelSpec> spec = LoadM(tmp, kIo + batching);
    REQUIRE(spec.ok());
    CHECK(spec->config.dynamic_batching().enabled());
    CHECK(Values(spec->config.warmup().batch_sizes()) == std::vector<int32_t>{1});
    CHECK(HasNoteContaining(*spec, "max_batch_size is 0 (no batch dimension)"));
  }
}

// ---- default_model_filename ----------------------------------------------------------------

TEST_CASE("default_model_filename names the model file of each version", "[config]") {
  TempDir tmp;
  SECTION("used") {
    const std::string dir =
        WriteModel(tmp, "m", kGoodConfig + "default_model_filename: \"net.ts\"\n", "",
                   /*with_model_file=*/false);
    tmp.WriteFile("m/1/net.ts", "torchscript bytes");
    absl::StatusOr<ModelSpec> spec = LoadModel(dir);
    INFO(spec.status());
    REQUIRE(spec.ok());
    CHECK(spec->config.model_filename() == "net.ts");
    CHECK(spec->model_path == dir + "/1/net.ts");
  }
  SECTION("missing") {
    const std::string message =
        LoadError(tmp, kGoodConfig + "default_model_filename: \"net.ts\"\n");
    CHECK_THAT(message, Contains("model file " + tmp.path() + "/m/1/net.ts does not exist"));
  }
  for (const char* bad : {"sub/model.pt", "../model.pt", "..", "/abs/model.pt"}) {
    SECTION(std::string("refused ") + bad) {
      const std::string message =
          LoadError(tmp, kGoodConfig + "default_model_filename: \"" + bad + "\"\n");
      CHECK_THAT(message, Contains(tmp.path() +
                                   "/m/config.pbtxt: field 'default_model_filename': "
                                   "expected a file name in each version directory "
                                   "(no '/'), got \"" +
                                   bad + "\""));
      CHECK_THAT(message, !Contains("does not exist"));  // one defect, not a follow-on
    }
  }
}

// ---- inputs and outputs --------------------------------------------------------------------

TEST_CASE("input formats, reshapes and label files are translated or refused", "[config]") {
  TempDir tmp;
  const std::string path = tmp.path() + "/m/config.pbtxt";
  const std::string image_output = "output [ { name: \"y\" data_type: TYPE_FP32 dims: [ 10 ] } ]\n";
  SECTION("FORMAT_NCHW with 3 dims") {
    absl::StatusOr<ModelSpec> spec = LoadM(
        tmp,
        "max_batch_size: 2\n"
        "input [ { name: \"x\" data_type: TYPE_FP32 format: FORMAT_NCHW dims: [ 3, 8, 8 ] } ]\n" +
            image_output);
    INFO(spec.status());
    REQUIRE(spec.ok());
    CHECK(Values(spec->config.input(0).dims()) == std::vector<int64_t>{3, 8, 8});
  }
  SECTION("FORMAT_NCHW with 2 dims") {
    const std::string message = LoadError(
        tmp,
        "max_batch_size: 2\n"
        "input [ { name: \"x\" data_type: TYPE_FP32 format: FORMAT_NCHW dims: [ 8, 8 ] } ]\n" +
            image_output);
    CHECK_THAT(message, Contains(path + ": field 'input[0].dims': expected 3 dims for format "
                                        "FORMAT_NCHW, got [8, 8]"));
  }
  SECTION("FORMAT_NHWC with 4 dims") {
    const std::string message = LoadError(tmp,
                                          "input [ { name: \"x\" data_type: TYPE_FP32 format: "
                                          "FORMAT_NHWC dims: [ 1, 8, 8, 3 ] } ]\n" +
                                              image_output);
    CHECK_THAT(message, Contains(path + ": field 'input[0].dims': expected 3 dims for format "
                                        "FORMAT_NHWC, got [1, 8, 8, 3]"));
  }
  SECTION("reshape is carried into the tensors") {
    absl::StatusOr<ModelSpec> spec = LoadM(tmp, R"cfg(
      max_batch_size: 2
      input [ { name: "x" data_type: TYPE_FP32 dims: [ 16 ] reshape { shape: [ 4, 4 ] } } ]
      output [
        { name: "y" data_type: TYPE_FP32 dims: [ 6 ] reshape { shape: [ 2, 3 ] } },
        { name: "z" data_type: TYPE_FP32 dims: [ 1 ] reshape { shape: [ ] } }
      ]
    )cfg");
    INFO(spec.status());
    REQUIRE(spec.ok());
    REQUIRE(spec->config.input(0).has_reshape());
    CHECK(Values(spec->config.input(0).reshape().shape()) == std::vector<int64_t>{4, 4});
    CHECK(Values(spec->config.input(0).dims()) == std::vector<int64_t>{16});
    REQUIRE(spec->config.output(0).has_reshape());
    CHECK(Values(spec->config.output(0).reshape().shape()) == std::vector<int64_t>{2, 3});
    REQUIRE(spec->config.output(1).has_reshape());  // a scalar per row
    CHECK(spec->config.output(1).reshape().shape().empty());
  }
  const std::string labelled =
      "max_batch_size: 2\n"
      "input [ { name: \"x\" data_type: TYPE_FP32 dims: [ 16 ] } ]\n"
      "output [ { name: \"y\" data_type: TYPE_FP32 dims: [ 3 ] label_filename: \"labels.txt\" } "
      "]\n";
  SECTION("a label file in the model directory") {
    tmp.WriteFile("m/labels.txt", "cat\r\ndog\n\nbird");  // a blank label, no final newline
    absl::StatusOr<ModelSpec> spec = LoadM(tmp, labelled);
    INFO(spec.status());
    REQUIRE(spec.ok());
    CHECK(spec->triton.output(0).label_filename() == "labels.txt");
    const auto& labels = spec->config.output(0).labels();
    CHECK(std::vector<std::string>(labels.begin(), labels.end()) ==
          std::vector<std::string>{"cat", "dog", "", "bird"});
  }
  SECTION("a missing label file") {
    tmp.WriteFile("m/1/labels.txt", "in the version directory, not the model's");
    const std::string message = LoadError(tmp, labelled);
    CHECK_THAT(message, Contains(path + ": field 'output[0].label_filename': expected a file in " +
                                 tmp.path() + "/m, got \"labels.txt\""));
  }
  SECTION("TYPE_STRING, whose text comes from the tokenizer") {
    const std::string message = LoadError(
        tmp, "input [ { name: \"text\" data_type: TYPE_STRING dims: [ 1 ] } ]\n" + image_output);
    CHECK_THAT(message, Contains(path + ": field 'input[0].data_type'"));
    CHECK_THAT(message, Contains("tokenizer of its kiln.pbtxt"));
    CHECK_THAT(message, Contains("got TYPE_STRING on \"text\""));
    CHECK(message.find('\n') == std::string::npos);  // that one defect only
  }
  SECTION("TYPE_UINT32, which LibTorch lacks") {
    const std::string message =
        LoadError(tmp,
                  "input [ { name: \"x\" data_type: TYPE_FP32 dims: [ 1 ] } ]\n"
                  "output [ { name: \"y\" data_type: TYPE_UINT32 dims: [ 1 ] } ]\n");
    CHECK_THAT(message, Contains(path + ": field 'output[0].data_type': expected a type LibTorch "
                                        "holds (not TYPE_UINT16/32/64), got TYPE_UINT32"));
    CHECK(message.find('\n') == std::string::npos);  // that one defect only
  }
  SECTION("no data_type") {
    const std::string message =
        LoadError(tmp, "input [ { name: \"x\" dims: [ 1 ] } ]\n" + image_output);
    CHECK_THAT(message, Contains(path + ": field 'input[0].data_type': expected one of TYPE_BOOL"));
    CHECK_THAT(message, Contains("got TYPE_INVALID (or no data_type)"));
    CHECK(message.find('\n') == std::string::npos);  // that one defect only
  }
}

// ---- Triton fields kiln refuses ------------------------------------------------------------

TEST_CASE("each Triton field kiln does not implement is refused at its line", "[config]") {
  struct Case {
    std::string field;
    std::string config;
    int line;
    std::string why;  // part of the reason
  };
  const std::string head = "name: \"m\"\nmax_batch_size: 8\n";  // 2 lines
  const std::vector<Case> cases = {
      {"sequence_batching",
       head + "sequence_batching { max_sequence_idle_microseconds: 5000000 }\n" + kIo, 3,
       "stateful models"},
      {"ensemble_scheduling",
       head + "ensemble_scheduling {\n  step [ { model_name: \"a\" model_version: -1 } ]\n}\n" +
           kIo,
       3, "no ensembles"},
      {"response_cache", head + "\nresponse_cache { enable: true }\n" + kIo, 4,
       "no response cache"},
      {"model_repository_agents",
       head + "model_repository_agents { agents [ { name: \"checksum\" } ] }\n" + kIo, 3,
       "no repository agents"},
      {"optimization", head + "optimization { graph { level: 1 } }\n" + kIo, 3,
       "no optimization policy"},
      {"model_transaction_policy", head + "model_transaction_policy { decoupled: true }\n" + kIo, 3,
       "not decoupled"},
      {"batch_input",
       head + kIo +  // kIo: 3 lines, the first empty
           "batch_input [ { kind: BATCH_ELEMENT_COUNT target_name: \"n\" "
           "data_type: TYPE_FP32 source_input: \"input\" } ]\n",
       6, "Triton's, not supported by kiln: remove it"},
      {"instance_group.rate_limiter",
       head + "instance_group [ {\n  count: 1\n  rate_limiter { priority: 2 }\n} ]\n" + kIo, 5,
       "remove it"},
      {"output.is_shape_tensor",
       head + "input [ { name: \"input\" data_type: TYPE_FP32 dims: [ 16 ] } ]\n"
              "output [ { name: \"output\" data_type: TYPE_FP32 dims: [ 4 ] is_shape_tensor: true "
              "} ]\n",
       4, "remove it"},
  };
  for (const Case& c : cases) {
    SECTION(c.field) {
      TempDir tmp;
      const std::string message = LoadError(tmp, c.config);
      INFO(message);
      CHECK_THAT(message, Contains(absl::StrCat(tmp.path(), "/m/config.pbtxt:", c.line, ": field '",
                                                c.field, "': Triton's, not supported by kiln")));
      CHECK_THAT(message, Contains(c.why));
      CHECK(message.find('\n') == std::string::npos);  // that one defect only
    }
  }
}

TEST_CASE("optional inputs are carried into the config, at most four of them", "[config]") {
  TempDir tmp;
  const auto input = [](int i, bool optional) {
    return absl::StrCat("{ name: \"in", i, "\" data_type: TYPE_FP32 dims: [ 2 ]",
                        optional ? " optional: true" : "", " }");
  };
  const std::string output = "output [ { name: \"y\" data_type: TYPE_FP32 dims: [ 2 ] } ]\n";
  SECTION("one required, two optional; a warmup sample may leave an optional one out") {
    absl::StatusOr<ModelSpec> spec = LoadM(
        tmp, absl::StrCat("max_batch_size: 4\ninput [ ", input(0, false), ", ", input(1, true),
                          ", ", input(2, true), " ]\n", output,
                          "model_warmup [ { name: \"w\" batch_size: 2 inputs { key: \"in0\" "
                          "value { data_type: TYPE_FP32 dims: [ 2 ] zero_data: true } } } ]\n"));
    INFO(spec.status());
    REQUIRE(spec.ok());
    CHECK_FALSE(spec->config.input(0).optional());
    CHECK(spec->config.input(1).optional());
    CHECK(spec->config.input(2).optional());
    CHECK(Values(spec->config.warmup().batch_sizes()) == std::vector<int32_t>{1, 2, 4});
  }
  SECTION("five optional inputs: warmup would run 32 combinations of each shape") {
    std::string inputs;
    for (int i = 0; i < 5; ++i) absl::StrAppend(&inputs, i > 0 ? ", " : "", input(i, true));
    const std::string message = LoadError(tmp, "input [ " + inputs + " ]\n" + output);
    CHECK_THAT(message, Contains(tmp.path() + "/m/config.pbtxt: field 'input[4].optional': "
                                              "expected at most 4 optional inputs"));
  }
  SECTION("a warmup sample still gives every required input") {
    const std::string message = LoadError(
        tmp, absl::StrCat("input [ ", input(0, false), ", ", input(1, true), " ]\n", output,
                          "model_warmup [ { name: \"w\" batch_size: 1 inputs { key: \"in1\" "
                          "value { data_type: TYPE_FP32 dims: [ 2 ] zero_data: true } } } ]\n"));
    CHECK_THAT(message, Contains("field 'model_warmup[0].inputs': expected an entry for input "
                                 "\"in0\", got none"));
  }
}

TEST_CASE("a misspelled field in config.pbtxt is a parse error at its line and column",
          "[config]") {
  TempDir tmp;
  const std::string message = LoadError(tmp, "name: \"m\"\n  max_bach_size: 8\n" + kIo);
  INFO(message);
  CHECK(HasParseErrorAt(message, tmp.path() + "/m/config.pbtxt", 2));
  CHECK_THAT(message, Contains("max_bach_size"));
  // A field of kiln's old form is no field of Triton's.
  const std::string old = LoadError(tmp, kGoodConfig + "version: 1\n");
  INFO(old);
  CHECK(HasParseErrorAt(old, tmp.path() + "/m/config.pbtxt", 5));
  CHECK_THAT(old, Contains("\"version\""));
}

// ---- kiln.pbtxt ----------------------------------------------------------------------------

TEST_CASE("kiln.pbtxt is optional, and its values are used when present", "[config]") {
  TempDir tmp;
  absl::StatusOr<ModelSpec> absent = LoadM(tmp, kGoodConfig);
  REQUIRE(absent.ok());
  CHECK(absent->settings_path.empty());
  CHECK(Values(absent->config.warmup().batch_sizes()) == std::vector<int32_t>{1, 8});
  CHECK(absent->config.readiness().check_requests() == kDefaultReadinessCheckRequests);

  tmp.WriteFile("m/kiln.pbtxt", "# nothing set\n");
  absl::StatusOr<ModelSpec> empty = LoadModel(tmp.path() + "/m");
  REQUIRE(empty.ok());
  CHECK(empty->settings_path == tmp.path() + "/m/kiln.pbtxt");
  CHECK(empty->config.SerializeAsString() == absent->config.SerializeAsString());

  tmp.WriteFile("m/kiln.pbtxt", R"cfg(
    warmup { batch_sizes: [ 1, 2 ] enabled: false }
    readiness { check_requests: 4 }
    memory { cgroup_share: 0.25 }
    supervision { compute_timeout_ms: 1234 }
  )cfg");
  absl::StatusOr<ModelSpec> present = LoadModel(tmp.path() + "/m");
  REQUIRE(present.ok());
  CHECK(present->settings_path == tmp.path() + "/m/kiln.pbtxt");
  CHECK(Values(present->config.warmup().batch_sizes()) == std::vector<int32_t>{1, 2});
  CHECK_FALSE(present->config.warmup().enabled());
  CHECK(present->config.readiness().check_requests() == 4);
  CHECK(present->config.memory().cgroup_share() == Approx(0.25));
  CHECK(present->config.supervision().compute_timeout_ms() == Approx(1234));
}

TEST_CASE("a defect or misspelled field in kiln.pbtxt names kiln.pbtxt", "[config]") {
  TempDir tmp;
  SECTION("a bad value") {
    const std::string message = LoadError(tmp, kGoodConfig, "memory { cgroup_share: 1.5 }\n");
    CHECK_THAT(message, Contains(tmp.path() + "/m/kiln.pbtxt: field 'memory.cgroup_share'"));
    CHECK_THAT(message, !Contains("config.pbtxt"));
  }
  SECTION("a misspelled field") {
    const std::string message =
        LoadError(tmp, kGoodConfig, "warmup { calls_per_shape: 3 }\nwarmpu { }\n");
    INFO(message);
    CHECK(HasParseErrorAt(message, tmp.path() + "/m/kiln.pbtxt", 2));
    CHECK_THAT(message, Contains("warmpu"));
    CHECK_THAT(message, !Contains("config.pbtxt"));
  }
  SECTION("a field of config.pbtxt") {
    const std::string message = LoadError(tmp, kGoodConfig, "max_batch_size: 4\n");
    INFO(message);
    CHECK(HasParseErrorAt(message, tmp.path() + "/m/kiln.pbtxt", 1));
    CHECK_THAT(message, Contains("max_batch_size"));
  }
  SECTION("a field kiln.pbtxt no longer has") {
    const std::string message =
        LoadError(tmp, kGoodConfig, "warmup {\n  data_file: \"x.safetensors\"\n}\n");
    INFO(message);
    CHECK(HasParseErrorAt(message, tmp.path() + "/m/kiln.pbtxt", 2));
    CHECK_THAT(message, Contains("data_file"));
  }
  SECTION("defects in both files are all reported, each with its file") {
    const std::string message =
        LoadError(tmp, "max_batch_size: -1\n" + kIo, "readiness { max_p95_factor: 0.5 }\n");
    CHECK_THAT(message, Contains(tmp.path() + "/m/config.pbtxt: field 'max_batch_size'"));
    CHECK_THAT(message, Contains(tmp.path() + "/m/kiln.pbtxt: field 'readiness.max_p95_factor'"));
  }
}

TEST_CASE("a change to kiln.pbtxt changes the spec's stamp", "[config]") {
  TempDir tmp;
  absl::StatusOr<ModelSpec> before = LoadM(tmp, kGoodConfig);
  REQUIRE(before.ok());
  absl::StatusOr<ModelSpec> same = LoadModel(tmp.path() + "/m");
  REQUIRE(same.ok());
  CHECK(same->stamp == before->stamp);

  tmp.WriteFile("m/kiln.pbtxt", "warmup { calls_per_shape: 4 }\n");  // added
  absl::StatusOr<ModelSpec> added = LoadModel(tmp.path() + "/m");
  REQUIRE(added.ok());
  CHECK(added->stamp != before->stamp);

  tmp.WriteFile("m/kiln.pbtxt", "warmup { calls_per_shape: 12 }\n");  // changed
  absl::StatusOr<ModelSpec> changed = LoadModel(tmp.path() + "/m");
  REQUIRE(changed.ok());
  CHECK(changed->config.warmup().calls_per_shape() == 12);
  CHECK(changed->stamp != added->stamp);
  CHECK(changed->stamp != before->stamp);

  std::filesystem::remove(tmp.path() + "/m/kiln.pbtxt");  // removed
  absl::StatusOr<ModelSpec> removed = LoadModel(tmp.path() + "/m");
  REQUIRE(removed.ok());
  CHECK(removed->stamp != changed->stamp);
  CHECK(removed->stamp == before->stamp);
}

// ---- every bad value -----------------------------------------------------------------------

struct BadConfig {
  const char* what;
  std::string config;
  std::string settings;               // kiln.pbtxt; none when empty
  std::string at;                     // "<file>[:<line>...]" of the defect, after <tmp>/m/
  std::vector<std::string> expected;  // more substrings of the error message
};

TEST_CASE("every bad value is an error naming the file, the field and what was expected",
          "[config]") {
  const std::string io = kIo;
  const std::string text_io = "max_batch_size: 2\n" + kTextModelIo;
  const std::vector<BadConfig> cases = {
      {"unknown field",
       "max_batch_size: 8\nbogus_field: 3\n" + io,
       "",
       "config.pbtxt:2:",
       {"bogus_field"}},
      {"unknown datatype",
       "input [ { name: \"input\" data_type: TYPE_FLOAT dims: [ 16 ] } ]\n"
       "output [ { name: \"output\" data_type: TYPE_FP32 dims: [ 4 ] } ]\n",
       "",
       "config.pbtxt:1:",
       {"Unknown enumeration value of \"TYPE_FLOAT\""}},
      // proto3's text format takes any number for an enum (found by the model_config fuzzer).
      {"datatype given as a number no type has",
       "input { name: \"input\" data_type: TYPE_FP16 dims: [ 16 ] }\n"
       "output { name: \"output\" data_type: 32 dims: [ 4 ] }\n",
       "",
       "config.pbtxt:2:",
       {"field 'output[0].data_type': 32 is not a DataType (expected one of", "TYPE_BF16"}},
      {"instance kind given as a number",
       "instance_group [ { kind: 7 } ]\n" + io,
       "",
       "config.pbtxt:1:",
       {"field 'instance_group[0].kind': 7 is not a Kind (expected one of KIND_AUTO"}},
      {"warmup data given as a number",
       kGoodConfig,
       "\nwarmup { data: -1 }\n",
       "kiln.pbtxt:2:",
       {"field 'warmup.data': -1 is not a Data"}},
      {"missing datatype",
       "input [ { name: \"input\" dims: [ 16 ] } ]\n"
       "output [ { name: \"output\" data_type: TYPE_FP32 dims: [ 4 ] } ]\n",
       "",
       "config.pbtxt: field 'input[0].data_type'",
       {"TYPE_INVALID"}},
      {"negative dim",
       "input [ { name: \"input\" data_type: TYPE_FP32 dims: [ 16, -3 ] } ]\n"
       "output [ { name: \"output\" data_type: TYPE_FP32 dims: [ 4 ] } ]\n",
       "",
       "config.pbtxt: field 'input[0].dims[1]'",
       {"a positive size or -1", "got -3"}},
      {"zero dim",
       "input [ { name: \"input\" data_type: TYPE_FP32 dims: [ 16 ] } ]\n"
       "output [ { name: \"output\" data_type: TYPE_FP32 dims: [ 0 ] } ]\n",
       "",
       "config.pbtxt: field 'output[0].dims[0]'",
       {"got 0"}},
      {"no dims without batching",
       "input [ { name: \"input\" data_type: TYPE_FP32 } ]\n"
       "output [ { name: \"output\" data_type: TYPE_FP32 dims: [ 4 ] } ]\n",
       "",
       "config.pbtxt: field 'input[0].dims'",
       {"when max_batch_size is 0", "got []"}},
      {"negative max_batch_size",
       "max_batch_size: -1\n" + io,
       "",
       "config.pbtxt: field 'max_batch_size'",
       {"got -1"}},
      {"warmup batch over max_batch_size",
       "max_batch_size: 4\n" + io,
       "warmup { batch_sizes: [1, 8] }\n",
       "kiln.pbtxt: field 'warmup.batch_sizes[1]'",
       {"[1, max_batch_size=4]", "got 8"}},
      {"warmup batches out of order",
       "max_batch_size: 8\n" + io,
       "warmup { batch_sizes: [4, 2] }\n",
       "kiln.pbtxt: field 'warmup.batch_sizes[1]'",
       {"increasing order", "got 2"}},
      {"warmup batch without batching",
       io,
       "warmup { batch_sizes: [2] }\n",
       "kiln.pbtxt: field 'warmup.batch_sizes[0]'",
       {"max_batch_size is 0"}},
      {"settle tolerance above 1",
       io,
       "warmup { settle_tolerance: 1.5 }\n",
       "kiln.pbtxt: field 'warmup.settle_tolerance'",
       {"(0, 1]", "got 1.5"}},
      {"settling cap below the minimum calls",
       io,
       "warmup { calls_per_shape: 10 max_calls_per_shape: 4 }\n",
       "kiln.pbtxt: field 'warmup.max_calls_per_shape'",
       {"calls_per_shape=10", "got 4"}},
      {"settling cap below a model_warmup count",
       kGoodConfig + Sample("batch_size: 1 count: 9", "data_type: TYPE_FP32 dims: [ 16 ]"),
       "warmup { max_calls_per_shape: 4 }\n",
       "kiln.pbtxt: field 'warmup.max_calls_per_shape'",
       {"calls_per_shape=9", "got 4"}},
      {"negative steady calls",
       io,
       "warmup { steady_calls: -1 }\n",
       "kiln.pbtxt: field 'warmup.steady_calls'",
       {"got -1"}},
      {"negative calls per shape",
       io,
       "warmup { calls_per_shape: -2 }\n",
       "kiln.pbtxt: field 'warmup.calls_per_shape'",
       {"got -2"}},
      {"name differs from its directory",
       "name: \"other\"\n" + io,
       "",
       "config.pbtxt: field 'name'",
       {"\"m\"", "got \"other\""}},
      {"no outputs",
       "input [ { name: \"input\" data_type: TYPE_FP32 dims: [ 16 ] } ]\n",
       "",
       "config.pbtxt: field 'output'",
       {"at least one tensor"}},
      {"no inputs",
       "output [ { name: \"output\" data_type: TYPE_FP32 dims: [ 4 ] } ]\n",
       "",
       "config.pbtxt: field 'input'",
       {"at least one tensor"}},
      {"duplicate input names",
       "input [ { name: \"x\" data_type: TYPE_FP32 dims: [ 1 ] },\n"
       "        { name: \"x\" data_type: TYPE_FP32 dims: [ 1 ] } ]\n"
       "output [ { name: \"y\" data_type: TYPE_FP32 dims: [ 1 ] } ]\n",
       "",
       "config.pbtxt: field 'input[1].name'",
       {"unique", "\"x\" twice"}},
      {"empty tensor name",
       "input [ { data_type: TYPE_FP32 dims: [ 1 ] } ]\n"
       "output [ { name: \"y\" data_type: TYPE_FP32 dims: [ 1 ] } ]\n",
       "",
       "config.pbtxt: field 'input[0].name'",
       {"non-empty"}},
      {"variable dim without sequence lengths",
       "max_batch_size: 2\n"
       "input [ { name: \"ids\" data_type: TYPE_INT64 dims: [ -1 ] } ]\n"
       "output [ { name: \"y\" data_type: TYPE_FP32 dims: [ 1 ] } ]\n",
       "",
       "kiln.pbtxt: field 'warmup.sequence_lengths'",
       {"\"ids\" has a variable (-1) dimension", "config.pbtxt's model_warmup"}},
      {"tokenizer model with another input",
       "max_batch_size: 2\n" + kTextModelIo +
           "input [ { name: \"extra\" data_type: TYPE_FP32 dims: [ 1 ] } ]\n",
       "tokenizer { model_file: \"model.pt\" }\n",
       "kiln.pbtxt: field 'tokenizer'",
       {"another input \"extra\""}},
      {"tokenizer text input named like a model input",
       text_io,
       "tokenizer { model_file: \"model.pt\" text_input: \"input_ids\" }\n",
       "kiln.pbtxt: field 'tokenizer.text_input'",
       {"\"input_ids\""}},
      {"negative tokenizer max length",
       text_io,
       "tokenizer { model_file: \"model.pt\" max_length: -4 }\n",
       "kiln.pbtxt: field 'tokenizer.max_length'",
       {"got -4"}},
      {"negative pad id",
       text_io,
       "tokenizer { model_file: \"model.pt\" pad_id: -1 }\n",
       "kiln.pbtxt: field 'tokenizer.pad_id'",
       {"an id >= 0", "got -1"}},
      {"GPUs listed for a CPU instance",
       "instance_group [ { count: 2 kind: KIND_CPU gpus: [ 0 ] } ]\n" + io,
       "",
       "config.pbtxt: field 'instance_group[0].gpus'",
       {"KIND_CPU", "got [0]"}},
      {"quorum above the instance count",
       "instance_group [ { count: 1 }, { count: 1 } ]\n" + io,
       "readiness { quorum: 3 }\n",
       "kiln.pbtxt: field 'readiness.quorum'",
       {"instance_group.count=2", "got 3"}},
      {"a negative instance count",
       "instance_group [ { count: -1 } ]\n" + io,
       "",
       "config.pbtxt: field 'instance_group[0].count'",
       {"a count in [1, 4096]", "got -1"}},
      {"instances past the cap in all",
       "instance_group [ { count: 4000 kind: KIND_GPU gpus: [ 0, 1 ] } ]\n" + io,
       "",
       "config.pbtxt: field 'instance_group'",
       {"at most 4096 instances in all (count x gpus)", "got 8000"}},
      {"a preferred batch size over max_batch_size",
       "dynamic_batching { preferred_batch_size: [ 2, 16 ] }\n" + kGoodConfig,
       "",
       "config.pbtxt: field 'dynamic_batching.preferred_batch_size[1]'",
       {"a size in [1, max_batch_size=8]", "got 16"}},
      {"a queue delay over an hour",
       "dynamic_batching { max_queue_delay_microseconds: 18446744073709551615 }\n" + io,
       "",
       "config.pbtxt: field 'dynamic_batching.max_queue_delay_microseconds'",
       {"a delay of at most an hour", "got 18446744073709551615"}},
      {"min_ready above the quorum",
       "instance_group [ { count: 4 } ]\n" + io,
       "readiness { quorum: 2 min_ready: 3 }\n",
       "kiln.pbtxt: field 'readiness.min_ready'",
       {"at most readiness.quorum", "got 3"}},
      {"min_ready above the instance count (quorum all)",
       "instance_group [ { count: 2 } ]\n" + io,
       "readiness { min_ready: 3 }\n",
       "kiln.pbtxt: field 'readiness.min_ready'",
       {"got 3"}},
      {"a negative compute timeout",
       io,
       "supervision { compute_timeout_ms: -5 }\n",
       "kiln.pbtxt: field 'supervision.compute_timeout_ms'",
       {"a duration > 0 ms", "got -5"}},
      {"a negative min_ready",
       io,
       "readiness { min_ready: -1 }\n",
       "kiln.pbtxt: field 'readiness.min_ready'",
       {"a worker count >= 1", "got -1"}},
      {"a negative quorum with an automatic count",
       io,
       "readiness { quorum: -2 }\n",
       "kiln.pbtxt: field 'readiness.quorum'",
       {"a worker count >= 1 (0 = all)", "got -2"}},
      {"negative check requests",
       io,
       "readiness { check_requests: -1 }\n",
       "kiln.pbtxt: field 'readiness.check_requests'",
       {"got -1"}},
      {"negative check concurrency",
       io,
       "readiness { check_concurrency: -3 }\n",
       "kiln.pbtxt: field 'readiness.check_concurrency'",
       {"got -3"}},
      {"negative check allowance",
       io,
       "readiness { check_allowance_ms: -1 }\n",
       "kiln.pbtxt: field 'readiness.check_allowance_ms'",
       {"a duration > 0 ms"}},
      {"cgroup share above 1",
       io,
       "memory { cgroup_share: 1.5 }\n",
       "kiln.pbtxt: field 'memory.cgroup_share'",
       {"(0, 1]", "got 1.5"}},
      {"a negative memory limit",
       io,
       "memory { limit_bytes: -1 }\n",
       "kiln.pbtxt: field 'memory.limit_bytes'",
       {"got -1"}},
      {"negative headroom",
       io,
       "memory { headroom_bytes: -1 }\n",
       "kiln.pbtxt: field 'memory.headroom_bytes'",
       {"got -1"}},
      {"p95 factor below 1",
       io,
       "readiness { max_p95_factor: 0.5 }\n",
       "kiln.pbtxt: field 'readiness.max_p95_factor'",
       {"got 0.5"}},
      {"tokenizer file missing",
       text_io,
       "tokenizer { model_file: \"missing.model\" }\n",
       "kiln.pbtxt: field 'tokenizer.model_file'",
       {"\"missing.model\""}},
      {"tokenizer without a file",
       text_io,
       "tokenizer { max_length: 8 }\n",
       "kiln.pbtxt: field 'tokenizer.model_file'",
       {"a SentencePiece model file name"}},
      // A name the file system refuses (ENAMETOOLONG) is a defect, not an exception (found by
      // the model_config fuzzer in CI).
      {"tokenizer file name too long for the file system",
       text_io,
       "tokenizer { model_file: \"" + std::string(300, 'x') + ".model\" }\n",
       "kiln.pbtxt: field 'tokenizer.model_file'",
       {"an existing file in", std::string(300, 'x')}},
      // Found by the model_config fuzzer: lengths that no input could take were kept, and the
      // largest shape the server planned for had a length the model cannot be given.
      {"sequence lengths for a model without a variable dim",
       io,
       "warmup { sequence_lengths: [ 4, 8 ] }\n",
       "kiln.pbtxt: field 'warmup.sequence_lengths'",
       {"no input has a variable (-1) dimension", "[4, 8]"}},
      {"sequence length over the tokenizer's max length",
       text_io,
       "warmup { sequence_lengths: [ 8, 64 ] }\n"
       "tokenizer { model_file: \"model.pt\" max_length: 32 }\n",
       "kiln.pbtxt: field 'warmup.sequence_lengths[1]'",
       {"[1, tokenizer.max_length=32]", "got 64"}},
      {"tokenizer feeding an input of fixed dims",
       absl::StrReplaceAll(text_io, {{"dims: [ -1 ]", "dims: [ 16 ]"}}),
       "tokenizer { model_file: \"model.pt\" }\n",
       "kiln.pbtxt: field 'tokenizer.ids_input'",
       {"a variable (-1) dimension", "\"input_ids\" of dims [16]", "field 'tokenizer.mask_input'"}},
      {"tokenizer feeding an input of a float type",
       absl::StrReplaceAll(text_io, {{"TYPE_INT64", "TYPE_FP32"}}),
       "tokenizer { model_file: \"model.pt\" }\n",
       "kiln.pbtxt: field 'tokenizer.ids_input'",
       {"TYPE_INT64 or TYPE_INT32", "\"input_ids\" of TYPE_FP32"}},
      {"tokenizer file outside the version directory",
       text_io,
       "tokenizer { model_file: \"../../config.pbtxt\" }\n",
       "kiln.pbtxt: field 'tokenizer.model_file'",
       {"no '/'", "\"../../config.pbtxt\""}},
      {"tokenizer feeding a missing input",
       "input [ { name: \"ids\" data_type: TYPE_INT64 dims: [ -1 ] } ]\n"
       "output [ { name: \"y\" data_type: TYPE_FP32 dims: [ 1 ] } ]\n",
       "warmup { sequence_lengths: [ 4 ] }\n"
       "tokenizer { model_file: \"model.pt\" ids_input: \"ids\" }\n",
       "kiln.pbtxt: field 'tokenizer.mask_input'",
       {"\"attention_mask\""}},
      {"a specific version that does not exist",
       "version_policy { specific { versions: [ 1, 4 ] } }\n" + io,
       "",
       "config.pbtxt: version directory",
       {"/m/4 does not exist"}},
      {"a specific version below 1",
       "version_policy { specific { versions: [ 0 ] } }\n" + io,
       "",
       "config.pbtxt: field 'version_policy.specific.versions'",
       {"versions >= 1", "got 0"}},
      {"no specific version",
       "version_policy { specific { } }\n" + io,
       "",
       "config.pbtxt: field 'version_policy.specific.versions'",
       {"at least one version"}},
      {"INTRA_OP_THREAD_COUNT not a number",
       kGoodConfig + Parameter("INTRA_OP_THREAD_COUNT", "x"),
       "",
       "config.pbtxt: field 'parameters[\"INTRA_OP_THREAD_COUNT\"]'",
       {"got \"x\""}},
      {"a boolean parameter not a boolean",
       kGoodConfig + Parameter("INFERENCE_MODE", "on"),
       "",
       "config.pbtxt: field 'parameters[\"INFERENCE_MODE\"]'",
       {"got \"on\""}},
      {"a default_model_filename with a '/'",
       kGoodConfig + "default_model_filename: \"a/model.pt\"\n",
       "",
       "config.pbtxt: field 'default_model_filename'",
       {"no '/'"}},
      {"a missing label file",
       "input [ { name: \"x\" data_type: TYPE_FP32 dims: [ 1 ] } ]\n"
       "output [ { name: \"y\" data_type: TYPE_FP32 dims: [ 1 ] label_filename: \"l.txt\" } ]\n",
       "",
       "config.pbtxt: field 'output[0].label_filename'",
       {"got \"l.txt\""}},
  };
  for (const BadConfig& bad : cases) {
    SECTION(bad.what) {
      TempDir tmp;
      const std::string message = LoadError(tmp, bad.config, bad.settings);
      INFO(message);
      CHECK_THAT(message, Contains(tmp.path() + "/m/" + bad.at));
      for (const std::string& expected : bad.expected) CHECK_THAT(message, Contains(expected));
    }
  }
}

// ---- files and repositories ----------------------------------------------------------------

TEST_CASE("a missing model file is an error naming it", "[config]") {
  TempDir tmp;
  absl::StatusOr<ModelSpec> spec =
      LoadModel(WriteModel(tmp, "tiny", kGoodConfig, "", /*with_model_file=*/false));
  REQUIRE_FALSE(spec.ok());
  CHECK_THAT(std::string(spec.status().message()), Contains("no version directory"));

  tmp.WriteFile("tiny/1/other.bin", "");
  spec = LoadModel(tmp.path() + "/tiny");
  REQUIRE_FALSE(spec.ok());
  CHECK_THAT(std::string(spec.status().message()),
             Contains("model file " + tmp.path() + "/tiny/1/model.pt does not exist"));
}

TEST_CASE("a missing config is NotFound", "[config]") {
  TempDir tmp;
  absl::StatusOr<ModelSpec> spec = LoadModel(tmp.path() + "/absent");
  REQUIRE_FALSE(spec.ok());
  CHECK(spec.status().code() == absl::StatusCode::kNotFound);
  CHECK_THAT(std::string(spec.status().message()), Contains("absent/config.pbtxt"));
}

TEST_CASE("several defects in one config are all reported", "[config]") {
  TempDir tmp;
  const std::string message = LoadError(tmp, R"cfg(
    max_batch_size: -2
    input [ { name: "input" data_type: TYPE_FP32 dims: [ -5 ] } ]
    sequence_batching { }
  )cfg");
  CHECK_THAT(message, Contains("'max_batch_size'"));
  CHECK_THAT(message, Contains("'input[0].dims[0]'"));
  CHECK_THAT(message, Contains("'output'"));
  CHECK_THAT(message, Contains("config.pbtxt:4: field 'sequence_batching'"));
}

TEST_CASE("a repository loads every model, sorted, and reports every bad one", "[config]") {
  TempDir tmp;
  WriteModel(tmp, "b", kGoodConfig, "warmup { calls_per_shape: 4 }\n");
  WriteModel(tmp, "a",
             "backend: \"pytorch\"\n"
             "input [ { name: \"x\" data_type: TYPE_FP32 dims: [ 2 ] } ]\n"
             "output [ { name: \"y\" data_type: TYPE_FP32 dims: [ 2 ] } ]\n");
  tmp.WriteFile("a/2/model.pt", "torchscript bytes");
  tmp.WriteFile("not-a-model/readme.txt", "ignored: no config.pbtxt");
  tmp.WriteFile("settings-only/kiln.pbtxt", "ignored: no config.pbtxt");
  absl::StatusOr<std::vector<ModelSpec>> specs = LoadModelRepository(tmp.path());
  INFO(specs.status());
  REQUIRE(specs.ok());
  REQUIRE(specs->size() == 2);
  CHECK((*specs)[0].config.name() == "a");
  CHECK((*specs)[0].version == 2);
  CHECK((*specs)[1].config.name() == "b");
  CHECK((*specs)[1].config.warmup().calls_per_shape() == 4);

  absl::StatusOr<std::map<std::string, absl::StatusOr<std::vector<ModelSpec>>>> scanned =
      ScanRepository(tmp.path());
  REQUIRE(scanned.ok());
  CHECK(scanned->size() == 2);

  WriteModel(tmp, "c", "max_batch_size: -1\n");
  WriteModel(tmp, "d", "nonsense {\n");
  WriteModel(tmp, "e", kGoodConfig, "warmpu { }\n");
  specs = LoadModelRepository(tmp.path());
  REQUIRE_FALSE(specs.ok());
  const std::string message(specs.status().message());
  CHECK_THAT(message, Contains("/c/config.pbtxt"));
  CHECK_THAT(message, Contains("/d/config.pbtxt"));
  CHECK_THAT(message, Contains("/e/kiln.pbtxt"));
}

TEST_CASE("an empty or missing repository is an error", "[config]") {
  TempDir tmp;
  absl::StatusOr<std::vector<ModelSpec>> specs = LoadModelRepository(tmp.path());
  REQUIRE_FALSE(specs.ok());
  CHECK_THAT(std::string(specs.status().message()), Contains("holds no model"));
  specs = LoadModelRepository(tmp.path() + "/nowhere");
  REQUIRE_FALSE(specs.ok());
  CHECK_THAT(std::string(specs.status().message()), Contains("is not a directory"));
}

TEST_CASE("the demo model repository loads", "[config][demo]") {
  absl::StatusOr<std::vector<ModelSpec>> specs = LoadModelRepository(kiln::testing::ModelsDir());
  INFO(specs.status());
  REQUIRE(specs.ok());
  std::vector<std::string> names;
  for (const ModelSpec& spec : *specs) {
    names.push_back(spec.config.name());
    CHECK_FALSE(spec.weights_path.empty());
    CHECK(spec.config.platform() == "pytorch_libtorch");
    CHECK(spec.triton.backend() == "pytorch");
    CHECK_FALSE(spec.settings_path.empty());
    CHECK(spec.notes.empty());
  }
  CHECK(names == std::vector<std::string>{"mlp", "resnet18", "resnet50", "textcls"});
  for (const ModelSpec& spec : *specs) {
    if (spec.config.name() == "textcls") {
      CHECK_FALSE(spec.tokenizer_path.empty());
      CHECK(spec.config.warmup().sequence_lengths_size() == 4);
    }
  }
}

}  // namespace
}  // namespace kiln
