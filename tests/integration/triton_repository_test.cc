// A model repository written as Triton's documentation writes it for TorchScript models, served
// by the real kiln-server unchanged and checked over Triton's own protocol (the
// inference.GRPCInferenceService its clients speak): Triton's tensor names, list-form instance
// groups, model_warmup, version_policy, dynamic_batching and the PyTorch backend's parameters,
// with no kiln.pbtxt; and a Triton field kiln does not implement, which stops the start at its
// line.
#include <catch2/catch.hpp>
#include <cstring>
#include <filesystem>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/bytes_form.h"
#include "common/safetensors.h"
#include "google/protobuf/text_format.h"
#include "proto/model_config.pb.h"
#include "tests/integration/server_test_util.h"
#include "tests/run_command.h"

namespace kiln {
namespace {

using Catch::Matchers::Contains;
using grpc::health::v1::HealthCheckResponse;
using kiln::testing::Health;
using kiln::testing::HealthStub;
using kiln::testing::Infer;
using kiln::testing::ModelsDir;
using kiln::testing::Report;
using kiln::testing::ServerConfig;
using kiln::testing::ServerProcess;
using kiln::testing::StartServing;
using kiln::testing::Stub;
using kiln::testing::TempDir;
using kiln::testing::TestModel;
using std::chrono::seconds;

// The demo mlp (forward(input) -> output) as Triton's docs write a TorchScript model's config:
// the backend's <name>__<index> names, two instance groups, two versions, a warmup sample, the
// dynamic batcher and the PyTorch backend's parameters.
// (Raw strings delimited "cfg", not "pb", so that clang-format leaves them as Triton's docs write
// them.)
constexpr char kTritonMlp[] = R"cfg(name: "classifier"
platform: "pytorch_libtorch"
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
  { count: 1 kind: KIND_CPU },
  { count: 1 kind: KIND_CPU }
]
version_policy: { all: {} }
parameters: { key: "INTRA_OP_THREAD_COUNT" value: { string_value: "1" } }
parameters: { key: "INFERENCE_MODE" value: { string_value: "true" } }
parameters: { key: "ENABLE_WEIGHT_SHARING" value: { string_value: "true" } }
model_warmup [
  {
    name: "four_rows"
    batch_size: 4
    count: 1
    inputs {
      key: "INPUT__0"
      value: { data_type: TYPE_FP32 dims: [ 16 ] random_data: true }
    }
  }
]
dynamic_batching {
  preferred_batch_size: [ 2 ]
  max_queue_delay_microseconds: 100
  preserve_ordering: true
}
)cfg";

// The same model under its own tensor names, with backend instead of platform and no instance
// group (kiln sizes it).
constexpr char kPlainMlp[] = R"cfg(name: "plain"
backend: "pytorch"
max_batch_size: 8
default_model_filename: "model.pt"
input [ { name: "input" data_type: TYPE_FP32 dims: [ 16 ] } ]
output [ { name: "output" data_type: TYPE_FP32 dims: [ 4 ] } ]
)cfg";

// mlp's reference pair (scripts/make_models.py): input.input [3, 16] -> output.output [3, 4].
struct Reference {
  std::unique_ptr<MappedSafetensors> file;
  const SafetensorsTensor* input = nullptr;
  const SafetensorsTensor* output = nullptr;
};

Reference MlpReference() {
  Reference reference;
  absl::StatusOr<std::unique_ptr<MappedSafetensors>> file =
      MappedSafetensors::Open(ModelsDir() + "/mlp/1/reference.safetensors");
  REQUIRE(file.ok());
  reference.file = *std::move(file);
  reference.input = reference.file->index().Find("input.input");
  reference.output = reference.file->index().Find("output.output");
  REQUIRE(reference.input != nullptr);
  REQUIRE(reference.output != nullptr);
  return reference;
}

// `model` (`version`, "" = newest) on the reference input, sent as `input_name`.
inference::ModelInferResponse InferReference(Stub& stub, const std::string& model,
                                             const std::string& version,
                                             const std::string& input_name,
                                             const Reference& reference) {
  TensorView view;
  view.name = input_name;
  view.dtype = reference.input->dtype;
  view.shape = reference.input->shape;
  view.data = reference.input->data;
  view.nbytes = reference.input->nbytes();
  inference::ModelInferRequest request = kiln::testing::MakeInferRequest(model, {view});
  request.set_model_version(version);
  inference::ModelInferResponse response;
  const grpc::Status status = Infer(stub, request, &response, seconds(30));
  INFO(model << " v" << version << ": " << status.error_message());
  REQUIRE(status.ok());
  return response;
}

inference::ModelConfig ModelConfigOf(Stub& stub, const std::string& model) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + seconds(5));
  inference::ModelConfigRequest request;
  request.set_name(model);
  inference::ModelConfigResponse response;
  const grpc::Status status = stub.ModelConfig(&context, request, &response);
  INFO(status.error_message());
  REQUIRE(status.ok());
  return response.config();
}

