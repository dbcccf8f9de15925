#include "server/codec/infer_codec.h"

#include <catch2/catch.hpp>

#include <cstdint>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <limits>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "google/protobuf/text_format.h"

namespace kiln {
namespace {

using Catch::Matchers::Contains;
using inference::InferTensorContents;
using inference::ModelInferRequest;
using inference::ModelInferResponse;
using inference::ModelMetadataResponse;
using InputTensor = inference::ModelInferRequest::InferInputTensor;

// RepeatedField has no initializer_list Add. (The values' type is not deduced.)
template <typename T>
void AddAll(google::protobuf::RepeatedField<T>* field,
            std::initializer_list<std::common_type_t<T>> values) {
  field->Add(values.begin(), values.end());
}

ModelConfig ParseConfig(const std::string& text) {
  ModelConfig config;
  REQUIRE(google::protobuf::TextFormat::ParseFromString(text, &config));
  return config;
}

// Input "x" of `type` and `dims`, output "y" FP32 [1].
ModelConfig OneInputModel(DataType type, std::vector<int64_t> dims, int32_t max_batch_size) {
  ModelConfig config;
  config.set_name("m");
  config.set_platform("pytorch_libtorch");
  config.set_max_batch_size(max_batch_size);
  TensorConfig* input = config.add_input();
  input->set_name("x");
  input->set_data_type(type);
  input->mutable_dims()->Add(dims.begin(), dims.end());
  TensorConfig* output = config.add_output();
  output->set_name("y");
  output->set_data_type(TYPE_FP32);
  output->add_dims(1);
  return config;
}

// Two FP32 inputs "x" [4] and "w" [2], two outputs, batching up to 8.
const char kTwoInputs[] = R"pb(
  name: "two"
  platform: "pytorch_libtorch"
  max_batch_size: 8
  input {
    name: "x"
    data_type: TYPE_FP32
    dims: [ 4 ]
  }
  input {
    name: "w"
    data_type: TYPE_FP32
    dims: [ 2 ]
  }
  output {
    name: "y"
    data_type: TYPE_FP32
    dims: [ 1 ]
  }
  output {
    name: "z"
    data_type: TYPE_INT64
    dims: [ 3 ]
  }
)pb";

InputTensor* AddInput(ModelInferRequest* request, const std::string& name,
                      const std::string& datatype, std::vector<int64_t> shape) {
  InputTensor* input = request->add_inputs();
  input->set_name(name);
  input->set_datatype(datatype);
  input->mutable_shape()->Add(shape.begin(), shape.end());
  return input;
}

// The host's (little-endian) bytes of `values`.
template <typename T>
std::vector<uint8_t> Le(std::initializer_list<T> values) {
  std::vector<uint8_t> bytes(values.size() * sizeof(T));
  std::memcpy(bytes.data(), values.begin(), bytes.size());
  return bytes;
}

std::string AsString(const std::vector<uint8_t>& bytes) {
  return std::string(bytes.begin(), bytes.end());
}

std::vector<uint8_t> ViewBytes(const TensorView& view) {
  const auto* data = static_cast<const uint8_t*>(view.data);
  return std::vector<uint8_t>(data, data + view.nbytes);
}

// The BYTES raw form: each element as a 4-byte little-endian length, then its bytes.
std::string LengthPrefixed(const std::vector<std::string>& elements) {
  std::string raw;
  for (const std::string& element : elements) {
    const uint32_t n = static_cast<uint32_t>(element.size());
    for (int i = 0; i < 4; ++i) raw += static_cast<char>((n >> (8 * i)) & 0xFF);
    raw += element;
  }
  return raw;
}

// The message of a decode that must fail with InvalidArgument.
std::string DecodeError(const ModelInferRequest& request, const ModelConfig& config) {
  absl::StatusOr<DecodedRequest> decoded = DecodeInferRequest(request, config);
  REQUIRE_FALSE(decoded.ok());
  CHECK(decoded.status().code() == absl::StatusCode::kInvalidArgument);
  return std::string(decoded.status().message());
}

// A request for OneInputModel's "x" with FP32 values.
ModelInferRequest Fp32Request(std::vector<int64_t> shape, std::initializer_list<float> values) {
  ModelInferRequest request;
  AddInput(&request, "x", "FP32", std::move(shape))
      ->mutable_contents()
      ->mutable_fp32_contents()
      ->Add(values.begin(), values.end());
  return request;
}

// --- datatype names --------------------------------------------------------------------------

TEST_CASE("OIP datatype names map to and from every config DataType", "[codec]") {
  const std::vector<std::pair<DataType, std::string>> all = {
      {TYPE_BOOL, "BOOL"},   {TYPE_UINT8, "UINT8"}, {TYPE_INT8, "INT8"},   {TYPE_INT16, "INT16"},
      {TYPE_INT32, "INT32"}, {TYPE_INT64, "INT64"}, {TYPE_FP16, "FP16"},   {TYPE_FP32, "FP32"},
      {TYPE_FP64, "FP64"},   {TYPE_BF16, "BF16"},   {TYPE_BYTES, "BYTES"},
  };
  REQUIRE(all.size() == static_cast<size_t>(DataType_MAX));  // every enumerator but INVALID
  for (const auto& [type, name] : all) {
    INFO("datatype " << name);
    CHECK(std::string(OipDatatypeName(type)) == name);
    std::optional<DataType> parsed = DataTypeFromOipName(name);
    REQUIRE(parsed.has_value());
    CHECK(*parsed == type);
  }
  CHECK(std::string(OipDatatypeName(TYPE_INVALID)) == "INVALID");
}

TEST_CASE("DataTypeFromOipName is exact and knows only config types", "[codec]") {
  for (const char* name :
       {"fp32", "FP32 ", "", "FLOAT", "TYPE_FP32", "UINT16", "UINT32", "UINT64", "INVALID"}) {
    INFO("name '" << name << "'");
    CHECK_FALSE(DataTypeFromOipName(name).has_value());
  }
}

// --- round trips -----------------------------------------------------------------------------

// Three elements of one datatype: their bytes and, where the datatype has one, the typed form.
struct DatatypeCase {
  DataType type;
  std::string name;
  DType dtype;
  std::vector<uint8_t> bytes;
  std::function<void(InferTensorContents*)> typed;  // empty for FP16 and BF16
};

std::vector<DatatypeCase> DatatypeCases() {
  using I32 = std::numeric_limits<int32_t>;
  using I64 = std::numeric_limits<int64_t>;
  const float inf = std::numeric_limits<float>::infinity();
  return {
      {TYPE_BOOL,
       "BOOL",
       DType::kBool,
       {1, 0, 1},
       [](InferTensorContents* c) {
         AddAll(c->mutable_bool_contents(), {true, false, true});
       }},
      {TYPE_UINT8,
       "UINT8",
       DType::kUInt8,
       {0, 7, 255},
       [](InferTensorContents* c) {
         AddAll(c->mutable_uint_contents(), {0, 7, 255});
       }},
      {TYPE_INT8, "INT8", DType::kInt8, Le<int8_t>({-128, 0, 127}),
       [](InferTensorContents* c) {
         AddAll(c->mutable_int_contents(), {-128, 0, 127});
       }},
      {TYPE_INT16, "INT16", DType::kInt16, Le<int16_t>({-32768, 1, 32767}),
       [](InferTensorContents* c) {
         AddAll(c->mutable_int_contents(), {-32768, 1, 32767});
       }},
      {TYPE_INT32, "INT32", DType::kInt32, Le<int32_t>({I32::min(), -1, I32::max()}),
       [](InferTensorContents* c) {
         AddAll(c->mutable_int_contents(), {I32::min(), -1, I32::max()});
       }},
      {TYPE_INT64, "INT64", DType::kInt64, Le<int64_t>({I64::min(), -1, I64::max()}),
       [](InferTensorContents* c) {
         AddAll(c->mutable_int64_contents(), {I64::min(), -1, I64::max()});
       }},
      {TYPE_FP32, "FP32", DType::kFloat32, Le<float>({1.5f, -0.0f, inf}),
       [inf](InferTensorContents* c) {
         AddAll(c->mutable_fp32_contents(), {1.5f, -0.0f, inf});
       }},
      {TYPE_FP64, "FP64", DType::kFloat64, Le<double>({0.1, -2.0, 1e300}),
       [](InferTensorContents* c) {
         AddAll(c->mutable_fp64_contents(), {0.1, -2.0, 1e300});
       }},
      {TYPE_FP16, "FP16", DType::kFloat16, Le<uint16_t>({0x3C00, 0xC000, 0x7C00}), nullptr},
      {TYPE_BF16, "BF16", DType::kBFloat16, Le<uint16_t>({0x3F80, 0xC000, 0x7F80}), nullptr},
  };
}

void CheckDecodedX(const DecodedRequest& decoded, const DatatypeCase& c) {
  CHECK(decoded.batch_size == 1);
  CHECK(decoded.outputs.empty());
  REQUIRE(decoded.inputs.size() == 1);
  const DecodedInput& input = decoded.inputs[0];
  CHECK(input.view.name == "x");
  CHECK(input.view.dtype == c.dtype);
  CHECK(input.data_type == c.type);
  CHECK(input.view.shape == std::vector<int64_t>{1, 3});
  CHECK(input.view.nbytes == c.bytes.size());
  CHECK(ViewBytes(input.view) == c.bytes);
  CHECK(input.strings.empty());
}

TEST_CASE("raw contents of every numeric datatype decode zero-copy, byte for byte", "[codec]") {
  for (const DatatypeCase& c : DatatypeCases()) {
    INFO("datatype " << c.name);
    const ModelConfig config = OneInputModel(c.type, {3}, 4);
    ModelInferRequest request;
    AddInput(&request, "x", c.name, {1, 3});
    request.add_raw_input_contents(AsString(c.bytes));
    absl::StatusOr<DecodedRequest> decoded = DecodeInferRequest(request, config);
    REQUIRE(decoded.ok());
    CheckDecodedX(*decoded, c);
    CHECK(decoded->inputs[0].view.data == request.raw_input_contents(0).data());
    CHECK(decoded->inputs[0].owned.empty());
  }
}

TEST_CASE("typed contents of every datatype that has a field decode to the same bytes", "[codec]") {
  for (const DatatypeCase& c : DatatypeCases()) {
    if (!c.typed) continue;
    INFO("datatype " << c.name);
    const ModelConfig config = OneInputModel(c.type, {3}, 4);
    ModelInferRequest request;
    c.typed(AddInput(&request, "x", c.name, {1, 3})->mutable_contents());
    absl::StatusOr<DecodedRequest> decoded = DecodeInferRequest(request, config);
    REQUIRE(decoded.ok());
    CheckDecodedX(*decoded, c);
    // The view points into the input's own buffer, which survived the trip out of StatusOr.
    CHECK(decoded->inputs[0].view.data == decoded->inputs[0].owned.data());
  }
}

TEST_CASE("BYTES inputs decode from the length-prefixed raw form and from bytes_contents",
          "[codec]") {
  const ModelConfig config = OneInputModel(TYPE_BYTES, {1}, 4);
  const std::vector<std::string> elements = {"hello", "", std::string("a\0b", 3)};
  ModelInferRequest request;
  InputTensor* input = AddInput(&request, "x", "BYTES", {3, 1});
  SECTION("raw") { request.add_raw_input_contents(LengthPrefixed(elements)); }
  SECTION("typed") {
    input->mutable_contents()->mutable_bytes_contents()->Add(elements.begin(), elements.end());
  }
  absl::StatusOr<DecodedRequest> decoded = DecodeInferRequest(request, config);
  REQUIRE(decoded.ok());
  CHECK(decoded->batch_size == 3);
  const DecodedInput& x = decoded->inputs.at(0);
  CHECK(x.data_type == TYPE_BYTES);
  CHECK(x.strings == elements);
  CHECK(x.view.data == nullptr);
  CHECK(x.view.nbytes == 0);
  CHECK(x.view.shape == std::vector<int64_t>{3, 1});
}

TEST_CASE("inputs come back in the config's order with raw contents matched by request order",
          "[codec]") {
  const ModelConfig config = ParseConfig(kTwoInputs);
  ModelInferRequest request;
  request.set_model_name("not looked at");
  request.set_model_version("42");
  AddInput(&request, "w", "FP32", {2, 2});
  AddInput(&request, "x", "FP32", {2, 4});
  const std::vector<uint8_t> w = Le<float>({1, 2, 3, 4});
  const std::vector<uint8_t> x = Le<float>({5, 6, 7, 8, 9, 10, 11, 12});
  request.add_raw_input_contents(AsString(w));
  request.add_raw_input_contents(AsString(x));
  absl::StatusOr<DecodedRequest> decoded = DecodeInferRequest(request, config);
  REQUIRE(decoded.ok());
  CHECK(decoded->batch_size == 2);
  REQUIRE(decoded->inputs.size() == 2);
  CHECK(decoded->inputs[0].view.name == "x");
  CHECK(ViewBytes(decoded->inputs[0].view) == x);
  CHECK(decoded->inputs[1].view.name == "w");
  CHECK(ViewBytes(decoded->inputs[1].view) == w);
}

TEST_CASE("a model without a batch dim takes its dims as the full shape", "[codec]") {
  const ModelConfig config = OneInputModel(TYPE_FP32, {2, -1}, 0);
  ModelInferRequest request = Fp32Request({2, 3}, {1, 2, 3, 4, 5, 6});
  absl::StatusOr<DecodedRequest> decoded = DecodeInferRequest(request, config);
  REQUIRE(decoded.ok());
  CHECK(decoded->batch_size == 0);
  CHECK(decoded->inputs.at(0).view.shape == std::vector<int64_t>{2, 3});
  CHECK(ViewBytes(decoded->inputs.at(0).view) == Le<float>({1, 2, 3, 4, 5, 6}));

  const std::string message = DecodeError(Fp32Request({1, 2, 3}, {1, 2, 3, 4, 5, 6}), config);
  CHECK(message == "input 'x': shape [1, 2, 3] does not match the model's [2, -1]");
  CHECK_THAT(DecodeError(Fp32Request({3, 2}, {1, 2, 3, 4, 5, 6}), config),
             Contains("shape [3, 2] does not match the model's [2, -1]"));
}

TEST_CASE("a variable dim takes any size >= 1", "[codec]") {
  const ModelConfig config = OneInputModel(TYPE_FP32, {-1}, 4);
  CHECK(DecodeInferRequest(Fp32Request({1, 1}, {1}), config).ok());
  CHECK(DecodeInferRequest(Fp32Request({2, 3}, {1, 2, 3, 4, 5, 6}), config).ok());
  CHECK_THAT(DecodeError(Fp32Request({1, 0}, {}), config),
             Contains("input 'x': shape [1, 0] does not match the model's [-1, -1] (batch dim "
                      "then dims [-1])"));
}

TEST_CASE("requested outputs are kept in request order", "[codec]") {
  const ModelConfig config = ParseConfig(kTwoInputs);
  ModelInferRequest request;
  AddAll(AddInput(&request, "x", "FP32", {1, 4})->mutable_contents()->mutable_fp32_contents(),
         {1, 2, 3, 4});
  AddAll(AddInput(&request, "w", "FP32", {1, 2})->mutable_contents()->mutable_fp32_contents(),
         {1, 2});
  request.add_outputs()->set_name("z");
  request.add_outputs()->set_name("y");
  absl::StatusOr<DecodedRequest> decoded = DecodeInferRequest(request, config);
  REQUIRE(decoded.ok());
  CHECK(decoded->outputs == std::vector<std::string>{"z", "y"});
}

// --- defects ---------------------------------------------------------------------------------

TEST_CASE("an unknown input is rejected with the model's input names", "[codec][defect]") {
  ModelInferRequest request;
  AddInput(&request, "x", "FP32", {1, 4});
  AddInput(&request, "q", "FP32", {1, 2});
  const std::string message = DecodeError(request, ParseConfig(kTwoInputs));
  CHECK_THAT(message, Contains("unknown input 'q'"));
  CHECK_THAT(message, Contains("'x', 'w'"));
}

TEST_CASE("more inputs than the model has are rejected before anything is matched",
          "[codec][defect]") {
  ModelInferRequest request;
  for (const char* name : {"x", "w", "x"}) AddInput(&request, name, "FP32", {1, 1});
  CHECK(DecodeError(request, ParseConfig(kTwoInputs)) ==
        "3 inputs given; the model has 2: 'x', 'w'");
}

TEST_CASE("an input given twice is rejected", "[codec][defect]") {
  ModelInferRequest request;
  AddInput(&request, "x", "FP32", {1, 4});
  AddInput(&request, "x", "FP32", {1, 4});
  CHECK_THAT(DecodeError(request, ParseConfig(kTwoInputs)),
             Contains("input 'x': given more than once"));
}

TEST_CASE("a missing input is rejected", "[codec][defect]") {
  ModelInferRequest request;
  AddAll(AddInput(&request, "x", "FP32", {1, 4})->mutable_contents()->mutable_fp32_contents(),
         {1, 2, 3, 4});
  CHECK_THAT(DecodeError(request, ParseConfig(kTwoInputs)), Contains("missing input 'w'"));
  CHECK_THAT(DecodeError(ModelInferRequest(), ParseConfig(kTwoInputs)),
             Contains("missing input 'x'"));
}

TEST_CASE("an optional input may be left out, a required one not, and one input is needed",
          "[codec]") {
  ModelConfig config = ParseConfig(kTwoInputs);
  config.mutable_input(0)->set_optional(true);  // x
  ModelInferRequest request;
  AddAll(AddInput(&request, "w", "FP32", {3, 2})->mutable_contents()->mutable_fp32_contents(),
         {1, 2, 3, 4, 5, 6});
  absl::StatusOr<DecodedRequest> decoded = DecodeInferRequest(request, config);
  INFO(decoded.status().message());
  REQUIRE(decoded.ok());
  REQUIRE(decoded->inputs.size() == 1);  // x left out, w (second in the config) alone
  CHECK(decoded->inputs[0].view.name == "w");
  CHECK(decoded->batch_size == 3);

  // Given, it is decoded and checked as any input: its batch must be w's.
  AddAll(AddInput(&request, "x", "FP32", {1, 4})->mutable_contents()->mutable_fp32_contents(),
         {1, 2, 3, 4});
  CHECK_THAT(DecodeError(request, config),
             Contains("input 'w': batch 3 differs from batch 1 of input 'x'"));

  // w stays required; with both optional, a request must still give one.
  CHECK_THAT(DecodeError(ModelInferRequest(), config),
             Contains("missing input 'w': the model's inputs are 'x' (optional), 'w'"));
  config.mutable_input(1)->set_optional(true);
  CHECK_THAT(DecodeError(ModelInferRequest(), config),
             Contains("no input given: the model's inputs are 'x' (optional), 'w' (optional)"));
}

TEST_CASE("a request's priority and queue timeout are read from its parameters", "[codec]") {
  const ModelConfig config = OneInputModel(TYPE_FP32, {1}, 4);
  ModelInferRequest request = Fp32Request({1, 1}, {1});
  absl::StatusOr<DecodedRequest> plain = DecodeInferRequest(request, config);
  REQUIRE(plain.ok());
  CHECK(plain->priority == 0);
  CHECK(plain->timeout_us == 0);
  (*request.mutable_parameters())["priority"].set_int64_param(2);
  (*request.mutable_parameters())["timeout"].set_uint64_param(1500);
  absl::StatusOr<DecodedRequest> decoded = DecodeInferRequest(request, config);
  REQUIRE(decoded.ok());
  CHECK(decoded->priority == 2);
  CHECK(decoded->timeout_us == 1500);
  (*request.mutable_parameters())["priority"].set_int64_param(-1);
  CHECK_THAT(DecodeError(request, config),
             Contains("parameter 'priority' must be a non-negative int64_param or a uint64_param"));
  (*request.mutable_parameters())["priority"].set_bool_param(true);
  CHECK_THAT(DecodeError(request, config), Contains("parameter 'priority'"));
}

TEST_CASE("an unknown or unsupported datatype is rejected", "[codec][defect]") {
  const ModelConfig config = OneInputModel(TYPE_FP32, {1}, 4);
  for (const char* datatype : {"FLOAT32", "fp32", "UINT16", "UINT32", "UINT64", ""}) {
    INFO("datatype '" << datatype << "'");
    ModelInferRequest request;
    AddInput(&request, "x", datatype, {1, 1})->mutable_contents()->add_fp32_contents(1);
    const std::string message = DecodeError(request, config);
    CHECK_THAT(message,
               Contains(std::string("input 'x': datatype '") + datatype + "' is not supported"));
    CHECK_THAT(message, Contains("FP32"));
  }
}

TEST_CASE("a datatype other than the config's is rejected", "[codec][defect]") {
  ModelInferRequest request;
  AddInput(&request, "x", "FP64", {1, 1})->mutable_contents()->add_fp64_contents(1);
  CHECK(DecodeError(request, OneInputModel(TYPE_FP32, {1}, 4)) ==
        "input 'x': datatype FP64 does not match the model's FP32");
  ModelInferRequest bf16;
  AddInput(&bf16, "x", "BF16", {1, 1});
  bf16.add_raw_input_contents(std::string(2, '\0'));
  CHECK_THAT(DecodeError(bf16, OneInputModel(TYPE_FP16, {1}, 4)),
             Contains("datatype BF16 does not match the model's FP16"));
}

TEST_CASE("a shape of the wrong rank is rejected with the model's shape", "[codec][defect]") {
  ModelConfig config = OneInputModel(TYPE_FP32, {16}, 8);
  config.mutable_input(0)->set_name("input");
  ModelInferRequest request;
  AddInput(&request, "input", "FP32", {2, 3});
  request.add_raw_input_contents(std::string(24, '\0'));
  CHECK(DecodeError(request, config) ==
        "input 'input': shape [2, 3] does not match the model's [-1, 16] (batch dim then dims "
        "[16])");
  ModelInferRequest no_batch;
  AddInput(&no_batch, "input", "FP32", {16});
  no_batch.add_raw_input_contents(std::string(64, '\0'));
  CHECK_THAT(DecodeError(no_batch, config),
             Contains("input 'input': shape [16] does not match the model's [-1, 16]"));
}

TEST_CASE("a fixed dim of another size is rejected", "[codec][defect]") {
  const ModelConfig config = OneInputModel(TYPE_FP32, {2, 3}, 8);
  ModelInferRequest request;
  AddInput(&request, "x", "FP32", {1, 2, 4});
  request.add_raw_input_contents(std::string(32, '\0'));
  CHECK(DecodeError(request, config) ==
        "input 'x': shape [1, 2, 4] does not match the model's [-1, 2, 3] (batch dim then dims "
        "[2, 3])");
}

TEST_CASE("a batch above max_batch_size or below 1 is rejected", "[codec][defect]") {
  const ModelConfig config = OneInputModel(TYPE_FP32, {1}, 8);
  ModelInferRequest big;
  AddInput(&big, "x", "FP32", {16, 1});
  big.add_raw_input_contents(std::string(64, '\0'));
  CHECK(DecodeError(big, config) == "input 'x': batch 16 exceeds max_batch_size 8");
  CHECK(DecodeInferRequest(Fp32Request({8, 1}, {1, 2, 3, 4, 5, 6, 7, 8}), config).ok());
  CHECK_THAT(DecodeError(Fp32Request({0, 1}, {}), config), Contains("input 'x': batch 0"));
}

TEST_CASE("inputs with different batch sizes are rejected", "[codec][defect]") {
  ModelInferRequest request;
  AddAll(AddInput(&request, "x", "FP32", {1, 4})->mutable_contents()->mutable_fp32_contents(),
         {1, 2, 3, 4});
  AddAll(AddInput(&request, "w", "FP32", {2, 2})->mutable_contents()->mutable_fp32_contents(),
         {1, 2, 3, 4});
  CHECK(DecodeError(request, ParseConfig(kTwoInputs)) ==
        "input 'w': batch 2 differs from batch 1 of input 'x'");
}

TEST_CASE("a negative dim is rejected", "[codec][defect]") {
  const ModelConfig config = OneInputModel(TYPE_FP32, {-1}, 8);
  CHECK(DecodeError(Fp32Request({1, -1}, {1}), config) ==
        "input 'x': shape [1, -1] has a negative dim");
  CHECK_THAT(DecodeError(Fp32Request({-1, 1}, {1}), OneInputModel(TYPE_FP32, {-1, 1}, 0)),
             Contains("input 'x': shape [-1, 1] has a negative dim"));
}

TEST_CASE("a shape whose element count overflows is rejected", "[codec][defect]") {
  const int64_t big = int64_t{1} << 40;
  const ModelConfig config = OneInputModel(TYPE_FP32, {-1, -1, -1}, 0);
  ModelInferRequest request;
  AddInput(&request, "x", "FP32", {big, big, big});
  request.add_raw_input_contents(std::string(4, '\0'));
  CHECK_THAT(DecodeError(request, config),
             Contains("input 'x': shape [1099511627776, 1099511627776, 1099511627776] has too "
                      "many elements"));
}

TEST_CASE("a byte count that overflows is rejected without wrapping", "[codec][defect]") {
  const int64_t big = int64_t{1} << 31;
  ModelInferRequest request;
  AddInput(&request, "x", "FP64", {big, big});  // 2^62 elements of 8 bytes
  request.add_raw_input_contents(std::string(8, '\0'));
  CHECK(DecodeError(request, OneInputModel(TYPE_FP64, {-1, -1}, 0)) ==
        "input 'x': 8 bytes of raw content, expected 4611686018427387904 x 8 for FP64 "
        "[2147483648, 2147483648]");
}

TEST_CASE("raw_input_contents must have one entry per input", "[codec][defect]") {
  ModelInferRequest request;
  AddInput(&request, "x", "FP32", {1, 4});
  AddInput(&request, "w", "FP32", {1, 2});
  request.add_raw_input_contents(std::string(16, '\0'));
  const std::string message = DecodeError(request, ParseConfig(kTwoInputs));
  CHECK_THAT(message, Contains("raw_input_contents has 1 entries for 2 inputs"));
  request.add_raw_input_contents(std::string(8, '\0'));
  request.add_raw_input_contents(std::string(8, '\0'));
  CHECK_THAT(DecodeError(request, ParseConfig(kTwoInputs)),
             Contains("raw_input_contents has 3 entries for 2 inputs"));
}

TEST_CASE("raw and typed contents may not be mixed", "[codec][defect]") {
  ModelInferRequest request;
  AddInput(&request, "x", "FP32", {1, 4});
  AddAll(AddInput(&request, "w", "FP32", {1, 2})->mutable_contents()->mutable_fp32_contents(),
         {1, 2});
  request.add_raw_input_contents(std::string(16, '\0'));
  request.add_raw_input_contents(std::string(8, '\0'));
  CHECK_THAT(DecodeError(request, ParseConfig(kTwoInputs)),
             Contains("input 'w': raw_input_contents and typed contents mixed"));
}

TEST_CASE("raw contents of the wrong size are rejected with the expected size", "[codec][defect]") {
  ModelInferRequest request;
  AddInput(&request, "x", "FP32", {1, 4});
  request.add_raw_input_contents(std::string(12, '\0'));
  CHECK(DecodeError(request, OneInputModel(TYPE_FP32, {4}, 8)) ==
        "input 'x': 12 bytes of raw content, expected 16 for FP32 [1, 4]");
  ModelInferRequest more;
  AddInput(&more, "x", "INT64", {2, 4});
  more.add_raw_input_contents(std::string(65, '\0'));
  CHECK(DecodeError(more, OneInputModel(TYPE_INT64, {4}, 8)) ==
        "input 'x': 65 bytes of raw content, expected 64 for INT64 [2, 4]");
}

TEST_CASE("typed contents must use the datatype's field", "[codec][defect]") {
  const ModelConfig config = OneInputModel(TYPE_FP32, {2}, 8);
  ModelInferRequest wrong;
  AddAll(AddInput(&wrong, "x", "FP32", {1, 2})->mutable_contents()->mutable_int_contents(), {1, 2});
  CHECK(DecodeError(wrong, config) ==
        "input 'x': FP32 contents belong in fp32_contents, got int_contents");

  ModelInferRequest extra = Fp32Request({1, 2}, {1, 2});
  extra.mutable_inputs(0)->mutable_contents()->add_bytes_contents("b");
  CHECK(DecodeError(extra, config) ==
        "input 'x': FP32 contents belong in fp32_contents, got bytes_contents");

  ModelInferRequest int64_in_int;
  AddAll(AddInput(&int64_in_int, "x", "INT64", {1, 2})->mutable_contents()->mutable_int_contents(),
         {1, 2});
  CHECK_THAT(DecodeError(int64_in_int, OneInputModel(TYPE_INT64, {2}, 8)),
             Contains("INT64 contents belong in int64_contents, got int_contents"));
}

TEST_CASE("typed contents must hold exactly the shape's element count", "[codec][defect]") {
  const ModelConfig config = OneInputModel(TYPE_FP32, {4}, 8);
  CHECK(DecodeError(Fp32Request({1, 4}, {1, 2, 3}), config) ==
        "input 'x': 3 values in fp32_contents, expected 4 for FP32 [1, 4]");
  CHECK_THAT(DecodeError(Fp32Request({1, 4}, {1, 2, 3, 4, 5}), config),
             Contains("5 values in fp32_contents, expected 4"));
  ModelInferRequest bytes;
  AddInput(&bytes, "x", "BYTES", {2, 1})->mutable_contents()->add_bytes_contents("one");
  CHECK_THAT(DecodeError(bytes, OneInputModel(TYPE_BYTES, {1}, 8)),
             Contains("input 'x': 1 values in bytes_contents, expected 2 for BYTES [2, 1]"));
}

TEST_CASE("typed integers out of the datatype's range are rejected", "[codec][defect]") {
  struct Case {
    DataType type;
    const char* name;
    std::function<void(InferTensorContents*)> fill;
    const char* expected;
  };
  const std::vector<Case> cases = {
      {TYPE_INT8, "INT8",
       [](InferTensorContents* c) {
         AddAll(c->mutable_int_contents(), {1, 128});
       },
       "input 'x': int_contents[1] = 128 is out of range for INT8"},
      {TYPE_INT8, "INT8",
       [](InferTensorContents* c) {
         AddAll(c->mutable_int_contents(), {-129, 1});
       },
       "input 'x': int_contents[0] = -129 is out of range for INT8"},
      {TYPE_INT16, "INT16",
       [](InferTensorContents* c) {
         AddAll(c->mutable_int_contents(), {40000, 1});
       },
       "input 'x': int_contents[0] = 40000 is out of range for INT16"},
      {TYPE_UINT8, "UINT8",
       [](InferTensorContents* c) {
         AddAll(c->mutable_uint_contents(), {255, 256});
       },
       "input 'x': uint_contents[1] = 256 is out of range for UINT8"},
  };
  for (const Case& c : cases) {
    INFO(c.expected);
    ModelInferRequest request;
    c.fill(AddInput(&request, "x", c.name, {1, 2})->mutable_contents());
    CHECK(DecodeError(request, OneInputModel(c.type, {2}, 8)) == c.expected);
  }
}

TEST_CASE("FP16 and BF16 have no typed field and must come raw", "[codec][defect]") {
  for (auto [type, name] : {std::pair{TYPE_FP16, "FP16"}, std::pair{TYPE_BF16, "BF16"}}) {
    INFO("datatype " << name);
    ModelInferRequest request;
    AddAll(AddInput(&request, "x", name, {1, 2})->mutable_contents()->mutable_fp32_contents(),
           {1, 2});
    CHECK(DecodeError(request, OneInputModel(type, {2}, 8)) ==
          std::string("input 'x': ") + name +
              " has no typed contents field; send it in raw_input_contents");
  }
}

TEST_CASE("an input without contents is rejected", "[codec][defect]") {
  ModelInferRequest request;
  AddInput(&request, "x", "FP32", {1, 2})->mutable_contents();  // present but empty
  CHECK_THAT(DecodeError(request, OneInputModel(TYPE_FP32, {2}, 8)),
             Contains("input 'x': no contents"));
}

TEST_CASE("a BYTES element over kMaxBytesElementSize is rejected in either form",
          "[codec][defect]") {
  const ModelConfig config = OneInputModel(TYPE_BYTES, {1}, 4);
  const std::string big(kMaxBytesElementSize + 1, 'a');
  const std::string fits(kMaxBytesElementSize, 'a');
  ModelInferRequest request;
  InputTensor* input = AddInput(&request, "x", "BYTES", {2, 1});
  const std::string expected =
      "input 'x': element 1 is 1048577 bytes, more than the 1048576 "
      "allowed";
  SECTION("raw") {
    request.add_raw_input_contents(LengthPrefixed({fits, big}));
    CHECK(DecodeError(request, config) ==
          "input 'x': malformed BYTES: element 1 is 1048577 "
          "bytes, more than the 1048576 allowed");
  }
  SECTION("typed") {
    input->mutable_contents()->add_bytes_contents(fits);
    input->mutable_contents()->add_bytes_contents(big);
    CHECK(DecodeError(request, config) == expected);
  }
  SECTION("at the limit") {
    request.add_raw_input_contents(LengthPrefixed({fits, fits}));
    CHECK(DecodeInferRequest(request, config).ok());
  }
}

TEST_CASE("malformed BYTES raw contents are rejected", "[codec][defect]") {
  const ModelConfig config = OneInputModel(TYPE_BYTES, {2}, 8);
  const std::string two = LengthPrefixed({"ab", "c"});
  struct Case {
    std::string raw;
    const char* expected;
  };
  const std::vector<Case> cases = {
      {two.substr(0, two.size() - 5 + 3),  // "ab" then 3 bytes of the second length
       "input 'x': malformed BYTES: element 1's 4-byte length is truncated (3 bytes left)"},
      {two.substr(0, two.size() - 1),
       "input 'x': malformed BYTES: element 1's length 1 runs past the end (0 bytes left)"},
      {two + "z",
       "input 'x': malformed BYTES: 1 trailing bytes after the 2 elements of shape "
       "[1, 2]"},
      {LengthPrefixed({"ab", "c", "d"}),
       "input 'x': malformed BYTES: 5 trailing bytes after the 2 elements of shape [1, 2]"},
      {LengthPrefixed({"ab"}),
       "input 'x': malformed BYTES: 1 elements, expected 2 for shape [1, 2]"},
      {"", "input 'x': malformed BYTES: 0 elements, expected 2 for shape [1, 2]"},
  };
  for (const Case& c : cases) {
    INFO(c.expected);
    ModelInferRequest request;
    AddInput(&request, "x", "BYTES", {1, 2});
    request.add_raw_input_contents(c.raw);
    CHECK(DecodeError(request, config) == c.expected);
  }
  ModelInferRequest good;
  AddInput(&good, "x", "BYTES", {1, 2});
  good.add_raw_input_contents(two);
  CHECK(DecodeInferRequest(good, config).ok());
}

TEST_CASE("requested outputs must be the model's, each once", "[codec][defect]") {
  ModelInferRequest request = Fp32Request({1, 1}, {1});
  request.add_outputs()->set_name("nope");
  const std::string message = DecodeError(request, OneInputModel(TYPE_FP32, {1}, 8));
  CHECK_THAT(message, Contains("unknown output 'nope'"));
  CHECK_THAT(message, Contains("the model's outputs are 'y'"));

  ModelInferRequest twice = Fp32Request({1, 1}, {1});
  twice.add_outputs()->set_name("y");
  twice.add_outputs()->set_name("y");
  CHECK(DecodeError(twice, OneInputModel(TYPE_FP32, {1}, 8)) ==
        "output 'y' requested more than once");
}

// --- responses -------------------------------------------------------------------------------

Tensor MakeTensor(const std::string& name, DType dtype, std::vector<int64_t> shape,
                  std::vector<uint8_t> bytes) {
  return Tensor{name, dtype, std::move(shape), std::move(bytes)};
}

// Backend outputs for kTwoInputs at batch 2: y FP32 [2, 1], z INT64 [2, 3].
std::vector<Tensor> TwoOutputs() {
  return {MakeTensor("z", DType::kInt64, {2, 3}, Le<int64_t>({1, 2, 3, 4, 5, 6})),
          MakeTensor("y", DType::kFloat32, {2, 1}, Le<float>({0.5f, -1.0f}))};
}

TEST_CASE("a response carries every output in the config's order by default", "[codec]") {
  const ModelConfig config = ParseConfig(kTwoInputs);
  ModelInferRequest request;
  request.set_id("req-7");
  DecodedRequest decoded;
  decoded.batch_size = 2;
  ModelInferResponse response;
  response.set_id("stale");
  REQUIRE(EncodeInferResponse(config, "3", request, decoded, Views(TwoOutputs()), &response).ok());
  CHECK(response.model_name() == "two");
  CHECK(response.model_version() == "3");
  CHECK(response.id() == "req-7");
  REQUIRE(response.outputs_size() == 2);
  REQUIRE(response.raw_output_contents_size() == 2);
  CHECK(response.outputs(0).name() == "y");
  CHECK(response.outputs(0).datatype() == "FP32");
  CHECK(std::vector<int64_t>(response.outputs(0).shape().begin(),
                             response.outputs(0).shape().end()) == std::vector<int64_t>{2, 1});
  CHECK(response.raw_output_contents(0) == AsString(Le<float>({0.5f, -1.0f})));
  CHECK(response.outputs(1).name() == "z");
  CHECK(response.outputs(1).datatype() == "INT64");
  CHECK(std::vector<int64_t>(response.outputs(1).shape().begin(),
                             response.outputs(1).shape().end()) == std::vector<int64_t>{2, 3});
  CHECK(response.raw_output_contents(1) == AsString(Le<int64_t>({1, 2, 3, 4, 5, 6})));
  CHECK_FALSE(response.outputs(0).has_contents());
}

TEST_CASE("a response carries only the requested outputs, in request order", "[codec]") {
  const ModelConfig config = ParseConfig(kTwoInputs);
  DecodedRequest decoded;
  decoded.batch_size = 2;
  SECTION("one") {
    decoded.outputs = {"z"};
    ModelInferResponse response;
    REQUIRE(EncodeInferResponse(config, "1", ModelInferRequest(), decoded, Views(TwoOutputs()),
                                &response)
                .ok());
    REQUIRE(response.outputs_size() == 1);
    CHECK(response.outputs(0).name() == "z");
    CHECK(response.raw_output_contents_size() == 1);
  }
  SECTION("reordered") {
    decoded.outputs = {"z", "y"};
    ModelInferResponse response;
    REQUIRE(EncodeInferResponse(config, "1", ModelInferRequest(), decoded, Views(TwoOutputs()),
                                &response)
                .ok());
    REQUIRE(response.outputs_size() == 2);
    CHECK(response.outputs(0).name() == "z");
    CHECK(response.outputs(1).name() == "y");
    CHECK(response.raw_output_contents(1) == AsString(Le<float>({0.5f, -1.0f})));
  }
}

TEST_CASE("a model without a batch dim returns outputs of any leading size", "[codec]") {
  const ModelConfig config = OneInputModel(TYPE_FP32, {3}, 0);
  DecodedRequest decoded;  // batch_size 0
  ModelInferResponse response;
  const std::vector<Tensor> outputs = {MakeTensor("y", DType::kFloat32, {1}, Le<float>({2.0f}))};
  REQUIRE(EncodeInferResponse(config, "1", ModelInferRequest(), decoded, Views(outputs), &response)
              .ok());
  CHECK(response.outputs(0).shape_size() == 1);
}

// The Internal error of an encode that must fail.
std::string EncodeError(const std::vector<Tensor>& outputs) {
  DecodedRequest decoded;
  decoded.batch_size = 2;
  ModelInferResponse response;
  absl::Status status = EncodeInferResponse(ParseConfig(kTwoInputs), "1", ModelInferRequest(),
                                            decoded, Views(outputs), &response);
  REQUIRE_FALSE(status.ok());
  CHECK(status.code() == absl::StatusCode::kInternal);
  return std::string(status.message());
}

TEST_CASE("backend outputs that break the config are Internal errors", "[codec][defect]") {
  std::vector<Tensor> outputs = TwoOutputs();
  SECTION("dtype") {
    outputs[1].dtype = DType::kFloat64;
    outputs[1].bytes = Le<double>({0.5, -1.0});
    CHECK(EncodeError(outputs) ==
          "output 'y': the backend returned F64, the model's config says FP32");
  }
  SECTION("batch") {
    outputs[1].shape = {1, 2};
    CHECK(EncodeError(outputs) ==
          "output 'y': the backend returned shape [1, 2], whose batch dim is not the request's "
          "batch 2");
  }
  SECTION("scalar where a batch was due") {
    outputs[1].shape = {};
    outputs[1].bytes = Le<float>({1.0f});
    CHECK_THAT(EncodeError(outputs), Contains("whose batch dim is not the request's batch 2"));
  }
  SECTION("dims") {
    outputs[0].shape = {2, 1, 3};  // the same bytes, a rank the config does not have
    CHECK(EncodeError(outputs) ==
          "output 'z': the backend returned shape [2, 1, 3], the model's config says [-1, 3] "
          "(batch dim then dims [3])");
    outputs[0].shape = {2, 3};
    outputs[1].bytes = Le<float>({0.5f, -1.0f, 2.0f, 3.0f});
    outputs[1].shape = {2, 2};
    CHECK_THAT(EncodeError(outputs), Contains("output 'y': the backend returned shape [2, 2]"));
  }
  SECTION("byte count") {
    outputs[0].bytes.pop_back();
    CHECK(EncodeError(outputs) == "output 'z': the backend returned 47 bytes for I64 [2, 3]");
  }
  SECTION("missing") {
    outputs.erase(outputs.begin());
    CHECK(EncodeError(outputs) == "output 'z': the backend did not return it");
  }
}

TEST_CASE("model metadata lists tensors with OIP datatypes and a -1 batch dim", "[codec]") {
  ModelMetadataResponse response;
  response.add_versions("stale");
  FillModelMetadata(ParseConfig(kTwoInputs), {"5"}, &response);
  CHECK(response.name() == "two");
  CHECK(std::vector<std::string>(response.versions().begin(), response.versions().end()) ==
        std::vector<std::string>{"5"});
  CHECK(response.platform() == "pytorch_libtorch");
  REQUIRE(response.inputs_size() == 2);
  CHECK(response.inputs(0).name() == "x");
  CHECK(response.inputs(0).datatype() == "FP32");
  CHECK(std::vector<int64_t>(response.inputs(0).shape().begin(),
                             response.inputs(0).shape().end()) == std::vector<int64_t>{-1, 4});
  CHECK(response.inputs(1).name() == "w");
  REQUIRE(response.outputs_size() == 2);
  CHECK(response.outputs(1).name() == "z");
  CHECK(response.outputs(1).datatype() == "INT64");
  CHECK(std::vector<int64_t>(response.outputs(1).shape().begin(),
                             response.outputs(1).shape().end()) == std::vector<int64_t>{-1, 3});

  FillModelMetadata(OneInputModel(TYPE_BYTES, {2, -1}, 0), {"1"}, &response);
  REQUIRE(response.inputs_size() == 1);
  CHECK(response.inputs(0).datatype() == "BYTES");
  CHECK(std::vector<int64_t>(response.inputs(0).shape().begin(),
                             response.inputs(0).shape().end()) == std::vector<int64_t>{2, -1});
}

// --- requests (the client's side) ---------------------------------------------------------

std::string RawBytes(const Tensor& tensor) {
  return std::string(tensor.bytes.begin(), tensor.bytes.end());
}

TEST_CASE("requests carry every input in raw_input_contents with datatype and shape", "[codec]") {
  const Tensor x = MakeTensor("x", DType::kFloat32, {2, 3}, Le<float>({1, 2, 3, 4, 5, 6}));
  const Tensor ids = MakeTensor("ids", DType::kInt64, {1, 2}, Le<int64_t>({7, -8}));
  const Tensor mask = MakeTensor("mask", DType::kBool, {2}, {1, 0});
  absl::StatusOr<ModelInferRequest> request =
      BuildInferRequest("m", "3", {x.view(), ids.view(), mask.view()});
  REQUIRE(request.ok());
  CHECK(request->model_name() == "m");
  CHECK(request->model_version() == "3");
  REQUIRE(request->inputs_size() == 3);
  REQUIRE(request->raw_input_contents_size() == 3);
  CHECK(request->inputs(0).name() == "x");
  CHECK(request->inputs(0).datatype() == "FP32");
  CHECK(std::vector<int64_t>(request->inputs(0).shape().begin(),
                             request->inputs(0).shape().end()) == std::vector<int64_t>{2, 3});
  CHECK(request->inputs(1).datatype() == "INT64");
  CHECK(request->inputs(2).datatype() == "BOOL");
  CHECK(request->raw_input_contents(0) == RawBytes(x));
  CHECK(request->raw_input_contents(1) == RawBytes(ids));
  CHECK(request->raw_input_contents(2) == RawBytes(mask));
  CHECK_FALSE(request->inputs(0).has_contents());
  CHECK(request->outputs_size() == 0);
}

TEST_CASE("a request view whose bytes do not match its shape is refused", "[codec]") {
  const Tensor x = MakeTensor("x", DType::kFloat32, {2, 3}, Le<float>({1, 2, 3, 4, 5}));
  absl::StatusOr<ModelInferRequest> request = BuildInferRequest("m", "", {x.view()});
  REQUIRE(request.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK_THAT(std::string(request.status().message()), Contains("input 'x'"));
  const Tensor fp8 = MakeTensor("f", DType::kFloat8E5M2, {1}, {0});
  CHECK_FALSE(BuildInferRequest("m", "", {fp8.view()}).ok());
}

// --- text models -----------------------------------------------------------------------------

// A text model: clients send "text" (BYTES [batch, 1]) or the token inputs themselves.
const char kTextModel[] = R"pb(
  name: "textcls"
  platform: "pytorch_libtorch"
  max_batch_size: 4
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
    dims: [ 2 ]
  }
  tokenizer {
    model_file: "tokenizer.model"
    max_length: 128
    text_input: "text"
    ids_input: "input_ids"
    mask_input: "attention_mask"
  }
)pb";

