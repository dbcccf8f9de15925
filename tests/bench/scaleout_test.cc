// kiln-bench scaleout without servers: A's requests split by phase, the report, the JSON and the
// flags. (tests/integration/kiln_bench_coldstart_test.cc runs it against real servers.)
#include <catch2/catch.hpp>

#include <sys/stat.h>

#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench/scaleout_command.h"
#include "tests/test_paths.h"

namespace kiln::bench {
namespace {

using Catch::Matchers::Contains;

RequestRecord Ok(double scheduled_ms, double latency_ms) {
  return RequestRecord{scheduled_ms, scheduled_ms, scheduled_ms + latency_ms, 0};
}

RequestRecord Failed(double scheduled_ms, int code) {
  return RequestRecord{scheduled_ms, scheduled_ms, scheduled_ms + 1, code};
}

std::vector<RequestRecord> Records() {
  return {
      Ok(500, 99),  // skipped: A's own first second
      Ok(1000, 10),     Ok(2000, 20),
      Ok(3000, 30),  // before B (b starts at 4000)
      Ok(4000, 40),     Ok(5000, 80),
      Failed(5500, 14),  // while B warms (until 6000)
      Ok(6000, 60),      // the SERVING instant still counts as warming
      Ok(7000, 15),     Failed(8000, kDroppedClientCap),  // after
  };
}

TEST_CASE("scaleout: A's requests split by phase on their scheduled time", "[scaleout]") {
  const ScaleoutResult result = SplitPhases(Records(), 1000, 4000, 6000);
  REQUIRE(result.phases.size() == 3);
  CHECK(result.b_ready_ms() == 2000);
  const Phase& before = result.phases[0];
  CHECK(before.name == "before B");
  CHECK(before.latency.count == 3);
  CHECK(before.latency.max == 30);
  CHECK(before.errors.empty());
  const Phase& warming = result.phases[1];
  CHECK(warming.latency.count == 3);
  CHECK(warming.latency.max == 80);
  CHECK(warming.errors.at("UNAVAILABLE") == 1);
  const Phase& after = result.phases[2];
  CHECK(after.latency.count == 1);
  CHECK(after.errors.at("DROPPED_CLIENT_CAP") == 1);
  CHECK(after.to_ms == 8000);
  CHECK(result.errors() == 2);
  CHECK(result.p99_ratio() == Approx(80.0 / 30.0));
}

TEST_CASE("scaleout: no requests in a phase gives no ratio", "[scaleout]") {
  const ScaleoutResult result = SplitPhases({Ok(5000, 10)}, 1000, 4000, 6000);
  CHECK(result.phases[0].latency.count == 0);
  CHECK(result.p99_ratio() == 0);
}

TEST_CASE("scaleout: the report and the JSON", "[scaleout]") {
  ScaleoutOptions options;
  options.model = "resnet18";
  options.rate = 15;
  options.server_args = {"--warmup_priority=normal"};
  const ScaleoutResult result = SplitPhases(Records(), 1000, 4000, 6000);
  const std::string text = ScaleoutReport(options, result).Text();
  CHECK_THAT(text, !Contains("?}"));  // every value a line names was set
  CHECK_THAT(text, Contains("replica A: resnet18 at 15.00 req/s (Poisson); replica B started "
                            "4.00 s into A's load, SERVING after 2000.0 ms\n"));
  CHECK_THAT(text, Contains("while B warms"));
  CHECK_THAT(text, Contains("UNAVAILABLE 1"));
  CHECK_THAT(text, Contains("A's p99 while B warms / before: 2.67x; errors: 2\n"));

  const nlohmann::json doc = nlohmann::json::parse(ScaleoutReport(options, result).Json());
  CHECK(doc["model"] == "resnet18");
  CHECK(doc["server_args"] == "--warmup_priority=normal");
  CHECK(doc["b_ready_ms"] == 2000.0);
  CHECK(doc["p99_ratio"] == Approx(2.667));
  CHECK(doc["errors"] == 2);
  REQUIRE(doc["phases"].size() == 3);
  CHECK(doc["phases"][1]["name"] == "while B warms");
  CHECK(doc["phases"][1]["count"] == 3);
  CHECK(doc["phases"][1]["p99_ms"] == 80.0);
  CHECK(doc["phases"][1]["errors"]["UNAVAILABLE"] == 1);
  CHECK(doc["b_error"] == "");

  ScaleoutResult never = result;
  never.b_error = "kiln-server exited before SERVING: exit code 1";
  CHECK_THAT(ScaleoutReport(options, never).Text(),
             Contains("4.00 s into A's load, never SERVING: kiln-server exited before SERVING: "
                      "exit code 1\n"));
  const nlohmann::json failed = nlohmann::json::parse(ScaleoutReport(options, never).Json());
  CHECK(failed["b_ready_ms"].is_null());
  CHECK(failed["b_error"] == never.b_error);
}

TEST_CASE("scaleout: flags", "[scaleout]") {
  kiln::testing::TempDir dir;
  const std::string repo = dir.path() + "/repo";
  dir.WriteFile("repo/mlp/config.pbtxt", "name: \"mlp\"\n");
  const std::string server = dir.WriteFile("kiln-server", "#!/bin/sh\n");
  REQUIRE(chmod(server.c_str(), 0755) == 0);
  auto parse = [&](std::vector<std::string> extra, std::string* error) {
    std::vector<std::string> args = {"--model_repository=" + repo, "--model=mlp",
                                     "--server=" + server};
    args.insert(args.end(), extra.begin(), extra.end());
    ScaleoutOptions options;
    std::ostringstream out, err;
    const std::optional<int> exit = ParseScaleoutArgs(args, &options, out, err);
    *error = err.str();
    return exit.has_value() ? std::optional<ScaleoutOptions>() : options;
  };
  std::string error;
  const std::optional<ScaleoutOptions> defaults = parse({}, &error);
  REQUIRE(defaults.has_value());
  CHECK(defaults->rate == 15);
  CHECK(defaults->start_b_s == 6);
  CHECK(defaults->workers == 0);
  const std::optional<ScaleoutOptions> set =
      parse({"--rate=2.5", "--duration_s=12", "--start_b_s=3", "--skip_s=0",
             "--server_args=--cpus=1 --warmup_priority=normal"},
            &error);
  REQUIRE(set.has_value());
  CHECK(set->rate == 2.5);
  CHECK(set->skip_s == 0);
  CHECK(set->server_args == std::vector<std::string>{"--cpus=1", "--warmup_priority=normal"});

  const std::vector<std::pair<std::vector<std::string>, std::string>> bad = {
      {{"--rate=0"}, "--rate must be a number > 0, not '0'"},
      {{"--start_b_s=40"}, "need --skip_s < --start_b_s < --duration_s"},
      {{"--skip_s=6"}, "need --skip_s < --start_b_s < --duration_s"},
      {{"--workers=-1"}, "--workers must be in 0..256, got -1"},
      {{"--server_args=--port=1"}, "--port is set by"},
      {{"--model=nope"}, "no model 'nope' in"},
  };
  for (const auto& [args, expected] : bad) {
    INFO(args[0]);
    CHECK_FALSE(parse(args, &error).has_value());
    CHECK_THAT(error, Contains(expected));
  }
}

}  // namespace
}  // namespace kiln::bench
