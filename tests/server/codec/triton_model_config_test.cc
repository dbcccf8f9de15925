// A served model version as Triton's ModelConfig (the ModelConfig RPC): config.pbtxt as the loader
// read it, with Triton's autofill (name, platform, backend, default_model_filename,
// version_policy, instance counts), a text model's text input first and every input optional,
// and kiln's resolved settings in parameters["kiln_config"]. Each spec comes from the real loader
// over files written into a scratch repository.
#include "server/codec/triton_model_config.h"

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "common/model_config_loader.h"
#include "common/triton_config.h"
#include "google/protobuf/text_format.h"
#include "google/protobuf/util/message_differencer.h"
#include "proto/model_config.pb.h"
#include "proto/triton_model_config.pb.h"
#include "tests/test_paths.h"

namespace kiln {
namespace {

using google::protobuf::util::MessageDifferencer;
using kiln::testing::TempDir;

std::vector<int64_t> Dims(const google::protobuf::RepeatedField<int64_t>& dims) {
  return {dims.begin(), dims.end()};
}

template <typename T>
std::vector<T> Values(const google::protobuf::RepeatedField<T>& values) {
  return {values.begin(), values.end()};
}

// Writes <tmp>/<name>/config.pbtxt (and kiln.pbtxt when `settings` is not empty) with a
// placeholder model.pt in each of `versions` (and `extra_files` beside it), then loads every
// version the config serves.
std::vector<ModelSpec> LoadFromFiles(const TempDir& tmp, const std::string& name,
                                     const std::string& config, const std::string& settings = "",
                                     const std::vector<int>& versions = {1},
                                     const std::vector<std::string>& extra_files = {}) {
  tmp.WriteFile(name + "/config.pbtxt", config);
  if (!settings.empty()) tmp.WriteFile(name + "/kiln.pbtxt", settings);
  for (int version : versions) {
    const std::string dir = name + "/" + std::to_string(version) + "/";
    tmp.WriteFile(dir + "model.pt", "torchscript bytes");
    for (const std::string& file : extra_files) tmp.WriteFile(dir + file, "placeholder");
  }
  absl::StatusOr<std::vector<ModelSpec>> specs = LoadModelVersions(tmp.path() + "/" + name);
  INFO(specs.status().ToString());
  REQUIRE(specs.ok());
  REQUIRE_FALSE(specs->empty());
  return *std::move(specs);
}

// parameters["kiln_config"], parsed back as kiln.pbtxt's schema.
ModelSettings KilnSettings(const inference::ModelConfig& triton) {
  REQUIRE(triton.parameters().count(kKilnConfigParameter) == 1);
  ModelSettings settings;
  REQUIRE(google::protobuf::TextFormat::ParseFromString(
      triton.parameters().at(kKilnConfigParameter).string_value(), &settings));
  return settings;
}

// An mlp written with two instance groups, a warmup sample, parameters and dynamic batching.
constexpr char kMlpConfig[] = R"pb(
  backend: "pytorch"
  max_batch_size: 8 input
  [ {
    name: "input"
    data_type: TYPE_FP32
    dims: [ 16 ]
  }] output
  [ {
    name: "output"
    data_type: TYPE_FP32
    dims: [ 4 ]
  }] instance_group
  [ { count: 2 kind: KIND_CPU }
    , { kind: KIND_CPU }]
  parameters {
    key: "INTRA_OP_THREAD_COUNT"
    value { string_value: "2" }
  }
  parameters {
    key: "INFERENCE_MODE"
    value { string_value: "true" }
  } model_warmup
  [ {
    name: "rows"
    batch_size: 2
    count: 4
    inputs {
      key: "input"
      value {
        data_type: TYPE_FP32
        dims: [ 16 ]
        random_data: true
      }
    }
  }]
  dynamic_batching {
    preferred_batch_size: [ 4 ]
    max_queue_delay_microseconds: 100
    default_queue_policy { max_queue_size: 16 }
  }
)pb";

TEST_CASE("Triton's ModelConfig is config.pbtxt as loaded, with Triton's autofill",
          "[server][codec][triton]") {
  TempDir tmp;
  const ModelSpec spec = LoadFromFiles(tmp, "mlp", kMlpConfig).back();
  const inference::ModelConfig triton = ToTritonModelConfig(spec, 7);

  // What Triton fills in when it loads the model.
  CHECK(triton.name() == "mlp");
  CHECK(triton.platform() == "pytorch_libtorch");
  CHECK(triton.backend() == "pytorch");
  CHECK(triton.default_model_filename() == "model.pt");
  REQUIRE(triton.version_policy().has_latest());
  CHECK(triton.version_policy().latest().num_versions() == 1);

  // As written: both instance groups keep their counts (a group without one has 1), named.
  REQUIRE(triton.instance_group_size() == 2);
  CHECK(triton.instance_group(0).count() == 2);
  CHECK(triton.instance_group(1).count() == 1);
  CHECK(triton.instance_group(0).name() == "mlp_0");
  CHECK(triton.instance_group(1).name() == "mlp_1");
  for (const inference::ModelInstanceGroup& group : triton.instance_group()) {
    CHECK(group.kind() == inference::ModelInstanceGroup::KIND_CPU);
  }
  CHECK(triton.max_batch_size() == 8);
  REQUIRE(triton.input_size() == 1);
  CHECK(triton.input(0).name() == "input");
  CHECK(triton.input(0).data_type() == inference::TYPE_FP32);
  CHECK(Dims(triton.input(0).dims()) == std::vector<int64_t>{16});
  CHECK_FALSE(triton.input(0).optional());
  REQUIRE(triton.output_size() == 1);
  CHECK(Dims(triton.output(0).dims()) == std::vector<int64_t>{4});
  REQUIRE(triton.model_warmup_size() == 1);
  CHECK(MessageDifferencer::Equals(triton.model_warmup(0), spec.triton.model_warmup(0)));
  CHECK(triton.model_warmup(0).name() == "rows");
  CHECK(triton.model_warmup(0).batch_size() == 2);
  CHECK(MessageDifferencer::Equals(triton.dynamic_batching(), spec.triton.dynamic_batching()));
  CHECK(triton.dynamic_batching().max_queue_delay_microseconds() == 100);
  CHECK(triton.dynamic_batching().default_queue_policy().max_queue_size() == 16);
  CHECK(Values(triton.dynamic_batching().preferred_batch_size()) == std::vector<int32_t>{4});
  // The written parameters, plus kiln's.
  CHECK(triton.parameters_size() == 3);
  CHECK(triton.parameters().at("INTRA_OP_THREAD_COUNT").string_value() == "2");
  CHECK(triton.parameters().at("INFERENCE_MODE").string_value() == "true");

  // Nothing else changes: without the autofilled fields and kiln's parameter, config.pbtxt.
  inference::ModelConfig written = triton;
  written.clear_name();
  written.clear_platform();
  written.clear_default_model_filename();
  written.clear_version_policy();
  for (inference::ModelInstanceGroup& group : *written.mutable_instance_group()) {
    group.clear_name();
  }
  written.mutable_instance_group(1)->clear_count();
  written.mutable_parameters()->erase(kKilnConfigParameter);
  CHECK(MessageDifferencer::Equals(written, spec.triton));

  // kiln's settings, resolved: no kiln.pbtxt, so every value is a default or what config.pbtxt
  // implies (model_warmup's batch and count, dynamic_batching's preferred size, random data).
  const ModelSettings settings = KilnSettings(triton);
  const WarmupConfig& warmup = settings.warmup();
  CHECK(warmup.enabled());
  CHECK(warmup.pad_to_warmed());
  CHECK(Values(warmup.batch_sizes()) == std::vector<int32_t>{1, 2, 4, 8});
  CHECK(warmup.sequence_lengths().empty());
  CHECK(warmup.calls_per_shape() == 4);
  CHECK(warmup.max_calls_per_shape() == kDefaultWarmupMaxCallsPerShape);
  CHECK(warmup.steady_calls() == kDefaultWarmupSteadyCalls);
  CHECK(warmup.settle_tolerance() == Approx(kDefaultWarmupSettleTolerance));
  CHECK(warmup.data() == WarmupConfig::DATA_RANDOM);
  CHECK(settings.memory().cgroup_share() == Approx(kDefaultCgroupShare));
  CHECK(settings.readiness().min_ready() == kDefaultReadinessMinReady);
  CHECK(settings.readiness().check_requests() == kDefaultReadinessCheckRequests);
  CHECK(settings.readiness().check_concurrency() == kDefaultReadinessCheckConcurrency);
  CHECK(settings.readiness().max_p95_factor() == Approx(kDefaultReadinessMaxP95Factor));
  CHECK(settings.readiness().check_allowance_ms() == Approx(kDefaultReadinessCheckAllowanceMs));
  CHECK_FALSE(settings.has_tokenizer());
  CHECK(MessageDifferencer::Equals(warmup, spec.config.warmup()));
  CHECK(MessageDifferencer::Equals(settings.memory(), spec.config.memory()));
  CHECK(MessageDifferencer::Equals(settings.readiness(), spec.config.readiness()));
  CHECK(MessageDifferencer::Equals(settings.supervision(), spec.config.supervision()));
}

TEST_CASE("a single instance group, or none, counts the workers serving now",
          "[server][codec][triton]") {
  TempDir tmp;
  const std::string io = R"pb(
    max_batch_size: 4 input
    [ {
      name: "x"
      data_type: TYPE_BF16
      dims: [ 3 ]
    }] output
    [ {
      name: "y"
      data_type: TYPE_FP32
      dims: [ 1 ]
    }]
  )pb";
  SECTION("one group written with another count") {
    const ModelSpec spec =
        LoadFromFiles(tmp, "m", io + "instance_group [ { count: 2 kind: KIND_CPU } ]").back();
    CHECK(spec.config.instance_group().count() == 2);
    const inference::ModelConfig triton = ToTritonModelConfig(spec, 5);
    REQUIRE(triton.instance_group_size() == 1);
    CHECK(triton.instance_group(0).count() == 5);
    CHECK(triton.instance_group(0).name() == "m_0");
    CHECK(triton.instance_group(0).kind() == inference::ModelInstanceGroup::KIND_CPU);
    CHECK(triton.input(0).data_type() == inference::TYPE_BF16);
  }
  SECTION("no group: one of the live count") {
    const ModelSpec spec = LoadFromFiles(tmp, "m", io).back();
    CHECK(spec.config.instance_group().count() == 0);  // automatic
    const inference::ModelConfig triton = ToTritonModelConfig(spec, 3);
    REQUIRE(triton.instance_group_size() == 1);
    CHECK(triton.instance_group(0).count() == 3);
    CHECK(triton.instance_group(0).kind() == inference::ModelInstanceGroup::KIND_CPU);
    CHECK(triton.instance_group(0).gpus().empty());
  }
  SECTION("a GPU group: its count is per GPU, as Triton's") {
    const ModelSpec spec =
        LoadFromFiles(tmp, "m", io + "instance_group [ { kind: KIND_GPU gpus: [ 0, 1 ] } ]").back();
    CHECK(spec.config.instance_group().kind() == InstanceConfig::KIND_GPU);
    const inference::ModelConfig triton = ToTritonModelConfig(spec, 4);
    REQUIRE(triton.instance_group_size() == 1);
    CHECK(triton.instance_group(0).kind() == inference::ModelInstanceGroup::KIND_GPU);
    CHECK(Values(triton.instance_group(0).gpus()) == std::vector<int32_t>{0, 1});
    CHECK(triton.instance_group(0).count() == 2);
  }
}

