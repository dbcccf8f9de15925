// kiln-bench coldstart without a server: its flags, the server command line, the /proc readers
// (PSS, process group), LaunchedServer on stand-in commands, and the summary and JSON built from
// fake runs. Spawning and the process tree are tested in tests/common/process_test.cc.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/str_join.h"
#include "bench/coldstart_command.h"
#include "bench/server_launcher.h"
#include "tests/bench/scenario_fixture.h"
#include "tests/test_paths.h"

namespace kiln::bench {
namespace {

using Catch::Matchers::Contains;
using kiln::testing::TempDir;

bool Has(const std::vector<pid_t>& pids, pid_t pid) {
  return std::find(pids.begin(), pids.end(), pid) != pids.end();
}

using Fixture = testing::ScenarioFixture;

struct Parsed {
  std::optional<int> exit;
  ColdstartOptions options;
  std::string out, err;
};

Parsed Parse(const std::vector<std::string>& args) {
  Parsed parsed;
  std::ostringstream out, err;
  parsed.exit = ParseColdstartArgs(args, &parsed.options, out, err);
  parsed.out = out.str();
  parsed.err = err.str();
  return parsed;
}

// Flags that ParseColdstartArgs refuses, each for `reason`.
struct RefusedCase {
  std::vector<std::string> args;
  std::string reason;
};

// Each case exits 2 with "kiln-bench coldstart: <...reason...>" and the pointer to --help.
void CheckRefused(const std::vector<RefusedCase>& cases) {
  for (const RefusedCase& c : cases) {
    INFO("args: " << absl::StrJoin(c.args, " "));
    Parsed parsed = Parse(c.args);
    CHECK(parsed.exit == std::optional<int>(2));
    CHECK_THAT(parsed.err, Contains("kiln-bench coldstart: ") && Contains(c.reason) &&
                               Contains("kiln-bench coldstart --help"));
  }
}

// --- flags -----------------------------------------------------------------------------------

TEST_CASE("coldstart flags: defaults and every value are taken", "[coldstart][flags]") {
  Fixture f;
  Parsed defaults = Parse(f.Args({}));
  REQUIRE_FALSE(defaults.exit.has_value());
  CHECK(defaults.err.empty());
  CHECK(defaults.options.model_repository == f.repo);
  CHECK(defaults.options.model == "mlp");
  CHECK(defaults.options.server == f.server);
  CHECK(defaults.options.workers == 1);
  CHECK(defaults.options.warmup);
  CHECK(defaults.options.share_weights);
  CHECK(defaults.options.server_args.empty());
  CHECK(defaults.options.repeat == 3);
  CHECK(defaults.options.steady_requests == 50);
  CHECK(defaults.options.batch == 1);
  CHECK(defaults.options.seq == 16);
  CHECK_FALSE(defaults.options.text.has_value());  // a text model gets sample text
  CHECK(defaults.options.timeout_s == 300);
  CHECK(defaults.options.json_path.empty());
  CHECK(defaults.options.log_dir.empty());

  const std::string logs = f.dir.path() + "/new/logs";
  Parsed all = Parse(f.Args({"--workers=2", "--warmup=off", "--share_weights=off",
                             "--server_args=--drain_timeout_s=5  --v=1", "--repeat=5",
                             "--steady_requests=7", "--batch=4", "--seq=32", "--timeout_s=60",
                             "--json=" + f.dir.path() + "/out.json", "--log_dir=" + logs}));
  REQUIRE_FALSE(all.exit.has_value());
  CHECK(all.options.workers == 2);
  CHECK_FALSE(all.options.warmup);
  CHECK_FALSE(all.options.share_weights);
  CHECK(all.options.server_args == std::vector<std::string>{"--drain_timeout_s=5", "--v=1"});
  CHECK(all.options.repeat == 5);
  CHECK(all.options.steady_requests == 7);
  CHECK(all.options.batch == 4);
  CHECK(all.options.seq == 32);
  CHECK(all.options.timeout_s == 60);
  CHECK(all.options.json_path == f.dir.path() + "/out.json");
  CHECK(all.options.log_dir == logs);
  struct stat st;
  CHECK(stat(logs.c_str(), &st) == 0);  // --log_dir is created

  Parsed text = Parse(f.Args({"--text=hello world"}));
  REQUIRE_FALSE(text.exit.has_value());
  CHECK(text.options.text == std::optional<std::string>("hello world"));
  Parsed empty_text = Parse(f.Args({"--text="}));
  REQUIRE_FALSE(empty_text.exit.has_value());
  CHECK(empty_text.options.text == std::optional<std::string>(""));
}

TEST_CASE("coldstart flags: every bad value exits 2 with the reason", "[coldstart][flags]") {
  Fixture f;
  const std::vector<RefusedCase> cases = {
      {{"--model=mlp", "--server=" + f.server}, "--model_repository is required"},
      {{"--model_repository=" + f.dir.path() + "/nope", "--model=mlp"}, "is not a directory"},
      {{"--model_repository=" + f.repo, "--server=" + f.server}, "--model is required"},
      {{"--model_repository=" + f.repo, "--model=resnet50", "--server=" + f.server},
       "no model 'resnet50' in"},
      {{"--model_repository=" + f.repo, "--model=../repo", "--server=" + f.server},
       "is not a model name"},
      {f.Args({"--workers=-1"}), "--workers must be in 0..256, got -1"},
      {f.Args({"--warmup=maybe"}), "--warmup must be on or off, got 'maybe'"},
      {f.Args({"--share_weights=true"}), "--share_weights must be on or off, got 'true'"},
      {f.Args({"--repeat=0"}), "--repeat must be in 1..1000, got 0"},
      {f.Args({"--steady_requests=0"}), "--steady_requests must be in 1..1000000, got 0"},
      {f.Args({"--batch=0"}), "--batch must be in 1..65536, got 0"},
      {f.Args({"--seq=-1"}), "--seq must be in 1..1048576, got -1"},
      {f.Args({"--timeout_s=0"}), "--timeout_s must be in 1..86400, got 0"},
      {f.Args({"--timeout_s=soon"}), "'soon' is not an integer"},
      {f.Args({"--server_args=--v=1 models"}), "'models' is not a flag"},
      {f.Args({"--server_args=--port=9000"}), "--port is set by kiln-bench itself"},
      {f.Args({"--server_args=--workers=4"}),
       "set by kiln-bench itself; use the command's own --workers"},
      {{"--model_repository=" + f.repo, "--model=mlp", "--server=" + f.repo},
       "is not an executable file"},
      {{"--model_repository=" + f.repo, "--model=mlp", "--server=" + f.repo + "/mlp/config.pbtxt"},
       "is not an executable file"},
      {f.Args({"--json=" + f.dir.path() + "/missing/out.json"}), "does not exist"},
      {f.Args({"--cgroup=" + f.dir.path()}), "is not a cgroup directory (no cgroup.procs in it)"},
      {f.Args({"--json=" + f.dir.path()}), "is a directory"},
      {f.Args({"--log_dir=" + f.repo + "/mlp/config.pbtxt/logs"}), "cannot create the directory"},
      {f.Args({"--bogus=1"}), "unknown flag --bogus"},
      {f.Args({"extra"}), "unexpected argument 'extra'"},
  };
  CheckRefused(cases);
}

TEST_CASE("coldstart help lists flags with defaults and examples and exits 0",
          "[coldstart][flags]") {
  Parsed parsed = Parse({"--help"});
  CHECK(parsed.exit == std::optional<int>(0));
  for (const char* text :
       {"--model_repository=\"\"", "--model=\"\"", "--server=", "--workers=1", "--warmup=on",
        "--share_weights=on", "--server_args=", "--repeat=3", "--steady_requests=50", "--batch=1",
        "--seq=16", "--timeout_s=300", "--json=", "--log_dir=", "examples:",
        "kiln-bench coldstart --model_repository=models --model=mlp", "ready_ms", "pss_mb"}) {
    CHECK_THAT(parsed.out, Contains(text));
  }
}

TEST_CASE("coldstart flags: --naive_server takes a file and a worker count, no kiln flag",
          "[coldstart][flags][naive]") {
  Fixture f;
  const std::string script = f.dir.WriteFile("naive.py", "# a stand-in\n");
  // Without kiln-server anywhere: the naive server does not need it.
  const std::vector<std::string> no_kiln = {"--model_repository=" + f.repo, "--model=mlp",
                                            "--naive_server=" + script, "--workers=2"};
  const std::string path = getenv("PATH") != nullptr ? getenv("PATH") : "";
  setenv("PATH", f.dir.path().c_str(), 1);
  Parsed naive = Parse(no_kiln);
  setenv("PATH", path.c_str(), 1);
  REQUIRE_FALSE(naive.exit.has_value());
  CHECK(naive.err.empty());
  CHECK(naive.options.naive_server == script);
  CHECK(naive.options.workers == 2);
  CHECK(ServerKind(naive.options) == "naive");

  Parsed relative = Parse(
      {"--model_repository=" + f.repo, "--model=mlp",
       "--naive_server=" + std::string(KILN_SOURCE_DIR) + "/scripts/../scripts/naive_server.py"});
  REQUIRE_FALSE(relative.exit.has_value());
  CHECK(relative.options.naive_server == std::string(KILN_SOURCE_DIR) + "/scripts/naive_server.py");
  CHECK(relative.options.workers == 1);  // coldstart's default

  const std::string naive_flag = "--naive_server=" + script;
  const std::vector<RefusedCase> cases = {
      {{"--model_repository=" + f.repo, "--model=mlp", naive_flag, "--workers=0"},
       "--workers=0 (the server's own count) is kiln's: the naive server needs a count, "
       "--workers=1..256"},
      {{"--model_repository=" + f.repo, "--model=mlp", "--naive_server=" + f.dir.path() + "/no.py"},
       "--naive_server: " + f.dir.path() + "/no.py is not a file"},
      {{"--model_repository=" + f.repo, "--model=mlp", "--naive_server=" + f.dir.path()},
       "is not a file"},
      {f.Args({naive_flag}), "--server is kiln-server's: not with --naive_server"},
      {{"--model_repository=" + f.repo, "--model=mlp", naive_flag, "--share_weights=off"},
       "--share_weights is kiln-server's: not with --naive_server"},
      {{"--model_repository=" + f.repo, "--model=mlp", naive_flag, "--server_args=--v=1"},
       "--server_args is kiln-server's: not with --naive_server"},
      {{"--model_repository=" + f.repo, "--model=mlp", naive_flag, "--workers=300"},
       "--workers must be in 0..256, got 300"},
  };
  CheckRefused(cases);
  Parsed help = Parse({"--help"});
  CHECK_THAT(help.out, Contains("--naive_server=") && Contains("/usr/bin/python3 SCRIPT"));
}

// --- the server command line -----------------------------------------------------------------

TEST_CASE("coldstart starts the naive server with python3 and the same settings",
          "[coldstart][argv][naive]") {
  ColdstartOptions options;
  options.naive_server = "/src/scripts/naive_server.py";
  options.model_repository = "models";
  options.model = "textcls";
  options.workers = 4;
  options.warmup = false;
  CHECK(ServerKind(options) == "naive");
  CHECK(ColdstartServerArgv(options, 40123, "/tmp/lock", 40124) ==
        std::vector<std::string>{"/usr/bin/python3", "/src/scripts/naive_server.py",
                                 "--model_repository=models", "--model=textcls", "--host=127.0.0.1",
                                 "--port=40123", "--workers=4", "--warmup=off"});
  options.cgroup = "/sys/fs/cgroup/cpu/q";
  const std::vector<std::string> argv = ColdstartServerArgv(options, 40123, "/tmp/lock");
  REQUIRE(argv.size() == 12);
  CHECK(argv[0] == "/bin/sh");
  CHECK(argv[4] == "/usr/bin/python3");
}

TEST_CASE("coldstart gives kiln a metrics port and scrapes the last one its flags name",
          "[coldstart][argv][phases]") {
  ColdstartOptions options;
  options.server = "/opt/kiln/kiln-server";
  options.model_repository = "models";
  CHECK(ServerKind(options) == "kiln");
  std::vector<std::string> argv = ColdstartServerArgv(options, 40123, "/tmp/lock", 40200);
  CHECK(std::count(argv.begin(), argv.end(), "--metrics_port=40200") == 1);
  CHECK(MetricsPortOf(argv) == 40200);
  options.server_args = {"--metrics_port=9100"};  // later, so it wins in kiln-server too
  CHECK(MetricsPortOf(ColdstartServerArgv(options, 40123, "/tmp/lock", 40200)) == 9100);
  options.server_args = {"--metrics_port=0"};
  CHECK(MetricsPortOf(ColdstartServerArgv(options, 40123, "/tmp/lock", 40200)) == 0);
  CHECK(MetricsPortOf({"kiln-server", "--metrics_port=x"}) == 0);
  CHECK(MetricsPortOf({"kiln-server"}) == 0);
}

TEST_CASE("coldstart starts the server with exactly the flags it was given", "[coldstart][argv]") {
  ColdstartOptions options;
  options.server = "/opt/kiln/kiln-server";
  options.model_repository = "models";
  options.workers = 2;
  options.warmup = false;
  options.share_weights = true;
  options.server_args = {"--drain_timeout_s=5", "--v=1"};
  CHECK(ColdstartServerArgv(options, 40123, "/tmp/lock") ==
        std::vector<std::string>{"/opt/kiln/kiln-server", "--model_repository=models",
                                 "--host=127.0.0.1", "--port=40123", "--lock_dir=/tmp/lock",
                                 "--workers=2", "--warmup=off", "--share_weights=on",
                                 "--metrics_port=0", "--drain_timeout_s=5", "--v=1"});
  SECTION("in a cgroup: sh joins it, then execs the same command") {
    options.cgroup = "/sys/fs/cgroup/cpu/q";
    const std::vector<std::string> argv = ColdstartServerArgv(options, 40123, "/tmp/lock");
    REQUIRE(argv.size() == 15);
    CHECK(argv[0] == "/bin/sh");
    CHECK(argv[3] == "/sys/fs/cgroup/cpu/q/cgroup.procs");
    CHECK(argv[4] == "/opt/kiln/kiln-server");
    CHECK(argv[14] == "--v=1");
  }
}

TEST_CASE("server_args split on whitespace into flags", "[coldstart][argv]") {
  CHECK(SplitServerArgs("").value().empty());
  CHECK(SplitServerArgs(" \t ").value().empty());
  CHECK_FALSE(SplitServerArgs("--a=1 y=z").ok());
  CHECK_FALSE(SplitServerArgs("-v=1").ok());
  CHECK_FALSE(SplitServerArgs("--").ok());
  CHECK(SplitServerArgs("  --a=1\t--b \n--c=x y").status().message() ==
        "--server_args: 'y' is not a flag (each word must be --name or --name=value)");
  CHECK(SplitServerArgs("  --a=1\t--b \n--c=x=y ").value() ==
        std::vector<std::string>{"--a=1", "--b", "--c=x=y"});
  for (const char* managed : kManagedServerFlags) {
    CHECK_FALSE(SplitServerArgs(std::string("--") + managed + "=1").ok());
  }
  CHECK(SplitServerArgs("--portable=1").ok());  // only whole names are managed
}

TEST_CASE("the default server is the one in the build tree beside kiln-bench, else PATH",
          "[coldstart][argv]") {
  TempDir dir;
  const std::string self = dir.path() + "/build/bench/kiln-bench";
  const std::string beside = dir.WriteFile("build/server/kiln-server", "#!/bin/sh\n");
  const std::string in_path = dir.WriteFile("bin/kiln-server", "#!/bin/sh\n");
  const std::string path_env = dir.path() + "/nothing:" + dir.path() + "/bin";
  // Not executable yet: neither counts.
  CHECK(DefaultServerBinary(self, path_env).empty());
  chmod(in_path.c_str(), 0755);
  CHECK(DefaultServerBinary(self, path_env) == in_path);
  chmod(beside.c_str(), 0755);
  CHECK(DefaultServerBinary(self, path_env) == beside);
  CHECK(DefaultServerBinary("", path_env) == in_path);
  CHECK(DefaultServerBinary(self, "") == beside);
  CHECK(FindExecutable("kiln-server", dir.path() + "/nothing").empty());
  CHECK(FindExecutable("./kiln-server", "") == "./kiln-server");
}

// --- /proc -----------------------------------------------------------------------------------

TEST_CASE("the process group and the tree's PSS count a forked child until it exits",
          "[coldstart][proc]") {
  int fds[2];
  REQUIRE(pipe2(fds, O_CLOEXEC) == 0);
  const pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    close(fds[1]);
    char byte;
    (void)!read(fds[0], &byte, 1);  // until the parent closes its end
    _exit(0);
  }
  close(fds[0]);
  CHECK(Has(ProcessGroupMembers(getpgrp()), child));

