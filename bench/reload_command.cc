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

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "bench/args.h"
#include "bench/load_phases.h"
#include "bench/oip_client.h"
#include "bench/server_launcher.h"
#include "common/status_macros.h"
#include "common/status_util.h"
#include "server/infer_codec.h"  // the kiln_timing parameters

namespace kiln::bench {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr std::chrono::seconds kStopGrace(30);
constexpr int64_t kRequestTimeoutMs = 10000;
constexpr std::chrono::milliseconds kPssInterval(250);
constexpr std::chrono::milliseconds kPollInterval(50);

constexpr char kDescription[] =
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
    "say), 1 the server or an RPC failed (the reason and the log's tail on stderr), 2 bad flags.";

// Adds `record` (and its timing) to `phase`.
void Count(const RequestRecord& record, const RequestTiming* timing, ReloadPhase& phase,
           std::vector<double>& latencies) {
  if (!record.ok()) {
    ++phase.errors[OutcomeName(record.code)];
    return;
  }
  latencies.push_back(record.latency_ms());
  if (timing != nullptr) {
    phase.cold_shape_hits += timing->cold_shape;
    if (!timing->model_version.empty()) ++phase.versions[timing->model_version];
  }
}

std::string VersionsText(const std::map<std::string, int64_t>& versions) {
  std::vector<std::string> parts;
  for (const auto& [version, count] : versions)
    parts.push_back(absl::StrCat("v", version, " ", count));
  return parts.empty() ? "-" : absl::StrJoin(parts, ", ");
}

nlohmann::ordered_json PhaseJson(const ReloadPhase& phase) {
  nlohmann::ordered_json json =
      PhaseLatencyJson(phase.name, phase.from_ms, phase.to_ms, phase.latency);
  json["cold_shape_hits"] = phase.cold_shape_hits;
  json["versions"] = phase.versions;
  json["errors"] = ErrorsJson(phase.errors);
  return json;
}

}  // namespace

// --- the pure pieces ---------------------------------------------------------------------------

std::vector<ReloadPhase> SplitReloadPhases(const std::vector<RequestRecord>& records,
                                           const std::vector<RequestTiming>& timings,
                                           double skip_ms, double trigger_ms, double switched_ms,
                                           double end_ms) {
  const bool switched = switched_ms >= trigger_ms;
  const double switch_ms = switched ? switched_ms : end_ms;
  std::vector<ReloadPhase> phases(3);
  phases[0].name = "before";
  phases[0].from_ms = skip_ms;
  phases[0].to_ms = trigger_ms;
  phases[1].name = "during";
  phases[1].from_ms = trigger_ms;
  phases[1].to_ms = switch_ms;
  phases[2].name = "after";
  phases[2].from_ms = switch_ms;
  phases[2].to_ms = end_ms;
  std::vector<std::vector<double>> latencies(phases.size());
  for (size_t i = 0; i < records.size(); ++i) {
    const double t = records[i].scheduled_ms;
    for (size_t p = 0; p < phases.size(); ++p) {
      if (t >= phases[p].from_ms && t < phases[p].to_ms) {
        Count(records[i], i < timings.size() ? &timings[i] : nullptr, phases[p], latencies[p]);
        break;
      }
    }
  }
  for (size_t p = 0; p < phases.size(); ++p) phases[p].latency = Summarize(std::move(latencies[p]));
  return phases;
}

std::vector<ReloadPhase> PerSecond(const std::vector<RequestRecord>& records,
                                   const std::vector<RequestTiming>& timings, double end_ms) {
  const std::vector<WindowSpan> spans = WholeSeconds(end_ms);
  const int seconds = static_cast<int>(spans.size());
  std::vector<ReloadPhase> phases(seconds);
  std::vector<std::vector<double>> latencies(seconds);
  for (int s = 0; s < seconds; ++s) {
    phases[s].name = spans[s].name;
    phases[s].from_ms = spans[s].from_ms;
    phases[s].to_ms = spans[s].to_ms;
  }
  for (size_t i = 0; i < records.size(); ++i) {
    const double t = records[i].scheduled_ms;
    if (t < 0 || t >= end_ms) continue;
    const int s = std::min(seconds - 1, static_cast<int>(t / 1000));
    Count(records[i], i < timings.size() ? &timings[i] : nullptr, phases[s], latencies[s]);
  }
  for (int s = 0; s < seconds; ++s) phases[s].latency = Summarize(std::move(latencies[s]));
  return phases;
}

double ReloadResult::p99_ratio() const {
  return phases.size() < 2 ? 0 : P99Ratio(phases[0].latency, phases[1].latency);
}

int64_t ReloadResult::errors() const {
  int64_t total = 0;
  for (const ReloadPhase& phase : phases) total += ErrorTotal(phase.errors);
  return total;
}

