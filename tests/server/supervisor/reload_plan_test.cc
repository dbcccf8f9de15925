// server/reload_plan: what a reload loads, retires and leaves alone, from the repository as it is
// now and the versions served.
#include "server/supervisor/reload_plan.h"

#include <catch2/catch.hpp>
#include <map>
#include <string>
#include <vector>

namespace kiln {
namespace {

using Catch::Matchers::Contains;
using Repository = std::map<std::string, absl::StatusOr<std::vector<ModelSpec>>>;

ModelSpec Spec(const std::string& name, int64_t version, const std::string& stamp) {
  ModelSpec spec;
  spec.config.set_name(name);
  spec.version = version;
  spec.stamp = stamp;
  return spec;
}

std::vector<std::string> Keys(const std::vector<ModelSpec>& specs) {
  std::vector<std::string> keys;
  for (const ModelSpec& spec : specs) keys.push_back(spec.key());
  return keys;
}

std::vector<std::string> Keys(const std::vector<SharedSpec>& specs) {
  std::vector<std::string> keys;
  for (const SharedSpec& spec : specs) keys.push_back(spec->key());
  return keys;
}

// Served now: a:1, b:1, c:1 (stamp "s1" each).
std::vector<SharedSpec> Served() {
  std::vector<SharedSpec> served;
  for (const char* name : {"a", "b", "c"}) {
    served.push_back(std::make_shared<const ModelSpec>(Spec(name, 1, "s1")));
  }
  return served;
}

TEST_CASE(
    "SIGHUP loads new and changed versions, retires what they replace or what is gone, and "
    "leaves the rest alone",
    "[reload_plan]") {
  Repository repository;
  repository["a"] = std::vector<ModelSpec>{Spec("a", 2, "s2")};  // a new version
  repository["b"] = std::vector<ModelSpec>{Spec("b", 1, "s1")};  // unchanged
  repository["d"] = std::vector<ModelSpec>{Spec("d", 1, "s1")};  // a new model; c is gone
  absl::StatusOr<ReloadPlan> plan = PlanReload({}, Served(), repository);
  REQUIRE(plan.ok());
  CHECK(Keys(plan->load) == std::vector<std::string>{"a:2", "d:1"});
  CHECK(Keys(plan->retire) == std::vector<std::string>{"a:1", "c:1"});
  CHECK(plan->unchanged == std::vector<std::string>{"b:1"});
  CHECK(plan->changes());
  CHECK(plan->Describe() == "load a:2, d:1; retire a:1, c:1; unchanged b:1");
}

TEST_CASE("a version whose files changed in place is reloaded under the same number",
          "[reload_plan]") {
  Repository repository;
  repository["a"] = std::vector<ModelSpec>{Spec("a", 1, "s1-rewritten")};
  repository["b"] = std::vector<ModelSpec>{Spec("b", 1, "s1")};
  repository["c"] = std::vector<ModelSpec>{Spec("c", 1, "s1")};
  absl::StatusOr<ReloadPlan> plan = PlanReload({}, Served(), repository);
  REQUIRE(plan.ok());
  CHECK(Keys(plan->load) == std::vector<std::string>{"a:1"});
  CHECK(Keys(plan->retire) == std::vector<std::string>{"a:1"});
  CHECK(plan->retire.front()->stamp == "s1");  // the one served, not the new one
}

TEST_CASE("a model whose directory does not load keeps its served versions and says why",
          "[reload_plan]") {
  Repository repository;
  repository["a"] = absl::InvalidArgumentError("a/config.pbtxt: field 'x': bad");
  repository["b"] = std::vector<ModelSpec>{Spec("b", 1, "s1")};
  repository["c"] = std::vector<ModelSpec>{Spec("c", 1, "s1")};
  absl::StatusOr<ReloadPlan> plan = PlanReload({}, Served(), repository);
  REQUIRE(plan.ok());
  CHECK_FALSE(plan->changes());
  CHECK(plan->refused.at("a") == "a/config.pbtxt: field 'x': bad");
  CHECK(plan->unchanged == std::vector<std::string>{"a:1", "b:1", "c:1"});
  CHECK_THAT(plan->Describe(), Contains("a refused: a/config.pbtxt"));
}

TEST_CASE("load and unload look at one model only", "[reload_plan]") {
  Repository repository;
  repository["a"] = std::vector<ModelSpec>{Spec("a", 2, "s2")};
  repository["b"] = std::vector<ModelSpec>{Spec("b", 3, "s3")};  // changed, but not asked for
  absl::StatusOr<ReloadPlan> load =
      PlanReload({ReloadRequest::Kind::kLoad, "a"}, Served(), repository);
  REQUIRE(load.ok());
  CHECK(Keys(load->load) == std::vector<std::string>{"a:2"});
  CHECK(Keys(load->retire) == std::vector<std::string>{"a:1"});

  absl::StatusOr<ReloadPlan> unload =
      PlanReload({ReloadRequest::Kind::kUnload, "b"}, Served(), repository);
  REQUIRE(unload.ok());
  CHECK(unload->load.empty());
  CHECK(Keys(unload->retire) == std::vector<std::string>{"b:1"});

  CHECK(PlanReload({ReloadRequest::Kind::kLoad, "nope"}, Served(), repository).status().code() ==
        absl::StatusCode::kNotFound);
  CHECK(PlanReload({ReloadRequest::Kind::kUnload, "d"}, Served(), repository).status().code() ==
        absl::StatusCode::kNotFound);
  // A model that is not served is loaded whole.
  repository["d"] = std::vector<ModelSpec>{Spec("d", 1, "s1"), Spec("d", 2, "s1")};
  absl::StatusOr<ReloadPlan> added =
      PlanReload({ReloadRequest::Kind::kLoad, "d"}, Served(), repository);
  REQUIRE(added.ok());
  CHECK(Keys(added->load) == std::vector<std::string>{"d:1", "d:2"});
  CHECK(added->retire.empty());
}

}  // namespace
}  // namespace kiln
