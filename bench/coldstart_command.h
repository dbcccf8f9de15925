// `kiln-bench coldstart`: starts kiln-server --repeat times and measures what a deploy or a
// scale-out costs: the time from the fork to gRPC health SERVING, the latency of the very first
// request against the steady latency after it, and the server's memory (PSS of the whole process
// tree). The server is started, measured and stopped by this process (bench/server_launcher.h);
// the flags, the run and the report are the scenario harness's (bench/scenario.h).
#ifndef KILN_BENCH_COLDSTART_COMMAND_H_
#define KILN_BENCH_COLDSTART_COMMAND_H_

#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "bench/report.h"
#include "bench/scenario.h"

namespace kiln::bench {

// The validated flags of one coldstart invocation (--timeout_s is the deadline for SERVING, from
// the fork, and for each request).
struct ColdstartOptions : ScenarioOptions {
  ColdstartOptions() { workers = 1; }
  bool warmup = true;
  bool share_weights = true;
  std::string cgroup;  // a cgroup directory the server runs in (its CPU quota); "" = none
  int64_t repeat = 3;
  int64_t steady_requests = 50;
  // The idle pause before the first request (after SERVING) and before each idle probe.
  int64_t pause_ms = 50;
  int64_t batch = 1;
  int64_t seq = 16;
  std::optional<std::string> text;  // --text for a text model; std::nullopt = sample text
};

// Parses and validates `args` (the arguments after "coldstart"). On success fills `options` and
// returns std::nullopt; on --help prints the usage to `out` and returns 0; on a bad flag prints
// "kiln-bench coldstart: <reason>" and a hint to `err` and returns 2. Checks the files too:
// the repository must be a directory holding <model>/config.pbtxt, the server an executable
// (default: DefaultServerBinary of /proc/self/exe and $PATH), the --json file's directory must
// exist; --log_dir is created when missing.
std::optional<int> ParseColdstartArgs(const std::vector<std::string>& args,
                                      ColdstartOptions* options, std::ostream& out,
                                      std::ostream& err);

// The kiln-server command line of one run (see ServerArgv in bench/server_launcher.h).
std::vector<std::string> ColdstartServerArgv(const ColdstartOptions& options, int port,
                                             const std::string& lock_dir);

// What one run measured.
struct ColdstartRun {
  double ready_ms = 0;       // fork -> grpc.health.v1 Watch("") says SERVING
  double first_ms = 0;       // the first ModelInfer after SERVING
  double steady_p50_ms = 0;  // --steady_requests sequential ModelInfer after it
  double steady_p95_ms = 0;
  double ratio = 0;  // first_ms / steady_p50_ms
  // The same request on the now-warm server, each after the same --pause_ms idle pause as the
  // first request: what any request pays for waking an idle server, cold start or not.
  double idle_p50_ms = 0;
  double idle_ratio = 0;  // first_ms / idle_p50_ms
  double pss_mb = 0;      // total PSS of the server's process tree, MiB
  size_t processes = 0;   // how many processes that tree had
};

// "run 2/3: ready 812.4 ms, first 3.10 ms, steady p50 1.20 ms p95 1.90 ms, ratio 2.58, after a
// pause p50 2.90 ms (ratio 1.07), pss 410.2 MB (3 processes)".
std::string FormatRunLine(size_t index, size_t total, const ColdstartRun& run);

// The result over `runs`. Text: the summary, one line per metric with the median and the spread
// (min..max); each run's line (FormatRunLine) is printed as the run ends. JSON (see --help): the
// settings, every run, and per metric {"median", "min", "max"}.
Report ColdstartReport(const ColdstartOptions& options, const std::vector<ColdstartRun>& runs);

// Runs the sub-command; `args` are the arguments after "coldstart". Returns the exit status:
// 0 when every run succeeded, 1 when one failed (the reason and the server log's tail on
// stderr), 2 for bad flags.
int RunColdstartCommand(const std::vector<std::string>& args);

}  // namespace kiln::bench

#endif  // KILN_BENCH_COLDSTART_COMMAND_H_
