#include "common/traffic_profile.h"

#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "common/safetensors_writer.h"
#include "tests/tensor_values.h"
#include "tests/test_paths.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;
using ::kiln::testing::MakeTensor;
using ::kiln::testing::TempDir;

// (batch, sequence, requests) of each listed shape, in the profile's order.
std::vector<std::tuple<int32_t, int32_t, int64_t>> Counts(const TrafficProfile& profile) {
  std::vector<std::tuple<int32_t, int32_t, int64_t>> counts;
  for (const ShapeCount& shape : profile.shapes()) {
    counts.emplace_back(shape.batch_size(), shape.sequence_length(), shape.requests());
  }
  return counts;
}

int64_t TotalRequests(const TrafficProfile& profile) {
  int64_t total = profile.other_requests();
  for (const ShapeCount& shape : profile.shapes()) total += shape.requests();
  return total;
}

std::set<std::string> FileNames(const std::string& dir) {
  std::set<std::string> names;
  for (const fs::directory_entry& entry : fs::directory_iterator(dir)) {
    names.insert(entry.path().filename().string());
  }
  return names;
}

TEST_CASE("Record counts shapes per model and Snapshot lists them most requested first",
          "[traffic]") {
  TrafficRecorder recorder;
  for (int i = 0; i < 3; ++i) recorder.Record("bert", {1, 128});
  for (int i = 0; i < 5; ++i) recorder.Record("bert", {4, 64});
  recorder.Record("bert", {2, 0});
  recorder.Record("mlp", {8, 0});
  recorder.Record("bert", {0, 16});  // ignored: no batch
  recorder.Record("bert", {1, -1});  // ignored: negative length

  const TrafficProfile bert = recorder.Snapshot("bert");
  CHECK(bert.model() == "bert");
  CHECK(bert.updated_unix_ms() > 0);
  using Row = std::tuple<int32_t, int32_t, int64_t>;
  CHECK(Counts(bert) == std::vector<Row>{{4, 64, 5}, {1, 128, 3}, {2, 0, 1}});
  CHECK(bert.other_requests() == 0);
  CHECK(Counts(recorder.Snapshot("mlp")) == std::vector<Row>{{8, 0, 1}});
  const TrafficProfile unknown = recorder.Snapshot("nope");
  CHECK(unknown.model() == "nope");
  CHECK(unknown.shapes().empty());
}

TEST_CASE("Record from several threads loses no request", "[traffic]") {
  TrafficRecorder recorder;
  constexpr int kThreads = 8;
  constexpr int kPerThread = 20000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&recorder, t] {
      for (int i = 0; i < kPerThread; ++i) {
        recorder.Record(t % 2 == 0 ? "even" : "odd", {1 + i % 4, 16 * (t % 3)});
      }
    });
  }
  for (std::thread& thread : threads) thread.join();

  const TrafficProfile even = recorder.Snapshot("even");
  const TrafficProfile odd = recorder.Snapshot("odd");
  CHECK(TotalRequests(even) == int64_t{kThreads / 2} * kPerThread);
  CHECK(TotalRequests(odd) == int64_t{kThreads / 2} * kPerThread);
  // Thread t records batches 1..4 evenly, with length 16 * (t % 3): "even" is t = 0, 2, 4, 6
  // (lengths 0, 32, 16, 0), so (1, 0) holds threads 0 and 6: 2 * kPerThread / 4.
  for (const ShapeCount& shape : even.shapes()) {
    if (shape.batch_size() == 1 && shape.sequence_length() == 0) {
      CHECK(shape.requests() == 2 * kPerThread / 4);
    }
  }
  CHECK(even.shapes_size() == 4 * 3);
}

