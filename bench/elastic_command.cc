#include "bench/elastic_command.h"

#include <signal.h>
#include <sys/types.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <iostream>
#include <memory>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "bench/health_command.h"
#include "bench/oip_client.h"
#include "bench/scenario_flags.h"
#include "bench/scenario_load.h"
#include "bench/scenario_run.h"
#include "bench/server_launcher.h"
#include "bench/timed_events.h"
#include "common/status_macros.h"
#include "common/status_util.h"
#include "proto/kiln_service.grpc.pb.h"
#include "server/codec/infer_codec.h"  // the kiln_timing parameters

namespace kiln::bench {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int64_t kHealthTimeoutMs = 1000;
// How often the model's health is checked, and the WarmupReport polled after the event: fine
// enough that a gap in SERVING or a worker's arrival is seen within a few ms of its happening.
constexpr std::chrono::milliseconds kHealthInterval(10);
constexpr std::chrono::milliseconds kReportInterval(20);

const Scenario kElastic = {
    "elastic",
    "--model_repository=DIR --model=NAME --event=ttin|kill [flags]",
    "What one change of the worker pool costs a loaded server. kiln-server (on a free loopback\n"
    "port) serves an open-loop Poisson load of --rate requests per second on --model for\n"
    "--duration_s; --event_s into it, one event:\n"
    "  --event=ttin  SIGTTIN to the master: one more worker of every model (scale-up);\n"
    "  --event=kill  SIGKILL to one worker of --model (the first the WarmupReport lists): a\n"
    "                crash, which the master repairs (from the warm template by default).\n"
    "Reports:\n"
    "  - the load's latency (OK requests, from each request's scheduled time) before the event\n"
    "    (after --skip_s) and for --after_s after it (p50/p95/p99/max, errors), p99 after/before;\n"
    "  - the replacement time: from the event until kiln.KilnService/WarmupReport (polled every\n"
    "    20 ms) lists a worker of --model that was not there before (it lists warm workers only);\n"
    "  - health continuity: grpc.health.v1 Check of service --model every 10 ms through the load:\n"
    "    how many did not answer SERVING and the longest such gap (the target is none);\n"
    "  - the first request the new worker served: every request asks for kiln_timing, so each\n"
    "    response names its worker's pid, compute time and CPU time; that request's latency,\n"
    "    compute time and CPU time against the p50s of every worker before the event (a CPU\n"
    "    time near theirs while the compute time is higher: it waited for a CPU, not cold).\n"
    "The server inherits this process's environment and is stopped at the end.\n"
    "--json also writes every number (keys in bench/elastic_command.h).\n"
    "Exit status: 0 it ran (targets met or not: the numbers say), 1 the server did not become\n"
    "SERVING, its WarmupReport failed, or the event could not be sent (the reason and the log's\n"
    "tail on stderr), 2 bad flags.",
    {"kiln-bench elastic --model_repository=models --model=resnet50 --workers=4 --event=kill "
     "--rate=6",
     "kiln-bench elastic --model_repository=models --model=resnet18 --workers=1 --event=ttin "
     "--rate=20 --server_args=--warm_template=off --json=/tmp/elastic.json"}};

}  // namespace

const char* ElasticEventName(ElasticEvent event) {
  return event == ElasticEvent::kTtin ? "ttin" : "kill";
}

std::optional<ElasticEvent> ParseElasticEvent(const std::string& name) {
  if (name == "ttin") return ElasticEvent::kTtin;
  if (name == "kill") return ElasticEvent::kKill;
  return std::nullopt;
}

// --- the pure pieces ---------------------------------------------------------------------------

std::vector<Phase> SplitElasticPhases(const std::vector<RequestRecord>& records,
                                      const std::vector<RequestTiming>& timings, double skip_ms,
                                      double event_ms, double after_ms) {
  double end_ms = event_ms;
  for (const RequestRecord& record : records) end_ms = std::max(end_ms, record.scheduled_ms);
  return CountPhases(records,
                     {{"before", skip_ms, event_ms},
                      {"after", event_ms, std::min(event_ms + after_ms, end_ms), true}},
                     timings);
}

