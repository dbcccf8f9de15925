#include "server/cpu_plan.h"

#include "absl/strings/str_cat.h"
#include "common/cpu_probe.h"
#include "common/idle_priority.h"
#include "common/memory_probe.h"
#include "common/openmp_wait.h"
#include "glog/logging.h"

namespace kiln {

CpuSetup PlanCpu(const CpuOptions& options, const std::vector<ModelSpec>& specs,
                 const LoadedModels& models, int64_t memory_limit_bytes) {
  CpuSetup setup;
  const CpuLimit limit = ProcessCpuLimit();
  setup.limit = options.cpus > 0 ? absl::StrCat(options.cpus, " (--cpus; the process has ",
                                                limit.Describe(), ")")
                                 : limit.Describe();
  LOG(INFO) << "cpu: " << setup.limit << " for the whole server";

  // A worker starts as a copy of the master and touches every weight: reckon it at the master's
  // resident memory plus the mapped weights (only to cap automatic worker counts).
  ThreadPlanInputs inputs;
  inputs.cpus = options.cpus > 0 ? options.cpus : limit.cpus;
  inputs.workers_per_model = options.workers_per_model;
  inputs.memory_limit_bytes = memory_limit_bytes;
  if (absl::StatusOr<ResidentMemory> resident = ReadResidentMemory(); resident.ok()) {
    inputs.worker_footprint_bytes = resident->resident_bytes;
    for (const auto& model : models.models) {
      inputs.worker_footprint_bytes += static_cast<int64_t>(model->stats().mapped_bytes);
    }
  }
  setup.plan = PlanThreads(specs, inputs);
  LOG(INFO) << "threads: " << setup.plan.Describe();
  for (const std::string& warning : setup.plan.warnings) LOG(WARNING) << "threads: " << warning;
  setup.openmp_wait = DescribeOpenMpWait();
  LOG(INFO) << "threads: OpenMP threads wait: " << setup.openmp_wait;

  if (!options.warmup) {
    setup.warm_priority = "normal (--warmup=off: nothing to warm)";
  } else if (!options.warm_at_idle_priority) {
    setup.warm_priority = "normal (--warmup_priority=normal)";
  } else if (const IdleReturn back = CheckReturnFromIdle(); back.allowed) {
    setup.warm_at_idle_priority = true;
    setup.warm_priority = absl::StrCat(
        "idle (SCHED_IDLE: only CPU left over), back to normal as the port opens (", back.how, ")");
  } else {
    setup.warm_priority = absl::StrCat("normal: ", back.how);
  }
  LOG(INFO) << "cpu: workers warm at " << setup.warm_priority;
  return setup;
}

}  // namespace kiln
