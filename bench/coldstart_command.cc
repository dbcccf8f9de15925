#include "bench/coldstart_command.h"

#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "bench/args.h"
#include "bench/latency_stats.h"
#include "bench/oip_client.h"
#include "bench/scenario_flags.h"
#include "bench/scenario_load.h"
#include "bench/scenario_run.h"
#include "bench/server_launcher.h"
#include "common/status_macros.h"
#include "common/status_util.h"
#include "httplib.h"
#include "proto/grpc/health/v1/health.grpc.pb.h"
#include "proto/grpc_service.grpc.pb.h"

namespace kiln::bench {
namespace {

namespace fs = std::filesystem;
using grpc::health::v1::Health;
using Clock = std::chrono::steady_clock;

// The seed of the synthetic inputs (the same request in every run).
constexpr uint64_t kInputSeed = 0;

const Scenario kColdstart = {
    "coldstart",
    "--model_repository=DIR --model=NAME [--server=PATH | --naive_server=SCRIPT]\n"
    "           [--workers=N] [--warmup=on|off] [--share_weights=on|off]\n"
    "           [--server_args=\"--flag=v ...\"] [--cgroup=DIR]\n"
    "           [--repeat=3] [--steady_requests=50] [--pause_ms=50] [--batch=1] [--seq=16]\n"
    "           [--text=TEXT] [--timeout_s=300] [--json=FILE] [--log_dir=DIR]",
    "Starts kiln-server --repeat times, one run after the other, and measures each cold start:\n"
    "  ready_ms       fork of kiln-server -> grpc.health.v1 Watch(\"\") reports SERVING (the port\n"
    "                 opens only once the workers are warm; the Watch waits for it)\n"
    "  first_ms       the first ModelInfer, --pause_ms after SERVING (seeded random inputs at\n"
    "                 [--batch, dims] with every other -1 dim set to --seq; a text model, one\n"
    "                 with a BYTES input, gets text in that input alone, as with 'infer':\n"
    "                 --text, else a fixed English sample of --seq words, in --batch rows)\n"
    "  steady_p50_ms  p50 and p95 of --steady_requests sequential ModelInfer after it (the\n"
    "  steady_p95_ms  same request)\n"
    "  ratio          first_ms / steady_p50_ms (1.0 = no cold-request penalty)\n"
    "  idle_p50_ms    p50 of 10 more requests, each sent after the same --pause_ms idle pause\n"
    "                 as the first one (which waits --pause_ms after SERVING): the warm\n"
    "                 server's latency after an idle pause (waking threads and refilling caches\n"
    "                 costs sub-ms requests dearly)\n"
    "  idle_ratio     first_ms / idle_p50_ms (1.0 = the first request costs what any request\n"
    "                 after the same pause costs: no cold-start penalty of its own)\n"
    "  first_cpu_ms   kiln only (0 for the naive server): the worker's CPU time for the first\n"
    "                 request (its kiln_timing response parameters)\n"
    "  idle_cpu_p50_ms  and the p50 of the after-pause requests'\n"
    "  cpu_idle_ratio first_cpu_ms / idle_cpu_p50_ms: near 1.0 while idle_ratio is higher\n"
    "                 means the first request waited (for a CPU, or on its way), not that it\n"
    "                 ran cold\n"
    "  pss_mb         total PSS of the server's process tree (master, zygote, workers), MiB\n"
    "  phases         kiln only: its startup phases, ms, scraped from its /metrics (a free\n"
    "                 --metrics_port per run) after the requests: each\n"
    "                 kiln_startup_phase_duration_seconds{phase} (summed over models) and\n"
    "                 kiln_startup_time_to_serving_seconds as time_to_serving\n"
    "--naive_server=SCRIPT starts the naive baseline instead of kiln-server, measured the same\n"
    "way: /usr/bin/python3 SCRIPT --model_repository=D --model=M --host=127.0.0.1 --port=P\n"
    "--workers=N --warmup=on|off (scripts/naive_server.py: loads the model in the parent, forks\n"
    "N workers, each runs 3 calls per warmed shape, then all serve; --workers >= 1, and no\n"
    "--server, --share_weights or --server_args with it).\n"
    "then stops the server with SIGTERM (SIGKILL of its process group after 30 s) and makes sure\n"
    "none of its processes is left. Each run gets a free port on 127.0.0.1 and a temporary\n"
    "--lock_dir; the server's output goes to a log file (in --log_dir, else in a temporary\n"
    "directory that is kept, and named, only when a run fails).\n"
    "Prints one line per run, then the median and spread (min..max) of each metric over the runs.\n"
    "--json=FILE also writes them: {\"server\" (kiln or naive), \"model\", \"workers\", "
    "\"warmup\",\n\"share_weights\", \"repeat\", \"cgroup\",\n"
    "\"runs\": [{\"ready_ms\", \"first_ms\", \"steady_p50_ms\", \"steady_p95_ms\", \"ratio\", "
    "\"idle_p50_ms\", \"idle_ratio\", \"first_cpu_ms\", \"idle_cpu_p50_ms\", \"cpu_idle_ratio\", "
    "\"pss_mb\", \"phases\": {name: ms}}],\n"
    "per metric {\"median\", \"min\", \"max\"}, and \"phases\": {name: median ms}}.\n"
    "Exit status: 0 every run succeeded, 1 a run failed (stops at the first; the reason and the\n"
    "log's tail on stderr), 2 bad flags.",
    {"kiln-bench coldstart --model_repository=models --model=mlp --workers=1 --repeat=2",
     "kiln-bench coldstart --model_repository=models --model=resnet50 --workers=2 "
     "--warmup=off --json=/tmp/cold.json",
     "kiln-bench coldstart --model_repository=models --model=resnet18 --share_weights=off "
     "--server_args=\"--drain_timeout_s=5 --v=1\" --log_dir=/tmp/kiln-logs",
     "kiln-bench coldstart --model_repository=models --model=textcls --batch=4 --seq=64",
     "kiln-bench coldstart --model_repository=models --model=mlp --workers=2 "
     "--naive_server=scripts/naive_server.py"},
    /*log_tail_lines=*/20};

struct Metric {
  const char* name;
  double ColdstartRun::*field;
};
constexpr Metric kMetrics[] = {
    {"ready_ms", &ColdstartRun::ready_ms},
    {"first_ms", &ColdstartRun::first_ms},
    {"steady_p50_ms", &ColdstartRun::steady_p50_ms},
    {"steady_p95_ms", &ColdstartRun::steady_p95_ms},
    {"ratio", &ColdstartRun::ratio},
    {"idle_p50_ms", &ColdstartRun::idle_p50_ms},
    {"idle_ratio", &ColdstartRun::idle_ratio},
    {"first_cpu_ms", &ColdstartRun::first_cpu_ms},
    {"idle_cpu_p50_ms", &ColdstartRun::idle_cpu_p50_ms},
    {"cpu_idle_ratio", &ColdstartRun::cpu_idle_ratio},
    {"pss_mb", &ColdstartRun::pss_mb},
};

// Requests after an idle pause like the first one's, for idle_p50_ms.
constexpr int kIdleRequests = 10;

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

const char* OnOff(bool value) { return value ? "on" : "off"; }

// "2 worker(s)", or what --workers=0 leaves to the server.
std::string WorkersText(int64_t workers) {
  return workers > 0 ? absl::StrCat(workers, " worker(s)") : "the server's worker count";
}

// Parses an on|off flag value.
std::optional<bool> ParseOnOff(const std::string& value) {
  if (value == "on") return true;
  if (value == "off") return false;
  return std::nullopt;
}

// Phases as JSON {name: ms} and as text "name 1.2 ms, name 3.4 ms" ("none" when empty).
ReportValue PhasesValue(const PhaseTimes& phases, const absl::FormatSpec<double>& format) {
  nlohmann::ordered_json json = nlohmann::ordered_json::object();
  std::vector<std::string> text;
  for (const auto& [name, ms] : phases) {
    const ReportValue value = Number(ms, format);
    json[name] = value.json;
    text.push_back(absl::StrCat(name, " ", value.text, " ms"));
  }
  return JsonWithText(std::move(json), text.empty() ? "none" : absl::StrJoin(text, ", "));
}

// One run's values: its entry of the JSON's "runs", and what its line shows.
Report RunValues(const ColdstartRun& run) {
  Report values;
  values.Set("ready_ms", Number(run.ready_ms, "%.1f"))
      .Set("first_ms", Number(run.first_ms))
      .Set("steady_p50_ms", Number(run.steady_p50_ms))
      .Set("steady_p95_ms", Number(run.steady_p95_ms))
      .Set("ratio", Number(run.ratio))
      .Set("idle_p50_ms", Number(run.idle_p50_ms))
      .Set("idle_ratio", Number(run.idle_ratio))
      .Set("first_cpu_ms", Number(run.first_cpu_ms))
      .Set("idle_cpu_p50_ms", Number(run.idle_cpu_p50_ms))
      .Set("cpu_idle_ratio", Number(run.cpu_idle_ratio))
      .Set("pss_mb", Number(run.pss_mb, "%.1f"))
      .Set("processes", TextOnly(absl::StrCat(run.processes)))
      .Set("phases", PhasesValue(run.phases_ms, "%.1f"));
  return values;
}

// One timed ModelInfer.
absl::StatusOr<double> TimedInfer(inference::GRPCInferenceService::Stub& stub,
                                  const inference::ModelInferRequest& request,
                                  inference::ModelInferResponse* response, int64_t timeout_s) {
  grpc::ClientContext context;
  SetTimeout(&context, timeout_s * 1000);
  const Clock::time_point start = Clock::now();
  const grpc::Status status = stub.ModelInfer(&context, request, response);
  const double latency = Ms(Clock::now() - start);
  if (!status.ok()) {
    return absl::UnavailableError(absl::StrCat("ModelInfer failed: ", FormatGrpcStatus(status)));
  }
  return latency;
}

// The measurements of one run against a started server (everything but stopping it).
absl::Status MeasureRun(const ColdstartOptions& options, const LaunchedServer& server, int port,
                        int metrics_port, ColdstartRun* run) {
  const std::string address = absl::StrCat("127.0.0.1:", port);
  const std::shared_ptr<grpc::Channel> channel = ServerChannel(address);
  const std::unique_ptr<Health::Stub> health = Health::NewStub(channel);
  const std::unique_ptr<inference::GRPCInferenceService::Stub> oip =
      inference::GRPCInferenceService::NewStub(channel);

  ASSIGN_OR_RETURN(
      const Clock::time_point serving,
      WaitServing(*health, server, server.started_at() + std::chrono::seconds(options.timeout_s),
                  absl::StrCat("--timeout_s=", options.timeout_s, " s")));
  run->ready_ms = Ms(serving - server.started_at());

  // ModelMetadata is answered by the master from the config: no worker sees it, so the
  // ModelInfer below is still the first thing the model serves.
  absl::StatusOr<inference::ModelMetadataResponse> metadata =
      FetchModelMetadata(*oip, options.model, "", options.timeout_s * 1000);
  if (!metadata.ok()) {
    return absl::UnavailableError(absl::StrCat(metadata.status().message(), ExitNote(server)));
  }
  SyntheticRequestOptions input_options;
  input_options.batch = options.batch;
  input_options.seq = options.seq;
  input_options.seed = kInputSeed;
  input_options.text = options.text;
  ASSIGN_OR_RETURN(SyntheticRequest request,
                   BuildSyntheticRequest(*metadata, options.model, "", input_options));
  // kiln returns each request's CPU time in its worker (the naive server knows no such parameter).
  if (options.naive_server.empty()) AskForTiming(&request.request);

  inference::ModelInferResponse response;
  const std::chrono::milliseconds pause(options.pause_ms);
  std::this_thread::sleep_until(serving + pause);
  absl::StatusOr<double> first = TimedInfer(*oip, request.request, &response, options.timeout_s);
  if (!first.ok()) {
    return absl::Status(first.status().code(),
                        absl::StrCat("first ", first.status().message(), ExitNote(server)));
  }
  run->first_ms = *first;
  run->first_cpu_ms = ReadTiming(response).compute_cpu_ms.value_or(0);
  if (absl::StatusOr<std::vector<Tensor>> outputs = DecodeInferResponse(response); !outputs.ok()) {
    return Annotate(outputs.status(), "first response");
  }

  std::vector<double> steady;
  steady.reserve(static_cast<size_t>(options.steady_requests));
  for (int64_t i = 0; i < options.steady_requests; ++i) {
    absl::StatusOr<double> latency =
        TimedInfer(*oip, request.request, &response, options.timeout_s);
    if (!latency.ok()) {
      return absl::Status(latency.status().code(),
                          absl::StrCat("steady request ", i + 1, ": ", latency.status().message(),
                                       ExitNote(server)));
    }
    steady.push_back(*latency);
  }
  const LatencySummary summary = Summarize(std::move(steady));
  run->steady_p50_ms = summary.p50;
  run->steady_p95_ms = summary.p95;
  run->ratio = summary.p50 > 0 ? run->first_ms / summary.p50 : 0;

  std::vector<double> idle;
  std::vector<double> idle_cpu;
  for (int i = 0; i < kIdleRequests; ++i) {
    std::this_thread::sleep_for(pause);
    absl::StatusOr<double> latency =
        TimedInfer(*oip, request.request, &response, options.timeout_s);
    if (!latency.ok()) {
      return absl::Status(
          latency.status().code(),
          absl::StrCat("idle request ", i + 1, ": ", latency.status().message(), ExitNote(server)));
    }
    idle.push_back(*latency);
    idle_cpu.push_back(ReadTiming(response).compute_cpu_ms.value_or(0));
  }
  run->idle_p50_ms = Summarize(std::move(idle)).p50;
  run->idle_ratio = run->idle_p50_ms > 0 ? run->first_ms / run->idle_p50_ms : 0;
  run->idle_cpu_p50_ms = Summarize(std::move(idle_cpu)).p50;
  run->cpu_idle_ratio = run->idle_cpu_p50_ms > 0 ? run->first_cpu_ms / run->idle_cpu_p50_ms : 0;

  absl::StatusOr<TreeMemory> memory = TreePss(server.pid());
  if (!memory.ok()) {
    return absl::Status(memory.status().code(),
                        absl::StrCat("memory: ", memory.status().message(), ExitNote(server)));
  }
  run->pss_mb = static_cast<double>(memory->pss_kb) / 1024.0;
  run->processes = memory->processes;

  if (metrics_port > 0) {
    // After the requests and the PSS: the scrape costs the server nothing measured above. A
    // failed scrape leaves the run without phases, with a warning, rather than failing it.
    httplib::Client client("127.0.0.1", metrics_port);
    client.set_connection_timeout(5, 0);
    client.set_read_timeout(10, 0);
    const httplib::Result got = client.Get("/metrics");
    if (got && got->status == 200) {
      run->phases_ms = StartupPhasesMs(got->body);
    } else {
      std::cerr << "kiln-bench coldstart: warning: GET http://127.0.0.1:" << metrics_port
                << "/metrics failed ("
                << (got ? absl::StrCat("HTTP ", got->status) : httplib::to_string(got.error()))
                << "): no startup phases for this run" << std::endl;
    }
  }
  // The channel and the stubs go when this returns, before the server is stopped: no idle
  // connection of ours is left for its drain.
  return absl::OkStatus();
}

// What messages call the server the options start.
std::string ServerName(const ColdstartOptions& options) {
  return options.naive_server.empty() ? "kiln-server" : "the naive server";
}

// One whole run: start the server (its output to `log_path`), measure, stop it.
absl::StatusOr<ColdstartRun> RunOnce(const ColdstartOptions& options, const std::string& lock_dir,
                                     const std::string& log_path) {
  ASSIGN_OR_RETURN(const int port, FreeLoopbackPort());
  int metrics_port = 0;
  if (options.naive_server.empty()) {
    ASSIGN_OR_RETURN(metrics_port, FreeLoopbackPort());
  }
  const std::vector<std::string> argv = ColdstartServerArgv(options, port, lock_dir, metrics_port);
  ASSIGN_OR_RETURN(std::unique_ptr<LaunchedServer> server,
                   LaunchedServer::Start(argv, log_path, ServerName(options)));
  ColdstartRun run;
  // On an error ~LaunchedServer kills the process group.
  RETURN_IF_ERROR(MeasureRun(options, *server, port,
                             options.naive_server.empty() ? MetricsPortOf(argv) : 0, &run));
  ASSIGN_OR_RETURN(const LaunchedServer::StopResult stopped, server->Stop(kStopGrace));
  if (stopped.killed) {
    return absl::DeadlineExceededError(
        absl::StrCat(ServerName(options), " did not exit within ", kStopGrace.count(),
                     " s of SIGTERM; its process group was SIGKILLed"));
  }
  if (!(stopped.exit == ExitStatus{false, 0})) {
    return absl::InternalError(absl::StrCat(ServerName(options), " ended with ",
                                            stopped.exit.Describe(), " after SIGTERM"));
  }
  return run;
}

}  // namespace

std::optional<int> ParseColdstartArgs(const std::vector<std::string>& args,
                                      ColdstartOptions* options, std::ostream& out,
                                      std::ostream& err) {
  ColdstartOptions parsed;
  std::string warmup = "on";
  std::string share_weights = "on";
  std::string text;
  ScenarioFlags flags(kColdstart, &parsed);
  flags.flags().SetHelp(
      "model_repository",
      "model repository the server loads (required; every model in it is loaded)");
  flags.flags().SetHelp("model", "model to send requests to (required)");
  flags.flags().SetHelp("workers",
                        "the server's --workers (per model), 0..256; 0 = the config's count, or "
                        "as many as the server's CPUs allow");
  flags.flags().SetHelp("server_args",
                        "more server flags, space-separated --name=value words (no quoting); not "
                        "the flags above, --host, --port or --lock_dir");
  flags.flags().AddString("warmup", &warmup,
                          "the server's --warmup: on, or off (baseline: cold workers)");
  flags.flags().AddString("share_weights", &share_weights,
                          "the server's --share_weights: on, or off (baseline: a copy per worker)");
  flags.flags().AddString("cgroup", &parsed.cgroup,
                          "run the server in this cgroup directory (e.g. one with a CPU quota: "
                          "/sys/fs/cgroup/cpu/x); kiln-bench itself stays outside it");
  flags.flags().AddInt("repeat", &parsed.repeat,
                       "how many cold starts, one after the other, 1..1000");
  flags.flags().AddInt("steady_requests", &parsed.steady_requests,
                       "sequential requests after the first one, for the steady p50/p95");
  flags.flags().AddInt("pause_ms", &parsed.pause_ms,
                       "idle pause after SERVING before the first request, and before each of the "
                       "10 idle-probe requests, 0..10000");
  flags.flags().AddInt("batch", &parsed.batch,
                       "batch size of the requests (a leading -1 dim); text models: rows of text");
  flags.flags().AddInt("seq", &parsed.seq,
                       "every other -1 dim of the requests; text models: words of sample text");
  flags.flags().AddString("text", &text,
                          "text models: the text of every row (default: sample text of --seq "
                          "words)");
  flags.flags().AddString("naive_server", &parsed.naive_server,
                          "start this naive baseline script (scripts/naive_server.py) with "
                          "/usr/bin/python3 instead of kiln-server; --workers >= 1");
  flags.ServerNotNeededWhen([&parsed] { return !parsed.naive_server.empty(); });
  flags.AddResultFlags(
      "keep the server logs here (coldstart-<model>-run<N>.log, overwritten); default: a "
      "temporary directory kept only when a run fails");
  flags.flags().SetHelp("timeout_s",
                        "deadline for SERVING (from the fork) and for each request, in seconds");
  flags.flags().SetHelp("json", "also write the runs and the summary to this file");
  std::optional<int> exit = flags.Parse(args, out, err, [&]() -> std::string {
    const std::optional<bool> warm = ParseOnOff(warmup);
    if (!warm) return absl::StrCat("--warmup must be on or off, got '", warmup, "'");
    parsed.warmup = *warm;
    const std::optional<bool> share = ParseOnOff(share_weights);
    if (!share) {
      return absl::StrCat("--share_weights must be on or off, got '", share_weights, "'");
    }
    parsed.share_weights = *share;
    if (parsed.repeat < 1 || parsed.repeat > 1000) {
      return absl::StrCat("--repeat must be in 1..1000, got ", parsed.repeat);
    }
    if (parsed.pause_ms < 0 || parsed.pause_ms > 10000) {
      return absl::StrCat("--pause_ms must be in 0..10000, got ", parsed.pause_ms);
    }
    if (parsed.steady_requests < 1 || parsed.steady_requests > 1000000) {
      return absl::StrCat("--steady_requests must be in 1..1000000, got ", parsed.steady_requests);
    }
    if (parsed.batch < 1 || parsed.batch > 65536) {
      return absl::StrCat("--batch must be in 1..65536, got ", parsed.batch);
    }
    if (parsed.seq < 1 || parsed.seq > 1048576) {
      return absl::StrCat("--seq must be in 1..1048576, got ", parsed.seq);
    }
    std::error_code error;
    if (!parsed.cgroup.empty() &&
        !fs::is_regular_file(fs::path(parsed.cgroup) / "cgroup.procs", error)) {
      return absl::StrCat("--cgroup: ", parsed.cgroup,
                          " is not a cgroup directory (no cgroup.procs in it)");
    }
    if (flags.flags().WasSet("text")) parsed.text = text;
    if (!parsed.naive_server.empty()) {
      if (!fs::is_regular_file(parsed.naive_server, error)) {
        return absl::StrCat("--naive_server: ", parsed.naive_server, " is not a file");
      }
      parsed.naive_server = fs::absolute(parsed.naive_server, error).lexically_normal().string();
      if (parsed.workers < 1) {
        return "--workers=0 (the server's own count) is kiln's: the naive server needs a count, "
               "--workers=1..256";
      }
      for (const char* kiln_only : {"server", "share_weights", "server_args"}) {
        if (flags.flags().WasSet(kiln_only)) {
          return absl::StrCat("--", kiln_only, " is kiln-server's: not with --naive_server");
        }
      }
    }
    return "";
  });
  if (!exit) *options = std::move(parsed);
  return exit;
}

std::string ServerKind(const ColdstartOptions& options) {
  return options.naive_server.empty() ? "kiln" : "naive";
}

std::vector<std::string> ColdstartServerArgv(const ColdstartOptions& options, int port,
                                             const std::string& lock_dir, int metrics_port) {
  if (!options.naive_server.empty()) {
    std::vector<std::string> argv = {
        kNaivePython,
        options.naive_server,
        absl::StrCat("--model_repository=", options.model_repository),
        absl::StrCat("--model=", options.model),
        "--host=127.0.0.1",
        absl::StrCat("--port=", port),
        absl::StrCat("--workers=", options.workers),
        absl::StrCat("--warmup=", OnOff(options.warmup)),
    };
    return options.cgroup.empty() ? argv : InCgroup(options.cgroup, std::move(argv));
  }
  ServerCommand command;
  command.binary = options.server;
  command.model_repository = options.model_repository;
  command.port = port;
  command.lock_dir = lock_dir;
  command.workers = options.workers;
  command.warmup = options.warmup;
  command.share_weights = options.share_weights;
  command.metrics_port = metrics_port;
  command.extra_args = options.server_args;
  std::vector<std::string> argv = ServerArgv(command);
  return options.cgroup.empty() ? argv : InCgroup(options.cgroup, std::move(argv));
}

int MetricsPortOf(const std::vector<std::string>& argv) {
  int port = 0;
  for (const std::string& arg : argv) {
    absl::string_view value = arg;
    if (!absl::ConsumePrefix(&value, "--metrics_port=")) continue;
    int parsed = 0;
    port = absl::SimpleAtoi(value, &parsed) && parsed > 0 && parsed <= 65535 ? parsed : 0;
  }
  return port;
}

namespace {

// The value of label `label` in a sample's "{a=\"x\",b=\"y\"}" (escapes \\, \" and \n
// undone); std::nullopt when it has none.
std::optional<std::string> LabelValue(absl::string_view labels, absl::string_view label) {
  size_t i = 0;
  while (i < labels.size()) {
    while (i < labels.size() && (labels[i] == ',' || labels[i] == ' ')) ++i;
    const size_t eq = labels.find('=', i);
    if (eq == absl::string_view::npos || eq + 1 >= labels.size() || labels[eq + 1] != '"') {
      return std::nullopt;
    }
    const absl::string_view name = absl::StripAsciiWhitespace(labels.substr(i, eq - i));
    std::string value;
    size_t j = eq + 2;
    for (; j < labels.size() && labels[j] != '"'; ++j) {
      if (labels[j] == '\\' && j + 1 < labels.size()) {
        ++j;
        value.push_back(labels[j] == 'n' ? '\n' : labels[j]);
      } else {
        value.push_back(labels[j]);
      }
    }
    if (name == label) return value;
    i = j + 1;
  }
  return std::nullopt;
}

// Adds `ms` to the entry `name` of `phases`, appending it when new.
void AddPhase(PhaseTimes& phases, const std::string& name, double ms) {
  for (auto& [have, total] : phases) {
    if (have == name) {
      total += ms;
      return;
    }
  }
  phases.emplace_back(name, ms);
}

}  // namespace

PhaseTimes StartupPhasesMs(const std::string& metrics_text) {
  constexpr absl::string_view kPhase = "kiln_startup_phase_duration_seconds";
  constexpr absl::string_view kServing = "kiln_startup_time_to_serving_seconds";
  PhaseTimes phases;
  for (absl::string_view line : absl::StrSplit(metrics_text, '\n')) {
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line[0] == '#') continue;
    const size_t name_end = line.find_first_of("{ ");
    if (name_end == absl::string_view::npos) continue;
    const absl::string_view name = line.substr(0, name_end);
    if (name != kPhase && name != kServing) continue;
    absl::string_view labels;
    absl::string_view rest = line.substr(name_end);
    if (rest[0] == '{') {
      const size_t close = rest.rfind('}');
      if (close == absl::string_view::npos) continue;
      labels = rest.substr(1, close - 1);
      rest = rest.substr(close + 1);
    }
    // The value, then perhaps a timestamp.
    rest = absl::StripLeadingAsciiWhitespace(rest);
    double seconds = 0;
    if (!absl::SimpleAtod(rest.substr(0, rest.find(' ')), &seconds) || !std::isfinite(seconds)) {
      continue;
    }
    if (name == kServing) {
      AddPhase(phases, "time_to_serving", seconds * 1000);
    } else if (std::optional<std::string> phase = LabelValue(labels, "phase")) {
      AddPhase(phases, *phase, seconds * 1000);
    }
  }
  return phases;
}

