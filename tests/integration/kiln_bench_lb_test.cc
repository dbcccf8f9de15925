// kiln replicas behind Debian's real nginx: `kiln-bench lb` run as a user runs it (a scale-out
// 1 -> 2 and a blue/green switch under load, with no failed request and nothing left running),
// and nginx's passive failover past a replica that was killed.
#include <signal.h>
#include <sys/types.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "bench/nginx_balancer.h"
#include "bench/oip_client.h"
#include "bench/scenario_load.h"
#include "common/process.h"
#include "tests/run_command.h"
#include "tests/test_paths.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;
using Catch::Matchers::Contains;
using kiln::testing::CommandResult;
using kiln::testing::RunCommand;
using kiln::testing::TempDir;

const std::string kBench = KILN_BENCH_BINARY;
const std::string kServer = KILN_SERVER_BINARY;
constexpr int64_t kTimeoutMs = 10000;

// A repository with only the demo mlp model, linked.
std::string MlpOnlyRepository(const TempDir& dir) {
  const fs::path repo = fs::path(dir.path()) / "repo";
  fs::create_directories(repo);
  fs::create_directory_symlink(fs::path(kiln::testing::ModelsDir()) / "mlp", repo / "mlp");
  return repo.string();
}

// Live processes whose command line mentions `dir` (pgrep's pattern starts with a bracket
// expression, so it does not match the shell that runs pgrep).
std::vector<pid_t> ProcessesMentioning(const std::string& dir) {
  const CommandResult found =
      RunCommand("pgrep -f '[" + dir.substr(0, 1) + "]" + dir.substr(1) + "'");
  std::vector<pid_t> pids;
  std::istringstream in(found.output);
  for (pid_t pid; in >> pid;) pids.push_back(pid);
  return pids;
}

TEST_CASE(
    "kiln-bench lb scales out 1 -> 2 replicas behind nginx and switches blue to green "
    "under load with no failed request, leaving nothing running",
    "[server][bench][lb]") {
  REQUIRE(RunCommand("command -v pgrep").exit_code == 0);
  TempDir dir;
  const std::string repo = MlpOnlyRepository(dir);
  const std::string tmp = dir.path() + "/tmp";
  fs::create_directories(tmp);
  const std::string json = dir.path() + "/lb.json";
  // Unpinned: the test must pass on a machine with one CPU too; the benchmark pins.
  // A relative --log_dir, as scripts/lb_bench.sh passes one (nginx's own paths must not be).
  const CommandResult result = RunCommand(
      absl::StrCat("cd ", dir.path(), " && TMPDIR=", tmp, " ", kBench, " lb --server=", kServer,
                   " --model_repository=", repo,
                   " --model=mlp --workers=1 --rate=50 --replicas=2 --steady_s=2 --skip_s=0.5 "
                   "--after_s=1 --tail_s=1 --check_requests=5 --timeout_s=120 --log_dir=logs "
                   "--json=",
                   json, " 2>&1"));
  INFO(result.output);
  CHECK(result.exit_code == 0);
  CHECK_THAT(result.output, Contains("through nginx/"));
  CHECK_THAT(result.output, Contains("worst second of the scale-out"));
  CHECK(fs::exists(dir.path() + "/logs/nginx/error.log"));
  CHECK(fs::exists(dir.path() + "/logs/lb-green2.log"));

  const std::vector<pid_t> left = ProcessesMentioning(tmp);
  CHECK(left.empty());
  for (const pid_t pid : left) kill(pid, SIGKILL);

  std::ifstream in(json);
  REQUIRE(in);
  const nlohmann::json doc = nlohmann::json::parse(in);
  // Across the scale-out's nginx reload, the switch's reload and blue's drain: nothing failed.
  CHECK(doc["errors"] == 0);
  for (const char* event :
       {"scale_started", "scale_serving", "scale_joined", "green_started", "green_serving",
        "green_checked", "switched", "old_worker_gone", "blue_stopped", "end"}) {
    INFO(event);
    CHECK(doc["events_ms"][event].is_number());
  }
  CHECK(doc["events_ms"]["scale_joined"].get<double>() >=
        doc["events_ms"]["scale_serving"].get<double>());
  CHECK(doc["events_ms"]["switched"].get<double>() >=
        doc["events_ms"]["green_checked"].get<double>());
  CHECK(doc["blue_exits"] == nlohmann::json({"exit code 0", "exit code 0"}));
  CHECK(doc["check_p50_ms"].size() == 2);
  REQUIRE(doc["phases"].size() == 6);
  int64_t counted = 0;
  for (const nlohmann::json& second : doc["seconds"]) counted += second["count"].get<int64_t>();
  // 50 req/s over at least 2 + 1 + 1 s of load, every request OK.
  CHECK(counted >= 150);
  CHECK(doc["phases"][0]["count"].get<int>() > 30);      // steady, 1.5 s
  CHECK(doc["phases"][2]["count"].get<int>() > 20);      // all replicas, 1 s
  CHECK(doc["worst_scale_out_second"].get<int>() >= 2);  // the scale-out starts at 2 s
}

