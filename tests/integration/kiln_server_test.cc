// Integration tests: the real kiln-server binary (master, zygote, workers), driven from outside
// over gRPC, signals and its sd_notify socket, as systemd, a load balancer and a client would.
//
// Each test starts its own server on a free loopback port with a lock directory of its own, and
// the ServerProcess destructor SIGKILLs the whole process group, so nothing outlives a test.
// Every wait is bounded; there are no fixed sleeps used as synchronisation.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/safetensors.h"
#include "tests/integration/server_process.h"
#include "tests/integration/server_test_util.h"
#include "tests/test_paths.h"

namespace kiln {
namespace {

using Catch::Matchers::Contains;
using grpc::health::v1::HealthCheckResponse;
using kiln::testing::AllGone;
using kiln::testing::Config;
using kiln::testing::Count;
using kiln::testing::DemoConfig;
using kiln::testing::Describe;
using kiln::testing::Fp32Tensor;
using kiln::testing::Health;
using kiln::testing::HealthStub;
using kiln::testing::Infer;
using kiln::testing::IsAlive;
using kiln::testing::kServer;
using kiln::testing::kStartup;
using kiln::testing::MaxAbsDiff;
using kiln::testing::MlpRequest;
using kiln::testing::ModelsDir;
using kiln::testing::Pids;
using kiln::testing::PollUntil;
using kiln::testing::ProcessId;
using kiln::testing::ReadText;
using kiln::testing::ResnetRequest;
using kiln::testing::ServerConfig;
using kiln::testing::ServerProcess;
using kiln::testing::StartServing;
using kiln::testing::Stub;
using kiln::testing::TempDir;
using std::chrono::milliseconds;
using std::chrono::seconds;

// Waits until the worker `pid` has burnt `ms` more CPU time than `baseline_ms`: proof that it is
// computing (what the tests use to know a request reached a worker).
bool WaitWorkerComputing(pid_t pid, double baseline_ms, double ms) {
  return PollUntil([&] { return kiln::testing::CpuTimeMs(pid) >= baseline_ms + ms; }, seconds(30),
                   milliseconds(5));
}

// The pid the log gives worker `id`: "worker <id> (<model>): forked as pid <P>, warming".
pid_t ForkedPid(const std::string& log, int id) {
  const std::string key = "worker " + std::to_string(id) + " (";
  for (size_t pos = log.find(key); pos != std::string::npos; pos = log.find(key, pos + 1)) {
    const size_t line_end = log.find('\n', pos);
    const std::string line = log.substr(pos, line_end - pos);
    const size_t at = line.find("forked as pid ");
    if (at != std::string::npos) return std::stoi(line.substr(at + 14));
  }
  return -1;
}

// A unix datagram socket of the test's own, standing in for systemd's $NOTIFY_SOCKET.
class NotifySocket {
 public:
  explicit NotifySocket(const std::string& path) : path_(path) {
    fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd_ >= 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    REQUIRE(path.size() < sizeof(addr.sun_path));
    std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
    REQUIRE(bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
  }
  ~NotifySocket() { close(fd_); }
  NotifySocket(const NotifySocket&) = delete;
  NotifySocket& operator=(const NotifySocket&) = delete;

  const std::string& path() const { return path_; }

  // Receives datagrams until one has a line equal to `line` or starting with it (when `prefix`);
  // every datagram received is appended to `seen`. False on timeout or when `alive` says the
  // sender is gone.
  template <typename Alive>
  bool WaitFor(const std::string& line, bool prefix, milliseconds timeout, Alive alive,
               std::vector<std::string>& seen) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      pollfd pfd{fd_, POLLIN, 0};
      if (poll(&pfd, 1, 100) > 0) {
        char buffer[4096];
        const ssize_t n = recv(fd_, buffer, sizeof(buffer), 0);
        if (n <= 0) continue;
        const std::string datagram(buffer, n);
        seen.push_back(datagram);
        std::istringstream lines(datagram);
        for (std::string l; std::getline(lines, l);) {
          if (prefix ? l.rfind(line, 0) == 0 : l == line) return true;
        }
      } else if (!alive()) {
        return false;
      }
    }
    return false;
  }

