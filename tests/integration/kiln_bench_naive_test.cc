// The naive baseline (scripts/naive_server.py, issue #29) as kiln-bench measures it: `kiln-bench
// coldstart --naive_server` on the demo mlp (2 workers) and textcls (text, 1 worker), and the naive
// server's answers against kiln's: the ModelMetadata kiln's codec makes from the same config, and
// PyTorch's reference outputs (models/<name>/1/reference.safetensors, which kiln's own tests hold
// kiln-server to). Skipped, saying why, where Debian's python3 lacks grpcio, protobuf,
// sentencepiece or torch, or protoc is missing. No process is left behind: each is found by the
// test's own repository path on its command line.
#include <signal.h>
#include <sys/types.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench/oip_client.h"
#include "bench/server_launcher.h"
#include "common/model_config_loader.h"
#include "common/process.h"
#include "common/safetensors.h"
#include "proto/grpc/health/v1/health.grpc.pb.h"
#include "proto/grpc_service.grpc.pb.h"
#include "server/codec/infer_codec.h"
#include "tests/run_command.h"
#include "tests/skip.h"
#include "tests/test_paths.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;
using Catch::Matchers::Contains;
using kiln::testing::CommandResult;
using kiln::testing::RunCommand;
using kiln::testing::TempDir;

const std::string kBench = KILN_BENCH_BINARY;
const std::string kNaiveServer = std::string(KILN_SOURCE_DIR) + "/scripts/naive_server.py";

// Why the naive server cannot run here, or "" when it can.
std::string NaiveServerMissing() {
  const CommandResult python =
      RunCommand("/usr/bin/python3 -c 'import grpc, google.protobuf, sentencepiece, torch' 2>&1");
  if (python.exit_code != 0) {
    return "the naive server needs Debian's python3-grpcio, python3-protobuf, "
           "python3-sentencepiece and python3-torch (scripts/setup.sh): " +
           python.output.substr(python.output.rfind('\n', python.output.size() - 2) + 1);
  }
  if (RunCommand("command -v protoc").exit_code != 0) return "no protoc (protobuf-compiler)";
  return "";
}

// Live processes whose command line names `repo` (the bracket keeps pgrep's shell out); each is
// SIGKILLed so that a failed test still leaves nothing behind.
std::vector<pid_t> KillLeftovers(const std::string& repo) {
  const CommandResult found = RunCommand("pgrep -f '[-]-model_repository=" + repo + "'");
  std::vector<pid_t> pids;
  std::istringstream in(found.output);
  for (pid_t pid; in >> pid;) pids.push_back(pid);
  for (pid_t pid : pids) kill(pid, SIGKILL);
  return pids;
}

nlohmann::json ReadJson(const std::string& path) {
  std::ifstream in(path);
  REQUIRE(in);
  return nlohmann::json::parse(in);
}

// Runs `kiln-bench coldstart --naive_server` once on `model`; returns its JSON.
nlohmann::json NaiveColdstart(const TempDir& dir, const std::string& model, int workers,
                              const std::string& steady_requests) {
  const std::string repo = kiln::testing::OneDemoModelRepository(dir, model);
  const std::string json = dir.path() + "/coldstart.json";
  const CommandResult result = RunCommand(
      kBench + " coldstart --naive_server=" + kNaiveServer + " --model_repository=" + repo +
      " --model=" + model + " --workers=" + std::to_string(workers) +
      " --repeat=1 --steady_requests=" + steady_requests + " --timeout_s=120 --json=" + json +
      " --log_dir=" + dir.path() + "/logs 2>&1");
  INFO(result.output);
  CHECK(KillLeftovers(repo).empty());
  REQUIRE(result.exit_code == 0);
  CHECK_THAT(result.output, Contains("coldstart: naive, model " + model));
  CHECK_THAT(result.output, Contains("/usr/bin/python3 " + kNaiveServer));
  CHECK_THAT(result.output, Contains("run(s) of naive: median"));
  // The parent and its workers, measured as kiln's tree is.
  CHECK_THAT(result.output, Contains("(" + std::to_string(workers + 1) + " processes)"));
  return ReadJson(json);
}

void CheckRun(const nlohmann::json& doc, const std::string& model, int workers) {
  CHECK(doc["server"] == "naive");
  CHECK(doc["model"] == model);
  CHECK(doc["workers"] == workers);
  CHECK(doc["share_weights"] == "n/a");
  REQUIRE(doc["runs"].size() == 1);
  const nlohmann::json& run = doc["runs"][0];
  CHECK(run["ready_ms"].get<double>() > 0);
  CHECK(run["first_ms"].get<double>() > 0);
  CHECK(run["steady_p50_ms"].get<double>() > 0);
  CHECK(run["idle_p50_ms"].get<double>() > 0);
  CHECK(run["pss_mb"].get<double>() > 0);
  CHECK(run["phases"] == nlohmann::json::object());  // kiln's alone
  CHECK(run["first_cpu_ms"] == 0);                   // kiln's alone too (kiln_timing)
  CHECK(doc["ready_ms"]["median"] == run["ready_ms"]);
}

