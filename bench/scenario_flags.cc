#include "bench/scenario_flags.h"

#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "bench/server_launcher.h"

namespace kiln::bench {

ScenarioFlags::ScenarioFlags(const Scenario& scenario, ScenarioOptions* options)
    : scenario_(scenario),
      options_(options),
      flags_(absl::StrCat("kiln-bench ", scenario.name, " ", scenario.usage), scenario.description,
             scenario.examples) {
  flags_.AddString("model_repository", &options->model_repository,
                   "the model repository the server serves (required)");
  flags_.AddString("model", &options->model, "the model the load goes to (required)");
  flags_.AddString("server", &server_,
                   "kiln-server executable; default: ../server/kiln-server beside kiln-bench, "
                   "else kiln-server in PATH");
  flags_.AddInt("workers", &options->workers,
                "the server's --workers, 0..256; 0 = the config's count, or as many as the CPUs "
                "allow");
  flags_.AddString("server_args", &server_args_,
                   "more server flags, space-separated --name=value words (no quoting)");
}

void ScenarioFlags::AddRate(LoadScenarioOptions* options, std::string help) {
  flags_.AddDouble("rate", &options->rate, std::move(help));
}

void ScenarioFlags::AddRateOrShare(LoadScenarioOptions* options) {
  flags_.AddDouble("rate", &options->rate,
                   "requests per second; 0 = --load_share of the measured capacity",
                   FlagSet::Range::kNonNegative);
  flags_.AddDouble("load_share", &options->load_share,
                   "share of the capacity the load runs at, in (0, 1]");
  share_ = options;
}

void ScenarioFlags::AddSkip(LoadScenarioOptions* options, std::string help) {
  flags_.AddDouble("skip_s", &options->skip_s, std::move(help), FlagSet::Range::kNonNegative);
}

void ScenarioFlags::AddLoadFlags(LoadScenarioOptions* options) {
  flags_.AddInt("batch", &options->batch, "batch size of the requests");
  flags_.AddInt("seed", &options->seed, "seed of the inputs and of the Poisson schedule");
  load_ = options;
}

void ScenarioFlags::AddResultFlags(std::string log_dir_help) {
  flags_.AddInt("timeout_s", &options_->timeout_s, "deadline for SERVING, in seconds");
  flags_.AddString("json", &options_->json_path, "also write the result to this file");
  flags_.AddString("log_dir", &options_->log_dir, std::move(log_dir_help));
}

std::string ScenarioFlags::CheckCommon() {
  const std::string launch =
      ValidateLaunchFlags(options_->model_repository, options_->model, server_, options_->json_path,
                          options_->log_dir, &options_->server,
                          /*need_server=*/!(server_not_needed_ && server_not_needed_()));
  if (!launch.empty()) return launch;
  if (options_->workers < 0 || options_->workers > 256) {
    return absl::StrCat("--workers must be in 0..256, got ", options_->workers);
  }
  absl::StatusOr<std::vector<std::string>> server_args = SplitServerArgs(server_args_);
  if (!server_args.ok()) return std::string(server_args.status().message());
  options_->server_args = *std::move(server_args);
  if (load_ != nullptr) {
    if (load_->batch < 1) return "--batch must be >= 1";
    if (load_->seed < 0) return "--seed must be >= 0";
  }
  if (options_->timeout_s < 1 || options_->timeout_s > 86400) {
    return absl::StrCat("--timeout_s must be in 1..86400, got ", options_->timeout_s);
  }
  if (share_ != nullptr && share_->load_share > 1) {
    return "--load_share must be in (0, 1]";
  }
  return "";
}

std::optional<int> ScenarioFlags::Parse(const std::vector<std::string>& args, std::ostream& out,
                                        std::ostream& err,
                                        const std::function<std::string()>& check) {
  if (std::optional<int> exit = ParseFlagsOrExit(&flags_, scenario_.name, args, out, err)) {
    return exit;
  }
  std::string problem = CheckCommon();
  if (problem.empty() && check) problem = check();
  if (problem.empty()) return std::nullopt;
  err << "kiln-bench " << scenario_.name << ": " << problem << "\nrun 'kiln-bench "
      << scenario_.name << " --help' for its flags\n";
  return kExitUsage;
}

}  // namespace kiln::bench