std::string FormatRunLine(size_t index, size_t total, const ColdstartRun& run) {
  Report line = RunValues(run);
  line.Set("run", TextOnly(absl::StrCat(index, "/", total)));
  line.Set("cpu",
           TextOnly(run.first_cpu_ms > 0
                        ? absl::StrFormat("CPU %.2f ms vs %.2f ms (ratio %.2f), ", run.first_cpu_ms,
                                          run.idle_cpu_p50_ms, run.cpu_idle_ratio)
                        : ""));
  line.Line(
      "run {run}: ready {ready_ms} ms, first {first_ms} ms, steady p50 {steady_p50_ms} ms p95 "
      "{steady_p95_ms} ms, ratio {ratio}, after a pause p50 {idle_p50_ms} ms (ratio "
      "{idle_ratio}), {cpu}pss {pss_mb} MB ({processes} processes)");
  std::string text = line.Text();
  text.pop_back();  // the line's newline
  return text;
}

Report ColdstartReport(const ColdstartOptions& options, const std::vector<ColdstartRun>& runs) {
  const bool naive = !options.naive_server.empty();
  Report report;
  report.Set("server", String(ServerKind(options)))
      .Set("model", String(options.model))
      .Set("workers", JsonWithText(options.workers, WorkersText(options.workers)))
      .Set("warmup", String(OnOff(options.warmup)))
      .Set("share_weights", String(naive ? "n/a" : OnOff(options.share_weights)))
      .Set("repeat", Integer(options.repeat))
      .Set("cgroup", String(options.cgroup))
      .Set("run_count", TextOnly(absl::StrCat(runs.size())));
  report.Line(
      "summary: {model}, {workers}, warmup {warmup}, share_weights {share_weights}, {run_count} "
      "run(s) of {server}: median (min..max)");
  ReportTable rows;  // the JSON's alone: each run's line was printed as the run ended
  for (const ColdstartRun& run : runs) rows.AddRow() = RunValues(run);
  report.Table("runs", std::move(rows));
  for (const Metric& metric : kMetrics) {
    std::vector<double> values;
    for (const ColdstartRun& run : runs) values.push_back(run.*metric.field);
    const Spread spread = MedianAndSpread(std::move(values));
    report.Set(absl::StrCat(metric.name, ".median"), Number(spread.median))
        .Set(absl::StrCat(metric.name, ".min"), Number(spread.min))
        .Set(absl::StrCat(metric.name, ".max"), Number(spread.max));
    report.Line(absl::StrFormat("  %-15s {%s.median:10}  ({%s.min}..{%s.max})", metric.name,
                                metric.name, metric.name, metric.name));
  }
  // Each phase's median over the runs that report it, in the order the phases first appear.
  PhaseTimes medians;
  for (const ColdstartRun& run : runs) {
    for (const auto& [name, ms] : run.phases_ms) AddPhase(medians, name, 0);
  }
  for (auto& [name, median] : medians) {
    std::vector<double> values;
    for (const ColdstartRun& run : runs) {
      for (const auto& [have, ms] : run.phases_ms) {
        if (have == name) values.push_back(ms);
      }
    }
    median = MedianAndSpread(std::move(values)).median;
  }
  report.Set("phases", PhasesValue(medians, "%.1f"));
  if (!naive && !medians.empty()) report.Line("  phases (median): {phases}");
  return report;
}

