// The one rule infer, coldstart and load follow to build a request from ModelMetadata: text for a
// text model (a BYTES input), seeded random numbers for any other. Checked against the server's
// own metadata (FillModelMetadata) and decoder (DecodeInferRequest).
#include <catch2/catch.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "bench/oip_client.h"
#include "common/sample_text.h"
#include "google/protobuf/text_format.h"
#include "server/codec/infer_codec.h"

namespace kiln::bench {
namespace {

using Catch::Matchers::Contains;
using inference::ModelInferRequest;
using inference::ModelMetadataResponse;

// As the config loader resolves the demo textcls (tokenizer defaults filled in).
const char kTextModel[] = R"pb(
  name: "textcls"
  platform: "pytorch_libtorch"
  max_batch_size: 8
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
    dims: [ 4 ]
  }
  tokenizer {
    model_file: "tokenizer.model"
    max_length: 128
    text_input: "text"
    ids_input: "input_ids"
    mask_input: "attention_mask"
  }
)pb";

const char kNumericModel[] = R"pb(
  name: "m"
  platform: "pytorch_libtorch"
  max_batch_size: 8
  input {
    name: "x"
    data_type: TYPE_FP32
    dims: [ 3 ]
  }
  input {
    name: "ids"
    data_type: TYPE_INT64
    dims: [ -1 ]
  }
  output {
    name: "y"
    data_type: TYPE_FP32
    dims: [ 2 ]
  }
)pb";

ModelConfig ParseConfig(const char* text) {
  ModelConfig config;
  REQUIRE(google::protobuf::TextFormat::ParseFromString(text, &config));
  return config;
}

ModelMetadataResponse Metadata(const ModelConfig& config) {
  ModelMetadataResponse metadata;
  FillModelMetadata(config, {"1"}, &metadata);
  return metadata;
}

std::vector<std::string> Rows(const ModelInferRequest& request) {
  const auto& rows = request.inputs(0).contents().bytes_contents();
  return {rows.begin(), rows.end()};
}

std::vector<int64_t> Shape(const ModelInferRequest::InferInputTensor& input) {
  return {input.shape().begin(), input.shape().end()};
}

TEST_CASE("text model: the text input alone, sample text of seq words in every row", "[text]") {
  const ModelConfig config = ParseConfig(kTextModel);
  const ModelMetadataResponse metadata = Metadata(config);
  SyntheticRequestOptions options;
  options.batch = 3;
  options.seq = 5;
  absl::StatusOr<SyntheticRequest> built = BuildSyntheticRequest(metadata, "textcls", "", options);
  REQUIRE(built.ok());
  const ModelInferRequest& request = built->request;
  CHECK(request.model_name() == "textcls");
  REQUIRE(request.inputs_size() == 1);
  CHECK(request.inputs(0).name() == "text");
  CHECK(request.inputs(0).datatype() == "BYTES");
  CHECK(Shape(request.inputs(0)) == std::vector<int64_t>{3, 1});
  CHECK(request.raw_input_contents_size() == 0);
  CHECK(Rows(request) == std::vector<std::string>(3, SampleText(5)));
  CHECK(built->inputs == std::vector<std::string>{"text BYTES [3, 1]"});
  CHECK(built->origin == "sample text, 5 words");

  absl::StatusOr<DecodedRequest> decoded = DecodeInferRequest(request, config);
  REQUIRE(decoded.ok());
  CHECK(decoded->text);
  CHECK(decoded->batch_size == 3);
  REQUIRE(decoded->inputs.size() == 1);
  CHECK(decoded->inputs[0].strings == std::vector<std::string>(3, SampleText(5)));
}

TEST_CASE("text model: --text goes into every row, and the server decodes it", "[text]") {
  const ModelConfig config = ParseConfig(kTextModel);
  SyntheticRequestOptions options;
  options.batch = 2;
  options.seq = 99;  // not used with a given text
  options.text = "hello world";
  absl::StatusOr<SyntheticRequest> built =
      BuildSyntheticRequest(Metadata(config), "textcls", "1", options);
  REQUIRE(built.ok());
  CHECK(built->request.model_version() == "1");
  CHECK(Rows(built->request) == std::vector<std::string>{"hello world", "hello world"});
  CHECK(built->origin == "text \"hello world\"");
  absl::StatusOr<DecodedRequest> decoded = DecodeInferRequest(built->request, config);
  REQUIRE(decoded.ok());
  CHECK(decoded->text);

  options.text = "";  // an empty text is sent as it is: the server decides
  built = BuildSyntheticRequest(Metadata(config), "textcls", "", options);
  REQUIRE(built.ok());
  CHECK(Rows(built->request) == std::vector<std::string>{"", ""});
}

