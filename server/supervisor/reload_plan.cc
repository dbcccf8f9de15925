#include "server/supervisor/reload_plan.h"

#include <algorithm>
#include <set>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace kiln {
namespace {

std::string KeyOf(const ModelSpec& spec) { return spec.key(); }
std::string KeyOf(const SharedSpec& spec) { return spec->key(); }

// The same version, from the same files.
bool Unchanged(const ModelSpec& a, const ModelSpec& b) {
  return a.key() == b.key() && a.stamp == b.stamp;
}

// Plans one model: `wanted` (what its directory serves now) against `served` (its served versions).
void PlanModel(const std::vector<ModelSpec>& wanted, const std::vector<SharedSpec>& served,
               ReloadPlan& plan) {
  for (const ModelSpec& spec : wanted) {
    const bool same = std::any_of(served.begin(), served.end(), [&spec](const SharedSpec& current) {
      return Unchanged(*current, spec);
    });
    if (same) {
      plan.unchanged.push_back(spec.key());
    } else {
      plan.load.push_back(spec);
    }
  }
  for (const SharedSpec& current : served) {
    const bool kept = std::any_of(wanted.begin(), wanted.end(), [&current](const ModelSpec& spec) {
      return Unchanged(*current, spec);
    });
    if (!kept) plan.retire.push_back(current);
  }
}

}  // namespace

std::string ReloadRequest::Describe() const {
  switch (kind) {
    case Kind::kRepository:
      return "SIGHUP (the whole repository)";
    case Kind::kLoad:
      return absl::StrCat("load of model '", model, "'");
    case Kind::kUnload:
      return absl::StrCat("unload of model '", model, "'");
  }
  return "?";
}

std::string ReloadPlan::Describe() const {
  std::vector<std::string> parts;
  const auto keys = [](const auto& specs) {
    std::vector<std::string> names;
    for (const auto& spec : specs) names.push_back(KeyOf(spec));
    return absl::StrJoin(names, ", ");
  };
  if (!load.empty()) parts.push_back(absl::StrCat("load ", keys(load)));
  if (!retire.empty()) parts.push_back(absl::StrCat("retire ", keys(retire)));
  if (!unchanged.empty())
    parts.push_back(absl::StrCat("unchanged ", absl::StrJoin(unchanged, ", ")));
  for (const auto& [name, why] : refused) parts.push_back(absl::StrCat(name, " refused: ", why));
  return parts.empty() ? "nothing to do" : absl::StrJoin(parts, "; ");
}

absl::StatusOr<ReloadPlan> PlanReload(
    const ReloadRequest& request, const std::vector<SharedSpec>& served,
    const std::map<std::string, absl::StatusOr<std::vector<ModelSpec>>>& repository) {
  std::map<std::string, std::vector<SharedSpec>> served_by_name;
  for (const SharedSpec& spec : served) served_by_name[spec->config.name()].push_back(spec);
  std::set<std::string> names;  // the models this request looks at
  switch (request.kind) {
    case ReloadRequest::Kind::kRepository:
      for (const auto& [name, versions] : repository) names.insert(name);
      for (const auto& [name, versions] : served_by_name) names.insert(name);
      break;
    case ReloadRequest::Kind::kLoad:
      if (repository.count(request.model) == 0) {
        return absl::NotFoundError(absl::StrCat("the model repository has no model '",
                                                request.model, "' (no ", request.model,
                                                "/config.pbtxt)"));
      }
      names.insert(request.model);
      break;
    case ReloadRequest::Kind::kUnload:
      if (served_by_name.count(request.model) == 0) {
        return absl::NotFoundError(absl::StrCat("model '", request.model, "' is not served"));
      }
      names.insert(request.model);
      break;
  }
  ReloadPlan plan;
  for (const std::string& name : names) {
    const std::vector<SharedSpec>& current = served_by_name[name];
    auto found = repository.find(name);
    if (request.kind == ReloadRequest::Kind::kUnload || found == repository.end()) {
      PlanModel({}, current, plan);  // unloaded, or its directory is gone
    } else if (!found->second.ok()) {
      plan.refused[name] = std::string(found->second.status().message());
      for (const SharedSpec& spec : current) plan.unchanged.push_back(spec->key());
    } else {
      PlanModel(*found->second, current, plan);
    }
  }
  return plan;
}

}  // namespace kiln
