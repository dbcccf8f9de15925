// `kiln-bench reload`: what rolling out a new model version costs a loaded server. It builds a
// repository of its own (the model under test and, beside it, the models it must leave alone,
// their files linked from --model_repository), starts kiln-server on it, measures the model's
// capacity, and sends an open-loop load at a share of it. Part-way through, a version 2 of the
// model appears in the repository and a reload is asked for (RepositoryModelLoad, or SIGHUP);
// with --bad_version, version 2 is not TorchScript and must never serve. It reports p50/p95/p99
// per second and per phase (before the reload, during it, after the switch), failed requests,
// cold-shape hits, which version answered, the switch time, the process tree's PSS through the
// switch, and whether the other models kept their workers (same pids).
//
// The flags, the run, the phases and the report are the scenario harness's (bench/scenario.h).
// The pure pieces (flags, phases, seconds, report) are declared here so that tests reach them
// without a server.
#ifndef KILN_BENCH_RELOAD_COMMAND_H_
#define KILN_BENCH_RELOAD_COMMAND_H_

#include <cstdint>
#include <map>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "bench/load_generator.h"
#include "bench/phases.h"
#include "bench/report.h"
#include "bench/scenario.h"
#include "bench/timing_sender.h"

namespace kiln::bench {

// The validated flags of one reload invocation: --model_repository is where the models' files
// come from, --model the one rolled out to version 2; --rate 0 is --load_share of the capacity.
struct ReloadOptions : LoadScenarioOptions {
  std::vector<std::string> others;  // served beside it, unchanged
  bool hup = false;                 // trigger: SIGHUP instead of RepositoryModelLoad
  bool bad_version = false;         // version 2's model.pt is not TorchScript
  double before_s = 8;              // load before the reload
  double reload_budget_s = 30;      // the longest the reload may take within the load
  double after_s = 8;  // load after the switch (within the budget's remainder and this)

  std::string NewVersion() const { return "2"; }
  // The load's length: before, the reload's budget, after.
  double duration_s() const { return before_s + reload_budget_s + after_s; }
};

// Parses and validates `args` (after "reload"): std::nullopt on success; 0 after --help; 2 (with
// the reason on `err`) for a bad flag.
std::optional<int> ParseReloadArgs(const std::vector<std::string>& args, ReloadOptions* options,
                                   std::ostream& out, std::ostream& err);

// "before" [skip_ms, trigger_ms), "during" [trigger_ms, switched_ms), "after" [switched_ms,
// end_ms) of `records` (RunLoad's) and their `timings` (JoinTimings': each phase's cold-shape
// hits and versions). A switched_ms below trigger_ms (the reload never finished) leaves "after"
// empty and "during" to the end.
std::vector<Phase> SplitReloadPhases(const std::vector<RequestRecord>& records,
                                     const std::vector<RequestTiming>& timings, double skip_ms,
                                     double trigger_ms, double switched_ms, double end_ms);

// The same, one phase per whole second of the load ("0", "1", ...) up to end_ms.
std::vector<Phase> PerSecond(const std::vector<RequestRecord>& records,
                             const std::vector<RequestTiming>& timings, double end_ms);

struct ReloadResult {
  double capacity_rps = 0;  // measured (closed loop); 0 when --rate was given
  double rate = 0;          // the load's
  double trigger_ms = 0;    // since the load's start
  double switched_ms = -1;  // the reload's end (RPC answered, or the new version seen); < 0: never
  std::string reload_outcome;  // "OK", or the RPC's / the index's error
  double first_new_ms = -1;    // the first OK response from the new version; < 0: none
  std::vector<Phase> phases;
  std::vector<Phase> seconds;
  int64_t pss_before_kb = 0;  // the tree's PSS just before the reload
  int64_t pss_peak_kb = 0;    // its peak from the reload to the switch (sampled every 250 ms)
  int64_t pss_after_kb = 0;   // at the load's end
  // Per other model: whether its warm workers' pids after the reload are those before.
  std::map<std::string, bool> others_kept_workers;

  double switch_ms() const { return switched_ms < 0 ? -1 : switched_ms - trigger_ms; }
  double p99_ratio() const;  // during / before
  int64_t errors() const;
  int64_t cold_shape_hits() const;
  int64_t new_version_responses() const;
};

// The result: the setting, the phases (before, during, after) and the seconds, each with its
// cold-shape hits and the versions that answered, the p99 ratio, the switch, the tree's PSS and
// whether the others kept their workers. JSON keys: "command", "model", "others", "trigger",
// "bad_version", "capacity_rps", "rate", "trigger_ms", "switched_ms", "switch_ms", "first_new_ms"
// (-1: none), "reload_outcome", "p99_ratio", "errors", "cold_shape_hits", "new_version_responses",
// "pss_before_kb", "pss_peak_kb", "pss_after_kb", "others_kept_workers": {MODEL: bool}, "phases"
// and "seconds": [{"name", "from_ms", "to_ms", "count", "p50_ms", "p95_ms", "p99_ms", "max_ms",
// "cold_shape_hits", "versions": {VERSION: n}, "errors": {NAME: n}}].
Report ReloadReport(const ReloadOptions& options, const ReloadResult& result);

// Runs the sub-command. 0 when it ran (targets met or not: the numbers say so); 1 when the server
// or an RPC failed (the reason and the log's tail on stderr); 2 for bad flags.
int RunReloadCommand(const std::vector<std::string>& args);

}  // namespace kiln::bench

#endif  // KILN_BENCH_RELOAD_COMMAND_H_
