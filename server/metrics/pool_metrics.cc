#include "server/metrics/pool_metrics.h"

#include <map>
#include <string>
#include <tuple>
#include <utility>

#include "absl/strings/str_cat.h"

namespace kiln {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

MetricFamily Gauges(const std::string& name, const std::string& help) {
  return MetricFamily{name, help, MetricType::Gauge, {}};
}

void Add(MetricFamily& family, std::vector<ClientMetric::Label> labels, double value) {
  ClientMetric& metric = family.metric.emplace_back();
  metric.label = std::move(labels);
  metric.gauge.value = value;
}

// "b4", or "b4_s16" with a sequence length.
std::string ShapeLabel(const internal::ShapeWarmup& shape) {
  return shape.sequence_length() > 0
             ? absl::StrCat("b", shape.batch_size(), "_s", shape.sequence_length())
             : absl::StrCat("b", shape.batch_size());
}

}  // namespace

std::vector<MetricFamily> PoolStateFamilies(MasterState state,
                                            const std::vector<VersionState>& versions,
                                            const std::vector<WorkerInfo>& workers) {
  MetricFamily server = Gauges("kiln_server_state", "1 for the master's current state.");
  for (MasterState each : {MasterState::kLoading, MasterState::kWarming, MasterState::kChecking,
                           MasterState::kServing, MasterState::kDraining}) {
    Add(server, {{"state", MasterStateName(each)}}, each == state ? 1 : 0);
  }

  // By model and version: the workers of a version being replaced by a reload of the same number
  // and those of its replacement add up; the rest is the Live one's (else the Staged one's).
  std::map<std::pair<std::string, int64_t>, const VersionState*> by_key;
  std::map<std::pair<std::string, int64_t>, int> queued;
  std::map<std::tuple<std::string, int64_t, WorkerState>, int> by_state;
  for (const VersionState& version : versions) {
    const auto key = std::pair{version.spec->config.name(), version.spec->version};
    const VersionState*& chosen = by_key[key];
    if (chosen == nullptr || version.phase == VersionPhase::kLive) chosen = &version;
    queued[key] += version.queued;
    for (WorkerState each :
         {WorkerState::kSpawning, WorkerState::kWarming, WorkerState::kReady, WorkerState::kBusy}) {
      const auto found = version.workers.find(each);
      by_state[{key.first, key.second, each}] += found == version.workers.end() ? 0 : found->second;
    }
  }
  MetricFamily states = Gauges("kiln_workers", "Workers by state.");
  for (const auto& [key, count] : by_state) {
    const auto& [model, version, worker_state] = key;
    Add(states,
        {{"model", model},
         {"version", std::to_string(version)},
         {"state", WorkerStateName(worker_state)}},
        count);
  }
  MetricFamily target = Gauges("kiln_workers_target", "The worker count a version is kept at.");
  MetricFamily ready =
      Gauges("kiln_model_ready", "1 while the version has its quorum of warm workers (SERVING).");
  MetricFamily pending = Gauges("nv_inference_pending_request_count",
                                "Requests waiting for a worker (Triton's name).");
  MetricFamily budget =
      Gauges("kiln_worker_memory_budget_bytes", "Each worker's memory budget (0: none).");
  MetricFamily mapped = Gauges("kiln_model_weights_mapped",
                               "1 when the version's weights are a mapped model.safetensors, "
                               "shared by its workers; 0 when they are on the heap (no such "
                               "file), private to each worker once written to.");
  for (const auto& [key, version] : by_key) {
    const std::vector<ClientMetric::Label> labels = {{"model", key.first},
                                                     {"version", std::to_string(key.second)}};
    Add(target, labels, version->readiness.workers);
    Add(ready, labels, version->readiness.serving ? 1 : 0);
    Add(budget, labels, static_cast<double>(version->budget_bytes));
    Add(mapped, labels, version->spec->weights_path.empty() ? 0 : 1);
    Add(pending, labels, queued[key]);
  }

  MetricFamily first = Gauges("kiln_warmup_first_call_seconds",
                              "Warmup: each shape's first call (with a warm template: the "
                              "worker's one confirming call).");
  MetricFamily steady =
      Gauges("kiln_warmup_steady_seconds", "Warmup: each shape's steady latency (median).");
  MetricFamily ratio = Gauges("kiln_warmup_first_to_steady_ratio",
                              "Warmup: first call over steady latency, per shape.");
  MetricFamily settle = Gauges("kiln_warmup_calls_to_settle",
                               "Warmup: calls until two in a row agreed (0: not within the cap).");
  MetricFamily peak =
      Gauges("kiln_warmup_peak_memory_bytes", "Warmup: a shape's peak anonymous memory.");
  MetricFamily duration = Gauges("kiln_warmup_duration_seconds", "Each worker's whole warmup.");
  MetricFamily tokenizer_first =
      Gauges("kiln_tokenizer_warmup_first_call_seconds", "Warmup: the tokenizer's first call.");
  MetricFamily tokenizer_steady =
      Gauges("kiln_tokenizer_warmup_steady_seconds", "Warmup: the tokenizer's steady latency.");
  for (const WorkerInfo& worker : workers) {
    if (worker.state != WorkerState::kReady && worker.state != WorkerState::kBusy) continue;
    const std::vector<ClientMetric::Label> labels = {
        {"model", worker.model},
        {"version", std::to_string(worker.version)},
        {"slot", std::to_string(worker.slot)},
        {"generation", std::to_string(worker.generation)}};
    Add(duration, labels, worker.warmup.warmup_ms() / 1e3);
    if (worker.warmup.tokenizer_texts() > 0) {
      Add(tokenizer_first, labels, worker.warmup.tokenizer_first_ms() / 1e3);
      Add(tokenizer_steady, labels, worker.warmup.tokenizer_steady_ms() / 1e3);
    }
    for (const internal::ShapeWarmup& shape : worker.warmup.shapes()) {
      if (shape.refused()) continue;  // never ran: not served either
      std::vector<ClientMetric::Label> with_shape = labels;
      with_shape.push_back({"shape", ShapeLabel(shape)});
      Add(first, with_shape, shape.first_ms() / 1e3);
      Add(steady, with_shape, shape.steady_ms() / 1e3);
      if (shape.steady_ms() > 0) Add(ratio, with_shape, shape.first_ms() / shape.steady_ms());
      Add(settle, with_shape, shape.settled_after());
      Add(peak, with_shape, static_cast<double>(shape.peak_anon_bytes()));
    }
  }
  return {std::move(server),   std::move(states),          std::move(target),
          std::move(ready),    std::move(pending),         std::move(budget),
          std::move(mapped),   std::move(first),           std::move(steady),
          std::move(ratio),    std::move(settle),          std::move(peak),
          std::move(duration), std::move(tokenizer_first), std::move(tokenizer_steady)};
}

std::vector<MetricFamily> PoolStateCollector::Collect() const {
  return PoolStateFamilies(master_.state(), pool_.VersionStates(), pool_.Workers());
}

}  // namespace kiln
