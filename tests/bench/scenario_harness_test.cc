// The harness every kiln-bench scenario (coldstart, scaleout, elastic, reload, scrape, lb) runs
// on, without a server: the report that renders one result as text and as JSON, the timed
// events, the phases of a load, the shared flags and the run (its files, its failure, its
// result files).
#include <catch2/catch.hpp>

#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench/args.h"
#include "bench/phases.h"
#include "bench/report.h"
#include "bench/scenario.h"
#include "bench/scenario_flags.h"
#include "bench/scenario_run.h"
#include "bench/timed_events.h"
#include "tests/bench/scenario_fixture.h"
#include "tests/test_paths.h"

namespace kiln::bench {
namespace {

using Catch::Matchers::Contains;
using kiln::testing::TempDir;

RequestRecord Ok(double scheduled_ms, double latency_ms) {
  return RequestRecord{scheduled_ms, scheduled_ms, scheduled_ms + latency_ms, 0};
}

RequestRecord Failed(double scheduled_ms, int code) {
  return RequestRecord{scheduled_ms, scheduled_ms, scheduled_ms + 1, code};
}

// --- Report ------------------------------------------------------------------------------------

TEST_CASE("report: one value, its JSON and its text, and lines show only what was set",
          "[bench][report]") {
  Report report;
  report.Line("ratio {ratio}x, {count} requests, errors {errors}; {missing}");
  report.Set("count", Integer(42))
      .Set("ratio", Number(2.66666, "%.2f"))
      .Set("errors", Counts({{"UNAVAILABLE", 2}, {"DEADLINE_EXCEEDED", 1}}))
      .Set("note", TextOnly("only in the text"))
      .Set("health.checks", Integer(7))
      .Set("health.gap_ms", NumberOr(std::nullopt, "%.1f", "none"));
  report.Line("{{literal}} {health.checks} checks, gap {health.gap_ms}, {note}");
  report.Line("[{count:5}] [{count:-5}] [{ratio:2}]");

  // Lines render when the text is asked for: a value set after its line shows.
  CHECK(report.Text() ==
        "ratio 2.67x, 42 requests, errors DEADLINE_EXCEEDED 1, UNAVAILABLE 2; {missing?}\n"
        "{literal} 7 checks, gap none, only in the text\n"
        "[   42] [42   ] [2.67]\n");
  // The JSON: keys in the order set, numbers to 3 decimals, text-only values left out.
  CHECK(report.Json() ==
        "{\n"
        "  \"count\": 42,\n"
        "  \"ratio\": 2.667,\n"
        "  \"errors\": {\n"
        "    \"DEADLINE_EXCEEDED\": 1,\n"
        "    \"UNAVAILABLE\": 2\n"
        "  },\n"
        "  \"health\": {\n"
        "    \"checks\": 7,\n"
        "    \"gap_ms\": null\n"
        "  }\n"
        "}\n");
  CHECK(report.TextOf("ratio") == "2.67");
  CHECK(report.TextOf("nope").empty());
  CHECK(report.Has("note"));
  CHECK_FALSE(report.json().contains("note"));

  // A second Set replaces the value and keeps its place.
  report.Set("count", Integer(43));
  CHECK(report.json().begin().key() == "count");
  CHECK(report.json()["count"] == 43);
  CHECK_THAT(report.Text(), Contains("43 requests"));
}

TEST_CASE("report: the value makers", "[bench][report]") {
  CHECK(Number(1234.56789).json == 1234.568);
  CHECK(Number(1234.56789).text == "1234.57");
  CHECK(Number(0.5, "%.0f%%").text == "0%");
  const ReportValue seconds = ScaledNumber(4000, 0.001, "%.2f s");
  CHECK(seconds.json == 4000.0);
  CHECK(seconds.text == "4.00 s");
  CHECK(NumberOr(12.5, "%.1f").text == "12.5");
  CHECK(NumberOr(std::nullopt, "%.1f").json.is_null());
  CHECK(NumberOr(std::nullopt, "%.1f").text == "-");
  CHECK(Integer(-1).json == -1);
  CHECK(String("a b").text == "a b");
  CHECK(Bool(true, "*", "").text == "*");
  CHECK(Bool(false, "*", "").json == false);
  CHECK(Bool(false, "*", "").text.empty());
  CHECK(Counts({}).json == nlohmann::ordered_json::object());
  CHECK(Counts({}).text == "none");
  CHECK(Counts({}, "-").text == "-");
  CHECK(Null().json.is_null());
  CHECK_FALSE(TextOnly("x").in_json);
  const ReportValue list = JsonWithText(std::vector<int>{1, 2}, "1 | 2");
  CHECK(list.json == nlohmann::ordered_json::array({1, 2}));
  CHECK(list.text == "1 | 2");
}

TEST_CASE("report: a table is a JSON array of rows and an aligned block of text",
          "[bench][report]") {
  ReportTable table({{"name", "phase", /*left=*/true}, {"count", "count"}, {"note", "note", true}});
  table.AddRow().Set("name", String("before")).Set("count", Integer(3)).Set("note", String("ok"));
  table.AddRow().Set("name", String("after B")).Set("count", Integer(1234)).Set("x", Integer(1));
  Report report;
  report.Line("title");
  report.Table("phases", std::move(table));
  report.Line("end");
  CHECK(report.Text() ==
        "title\n"
        "  phase    count  note\n"
        "  before       3  ok\n"
        "  after B   1234\n"  // the empty last cell leaves no trailing spaces
        "end\n");
  const nlohmann::json json = nlohmann::json::parse(report.Json());
  REQUIRE(json["phases"].size() == 2);
  CHECK(json["phases"][0] == nlohmann::json{{"name", "before"}, {"count", 3}, {"note", "ok"}});
  CHECK(json["phases"][1]["x"] == 1);  // a value no column shows is the JSON's alone

  // Without columns, a table is the JSON's alone.
  ReportTable rows;
  rows.AddRow().Set("a", Integer(1));
  Report json_only;
  json_only.Table("rows", std::move(rows));
  CHECK(json_only.Text().empty());
  CHECK(json_only.json()["rows"][0]["a"] == 1);
}

// --- TimedEvents -------------------------------------------------------------------------------

TEST_CASE("timed events: marks since the start, and the report lists them in order",
          "[bench][events]") {
  const TimedEvents::Clock::time_point start = TimedEvents::Clock::now();
  TimedEvents events({"started", "serving", "end"}, start);
  CHECK(events.start() == start);
  CHECK(events.Mark("started", start + std::chrono::milliseconds(1500)) == Approx(1500));
  events.Set("end", 9000);
  events.Set("other", 20);
  CHECK(events.Ms("started") == Approx(1500));
  CHECK_FALSE(events.Ms("serving").has_value());
  CHECK(events.MsOr("serving", -1) == -1);
  CHECK(events.Since(start + std::chrono::seconds(2)) == Approx(2000));
  CHECK(events.Now() >= 0);
  const double now = events.Mark("serving");
  CHECK(now >= 0);
  CHECK(events.Ms("serving") == now);

  TimedEvents unset({"started", "serving", "end"}, start);
  unset.Set("started", 1500);
  unset.Set("end", 9000);
  unset.Set("other", 20);
  Report report;
  unset.AddTo(report, "events_ms");
  report.Line("{events_ms.started} {events_ms.serving} {events_ms.end} {events_ms.other}");
  CHECK(report.Text() == "1.50 s - 9.00 s 0.02 s\n");
  const nlohmann::ordered_json& json = report.json()["events_ms"];
  std::vector<std::string> keys;
  for (auto it = json.begin(); it != json.end(); ++it) keys.push_back(it.key());
  CHECK(keys == std::vector<std::string>{"started", "serving", "end", "other"});
  CHECK(json["serving"].is_null());
  CHECK(json["end"] == 9000.0);
}

// --- phases ------------------------------------------------------------------------------------

TEST_CASE("phases: each request in the first span holding its scheduled time", "[bench][phases]") {
  const std::vector<RequestRecord> records = {Ok(500, 1),   Ok(1000, 10),     Ok(1999, 20),
                                              Ok(2000, 30), Failed(2500, 14), Ok(3000, 40),
                                              Ok(4000, 50)};
  // [1000, 2000), then [2000, 3000] closed (its end instant is its own), then [3000, 4000).
  const std::vector<Phase> phases =
      CountPhases(records, {{"a", 1000, 2000}, {"b", 2000, 3000, true}, {"c", 3000, 4000}});
  REQUIRE(phases.size() == 3);
  CHECK(phases[0].name == "a");
  CHECK(phases[0].latency.count == 2);
  CHECK(phases[1].latency.count == 2);  // 2000 and 3000
  CHECK(phases[1].latency.max == 40);
  CHECK(phases[1].errors.at("UNAVAILABLE") == 1);
  CHECK(phases[1].error_count() == 1);
  CHECK(phases[2].latency.count == 0);  // 3000 went to b, 4000 is past c
  CHECK(phases[2].seconds() == 1);
  CHECK(ErrorTotal(phases) == 1);
  CHECK(P99Ratio(phases[0].latency, phases[1].latency) == Approx(40.0 / 20));
  CHECK(P99Ratio(phases[2].latency, phases[1].latency) == 0);  // nothing before: no ratio
}

TEST_CASE("phases: what the responses' timing said", "[bench][phases]") {
  auto timing = [](double compute_ms, bool cold, const std::string& version) {
    RequestTiming t;
    t.worker_pid = 7;
    t.compute_ms = compute_ms;
    t.cold_shape = cold;
    t.model_version = version;
    return t;
  };
  const std::vector<Phase> phases =
      CountPhases({Ok(0, 5), Ok(10, 6), Failed(20, 4), Ok(30, 7), Ok(40, 8)}, {{"all", 0, 100}},
                  {timing(3, false, "1"), timing(4, true, "2"), timing(9, false, "2"),
                   timing(-1, false, "")});  // the last record has no timing at all
  REQUIRE(phases.size() == 1);
  CHECK(phases[0].latency.count == 4);
  CHECK(phases[0].compute.count == 2);  // unknown compute times (< 0) are left out
  CHECK(phases[0].compute.max == 4);
  CHECK(phases[0].cold_shape_hits == 1);
  CHECK(phases[0].versions == std::map<std::string, int64_t>{{"1", 1}, {"2", 1}});
  CHECK(phases[0].errors.at("DEADLINE_EXCEEDED") == 1);
}

TEST_CASE("phases: whole seconds, consecutive spans and pooled phases", "[bench][phases]") {
  const std::vector<PhaseSpan> seconds = WholeSeconds(2500);
  REQUIRE(seconds.size() == 3);
  CHECK(seconds[2].name == "2");
  CHECK(seconds[2].from_ms == 2000);
  CHECK(seconds[2].to_ms == 2500);

  // A start that did not happen leaves its phase out; the one before runs to the next start.
  const std::vector<PhaseSpan> spans =
      ConsecutiveSpans({{"a", 100}, {"b", std::nullopt}, {"c", 3000}, {"d", std::nullopt}}, 5000);
  REQUIRE(spans.size() == 2);
  CHECK(spans[0].name == "a");
  CHECK(spans[0].to_ms == 3000);
  CHECK(spans[1].name == "c");
  CHECK(spans[1].to_ms == 5000);
  CHECK(ConsecutiveSpans({{"a", 100}}, -1)[0].to_ms == 100);  // never before its start

  PhaseCounter pooled(PhaseSpan{"pooled", 0, 0});
  for (const RequestRecord& record : {Ok(0, 10), Ok(500, 30)}) pooled.Add(record);
  pooled.Extend(1.5);
  pooled.Extend(1.5);
  const Phase phase = pooled.Finish();
  CHECK(phase.seconds() == 3);
  CHECK(phase.latency.count == 2);
  CHECK(phase.latency.max == 30);
}

TEST_CASE("phases: the table gives every phase the same keys, the scenario's in between",
          "[bench][phases]") {
  const std::vector<Phase> phases =
      CountPhases({Ok(1000, 10), Failed(1500, 14)}, {{"before", 1000, 3000}});
  const ReportTable table = PhaseTable(
      "requests", phases, {{"extra", "extra"}},
      [](size_t i, const Phase&, Report& row) { row.Set("extra", Integer(int64_t(i) + 5)); });
  Report report;
  report.Table("phases", table);
  const nlohmann::ordered_json& row = report.json()["phases"][0];
  std::vector<std::string> keys;
  for (auto it = row.begin(); it != row.end(); ++it) keys.push_back(it.key());
  CHECK(keys == std::vector<std::string>{"name", "from_ms", "to_ms", "count", "p50_ms", "p95_ms",
                                         "p99_ms", "max_ms", "extra", "errors"});
  CHECK(row["errors"]["UNAVAILABLE"] == 1);
  CHECK(report.Text() ==
        "  requests  window s  count  p50 ms  p95 ms  p99 ms  max ms  extra  errors\n"
        "  before        2.00      1   10.00   10.00   10.00   10.00      5  UNAVAILABLE 1\n");
}

// --- flags -------------------------------------------------------------------------------------

const Scenario kTest = {"harness",
                        "--model_repository=DIR --model=NAME [flags]",
                        "A scenario for the harness's tests.",
                        {"kiln-bench harness --model=m"}};

using Fixture = testing::ScenarioFixture;

struct Parsed {
  std::optional<int> exit;
  LoadScenarioOptions options;
  double own = 5;
  std::string out, err;
};

// The flags of a load scenario with one flag of its own, --own, which must stay below a --rate
// that is given.
Parsed ParseLoad(const std::vector<std::string>& args, bool share = false) {
  Parsed parsed;
  ScenarioFlags flags(kTest, &parsed.options);
  if (share) {
    flags.AddRateOrShare(&parsed.options);
  } else {
    flags.AddRate(&parsed.options, "the load's rate");
  }
  flags.flags().AddDouble("own", &parsed.own, "a flag of the scenario's own");
  flags.AddSkip(&parsed.options, "skipped");
  flags.AddLoadFlags(&parsed.options);
  flags.AddResultFlags("keep the logs here");
  flags.flags().SetHelp("model", "the model the test loads");
  std::ostringstream out, err;
  parsed.exit = flags.Parse(args, out, err, [&]() -> std::string {
    const double rate = parsed.options.rate;
    return rate > 0 && parsed.own >= rate ? "need --own < --rate" : "";
  });
  parsed.out = out.str();
  parsed.err = err.str();
  return parsed;
}

TEST_CASE("scenario flags: the common ones, the scenario's own and one check", "[bench][flags]") {
  Fixture f;
  const Parsed defaults = ParseLoad(f.Args({"--rate=10"}));
  REQUIRE_FALSE(defaults.exit.has_value());
  CHECK(defaults.options.server == f.server);
  CHECK(defaults.options.rate == 10);
  CHECK(defaults.options.skip_s == 1);
  CHECK(defaults.options.timeout_s == 300);
  CHECK(defaults.options.batch == 1);

  const Parsed set = ParseLoad(
      f.Args({"--rate=2.5", "--own=1", "--skip_s=0", "--workers=3", "--server_args=--cpus=1  --v=1",
              "--batch=4", "--seed=9", "--timeout_s=60", "--json=" + f.dir.path() + "/r.json"}));
  REQUIRE_FALSE(set.exit.has_value());
  CHECK(set.options.rate == 2.5);
  CHECK(set.own == 1);
  CHECK(set.options.skip_s == 0);
  CHECK(set.options.workers == 3);
  CHECK(set.options.server_args == std::vector<std::string>{"--cpus=1", "--v=1"});
  CHECK(set.options.batch == 4);
  CHECK(set.options.seed == 9);
  CHECK(set.options.timeout_s == 60);
  CHECK(set.options.json_path == f.dir.path() + "/r.json");

  const Parsed help = ParseLoad({"--help"});
  CHECK(help.exit == std::optional<int>(kExitOk));
  for (const char* text :
       {"usage: kiln-bench harness --model_repository=DIR",
        "--server_args=", "--model=\"\"              the model the test loads", "--own=5",
        "--skip_s=1", "--timeout_s=300", "keep the logs here", "kiln-bench harness --model=m"}) {
    CHECK_THAT(help.out, Contains(text));
  }
}

TEST_CASE("scenario flags: each bad value exits 2 with the reason", "[bench][flags]") {
  Fixture f;
  const std::vector<std::pair<std::vector<std::string>, std::string>> bad = {
      {{"--model=mlp", "--server=" + f.server, "--rate=10"}, "--model_repository is required"},
      {f.Args({"--rate=0"}), "--rate must be a number > 0, not '0'"},
      {f.Args({"--rate=fast"}), "--rate must be a number > 0, not 'fast'"},
      {f.Args({"--rate"}), "flag --rate needs a value"},
      {f.Args({"--rate=10", "--skip_s=-1"}), "--skip_s must be a number >= 0, not '-1'"},
      {f.Args({"--rate=10", "--workers=257"}), "--workers must be in 0..256, got 257"},
      {f.Args({"--rate=10", "--server_args=--port=1"}), "--server_args: --port is set by"},
      {f.Args({"--rate=10", "--batch=0"}), "--batch must be >= 1"},
      {f.Args({"--rate=10", "--seed=-1"}), "--seed must be >= 0"},
      {f.Args({"--rate=10", "--timeout_s=0"}), "--timeout_s must be in 1..86400, got 0"},
      {f.Args({"--rate=10", "--own=20"}), "need --own < --rate"},
      {f.Args({"--rate=10", "--frobnicate=1"}), "unknown flag --frobnicate"},
  };
  for (const auto& [args, reason] : bad) {
    INFO(args.back());
    const Parsed parsed = ParseLoad(args);
    CHECK(parsed.exit == std::optional<int>(kExitUsage));
    CHECK_THAT(parsed.err, Contains("kiln-bench harness: " + reason) &&
                               Contains("run 'kiln-bench harness --help' for its flags"));
  }
}

TEST_CASE("scenario flags: --rate 0 is a share of the measured capacity", "[bench][flags]") {
  Fixture f;
  const Parsed measured = ParseLoad(f.Args({"--own=0.5"}), /*share=*/true);
  REQUIRE_FALSE(measured.exit.has_value());
  CHECK(measured.options.rate == 0);
  CHECK(measured.options.load_share == 0.7);
  const Parsed share = ParseLoad(f.Args({"--rate=0", "--load_share=1.5"}), /*share=*/true);
  CHECK_THAT(share.err, Contains("--load_share must be in (0, 1]"));
  const Parsed zero = ParseLoad(f.Args({"--load_share=0"}), /*share=*/true);
  CHECK_THAT(zero.err, Contains("--load_share must be a number > 0, not '0'"));
}

// --- the run -----------------------------------------------------------------------------------

struct Ran {
  int exit = -1;
  std::string out, err;
  std::string work_dir;
};

Ran Run(const ScenarioOptions& options,
        const std::function<absl::StatusOr<ScenarioOutcome>(RunFiles&)>& run) {
  Ran ran;
  std::ostringstream out, err;
  ran.exit = RunScenario(
      kTest, options,
      [&](RunFiles& files) {
        ran.work_dir = files.work_dir();
        return run(files);
      },
      out, err);
  ran.out = out.str();
  ran.err = err.str();
  return ran;
}

Report Result() {
  Report report;
  report.Set("p99_ratio", Number(1.25)).Line("p99 ratio {p99_ratio}x");
  return report;
}

void WriteLog(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

TEST_CASE("scenario run: a result is printed and written, and the work directory goes",
          "[bench][run]") {
  TempDir dir;
  ScenarioOptions options;
  options.json_path = dir.path() + "/result.json";
  const Ran ran = Run(options, [](RunFiles& files) -> absl::StatusOr<ScenarioOutcome> {
    CHECK(files.log_dir() == files.work_dir());  // no --log_dir
    WriteLog(files.Log("test.log"), "fine\n");
    return ScenarioOutcome(Result());
  });
  CHECK(ran.exit == kExitOk);
  CHECK(ran.out == "p99 ratio 1.25x\nwrote " + options.json_path + "\n");
  CHECK(ran.err.empty());
  std::ifstream written(options.json_path);
  CHECK(nlohmann::json::parse(written)["p99_ratio"] == 1.25);
  CHECK_THAT(ran.work_dir, Contains("/kiln-harness-"));
  CHECK_FALSE(std::filesystem::exists(ran.work_dir));
}

TEST_CASE("scenario run: a failed run shows why and its logs' last lines, and keeps them",
          "[bench][run]") {
  TempDir dir;
  ScenarioOptions options;
  options.log_dir = dir.path();
  options.json_path = dir.path() + "/result.json";
  const Ran ran = Run(options, [&](RunFiles& files) -> absl::StatusOr<ScenarioOutcome> {
    CHECK(files.log_dir() == dir.path());
    const std::string ended = files.Log("ended.log");
    WriteLog(ended, "ended well\n");
    files.Done(ended);
    WriteLog(files.Log("server.log"), "line 1\nline 2\n");
    files.Log("nginx/error.log", "nginx");  // never written
    return absl::UnavailableError("replica B: exited before SERVING");
  });
  CHECK(ran.exit == kExitFailure);
  CHECK(ran.out.empty());
  CHECK(ran.err ==
        "kiln-bench harness: replica B: exited before SERVING\n"
        "server log (kept): " +
            dir.path() +
            "/server.log\n"
            "--- last lines of the log ---\nline 1\nline 2\n---\n"
            "nginx log (kept): " +
            dir.path() +
            "/nginx/error.log\n"
            "logs kept in " +
            dir.path() + "\n");
  CHECK_FALSE(std::filesystem::exists(options.json_path));
  CHECK(std::filesystem::exists(ran.work_dir));
  std::filesystem::remove_all(ran.work_dir);
}

TEST_CASE("scenario run: a failure found after the result still prints and writes it",
          "[bench][run]") {
  TempDir dir;
  ScenarioOptions options;
  options.json_path = dir.path() + "/result.json";
  const Ran ran = Run(options, [](RunFiles& files) -> absl::StatusOr<ScenarioOutcome> {
    WriteLog(files.Log("b.log"), "b failed\n");
    return ScenarioOutcome(Result(), absl::UnavailableError("replica B: never SERVING"));
  });
  CHECK(ran.exit == kExitFailure);
  CHECK_THAT(ran.out, Contains("p99 ratio 1.25x\n"));
  CHECK(std::filesystem::exists(options.json_path));
  CHECK_THAT(ran.err, Contains("kiln-bench harness: replica B: never SERVING\n") &&
                          Contains("b failed") && Contains("logs kept in " + ran.work_dir));
  CHECK(std::filesystem::exists(ran.work_dir));
  std::filesystem::remove_all(ran.work_dir);
}

}  // namespace
}  // namespace kiln::bench
