// `kiln-bench elastic`: what one change of the worker pool costs a loaded server. One kiln-server
// serves a steady open-loop load; part-way through, one event changes its pool: SIGTTIN to the
// master (one more worker of every model, as an operator or an autoscaler scales up) or SIGKILL
// to one worker (a crash, which the master repairs from the model's warm template). It measures
// what kiln promises for both (docs: "Change without going cold"): the tail latency after the
// event against before it, how long until a new worker is warm, that the model's health stays
// SERVING throughout, and whether the first request the new worker serves is as fast as any.
//
// The server is started, watched and stopped by this process (bench/server_launcher.h); the flags,
// the run, the phases and the report are the scenario harness's (bench/scenario.h). The pure
// pieces (flags, phases, health gaps, the new worker's first request, the report) are declared
// here so that tests reach them without a server.
#ifndef KILN_BENCH_ELASTIC_COMMAND_H_
#define KILN_BENCH_ELASTIC_COMMAND_H_

#include <cstdint>
#include <map>
#include <optional>
#include <ostream>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "bench/latency_stats.h"
#include "bench/load_generator.h"
#include "bench/phases.h"
#include "bench/report.h"
#include "bench/scenario.h"
#include "bench/timing_sender.h"
#include "proto/grpc_service.pb.h"

namespace kiln::bench {

// The one change made to the pool during the load.
enum class ElasticEvent {
  kTtin,  // SIGTTIN to the master: one more worker of every model
  kKill,  // SIGKILL to the first worker the WarmupReport lists for --model
};
const char* ElasticEventName(ElasticEvent event);  // "ttin", "kill"
std::optional<ElasticEvent> ParseElasticEvent(const std::string& name);

// The validated flags of one elastic invocation.
struct ElasticOptions : LoadScenarioOptions {
  ElasticOptions() { rate = 10; }
  ElasticEvent event = ElasticEvent::kKill;
  double duration_s = 20;  // how long the load runs
  double event_s = 8;      // when the event happens, seconds into the load
  double after_s = 10;     // length of the "after" phase, from the event
};

// Parses and validates `args` (after "elastic"): std::nullopt on success; 0 after --help; 2 (with
// the reason on `err`) for a bad flag.
std::optional<int> ParseElasticArgs(const std::vector<std::string>& args, ElasticOptions* options,
                                    std::ostream& out, std::ostream& err);

// Splits the requests (times since the load began; `timings` one per record, or empty) into
// before [skip_ms, event_ms) and after [event_ms, min(event_ms + after_ms, end)], where end is the
// last scheduled time. Requests past the after phase are in neither. Each phase's compute is the
// workers' compute_ms of its OK requests that carry it.
std::vector<Phase> SplitElasticPhases(const std::vector<RequestRecord>& records,
                                      const std::vector<RequestTiming>& timings, double skip_ms,
                                      double event_ms, double after_ms);

// One grpc.health.v1 Check of the model's service during the load.
struct HealthSample {
  double at_ms = 0;      // when it was sent, since the load began
  std::string status;    // "SERVING", "NOT_SERVING", ... or the RPC's error code name
  bool serving = false;  // status == "SERVING"
};
struct HealthSummary {
  int64_t checks = 0;
  int64_t not_serving = 0;  // checks that did not answer SERVING (RPC errors included)
  // The longest run of checks that did not answer SERVING: from the first such check's send to
  // the next SERVING check's (to the last check's when none followed). 0 when there was none.
  double longest_gap_ms = 0;
  std::map<std::string, int64_t> statuses;  // the not-SERVING answers, by name
};
HealthSummary SummarizeHealth(const std::vector<HealthSample>& samples);

// The workers that served before the event: the WarmupReport's pids just before it plus every
// pid that completed a request before `event_ms` (a worker the report did not list yet, say).
std::set<int64_t> OldWorkerPids(const std::vector<RequestRecord>& records,
                                const std::vector<RequestTiming>& timings,
                                const std::vector<int64_t>& workers_before, double event_ms);

// The first request a new worker served: among the OK requests whose worker pid is known and not
// in `old_pids`, the one that completed first (the earlier scheduled on a tie). A request
// scheduled before the event counts too: it may have waited in the queue until the new worker
// took it.
struct FirstNewRequest {
  int64_t pid = 0;
  double scheduled_ms = 0;
  double done_ms = 0;
  double latency_ms = 0;  // end to end, from its scheduled time
  double compute_ms = -1;
  double compute_cpu_ms = -1;  // the worker's CPU time for it; < 0: unknown
};
std::optional<FirstNewRequest> FirstRequestOfNewWorker(const std::vector<RequestRecord>& records,
                                                       const std::vector<RequestTiming>& timings,
                                                       const std::set<int64_t>& old_pids);

struct ElasticResult {
  double event_ms = 0;    // when the signal was sent, since the load began
  int64_t event_pid = 0;  // the pid it went to: the master (ttin) or the killed worker
  std::vector<int64_t> workers_before;  // the WarmupReport's worker pids just before the event
  // From the event until a WarmupReport first listed a worker not in workers_before; std::nullopt
  // when none did while the load lasted (replacement_error says so).
  std::optional<double> replacement_ms;
  int64_t new_worker_pid = 0;
  std::string replacement_error;
  std::vector<Phase> phases;  // before, after
  HealthSummary health;
  std::optional<FirstNewRequest> first_new;

