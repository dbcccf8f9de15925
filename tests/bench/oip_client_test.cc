#include "bench/oip_client.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "bench/args.h"
#include "bench/health_command.h"
#include "bench/infer_command.h"
#include "common/process.h"
#include "common/safetensors.h"
#include "common/safetensors_writer.h"
#include "google/protobuf/text_format.h"
#include "server/codec/infer_codec.h"
#include "tests/tensor_values.h"

namespace kiln::bench {
namespace {

using Catch::Matchers::Contains;
using inference::ModelInferRequest;
using inference::ModelInferResponse;

using ::kiln::testing::MakeTensor;

template <typename T>
std::vector<T> Values(const Tensor& tensor) {
  std::vector<T> values(tensor.bytes.size() / sizeof(T));
  std::memcpy(values.data(), tensor.bytes.data(), tensor.bytes.size());
  return values;
}

// ---- flags -----------------------------------------------------------------------------------

struct TestFlags {
  std::string model;
  std::string addr = "127.0.0.1:8001";
  int64_t batch = 1;
  bool random = false;
  FlagSet set{"kiln-bench test [flags]", "A test command.", {"kiln-bench test --model=m"}};
  TestFlags() {
    set.AddString("model", &model, "model name");
    set.AddString("addr", &addr, "address");
    set.AddInt("batch", &batch, "batch size");
    set.AddBool("random", &random, "random inputs");
  }
};

TEST_CASE("flags: values of every kind are parsed and remembered as set", "[args]") {
  TestFlags flags;
  REQUIRE(flags.set.Parse({"--model=mlp", "--batch=-3", "--random", "--addr="}).ok());
  CHECK(flags.model == "mlp");
  CHECK(flags.batch == -3);
  CHECK(flags.random);
  CHECK(flags.addr.empty());
  CHECK(flags.set.WasSet("model"));
  CHECK_FALSE(flags.set.help_requested());

  TestFlags other;
  REQUIRE(other.set.Parse({"--random=false"}).ok());
  CHECK_FALSE(other.random);
  CHECK(other.set.WasSet("random"));
  CHECK_FALSE(other.set.WasSet("model"));
  CHECK(other.addr == "127.0.0.1:8001");
}

TEST_CASE("flags: an unknown flag is an error naming it", "[args]") {
  TestFlags flags;
  const absl::Status status = flags.set.Parse({"--model=m", "--bogus=1"});
  REQUIRE(status.code() == absl::StatusCode::kInvalidArgument);
  CHECK_THAT(std::string(status.message()), Contains("unknown flag --bogus"));
}

TEST_CASE("flags: a value flag without a value is an error", "[args]") {
  TestFlags flags;
  absl::Status status = flags.set.Parse({"--model"});
  REQUIRE_FALSE(status.ok());
  CHECK_THAT(std::string(status.message()), Contains("--model needs a value"));
  status = flags.set.Parse({"--batch"});
  REQUIRE_FALSE(status.ok());
  CHECK_THAT(std::string(status.message()), Contains("--batch needs a value"));
}

TEST_CASE("flags: a malformed integer or boolean is an error quoting it", "[args]") {
  for (const char* bad : {"--batch=abc", "--batch=12x", "--batch=", "--batch=1.5",
                          "--batch=99999999999999999999"}) {
    TestFlags flags;
    const absl::Status status = flags.set.Parse({bad});
    INFO(bad);
    REQUIRE_FALSE(status.ok());
    CHECK_THAT(std::string(status.message()), Contains("is not an integer"));
  }
  TestFlags flags;
  const absl::Status status = flags.set.Parse({"--random=yes"});
  REQUIRE_FALSE(status.ok());
  CHECK_THAT(std::string(status.message()), Contains("'yes' is not a boolean"));
  CHECK(ParseInt64("-42") == -42);
  CHECK_FALSE(ParseInt64("+1").has_value());
}

TEST_CASE("flags: positional arguments are refused", "[args]") {
  TestFlags flags;
  const absl::Status status = flags.set.Parse({"mlp"});
  REQUIRE_FALSE(status.ok());
  CHECK_THAT(std::string(status.message()), Contains("unexpected argument 'mlp'"));
}

TEST_CASE("flags: --help stops parsing and usage lists flags with defaults and an example",
          "[args]") {
  TestFlags flags;
  REQUIRE(flags.set.Parse({"--help", "--bogus"}).ok());
  CHECK(flags.set.help_requested());
  const std::string usage = flags.set.Usage();
  CHECK_THAT(usage, Contains("usage: kiln-bench test [flags]"));
  CHECK_THAT(usage, Contains("--model=\"\""));
  CHECK_THAT(usage, Contains("--addr=127.0.0.1:8001"));
  CHECK_THAT(usage, Contains("--batch=1"));
  CHECK_THAT(usage, Contains("--random=false"));
  CHECK_THAT(usage, Contains("--help"));
  CHECK_THAT(usage, Contains("example:\n  kiln-bench test --model=m"));
}

// ---- datatypes and status formatting ----------------------------------------------------------

TEST_CASE("OIP datatypes agree with the server's codec and round-trip", "[oip]") {
  for (int value = DataType_MIN; value <= DataType_MAX; ++value) {
    const DataType type = static_cast<DataType>(value);
    const std::optional<DType> dtype = DTypeFromDataType(type);
    if (!dtype) continue;
    INFO(OipDatatypeName(type));
    REQUIRE(OipDatatypeForDType(*dtype).has_value());
    CHECK(*OipDatatypeForDType(*dtype) == OipDatatypeName(type));
  }
  for (const char* name : {"BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16",
                           "INT32", "INT64", "FP16", "BF16", "FP32", "FP64"}) {
    const std::optional<DType> dtype = DTypeForOipDatatype(name);
    REQUIRE(dtype.has_value());
    CHECK(*OipDatatypeForDType(*dtype) == name);
  }
  CHECK_FALSE(DTypeForOipDatatype("BYTES").has_value());
  CHECK_FALSE(DTypeForOipDatatype("fp32").has_value());
  CHECK_FALSE(OipDatatypeForDType(DType::kFloat8E4M3).has_value());
}

TEST_CASE("gRPC statuses are formatted with their code names", "[oip]") {
  CHECK(FormatGrpcStatus(grpc::Status(grpc::StatusCode::UNAVAILABLE, "no server")) ==
        "UNAVAILABLE: no server");
  CHECK(FormatGrpcStatus(grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "late")) ==
        "DEADLINE_EXCEEDED: late");
  CHECK(FormatGrpcStatus(grpc::Status::OK) == "OK");
  CHECK(GrpcCodeName(grpc::StatusCode::UNAUTHENTICATED) == "UNAUTHENTICATED");
  // 20: past the last code, yet a value the enum can hold (casting 99 to it is undefined).
  CHECK(GrpcCodeName(static_cast<grpc::StatusCode>(20)) == "CODE_20");
}

// A resolved kiln::ModelConfig, as the loader gives the server.
const char kModel[] = R"pb(
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
  output {
    name: "n"
    data_type: TYPE_INT32
    dims: [ 1 ]
  }
)pb";