TEST_CASE("Triton's ModelConfig keeps the version policy and model file name as written",
          "[server][codec][triton]") {
  TempDir tmp;
  const std::vector<ModelSpec> specs =
      LoadFromFiles(tmp, "m", R"pb(
                      name: "m"
                      platform: "pytorch_libtorch"
                      max_batch_size: 0 input
                      [ {
                        name: "x"
                        data_type: TYPE_INT32
                        dims: [ 2, 3 ]
                      }] output
                      [ {
                        name: "y"
                        data_type: TYPE_FP64
                        dims: [ 1 ]
                      }]
                      version_policy { specific { versions: [ 1, 3 ] } }
                      default_model_filename: "model.pt"
                    )pb",
                    "", {1, 2, 3});
  REQUIRE(specs.size() == 2);
  CHECK(specs.back().version == 3);
  const inference::ModelConfig triton = ToTritonModelConfig(specs.back(), 1);
  CHECK(triton.platform() == "pytorch_libtorch");
  CHECK(triton.backend() == "pytorch");
  CHECK(triton.default_model_filename() == "model.pt");
  CHECK(Dims(triton.version_policy().specific().versions()) == std::vector<int64_t>{1, 3});
  CHECK(triton.max_batch_size() == 0);
  CHECK(Dims(triton.input(0).dims()) == std::vector<int64_t>{2, 3});
  CHECK(triton.model_warmup().empty());
  CHECK(Values(KilnSettings(triton).warmup().batch_sizes()) == std::vector<int32_t>{1});
}

