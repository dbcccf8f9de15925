// kiln-bench elastic without a server: the flags, the requests split around the event, the
// health gaps, the first request of the new worker picked from fake records, the report and the
// JSON.
#include <catch2/catch.hpp>

#include <sys/stat.h>

#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench/elastic_command.h"
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

// The worker's CPU time is 2 ms under the compute time, so that a ratio of CPU times and one of
// compute times differ.
RequestTiming On(int64_t pid, double compute_ms) {
  RequestTiming timing;
  timing.worker_pid = pid;
  timing.compute_ms = compute_ms;
  timing.compute_cpu_ms = compute_ms - 2;
  return timing;
}

// Workers 101 and 102 before the event at 4000 ms; 201 is the new one.
std::vector<RequestRecord> Records() {
  return {
      Ok(500, 99),  // skipped: the load's first second
      Ok(1000, 10),
      Ok(2000, 20),
      Ok(3000, 30),   // before
      Ok(3990, 300),  // before, queued until 201 took it
      Failed(4000, 14),
      Ok(4500, 40),
      Ok(5000, 80),  // after
      Ok(5200, 60),
      Ok(14000, 90),  // after (its last instant)
      Failed(15000, kDroppedClientCap),
  };
}

std::vector<RequestTiming> Timings() {
  return {On(101, 9),  On(101, 8),  On(102, 10), On(101, 12), On(201, 11), {},
          On(102, 30), On(201, 20), On(201, 15), On(102, 9),  {}};
}

TEST_CASE("elastic: requests split around the event by scheduled time", "[elastic]") {
  const std::vector<Phase> phases = SplitElasticPhases(Records(), Timings(), 1000, 4000, 10000);
  REQUIRE(phases.size() == 2);
  const Phase& before = phases[0];
  CHECK(before.name == "before");
  CHECK(before.from_ms == 1000);
  CHECK(before.to_ms == 4000);
  CHECK(before.latency.count == 4);
  CHECK(before.latency.max == 300);
  CHECK(before.compute.count == 4);
  CHECK(before.compute.p50 == 10);  // 8, 10, 11, 12: nearest rank
  CHECK(before.errors.empty());
  const Phase& after = phases[1];
  CHECK(after.from_ms == 4000);
  CHECK(after.to_ms == 14000);
  CHECK(after.latency.count == 4);  // the event's instant counts as after
  CHECK(after.latency.max == 90);
  CHECK(after.errors.at("UNAVAILABLE") == 1);
  CHECK(after.error_count() == 1);

  // A short load cuts the after phase at its last scheduled request.
  const std::vector<Phase> cut = SplitElasticPhases(Records(), {}, 1000, 4000, 60000);
  CHECK(cut[1].to_ms == 15000);
  CHECK(cut[1].errors.at("DROPPED_CLIENT_CAP") == 1);
  CHECK(cut[0].compute.count == 0);  // no timings: no compute summary
}

TEST_CASE("elastic: timings line up with the records that were sent", "[elastic]") {
  const std::vector<RequestRecord> records = {Ok(0, 1), Failed(1, kDroppedClientCap), Ok(2, 1)};
  absl::StatusOr<std::vector<RequestTiming>> joined =
      JoinTimings(records, {On(7, 1.5), On(8, 2.5)});
  REQUIRE(joined.ok());
  REQUIRE(joined->size() == 3);
  CHECK((*joined)[0].worker_pid == 7);
  CHECK((*joined)[1].worker_pid == 0);  // dropped: never sent
  CHECK((*joined)[2].worker_pid == 8);
  CHECK((*joined)[2].compute_ms == 2.5);
  CHECK_FALSE(JoinTimings(records, {On(7, 1.5)}).ok());
  CHECK_FALSE(JoinTimings(records, {On(7, 1), On(8, 1), On(9, 1)}).ok());
}