TEST_CASE("a Triton repository for TorchScript models serves on kiln unchanged, over Triton's API",
          "[integration][server][triton]") {
  TempDir dir;
  const std::string repository = kiln::testing::MakeRepository(
      dir, std::map<std::string, TestModel>{
               {"classifier", TestModel{"mlp", kTritonMlp, {1, 2}, std::string()}},
               {"plain", TestModel{"mlp", kPlainMlp, {1}, std::string()}}});
  ServerConfig config = kiln::testing::Config(repository, 0);  // the configs' own counts
  auto server = StartServing(config);
  INFO("log:\n" << server->log());
  auto channel = kiln::testing::ServingChannel(*server);
  Stub stub(channel);
  HealthStub health(channel);
  CHECK(Health(health, "classifier") == HealthCheckResponse::SERVING);

  // INPUT__0 is forward()'s argument 0 and OUTPUT__0 its result: PyTorch's reference output,
  // from either version, as from the model under its own names.
  const Reference reference = MlpReference();
  for (const std::string version : {"1", "2"}) {
    const inference::ModelInferResponse response =
        InferReference(stub, "classifier", version, "INPUT__0", reference);
    CHECK(response.model_version() == version);
    REQUIRE(response.outputs_size() == 1);
    CHECK(response.outputs(0).name() == "OUTPUT__0");
    CHECK(kiln::testing::MaxAbsDiff(response.raw_output_contents(0), *reference.output) < 1e-5);
  }
  const inference::ModelInferResponse plain = InferReference(stub, "plain", "", "input", reference);
  CHECK(plain.outputs(0).name() == "output");
  CHECK(kiln::testing::MaxAbsDiff(plain.raw_output_contents(0), *reference.output) < 1e-5);

  // Two groups of one worker per version, each of one intra-op thread, warm at batch 1 and
  // max_batch_size (kiln's), 2 (preferred) and 4 (the warmup sample).
  const WarmupReportResponse report = Report(*server);
  int classifier_versions = 0;
  for (const ModelWarmupReport& model : report.models()) {
    if (model.model() != "classifier") continue;
    ++classifier_versions;
    CHECK(model.workers_size() == 2);
    for (const internal::WarmupReport& worker : model.workers()) {
      CHECK(worker.intra_op_threads() == 1);
      std::set<int> batches;
      for (const internal::ShapeWarmup& shape : worker.shapes()) batches.insert(shape.batch_size());
      CHECK(batches == std::set<int>{1, 2, 4, 8});
    }
  }
  CHECK(classifier_versions == 2);
  // Logged once: the note is the model's config's, whichever versions it serves.
  CHECK(kiln::testing::Count(server->log(), "kiln's workers always share the weights") == 1);

  // The ModelConfig RPC answers the config as written, filled in as Triton fills it.
  const inference::ModelConfig served = ModelConfigOf(stub, "classifier");
  CHECK(served.platform() == "pytorch_libtorch");
  CHECK(served.backend() == "pytorch");
  CHECK(served.default_model_filename() == "model.pt");
  CHECK(served.instance_group_size() == 2);
  CHECK(served.version_policy().has_all());
  REQUIRE(served.model_warmup_size() == 1);
  CHECK(served.model_warmup(0).name() == "four_rows");
  CHECK(served.parameters().at("INFERENCE_MODE").string_value() == "true");
  CHECK(served.dynamic_batching().max_queue_delay_microseconds() == 100);
  ModelSettings settings;
  REQUIRE(google::protobuf::TextFormat::ParseFromString(
      served.parameters().at("kiln_config").string_value(), &settings));
  CHECK(settings.warmup().calls_per_shape() == 2);  // kiln's default; the sample asks for 1
  const inference::ModelConfig plain_config = ModelConfigOf(stub, "plain");
  REQUIRE(plain_config.instance_group_size() == 1);
  CHECK(plain_config.instance_group(0).count() >= 1);  // the workers kiln chose
  CHECK(plain_config.instance_group(0).kind() == inference::ModelInstanceGroup::KIND_CPU);
}

// A TorchScript model with an optional argument, written by Debian's python3-torch (as
// scripts/make_models.py writes the demo models): y = 2x, plus bias when it is given.
constexpr char kScalerSource[] = R"py(
import sys
from typing import Optional
import torch

class Scaler(torch.nn.Module):
    def forward(self, x: torch.Tensor, bias: Optional[torch.Tensor] = None) -> torch.Tensor:
        if bias is None:
            return x * 2.0
        return x * 2.0 + bias

torch.jit.script(Scaler()).save(sys.argv[1])
)py";

