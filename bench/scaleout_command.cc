#include "bench/scaleout_command.h"

#include <algorithm>
#include <chrono>
#include <iostream>
#include <memory>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "bench/oip_client.h"
#include "bench/scenario_flags.h"
#include "bench/scenario_load.h"
#include "bench/scenario_run.h"
#include "bench/server_launcher.h"
#include "bench/timed_events.h"
#include "common/status_macros.h"
#include "common/status_util.h"

namespace kiln::bench {
namespace {

using Clock = std::chrono::steady_clock;

const Scenario kScaleout = {
    "scaleout",
    "--model_repository=DIR --model=NAME [--rate=R] [flags]",
    "The scale-out scenario in miniature: replica A (kiln-server on a free loopback port) serves\n"
    "an open-loop Poisson load of --rate requests per second for --duration_s; --start_b_s into\n"
    "it, replica B (the same repository, --workers and --server_args) starts on the same\n"
    "machine, as a new pod does on a node during scale-out. Reports A's latency (OK requests,\n"
    "from each request's scheduled time) before B started, while B warms (until its health\n"
    "says SERVING) and after, the errors in each, B's time to SERVING, and A's p99 while B\n"
    "warms over its p99 before. Both replicas inherit this process's environment (e.g.\n"
    "GOMP_SPINCOUNT for a baseline) and are stopped at the end.\n"
    "Exit status: 0 B became SERVING within A's load and both served; 1 something failed (the\n"
    "reason and the logs' tails on stderr); 2 bad flags.",
    {"kiln-bench scaleout --model_repository=models --model=resnet18 --rate=15",
     "GOMP_SPINCOUNT=300000 kiln-bench scaleout --model_repository=repo --model=resnet18 "
     "--server_args=--warmup_priority=normal --json=/tmp/scaleout.json"}};

// One replica: started on a free port with its log at <log_dir>/scaleout-<name>.log.
struct Replica {
  std::string name;
  int port = 0;
  std::unique_ptr<LaunchedServer> server;
};

absl::StatusOr<Replica> StartReplica(const ScaleoutOptions& options, const std::string& name,
                                     RunFiles& files) {
  ASSIGN_OR_RETURN(StartedServer started,
                   StartOnFreePort(options.server, options.model_repository, options.workers,
                                   options.server_args, files.work_dir(),
                                   files.Log(absl::StrCat("scaleout-", name, ".log"))));
  return Replica{name, started.port, std::move(started.server)};
}

absl::StatusOr<Clock::time_point> ReplicaServing(const Replica& replica, Clock::time_point deadline,
                                                 const std::string& timeout_flag) {
  const std::unique_ptr<grpc::health::v1::Health::Stub> health =
      grpc::health::v1::Health::NewStub(ServerChannel(absl::StrCat("127.0.0.1:", replica.port)));
  absl::StatusOr<Clock::time_point> serving =
      WaitServing(*health, *replica.server, deadline, timeout_flag);
  if (!serving.ok()) return Annotate(serving.status(), absl::StrCat("replica ", replica.name));
  return serving;
}

// Starts A, loads it, starts B during the load, and splits A's requests by phase.
absl::StatusOr<ScenarioOutcome> RunScaleout(const ScaleoutOptions& options, RunFiles& files) {
  ASSIGN_OR_RETURN(Replica a, StartReplica(options, "A", files));
  const Clock::time_point a_deadline =
      a.server->started_at() + std::chrono::seconds(options.timeout_s);
  RETURN_IF_ERROR(
      ReplicaServing(a, a_deadline, absl::StrCat("--timeout_s=", options.timeout_s)).status());

  ASSIGN_OR_RETURN(const std::shared_ptr<grpc::Channel> channel,
                   ConnectChannel(absl::StrCat("127.0.0.1:", a.port)));
  const std::unique_ptr<inference::GRPCInferenceService::Stub> stub =
      inference::GRPCInferenceService::NewStub(channel);
  ASSIGN_OR_RETURN(
      const SyntheticRequest request,
      FetchLoadRequest(*stub, options.model, options.batch, options.seed, kRequestTimeoutMs));

  const LoadOptions load =
      PoissonLoad(options.rate, options.duration_s, options.seed, kRequestTimeoutMs);
  GrpcSender sender(stub.get(), &request.request, kRequestTimeoutMs);
  BackgroundLoad background(load, [&sender](DoneFn done) { sender.Send(std::move(done)); });
  TimedEvents events({"b_started", "b_serving"}, background.start());
  const Clock::time_point load_end = events.start() + Seconds(options.duration_s);
  std::this_thread::sleep_until(events.start() + Seconds(options.start_b_s));
  std::cerr << "kiln-bench scaleout: starting replica B" << std::endl;
  absl::StatusOr<Replica> b = StartReplica(options, "B", files);
  absl::StatusOr<Clock::time_point> b_serving =
      b.ok() ? ReplicaServing(
                   *b, load_end,
                   absl::StrCat("A's load of ", options.duration_s, " s (raise --duration_s)"))
             : b.status();
  const LoadResult loaded = background.Join();
  RETURN_IF_ERROR(b.status());
  events.Mark("b_started", b->server->started_at());
  events.Mark("b_serving", b_serving.ok() ? *b_serving : load_end);
  std::cerr << "kiln-bench scaleout: replica B " << (b_serving.ok() ? "SERVING" : "not SERVING")
            << "; stopping both" << std::endl;
  RETURN_IF_ERROR(a.server->Stop(kStopGrace).status());
  files.Done(a.server->log_path());
  if (b_serving.ok()) {
    RETURN_IF_ERROR(b->server->Stop(kStopGrace).status());
  }  // else ~LaunchedServer kills it: it may be stuck, or gone already
  ScaleoutResult result = SplitPhases(loaded.records, options.skip_s * 1000,
                                      *events.Ms("b_started"), *events.Ms("b_serving"));
  if (b_serving.ok()) return ScenarioOutcome(ScaleoutReport(options, result));
  result.b_error = std::string(b_serving.status().message());  // it names replica B
  return ScenarioOutcome(ScaleoutReport(options, result), b_serving.status());
}

}  // namespace

double ScaleoutResult::p99_ratio() const {
  return phases.size() < 2 ? 0 : P99Ratio(phases[0].latency, phases[1].latency);
}

int64_t ScaleoutResult::errors() const { return ErrorTotal(phases); }

ScaleoutResult SplitPhases(const std::vector<RequestRecord>& records, double skip_ms,
                           double b_started_ms, double b_serving_ms) {
  ScaleoutResult result;
  result.b_started_ms = b_started_ms;
  result.b_serving_ms = b_serving_ms;
  double end_ms = b_serving_ms;
  for (const RequestRecord& record : records) end_ms = std::max(end_ms, record.scheduled_ms);
  // The SERVING instant still counts as warming: each request goes to the first phase holding it.
  result.phases = CountPhases(records, {{"before B", skip_ms, b_started_ms},
                                        {"while B warms", b_started_ms, b_serving_ms, true},
                                        {"after B is SERVING", b_serving_ms, end_ms, true}});
  return result;
}

Report ScaleoutReport(const ScaleoutOptions& options, const ScaleoutResult& result) {
  Report report;
  report.Set("model", String(options.model))
      .Set("workers", Integer(options.workers))
      .Set("server_args", String(absl::StrJoin(options.server_args, " ")))
      .Set("rate", Number(options.rate))
      .Set("duration_s", Number(options.duration_s))
      .Set("start_b_s", Number(options.start_b_s))
      .Set("b_started_s", TextOnly(absl::StrFormat("%.2f", result.b_started_ms / 1000)))
      .Set("b_ready_ms",
           NumberOr(result.b_error.empty() ? std::optional(result.b_ready_ms()) : std::nullopt,
                    "%.1f"))
      .Set("b_error", String(result.b_error))
      .Set("p99_ratio", Number(result.p99_ratio()))
      .Set("errors", Integer(result.errors()));
  report.Line(absl::StrCat(
      "replica A: {model} at {rate} req/s (Poisson); replica B started ",
      "{b_started_s} s into A's load, ",
      result.b_error.empty() ? "SERVING after {b_ready_ms} ms" : "never SERVING: {b_error}"));
  report.Table("phases", PhaseTable("A's requests", result.phases));
  report.Line("A's p99 while B warms / before: {p99_ratio}x; errors: {errors}");
  return report;
}

std::optional<int> ParseScaleoutArgs(const std::vector<std::string>& args, ScaleoutOptions* options,
                                     std::ostream& out, std::ostream& err) {
  ScaleoutOptions parsed;
  ScenarioFlags flags(kScaleout, &parsed);
  flags.flags().SetHelp("model_repository", "the repository both replicas serve");
  flags.flags().SetHelp("model", "the model A's load goes to");
  flags.flags().SetHelp("workers",
                        "both replicas' --workers, 0..256; 0 = the config's count, or as many as "
                        "the CPUs allow");
  flags.flags().SetHelp("server_args",
                        "more flags for both replicas, space-separated --name=value words");
  flags.AddRate(&parsed, "A's load: requests per second, > 0 (Poisson arrivals)");
  flags.flags().AddDouble("duration_s", &parsed.duration_s, "how long A's load runs, seconds");
  flags.flags().AddDouble("start_b_s", &parsed.start_b_s, "when B starts, seconds into A's load");
  flags.AddSkip(&parsed, "A's first seconds of load left out of 'before B'");
  flags.AddLoadFlags(&parsed);
  flags.flags().SetHelp("batch", "batch size of A's requests");
  flags.AddResultFlags(
      "keep both servers' logs here (scaleout-A.log, scaleout-B.log); default: a temporary "
      "directory kept only when the run fails");
  flags.flags().SetHelp("timeout_s", "deadline for A's SERVING, in seconds");
  std::optional<int> exit = flags.Parse(args, out, err, [&]() -> std::string {
    if (parsed.skip_s >= parsed.start_b_s || parsed.start_b_s >= parsed.duration_s) {
      return "need --skip_s < --start_b_s < --duration_s (B starts during A's load, after the "
             "skipped start)";
    }
    return "";
  });
  if (!exit) *options = std::move(parsed);
  return exit;
}

int RunScaleoutCommand(const std::vector<std::string>& args) {
  ScaleoutOptions options;
  if (std::optional<int> exit = ParseScaleoutArgs(args, &options, std::cout, std::cerr)) {
    return *exit;
  }
  std::cout << "scaleout: " << options.model << ", replica A at " << options.rate << " req/s for "
            << options.duration_s << " s, replica B from " << options.start_b_s
            << " s; server flags: " << absl::StrJoin(options.server_args, " ") << std::endl;
  return RunScenario(kScaleout, options,
                     [&](RunFiles& files) { return RunScaleout(options, files); });
}

}  // namespace kiln::bench