TEST_CASE("elastic: a response's timing parameters", "[elastic]") {
  inference::ModelInferResponse response;
  CHECK(TimingOfResponse(response).worker_pid == 0);
  CHECK(TimingOfResponse(response).compute_ms < 0);
  CHECK(TimingOfResponse(response).compute_cpu_ms < 0);
  (*response.mutable_parameters())["kiln_worker_pid"].set_int64_param(4242);
  (*response.mutable_parameters())["kiln_compute_ms"].set_double_param(12.5);
  (*response.mutable_parameters())["kiln_compute_cpu_ms"].set_double_param(11.25);
  CHECK(TimingOfResponse(response).worker_pid == 4242);
  CHECK(TimingOfResponse(response).compute_ms == 12.5);
  CHECK(TimingOfResponse(response).compute_cpu_ms == 11.25);
}

TEST_CASE("elastic: the first request the new worker served", "[elastic]") {
  const std::vector<RequestRecord> records = Records();
  const std::vector<RequestTiming> timings = Timings();
  // 102 served before the event without being in the report: still an old worker.
  const std::set<int64_t> old = OldWorkerPids(records, timings, {101}, 4000);
  CHECK(old == std::set<int64_t>{101, 102});
  const std::optional<FirstNewRequest> first = FirstRequestOfNewWorker(records, timings, old);
  REQUIRE(first.has_value());
  // 201's requests finish at 4290 (scheduled 3990, queued), 5080 and 5260: the first to finish.
  CHECK(first->pid == 201);
  CHECK(first->scheduled_ms == 3990);
  CHECK(first->latency_ms == 300);
  CHECK(first->compute_ms == 11);

  // Failed requests, unknown pids and old workers never count.
  CHECK_FALSE(
      FirstRequestOfNewWorker({Ok(5000, 5), Failed(5001, 14)}, {On(101, 1), On(300, 1)}, {101})
          .has_value());
  CHECK_FALSE(FirstRequestOfNewWorker({Ok(5000, 5)}, {{}}, {101}).has_value());
  // Equal completion: the earlier scheduled.
  const std::optional<FirstNewRequest> tie =
      FirstRequestOfNewWorker({Ok(5010, 10), Ok(5000, 20)}, {On(300, 2), On(300, 3)}, {101});
  REQUIRE(tie.has_value());
  CHECK(tie->scheduled_ms == 5000);
}

TEST_CASE("elastic: health gaps", "[elastic]") {
  auto sample = [](double at, const std::string& status) {
    return HealthSample{at, status, status == "SERVING"};
  };
  const HealthSummary quiet = SummarizeHealth({sample(0, "SERVING"), sample(10, "SERVING")});
  CHECK(quiet.checks == 2);
  CHECK(quiet.not_serving == 0);
  CHECK(quiet.longest_gap_ms == 0);
  CHECK(quiet.statuses.empty());
  const HealthSummary gaps =
      SummarizeHealth({sample(0, "SERVING"), sample(10, "NOT_SERVING"), sample(20, "NOT_SERVING"),
                       sample(45, "SERVING"), sample(55, "UNAVAILABLE"), sample(60, "SERVING"),
                       sample(70, "NOT_SERVING"), sample(120, "NOT_SERVING")});
  CHECK(gaps.checks == 8);
  CHECK(gaps.not_serving == 5);
  CHECK(gaps.longest_gap_ms == 50);  // 70 to the last check at 120, never SERVING again
  CHECK(gaps.statuses.at("NOT_SERVING") == 4);
  CHECK(gaps.statuses.at("UNAVAILABLE") == 1);
  CHECK(SummarizeHealth({}).checks == 0);
}

ElasticResult Result() {
  ElasticResult result;
  result.event_ms = 4000;
  result.event_pid = 101;
  result.workers_before = {101, 102};
  result.replacement_ms = 412.5;
  result.new_worker_pid = 201;
  result.phases = SplitElasticPhases(Records(), Timings(), 1000, 4000, 10000);
  result.health = SummarizeHealth({{0, "SERVING", true}, {10, "SERVING", true}});
  result.first_new = FirstRequestOfNewWorker(Records(), Timings(),
                                             OldWorkerPids(Records(), Timings(), {101, 102}, 4000));
  return result;
}