TEST_CASE("a text model lists its text input first and every input optional",
          "[server][codec][triton]") {
  TempDir tmp;
  const ModelSpec spec = LoadFromFiles(tmp, "textcls", R"pb(
                                         name: "textcls"
                                         backend: "pytorch"
                                         max_batch_size: 8 input
                                         [ {
                                           name: "input_ids"
                                           data_type: TYPE_INT64
                                           dims: [ -1 ]
                                         }
                                           , {
                                             name: "attention_mask"
                                             data_type: TYPE_INT64
                                             dims: [ -1 ]
                                           }] output
                                         [ {
                                           name: "logits"
                                           data_type: TYPE_FP32
                                           dims: [ 4 ]
                                         }] instance_group
                                         [ { count: 2 kind: KIND_CPU }]
                                       )pb",
                                       R"pb(
                                         warmup {
                                           batch_sizes: [ 1, 4 ]
                                           pad_to_warmed: false
                                         }
                                         memory { cgroup_share: 0.5 }
                                         tokenizer { model_file: "tokenizer.model" max_length: 64 }
                                       )pb",
                                       {1}, {"tokenizer.model"})
                             .back();
  const inference::ModelConfig triton = ToTritonModelConfig(spec, 3);

  // The text input the tokenizer adds (Triton's TYPE_STRING, one string a row), then the token
  // inputs; a request carries one or the other, so none is required.
  REQUIRE(triton.input_size() == 3);
  CHECK(triton.input(0).name() == "text");
  CHECK(triton.input(0).data_type() == inference::TYPE_STRING);
  CHECK(Dims(triton.input(0).dims()) == std::vector<int64_t>{1});
  CHECK(triton.input(1).name() == "input_ids");
  CHECK(triton.input(1).data_type() == inference::TYPE_INT64);
  CHECK(Dims(triton.input(1).dims()) == std::vector<int64_t>{-1});
  CHECK(triton.input(2).name() == "attention_mask");
  for (const inference::ModelInput& input : triton.input()) CHECK(input.optional());
  REQUIRE(triton.output_size() == 1);
  CHECK(triton.output(0).name() == "logits");
  REQUIRE(triton.instance_group_size() == 1);
  CHECK(triton.instance_group(0).count() == 3);

  // kiln.pbtxt as written, every default resolved.
  const ModelSettings settings = KilnSettings(triton);
  REQUIRE(settings.has_tokenizer());
  CHECK(settings.tokenizer().model_file() == "tokenizer.model");
  CHECK(settings.tokenizer().max_length() == 64);
  CHECK(settings.tokenizer().text_input() == "text");
  CHECK(settings.tokenizer().ids_input() == "input_ids");
  CHECK(settings.tokenizer().mask_input() == "attention_mask");
  CHECK(Values(settings.warmup().batch_sizes()) == std::vector<int32_t>{1, 4});
  CHECK(Values(settings.warmup().sequence_lengths()) == std::vector<int32_t>{64});
  CHECK(settings.warmup().has_pad_to_warmed());
  CHECK_FALSE(settings.warmup().pad_to_warmed());
  CHECK(settings.warmup().enabled());
  CHECK(settings.warmup().calls_per_shape() == kDefaultWarmupCallsPerShape);
  CHECK(settings.memory().cgroup_share() == Approx(0.5));
  CHECK(settings.readiness().check_requests() == kDefaultReadinessCheckRequests);
  CHECK(MessageDifferencer::Equals(settings.tokenizer(), spec.config.tokenizer()));
  CHECK(MessageDifferencer::Equals(settings.warmup(), spec.config.warmup()));
}