std::vector<int64_t> ShapeOf(const google::protobuf::RepeatedField<int64_t>& shape) {
  return std::vector<int64_t>(shape.begin(), shape.end());
}

TEST_CASE("TextInputConfig is the tokenizer's text input as BYTES [1]", "[codec][text]") {
  ModelConfig config = ParseConfig(kTextModel);
  TensorConfig text = TextInputConfig(config);
  CHECK(text.name() == "text");
  CHECK(text.data_type() == TYPE_BYTES);
  CHECK(std::vector<int64_t>(text.dims().begin(), text.dims().end()) == std::vector<int64_t>{1});
  config.mutable_tokenizer()->set_text_input("prompt");
  CHECK(TextInputConfig(config).name() == "prompt");
}

TEST_CASE("a text model's text input alone decodes as a text request", "[codec][text]") {
  const ModelConfig config = ParseConfig(kTextModel);
  const std::vector<std::string> texts = {"hello world", "", std::string("a\0b", 3)};
  ModelInferRequest request;
  InputTensor* input = AddInput(&request, "text", "BYTES", {3, 1});
  SECTION("bytes_contents") {
    input->mutable_contents()->mutable_bytes_contents()->Add(texts.begin(), texts.end());
  }
  SECTION("raw BYTES") { request.add_raw_input_contents(LengthPrefixed(texts)); }
  absl::StatusOr<DecodedRequest> decoded = DecodeInferRequest(request, config);
  REQUIRE(decoded.ok());
  CHECK(decoded->text);
  CHECK(decoded->batch_size == 3);
  CHECK(decoded->outputs.empty());
  REQUIRE(decoded->inputs.size() == 1);
  const DecodedInput& text = decoded->inputs[0];
  CHECK(text.view.name == "text");
  CHECK(text.data_type == TYPE_BYTES);
  CHECK(text.view.shape == std::vector<int64_t>{3, 1});
  CHECK(text.strings == texts);
}

