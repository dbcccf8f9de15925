// Dynamic batching on the real kiln-server, under concurrent clients: the demo mlp with Triton's
// dynamic_batching and one worker, the demo textcls with text of several lengths, and the mlp
// again through a worker's respawn and a scale-up from its warm template and through a reload.
// Requests that queue while the workers are busy run together as one forward pass, each gets
// exactly its own rows back (compared with the same request served alone), and the metrics count
// fewer executions than inferences, with no cold shape. The readiness check's requests are never
// batched.
#include <signal.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "bench/oip_client.h"
#include "bench/scale_command.h"
#include "common/process.h"
#include "common/sample_text.h"
#include "common/traffic_profile.h"
#include "tests/integration/server_test_util.h"
#include "tests/metrics_text.h"

namespace kiln {
namespace {

using kiln::testing::Count;
using kiln::testing::Infer;
using kiln::testing::kStartup;
using kiln::testing::ModelReport;
using kiln::testing::PollUntil;
using kiln::testing::Report;
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

constexpr int kClients = 8;
constexpr int kRequestsPerClient = 40;

// Request `i` of a set of distinct requests.
using MakeRequest = std::function<inference::ModelInferRequest(int)>;

// mlp request `i`: one row of 16 values that differ per request.
inference::ModelInferRequest RowRequest(int i) {
  std::vector<float> row(16);
  for (int e = 0; e < 16; ++e) row[e] = std::sin(0.37f * static_cast<float>(i * 16 + e));
  const TensorView view{"input", DType::kFloat32, {1, 16}, row.data(), row.size() * sizeof(float)};
  return kiln::testing::MakeInferRequest("mlp", {view});
}

// A request of the demo textcls: one row of `text` in its BYTES input "text" (kiln-bench's).
inference::ModelInferRequest TextRequest(const std::string& text) {
  absl::StatusOr<inference::ModelInferRequest> request =
      bench::BuildTextRequest("textcls", "", {"text", "BYTES", {-1, 1}}, text, 1);
  REQUIRE(request.ok());
  return *std::move(request);
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

// Requests 0 .. distinct-1 served alone, one at a time (one client: nothing queues behind them):
// the reference answers.
std::vector<std::vector<float>> Alone(int port, int distinct, const MakeRequest& make,
                                      size_t outputs) {
  const absl::StatusOr<std::shared_ptr<grpc::Channel>> channel =
      kiln::testing::ConnectedChannel(port);
  INFO(channel.status().message());
  REQUIRE(channel.ok());
  Stub stub(*channel);
  std::vector<std::vector<float>> alone(distinct);
  for (int i = 0; i < distinct; ++i) {
    inference::ModelInferResponse response;
    const grpc::Status status = Infer(stub, make(i), &response, seconds(30));
    INFO("request " << i << ": " << status.error_message());
    REQUIRE(status.ok());
    alone[i] = Output(response);
    REQUIRE(alone[i].size() == outputs);
  }
  return alone;
}

// kClients clients at once, kRequestsPerClient requests each, against port: with fewer workers
// than clients, requests queue behind each pass and are batched. Each answer is compared with
// the same request's answer alone. Each client connects first (ConnectedChannel): what is tested
// is the batching, not the first connection attempt of eight at once; then all start together.
void RunClients(int port, const std::vector<std::vector<float>>& alone, const MakeRequest& make) {
  const int distinct = static_cast<int>(alone.size());
  std::vector<double> worst(kClients, 0);
  std::vector<int> failed(kClients, 0);
  std::vector<std::string> first_error(kClients);  // its code and message
  // Every client starts sending once all are connected (or given up), so that their requests
  // overlap and queue from the first.
  std::mutex mu;
  std::condition_variable all_connected;
  int connecting = kClients;
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&, c] {
      const absl::StatusOr<std::shared_ptr<grpc::Channel>> channel =
          kiln::testing::ConnectedChannel(port);
      {
        std::unique_lock<std::mutex> lock(mu);
        if (--connecting == 0) all_connected.notify_all();
        all_connected.wait(lock, [&] { return connecting == 0; });
      }
      if (!channel.ok()) {
        failed[c] = kRequestsPerClient;
        first_error[c] = channel.status().ToString();
        return;
      }
      Stub own(*channel);
      for (int n = 0; n < kRequestsPerClient; ++n) {
        const int i = (c * 5 + n) % distinct;
        inference::ModelInferResponse response;
        const grpc::Status status = Infer(own, make(i), &response, seconds(30));
        if (!status.ok()) {
          if (failed[c]++ == 0) {
            first_error[c] =
                absl::StrCat("code ", status.error_code(), ": ", status.error_message());
          }
          continue;
        }
        worst[c] = std::max(worst[c], MaxAbsDiff(Output(response), alone[i]));
      }
    });
  }
  for (std::thread& client : clients) client.join();
  for (int c = 0; c < kClients; ++c) {
    // The first error in the check's own expansion, ahead of the server's log in its messages.
    CHECK(failed[c] == 0);
    CHECK(first_error[c] == "");
    CHECK(worst[c] < 1e-5);  // its own rows, as alone (a batch's kernels may round differently)
  }
}

