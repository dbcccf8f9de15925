#include "bench/scenario_load.h"

#include <algorithm>
#include <future>
#include <iostream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/timing_sender.h"
#include "common/process.h"
#include "common/status_macros.h"

namespace kiln::bench {

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

absl::Status WaitServingWithin(int port, const LaunchedServer& server, int64_t timeout_s) {
  const std::unique_ptr<grpc::health::v1::Health::Stub> watch =
      grpc::health::v1::Health::NewStub(ServerChannel(absl::StrCat("127.0.0.1:", port)));
  return WaitServing(*watch, server, server.started_at() + std::chrono::seconds(timeout_s),
                     absl::StrCat("--timeout_s=", timeout_s))
      .status();
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

absl::StatusOr<LoadRate> RateOrShareOfCapacity(const LoadScenarioOptions& options,
                                               absl::string_view command,
                                               inference::GRPCInferenceService::Stub& stub,
                                               KilnService::Stub& kiln,
                                               const inference::ModelInferRequest& request,
                                               int64_t timeout_ms) {
  if (options.rate > 0) return LoadRate{options.rate, 0};
  ASSIGN_OR_RETURN(const std::vector<int64_t> workers, WarmWorkerPids(kiln, options.model));
  LoadRate rate;
  ASSIGN_OR_RETURN(
      rate.capacity_rps,
      MeasureCapacity(stub, request, static_cast<int64_t>(workers.size()), timeout_ms));
  rate.rate = options.load_share * rate.capacity_rps;
  std::cerr << "kiln-bench " << command << ": capacity " << rate.capacity_rps << " req/s; load at "
            << rate.rate << " req/s" << std::endl;
  return rate;
}

void SetLoadRate(const LoadRate& rate, double load_share, Report& report) {
  report.Set("capacity_rps", Number(rate.capacity_rps))
      .Set("rate", Number(rate.rate))
      .Set("measured",
           TextOnly(rate.capacity_rps > 0 ? absl::StrFormat("%.0f%% of %.2f req/s measured",
                                                            load_share * 100, rate.capacity_rps)
                                          : ""));
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

}  // namespace kiln::bench
