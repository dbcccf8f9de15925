// Reload against the real server (make-before-break): SIGHUP and Triton's repository RPCs load a
// new version in a new zygote generation while the served one keeps serving, switch in one step
// with no failed request, and leave the models that did not change alone (same workers); a
// version that fails to load keeps the old one serving and says why; unload takes a model out;
// the load/unload RPCs are refused unless --model_control_mode=explicit.
#include <signal.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/model_config_loader.h"
#include "tests/integration/server_test_util.h"

namespace kiln {
namespace {

using Catch::Matchers::Contains;
using grpc::health::v1::HealthCheckResponse;
using kiln::testing::Config;
using kiln::testing::DemoConfig;
using kiln::testing::Health;
using kiln::testing::HealthStub;
using kiln::testing::Infer;
using kiln::testing::kStartup;
using kiln::testing::MlpRequest;
using kiln::testing::PollUntil;
using kiln::testing::Report;
using kiln::testing::ServerConfig;
using kiln::testing::ServerProcess;
using kiln::testing::StartServing;
using kiln::testing::Stub;
using kiln::testing::TempDir;
using std::chrono::seconds;

// The demo mlp under another name, with workers of one intra-op thread (from a warm template).
std::string MlpNamed(const std::string& name) {
  return kiln::testing::Renamed(kiln::testing::OneThreadConfig(DemoConfig("mlp")), name);
}

// Three mlp models, "a", "b" and "c", each with version 1 and the demo's kiln.pbtxt.
std::string ThreeModels(const TempDir& dir) {
  return kiln::testing::MakeRepository(dir, {{"a", {"mlp", MlpNamed("a")}},
                                             {"b", {"mlp", MlpNamed("b")}},
                                             {"c", {"mlp", MlpNamed("c")}}});
}

// The pids of each served version's workers ("a:1" -> pids), from the warmup report.
std::map<std::string, std::set<int64_t>> WorkersByVersion(const ServerProcess& server) {
  std::map<std::string, std::set<int64_t>> workers;
  const WarmupReportResponse report = Report(server);
  for (const ModelWarmupReport& model : report.models()) {
    for (const internal::WarmupReport& worker : model.workers()) {
      workers[ModelKey(model.model(), model.version())].insert(worker.pid());
    }
  }
  return workers;
}

std::vector<std::string> ServedVersions(Stub& stub, const std::string& model) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + seconds(5));
  inference::ModelMetadataRequest request;
  request.set_name(model);
  inference::ModelMetadataResponse response;
  if (!stub.ModelMetadata(&context, request, &response).ok()) return {};
  return {response.versions().begin(), response.versions().end()};
}

inference::RepositoryIndexResponse Index(Stub& stub) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + seconds(5));
  inference::RepositoryIndexRequest request;
  inference::RepositoryIndexResponse response;
  const grpc::Status status = stub.RepositoryIndex(&context, request, &response);
  INFO("RepositoryIndex: " << status.error_message());
  REQUIRE(status.ok());
  return response;
}

// The index entries of `model`, as "version state reason".
std::vector<std::string> IndexOf(Stub& stub, const std::string& model) {
  std::vector<std::string> entries;
  const inference::RepositoryIndexResponse index = Index(stub);
  for (const auto& entry : index.models()) {
    if (entry.name() == model) {
      entries.push_back(entry.version() + " " + entry.state() + " " + entry.reason());
    }
  }
  return entries;
}

grpc::Status Load(Stub& stub, const std::string& model, bool unload = false) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + seconds(120));
  if (unload) {
    inference::RepositoryModelUnloadRequest request;
    request.set_model_name(model);
    inference::RepositoryModelUnloadResponse response;
    return stub.RepositoryModelUnload(&context, request, &response);
  }
  inference::RepositoryModelLoadRequest request;
  request.set_model_name(model);
  inference::RepositoryModelLoadResponse response;
  return stub.RepositoryModelLoad(&context, request, &response);
}

