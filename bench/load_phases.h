// What the scenarios that load one kiln-server and change something part-way through the load
// (`kiln-bench scaleout`, `kiln-bench elastic`) share: the validation of their common flags, the
// start of a server on a free port, the request and the open-loop Poisson load they send, and the
// per-phase numbers of the report and the JSON. Each command keeps its own phases and wording;
// only what is the same to the letter lives here, so that the two cannot drift apart.
#ifndef KILN_BENCH_LOAD_PHASES_H_
#define KILN_BENCH_LOAD_PHASES_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "bench/args.h"
#include "bench/latency_stats.h"
#include "bench/load_generator.h"
#include "bench/oip_client.h"
#include "bench/server_launcher.h"

namespace kiln::bench {

// --- flags -------------------------------------------------------------------------------------

// Checks --workers (0..256) and splits `server_args_text` (--server_args) into *server_args; ""
// when both are fine, else the reason (for the usage error).
std::string ValidateWorkersAndServerArgs(int64_t workers, absl::string_view server_args_text,
                                         std::vector<std::string>* server_args);

// Parses --<name>=`text`, a number > 0, into *value; "" on success, else the reason.
std::string ParsePositiveFlag(absl::string_view name, const std::string& text, double* value);

// Parses --skip_s=`text`, a number >= 0, into *value; "" on success, else the reason.
std::string ParseSkipFlag(const std::string& text, double* value);

// Checks --batch (>= 1), --seed (>= 0) and --timeout_s (1..86400), in that order; "" when all are
// fine, else the reason for the first that is not.
std::string ValidateBatchSeedTimeout(int64_t batch, int64_t seed, int64_t timeout_s);

// --- the run -----------------------------------------------------------------------------------

// One kiln-server started by a scenario.
struct StartedServer {
  int port = 0;  // its free loopback port
  std::unique_ptr<LaunchedServer> server;
};

// Starts `binary` serving `model_repository` on a free loopback port with --workers=`workers`
// and `server_args` appended, its lock directory `lock_dir` and its output in `log_path`. A
// non-empty `launcher` is a command the server runs under, e.g. {"taskset", "-c", "1"}: it must
// exec the server, keeping its pid.
absl::StatusOr<StartedServer> StartOnFreePort(const std::string& binary,
                                              const std::string& model_repository, int64_t workers,
                                              const std::vector<std::string>& server_args,
                                              const std::string& lock_dir,
                                              const std::string& log_path,
                                              const std::vector<std::string>& launcher = {});

// --server: the kiln-server executable to start (ValidateLaunchFlags resolves it).
void AddServerFlag(FlagSet& flags, std::string* server);

// The flags a scenario with one load ends with, into the fields of the same names of `options`:
// --batch, --seed, --timeout_s, --json (json_path) and --log_dir, whose help says what is kept
// there (`log_dir_help`).
template <typename Options>
void AddLoadRunFlags(FlagSet& flags, Options& options, const std::string& log_dir_help) {
  flags.AddInt("batch", &options.batch, "batch size of the requests");
  flags.AddInt("seed", &options.seed, "seed of the inputs and of the Poisson schedule");
  flags.AddInt("timeout_s", &options.timeout_s, "deadline for SERVING, in seconds");
  flags.AddString("json", &options.json_path, "also write the result to this file");
  flags.AddString("log_dir", &options.log_dir, log_dir_help);
}

// Waits until the health of `server`, listening on loopback `port`, says SERVING, up to
// `timeout_s` after its start (the error names --timeout_s).
absl::Status WaitServingWithin(int port, const LaunchedServer& server, int64_t timeout_s);

// StartOnFreePort, then WaitServingWithin; returns its port and process.
absl::StatusOr<StartedServer> StartServing(const std::string& binary,
                                           const std::string& model_repository, int64_t workers,
                                           const std::vector<std::string>& server_args,
                                           const std::string& lock_dir, const std::string& log_path,
                                           int64_t timeout_s);

// The one request every call of the load sends: `model`'s metadata fetched from the server, then
// synthetic inputs of `batch` rows from `seed`.
absl::StatusOr<SyntheticRequest> FetchLoadRequest(inference::GRPCInferenceService::Stub& stub,
                                                  const std::string& model, int64_t batch,
                                                  int64_t seed, int64_t timeout_ms);

// Milliseconds from `from` to `to`, and `s` seconds as a steady_clock duration.
double MsBetween(std::chrono::steady_clock::time_point from,
                 std::chrono::steady_clock::time_point to);
std::chrono::steady_clock::duration Seconds(double s);

// The requests per second `request`'s model sustains: a closed loop of `concurrency` calls (one
// per warm worker) for 4 s after 2 warmup calls, each with a deadline of `timeout_ms`.
absl::StatusOr<double> MeasureCapacity(inference::GRPCInferenceService::Stub& stub,
                                       const inference::ModelInferRequest& request,
                                       int64_t concurrency, int64_t timeout_ms);

// An open-loop load of Poisson arrivals at `rate` per second for `duration_s` (schedule from
// `seed`, each request's deadline `timeout_ms`). The client cap of 1000 calls in flight is far
// above what a rate the server keeps up with needs, so it only bounds a server that stalls.
LoadOptions PoissonLoad(double rate, double duration_s, int64_t seed, int64_t timeout_ms);

// A load that RunLoad sends on a thread of its own while the scenario changes something.
// Ownership: owns the thread; `send` must stay valid until Join() (or the destructor) returns.
// Thread-compatible: call from the thread that made it.
class BackgroundLoad {
 public:
  // Starts the thread; returns once the load's clock started (its records' times count from
  // start()).
  BackgroundLoad(LoadOptions options, SendFn send);
  ~BackgroundLoad();  // joins the thread, if Join() was not called
  BackgroundLoad(const BackgroundLoad&) = delete;
  BackgroundLoad& operator=(const BackgroundLoad&) = delete;