// What /metrics counts for the series `labels` selects (summed over the rest).
struct Counts {
  double inferences = 0;
  double executions = 0;
  double calls = 0;  // kiln_execution_batch_size's count
  double cold = 0;
};

Counts ReadCounts(int metrics_port, const kiln::testing::MetricLabels& labels) {
  absl::StatusOr<std::string> text = kiln::testing::HttpGet(metrics_port, "/metrics");
  REQUIRE(text.ok());
  const kiln::testing::ParsedMetrics metrics = kiln::testing::ParsedMetrics::Parse(*text);
  Counts counts;
  counts.inferences = metrics.Sum("nv_inference_count", labels);
  counts.executions = metrics.Sum("nv_inference_exec_count", labels);
  counts.calls = metrics.Sum("kiln_execution_batch_size_count", labels);
  counts.cold = metrics.Sum("kiln_cold_shape_hits_total", labels);
  return counts;
}

// The counts between two reads: RunClients' requests formed batches (fewer executions than
// inferences), each call counted once, none at a cold shape.
void CheckBatched(const Counts& before, const Counts& after, double requests) {
  const double inferences = after.inferences - before.inferences;
  const double executions = after.executions - before.executions;
  INFO("inferences " << inferences << ", executions " << executions);
  CHECK(inferences == requests);
  CHECK(executions < inferences);
  CHECK(after.calls - before.calls == executions);
  CHECK(after.cold == 0);
}

// A server with --metrics_port on `repository`, its config's workers.
std::unique_ptr<kiln::testing::ServerProcess> StartWithMetrics(const std::string& repository,
                                                               int& metrics_port) {
  absl::StatusOr<int> port = FreeLoopbackPort();
  REQUIRE(port.ok());
  metrics_port = *port;
  ServerConfig config = kiln::testing::Config(repository, 0);
  config.extra_args = {"--metrics_port=" + std::to_string(metrics_port)};
  return StartServing(config);
}

// A repository in `dir` of the demo mlp (its kiln.pbtxt: batch 1, 2, 4 and 8 warmed) with the
// dynamic batcher on and workers of one intra-op thread (forked from a warm template).
std::string OneThreadBatchedMlp(const TempDir& dir) {
  const std::string config =
      kiln::testing::OneThreadConfig(kiln::testing::DemoConfig("mlp")) + "dynamic_batching { }\n";
  return kiln::testing::MakeRepository(
      dir, std::map<std::string, TestModel>{{"mlp", TestModel{"mlp", config}}});
}