// Requests to model "a" (unversioned) from one thread, one after the other, until stopped:
// every status, and the versions that answered.
class SteadyStream {
 public:
  explicit SteadyStream(int port)
      : channel_(kiln::testing::ConnectedChannel(port)), thread_([this] { Run(); }) {}
  ~SteadyStream() { Stop(); }

  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  int ok() const { return ok_; }
  const std::vector<std::string>& errors() const { return errors_; }      // after Stop()
  const std::vector<std::string>& versions() const { return versions_; }  // after Stop()

 private:
  void Run() {
    if (!channel_.ok()) {
      errors_.push_back(channel_.status().ToString());
      return;
    }
    Stub stub(*channel_);
    while (!stop_) {
      inference::ModelInferRequest request = MlpRequest(1);
      request.set_model_name("a");
      inference::ModelInferResponse response;
      const grpc::Status status = Infer(stub, request, &response, seconds(30));
      if (status.ok()) {
        ++ok_;
        if (versions_.empty() || versions_.back() != response.model_version()) {
          versions_.push_back(response.model_version());
        }
      } else {
        errors_.push_back(status.error_message());
      }
    }
  }

  const absl::StatusOr<std::shared_ptr<grpc::Channel>> channel_;
  std::atomic<bool> stop_{false};
  std::atomic<int> ok_{0};
  std::vector<std::string> errors_;
  std::vector<std::string> versions_;
  std::thread thread_;
};

// ServerMetadata's extensions, space-separated.
std::string Extensions(Stub& oip) {
  grpc::ClientContext context;
  inference::ServerMetadataResponse response;
  const grpc::Status status = oip.ServerMetadata(&context, {}, &response);
  if (!status.ok()) return "error: " + status.error_message();
  return absl::StrJoin(response.extensions(), " ");
}

TEST_CASE(
    "SIGHUP rolls out a new version make-before-break: no failed request, and the models "
    "that did not change keep their workers",
    "[integration][server][reload]") {
  TempDir repo_dir;
  const std::string repo = ThreeModels(repo_dir);
  auto server = StartServing(Config(repo, 1));
  INFO("log:\n" << server->log());
  auto channel = kiln::testing::ServingChannel(*server);
  Stub oip(channel);
  const std::map<std::string, std::set<int64_t>> before = WorkersByVersion(*server);
  REQUIRE(before.size() == 3);

  SteadyStream stream(server->port());
  REQUIRE(PollUntil([&] { return stream.ok() >= 20; }, seconds(30)));
  kiln::testing::LinkVersion(repo, "a", "mlp", 2);
  server->Signal(SIGHUP);
  REQUIRE(PollUntil([&] { return ServedVersions(oip, "a") == std::vector<std::string>{"2"}; },
                    kStartup));
  const int switched_at = stream.ok();
  REQUIRE(PollUntil([&] { return stream.ok() >= switched_at + 20; }, seconds(30)));
  stream.Stop();

  INFO("errors: " << absl::StrJoin(stream.errors(), "; "));
  CHECK(stream.errors().empty());
  CHECK(stream.versions() == std::vector<std::string>{"1", "2"});  // switched once, never back
  const std::map<std::string, std::set<int64_t>> after = WorkersByVersion(*server);
  CHECK(after.at("b:1") == before.at("b:1"));  // untouched: the same processes
  CHECK(after.at("c:1") == before.at("c:1"));
  REQUIRE(after.count("a:2") == 1);
  CHECK(after.count("a:1") == 0);
  const int64_t old_worker = *before.at("a:1").begin();
  // The replaced version's worker leaves once its calls are done, and its zygote with it.
  CHECK(PollUntil(
      [&] {
        const std::vector<pid_t> workers = server->WorkerPids();
        return std::find(workers.begin(), workers.end(), old_worker) == workers.end() &&
               server->ZygotePids().size() == 2;  // generation 1 (b, c) and 2 (a:2)
      },
      seconds(30)));
  CHECK_THAT(server->log(), Contains("reload (SIGHUP (the whole repository)): load a:2; retire "
                                     "a:1; unchanged b:1, c:1") &&
                                Contains("reload: a:2 (generation 2) is live"));
  HealthStub health(channel);
  CHECK(Health(health, "a") == HealthCheckResponse::SERVING);
  CHECK(Health(health, "") == HealthCheckResponse::SERVING);
}