ModelConfig Config() {
  ModelConfig config;
  REQUIRE(google::protobuf::TextFormat::ParseFromString(kModel, &config));
  return config;
}

TEST_CASE("random inputs for the model's metadata pass the server's own decoder", "[oip]") {
  const ModelConfig config = Config();
  inference::ModelMetadataResponse metadata;
  FillModelMetadata(config, {"1"}, &metadata);
  const std::vector<InputSpec> specs = InputSpecsFromMetadata(metadata);
  absl::StatusOr<std::vector<Tensor>> inputs = MakeRandomInputs(specs, 2, 5, 1);
  REQUIRE(inputs.ok());
  std::vector<TensorView> views;
  for (const Tensor& tensor : *inputs) views.push_back(tensor.view());
  absl::StatusOr<ModelInferRequest> request = BuildInferRequest("m", "", views);
  REQUIRE(request.ok());

  absl::StatusOr<DecodedRequest> decoded = DecodeInferRequest(*request, config);
  REQUIRE(decoded.ok());
  CHECK(decoded->batch_size == 2);
  REQUIRE(decoded->inputs.size() == 2);
  CHECK(decoded->inputs[1].view.shape == std::vector<int64_t>{2, 5});
  CHECK(std::memcmp(decoded->inputs[0].view.data, (*inputs)[0].bytes.data(), 2 * 3 * 4) == 0);

  // The server's response, decoded back into tensors.
  const std::vector<Tensor> outputs = {
      MakeTensor<float>("y", DType::kFloat32, {2, 2}, {0.5f, -1.5f, 2.5f, 3.0f}),
      MakeTensor<int32_t>("n", DType::kInt32, {2, 1}, {4, -9})};
  ModelInferResponse response;
  REQUIRE(EncodeInferResponse(config, "1", *request, *decoded, Views(outputs), &response).ok());
  absl::StatusOr<std::vector<Tensor>> tensors = DecodeInferResponse(response);
  REQUIRE(tensors.ok());
  REQUIRE(tensors->size() == 2);
  for (size_t i = 0; i < 2; ++i) {
    CHECK((*tensors)[i].name == outputs[i].name);
    CHECK((*tensors)[i].dtype == outputs[i].dtype);
    CHECK((*tensors)[i].shape == outputs[i].shape);
    CHECK((*tensors)[i].bytes == outputs[i].bytes);
  }
}