TEST_CASE("Record keeps at most kMaxShapesPerModel shapes and counts the rest as other",
          "[traffic]") {
  TrafficRecorder recorder;
  for (int i = 0; i < kMaxShapesPerModel; ++i) recorder.Record("m", {1, i});
  for (int i = 0; i < 10; ++i) recorder.Record("m", {2, 1000 + i});  // 10 new shapes: no room
  recorder.Record("m", {1, 0});  // a known shape still counts as itself

  const TrafficProfile profile = recorder.Snapshot("m");
  CHECK(profile.shapes_size() == kMaxShapesPerModel);
  CHECK(profile.other_requests() == 10);
  CHECK(profile.shapes(0).batch_size() == 1);
  CHECK(profile.shapes(0).sequence_length() == 0);
  CHECK(profile.shapes(0).requests() == 2);
  for (const ShapeCount& shape : profile.shapes()) CHECK(shape.batch_size() == 1);
}

TEST_CASE("Save writes a profile that LoadTrafficProfile reads back", "[traffic]") {
  TempDir tmp;
  const std::string state_dir = tmp.path() + "/state/nested";  // created by Save
  TrafficRecorder recorder;
  for (int i = 0; i < 7; ++i) recorder.Record("bert", {4, 64});
  recorder.Record("bert", {1, 128});
  recorder.Record("mlp", {8, 0});
  REQUIRE(recorder.Save(state_dir).ok());

  const std::string path = TrafficProfilePath(state_dir, "bert");
  CHECK(path == state_dir + "/bert.traffic.pbtxt");
  absl::StatusOr<TrafficProfile> loaded = LoadTrafficProfile(path);
  REQUIRE(loaded.ok());
  CHECK(loaded->model() == "bert");
  CHECK(loaded->updated_unix_ms() > 0);
  using Row = std::tuple<int32_t, int32_t, int64_t>;
  CHECK(Counts(*loaded) == std::vector<Row>{{4, 64, 7}, {1, 128, 1}});
  absl::StatusOr<TrafficProfile> mlp = LoadTrafficProfile(TrafficProfilePath(state_dir, "mlp"));
  REQUIRE(mlp.ok());
  CHECK(Counts(*mlp) == std::vector<Row>{{8, 0, 1}});
  // Sampling is off: no samples file.
  CHECK(FileNames(state_dir) == std::set<std::string>{"bert.traffic.pbtxt", "mlp.traffic.pbtxt"});
}

TEST_CASE("profiles accumulate across saves and restarts without counting twice", "[traffic]") {
  TempDir tmp;
  const std::string path = TrafficProfilePath(tmp.path(), "m");
  using Row = std::tuple<int32_t, int32_t, int64_t>;
  {
    TrafficRecorder first_run;
    for (int i = 0; i < 3; ++i) first_run.Record("m", {1, 16});
    REQUIRE(first_run.Save(tmp.path()).ok());
    // Saving again with nothing new changes nothing.
    REQUIRE(first_run.Save(tmp.path()).ok());
    CHECK(Counts(*LoadTrafficProfile(path)) == std::vector<Row>{{1, 16, 3}});
    // Only what was recorded since the last save is added.
    first_run.Record("m", {1, 16});
    REQUIRE(first_run.Save(tmp.path()).ok());
    CHECK(Counts(*LoadTrafficProfile(path)) == std::vector<Row>{{1, 16, 4}});
    CHECK(Counts(first_run.Snapshot("m")) == std::vector<Row>{{1, 16, 4}});
  }
  TrafficRecorder second_run;  // a restart
  for (int i = 0; i < 5; ++i) second_run.Record("m", {2, 32});
  second_run.Record("m", {1, 16});
  REQUIRE(second_run.Save(tmp.path()).ok());
  CHECK(Counts(*LoadTrafficProfile(path)) == std::vector<Row>{{1, 16, 5}, {2, 32, 5}});
}

