#include "bench/lb_command.h"

#include <sched.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <memory>
#include <sstream>
#include <thread>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "bench/args.h"
#include "bench/nginx_balancer.h"
#include "bench/oip_client.h"
#include "bench/scenario_flags.h"
#include "bench/scenario_load.h"
#include "bench/scenario_run.h"
#include "bench/server_launcher.h"
#include "common/status_macros.h"
#include "common/status_util.h"

namespace kiln::bench {
namespace {

using Clock = std::chrono::steady_clock;

constexpr std::chrono::seconds kNginxReloadTimeout(10);
// nginx's worker_shutdown_timeout (30 s) bounds an old worker's life; a little more than that.
constexpr std::chrono::seconds kOldWorkerTimeout(35);
constexpr char kTaskset[] = "/usr/bin/taskset";

const Scenario kLb = {
    "lb",
    "--model_repository=DIR --model=NAME [--rate=R] [--cpus=0,1,1] [flags]",
    "kiln replicas behind a real gRPC load balancer (nginx, grpc_pass, keepalive, passive\n"
    "failover), the seed's scale-out and blue/green scenario on one machine. An open-loop load\n"
    "of --rate requests per second goes through nginx to one replica for --steady_s; then\n"
    "--replicas - 1 more replicas start, each joining nginx's upstream (a graceful reload) only\n"
    "once its health says SERVING; --after_s later, a blue/green switch: as many green replicas\n"
    "start, pass health and --check_requests sent to each directly, nginx is switched to them,\n"
    "its old worker finishes its calls, and every blue replica is drained by SIGTERM; the load\n"
    "ends --tail_s after. Every replica serves --model alone. --cpus pins replica i to CPU list "
    "i (taskset), so that starting\n"
    "replicas cannot take the serving one's CPU (run kiln-bench itself under taskset to place\n"
    "it and nginx). Reports p50/p95/p99 and the errors per phase and per second (latency from\n"
    "each request's scheduled time, OK requests only), the worst second of the scale-out's p95\n"
    "over the steady p95 (kiln's target: <= 1.1), and the failed requests (target: none).\n"
    "--warmup=off shows the same without kiln's warmup.\n"
    "Exit status: 0 the scenario ran (the numbers say whether requests failed); 1 a replica,\n"
    "nginx or a step failed (the reason and the logs' tails on stderr); 2 bad flags.",
    {"taskset -c 0 kiln-bench lb --model_repository=models --model=resnet18 --rate=20 "
     "--cpus=0,1,1",
     "kiln-bench lb --model_repository=models --model=resnet18 --cpus=0,1,1 --warmup=off "
     "--json=/tmp/lb-off.json"},
    /*log_tail_lines=*/6};

// <work_dir>/repository, holding only `model` (a link to its directory in `source`): each replica
// loads and warms the model under test alone.
absl::StatusOr<std::string> ModelAloneRepository(const std::string& source,
                                                 const std::string& model,
                                                 const std::string& work_dir) {
  const std::filesystem::path repository = std::filesystem::path(work_dir) / "repository";
  std::error_code error;
  std::filesystem::create_directories(repository, error);
  if (!error) {
    std::filesystem::create_directory_symlink(std::filesystem::absolute(source) / model,
                                              repository / model, error);
  }
  if (error) {
    return absl::InternalError(
        absl::StrCat("making ", repository.string(), " for ", model, ": ", error.message()));
  }
  return repository.string();
}

// One kiln-server replica: started on a free port with its log at <log_dir>/lb-<name>.log.
struct Replica {
  std::string name;
  int port = 0;
  std::unique_ptr<LaunchedServer> server;
};

// Starts `count` replicas named `prefix`1.. (replica i of them pinned to cpus[i]) and waits until
// each says SERVING; they warm side by side.
absl::StatusOr<std::vector<Replica>> StartReplicas(const LbOptions& options,
                                                   const std::string& prefix, int64_t first,
                                                   int64_t count, RunFiles& files) {
  std::vector<Replica> replicas;
  for (int64_t i = first; i < first + count; ++i) {
    std::vector<std::string> launcher;
    if (!options.cpus.empty()) {
      launcher = {kTaskset, "--cpu-list", options.cpus[i % options.cpus.size()]};
    }
    const std::string name = absl::StrCat(prefix, i + 1);
    ASSIGN_OR_RETURN(StartedServer started,
                     StartOnFreePort(options.server, options.model_repository, options.workers,
                                     options.server_args, files.work_dir(),
                                     files.Log(absl::StrCat("lb-", name, ".log")), launcher));
    replicas.push_back({name, started.port, std::move(started.server)});
  }
  for (const Replica& replica : replicas) {
    RETURN_IF_ERROR(Annotate(WaitServingWithin(replica.port, *replica.server, options.timeout_s),
                             absl::StrCat("replica ", replica.name)));
  }
  return replicas;
}

std::vector<int> Ports(const std::vector<Replica>& replicas) {
  std::vector<int> ports;
  for (const Replica& replica : replicas) ports.push_back(replica.port);
  return ports;
}

// The synthetic load a green replica must pass before it gets traffic: `count` calls in a row,
// sent to it directly; every one must be OK. Returns their p50.
absl::StatusOr<double> CheckReplica(const Replica& replica, const SyntheticRequest& request,
                                    int64_t count) {
  ASSIGN_OR_RETURN(const std::shared_ptr<grpc::Channel> channel,
                   ConnectChannel(absl::StrCat("127.0.0.1:", replica.port)));
  const std::unique_ptr<inference::GRPCInferenceService::Stub> stub =
      inference::GRPCInferenceService::NewStub(channel);
  LoadOptions check;
  check.mode = LoopMode::kClosed;
  check.requests = count;
  check.concurrency = 1;
  check.timeout_ms = kRequestTimeoutMs;
  GrpcSender sender(stub.get(), &request.request, kRequestTimeoutMs);
  LoadResult result = RunLoad(check, [&sender](DoneFn done) { sender.Send(std::move(done)); });
  const RunStats stats({}, std::move(result.records), 0);
  if (stats.ok() != count) {
    return absl::UnavailableError(
        absl::StrCat("replica ", replica.name, " failed its synthetic load of ", count,
                     " calls: ", stats.ok(), " OK, ", stats.ErrorsLine()));
  }
  return stats.latency().p50;
}

// The CPUs this process may run on, as a list ("0,1", "0").
std::string OwnCpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return "?";
  std::vector<std::string> cpus;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (CPU_ISSET(cpu, &set)) cpus.push_back(std::to_string(cpu));
  }
  return absl::StrJoin(cpus, ",");
}