int RunColdstartCommand(const std::vector<std::string>& args) {
  ColdstartOptions options;
  if (std::optional<int> exit = ParseColdstartArgs(args, &options, std::cout, std::cerr)) {
    return *exit;
  }
  return RunScenario(kColdstart, options, [&](RunFiles& files) -> absl::StatusOr<ScenarioOutcome> {
    const std::string lock_dir = files.work_dir() + "/lock";
    std::error_code error;
    fs::create_directory(lock_dir, error);
    if (error) {
      return absl::InternalError(absl::StrCat("cannot create ", lock_dir, ": ", error.message()));
    }
    const bool naive = !options.naive_server.empty();
    std::vector<std::string> shown = ColdstartServerArgv(options, 0, lock_dir, naive ? 0 : 1);
    for (std::string& arg : shown) {
      if (arg == "--port=0") arg = "--port=<a free port per run>";
      if (arg == "--metrics_port=1") arg = "--metrics_port=<a free port per run>";
    }
    std::cout << "coldstart: " << ServerKind(options) << ", model " << options.model << ", "
              << WorkersText(options.workers) << ", warmup " << OnOff(options.warmup)
              << ", share_weights " << (naive ? "n/a" : OnOff(options.share_weights)) << ", "
              << options.repeat << " run(s), " << options.steady_requests
              << " steady requests (batch " << options.batch << ", seq " << options.seq << ")\n"
              << "server: " << absl::StrJoin(shown, " ") << std::endl;
    std::vector<ColdstartRun> runs;
    for (int64_t i = 1; i <= options.repeat; ++i) {
      const std::string log = files.Log(
          absl::StrCat("coldstart-", naive ? "naive-" : "", options.model, "-run", i, ".log"));
      absl::StatusOr<ColdstartRun> run = RunOnce(options, lock_dir, log);
      if (!run.ok()) {
        return absl::Status(run.status().code(), absl::StrCat("run ", i, "/", options.repeat,
                                                              " failed: ", run.status().message()));
      }
      files.Done(log);  // a run that failed later shows its own log, not this one
      runs.push_back(*run);
      std::cout << FormatRunLine(static_cast<size_t>(i), static_cast<size_t>(options.repeat), *run);
      if (!options.log_dir.empty()) std::cout << ", log " << log;
      std::cout << std::endl;
    }
    return ScenarioOutcome(ColdstartReport(options, runs));
  });
}

}  // namespace kiln::bench