TEST_CASE("Save keeps the most requested shapes when the merge exceeds the bound", "[traffic]") {
  TempDir tmp;
  {
    TrafficRecorder first_run;
    for (int i = 0; i < kMaxShapesPerModel; ++i) {
      for (int n = 0; n < 2; ++n) first_run.Record("m", {1, i});
    }
    REQUIRE(first_run.Save(tmp.path()).ok());
  }
  TrafficRecorder second_run;
  for (int i = 0; i < 4; ++i) {
    for (int n = 0; n < 3; ++n) second_run.Record("m", {2, i});
  }
  REQUIRE(second_run.Save(tmp.path()).ok());
  absl::StatusOr<TrafficProfile> merged = LoadTrafficProfile(TrafficProfilePath(tmp.path(), "m"));
  REQUIRE(merged.ok());
  REQUIRE(merged->shapes_size() == kMaxShapesPerModel);
  // The 4 new shapes (3 requests) lead; of the old ones (2 requests) the 4 with the longest
  // sequences lose the tie-break and are folded into other_requests.
  for (int i = 0; i < 4; ++i) CHECK(merged->shapes(i).batch_size() == 2);
  CHECK(merged->other_requests() == 4 * 2);
  CHECK(merged->shapes(kMaxShapesPerModel - 1).sequence_length() == kMaxShapesPerModel - 5);
  CHECK(TotalRequests(*merged) == kMaxShapesPerModel * 2 + 4 * 3);
}

TEST_CASE("Save replaces files atomically and leaves no temp file behind", "[traffic]") {
  TempDir tmp;
  TrafficRecorder recorder(/*max_samples_per_model=*/2);
  recorder.Record("m", {1, 0});
  const Tensor x = MakeTensor<float>("x", DType::kFloat32, {1, 2}, {1, 2});
  recorder.RecordSample("m", {x.view()});
  REQUIRE(recorder.Save(tmp.path()).ok());
  recorder.Record("m", {1, 0});
  REQUIRE(recorder.Save(tmp.path()).ok());
  CHECK(FileNames(tmp.path()) == std::set<std::string>{"m.traffic.pbtxt", "m.samples.safetensors"});

  SECTION("a failed replace keeps the old file and removes its temp file") {
    // A directory where the profile should be: the rename fails.
    TrafficRecorder other;
    other.Record("blocked", {1, 0});
    fs::create_directory(TrafficProfilePath(tmp.path(), "blocked"));
    const absl::Status status = other.Save(tmp.path());
    REQUIRE_FALSE(status.ok());
    CHECK(absl::StrContains(status.message(), TrafficProfilePath(tmp.path(), "blocked")));
    for (const std::string& name : FileNames(tmp.path())) {
      INFO(name);
      CHECK_FALSE(absl::StrContains(name, ".tmp"));
    }
  }
}