// p95 of `window` over `steady`'s; 0 when either has no requests.
double P95Ratio(const Phase& window, const Phase& steady) {
  if (window.latency.count == 0 || steady.latency.count == 0 || steady.latency.p95 <= 0) return 0;
  return window.latency.p95 / steady.latency.p95;
}

// A table of phases or seconds, with each one's p95 over the steady p95 (text only) and, for the
// seconds, whether it is one of the scale-out ("*" in the text).
ReportTable LbTable(const LbResult& result, const std::string& label, bool seconds) {
  const Phase* steady = result.phases.empty() ? nullptr : &result.phases[0];
  std::vector<ReportColumn> extra = {{"p95_steady", "p95/st"}};
  if (seconds) extra.push_back({"scale_out", ""});
  return PhaseTable(
      label, seconds ? result.seconds : result.phases, std::move(extra),
      [&result, steady, seconds](size_t i, const Phase& phase, Report& row) {
        const double ratio = steady == nullptr ? 0 : P95Ratio(phase, *steady);
        row.Set("p95_steady", TextOnly(ratio > 0 ? absl::StrFormat("%.2fx", ratio) : "-"));
        if (seconds) row.Set("scale_out", Bool(result.IsScaleOutSecond(i), "*", ""));
      },
      seconds ? "errors (* = a second of the scale-out)" : "errors");
}

// A second's index, or -1 for none ("-" in the text).
ReportValue SecondIndex(int second) {
  return JsonWithText(second, second < 0 ? "-" : std::to_string(second));
}

}  // namespace

// --- the pure pieces ---------------------------------------------------------------------------

absl::StatusOr<std::vector<std::string>> ParseCpuLists(absl::string_view text) {
  std::vector<std::string> lists;
  if (absl::StripAsciiWhitespace(text).empty()) return lists;
  for (absl::string_view entry : absl::StrSplit(text, ',')) {
    entry = absl::StripAsciiWhitespace(entry);
    const std::vector<absl::string_view> ends = absl::StrSplit(entry, '-');
    int first = 0, last = 0;
    const bool ok = (ends.size() == 1 && absl::SimpleAtoi(ends[0], &first) && first >= 0) ||
                    (ends.size() == 2 && absl::SimpleAtoi(ends[0], &first) &&
                     absl::SimpleAtoi(ends[1], &last) && first >= 0 && last >= first);
    if (!ok) {
      return absl::InvalidArgumentError(
          absl::StrCat("--cpus: '", entry,
                       "' is not a CPU number or a range such as 2-3 (entries are "
                       "separated by commas, one per replica)"));
    }
    lists.emplace_back(entry);
  }
  return lists;
}