TEST_CASE(
    "a version that cannot load, a config that is wrong or a warmup that fails never "
    "replaces the version that serves, and the reason is returned and indexed",
    "[integration][server][reload]") {
  TempDir repo_dir;
  const std::string repo = ThreeModels(repo_dir);
  ServerConfig config = Config(repo, 1);
  config.extra_args.push_back("--model_control_mode=explicit");
  auto server = StartServing(config);
  INFO("log:\n" << server->log());
  auto channel = kiln::testing::ServingChannel(*server);
  Stub oip(channel);
  const std::map<std::string, std::set<int64_t>> before = WorkersByVersion(*server);

  // Version 2 of "a" is not TorchScript: its zygote cannot load it.
  repo_dir.WriteFile("a/2/model.pt", "these bytes are not a TorchScript archive");
  const grpc::Status refused = Load(oip, "a");
  CHECK(refused.error_code() != grpc::StatusCode::OK);
  CHECK_THAT(refused.error_message(), Contains("loading a:2 failed") && Contains("model.pt"));
  CHECK(ServedVersions(oip, "a") == std::vector<std::string>{"1"});
  CHECK(Infer(
            oip,
            [] {
              inference::ModelInferRequest request = MlpRequest(1);
              request.set_model_name("a");
              return request;
            }(),
            seconds(10))
            .ok());
  const std::vector<std::string> a = IndexOf(oip, "a");
  REQUIRE(a.size() == 1);
  CHECK_THAT(a.front(), Contains("1 READY loading a:2 failed"));

  // A config that does not parse: SIGHUP leaves "b" as it is and says why.
  repo_dir.WriteFile("b/config.pbtxt", MlpNamed("b") + "no_such_field: 1\n");
  server->Signal(SIGHUP);
  REQUIRE(PollUntil([&] { return kiln::testing::Count(server->log(), "reload (SIGHUP") >= 2; },
                    seconds(60)));
  const std::vector<std::string> b = IndexOf(oip, "b");
  REQUIRE(b.size() == 1);
  CHECK_THAT(b.front(), Contains("1 READY") && Contains("no_such_field"));
  // A warmup that fails: a memory budget no shape fits (kiln's setting, in kiln.pbtxt).
  repo_dir.WriteFile("c/kiln.pbtxt",
                     kiln::testing::DemoSettings("mlp") + "memory { limit_bytes: 1000 }\n");
  const grpc::Status cold = Load(oip, "c");
  CHECK(cold.error_code() != grpc::StatusCode::OK);
  CHECK_THAT(cold.error_message(), Contains("loading c:1 failed") && Contains("budget"));
  CHECK(IndexOf(oip, "c").size() == 1);

  const std::map<std::string, std::set<int64_t>> after = WorkersByVersion(*server);
  CHECK(after == before);  // every served version kept its workers
  CHECK_THAT(server->log(), Contains("what was served keeps serving"));
  HealthStub health(channel);
  CHECK(Health(health, "") == HealthCheckResponse::SERVING);
}

