// `kiln-bench scrape`: what Prometheus scraping costs a loaded server. It starts kiln-server with
// its metrics endpoint on a free loopback port, measures the model's capacity, and sends an
// open-loop load at a share of it in rounds of two phases: without scraping, then with a scrape
// every --interval_ms (GET /metrics). Both phases of a round send the same Poisson schedule (the
// same seed), so they differ only by the scraping and the machine's noise, and the rounds
// alternate so that drift falls on both sides. It reports the p50/p95/p99 of each kind of phase
// (pooled) and of each phase, p99 with scraping over p99 without, pooled and as the median of the
// rounds (kiln's target: <= 1.05), and the scrapes' own latency and size.
//
// The flags, the run, the phases and the report are the scenario harness's (bench/scenario.h).
// The pure pieces (flags, phases, report) are declared here so that tests reach them without a
// server.
#ifndef KILN_BENCH_SCRAPE_COMMAND_H_
#define KILN_BENCH_SCRAPE_COMMAND_H_

#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "bench/latency_stats.h"
#include "bench/load_generator.h"
#include "bench/phases.h"
#include "bench/report.h"
#include "bench/scenario.h"

namespace kiln::bench {

// The validated flags of one scrape invocation (--rate 0 is --load_share of the capacity).
struct ScrapeOptions : LoadScenarioOptions {
  int64_t interval_ms = 100;  // between scrapes, in the phases that scrape
  double phase_s = 10;        // each phase's length
  int64_t rounds = 3;         // pairs of phases: without scraping, then with

  double duration_s() const { return 2 * rounds * phase_s; }
};

// Parses and validates `args` (after "scrape"): std::nullopt on success; 0 after --help; 2 (with
// the reason on `err`) for a bad flag.
std::optional<int> ParseScrapeArgs(const std::vector<std::string>& args, ScrapeOptions* options,
                                   std::ostream& out, std::ostream& err);

// The phases of the load from each phase's records (RunLoad's), in order: even indexes without
// scraping, odd ones with; each lasted `phase_s`. Returns the pooled "off" and "on" phases, then
// each phase ("off 1", "on 1", "off 2", ...): the odd indexes are those with scraping. Each
// covers [0, its seconds of schedule).
std::vector<Phase> ScrapePhases(const std::vector<std::vector<RequestRecord>>& phases,
                                double phase_s);

struct ScrapeResult {
  double capacity_rps = 0;  // 0 when --rate was given
  double rate = 0;
  std::vector<Phase> phases;      // ScrapePhases
  LatencySummary scrape_latency;  // GET /metrics, milliseconds
  int64_t scrapes = 0;
  int64_t scrape_failures = 0;
  int64_t scrape_bytes = 0;  // of the last scrape
};

// p99 of the pooled "on" over the pooled "off"; 0 when either is empty.
double ScrapeP99Ratio(const ScrapeResult& result);
// The median over the rounds of each round's p99 "on" / p99 "off": one bad phase on either side
// moves it less than the pooled ratio. 0 when no round has both.
double ScrapeMedianRoundRatio(const ScrapeResult& result);

// The result: the setting, every phase (pooled and per round), the scrapes and the ratios. JSON:
// {"command", "model", "interval_ms", "phase_s", "rounds", "capacity_rps", "rate", "p99_ratio",
// "p99_median_round_ratio", "scrapes", "scrape_failures", "scrape_bytes", "scrape_p50_ms",
// "scrape_p99_ms", "phases": [{"name", "from_ms", "to_ms", "count", "p50_ms", "p95_ms",
// "p99_ms", "max_ms", "scraping", "errors": {NAME: n}}]}.
Report ScrapeReport(const ScrapeOptions& options, const ScrapeResult& result);

// Runs the sub-command. 0 when it ran (the numbers say whether the target was met); 1 when the
// server or an RPC failed (the reason and the log's tail on stderr); 2 for bad flags.
int RunScrapeCommand(const std::vector<std::string>& args);

}  // namespace kiln::bench

#endif  // KILN_BENCH_SCRAPE_COMMAND_H_