bool LbResult::IsScaleOutSecond(size_t second) const {
  return std::find(scale_out_seconds.begin(), scale_out_seconds.end(), second) !=
         scale_out_seconds.end();
}

int64_t LbResult::errors() const { return ErrorTotal(seconds); }

double LbResult::WorstRatio(const std::vector<size_t>& which, int* second) const {
  *second = -1;
  if (phases.empty() || phases[0].latency.count == 0) return 0;
  double worst = 0;
  for (const size_t s : which) {
    const double ratio = P95Ratio(seconds[s], phases[0]);
    if (*second < 0 || ratio > worst) {
      worst = ratio;
      *second = static_cast<int>(s);
    }
  }
  return worst;
}

TimedEvents LbEvents(TimedEvents::Clock::time_point start) {
  return TimedEvents(
      {"scale_started", "scale_serving", "scale_joined", "green_started", "green_serving",
       "green_checked", "switched", "old_worker_gone", "blue_stopped", "end"},
      start);
}

std::vector<PhaseSpan> LbPhaseSpans(const TimedEvents& events, double skip_ms) {
  return ConsecutiveSpans({{"steady", skip_ms},
                           {"new replicas warm", events.Ms("scale_started")},
                           {"all replicas", events.Ms("scale_joined")},
                           {"green warms", events.Ms("green_started")},
                           {"blue drains", events.Ms("switched")},
                           {"green alone", events.Ms("blue_stopped")}},
                          events.MsOr("end", 0));
}

void CountLbRequests(const std::vector<RequestRecord>& records, double skip_ms, LbResult* result) {
  const TimedEvents& events = result->events;
  const double end_ms = events.MsOr("end", 0);
  result->phases = CountPhases(records, LbPhaseSpans(events, skip_ms));
  result->seconds = CountPhases(records, WholeSeconds(end_ms));
  result->scale_out_seconds.clear();
  result->joined_seconds.clear();
  const std::optional<double> scale_started = events.Ms("scale_started");
  if (!scale_started) return;
  const double scale_end = events.MsOr("green_started", end_ms);
  const std::optional<double> joined = events.Ms("scale_joined");
  for (size_t s = 0; s < result->seconds.size(); ++s) {
    const Phase& second = result->seconds[s];
    // Seconds that the blue/green switch's start shares belong to it, not to the scale-out.
    if (second.to_ms > *scale_started && second.to_ms <= scale_end) {
      result->scale_out_seconds.push_back(s);
      if (joined && second.from_ms >= *joined) result->joined_seconds.push_back(s);
    }
  }
}

