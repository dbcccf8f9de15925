#include "bench/scenario_run.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "bench/args.h"
#include "bench/server_launcher.h"

namespace kiln::bench {
namespace {

// "kiln-bench <name>: <why>", then each log (its path and last lines), then where they are kept.
void ShowFailure(const Scenario& scenario, const absl::Status& why, const RunFiles& files,
                 std::ostream& err) {
  err << "kiln-bench " << scenario.name << ": " << why.message() << "\n";
  for (const RunFiles::LogFile& log : files.logs()) {
    err << log.what << " log (kept): " << log.path << "\n";
    const std::string tail = FileTail(log.path, scenario.log_tail_lines);
    if (!tail.empty()) err << "--- last lines of the log ---\n" << tail << "\n---\n";
  }
  err << "logs kept in " << files.log_dir() << "\n";
}

}  // namespace

RunFiles::RunFiles(std::string work_dir, std::string log_dir)
    : work_dir_(std::move(work_dir)), log_dir_(std::move(log_dir)) {}

std::string RunFiles::Log(absl::string_view name, absl::string_view what) {
  std::string path = absl::StrCat(log_dir_, "/", name);
  logs_.push_back({path, std::string(what)});
  return path;
}

void RunFiles::Done(const std::string& path) {
  logs_.erase(std::remove_if(logs_.begin(), logs_.end(),
                             [&path](const LogFile& log) { return log.path == path; }),
              logs_.end());
}

int RunScenario(const Scenario& scenario, const ScenarioOptions& options, const ScenarioRunFn& run,
                std::ostream& out, std::ostream& err) {
  const std::optional<std::string> work_dir = MakeRunDir(scenario.name, err);
  if (!work_dir) return kExitFailure;
  RunFiles files(*work_dir, options.log_dir.empty() ? *work_dir : options.log_dir);
  absl::StatusOr<ScenarioOutcome> outcome = run(files);
  if (!outcome.ok()) {
    ShowFailure(scenario, outcome.status(), files, err);
    return kExitFailure;
  }
  out << outcome->report.Text() << std::flush;
  if (!options.json_path.empty()) {
    if (!WriteResultFile(scenario.name, options.json_path, outcome->report.Json(), err)) {
      return kExitFailure;
    }
    out << "wrote " << options.json_path << "\n";
  }
  if (!outcome->failure.ok()) {
    ShowFailure(scenario, outcome->failure, files, err);
    return kExitFailure;
  }
  std::error_code error;
  std::filesystem::remove_all(*work_dir, error);
  return kExitOk;
}

bool WriteResultFile(absl::string_view command, const std::string& path, const std::string& text,
                     std::ostream& err) {
  std::ofstream file(path, std::ios::trunc);
  file << text;
  file.close();
  if (!file) {
    err << "kiln-bench " << command << ": writing " << path << " failed\n";
    return false;
  }
  return true;
}

}  // namespace kiln::bench
