#include "common/shape.h"

#include <catch2/catch.hpp>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "tests/catch_shape.h"

namespace kiln {
namespace {

// A batched model with one INT64 input of dims [-1] and warmup batch sizes 1, 4 and lengths 64, 16.
ModelConfig SequenceModel() {
  ModelConfig config;
  config.set_name("seq");
  config.set_max_batch_size(8);
  TensorConfig& ids = *config.add_input();
  ids.set_name("ids");
  ids.set_data_type(TYPE_INT64);
  ids.add_dims(-1);
  TensorConfig& mask = *config.add_input();
  mask.set_name("mask");
  mask.set_data_type(TYPE_INT64);
  mask.add_dims(-1);
  config.mutable_warmup()->add_batch_sizes(1);
  config.mutable_warmup()->add_batch_sizes(4);
  config.mutable_warmup()->add_sequence_lengths(64);
  config.mutable_warmup()->add_sequence_lengths(16);
  return config;
}

// A batched model with one FP32 input of dims [16] and warmup batch sizes 1, 2, 4, 8.
ModelConfig FixedModel() {
  ModelConfig config;
  config.set_name("fixed");
  config.set_max_batch_size(8);
  TensorConfig& input = *config.add_input();
  input.set_name("input");
  input.set_data_type(TYPE_FP32);
  input.add_dims(16);
  for (int32_t batch : {1, 2, 4, 8}) config.mutable_warmup()->add_batch_sizes(batch);
  return config;
}

TensorView ViewOfShape(std::vector<int64_t> shape, std::string name = "") {
  TensorView view;
  view.name = std::move(name);
  view.shape = std::move(shape);
  return view;
}

TEST_CASE("Shape orders by batch then length, and describes itself", "[shape]") {
  CHECK(Shape{1, 64} < Shape{2, 0});
  CHECK(Shape{2, 8} < Shape{2, 16});
  CHECK_FALSE(Shape{2, 16} < Shape{2, 16});
  CHECK(Shape{2, 16} == Shape{2, 16});
  CHECK(Shape{2, 16} != Shape{2, 8});
  CHECK(Shape{4, 16}.Describe() == "b4 s16");
  CHECK(Shape{4, 0}.Describe() == "b4");
  CHECK(FromProto(ToProto(Shape{3, 7})) == Shape{3, 7});
  CHECK(ToProto(Shape{3, 7}).sequence_length() == 7);
}

TEST_CASE("warmup shapes run smallest first and replace -1 dims with the length", "[shape]") {
  const ModelConfig config = SequenceModel();
  CHECK(WarmupShapes(config) == std::vector<Shape>{{1, 16}, {1, 64}, {4, 16}, {4, 64}});
  CHECK(ConcreteShape(config.input(0), config, {4, 64}) == std::vector<int64_t>{4, 64});
  ModelConfig unbatched = config;
  unbatched.set_max_batch_size(0);
  CHECK(WarmupShapes(unbatched) == std::vector<Shape>{{1, 16}, {1, 64}});
  CHECK(ConcreteShape(unbatched.input(0), unbatched, {1, 64}) == std::vector<int64_t>{64});
}

TEST_CASE("PlanShapes adds extra shapes to the plan once each, smallest batch x length first",
          "[shape]") {
  const ModelConfig config = SequenceModel();
  CHECK(PlanShapes(config, {}) == WarmupShapes(config));
  // (4, 16) is in the plan already and (2, 16) comes twice: each runs once. (1, 8) is the
  // smallest of all; (1, 64) and (4, 16) are the same size and keep the plan's order.
  CHECK(PlanShapes(config, {{2, 16}, {4, 16}, {1, 8}, {2, 16}, {8, 0}}) ==
        std::vector<Shape>{{1, 8}, {8, 0}, {1, 16}, {2, 16}, {1, 64}, {4, 16}, {4, 64}});
}

TEST_CASE("PlanShapes of a model without a sequence dim orders by batch size", "[shape]") {
  CHECK(PlanShapes(FixedModel(), {{6, 0}, {3, 0}, {2, 0}, {3, 0}}) ==
        std::vector<Shape>{{1, 0}, {2, 0}, {3, 0}, {4, 0}, {6, 0}, {8, 0}});
}

TEST_CASE("LargestShape takes max_batch_size and the longest length", "[shape]") {
  ModelConfig config = SequenceModel();
  CHECK(LargestShape(config) == Shape{8, 64});
  config.mutable_tokenizer()->set_max_length(128);
  CHECK(LargestShape(config) == Shape{8, 128});
  CHECK(LargestShape(FixedModel()) == Shape{8, 0});
  ModelConfig unbatched = FixedModel();
  unbatched.set_max_batch_size(0);
  CHECK(LargestShape(unbatched) == Shape{1, 0});
}

TEST_CASE("RequestShape reads the batch dim and the first -1 dim", "[shape]") {
  const ModelConfig config = SequenceModel();
  CHECK(RequestShape(config, {ViewOfShape({3, 40}, "ids"), ViewOfShape({3, 40}, "mask")}) ==
        Shape{3, 40});
  CHECK(RequestShape(FixedModel(), {ViewOfShape({5, 16}, "input")}) == Shape{5, 0});
  ModelConfig unbatched = config;
  unbatched.set_max_batch_size(0);
  CHECK(RequestShape(unbatched, {ViewOfShape({40}, "ids"), ViewOfShape({40}, "mask")}) ==
        Shape{1, 40});
  CHECK(RequestShape(config, {}) == Shape{1, 0});
  // An optional input left out: the length is read from the inputs given, by name.
  CHECK(RequestShape(config, {ViewOfShape({2, 24}, "mask")}) == Shape{2, 24});
}

TEST_CASE("Unservable says why a recorded shape cannot be served", "[shape]") {
  ModelConfig config = SequenceModel();
  CHECK(Unservable(config, {8, 16}).empty());
  CHECK(Unservable(config, {9, 16}) == "batch above max_batch_size");
  CHECK(Unservable(config, {2, 0}) == "length does not fit the model's dims");
  CHECK(Unservable(FixedModel(), {2, 16}) == "length does not fit the model's dims");
  config.mutable_tokenizer()->set_max_length(32);
  CHECK(Unservable(config, {2, 64}) == "length above tokenizer.max_length");
}

}  // namespace
}  // namespace kiln