HealthSummary SummarizeHealth(const std::vector<HealthSample>& samples) {
  HealthSummary summary;
  std::optional<double> gap_start;
  for (const HealthSample& sample : samples) {
    ++summary.checks;
    if (sample.serving) {
      if (gap_start) {
        summary.longest_gap_ms = std::max(summary.longest_gap_ms, sample.at_ms - *gap_start);
        gap_start.reset();
      }
      continue;
    }
    ++summary.not_serving;
    ++summary.statuses[sample.status];
    if (!gap_start) gap_start = sample.at_ms;
  }
  if (gap_start) {
    summary.longest_gap_ms = std::max(summary.longest_gap_ms, samples.back().at_ms - *gap_start);
  }
  return summary;
}

std::set<int64_t> OldWorkerPids(const std::vector<RequestRecord>& records,
                                const std::vector<RequestTiming>& timings,
                                const std::vector<int64_t>& workers_before, double event_ms) {
  std::set<int64_t> old(workers_before.begin(), workers_before.end());
  for (size_t i = 0; i < records.size() && i < timings.size(); ++i) {
    if (records[i].ok() && records[i].done_ms < event_ms && timings[i].worker_pid != 0) {
      old.insert(timings[i].worker_pid);
    }
  }
  return old;
}

std::optional<FirstNewRequest> FirstRequestOfNewWorker(const std::vector<RequestRecord>& records,
                                                       const std::vector<RequestTiming>& timings,
                                                       const std::set<int64_t>& old_pids) {
  std::optional<FirstNewRequest> first;
  for (size_t i = 0; i < records.size() && i < timings.size(); ++i) {
    const RequestRecord& record = records[i];
    const RequestTiming& timing = timings[i];
    if (!record.ok() || timing.worker_pid == 0 || old_pids.count(timing.worker_pid) > 0) continue;
    if (first &&
        (record.done_ms > first->done_ms ||
         (record.done_ms == first->done_ms && record.scheduled_ms >= first->scheduled_ms))) {
      continue;
    }
    first = FirstNewRequest{timing.worker_pid,   record.scheduled_ms, record.done_ms,
                            record.latency_ms(), timing.compute_ms,   timing.compute_cpu_ms};
  }
  return first;
}

double ElasticResult::p99_ratio() const {
  if (phases.size() < 2) return 0;
  return P99Ratio(phases[0].latency, phases[1].latency);
}

namespace {

// `value` (< 0: unknown) over the p50 of `summary` in the before phase (phases[0]); 0 when either
// is unknown.
double OverBeforeP50(const std::vector<Phase>& phases, LatencySummary Phase::*summary,
                     double value) {
  if (value < 0 || phases.empty()) return 0;
  const LatencySummary& before = phases[0].*summary;
  return before.count > 0 && before.p50 > 0 ? value / before.p50 : 0;
}

}  // namespace

double ElasticResult::first_compute_ratio() const {
  return first_new ? OverBeforeP50(phases, &Phase::compute, first_new->compute_ms) : 0;
}

double ElasticResult::first_cpu_ratio() const {
  return first_new ? OverBeforeP50(phases, &Phase::compute_cpu, first_new->compute_cpu_ms) : 0;
}

double ElasticResult::first_latency_ratio() const {
  return first_new ? OverBeforeP50(phases, &Phase::latency, first_new->latency_ms) : 0;
}

int64_t ElasticResult::errors() const { return ErrorTotal(phases); }

