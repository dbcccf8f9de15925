// Triton's classification extension: an output requested with parameters["classification"]
// comes back as its top classes per row, "<value>:<index>[:<label>]" as BYTES.
#include "server/codec/classification.h"

#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "common/bytes_form.h"
#include "google/protobuf/text_format.h"
#include "server/codec/infer_codec.h"

namespace kiln {
namespace {

using Catch::Matchers::Contains;
using inference::ModelInferRequest;
using inference::ModelInferResponse;

// scores: FP32 [4] labelled cat, dog, bird (one line short of the classes); ids: INT64 [3].
ModelConfig Classifier(int32_t max_batch_size) {
  ModelConfig config;
  REQUIRE(google::protobuf::TextFormat::ParseFromString(
      R"pb(
        name: "classifier"
        input { name: "x" data_type: TYPE_FP32 dims: 2 }
        output {
          name: "scores"
          data_type: TYPE_FP32
          dims: 4
          labels: [ "cat", "dog", "bird" ]
        }
        output { name: "ids" data_type: TYPE_INT64 dims: 3 }
        output { name: "half" data_type: TYPE_FP16 dims: 3 }
      )pb",
      &config));
  config.set_max_batch_size(max_batch_size);
  return config;
}

ModelInferRequest Request(const std::vector<std::pair<std::string, int64_t>>& outputs) {
  ModelInferRequest request;
  auto& input = *request.add_inputs();
  input.set_name("x");
  input.set_datatype("FP32");
  input.add_shape(2);
  input.add_shape(2);
  for (int i = 0; i < 4; ++i) input.mutable_contents()->add_fp32_contents(0.0f);
  for (const auto& [name, classes] : outputs) {
    auto& output = *request.add_outputs();
    output.set_name(name);
    if (classes != 0) (*output.mutable_parameters())["classification"].set_int64_param(classes);
  }
  return request;
}

template <typename T>
Tensor Output(const std::string& name, DType dtype, std::vector<int64_t> shape,
              const std::vector<T>& values) {
  Tensor tensor{name, dtype, std::move(shape), std::vector<uint8_t>(values.size() * sizeof(T))};
  std::memcpy(tensor.bytes.data(), values.data(), tensor.bytes.size());
  return tensor;
}

std::vector<std::string> Strings(const ModelInferResponse& response, int i) {
  absl::StatusOr<std::vector<std::string>> strings =
      SplitBytesForm(response.raw_output_contents(i), -1);
  REQUIRE(strings.ok());
  return *strings;
}

TEST_CASE("classification returns each row's top classes, best first, with their labels",
          "[codec][classification]") {
  const ModelConfig config = Classifier(8);
  const ModelInferRequest request = Request({{"scores", 2}, {"ids", 0}});
  absl::StatusOr<DecodedRequest> decoded = DecodeInferRequest(request, config);
  INFO(decoded.status().message());
  REQUIRE(decoded.ok());
  CHECK(decoded->class_counts == std::vector<uint32_t>{2, 0});

  const float nan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<Tensor> outputs = {
      Output<float>("scores", DType::kFloat32, {2, 4},
                    {0.1f, 0.7f, 0.2f, 0.9f,    // row 0
                     nan, 0.5f, 0.5f, -1.0f}),  // row 1
      Output<int64_t>("ids", DType::kInt64, {2, 3}, {1, 2, 3, 4, 5, 6})};
  ModelInferResponse response;
  std::vector<TensorView> views;
  for (const Tensor& tensor : outputs) views.push_back(tensor.view());
  REQUIRE(EncodeInferResponse(config, "1", request, *decoded, views, &response).ok());
  REQUIRE(response.outputs_size() == 2);
  CHECK(response.outputs(0).datatype() == "BYTES");
  CHECK(std::vector<int64_t>(response.outputs(0).shape().begin(),
                             response.outputs(0).shape().end()) == std::vector<int64_t>{2, 2});
  // Index 3 has no label line; equal values keep the lower index first; NaN ranks last.
  CHECK(Strings(response, 0) == std::vector<std::string>{"0.900000:3", "0.700000:1:dog",
                                                         "0.500000:1:dog", "0.500000:2:bird"});
  // An output requested without the parameter is the tensor itself.
  CHECK(response.outputs(1).datatype() == "INT64");
  CHECK(response.raw_output_contents(1).size() == 6 * sizeof(int64_t));
}

TEST_CASE("classification asks for at most the classes there are, also without a batch dim",
          "[codec][classification]") {
  ModelConfig config = Classifier(0);
  ModelInferRequest request = Request({{"ids", 10}});
  request.mutable_inputs(0)->clear_shape();
  request.mutable_inputs(0)->add_shape(2);
  request.mutable_inputs(0)->mutable_contents()->mutable_fp32_contents()->Truncate(2);
  absl::StatusOr<DecodedRequest> decoded = DecodeInferRequest(request, config);
  INFO(decoded.status().message());
  REQUIRE(decoded.ok());
  const Tensor ids = Output<int64_t>("ids", DType::kInt64, {3}, {-5, 40, 7});
  ModelInferResponse response;
  REQUIRE(EncodeInferResponse(config, "1", request, *decoded, {ids.view()}, &response).ok());
  CHECK(std::vector<int64_t>(response.outputs(0).shape().begin(),
                             response.outputs(0).shape().end()) == std::vector<int64_t>{3});
  CHECK(Strings(response, 0) == std::vector<std::string>{"40:1", "7:2", "-5:0"});
}

TEST_CASE("a bad classification request is refused, naming the output",
          "[codec][classification][defect]") {
  const ModelConfig config = Classifier(8);
  std::string why;
  ModelInferRequest request;
  SECTION("a count below 1") {
    request = Request({{"scores", -3}});
    why = "output 'scores': parameter 'classification' must be an int64_param in [1, 2^32-1]";
  }
  SECTION("a count that is not an int64_param") {
    request = Request({{"scores", 0}});
    (*request.mutable_outputs(0)->mutable_parameters())["classification"].set_string_param("2");
    why = "must be an int64_param";
  }
  SECTION("an output type Triton does not classify") {
    request = Request({{"half", 1}});
    why = "class result not available for output 'half' of type TYPE_FP16";
  }
  const absl::StatusOr<DecodedRequest> decoded = DecodeInferRequest(request, config);
  REQUIRE_FALSE(decoded.ok());
  CHECK(decoded.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK_THAT(std::string(decoded.status().message()), Contains(why));
}

}  // namespace
}  // namespace kiln
