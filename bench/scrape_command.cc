#include "bench/scrape_command.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <iostream>
#include <memory>
#include <thread>
#include <utility>

#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/args.h"
#include "bench/load_phases.h"
#include "bench/oip_client.h"
#include "bench/server_launcher.h"
#include "bench/timing_sender.h"
#include "common/process.h"
#include "common/status_macros.h"
#include "httplib.h"

namespace kiln::bench {
namespace {

using Clock = std::chrono::steady_clock;

constexpr std::chrono::seconds kStopGrace(30);
constexpr int64_t kRequestTimeoutMs = 10000;

constexpr char kDescription[] =
    "What Prometheus scraping costs a loaded server. Starts kiln-server on --model_repository\n"
    "with its metrics endpoint on a free loopback port, measures --model's capacity (a closed\n"
    "loop, one call per warm worker, 4 s) unless --rate is given, and sends one open-loop\n"
    "Poisson load at --load_share of it in --rounds rounds of two phases of --phase_s: without\n"
    "scraping, then with a GET /metrics every --interval_ms (what a Prometheus with\n"
    "scrape_interval 100ms does). Both phases of a round send the same schedule (same seed),\n"
    "and the rounds alternate, so that a busy machine's drift falls on both sides.\n"
    "Reports p50/p95/p99 (OK requests, from their scheduled time) of the phases with and\n"
    "without scraping, pooled and per phase; p99 with / without, pooled and the median of the\n"
    "rounds (kiln's target: <= 1.05); and the scrapes' own latency and size. --json also writes "
    "every number. Exit status: 0 it\n"
    "ran (the numbers say whether the target was met), 1 the server or an RPC failed, 2 bad\n"
    "flags.";

void Add(const RequestRecord& record, ScrapePhase& phase, std::vector<double>& latencies) {
  if (record.ok()) {
    latencies.push_back(record.latency_ms());
  } else {
    ++phase.errors[OutcomeName(record.code)];
  }
}

nlohmann::ordered_json PhaseJson(const ScrapePhase& phase) {
  nlohmann::ordered_json json =
      PhaseLatencyJson(phase.name, 0, phase.seconds * 1000, phase.latency);
  json["scraping"] = phase.scraping;
  json["errors"] = ErrorsJson(phase.errors);
  return json;
}

}  // namespace

std::vector<ScrapePhase> ScrapePhases(const std::vector<std::vector<RequestRecord>>& phases,
                                      double phase_s) {
  std::vector<ScrapePhase> result(2 + phases.size());
  std::vector<std::vector<double>> latencies(result.size());
  result[0].name = "off";
  result[1].name = "on";
  result[1].scraping = true;
  for (size_t i = 0; i < phases.size(); ++i) {
    ScrapePhase& phase = result[2 + i];
    phase.scraping = i % 2 == 1;
    phase.name = absl::StrCat(phase.scraping ? "on " : "off ", i / 2 + 1);
    phase.seconds = phase_s;
    result[i % 2].seconds += phase_s;
    for (const RequestRecord& record : phases[i]) {
      Add(record, phase, latencies[2 + i]);
      Add(record, result[i % 2], latencies[i % 2]);
    }
  }
  for (size_t i = 0; i < result.size(); ++i) result[i].latency = Summarize(latencies[i]);
  return result;
}

double ScrapeP99Ratio(const ScrapeResult& result) {
  if (result.phases.size() < 2) return 0;
  return P99Ratio(result.phases[0].latency, result.phases[1].latency);
}

double ScrapeMedianRoundRatio(const ScrapeResult& result) {
  std::vector<double> ratios;
  for (size_t i = 2; i + 1 < result.phases.size(); i += 2) {
    const double ratio = P99Ratio(result.phases[i].latency, result.phases[i + 1].latency);
    if (ratio > 0) ratios.push_back(ratio);
  }
  return MedianAndSpread(ratios).median;
}

std::string FormatScrape(const ScrapeOptions& options, const ScrapeResult& result) {
  std::string text = absl::StrFormat(
      "kiln-bench scrape: %s, open-loop Poisson load at %.2f req/s%s; %d rounds of %.1f s "
      "without scraping, then %.1f s with a scrape every %d ms\n",
      options.model, result.rate,
      result.capacity_rps > 0 ? absl::StrFormat(" (%.0f%% of %.2f req/s measured)",
                                                options.load_share * 100, result.capacity_rps)
                              : "",
      options.rounds, options.phase_s, options.phase_s, options.interval_ms);
  absl::StrAppend(&text, absl::StrFormat("%-8s %s  errors\n", "phase", PhaseLatencyHeader()));
  for (const ScrapePhase& phase : result.phases) {
    absl::StrAppend(&text,
                    absl::StrFormat("%-8s %s  %s\n", phase.name,
                                    PhaseLatencyColumns(0, phase.seconds * 1000, phase.latency),
                                    ErrorsText(phase.errors)));
  }
  absl::StrAppend(&text,
                  absl::StrFormat("scrapes: %d (%d failed), GET /metrics %s, %d bytes each\n",
                                  result.scrapes, result.scrape_failures,
                                  FormatSummary(result.scrape_latency), result.scrape_bytes));
  absl::StrAppend(&text,
                  absl::StrFormat("p99 with scraping / without: pooled %.3f, median of the rounds "
                                  "%.3f (target: both <= 1.05)\n",
                                  ScrapeP99Ratio(result), ScrapeMedianRoundRatio(result)));
  return text;
}

std::string ScrapeJson(const ScrapeOptions& options, const ScrapeResult& result) {
  nlohmann::ordered_json doc;
  doc["command"] = "scrape";
  doc["model"] = options.model;
  doc["interval_ms"] = options.interval_ms;
  doc["phase_s"] = options.phase_s;
  doc["rounds"] = options.rounds;
  doc["capacity_rps"] = result.capacity_rps;
  doc["rate"] = result.rate;
  doc["p99_ratio"] = RoundToThousandths(ScrapeP99Ratio(result));
  doc["p99_median_round_ratio"] = RoundToThousandths(ScrapeMedianRoundRatio(result));
  doc["scrapes"] = result.scrapes;
  doc["scrape_failures"] = result.scrape_failures;
  doc["scrape_bytes"] = result.scrape_bytes;
  doc["scrape_p50_ms"] = RoundToThousandths(result.scrape_latency.p50);
  doc["scrape_p99_ms"] = RoundToThousandths(result.scrape_latency.p99);
  for (const ScrapePhase& phase : result.phases) doc["phases"].push_back(PhaseJson(phase));
  return doc.dump(2) + "\n";
}

std::optional<int> ParseScrapeArgs(const std::vector<std::string>& args, ScrapeOptions* options,
                                   std::ostream& out, std::ostream& err) {
  ScrapeOptions parsed;
  std::string server, server_args;
  std::string rate = "0", share = "0.7", phase = "10";
  FlagSet flags("kiln-bench scrape --model_repository=DIR --model=NAME [flags]", kDescription,
                {"kiln-bench scrape --model_repository=models --model=resnet18",
                 "kiln-bench scrape --model_repository=models --model=mlp --interval_ms=100 "
                 "--rounds=5 --json=/tmp/scrape.json"});
  flags.AddString("model_repository", &parsed.model_repository, "the models the server serves");
  flags.AddString("model", &parsed.model, "the model the load calls");
  AddServerFlag(flags, &server);
  flags.AddInt("workers", &parsed.workers,
               "the server's --workers, 0..256; 0 = each config's count, or automatic");
  flags.AddString("server_args", &server_args, "more server flags, space-separated words");
  flags.AddString("rate", &rate, "requests per second; 0 = --load_share of the measured capacity");
  flags.AddString("load_share", &share, "share of the capacity the load runs at, in (0, 1]");
  flags.AddInt("interval_ms", &parsed.interval_ms, "between scrapes, 10..60000 ms");
  flags.AddString("phase_s", &phase, "each phase's length, seconds");
  flags.AddInt("rounds", &parsed.rounds, "pairs of phases (without, then with scraping), 1..100");
  AddLoadRunFlags(flags, parsed,
                  "keep the server's log here; default: a temporary directory kept only when the "
                  "run fails");
  if (std::optional<int> exit = ParseFlagsOrExit(&flags, "scrape", args, out, err)) return *exit;
  auto problem = [&]() -> std::string {
    const std::string launch =
        ValidateLaunchFlags(parsed.model_repository, parsed.model, server, parsed.json_path,
                            parsed.log_dir, &parsed.server);
    if (!launch.empty()) return launch;
    for (const std::string& reason :
         {ValidateWorkersAndServerArgs(parsed.workers, server_args, &parsed.server_args),
          rate == "0" ? std::string() : ParsePositiveFlag("rate", rate, &parsed.rate),
          ParsePositiveFlag("load_share", share, &parsed.load_share),
          ParsePositiveFlag("phase_s", phase, &parsed.phase_s)}) {
      if (!reason.empty()) return reason;
    }
    for (const std::string& arg : parsed.server_args) {
      if (absl::StartsWith(arg, "--metrics_port")) {
        return "--server_args must not set --metrics_port: the bench chooses a free one";
      }
    }
    if (parsed.load_share > 1) return "--load_share must be in (0, 1]";
    if (parsed.interval_ms < 10 || parsed.interval_ms > 60000) {
      return "--interval_ms must be in 10..60000";
    }
    if (parsed.rounds < 1 || parsed.rounds > 100) return "--rounds must be in 1..100";
    return ValidateBatchSeedTimeout(parsed.batch, parsed.seed, parsed.timeout_s);
  }();
  if (!problem.empty()) {
    err << "kiln-bench scrape: " << problem << " (see --help)\n";
    return kExitUsage;
  }
  *options = std::move(parsed);
  return std::nullopt;
}

namespace {

absl::StatusOr<ScrapeResult> RunScrape(const ScrapeOptions& options, const std::string& work_dir,
                                       const std::string& log_path) {
  ASSIGN_OR_RETURN(const int metrics_port, FreeLoopbackPort());
  std::vector<std::string> server_args = options.server_args;
  server_args.push_back(absl::StrCat("--metrics_port=", metrics_port));
  ASSIGN_OR_RETURN(StartedServer started,
                   StartServing(options.server, options.model_repository, options.workers,
                                server_args, work_dir, log_path, options.timeout_s));
  const std::unique_ptr<LaunchedServer> server = std::move(started.server);
  const std::string address = absl::StrCat("127.0.0.1:", started.port);
  const std::shared_ptr<grpc::Channel> channel = CreateChannel(address);
  const std::unique_ptr<inference::GRPCInferenceService::Stub> stub =
      inference::GRPCInferenceService::NewStub(channel);
  const std::unique_ptr<KilnService::Stub> kiln = KilnService::NewStub(channel);
  ASSIGN_OR_RETURN(SyntheticRequest request, FetchLoadRequest(*stub, options.model, options.batch,
                                                              options.seed, kRequestTimeoutMs));
  ScrapeResult result;
  result.rate = options.rate;
  if (result.rate <= 0) {
    ASSIGN_OR_RETURN(const std::vector<int64_t> workers, WarmWorkerPids(*kiln, options.model));
    ASSIGN_OR_RETURN(result.capacity_rps,
                     MeasureCapacity(*stub, request.request, static_cast<int64_t>(workers.size()),
                                     kRequestTimeoutMs));
    result.rate = options.load_share * result.capacity_rps;
    std::cerr << "kiln-bench scrape: capacity " << result.capacity_rps << " req/s; load at "
              << result.rate << " req/s" << std::endl;
  }

  // Each phase is a load of its own, drained before the next starts; the two phases of round r
  // share the schedule of seed + r. The scraper runs only beside the phases that scrape: a GET
  // /metrics each interval_ms (from one scrape's start to the next's) over one kept-alive
  // connection, as Prometheus does.
  httplib::Client client("127.0.0.1", metrics_port);
  client.set_keep_alive(true);
  client.set_read_timeout(10, 0);
  std::vector<double> scrape_ms;
  std::vector<std::vector<RequestRecord>> phases;
  TimingSender sender(stub.get(), &request.request, kRequestTimeoutMs);
  for (int64_t round = 0; round < options.rounds; ++round) {
    for (const bool scraping : {false, true}) {
      std::cerr << "kiln-bench scrape: round " << round + 1 << " of " << options.rounds << ", "
                << (scraping ? "scraping" : "not scraping") << std::endl;
      const LoadOptions load =
          PoissonLoad(result.rate, options.phase_s, options.seed + round, kRequestTimeoutMs);
      std::atomic<bool> load_done{false};
      std::thread scraper([&] {
        const auto interval = std::chrono::milliseconds(options.interval_ms);
        while (scraping && !load_done.load()) {
          const Clock::time_point start = Clock::now();
          const httplib::Result got = client.Get("/metrics");
          ++result.scrapes;
          if (got && got->status == 200) {
            scrape_ms.push_back(MsBetween(start, Clock::now()));
            result.scrape_bytes = static_cast<int64_t>(got->body.size());
          } else {
            ++result.scrape_failures;
          }
          std::this_thread::sleep_until(start + interval);
        }
      });
      phases.push_back(
          RunLoad(load, [&sender](DoneFn done) { sender.Send(std::move(done)); }).records);
      load_done = true;
      scraper.join();
    }
  }
  result.scrape_latency = Summarize(scrape_ms);
  std::cerr << "kiln-bench scrape: load done; stopping the server" << std::endl;
  RETURN_IF_ERROR(server->Stop(kStopGrace).status());
  result.phases = ScrapePhases(phases, options.phase_s);
  return result;
}

}  // namespace

int RunScrapeCommand(const std::vector<std::string>& args) {
  ScrapeOptions options;
  if (std::optional<int> exit = ParseScrapeArgs(args, &options, std::cout, std::cerr)) {
    return *exit;
  }
  return RunWithOneServer<ScrapeResult>(
      "scrape", options.log_dir, options.json_path,
      [&](const std::string& work_dir, const std::string& log) {
        return RunScrape(options, work_dir, log);
      },
      [&](const ScrapeResult& result) { return FormatScrape(options, result); },
      [&](const ScrapeResult& result) { return ScrapeJson(options, result); });
}

}  // namespace kiln::bench
