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

#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "bench/args.h"
#include "bench/nginx_balancer.h"
#include "bench/oip_client.h"
#include "bench/server_launcher.h"
#include "common/status_macros.h"
#include "common/status_util.h"

namespace kiln::bench {
namespace {

using Clock = std::chrono::steady_clock;

constexpr std::chrono::seconds kStopGrace(30);
constexpr std::chrono::seconds kNginxReloadTimeout(10);
// nginx's worker_shutdown_timeout (30 s) bounds an old worker's life; a little more than that.
constexpr std::chrono::seconds kOldWorkerTimeout(35);
constexpr int64_t kRequestTimeoutMs = 10000;
constexpr char kTaskset[] = "/usr/bin/taskset";

constexpr char kDescription[] =
    "kiln replicas behind a real gRPC load balancer (nginx, grpc_pass, keepalive, passive\n"
    "failover), the seed's scale-out and blue/green scenario on one machine. An open-loop load\n"
    "of --rate requests per second goes through nginx to one replica for --steady_s; then\n"
    "--replicas - 1 more replicas start, each joining nginx's upstream (a graceful reload) only\n"
    "once its health says SERVING; --after_s later, a blue/green switch: as many green replicas\n"
    "start, pass health and --check_requests sent to each directly, nginx is switched to them,\n"
    "its old worker finishes its calls, and every blue replica is drained by SIGTERM; the load\n"
    "ends --tail_s after. Every replica serves --model alone. --cpus pins replica i to CPU list i "
    "(taskset), so that starting\n"
    "replicas cannot take the serving one's CPU (run kiln-bench itself under taskset to place\n"
    "it and nginx). Reports p50/p95/p99 and the errors per phase and per second (latency from\n"
    "each request's scheduled time, OK requests only), the worst second of the scale-out's p95\n"
    "over the steady p95 (kiln's target: <= 1.1), and the failed requests (target: none).\n"
    "--warmup=off shows the same without kiln's warmup.\n"
    "Exit status: 0 the scenario ran (the numbers say whether requests failed); 1 a replica,\n"
    "nginx or a step failed (the reason and the logs' tails on stderr); 2 bad flags.";

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

std::string LogPath(const std::string& log_dir, const std::string& name) {
  return absl::StrCat(log_dir, "/lb-", name, ".log");
}

// Starts `count` replicas named `prefix`1.. (replica i of them pinned to cpus[i]) and waits until
// each says SERVING; they warm side by side.
absl::StatusOr<std::vector<Replica>> StartReplicas(const LbOptions& options,
                                                   const std::string& prefix, int64_t first,
                                                   int64_t count, const std::string& lock_dir,
                                                   const std::string& log_dir) {
  std::vector<Replica> replicas;
  for (int64_t i = first; i < first + count; ++i) {
    std::vector<std::string> launcher;
    if (!options.cpus.empty()) {
      launcher = {kTaskset, "--cpu-list", options.cpus[i % options.cpus.size()]};
    }
    const std::string name = absl::StrCat(prefix, i + 1);
    ASSIGN_OR_RETURN(
        StartedServer started,
        StartOnFreePort(options.server, options.model_repository, options.workers,
                        options.server_args, lock_dir, LogPath(log_dir, name), launcher));
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
  const std::unique_ptr<inference::GRPCInferenceService::Stub> stub =
      inference::GRPCInferenceService::NewStub(
          CreateChannel(absl::StrCat("127.0.0.1:", replica.port)));
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

std::string Ms(double ms) { return ms < 0 ? "-" : absl::StrFormat("%.2f s", ms / 1000); }

nlohmann::ordered_json EventMs(double ms) {
  return ms < 0 ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(RoundToThousandths(ms));
}

nlohmann::ordered_json WindowJson(const LoadWindow& window) {
  nlohmann::ordered_json json =
      PhaseLatencyJson(window.span.name, window.span.from_ms, window.span.to_ms, window.latency);
  json["errors"] = ErrorsJson(window.errors);
  return json;
}

// p95 of `window` over `steady`'s; 0 when either has no requests.
double P95Ratio(const LoadWindow& window, const LoadWindow& steady) {
  if (window.latency.count == 0 || steady.latency.count == 0 || steady.latency.p95 <= 0) return 0;
  return window.latency.p95 / steady.latency.p95;
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

int64_t LbResult::errors() const {
  int64_t total = 0;
  for (const LoadWindow& second : seconds) total += second.error_count();
  return total;
}

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

std::vector<WindowSpan> LbPhaseSpans(const LbEvents& events, double skip_ms) {
  // Each phase runs from its event to the next event that happened (or the end).
  const std::vector<std::pair<std::string, double>> starts = {
      {"steady", skip_ms},
      {"new replicas warm", events.scale_started_ms},
      {"all replicas", events.scale_joined_ms},
      {"green warms", events.green_started_ms},
      {"blue drains", events.switched_ms},
      {"green alone", events.blue_stopped_ms},
  };
  std::vector<WindowSpan> spans;
  for (size_t i = 0; i < starts.size(); ++i) {
    if (i > 0 && starts[i].second < 0) continue;
    double to = events.end_ms;
    for (size_t j = i + 1; j < starts.size(); ++j) {
      if (starts[j].second >= 0) {
        to = starts[j].second;
        break;
      }
    }
    spans.push_back({starts[i].first, starts[i].second, std::max(to, starts[i].second)});
  }
  return spans;
}

void CountLbRequests(const std::vector<RequestRecord>& records, double skip_ms, LbResult* result) {
  const LbEvents& events = result->events;
  result->phases = CountInWindows(records, LbPhaseSpans(events, skip_ms));
  result->seconds = CountInWindows(records, WholeSeconds(events.end_ms));
  result->scale_out_seconds.clear();
  result->joined_seconds.clear();
  if (events.scale_started_ms < 0) return;
  const double scale_end = events.green_started_ms >= 0 ? events.green_started_ms : events.end_ms;
  for (size_t s = 0; s < result->seconds.size(); ++s) {
    const WindowSpan& span = result->seconds[s].span;
    // Seconds that the blue/green switch's start shares belong to it, not to the scale-out.
    if (span.to_ms > events.scale_started_ms && span.to_ms <= scale_end) {
      result->scale_out_seconds.push_back(s);
      if (events.scale_joined_ms >= 0 && span.from_ms >= events.scale_joined_ms) {
        result->joined_seconds.push_back(s);
      }
    }
  }
}

std::string FormatLb(const LbOptions& options, const LbResult& result) {
  const LbEvents& e = result.events;
  std::string out = absl::StrFormat(
      "kiln-bench lb: %s through %s at %.2f req/s (%s), 1 -> %d replicas%s; replicas pinned to "
      "CPUs: %s; kiln-bench and nginx on CPUs %s; replica flags: %s\n",
      options.model, result.nginx_version, options.rate, ArrivalName(options.arrival),
      options.replicas, options.blue_green ? ", then blue/green" : "",
      options.cpus.empty() ? "none (unpinned)" : absl::StrJoin(options.cpus, " | "), OwnCpus(),
      options.server_args.empty() ? "(none)" : absl::StrJoin(options.server_args, " "));
  absl::StrAppend(
      &out, absl::StrFormat("events (since the load began): new replicas started %s, SERVING %s, "
                            "in nginx %s",
                            Ms(e.scale_started_ms), Ms(e.scale_serving_ms), Ms(e.scale_joined_ms)));
  if (options.blue_green) {
    absl::StrAppend(
        &out,
        absl::StrFormat(
            "; green started %s, SERVING %s, checked %s (p50 %s ms), switched "
            "%s, nginx's old worker gone %s, blue stopped %s (%s)",
            Ms(e.green_started_ms), Ms(e.green_serving_ms), Ms(e.green_checked_ms),
            absl::StrJoin(result.check_p50_ms, " / ",
                          [](std::string* o, double v) { absl::StrAppendFormat(o, "%.2f", v); }),
            Ms(e.switched_ms), Ms(e.old_worker_gone_ms), Ms(e.blue_stopped_ms),
            absl::StrJoin(result.blue_exits, ", ")));
  }
  absl::StrAppend(&out, absl::StrFormat("; end %s\n", Ms(e.end_ms)));
  const LoadWindow* steady = result.phases.empty() ? nullptr : &result.phases[0];
  auto line = [&](const LoadWindow& window, const std::string& mark) {
    absl::StrAppendFormat(
        &out, "  %-18s %s  %7s  %-2s %s\n", window.span.name,
        PhaseLatencyColumns(window.span.from_ms, window.span.to_ms, window.latency),
        steady != nullptr && P95Ratio(window, *steady) > 0
            ? absl::StrFormat("%.2fx", P95Ratio(window, *steady))
            : "-",
        mark, ErrorsText(window.errors));
  };
  absl::StrAppendFormat(&out, "  %-18s %s  %7s  %-2s %s\n", "phase", PhaseLatencyHeader(), "p95/st",
                        "", "errors");
  for (const LoadWindow& phase : result.phases) line(phase, "");
  absl::StrAppendFormat(&out, "  %-18s %s  %7s  %-2s %s\n", "second", PhaseLatencyHeader(),
                        "p95/st", "", "errors (* = a second of the scale-out)");
  for (size_t s = 0; s < result.seconds.size(); ++s) {
    line(result.seconds[s], result.IsScaleOutSecond(s) ? "*" : "");
  }
  int worst = -1, worst_joined = -1;
  const double ratio = result.WorstScaleOutRatio(&worst);
  const double joined = result.WorstRatio(result.joined_seconds, &worst_joined);
  absl::StrAppendFormat(&out,
                        "worst second of the scale-out: p95 / steady p95 = %.2fx (second %s; "
                        "target <= 1.1); of those after the join: %.2fx (second %s); failed "
                        "requests: %d (target: none)\n",
                        ratio, worst < 0 ? "-" : std::to_string(worst), joined,
                        worst_joined < 0 ? "-" : std::to_string(worst_joined), result.errors());
  return out;
}

std::string LbJson(const LbOptions& options, const LbResult& result) {
  nlohmann::ordered_json doc;
  doc["command"] = "lb";
  doc["model"] = options.model;
  doc["nginx"] = result.nginx_version;
  doc["rate"] = options.rate;
  doc["arrival"] = ArrivalName(options.arrival);
  doc["replicas"] = options.replicas;
  doc["cpus"] = options.cpus;
  doc["bench_cpus"] = OwnCpus();
  doc["workers"] = options.workers;
  doc["server_args"] = absl::StrJoin(options.server_args, " ");
  doc["steady_s"] = options.steady_s;
  doc["after_s"] = options.after_s;
  doc["tail_s"] = options.tail_s;
  doc["blue_green"] = options.blue_green;
  const LbEvents& e = result.events;
  doc["events_ms"] = {{"scale_started", EventMs(e.scale_started_ms)},
                      {"scale_serving", EventMs(e.scale_serving_ms)},
                      {"scale_joined", EventMs(e.scale_joined_ms)},
                      {"green_started", EventMs(e.green_started_ms)},
                      {"green_serving", EventMs(e.green_serving_ms)},
                      {"green_checked", EventMs(e.green_checked_ms)},
                      {"switched", EventMs(e.switched_ms)},
                      {"old_worker_gone", EventMs(e.old_worker_gone_ms)},
                      {"blue_stopped", EventMs(e.blue_stopped_ms)},
                      {"end", EventMs(e.end_ms)}};
  doc["check_p50_ms"] = result.check_p50_ms;
  doc["blue_exits"] = result.blue_exits;
  int worst = -1;
  doc["worst_scale_out_p95_ratio"] = RoundToThousandths(result.WorstScaleOutRatio(&worst));
  doc["worst_scale_out_second"] = worst;
  doc["worst_joined_p95_ratio"] =
      RoundToThousandths(result.WorstRatio(result.joined_seconds, &worst));
  doc["worst_joined_second"] = worst;
  doc["errors"] = result.errors();
  doc["phases"] = nlohmann::ordered_json::array();
  for (const LoadWindow& phase : result.phases) doc["phases"].push_back(WindowJson(phase));
  doc["seconds"] = nlohmann::ordered_json::array();
  for (size_t s = 0; s < result.seconds.size(); ++s) {
    nlohmann::ordered_json second = WindowJson(result.seconds[s]);
    second["scale_out"] = result.IsScaleOutSecond(s);
    doc["seconds"].push_back(std::move(second));
  }
  return doc.dump(2) + "\n";
}

std::optional<int> ParseLbArgs(const std::vector<std::string>& args, LbOptions* options,
                               std::ostream& out, std::ostream& err) {
  LbOptions parsed;
  std::string server, nginx = "nginx", server_args, rate = "20", arrival = "poisson", cpus;
  std::string steady = "10", after = "10", tail = "5", skip = "2", warmup = "on";
  FlagSet flags(
      "kiln-bench lb --model_repository=DIR --model=NAME [--rate=R] [--cpus=0,1,1] [flags]",
      kDescription,
      {"taskset -c 0 kiln-bench lb --model_repository=models --model=resnet18 --rate=20 "
       "--cpus=0,1,1",
       "kiln-bench lb --model_repository=models --model=resnet18 --cpus=0,1,1 --warmup=off "
       "--json=/tmp/lb-off.json"});
  flags.AddString("model_repository", &parsed.model_repository,
                  "the repository every replica "
                  "serves");
  flags.AddString("model", &parsed.model, "the model the load goes to");
  AddServerFlag(flags, &server);
  flags.AddString("nginx", &nginx,
                  "the nginx executable (a name is looked up in $PATH, then "
                  "/usr/sbin)");
  flags.AddInt("workers", &parsed.workers,
               "every replica's --workers, 0..256; 0 = the config's count, or as many as its "
               "CPUs allow");
  flags.AddString("server_args", &server_args,
                  "more flags for every replica, space-separated --name=value words");
  flags.AddString("rate", &rate, "the load through nginx: requests per second, > 0");
  flags.AddString("arrival", &arrival, "the load's arrivals: poisson or constant");
  flags.AddInt("replicas", &parsed.replicas, "replicas after the scale-out, 2..16");
  flags.AddString("cpus", &cpus,
                  "replica i runs on CPU list i of these (taskset; cycled), e.g. 0,1,1; empty: "
                  "unpinned");
  flags.AddString("steady_s", &steady, "seconds of load on one replica before the scale-out");
  flags.AddString("after_s", &after,
                  "seconds of load on every replica after they joined, before blue/green");
  flags.AddString("tail_s", &tail, "seconds of load on green alone after blue is gone");
  flags.AddString("skip_s", &skip, "the load's first seconds, left out of the steady phase");
  flags.AddString("warmup", &warmup,
                  "every replica's --warmup: on, or off for the baseline without kiln's warmup");
  flags.AddBool("blue_green", &parsed.blue_green, "end with a blue/green switch");
  flags.AddInt("check_requests", &parsed.check_requests,
               "calls sent to each green replica directly before the switch, all to be OK");
  flags.AddString("csv", &parsed.csv_path,
                  "also write one row per request of the load to this file (times since the "
                  "load began, as `kiln-bench load --csv`)");
  AddLoadRunFlags(flags, parsed,
                  "keep the replicas' and nginx's logs here (lb-<replica>.log, nginx/); default: "
                  "a temporary directory kept only when the run fails");
  if (std::optional<int> exit = ParseFlagsOrExit(&flags, "lb", args, out, err)) return *exit;
  auto problem = [&]() -> std::string {
    const std::string launch =
        ValidateLaunchFlags(parsed.model_repository, parsed.model, server, parsed.json_path,
                            parsed.log_dir, &parsed.server);
    if (!launch.empty()) return launch;
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
    for (const std::string& reason :
         {ValidateWorkersAndServerArgs(parsed.workers, server_args, &parsed.server_args),
          ParsePositiveFlag("rate", rate, &parsed.rate),
          ParsePositiveFlag("steady_s", steady, &parsed.steady_s),
          ParsePositiveFlag("after_s", after, &parsed.after_s),
          ParsePositiveFlag("tail_s", tail, &parsed.tail_s), ParseSkipFlag(skip, &parsed.skip_s)}) {
      if (!reason.empty()) return reason;
    }
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
    return ValidateBatchSeedTimeout(parsed.batch, parsed.seed, parsed.timeout_s);
  }();
  if (!problem.empty()) {
    err << "kiln-bench lb: " << problem << "\nrun 'kiln-bench lb --help' for its flags\n";
    return kExitUsage;
  }
  *options = std::move(parsed);
  return std::nullopt;
}

namespace {

void Say(const std::string& what) { std::cerr << "kiln-bench lb: " << what << std::endl; }

absl::Status RunLbScenario(const LbOptions& options, const std::string& work_dir,
                           const std::string& log_dir, LbResult* result);

// The scenario, on a repository of --model alone. `result` gets what happened even when a step
// fails part-way.
absl::Status RunLb(const LbOptions& options, const std::string& work_dir,
                   const std::string& log_dir, LbResult* result) {
  ASSIGN_OR_RETURN(result->nginx_version, NginxVersion(options.nginx));
  LbOptions alone = options;
  ASSIGN_OR_RETURN(alone.model_repository,
                   ModelAloneRepository(options.model_repository, options.model, work_dir));
  return RunLbScenario(alone, work_dir, log_dir, result);
}

absl::Status RunLbScenario(const LbOptions& options, const std::string& work_dir,
                           const std::string& log_dir, LbResult* result) {
  Say(absl::StrCat("starting replica blue1 of ", options.model));
  ASSIGN_OR_RETURN(std::vector<Replica> blue,
                   StartReplicas(options, "blue", 0, 1, work_dir, log_dir));
  ASSIGN_OR_RETURN(const int lb_port, FreeLoopbackPort());
  const std::string nginx_dir = log_dir + "/nginx";
  std::error_code error;
  std::filesystem::create_directories(nginx_dir, error);
  if (error) return absl::InternalError(absl::StrCat(nginx_dir, ": ", error.message()));
  ASSIGN_OR_RETURN(std::unique_ptr<NginxBalancer> nginx,
                   NginxBalancer::Start(options.nginx, nginx_dir, lb_port, Ports(blue)));
  Say(absl::StrCat(result->nginx_version, " listening on 127.0.0.1:", lb_port));

  const std::string lb_address = absl::StrCat("127.0.0.1:", lb_port);
  const std::unique_ptr<inference::GRPCInferenceService::Stub> stub =
      inference::GRPCInferenceService::NewStub(CreateChannel(lb_address));
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
  const Clock::time_point start = background.start();
  const auto now_ms = [start] { return MsBetween(start, Clock::now()); };
  LbEvents& events = result->events;

  // Every step; the first failure ends the load early and is returned after it.
  const absl::Status steps = [&]() -> absl::Status {
    std::this_thread::sleep_until(start + Seconds(options.steady_s));
    Say(absl::StrCat("scale-out: starting ", options.replicas - 1, " more replicas"));
    events.scale_started_ms = now_ms();
    ASSIGN_OR_RETURN(std::vector<Replica> added,
                     StartReplicas(options, "blue", 1, options.replicas - 1, work_dir, log_dir));
    events.scale_serving_ms = now_ms();
    for (Replica& replica : added) blue.push_back(std::move(replica));
    RETURN_IF_ERROR(nginx->Reload(Ports(blue), kNginxReloadTimeout).status());
    events.scale_joined_ms = now_ms();
    Say(absl::StrCat("scale-out: ", blue.size(), " replicas in nginx's upstream"));
    std::this_thread::sleep_for(Seconds(options.after_s));
    if (!options.blue_green) return absl::OkStatus();

    Say(absl::StrCat("blue/green: starting ", options.replicas, " green replicas"));
    events.green_started_ms = now_ms();
    ASSIGN_OR_RETURN(std::vector<Replica> green,
                     StartReplicas(options, "green", 0, options.replicas, work_dir, log_dir));
    events.green_serving_ms = now_ms();
    for (const Replica& replica : green) {
      ASSIGN_OR_RETURN(const double p50, CheckReplica(replica, request, options.check_requests));
      result->check_p50_ms.push_back(p50);
    }
    events.green_checked_ms = now_ms();
    ASSIGN_OR_RETURN(const std::vector<pid_t> old_workers,
                     nginx->Reload(Ports(green), kNginxReloadTimeout));
    events.switched_ms = now_ms();
    Say("blue/green: nginx switched to green; draining blue");
    if (!NginxBalancer::WaitExited(old_workers, kOldWorkerTimeout)) {
      return absl::DeadlineExceededError("nginx's worker of the blue configuration did not exit");
    }
    events.old_worker_gone_ms = now_ms();
    for (Replica& replica : blue) {
      ASSIGN_OR_RETURN(const LaunchedServer::StopResult stopped, replica.server->Stop(kStopGrace));
      result->blue_exits.push_back(stopped.killed ? "killed after the grace period"
                                                  : stopped.exit.Describe());
    }
    blue = std::move(green);  // what serves now, stopped at the end
    events.blue_stopped_ms = now_ms();
    Say("blue/green: blue drained and stopped");
    std::this_thread::sleep_for(Seconds(options.tail_s));
    return absl::OkStatus();
  }();
  events.end_ms = now_ms();
  stop = true;
  const LoadResult loaded = background.Join();
  Say("load done; stopping the replicas and nginx");
  CountLbRequests(loaded.records, options.skip_s * 1000, result);
  if (!options.csv_path.empty()) {
    std::ostringstream csv;
    RunStats(RunInfo{options.model, LoopMode::kOpen, options.arrival, options.rate, 1},
             loaded.records, events.end_ms)
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
  const std::optional<std::string> work_dir = MakeRunDir("lb", std::cerr);
  if (!work_dir) return kExitFailure;
  const std::string log_dir = options.log_dir.empty() ? *work_dir : options.log_dir;
  LbResult result;
  const absl::Status status = RunLb(options, *work_dir, log_dir, &result);
  if (!status.ok()) {
    std::cerr << "kiln-bench lb: " << status.message() << "\n";
    std::error_code error;
    for (const auto& entry : std::filesystem::directory_iterator(log_dir, error)) {
      const std::string name = entry.path().filename().string();
      if (name.rfind("lb-", 0) != 0) continue;
      std::cerr << "--- " << entry.path().string() << " (last lines) ---\n"
                << FileTail(entry.path().string(), 6) << "\n";
    }
    std::cerr << "--- " << log_dir << "/nginx/error.log (last lines) ---\n"
              << FileTail(log_dir + "/nginx/error.log", 6) << "\nlogs kept in " << log_dir << "\n";
    return kExitFailure;
  }
  return FinishRun("lb", FormatLb(options, result), options.json_path, LbJson(options, result),
                   options.log_dir.empty() ? *work_dir : "");
}

}  // namespace kiln::bench