TEST_CASE("elastic: the report and the JSON", "[elastic]") {
  ElasticOptions options;
  options.model = "resnet50";
  options.event = ElasticEvent::kKill;
  options.workers = 4;
  options.rate = 6;
  options.server_args = {"--warm_template=off"};
  const ElasticResult result = Result();
  CHECK(result.p99_ratio() == Approx(90.0 / 300.0));
  CHECK(result.first_compute_ratio() == Approx(11.0 / 10.0));
  CHECK(result.first_cpu_ratio() == Approx(9.0 / 8.0));         // CPU times 2 ms under the computes
  CHECK(result.first_latency_ratio() == Approx(300.0 / 20.0));  // before p50: 10, 20, 30, 300
  CHECK(result.errors() == 1);

  const std::string text = ElasticReport(options, result).Text();
  CHECK_THAT(text, !Contains("?}"));  // every value a line names was set
  CHECK_THAT(text, Contains("elastic: resnet50 at 6.00 req/s (Poisson); SIGKILL 4.00 s into the "
                            "load (worker pid 101)\n"));
  CHECK_THAT(text, Contains("UNAVAILABLE 1"));
  CHECK_THAT(text, Contains("p99 after / before: 0.30x; errors: 1\n"));
  CHECK_THAT(text, Contains("new worker: pid 201 warm 412.5 ms after the event\n"));
  CHECK_THAT(text, Contains("2 checks, 0 not SERVING (none), longest gap 0.0 ms\n"));
  CHECK_THAT(text, Contains("compute 11.00 ms (1.10x the before compute p50 10.00 ms), the "
                            "worker's CPU time 9.00 ms ("));

  const nlohmann::json doc = nlohmann::json::parse(ElasticReport(options, result).Json());
  CHECK(doc["model"] == "resnet50");
  CHECK(doc["event"] == "kill");
  CHECK(doc["workers"] == 4);
  CHECK(doc["server_args"] == "--warm_template=off");
  CHECK(doc["event_ms"] == 4000.0);
  CHECK(doc["event_pid"] == 101);
  CHECK(doc["workers_before"] == nlohmann::json::array({101, 102}));
  CHECK(doc["replacement_ms"] == 412.5);
  CHECK(doc["new_worker_pid"] == 201);
  CHECK(doc["replacement_error"] == "");
  CHECK(doc["p99_ratio"] == 0.3);
  CHECK(doc["errors"] == 1);
  CHECK(doc["before_compute_p50_ms"] == 10.0);
  CHECK(doc["before_compute_cpu_p50_ms"] == 8.0);
  REQUIRE(doc["phases"].size() == 2);
  CHECK(doc["phases"][0]["name"] == "before");
  CHECK(doc["phases"][0]["count"] == 4);
  CHECK(doc["phases"][0]["compute_p50_ms"] == 10.0);
  CHECK(doc["phases"][0]["compute_cpu_p50_ms"] == 8.0);
  CHECK(doc["phases"][1]["name"] == "after");
  CHECK(doc["phases"][1]["p99_ms"] == 90.0);
  CHECK(doc["phases"][1]["errors"]["UNAVAILABLE"] == 1);
  CHECK(doc["health"]["checks"] == 2);
  CHECK(doc["health"]["not_serving"] == 0);
  CHECK(doc["health"]["longest_gap_ms"] == 0.0);
  CHECK(doc["health"]["statuses"].empty());
  CHECK(doc["first_new"]["pid"] == 201);
  CHECK(doc["first_new"]["compute_ms"] == 11.0);
  CHECK(doc["first_new"]["compute_ratio"] == 1.1);
  CHECK(doc["first_new"]["compute_cpu_ms"] == 9.0);
  CHECK(doc["first_new"]["cpu_ratio"].get<double>() == Approx(1.125));
  CHECK(doc["first_new"]["latency_ms"] == 300.0);

  ElasticResult none = result;
  none.replacement_ms.reset();
  none.replacement_error = "no new warm worker within the load (12 s after the event)";
  none.first_new.reset();
  options.event = ElasticEvent::kTtin;
  none.event_pid = 100;
  const std::string missing = ElasticReport(options, none).Text();
  CHECK_THAT(missing, !Contains("?}"));
  CHECK_THAT(missing, Contains("SIGTTIN 4.00 s into the load (master pid 100)"));
  CHECK_THAT(missing, Contains("new worker: none: no new warm worker within the load"));
  CHECK_THAT(missing, Contains("first request of the new worker: none served one"));
  const nlohmann::json failed = nlohmann::json::parse(ElasticReport(options, none).Json());
  CHECK(failed["event"] == "ttin");
  CHECK(failed["replacement_ms"].is_null());
  CHECK(failed["new_worker_pid"].is_null());
  CHECK(failed["replacement_error"] == none.replacement_error);
  CHECK(failed["first_new"].is_null());
}

