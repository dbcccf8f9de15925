// LoadTrafficReplay: which recorded shapes a model's workers warm on top of its plan.
#include "server/zygote/traffic_replay.h"

#include <catch2/catch.hpp>
#include <map>
#include <string>
#include <vector>

#include "common/traffic_profile.h"
#include "google/protobuf/text_format.h"
#include "tests/catch_shape.h"
#include "tests/test_paths.h"

namespace kiln {
namespace {

using testing::TempDir;

// "seq": up to 8 rows of INT64 [-1] token ids, at most 64 tokens (a tokenizer's max_length).
constexpr char kSequenceConfig[] = R"pb(
  name: "seq"
  max_batch_size: 8
  input {
    name: "ids"
    data_type: TYPE_INT64
    dims: [ -1 ]
  }
  tokenizer { max_length: 64 }
)pb";

ModelSpec SequenceSpec(const std::string& directory) {
  ModelSpec spec;
  spec.directory = directory;
  REQUIRE(google::protobuf::TextFormat::ParseFromString(kSequenceConfig, &spec.config));
  return spec;
}

TEST_CASE("recorded shapes are replayed most requested first, unservable ones skipped",
          "[traffic_replay]") {
  TempDir state;
  TrafficRecorder recorder;
  for (int i = 0; i < 50; ++i) recorder.Record("seq", {4, 32});
  for (int i = 0; i < 30; ++i) recorder.Record("seq", {1, 16});
  for (int i = 0; i < 10; ++i) recorder.Record("seq", {16, 16});  // above max_batch_size
  for (int i = 0; i < 10; ++i) recorder.Record("seq", {2, 128});  // above max_length
  REQUIRE(recorder.Save(state.path()).ok());

  const std::vector<ModelSpec> specs = {SequenceSpec(state.path())};
  std::map<std::string, ModelReplay> replay = LoadTrafficReplay(specs, state.path());
  REQUIRE(replay.count("seq") == 1);
  CHECK(replay["seq"].shapes == std::vector<Shape>{{4, 32}, {1, 16}});
  CHECK(replay["seq"].samples.empty());
}

TEST_CASE("no recorded traffic, or a profile that cannot be read, replays nothing",
          "[traffic_replay]") {
  TempDir state;
  const std::vector<ModelSpec> specs = {SequenceSpec(state.path())};
  CHECK(LoadTrafficReplay(specs, state.path()).empty());
  CHECK(LoadTrafficReplay(specs, "").empty());
  state.WriteFile("seq.traffic.pbtxt", "model: \"seq\" shapes { batch_size: -3 requests: 1 }\n");
  CHECK(LoadTrafficReplay(specs, state.path()).empty());
}

TEST_CASE("the config's own traffic_profile is replayed without a state directory",
          "[traffic_replay]") {
  TempDir model_dir;
  TrafficRecorder recorder;
  recorder.Record("seq", {2, 8});
  REQUIRE(recorder.Save(model_dir.path()).ok());
  ModelSpec spec = SequenceSpec(model_dir.path());
  spec.config.mutable_warmup()->set_traffic_profile("seq.traffic.pbtxt");
  std::map<std::string, ModelReplay> replay = LoadTrafficReplay({spec}, "");
  REQUIRE(replay.count("seq") == 1);
  CHECK(replay["seq"].shapes == std::vector<Shape>{{2, 8}});
}

}  // namespace
}  // namespace kiln