 private:
  std::string path_;
  int fd_ = -1;
};

// True when a TCP connect to 127.0.0.1:port is refused (nothing listens).
bool ConnectRefused(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  const int rc = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  const int err = errno;
  close(fd);
  return rc != 0 && err == ECONNREFUSED;
}

// Largest absolute difference between raw FP32 output bytes and a reference tensor.

// --- 1. readiness ----------------------------------------------------------------------------

TEST_CASE(
    "before warmup completes nothing listens, then READY=1 reaches systemd and health is "
    "SERVING",
    "[integration][server][readiness]") {
  TempDir repo_dir, notify_dir;
  // ResNet-50 takes seconds to warm: a wide window in which the server must not look ready.
  const std::string repo =
      kiln::testing::MakeRepository(repo_dir, {{"resnet50", DemoConfig("resnet50")}});
  NotifySocket notify(notify_dir.path() + "/notify");
  ServerConfig config = Config(repo, 1);
  config.env = {"NOTIFY_SOCKET=" + notify.path()};
  ServerProcess server(config);
  auto alive = [&] { return server.IsRunning(); };
  std::vector<std::string> seen;

  INFO("datagrams are checked in order: STATUS=warming, then READY=1");
  const bool warming = notify.WaitFor("STATUS=warming", /*prefix=*/true, kStartup, alive, seen);
  if (!warming) FAIL("no STATUS=warming datagram; log:\n" << server.log());
  CHECK(Count(server.log(), "startup: ready") == 0);

  // Warming: the port is not open, so a probe cannot even connect.
  CHECK(ConnectRefused(server.port()));
  {
    auto channel = kiln::testing::LoopbackChannel(server.port());
    HealthStub health(channel);
    HealthCheckResponse::ServingStatus serving;
    const grpc::Status probe = kiln::testing::HealthCheck(health, "", &serving, seconds(1));
    INFO("health probe while warming: " << Describe(probe));
    CHECK(probe.error_code() == grpc::StatusCode::UNAVAILABLE);
  }
  for (const std::string& datagram : seen) CHECK_THAT(datagram, !Contains("READY=1"));

  const bool ready = notify.WaitFor("READY=1", /*prefix=*/false, kStartup, alive, seen);
  if (!ready) FAIL("no READY=1 datagram; log:\n" << server.log());
  CHECK_THAT(seen.back(), Contains("STATUS=serving on 127.0.0.1:" + std::to_string(server.port())));

  // READY=1 is sent only once the port is open and health says SERVING: no polling here.
  auto channel = kiln::testing::LoopbackChannel(server.port());
  HealthStub health(channel);
  Stub oip(channel);
  CHECK(Health(health, "") == HealthCheckResponse::SERVING);
  CHECK(Health(health, "resnet50") == HealthCheckResponse::SERVING);
  // The gRPC services by name, as grpc_health_probe -service and Kubernetes probes ask.
  CHECK(Health(health, "inference.GRPCInferenceService") == HealthCheckResponse::SERVING);
  CHECK(Health(health, "kiln.KilnService") == HealthCheckResponse::SERVING);
  grpc::StatusCode unknown_code;
  Health(health, "no-such-model", &unknown_code);
  CHECK(unknown_code == grpc::StatusCode::NOT_FOUND);
  {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + seconds(5));
    inference::ServerReadyResponse response;
    REQUIRE(oip.ServerReady(&context, {}, &response).ok());
    CHECK(response.ready());
  }
  {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + seconds(5));
    inference::ModelReadyRequest request;
    request.set_name("resnet50");
    inference::ModelReadyResponse response;
    REQUIRE(oip.ModelReady(&context, request, &response).ok());
    CHECK(response.ready());
  }
}

// --- 2. every demo model through gRPC ----------------------------------------------------------

struct ExpectedTensor {
  std::string name;
  std::string datatype;
  std::vector<int64_t> shape;
};

struct ExpectedModel {
  std::vector<ExpectedTensor> inputs;
  std::vector<ExpectedTensor> outputs;
};

const std::map<std::string, ExpectedModel>& DemoModels() {
  static const auto* models = new std::map<std::string, ExpectedModel>{
      {"mlp", {{{"input", "FP32", {-1, 16}}}, {{"output", "FP32", {-1, 4}}}}},
      {"resnet18", {{{"input", "FP32", {-1, 3, 224, 224}}}, {{"logits", "FP32", {-1, 1000}}}}},
      {"resnet50", {{{"input", "FP32", {-1, 3, 224, 224}}}, {{"logits", "FP32", {-1, 1000}}}}},
      {"textcls",
       {{{"text", "BYTES", {-1, 1}},
         {"input_ids", "INT64", {-1, -1}},
         {"attention_mask", "INT64", {-1, -1}}},
        {{"logits", "FP32", {-1, 4}}}}},
  };
  return *models;
}

TEST_CASE(
    "every demo model answers ModelInfer with PyTorch's reference output, and the "
    "metadata RPCs describe the server and the models",
    "[integration][server][demo]") {
  auto server = StartServing(Config(ModelsDir(), 1));
  auto channel = kiln::testing::ServingChannel(*server);
  Stub oip(channel);

  {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + seconds(5));
    inference::ServerLiveResponse live;
    REQUIRE(oip.ServerLive(&context, {}, &live).ok());
    CHECK(live.live());
  }
  {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + seconds(5));
    inference::ServerMetadataResponse metadata;
    REQUIRE(oip.ServerMetadata(&context, {}, &metadata).ok());
    CHECK(metadata.name() == "kiln");
    CHECK_FALSE(metadata.version().empty());
  }

  for (const auto& [name, expected] : DemoModels()) {
    INFO("model " << name);
    // Metadata: inputs and outputs in config order, batch dim -1 first.
    {
      grpc::ClientContext context;
      context.set_deadline(std::chrono::system_clock::now() + seconds(5));
      inference::ModelMetadataRequest request;
      request.set_name(name);
      inference::ModelMetadataResponse metadata;
      const grpc::Status status = oip.ModelMetadata(&context, request, &metadata);
      REQUIRE(status.ok());
      CHECK(metadata.name() == name);
      CHECK(std::vector<std::string>(metadata.versions().begin(), metadata.versions().end()) ==
            std::vector<std::string>{"1"});
      CHECK(metadata.platform() == "pytorch_libtorch");  // Triton's name for a TorchScript model
      auto check = [](const auto& actual, const std::vector<ExpectedTensor>& want) {
        REQUIRE(actual.size() == static_cast<int>(want.size()));
        for (size_t i = 0; i < want.size(); ++i) {
          INFO("tensor " << want[i].name);
          CHECK(actual[i].name() == want[i].name);
          CHECK(actual[i].datatype() == want[i].datatype);
          CHECK(std::vector<int64_t>(actual[i].shape().begin(), actual[i].shape().end()) ==
                want[i].shape);
        }
      };
      check(metadata.inputs(), expected.inputs);
      check(metadata.outputs(), expected.outputs);
    }

    // Inference on the reference input written by scripts/make_models.py.
    absl::StatusOr<std::unique_ptr<MappedSafetensors>> reference =
        MappedSafetensors::Open(ModelsDir() + "/" + name + "/1/reference.safetensors");
    REQUIRE(reference.ok());
    std::vector<TensorView> inputs;
    for (const ExpectedTensor& input : expected.inputs) {
      if (input.datatype == "BYTES") continue;  // the reference holds the token inputs
      const SafetensorsTensor* t = (*reference)->index().Find("input." + input.name);
      REQUIRE(t != nullptr);
      inputs.push_back(TensorView{input.name, t->dtype, t->shape, t->data, t->nbytes()});
    }
    inference::ModelInferRequest request = kiln::testing::MakeInferRequest(name, inputs);
    request.set_id("ref-" + name);
    inference::ModelInferResponse response;
    const grpc::Status status = Infer(oip, request, &response, seconds(60));
    INFO("status " << Describe(status));
    REQUIRE(status.ok());
    CHECK(response.model_name() == name);
    CHECK(response.model_version() == "1");
    CHECK(response.id() == "ref-" + name);
    REQUIRE(response.outputs_size() == static_cast<int>(expected.outputs.size()));
    REQUIRE(response.raw_output_contents_size() == response.outputs_size());
    for (int i = 0; i < response.outputs_size(); ++i) {
      const auto& output = response.outputs(i);
      INFO("output " << output.name());
      CHECK(output.name() == expected.outputs[i].name);
      CHECK(output.datatype() == "FP32");
      const SafetensorsTensor* want = (*reference)->index().Find("output." + output.name());
      REQUIRE(want != nullptr);
      CHECK(std::vector<int64_t>(output.shape().begin(), output.shape().end()) == want->shape);
      CHECK(MaxAbsDiff(response.raw_output_contents(i), *want) <= 1e-4);
    }
  }
}

