// Runtime scaling against the real server: SIGTTIN/SIGTTOU add and remove a worker of every
// model, `kiln-bench scale` (KilnService/SetWorkerCount) sets one model's count, and requests
// keep succeeding while workers come and go.
#include <chrono>
#include <csignal>
#include <functional>

#include <signal.h>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "bench/scale_command.h"
#include "tests/integration/server_test_util.h"

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
using kiln::testing::PollUntil;
using kiln::testing::StartServing;
using kiln::testing::Stub;
using kiln::testing::TempDir;
using std::chrono::seconds;

TEST_CASE(
    "TTIN and TTOU add and remove a worker, kiln-bench scale sets a count, and requests "
    "keep succeeding",
    "[integration][server][scaling]") {
  TempDir repo_dir;
  const std::string repo = kiln::testing::MakeRepository(repo_dir, {{"mlp", DemoConfig("mlp")}});
  auto server = StartServing(Config(repo, 1));
  auto channel = kiln::testing::ServingChannel(*server);
  Stub oip(channel);
  HealthStub health(channel);
  const inference::ModelInferRequest request = MlpRequest(1);
  auto serves = [&] {
    for (int i = 0; i < 5; ++i) {
      if (!Infer(oip, request, seconds(10)).ok()) return false;
    }
    return Health(health, "mlp") == HealthCheckResponse::SERVING;
  };
  // The log as it is when a wait fails (INFO would keep it as it was here).
  auto wait = [&](const std::function<bool()>& condition, std::chrono::milliseconds timeout) {
    if (!PollUntil(condition, timeout)) FAIL("gave up waiting; log:\n" << server->log());
  };
  REQUIRE(server->WorkerPids().size() == 1);

  // To the whole process group, as `systemctl kill -s TTIN` does to the cgroup: the zygote and
  // the workers must ignore it.
  kill(-server->pid(), SIGTTIN);
  wait([&] { return Count(server->log(), "): warm in") >= 2; }, kStartup);
  CHECK(server->WorkerPids().size() == 2);
  CHECK(serves());

  server->Signal(SIGTTOU);
  wait([&] { return server->WorkerPids().size() == 1; }, seconds(30));
  CHECK_THAT(server->log(), Contains("retired (scaled down)"));
  CHECK(serves());
  server->Signal(SIGTTOU);  // at one worker: kept
  wait([&] { return Count(server->log(), "keeps its one worker") == 1; }, seconds(30));
  CHECK(server->WorkerPids().size() == 1);

  const std::string addr = "--addr=" + server->address();
  CHECK(bench::RunScaleCommand({addr, "--model=mlp", "--workers=3"}) == 0);
  wait([&] { return Count(server->log(), "): warm in") >= 4; }, kStartup);
  CHECK(server->WorkerPids().size() == 3);
  CHECK(serves());
  CHECK(bench::RunScaleCommand({addr, "--model=nope", "--workers=2"}) == 1);  // NOT_FOUND
  CHECK(bench::RunScaleCommand({addr, "--model=mlp", "--workers=0"}) == 2);   // bad flag
  CHECK(server->WorkerPids().size() == 3);
}

}  // namespace
}  // namespace kiln
