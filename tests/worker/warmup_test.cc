#include "worker/warmup.h"

#include <catch2/catch.hpp>
#include <vector>

#include "absl/status/status.h"

namespace kiln {
namespace {

// A forward pass that takes the next of `latencies` (then the last one forever), counting calls.
struct FakeCall {
  std::vector<double> latencies;
  int calls = 0;
  absl::StatusOr<double> operator()() {
    const size_t i = std::min<size_t>(calls++, latencies.size() - 1);
    return latencies[i];
  }
};

TEST_CASE("a shape settles when two calls in a row agree within the tolerance", "[warmup]") {
  FakeCall call{{400, 90, 50, 47, 46, 45, 44, 46, 45}};
  const SettlePlan plan{/*min_calls=*/3, /*max_calls=*/50, /*tolerance=*/0.15, /*steady_calls=*/5};
  absl::StatusOr<SettleResult> result = SettleShape(std::ref(call), plan);
  REQUIRE(result.ok());
  // 400 -> 90 -> 50 (the 3rd call, 90 vs 50 disagree) -> 47 (50 vs 47 agree): settled after 4.
  CHECK(result->settled_after == 4);
  CHECK(call.calls == 4 + 5);
  CHECK(result->first_ms == 400);
  CHECK(result->steady_ms == 45);  // median of 46, 45, 44, 46, 45
}

TEST_CASE("agreement is not judged before min_calls", "[warmup]") {
  FakeCall call{{10, 10, 10, 10}};
  absl::StatusOr<SettleResult> result = SettleShape(std::ref(call), {5, 50, 0.15, 2});
  REQUIRE(result.ok());
  CHECK(result->settled_after == 5);
  CHECK(call.calls == 7);
}

TEST_CASE("a shape that never settles stops at the cap and says so", "[warmup]") {
  FakeCall call{{100, 50, 100, 50, 100, 50, 100, 50, 100, 50, 100, 50}};
  absl::StatusOr<SettleResult> result = SettleShape(std::ref(call), {3, 6, 0.15, 3});
  REQUIRE(result.ok());
  CHECK(result->settled_after == 0);
  CHECK(call.calls == 6 + 3);
  CHECK(result->latencies.size() == 9);
}

TEST_CASE("the first failing call stops settling with its error", "[warmup]") {
  int calls = 0;
  auto failing = [&calls]() -> absl::StatusOr<double> {
    if (++calls == 3) return absl::InvalidArgumentError("shape rejected");
    return 5.0 * calls;
  };
  absl::StatusOr<SettleResult> result = SettleShape(failing, {3, 50, 0.15, 5});
  REQUIRE_FALSE(result.ok());
  CHECK(result.status().message() == "shape rejected");
  CHECK(calls == 3);
}

TEST_CASE("warmup shapes run smallest first and replace -1 dims with the length", "[warmup]") {
  ModelConfig config;
  config.set_max_batch_size(8);
  TensorConfig& ids = *config.add_input();
  ids.set_name("ids");
  ids.set_data_type(TYPE_INT64);
  ids.add_dims(-1);
  config.mutable_warmup()->add_batch_sizes(1);
  config.mutable_warmup()->add_batch_sizes(4);
  config.mutable_warmup()->add_sequence_lengths(64);
  config.mutable_warmup()->add_sequence_lengths(16);
  const std::vector<WarmupShape> shapes = WarmupShapes(config);
  REQUIRE(shapes.size() == 4);
  CHECK((shapes[0].batch_size == 1 && shapes[0].sequence_length == 16));
  CHECK((shapes[1].batch_size == 1 && shapes[1].sequence_length == 64));
  CHECK((shapes[2].batch_size == 4 && shapes[2].sequence_length == 16));
  CHECK((shapes[3].batch_size == 4 && shapes[3].sequence_length == 64));
  CHECK(ConcreteShape(ids, config, shapes[3]) == std::vector<int64_t>{4, 64});

  absl::StatusOr<std::vector<Tensor>> inputs = MakeWarmupInputs(config, shapes[2], 1);
  REQUIRE(inputs.ok());
  REQUIRE(inputs->size() == 1);
  CHECK((*inputs)[0].shape == std::vector<int64_t>{4, 16});
  CHECK((*inputs)[0].bytes.size() == 4 * 16 * sizeof(int64_t));
}

}  // namespace
}  // namespace kiln