// --- 3. a worker killed mid-stream ------------------------------------------------------------

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

TEST_CASE(
    "kill -9 of a worker under a steady stream: every request returns, health stays "
    "SERVING, the zygote forks a replacement that serves",
    "[integration][server][supervision]") {
  // The default readiness: SERVING once all (2) workers are warm, and then while at least
  // min_ready (1) are, so one dead worker of two does not take the model out.
  TempDir repo_dir;
  const std::string repo = kiln::testing::MakeRepository(repo_dir, {{"mlp", DemoConfig("mlp")}});
  auto server = StartServing(Config(repo, 2));
  REQUIRE(Count(server->log(), "(mlp:1, pid ") >= 2);
  const std::vector<pid_t> zygotes = server->ZygotePids();
  REQUIRE(zygotes.size() == 1);
  const pid_t zygote = zygotes[0];
  const std::vector<pid_t> before = server->WorkerPids();
  REQUIRE(before.size() == 2);
  const pid_t victim = ForkedPid(server->log(), 0);
  REQUIRE(std::find(before.begin(), before.end(), victim) != before.end());

  auto channel = kiln::testing::ServingChannel(*server);
  struct Result {
    grpc::StatusCode code;
    std::string message;
    double ms;
  };
  std::mutex mu;
  std::vector<Result> results;  // guarded by mu
  std::atomic<int> ok_count{0};
  std::atomic<int64_t> pending_since_ns{0};  // start of the request in flight; 0 when none
  std::atomic<bool> stop{false};
  constexpr int kMaxRequests = 20000;

  // One request at a time, each with a 10 s deadline.
  std::thread client([&] {
    Stub oip(channel);
    const inference::ModelInferRequest request = MlpRequest(1);
    for (int i = 0; i < kMaxRequests && !stop.load(); ++i) {
      const int64_t start = NowNs();
      pending_since_ns = start;
      const grpc::Status status = Infer(oip, request, seconds(10));
      pending_since_ns = 0;
      if (status.ok()) ++ok_count;
      std::lock_guard<std::mutex> lock(mu);
      results.push_back({status.error_code(), status.error_message(), (NowNs() - start) / 1e6});
    }
  });
  std::vector<std::string> health_problems;  // written by the prober only, read after join
  std::atomic<int> health_probes{0};
  std::thread prober([&] {
    HealthStub health(channel);
    for (int i = 0; i < kMaxRequests && !stop.load(); ++i) {
      grpc::StatusCode code;
      const HealthCheckResponse::ServingStatus serving = Health(health, "", &code);
      const HealthCheckResponse::ServingStatus model = Health(health, "mlp");
      if (serving != HealthCheckResponse::SERVING || model != HealthCheckResponse::SERVING) {
        health_problems.push_back("probe " + std::to_string(i) + ": code " +
                                  std::to_string(static_cast<int>(code)) + ", server " +
                                  std::to_string(serving) + ", mlp " + std::to_string(model));
      }
      ++health_probes;
      std::this_thread::sleep_for(milliseconds(10));  // pacing, not synchronisation
    }
  });
  struct Joiner {  // on a failed REQUIRE: kill the server so that pending calls end at once
    ServerProcess& server;
    std::atomic<bool>& stop;
    std::thread& a;
    std::thread& b;
    ~Joiner() {
      stop = true;
      if (std::uncaught_exceptions() > 0) server.KillAll();
      if (a.joinable()) a.join();
      if (b.joinable()) b.join();
    }
  } joiner{*server, stop, client, prober};

  REQUIRE(PollUntil([&] { return ok_count.load() >= 50; }, seconds(30)));
  // Freeze the victim so that a request is certainly in its hands when it dies: the next
  // request dispatched to it hangs (the dispatcher prefers the lowest worker id when idle).
  REQUIRE(kill(victim, SIGSTOP) == 0);
  const bool stuck = PollUntil(
      [&] {
        const int64_t since = pending_since_ns.load();
        return since != 0 && NowNs() - since > 300'000'000;
      },
      seconds(10));
  REQUIRE(stuck);
  size_t at_kill;
  {
    std::lock_guard<std::mutex> lock(mu);
    at_kill = results.size();
  }
  const auto killed_at = std::chrono::steady_clock::now();
  const int probes_at_kill = health_probes.load();
  REQUIRE(kill(victim, SIGKILL) == 0);

  // A replacement appears, forked by the model's warm template (the zygote's child) or, for a
  // worker of more than one intra-op thread, by the zygote: never by the master, never reloaded.
  pid_t replacement = -1;
  const bool respawned = PollUntil(
      [&] {
        for (pid_t pid : server->WorkerPids()) {
          if (std::find(before.begin(), before.end(), pid) == before.end()) replacement = pid;
        }
        return replacement > 0;
      },
      seconds(30));
  INFO("log:\n" << server->log());
  REQUIRE(respawned);
  const pid_t parent = kiln::testing::ParentOf(replacement);  // a template, or the zygote
  CHECK((parent == zygote || kiln::testing::ParentOf(parent) == zygote));
  // It warms and rejoins.
  const std::string warm_line = "(mlp:1, pid " + std::to_string(replacement) + "): warm in";
  REQUIRE(PollUntil([&] { return Count(server->log(), warm_line) == 1; }, seconds(60)));
  size_t after_rejoin;
  {
    std::lock_guard<std::mutex> lock(mu);
    after_rejoin = results.size();
  }
  const int ok_at_rejoin = ok_count.load();
  // Keep streaming and probing for a while: at least 100 more requests, 1 s since the kill and
  // 20 more health probes (the master refreshes health every 200 ms).
  REQUIRE(PollUntil(
      [&] {
        return ok_count.load() >= ok_at_rejoin + 100 &&
               health_probes.load() >= probes_at_kill + 20 &&
               std::chrono::steady_clock::now() - killed_at > seconds(1);
      },
      seconds(30)));
  stop = true;
  client.join();
  prober.join();

  int ok = 0, unavailable = 0, failed_after_rejoin = 0;
  std::vector<std::string> others;
  for (size_t i = 0; i < results.size(); ++i) {
    const Result& r = results[i];
    if (r.code == grpc::StatusCode::OK) {
      ++ok;
    } else if (r.code == grpc::StatusCode::UNAVAILABLE) {
      ++unavailable;
      CHECK_THAT(r.message, Contains("died while serving"));
      // The request the victim held when it died: the one in flight at the kill.
      CHECK(i == at_kill);
    } else {
      others.push_back("request " + std::to_string(i) + ": " + std::to_string(r.code) + " " +
                       r.message + " after " + std::to_string(r.ms) + " ms");
    }
    if (i >= after_rejoin && r.code != grpc::StatusCode::OK) ++failed_after_rejoin;
  }
  INFO("requests: " << results.size() << ", ok " << ok << ", unavailable " << unavailable
                    << ", killed at request " << at_kill << ", replacement warm at request "
                    << after_rejoin);
  for (const std::string& other : others) UNSCOPED_INFO(other);
  CHECK(others.empty());
  // Exactly the request in the victim's hands dies with it, as UNAVAILABLE, not as a hang.
  CHECK(unavailable == 1);
  // Every request after the replacement rejoined succeeded.
  CHECK(failed_after_rejoin == 0);
  CHECK(results.size() - after_rejoin >= 100);

  for (const std::string& problem : health_problems) UNSCOPED_INFO(problem);
  CHECK(health_problems.empty());

  const std::string log = server->log();
  CHECK_THAT(log, Contains("(pid " + std::to_string(victim) + ") exited by signal 9"));
  CHECK_THAT(log, Contains("pid " + std::to_string(victim) + ", busy) is gone"));
  CHECK_THAT(log, Contains("forked as pid " + std::to_string(replacement) + ", warming"));
  CHECK(server->WorkerPids().size() == 2);
}

