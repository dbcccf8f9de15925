#include "bench/reload_command.h"

#include <signal.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <set>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "bench/oip_client.h"
#include "bench/scenario_flags.h"
#include "bench/scenario_load.h"
#include "bench/scenario_run.h"
#include "bench/server_launcher.h"
#include "bench/timed_events.h"
#include "common/status_macros.h"
#include "common/status_util.h"
#include "server/codec/infer_codec.h"  // the kiln_timing parameters

namespace kiln::bench {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr std::chrono::milliseconds kPssInterval(250);
constexpr std::chrono::milliseconds kPollInterval(50);

const Scenario kReload = {
    "reload",
    "--model_repository=DIR --model=NAME [flags]",
    "What rolling out a new model version costs a loaded server (make-before-break).\n"
    "It builds a repository of its own in a temporary directory: --model and --others, their\n"
    "config and version 1 files linked from --model_repository; starts kiln-server on it (a\n"
    "free loopback port); measures --model's capacity (a closed loop, one call per warm worker,\n"
    "4 s) unless --rate is given; and sends an open-loop Poisson load at --load_share of it.\n"
    "--before_s into the load, version 2 of --model appears (its files linked from version 1;\n"
    "with --bad_version its model.pt is not TorchScript) and a reload is asked for:\n"
    "RepositoryModelLoad (default), or SIGHUP with --hup. Reports:\n"
    "  - p50/p95/p99 (OK requests, from their scheduled time), errors, cold-shape hits and the\n"
    "    versions that answered, per phase (before, during the reload, after the switch) and\n"
    "    per second; p99 during / before (kiln's target: <= 1.2, no failed request);\n"
    "  - the switch time: from the request to the RPC's answer (or, with --hup, to ModelMetadata\n"
    "    listing only version 2), and to the first response of version 2;\n"
    "  - the process tree's PSS before, at its peak during the reload, and at the end;\n"
    "  - whether every model of --others kept its workers (the same pids).\n"
    "--json also writes every number. Exit status: 0 it ran (targets met or not: the numbers\n"
    "say), 1 the server or an RPC failed (the reason and the log's tail on stderr), 2 bad flags.",
    {"kiln-bench reload --model_repository=models --model=resnet18 --others=mlp,textcls",
     "kiln-bench reload --model_repository=models --model=resnet18 --bad_version --hup "
     "--json=/tmp/reload.json"}};

// "v1 12, v2 30", or "-" when no response said its version.
std::string VersionsText(const std::map<std::string, int64_t>& versions) {
  std::vector<std::string> parts;
  for (const auto& [version, count] : versions) {
    parts.push_back(absl::StrCat("v", version, " ", count));
  }
  return parts.empty() ? "-" : absl::StrJoin(parts, ", ");
}

// A reload phase's table: the latency columns, then its cold-shape hits and versions.
ReportTable ReloadPhaseTable(const std::string& label, const std::vector<Phase>& phases) {
  return PhaseTable(label, phases, {{"cold_shape_hits", "cold"}, {"versions", "versions", true}},
                    [](size_t, const Phase& phase, Report& row) {
                      row.Set("cold_shape_hits", Integer(phase.cold_shape_hits))
                          .Set("versions",
                               JsonWithText(phase.versions, VersionsText(phase.versions)));
                    });
}

// kB in the JSON, MB ("%.1f") in the text.
ReportValue KbAsMb(int64_t kb) { return JsonWithText(kb, absl::StrFormat("%.1f", kb / 1e3)); }

}  // namespace

// --- the pure pieces ---------------------------------------------------------------------------

std::vector<Phase> SplitReloadPhases(const std::vector<RequestRecord>& records,
                                     const std::vector<RequestTiming>& timings, double skip_ms,
                                     double trigger_ms, double switched_ms, double end_ms) {
  const double switch_ms = switched_ms >= trigger_ms ? switched_ms : end_ms;
  return CountPhases(records,
                     {{"before", skip_ms, trigger_ms},
                      {"during", trigger_ms, switch_ms},
                      {"after", switch_ms, end_ms}},
                     timings);
}

