// The metrics of a real kiln-server (--metrics_port): scraped over loopback HTTP and parsed by
// prometheus_client's parser; a worker killed mid-request; and a real Prometheus server
// (Debian's) scraping kiln and answering docs/metrics.md's PromQL over its HTTP API.
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cctype>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <future>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/process.h"
#include "nlohmann/json.hpp"
#include "tests/integration/server_process.h"
#include "tests/integration/server_test_util.h"
#include "tests/metrics_text.h"
#include "tests/run_command.h"
#include "tests/test_paths.h"

namespace {

using Catch::Matchers::Contains;
using kiln::testing::Config;
using kiln::testing::DemoConfig;
using kiln::testing::Describe;
using kiln::testing::HttpGet;
using kiln::testing::Infer;
using kiln::testing::kStartup;
using kiln::testing::MetricLabels;
using kiln::testing::MlpRequest;
using kiln::testing::MlpWithSettings;
using kiln::testing::ModelReport;
using kiln::testing::ParsedMetrics;
using kiln::testing::PollUntil;
using kiln::testing::Report;
using kiln::testing::ServerConfig;
using kiln::testing::ServerProcess;
using kiln::testing::StartServing;
using kiln::testing::Stub;
using kiln::testing::TempDir;
using std::chrono::milliseconds;
using std::chrono::seconds;

const MetricLabels kMlp = {{"model", "mlp"}, {"version", "1"}};

MetricLabels With(MetricLabels labels, const std::string& name, const std::string& value) {
  labels[name] = value;
  return labels;
}

// A free loopback port for --metrics_port; REQUIREs one.
int FreePort() {
  absl::StatusOr<int> port = kiln::FreeLoopbackPort();
  REQUIRE(port.ok());
  return *port;
}

// Scrapes and parses; FAILs when the endpoint does not answer.
ParsedMetrics Scrape(int port) {
  absl::StatusOr<std::string> text = HttpGet(port, "/metrics");
  INFO("scrape: " << text.status().message());
  REQUIRE(text.ok());
  return ParsedMetrics::Parse(*text);
}

// Every counter (and histogram count, sum and bucket) of `before` is at most its value `after`.
void CheckNeverBackwards(const ParsedMetrics& before, const ParsedMetrics& after) {
  int compared = 0;
  for (const kiln::testing::MetricSample& sample : before.samples()) {
    if (sample.type != "counter" && sample.type != "histogram") continue;
    if (sample.type == "histogram" && !absl::EndsWith(sample.name, "_count") &&
        !absl::EndsWith(sample.name, "_sum") && !absl::EndsWith(sample.name, "_bucket")) {
      continue;
    }
    const std::vector<kiln::testing::MetricSample> later =
        after.Matching(sample.name, sample.labels);
    INFO(sample.name << " " << sample.value);
    REQUIRE(later.size() == 1);
    CHECK(later.front().value >= sample.value);
    ++compared;
  }
  CHECK(compared > 20);
}

void CheckWithPromtool(const std::string& text) {
  TempDir dir;
  const std::string path = dir.WriteFile("scrape.txt", text);
  const kiln::testing::CommandResult result =
      kiln::testing::RunCommand("promtool check metrics < " + path);
  INFO(result.output);
  CHECK((result.exit_code == 0 || result.exit_code == 3));  // 3: lint findings only
  for (absl::string_view line : absl::StrSplit(result.output, '\n', absl::SkipWhitespace())) {
    CHECK(absl::StartsWith(line, "nv_inference_"));  // Triton's names, kept as Triton has them
  }
}

TEST_CASE(
    "the metrics port shows warmup progress before the gRPC port opens, then exact counts "
    "of known requests",
    "[integration][metrics]") {
  TempDir repo_dir;
  // mlp pads batch 3 up to its warmed 4; mlp_cold warms only batch 1 and does not pad, so its
  // batch 3 is a cold shape.
  const std::string repo = kiln::testing::MakeRepository(
      repo_dir, {{"mlp", {"mlp", DemoConfig("mlp")}},
                 {"mlp_cold", MlpWithSettings("warmup { batch_sizes: [1] pad_to_warmed: false }\n",
                                              "mlp_cold")}});
  const int metrics_port = FreePort();
  ServerConfig config = Config(repo, 1);
  config.extra_args = {"--metrics_port=" + std::to_string(metrics_port)};
  auto server = std::make_unique<ServerProcess>(config);

  // From the start: the first scrapes that answer come before SERVING.
  std::string before_serving;
  REQUIRE(PollUntil(
      [&] {
        absl::StatusOr<std::string> text = HttpGet(metrics_port, "/metrics", 1000);
        if (text.ok() && !absl::StrContains(*text, "kiln_server_state{state=\"serving\"} 1")) {
          before_serving = *text;
        }
        return !before_serving.empty() || server->WaitExit(milliseconds(0)).has_value();
      },
      seconds(60), milliseconds(5)));
  REQUIRE_FALSE(before_serving.empty());
  const ParsedMetrics early = ParsedMetrics::Parse(before_serving);
  CHECK(early.Sum("kiln_server_state") == 1);
  CHECK(early.Value("kiln_server_state", {{"state", "serving"}}) == 0);
  CHECK(early.Value("kiln_workers_target", kMlp) == 1);  // the warmup's progress: 1 to warm
  CHECK_FALSE(early.Value("kiln_startup_time_to_serving_seconds").has_value());
  CHECK(early.Value("kiln_startup_phase_duration_seconds",
                    {{"phase", "load_model"}, {"model", "mlp"}}) > 0);

  REQUIRE(server->WaitServing(kStartup));
  // Every version's request series exist from SERVING on, at 0, before any request made them.
  absl::StatusOr<std::string> at_serving = HttpGet(metrics_port, "/metrics");
  REQUIRE(at_serving.ok());
  const ParsedMetrics serving = ParsedMetrics::Parse(*at_serving);
  CHECK(serving.Value("nv_inference_request_success", kMlp) == 0);
  CHECK(serving.Value("nv_inference_request_success", {{"model", "mlp_cold"}, {"version", "1"}}) ==
        0);
  Stub oip(kiln::testing::ServingChannel(*server));
  for (int i = 0; i < 5; ++i) REQUIRE(Infer(oip, MlpRequest(3), seconds(30)).ok());
  for (int i = 0; i < 2; ++i) {
    CHECK(Infer(oip, MlpRequest(9), seconds(30)).error_code() == grpc::INVALID_ARGUMENT);
  }
  inference::ModelInferRequest cold = MlpRequest(3);
  cold.set_model_name("mlp_cold");
  for (int i = 0; i < 2; ++i) REQUIRE(Infer(oip, cold, seconds(30)).ok());
  CHECK(Infer(oip, kiln::testing::MlpRequest(1), seconds(30)).ok());  // 6 successes for mlp

  absl::StatusOr<std::string> text = HttpGet(metrics_port, "/metrics");
  REQUIRE(text.ok());
  const ParsedMetrics parsed = ParsedMetrics::Parse(*text);
  // Exact: the readiness check's requests are not counted, only these.
  CHECK(parsed.Value("nv_inference_request_success", kMlp) == 6);
  CHECK(parsed.Value("nv_inference_count", kMlp) == 5 * 3 + 1);
  CHECK(parsed.Value("nv_inference_exec_count", kMlp) == 6);
  CHECK(parsed.Value("nv_inference_request_failure", With(kMlp, "reason", "OTHER")) == 2);
  CHECK(parsed.Sum("nv_inference_request_failure", kMlp) == 2);
  CHECK(parsed.Value("kiln_padded_rows_total", kMlp) == 5);  // 3 -> 4, five times
  CHECK(parsed.Value("kiln_cold_shape_hits_total", kMlp) == 0);
  const MetricLabels mlp_cold = {{"model", "mlp_cold"}, {"version", "1"}};
  CHECK(parsed.Value("kiln_cold_shape_hits_total", mlp_cold) == 2);
  CHECK(parsed.Value("nv_inference_request_success", mlp_cold) == 2);
  CHECK(parsed.Value("kiln_request_duration_seconds_count", kMlp) == 6);
  // The durations add up: the whole request holds its compute.
  CHECK(*parsed.Value("nv_inference_request_duration_us", kMlp) >=
        *parsed.Value("nv_inference_compute_infer_duration_us", kMlp));
  CHECK(parsed.Value("nv_inference_compute_infer_duration_us", kMlp) > 0);
  CHECK(parsed.Value("nv_inference_pending_request_count", kMlp) == 0);
  // State, startup and warmup.
  CHECK(parsed.Value("kiln_server_state", {{"state", "serving"}}) == 1);
  CHECK(parsed.Value("kiln_model_ready", kMlp) == 1);
  CHECK(parsed.Value("kiln_startup_time_to_serving_seconds") > 0);
  CHECK(parsed.Value("kiln_readiness_check_passed", kMlp) == 1);
  CHECK(*parsed.Value("kiln_readiness_check_cpu_median_seconds", kMlp) <=
        *parsed.Value("kiln_readiness_check_limit_seconds", kMlp));
  for (const char* shape : {"b1", "b2", "b4", "b8"}) {
    INFO(shape);
    CHECK(parsed.Value("kiln_warmup_first_to_steady_ratio", With(kMlp, "shape", shape)) > 0);
  }
  CHECK(parsed.Value("kiln_build_info") == 1);
  CheckWithPromtool(*text);
}

TEST_CASE(
    "a worker killed mid-request: the request fails once as BACKEND, its death and respawn "
    "are counted, and no counter goes back",
    "[integration][metrics]") {
  TempDir repo_dir;
  const std::string repo = kiln::testing::MakeRepository(repo_dir, {{"mlp", DemoConfig("mlp")}});
  const int metrics_port = FreePort();
  ServerConfig config = Config(repo, 1);
  config.extra_args = {"--metrics_port=" + std::to_string(metrics_port),
                       "--metrics_memory_interval_s=1"};
  auto server = StartServing(config);
  Stub oip(kiln::testing::ServingChannel(*server));
  for (int i = 0; i < 3; ++i) REQUIRE(Infer(oip, MlpRequest(2), seconds(30)).ok());
  const ParsedMetrics before = Scrape(metrics_port);
  const kiln::WarmupReportResponse report = Report(*server);
  const int worker = ModelReport(report, "mlp").workers(0).pid();
  REQUIRE(worker > 0);

  // Stopped, the worker takes the call and never answers: it is certainly in flight when killed.
  REQUIRE(kill(worker, SIGSTOP) == 0);
  auto call =
      std::async(std::launch::async, [&] { return Infer(oip, MlpRequest(2), seconds(60)); });
  REQUIRE(PollUntil(
      [&] { return Scrape(metrics_port).Value("kiln_workers", With(kMlp, "state", "busy")) == 1; },
      seconds(30), milliseconds(10)));
  REQUIRE(kill(worker, SIGKILL) == 0);
  const grpc::Status failed = call.get();
  INFO(Describe(failed));
  CHECK(failed.error_code() == grpc::UNAVAILABLE);

  // Replaced: its respawn is measured once the new worker is ready.
  REQUIRE(PollUntil(
      [&] {
        return Scrape(metrics_port).Value("kiln_worker_respawn_duration_seconds_count", kMlp) == 1;
      },
      seconds(60), milliseconds(50)));
  REQUIRE(Infer(oip, MlpRequest(2), seconds(30)).ok());
  const ParsedMetrics after = Scrape(metrics_port);
  CHECK(after.Value("nv_inference_request_failure", With(kMlp, "reason", "BACKEND")) == 1);
  CHECK(after.Sum("nv_inference_request_failure", kMlp) == 1);
  CHECK(after.Value("nv_inference_request_success", kMlp) == 4);
  CHECK(after.Value("kiln_worker_restarts_total", kMlp) == 1);
  CHECK(after.Value("kiln_worker_respawn_duration_seconds_sum", kMlp) > 0);
  CHECK(after.Value("kiln_workers", With(kMlp, "state", "ready")) == 1);
  CheckNeverBackwards(before, after);
  // The memory sampler names the new worker (its series follow the process, sampled each second).
  REQUIRE(PollUntil(
      [&] {
        const ParsedMetrics now = Scrape(metrics_port);
        return now.Value("kiln_process_pss_bytes", With(With(kMlp, "process", "worker"), "id", "0"))
                       .value_or(0) > 0 &&
               now.Value("kiln_process_pss_bytes", {{"process", "master"}}).value_or(0) > 0;
      },
      seconds(30), milliseconds(200)));
}

// A process started in its own group and killed with it, for the Prometheus server.
class Spawned {
 public:
  Spawned(const std::vector<std::string>& argv, const std::string& log) : log_(log) {
    absl::StatusOr<pid_t> pid = kiln::SpawnInProcessGroup(argv, nullptr, log);
    if (!pid.ok()) FAIL(pid.status().message());
    pid_ = *pid;
  }
  ~Spawned() {
    kill(-pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  std::string log() const { return kiln::testing::ReadText(log_); }

 private:
  pid_t pid_ = 0;
  std::string log_;
};

std::string UrlEncode(const std::string& text) {
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += absl::StrFormat("%%%02X", c);
    }
  }
  return out;
}

// The result of a PromQL instant query: the vector's samples as (labels, value); empty when the
// query answers nothing (yet). FAILs on an error.
std::vector<std::pair<nlohmann::json, double>> Query(int port, const std::string& promql) {
  absl::StatusOr<std::string> body = HttpGet(port, "/api/v1/query?query=" + UrlEncode(promql));
  INFO(promql << ": " << body.status().message());
  REQUIRE(body.ok());
  const nlohmann::json answer = nlohmann::json::parse(*body);
  REQUIRE(answer.at("status") == "success");
  std::vector<std::pair<nlohmann::json, double>> samples;
  for (const nlohmann::json& sample : answer.at("data").at("result")) {
    samples.emplace_back(sample.at("metric"),
                         std::stod(sample.at("value").at(1).get<std::string>()));
  }
  return samples;
}

TEST_CASE("a real Prometheus server scrapes kiln and answers the PromQL of docs/metrics.md",
          "[integration][metrics][prometheus]") {
  TempDir repo_dir, prometheus_dir;
  const std::string repo = kiln::testing::MakeRepository(repo_dir, {{"mlp", DemoConfig("mlp")}});
  const int metrics_port = FreePort();
  ServerConfig config = Config(repo, 1);
  config.extra_args = {"--metrics_port=" + std::to_string(metrics_port)};
  auto server = StartServing(config);

  const int prometheus_port = FreePort();
  const std::string prometheus_config = prometheus_dir.WriteFile(
      "prometheus.yml", absl::StrCat("global:\n  scrape_interval: 500ms\n"
                                     "scrape_configs:\n  - job_name: kiln\n"
                                     "    static_configs:\n      - targets: ['127.0.0.1:",
                                     metrics_port, "']\n"));
  Spawned prometheus({"/usr/bin/prometheus", "--config.file=" + prometheus_config,
                      "--storage.tsdb.path=" + prometheus_dir.path() + "/data",
                      "--web.listen-address=127.0.0.1:" + std::to_string(prometheus_port)},
                     prometheus_dir.path() + "/prometheus.log");
  INFO(prometheus.log());
  REQUIRE(PollUntil([&] { return HttpGet(prometheus_port, "/-/ready", 1000).ok(); }, seconds(60),
                    milliseconds(100)));

  // In two rounds, each waited for until Prometheus has it: rates need an increase between two
  // scrapes of the series, which the first round's scrape starts.
  Stub oip(kiln::testing::ServingChannel(*server));
  int sent = 0;
  for (int round : {3, 4}) {
    for (int i = 0; i < round; ++i) REQUIRE(Infer(oip, MlpRequest(1), seconds(30)).ok());
    sent += round;
    // Prometheus has scraped kiln and holds the exact count.
    REQUIRE(PollUntil(
        [&] {
          const auto samples =
              Query(prometheus_port, "nv_inference_request_success{model=\"mlp\"}");
          return samples.size() == 1 && samples.front().second == sent;
        },
        seconds(60), milliseconds(250)));
  }
  CHECK(Query(prometheus_port, "up{job=\"kiln\"}").front().second == 1);

  // docs/metrics.md's examples. p99 per model, from the histogram:
  const auto p99 = Query(prometheus_port,
                         "histogram_quantile(0.99, sum by (model, le) "
                         "(rate(kiln_request_duration_seconds_bucket[1m])))");
  REQUIRE(p99.size() == 1);
  CHECK(p99.front().first.at("model") == "mlp");
  CHECK(std::isfinite(p99.front().second));
  CHECK(p99.front().second > 0);
  // The warmup's first call over steady, worst shape per model:
  const auto ratio = Query(prometheus_port, "max by (model) (kiln_warmup_first_to_steady_ratio)");
  REQUIRE(ratio.size() == 1);
  CHECK(ratio.front().second > 0);
  // Cold-shape hits per request served (0: every request ran a warmed shape):
  const auto cold = Query(prometheus_port,
                          "sum by (model) (rate(kiln_cold_shape_hits_total[1m])) / sum by (model) "
                          "(rate(nv_inference_request_success[1m]))");
  REQUIRE(cold.size() == 1);
  CHECK(cold.front().second == 0);
}

}  // namespace
