#include "common/model_config_loader.h"

#include <catch2/catch.hpp>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_replace.h"
#include "tests/test_paths.h"

namespace kiln {
namespace {

using Catch::Matchers::Contains;
using kiln::testing::TempDir;

// No name: it defaults to the directory's.
constexpr char kGoodConfig[] = R"pb(
  max_batch_size: 8
  input {
    name: "input"
    data_type: TYPE_FP32
    dims: [ 16 ]
  }
  output {
    name: "output"
    data_type: TYPE_FP32
    dims: [ 4 ]
  }
)pb";

// The inputs and output of a text model fed by a tokenizer.
const std::string kTextModelIo = R"pb(
  input {
    name: "input_ids"
    data_type: TYPE_INT64
    dims: [ -1 ]
  }
  input {
    name: "attention_mask"
    data_type: TYPE_INT64
    dims: [ -1 ]
  }
  output {
    name: "logits"
    data_type: TYPE_FP32
    dims: [ 3 ]
  }
)pb";

// Writes <tmp>/<name>/config.pbtxt with `config` and, unless told otherwise, 1/model.pt.
std::string WriteModel(const TempDir& tmp, const std::string& name, const std::string& config,
                       bool with_model_file = true) {
  tmp.WriteFile(name + "/config.pbtxt", config);
  if (with_model_file) tmp.WriteFile(name + "/1/model.pt", "torchscript bytes");
  return tmp.path() + "/" + name;
}

TEST_CASE("a minimal config gets every default resolved", "[config]") {
  TempDir tmp;
  absl::StatusOr<ModelSpec> spec = LoadModel(WriteModel(tmp, "tiny", kGoodConfig));
  REQUIRE(spec.ok());
  const ModelConfig& config = spec->config;
  CHECK(config.name() == "tiny");
  CHECK(config.platform() == "torchscript");
  CHECK(config.instance_group().count() == 0);  // automatic: the master sizes it to its CPUs
  CHECK(config.instance_group().intra_op_threads() == 0);
  CHECK(config.instance_group().kind() == InstanceConfig::KIND_CPU);
  CHECK(config.warmup().enabled());
  CHECK(std::vector<int32_t>(config.warmup().batch_sizes().begin(),
                             config.warmup().batch_sizes().end()) == std::vector<int32_t>{1, 8});
  CHECK(config.warmup().calls_per_shape() == kDefaultWarmupCallsPerShape);
  CHECK(config.warmup().settle_tolerance() == Approx(kDefaultWarmupSettleTolerance));
  CHECK(config.warmup().max_calls_per_shape() == kDefaultWarmupMaxCallsPerShape);
  CHECK(config.warmup().steady_calls() == kDefaultWarmupSteadyCalls);
  CHECK_FALSE(config.dynamic_batching().enabled());  // no cross-request batcher in this version
  CHECK(config.dynamic_batching().max_queue_delay_us() == kDefaultMaxQueueDelayUs);
  CHECK(config.dynamic_batching().max_queue_size() == kDefaultMaxQueueSize);
  CHECK(config.dynamic_batching().pad_to_warmed());
  CHECK(config.memory().cgroup_share() == Approx(kDefaultCgroupShare));
  CHECK(config.readiness().quorum() == 0);  // all, however many the master starts
  CHECK(config.readiness().min_ready() == kDefaultReadinessMinReady);
  CHECK(config.supervision().compute_timeout_ms() == 0);  // derived from warmup
  CHECK(config.readiness().check_requests() == kDefaultReadinessCheckRequests);
  CHECK(config.readiness().max_p95_factor() == Approx(kDefaultReadinessMaxP95Factor));
  CHECK_FALSE(config.has_tokenizer());
  CHECK(spec->version == 1);
  CHECK(spec->model_path == tmp.path() + "/tiny/1/model.pt");
  CHECK(spec->weights_path.empty());
  CHECK(spec->tokenizer_path.empty());
}

