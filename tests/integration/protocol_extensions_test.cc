// Triton's protocol extensions against the real server: ServerMetadata's extensions, the
// ModelConfig RPC (the model's config.pbtxt as Triton fills it in, with kiln's resolved kiln.pbtxt
// settings in parameters["kiln_config"]) and ModelStreamInfer
// (responses in request order, an error per request without ending the stream, the same
// outputs as ModelInfer, and open streams ended by a drain instead of holding it up).
#include <signal.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_join.h"
#include "google/protobuf/text_format.h"
#include "proto/model_config.pb.h"
#include "server/front/infer_stream.h"
#include "tests/integration/server_test_util.h"

namespace kiln {
namespace {

using Catch::Matchers::Contains;
using kiln::testing::Config;
using kiln::testing::DemoConfig;
using kiln::testing::kStartup;
using kiln::testing::MlpRequest;
using kiln::testing::ServerConfig;
using kiln::testing::ServerProcess;
using kiln::testing::StartServing;
using kiln::testing::Stub;
using kiln::testing::TempDir;
using std::chrono::seconds;

using StreamResponse = inference::ModelStreamInferResponse;

// Request `i` of a stream: mlp with a batch of 1 + i % 4, id "i".
inference::ModelInferRequest StreamRequest(int i) {
  inference::ModelInferRequest request = MlpRequest(1 + i % 4);
  request.set_id(std::to_string(i));
  return request;
}

// Writes `requests` on one stream while another thread reads; returns every response, and the
// stream's final status in `status`.
std::vector<StreamResponse> RunStream(Stub& stub,
                                      const std::vector<inference::ModelInferRequest>& requests,
                                      grpc::Status* status) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + seconds(60));
  auto stream = stub.ModelStreamInfer(&context);
  std::vector<StreamResponse> responses;
  std::thread reader([&] {
    for (StreamResponse response; stream->Read(&response);) responses.push_back(response);
  });
  for (const inference::ModelInferRequest& request : requests) {
    if (!stream->Write(request)) break;
  }
  stream->WritesDone();
  reader.join();
  *status = stream->Finish();
  return responses;
}

