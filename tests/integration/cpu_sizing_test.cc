// Integration tests of CPU sizing on the real kiln-server: workers and intra-op threads sized to
// the CPUs the process has (its affinity, a real cgroup CPU quota, --cpus, explicit counts),
// OpenMP threads waiting passively (libgomp's own display of its settings), warming at idle
// priority and serving at normal priority (with and without the privilege to come back, and
// starved by a busy neighbour on the same CPU), and serving beside busy neighbours.
// Noisy neighbours are child processes started and killed by pid (BusyLoops); nothing here
// bounds a latency.
#include <sys/types.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <csignal>
#include <map>
#include <memory>
#include <optional>
#include <regex>
#include <string>
#include <vector>

#include "common/cpu_probe.h"
#include "common/idle_priority.h"
#include "common/process.h"
#include "proto/kiln_service.grpc.pb.h"
#include "tests/integration/server_process.h"
#include "tests/integration/server_test_util.h"
#include "tests/run_command.h"
#include "tests/skip.h"
#include "tests/test_cgroup.h"
#include "tests/test_paths.h"

namespace kiln {
namespace {

using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;
using kiln::testing::BusyLoops;
using kiln::testing::Config;
using kiln::testing::Count;
using kiln::testing::DemoConfig;
using kiln::testing::Describe;
using kiln::testing::FirstAllowedCpu;
using kiln::testing::Infer;
using kiln::testing::MlpRequest;
using kiln::testing::ModelReport;
using kiln::testing::Report;
using kiln::testing::ServerProcess;
using kiln::testing::StartServing;
using kiln::testing::Stub;
using kiln::testing::TempDir;
using kiln::testing::TestModel;
using kiln::testing::ThreadPolicies;
using std::chrono::seconds;

constexpr int kSchedOther = 0;

// The demo mlp's config, named `name`, with `workers` added: an instance_group and the
// INTRA_OP_THREAD_COUNT parameter, or neither (as the demo: the count and the threads are
// automatic).
std::string MlpConfig(const std::string& name, const std::string& workers = "") {
  return kiln::testing::Renamed(DemoConfig("mlp"), name) + workers;
}

// A repository of the mlp demo model under `names`, each with the given workers (MlpConfig) and
// the demo's kiln.pbtxt.
std::string MlpRepository(const TempDir& dir, const std::map<std::string, std::string>& workers) {
  std::map<std::string, TestModel> models;
  for (const auto& [name, group] : workers) models[name] = TestModel{"mlp", MlpConfig(name, group)};
  return kiln::testing::MakeRepository(dir, models);
}

// A config that leaves --workers out, so that the count is the config's (or automatic).
kiln::testing::ServerConfig Automatic(const std::string& repository) {
  return Config(repository, /*workers=*/0);
}

// Every mlp request answers.
void ServesMlp(const ServerProcess& server, const std::string& model = "mlp") {
  auto stub = inference::GRPCInferenceService::NewStub(kiln::testing::ServingChannel(server));
  inference::ModelInferRequest request = MlpRequest(2);
  request.set_model_name(model);
  for (int i = 0; i < 5; ++i) {
    const grpc::Status status = Infer(*stub, request, seconds(30));
    INFO("request " << i << ": " << Describe(status));
    CHECK(status.ok());
  }
}

TEST_CASE("pinned to one CPU, kiln-server runs one worker of one intra-op thread",
          "[integration][cpu]") {
  TempDir dir;
  kiln::testing::ServerConfig config = Automatic(MlpRepository(dir, {{"mlp", ""}}));
  config.launcher = {"/usr/bin/taskset", "-c", std::to_string(FirstAllowedCpu())};
  auto server = StartServing(config);
  const WarmupReportResponse report = Report(*server);
  CHECK(report.cpus() == 1);
  CHECK_THAT(report.cpu_limit(), StartsWith("1 CPU ("));
  CHECK_THAT(report.cpu_limit(), Contains("affinity 1 CPU"));
  CHECK(report.thread_plan() ==
        "1 CPU: mlp:1 1 worker (automatic) x 1 intra-op thread (automatic) = 1 thread");
  const ModelWarmupReport mlp = ModelReport(report, "mlp");
  REQUIRE(mlp.workers_size() == 1);
  CHECK(mlp.workers(0).intra_op_threads() == 1);
  CHECK(server->WorkerPids().size() == 1);
  CHECK_THAT(server->log(), Contains("cpu: " + report.cpu_limit() + " for the whole server"));
  ServesMlp(*server);
}

TEST_CASE("in a cgroup with a 1-CPU quota, kiln-server runs one worker of one thread and serves",
          "[integration][cpu][cgroup]") {
  absl::StatusOr<std::unique_ptr<testing::TestCgroup>> cgroup =
      testing::TestCgroup::CreateCpu(/*quota_us=*/100000, /*period_us=*/100000);
  if (!cgroup.ok()) KILN_SKIP(cgroup.status().message());
  TempDir dir;
  kiln::testing::ServerConfig config = Automatic(MlpRepository(dir, {{"mlp", ""}}));
  config.launcher = InCgroup((*cgroup)->dir(), {});
  auto server = StartServing(config);
  const WarmupReportResponse report = Report(*server);
  CHECK(report.cpus() == 1);
  CHECK_THAT(report.cpu_limit(),
             StartsWith("1 CPU (CFS quota 1.00 CPUs from " + (*cgroup)->limit_file()));
  const ModelWarmupReport mlp = ModelReport(report, "mlp");
  REQUIRE(mlp.workers_size() == 1);
  CHECK(mlp.workers(0).intra_op_threads() == 1);
  // The whole tree runs under the quota.
  const std::string name = (*cgroup)->dir().substr((*cgroup)->dir().rfind('/'));
  for (pid_t pid : server->WorkerPids()) {
    CHECK_THAT(kiln::testing::ReadText("/proc/" + std::to_string(pid) + "/cgroup"), Contains(name));
  }
  ServesMlp(*server);
  server.reset();  // before the cgroup is removed
}

TEST_CASE(
    "explicit counts and --cpus: the plan, the workers' threads, and oversubscription "
    "logged",
    "[integration][cpu]") {
  TempDir dir;
  const std::string repository = MlpRepository(
      dir, {{"auto", ""},
            {"fixed", "instance_group [ { count: 1 } ]\n" + kiln::testing::IntraOpThreads(2)}});
  SECTION("3 CPUs: the explicit model's 2 threads, the rest to the automatic one") {
    kiln::testing::ServerConfig config = Automatic(repository);
    config.extra_args = {"--cpus=3"};
    auto server = StartServing(config);
    const WarmupReportResponse report = Report(*server);
    CHECK(report.cpus() == 3);
    CHECK_THAT(report.cpu_limit(), StartsWith("3 (--cpus; the process has "));
    CHECK(
        report.thread_plan() ==
        "3 CPUs: auto:1 1 worker (automatic) x 1 intra-op thread (automatic), fixed:1 1 worker x 2 "
        "intra-op threads = 3 threads");
    CHECK(report.thread_plan_warnings().empty());
    const ModelWarmupReport fixed = ModelReport(report, "fixed");
    REQUIRE(fixed.workers_size() == 1);
    CHECK(fixed.workers(0).intra_op_threads() == 2);
    CHECK(fixed.workers(0).threads_note().empty());  // configured threads: no trial of one
    CHECK(ModelReport(report, "auto").workers(0).intra_op_threads() == 1);
    ServesMlp(*server, "fixed");
  }
  SECTION("1 CPU: oversubscribed, said in the log and the report") {
    kiln::testing::ServerConfig config = Automatic(repository);
    config.extra_args = {"--cpus=1"};
    auto server = StartServing(config);
    const WarmupReportResponse report = Report(*server);
    REQUIRE(report.thread_plan_warnings_size() == 1);
    CHECK_THAT(report.thread_plan_warnings(0),
               Contains("2 workers x their intra-op threads = 3 threads on 1 CPU: oversubscribed "
                        "(the configured counts ask for more)"));
    CHECK_THAT(server->log(), Contains("threads: " + report.thread_plan_warnings(0)));
  }
}

TEST_CASE(
    "a lone worker of automatic threads warms on them, tries one, and serves on what it chose",
    "[integration][cpu]") {
  TempDir dir;
  const std::string repository = MlpRepository(dir, {{"mlp", "instance_group [ { count: 1 } ]"}});
  kiln::testing::ServerConfig config = Automatic(repository);
  config.extra_args = {"--cpus=2"};
  auto server = StartServing(config);
  const WarmupReportResponse report = Report(*server);
  CHECK(report.thread_plan() ==
        "2 CPUs: mlp:1 1 worker x 2 intra-op threads (automatic) = 2 threads");
  const ModelWarmupReport mlp = ModelReport(report, "mlp");
  REQUIRE(mlp.workers_size() == 1);
  const std::string& note = mlp.workers(0).threads_note();
  INFO("threads note: " << note);
  // The demo mlp's passes take well under kOneThreadTrialMaxMs, so it tried one. Which it kept
  // depends on timings (on 2 vCPUs, one: steady 0.1 ms in all vs 0.2-0.8 ms on two); the report,
  // its note and the log agree on it.
  CHECK_THAT(note, Contains(" of 2 planned: steady "));
  CHECK(mlp.workers(0).intra_op_threads() == (note.rfind("one of", 0) == 0 ? 1 : 2));
  CHECK_THAT(server->log(), Contains("thread(s) (" + note + ")"));
  ServesMlp(*server);
}

// libgomp's own display of its settings (OMP_DISPLAY_ENV=VERBOSE, on stderr at every start of
// the binary): the GOMP_SPINCOUNT of each display, in order. PASSIVE shows as 0, libgomp's
// default as 300000 (the policy line reads PASSIVE for both).
std::vector<std::string> DisplayedSpinCounts(const std::string& log) {
  std::vector<std::string> counts;
  const std::regex line("GOMP_SPINCOUNT = '([0-9]+)'");
  for (auto it = std::sregex_iterator(log.begin(), log.end(), line); it != std::sregex_iterator();
       ++it) {
    counts.push_back((*it)[1]);
  }
  return counts;
}

TEST_CASE(
    "OpenMP threads wait passively: libgomp reads it from kiln's getenv, no re-exec, and an "
    "operator's setting is kept",
    "[integration][cpu][openmp]") {
  TempDir dir;
  kiln::testing::ServerConfig config = Automatic(MlpRepository(dir, {{"mlp", ""}}));
  SECTION("nothing set: PASSIVE from the first start, inherited by the workers") {
    config.env = {"OMP_DISPLAY_ENV=VERBOSE", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT",
                  "KILN_SET_OMP_WAIT_POLICY"};
    auto server = StartServing(config);
    // One start (no re-exec: libgomp would display its settings twice), passive from the first.
    CHECK(DisplayedSpinCounts(server->log()) == std::vector<std::string>{"0"});
    CHECK_THAT(server->log(),
               Contains("threads: OpenMP threads wait: passive (OMP_WAIT_POLICY=PASSIVE, set by "
                        "kiln before libgomp read it)"));
    CHECK_THAT(Report(*server).openmp_wait(), StartsWith("passive (OMP_WAIT_POLICY=PASSIVE"));
    // The workers are forks: they keep the libgomp the master's start set up. A process the
    // master starts by exec (a zygote replacing a dead one) gets the variable it set.
    const pid_t zygote = server->ZygotePids().at(0);
    REQUIRE(kill(zygote, SIGKILL) == 0);
    pid_t replacement = 0;
    REQUIRE(kiln::PollUntil(
        [&] {
          const std::vector<pid_t> zygotes = server->ZygotePids();
          replacement = zygotes.empty() || zygotes[0] == zygote ? 0 : zygotes[0];
          return replacement > 0;
        },
        kiln::testing::kStartup));
    std::string environ =
        kiln::testing::ReadText("/proc/" + std::to_string(replacement) + "/environ");
    for (char& c : environ) c = c == '\0' ? '\n' : c;
    CHECK_THAT(environ, Contains("\nOMP_WAIT_POLICY=PASSIVE\n") &&
                            Contains("\nKILN_SET_OMP_WAIT_POLICY=getenv\n"));
  }
  SECTION("the operator's OMP_WAIT_POLICY: no re-exec, kept") {
    config.env = {"OMP_DISPLAY_ENV=VERBOSE", "OMP_WAIT_POLICY=ACTIVE", "GOMP_SPINCOUNT",
                  "KILN_SET_OMP_WAIT_POLICY"};
    auto server = StartServing(config);
    CHECK(DisplayedSpinCounts(server->log()) == std::vector<std::string>{"30000000000"});
    CHECK_THAT(server->log(), Contains("threads: OpenMP threads wait: OMP_WAIT_POLICY=ACTIVE from "
                                       "the environment (the operator's setting, kept)"));
  }
  SECTION("the operator's GOMP_SPINCOUNT: no re-exec, kept") {
    config.env = {"OMP_DISPLAY_ENV=VERBOSE", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT=1000",
                  "KILN_SET_OMP_WAIT_POLICY"};
    auto server = StartServing(config);
    CHECK(DisplayedSpinCounts(server->log()) == std::vector<std::string>{"1000"});
  }
}

// True when every thread of every process in `pids` runs at normal priority (SCHED_OTHER).
bool AllAtNormalPriority(const std::vector<pid_t>& pids) {
  for (pid_t pid : pids) {
    for (const auto& [tid, policy] : ThreadPolicies(pid)) {
      if (policy != kSchedOther) return false;
    }
  }
  return true;
}

// Every thread of every worker runs at normal priority, at the latest shortly after SERVING (the
// master sends Promote as it opens the port; the worker handles it at once).
void WorkersAtNormalPriority(const ServerProcess& server) {
  const std::vector<pid_t> workers = server.WorkerPids();
  REQUIRE_FALSE(workers.empty());
  const bool normal =
      kiln::PollUntil([&] { return AllAtNormalPriority(workers); }, std::chrono::seconds(10));
  for (pid_t pid : workers) {
    for (const auto& [tid, policy] : ThreadPolicies(pid)) {
      INFO("worker " << pid << " thread " << tid);
      CHECK(policy == kSchedOther);
    }
  }
  CHECK(normal);
}

// The server says it warms at `warm_priority` (in the report and the log), each worker warmed at
// idle priority exactly when `idle`, and every worker serves at normal priority.
void CheckWarmPriority(const ServerProcess& server, const std::string& warm_priority, bool idle) {
  const WarmupReportResponse report = Report(server);
  CHECK(report.warm_priority() == warm_priority);
  CHECK_THAT(server.log(), Contains("cpu: workers warm at " + warm_priority));
  const ModelWarmupReport mlp = ModelReport(report, "mlp");
  REQUIRE(mlp.workers_size() > 0);
  for (const internal::WarmupReport& worker : mlp.workers()) {
    CHECK(worker.idle_priority() == idle);
    if (idle) CHECK(worker.idle_ms() > 0);
  }
  WorkersAtNormalPriority(server);
}

TEST_CASE("workers warm at idle priority where they may come back, and serve at normal priority",
          "[integration][cpu][priority]") {
  TempDir dir;
  kiln::testing::ServerConfig config = Automatic(MlpRepository(dir, {{"mlp", ""}}));
  SECTION("by default") {
    auto server = StartServing(config);
    const IdleReturn back = CheckReturnFromIdle();  // the server inherits this process's rights
    CheckWarmPriority(*server,
                      back.allowed ? "idle (SCHED_IDLE: only CPU left over), back to normal as "
                                     "the port opens (" +
                                         back.how + ")"
                                   : "normal: " + back.how,
                      back.allowed);
  }
  SECTION("--warmup_priority=normal") {
    config.extra_args = {"--warmup_priority=normal"};
    auto server = StartServing(config);
    CheckWarmPriority(*server, "normal (--warmup_priority=normal)", /*idle=*/false);
  }
}

TEST_CASE("a worker respawned while serving warms at idle priority and is promoted once ready",
          "[integration][cpu][priority]") {
  if (const IdleReturn back = CheckReturnFromIdle(); !back.allowed) KILN_SKIP(back.how);
  TempDir dir;
  auto server =
      StartServing(Automatic(MlpRepository(dir, {{"mlp", "instance_group [ { count: 2 } ]\n"}})));
  WorkersAtNormalPriority(*server);
  const std::vector<pid_t> before = server->WorkerPids();
  REQUIRE(before.size() == 2);
  REQUIRE(kill(before[0], SIGKILL) == 0);
  // The replacement: a new worker pid in the report, warmed at idle priority.
  std::optional<internal::WarmupReport> replacement;
  kiln::PollUntil(
      [&] {
        const ModelWarmupReport mlp = ModelReport(Report(*server), "mlp");
        for (const internal::WarmupReport& worker : mlp.workers()) {
          if (worker.pid() != before[0] && worker.pid() != before[1]) replacement = worker;
        }
        return replacement.has_value();
      },
      std::chrono::seconds(60), std::chrono::milliseconds(100));
  REQUIRE(replacement.has_value());
  CHECK(replacement->idle_priority());
  CHECK(kiln::PollUntil([&] { return AllAtNormalPriority({replacement->pid()}); },
                        std::chrono::seconds(10)));
  ServesMlp(*server);
}

TEST_CASE(
    "without CAP_SYS_NICE, RLIMIT_NICE decides: 0 warms at normal priority, 20 at idle "
    "and back",
    "[integration][cpu][priority]") {
  if (geteuid() != 0) KILN_SKIP("dropping CAP_SYS_NICE with setpriv needs root");
  TempDir dir;
  kiln::testing::ServerConfig config = Automatic(MlpRepository(dir, {{"mlp", ""}}));
  const auto without_cap = [](const std::string& nice_limit) {
    return std::vector<std::string>{"/usr/bin/prlimit", "--nice=" + nice_limit, "/usr/bin/setpriv",
                                    "--inh-caps=-sys_nice", "--bounding-set=-sys_nice"};
  };
  SECTION("RLIMIT_NICE 0: warms at normal priority and says why") {
    config.launcher = without_cap("0:0");
    auto server = StartServing(config);
    CheckWarmPriority(*server,
                      "normal: returning to normal priority needs CAP_SYS_NICE or RLIMIT_NICE >= "
                      "20 (nice 0; RLIMIT_NICE is 0; systemd: LimitNICE=+0)",
                      /*idle=*/false);
  }
  SECTION("RLIMIT_NICE 20: warms at idle priority and comes back") {
    // Raising the hard limit needs CAP_SYS_RESOURCE, which some containers do not grant.
    const kiln::testing::CommandResult raise =
        kiln::testing::RunCommand("/usr/bin/prlimit --nice=20:20 /bin/true");
    if (raise.exit_code != 0) KILN_SKIP("cannot raise RLIMIT_NICE to 20 here: " << raise.output);
    config.launcher = without_cap("20:20");
    auto server = StartServing(config);
    CheckWarmPriority(*server,
                      "idle (SCHED_IDLE: only CPU left over), back to normal as the port opens "
                      "(RLIMIT_NICE 20 allows nice 0)",
                      /*idle=*/true);
    ServesMlp(*server);
  }
}

TEST_CASE(
    "a worker starved at idle priority by a busy neighbour on its CPU warms at normal "
    "priority",
    "[integration][cpu][priority]") {
  if (const IdleReturn back = CheckReturnFromIdle(); !back.allowed) KILN_SKIP(back.how);
  const int cpu = FirstAllowedCpu();
  BusyLoops neighbour(/*count=*/1, cpu);
  TempDir dir;
  kiln::testing::ServerConfig config = Automatic(MlpRepository(dir, {{"mlp", ""}}));
  config.launcher = {"/usr/bin/taskset", "-c", std::to_string(cpu)};
  // The worker's own warmup, long enough to starve (a worker forked from the warm template only
  // confirms it, in a few ms).
  config.extra_args.push_back("--warm_template=off");
  auto server = StartServing(config);
  const ModelWarmupReport mlp = ModelReport(Report(*server), "mlp");
  REQUIRE(mlp.workers_size() == 1);
  const internal::WarmupReport& worker = mlp.workers(0);
  CHECK(worker.idle_priority());
  CHECK(worker.idle_starved());
  CHECK(worker.idle_starved_cpu_share() < 0.1);
  CHECK(worker.idle_ms() >= 1000);  // not before one whole window
  CHECK_THAT(server->log(), Contains("then normal (starved: it got"));
  WorkersAtNormalPriority(*server);
  ServesMlp(*server);
}

TEST_CASE("beside a busy neighbour on every CPU kiln-server comes up on its CPUs and serves",
          "[integration][cpu]") {
  BusyLoops neighbours(/*count=*/AffinityCpuCount().value_or(2));
  TempDir dir;
  // The default readiness check: it judges the workers' CPU time, which the neighbours do not
  // stretch, so it passes however slow the wall clock gets.
  const std::string repository = kiln::testing::MakeRepository(
      dir, std::map<std::string, TestModel>{{"mlp", {"mlp", MlpConfig("mlp")}}});
  auto server = StartServing(Automatic(repository));
  INFO("log:\n" << server->log());
  const WarmupReportResponse report = Report(*server);
  CHECK(ModelReport(report, "mlp").workers_size() == report.cpus());
  // Judged on wall time, every attempt would fail (the neighbours stretch mlp's calls to hundreds
  // of ms) and the server would not come up. CPU time resists them, but not wholly on a VM whose
  // vCPUs share cores: under CTest -j2 beside these loops one attempt once judged mlp's batch 4 at
  // 1.28 ms of CPU time against a 1.05 ms limit, and the next passed. One such attempt at most.
  CHECK(Count(server->log(), "FAILED") <= 1);
  ServesMlp(*server);
  WorkersAtNormalPriority(*server);
}

TEST_CASE("beside a busy neighbour on every CPU a resnet50 server passes its readiness check",
          "[integration][cpu]") {
  BusyLoops neighbours(/*count=*/AffinityCpuCount().value_or(2));
  TempDir dir;
  const std::string repository = kiln::testing::MakeRepository(
      dir, std::map<std::string, TestModel>{{"resnet50", {"resnet50", DemoConfig("resnet50")}}});
  // The automatic layout (a worker of one intra-op thread per CPU). A worker of several threads
  // is measured less steadily beside busy neighbours: its calls' CPU time varied by up to 1.4x.
  auto server = StartServing(Config(repository, 0));
  const std::string log = server->log();
  INFO("log:\n" << log);
  // It passes within its attempts. Beside busy loops on every (virtual) CPU, one attempt's p95 has
  // measured 1.54x the steady CPU time, and on a VM whose vCPUs share cores, every call 2.1-2.25x
  // (three attempts in a row): the reference follows the check's median (ReferenceCpuMs).
  // One request per worker at batch 1 and one at batch 4, every worker reached.
  CHECK(
      std::regex_search(log, std::regex("readiness check: resnet50:1: [0-9]+ requests through "
                                        "the whole path on ([0-9]+) of \\1 workers \\(b1 x[0-9]+, "
                                        "b4 x1\\)")));
  CHECK(Count(log, "readiness check (attempt") < 3);
}

}  // namespace
}  // namespace kiln
