// kiln's config as Triton's ModelConfig (the ModelConfig RPC): the demo text model, whose text
// input Triton must see first and optional, and the fields that map one to one.
#include "server/codec/triton_model_config.h"

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "common/model_config_loader.h"
#include "google/protobuf/text_format.h"
#include "tests/test_paths.h"

namespace kiln {
namespace {

using Catch::Matchers::Contains;

std::vector<int64_t> Dims(const google::protobuf::RepeatedField<int64_t>& dims) {
  return {dims.begin(), dims.end()};
}

TEST_CASE("the demo text model as Triton's ModelConfig", "[server][codec][triton]") {
  absl::StatusOr<ModelSpec> spec = LoadModel(kiln::testing::ModelsDir() + "/textcls");
  REQUIRE(spec.ok());
  const inference::ModelConfig triton = ToTritonModelConfig(spec->config, 3);

  CHECK(triton.name() == "textcls");
  CHECK(triton.platform() == "pytorch_libtorch");
  CHECK(triton.backend() == "pytorch");
  CHECK(triton.default_model_filename() == "model.pt");
  CHECK(triton.max_batch_size() == 8);
  CHECK(triton.version_policy().latest().num_versions() == 1);
  // The text input first (Triton's TYPE_STRING), then the token inputs; a request carries one
  // or the other, so none is required.
  REQUIRE(triton.input_size() == 3);
  CHECK(triton.input(0).name() == "text");
  CHECK(triton.input(0).data_type() == inference::TYPE_STRING);
  CHECK(Dims(triton.input(0).dims()) == std::vector<int64_t>{1});
  CHECK(triton.input(1).name() == "input_ids");
  CHECK(triton.input(1).data_type() == inference::TYPE_INT64);
  CHECK(Dims(triton.input(1).dims()) == std::vector<int64_t>{-1});
  for (const inference::ModelInput& input : triton.input()) CHECK(input.optional());
  REQUIRE(triton.output_size() == 1);
  CHECK(triton.output(0).data_type() == inference::TYPE_FP32);
  CHECK(Dims(triton.output(0).dims()) == std::vector<int64_t>{4});
  REQUIRE(triton.instance_group_size() == 1);
  CHECK(triton.instance_group(0).count() == 3);
  CHECK(triton.instance_group(0).kind() == inference::ModelInstanceGroup::KIND_CPU);

  // One warmup sample per warmed shape: batch sizes [1, 4] x lengths [16, 32, 64, 128].
  REQUIRE(triton.model_warmup_size() == 8);
  const inference::ModelWarmup& first = triton.model_warmup(0);
  CHECK(first.name() == "kiln_warmup_b1_s16");
  CHECK(first.batch_size() == 1);
  CHECK(first.count() == 3);
  REQUIRE(first.inputs().count("input_ids") == 1);
  CHECK(Dims(first.inputs().at("input_ids").dims()) == std::vector<int64_t>{16});
  CHECK(first.inputs().at("input_ids").zero_data());
  const inference::ModelWarmup& last = triton.model_warmup(7);
  CHECK(last.batch_size() == 4);
  CHECK(Dims(last.inputs().at("attention_mask").dims()) == std::vector<int64_t>{128});

  // The whole kiln config travels as text, and parses back to what was served.
  ModelConfig back;
  REQUIRE(google::protobuf::TextFormat::ParseFromString(
      triton.parameters().at(kKilnConfigParameter).string_value(), &back));
  CHECK(back.SerializeAsString() == spec->config.SerializeAsString());
}

TEST_CASE(
    "Triton's ModelConfig follows the version policy and GPU kind, and skips warmup "
    "when it is off",
    "[server][codec][triton]") {
  ModelConfig config;
  config.set_name("m");
  config.mutable_version_policy()->mutable_specific()->add_versions(2);
  config.mutable_version_policy()->mutable_specific()->add_versions(5);
  config.mutable_instance_group()->set_kind(InstanceConfig::KIND_GPU);
  config.mutable_instance_group()->add_gpus(1);
  config.mutable_warmup()->set_enabled(false);
  TensorConfig* input = config.add_input();
  input->set_name("x");
  input->set_data_type(TYPE_BF16);
  input->add_dims(4);
  const inference::ModelConfig triton = ToTritonModelConfig(config, 2);
  CHECK(Dims(triton.version_policy().specific().versions()) == std::vector<int64_t>{2, 5});
  CHECK(triton.instance_group(0).kind() == inference::ModelInstanceGroup::KIND_GPU);
  CHECK(std::vector<int32_t>(triton.instance_group(0).gpus().begin(),
                             triton.instance_group(0).gpus().end()) == std::vector<int32_t>{1});
  CHECK(triton.model_warmup().empty());
  CHECK(triton.input(0).data_type() == inference::TYPE_BF16);
  CHECK_FALSE(triton.input(0).optional());
  CHECK(TritonDataType(TYPE_BYTES) == inference::TYPE_STRING);
  CHECK(TritonDataType(TYPE_INVALID) == inference::TYPE_INVALID);
}

}  // namespace
}  // namespace kiln
