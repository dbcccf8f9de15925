// Dynamic batching on the real kiln-server: the demo mlp with Triton's dynamic_batching, one
// worker, under concurrent clients. Requests that queue while the worker is busy run together as
// one forward pass, each gets exactly its own rows back (compared with the same request served
// alone), and the metrics count fewer executions than inferences, with no cold shape.
#include <catch2/catch.hpp>
#include <chrono>
#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/process.h"
#include "tests/integration/server_test_util.h"
#include "tests/metrics_text.h"

namespace kiln {
namespace {

using kiln::testing::Infer;
using kiln::testing::ServerConfig;
using kiln::testing::StartServing;
using kiln::testing::Stub;
using kiln::testing::TempDir;
using kiln::testing::TestModel;
using std::chrono::seconds;

// The demo mlp's config.pbtxt with the dynamic batcher on.
constexpr char kBatchedMlp[] = R"cfg(name: "mlp"
backend: "pytorch"
max_batch_size: 8
input [ { name: "input" data_type: TYPE_FP32 dims: [ 16 ] } ]
output [ { name: "output" data_type: TYPE_FP32 dims: [ 4 ] } ]
instance_group [ { count: 1 kind: KIND_CPU } ]
dynamic_batching { max_queue_delay_microseconds: 100 }
)cfg";

constexpr int kDistinct = 16;  // distinct requests, each one row
constexpr int kClients = 8;
constexpr int kRequestsPerClient = 40;

// Request `i`: one row of 16 values that differ per request.
inference::ModelInferRequest RowRequest(int i) {
  std::vector<float> row(16);
  for (int e = 0; e < 16; ++e) row[e] = std::sin(0.37f * static_cast<float>(i * 16 + e));
  const TensorView view{"input", DType::kFloat32, {1, 16}, row.data(), row.size() * sizeof(float)};
  return kiln::testing::MakeInferRequest("mlp", {view});
}

std::vector<float> Output(const inference::ModelInferResponse& response) {
  if (response.raw_output_contents_size() != 1) return {};
  const std::string& raw = response.raw_output_contents(0);
  std::vector<float> values(raw.size() / sizeof(float));
  std::memcpy(values.data(), raw.data(), values.size() * sizeof(float));
  return values;
}

double MaxAbsDiff(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return INFINITY;
  double max = 0;
  for (size_t i = 0; i < a.size(); ++i) max = std::max(max, std::fabs(double{a[i]} - b[i]));
  return max;
}

TEST_CASE("dynamic batching runs queued requests as one pass and gives each its own rows",
          "[integration][server][batching]") {
  TempDir dir;
  const std::string repository = kiln::testing::MakeRepository(
      dir, std::map<std::string, TestModel>{{"mlp", TestModel{"mlp", kBatchedMlp}}});
  absl::StatusOr<int> metrics_port = FreeLoopbackPort();
  REQUIRE(metrics_port.ok());
  ServerConfig config = kiln::testing::Config(repository, 0);  // the config's one worker
  config.extra_args = {"--metrics_port=" + std::to_string(*metrics_port)};
  auto server = StartServing(config);
  INFO("log:\n" << server->log());
  auto channel = kiln::testing::LoopbackChannel(server->port());
  Stub stub(channel);

  // Each request alone first: the reference (one client, so nothing queues behind it).
  std::vector<std::vector<float>> alone(kDistinct);
  for (int i = 0; i < kDistinct; ++i) {
    inference::ModelInferResponse response;
    const grpc::Status status = Infer(stub, RowRequest(i), &response, seconds(30));
    INFO(status.error_message());
    REQUIRE(status.ok());
    alone[i] = Output(response);
    REQUIRE(alone[i].size() == 4);
  }

  // Then 8 clients at once on the one worker: requests queue behind each pass and are batched.
  std::vector<double> worst(kClients, 0);
  std::vector<int> failed(kClients, 0);
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&, c] {
      Stub own(kiln::testing::LoopbackChannel(server->port()));
      for (int n = 0; n < kRequestsPerClient; ++n) {
        const int i = (c * 5 + n) % kDistinct;
        inference::ModelInferResponse response;
        if (!Infer(own, RowRequest(i), &response, seconds(30)).ok()) {
          ++failed[c];
          continue;
        }
        worst[c] = std::max(worst[c], MaxAbsDiff(Output(response), alone[i]));
      }
    });
  }
  for (std::thread& client : clients) client.join();
  for (int c = 0; c < kClients; ++c) {
    INFO("client " << c);
    CHECK(failed[c] == 0);
    CHECK(worst[c] < 1e-5);  // its own rows, as alone (a batch's kernels may round differently)
  }

  // Fewer executions than inferences: batches formed. None ran a cold shape.
  absl::StatusOr<std::string> text = kiln::testing::HttpGet(*metrics_port, "/metrics");
  REQUIRE(text.ok());
  const kiln::testing::ParsedMetrics metrics = kiln::testing::ParsedMetrics::Parse(*text);
  const kiln::testing::MetricLabels mlp = {{"model", "mlp"}};
  const double inferences = metrics.Sum("nv_inference_count", mlp);
  const double executions = metrics.Sum("nv_inference_exec_count", mlp);
  const double requests = kDistinct + kClients * kRequestsPerClient;
  INFO("inferences " << inferences << ", executions " << executions);
  CHECK(inferences == requests);
  CHECK(executions < inferences);
  CHECK(metrics.Sum("kiln_execution_batch_size_count", mlp) == executions);
  const std::optional<double> cold = metrics.Value("kiln_cold_shape_hits_total", mlp);
  REQUIRE(cold.has_value());
  CHECK(*cold == 0);
}

}  // namespace
}  // namespace kiln
