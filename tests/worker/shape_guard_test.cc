// ShapeGuard over a ShapeMemoryModel built by hand: which shapes are warm, the sequence buckets,
// how many rows one pass may take within a budget, and which warmed batch a request is padded to.
#include "worker/shape_guard.h"

#include <catch2/catch.hpp>
#include <cstdint>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "common/memory_budget.h"
#include "tests/catch_shape.h"

namespace kiln {
namespace {

using Catch::Matchers::Contains;
using Shapes = std::set<Shape>;

constexpr int64_t kMB = 1000 * 1000;

ModelConfig Model(int32_t max_batch_size, bool pad_to_warmed = true) {
  ModelConfig config;
  config.set_name("m");
  config.set_max_batch_size(max_batch_size);
  config.mutable_warmup()->set_pad_to_warmed(pad_to_warmed);
  return config;
}

// A model without a sequence dim: 100 MB before warmup, then 110, 120 and 140 MB at batch 1, 2
// and 4 (10 MB a row): batch 3 projects to 140 MB (costed as batch 4), batch 8 to 180 MB.
ShapeMemoryModel RowMemory() {
  ShapeMemoryModel memory(100 * kMB);
  memory.Add(ShapeUnits(1, 0), 110 * kMB);
  memory.Add(ShapeUnits(2, 0), 120 * kMB);
  memory.Add(ShapeUnits(4, 0), 140 * kMB);
  return memory;
}

// A text model: 100 MB before warmup, then 116, 132 and 164 MB at 16, 32 and 64 units (batch x
// length): 1 MB a unit. Within 180 MB: up to 80 units, i.e. 5 rows of length 16.
ShapeMemoryModel TokenMemory() {
  ShapeMemoryModel memory(100 * kMB);
  memory.Add(16, 116 * kMB);
  memory.Add(32, 132 * kMB);
  memory.Add(64, 164 * kMB);
  return memory;
}

TEST_CASE("the memory models the guard tests use project what their comments say",
          "[shape_guard]") {
  // The premises of the cases below, checked so that a change to the model shows up here.
  CHECK(RowMemory().Projected(ShapeUnits(3, 0)) == 140 * kMB);
  CHECK(RowMemory().Projected(ShapeUnits(8, 0)) == 180 * kMB);
  CHECK(RowMemory().MaxUnitsWithin(150 * kMB) == 5);
  CHECK(TokenMemory().Projected(ShapeUnits(8, 16)) == 228 * kMB);
  CHECK(TokenMemory().MaxUnitsWithin(180 * kMB) == 80);
}

TEST_CASE("Warmed is exactly the warmed (batch, length) pairs", "[shape_guard]") {
  const ShapeGuard guard(Model(8), {{1, 16}, {4, 16}, {4, 64}}, TokenMemory(), 0);
  CHECK(guard.Warmed({1, 16}));
  CHECK(guard.Warmed({4, 16}));
  CHECK(guard.Warmed({4, 64}));
  CHECK_FALSE(guard.Warmed({1, 64}));
  CHECK_FALSE(guard.Warmed({2, 16}));
  CHECK_FALSE(guard.Warmed({16, 4}));  // not the same pair swapped
  CHECK_FALSE(ShapeGuard(Model(8), {}, TokenMemory(), 0).Warmed({1, 0}));
}

TEST_CASE("SequenceBuckets are the warmed lengths, ascending, once each, without 0",
          "[shape_guard]") {
  const ShapeGuard guard(Model(8), {{4, 128}, {1, 16}, {1, 0}, {4, 16}, {2, 64}, {1, 128}},
                         TokenMemory(), 0);
  CHECK(guard.SequenceBuckets() == std::vector<int32_t>{16, 64, 128});
  CHECK(ShapeGuard(Model(8), {{1, 0}, {8, 0}}, RowMemory(), 0).SequenceBuckets().empty());
}

TEST_CASE("RowsPerPass without a budget, or within it, is the whole batch", "[shape_guard]") {
  const Shapes warmed = {{1, 0}, {2, 0}, {4, 0}};
  const ShapeGuard unlimited(Model(8), warmed, RowMemory(), /*budget_bytes=*/0);
  CHECK(unlimited.budget_bytes() == 0);
  CHECK(*unlimited.RowsPerPass({8, 0}) == 8);
  CHECK(*unlimited.RowsPerPass({1000, 0}) == 1000);

  const ShapeGuard roomy(Model(8), warmed, RowMemory(), 200 * kMB);
  CHECK(roomy.budget_bytes() == 200 * kMB);
  CHECK(*roomy.RowsPerPass({8, 0}) == 8);  // 180 MB
  CHECK(*roomy.RowsPerPass({3, 0}) == 3);  // not warmed, but it fits: one pass

  const ShapeGuard exact(Model(8), warmed, RowMemory(), 180 * kMB);
  CHECK(*exact.RowsPerPass({8, 0}) == 8);  // a projection equal to the budget fits
}

TEST_CASE("RowsPerPass over the budget is the largest warmed batch that fits at that length",
          "[shape_guard]") {
  SECTION("no sequence dim: 5 rows fit in 150 MB, warmed batch 4 is the largest of those") {
    const ShapeGuard guard(Model(8), {{1, 0}, {2, 0}, {4, 0}}, RowMemory(), 150 * kMB);
    CHECK(*guard.RowsPerPass({8, 0}) == 4);
    CHECK(*guard.RowsPerPass({6, 0}) == 4);
    CHECK(*guard.RowsPerPass({4, 0}) == 4);  // fits as is
  }
  SECTION("only the warmed batches of the request's length count") {
    // 5 rows of length 16 fit in 180 MB; batch 3 is warmed, but at length 32, so 2 it is.
    const ShapeGuard guard(Model(8), {{1, 16}, {2, 16}, {3, 32}}, TokenMemory(), 180 * kMB);
    CHECK(*guard.RowsPerPass({8, 16}) == 2);
  }
}

TEST_CASE(
    "RowsPerPass over the budget with no warmed batch at that length is the most rows "
    "that fit",
    "[shape_guard]") {
  const ShapeGuard guard(Model(8), {{3, 32}}, TokenMemory(), 180 * kMB);
  CHECK(*guard.RowsPerPass({8, 16}) == 5);
  CHECK(*guard.RowsPerPass({3, 16}) == 3);  // 48 units, costed as 64: 164 MB, fits as is
}

TEST_CASE("RowsPerPass is ResourceExhausted, with the MB numbers, when not one row fits",
          "[shape_guard]") {
  // 105 MB: above the 100 MB baseline but below batch 1's 110 MB peak.
  const ShapeGuard guard(Model(8), {{1, 0}, {2, 0}, {4, 0}}, RowMemory(), 105 * kMB);
  absl::StatusOr<int32_t> rows = guard.RowsPerPass({4, 0});
  REQUIRE_FALSE(rows.ok());
  CHECK(rows.status().code() == absl::StatusCode::kResourceExhausted);
  const std::string message(rows.status().message());
  CHECK_THAT(message, Contains("m: a forward pass of 1 row is projected to peak at 110 MB"));
  CHECK_THAT(message, Contains("memory budget of 105 MB"));

  const ShapeGuard text(Model(8), {{1, 16}}, TokenMemory(), 110 * kMB);
  absl::StatusOr<int32_t> long_rows = text.RowsPerPass({2, 16});
  REQUIRE_FALSE(long_rows.ok());
  CHECK(long_rows.status().code() == absl::StatusCode::kResourceExhausted);
  CHECK_THAT(std::string(long_rows.status().message()),
             Contains("1 row of length 16 is projected to peak at 116 MB"));
  CHECK_THAT(std::string(long_rows.status().message()), Contains("budget of 110 MB"));
}

TEST_CASE("a model without a batch dim over the budget is ResourceExhausted, never split",
          "[shape_guard]") {
  // Length 16 fits in 120 MB; length 32 (132 MB) does not, and cannot be split into rows.
  const ShapeGuard guard(Model(/*max_batch_size=*/0), {{1, 16}, {1, 32}}, TokenMemory(), 120 * kMB);
  CHECK(*guard.RowsPerPass({1, 16}) == 1);
  absl::StatusOr<int32_t> rows = guard.RowsPerPass({1, 32});
  REQUIRE_FALSE(rows.ok());
  CHECK(rows.status().code() == absl::StatusCode::kResourceExhausted);
  CHECK_THAT(std::string(rows.status().message()),
             Contains("a forward pass of this request of length 32 is projected to peak at "
                      "132 MB"));
  CHECK_THAT(std::string(rows.status().message()), Contains("budget of 120 MB"));
}

TEST_CASE("PaddedBatch pads up to the smallest warmed batch above the request", "[shape_guard]") {
  const ShapeGuard guard(Model(8), {{1, 0}, {2, 0}, {4, 0}, {8, 0}}, RowMemory(), 0);
  CHECK(guard.PaddedBatch({3, 0}) == 4);  // not 8
  CHECK(guard.PaddedBatch({5, 0}) == 8);
  CHECK(guard.PaddedBatch({4, 0}) == 4);  // already warmed
  CHECK(guard.PaddedBatch({1, 0}) == 1);
  CHECK(guard.PaddedBatch({9, 0}) == 9);  // nothing warmed above it

  // Only warmed batches of the request's length count.
  const ShapeGuard text(Model(8), {{1, 16}, {4, 16}, {2, 32}}, TokenMemory(), 0);
  CHECK(text.PaddedBatch({3, 16}) == 4);
  CHECK(text.PaddedBatch({1, 32}) == 2);
  CHECK(text.PaddedBatch({3, 32}) == 3);
  CHECK(text.PaddedBatch({3, 64}) == 3);
}

TEST_CASE("PaddedBatch does not pad when padding is off or there is no batch dim",
          "[shape_guard]") {
  const Shapes warmed = {{1, 0}, {4, 0}};
  CHECK(ShapeGuard(Model(8, /*pad_to_warmed=*/true), warmed, RowMemory(), 0).PaddedBatch({3, 0}) ==
        4);
  CHECK(ShapeGuard(Model(8, /*pad_to_warmed=*/false), warmed, RowMemory(), 0).PaddedBatch({3, 0}) ==
        3);
  CHECK(ShapeGuard(Model(0), warmed, RowMemory(), 0).PaddedBatch({3, 0}) == 3);
}

TEST_CASE("PaddedBatch skips a warmed batch whose projection is over the budget", "[shape_guard]") {
  const Shapes warmed = {{1, 0}, {2, 0}, {4, 0}, {8, 0}};
  // 140 MB: batch 4 (140 MB) is a fit, batch 8 (180 MB) is not.
  const ShapeGuard tight(Model(8), warmed, RowMemory(), 140 * kMB);
  CHECK(tight.PaddedBatch({3, 0}) == 4);
  CHECK(tight.PaddedBatch({5, 0}) == 5);
  // 130 MB: not even batch 4.
  const ShapeGuard tighter(Model(8), warmed, RowMemory(), 130 * kMB);
  CHECK(tighter.PaddedBatch({3, 0}) == 3);
}

TEST_CASE("Plan of a warmed shape is one warm pass as is", "[shape_guard]") {
  const ShapeGuard guard(Model(8), {{1, 0}, {4, 0}}, RowMemory(), 0);
  absl::StatusOr<PassPlan> plan = guard.Plan({4, 0});
  REQUIRE(plan.ok());
  CHECK(plan->pass == Shape{4, 0});
  CHECK(plan->passes == 1);
  CHECK(plan->padded_rows == 0);
  CHECK_FALSE(plan->cold);
}

TEST_CASE("Plan refuses a request of no rows instead of dividing by zero", "[shape_guard]") {
  const ShapeGuard guard(Model(8), {{1, 0}, {4, 0}}, RowMemory(), 0);
  const absl::StatusOr<PassPlan> plan = guard.Plan({0, 0});
  REQUIRE_FALSE(plan.ok());
  CHECK(absl::IsInvalidArgument(plan.status()));
  CHECK_THAT(std::string(plan.status().message()), Contains("a request of 0 rows"));
}

TEST_CASE("Plan pads a single pass to a warmed batch, which keeps it warm", "[shape_guard]") {
  const ShapeGuard guard(Model(8), {{1, 0}, {4, 0}, {8, 0}}, RowMemory(), 0);
  absl::StatusOr<PassPlan> plan = guard.Plan({3, 0});
  REQUIRE(plan.ok());
  CHECK(plan->pass == Shape{4, 0});
  CHECK(plan->padded_rows == 1);
  CHECK(plan->passes == 1);
  CHECK_FALSE(plan->cold);
  // Nothing warmed above it: run as is, cold.
  plan = guard.Plan({9, 0});
  REQUIRE(plan.ok());
  CHECK(plan->pass == Shape{9, 0});
  CHECK(plan->padded_rows == 0);
  CHECK(plan->cold);
  // Padding off: run as is, cold.
  plan = ShapeGuard(Model(8, /*pad_to_warmed=*/false), {{4, 0}}, RowMemory(), 0).Plan({3, 0});
  REQUIRE(plan.ok());
  CHECK(plan->pass == Shape{3, 0});
  CHECK(plan->cold);
}

TEST_CASE("Plan splits over the budget into warmed passes, cold when the rest was not warmed",
          "[shape_guard]") {
  // 150 MB: 5 rows fit, batch 4 is the largest warmed one that does.
  const ShapeGuard guard(Model(8), {{1, 0}, {2, 0}, {4, 0}, {8, 0}}, RowMemory(), 150 * kMB);
  absl::StatusOr<PassPlan> plan = guard.Plan({8, 0});
  REQUIRE(plan.ok());
  CHECK(plan->pass == Shape{4, 0});
  CHECK(plan->passes == 2);
  CHECK(plan->padded_rows == 0);
  CHECK_FALSE(plan->cold);  // 4 + 4
  plan = guard.Plan({7, 0});
  REQUIRE(plan.ok());
  CHECK(plan->passes == 2);
  CHECK(plan->cold);  // 4 + 3, and 3 was not warmed
}

TEST_CASE("Plan is ResourceExhausted when not one row fits the budget", "[shape_guard]") {
  const ShapeGuard guard(Model(8), {{1, 0}}, RowMemory(), 105 * kMB);
  absl::StatusOr<PassPlan> plan = guard.Plan({2, 0});
  REQUIRE(plan.status().code() == absl::StatusCode::kResourceExhausted);
  CHECK_THAT(std::string(plan.status().message()), Contains("budget"));
}

}  // namespace
}  // namespace kiln
