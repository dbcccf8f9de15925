// The warm template and the zygote against the real server: one template per CPU model warms once
// on one thread and forks the workers, which only confirm its warmup; --warm_template=off warms
// each worker by itself; a template or a zygote that dies is replaced (the zygote by fork+exec)
// while the workers keep serving, and only a zygote crash loop ends the server.
#include <signal.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

#include "bench/scale_command.h"
#include "common/process.h"
#include "server/supervisor/worker_pool.h"
#include "tests/integration/server_test_util.h"
#include "tests/process_identity.h"

namespace kiln {
namespace {

using Catch::Matchers::Contains;
using grpc::health::v1::HealthCheckResponse;
using kiln::testing::Config;
using kiln::testing::Count;
using kiln::testing::DemoConfig;
using kiln::testing::Health;
using kiln::testing::HealthStub;
using kiln::testing::Infer;
using kiln::testing::kStartup;
using kiln::testing::MlpRequest;
using kiln::testing::ModelReport;
using kiln::testing::ParentOf;
using kiln::testing::PollUntil;
using kiln::testing::Report;
using kiln::testing::ServerConfig;
using kiln::testing::StartServing;
using kiln::testing::Stub;
using kiln::testing::TempDir;
using std::chrono::seconds;

// The demo mlp with workers of one intra-op thread (from its warm template).
std::string OneThreadMlp() { return kiln::testing::OneThreadConfig(DemoConfig("mlp")); }

// Threads of process `pid` (entries of /proc/<pid>/task).
int ThreadsOf(pid_t pid) {
  int threads = 0;
  for (const auto& entry :
       std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/task")) {
    (void)entry;
    ++threads;
  }
  return threads;
}

TEST_CASE("CPU workers are forked from one single-threaded warm template and confirm its warmup",
          "[integration][server][template]") {
  TempDir repo_dir;
  const std::string repo = kiln::testing::MakeRepository(repo_dir, {{"mlp", OneThreadMlp()}});
  auto server = StartServing(Config(repo, 2));
  INFO("log:\n" << server->log());

  const std::vector<pid_t> templates = server->TemplatePids();
  REQUIRE(templates.size() == 1);
  const pid_t warm_template = templates.front();
  CHECK(ParentOf(warm_template) == server->ZygotePids().at(0));
  CHECK(ThreadsOf(warm_template) == 1);  // it forked twice, and can fork again
  const std::vector<pid_t> workers = server->WorkerPids();
  REQUIRE(workers.size() == 2);
  for (pid_t worker : workers) CHECK(ParentOf(worker) == warm_template);

  const ModelWarmupReport mlp = ModelReport(Report(*server), "mlp");
  REQUIRE(mlp.workers_size() == 2);
  for (const internal::WarmupReport& worker : mlp.workers()) {
    CHECK(worker.template_pid() == warm_template);
    CHECK(worker.template_warmup_ms() > 0);
    CHECK(worker.template_private_bytes() > 0);  // the template's own memory cost
    CHECK(worker.private_peak_bytes() > 0);
    REQUIRE(worker.shapes_size() == 4);  // batch 1, 2, 4, 8
    for (const internal::ShapeWarmup& shape : worker.shapes()) {
      CHECK(shape.from_template());
      CHECK(shape.calls() >= 1);  // confirmed with one call, or a few while it cost more CPU
      CHECK(shape.calls() <= 5);
      CHECK(shape.settled_after() >= 2);  // the template's settling
      CHECK(shape.steady_cpu_ms() > 0);
    }
  }
  CHECK(Count(server->log(), "shapes warmed on one thread") == 1);
  CHECK(Count(server->log(), "from the warm template") == 2);
  auto channel = kiln::testing::ServingChannel(*server);
  Stub oip(channel);
  CHECK(Infer(oip, MlpRequest(4), seconds(10)).ok());
}

TEST_CASE("warm_template off: every worker runs the whole warmup itself",
          "[integration][server][template]") {
  TempDir repo_dir;
  const std::string repo = kiln::testing::MakeRepository(repo_dir, {{"mlp", OneThreadMlp()}});
  ServerConfig config = Config(repo, 2);
  config.extra_args = {"--warm_template=off"};
  auto server = StartServing(config);
  CHECK(server->TemplatePids().empty());
  const ModelWarmupReport mlp = ModelReport(Report(*server), "mlp");
  REQUIRE(mlp.workers_size() == 2);
  for (const internal::WarmupReport& worker : mlp.workers()) {
    CHECK(worker.template_pid() == 0);
    for (const internal::ShapeWarmup& shape : worker.shapes()) {
      CHECK_FALSE(shape.from_template());
      // calls_per_shape (2) at least, 3 at the first shape (a new executor plan)
      CHECK(shape.calls() >= (&shape == &worker.shapes(0) ? 3 : 2));
    }
  }
}

TEST_CASE("a killed warm template is replaced, and its workers keep serving meanwhile",
          "[integration][server][template]") {
  TempDir repo_dir;
  const std::string repo = kiln::testing::MakeRepository(repo_dir, {{"mlp", OneThreadMlp()}});
  auto server = StartServing(Config(repo, 2));  // 2 workers of one thread each: a template
  auto channel = kiln::testing::ServingChannel(*server);
  Stub oip(channel);
  HealthStub health(channel);
  REQUIRE(server->TemplatePids().size() == 1);
  const pid_t first_template = server->TemplatePids().front();
  const std::vector<pid_t> workers = server->WorkerPids();
  REQUIRE(workers.size() == 2);

  REQUIRE(kill(first_template, SIGKILL) == 0);
  if (!PollUntil([&] { return server->TemplatePids().empty(); }, seconds(30))) {
    FAIL("the killed template is still there; log:\n" << server->log());
  }
  // Its workers live on (reparented to the zygote) and serve.
  CHECK(server->WorkerPids() == workers);
  for (pid_t worker : workers) CHECK(ParentOf(worker) == server->ZygotePids().at(0));
  for (int i = 0; i < 5; ++i) CHECK(Infer(oip, MlpRequest(1), seconds(10)).ok());
  CHECK(Health(health, "mlp") == HealthCheckResponse::SERVING);

  // The next worker asked for comes from a new template.
  CHECK(bench::RunScaleCommand({"--addr=" + server->address(), "--model=mlp", "--workers=3"}) == 0);
  if (!PollUntil([&] { return Count(server->log(), "): warm in") >= 3; }, kStartup)) {
    FAIL("no third worker; log:\n" << server->log());
  }
  const std::vector<pid_t> templates = server->TemplatePids();
  REQUIRE(templates.size() == 1);
  CHECK(templates.front() != first_template);
  const ModelWarmupReport mlp = ModelReport(Report(*server), "mlp");
  REQUIRE(mlp.workers_size() == 3);
  CHECK(mlp.workers(2).template_pid() == templates.front());
  CHECK(Health(health, "mlp") == HealthCheckResponse::SERVING);

  // A worker killed now is replaced from the new template, and the old one exits cleanly when
  // the server stops (the zygote reaps it).
  REQUIRE(kill(workers.front(), SIGKILL) == 0);
  if (!PollUntil([&] { return Count(server->log(), "): warm in") >= 4; }, kStartup)) {
    FAIL("no replacement; log:\n" << server->log());
  }
  CHECK_THAT(server->log(), Contains("(pid " + std::to_string(workers.front()) + ") exited"));
  for (int i = 0; i < 5; ++i) CHECK(Infer(oip, MlpRequest(1), seconds(10)).ok());
}

// The zygote's pid once it is another than `old` (and alive), or -1 after 30 s.
pid_t NextZygote(const kiln::testing::ServerProcess& server, pid_t old) {
  pid_t next = -1;
  PollUntil(
      [&] {
        const std::vector<pid_t> zygotes = server.ZygotePids();
        next = zygotes.size() == 1 && zygotes[0] != old ? zygotes[0] : -1;
        return next > 0;
      },
      seconds(30));
  return next;
}

TEST_CASE("a killed zygote is replaced by fork+exec while the workers keep serving",
          "[integration][server][template][zygote]") {
  TempDir repo_dir;
  const std::string repo = kiln::testing::MakeRepository(repo_dir, {{"mlp", OneThreadMlp()}});
  auto server = StartServing(Config(repo, 2));
  auto channel = kiln::testing::ServingChannel(*server);
  Stub oip(channel);
  HealthStub health(channel);
  const pid_t first = server->ZygotePids().at(0);
  const std::vector<pid_t> workers = server->WorkerPids();
  REQUIRE(workers.size() == 2);

  REQUIRE(kill(first, SIGKILL) == 0);
  const pid_t second = NextZygote(*server, first);
  INFO("log:\n" << server->log());
  REQUIRE(second > 0);
  // What `systemctl kill -s HUP` or `-s TTIN` without --kill-whom=main does to it while it still
  // loads LibTorch and the model: nothing. (Unblocked, HUP would kill it and TTIN stop it, and
  // no template or worker would come from it below.)
  REQUIRE(kill(second, SIGTTIN) == 0);
  REQUIRE(kill(second, SIGHUP) == 0);
  CHECK(ParentOf(second) == server->pid());
  // The master logs it once posix_spawn returned, which may be after the test sees the process.
  const std::string started =
      "started a new zygote by fork+exec (pid " + std::to_string(second) + ")";
  CHECK(PollUntil([&] { return server->log().find(started) != std::string::npos; }, seconds(10)));
  // The port never closed and the workers never stopped serving.
  for (int i = 0; i < 5; ++i) CHECK(Infer(oip, MlpRequest(1), seconds(10)).ok());
  CHECK(Health(health, "mlp") == HealthCheckResponse::SERVING);
  for (pid_t worker : workers) CHECK(kiln::testing::Identify(worker).has_value());
  // The master is the subreaper of everything it starts: the workers the dead zygote left are
  // re-parented to it, not to init, so they stay in its process tree.
  for (pid_t worker : workers) CHECK(ParentOf(worker) == server->pid());
  const std::vector<pid_t> tree_workers = server->WorkerPids();
  for (pid_t worker : workers) {
    CHECK(std::find(tree_workers.begin(), tree_workers.end(), worker) != tree_workers.end());
  }

  // New workers come from the new zygote, through a template of its own.
  CHECK(bench::RunScaleCommand({"--addr=" + server->address(), "--model=mlp", "--workers=3"}) == 0);
  if (!PollUntil([&] { return Count(server->log(), "): warm in") >= 3; }, kStartup)) {
    FAIL("no third worker");
  }
  const std::vector<pid_t> templates = server->TemplatePids();
  REQUIRE(templates.size() == 1);
  CHECK(ParentOf(templates[0]) == second);
  CHECK(Infer(oip, MlpRequest(2), seconds(10)).ok());

  // An adopted worker that dies is reaped by the master (no zombie left), and replaced.
  REQUIRE(kill(workers[0], SIGKILL) == 0);
  CHECK(PollUntil([&] { return ProcStatFields(workers[0]).empty(); }, seconds(10)));
  CHECK_THAT(server->log(),
             Contains("reaped pid " + std::to_string(workers[0]) + " (killed by signal 9"));
  CHECK(PollUntil([&] { return server->WorkerPids().size() == 3; }, kStartup));
  CHECK(Infer(oip, MlpRequest(1), seconds(10)).ok());
}

TEST_CASE("a zygote that keeps dying is a crash loop: the server exits 1 and says why",
          "[integration][server][template][zygote]") {
  TempDir repo_dir;
  const std::string repo = kiln::testing::MakeRepository(repo_dir, {{"mlp", OneThreadMlp()}});
  auto server = StartServing(Config(repo, 1));
  pid_t zygote = server->ZygotePids().at(0);
  for (int death = 1; death <= kMaxZygoteRestarts; ++death) {
    REQUIRE(kill(zygote, SIGKILL) == 0);
    zygote = NextZygote(*server, zygote);
    INFO("log:\n" << server->log());
    REQUIRE(zygote > 0);
  }
  REQUIRE(kill(zygote, SIGKILL) == 0);  // one death too many within the window
  const std::optional<int> code = server->WaitExit(seconds(30));
  INFO("log:\n" << server->log());
  REQUIRE(code.has_value());
  CHECK(*code == 1);
  CHECK_THAT(server->log(), Contains("the zygote died 4 times within 60 s (a crash loop"));
}

}  // namespace
}  // namespace kiln