std::vector<Phase> PerSecond(const std::vector<RequestRecord>& records,
                             const std::vector<RequestTiming>& timings, double end_ms) {
  return CountPhases(records, WholeSeconds(end_ms), timings);
}

double ReloadResult::p99_ratio() const {
  return phases.size() < 2 ? 0 : P99Ratio(phases[0].latency, phases[1].latency);
}

int64_t ReloadResult::errors() const { return ErrorTotal(phases); }

int64_t ReloadResult::cold_shape_hits() const {
  int64_t total = 0;
  for (const Phase& phase : phases) total += phase.cold_shape_hits;
  return total;
}

int64_t ReloadResult::new_version_responses() const {
  int64_t total = 0;
  for (const Phase& phase : phases) {
    auto found = phase.versions.find("2");
    if (found != phase.versions.end()) total += found->second;
  }
  return total;
}

Report ReloadReport(const ReloadOptions& options, const ReloadResult& result) {
  Report report;
  report.Set("command", String("reload"))
      .Set("model", String(options.model))
      .Set("others",
           JsonWithText(options.others,
                        options.others.empty() ? "nothing" : absl::StrJoin(options.others, ", ")))
      .Set("trigger", JsonWithText(options.hup ? "sighup" : "rpc",
                                   options.hup ? "SIGHUP" : "RepositoryModelLoad"))
      .Set("bad_version", Bool(options.bad_version, ", a bad version 2: not TorchScript", ""));
  SetLoadRate({result.rate, result.capacity_rps}, options.load_share, report);
  report.Line(absl::StrCat(
      "reload: {model} to version 2 ({trigger}{bad_version}) at {rate} req/s (Poisson)",
      result.capacity_rps > 0 ? ", {measured}" : "", "; beside {others}"));
  report.Set("trigger_ms", Number(result.trigger_ms))
      .Set("switched_ms", Number(result.switched_ms))
      .Set("switch_ms", Number(result.switch_ms(), "%.0f"))
      .Set("first_new_ms", Number(result.first_new_ms))
      .Set("first_new_after_ms",
           TextOnly(absl::StrFormat("%.0f", result.first_new_ms - result.trigger_ms)))
      .Set("reload_outcome", String(result.reload_outcome))
      .Set("p99_ratio", Number(result.p99_ratio()))
      .Set("errors", Integer(result.errors()))
      .Set("cold_shape_hits", Integer(result.cold_shape_hits()))
      .Set("new_version_responses", Integer(result.new_version_responses()))
      .Set("pss_before_kb", KbAsMb(result.pss_before_kb))
      .Set("pss_peak_kb", KbAsMb(result.pss_peak_kb))
      .Set("pss_after_kb", KbAsMb(result.pss_after_kb));
  std::vector<std::string> kept;
  for (const auto& [model, same] : result.others_kept_workers) {
    kept.push_back(absl::StrCat(
        model, same ? " kept its workers (same pids)" : " has other workers (pids changed)"));
  }
  report.Set("others_kept_workers",
             JsonWithText(result.others_kept_workers, absl::StrJoin(kept, "; ")));
  report.Table("phases", ReloadPhaseTable("phase", result.phases));
  report.Line(
      "p99 during / before: {p99_ratio}x (target <= 1.2); errors: {errors}; cold-shape hits: "
      "{cold_shape_hits}");
  report.Line(
      absl::StrCat(result.switched_ms < 0 ? "reload: {reload_outcome} (no switch within the load)"
                   : result.reload_outcome == "OK"
                       ? "reload: {reload_outcome}, {switch_ms} ms from the request to the switch"
                       : "reload: {reload_outcome}, {switch_ms} ms from the request to its answer",
                   result.first_new_ms >= 0
                       ? "; first response of version 2 {first_new_after_ms} ms after the request"
                       : "; version 2 answered no request"));
  report.Line(
      "tree PSS: {pss_before_kb} MB before, {pss_peak_kb} MB peak during the reload, "
      "{pss_after_kb} MB at the end");
  if (!kept.empty()) report.Line("others: {others_kept_workers}");
  report.Line("per second:");
  report.Table("seconds", ReloadPhaseTable("second", result.seconds));
  return report;
}