TEST_CASE("a text request keeps its requested outputs and is validated like any input",
          "[codec][text]") {
  const ModelConfig config = ParseConfig(kTextModel);
  ModelInferRequest request;
  AddInput(&request, "text", "BYTES", {1, 1})->mutable_contents()->add_bytes_contents("hi");
  request.add_outputs()->set_name("logits");
  absl::StatusOr<DecodedRequest> decoded = DecodeInferRequest(request, config);
  REQUIRE(decoded.ok());
  CHECK(decoded->text);
  CHECK(decoded->outputs == std::vector<std::string>{"logits"});

  ModelInferRequest flat;
  AddInput(&flat, "text", "BYTES", {2})->mutable_contents()->add_bytes_contents("hi");
  CHECK_THAT(DecodeError(flat, config), Contains("input 'text': shape [2] does not match"));

  ModelInferRequest too_many;
  InputTensor* input = AddInput(&too_many, "text", "BYTES", {5, 1});
  for (int i = 0; i < 5; ++i) input->mutable_contents()->add_bytes_contents("x");
  CHECK_THAT(DecodeError(too_many, config), Contains("exceeds max_batch_size 4"));

  ModelInferRequest typed;
  AddInput(&typed, "text", "INT64", {1, 1})->mutable_contents()->add_int64_contents(1);
  CHECK_THAT(DecodeError(typed, config), Contains("input 'text': datatype INT64"));
}

