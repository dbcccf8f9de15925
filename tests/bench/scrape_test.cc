// kiln-bench scrape's pure pieces: its flags, the alternating phases, and the report.
#include "bench/scrape_command.h"

#include <catch2/catch.hpp>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/test_paths.h"

namespace kiln::bench {
namespace {

using Catch::Matchers::Contains;

RequestRecord Ok(double scheduled_ms, double latency_ms) {
  return {scheduled_ms, scheduled_ms, scheduled_ms + latency_ms, 0};
}

TEST_CASE("scrape: the phases alternate without and with scraping, pooled and per round",
          "[bench][scrape]") {
  // 2 rounds of 1 s phases: off 1, on 1, off 2, on 2.
  const std::vector<std::vector<RequestRecord>> records = {
      {Ok(100, 10), Ok(400, 12), Ok(900, 8)},  // off 1
      {Ok(200, 20), {500, 500, -1, 14}},       // on 1 (an UNAVAILABLE)
      {Ok(600, 11)},                           // off 2
      {Ok(100, 30), Ok(900, 25)},              // on 2
  };
  const std::vector<Phase> phases = ScrapePhases(records, 1);
  REQUIRE(phases.size() == 2 + 4);
  CHECK(phases[0].name == "off");
  CHECK(phases[0].latency.count == 4);
  CHECK(phases[0].latency.max == 12);
  CHECK(phases[0].seconds() == 2);
  CHECK(phases[1].name == "on");
  CHECK(phases[1].latency.count == 3);
  CHECK(phases[1].latency.max == 30);
  CHECK(phases[1].errors.at("UNAVAILABLE") == 1);
  CHECK(phases[2].name == "off 1");
  CHECK(phases[3].name == "on 1");
  CHECK(phases[3].latency.count == 1);
  CHECK(phases[5].name == "on 2");
  CHECK(phases[5].latency.count == 2);

  ScrapeOptions options;
  options.model = "mlp";
  options.rounds = 2;
  options.phase_s = 1;
  ScrapeResult result;
  result.rate = 70;
  result.capacity_rps = 100;
  result.phases = phases;
  result.scrapes = 20;
  result.scrape_bytes = 30000;
  result.scrape_latency.p50 = 1.5;
  CHECK(ScrapeP99Ratio(result) == Approx(30.0 / 12));
  // Round 1: 20 / 12; round 2: 30 / 11; the median of two is their mean.
  CHECK(ScrapeMedianRoundRatio(result) == Approx((20.0 / 12 + 30.0 / 11) / 2));
  const Report report = ScrapeReport(options, result);
  const std::string text = report.Text();
  CHECK_THAT(text, !Contains("?}"));  // every value a line names was set
  CHECK_THAT(text, Contains("mlp, open-loop Poisson load at 70.00 req/s (70% of 100.00 req/s "
                            "measured); 2 rounds of 1.0 s without scraping, then 1.0 s with a "
                            "scrape every 100 ms") &&
                       Contains("scrapes: 20 (0 failed)") &&
                       Contains("p99 with scraping / without: pooled 2.500, median of the rounds "
                                "2.197 (target: both <= 1.05)"));
  CHECK_THAT(report.Json(), Contains("\"p99_ratio\": 2.5") && Contains("\"name\": \"on 2\""));
  // The odd phases scrape: the pooled "on", then each round's.
  const nlohmann::json doc = nlohmann::json::parse(report.Json());
  CHECK_FALSE(doc["phases"][0]["scraping"].get<bool>());
  CHECK(doc["phases"][1]["scraping"].get<bool>());
  CHECK_FALSE(doc["phases"][4]["scraping"].get<bool>());
  CHECK(doc["phases"][5]["scraping"].get<bool>());
  CHECK(doc["phases"][0]["to_ms"] == 2000.0);
}

TEST_CASE("scrape: bad flags are refused with the reason", "[bench][scrape]") {
  const std::string models = kiln::testing::ModelsDir();
  const auto refused = [&](std::vector<std::string> args) {
    ScrapeOptions options;
    std::ostringstream out, err;
    args.insert(args.begin(), {"--model_repository=" + models, "--model=mlp"});
    CHECK(ParseScrapeArgs(args, &options, out, err) == std::optional<int>(2));
    return err.str();
  };
  CHECK_THAT(refused({"--interval_ms=5"}), Contains("--interval_ms must be in 10..60000"));
  CHECK_THAT(refused({"--rounds=0"}), Contains("--rounds must be in 1..100"));
  CHECK_THAT(refused({"--phase_s=0"}), Contains("--phase_s"));
  CHECK_THAT(refused({"--server_args=--metrics_port=9"}),
             Contains("--server_args must not set --metrics_port"));
  ScrapeOptions options;
  std::ostringstream out, err;
  REQUIRE_FALSE(
      ParseScrapeArgs({"--model_repository=" + models, "--model=mlp", "--rounds=4", "--phase_s=5"},
                      &options, out, err)
          .has_value());
  CHECK(options.duration_s() == 2 * 4 * 5);
  CHECK(options.interval_ms == 100);
}

}  // namespace
}  // namespace kiln::bench