TEST_CASE("dynamic batching runs queued requests as one pass and gives each its own rows",
          "[integration][server][batching]") {
  TempDir dir;
  const std::string repository = kiln::testing::MakeRepository(
      dir, std::map<std::string, TestModel>{{"mlp", TestModel{"mlp", kBatchedMlp}}});
  int metrics_port = 0;
  auto server = StartWithMetrics(repository, metrics_port);  // the config's one worker
  INFO("log:\n" << server->log());
  constexpr int kDistinct = 16;
  const auto alone = Alone(server->port(), kDistinct, RowRequest, 4);
  const kiln::testing::MetricLabels mlp = {{"model", "mlp"}};
  const Counts before = ReadCounts(metrics_port, mlp);
  RunClients(server->port(), alone, RowRequest);
  CheckBatched(before, ReadCounts(metrics_port, mlp), kClients * kRequestsPerClient);
}

TEST_CASE("texts that pad to the same warmed length are batched, each gets its own logits",
          "[integration][server][batching]") {
  // The demo textcls (warmed at batch 1 and 4, lengths 16 to 128) with the batcher on and one
  // worker; texts of several lengths, so that some pad to different warmed lengths.
  TempDir dir;
  const std::string config = kiln::testing::DemoConfig("textcls") +
                             "instance_group [ { count: 1 kind: KIND_CPU } ]\n" +
                             "dynamic_batching { }\n";
  const std::string repository = kiln::testing::MakeRepository(
      dir, std::map<std::string, TestModel>{{"textcls", TestModel{"textcls", config}}});
  int metrics_port = 0;
  auto server = StartWithMetrics(repository, metrics_port);
  INFO("log:\n" << server->log());
  const std::vector<int> words = {2, 3, 5, 12, 20, 45};
  const MakeRequest text = [&words](int i) { return TextRequest(SampleText(words[i])); };
  const auto alone = Alone(server->port(), static_cast<int>(words.size()), text, 4);
  const kiln::testing::MetricLabels textcls = {{"model", "textcls"}};
  const Counts before = ReadCounts(metrics_port, textcls);
  RunClients(server->port(), alone, text);
  CheckBatched(before, ReadCounts(metrics_port, textcls), kClients * kRequestsPerClient);
}

TEST_CASE("the readiness check's requests are never batched, each runs at its own warmed size",
          "[integration][server][batching][readiness]") {
  // Four workers of one thread; the check sends its four requests (batch 8, 4, 2 and 1) at once.
  // Batched as clients' requests are, those that queue together run as one call padded to batch
  // 8 (measured: "on 2 of 4 workers (b8 x4)"), and the smaller sizes go unchecked.
  TempDir dir;
  auto server = StartServing(kiln::testing::Config(OneThreadBatchedMlp(dir), 4));
  INFO("log:\n" << server->log());
  CHECK(Count(server->log(), "readiness check: mlp:1: 4 requests through the whole path on ") == 1);
  CHECK(Count(server->log(), " of 4 workers (b1 x1, b2 x1, b4 x1, b8 x1)") == 1);
}

