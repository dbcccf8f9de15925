// The flags of a scenario command: the common ones, registered and checked here alike for every
// scenario, and the scenario's own between them.
#ifndef KILN_BENCH_SCENARIO_FLAGS_H_
#define KILN_BENCH_SCENARIO_FLAGS_H_

#include <functional>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "bench/args.h"
#include "bench/scenario.h"

namespace kiln::bench {

// One scenario's flag set. The constructor registers --model_repository, --model, --server,
// --workers and --server_args; the Add* methods the other common flags; flags() the scenario's
// own. --help lists them in the order they were added. Parse() parses, then checks the common
// flags (ValidateLaunchFlags: the repository, the model, the server, --json, --log_dir; then
// --workers in 0..256, --server_args, --batch, --seed, --timeout_s, --load_share) and then the
// scenario's own check.
//
// Ownership: on the stack of the scenario's parse function, next to the options it binds, which
// must outlive it. Not thread-safe (flags are parsed once, on the main thread).
class ScenarioFlags {
 public:
  ScenarioFlags(const Scenario& scenario, ScenarioOptions* options);
  ScenarioFlags(const ScenarioFlags&) = delete;
  ScenarioFlags& operator=(const ScenarioFlags&) = delete;

  // --rate: the load's requests per second, > 0.
  void AddRate(LoadScenarioOptions* options, std::string help);
  // --rate, whose 0 (the default) is --load_share of the capacity the scenario measures, and
  // --load_share, in (0, 1].
  void AddRateOrShare(LoadScenarioOptions* options);
  // --skip_s: the load's first seconds, left out of its first phase; >= 0.
  void AddSkip(LoadScenarioOptions* options, std::string help);
  // --batch (>= 1) and --seed (>= 0) of the load's requests.
  void AddLoadFlags(LoadScenarioOptions* options);
  // --timeout_s (1..86400), --json and --log_dir, whose help says which logs are kept there.
  void AddResultFlags(std::string log_dir_help);

  // The server executable (--server) is not looked for when `not_needed` returns true at check
  // time: the scenario starts another server instead (coldstart --naive_server).
  void ServerNotNeededWhen(std::function<bool()> not_needed) {
    server_not_needed_ = std::move(not_needed);
  }
  // The scenario's own flags, and SetHelp for the wording of a common one.
  FlagSet& flags() { return flags_; }

  // Parses `args` (after the command's name) into the bound options. std::nullopt when the
  // command should go on; kExitOk after --help (the usage on `out`); kExitUsage for a bad flag
  // ("kiln-bench <name>: <why>" and a hint on `err`). `check` sees the parsed options and returns
  // the first problem with the scenario's own flags, or "".
  std::optional<int> Parse(const std::vector<std::string>& args, std::ostream& out,
                           std::ostream& err, const std::function<std::string()>& check = {});

 private:
  std::string CheckCommon();

  const Scenario& scenario_;
  ScenarioOptions* options_;
  LoadScenarioOptions* load_ = nullptr;   // set by AddLoadFlags
  LoadScenarioOptions* share_ = nullptr;  // set by AddRateOrShare
  std::string server_;                    // --server as given
  std::string server_args_;               // --server_args as given
  std::function<bool()> server_not_needed_;
  FlagSet flags_;
};

}  // namespace kiln::bench

#endif  // KILN_BENCH_SCENARIO_FLAGS_H_
