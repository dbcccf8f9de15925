// The phases of a scenario's load: named spans of its scheduled time (before an event, while
// something warms, each whole second, ...) and the requests of each, summarized alike for every
// scenario: latency, errors by outcome and, for a load whose responses carry "kiln_timing"
// (bench/timing_sender.h), the workers' compute time, cold-shape hits and the versions that
// answered. PhaseTable renders them into a Report (bench/report.h).
#ifndef KILN_BENCH_PHASES_H_
#define KILN_BENCH_PHASES_H_

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "bench/latency_stats.h"
#include "bench/load_generator.h"
#include "bench/report.h"
#include "bench/timing_sender.h"

namespace kiln::bench {

// A named span of a load's scheduled times: [from_ms, to_ms), or [from_ms, to_ms] when
// `closed_end` (a phase that includes the instant its closing event happened).
struct PhaseSpan {
  std::string name;
  double from_ms = 0;
  double to_ms = 0;
  bool closed_end = false;
  bool Holds(double ms) const { return ms >= from_ms && (closed_end ? ms <= to_ms : ms < to_ms); }
};

// The requests of a load scheduled in one phase.
struct Phase {
  std::string name;
  double from_ms = 0;
  double to_ms = 0;
  LatencySummary latency;                 // OK requests, from their scheduled time
  std::map<std::string, int64_t> errors;  // every other outcome, by name
  // From the responses' kiln_timing (empty without it): the OK requests' compute_ms and their
  // workers' CPU time for them, how many hit a cold shape, and model_version -> how many it
  // answered.
  LatencySummary compute;
  LatencySummary compute_cpu;
  int64_t cold_shape_hits = 0;
  std::map<std::string, int64_t> versions;

  int64_t error_count() const;
  double seconds() const { return (to_ms - from_ms) / 1000; }
};

// Adds requests up into one Phase.
// Ownership: a plain value. Not thread-safe.
class PhaseCounter {
 public:
  explicit PhaseCounter(const PhaseSpan& span);
  // `timing`: what the response said (nullptr: nothing known).
  void Add(const RequestRecord& record, const RequestTiming* timing = nullptr);
  // Adds `seconds` of scheduled time to the phase (one made of several loads).
  void Extend(double seconds) { phase_.to_ms += seconds * 1000; }
  Phase Finish() const;

 private:
  Phase phase_;
  std::vector<double> latencies_;
  std::vector<double> computes_;
  std::vector<double> compute_cpus_;
};

// Each of `records` counted into the first of `spans` that holds its scheduled time (a request in
// none is left out); `timings` are one per record (JoinTimings), or empty.
std::vector<Phase> CountPhases(const std::vector<RequestRecord>& records,
                               const std::vector<PhaseSpan>& spans,
                               const std::vector<RequestTiming>& timings = {});

// The whole seconds [s, s + 1) of [0, end_ms), named "0", "1", ...; the last one ends at end_ms.
std::vector<PhaseSpan> WholeSeconds(double end_ms);

// Phases that follow each other: each from its start to the next start that happened, the last
// to `end_ms`. A start that did not happen (std::nullopt) leaves its phase out.
std::vector<PhaseSpan> ConsecutiveSpans(
    const std::vector<std::pair<std::string, std::optional<double>>>& starts, double end_ms);

int64_t ErrorTotal(const std::map<std::string, int64_t>& errors);
int64_t ErrorTotal(const std::vector<Phase>& phases);

// The p99 of `later` over that of `before`: 0 when either has no requests or before's p99 is not
// above 0 (a ratio of nothing would read as a result).
double P99Ratio(const LatencySummary& before, const LatencySummary& later);

// Sets a phase's JSON values on `row`: "name", "from_ms", "to_ms", "count", "p50_ms", "p95_ms",
// "p99_ms", "max_ms" (and "window_s", text only).
void SetPhaseLatency(const Phase& phase, Report& row);

// The phases as a table: the columns `label` (the names), "window s", "count", "p50 ms",
// "p95 ms", "p99 ms", "max ms", then `extra_columns`, then "errors". Each row's JSON is
// SetPhaseLatency's keys, then what `add_extra` sets (the phase's index and the phase), then
// "errors" ({NAME: n}).
ReportTable PhaseTable(const std::string& label, const std::vector<Phase>& phases,
                       std::vector<ReportColumn> extra_columns = {},
                       const std::function<void(size_t, const Phase&, Report&)>& add_extra = {},
                       const std::string& errors_header = "errors");

}  // namespace kiln::bench

#endif  // KILN_BENCH_PHASES_H_