TEST_CASE(
    "Save and the loaders refuse a symbolic link planted in the state directory and write "
    "nothing through it",
    "[traffic]") {
  TempDir tmp, elsewhere;
  const std::string victim = elsewhere.WriteFile("precious", "do not overwrite me\n");
  const std::string missing = elsewhere.path() + "/created-through-a-link";
  TrafficRecorder recorder(/*max_samples_per_model=*/1);
  recorder.Record("m", {1, 0});
  recorder.Record("d", {1, 0});
  const Tensor x = MakeTensor<float>("x", DType::kFloat32, {1, 2}, {1, 2});
  recorder.RecordSample("m", {x.view()});
  REQUIRE(symlink(victim.c_str(), TrafficProfilePath(tmp.path(), "m").c_str()) == 0);
  REQUIRE(symlink(missing.c_str(), TrafficProfilePath(tmp.path(), "d").c_str()) == 0);
  const absl::Status status = recorder.Save(tmp.path());
  REQUIRE_FALSE(status.ok());
  CHECK(absl::StrContains(status.message(), "is a symbolic link"));
  std::ifstream in(victim);
  std::string contents((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CHECK(contents == "do not overwrite me\n");
  CHECK_FALSE(fs::exists(missing));  // a dangling link is not followed either
  const absl::StatusOr<TrafficProfile> loaded =
      LoadTrafficProfile(TrafficProfilePath(tmp.path(), "m"));
  CHECK(absl::StrContains(loaded.status().message(), "is a symbolic link"));
}

TEST_CASE("Save into a directory it cannot create names the directory", "[traffic]") {
  TempDir tmp;
  const std::string file = tmp.WriteFile("plain-file", "not a directory");
  const std::string state_dir = file + "/state";
  TrafficRecorder recorder;
  CHECK(recorder.Save(state_dir).ok());  // nothing recorded: nothing to write
  recorder.Record("m", {1, 0});
  const absl::Status status = recorder.Save(state_dir);
  REQUIRE_FALSE(status.ok());
  CHECK(absl::StrContains(status.message(), state_dir));
}

TEST_CASE("Save refuses a model name that would leave the state directory", "[traffic]") {
  TempDir tmp;
  const std::string state_dir = tmp.path() + "/state";
  TrafficRecorder recorder;
  recorder.Record("../escape", {1, 0});
  recorder.Record("good", {1, 0});
  const absl::Status status = recorder.Save(state_dir);
  REQUIRE_FALSE(status.ok());
  CHECK(absl::StrContains(status.message(), "../escape"));
  // The other model is saved anyway, and nothing was written outside the state directory.
  CHECK(LoadTrafficProfile(TrafficProfilePath(state_dir, "good")).ok());
  CHECK(FileNames(tmp.path()) == std::set<std::string>{"state"});
}

TEST_CASE("a malformed profile is an error naming the file and line", "[traffic]") {
  TempDir tmp;
  SECTION("syntax") {
    const std::string path =
        tmp.WriteFile("m.traffic.pbtxt",
                      "model: \"m\"\nshapes { batch_size: 1 requests: 3 }\nshapes { bogus: 2 }\n");
    absl::StatusOr<TrafficProfile> profile = LoadTrafficProfile(path);
    REQUIRE_FALSE(profile.ok());
    INFO(profile.status().message());
    CHECK(absl::StrContains(profile.status().message(), path + ":3:"));
    CHECK(absl::StrContains(profile.status().message(), "bogus"));
  }
  SECTION("values") {
    const std::string path = tmp.WriteFile("m.traffic.pbtxt",
                                           "model: \"m\"\n"
                                           "shapes { batch_size: 1 requests: 3 }\n"
                                           "shapes {\n"
                                           "  batch_size: 0\n"
                                           "  requests: 1\n"
                                           "}\n"
                                           "shapes { batch_size: 1 requests: 4 }\n");
    absl::StatusOr<TrafficProfile> profile = LoadTrafficProfile(path);
    REQUIRE_FALSE(profile.ok());
    const std::string message(profile.status().message());
    INFO(message);
    CHECK(absl::StrContains(message, path + ":4:3: field 'shapes[1].batch_size'"));
    CHECK(absl::StrContains(message, path + ":7:10: field 'shapes[2]'"));
    CHECK(absl::StrContains(message, "again (as in shapes[0])"));
  }
  SECTION("a missing file names it") {
    absl::StatusOr<TrafficProfile> profile = LoadTrafficProfile(tmp.path() + "/absent.pbtxt");
    REQUIRE_FALSE(profile.ok());
    CHECK(absl::IsNotFound(profile.status()));
    CHECK(absl::StrContains(profile.status().message(), tmp.path() + "/absent.pbtxt"));
  }
  SECTION("Save does not overwrite it, and keeps the counts for a later save") {
    const std::string path = tmp.WriteFile("m.traffic.pbtxt", "shapes { batch_size: -2 }\n");
    TrafficRecorder recorder;
    recorder.Record("m", {1, 8});
    const absl::Status status = recorder.Save(tmp.path());
    REQUIRE_FALSE(status.ok());
    CHECK(absl::StrContains(status.message(), path + ":1:"));
    fs::remove(path);
    REQUIRE(recorder.Save(tmp.path()).ok());
    absl::StatusOr<TrafficProfile> profile = LoadTrafficProfile(path);
    REQUIRE(profile.ok());
    REQUIRE(profile->shapes_size() == 1);
    CHECK(profile->shapes(0).requests() == 1);
  }
}

void CheckSameTensors(const std::vector<Tensor>& got, const std::vector<Tensor>& want) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    INFO(want[i].name);
    CHECK(got[i].name == want[i].name);
    CHECK(got[i].dtype == want[i].dtype);
    CHECK(got[i].shape == want[i].shape);
    CHECK(got[i].bytes == want[i].bytes);
  }
}

