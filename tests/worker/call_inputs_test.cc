// PrepareCall: a call's inputs read from the arena (or its text tokenized), checked against the
// model, planned and padded; and the corrupt calls it refuses (found by
// tests/fuzz/worker_frames_fuzz).
#include "worker/call_inputs.h"

#include <catch2/catch.hpp>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/arena_tensors.h"
#include "common/memory_budget.h"
#include "common/shared_arena.h"
#include "google/protobuf/text_format.h"
#include "proto/worker_frames.pb.h"
#include "tests/catch_shape.h"

namespace kiln {
namespace {

using Catch::Matchers::Contains;
using internal::InferCall;
using internal::InferResult;
using internal::TensorRef;

ModelConfig SeqModel() {
  ModelConfig config;
  REQUIRE(google::protobuf::TextFormat::ParseFromString(
      R"pb(
        name: "seq"
        max_batch_size: 4
        input { name: "x" data_type: TYPE_FP32 dims: -1 dims: 2 }
        input { name: "m" data_type: TYPE_INT64 dims: -1 }
        output { name: "y" data_type: TYPE_FP32 dims: 2 }
        warmup { pad_to_warmed: true })pb",
      &config));
  return config;
}

std::unique_ptr<SharedArena> MakeArena() {
  absl::StatusOr<std::unique_ptr<SharedArena>> arena = SharedArena::Create("test", 1 << 16);
  REQUIRE(arena.ok());
  return *std::move(arena);
}

void AddRef(InferCall& call, const std::string& name, const std::string& dtype,
            const std::vector<int64_t>& shape, uint64_t offset, uint64_t nbytes) {
  TensorRef& ref = *call.add_inputs();
  ref.set_name(name);
  ref.set_dtype(dtype);
  *ref.mutable_shape() = {shape.begin(), shape.end()};
  ref.set_offset(offset);
  ref.set_nbytes(nbytes);
}

// x [rows, length, 2] F32 at 0 and m [rows, length] I64 at 4096.
InferCall Call(int64_t rows, int64_t length) {
  InferCall call;
  AddRef(call, "x", "F32", {rows, length, 2}, 0, rows * length * 2 * 4);
  AddRef(call, "m", "I64", {rows, length}, 4096, rows * length * 8);
  return call;
}

absl::Status Prepare(const InferCall& call, CallInputs& inputs,
                     const ModelConfig& config = SeqModel()) {
  const ShapeGuard guard(config, {{1, 3}, {4, 3}}, ShapeMemoryModel(0), 0);
  const std::unique_ptr<SharedArena> arena = MakeArena();
  InferResult result;
  return PrepareCall(config, nullptr, guard, call, *arena, inputs, result);
}

TEST_CASE("PrepareCall reads a call's inputs, plans it and pads it to a warmed batch",
          "[call_inputs]") {
  CallInputs inputs;
  REQUIRE(Prepare(Call(2, 3), inputs).ok());
  CHECK(inputs.request == Shape{2, 3});
  CHECK(inputs.plan.pass == Shape{4, 3});
  CHECK(inputs.plan.padded_rows == 2);
  REQUIRE(inputs.views.size() == 2);
  CHECK(inputs.views[0].shape == std::vector<int64_t>{4, 3, 2});
  CHECK(inputs.views[0].nbytes == 4 * 3 * 2 * 4);
  CHECK(inputs.views[1].shape == std::vector<int64_t>{4, 3});
}

TEST_CASE("PrepareCall refuses a call whose inputs are not the model's", "[call_inputs]") {
  InferCall call;
  std::string why;
  SECTION("a dtype other than the config's") {
    AddRef(call, "x", "F16", {2, 3, 2}, 0, 24);
    AddRef(call, "m", "I64", {2, 3}, 4096, 48);
    why = "input 'x' is F16; the model's is TYPE_FP32";
  }
  SECTION("batch 0 (ShapeGuard::Plan divided by zero rows)") {
    call = Call(0, 3);
    why = "its batch is not in [1, 4]";
  }
  SECTION("inputs of different batches (a pass sliced past the smaller one's bytes)") {
    AddRef(call, "x", "F32", {4, 3, 2}, 0, 96);
    AddRef(call, "m", "I64", {1, 3}, 4096, 24);
    why = "differs from the first input's";
  }
  SECTION("a batch above max_batch_size") {
    call = Call(5, 3);
    why = "its batch is not in [1, 4]";
  }
  SECTION("bytes that do not hold the shape") {
    AddRef(call, "x", "F32", {1, 3, 2}, 0, 8);
    AddRef(call, "m", "I64", {1, 3}, 4096, 24);
    why = "8 bytes do not hold F32 [1, 3, 2]";
  }
  SECTION("a missing input") {
    AddRef(call, "x", "F32", {1, 3, 2}, 0, 24);
    why = "input 'm' is missing";
  }
  SECTION("inputs out of the config's order") {
    AddRef(call, "m", "I64", {1, 3}, 4096, 24);
    AddRef(call, "x", "F32", {1, 3, 2}, 0, 24);
    why = "input 'x' is missing (or out of the config's order)";
  }
  SECTION("an input the model does not have") {
    call = Call(1, 3);
    AddRef(call, "z", "I64", {1, 3}, 8192, 24);
    why = "3 inputs, of which 'z' is none of the model's";
  }
  SECTION("no inputs at all") { why = "no inputs"; }
  SECTION("dims other than the config's") {
    AddRef(call, "x", "F32", {1, 3, 3}, 0, 36);
    AddRef(call, "m", "I64", {1, 3}, 4096, 24);
    why = "not the model's dims";
  }
  CallInputs inputs;
  const absl::Status status = Prepare(call, inputs);
  CHECK(status.code() == absl::StatusCode::kInternal);
  CHECK_THAT(std::string(status.message()), Contains("bad call for seq") && Contains(why));
}

TEST_CASE("PrepareCall takes a call without an optional input, its shape read from the rest",
          "[call_inputs]") {
  ModelConfig config = SeqModel();
  CallInputs inputs;
  InferCall call;
  SECTION("the second input left out") {
    config.mutable_input(1)->set_optional(true);
    AddRef(call, "x", "F32", {2, 3, 2}, 0, 48);
  }
  SECTION("the first input left out") {
    config.mutable_input(0)->set_optional(true);
    AddRef(call, "m", "I64", {2, 3}, 4096, 48);
  }
  REQUIRE(Prepare(call, inputs, config).ok());
  CHECK(inputs.request == Shape{2, 3});
  CHECK(inputs.plan.pass == Shape{4, 3});
  REQUIRE(inputs.views.size() == 1);
  CHECK(inputs.views[0].shape[0] == 4);  // padded with the one input there is
  // A required input is still required.
  InferCall without_x;
  AddRef(without_x, "m", "I64", {2, 3}, 4096, 48);
  CallInputs refused;
  if (!config.input(0).optional()) {
    const absl::Status status = Prepare(without_x, refused, config);
    CHECK_THAT(std::string(status.message()), Contains("input 'x' is missing"));
  }
}

}  // namespace
}  // namespace kiln