TEST_CASE("explicit values survive, and the highest version is served", "[config]") {
  TempDir tmp;
  const std::string dir = WriteModel(tmp, "text", kTextModelIo + R"pb(
    max_batch_size: 4
    instance_group { count: 3 intra_op_threads: 2 }
    warmup {
      batch_sizes: [ 1, 2, 4 ]
      sequence_lengths: [ 8, 32 ]
      calls_per_shape: 5
    }
    dynamic_batching { enabled: false max_queue_delay_us: 0 }
    readiness { quorum: 2 min_ready: 2 }
    tokenizer { model_file: "spm.model" max_length: 32 }
  )pb");
  tmp.WriteFile("text/7/model.pt", "newer");
  tmp.WriteFile("text/7/spm.model", "spm");
  tmp.WriteFile("text/7/model.safetensors", "weights");
  absl::StatusOr<ModelSpec> spec = LoadModel(dir);
  REQUIRE(spec.ok());
  CHECK(spec->version == 7);
  CHECK(spec->config.version() == 7);
  CHECK(spec->weights_path == dir + "/7/model.safetensors");
  CHECK(spec->tokenizer_path == dir + "/7/spm.model");
  CHECK(spec->config.instance_group().count() == 3);
  CHECK(spec->config.warmup().calls_per_shape() == 5);
  CHECK_FALSE(spec->config.dynamic_batching().enabled());
  CHECK(spec->config.dynamic_batching().max_queue_delay_us() == 0);
  CHECK(spec->config.readiness().quorum() == 2);
  CHECK(spec->config.readiness().min_ready() == 2);
  CHECK(spec->config.tokenizer().ids_input() == "input_ids");
  CHECK(spec->config.tokenizer().pad_id() == 0);
}

