// The metrics (server/metrics/metrics.h, pool_metrics.h, metrics_endpoint.h) without a server:
// every scrape is parsed by prometheus_client's parser (tests/metrics_text.h) and linted by
// promtool.
#include <atomic>
#include <catch2/catch.hpp>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "common/process.h"
#include "server/metrics/metrics.h"
#include "server/metrics/metrics_endpoint.h"
#include "server/metrics/pool_metrics.h"
#include "tests/metrics_text.h"
#include "tests/run_command.h"

namespace kiln {
namespace {

using testing::MetricLabels;
using testing::ParsedMetrics;

const MetricLabels kMlp = {{"model", "mlp"}, {"version", "1"}};
const BuildInfo kBuild = {"0.1.0", "1.51.1", "1.13.1"};

MetricLabels With(MetricLabels labels, const std::string& name, const std::string& value) {
  labels[name] = value;
  return labels;
}

RequestRecord Request(int64_t rows, double total_us) {
  RequestRecord record;
  record.rows = rows;
  record.executions = 1;
  record.total_us = total_us;
  record.queue_us = 10;
  record.input_us = 20;
  record.infer_us = total_us / 2;
  record.output_us = 5;
  return record;
}

// A collector returning fixed families (what PoolStateCollector returns from a pool).
class FixedCollector : public prometheus::Collectable {
 public:
  explicit FixedCollector(std::vector<prometheus::MetricFamily> families)
      : families_(std::move(families)) {}
  std::vector<prometheus::MetricFamily> Collect() const override { return families_; }

