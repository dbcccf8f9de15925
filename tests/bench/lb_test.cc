// kiln-bench lb without servers: the CPU lists, the phases and seconds of a run, the report and
// the JSON, the flags; and the nginx configuration it runs, checked by Debian's nginx itself
// (`nginx -t`) and against the shipped deploy/nginx/kiln-grpc.conf.
// (tests/integration/kiln_bench_lb_test.cc runs it against real replicas and a real nginx.)
#include <catch2/catch.hpp>

#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "bench/lb_command.h"
#include "bench/nginx_balancer.h"
#include "tests/run_command.h"
#include "tests/test_paths.h"

namespace kiln::bench {
namespace {

using Catch::Matchers::Contains;
using kiln::testing::RunCommand;
using kiln::testing::TempDir;

RequestRecord Ok(double scheduled_ms, double latency_ms) {
  return RequestRecord{scheduled_ms, scheduled_ms, scheduled_ms + latency_ms, 0};
}

RequestRecord Failed(double scheduled_ms, int code) {
  return RequestRecord{scheduled_ms, scheduled_ms, scheduled_ms + 1, code};
}

// A run of 9 s: steady until 3 s, the new replicas warm until 4.5 s, all serve until 6 s, then
// blue/green (green warms until 7 s, blue drains until 7.5 s, green alone until 9 s).
TimedEvents Events(bool blue_green = true) {
  TimedEvents e = LbEvents();
  e.Set("scale_started", 3000);
  e.Set("scale_serving", 4400);
  e.Set("scale_joined", 4500);
  if (blue_green) {
    e.Set("green_started", 6000);
    e.Set("green_serving", 6800);
    e.Set("green_checked", 6900);
    e.Set("switched", 7000);
    e.Set("old_worker_gone", 7100);
    e.Set("blue_stopped", 7500);
  }
  e.Set("end", 9000);
  return e;
}

// Ten requests per second, 10 ms each, except 30 ms in second 5 (the worst of the scale-out) and
// 50 ms in second 6 (blue/green, not the scale-out); one UNAVAILABLE at 7.2 s.
std::vector<RequestRecord> Records() {
  std::vector<RequestRecord> records;
  for (int i = 0; i < 90; ++i) {
    const double t = i * 100.0;
    if (t == 7200) {
      records.push_back(Failed(t, 14));
      continue;
    }
    records.push_back(Ok(t, t >= 5000 && t < 6000 ? 30 : t >= 6000 && t < 7000 ? 50 : 10));
  }
  return records;
}

TEST_CASE("lb: --cpus takes CPU numbers and ranges, one per replica, and names a bad entry",
          "[lb]") {
  CHECK(ParseCpuLists("").value().empty());
  CHECK(ParseCpuLists("0,1,1").value() == std::vector<std::string>{"0", "1", "1"});
  CHECK(ParseCpuLists(" 0 , 2-3").value() == std::vector<std::string>{"0", "2-3"});
  for (const char* bad : {"0,x", "1-", "3-2", "-1", "0,,1"}) {
    const auto parsed = ParseCpuLists(bad);
    REQUIRE_FALSE(parsed.ok());
    CHECK_THAT(std::string(parsed.status().message()), Contains("--cpus"));
  }
}

TEST_CASE("lb: the phases follow the events and leave out those that did not happen", "[lb]") {
  std::vector<PhaseSpan> spans = LbPhaseSpans(Events(), 1000);
  REQUIRE(spans.size() == 6);
  CHECK(spans[0].name == "steady");
  CHECK(spans[0].from_ms == 1000);
  CHECK(spans[0].to_ms == 3000);
  CHECK(spans[1].name == "new replicas warm");
  CHECK(spans[1].to_ms == 4500);
  CHECK(spans[2].name == "all replicas");
  CHECK(spans[2].to_ms == 6000);
  CHECK(spans[5].name == "green alone");
  CHECK(spans[5].from_ms == 7500);
  CHECK(spans[5].to_ms == 9000);

  spans = LbPhaseSpans(Events(/*blue_green=*/false), 1000);
  REQUIRE(spans.size() == 3);
  CHECK(spans[2].name == "all replicas");
  CHECK(spans[2].to_ms == 9000);

  TimedEvents scale_failed = LbEvents();  // nothing happened but the load
  scale_failed.Set("end", 5000);
  spans = LbPhaseSpans(scale_failed, 1000);
  REQUIRE(spans.size() == 1);
  CHECK(spans[0].to_ms == 5000);
}

TEST_CASE(
    "lb: requests are counted by phase and by second, and the worst scale-out second is "
    "found against the steady p95",
    "[lb]") {
  LbResult result;
  result.events = Events();
  CountLbRequests(Records(), 1000, &result);
  REQUIRE(result.phases.size() == 6);
  CHECK(result.phases[0].latency.count == 20);  // 1 s .. 3 s
  CHECK(result.phases[0].latency.p95 == 10);
  REQUIRE(result.seconds.size() == 9);
  CHECK(result.seconds[5].latency.p95 == 30);
  CHECK(result.seconds[7].errors.at("UNAVAILABLE") == 1);
  CHECK(result.phases[4].errors.at("UNAVAILABLE") == 1);  // blue drains: 7 s .. 7.5 s
  CHECK(result.errors() == 1);
  // The scale-out runs from 3 s to green's start at 6 s: seconds 3, 4, 5.
  CHECK(result.scale_out_seconds == std::vector<size_t>{3, 4, 5});
  CHECK(result.joined_seconds == std::vector<size_t>{5});  // joined at 4.5 s
  int worst = -1;
  CHECK(result.WorstScaleOutRatio(&worst) == Approx(3.0));
  CHECK(worst == 5);  // second 6 (50 ms) belongs to blue/green, not to the scale-out
  result.events.Set("scale_joined", 5500);
  CountLbRequests(Records(), 1000, &result);
  CHECK(result.joined_seconds.empty());
  CHECK(result.WorstRatio(result.joined_seconds, &worst) == 0);
  CHECK(worst == -1);
}

TEST_CASE("lb: the report and the JSON carry the events, phases, seconds and the verdicts",
          "[lb]") {
  LbOptions options;
  options.model = "resnet18";
  options.cpus = {"0", "1", "1"};
  LbResult result;
  result.nginx_version = "nginx/1.22.1";
  result.events = Events();
  result.check_p50_ms = {12.5, 13.5, 14.5};
  result.blue_exits = {"exit code 0", "exit code 0", "exit code 0"};
  CountLbRequests(Records(), 1000, &result);

  const std::string report = LbReport(options, result).Text();
  CHECK_THAT(report, !Contains("?}"));  // every value a line names was set
  CHECK_THAT(report, Contains("resnet18 through nginx/1.22.1"));
  CHECK_THAT(report, Contains("replicas pinned to CPUs: 0 | 1 | 1"));
  CHECK_THAT(report, Contains("p95 / steady p95 = 3.00x (second 5"));
  CHECK_THAT(report, Contains("of those after the join: 3.00x (second 5)"));
  CHECK_THAT(report, Contains("failed requests: 1"));
  CHECK_THAT(report, Contains("p50 12.50 / 13.50 / 14.50 ms"));

  const nlohmann::json json = nlohmann::json::parse(LbReport(options, result).Json());
  CHECK(json["command"] == "lb");
  CHECK(json["errors"] == 1);
  CHECK(json["worst_scale_out_p95_ratio"] == 3.0);
  CHECK(json["worst_scale_out_second"] == 5);
  CHECK(json["worst_joined_p95_ratio"] == 3.0);
  CHECK(json["worst_joined_second"] == 5);
  CHECK(json["events_ms"]["switched"] == 7000.0);
  CHECK(json["phases"].size() == 6);
  REQUIRE(json["seconds"].size() == 9);
  CHECK(json["seconds"][5]["scale_out"] == true);
  CHECK(json["seconds"][6]["scale_out"] == false);
  CHECK(json["seconds"][7]["errors"]["UNAVAILABLE"] == 1);
  CHECK(json["blue_exits"].size() == 3);

  result.events = LbEvents();  // events that did not happen are null, not a time
  CHECK(nlohmann::json::parse(LbReport(options, result).Json())["events_ms"]["switched"].is_null());
}

TEST_CASE("lb: bad flags are refused with the reason", "[lb]") {
  const std::string models = kiln::testing::ModelsDir();
  auto refusal = [&](const std::vector<std::string>& extra) {
    std::vector<std::string> args = {"--model_repository=" + models, "--model=mlp"};
    args.insert(args.end(), extra.begin(), extra.end());
    LbOptions options;
    std::ostringstream out, err;
    const std::optional<int> exit = ParseLbArgs(args, &options, out, err);
    REQUIRE(exit.has_value());
    CHECK(*exit == 2);
    return err.str();
  };
  CHECK_THAT(refusal({"--replicas=1"}), Contains("--replicas must be 2..16"));
  CHECK_THAT(refusal({"--cpus=0,a"}), Contains("'a' is not a CPU number"));
  CHECK_THAT(refusal({"--arrival=bursty"}), Contains("--arrival must be poisson or constant"));
  CHECK_THAT(refusal({"--steady_s=2", "--skip_s=2"}), Contains("need --skip_s < --steady_s"));
  CHECK_THAT(refusal({"--nginx=/nonexistent/nginx"}), Contains("--nginx: no executable"));
  CHECK_THAT(refusal({"--rate=0"}), Contains("rate"));
  CHECK_THAT(refusal({"--warmup=maybe"}), Contains("--warmup must be on or off"));

  LbOptions options;
  std::ostringstream out, err;
  CHECK(ParseLbArgs({"--model_repository=" + models, "--model=mlp", "--cpus=0,1,1"}, &options, out,
                    err) == std::nullopt);
  CHECK(options.cpus.size() == 3);
  CHECK(options.nginx.find('/') != std::string::npos);  // resolved, e.g. /usr/sbin/nginx
  CHECK(options.server_args.empty());
  CHECK(ParseLbArgs({"--model_repository=" + models, "--model=mlp", "--warmup=off",
                     "--server_args=--cpus=1"},
                    &options, out, err) == std::nullopt);
  CHECK(options.server_args == std::vector<std::string>{"--cpus=1", "--warmup=off"});
}

// The directives of the upstream and location blocks in `text`: every line ending in ';' that
// is not a `server` (an upstream's address) or a `listen` line, trimmed, comments dropped.
std::set<std::string> ProxyDirectives(const std::string& text) {
  std::set<std::string> directives;
  std::istringstream lines(text);
  std::string line;
  bool in_block = false;
  const std::regex opens(R"(^\s*(upstream kiln|location /)\s*\{)");
  while (std::getline(lines, line)) {
    line = line.substr(0, line.find('#'));
    if (std::regex_search(line, opens)) {
      in_block = true;
      continue;
    }
    if (line.find('}') != std::string::npos) in_block = false;
    const size_t first = line.find_first_not_of(" \t");
    if (!in_block || first == std::string::npos) continue;
    const std::string directive = line.substr(first, line.find_last_not_of(" \t") - first + 1);
    if (directive.rfind("server ", 0) == 0) continue;
    directives.insert(directive);
  }
  return directives;
}

// Runs `nginx -t` on a main configuration whose http block holds `http_body`, in `dir`.
kiln::testing::CommandResult NginxTest(const std::string& nginx, const TempDir& dir,
                                       const std::string& main_conf) {
  const std::string conf = dir.WriteFile("test.conf", main_conf);
  return RunCommand(absl::StrCat(nginx, " -t -p ", dir.path(), " -c ", conf, " -e ", dir.path(),
                                 "/error.log 2>&1"));
}

TEST_CASE("lb: the nginx configuration kiln-bench runs passes nginx -t and is the shipped one's",
          "[lb][nginx]") {
  const std::string nginx = FindNginx("nginx", "/usr/sbin:/usr/bin");
  REQUIRE_FALSE(nginx.empty());  // scripts/setup.sh installs Debian's nginx
  TempDir dir;
  const std::string rendered = NginxConfig(18400, {18401, 18402, 18403}, dir.path());
  CHECK_THAT(rendered, Contains("listen 127.0.0.1:18400 http2;"));
  CHECK_THAT(rendered, Contains("server 127.0.0.1:18403 max_fails=1 fail_timeout=5s;"));
  const kiln::testing::CommandResult tested = NginxTest(nginx, dir, rendered);
  INFO(tested.output);
  CHECK(tested.exit_code == 0);

  std::ifstream shipped_file(std::string(KILN_SOURCE_DIR) + "/deploy/nginx/kiln-grpc.conf");
  REQUIRE(shipped_file.good());
  std::stringstream shipped;
  shipped << shipped_file.rdbuf();
  std::set<std::string> expected;
  for (const char* const* d = kNginxProxyDirectives; *d != nullptr; ++d) expected.insert(*d);
  CHECK(ProxyDirectives(shipped.str()) == expected);
  CHECK(ProxyDirectives(rendered) == expected);

  // The shipped file is valid where it goes: inside http {}.
  const std::string shipped_path = dir.WriteFile("kiln-grpc.conf", shipped.str());
  const kiln::testing::CommandResult included = NginxTest(
      nginx, dir,
      absl::StrCat("pid ", dir.path(), "/nginx.pid;\nevents {}\nhttp {\n  client_body_temp_path ",
                   dir.path(), "/cb;\n  proxy_temp_path ", dir.path(), "/p;\n  fastcgi_temp_path ",
                   dir.path(), "/f;\n  uwsgi_temp_path ", dir.path(), "/u;\n  scgi_temp_path ",
                   dir.path(), "/s;\n  include ", shipped_path, ";\n}\n"));
  INFO(included.output);
  CHECK(included.exit_code == 0);

  // And nginx -t does catch a broken one, so the checks above can fail.
  std::string broken = rendered;
  broken.replace(broken.find("grpc_pass"), 9, "grpc_passs");
  const kiln::testing::CommandResult rejected = NginxTest(nginx, dir, broken);
  CHECK(rejected.exit_code != 0);
  CHECK_THAT(rejected.output, Contains("unknown directive \"grpc_passs\""));
}

}  // namespace
}  // namespace kiln::bench
