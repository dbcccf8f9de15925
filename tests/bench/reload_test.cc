// kiln-bench reload's pure pieces: its flags, the phases and seconds of the load around the
// reload, and the report.
#include "bench/reload_command.h"

#include <catch2/catch.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "tests/test_paths.h"

namespace kiln::bench {
namespace {

using Catch::Matchers::Contains;

RequestRecord Ok(double scheduled_ms, double latency_ms) {
  return {scheduled_ms, scheduled_ms, scheduled_ms + latency_ms, 0};
}

RequestTiming Answered(const std::string& version, bool cold = false) {
  RequestTiming timing;
  timing.worker_pid = 7;
  timing.compute_ms = 1;
  timing.cold_shape = cold;
  timing.model_version = version;
  return timing;
}

TEST_CASE("reload: the load splits into before, during and after the switch, and into seconds",
          "[bench][reload]") {
  const std::vector<RequestRecord> records = {
      Ok(500, 1),                          // skipped
      Ok(1500, 10), Ok(2500, 20),          // before the request at 3000
      Ok(3500, 30), {4000, 4000, -1, 14},  // during (an UNAVAILABLE)
      Ok(5500, 5),  Ok(6500, 6),           // after the switch at 5000
  };
  const std::vector<RequestTiming> timings = {
      Answered("1"), Answered("1"), Answered("1"), Answered("1", /*cold=*/true), {},
      Answered("2"), Answered("2")};
  const std::vector<Phase> phases = SplitReloadPhases(records, timings, 1000, 3000, 5000, 7000);
  REQUIRE(phases.size() == 3);
  CHECK(phases[0].name == "before");
  CHECK(phases[0].latency.count == 2);
  CHECK(phases[0].latency.max == 20);
  CHECK(phases[0].versions.at("1") == 2);
  CHECK(phases[1].latency.count == 1);
  CHECK(phases[1].cold_shape_hits == 1);
  CHECK(phases[1].errors.at("UNAVAILABLE") == 1);
  CHECK(phases[2].versions.at("2") == 2);
  CHECK(phases[2].from_ms == 5000);

  // A reload that never finished: "during" runs to the end, "after" is empty.
  const std::vector<Phase> unfinished = SplitReloadPhases(records, timings, 1000, 3000, -1, 7000);
  CHECK(unfinished[1].to_ms == 7000);
  CHECK(unfinished[1].latency.count == 3);
  CHECK(unfinished[2].latency.count == 0);

  const std::vector<Phase> seconds = PerSecond(records, timings, 7000);
  REQUIRE(seconds.size() == 7);
  CHECK(seconds[0].latency.count == 1);
  CHECK(seconds[4].errors.at("UNAVAILABLE") == 1);
  CHECK(seconds[6].versions.at("2") == 1);
}

TEST_CASE("reload: the report gives the ratio, the errors, the switch and the others' workers",
          "[bench][reload]") {
  ReloadOptions options;
  options.model = "resnet18";
  options.others = {"mlp"};
  ReloadResult result;
  result.rate = 14;
  result.capacity_rps = 20;
  result.trigger_ms = 3000;
  result.switched_ms = 5000;
  result.first_new_ms = 5100;
  result.reload_outcome = "OK";
  result.phases =
      SplitReloadPhases({Ok(1500, 10), Ok(3500, 11), Ok(5500, 9)},
                        {Answered("1"), Answered("1"), Answered("2")}, 1000, 3000, 5000, 7000);
  result.others_kept_workers["mlp"] = true;
  result.pss_before_kb = 300000;
  result.pss_peak_kb = 450000;
  result.pss_after_kb = 320000;
  CHECK(result.p99_ratio() == Approx(1.1));
  CHECK(result.errors() == 0);
  CHECK(result.new_version_responses() == 1);
  CHECK(result.switch_ms() == 2000);
  const std::string text = ReloadReport(options, result).Text();
  CHECK_THAT(text, !Contains("?}"));  // every value a line names was set
  CHECK_THAT(text, Contains("reload: resnet18 to version 2 (RepositoryModelLoad) at 14.00 req/s "
                            "(Poisson), 70% of 20.00 req/s measured; beside mlp") &&
                       Contains("p99 during / before: 1.10x (target <= 1.2); errors: 0") &&
                       Contains("reload: OK, 2000 ms from the request to the switch; first "
                                "response of version 2 2100 ms after the request") &&
                       Contains("tree PSS: 300.0 MB before, 450.0 MB peak during the reload") &&
                       Contains("mlp kept its workers (same pids)"));
  const std::string json = ReloadReport(options, result).Json();
  CHECK_THAT(json, Contains("\"switch_ms\": 2000.0") && Contains("\"new_version_responses\": 1"));

  // A bad version 2 by SIGHUP at a given rate, beside nothing: no switch, no version 2 answers.
  options.hup = true;
  options.bad_version = true;
  options.others.clear();
  result.capacity_rps = 0;
  result.switched_ms = -1;
  result.first_new_ms = -1;
  result.reload_outcome = "no switch within --reload_budget_s";
  result.others_kept_workers.clear();
  const Report failed = ReloadReport(options, result);
  const std::string failed_text = failed.Text();
  CHECK_THAT(failed_text, !Contains("?}"));
  CHECK_THAT(failed_text, Contains("reload: resnet18 to version 2 (SIGHUP, a bad version 2: not "
                                   "TorchScript) at 14.00 req/s (Poisson); beside nothing\n") &&
                              Contains("reload: no switch within --reload_budget_s (no switch "
                                       "within the load); version 2 answered no request\n") &&
                              !Contains("others:"));
  CHECK(failed.json()["trigger"] == "sighup");
  CHECK(failed.json()["bad_version"] == true);
  CHECK(failed.json()["switch_ms"] == -1.0);
  CHECK(failed.json()["capacity_rps"] == 0.0);
  CHECK(failed.json()["others_kept_workers"].empty());
}

TEST_CASE("reload: bad flags are refused with the reason", "[bench][reload]") {
  const std::string models = kiln::testing::ModelsDir();
  const auto refused = [&](std::vector<std::string> args) {
    ReloadOptions options;
    std::ostringstream out, err;
    args.insert(args.begin(), {"--model_repository=" + models, "--model=resnet18"});
    const std::optional<int> exit = ParseReloadArgs(args, &options, out, err);
    CHECK(exit == std::optional<int>(2));
    return err.str();
  };
  CHECK_THAT(refused({"--others=resnet18"}), Contains("--others must not name --model"));
  CHECK_THAT(refused({"--others=nope"}), Contains("has no nope/config.pbtxt"));
  CHECK_THAT(refused({"--load_share=1.5"}), Contains("--load_share must be in (0, 1]"));
  CHECK_THAT(refused({"--before_s=1", "--skip_s=2"}), Contains("need --skip_s < --before_s"));
  ReloadOptions options;
  std::ostringstream out, err;
  REQUIRE_FALSE(ParseReloadArgs({"--model_repository=" + models, "--model=resnet18", "--others=mlp",
                                 "--hup", "--bad_version"},
                                &options, out, err)
                    .has_value());
  CHECK(options.hup);
  CHECK(options.bad_version);
  CHECK(options.others == std::vector<std::string>{"mlp"});
  CHECK(options.duration_s() == 8 + 30 + 8);
}

}  // namespace
}  // namespace kiln::bench
