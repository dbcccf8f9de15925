#include "bench/scrape_command.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <iostream>
#include <memory>
#include <thread>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "bench/oip_client.h"
#include "bench/scenario_flags.h"
#include "bench/scenario_load.h"
#include "bench/scenario_run.h"
#include "bench/server_launcher.h"
#include "bench/timing_sender.h"
#include "common/process.h"
#include "common/status_macros.h"
#include "httplib.h"

namespace kiln::bench {
namespace {

using Clock = std::chrono::steady_clock;

const Scenario kScrape = {
    "scrape",
    "--model_repository=DIR --model=NAME [flags]",
    "What Prometheus scraping costs a loaded server. Starts kiln-server on --model_repository\n"
    "with its metrics endpoint on a free loopback port, measures --model's capacity (a closed\n"
    "loop, one call per warm worker, 4 s) unless --rate is given, and sends one open-loop\n"
    "Poisson load at --load_share of it in --rounds rounds of two phases of --phase_s: without\n"
    "scraping, then with a GET /metrics every --interval_ms (what a Prometheus with\n"
    "scrape_interval 100ms does). Both phases of a round send the same schedule (same seed),\n"
    "and the rounds alternate, so that a busy machine's drift falls on both sides.\n"
    "Reports p50/p95/p99 (OK requests, from their scheduled time) of the phases with and\n"
    "without scraping, pooled and per phase; p99 with / without, pooled and the median of the\n"
    "rounds (kiln's target: <= 1.05); and the scrapes' own latency and size. --json also "
    "writes every number. Exit status: 0 it\n"
    "ran (the numbers say whether the target was met), 1 the server or an RPC failed, 2 bad\n"
    "flags.",
    {"kiln-bench scrape --model_repository=models --model=resnet18",
     "kiln-bench scrape --model_repository=models --model=mlp --interval_ms=100 "
     "--rounds=5 --json=/tmp/scrape.json"}};

}  // namespace

std::vector<Phase> ScrapePhases(const std::vector<std::vector<RequestRecord>>& phases,
                                double phase_s) {
  std::vector<PhaseCounter> counters = {PhaseCounter({"off", 0, 0}), PhaseCounter({"on", 0, 0})};
  for (size_t i = 0; i < phases.size(); ++i) {
    counters.emplace_back(
        PhaseSpan{absl::StrCat(i % 2 == 1 ? "on " : "off ", i / 2 + 1), 0, phase_s * 1000});
    counters[i % 2].Extend(phase_s);
    for (const RequestRecord& record : phases[i]) {
      counters.back().Add(record);
      counters[i % 2].Add(record);
    }
  }
  std::vector<Phase> result;
  for (const PhaseCounter& counter : counters) result.push_back(counter.Finish());
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

Report ScrapeReport(const ScrapeOptions& options, const ScrapeResult& result) {
  Report report;
  report.Set("command", String("scrape"))
      .Set("model", String(options.model))
      .Set("interval_ms", Integer(options.interval_ms))
      .Set("phase_s", Number(options.phase_s, "%.1f"))
      .Set("rounds", Integer(options.rounds));
  SetLoadRate({result.rate, result.capacity_rps}, options.load_share, report);
  report.Line(absl::StrCat("kiln-bench scrape: {model}, open-loop Poisson load at {rate} req/s",
                           result.capacity_rps > 0 ? " ({measured})" : "",
                           "; {rounds} rounds of {phase_s} s without scraping, then {phase_s} s "
                           "with a scrape every {interval_ms} ms"));
  report.Set("p99_ratio", Number(ScrapeP99Ratio(result), "%.3f"))
      .Set("p99_median_round_ratio", Number(ScrapeMedianRoundRatio(result), "%.3f"))
      .Set("scrapes", Integer(result.scrapes))
      .Set("scrape_failures", Integer(result.scrape_failures))
      .Set("scrape_bytes", Integer(result.scrape_bytes))
      .Set("scrape_p50_ms", Number(result.scrape_latency.p50))
      .Set("scrape_p99_ms", Number(result.scrape_latency.p99))
      .Set("scrape_latency", TextOnly(FormatSummary(result.scrape_latency)));
  report.Table("phases",
               PhaseTable("phase", result.phases, {}, [](size_t i, const Phase&, Report& row) {
                 row.Set("scraping", Bool(i % 2 == 1));
               }));
  report.Line(
      "scrapes: {scrapes} ({scrape_failures} failed), GET /metrics {scrape_latency}, "
      "{scrape_bytes} bytes each");
  report.Line(
      "p99 with scraping / without: pooled {p99_ratio}, median of the rounds "
      "{p99_median_round_ratio} (target: both <= 1.05)");
  return report;
}

std::optional<int> ParseScrapeArgs(const std::vector<std::string>& args, ScrapeOptions* options,
                                   std::ostream& out, std::ostream& err) {
  ScrapeOptions parsed;
  ScenarioFlags flags(kScrape, &parsed);
  flags.flags().SetHelp("model_repository", "the models the server serves");
  flags.flags().SetHelp("model", "the model the load calls");
  flags.flags().SetHelp("workers",
                        "the server's --workers, 0..256; 0 = each config's count, or automatic");
  flags.AddRateOrShare(&parsed);
  flags.flags().AddInt("interval_ms", &parsed.interval_ms, "between scrapes, 10..60000 ms");
  flags.flags().AddDouble("phase_s", &parsed.phase_s, "each phase's length, seconds");
  flags.flags().AddInt("rounds", &parsed.rounds,
                       "pairs of phases (without, then with scraping), 1..100");
  flags.AddLoadFlags(&parsed);
  flags.AddResultFlags(
      "keep the server's log here (scrape.log); default: a temporary directory kept only when "
      "the run fails");
  std::optional<int> exit = flags.Parse(args, out, err, [&]() -> std::string {
    for (const std::string& arg : parsed.server_args) {
      if (absl::StartsWith(arg, "--metrics_port")) {
        return "--server_args must not set --metrics_port: the bench chooses a free one";
      }
    }
    if (parsed.interval_ms < 10 || parsed.interval_ms > 60000) {
      return "--interval_ms must be in 10..60000";
    }
    if (parsed.rounds < 1 || parsed.rounds > 100) return "--rounds must be in 1..100";
    return "";
  });
  if (!exit) *options = std::move(parsed);
  return exit;
}

namespace {

absl::StatusOr<ScenarioOutcome> RunScrape(const ScrapeOptions& options, RunFiles& files) {
  ASSIGN_OR_RETURN(const int metrics_port, FreeLoopbackPort());
  std::vector<std::string> server_args = options.server_args;
  server_args.push_back(absl::StrCat("--metrics_port=", metrics_port));
  ASSIGN_OR_RETURN(
      StartedServer started,
      StartServing(options.server, options.model_repository, options.workers, server_args,
                   files.work_dir(), files.Log("scrape.log"), options.timeout_s));
  const std::unique_ptr<LaunchedServer> server = std::move(started.server);
  const std::string address = absl::StrCat("127.0.0.1:", started.port);
  ASSIGN_OR_RETURN(const std::shared_ptr<grpc::Channel> channel, ConnectChannel(address));
  const std::unique_ptr<inference::GRPCInferenceService::Stub> stub =
      inference::GRPCInferenceService::NewStub(channel);
  const std::unique_ptr<KilnService::Stub> kiln = KilnService::NewStub(channel);
  ASSIGN_OR_RETURN(SyntheticRequest request, FetchLoadRequest(*stub, options.model, options.batch,
                                                              options.seed, kRequestTimeoutMs));
  ScrapeResult result;
  ASSIGN_OR_RETURN(const LoadRate rate, RateOrShareOfCapacity(options, "scrape", *stub, *kiln,
                                                              request.request, kRequestTimeoutMs));
  result.rate = rate.rate;
  result.capacity_rps = rate.capacity_rps;

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
  return ScenarioOutcome(ScrapeReport(options, result));
}

}  // namespace

int RunScrapeCommand(const std::vector<std::string>& args) {
  ScrapeOptions options;
  if (std::optional<int> exit = ParseScrapeArgs(args, &options, std::cout, std::cerr)) {
    return *exit;
  }
  return RunScenario(kScrape, options, [&](RunFiles& files) { return RunScrape(options, files); });
}

}  // namespace kiln::bench