Report ElasticReport(const ElasticOptions& options, const ElasticResult& result) {
  const bool ttin = options.event == ElasticEvent::kTtin;
  const double before_compute_p50 = result.phases.empty() ? 0.0 : result.phases[0].compute.p50;
  const double before_cpu_p50 = result.phases.empty() ? 0.0 : result.phases[0].compute_cpu.p50;
  Report report;
  report.Line(ttin ? "elastic: {model} at {rate} req/s (Poisson); SIGTTIN {event_ms} s into the "
                     "load (master pid {event_pid})"
                   : "elastic: {model} at {rate} req/s (Poisson); SIGKILL {event_ms} s into the "
                     "load (worker pid {event_pid})");
  report.Set("model", String(options.model))
      .Set("event", String(ElasticEventName(options.event)))
      .Set("workers", Integer(options.workers))
      .Set("server_args", String(absl::StrJoin(options.server_args, " ")))
      .Set("rate", Number(options.rate))
      .Set("duration_s", Number(options.duration_s))
      .Set("event_s", Number(options.event_s))
      .Set("after_s", Number(options.after_s))
      .Set("skip_s", Number(options.skip_s))
      .Set("event_ms", ScaledNumber(result.event_ms, 0.001))
      .Set("event_pid", Integer(result.event_pid))
      .Set("workers_before",
           JsonWithText(result.workers_before, absl::StrJoin(result.workers_before, ", ")))
      .Set("replacement_ms", NumberOr(result.replacement_ms, "%.1f"))
      .Set("new_worker_pid", result.replacement_ms ? Integer(result.new_worker_pid) : Null())
      .Set("replacement_error", String(result.replacement_error))
      .Set("p99_ratio", Number(result.p99_ratio()))
      .Set("errors", Integer(result.errors()))
      .Set("before_compute_p50_ms", Number(before_compute_p50))
      .Set("before_compute_cpu_p50_ms", Number(before_cpu_p50));
  report.Table("phases", PhaseTable("requests", result.phases, {{"compute_p50_ms", "compute p50"}},
                                    [](size_t, const Phase& phase, Report& row) {
                                      row.Set("compute_count", Integer(phase.compute.count))
                                          .Set("compute_p50_ms", Number(phase.compute.p50))
                                          .Set("compute_p95_ms", Number(phase.compute.p95))
                                          .Set("compute_cpu_p50_ms", Number(phase.compute_cpu.p50));
                                    }));
  report.Line("p99 after / before: {p99_ratio}x; errors: {errors}");
  report.Line(result.replacement_ms
                  ? "new worker: pid {new_worker_pid} warm {replacement_ms} ms after the event"
                  : "new worker: none: {replacement_error}");
  report.Set("health.checks", Integer(result.health.checks))
      .Set("health.not_serving", Integer(result.health.not_serving))
      .Set("health.longest_gap_ms", Number(result.health.longest_gap_ms, "%.1f"))
      .Set("health.statuses", Counts(result.health.statuses))
      .Set("health_interval_ms", TextOnly(absl::StrCat(kHealthInterval.count())));
  report.Line(
      "health of {model} (Check every {health_interval_ms} ms): {health.checks} checks, "
      "{health.not_serving} not SERVING ({health.statuses}), longest gap "
      "{health.longest_gap_ms} ms");
  if (!result.first_new) {
    report.Set("first_new", Null());
    report.Line("first request of the new worker: none served one during the load");
    return report;
  }
  const FirstNewRequest& first = *result.first_new;
  report.Set("first_new.pid", Integer(first.pid))
      .Set("first_new.scheduled_ms", ScaledNumber(first.scheduled_ms, 0.001))
      .Set("first_new.latency_ms", Number(first.latency_ms))
      .Set("first_new.compute_ms", Number(first.compute_ms))
      .Set("first_new.compute_ratio", Number(result.first_compute_ratio()))
      .Set("first_new.compute_cpu_ms", Number(first.compute_cpu_ms))
      .Set("first_new.cpu_ratio", Number(result.first_cpu_ratio()))
      .Set("first_new.latency_ratio", Number(result.first_latency_ratio()));
  report.Line(
      "first request of the new worker (pid {first_new.pid}, scheduled {first_new.scheduled_ms} "
      "s): latency {first_new.latency_ms} ms ({first_new.latency_ratio}x the before p50), "
      "compute {first_new.compute_ms} ms ({first_new.compute_ratio}x the before compute p50 "
      "{before_compute_p50_ms} ms), the worker's CPU time {first_new.compute_cpu_ms} ms "
      "({first_new.cpu_ratio}x the before p50 {before_compute_cpu_p50_ms} ms)");
  return report;
}

std::optional<int> ParseElasticArgs(const std::vector<std::string>& args, ElasticOptions* options,
                                    std::ostream& out, std::ostream& err) {
  ElasticOptions parsed;
  std::string event;
  ScenarioFlags flags(kElastic, &parsed);
  flags.flags().SetHelp("model_repository", "the repository the server serves");
  flags.flags().SetHelp("model", "the model the load goes to (and whose worker is killed)");
  flags.flags().SetHelp("server_args",
                        "more server flags, space-separated --name=value words (e.g. "
                        "--warm_template=off)");
  flags.flags().AddString("event", &event,
                          "ttin (SIGTTIN to the master: one more worker per model) or kill "
                          "(SIGKILL to one worker of --model); required");
  flags.AddRate(&parsed, "the load: requests per second, > 0 (Poisson arrivals)");
  flags.flags().AddDouble("duration_s", &parsed.duration_s, "how long the load runs, seconds");
  flags.flags().AddDouble("event_s", &parsed.event_s,
                          "when the event happens, seconds into the load");
  flags.flags().AddDouble("after_s", &parsed.after_s,
                          "length of the 'after' phase from the event, seconds (cut at the "
                          "load's end)");
  flags.AddSkip(&parsed, "the load's first seconds, left out of 'before'");
  flags.AddLoadFlags(&parsed);
  flags.AddResultFlags(
      "keep the server's log here (elastic.log); default: a temporary directory kept only when "
      "the run fails");
  std::optional<int> exit = flags.Parse(args, out, err, [&]() -> std::string {
    if (event.empty()) return "--event is required: ttin or kill";
    const std::optional<ElasticEvent> kind = ParseElasticEvent(event);
    if (!kind) return absl::StrCat("--event must be ttin or kill, not '", event, "'");
    parsed.event = *kind;
    if (parsed.skip_s >= parsed.event_s || parsed.event_s >= parsed.duration_s) {
      return "need --skip_s < --event_s < --duration_s (the event happens during the load, "
             "after the skipped start)";
    }
    return "";
  });
  if (!exit) *options = std::move(parsed);
  return exit;
}