TEST_CASE("nginx fails over past a killed replica: every call through it still succeeds",
          "[server][bench][lb]") {
  TempDir dir;
  const std::string repo = MlpOnlyRepository(dir);
  std::vector<bench::StartedServer> replicas;
  for (int i = 0; i < 2; ++i) {
    absl::StatusOr<bench::StartedServer> started = bench::StartServing(
        kServer, repo, 1, {}, dir.path(), absl::StrCat(dir.path(), "/replica", i, ".log"), 120);
    REQUIRE(started.ok());
    replicas.push_back(*std::move(started));
  }
  const std::string nginx = bench::FindNginx("nginx", "/usr/sbin:/usr/bin");
  REQUIRE_FALSE(nginx.empty());
  const absl::StatusOr<int> port = FreeLoopbackPort();
  REQUIRE(port.ok());
  fs::create_directories(dir.path() + "/nginx");
  absl::StatusOr<std::unique_ptr<bench::NginxBalancer>> balancer = bench::NginxBalancer::Start(
      nginx, dir.path() + "/nginx", *port, {replicas[0].port, replicas[1].port});
  REQUIRE(balancer.ok());

  const std::unique_ptr<inference::GRPCInferenceService::Stub> stub =
      inference::GRPCInferenceService::NewStub(
          bench::CreateChannel(absl::StrCat("127.0.0.1:", *port)));
  const absl::StatusOr<bench::SyntheticRequest> request =
      bench::FetchLoadRequest(*stub, "mlp", 1, 0, kTimeoutMs);
  REQUIRE(request.ok());
  auto calls_ok = [&](int count) {
    int ok = 0;
    for (int i = 0; i < count; ++i) {
      grpc::ClientContext context;
      bench::SetTimeout(&context, kTimeoutMs);
      inference::ModelInferResponse response;
      if (stub->ModelInfer(&context, request->request, &response).ok()) ++ok;
    }
    return ok;
  };
  CHECK(calls_ok(10) == 10);

  // The second replica dies (SIGKILL to its whole process group); its port refuses from now on.
  const pid_t group = replicas[1].server->pid();
  REQUIRE(kill(-group, SIGKILL) == 0);
  REQUIRE(PollUntil([&] { return replicas[1].server->PeekExit().has_value(); },
                    std::chrono::seconds(10)));
  CHECK(calls_ok(20) == 20);
  std::ifstream log(dir.path() + "/nginx/error.log");
  std::stringstream text;
  text << log.rdbuf();
  INFO(text.str());
  // Proof that a call did go to the dead replica and was passed on, not just round-robin luck.
  CHECK_THAT(text.str(), Contains("Connection refused"));
  CHECK((*balancer)->Stop().ok());
}

}  // namespace
}  // namespace kiln