TEST_CASE(
    "a stopped worker is found by the compute timeout: its call ends UNAVAILABLE naming the "
    "timeout, it is killed and replaced, and health stays SERVING",
    "[integration][server][supervision]") {
  TempDir repo_dir;
  const std::string repo = kiln::testing::MakeRepository(
      repo_dir,
      std::map<std::string, kiln::testing::TestModel>{
          {"mlp",
           {"mlp",
            DemoConfig("mlp"),
            {1},
            kiln::testing::DemoSettings("mlp") + "\nsupervision { compute_timeout_ms: 300 }\n"}}});
  // At normal priority: a worker still at idle priority (through the readiness check) beside
  // busy neighbours can wait longer than this tight timeout for a CPU, and be replaced for it.
  ServerConfig config = Config(repo, 2);
  config.extra_args = {"--warmup_priority=normal"};
  auto server = StartServing(config);
  const std::vector<pid_t> before = server->WorkerPids();
  REQUIRE(before.size() == 2);
  const pid_t victim = ForkedPid(server->log(), 0);
  REQUIRE(kill(victim, SIGSTOP) == 0);  // hung: alive, never answers

  // Sequential requests alternate between the two idle workers: within a few, one is the
  // victim's. It must end well before its own 10 s deadline, as UNAVAILABLE.
  auto channel = kiln::testing::ServingChannel(*server);
  Stub oip(channel);
  const inference::ModelInferRequest request = MlpRequest(1);
  grpc::Status hung;
  double hung_ms = 0;
  for (int i = 0; i < 10 && hung.ok(); ++i) {
    const auto start = std::chrono::steady_clock::now();
    hung = Infer(oip, request, seconds(10));
    hung_ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  }
  INFO("log:\n" << server->log());
  REQUIRE(hung.error_code() == grpc::StatusCode::UNAVAILABLE);
  CHECK_THAT(hung.error_message(), Contains("compute timeout of 300 ms"));
  CHECK(hung_ms >= 300);
  CHECK(hung_ms < 5000);
  HealthStub health(channel);
  CHECK(Health(health, "mlp") == HealthCheckResponse::SERVING);  // min_ready 1 of 2

  // Killed (not left stopped) and replaced from the zygote; then every request succeeds.
  REQUIRE(PollUntil([&] { return !kiln::testing::Identify(victim).has_value(); }, seconds(10)));
  REQUIRE(PollUntil([&] { return Count(server->log(), "): warm in") >= 3; }, seconds(60)));
  CHECK(server->WorkerPids().size() == 2);
  for (int i = 0; i < 10; ++i) CHECK(Infer(oip, request, seconds(10)).ok());
  CHECK_THAT(server->log(), Contains("ran past the compute timeout (300 ms); killed"));
}