TEST_CASE("version_policy serves the latest N, all, or specific version directories", "[config]") {
  TempDir tmp;
  // Directories 1, 2, 5 and 10 (numbers, not names: 10 is the newest), and one that is no
  // version.
  const std::string dir = WriteModel(tmp, "m", "");
  for (const char* version : {"2", "5", "10"}) {
    tmp.WriteFile(std::string("m/") + version + "/model.pt", "torchscript bytes");
  }
  tmp.WriteFile("m/notes/model.pt", "not a version");
  const auto served = [&](const std::string& policy) {
    tmp.WriteFile("m/config.pbtxt", std::string(kGoodConfig) + policy);
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
  CHECK(served("version: 2") == std::vector<int64_t>{2});
  absl::StatusOr<ModelSpec> newest = LoadModel(dir);  // the last policy: version 2
  REQUIRE(newest.ok());
  CHECK(newest->version == 2);
}

TEST_CASE("a tokenizer without sequence lengths warms its max length", "[config]") {
  TempDir tmp;
  const std::string dir = WriteModel(tmp, "text", kTextModelIo + R"pb(
    max_batch_size: 2
    tokenizer { model_file: "spm.model" max_length: 64 }
  )pb");
  tmp.WriteFile("text/1/spm.model", "spm");
  absl::StatusOr<ModelSpec> spec = LoadModel(dir);
  REQUIRE(spec.ok());
  REQUIRE(spec->config.warmup().sequence_lengths().size() == 1);
  CHECK(spec->config.warmup().sequence_lengths(0) == 64);
}

struct BadConfig {
  const char* what;
  std::string config;
  std::vector<std::string> expected;  // substrings of the error message
};

TEST_CASE("every bad value is an error naming the file, the field and what was expected",
          "[config]") {
  const std::string io = R"pb(
    input {
      name: "input"
      data_type: TYPE_FP32
      dims: [ 16 ]
    }
    output {
      name: "output"
      data_type: TYPE_FP32
      dims: [ 4 ]
    }
  )pb";
  const std::string text_io = "max_batch_size: 2\n" + kTextModelIo;
  const std::vector<BadConfig> cases = {
      {"unknown field",
       "max_batch_size: 8\nbogus_field: 3\n" + io,
       {"config.pbtxt:2:", "bogus_field"}},
      {"unknown datatype",
       R"pb(
         input {
           name: "input"
           data_type: TYPE_FLOAT
           dims: [ 16 ]
         }
         output {
           name: "output"
           data_type: TYPE_FP32
           dims: [ 4 ]
         })pb",
       {"config.pbtxt:", "Unknown enumeration value of \"TYPE_FLOAT\""}},
      // proto3's text format takes any number for an enum (found by the model_config fuzzer).
      {"datatype given as a number no type has",
       "input { name: \"input\" data_type: TYPE_FP16 dims: [ 16 ] }\n"
       "output { name: \"output\" data_type: 32 dims: [ 4 ] }\n",
       {"config.pbtxt:2:", "field 'output[0].data_type': 32 is not a DataType (expected one of",
        "TYPE_BF16"}},
      {"instance kind and warmup data given as numbers",
       "instance_group { kind: 7 }\nwarmup { data: -1 }\n" + io,
       {"config.pbtxt:1:", "field 'instance_group.kind': 7 is not a Kind (expected one of KIND_CPU",
        "config.pbtxt:2:", "field 'warmup.data': -1 is not a Data"}},
      {"missing datatype",
       R"pb(
         input {
           name: "input"
           dims: [ 16 ]
         }
         output {
           name: "output"
           data_type: TYPE_FP32
           dims: [ 4 ]
         })pb",
       {"field 'input[0].data_type'", "TYPE_INVALID"}},
      {"negative dim",
       R"pb(
         input {
           name: "input"
           data_type: TYPE_FP32
           dims: [ 16, -3 ]
         }
         output {
           name: "output"
           data_type: TYPE_FP32
           dims: [ 4 ]
         })pb",
       {"field 'input[0].dims[1]'", "a positive size or -1", "got -3"}},
      {"zero dim",
       R"pb(
         input {
           name: "input"
           data_type: TYPE_FP32
           dims: [ 16 ]
         }
         output {
           name: "output"
           data_type: TYPE_FP32
           dims: [ 0 ]
         })pb",
       {"field 'output[0].dims[0]'", "got 0"}},
      {"negative max_batch_size",
       "max_batch_size: -1\n" + io,
       {"field 'max_batch_size'", "got -1"}},
      {"warmup batch over max_batch_size",
       "max_batch_size: 4\nwarmup { batch_sizes: [1, 8] }\n" + io,
       {"field 'warmup.batch_sizes[1]'", "[1, max_batch_size=4]", "got 8"}},
      {"warmup batches out of order",
       "max_batch_size: 8\nwarmup { batch_sizes: [4, 2] }\n" + io,
       {"field 'warmup.batch_sizes[1]'", "increasing order", "got 2"}},
      {"warmup batch without batching",
       "warmup { batch_sizes: [2] }\n" + io,
       {"field 'warmup.batch_sizes[0]'", "max_batch_size is 0"}},
      {"settle tolerance above 1",
       "warmup { settle_tolerance: 1.5 }\n" + io,
       {"field 'warmup.settle_tolerance'", "(0, 1]", "got 1.5"}},
      {"settling cap below the minimum calls",
       "warmup { calls_per_shape: 10 max_calls_per_shape: 4 }\n" + io,
       {"field 'warmup.max_calls_per_shape'", "calls_per_shape=10", "got 4"}},
      {"negative steady calls",
       "warmup { steady_calls: -1 }\n" + io,
       {"field 'warmup.steady_calls'", "got -1"}},
      {"negative calls per shape",
       "warmup { calls_per_shape: -2 }\n" + io,
       {"field 'warmup.calls_per_shape'", "got -2"}},
      {"name differs from its directory",
       "name: \"other\"\n" + io,
       {"field 'name'", "\"m\"", "got \"other\""}},
      {"unsupported platform",
       "platform: \"onnx\"\n" + io,
       {"field 'platform'", "\"torchscript\"", "\"onnx\""}},
      {"no outputs",
       R"pb(input {
              name: "input"
              data_type: TYPE_FP32
              dims: [ 16 ]
            })pb",
       {"field 'output'", "at least one tensor"}},
      {"duplicate input names",
       R"pb(
         input {
           name: "x"
           data_type: TYPE_FP32
           dims: [ 1 ]
         }
         input {
           name: "x"
           data_type: TYPE_FP32
           dims: [ 1 ]
         }
         output {
           name: "y"
           data_type: TYPE_FP32
           dims: [ 1 ]
         })pb",
       {"field 'input[1].name'", "unique", "\"x\" twice"}},
      {"empty tensor name",
       R"pb(
         input {
           data_type: TYPE_FP32
           dims: [ 1 ]
         }
         output {
           name: "y"
           data_type: TYPE_FP32
           dims: [ 1 ]
         })pb",
       {"field 'input[0].name'", "non-empty"}},
      {"variable dim without sequence lengths",
       R"pb(
         max_batch_size: 2
         input {
           name: "ids"
           data_type: TYPE_INT64
           dims: [ -1 ]
         }
         output {
           name: "y"
           data_type: TYPE_FP32
           dims: [ 1 ]
         })pb",
       {"field 'warmup.sequence_lengths'", "\"ids\" has a variable (-1) dimension"}},
      {"BYTES input",
       R"pb(
         input {
           name: "text"
           data_type: TYPE_BYTES
           dims: [ 1 ]
         }
         output {
           name: "y"
           data_type: TYPE_FP32
           dims: [ 1 ]
         })pb",
       {"field 'input[0].data_type'", "declared by a tokenizer block"}},
      {"tokenizer model with another input",
       "max_batch_size: 2\n" + kTextModelIo +
           "input { name: \"extra\" data_type: TYPE_FP32 dims: [ 1 ] }\n"
           "tokenizer { model_file: \"model.pt\" }",
       {"field 'tokenizer'", "another input \"extra\""}},
      {"tokenizer text input named like a model input",
       "max_batch_size: 2\n" + kTextModelIo +
           "tokenizer { model_file: \"model.pt\" text_input: \"input_ids\" }",
       {"field 'tokenizer.text_input'", "\"input_ids\""}},
      {"GPUs listed for a CPU instance",
       "instance_group { count: 2 gpus: [0] }\n" + io,
       {"field 'instance_group.gpus'", "KIND_CPU"}},
      {"quorum above the instance count",
       "instance_group { count: 2 }\nreadiness { quorum: 3 }\n" + io,
       {"field 'readiness.quorum'", "instance_group.count=2", "got 3"}},
      {"a negative instance count",
       "instance_group { count: -1 }\n" + io,
       {"field 'instance_group.count'", "a count >= 1 (0 = automatic)", "got -1"}},
      {"min_ready above the quorum",
       "instance_group { count: 4 }\nreadiness { quorum: 2 min_ready: 3 }\n" + io,
       {"field 'readiness.min_ready'", "at most readiness.quorum", "got 3"}},
      {"min_ready above the instance count (quorum all)",
       "instance_group { count: 2 }\nreadiness { min_ready: 3 }\n" + io,
       {"field 'readiness.min_ready'", "got 3"}},
      {"a negative compute timeout",
       "supervision { compute_timeout_ms: -5 }\n" + io,
       {"field 'supervision.compute_timeout_ms'", "a duration > 0 ms", "got -5"}},
      {"a negative min_ready",
       "readiness { min_ready: -1 }\n" + io,
       {"field 'readiness.min_ready'", "a worker count >= 1", "got -1"}},
      {"a negative quorum with an automatic count",
       "readiness { quorum: -2 }\n" + io,
       {"field 'readiness.quorum'", "a worker count >= 1 (0 = all)", "got -2"}},
      {"cgroup share above 1",
       "memory { cgroup_share: 1.5 }\n" + io,
       {"field 'memory.cgroup_share'", "(0, 1]", "got 1.5"}},
      {"p95 factor below 1",
       "readiness { max_p95_factor: 0.5 }\n" + io,
       {"field 'readiness.max_p95_factor'", "got 0.5"}},
      {"tokenizer file missing",
       text_io + "tokenizer { model_file: \"missing.model\" }",
       {"field 'tokenizer.model_file'", "\"missing.model\""}},
      // A name the file system refuses (ENAMETOOLONG) is a defect, not an exception (found by
      // the model_config fuzzer in CI).
      {"tokenizer file name too long for the file system",
       text_io + "tokenizer { model_file: \"" + std::string(300, 'x') + ".model\" }",
       {"field 'tokenizer.model_file'", "an existing file in", std::string(300, 'x')}},
      // Found by the model_config fuzzer: lengths that no input could take were kept, and the
      // largest shape the server planned for had a length the model cannot be given.
      {"sequence lengths for a model without a variable dim",
       "warmup { sequence_lengths: [ 4, 8 ] }\n" + io,
       {"field 'warmup.sequence_lengths'", "no input has a variable (-1) dimension", "[4, 8]"}},
      {"tokenizer feeding an input of fixed dims",
       absl::StrReplaceAll(text_io, {{"dims: [ -1 ]", "dims: [ 16 ]"}}) +
           "tokenizer { model_file: \"model.pt\" }",
       {"field 'tokenizer.ids_input'", "a variable (-1) dimension", "\"input_ids\" of dims [16]",
        "field 'tokenizer.mask_input'"}},
      {"tokenizer file outside the version directory",
       text_io + "tokenizer { model_file: \"../../config.pbtxt\" }",
       {"field 'tokenizer.model_file'", "no '/'", "\"../../config.pbtxt\""}},
      {"tokenizer feeding a missing input",
       R"pb(
         input {
           name: "ids"
           data_type: TYPE_INT64
           dims: [ -1 ]
         }
         output {
           name: "y"
           data_type: TYPE_FP32
           dims: [ 1 ]
         }
         warmup { sequence_lengths: [ 4 ] }
         tokenizer { model_file: "model.pt" ids_input: "ids" })pb",
       {"field 'tokenizer.mask_input'", "\"attention_mask\""}},
      {"explicit version that does not exist",
       "version: 3\n" + io,
       {"version directory", "/m/3 does not exist"}},
      {"a specific version that does not exist",
       "version_policy { specific { versions: [ 1, 4 ] } }\n" + io,
       {"version directory", "/m/4 does not exist"}},
      {"a specific version below 1",
       "version_policy { specific { versions: [ 0 ] } }\n" + io,
       {"field 'version_policy.specific.versions'", "versions >= 1", "got 0"}},
      {"no specific version",
       "version_policy { specific { } }\n" + io,
       {"field 'version_policy.specific.versions'", "at least one version"}},
      {"both version and version_policy",
       "version: 1\nversion_policy { all { } }\n" + io,
       {"set either 'version' or 'version_policy', not both"}},
  };
  for (const BadConfig& bad : cases) {
    SECTION(bad.what) {
      TempDir tmp;
      absl::StatusOr<ModelSpec> spec = LoadModel(WriteModel(tmp, "m", bad.config));
      REQUIRE_FALSE(spec.ok());
      CHECK(spec.status().code() == absl::StatusCode::kInvalidArgument);
      const std::string message(spec.status().message());
      CHECK_THAT(message, Contains(tmp.path() + "/m/config.pbtxt"));
      for (const std::string& expected : bad.expected) CHECK_THAT(message, Contains(expected));
    }
  }
}

