// `kiln-bench scrape`: what Prometheus scraping costs a loaded server. It starts kiln-server with
// its metrics endpoint on a free loopback port, measures the model's capacity, and sends an
// open-loop load at a share of it in rounds of two phases: without scraping, then with a scrape
// every --interval_ms (GET /metrics). Both phases of a round send the same Poisson schedule (the
// same seed), so they differ only by the scraping and the machine's noise, and the rounds
// alternate so that drift falls on both sides. It reports the p50/p95/p99 of each kind of phase
// (pooled) and of each phase, p99 with scraping over p99 without, pooled and as the median of the
// rounds (kiln's target: <= 1.05), and the scrapes' own latency and size.
//
// The pure pieces (flags, phases, report, JSON) are declared here so that tests reach them
// without a server.
#ifndef KILN_BENCH_SCRAPE_COMMAND_H_
#define KILN_BENCH_SCRAPE_COMMAND_H_

#include <cstdint>
#include <map>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "bench/latency_stats.h"
#include "bench/load_generator.h"

namespace kiln::bench {

struct ScrapeOptions {
  std::string model_repository;
  std::string model;
  std::string server;  // resolved path of the kiln-server executable
  int64_t workers = 0;
  std::vector<std::string> server_args;
  double rate = 0;  // requests per second; 0 = load_share x the measured capacity
  double load_share = 0.7;
  int64_t interval_ms = 100;  // between scrapes, in the phases that scrape
  double phase_s = 10;        // each phase's length
  int64_t rounds = 3;         // pairs of phases: without scraping, then with
  int64_t batch = 1;
  int64_t seed = 0;
  int64_t timeout_s = 300;  // deadline for SERVING
  std::string json_path;
  std::string log_dir;

  double duration_s() const { return 2 * rounds * phase_s; }
};

// Parses and validates `args` (after "scrape"): std::nullopt on success; 0 after --help; 2 (with
// the reason on `err`) for a bad flag.
std::optional<int> ParseScrapeArgs(const std::vector<std::string>& args, ScrapeOptions* options,
                                   std::ostream& out, std::ostream& err);

// The requests scheduled in one phase, or in every phase of one kind.
struct ScrapePhase {
  std::string name;  // "off 1", "on 1", ...; "off" and "on" for the pooled ones
  bool scraping = false;
  double seconds = 0;      // of the schedule it covers
  LatencySummary latency;  // OK requests, from their scheduled time
  std::map<std::string, int64_t> errors;
};

// The phases of the load from each phase's records (RunLoad's), in order: even indexes without
// scraping, odd ones with; each lasted `phase_s`. Returns the pooled "off" and "on" phases, then
// each phase ("off 1", "on 1", "off 2", ...).
std::vector<ScrapePhase> ScrapePhases(const std::vector<std::vector<RequestRecord>>& phases,
                                      double phase_s);

struct ScrapeResult {
  double capacity_rps = 0;  // 0 when --rate was given
  double rate = 0;
  std::vector<ScrapePhase> phases;  // ScrapePhases
  LatencySummary scrape_latency;    // GET /metrics, milliseconds
  int64_t scrapes = 0;
  int64_t scrape_failures = 0;
  int64_t scrape_bytes = 0;  // of the last scrape
};

// p99 of the pooled "on" over the pooled "off"; 0 when either is empty.
double ScrapeP99Ratio(const ScrapeResult& result);
// The median over the rounds of each round's p99 "on" / p99 "off": one bad phase on either side
// moves it less than the pooled ratio. 0 when no round has both.
double ScrapeMedianRoundRatio(const ScrapeResult& result);

std::string FormatScrape(const ScrapeOptions& options, const ScrapeResult& result);
std::string ScrapeJson(const ScrapeOptions& options, const ScrapeResult& result);

int RunScrapeCommand(const std::vector<std::string>& args);

}  // namespace kiln::bench

#endif  // KILN_BENCH_SCRAPE_COMMAND_H_