Report LbReport(const LbOptions& options, const LbResult& result) {
  Report report;
  report.Set("command", String("lb"))
      .Set("model", String(options.model))
      .Set("nginx", String(result.nginx_version))
      .Set("rate", Number(options.rate))
      .Set("arrival", String(ArrivalName(options.arrival)))
      .Set("replicas", Integer(options.replicas))
      .Set("cpus",
           JsonWithText(options.cpus, options.cpus.empty() ? "none (unpinned)"
                                                           : absl::StrJoin(options.cpus, " | ")))
      .Set("bench_cpus", String(OwnCpus()))
      .Set("workers", Integer(options.workers))
      .Set("server_args",
           JsonWithText(
               absl::StrJoin(options.server_args, " "),
               options.server_args.empty() ? "(none)" : absl::StrJoin(options.server_args, " ")))
      .Set("steady_s", Number(options.steady_s))
      .Set("after_s", Number(options.after_s))
      .Set("tail_s", Number(options.tail_s))
      .Set("blue_green", Bool(options.blue_green, ", then blue/green", ""));
  result.events.AddTo(report, "events_ms");
  std::vector<double> check_p50_ms;
  for (const double p50 : result.check_p50_ms) check_p50_ms.push_back(RoundToThousandths(p50));
  report
      .Set("check_p50_ms",
           JsonWithText(check_p50_ms, absl::StrJoin(result.check_p50_ms, " / ",
                                                    [](std::string* out, double p50) {
                                                      absl::StrAppendFormat(out, "%.2f", p50);
                                                    })))
      .Set("blue_exits", JsonWithText(result.blue_exits, absl::StrJoin(result.blue_exits, ", ")));
  int worst = -1;
  report.Set("worst_scale_out_p95_ratio", Number(result.WorstScaleOutRatio(&worst)))
      .Set("worst_scale_out_second", SecondIndex(worst));
  report.Set("worst_joined_p95_ratio", Number(result.WorstRatio(result.joined_seconds, &worst)))
      .Set("worst_joined_second", SecondIndex(worst))
      .Set("errors", Integer(result.errors()));
  report.Line(
      "kiln-bench lb: {model} through {nginx} at {rate} req/s ({arrival}), 1 -> {replicas} "
      "replicas{blue_green}; replicas pinned to CPUs: {cpus}; kiln-bench and nginx on CPUs "
      "{bench_cpus}; replica flags: {server_args}");
  report.Line(absl::StrCat(
      "events (since the load began): new replicas started {events_ms.scale_started}, SERVING "
      "{events_ms.scale_serving}, in nginx {events_ms.scale_joined}",
      options.blue_green
          ? "; green started {events_ms.green_started}, SERVING {events_ms.green_serving}, "
            "checked {events_ms.green_checked} (p50 {check_p50_ms} ms), switched "
            "{events_ms.switched}, nginx's old worker gone {events_ms.old_worker_gone}, blue "
            "stopped {events_ms.blue_stopped} ({blue_exits})"
          : "",
      "; end {events_ms.end}"));
  report.Table("phases", LbTable(result, "phase", /*seconds=*/false));
  report.Table("seconds", LbTable(result, "second", /*seconds=*/true));
  report.Line(
      "worst second of the scale-out: p95 / steady p95 = {worst_scale_out_p95_ratio}x (second "
      "{worst_scale_out_second}; target <= 1.1); of those after the join: "
      "{worst_joined_p95_ratio}x (second {worst_joined_second}); failed requests: {errors} "
      "(target: none)");
  return report;
}

std::optional<int> ParseLbArgs(const std::vector<std::string>& args, LbOptions* options,
                               std::ostream& out, std::ostream& err) {
  LbOptions parsed;
  std::string nginx = "nginx", arrival = "poisson", cpus, warmup = "on";
  ScenarioFlags flags(kLb, &parsed);
  flags.flags().SetHelp("model_repository", "the repository every replica serves");
  flags.flags().SetHelp("workers",
                        "every replica's --workers, 0..256; 0 = the config's count, or as many "
                        "as its CPUs allow");
  flags.flags().SetHelp("server_args",
                        "more flags for every replica, space-separated --name=value words");
  flags.flags().AddString("nginx", &nginx,
                          "the nginx executable (a name is looked up in $PATH, then /usr/sbin)");
  flags.AddRate(&parsed, "the load through nginx: requests per second, > 0");
  flags.flags().AddString("arrival", &arrival, "the load's arrivals: poisson or constant");
  flags.flags().AddInt("replicas", &parsed.replicas, "replicas after the scale-out, 2..16");
  flags.flags().AddString("cpus", &cpus,
                          "replica i runs on CPU list i of these (taskset; cycled), e.g. 0,1,1; "
                          "empty: unpinned");
  flags.flags().AddDouble("steady_s", &parsed.steady_s,
                          "seconds of load on one replica before the scale-out");
  flags.flags().AddDouble("after_s", &parsed.after_s,
                          "seconds of load on every replica after they joined, before "
                          "blue/green");
  flags.flags().AddDouble("tail_s", &parsed.tail_s,
                          "seconds of load on green alone after blue is gone");
  flags.AddSkip(&parsed, "the load's first seconds, left out of the steady phase");
  flags.flags().AddString("warmup", &warmup,
                          "every replica's --warmup: on, or off for the baseline without kiln's "
                          "warmup");
  flags.flags().AddBool("blue_green", &parsed.blue_green, "end with a blue/green switch");
  flags.flags().AddInt("check_requests", &parsed.check_requests,
                       "calls sent to each green replica directly before the switch, all to be "
                       "OK");
  flags.flags().AddString("csv", &parsed.csv_path,
                          "also write one row per request of the load to this file (times since "
                          "the load began, as `kiln-bench load --csv`)");
  flags.AddLoadFlags(&parsed);
  flags.AddResultFlags(
      "keep the replicas' and nginx's logs here (lb-<replica>.log, nginx/); default: a "
      "temporary directory kept only when the run fails");
  flags.flags().SetHelp("timeout_s", "deadline for each replica's SERVING, in seconds");
  std::optional<int> exit = flags.Parse(args, out, err, [&]() -> std::string {
    parsed.nginx = FindNginx(nginx, std::getenv("PATH") == nullptr ? "" : std::getenv("PATH"));
    if (parsed.nginx.empty()) {
      return absl::StrCat("--nginx: no executable '", nginx,
                          "' (install Debian's nginx: scripts/setup.sh does)");
    }
    std::optional<Arrival> parsed_arrival = ParseArrival(arrival);
    if (!parsed_arrival) return "--arrival must be poisson or constant";
    parsed.arrival = *parsed_arrival;
    absl::StatusOr<std::vector<std::string>> cpu_lists = ParseCpuLists(cpus);
    if (!cpu_lists.ok()) return std::string(cpu_lists.status().message());
    parsed.cpus = *std::move(cpu_lists);
    if (warmup != "on" && warmup != "off") return "--warmup must be on or off";
    // After the flags ServerArgv sets, so it wins.
    if (warmup == "off") parsed.server_args.push_back("--warmup=off");
    if (parsed.replicas < 2 || parsed.replicas > 16) return "--replicas must be 2..16";
    if (parsed.skip_s >= parsed.steady_s) {
      return "need --skip_s < --steady_s (the steady phase must keep some requests)";
    }
    if (parsed.check_requests < 1 || parsed.check_requests > 100000) {
      return "--check_requests must be 1..100000";
    }
    if (!parsed.cpus.empty() && !IsExecutableFile(kTaskset)) {
      return absl::StrCat("--cpus needs ", kTaskset, " (Debian's util-linux)");
    }
    return "";
  });
  if (!exit) *options = std::move(parsed);
  return exit;
}

