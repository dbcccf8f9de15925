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
// The pure pieces (flags, CPU lists, phases, report, JSON) are declared here so that tests reach
// them without servers.
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
#include "bench/load_phases.h"

namespace kiln::bench {

struct LbOptions {
  std::string model_repository;
  std::string model;
  std::string server;  // resolved path of the kiln-server executable
  std::string nginx;   // resolved path of the nginx executable
  int64_t workers = 0;
  std::vector<std::string> server_args;  // every replica's (--warmup=off last, when asked)
  double rate = 20;                      // requests per second through nginx
  Arrival arrival = Arrival::kPoisson;
  int64_t replicas = 3;  // after the scale-out; blue and green have this many
  // Replica i (and green replica i) runs on cpus[i % size] (a taskset CPU list); empty: unpinned.
  std::vector<std::string> cpus;
  double steady_s = 10;  // one replica alone
  double after_s = 10;   // every replica serving, before blue/green
  double tail_s = 5;     // green alone, after blue is gone
  double skip_s = 2;     // the load's first seconds, left out of the steady phase
  bool blue_green = true;
  int64_t check_requests = 20;  // the synthetic load sent to each green replica before the switch
  int64_t batch = 1;
  int64_t seed = 0;
  int64_t timeout_s = 300;  // deadline for each replica's SERVING
  std::string json_path;
  std::string csv_path;  // one row per request of the load ("" = none)
  std::string log_dir;
};

// Parses and validates `args` (after "lb"): std::nullopt on success; 0 after --help; 2 (with the
// reason on `err`) for a bad flag.
std::optional<int> ParseLbArgs(const std::vector<std::string>& args, LbOptions* options,
                               std::ostream& out, std::ostream& err);

// Splits --cpus ("0,1,1"): each entry a CPU number or a range "2-3"; "" is no pinning. An
// InvalidArgument names the bad entry.
absl::StatusOr<std::vector<std::string>> ParseCpuLists(absl::string_view text);

// When the scenario's events happened, in ms since the load began; < 0: did not happen.
struct LbEvents {
  double scale_started_ms = -1;    // the new replicas were started
  double scale_serving_ms = -1;    // the last of them said SERVING
  double scale_joined_ms = -1;     // nginx runs a worker with all of them in its upstream
  double green_started_ms = -1;    // green replicas started
  double green_serving_ms = -1;    // the last said SERVING
  double green_checked_ms = -1;    // each passed its synthetic load
  double switched_ms = -1;         // nginx runs a worker with only green in its upstream
  double old_worker_gone_ms = -1;  // nginx's worker of the blue configuration exited
  double blue_stopped_ms = -1;     // every blue replica drained and exited
  double end_ms = -1;              // the load's end
};

// What the run found besides the requests.
struct LbResult {
  std::string nginx_version;
  LbEvents events;
  std::vector<double> check_p50_ms;     // per green replica, its synthetic load's p50
  std::vector<std::string> blue_exits;  // per blue replica, how it ended ("exit code 0")
  std::vector<LoadWindow> phases;       // see LbPhaseSpans
  std::vector<LoadWindow> seconds;      // every whole second of the load
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
std::vector<WindowSpan> LbPhaseSpans(const LbEvents& events, double skip_ms);

// Counts `records` into `result`'s phases and seconds from result->events.
void CountLbRequests(const std::vector<RequestRecord>& records, double skip_ms, LbResult* result);

// The report: the setting, the events, one line per phase and per second (count, p50, p95, p99,
// max, errors, p95 over the steady p95), the worst scale-out second and the errors.
std::string FormatLb(const LbOptions& options, const LbResult& result);

// Every number of the report, as JSON (see the README's Measuring table).
std::string LbJson(const LbOptions& options, const LbResult& result);

// Runs the sub-command. 0 when the scenario ran to its end (the numbers say whether requests
// failed); 1 when a replica, nginx or a step failed (the reason and the logs' tails on stderr);
// 2 for bad flags.
int RunLbCommand(const std::vector<std::string>& args);

}  // namespace kiln::bench

#endif  // KILN_BENCH_LB_COMMAND_H_