// What the config accepts works: a value asking for something this version does not have is
// refused when the config is loaded (not later, in a forked worker), naming the file and field.
TEST_CASE("what is not built is refused at load time, naming the file and the field", "[config]") {
  struct NotBuilt {
    std::string what;
    std::string config;
    std::string field;    // the one field refused
    std::string instead;  // part of the advice
  };
  const std::string good = kGoodConfig;  // max_batch_size: 8
  const std::string unbatched = absl::StrReplaceAll(good, {{"max_batch_size: 8", ""}});
  const std::vector<NotBuilt> cases = {
      {"DATA_FILE warmup data, even with an existing file", good + "warmup { data: DATA_FILE }\n",
       "warmup.data", "DATA_ZERO or DATA_RANDOM"},
      {"a warmup data file", good + "warmup { data_file: \"inputs.safetensors\" }\n",
       "warmup.data_file", "remove it"},
      {"cross-request dynamic batching", good + "dynamic_batching { enabled: true }\n",
       "dynamic_batching.enabled", "leave enabled unset or false"},
      {"cross-request dynamic batching without a batch dimension",
       unbatched + "dynamic_batching { enabled: true }\n", "dynamic_batching.enabled",
       "leave enabled unset or false"},
  };
  for (const NotBuilt& c : cases) {
    SECTION(c.what) {
      TempDir tmp;
      tmp.WriteFile("m/inputs.safetensors", "present, and still not read");
      absl::StatusOr<ModelSpec> spec = LoadModel(WriteModel(tmp, "m", c.config));
      REQUIRE_FALSE(spec.ok());
      CHECK(spec.status().code() == absl::StatusCode::kInvalidArgument);
      const std::string message(spec.status().message());
      INFO(message);
      CHECK_THAT(message, Contains(tmp.path() + "/m/config.pbtxt: field '" + c.field + "'"));
      CHECK_THAT(message, Contains("is not supported in this version"));
      CHECK_THAT(message, Contains(c.instead));
      CHECK(message.find('\n') == std::string::npos);  // that one defect only
    }
  }
  SECTION("DATA_FILE and its file are both named") {
    TempDir tmp;
    absl::StatusOr<ModelSpec> spec = LoadModel(WriteModel(
        tmp, "m",
        std::string(kGoodConfig) + "warmup { data: DATA_FILE data_file: \"x.safetensors\" }\n"));
    REQUIRE_FALSE(spec.ok());
    const std::string message(spec.status().message());
    CHECK_THAT(message, Contains("field 'warmup.data': DATA_FILE"));
    CHECK_THAT(message,
               Contains("field 'warmup.data_file': a warmup data file (\"x.safetensors\")"));
  }
}

