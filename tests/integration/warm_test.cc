// Integration tests of warmup's promises on the real kiln-server: text end to end through the
// tokenizer, the warmup report (kiln.KilnService), the memory budget, and traffic-shaped warmup
// across a restart. Each test starts its own server on a free loopback port; every wait is
// bounded and the ServerProcess destructor kills whatever a failed test leaves.
#include <catch2/catch.hpp>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "common/safetensors.h"
#include "common/sample_text.h"
#include "common/traffic_profile.h"
#include "proto/kiln_service.grpc.pb.h"
#include "tests/integration/server_process.h"
#include "tests/integration/server_test_util.h"
#include "tests/skip.h"
#include "tests/test_cgroup.h"
#include "tests/test_paths.h"

namespace kiln {
namespace {

using Catch::Matchers::Contains;
using kiln::testing::Config;
using kiln::testing::Count;
using kiln::testing::DemoConfig;
using kiln::testing::Describe;
using kiln::testing::Fp32Tensor;
using kiln::testing::Infer;
using kiln::testing::kStartup;
using kiln::testing::MaxAbsDiff;
using kiln::testing::MlpWithSettings;
using kiln::testing::ModelReport;
using kiln::testing::ModelsDir;
using kiln::testing::PollUntil;
using kiln::testing::ReadText;
using kiln::testing::Report;
using kiln::testing::ServerConfig;
using kiln::testing::ServerProcess;
using kiln::testing::StartServing;
using kiln::testing::Stub;
using kiln::testing::TempDir;
using std::chrono::seconds;

inference::ModelInferRequest TextRequest(const std::string& model,
                                         const std::vector<std::string>& texts) {
  inference::ModelInferRequest request;
  request.set_model_name(model);
  auto* input = request.add_inputs();
  input->set_name("text");
  input->set_datatype("BYTES");
  input->add_shape(static_cast<int64_t>(texts.size()));
  input->add_shape(1);
  for (const std::string& text : texts) input->mutable_contents()->add_bytes_contents(text);
  return request;
}

// --- text end to end ------------------------------------------------------------------------

TEST_CASE(
    "textcls answers text: PyTorch's reference logits, padded to a warmed length and batch, "
    "counted, and the warmup report says what warmed",
    "[integration][warm][text]") {
  TempDir repo_dir;
  const std::string repo =
      kiln::testing::MakeRepository(repo_dir, {{"textcls", DemoConfig("textcls")}});
  auto server = StartServing(Config(repo, 1));
  Stub oip(kiln::testing::ServingChannel(*server));

  // The reference texts (make_models.py tokenized them with spm_encode and padded them to the
  // longer one): batch 2, which warmup did not run (it warms 1 and 4), at a token length that
  // is not a warmed bucket (16, 32, 64, 128).
  absl::StatusOr<std::unique_ptr<MappedSafetensors>> reference =
      MappedSafetensors::Open(ModelsDir() + "/textcls/1/reference.safetensors");
  REQUIRE(reference.ok());
  const std::map<std::string, std::string>& metadata = (*reference)->index().metadata();
  REQUIRE(metadata.count("text.0") == 1);
  REQUIRE(metadata.count("text.1") == 1);
  const SafetensorsTensor* ids = (*reference)->index().Find("input.input_ids");
  REQUIRE(ids != nullptr);
  const int64_t reference_length = ids->shape[1];
  INFO("reference token length " << reference_length);
  CHECK(reference_length != 16);
  CHECK(reference_length != 32);

  inference::ModelInferResponse response;
  const grpc::Status status =
      Infer(oip, TextRequest("textcls", {metadata.at("text.0"), metadata.at("text.1")}), &response,
            seconds(30));
  INFO("status " << Describe(status));
  REQUIRE(status.ok());
  REQUIRE(response.outputs_size() == 1);
  CHECK(response.outputs(0).name() == "logits");
  CHECK(std::vector<int64_t>(response.outputs(0).shape().begin(),
                             response.outputs(0).shape().end()) == std::vector<int64_t>{2, 4});
  const SafetensorsTensor* logits = (*reference)->index().Find("output.logits");
  REQUIRE(logits != nullptr);
  CHECK(MaxAbsDiff(response.raw_output_contents(0), *logits) <= 1e-4);

  // Longer than max_length (128 tokens): truncated, served. Empty text: all padding, served.
  REQUIRE(Infer(oip, TextRequest("textcls", {SampleText(400)}), seconds(30)).ok());
  REQUIRE(Infer(oip, TextRequest("textcls", {""}), seconds(30)).ok());

  const WarmupReportResponse report = Report(*server);
  const ModelWarmupReport textcls = ModelReport(report, "textcls");
  // Three requests since the port opened (the readiness check's are not counted): the first
  // padded to a warmed length and to warmed batch 4, none cold.
  CHECK(textcls.counters().requests() == 3);
  CHECK(textcls.counters().padded_to_bucket() >= 1);
  CHECK(textcls.counters().padded_batch() == 1);
  CHECK(textcls.counters().cold_shape_hits() == 0);

  // Every configured shape (batch 1 and 4 x lengths 16..128) warmed on this worker, with its
  // numbers; the tokenizer warmed on sample texts.
  REQUIRE(textcls.workers_size() == 1);
  const internal::WarmupReport& worker = textcls.workers(0);
  CHECK(worker.shapes_size() == 8);
  for (const internal::ShapeWarmup& shape : worker.shapes()) {
    INFO("batch " << shape.batch_size() << " length " << shape.sequence_length());
    CHECK_FALSE(shape.refused());
    CHECK(shape.first_ms() > 0);
    CHECK(shape.steady_ms() > 0);
    // calls_per_shape (2) at least, 3 at the first shape (a new executor plan); its steady
    // latency is the settling pair.
    CHECK(shape.calls() >= (&shape == &worker.shapes(0) ? 3 : 2));
    CHECK(shape.peak_anon_bytes() > 0);
  }
  CHECK(worker.tokenizer_texts() > 0);
  CHECK(worker.tokenizer_steady_ms() > 0);
  CHECK(worker.baseline_anon_bytes() > 0);
  // The timeline: one entry per startup phase, the last one the port opening.
  REQUIRE(report.timeline_size() >= 5);
  CHECK_THAT(report.timeline(report.timeline_size() - 1).name(), Contains("ready: serving"));
  // The first phase is the process's own start, before main() (its libraries, LibTorch's among
  // them, loaded and initialised): the clock starts with the process, not with main().
  CHECK_THAT(report.timeline(0).name(), Contains("process started"));
  CHECK(report.timeline(0).duration_ms() > 0);
  CHECK(report.timeline(0).since_start_ms() == report.timeline(0).duration_ms());
  CHECK_THAT(report.timeline(2).name(), Contains("tokenizer"));
}

// --- the memory budget ----------------------------------------------------------------------

// The demo mlp with a memory budget per worker, in its kiln.pbtxt.
kiln::testing::TestModel MlpWithBudget(int64_t limit_bytes) {
  return MlpWithSettings(kiln::testing::DemoSettings("mlp") +
                         "\nmemory { limit_bytes: " + std::to_string(limit_bytes) + " }\n");
}

// A repository of the one model `mlp`.
std::string MlpRepository(const TempDir& dir, const kiln::testing::TestModel& mlp) {
  return kiln::testing::MakeRepository(
      dir, std::map<std::string, kiln::testing::TestModel>{{"mlp", mlp}});
}

TEST_CASE(
    "a memory budget refuses shapes projected over it and splits a large batch into warm "
    "passes without killing the worker, and a budget nothing fits fails startup with the numbers",
    "[integration][warm][memory]") {
  // Steps 1 and 2 compare one worker's warmup with another's, so each worker warms by itself
  // here (a warm template's first passes, on a module that never ran, peak higher).
  auto config = [](const std::string& repo) {
    ServerConfig config = Config(repo, 1);
    config.extra_args = {"--warm_template=off"};
    return config;
  };
  // 1. Without a budget: the worker's resident memory before warmup and at batch 1.
  int64_t baseline = 0, peak1 = 0;
  {
    TempDir repo_dir;
    const std::string repo = kiln::testing::MakeRepository(repo_dir, {{"mlp", DemoConfig("mlp")}});
    auto server = StartServing(config(repo));
    const ModelWarmupReport report = ModelReport(Report(*server), "mlp");
    REQUIRE(report.workers_size() == 1);
    const internal::WarmupReport& worker = report.workers(0);
    baseline = worker.baseline_anon_bytes();
    REQUIRE(worker.shapes_size() > 1);
    REQUIRE(worker.shapes(0).batch_size() == 1);
    peak1 = worker.shapes(0).peak_anon_bytes();
  }
  INFO("baseline " << baseline << " B, peak at batch 1 " << peak1 << " B");
  REQUIRE(peak1 > baseline);
  const int64_t slope = peak1 - baseline;  // the model's conservative bytes per extra row

  // 2. A budget between batch 1's peak and batch 2's projection: batch 1 warms, the rest is
  //    refused; batch 8 is served in 8 warm passes of 1 row, with the right numbers.
  {
    TempDir repo_dir;
    const std::string repo = MlpRepository(repo_dir, MlpWithBudget(peak1 + slope / 2));
    auto server = StartServing(config(repo));
    const std::vector<pid_t> workers = server->WorkerPids();
    REQUIRE(workers.size() == 1);
    const ModelWarmupReport before = ModelReport(Report(*server), "mlp");
    CHECK(before.worker_budget_bytes() == peak1 + slope / 2);
    REQUIRE(before.workers_size() == 1);
    const internal::WarmupReport& worker = before.workers(0);
    for (const internal::ShapeWarmup& shape : worker.shapes()) {
      INFO("batch " << shape.batch_size() << ", projected " << shape.projected_peak_bytes());
      CHECK(shape.refused() == (shape.batch_size() > 1));
      if (shape.batch_size() > 1) CHECK(shape.calls() == 0);  // never run
    }
    CHECK_THAT(server->log(), Contains("REFUSED"));

    Stub oip(kiln::testing::ServingChannel(*server));
    const Tensor eight = Fp32Tensor("input", {8, 16});
    inference::ModelInferResponse batched;
    const grpc::Status status =
        Infer(oip, kiln::testing::MakeInferRequest("mlp", {eight.view()}), &batched, seconds(30));
    INFO("batch 8: " << Describe(status));
    REQUIRE(status.ok());
    // Row by row, the same numbers.
    const size_t row_bytes = eight.bytes.size() / 8;
    for (int row = 0; row < 8; ++row) {
      TensorView one = eight.view();
      one.shape = {1, 16};
      one.data = eight.bytes.data() + row * row_bytes;
      one.nbytes = row_bytes;
      inference::ModelInferResponse single;
      REQUIRE(Infer(oip, kiln::testing::MakeInferRequest("mlp", {one}), &single, seconds(30)).ok());
      const std::string& all = batched.raw_output_contents(0);
      const size_t out_row = all.size() / 8;
      CHECK(all.substr(row * out_row, out_row) == single.raw_output_contents(0));
    }
    const ModelWarmupReport after = ModelReport(Report(*server), "mlp");
    CHECK(after.counters().split() == 1);
    CHECK(after.counters().cold_shape_hits() == 0);
    CHECK(server->WorkerPids() == workers);  // nobody was killed
  }

  // 3. A budget below batch 1's peak (but above the worker's baseline): batch 1 runs once in
  //    warmup and is measured over; with no shape left to serve, startup fails with the numbers
  //    rather than come up answering only errors. (Here the warm template finds it, and the
  //    worker it could not fork carries its numbers.)
  {
    TempDir repo_dir;
    const std::string repo = MlpRepository(repo_dir, MlpWithBudget(baseline + slope / 2));
    ServerProcess server(Config(repo, 1));
    const std::optional<int> code = server.WaitExit(kStartup);
    REQUIRE(code.has_value());
    CHECK(*code == 1);
    CHECK_THAT(server.log(), Contains("no warmup shape fits the worker's memory budget"));
  }
}

// Sets `model`'s worker count over kiln.KilnService.
grpc::Status SetWorkerCount(const ServerProcess& server, const std::string& model, int workers) {
  auto stub = KilnService::NewStub(kiln::testing::ServingChannel(server));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + seconds(10));
  SetWorkerCountRequest request;
  request.set_model(model);
  request.set_workers(workers);
  SetWorkerCountResponse response;
  return stub->SetWorkerCount(&context, request, &response);
}

TEST_CASE(
    "in a real memory cgroup, workers are admitted by the cgroup's working set and their measured "
    "private peak, and a count past the limit is refused with the numbers",
    "[integration][warm][memory][cgroup]") {
  absl::StatusOr<std::unique_ptr<testing::TestCgroup>> cgroup =
      testing::TestCgroup::CreateMemory(750'000'000);
  if (!cgroup.ok()) KILN_SKIP(cgroup.status().message());
  TempDir repo_dir;
  const std::string repo =
      kiln::testing::MakeRepository(repo_dir, {{"resnet18", DemoConfig("resnet18")}});
  ServerConfig config = Config(repo, 4);
  config.launcher = InCgroup((*cgroup)->dir(), {});
  auto server = StartServing(config);
  INFO("log:\n" << server->log());
  CHECK_THAT(server->log(), Contains("memory: 750.0 MB from cgroup " + (*cgroup)->limit_file()));
  const ModelWarmupReport before = ModelReport(Report(*server), "resnet18");
  REQUIRE(before.workers_size() == 4);
  int64_t private_peak = 0;
  for (const internal::WarmupReport& worker : before.workers()) {
    CHECK(worker.private_peak_bytes() > 0);
    private_peak = std::max(private_peak, worker.private_peak_bytes());
  }
  // A fifth worker is admitted on the private peak its peers measured.
  REQUIRE(private_peak < 100'000'000);
  REQUIRE(SetWorkerCount(*server, "resnet18", 5).ok());
  if (!PollUntil([&] { return Count(server->log(), "): warm in") == 5; }, kStartup)) {
    FAIL("no fifth worker");
  }
  const grpc::Status refused = SetWorkerCount(*server, "resnet18", 50);
  INFO(Describe(refused));
  CHECK(refused.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED);
  CHECK_THAT(refused.error_message(),
             Contains("no memory for 45 more worker(s) of 'resnet18:1'") &&
                 Contains("in use (the cgroup's working set, " + (*cgroup)->dir()) &&
                 Contains("45 x ") && Contains("over the 750.0 MB limit"));
  CHECK(ModelReport(Report(*server), "resnet18").workers_size() == 5);  // nothing started
  Stub oip(kiln::testing::ServingChannel(*server));
  CHECK(Infer(oip, kiln::testing::ResnetRequest("resnet18", 1), seconds(30)).ok());
  // The kernel never had to kill anything.
  const std::string oom = ReadText((*cgroup)->dir() + "/memory.oom_control");
  if (oom.find("oom_kill ") != std::string::npos) CHECK_THAT(oom, Contains("oom_kill 0"));
  server.reset();  // before the cgroup is removed
}

TEST_CASE("the master refuses to fork a worker whose budget does not fit in memory",
          "[integration][warm][memory]") {
  TempDir repo_dir;
  // 1 PB per worker: no machine has it.
  const std::string repo = MlpRepository(repo_dir, MlpWithBudget(int64_t{1} << 50));
  ServerProcess server(Config(repo, 1));
  const std::optional<int> code = server.WaitExit(kStartup);
  REQUIRE(code.has_value());
  CHECK(*code == 1);
  CHECK_THAT(server.log(), Contains("no memory for 1 more worker(s) of 'mlp:1'") &&
                               Contains("its memory budget: no worker of the model measured yet"));
}

// --- traffic-shaped warmup ------------------------------------------------------------------

TEST_CASE(
    "served shapes are recorded in --state_dir and warmed by the next start, which then has no "
    "cold-shape hits",
    "[integration][warm][traffic]") {
  TempDir repo_dir, state;
  // Warm only batch 1 and do not pad, so batch 3 is a cold shape the first time.
  const std::string repo = MlpRepository(
      repo_dir, MlpWithSettings("warmup { batch_sizes: [1] pad_to_warmed: false }\n"));
  auto config = Config(repo, 1);
  config.extra_args = {"--state_dir=" + state.path(), "--record_samples=2"};
  const Tensor three = Fp32Tensor("input", {3, 16});
  const auto request = kiln::testing::MakeInferRequest("mlp", {three.view()});
  {
    auto server = StartServing(config);
    Stub oip(kiln::testing::ServingChannel(*server));
    for (int i = 0; i < 5; ++i) REQUIRE(Infer(oip, request, seconds(30)).ok());
    CHECK(ModelReport(Report(*server), "mlp").counters().cold_shape_hits() == 5);
    server->Signal(SIGTERM);  // the drain saves the profile
    REQUIRE(server->WaitExit(seconds(30)) == std::optional<int>(0));
  }
  absl::StatusOr<TrafficProfile> profile =
      LoadTrafficProfile(TrafficProfilePath(state.path(), "mlp"));
  REQUIRE(profile.ok());
  REQUIRE(profile->shapes_size() == 1);  // the readiness check's requests are not traffic
  CHECK(profile->shapes(0).batch_size() == 3);
  CHECK(profile->shapes(0).requests() == 5);
  CHECK(std::filesystem::exists(TrafficSamplesPath(state.path(), "mlp")));

  auto server = StartServing(config);
  const ModelWarmupReport report = ModelReport(Report(*server), "mlp");
  REQUIRE(report.replayed_size() == 1);
  CHECK(report.replayed(0).batch_size() == 3);
  REQUIRE(report.workers_size() == 1);
  bool warmed_three = false;
  for (const internal::ShapeWarmup& shape : report.workers(0).shapes()) {
    // Batch 3 on the recorded request of batch 3; batch 1 on generated data.
    CHECK(shape.recorded_request() == (shape.batch_size() == 3));
    warmed_three = warmed_three || (shape.batch_size() == 3 && shape.calls() > 0);
  }
  CHECK(warmed_three);
  CHECK_THAT(server->log(), Contains("replays 1 recorded shape(s) and 1 recorded request(s)"));
  Stub oip(kiln::testing::ServingChannel(*server));
  REQUIRE(Infer(oip, request, seconds(30)).ok());
  CHECK(ModelReport(Report(*server), "mlp").counters().cold_shape_hits() == 0);
}

TEST_CASE(
    "a text request kept with --record_samples is saved as its texts, and the next start warms "
    "the length it ran at on them",
    "[integration][warm][traffic][text]") {
  TempDir repo_dir, state;
  const std::string repo =
      kiln::testing::MakeRepository(repo_dir, {{"textcls", DemoConfig("textcls")}});
  auto config = Config(repo, 1);
  config.extra_args = {"--state_dir=" + state.path(), "--record_samples=4"};
  const std::vector<std::string> texts = {SampleText(40), "a short one"};
  {
    auto server = StartServing(config);
    Stub oip(kiln::testing::ServingChannel(*server));
    REQUIRE(Infer(oip, TextRequest("textcls", texts), seconds(30)).ok());
    server->Signal(SIGTERM);  // the drain saves the profile and the samples
    REQUIRE(server->WaitExit(seconds(30)) == std::optional<int>(0));
  }
  absl::StatusOr<TrafficProfile> profile =
      LoadTrafficProfile(TrafficProfilePath(state.path(), "textcls"));
  REQUIRE(profile.ok());
  REQUIRE(profile->shapes_size() == 1);
  const int32_t length = profile->shapes(0).sequence_length();
  INFO("the request ran at length " << length);
  absl::StatusOr<std::vector<std::vector<Tensor>>> samples =
      LoadTrafficSamples(TrafficSamplesPath(state.path(), "textcls"));
  REQUIRE(samples.ok());
  REQUIRE(samples->size() == 1);
  absl::StatusOr<std::optional<std::vector<std::string>>> kept =
      TextSampleTexts(samples->front(), "text");
  REQUIRE(kept.ok());
  REQUIRE(kept->has_value());
  CHECK(**kept == texts);

  auto server = StartServing(config);
  CHECK_THAT(server->log(), Contains("and 1 recorded request(s)"));
  const ModelWarmupReport report = ModelReport(Report(*server), "textcls");
  REQUIRE(report.workers_size() == 1);
  int on_recorded = 0;
  for (const internal::ShapeWarmup& shape : report.workers(0).shapes()) {
    INFO("batch " << shape.batch_size() << " length " << shape.sequence_length());
    CHECK(shape.recorded_request() == (shape.sequence_length() == length));
    on_recorded += shape.recorded_request() && shape.calls() > 0;
  }
  CHECK(on_recorded >= 1);
  CHECK_THAT(server->log(), Contains("on a recorded request"));
}

}  // namespace
}  // namespace kiln
