#include "bench/scaleout_command.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <thread>
#include <utility>

#include <nlohmann/json.hpp>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "bench/args.h"
#include "bench/load_phases.h"
#include "bench/oip_client.h"
#include "bench/server_launcher.h"
#include "common/status_macros.h"
#include "common/status_util.h"

namespace kiln::bench {
namespace {

using Clock = std::chrono::steady_clock;

constexpr std::chrono::seconds kStopGrace(30);
constexpr int64_t kRequestTimeoutMs = 10000;

constexpr char kDescription[] =
    "The scale-out scenario in miniature: replica A (kiln-server on a free loopback port) serves\n"
    "an open-loop Poisson load of --rate requests per second for --duration_s; --start_b_s into\n"
    "it, replica B (the same repository, --workers and --server_args) starts on the same\n"
    "machine, as a new pod does on a node during scale-out. Reports A's latency (OK requests,\n"
    "from each request's scheduled time) before B started, while B warms (until its health\n"
    "says SERVING) and after, the errors in each, B's time to SERVING, and A's p99 while B\n"
    "warms over its p99 before. Both replicas inherit this process's environment (e.g.\n"
    "GOMP_SPINCOUNT for a baseline) and are stopped at the end.\n"
    "Exit status: 0 B became SERVING within A's load and both served; 1 something failed (the\n"
    "reason and the logs' tails on stderr); 2 bad flags.";

std::string TwoDecimals(double value) { return absl::StrFormat("%.2f", value); }

}  // namespace

int64_t ScaleoutPhase::error_count() const { return ErrorTotal(errors); }

double ScaleoutResult::p99_ratio() const {
  if (phases.size() < 2) return 0;
  return P99Ratio(phases[0].latency, phases[1].latency);
}

int64_t ScaleoutResult::errors() const {
  int64_t total = 0;
  for (const ScaleoutPhase& phase : phases) total += phase.error_count();
  return total;
}

ScaleoutResult SplitPhases(const std::vector<RequestRecord>& records, double skip_ms,
                           double b_started_ms, double b_serving_ms) {
  ScaleoutResult result;
  result.b_started_ms = b_started_ms;
  result.b_serving_ms = b_serving_ms;
  double end_ms = b_serving_ms;
  for (const RequestRecord& record : records) end_ms = std::max(end_ms, record.scheduled_ms);
  result.phases = {{"before B", skip_ms, b_started_ms, {}, {}},
                   {"while B warms", b_started_ms, b_serving_ms, {}, {}},
                   {"after B is SERVING", b_serving_ms, end_ms, {}, {}}};
  std::vector<std::vector<double>> latencies(result.phases.size());
  for (const RequestRecord& record : records) {
    const double t = record.scheduled_ms;
    int phase = -1;
    if (t >= skip_ms && t < b_started_ms) {
      phase = 0;
    } else if (t >= b_started_ms && t <= b_serving_ms) {
      phase = 1;
    } else if (t > b_serving_ms) {
      phase = 2;
    }
    if (phase < 0) continue;
    if (record.ok()) {
      latencies[phase].push_back(record.latency_ms());
    } else {
      ++result.phases[phase].errors[OutcomeName(record.code)];
    }
  }
  for (size_t i = 0; i < result.phases.size(); ++i) {
    result.phases[i].latency = Summarize(std::move(latencies[i]));
  }
  return result;
}

std::string FormatScaleout(const ScaleoutOptions& options, const ScaleoutResult& result) {
  std::string out = absl::StrFormat(
      "replica A: %s at %s req/s (Poisson); replica B started %.2f s into A's load, %s\n",
      options.model, TwoDecimals(options.rate), result.b_started_ms / 1000,
      result.b_error.empty() ? absl::StrFormat("SERVING after %.1f ms", result.b_ready_ms())
                             : absl::StrCat("never SERVING: ", result.b_error));
  absl::StrAppendFormat(&out, "  %-20s %s  %s\n", "A's requests", PhaseLatencyHeader(), "errors");
  for (const ScaleoutPhase& phase : result.phases) {
    absl::StrAppendFormat(&out, "  %-20s %s  %s\n", phase.name,
                          PhaseLatencyColumns(phase.from_ms, phase.to_ms, phase.latency),
                          ErrorsText(phase.errors));
  }
  absl::StrAppendFormat(&out, "A's p99 while B warms / before: %.2fx; errors: %d\n",
                        result.p99_ratio(), result.errors());
  return out;
}

std::string ScaleoutJson(const ScaleoutOptions& options, const ScaleoutResult& result) {
  nlohmann::ordered_json doc;
  doc["model"] = options.model;
  doc["workers"] = options.workers;
  doc["server_args"] = absl::StrJoin(options.server_args, " ");
  doc["rate"] = options.rate;
  doc["duration_s"] = options.duration_s;
  doc["start_b_s"] = options.start_b_s;
  doc["b_ready_ms"] = result.b_error.empty()
                          ? nlohmann::ordered_json(RoundToThousandths(result.b_ready_ms()))
                          : nlohmann::ordered_json(nullptr);
  doc["b_error"] = result.b_error;
  doc["p99_ratio"] = RoundToThousandths(result.p99_ratio());
  doc["errors"] = result.errors();
  doc["phases"] = nlohmann::ordered_json::array();
  for (const ScaleoutPhase& phase : result.phases) {
    nlohmann::ordered_json entry =
        PhaseLatencyJson(phase.name, phase.from_ms, phase.to_ms, phase.latency);
    entry["errors"] = ErrorsJson(phase.errors);
    doc["phases"].push_back(std::move(entry));
  }
  return doc.dump(2) + "\n";
}

std::optional<int> ParseScaleoutArgs(const std::vector<std::string>& args, ScaleoutOptions* options,
                                     std::ostream& out, std::ostream& err) {
  ScaleoutOptions parsed;
  std::string server, server_args, rate = "15", duration = "30", start_b = "6", skip = "1";
  FlagSet flags(
      "kiln-bench scaleout --model_repository=DIR --model=NAME [--rate=R] [flags]", kDescription,
      {"kiln-bench scaleout --model_repository=models --model=resnet18 --rate=15",
       "GOMP_SPINCOUNT=300000 kiln-bench scaleout --model_repository=repo --model=resnet18 "
       "--server_args=--warmup_priority=normal --json=/tmp/scaleout.json"});
  flags.AddString("model_repository", &parsed.model_repository,
                  "the repository both replicas serve");
  flags.AddString("model", &parsed.model, "the model A's load goes to");
  AddServerFlag(flags, &server);
  flags.AddInt("workers", &parsed.workers,
               "both replicas' --workers, 0..256; 0 = the config's count, or as many as the CPUs "
               "allow");
  flags.AddString("server_args", &server_args,
                  "more flags for both replicas, space-separated --name=value words");
  flags.AddString("rate", &rate, "A's load: requests per second, > 0 (Poisson arrivals)");
  flags.AddString("duration_s", &duration, "how long A's load runs, seconds");
  flags.AddString("start_b_s", &start_b, "when B starts, seconds into A's load");
  flags.AddString("skip_s", &skip, "A's first seconds of load left out of 'before B'");
  flags.AddInt("batch", &parsed.batch, "batch size of A's requests");
  flags.AddInt("seed", &parsed.seed, "seed of the inputs and of the Poisson schedule");
  flags.AddInt("timeout_s", &parsed.timeout_s, "deadline for A's SERVING, in seconds");
  flags.AddString("json", &parsed.json_path, "also write the result to this file");
  flags.AddString("log_dir", &parsed.log_dir,
                  "keep both servers' logs here (scaleout-A.log, scaleout-B.log); default: a "
                  "temporary directory kept only when the run fails");
  if (std::optional<int> exit = ParseFlagsOrExit(&flags, "scaleout", args, out, err)) return *exit;
  auto problem = [&]() -> std::string {
    const std::string launch =
        ValidateLaunchFlags(parsed.model_repository, parsed.model, server, parsed.json_path,
                            parsed.log_dir, &parsed.server);
    if (!launch.empty()) return launch;
    // Every value is parsed; the first reason, in the flags' order, is the one reported.
    for (const std::string& reason :
         {ValidateWorkersAndServerArgs(parsed.workers, server_args, &parsed.server_args),
          ParsePositiveFlag("rate", rate, &parsed.rate),
          ParsePositiveFlag("duration_s", duration, &parsed.duration_s),
          ParsePositiveFlag("start_b_s", start_b, &parsed.start_b_s),
          ParseSkipFlag(skip, &parsed.skip_s)}) {
      if (!reason.empty()) return reason;
    }
    if (parsed.skip_s >= parsed.start_b_s || parsed.start_b_s >= parsed.duration_s) {
      return "need --skip_s < --start_b_s < --duration_s (B starts during A's load, after the "
             "skipped start)";
    }
    return ValidateBatchSeedTimeout(parsed.batch, parsed.seed, parsed.timeout_s);
  }();
  if (!problem.empty()) {
    err << "kiln-bench scaleout: " << problem
        << "\nrun 'kiln-bench scaleout --help' for its flags\n";
    return kExitUsage;
  }
  *options = std::move(parsed);
  return std::nullopt;
}

namespace {

// One replica: started on a free port with its log at <log_dir>/scaleout-<name>.log.
struct Replica {
  std::string name;
  int port = 0;
  std::unique_ptr<LaunchedServer> server;
};

absl::StatusOr<Replica> StartReplica(const ScaleoutOptions& options, const std::string& name,
                                     const std::string& lock_dir, const std::string& log_dir) {
  ASSIGN_OR_RETURN(StartedServer started,
                   StartOnFreePort(options.server, options.model_repository, options.workers,
                                   options.server_args, lock_dir,
                                   absl::StrCat(log_dir, "/scaleout-", name, ".log")));
  return Replica{name, started.port, std::move(started.server)};
}

absl::StatusOr<Clock::time_point> ReplicaServing(const Replica& replica, Clock::time_point deadline,
                                                 const std::string& timeout_flag) {
  const std::shared_ptr<grpc::Channel> channel =
      ServerChannel(absl::StrCat("127.0.0.1:", replica.port));
  const std::unique_ptr<grpc::health::v1::Health::Stub> health =
      grpc::health::v1::Health::NewStub(channel);
  absl::StatusOr<Clock::time_point> serving =
      WaitServing(*health, *replica.server, deadline, timeout_flag);
  if (!serving.ok()) return Annotate(serving.status(), absl::StrCat("replica ", replica.name));
  return serving;
}

// Starts A, loads it, starts B during the load, and splits A's requests by phase.
absl::StatusOr<ScaleoutResult> RunScaleout(const ScaleoutOptions& options,
                                           const std::string& lock_dir,
                                           const std::string& log_dir) {
  ASSIGN_OR_RETURN(Replica a, StartReplica(options, "A", lock_dir, log_dir));
  const Clock::time_point a_deadline =
      a.server->started_at() + std::chrono::seconds(options.timeout_s);
  RETURN_IF_ERROR(
      ReplicaServing(a, a_deadline, absl::StrCat("--timeout_s=", options.timeout_s)).status());

  const std::shared_ptr<grpc::Channel> channel = CreateChannel(absl::StrCat("127.0.0.1:", a.port));
  const std::unique_ptr<inference::GRPCInferenceService::Stub> stub =
      inference::GRPCInferenceService::NewStub(channel);
  ASSIGN_OR_RETURN(
      const SyntheticRequest request,
      FetchLoadRequest(*stub, options.model, options.batch, options.seed, kRequestTimeoutMs));

  const LoadOptions load =
      PoissonLoad(options.rate, options.duration_s, options.seed, kRequestTimeoutMs);
  GrpcSender sender(stub.get(), &request.request, kRequestTimeoutMs);
  BackgroundLoad background(load, [&sender](DoneFn done) { sender.Send(std::move(done)); });
  const Clock::time_point start = background.start();
  const auto since_start = [start](Clock::time_point t) {
    return std::chrono::duration<double, std::milli>(t - start).count();
  };
  const Clock::time_point load_end = start + std::chrono::duration_cast<Clock::duration>(
                                                 std::chrono::duration<double>(options.duration_s));
  std::this_thread::sleep_until(start + std::chrono::duration_cast<Clock::duration>(
                                            std::chrono::duration<double>(options.start_b_s)));
  std::cerr << "kiln-bench scaleout: starting replica B" << std::endl;
  absl::StatusOr<Replica> b = StartReplica(options, "B", lock_dir, log_dir);
  absl::StatusOr<Clock::time_point> b_serving =
      b.ok() ? ReplicaServing(
                   *b, load_end,
                   absl::StrCat("A's load of ", options.duration_s, " s (raise --duration_s)"))
             : b.status();
  const LoadResult result = background.Join();
  RETURN_IF_ERROR(b.status());
  std::cerr << "kiln-bench scaleout: replica B " << (b_serving.ok() ? "SERVING" : "not SERVING")
            << "; stopping both" << std::endl;
  RETURN_IF_ERROR(a.server->Stop(kStopGrace).status());
  if (b_serving.ok()) {
    RETURN_IF_ERROR(b->server->Stop(kStopGrace).status());
  }  // else ~LaunchedServer kills it: it may be stuck, or gone already
  ScaleoutResult phases =
      SplitPhases(result.records, options.skip_s * 1000, since_start(b->server->started_at()),
                  since_start(b_serving.ok() ? *b_serving : load_end));
  if (!b_serving.ok()) phases.b_error = std::string(b_serving.status().message());
  return phases;
}

}  // namespace

int RunScaleoutCommand(const std::vector<std::string>& args) {
  ScaleoutOptions options;
  if (std::optional<int> exit = ParseScaleoutArgs(args, &options, std::cout, std::cerr)) {
    return *exit;
  }
  const std::optional<std::string> work_dir = MakeRunDir("scaleout", std::cerr);
  if (!work_dir) return kExitFailure;
  const std::string log_dir = options.log_dir.empty() ? *work_dir : options.log_dir;
  std::cout << "scaleout: " << options.model << ", replica A at " << options.rate << " req/s for "
            << options.duration_s << " s, replica B from " << options.start_b_s
            << " s; server flags: " << absl::StrJoin(options.server_args, " ") << std::endl;
  absl::StatusOr<ScaleoutResult> result = RunScaleout(options, *work_dir, log_dir);
  if (!result.ok()) {
    std::cerr << "kiln-bench scaleout: " << result.status().message() << "\n";
    for (const char* name : {"A", "B"}) {
      const std::string log = absl::StrCat(log_dir, "/scaleout-", name, ".log");
      const std::string tail = FileTail(log, 10);
      if (!tail.empty()) std::cerr << "--- " << log << " (last lines) ---\n" << tail;
    }
    std::cerr << "logs kept in " << log_dir << "\n";
    return kExitFailure;
  }
  std::cout << FormatScaleout(options, *result);
  if (!options.json_path.empty()) {
    if (!WriteResultFile("scaleout", options.json_path, ScaleoutJson(options, *result),
                         std::cerr)) {
      return kExitFailure;
    }
  }
  if (!result->b_error.empty()) {
    const std::string log = absl::StrCat(log_dir, "/scaleout-B.log");
    std::cerr << "kiln-bench scaleout: replica B: " << result->b_error << "\n--- " << log
              << " (last lines) ---\n"
              << FileTail(log, 10) << "logs kept in " << log_dir << "\n";
    return kExitFailure;
  }
  if (options.log_dir.empty()) {
    std::error_code error;
    std::filesystem::remove_all(*work_dir, error);
  }
  return kExitOk;
}

}  // namespace kiln::bench