std::optional<int> ParseReloadArgs(const std::vector<std::string>& args, ReloadOptions* options,
                                   std::ostream& out, std::ostream& err) {
  ReloadOptions parsed;
  std::string others = "mlp,textcls";
  ScenarioFlags flags(kReload, &parsed);
  flags.flags().SetHelp("model_repository",
                        "where the models' config.pbtxt and version 1 files are");
  flags.flags().SetHelp("model", "the model rolled out to version 2 under the load");
  flags.flags().SetHelp("workers",
                        "the server's --workers, 0..256; 0 = each config's count, or automatic");
  flags.flags().AddString("others", &others,
                          "models served beside it that the reload must leave alone, comma "
                          "separated ('' for none)");
  flags.flags().AddBool("hup", &parsed.hup, "reload with SIGHUP instead of RepositoryModelLoad");
  flags.flags().AddBool("bad_version", &parsed.bad_version,
                        "version 2's model.pt is not TorchScript: the reload must fail and "
                        "version 1 keep serving");
  flags.AddRateOrShare(&parsed);
  flags.flags().AddDouble("before_s", &parsed.before_s, "load before the reload, seconds");
  flags.flags().AddDouble("reload_budget_s", &parsed.reload_budget_s,
                          "the longest the reload may take, seconds");
  flags.flags().AddDouble("after_s", &parsed.after_s, "load after the reload's budget, seconds");
  flags.AddSkip(&parsed, "the load's first seconds, left out of 'before'");
  flags.AddLoadFlags(&parsed);
  flags.AddResultFlags(
      "keep the server's log here (reload.log); default: a temporary directory kept only when "
      "the run fails");
  std::optional<int> exit = flags.Parse(args, out, err, [&]() -> std::string {
    parsed.others = absl::StrSplit(others, ',', absl::SkipEmpty());
    for (const std::string& other : parsed.others) {
      if (other == parsed.model) {
        return absl::StrCat("--others must not name --model (", other, ")");
      }
      std::error_code error;
      if (!fs::is_regular_file(fs::path(parsed.model_repository) / other / "config.pbtxt", error)) {
        return absl::StrCat("--others: ", parsed.model_repository, " has no ", other,
                            "/config.pbtxt");
      }
    }
    if (parsed.skip_s >= parsed.before_s) return "need --skip_s < --before_s";
    return "";
  });
  if (!exit) *options = std::move(parsed);
  return exit;
}

// --- the run -----------------------------------------------------------------------------------