  std::chrono::steady_clock::time_point start() const { return start_; }
  // Waits for the load's end (its schedule, then its drain) and returns it. Call once.
  LoadResult Join();

 private:
  std::chrono::steady_clock::time_point start_;
  LoadResult result_;
  std::thread thread_;
};

// Writes `text` to `path` for `kiln-bench <command>`; false, with "writing <path> failed" on
// `err`, when that fails.
bool WriteResultFile(absl::string_view command, const std::string& path, const std::string& text,
                     std::ostream& err);

// --- one run of a command with one server and one log (elastic, reload, scrape) ----------------

// RunWithOneServer's failure: "kiln-bench <command>: <why>", the log's last lines, where the logs
// are kept; returns kExitFailure.
int ReportRunFailure(const std::string& command, const absl::Status& why, const std::string& log,
                     const std::string& log_dir);
// RunWithOneServer's success: prints `text`, writes `json_text` to `json_path` (when set), removes
// `remove_dir` (when set); kExitOk, or kExitFailure when the JSON cannot be written.
int FinishRun(const std::string& command, const std::string& text, const std::string& json_path,
              const std::string& json_text, const std::string& remove_dir);

// Makes the run directory (MakeRunDir) and runs `run(work_dir, log)`, the log being
// <log_dir or the run directory>/<command>.log. On an error prints it with the log's tail and
// keeps the logs: exit 1. Otherwise prints `format(result)`, writes `json(result)` to
// `json_path` when set, and removes the run directory unless `log_dir` was given: exit 0.
template <typename Result>
int RunWithOneServer(const std::string& command, const std::string& log_dir,
                     const std::string& json_path,
                     const std::function<absl::StatusOr<Result>(const std::string& work_dir,
                                                                const std::string& log)>& run,
                     const std::function<std::string(const Result&)>& format,
                     const std::function<std::string(const Result&)>& json) {
  const std::optional<std::string> work_dir = MakeRunDir(command, std::cerr);
  if (!work_dir) return kExitFailure;
  const std::string logs = log_dir.empty() ? *work_dir : log_dir;
  const std::string log = logs + "/" + command + ".log";
  const absl::StatusOr<Result> result = run(*work_dir, log);
  if (!result.ok()) return ReportRunFailure(command, result.status(), log, logs);
  return FinishRun(command, format(*result), json_path, json_path.empty() ? "" : json(*result),
                   log_dir.empty() ? *work_dir : "");
}

// --- phases ------------------------------------------------------------------------------------

// How many requests `errors` (outcome name -> count) counts.
int64_t ErrorTotal(const std::map<std::string, int64_t>& errors);

// "NAME n, NAME n" of `errors`, or "none" when it is empty.
std::string ErrorsText(const std::map<std::string, int64_t>& errors);

// The p99 of `later` over that of `before`: 0 when either has no requests or before's p99 is not
// above 0 (a ratio of nothing would read as a result).
double P99Ratio(const LatencySummary& before, const LatencySummary& later);

// The header of the latency columns of a phase's report line ("window s", "count", "p50 ms",
// "p95 ms", "p99 ms", "max ms"), aligned with PhaseLatencyColumns.
std::string PhaseLatencyHeader();

// A phase's latency columns: its window [from_ms, to_ms] in seconds, then count, p50, p95, p99
// and max of `latency`.
std::string PhaseLatencyColumns(double from_ms, double to_ms, const LatencySummary& latency);

// {"name", "from_ms", "to_ms", "count", "p50_ms", "p95_ms", "p99_ms", "max_ms"} of one phase;
// the caller adds what else it measured and then "errors" (ErrorsJson).
nlohmann::ordered_json PhaseLatencyJson(const std::string& name, double from_ms, double to_ms,
                                        const LatencySummary& latency);

// {NAME: n} of `errors` ({} when empty).
nlohmann::ordered_json ErrorsJson(const std::map<std::string, int64_t>& errors);

// --- windows of scheduled time -----------------------------------------------------------------

// A named span [from_ms, to_ms) of a load's scheduled times.
struct WindowSpan {
  std::string name;
  double from_ms = 0;
  double to_ms = 0;
};

// The requests of a load scheduled within one WindowSpan.
struct LoadWindow {
  WindowSpan span;
  LatencySummary latency;                 // OK requests, from their scheduled time
  std::map<std::string, int64_t> errors;  // every other outcome, by name
  int64_t error_count() const { return ErrorTotal(errors); }
};

// `records` counted into each of `spans` that holds their scheduled time (spans may overlap;
// a request in none is left out).
std::vector<LoadWindow> CountInWindows(const std::vector<RequestRecord>& records,
                                       const std::vector<WindowSpan>& spans);

// The whole seconds [s, s + 1) of [0, end_ms), named "0", "1", ...; the last one ends at end_ms.
std::vector<WindowSpan> WholeSeconds(double end_ms);

}  // namespace kiln::bench

#endif  // KILN_BENCH_LOAD_PHASES_H_