// --- 4. bad requests --------------------------------------------------------------------------

// A copy of textcls (its tokenizer adds the BYTES input "text"), lightly warmed: config.pbtxt
// and kiln.pbtxt.
constexpr char kTextBytesConfig[] = R"pb(
  name: "textbytes"
  backend: "pytorch"
  max_batch_size: 8 input
  [ {
    name: "input_ids"
    data_type: TYPE_INT64
    dims: [ -1 ]
  }
    , {
      name: "attention_mask"
      data_type: TYPE_INT64
      dims: [ -1 ]
    }] output
  [ {
    name: "logits"
    data_type: TYPE_FP32
    dims: [ 4 ]
  }] instance_group
  [ { count: 1 }]
)pb";
constexpr char kTextBytesSettings[] = R"pb(
  warmup {
    sequence_lengths: [ 16 ]
    batch_sizes: [ 1 ]
  }
  tokenizer { model_file: "tokenizer.model" max_length: 128 pad_id: 0 }
)pb";

TEST_CASE(
    "every bad request gets NOT_FOUND or INVALID_ARGUMENT naming the tensor, and the "
    "server keeps serving",
    "[integration][server][validation]") {
  TempDir repo_dir;
  const std::string repo = kiln::testing::MakeRepository(
      repo_dir, std::map<std::string, kiln::testing::TestModel>{
                    {"mlp", {"mlp", DemoConfig("mlp")}},
                    {"textbytes", {"textcls", kTextBytesConfig, {1}, kTextBytesSettings}}});
  auto server = StartServing(Config(repo, 1));
  auto channel = kiln::testing::ServingChannel(*server);
  Stub oip(channel);

  struct Case {
    std::string what;
    inference::ModelInferRequest request;
    grpc::StatusCode code;
    std::vector<std::string> message_has;
  };
  std::vector<Case> cases;
  const inference::ModelInferRequest good = MlpRequest(2);
  {
    Case c{"unknown model", good, grpc::StatusCode::NOT_FOUND, {"unknown model 'nosuch'"}};
    c.request.set_model_name("nosuch");
    cases.push_back(c);
  }
  {
    Case c{"unknown version", good, grpc::StatusCode::NOT_FOUND, {"'mlp'", "no version 7"}};
    c.request.set_model_version("7");
    cases.push_back(c);
  }
  {
    Case c{"wrong input name", good, grpc::StatusCode::INVALID_ARGUMENT, {"'inputs'", "'input'"}};
    c.request.mutable_inputs(0)->set_name("inputs");
    cases.push_back(c);
  }
  {
    Case c{"wrong datatype", good, grpc::StatusCode::INVALID_ARGUMENT, {"'input'", "FP64", "FP32"}};
    c.request.mutable_inputs(0)->set_datatype("FP64");
    cases.push_back(c);
  }
  {
    Case c{"unknown datatype", good, grpc::StatusCode::INVALID_ARGUMENT, {"'input'", "FLOAT"}};
    c.request.mutable_inputs(0)->set_datatype("FLOAT");
    cases.push_back(c);
  }
  {
    const Tensor t = Fp32Tensor("input", {2, 15});
    Case c{"wrong shape",
           kiln::testing::MakeInferRequest("mlp", {t.view()}),
           grpc::StatusCode::INVALID_ARGUMENT,
           {"'input'", "[2, 15]"}};
    cases.push_back(c);
  }
  {
    Case c{"wrong byte count",
           good,
           grpc::StatusCode::INVALID_ARGUMENT,
           {"'input'", "127 bytes", "expected 128"}};
    c.request.mutable_raw_input_contents(0)->pop_back();
    cases.push_back(c);
  }
  {
    const Tensor t = Fp32Tensor("input", {9, 16});
    Case c{"batch over max_batch_size",
           kiln::testing::MakeInferRequest("mlp", {t.view()}),
           grpc::StatusCode::INVALID_ARGUMENT,
           {"'input'", "batch 9", "max_batch_size 8"}};
    cases.push_back(c);
  }
  {
    Case c{"raw and typed contents mixed",
           good,
           grpc::StatusCode::INVALID_ARGUMENT,
           {"'input'", "mixed"}};
    for (int i = 0; i < 32; ++i)
      c.request.mutable_inputs(0)->mutable_contents()->add_fp32_contents(0);
    cases.push_back(c);
  }
  {
    // BYTES: element 0 says 100 bytes, 3 follow.
    Tensor ids, mask;
    for (Tensor* t : {&ids, &mask}) {
      t->dtype = DType::kInt64;
      t->shape = {1, 4};
      t->bytes.assign(4 * sizeof(int64_t), 0);
      t->bytes[0] = 1;
    }
    ids.name = "input_ids";
    mask.name = "attention_mask";
    inference::ModelInferRequest both =
        kiln::testing::MakeInferRequest("textbytes", {ids.view(), mask.view()});
    auto* input = both.add_inputs();
    input->set_name("text");
    input->set_datatype("BYTES");
    input->add_shape(1);
    input->add_shape(1);
    both.add_raw_input_contents(std::string("\x02\x00\x00\x00", 4) + "hi");
    cases.push_back(Case{"text and token inputs together",
                         both,
                         grpc::StatusCode::INVALID_ARGUMENT,
                         {"'text'", "not both"}});
    inference::ModelInferRequest malformed;
    malformed.set_model_name("textbytes");
    *malformed.add_inputs() = *input;
    malformed.add_raw_input_contents(std::string("\x64\x00\x00\x00", 4) + "abc");
    cases.push_back(Case{"malformed BYTES",
                         malformed,
                         grpc::StatusCode::INVALID_ARGUMENT,
                         {"'text'", "malformed BYTES"}});
  }

  for (const Case& c : cases) {
    INFO("case: " << c.what);
    const grpc::Status status = Infer(oip, c.request, seconds(10));
    INFO("got " << Describe(status));
    CHECK(status.error_code() == c.code);
    for (const std::string& part : c.message_has)
      CHECK_THAT(status.error_message(), Contains(part));
  }

  // The server is unharmed: a good request still succeeds (also naming the served version),
  // and health is SERVING.
  for (const std::string version : {"", "1"}) {
    inference::ModelInferRequest request = good;
    request.set_model_version(version);
    inference::ModelInferResponse response;
    const grpc::Status status = Infer(oip, request, &response, seconds(30));
    INFO("good request, version '" << version << "': " << Describe(status));
    REQUIRE(status.ok());
    REQUIRE(response.outputs_size() == 1);
    CHECK(response.outputs(0).name() == "output");
    CHECK(std::vector<int64_t>(response.outputs(0).shape().begin(),
                               response.outputs(0).shape().end()) == std::vector<int64_t>{2, 4});
    REQUIRE(response.raw_output_contents_size() == 1);
    CHECK(response.raw_output_contents(0).size() == 2 * 4 * sizeof(float));
  }
  HealthStub health(channel);
  CHECK(Health(health, "") == HealthCheckResponse::SERVING);
  CHECK(server->IsRunning());
}

