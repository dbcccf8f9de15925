// `kiln-bench lb`: kiln replicas behind a real gRPC load balancer (Debian's nginx, grpc_pass),
// the seed's scenario on one machine. An open-loop load goes through nginx to one replica; then
// more replicas start (pinned with taskset to other CPUs than the serving one, so that their
// warmup cannot take its CPU), each joining nginx's upstream only once its health says SERVING
// (a graceful nginx reload); then a blue/green switch: green replicas start, pass health and a
// synthetic load sent to each directly, nginx is switched to them, its old worker finishes the
// calls it holds, and blue is drained by SIGTERM. Every request is counted by second and by
// phase; the figure kiln is judged by is the p95 of every second of the scale-out over the p95
// of the steady phase, and the failed requests (none allowed) across the reloads and the switch.
// The same run with --warmup=off shows what kiln's warmup prevents.
//
// The flags, the run, the events, the phases and the report are the scenario harness's
// (bench/scenario.h). The pure pieces (flags, CPU lists, phases, report) are declared here so
// that tests reach them without servers.
#ifndef KILN_BENCH_LB_COMMAND_H_
#define KILN_BENCH_LB_COMMAND_H_

#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "bench/load_generator.h"
#include "bench/phases.h"
#include "bench/report.h"
#include "bench/scenario.h"
#include "bench/timed_events.h"

namespace kiln::bench {

// The validated flags of one lb invocation: --workers and --server_args (with --warmup=off last,
// when asked) are every replica's, --rate the load's through nginx, --timeout_s each replica's
// deadline for SERVING.
struct LbOptions : LoadScenarioOptions {
  LbOptions() {
    rate = 20;
    skip_s = 2;
  }
  std::string nginx;  // resolved path of the nginx executable
  Arrival arrival = Arrival::kPoisson;
  int64_t replicas = 3;  // after the scale-out; blue and green have this many
  // Replica i (and green replica i) runs on cpus[i % size] (a taskset CPU list); empty: unpinned.
  std::vector<std::string> cpus;
  double steady_s = 10;  // one replica alone
  double after_s = 10;   // every replica serving, before blue/green
  double tail_s = 5;     // green alone, after blue is gone
  bool blue_green = true;
  int64_t check_requests = 20;  // the synthetic load sent to each green replica before the switch
  std::string csv_path;         // one row per request of the load ("" = none)
};

// Parses and validates `args` (after "lb"): std::nullopt on success; 0 after --help; 2 (with the
// reason on `err`) for a bad flag.
std::optional<int> ParseLbArgs(const std::vector<std::string>& args, LbOptions* options,
                               std::ostream& out, std::ostream& err);

// Splits --cpus ("0,1,1"): each entry a CPU number or a range "2-3"; "" is no pinning. An
// InvalidArgument names the bad entry.
absl::StatusOr<std::vector<std::string>> ParseCpuLists(absl::string_view text);

// The events of a run, timed from the load's `start`, in the order the report lists them:
// "scale_started" (the new replicas were started), "scale_serving" (the last of them said
// SERVING), "scale_joined" (nginx runs a worker with all of them in its upstream),
// "green_started", "green_serving" (the last said SERVING), "green_checked" (each passed its
// synthetic load), "switched" (nginx runs a worker with only green in its upstream),
// "old_worker_gone" (nginx's worker of the blue configuration exited), "blue_stopped" (every blue
// replica drained and exited), "end" (the load's end).
TimedEvents LbEvents(TimedEvents::Clock::time_point start = TimedEvents::Clock::now());

// What the run found besides the requests.
struct LbResult {
  std::string nginx_version;
  TimedEvents events = LbEvents();
  std::vector<double> check_p50_ms;     // per green replica, its synthetic load's p50
  std::vector<std::string> blue_exits;  // per blue replica, how it ended ("exit code 0")
  std::vector<Phase> phases;            // see LbPhaseSpans
  std::vector<Phase> seconds;           // every whole second of the load
  // The whole seconds that overlap the scale-out [scale_started_ms, green_started_ms or end) and
  // end by its end (the second in which green starts is blue/green's).
  std::vector<size_t> scale_out_seconds;  // indexes into `seconds`
  // Those of them that begin once the new replicas are in nginx's upstream: what the balancer
  // sends them shows here, apart from what their warming beside the serving replica costs it.
  std::vector<size_t> joined_seconds;

  bool IsScaleOutSecond(size_t second) const;  // `second` (an index into `seconds`) is listed
  int64_t errors() const;                      // over the whole load
  // The largest p95 of the seconds `which` lists over the steady phase's p95, and that second's
  // index in `seconds` (-1 when there is none); 0 when the steady phase has no requests.
  double WorstRatio(const std::vector<size_t>& which, int* second) const;
  double WorstScaleOutRatio(int* second) const { return WorstRatio(scale_out_seconds, second); }
};

// The phases of a run from its events: "steady" [skip_ms, scale started), "new replicas warm"
// [scale started, joined), "all replicas" [joined, green started), "green warms" [green started,
// switched), "blue drains" [switched, blue stopped), "green alone" [blue stopped, end). Phases
// whose events did not happen are left out; the first is always "steady".
std::vector<PhaseSpan> LbPhaseSpans(const TimedEvents& events, double skip_ms);

// Counts `records` into `result`'s phases and seconds from result->events.
void CountLbRequests(const std::vector<RequestRecord>& records, double skip_ms, LbResult* result);

// The result. Text: the setting, the events, one line per phase and per second (count, p50, p95,
// p99, max, p95 over the steady p95, errors), the worst scale-out second and the errors. JSON:
// {"command", "model", "nginx", "rate", "arrival", "replicas", "cpus", "bench_cpus", "workers",
// "server_args", "steady_s", "after_s", "tail_s", "blue_green", "events_ms": {EVENT: ms or null},
// "check_p50_ms", "blue_exits", "worst_scale_out_p95_ratio", "worst_scale_out_second",
// "worst_joined_p95_ratio", "worst_joined_second" (-1: none), "errors", "phases" and "seconds":
// [{"name", "from_ms", "to_ms", "count", "p50_ms", "p95_ms", "p99_ms", "max_ms", ("scale_out",
// seconds only), "errors": {NAME: n}}]}.
Report LbReport(const LbOptions& options, const LbResult& result);

// Runs the sub-command. 0 when the scenario ran to its end (the numbers say whether requests
// failed); 1 when a replica, nginx or a step failed (the reason and the logs' tails on stderr);
// 2 for bad flags.
int RunLbCommand(const std::vector<std::string>& args);

}  // namespace kiln::bench

#endif  // KILN_BENCH_LB_COMMAND_H_
