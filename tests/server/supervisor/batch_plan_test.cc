// PlanBatch: which queued jobs one call takes under dynamic batching: a run from the front, alike
// but for the batch dimension, within max_batch_size, at a warmed size, the cheapest per row.
#include "server/supervisor/batch_plan.h"

#include <catch2/catch.hpp>
#include <string>
#include <tuple>
#include <vector>

namespace kiln {
namespace {

// A batched model of one FP32 input [4], dynamic batching on, padding to warmed sizes.
ModelConfig Model(int32_t max_batch_size = 8) {
  ModelConfig config;
  config.set_name("m");
  config.set_max_batch_size(max_batch_size);
  TensorConfig& input = *config.add_input();
  input.set_name("x");
  input.set_data_type(TYPE_FP32);
  input.add_dims(4);
  config.mutable_dynamic_batching()->set_enabled(true);
  config.mutable_warmup()->set_pad_to_warmed(true);
  return config;
}

// A job of `rows` rows of x (no data: planning reads shapes only).
InferJob Job(int64_t rows, int64_t width = 4, const std::string& name = "x") {
  InferJob job;
  job.inputs.push_back(TensorView{name, DType::kFloat32, {rows, width}, nullptr, 0});
  return job;
}

// A worker that warmed these batch sizes at these steady CPU costs (ms).
WarmedCosts Costs(const std::vector<std::pair<int, double>>& warmed) {
  internal::WarmupReport report;
  for (const auto& [batch, cost] : warmed) {
    internal::ShapeWarmup& shape = *report.add_shapes();
    shape.set_batch_size(batch);
    shape.set_steady_cpu_ms(cost);
  }
  return WarmedCosts(report);
}

// PlanBatch over `jobs`, front first.
int Plan(const ModelConfig& config, const std::vector<InferJob>& jobs, const WarmedCosts& costs) {
  std::vector<const InferJob*> queue;
  for (const InferJob& job : jobs) queue.push_back(&job);
  return PlanBatch(config, queue, costs);
}

TEST_CASE("a cheap model's queued requests go as one batch, up to max_batch_size", "[batch_plan]") {
  // mlp-like: a pass costs little more at batch 8 than at 1; the call's overhead dominates.
  const WarmedCosts costs = Costs({{1, 0.010}, {2, 0.012}, {4, 0.015}, {8, 0.020}});
  CHECK(Plan(Model(), {Job(1), Job(1), Job(1), Job(1)}, costs) == 4);
  CHECK(Plan(Model(), {Job(1), Job(2), Job(1)}, costs) == 3);  // 4 rows, warmed
  // 3 rows pad to the warmed 4: still cheaper per row than one row alone.
  CHECK(Plan(Model(), {Job(1), Job(2)}, costs) == 2);
  // Never above max_batch_size: 5 + 4 rows > 8.
  CHECK(Plan(Model(), {Job(5), Job(4), Job(1)}, costs) == 1);
  std::vector<InferJob> many(12, Job(1));
  CHECK(Plan(Model(), many, costs) == 8);
}

TEST_CASE("requests are not padded to a warmed batch that costs more than passes of their own",
          "[batch_plan]") {
  // resnet18-like (BENCHMARKS.md): batch 2 pads to the warmed 4 (183 ms), two batch-1 passes
  // cost about 90 ms: each of the two goes alone.
  const WarmedCosts costs = Costs({{1, 45.0}, {4, 183.0}});
  CHECK(Plan(Model(), {Job(1), Job(1)}, costs) == 1);
  // Four requests fill the warmed 4 at 45.75 ms a row, against 45.1 alone: still one.
  CHECK(Plan(Model(), {Job(1), Job(1), Job(1), Job(1)}, costs) == 1);
  // Where batch 4 is cheaper per row, four go together.
  const WarmedCosts cheaper = Costs({{1, 45.0}, {4, 120.0}});
  CHECK(Plan(Model(), {Job(1), Job(1), Job(1), Job(1)}, cheaper) == 4);
}

TEST_CASE("a batch is a run of alike requests from the front, at a size the worker serves warm",
          "[batch_plan]") {
  const WarmedCosts costs = Costs({{1, 0.010}, {2, 0.012}, {4, 0.015}, {8, 0.020}});
  SECTION("batching off: one request per call, as without dynamic_batching") {
    ModelConfig config = Model();
    config.mutable_dynamic_batching()->set_enabled(false);
    CHECK(Plan(config, {Job(1), Job(1)}, costs) == 1);
  }
  SECTION("the run stops at the first request of another shape, and keeps the order") {
    CHECK(Plan(Model(), {Job(1), Job(1), Job(1, 6), Job(1)}, costs) == 2);
    CHECK(Plan(Model(), {Job(1), Job(1, 4, "y"), Job(1)}, costs) == 1);
  }
  SECTION("a text request whose tokens the master did not count goes alone") {
    const std::vector<std::string> texts = {"a", "b"};
    InferJob text;
    text.text = &texts;
    CHECK(Plan(Model(), {text, text}, costs) == 1);
    CHECK(JobRows(text) == 2);
  }
  SECTION("without padding, only a warmed row count (or the front request alone)") {
    ModelConfig config = Model();
    config.mutable_warmup()->set_pad_to_warmed(false);
    CHECK(Plan(config, {Job(1), Job(2), Job(1)}, costs) == 3);  // 4 rows, warmed
    CHECK(Plan(config, {Job(1), Job(2)}, costs) == 1);          // 3 rows: cold
    const WarmedCosts none = Costs({{8, 0.020}});
    CHECK(Plan(config, {Job(3), Job(1)}, none) == 1);  // alone, as without batching
  }
  SECTION("a model without a batch dimension") {
    ModelConfig config = Model(0);
    CHECK(Plan(config, {Job(1), Job(1)}, costs) == 1);
  }
  SECTION("a job that must go alone (the readiness check's) neither leads nor joins a run") {
    InferJob alone = Job(1);
    alone.alone = true;
    CHECK_FALSE(Batchable(Model(), alone));
    CHECK(Plan(Model(), {alone, Job(1), Job(1)}, costs) == 1);
    CHECK(Plan(Model(), {Job(1), Job(1), alone, Job(1)}, costs) == 2);
  }
}

// A text job of `texts` whose longest row the master counted as `tokens`.
InferJob TextJob(const std::vector<std::string>& texts, int32_t tokens) {
  InferJob job;
  job.text = &texts;
  job.text_tokens = tokens;
  return job;
}

// A worker that warmed batch 1 and 4 at sequence lengths 16 and 64 (textcls-like: 4 rows cost
// less than twice one), at these costs.
WarmedCosts TextCosts() {
  internal::WarmupReport report;
  for (const auto& [batch, length, cost] : std::vector<std::tuple<int, int, double>>{
           {1, 16, 1.0}, {4, 16, 1.5}, {1, 64, 3.0}, {4, 64, 5.0}}) {
    internal::ShapeWarmup& shape = *report.add_shapes();
    shape.set_batch_size(batch);
    shape.set_sequence_length(length);
    shape.set_steady_cpu_ms(cost);
  }
  return WarmedCosts(report);
}

TEST_CASE("texts that pad to the same warmed length share a call, others end the run",
          "[batch_plan]") {
  const WarmedCosts costs = TextCosts();
  CHECK(costs.TextLength(3) == 16);
  CHECK(costs.TextLength(16) == 16);
  CHECK(costs.TextLength(17) == 64);
  CHECK(costs.TextLength(90) == 90);  // longer than any warmed length: its own (cold) length
  const std::vector<std::string> one = {"t"};
  const std::vector<std::string> two = {"t", "u"};
  SECTION("the same padded length: one call, rows summed") {
    CHECK(Plan(Model(), {TextJob(one, 3), TextJob(two, 16), TextJob(one, 9)}, costs) == 3);
  }
  SECTION("a longer text ends the run: the short ones are not padded to its length") {
    CHECK(Plan(Model(), {TextJob(one, 3), TextJob(one, 5), TextJob(one, 40), TextJob(one, 4)},
               costs) == 2);
    CHECK(Plan(Model(), {TextJob(one, 40), TextJob(one, 64), TextJob(one, 4)}, costs) == 2);
  }
  SECTION("an uncounted text, a tensor request or a cold length ends the run") {
    CHECK(Plan(Model(), {TextJob(one, 3), TextJob(one, -1)}, costs) == 1);
    CHECK(Plan(Model(), {TextJob(one, 3), Job(1)}, costs) == 1);
    CHECK(Plan(Model(), {TextJob(one, 90), TextJob(one, 90)}, costs) == 1);
  }
}

}  // namespace
}  // namespace kiln
