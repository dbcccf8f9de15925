// What a scenario command of kiln-bench (coldstart, scaleout, elastic, reload, scrape, lb) is:
// a name and a help text, and options of which the common part is the same for all of them. The
// harness around a scenario takes them: its flags (bench/scenario_flags.h), its run and result
// (bench/scenario_run.h), its phases (bench/phases.h) and its report (bench/report.h); a scenario
// holds only what is its own.
#ifndef KILN_BENCH_SCENARIO_H_
#define KILN_BENCH_SCENARIO_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace kiln::bench {

// One scenario command's description.
struct Scenario {
  std::string name;         // the sub-command ("scaleout"): messages, run directory, --help
  std::string usage;        // the usage line after "kiln-bench <name> "
  std::string description;  // --help's paragraph
  std::vector<std::string> examples;  // full command lines
  size_t log_tail_lines = 10;         // how many lines of each log a failed run shows
};

// The options every scenario has (ScenarioFlags binds them to the flags of the same names): the
// kiln-server it starts and what it serves, how long it may take to start, and where the results
// and the logs go. Each scenario's options derive from it (or from LoadScenarioOptions), adding
// its own.
struct ScenarioOptions {
  std::string model_repository;
  std::string model;
  std::string server;   // resolved path of the kiln-server executable
  int64_t workers = 0;  // the server's --workers; 0 = the config's count, or automatic
  std::vector<std::string> server_args;  // split --server_args
  int64_t timeout_s = 300;               // deadline for SERVING
  std::string json_path;                 // "" = no JSON file
  std::string log_dir;  // "" = logs in the run's work directory, kept only on failure
};

// ...and those of a scenario that sends an open-loop load to what it started.
struct LoadScenarioOptions : ScenarioOptions {
  double rate = 0;  // requests per second; 0 = load_share x the measured capacity (AddRateOrShare)
  double load_share = 0.7;
  double skip_s = 1;  // the load's first seconds, left out of its first phase
  int64_t batch = 1;
  int64_t seed = 0;  // of the inputs and of the Poisson schedule
};

}  // namespace kiln::bench

#endif  // KILN_BENCH_SCENARIO_H_