// ---- responses --------------------------------------------------------------------------------

ModelInferResponse RawResponse() {
  ModelInferResponse response;
  auto* y = response.add_outputs();
  y->set_name("y");
  y->set_datatype("FP32");
  y->add_shape(1);
  y->add_shape(3);
  const std::vector<float> values = {1.0f, 2.0f, -3.0f};
  response.add_raw_output_contents()->assign(reinterpret_cast<const char*>(values.data()), 12);
  auto* z = response.add_outputs();
  z->set_name("z");
  z->set_datatype("UINT16");
  z->add_shape(2);
  const std::vector<uint16_t> small = {7, 65535};
  response.add_raw_output_contents()->assign(reinterpret_cast<const char*>(small.data()), 4);
  return response;
}

TEST_CASE("responses decode into tensors with shape and dtype and bytes", "[oip]") {
  absl::StatusOr<std::vector<Tensor>> tensors = DecodeInferResponse(RawResponse());
  REQUIRE(tensors.ok());
  REQUIRE(tensors->size() == 2);
  CHECK((*tensors)[0].name == "y");
  CHECK((*tensors)[0].dtype == DType::kFloat32);
  CHECK((*tensors)[0].shape == std::vector<int64_t>{1, 3});
  CHECK(Values<float>((*tensors)[0]) == std::vector<float>{1.0f, 2.0f, -3.0f});
  CHECK((*tensors)[1].dtype == DType::kUInt16);
  CHECK(Values<uint16_t>((*tensors)[1]) == std::vector<uint16_t>{7, 65535});
}