  absl::StatusOr<TreeMemory> memory = TreePss(getpid());
  REQUIRE(memory.ok());
  CHECK(memory->processes == 2);
  CHECK(memory->pss_kb > 0);

  close(fds[1]);  // release the child
  int status = 0;
  REQUIRE(waitpid(child, &status, 0) == child);
  CHECK(WIFEXITED(status));
  CHECK_FALSE(Has(ProcessGroupMembers(getpgrp()), child));
  CHECK_FALSE(TreePss(child).ok());
}

TEST_CASE("a log's tail is its last lines", "[coldstart][proc]") {
  TempDir dir;
  const std::string log = dir.WriteFile("server.log", "one\ntwo\nthree\nfour\n");
  CHECK(FileTail(log, 2) == "three\nfour");
  CHECK(FileTail(log, 10) == "one\ntwo\nthree\nfour");
  CHECK(FileTail(log, 0).empty());
  CHECK(FileTail(dir.path() + "/missing.log", 5).empty());
  std::string big;
  for (int i = 0; i < 20000; ++i) big += "line " + std::to_string(i) + "\n";
  CHECK(FileTail(dir.WriteFile("big.log", big), 2) == "line 19998\nline 19999");
}

// --- the child process, on stand-in commands --------------------------------------------------

TEST_CASE("a launched server that honours SIGTERM is stopped and reaped", "[coldstart][launch]") {
  TempDir dir;
  const std::string log = dir.path() + "/server.log";
  absl::StatusOr<std::unique_ptr<LaunchedServer>> server =
      LaunchedServer::Start({"/bin/sh", "-c", "echo started; exec sleep 1000"}, log);
  REQUIRE(server.ok());
  const pid_t pid = (*server)->pid();
  CHECK(getpgid(pid) == pid);  // a process group of its own
  CHECK((*server)->log_path() == log);
  CHECK((*server)->started_at() <= std::chrono::steady_clock::now());
  CHECK_FALSE((*server)->PeekExit().has_value());
  REQUIRE(PollUntil([&] { return FileTail(log, 1) == "started"; }, std::chrono::seconds(10)));

  absl::StatusOr<LaunchedServer::StopResult> stopped = (*server)->Stop(std::chrono::seconds(10));
  REQUIRE(stopped.ok());
  CHECK_FALSE(stopped->killed);
  CHECK(stopped->exit == ExitStatus{true, SIGTERM});
  CHECK(stopped->exit.Describe() == "killed by signal 15 (Terminated)");
  CHECK(ProcessGroupMembers(pid).empty());
  CHECK(waitpid(pid, nullptr, WNOHANG) == -1);  // already reaped
  CHECK_FALSE((*server)->Stop(std::chrono::seconds(1)).ok());
}

TEST_CASE("a server that ignores SIGTERM is killed with its whole group", "[coldstart][launch]") {
  TempDir dir;
  const std::string log = dir.path() + "/server.log";
  // The shell ignores TERM and so does its child (ignored signals are inherited).
  absl::StatusOr<std::unique_ptr<LaunchedServer>> server = LaunchedServer::Start(
      {"/bin/sh", "-c", "trap '' TERM; sleep 1000 & echo started; wait"}, log);
  REQUIRE(server.ok());
  const pid_t pid = (*server)->pid();
  REQUIRE(PollUntil([&] { return FileTail(log, 1) == "started"; }, std::chrono::seconds(10)));
  CHECK(ProcessGroupMembers(pid).size() == 2);
  CHECK(ProcessTree(pid).size() == 2);

  absl::StatusOr<LaunchedServer::StopResult> stopped =
      (*server)->Stop(std::chrono::milliseconds(300));
  REQUIRE(stopped.ok());
  CHECK(stopped->killed);
  CHECK(stopped->exit == ExitStatus{true, SIGKILL});
  CHECK(ProcessGroupMembers(pid).empty());
}

TEST_CASE("destroying a launched server leaves no process of its group", "[coldstart][launch]") {
  TempDir dir;
  const std::string log = dir.path() + "/server.log";
  pid_t pid = 0;
  {
    absl::StatusOr<std::unique_ptr<LaunchedServer>> server = LaunchedServer::Start(
        {"/bin/sh", "-c", "sleep 1000 & sleep 1000 & echo started; wait"}, log);
    REQUIRE(server.ok());
    pid = (*server)->pid();
    REQUIRE(PollUntil([&] { return FileTail(log, 1) == "started"; }, std::chrono::seconds(10)));
    CHECK(ProcessGroupMembers(pid).size() == 3);
  }
  CHECK(ProcessGroupMembers(pid).empty());
  CHECK(waitpid(pid, nullptr, WNOHANG) == -1);  // reaped
}

TEST_CASE("an exec failure shows as exit code 127 with a line in the log", "[coldstart][launch]") {
  TempDir dir;
  const std::string log = dir.path() + "/server.log";
  absl::StatusOr<std::unique_ptr<LaunchedServer>> server =
      LaunchedServer::Start({dir.path() + "/no-such-server"}, log);
  REQUIRE(server.ok());
  REQUIRE(PollUntil([&] { return (*server)->PeekExit().has_value(); }, std::chrono::seconds(10)));
  CHECK(*(*server)->PeekExit() == ExitStatus{false, 127});
  CHECK((*server)->PeekExit()->Describe() == "exit code 127");
  CHECK_THAT(FileTail(log, 5), Contains("exec of " + dir.path() + "/no-such-server failed"));
  CHECK_FALSE(LaunchedServer::Start({"/bin/true"}, dir.path() + "/no/such/dir/log").ok());
}

// --- output ------------------------------------------------------------------------------------

std::vector<ColdstartRun> FakeRuns() {
  ColdstartRun a{2100, 60, 55, 58, 60.0 / 55, 60, 1.0, 0.8, 0.8, 1.0, 486, 4, {}};
  ColdstartRun b{2000, 50, 50, 52, 1.0, 40, 1.25, 0.9, 0.75, 1.2, 480, 4, {}};
  ColdstartRun c{2200, 70, 56, 60, 1.25, 70, 1.0, 1.0, 0.8, 1.25, 490.5, 4, {}};
  return {a, b, c};
}

ColdstartOptions FakeOptions() {
  ColdstartOptions options;
  options.model = "resnet50";
  options.workers = 2;
  options.warmup = true;
  options.share_weights = false;
  options.repeat = 3;
  return options;
}

TEST_CASE("the JSON holds the settings and every run and median min max per metric",
          "[coldstart][output]") {
  const nlohmann::json doc =
      nlohmann::json::parse(ColdstartReport(FakeOptions(), FakeRuns()).Json());
  CHECK(doc["model"] == "resnet50");
  CHECK(doc["workers"] == 2);
  CHECK(doc["warmup"] == "on");
  CHECK(doc["share_weights"] == "off");
  CHECK(doc["repeat"] == 3);
  CHECK(doc["cgroup"] == "");
  REQUIRE(doc["runs"].size() == 3);
  const char* metrics[] = {"ready_ms",        "first_ms",       "steady_p50_ms", "steady_p95_ms",
                           "ratio",           "idle_p50_ms",    "idle_ratio",    "first_cpu_ms",
                           "idle_cpu_p50_ms", "cpu_idle_ratio", "pss_mb"};
  for (const nlohmann::json& run : doc["runs"]) {
    CHECK(run.size() == 12);
    for (const char* metric : metrics) CHECK(run.at(metric).is_number());
    CHECK(run.at("phases") == nlohmann::json::object());  // none in these runs
  }
  CHECK(doc["server"] == "kiln");
  CHECK(doc["phases"] == nlohmann::json::object());
  CHECK(doc["runs"][0]["ready_ms"] == 2100.0);
  CHECK(doc["runs"][0]["ratio"].get<double>() == Approx(1.091).margin(1e-9));  // 3 decimals
  CHECK(doc["runs"][2]["pss_mb"] == 490.5);
  CHECK(doc.size() == 8 + 11 + 1);  // settings, metrics, phases
  for (const char* metric : metrics) {
    INFO(metric);
    REQUIRE(doc.contains(metric));
    CHECK(doc[metric].size() == 3);
  }
  CHECK(doc["ready_ms"] == nlohmann::json{{"median", 2100.0}, {"min", 2000.0}, {"max", 2200.0}});
  CHECK(doc["first_ms"] == nlohmann::json{{"median", 60.0}, {"min", 50.0}, {"max", 70.0}});
  CHECK(doc["steady_p50_ms"] == nlohmann::json{{"median", 55.0}, {"min", 50.0}, {"max", 56.0}});
  CHECK(doc["steady_p95_ms"] == nlohmann::json{{"median", 58.0}, {"min", 52.0}, {"max", 60.0}});
  CHECK(doc["ratio"]["median"].get<double>() == Approx(1.091).margin(1e-9));
  CHECK(doc["ratio"]["max"] == 1.25);
  CHECK(doc["pss_mb"] == nlohmann::json{{"median", 486.0}, {"min", 480.0}, {"max", 490.5}});
  CHECK(doc["idle_p50_ms"] == nlohmann::json{{"median", 60.0}, {"min", 40.0}, {"max", 70.0}});
  CHECK(doc["idle_ratio"] == nlohmann::json{{"median", 1.0}, {"min", 1.0}, {"max", 1.25}});
  CHECK(doc["first_cpu_ms"] == nlohmann::json{{"median", 0.9}, {"min", 0.8}, {"max", 1.0}});
  CHECK(doc["idle_cpu_p50_ms"] == nlohmann::json{{"median", 0.8}, {"min", 0.75}, {"max", 0.8}});
  CHECK(doc["cpu_idle_ratio"] == nlohmann::json{{"median", 1.2}, {"min", 1.0}, {"max", 1.25}});

  // Keys in the documented order (scripts read it; people too).
  const std::string text = ColdstartReport(FakeOptions(), FakeRuns()).Json();
  CHECK(text.find("\"model\"") < text.find("\"workers\""));
  CHECK(text.find("\"repeat\"") < text.find("\"runs\""));
  CHECK(text.rfind("\"ready_ms\"") < text.rfind("\"pss_mb\""));
}

TEST_CASE("the summary has one line per metric with median and spread", "[coldstart][output]") {
  const std::string summary = ColdstartReport(FakeOptions(), FakeRuns()).Text();
  CHECK_THAT(summary, !Contains("?}"));  // every value a line names was set
  CHECK_THAT(summary, Contains("summary: resnet50, 2 worker(s), warmup on, share_weights off, "
                               "3 run(s) of kiln: median (min..max)"));
  CHECK_THAT(summary, Contains("ready_ms           2100.00  (2000.00..2200.00)"));
  CHECK_THAT(summary, Contains("first_ms             60.00  (50.00..70.00)"));
  CHECK_THAT(summary, Contains("steady_p50_ms        55.00  (50.00..56.00)"));
  CHECK_THAT(summary, Contains("steady_p95_ms        58.00  (52.00..60.00)"));
  CHECK_THAT(summary, Contains("ratio                 1.09  (1.00..1.25)"));
  CHECK_THAT(summary, Contains("pss_mb              486.00  (480.00..490.50)"));
  CHECK_THAT(summary, Contains("idle_p50_ms          60.00  (40.00..70.00)"));
  CHECK_THAT(summary, Contains("idle_ratio            1.00  (1.00..1.25)"));
  CHECK_THAT(summary, Contains("first_cpu_ms          0.90  (0.80..1.00)"));
  CHECK_THAT(summary, Contains("idle_cpu_p50_ms       0.80  (0.75..0.80)"));
  CHECK_THAT(summary, Contains("cpu_idle_ratio        1.20  (1.00..1.25)"));
  CHECK(std::count(summary.begin(), summary.end(), '\n') == 12);
  CHECK(FormatRunLine(2, 3, FakeRuns()[1]) ==
        "run 2/3: ready 2000.0 ms, first 50.00 ms, steady p50 50.00 ms p95 52.00 ms, ratio 1.00, "
        "after a pause p50 40.00 ms (ratio 1.25), CPU 0.90 ms vs 0.75 ms (ratio 1.20), pss 480.0 "
        "MB (4 processes)");
  // A server that returns no CPU time (the naive one): no CPU part.
  ColdstartRun naive = FakeRuns()[1];
  naive.first_cpu_ms = naive.idle_cpu_p50_ms = naive.cpu_idle_ratio = 0;
  CHECK(FormatRunLine(2, 3, naive) ==
        "run 2/3: ready 2000.0 ms, first 50.00 ms, steady p50 50.00 ms p95 52.00 ms, ratio 1.00, "
        "after a pause p50 40.00 ms (ratio 1.25), pss 480.0 MB (4 processes)");
}

TEST_CASE("startup phases are read from a scrape: summed per phase, any name, in order",
          "[coldstart][phases]") {
  const std::string text =
      "# HELP kiln_startup_phase_duration_seconds Each startup phase's duration.\n"
      "# TYPE kiln_startup_phase_duration_seconds gauge\n"
      "kiln_startup_phase_duration_seconds{model=\"\",phase=\"read_repository\",version=\"\"} "
      "0.0015\n"
      "kiln_startup_phase_duration_seconds{model=\"mlp\",phase=\"load_model\",version=\"1\"} 0.1\n"
      "kiln_startup_phase_duration_seconds{model=\"textcls\",phase=\"load_model\",version=\"1\"} "
      "0.25\n"
      "kiln_startup_phase_duration_seconds{phase=\"a \\\"new\\\" one\"} 2e-3 1700000000000\n"
      "kiln_startup_phase_duration_seconds_other{phase=\"not_this\"} 1\n"
      "kiln_startup_phase_duration_seconds{model=\"x\"} 5\n"  // no phase label: left out
      "kiln_startup_phase_duration_seconds{phase=\"broken\"} NaN\n"
      "kiln_startup_time_to_serving_seconds 1.25\n"
      "kiln_worker_restarts_total 0\n";
  const PhaseTimes phases = StartupPhasesMs(text);
  REQUIRE(phases.size() == 4);
  CHECK(phases[0].first == "read_repository");
  CHECK(phases[0].second == Approx(1.5));
  CHECK(phases[1].first == "load_model");
  CHECK(phases[1].second == Approx(350));
  CHECK(phases[2].first == "a \"new\" one");
  CHECK(phases[2].second == Approx(2));
  CHECK(phases[3].first == "time_to_serving");
  CHECK(phases[3].second == Approx(1250));
  CHECK(StartupPhasesMs("").empty());
  CHECK(StartupPhasesMs("kiln_build_info{version=\"1\"} 1\n").empty());

  // Into the report: each run's phases and the median per phase over the runs that have it.
  std::vector<ColdstartRun> runs = FakeRuns();
  runs[0].phases_ms = {{"load_model", 100}, {"warm_workers", 900}};
  runs[1].phases_ms = {{"load_model", 120}, {"warm_workers", 1100}, {"open_port", 1}};
  runs[2].phases_ms = {{"load_model", 110}, {"warm_workers", 1000}};
  const Report report = ColdstartReport(FakeOptions(), runs);
  const nlohmann::json doc = nlohmann::json::parse(report.Json());
  CHECK(doc["runs"][1]["phases"] ==
        nlohmann::json{{"load_model", 120.0}, {"warm_workers", 1100.0}, {"open_port", 1.0}});
  CHECK(doc["phases"] ==
        nlohmann::json{{"load_model", 110.0}, {"warm_workers", 1000.0}, {"open_port", 1.0}});
  CHECK_THAT(report.Text(),
             Contains("phases (median): load_model 110.0 ms, warm_workers 1000.0 ms, open_port "
                      "1.0 ms"));
  CHECK_THAT(report.Text(), Contains("3 run(s) of kiln: median"));

  ColdstartOptions naive = FakeOptions();
  naive.naive_server = "/src/scripts/naive_server.py";
  const Report naive_report = ColdstartReport(naive, FakeRuns());
  const nlohmann::json naive_doc = nlohmann::json::parse(naive_report.Json());
  CHECK(naive_doc["server"] == "naive");
  CHECK(naive_doc["share_weights"] == "n/a");
  CHECK_THAT(naive_report.Text(), Contains("3 run(s) of naive: median"));
  CHECK_THAT(naive_report.Text(), !Contains("phases (median)"));
}

}  // namespace
}  // namespace kiln::bench