TEST_CASE("a text model refuses its text input together with token inputs", "[codec][text]") {
  const ModelConfig config = ParseConfig(kTextModel);
  ModelInferRequest request;
  AddInput(&request, "text", "BYTES", {1, 1})->mutable_contents()->add_bytes_contents("hi");
  AddInput(&request, "input_ids", "INT64", {1, 2})
      ->mutable_contents()
      ->mutable_int64_contents()
      ->Add(5);
  const std::string message = DecodeError(request, config);
  CHECK_THAT(message, Contains("not both"));
  CHECK_THAT(message, Contains("'text'"));
  CHECK_THAT(message, Contains("'input_ids', 'attention_mask'"));
}

TEST_CASE("a text model still takes its token inputs alone", "[codec][text]") {
  const ModelConfig config = ParseConfig(kTextModel);
  ModelInferRequest request;
  AddAll(AddInput(&request, "input_ids", "INT64", {2, 3})
             ->mutable_contents()
             ->mutable_int64_contents(),
         {1, 2, 3, 4, 5, 6});
  AddAll(AddInput(&request, "attention_mask", "INT64", {2, 3})
             ->mutable_contents()
             ->mutable_int64_contents(),
         {1, 1, 1, 1, 1, 0});
  absl::StatusOr<DecodedRequest> decoded = DecodeInferRequest(request, config);
  REQUIRE(decoded.ok());
  CHECK_FALSE(decoded->text);
  CHECK(decoded->batch_size == 2);
  REQUIRE(decoded->inputs.size() == 2);
  CHECK(decoded->inputs[0].view.name == "input_ids");
  CHECK(decoded->inputs[0].view.shape == std::vector<int64_t>{2, 3});
  CHECK(ViewBytes(decoded->inputs[0].view) == Le<int64_t>({1, 2, 3, 4, 5, 6}));
  CHECK(decoded->inputs[1].view.name == "attention_mask");
  CHECK(ViewBytes(decoded->inputs[1].view) == Le<int64_t>({1, 1, 1, 1, 1, 0}));

  // One token input without the other is a missing input, as for any model.
  ModelInferRequest half;
  AddAll(
      AddInput(&half, "input_ids", "INT64", {1, 1})->mutable_contents()->mutable_int64_contents(),
      {1});
  CHECK_THAT(DecodeError(half, config), Contains("missing input 'attention_mask'"));
}