int64_t ReloadResult::cold_shape_hits() const {
  int64_t total = 0;
  for (const ReloadPhase& phase : phases) total += phase.cold_shape_hits;
  return total;
}

int64_t ReloadResult::new_version_responses() const {
  int64_t total = 0;
  for (const ReloadPhase& phase : phases) {
    auto found = phase.versions.find("2");
    if (found != phase.versions.end()) total += found->second;
  }
  return total;
}

std::string FormatReload(const ReloadOptions& options, const ReloadResult& result) {
  std::string out = absl::StrFormat(
      "reload: %s to version 2 (%s%s) at %.2f req/s (Poisson)%s; beside %s\n", options.model,
      options.hup ? "SIGHUP" : "RepositoryModelLoad",
      options.bad_version ? ", a bad version 2: not TorchScript" : "", result.rate,
      result.capacity_rps > 0 ? absl::StrFormat(", %.0f%% of %.2f req/s measured",
                                                options.load_share * 100, result.capacity_rps)
                              : "",
      options.others.empty() ? "nothing" : absl::StrJoin(options.others, ", "));
  absl::StrAppendFormat(&out, "  %-8s %s  %5s  %-16s %s\n", "phase", PhaseLatencyHeader(), "cold",
                        "versions", "errors");
  for (const ReloadPhase& phase : result.phases) {
    absl::StrAppendFormat(&out, "  %-8s %s  %5d  %-16s %s\n", phase.name,
                          PhaseLatencyColumns(phase.from_ms, phase.to_ms, phase.latency),
                          phase.cold_shape_hits, VersionsText(phase.versions),
                          ErrorsText(phase.errors));
  }
  absl::StrAppendFormat(&out,
                        "p99 during / before: %.2fx (target <= 1.2); errors: %d; cold-shape "
                        "hits: %d\n",
                        result.p99_ratio(), result.errors(), result.cold_shape_hits());
  if (result.switched_ms >= 0) {
    absl::StrAppendFormat(&out, "reload: %s, %.0f ms from the request to %s", result.reload_outcome,
                          result.switch_ms(),
                          result.reload_outcome == "OK" ? "the switch" : "its answer");
  } else {
    absl::StrAppendFormat(&out, "reload: %s (no switch within the load)", result.reload_outcome);
  }
  if (result.first_new_ms >= 0) {
    absl::StrAppendFormat(&out, "; first response of version 2 %.0f ms after the request\n",
                          result.first_new_ms - result.trigger_ms);
  } else {
    absl::StrAppend(&out, "; version 2 answered no request\n");
  }
  absl::StrAppendFormat(&out,
                        "tree PSS: %.1f MB before, %.1f MB peak during the reload, %.1f MB "
                        "at the end\n",
                        result.pss_before_kb / 1e3, result.pss_peak_kb / 1e3,
                        result.pss_after_kb / 1e3);
  std::vector<std::string> kept;
  for (const auto& [model, same] : result.others_kept_workers) {
    kept.push_back(absl::StrCat(
        model, same ? " kept its workers (same pids)" : " has other workers (pids changed)"));
  }
  if (!kept.empty()) absl::StrAppend(&out, "others: ", absl::StrJoin(kept, "; "), "\n");
  absl::StrAppendFormat(&out, "per second:\n  %-8s %s  %5s  %-16s %s\n", "second",
                        PhaseLatencyHeader(), "cold", "versions", "errors");
  for (const ReloadPhase& second : result.seconds) {
    absl::StrAppendFormat(&out, "  %-8s %s  %5d  %-16s %s\n", second.name,
                          PhaseLatencyColumns(second.from_ms, second.to_ms, second.latency),
                          second.cold_shape_hits, VersionsText(second.versions),
                          ErrorsText(second.errors));
  }
  return out;
}

std::string ReloadJson(const ReloadOptions& options, const ReloadResult& result) {
  nlohmann::ordered_json doc;
  doc["command"] = "reload";
  doc["model"] = options.model;
  doc["others"] = options.others;
  doc["trigger"] = options.hup ? "sighup" : "rpc";
  doc["bad_version"] = options.bad_version;
  doc["capacity_rps"] = result.capacity_rps;
  doc["rate"] = result.rate;
  doc["trigger_ms"] = result.trigger_ms;
  doc["switched_ms"] = result.switched_ms;
  doc["switch_ms"] = result.switch_ms();
  doc["first_new_ms"] = result.first_new_ms;
  doc["reload_outcome"] = result.reload_outcome;
  doc["p99_ratio"] = result.p99_ratio();
  doc["errors"] = result.errors();
  doc["cold_shape_hits"] = result.cold_shape_hits();
  doc["new_version_responses"] = result.new_version_responses();
  doc["pss_before_kb"] = result.pss_before_kb;
  doc["pss_peak_kb"] = result.pss_peak_kb;
  doc["pss_after_kb"] = result.pss_after_kb;
  doc["others_kept_workers"] = result.others_kept_workers;
  for (const ReloadPhase& phase : result.phases) doc["phases"].push_back(PhaseJson(phase));
  for (const ReloadPhase& second : result.seconds) doc["seconds"].push_back(PhaseJson(second));
  return doc.dump(2) + "\n";
}