TEST_CASE("kiln-bench coldstart measures the naive server on mlp with 2 workers",
          "[bench][coldstart][naive]") {
  if (const std::string missing = NaiveServerMissing(); !missing.empty()) KILN_SKIP(missing);
  TempDir dir;
  const nlohmann::json doc = NaiveColdstart(dir, "mlp", 2, "5");
  CheckRun(doc, "mlp", 2);
  // Its log says it warmed every shape kiln warms for mlp (kiln.pbtxt: batch 1, 2, 4, 8) in
  // each worker before the port opened.
  std::ifstream log(dir.path() + "/logs/coldstart-naive-mlp-run1.log");
  REQUIRE(log);
  std::stringstream text;
  text << log.rdbuf();
  CHECK_THAT(text.str(), Contains("warmed shapes [(1, 0), (2, 0), (4, 0), (8, 0)]"));
  CHECK_THAT(text.str(), Contains("worker 1: 4 shape(s) x 3 call(s)"));
  CHECK_THAT(text.str(), Contains("worker 2: 4 shape(s) x 3 call(s)"));
  CHECK_THAT(text.str(), Contains("2 worker(s) warm in"));
  CHECK_THAT(text.str(), Contains("stopped"));
}

TEST_CASE("kiln-bench coldstart measures the naive server on textcls sent text",
          "[bench][coldstart][naive]") {
  if (const std::string missing = NaiveServerMissing(); !missing.empty()) KILN_SKIP(missing);
  TempDir dir;
  CheckRun(NaiveColdstart(dir, "textcls", 1, "5"), "textcls", 1);
}

// --- the naive server's answers against kiln's ----------------------------------------------

// The naive server on a free port, SERVING; stopped (SIGTERM, exit 0 checked) by the caller.
struct NaiveServer {
  std::unique_ptr<bench::LaunchedServer> server;
  std::shared_ptr<grpc::Channel> channel;
};

NaiveServer StartNaive(const std::string& repo, const std::string& model, const std::string& log) {
  absl::StatusOr<int> port = FreeLoopbackPort();
  REQUIRE(port.ok());
  absl::StatusOr<std::unique_ptr<bench::LaunchedServer>> server = bench::LaunchedServer::Start(
      {"/usr/bin/python3", kNaiveServer, "--model_repository=" + repo, "--model=" + model,
       "--port=" + std::to_string(*port), "--workers=1"},
      log, "the naive server");
  REQUIRE(server.ok());
  NaiveServer naive{std::move(*server), bench::ServerChannel("127.0.0.1:" + std::to_string(*port))};
  std::unique_ptr<grpc::health::v1::Health::Stub> health =
      grpc::health::v1::Health::NewStub(naive.channel);
  const auto serving =
      bench::WaitServing(*health, *naive.server,
                         std::chrono::steady_clock::now() + std::chrono::seconds(120), "120 s");
  INFO(bench::FileTail(log, 20));
  REQUIRE(serving.ok());
  return naive;
}

void Stop(NaiveServer& naive) {
  naive.channel.reset();
  absl::StatusOr<bench::LaunchedServer::StopResult> stopped =
      naive.server->Stop(std::chrono::seconds(20));
  REQUIRE(stopped.ok());
  CHECK_FALSE(stopped->killed);
  CHECK(stopped->exit == ExitStatus{false, 0});  // SIGTERM: workers stopped, exit 0
}

double MaxAbsDiff(const std::string& raw, const SafetensorsTensor& expected) {
  REQUIRE(raw.size() == expected.nbytes());
  double worst = 0;
  for (size_t i = 0; i < raw.size() / sizeof(float); ++i) {
    float got = 0, want = 0;
    std::memcpy(&got, raw.data() + i * sizeof(float), sizeof(float));
    std::memcpy(&want, expected.data + i * sizeof(float), sizeof(float));
    worst = std::max(worst, static_cast<double>(std::fabs(got - want)));
  }
  return worst;
}

// ModelMetadata as kiln-server answers it for the same model directory (kiln's loader and codec).
void CheckMetadataIsKilns(inference::GRPCInferenceService::Stub& stub, const std::string& repo,
                          const std::string& model) {
  absl::StatusOr<ModelSpec> spec = LoadModel(repo + "/" + model);
  REQUIRE(spec.ok());
  inference::ModelMetadataResponse kilns;
  FillModelMetadata(spec->config, {std::to_string(spec->version)}, &kilns);
  absl::StatusOr<inference::ModelMetadataResponse> naive =
      bench::FetchModelMetadata(stub, model, "", 10000);
  REQUIRE(naive.ok());
  INFO("naive: " << naive->ShortDebugString() << "\nkiln: " << kilns.ShortDebugString());
  CHECK(naive->SerializeAsString() == kilns.SerializeAsString());
}

