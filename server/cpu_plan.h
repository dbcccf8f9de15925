// The master's CPU decisions, made once before the zygote is forked and logged beside the memory
// limit (server/supervisor/cpu_setup.h holds what they are).
#ifndef KILN_SERVER_CPU_PLAN_H_
#define KILN_SERVER_CPU_PLAN_H_

#include <cstdint>
#include <vector>

#include "common/model_config_loader.h"
#include "server/supervisor/cpu_setup.h"
#include "server/zygote/model_loading.h"

namespace kiln {

// The flags PlanCpu honours (a value).
struct CpuOptions {
  int cpus = 0;               // --cpus; 0: what the process has (common/cpu_probe.h)
  int workers_per_model = 0;  // --workers; 0: each model's instance_group.count (0: automatic)
  bool warmup = true;         // --warmup
  bool warm_at_idle_priority = true;  // --warmup_priority=idle
};

// Decides and logs the setup for `specs` as loaded in `models`, under `memory_limit_bytes` (0:
// unknown).
CpuSetup PlanCpu(const CpuOptions& options, const std::vector<ModelSpec>& specs,
                 const LoadedModels& models, int64_t memory_limit_bytes);

}  // namespace kiln

#endif  // KILN_SERVER_CPU_PLAN_H_