TEST_CASE(
    "model control: RepositoryModelUnload takes a model out and RepositoryModelLoad brings it "
    "back with --model_control_mode=explicit, and without it both are refused",
    "[integration][server][reload]") {
  TempDir repo_dir;
  const std::string repo = ThreeModels(repo_dir);
  ServerConfig config = Config(repo, 1);
  SECTION("--model_control_mode=explicit") {
    config.extra_args.push_back("--model_control_mode=explicit");
    auto server = StartServing(config);
    INFO("log:\n" << server->log());
    auto channel = kiln::testing::ServingChannel(*server);
    Stub oip(channel);
    HealthStub health(channel);
    CHECK_THAT(Extensions(oip), Contains("model_repository"));
    REQUIRE(Load(oip, "c", /*unload=*/true).ok());
    CHECK(ServedVersions(oip, "c").empty());
    CHECK(IndexOf(oip, "c") == std::vector<std::string>{" UNAVAILABLE unloaded"});
    CHECK(Health(health, "c") == HealthCheckResponse::NOT_SERVING);
    CHECK(Load(oip, "c", /*unload=*/true).error_code() == grpc::StatusCode::NOT_FOUND);
    CHECK(Load(oip, "nope").error_code() == grpc::StatusCode::NOT_FOUND);

    REQUIRE(Load(oip, "c").ok());
    CHECK(ServedVersions(oip, "c") == std::vector<std::string>{"1"});
    CHECK(IndexOf(oip, "c") == std::vector<std::string>{"1 READY "});
    CHECK(Health(health, "c") == HealthCheckResponse::SERVING);
    // Loading a model that did not change changes nothing.
    const std::map<std::string, std::set<int64_t>> before = WorkersByVersion(*server);
    REQUIRE(Load(oip, "b").ok());
    CHECK(WorkersByVersion(*server) == before);
  }
  SECTION("model control off (the default)") {
    auto server = StartServing(config);
    Stub oip(kiln::testing::ServingChannel(*server));
    for (bool unload : {true, false}) {
      const grpc::Status refused = Load(oip, "c", unload);
      CHECK(refused.error_code() == grpc::StatusCode::FAILED_PRECONDITION);
      CHECK_THAT(refused.error_message(), Contains("--model_control_mode=explicit"));
    }
    CHECK(ServedVersions(oip, "c") == std::vector<std::string>{"1"});
    CHECK(Index(oip).models_size() == 3);  // the index stays readable
    CHECK_THAT(Extensions(oip), !Contains("model_repository"));
  }
}

TEST_CASE(
    "a model below its quorum is NOT_SERVING by name and takes \"\" down, but not the other "
    "models' own health",
    "[integration][server][health]") {
  TempDir repo_dir;
  auto server = StartServing(Config(ThreeModels(repo_dir), 1));
  INFO("log:\n" << server->log());
  const std::set<int64_t> victims = WorkersByVersion(*server)["c:1"];
  REQUIRE(victims.size() == 1);
  const std::vector<pid_t> zygotes = server->ZygotePids();
  REQUIRE(zygotes.size() == 1);
  HealthStub health(kiln::testing::ServingChannel(*server));
  // c's worker dies while the zygote, stopped, cannot fork its replacement (from a warm template
  // it would be warm in a few ms): c (min_ready 1 of 1) stays below its quorum, and "" says so.
  REQUIRE(kill(zygotes[0], SIGSTOP) == 0);
  REQUIRE(kill(static_cast<pid_t>(*victims.begin()), SIGKILL) == 0);
  // Each sample of the models is taken between two probes of "" that both said NOT_SERVING.
  int samples = 0;
  std::vector<std::string> wrong;
  const auto until = std::chrono::steady_clock::now() + seconds(10);
  while (samples < 20 && std::chrono::steady_clock::now() < until) {
    if (Health(health, "") != HealthCheckResponse::NOT_SERVING) continue;
    const HealthCheckResponse::ServingStatus a = Health(health, "a");
    const HealthCheckResponse::ServingStatus c = Health(health, "c");
    if (Health(health, "") != HealthCheckResponse::NOT_SERVING) continue;
    ++samples;
    if (a != HealthCheckResponse::SERVING || c != HealthCheckResponse::NOT_SERVING) {
      wrong.push_back(absl::StrCat("a ", a, ", c ", c));
    }
  }
  REQUIRE(kill(zygotes[0], SIGCONT) == 0);
  CHECK(samples == 20);
  INFO("wrong samples: " << absl::StrJoin(wrong, "; "));
  CHECK(wrong.empty());
  // Once c's replacement is warm, everything is SERVING again.
  CHECK(PollUntil([&] { return Health(health, "") == HealthCheckResponse::SERVING; }, kStartup));
  CHECK(Health(health, "a") == HealthCheckResponse::SERVING);
  CHECK(Health(health, "c") == HealthCheckResponse::SERVING);
}

}  // namespace
}  // namespace kiln
