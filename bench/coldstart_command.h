// `kiln-bench coldstart`: starts kiln-server --repeat times and measures what a deploy or a
// scale-out costs: the time from the fork to gRPC health SERVING, the latency of the very first
// request against the steady latency after it, and the server's memory (PSS of the whole process
// tree); for kiln, its startup phases as its /metrics reports them. With --naive_server it starts
// the naive Python baseline (scripts/naive_server.py) instead and measures it the same way. The
// server is started, measured and stopped by this process (bench/server_launcher.h); the flags,
// the run and the report are the scenario harness's (bench/scenario.h).
#ifndef KILN_BENCH_COLDSTART_COMMAND_H_
#define KILN_BENCH_COLDSTART_COMMAND_H_

#include <cstdint>
#include <map>
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
  // --naive_server: the naive baseline's script, started with kNaivePython instead of kiln-server;
  // "" = kiln-server.
  std::string naive_server;
};

// The interpreter the naive server runs with: Debian's, which has python3-torch.
inline constexpr char kNaivePython[] = "/usr/bin/python3";

// "kiln" or "naive": which server the options start (the JSON's "server").
std::string ServerKind(const ColdstartOptions& options);

// Parses and validates `args` (the arguments after "coldstart"). On success fills `options` and
// returns std::nullopt; on --help prints the usage to `out` and returns 0; on a bad flag prints
// "kiln-bench coldstart: <reason>" and a hint to `err` and returns 2. Checks the files too:
// the repository must be a directory holding <model>/config.pbtxt, the server an executable
// (default: DefaultServerBinary of /proc/self/exe and $PATH), the --json file's directory must
// exist; --log_dir is created when missing.
std::optional<int> ParseColdstartArgs(const std::vector<std::string>& args,
                                      ColdstartOptions* options, std::ostream& out,
                                      std::ostream& err);

// The command line of one run. kiln: ServerArgv (bench/server_launcher.h), its metrics endpoint on
// `metrics_port` (0: none). Naive: kNaivePython <script> --model_repository=D --model=M
// --host=127.0.0.1 --port=P --workers=N --warmup=on|off (`lock_dir` and `metrics_port` unused).
// Either in --cgroup when set.
std::vector<std::string> ColdstartServerArgv(const ColdstartOptions& options, int port,
                                             const std::string& lock_dir, int metrics_port = 0);

// The metrics port of a kiln-server command line: the value of its last --metrics_port= (a later
// flag wins, as --server_args may repeat it); 0 when there is none or it is not a port.
int MetricsPortOf(const std::vector<std::string>& argv);

// Startup phase name -> milliseconds, in the order of the first sample of each, from a Prometheus
// text exposition (kiln's /metrics): every kiln_startup_phase_duration_seconds sample, summed over
// the samples of one phase label (one per model and version, or the server's own), and
// kiln_startup_time_to_serving_seconds as "time_to_serving". Any phase name is taken.
using PhaseTimes = std::vector<std::pair<std::string, double>>;
PhaseTimes StartupPhasesMs(const std::string& metrics_text);

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
  // kiln only (0 for the naive server): the worker's CPU time for the first request and the p50
  // of the after-pause requests' (the kiln_timing response parameters), and their ratio. The same
  // CPU time in a longer wall time is waiting for a CPU, not a cold path.
  double first_cpu_ms = 0;
  double idle_cpu_p50_ms = 0;
  double cpu_idle_ratio = 0;  // first_cpu_ms / idle_cpu_p50_ms
  double pss_mb = 0;      // total PSS of the server's process tree, MiB
  size_t processes = 0;   // how many processes that tree had
  // kiln only, when it has a metrics port: StartupPhasesMs of a scrape after the requests.
  PhaseTimes phases_ms;
};

// "run 2/3: ready 812.4 ms, first 3.10 ms, steady p50 1.20 ms p95 1.90 ms, ratio 2.58, after a
// pause p50 2.90 ms (ratio 1.07), CPU 0.21 ms vs 0.20 ms (ratio 1.05), pss 410.2 MB (3
// processes)"; without the CPU part when the server returned no CPU time (the naive server).
std::string FormatRunLine(size_t index, size_t total, const ColdstartRun& run);

// The result over `runs`. Text: the summary, one line per metric with the median and the spread
// (min..max), and kiln's startup phases' medians; each run's line (FormatRunLine) is printed as
// the run ends. JSON (see --help): the settings ("server": "kiln" or "naive"), every run (its
// "phases": {name: ms}), per metric {"median", "min", "max"}, and "phases": {name: median ms}
// over the runs that have the phase.
Report ColdstartReport(const ColdstartOptions& options, const std::vector<ColdstartRun>& runs);

// Runs the sub-command; `args` are the arguments after "coldstart". Returns the exit status:
// 0 when every run succeeded, 1 when one failed (the reason and the server log's tail on
// stderr), 2 for bad flags.
int RunColdstartCommand(const std::vector<std::string>& args);

}  // namespace kiln::bench

#endif  // KILN_BENCH_COLDSTART_COMMAND_H_
