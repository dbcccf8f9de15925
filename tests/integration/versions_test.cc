// Model versions against the real server: version_policy picks the served version directories,
// each served version has its own workers, model_version routes a request (empty: the newest
// ready), ModelMetadata lists the served versions, ModelReady answers per version, and every
// response names the version whose worker computed it.
#include <catch2/catch.hpp>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "server/codec/infer_codec.h"
#include "tests/integration/server_test_util.h"

namespace kiln {
namespace {

using Catch::Matchers::Contains;
using grpc::health::v1::HealthCheckResponse;
using kiln::testing::Config;
using kiln::testing::DemoConfig;
using kiln::testing::Health;
using kiln::testing::HealthStub;
using kiln::testing::Infer;
using kiln::testing::MlpRequest;
using kiln::testing::Renamed;
using kiln::testing::Report;
using kiln::testing::StartServing;
using kiln::testing::Stub;
using kiln::testing::TempDir;
using std::chrono::seconds;

// `model`'s ModelMetadata, or the error.
grpc::Status Metadata(Stub& stub, const std::string& model, const std::string& version,
                      inference::ModelMetadataResponse* response) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + seconds(5));
  inference::ModelMetadataRequest request;
  request.set_name(model);
  request.set_version(version);
  return stub.ModelMetadata(&context, request, response);
}

grpc::Status Ready(Stub& stub, const std::string& model, const std::string& version, bool* ready) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + seconds(5));
  inference::ModelReadyRequest request;
  request.set_name(model);
  request.set_version(version);
  inference::ModelReadyResponse response;
  const grpc::Status status = stub.ModelReady(&context, request, &response);
  *ready = response.ready();
  return status;
}

// The pids of the workers serving `model` at `version`, from the warmup report.
std::set<int64_t> WorkerPidsOf(const WarmupReportResponse& report, const std::string& model,
                               int64_t version) {
  std::set<int64_t> pids;
  for (const ModelWarmupReport& served : report.models()) {
    if (served.model() != model || served.version() != version) continue;
    for (const internal::WarmupReport& worker : served.workers()) pids.insert(worker.pid());
  }
  return pids;
}

TEST_CASE("version_policy picks the served versions, and model_version routes each request to one",
          "[integration][server][versions]") {
  TempDir repo_dir;
  const std::string repo = kiln::testing::MakeRepository(
      repo_dir, {{"mlp", {"mlp", DemoConfig("mlp") + "version_policy { all {} }\n", {1, 2}}},
                 {"newest", {"mlp", Renamed(DemoConfig("mlp"), "newest"), {1, 3}}}});
  auto server = StartServing(Config(repo, 1));
  INFO("log:\n" << server->log());
  auto channel = kiln::testing::ServingChannel(*server);
  Stub oip(channel);

  // Every served version has its own worker; `newest` serves only its highest directory.
  const WarmupReportResponse report = Report(*server);
  REQUIRE(report.models_size() == 3);
  const std::set<int64_t> v1 = WorkerPidsOf(report, "mlp", 1);
  const std::set<int64_t> v2 = WorkerPidsOf(report, "mlp", 2);
  REQUIRE(v1.size() == 1);
  REQUIRE(v2.size() == 1);
  CHECK(*v1.begin() != *v2.begin());
  CHECK(WorkerPidsOf(report, "newest", 3).size() == 1);
  CHECK(WorkerPidsOf(report, "newest", 1).empty());

  inference::ModelMetadataResponse metadata;
  REQUIRE(Metadata(oip, "mlp", "", &metadata).ok());
  CHECK(std::vector<std::string>(metadata.versions().begin(), metadata.versions().end()) ==
        std::vector<std::string>{"1", "2"});
  REQUIRE(Metadata(oip, "newest", "", &metadata).ok());
  CHECK(std::vector<std::string>(metadata.versions().begin(), metadata.versions().end()) ==
        std::vector<std::string>{"3"});
  const grpc::Status no_metadata = Metadata(oip, "newest", "1", &metadata);
  CHECK(no_metadata.error_code() == grpc::StatusCode::NOT_FOUND);
  CHECK_THAT(no_metadata.error_message(), Contains("serves version(s) 3"));

  bool ready = false;
  for (const char* version : {"", "1", "2"}) {
    INFO("ModelReady mlp version '" << version << "'");
    REQUIRE(Ready(oip, "mlp", version, &ready).ok());
    CHECK(ready);
  }
  CHECK(Ready(oip, "mlp", "7", &ready).error_code() == grpc::StatusCode::NOT_FOUND);
  CHECK(Ready(oip, "mlp", "x", &ready).error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  HealthStub health(channel);
  CHECK(Health(health, "mlp") == HealthCheckResponse::SERVING);

  // Each response names its version, and the worker that computed it serves that version.
  for (const auto& [asked, answered, workers] :
       std::vector<std::tuple<std::string, std::string, std::set<int64_t>>>{
           {"", "2", v2}, {"1", "1", v1}, {"2", "2", v2}}) {
    INFO("model_version '" << asked << "'");
    inference::ModelInferRequest request = MlpRequest(2);
    request.set_model_version(asked);
    AskForTiming(&request);
    inference::ModelInferResponse response;
    const grpc::Status status = Infer(oip, request, &response, seconds(10));
    REQUIRE(status.ok());
    CHECK(response.model_version() == answered);
    const ComputeTiming timing = ReadTiming(response);
    REQUIRE(timing.worker_pid.has_value());
    CHECK(workers.count(*timing.worker_pid) == 1);
  }
  inference::ModelInferRequest unknown = MlpRequest(1);
  unknown.set_model_version("3");
  inference::ModelInferResponse response;
  const grpc::Status refused = Infer(oip, unknown, &response, seconds(10));
  CHECK(refused.error_code() == grpc::StatusCode::NOT_FOUND);
  CHECK_THAT(refused.error_message(), Contains("serves version(s) 1, 2"));
}

}  // namespace
}  // namespace kiln