TEST_CASE("samples are bounded, distinct, and round-trip through the samples file", "[traffic]") {
  TempDir tmp;
  TrafficRecorder recorder(/*max_samples_per_model=*/2);
  // Inputs in request order, deliberately not alphabetical; names with dots survive.
  const Tensor ids = MakeTensor<int64_t>("input_ids", DType::kInt64, {1, 3}, {101, 7, 102});
  const Tensor mask = MakeTensor<int64_t>("attention.mask", DType::kInt64, {1, 3}, {1, 1, 1});
  const Tensor ids_again = MakeTensor<int64_t>("input_ids", DType::kInt64, {1, 3}, {101, 9, 102});
  const Tensor long_ids = MakeTensor<int64_t>("input_ids", DType::kInt64, {1, 4}, {101, 5, 6, 102});
  const Tensor long_mask =
      MakeTensor<int64_t>("attention.mask", DType::kInt64, {1, 4}, {1, 1, 1, 0});
  const Tensor third = MakeTensor<int64_t>("input_ids", DType::kInt64, {2, 1}, {1, 2});

  recorder.RecordSample("bert", {ids.view(), mask.view()});
  recorder.RecordSample("bert", {ids_again.view(), mask.view()});  // same signature: dropped
  recorder.RecordSample("bert", {long_ids.view(), long_mask.view()});
  recorder.RecordSample("bert", {third.view()});  // full: dropped
  Tensor too_big;
  too_big.name = "x";
  too_big.dtype = DType::kUInt8;
  too_big.shape = {static_cast<int64_t>(kMaxSampleBytes) + 1};
  too_big.bytes.resize(kMaxSampleBytes + 1);
  recorder.RecordSample("mlp", {too_big.view()});  // over kMaxSampleBytes: dropped
  TensorView lying = ids.view();
  lying.nbytes = 8;  // does not hold [1, 3] int64
  recorder.RecordSample("mlp", {lying});

  const std::vector<std::vector<Tensor>> kept = recorder.Samples("bert");
  REQUIRE(kept.size() == 2);
  CheckSameTensors(kept[0], {ids, mask});
  CheckSameTensors(kept[1], {long_ids, long_mask});
  CHECK(recorder.Samples("mlp").empty());

  recorder.Record("bert", {1, 3});
  REQUIRE(recorder.Save(tmp.path()).ok());
  CHECK_FALSE(fs::exists(TrafficSamplesPath(tmp.path(), "mlp")));
  const std::string path = TrafficSamplesPath(tmp.path(), "bert");
  CHECK(path == tmp.path() + "/bert.samples.safetensors");
  absl::StatusOr<std::vector<std::vector<Tensor>>> loaded = LoadTrafficSamples(path);
  REQUIRE(loaded.ok());
  REQUIRE(loaded->size() == 2);
  CheckSameTensors((*loaded)[0], {ids, mask});
  CheckSameTensors((*loaded)[1], {long_ids, long_mask});
}