TEST_CASE("kiln_config holds only what kiln.pbtxt may: no model_warmup input files",
          "[server][codec][triton]") {
  TempDir tmp;
  tmp.WriteFile("m/warmup/row", std::string(16 * sizeof(float), '\0'));
  const ModelSpec spec = LoadFromFiles(tmp, "m", R"cfg(max_batch_size: 4
    input [ { name: "input" data_type: TYPE_FP32 dims: [ 16 ] } ]
    output [ { name: "output" data_type: TYPE_FP32 dims: [ 4 ] } ]
    model_warmup [ { batch_size: 1 inputs { key: "input"
      value { data_type: TYPE_FP32 dims: [ 16 ] input_data_file: "row" } } } ]
  )cfg").back();
  REQUIRE(spec.config.warmup().input_files().count("input") == 1);  // the loader's
  const inference::ModelConfig triton = ToTritonModelConfig(spec, 1);
  CHECK(KilnSettings(triton).warmup().input_files().empty());
  REQUIRE(triton.model_warmup_size() == 1);  // the file is named where config.pbtxt names it
  CHECK(triton.model_warmup(0).inputs().at("input").input_data_file() == "row");
}

TEST_CASE("kiln's data types map to Triton's and back", "[server][codec][triton]") {
  CHECK(TritonDataType(TYPE_BYTES) == inference::TYPE_STRING);
  CHECK(FromTritonDataType(inference::TYPE_STRING) == TYPE_BYTES);
  CHECK(TritonDataType(TYPE_INVALID) == inference::TYPE_INVALID);
  CHECK(FromTritonDataType(inference::TYPE_INVALID) == TYPE_INVALID);
  CHECK(TritonDataType(TYPE_BF16) == inference::TYPE_BF16);
  CHECK(FromTritonDataType(inference::TYPE_INT16) == TYPE_INT16);
  // Types LibTorch has no tensor for.
  CHECK(FromTritonDataType(inference::TYPE_UINT16) == TYPE_INVALID);
  CHECK(FromTritonDataType(inference::TYPE_UINT32) == TYPE_INVALID);
  CHECK(FromTritonDataType(inference::TYPE_UINT64) == TYPE_INVALID);
  // Every kiln type round-trips, by name and not by number (the enums' numbers differ).
  for (int value = DataType_MIN; value <= DataType_MAX; ++value) {
    if (!DataType_IsValid(value)) continue;
    const auto type = static_cast<DataType>(value);
    INFO(DataType_Name(type));
    CHECK(FromTritonDataType(TritonDataType(type)) == type);
    if (type != TYPE_INVALID) CHECK(TritonDataType(type) != inference::TYPE_INVALID);
  }
  for (int value = inference::DataType_MIN; value <= inference::DataType_MAX; ++value) {
    if (!inference::DataType_IsValid(value)) continue;
    const auto type = static_cast<inference::DataType>(value);
    if (FromTritonDataType(type) == TYPE_INVALID) continue;
    INFO(inference::DataType_Name(type));
    CHECK(TritonDataType(FromTritonDataType(type)) == type);
  }
}

}  // namespace
}  // namespace kiln
