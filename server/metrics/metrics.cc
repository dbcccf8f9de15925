#include "server/metrics/metrics.h"

#include <algorithm>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "prometheus/text_serializer.h"

namespace kiln {
namespace {

using prometheus::Counter;
using prometheus::Family;
using prometheus::Gauge;
using prometheus::Histogram;
using prometheus::Registry;

Family<Counter>& NewCounter(Registry& registry, const std::string& name, const std::string& help) {
  return prometheus::BuildCounter().Name(name).Help(help).Register(registry);
}
Family<Gauge>& NewGauge(Registry& registry, const std::string& name, const std::string& help) {
  return prometheus::BuildGauge().Name(name).Help(help).Register(registry);
}
Family<Histogram>& NewHistogram(Registry& registry, const std::string& name,
                                const std::string& help) {
  return prometheus::BuildHistogram().Name(name).Help(help).Register(registry);
}

// Buckets from 0.05 ms to 1 s, for the tokenizer.
std::vector<double> TokenizeBuckets() {
  return {0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1};
}

// Rows per request: powers of two up to 256.
std::vector<double> BatchBuckets() { return {1, 2, 4, 8, 16, 32, 64, 128, 256}; }

// From 0.1 s to 10 min: a respawn forks from a warm template (well under a second) or warms by
// itself (seconds to minutes).
std::vector<double> RespawnBuckets() { return {0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 600}; }

}  // namespace

const char* FailureReasonName(FailureReason reason) {
  switch (reason) {
    case FailureReason::kRejected:
      return "REJECTED";
    case FailureReason::kCanceled:
      return "CANCELED";
    case FailureReason::kBackend:
      return "BACKEND";
    case FailureReason::kOther:
      return "OTHER";
  }
  return "OTHER";
}

FailureReason ClassifyFailure(FailureStage stage, const absl::Status& status) {
  if (absl::IsDeadlineExceeded(status) || absl::IsCancelled(status)) {
    return FailureReason::kCanceled;
  }
  switch (stage) {
    case FailureStage::kAdmission:
      // A full queue refuses at once (dynamic_batching.max_queue_size); the rest is the request's
      // own defect or a server that is stopping.
      return absl::IsResourceExhausted(status) ? FailureReason::kRejected : FailureReason::kOther;
    case FailureStage::kQueue:
      // Not run: a queue timeout at a REJECT level, a server stopping, no worker left.
      return FailureReason::kRejected;
    case FailureStage::kOutcome:
      // A worker's death is the common case; a server stopping ends the running calls with
      // UNAVAILABLE too: both are the backend's from the client's side.
      return FailureReason::kBackend;
    case FailureStage::kResponse:
      return FailureReason::kOther;
  }
  return FailureReason::kOther;
}

std::vector<double> RequestLatencyBuckets() {
  return {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
          0.05,   0.1,     0.25,   0.5,   1,      2.5,   5,    10};
}

void VersionMetrics::Succeeded(const RequestRecord& record) {
  success_->Increment();
  count_->Increment(static_cast<double>(record.rows));
  exec_count_->Increment(record.executions);
  request_us_->Increment(std::max(record.total_us, 0.0));
  queue_us_->Increment(std::max(record.queue_us, 0.0));
  input_us_->Increment(std::max(record.input_us, 0.0));
  infer_us_->Increment(std::max(record.infer_us, 0.0));
  output_us_->Increment(std::max(record.output_us, 0.0));
  latency_->Observe(record.total_us / 1e6);
  if (record.tokenize_us >= 0) tokenize_->Observe(record.tokenize_us / 1e6);
  batch_->Observe(static_cast<double>(record.rows));
  if (record.call_rows > 0) call_batch_->Observe(static_cast<double>(record.call_rows));
  if (record.cold_shape) cold_shapes_->Increment();
  if (record.padded_rows > 0) padded_rows_->Increment(record.padded_rows);
  if (record.padded_length) padded_length_->Increment();
  if (record.executions > 1) split_->Increment();
}

void VersionMetrics::Failed(FailureReason reason) {
  failure_[static_cast<int>(reason)]->Increment();
}

ServerMetrics::ServerMetrics(const BuildInfo& build)
    : success_(NewCounter(*registry_, "nv_inference_request_success",
                          "Successful inference requests (Triton's name).")),
      failure_(NewCounter(*registry_, "nv_inference_request_failure",
                          "Failed inference requests, by reason: REJECTED (queue full), CANCELED "
                          "(deadline or client), BACKEND (the worker), OTHER (Triton's name).")),
      count_(NewCounter(*registry_, "nv_inference_count",
                        "Inferences performed: the rows of successful requests (Triton's name).")),
      exec_count_(NewCounter(*registry_, "nv_inference_exec_count",
                             "Model executions: forward passes (Triton's name).")),
      request_us_(NewCounter(*registry_, "nv_inference_request_duration_us",
                             "Cumulative time successful requests spent in the server, "
                             "microseconds (Triton's name).")),
      queue_us_(NewCounter(*registry_, "nv_inference_queue_duration_us",
                           "Cumulative time successful requests waited for a worker, "
                           "microseconds (Triton's name).")),
      input_us_(NewCounter(*registry_, "nv_inference_compute_input_duration_us",
                           "Cumulative time preparing inputs: decoding, copying into the "
                           "worker's arena, tokenizing; microseconds (Triton's name).")),
      infer_us_(NewCounter(*registry_, "nv_inference_compute_infer_duration_us",
                           "Cumulative time in the model's forward passes, microseconds "
                           "(Triton's name).")),
      output_us_(NewCounter(*registry_, "nv_inference_compute_output_duration_us",
                            "Cumulative time copying outputs out and encoding responses, "
                            "microseconds (Triton's name).")),
      latency_(NewHistogram(*registry_, "kiln_request_duration_seconds",
                            "Successful requests' time in the server (for histogram_quantile).")),
      tokenize_(NewHistogram(*registry_, "kiln_tokenize_duration_seconds",
                             "The worker's tokenizing of a text request.")),
      batch_(NewHistogram(*registry_, "kiln_request_batch_size",
                          "Successful requests' rows (their batch size, before any padding).")),
      call_batch_(NewHistogram(*registry_, "kiln_execution_batch_size",
                               "Rows per call to a worker (a dynamic batch: its requests' rows "
                               "together, before any padding).")),
      cold_shapes_(NewCounter(*registry_, "kiln_cold_shape_hits_total",
                              "Requests that ran a shape their worker had not warmed.")),
      padded_rows_(NewCounter(*registry_, "kiln_padded_rows_total",
                              "Rows of zeros added to reach a warmed batch size.")),
      padded_length_(NewCounter(*registry_, "kiln_padded_length_requests_total",
                                "Text requests padded up to a longer warmed sequence length.")),
      split_(NewCounter(*registry_, "kiln_split_requests_total",
                        "Requests run in several passes to fit the worker's memory budget.")),
      restarts_(NewCounter(*registry_, "kiln_worker_restarts_total",
                           "Workers that died (not scaled away or retired) and are replaced.")),
      respawn_(NewHistogram(*registry_, "kiln_worker_respawn_duration_seconds",
                            "From a worker's death until its replacement was ready.")),
      worker_start_phase_(NewHistogram(*registry_, "kiln_worker_start_phase_seconds",
                                       "A worker's start, by cause and phase: fork (from the spawn "
                                       "command until forked), warm (then until ready).")),
      reload_phase_(NewGauge(*registry_, "kiln_reload_phase_duration_seconds",
                             "Each phase of the last reload that reached it.")),
      startup_phase_(NewGauge(*registry_, "kiln_startup_phase_duration_seconds",
                              "Each startup phase's duration.")),
      time_to_serving_(NewGauge(*registry_, "kiln_startup_time_to_serving_seconds",
                                "From the process's start until the gRPC port opened.")),
      readiness_p95_(NewGauge(*registry_, "kiln_readiness_check_p95_seconds",
                              "The readiness check's wall-clock p95 through the whole path.")),
      readiness_cpu_p95_(NewGauge(*registry_, "kiln_readiness_check_cpu_p95_seconds",
                                  "The readiness check's p95 of the workers' CPU time per call.")),
      readiness_cpu_median_(NewGauge(*registry_, "kiln_readiness_check_cpu_median_seconds",
                                     "The readiness check's median of the workers' CPU time per "
                                     "call (what it judges).")),
      readiness_limit_(NewGauge(*registry_, "kiln_readiness_check_limit_seconds",
                                "The readiness check's limit for the CPU median.")),
      readiness_passed_(NewGauge(*registry_, "kiln_readiness_check_passed",
                                 "1 when the version's last readiness check passed.")),
      process_pss_(NewGauge(*registry_, "kiln_process_pss_bytes",
                            "Each process's proportional set size (sampled).")),
      process_private_(NewGauge(*registry_, "kiln_process_private_bytes",
                                "Each process's private resident pages (sampled).")),
      process_shared_(NewGauge(*registry_, "kiln_process_shared_bytes",
                               "Each process's resident pages shared with others (sampled).")),
      worker_headroom_(NewGauge(*registry_, "kiln_worker_memory_headroom_bytes",
                                "A worker's memory budget less its private pages (sampled).")),
      tree_pss_(
          NewGauge(*registry_, "kiln_memory_pss_bytes", "The whole process tree's PSS (sampled).")),
      memory_limit_(NewGauge(*registry_, "kiln_memory_limit_bytes",
                             "The memory the server lives under (cgroup or physical memory).")) {
  NewGauge(*registry_, "kiln_build_info", "The build: kiln, gRPC and LibTorch versions.")
      .Add({{"version", build.kiln}, {"grpc", build.grpc}, {"libtorch", build.libtorch}})
      .Set(1);
}

VersionMetrics& ServerMetrics::Version(const std::string& model, int64_t version) {
  absl::MutexLock lock(&versions_mu_);
  std::unique_ptr<VersionMetrics>& slot = versions_[{model, version}];
  if (slot != nullptr) return *slot;
  slot.reset(new VersionMetrics());
  const prometheus::Labels labels = {{"model", model}, {"version", std::to_string(version)}};
  VersionMetrics& m = *slot;
  m.success_ = &success_.Add(labels);
  for (FailureReason reason : {FailureReason::kRejected, FailureReason::kCanceled,
                               FailureReason::kBackend, FailureReason::kOther}) {
    prometheus::Labels with_reason = labels;
    with_reason["reason"] = FailureReasonName(reason);
    m.failure_[static_cast<int>(reason)] = &failure_.Add(with_reason);
  }
  m.count_ = &count_.Add(labels);
  m.exec_count_ = &exec_count_.Add(labels);
  m.request_us_ = &request_us_.Add(labels);
  m.queue_us_ = &queue_us_.Add(labels);
  m.input_us_ = &input_us_.Add(labels);
  m.infer_us_ = &infer_us_.Add(labels);
  m.output_us_ = &output_us_.Add(labels);
  m.latency_ = &latency_.Add(labels, RequestLatencyBuckets());
  m.tokenize_ = &tokenize_.Add(labels, TokenizeBuckets());
  m.batch_ = &batch_.Add(labels, BatchBuckets());
  m.call_batch_ = &call_batch_.Add(labels, BatchBuckets());
  m.cold_shapes_ = &cold_shapes_.Add(labels);
  m.padded_rows_ = &padded_rows_.Add(labels);
  m.padded_length_ = &padded_length_.Add(labels);
  m.split_ = &split_.Add(labels);
  return m;
}

void ServerMetrics::WorkerDied(const std::string& model, int64_t version) {
  restarts_.Add({{"model", model}, {"version", std::to_string(version)}}).Increment();
}

void ServerMetrics::WorkerRespawned(const std::string& model, int64_t version, double seconds) {
  respawn_.Add({{"model", model}, {"version", std::to_string(version)}}, RespawnBuckets())
      .Observe(seconds);
}

void ServerMetrics::WorkerStartPhases(const std::string& model, int64_t version,
                                      const std::string& cause, double fork_seconds,
                                      double warm_seconds) {
  for (const auto& [phase, seconds] : {std::pair("fork", fork_seconds), {"warm", warm_seconds}}) {
    worker_start_phase_
        .Add({{"model", model},
              {"version", std::to_string(version)},
              {"cause", cause},
              {"phase", phase}},
             RespawnBuckets())
        .Observe(seconds);
  }
}

void ServerMetrics::ReloadPhase(const std::string& phase, double seconds) {
  reload_phase_.Add({{"phase", phase}}).Set(seconds);
}

void ServerMetrics::StartupPhase(const std::string& phase, const std::string& model,
                                 const std::string& version, double seconds) {
  startup_phase_.Add({{"phase", phase}, {"model", model}, {"version", version}}).Set(seconds);
}

void ServerMetrics::Serving(double seconds_since_start) {
  time_to_serving_.Add({}).Set(seconds_since_start);
}

void ServerMetrics::ReadinessChecked(const std::string& model, int64_t version,
                                     const ReadinessNumbers& check) {
  const prometheus::Labels labels = {{"model", model}, {"version", std::to_string(version)}};
  readiness_p95_.Add(labels).Set(check.p95_ms / 1e3);
  readiness_cpu_p95_.Add(labels).Set(check.cpu_p95_ms / 1e3);
  readiness_cpu_median_.Add(labels).Set(check.cpu_median_ms / 1e3);
  readiness_limit_.Add(labels).Set(check.limit_ms / 1e3);
  readiness_passed_.Add(labels).Set(check.passed ? 1 : 0);
}

void ServerMetrics::SampledMemory(const std::vector<ProcessMemorySample>& processes,
                                  int64_t limit_bytes) {
  absl::MutexLock lock(&mu_);
  std::vector<std::pair<Family<Gauge>*, Gauge*>> now;
  int64_t total = 0;
  for (const ProcessMemorySample& process : processes) {
    const prometheus::Labels labels = {{"process", process.role},
                                       {"model", process.model},
                                       {"version", process.version},
                                       {"id", process.id}};
    for (auto [family, value] : {std::pair{&process_pss_, process.pss_bytes},
                                 std::pair{&process_private_, process.private_bytes},
                                 std::pair{&process_shared_, process.shared_bytes}}) {
      Gauge& gauge = family->Add(labels);
      gauge.Set(static_cast<double>(value));
      now.emplace_back(family, &gauge);
    }
    if (process.budget_bytes > 0) {
      Gauge& headroom = worker_headroom_.Add(
          {{"model", process.model}, {"version", process.version}, {"slot", process.id}});
      headroom.Set(static_cast<double>(process.budget_bytes - process.private_bytes));
      now.emplace_back(&worker_headroom_, &headroom);
    }
    total += process.pss_bytes;
  }
  for (const auto& [family, gauge] : memory_gauges_) {
    if (std::find(now.begin(), now.end(), std::pair{family, gauge}) == now.end()) {
      family->Remove(gauge);
    }
  }
  memory_gauges_ = std::move(now);
  tree_pss_.Add({}).Set(static_cast<double>(total));
  if (limit_bytes > 0) memory_limit_.Add({}).Set(static_cast<double>(limit_bytes));
}

void ServerMetrics::AddCollector(std::shared_ptr<prometheus::Collectable> collector) {
  absl::MutexLock lock(&mu_);
  collectors_.push_back(std::move(collector));
}

std::string ServerMetrics::Render() const {
  std::vector<std::shared_ptr<prometheus::Collectable>> collectors;
  {
    absl::MutexLock lock(&mu_);
    collectors = collectors_;
  }
  std::vector<prometheus::MetricFamily> families = registry_->Collect();
  for (const auto& collector : collectors) {
    std::vector<prometheus::MetricFamily> more = collector->Collect();
    families.insert(families.end(), std::make_move_iterator(more.begin()),
                    std::make_move_iterator(more.end()));
  }
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, families);
  return out.str();
}

}  // namespace kiln