// --- the run -----------------------------------------------------------------------------------

namespace {

// Checks service `model` every kHealthInterval until `stop`; each sample's time counts from
// `start`. Runs on a thread of its own.
void ProbeHealth(grpc::health::v1::Health::Stub& stub, const std::string& model,
                 Clock::time_point start, const absl::Notification& stop,
                 std::vector<HealthSample>* samples) {
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(model);
  Clock::time_point next = Clock::now();
  while (!stop.HasBeenNotified()) {
    next += kHealthInterval;
    const Clock::time_point sent = Clock::now();
    grpc::ClientContext context;
    SetTimeout(&context, kHealthTimeoutMs);
    grpc::health::v1::HealthCheckResponse response;
    const grpc::Status status = stub.Check(&context, request, &response);
    HealthSample sample;
    sample.at_ms = MsBetween(start, sent);
    sample.status =
        status.ok() ? ServingStatusName(response.status()) : GrpcCodeName(status.error_code());
    sample.serving =
        status.ok() && response.status() == grpc::health::v1::HealthCheckResponse::SERVING;
    samples->push_back(std::move(sample));
    // A slow check is followed at once by the next (no catching up with a burst).
    next = std::max(next, Clock::now());
    stop.WaitForNotificationWithTimeout(absl::FromChrono(next - Clock::now()));
  }
}

// Sends the event; returns its target's pid, or why it could not be sent.
absl::StatusOr<int64_t> SendEvent(ElasticEvent event, const LaunchedServer& server,
                                  const std::vector<int64_t>& workers) {
  pid_t target = server.pid();
  int sig = SIGTTIN;
  if (event == ElasticEvent::kKill) {
    if (workers.empty()) return absl::FailedPreconditionError("no warm worker to kill");
    target = static_cast<pid_t>(workers.front());
    sig = SIGKILL;
    // The pid came from the server's own report; make sure it is still one of its processes
    // (all of them share the master's process group) before a SIGKILL goes to it.
    const std::vector<pid_t> members = ProcessGroupMembers(server.pid());
    if (std::find(members.begin(), members.end(), target) == members.end()) {
      return absl::FailedPreconditionError(
          absl::StrCat("worker pid ", target, " is not in the server's process group"));
    }
  }
  if (kill(target, sig) != 0) {
    return absl::InternalError(
        absl::StrCat("kill(", target, ", ", strsignal(sig), "): ", std::strerror(errno)));
  }
  return target;
}

// Starts the server, loads it, sends the event during the load and measures.
absl::StatusOr<ScenarioOutcome> RunElastic(const ElasticOptions& options, RunFiles& files) {
  ASSIGN_OR_RETURN(
      StartedServer started,
      StartServing(options.server, options.model_repository, options.workers, options.server_args,
                   files.work_dir(), files.Log("elastic.log"), options.timeout_s));
  const std::unique_ptr<LaunchedServer> server = std::move(started.server);
  const std::string address = absl::StrCat("127.0.0.1:", started.port);

  ASSIGN_OR_RETURN(const std::shared_ptr<grpc::Channel> channel, ConnectChannel(address));
  const std::unique_ptr<inference::GRPCInferenceService::Stub> stub =
      inference::GRPCInferenceService::NewStub(channel);
  const std::unique_ptr<KilnService::Stub> kiln = KilnService::NewStub(channel);
  // Health checks on a channel of their own, so that they never queue behind the load's calls.
  ASSIGN_OR_RETURN(const std::shared_ptr<grpc::Channel> health_channel, ConnectChannel(address));
  const std::unique_ptr<grpc::health::v1::Health::Stub> health =
      grpc::health::v1::Health::NewStub(health_channel);
  ASSIGN_OR_RETURN(SyntheticRequest request, FetchLoadRequest(*stub, options.model, options.batch,
                                                              options.seed, kRequestTimeoutMs));
  AskForTiming(&request.request);
  // Fails early (before the load) on a server without the report.
  RETURN_IF_ERROR(WarmWorkerPids(*kiln, options.model).status());

  const LoadOptions load =
      PoissonLoad(options.rate, options.duration_s, options.seed, kRequestTimeoutMs);
  TimingSender sender(stub.get(), &request.request, kRequestTimeoutMs);
  BackgroundLoad background(load, [&sender](DoneFn done) { sender.Send(std::move(done)); });
  TimedEvents events({"event", "new_worker"}, background.start());
  absl::Notification stop_health;
  std::vector<HealthSample> health_samples;
  std::thread prober(
      [&] { ProbeHealth(*health, options.model, events.start(), stop_health, &health_samples); });
  const Clock::time_point load_end = events.start() + Seconds(options.duration_s);

  // The event, then the WarmupReport every kReportInterval until a new worker is listed.
  ElasticResult result;
  std::this_thread::sleep_until(events.start() + Seconds(options.event_s));
  absl::Status event_status = [&]() -> absl::Status {
    ASSIGN_OR_RETURN(result.workers_before, WarmWorkerPids(*kiln, options.model));
    const double event_ms = events.Mark("event");
    ASSIGN_OR_RETURN(result.event_pid, SendEvent(options.event, *server, result.workers_before));
    result.event_ms = event_ms;
    std::cerr << "kiln-bench elastic: sent " << ElasticEventName(options.event) << " to pid "
              << result.event_pid << std::endl;
    const std::set<int64_t> before(result.workers_before.begin(), result.workers_before.end());
    std::string last_error;
    while (Clock::now() < load_end) {
      const Clock::time_point next = Clock::now() + kReportInterval;
      absl::StatusOr<std::vector<int64_t>> pids = WarmWorkerPids(*kiln, options.model);
      if (pids.ok()) {
        for (const int64_t pid : *pids) {
          if (before.count(pid) > 0) continue;
          result.replacement_ms = events.Mark("new_worker") - event_ms;
          result.new_worker_pid = pid;
          return absl::OkStatus();
        }
      } else {
        last_error = std::string(pids.status().message());
      }
      std::this_thread::sleep_until(next);
    }
    result.replacement_error = absl::StrCat(
        "no new warm worker within the load (", options.duration_s - options.event_s,
        " s after the event)", last_error.empty() ? "" : "; last report: ", last_error);
    return absl::OkStatus();
  }();
  const LoadResult loaded = background.Join();
  const std::vector<RequestTiming> sends = sender.Timings();
  stop_health.Notify();
  prober.join();
  RETURN_IF_ERROR(Annotate(event_status, absl::StrCat("event ", ElasticEventName(options.event))));
  std::cerr << "kiln-bench elastic: load done; stopping the server" << std::endl;
  RETURN_IF_ERROR(server->Stop(kStopGrace).status());

  ASSIGN_OR_RETURN(const std::vector<RequestTiming> timings, JoinTimings(loaded.records, sends));
  result.phases = SplitElasticPhases(loaded.records, timings, options.skip_s * 1000,
                                     result.event_ms, options.after_s * 1000);
  result.health = SummarizeHealth(health_samples);
  result.first_new = FirstRequestOfNewWorker(
      loaded.records, timings,
      OldWorkerPids(loaded.records, timings, result.workers_before, result.event_ms));
  return ScenarioOutcome(ElasticReport(options, result));
}

}  // namespace

int RunElasticCommand(const std::vector<std::string>& args) {
  ElasticOptions options;
  if (std::optional<int> exit = ParseElasticArgs(args, &options, std::cout, std::cerr)) {
    return *exit;
  }
  std::cout << "elastic: " << options.model << " at " << options.rate << " req/s for "
            << options.duration_s << " s, " << ElasticEventName(options.event) << " at "
            << options.event_s << " s; server flags: " << absl::StrJoin(options.server_args, " ")
            << std::endl;
  return RunScenario(kElastic, options,
                     [&](RunFiles& files) { return RunElastic(options, files); });
}

}  // namespace kiln::bench
