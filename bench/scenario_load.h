// What the scenarios that start kiln-server and load it share to the letter: the start of a
// server on a free port and the wait for SERVING, the request and the open-loop Poisson load they
// send (on a thread of its own while the scenario changes something), and the load's rate:
// --rate, or a share of the capacity measured first.
#ifndef KILN_BENCH_SCENARIO_LOAD_H_
#define KILN_BENCH_SCENARIO_LOAD_H_

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "bench/load_generator.h"
#include "bench/oip_client.h"
#include "bench/report.h"
#include "bench/scenario.h"
#include "bench/server_launcher.h"
#include "proto/kiln_service.grpc.pb.h"

namespace kiln::bench {

// How long a scenario's kiln-server may drain after SIGTERM before its process group is
// SIGKILLed.
inline constexpr std::chrono::seconds kStopGrace(30);
// The deadline of each call of a scenario's load, and of the calls that set it up.
inline constexpr int64_t kRequestTimeoutMs = 10000;

// --- the server --------------------------------------------------------------------------------

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

// Waits until the health of `server`, listening on loopback `port`, says SERVING, up to
// `timeout_s` after its start (the error names --timeout_s).
absl::Status WaitServingWithin(int port, const LaunchedServer& server, int64_t timeout_s);

// StartOnFreePort, then WaitServingWithin; returns its port and process.
absl::StatusOr<StartedServer> StartServing(const std::string& binary,
                                           const std::string& model_repository, int64_t workers,
                                           const std::vector<std::string>& server_args,
                                           const std::string& lock_dir, const std::string& log_path,
                                           int64_t timeout_s);

// --- the load ----------------------------------------------------------------------------------

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

// The rate of a load: --rate, or --load_share of the capacity measured.
struct LoadRate {
  double rate = 0;
  double capacity_rps = 0;  // 0 when --rate was given
};

// options.rate when it is > 0; else options.load_share of options.model's capacity, measured
// with one call per warm worker the WarmupReport lists (said on stderr, as "kiln-bench <command>:
// capacity ...").
absl::StatusOr<LoadRate> RateOrShareOfCapacity(const LoadScenarioOptions& options,
                                               absl::string_view command,
                                               inference::GRPCInferenceService::Stub& stub,
                                               KilnService::Stub& kiln,
                                               const inference::ModelInferRequest& request,
                                               int64_t timeout_ms);

// Sets "capacity_rps" and "rate" (req/s, "%.2f") on `report`, and "measured" (text only): "70% of
// 20.00 req/s measured", "" when --rate was given.
void SetLoadRate(const LoadRate& rate, double load_share, Report& report);

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

}  // namespace kiln::bench

#endif  // KILN_BENCH_SCENARIO_LOAD_H_