TEST_CASE("BuildTextInferRequest round-trips through DecodeInferRequest", "[codec][text]") {
  ModelConfig config = ParseConfig(kTextModel);
  const std::vector<std::string> texts = {"the first", "", "th\xc3\xa9 third"};
  const ModelInferRequest request = BuildTextInferRequest(config, "2", texts);
  CHECK(request.model_name() == "textcls");
  CHECK(request.model_version() == "2");
  REQUIRE(request.inputs_size() == 1);
  CHECK(request.inputs(0).name() == "text");
  CHECK(request.inputs(0).datatype() == "BYTES");
  CHECK(ShapeOf(request.inputs(0).shape()) == std::vector<int64_t>{3, 1});
  CHECK(request.raw_input_contents_size() == 0);
  CHECK(request.outputs_size() == 0);
  absl::StatusOr<DecodedRequest> decoded = DecodeInferRequest(request, config);
  REQUIRE(decoded.ok());
  CHECK(decoded->text);
  CHECK(decoded->batch_size == 3);
  REQUIRE(decoded->inputs.size() == 1);
  CHECK(decoded->inputs[0].strings == texts);

  // Without a batch dim: shape [1], one text.
  config.set_max_batch_size(0);
  const ModelInferRequest single = BuildTextInferRequest(config, "", {"only"});
  REQUIRE(single.inputs_size() == 1);
  CHECK(ShapeOf(single.inputs(0).shape()) == std::vector<int64_t>{1});
  absl::StatusOr<DecodedRequest> one = DecodeInferRequest(single, config);
  REQUIRE(one.ok());
  CHECK(one->text);
  CHECK(one->batch_size == 0);
  REQUIRE(one->inputs.size() == 1);
  CHECK(one->inputs[0].strings == std::vector<std::string>{"only"});
}