// --- 5. SIGTERM drains -------------------------------------------------------------------------

TEST_CASE(
    "SIGTERM with requests in flight: they all complete OK, the master exits 0 and the "
    "whole tree is gone",
    "[integration][server][signals]") {
  TempDir repo_dir;
  const std::string repo =
      kiln::testing::MakeRepository(repo_dir, {{"resnet50", DemoConfig("resnet50")}});
  ServerConfig config = Config(repo, 1);
  config.extra_args = {"--drain_timeout_s=60"};
  auto server = StartServing(config);
  const std::vector<ProcessId> tree = server->TreePids();
  // master, zygote, one worker, and a warm template where its worker runs one intra-op thread
  REQUIRE(tree.size() == 3 + server->TemplatePids().size());
  const std::vector<pid_t> workers = server->WorkerPids();
  REQUIRE(workers.size() == 1);
  auto channel = kiln::testing::ServingChannel(*server);
  Stub oip(channel);
  {
    grpc::ClientContext context;  // connect before the clock starts
    inference::ServerLiveResponse live;
    REQUIRE(oip.ServerLive(&context, {}, &live).ok());
  }

  constexpr int kRequests = 3;
  const inference::ModelInferRequest request = ResnetRequest("resnet50", 8);
  std::vector<grpc::Status> statuses(kRequests);
  std::atomic<int> done{0};
  const double cpu_before = kiln::testing::CpuTimeMs(workers[0]);
  std::vector<std::thread> clients;
  for (int i = 0; i < kRequests; ++i) {
    clients.emplace_back([&, i] {
      Stub stub(channel);
      statuses[i] = Infer(stub, request, seconds(90));
      ++done;
    });
  }
  struct Joiner {  // on a failed REQUIRE: kill the server so that pending calls end at once
    ServerProcess& server;
    std::vector<std::thread>& threads;
    ~Joiner() {
      if (std::uncaught_exceptions() > 0) server.KillAll();
      for (std::thread& t : threads) {
        if (t.joinable()) t.join();
      }
    }
  } joiner{*server, clients};

  // The only worker is computing the first request; the others are queued behind it.
  REQUIRE(WaitWorkerComputing(workers[0], cpu_before, 300));
  const int done_at_term = done.load();
  const auto term_sent = std::chrono::steady_clock::now();
  server->Signal(SIGTERM);
  const std::optional<int> code = server->WaitExit(seconds(60));
  const double exit_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - term_sent).count();
  for (std::thread& t : clients) t.join();
  INFO("log:\n" << server->log());
  INFO("master exited " << exit_s << " s after SIGTERM");
  CHECK(done_at_term < kRequests);  // otherwise nothing was in flight
  for (int i = 0; i < kRequests; ++i) {
    INFO("request " << i << ": " << Describe(statuses[i]));
    CHECK(statuses[i].ok());
  }
  REQUIRE(code.has_value());
  CHECK(*code == 0);
  CHECK(exit_s < 30);
  CHECK_THAT(server->log(), Contains("draining"));
  CHECK_THAT(server->log(), Contains("stopped"));
  const bool gone = PollUntil([&] { return AllGone(tree); }, seconds(5));
  INFO("tree: " << Pids(tree));
  CHECK(gone);
}

TEST_CASE("SIGTERM on an idle server: exit 0 within 3 s, the zygote and workers leave with it",
          "[integration][server][signals]") {
  // Regression: the master's end of the zygote's socketpair was once inherited by the zygote
  // (and every worker) and never closed there, so the zygote saw no EOF on shutdown and TERM
  // took 5 s (then a SIGKILL).
  TempDir repo_dir;
  const std::string repo = kiln::testing::MakeRepository(repo_dir, {{"mlp", DemoConfig("mlp")}});
  auto server = StartServing(Config(repo, 2));
  const std::vector<ProcessId> tree = server->TreePids();
  // master, zygote, two workers, and a warm template where they run one intra-op thread each
  REQUIRE(tree.size() == 4 + server->TemplatePids().size());
  const auto term_sent = std::chrono::steady_clock::now();
  server->Signal(SIGTERM);
  const std::optional<int> code = server->WaitExit(seconds(30));
  const double exit_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - term_sent).count();
  INFO("log:\n" << server->log());
  INFO("master exited " << exit_s << " s after SIGTERM");
  REQUIRE(code.has_value());
  CHECK(*code == 0);
  CHECK(exit_s < 3.0);
  const bool gone = PollUntil([&] { return AllGone(tree); }, seconds(5));
  INFO("tree: " << Pids(tree));
  CHECK(gone);
}

// --- 6. one server per port -----------------------------------------------------------------

