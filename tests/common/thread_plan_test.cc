// common/thread_plan: workers x intra-op threads per model from the CPUs the server has.
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "common/thread_plan.h"

namespace kiln {
namespace {

using Catch::Matchers::Contains;

// A resolved spec as LoadModelRepository gives it, with only what the plan reads.
ModelSpec Spec(const std::string& name, int count = 0, int threads = 0) {
  ModelSpec spec;
  spec.config.set_name(name);
  spec.version = 1;
  spec.config.mutable_instance_group()->set_count(count);
  spec.config.mutable_instance_group()->set_intra_op_threads(threads);
  return spec;
}

ThreadPlanInputs Cpus(int cpus, int workers_per_model = 0) {
  ThreadPlanInputs inputs;
  inputs.cpus = cpus;
  inputs.workers_per_model = workers_per_model;
  return inputs;
}

TEST_CASE("plan: an automatic model gets one worker of one thread per CPU", "[plan]") {
  const ThreadPlan plan = PlanThreads({Spec("resnet50")}, Cpus(2));
  const ModelThreads& model = plan.models.at("resnet50:1");
  CHECK(model.workers == 2);
  CHECK(model.intra_op_threads == 1);
  CHECK(model.automatic_workers);
  CHECK(model.automatic_threads);
  CHECK(plan.TotalThreads() == 2);
  CHECK(plan.warnings.empty());
  CHECK(plan.Describe() ==
        "2 CPUs: resnet50:1 2 workers (automatic) x 1 intra-op thread (automatic) = 2 threads");
}

TEST_CASE("plan: an explicit count gets the CPUs as threads", "[plan]") {
  SECTION("instance_group.count") {
    const ThreadPlan plan = PlanThreads({Spec("m", /*count=*/1)}, Cpus(4));
    CHECK(plan.models.at("m:1").workers == 1);
    CHECK(plan.models.at("m:1").intra_op_threads == 4);
    CHECK_FALSE(plan.models.at("m:1").automatic_workers);
    CHECK(plan.Describe() == "4 CPUs: m:1 1 worker x 4 intra-op threads (automatic) = 4 threads");
  }
  SECTION("--workers overrides the count") {
    const ThreadPlan plan = PlanThreads({Spec("m", /*count=*/1), Spec("n")}, Cpus(8, 2));
    CHECK(plan.models.at("m:1").workers == 2);
    CHECK(plan.models.at("n:1").workers == 2);
    CHECK_FALSE(plan.models.at("n:1").automatic_workers);
    CHECK(plan.models.at("m:1").intra_op_threads == 2);
    CHECK(plan.TotalThreads() == 8);
  }
}

TEST_CASE("plan: automatic models split the CPUs, the first ones get the remainder", "[plan]") {
  const ThreadPlan plan = PlanThreads({Spec("a"), Spec("b")}, Cpus(3));
  CHECK(plan.models.at("a:1").workers == 2);
  CHECK(plan.models.at("b:1").workers == 1);
  CHECK(plan.models.at("a:1").intra_op_threads == 1);
  CHECK(plan.TotalThreads() == 3);
}

TEST_CASE("plan: automatic counts take the CPUs the explicit ones leave", "[plan]") {
  const ThreadPlan plan = PlanThreads({Spec("fixed", /*count=*/2), Spec("auto")}, Cpus(6));
  CHECK(plan.models.at("fixed:1").workers == 2);
  CHECK(plan.models.at("auto:1").workers == 4);
  CHECK(plan.models.at("fixed:1").intra_op_threads == 1);
  CHECK(plan.TotalThreads() == 6);
}

TEST_CASE("plan: explicit threads make fewer automatic workers", "[plan]") {
  const ThreadPlan plan = PlanThreads({Spec("m", /*count=*/0, /*threads=*/3)}, Cpus(8));
  CHECK(plan.models.at("m:1").workers == 2);
  CHECK(plan.models.at("m:1").intra_op_threads == 3);
  CHECK_FALSE(plan.models.at("m:1").automatic_threads);
  CHECK(plan.TotalThreads() == 6);
  CHECK(plan.warnings.empty());
}

TEST_CASE("plan: automatic threads share what explicit threads leave", "[plan]") {
  const ThreadPlan plan =
      PlanThreads({Spec("big", /*count=*/1, /*threads=*/4), Spec("small", /*count=*/2)}, Cpus(8));
  CHECK(plan.models.at("big:1").intra_op_threads == 4);
  CHECK(plan.models.at("small:1").intra_op_threads == 2);
  CHECK(plan.TotalThreads() == 8);
}

TEST_CASE("plan: more models than CPUs get one worker of one thread each, with a warning",
          "[plan]") {
  const ThreadPlan plan = PlanThreads({Spec("a"), Spec("b"), Spec("c"), Spec("d")}, Cpus(2));
  for (const auto& [name, model] : plan.models) {
    CHECK(model.workers == 1);
    CHECK(model.intra_op_threads == 1);
  }
  REQUIRE(plan.warnings.size() == 1);
  CHECK_THAT(plan.warnings[0], Contains("4 workers x their intra-op threads = 4 threads on 2 CPUs: "
                                        "oversubscribed (every model has at least one worker"));
}

TEST_CASE("plan: explicit settings may oversubscribe, with a warning", "[plan]") {
  const ThreadPlan plan = PlanThreads({Spec("m", /*count=*/4, /*threads=*/4)}, Cpus(2));
  CHECK(plan.models.at("m:1").workers == 4);
  CHECK(plan.models.at("m:1").intra_op_threads == 4);
  REQUIRE(plan.warnings.size() == 1);
  CHECK_THAT(plan.warnings[0], Contains("16 threads on 2 CPUs: oversubscribed (the configured "
                                        "counts ask for more)"));
}

TEST_CASE("plan: GPU models get one worker per listed GPU", "[plan]") {
  ModelSpec gpu = Spec("g");
  gpu.config.mutable_instance_group()->set_kind(InstanceConfig::KIND_GPU);
  gpu.config.mutable_instance_group()->add_gpus(0);
  gpu.config.mutable_instance_group()->add_gpus(1);
  const ThreadPlan plan = PlanThreads({gpu, Spec("cpu")}, Cpus(8));
  CHECK(plan.models.at("g:1").workers == 2);
  CHECK(plan.models.at("g:1").automatic_workers);
  CHECK(plan.models.at("cpu:1").workers == 6);
  CHECK(plan.TotalThreads() == 8);
}

TEST_CASE("plan: memory caps automatic workers, never below one per model", "[plan]") {
  ThreadPlanInputs inputs = Cpus(8);
  inputs.memory_limit_bytes = 1000'000'000;
  inputs.worker_footprint_bytes = 300'000'000;  // 0.8 x 1000 / 300: room for 2
  SECTION("one model") {
    const ThreadPlan plan = PlanThreads({Spec("m")}, inputs);
    CHECK(plan.models.at("m:1").workers == 2);
    CHECK(plan.models.at("m:1").intra_op_threads == 4);  // the CPUs go to threads instead
    REQUIRE(plan.warnings.size() == 1);
    CHECK_THAT(plan.warnings[0], Contains("6 workers fewer than the CPUs allow: automatic workers "
                                          "are capped at 2 by memory"));
  }
  SECTION("taken from the model with most first, each keeping one") {
    const ThreadPlan plan = PlanThreads({Spec("a"), Spec("b"), Spec("c")}, inputs);
    CHECK(plan.models.at("a:1").workers == 1);
    CHECK(plan.models.at("b:1").workers == 1);
    CHECK(plan.models.at("c:1").workers == 1);
  }
  SECTION("explicit counts are not capped") {
    const ThreadPlan plan = PlanThreads({Spec("m", /*count=*/5)}, inputs);
    CHECK(plan.models.at("m:1").workers == 5);
  }
  SECTION("no cap without a footprint") {
    inputs.worker_footprint_bytes = 0;
    CHECK(PlanThreads({Spec("m")}, inputs).models.at("m:1").workers == 8);
  }
}

TEST_CASE("plan: automatic settings never use more threads than CPUs, and use them all", "[plan]") {
  for (int cpus = 1; cpus <= 16; ++cpus) {
    for (int models = 1; models <= 4; ++models) {
      std::vector<ModelSpec> specs;
      for (int i = 0; i < models; ++i) specs.push_back(Spec("m" + std::to_string(i)));
      const ThreadPlan plan = PlanThreads(specs, Cpus(cpus));
      INFO(cpus << " CPUs, " << models << " models: " << plan.Describe());
      if (models <= cpus) {
        CHECK(plan.TotalThreads() == cpus);
        CHECK(plan.warnings.empty());
      } else {
        CHECK(plan.TotalThreads() == models);
      }
    }
  }
}

}  // namespace
}  // namespace kiln
