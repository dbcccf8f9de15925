// The pure logic of `kiln-bench load`, apart from flag parsing and gRPC: arrival schedules, the
// open and closed request loops driven through a small send interface (so tests drive them with
// fake senders, without a server), and the accounting that turns per-request records into the
// report, the JSON summary and the CSV of every request.
//
// Times are milliseconds since the start of the measured run (steady clock).
#ifndef KILN_BENCH_LOAD_GENERATOR_H_
#define KILN_BENCH_LOAD_GENERATOR_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>
#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "bench/latency_stats.h"

namespace kiln::bench {

// --- arrival schedules -------------------------------------------------------------------------

enum class Arrival { kConstant, kPoisson };
// "constant" / "poisson", and back (std::nullopt for anything else).
const char* ArrivalName(Arrival arrival);
std::optional<Arrival> ParseArrival(absl::string_view name);

// How long a schedule runs: the first `requests` arrivals when requests > 0, otherwise every
// arrival that falls before `duration_s`.
struct ScheduleBound {
  int64_t requests = 0;
  double duration_s = 0;
};

// Scheduled send times (ms since the start, ascending, the first at 0) of an open loop at `rate`
// requests per second (> 0). Constant: i * 1000 / rate, exactly. Poisson: cumulative sums of
// exponential gaps with mean 1000 / rate ms, drawn by inverse transform from std::mt19937_64
// seeded with `seed`, so the same arguments give the same schedule on every platform.
std::vector<double> ArrivalOffsetsMs(Arrival arrival, double rate, ScheduleBound bound,
                                     uint64_t seed);

// --- per-request records -----------------------------------------------------------------------

// The outcome of one request: a grpc::StatusCode value (0 = OK), or one of these client-side
// outcomes that never reached a gRPC status.
inline constexpr int kDroppedClientCap = -1;  // open loop: not sent, the outstanding cap was full
inline constexpr int kNoResponse = -2;  // sent, but no completion by the end of the drain wait
// "OK", "UNAVAILABLE", ... (GrpcCodeName), "DROPPED_CLIENT_CAP", "NO_RESPONSE".
std::string OutcomeName(int code);

// One scheduled request. Closed loop: scheduled_ms == sent_ms (there is no schedule). A dropped
// request has sent_ms = when it was dropped and no done_ms; a request without response neither
// done_ms.
struct RequestRecord {
  double scheduled_ms = 0;
  double sent_ms = 0;
  double done_ms = -1;  // < 0: no completion
  int code = kNoResponse;