TEST_CASE("a second server on the same port refuses to start and the first keeps serving",
          "[integration][server][lock]") {
  TempDir repo_dir;
  const std::string repo = kiln::testing::MakeRepository(repo_dir, {{"mlp", DemoConfig("mlp")}});
  auto first = StartServing(Config(repo, 1));

  SECTION("same lock directory: refused by the lock, before loading anything") {
    ServerConfig config = Config(repo, 1);
    config.port = first->port();
    config.lock_dir = first->lock_dir();
    ServerProcess second(config);
    const std::optional<int> code = second.WaitExit(seconds(30));
    INFO("second server's log:\n" << second.log());
    REQUIRE(code.has_value());
    CHECK(*code == 1);
    CHECK_THAT(second.log(),
               Contains("port " + std::to_string(first->port()) +
                        " is taken by another kiln-server (pid " + std::to_string(first->pid())));
  }
  SECTION("another lock directory: the port itself is not shared (no SO_REUSEPORT)") {
    ServerConfig config = Config(repo, 1);
    config.port = first->port();
    ServerProcess second(config);
    const std::optional<int> code = second.WaitExit(kStartup);
    INFO("second server's log:\n" << second.log());
    REQUIRE(code.has_value());
    CHECK(*code == 1);
    CHECK_THAT(second.log(),
               Contains("cannot listen on 127.0.0.1:" + std::to_string(first->port())));
  }

  auto channel = kiln::testing::ServingChannel(*first);
  HealthStub health(channel);
  Stub oip(channel);
  CHECK(first->IsRunning());
  CHECK(Health(health, "") == HealthCheckResponse::SERVING);
  const grpc::Status status = Infer(oip, MlpRequest(1), seconds(30));
  INFO(Describe(status));
  CHECK(status.ok());
}

// --- 7, 8. the process tree follows the master ------------------------------------------------

TEST_CASE("when the master is SIGKILLed the zygote and the workers die too",
          "[integration][server][signals]") {
  TempDir repo_dir;
  const std::string repo = kiln::testing::MakeRepository(repo_dir, {{"mlp", DemoConfig("mlp")}});
  auto server = StartServing(Config(repo, 2));
  const std::vector<ProcessId> tree = server->TreePids();
  INFO("tree: " << Pids(tree));
  // master, zygote, two workers, and a warm template where they run one intra-op thread each
  REQUIRE(tree.size() == 4 + server->TemplatePids().size());
  server->Signal(SIGKILL);
  const std::optional<int> code = server->WaitExit(seconds(5));
  REQUIRE(code.has_value());
  CHECK(*code == 128 + SIGKILL);
  const bool gone = PollUntil([&] { return AllGone(tree); }, seconds(5));
  INFO("after: " << Pids(tree));
  CHECK(gone);
}

// A client that opened an HTTP/2 connection (preface and SETTINGS sent) and then stays silent:
// it never reads, so it never acknowledges a GOAWAY or PING. Stands in for a stuck peer, or an
// idle gRPC client whose process is not polling the connection right now.
class SilentHttp2Client {
 public:
  explicit SilentHttp2Client(int port) {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<uint16_t>(port));
    REQUIRE(connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
    static const char kPreface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    static const char kEmptySettings[] = {0, 0, 0, 4, 0, 0, 0, 0, 0};
    std::string hello(kPreface, sizeof(kPreface) - 1);
    hello.append(kEmptySettings, sizeof(kEmptySettings));
    REQUIRE(send(fd_, hello.data(), hello.size(), MSG_NOSIGNAL) ==
            static_cast<ssize_t>(hello.size()));
  }
  ~SilentHttp2Client() { close(fd_); }
  SilentHttp2Client(const SilentHttp2Client&) = delete;
  SilentHttp2Client& operator=(const SilentHttp2Client&) = delete;

 private:
  int fd_ = -1;
};

TEST_CASE("SIGINT exits 130 at once and takes the tree with it", "[integration][server][signals]") {
  TempDir repo_dir;
  const std::string repo = kiln::testing::MakeRepository(repo_dir, {{"mlp", DemoConfig("mlp")}});
  auto server = StartServing(Config(repo, 2));
  const std::vector<ProcessId> tree = server->TreePids();
  INFO("tree: " << Pids(tree));
  // master, zygote, two workers, and a warm template where they run one intra-op thread each
  REQUIRE(tree.size() == 4 + server->TemplatePids().size());
  std::unique_ptr<SilentHttp2Client> client;
  SECTION("no client connected") {}
  SECTION("a client holds an idle connection") {
    // Regression: SIGINT once returned through ~grpc::Server, whose Shutdown() without a
    // deadline waits for every connected client to acknowledge the GOAWAY: a silent peer held
    // the "immediate" exit for ~20 s.
    client = std::make_unique<SilentHttp2Client>(server->port());
    // The server has taken the connection once it answers on another one.
    auto channel = kiln::testing::ServingChannel(*server);
    HealthStub health(channel);
    REQUIRE(Health(health, "") == HealthCheckResponse::SERVING);
  }
  const auto sent = std::chrono::steady_clock::now();
  server->Signal(SIGINT);
  const std::optional<int> code = server->WaitExit(seconds(30));
  const double exit_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - sent).count();
  INFO("log:\n" << server->log());
  INFO("master exited " << exit_s << " s after SIGINT");
  REQUIRE(code.has_value());
  CHECK(*code == 130);
  CHECK(exit_s < 3.0);
  const bool gone = PollUntil([&] { return AllGone(tree); }, seconds(3));
  INFO("after: " << Pids(tree));
  CHECK(gone);
}

// --- 9. deadlines ------------------------------------------------------------------------------