TEST_CASE("text requests are kept as their texts, one per shape they ran as, and round-trip",
          "[traffic][text]") {
  TempDir tmp;
  TrafficRecorder recorder(/*max_samples_per_model=*/3);
  const std::vector<std::string> first = {"the first text", ""};
  recorder.RecordTextSample("textcls", "text", first, {2, 16});
  recorder.RecordTextSample("textcls", "text", {"same shape, other text"}, {2, 16});  // dropped
  recorder.RecordTextSample("textcls", "text", {"longer"}, {1, 64});
  recorder.RecordTextSample("textcls", "text", {}, {1, 32});  // nothing to keep
  recorder.RecordTextSample("textcls", "text", {std::string(kMaxSampleBytes, 'x')}, {1, 128});
  // A numeric sample of the same model counts against the same bound.
  const Tensor ids = MakeTensor<int64_t>("input_ids", DType::kInt64, {1, 2}, {5, 6});
  recorder.RecordSample("textcls", {ids.view()});
  recorder.RecordTextSample("textcls", "text", {"full"}, {4, 128});  // full: dropped

  const std::vector<std::vector<Tensor>> kept = recorder.Samples("textcls");
  REQUIRE(kept.size() == 3);
  CheckSameTensors(kept[0], {TextSampleTensor("text", first)});
  CheckSameTensors(kept[1], {TextSampleTensor("text", {"longer"})});
  CheckSameTensors(kept[2], {ids});

  recorder.Record("textcls", {2, 16});
  REQUIRE(recorder.Save(tmp.path()).ok());
  absl::StatusOr<std::vector<std::vector<Tensor>>> loaded =
      LoadTrafficSamples(TrafficSamplesPath(tmp.path(), "textcls"));
  REQUIRE(loaded.ok());
  REQUIRE(loaded->size() == 3);
  absl::StatusOr<std::optional<std::vector<std::string>>> texts =
      TextSampleTexts((*loaded)[0], "text");
  REQUIRE(texts.ok());
  REQUIRE(texts->has_value());
  CHECK(**texts == first);
  texts = TextSampleTexts((*loaded)[1], "text");
  REQUIRE(texts.ok());
  CHECK(texts->value() == std::vector<std::string>{"longer"});
  // Not text requests of a model whose text input is "text": nullopt.
  CHECK_FALSE(TextSampleTexts((*loaded)[2], "text")->has_value());
  CHECK_FALSE(TextSampleTexts((*loaded)[0], "prompt")->has_value());
}

