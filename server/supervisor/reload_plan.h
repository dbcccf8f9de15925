// What a reload does (docs/ARCHITECTURE.md, "Versions and reload"), decided from the repository as
// it is now and the versions the pool serves: which versions to load in a new generation, which
// served ones to retire once those are live, and which to leave alone (same files: same workers,
// same pids).
#ifndef KILN_SERVER_SUPERVISOR_RELOAD_PLAN_H_
#define KILN_SERVER_SUPERVISOR_RELOAD_PLAN_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/model_config_loader.h"

namespace kiln {

// What triggered the reload, and so how much of the repository it looks at.
struct ReloadRequest {
  enum class Kind {
    kRepository,  // SIGHUP: serve what the whole repository holds now (added, changed, removed)
    kLoad,        // RepositoryModelLoad: load or reload one model
    kUnload,      // RepositoryModelUnload: stop serving one model
  };
  Kind kind = Kind::kRepository;
  std::string model;  // kLoad, kUnload

  std::string Describe() const;  // "SIGHUP (the whole repository)", "load of model 'mlp'"
};

// Ownership: a plain value.
struct ReloadPlan {
  std::vector<ModelSpec> load;         // new or changed versions: staged in a new generation
  std::vector<SharedSpec> retire;      // served versions that go once the staged ones are live
  std::vector<std::string> unchanged;  // keys of served versions left as they are
  // By model name: why its directory does not load now; its served versions stay as they are.
  std::map<std::string, std::string> refused;

  bool changes() const { return !load.empty() || !retire.empty(); }
  // "load mlp:2, resnet18:1 (changed); retire mlp:1, resnet18:1; unchanged textcls:1".
  std::string Describe() const;
};

// The plan for `request`, given the versions served now and the repository as ScanRepository
// reads it. NotFound for a load of a model with no directory, or an unload of one not served.
absl::StatusOr<ReloadPlan> PlanReload(
    const ReloadRequest& request, const std::vector<SharedSpec>& served,
    const std::map<std::string, absl::StatusOr<std::vector<ModelSpec>>>& repository);

}  // namespace kiln

#endif  // KILN_SERVER_SUPERVISOR_RELOAD_PLAN_H_