TEST_CASE("a raw output whose size does not match its shape is an error", "[oip]") {
  ModelInferResponse response = RawResponse();
  response.mutable_raw_output_contents(0)->resize(8);
  absl::StatusOr<std::vector<Tensor>> tensors = DecodeInferResponse(response);
  REQUIRE(tensors.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK_THAT(std::string(tensors.status().message()),
             Contains("output 'y': 8 bytes of raw content, expected 12 for FP32 [1, 3]"));

  response = RawResponse();
  response.mutable_outputs(1)->set_shape(0, 3);
  CHECK_THAT(std::string(DecodeInferResponse(response).status().message()), Contains("'z'"));
}

TEST_CASE("malformed responses are errors: raw count and datatype and shape", "[oip]") {
  ModelInferResponse response = RawResponse();
  response.mutable_raw_output_contents()->RemoveLast();
  CHECK_THAT(std::string(DecodeInferResponse(response).status().message()),
             Contains("1 raw_output_contents for 2 outputs"));

  response = RawResponse();
  response.mutable_outputs(1)->set_datatype("BYTES");
  CHECK_THAT(std::string(DecodeInferResponse(response).status().message()),
             Contains("output 'z': datatype 'BYTES'"));

  response = RawResponse();
  response.mutable_outputs(0)->set_shape(0, -1);
  CHECK_THAT(std::string(DecodeInferResponse(response).status().message()),
             Contains("invalid shape"));
}

TEST_CASE("typed output contents decode as well with their counts checked", "[oip]") {
  ModelInferResponse response;
  auto* y = response.add_outputs();
  y->set_name("y");
  y->set_datatype("INT16");
  y->add_shape(3);
  for (int v : {1, -2, 300}) y->mutable_contents()->add_int_contents(v);
  auto* b = response.add_outputs();
  b->set_name("b");
  b->set_datatype("BOOL");
  b->add_shape(2);
  b->mutable_contents()->add_bool_contents(true);
  b->mutable_contents()->add_bool_contents(false);
  absl::StatusOr<std::vector<Tensor>> tensors = DecodeInferResponse(response);
  REQUIRE(tensors.ok());
  CHECK(Values<int16_t>((*tensors)[0]) == std::vector<int16_t>{1, -2, 300});
  CHECK(Values<uint8_t>((*tensors)[1]) == std::vector<uint8_t>{1, 0});

  y->mutable_contents()->add_int_contents(4);
  CHECK_THAT(std::string(DecodeInferResponse(response).status().message()),
             Contains("output 'y': 4 values in contents.int_contents, expected 3"));
}

// ---- random inputs ----------------------------------------------------------------------------

TEST_CASE("random inputs: a leading -1 is the batch and other -1 dims are seq", "[random]") {
  CHECK(*ResolveShape({-1, -1}, 4, 32) == std::vector<int64_t>{4, 32});
  CHECK(*ResolveShape({-1, 3, -1, 2}, 2, 7) == std::vector<int64_t>{2, 3, 7, 2});
  CHECK(*ResolveShape({5, -1}, 2, 7) == std::vector<int64_t>{5, 7});
  CHECK(*ResolveShape({}, 2, 7) == std::vector<int64_t>{});
  CHECK_FALSE(ResolveShape({-2, 3}, 1, 1).ok());
  CHECK_FALSE(ResolveShape({-1}, 0, 1).ok());

  const std::vector<InputSpec> specs = {{"input_ids", "INT64", {-1, -1}},
                                        {"pixels", "FP32", {-1, 3, 4}},
                                        {"mask", "BOOL", {-1, -1}},
                                        {"half", "FP16", {-1, 64}},
                                        {"ints", "INT32", {10}}};
  absl::StatusOr<std::vector<Tensor>> tensors = MakeRandomInputs(specs, 3, 9, 42);
  REQUIRE(tensors.ok());
  REQUIRE(tensors->size() == 5);
  const auto& t = *tensors;
  CHECK(t[0].name == "input_ids");
  CHECK(t[0].dtype == DType::kInt64);
  CHECK(t[0].shape == std::vector<int64_t>{3, 9});
  CHECK(t[0].bytes.size() == 3 * 9 * 8);
  CHECK(t[1].shape == std::vector<int64_t>{3, 3, 4});
  CHECK(t[1].bytes.size() == 3 * 3 * 4 * 4);
  CHECK(t[2].shape == std::vector<int64_t>{3, 9});
  CHECK(t[3].shape == std::vector<int64_t>{3, 64});
  CHECK(t[4].shape == std::vector<int64_t>{10});

  for (int64_t v : Values<int64_t>(t[0])) CHECK((v >= 0 && v < 100));
  for (int32_t v : Values<int32_t>(t[4])) CHECK((v >= 0 && v < 100));
  for (float v : Values<float>(t[1])) CHECK((v >= -1.0f && v < 1.0f));
  for (uint8_t v : Values<uint8_t>(t[2])) CHECK(v <= 1);
  for (uint16_t v : Values<uint16_t>(t[3])) {
    const float f = HalfToFloat(v);
    CHECK((f >= -1.0f && f <= 1.0f));
  }
  // Not all the same value.
  const std::vector<float> floats = Values<float>(t[1]);
  CHECK(*std::min_element(floats.begin(), floats.end()) <
        *std::max_element(floats.begin(), floats.end()));
}

TEST_CASE("random inputs are determined by the seed", "[random]") {
  const std::vector<InputSpec> specs = {{"x", "FP32", {-1, 8}}, {"ids", "INT64", {-1, -1}}};
  absl::StatusOr<std::vector<Tensor>> a = MakeRandomInputs(specs, 2, 4, 7);
  absl::StatusOr<std::vector<Tensor>> b = MakeRandomInputs(specs, 2, 4, 7);
  absl::StatusOr<std::vector<Tensor>> c = MakeRandomInputs(specs, 2, 4, 8);
  REQUIRE((a.ok() && b.ok() && c.ok()));
  CHECK((*a)[0].bytes == (*b)[0].bytes);
  CHECK((*a)[1].bytes == (*b)[1].bytes);
  CHECK((*a)[0].bytes != (*c)[0].bytes);
}

TEST_CASE("random inputs refuse BYTES and unknown datatypes naming the input", "[random]") {
  absl::StatusOr<std::vector<Tensor>> tensors =
      MakeRandomInputs({{"text", "BYTES", {-1}}}, 1, 1, 0);
  REQUIRE_FALSE(tensors.ok());
  CHECK_THAT(std::string(tensors.status().message()), Contains("input 'text'"));
  CHECK_FALSE(MakeRandomInputs({{"x", "FLOAT", {1}}}, 1, 1, 0).ok());
}

TEST_CASE("half and bfloat16 conversions round to nearest even", "[random]") {
  CHECK(FloatToHalf(1.0f) == 0x3c00);
  CHECK(FloatToHalf(-2.0f) == 0xc000);
  CHECK(FloatToHalf(65504.0f) == 0x7bff);
  CHECK(FloatToHalf(65520.0f) == 0x7c00);
  CHECK(FloatToHalf(0x1p-24f) == 0x0001);
  CHECK(FloatToHalf(1.0f + 0x1p-11f) == 0x3c00);  // tie: to even
  CHECK(FloatToHalf(1.0f + 3 * 0x1p-11f) == 0x3c02);
  CHECK(HalfToFloat(0x3555) == Approx(0.333252f));
  CHECK(HalfToFloat(0x0001) == 0x1p-24f);
  CHECK(HalfToFloat(0xfc00) == -std::numeric_limits<float>::infinity());
  CHECK(FloatToBFloat16(1.0f) == 0x3f80);
  CHECK(BFloat16ToFloat(0xbf80) == -1.0f);
  CHECK(FloatToBFloat16(1.0f + 0x1p-8f) == 0x3f80);  // tie: to even
  for (float f : {0.0f, 0.5f, -0.75f, 0.123f, 1000.0f}) {
    CHECK(HalfToFloat(FloatToHalf(f)) == Approx(f).epsilon(1e-3));
    CHECK(BFloat16ToFloat(FloatToBFloat16(f)) == Approx(f).epsilon(1e-2));
  }
}

// ---- safetensors ------------------------------------------------------------------------------

TEST_CASE("inputs come from a safetensors file by name or input.<name>", "[safetensors]") {
  const Tensor x = MakeTensor<float>("input.x", DType::kFloat32, {2, 3}, {1, 2, 3, 4, 5, 6});
  const Tensor ids = MakeTensor<int64_t>("ids", DType::kInt64, {2, 5},
                                         {1, 2, 3, 4, 5, 6, 7, 8, 9, 10});
  const Tensor out = MakeTensor<float>("output.y", DType::kFloat32, {2}, {0, 0});
  absl::StatusOr<std::string> image = SerializeSafetensors({x.view(), ids.view(), out.view()}, {});
  REQUIRE(image.ok());
  absl::StatusOr<SafetensorsIndex> index = ParseSafetensors(
      reinterpret_cast<const uint8_t*>(image->data()), image->size(), "ref", {});
  REQUIRE(index.ok());

  const std::vector<InputSpec> specs = {{"ids", "INT64", {-1, -1}}, {"x", "FP32", {-1, 3}}};
  absl::StatusOr<std::vector<TensorView>> views = InputsFromSafetensors(*index, specs, "ref");
  REQUIRE(views.ok());
  REQUIRE(views->size() == 2);
  CHECK((*views)[0].name == "ids");
  CHECK((*views)[0].shape == std::vector<int64_t>{2, 5});
  CHECK((*views)[1].name == "x");  // sent under the model's name, not the file's
  CHECK((*views)[1].nbytes == 24);
  CHECK(std::memcmp((*views)[1].data, x.bytes.data(), 24) == 0);

  absl::StatusOr<std::vector<TensorView>> missing =
      InputsFromSafetensors(*index, {{"mask", "INT64", {-1}}}, "ref");
  REQUIRE_FALSE(missing.ok());
  CHECK_THAT(std::string(missing.status().message()), Contains("no tensor 'mask'"));
  CHECK_THAT(std::string(missing.status().message()), Contains("input.x, ids, output.y"));

  absl::StatusOr<std::vector<TensorView>> wrong_type =
      InputsFromSafetensors(*index, {{"x", "FP64", {-1, 3}}}, "ref");
  REQUIRE_FALSE(wrong_type.ok());
  CHECK_THAT(std::string(wrong_type.status().message()), Contains("is F32"));

  absl::StatusOr<std::vector<TensorView>> wrong_shape =
      InputsFromSafetensors(*index, {{"x", "FP32", {-1, 4}}}, "ref");
  REQUIRE_FALSE(wrong_shape.ok());
  CHECK_THAT(std::string(wrong_shape.status().message()), Contains("expects [-1, 4]"));
}

// ---- output summaries and health --------------------------------------------------------------

TEST_CASE("summaries show the first 8 values and min/max/mean", "[summary]") {
  const Tensor y = MakeTensor<float>("y", DType::kFloat32, {2, 5},
                                     {1, 2, 3, 4, 5, 6, 7, 8, 9, -10});
  CHECK(SummarizeTensor(y) ==
        "y FP32 [2, 5] [1, 2, 3, 4, 5, 6, 7, 8, ...] min=-10 max=9 mean=3.5");
  const Tensor ids = MakeTensor<int64_t>("ids", DType::kInt64, {2}, {123456789012LL, -1});
  CHECK(SummarizeTensor(ids) ==
        "ids INT64 [2] [123456789012, -1] min=-1 max=1.23457e+11 mean=6.17284e+10");
  const Tensor none = MakeTensor<float>("e", DType::kFloat32, {0}, {});
  CHECK(SummarizeTensor(none) == "e FP32 [0] []");
}

TEST_CASE("health: only SERVING exits 0 and NOT_FOUND reads as SERVICE_UNKNOWN", "[health]") {
  grpc::health::v1::HealthCheckResponse response;
  response.set_status(grpc::health::v1::HealthCheckResponse::SERVING);
  HealthOutcome outcome = InterpretCheck(grpc::Status::OK, response);
  CHECK(outcome.line == "SERVING");
  CHECK(outcome.exit_code == 0);

  response.set_status(grpc::health::v1::HealthCheckResponse::NOT_SERVING);
  outcome = InterpretCheck(grpc::Status::OK, response);
  CHECK(outcome.line == "NOT_SERVING");
  CHECK(outcome.exit_code == 1);

  outcome = InterpretCheck(grpc::Status(grpc::StatusCode::NOT_FOUND, "unknown service"), response);
  CHECK(outcome.line == "SERVICE_UNKNOWN");
  CHECK(outcome.exit_code == 1);

  outcome = InterpretCheck(grpc::Status(grpc::StatusCode::UNAVAILABLE, "down"), response);
  CHECK(outcome.is_error);
  CHECK(outcome.line == "kiln-bench: Health.Check failed: UNAVAILABLE: down");
  CHECK(outcome.exit_code == 1);

  CHECK(ServingStatusName(0) == "UNKNOWN");
  CHECK(ServingStatusName(3) == "SERVICE_UNKNOWN");
  CHECK(ServingStatusName(9) == "STATUS_9");
}

TEST_CASE(
    "ConnectChannel returns a connected channel where a server listens, and why not where "
    "none does",
    "[channel]") {
  inference::GRPCInferenceService::CallbackService service;  // every method UNIMPLEMENTED
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  const std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  REQUIRE(server != nullptr);
  REQUIRE(port > 0);
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel =
      ConnectChannel(absl::StrCat("127.0.0.1:", port));
  REQUIRE(channel.ok());
  CHECK((*channel)->GetState(false) == GRPC_CHANNEL_READY);
  server->Shutdown();

  // A port nothing listens on: refused at every attempt until the timeout.
  const absl::StatusOr<int> closed = FreeLoopbackPort();
  REQUIRE(closed.ok());
  const std::string address = absl::StrCat("127.0.0.1:", *closed);
  channel = ConnectChannel(address, std::chrono::milliseconds(300));
  REQUIRE_FALSE(channel.ok());
  CHECK(absl::IsUnavailable(channel.status()));
  CHECK_THAT(std::string(channel.status().message()),
             Contains("could not connect to " + address + " within 0.3 s") &&
                 Contains("Connection refused"));
}

}  // namespace
}  // namespace kiln::bench