TEST_CASE(
    "ServerMetadata lists model_configuration: ModelConfig answers Triton's message and "
    "ModelStreamInfer answers in order with an error per request",
    "[integration][server][protocol]") {
  TempDir repo_dir;
  const std::string repo = kiln::testing::MakeRepository(repo_dir, {{"mlp", DemoConfig("mlp")}});
  auto server = StartServing(Config(repo, 1));
  INFO("log:\n" << server->log());
  Stub oip(kiln::testing::ServingChannel(*server));

  {  // ServerMetadata (one server for all three: no SECTIONs, which would start it again)
    grpc::ClientContext context;
    inference::ServerMetadataResponse metadata;
    REQUIRE(oip.ServerMetadata(&context, {}, &metadata).ok());
    CHECK(metadata.name() == "kiln");
    // The repository extension is there only with --model_control_mode=explicit (reload_test).
    CHECK(absl::StrJoin(metadata.extensions(), " ") ==
          "classification model_configuration schedule_policy");
  }

  {  // ModelConfig
    grpc::ClientContext context;
    inference::ModelConfigRequest request;
    request.set_name("mlp");
    inference::ModelConfigResponse response;
    REQUIRE(oip.ModelConfig(&context, request, &response).ok());
    const inference::ModelConfig& config = response.config();
    CHECK(config.name() == "mlp");
    CHECK(config.platform() == "pytorch_libtorch");
    CHECK(config.backend() == "pytorch");
    CHECK(config.max_batch_size() > 0);
    REQUIRE(config.input_size() == 1);
    CHECK(config.input(0).name() == "input");
    CHECK(config.input(0).data_type() == inference::TYPE_FP32);
    CHECK(std::vector<int64_t>(config.input(0).dims().begin(), config.input(0).dims().end()) ==
          std::vector<int64_t>{16});
    REQUIRE(config.instance_group_size() == 1);
    CHECK(config.instance_group(0).count() == 1);  // --workers=1
    CHECK(config.instance_group(0).kind() == inference::ModelInstanceGroup::KIND_CPU);
    // kiln's settings, resolved: the warmup of the demo's kiln.pbtxt, and the defaults written out.
    REQUIRE(config.parameters().count("kiln_config") == 1);
    ModelSettings settings;
    REQUIRE(google::protobuf::TextFormat::ParseFromString(
        config.parameters().at("kiln_config").string_value(), &settings));
    CHECK(std::vector<int32_t>(settings.warmup().batch_sizes().begin(),
                               settings.warmup().batch_sizes().end()) ==
          std::vector<int32_t>{1, 2, 4, 8});
    CHECK(settings.warmup().calls_per_shape() == 2);    // the default
    CHECK(settings.readiness().check_requests() == 0);  // sized when the check runs

    for (const auto& [name, version, code] :
         {std::tuple("nope", "", grpc::StatusCode::NOT_FOUND),
          std::tuple("mlp", "7", grpc::StatusCode::NOT_FOUND),
          std::tuple("mlp", "x", grpc::StatusCode::INVALID_ARGUMENT)}) {
      grpc::ClientContext bad_context;
      request.set_name(name);
      request.set_version(version);
      CHECK(oip.ModelConfig(&bad_context, request, &response).error_code() == code);
    }
  }

  {  // ModelStreamInfer
    // More requests than a stream runs at once, so that reading pauses and resumes.
    const int kRequests = kMaxInFlightPerStream + 8;
    std::vector<inference::ModelInferRequest> requests;
    for (int i = 0; i < kRequests; ++i) requests.push_back(StreamRequest(i));
    requests[5].mutable_inputs(0)->mutable_shape()->Set(1, 15);  // the wrong feature count
    requests[9].set_model_name("nope");

    grpc::Status status;
    const std::vector<StreamResponse> responses = RunStream(oip, requests, &status);
    CHECK(status.ok());
    REQUIRE(static_cast<int>(responses.size()) == kRequests);
    for (int i = 0; i < kRequests; ++i) {
      INFO("response " << i);
      const StreamResponse& response = responses[i];
      CHECK(response.infer_response().id() == std::to_string(i));  // in request order
      if (i == 5) {
        CHECK_THAT(response.error_message(), Contains("INVALID_ARGUMENT") && Contains("input"));
      } else if (i == 9) {
        CHECK_THAT(response.error_message(), Contains("NOT_FOUND") && Contains("nope"));
      } else {
        CHECK(response.error_message().empty());
        REQUIRE(response.infer_response().outputs_size() == 1);
        CHECK(response.infer_response().outputs(0).shape(0) == 1 + i % 4);
      }
    }
    // The same outputs as ModelInfer's.
    inference::ModelInferResponse unary;
    REQUIRE(kiln::testing::Infer(oip, requests[3], &unary, seconds(30)).ok());
    CHECK(unary.raw_output_contents(0) == responses[3].infer_response().raw_output_contents(0));
  }
}

TEST_CASE("a drain ends open streams once what they read is answered: it does not wait for them",
          "[integration][server][protocol][signals]") {
  TempDir repo_dir;
  const std::string repo = kiln::testing::MakeRepository(repo_dir, {{"mlp", DemoConfig("mlp")}});
  ServerConfig config = Config(repo, 1);
  // Long enough that a stream holding up the drain would show.
  config.extra_args.push_back("--drain_timeout_s=120");
  auto server = StartServing(config);
  INFO("log:\n" << server->log());
  Stub oip(kiln::testing::ServingChannel(*server));

  grpc::ClientContext context;
  auto stream = oip.ModelStreamInfer(&context);
  for (int i = 0; i < 3; ++i) {
    REQUIRE(stream->Write(StreamRequest(i)));
    StreamResponse response;
    REQUIRE(stream->Read(&response));
    CHECK(response.error_message().empty());
  }
  // The stream stays open (no WritesDone): the drain must end it.
  server->Signal(SIGTERM);
  StreamResponse extra;
  CHECK_FALSE(stream->Read(&extra));
  const grpc::Status status = stream->Finish();
  CHECK(status.error_code() == grpc::StatusCode::UNAVAILABLE);
  CHECK_THAT(status.error_message(), Contains("shutting down") && Contains("3 requests"));
  CHECK(server->WaitExit(seconds(60)) == 0);
}