namespace {

// <repository>/<model>: the source's config.pbtxt and (when it has one) kiln.pbtxt, copied, and
// its version 1 files, linked.
absl::Status AddModel(const std::string& source_repository, const std::string& repository,
                      const std::string& model) {
  const fs::path source = fs::path(source_repository) / model;
  const fs::path target = fs::path(repository) / model;
  std::error_code error;
  fs::create_directories(target / "1", error);
  if (!error) {
    fs::copy_file(source / "config.pbtxt", target / "config.pbtxt",
                  fs::copy_options::overwrite_existing, error);
  }
  std::error_code no_settings;  // set when there is no kiln.pbtxt: not an error
  if (!error && fs::is_regular_file(source / "kiln.pbtxt", no_settings)) {
    fs::copy_file(source / "kiln.pbtxt", target / "kiln.pbtxt",
                  fs::copy_options::overwrite_existing, error);
  }
  if (error) return absl::InternalError(absl::StrCat("copying ", model, ": ", error.message()));
  for (const fs::directory_entry& file : fs::directory_iterator(source / "1", error)) {
    fs::create_symlink(fs::absolute(file.path()), target / "1" / file.path().filename(), error);
    if (error)
      return absl::InternalError(
          absl::StrCat("linking ", file.path().string(), ": ", error.message()));
  }
  return absl::OkStatus();
}

// <repository>/<model>/2: version 1's files linked, or with `bad` a model.pt that is not
// TorchScript.
absl::Status AddVersion2(const std::string& repository, const std::string& model, bool bad) {
  const fs::path dir = fs::path(repository) / model;
  std::error_code error;
  fs::create_directories(dir / "2", error);
  for (const fs::directory_entry& file : fs::directory_iterator(dir / "1", error)) {
    const fs::path name = file.path().filename();
    if (bad && name == "model.pt") {
      std::ofstream(dir / "2" / name) << "not a TorchScript archive\n";
      continue;
    }
    fs::create_symlink(fs::read_symlink(file.path(), error), dir / "2" / name, error);
    if (error)
      return absl::InternalError(absl::StrCat("version 2 of ", model, ": ", error.message()));
  }
  return absl::OkStatus();
}

// Asks for the reload and waits until it is over; returns "OK" or the error.
std::string Reload(const ReloadOptions& options, const LaunchedServer& server,
                   inference::GRPCInferenceService::Stub& stub) {
  if (!options.hup) {
    grpc::ClientContext context;
    SetTimeout(&context, static_cast<int64_t>(options.reload_budget_s * 1000));
    inference::RepositoryModelLoadRequest request;
    request.set_model_name(options.model);
    inference::RepositoryModelLoadResponse response;
    const grpc::Status status = stub.RepositoryModelLoad(&context, request, &response);
    return status.ok() ? "OK" : FormatGrpcStatus(status);
  }
  if (kill(server.pid(), SIGHUP) != 0) return "SIGHUP could not be sent";
  // Over when ModelMetadata lists only version 2, or the index says why version 2 failed.
  const auto deadline = Clock::now() + Seconds(options.reload_budget_s);
  while (Clock::now() < deadline) {
    absl::StatusOr<inference::ModelMetadataResponse> metadata =
        FetchModelMetadata(stub, options.model, "", kRequestTimeoutMs);
    if (metadata.ok() && metadata->versions_size() == 1 && metadata->versions(0) == "2") {
      return "OK";
    }
    grpc::ClientContext context;
    SetTimeout(&context, kRequestTimeoutMs);
    inference::RepositoryIndexRequest index_request;
    inference::RepositoryIndexResponse index;
    if (stub.RepositoryIndex(&context, index_request, &index).ok()) {
      for (const auto& entry : index.models()) {
        if (entry.name() == options.model && !entry.reason().empty()) return entry.reason();
      }
    }
    std::this_thread::sleep_for(kPollInterval);
  }
  return "no switch within --reload_budget_s";
}

absl::StatusOr<ScenarioOutcome> RunReload(const ReloadOptions& options, RunFiles& files) {
  const std::string repository = absl::StrCat(files.work_dir(), "/repository");
  for (const std::string& model : [&] {
         std::vector<std::string> all = options.others;
         all.push_back(options.model);
         return all;
       }()) {
    RETURN_IF_ERROR(AddModel(options.model_repository, repository, model));
  }
  // The RPC trigger needs the load/unload RPCs, which kiln-server refuses by default.
  std::vector<std::string> server_args = options.server_args;
  if (!options.hup) server_args.push_back("--model_control_mode=explicit");
  ASSIGN_OR_RETURN(StartedServer started,
                   StartServing(options.server, repository, options.workers, server_args,
                                files.work_dir(), files.Log("reload.log"), options.timeout_s));
  const std::unique_ptr<LaunchedServer> server = std::move(started.server);
  const std::string address = absl::StrCat("127.0.0.1:", started.port);
  ASSIGN_OR_RETURN(const std::shared_ptr<grpc::Channel> channel, ConnectChannel(address));
  const std::unique_ptr<inference::GRPCInferenceService::Stub> stub =
      inference::GRPCInferenceService::NewStub(channel);
  // Control RPCs on a channel of their own, so that they never queue behind the load's calls.
  ASSIGN_OR_RETURN(const std::shared_ptr<grpc::Channel> control_channel, ConnectChannel(address));
  const std::unique_ptr<inference::GRPCInferenceService::Stub> control =
      inference::GRPCInferenceService::NewStub(control_channel);
  const std::unique_ptr<KilnService::Stub> kiln = KilnService::NewStub(channel);
  ASSIGN_OR_RETURN(SyntheticRequest request, FetchLoadRequest(*stub, options.model, options.batch,
                                                              options.seed, kRequestTimeoutMs));
  AskForTiming(&request.request);

  ReloadResult result;
  std::map<std::string, std::vector<int64_t>> others_before;
  for (const std::string& other : options.others) {
    ASSIGN_OR_RETURN(others_before[other], WarmWorkerPids(*kiln, other));
  }
  ASSIGN_OR_RETURN(const LoadRate rate, RateOrShareOfCapacity(options, "reload", *stub, *kiln,
                                                              request.request, kRequestTimeoutMs));
  result.rate = rate.rate;
  result.capacity_rps = rate.capacity_rps;
  RETURN_IF_ERROR(AddVersion2(repository, options.model, options.bad_version));

  const LoadOptions load =
      PoissonLoad(result.rate, options.duration_s(), options.seed, kRequestTimeoutMs);
  TimingSender sender(stub.get(), &request.request, kRequestTimeoutMs);
  BackgroundLoad background(load, [&sender](DoneFn done) { sender.Send(std::move(done)); });
  TimedEvents events({"trigger", "switched"}, background.start());
  // The tree's PSS every kPssInterval: (ms since start, kB).
  absl::Notification stop_pss;
  std::vector<std::pair<double, int64_t>> pss;
  std::thread sampler([&] {
    while (!stop_pss.WaitForNotificationWithTimeout(absl::FromChrono(kPssInterval))) {
      if (absl::StatusOr<TreeMemory> memory = TreePss(server->pid()); memory.ok()) {
        pss.emplace_back(events.Now(), memory->pss_kb);
      }
    }
  });

  std::this_thread::sleep_until(events.start() + Seconds(options.before_s));
  result.trigger_ms = events.Mark("trigger");
  std::cerr << "kiln-bench reload: asking for the reload at " << result.trigger_ms / 1000 << " s"
            << std::endl;
  result.reload_outcome = Reload(options, *server, *control);
  if (result.reload_outcome == "OK" || options.bad_version) {
    result.switched_ms = events.Mark("switched");
  }
  std::cerr << "kiln-bench reload: " << result.reload_outcome << " at " << events.Now() / 1000
            << " s" << std::endl;
  const LoadResult loaded = background.Join();
  const std::vector<RequestTiming> sends = sender.Timings();
  stop_pss.Notify();
  sampler.join();
  for (const std::string& other : options.others) {
    ASSIGN_OR_RETURN(const std::vector<int64_t> after, WarmWorkerPids(*kiln, other));
    result.others_kept_workers[other] =
        std::set<int64_t>(after.begin(), after.end()) ==
        std::set<int64_t>(others_before[other].begin(), others_before[other].end());
  }
  std::cerr << "kiln-bench reload: load done; stopping the server" << std::endl;
  RETURN_IF_ERROR(server->Stop(kStopGrace).status());

  for (const auto& [at_ms, kb] : pss) {
    if (at_ms < result.trigger_ms) result.pss_before_kb = kb;
    const double until = result.switched_ms >= 0 ? result.switched_ms : 1e18;
    if (at_ms >= result.trigger_ms && at_ms <= until) {
      result.pss_peak_kb = std::max(result.pss_peak_kb, kb);
    }
    result.pss_after_kb = kb;
  }
  ASSIGN_OR_RETURN(const std::vector<RequestTiming> timings, JoinTimings(loaded.records, sends));
  const double end_ms = options.duration_s() * 1000;
  result.phases = SplitReloadPhases(loaded.records, timings, options.skip_s * 1000,
                                    result.trigger_ms, result.switched_ms, end_ms);
  result.seconds = PerSecond(loaded.records, timings, end_ms);
  for (size_t i = 0; i < loaded.records.size() && i < timings.size(); ++i) {
    if (loaded.records[i].ok() && timings[i].model_version == options.NewVersion() &&
        (result.first_new_ms < 0 || loaded.records[i].done_ms < result.first_new_ms)) {
      result.first_new_ms = loaded.records[i].done_ms;
    }
  }
  return ScenarioOutcome(ReloadReport(options, result));
}

}  // namespace

int RunReloadCommand(const std::vector<std::string>& args) {
  ReloadOptions options;
  if (std::optional<int> exit = ParseReloadArgs(args, &options, std::cout, std::cerr)) {
    return *exit;
  }
  return RunScenario(kReload, options, [&](RunFiles& files) { return RunReload(options, files); });
}

}  // namespace kiln::bench