TEST_CASE(
    "a request whose deadline passes while it waits ends DEADLINE_EXCEEDED, is not "
    "computed, and the server keeps serving",
    "[integration][server][deadline]") {
  TempDir repo_dir;
  const std::string repo =
      kiln::testing::MakeRepository(repo_dir, {{"resnet50", DemoConfig("resnet50")}});
  auto server = StartServing(Config(repo, 1));
  const std::vector<pid_t> workers = server->WorkerPids();
  REQUIRE(workers.size() == 1);
  auto channel = kiln::testing::ServingChannel(*server);
  Stub oip(channel);
  {
    grpc::ClientContext context;
    inference::ServerLiveResponse live;
    REQUIRE(oip.ServerLive(&context, {}, &live).ok());
  }

  // Two long requests keep the only worker busy for a second or more.
  const inference::ModelInferRequest long_request = ResnetRequest("resnet50", 8);
  grpc::Status long_status[2];
  const double cpu_before = kiln::testing::CpuTimeMs(workers[0]);
  std::thread first([&] {
    Stub stub(channel);
    long_status[0] = Infer(stub, long_request, seconds(90));
  });
  struct Joiner {  // on a failed REQUIRE: kill the server so that pending calls end at once
    ServerProcess& server;
    std::thread& t;
    ~Joiner() {
      if (std::uncaught_exceptions() > 0) server.KillAll();
      if (t.joinable()) t.join();
    }
  } join_first{*server, first};
  REQUIRE(WaitWorkerComputing(workers[0], cpu_before, 100));
  std::thread second([&] {
    Stub stub(channel);
    long_status[1] = Infer(stub, long_request, seconds(90));
  });
  Joiner join_second{*server, second};

  // 1 ms: expires almost at once, wherever it is.
  const grpc::Status tiny = Infer(oip, long_request, milliseconds(1));
  INFO("1 ms request: " << Describe(tiny));
  CHECK(tiny.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED);
  // 300 ms: reaches the server and expires in the queue behind the long requests.
  const auto start = std::chrono::steady_clock::now();
  const grpc::Status queued = Infer(oip, long_request, milliseconds(300));
  const double queued_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  INFO("300 ms request: " << Describe(queued) << " after " << queued_s << " s");
  CHECK(queued.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED);
  CHECK(queued_s < 5);

  first.join();
  second.join();
  INFO("log:\n" << server->log());
  INFO("long requests: " << Describe(long_status[0]) << " / " << Describe(long_status[1]));
  CHECK(long_status[0].ok());
  CHECK(long_status[1].ok());

  // The expired batch-8 requests were dropped, not computed: a batch-1 request right after the
  // long ones costs far less CPU than one more batch of 8 would.
  const double cpu_after_long = kiln::testing::CpuTimeMs(workers[0]);
  const grpc::Status small = Infer(oip, ResnetRequest("resnet50", 1), seconds(30));
  INFO("batch-1 request: " << Describe(small));
  CHECK(small.ok());
  const double cpu_small = kiln::testing::CpuTimeMs(workers[0]) - cpu_after_long;
  const double cpu_long = (cpu_after_long - cpu_before) / 2;  // per batch of 8
  INFO("worker CPU: " << cpu_long << " ms per batch of 8, " << cpu_small
                      << " ms for the batch-1 request (and anything run before it)");
  CHECK(cpu_small < cpu_long / 2);

  HealthStub health(channel);
  CHECK(Health(health, "") == HealthCheckResponse::SERVING);
  CHECK(server->IsRunning());
}

}  // namespace
// --- readiness check --------------------------------------------------------------------------

TEST_CASE("the readiness check runs through the whole path before the port opens",
          "[integration][server][readiness]") {
  TempDir repo_dir;
  const std::string repo = kiln::testing::MakeRepository(repo_dir, {{"mlp", DemoConfig("mlp")}});
  auto server = StartServing(Config(repo, 1));
  const std::string log = server->log();
  INFO("log:\n" << log);
  // Sized by what it proves: the one worker's request at batch 1, and one at each other warmed
  // size of the demo mlp (kiln.pbtxt: 1, 2, 4, 8).
  const size_t check = log.find(
      "readiness check: mlp:1: 4 requests through the whole path on 1 of 1 workers (b1 x1, b2 x1, "
      "b4 x1, b8 x1)");
  // Then the port's own gRPC server is primed, one request for the one version, before health
  // says SERVING.
  const size_t primed = log.find(
      "startup: primed the port's request path: 1 request (one per served version, at its "
      "smallest warmed shape) through the port's own gRPC server, in process, while health said "
      "NOT_SERVING");
  const size_t ready = log.find("startup: ready: serving gRPC");
  REQUIRE(check != std::string::npos);
  REQUIRE(primed != std::string::npos);
  REQUIRE(ready != std::string::npos);
  CHECK(check < primed);
  CHECK(primed < ready);
  CHECK_THAT(log, Contains("passed"));
}

TEST_CASE("a cold path fails the readiness check: the port stays closed, exit 1 with the numbers",
          "[integration][server][readiness]") {
  TempDir repo_dir;
  // One intra-op thread: the allowance (1 ms per thread) stays well below a cold call's CPU time
  // (about 2 ms for mlp, whose steady calls cost 0.01 ms).
  const std::string repo = kiln::testing::MakeRepository(
      repo_dir, {{"mlp", kiln::testing::OneThreadConfig(DemoConfig("mlp"))}});
  // Every call runs on a copy of the model that has never run (TorchScript profiles and
  // optimises it again): the warmup's steady CPU time no longer holds.
  ServerConfig config = Config(repo, 1);
  config.extra_args = {"--test_only_cold_calls"};
  ServerProcess server(config);
  const std::optional<int> code = server.WaitExit(kStartup);
  const std::string log = server.log();
  INFO("log:\n" << log);
  REQUIRE(code.has_value());
  CHECK(*code == 1);
  CHECK(Count(log, "FAILED") == 3);  // every attempt, logged with its numbers
  CHECK_THAT(log, Contains("compute CPU median"));
  CHECK_THAT(log, Contains("the readiness check did not pass in 3 attempts"));
  CHECK(Count(log, "startup: ready") == 0);
}

}  // namespace kiln