  // p99 after the event over p99 before (0 when either phase has no OK request).
  double p99_ratio() const;
  // The first new request's compute_ms over the before phase's compute p50 (0 when unknown).
  double first_compute_ratio() const;
  // Its worker's CPU time over the before phase's CPU time p50 (0 when unknown): near 1 while
  // first_compute_ratio is higher, the call waited for a CPU; it did not run cold.
  double first_cpu_ratio() const;
  // Its end-to-end latency over the before phase's latency p50 (0 when unknown).
  double first_latency_ratio() const;
  int64_t errors() const;  // over both phases
};

// The result. Text: the event, one line per phase (count, p50, p95, p99, max, compute p50,
// errors), the p99 ratio, the replacement time, the health checks and the new worker's first
// request. JSON: {"model", "event", "workers", "server_args", "rate", "duration_s", "event_s",
// "after_s",
//  "skip_s", "event_ms", "event_pid", "workers_before": [pid],
//  "replacement_ms" (null when no new worker appeared), "new_worker_pid" (null likewise),
//  "replacement_error", "p99_ratio", "errors", "before_compute_p50_ms",
//  "before_compute_cpu_p50_ms",
//  "phases": [{"name", "from_ms", "to_ms", "count", "p50_ms", "p95_ms", "p99_ms", "max_ms",
//              "compute_count", "compute_p50_ms", "compute_p95_ms", "compute_cpu_p50_ms",
//              "errors": {NAME: n}}],
//  "health": {"checks", "not_serving", "longest_gap_ms", "statuses": {NAME: n}},
//  "first_new": {"pid", "scheduled_ms", "latency_ms", "compute_ms", "compute_ratio",
//                "compute_cpu_ms", "cpu_ratio", "latency_ratio"} (null when no new worker
//                served a request)}.
// Times in ms, rounded to microseconds; ratios to 3 decimals.
Report ElasticReport(const ElasticOptions& options, const ElasticResult& result);

// Runs the sub-command. 0 when it ran (targets missed or not: the numbers say so); 1 when the
// server did not become SERVING, its WarmupReport failed before the event, or the event could not
// be sent (the reason and the log's tail on stderr); 2 for bad flags.
int RunElasticCommand(const std::vector<std::string>& args);

}  // namespace kiln::bench

#endif  // KILN_BENCH_ELASTIC_COMMAND_H_