TEST_CASE("text model: a long --text is shown cut at a character boundary", "[text]") {
  SyntheticRequestOptions options;
  // 39 ASCII bytes, then a 2-byte character across the 40-byte cut.
  options.text = std::string(39, 'a') + "\xc3\xa9" + std::string(20, 'b');
  absl::StatusOr<SyntheticRequest> built =
      BuildSyntheticRequest(Metadata(ParseConfig(kTextModel)), "textcls", "", options);
  REQUIRE(built.ok());
  CHECK(built->origin == "text \"" + std::string(39, 'a') + "...\" (61 bytes)");
  CHECK(Rows(built->request)[0] == *options.text);  // the request has all of it
}

TEST_CASE("numeric model: every input, the same bytes as MakeRandomInputs", "[text]") {
  const ModelConfig config = ParseConfig(kNumericModel);
  const ModelMetadataResponse metadata = Metadata(config);
  SyntheticRequestOptions options;
  options.batch = 2;
  options.seq = 4;
  options.seed = 7;
  absl::StatusOr<SyntheticRequest> built = BuildSyntheticRequest(metadata, "m", "", options);
  REQUIRE(built.ok());
  CHECK(built->inputs == std::vector<std::string>{"x FP32 [2, 3]", "ids INT64 [2, 4]"});
  CHECK(built->origin == "random, seed 7");

  absl::StatusOr<std::vector<Tensor>> tensors =
      MakeRandomInputs(InputSpecsFromMetadata(metadata), 2, 4, 7);
  REQUIRE(tensors.ok());
  REQUIRE(built->request.raw_input_contents_size() == 2);
  for (int i = 0; i < 2; ++i) {
    const std::vector<uint8_t>& bytes = (*tensors)[static_cast<size_t>(i)].bytes;
    CHECK(built->request.raw_input_contents(i) == std::string(bytes.begin(), bytes.end()));
  }
  absl::StatusOr<DecodedRequest> decoded = DecodeInferRequest(built->request, config);
  REQUIRE(decoded.ok());
  CHECK_FALSE(decoded->text);
  CHECK(decoded->batch_size == 2);
}

TEST_CASE("numeric model: --text is an error naming the model's inputs", "[text]") {
  SyntheticRequestOptions options;
  options.text = "hello";
  absl::StatusOr<SyntheticRequest> built =
      BuildSyntheticRequest(Metadata(ParseConfig(kNumericModel)), "m", "", options);
  REQUIRE_FALSE(built.ok());
  CHECK(built.status().code() == absl::StatusCode::kInvalidArgument);
  const std::string message(built.status().message());
  CHECK_THAT(message, Contains("model 'm' takes no text"));
  CHECK_THAT(message, Contains("x FP32 [-1, 3], ids INT64 [-1, -1]"));
  CHECK_THAT(message, Contains("--text"));
}

TEST_CASE("the text input is the first BYTES input, and text shapes follow the metadata", "[text]") {
  CHECK_FALSE(FindTextInput({{"x", "FP32", {-1, 3}}}).has_value());
  CHECK_FALSE(FindTextInput({}).has_value());
  const std::optional<size_t> found =
      FindTextInput({{"x", "FP32", {-1, 3}}, {"t", "BYTES", {-1, 1}}, {"u", "BYTES", {-1, 1}}});
  REQUIRE(found.has_value());
  CHECK(*found == 1);

  // Without a batch dim: one element, whatever the batch.
  absl::StatusOr<ModelInferRequest> request =
      BuildTextRequest("m", "", {"t", "BYTES", {1}}, "hi", 4);
  REQUIRE(request.ok());
  CHECK(Shape(request->inputs(0)) == std::vector<int64_t>{1});
  CHECK(Rows(*request) == std::vector<std::string>{"hi"});

  absl::StatusOr<ModelInferRequest> bad = BuildTextRequest("m", "", {"t", "BYTES", {-1, 1}}, "", 0);
  REQUIRE_FALSE(bad.ok());
  CHECK_THAT(std::string(bad.status().message()), Contains("input 't'"));
  bad = BuildTextRequest("m", "", {"t", "BYTES", {-1, -2}}, "", 1);
  CHECK_FALSE(bad.ok());
}

}  // namespace
}  // namespace kiln::bench