namespace {

void Say(const std::string& what) { std::cerr << "kiln-bench lb: " << what << std::endl; }

absl::Status RunLbScenario(const LbOptions& options, RunFiles& files, LbResult* result);

// The scenario, on a repository of --model alone.
absl::StatusOr<ScenarioOutcome> RunLb(const LbOptions& options, RunFiles& files) {
  LbResult result;
  ASSIGN_OR_RETURN(result.nginx_version, NginxVersion(options.nginx));
  LbOptions alone = options;
  ASSIGN_OR_RETURN(alone.model_repository,
                   ModelAloneRepository(options.model_repository, options.model, files.work_dir()));
  RETURN_IF_ERROR(RunLbScenario(alone, files, &result));
  return ScenarioOutcome(LbReport(options, result));
}

// Runs the replicas, nginx and the load; `result` gets what happened.
absl::Status RunLbScenario(const LbOptions& options, RunFiles& files, LbResult* result) {
  Say(absl::StrCat("starting replica blue1 of ", options.model));
  ASSIGN_OR_RETURN(std::vector<Replica> blue, StartReplicas(options, "blue", 0, 1, files));
  ASSIGN_OR_RETURN(const int lb_port, FreeLoopbackPort());
  const std::string nginx_dir = files.log_dir() + "/nginx";
  files.Log("nginx/error.log", "nginx");
  std::error_code error;
  std::filesystem::create_directories(nginx_dir, error);
  if (error) return absl::InternalError(absl::StrCat(nginx_dir, ": ", error.message()));
  ASSIGN_OR_RETURN(std::unique_ptr<NginxBalancer> nginx,
                   NginxBalancer::Start(options.nginx, nginx_dir, lb_port, Ports(blue)));
  Say(absl::StrCat(result->nginx_version, " listening on 127.0.0.1:", lb_port));

  const std::string lb_address = absl::StrCat("127.0.0.1:", lb_port);
  ASSIGN_OR_RETURN(const std::shared_ptr<grpc::Channel> channel, ConnectChannel(lb_address));
  const std::unique_ptr<inference::GRPCInferenceService::Stub> stub =
      inference::GRPCInferenceService::NewStub(channel);
  ASSIGN_OR_RETURN(
      const SyntheticRequest request,
      FetchLoadRequest(*stub, options.model, options.batch, options.seed, kRequestTimeoutMs));

  // The load's length is bounded by every step's deadline; it ends when the steps are done.
  const double bound_s =
      options.steady_s + options.after_s + options.tail_s + 2.0 * options.timeout_s + 120;
  LoadOptions load = PoissonLoad(options.rate, bound_s, options.seed, kRequestTimeoutMs);
  load.arrival = options.arrival;
  std::atomic<bool> stop{false};
  load.stop = &stop;
  GrpcSender sender(stub.get(), &request.request, kRequestTimeoutMs);
  BackgroundLoad background(load, [&sender](DoneFn done) { sender.Send(std::move(done)); });
  result->events = LbEvents(background.start());
  TimedEvents& events = result->events;

  // Every step; the first failure ends the load early and is returned after it.
  const absl::Status steps = [&]() -> absl::Status {
    std::this_thread::sleep_until(events.start() + Seconds(options.steady_s));
    Say(absl::StrCat("scale-out: starting ", options.replicas - 1, " more replicas"));
    events.Mark("scale_started");
    ASSIGN_OR_RETURN(std::vector<Replica> added,
                     StartReplicas(options, "blue", 1, options.replicas - 1, files));
    events.Mark("scale_serving");
    for (Replica& replica : added) blue.push_back(std::move(replica));
    RETURN_IF_ERROR(nginx->Reload(Ports(blue), kNginxReloadTimeout).status());
    events.Mark("scale_joined");
    Say(absl::StrCat("scale-out: ", blue.size(), " replicas in nginx's upstream"));
    std::this_thread::sleep_for(Seconds(options.after_s));
    if (!options.blue_green) return absl::OkStatus();

    Say(absl::StrCat("blue/green: starting ", options.replicas, " green replicas"));
    events.Mark("green_started");
    ASSIGN_OR_RETURN(std::vector<Replica> green,
                     StartReplicas(options, "green", 0, options.replicas, files));
    events.Mark("green_serving");
    for (const Replica& replica : green) {
      ASSIGN_OR_RETURN(const double p50, CheckReplica(replica, request, options.check_requests));
      result->check_p50_ms.push_back(p50);
    }
    events.Mark("green_checked");
    ASSIGN_OR_RETURN(const std::vector<pid_t> old_workers,
                     nginx->Reload(Ports(green), kNginxReloadTimeout));
    events.Mark("switched");
    Say("blue/green: nginx switched to green; draining blue");
    if (!NginxBalancer::WaitExited(old_workers, kOldWorkerTimeout)) {
      return absl::DeadlineExceededError("nginx's worker of the blue configuration did not exit");
    }
    events.Mark("old_worker_gone");
    for (Replica& replica : blue) {
      ASSIGN_OR_RETURN(const LaunchedServer::StopResult stopped, replica.server->Stop(kStopGrace));
      result->blue_exits.push_back(stopped.killed ? "killed after the grace period"
                                                  : stopped.exit.Describe());
    }
    blue = std::move(green);  // what serves now, stopped at the end
    events.Mark("blue_stopped");
    Say("blue/green: blue drained and stopped");
    std::this_thread::sleep_for(Seconds(options.tail_s));
    return absl::OkStatus();
  }();
  events.Mark("end");
  stop = true;
  const LoadResult loaded = background.Join();
  Say("load done; stopping the replicas and nginx");
  CountLbRequests(loaded.records, options.skip_s * 1000, result);
  if (!options.csv_path.empty()) {
    std::ostringstream csv;
    RunStats(RunInfo{options.model, LoopMode::kOpen, options.arrival, options.rate, 1},
             loaded.records, *events.Ms("end"))
        .WriteCsv(csv);
    if (!WriteResultFile("lb", options.csv_path, csv.str(), std::cerr)) {
      return absl::InternalError(absl::StrCat("writing --csv ", options.csv_path));
    }
  }
  RETURN_IF_ERROR(steps);
  for (Replica& replica : blue) RETURN_IF_ERROR(replica.server->Stop(kStopGrace).status());
  return nginx->Stop();
}

}  // namespace

int RunLbCommand(const std::vector<std::string>& args) {
  LbOptions options;
  if (std::optional<int> exit = ParseLbArgs(args, &options, std::cout, std::cerr)) return *exit;
  return RunScenario(kLb, options, [&](RunFiles& files) { return RunLb(options, files); });
}

}  // namespace kiln::bench