// The fields next to those refused above work, and stay accepted: generated warmup data, a
// queue delay (a bound that is always met: no request waits for others), no batching.
TEST_CASE("the built neighbours of refused fields load", "[config]") {
  TempDir tmp;
  absl::StatusOr<ModelSpec> spec = LoadModel(WriteModel(tmp, "m", std::string(kGoodConfig) + R"pb(
    warmup { data: DATA_RANDOM }
    dynamic_batching {
      enabled: false
      max_queue_delay_us: 500
      max_queue_size: 16
      pad_to_warmed: false
    }
  )pb"));
  REQUIRE(spec.ok());
  CHECK(spec->config.warmup().data() == WarmupConfig::DATA_RANDOM);
  CHECK_FALSE(spec->config.dynamic_batching().enabled());
  CHECK(spec->config.dynamic_batching().max_queue_delay_us() == 500);
  CHECK(spec->config.dynamic_batching().max_queue_size() == 16);
  CHECK_FALSE(spec->config.dynamic_batching().pad_to_warmed());
}

TEST_CASE("a missing model file is an error naming it", "[config]") {
  TempDir tmp;
  absl::StatusOr<ModelSpec> spec =
      LoadModel(WriteModel(tmp, "tiny", kGoodConfig, /*with_model_file=*/false));
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
  absl::StatusOr<ModelSpec> spec = LoadModel(WriteModel(tmp, "m", R"pb(
    max_batch_size: -2
    input {
      name: "input"
      data_type: TYPE_FP32
      dims: [ -5 ]
    }
  )pb"));
  REQUIRE_FALSE(spec.ok());
  const std::string message(spec.status().message());
  CHECK_THAT(message, Contains("'max_batch_size'"));
  CHECK_THAT(message, Contains("'input[0].dims[0]'"));
  CHECK_THAT(message, Contains("'output'"));
}

TEST_CASE("a repository loads every model, sorted, and reports every bad one", "[config]") {
  TempDir tmp;
  WriteModel(tmp, "b", kGoodConfig);
  WriteModel(tmp, "a", R"pb(
    input {
      name: "x"
      data_type: TYPE_FP32
      dims: [ 2 ]
    }
    output {
      name: "y"
      data_type: TYPE_FP32
      dims: [ 2 ]
    }
  )pb");
  tmp.WriteFile("not-a-model/readme.txt", "ignored: no config.pbtxt");
  absl::StatusOr<std::vector<ModelSpec>> specs = LoadModelRepository(tmp.path());
  REQUIRE(specs.ok());
  REQUIRE(specs->size() == 2);
  CHECK((*specs)[0].config.name() == "a");
  CHECK((*specs)[1].config.name() == "b");

  WriteModel(tmp, "c", "max_batch_size: -1\n");
  WriteModel(tmp, "d", "nonsense {\n");
  specs = LoadModelRepository(tmp.path());
  REQUIRE_FALSE(specs.ok());
  const std::string message(specs.status().message());
  CHECK_THAT(message, Contains("/c/config.pbtxt"));
  CHECK_THAT(message, Contains("/d/config.pbtxt"));
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
  REQUIRE(specs.ok());
  std::vector<std::string> names;
  for (const ModelSpec& spec : *specs) {
    names.push_back(spec.config.name());
    CHECK_FALSE(spec.weights_path.empty());
  }
  CHECK(names == std::vector<std::string>{"mlp", "resnet18", "resnet50", "textcls"});
  for (const ModelSpec& spec : *specs) {
    if (spec.config.name() == "textcls") CHECK_FALSE(spec.tokenizer_path.empty());
  }
}

}  // namespace
}  // namespace kiln
