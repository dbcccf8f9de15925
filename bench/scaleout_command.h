// `kiln-bench scaleout`: the scale-out scenario in miniature. Replica A serves a steady open-loop
// load; part-way through, replica B (the same model and flags) starts on the same machine, as a
// new pod does on a node during scale-out. What it costs A's tail latency while B warms, and how
// long B takes to become SERVING, is the number kiln's CPU handling (idle-priority warmup, passive
// OpenMP waiting, threads sized to the CPUs) has to keep small.
//
// Both replicas are started, watched and stopped by this process (bench/server_launcher.h); the
// flags, the run, the phases and the report are the scenario harness's (bench/scenario.h).
#ifndef KILN_BENCH_SCALEOUT_COMMAND_H_
#define KILN_BENCH_SCALEOUT_COMMAND_H_

#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "bench/load_generator.h"
#include "bench/phases.h"
#include "bench/report.h"
#include "bench/scenario.h"

namespace kiln::bench {

// The validated flags of one scaleout invocation (both replicas get --workers and --server_args;
// --rate and --batch are A's load's; --timeout_s is A's deadline for SERVING).
struct ScaleoutOptions : LoadScenarioOptions {
  ScaleoutOptions() { rate = 15; }
  double duration_s = 30;  // how long A's load runs
  double start_b_s = 6;    // when B starts, seconds into A's load
};

// Parses and validates `args` (after "scaleout"): std::nullopt on success; 0 after --help; 2
// (with the reason on `err`) for a bad flag.
std::optional<int> ParseScaleoutArgs(const std::vector<std::string>& args, ScaleoutOptions* options,
                                     std::ostream& out, std::ostream& err);

struct ScaleoutResult {
  double b_started_ms = 0;  // since A's load began
  // B SERVING, since A's load began; when B never was (b_error), the end of A's load.
  double b_serving_ms = 0;
  std::string b_error;        // why B did not become SERVING within A's load; "" when it did
  std::vector<Phase> phases;  // A's requests: before B, while B warms, after B is SERVING
  double b_ready_ms() const { return b_serving_ms - b_started_ms; }
  // A's p99 while B warms over its p99 before B started (0 when either has no requests).
  double p99_ratio() const;
  int64_t errors() const;  // over every phase
};

// Splits A's `records` (times since its load began) into before [skip_ms, b_started_ms), while B
// warms [b_started_ms, b_serving_ms] and after (b_serving_ms, end], by scheduled time.
ScaleoutResult SplitPhases(const std::vector<RequestRecord>& records, double skip_ms,
                           double b_started_ms, double b_serving_ms);

// The result. Text: A's setting and B's time to SERVING (or why it never was), one line per phase
// (count, p50, p95, p99, max, errors) and the p99 ratio. JSON: {"model", "workers",
// "server_args", "rate", "duration_s", "start_b_s", "b_ready_ms" (null when B never was SERVING),
// "b_error", "p99_ratio", "errors", "phases": [{"name", "from_ms", "to_ms", "count", "p50_ms",
// "p95_ms", "p99_ms", "max_ms", "errors": {NAME: n}}]}.
Report ScaleoutReport(const ScaleoutOptions& options, const ScaleoutResult& result);

// Runs the sub-command. 0 when both replicas served and B became SERVING within A's load; 1 when
// something failed (the reason and the logs' tails on stderr; when only B failed, A's phases are
// still reported and written, "while B warms" lasting to the end of A's load); 2 for bad flags.
int RunScaleoutCommand(const std::vector<std::string>& args);

}  // namespace kiln::bench

#endif  // KILN_BENCH_SCALEOUT_COMMAND_H_