std::optional<int> ParseReloadArgs(const std::vector<std::string>& args, ReloadOptions* options,
                                   std::ostream& out, std::ostream& err) {
  ReloadOptions parsed;
  std::string server, server_args, others = "mlp,textcls";
  std::string rate = "0", share = "0.7", before = "8", budget = "30", after = "8", skip = "1";
  FlagSet flags(
      "kiln-bench reload --model_repository=DIR --model=NAME [flags]", kDescription,
      {"kiln-bench reload --model_repository=models --model=resnet18 --others=mlp,textcls",
       "kiln-bench reload --model_repository=models --model=resnet18 --bad_version --hup "
       "--json=/tmp/reload.json"});
  flags.AddString("model_repository", &parsed.model_repository,
                  "where the models' config.pbtxt and version 1 files are");
  flags.AddString("model", &parsed.model, "the model rolled out to version 2 under the load");
  flags.AddString("others", &others,
                  "models served beside it that the reload must leave alone, comma separated "
                  "('' for none)");
  AddServerFlag(flags, &server);
  flags.AddInt("workers", &parsed.workers,
               "the server's --workers, 0..256; 0 = each config's count, or automatic");
  flags.AddString("server_args", &server_args, "more server flags, space-separated words");
  flags.AddBool("hup", &parsed.hup, "reload with SIGHUP instead of RepositoryModelLoad");
  flags.AddBool("bad_version", &parsed.bad_version,
                "version 2's model.pt is not TorchScript: the reload must fail and version 1 "
                "keep serving");
  flags.AddString("rate", &rate, "requests per second; 0 = --load_share of the measured capacity");
  flags.AddString("load_share", &share, "share of the capacity the load runs at, in (0, 1]");
  flags.AddString("before_s", &before, "load before the reload, seconds");
  flags.AddString("reload_budget_s", &budget, "the longest the reload may take, seconds");
  flags.AddString("after_s", &after, "load after the reload's budget, seconds");
  flags.AddString("skip_s", &skip, "the load's first seconds, left out of 'before'");
  AddLoadRunFlags(flags, parsed,
                  "keep the server's log and the repository here; default: a temporary directory "
                  "kept only when the run fails");
  if (std::optional<int> exit = ParseFlagsOrExit(&flags, "reload", args, out, err)) return *exit;
  auto problem = [&]() -> std::string {
    const std::string launch =
        ValidateLaunchFlags(parsed.model_repository, parsed.model, server, parsed.json_path,
                            parsed.log_dir, &parsed.server);
    if (!launch.empty()) return launch;
    parsed.others = absl::StrSplit(others, ',', absl::SkipEmpty());
    for (const std::string& other : parsed.others) {
      if (other == parsed.model)
        return absl::StrCat("--others must not name --model (", other, ")");
      std::error_code error;
      if (!fs::is_regular_file(fs::path(parsed.model_repository) / other / "config.pbtxt", error)) {
        return absl::StrCat("--others: ", parsed.model_repository, " has no ", other,
                            "/config.pbtxt");
      }
    }
    for (const std::string& reason :
         {ValidateWorkersAndServerArgs(parsed.workers, server_args, &parsed.server_args),
          rate == "0" ? std::string() : ParsePositiveFlag("rate", rate, &parsed.rate),
          ParsePositiveFlag("load_share", share, &parsed.load_share),
          ParsePositiveFlag("before_s", before, &parsed.before_s),
          ParsePositiveFlag("reload_budget_s", budget, &parsed.reload_budget_s),
          ParsePositiveFlag("after_s", after, &parsed.after_s),
          ParseSkipFlag(skip, &parsed.skip_s)}) {
      if (!reason.empty()) return reason;
    }
    if (parsed.load_share > 1) return "--load_share must be in (0, 1]";
    if (parsed.skip_s >= parsed.before_s) return "need --skip_s < --before_s";
    return ValidateBatchSeedTimeout(parsed.batch, parsed.seed, parsed.timeout_s);
  }();
  if (!problem.empty()) {
    err << "kiln-bench reload: " << problem << "\nrun 'kiln-bench reload --help' for its flags\n";
    return kExitUsage;
  }
  *options = std::move(parsed);
  return std::nullopt;
}

// --- the run -----------------------------------------------------------------------------------

