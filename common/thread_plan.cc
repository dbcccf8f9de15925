#include "common/thread_plan.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace kiln {
namespace {

std::string Plural(int n, const char* one, const char* many) {
  return absl::StrCat(n, " ", n == 1 ? one : many);
}

// Lowers the automatic worker counts until they total at most `cap` (each model keeping 1),
// one at a time from the model that has most; returns how many it took away.
int CapAutomaticWorkers(std::map<std::string, ModelThreads>& models, int cap) {
  int taken = 0;
  while (true) {
    int total = 0;
    ModelThreads* largest = nullptr;
    for (auto& [name, model] : models) {
      if (!model.automatic_workers) continue;
      total += model.workers;
      if (model.workers > 1 && (largest == nullptr || model.workers > largest->workers)) {
        largest = &model;
      }
    }
    if (total <= cap || largest == nullptr) return taken;
    --largest->workers;
    ++taken;
  }
}

}  // namespace

int ThreadPlan::TotalWorkers() const {
  int total = 0;
  for (const auto& [name, model] : models) total += model.workers;
  return total;
}

int ThreadPlan::TotalThreads() const {
  int total = 0;
  for (const auto& [name, model] : models) total += model.workers * model.intra_op_threads;
  return total;
}

std::string ThreadPlan::Describe() const {
  std::string text = Plural(cpus, "CPU", "CPUs");
  const char* separator = ": ";
  for (const auto& [name, model] : models) {
    absl::StrAppend(&text, separator, name, " ", Plural(model.workers, "worker", "workers"),
                    model.automatic_workers ? " (automatic)" : "", " x ",
                    Plural(model.intra_op_threads, "intra-op thread", "intra-op threads"),
                    model.automatic_threads ? " (automatic)" : "");
    separator = ", ";
  }
  absl::StrAppend(&text, " = ", Plural(TotalThreads(), "thread", "threads"));
  return text;
}

ThreadPlan PlanThreads(const std::vector<ModelSpec>& specs, const ThreadPlanInputs& inputs) {
  ThreadPlan plan;
  plan.cpus = std::max(inputs.cpus, 1);
  std::map<std::string, int> configured_threads;  // 0 = automatic

  // Worker counts: explicit ones first, then the CPUs they leave split over the automatic ones.
  int reserved = 0;
  std::vector<std::string> automatic;  // CPU models whose count the plan chooses
  for (const ModelSpec& spec : specs) {
    const InstanceConfig& group = spec.config.instance_group();
    const std::string name = spec.key();
    ModelThreads& model = plan.models[name];
    configured_threads[name] = std::max(group.intra_op_threads(), 0);
    model.automatic_threads = configured_threads[name] == 0;
    const int explicit_workers =
        inputs.workers_per_model > 0 ? inputs.workers_per_model : group.count();
    if (explicit_workers > 0) {
      model.workers = explicit_workers;
    } else if (group.kind() == InstanceConfig::KIND_GPU) {
      model.workers = std::max(group.gpus_size(), 1);
      model.automatic_workers = true;
    } else {
      model.automatic_workers = true;
      automatic.push_back(name);
      continue;
    }
    reserved += model.workers * std::max(configured_threads[name], 1);
  }
  const int free_cpus = std::max(plan.cpus - reserved, 0);
  const int automatic_models = static_cast<int>(automatic.size());
  for (int i = 0; i < automatic_models; ++i) {
    const int share = free_cpus / automatic_models + (i < free_cpus % automatic_models ? 1 : 0);
    plan.models[automatic[i]].workers =
        std::max(1, share / std::max(configured_threads[automatic[i]], 1));
  }
  if (inputs.memory_limit_bytes > 0 && inputs.worker_footprint_bytes > 0) {
    const double room = kDefaultCgroupShare * static_cast<double>(inputs.memory_limit_bytes) /
                        static_cast<double>(inputs.worker_footprint_bytes);
    const int cap = static_cast<int>(std::min(std::floor(room), 1e6));
    if (const int taken = CapAutomaticWorkers(plan.models, cap); taken > 0) {
      plan.warnings.push_back(absl::StrFormat(
          "%s fewer than the CPUs allow: automatic workers are capped at %d by memory "
          "(%.0f MB limit x %.2f / %.0f MB per worker: the master's resident memory after "
          "loading plus the mapped weights)",
          Plural(taken, "worker", "workers"), cap, inputs.memory_limit_bytes / 1e6,
          kDefaultCgroupShare, inputs.worker_footprint_bytes / 1e6));
    }
  }

  // Thread counts: the CPUs left after the explicit ones, split over the workers without one.
  int explicit_threads = 0;
  int workers_without = 0;
  for (const auto& [name, model] : plan.models) {
    if (model.automatic_threads) {
      workers_without += model.workers;
    } else {
      explicit_threads += model.workers * configured_threads[name];
    }
  }
  const int per_worker =
      workers_without > 0 ? std::max(1, (plan.cpus - explicit_threads) / workers_without) : 1;
  for (auto& [name, model] : plan.models) {
    model.intra_op_threads = model.automatic_threads ? per_worker : configured_threads[name];
  }
  if (plan.TotalThreads() > plan.cpus) {
    const bool configured = reserved > plan.cpus || explicit_threads > plan.cpus;
    plan.warnings.push_back(absl::StrFormat(
        "%s x their intra-op threads = %s on %s: oversubscribed (%s), so under load requests "
        "wait for a CPU; lower instance_group's count or the INTRA_OP_THREAD_COUNT parameter, or "
        "give the server more CPUs",
        Plural(plan.TotalWorkers(), "worker", "workers"),
        Plural(plan.TotalThreads(), "thread", "threads"), Plural(plan.cpus, "CPU", "CPUs"),
        configured ? "the configured counts ask for more"
                   : "every model has at least one worker of one thread"));
  }
  return plan;
}

}  // namespace kiln