constexpr char kScalerConfig[] = R"cfg(name: "scaler"
backend: "pytorch"
max_batch_size: 4
input [
  { name: "x" data_type: TYPE_FP32 dims: [ 3 ] },
  { name: "bias" data_type: TYPE_FP32 dims: [ 3 ] optional: true }
]
output [ { name: "y" data_type: TYPE_FP32 dims: [ 3 ] label_filename: "labels.txt" } ]
instance_group [ { count: 1 kind: KIND_CPU } ]
)cfg";

// One request to the scaler: x = {1, 2, 3}, and bias when given.
inference::ModelInferRequest ScalerRequest(const std::vector<float>* bias) {
  static const std::vector<float> x = {1, 2, 3};
  std::vector<TensorView> inputs = {
      TensorView{"x", DType::kFloat32, {1, 3}, x.data(), x.size() * sizeof(float)}};
  if (bias != nullptr) {
    inputs.push_back(
        TensorView{"bias", DType::kFloat32, {1, 3}, bias->data(), bias->size() * sizeof(float)});
  }
  return kiln::testing::MakeInferRequest("scaler", inputs);
}

std::vector<float> FloatsOf(const std::string& raw) {
  std::vector<float> values(raw.size() / sizeof(float));
  std::memcpy(values.data(), raw.data(), values.size() * sizeof(float));
  return values;
}

TEST_CASE("an optional input may be left out, and label files name the classes returned",
          "[integration][server][triton]") {
  TempDir dir;
  dir.WriteFile("scaler/config.pbtxt", kScalerConfig);
  dir.WriteFile("scaler/labels.txt", "low\nmid\nhigh\n");
  const std::string script = dir.WriteFile("make_scaler.py", kScalerSource);
  std::filesystem::create_directories(dir.path() + "/scaler/1");
  const kiln::testing::CommandResult made = kiln::testing::RunCommand(
      "/usr/bin/python3 " + script + " " + dir.path() + "/scaler/1/model.pt 2>&1");
  INFO(made.output);
  REQUIRE(made.exit_code == 0);
  std::filesystem::remove(script);

  auto server = StartServing(kiln::testing::Config(dir.path(), 1));
  INFO("log:\n" << server->log());
  Stub stub(kiln::testing::ServingChannel(*server));
  inference::ModelInferResponse response;

  // bias left out: forward() gets its default, None.
  grpc::Status status = Infer(stub, ScalerRequest(nullptr), &response, seconds(30));
  INFO(status.error_message());
  REQUIRE(status.ok());
  CHECK(FloatsOf(response.raw_output_contents(0)) == std::vector<float>{2, 4, 6});
  const std::vector<float> bias = {10, 0, -10};
  status = Infer(stub, ScalerRequest(&bias), &response, seconds(30));
  REQUIRE(status.ok());
  CHECK(FloatsOf(response.raw_output_contents(0)) == std::vector<float>{12, 4, -4});

  // x is required.
  inference::ModelInferRequest bias_only = ScalerRequest(&bias);
  bias_only.mutable_inputs()->DeleteSubrange(0, 1);
  bias_only.mutable_raw_input_contents()->DeleteSubrange(0, 1);
  status = Infer(stub, bias_only, &response, seconds(30));
  CHECK(status.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  CHECK_THAT(status.error_message(), Contains("missing input 'x'"));

  // Triton's classification extension, named from labels.txt.
  inference::ModelInferRequest classify = ScalerRequest(nullptr);
  auto& output = *classify.add_outputs();
  output.set_name("y");
  (*output.mutable_parameters())["classification"].set_int64_param(2);
  status = Infer(stub, classify, &response, seconds(30));
  REQUIRE(status.ok());
  REQUIRE(response.outputs_size() == 1);
  CHECK(response.outputs(0).datatype() == "BYTES");
  const absl::StatusOr<std::vector<std::string>> classes =
      SplitBytesForm(response.raw_output_contents(0), -1);
  REQUIRE(classes.ok());
  CHECK(*classes == std::vector<std::string>{"6.000000:2:high", "4.000000:1:mid"});
}

TEST_CASE("a Triton field kiln does not implement stops the start, at its file and line",
          "[integration][server][triton]") {
  TempDir dir;
  const std::string config =
      std::string(kPlainMlp) + "sequence_batching { max_sequence_idle_microseconds: 5000000 }\n";
  const std::string repository = kiln::testing::MakeRepository(
      dir, std::map<std::string, TestModel>{{"plain", TestModel{"mlp", config, {1}, ""}}});
  ServerProcess server(kiln::testing::Config(repository, 1));
  const std::optional<int> code = server.WaitExit(seconds(60));
  INFO("log:\n" << server.log());
  REQUIRE(code.has_value());
  CHECK(*code != 0);
  const int line = kiln::testing::Count(kPlainMlp, "\n") + 1;  // the line after kPlainMlp's
  CHECK_THAT(server.log(), Contains(absl::StrCat(
                               repository, "/plain/config.pbtxt:", line,
                               ": field 'sequence_batching': Triton's, not supported by kiln")));
}

}  // namespace
}  // namespace kiln
