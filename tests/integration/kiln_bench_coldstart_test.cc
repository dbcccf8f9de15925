// Drives the real `kiln-bench coldstart` and `kiln-bench scaleout` against the real kiln-server,
// as a user does: one cold start of the mlp model, a second replica started beside a loaded
// first one, their JSON reports, and no server process left behind.
#include <signal.h>
#include <sys/types.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

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

// The pids of live processes whose command line holds "--lock_dir=<dir>/" (pgrep's pattern
// starts with a bracket expression, so it does not match the shell that runs pgrep).
std::vector<pid_t> ServersWithLockDirUnder(const std::string& dir) {
  const CommandResult found = RunCommand("pgrep -f '[-]-lock_dir=" + dir + "/'");
  std::vector<pid_t> pids;
  std::istringstream in(found.output);
  for (pid_t pid; in >> pid;) pids.push_back(pid);
  return pids;
}

TEST_CASE("kiln-bench coldstart measures one cold start of mlp and leaves no server behind",
          "[server][bench][coldstart]") {
  REQUIRE(RunCommand("command -v pgrep").exit_code == 0);
  TempDir dir;
  const std::string repo = kiln::testing::OneDemoModelRepository(dir, "mlp");
  // kiln-bench makes its --lock_dir under $TMPDIR: a directory of this test's own, so that any
  // leftover server of this run is found by its command line.
  const std::string tmp = dir.path() + "/tmp";
  fs::create_directories(tmp);
  const std::string json = dir.path() + "/coldstart.json";
  const std::string logs = dir.path() + "/logs";
  const CommandResult result =
      RunCommand("TMPDIR=" + tmp + " " + kBench + " coldstart --server=" + kServer +
                 " --model_repository=" + repo +
                 " --model=mlp --workers=1 --repeat=1 --steady_requests=20 --timeout_s=120" +
                 " --json=" + json + " --log_dir=" + logs);
  INFO(result.output);
  CHECK(result.exit_code == 0);
  CHECK_THAT(result.output, Contains("run 1/1: ready "));
  CHECK_THAT(result.output, Contains("summary: mlp, 1 worker(s), warmup on, share_weights on"));

  const std::vector<pid_t> left = ServersWithLockDirUnder(tmp);
  CHECK(left.empty());
  for (pid_t pid : left) kill(pid, SIGKILL);  // the test's own servers, found by their lock dir

  std::ifstream in(json);
  REQUIRE(in);
  const nlohmann::json doc = nlohmann::json::parse(in);
  CHECK(doc["model"] == "mlp");
  CHECK(doc["workers"] == 1);
  CHECK(doc["repeat"] == 1);
  REQUIRE(doc["runs"].size() == 1);
  const nlohmann::json& run = doc["runs"][0];
  CHECK(run["ready_ms"].get<double>() > 0);
  CHECK(run["first_ms"].get<double>() > 0);
  CHECK(run["steady_p50_ms"].get<double>() > 0);
  CHECK(run["steady_p95_ms"].get<double>() >= run["steady_p50_ms"].get<double>());
  CHECK(run["pss_mb"].get<double>() > 0);
  // kiln returns each request's CPU time in its worker: the first's and the after-pause ones'.
  CHECK(run["first_cpu_ms"].get<double>() > 0);
  CHECK(run["idle_cpu_p50_ms"].get<double>() > 0);
  CHECK(run["cpu_idle_ratio"].get<double>() ==
        Approx(run["first_cpu_ms"].get<double>() / run["idle_cpu_p50_ms"].get<double>())
            .epsilon(0.01));
  CHECK(doc["ready_ms"]["median"] == run["ready_ms"]);

  // The server's log was kept in --log_dir and shows it reached SERVING and stopped.
  std::ifstream log(logs + "/coldstart-mlp-run1.log");
  REQUIRE(log);
  std::stringstream text;
  text << log.rdbuf();
  CHECK_THAT(text.str(), Contains("ready: serving gRPC on 127.0.0.1:"));
  CHECK_THAT(text.str(), Contains("stopped"));
}

TEST_CASE("kiln-bench coldstart reports a server that exits before SERVING",
          "[server][bench][coldstart]") {
  TempDir dir;
  // A repository whose model cannot load: the server exits 1 during startup.
  dir.WriteFile("repo/mlp/config.pbtxt", "name: \"mlp\"\nbackend: \"pytorch\"\n");
  dir.WriteFile("repo/mlp/1/model.pt", "not a TorchScript file");
  const std::string tmp = dir.path() + "/tmp";
  fs::create_directories(tmp);
  const CommandResult result = RunCommand(
      "TMPDIR=" + tmp + " " + kBench + " coldstart --server=" + kServer +
      " --model_repository=" + dir.path() + "/repo --model=mlp --repeat=2 --timeout_s=60");
  INFO(result.output);
  CHECK(result.exit_code == 1);
  CHECK_THAT(result.output,
             Contains("run 1/2 failed: kiln-server exited before SERVING: exit code"));
  CHECK_THAT(result.output, Contains("server log (kept): " + tmp + "/kiln-coldstart-"));
  CHECK_THAT(result.output, Contains("--- last lines of the log ---"));
  CHECK(ServersWithLockDirUnder(tmp).empty());
}

TEST_CASE(
    "kiln-bench scaleout starts replica B beside loaded replica A and leaves no server "
    "behind",
    "[server][bench][scaleout]") {
  REQUIRE(RunCommand("command -v pgrep").exit_code == 0);
  TempDir dir;
  const std::string repo = kiln::testing::OneDemoModelRepository(dir, "mlp");
  const std::string tmp = dir.path() + "/tmp";
  fs::create_directories(tmp);
  const std::string json = dir.path() + "/scaleout.json";
  const CommandResult result =
      RunCommand("TMPDIR=" + tmp + " " + kBench + " scaleout --server=" + kServer +
                 " --model_repository=" + repo +
                 " --model=mlp --workers=1 --rate=40 --duration_s=8 --start_b_s=2 --skip_s=0.5"
                 " --timeout_s=120 --json=" +
                 json);
  INFO(result.output);
  CHECK(result.exit_code == 0);
  CHECK_THAT(result.output, Contains("replica B started 2."));
  CHECK_THAT(result.output, Contains("A's p99 while B warms / before: "));

  const std::vector<pid_t> left = ServersWithLockDirUnder(tmp);
  CHECK(left.empty());
  for (pid_t pid : left) kill(pid, SIGKILL);

  std::ifstream in(json);
  REQUIRE(in);
  const nlohmann::json doc = nlohmann::json::parse(in);
  CHECK(doc["model"] == "mlp");
  CHECK(doc["b_error"] == "");
  CHECK(doc["b_ready_ms"].get<double>() > 0);
  CHECK(doc["errors"] == 0);
  REQUIRE(doc["phases"].size() == 3);
  // 40 req/s: about 60 requests before B (1.5 s) and 240 after B is SERVING; B's warmup of mlp
  // takes some hundred ms, so its window may hold few or none.
  CHECK(doc["phases"][0]["count"].get<int>() > 20);
  CHECK(doc["phases"][2]["count"].get<int>() > 20);
}

}  // namespace
}  // namespace kiln