TEST_CASE("elastic: flags", "[elastic]") {
  kiln::testing::TempDir dir;
  const std::string repo = dir.path() + "/repo";
  dir.WriteFile("repo/mlp/config.pbtxt", "name: \"mlp\"\n");
  const std::string server = dir.WriteFile("kiln-server", "#!/bin/sh\n");
  REQUIRE(chmod(server.c_str(), 0755) == 0);
  auto parse = [&](std::vector<std::string> args, std::string* error) {
    ElasticOptions options;
    std::ostringstream out, err;
    const std::optional<int> exit = ParseElasticArgs(args, &options, out, err);
    *error = err.str();
    return exit.has_value() ? std::optional<ElasticOptions>() : options;
  };
  const std::vector<std::string> base = {"--model_repository=" + repo, "--model=mlp",
                                         "--server=" + server};
  auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> args = base;
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  };
  std::string error;
  const std::optional<ElasticOptions> defaults = parse(with({"--event=kill"}), &error);
  REQUIRE(defaults.has_value());
  CHECK(defaults->event == ElasticEvent::kKill);
  CHECK(defaults->rate == 10);
  CHECK(defaults->duration_s == 20);
  CHECK(defaults->event_s == 8);
  CHECK(defaults->after_s == 10);
  CHECK(defaults->skip_s == 1);
  CHECK(defaults->workers == 0);
  const std::optional<ElasticOptions> set =
      parse(with({"--event=ttin", "--rate=2.5", "--duration_s=6", "--event_s=3", "--after_s=2",
                  "--skip_s=0", "--workers=4", "--server_args=--warm_template=off"}),
            &error);
  REQUIRE(set.has_value());
  CHECK(set->event == ElasticEvent::kTtin);
  CHECK(set->rate == 2.5);
  CHECK(set->after_s == 2);
  CHECK(set->skip_s == 0);
  CHECK(set->workers == 4);
  CHECK(set->server_args == std::vector<std::string>{"--warm_template=off"});

  std::ostringstream out, err;
  ElasticOptions unused;
  CHECK(ParseElasticArgs({"--help"}, &unused, out, err) == std::optional<int>(0));
  CHECK_THAT(out.str(), Contains("--event"));
  CHECK_THAT(out.str(), Contains("--after_s"));

  const std::vector<std::pair<std::vector<std::string>, std::string>> bad = {
      {with({}), "--event is required: ttin or kill"},
      {with({"--event=ttou"}), "--event must be ttin or kill, not 'ttou'"},
      {with({"--event=kill", "--rate=0"}), "--rate must be a number > 0, not '0'"},
      {with({"--event=kill", "--rate=fast"}), "--rate must be a number > 0, not 'fast'"},
      {with({"--event=kill", "--after_s=-1"}), "--after_s must be a number > 0"},
      {with({"--event=kill", "--event_s=40"}), "need --skip_s < --event_s < --duration_s"},
      {with({"--event=kill", "--skip_s=8"}), "need --skip_s < --event_s < --duration_s"},
      {with({"--event=kill", "--workers=300"}), "--workers must be in 0..256, got 300"},
      {with({"--event=kill", "--server_args=--workers=2"}), "--workers is set by"},
      {with({"--event=kill", "--model=nope"}), "no model 'nope' in"},
      {{"--model_repository=" + repo, "--server=" + server, "--event=kill"}, "--model"},
      {with({"--event=kill", "--frobnicate=1"}), "frobnicate"},
  };
  for (const auto& [args, expected] : bad) {
    INFO(args.back());
    CHECK_FALSE(parse(args, &error).has_value());
    CHECK_THAT(error, Contains(expected));
  }
}

}  // namespace
}  // namespace kiln::bench
