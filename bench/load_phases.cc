#include "bench/load_phases.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <future>
#include <iostream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "bench/args.h"
#include "bench/timing_sender.h"
#include "common/process.h"
#include "common/status_macros.h"

namespace kiln::bench {

std::string ValidateWorkersAndServerArgs(int64_t workers, absl::string_view server_args_text,
                                         std::vector<std::string>* server_args) {
  if (workers < 0 || workers > 256) {
    return absl::StrCat("--workers must be in 0..256, got ", workers);
  }
  absl::StatusOr<std::vector<std::string>> extra = SplitServerArgs(server_args_text);
  if (!extra.ok()) return std::string(extra.status().message());
  *server_args = std::move(*extra);
  return "";
}

std::string ParsePositiveFlag(absl::string_view name, const std::string& text, double* value) {
  const std::optional<double> parsed = ParsePositive(text);
  if (!parsed) return absl::StrCat("--", name, " must be a number > 0, not '", text, "'");
  *value = *parsed;
  return "";
}

std::string ParseSkipFlag(const std::string& text, double* value) {
  // ParsePositive refuses 0; "0" itself is the one zero taken (no skipped start).
  const std::optional<double> parsed = text == "0" ? std::optional<double>(0) : ParsePositive(text);
  if (!parsed) return absl::StrCat("--skip_s must be a number >= 0, not '", text, "'");
  *value = *parsed;
  return "";
}

std::string ValidateBatchSeedTimeout(int64_t batch, int64_t seed, int64_t timeout_s) {
  if (batch < 1) return "--batch must be >= 1";
  if (seed < 0) return "--seed must be >= 0";
  if (timeout_s < 1 || timeout_s > 86400) {
    return absl::StrCat("--timeout_s must be in 1..86400, got ", timeout_s);
  }
  return "";
}

absl::StatusOr<StartedServer> StartOnFreePort(const std::string& binary,
                                              const std::string& model_repository, int64_t workers,
                                              const std::vector<std::string>& server_args,
                                              const std::string& lock_dir,
                                              const std::string& log_path,
                                              const std::vector<std::string>& launcher) {
  ASSIGN_OR_RETURN(const int port, FreeLoopbackPort());
  ServerCommand command;
  command.binary = binary;
  command.model_repository = model_repository;
  command.port = port;
  command.lock_dir = lock_dir;
  command.workers = workers;
  command.extra_args = server_args;
  std::vector<std::string> argv = launcher;
  for (std::string& word : ServerArgv(command)) argv.push_back(std::move(word));
  ASSIGN_OR_RETURN(std::unique_ptr<LaunchedServer> server, LaunchedServer::Start(argv, log_path));
  return StartedServer{port, std::move(server)};
}

BackgroundLoad::BackgroundLoad(LoadOptions options, SendFn send) {
  std::promise<std::chrono::steady_clock::time_point> started;
  std::future<std::chrono::steady_clock::time_point> start = started.get_future();
  thread_ = std::thread([this, options = std::move(options), send = std::move(send),
                         started = std::move(started)]() mutable {
    started.set_value(std::chrono::steady_clock::now());  // RunLoad's times count from here
    result_ = RunLoad(options, send);
  });
  start_ = start.get();
}

BackgroundLoad::~BackgroundLoad() {
  if (thread_.joinable()) thread_.join();
}

LoadResult BackgroundLoad::Join() {
  thread_.join();
  return std::move(result_);
}

absl::StatusOr<SyntheticRequest> FetchLoadRequest(inference::GRPCInferenceService::Stub& stub,
                                                  const std::string& model, int64_t batch,
                                                  int64_t seed, int64_t timeout_ms) {
  ASSIGN_OR_RETURN(const inference::ModelMetadataResponse metadata,
                   FetchModelMetadata(stub, model, "", timeout_ms));
  SyntheticRequestOptions input_options;
  input_options.batch = batch;
  input_options.seed = static_cast<uint64_t>(seed);
  return BuildSyntheticRequest(metadata, model, "", input_options);
}

void AddServerFlag(FlagSet& flags, std::string* server) {
  flags.AddString("server", server,
                  "kiln-server executable; default: ../server/kiln-server beside kiln-bench, "
                  "else kiln-server in PATH");
}

absl::StatusOr<StartedServer> StartServing(const std::string& binary,
                                           const std::string& model_repository, int64_t workers,
                                           const std::vector<std::string>& server_args,
                                           const std::string& lock_dir, const std::string& log_path,
                                           int64_t timeout_s) {
  ASSIGN_OR_RETURN(StartedServer started, StartOnFreePort(binary, model_repository, workers,
                                                          server_args, lock_dir, log_path));
  RETURN_IF_ERROR(WaitServingWithin(started.port, *started.server, timeout_s));
  return started;
}

absl::Status WaitServingWithin(int port, const LaunchedServer& server, int64_t timeout_s) {
  const std::unique_ptr<grpc::health::v1::Health::Stub> watch =
      grpc::health::v1::Health::NewStub(ServerChannel(absl::StrCat("127.0.0.1:", port)));
  return WaitServing(*watch, server, server.started_at() + std::chrono::seconds(timeout_s),
                     absl::StrCat("--timeout_s=", timeout_s))
      .status();
}

int ReportRunFailure(const std::string& command, const absl::Status& why, const std::string& log,
                     const std::string& log_dir) {
  std::cerr << "kiln-bench " << command << ": " << why.message() << "\n--- " << log
            << " (last lines) ---\n"
            << FileTail(log, 10) << "logs kept in " << log_dir << "\n";
  return kExitFailure;
}

int FinishRun(const std::string& command, const std::string& text, const std::string& json_path,
              const std::string& json_text, const std::string& remove_dir) {
  std::cout << text;
  if (!json_path.empty() && !WriteResultFile(command, json_path, json_text, std::cerr)) {
    return kExitFailure;
  }
  if (!remove_dir.empty()) {
    std::error_code error;
    std::filesystem::remove_all(remove_dir, error);
  }
  return kExitOk;
}

double MsBetween(std::chrono::steady_clock::time_point from,
                 std::chrono::steady_clock::time_point to) {
  return std::chrono::duration<double, std::milli>(to - from).count();
}

std::chrono::steady_clock::duration Seconds(double s) {
  return std::chrono::duration_cast<std::chrono::steady_clock::duration>(
      std::chrono::duration<double>(s));
}

absl::StatusOr<double> MeasureCapacity(inference::GRPCInferenceService::Stub& stub,
                                       const inference::ModelInferRequest& request,
                                       int64_t concurrency, int64_t timeout_ms) {
  constexpr double kCapacitySeconds = 4;
  LoadOptions options;
  options.mode = LoopMode::kClosed;
  options.concurrency = std::max<int64_t>(concurrency, 1);
  options.duration_s = kCapacitySeconds;
  options.warmup_requests = 2;
  options.timeout_ms = timeout_ms;
  LoadResult result;
  {
    TimingSender sender(&stub, &request, timeout_ms);
    result = RunLoad(options, [&sender](DoneFn done) { sender.Send(std::move(done)); });
  }
  const int64_t ok = std::count_if(result.records.begin(), result.records.end(),
                                   [](const RequestRecord& r) { return r.ok(); });
  if (ok == 0) return absl::UnavailableError("no request succeeded while measuring the capacity");
  return ok / kCapacitySeconds;
}

LoadOptions PoissonLoad(double rate, double duration_s, int64_t seed, int64_t timeout_ms) {
  LoadOptions load;
  load.mode = LoopMode::kOpen;
  load.arrival = Arrival::kPoisson;
  load.rate = rate;
  load.concurrency = 1000;
  load.duration_s = duration_s;
  load.seed = static_cast<uint64_t>(seed);
  load.timeout_ms = timeout_ms;
  return load;
}

bool WriteResultFile(absl::string_view command, const std::string& path, const std::string& text,
                     std::ostream& err) {
  std::ofstream file(path);
  file << text;
  if (!file) {
    err << "kiln-bench " << command << ": writing " << path << " failed\n";
    return false;
  }
  return true;
}

int64_t ErrorTotal(const std::map<std::string, int64_t>& errors) {
  int64_t total = 0;
  for (const auto& [name, count] : errors) total += count;
  return total;
}

std::string ErrorsText(const std::map<std::string, int64_t>& errors) {
  std::vector<std::string> parts;
  for (const auto& [name, count] : errors) parts.push_back(absl::StrCat(name, " ", count));
  return parts.empty() ? "none" : absl::StrJoin(parts, ", ");
}

std::vector<LoadWindow> CountInWindows(const std::vector<RequestRecord>& records,
                                       const std::vector<WindowSpan>& spans) {
  std::vector<LoadWindow> windows(spans.size());
  std::vector<std::vector<double>> latencies(spans.size());
  for (size_t w = 0; w < spans.size(); ++w) windows[w].span = spans[w];
  for (const RequestRecord& record : records) {
    for (size_t w = 0; w < spans.size(); ++w) {
      if (record.scheduled_ms < spans[w].from_ms || record.scheduled_ms >= spans[w].to_ms) {
        continue;
      }
      if (record.ok()) {
        latencies[w].push_back(record.latency_ms());
      } else {
        ++windows[w].errors[OutcomeName(record.code)];
      }
    }
  }
  for (size_t w = 0; w < spans.size(); ++w) {
    windows[w].latency = Summarize(std::move(latencies[w]));
  }
  return windows;
}

std::vector<WindowSpan> WholeSeconds(double end_ms) {
  std::vector<WindowSpan> seconds;
  for (int s = 0; s * 1000.0 < end_ms; ++s) {
    seconds.push_back({std::to_string(s), s * 1000.0, std::min((s + 1) * 1000.0, end_ms)});
  }
  return seconds;
}

double P99Ratio(const LatencySummary& before, const LatencySummary& later) {
  if (before.count == 0 || later.count == 0 || before.p99 <= 0) return 0;
  return later.p99 / before.p99;
}

std::string PhaseLatencyHeader() {
  return absl::StrFormat("%8s %6s %9s %9s %9s %9s", "window s", "count", "p50 ms", "p95 ms",
                         "p99 ms", "max ms");
}

std::string PhaseLatencyColumns(double from_ms, double to_ms, const LatencySummary& latency) {
  return absl::StrFormat("%8.2f %6d %9.2f %9.2f %9.2f %9.2f", (to_ms - from_ms) / 1000,
                         latency.count, latency.p50, latency.p95, latency.p99, latency.max);
}

nlohmann::ordered_json PhaseLatencyJson(const std::string& name, double from_ms, double to_ms,
                                        const LatencySummary& latency) {
  nlohmann::ordered_json entry;
  entry["name"] = name;
  entry["from_ms"] = RoundToThousandths(from_ms);
  entry["to_ms"] = RoundToThousandths(to_ms);
  entry["count"] = latency.count;
  entry["p50_ms"] = RoundToThousandths(latency.p50);
  entry["p95_ms"] = RoundToThousandths(latency.p95);
  entry["p99_ms"] = RoundToThousandths(latency.p99);
  entry["max_ms"] = RoundToThousandths(latency.max);
  return entry;
}

nlohmann::ordered_json ErrorsJson(const std::map<std::string, int64_t>& errors) {
  nlohmann::ordered_json json = nlohmann::ordered_json::object();
  for (const auto& [name, count] : errors) json[name] = count;
  return json;
}

}  // namespace kiln::bench