TEST_CASE("the naive server answers mlp as kiln does: metadata and PyTorch's reference outputs",
          "[bench][naive][reference]") {
  if (const std::string missing = NaiveServerMissing(); !missing.empty()) KILN_SKIP(missing);
  TempDir dir;
  const std::string repo = kiln::testing::OneDemoModelRepository(dir, "mlp");
  NaiveServer naive = StartNaive(repo, "mlp", dir.path() + "/naive.log");
  auto stub = inference::GRPCInferenceService::NewStub(naive.channel);
  CheckMetadataIsKilns(*stub, repo, "mlp");

  absl::StatusOr<std::unique_ptr<MappedSafetensors>> reference =
      MappedSafetensors::Open(repo + "/mlp/1/reference.safetensors");
  REQUIRE(reference.ok());
  const SafetensorsTensor* input = (*reference)->index().Find("input.input");
  const SafetensorsTensor* output = (*reference)->index().Find("output.output");
  REQUIRE(input != nullptr);
  REQUIRE(output != nullptr);
  absl::StatusOr<inference::ModelInferRequest> request = BuildInferRequest(
      "mlp", "", {TensorView{"input", input->dtype, input->shape, input->data, input->nbytes()}});
  REQUIRE(request.ok());
  grpc::ClientContext context;
  inference::ModelInferResponse response;
  const grpc::Status status = stub->ModelInfer(&context, *request, &response);
  INFO(status.error_message());
  REQUIRE(status.ok());
  REQUIRE(response.outputs_size() == 1);
  CHECK(response.outputs(0).name() == "output");
  CHECK(response.outputs(0).datatype() == "FP32");
  CHECK(std::vector<int64_t>(response.outputs(0).shape().begin(),
                             response.outputs(0).shape().end()) == output->shape);
  CHECK(MaxAbsDiff(response.raw_output_contents(0), *output) <= 1e-5);

  // A bad input is INVALID_ARGUMENT naming it; another model NOT_FOUND.
  request->mutable_inputs(0)->set_datatype("FP64");
  grpc::ClientContext bad_context;
  const grpc::Status bad = stub->ModelInfer(&bad_context, *request, &response);
  CHECK(bad.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  CHECK_THAT(bad.error_message(), Contains("input 'input'"));
  request->set_model_name("resnet50");
  grpc::ClientContext other_context;
  CHECK(stub->ModelInfer(&other_context, *request, &response).error_code() ==
        grpc::StatusCode::NOT_FOUND);
  stub.reset();
  Stop(naive);
  CHECK(KillLeftovers(repo).empty());
}

TEST_CASE("the naive server tokenizes text as kiln does: textcls's reference logits",
          "[bench][naive][reference]") {
  if (const std::string missing = NaiveServerMissing(); !missing.empty()) KILN_SKIP(missing);
  TempDir dir;
  const std::string repo = kiln::testing::OneDemoModelRepository(dir, "textcls");
  NaiveServer naive = StartNaive(repo, "textcls", dir.path() + "/naive.log");
  auto stub = inference::GRPCInferenceService::NewStub(naive.channel);
  // kiln lists the BYTES text input first, then the token inputs.
  CheckMetadataIsKilns(*stub, repo, "textcls");

  // make_models.py's reference texts (tokenized with spm_encode) and PyTorch's logits for them.
  absl::StatusOr<std::unique_ptr<MappedSafetensors>> reference =
      MappedSafetensors::Open(repo + "/textcls/1/reference.safetensors");
  REQUIRE(reference.ok());
  const auto& metadata = (*reference)->index().metadata();
  REQUIRE(metadata.count("text.0") == 1);
  REQUIRE(metadata.count("text.1") == 1);
  const SafetensorsTensor* logits = (*reference)->index().Find("output.logits");
  REQUIRE(logits != nullptr);
  absl::StatusOr<ModelSpec> spec = LoadModel(repo + "/textcls");
  REQUIRE(spec.ok());
  const inference::ModelInferRequest request =
      BuildTextInferRequest(spec->config, "", {metadata.at("text.0"), metadata.at("text.1")});
  grpc::ClientContext context;
  inference::ModelInferResponse response;
  const grpc::Status status = stub->ModelInfer(&context, request, &response);
  INFO(status.error_message());
  REQUIRE(status.ok());
  REQUIRE(response.outputs_size() == 1);
  CHECK(response.outputs(0).name() == "logits");
  CHECK(MaxAbsDiff(response.raw_output_contents(0), *logits) <= 1e-4);
  stub.reset();
  Stop(naive);
  CHECK(KillLeftovers(repo).empty());
}

}  // namespace
}  // namespace kiln