TEST_CASE("a text model's metadata lists its text input first, then the token inputs",
          "[codec][text]") {
  ModelMetadataResponse response;
  FillModelMetadata(ParseConfig(kTextModel), {"1"}, &response);
  CHECK(response.name() == "textcls");
  REQUIRE(response.inputs_size() == 3);
  CHECK(response.inputs(0).name() == "text");
  CHECK(response.inputs(0).datatype() == "BYTES");
  CHECK(ShapeOf(response.inputs(0).shape()) == std::vector<int64_t>{-1, 1});
  CHECK(response.inputs(1).name() == "input_ids");
  CHECK(response.inputs(1).datatype() == "INT64");
  CHECK(ShapeOf(response.inputs(1).shape()) == std::vector<int64_t>{-1, -1});
  CHECK(response.inputs(2).name() == "attention_mask");
  CHECK(response.inputs(2).datatype() == "INT64");
  CHECK(ShapeOf(response.inputs(2).shape()) == std::vector<int64_t>{-1, -1});
  REQUIRE(response.outputs_size() == 1);
  CHECK(response.outputs(0).name() == "logits");

  // A model without a tokenizer lists no text input.
  ModelConfig plain = ParseConfig(kTextModel);
  plain.clear_tokenizer();
  FillModelMetadata(plain, {"1"}, &response);
  REQUIRE(response.inputs_size() == 2);
  CHECK(response.inputs(0).name() == "input_ids");
}

}  // namespace
}  // namespace kiln