// A channel with a connection of its own (channels with equal arguments share one).
std::shared_ptr<grpc::Channel> OwnConnection(int port) {
  grpc::ChannelArguments arguments;
  arguments.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(port),
                                   grpc::InsecureChannelCredentials(), arguments);
}

grpc::StatusCode LiveCode(const std::shared_ptr<grpc::Channel>& channel, seconds timeout) {
  Stub stub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + timeout);
  inference::ServerLiveResponse response;
  return stub.ServerLive(&context, {}, &response).error_code();
}

TEST_CASE("a client connection has at most --max_concurrent_streams calls open at once",
          "[integration][server][protocol][limits]") {
  TempDir repo_dir;
  const std::string repo = kiln::testing::MakeRepository(repo_dir, {{"mlp", DemoConfig("mlp")}});
  ServerConfig config = Config(repo, 1);
  config.extra_args.push_back("--max_concurrent_streams=1");
  auto server = StartServing(config);
  INFO("log:\n" << server->log());

  const auto busy = OwnConnection(server->port());
  REQUIRE(LiveCode(busy, seconds(30)) == grpc::StatusCode::OK);  // connected
  Stub oip(busy);
  grpc::ClientContext context;
  auto stream = oip.ModelStreamInfer(&context);
  REQUIRE(stream->Write(StreamRequest(0)));
  StreamResponse response;
  REQUIRE(stream->Read(&response));  // the stream is open on the server
  // The connection's one stream is taken: its next call waits until its deadline.
  CHECK(LiveCode(busy, seconds(2)) == grpc::StatusCode::DEADLINE_EXCEEDED);
  // Another connection is not held back.
  CHECK(LiveCode(OwnConnection(server->port()), seconds(30)) == grpc::StatusCode::OK);
  stream->WritesDone();
  CHECK(stream->Finish().ok());
  CHECK(LiveCode(busy, seconds(30)) == grpc::StatusCode::OK);
}

// A request of `bytes` raw bytes for mlp (which takes 64): past gRPC, kiln refuses it as
// INVALID_ARGUMENT naming the size.
grpc::Status OversizedMlpCall(const std::shared_ptr<grpc::Channel>& channel, size_t bytes) {
  inference::ModelInferRequest request = MlpRequest(1);
  request.mutable_raw_input_contents(0)->assign(bytes, 'x');
  Stub stub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + seconds(60));
  inference::ModelInferResponse response;
  return stub.ModelInfer(&context, request, &response);
}

TEST_CASE("gRPC's memory quota (--grpc_memory_mb) refuses the calls beyond it and serves the rest",
          "[integration][server][protocol][limits]") {
  TempDir repo_dir;
  const std::string repo = kiln::testing::MakeRepository(repo_dir, {{"mlp", DemoConfig("mlp")}});
  ServerConfig config = Config(repo, 1);
  config.extra_args.push_back("--grpc_memory_mb=8");
  auto server = StartServing(config);
  INFO("log:\n" << server->log());
  const auto channel = OwnConnection(server->port());

  // Within the quota (and --max_message_mb), a large request reaches kiln's own checks.
  const grpc::Status within = OversizedMlpCall(channel, 2 << 20);
  CHECK(within.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  CHECK_THAT(within.error_message(), Contains("2097152 bytes of raw content"));

  // Beyond it, gRPC refuses the calls before kiln sees them (without the flag these would be
  // INVALID_ARGUMENT too); one connection may be closed by gRPC's reclaimer (UNAVAILABLE).
  std::vector<grpc::Status> beyond(4);
  std::vector<std::thread> callers;
  for (grpc::Status& status : beyond) {
    callers.emplace_back([&] { status = OversizedMlpCall(channel, 16 << 20); });
  }
  for (std::thread& caller : callers) caller.join();
  int exhausted = 0;
  for (const grpc::Status& status : beyond) {
    INFO(status.error_code() << " " << status.error_message());
    CHECK((status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED ||
           status.error_code() == grpc::StatusCode::UNAVAILABLE));
    exhausted += status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED;
  }
  CHECK(exhausted >= 1);

  // The server goes on serving.
  Stub stub(OwnConnection(server->port()));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + seconds(30));
  inference::ModelInferResponse response;
  CHECK(stub.ModelInfer(&context, MlpRequest(1), &response).ok());
  CHECK(server->IsRunning());
}

}  // namespace
}  // namespace kiln