  bool ok() const { return code == 0; }
  bool completed() const { return code >= 0; }  // a gRPC status arrived (OK or an error)
  // Completion minus scheduled time: open loops count queueing in the client, closed loops the
  // round trip. Only meaningful when completed().
  double latency_ms() const { return done_ms - scheduled_ms; }
};

// --- the request loops -------------------------------------------------------------------------

// Sends one request and calls `done` exactly once with its status, on any thread (possibly
// before Send returns). Must not block for long: the open loop calls it on its schedule.
using DoneFn = std::function<void(grpc::Status)>;
using SendFn = std::function<void(DoneFn done)>;

enum class LoopMode { kOpen, kClosed };
const char* LoopModeName(LoopMode mode);  // "open" / "closed"

// What a progress line shows (every LoadOptions::progress_interval_s).
struct Progress {
  double elapsed_s = 0;
  int64_t sent = 0;       // handed to the sender
  int64_t completed = 0;  // a status arrived
  int64_t errors = 0;     // error statuses plus dropped requests
  double p50_ms = 0;      // median latency of the OK completions since the previous line; 0: none
};
// "[  4.0 s] sent 800, completed 799, errors 0, p50 1.23 ms (last 2 s)"
std::string FormatProgress(const Progress& progress, double interval_s);

struct LoadOptions {
  LoopMode mode = LoopMode::kClosed;
  Arrival arrival = Arrival::kPoisson;  // open loop
  double rate = 0;                      // open loop: requests per second, > 0
  int64_t concurrency = 1;  // closed: in-flight requests; open: cap on outstanding requests
  // Exactly one bound: `requests` > 0 (total scheduled), or `duration_s` > 0.
  int64_t requests = 0;
  double duration_s = 0;
  int64_t warmup_requests = 0;  // sent first, one at a time, not recorded
  uint64_t seed = 0;            // Poisson schedule
  // After the last send, outstanding requests are awaited until last send + timeout_ms +
  // drain_grace_ms (the sender's deadline plus slack for its deadline callback); whatever is
  // still outstanding then is recorded as kNoResponse.
  int64_t timeout_ms = 10000;
  int64_t drain_grace_ms = 1000;
  // Called from a thread of RunLoad's own every progress_interval_s while the run lasts; not
  // at all when the run is known to take at most progress_min_run_s. Null: no progress.
  std::function<void(const Progress&)> progress;
  double progress_interval_s = 2;
  double progress_min_run_s = 3;
  // Open loop: when set, read before each arrival; once true the schedule ends there (a scenario
  // whose events take as long as they take stops its load when they are done; the duration is
  // then its bound). The records hold what was scheduled before it.
  const std::atomic<bool>* stop = nullptr;
};

// Bad option combinations as an InvalidArgument naming the option (the command validates its
// flags first, with the flag names; this guards the library's own callers).
absl::Status ValidateLoadOptions(const LoadOptions& options);

struct LoadResult {
  std::vector<RequestRecord> records;  // in scheduling order
  // Open loop: the schedule's length (the duration, or requests / rate; when `stop` ended it,
  // the offset of the first arrival not sent); closed loop: 0.
  double schedule_span_ms = 0;
  int64_t warmup_failures = 0;
  std::string first_warmup_error;  // "UNAVAILABLE: ..." for the first failed warmup request
};

// Runs the warmup, then the open or closed loop, then the drain, on the calling thread (plus a
// progress thread when options.progress is set). Open loop: request i is handed to `send` at
// its scheduled time, or at once when the loop is behind; when `concurrency` requests are
// outstanding it is recorded as kDroppedClientCap instead. Closed loop: `concurrency` slots,
// each sending its next request as soon as its previous one completes, until `requests` were
// sent or `duration_s` has passed (a slot busy for longer than timeout_ms + drain_grace_ms
// ends the closed loop early rather than hanging it). `send` may complete requests after
// RunLoad returned (past the drain): those late completions are ignored safely.
LoadResult RunLoad(const LoadOptions& options, const SendFn& send);

// --- accounting --------------------------------------------------------------------------------

// What the report and the JSON name the run.
struct RunInfo {
  std::string model;
  LoopMode mode = LoopMode::kClosed;
  Arrival arrival = Arrival::kPoisson;
  double target_rate = 0;  // 0 in closed mode
  int64_t concurrency = 1;
};

// The statistics of one run, computed from its records. A plain value; thread-compatible.
class RunStats {
 public:
  RunStats(RunInfo info, std::vector<RequestRecord> records, double schedule_span_ms);

  const RunInfo& info() const { return info_; }
  const std::vector<RequestRecord>& records() const { return records_; }

  int64_t scheduled() const { return static_cast<int64_t>(records_.size()); }
  int64_t sent() const;       // handed to the sender: every record except kDroppedClientCap
  int64_t completed() const;  // a gRPC status arrived, OK or not
  int64_t ok() const;
  // Every outcome other than OK, by name (DROPPED_CLIENT_CAP and NO_RESPONSE included).
  std::map<std::string, int64_t> errors() const;
  // Latencies of the OK requests only.
  LatencySummary latency() const;

  // The measured window: from the start to the later of the schedule's end and the last
  // completion (or send). Seconds.
  double window_s() const;
  // Requests sent per second over the sending window (the later of the schedule's end and the
  // last send; closed loop: the measured window).
  double achieved_rate() const;
  // OK completions per second over the measured window.
  double throughput() const;

  // "errors: UNAVAILABLE 3, DEADLINE_EXCEEDED 1" (most frequent first), "errors: none".
  std::string ErrorsLine() const;
  // The human-readable report, several lines, ending in a newline.
  std::string Report() const;
  // In this key order: {"model", "mode", "arrival", "target_rate", "concurrency",
  // "duration_s" (the measured window), "sent", "completed", "ok", "throughput_rps",
  // "latency_ms": {count, min, mean, p50, p90, p95, p99, max}, "errors": {NAME: count}}.
  // Closed mode has "arrival": "none" and "target_rate": 0. Times rounded to microseconds.
  nlohmann::ordered_json ToJson() const;
  // Header "scheduled_ms,sent_ms,latency_ms,code", then one row per request in scheduling
  // order; latency_ms is empty for a request that got no status (dropped, no response).
  void WriteCsv(std::ostream& out) const;

 private:
  RunInfo info_;
  std::vector<RequestRecord> records_;
  double schedule_span_ms_;
};

}  // namespace kiln::bench

#endif  // KILN_BENCH_LOAD_GENERATOR_H_
