// Integration test: the kiln-floor-server binary on the demo repository (mlp and textcls), driven
// with kiln-bench's client (bench/oip_client.h): it serves what kiln-server's ModelMetadata says,
// answers zeros of the right name, shape and dtype, refuses a bad request with kiln-server's
// codes, and stops cleanly on SIGTERM. The server runs in a process group of its own on a free
// loopback port; a guard SIGKILLs that group by pid however the test ends. Every wait polls with
// a bound; there are no fixed sleeps.
#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/types.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <optional>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "bench/oip_client.h"
#include "common/process.h"
#include "proto/grpc/health/v1/health.grpc.pb.h"
#include "proto/grpc_service.grpc.pb.h"
#include "tests/run_command.h"
#include "tests/test_paths.h"

namespace kiln {
namespace {

using kiln::testing::TempDir;

// The binary under test: the build's kiln-floor-server, or $KILN_FLOOR_SERVER_BINARY when set.
const std::string kFloor = [] {
  const char* env = std::getenv("KILN_FLOOR_SERVER_BINARY");
  return std::string(env != nullptr && *env != '\0' ? env : KILN_FLOOR_SERVER_BINARY);
}();

std::string ReadText(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

// kiln-floor-server started with `flags` in a process group of its own, its output in a log.
// Ownership: owns the group; the destructor SIGKILLs it and reaps the server. One test thread.
class FloorProcess {
 public:
  explicit FloorProcess(const std::vector<std::string>& flags) {
    std::vector<std::string> argv = {kFloor};
    argv.insert(argv.end(), flags.begin(), flags.end());
    log_path_ = dir_.path() + "/floor.log";
    absl::StatusOr<pid_t> pid = SpawnInProcessGroup(argv, nullptr, log_path_);
    REQUIRE(pid.ok());
    pid_ = *pid;
  }
  ~FloorProcess() {
    if (!reaped_) {
      kill(-pid_, SIGKILL);
      ReapChild(pid_, std::chrono::milliseconds(0));
    }
  }
  FloorProcess(const FloorProcess&) = delete;
  FloorProcess& operator=(const FloorProcess&) = delete;

  pid_t pid() const { return pid_; }
  std::string log() const { return ReadText(log_path_); }

  // Polls grpc.health.v1 Check("") on a fresh channel per try until SERVING (true), or the
  // server exits or `timeout` passes (false).
  bool WaitServing(int port, std::chrono::milliseconds timeout) const {
    bool serving = false;
    PollUntil(
        [&] {
          if (PeekChildExit(pid_).has_value()) return true;
          grpc::health::v1::Health::Stub health(
              bench::CreateChannel("127.0.0.1:" + std::to_string(port)));
          grpc::ClientContext context;
          bench::SetTimeout(&context, 200);
          grpc::health::v1::HealthCheckRequest request;
          grpc::health::v1::HealthCheckResponse response;
          serving = health.Check(&context, request, &response).ok() &&
                    response.status() == grpc::health::v1::HealthCheckResponse::SERVING;
          return serving;
        },
        timeout, std::chrono::milliseconds(50));
    return serving;
  }

  // Waits for the server to exit and reaps it: how it ended, or std::nullopt on timeout.
  std::optional<ExitStatus> WaitExit(std::chrono::milliseconds timeout) {
    std::optional<ExitStatus> status;
    PollUntil([&] { return (status = PeekChildExit(pid_)).has_value(); }, timeout);
    if (status.has_value()) reaped_ = TryReapChild(pid_);
    return status;
  }

 private:
  TempDir dir_;
  std::string log_path_;
  pid_t pid_ = -1;
  bool reaped_ = false;
};

int FreePort() {
  absl::StatusOr<int> port = FreeLoopbackPort();
  REQUIRE(port.ok());
  return *port;
}

// One ModelInfer with a 10 s deadline.
grpc::Status Infer(inference::GRPCInferenceService::Stub& stub,
                   const inference::ModelInferRequest& request,
                   inference::ModelInferResponse* response) {
  grpc::ClientContext context;
  bench::SetTimeout(&context, 10000);
  return stub.ModelInfer(&context, request, response);
}

// The synthetic request kiln-bench load sends for `model`, with `batch` rows.
inference::ModelInferRequest SyntheticRequest(inference::GRPCInferenceService::Stub& stub,
                                              const std::string& model, int64_t batch) {
  absl::StatusOr<inference::ModelMetadataResponse> metadata =
      bench::FetchModelMetadata(stub, model, "", 10000);
  REQUIRE(metadata.ok());
  bench::SyntheticRequestOptions options;
  options.batch = batch;
  absl::StatusOr<bench::SyntheticRequest> synthetic =
      bench::BuildSyntheticRequest(*metadata, model, "", options);
  REQUIRE(synthetic.ok());
  return synthetic->request;
}

TEST_CASE("kiln-floor-server answers mlp and textcls with zeros as kiln would",
          "[integration][floor]") {
  const int port = FreePort();
  FloorProcess floor({"--model_repository=" + kiln::testing::ModelsDir(), "--model=mlp,textcls",
                      "--port=" + std::to_string(port)});
  if (!floor.WaitServing(port, std::chrono::seconds(30))) {
    FAIL("kiln-floor-server did not become SERVING\n--- log ---\n" << floor.log());
  }
  INFO("--- log ---\n" << floor.log());
  const auto stub = inference::GRPCInferenceService::NewStub(
      bench::CreateChannel("127.0.0.1:" + std::to_string(port)));

  SECTION("metadata is the config's, as kiln-server reports it") {
    absl::StatusOr<inference::ModelMetadataResponse> metadata =
        bench::FetchModelMetadata(*stub, "mlp", "", 10000);
    REQUIRE(metadata.ok());
    CHECK(metadata->name() == "mlp");
    REQUIRE(metadata->versions_size() == 1);
    CHECK(metadata->versions(0) == "1");
    REQUIRE(metadata->inputs_size() == 1);
    CHECK(metadata->inputs(0).name() == "input");
    CHECK(metadata->inputs(0).datatype() == "FP32");
    CHECK(std::vector<int64_t>(metadata->inputs(0).shape().begin(),
                               metadata->inputs(0).shape().end()) == std::vector<int64_t>{-1, 16});
    REQUIRE(metadata->outputs_size() == 1);
    CHECK(metadata->outputs(0).name() == "output");
  }

  SECTION("an mlp request of 3 rows gets output FP32 [3, 4] of zeros") {
    inference::ModelInferResponse response;
    const grpc::Status status = Infer(*stub, SyntheticRequest(*stub, "mlp", 3), &response);
    REQUIRE(status.ok());
    CHECK(response.model_name() == "mlp");
    CHECK(response.model_version() == "1");
    absl::StatusOr<std::vector<Tensor>> outputs = bench::DecodeInferResponse(response);
    REQUIRE(outputs.ok());
    REQUIRE(outputs->size() == 1);
    const Tensor& output = outputs->front();
    CHECK(output.name == "output");
    CHECK(output.dtype == DType::kFloat32);
    CHECK(output.shape == std::vector<int64_t>{3, 4});
    REQUIRE(output.bytes.size() == 3 * 4 * sizeof(float));
    for (const uint8_t byte : output.bytes) CHECK(byte == 0);
  }

  SECTION("a textcls request of text gets logits FP32 [2, 4]") {
    inference::ModelInferResponse response;
    const grpc::Status status = Infer(*stub, SyntheticRequest(*stub, "textcls", 2), &response);
    REQUIRE(status.ok());
    absl::StatusOr<std::vector<Tensor>> outputs = bench::DecodeInferResponse(response);
    REQUIRE(outputs.ok());
    REQUIRE(outputs->size() == 1);
    CHECK(outputs->front().name == "logits");
    CHECK(outputs->front().shape == std::vector<int64_t>{2, 4});
  }

  SECTION("bad requests get kiln-server's codes") {
    inference::ModelInferRequest request = SyntheticRequest(*stub, "mlp", 1);
    inference::ModelInferResponse response;

    inference::ModelInferRequest unknown = request;
    unknown.set_model_name("nope");
    grpc::Status status = Infer(*stub, unknown, &response);
    CHECK(status.error_code() == grpc::StatusCode::NOT_FOUND);
    CHECK_THAT(status.error_message(), Catch::Contains("unknown model 'nope'"));

    inference::ModelInferRequest renamed = request;
    renamed.mutable_inputs(0)->set_name("wrong");
    status = Infer(*stub, renamed, &response);
    CHECK(status.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
    CHECK_THAT(status.error_message(), Catch::Contains("wrong"));

    inference::ModelInferRequest unserved = request;
    unserved.set_model_version("2");
    status = Infer(*stub, unserved, &response);
    CHECK(status.error_code() == grpc::StatusCode::NOT_FOUND);

    // resnet18 is in the repository but not in --model: not served.
    grpc::ClientContext context;
    bench::SetTimeout(&context, 10000);
    inference::ModelReadyRequest ready;
    ready.set_name("resnet18");
    inference::ModelReadyResponse ready_response;
    CHECK(stub->ModelReady(&context, ready, &ready_response).error_code() ==
          grpc::StatusCode::NOT_FOUND);
  }

  SECTION("SIGTERM stops it with exit code 0") {
    REQUIRE(kill(floor.pid(), SIGTERM) == 0);
    const std::optional<ExitStatus> exit = floor.WaitExit(std::chrono::seconds(10));
    REQUIRE(exit.has_value());
    CHECK(exit->Describe() == "exit code 0");
    CHECK_THAT(floor.log(), Catch::Contains("kiln-floor-server: stopped"));
  }
}

TEST_CASE("kiln-floor-server prints the port it picked, and refuses bad input",
          "[integration][floor]") {
  SECTION("--port=0 picks a free port and prints it") {
    FloorProcess floor(
        {"--model_repository=" + kiln::testing::ModelsDir(), "--model=mlp", "--port=0"});
    const std::regex listening("kiln-floor-server: listening on 127\\.0\\.0\\.1:([0-9]+)");
    std::smatch match;
    std::string log;
    const bool printed = PollUntil(
        [&] {
          log = floor.log();
          return std::regex_search(log, match, listening) || PeekChildExit(floor.pid());
        },
        std::chrono::seconds(30));
    REQUIRE(printed);
    REQUIRE(match.size() == 2);
    const int port = std::stoi(match[1].str());
    CHECK(floor.WaitServing(port, std::chrono::seconds(10)));
  }

  SECTION("a missing repository is exit code 1 with the reason") {
    TempDir dir;
    const testing::CommandResult result =
        testing::RunCommand(kFloor + " --model_repository=" + dir.path() + "/none 2>&1");
    CHECK(result.exit_code == 1);
    CHECK_THAT(result.output, Catch::Contains("is not a directory"));
  }

  SECTION("a bad config is exit code 1 naming the file") {
    TempDir dir;
    dir.WriteFile("mlp/config.pbtxt", "name: \"mlp\"\nmax_batch_size: banana\n");
    const testing::CommandResult result =
        testing::RunCommand(kFloor + " --model_repository=" + dir.path() + " 2>&1");
    CHECK(result.exit_code == 1);
    CHECK_THAT(result.output, Catch::Contains("config.pbtxt"));
  }

  SECTION("a bad flag is exit code 2") {
    CHECK(testing::RunCommand(kFloor + " --no_such_flag 2>&1").exit_code == 2);
    CHECK(testing::RunCommand(kFloor + " --port=70000 2>&1").exit_code == 2);
    CHECK(testing::RunCommand(kFloor + " --help").exit_code == 0);
  }
}

}  // namespace
}  // namespace kiln