TEST_CASE("batching keeps working through a respawn, a scale-up and a reload",
          "[integration][server][batching][template][reload]") {
  // Two workers of one thread each, from the mlp's warm template.
  TempDir dir;
  const std::string repository = OneThreadBatchedMlp(dir);
  int metrics_port = 0;
  auto server = StartWithMetrics(repository, metrics_port);
  INFO("log:\n" << server->log());
  REQUIRE(server->TemplatePids().size() == 1);
  constexpr int kDistinct = 16;
  const auto alone = Alone(server->port(), kDistinct, RowRequest, 4);
  const kiln::testing::MetricLabels v1 = {{"model", "mlp"}, {"version", "1"}};
  constexpr double kRequests = kClients * kRequestsPerClient;

  // A killed worker's replacement, forked from the template, takes batches warm.
  const std::vector<pid_t> workers = server->WorkerPids();
  REQUIRE(workers.size() == 2);
  REQUIRE(kill(workers.front(), SIGKILL) == 0);
  if (!PollUntil([&] { return Count(server->log(), "): warm in") >= 3; }, kStartup)) {
    FAIL("no replacement; log:\n" << server->log());
  }
  Counts before = ReadCounts(metrics_port, v1);
  RunClients(server->port(), alone, RowRequest);
  CheckBatched(before, ReadCounts(metrics_port, v1), kRequests);

  // So does a third worker asked for at runtime.
  CHECK(bench::RunScaleCommand({"--addr=" + server->address(), "--model=mlp", "--workers=3"}) == 0);
  if (!PollUntil([&] { return Count(server->log(), "): warm in") >= 4; }, kStartup)) {
    FAIL("no third worker; log:\n" << server->log());
  }
  before = ReadCounts(metrics_port, v1);
  RunClients(server->port(), alone, RowRequest);
  CheckBatched(before, ReadCounts(metrics_port, v1), kRequests);

  // A reload to version 2 (the same files): its workers batch from their first requests.
  kiln::testing::LinkVersion(repository, "mlp", "mlp", 2);
  server->Signal(SIGHUP);
  if (!PollUntil([&] { return Count(server->log(), "mlp:2 (generation 2) is live") >= 1; },
                 kStartup)) {
    FAIL("version 2 never went live; log:\n" << server->log());
  }
  Stub stub(kiln::testing::ServingChannel(*server));
  inference::ModelInferResponse response;
  REQUIRE(Infer(stub, RowRequest(0), &response, seconds(30)).ok());
  CHECK(response.model_version() == "2");
  const kiln::testing::MetricLabels v2 = {{"model", "mlp"}, {"version", "2"}};
  before = ReadCounts(metrics_port, v2);
  RunClients(server->port(), alone, RowRequest);
  CheckBatched(before, ReadCounts(metrics_port, v2), kRequests);
}

TEST_CASE("the batch sizes the scheduler formed are recorded, and the next start warms them",
          "[integration][server][batching][traffic]") {
  // One worker; the first start warms batch 1 to 8, the next only batch 1 by its settings, so
  // that every larger batch it forms was warmed from the recording.
  TempDir dir, state;
  const std::string config = std::string(kBatchedMlp);
  const std::string repository = kiln::testing::MakeRepository(
      dir, std::map<std::string, TestModel>{
               {"mlp", TestModel{"mlp", config, {1}, "warmup { batch_sizes: [1, 2, 4, 8] }\n"}}});
  ServerConfig server_config = kiln::testing::Config(repository, 0);
  server_config.extra_args = {"--state_dir=" + state.path()};
  constexpr int kDistinct = 16;
  {
    auto server = StartServing(server_config);
    INFO("log:\n" << server->log());
    RunClients(server->port(), Alone(server->port(), kDistinct, RowRequest, 4), RowRequest);
    server->Signal(SIGTERM);  // the drain saves the profile
    REQUIRE(server->WaitExit(seconds(30)) == std::optional<int>(0));
  }
  // Every request was one row; the profile holds the batches they ran in.
  absl::StatusOr<TrafficProfile> profile =
      LoadTrafficProfile(TrafficProfilePath(state.path(), "mlp"));
  REQUIRE(profile.ok());
  std::set<int32_t> recorded;
  for (const auto& shape : profile->shapes()) recorded.insert(shape.batch_size());
  INFO("recorded batch sizes: " << absl::StrJoin(recorded, ", "));
  REQUIRE(*recorded.rbegin() > 1);

  std::ofstream(repository + "/mlp/kiln.pbtxt") << "warmup { batch_sizes: [1] }\n";
  auto server = StartServing(server_config);
  INFO("log:\n" << server->log());
  const ModelWarmupReport report = ModelReport(Report(*server), "mlp");
  REQUIRE(report.workers_size() == 1);
  std::set<int32_t> warmed;
  for (const internal::ShapeWarmup& shape : report.workers(0).shapes()) {
    if (shape.calls() > 0) warmed.insert(shape.batch_size());
  }
  // Exactly the settings' batch 1 and the recorded sizes.
  std::set<int32_t> expected = recorded;
  expected.insert(1);
  INFO("warmed batch sizes: " << absl::StrJoin(warmed, ", "));
  CHECK(warmed == expected);
}

}  // namespace
}  // namespace kiln