 private:
  std::vector<prometheus::MetricFamily> families_;
};

TEST_CASE(
    "each request is counted once in Triton's counters, failures by reason, cold shapes and "
    "padding in kiln's",
    "[metrics]") {
  ServerMetrics metrics(kBuild);
  VersionMetrics& mlp = metrics.Version("mlp", 1);
  REQUIRE(&metrics.Version("mlp", 1) == &mlp);  // one set of series per version
  for (int i = 0; i < 3; ++i) {
    RequestRecord record = Request(3, 1000);
    record.padded_rows = 1;
    mlp.Succeeded(record);
  }
  RequestRecord cold = Request(2, 4000);
  cold.cold_shape = true;
  cold.executions = 2;  // split to fit the memory budget
  mlp.Succeeded(cold);
  mlp.Failed(FailureReason::kOther);
  mlp.Failed(FailureReason::kOther);
  mlp.Failed(FailureReason::kRejected);
  mlp.Failed(FailureReason::kBackend);
  RequestRecord text = Request(4, 500);
  text.tokenize_us = 120;
  text.padded_length = true;
  metrics.Version("textcls", 2).Succeeded(text);

  const ParsedMetrics parsed = ParsedMetrics::Parse(metrics.Render());
  CHECK(parsed.Value("nv_inference_request_success", kMlp) == 4);
  CHECK(parsed.Value("nv_inference_request_failure", With(kMlp, "reason", "OTHER")) == 2);
  CHECK(parsed.Value("nv_inference_request_failure", With(kMlp, "reason", "REJECTED")) == 1);
  CHECK(parsed.Value("nv_inference_request_failure", With(kMlp, "reason", "BACKEND")) == 1);
  CHECK(parsed.Value("nv_inference_request_failure", With(kMlp, "reason", "CANCELED")) == 0);
  CHECK(parsed.Value("nv_inference_count", kMlp) == 3 * 3 + 2);
  CHECK(parsed.Value("nv_inference_exec_count", kMlp) == 3 + 2);
  CHECK(parsed.Value("nv_inference_request_duration_us", kMlp) == 3 * 1000 + 4000);
  CHECK(parsed.Value("nv_inference_queue_duration_us", kMlp) == 4 * 10);
  CHECK(parsed.Value("nv_inference_compute_input_duration_us", kMlp) == 4 * 20);
  CHECK(parsed.Value("nv_inference_compute_infer_duration_us", kMlp) == 3 * 500 + 2000);
  CHECK(parsed.Value("nv_inference_compute_output_duration_us", kMlp) == 4 * 5);
  CHECK(parsed.Value("kiln_cold_shape_hits_total", kMlp) == 1);
  CHECK(parsed.Value("kiln_padded_rows_total", kMlp) == 3);
  CHECK(parsed.Value("kiln_split_requests_total", kMlp) == 1);
  CHECK(parsed.Value("kiln_padded_length_requests_total", kMlp) == 0);
  // The latency histogram: every success once, in seconds, cumulative buckets.
  CHECK(parsed.Value("kiln_request_duration_seconds_count", kMlp) == 4);
  CHECK(parsed.Value("kiln_request_duration_seconds_sum", kMlp) == Approx(0.007));
  CHECK(parsed.Value("kiln_request_duration_seconds_bucket", With(kMlp, "le", "0.001")) == 3);
  CHECK(parsed.Value("kiln_request_duration_seconds_bucket", With(kMlp, "le", "0.005")) == 4);
  CHECK(parsed.Value("kiln_request_duration_seconds_bucket", With(kMlp, "le", "+Inf")) == 4);
  CHECK(parsed.Value("kiln_tokenize_duration_seconds_count", kMlp) == 0);
  // Batch sizes: three of 3 rows and one of 2.
  CHECK(parsed.Value("kiln_request_batch_size_bucket", With(kMlp, "le", "2")) == 1);
  CHECK(parsed.Value("kiln_request_batch_size_bucket", With(kMlp, "le", "4")) == 4);
  CHECK(parsed.Value("kiln_request_batch_size_sum", kMlp) == 11);
  // The other version has its own series.
  const MetricLabels textcls = {{"model", "textcls"}, {"version", "2"}};
  CHECK(parsed.Value("nv_inference_request_success", textcls) == 1);
  CHECK(parsed.Value("kiln_tokenize_duration_seconds_count", textcls) == 1);
  CHECK(parsed.Value("kiln_padded_length_requests_total", textcls) == 1);
  CHECK(parsed.Value("kiln_build_info",
                     {{"version", "0.1.0"}, {"grpc", "1.51.1"}, {"libtorch", "1.13.1"}}) == 1);
}

TEST_CASE("failures are classified as Triton's reasons by where they happened", "[metrics]") {
  using S = FailureStage;
  CHECK(ClassifyFailure(S::kAdmission, absl::ResourceExhaustedError("queue full")) ==
        FailureReason::kRejected);
  CHECK(ClassifyFailure(S::kAdmission, absl::InvalidArgumentError("bad shape")) ==
        FailureReason::kOther);
  CHECK(ClassifyFailure(S::kAdmission, absl::UnavailableError("stopping")) ==
        FailureReason::kOther);
  CHECK(ClassifyFailure(S::kOutcome, absl::DeadlineExceededError("expired while queued")) ==
        FailureReason::kCanceled);
  CHECK(ClassifyFailure(S::kOutcome, absl::CancelledError("client")) == FailureReason::kCanceled);
  CHECK(ClassifyFailure(S::kOutcome, absl::UnavailableError("worker died")) ==
        FailureReason::kBackend);
  // Ended in the queue: a REJECT queue timeout, a server stopping; a deadline there is CANCELED.
  CHECK(ClassifyFailure(S::kQueue, absl::UnavailableError("timed out in the queue")) ==
        FailureReason::kRejected);
  CHECK(ClassifyFailure(S::kQueue, absl::DeadlineExceededError("expired while queued")) ==
        FailureReason::kCanceled);
  CHECK(ClassifyFailure(S::kOutcome, absl::ResourceExhaustedError("over budget")) ==
        FailureReason::kBackend);
  CHECK(ClassifyFailure(S::kResponse, absl::InternalError("encode")) == FailureReason::kOther);
  CHECK(std::string(FailureReasonName(FailureReason::kCanceled)) == "CANCELED");
}

TEST_CASE("counters never go backwards while requests and scrapes run concurrently", "[metrics]") {
  ServerMetrics metrics(kBuild);
  constexpr int kThreads = 4, kPerThread = 2000;
  std::atomic<bool> done{false};
  std::atomic<bool> scraping{false};  // the senders start once a scrape was taken: on a busy
                                      // machine they could otherwise finish before the first
  std::vector<std::string> scrapes;
  std::thread scraper([&] {
    do {
      scrapes.push_back(metrics.Render());
      scraping = true;
    } while (!done.load());
  });
  while (!scraping.load()) std::this_thread::yield();
  std::vector<std::thread> senders;
  for (int t = 0; t < kThreads; ++t) {
    senders.emplace_back([&metrics, t] {
      VersionMetrics& mlp = metrics.Version("mlp", 1);  // made by whichever thread comes first
      for (int i = 0; i < kPerThread; ++i) {
        if (i % 10 == t) {
          mlp.Failed(FailureReason::kBackend);
        } else {
          mlp.Succeeded(Request(1, 100));
        }
      }
    });
  }
  for (std::thread& sender : senders) sender.join();
  done = true;
  scraper.join();
  scrapes.push_back(metrics.Render());
  REQUIRE(scrapes.size() >= 2);

  // A few scrapes spread over the run, and the last: each counter at least the one before.
  std::vector<ParsedMetrics> parsed;
  for (size_t i = 0; i < scrapes.size(); i += std::max<size_t>(1, scrapes.size() / 5)) {
    parsed.push_back(ParsedMetrics::Parse(scrapes[i]));
  }
  parsed.push_back(ParsedMetrics::Parse(scrapes.back()));
  for (size_t i = 1; i < parsed.size(); ++i) {
    for (const char* name : {"nv_inference_request_success", "nv_inference_count",
                             "kiln_request_duration_seconds_count"}) {
      CHECK(parsed[i].Sum(name, kMlp) >= parsed[i - 1].Sum(name, kMlp));
    }
  }
  const int failures = kThreads * (kPerThread / 10);
  CHECK(parsed.back().Value("nv_inference_request_success", kMlp) ==
        kThreads * kPerThread - failures);
  CHECK(parsed.back().Value("nv_inference_request_failure", With(kMlp, "reason", "BACKEND")) ==
        failures);
  CHECK(parsed.back().Value("kiln_request_duration_seconds_count", kMlp) ==
        kThreads * kPerThread - failures);
}

TEST_CASE("worker deaths and respawns are counted, and a memory sample replaces the one before",
          "[metrics]") {
  ServerMetrics metrics(kBuild);
  metrics.WorkerDied("mlp", 1);
  metrics.WorkerDied("mlp", 1);
  metrics.WorkerRespawned("mlp", 1, 0.3);
  ProcessMemorySample worker{"worker", "mlp", "1", "0", 50 << 20, 8 << 20, 60 << 20, 100 << 20};
  ProcessMemorySample other{"worker", "mlp", "1", "1", 40 << 20, 6 << 20, 50 << 20, 100 << 20};
  metrics.SampledMemory({worker, other}, int64_t{1} << 33);
  ParsedMetrics parsed = ParsedMetrics::Parse(metrics.Render());
  CHECK(parsed.Value("kiln_worker_restarts_total", kMlp) == 2);
  CHECK(parsed.Value("kiln_worker_respawn_duration_seconds_count", kMlp) == 1);
  CHECK(parsed.Value("kiln_worker_respawn_duration_seconds_bucket", With(kMlp, "le", "0.5")) == 1);
  CHECK(parsed.Value("kiln_process_pss_bytes", With(kMlp, "id", "1")) == 40 << 20);
  CHECK(parsed.Value("kiln_worker_memory_headroom_bytes", With(kMlp, "slot", "0")) ==
        (100 << 20) - (8 << 20));
  CHECK(parsed.Value("kiln_memory_pss_bytes") == 90 << 20);
  CHECK(parsed.Value("kiln_memory_limit_bytes") == static_cast<double>(int64_t{1} << 33));

  // Worker 1 left: its series go; worker 0's follow the new sample.
  worker.pss_bytes = 55 << 20;
  metrics.SampledMemory({worker}, int64_t{1} << 33);
  parsed = ParsedMetrics::Parse(metrics.Render());
  CHECK_FALSE(parsed.Value("kiln_process_pss_bytes", With(kMlp, "id", "1")).has_value());
  CHECK_FALSE(
      parsed.Value("kiln_worker_memory_headroom_bytes", With(kMlp, "slot", "1")).has_value());
  CHECK(parsed.Value("kiln_process_pss_bytes", With(kMlp, "id", "0")) == 55 << 20);
  CHECK(parsed.Value("kiln_memory_pss_bytes") == 55 << 20);
}

TEST_CASE(
    "the pool's state as scraped: server state, workers by state across a reload of the "
    "same version, warmup first vs steady per shape",
    "[metrics]") {
  ModelSpec spec;
  spec.config.set_name("mlp");
  spec.version = 1;
  spec.weights_path = "/models/mlp/1/model.safetensors";
  auto live = std::make_shared<const ModelSpec>(spec);
  ModelSpec without_weights = spec;  // same key, new files: a TorchScript file alone
  without_weights.weights_path.clear();
  auto staged = std::make_shared<const ModelSpec>(without_weights);
  VersionState serving;
  serving.spec = live;
  serving.readiness = {2, 2, 2, 1, true};
  serving.queued = 3;
  serving.budget_bytes = 1 << 30;
  serving.workers = {{WorkerState::kReady, 1}, {WorkerState::kBusy, 1}};
  VersionState warming;
  warming.spec = staged;
  warming.phase = VersionPhase::kStaged;
  warming.queued = 1;
  warming.workers = {{WorkerState::kWarming, 2}};

  WorkerInfo worker;
  worker.model = "mlp";
  worker.version = 1;
  worker.spec = live;
  worker.generation = 1;
  worker.state = WorkerState::kReady;
  worker.slot = 1;
  worker.warmup.set_warmup_ms(1500);
  internal::ShapeWarmup& b4 = *worker.warmup.add_shapes();
  b4.set_batch_size(4);
  b4.set_first_ms(30);
  b4.set_steady_ms(1.5);
  b4.set_settled_after(3);
  b4.set_peak_anon_bytes(1 << 20);
  internal::ShapeWarmup& refused = *worker.warmup.add_shapes();
  refused.set_batch_size(8);
  refused.set_refused(true);
  WorkerInfo spawning = worker;
  spawning.state = WorkerState::kSpawning;  // no report yet
  spawning.slot = 0;

  ServerMetrics metrics(kBuild);
  metrics.AddCollector(std::make_shared<FixedCollector>(
      PoolStateFamilies(MasterState::kWarming, {serving, warming}, {worker, spawning})));
  const ParsedMetrics parsed = ParsedMetrics::Parse(metrics.Render());
  CHECK(parsed.Value("kiln_server_state", {{"state", "warming"}}) == 1);
  CHECK(parsed.Sum("kiln_server_state") == 1);
  CHECK(parsed.Value("kiln_workers", With(kMlp, "state", "ready")) == 1);
  CHECK(parsed.Value("kiln_workers", With(kMlp, "state", "busy")) == 1);
  CHECK(parsed.Value("kiln_workers", With(kMlp, "state", "warming")) == 2);  // the staged ones
  CHECK(parsed.Value("kiln_workers_target", kMlp) == 2);                     // the Live version's
  CHECK(parsed.Value("kiln_model_ready", kMlp) == 1);
  CHECK(parsed.Value("nv_inference_pending_request_count", kMlp) == 4);
  CHECK(parsed.Value("kiln_worker_memory_budget_bytes", kMlp) == 1 << 30);
  CHECK(parsed.Value("kiln_model_weights_mapped", kMlp) == 1);  // the Live version's
  const MetricLabels shape = {{"model", "mlp"}, {"slot", "1"}, {"shape", "b4"}};
  CHECK(parsed.Value("kiln_warmup_first_call_seconds", shape) == Approx(0.030));
  CHECK(parsed.Value("kiln_warmup_steady_seconds", shape) == Approx(0.0015));
  CHECK(parsed.Value("kiln_warmup_first_to_steady_ratio", shape) == Approx(20));
  CHECK(parsed.Value("kiln_warmup_calls_to_settle", shape) == 3);
  CHECK(parsed.Value("kiln_warmup_peak_memory_bytes", shape) == 1 << 20);
  CHECK(parsed.Value("kiln_warmup_duration_seconds", With(kMlp, "slot", "1")) == 1.5);
  CHECK(parsed.Matching("kiln_warmup_first_call_seconds", {{"shape", "b8"}}).empty());
  CHECK(parsed.Matching("kiln_warmup_duration_seconds", {{"slot", "0"}}).empty());
}

// promtool check metrics on `text`: it must parse it, and the only conventions it may find
// missed are Triton's names, kept as Triton spells them so that its dashboards work.
void CheckWithPromtool(const std::string& text) {
  const std::string path = "/tmp/kiln-promtool-" + std::to_string(getpid()) + ".txt";
  std::ofstream(path) << text;
  const testing::CommandResult result = testing::RunCommand("promtool check metrics < " + path);
  std::remove(path.c_str());
  INFO(result.output);
  CHECK((result.exit_code == 0 || result.exit_code == 3));  // 3: lint findings only
  for (absl::string_view line : absl::StrSplit(result.output, '\n', absl::SkipWhitespace())) {
    CHECK(absl::StartsWith(line, "nv_inference_"));
  }
}

TEST_CASE("promtool accepts a scrape: only Triton's own names miss its naming conventions",
          "[metrics]") {
  ServerMetrics metrics(kBuild);
  metrics.Version("mlp", 1).Succeeded(Request(1, 100));
  metrics.WorkerDied("mlp", 1);
  metrics.StartupPhase("load_model", "mlp", "1", 0.2);
  metrics.ReadinessChecked("mlp", 1, {1.0, 0.5, 0.4, 1.2, true});
  CheckWithPromtool(metrics.Render());
}

TEST_CASE("the endpoint answers GET /metrics in the text format, and a port in use fails Bind",
          "[metrics]") {
  absl::StatusOr<std::unique_ptr<MetricsEndpoint>> endpoint = MetricsEndpoint::Bind("127.0.0.1", 0);
  REQUIRE(endpoint.ok());
  const int port = (*endpoint)->port();
  REQUIRE(port > 0);
  // Bound but not started: a second endpoint cannot take the port (no SO_REUSEPORT sharing).
  absl::StatusOr<std::unique_ptr<MetricsEndpoint>> second =
      MetricsEndpoint::Bind("127.0.0.1", port);
  REQUIRE_FALSE(second.ok());
  CHECK(absl::IsUnavailable(second.status()));
  CHECK_THAT(std::string(second.status().message()), Catch::Contains("--metrics_port"));

  std::atomic<int> scrapes{0};
  const auto render = [&scrapes] {
    return "# TYPE kiln_test_scrapes counter\nkiln_test_scrapes " + std::to_string(++scrapes) +
           "\n";
  };
  REQUIRE((*endpoint)->Start(render).ok());
  std::string content_type;
  absl::StatusOr<std::string> body = testing::HttpGet(port, "/metrics", 5000, &content_type);
  REQUIRE(body.ok());
  CHECK(content_type == "text/plain; version=0.0.4; charset=utf-8");
  // The thread that answered runs at kMetricsThreadNice: on a busy node it yields to requests.
  int nice_threads = 0;
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
    const std::vector<std::string> stat = ProcStatFields(std::stoi(task.path().filename()));
    // Field 19 of /proc/<pid>/task/<tid>/stat is the niceness; ProcStatFields puts it at 16.
    nice_threads += stat.size() > 16 && stat[16] == std::to_string(kMetricsThreadNice);
  }
  CHECK(nice_threads == 1);
  CHECK(ParsedMetrics::Parse(*body).Value("kiln_test_scrapes") == 1);
  CHECK_FALSE(testing::HttpGet(port, "/nothing").ok());
  endpoint->reset();  // stops and joins
  CHECK_FALSE(testing::HttpGet(port, "/metrics", 500).ok());
}

}  // namespace
}  // namespace kiln