namespace {

// <repository>/<model>: the source's config.pbtxt, copied, and its version 1 files, linked.
absl::Status AddModel(const std::string& source_repository, const std::string& repository,
                      const std::string& model) {
  const fs::path source = fs::path(source_repository) / model;
  const fs::path target = fs::path(repository) / model;
  std::error_code error;
  fs::create_directories(target / "1", error);
  fs::copy_file(source / "config.pbtxt", target / "config.pbtxt",
                fs::copy_options::overwrite_existing, error);
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

absl::StatusOr<ReloadResult> RunReload(const ReloadOptions& options, const std::string& work_dir,
                                       const std::string& log_path) {
  const std::string repository = absl::StrCat(work_dir, "/repository");
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
                   StartServing(options.server, repository, options.workers, server_args, work_dir,
                                log_path, options.timeout_s));
  const std::unique_ptr<LaunchedServer> server = std::move(started.server);
  const std::string address = absl::StrCat("127.0.0.1:", started.port);
  const std::shared_ptr<grpc::Channel> channel = CreateChannel(address);
  const std::unique_ptr<inference::GRPCInferenceService::Stub> stub =
      inference::GRPCInferenceService::NewStub(channel);
  // Control RPCs on a channel of their own, so that they never queue behind the load's calls.
  const std::unique_ptr<inference::GRPCInferenceService::Stub> control =
      inference::GRPCInferenceService::NewStub(CreateChannel(address));
  const std::unique_ptr<KilnService::Stub> kiln = KilnService::NewStub(channel);
  ASSIGN_OR_RETURN(SyntheticRequest request, FetchLoadRequest(*stub, options.model, options.batch,
                                                              options.seed, kRequestTimeoutMs));
  AskForTiming(&request.request);

  ReloadResult result;
  std::map<std::string, std::vector<int64_t>> others_before;
  for (const std::string& other : options.others) {
    ASSIGN_OR_RETURN(others_before[other], WarmWorkerPids(*kiln, other));
  }
  result.rate = options.rate;
  if (result.rate <= 0) {
    ASSIGN_OR_RETURN(const std::vector<int64_t> workers, WarmWorkerPids(*kiln, options.model));
    ASSIGN_OR_RETURN(result.capacity_rps,
                     MeasureCapacity(*stub, request.request, static_cast<int64_t>(workers.size()),
                                     kRequestTimeoutMs));
    result.rate = options.load_share * result.capacity_rps;
    std::cerr << "kiln-bench reload: capacity " << result.capacity_rps << " req/s; load at "
              << result.rate << " req/s" << std::endl;
  }
  RETURN_IF_ERROR(AddVersion2(repository, options.model, options.bad_version));

  const LoadOptions load =
      PoissonLoad(result.rate, options.duration_s(), options.seed, kRequestTimeoutMs);
  TimingSender sender(stub.get(), &request.request, kRequestTimeoutMs);
  BackgroundLoad background(load, [&sender](DoneFn done) { sender.Send(std::move(done)); });
  const Clock::time_point start = background.start();
  // The tree's PSS every kPssInterval: (ms since start, kB).
  absl::Notification stop_pss;
  std::vector<std::pair<double, int64_t>> pss;
  std::thread sampler([&] {
    while (!stop_pss.WaitForNotificationWithTimeout(absl::FromChrono(kPssInterval))) {
      if (absl::StatusOr<TreeMemory> memory = TreePss(server->pid()); memory.ok()) {
        pss.emplace_back(MsBetween(start, Clock::now()), memory->pss_kb);
      }
    }
  });

  std::this_thread::sleep_until(start + Seconds(options.before_s));
  result.trigger_ms = MsBetween(start, Clock::now());
  std::cerr << "kiln-bench reload: asking for the reload at " << result.trigger_ms / 1000 << " s"
            << std::endl;
  result.reload_outcome = Reload(options, *server, *control);
  if (result.reload_outcome == "OK" || options.bad_version) {
    result.switched_ms = MsBetween(start, Clock::now());
  }
  std::cerr << "kiln-bench reload: " << result.reload_outcome << " at "
            << MsBetween(start, Clock::now()) / 1000 << " s" << std::endl;
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
  return result;
}

}  // namespace

int RunReloadCommand(const std::vector<std::string>& args) {
  ReloadOptions options;
  if (std::optional<int> exit = ParseReloadArgs(args, &options, std::cout, std::cerr)) {
    return *exit;
  }
  return RunWithOneServer<ReloadResult>(
      "reload", options.log_dir, options.json_path,
      [&](const std::string& work_dir, const std::string& log) {
        return RunReload(options, work_dir, log);
      },
      [&](const ReloadResult& result) { return FormatReload(options, result); },
      [&](const ReloadResult& result) { return ReloadJson(options, result); });
}

}  // namespace kiln::bench
