// The master's CPU decisions, made once before the zygote is forked and logged beside the memory
// limit: the CPUs the server sizes its threads to, the workers and intra-op threads per model
// (common/thread_plan.h), how OpenMP threads wait, and the priority workers warm at.
#ifndef KILN_SERVER_CPU_SETUP_H_
#define KILN_SERVER_CPU_SETUP_H_

#include <cstdint>
#include <string>
#include <vector>

#include "common/model_config_loader.h"
#include "common/thread_plan.h"
#include "server/master.h"
#include "server/model_loading.h"

namespace kiln {

struct CpuSetup {
  std::string limit;        // CpuLimit::Describe(), or --cpus
  ThreadPlan plan;          // plan.cpus: the CPUs it was sized to
  std::string openmp_wait;  // DescribeOpenMpWait()
  bool warm_at_idle_priority = false;
  std::string warm_priority;  // "idle (...)" or "normal: <why>"
};

// Decides and logs the setup for `specs` as loaded in `models`, under `memory_limit_bytes` (0:
// unknown), honouring --cpus, --workers, --warmup and --warmup_priority from `options`.
CpuSetup PlanCpu(const MasterOptions& options, const std::vector<ModelSpec>& specs,
                 const LoadedModels& models, int64_t memory_limit_bytes);

}  // namespace kiln

#endif  // KILN_SERVER_CPU_SETUP_H_
