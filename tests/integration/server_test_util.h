// Shared by the integration tests that start the real kiln-server (kiln_server_test.cc,
// warm_test.cc): the binary, generous bounds, demo configs, request builders and a StartServing
// that FAILs with the server's log. For one test thread.
#ifndef KILN_TESTS_INTEGRATION_SERVER_TEST_UTIL_H_
#define KILN_TESTS_INTEGRATION_SERVER_TEST_UTIL_H_

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <optional>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/safetensors.h"
#include "proto/kiln_service.grpc.pb.h"
#include "tests/integration/server_process.h"
#include "tests/test_paths.h"

namespace kiln::testing {

using Stub = inference::GRPCInferenceService::Stub;
using HealthStub = grpc::health::v1::Health::Stub;
using grpc::health::v1::HealthCheckResponse;
using std::chrono::milliseconds;
using std::chrono::seconds;

// The binary under test: the build's kiln-server, or $KILN_SERVER_BINARY when set (to run these
// tests against another build).
inline const std::string kServer = [] {
  const char* env = std::getenv("KILN_SERVER_BINARY");
  return std::string(env != nullptr && *env != '\0' ? env : KILN_SERVER_BINARY);
}();

// Generous bounds: a loaded 2-core CI machine must not turn a pass into a failure.
inline constexpr milliseconds kStartup = seconds(120);

inline std::string ReadText(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

// The demo model's config.pbtxt text (Triton's ModelConfig), to copy into a test repository
// (optionally amended). Its kiln.pbtxt, when it has one, is DemoSettings(model): MakeRepository
// copies it beside a config of the demo's unless the TestModel says otherwise.
inline std::string DemoConfig(const std::string& model) {
  const std::string text = ReadText(ModelsDir() + "/" + model + "/config.pbtxt");
  if (text.empty()) FAIL("no demo config for " << model << " under " << ModelsDir());
  return text;
}

// The PyTorch backend's parameter setting each worker's intra-op threads, as config.pbtxt says it.
inline std::string IntraOpThreads(int threads) {
  return "parameters { key: \"INTRA_OP_THREAD_COUNT\" value { string_value: \"" +
         std::to_string(threads) + "\" } }\n";
}

// `config` with workers of one intra-op thread, so that they come from a warm template however
// many CPUs the machine has (the count stays the config's: automatic for the demo models).
inline std::string OneThreadConfig(const std::string& config) { return config + IntraOpThreads(1); }

// `config` under another model's name.
inline std::string Renamed(const std::string& config, const std::string& name) {
  return std::regex_replace(config, std::regex("name: \"[^\"]*\""), "name: \"" + name + "\"",
                            std::regex_constants::format_first_only);
}

// The demo mlp (its config.pbtxt renamed `name`) with `settings` as its kiln.pbtxt instead of the
// demo's, e.g. "warmup { batch_sizes: [1] pad_to_warmed: false }\n".
inline TestModel MlpWithSettings(const std::string& settings, const std::string& name = "mlp") {
  return TestModel{"mlp", Renamed(DemoConfig("mlp"), name), {1}, settings};
}

inline ServerConfig Config(const std::string& repository, int workers) {
  ServerConfig config;
  config.binary = kServer;
  config.model_repository = repository;
  config.workers = workers;
  return config;
}

// Count of non-overlapping occurrences of `needle` in `text`.
inline int Count(const std::string& text, const std::string& needle) {
  int n = 0;
  for (size_t pos = text.find(needle); pos != std::string::npos;
       pos = text.find(needle, pos + needle.size())) {
    ++n;
  }
  return n;
}

// True when no process of `tree` is alive any more (zombies count as gone).
inline bool AllGone(const std::vector<ProcessId>& tree) {
  return std::none_of(tree.begin(), tree.end(), [](const ProcessId& p) { return IsAlive(p); });
}

inline std::string Pids(const std::vector<ProcessId>& tree) {
  std::string out;
  for (const ProcessId& p : tree)
    out += std::to_string(p.pid) + (IsAlive(p) ? "(alive) " : "(gone) ");
  return out;
}

// A tensor of `shape` filled with a deterministic pattern; owns its bytes.
inline Tensor Fp32Tensor(const std::string& name, std::vector<int64_t> shape, float scale = 0.01f) {
  Tensor t;
  t.name = name;
  t.dtype = DType::kFloat32;
  t.shape = std::move(shape);
  const int64_t n = NumElements(t.shape).value_or(0);
  std::vector<float> values(n);
  for (int64_t i = 0; i < n; ++i) values[i] = scale * static_cast<float>((i % 97) - 48);
  t.bytes.resize(n * sizeof(float));
  std::memcpy(t.bytes.data(), values.data(), t.bytes.size());
  return t;
}

inline inference::ModelInferRequest MlpRequest(int batch) {
  const Tensor input = Fp32Tensor("input", {batch, 16});
  return kiln::testing::MakeInferRequest("mlp", {input.view()});
}

inline inference::ModelInferRequest ResnetRequest(const std::string& model, int batch) {
  const Tensor input = Fp32Tensor("input", {batch, 3, 224, 224}, 0.001f);
  return kiln::testing::MakeInferRequest(model, {input.view()});
}

inline grpc::Status Infer(Stub& stub, const inference::ModelInferRequest& request,
                          inference::ModelInferResponse* response, milliseconds timeout) {
  return kiln::testing::ModelInfer(stub, request, response, timeout);
}

inline grpc::Status Infer(Stub& stub, const inference::ModelInferRequest& request,
                          milliseconds timeout) {
  inference::ModelInferResponse response;
  return Infer(stub, request, &response, timeout);
}

inline HealthCheckResponse::ServingStatus Health(HealthStub& stub, const std::string& service,
                                                 grpc::StatusCode* code = nullptr) {
  HealthCheckResponse::ServingStatus serving = HealthCheckResponse::UNKNOWN;
  const grpc::Status status = kiln::testing::HealthCheck(stub, service, &serving, seconds(2));
  if (code != nullptr) *code = status.error_code();
  return status.ok() ? serving : HealthCheckResponse::UNKNOWN;
}

inline std::string Describe(const grpc::Status& status) {
  return std::to_string(static_cast<int>(status.error_code())) + " " + status.error_message();
}

// A channel to a server that is SERVING, connected first, so that the client-side connect flake
// (server_process.h, ConnectedChannel) cannot fail a test's first call; REQUIREs that it connects.
inline std::shared_ptr<grpc::Channel> ServingChannel(const ServerProcess& server) {
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = ConnectedChannel(server.port());
  INFO("connecting to the server: " << channel.status().message());
  REQUIRE(channel.ok());
  return *std::move(channel);
}

// The server's kiln.KilnService WarmupReport (every model); REQUIREs that it answers.
inline WarmupReportResponse Report(const ServerProcess& server) {
  auto stub = KilnService::NewStub(ServingChannel(server));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + seconds(10));
  WarmupReportResponse response;
  const grpc::Status status = stub->WarmupReport(&context, {}, &response);
  INFO("WarmupReport: " << status.error_message());
  REQUIRE(status.ok());
  return response;
}

// One model's part of a report; FAILs when it has none.
inline ModelWarmupReport ModelReport(const WarmupReportResponse& response,
                                     const std::string& model) {
  for (const ModelWarmupReport& report : response.models()) {
    if (report.model() == model) return report;
  }
  FAIL("no warmup report for " << model);
  throw;  // unreachable: FAIL throws
}

// The lines of a kiln-server `log` that glog wrote at WARNING or above ("W...", "E...",
// "F..."): why a server stopped, first, where CI's printout cuts a long log.
inline std::string WarningLines(const std::string& log) {
  std::istringstream in(log);
  const std::regex glog_warning("^[WEF][0-9]{8} ");
  std::string lines;
  for (std::string line; std::getline(in, line);) {
    if (std::regex_search(line, glog_warning)) lines += line + "\n";
  }
  return lines.empty() ? "(none)\n" : lines;
}

// Starts a server and waits until it is SERVING; FAILs when it does not, with whether it exited
// (and how), its warnings and errors, and then its whole log.
inline std::unique_ptr<ServerProcess> StartServing(ServerConfig config) {
  auto server = std::make_unique<ServerProcess>(std::move(config));
  if (!server->WaitServing(kStartup)) {
    const std::optional<int> exit_code = server->WaitExit(milliseconds(0));
    const std::string log = server->log();
    FAIL("kiln-server did not become SERVING on port "
         << server->port() << " ("
         << (exit_code.has_value()
                 ? "it exited with " + std::to_string(*exit_code)
                 : "still running after " + std::to_string(kStartup.count() / 1000) + " s")
         << ")\n--- its warnings and errors ---\n"
         << WarningLines(log) << "--- log ---\n"
         << log);
  }
  return server;
}

// The largest |difference| between FP32 raw output bytes and a reference tensor (infinite for
// a non-finite value).
inline double MaxAbsDiff(const std::string& raw, const SafetensorsTensor& expected) {
  REQUIRE(expected.dtype == DType::kFloat32);
  REQUIRE(raw.size() == expected.nbytes());
  std::vector<float> a(raw.size() / 4), e(expected.nbytes() / 4);
  std::memcpy(a.data(), raw.data(), raw.size());
  std::memcpy(e.data(), expected.data, expected.nbytes());
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(a[i])) return INFINITY;
    worst = std::max(worst, std::abs(static_cast<double>(a[i]) - e[i]));
  }
  return worst;
}

}  // namespace kiln::testing

#endif  // KILN_TESTS_INTEGRATION_SERVER_TEST_UTIL_H_