TEST_CASE("a text request whose bytes are not the BYTES form is InvalidArgument",
          "[traffic][text]") {
  Tensor broken = TextSampleTensor("text", {"abc"});
  broken.bytes.pop_back();
  broken.shape = {static_cast<int64_t>(broken.bytes.size())};
  absl::StatusOr<std::optional<std::vector<std::string>>> texts = TextSampleTexts({broken}, "text");
  REQUIRE_FALSE(texts.ok());
  CHECK(texts.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK(absl::StrContains(texts.status().message(), "recorded text request 'text'"));
  CHECK(absl::StrContains(texts.status().message(), "runs past the end"));
  const Tensor empty = TextSampleTensor("text", {});
  CHECK(absl::StrContains(TextSampleTexts({empty}, "text").status().message(), "holds no text"));
}

TEST_CASE("sampling off keeps nothing and writes no samples file", "[traffic]") {
  TempDir tmp;
  TrafficRecorder recorder(/*max_samples_per_model=*/0);
  const Tensor x = MakeTensor<float>("x", DType::kFloat32, {1}, {1});
  recorder.RecordSample("m", {x.view()});
  recorder.Record("m", {1, 0});
  CHECK(recorder.Samples("m").empty());
  REQUIRE(recorder.Save(tmp.path()).ok());
  CHECK(FileNames(tmp.path()) == std::set<std::string>{"m.traffic.pbtxt"});
}

TEST_CASE("a restart's samples come first, then earlier ones of other shapes", "[traffic]") {
  TempDir tmp;
  const Tensor a = MakeTensor<float>("x", DType::kFloat32, {1, 1}, {1});
  const Tensor b = MakeTensor<float>("x", DType::kFloat32, {2, 1}, {2, 3});
  const Tensor c = MakeTensor<float>("x", DType::kFloat32, {3, 1}, {4, 5, 6});
  const Tensor a_new = MakeTensor<float>("x", DType::kFloat32, {1, 1}, {9});
  const Tensor d = MakeTensor<float>("x", DType::kFloat32, {4, 1}, {7, 8, 9, 10});
  {
    TrafficRecorder first_run(/*max_samples_per_model=*/3);
    first_run.RecordSample("m", {a.view()});
    first_run.RecordSample("m", {b.view()});
    REQUIRE(first_run.Save(tmp.path()).ok());
  }
  TrafficRecorder second_run(/*max_samples_per_model=*/3);
  second_run.RecordSample("m", {c.view()});
  second_run.RecordSample("m", {a_new.view()});
  REQUIRE(second_run.Save(tmp.path()).ok());
  absl::StatusOr<std::vector<std::vector<Tensor>>> loaded =
      LoadTrafficSamples(TrafficSamplesPath(tmp.path(), "m"));
  REQUIRE(loaded.ok());
  REQUIRE(loaded->size() == 3);
  CheckSameTensors((*loaded)[0], {c});
  CheckSameTensors((*loaded)[1], {a_new});  // replaces the earlier sample of its shape
  CheckSameTensors((*loaded)[2], {b});

  // A later sample beyond the bound does not push out any kept one.
  TrafficRecorder third_run(/*max_samples_per_model=*/3);
  third_run.RecordSample("m", {d.view()});
  REQUIRE(third_run.Save(tmp.path()).ok());
  loaded = LoadTrafficSamples(TrafficSamplesPath(tmp.path(), "m"));
  REQUIRE(loaded.ok());
  REQUIRE(loaded->size() == 3);
  CheckSameTensors((*loaded)[0], {d});
  CheckSameTensors((*loaded)[1], {c});
  CheckSameTensors((*loaded)[2], {a_new});
}

TEST_CASE("LoadTrafficSamples names the file and a badly named tensor", "[traffic]") {
  TempDir tmp;
  const Tensor bad = MakeTensor<float>("noindex", DType::kFloat32, {1}, {1});
  const std::string path = tmp.path() + "/m.samples.safetensors";
  REQUIRE(WriteSafetensorsFile(path, {bad.view()}).ok());
  absl::StatusOr<std::vector<std::vector<Tensor>>> loaded = LoadTrafficSamples(path);
  REQUIRE_FALSE(loaded.ok());
  CHECK(absl::StrContains(loaded.status().message(), path));
  CHECK(absl::StrContains(loaded.status().message(), "noindex"));

  absl::StatusOr<std::vector<std::vector<Tensor>>> missing =
      LoadTrafficSamples(tmp.path() + "/absent.safetensors");
  REQUIRE_FALSE(missing.ok());
  CHECK(absl::StrContains(missing.status().message(), tmp.path() + "/absent.safetensors"));
}

TEST_CASE("LoadTrafficSamples groups by sample index, in index order", "[traffic]") {
  TempDir tmp;
  Tensor s10 = MakeTensor<float>("10.x", DType::kFloat32, {1}, {10});
  Tensor s2y = MakeTensor<float>("2.y", DType::kFloat32, {1}, {2.5f});
  Tensor s2x = MakeTensor<float>("2.x", DType::kFloat32, {1}, {2});
  const std::string path = tmp.path() + "/m.samples.safetensors";
  REQUIRE(WriteSafetensorsFile(path, {s10.view(), s2y.view(), s2x.view()}).ok());
  absl::StatusOr<std::vector<std::vector<Tensor>>> loaded = LoadTrafficSamples(path);
  REQUIRE(loaded.ok());
  REQUIRE(loaded->size() == 2);
  s2y.name = "y";
  s2x.name = "x";
  s10.name = "x";
  CheckSameTensors((*loaded)[0], {s2y, s2x});  // the order recorded, not the name order
  CheckSameTensors((*loaded)[1], {s10});
}

TrafficProfile ProfileOf(const std::vector<std::tuple<int32_t, int32_t, int64_t>>& rows,
                         int64_t other_requests = 0) {
  TrafficProfile profile;
  for (const auto& [batch, length, requests] : rows) {
    ShapeCount* shape = profile.add_shapes();
    shape->set_batch_size(batch);
    shape->set_sequence_length(length);
    shape->set_requests(requests);
  }
  profile.set_other_requests(other_requests);
  return profile;
}

TEST_CASE("ShapesToReplay picks the most requested shapes above the share", "[traffic]") {
  const TrafficProfile profile =
      ProfileOf({{1, 128, 10}, {8, 64, 40}, {4, 64, 10}, {2, 32, 5}, {16, 0, 0}}, 35);
  // total 100: shares 0.4, 0.1, 0.1, 0.05, 0.
  CHECK(ShapesToReplay(profile, 10, 0.0) ==
        std::vector<Shape>{{8, 64}, {1, 128}, {4, 64}, {2, 32}});
  // other_requests counts in the total: 0.1 passes, 0.05 does not.
  CHECK(ShapesToReplay(profile, 10, 0.1) == std::vector<Shape>{{8, 64}, {1, 128}, {4, 64}});
  CHECK(ShapesToReplay(profile, 10, 0.11) == std::vector<Shape>{{8, 64}});
  // Ties break by smaller batch first.
  CHECK(ShapesToReplay(profile, 2, 0.0) == std::vector<Shape>{{8, 64}, {1, 128}});
  CHECK(ShapesToReplay(profile, 0, 0.0).empty());
  CHECK(ShapesToReplay(profile, 10, 0.5).empty());
  CHECK(ShapesToReplay(TrafficProfile(), 10, 0.0).empty());
  // A shape listed twice is summed first.
  CHECK(ShapesToReplay(ProfileOf({{1, 8, 3}, {2, 8, 4}, {1, 8, 2}}), 1, 0.0) ==
        std::vector<Shape>{{1, 8}});
}

// Found by tests/fuzz/traffic_profile_fuzz: the sums overflowed int64 (undefined behaviour; in
// practice a negative total, so nothing was replayed, and negative counts written back).
TEST_CASE("counts near INT64_MAX saturate instead of overflowing", "[traffic]") {
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  CHECK(ShapesToReplay(ProfileOf({{1, 0, kMax}, {2, 0, kMax / 2}}, 5), 8, 0.4) ==
        std::vector<Shape>{{1, 0}, {2, 0}});
  CHECK(ShapesToReplay(ProfileOf({{1, 0, kMax}, {1, 0, kMax}}), 8, 0.5) ==
        std::vector<Shape>{{1, 0}});

  TempDir tmp;
  const std::string path = TrafficProfilePath(tmp.path(), "m");
  std::ofstream(path) << "shapes { batch_size: 1 sequence_length: 16 requests: " << kMax
                      << " }\nother_requests: " << kMax << "\n";
  TrafficRecorder recorder;
  recorder.Record("m", {1, 16});
  REQUIRE(recorder.Save(tmp.path()).ok());
  absl::StatusOr<TrafficProfile> saved = LoadTrafficProfile(path);
  REQUIRE(saved.ok());
  using Row = std::tuple<int32_t, int32_t, int64_t>;
  CHECK(Counts(*saved) == std::vector<Row>{{1, 16, kMax}});
  CHECK(saved->other_requests() == kMax);
}

TEST_CASE("Save while recording from other threads writes every request exactly once",
          "[traffic]") {
  TempDir tmp;
  TrafficRecorder recorder(/*max_samples_per_model=*/4);
  constexpr int kThreads = 4;
  constexpr int kPerThread = 5000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&recorder, t] {
      for (int i = 0; i < kPerThread; ++i) {
        recorder.Record("m", {1 + (i + t) % 3, 0});
        if (i % 1000 == 0) {
          const Tensor x = MakeTensor<float>("x", DType::kFloat32, {1 + i / 1000}, {});
          Tensor filled = x;
          filled.bytes.assign(static_cast<size_t>(4 * (1 + i / 1000)), uint8_t{1});
          recorder.RecordSample("m", {filled.view()});
        }
      }
    });
  }
  for (int i = 0; i < 5; ++i) REQUIRE(recorder.Save(tmp.path()).ok());
  for (std::thread& thread : threads) thread.join();
  REQUIRE(recorder.Save(tmp.path()).ok());

  absl::StatusOr<TrafficProfile> profile = LoadTrafficProfile(TrafficProfilePath(tmp.path(), "m"));
  REQUIRE(profile.ok());
  CHECK(TotalRequests(*profile) == int64_t{kThreads} * kPerThread);
  absl::StatusOr<std::vector<std::vector<Tensor>>> samples =
      LoadTrafficSamples(TrafficSamplesPath(tmp.path(), "m"));
  REQUIRE(samples.ok());
  CHECK(samples->size() == 4);
}

}  // namespace
}  // namespace kiln
