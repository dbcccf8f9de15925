#include "bench/phases.h"

#include <algorithm>
#include <utility>

namespace kiln::bench {

int64_t Phase::error_count() const { return ErrorTotal(errors); }

PhaseCounter::PhaseCounter(const PhaseSpan& span) {
  phase_.name = span.name;
  phase_.from_ms = span.from_ms;
  phase_.to_ms = span.to_ms;
}

void PhaseCounter::Add(const RequestRecord& record, const RequestTiming* timing) {
  if (!record.ok()) {
    ++phase_.errors[OutcomeName(record.code)];
    return;
  }
  latencies_.push_back(record.latency_ms());
  if (timing == nullptr) return;
  if (timing->compute_ms >= 0) computes_.push_back(timing->compute_ms);
  if (timing->compute_cpu_ms >= 0) compute_cpus_.push_back(timing->compute_cpu_ms);
  phase_.cold_shape_hits += timing->cold_shape;
  if (!timing->model_version.empty()) ++phase_.versions[timing->model_version];
}

Phase PhaseCounter::Finish() const {
  Phase phase = phase_;
  phase.latency = Summarize(latencies_);
  phase.compute = Summarize(computes_);
  phase.compute_cpu = Summarize(compute_cpus_);
  return phase;
}

std::vector<Phase> CountPhases(const std::vector<RequestRecord>& records,
                               const std::vector<PhaseSpan>& spans,
                               const std::vector<RequestTiming>& timings) {
  std::vector<PhaseCounter> counters(spans.begin(), spans.end());
  for (size_t i = 0; i < records.size(); ++i) {
    for (size_t s = 0; s < spans.size(); ++s) {
      if (!spans[s].Holds(records[i].scheduled_ms)) continue;
      counters[s].Add(records[i], i < timings.size() ? &timings[i] : nullptr);
      break;
    }
  }
  std::vector<Phase> phases;
  for (const PhaseCounter& counter : counters) phases.push_back(counter.Finish());
  return phases;
}

std::vector<PhaseSpan> WholeSeconds(double end_ms) {
  std::vector<PhaseSpan> seconds;
  for (int s = 0; s * 1000.0 < end_ms; ++s) {
    seconds.push_back({std::to_string(s), s * 1000.0, std::min((s + 1) * 1000.0, end_ms)});
  }
  return seconds;
}

std::vector<PhaseSpan> ConsecutiveSpans(
    const std::vector<std::pair<std::string, std::optional<double>>>& starts, double end_ms) {
  std::vector<PhaseSpan> spans;
  for (size_t i = 0; i < starts.size(); ++i) {
    if (!starts[i].second) continue;
    double to = end_ms;
    for (size_t j = i + 1; j < starts.size(); ++j) {
      if (starts[j].second) {
        to = *starts[j].second;
        break;
      }
    }
    spans.push_back({starts[i].first, *starts[i].second, std::max(to, *starts[i].second)});
  }
  return spans;
}

int64_t ErrorTotal(const std::map<std::string, int64_t>& errors) {
  int64_t total = 0;
  for (const auto& [name, count] : errors) total += count;
  return total;
}

int64_t ErrorTotal(const std::vector<Phase>& phases) {
  int64_t total = 0;
  for (const Phase& phase : phases) total += phase.error_count();
  return total;
}

double P99Ratio(const LatencySummary& before, const LatencySummary& later) {
  if (before.count == 0 || later.count == 0 || before.p99 <= 0) return 0;
  return later.p99 / before.p99;
}

void SetPhaseLatency(const Phase& phase, Report& row) {
  row.Set("name", String(phase.name))
      .Set("from_ms", Number(phase.from_ms))
      .Set("to_ms", Number(phase.to_ms))
      .Set("window_s", TextOnly(absl::StrFormat("%.2f", phase.seconds())))
      .Set("count", Integer(static_cast<int64_t>(phase.latency.count)))
      .Set("p50_ms", Number(phase.latency.p50))
      .Set("p95_ms", Number(phase.latency.p95))
      .Set("p99_ms", Number(phase.latency.p99))
      .Set("max_ms", Number(phase.latency.max));
}

ReportTable PhaseTable(const std::string& label, const std::vector<Phase>& phases,
                       std::vector<ReportColumn> extra_columns,
                       const std::function<void(size_t, const Phase&, Report&)>& add_extra,
                       const std::string& errors_header) {
  std::vector<ReportColumn> columns = {{"name", label, /*left=*/true},
                                       {"window_s", "window s"},
                                       {"count", "count"},
                                       {"p50_ms", "p50 ms"},
                                       {"p95_ms", "p95 ms"},
                                       {"p99_ms", "p99 ms"},
                                       {"max_ms", "max ms"}};
  for (ReportColumn& column : extra_columns) columns.push_back(std::move(column));
  columns.push_back({"errors", errors_header, /*left=*/true});
  ReportTable table(std::move(columns));
  for (size_t i = 0; i < phases.size(); ++i) {
    Report& row = table.AddRow();
    SetPhaseLatency(phases[i], row);
    if (add_extra) add_extra(i, phases[i], row);
    row.Set("errors", Counts(phases[i].errors));
  }
  return table;
}

}  // namespace kiln::bench
