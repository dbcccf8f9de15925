// One run of a scenario command, the same for every scenario: its work directory and logs, its
// result (one Report, printed as text and written as JSON), and what a failed run shows.
#ifndef KILN_BENCH_SCENARIO_RUN_H_
#define KILN_BENCH_SCENARIO_RUN_H_

#include <functional>
#include <iostream>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "bench/report.h"
#include "bench/scenario.h"

namespace kiln::bench {

// The files of one run: a fresh work directory ($TMPDIR/kiln-<name>-XXXXXX, for lock files and
// repositories) and the logs the run writes (in --log_dir, else in the work directory).
//
// Ownership: RunScenario makes it, hands it to the run, and removes the work directory after a
// run that succeeded. Not thread-safe: the run's main thread only.
class RunFiles {
 public:
  // A log of the run, and what wrote it ("server", "nginx").
  struct LogFile {
    std::string path;
    std::string what;
  };

  RunFiles(std::string work_dir, std::string log_dir);

  const std::string& work_dir() const { return work_dir_; }
  const std::string& log_dir() const { return log_dir_; }

  // <log_dir>/<name>, remembered as a log of this run that `what` writes: a failed run shows its
  // last lines.
  std::string Log(absl::string_view name, absl::string_view what = "server");
  // The log at `path` belongs to a server that ended well: a later failure does not show it.
  void Done(const std::string& path);
  // The logs a failure shows, in the order they were made.
  const std::vector<LogFile>& logs() const { return logs_; }

 private:
  std::string work_dir_;
  std::string log_dir_;
  std::vector<LogFile> logs_;
};

// What a run that ran to its end made: its report, and a failure found after the report was made
// (the report is printed and written all the same, then the failure is shown as a failed run's).
struct ScenarioOutcome {
  ScenarioOutcome(Report report, absl::Status failure = absl::OkStatus())  // NOLINT: implicit
      : report(std::move(report)), failure(std::move(failure)) {}
  Report report;
  absl::Status failure;
};

// The run of a scenario: gets the run's files, returns its outcome or why it failed.
using ScenarioRunFn = std::function<absl::StatusOr<ScenarioOutcome>(RunFiles& files)>;

// Runs one scenario after its flags were parsed: makes its RunFiles, calls `run`, and then
//  - when `run` failed: on `err` "kiln-bench <name>: <why>", each log's path and last lines
//    (Scenario::log_tail_lines), and where the logs are kept; returns kExitFailure;
//  - else prints the report's text on `out` and writes its JSON to options.json_path (when set;
//    "wrote <path>" on `out`); returns kExitOk, or, when the outcome holds a failure, shows it as
//    above and returns kExitFailure.
// The work directory is removed when the result is kExitOk and kept otherwise.
int RunScenario(const Scenario& scenario, const ScenarioOptions& options, const ScenarioRunFn& run,
                std::ostream& out = std::cout, std::ostream& err = std::cerr);

// Writes `text` to `path` for `kiln-bench <command>`; false, with "writing <path> failed" on
// `err`, when that fails.
bool WriteResultFile(absl::string_view command, const std::string& path, const std::string& text,
                     std::ostream& err);

}  // namespace kiln::bench

#endif  // KILN_BENCH_SCENARIO_RUN_H_
